/* events_hub.c - the hub's calls and server changes as events (events.h,
 * docs/events.md).
 *
 * Every tool call makes two events or more, so this is on the gateway's hot
 * path: each event's text is written straight into one buffer (no json-c
 * objects, one pass), and events handed over together are stored with one
 * append (events_file.c: one lock, one write).  Text copied from elsewhere
 * is cut to a bound at a character boundary, so the events the gateway
 * makes itself always fit MCPGW_EVENT_BYTES_MAX without their params.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "err.h"
#include "events.h"
#include "events_internal.h"
#include "hub.h"
#include "limits.h"

#define CALLER_MAX 256
#define TRANSPORT_MAX 32
#define MESSAGE_MAX 1024
#define ERROR_MAX 512
/* Events stored per append. */
#define BATCH 64

/* An event's text under construction; the first error sticks. */
struct enc {
    struct mcpgw_buf *b;
    int rc;
    bool first;                 /* no field in data yet */
};

static void put(struct enc *e, const char *s, size_t n)
{
    if (e->rc == 0)
        e->rc = mcpgw_buf_add(e->b, s, n);
}

static void key(struct enc *e, const char *k)
{
    if (!e->first)
        put(e, ",", 1);
    e->first = false;
    put(e, "\"", 1);
    put(e, k, strlen(k));
    put(e, "\":", 2);
}

/* s cut to at most max bytes, at a UTF-8 character boundary. */
static void str(struct enc *e, const char *k, const char *s, size_t max)
{
    size_t n = strlen(s);

    if (n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    key(e, k);
    if (e->rc == 0)
        e->rc = mcpgw_buf_add_json_str(e->b, s, n);
}

static void i64(struct enc *e, const char *k, int64_t v)
{
    key(e, k);
    if (e->rc == 0)
        e->rc = mcpgw_buf_add_i64(e->b, v);
}

static void boolean(struct enc *e, const char *k, bool v)
{
    key(e, k);
    put(e, v ? "true" : "false", v ? 4 : 5);
}

/* A number as json-c writes it (progress values: rare, and readers already
 * see json-c's form). */
static void dbl(struct enc *e, const char *k, double v)
{
    json_object *o = json_object_new_double(v);
    const char *t;
    size_t n;

    if (!o) {
        e->rc = -ENOMEM;
        return;
    }
    key(e, k);
    if (!(t = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n)))
        e->rc = -ENOMEM;
    else
        put(e, t, n);
    json_object_put(o);
}

static void head(struct enc *e, const char *type)
{
    put(e, MCPGW_STRLIT("{\"type\":\""));
    put(e, type, strlen(type));
    put(e, MCPGW_STRLIT("\",\"timestamp\":"));
    if (e->rc == 0)
        e->rc = mcpgw_buf_add_i64(e->b, mcpgw__events_now_ms());
    put(e, MCPGW_STRLIT(",\"data\":{"));
    e->first = true;
}

/* The fields every tool event carries, so one call can be followed. */
static void call_fields(struct enc *e, mcpgw_events *ev, const struct mcpgw_hub_event *h)
{
    const char *tag = mcpgw__events_tag(ev);

    key(e, "callId");
    put(e, "\"", 1);
    put(e, tag, strlen(tag));
    put(e, "-", 1);
    if (e->rc == 0)
        e->rc = mcpgw_buf_add_u64(e->b, h->call_id);
    put(e, "\"", 1);
    if (h->client_call_id)
        str(e, "clientCallId", h->client_call_id, MCPGW_CALL_ID_MAX);
    str(e, "serverId", h->server ? h->server : "", MCPGW_SERVER_ID_MAX);
    str(e, "toolName", h->tool ? h->tool : "", MCPGW_TOOL_NAME_MAX);
}

static void exit_fields(struct enc *e, int status)
{
    char text[64];

    if (WIFEXITED(status)) {
        snprintf(text, sizeof(text), "exited with status %d", WEXITSTATUS(status));
        i64(e, "exitCode", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        snprintf(text, sizeof(text), "killed by signal %d", WTERMSIG(status));
        i64(e, "signal", WTERMSIG(status));
    } else {
        snprintf(text, sizeof(text), "wait status %d", status);
    }
    str(e, "exitStatus", text, sizeof(text));
}

static void call_start(struct enc *e, mcpgw_events *ev, const struct mcpgw_hub_event *h)
{
    size_t mark;
    const char *t;
    size_t n;

    call_fields(e, ev, h);
    if (h->caller)
        str(e, "caller", h->caller, CALLER_MAX);
    if (h->transport)
        str(e, "transport", h->transport, TRANSPORT_MAX);
    if (!mcpgw__events_include_params(ev) || e->rc)
        return;
    mark = e->b->len;
    key(e, "params");
    if (!h->args) {
        put(e, "{}", 2);
    } else if ((t = json_object_to_json_string_length(
                    h->args, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n))) {
        put(e, t, n);
    } else {
        e->rc = -ENOMEM;
    }
    if (e->rc == MCPGW_ETOOBIG || e->b->len - mark > MCPGW_EVENT_BYTES_MAX) {
        /* The call matters more than its arguments. */
        e->b->len = mark;
        e->rc = 0;
        boolean(e, "paramsTruncated", true);
    }
}

static void call_done(struct enc *e, mcpgw_events *ev, const struct mcpgw_hub_event *h)
{
    const struct mcpgw_call_event *c = h->call;

    call_fields(e, ev, h);
    boolean(e, "success", c->status == 0 && !c->is_error);
    i64(e, "durationMs", c->duration_ms);
    if (c->status == 0 && c->is_error) {
        boolean(e, "isError", true);
        str(e, "errorCode", "tool_error", 16);
    } else if (c->status < 0) {
        str(e, "errorCode", mcpgw_err_code(c->status), 64);
        if (c->status == MCPGW_ERPC)
            i64(e, "rpcCode", c->rpc_code);
        if (c->error)
            str(e, "error", c->error, ERROR_MAX);
    }
}

static void server_state(struct enc *e, const struct mcpgw_hub_event *h)
{
    const struct mcpgw_server_health *hs = h->health;

    str(e, "serverId", hs->id ? hs->id : (h->server ? h->server : ""), MCPGW_SERVER_ID_MAX);
    str(e, "status", mcpgw_server_state_name(hs->state), 32);
    if (hs->pid > 0)
        i64(e, "pid", hs->pid);
    i64(e, "restarts", (int64_t)hs->restarts);
    if (h->exit_status >= 0)
        exit_fields(e, h->exit_status);
    if (hs->state == MCPGW_SERVER_BACKOFF)
        i64(e, "nextRetry", hs->next_retry_ms);
    if (hs->state == MCPGW_SERVER_READY)
        i64(e, "tools", (int64_t)hs->ntools);
    if (hs->last_error[0] && hs->state != MCPGW_SERVER_READY)
        str(e, "lastError", hs->last_error, ERROR_MAX);
}

/* h's event appended to b: its type, or NULL when h makes none.  *server
 * is the serverId to index it by (NULL: none).  e->rc says whether the
 * text is whole. */
static const char *encode(struct enc *e, mcpgw_events *ev, const struct mcpgw_hub_event *h,
                          const char **server)
{
    const char *type, *sid = h->server;

    switch (h->kind) {
    case MCPGW_HUB_CALL_START:
        type = "tool_call";
        break;
    case MCPGW_HUB_CALL_PROGRESS:
        type = h->call ? "tool_progress" : NULL;
        break;
    case MCPGW_HUB_CALL_DONE:
        type = h->call ? "tool_result" : NULL;
        break;
    case MCPGW_HUB_SERVER_STATE:
        type = h->health ? "server_status" : NULL;
        if (h->health && h->health->id)
            sid = h->health->id;
        break;
    default:
        type = NULL;
        break;
    }
    if (!type)
        return NULL;
    *server = sid && *sid && strlen(sid) <= MCPGW_SERVER_ID_MAX ? sid : NULL;
    head(e, type);
    switch (h->kind) {
    case MCPGW_HUB_CALL_START:
        call_start(e, ev, h);
        break;
    case MCPGW_HUB_CALL_PROGRESS:
        call_fields(e, ev, h);
        dbl(e, "progress", h->call->progress);
        if (h->call->has_total)
            dbl(e, "total", h->call->total);
        if (h->call->message)
            str(e, "message", h->call->message, MESSAGE_MAX);
        break;
    case MCPGW_HUB_CALL_DONE:
        call_done(e, ev, h);
        break;
    default:
        server_state(e, h);
        break;
    }
    put(e, "}}", 2);
    return type;
}

/* ---- batches ------------------------------------------------------------ */

/* One event of a batch: where its text is in the batch's buffer.  Offsets,
 * not pointers: the buffer moves as it grows. */
struct ent {
    const char *type;           /* a literal, or in text at type_off */
    size_t type_off, sid_off, json_off, json_len;
    int64_t ts;
    bool own_type, has_sid;
};

struct mcpgw_events_batch {
    struct mcpgw_buf text;
    struct ent *v;
    size_t n, cap;
};

static void batch_init(mcpgw_events_batch *b)
{
    memset(b, 0, sizeof(*b));
    mcpgw_buf_init(&b->text, SIZE_MAX / 2);
}

static void batch_release(mcpgw_events_batch *b)
{
    mcpgw_buf_release(&b->text);
    free(b->v);
}

mcpgw_events_batch *mcpgw_events_batch_new(void)
{
    mcpgw_events_batch *b = malloc(sizeof(*b));

    if (b)
        batch_init(b);
    return b;
}

void mcpgw_events_batch_free(mcpgw_events_batch *b)
{
    if (!b)
        return;
    batch_release(b);
    free(b);
}

size_t mcpgw_events_batch_count(const mcpgw_events_batch *b)
{
    return b->n;
}

size_t mcpgw_events_batch_bytes(const mcpgw_events_batch *b)
{
    return b->text.len;
}

static struct ent *batch_slot(mcpgw_events_batch *b)
{
    if (b->n == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 8;
        struct ent *nv = realloc(b->v, ncap * sizeof(*nv));

        if (!nv)
            return NULL;
        b->v = nv;
        b->cap = ncap;
    }
    return &b->v[b->n];
}

/* Append s and its NUL to b's text at *off.  0 or -errno. */
static int batch_str(mcpgw_events_batch *b, const char *s, size_t *off)
{
    *off = b->text.len;
    return mcpgw_buf_add(&b->text, s, strlen(s) + 1);
}

/* Finish the event whose JSON is text[mark, len): its serverId and type
 * after it.  type is a literal unless own_type. */
static int batch_commit(mcpgw_events_batch *b, size_t mark, const char *type, bool own_type,
                        const char *server_id)
{
    struct ent *x = batch_slot(b);
    size_t json_len = b->text.len - mark;
    int rc = x ? 0 : -ENOMEM;

    if (rc == 0)
        rc = mcpgw_buf_addc(&b->text, 0);
    if (rc == 0) {
        *x = (struct ent){ .type = own_type ? NULL : type, .json_off = mark,
                           .json_len = json_len, .ts = mcpgw__events_now_ms(),
                           .own_type = own_type, .has_sid = server_id != NULL };
        if (own_type)
            rc = batch_str(b, type, &x->type_off);
    }
    if (rc == 0 && server_id)
        rc = batch_str(b, server_id, &x->sid_off);
    if (rc < 0) {
        b->text.len = mark;
        return rc;
    }
    b->n++;
    return 1;
}

int mcpgw_events_batch_add_hub(mcpgw_events *ev, mcpgw_events_batch *b,
                               const struct mcpgw_hub_event *h)
{
    struct enc e = { .b = &b->text };
    size_t mark = b->text.len;
    const char *type, *sid = NULL;
    int rc;

    type = encode(&e, ev, h, &sid);
    if (!type)
        return 0;
    rc = e.rc;
    if (rc == 0 && b->text.len - mark > MCPGW_EVENT_BYTES_MAX)
        rc = MCPGW_ETOOBIG;
    if (rc == 0)
        rc = batch_commit(b, mark, type, false, sid);
    if (rc < 0) {
        b->text.len = mark;
        mcpgw__events_drop(ev, type, rc);
    }
    return rc;
}

int mcpgw_events_batch_add(mcpgw_events *ev, mcpgw_events_batch *b, const char *type,
                           json_object *data)
{
    size_t mark = b->text.len;
    const char *sid;
    int rc = mcpgw__events_wrap(&b->text, type, data, &sid);

    if (rc == 0)
        rc = batch_commit(b, mark, type, true, sid);
    if (rc < 0)
        mcpgw__events_drop(ev, mcpgw__events_type_name(type), rc);
    return rc;
}

void mcpgw_events_batch_store(mcpgw_events *ev, mcpgw_events_batch *b)
{
    struct mcpgw__evrec rec[BATCH];

    for (size_t i = 0; i < b->n;) {
        size_t k = 0;

        for (; i < b->n && k < BATCH; i++, k++) {
            const struct ent *x = &b->v[i];

            rec[k] = (struct mcpgw__evrec){
                .type = x->own_type ? b->text.ptr + x->type_off : x->type,
                .server_id = x->has_sid ? b->text.ptr + x->sid_off : NULL,
                .json = b->text.ptr + x->json_off,
                .json_len = x->json_len,
                .ts = x->ts,
            };
        }
        mcpgw__events_store(ev, rec, k);
    }
    b->n = 0;
    mcpgw_buf_reset(&b->text);
}

/* ---- observers ------------------------------------------------------------ */

void mcpgw_events_hub_observe_many(mcpgw_events *ev, const struct mcpgw_hub_event *const *h,
                                   size_t n)
{
    mcpgw_events_batch b;

    batch_init(&b);
    for (size_t i = 0; i < n; i++)
        mcpgw_events_batch_add_hub(ev, &b, h[i]);
    mcpgw_events_batch_store(ev, &b);
    batch_release(&b);
}

void mcpgw_events_hub_observer(void *ud, const struct mcpgw_hub_event *h)
{
    mcpgw_events_hub_observe_many(ud, &h, 1);
}
