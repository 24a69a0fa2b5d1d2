/* routes.h - every /api/v1 route and the /api/v1/events stream, once.
 *
 * The front ends (mcpgw-fcgi, mcpgw-events.cgi, mcpgw-wsd's standalone
 * mode) fill a struct mcpgw_http_request, implement a mcpgw_http_writer
 * and call mcpgw_routes_handle(); docs/protocol.md describes the routes:
 *
 *   GET  /api/v1/health                    no auth; 200 serving, 503 nothing usable
 *   GET  /api/v1/servers                   servers the token may see
 *   GET  /api/v1/servers/{id}/tools        their tools (name, description, inputSchema)
 *   POST /api/v1/tools/call                {"serverId","toolName","params"}; with
 *                                          Accept: text/event-stream it streams
 *   POST /api/v1/tickets                   a single-use ticket for a browser
 *   GET  /api/v1/events                    the event stream (SSE)
 *   OPTIONS on each                        CORS preflight / Allow
 *
 * Errors are {"error": text, "code": one of codec.h's codes} with the
 * matching status.  Every 401 is the same response, whatever was wrong with
 * the credentials (missing, malformed, unknown, expired, revoked, a used
 * ticket): code auth_required, MCPGW_ROUTES_401_TEXT, and
 * WWW-Authenticate: MCPGW_ROUTES_401_CHALLENGE; mcpgw-wsd's /ws handshake
 * answers its 401s with the same.  A tool call over its token's limits
 * (gateway.tokenLimits, quota.h) is 429 rate_limited with Retry-After.
 *
 * BLOCKING.  mcpgw_routes_handle() runs the whole request on the calling
 * thread and returns when the response is complete (or the client is gone).
 * A tool call waits for the hub, so the hub must be driven by another
 * thread (mcpgw_hub_thread_start()); if the caller is the hub's loop thread
 * the routes drive the loop themselves while they wait.  An event stream
 * holds its thread until the client goes, the stream reaches
 * gateway.sse.maxStreamMs, or mcpgw_routes_shutdown().
 *
 * THREADS.  Any number of threads may call mcpgw_routes_handle() at once.
 */
#ifndef MCPGW_ROUTES_H
#define MCPGW_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"
#include "events.h"
#include "http.h"
#include "hub.h"

/* The one 401 (see above). */
#define MCPGW_ROUTES_401_TEXT \
    "authentication required: send a valid token (Authorization: Bearer <token>)"
#define MCPGW_ROUTES_401_CHALLENGE "Bearer realm=\"mcpgw\""

typedef struct mcpgw_routes mcpgw_routes;

struct mcpgw_routes_opts {
    const struct mcpgw_conf *conf;  /* borrowed; must outlive the routes */
    mcpgw_hub *hub;                 /* borrowed; NULL: no health/servers/tools/call
                                     * routes (they answer 404), as in the CGI */
    mcpgw_events *events;           /* borrowed; NULL: /api/v1/events answers 503 */
    const char *component;          /* log component: "fcgi", "sse", "wsd" */
};

/* Create the routes: loads the token file (a missing file is an empty
 * store; it is reloaded when it changes, so a revocation by `mcpgw token
 * revoke` is seen within a second).  0 and *out, or MCPGW_ECONFIG/-errno
 * with a message in err. */
int mcpgw_routes_new(const struct mcpgw_routes_opts *opts, mcpgw_routes **out, char *err,
                     size_t errlen);

/* Free; every handle call must have returned.  NULL-safe. */
void mcpgw_routes_free(mcpgw_routes *rt);

/* Serve one request.  Returns 0 when a response was sent, < 0 when the
 * client went away (or the writer failed) first. */
int mcpgw_routes_handle(mcpgw_routes *rt, const struct mcpgw_http_request *req,
                        const struct mcpgw_http_writer *w);

/* Whether the request is a long-lived event stream (GET /api/v1/events),
 * so a front end can give it a thread of its own. */
bool mcpgw_routes_is_stream(const struct mcpgw_http_request *req);

/* Begin shutting down (any thread, also a signal-watching one): new
 * requests get 503, open streams end at once with a final stream_end event
 * and a retry: hint, and - if cancel_calls - tool calls in flight are
 * cancelled (answered 503).  Idempotent.  With cancel_calls false it is
 * async-signal-safe (a CGI's SIGTERM handler calls it). */
void mcpgw_routes_shutdown(mcpgw_routes *rt, bool cancel_calls);

/* Requests being handled now, and how many of them are streams. */
unsigned mcpgw_routes_active(mcpgw_routes *rt, unsigned *streams);

/* The route path inside a request path: the part from "/api/v1" on, so the
 * gateway can be mounted under any prefix ("/mcpgw/api/v1/health").  NULL
 * if the path has no /api/v1 segment. */
const char *mcpgw_routes_path(const char *decoded_path);

#endif
