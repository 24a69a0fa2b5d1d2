/* rest.c - shared/routes.c behind libmicrohttpd, on worker threads (rest.h).
 *
 * A request's life, and who holds it (refs):
 *   URI callback (loop)       wsd_rest_req_new: libmicrohttpd's hold
 *   access handler (loop)     head, then body chunks; then hand_off():
 *                             suspend, queue it (REST) or start its thread
 *                             (stream): the worker's hold
 *   worker                    mcpgw_routes_handle() writes into q->out;
 *                             flush/finish resume the connection
 *   access handler (loop)     after the first resume: answer() queues a
 *                             response read from q->out: the response's hold
 *   content reader (loop)     takes from q->out; empty and not finished:
 *                             suspends the connection until the next resume
 *   NOTIFY_COMPLETED (loop)   wsd_rest_completed: gone, libmicrohttpd lets go
 * The request is freed when the last hold is dropped.
 *
 * Suspension is paired with exactly one resume (MHD_resume_connection on a
 * connection that is not suspended is undefined): whoever suspends sets
 * q->suspended under q->lock and calls MHD_suspend_connection() before
 * letting go of the lock; the worker clears it under the lock and resumes
 * after letting go.  So the worker never holds q->lock while calling into
 * libmicrohttpd, and the loop thread only does with its own connection.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "cors.h"
#include "err.h"
#include "limits.h"
#include "log.h"
#include "rest.h"
#include "routes.h"

#define C "http"
/* Stacks: an event stream needs a few KiB (as in mcpgw-fcgi); a REST
 * request parses JSON bodies (recursively, up to maxJsonDepth), with room
 * for the sanitizers' red zones. */
#define STREAM_STACK (256u * 1024)
#define REST_STACK (1024u * 1024)
/* The request head as we keep it: what libmicrohttpd accepted, which its
 * connection memory (MCPGW_HTTP_CONN_MEMORY) already bounds. */
#define HEAD_BYTES_MAX (16u * 1024)
#define RESP_HEAD_MAX (16u * 1024)
/* How much libmicrohttpd asks the content reader for at a time. */
#define READ_BLOCK (16u * 1024)

enum phase {
    J_NEW,          /* no call yet */
    J_BODY,         /* head seen, body being read */
    J_HANDED,       /* suspended and with a worker; answer() when resumed */
    J_ANSWERED      /* a response is queued */
};

struct job {
    struct wsd_rest *r;
    struct MHD_Connection *c;
    atomic_uint refs;
    struct job *prev, *next;    /* r->live */
    struct job *qnext;          /* r's REST queue */
    struct sthread *thread;     /* an event stream's own thread */

    /* Loop thread until the hand-off, then read-only. */
    enum phase phase;           /* loop thread only */
    struct mcpgw_http_request req;
    char method[24];
    char remote[64];
    const char *query;          /* into uri */
    struct mcpgw_buf hdrs;      /* "name\0value\0"..., names lower case */
    bool hdrs_over;             /* more than HEAD_BYTES_MAX of them */
    struct mcpgw_buf body;      /* max: maxMessageBytes + 1 (one more says "too big") */
    size_t body_read;           /* worker */
    long long declared_in;      /* the request's Content-Length, -1 */
    bool stream;
    int hup_fd;

    /* Shared between the worker and the loop thread. */
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* out drained, or gone */
    bool began, done, gone, suspended, writer_waits;
    int status;
    struct mcpgw_buf head;      /* response headers, "name\0value\0"... */
    long long declared_out;     /* the response's Content-Length, -1 */
    struct mcpgw_buf out;       /* body bytes not yet taken by libmicrohttpd */
    size_t out_pos;
    char uri[];                 /* raw URI; the path, then (after '\0') the query */
};

struct sthread {
    pthread_t t;
    struct job *q;
    struct sthread *next;
};

struct wsd_rest {
    mcpgw_routes *rt;
    const struct mcpgw_conf *conf;
    pthread_mutex_t lock;
    pthread_cond_t work;        /* a job was queued, or stopping */
    pthread_cond_t changed;     /* a job finished */
    struct job *qhead, *qtail;
    unsigned queued, queue_max;
    unsigned running;           /* handed to a worker and not finished (queued included) */
    unsigned open;              /* contexts alive */
    unsigned streams, max_streams;
    struct sthread *finished;   /* stream threads to join */
    struct job *live;
    pthread_t *threads;
    unsigned nthreads;
    int wake_fd;                /* eventfd: a connection was resumed */
    bool stopping;
};

/* -- requests ------------------------------------------------------------------------ */

static void job_release(struct job *q)
{
    struct wsd_rest *r = q->r;

    if (atomic_fetch_sub(&q->refs, 1) != 1)
        return;
    pthread_mutex_lock(&r->lock);
    if (q->prev)
        q->prev->next = q->next;
    else
        r->live = q->next;
    if (q->next)
        q->next->prev = q->prev;
    r->open--;
    pthread_mutex_unlock(&r->lock);
    if (q->hup_fd >= 0)
        close(q->hup_fd);
    mcpgw_buf_release(&q->hdrs);
    mcpgw_buf_release(&q->body);
    mcpgw_buf_release(&q->head);
    mcpgw_buf_release(&q->out);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->cond);
    free(q);
}

struct wsd_rest_req *wsd_rest_req_new(struct wsd_rest *r, const char *uri)
{
    size_t n;
    struct job *q;

    if (!r || strncmp(uri, "/api/v1", 7) != 0 || (uri[7] && uri[7] != '/' && uri[7] != '?'))
        return NULL;
    n = strlen(uri);
    if (!(q = calloc(1, sizeof(*q) + n + 1)))
        return NULL;
    memcpy(q->uri, uri, n + 1);
    q->r = r;
    atomic_init(&q->refs, 1);
    q->hup_fd = -1;
    q->declared_in = q->declared_out = -1;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    mcpgw_buf_init(&q->hdrs, HEAD_BYTES_MAX);
    mcpgw_buf_init(&q->body, r->conf->limits.max_message_bytes + 1);
    mcpgw_buf_init(&q->head, RESP_HEAD_MAX);
    mcpgw_buf_init(&q->out, MCPGW_WSD_REST_OUTQ);
    pthread_mutex_lock(&r->lock);
    q->next = r->live;
    if (q->next)
        q->next->prev = q;
    r->live = q;
    r->open++;
    pthread_mutex_unlock(&r->lock);
    return (struct wsd_rest_req *)q;
}

void wsd_rest_completed(struct wsd_rest_req *req)
{
    struct job *q = (struct job *)req;

    pthread_mutex_lock(&q->lock);
    q->gone = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    job_release(q);
}

/* -- the request, as the routes see it (worker) ---------------------------------- */

static const char *header(void *ud, const char *lname)
{
    const struct job *q = ud;
    const char *p = q->hdrs.ptr, *end = p + q->hdrs.len;

    while (p < end) {
        const char *v = p + strlen(p) + 1;

        if (strcmp(p, lname) == 0)
            return v;
        p = v + strlen(v) + 1;
    }
    return NULL;
}

static ssize_t read_body(void *ud, char *buf, size_t len)
{
    struct job *q = ud;
    size_t n = q->body.len - q->body_read;

    if (n > len)
        n = len;
    memcpy(buf, q->body.ptr + q->body_read, n);
    q->body_read += n;
    return (ssize_t)n;
}

/* -- the writer (worker) ----------------------------------------------------------- */

/* libmicrohttpd 0.9.75 in external epoll mode without a listen socket of
 * its own has no ITC in its epoll set, so MHD_resume_connection() alone
 * would leave the connection waiting for unrelated traffic: the loop is
 * told through our eventfd, and runs libmicrohttpd (wsd_rest_wake_fd). */
static void resume(struct job *q)
{
    uint64_t one = 1;

    MHD_resume_connection(q->c);
    if (write(q->r->wake_fd, &one, sizeof(one)) < 0) {
        /* only on overflow: it is readable anyway */
    }
}

static int w_begin(void *ud, int status, const struct mcpgw_http_header *h, size_t n)
{
    struct job *q = ud;
    int rc = 0;

    pthread_mutex_lock(&q->lock);
    if (q->gone || q->began) {
        rc = q->gone ? -EPIPE : -EINVAL;
        goto out;
    }
    mcpgw_buf_reset(&q->head);
    for (size_t i = 0; i < n && rc == 0; i++) {
        /* libmicrohttpd frames the body itself: it sends Content-Length
         * for a response of known size, else chunks or closes. */
        if (strcasecmp(h[i].name, "Content-Length") == 0) {
            char *end;
            long long v = strtoll(h[i].value, &end, 10);

            if (*end || v < 0) {
                rc = -EINVAL;
                break;
            }
            q->declared_out = v;
            continue;
        }
        if (strcasecmp(h[i].name, "Transfer-Encoding") == 0 ||
            strcasecmp(h[i].name, "Connection") == 0)
            continue;
        rc = mcpgw_buf_add(&q->head, h[i].name, strlen(h[i].name) + 1);
        if (rc == 0)
            rc = mcpgw_buf_add(&q->head, h[i].value, strlen(h[i].value) + 1);
    }
    if (rc < 0) {
        mcpgw_log_error(C, "cannot keep the response head of %s %s: %s", q->method, q->req.path,
                        mcpgw_strerror(rc));
        goto out;
    }
    q->status = status;
    q->began = true;
out:
    pthread_mutex_unlock(&q->lock);
    return rc;
}

static int w_write(void *ud, const char *p, size_t n)
{
    struct job *q = ud;
    int rc = 0;

    pthread_mutex_lock(&q->lock);
    while (n) {
        size_t used = q->out.len - q->out_pos, k;

        if (q->gone) {
            rc = -EPIPE;
            break;
        }
        if (used >= MCPGW_WSD_REST_OUTQ) {
            /* Full: make sure the connection is draining it, then wait. */
            if (q->suspended) {
                q->suspended = false;
                pthread_mutex_unlock(&q->lock);
                resume(q);
                pthread_mutex_lock(&q->lock);
                continue;
            }
            q->writer_waits = true;
            pthread_cond_wait(&q->cond, &q->lock);
            continue;
        }
        if (q->out_pos) {
            memmove(q->out.ptr, q->out.ptr + q->out_pos, used);
            q->out.len = used;
            q->out_pos = 0;
        }
        k = MCPGW_WSD_REST_OUTQ - used < n ? MCPGW_WSD_REST_OUTQ - used : n;
        if ((rc = mcpgw_buf_add(&q->out, p, k)) < 0)
            break;
        p += k;
        n -= k;
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

static int w_flush(void *ud)
{
    struct job *q = ud;
    bool wake;
    int rc;

    pthread_mutex_lock(&q->lock);
    rc = q->gone ? -EPIPE : 0;
    wake = q->suspended && q->began;
    if (wake)
        q->suspended = false;
    pthread_mutex_unlock(&q->lock);
    if (wake)
        resume(q);
    return rc;
}

static void serve(struct job *q)
{
    struct wsd_rest *r = q->r;
    struct mcpgw_http_writer w = { w_begin, w_write, w_flush, q, q->hup_fd, POLLRDHUP };
    bool wake;

    if (mcpgw_routes_handle(r->rt, &q->req, &w) < 0)
        mcpgw_log_debug(C, "client %s went away during %s %s", q->remote, q->method, q->req.path);
    pthread_mutex_lock(&q->lock);
    q->done = true;
    wake = q->suspended;
    q->suspended = false;
    pthread_mutex_unlock(&q->lock);
    if (wake)
        resume(q);
    pthread_mutex_lock(&r->lock);
    r->running--;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
}

static void *rest_main(void *arg)
{
    struct wsd_rest *r = arg;

    mcpgw_codec_thread_init();
    for (;;) {
        struct job *q;

        pthread_mutex_lock(&r->lock);
        while (!r->qhead && !r->stopping)
            pthread_cond_wait(&r->work, &r->lock);
        q = r->qhead;
        if (q) {
            r->qhead = q->qnext;
            if (!r->qhead)
                r->qtail = NULL;
            r->queued--;
        }
        pthread_mutex_unlock(&r->lock);
        if (!q)
            return NULL;
        serve(q);
        job_release(q);
    }
}

static void *stream_main(void *arg)
{
    struct sthread *t = arg;
    struct job *q = t->q;
    struct wsd_rest *r = q->r;

    serve(q);
    job_release(q);
    pthread_mutex_lock(&r->lock);
    r->streams--;
    t->next = r->finished;
    r->finished = t;
    pthread_cond_broadcast(&r->changed);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* Join the stream threads that have ended (they are about to return). */
static void reap(struct wsd_rest *r)
{
    struct sthread *t, *next;

    pthread_mutex_lock(&r->lock);
    t = r->finished;
    r->finished = NULL;
    pthread_mutex_unlock(&r->lock);
    for (; t; t = next) {
        next = t->next;
        pthread_join(t->t, NULL);
        free(t);
    }
}

/* -- answers (loop thread) ------------------------------------------------------------ */

/* A JSON error of our own, for a request no worker takes (a cap, shutting
 * down, a head we cannot keep): the routes' shape and CORS headers. */
static enum MHD_Result refuse(struct job *q, unsigned status, const char *code,
                              const char *retry_after, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static enum MHD_Result refuse(struct job *q, unsigned status, const char *code,
                              const char *retry_after, const char *fmt, ...)
{
    struct mcpgw_http_header cors[8];
    const char *origin = header(q, "origin");
    struct MHD_Response *resp;
    struct mcpgw_buf b;
    enum MHD_Result ok;
    size_t ncors = 0;
    char text[300];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    mcpgw_log_warn(C, "%s %s from %s: %u %s: %s", q->method, q->req.path ? q->req.path : q->uri,
                   q->remote, status, code, text);
    q->phase = J_ANSWERED;
    mcpgw_buf_init(&b, 1024);
    if (mcpgw_buf_adds(&b, "{\"error\":") < 0 || mcpgw_buf_add_json_str(&b, text, strlen(text)) < 0 ||
        mcpgw_buf_printf(&b, ",\"code\":\"%s\"}", code) < 0) {
        mcpgw_buf_release(&b);
        return MHD_NO;
    }
    resp = MHD_create_response_from_buffer(b.len, b.ptr, MHD_RESPMEM_MUST_COPY);
    mcpgw_buf_release(&b);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (retry_after)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    if (origin && mcpgw_origin_allowed(q->r->conf, origin, header(q, "host")))
        ncors = mcpgw_cors_headers(origin, cors);
    for (size_t i = 0; i < ncors; i++)
        MHD_add_response_header(resp, cors[i].name, cors[i].value);
    ok = MHD_queue_response(q->c, status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static ssize_t content_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct job *q = cls;
    size_t used;
    ssize_t n;

    pthread_mutex_lock(&q->lock);
    used = q->out.len - q->out_pos;
    if (used) {
        n = (ssize_t)(used < max ? used : max);
        memcpy(buf, q->out.ptr + q->out_pos, (size_t)n);
        q->out_pos += (size_t)n;
        if (q->out_pos == q->out.len) {
            mcpgw_buf_reset(&q->out);
            q->out_pos = 0;
        }
        if (q->writer_waits) {
            q->writer_waits = false;
            pthread_cond_broadcast(&q->cond);
        }
    } else if (q->done) {
        /* A route that announced more than it wrote broke off (its client
         * went away, or an error): the client must not take the short body
         * for the whole one. */
        n = q->declared_out >= 0 && pos < (uint64_t)q->declared_out
            ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        /* Nothing yet: park the connection until the worker has more
         * (returning 0 without suspending would spin the loop). */
        q->suspended = true;
        MHD_suspend_connection(q->c);
        n = 0;
    }
    pthread_mutex_unlock(&q->lock);
    return n;
}

static void content_free(void *cls)
{
    job_release(cls);
}

/* The first call after the worker resumed the connection: the head is
 * known (or the worker finished without one). */
static enum MHD_Result answer(struct job *q)
{
    struct MHD_Response *resp;
    enum MHD_Result ok;
    bool began, gone;
    uint64_t size;

    pthread_mutex_lock(&q->lock);
    began = q->began;
    gone = q->gone;
    pthread_mutex_unlock(&q->lock);
    if (!began) {
        if (gone)
            return MHD_NO;
        return refuse(q, MHD_HTTP_SERVICE_UNAVAILABLE, MCPGW_CODE_INTERNAL, "1",
                      "the request could not be served");
    }
    /* q->head, status and declared_out are the worker's no more. */
    size = q->declared_out >= 0 ? (uint64_t)q->declared_out : MHD_SIZE_UNKNOWN;
    resp = MHD_create_response_from_callback(size, READ_BLOCK, content_reader, q, content_free);
    if (!resp)
        return MHD_NO;
    atomic_fetch_add(&q->refs, 1);
    for (const char *p = q->head.ptr, *end = p + q->head.len; p < end;) {
        const char *v = p + strlen(p) + 1;

        if (MHD_add_response_header(resp, p, v) != MHD_YES)
            mcpgw_log_warn(C, "%s %s: response header '%s' refused by libmicrohttpd", q->method,
                           q->req.path, p);
        p = v + strlen(v) + 1;
    }
    q->phase = J_ANSWERED;
    ok = MHD_queue_response(q->c, (unsigned)q->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* -- reading the request (loop thread) ------------------------------------------------ */

static enum MHD_Result collect(void *cls, enum MHD_ValueKind kind, const char *key,
                               const char *value)
{
    struct job *q = cls;
    size_t mark = q->hdrs.len, n = strlen(key);

    (void)kind;
    if (mcpgw_buf_add(&q->hdrs, key, n + 1) < 0 ||
        mcpgw_buf_add(&q->hdrs, value ? value : "", strlen(value ? value : "") + 1) < 0) {
        q->hdrs.len = mark;
        q->hdrs_over = true;
        return MHD_NO;
    }
    for (char *p = q->hdrs.ptr + mark; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return MHD_YES;
}

static enum MHD_Result hand_off(struct job *q)
{
    struct wsd_rest *r = q->r;
    struct sthread *t = NULL;
    pthread_attr_t attr;
    int rc;

    /* The body is complete now (or known to be too large: the routes
     * answer 413 from the length without reading it). */
    q->req.read_body = read_body;
    q->req.body_ud = q;
    if (q->declared_in > (long long)r->conf->limits.max_message_bytes)
        q->req.content_length = q->declared_in;
    else if (q->body.len > r->conf->limits.max_message_bytes)
        q->req.content_length = -1;     /* what was read says "too big" */
    else
        q->req.content_length = (long long)q->body.len;
    if (q->stream)
        reap(r);
    pthread_mutex_lock(&r->lock);
    if (r->stopping) {
        pthread_mutex_unlock(&r->lock);
        return refuse(q, MHD_HTTP_SERVICE_UNAVAILABLE, MCPGW_CODE_SERVER_UNAVAILABLE, "1",
                      "the gateway is shutting down");
    }
    if (q->stream) {
        if (r->streams >= r->max_streams) {
            pthread_mutex_unlock(&r->lock);
            return refuse(q, MHD_HTTP_SERVICE_UNAVAILABLE, MCPGW_CODE_RATE_LIMITED, "5",
                          "too many open event streams (%u)", r->max_streams);
        }
        r->streams++;
    } else {
        if (r->queued >= r->queue_max) {
            unsigned busy = r->running - r->queued;

            pthread_mutex_unlock(&r->lock);
            return refuse(q, MHD_HTTP_SERVICE_UNAVAILABLE, MCPGW_CODE_RATE_LIMITED, "1",
                          "the gateway is busy: %u requests running and %u waiting", busy,
                          r->queue_max);
        }
        r->queued++;
    }
    r->running++;
    pthread_mutex_unlock(&r->lock);

    atomic_fetch_add(&q->refs, 1);     /* the worker's */
    q->phase = J_HANDED;
    pthread_mutex_lock(&q->lock);
    q->suspended = true;
    MHD_suspend_connection(q->c);
    pthread_mutex_unlock(&q->lock);

    if (!q->stream) {
        pthread_mutex_lock(&r->lock);
        if (r->qtail)
            r->qtail->qnext = q;
        else
            r->qhead = q;
        r->qtail = q;
        pthread_cond_signal(&r->work);
        pthread_mutex_unlock(&r->lock);
        return MHD_YES;
    }

    {
        /* A suspended connection is not watched: the stream watches a
         * duplicate of its socket for the hang-up. */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(q->c, MHD_CONNECTION_INFO_CONNECTION_FD);

        if (ci)
            q->hup_fd = fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0);
    }
    rc = ENOMEM;
    if ((t = calloc(1, sizeof(*t)))) {
        t->q = q;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, STREAM_STACK);
        rc = pthread_create(&t->t, &attr, stream_main, t);
        pthread_attr_destroy(&attr);
    }
    if (rc == 0)
        return MHD_YES;
    free(t);
    mcpgw_log_error(C, "cannot start a thread for an event stream: %s", strerror(rc));
    pthread_mutex_lock(&r->lock);
    r->streams--;
    r->running--;
    pthread_mutex_unlock(&r->lock);
    /* As if a worker had finished without an answer: answer() says so. */
    pthread_mutex_lock(&q->lock);
    q->done = true;
    q->suspended = false;
    pthread_mutex_unlock(&q->lock);
    resume(q);
    job_release(q);
    return MHD_YES;
}

static enum MHD_Result on_head(struct job *q, struct MHD_Connection *c, const char *method,
                               const char *remote)
{
    const struct mcpgw_conf *conf = q->r->conf;
    const char *cl;
    char *qm;

    q->c = c;
    snprintf(q->remote, sizeof(q->remote), "%s", remote ? remote : "?");
    snprintf(q->method, sizeof(q->method), "%s", method);
    qm = strchr(q->uri, '?');
    q->query = "";
    if (qm) {
        *qm = '\0';
        q->query = qm + 1;
    }
    q->req.method = q->method;
    q->req.path = q->uri;
    q->req.query = q->query;
    q->req.header = header;
    q->req.header_ud = q;
    q->req.remote_addr = q->remote;
    q->req.content_length = -1;
    if (strlen(method) >= sizeof(q->method))
        return refuse(q, MHD_HTTP_NOT_IMPLEMENTED, MCPGW_CODE_BAD_REQUEST, NULL,
                      "unknown method");
    MHD_get_connection_values(c, MHD_HEADER_KIND, collect, q);
    if (q->hdrs_over)
        return refuse(q, MHD_HTTP_REQUEST_HEADER_FIELDS_TOO_LARGE, MCPGW_CODE_TOO_LARGE, NULL,
                      "the request head is too large");
    cl = header(q, "content-length");
    if (cl && !header(q, "transfer-encoding")) {
        char *end;

        q->declared_in = strtoll(cl, &end, 10);
        if (*end || q->declared_in < 0)
            return refuse(q, MHD_HTTP_BAD_REQUEST, MCPGW_CODE_BAD_REQUEST, NULL,
                          "malformed Content-Length");
    }
    q->stream = mcpgw_routes_is_stream(&q->req);
    /* Too large by its own account: answered (413) without reading it, and
     * libmicrohttpd closes the connection after the answer rather than
     * read the rest. */
    if (q->declared_in > (long long)conf->limits.max_message_bytes)
        return hand_off(q);
    q->phase = J_BODY;
    return MHD_YES;
}

enum MHD_Result wsd_rest_access(struct wsd_rest_req *req, struct MHD_Connection *c,
                                const char *method, const char *upload_data,
                                size_t *upload_data_size, const char *remote)
{
    struct job *q = (struct job *)req;

    switch (q->phase) {
    case J_NEW:
        return on_head(q, c, method, remote);
    case J_BODY:
        if (*upload_data_size) {
            /* Kept up to one byte over the limit, the rest read and
             * dropped: the routes answer 413 on seeing that byte. */
            size_t room = q->body.max - q->body.len, n = *upload_data_size;

            if (n > room)
                n = room;
            if (n && mcpgw_buf_add(&q->body, upload_data, n) < 0)
                return MHD_NO;
            *upload_data_size = 0;
            return MHD_YES;
        }
        return hand_off(q);
    case J_HANDED:
        return answer(q);
    case J_ANSWERED:
        *upload_data_size = 0;
        return MHD_YES;
    }
    return MHD_NO;
}

/* -- the pool --------------------------------------------------------------------------- */

int wsd_rest_start(mcpgw_hub *hub, mcpgw_events *events, struct wsd_rest **out, char *err,
                   size_t errlen)
{
    struct wsd_rest *r = calloc(1, sizeof(*r));
    struct mcpgw_routes_opts ro;
    pthread_attr_t attr;
    int rc;

    *out = NULL;
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->conf = mcpgw_hub_conf(hub);
    r->wake_fd = -1;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->work, NULL);
    pthread_cond_init(&r->changed, NULL);
    r->max_streams = (unsigned)r->conf->sse.max_streams;
    r->queue_max = (unsigned)r->conf->websocket.rest_threads * MCPGW_WSD_REST_BACKLOG;
    ro = (struct mcpgw_routes_opts){ .conf = r->conf, .hub = hub, .events = events,
                                     .component = C };
    if ((rc = mcpgw_routes_new(&ro, &r->rt, err, errlen)) < 0)
        goto fail;
    if ((r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot create an eventfd: %s", strerror(errno));
        goto fail;
    }
    r->threads = calloc((size_t)r->conf->websocket.rest_threads, sizeof(*r->threads));
    if (!r->threads) {
        rc = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, REST_STACK);
    for (; r->nthreads < (unsigned)r->conf->websocket.rest_threads; r->nthreads++) {
        if ((rc = pthread_create(&r->threads[r->nthreads], &attr, rest_main, r)) != 0) {
            snprintf(err, errlen, "cannot start a REST thread: %s", strerror(rc));
            rc = -rc;
            break;
        }
    }
    pthread_attr_destroy(&attr);
    if (rc < 0)
        goto fail;
    *out = r;
    return 0;
fail:
    wsd_rest_stop(r);
    wsd_rest_free(r);
    return rc;
}

int wsd_rest_wake_fd(struct wsd_rest *r)
{
    return r ? r->wake_fd : -1;
}

void wsd_rest_shutdown(struct wsd_rest *r, bool cancel_calls)
{
    if (r)
        mcpgw_routes_shutdown(r->rt, cancel_calls);
}

unsigned wsd_rest_busy(struct wsd_rest *r, unsigned *open)
{
    unsigned n = 0, o = 0;

    if (r) {
        pthread_mutex_lock(&r->lock);
        n = r->running;
        o = r->open;
        pthread_mutex_unlock(&r->lock);
    }
    if (open)
        *open = o;
    return n;
}

void wsd_rest_abort(struct wsd_rest *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->lock);
    for (struct job *q = r->live; q; q = q->next) {
        pthread_mutex_lock(&q->lock);
        q->gone = true;
        pthread_cond_broadcast(&q->cond);
        pthread_mutex_unlock(&q->lock);
    }
    pthread_mutex_unlock(&r->lock);
}

void wsd_rest_stop(struct wsd_rest *r)
{
    if (!r)
        return;
    /* Not cancel_calls here: that posts to the hub, and the post could run
     * after the routes are freed.  The caller has cancelled what runs. */
    if (r->rt)
        mcpgw_routes_shutdown(r->rt, false);
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    pthread_cond_broadcast(&r->work);
    pthread_mutex_unlock(&r->lock);
    for (unsigned i = 0; i < r->nthreads; i++)
        pthread_join(r->threads[i], NULL);
    r->nthreads = 0;
    pthread_mutex_lock(&r->lock);
    while (r->streams)
        pthread_cond_wait(&r->changed, &r->lock);
    pthread_mutex_unlock(&r->lock);
    reap(r);
}

void wsd_rest_free(struct wsd_rest *r)
{
    if (!r)
        return;
    if (r->open)
        mcpgw_log_error(C, "%u requests still open when the routes are freed", r->open);
    mcpgw_routes_free(r->rt);
    if (r->wake_fd >= 0)
        close(r->wake_fd);
    free(r->threads);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->work);
    pthread_cond_destroy(&r->changed);
    free(r);
}
