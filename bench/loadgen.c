/* loadgen - one load generator for every gateway bench/compare measures.
 *
 *   loadgen MODE [--host 127.0.0.1] [--port P] [--path PATH] [--token T]
 *                [--server ID] [--tool echo|search_nodes] [--inflight K]
 *                [--clients C] [--seconds S] [--warmup S] [-- COMMAND ARGS...]
 *
 * Modes (what is spoken):
 *   stdio    MCP JSON-RPC on the pipes of COMMAND, spawned here (the limit)
 *   typedws  mcpgw's typed WebSocket protocol (GET PATH, default /ws)
 *   mcpws    MCP JSON-RPC over WebSocket (supergateway's stdio -> ws)
 *   sse      legacy MCP HTTP+SSE: GET PATH (default /sse), then POST each
 *            request to the endpoint the stream names; answers on the stream
 *   stream   MCP Streamable HTTP: POST PATH (default /mcp), one session per
 *            client, answers as JSON or as an SSE body
 *   rest     mcpgw's POST PATH (default /api/v1/tools/call)
 *   hold     open --conns N connections of --kind typedws|mcpws|sse and hold
 *            them --seconds S; prints how many were established and how many
 *            were still open at the end
 *   null     --port P: a server that answers every mode above at once with
 *            canned results (no MCP server behind it): the generator's own
 *            ceiling for that mode
 *
 * K calls are kept in flight, spread over C clients (default min(K, 4)): a
 * client is one WebSocket, one SSE session or one Streamable HTTP session.
 * HTTP modes use one keep-alive connection per call in flight.  Every id is
 * unique across the whole run and every echo message is "q<id>", so each
 * answer is checked: its id must be one this client has in flight (else it
 * is counted as cross-talk if another client sent it, unknown otherwise),
 * and its text must be "Echo: q<id>" (search_nodes: a result, not an
 * error).  Counts of mismatches are printed; a run with any is a failure.
 *
 * Output: a human line on stderr and one tab-separated line on stdout:
 *   MODE calls/s p50_ms p99_ms p999_ms ok bad crosstalk errors gen_cpu_s
 * (hold: hold KIND wanted established open_at_end).  Exit status 0 when every
 * call was answered correctly, 1 otherwise, 2 on a setup failure.
 * One thread, one epoll loop; gen_cpu_s is this process's CPU time, so it
 * can be seen not to be the bottleneck.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#else
#define _GNU_SOURCE
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RING       (1u << 20)     /* pending calls, indexed by id modulo this */
#define MAX_MSG    (4u << 20)     /* largest frame / body accepted */
#define INIT_ID    1000000000L    /* + client index: initialize requests */

enum mode { M_STDIO, M_TYPEDWS, M_MCPWS, M_SSE, M_STREAM, M_REST, M_HOLD, M_NULL };
static const char *mode_names[] = { "stdio", "typedws", "mcpws", "sse", "stream", "rest", "hold", "null" };

/* What a connection is for. */
enum role { R_PIPE, R_WS, R_SSE_STREAM, R_HTTP, R_NULL_PEER };

struct conn {
    int rfd, wfd;
    enum role role;
    int client;
    bool open;                    /* WS upgraded / SSE head seen */
    bool want_out, dead;
    char *in; size_t inlen, incap;
    char *out; size_t outlen, outoff, outcap;
    /* HTTP response being read */
    bool head_done, chunked, closing;   /* closing: the peer said Connection: close */
    int status;
    long clen;
    char *body; size_t bodylen, bodycap;
    /* one call per HTTP connection */
    long id;                      /* call this connection carries, 0 none */
    bool busy;
    char sess[200];               /* header value seen (Mcp-Session-Id) */
    struct conn *next_null;
};

struct client {
    struct conn *main;            /* WS, SSE stream, or pipe */
    struct conn **posts;          /* HTTP connections, one per slot */
    int nposts;
    bool ready;
    int inflight;                 /* multiplexed modes */
    char post_path[512];          /* sse: endpoint; stream: PATH */
    char session[200];            /* stream: Mcp-Session-Id */
    int init_stage;
    bool init_acked, init_answered;
};

struct pend { long id; int client; int slot; double t0; bool answered, acked; };

static enum mode mode;
static const char *host = "127.0.0.1", *path, *token, *server = "everything", *tool = "echo",
                  *hold_kind = "typedws";
static int port, inflight = 64, nclients, conns_wanted = 100;
static double seconds = 5, warmup = 0.5;
static char **cmd;
static int ep;
static struct client *clients;
static struct pend *pend;
static long next_id = 1;
static double t_start, t_end, t_count;
static bool running, stopping;
static int deletes_left;          /* stream: DELETEs not yet answered */
static long ok, bad, crosstalk, errors, unknown, outstanding;
static uint32_t *lat; static size_t nlat, caplat;
static pid_t child;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static _Noreturn void fail(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("loadgen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (child > 0)
        kill(child, SIGTERM);
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p)
        fail("out of memory");
    return p;
}

static void *xcalloc(size_t a, size_t b)
{
    void *p = calloc(a, b);

    if (!p)
        fail("out of memory");
    return p;
}

static void grow(char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return;
    if (need > MAX_MSG * 2)
        fail("message larger than %u bytes", MAX_MSG);
    *cap = need < 4096 ? 4096 : need * 2;
    *p = xrealloc(*p, *cap);
}

/* -- output ------------------------------------------------------------------------ */

static void arm(struct conn *c)
{
    struct epoll_event ev = { .events = EPOLLIN | (c->want_out && c->rfd == c->wfd ? EPOLLOUT : 0),
                              .data.ptr = c };

    epoll_ctl(ep, EPOLL_CTL_MOD, c->rfd, &ev);
    if (c->wfd != c->rfd) {
        struct epoll_event ew = { .events = EPOLLOUT, .data.ptr = c };

        if (c->want_out) {
            if (epoll_ctl(ep, EPOLL_CTL_ADD, c->wfd, &ew) < 0)
                epoll_ctl(ep, EPOLL_CTL_MOD, c->wfd, &ew);
        } else
            epoll_ctl(ep, EPOLL_CTL_DEL, c->wfd, NULL);
    }
}

static void flush(struct conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t n = c->role == R_PIPE ? write(c->wfd, c->out + c->outoff, c->outlen - c->outoff)
                                      : send(c->wfd, c->out + c->outoff, c->outlen - c->outoff,
                                             MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!c->want_out) {
                    c->want_out = true;
                    arm(c);
                }
                return;
            }
            c->dead = true;
            return;
        }
        c->outoff += (size_t)n;
    }
    c->outlen = c->outoff = 0;
    if (c->want_out) {
        c->want_out = false;
        arm(c);
    }
}

static void put(struct conn *c, const void *p, size_t n)
{
    grow(&c->out, &c->outcap, c->outlen + n);
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

static void ws_frame(struct conn *c, int op, const char *p, size_t n, bool masked)
{
    unsigned char h[14], mask[4] = { 0x5a, 0x3c, 0x96, 0xe1 };
    size_t hl = 2;

    h[0] = (unsigned char)(0x80 | op);
    if (n < 126) {
        h[1] = (unsigned char)n;
    } else if (n < 65536) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    if (masked) {
        h[1] |= 0x80;
        memcpy(h + hl, mask, 4);
        hl += 4;
    }
    put(c, h, hl);
    grow(&c->out, &c->outcap, c->outlen + n);
    for (size_t i = 0; i < n; i++)
        c->out[c->outlen + i] = masked ? (char)(p[i] ^ mask[i & 3]) : p[i];
    c->outlen += n;
}

/* -- requests ------------------------------------------------------------------------ */

static int jsonrpc_call(char *b, size_t cap, long id)
{
    if (strcmp(tool, "echo") == 0)
        return snprintf(b, cap, "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\","
                        "\"params\":{\"name\":\"echo\",\"arguments\":{\"message\":\"q%ld\"}}}", id, id);
    return snprintf(b, cap, "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\","
                    "\"params\":{\"name\":\"%s\",\"arguments\":{\"query\":\"q%ld\"}}}", id, tool, id);
}

static int params(char *b, size_t cap, long id)
{
    return strcmp(tool, "echo") == 0 ? snprintf(b, cap, "{\"message\":\"q%ld\"}", id)
                                     : snprintf(b, cap, "{\"query\":\"q%ld\"}", id);
}

static int init_msg(char *b, size_t cap, long id)
{
    return snprintf(b, cap, "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"initialize\",\"params\":"
                    "{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{},"
                    "\"clientInfo\":{\"name\":\"mcpgw-loadgen\",\"version\":\"1\"}}}", id);
}

static const char initialized[] = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";

static void http_post(struct conn *c, const char *p, const char *body, size_t n, const char *sess)
{
    char h[1024];
    int hl = snprintf(h, sizeof(h),
                      "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                      "Accept: %s\r\nContent-Length: %zu\r\n"
                      "%s%s%s%s%s%s\r\n", p, host, port,
                      /* mcpgw's REST answers a plain call with JSON; MCP wants both */
                      mode == M_REST ? "application/json" : "application/json, text/event-stream", n,
                      token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "",
                      sess && *sess ? "Mcp-Session-Id: " : "", sess && *sess ? sess : "",
                      sess && *sess ? "\r\nMCP-Protocol-Version: 2025-06-18\r\n" : "");

    put(c, h, (size_t)hl);
    put(c, body, n);
    c->head_done = false;
    c->busy = true;
}

/* Send one call from client k, slot s (HTTP modes: on its own connection). */
static void issue(int k, int s)
{
    struct client *cl = &clients[k];
    long id = next_id++;
    struct pend *p = &pend[id % RING];
    char b[1024], q[256];
    int n;

    if (p->id && !p->answered)
        errors++;                 /* a call outstanding for RING ids: given up */
    *p = (struct pend){ .id = id, .client = k, .slot = s, .t0 = now_s() };
    outstanding++;
    switch (mode) {
    case M_STDIO:
        n = jsonrpc_call(b, sizeof(b) - 1, id);
        b[n++] = '\n';
        put(cl->main, b, (size_t)n);
        cl->inflight++;
        break;
    case M_MCPWS:
        n = jsonrpc_call(b, sizeof(b), id);
        ws_frame(cl->main, 1, b, (size_t)n, true);
        cl->inflight++;
        break;
    case M_TYPEDWS:
        params(q, sizeof(q), id);
        n = snprintf(b, sizeof(b), "{\"type\":\"tool_call\",\"id\":%ld,\"data\":{\"serverId\":\"%s\","
                     "\"toolName\":\"%s\",\"params\":%s}}", id, server, tool, q);
        ws_frame(cl->main, 1, b, (size_t)n, true);
        cl->inflight++;
        break;
    case M_SSE:
    case M_STREAM:
        n = jsonrpc_call(b, sizeof(b), id);
        cl->posts[s]->id = id;
        http_post(cl->posts[s], cl->post_path, b, (size_t)n, cl->session);
        if (!cl->posts[s]->closing)
            flush(cl->posts[s]);  /* else on_read sends it on a new connection */
        return;
    case M_REST:
        params(q, sizeof(q), id);
        n = snprintf(b, sizeof(b), "{\"serverId\":\"%s\",\"toolName\":\"%s\",\"params\":%s}",
                     server, tool, q);
        cl->posts[s]->id = id;
        http_post(cl->posts[s], path, b, (size_t)n, NULL);
        if (!cl->posts[s]->closing)
            flush(cl->posts[s]);
        return;
    default:
        return;
    }
}

/* -- checking answers ------------------------------------------------------------ */

static void sample(double v)
{
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        lat = xrealloc(lat, caplat * sizeof(*lat));
    }
    lat[nlat++] = (uint32_t)(v * 1e6);
}

/* The value of top-level key "id" of a JSON object, or -1. */
static long top_id(const char *p, size_t n)
{
    int depth = 0;
    bool key = false;

    for (size_t i = 0; i < n; i++) {
        char ch = p[i];

        if (ch == '"') {
            size_t j = i + 1;

            while (j < n && p[j] != '"')
                j += p[j] == '\\' ? 2 : 1;
            if (j >= n)
                return -1;
            if (depth == 1 && key && j - i == 3 && p[i + 1] == 'i' && p[i + 2] == 'd') {
                size_t k = j + 1;

                while (k < n && (p[k] == ' ' || p[k] == ':'))
                    k++;
                if (k < n && p[k] >= '0' && p[k] <= '9')
                    return strtol(p + k, NULL, 10);
                return -1;
            }
            key = false;
            i = j;
        } else if (ch == '{' || ch == '[') {
            depth++;
            key = ch == '{';
        } else if (ch == '}' || ch == ']') {
            depth--;
        } else if (ch == ',') {
            key = depth >= 1;
        }
    }
    return -1;
}

static bool text_ok(const char *p, size_t n, long id)
{
    char want[64];
    int wl;

    if (memmem(p, n, "\"isError\":true", 14) || memmem(p, n, "\"success\":false", 15))
        return false;
    if (strcmp(tool, "echo") != 0)
        return memmem(p, n, "\"result\"", 8) != NULL;
    wl = snprintf(want, sizeof(want), "Echo: q%ld\"", id);
    return memmem(p, n, want, (size_t)wl) != NULL;
}

static void finish_call(int k, struct pend *p, bool good);

/* An answer arrived for client k carrying id; body is the whole message. */
static void answer(int k, long id, const char *p, size_t n)
{
    struct pend *e;

    if (id < 0 || id >= INIT_ID)
        return;                   /* notifications; a call never answered counts as an error */
    if (memmem(p, n, "\"method\"", 8) && !memmem(p, n, "\"result\"", 8) &&
        !memmem(p, n, "\"error\"", 7))
        return;                   /* a request from the server, not an answer */
    e = id > 0 ? &pend[id % RING] : NULL;
    if (!e || e->id != id || e->answered) {
        unknown++;
        bad++;
        return;
    }
    if (e->client != k) {
        crosstalk++;              /* another client's answer: not ours to finish */
        return;
    }
    e->answered = true;
    if (!text_ok(p, n, id)) {
        bad++;
        e->acked = true;
        finish_call(k, e, false);
        return;
    }
    if (mode == M_SSE && !e->acked)
        return;                   /* the POST's 202 is still to come */
    finish_call(k, e, true);
}

static void finish_call(int k, struct pend *e, bool good)
{
    double t = now_s();
    struct client *cl = &clients[k];

    outstanding--;
    if (good && e->t0 >= t_count && t <= t_end) {
        ok++;
        sample(t - e->t0);
    }
    e->id = 0;
    if (mode == M_STDIO || mode == M_MCPWS || mode == M_TYPEDWS)
        cl->inflight--;
    else
        cl->posts[e->slot]->id = 0;
    if (running && !stopping)
        issue(k, e->slot);
}

/* -- HTTP responses ------------------------------------------------------------- */

static void sse_event(struct conn *c, const char *ev, const char *data, size_t n);

/* Parse a response head; false when more bytes are needed. */
static bool http_head(struct conn *c, size_t *off)
{
    char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4), *l;

    if (!end)
        return false;
    *end = 0;
    c->status = c->inlen > 12 ? atoi(c->in + 9) : 0;
    c->clen = -1;
    c->chunked = false;
    c->bodylen = 0;
    c->sess[0] = 0;
    for (l = strstr(c->in, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        char *v = strchr(l + 2, ':');

        if (!v)
            continue;
        if (!strncasecmp(l + 2, "content-length:", 15))
            c->clen = atol(v + 1);
        else if (!strncasecmp(l + 2, "transfer-encoding:", 18) && strcasestr(v, "chunked"))
            c->chunked = true;
        else if (!strncasecmp(l + 2, "connection:", 11) && strcasestr(v, "close"))
            c->closing = true;
        else if (!strncasecmp(l + 2, "mcp-session-id:", 15)) {
            char *e = strstr(v, "\r\n");
            size_t len = e ? (size_t)(e - v - 1) : strlen(v + 1);

            while (len && v[1] == ' ') { v++; len--; }
            if (len >= sizeof(c->sess))
                len = sizeof(c->sess) - 1;
            memcpy(c->sess, v + 1, len);
            c->sess[len] = 0;
        }
    }
    *off = (size_t)(end - c->in) + 4;
    c->head_done = true;
    return true;
}

/* Move body bytes from c->in[*off] into c->body; true when the body is done. */
static bool http_body(struct conn *c, size_t *off, bool eof)
{
    for (;;) {
        size_t avail = c->inlen - *off;

        if (c->chunked) {
            /* whole chunks only: nothing is consumed until a chunk and its CRLF are here */
            char *nl = memmem(c->in + *off, avail, "\r\n", 2);
            size_t sl;
            long len;

            if (!nl)
                return false;
            sl = (size_t)(nl - (c->in + *off)) + 2;
            len = strtol(c->in + *off, NULL, 16);
            if (len < 0 || len > (long)MAX_MSG)
                fail("bad chunk size");
            if (avail < sl + (size_t)len + 2)
                return false;
            if (len == 0) {
                *off += sl + 2;
                return true;
            }
            grow(&c->body, &c->bodycap, c->bodylen + (size_t)len + 1);
            memcpy(c->body + c->bodylen, c->in + *off + sl, (size_t)len);
            c->bodylen += (size_t)len;
            *off += sl + (size_t)len + 2;
            continue;
        }
        size_t want = c->clen >= 0 ? (size_t)c->clen - c->bodylen : avail;
        size_t take = avail < want ? avail : want;

        grow(&c->body, &c->bodycap, c->bodylen + take + 1);
        memcpy(c->body + c->bodylen, c->in + *off, take);
        c->bodylen += take;
        *off += take;
        if (c->clen >= 0)
            return c->bodylen == (size_t)c->clen;
        return eof;
    }
}

/* Dispatch complete SSE events in c->body, keep the rest. */
static void sse_drain(struct conn *c, int k)
{
    size_t start = 0;

    for (;;) {
        char *b = c->body + start, *end;
        size_t left = c->bodylen - start, sep = 2;

        end = memmem(b, left, "\n\n", 2);
        if (!end) {
            end = memmem(b, left, "\r\n\r\n", 4);
            sep = 4;
        }
        if (!end)
            break;
        char ev[64] = "message";
        size_t elen = (size_t)(end - b);
        char *data = xcalloc(1, elen + 1);
        size_t dl = 0;

        for (char *l = b; l < end;) {
            char *nl = memchr(l, '\n', (size_t)(end - l));
            size_t ll = (size_t)((nl ? nl : end) - l);

            if (ll && l[ll - 1] == '\r')
                ll--;
            if (ll >= 5 && !memcmp(l, "data:", 5)) {
                size_t s = l[5] == ' ' ? 6 : 5;

                if (dl)
                    data[dl++] = '\n';
                memcpy(data + dl, l + s, ll - s);
                dl += ll - s;
            } else if (ll >= 6 && !memcmp(l, "event:", 6)) {
                size_t s = l[6] == ' ' ? 7 : 6, m = ll - s < sizeof(ev) - 1 ? ll - s : sizeof(ev) - 1;

                memcpy(ev, l + s, m);
                ev[m] = 0;
            }
            l = nl ? nl + 1 : end;
        }
        data[dl] = 0;
        if (k >= 0)
            sse_event(c, ev, data, dl);
        else if (dl)
            answer(-k - 1, top_id(data, dl), data, dl);
        free(data);
        start += elen + sep;
    }
    memmove(c->body, c->body + start, c->bodylen - start);
    c->bodylen -= start;
}

static void client_ready(int k);

/* Legacy SSE: "initialized" goes out once initialize was both acked (202)
 * and answered on the stream, in whichever order those came. */
static void sse_init_step(int k)
{
    struct client *cl = &clients[k];

    if (cl->init_stage != 1 || !cl->init_acked || !cl->init_answered)
        return;
    cl->init_stage = 3;
    http_post(cl->posts[0], cl->post_path, initialized, sizeof(initialized) - 1, NULL);
    flush(cl->posts[0]);
}

/* The legacy SSE stream of client k: the endpoint, then answers. */
static void sse_event(struct conn *c, const char *ev, const char *data, size_t n)
{
    struct client *cl = &clients[c->client];

    if (!strcmp(ev, "endpoint")) {
        const char *p = data;

        if (!strncmp(p, "http://", 7) || !strncmp(p, "https://", 8)) {
            p = strchr(strstr(p, "//") + 2, '/');
            if (!p)
                p = "/";
        }
        snprintf(cl->post_path, sizeof(cl->post_path), "%s", p);
        if (mode == M_HOLD)
            return;
        /* initialize through the session, answered on this stream */
        char b[512];
        int bl = init_msg(b, sizeof(b), INIT_ID + c->client);

        http_post(cl->posts[0], cl->post_path, b, (size_t)bl, NULL);
        flush(cl->posts[0]);
        cl->init_stage = 1;
        return;
    }
    if (n == 0 || mode == M_HOLD)
        return;
    long id = top_id(data, n);

    if (id == INIT_ID + c->client && cl->init_stage == 1) {
        cl->init_answered = true;
        sse_init_step(c->client);
        return;
    }
    if (id >= 0)
        answer(c->client, id, data, n);
}

static int dial(void);

/* A fresh connection in place of c (same client, same slot). */
static void redial(struct conn *c)
{
    int fd = -1;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

    if (c->rfd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->rfd, NULL);
        close(c->rfd);
    }
    if ((fd = dial()) < 0)
        fail("reconnect: %s", strerror(errno));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    c->rfd = c->wfd = fd;
    c->inlen = c->bodylen = 0;   /* what is queued in out goes on the new one */
    c->head_done = c->closing = c->dead = c->want_out = false;
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        fail("epoll_ctl: %s", strerror(errno));
}

/* A whole HTTP response on a POST connection. */
static void http_done(struct conn *c)
{
    struct client *cl = &clients[c->client];
    long id = c->id;

    c->busy = false;
    if (mode == M_NULL)
        return;

    if (stopping && !id) {
        deletes_left--;
        return;
    }
    if (cl->init_stage && !cl->ready) {
        /* set-up steps of sse and stream sessions */
        if (c->status >= 300)
            fail("session set-up refused: HTTP %d: %.*s", c->status, (int)c->bodylen, c->body);
        if (mode == M_STREAM && cl->init_stage == 1) {
            if (c->sess[0])
                snprintf(cl->session, sizeof(cl->session), "%s", c->sess);
            cl->init_stage = 2;
            http_post(c, cl->post_path, initialized, sizeof(initialized) - 1, cl->session);
            flush(c);
            return;
        }
        if (mode == M_STREAM && cl->init_stage == 2) {
            client_ready(c->client);
            return;
        }
        if (mode == M_SSE && cl->init_stage == 3) {
            client_ready(c->client);
            return;
        }
        if (mode == M_SSE && cl->init_stage == 1) {
            cl->init_acked = true;  /* the 202 of initialize; its answer is on the stream */
            sse_init_step(c->client);
            return;
        }
    }
    if (!id)
        return;
    struct pend *e = &pend[id % RING];

    if (e->id != id)
        return;
    if (c->status < 200 || c->status >= 300) {
        bad++;
        e->answered = e->acked = true;
        finish_call(c->client, e, false);
        return;
    }
    if (mode == M_SSE) {
        e->acked = true;
        if (e->answered)
            finish_call(c->client, e, true);
        return;
    }
    /* stream and rest: the answer is this body */
    if (mode == M_STREAM) {
        char *d = c->body;
        size_t n = c->bodylen;

        if (n && d[0] != '{') {   /* SSE body: the events in it */
            c->body[c->bodylen] = 0;
            sse_drain(c, -c->client - 1);
            return;
        }
        answer(c->client, top_id(d, n), d, n);
        return;
    }
    e->answered = true;
    bool good = text_ok(c->body, c->bodylen, id);

    if (!good)
        bad++;
    finish_call(c->client, e, good);
}

/* -- WebSocket frames ------------------------------------------------------------ */

static void ws_message(struct conn *c, const char *p, size_t n)
{
    struct client *cl = &clients[c->client];
    long id = top_id(p, n);

    if (mode == M_HOLD)
        return;
    if (mode == M_TYPEDWS) {
        answer(c->client, id, p, n);
        return;
    }
    if (id == INIT_ID + c->client && !cl->ready) {
        ws_frame(c, 1, initialized, sizeof(initialized) - 1, true);
        client_ready(c->client);
        return;
    }
    if (id < 0)
        return;                   /* notifications */
    answer(c->client, id, p, n);
}

/* Parse frames in c->in from *off. */
static void ws_frames(struct conn *c, size_t *off)
{
    while (c->inlen - *off >= 2) {
        unsigned char *h = (unsigned char *)c->in + *off;
        size_t avail = c->inlen - *off, hl = 2;
        uint64_t len = h[1] & 0x7f;
        int op = h[0] & 0x0f;

        if (len == 126) {
            if (avail < 4)
                return;
            len = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (len == 127) {
            if (avail < 10)
                return;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | h[2 + i];
            hl = 10;
        }
        if (len > MAX_MSG)
            fail("frame of %llu bytes", (unsigned long long)len);
        if (avail < hl + len)
            return;
        if (!(h[0] & 0x80))
            fail("fragmented frames are not supported");
        char *p = c->in + *off + hl;

        if (op == 9)
            ws_frame(c, 10, p, (size_t)len, true);
        else if (op == 8)
            c->dead = true;
        else if (op == 1 || op == 2)
            ws_message(c, p, (size_t)len);
        *off += hl + (size_t)len;
    }
}

/* -- connections ---------------------------------------------------------------- */

static struct conn *conn_new(int rfd, int wfd, enum role role, int k)
{
    struct conn *c = xcalloc(1, sizeof(*c));
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

    c->rfd = rfd;
    c->wfd = wfd;
    c->role = role;
    c->client = k;
    fcntl(rfd, F_SETFL, fcntl(rfd, F_GETFL) | O_NONBLOCK);
    if (wfd != rfd)
        fcntl(wfd, F_SETFL, fcntl(wfd, F_GETFL) | O_NONBLOCK);
    if (epoll_ctl(ep, EPOLL_CTL_ADD, rfd, &ev) < 0)
        fail("epoll_ctl: %s", strerror(errno));
    return c;
}

/* Holding connections, connect does not wait: a server that stops
 * accepting leaves the SYN unanswered for minutes, so the connection is
 * set up in the loop and counted as failed if it is not up by the deadline. */
static int dial(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (mode == M_HOLD ? SOCK_NONBLOCK : 0), 0),
        one = 1;

    if (fd < 0)
        return -1;
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && !(mode == M_HOLD && errno == EINPROGRESS))) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void ws_open(struct conn *c, const char *p)
{
    char h[1024];
    int n = snprintf(h, sizeof(h),
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     "%s%s%s\r\n", p, host, port, token ? "Authorization: Bearer " : "",
                     token ? token : "", token ? "\r\n" : "");

    put(c, h, (size_t)n);
    flush(c);
}

static void sse_open(struct conn *c, const char *p)
{
    char h[1024];
    int n = snprintf(h, sizeof(h),
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n%s%s%s\r\n",
                     p, host, port, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "");

    put(c, h, (size_t)n);
    flush(c);
}

static int nready, nfailed;

static void client_ready(int k)
{
    clients[k].ready = true;
    nready++;
}

/* Bytes arrived (or EOF) on c. */
static void on_read(struct conn *c)
{
    bool eof = false;

    for (;;) {
        grow(&c->in, &c->incap, c->inlen + 65536);
        ssize_t n = read(c->rfd, c->in + c->inlen, c->incap - c->inlen - 1);

        if (n > 0) {
            c->inlen += (size_t)n;
            if ((size_t)n < 16384)
                break;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        eof = true;
        break;
    }
    size_t off = 0;

    switch (c->role) {
    case R_PIPE:
        for (;;) {
            char *nl = memchr(c->in + off, '\n', c->inlen - off);

            if (!nl)
                break;
            size_t len = (size_t)(nl - c->in) - off;
            const char *p = c->in + off;
            long id = top_id(p, len);
            struct client *cl = &clients[0];

            if (id == INIT_ID && !cl->ready) {
                put(c, initialized, sizeof(initialized) - 1);
                put(c, "\n", 1);
                client_ready(0);
            } else {
                answer(0, id, p, len);
            }
            off += len + 1;
        }
        break;
    case R_WS:
        if (!c->open) {
            char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);

            if (!end)
                break;
            if (c->inlen < 12 || memcmp(c->in + 9, "101", 3)) {
                if (mode == M_HOLD) {
                    c->dead = true;
                    break;
                }
                fail("WebSocket upgrade refused: %.*s", (int)(end - c->in), c->in);
            }
            c->open = true;
            off = (size_t)(end - c->in) + 4;
            if (mode == M_MCPWS) {
                char b[512];
                int n = init_msg(b, sizeof(b), INIT_ID + c->client);

                ws_frame(c, 1, b, (size_t)n, true);
            } else if (mode == M_TYPEDWS || mode == M_HOLD) {
                client_ready(c->client);
            }
        }
        ws_frames(c, &off);
        break;
    case R_SSE_STREAM:
        if (!c->head_done) {
            if (!http_head(c, &off))
                break;
            if (c->status != 200) {
                if (mode == M_HOLD) {
                    c->dead = true;
                    break;
                }
                fail("event stream refused: HTTP %d", c->status);
            }
            c->open = true;
            if (mode == M_HOLD)
                client_ready(c->client);
        }
        if (http_body(c, &off, eof))
            eof = true;           /* the stream ended */
        sse_drain(c, c->client);
        break;
    case R_HTTP:
        while (off < c->inlen || (eof && c->busy)) {
            if (!c->head_done && !http_head(c, &off))
                break;
            if (!http_body(c, &off, eof))
                break;
            c->head_done = false;
            http_done(c);
            if (eof)
                break;
        }
        break;
    case R_NULL_PEER:
        break;
    }
    memmove(c->in, c->in + off, c->inlen - off);
    c->inlen -= off;
    if (c->role == R_HTTP && c->closing && !c->head_done && !eof) {
        redial(c);                /* the response said Connection: close */
        flush(c);
        return;
    }
    if (eof)
        c->dead = true;
    flush(c);
}

/* -- null server: answers every mode with canned results ------------------------ */

static void null_serve(struct conn *c)
{
    size_t off = 0;

    for (;;) {
        if (!c->open) {
            char *end = memmem(c->in + off, c->inlen - off, "\r\n\r\n", 4);

            if (!end)
                break;
            *end = 0;
            char *req = c->in + off, *cl = strcasestr(req, "content-length:");
            size_t blen = cl ? (size_t)atol(cl + 15) : 0, hl = (size_t)(end - req) + 4;

            if (c->inlen - off < hl + blen) {
                *end = '\r';
                break;
            }
            const char *body = req + hl;
            char out[1024];
            int n;

            if (strcasestr(req, "upgrade: websocket")) {
                n = snprintf(out, sizeof(out), "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             "Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
                put(c, out, (size_t)n);
                c->open = true;
                off += hl;
                continue;
            }
            long id = top_id(body, blen);
            char res[256];

            if (strstr(req, "/api/v1/tools/call")) {
                const char *m = memmem(body, blen, "\"q", 2);

                snprintf(res, sizeof(res), "{\"success\":true,\"result\":{\"content\":[{\"type\":\"text\","
                         "\"text\":\"Echo: q%ld\"}]}}", m ? strtol(m + 2, NULL, 10) : -1L);
            } else {
                snprintf(res, sizeof(res), "{\"result\":{\"content\":[{\"type\":\"text\",\"text\":"
                         "\"Echo: q%ld\"}]},\"jsonrpc\":\"2.0\",\"id\":%ld}", id, id);
            }
            n = snprintf(out, sizeof(out), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         "Mcp-Session-Id: null\r\nContent-Length: %zu\r\n\r\n%s", strlen(res), res);
            put(c, out, (size_t)n);
            off += hl + blen;
            continue;
        }
        /* WebSocket: masked client frames -> unmasked answers */
        unsigned char *h = (unsigned char *)c->in + off;
        size_t avail = c->inlen - off, hl = 2;
        uint64_t len = h[1] & 0x7f;

        if (avail < 2)
            break;
        if (len == 126) {
            if (avail < 4)
                break;
            len = (uint64_t)h[2] << 8 | h[3];
            hl = 4;
        } else if (len == 127) {
            fail("null: frame too large");
        }
        hl += 4;
        if (avail < hl + len)
            break;
        char msg[4096], res[512];
        size_t ml = len < sizeof(msg) ? (size_t)len : sizeof(msg) - 1;

        for (size_t i = 0; i < ml; i++)
            msg[i] = (char)(c->in[off + hl + i] ^ h[hl - 4 + (i & 3)]);
        long id = top_id(msg, ml);
        int n;

        if (memmem(msg, ml, "\"tool_call\"", 11))
            n = snprintf(res, sizeof(res), "{\"type\":\"tool_response\",\"id\":%ld,\"data\":{\"success\":true,"
                         "\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"Echo: q%ld\"}]}}}", id, id);
        else if (id >= 0)
            n = snprintf(res, sizeof(res), "{\"result\":{\"content\":[{\"type\":\"text\",\"text\":"
                         "\"Echo: q%ld\"}]},\"jsonrpc\":\"2.0\",\"id\":%ld}", id, id);
        else
            n = 0;
        if (n)
            ws_frame(c, 1, res, (size_t)n, false);
        off += hl + (size_t)len;
    }
    memmove(c->in, c->in + off, c->inlen - off);
    c->inlen -= off;
    flush(c);
}

static _Noreturn void null_main(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL }, evs[256];
    socklen_t sl = sizeof(sa);

    inet_pton(AF_INET, host, &sa.sin_addr);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 4096) < 0)
        fail("null: bind %s:%d: %s", host, port, strerror(errno));
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("listening on %s:%d\n", host, ntohs(sa.sin_port));
    fflush(stdout);
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);

        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;

            if (!c) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);

                if (fd >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    conn_new(fd, fd, R_NULL_PEER, 0);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT)
                flush(c);
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                on_read(c);
                if (c->dead) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->rfd, NULL);
                    close(c->rfd);
                    free(c->in);
                    free(c->out);
                    free(c->body);
                    free(c);
                    continue;
                }
                null_serve(c);
            }
        }
    }
}

/* -- set-up ------------------------------------------------------------------------ */

static void spawn_child(void)
{
    int in[2], out[2];

    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
        fail("pipe: %s", strerror(errno));
    child = fork();
    if (child < 0)
        fail("fork: %s", strerror(errno));
    if (child == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execvp(cmd[0], cmd);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    clients[0].main = conn_new(out[0], in[1], R_PIPE, 0);

    char b[512];
    int n = init_msg(b, sizeof(b) - 1, INIT_ID);

    b[n++] = '\n';
    put(clients[0].main, b, (size_t)n);
    flush(clients[0].main);
}

static void setup_client(int k, int slots)
{
    struct client *cl = &clients[k];
    int fd = -1;

    if (mode == M_STDIO)
        return;
    if (mode == M_HOLD && (fd = dial()) < 0) {
        nfailed++;                /* never established */
        return;
    }
    if (mode == M_HOLD ? strcmp(hold_kind, "sse") != 0 : mode == M_TYPEDWS || mode == M_MCPWS) {
        if (mode != M_HOLD && (fd = dial()) < 0)
            fail("connect %s:%d: %s", host, port, strerror(errno));
        cl->main = conn_new(fd, fd, R_WS, k);
        ws_open(cl->main, path);
        return;
    }
    if (mode == M_SSE || mode == M_HOLD) {
        if (mode != M_HOLD && (fd = dial()) < 0)
            fail("connect %s:%d: %s", host, port, strerror(errno));
        cl->main = conn_new(fd, fd, R_SSE_STREAM, k);
        sse_open(cl->main, path);
        if (mode == M_HOLD)
            return;
    }
    cl->nposts = slots;
    cl->posts = xcalloc((size_t)slots, sizeof(*cl->posts));
    for (int s = 0; s < slots; s++) {
        if ((fd = dial()) < 0)
            fail("connect %s:%d: %s", host, port, strerror(errno));
        cl->posts[s] = conn_new(fd, fd, R_HTTP, k);
    }
    if (mode == M_REST) {
        client_ready(k);
    } else if (mode == M_STREAM) {
        char b[512];
        int n = init_msg(b, sizeof(b), INIT_ID + k);

        snprintf(cl->post_path, sizeof(cl->post_path), "%s", path);
        cl->init_stage = 1;
        http_post(cl->posts[0], cl->post_path, b, (size_t)n, NULL);
        flush(cl->posts[0]);
    }
}

static double cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

static double pct(double q)
{
    if (!nlat)
        return 0;
    size_t i = (size_t)(q * (double)(nlat - 1) + 0.5);

    return lat[i] / 1000.0;
}

static void loop_until(double deadline, bool (*done)(void))
{
    struct epoll_event evs[256];

    while (!done() && now_s() < deadline) {
        int ms = (int)((deadline - now_s()) * 1000) + 1, n = epoll_wait(ep, evs, 256, ms > 100 ? 100 : ms);

        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;

            if (evs[i].events & EPOLLOUT)
                flush(c);
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_read(c);
            if (c->dead && c->rfd >= 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->rfd, NULL);
                if (c->wfd != c->rfd)
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->wfd, NULL);
                if (mode == M_HOLD && !clients[c->client].ready)
                    nfailed++;
                if (mode != M_HOLD && !stopping && (c->role != R_HTTP || c->busy))
                    errors++;
                close(c->rfd);
                if (c->wfd != c->rfd)
                    close(c->wfd);
                c->rfd = c->wfd = -1;
                if (c->role != R_HTTP || mode == M_HOLD)
                    continue;
                /* a keep-alive connection the peer closed: a new one, then the
                 * call it carried (if any) fails and the next goes out on it */
                long lost = c->busy ? c->id : 0;

                redial(c);
                c->busy = false;
                if (lost) {
                    struct pend *e = &pend[lost % RING];

                    if (e->id == lost) {
                        e->answered = e->acked = true;
                        finish_call(c->client, e, false);
                    }
                }
            }
        }
    }
}

static bool all_ready(void) { return nready + nfailed >= nclients; }
static bool never(void) { return false; }
static bool drained(void) { return outstanding <= 0; }
static bool deleted(void) { return deletes_left <= 0; }

static void usage(void)
{
    fputs("usage: loadgen stdio|typedws|mcpws|sse|stream|rest|hold|null [--host H] [--port P] [--path P]\n"
          "       [--token T] [--server ID] [--tool echo|search_nodes] [--inflight K] [--clients C]\n"
          "       [--seconds S] [--warmup S] [--kind typedws|mcpws|sse] [--conns N] [-- COMMAND ARGS...]\n",
          stderr);
    exit(64);
}

int main(int argc, char **argv)
{
    int i;

    if (argc < 2)
        usage();
    for (i = 0; i < 8 && strcmp(argv[1], mode_names[i]); i++)
        ;
    if (i == 8)
        usage();
    mode = (enum mode)i;
    for (i = 2; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (!strcmp(o, "--")) {
            cmd = argv + i + 1;
            break;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(o, "--host")) host = v;
        else if (!strcmp(o, "--port")) port = atoi(v);
        else if (!strcmp(o, "--path")) path = v;
        else if (!strcmp(o, "--token")) token = v;
        else if (!strcmp(o, "--server")) server = v;
        else if (!strcmp(o, "--tool")) tool = v;
        else if (!strcmp(o, "--inflight")) inflight = atoi(v);
        else if (!strcmp(o, "--clients")) nclients = atoi(v);
        else if (!strcmp(o, "--seconds")) seconds = atof(v);
        else if (!strcmp(o, "--warmup")) warmup = atof(v);
        else if (!strcmp(o, "--kind")) hold_kind = v;
        else if (!strcmp(o, "--conns")) conns_wanted = atoi(v);
        else usage();
    }
    signal(SIGPIPE, SIG_IGN);
    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        fail("epoll_create1: %s", strerror(errno));
    if (mode == M_NULL)
        null_main();
    if (inflight < 1 || seconds <= 0 || (mode != M_STDIO && port <= 0) || (mode == M_STDIO && !cmd))
        usage();
    if (!path)
        path = mode == M_SSE ? "/sse" : mode == M_STREAM ? "/mcp" : mode == M_REST ? "/api/v1/tools/call"
             : mode == M_MCPWS ? "/message" : mode == M_HOLD && !strcmp(hold_kind, "sse") ? "/sse" : "/ws";
    if (mode == M_STDIO)
        nclients = 1;
    else if (mode == M_HOLD)
        nclients = conns_wanted;
    else if (nclients <= 0)
        nclients = inflight < 4 ? inflight : 4;
    if (nclients > inflight && mode != M_HOLD)
        nclients = inflight;
    clients = xcalloc((size_t)nclients, sizeof(*clients));
    pend = xcalloc(RING, sizeof(*pend));

    double t0 = now_s(), c0;

    if (mode == M_STDIO)
        spawn_child();
    for (int k = 0; k < nclients; k++) {
        setup_client(k, inflight / nclients + (k < inflight % nclients));
        if (mode == M_HOLD && k % 256 == 255)
            loop_until(now_s() + 0.001, never);   /* answer handshakes while dialing */
    }
    loop_until(t0 + 30 + nclients / 500.0, all_ready);
    if (mode == M_HOLD) {
        int est = nready, open_end = 0;

        fprintf(stderr, "hold %s: %d of %d established in %.2f s\n", hold_kind, est, nclients, now_s() - t0);
        loop_until(now_s() + seconds, never);
        for (int k = 0; k < nclients; k++)
            open_end += clients[k].ready && clients[k].main && clients[k].main->rfd >= 0;
        printf("hold\t%s\t%d\t%d\t%d\n", hold_kind, nclients, est, open_end);
        return open_end == nclients ? 0 : 1;
    }
    if (!all_ready())
        fail("%d of %d clients set up in time", nready, nclients);

    c0 = cpu_s();
    t_start = now_s();
    t_count = t_start + warmup;
    t_end = t_count + seconds;
    running = true;
    for (int k = 0; k < nclients; k++) {
        struct client *cl = &clients[k];
        int slots = inflight / nclients + (k < inflight % nclients);

        for (int s = 0; s < slots; s++)
            issue(k, s);
        if (cl->main)
            flush(cl->main);
    }
    loop_until(t_end, never);
    stopping = true;
    loop_until(now_s() + 10, drained);
    double cpu = cpu_s() - c0;

    if (mode == M_STREAM) {
        /* end the sessions, as a client that is done does (the gateway frees
         * what it keeps per session, e.g. a server process) */
        int sent = 0;

        for (int k = 0; k < nclients; k++) {
            struct conn *c = clients[k].posts[0];
            char h[600];
            int n = snprintf(h, sizeof(h), "DELETE %s HTTP/1.1\r\nHost: %s:%d\r\nMcp-Session-Id: %s\r\n"
                             "Content-Length: 0\r\n\r\n", path, host, port, clients[k].session);

            if (!clients[k].session[0] || c->rfd < 0)
                continue;
            put(c, h, (size_t)n);
            c->busy = true;
            c->id = 0;
            flush(c);
            sent++;
        }
        deletes_left = sent;
        loop_until(now_s() + 2, deleted);
    }

    errors += outstanding;        /* never answered within 10 s of the end */
    if (lat)
        qsort(lat, nlat, sizeof(*lat), cmp_u32);
    double rate = (double)ok / seconds;

    fprintf(stderr, "%s %s/%s: %.0f calls/s p50 %.3f p99 %.3f p99.9 %.3f ms; ok %ld bad %ld "
            "(cross-talk %ld, unknown %ld) errors %ld; loadgen CPU %.2f s\n",
            mode_names[mode], server, tool, rate, pct(0.5), pct(0.99), pct(0.999), ok, bad,
            crosstalk, unknown, errors, cpu);
    printf("%s\t%.0f\t%.3f\t%.3f\t%.3f\t%ld\t%ld\t%ld\t%ld\t%.2f\n", mode_names[mode], rate,
           pct(0.5), pct(0.99), pct(0.999), ok, bad, crosstalk, errors, cpu);
    if (child > 0) {
        close(clients[0].main->wfd);
        kill(child, SIGTERM);
        waitpid(child, NULL, 0);
    }
    return bad || crosstalk || errors ? 1 : 0;
}
