/* session.c - the typed protocol on one connection (session.h).
 *
 * Every message in is decoded by the codec and every message out encoded by
 * it, into the daemon's one scratch buffer, then queued on the WebSocket
 * (which copies).  Errors about a message carry its id whenever it could be
 * read; the connection stays open unless the framing itself broke (ws.c
 * decides that) or a policy limit says otherwise.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "codec.h"
#include "err.h"
#include "log.h"
#include "publish.h"
#include "session.h"
#include "ws.h"

#define C WSD_COMPONENT

enum call_kind { CALL_TOOL, CALL_LIST };

/* One request in flight: a tool call or a list_tools.  Keyed by the
 * client's id as JSON text. */
struct call {
    struct wsd *d;
    struct wsd_session *s;      /* NULL once the session has gone */
    enum call_kind kind;
    mcpgw_call *hc;             /* CALL_TOOL: the hub's handle */
    const char *why;            /* text for the error when we cancel it */
    struct mcpgw_quota_hold hold;   /* CALL_TOOL with a token: its share of the token's limits */
    uint32_t hash;
    struct call *hnext;         /* bucket chain */
    struct call *prev, *next;   /* the session's list */
    char *server, *tool;
    char id[];                  /* the id's JSON text */
};

struct wsd_session {
    struct wsd *d;
    struct wsd_session *prev, *next;    /* d->sessions */
    struct wsd_ws *ws;
    void (*release)(void *ud);
    void *release_ud;
    struct mcpgw__timer auth_timer;     /* authenticate within handshakeTimeoutMs */

    char client_id[24];
    struct wsd_peer peer;
    struct wsd_ident ident;
    int64_t started_wall, started_mono;
    int auth_failures;
    uint64_t calls_total;

    struct call **buckets;      /* allocated with the first call, freed when idle */
    unsigned nbuckets, ncalls, ntools;
    struct call *calls;
};

/* -- identities ------------------------------------------------------------------ */

void wsd_ident_release(struct wsd_ident *id)
{
    if (!id)
        return;
    free(id->name);
    for (size_t i = 0; id->scopes && i < id->nscopes; i++)
        free(id->scopes[i]);
    free(id->scopes);
    memset(id, 0, sizeof(*id));
}

static int copy_scopes(const char *const *src, size_t n, char ***out)
{
    char **v = calloc(n + 1, sizeof(char *));

    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        if (!(v[i] = strdup(src[i]))) {
            while (i--)
                free(v[i]);
            free(v);
            return -ENOMEM;
        }
    }
    *out = v;
    return 0;
}

int wsd_ident_from_token(struct wsd_ident *id, const struct mcpgw_token_info *info,
                         enum wsd_auth_via via)
{
    struct wsd_ident n = { .via = via, .created = info->created, .expires = info->expires };

    if (!(n.name = strdup(info->name)) ||
        copy_scopes(info->scopes, info->nscopes, &n.scopes) < 0) {
        free(n.name);
        return -ENOMEM;
    }
    n.nscopes = info->nscopes;
    snprintf(n.prefix, sizeof(n.prefix), "%s", info->prefix ? info->prefix : "");
    wsd_ident_release(id);
    *id = n;
    return 0;
}

void wsd_ident_as_token(const struct wsd_ident *id, struct mcpgw_token_info *out)
{
    memset(out, 0, sizeof(*out));
    out->name = id->name;
    out->scopes = (const char *const *)id->scopes;
    out->nscopes = id->nscopes;
    out->created = id->created;
    out->expires = id->expires;
    out->prefix = id->prefix;
}

static const char *via_name(enum wsd_auth_via via)
{
    switch (via) {
    case WSD_AUTH_HEADER: return "Authorization header";
    case WSD_AUTH_TICKET: return "ticket";
    case WSD_AUTH_MESSAGE: return "auth message";
    default: return "none";
    }
}

/* -- small helpers --------------------------------------------------------------- */

static bool authenticated(const struct wsd_session *s)
{
    return s->ident.name != NULL;
}

/* May this session make calls at all? */
static bool authorised(const struct wsd_session *s)
{
    return authenticated(s) || !s->d->conf->require_auth;
}

/* Whether the session's identity allows server:tool (tool NULL: the server
 * at all).  Without authentication (requireAuth off) everything is. */
static bool allows(const struct wsd_session *s, const char *server, const char *tool)
{
    struct mcpgw_token_info ti;

    if (!authenticated(s))
        return !s->d->conf->require_auth;
    wsd_ident_as_token(&s->ident, &ti);
    return mcpgw_token_allows(&ti, server, tool);
}

static const char *who(const struct wsd_session *s)
{
    return s->ident.name ? s->ident.name : s->client_id;
}

/* Queue what is in d->out.  A client over its output limit is being closed
 * by ws.c (1008); there is nothing more to do about it here. */
static void send_out(struct wsd_session *s)
{
    struct wsd *d = s->d;
    int rc = wsd_ws_send(s->ws, d->out.ptr, d->out.len);

    if (rc == MCPGW_ETOOBIG)
        mcpgw_log_warn(C, "client %s: closing: it does not read its messages "
                       "(more than %zu bytes queued)", s->client_id,
                       (size_t)d->conf->websocket.outq_max_bytes);
    else if (rc == -ENOMEM)
        mcpgw_log_error(C, "client %s: cannot queue a message: out of memory", s->client_id);
}

static void send_error(struct wsd_session *s, const char *id_json, const char *code,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void send_error(struct wsd_session *s, const char *id_json, const char *code,
                       const char *fmt, ...)
{
    struct wsd *d = s->d;
    char text[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    mcpgw_buf_reset(&d->out);
    if (mcpgw_codec_error(&d->out, id_json, mcpgw_now_ms(), code, text) == 0)
        send_out(s);
}

/* The status message: on connect (id NULL) and after an auth. */
static void send_status(struct wsd_session *s, const char *id_json, const char *message)
{
    struct wsd *d = s->d;
    json_object *extra = NULL, *scopes;
    int rc;

    if (authenticated(s)) {
        extra = json_object_new_object();
        scopes = json_object_new_array_ext((int)s->ident.nscopes);
        if (!extra || !scopes) {
            json_object_put(extra);
            json_object_put(scopes);
            mcpgw_log_error(C, "client %s: cannot build a status: out of memory", s->client_id);
            return;
        }
        for (size_t i = 0; i < s->ident.nscopes; i++)
            json_object_array_add(scopes, json_object_new_string(s->ident.scopes[i]));
        json_object_object_add(extra, "authenticated", json_object_new_boolean(1));
        json_object_object_add(extra, "tokenName", json_object_new_string(s->ident.name));
        json_object_object_add(extra, "scopes", scopes);
    }
    mcpgw_buf_reset(&d->out);
    rc = mcpgw_codec_status(&d->out, id_json, mcpgw_now_ms(), message, s->client_id,
                            d->conf->require_auth, extra);
    json_object_put(extra);
    if (rc == 0)
        send_out(s);
}

/* -- the calls map ----------------------------------------------------------------- */

static uint32_t hash_id(const char *id)
{
    uint32_t h = 2166136261u;

    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 16777619u;
    return h;
}

static struct call *call_find(const struct wsd_session *s, const char *id)
{
    uint32_t h;

    if (!s->nbuckets)
        return NULL;
    h = hash_id(id);
    for (struct call *c = s->buckets[h & (s->nbuckets - 1)]; c; c = c->hnext)
        if (c->hash == h && strcmp(c->id, id) == 0)
            return c;
    return NULL;
}

static int map_grow(struct wsd_session *s)
{
    unsigned n = s->nbuckets ? s->nbuckets * 2 : 8;
    struct call **b = calloc(n, sizeof(*b));

    if (!b)
        return -ENOMEM;
    for (struct call *c = s->calls; c; c = c->next) {
        c->hnext = b[c->hash & (n - 1)];
        b[c->hash & (n - 1)] = c;
    }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = n;
    return 0;
}

static int call_insert(struct wsd_session *s, struct call *c)
{
    if (s->ncalls + 1 > s->nbuckets * 2 && map_grow(s) < 0)
        return -ENOMEM;
    c->hash = hash_id(c->id);
    c->hnext = s->buckets[c->hash & (s->nbuckets - 1)];
    s->buckets[c->hash & (s->nbuckets - 1)] = c;
    c->prev = NULL;
    c->next = s->calls;
    if (s->calls)
        s->calls->prev = c;
    s->calls = c;
    s->ncalls++;
    if (c->kind == CALL_TOOL)
        s->ntools++;
    return 0;
}

static void call_remove(struct wsd_session *s, struct call *c)
{
    struct call **pp = &s->buckets[c->hash & (s->nbuckets - 1)];

    while (*pp != c)
        pp = &(*pp)->hnext;
    *pp = c->hnext;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->ncalls--;
    if (c->kind == CALL_TOOL)
        s->ntools--;
    c->s = NULL;
    if (!s->ncalls) {
        /* An idle connection keeps no table. */
        free(s->buckets);
        s->buckets = NULL;
        s->nbuckets = 0;
    }
}

static struct call *call_new(struct wsd_session *s, enum call_kind kind, const char *id_json,
                             const char *server, const char *tool)
{
    size_t n = strlen(id_json) + 1;
    struct call *c = calloc(1, sizeof(*c) + n);

    if (!c)
        return NULL;
    memcpy(c->id, id_json, n);
    c->d = s->d;
    c->s = s;
    c->kind = kind;
    c->hold = (struct mcpgw_quota_hold)MCPGW_QUOTA_HOLD_INIT;
    c->server = strdup(server);
    c->tool = tool ? strdup(tool) : NULL;
    if (!c->server || (tool && !c->tool)) {
        free(c->server);
        free(c->tool);
        free(c);
        return NULL;
    }
    return c;
}

/* Every call ends here, however it ended: its hold on the token's limits
 * goes back with it. */
static void call_free(struct call *c)
{
    mcpgw_quota_release(c->d->quota, &c->hold);
    free(c->server);
    free(c->tool);
    free(c);
}

/* -- tool calls --------------------------------------------------------------------- */

static void on_call_event(mcpgw_call *hc, const struct mcpgw_call_event *ev, void *ud)
{
    struct call *c = ud;
    struct wsd_session *s = c->s;
    struct wsd *d = c->d;
    int rc = 0;

    if (ev->kind == MCPGW_CALL_PROGRESS) {
        if (!s || !wsd_ws_open(s->ws))
            return;
        mcpgw_buf_reset(&d->out);
        if (mcpgw_codec_tool_progress(&d->out, c->id, mcpgw_now_ms(), ev->progress,
                                      ev->has_total ? &ev->total : NULL, ev->message) == 0)
            send_out(s);
        return;
    }
    if (s)
        call_remove(s, c);
    if (ev->status != 0)
        mcpgw_log_info(C, "client %s: call %s to '%s' on '%s' failed after %" PRId64 " ms: %s",
                       s ? s->client_id : "(gone)", c->id, c->tool, c->server, ev->duration_ms,
                       c->why ? c->why : ev->error ? ev->error : mcpgw_strerror(ev->status));
    if (s && wsd_ws_open(s->ws)) {
        mcpgw_buf_reset(&d->out);
        if (ev->status == 0 && ev->result_json)
            rc = mcpgw_codec_tool_response_text(&d->out, c->id, mcpgw_now_ms(), !ev->is_error,
                                                ev->result_json, ev->result_len, c->server,
                                                c->tool);
        else if (ev->status == 0)
            rc = mcpgw_codec_tool_response(&d->out, c->id, mcpgw_now_ms(), !ev->is_error,
                                           ev->result, c->server, c->tool);
        else
            rc = mcpgw_codec_error(&d->out, c->id, mcpgw_now_ms(), mcpgw_err_code(ev->status),
                                   c->why ? c->why :
                                   ev->error ? ev->error : mcpgw_strerror(ev->status));
        if (rc == 0) {
            send_out(s);
        } else if (rc == MCPGW_ETOOBIG) {
            mcpgw_log_info(C, "client %s: result of call %s is over the message limit",
                           s->client_id, c->id);
            send_error(s, c->id, MCPGW_CODE_TOO_LARGE,
                       "the result of '%s' on '%s' is over the message size limit",
                       c->tool, c->server);
        } else {
            send_error(s, c->id, MCPGW_CODE_INTERNAL, "cannot encode the result: %s",
                       mcpgw_strerror(rc));
        }
    }
    call_free(c);
}

static void do_tool_call(struct wsd_session *s, const struct mcpgw_msg *m, const char *id)
{
    struct wsd *d = s->d;
    const struct mcpgw_conf *conf = d->conf;
    struct mcpgw_call_opts opts = {
        .progress = m->progress, .caller = who(s), .client_call_id = m->id_str,
        .transport = "websocket", .result_text = true,
    };
    struct call *c;
    int rc;

    if (d->draining) {
        send_error(s, id, MCPGW_CODE_SERVER_UNAVAILABLE, "gateway is shutting down");
        return;
    }
    if (call_find(s, id)) {
        send_error(s, id, MCPGW_CODE_BAD_REQUEST, "a call with id %s is already in flight", id);
        return;
    }
    if (s->ntools >= (unsigned)conf->limits.max_inflight_per_conn) {
        send_error(s, id, MCPGW_CODE_RATE_LIMITED,
                   "%u calls in flight on this connection (the limit is %d)", s->ntools,
                   conf->limits.max_inflight_per_conn);
        return;
    }
    if (!mcpgw_conf_server(mcpgw_hub_conf(d->hub), m->server_id)) {
        send_error(s, id, MCPGW_CODE_UNKNOWN_SERVER, "unknown server '%s'", m->server_id);
        return;
    }
    if (!allows(s, m->server_id, m->tool_name)) {
        mcpgw_log_info(C, "client %s: token '%s' may not call %s:%s", s->client_id,
                       s->ident.name, m->server_id, m->tool_name);
        send_error(s, id, MCPGW_CODE_FORBIDDEN, "token '%s' may not call '%s' on '%s'",
                   s->ident.name, m->tool_name, m->server_id);
        return;
    }
    if (!(c = call_new(s, CALL_TOOL, id, m->server_id, m->tool_name)) || call_insert(s, c) < 0) {
        if (c)
            call_free(c);
        send_error(s, id, MCPGW_CODE_INTERNAL, "out of memory");
        return;
    }
    /* Last of the checks, so a call refused for another reason costs the
     * token nothing; a connection without a token (requireAuth off) has
     * no token's limits. */
    if (authenticated(s)) {
        struct mcpgw_quota_refusal why;
        char text[400];

        if (mcpgw_quota_acquire(d->quota, s->ident.name, &c->hold, &why) < 0) {
            call_remove(s, c);
            call_free(c);
            mcpgw_quota_describe(&why, s->ident.name, text, sizeof(text));
            mcpgw_log_info(C, "client %s: call %s refused: %s", s->client_id, id, text);
            send_error(s, id, MCPGW_CODE_RATE_LIMITED, "%s", text);
            return;
        }
    }
    rc = mcpgw_hub_call(d->hub, m->server_id, m->tool_name, m->params, &opts, on_call_event, c,
                        &c->hc);
    if (rc < 0) {
        call_remove(s, c);
        call_free(c);
        mcpgw_log_info(C, "client %s: call %s to '%s' on '%s' refused: %s", s->client_id, id,
                       m->tool_name, m->server_id, mcpgw_strerror(rc));
        switch (rc) {
        case MCPGW_EUNKNOWNTOOL:
            send_error(s, id, MCPGW_CODE_UNKNOWN_TOOL, "server '%s' has no tool '%s'",
                       m->server_id, m->tool_name);
            break;
        case MCPGW_EUNAVAIL:
            send_error(s, id, MCPGW_CODE_SERVER_UNAVAILABLE, "server '%s' is unavailable",
                       m->server_id);
            break;
        case MCPGW_EFORBIDDEN:
            /* Scopes are checked before the hub; from the hub this is pinning. */
            send_error(s, id, MCPGW_CODE_FORBIDDEN, "tool '%s' of server '%s' changed since it "
                       "was approved; it is withheld until an operator approves it",
                       m->tool_name, m->server_id);
            break;
        case MCPGW_EBUSY:
            send_error(s, id, MCPGW_CODE_RATE_LIMITED,
                       "server '%s' has too many calls in flight", m->server_id);
            break;
        default:
            send_error(s, id, mcpgw_err_code(rc), "%s", mcpgw_strerror(rc));
            break;
        }
        return;
    }
    s->calls_total++;
    if (d->hub_kick)
        wsd_loop_defer(d->loop, d->hub_kick);
}

static void do_cancel(struct wsd_session *s, const char *id)
{
    struct call *c = call_find(s, id);

    /* A call that already finished got its one answer; a cancel crossing
     * it on the wire is not an error (docs/protocol.md, Cancel). */
    if (!c || c->kind != CALL_TOOL) {
        mcpgw_log_debug(C, "client %s: cancel of %s: no such call in flight", s->client_id, id);
        return;
    }
    mcpgw_call_cancel(c->hc, "cancelled by the client");
}

/* -- listing ----------------------------------------------------------------------- */

static void do_list_servers(struct wsd_session *s, const char *id)
{
    struct wsd *d = s->d;
    json_object *data = json_object_new_object(), *arr = json_object_new_array();
    struct mcpgw_server_health h;
    int rc;

    if (!data || !arr) {
        json_object_put(data);
        json_object_put(arr);
        send_error(s, id, MCPGW_CODE_INTERNAL, "out of memory");
        return;
    }
    json_object_object_add(data, "servers", arr);
    for (size_t i = 0; mcpgw_hub_health(d->hub, i, &h); i++) {
        json_object *o;

        if (!allows(s, h.id, NULL))
            continue;
        o = json_object_new_object();
        if (!o)
            continue;
        json_object_object_add(o, "id", json_object_new_string(h.id));
        json_object_object_add(o, "state", json_object_new_string(mcpgw_server_state_name(h.state)));
        json_object_object_add(o, "tools", json_object_new_int((int)h.ntools));
        json_object_array_add(arr, o);
    }
    mcpgw_buf_reset(&d->out);
    rc = mcpgw_codec_message(&d->out, "server_list", id, mcpgw_now_ms(), data);
    json_object_put(data);
    if (rc == 0)
        send_out(s);
    else
        send_error(s, id, mcpgw_err_code(rc), "cannot encode the server list");
}

static void on_tools(void *ud, int status, json_object *tools, const char *error)
{
    struct call *c = ud;
    struct wsd_session *s = c->s;
    struct wsd *d = c->d;
    json_object *data = NULL, *list = NULL;
    struct mcpgw_token_info ti;
    int rc;

    if (!s) {
        call_free(c);
        return;
    }
    call_remove(s, c);
    if (!wsd_ws_open(s->ws))
        goto out;
    if (status != 0) {
        send_error(s, c->id, mcpgw_err_code(status), "%s",
                   error ? error : mcpgw_strerror(status));
        goto out;
    }
    data = json_object_new_object();
    list = json_object_new_array();
    if (!data || !list) {
        json_object_put(list);
        send_error(s, c->id, MCPGW_CODE_INTERNAL, "out of memory");
        goto out;
    }
    wsd_ident_as_token(&s->ident, &ti);
    for (size_t i = 0; i < json_object_array_length(tools); i++) {
        json_object *t = json_object_array_get_idx(tools, i), *name;

        if (!json_object_object_get_ex(t, "name", &name))
            continue;
        if (!authenticated(s) || mcpgw_token_allows(&ti, c->server, json_object_get_string(name)))
            json_object_array_add(list, json_object_get(t));
    }
    json_object_object_add(data, "serverId", json_object_new_string(c->server));
    json_object_object_add(data, "tools", list);
    mcpgw_buf_reset(&d->out);
    rc = mcpgw_codec_message(&d->out, "tool_list", c->id, mcpgw_now_ms(), data);
    if (rc == 0)
        send_out(s);
    else
        send_error(s, c->id, mcpgw_err_code(rc), "cannot encode the tool list: %s",
                   mcpgw_strerror(rc));
out:
    json_object_put(data);
    call_free(c);
}

static void do_list_tools(struct wsd_session *s, const struct mcpgw_msg *m, const char *id)
{
    struct wsd *d = s->d;
    struct call *c;
    int rc;

    if (call_find(s, id)) {
        send_error(s, id, MCPGW_CODE_BAD_REQUEST, "a request with id %s is already in flight",
                   id);
        return;
    }
    if (s->ncalls >= (unsigned)d->conf->limits.max_inflight_per_conn * 2) {
        send_error(s, id, MCPGW_CODE_RATE_LIMITED, "too many requests in flight on this connection");
        return;
    }
    if (!mcpgw_conf_server(mcpgw_hub_conf(d->hub), m->server_id)) {
        send_error(s, id, MCPGW_CODE_UNKNOWN_SERVER, "unknown server '%s'", m->server_id);
        return;
    }
    if (!allows(s, m->server_id, NULL)) {
        send_error(s, id, MCPGW_CODE_FORBIDDEN, "token '%s' may not use server '%s'",
                   s->ident.name, m->server_id);
        return;
    }
    if (!(c = call_new(s, CALL_LIST, id, m->server_id, NULL)) || call_insert(s, c) < 0) {
        if (c)
            call_free(c);
        send_error(s, id, MCPGW_CODE_INTERNAL, "out of memory");
        return;
    }
    rc = mcpgw_hub_list_tools(d->hub, m->server_id, on_tools, c);
    if (rc < 0) {
        call_remove(s, c);
        call_free(c);
        send_error(s, id, mcpgw_err_code(rc), "server '%s': %s", m->server_id,
                   mcpgw_strerror(rc));
    }
}

/* -- auth ------------------------------------------------------------------------- */

static void do_auth(struct wsd_session *s, const struct mcpgw_msg *m, const char *id)
{
    struct wsd *d = s->d;
    struct mcpgw_token_info info;
    int max = d->conf->websocket.max_auth_failures;

    if (mcpgw_tokens_verify(d->tokens, m->token, strlen(m->token), time(NULL), &info) < 0) {
        s->auth_failures++;
        mcpgw_log_info(C, "client %s: authentication failed (%d of %d allowed)", s->client_id,
                       s->auth_failures, max);
        send_error(s, id, MCPGW_CODE_AUTH_FAILED, "invalid, revoked or expired token");
        if (s->auth_failures >= max) {
            mcpgw_log_warn(C, "client %s: closing after %d failed authentications",
                           s->client_id, s->auth_failures);
            wsd_ws_close(s->ws, 1008, "too many failed authentications");
        }
        return;
    }
    if (wsd_ident_from_token(&s->ident, &info, WSD_AUTH_MESSAGE) < 0) {
        send_error(s, id, MCPGW_CODE_INTERNAL, "out of memory");
        return;
    }
    wsd_loop_timer_stop(d->loop, &s->auth_timer);
    mcpgw_log_info(C, "client %s: authenticated as '%s' (auth message)", s->client_id,
                   s->ident.name);
    send_status(s, id, "authenticated");
}

static void on_auth_timer(struct mcpgw__timer *t)
{
    struct wsd_session *s = (struct wsd_session *)((char *)t -
                                                   offsetof(struct wsd_session, auth_timer));

    if (authorised(s))
        return;
    mcpgw_log_info(C, "client %s: closing: not authenticated within %d ms", s->client_id,
                   s->d->conf->limits.handshake_timeout_ms);
    wsd_ws_close(s->ws, 1008, "authentication timed out");
}

/* -- messages in -------------------------------------------------------------------- */

static void on_message(void *ud, const char *data, size_t len)
{
    struct wsd_session *s = ud;
    struct wsd *d = s->d;
    struct mcpgw_codec_limits lim = {
        .max_bytes = d->conf->limits.max_message_bytes,
        .max_depth = d->conf->limits.max_json_depth,
    };
    struct mcpgw_codec_error err;
    struct mcpgw_msg m;
    char id[MCPGW_CODEC_ID_JSON_SIZE] = "";
    int rc;

    rc = mcpgw_codec_decode(data, len, &lim, &m, &err);
    if (rc < 0) {
        mcpgw_log_info(C, "client %s: refused a message: %s", s->client_id, err.message);
        send_error(s, err.id_json, err.code ? err.code : MCPGW_CODE_BAD_REQUEST, "%s",
                   err.message);
        return;
    }
    if (m.id && mcpgw_codec_id_json(m.id, id, sizeof(id)) < 0) {
        send_error(s, NULL, MCPGW_CODE_INTERNAL, "out of memory");
        mcpgw_msg_release(&m);
        return;
    }
    switch (m.type) {
    case MCPGW_MSG_PING:
        mcpgw_buf_reset(&d->out);
        if (mcpgw_codec_pong(&d->out, id, mcpgw_now_ms()) == 0)
            send_out(s);
        break;
    case MCPGW_MSG_AUTH:
        do_auth(s, &m, id);
        break;
    case MCPGW_MSG_CANCEL:
        do_cancel(s, id);
        break;
    case MCPGW_MSG_TOOL_CALL:
    case MCPGW_MSG_LIST_SERVERS:
    case MCPGW_MSG_LIST_TOOLS:
        if (!authorised(s)) {
            send_error(s, id, MCPGW_CODE_AUTH_REQUIRED,
                       "authenticate first: an auth message, an Authorization header or a ticket");
            break;
        }
        if (m.type == MCPGW_MSG_TOOL_CALL)
            do_tool_call(s, &m, id);
        else if (m.type == MCPGW_MSG_LIST_TOOLS)
            do_list_tools(s, &m, id);
        else
            do_list_servers(s, id);
        break;
    }
    mcpgw_msg_release(&m);
}

/* The event stream's "client" event (docs/protocol.md, Recorded events). */
static void publish_client(struct wsd_session *s, const char *what)
{
    if (s->d->publisher)
        wsd_publisher_client(s->d->publisher, s->client_id, what, s->ident.name);
}

/* -- the end of a session ------------------------------------------------------------ */

static void cancel_all(struct wsd_session *s, const char *why, bool tell_client)
{
    struct call *c, *next;

    /* A hub cancel completes the call at once (its callback removes it
     * from the list), so take them from the front until none is left. */
    for (c = s->calls; c; c = next) {
        next = c->next;
        if (c->kind != CALL_TOOL)
            continue;
        c->why = why;
        if (!tell_client)
            call_remove(s, c);  /* the callback then sends nothing */
        mcpgw_call_cancel(c->hc, why);
        next = s->calls;
    }
    /* list_tools cannot be cancelled in the hub: detach; its callback frees it. */
    while ((c = s->calls)) {
        call_remove(s, c);
        if (tell_client && wsd_ws_open(s->ws))
            send_error(s, c->id, MCPGW_CODE_CANCELLED, "%s", why);
    }
}

static void on_ended(void *ud, const struct wsd_ws_end *end)
{
    struct wsd_session *s = ud;
    struct wsd *d = s->d;
    int64_t dur = mcpgw__mono_ms() - s->started_mono;
    char peer_code[32] = "";

    if (end->peer_code)
        snprintf(peer_code, sizeof(peer_code), ", client sent %u", end->peer_code);
    if (s->ncalls)
        mcpgw_log_info(C, "client %s: cancelling %u calls in flight: the client went away",
                       s->client_id, s->ntools);
    cancel_all(s, "client disconnected", false);
    wsd_loop_timer_stop(d->loop, &s->auth_timer);
    mcpgw_log_info(C, "client %s disconnected from %s after %" PRId64 ".%03d s: %s "
                   "(close %u%s); %" PRIu64 " calls, %" PRIu64 " messages in, %" PRIu64 " out; "
                   "auth: %s%s%s", s->client_id, s->peer.addr, dur / 1000, (int)(dur % 1000),
                   end->reason, end->code, peer_code, s->calls_total, end->msgs_in, end->msgs_out,
                   authenticated(s) ? "token '" : "none", authenticated(s) ? s->ident.name : "",
                   authenticated(s) ? "'" : "");
    publish_client(s, "disconnected");
    if (s->prev)
        s->prev->next = s->next;
    else
        d->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    d->nsessions--;
    wsd_ws_free(s->ws);
    s->release(s->release_ud);
    wsd_ident_release(&s->ident);
    free(s);
}

/* -- public ---------------------------------------------------------------------------- */

static void make_client_id(struct wsd *d, char *out, size_t outlen)
{
    unsigned char r[6];

    if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        /* No entropy yet (early boot): ids need only be unique here. */
        uint64_t n = ++d->next_client;

        for (size_t i = 0; i < sizeof(r); i++)
            r[i] = (unsigned char)(n >> (8 * i));
    }
    snprintf(out, outlen, "c-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5]);
}

int wsd_session_start(struct wsd *d, int fd, const char *extra, size_t extra_len,
                      const struct wsd_peer *peer, struct wsd_ident *ident,
                      void (*release)(void *release_ud), void *release_ud)
{
    static const struct wsd_ws_handler handler = { on_message, on_ended };
    const struct mcpgw_conf *conf = d->conf;
    struct wsd_ws_limits lim = {
        .max_message = conf->limits.max_message_bytes,
        .max_fragments = (unsigned)conf->websocket.max_fragments,
        .outq_high = conf->websocket.outq_high_bytes,
        .outq_max = conf->websocket.outq_max_bytes,
        .ping_interval_ms = conf->websocket.ping_interval_ms,
        .max_missed_pongs = conf->websocket.max_missed_pongs,
        .idle_timeout_ms = conf->limits.idle_timeout_ms,
        .close_timeout_ms = MCPGW_WS_CLOSE_TIMEOUT,
    };
    struct wsd_session *s = calloc(1, sizeof(*s));
    int rc;

    if (!s)
        return -ENOMEM;
    s->d = d;
    s->release = release;
    s->release_ud = release_ud;
    s->peer = *peer;
    s->started_wall = mcpgw_now_ms();
    s->started_mono = mcpgw__mono_ms();
    mcpgw__timer_init(&s->auth_timer, on_auth_timer);
    make_client_id(d, s->client_id, sizeof(s->client_id));
    if ((rc = wsd_ws_new(d->loop, fd, extra, extra_len, &lim, &handler, s, &s->ws)) < 0) {
        free(s);
        return rc;
    }
    s->ident = *ident;
    memset(ident, 0, sizeof(*ident));
    s->next = d->sessions;
    if (d->sessions)
        d->sessions->prev = s;
    d->sessions = s;
    d->nsessions++;
    mcpgw_log_info(C, "client %s connected from %s%s%s, user agent '%s', auth: %s%s%s%s",
                   s->client_id, s->peer.addr, s->peer.via[0] ? " via proxy " : "", s->peer.via,
                   s->peer.user_agent,
                   authenticated(s) ? "token '" : conf->require_auth ? "pending" : "not required",
                   authenticated(s) ? s->ident.name : "", authenticated(s) ? "' via " : "",
                   authenticated(s) ? via_name(s->ident.via) : "");
    send_status(s, NULL, "Connected to MCP Gateway WebSocket");
    publish_client(s, "connected");
    if (!authorised(s))
        wsd_loop_timer(d->loop, &s->auth_timer,
                       s->started_mono + conf->limits.handshake_timeout_ms);
    if (d->closing)
        wsd_ws_close(s->ws, 1001, "gateway shutting down");
    return 0;
}

unsigned wsd_sessions_inflight(const struct wsd *d)
{
    unsigned n = 0;

    for (const struct wsd_session *s = d->sessions; s; s = s->next)
        n += s->ntools;
    return n;
}

void wsd_sessions_cancel_calls(struct wsd *d, const char *why)
{
    for (struct wsd_session *s = d->sessions; s; s = s->next)
        if (s->ncalls)
            cancel_all(s, why, true);
}

void wsd_sessions_close(struct wsd *d, uint16_t code, const char *reason)
{
    for (struct wsd_session *s = d->sessions; s; s = s->next)
        wsd_ws_close(s->ws, code, reason);
}

/* The stored token this session authenticated with, still usable?  Tokens
 * are matched by name, display prefix and creation time; tickets carry the
 * name only, so any active token of that name keeps them. */
static bool still_valid(struct wsd_session *s, time_t now, struct mcpgw_token_info *found)
{
    struct mcpgw_token_info ti;

    for (size_t i = 0; mcpgw_tokens_get(s->d->tokens, i, &ti); i++) {
        if (strcmp(ti.name, s->ident.name) != 0 || ti.revoked ||
            (ti.expires && ti.expires <= now))
            continue;
        if (s->ident.via != WSD_AUTH_TICKET &&
            (ti.created != s->ident.created || strcmp(ti.prefix, s->ident.prefix) != 0))
            continue;
        *found = ti;
        return true;
    }
    return false;
}

void wsd_sessions_expire(struct wsd *d, time_t now)
{
    for (struct wsd_session *s = d->sessions; s; s = s->next) {
        if (!s->ident.expires || s->ident.expires > now || !wsd_ws_open(s->ws))
            continue;
        mcpgw_log_info(C, "client %s: closing: token '%s' expired", s->client_id,
                       s->ident.name);
        wsd_ws_close(s->ws, 1008, "token revoked or expired");
    }
}

void wsd_sessions_recheck(struct wsd *d)
{
    time_t now = time(NULL);

    for (struct wsd_session *s = d->sessions; s; s = s->next) {
        struct mcpgw_token_info ti;

        if (!authenticated(s) || !wsd_ws_open(s->ws))
            continue;
        if (!still_valid(s, now, &ti)) {
            mcpgw_log_info(C, "client %s: closing: token '%s' was revoked, removed or expired",
                           s->client_id, s->ident.name);
            wsd_ws_close(s->ws, 1008, "token revoked or expired");
            continue;
        }
        if (s->ident.via != WSD_AUTH_TICKET) {
            char **scopes;

            /* The store may have changed its scopes: later calls use them. */
            if (copy_scopes(ti.scopes, ti.nscopes, &scopes) == 0) {
                for (size_t i = 0; i < s->ident.nscopes; i++)
                    free(s->ident.scopes[i]);
                free(s->ident.scopes);
                s->ident.scopes = scopes;
                s->ident.nscopes = ti.nscopes;
                s->ident.expires = ti.expires;
            }
        }
    }
}
