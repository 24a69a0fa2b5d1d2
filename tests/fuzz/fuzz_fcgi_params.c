/* fuzz_fcgi_params.c - what a web server sends on a FastCGI connection,
 * as mcpgw-fcgi sees it.
 *
 * The bytes go where mcpgw-fcgi's worker would find them: on a connection
 * (a socketpair) that fcgi_head_ok() peeks at, that libfcgi then reads
 * (FCGX_Accept_r on the kept connection) only if the head check let it,
 * and that fcgi_serve() answers through the routes of a gateway
 * (gateway.h; requireAuth false, so a POST reaches the body) before
 * fcgi_finish() ends the request.  The first byte chooses the form of the
 * rest: raw records (odd: libfcgi's own input, lengths that lie
 * included), or a description the harness turns into records (even):
 *
 *   byte 1   the most content bytes per record (1..256)
 *   byte 2   bit 0: four-byte lengths everywhere; bit 1: a management
 *            record (FCGI_GET_VALUES) before the head; bit 2: padding;
 *            bit 3: drop the empty FCGI_STDIN record that ends the body
 *   rest     NAME=VALUE lines (CGI variables), an empty line, the body
 *
 * Checked, for the check alone (fcgi/params.c): its verdict for every
 * prefix is "more" or the verdict for the whole, and stays once reached;
 * an accepted head is within the pair and byte limits and is accepted
 * alone; the pairs it counted are the pairs an independent decoder finds.
 * And on the connection: fcgi_head_ok() agrees with the check; a head
 * refused as too large after its FCGI_BEGIN_REQUEST is answered with one
 * well-formed 431 and nothing else is written; any other refused head gets
 * no answer at all; an accepted head is read by libfcgi as one request
 * with exactly the params counted, and the answer is FastCGI records for
 * that request only, ending with FCGI_END_REQUEST, whose FCGI_STDOUT is a
 * CGI response: a Status line, headers without CR, LF or NUL, a blank
 * line, and a body of its Content-Length (strict JSON when it says so).
 */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcgiapp.h>
#include <json-c/json.h>

#include "adapter.h"
#include "buf.h"
#include "gateway.h"
#include "guard.h"
#include "limits.h"
#include "params.h"

#define FCGI_T_GET_VALUES_RESULT 10
#define FCGI_T_UNKNOWN_TYPE 11

/* ---- an independent decoder of the head ---------------------------------------- */

/* Pairs in the params stream of an accepted head, decoded the plain way
 * (assembling the stream first); -1 if the stream does not decode. */
static long count_pairs(const unsigned char *p, size_t n, unsigned id)
{
    struct mcpgw_buf s;
    size_t off = 0, i = 0;
    long pairs = 0;

    mcpgw_buf_init(&s, 2u * 1024 * 1024);
    while (off + 8 <= n) {
        unsigned rid = (unsigned)p[off + 2] << 8 | p[off + 3];
        size_t clen = (size_t)p[off + 4] << 8 | p[off + 5], plen = p[off + 6];

        assert(off + 8 + clen + plen <= n);
        if (rid == id && p[off + 1] == FCGI_T_PARAMS) {
            if (clen == 0)
                break;
            assert(mcpgw_buf_add(&s, p + off + 8, clen) == 0);
        }
        off += 8 + clen + plen;
    }
    while (i < s.len) {
        uint64_t len[2];

        for (int k = 0; k < 2; k++) {
            const unsigned char *b = (const unsigned char *)s.ptr + i;

            if (i >= s.len)
                goto bad;
            if (b[0] < 0x80) {
                len[k] = b[0];
                i += 1;
            } else {
                if (s.len - i < 4)
                    goto bad;
                len[k] = ((uint64_t)(b[0] & 0x7f) << 24) | (uint64_t)b[1] << 16 |
                         (uint64_t)b[2] << 8 | b[3];
                i += 4;
            }
        }
        if (len[0] + len[1] > s.len - i)
            goto bad;
        i += (size_t)(len[0] + len[1]);
        pairs++;
    }
    mcpgw_buf_release(&s);
    return pairs;
bad:
    mcpgw_buf_release(&s);
    return -1;
}

static void check_pure(const unsigned char *p, size_t n)
{
    struct fcgi_head_info info, again;
    enum fcgi_head whole = fcgi_params_check(p, n, &info), prev = FCGI_HEAD_MORE;
    size_t step = n <= 512 ? 1 : n / 256;

    /* Prefixes: what arrived so far. */
    for (size_t k = 0; k <= n; k += step) {
        enum fcgi_head h = fcgi_params_check(p, k, NULL);

        assert(h == FCGI_HEAD_MORE || h == whole);
        assert(prev == FCGI_HEAD_MORE || h == prev);
        prev = h;
    }
    switch (whole) {
    case FCGI_HEAD_OK:
        assert(info.req_id != 0);
        assert(info.pairs <= MCPGW_FCGI_PARAMS_MAX && info.bytes <= MCPGW_FCGI_HEAD_BYTES_MAX);
        assert(info.end >= 2 * FCGI_HEADER_LEN + 8 && info.end <= n);
        assert(fcgi_params_check(p, info.end, &again) == FCGI_HEAD_OK);
        assert(again.pairs == info.pairs && again.bytes == info.bytes && again.end == info.end);
        assert(fcgi_params_check(p, info.end - 1, NULL) == FCGI_HEAD_MORE);
        assert(count_pairs(p, info.end, info.req_id) == (long)info.pairs);
        break;
    case FCGI_HEAD_TOO_LARGE:
        assert(info.req_id != 0);
        break;
    default:
        break;
    }
}

/* ---- records from a description -------------------------------------------------- */

struct out {
    struct mcpgw_buf b;
    size_t chunk;
    bool pad;
};

static void record(struct out *o, unsigned type, unsigned id, const void *c, size_t n)
{
    static const unsigned char zeros[8];
    size_t plen = o->pad ? (8 - n % 8) % 8 : 0;
    unsigned char h[8] = { 1, (unsigned char)type, (unsigned char)(id >> 8), (unsigned char)id,
                           (unsigned char)(n >> 8), (unsigned char)n, (unsigned char)plen, 0 };

    mcpgw_buf_add(&o->b, h, 8);
    mcpgw_buf_add(&o->b, c, n);
    mcpgw_buf_add(&o->b, zeros, plen);
}

static void stream(struct out *o, unsigned type, unsigned id, const char *p, size_t n, bool end)
{
    for (size_t off = 0; off < n; off += o->chunk)
        record(o, type, id, p + off, n - off < o->chunk ? n - off : o->chunk);
    if (end)
        record(o, type, id, NULL, 0);
}

static void add_len(struct mcpgw_buf *s, size_t n, bool four)
{
    unsigned char l[4] = { (unsigned char)(n >> 24 | 0x80), (unsigned char)(n >> 16),
                           (unsigned char)(n >> 8), (unsigned char)n };

    if (n < 0x80 && !four)
        mcpgw_buf_add(s, l + 3, 1);
    else
        mcpgw_buf_add(s, l, 4);
}

static void describe(const uint8_t *data, size_t size, struct mcpgw_buf *wire)
{
    struct out o = { .chunk = size > 1 ? (size_t)data[1] + 1 : 64,
                     .pad = size > 2 && (data[2] & 4) };
    unsigned flags = size > 2 ? data[2] : 0;
    const char *p = size > 3 ? (const char *)data + 3 : "", *end = p + (size > 3 ? size - 3 : 0);
    static const unsigned char begin[8] = { 0, FCGI_ROLE_RESPONDER, 0 };
    static const char get_values[] = "\x0e\x00" "FCGI_MAX_CONNS";
    struct mcpgw_buf params;

    mcpgw_buf_init(&o.b, 1024u * 1024);
    mcpgw_buf_init(&params, 1024u * 1024);
    if (flags & 2)
        record(&o, FCGI_T_GET_VALUES, 0, get_values, sizeof(get_values) - 1);
    record(&o, FCGI_T_BEGIN_REQUEST, 1, begin, 8);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *eq;
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);

        if (len == 0) {
            p++;
            break;
        }
        eq = memchr(p, '=', len);
        add_len(&params, eq ? (size_t)(eq - p) : len, flags & 1);
        add_len(&params, eq ? len - (size_t)(eq - p) - 1 : 0, flags & 1);
        mcpgw_buf_add(&params, p, eq ? (size_t)(eq - p) : len);
        if (eq)
            mcpgw_buf_add(&params, eq + 1, len - (size_t)(eq - p) - 1);
        p += len + (nl ? 1 : 0);
    }
    stream(&o, FCGI_T_PARAMS, 1, params.ptr ? params.ptr : "", params.len, true);
    stream(&o, FCGI_T_STDIN, 1, p, p < end ? (size_t)(end - p) : 0, !(flags & 8));
    *wire = o.b;
    mcpgw_buf_release(&params);
}

/* ---- the answer ------------------------------------------------------------------ */

/* A CGI response: "Status: NNN reason", headers, a blank line, the body.
 * Returns the status. */
static int check_cgi(const char *p, size_t n)
{
    const char *end = p + n, *line = p;
    long long clen = -1;
    bool json = false;
    int status = 0;

    for (;;) {
        const char *crlf = memmem(line, (size_t)(end - line), "\r\n", 2);
        size_t len;

        assert(crlf);
        len = (size_t)(crlf - line);
        if (len == 0) {
            line = crlf + 2;
            break;
        }
        assert(!memchr(line, '\r', len) && !memchr(line, '\n', len) && !memchr(line, '\0', len));
        if (!status) {
            assert(len > 12 && memcmp(line, "Status: ", 8) == 0);
            status = atoi(line + 8);
            assert(status >= 100 && status <= 599 && line[11] == ' ');
        } else {
            const char *colon = memchr(line, ':', len);

            assert(colon && colon > line && colon[1] == ' ');
            for (const char *c = line; c < colon; c++)
                assert(isalnum((unsigned char)*c) || *c == '-');
            for (const char *c = colon + 2; c < crlf; c++)
                assert((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
            if ((size_t)(colon - line) == 14 && strncasecmp(line, "Content-Length", 14) == 0)
                clen = strtoll(colon + 2, NULL, 10);
            if ((size_t)(colon - line) == 12 && strncasecmp(line, "Content-Type", 12) == 0)
                json = strncmp(colon + 2, "application/json", 16) == 0;
        }
        line = crlf + 2;
    }
    assert(status);
    if (clen >= 0)
        assert(clen == (long long)(end - line));
    if (json) {
        json_object *o = fuzz_strict_parse(line, (size_t)(end - line));

        assert(o);
        json_object_put(o);
    }
    return status;
}

/* The records the client got: for request id only (management answers on
 * id 0 aside), STDOUT then END_REQUEST last.  Returns the CGI status, or 0
 * when nothing was written. */
static int check_answer(const unsigned char *p, size_t n, unsigned id)
{
    struct mcpgw_buf out;
    size_t off = 0;
    bool ended = false, any = false;
    int status = 0;

    mcpgw_buf_init(&out, 64u * 1024 * 1024);
    while (off < n) {
        unsigned type, rid;
        size_t clen, plen;

        assert(n - off >= 8);
        assert(p[off] == 1);
        type = p[off + 1];
        rid = (unsigned)p[off + 2] << 8 | p[off + 3];
        clen = (size_t)p[off + 4] << 8 | p[off + 5];
        plen = p[off + 6];
        assert(n - off - 8 >= clen + plen);
        if (rid == 0) {
            assert(type == FCGI_T_GET_VALUES_RESULT || type == FCGI_T_UNKNOWN_TYPE);
        } else if (type == FCGI_T_END_REQUEST && clen == 8 && p[off + 8 + 4] == 1) {
            /* FCGI_CANT_MPX_CONN: libfcgi's answer to a FCGI_BEGIN_REQUEST
             * that came while the request was being read (in its body). */
        } else {
            assert(rid == id && !ended);
            any = true;
            if (type == FCGI_T_END_REQUEST) {
                assert(clen == 8);
                ended = true;
            } else {
                assert(type == FCGI_T_STDOUT || type == FCGI_T_STDERR);
                if (type == FCGI_T_STDOUT)
                    assert(mcpgw_buf_add(&out, p + off + 8, clen) == 0);
            }
        }
        off += 8 + clen + plen;
    }
    if (any) {
        assert(ended);
        status = check_cgi(out.ptr ? out.ptr : "", out.len);
    }
    mcpgw_buf_release(&out);
    return status;
}

/* ---- the connection -------------------------------------------------------------- */

static void read_all(int fd, struct mcpgw_buf *b)
{
    char buf[65536];

    for (;;) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ssize_t n;

        if (poll(&p, 1, 2000) <= 0)
            return;
        n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0)
            return;
        assert(mcpgw_buf_add(b, buf, (size_t)n) == 0);
    }
}

/* Whether a record that the guard under libfcgi's reads refuses (any but
 * FCGI_STDIN and FCGI_ABORT_REQUEST of request id, version 1) follows the
 * head (the first end bytes) before the request's input ends. */
static bool foreign_after(const unsigned char *p, size_t n, size_t end, unsigned id)
{
    for (size_t off = end; off + 8 <= n;) {
        unsigned type = p[off + 1], rid = (unsigned)p[off + 2] << 8 | p[off + 3];
        size_t clen = (size_t)p[off + 4] << 8 | p[off + 5];

        if (p[off] != 1 || rid != id || (type != FCGI_T_STDIN && type != FCGI_T_ABORT_REQUEST))
            return true;
        if (type == FCGI_T_STDIN && clen == 0)
            return false;
        off += 8 + clen + p[off + 6];
    }
    return false;
}

static void serve(const unsigned char *p, size_t n)
{
    static int stop_fd = -1;
    struct fuzz_gateway *g = fuzz_gateway();
    struct fcgi_head_info info;
    enum fcgi_head want;
    FCGX_Request rq;
    struct mcpgw_buf answer;
    int sv[2], fd;
    size_t off = 0;
    bool ok, foreign;
    int status;

    if (stop_fd < 0) {
        assert(fcgi_guard_init() == 0);
        assert(FCGX_Init() == 0);
        stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);     /* never signalled */
        assert(stop_fd >= 0);
    }
    assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    fd = sv[1];
    /* All of it is sent before the responder looks, then the write side is
     * shut: nothing here waits for bytes that will not come. */
    while (off < n) {
        ssize_t w = send(fd, p + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (w <= 0)
            break;
        off += (size_t)w;
    }
    if (off < n) {      /* more than the socket holds: the pure check covers it */
        close(sv[0]);
        close(sv[1]);
        return;
    }
    shutdown(fd, SHUT_WR);
    want = fcgi_params_check(p, n < MCPGW_FCGI_HEAD_BYTES_MAX ? n : MCPGW_FCGI_HEAD_BYTES_MAX,
                             &info);
    if (want == FCGI_HEAD_MORE && n >= MCPGW_FCGI_HEAD_BYTES_MAX)
        want = FCGI_HEAD_TOO_LARGE;
    mcpgw_buf_init(&answer, 64u * 1024 * 1024);
    ok = fcgi_head_ok(sv[0], stop_fd);
    assert(ok == (want == FCGI_HEAD_OK));
    if (!ok) {
        close(sv[0]);
        read_all(fd, &answer);
        status = check_answer((const unsigned char *)answer.ptr, answer.len, info.req_id);
        if (want == FCGI_HEAD_TOO_LARGE && info.req_id)
            assert(status == 431);
        else
            assert(answer.len == 0);
        goto out;
    }
    /* A management record after the head (in the body) would be answered
     * by libfcgi while the route reads FCGI_STDIN - four FCGI_GET_VALUES
     * names smash its stack, any other type leaks.  The guard under
     * libfcgi's reads (fcgi/guard.h) fails the read instead: the request
     * may end unanswered, and nothing may crash or leak. */
    foreign = foreign_after(p, n, info.end, info.req_id);
    assert(FCGX_InitRequest(&rq, -1, 0) == 0);
    rq.ipcFd = sv[0];
    rq.keepConnection = 1;
    assert(FCGX_Accept_r(&rq) == 0);
    {
        size_t nenv = 0;

        /* libfcgi adds FCGI_ROLE=RESPONDER to what was sent. */
        for (char **e = rq.envp; e && *e; e++)
            nenv++;
        if (nenv != info.pairs + 1) {
            fprintf(stderr, "libfcgi read %zu params, the check counted %zu\n", nenv, info.pairs);
            abort();
        }
    }
    (void)fcgi_is_stream(&rq);
    fcgi_serve(g->rt_open, &rq);
    if (fcgi_finish(&rq)) {
        close(rq.ipcFd);
        rq.ipcFd = -1;
    }
    read_all(fd, &answer);
    status = check_answer((const unsigned char *)answer.ptr, answer.len, info.req_id);
    assert(status >= 200 || foreign);
out:
    close(fd);
    mcpgw_buf_release(&answer);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mcpgw_buf wire = { 0 };
    const unsigned char *p;
    size_t n;

    if (size < 1 || size > 256 * 1024)
        return 0;
    if (data[0] & 1) {
        p = data + 1;
        n = size - 1;
    } else {
        describe(data, size, &wire);
        p = (const unsigned char *)(wire.ptr ? wire.ptr : "");
        n = wire.len;
    }
    check_pure(p, n);
    serve(p, n);
    mcpgw_buf_release(&wire);
    return 0;
}
