/* events.h - the gateway's one durable, resumable event stream.
 *
 * Every gateway process (mcpgw-wsd, each mcpgw-fcgi, the CLI) publishes what
 * happens; every /api/v1/events reader, in any process, sees all of it in id
 * order, and after a reconnect (Last-Event-ID) misses nothing still retained.
 *
 * EVENTS.  Each is one JSON object {"type":…,"timestamp":ms,"data":{…}} —
 * docs/protocol.md lists the types: tool_call, tool_progress, tool_result,
 * server_status, client, token_revoked; and the reader-side "gap".
 *
 * IDS.  Opaque strings, at most MCPGW_EVENT_ID_MAX bytes of [0-9A-Za-z-],
 * increasing across every process of a deployment and usable verbatim as
 * the SSE "id:".  The embedded store uses a decimal sequence number; Redis
 * uses its stream ids ("1764118923000-0").  Compare only with
 * mcpgw_events_id_cmp().
 *
 * BACKENDS.  Chosen by config (gateway.events.backend):
 *  - "file" (default): an append-only store under
 *    $localstatedir/lib/mcpgw/events/, shared by many processes, durable
 *    across restarts and a kill -9 mid-write; readers are woken by inotify.
 *  - "redis": Redis Streams (XADD MAXLEN ~ / XREAD BLOCK) for several hosts.
 *
 * GUARANTEES.  Publishing never blocks a tool call for long and never fails
 * it: when the backend is unavailable the event is dropped, counted, logged,
 * and the backend is retried later.  Retention is bounded by count, age and
 * bytes.  A reader resuming from an id older than retention first gets one
 * event of type "gap" ({"data":{"requested":id,"oldest":id}}), never a
 * silent skip.
 *
 * THREADS.  An mcpgw_events handle may be used by many threads at once for
 * publishing.  A reader belongs to one thread.  The first reader of a
 * handle starts a thread of the handle's (the wake-ups of all its readers);
 * after that, a child of fork() must only exec (as the hub's spawn does).
 */
#ifndef MCPGW_EVENTS_H
#define MCPGW_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "conf.h"

#define MCPGW_EVENT_ID_MAX 48

typedef struct mcpgw_events mcpgw_events;
typedef struct mcpgw_events_reader mcpgw_events_reader;

/* One event as a reader gets it.  json is the complete event object as
 * text (what goes after "data: "), borrowed until the next read. */
struct mcpgw_event {
    char id[MCPGW_EVENT_ID_MAX + 1];
    const char *type;           /* borrowed, like json */
    const char *json;
    size_t json_len;
    const char *server_id;      /* data.serverId if any, for ?serverId= filters */
    bool is_tool_event;         /* tool_call / tool_progress / tool_result:
                                 * only for authenticated readers */
};

struct mcpgw_events_stats {
    uint64_t published, dropped;
    char oldest[MCPGW_EVENT_ID_MAX + 1];    /* oldest retained id, "" if none */
    char newest[MCPGW_EVENT_ID_MAX + 1];
};

/* Open the configured backend.  Cheap: no connection is needed to succeed
 * (a Redis that is down is retried on use).  0 and *out, or -errno /
 * MCPGW_ECONFIG with a message in err. */
int mcpgw_events_open(const struct mcpgw_conf *conf, mcpgw_events **out, char *err, size_t errlen);
void mcpgw_events_close(mcpgw_events *ev);      /* NULL-safe; its readers first */

/* Publish {"type":type,"timestamp":now,"data":data}.  data is borrowed.
 * Returns 0 (published, or dropped and counted) — never an error a tool
 * call should see; id (if not NULL, MCPGW_EVENT_ID_MAX+1 bytes) gets the id
 * or "" when dropped.  Bounded time: at most a few ms on a healthy backend. */
int mcpgw_events_publish(mcpgw_events *ev, const char *type, json_object *data, char *id);

/* A reader positioned after last_id (NULL or "": only events published from
 * now on).  0 and *out, or -errno. */
int mcpgw_events_reader_open(mcpgw_events *ev, const char *last_id, mcpgw_events_reader **out);
void mcpgw_events_reader_close(mcpgw_events_reader *r);    /* NULL-safe */

/* Next event, waiting up to timeout_ms (0: don't wait, -1: forever).
 * 1 and *e filled; 0 on timeout; -errno on failure (the reader may be
 * retried; a backend outage shows up as timeouts, not errors). */
int mcpgw_events_read(mcpgw_events_reader *r, struct mcpgw_event *e, int timeout_ms);

/* A file descriptor that becomes readable when mcpgw_events_read() may have
 * something, for readers inside an event loop; -1 if the backend has none
 * (then poll with read(…, 0) on a timer). */
int mcpgw_events_reader_fd(const mcpgw_events_reader *r);

/* Order of two ids: <0, 0, >0.  Malformed ids sort before all valid ones. */
int mcpgw_events_id_cmp(const mcpgw_events *ev, const char *a, const char *b);
/* Whether s is a syntactically valid id for this backend (for Last-Event-ID). */
bool mcpgw_events_id_valid(const mcpgw_events *ev, const char *s);

void mcpgw_events_stats(mcpgw_events *ev, struct mcpgw_events_stats *st);

/* Publish the hub's calls and server state changes: a ready-made observer
 * for mcpgw_hub_set_observer(hub, mcpgw_events_hub_observer, ev).  Tool
 * params are included only when gateway.events.includeParams is true. */
struct mcpgw_hub_event;
void mcpgw_events_hub_observer(void *ev, const struct mcpgw_hub_event *hev);
/* The same for n hub events at once, in order, stored with as few appends
 * as the backend allows (the embedded store: one lock and one write per
 * 64 events): for a publisher thread that collects them. */
void mcpgw_events_hub_observe_many(mcpgw_events *ev, const struct mcpgw_hub_event *const *hev,
                                   size_t n);

/* Events made on one thread and stored on another: a front end whose loop
 * must not wait for the store (wsd) encodes each event into a batch on the
 * loop thread - the text is made from the loop's own objects, so nothing
 * is shared between threads - and a publisher thread stores the batch
 * whole, in order, with as few appends as the backend allows.  A batch has
 * one owner at a time; hand it over under the caller's own lock.  Events
 * that cannot be made (too big, no memory) are counted as dropped at once. */
typedef struct mcpgw_events_batch mcpgw_events_batch;
mcpgw_events_batch *mcpgw_events_batch_new(void);        /* NULL: no memory */
void mcpgw_events_batch_free(mcpgw_events_batch *b);      /* NULL-safe */
size_t mcpgw_events_batch_count(const mcpgw_events_batch *b);
size_t mcpgw_events_batch_bytes(const mcpgw_events_batch *b);    /* its text */
/* Add hev's event (as mcpgw_events_hub_observer would publish it).
 * 1 added, 0 hev makes no event, -errno dropped and counted. */
int mcpgw_events_batch_add_hub(mcpgw_events *ev, mcpgw_events_batch *b,
                               const struct mcpgw_hub_event *hev);
/* Add {"type":type,"timestamp":now,"data":data} (as mcpgw_events_publish);
 * data is borrowed.  1 added, -errno dropped and counted. */
int mcpgw_events_batch_add(mcpgw_events *ev, mcpgw_events_batch *b, const char *type,
                           json_object *data);
/* Store b's events in order (each counted as published or dropped), then
 * empty b, keeping its memory for the next round. */
void mcpgw_events_batch_store(mcpgw_events *ev, mcpgw_events_batch *b);

#endif
