/* events_redis.c - the event stream on Redis Streams (hiredis).
 *
 * WHY A SCRIPT.  XADD ... MAXLEN ~ alone trims by count only, and silently:
 * a reader could not tell that what it asked for is gone.  The publish
 * script appends and trims in one atomic step and keeps, in <key>:meta,
 *   seq        a dense counter; every entry carries its number as field q
 *   bytes      the size of the event texts the stream holds
 *   trimmedId  the id (and trimmedSeq its q) of the last entry retention removed
 * so retention can honour count, age (stream ids are Redis's ms clock) and
 * bytes exactly, and a reader knows when it missed something: the q it
 * sees is not the one it expected.  Trimming deletes at most TRIM_BATCH
 * entries per publish, so a lowered limit never makes one call long.
 *
 * READERS.  Each reader has its own connection with one XREAD BLOCK
 * outstanding while it waits, driven without blocking the caller: the
 * command is written, the socket polled (through the reader's epoll fd,
 * which also holds a timerfd for reconnecting), the reply parsed when it is
 * complete.  Entries are XREAD from the last id delivered, so a reconnect
 * (to the same or a restarted Redis) resumes exactly; a restarted Redis that
 * lost the stream shows up as a sequence that went back - a gap, reported.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "buf.h"
#include "err.h"
#include "events_internal.h"
#include "events_redis.h"
#include "limits.h"
#include "log.h"
#include "theap.h"

static const char comp[] = "events";

#define TRIM_BATCH "100"
#define XREAD_COUNT "256"
#define XREAD_BLOCK_MS "10000"

/* KEYS: stream, meta.  ARGV: type, serverId, json, maxEvents, maxBytes,
 * maxAgeMs.  Returns {id, seq}.  The newest entry is never trimmed. */
static const char publish_lua[] =
    "local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)\n"
    "local id = redis.call('XADD', KEYS[1], '*', 'q', seq, 't', ARGV[1], 's', ARGV[2],"
    " 'e', ARGV[3])\n"
    "local bytes = redis.call('HINCRBY', KEYS[2], 'bytes', #ARGV[3])\n"
    "local n = redis.call('XLEN', KEYS[1])\n"
    "local maxn, maxb = tonumber(ARGV[4]), tonumber(ARGV[5])\n"
    "local t = redis.call('TIME')\n"
    "local cutoff = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)"
    " - tonumber(ARGV[6])\n"
    "local done = 0\n"
    "while n > 1 and done < " TRIM_BATCH " do\n"
    "  local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]\n"
    "  local ms = tonumber(string.match(head[1], '^(%d+)-'))\n"
    "  if n <= maxn and bytes <= maxb and ms >= cutoff then break end\n"
    "  local f, sz, q = head[2], 0, '0'\n"
    "  for i = 1, #f, 2 do\n"
    "    if f[i] == 'e' then sz = #f[i + 1] elseif f[i] == 'q' then q = f[i + 1] end\n"
    "  end\n"
    "  redis.call('XDEL', KEYS[1], head[1])\n"
    "  redis.call('HSET', KEYS[2], 'trimmedId', head[1], 'trimmedSeq', q)\n"
    "  bytes = redis.call('HINCRBY', KEYS[2], 'bytes', -sz)\n"
    "  n = n - 1\n"
    "  done = done + 1\n"
    "end\n"
    "return {id, seq}\n";

/* KEYS: stream, meta.  ARGV: an id or "".  One consistent snapshot for a
 * reader to start from: {trimmedId, trimmedSeq, lastId, lastSeq, seqOfId}. */
static const char open_lua[] =
    "local function seqof(e)\n"
    "  if not e then return false end\n"
    "  for i = 1, #e[2], 2 do if e[2][i] == 'q' then return e[2][i + 1] end end\n"
    "  return false\n"
    "end\n"
    "local m = redis.call('HMGET', KEYS[2], 'trimmedId', 'trimmedSeq')\n"
    "local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]\n"
    "local x = false\n"
    "if ARGV[1] ~= '' then x = seqof(redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]) end\n"
    "return {m[1] or false, m[2] or false, last and last[1] or false, seqof(last), x}\n";

/* ---- ids -------------------------------------------------------------------- */

bool mcpgw__evredis_id_parse(const char *s, struct mcpgw__redis_id *id)
{
    const char *dash = s ? strchr(s, '-') : NULL;
    struct mcpgw__redis_id x;

    if (!dash || !mcpgw__events_parse_u64(s, (size_t)(dash - s), &x.ms) ||
        !mcpgw__events_parse_u64(dash + 1, strlen(dash + 1), &x.seq))
        return false;
    if (id)
        *id = x;
    return true;
}

int mcpgw__evredis_id_order(const struct mcpgw__redis_id *a, const struct mcpgw__redis_id *b)
{
    if (a->ms != b->ms)
        return a->ms < b->ms ? -1 : 1;
    if (a->seq != b->seq)
        return a->seq < b->seq ? -1 : 1;
    return 0;
}

/* The id just before s (s valid, not 0-0). */
static void id_pred(const char *s, char *out, size_t n)
{
    struct mcpgw__redis_id x = { 0, 0 };

    mcpgw__evredis_id_parse(s, &x);
    if (x.seq > 0)
        x.seq--;
    else if (x.ms > 0) {
        x.ms--;
        x.seq = UINT64_MAX;
    }
    snprintf(out, n, "%" PRIu64 "-%" PRIu64, x.ms, x.seq);
}

static struct timeval tv_ms(int ms)
{
    struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

    return tv;
}

/* ---- the store -------------------------------------------------------------- */

struct tail;
static void tail_free(struct tail *t);

struct mcpgw__evredis {
    struct tail *tail;          /* readers' shared follower, made with the first */
    char *host, *key, *meta;
    int port;
    char max_events[24], max_bytes[24], max_age[24];
    pthread_mutex_t mu;         /* everything below */
    redisContext *c;
    char sha[48];               /* publish script, "" until loaded */
    int64_t retry_at;           /* mono ms: no connection attempt before */
    int retry_delay;
    bool down_logged;
};

static void backoff(int64_t *at, int *delay)
{
    *delay = *delay ? *delay * 2 : MCPGW_EVENTS_RETRY_MIN;
    if (*delay > MCPGW_EVENTS_RETRY_MAX)
        *delay = MCPGW_EVENTS_RETRY_MAX;
    *at = mcpgw__mono_ms() + *delay;
}

/* Connect with the bounded timeouts.  NULL with a reason in why. */
static redisContext *connect_to(const char *host, int port, int timeout_ms, char *why,
                                size_t n)
{
    redisContext *c = redisConnectWithTimeout(host, port,
                                              tv_ms(MCPGW_EVENTS_REDIS_CONNECT_TIMEOUT));

    if (!c) {
        snprintf(why, n, "out of memory");
        return NULL;
    }
    if (c->err) {
        snprintf(why, n, "%s", c->errstr);
        redisFree(c);
        return NULL;
    }
    if (redisSetTimeout(c, tv_ms(timeout_ms)) != REDIS_OK) {
        snprintf(why, n, "cannot set a timeout: %s", c->errstr);
        redisFree(c);
        return NULL;
    }
    redisEnableKeepAlive(c);
    return c;
}

static void drop_conn(struct mcpgw__evredis *r, const char *why)
{
    if (!r->down_logged) {
        mcpgw_log_warn(comp, "redis %s:%d: %s", r->host, r->port, why);
        r->down_logged = true;
    }
    if (r->c)
        redisFree(r->c);
    r->c = NULL;
    r->sha[0] = 0;
    backoff(&r->retry_at, &r->retry_delay);
}

/* Under mu: a connection with the script loaded, or an error. */
static int ensure_conn(struct mcpgw__evredis *r)
{
    char why[160];
    redisReply *rep;

    if (!r->c) {
        if (mcpgw__mono_ms() < r->retry_at)
            return MCPGW_EUNAVAIL;
        if (!(r->c = connect_to(r->host, r->port, MCPGW_EVENTS_PUBLISH_WAIT, why, sizeof(why)))) {
            drop_conn(r, why);
            return MCPGW_EUNAVAIL;
        }
    }
    if (r->sha[0])
        return 0;
    {
        const char *argv[] = { "SCRIPT", "LOAD", publish_lua };
        size_t lens[] = { 6, 4, sizeof(publish_lua) - 1 };

        rep = redisCommandArgv(r->c, 3, argv, lens);
    }
    if (!rep) {
        drop_conn(r, r->c->errstr);
        return MCPGW_EUNAVAIL;
    }
    if (rep->type != REDIS_REPLY_STRING || rep->len >= (int)sizeof(r->sha)) {
        snprintf(why, sizeof(why), "cannot load the publish script: %s",
                 rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        freeReplyObject(rep);
        drop_conn(r, why);
        return MCPGW_EPROTO;
    }
    memcpy(r->sha, rep->str, (size_t)rep->len + 1);
    freeReplyObject(rep);
    if (r->down_logged) {
        mcpgw_log_info(comp, "redis %s:%d: connected", r->host, r->port);
        r->down_logged = false;
    }
    r->retry_delay = 0;
    return 0;
}

int mcpgw__evredis_append(struct mcpgw__evredis *r, const char *type, const char *server_id,
                          const char *json, size_t json_len, char *id)
{
    redisReply *rep = NULL;
    struct timespec ts;
    int rc;

    id[0] = 0;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)MCPGW_EVENTS_PUBLISH_WAIT * 1000000L;
    ts.tv_sec += ts.tv_nsec / 1000000000L;
    ts.tv_nsec %= 1000000000L;
    if ((rc = pthread_mutex_timedlock(&r->mu, &ts)) != 0)
        return rc == ETIMEDOUT ? MCPGW_EBUSY : -rc;
    for (int attempt = 0; attempt < 2; attempt++) {
        const char *argv[] = { "EVALSHA", r->sha, "2", r->key, r->meta, type,
                               server_id ? server_id : "", json, r->max_events, r->max_bytes,
                               r->max_age };
        size_t lens[11];

        if ((rc = ensure_conn(r)) < 0)
            goto out;
        for (int i = 0; i < 11; i++)
            lens[i] = i == 7 ? json_len : strlen(argv[i]);
        if (!(rep = redisCommandArgv(r->c, 11, argv, lens))) {
            /* A timeout leaves a reply in flight: the connection is done. */
            drop_conn(r, r->c->errstr);
            rc = MCPGW_EUNAVAIL;
            goto out;
        }
        if (rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
            /* SCRIPT FLUSH, or a restarted Redis behind a proxy. */
            freeReplyObject(rep);
            rep = NULL;
            r->sha[0] = 0;
            continue;
        }
        break;
    }
    if (!rep) {
        rc = MCPGW_EPROTO;
        goto out;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        mcpgw_log_warn(comp, "redis refused an event: %s", rep->str);
        rc = MCPGW_EPROTO;
    } else if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
               rep->element[0]->type != REDIS_REPLY_STRING ||
               rep->element[0]->len > MCPGW_EVENT_ID_MAX) {
        rc = MCPGW_EPROTO;
    } else {
        memcpy(id, rep->element[0]->str, (size_t)rep->element[0]->len + 1);
        rc = 0;
    }
out:
    if (rep)
        freeReplyObject(rep);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static void first_str(redisReply *rep, char *out, size_t n)
{
    redisReply *e;

    out[0] = 0;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
        (e = rep->element[0])->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
        e->element[0]->type == REDIS_REPLY_STRING && (size_t)e->element[0]->len < n)
        memcpy(out, e->element[0]->str, (size_t)e->element[0]->len + 1);
}

void mcpgw__evredis_bounds(struct mcpgw__evredis *r, char *oldest, char *newest)
{
    redisReply *a, *b;

    oldest[0] = newest[0] = 0;
    pthread_mutex_lock(&r->mu);
    if (ensure_conn(r) == 0) {
        a = redisCommand(r->c, "XRANGE %s - + COUNT 1", r->key);
        b = a ? redisCommand(r->c, "XREVRANGE %s + - COUNT 1", r->key) : NULL;
        if (!a || !b)
            drop_conn(r, r->c->errstr);
        first_str(a, oldest, MCPGW_EVENT_ID_MAX + 1);
        first_str(b, newest, MCPGW_EVENT_ID_MAX + 1);
        if (a)
            freeReplyObject(a);
        if (b)
            freeReplyObject(b);
    }
    pthread_mutex_unlock(&r->mu);
}

int mcpgw__evredis_open(const struct mcpgw_conf_events *c, struct mcpgw__evredis **out,
                        char *err, size_t errlen)
{
    struct mcpgw__evredis *r;
    const char *key = c->redis_key ? c->redis_key : "mcpgw:events";
    size_t klen = strlen(key);

    *out = NULL;
    if (klen == 0 || klen > 200) {
        snprintf(err, errlen, "events.redis.key must be 1 to 200 bytes");
        return MCPGW_ECONFIG;
    }
    if (!(r = calloc(1, sizeof(*r))))
        return -ENOMEM;
    pthread_mutex_init(&r->mu, NULL);
    r->port = c->redis_port > 0 ? c->redis_port : 6379;
    r->host = strdup(c->redis_host ? c->redis_host : "127.0.0.1");
    r->key = strdup(key);
    r->meta = malloc(klen + sizeof(":meta"));
    if (!r->host || !r->key || !r->meta) {
        mcpgw__evredis_close(r);
        return -ENOMEM;
    }
    memcpy(r->meta, key, klen);
    memcpy(r->meta + klen, ":meta", sizeof(":meta"));
    snprintf(r->max_events, sizeof(r->max_events), "%d",
             c->max_events > 0 ? c->max_events : MCPGW_EVENTS_COUNT_DEFAULT);
    snprintf(r->max_bytes, sizeof(r->max_bytes), "%zu",
             c->max_bytes > 0 ? c->max_bytes : (size_t)MCPGW_EVENTS_BYTES_DEFAULT);
    snprintf(r->max_age, sizeof(r->max_age), "%d",
             c->max_age_ms > 0 ? c->max_age_ms : MCPGW_EVENTS_AGE_DEFAULT);
    *out = r;
    return 0;
}

void mcpgw__evredis_close(struct mcpgw__evredis *r)
{
    if (!r)
        return;
    tail_free(r->tail);
    if (r->c)
        redisFree(r->c);
    free(r->host);
    free(r->key);
    free(r->meta);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* ---- the shared tail: one XREAD BLOCK per process -------------------------------
 *
 * A connection per reader would make Redis answer one XREAD per reader per
 * event (and each reader send the next): with 1,000 readers that is 200,000
 * commands a second at 200 events/s, and latency grows to hundreds of ms.
 * So one thread per handle follows the stream's tail on one connection and
 * keeps the newest entries in a ring; readers at the tail take them from
 * there.  A reader that is behind the ring (resuming from an older id, or
 * too slow) reads from Redis on a connection of its own until it reaches the
 * ring, then drops that connection. */

struct ent {
    int refs;                   /* __atomic: the ring's and readers' */
    struct mcpgw__redis_id rid;
    char id[MCPGW_EVENT_ID_MAX + 1];
    uint64_t q;
    size_t size;
    char *type, *sid, *json;    /* in the same allocation */
    size_t json_len;
};

static void ent_put(struct ent *e)
{
    if (e && __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(e);
}

/* An entry of an XREAD reply, [id, [field, value, ...]], as a ring entry;
 * NULL for one that is not ours (or no memory). */
static struct ent *ent_from(redisReply *r)
{
    const redisReply *t = NULL, *s = NULL, *j = NULL, *q = NULL, *f;
    struct ent *e;
    size_t tl, sl;
    long long qq;
    char *p;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[0]->len > MCPGW_EVENT_ID_MAX ||
        r->element[1]->type != REDIS_REPLY_ARRAY)
        return NULL;
    f = r->element[1];
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *k = f->element[i], *v = f->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 1)
            continue;
        switch (k->str[0]) {
        case 'q': q = v; break;
        case 't': t = v; break;
        case 's': s = v; break;
        case 'e': j = v; break;
        }
    }
    if (!t || !j || !q || t->len == 0 || t->len > MCPGW__EVENT_TYPE_MAX ||
        (qq = strtoll(q->str, NULL, 10)) <= 0)
        return NULL;
    tl = (size_t)t->len;
    sl = s ? (size_t)s->len : 0;
    if (!(e = malloc(sizeof(*e) + tl + 1 + sl + 1 + (size_t)j->len + 1)))
        return NULL;
    e->refs = 1;
    memcpy(e->id, r->element[0]->str, (size_t)r->element[0]->len + 1);
    if (!mcpgw__evredis_id_parse(e->id, &e->rid)) {
        free(e);
        return NULL;
    }
    e->q = (uint64_t)qq;
    p = (char *)(e + 1);
    e->type = p;
    memcpy(p, t->str, tl + 1);
    p += tl + 1;
    e->sid = sl ? p : NULL;
    if (sl)
        memcpy(p, s->str, sl);
    p[sl] = 0;
    p += sl + 1;
    e->json = p;
    e->json_len = (size_t)j->len;
    memcpy(p, j->str, e->json_len + 1);
    e->size = sizeof(*e) + tl + sl + e->json_len + 3;
    return e;
}

struct mcpgw__evredis_reader {
    int efd;                    /* the tail pokes it when there is news */
    struct mcpgw__evredis *r;
    redisContext *c;            /* own connection: positioning and catching up */
    /* M_CHECK: use the ring if it reaches back to last, else catch up;
     * M_ENTER: use the ring from last on (caught up to the stream's end);
     * M_RING: in the ring at rpos; M_CATCHUP: reading Redis directly. */
    enum { M_CHECK, M_ENTER, M_RING, M_CATCHUP } mode;
    uint64_t rpos;              /* M_RING: ring index of the next entry to look at */
    struct ent *cur;            /* the entry handed out last (held until the next read) */
    redisReply *reply;          /* catching up: the last XREAD's entries */
    size_t idx;
    bool positioned;
    int64_t opened_ms;          /* wall clock when opened "from now" without Redis */
    bool have_after;
    char after[MCPGW_EVENT_ID_MAX + 1];     /* the id asked after */
    char last[MCPGW_EVENT_ID_MAX + 1];      /* the last id delivered (or the position) */
    uint64_t expect;            /* q expected next; 0: any */
    bool gap_first;             /* report a gap before the next entry */
    char gap_req[MCPGW_EVENT_ID_MAX + 1];
    int64_t retry_at;
    int retry_delay;
    struct mcpgw_buf scratch;
};

#define RING_ENTRIES 4096
#define RING_BYTES (16u * 1024 * 1024)

struct tail {
    pthread_mutex_t mu;         /* everything below */
    struct ent *v[RING_ENTRIES];
    size_t head, n, bytes;
    uint64_t seq0;              /* ring index of v[head]; grows forever */
    bool have_base;
    struct mcpgw__redis_id base;        /* all entries after base are in the ring */
    char last[MCPGW_EVENT_ID_MAX + 1];  /* XREAD from here */
    struct mcpgw__evredis_reader **readers;
    size_t nreaders, capreaders;
    pthread_t thr;
    bool started;
    int stopfd;
};

static void tail_poke(struct tail *t)
{
    uint64_t one = 1;

    /* Under t->mu. */
    for (size_t i = 0; i < t->nreaders; i++)
        if (write(t->readers[i]->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            mcpgw_log_debug(comp, "cannot wake a reader: %s", strerror(errno));
}

static void tail_push(struct tail *t, struct ent *e)
{
    while (t->n && (t->n == RING_ENTRIES || t->bytes + e->size > RING_BYTES)) {
        struct ent *old = t->v[t->head];

        t->base = old->rid;         /* readers after it still find all in the ring */
        t->bytes -= old->size;
        ent_put(old);
        t->head = (t->head + 1) % RING_ENTRIES;
        t->n--;
        t->seq0++;
    }
    t->v[(t->head + t->n) % RING_ENTRIES] = e;
    t->n++;
    t->bytes += e->size;
    snprintf(t->last, sizeof(t->last), "%s", e->id);
}

/* Wait up to ms for stopfd; true if stopping. */
static bool tail_sleep(struct tail *t, int ms)
{
    struct pollfd p = { .fd = t->stopfd, .events = POLLIN };

    return poll(&p, 1, ms) > 0;
}

static void *tail_main(void *arg)
{
    struct mcpgw__evredis *r = arg;
    struct tail *t = r->tail;
    redisContext *c = NULL;
    int delay = 0;
    char why[160];

    for (;;) {
        void *reply = NULL;

        if (!c) {
            if (!(c = connect_to(r->host, r->port, 1000, why, sizeof(why)))) {
                delay = delay ? delay * 2 : MCPGW_EVENTS_RETRY_MIN;
                if (delay > MCPGW_EVENTS_RETRY_MAX)
                    delay = MCPGW_EVENTS_RETRY_MAX;
                if (tail_sleep(t, delay))
                    break;
                continue;
            }
            delay = 0;
            pthread_mutex_lock(&t->mu);
            if (!t->have_base) {
                /* Start at the stream's end, as of now. */
                redisReply *rep = redisCommand(c, "XREVRANGE %s + - COUNT 1", r->key);
                char id[MCPGW_EVENT_ID_MAX + 1];

                if (!rep) {
                    pthread_mutex_unlock(&t->mu);
                    redisFree(c);
                    c = NULL;
                    continue;
                }
                first_str(rep, id, sizeof(id));
                freeReplyObject(rep);
                if (!id[0])
                    snprintf(id, sizeof(id), "0-0");
                mcpgw__evredis_id_parse(id, &t->base);
                snprintf(t->last, sizeof(t->last), "%s", id);
                t->have_base = true;
            }
            /* Readers waiting for Redis try again now. */
            tail_poke(t);
            pthread_mutex_unlock(&t->mu);
        }
        {
            char last[MCPGW_EVENT_ID_MAX + 1];
            const char *argv[] = { "XREAD", "COUNT", XREAD_COUNT, "BLOCK", XREAD_BLOCK_MS,
                                   "STREAMS", r->key, last };
            struct pollfd p[2] = { { .fd = t->stopfd, .events = POLLIN },
                                   { .fd = c->fd, .events = POLLIN } };
            int done = 0;

            pthread_mutex_lock(&t->mu);
            snprintf(last, sizeof(last), "%s", t->last);
            pthread_mutex_unlock(&t->mu);
            if (redisAppendCommandArgv(c, 8, argv, NULL) != REDIS_OK)
                goto lost;
            while (!done)
                if (redisBufferWrite(c, &done) != REDIS_OK)
                    goto lost;
            while (!reply) {
                if (poll(p, 2, -1) < 0 && errno != EINTR)
                    goto lost;
                if (p[0].revents)
                    goto out;
                if (!p[1].revents)
                    continue;
                if (redisBufferRead(c) != REDIS_OK || redisGetReplyFromReader(c, &reply) != REDIS_OK)
                    goto lost;
            }
        }
        if (((redisReply *)reply)->type == REDIS_REPLY_ARRAY) {
            redisReply *rep = reply, *ents;

            ents = rep->elements == 1 && rep->element[0]->type == REDIS_REPLY_ARRAY &&
                   rep->element[0]->elements == 2 ? rep->element[0]->element[1] : NULL;
            pthread_mutex_lock(&t->mu);
            for (size_t i = 0; ents && ents->type == REDIS_REPLY_ARRAY && i < ents->elements; i++) {
                struct ent *e = ent_from(ents->element[i]);

                if (e)
                    tail_push(t, e);
                else if (ents->element[i]->type == REDIS_REPLY_ARRAY &&
                         ents->element[i]->elements >= 1 &&
                         ents->element[i]->element[0]->type == REDIS_REPLY_STRING &&
                         ents->element[i]->element[0]->len <= MCPGW_EVENT_ID_MAX)
                    /* Not ours, or no memory: step over it. */
                    memcpy(t->last, ents->element[i]->element[0]->str,
                           (size_t)ents->element[i]->element[0]->len + 1);
            }
            tail_poke(t);
            pthread_mutex_unlock(&t->mu);
        } else if (((redisReply *)reply)->type == REDIS_REPLY_ERROR) {
            mcpgw_log_warn(comp, "redis XREAD failed: %s", ((redisReply *)reply)->str);
            freeReplyObject(reply);
            goto lost;
        }
        freeReplyObject(reply);
        continue;
lost:
        mcpgw_log_debug(comp, "event tail lost redis %s:%d: %s", r->host, r->port,
                        c->errstr[0] ? c->errstr : "connection lost");
        redisFree(c);
        c = NULL;
        if (tail_sleep(t, MCPGW_EVENTS_RETRY_MIN))
            break;
    }
out:
    if (c)
        redisFree(c);
    return NULL;
}

static void tail_free(struct tail *t)
{
    if (!t)
        return;
    if (t->started) {
        uint64_t one = 1;

        if (write(t->stopfd, &one, sizeof(one)) < 0)
            mcpgw_log_error(comp, "cannot stop the event tail: %s", strerror(errno));
        pthread_join(t->thr, NULL);
    }
    if (t->stopfd >= 0)
        close(t->stopfd);
    for (size_t i = 0; i < t->n; i++)
        ent_put(t->v[(t->head + i) % RING_ENTRIES]);
    free(t->readers);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* ---- readers ---------------------------------------------------------------- */

static void rd_disconnect(struct mcpgw__evredis_reader *rd, const char *why)
{
    if (rd->c) {
        mcpgw_log_debug(comp, "reader lost redis %s:%d: %s", rd->r->host, rd->r->port, why);
        redisFree(rd->c);
        rd->c = NULL;
    }
    backoff(&rd->retry_at, &rd->retry_delay);
}

static long long reply_ll(const redisReply *e)
{
    return e && e->type == REDIS_REPLY_STRING ? strtoll(e->str, NULL, 10)
           : e && e->type == REDIS_REPLY_INTEGER ? e->integer : -1;
}

static const char *reply_str(const redisReply *e)
{
    return e && e->type == REDIS_REPLY_STRING && e->len <= MCPGW_EVENT_ID_MAX ? e->str : NULL;
}

/* Where to read from: the snapshot of open_lua.  0, or -1 (connection
 * dropped). */
static int rd_position(struct mcpgw__evredis_reader *rd)
{
    const char *argv[] = { "EVAL", open_lua, "2", rd->r->key, rd->r->meta,
                           rd->have_after ? rd->after : "" };
    redisReply *rep = redisCommandArgv(rd->c, 6, argv, NULL);
    const char *trimmed, *lastid;
    long long tseq, lseq, xseq;

    if (!rep) {
        rd_disconnect(rd, rd->c->errstr);
        return -1;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 5) {
        mcpgw_log_warn(comp, "redis cannot open a reader: %s",
                       rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
        freeReplyObject(rep);
        rd_disconnect(rd, "bad reply");
        return -1;
    }
    trimmed = reply_str(rep->element[0]);
    tseq = reply_ll(rep->element[1]);
    lastid = reply_str(rep->element[2]);
    lseq = reply_ll(rep->element[3]);
    xseq = reply_ll(rep->element[4]);
    rd->expect = 0;
    rd->gap_first = false;
    if (!rd->have_after && rd->opened_ms) {
        /* Opened "from now" while Redis was away: now was when we were
         * opened, in Redis's ids (ms of the clock; hosts keep theirs in
         * step with NTP). */
        snprintf(rd->last, sizeof(rd->last), "%" PRId64 "-0", rd->opened_ms);
    } else if (!rd->have_after) {
        snprintf(rd->last, sizeof(rd->last), "%s", lastid ? lastid : "0-0");
        if (lastid && lseq > 0)
            rd->expect = (uint64_t)lseq + 1;
    } else if (xseq > 0) {
        snprintf(rd->last, sizeof(rd->last), "%s", rd->after);
        rd->expect = (uint64_t)xseq + 1;
    } else if (trimmed && strcmp(trimmed, rd->after) == 0) {
        snprintf(rd->last, sizeof(rd->last), "%s", rd->after);
        if (tseq > 0)
            rd->expect = (uint64_t)tseq + 1;
    } else {
        /* Trimmed after it was seen, or never an id of this stream (a
         * Redis that restarted empty, a forged header): all that is held
         * is new to the reader, after a gap that says so. */
        snprintf(rd->last, sizeof(rd->last), "0-0");
        rd->gap_first = true;
        snprintf(rd->gap_req, sizeof(rd->gap_req), "%s", rd->after);
    }
    freeReplyObject(rep);
    rd->positioned = true;
    rd->mode = M_CHECK;
    return 0;
}

static int rd_connect(struct mcpgw__evredis_reader *rd)
{
    char why[160];

    if (rd->c)
        return 0;
    if (rd->retry_at && mcpgw__mono_ms() < rd->retry_at)
        return -1;
    /* Positioning is one short script, catching up one XREAD. */
    if (!(rd->c = connect_to(rd->r->host, rd->r->port, 1000, why, sizeof(why)))) {
        rd_disconnect(rd, why);
        return -1;
    }
    rd->retry_delay = 0;
    rd->retry_at = 0;
    return 0;
}

/* Hand out entry e (its id, q) after the gap and sequence checks:
 * 1 with *ev filled (the entry, or a gap before it: then *used is false
 * and the entry comes again on the next read), or -ENOMEM. */
static int rd_deliver(struct mcpgw__evredis_reader *rd, const char *id, uint64_t q,
                      const char *type, const char *sid, const char *json, size_t json_len,
                      struct mcpgw_event *ev, bool *used)
{
    *used = false;
    if (rd->gap_first || (rd->expect && q != rd->expect)) {
        char gid[MCPGW_EVENT_ID_MAX + 1];

        /* Tell the gap now; the entry comes on the next read. */
        id_pred(id, gid, sizeof(gid));
        if (mcpgw__events_gap(ev, &rd->scratch, gid, rd->gap_first ? rd->gap_req : rd->last,
                              id) < 0)
            return -ENOMEM;
        rd->gap_first = false;
        rd->expect = q;
        snprintf(rd->last, sizeof(rd->last), "%s", gid);
        return 1;
    }
    memset(ev, 0, sizeof(*ev));
    snprintf(ev->id, sizeof(ev->id), "%s", id);
    ev->type = type;
    ev->json = json;
    ev->json_len = json_len;
    ev->server_id = sid;
    ev->is_tool_event = mcpgw__events_is_tool_type(type);
    rd->expect = q + 1;
    snprintf(rd->last, sizeof(rd->last), "%s", id);
    *used = true;
    return 1;
}

/* From the ring: 1 (an event or a gap), 0 nothing new, 2 the ring does
 * not hold what comes next (catch up from Redis). */
static int rd_from_ring(struct mcpgw__evredis_reader *rd, struct mcpgw_event *ev)
{
    struct tail *t = rd->r->tail;
    struct mcpgw__redis_id last;
    struct ent *e = NULL;
    bool used;
    int rc;

    if (!mcpgw__evredis_id_parse(rd->last, &last))
        return 2;
    pthread_mutex_lock(&t->mu);
    if (!t->have_base) {
        pthread_mutex_unlock(&t->mu);
        /* The tail has not reached Redis yet: read it ourselves, or wait
         * for the tail's poke when we already did. */
        return rd->mode == M_CHECK ? 2 : 0;
    }
    if (rd->mode != M_RING) {
        rd->rpos = t->seq0;
        rd->mode = M_RING;
    }
    /* Skip what we have: entering, and also later - the tail may add
     * entries we already got from Redis directly (or at positioning). */
    while (rd->rpos >= t->seq0 && rd->rpos < t->seq0 + t->n &&
           mcpgw__evredis_id_order(&t->v[(t->head + (rd->rpos - t->seq0)) % RING_ENTRIES]->rid,
                                   &last) <= 0)
        rd->rpos++;
    /* Too slow (the ring moved past us), or before the ring's start: what
     * lies between is in Redis only. */
    if (rd->rpos < t->seq0 ||
        (rd->rpos == t->seq0 && mcpgw__evredis_id_order(&last, &t->base) < 0)) {
        pthread_mutex_unlock(&t->mu);
        return 2;
    }
    if (rd->rpos < t->seq0 + t->n) {
        e = t->v[(t->head + (rd->rpos - t->seq0)) % RING_ENTRIES];
        __atomic_add_fetch(&e->refs, 1, __ATOMIC_ACQ_REL);
    }
    pthread_mutex_unlock(&t->mu);
    if (!e)
        return 0;
    rc = rd_deliver(rd, e->id, e->q, e->type, e->sid, e->json, e->json_len, ev, &used);
    if (used) {
        rd->rpos++;
        ent_put(rd->cur);
        rd->cur = e;                /* held until the next read */
    } else {
        ent_put(e);
    }
    return rc;
}

/* From the reader's own connection, behind the ring: 1, 0 (Redis is not
 * reachable now), 2 caught up (go to the ring). */
static int rd_catch_up(struct mcpgw__evredis_reader *rd, struct mcpgw_event *ev)
{
    for (;;) {
        redisReply *ents = NULL;

        if (rd->reply)
            ents = rd->reply->elements == 1 && rd->reply->element[0]->type == REDIS_REPLY_ARRAY &&
                   rd->reply->element[0]->elements == 2 ? rd->reply->element[0]->element[1] : NULL;
        while (ents && ents->type == REDIS_REPLY_ARRAY && rd->idx < ents->elements) {
            struct ent *e = ent_from(ents->element[rd->idx]);
            bool used;
            int rc;

            if (!e) {
                rd->idx++;
                continue;
            }
            rc = rd_deliver(rd, e->id, e->q, e->type, e->sid, e->json, e->json_len, ev, &used);
            if (used) {
                rd->idx++;
                ent_put(rd->cur);
                rd->cur = e;
            } else {
                ent_put(e);
            }
            return rc;
        }
        if (rd->reply) {
            bool full = ents && ents->type == REDIS_REPLY_ARRAY &&
                        ents->elements == (size_t)atoi(XREAD_COUNT);

            freeReplyObject(rd->reply);
            rd->reply = NULL;
            if (!full) {
                /* Read to the end of the stream: the ring has the rest
                 * (and the sequence check tells if it does not). */
                if (rd->c) {
                    redisFree(rd->c);
                    rd->c = NULL;
                }
                rd->mode = M_ENTER;
                return 2;
            }
        }
        if (rd_connect(rd) < 0)
            return 0;
        {
            const char *argv[] = { "XREAD", "COUNT", XREAD_COUNT, "STREAMS", rd->r->key, rd->last };
            redisReply *rep = redisCommandArgv(rd->c, 6, argv, NULL);

            if (!rep) {
                rd_disconnect(rd, rd->c->errstr);
                return 0;
            }
            if (rep->type == REDIS_REPLY_ERROR) {
                mcpgw_log_warn(comp, "redis XREAD failed: %s", rep->str);
                freeReplyObject(rep);
                rd_disconnect(rd, "XREAD failed");
                return 0;
            }
            rd->reply = rep;        /* nil (nothing after last) counts as "not full" */
            rd->idx = 0;
        }
    }
}

static int rd_try(struct mcpgw__evredis_reader *rd, struct mcpgw_event *ev)
{
    int rc;

    if (!rd->positioned) {
        if (rd_connect(rd) < 0 || rd_position(rd) < 0)
            return 0;
    }
    for (int i = 0; i < 4; i++) {
        rc = rd->mode == M_CATCHUP ? rd_catch_up(rd, ev) : rd_from_ring(rd, ev);
        if (rc != 2)
            return rc;
        /* rd_catch_up chose M_ENTER; the ring sends us to catch up. */
        if (rd->mode != M_ENTER)
            rd->mode = M_CATCHUP;
    }
    return 0;
}

int mcpgw__evredis_read(struct mcpgw__evredis_reader *rd, struct mcpgw_event *e, int timeout_ms)
{
    int64_t deadline = timeout_ms > 0 ? mcpgw__mono_ms() + timeout_ms : 0;
    uint64_t junk;
    int rc;

    for (;;) {
        if ((rc = rd_try(rd, e)) != 0)
            return rc;
        /* Drain, then look once more, so a poke after the look still
         * wakes the poll below. */
        if (read(rd->efd, &junk, sizeof(junk)) < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        if ((rc = rd_try(rd, e)) != 0)
            return rc;
        if (timeout_ms == 0)
            return 0;
        {
            struct pollfd p = { .fd = rd->efd, .events = POLLIN };
            int wait = -1;

            if (timeout_ms > 0) {
                int64_t left = deadline - mcpgw__mono_ms();

                if (left <= 0)
                    return 0;
                wait = (int)left;
            }
            /* Without Redis, look again when a reconnection is due. */
            if (!rd->positioned || (rd->mode == M_CATCHUP && !rd->c)) {
                int64_t due = rd->retry_at - mcpgw__mono_ms();

                if (due < 0)
                    due = 0;
                if (wait < 0 || due < wait)
                    wait = (int)due + 1;
            }
            if (poll(&p, 1, wait) < 0 && errno != EINTR)
                return -errno;
        }
    }
}

static int tail_add(struct mcpgw__evredis *r, struct mcpgw__evredis_reader *rd)
{
    struct tail *t;
    int rc = 0;

    pthread_mutex_lock(&r->mu);
    if (!r->tail) {
        if (!(t = calloc(1, sizeof(*t)))) {
            rc = -ENOMEM;
            goto out;
        }
        pthread_mutex_init(&t->mu, NULL);
        if ((t->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
            rc = -errno;
            t->stopfd = -1;
            tail_free(t);
            goto out;
        }
        r->tail = t;
    }
    t = r->tail;
    pthread_mutex_lock(&t->mu);
    if (t->nreaders == t->capreaders) {
        size_t ncap = t->capreaders ? t->capreaders * 2 : 16;
        struct mcpgw__evredis_reader **nv = realloc(t->readers, ncap * sizeof(*nv));

        if (!nv) {
            pthread_mutex_unlock(&t->mu);
            rc = -ENOMEM;
            goto out;
        }
        t->readers = nv;
        t->capreaders = ncap;
    }
    t->readers[t->nreaders++] = rd;
    pthread_mutex_unlock(&t->mu);
    if (!t->started) {
        if ((rc = -pthread_create(&t->thr, NULL, tail_main, r)) < 0) {
            pthread_mutex_lock(&t->mu);
            t->nreaders--;
            pthread_mutex_unlock(&t->mu);
            goto out;
        }
        t->started = true;
    }
out:
    pthread_mutex_unlock(&r->mu);
    return rc;
}

static void tail_del(struct mcpgw__evredis *r, struct mcpgw__evredis_reader *rd)
{
    struct tail *t = r->tail;

    if (!t)
        return;
    pthread_mutex_lock(&t->mu);
    for (size_t i = 0; i < t->nreaders; i++) {
        if (t->readers[i] == rd) {
            t->readers[i] = t->readers[--t->nreaders];
            break;
        }
    }
    pthread_mutex_unlock(&t->mu);
}

int mcpgw__evredis_reader_open(struct mcpgw__evredis *r, const char *last_id,
                               struct mcpgw__evredis_reader **out)
{
    struct mcpgw__evredis_reader *rd;
    int rc;

    *out = NULL;
    if (last_id && last_id[0] && (!mcpgw__evredis_id_parse(last_id, NULL) ||
                                  strlen(last_id) > MCPGW_EVENT_ID_MAX))
        return -EINVAL;
    if (!(rd = calloc(1, sizeof(*rd))))
        return -ENOMEM;
    rd->r = r;
    mcpgw_buf_init(&rd->scratch, 1024);
    if (last_id && last_id[0]) {
        rd->have_after = true;
        snprintf(rd->after, sizeof(rd->after), "%s", last_id);
    }
    if ((rd->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        rc = -errno;
        mcpgw_buf_release(&rd->scratch);
        free(rd);
        return rc;
    }
    if ((rc = tail_add(r, rd)) < 0) {
        close(rd->efd);
        mcpgw_buf_release(&rd->scratch);
        free(rd);
        return rc;
    }
    /* Position now if Redis answers, so "from now" means now; if it does
     * not, the first read positions, from the time of now. */
    if (rd_connect(rd) < 0 || rd_position(rd) < 0) {
        if (!rd->have_after)
            rd->opened_ms = mcpgw__events_now_ms();
    }
    *out = rd;
    return 0;
}

void mcpgw__evredis_reader_close(struct mcpgw__evredis_reader *rd)
{
    if (!rd)
        return;
    tail_del(rd->r, rd);
    ent_put(rd->cur);
    if (rd->reply)
        freeReplyObject(rd->reply);
    if (rd->c)
        redisFree(rd->c);
    close(rd->efd);
    mcpgw_buf_release(&rd->scratch);
    free(rd);
}

int mcpgw__evredis_reader_fd(const struct mcpgw__evredis_reader *rd)
{
    return rd->efd;
}
