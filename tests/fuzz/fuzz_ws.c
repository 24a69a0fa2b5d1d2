/* fuzz_ws.c - any client byte stream into mcpgw-wsd's WebSocket connection.
 *
 * wsd/ws.c (over wslay) runs in the real event loop on one end of a
 * socketpair, as tests/check_ws.c drives it; this target plays the client
 * on the other end.  Input:
 *
 *   byte 0   limits: max message 16 B..2 KiB, 1..22 fragments; small socket
 *            buffers and a client that stops reading (backpressure); pings
 *            every millisecond (liveness timers)
 *   byte 1   the owner: echo each message, ignore it, echo it four times,
 *            or close (1000/1001/1008) at the Nth; and whether the rest is
 *            raw bytes or frame records (below)
 *   byte 2   how many leading bytes come as libmicrohttpd's extra_in
 *   byte 3   the split: the largest write and a seed for the write sizes
 *   rest     the client's bytes.  As records: a first header byte as is
 *            (FIN, RSV, opcode), a length byte (bit 7: send unmasked)
 *            and that many payload bytes - or, for 0x7f, a 16-bit length
 *            and one byte the payload repeats; the harness masks it
 *            (RFC 6455 5.3), so mutations stay frames.
 *
 * Checked: every message is valid UTF-8 within the limit and NUL-terminated;
 * the server's output is whole, unmasked frames with clear RSV bits, only
 * text, close, pong (and ping when pinging) opcodes, control frames final
 * and at most 125 bytes; the text frames are the messages the owner sent,
 * in order, and all of them when our close went out; at most one close,
 * nothing after it, its code one of 1000 1001 1002 1003 1007 1008 1009 or
 * the peer's own (valid) code echoed, equal to what the end reports, with
 * a UTF-8 reason; the output queue stays within its ceiling after every
 * turn; the connection ends (ended() exactly once) soon after the client
 * finishes.  In the plain configuration the same bytes are also sent in
 * one write: the messages and the close codes must be the same whatever
 * the split (a read is never a message).
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"
#include "err.h"
#include "limits.h"
#include "loop.h"
#include "theap.h"
#include "ws.h"

#define MAX_MSGS 256
#define END_WAIT_MS 5000

enum owner { ECHO, IGNORE, ECHO4, CLOSE_AT };

struct run {
    /* setup */
    struct wsd_ws_limits lim;
    enum owner owner;
    int close_at;
    uint16_t close_code;
    bool small_buffers, lazy_reader, pings;
    /* state */
    struct wsd_ws *ws;
    int cfd, sfd;
    int nmsgs;
    struct mcpgw_buf msgs;      /* every message, one after the other */
    size_t msg_len[MAX_MSGS];
    struct mcpgw_buf sent;      /* what the owner queued, the same way */
    size_t sent_len[MAX_MSGS * 4];
    int nsent;
    int ended;
    struct wsd_ws_end end;
    struct mcpgw_buf wire;      /* the server's bytes as the client read them */
};

static struct wsd_loop *loop;

static bool utf8_ok(const unsigned char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned c = s[i], need, min, cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            need = 1, min = 0x80, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            need = 2, min = 0x800, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            need = 3, min = 0x10000, cp = c & 0x07;
        else
            return false;
        if (n - i <= need)
            return false;
        for (unsigned k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += need + 1;
    }
    return true;
}

static void owner_send(struct run *r, const char *data, size_t len)
{
    if (wsd_ws_send(r->ws, data, len) == 0 && r->nsent < MAX_MSGS * 4) {
        assert(mcpgw_buf_add(&r->sent, data, len) == 0);
        r->sent_len[r->nsent++] = len;
    }
}

static void on_message(void *ud, const char *data, size_t len)
{
    struct run *r = ud;

    assert(r->ended == 0);
    assert(data[len] == '\0');
    assert(len <= r->lim.max_message);
    assert(utf8_ok((const unsigned char *)data, len));
    if (r->nmsgs == MAX_MSGS)
        return;
    assert(mcpgw_buf_add(&r->msgs, data, len) == 0);
    r->msg_len[r->nmsgs++] = len;
    switch (r->owner) {
    case ECHO:
        owner_send(r, data, len);
        break;
    case ECHO4:
        for (int i = 0; i < 4; i++)
            owner_send(r, data, len);
        break;
    case CLOSE_AT:
        if (r->nmsgs == r->close_at)
            wsd_ws_close(r->ws, r->close_code, data);   /* a reason from the client */
        else
            owner_send(r, data, len);
        break;
    case IGNORE:
        break;
    }
}

static void on_ended(void *ud, const struct wsd_ws_end *end)
{
    struct run *r = ud;

    r->ended++;
    r->end = *end;
    /* What the daemon does: MHD_upgrade_action(CLOSE) closes the socket. */
    close(r->sfd);
    r->sfd = -1;
}

static const struct wsd_ws_handler handler = { on_message, on_ended };

/* Read what the server wrote (all of it, unless the client is lazy). */
static void client_read(struct run *r, bool force)
{
    char buf[65536];

    if (r->lazy_reader && !force)
        return;
    for (;;) {
        ssize_t n = recv(r->cfd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n <= 0)
            return;
        assert(mcpgw_buf_add(&r->wire, buf, (size_t)n) == 0);
    }
}

static void turn(struct run *r)
{
    assert(wsd_loop_turn(loop, 0) == 0);
    if (!r->ended) {
        size_t cap = r->lim.outq_max + r->lim.max_message + 65536 +
                     (MCPGW_WS_QUEUED_FRAMES_MAX + 1) * 125 + 8192;

        assert(wsd_ws_queued(r->ws) <= cap);
    }
}

static uint32_t next_rand(uint32_t *s)
{
    uint32_t x = *s;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *s = x;
}

/* Run the connection over stream[0..n): extra bytes as extra_in, the rest
 * in writes of 1..maxchunk bytes (maxchunk 0: one write). */
static void run(struct run *r, const unsigned char *stream, size_t n, size_t extra,
                size_t maxchunk, uint32_t seed)
{
    int sv[2], stalls = 0;
    size_t off = extra;
    int64_t deadline;

    assert(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    r->sfd = sv[0];
    r->cfd = sv[1];
    assert(fcntl(r->cfd, F_SETFL, O_NONBLOCK) == 0);
    if (r->small_buffers) {
        int small = 4096;

        setsockopt(r->sfd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
        setsockopt(r->cfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    mcpgw_buf_init(&r->msgs, 4u * 1024 * 1024);
    mcpgw_buf_init(&r->sent, 16u * 1024 * 1024);
    mcpgw_buf_init(&r->wire, 64u * 1024 * 1024);
    assert(wsd_ws_new(loop, r->sfd, stream, extra, &r->lim, &handler, r, &r->ws) == 0);
    seed |= 1;
    while (off < n && !r->ended) {
        size_t k = maxchunk ? 1 + next_rand(&seed) % maxchunk : n - off;
        ssize_t w;

        if (k > n - off)
            k = n - off;
        w = send(r->cfd, stream + off, k, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            off += (size_t)w;
            stalls = 0;
        } else {
            assert(errno == EAGAIN || errno == EWOULDBLOCK || errno == EPIPE ||
                   errno == ECONNRESET);
            if (errno == EPIPE || errno == ECONNRESET)
                break;
            /* The server stopped reading (over its high mark): a lazy
             * client starts reading after a while, as any client would. */
            if (++stalls > 64)
                r->lazy_reader = false;
        }
        turn(r);
        turn(r);
        client_read(r, false);
    }
    shutdown(r->cfd, SHUT_WR);
    r->lazy_reader = false;
    deadline = mcpgw__mono_ms() + END_WAIT_MS;
    while (!r->ended) {
        if (mcpgw__mono_ms() > deadline) {
            fprintf(stderr, "the connection did not end within %d ms\n", END_WAIT_MS);
            abort();
        }
        assert(wsd_loop_turn(loop, 5) == 0);
        client_read(r, true);
    }
    /* ended() runs from deferred work: nothing of the ws is used after it. */
    assert(r->ended == 1);
    wsd_ws_free(r->ws);
    r->ws = NULL;
    for (;;) {
        struct pollfd p = { .fd = r->cfd, .events = POLLIN };
        char buf[65536];
        ssize_t got;

        if (poll(&p, 1, 1000) <= 0)
            break;
        got = recv(r->cfd, buf, sizeof(buf), MSG_DONTWAIT);
        if (got <= 0)
            break;
        assert(mcpgw_buf_add(&r->wire, buf, (size_t)got) == 0);
    }
    close(r->cfd);
    r->cfd = -1;
    assert(wsd_loop_turn(loop, 0) == 0);
}

static bool own_code(unsigned code)
{
    return code == 1000 || code == 1001 || code == 1002 || code == 1003 || code == 1007 ||
           code == 1008 || code == 1009;
}

static bool peer_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

/* The server's frames, as a strict client reads them. */
static void check_wire(const struct run *r)
{
    const unsigned char *p = (const unsigned char *)(r->wire.ptr ? r->wire.ptr : "");
    size_t n = r->wire.len, off = 0, texts = 0, text_off = 0;
    bool closed = false;

    while (off < n) {
        size_t hn = 2, len;
        unsigned op, fin;

        assert(!closed);        /* nothing after our close frame */
        if (n - off < 2)
            break;
        op = p[off] & 0x0f;
        fin = p[off] >> 7;
        assert((p[off] & 0x70) == 0);
        assert(!(p[off + 1] & 0x80));
        len = p[off + 1] & 0x7f;
        if (len == 126) {
            hn = 4;
            if (n - off < 4)
                break;
            len = (size_t)p[off + 2] << 8 | p[off + 3];
            assert(len >= 126);
        } else if (len == 127) {
            hn = 10;
            if (n - off < 10)
                break;
            assert(p[off + 2] == 0 && p[off + 3] == 0 && p[off + 4] == 0 && p[off + 5] == 0);
            len = (size_t)p[off + 6] << 24 | (size_t)p[off + 7] << 16 |
                  (size_t)p[off + 8] << 8 | p[off + 9];
            assert(len >= 65536);
        }
        if (n - off - hn < len)
            break;
        {
            const unsigned char *pl = p + off + hn;

            switch (op) {
            case 1:     /* text: the owner's next message */
                assert(fin);
                assert((int)texts < r->nsent);
                assert(len == r->sent_len[texts]);
                assert(memcmp(pl, r->sent.ptr + text_off, len) == 0);
                text_off += len;
                texts++;
                break;
            case 8: {
                unsigned code;

                assert(fin && len <= 125 && len != 1);
                closed = true;
                if (len == 0) {
                    assert(r->end.code == 1005);
                    break;
                }
                code = (unsigned)pl[0] << 8 | pl[1];
                assert(own_code(code) || (code == r->end.peer_code && peer_code_valid(code)));
                assert(code == r->end.code);
                assert(utf8_ok(pl + 2, len - 2));
                break;
            }
            case 9:
                assert(r->pings && fin && len == 4);
                break;
            case 10:
                assert(fin && len <= 125);
                break;
            default:
                fprintf(stderr, "server frame with opcode %u\n", op);
                abort();
            }
        }
        off += hn + len;
    }
    /* A frame may be cut only when the connection was dropped before our
     * close went out whole (the peer hung up, a write failed, a ping
     * timeout's last-chance close did not fit the socket). */
    if (off < n)
        assert(!closed);
    /* Our close went out whole: so did every message queued before it. */
    if (closed)
        assert((int)texts == r->nsent);
}

static void run_release(struct run *r)
{
    mcpgw_buf_release(&r->msgs);
    mcpgw_buf_release(&r->sent);
    mcpgw_buf_release(&r->wire);
}

/* Records -> client frames, masked (unless asked not to). */
static void build_frames(const unsigned char *in, size_t n, struct mcpgw_buf *out)
{
    static const unsigned char key[4] = { 0x5a, 0x13, 0xc4, 0x7e };
    size_t i = 0;

    while (i + 2 <= n) {
        unsigned char b0 = in[i], lb = in[i + 1];
        bool masked = !(lb & 0x80);
        size_t len = lb & 0x7f, have;
        int fill = -1;
        unsigned char h[14];
        size_t hn = 2;

        i += 2;
        if (len == 0x7f) {
            if (i + 3 > n)
                break;
            len = (size_t)in[i] << 8 | in[i + 1];
            fill = in[i + 2];
            i += 3;
        }
        h[0] = b0;
        if (len < 126) {
            h[1] = (unsigned char)len;
        } else {
            h[1] = 126;
            h[2] = (unsigned char)(len >> 8);
            h[3] = (unsigned char)len;
            hn = 4;
        }
        if (masked) {
            h[1] |= 0x80;
            memcpy(h + hn, key, 4);
            hn += 4;
        }
        if (mcpgw_buf_add(out, h, hn) < 0)
            return;
        have = fill >= 0 ? 0 : n - i < len ? n - i : len;
        for (size_t k = 0; k < len; k++) {
            /* a long payload is one byte repeated; a short one is cut
             * where the input ends */
            unsigned char c;

            if (fill < 0 && k == have)
                break;
            c = fill >= 0 ? (unsigned char)fill : in[i + k];

            if (masked)
                c ^= key[k % 4];
            if (mcpgw_buf_addc(out, (char)c) < 0)
                return;
        }
        i += have;
    }
}

static void setup(struct run *r, const uint8_t *cfg)
{
    static const uint16_t codes[] = { 1000, 1001, 1008, 1008 };

    memset(r, 0, sizeof(*r));
    r->cfd = r->sfd = -1;
    r->lim = (struct wsd_ws_limits){
        .max_message = (size_t)1 << (4 + (cfg[0] & 7)),
        .max_fragments = 1 + ((cfg[0] >> 3) & 7) * 3,
        .outq_high = MCPGW_WS_OUTQ_MIN,
        .outq_max = (cfg[0] & 0x40) ? MCPGW_WS_OUTQ_MIN : 4 * MCPGW_WS_OUTQ_MIN,
        .ping_interval_ms = (cfg[0] & 0x80) ? 1 : 0,
        .max_missed_pongs = 2,
        .idle_timeout_ms = 0,
        .close_timeout_ms = 100,
    };
    r->small_buffers = r->lazy_reader = (cfg[0] & 0x40) != 0;
    r->pings = (cfg[0] & 0x80) != 0;
    r->owner = (enum owner)(cfg[1] & 3);
    r->close_at = 1 + ((cfg[1] >> 2) & 3);
    r->close_code = codes[(cfg[1] >> 4) & 3];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct run *a, *b;
    struct mcpgw_buf framed;
    const unsigned char *stream;
    size_t n, extra, maxchunk;
    uint32_t seed;

    if (size < 4 || size > 128 * 1024)
        return 0;
    if (!loop)
        assert(wsd_loop_new(&loop) == 0);
    mcpgw_buf_init(&framed, 256u * 1024);
    if (data[1] & 0x80) {
        build_frames(data + 4, size - 4, &framed);
        stream = (const unsigned char *)(framed.ptr ? framed.ptr : "");
        n = framed.len;
    } else {
        stream = data + 4;
        n = size - 4;
    }
    extra = data[2] % 64;
    if (extra > n)
        extra = n;
    maxchunk = (size_t)1 << (data[3] & 7);
    seed = (uint32_t)data[3] * 2654435761u;

    a = calloc(1, sizeof(*a));
    b = calloc(1, sizeof(*b));
    assert(a && b);
    setup(a, data);
    run(a, stream, n, extra, maxchunk, seed);
    check_wire(a);
    /* MCPGW_FUZZ_TRACE=1: how each input ended, to see what a corpus reaches. */
    if (getenv("MCPGW_FUZZ_TRACE"))
        fprintf(stderr, "%zu bytes: %d messages in, %d out, %zu bytes out; sent %u, peer %u: %s\n",
                n, a->nmsgs, a->nsent, a->wire.len, a->end.code, a->end.peer_code, a->end.reason);
    /* Plain configuration: the split must not matter. */
    if (!(data[0] & 0xc0) && (a->owner == ECHO || a->owner == IGNORE)) {
        setup(b, data);
        run(b, stream, n, 0, 0, 1);
        check_wire(b);
        assert(a->nmsgs == b->nmsgs);
        assert(a->msgs.len == b->msgs.len);
        assert(a->msgs.len == 0 || memcmp(a->msgs.ptr, b->msgs.ptr, a->msgs.len) == 0);
        for (int i = 0; i < a->nmsgs; i++)
            assert(a->msg_len[i] == b->msg_len[i]);
        /* The code sent, not the peer's as recorded; not when the client
         * left mid-frame (1006 either way): how much of a cut frame was
         * judged before the end of the input depends on the reads (a close
         * frame reaches wslay whole or not at all, a text frame in pieces). */
        if (a->end.code != b->end.code && a->end.code != 1006 && b->end.code != 1006) {
            fprintf(stderr, "split: sent %u got %u (%s); one write: sent %u got %u (%s)\n",
                    a->end.code, a->end.peer_code, a->end.reason, b->end.code, b->end.peer_code,
                    b->end.reason);
            abort();
        }
        run_release(b);
    }
    run_release(a);
    free(a);
    free(b);
    mcpgw_buf_release(&framed);
    wsd_ws_cleanup();
    return 0;
}
