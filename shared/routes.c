/* routes.c - the /api/v1 routes and the event stream (see routes.h).
 *
 * Work that touches the hub runs on the hub's loop thread: a request thread
 * posts a "box" there and sleeps on the box's condition variable until the
 * loop thread has filled it.  Everything the loop thread hands back is
 * already serialised text: json-c objects (and their unsynchronised
 * reference counts and output caches) never cross threads.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "cors.h"
#include "err.h"
#include "hub_internal.h"
#include "limits.h"
#include "log.h"
#include "quota.h"
#include "routes.h"
#include "theap.h"
#include "ticket.h"
#include "token.h"

#define PATH_MAX_BYTES 1024
#define QUERY_VALUE_MAX 512
#define TYPES_MAX 16
#define TYPE_NAME_MAX 32
#define PROGRESS_QUEUE_MAX (64u * 1024)
#define TOKEN_RECHECK_MS 1000
/* An event stream waits on the event store at most this long at a time
 * when the store has no descriptor to poll, so shutdown is seen quickly. */
#define EVENTS_POLL_SLICE_MS 200
/* Only these event types go to readers without a token. */
static const char *const anonymous_types[] = { "server_status", "gap", NULL };

enum auth { AUTH_NONE, AUTH_OK, AUTH_BAD, AUTH_ERROR };

/* Who is asking: an owned copy of a token's (or ticket's) name and scopes,
 * or anonymous. */
struct ident {
    bool authenticated;
    bool open_access;           /* requireAuth false and no credentials: all allowed */
    struct mcpgw_ticket_info info;
    struct mcpgw_token_info tok;
};

struct box;

struct mcpgw_routes {
    const struct mcpgw_conf *conf;
    mcpgw_hub *hub;
    mcpgw_events *events;
    mcpgw_quota *quota;         /* per-token limits on tool calls; NULL without a hub */
    char component[16];
    pthread_rwlock_t tok_lock;  /* tokens, tok_exists, tok_st: read to verify */
    mcpgw_tokens *tokens;
    bool tok_exists;
    struct stat tok_st;
    atomic_uint active;
    pthread_mutex_t lock;       /* everything below */
    unsigned streams;
    atomic_bool stopping;      /* read without the lock: set from signal handlers */
    bool cancel;
    /* cancel_all posted to the hub and not run yet: the routes must not be
     * freed before it runs (it reads them on the hub's thread). */
    bool cancel_pending;
    pthread_cond_t cancel_cond;
    int stop_fd;                /* eventfd, readable once stopping */
    struct box *calls;          /* tool calls in flight (for cancel) */
};

/* A piece of hub work and its result. */
struct box {
    mcpgw_routes *rt;
    /* in: set before posting, read-only afterwards */
    const char *server, *tool;
    json_object *args;
    struct mcpgw_call_opts opts;
    bool sse;
    const struct ident *who;
    struct mcpgw_server_health *health;     /* health: array of nhealth */
    size_t nhealth;
    /* out: under lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    mcpgw_call *call;           /* loop thread only */
    struct mcpgw_buf progress;  /* SSE frames waiting to be written */
    int status;
    bool is_error;
    int rpc_code;
    struct mcpgw_buf out;
    char err[240];
    int64_t retry_at;           /* wall ms of a backing-off server's next start */
    struct box *prev, *next;    /* rt->calls */
};

/* One request being served. */
struct req {
    mcpgw_routes *rt;
    /* The config this request runs on: the hub's current one, which a
     * SIGHUP reload replaces (old ones stay alive, hub.h), so a request
     * sees one config from start to end. */
    const struct mcpgw_conf *conf;
    const struct mcpgw_http_request *hr;
    const struct mcpgw_http_writer *w;
    const char *origin;         /* allowed Origin to answer CORS for, or NULL */
    const char *route;          /* decoded route path from "/api/v1" */
    bool gone;                  /* writer failed */
    struct ident who;
};

/* ---- identity --------------------------------------------------------------- */

static void ident_release(struct ident *id)
{
    mcpgw_ticket_info_release(&id->info);
    memset(id, 0, sizeof(*id));
}

static int ident_copy(struct ident *id, const struct mcpgw_token_info *t)
{
    size_t n = 0;

    while (t->scopes && t->scopes[n] && n < t->nscopes)
        n++;
    id->info.name = strdup(t->name ? t->name : "");
    id->info.scopes = calloc(n + 1, sizeof(char *));
    if (!id->info.name || !id->info.scopes)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!(id->info.scopes[i] = strdup(t->scopes[i])))
            return -ENOMEM;
        id->info.nscopes = i + 1;
    }
    id->info.expires = t->expires;
    return 0;
}

static bool ident_allows(const struct ident *id, const char *server, const char *tool)
{
    if (id->open_access)
        return true;
    return id->authenticated && mcpgw_token_allows(&id->tok, server, tool);
}

/* Whether every tool of server is allowed, so an event need not be opened
 * to find its tool name. */
static bool ident_allows_server_wide(const struct ident *id, const char *server)
{
    size_t slen = strlen(server);

    if (id->open_access)
        return true;
    if (!id->authenticated)
        return false;
    for (size_t i = 0; i < id->info.nscopes; i++) {
        const char *s = id->info.scopes[i];

        if (strcmp(s, "*") == 0 || strcmp(s, "*:*") == 0 ||
            (strncmp(s, server, slen) == 0 && strcmp(s + slen, ":*") == 0))
            return true;
    }
    return false;
}

/* Reload the token file if it changed.  Every credential check looks (one
 * stat, a microsecond next to any request), so a revocation by `mcpgw token
 * revoke` in another process counts from the very next request. */
static void tokens_refresh(mcpgw_routes *rt)
{
    struct stat st;
    bool exists;
    mcpgw_tokens *t;
    char err[512];

    exists = stat(rt->conf->token_file, &st) == 0;
    pthread_rwlock_rdlock(&rt->tok_lock);
    if (exists == rt->tok_exists &&
        (!exists || (st.st_ino == rt->tok_st.st_ino && st.st_dev == rt->tok_st.st_dev &&
                     st.st_size == rt->tok_st.st_size &&
                     st.st_mtim.tv_sec == rt->tok_st.st_mtim.tv_sec &&
                     st.st_mtim.tv_nsec == rt->tok_st.st_mtim.tv_nsec))) {
        pthread_rwlock_unlock(&rt->tok_lock);
        return;
    }
    pthread_rwlock_unlock(&rt->tok_lock);
    if (mcpgw_tokens_load(rt->conf->token_file, &t, err, sizeof(err)) < 0) {
        mcpgw_log_warn(rt->component, "cannot reload the token file, keeping the old one: %s", err);
        return;
    }
    pthread_rwlock_wrlock(&rt->tok_lock);
    mcpgw_tokens_free(rt->tokens);
    rt->tokens = t;
    rt->tok_exists = exists;
    if (exists)
        rt->tok_st = st;
    pthread_rwlock_unlock(&rt->tok_lock);
}

static enum auth verify_token(mcpgw_routes *rt, const char *tok, size_t len, struct ident *id)
{
    struct mcpgw_token_info info;
    int rc;

    if (len > MCPGW_TOKEN_BYTES_MAX)
        return AUTH_BAD;
    tokens_refresh(rt);
    pthread_rwlock_rdlock(&rt->tok_lock);
    rc = mcpgw_tokens_verify(rt->tokens, tok, len, time(NULL), &info);
    if (rc == 0)
        rc = ident_copy(id, &info);
    pthread_rwlock_unlock(&rt->tok_lock);
    if (rc == MCPGW_EAUTH)
        return AUTH_BAD;
    if (rc < 0)
        return AUTH_ERROR;
    id->authenticated = true;
    mcpgw_ticket_as_token(&id->info, &id->tok);
    return AUTH_OK;
}

/* Why a stream's identity no longer holds - "token_revoked" (revoked or
 * removed) or "token_expired" - or NULL while an active token of its name
 * exists.  By name: a ticket carries only its token's name. */
static const char *ident_lapsed(mcpgw_routes *rt, const struct ident *id)
{
    struct mcpgw_token_info ti;
    time_t now = time(NULL);
    const char *why = "token_revoked";

    tokens_refresh(rt);
    pthread_rwlock_rdlock(&rt->tok_lock);
    for (size_t i = 0; mcpgw_tokens_get(rt->tokens, i, &ti); i++) {
        if (strcmp(ti.name, id->info.name) != 0 || ti.revoked)
            continue;
        if (ti.expires && ti.expires <= now) {
            why = "token_expired";
            continue;
        }
        why = NULL;
        break;
    }
    pthread_rwlock_unlock(&rt->tok_lock);
    return why;
}

/* Credentials from the Authorization header, or (allow_ticket) ?ticket=.
 * A token in the URL (?access_token=) is refused outright: URLs end up in
 * logs (RFC 6750 section 5.3). */
static enum auth authenticate(struct req *r, bool allow_ticket)
{
    const char *h = mcpgw_http_header(r->hr, "authorization");
    char ticket[MCPGW_TICKET_LEN + 8];
    int n;

    if (h) {
        size_t len;
        const char *tok = mcpgw_token_from_header(h, &len);

        return tok ? verify_token(r->rt, tok, len, &r->who) : AUTH_BAD;
    }
    if (mcpgw_http_query_get(r->hr->query, "access_token", ticket, sizeof(ticket)) != -1)
        return AUTH_BAD;
    if (!allow_ticket)
        return AUTH_NONE;
    n = mcpgw_http_query_get(r->hr->query, "ticket", ticket, sizeof(ticket));
    if (n == -1)
        return AUTH_NONE;
    if (n < 0)
        return AUTH_BAD;
    n = mcpgw_ticket_redeem(r->conf, ticket, (size_t)n, &r->who.info);
    if (n == MCPGW_EAUTH)
        return AUTH_BAD;
    if (n < 0) {
        mcpgw_log_error(r->rt->component, "cannot redeem a ticket: %s", mcpgw_strerror(n));
        return AUTH_ERROR;
    }
    r->who.authenticated = true;
    mcpgw_ticket_as_token(&r->who.info, &r->who.tok);
    return AUTH_OK;
}

/* ---- responses -------------------------------------------------------------- */

static int w_begin(struct req *r, int status, const struct mcpgw_http_header *h, size_t n)
{
    if (!r->gone && r->w->begin(r->w->ud, status, h, n) < 0)
        r->gone = true;
    return r->gone ? -EPIPE : 0;
}

static int w_write(struct req *r, const char *p, size_t n)
{
    if (!r->gone && n && r->w->write(r->w->ud, p, n) < 0)
        r->gone = true;
    return r->gone ? -EPIPE : 0;
}

static int w_flush(struct req *r)
{
    if (!r->gone && r->w->flush(r->w->ud) < 0)
        r->gone = true;
    return r->gone ? -EPIPE : 0;
}

/* Add the CORS headers (if the request came from an allowed origin) to h. */
static size_t add_cors(const struct req *r, struct mcpgw_http_header *h, size_t n)
{
    return n + mcpgw_cors_headers(r->origin, h + n);
}

static int send_body(struct req *r, int status, const struct mcpgw_http_header *extra, size_t nextra,
                     const char *body, size_t len)
{
    struct mcpgw_http_header h[16];
    size_t n = 0;

    h[n++] = (struct mcpgw_http_header){ "Cache-Control", "no-store" };
    for (size_t i = 0; i < nextra && n < 10; i++)
        h[n++] = extra[i];
    n = add_cors(r, h, n);
    if (mcpgw_http_respond(r->w, status, "application/json", h, n, body, len) < 0)
        r->gone = true;
    mcpgw_log_debug(r->rt->component, "%s %s %d", r->hr->method, r->hr->path, status);
    return r->gone ? -EPIPE : 0;
}

static int send_json(struct req *r, int status, const struct mcpgw_buf *b)
{
    return send_body(r, status, NULL, 0, b->ptr ? b->ptr : "{}", b->ptr ? b->len : 2);
}

static int send_error_h(struct req *r, int status, const char *code,
                        const struct mcpgw_http_header *extra, size_t nextra,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int send_error_h(struct req *r, int status, const char *code,
                        const struct mcpgw_http_header *extra, size_t nextra,
                        const char *fmt, ...)
{
    char text[512];
    struct mcpgw_buf b;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    mcpgw_buf_init(&b, 4096);
    rc = mcpgw_buf_adds(&b, "{\"error\":");
    if (rc == 0)
        rc = mcpgw_buf_add_json_str(&b, text, strlen(text));
    if (rc == 0)
        rc = mcpgw_buf_printf(&b, ",\"code\":\"%s\"}", code);
    if (rc == 0)
        rc = send_body(r, status, extra, nextra, b.ptr, b.len);
    else
        rc = send_body(r, 500, NULL, 0, MCPGW_STRLIT("{\"error\":\"internal error\",\"code\":\"internal\"}"));
    if (status >= 500)
        mcpgw_log_warn(r->rt->component, "%s %s: %d %s: %s", r->hr->method, r->hr->path, status,
                       code, text);
    mcpgw_buf_release(&b);
    return rc;
}

#define send_error(r, status, code, ...) send_error_h(r, status, code, NULL, 0, __VA_ARGS__)

static int send_auth_error(struct req *r, enum auth a)
{
    static const struct mcpgw_http_header h[] = {
        { "WWW-Authenticate", MCPGW_ROUTES_401_CHALLENGE } };

    if (a == AUTH_ERROR)
        return send_error(r, 500, MCPGW_CODE_INTERNAL, "cannot check credentials");
    /* One answer, byte for byte, whether the credentials are missing,
     * malformed, unknown, expired, revoked or a used ticket: no client can
     * learn which names exist or which tokens were once good (issue #6
     * section 3). */
    return send_error_h(r, 401, MCPGW_CODE_AUTH_REQUIRED, h, 1, "%s", MCPGW_ROUTES_401_TEXT);
}

/* Authenticate for a route that needs an identity. 0, or the response
 * (an error) has been sent and the value to return is in *rc. */
static bool require_identity(struct req *r, int *rc)
{
    enum auth a = authenticate(r, false);

    if (a == AUTH_OK)
        return true;
    if (a == AUTH_NONE && !r->conf->require_auth) {
        r->who.open_access = true;
        return true;
    }
    *rc = send_auth_error(r, a);
    return false;
}

/* ---- running work on the hub's loop thread ------------------------------- */

static void box_init(struct box *b, mcpgw_routes *rt, size_t out_max)
{
    memset(b, 0, sizeof(*b));
    b->rt = rt;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    mcpgw_buf_init(&b->progress, PROGRESS_QUEUE_MAX);
    mcpgw_buf_init(&b->out, out_max);
}

static void box_release(struct box *b)
{
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    mcpgw_buf_release(&b->progress);
    mcpgw_buf_release(&b->out);
}

/* Called with b->lock held. */
static void box_finish(struct box *b, int status, const char *err)
{
    b->status = status;
    if (err)
        snprintf(b->err, sizeof(b->err), "%s", err);
    else if (status < 0 && !b->err[0])
        snprintf(b->err, sizeof(b->err), "%s", mcpgw_strerror(status));
    b->done = true;
    b->call = NULL;
    pthread_cond_broadcast(&b->cond);
}

/* Start fn on the loop thread.  0, or the post failed (box not done). */
static int box_post(struct box *b, void (*fn)(mcpgw_hub *, void *))
{
    mcpgw_hub *hub = b->rt->hub;

    if (mcpgw__hub_on_loop_thread(hub)) {
        fn(hub, b);
        return 0;
    }
    return mcpgw_hub_post(hub, fn, b);
}

/* Wait until the box is done (or, want_progress, has progress to write). */
static void box_wait(struct box *b, bool want_progress)
{
    mcpgw_hub *hub = b->rt->hub;

    if (mcpgw__hub_on_loop_thread(hub)) {
        for (;;) {
            bool ready;

            pthread_mutex_lock(&b->lock);
            ready = b->done || (want_progress && b->progress.len);
            pthread_mutex_unlock(&b->lock);
            if (ready)
                return;
            if (mcpgw_hub_run(hub, 100) < 0) {
                pthread_mutex_lock(&b->lock);
                box_finish(b, -EIO, "the event loop failed");
                pthread_mutex_unlock(&b->lock);
                return;
            }
        }
    }
    pthread_mutex_lock(&b->lock);
    while (!b->done && !(want_progress && b->progress.len))
        pthread_cond_wait(&b->cond, &b->lock);
    pthread_mutex_unlock(&b->lock);
}

/* Post fn and wait for it to finish.  Returns the box's status. */
static int box_run(struct box *b, void (*fn)(mcpgw_hub *, void *))
{
    int rc = box_post(b, fn);

    if (rc < 0) {
        box_finish(b, rc, NULL);
        return rc;
    }
    box_wait(b, false);
    return b->status;
}

/* ---- health and servers ------------------------------------------------------ */

static void health_start(mcpgw_hub *hub, void *ud)
{
    struct box *b = ud;
    size_t i;

    for (i = 0; i < b->nhealth && mcpgw_hub_health(hub, i, &b->health[i]); i++)
        ;
    pthread_mutex_lock(&b->lock);
    b->nhealth = i;
    box_finish(b, 0, NULL);
    pthread_mutex_unlock(&b->lock);
}

static bool usable(enum mcpgw_server_state s)
{
    return s == MCPGW_SERVER_IDLE || s == MCPGW_SERVER_STARTING || s == MCPGW_SERVER_READY;
}

static int add_server_json(struct mcpgw_buf *o, const struct mcpgw_server_health *h, bool detail)
{
    int rc = mcpgw_buf_adds(o, "{\"id\":");

    if (rc == 0)
        rc = mcpgw_buf_add_json_str(o, h->id, strlen(h->id));
    if (rc == 0)
        rc = mcpgw_buf_printf(o, ",\"state\":\"%s\"", mcpgw_server_state_name(h->state));
    if (rc == 0 && h->state == MCPGW_SERVER_BACKOFF) {
        int64_t in = h->next_retry_ms - mcpgw_now_ms();

        rc = mcpgw_buf_printf(o, ",\"nextRetry\":%" PRId64 ",\"retryInMs\":%" PRId64,
                              h->next_retry_ms, in > 0 ? in : 0);
    }
    if (rc == 0 && detail) {
        rc = mcpgw_buf_printf(o, ",\"tools\":%u,\"inflight\":%u,\"restarts\":%u", h->ntools,
                              h->inflight, h->restarts);
        if (rc == 0 && h->protocol_version) {
            rc = mcpgw_buf_adds(o, ",\"protocolVersion\":");
            if (rc == 0)
                rc = mcpgw_buf_add_json_str(o, h->protocol_version, strlen(h->protocol_version));
        }
        if (rc == 0 && h->last_error[0]) {
            rc = mcpgw_buf_adds(o, ",\"lastError\":");
            if (rc == 0)
                rc = mcpgw_buf_add_json_str(o, h->last_error, strlen(h->last_error));
        }
    }
    if (rc == 0)
        rc = mcpgw_buf_addc(o, '}');
    return rc;
}

/* Collect every server's health (on the loop thread). */
static int collect_health(struct req *r, struct box *b)
{
    size_t n = r->conf->nservers;

    b->health = calloc(n ? n : 1, sizeof(*b->health));
    if (!b->health)
        return -ENOMEM;
    b->nhealth = n;
    return box_run(b, health_start);
}

static int route_health(struct req *r)
{
    struct box b;
    struct mcpgw_buf o;
    bool any = false;
    int rc;

    box_init(&b, r->rt, 0);
    mcpgw_buf_init(&o, 1024u * 1024);
    rc = collect_health(r, &b);
    if (rc < 0) {
        rc = send_error(r, 503, MCPGW_CODE_SERVER_UNAVAILABLE, "cannot read server health: %s",
                        mcpgw_strerror(rc));
        goto out;
    }
    for (size_t i = 0; i < b.nhealth; i++)
        any = any || usable(b.health[i].state);
    rc = mcpgw_buf_printf(&o, "{\"status\":\"%s\",\"version\":\"%s\",\"timestamp\":%" PRId64
                          ",\"servers\":[", any ? "ok" : "unavailable", PACKAGE_VERSION,
                          mcpgw_now_ms());
    for (size_t i = 0; rc == 0 && i < b.nhealth; i++) {
        if (i)
            rc = mcpgw_buf_addc(&o, ',');
        if (rc == 0)
            rc = add_server_json(&o, &b.health[i], false);
    }
    if (rc == 0)
        rc = mcpgw_buf_adds(&o, "]}");
    rc = rc < 0 ? send_error(r, 500, MCPGW_CODE_INTERNAL, "health too large")
                : send_json(r, any ? 200 : 503, &o);
out:
    free(b.health);
    box_release(&b);
    mcpgw_buf_release(&o);
    return rc;
}

static int route_servers(struct req *r)
{
    struct box b;
    struct mcpgw_buf o;
    size_t shown = 0;
    int rc;

    if (!require_identity(r, &rc))
        return rc;
    box_init(&b, r->rt, 0);
    mcpgw_buf_init(&o, 4u * 1024 * 1024);
    rc = collect_health(r, &b);
    if (rc < 0) {
        rc = send_error(r, 503, MCPGW_CODE_SERVER_UNAVAILABLE, "cannot read server state: %s",
                        mcpgw_strerror(rc));
        goto out;
    }
    rc = mcpgw_buf_adds(&o, "{\"servers\":[");
    for (size_t i = 0; rc == 0 && i < b.nhealth; i++) {
        if (!ident_allows(&r->who, b.health[i].id, NULL))
            continue;
        if (shown++)
            rc = mcpgw_buf_addc(&o, ',');
        if (rc == 0)
            rc = add_server_json(&o, &b.health[i], true);
    }
    if (rc == 0)
        rc = mcpgw_buf_adds(&o, "]}");
    rc = rc < 0 ? send_error(r, 500, MCPGW_CODE_INTERNAL, "server list too large")
                : send_json(r, 200, &o);
out:
    free(b.health);
    box_release(&b);
    mcpgw_buf_release(&o);
    return rc;
}

/* ---- tools -------------------------------------------------------------------- */

static void note_retry(struct box *b)
{
    struct mcpgw_server_health h;

    if (mcpgw_hub_health_of(b->rt->hub, b->server, &h) == 0 && h.state == MCPGW_SERVER_BACKOFF)
        b->retry_at = h.next_retry_ms;
}

static int copy_key(struct mcpgw_buf *o, json_object *tool, const char *key, bool *first)
{
    json_object *v;
    int rc;

    if (!json_object_object_get_ex(tool, key, &v))
        return 0;
    rc = *first ? 0 : mcpgw_buf_addc(o, ',');
    *first = false;
    if (rc == 0)
        rc = mcpgw_buf_add_json_str(o, key, strlen(key));
    if (rc == 0)
        rc = mcpgw_buf_addc(o, ':');
    if (rc == 0)
        rc = mcpgw_codec_value(o, v);
    return rc;
}

static void tools_cb(void *ud, int status, json_object *tools, const char *error)
{
    struct box *b = ud;
    struct mcpgw_buf *o = &b->out;
    size_t n = status == 0 ? json_object_array_length(tools) : 0, shown = 0;
    int rc = 0;

    pthread_mutex_lock(&b->lock);
    if (status < 0) {
        if (status == MCPGW_EUNAVAIL)
            note_retry(b);
        box_finish(b, status, error);
        pthread_mutex_unlock(&b->lock);
        return;
    }
    rc = mcpgw_buf_adds(o, "{\"serverId\":");
    if (rc == 0)
        rc = mcpgw_buf_add_json_str(o, b->server, strlen(b->server));
    if (rc == 0)
        rc = mcpgw_buf_adds(o, ",\"tools\":[");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i), *name;
        bool first = true;

        if (!json_object_object_get_ex(t, "name", &name) ||
            !json_object_is_type(name, json_type_string) ||
            !ident_allows(b->who, b->server, json_object_get_string(name)))
            continue;
        rc = shown++ ? mcpgw_buf_addc(o, ',') : 0;
        if (rc == 0)
            rc = mcpgw_buf_addc(o, '{');
        if (rc == 0)
            rc = copy_key(o, t, "name", &first);
        if (rc == 0)
            rc = copy_key(o, t, "description", &first);
        if (rc == 0)
            rc = copy_key(o, t, "inputSchema", &first);
        if (rc == 0)
            rc = mcpgw_buf_addc(o, '}');
    }
    if (rc == 0)
        rc = mcpgw_buf_adds(o, "]}");
    box_finish(b, rc, rc < 0 ? "tool list too large" : NULL);
    pthread_mutex_unlock(&b->lock);
}

static void tools_start(mcpgw_hub *hub, void *ud)
{
    struct box *b = ud;
    int rc = mcpgw_hub_list_tools(hub, b->server, tools_cb, b);

    if (rc < 0) {
        pthread_mutex_lock(&b->lock);
        if (rc == MCPGW_EUNAVAIL)
            note_retry(b);
        box_finish(b, rc, NULL);
        pthread_mutex_unlock(&b->lock);
    }
}

/* The answer for a failed hub operation on server. */
static int send_hub_error(struct req *r, struct box *b, const char *server, const char *tool)
{
    char retry[24];
    struct mcpgw_http_header h[1];
    size_t nh = 0;
    const char *msg = b->err[0] ? b->err : mcpgw_strerror(b->status);

    switch (b->status) {
    case MCPGW_EUNKNOWNSERVER:
        return send_error(r, 404, MCPGW_CODE_UNKNOWN_SERVER, "unknown server '%s'", server);
    case MCPGW_EUNKNOWNTOOL:
        return send_error(r, 404, MCPGW_CODE_UNKNOWN_TOOL, "server '%s' has no tool '%s'", server,
                          tool ? tool : "");
    case MCPGW_EFORBIDDEN:
        /* Scopes are checked before the hub; from the hub this is pinning. */
        return send_error(r, 403, MCPGW_CODE_FORBIDDEN, "tool '%s' of server '%s' changed since "
                          "it was approved; it is withheld until an operator approves it",
                          tool ? tool : "", server);
    case MCPGW_EBUSY:
        h[nh++] = (struct mcpgw_http_header){ "Retry-After", "1" };
        return send_error_h(r, 429, MCPGW_CODE_RATE_LIMITED, h, nh,
                            "server '%s' has too many calls in flight", server);
    case MCPGW_ETIMEDOUT:
        return send_error(r, 504, MCPGW_CODE_TIMEOUT, "%s", msg);
    case MCPGW_ETOOBIG:
        return send_error(r, 502, MCPGW_CODE_TOO_LARGE, "%s", msg);
    case MCPGW_ERPC:
        return send_error(r, 502, MCPGW_CODE_TOOL_ERROR, "%s", msg);
    case MCPGW_ESHUTDOWN:
    case MCPGW_ECANCELED:
        h[nh++] = (struct mcpgw_http_header){ "Retry-After", "1" };
        return send_error_h(r, 503, MCPGW_CODE_SERVER_UNAVAILABLE, h, nh,
                            "the gateway is shutting down");
    case MCPGW_EUNAVAIL:
        if (b->retry_at) {
            int64_t in = b->retry_at - mcpgw_now_ms();

            snprintf(retry, sizeof(retry), "%" PRId64, in > 0 ? (in + 999) / 1000 : 1);
            h[nh++] = (struct mcpgw_http_header){ "Retry-After", retry };
            return send_error_h(r, 502, MCPGW_CODE_SERVER_UNAVAILABLE, h, nh,
                                "server '%s' is unavailable, retry after %s s: %s", server,
                                retry, msg);
        }
        return send_error(r, 502, MCPGW_CODE_SERVER_UNAVAILABLE, "server '%s' is unavailable: %s",
                          server, msg);
    case MCPGW_ESERVERGONE:
    case MCPGW_EPROTO:
        return send_error(r, 502, MCPGW_CODE_SERVER_UNAVAILABLE, "%s", msg);
    default:
        return send_error(r, 500, MCPGW_CODE_INTERNAL, "%s", msg);
    }
}

static int send_quota_error(struct req *r, const struct mcpgw_quota_refusal *why)
{
    char text[400], retry[16];
    struct mcpgw_http_header h[1] = { { "Retry-After", retry } };

    /* Whole seconds (RFC 9110 section 10.2.3), rounded up, at least 1. */
    snprintf(retry, sizeof(retry), "%u",
             why->retry_after_ms > 1000 ? (why->retry_after_ms + 999) / 1000 : 1);
    mcpgw_quota_describe(why, r->who.info.name, text, sizeof(text));
    mcpgw_log_info(r->rt->component, "refused a call: %s", text);
    return send_error_h(r, 429, MCPGW_CODE_RATE_LIMITED, h, 1, "%s", text);
}

static bool server_id_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > MCPGW_SERVER_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static int route_tools(struct req *r, const char *server)
{
    struct box b;
    int rc;

    if (!require_identity(r, &rc))
        return rc;
    if (!server_id_ok(server) || !mcpgw_conf_server(r->conf, server))
        return send_error(r, 404, MCPGW_CODE_UNKNOWN_SERVER, "unknown server '%s'", server);
    if (!ident_allows(&r->who, server, NULL))
        return send_error(r, 403, MCPGW_CODE_FORBIDDEN, "this token may not use server '%s'",
                          server);
    box_init(&b, r->rt, r->conf->limits.max_message_bytes + 65536);
    b.server = server;
    b.who = &r->who;
    rc = box_run(&b, tools_start);
    rc = rc < 0 ? send_hub_error(r, &b, server, NULL) : send_json(r, 200, &b.out);
    box_release(&b);
    return rc;
}

/* ---- tool calls ------------------------------------------------------------------ */

static void call_cb(mcpgw_call *call, const struct mcpgw_call_event *ev, void *ud)
{
    struct box *b = ud;
    int rc;

    pthread_mutex_lock(&b->lock);
    if (ev->kind == MCPGW_CALL_PROGRESS) {
        if (b->sse) {
            struct mcpgw_buf m;

            mcpgw_buf_init(&m, 16384);
            /* A progress frame that does not fit the queue is dropped: the
             * next one supersedes it, and the result is never dropped. */
            if (mcpgw_codec_tool_progress(&m, NULL, mcpgw_now_ms(), ev->progress,
                                          ev->has_total ? &ev->total : NULL, ev->message) == 0 &&
                b->progress.len + m.len + 16 <= b->progress.max) {
                mcpgw_buf_adds(&b->progress, "data: ");
                mcpgw_buf_add(&b->progress, m.ptr, m.len);
                mcpgw_buf_adds(&b->progress, "\n\n");
                pthread_cond_broadcast(&b->cond);
            }
            mcpgw_buf_release(&m);
        }
        pthread_mutex_unlock(&b->lock);
        return;
    }
    b->is_error = ev->is_error;
    b->rpc_code = ev->rpc_code;
    if (ev->status < 0) {
        if (ev->status == MCPGW_EUNAVAIL)
            note_retry(b);
        box_finish(b, ev->status, ev->error);
        pthread_mutex_unlock(&b->lock);
        return;
    }
    if (b->sse) {
        rc = mcpgw_codec_tool_response(&b->out, NULL, mcpgw_now_ms(), !ev->is_error, ev->result,
                                       b->server, b->tool);
    } else {
        rc = mcpgw_buf_printf(&b->out, "{\"success\":%s,\"result\":",
                              ev->is_error ? "false" : "true");
        if (rc == 0)
            rc = mcpgw_codec_value(&b->out, ev->result);
        if (rc == 0)
            rc = mcpgw_buf_adds(&b->out, ",\"serverId\":");
        if (rc == 0)
            rc = mcpgw_buf_add_json_str(&b->out, b->server, strlen(b->server));
        if (rc == 0)
            rc = mcpgw_buf_adds(&b->out, ",\"toolName\":");
        if (rc == 0)
            rc = mcpgw_buf_add_json_str(&b->out, b->tool, strlen(b->tool));
        if (rc == 0)
            rc = mcpgw_buf_addc(&b->out, '}');
    }
    if (rc == MCPGW_ETOOBIG)
        box_finish(b, rc, "the tool's result is larger than the message limit");
    else
        box_finish(b, rc, NULL);
    pthread_mutex_unlock(&b->lock);
}

static void call_start(mcpgw_hub *hub, void *ud)
{
    struct box *b = ud;
    mcpgw_call *c = NULL;
    bool cancelled;
    int rc;

    pthread_mutex_lock(&b->rt->lock);
    cancelled = b->rt->cancel;
    pthread_mutex_unlock(&b->rt->lock);
    rc = cancelled ? MCPGW_ESHUTDOWN
                   : mcpgw_hub_call(hub, b->server, b->tool, b->args, &b->opts, call_cb, b, &c);
    pthread_mutex_lock(&b->lock);
    if (rc < 0) {
        if (rc == MCPGW_EUNAVAIL)
            note_retry(b);
        box_finish(b, rc, NULL);
    } else {
        b->call = c;
    }
    pthread_mutex_unlock(&b->lock);
}

static void cancel_all(mcpgw_hub *hub, void *ud)
{
    mcpgw_routes *rt = ud;

    pthread_mutex_lock(&rt->lock);
    for (struct box *b = rt->calls; b; b = b->next) {
        mcpgw_call *c;

        pthread_mutex_lock(&b->lock);
        c = b->done ? NULL : b->call;
        pthread_mutex_unlock(&b->lock);
        if (c)
            mcpgw_call_cancel(c, "the gateway is shutting down");
    }
    rt->cancel_pending = false;
    pthread_cond_broadcast(&rt->cancel_cond);
    pthread_mutex_unlock(&rt->lock);
}

/* The value a parser returns once it has sent its error response. */
static int refuse(int sent)
{
    (void)sent;     /* the writer's state is in r->gone */
    return -1;
}

/* Parse and check {"serverId","toolName","params"}.  0, or -1 once the
 * error response has been sent. */
static int parse_call(struct req *r, const struct mcpgw_buf *body, json_object **root,
                      const char **server, const char **tool, json_object **params)
{
    struct mcpgw_codec_limits lim = { r->conf->limits.max_message_bytes,
                                      r->conf->limits.max_json_depth };
    struct mcpgw_codec_error cerr;
    json_object *v;
    int rc;

    *root = NULL;
    if (body->len == 0)
        return refuse(send_error(r, 400, MCPGW_CODE_BAD_REQUEST, "the request body is empty"));
    /* The codec's strict parse, not json-c's alone: json-c accepts
     * surrogate and overlong UTF-8, control characters in strings and
     * turns a lone \ud800 into U+FFFD, so the tree the MCP server would be
     * sent could differ from the text the client sent. */
    rc = mcpgw_codec_parse_object(body->ptr, body->len, &lim, root, &cerr);
    if (rc == MCPGW_ETOOBIG)
        return refuse(send_error(r, 413, MCPGW_CODE_TOO_LARGE, "%s", cerr.message));
    if (rc == MCPGW_EPARSE)
        return refuse(send_error(r, 400, MCPGW_CODE_BAD_REQUEST, "the body is not one JSON "
                                 "object: %s", cerr.message));
    if (rc < 0)
        return refuse(send_error(r, 500, MCPGW_CODE_INTERNAL, "%s", cerr.message));
    if (!json_object_object_get_ex(*root, "serverId", &v) ||
        !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) < 1 ||
        json_object_get_string_len(v) > MCPGW_SERVER_ID_MAX)
        return refuse(send_error(r, 400, MCPGW_CODE_BAD_REQUEST,
                          "\"serverId\" must be a string of 1 to %d bytes", MCPGW_SERVER_ID_MAX));
    *server = json_object_get_string(v);
    if (!json_object_object_get_ex(*root, "toolName", &v) ||
        !json_object_is_type(v, json_type_string) || json_object_get_string_len(v) < 1 ||
        json_object_get_string_len(v) > MCPGW_TOOL_NAME_MAX)
        return refuse(send_error(r, 400, MCPGW_CODE_BAD_REQUEST,
                          "\"toolName\" must be a string of 1 to %d bytes", MCPGW_TOOL_NAME_MAX));
    *tool = json_object_get_string(v);
    if (strlen(*server) != (size_t)json_object_get_string_len(json_object_object_get(*root, "serverId")) ||
        strlen(*tool) != (size_t)json_object_get_string_len(v))
        return refuse(send_error(r, 400, MCPGW_CODE_BAD_REQUEST, "names must not contain NUL"));
    *params = NULL;
    if (json_object_object_get_ex(*root, "params", &v) && v) {
        if (!json_object_is_type(v, json_type_object))
            return refuse(send_error(r, 400, MCPGW_CODE_BAD_REQUEST,
                              "\"params\" must be an object (the tool's arguments)"));
        *params = v;
    }
    return 0;
}

/* Write what the loop thread queued for an SSE call; false once gone. */
static bool drain_progress(struct req *r, struct box *b, struct mcpgw_buf *tmp)
{
    mcpgw_buf_reset(tmp);
    pthread_mutex_lock(&b->lock);
    if (b->progress.len) {
        mcpgw_buf_add(tmp, b->progress.ptr, b->progress.len);
        mcpgw_buf_reset(&b->progress);
    }
    pthread_mutex_unlock(&b->lock);
    if (tmp->len && (w_write(r, tmp->ptr, tmp->len) < 0 || w_flush(r) < 0))
        return false;
    return true;
}

static const struct mcpgw_http_header sse_headers[] = {
    { "Content-Type", "text/event-stream" },
    { "Cache-Control", "no-cache" },
    { "X-Accel-Buffering", "no" },
    /* lighttpd >= 1.4.83 streams a response that says this even without
     * server.stream-response-body; others ignore it. */
    { "Incremental", "?1" },
};
#define NSSE (sizeof(sse_headers) / sizeof(sse_headers[0]))

static int sse_begin(struct req *r)
{
    struct mcpgw_http_header h[NSSE + 4];
    size_t n = NSSE;

    memcpy(h, sse_headers, sizeof(sse_headers));
    n = add_cors(r, h, n);
    if (w_begin(r, 200, h, n) < 0)
        return -EPIPE;
    return 0;
}

static int route_call(struct req *r)
{
    const char *ctype = mcpgw_http_header(r->hr, "content-type");
    bool sse = mcpgw_http_accepts(mcpgw_http_header(r->hr, "accept"), "text/event-stream");
    const char *server = NULL, *tool = NULL;
    json_object *root = NULL, *params = NULL;
    struct mcpgw_buf body, tmp;
    struct box b;
    struct mcpgw_quota_hold hold = MCPGW_QUOTA_HOLD_INIT;
    bool started = false, linked = false;
    int rc;

    mcpgw_buf_init(&body, r->conf->limits.max_message_bytes);
    mcpgw_buf_init(&tmp, PROGRESS_QUEUE_MAX + 1024);
    box_init(&b, r->rt, r->conf->limits.max_message_bytes + 65536);
    if (!require_identity(r, &rc))
        goto out;
    if (!mcpgw_http_media_is(ctype, "application/json")) {
        rc = send_error(r, 415, MCPGW_CODE_BAD_REQUEST,
                        "the body must be JSON (Content-Type: application/json)");
        goto out;
    }
    rc = mcpgw_http_read_body(r->hr, &body);
    if (rc == MCPGW_ETOOBIG) {
        rc = send_error(r, 413, MCPGW_CODE_TOO_LARGE, "the body is larger than %zu bytes",
                        body.max);
        goto out;
    }
    if (rc < 0) {
        rc = send_error(r, 400, MCPGW_CODE_BAD_REQUEST, "cannot read the body");
        goto out;
    }
    if ((rc = parse_call(r, &body, &root, &server, &tool, &params)) < 0) {
        rc = r->gone ? -EPIPE : 0;
        goto out;
    }
    if (!mcpgw_conf_server(r->conf, server)) {
        rc = send_error(r, 404, MCPGW_CODE_UNKNOWN_SERVER, "unknown server '%s'", server);
        goto out;
    }
    if (!ident_allows(&r->who, server, tool)) {
        rc = send_error(r, 403, MCPGW_CODE_FORBIDDEN, "this token may not call '%s' on '%s'",
                        tool, server);
        goto out;
    }
    /* Checked last, so a call refused for any other reason takes nothing
     * from the token's allowance.  Anonymous calls (requireAuth off) have
     * no token to count against. */
    if (r->who.authenticated) {
        struct mcpgw_quota_refusal why;

        if (mcpgw_quota_acquire(r->rt->quota, r->who.info.name, &hold, &why) < 0) {
            rc = send_quota_error(r, &why);
            goto out;
        }
    }
    b.server = server;
    b.tool = tool;
    b.args = params;
    b.sse = sse;
    b.opts.progress = sse;
    b.opts.caller = r->who.authenticated ? r->who.info.name : "anonymous";
    pthread_mutex_lock(&r->rt->lock);
    b.next = r->rt->calls;
    if (b.next)
        b.next->prev = &b;
    r->rt->calls = &b;
    pthread_mutex_unlock(&r->rt->lock);
    linked = true;
    rc = box_post(&b, call_start);
    if (rc < 0) {
        pthread_mutex_lock(&b.lock);
        box_finish(&b, rc, NULL);
        pthread_mutex_unlock(&b.lock);
    }
    /* Headers wait for the first progress frame, so a call refused at once
     * (unknown tool, server down) still gets its proper status. */
    for (;;) {
        box_wait(&b, sse && !r->gone);
        if (sse && !r->gone) {
            bool has_progress;

            pthread_mutex_lock(&b.lock);
            has_progress = b.progress.len > 0;
            pthread_mutex_unlock(&b.lock);
            if (has_progress && !started) {
                started = true;
                sse_begin(r);
            }
            if (started && !drain_progress(r, &b, &tmp))
                mcpgw_log_info(r->rt->component, "client left during a streamed call to '%s' on "
                               "'%s'; the result will still be published", tool, server);
        }
        if (b.done)
            break;
    }
    /* The call is over (result, error, timeout or cancel): what is left is
     * writing the answer. */
    mcpgw_quota_release(r->rt->quota, &hold);
    if (!started) {
        if (b.status < 0) {
            rc = send_hub_error(r, &b, server, tool);
        } else if (sse) {
            rc = sse_begin(r);
            if (rc == 0)
                rc = w_write(r, MCPGW_STRLIT("data: "));
            if (rc == 0)
                rc = w_write(r, b.out.ptr, b.out.len);
            if (rc == 0)
                rc = w_write(r, MCPGW_STRLIT("\n\n"));
            if (rc == 0)
                rc = w_flush(r);
        } else {
            rc = send_json(r, 200, &b.out);
        }
        goto out;
    }
    /* The stream is open: what is left goes out as SSE frames. */
    drain_progress(r, &b, &tmp);
    mcpgw_buf_reset(&tmp);
    if (b.status < 0)
        mcpgw_codec_error(&tmp, NULL, mcpgw_now_ms(), mcpgw_err_code(b.status),
                          b.err[0] ? b.err : mcpgw_strerror(b.status));
    else
        mcpgw_buf_add(&tmp, b.out.ptr, b.out.len);
    rc = w_write(r, MCPGW_STRLIT("data: "));
    if (rc == 0)
        rc = w_write(r, tmp.ptr, tmp.len);
    if (rc == 0)
        rc = w_write(r, MCPGW_STRLIT("\n\n"));
    if (rc == 0)
        rc = w_flush(r);
out:
    mcpgw_quota_release(r->rt->quota, &hold);
    if (linked) {
        pthread_mutex_lock(&r->rt->lock);
        if (b.prev)
            b.prev->next = b.next;
        else
            r->rt->calls = b.next;
        if (b.next)
            b.next->prev = b.prev;
        pthread_mutex_unlock(&r->rt->lock);
    }
    json_object_put(root);
    box_release(&b);
    mcpgw_buf_release(&body);
    mcpgw_buf_release(&tmp);
    return r->gone ? -EPIPE : rc;
}

/* ---- tickets ------------------------------------------------------------------------ */

static int route_ticket(struct req *r)
{
    char ticket[MCPGW_TICKET_LEN + 1], err[256];
    struct mcpgw_buf o;
    enum auth a;
    int rc;

    /* Only a real token buys a ticket: never a ticket, never anonymous. */
    if (!mcpgw_http_header(r->hr, "authorization"))
        return send_auth_error(r, AUTH_NONE);
    a = authenticate(r, false);
    if (a != AUTH_OK)
        return send_auth_error(r, a);
    rc = mcpgw_ticket_issue(r->conf, &r->who.tok, ticket, sizeof(ticket), err, sizeof(err));
    if (rc < 0) {
        mcpgw_log_error(r->rt->component, "cannot issue a ticket: %s", err);
        return send_error(r, 500, MCPGW_CODE_INTERNAL, "cannot issue a ticket");
    }
    mcpgw_buf_init(&o, 1024);
    rc = mcpgw_buf_printf(&o, "{\"ticket\":\"%s\",\"expiresInMs\":%d,\"expiresAt\":%" PRId64 "}",
                          ticket, r->conf->ticket_ttl_ms,
                          mcpgw_now_ms() + r->conf->ticket_ttl_ms);
    rc = rc < 0 ? send_error(r, 500, MCPGW_CODE_INTERNAL, "out of memory") : send_json(r, 200, &o);
    mcpgw_buf_release(&o);
    memset(ticket, 0, sizeof(ticket));
    return rc;
}

/* ---- the event stream ---------------------------------------------------------------- */

struct stream_filter {
    char types[TYPES_MAX][TYPE_NAME_MAX + 1];
    size_t ntypes;
    char server[MCPGW_SERVER_ID_MAX + 1];
};

static bool type_listed(const struct stream_filter *f, const char *type)
{
    if (f->ntypes == 0)
        return true;
    for (size_t i = 0; i < f->ntypes; i++)
        if (strcmp(f->types[i], type) == 0)
            return true;
    return false;
}

/* ?types=a,b and ?serverId=x.  0, or a message for a 400 in err. */
static int parse_filter(const char *query, struct stream_filter *f, char *err, size_t errlen)
{
    char v[QUERY_VALUE_MAX];
    int n;

    memset(f, 0, sizeof(*f));
    n = mcpgw_http_query_get(query, "types", v, sizeof(v));
    if (n < -1) {
        snprintf(err, errlen, "malformed ?types=");
        return -1;
    }
    if (n >= 0) {
        for (char *p = v, *save = NULL, *t; (t = strtok_r(p, ",", &save)); p = NULL) {
            size_t len = strlen(t);

            if (len == 0 || len > TYPE_NAME_MAX || f->ntypes == TYPES_MAX) {
                snprintf(err, errlen, "?types= takes at most %d names of 1 to %d characters",
                         TYPES_MAX, TYPE_NAME_MAX);
                return -1;
            }
            for (size_t i = 0; i < len; i++)
                if (!((t[i] >= 'a' && t[i] <= 'z') || t[i] == '_')) {
                    snprintf(err, errlen, "?types= names are lower case letters and '_'");
                    return -1;
                }
            memcpy(f->types[f->ntypes++], t, len + 1);
        }
    }
    n = mcpgw_http_query_get(query, "serverId", v, sizeof(v));
    if (n < -1 || (n >= 0 && !server_id_ok(v))) {
        snprintf(err, errlen, "?serverId= must be a server id");
        return -1;
    }
    if (n >= 0)
        memcpy(f->server, v, (size_t)n + 1);
    return 0;
}

/* A string field of the event's "data" object, copied into out. */
static bool event_data_field(const struct mcpgw_event *e, const char *key, char *out, size_t outlen)
{
    json_tokener *tok = json_tokener_new_ex(MCPGW_JSON_DEPTH_DEFAULT);
    json_object *root, *data, *v;
    bool ok = false;

    if (!tok)
        return false;
    root = json_tokener_parse_ex(tok, e->json, (int)e->json_len);
    json_tokener_free(tok);
    if (root && json_object_object_get_ex(root, "data", &data) &&
        json_object_object_get_ex(data, key, &v) && json_object_is_type(v, json_type_string)) {
        snprintf(out, outlen, "%s", json_object_get_string(v));
        ok = true;
    }
    json_object_put(root);
    return ok;
}

enum verdict { SKIP, SEND, END_REVOKED };

static enum verdict event_verdict(const struct req *r, const struct stream_filter *f,
                                  const struct mcpgw_event *e)
{
    const char *type = e->type ? e->type : "";
    bool authed = r->who.authenticated || r->who.open_access;

    /* A revoked token's open streams end (check D3). */
    if (r->who.authenticated && strcmp(type, "token_revoked") == 0) {
        char name[MCPGW_TOKEN_NAME_MAX + 1];

        if (event_data_field(e, "name", name, sizeof(name)) && strcmp(name, r->who.info.name) == 0)
            return END_REVOKED;
    }
    if (!authed) {
        bool ok = false;

        for (size_t i = 0; anonymous_types[i]; i++)
            ok = ok || strcmp(type, anonymous_types[i]) == 0;
        if (!ok)
            return SKIP;
    }
    if (strcmp(type, "gap") != 0 && !type_listed(f, type))
        return SKIP;
    if (f->server[0] && (!e->server_id || strcmp(e->server_id, f->server) != 0))
        return SKIP;
    if (e->is_tool_event) {
        char tool[MCPGW_TOOL_NAME_MAX + 1];

        if (!authed || !e->server_id)
            return SKIP;
        if (!ident_allows_server_wide(&r->who, e->server_id) &&
            (!event_data_field(e, "toolName", tool, sizeof(tool)) ||
             !ident_allows(&r->who, e->server_id, tool)))
            return SKIP;
    }
    return SEND;
}

/* "id: <id>\ndata: <json>\n\n"; a JSON text with raw line breaks (never
 * from our encoders) is split over several data: lines as SSE requires. */
static int frame_event(struct mcpgw_buf *o, const char *id, const char *json, size_t len)
{
    int rc = 0;

    if (id && *id)
        rc = mcpgw_buf_printf(o, "id: %s\n", id);
    while (rc == 0) {
        const char *nl = memchr(json, '\n', len);
        size_t line = nl ? (size_t)(nl - json) : len;
        size_t keep = line;

        if (keep && json[keep - 1] == '\r')
            keep--;
        rc = mcpgw_buf_adds(o, "data: ");
        if (rc == 0)
            rc = mcpgw_buf_add(o, json, keep);
        if (rc == 0)
            rc = mcpgw_buf_addc(o, '\n');
        if (!nl)
            break;
        json = nl + 1;
        len -= line + 1;
    }
    if (rc == 0)
        rc = mcpgw_buf_addc(o, '\n');
    return rc;
}

static int stream_end_frame(struct mcpgw_buf *o, int retry_ms, const char *reason)
{
    return mcpgw_buf_printf(o, "retry: %d\ndata: {\"type\":\"stream_end\",\"timestamp\":%" PRId64
                            ",\"reason\":\"%s\",\"message\":\"reconnect with Last-Event-ID to "
                            "resume\"}\n\n", retry_ms, mcpgw_now_ms(), reason);
}

static bool stream_acquire(mcpgw_routes *rt)
{
    bool ok;

    pthread_mutex_lock(&rt->lock);
    ok = rt->streams < (unsigned)rt->conf->sse.max_streams;
    if (ok)
        rt->streams++;
    pthread_mutex_unlock(&rt->lock);
    return ok;
}

static void stream_release(mcpgw_routes *rt)
{
    pthread_mutex_lock(&rt->lock);
    rt->streams--;
    pthread_mutex_unlock(&rt->lock);
}

static int route_events(struct req *r)
{
    mcpgw_routes *rt = r->rt;
    const struct mcpgw_conf *conf = r->conf;
    struct stream_filter f;
    char last[MCPGW_EVENT_ID_MAX + 8], err[200];
    const char *hlast;
    struct mcpgw_events_stats st;
    mcpgw_events_reader *reader = NULL;
    struct mcpgw_buf o;
    struct mcpgw_event e;
    int64_t start, end, next_hb, next_tok;
    const char *reason = "max_duration";
    enum auth a;
    int rc, n, sent = 0;
    bool have_last = false;

    if (!rt->events)
        return send_error(r, 503, MCPGW_CODE_SERVER_UNAVAILABLE, "no event store is configured");
    a = authenticate(r, true);
    if (a == AUTH_BAD || a == AUTH_ERROR)
        return send_auth_error(r, a);
    if (a == AUTH_NONE && !conf->require_auth)
        r->who.open_access = true;
    if (parse_filter(r->hr->query, &f, err, sizeof(err)) < 0)
        return send_error(r, 400, MCPGW_CODE_BAD_REQUEST, "%s", err);
    hlast = mcpgw_http_header(r->hr, "last-event-id");
    if (hlast) {
        n = snprintf(last, sizeof(last), "%s", hlast);
        if (n < 0 || (size_t)n >= sizeof(last))
            return send_error(r, 400, MCPGW_CODE_BAD_REQUEST, "Last-Event-ID is too long");
        have_last = true;
    } else {
        n = mcpgw_http_query_get(r->hr->query, "lastEventId", last, sizeof(last));
        if (n < -1)
            return send_error(r, 400, MCPGW_CODE_BAD_REQUEST, "malformed ?lastEventId=");
        have_last = n >= 0;
    }
    /* An empty Last-Event-ID is what a browser sends before any event had
     * an id: start from now. */
    if (have_last && last[0] && !mcpgw_events_id_valid(rt->events, last))
        return send_error(r, 400, MCPGW_CODE_BAD_REQUEST, "Last-Event-ID is not an event id");
    if (!have_last || !last[0]) {
        /* Start at the newest event so that the connected event can carry
         * its id: a client that reconnects before any other event arrives
         * resumes from here and loses nothing. */
        mcpgw_events_stats(rt->events, &st);
        snprintf(last, sizeof(last), "%s", st.newest);
    }
    if (!stream_acquire(rt)) {
        static const struct mcpgw_http_header h[] = { { "Retry-After", "5" } };
        return send_error_h(r, 503, MCPGW_CODE_RATE_LIMITED, h, 1,
                            "too many open event streams (%d)", conf->sse.max_streams);
    }
    rc = mcpgw_events_reader_open(rt->events, last[0] ? last : NULL, &reader);
    if (rc < 0) {
        stream_release(rt);
        return send_error(r, 503, MCPGW_CODE_SERVER_UNAVAILABLE, "cannot read the event store: %s",
                          mcpgw_strerror(rc));
    }
    mcpgw_buf_init(&o, conf->limits.max_message_bytes + 65536);
    if (sse_begin(r) < 0)
        goto out;
    mcpgw_log_info(rt->component, "event stream opened for %s%s%s",
                   r->who.authenticated ? "'" : "",
                   r->who.authenticated ? r->who.info.name : "an anonymous client",
                   r->who.authenticated ? "'" : "");
    start = mcpgw__mono_ms();
    end = start + conf->sse.max_stream_ms;
    next_hb = start + conf->limits.heartbeat_ms;
    next_tok = start + TOKEN_RECHECK_MS;
    rc = mcpgw_buf_printf(&o, "retry: %d\n", conf->sse.retry_ms);
    if (rc == 0 && last[0])
        rc = mcpgw_buf_printf(&o, "id: %s\n", last);
    if (rc == 0)
        rc = mcpgw_buf_printf(&o, "data: {\"type\":\"connected\",\"timestamp\":%" PRId64
                              ",\"message\":\"Connected to MCP Gateway events\"}\n\n",
                              mcpgw_now_ms());
    if (rc < 0 || w_write(r, o.ptr, o.len) < 0 || w_flush(r) < 0)
        goto out;
    for (;;) {
        int64_t now = mcpgw__mono_ms(), wait;
        int rfd = mcpgw_events_reader_fd(reader);
        struct pollfd pfd[3];
        int np = 0, got;
        bool stop;

        stop = atomic_load(&rt->stopping);
        if (stop) {
            reason = "shutdown";
            break;
        }
        if (now >= end)
            break;
        /* A revocation reaches every process through the token file; the
         * token_revoked event only speeds it up where it is published. */
        if (r->who.authenticated && now >= next_tok) {
            const char *lapsed = ident_lapsed(rt, &r->who);

            if (lapsed) {
                reason = lapsed;
                break;
            }
            next_tok = now + TOKEN_RECHECK_MS;
        }
        if (now >= next_hb) {
            mcpgw_buf_reset(&o);
            if (mcpgw_buf_adds(&o, "data: ") < 0 || mcpgw_codec_sse_heartbeat(&o, mcpgw_now_ms()) < 0 ||
                mcpgw_buf_adds(&o, "\n\n") < 0 || w_write(r, o.ptr, o.len) < 0 || w_flush(r) < 0)
                goto out;
            next_hb = now + conf->limits.heartbeat_ms;
        }
        wait = (next_hb < end ? next_hb : end) - now;
        if (r->who.authenticated && next_tok - now < wait)
            wait = next_tok - now;
        if (wait < 0)
            wait = 0;
        pfd[np++] = (struct pollfd){ .fd = rt->stop_fd, .events = POLLIN };
        if (r->w->hangup_fd >= 0)
            pfd[np++] = (struct pollfd){ .fd = r->w->hangup_fd, .events = r->w->hangup_events };
        if (rfd >= 0)
            pfd[np++] = (struct pollfd){ .fd = rfd, .events = POLLIN };
        else if (wait > EVENTS_POLL_SLICE_MS)
            wait = EVENTS_POLL_SLICE_MS;
        /* The store reads on a timer too, should a wake-up be lost. */
        if (rfd >= 0 && wait > MCPGW_EVENTS_RECHECK_MS)
            wait = MCPGW_EVENTS_RECHECK_MS;
        /* Without a store descriptor the store itself does the waiting. */
        got = poll(pfd, (nfds_t)np, rfd >= 0 ? (int)wait : 0);
        if (got < 0 && errno != EINTR)
            goto out;
        if (r->w->hangup_fd >= 0 && (pfd[1].revents & (POLLRDHUP | POLLHUP | POLLERR))) {
            reason = NULL;
            mcpgw_log_debug(rt->component, "event stream client hung up");
            break;
        }
        if (pfd[0].revents & POLLIN)
            continue;   /* stopping: the top of the loop ends the stream */
        mcpgw_buf_reset(&o);
        for (int i = 0; i < 256; i++) {
            int t = (rfd < 0 && i == 0) ? (int)wait : 0;
            enum verdict v;

            rc = mcpgw_events_read(reader, &e, t);
            if (rc <= 0)
                break;
            v = event_verdict(r, &f, &e);
            if (v == END_REVOKED) {
                reason = "token_revoked";
                break;
            }
            if (v == SKIP)
                continue;
            if (frame_event(&o, e.id, e.json, e.json_len) < 0) {
                mcpgw_log_warn(rt->component, "event %s too large for the stream, skipped", e.id);
                continue;
            }
            sent++;
            if (o.len > 256u * 1024)
                break;
        }
        if (o.len && (w_write(r, o.ptr, o.len) < 0 || w_flush(r) < 0))
            goto out;
        if (reason && strcmp(reason, "token_revoked") == 0)
            break;
    }
    if (reason) {
        mcpgw_buf_reset(&o);
        if (stream_end_frame(&o, conf->sse.retry_ms, reason) == 0 && w_write(r, o.ptr, o.len) == 0)
            w_flush(r);
    }
out:
    mcpgw_log_info(rt->component, "event stream closed after %d events (%s)", sent,
                   r->gone ? "client gone" : reason ? reason : "client hung up");
    mcpgw_events_reader_close(reader);
    mcpgw_buf_release(&o);
    stream_release(rt);
    return r->gone ? -EPIPE : 0;
}

/* ---- dispatch ------------------------------------------------------------------------- */

const char *mcpgw_routes_path(const char *p)
{
    const char *s = p;

    while ((s = strstr(s, "/api/v1"))) {
        if (s[7] == '\0' || s[7] == '/')
            return s;
        s += 7;
    }
    return NULL;
}

bool mcpgw_routes_is_stream(const struct mcpgw_http_request *req)
{
    char path[PATH_MAX_BYTES];
    const char *route;

    if (!req->method || strcmp(req->method, "GET") != 0 || !req->path)
        return false;
    if (mcpgw_http_path_decode(req->path, path, sizeof(path)) < 0)
        return false;
    route = mcpgw_routes_path(path);
    return route && strcmp(route, "/api/v1/events") == 0;
}

enum route_id { R_NONE, R_HEALTH, R_SERVERS, R_TOOLS, R_CALL, R_TICKETS, R_EVENTS };

static enum route_id match(const char *route, char *server, size_t slen)
{
    static const char srv[] = "/api/v1/servers/";

    if (strcmp(route, "/api/v1/health") == 0)
        return R_HEALTH;
    if (strcmp(route, "/api/v1/servers") == 0)
        return R_SERVERS;
    if (strcmp(route, "/api/v1/tools/call") == 0)
        return R_CALL;
    if (strcmp(route, "/api/v1/tickets") == 0)
        return R_TICKETS;
    if (strcmp(route, "/api/v1/events") == 0)
        return R_EVENTS;
    if (strncmp(route, srv, sizeof(srv) - 1) == 0) {
        const char *id = route + sizeof(srv) - 1, *slash = strchr(id, '/');

        if (slash && strcmp(slash, "/tools") == 0 && slash > id && (size_t)(slash - id) < slen) {
            memcpy(server, id, (size_t)(slash - id));
            server[slash - id] = '\0';
            return R_TOOLS;
        }
    }
    return R_NONE;
}

static const char *route_methods(enum route_id id)
{
    return id == R_CALL || id == R_TICKETS ? "POST, OPTIONS" : "GET, OPTIONS";
}

static int dispatch(struct req *r)
{
    char path[PATH_MAX_BYTES], server[MCPGW_SERVER_ID_MAX + 8];
    const char *origin = mcpgw_http_header(r->hr, "origin");
    const char *method = r->hr->method ? r->hr->method : "";
    enum route_id id;
    struct mcpgw_http_header h[8];
    size_t n;
    bool stopping;

    stopping = atomic_load(&r->rt->stopping);
    if (origin) {
        if (!mcpgw_origin_allowed(r->conf, origin, mcpgw_http_header(r->hr, "host")))
            return send_error(r, 403, MCPGW_CODE_FORBIDDEN, "origin %s is not allowed", origin);
        r->origin = origin;
    }
    if (!r->hr->path || mcpgw_http_path_decode(r->hr->path, path, sizeof(path)) < 0)
        return send_error(r, 400, MCPGW_CODE_BAD_REQUEST, "malformed request path");
    r->route = mcpgw_routes_path(path);
    id = r->route ? match(r->route, server, sizeof(server)) : R_NONE;
    if (id == R_NONE || (!r->rt->hub && id != R_EVENTS && id != R_TICKETS))
        return send_error(r, 404, MCPGW_CODE_BAD_REQUEST, "no such route: %s", path);
    if (strcmp(method, "OPTIONS") == 0) {
        n = 0;
        if (origin && mcpgw_http_header(r->hr, "access-control-request-method"))
            n = mcpgw_cors_preflight_headers(origin, route_methods(id), h);
        else
            h[n++] = (struct mcpgw_http_header){ "Allow", route_methods(id) };
        if (w_begin(r, 204, h, n) < 0 || w_flush(r) < 0)
            return -EPIPE;
        return 0;
    }
    if (strcmp(method, strstr(route_methods(id), "POST") ? "POST" : "GET") != 0) {
        h[0] = (struct mcpgw_http_header){ "Allow", route_methods(id) };
        return send_error_h(r, 405, MCPGW_CODE_BAD_REQUEST, h, 1, "%s is not allowed on %s",
                            method, r->route);
    }
    if (stopping) {
        h[0] = (struct mcpgw_http_header){ "Retry-After", "1" };
        return send_error_h(r, 503, MCPGW_CODE_SERVER_UNAVAILABLE, h, 1,
                            "the gateway is shutting down");
    }
    switch (id) {
    case R_HEALTH: return route_health(r);
    case R_SERVERS: return route_servers(r);
    case R_TOOLS: return route_tools(r, server);
    case R_CALL: return route_call(r);
    case R_TICKETS: return route_ticket(r);
    case R_EVENTS: return route_events(r);
    case R_NONE: break;
    }
    return send_error(r, 404, MCPGW_CODE_BAD_REQUEST, "no such route");
}

int mcpgw_routes_handle(mcpgw_routes *rt, const struct mcpgw_http_request *req,
                        const struct mcpgw_http_writer *w)
{
    struct req r = { .rt = rt, .conf = rt->hub ? mcpgw_hub_conf(rt->hub) : rt->conf, .hr = req,
                     .w = w };
    int rc;

    atomic_fetch_add(&rt->active, 1);
    rc = dispatch(&r);
    ident_release(&r.who);
    atomic_fetch_sub(&rt->active, 1);
    return rc;
}

unsigned mcpgw_routes_active(mcpgw_routes *rt, unsigned *streams)
{
    unsigned n;

    n = atomic_load(&rt->active);
    if (streams) {
        pthread_mutex_lock(&rt->lock);
        *streams = rt->streams;
        pthread_mutex_unlock(&rt->lock);
    }
    return n;
}

void mcpgw_routes_shutdown(mcpgw_routes *rt, bool cancel_calls)
{
    uint64_t one = 1;
    bool post = false;

    if (!atomic_exchange(&rt->stopping, true) && write(rt->stop_fd, &one, sizeof(one)) < 0) {
        /* an eventfd write fails only on overflow: it is readable anyway */
    }
    if (!cancel_calls)
        return;
    pthread_mutex_lock(&rt->lock);
    if (!rt->cancel) {
        rt->cancel = true;
        post = rt->hub != NULL;
        rt->cancel_pending = post;
    }
    pthread_mutex_unlock(&rt->lock);
    if (post && mcpgw_hub_post(rt->hub, cancel_all, rt) < 0) {
        mcpgw_log_warn(rt->component, "cannot cancel the calls in flight: the hub is stopping");
        pthread_mutex_lock(&rt->lock);
        rt->cancel_pending = false;
        pthread_mutex_unlock(&rt->lock);
    }
}

int mcpgw_routes_new(const struct mcpgw_routes_opts *opts, mcpgw_routes **out, char *err,
                     size_t errlen)
{
    mcpgw_routes *rt;
    int rc;

    *out = NULL;
    rt = calloc(1, sizeof(*rt));
    if (!rt) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    rt->conf = opts->conf;
    rt->hub = opts->hub;
    rt->events = opts->events;
    snprintf(rt->component, sizeof(rt->component), "%s", opts->component ? opts->component : "http");
    pthread_mutex_init(&rt->lock, NULL);
    pthread_cond_init(&rt->cancel_cond, NULL);
    pthread_rwlock_init(&rt->tok_lock, NULL);
    rt->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (rt->stop_fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot create an eventfd: %s", strerror(errno));
        goto fail;
    }
    rc = mcpgw_tokens_load(rt->conf->token_file, &rt->tokens, err, errlen);
    if (rc < 0)
        goto fail;
    rt->tok_exists = stat(rt->conf->token_file, &rt->tok_st) == 0;
    if (rt->hub) {
        const struct mcpgw_conf_token_limits *tl = &rt->conf->token_limits;
        struct mcpgw_quota_limits lim = { (unsigned)tl->max_concurrent, (unsigned)tl->per_second,
                                          (unsigned)tl->burst };
        char why[4800];

        rc = mcpgw_quota_new(rt->conf->state_dir, rt->conf->token_file, &lim, &rt->quota, why,
                             sizeof(why));
        if (rc < 0) {
            snprintf(err, errlen, "cannot set up the per-token limits: %s", strerror(-rc));
            goto fail;
        }
        if (why[0])
            mcpgw_log_warn(rt->component, "%s", why);
    }
    *out = rt;
    return 0;
fail:
    mcpgw_routes_free(rt);
    return rc;
}

void mcpgw_routes_free(mcpgw_routes *rt)
{
    struct timespec until;
    bool pending;

    if (!rt)
        return;
    /* A cancel_all still queued on the hub would run on freed routes:
     * wait for it (the hub's loop runs it at its next turn). */
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&rt->lock);
    while (rt->cancel_pending &&
           pthread_cond_timedwait(&rt->cancel_cond, &rt->lock, &until) != ETIMEDOUT)
        ;
    pending = rt->cancel_pending;
    pthread_mutex_unlock(&rt->lock);
    if (pending) {
        /* The hub's loop is not running: leaking beats running on freed memory. */
        mcpgw_log_error(rt->component, "routes not freed: a cancellation is still queued on "
                        "a hub that does not run");
        return;
    }
    if (rt->stop_fd >= 0)
        close(rt->stop_fd);
    mcpgw_tokens_free(rt->tokens);
    mcpgw_quota_free(rt->quota);
    pthread_cond_destroy(&rt->cancel_cond);
    pthread_mutex_destroy(&rt->lock);
    pthread_rwlock_destroy(&rt->tok_lock);
    free(rt);
}
