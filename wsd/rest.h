/* rest.h - mcpgw-wsd's /api/v1 routes on the port of /ws ("standalone mode").
 *
 * The same routes mcpgw-fcgi serves (shared/routes.h: health, servers,
 * tools, tool calls - streamed with Accept: text/event-stream - tickets,
 * CORS preflight and the /api/v1/events stream), run by shared/routes.c
 * behind a mcpgw_http_request / mcpgw_http_writer made from a
 * libmicrohttpd request.  No route logic lives here.
 *
 * THREADS.  libmicrohttpd runs on the loop thread (http.h), and so does
 * every function below.  A request is read there - its head, and its body
 * up to gateway.limits.maxMessageBytes - then its connection is suspended
 * (MHD_suspend_connection) and the request handed to a worker thread,
 * which runs mcpgw_routes_handle() and blocks as long as the route needs
 * (hub calls are posted to the loop thread; streams wait for events).
 * Two kinds of workers with separate caps, as in mcpgw-fcgi, so open
 * streams never starve REST calls:
 *   - REST: gateway.websocket.restThreads threads, made at start; at most
 *     MCPGW_WSD_REST_BACKLOG per thread wait for one, further requests get
 *     503 (rate_limited, Retry-After) at once;
 *   - event streams (GET /api/v1/events): a thread each with a small stack,
 *     up to gateway.sse.maxStreams; the next gets 503 at once.
 *
 * OUTPUT.  A worker writes into its request's queue (MCPGW_WSD_REST_OUTQ
 * bytes at most: a writer that would overfill it waits).  The response is
 * read from that queue by libmicrohttpd on the loop thread (a content-reader
 * callback); when the queue is empty the callback suspends the connection
 * again, and the worker resumes it (MHD_resume_connection: thread-safe, it
 * wakes the loop through MHD's ITC) once it has flushed more, or finished.
 *
 * A CLIENT THAT GOES AWAY is seen by libmicrohttpd when it next sends to
 * it; the request is then completed and the worker's next write fails, so
 * a route stops at its next write or heartbeat.  A suspended connection is
 * not watched by libmicrohttpd at all, so an event stream also polls a
 * duplicate of the socket for the hang-up (the writer's hangup_fd) and is
 * over the moment its client closes.
 */
#ifndef MCPGW_WSD_REST_H
#define MCPGW_WSD_REST_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "events.h"
#include "hub.h"

struct wsd_rest;
struct wsd_rest_req;

/* Make the routes over hub (and events, NULL: /api/v1/events answers 503)
 * and start the REST threads.  The routes read the hub's configuration,
 * which outlives a SIGHUP reload.  0 and *out, or -errno / MCPGW_ECONFIG
 * with a message in err. */
int wsd_rest_start(mcpgw_hub *hub, mcpgw_events *events, struct wsd_rest **out, char *err,
                   size_t errlen);

/* An eventfd that becomes readable when a worker has resumed a connection:
 * the loop drains it (read 8 bytes) and runs libmicrohttpd, which does not
 * wake up for that by itself in our mode.  -1 for r NULL. */
int wsd_rest_wake_fd(struct wsd_rest *r);

/* libmicrohttpd's URI callback: a request context for a request whose raw
 * URI (as sent: path and query, percent-encoded) is under /api/v1, NULL for
 * any other URI (and when out of memory: the request is then not one of
 * ours and gets the daemon's 404).  r may be NULL (no REST). */
struct wsd_rest_req *wsd_rest_req_new(struct wsd_rest *r, const char *uri);

/* The access handler's part for a request with a context: every call for
 * it goes here (head, body chunks, the call after a resume).  remote is
 * the peer's address for the logs. */
enum MHD_Result wsd_rest_access(struct wsd_rest_req *q, struct MHD_Connection *c,
                                const char *method, const char *upload_data,
                                size_t *upload_data_size, const char *remote);

/* The request is over for libmicrohttpd (its NOTIFY_COMPLETED): sent, or
 * the client went away.  Drops libmicrohttpd's hold on q. */
void wsd_rest_completed(struct wsd_rest_req *q);

/* SIGTERM: new requests get 503, open streams end with their final
 * stream_end event, and with cancel_calls, tool calls still running are
 * cancelled (answered 503).  Idempotent. */
void wsd_rest_shutdown(struct wsd_rest *r, bool cancel_calls);

/* Requests handed to workers and not finished by them (waiting for a
 * thread, or running), and requests libmicrohttpd has not completed yet
 * (*open; includes the first).  NULL-safe: 0. */
unsigned wsd_rest_busy(struct wsd_rest *r, unsigned *open);

/* Make every write of every request fail (the client counts as gone), so
 * that a worker stuck behind a client that reads nothing returns. */
void wsd_rest_abort(struct wsd_rest *r);

/* Stop: requests still waiting for a thread are served (the routes answer
 * 503 once shut down), then every thread is joined.  Blocks until every
 * worker is done: call it once wsd_rest_busy() is 0 (the loop must run for
 * workers in hub calls to get their answers, and for a cancellation that
 * wsd_rest_shutdown(r, true) posted to the hub to run before the routes
 * are freed).  Afterwards every request that reaches the access handler
 * gets 503.  libmicrohttpd may still hold contexts: they are released by
 * wsd_rest_completed() when it stops, before wsd_rest_free(). */
void wsd_rest_stop(struct wsd_rest *r);

/* Free (after wsd_rest_stop and after libmicrohttpd has stopped).
 * NULL-safe. */
void wsd_rest_free(struct wsd_rest *r);

#endif
