/* publish.c - a publisher thread between the loop and the event store
 * (publish.h).
 *
 * The loop copies what an event needs - strings, numbers, a deep copy of
 * the arguments when they are published at all - into one allocation-owned
 * item, so no json-c object or hub string is shared between threads (json-c
 * reference counts are not atomic).
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
#define RUN_MAX 256

enum item_kind { IT_HUB, IT_CLIENT };

struct item {
    struct item *next;
    enum item_kind kind;
    struct mcpgw_hub_event hev;
    struct mcpgw_call_event call;
    struct mcpgw_server_health health;
    json_object *json;          /* IT_HUB: args copy; IT_CLIENT: the data */
    size_t used;                /* bytes of text taken */
    char text[];                /* copies of the strings the pointers above refer to */
};

struct wsd_publisher {
    mcpgw_events *ev;
    bool include_params;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct item *head, *tail;
    unsigned n;
    bool stop, waiting;         /* waiting: the thread sleeps on cond */
    unsigned long long dropped, drops_unlogged;
    int64_t drop_logged_at;
};

static void item_free(struct item *it)
{
    json_object_put(it->json);
    free(it);
}

static size_t room(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* A copy of s in it's text (room() was counted in). */
static const char *own(struct item *it, const char *s)
{
    size_t n;
    char *d;

    if (!s)
        return NULL;
    n = strlen(s) + 1;
    d = memcpy(it->text + it->used, s, n);
    it->used += n;
    return d;
}

static void *run(void *arg)
{
    struct wsd_publisher *p = arg;

    for (;;) {
        struct item *list, *it;
        bool stop;

        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stop) {
            p->waiting = true;
            pthread_cond_wait(&p->cond, &p->mu);
            p->waiting = false;
        }
        list = p->head;
        p->head = p->tail = NULL;
        p->n = 0;
        stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        /* Runs of hub events go to the store together (one append). */
        while (list) {
            const struct mcpgw_hub_event *run[RUN_MAX];
            size_t n = 0;

            for (it = list; it && it->kind == IT_HUB && n < RUN_MAX; it = it->next)
                run[n++] = &it->hev;
            if (n)
                mcpgw_events_hub_observe_many(p->ev, run, n);
            else
                mcpgw_events_publish(p->ev, "client", list->json, NULL);
            for (size_t k = 0; k < (n ? n : 1); k++) {
                it = list;
                list = it->next;
                item_free(it);
            }
        }
        if (stop)
            return NULL;
    }
}

int wsd_publisher_start(mcpgw_events *ev, bool include_params, struct wsd_publisher **out)
{
    struct wsd_publisher *p = calloc(1, sizeof(*p));
    int rc;

    if (!p)
        return -ENOMEM;
    p->ev = ev;
    p->include_params = include_params;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    if ((rc = pthread_create(&p->thread, NULL, run, p)) != 0) {
        pthread_cond_destroy(&p->cond);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return -rc;
    }
    *out = p;
    return 0;
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

static void enqueue(struct wsd_publisher *p, struct item *it)
{
    bool log_drop = false;
    unsigned long long unlogged = 0;

    pthread_mutex_lock(&p->mu);
    if (p->n >= MCPGW_WS_EVENT_QUEUE_MAX || p->stop) {
        int64_t now = mcpgw__mono_ms();

        p->dropped++;
        p->drops_unlogged++;
        if (now - p->drop_logged_at >= DROP_LOG_MS) {
            log_drop = true;
            unlogged = p->drops_unlogged;
            p->drops_unlogged = 0;
            p->drop_logged_at = now;
        }
        pthread_mutex_unlock(&p->mu);
        item_free(it);
        if (log_drop)
            mcpgw_log_warn("websocket", "event queue full (%d events): dropped %llu events",
                           MCPGW_WS_EVENT_QUEUE_MAX, unlogged);
        return;
    }
    it->next = NULL;
    if (p->tail)
        p->tail->next = it;
    else
        p->head = it;
    p->tail = it;
    p->n++;
    pthread_mutex_unlock(&p->mu);
}

unsigned wsd_publisher_kick(struct wsd_publisher *p, bool force)
{
    unsigned left = 0;

    if (!p)
        return 0;
    pthread_mutex_lock(&p->mu);
    if (p->head && p->waiting) {
        if (force || p->n >= WSD_PUBLISH_BATCH)
            pthread_cond_signal(&p->cond);
        else
            left = p->n;
    }
    pthread_mutex_unlock(&p->mu);
    return left;
}

void wsd_publisher_observer(void *ud, const struct mcpgw_hub_event *h)
{
    struct wsd_publisher *p = ud;
    const struct mcpgw_call_event *c = h->call;
    const struct mcpgw_server_health *hs = h->health;
    /* One allocation per event: it is made for every call start and end. */
    size_t n = room(h->server) + room(h->tool) + room(h->caller) + room(h->client_call_id) +
               room(h->transport) + (c ? room(c->message) + room(c->error) : 0) +
               (hs ? room(hs->id) + room(hs->protocol_version) : 0);
    struct item *it = calloc(1, sizeof(*it) + n);

    if (!it) {
        pthread_mutex_lock(&p->mu);
        p->dropped++;
        pthread_mutex_unlock(&p->mu);
        return;
    }
    it->kind = IT_HUB;
    it->hev = *h;
    it->hev.server = own(it, h->server);
    it->hev.tool = own(it, h->tool);
    it->hev.caller = own(it, h->caller);
    it->hev.client_call_id = own(it, h->client_call_id);
    it->hev.transport = own(it, h->transport);
    it->hev.args = NULL;
    if (h->kind == MCPGW_HUB_CALL_START && p->include_params && h->args &&
        json_object_deep_copy(h->args, &it->json, NULL) == 0)
        it->hev.args = it->json;
    if (c) {
        it->call = *c;
        it->call.result = NULL;         /* not published; not ours to share */
        it->call.message = own(it, c->message);
        it->call.error = own(it, c->error);
        it->hev.call = &it->call;
    }
    if (hs) {
        it->health = *hs;
        it->health.id = own(it, hs->id);
        it->health.protocol_version = own(it, hs->protocol_version);
        it->hev.health = &it->health;
    }
    enqueue(p, it);
}

void wsd_publisher_client(struct wsd_publisher *p, const char *client_id, const char *event,
                          const char *token_name)
{
    struct item *it = calloc(1, sizeof(*it));

    if (!it || !(it->json = json_object_new_object())) {
        free(it);
        return;
    }
    it->kind = IT_CLIENT;
    json_object_object_add(it->json, "clientId", json_object_new_string(client_id));
    json_object_object_add(it->json, "event", json_object_new_string(event));
    if (token_name)
        json_object_object_add(it->json, "tokenName", json_object_new_string(token_name));
    enqueue(p, it);
}
