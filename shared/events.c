/* events.c - the event stream's front: backend choice, the event text, the
 * drop accounting, the hub observer, and the gap event both backends use.
 *
 * An event's text is built here once, so both backends store the same
 * bytes and readers send them as they are.  A publish that fails is a drop,
 * never an error for the caller: the tool call it describes goes on.  Drops
 * are counted and logged - the first at once, then at most one summary
 * line per MCPGW__DROP_LOG_MS - so a store that is down cannot flood the log
 * at the rate of tool calls.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "events.h"
#include "events_file.h"
#include "events_internal.h"
#include "events_redis.h"
#include "hub.h"
#include "limits.h"
#include "log.h"

#define MCPGW__DROP_LOG_MS 10000

static const char comp[] = "events";

struct mcpgw_events {
    enum mcpgw_events_backend backend;
    struct mcpgw__evfile *file;
    struct mcpgw__evredis *redis;
    bool include_params;
    char tag[9];                /* this process's part of a callId */
    pthread_mutex_t mu;         /* the drop log below */
    uint64_t published, dropped;        /* __atomic */
    uint64_t drops_unlogged;
    int64_t drop_logged_at;
    char drop_reason[128];
};

struct mcpgw_events_reader {
    mcpgw_events *ev;
    struct mcpgw__evfile_reader *file;
    struct mcpgw__evredis_reader *redis;
};

/* ---- shared with the backends ---------------------------------------------- */

int64_t mcpgw__events_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mcpgw__events_u64(char *out, uint64_t v)
{
    snprintf(out, 21, "%" PRIu64, v);
}

bool mcpgw__events_parse_u64(const char *s, size_t len, uint64_t *v)
{
    uint64_t x = 0;

    if (len == 0 || len > 20 || (len > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned char)s[i] - '0';

        if (d > 9 || x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

bool mcpgw__events_is_tool_type(const char *type)
{
    return strcmp(type, "tool_call") == 0 || strcmp(type, "tool_progress") == 0 ||
           strcmp(type, "tool_result") == 0;
}

int mcpgw__events_gap(struct mcpgw_event *e, struct mcpgw_buf *scratch, const char *id,
                      const char *requested, const char *oldest)
{
    int rc;

    mcpgw_buf_reset(scratch);
    rc = mcpgw_buf_printf(scratch, "{\"type\":\"gap\",\"timestamp\":%" PRId64 ",\"data\":{"
                          "\"requested\":", mcpgw__events_now_ms());
    if (rc == 0)
        rc = mcpgw_buf_add_json_str(scratch, requested, strlen(requested));
    if (rc == 0)
        rc = mcpgw_buf_adds(scratch, ",\"oldest\":");
    if (rc == 0)
        rc = mcpgw_buf_add_json_str(scratch, oldest, strlen(oldest));
    if (rc == 0)
        rc = mcpgw_buf_adds(scratch, "}}");
    if (rc < 0)
        return rc;
    memset(e, 0, sizeof(*e));
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->type = "gap";
    e->json = scratch->ptr;
    e->json_len = scratch->len;
    return 0;
}

/* ---- open / close ----------------------------------------------------------- */

int mcpgw_events_open(const struct mcpgw_conf *conf, mcpgw_events **out, char *err,
                      size_t errlen)
{
    mcpgw_events *ev;
    unsigned char rnd[4];
    char dummy[1];
    int rc;

    *out = NULL;
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof(dummy);
    }
    err[0] = 0;
    if (!(ev = calloc(1, sizeof(*ev))))
        return -ENOMEM;
    pthread_mutex_init(&ev->mu, NULL);
    ev->backend = conf->events.backend;
    ev->include_params = conf->events.include_params;
    /* callIds must not collide between the processes of a deployment;
     * the hub's own ids count from 1 in each. */
    if (getrandom(rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd)) {
        uint32_t x = (uint32_t)getpid() * 2654435761u ^ (uint32_t)mcpgw__events_now_ms();

        memcpy(rnd, &x, sizeof(rnd));
    }
    snprintf(ev->tag, sizeof(ev->tag), "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    switch (ev->backend) {
    case MCPGW_EVENTS_FILE:
        rc = mcpgw__evfile_open(&conf->events, &ev->file, err, errlen);
        break;
    case MCPGW_EVENTS_REDIS:
        rc = mcpgw__evredis_open(&conf->events, &ev->redis, err, errlen);
        break;
    default:
        snprintf(err, errlen, "unknown events backend %d", (int)ev->backend);
        rc = MCPGW_ECONFIG;
    }
    if (rc < 0) {
        if (!err[0])
            snprintf(err, errlen, "cannot open the event store: %s", mcpgw_strerror(rc));
        pthread_mutex_destroy(&ev->mu);
        free(ev);
        return rc;
    }
    *out = ev;
    return 0;
}

void mcpgw_events_close(mcpgw_events *ev)
{
    if (!ev)
        return;
    pthread_mutex_lock(&ev->mu);
    if (ev->drops_unlogged)
        mcpgw_log_warn(comp, "dropped %" PRIu64 " more events: %s", ev->drops_unlogged,
                       ev->drop_reason);
    pthread_mutex_unlock(&ev->mu);
    mcpgw__evfile_close(ev->file);
    mcpgw__evredis_close(ev->redis);
    pthread_mutex_destroy(&ev->mu);
    free(ev);
}

/* ---- publishing ------------------------------------------------------------- */

/* Why an event was not stored, in the store's terms. */
static const char *drop_reason(const mcpgw_events *ev, int rc)
{
    bool redis = ev->backend == MCPGW_EVENTS_REDIS;

    switch (rc) {
    case MCPGW_EUNAVAIL: return "redis is unreachable";
    case MCPGW_EBUSY: return redis ? "redis did not answer in time"
                                   : "the event store's lock is held too long";
    case MCPGW_ETOOBIG: return "event too large";
    case MCPGW_EPROTO: return "redis refused it";
    case -EINVAL: return "invalid event type or data";
    default: return mcpgw_strerror(rc);
    }
}

static void count_drop(mcpgw_events *ev, const char *type, int rc)
{
    int64_t now = mcpgw__events_now_ms();

    __atomic_add_fetch(&ev->dropped, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&ev->mu);
    snprintf(ev->drop_reason, sizeof(ev->drop_reason), "%s", drop_reason(ev, rc));
    if (ev->drop_logged_at == 0) {
        mcpgw_log_warn(comp, "dropped a '%s' event: %s", type, ev->drop_reason);
        __atomic_store_n(&ev->drop_logged_at, now, __ATOMIC_RELAXED);
    } else if (now - ev->drop_logged_at >= MCPGW__DROP_LOG_MS) {
        mcpgw_log_warn(comp, "dropped %" PRIu64 " events in the last %" PRId64 " s: %s",
                       ev->drops_unlogged + 1, (now - ev->drop_logged_at) / 1000,
                       ev->drop_reason);
        ev->drops_unlogged = 0;
        __atomic_store_n(&ev->drop_logged_at, now, __ATOMIC_RELAXED);
    } else {
        ev->drops_unlogged++;
    }
    pthread_mutex_unlock(&ev->mu);
}

static void count_ok(mcpgw_events *ev, size_t n)
{
    __atomic_add_fetch(&ev->published, n, __ATOMIC_RELAXED);
    /* After an outage, say once that events flow again. */
    if (__atomic_load_n(&ev->drop_logged_at, __ATOMIC_RELAXED)) {
        pthread_mutex_lock(&ev->mu);
        if (ev->drop_logged_at) {
            if (ev->drops_unlogged)
                mcpgw_log_warn(comp, "dropped %" PRIu64 " more events: %s",
                               ev->drops_unlogged, ev->drop_reason);
            mcpgw_log_info(comp, "publishing events again");
            ev->drops_unlogged = 0;
            __atomic_store_n(&ev->drop_logged_at, 0, __ATOMIC_RELAXED);
        }
        pthread_mutex_unlock(&ev->mu);
    }
}

static bool type_ok(const char *type)
{
    size_t n = 0;

    for (const char *p = type; *p; p++, n++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '_') || n >= MCPGW__EVENT_TYPE_MAX)
            return false;
    return n > 0;
}

/* Store e[0..n) in order, counting each as published or dropped.  id (if
 * not NULL) gets the last stored one's id, or "" when none was. */
static void append(mcpgw_events *ev, const struct mcpgw__evrec *e, size_t n, char *id)
{
    size_t done = 0;
    int rc;

    if (id)
        id[0] = 0;
    if (ev->file) {
        uint64_t last;

        rc = mcpgw__evfile_append_many(ev->file, e, n, &done, &last);
        if (done && id)
            mcpgw__events_u64(id, last);
        if (done)
            count_ok(ev, done);
        for (size_t i = done; i < n; i++)
            count_drop(ev, e[i].type, rc);
        return;
    }
    /* Redis: one XADD each.  A refusal costs that event only; while Redis
     * is out (unreachable, or no answer in time), each further event is
     * dropped at once by the backend. */
    for (size_t i = 0; i < n; i++) {
        char rid[MCPGW_EVENT_ID_MAX + 1];

        rc = mcpgw__evredis_append(ev->redis, e[i].type, e[i].server_id, e[i].json,
                                   e[i].json_len, rid);
        if (rc < 0) {
            count_drop(ev, e[i].type, rc);
            continue;
        }
        count_ok(ev, 1);
        if (id)
            memcpy(id, rid, sizeof(rid));
    }
}

void mcpgw__events_store(mcpgw_events *ev, const struct mcpgw__evrec *e, size_t n)
{
    append(ev, e, n, NULL);
}

void mcpgw__events_drop(mcpgw_events *ev, const char *type, int rc)
{
    count_drop(ev, type, rc);
}

const char *mcpgw__events_tag(const mcpgw_events *ev)
{
    return ev->tag;
}

bool mcpgw__events_include_params(const mcpgw_events *ev)
{
    return ev->include_params;
}

int mcpgw__events_wrap(struct mcpgw_buf *b, const char *type, json_object *data,
                       const char **server_id)
{
    json_object *sid;
    const char *dj = "{}";
    size_t dlen = 2, mark = b->len;
    int rc;

    *server_id = NULL;
    if (!type_ok(type) || (data && !json_object_is_type(data, json_type_object)))
        return -EINVAL;
    if (data) {
        dj = json_object_to_json_string_length(data, JSON_C_TO_STRING_PLAIN |
                                               JSON_C_TO_STRING_NOSLASHESCAPE, &dlen);
        if (!dj)
            return -ENOMEM;
        if (json_object_object_get_ex(data, "serverId", &sid) &&
            json_object_is_type(sid, json_type_string) &&
            json_object_get_string_len(sid) > 0 &&
            json_object_get_string_len(sid) <= MCPGW_SERVER_ID_MAX)
            *server_id = json_object_get_string(sid);
    }
    rc = mcpgw_buf_adds(b, "{\"type\":\"");
    if (rc == 0)
        rc = mcpgw_buf_adds(b, type);
    if (rc == 0)
        rc = mcpgw_buf_adds(b, "\",\"timestamp\":");
    if (rc == 0)
        rc = mcpgw_buf_add_i64(b, mcpgw__events_now_ms());
    if (rc == 0)
        rc = mcpgw_buf_adds(b, ",\"data\":");
    if (rc == 0)
        rc = mcpgw_buf_add(b, dj, dlen);
    if (rc == 0)
        rc = mcpgw_buf_addc(b, '}');
    if (rc == 0 && b->len - mark > MCPGW_EVENT_BYTES_MAX)
        rc = MCPGW_ETOOBIG;
    if (rc < 0)
        b->len = mark;
    return rc;
}

const char *mcpgw__events_type_name(const char *type)
{
    return type_ok(type) ? type : "(invalid type)";
}

int mcpgw_events_publish(mcpgw_events *ev, const char *type, json_object *data, char *id)
{
    struct mcpgw_buf b;
    const char *server_id;
    int rc;

    if (id)
        id[0] = 0;
    mcpgw_buf_init(&b, MCPGW_EVENT_BYTES_MAX + 1);
    rc = mcpgw__events_wrap(&b, type, data, &server_id);
    if (rc == 0) {
        struct mcpgw__evrec e = { type, server_id, b.ptr, b.len, mcpgw__events_now_ms() };

        append(ev, &e, 1, id);
    } else {
        count_drop(ev, mcpgw__events_type_name(type), rc);
    }
    mcpgw_buf_release(&b);
    return 0;
}

/* ---- reading ---------------------------------------------------------------- */

int mcpgw_events_reader_open(mcpgw_events *ev, const char *last_id, mcpgw_events_reader **out)
{
    mcpgw_events_reader *r;
    int rc;

    *out = NULL;
    if (last_id && last_id[0] && !mcpgw_events_id_valid(ev, last_id))
        return -EINVAL;
    if (!(r = calloc(1, sizeof(*r))))
        return -ENOMEM;
    r->ev = ev;
    rc = ev->file ? mcpgw__evfile_reader_open(ev->file, last_id, &r->file)
                  : mcpgw__evredis_reader_open(ev->redis, last_id, &r->redis);
    if (rc < 0) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void mcpgw_events_reader_close(mcpgw_events_reader *r)
{
    if (!r)
        return;
    mcpgw__evfile_reader_close(r->file);
    mcpgw__evredis_reader_close(r->redis);
    free(r);
}

int mcpgw_events_read(mcpgw_events_reader *r, struct mcpgw_event *e, int timeout_ms)
{
    return r->file ? mcpgw__evfile_read(r->file, e, timeout_ms)
                   : mcpgw__evredis_read(r->redis, e, timeout_ms);
}

int mcpgw_events_reader_fd(const mcpgw_events_reader *r)
{
    return r->file ? mcpgw__evfile_reader_fd(r->file) : mcpgw__evredis_reader_fd(r->redis);
}

/* ---- ids -------------------------------------------------------------------- */

bool mcpgw_events_id_valid(const mcpgw_events *ev, const char *s)
{
    uint64_t v;

    if (!s)
        return false;
    if (ev->backend == MCPGW_EVENTS_REDIS)
        return mcpgw__evredis_id_parse(s, NULL);
    return mcpgw__events_parse_u64(s, strlen(s), &v) && v < UINT64_MAX;
}

int mcpgw_events_id_cmp(const mcpgw_events *ev, const char *a, const char *b)
{
    bool va = mcpgw_events_id_valid(ev, a), vb = mcpgw_events_id_valid(ev, b);

    if (!va || !vb)
        return va - vb;
    if (ev->backend == MCPGW_EVENTS_REDIS) {
        struct mcpgw__redis_id x, y;

        mcpgw__evredis_id_parse(a, &x);
        mcpgw__evredis_id_parse(b, &y);
        return mcpgw__evredis_id_order(&x, &y);
    } else {
        size_t la = strlen(a), lb = strlen(b);
        int c;

        /* Decimal without leading zeros: longer is larger. */
        if (la != lb)
            return la < lb ? -1 : 1;
        c = strcmp(a, b);
        return (c > 0) - (c < 0);
    }
}

void mcpgw_events_stats(mcpgw_events *ev, struct mcpgw_events_stats *st)
{
    memset(st, 0, sizeof(*st));
    st->published = __atomic_load_n(&ev->published, __ATOMIC_RELAXED);
    st->dropped = __atomic_load_n(&ev->dropped, __ATOMIC_RELAXED);
    if (ev->file) {
        uint64_t o, n;

        if (mcpgw__evfile_bounds(ev->file, &o, &n) == 0 && o) {
            mcpgw__events_u64(st->oldest, o);
            mcpgw__events_u64(st->newest, n);
        }
    } else {
        mcpgw__evredis_bounds(ev->redis, st->oldest, st->newest);
    }
}
