/* adapter.c - FastCGI params and streams behind the routes' interfaces. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "adapter.h"
#include "err.h"
#include "guard.h"
#include "limits.h"
#include "log.h"
#include "params.h"
#include "theap.h"

static const char *get_param(void *ud, const char *name)
{
    FCGX_Request *rq = ud;

    return FCGX_GetParam(name, rq->envp);
}

/* FastCGI frames the body (FCGI_STDIN ends with an empty record), so a
 * body shorter than its CONTENT_LENGTH is seen here and refused: serving a
 * prefix would act on something the client did not send.  Bytes after
 * CONTENT_LENGTH are not the body (RFC 3875 section 4.2 allows a server to
 * send extension data there) and are never read as part of it.  Without
 * CONTENT_LENGTH (a chunked upload through mod_proxy_fcgi) the body is
 * what FCGI_STDIN holds. */
static ssize_t read_body(void *ud, char *buf, size_t len)
{
    struct fcgi_adapter *a = ud;
    long long want = a->req.content_length;
    int n;

    if (want >= 0) {
        if (a->body_read >= want)
            return 0;
        if ((unsigned long long)(want - a->body_read) < len)
            len = (size_t)(want - a->body_read);
    }
    n = FCGX_GetStr(buf, len > 65536 ? 65536 : (int)len, a->rq->in);
    if (n < 0 || FCGX_GetError(a->rq->in) != 0)
        return -1;
    a->body_read += n;
    if (n == 0 && want >= 0 && a->body_read < want) {
        mcpgw_log_info("fcgi", "refused a body of %lld bytes announced as %lld", a->body_read,
                       want);
        return -1;
    }
    return n;
}

static int w_begin(void *ud, int status, const struct mcpgw_http_header *h, size_t n)
{
    struct fcgi_adapter *a = ud;
    int rc;

    mcpgw_buf_reset(&a->head);
    rc = mcpgw_http_cgi_head(&a->head, status, h, n);
    if (rc < 0) {
        mcpgw_log_error("fcgi", "refusing to send a malformed response head: %s",
                        mcpgw_strerror(rc));
        return rc;
    }
    a->began = true;
    if (FCGX_PutStr(a->head.ptr, (int)a->head.len, a->rq->out) != (int)a->head.len)
        return -EPIPE;
    return 0;
}

static int w_write(void *ud, const char *p, size_t n)
{
    struct fcgi_adapter *a = ud;

    while (n) {
        int chunk = n > (1u << 30) ? 1 << 30 : (int)n;

        if (FCGX_PutStr(p, chunk, a->rq->out) != chunk)
            return -EPIPE;
        p += chunk;
        n -= (size_t)chunk;
    }
    return 0;
}

static int w_flush(void *ud)
{
    struct fcgi_adapter *a = ud;

    return FCGX_FFlush(a->rq->out) < 0 || FCGX_GetError(a->rq->out) ? -EPIPE : 0;
}

static int adapter_init(struct fcgi_adapter *a, FCGX_Request *rq)
{
    memset(a, 0, sizeof(*a));
    a->rq = rq;
    a->cgi.get = get_param;
    a->cgi.ud = rq;
    mcpgw_buf_init(&a->head, 16384);
    a->w = (struct mcpgw_http_writer){ w_begin, w_write, w_flush, a, rq->ipcFd, POLLRDHUP };
    return mcpgw_http_cgi_request(&a->cgi, &a->req);
}

bool fcgi_is_stream(FCGX_Request *rq)
{
    struct fcgi_adapter a;
    bool s = adapter_init(&a, rq) == 0 && mcpgw_routes_is_stream(&a.req);

    mcpgw_buf_release(&a.head);
    return s;
}

void fcgi_serve(mcpgw_routes *rt, FCGX_Request *rq)
{
    struct fcgi_adapter a;
    int rc = adapter_init(&a, rq);

    if (rc < 0) {
        static const char body[] = "{\"error\":\"malformed request (CONTENT_LENGTH or path)\","
                                   "\"code\":\"bad_request\"}";
        mcpgw_http_respond(&a.w, 400, "application/json", NULL, 0, body, sizeof(body) - 1);
    } else {
        a.req.read_body = read_body;
        a.req.body_ud = &a;
        if (mcpgw_routes_handle(rt, &a.req, &a.w) < 0)
            mcpgw_log_debug("fcgi", "client went away during %s %s",
                            a.req.method ? a.req.method : "-", a.req.path);
    }
    mcpgw_buf_release(&a.head);
}

/* ---- the request head, before libfcgi reads it ------------------------- */

/* A blocked look at the socket wakes this often to see stop_fd. */
#define HEAD_SLICE_MS 200

static void put_header(unsigned char *h, unsigned type, unsigned id, size_t clen)
{
    h[0] = FCGI_VERSION_1;
    h[1] = (unsigned char)type;
    h[2] = (unsigned char)(id >> 8);
    h[3] = (unsigned char)id;
    h[4] = (unsigned char)(clen >> 8);
    h[5] = (unsigned char)clen;
    h[6] = h[7] = 0;
}

/* Answer request id 431 ourselves (libfcgi has not seen it), end it, and
 * half-close; what the peer still sends is read and dropped for a moment
 * so that a TCP close does not reset the answer away. */
static void refuse_head(int fd, unsigned id)
{
    static const char body[] = "{\"error\":\"the request head (headers and CGI variables) is "
                               "too large\",\"code\":\"too_large\"}";
    unsigned char out[1024], sink[16384];
    int k = snprintf((char *)out + 8, sizeof(out) - 40,
                     "Status: 431 %s\r\nContent-Type: application/json\r\n"
                     "Cache-Control: no-store\r\nContent-Length: %zu\r\n\r\n%s",
                     mcpgw_http_reason(431), sizeof(body) - 1, body);
    size_t len, drained = 0;
    struct timeval tv = { 0, 100000 };

    if (k < 0 || (size_t)k >= sizeof(out) - 40)
        return;
    put_header(out, FCGI_T_STDOUT, id, (size_t)k);
    len = 8 + (size_t)k;
    put_header(out + len, FCGI_T_STDOUT, id, 0);
    len += 8;
    put_header(out + len, FCGI_T_END_REQUEST, id, 8);
    len += 8;
    memset(out + len, 0, 8);    /* appStatus 0, FCGI_REQUEST_COMPLETE */
    len += 8;
    if (send(fd, out, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len)
        return;
    shutdown(fd, SHUT_WR);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (drained < 4 * sizeof(sink)) {
        ssize_t n = recv(fd, sink, sizeof(sink), 0);

        if (n <= 0)
            break;
        drained += (size_t)n;
    }
}

static bool readable(int fd, short ev)
{
    struct pollfd p = { .fd = fd, .events = ev };

    return poll(&p, 1, 0) > 0;
}

bool fcgi_head_ok(int fd, int stop_fd)
{
    unsigned char *buf = malloc(MCPGW_FCGI_HEAD_BYTES_MAX);
    int zero = 0, off = -1;
    struct timeval slice = { 0, HEAD_SLICE_MS * 1000 }, none = { 0, 0 };
    int64_t deadline = mcpgw__mono_ms() + MCPGW_FCGI_HEAD_TIMEOUT;
    enum fcgi_head h = FCGI_HEAD_MORE;
    const char *why = "ended before it was complete";
    struct fcgi_head_info info = { 0 };
    size_t have = 0;
    bool peek_off;

    if (!buf)
        return false;
    /* With a peek offset each look returns only new bytes and waits for
     * them (unix sockets; TCP since Linux 6.9).  Without, a look for one
     * byte more than we have waits (MSG_WAITALL, which TCP honours when
     * peeking). */
    peek_off = setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) == 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &slice, sizeof(slice));
    while (h == FCGI_HEAD_MORE) {
        ssize_t n;

        if (have == MCPGW_FCGI_HEAD_BYTES_MAX) {
            h = fcgi_params_check(buf, have, &info) == FCGI_HEAD_MORE ? FCGI_HEAD_TOO_LARGE : h;
            break;
        }
        if (peek_off) {
            n = recv(fd, buf + have, MCPGW_FCGI_HEAD_BYTES_MAX - have, MSG_PEEK);
            if (n == 0)
                break;      /* the peer closed or half-closed */
        } else {
            n = recv(fd, buf, have + 1, MSG_PEEK | MSG_WAITALL);
            if (n == 0)
                break;
            if (n > (ssize_t)have)
                n = recv(fd, buf, MCPGW_FCGI_HEAD_BYTES_MAX, MSG_PEEK | MSG_DONTWAIT);
            if (n >= 0 && (size_t)n <= have) {
                /* Timed out with nothing new, or the peer is gone. */
                if (readable(fd, POLLRDHUP))
                    break;
                n = -1;
                errno = EAGAIN;
            } else if (n > 0) {
                n -= (ssize_t)have;
            }
        }
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                why = strerror(errno);
                break;
            }
            if (readable(stop_fd, POLLIN)) {
                why = "was cut short: the responder is stopping";
                break;
            }
            if (mcpgw__mono_ms() >= deadline) {
                why = "did not arrive in time";
                break;
            }
            continue;
        }
        have += (size_t)n;
        h = fcgi_params_check(buf, have, &info);
    }
    if (peek_off)
        setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof(off));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
    free(buf);
    if (h == FCGI_HEAD_OK) {
        /* From here libfcgi reads the body, record by record (guard.h). */
        fcgi_guard_begin(fd, info.end, info.req_id);
        return true;
    }
    if (h == FCGI_HEAD_TOO_LARGE && info.req_id) {
        mcpgw_log_warn("fcgi", "refused a request whose head is over %u bytes or %d params "
                       "(answered 431)", MCPGW_FCGI_HEAD_BYTES_MAX, MCPGW_FCGI_PARAMS_MAX);
        refuse_head(fd, info.req_id);
    } else {
        mcpgw_log_info("fcgi", "dropped a connection: the FastCGI request head %s",
                       h == FCGI_HEAD_TOO_LARGE ? "is too large"
                       : h == FCGI_HEAD_BAD   ? "is malformed"
                                              : why);
    }
    return false;
}

bool fcgi_finish(FCGX_Request *rq)
{
    bool keep = rq->keepConnection != 0;
    int fd;

    if (rq->in) {
        /* Whatever of the body the route did not read is read (and
         * dropped) so that a kept connection stays in step and a closed
         * one does not reset with unread data. */
        char sink[4096];
        long total = 0;

        while (!FCGX_HasSeenEOF(rq->in) && total < (long)MCPGW_MESSAGE_BYTES_MAX) {
            int n = FCGX_GetStr(sink, sizeof(sink), rq->in);

            if (n <= 0)
                break;
            total += n;
        }
        /* Closing err and out writes FCGI_END_REQUEST. */
        if (FCGX_FClose(rq->err) < 0 || FCGX_FClose(rq->out) < 0 || FCGX_GetError(rq->in))
            keep = false;
    } else {
        keep = false;
    }
    fd = rq->ipcFd;
    rq->ipcFd = -1;
    FCGX_Free(rq, 0);
    if (fd < 0)
        return false;
    if (keep) {
        rq->ipcFd = fd;
        return true;
    }
    close(fd);
    return false;
}
