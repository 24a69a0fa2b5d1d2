/* adapter.c - FastCGI params and streams behind the routes' interfaces. */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adapter.h"
#include "err.h"
#include "limits.h"
#include "log.h"

static const char *get_param(void *ud, const char *name)
{
    FCGX_Request *rq = ud;

    return FCGX_GetParam(name, rq->envp);
}

static ssize_t read_body(void *ud, char *buf, size_t len)
{
    struct fcgi_adapter *a = ud;
    int n = FCGX_GetStr(buf, len > 65536 ? 65536 : (int)len, a->rq->in);

    if (n < 0 || FCGX_GetError(a->rq->in) != 0)
        return -1;
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
