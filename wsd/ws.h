/* ws.h - one server-side WebSocket connection (RFC 6455) in the event loop.
 *
 * Framing is wslay's (its event API, which does no I/O of its own): it
 * parses and validates client frames (masking, reserved bits and opcodes,
 * control-frame rules, minimal length encodings, UTF-8 of text messages
 * across fragment boundaries, close codes), answers pings and echoes the
 * peer's close.  This module does the socket I/O, without blocking:
 *  - input: libmicrohttpd's extra_in (bytes read past the upgrade request)
 *    is fed to the parser before the socket is read; at most
 *    MCPGW_WS_READ_BUDGET bytes are read per turn;
 *  - output: frames are serialised into one output queue, written first
 *    at the end of the turn (one send for many answers), at most
 *    MCPGW_WS_WRITE_BUDGET bytes per turn, with EPOLLOUT armed only when a
 *    write was short.  Above the high mark the client is no longer read;
 *    below MCPGW_WS_OUTQ_LOW(high) it is read again; a message sent while
 *    more than outq_max bytes are queued closes the connection (1008);
 *  - liveness: a client silent for ping_interval_ms gets a ping; after
 *    max_missed_pongs unanswered pings it is dropped; a client silent for
 *    idle_timeout_ms is closed (1001);
 *  - closing: our close frame goes out after everything queued before it;
 *    then the write side is shut and the input drained until the peer hangs
 *    up or close_timeout_ms passes, so the close frame is not lost to a
 *    TCP reset.  The socket is never closed here: the owner releases it
 *    (MHD_upgrade_action(CLOSE)) when told the connection has ended.
 *
 * Close codes sent: 1000/echo when the client closes, 1001 idle or going
 * away, 1002 protocol error, 1003 binary message, 1007 invalid UTF-8, 1008
 * policy (too many fragments, output queue over the limit, owner's
 * reasons), 1009 message too big.
 *
 * One thread: the loop's.  Messages are delivered and the end is reported
 * through the handler; the handler may call wsd_ws_send()/wsd_ws_close()
 * from message(), and wsd_ws_free() from ended() (which runs from the
 * loop's deferred work, never from inside this module's own frames).
 */
#ifndef MCPGW_WSD_WS_H
#define MCPGW_WSD_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop.h"

struct wsd_ws;

struct wsd_ws_limits {
    size_t max_message;         /* a message over this closes with 1009 */
    unsigned max_fragments;     /* a message in more frames closes with 1008 */
    size_t outq_high;           /* stop reading above this many queued bytes */
    size_t outq_max;            /* closing (1008) when a message finds more queued */
    int ping_interval_ms;       /* ping a silent client this often; 0: never */
    int max_missed_pongs;       /* drop a client after this many unanswered pings */
    int idle_timeout_ms;        /* close (1001) a client silent this long; 0: never */
    int close_timeout_ms;       /* wait this long for the peer to finish closing */
};

/* How a connection ended, for the log. */
struct wsd_ws_end {
    uint16_t code;              /* close code we sent; 1006 when none went out */
    uint16_t peer_code;         /* close code the peer sent; 0 if it sent none */
    bool peer_first;            /* the peer started the close */
    char reason[128];           /* e.g. "client closed", "invalid UTF-8 in a text message" */
    uint64_t bytes_in, bytes_out, msgs_in, msgs_out;
};

struct wsd_ws_handler {
    /* One complete text message (valid UTF-8; len bytes, NUL after them),
     * borrowed until return. */
    void (*message)(void *ud, const char *data, size_t len);
    /* The connection is over and the socket is no longer used: release it
     * and free the ws (here or later).  Runs exactly once. */
    void (*ended)(void *ud, const struct wsd_ws_end *end);
};

/* Take over the upgraded socket fd (made non-blocking here).  extra holds
 * extra_len bytes already read past the upgrade request (copied; may be
 * NULL).  h and lim are copied.  0 and *out; -errno or -ENOMEM on failure,
 * then nothing is registered and the caller still owns fd. */
int wsd_ws_new(struct wsd_loop *loop, int fd, const void *extra, size_t extra_len,
               const struct wsd_ws_limits *lim, const struct wsd_ws_handler *h, void *ud,
               struct wsd_ws **out);

/* Unregister and free; does not close the fd and does not call ended().
 * NULL-safe. */
void wsd_ws_free(struct wsd_ws *ws);

/* Queue one text message (len bytes of UTF-8, copied).  0; MCPGW_ESHUTDOWN
 * when the connection is closing (the message is dropped); MCPGW_ETOOBIG
 * when more than outq_max bytes were already queued (the connection is then
 * being closed with 1008); -ENOMEM. */
int wsd_ws_send(struct wsd_ws *ws, const char *text, size_t len);

/* Start the closing handshake with code and a short ASCII reason (cut at
 * 123 bytes).  Messages queued before are sent first; later sends are
 * dropped and received messages ignored.  No-op if already closing. */
void wsd_ws_close(struct wsd_ws *ws, uint16_t code, const char *reason);

/* Whether messages can still be sent. */
bool wsd_ws_open(const struct wsd_ws *ws);

/* Bytes queued for the client (framed and not yet framed). */
size_t wsd_ws_queued(const struct wsd_ws *ws);

/* Whether the input parser is parked (freed while the connection is quiet;
 * see ws.c).  For tests and statistics. */
bool wsd_ws_parked(const struct wsd_ws *ws);

/* Free the frame serialiser all connections share (made on first use).
 * Call once at exit, after the last connection is freed. */
void wsd_ws_cleanup(void);

#endif
