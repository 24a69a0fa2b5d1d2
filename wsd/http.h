/* http.h - mcpgw-wsd's HTTP side: libmicrohttpd on the daemon's loop.
 *
 * One MHD daemon per listen socket, each in "external" epoll mode: its
 * epoll fd is a watch in the daemon's loop and MHD_run() runs on the loop
 * thread, so the access handler, the upgrade handler and the connection
 * notifications all run there, with no locks.  GET /ws with a valid
 * WebSocket handshake is upgraded and handed to a session (session.h);
 * a request under /api/v1 goes to the shared REST routes on worker threads
 * (rest.h); everything else is answered here with a JSON error.
 *
 * The handshake is checked in this order, each failure answered before any
 * upgrade: the path (404), the method (405), shutting down (503),
 * connection limits (503, saying which), Upgrade/Connection (426),
 * Sec-WebSocket-Version 13 (426 with Sec-WebSocket-Version: 13), the key
 * (400), a token in the URL (400), Origin (403), credentials (401).
 */
#ifndef MCPGW_WSD_HTTP_H
#define MCPGW_WSD_HTTP_H

#include <stdbool.h>

#include "wsd.h"

/* Start serving on listen_fd (bound and listening; taken over: closed by
 * wsd_http_free).  name is the address for the logs.  0 and *out, or -errno
 * / MCPGW_ECONFIG with a message in err. */
int wsd_http_start(struct wsd *d, int listen_fd, const char *name, struct wsd_http **out,
                   char *err, size_t errlen);

/* How long the loop may wait before MHD must run again (ms), or -1. */
int wsd_http_timeout(struct wsd_http *h);
/* Run MHD if it asked for a deadline (call after every loop turn). */
void wsd_http_after_turn(struct wsd_http *h);
/* Run MHD at the end of this turn: a REST worker resumed one of its
 * connections (rest.h). */
void wsd_http_kick(struct wsd_http *h);

/* Stop accepting (the listen socket is closed; a unix socket's path is
 * removed).  Connections being served go on. */
void wsd_http_quiesce(struct wsd_http *h);

/* Stop the MHD daemon: every session must have released its socket first.
 * NULL-safe. */
void wsd_http_free(struct wsd_http *h);

/* The Origin rule, for tests and the handshake: origin (NULL: none sent)
 * against conf->allowed_origins, or when that is absent, loopback origins
 * and same-origin requests to an IP-literal Host. */
bool wsd_origin_allowed(const struct mcpgw_conf *conf, const char *origin, const char *host);

/* Sec-WebSocket-Accept for key (RFC 6455 4.2.2): out gets 28 chars + NUL.
 * false if key is not the base64 of 16 bytes. */
bool wsd_ws_accept(const char *key, char out[29]);

#endif
