/* publish.h - the event stream, fed from the loop without blocking it.
 *
 * Publishing an event is a write to the event store (events.h): a few
 * microseconds on a healthy store, up to MCPGW_EVENTS_PUBLISH_WAIT on a sick
 * one - too much to pay on the loop thread twice per tool call.  So the
 * loop encodes each event into a batch (mcpgw_events_batch_add_hub, the
 * same text every front end publishes) and one publisher thread stores the
 * batches.  The batch is bounded (MCPGW_WS_EVENT_QUEUE_MAX events,
 * MCPGW_WS_EVENT_QUEUE_BYTES of text); when the store falls that far
 * behind, events are dropped and counted (and logged at most once per
 * 10 s) rather than calls slowed.
 *
 * Threads: wsd_publisher_observer() and wsd_publisher_client() on the loop
 * thread only; start/stop from the main thread.
 */
#ifndef MCPGW_WSD_PUBLISH_H
#define MCPGW_WSD_PUBLISH_H

#include <stdbool.h>

#include "events.h"
#include "hub.h"

struct wsd_publisher;

/* Start the thread publishing to ev (borrowed; outlives the publisher).
 * 0 and *out, or -errno. */
int wsd_publisher_start(mcpgw_events *ev, struct wsd_publisher **out);

/* Publish what is queued, then stop and join the thread.  NULL-safe. */
void wsd_publisher_stop(struct wsd_publisher *p);

/* An observer for mcpgw_hub_set_observer(hub, wsd_publisher_observer, p). */
void wsd_publisher_observer(void *p, const struct mcpgw_hub_event *ev);

/* A "client" event: {clientId, event, tokenName (NULL: none)}. */
void wsd_publisher_client(struct wsd_publisher *p, const char *client_id, const char *event,
                          const char *token_name);

/* Hand waiting events to the thread: call after each loop turn.  It is
 * woken only for a batch of WSD_PUBLISH_BATCH events or when force is set
 * (the caller's timer, at most WSD_PUBLISH_DELAY_MS later), so a busy loop
 * does not pay a thread wake-up per turn.  Returns how many events are
 * still waiting for the thread to be woken (0: none). */
#define WSD_PUBLISH_BATCH 128
#define WSD_PUBLISH_DELAY_MS 10
unsigned wsd_publisher_kick(struct wsd_publisher *p, bool force);

/* Events dropped because the queue was full. */
unsigned long long wsd_publisher_dropped(struct wsd_publisher *p);

#endif
