/* hub.h - the tool-dispatch library: spawns MCP servers and calls their tools.
 *
 * One hub owns every configured MCP server of a process: it spawns each on
 * first use (no shell, fds close-on-exec, signals reset, own process group,
 * environment from an allow-list), speaks MCP over its stdio (newline-framed
 * JSON-RPC 2.0: initialize, notifications/initialized, tools/list, tools/call)
 * and restarts it with back-off when it dies, hangs or misbehaves.
 *
 * THREADING.  A hub is driven by one thread, the loop thread: the thread that
 * calls mcpgw_hub_run(), or the hub's own thread after mcpgw_hub_thread_start().
 * Every function here must be called on the loop thread, except
 * mcpgw_hub_post(), mcpgw_hub_call_sync(), mcpgw_hub_thread_stop() and
 * mcpgw_hub_conf(), which any thread may call.  Callbacks run on the loop thread.  A result handed
 * to another thread is a deep copy: json-c's reference counts are not
 * atomic, so no json_object is ever shared between threads.
 *
 * EVENT LOOP.  The hub keeps its own epoll set and exposes it as one fd:
 * add mcpgw_hub_fd() to your own loop (readable = work to do) and call
 * mcpgw_hub_run(hub, 0) when it is readable; or call mcpgw_hub_run() with a
 * timeout as your loop.  No signal handlers are installed (children are
 * watched with pidfds); SIGPIPE must be ignored or blocked by the program.
 *
 * CALLS.  mcpgw_hub_call() starts a tools/call.  If it returns < 0 the
 * callback never runs.  If it returns 0 the callback runs zero or more times
 * with MCPGW_CALL_PROGRESS and then exactly once with MCPGW_CALL_DONE, whose
 * status is 0 (a CallToolResult arrived; it may have isError) or one of
 * MCPGW_ERPC, MCPGW_ETIMEDOUT, MCPGW_ECANCELED, MCPGW_ESERVERGONE,
 * MCPGW_EUNAVAIL, MCPGW_EUNKNOWNTOOL, MCPGW_ETOOBIG, MCPGW_EPROTO (the
 * server's answer was malformed), MCPGW_ESHUTDOWN.
 * The callback never runs from inside mcpgw_hub_call() itself, but does run
 * from inside mcpgw_call_cancel() (with MCPGW_ECANCELED) before it returns.
 * Calls in flight are matched by the hub's own request ids, never the
 * caller's; answers are delivered as they come, out of order.
 */
#ifndef MCPGW_HUB_H
#define MCPGW_HUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#include "conf.h"

typedef struct mcpgw_hub mcpgw_hub;
typedef struct mcpgw_call mcpgw_call;

enum mcpgw_server_state {
    MCPGW_SERVER_IDLE = 0,      /* configured, not started yet (started on first use) */
    MCPGW_SERVER_STARTING,      /* spawned; initialize / tools/list under way */
    MCPGW_SERVER_READY,
    MCPGW_SERVER_BACKOFF,       /* failed; next start at next_retry_ms */
    MCPGW_SERVER_STOPPING,      /* stdin closed / signalled, waiting for exit */
    MCPGW_SERVER_DISABLED,      /* enabled:false, or restart policy "never" after a failure */
    MCPGW_SERVER_REMOVED        /* taken out by mcpgw_hub_reload(): seen only in the one
                                 * observer event that says so */
};

const char *mcpgw_server_state_name(enum mcpgw_server_state s);   /* "ready", "backing-off", ... */

struct mcpgw_server_health {
    const char *id;             /* borrowed from the hub's config (valid until
                                 * mcpgw_hub_free(), reloads or not) */
    enum mcpgw_server_state state;
    pid_t pid;                  /* 0 when no process */
    int64_t next_retry_ms;      /* BACKOFF: wall-clock ms of the next start */
    unsigned restarts;          /* starts after the first */
    unsigned inflight;
    unsigned ntools;            /* tools known (after the config allow-list) */
    const char *protocol_version;   /* negotiated, or NULL */
    char last_error[160];       /* why it last failed, or "" */
};

/* Create a hub for conf.  On success returns the hub and takes ownership of
 * conf (freed by mcpgw_hub_free).  On failure returns NULL, stores -errno in
 * *rc if rc is not NULL, and the caller still owns conf.  Starts nothing. */
mcpgw_hub *mcpgw_hub_new(struct mcpgw_conf *conf, int *rc);

/* Stop every server (close stdin, then SIGTERM to its process group, then
 * SIGKILL, within the grace periods of limits.h), complete every pending call
 * with MCPGW_ESHUTDOWN, reap every child, free everything.  Blocks at most
 * MCPGW_STOP_STDIN_GRACE + MCPGW_STOP_TERM_GRACE + a little.  NULL-safe.
 * Must not be called from a hub callback. */
void mcpgw_hub_free(mcpgw_hub *hub);

/* The config the hub runs on now.  Any thread.  Borrowed, and valid until
 * mcpgw_hub_free(): a reload does not free the config it replaces, so a
 * pointer taken before one still works, with the settings of before. */
const struct mcpgw_conf *mcpgw_hub_conf(const mcpgw_hub *hub);

/* -- reload ----------------------------------------------------------------- */

struct mcpgw_hub_reload_result {
    unsigned kept;              /* unchanged: process, calls and tools kept */
    unsigned added, removed, changed;
};

/* Run on conf from now on, without stopping what did not change.  Servers
 * are matched by id and compared setting by setting (command, args, env,
 * cwd, timeouts, maxInFlight, restart, tools, enabled):
 *  - unchanged: keeps its process, its calls in flight and its tools;
 *  - removed: its calls in flight and tool-list requests complete at once
 *    with MCPGW_EUNAVAIL ("... removed by a reload"), its process is stopped
 *    the normal way (stdin closed, then SIGTERM, then SIGKILL); new calls
 *    get MCPGW_EUNKNOWNSERVER;
 *  - added: a new server in state IDLE (or DISABLED), started on first use
 *    or by mcpgw_hub_start(), and counted against maxServerProcesses like
 *    the others;
 *  - changed: the new settings take the id at once (a new server, IDLE);
 *    the old process keeps the calls and tool-list requests it already
 *    holds and may finish them for MCPGW_RELOAD_GRACE ms, then whatever is
 *    left completes with MCPGW_EUNAVAIL and it is stopped; it is never
 *    restarted.  Until it is gone both processes count against the cap.
 * The observer gets one MCPGW_HUB_SERVER_STATE for each added and changed
 * server (its new state) and for each removed one (state
 * MCPGW_SERVER_REMOVED); nothing more of a server once removed or replaced.
 * Servers end up in conf's order.
 * Gateway-wide settings: limits.maxMessageBytes, limits.maxJsonDepth and
 * maxServerProcesses apply from now on (processes running over a lowered
 * cap are not stopped; the next start waits for a free slot); a changed
 * stateDir is logged and kept, since the host-wide slots live under it.
 *
 * Ownership: on 0 the hub owns conf, and keeps the config it replaces
 * until mcpgw_hub_free(), so that what any thread borrowed from it
 * (mcpgw_hub_conf(), mcpgw_server_health.id) stays valid: each reload costs
 * one config's memory until then.  res (may be NULL) gets the counts.  On
 * error nothing changed and the caller still owns conf: -EINVAL (conf
 * NULL), -ENOMEM, MCPGW_ESHUTDOWN.
 * Loop thread only, and not from inside a call, tools or observer callback;
 * a function run by mcpgw_hub_post() is fine, which is how another thread
 * reloads. */
int mcpgw_hub_reload(mcpgw_hub *hub, struct mcpgw_conf *conf,
                     struct mcpgw_hub_reload_result *res);

/* -- the loop ------------------------------------------------------------- */

int mcpgw_hub_fd(const mcpgw_hub *hub);
/* Wait up to timeout_ms (-1 forever, 0 not at all) for work and do it.
 * Returns 0 or -errno (EINTR is not an error: returns 0). */
int mcpgw_hub_run(mcpgw_hub *hub, int timeout_ms);

/* Run fn(hub, ud) on the loop thread at its next turn.  Any thread.
 * 0, or -ENOMEM / MCPGW_ESHUTDOWN (then fn never runs). */
int mcpgw_hub_post(mcpgw_hub *hub, void (*fn)(mcpgw_hub *hub, void *ud), void *ud);

/* Name the calling thread as the loop thread, for a program that drives
 * the hub from its own event loop (mcpgw-wsd) while other threads (its
 * HTTP workers) use mcpgw_hub_call_sync(): their calls are then posted to
 * this thread instead of running the loop themselves.  Call before any
 * other thread uses the hub. */
void mcpgw_hub_bind_thread(mcpgw_hub *hub);

/* Run the loop in a thread of the hub's own, for programs whose other
 * threads block (the FastCGI responder).  0 or -errno.  thread_stop joins
 * it; mcpgw_hub_free() does too. */
int mcpgw_hub_thread_start(mcpgw_hub *hub);
void mcpgw_hub_thread_stop(mcpgw_hub *hub);

/* -- servers -------------------------------------------------------------- */

/* Approve (pin, pins.h) the current definitions of a READY server's tools:
 * all of them (names NULL) or those named, as listed before pinning.  On
 * the loop thread.  *napproved gets how many pins changed.  0, or < 0 with
 * a one-line message in err: MCPGW_EUNKNOWNSERVER, MCPGW_EUNAVAIL (not
 * listed yet), -ENOENT (a name the server does not have), or the pins
 * file's error. */
int mcpgw_hub_approve_tools(mcpgw_hub *hub, const char *server, const char *const *names,
                            size_t nnames, size_t *napproved, char *err, size_t errlen);

/* The READY server's tools before pinning (what approve would pin),
 * borrowed like mcpgw_hub_tools(); NULL unless READY. */
json_object *mcpgw_hub_tools_unpinned(mcpgw_hub *hub, const char *server);

size_t mcpgw_hub_server_count(const mcpgw_hub *hub);
/* Health of the i-th configured server (config order). false past the end. */
bool mcpgw_hub_health(const mcpgw_hub *hub, size_t i, struct mcpgw_server_health *h);
/* By id; MCPGW_EUNKNOWNSERVER if there is none. */
int mcpgw_hub_health_of(const mcpgw_hub *hub, const char *server, struct mcpgw_server_health *h);

/* Start a server now rather than on first use (no-op unless IDLE, or
 * BACKOFF past its retry time).  0, MCPGW_EUNKNOWNSERVER, MCPGW_EUNAVAIL. */
int mcpgw_hub_start(mcpgw_hub *hub, const char *server);

/* The server's tools (a json array of Tool objects exactly as the server
 * gave them, filtered by the config allow-list and, with
 * gateway.toolPinning "enforce", by the approved pins (pins.h)), borrowed
 * until the next hub turn; NULL unless READY.  A call to a tool withheld
 * by pinning fails with MCPGW_EFORBIDDEN. */
json_object *mcpgw_hub_tools(mcpgw_hub *hub, const char *server);

/* Ask for the tool list, starting the server if needed.  Same callback
 * contract as calls: if it returns < 0, cb never runs; else cb runs exactly
 * once, with status 0 and tools (borrowed for the callback), or an error. */
typedef void (*mcpgw_tools_cb)(void *ud, int status, json_object *tools, const char *error);
int mcpgw_hub_list_tools(mcpgw_hub *hub, const char *server, mcpgw_tools_cb cb, void *ud);

/* -- calls ---------------------------------------------------------------- */

enum mcpgw_call_event_kind {
    MCPGW_CALL_PROGRESS = 1,
    MCPGW_CALL_DONE
};

struct mcpgw_call_event {
    enum mcpgw_call_event_kind kind;
    /* PROGRESS */
    double progress;
    double total;               /* valid if has_total */
    bool has_total;
    const char *message;        /* progress message or NULL */
    /* DONE */
    int status;                 /* 0 or an MCPGW_E* code (see above) */
    json_object *result;        /* status 0: the CallToolResult, borrowed for
                                 * the callback: json_object_get() to keep it;
                                 * NULL when result_json holds it instead */
    const char *result_json;    /* status 0, a call with opts.result_text: the
                                 * CallToolResult as the server wrote it, when
                                 * mcpgw_codec_scan_members() found it valid and
                                 * plain (else NULL and result is set); an object,
                                 * result_len bytes, borrowed for the callback */
    size_t result_len;
    bool is_error;              /* status 0: result.isError was true */
    int rpc_code;               /* status MCPGW_ERPC: JSON-RPC error code */
    const char *error;          /* status < 0: one line for a person, naming the
                                 * server, e.g. "server 'x' exited during the call
                                 * (killed by signal 9)" */
    int64_t duration_ms;
};

typedef void (*mcpgw_call_cb)(mcpgw_call *call, const struct mcpgw_call_event *ev, void *ud);

struct mcpgw_call_opts {
    int timeout_ms;             /* 0: the server's callTimeoutMs; capped by it */
    bool progress;              /* ask the server for progress (assigns a token) */
    const char *caller;         /* who (client id, token name), for logs; copied */
    const char *client_call_id; /* the caller's own id, for logs/events; copied */
    const char *transport;      /* "websocket", "rest", "cli", for events; copied */
    bool result_text;           /* the answer may come as result_json: for a
                                 * caller that only copies it out, this spares a
                                 * json-c tree and its re-serialisation */
};

/* Call tool on server with arguments args (an object; borrowed: the hub
 * sends its own re-serialised copy, never the caller's raw bytes; NULL means
 * {}).  opts may be NULL.  On 0, *out (if not NULL) is a handle valid until
 * the DONE callback has returned.  Errors (cb never runs): MCPGW_EUNKNOWNSERVER,
 * MCPGW_EUNKNOWNTOOL (known not to exist or hidden by config), MCPGW_EUNAVAIL
 * (disabled or backing off), MCPGW_EBUSY (maxInFlight reached),
 * MCPGW_ETOOBIG (request over the message limit), MCPGW_ESHUTDOWN, -ENOMEM,
 * -EINVAL (args not an object). */
int mcpgw_hub_call(mcpgw_hub *hub, const char *server, const char *tool, json_object *args,
                   const struct mcpgw_call_opts *opts, mcpgw_call_cb cb, void *ud,
                   mcpgw_call **out);

/* Cancel: sends notifications/cancelled if the request was sent, drops any
 * late answer or progress for it, and runs the DONE callback with
 * MCPGW_ECANCELED before returning.  A call whose DONE already ran must not
 * be passed here. */
void mcpgw_call_cancel(mcpgw_call *call, const char *reason);

/* The hub's id for the call (unique within the hub, never reused). */
uint64_t mcpgw_call_id(const mcpgw_call *call);

/* -- blocking wrapper ------------------------------------------------------ */

/* For programs without an event loop (CLI, CGI) and for threads other than
 * the loop thread when mcpgw_hub_thread_start() is running.  Runs the call
 * and waits for DONE.  progress (may be NULL) gets progress events on the
 * thread that runs the loop.  Returns the DONE status; on 0 *result holds a
 * new reference to the CallToolResult (caller puts it) and *is_error its
 * isError (a deep copy the calling thread owns outright); on error, err
 * (if not NULL) gets the error line. */
int mcpgw_hub_call_sync(mcpgw_hub *hub, const char *server, const char *tool,
                        json_object *args, const struct mcpgw_call_opts *opts,
                        void (*progress)(void *ud, const struct mcpgw_call_event *ev),
                        void *ud, json_object **result, bool *is_error,
                        char *err, size_t errlen);

/* -- observer -------------------------------------------------------------- */

/* What the event stream (and logs) need to know.  Pointers are borrowed for
 * the duration of the callback. */
enum mcpgw_hub_event_kind {
    MCPGW_HUB_SERVER_STATE = 1, /* health */
    MCPGW_HUB_CALL_START,       /* call_id, server, tool, caller, client_call_id,
                                 * transport, args */
    MCPGW_HUB_CALL_PROGRESS,    /* + progress event */
    MCPGW_HUB_CALL_DONE         /* + done event */
};

struct mcpgw_hub_event {
    enum mcpgw_hub_event_kind kind;
    const struct mcpgw_server_health *health;   /* SERVER_STATE */
    int exit_status;            /* SERVER_STATE after a death: wait status, else -1 */
    uint64_t call_id;
    const char *server, *tool, *caller, *client_call_id, *transport;
    json_object *args;          /* CALL_START: the call's arguments, or NULL */
    const struct mcpgw_call_event *call;        /* PROGRESS, DONE */
};

void mcpgw_hub_set_observer(mcpgw_hub *hub, void (*fn)(void *ud, const struct mcpgw_hub_event *ev),
                            void *ud);

/* Batch writes to servers.  Off (the default), a call started outside
 * mcpgw_hub_run() is written to its server at once.  On, it is queued and
 * written at the end of the next hub turn, which the hub's fd announces, so
 * many calls started from one event of the caller's loop (a burst of
 * WebSocket messages) reach a server in one write instead of one write -
 * and one wake-up of the server - each.  For programs whose own loop calls
 * mcpgw_hub_run() when mcpgw_hub_fd() is readable (or after each of its
 * turns). */
void mcpgw_hub_set_batching(mcpgw_hub *hub, bool on);

#endif
