/* cors.h - which browser origins may use the gateway, and the CORS headers.
 *
 * One setting, gateway.allowedOrigins, governs both the WebSocket Origin
 * check (mcpgw-wsd, against cross-site WebSocket hijacking) and CORS on the
 * REST routes and the event stream:
 *   absent  pages served from loopback (http or https, localhost, 127.0.0.0/8,
 *           [::1], any port) -- our users' examples open an HTML page from
 *           localhost and use fetch/EventSource against the gateway;
 *   a list  exactly those origins;
 *   []      no browser origin at all.
 * With requireAuth on (absent or a list), a same-origin page (Origin's
 * host[:port] equal to the Host header) is allowed too, so a UI served by
 * the same site works without configuration.  Without requireAuth it is not:
 * a DNS-rebinding page would be "same origin" with an open gateway.
 *
 * Cookies are never credentials anywhere, so responses never carry
 * Access-Control-Allow-Credentials.
 */
#ifndef MCPGW_CORS_H
#define MCPGW_CORS_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "http.h"
#include "origin.h"

/* Whether origin is a loopback origin (host localhost, 127.x.y.z, [::1]). */
bool mcpgw_origin_is_loopback(const char *origin);

/* Whether a request with this Origin header may proceed.  origin NULL (no
 * Origin header: not a cross-origin browser request) is allowed; "null" and
 * malformed origins are not.  host is the request's Host header (may be
 * NULL).  Thread-safe; conf is only read. */
bool mcpgw_origin_allowed(const struct mcpgw_conf *conf, const char *origin, const char *host);

/* The CORS headers for an allowed cross-origin response: fills h (room for
 * at least 3) and returns how many; 0 when origin is NULL.  The header
 * values point into origin or static strings. */
size_t mcpgw_cors_headers(const char *origin, struct mcpgw_http_header *h);

/* The headers of an answer to a preflight (OPTIONS with Origin and
 * Access-Control-Request-Method) for a route allowing methods (e.g.
 * "GET, OPTIONS"): fills h (room for at least 6) and returns how many. */
size_t mcpgw_cors_preflight_headers(const char *origin, const char *methods,
                                    struct mcpgw_http_header *h);

#endif
