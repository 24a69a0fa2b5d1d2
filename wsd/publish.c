/* publish.c - a publisher thread between the loop and the event store
 * (publish.h).
 *
 * The loop encodes each event into a batch (events.h) itself, from its own
 * objects, under the publisher's mutex; the thread swaps that batch for an
 * empty one and stores it.  So nothing is shared between the threads but
 * the two batches' buffers, which change hands whole: no json-c object
 * (their reference counts are not atomic), no allocation per event, and no
 * memory allocated on one thread and freed on the other (glibc then takes
 * the other thread's arena lock, which showed as futex waits on both).
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "limits.h"
#include "log.h"
#include "publish.h"
#include "theap.h"

#define DROP_LOG_MS 10000

struct wsd_publisher {
    mcpgw_events *ev;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    mcpgw_events_batch *fill;   /* the loop adds here, under mu */
    mcpgw_events_batch *spare;  /* the thread stores from here, without mu */
    bool stop, waiting;         /* waiting: the thread sleeps on cond */
    unsigned long long dropped, drops_unlogged;
    int64_t drop_logged_at;
};

static void *run(void *arg)
{
    struct wsd_publisher *p = arg;

    for (;;) {
        mcpgw_events_batch *b;
        bool stop;

        pthread_mutex_lock(&p->mu);
        while (!mcpgw_events_batch_count(p->fill) && !p->stop) {
            p->waiting = true;
            pthread_cond_wait(&p->cond, &p->mu);
            p->waiting = false;
        }
        b = p->fill;
        p->fill = p->spare;
        p->spare = b;
        stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        mcpgw_events_batch_store(p->ev, b);
        if (stop)
            return NULL;
    }
}

int wsd_publisher_start(mcpgw_events *ev, struct wsd_publisher **out)
{
    struct wsd_publisher *p = calloc(1, sizeof(*p));
    int rc = -ENOMEM;

    if (!p)
        return -ENOMEM;
    p->ev = ev;
    if (!(p->fill = mcpgw_events_batch_new()) || !(p->spare = mcpgw_events_batch_new()))
        goto fail;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    if ((rc = -pthread_create(&p->thread, NULL, run, p)) < 0) {
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->mu);
        goto fail;
    }
    *out = p;
    return 0;
fail:
    mcpgw_events_batch_free(p->fill);
    mcpgw_events_batch_free(p->spare);
    free(p);
    return rc;
}

void wsd_publisher_stop(struct wsd_publisher *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    if (p->dropped)
        mcpgw_log_warn("websocket", "%llu events were dropped: the event store fell behind",
                       p->dropped);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    mcpgw_events_batch_free(p->fill);
    mcpgw_events_batch_free(p->spare);
    free(p);
}

unsigned long long wsd_publisher_dropped(struct wsd_publisher *p)
{
    unsigned long long n;

    pthread_mutex_lock(&p->mu);
    n = p->dropped;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* Lock p for adding one event: false (and the drop counted, mu released)
 * when the store is too far behind. */
static bool add_begin(struct wsd_publisher *p)
{
    bool log_drop = false;
    unsigned long long unlogged = 0;

    pthread_mutex_lock(&p->mu);
    if (mcpgw_events_batch_count(p->fill) < MCPGW_WS_EVENT_QUEUE_MAX &&
        mcpgw_events_batch_bytes(p->fill) < MCPGW_WS_EVENT_QUEUE_BYTES && !p->stop)
        return true;
    p->dropped++;
    p->drops_unlogged++;
    {
        int64_t now = mcpgw__mono_ms();

        if (now - p->drop_logged_at >= DROP_LOG_MS) {
            log_drop = true;
            unlogged = p->drops_unlogged;
            p->drops_unlogged = 0;
            p->drop_logged_at = now;
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (log_drop)
        mcpgw_log_warn("websocket", "event queue full (%d events or %u bytes): dropped %llu "
                       "events", MCPGW_WS_EVENT_QUEUE_MAX, MCPGW_WS_EVENT_QUEUE_BYTES, unlogged);
    return false;
}

unsigned wsd_publisher_kick(struct wsd_publisher *p, bool force)
{
    unsigned left = 0;
    size_t n;

    if (!p)
        return 0;
    pthread_mutex_lock(&p->mu);
    n = mcpgw_events_batch_count(p->fill);
    if (n && p->waiting) {
        if (force || n >= WSD_PUBLISH_BATCH)
            pthread_cond_signal(&p->cond);
        else
            left = (unsigned)n;
    }
    pthread_mutex_unlock(&p->mu);
    return left;
}

void wsd_publisher_observer(void *ud, const struct mcpgw_hub_event *h)
{
    struct wsd_publisher *p = ud;

    if (!add_begin(p))
        return;
    mcpgw_events_batch_add_hub(p->ev, p->fill, h);
    pthread_mutex_unlock(&p->mu);
}

void wsd_publisher_client(struct wsd_publisher *p, const char *client_id, const char *event,
                          const char *token_name)
{
    json_object *o = json_object_new_object();

    if (!o)
        return;
    json_object_object_add(o, "clientId", json_object_new_string(client_id));
    json_object_object_add(o, "event", json_object_new_string(event));
    if (token_name)
        json_object_object_add(o, "tokenName", json_object_new_string(token_name));
    if (add_begin(p)) {
        mcpgw_events_batch_add(p->ev, p->fill, "client", o);
        pthread_mutex_unlock(&p->mu);
    }
    json_object_put(o);
}
