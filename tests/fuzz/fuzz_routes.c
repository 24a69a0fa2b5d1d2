/* fuzz_routes.c - any HTTP request through the /api/v1 routes.
 *
 * The input is a request as text (tests/fuzz/corpus/routes/ has examples):
 *
 *   POST /api/v1/tools/call?x=1        method and target (path?query)
 *   authorization: Bearer @FULL@       headers, "name: value" (names folded
 *   content-type: application/json     to lower case, as front ends do)
 *   @fail 40                           harness controls, see below
 *                                      an empty line, then
 *   {"serverId":"srv","toolName":"echo"}   the body
 *
 * @FULL@, @NARROW@ and @GONE@ (anywhere in the head) become the all-scopes,
 * the "srv:echo" and the revoked token of the gateway (gateway.h), and
 * @TICKET@ a fresh ticket.  Controls: "@open" serves with requireAuth
 * false; "@fail N" makes the writer fail once the body would pass N bytes,
 * "@fail-begin"/"@fail-flush" at the head/the first flush; "@hangup" gives
 * the routes a descriptor that reports a hang-up; "@cl N" announces N as
 * the body's length (the body itself is unchanged); "@chunk N" hands the
 * body out N bytes per read; "@bodyerr" fails the read after the body;
 * "@noheaders" leaves the request without a header lookup.
 *
 * The writer checks every response: one head, before any byte; a status
 * with a reason; header names that are tokens and values that are
 * printable (no CR, LF or NUL: no response splitting, whatever the request
 * held); no call after a failed one; the result says whether the writer
 * failed; 401s carry WWW-Authenticate, 405s Allow, 204s no body; a JSON
 * body is one strict JSON object whose Content-Length is right, and an
 * error's "code" is one of the closed list; an event stream is made of
 * retry:, id:, data: (JSON) lines and blank lines.  No token the request
 * did not carry is in the response, and none that it carried outside its
 * URL reaches the log.
 *
 * The same text then goes to the parsers directly: the query lookup (any
 * name, any buffer size, same answer), the path decoder and the route
 * path, Last-Event-ID for both event backends (the order of ids is
 * antisymmetric), media types and Accept, and the CGI names of headers.
 */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "codec.h"
#include "err.h"
#include "gateway.h"
#include "http.h"
#include "limits.h"
#include "log.h"
#include "ticket.h"

#define MAX_HEADERS 32

/* ---- the request ------------------------------------------------------------- */

struct request {
    char *head;                 /* expanded head text, cut into lines in place */
    size_t head_len;
    const char *method, *path, *query;
    char path_buf[4096];
    const char *hname[MAX_HEADERS], *hvalue[MAX_HEADERS];
    size_t nh;
    const char *body;
    size_t body_len, off, chunk;
    bool body_err, open, no_headers, hangup;
    bool has_cl;
    long long cl;
    long long fail_after;       /* -1: never */
    bool fail_begin, fail_flush;
};

static const char *req_header(void *ud, const char *lname)
{
    struct request *r = ud;

    for (size_t i = 0; i < r->nh; i++)
        if (strcmp(r->hname[i], lname) == 0)
            return r->hvalue[i];
    return NULL;
}

static ssize_t req_read(void *ud, char *buf, size_t len)
{
    struct request *r = ud;
    size_t n = r->body_len - r->off;

    if (n == 0 && r->body_err)
        return -1;
    if (n > len)
        n = len;
    if (r->chunk && n > r->chunk)
        n = r->chunk;
    memcpy(buf, r->body + r->off, n);
    r->off += n;
    return (ssize_t)n;
}

/* The head with every placeholder replaced (a new string). */
static char *expand(const char *head, size_t len, struct fuzz_gateway *g)
{
    struct mcpgw_buf b;
    char ticket[MCPGW_TICKET_LEN + 8];

    mcpgw_buf_init(&b, 1024u * 1024);
    for (size_t i = 0; i < len;) {
        const char *p = head + i;
        size_t left = len - i;

        if (left >= 6 && memcmp(p, "@FULL@", 6) == 0) {
            assert(mcpgw_buf_adds(&b, g->tok_full) == 0);
            i += 6;
        } else if (left >= 8 && memcmp(p, "@NARROW@", 8) == 0) {
            assert(mcpgw_buf_adds(&b, g->tok_narrow) == 0);
            i += 8;
        } else if (left >= 6 && memcmp(p, "@GONE@", 6) == 0) {
            assert(mcpgw_buf_adds(&b, g->tok_gone) == 0);
            i += 6;
        } else if (left >= 8 && memcmp(p, "@TICKET@", 8) == 0) {
            fuzz_gateway_ticket(g, ticket, sizeof(ticket));
            assert(mcpgw_buf_adds(&b, ticket) == 0);
            i += 8;
        } else {
            assert(mcpgw_buf_addc(&b, *p) == 0);
            i++;
        }
    }
    assert(mcpgw_buf_addc(&b, '\0') == 0);
    return b.ptr;       /* the buffer's memory, now the caller's */
}

static void control(struct request *r, const char *line)
{
    if (strcmp(line, "@open") == 0)
        r->open = true;
    else if (strcmp(line, "@fail-begin") == 0)
        r->fail_begin = true;
    else if (strcmp(line, "@fail-flush") == 0)
        r->fail_flush = true;
    else if (strncmp(line, "@fail ", 6) == 0)
        r->fail_after = strtoll(line + 6, NULL, 10) & 0xfffff;
    else if (strcmp(line, "@hangup") == 0)
        r->hangup = true;
    else if (strncmp(line, "@cl ", 4) == 0) {
        r->has_cl = true;
        r->cl = strtoll(line + 4, NULL, 10);
    } else if (strncmp(line, "@chunk ", 7) == 0)
        r->chunk = (size_t)strtoul(line + 7, NULL, 10) % 70000;
    else if (strcmp(line, "@bodyerr") == 0)
        r->body_err = true;
    else if (strcmp(line, "@noheaders") == 0)
        r->no_headers = true;
}

/* Cut the input into the request; false if there is no request line. */
static bool parse_input(struct request *r, const uint8_t *data, size_t size,
                        struct fuzz_gateway *g)
{
    const char *sep = NULL;
    size_t head_len;
    char *line, *next, *sp, *q;

    for (size_t i = 0; i + 1 < size; i++)
        if (data[i] == '\n' && data[i + 1] == '\n') {
            sep = (const char *)data + i;
            break;
        }
    head_len = sep ? (size_t)(sep - (const char *)data) : size;
    if (sep) {
        r->body = sep + 2;
        r->body_len = size - head_len - 2;
    }
    r->fail_after = -1;
    r->head = expand((const char *)data, head_len, g);
    r->head_len = strlen(r->head);
    line = r->head;
    next = strchr(line, '\n');
    if (next)
        *next++ = '\0';
    sp = strchr(line, ' ');
    r->method = line;
    if (sp) {
        *sp = '\0';
        snprintf(r->path_buf, sizeof(r->path_buf), "%s", sp + 1);
    } else {
        snprintf(r->path_buf, sizeof(r->path_buf), "/");
    }
    q = strchr(r->path_buf, '?');
    if (q)
        *q++ = '\0';
    r->path = r->path_buf;
    r->query = q ? q : "";
    for (line = next; line && *line; line = next) {
        char *colon;

        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (line[0] == '@') {
            control(r, line);
            continue;
        }
        if (r->nh == MAX_HEADERS)
            continue;
        colon = strchr(line, ':');
        if (colon) {
            *colon++ = '\0';
            while (*colon == ' ' || *colon == '\t')
                colon++;
        }
        for (char *c = line; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        r->hname[r->nh] = line;
        r->hvalue[r->nh++] = colon ? colon : "";
    }
    return true;
}

/* ---- the writer that checks ------------------------------------------------------ */

struct rec {
    const struct request *req;
    int status, begins;
    bool failed, called_after_failure;
    bool json, sse, www_auth, allow;
    long long clen;
    struct mcpgw_buf body;
    struct mcpgw_buf headers;   /* every header line, for the token check */
};

/* An assertion that shows the response it is about. */
#define want(c, cond) do { if (!(cond)) want_failed(c, #cond, __LINE__); } while (0)

static void want_failed(const struct rec *c, const char *what, int line)
{
    fprintf(stderr, "fuzz_routes.c:%d: %s\nresponse: %d\n%.*s\n%.*s\n", line, what, c->status,
            (int)c->headers.len, c->headers.ptr ? c->headers.ptr : "",
            (int)(c->body.len < 2000 ? c->body.len : 2000), c->body.ptr ? c->body.ptr : "");
    abort();
}

static bool token_char(char c)
{
    return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", c);
}

static int rec_begin(void *ud, int status, const struct mcpgw_http_header *h, size_t n)
{
    struct rec *c = ud;
    int ctypes = 0, clens = 0;

    if (c->failed) {
        c->called_after_failure = true;
        return -EPIPE;
    }
    assert(c->begins == 0 && c->body.len == 0);
    c->begins++;
    c->status = status;
    assert(status >= 100 && status <= 599);
    assert(strcmp(mcpgw_http_reason(status), "Unknown") != 0);
    for (size_t i = 0; i < n; i++) {
        assert(h[i].name && h[i].name[0] && h[i].value);
        for (const char *p = h[i].name; *p; p++)
            assert(token_char(*p));
        assert(mcpgw_http_header_value_ok(h[i].value));
        assert(!strpbrk(h[i].value, "\r\n"));
        mcpgw_buf_printf(&c->headers, "%s: %s\n", h[i].name, h[i].value);
        if (strcasecmp(h[i].name, "Content-Type") == 0) {
            ctypes++;
            c->json = mcpgw_http_media_is(h[i].value, "application/json");
            c->sse = mcpgw_http_media_is(h[i].value, "text/event-stream");
        } else if (strcasecmp(h[i].name, "Content-Length") == 0) {
            char *end;

            clens++;
            c->clen = strtoll(h[i].value, &end, 10);
            assert(*end == '\0' && c->clen >= 0);
        } else if (strcasecmp(h[i].name, "WWW-Authenticate") == 0) {
            c->www_auth = true;
        } else if (strcasecmp(h[i].name, "Allow") == 0) {
            c->allow = true;
        }
    }
    assert(ctypes <= 1 && clens <= 1);
    if (c->req->fail_begin) {
        c->failed = true;
        return -EPIPE;
    }
    return 0;
}

static int rec_write(void *ud, const char *p, size_t n)
{
    struct rec *c = ud;

    if (c->failed) {
        c->called_after_failure = true;
        return -EPIPE;
    }
    assert(c->begins == 1);
    if (c->req->fail_after >= 0 && c->body.len + n > (size_t)c->req->fail_after) {
        c->failed = true;
        return -EPIPE;
    }
    assert(mcpgw_buf_add(&c->body, p, n) == 0);
    return 0;
}

static int rec_flush(void *ud)
{
    struct rec *c = ud;

    if (c->failed) {
        c->called_after_failure = true;
        return -EPIPE;
    }
    assert(c->begins == 1);
    if (c->req->fail_flush) {
        c->failed = true;
        return -EPIPE;
    }
    return 0;
}

static void check_json(const struct rec *c)
{
    json_object *o = fuzz_strict_parse(c->body.ptr ? c->body.ptr : "", c->body.len), *v;

    want(c, o && json_object_is_type(o, json_type_object));
    want(c, c->clen == (long long)c->body.len);
    /* Errors have one shape; /health's 503 is its usual report. */
    if (c->status >= 400 && !json_object_object_get_ex(o, "servers", NULL)) {
        want(c, json_object_object_get_ex(o, "error", &v) &&
                json_object_is_type(v, json_type_string));
        want(c, json_object_object_get_ex(o, "code", &v) &&
                json_object_is_type(v, json_type_string));
        want(c, mcpgw_codec_code_valid(json_object_get_string(v)));
    }
    json_object_put(o);
}

/* Complete lines only: a failed write may have cut the last frame. */
static void check_sse(const struct rec *c)
{
    const char *p = c->body.ptr ? c->body.ptr : "", *end = p + c->body.len;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n;

        if (!nl)
            break;
        n = (size_t)(nl - p);
        want(c, !memchr(p, '\r', n) && !memchr(p, '\0', n));
        if (n == 0) {
            /* a frame ends */
        } else if (n > 7 && memcmp(p, "retry: ", 7) == 0) {
            for (size_t i = 7; i < n; i++)
                want(c, isdigit((unsigned char)p[i]));
        } else if (n > 4 && memcmp(p, "id: ", 4) == 0) {
            want(c, n - 4 <= MCPGW_EVENT_ID_MAX);
            for (size_t i = 4; i < n; i++)
                want(c, isalnum((unsigned char)p[i]) || p[i] == '-');
        } else if (n > 6 && memcmp(p, "data: ", 6) == 0) {
            json_object *o = fuzz_strict_parse(p + 6, n - 6);

            /* Events we stored (gateway.c) are one line each: every data:
             * line here is a whole JSON object. */
            want(c, o && json_object_is_type(o, json_type_object));
            json_object_put(o);
        } else {
            want(c, p[0] == ':');    /* a comment */
        }
        p = nl + 1;
    }
}

/* ---- logs: no token sent outside the URL is ever written ------------------------- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *log_forbidden[3];
static bool log_leak;

static void log_sink(void *ud, int level, const char *line, size_t len)
{
    (void)ud;
    (void)level;
    pthread_mutex_lock(&log_lock);
    for (int i = 0; i < 3; i++) {
        const char *t = log_forbidden[i];

        if (t && memmem(line, len, t, strlen(t))) {
            fprintf(stderr, "token in a log line: %.*s\n", (int)len, line);
            log_leak = true;
        }
    }
    pthread_mutex_unlock(&log_lock);
}

/* ---- the parsers, directly ----------------------------------------------------- */

static void check_query(const char *query, const char *name)
{
    char big[4096], small[8];
    int r1 = mcpgw_http_query_get(query, name, big, sizeof(big));
    int r2 = mcpgw_http_query_get(query, name, small, sizeof(small));

    assert(r1 >= -1 || r1 == MCPGW_ETOOBIG || r1 == MCPGW_EPARSE);
    if (r1 >= 0) {
        assert((size_t)r1 < sizeof(big) && strlen(big) == (size_t)r1);
        if ((size_t)r1 < sizeof(small))
            assert(r2 == r1 && strcmp(big, small) == 0);
        else
            assert(r2 == MCPGW_ETOOBIG);
    } else if (r1 == -1) {
        assert(r2 == -1);
    } else if (r1 == MCPGW_EPARSE) {
        assert(r2 == MCPGW_EPARSE || r2 == MCPGW_ETOOBIG);
    }
}

static void check_path(const struct mcpgw_http_request *hr)
{
    char out[1024];
    int n = mcpgw_http_path_decode(hr->path, out, sizeof(out));
    const char *route;

    if (n < 0) {
        assert(n == MCPGW_EPARSE || n == MCPGW_ETOOBIG);
        assert(!mcpgw_routes_is_stream(hr));
        return;
    }
    assert((size_t)n < sizeof(out) && strlen(out) == (size_t)n);
    assert(!strstr(out, "//") && !strstr(out, "/./") && !strstr(out, "/../"));
    assert(!(n >= 2 && strcmp(out + n - 2, "/.") == 0));
    assert(!(n >= 3 && strcmp(out + n - 3, "/..") == 0));
    route = mcpgw_routes_path(out);
    if (route) {
        assert(route >= out && route < out + n);
        assert(strncmp(route, "/api/v1", 7) == 0 && (route[7] == '\0' || route[7] == '/'));
    }
    if (mcpgw_routes_is_stream(hr))
        assert(strcmp(hr->method, "GET") == 0 && route && strcmp(route, "/api/v1/events") == 0);
}

static int sign(int x)
{
    return (x > 0) - (x < 0);
}

static void check_event_id(const mcpgw_events *ev, const char *id, bool file)
{
    static const char *const others[] = { "0", "1", "7", "18446744073709551614",
                                          "1764118923000-0", "1764118923000-12", "x", "" };
    bool valid = mcpgw_events_id_valid(ev, id);

    if (valid && file) {
        size_t n = strlen(id);

        assert(n >= 1 && n <= 20 && strspn(id, "0123456789") == n);
    }
    if (valid) {
        assert(strlen(id) <= MCPGW_EVENT_ID_MAX);
        assert(strspn(id, "0123456789-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") ==
               strlen(id));
        assert(mcpgw_events_id_cmp(ev, id, id) == 0);
    }
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        assert(sign(mcpgw_events_id_cmp(ev, id, others[i])) ==
               -sign(mcpgw_events_id_cmp(ev, others[i], id)));
}

static mcpgw_events *redis_events(struct fuzz_gateway *g)
{
    static mcpgw_events *ev;
    static struct mcpgw_conf *conf;     /* the handle's, for the process */
    char json[512], err[256];

    if (ev)
        return ev;
    /* Never connected to: only its id syntax is used. */
    snprintf(json, sizeof(json), "{\"gateway\":{\"stateDir\":\"%s/redis\",\"events\":"
             "{\"backend\":\"redis\",\"redis\":{\"host\":\"127.0.0.1\",\"port\":1}}},"
             "\"mcpServers\":{}}", g->dir);
    assert(mcpgw_conf_parse(json, strlen(json), "r.json", g->dir, &conf, err, sizeof(err)) == 0);
    assert(mcpgw_events_open(conf, &ev, err, sizeof(err)) == 0);
    return ev;
}

static void check_parsers(struct fuzz_gateway *g, const struct request *r,
                          const struct mcpgw_http_request *hr)
{
    static const char *const names[] = { "types", "serverId", "lastEventId", "ticket",
                                         "access_token", "", "=", NULL };
    const char *v;
    char first[64];
    size_t k;

    for (size_t i = 0; names[i]; i++)
        check_query(r->query, names[i]);
    k = strcspn(r->query, "=&");
    if (k < sizeof(first)) {
        memcpy(first, r->query, k);
        first[k] = '\0';
        check_query(r->query, first);
    }
    check_path(hr);
    if ((v = req_header((void *)r, "last-event-id"))) {
        check_event_id(g->events, v, true);
        check_event_id(redis_events(g), v, false);
    }
    if ((v = req_header((void *)r, "content-type")))
        (void)mcpgw_http_media_is(v, "application/json");
    if ((v = req_header((void *)r, "accept")))
        (void)mcpgw_http_accepts(v, "text/event-stream");
    for (size_t i = 0; i < r->nh; i++) {
        char cgi[256];

        /* Names are looked up, never sent: any byte but a-z and '-'
         * passes through as it is. */
        if (mcpgw_http_cgi_name(r->hname[i], cgi, sizeof(cgi)) == 0) {
            bool bare = strcmp(r->hname[i], "content-type") == 0 ||
                        strcmp(r->hname[i], "content-length") == 0;

            assert(strlen(cgi) == strlen(r->hname[i]) + (bare ? 0 : 5));
            assert(bare || strncmp(cgi, "HTTP_", 5) == 0);
            for (const char *p = cgi; *p; p++)
                assert(!islower((unsigned char)*p) && *p != '-');
        }
    }
}

/* ---- one input ----------------------------------------------------------------- */

static int hangup_fd(void)
{
    static int fd = -1;
    int p[2];

    if (fd < 0) {
        assert(pipe(p) == 0);
        close(p[1]);    /* the read end now always reports POLLHUP */
        fd = p[0];
    }
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_gateway *g = fuzz_gateway();
    struct request r = { 0 };
    struct mcpgw_http_request hr;
    struct mcpgw_http_writer w;
    struct rec c = { 0 };
    const char *toks[3];
    bool in_url[3];
    int rc;

    if (size == 0 || size > 256 * 1024)
        return 0;
    parse_input(&r, data, size, g);
    hr = (struct mcpgw_http_request){
        .method = r.method, .path = r.path, .query = r.query,
        .header = r.no_headers ? NULL : req_header, .header_ud = &r,
        .content_length = r.has_cl ? r.cl : r.body ? (long long)r.body_len : -1,
        .read_body = r.body ? req_read : NULL, .body_ud = &r, .remote_addr = "192.0.2.1" };
    c.req = &r;
    c.clen = -1;
    mcpgw_buf_init(&c.body, 16u * 1024 * 1024);
    mcpgw_buf_init(&c.headers, 64u * 1024);
    w = (struct mcpgw_http_writer){ rec_begin, rec_write, rec_flush, &c,
                                    r.hangup ? hangup_fd() : -1, POLLRDHUP };

    toks[0] = g->tok_full;
    toks[1] = g->tok_narrow;
    toks[2] = g->tok_gone;
    pthread_mutex_lock(&log_lock);
    for (int i = 0; i < 3; i++) {
        in_url[i] = strstr(r.method, toks[i]) || strstr(r.path, toks[i]) ||
                    strstr(r.query, toks[i]);
        log_forbidden[i] = in_url[i] ? NULL : toks[i];
    }
    log_leak = false;
    pthread_mutex_unlock(&log_lock);
    mcpgw_log_set_level(MCPGW_LOG_DEBUG);
    mcpgw_log_set_sink(log_sink, NULL);

    rc = mcpgw_routes_handle(r.open ? g->rt_open : g->rt, &hr, &w);

    pthread_mutex_lock(&log_lock);
    assert(!log_leak);
    log_forbidden[0] = log_forbidden[1] = log_forbidden[2] = NULL;
    pthread_mutex_unlock(&log_lock);
    want(&c, !c.called_after_failure);
    if (c.failed) {
        want(&c, rc < 0);
    } else {
        want(&c, rc == 0 && c.begins == 1);
        if (c.status == 401)
            want(&c, c.www_auth);
        if (c.status == 405)
            want(&c, c.allow);
        if (c.status == 204)
            want(&c, c.body.len == 0);
        if (c.json)
            check_json(&c);
    }
    if (c.sse)
        check_sse(&c);
    /* A token reaches a response only when the request carried it. */
    for (int i = 0; i < 3; i++) {
        const char *t = toks[i];
        /* (the head's separators are NULs now; a token has none of them) */
        bool sent = memmem(r.head, r.head_len, t, strlen(t)) ||
                    (r.body && memmem(r.body, r.body_len, t, strlen(t)));

        if (!sent) {
            want(&c, !c.headers.ptr || !strstr(c.headers.ptr, t));
            want(&c, !c.body.ptr || !memmem(c.body.ptr, c.body.len, t, strlen(t)));
        }
    }
    check_parsers(g, &r, &hr);
    /* MCPGW_FUZZ_TRACE=1: each response, to see what a corpus reaches. */
    if (getenv("MCPGW_FUZZ_TRACE"))
        fprintf(stderr, "%s %s -> %d%s %.*s\n", r.method, r.path, c.status,
                c.failed ? " (writer failed)" : "", (int)(c.body.len < 300 ? c.body.len : 300),
                c.body.ptr ? c.body.ptr : "");
    mcpgw_buf_release(&c.body);
    mcpgw_buf_release(&c.headers);
    free(r.head);
    return 0;
}
