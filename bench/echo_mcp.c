/*
 * echo_mcp - a minimal, fast echo MCP server over stdio, for benchmarks.
 *
 * Intended use: the far end of mcpgw's benchmarks. Real MCP servers (Node)
 * top out around 10-20k calls/s on this class of machine, which would hide
 * the gateway's own cost; this one answers several hundred thousand calls/s,
 * so a benchmark through it measures the gateway and libmcpgw (framing,
 * JSON-RPC id rewriting, dispatch), and a run straight against it gives
 * the baseline the gateway's figures are compared with.
 *
 * What it speaks (enough for what the gateway sends, nothing more):
 *   initialize     answers with the requested protocolVersion if it is one the
 *                  SDK supports (copied as is), else 2025-11-25
 *   ping           {}
 *   tools/list     one tool, echo {message: string}
 *   tools/call     echo -> text "Echo: <message>", the message's JSON string
 *                  contents copied raw (escapes included, so no decoding);
 *                  any other tool -> isError "MCP error -32602: Tool X not found"
 *   other methods  error -32601
 *   notifications and responses are ignored.
 *
 * How it stays fast: no JSON library and no allocation per call. Input is
 * read in chunks of at least 64 KiB and split on '\n'; a small scanner finds
 * the top-level "id", "method" and "params" in any key order (it skips nested
 * values, strings with escapes included); responses are appended to one
 * output buffer that is written once per read, i.e. when the input at hand
 * is drained. Both buffers only grow, up to a cap. It trusts its peer: it
 * does not check "jsonrpc", and malformed lines are skipped, not diagnosed.
 *
 * Build: gcc -O2 bench/echo_mcp.c -o echo_mcp (no dependencies).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"     /* built by automake; the plain gcc line above works too */
#endif

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_CHUNK     (64u * 1024)
#define LINE_BYTES_MAX (64u * 1024 * 1024)  /* = MCPGW_MESSAGE_BYTES_MAX */

struct span {
    const char *p;      /* NULL when absent */
    size_t n;
};

struct buf {
    char *p;
    size_t len, cap;
};

static struct buf out;

/* --- a scanner that skips JSON values without building them --------------- */

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
        p++;
    return p;
}

/* p is at the opening quote; returns just past the closing one, or NULL. */
static const char *skip_string(const char *p, const char *e)
{
    for (p++; p < e; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

static const char *skip_value(const char *p, const char *e)
{
    if (p >= e)
        return NULL;
    if (*p == '"')
        return skip_string(p, e);
    if (*p == '{' || *p == '[') {
        size_t depth = 0;
        while (p < e) {
            char c = *p;
            if (c == '"') {
                if (!(p = skip_string(p, e)))
                    return NULL;
                continue;
            }
            if (c == '{' || c == '[')
                depth++;
            else if ((c == '}' || c == ']') && --depth == 0)
                return p + 1;
            p++;
        }
        return NULL;
    }
    while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' &&
           *p != '\t' && *p != '\r' && *p != '\n')
        p++;
    return p;
}

/*
 * Fills val[i] with the raw value of key keys[i] (NULL-terminated list) in the
 * object span; keys are compared byte for byte, unescaped. False if the span
 * is not a well-formed object.
 */
static bool scan_object(struct span obj, const char *const keys[], struct span val[])
{
    const char *p = obj.p, *e = obj.p + obj.n;
    for (size_t i = 0; keys[i]; i++)
        val[i] = (struct span){ NULL, 0 };
    p = skip_ws(p, e);
    if (p >= e || *p != '{')
        return false;
    p = skip_ws(p + 1, e);
    if (p < e && *p == '}')
        return true;
    while (p < e && *p == '"') {
        const char *k = p + 1, *v, *ke = skip_string(p, e);
        if (!ke)
            return false;
        size_t kn = (size_t)(ke - 1 - k);
        p = skip_ws(ke, e);
        if (p >= e || *p != ':')
            return false;
        v = skip_ws(p + 1, e);
        if (!(p = skip_value(v, e)))
            return false;
        for (size_t i = 0; keys[i]; i++) {
            if (strlen(keys[i]) == kn && memcmp(keys[i], k, kn) == 0) {
                val[i].p = v;
                val[i].n = (size_t)(p - v);
            }
        }
        p = skip_ws(p, e);
        if (p < e && *p == '}')
            return true;
        if (p >= e || *p != ',')
            return false;
        p = skip_ws(p + 1, e);
    }
    return false;
}

/* A JSON string value's raw contents (between the quotes), or absent. */
static struct span str_contents(struct span v)
{
    struct span s = { NULL, 0 };
    if (v.p && v.n >= 2 && v.p[0] == '"' && v.p[v.n - 1] == '"') {
        s.p = v.p + 1;
        s.n = v.n - 2;
    }
    return s;
}

static bool span_is(struct span s, const char *lit)
{
    return s.p && s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0;
}

/* --- output ---------------------------------------------------------------- */

static void put(const char *s, size_t n)
{
    if (out.cap - out.len < n) {
        size_t cap = out.cap ? out.cap : READ_CHUNK;
        while (cap - out.len < n)
            cap *= 2;
        char *p = realloc(out.p, cap);
        if (!p) {
            fputs("echo_mcp: out of memory\n", stderr);
            exit(1);
        }
        out.p = p;
        out.cap = cap;
    }
    memcpy(out.p + out.len, s, n);
    out.len += n;
}

#define PUT(lit) put(lit, sizeof(lit) - 1)

static void flush(void)
{
    size_t off = 0;
    while (off < out.len) {
        ssize_t w = write(1, out.p + off, out.len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd p = { .fd = 1, .events = POLLOUT };
                poll(&p, 1, -1);
                continue;
            }
            exit(1);    /* the reader went away */
        }
        off += (size_t)w;
    }
    out.len = 0;
}

/* Results follow the SDK's key order: result, jsonrpc, id. */
static void result_start(void)
{
    PUT("{\"result\":");
}

static void result_end(struct span id)
{
    PUT(",\"jsonrpc\":\"2.0\",\"id\":");
    put(id.p, id.n);
    PUT("}\n");
}

static const char *const versions[] = {
    "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", "2024-10-07", NULL
};

static void initialize(struct span id, struct span params)
{
    static const char *const keys[] = { "protocolVersion", NULL };
    struct span v[1], want = { NULL, 0 };
    if (scan_object(params, keys, v))
        want = str_contents(v[0]);
    result_start();
    bool known = false;
    for (size_t i = 0; versions[i]; i++)
        known = known || span_is(want, versions[i]);
    PUT("{\"protocolVersion\":\"");
    if (known)
        put(want.p, want.n);
    else
        PUT("2025-11-25");
    PUT("\",\"capabilities\":{\"tools\":{}},"
        "\"serverInfo\":{\"name\":\"echo-mcp\",\"version\":\"1.0.0\"}}");
    result_end(id);
}

static void tools_list(struct span id)
{
    result_start();
    PUT("{\"tools\":[{\"name\":\"echo\",\"description\":\"Echoes back the message\","
        "\"inputSchema\":{\"type\":\"object\",\"properties\":{\"message\":"
        "{\"type\":\"string\"}},\"required\":[\"message\"]}}]}");
    result_end(id);
}

static void tools_call(struct span id, struct span params)
{
    static const char *const pkeys[] = { "name", "arguments", NULL };
    static const char *const akeys[] = { "message", NULL };
    struct span pv[2], av[1], name = { NULL, 0 }, msg = { NULL, 0 };

    if (scan_object(params, pkeys, pv))
        name = str_contents(pv[0]);
    if (pv[1].p && scan_object(pv[1], akeys, av))
        msg = str_contents(av[0]);
    result_start();
    if (!name.p || !span_is(name, "echo")) {
        PUT("{\"content\":[{\"type\":\"text\",\"text\":\"MCP error -32602: Tool ");
        put(name.p ? name.p : "", name.n);
        PUT(" not found\"}],\"isError\":true}");
    } else if (!msg.p) {
        PUT("{\"content\":[{\"type\":\"text\",\"text\":\"MCP error -32602: Input "
            "validation error: Invalid arguments for tool echo: expected string "
            "at message\"}],\"isError\":true}");
    } else {
        PUT("{\"content\":[{\"type\":\"text\",\"text\":\"Echo: ");
        put(msg.p, msg.n);
        PUT("\"}]}");
    }
    result_end(id);
}

static void handle_line(const char *line, size_t n)
{
    static const char *const keys[] = { "id", "method", "params", NULL };
    struct span v[3], line_span = { line, n };
    if (!scan_object(line_span, keys, v))
        return;
    struct span id = v[0], method = str_contents(v[1]), params = v[2];
    if (!method.p || !id.p)
        return;         /* a response or a notification: nothing to say */
    if (span_is(method, "tools/call")) {
        tools_call(id, params);
    } else if (span_is(method, "ping")) {
        result_start();
        PUT("{}");
        result_end(id);
    } else if (span_is(method, "tools/list")) {
        tools_list(id);
    } else if (span_is(method, "initialize")) {
        initialize(id, params);
    } else {
        PUT("{\"jsonrpc\":\"2.0\",\"id\":");
        put(id.p, id.n);
        PUT(",\"error\":{\"code\":-32601,\"message\":\"Method not found\"}}\n");
    }
}

int main(void)
{
    struct buf in = { NULL, 0, 0 };
    size_t scanned = 0;
    bool discarding = false;    /* inside a line longer than LINE_BYTES_MAX */

    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        if (in.cap - in.len < READ_CHUNK) {
            size_t cap = in.cap ? in.cap * 2 : 4 * READ_CHUNK;
            if (cap > LINE_BYTES_MAX + 2 * READ_CHUNK)
                cap = LINE_BYTES_MAX + 2 * READ_CHUNK;
            char *p = realloc(in.p, cap);
            if (!p) {
                fputs("echo_mcp: out of memory\n", stderr);
                return 1;
            }
            in.p = p;
            in.cap = cap;
        }
        ssize_t r = read(0, in.p + in.len, in.cap - in.len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        in.len += (size_t)r;

        size_t start = 0;
        const char *nl;
        while ((nl = memchr(in.p + scanned, '\n', in.len - scanned))) {
            size_t end = (size_t)(nl - in.p);
            if (!discarding)
                handle_line(in.p + start, end - start);
            discarding = false;
            start = scanned = end + 1;
        }
        flush();
        if (start) {
            memmove(in.p, in.p + start, in.len - start);
            in.len -= start;
        }
        scanned = in.len;
        if (in.len > LINE_BYTES_MAX || (discarding && in.len)) {
            discarding = true;
            in.len = scanned = 0;
        }
    }
    flush();
    free(in.p);
    free(out.p);
    return 0;
}
