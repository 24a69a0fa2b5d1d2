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

enum item_kind { IT_HUB, IT_CLIENT };

struct item {
    struct item *next;
    enum item_kind kind;
    struct mcpgw_hub_event hev;
    struct mcpgw_call_event call;
    struct mcpgw_server_health health;
    json_object *json;          /* IT_HUB: args copy; IT_CLIENT: the data */
    char *strs[8];              /* owned copies the pointers above refer to */
    int nstrs;
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
    for (int i = 0; i < it->nstrs; i++)
        free(it->strs[i]);
    json_object_put(it->json);
    free(it);
}

/* A copy of s owned by it; false when out of memory. */
static bool own(struct item *it, const char **dst, const char *s)
{
    if (!s) {
        *dst = NULL;
        return true;
    }
    if (it->nstrs == (int)(sizeof(it->strs) / sizeof(it->strs[0])) ||
        !(it->strs[it->nstrs] = strdup(s)))
        return false;
    *dst = it->strs[it->nstrs++];
    return true;
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
        while ((it = list)) {
            list = it->next;
            if (it->kind == IT_HUB)
                mcpgw_events_hub_observer(p->ev, &it->hev);
            else
                mcpgw_events_publish(p->ev, "client", it->json, NULL);
            item_free(it);
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
    struct item *it = calloc(1, sizeof(*it));

    if (!it)
        goto nomem;
    it->kind = IT_HUB;
    it->hev = *h;
    if (!own(it, &it->hev.server, h->server) || !own(it, &it->hev.tool, h->tool) ||
        !own(it, &it->hev.caller, h->caller) ||
        !own(it, &it->hev.client_call_id, h->client_call_id) ||
        !own(it, &it->hev.transport, h->transport))
        goto nomem;
    it->hev.args = NULL;
    if (h->kind == MCPGW_HUB_CALL_START && p->include_params && h->args &&
        json_object_deep_copy(h->args, &it->json, NULL) == 0)
        it->hev.args = it->json;
    if (h->call) {
        it->call = *h->call;
        it->call.result = NULL;         /* not published; not ours to share */
        if (!own(it, &it->call.message, h->call->message) ||
            !own(it, &it->call.error, h->call->error))
            goto nomem;
        it->hev.call = &it->call;
    }
    if (h->health) {
        it->health = *h->health;
        if (!own(it, &it->health.id, h->health->id) ||
            !own(it, &it->health.protocol_version, h->health->protocol_version))
            goto nomem;
        it->hev.health = &it->health;
    }
    enqueue(p, it);
    return;
nomem:
    if (it)
        item_free(it);
    pthread_mutex_lock(&p->mu);
    p->dropped++;
    pthread_mutex_unlock(&p->mu);
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
