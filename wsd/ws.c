/* ws.c - a server-side WebSocket connection over wslay (ws.h).
 *
 * Two parts of wslay do the framing:
 *  - input: a per-connection event context (wslay_event_*), with message
 *    buffering off: data frames are collected here, into one bounded buffer
 *    per connection (no allocation per frame; a flood of tiny fragments is
 *    cut off by count), while wslay validates every frame, checks UTF-8 frame
 *    by frame, answers pings and echoes the peer's close.  A close frame is
 *    handed to wslay whole (walk_frames() says why);
 *  - output: one frame serialiser for the whole process (wslay_frame_send on
 *    a shared frame context), which writes each of our frames - messages,
 *    pings, close - straight into the connection's output queue.  Frames are
 *    whole when they land there (the serialiser's callback always takes all
 *    it is given, into room reserved first), so a close frame may follow
 *    anything, and always follows what was queued before it.
 *
 * The event context holds about 9 KiB of fixed buffers, so it exists only
 * while a connection is reading: it is made when the first byte arrives and
 * freed ("parked") once the connection has been quiet for
 * MCPGW_WS_PARK_AFTER at a frame boundary - every byte handed to wslay
 * belongs to a frame it has finished, no fragmented message is open, none of
 * its answers are queued.  A read that brought only control frames (a pong)
 * to a connection without a message for that long parks it again at once,
 * so a wave of pongs from thousands of idle clients reuses one parser's
 * memory instead of holding thousands.  A fresh context starts at a frame
 * boundary too.
 * 10,000 idle clients then cost their sockets and a few hundred bytes each
 * here, plus a parser for the moment each pong is read.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <wslay/wslay.h>

#include "buf.h"
#include "err.h"
#include "limits.h"
#include "ws.h"

enum state {
    ST_OPEN,                    /* messages flow */
    ST_CLOSING,                 /* a close frame is queued or out; waiting for the queue to drain */
    ST_LINGER,                  /* our close is out, write side shut: draining until EOF */
    ST_DONE                     /* ended; waiting to be freed */
};

/* Longest reason that fits a control frame: 125 - 2 bytes of code. */
#define REASON_MAX 123
/* A whole client close frame: 2-byte header, 4-byte mask, 125 bytes. */
#define CLOSE_FRAME_MAX (2 + 4 + 125)
/* A message buffer bigger than this is freed after the message, so idle
 * connections stay small. */
#define MSG_KEEP 4096
/* Most bytes a server frame header takes (no mask). */
#define FRAME_HEAD_MAX 10

struct wsd_ws {
    struct wsd_loop *loop;
    struct wsd_watch watch;
    struct mcpgw__timer timer;
    struct wsd_defer flush_d, read_d, end_d;
    wslay_event_context_ptr ctx;    /* the input parser; NULL while parked */
    struct wsd_ws_limits lim;
    struct wsd_ws_handler h;
    void *ud;
    int fd;
    enum state state;

    /* input */
    char *extra;
    size_t extra_len, extra_off;
    size_t read_left;           /* this turn's read budget */
    bool eof;
    int io_errno;
    bool in_data_frame;         /* the frame being read is text/continuation */
    bool msg_open;              /* a fragmented message is under way */
    bool refusing;              /* we failed the connection: ignore what follows */
    bool close_received;        /* the peer's close frame arrived */
    uint64_t fed, consumed;     /* bytes given to wslay; bytes of frames it finished */
    uint64_t frame_bytes;       /* header + payload of the frame being read */
    bool in_close_frame;        /* wslay is reading a close frame */
    struct {                    /* the frame walk under wslay (recv_cb) */
        uint8_t head[14];       /* header bytes of the next frame so far */
        uint8_t head_len;
        bool close;             /* the frame being walked is a close frame */
        uint64_t skip;          /* its payload bytes not walked yet */
    } walk;
    uint8_t held[CLOSE_FRAME_MAX]; /* a close frame's start, until all of it is here */
    uint8_t held_len;
    unsigned fragments;
    struct mcpgw_buf msg;

    /* output */
    struct mcpgw_buf out;
    size_t out_off;
    bool paused;                /* over the high mark: not reading */
    bool close_out;             /* our close frame is in out (or was sent) */

    /* liveness */
    int64_t last_rx, last_msg, ping_sent, close_deadline;
    int missed;
    bool ping_out;
    uint32_t ping_seq;

    struct wsd_ws_end end;
};

static void schedule_flush(struct wsd_ws *ws);
static void finish(struct wsd_ws *ws);

static void set_reason(struct wsd_ws *ws, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_reason(struct wsd_ws *ws, const char *fmt, ...)
{
    va_list ap;

    if (ws->end.reason[0])
        return;
    va_start(ap, fmt);
    vsnprintf(ws->end.reason, sizeof(ws->end.reason), fmt, ap);
    va_end(ap);
}

static size_t queued(const struct wsd_ws *ws)
{
    return ws->out.len - ws->out_off +
           (ws->ctx ? wslay_event_get_queued_msg_length(ws->ctx) : 0);
}

/* -- output: the shared frame serialiser -------------------------------------------- */

/* The loop thread owns it; target is set around each wslay_frame_send(). */
static wslay_frame_context_ptr encoder;
static struct mcpgw_buf *encoder_target;

static ssize_t encoder_send(const uint8_t *data, size_t len, int flags, void *ud)
{
    /* Room was reserved before the frame was started, so this cannot fail;
     * were it to, wslay would see a short write and the frame be cut. */
    return mcpgw_buf_add(encoder_target, data, len) == 0 ? (ssize_t)len : 0;
}

void wsd_ws_cleanup(void)
{
    wslay_frame_context_free(encoder);
    encoder = NULL;
}

/* Frame one message (server frames are not masked) into ws->out.  0,
 * MCPGW_ETOOBIG when out cannot take it, -ENOMEM. */
static int put_frame(struct wsd_ws *ws, uint8_t opcode, const void *p, size_t n)
{
    static const struct wslay_frame_callbacks cbs = { .send_callback = encoder_send };
    struct wslay_frame_iocb io = {
        .fin = 1, .opcode = opcode, .mask = 0, .payload_length = n,
        .data = p, .data_length = n,
    };
    ssize_t r;
    int rc;

    if (!encoder && wslay_frame_context_init(&encoder, &cbs, NULL) != 0) {
        encoder = NULL;
        return -ENOMEM;
    }
    if ((rc = mcpgw_buf_reserve(&ws->out, n + FRAME_HEAD_MAX)) < 0)
        return rc;
    encoder_target = &ws->out;
    r = wslay_frame_send(encoder, &io);
    encoder_target = NULL;
    if (r != (ssize_t)n) {
        /* Only a broken invariant gets here; start the next frame afresh. */
        wsd_ws_cleanup();
        return -EIO;
    }
    return 0;
}

/* Our close frame (the code big-endian, then our ASCII reason).  Once it is
 * queued the input parser must not send its own (the echo of the peer's). */
static void append_close(struct wsd_ws *ws, uint16_t code, const char *reason)
{
    unsigned char p[2 + REASON_MAX];
    size_t n = reason ? strlen(reason) : 0;

    if (ws->close_out)
        return;
    if (n > REASON_MAX)
        n = REASON_MAX;
    p[0] = (unsigned char)(code >> 8);
    p[1] = (unsigned char)code;
    for (size_t i = 0; i < n; i++)
        p[2 + i] = reason[i] >= 0x20 && reason[i] < 0x7f ? (unsigned char)reason[i] : '?';
    /* out's ceiling leaves room above outq_max + one message; should it
     * still be full, the frame is skipped and the connection ends at the
     * close deadline. */
    if (put_frame(ws, WSLAY_CONNECTION_CLOSE, p, 2 + n) == 0)
        ws->close_out = true;
    ws->end.code = code;
    if (ws->ctx)
        wslay_event_shutdown_write(ws->ctx);
}

/* -- input: the per-connection parser, made on demand ------------------------------- */

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud);
static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud);
static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *ud);
static void on_frame_chunk(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_chunk_arg *arg, void *ud);
static void on_frame_end(wslay_event_context_ptr ctx, void *ud);
static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud);

static const struct wslay_event_callbacks callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_frame_recv_start_callback = on_frame_start,
    .on_frame_recv_chunk_callback = on_frame_chunk,
    .on_frame_recv_end_callback = on_frame_end,
    .on_msg_recv_callback = on_msg,
};

/* The parser is needed.  false if it cannot be had (the connection is then
 * ended). */
static bool unpark(struct wsd_ws *ws)
{
    if (ws->ctx)
        return true;
    if (wslay_event_context_server_init(&ws->ctx, &callbacks, ws) != 0) {
        ws->ctx = NULL;
        set_reason(ws, "out of memory for the frame parser");
        finish(ws);
        return false;
    }
    wslay_event_config_set_no_buffering(ws->ctx, 1);
    /* wslay's default is 2^31-1; with buffering off it bounds each frame,
     * and the message buffer's ceiling bounds their sum. */
    wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->lim.max_message);
    /* After our close, wslay must not answer the peer's with another. */
    if (ws->close_out)
        wslay_event_shutdown_write(ws->ctx);
    if (ws->refusing)
        wslay_event_shutdown_read(ws->ctx);
    return true;
}

static bool parkable(const struct wsd_ws *ws)
{
    return ws->ctx && ws->state == ST_OPEN && !ws->refusing && !ws->msg_open &&
           !ws->in_data_frame && ws->fed == ws->consumed && ws->extra_len == 0 &&
           ws->held_len == 0 &&
           !wslay_event_want_write(ws->ctx) && wslay_event_get_read_enabled(ws->ctx);
}

static void park(struct wsd_ws *ws)
{
    wslay_event_context_free(ws->ctx);
    ws->ctx = NULL;
    mcpgw_buf_release(&ws->msg);
    if (ws->out_off == ws->out.len) {
        mcpgw_buf_release(&ws->out);
        ws->out_off = 0;
    }
}

bool wsd_ws_parked(const struct wsd_ws *ws)
{
    return !ws->ctx;
}

/* -- the timer: parking, pings, idle, close deadline --------------------------------- */

static void rearm(struct wsd_ws *ws, int64_t when)
{
    /* Out of memory in the heap would lose this connection's deadlines; it
     * then lives until the peer goes, which is the lesser evil than
     * dropping it. */
    wsd_loop_timer(ws->loop, &ws->timer, when);
}

/* The timer is re-armed lazily (when it fires); this brings it forward
 * when the parser has just become parkable and it is due later. */
static void schedule_park(struct wsd_ws *ws)
{
    int64_t at = ws->last_rx + MCPGW_WS_PARK_AFTER;

    if (parkable(ws) && (!mcpgw__timer_armed(&ws->timer) || ws->timer.when > at))
        rearm(ws, at);
}

static int64_t next_deadline(const struct wsd_ws *ws)
{
    int64_t next = INT64_MAX;

    if (ws->state == ST_CLOSING || ws->state == ST_LINGER)
        return ws->close_deadline;
    if (ws->lim.ping_interval_ms > 0)
        next = (ws->ping_out ? ws->ping_sent : ws->last_rx) + ws->lim.ping_interval_ms;
    if (ws->lim.idle_timeout_ms > 0 && ws->last_rx + ws->lim.idle_timeout_ms < next)
        next = ws->last_rx + ws->lim.idle_timeout_ms;
    if (parkable(ws) && ws->last_rx + MCPGW_WS_PARK_AFTER < next)
        next = ws->last_rx + MCPGW_WS_PARK_AFTER;
    return next;
}

static void send_ping(struct wsd_ws *ws, int64_t now)
{
    uint8_t payload[4];
    uint32_t seq = ++ws->ping_seq;

    payload[0] = (uint8_t)(seq >> 24);
    payload[1] = (uint8_t)(seq >> 16);
    payload[2] = (uint8_t)(seq >> 8);
    payload[3] = (uint8_t)seq;
    if (put_frame(ws, WSLAY_PING, payload, sizeof(payload)) == 0) {
        ws->ping_out = true;
        ws->ping_sent = now;
        schedule_flush(ws);
    }
}

static void on_timer(struct mcpgw__timer *t)
{
    struct wsd_ws *ws = (struct wsd_ws *)((char *)t - offsetof(struct wsd_ws, timer));
    int64_t now = wsd_loop_now(ws->loop), next;

    if (ws->state == ST_DONE)
        return;
    if (ws->state == ST_CLOSING || ws->state == ST_LINGER) {
        if (now >= ws->close_deadline) {
            set_reason(ws, "close timed out");
            finish(ws);
            return;
        }
        rearm(ws, ws->close_deadline);
        return;
    }
    if (parkable(ws) && now - ws->last_rx >= MCPGW_WS_PARK_AFTER)
        park(ws);
    if (ws->lim.idle_timeout_ms > 0 && now - ws->last_rx >= ws->lim.idle_timeout_ms) {
        char why[64];

        snprintf(why, sizeof(why), "idle for %d ms", ws->lim.idle_timeout_ms);
        wsd_ws_close(ws, 1001, why);
        return;
    }
    if (ws->lim.ping_interval_ms > 0) {
        if (now - ws->last_rx < ws->lim.ping_interval_ms) {
            /* Heard from the peer since the last ping: it is alive. */
            ws->ping_out = false;
            ws->missed = 0;
        } else if (!ws->ping_out) {
            send_ping(ws, now);
        } else if (now - ws->ping_sent >= ws->lim.ping_interval_ms) {
            if (++ws->missed >= ws->lim.max_missed_pongs) {
                /* A peer that answers nothing is gone or wedged: no close
                 * handshake, just a last close frame if it fits the socket. */
                set_reason(ws, "no pong to %d pings", ws->missed);
                append_close(ws, 1001, "ping timeout");
                if (ws->out.len > ws->out_off)
                    (void)!send(ws->fd, ws->out.ptr + ws->out_off, ws->out.len - ws->out_off,
                                MSG_NOSIGNAL | MSG_DONTWAIT);
                finish(ws);
                return;
            }
            send_ping(ws, now);
        }
    }
    next = next_deadline(ws);
    if (next != INT64_MAX)
        rearm(ws, next);
}

/* -- writing ------------------------------------------------------------------------- */

/* The input parser's own frames (pongs, the echo of a close) join the
 * output queue at the flush. */
static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *ud)
{
    struct wsd_ws *ws = ud;

    if (mcpgw_buf_add(&ws->out, data, len) < 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void update_interest(struct wsd_ws *ws)
{
    uint32_t ev = 0;

    if (ws->state == ST_DONE)
        return;
    if (ws->state == ST_LINGER ||
        (!ws->paused && !ws->refusing && !ws->close_received &&
         (!ws->ctx || wslay_event_get_read_enabled(ws->ctx))))
        ev |= EPOLLIN;
    if (ws->out_off < ws->out.len)
        ev |= EPOLLOUT;
    if (wsd_loop_watch(ws->loop, &ws->watch, ws->fd, ev) < 0) {
        set_reason(ws, "cannot watch the socket: %s", strerror(errno));
        finish(ws);
    }
}

static void enter_linger(struct wsd_ws *ws)
{
    ws->state = ST_LINGER;
    /* Our close is out: a FIN after it tells the peer we are done, and
     * reading on until its FIN keeps unread input from turning our close
     * into a reset. */
    shutdown(ws->fd, SHUT_WR);
    if (ws->close_deadline == 0)
        ws->close_deadline = wsd_loop_now(ws->loop) + ws->lim.close_timeout_ms;
    rearm(ws, ws->close_deadline);
}

static void start_closing(struct wsd_ws *ws)
{
    if (ws->state != ST_OPEN)
        return;
    ws->state = ST_CLOSING;
    ws->close_deadline = wsd_loop_now(ws->loop) + ws->lim.close_timeout_ms;
    rearm(ws, ws->close_deadline);
}

static void flush(struct wsd_ws *ws)
{
    size_t budget = MCPGW_WS_WRITE_BUDGET;

    if (ws->state == ST_DONE || ws->state == ST_LINGER)
        return;
    if (ws->ctx && wslay_event_want_write(ws->ctx)) {
        if (wslay_event_send(ws->ctx) < 0) {
            set_reason(ws, "output queue over its ceiling");
            finish(ws);
            return;
        }
        if (wslay_event_get_close_sent(ws->ctx) && !ws->close_out) {
            /* wslay's own close: the echo of the peer's, or its verdict on
             * a bad frame (1002, 1007, 1009). */
            uint16_t code = wslay_event_get_status_code_sent(ws->ctx);

            ws->close_out = true;
            ws->end.code = code == WSLAY_CODE_NO_STATUS_RCVD ? 1005 : code;
            start_closing(ws);
            if (ws->close_received)
                set_reason(ws, "client closed");
            else if (code == WSLAY_CODE_PROTOCOL_ERROR)
                set_reason(ws, "protocol error (reserved bits or opcode, unmasked frame, "
                           "bad continuation or close code)");
            else if (code == WSLAY_CODE_INVALID_FRAME_PAYLOAD_DATA)
                set_reason(ws, ws->in_close_frame ? "invalid UTF-8 in the close reason"
                                                  : "invalid UTF-8 in a text message");
            else if (code == WSLAY_CODE_MESSAGE_TOO_BIG)
                set_reason(ws, "message over %zu bytes", ws->lim.max_message);
            else
                set_reason(ws, "closed with %u", code);
        }
    }
    while (ws->out_off < ws->out.len && budget > 0) {
        size_t n = ws->out.len - ws->out_off;
        ssize_t w;

        if (n > budget)
            n = budget;
        w = send(ws->fd, ws->out.ptr + ws->out_off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            set_reason(ws, "write failed: %s", strerror(errno));
            finish(ws);
            return;
        }
        ws->out_off += (size_t)w;
        ws->end.bytes_out += (uint64_t)w;
        budget -= (size_t)w;
    }
    if (ws->out_off == ws->out.len) {
        /* Drained.  A connection that is reading keeps a small buffer for
         * its next answers (no allocation per turn); a quiet one (parser
         * parked) or one that needed a big buffer gives the memory back. */
        if (ws->ctx && ws->out.cap <= MSG_KEEP)
            mcpgw_buf_reset(&ws->out);
        else
            mcpgw_buf_release(&ws->out);
        ws->out_off = 0;
        if (ws->close_out && ws->state != ST_DONE) {
            if (ws->close_received || ws->eof) {
                /* Handshake complete: the server closes the TCP connection. */
                finish(ws);
                return;
            }
            enter_linger(ws);
        }
    } else if (ws->out_off > ws->out.len / 2) {
        mcpgw_buf_consume(&ws->out, ws->out_off);
        ws->out_off = 0;
    }
    if (ws->paused && queued(ws) <= MCPGW_WS_OUTQ_LOW(ws->lim.outq_high))
        ws->paused = false;
    else if (!ws->paused && queued(ws) > ws->lim.outq_high)
        ws->paused = true;
    update_interest(ws);
    schedule_park(ws);
}

static void on_flush(struct wsd_defer *d)
{
    flush((struct wsd_ws *)((char *)d - offsetof(struct wsd_ws, flush_d)));
}

static void schedule_flush(struct wsd_ws *ws)
{
    if (ws->state != ST_DONE)
        wsd_loop_defer(ws->loop, &ws->flush_d);
}

/* Fail the connection: no more input is looked at, our close frame goes
 * after what is already framed (the parser's unframed answers are dropped). */
static void fail(struct wsd_ws *ws, uint16_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct wsd_ws *ws, uint16_t code, const char *fmt, ...)
{
    va_list ap;

    if (ws->refusing || ws->state == ST_DONE)
        return;
    ws->refusing = true;
    if (ws->ctx)
        wslay_event_shutdown_read(ws->ctx);
    if (!ws->end.reason[0]) {
        va_start(ap, fmt);
        vsnprintf(ws->end.reason, sizeof(ws->end.reason), fmt, ap);
        va_end(ap);
    }
    append_close(ws, code, ws->end.reason);
    start_closing(ws);
    schedule_flush(ws);
}

/* -- reading --------------------------------------------------------------------------- */

/* The next bytes from the client: MHD's extra_in first, then the socket,
 * within this turn's budget.  -1 with wslay's error set when there are none. */
static ssize_t take_input(struct wsd_ws *ws, wslay_event_context_ptr ctx, uint8_t *buf,
                          size_t len)
{
    ssize_t n;

    if (ws->extra_off < ws->extra_len) {
        size_t k = ws->extra_len - ws->extra_off;

        if (k > len)
            k = len;
        memcpy(buf, ws->extra + ws->extra_off, k);
        ws->extra_off += k;
        ws->end.bytes_in += k;
        if (ws->extra_off == ws->extra_len) {
            free(ws->extra);
            ws->extra = NULL;
            ws->extra_len = ws->extra_off = 0;
        }
        return (ssize_t)k;
    }
    /* A ping flood from a client that does not read would queue one pong
     * per ping: stop at a bound and let the output drain first. */
    if (ws->paused || ws->read_left == 0 ||
        wslay_event_get_queued_msg_count(ctx) > MCPGW_WS_QUEUED_FRAMES_MAX) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > ws->read_left)
        len = ws->read_left;
    do
        n = recv(ws->fd, buf, len, MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        ws->read_left -= (size_t)n;
        ws->end.bytes_in += (uint64_t)n;
        ws->last_rx = wsd_loop_now(ws->loop);
        return n;
    }
    if (n == 0) {
        ws->eof = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    } else {
        ws->io_errno = errno;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    }
    return -1;
}

/* Walk the frame headers in b[0..n) (the walk goes on from the last call)
 * and say how many of the bytes wslay may have now: all of them, or those
 * before a close frame that does not end within them.
 *
 * Why: wslay 1.1.1 checks a close reason's UTF-8 chunk by chunk, skipping
 * the first two bytes of every chunk as the status code, so a valid reason
 * that arrives in two reads is failed with 1007 (and an invalid one can
 * pass).  Given whole, a close frame is one chunk and the check is right.
 * A close frame is held back from its first byte, so it always starts
 * within b; one whose length says it is over 125 bytes is passed on for
 * wslay to refuse. */
static size_t walk_frames(struct wsd_ws *ws, const uint8_t *b, size_t n)
{
    size_t i = 0, start = 0;

    while (i < n) {
        uint8_t *h = ws->walk.head;
        size_t need;

        if (ws->walk.skip) {
            uint64_t k = ws->walk.skip < n - i ? ws->walk.skip : n - i;

            i += (size_t)k;
            ws->walk.skip -= k;
            continue;
        }
        if (ws->walk.head_len == 0) {
            start = i;
            ws->walk.close = (b[i] & 0x0f) == WSLAY_CONNECTION_CLOSE;
        }
        h[ws->walk.head_len++] = b[i++];
        if (ws->walk.head_len < 2)
            continue;
        need = 2 + ((h[1] & 0x7f) == 126 ? 2 : (h[1] & 0x7f) == 127 ? 8 : 0) +
               (h[1] & 0x80 ? 4 : 0);
        if (ws->walk.close && (h[1] & 0x7f) > 125)
            ws->walk.close = false;
        if (ws->walk.head_len < need)
            continue;
        if ((h[1] & 0x7f) < 126) {
            ws->walk.skip = h[1] & 0x7f;
        } else {
            size_t m = (h[1] & 0x7f) == 126 ? 2 : 8;

            ws->walk.skip = 0;
            for (size_t k = 0; k < m; k++)
                ws->walk.skip = ws->walk.skip << 8 | h[2 + k];
        }
        ws->walk.head_len = 0;
    }
    if (ws->walk.close && (ws->walk.head_len || ws->walk.skip)) {
        /* Walk that frame again when the rest of it is here. */
        ws->walk.head_len = 0;
        ws->walk.skip = 0;
        return start;
    }
    return n;
}

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    struct wsd_ws *ws = ud;
    size_t have = ws->held_len, pass;
    ssize_t n;

    /* wslay asks for its free buffer space: at least 4 KiB less a partial
     * header, never less than a held close frame. */
    if (len <= have) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    memcpy(buf, ws->held, have);
    ws->held_len = 0;
    n = take_input(ws, ctx, buf + have, len - have);
    if (n < 0) {
        memcpy(ws->held, buf, have);
        ws->held_len = (uint8_t)have;
        return -1;
    }
    have += (size_t)n;
    pass = walk_frames(ws, buf, have);
    if (pass < have) {
        ws->held_len = (uint8_t)(have - pass);
        memcpy(ws->held, buf + pass, ws->held_len);
    }
    if (pass == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    ws->fed += pass;
    return (ssize_t)pass;
}

static void on_frame_start(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_start_arg *arg, void *ud)
{
    struct wsd_ws *ws = ud;
    uint64_t len = arg->payload_length;

    /* wslay accepts only minimal length encodings and (from clients) masked
     * frames, so the header's size follows from the payload's. */
    ws->frame_bytes = 2 + (len < 126 ? 0 : len < 65536 ? 2 : 8) + 4 + len;
    ws->in_data_frame = false;
    ws->in_close_frame = arg->opcode == WSLAY_CONNECTION_CLOSE;
    if (ws->refusing)
        return;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_CONTINUATION_FRAME)
        ws->msg_open = !arg->fin;
    switch (arg->opcode) {
    case WSLAY_BINARY_FRAME:
        /* Our protocol is JSON text (docs/protocol.md): a binary message
         * is refused as a whole, before its payload is read. */
        fail(ws, 1003, "binary messages are not accepted");
        return;
    case WSLAY_TEXT_FRAME:
        ws->fragments = 0;
        mcpgw_buf_reset(&ws->msg);
        /* fall through */
    case WSLAY_CONTINUATION_FRAME:
        if (++ws->fragments > ws->lim.max_fragments) {
            fail(ws, 1008, "message in more than %u fragments", ws->lim.max_fragments);
            return;
        }
        ws->in_data_frame = true;
        return;
    case WSLAY_CONNECTION_CLOSE:
        /* A close body is empty or starts with a 2-byte code (RFC 6455
         * 5.5.1); wslay reads a 1-byte body as "no code". */
        if (arg->payload_length == 1)
            fail(ws, 1002, "close frame with a 1-byte body");
        return;
    default:
        return;
    }
}

static void on_frame_chunk(wslay_event_context_ptr ctx,
                           const struct wslay_event_on_frame_recv_chunk_arg *arg, void *ud)
{
    struct wsd_ws *ws = ud;

    if (!ws->in_data_frame || ws->refusing || ws->state != ST_OPEN || !arg->data_length)
        return;
    if (mcpgw_buf_add(&ws->msg, arg->data, arg->data_length) < 0) {
        mcpgw_buf_release(&ws->msg);
        fail(ws, 1009, "message over %zu bytes", ws->lim.max_message);
    }
}

static void on_frame_end(wslay_event_context_ptr ctx, void *ud)
{
    struct wsd_ws *ws = ud;

    ws->in_data_frame = false;
    ws->in_close_frame = false;
    ws->consumed += ws->frame_bytes;
}

static void on_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *ud)
{
    struct wsd_ws *ws = ud;

    switch (arg->opcode) {
    case WSLAY_PONG:
        ws->ping_out = false;
        ws->missed = 0;
        return;
    case WSLAY_CONNECTION_CLOSE:
        ws->close_received = true;
        ws->end.peer_code = arg->status_code;
        if (ws->state == ST_OPEN && !ws->refusing)
            ws->end.peer_first = true;
        return;
    case WSLAY_TEXT_FRAME:
        if (ws->refusing || ws->state != ST_OPEN)
            return;
        ws->end.msgs_in++;
        ws->last_msg = wsd_loop_now(ws->loop);
        ws->h.message(ws->ud, ws->msg.ptr ? ws->msg.ptr : "", ws->msg.len);
        if (ws->msg.cap > MSG_KEEP)
            mcpgw_buf_release(&ws->msg);
        else
            mcpgw_buf_reset(&ws->msg);
        return;
    default:
        return;
    }
}

static void drain_linger(struct wsd_ws *ws)
{
    char sink[4096];
    size_t left = MCPGW_WS_READ_BUDGET;

    while (left > 0) {
        ssize_t n = recv(ws->fd, sink, sizeof(sink), MSG_DONTWAIT);

        if (n > 0) {
            left -= (size_t)n > left ? left : (size_t)n;
            ws->end.bytes_in += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        finish(ws);             /* EOF or error: the peer is done */
        return;
    }
}

static void do_read(struct wsd_ws *ws)
{
    int rc;

    if (ws->state == ST_LINGER) {
        drain_linger(ws);
        return;
    }
    if (ws->state == ST_DONE || !unpark(ws) || !wslay_event_get_read_enabled(ws->ctx))
        return;
    ws->read_left = MCPGW_WS_READ_BUDGET;
    rc = wslay_event_recv(ws->ctx);
    if (ws->state == ST_DONE)
        return;
    if (rc != 0) {
        if (ws->eof) {
            if (!ws->close_out)
                set_reason(ws, "client went away without a close frame");
            finish(ws);
            return;
        }
        if (ws->io_errno) {
            set_reason(ws, "read failed: %s", strerror(ws->io_errno));
            finish(ws);
            return;
        }
        if (rc == WSLAY_ERR_NOMEM) {
            set_reason(ws, "out of memory reading a frame");
            finish(ws);
            return;
        }
        /* wslay_frame_recv() refused a frame header: a control frame over
         * 125 bytes or fragmented, a non-minimal length, a 64-bit length
         * with its top bit set. */
        fail(ws, 1002, "protocol error (bad frame length or control frame)");
        return;
    }
    if (!wslay_event_get_read_enabled(ws->ctx))
        /* wslay stopped reading: the peer's close arrived (its echo is
         * queued) or wslay failed the connection (its close is queued). */
        start_closing(ws);
    else if (parkable(ws) && wsd_loop_now(ws->loop) - ws->last_msg >= MCPGW_WS_PARK_AFTER)
        park(ws);
    schedule_flush(ws);
    if (ws->extra_len > ws->extra_off)
        wsd_loop_defer(ws->loop, &ws->read_d);
}

static void on_read_defer(struct wsd_defer *d)
{
    do_read((struct wsd_ws *)((char *)d - offsetof(struct wsd_ws, read_d)));
}

static void on_io(struct wsd_watch *w, uint32_t events)
{
    struct wsd_ws *ws = (struct wsd_ws *)((char *)w - offsetof(struct wsd_ws, watch));

    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
        do_read(ws);
    if ((events & EPOLLOUT) && ws->state != ST_DONE)
        flush(ws);
}

/* -- the end --------------------------------------------------------------------------- */

static void on_end(struct wsd_defer *d)
{
    struct wsd_ws *ws = (struct wsd_ws *)((char *)d - offsetof(struct wsd_ws, end_d));

    ws->h.ended(ws->ud, &ws->end);
}

static void finish(struct wsd_ws *ws)
{
    if (ws->state == ST_DONE)
        return;
    ws->state = ST_DONE;
    if (!ws->close_out)
        ws->end.code = 1006;
    if (!ws->end.reason[0])
        snprintf(ws->end.reason, sizeof(ws->end.reason), "closed");
    wsd_loop_unwatch(ws->loop, &ws->watch);
    wsd_loop_timer_stop(ws->loop, &ws->timer);
    wsd_loop_undefer(ws->loop, &ws->flush_d);
    wsd_loop_undefer(ws->loop, &ws->read_d);
    mcpgw_buf_release(&ws->out);
    mcpgw_buf_release(&ws->msg);
    ws->out_off = 0;
    wsd_loop_defer(ws->loop, &ws->end_d);
}

/* -- public ---------------------------------------------------------------------------- */

int wsd_ws_new(struct wsd_loop *loop, int fd, const void *extra, size_t extra_len,
               const struct wsd_ws_limits *lim, const struct wsd_ws_handler *h, void *ud,
               struct wsd_ws **out)
{
    struct wsd_ws *ws = calloc(1, sizeof(*ws));
    int fl, rc;

    if (!ws)
        return -ENOMEM;
    ws->loop = loop;
    ws->fd = fd;
    ws->lim = *lim;
    ws->h = *h;
    ws->ud = ud;
    wsd_watch_init(&ws->watch, on_io);
    mcpgw__timer_init(&ws->timer, on_timer);
    wsd_defer_init(&ws->flush_d, on_flush);
    wsd_defer_init(&ws->read_d, on_read_defer);
    wsd_defer_init(&ws->end_d, on_end);
    mcpgw_buf_init(&ws->msg, lim->max_message);
    /* Room for outq_max, one message that found the queue just under it,
     * and control frames. */
    mcpgw_buf_init(&ws->out, lim->outq_max + lim->max_message + 64 * 1024);
    ws->last_rx = ws->last_msg = wsd_loop_now(loop);
    if (extra_len) {
        if (!(ws->extra = malloc(extra_len))) {
            rc = -ENOMEM;
            goto fail;
        }
        memcpy(ws->extra, extra, extra_len);
        ws->extra_len = extra_len;
    }
    fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        rc = -errno;
        goto fail;
    }
    /* Our writes are already batched per loop turn; Nagle would only hold
     * an answer back for the peer's delayed ACK.  (Not TCP: no-op.) */
    fl = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &fl, sizeof(fl));
    if ((rc = wsd_loop_watch(loop, &ws->watch, fd, EPOLLIN)) < 0)
        goto fail;
    if (next_deadline(ws) != INT64_MAX)
        rearm(ws, next_deadline(ws));
    if (ws->extra_len)
        wsd_loop_defer(loop, &ws->read_d);
    *out = ws;
    return 0;
fail:
    wsd_loop_unwatch(loop, &ws->watch);
    free(ws->extra);
    free(ws);
    return rc;
}

void wsd_ws_free(struct wsd_ws *ws)
{
    if (!ws)
        return;
    wsd_loop_unwatch(ws->loop, &ws->watch);
    wsd_loop_timer_stop(ws->loop, &ws->timer);
    wsd_loop_undefer(ws->loop, &ws->flush_d);
    wsd_loop_undefer(ws->loop, &ws->read_d);
    wsd_loop_undefer(ws->loop, &ws->end_d);
    wslay_event_context_free(ws->ctx);
    mcpgw_buf_release(&ws->out);
    mcpgw_buf_release(&ws->msg);
    free(ws->extra);
    free(ws);
}

int wsd_ws_send(struct wsd_ws *ws, const char *text, size_t len)
{
    size_t q;
    int rc;

    if (ws->state != ST_OPEN || ws->refusing)
        return MCPGW_ESHUTDOWN;
    q = queued(ws);
    if (q > ws->lim.outq_max) {
        fail(ws, 1008, "client is not reading: %zu bytes queued, limit %zu", q,
             ws->lim.outq_max);
        return MCPGW_ETOOBIG;
    }
    rc = put_frame(ws, WSLAY_TEXT_FRAME, text, len);
    if (rc == MCPGW_ETOOBIG) {
        fail(ws, 1008, "output queue full");
        return rc;
    }
    if (rc < 0)
        return rc;
    ws->end.msgs_out++;
    if (!ws->paused && q + len > ws->lim.outq_high)
        ws->paused = true;      /* stop reading now, not at the flush */
    schedule_flush(ws);
    return 0;
}

void wsd_ws_close(struct wsd_ws *ws, uint16_t code, const char *reason)
{
    if (ws->state != ST_OPEN || ws->refusing)
        return;
    set_reason(ws, "%s", reason);
    /* The parser's queued answers (pongs) go first. */
    if (ws->ctx && wslay_event_want_write(ws->ctx) && wslay_event_send(ws->ctx) < 0) {
        set_reason(ws, "output queue over its ceiling");
        finish(ws);
        return;
    }
    append_close(ws, code, reason);
    start_closing(ws);
    schedule_flush(ws);
}

bool wsd_ws_open(const struct wsd_ws *ws)
{
    return ws->state == ST_OPEN && !ws->refusing;
}

size_t wsd_ws_queued(const struct wsd_ws *ws)
{
    return queued(ws);
}
