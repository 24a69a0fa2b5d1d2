/* hub_mcp.c - what a server says, and what we say back.
 *
 * Lines from a server's stdout are classified by shape (jsonrpc.h): our
 * responses (initialize, tools/list pages, tools/call), the server's own
 * requests (always answered), notifications (progress routed by the token
 * we assigned, tools/list_changed), and garbage (counted; too much restarts
 * the server).  stderr is logged line by line under "server:<id>", capped.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "err.h"
#include "hub_internal.h"
#include "jsonrpc.h"
#include "limits.h"
#include "log.h"

/* Versions whose stdio and tools semantics this code implements. */
static const char *const protocol_versions[] = {
    "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", NULL
};
#define READ_BUDGET 8   /* reads per server per turn, so one chatty server
                         * cannot starve the others */

static void srv_send_queued(struct srv *s);
static void srv_list_tools(struct srv *s, const char *cursor);

/* ---- what a server says ----------------------------------------------------- */

static void srv_garbage(struct srv *s, const char *what, const char *line, size_t len)
{
    int64_t now = mcpgw__mono_ms();

    mcpgw_log_warn("dispatch", "server '%s' sent %s: %.*s%s", s->conf->id, what,
                   (int)(len > 120 ? 120 : len), line, len > 120 ? "[...]" : "");
    if (now - s->garbage_since > MCPGW_GARBAGE_WINDOW) {
        s->garbage_since = now;
        s->garbage = 0;
    }
    if (++s->garbage >= MCPGW_GARBAGE_LINES_MAX)
        mcpgw__srv_fail(s, MCPGW_ESERVERGONE, "sent %d malformed messages within %d s",
                 s->garbage, MCPGW_GARBAGE_WINDOW / 1000);
}

static bool version_supported(const char *v)
{
    for (int i = 0; protocol_versions[i]; i++)
        if (strcmp(v, protocol_versions[i]) == 0)
            return true;
    return false;
}

bool mcpgw__tools_have(json_object *tools, const char *tool)
{
    size_t n = tools ? json_object_array_length(tools) : 0;

    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i), *name;

        if (json_object_object_get_ex(t, "name", &name) &&
            json_object_is_type(name, json_type_string) &&
            strcmp(json_object_get_string(name), tool) == 0)
            return true;
    }
    return false;
}

bool mcpgw__srv_tool_listed(struct srv *s, const char *tool)
{
    return mcpgw__tools_have(s->tools, tool);
}

static void srv_became_ready(struct srv *s)
{
    mcpgw__theap_del(&s->hub->timers, &s->t_start);
    mcpgw__hub_timer_arm(s->hub, &s->t_stable, mcpgw__mono_ms() + s->conf->restart_reset_ms);
    s->last_error[0] = '\0';
    mcpgw_log_info(COMPONENT, "server '%s' ready (%zu tools, protocol %s, started in %" PRId64 " ms)",
                   s->conf->id, json_object_array_length(s->tools), s->proto,
                   mcpgw__mono_ms() - s->spawned_at);
    mcpgw__srv_set_state(s, MCPGW_SERVER_READY, -1);
}

static void handle_init_result(struct srv *s, struct mcpgw__rpc *m)
{
    json_object *v;
    const char *ver;

    s->init_id = 0;
    if (m->error) {
        mcpgw__srv_fail(s, MCPGW_EUNAVAIL, "refused initialize: %.80s",
                 json_object_to_json_string_ext(m->error, JSON_C_TO_STRING_PLAIN));
        return;
    }
    if (!json_object_is_type(m->result, json_type_object) ||
        !json_object_object_get_ex(m->result, "protocolVersion", &v) ||
        !json_object_is_type(v, json_type_string)) {
        mcpgw__srv_fail(s, MCPGW_EUNAVAIL, "sent an initialize result without protocolVersion");
        return;
    }
    ver = json_object_get_string(v);
    if (!version_supported(ver)) {
        mcpgw__srv_fail(s, MCPGW_EUNAVAIL, "speaks protocol version '%.32s', which mcpgw does not support",
                 ver);
        return;
    }
    snprintf(s->proto, sizeof(s->proto), "%s", ver);
    /* Always: some servers register tools only once told (facts §3). */
    mcpgw__srv_notify(s, "notifications/initialized", NULL);
    srv_list_tools(s, NULL);
}

static void srv_list_tools(struct srv *s, const char *cursor)
{
    struct mcpgw_buf p;

    if (!cursor) {
        json_object_put(s->tools_new);
        s->tools_new = json_object_new_array();
        s->list_pages = 0;
    }
    s->list_pages++;
    mcpgw_buf_init(&p, 4096);
    if (cursor) {
        mcpgw_buf_adds(&p, "{\"cursor\":");
        mcpgw_buf_add_json_str(&p, cursor, strlen(cursor));
        mcpgw_buf_addc(&p, '}');
    }
    s->list_id = mcpgw__srv_next_id(s);
    if (mcpgw__rpc_write_request(&s->outq, s->list_id, "tools/list", cursor ? p.ptr : NULL) == 0)
        mcpgw__srv_mark_dirty(s);
    mcpgw_buf_release(&p);
}

static void handle_list_result(struct srv *s, struct mcpgw__rpc *m)
{
    json_object *tools, *cursor;
    size_t n;

    s->list_id = 0;
    if (m->error || !json_object_is_type(m->result, json_type_object) ||
        !json_object_object_get_ex(m->result, "tools", &tools) ||
        !json_object_is_type(tools, json_type_array)) {
        if (s->state == MCPGW_SERVER_STARTING) {
            mcpgw__srv_fail(s, MCPGW_EUNAVAIL, "answered tools/list without a tool array");
            return;
        }
        mcpgw_log_warn(COMPONENT, "server '%s' answered tools/list without a tool array; "
                       "keeping the previous list", s->conf->id);
        json_object_put(s->tools_new);
        s->tools_new = NULL;
        srv_send_queued(s);
        return;
    }
    n = json_object_array_length(tools);
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i), *name;

        if (!json_object_object_get_ex(t, "name", &name) ||
            !json_object_is_type(name, json_type_string))
            continue;
        if (!mcpgw_conf_tool_allowed(s->conf, json_object_get_string(name)))
            continue;
        if (json_object_array_add(s->tools_new, json_object_get(t)) < 0)
            json_object_put(t);
    }
    if (json_object_object_get_ex(m->result, "nextCursor", &cursor) &&
        json_object_is_type(cursor, json_type_string) && json_object_get_string_len(cursor) > 0) {
        if (s->list_pages < MCPGW_TOOLS_PAGES_MAX) {
            srv_list_tools(s, json_object_get_string(cursor));
            return;
        }
        mcpgw_log_warn(COMPONENT, "server '%s': tools/list has more than %d pages; using the first",
                       s->conf->id, MCPGW_TOOLS_PAGES_MAX);
    }
    json_object_put(s->tools_all);
    s->tools_all = s->tools_new;
    s->tools_new = NULL;
    mcpgw__srv_pin_tools(s);
    if (s->state == MCPGW_SERVER_STARTING)
        srv_became_ready(s);
    else
        mcpgw_log_info(COMPONENT, "server '%s' tool list refreshed (%zu tools)", s->conf->id,
                       json_object_array_length(s->tools));
    if (s->list_again) {
        s->list_again = false;
        srv_list_tools(s, NULL);
        return;
    }
    mcpgw__srv_notify_waiters(s);
    srv_send_queued(s);
}

static void handle_call_result(struct srv *s, struct mcpgw_call *c, struct mcpgw__rpc *m)
{
    struct mcpgw_call_event ev = { 0 };
    char msg[200];

    if (m->error) {
        json_object *code = NULL, *text = NULL;

        json_object_object_get_ex(m->error, "code", &code);
        json_object_object_get_ex(m->error, "message", &text);
        ev.status = MCPGW_ERPC;
        ev.rpc_code = code ? json_object_get_int(code) : 0;
        snprintf(msg, sizeof(msg), "server '%s' returned error %d: %.120s", s->conf->id,
                 ev.rpc_code, text ? json_object_get_string(text) : "(no message)");
        ev.error = msg;
        ev.result = m->error;
    } else if (!json_object_is_type(m->result, json_type_object)) {
        ev.status = MCPGW_EPROTO;
        snprintf(msg, sizeof(msg), "server '%s' sent a tools/call result that is not an object",
                 s->conf->id);
        ev.error = msg;
    } else {
        json_object *iserr;

        ev.result = m->result;
        ev.is_error = json_object_object_get_ex(m->result, "isError", &iserr) &&
                      json_object_get_boolean(iserr);
    }
    mcpgw__call_done(c, &ev);
}

static void handle_response(struct srv *s, struct mcpgw__rpc *m, const char *line, size_t len)
{
    struct mcpgw_call *c;
    uint64_t id;

    if (!mcpgw__rpc_id_ours(m->id, &id)) {
        srv_garbage(s, "a response with an id mcpgw never used", line, len);
        return;
    }
    if (id == s->init_id) {
        handle_init_result(s, m);
        return;
    }
    if (id == s->ping_id) {
        mcpgw__srv_probe_answered(s);
        return;
    }
    if (id == s->list_id) {
        handle_list_result(s, m);
        return;
    }
    c = mcpgw__srv_slot_get(s, id);
    if (!c) {
        /* A late answer to a call that timed out or was cancelled. */
        mcpgw_log_debug(COMPONENT, "server '%s': dropped late response %" PRIu64, s->conf->id, id);
        return;
    }
    handle_call_result(s, c, m);
}

/* Requests from the server are always answered: a server left waiting may
 * block the very tool call that asked (facts §9). */
static void handle_request(struct srv *s, struct mcpgw__rpc *m)
{
    const char *id = json_object_to_json_string_ext(m->id, JSON_C_TO_STRING_PLAIN);
    char msg[160];
    int rc;

    if (strcmp(m->method, "ping") == 0) {
        rc = mcpgw__rpc_write_result(&s->outq, id, "{}");
    } else {
        snprintf(msg, sizeof(msg), "mcpgw does not offer '%.64s' to MCP servers", m->method);
        rc = mcpgw__rpc_write_error(&s->outq, id, -32601, msg);
        mcpgw_log_info(COMPONENT, "server '%s' asked for '%.64s'; refused (not offered)",
                       s->conf->id, m->method);
    }
    if (rc == 0)
        mcpgw__srv_mark_dirty(s);
}

static bool get_number(json_object *o, const char *key, double *out)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v) ||
        !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
        return false;
    *out = json_object_get_double(v);
    return true;
}

static void handle_progress(struct srv *s, json_object *params)
{
    struct mcpgw_call_event ev = { .kind = MCPGW_CALL_PROGRESS };
    json_object *tok, *msg;
    struct mcpgw_call *c;
    uint64_t id;

    if (!params || !json_object_object_get_ex(params, "progressToken", &tok) ||
        !mcpgw__rpc_id_ours(tok, &id))
        return;
    c = mcpgw__srv_slot_get(s, id);
    /* Servers keep sending progress after a cancel (facts §7): a token
     * whose call is gone is dropped here. */
    if (!c || !c->progress || !get_number(params, "progress", &ev.progress))
        return;
    ev.has_total = get_number(params, "total", &ev.total);
    if (json_object_object_get_ex(params, "message", &msg) &&
        json_object_is_type(msg, json_type_string))
        ev.message = json_object_get_string(msg);
    if (s->hub->observer) {
        struct mcpgw_hub_event oev = {
            .kind = MCPGW_HUB_CALL_PROGRESS, .call_id = c->call_id, .server = s->conf->id,
            .tool = c->tool, .caller = c->caller, .client_call_id = c->client_call_id,
            .transport = c->transport,
            .call = &ev, .exit_status = -1
        };
        s->hub->observer(s->hub->observer_ud, &oev);
    }
    c->cb(c, &ev, c->ud);
}

static void handle_notification(struct srv *s, struct mcpgw__rpc *m)
{
    if (strcmp(m->method, "notifications/progress") == 0) {
        handle_progress(s, m->params);
    } else if (strcmp(m->method, "notifications/tools/list_changed") == 0) {
        if (s->list_id || s->init_id)
            s->list_again = s->list_id != 0;
        else
            srv_list_tools(s, NULL);
    } else if (strcmp(m->method, "notifications/message") == 0) {
        mcpgw_log_debug(COMPONENT, "server '%s' log: %.300s", s->conf->id,
                        json_object_to_json_string_ext(m->params, JSON_C_TO_STRING_PLAIN));
    }
    /* Others (cancelled for the server's own requests, resources/...) are
     * of no use to a tool gateway. */
}

/* Not JSON-RPC.  If it names one of our calls (a response with neither
 * result nor error, say), that call fails now rather than at its timeout. */
static void handle_invalid(struct srv *s, struct mcpgw__rpc *m, const char *line, size_t len)
{
    json_object *id;
    struct mcpgw_call *c = NULL;
    unsigned gen = s->gen;
    char msg[200];
    uint64_t n;

    if (json_object_is_type(m->root, json_type_object) &&
        json_object_object_get_ex(m->root, "id", &id) && mcpgw__rpc_id_ours(id, &n))
        c = mcpgw__srv_slot_get(s, n);
    srv_garbage(s, "JSON that is not JSON-RPC 2.0", line, len);
    if (c && gen == s->gen && mcpgw__srv_slot_get(s, n) == c) {
        snprintf(msg, sizeof(msg), "server '%s' sent a malformed response", s->conf->id);
        mcpgw__call_fail(c, MCPGW_EPROTO, msg);
    }
}

/* The answer to a tools/call whose caller takes the result as text
 * (opts.result_text), found without a json-c tree: the codec's strict scan
 * checks the whole line and finds the members, and the result is handed on
 * as the server wrote it.  false, with nothing done, for anything else or
 * anything unusual (an escaped key, an "isError" that is not a boolean, ...):
 * the full parse then handles the line as before. */
static bool fast_call_result(struct srv *s, const char *line, size_t len)
{
    static const char *const top[] = { "jsonrpc", "id", "result", "error", "method" };
    static const char *const inner[] = { "isError" };
    struct mcpgw_codec_span sp[5], ie;
    struct mcpgw_call_event ev = { 0 };
    int depth = s->hub->conf->limits.max_json_depth - 1;
    struct mcpgw_call *c;
    const char *v, *result;
    uint64_t id = 0;
    size_t i;

    if (mcpgw_codec_scan_members(line, len, depth, top, 5, sp) != 0)
        return false;
    if (sp[3].len || sp[4].len || !sp[2].len || sp[0].len != 5 ||
        memcmp(line + sp[0].off, "\"2.0\"", 5) != 0)
        return false;
    /* The id: a plain integer of ours (no sign, fraction or exponent). */
    v = line + sp[1].off;
    if (sp[1].len < 1 || sp[1].len > 16)
        return false;
    for (i = 0; i < sp[1].len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        id = id * 10 + (uint64_t)(v[i] - '0');
    }
    if (id < 1 || id > MCPGW__RPC_ID_MAX || id == s->init_id || id == s->ping_id ||
        id == s->list_id)
        return false;
    c = mcpgw__srv_slot_get(s, id);
    result = line + sp[2].off;
    if (!c || !c->result_text || result[0] != '{')
        return false;
    if (mcpgw_codec_scan_members(result, sp[2].len, depth - 1, inner, 1, &ie) != 0)
        return false;
    if (ie.len == 4 && memcmp(result + ie.off, "true", 4) == 0)
        ev.is_error = true;
    else if (ie.len && !(ie.len == 5 && memcmp(result + ie.off, "false", 5) == 0))
        return false;
    ev.result_json = result;
    ev.result_len = sp[2].len;
    mcpgw__call_done(c, &ev);
    return true;
}

static void handle_line(struct srv *s, const char *line, size_t len)
{
    struct mcpgw__rpc m;

    if (s->text_inflight && fast_call_result(s, line, len))
        return;
    if (mcpgw__rpc_parse(s->hub->tok, line, len, &m) < 0) {
        srv_garbage(s, "a line that is not JSON", line, len);
        return;
    }
    switch (m.kind) {
    case MCPGW__RPC_RESPONSE:
        handle_response(s, &m, line, len);
        break;
    case MCPGW__RPC_REQUEST:
        handle_request(s, &m);
        break;
    case MCPGW__RPC_NOTIFICATION:
        handle_notification(s, &m);
        break;
    default:
        handle_invalid(s, &m, line, len);
        break;
    }
    mcpgw__rpc_release(&m);
}

static void handle_oversize(struct srv *s, const char *tail, size_t len)
{
    size_t size = mcpgw__framer_skipped(&s->fout);
    struct mcpgw_call *c;
    char msg[200];
    uint64_t id;

    snprintf(msg, sizeof(msg), "server '%s' sent a %zu-byte message, over the %zu-byte limit",
             s->conf->id, size, s->hub->conf->limits.max_message_bytes);
    if (mcpgw__rpc_tail_id(tail, len, &id) && (c = mcpgw__srv_slot_get(s, id))) {
        unsigned gen = s->gen;

        mcpgw__call_fail(c, MCPGW_ETOOBIG, msg);
        if (gen == s->gen)
            srv_garbage(s, "an oversized message", tail, len);
        return;
    }
    mcpgw__srv_fail(s, MCPGW_ESERVERGONE, "sent a %zu-byte message with no id mcpgw could recover", size);
}

void mcpgw__srv_on_stdout(struct watch *w, uint32_t events)
{
    struct srv *s = SRV_OF(w, w_out);
    unsigned gen = s->gen;

    for (int i = 0; i < READ_BUDGET; i++) {
        ssize_t n = mcpgw__framer_read(&s->fout, s->child.out_fd);
        char *line;
        size_t len;
        int kind;

        if (n == -EAGAIN)
            return;
        if (n <= 0) {
            mcpgw__hub_close_fd(s->hub, &s->child.out_fd);
            mcpgw__srv_lost(s, n == 0 ? "closed its stdout" : "stdout read failed");
            return;
        }
        while ((kind = mcpgw__framer_next(&s->fout, &line, &len)) != MCPGW__FRAME_NONE) {
            if (kind == MCPGW__FRAME_LINE)
                handle_line(s, line, len);
            else
                handle_oversize(s, line, len);
            /* A callback or a failure may have torn the process down. */
            if (gen != s->gen || s->child.out_fd < 0)
                return;
        }
        /* A short read drained the pipe: another read would only say
         * EAGAIN, a syscall per call at low concurrency. */
        if (n < MCPGW__FRAMER_CHUNK / 4)
            return;
    }
}

void mcpgw__srv_on_stderr(struct watch *w, uint32_t events)
{
    struct srv *s = SRV_OF(w, w_err);
    char comp[MCPGW_SERVER_ID_MAX + 8];
    int64_t sec = mcpgw__mono_ms() / 1000;
    ssize_t n;
    char *line;
    size_t len;
    int kind;

    n = mcpgw__framer_read(&s->ferr, s->child.err_fd);
    if (n == -EAGAIN)
        return;
    if (n <= 0) {
        mcpgw__hub_close_fd(s->hub, &s->child.err_fd);
        return;
    }
    snprintf(comp, sizeof(comp), "server:%s", s->conf->id);
    while ((kind = mcpgw__framer_next(&s->ferr, &line, &len)) != MCPGW__FRAME_NONE) {
        if (sec != s->err_sec) {
            if (s->err_dropped)
                mcpgw_log_warn(comp, "%u stderr lines dropped (over %d lines/s)",
                               s->err_dropped, MCPGW_STDERR_LINES_PER_SEC);
            s->err_sec = sec;
            s->err_lines = s->err_dropped = 0;
        }
        if (++s->err_lines > MCPGW_STDERR_LINES_PER_SEC) {
            s->err_dropped++;
            continue;
        }
        if (kind == MCPGW__FRAME_LINE)
            mcpgw_log_info(comp, "%.*s", (int)len, line);
        else
            mcpgw_log_info(comp, "[%zu-byte line cut] ...%.*s", mcpgw__framer_skipped(&s->ferr),
                           (int)len, line);
    }
}

/* Send queued calls once the server is ready and its tool list current. */
static void srv_send_queued(struct srv *s)
{
    struct mcpgw_call *c;
    char msg[200];
    int rc;

    /* Always take the head: a callback may cancel any other queued call. */
    while ((c = s->q_head) && s->state == MCPGW_SERVER_READY && !s->list_id) {
        if (!mcpgw__srv_tool_listed(s, c->tool)) {
            bool held = mcpgw__srv_tool_held(s, c->tool);

            if (held)
                snprintf(msg, sizeof(msg), "tool '%.80s' of server '%s' changed since it was "
                         "approved; it is withheld until an operator approves it", c->tool,
                         s->conf->id);
            else
                snprintf(msg, sizeof(msg), "server '%s' has no tool '%.80s'", s->conf->id,
                         c->tool);
            if (!mcpgw__srv_tool_listed(s, c->tool)) {
                mcpgw__call_fail(c, held ? MCPGW_EFORBIDDEN : MCPGW_EUNKNOWNTOOL, msg);
                continue;
            }
        }
        mcpgw__srv_queue_remove(s, c);
        rc = mcpgw__srv_write_call(s, c, c->args, c->args_len);
        free(c->args);
        c->args = NULL;
        if (rc < 0) {
            snprintf(msg, sizeof(msg), "server '%s' is not reading its input fast enough",
                     s->conf->id);
            mcpgw__call_fail(c, rc, msg);
        }
    }
}

