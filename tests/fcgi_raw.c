/* fcgi_raw - a raw FastCGI client that abuses a running mcpgw-fcgi.
 *
 *   fcgi_raw SOCKET PID TOKEN
 *
 * Run by tests/fcgi-raw.test against a responder it started with --listen
 * SOCKET.  Every abuse gets a clean answer (an HTTP error, or a dropped
 * connection for protocol-level abuse) and after each one the responder
 * still serves a normal request.  The abuses: the CVE-2025-23016 shape
 * (name and value lengths near 2^31 in the 4-byte form), 10,000 pairs,
 * 1 MiB of params, malformed heads, CONTENT_LENGTH missing / negative /
 * non-numeric / over the cap / above or below the body, paths with "..",
 * "%2e%2e", "%00", "//", CR/LF in names that reach an error, and JSON
 * bodies (deep nesting, invalid UTF-8, trailing garbage).  VmRSS of PID is
 * compared before and after.  Prints TAP; exit 1 on any failure.
 */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "limits.h"

#define T_BEGIN 1
#define T_END 3
#define T_PARAMS 4
#define T_STDIN 5
#define T_STDOUT 6

static const char *sock_path, *token;
static int pid, n_tests, n_failed;

static void ok(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ok(bool cond, const char *fmt, ...)
{
    va_list ap;

    printf("%s %d - ", cond ? "ok" : "not ok", ++n_tests);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    if (!cond)
        n_failed++;
}

/* A growing byte string (the test aborts on OOM). */
struct bytes {
    unsigned char *p;
    size_t len, cap;
};

static void add(struct bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void add_len(struct bytes *b, uint32_t n, bool four)
{
    if (!four && n < 128) {
        unsigned char c = (unsigned char)n;
        add(b, &c, 1);
    } else {
        unsigned char c[4] = { (unsigned char)(0x80 | n >> 24), (unsigned char)(n >> 16),
                               (unsigned char)(n >> 8), (unsigned char)n };
        add(b, c, 4);
    }
}

static void add_pair(struct bytes *b, const char *name, const char *value, size_t vlen)
{
    add_len(b, (uint32_t)strlen(name), false);
    add_len(b, (uint32_t)vlen, false);
    add(b, name, strlen(name));
    add(b, value, vlen);
}

/* Records of type for content c[0..n): split at 65535, plus an empty
 * terminating record when end. */
static void add_records(struct bytes *out, unsigned type, unsigned id, const unsigned char *c,
                        size_t n, bool end)
{
    do {
        size_t k = n > 65535 ? 65535 : n;
        unsigned char h[8] = { 1, (unsigned char)type, (unsigned char)(id >> 8), (unsigned char)id,
                               (unsigned char)(k >> 8), (unsigned char)k, 0, 0 };

        if (k == 0 && !end)
            break;
        add(out, h, 8);
        add(out, c, k);
        c += k;
        n -= k;
        if (k == 0)
            break;
        if (n == 0 && end) {
            unsigned char e[8] = { 1, (unsigned char)type, (unsigned char)(id >> 8),
                                   (unsigned char)id, 0, 0, 0, 0 };
            add(out, e, 8);
            break;
        }
    } while (n > 0);
}

static void add_begin(struct bytes *out, unsigned id, unsigned role)
{
    unsigned char r[16] = { 1, T_BEGIN, (unsigned char)(id >> 8), (unsigned char)id, 0, 8, 0, 0,
                            (unsigned char)(role >> 8), (unsigned char)role, 0, 0, 0, 0, 0, 0 };
    add(out, r, sizeof(r));
}

static int conn(void)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timeval tv = { 20, 0 };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock_path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror("connect");
        exit(1);
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Send all of b while also watching for the answer: a responder that
 * refuses a head stops reading, answers and closes. */
static void send_watching(int fd, const struct bytes *b)
{
    size_t off = 0;

    while (off < b->len) {
        struct pollfd p = { .fd = fd, .events = POLLOUT | POLLIN };
        ssize_t n;

        if (poll(&p, 1, 20000) <= 0 || (p.revents & (POLLIN | POLLHUP | POLLERR)))
            return;
        n = send(fd, b->p + off, b->len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            return;     /* EPIPE, ECONNRESET: the responder closed */
        }
        off += (size_t)n;
    }
}

struct answer {
    int status;         /* from "Status: NNN", 0 if none */
    bool ended;         /* FCGI_END_REQUEST seen */
    bool dropped;       /* the connection closed without one */
    char *head, *body;  /* the CGI response head and body (NUL-terminated) */
};

static void answer_free(struct answer *a)
{
    free(a->head);
    free(a->body);
    memset(a, 0, sizeof(*a));
}

static bool read_full(int fd, unsigned char *p, size_t n)
{
    while (n) {
        ssize_t k = recv(fd, p, n, 0);

        if (k <= 0) {
            if (k < 0 && errno == EINTR)
                continue;
            return false;
        }
        p += k;
        n -= (size_t)k;
    }
    return true;
}

static void read_answer(int fd, struct answer *a)
{
    struct bytes out = { 0 };
    unsigned char h[8], c[65535 + 255];
    char *sep;

    memset(a, 0, sizeof(*a));
    for (;;) {
        size_t clen, plen;

        if (!read_full(fd, h, 8)) {
            a->dropped = true;
            break;
        }
        clen = (size_t)h[4] << 8 | h[5];
        plen = h[6];
        if (!read_full(fd, c, clen + plen)) {
            a->dropped = true;
            break;
        }
        if (h[1] == T_STDOUT)
            add(&out, c, clen);
        if (h[1] == T_END) {
            a->ended = true;
            break;
        }
    }
    add(&out, "", 1);
    if (out.len > 1) {
        sep = strstr((char *)out.p, "\r\n\r\n");
        a->body = strdup(sep ? sep + 4 : "");
        if (sep)
            *sep = '\0';
        a->head = strdup((char *)out.p);
        if (strncmp(a->head, "Status: ", 8) == 0)
            a->status = atoi(a->head + 8);
    }
    free(out.p);
}

/* One request: params (name, value pairs, NULL-terminated, values may be
 * NULL to skip) and stdin bytes.  raw_params, if set, replaces the encoded
 * params content. */
static void request(struct answer *a, const char *const *params, const char *body, size_t blen,
                    const struct bytes *raw_params)
{
    struct bytes p = { 0 }, out = { 0 };
    int fd = conn();

    for (size_t i = 0; params && params[i]; i += 2)
        if (params[i + 1])
            add_pair(&p, params[i], params[i + 1], strlen(params[i + 1]));
    add_begin(&out, 1, 1);
    if (raw_params)
        add_records(&out, T_PARAMS, 1, raw_params->p, raw_params->len, true);
    else
        add_records(&out, T_PARAMS, 1, p.p, p.len, true);
    add_records(&out, T_STDIN, 1, (const unsigned char *)body, blen, true);
    send_watching(fd, &out);
    read_answer(fd, a);
    close(fd);
    free(p.p);
    free(out.p);
}

static char auth[700];

static void get(struct answer *a, const char *uri)
{
    const char *const params[] = { "REQUEST_METHOD", "GET", "REQUEST_URI", uri,
                                   "SERVER_PROTOCOL", "HTTP/1.1", "HTTP_AUTHORIZATION", auth,
                                   NULL };
    request(a, params, "", 0, NULL);
}

/* POST a call body; clen is the CONTENT_LENGTH param (NULL: none). */
static void post(struct answer *a, const char *clen, const char *body, size_t blen)
{
    const char *const params[] = { "REQUEST_METHOD", "POST", "REQUEST_URI", "/api/v1/tools/call",
                                   "SERVER_PROTOCOL", "HTTP/1.1", "HTTP_AUTHORIZATION", auth,
                                   "CONTENT_TYPE", "application/json", "CONTENT_LENGTH", clen,
                                   NULL };
    request(a, params, body, blen, NULL);
}

static bool alive(void)
{
    return kill(pid, 0) == 0;
}

/* After every abuse: the responder is alive and serves health. */
static void still_serves(const char *after)
{
    struct answer a;

    get(&a, "/api/v1/health");
    ok(alive() && a.status == 200 && a.body && strstr(a.body, "\"status\":\"ok\""),
       "after %s: still serves GET /api/v1/health (status %d)", after, a.status);
    answer_free(&a);
}

static long rss_kb(void)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atol(line + 6);
    fclose(f);
    return kb;
}

static bool is_error(const struct answer *a, int status, const char *code)
{
    char want[64];

    snprintf(want, sizeof(want), "\"code\":\"%s\"", code);
    return a->ended && a->status == status && a->body && strstr(a->body, want) &&
           strstr(a->body, "\"error\":");
}

/* A head built from raw params content; expect 431 (or a drop when
 * allow_drop) and the responder unharmed. */
static void head_abuse(const char *what, const struct bytes *raw, bool allow_drop)
{
    struct answer a;

    request(&a, NULL, "", 0, raw);
    ok(is_error(&a, 431, "too_large") || (allow_drop && a.dropped && !a.ended),
       "%s: answered 431 too_large%s (status %d%s)", what, allow_drop ? " or dropped" : "",
       a.status, a.dropped ? ", dropped" : "");
    answer_free(&a);
    still_serves(what);
}

/* Raw bytes on a fresh connection; the responder drops it. */
static void protocol_abuse(const char *what, const struct bytes *wire, bool close_early)
{
    struct answer a;
    int fd = conn();

    send_watching(fd, wire);
    if (close_early) {
        close(fd);
        ok(true, "%s: sent and closed", what);
    } else {
        read_answer(fd, &a);
        ok(a.dropped && !a.ended && a.status == 0, "%s: the connection is dropped, no answer", what);
        answer_free(&a);
        close(fd);
    }
    still_serves(what);
}

static void test_heads(void)
{
    struct bytes b = { 0 };
    char name[32];
    char *v;

    /* CVE-2025-23016: lengths near 2^31 in the 4-byte form, whose sum
     * overflows libfcgi's int; data follows so an unchecked parser writes. */
    add_len(&b, 0x7FFFFFFE, true);
    add_len(&b, 0x7FFFFFFE, true);
    add(&b, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 32);
    head_abuse("name and value lengths 0x7FFFFFFE (CVE-2025-23016)", &b, false);
    b.len = 0;
    add_len(&b, 0x7FFFFFFF, true);
    add_len(&b, 1, true);
    add(&b, "AAAA", 4);
    head_abuse("name length 0x7FFFFFFF", &b, false);
    b.len = 0;
    add_len(&b, 4, false);
    add_len(&b, 0x7FFFFFFE, true);
    add(&b, "NAMEvvvvvvvv", 12);
    head_abuse("value length 0x7FFFFFFE (a 2 GiB allocation in libfcgi)", &b, false);
    b.len = 0;
    add_len(&b, MCPGW_FCGI_HEAD_BYTES_MAX + 1, true);
    add_len(&b, 0, false);
    head_abuse("a name one byte over the head cap", &b, false);
    b.len = 0;
    for (int i = 0; i < 10000; i++) {
        int k = snprintf(name, sizeof(name), "X_%d", i);
        add_pair(&b, name, "1", 1);
        (void)k;
    }
    head_abuse("10,000 pairs", &b, false);
    b.len = 0;
    v = malloc(5000);
    memset(v, 'v', 5000);
    for (int i = 0; i < 210; i++) {
        snprintf(name, sizeof(name), "HTTP_X_BIG_%d", i);
        add_pair(&b, name, v, 5000);
    }
    head_abuse("1 MiB of params in 210 pairs", &b, false);
    free(v);
    /* Just inside the caps: served. */
    b.len = 0;
    add_pair(&b, "REQUEST_METHOD", "GET", 3);
    add_pair(&b, "REQUEST_URI", "/api/v1/health", 14);
    v = malloc(40000);
    memset(v, 'c', 40000);
    add_pair(&b, "HTTP_COOKIE", v, 40000);
    free(v);
    for (int i = 0; i < MCPGW_FCGI_PARAMS_MAX - 3; i++) {
        snprintf(name, sizeof(name), "HTTP_X_%d", i);
        add_pair(&b, name, "1", 1);
    }
    {
        struct answer a;

        request(&a, NULL, "", 0, &b);
        ok(a.status == 200, "a 40 KB cookie and %d params in all are served (status %d)",
           MCPGW_FCGI_PARAMS_MAX, a.status);
        answer_free(&a);
    }
    free(b.p);
}

/* A valid POST head, then rec in the middle of its body.  libfcgi would
 * act on a management record there (its FCGI_GET_VALUES answer overflows a
 * stack buffer at four names); the guard under its reads drops the
 * connection first.  Either way: no answer to the body, a live responder. */
static void body_abuse(const char *what, const unsigned char *rec, size_t rlen)
{
    static const char body[] = "{\"serverId\":\"fake\",\"toolName\":\"echo\","
                               "\"params\":{\"message\":\"raw\"}}";
    char clen[16];
    const char *const params[] = { "REQUEST_METHOD", "POST", "REQUEST_URI", "/api/v1/tools/call",
                                   "SERVER_PROTOCOL", "HTTP/1.1", "HTTP_AUTHORIZATION", auth,
                                   "CONTENT_TYPE", "application/json", "CONTENT_LENGTH", clen,
                                   NULL };
    struct bytes p = { 0 }, w = { 0 };
    struct answer a;
    int fd = conn();

    snprintf(clen, sizeof(clen), "%zu", sizeof(body) - 1);
    for (size_t i = 0; params[i]; i += 2)
        add_pair(&p, params[i], params[i + 1], strlen(params[i + 1]));
    add_begin(&w, 1, 1);
    add_records(&w, T_PARAMS, 1, p.p, p.len, true);
    add_records(&w, T_STDIN, 1, (const unsigned char *)body, 10, false);
    add(&w, rec, rlen);
    add_records(&w, T_STDIN, 1, (const unsigned char *)body + 10, sizeof(body) - 11, true);
    send_watching(fd, &w);
    read_answer(fd, &a);
    ok(alive() && a.status != 200, "%s: not served (status %d%s)", what, a.status,
       a.dropped ? ", dropped" : "");
    answer_free(&a);
    close(fd);
    free(p.p);
    free(w.p);
    still_serves(what);
}

static void test_body_records(void)
{
    struct bytes r = { 0 }, c = { 0 };

    /* FCGI_GET_VALUES (type 9, request id 0) naming FCGI_MPXS_CONNS six times. */
    for (int i = 0; i < 6; i++)
        add_pair(&c, "FCGI_MPXS_CONNS", "", 0);
    add_records(&r, 9, 0, c.p, c.len, false);
    body_abuse("FCGI_GET_VALUES with six names in the body", r.p, r.len);
    r.len = 0;
    add_records(&r, 11, 0, (const unsigned char *)"12345678", 8, false);
    body_abuse("an unknown management record in the body", r.p, r.len);
    r.len = 0;
    add_begin(&r, 2, 1);
    body_abuse("a second request's FCGI_BEGIN_REQUEST in the body", r.p, r.len);
    r.len = 0;
    add_records(&r, T_PARAMS, 1, (const unsigned char *)"\x01\x01" "ab", 4, false);
    body_abuse("FCGI_PARAMS again in the body", r.p, r.len);
    free(r.p);
    free(c.p);
}

static void test_protocol(void)
{
    struct bytes w = { 0 }, p = { 0 };

    add_begin(&w, 1, 1);
    add_pair(&p, "REQUEST_METHOD", "GET", 3);
    add_len(&p, 200, true);     /* a pair cut short by the end of the stream */
    add_len(&p, 10, true);
    add(&p, "abc", 3);
    add_records(&w, T_PARAMS, 1, p.p, p.len, true);
    protocol_abuse("a PARAMS stream that ends inside a pair", &w, false);
    w.len = 0;
    add_begin(&w, 1, 2);        /* FCGI_AUTHORIZER */
    add_records(&w, T_PARAMS, 1, p.p, 0, true);
    protocol_abuse("an authorizer request", &w, false);
    w.len = 0;
    add_begin(&w, 1, 1);
    w.p[0] = 9;                 /* version */
    protocol_abuse("a record with version 9", &w, false);
    w.len = 0;
    add_begin(&w, 1, 1);
    add_records(&w, T_STDIN, 1, (const unsigned char *)"x", 1, true);
    protocol_abuse("FCGI_STDIN before the params end", &w, false);
    w.len = 0;
    add_begin(&w, 1, 1);
    add_begin(&w, 2, 1);
    protocol_abuse("a second request multiplexed on the connection", &w, false);
    w.len = 0;
    add_begin(&w, 1, 1);
    add(&w, "\x01\x04\x00\x01\x00\x40", 6);    /* a record header cut short */
    protocol_abuse("a head cut short by a close", &w, true);
    free(w.p);
    free(p.p);
}

static void test_content_length(void)
{
    static const char call[] = "{\"serverId\":\"fake\",\"toolName\":\"echo\","
                               "\"params\":{\"message\":\"raw\"}}";
    char clen[32], *big;
    struct answer a;

    snprintf(clen, sizeof(clen), "%zu", sizeof(call) - 1);
    post(&a, clen, call, sizeof(call) - 1);
    ok(a.status == 200 && a.body && strstr(a.body, "Echo: raw"), "a matching CONTENT_LENGTH: "
       "served (status %d)", a.status);
    answer_free(&a);
    post(&a, NULL, call, sizeof(call) - 1);
    ok(a.status == 200 && a.body && strstr(a.body, "Echo: raw"),
       "no CONTENT_LENGTH: the body is FCGI_STDIN, served (status %d)", a.status);
    answer_free(&a);
    big = malloc(70000);
    memset(big, ' ', 70000);
    big[0] = '{';
    big[69999] = '}';
    post(&a, NULL, big, 70000);
    ok(is_error(&a, 413, "too_large"), "no CONTENT_LENGTH and a body over the cap: 413 "
       "(status %d)", a.status);
    answer_free(&a);
    still_serves("an unannounced body over the cap");
    post(&a, "-5", call, sizeof(call) - 1);
    ok(is_error(&a, 400, "bad_request"), "CONTENT_LENGTH -5: 400 (status %d)", a.status);
    answer_free(&a);
    post(&a, "12abc", call, sizeof(call) - 1);
    ok(is_error(&a, 400, "bad_request"), "CONTENT_LENGTH 12abc: 400 (status %d)", a.status);
    answer_free(&a);
    post(&a, "99999999999999999999", call, sizeof(call) - 1);
    ok(is_error(&a, 400, "bad_request"), "CONTENT_LENGTH of 20 digits: 400 (status %d)",
       a.status);
    answer_free(&a);
    post(&a, "10000000", call, sizeof(call) - 1);
    ok(is_error(&a, 413, "too_large"), "CONTENT_LENGTH over the cap: 413 before reading "
       "(status %d)", a.status);
    answer_free(&a);
    snprintf(clen, sizeof(clen), "%zu", sizeof(call) - 1 + 100);
    post(&a, clen, call, sizeof(call) - 1);
    ok(is_error(&a, 400, "bad_request"), "CONTENT_LENGTH above the body: 400 (status %d)",
       a.status);
    answer_free(&a);
    snprintf(clen, sizeof(clen), "%zu", sizeof(call) - 1);
    {
        char longer[256];
        int k = snprintf(longer, sizeof(longer), "%s   ", call);

        post(&a, clen, longer, (size_t)k);
        ok(a.status == 200 && a.body && strstr(a.body, "Echo: raw"), "bytes after "
           "CONTENT_LENGTH are not the body (RFC 3875 4.2): served (status %d)", a.status);
        answer_free(&a);
        post(&a, "10", call, sizeof(call) - 1);
        ok(is_error(&a, 400, "bad_request"), "CONTENT_LENGTH below the body: 400 (status %d)",
           a.status);
        answer_free(&a);
    }
    free(big);
    still_serves("CONTENT_LENGTH abuse");
}

static void test_paths(void)
{
    static const char *const bad[] = {
        "/api/v1/../v1/health", "/api/v1/%2e%2e/v1/health", "/api/v1/%2E%2e/health",
        "/api/v1/health%00", "/api/v1/health%00.json", "//api/v1/health", "/api/v1//health",
        "/api/v1/./health", "/api/v1/servers/%2f/tools", "/api/v1/health%", "/api/v1/health%zz",
        NULL };
    struct answer a;

    for (size_t i = 0; bad[i]; i++) {
        get(&a, bad[i]);
        ok(is_error(&a, 400, "bad_request"), "path %s: 400 (status %d)", bad[i], a.status);
        answer_free(&a);
    }
    get(&a, "/mcpgw/api/v1/health/");
    ok(a.status == 200, "a mount prefix and a trailing slash are fine (status %d)", a.status);
    answer_free(&a);
    still_serves("bad paths");
}

/* CR, LF and NUL in names that end up in an error: the error is in the
 * JSON body, escaped; no header carries them. */
static void test_splitting(void)
{
    static const char *const bodies[] = {
        "{\"serverId\":\"fake\",\"toolName\":\"x\\r\\nSet-Cookie: evil=1\",\"params\":{}}",
        "{\"serverId\":\"fa\\r\\nke\",\"toolName\":\"echo\"}",
        "{\"serverId\":\"fake\",\"toolName\":\"a\\u0000b\"}",
        NULL };
    struct answer a;
    char clen[32];

    for (size_t i = 0; bodies[i]; i++) {
        snprintf(clen, sizeof(clen), "%zu", strlen(bodies[i]));
        post(&a, clen, bodies[i], strlen(bodies[i]));
        ok(a.ended && a.status >= 400 && a.status < 500 && a.head && !strstr(a.head, "evil") &&
           !strstr(a.head, "Set-Cookie") && a.body && !strchr(a.body, '\r') &&
           !strchr(a.body, '\n'),
           "CR/LF/NUL in a name stay escaped in the body (status %d)", a.status);
        answer_free(&a);
    }
    get(&a, "/api/v1/servers/a%0d%0aSet-Cookie:%20evil=1/tools");
    ok(a.ended && a.status == 404 && a.head && !strstr(a.head, "evil") && a.body &&
       !strchr(a.body, '\r'), "CR/LF in a path reach no header (status %d)", a.status);
    answer_free(&a);
}

static void test_json(void)
{
    static const char *const bad[] = {
        "{\"serverId\":\"fake\",\"toolName\":\"echo\",\"params\":{\"message\":\"\xc3\x28\"}}",
        "{\"serverId\":\"fake\",\"toolName\":\"echo\",\"params\":{\"message\":\"\xed\xa0\x80\"}}",
        "{\"serverId\":\"fake\",\"toolName\":\"echo\",\"params\":{\"message\":\"\\ud800\"}}",
        "{\"serverId\":\"fake\",\"toolName\":\"echo\",\"params\":{\"message\":\"\xc0\xaf\"}}",
        "{\"serverId\":\"fake\",\"toolName\":\"echo\",\"params\":{\"message\":\"a\tb\"}}",
        "{\"serverId\":\"fake\",\"toolName\":\"echo\"}{}",
        "{\"serverId\":\"fake\",\"toolName\":\"echo\"} trailing",
        NULL };
    struct answer a;
    char clen[32], *deep;
    size_t n = 60000;

    for (size_t i = 0; bad[i]; i++) {
        snprintf(clen, sizeof(clen), "%zu", strlen(bad[i]));
        post(&a, clen, bad[i], strlen(bad[i]));
        ok(is_error(&a, 400, "bad_request"), "JSON body %zu (invalid UTF-8, a surrogate, an "
           "overlong form, a raw tab, trailing data): 400 (status %d)", i, a.status);
        answer_free(&a);
    }
    deep = malloc(n + 64);
    n = (size_t)snprintf(deep, 64, "{\"serverId\":\"fake\",\"toolName\":\"echo\",\"params\":");
    memset(deep + n, '[', 60000 - n);
    snprintf(clen, sizeof(clen), "%d", 60000);
    post(&a, clen, deep, 60000);
    ok(is_error(&a, 400, "bad_request"), "60,000-deep nesting: 400 (status %d)", a.status);
    answer_free(&a);
    free(deep);
    still_serves("bad JSON");
}

int main(int argc, char **argv)
{
    long before, after;

    if (argc != 4) {
        fprintf(stderr, "usage: fcgi_raw SOCKET PID TOKEN\n");
        return 64;
    }
    signal(SIGPIPE, SIG_IGN);
    sock_path = argv[1];
    pid = atoi(argv[2]);
    token = argv[3];
    snprintf(auth, sizeof(auth), "Bearer %s", token);
    still_serves("start");
    before = rss_kb();
    test_heads();
    test_protocol();
    test_body_records();
    test_content_length();
    test_paths();
    test_splitting();
    test_json();
    /* A second round: memory that grows per abuse would show twice. */
    test_heads();
    after = rss_kb();
    printf("# VmRSS of %d: %ld kB before, %ld kB after the abuses\n", pid, before, after);
    ok(before > 0 && after > 0 && after < before + 64 * 1024,
       "RSS stays bounded (%ld kB -> %ld kB)", before, after);
    printf("1..%d\n", n_tests);
    return n_failed ? 1 : 0;
}
