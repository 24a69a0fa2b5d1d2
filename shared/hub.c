/* hub.c - spawn MCP servers, speak MCP to them, route tool calls.
 *
 * The life of a server: IDLE -> (first use) spawn -> STARTING (initialize,
 * notifications/initialized, tools/list) -> READY.  A death, a start that
 * takes too long, or repeated garbage on stdout fails every call it holds
 * and moves it through STOPPING (SIGTERM to its group, SIGKILL after a
 * grace period) to BACKOFF, from which it restarts after an exponentially
 * growing, jittered delay.  See hub.h for the contract with callers and
 * ../shared/reference/mcp-stdio-facts.md for why each protocol step is so.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "err.h"
#include "hub_internal.h"
#include "jsonrpc.h"
#include "limits.h"
#include "log.h"

#define COMPONENT "dispatch"
#define PROTOCOL_LATEST "2025-11-25"
/* Versions whose stdio and tools semantics this code implements. */
static const char *const protocol_versions[] = {
    "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", NULL
};
#define READ_BUDGET 8   /* reads per server per turn, so one chatty server
                         * cannot starve the others */

static void srv_fail(struct srv *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void srv_start(struct srv *s);
static void srv_flush(struct srv *s);
static void srv_send_queued(struct srv *s);
static void srv_list_tools(struct srv *s, const char *cursor);
static void on_call_timer(struct mcpgw__timer *t);

const char *mcpgw_server_state_name(enum mcpgw_server_state st)
{
    switch (st) {
    case MCPGW_SERVER_IDLE: return "idle";
    case MCPGW_SERVER_STARTING: return "starting";
    case MCPGW_SERVER_READY: return "ready";
    case MCPGW_SERVER_BACKOFF: return "backing-off";
    case MCPGW_SERVER_STOPPING: return "stopping";
    case MCPGW_SERVER_DISABLED: return "disabled";
    }
    return "unknown";
}

#define SRV_OF(ptr, member) ((struct srv *)((char *)(ptr) - offsetof(struct srv, member)))

/* ---- small helpers ------------------------------------------------------ */

static int64_t wall_ms(void)
{
    return mcpgw_now_ms();
}

static void fill_health(const struct srv *s, struct mcpgw_server_health *h)
{
    memset(h, 0, sizeof(*h));
    h->id = s->conf->id;
    h->state = s->state;
    h->pid = s->child.pid;
    h->next_retry_ms = s->state == MCPGW_SERVER_BACKOFF ? s->next_retry_wall : 0;
    h->restarts = s->restarts;
    h->inflight = s->inflight;
    h->ntools = s->tools ? (unsigned)json_object_array_length(s->tools) : 0;
    h->protocol_version = s->proto[0] ? s->proto : NULL;
    snprintf(h->last_error, sizeof(h->last_error), "%s", s->last_error);
}

static void observe_state(struct srv *s, int exit_status)
{
    struct mcpgw_server_health h;
    struct mcpgw_hub_event ev = { .kind = MCPGW_HUB_SERVER_STATE, .exit_status = exit_status };

    if (!s->hub->observer)
        return;
    fill_health(s, &h);
    ev.health = &h;
    ev.server = s->conf->id;
    s->hub->observer(s->hub->observer_ud, &ev);
}

static void set_state(struct srv *s, enum mcpgw_server_state st, int exit_status)
{
    if (s->state == st && exit_status < 0)
        return;
    s->state = st;
    observe_state(s, exit_status);
}

static void timer_arm(mcpgw_hub *hub, struct mcpgw__timer *t, int64_t when)
{
    /* Out of memory here would lose a deadline; the heap grows in steps of
     * doubling, so retrying once after the failure is pointless.  Log it:
     * the call still completes when the server answers or dies. */
    if (mcpgw__theap_add(&hub->timers, t, when) < 0)
        mcpgw_log_error(COMPONENT, "cannot arm a timer: out of memory");
}

static void watch_add(mcpgw_hub *hub, int fd, struct watch *w, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = w };

    if (fd >= 0 && epoll_ctl(hub->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
        mcpgw_log_error(COMPONENT, "epoll_ctl add: %s", strerror(errno));
}

static void close_fd(mcpgw_hub *hub, int *fd)
{
    if (*fd < 0)
        return;
    epoll_ctl(hub->epfd, EPOLL_CTL_DEL, *fd, NULL);
    close(*fd);
    *fd = -1;
}

static void wake(mcpgw_hub *hub)
{
    uint64_t one = 1;
    ssize_t n = write(hub->efd, &one, sizeof(one));

    (void)n;    /* EAGAIN means a wake-up is already pending */
}

/* ---- calls ---------------------------------------------------------------- */

static void slot_put(struct srv *s, struct mcpgw_call *c)
{
    s->slots[c->req_id & s->mask] = c;
}

static struct mcpgw_call *slot_get(struct srv *s, uint64_t id)
{
    struct mcpgw_call *c = s->slots[id & s->mask];

    return c && c->req_id == id ? c : NULL;
}

/* A fresh request id whose slot is free.  In-flight calls are fewer than
 * half the slots, so this loop ends quickly. */
static uint64_t next_req_id(struct srv *s)
{
    uint64_t id;

    do {
        id = ++s->next_id;
    } while (s->slots[id & s->mask]);
    return id;
}

static void queue_remove(struct srv *s, struct mcpgw_call *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s->q_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        s->q_tail = c->prev;
    c->prev = c->next = NULL;
    c->queued = false;
}

static void call_free(struct mcpgw_call *c)
{
    free(c->tool);
    free(c->args);
    free(c->caller);
    free(c->client_call_id);
    free(c->transport);
    free(c);
}

/* Detach c from everything, then tell its owner.  After this, c is gone. */
static void call_done(struct mcpgw_call *c, struct mcpgw_call_event *ev)
{
    struct srv *s = c->srv;
    mcpgw_hub *hub = s->hub;

    if (c->queued)
        queue_remove(s, c);
    else if (c->req_id && slot_get(s, c->req_id) == c)
        s->slots[c->req_id & s->mask] = NULL;
    mcpgw__theap_del(&hub->timers, &c->timer);
    s->inflight--;
    ev->kind = MCPGW_CALL_DONE;
    ev->duration_ms = mcpgw__mono_ms() - c->started;
    if (hub->observer) {
        struct mcpgw_hub_event oev = {
            .kind = MCPGW_HUB_CALL_DONE, .call_id = c->call_id, .server = s->conf->id,
            .tool = c->tool, .caller = c->caller, .client_call_id = c->client_call_id,
            .transport = c->transport,
            .call = ev, .exit_status = -1
        };
        hub->observer(hub->observer_ud, &oev);
    }
    c->cb(c, ev, c->ud);
    call_free(c);
}

static void call_fail(struct mcpgw_call *c, int status, const char *msg)
{
    struct mcpgw_call_event ev = { .status = status, .error = msg };

    mcpgw_log_debug(COMPONENT, "call %" PRIu64 " '%s' on '%s' failed: %s",
                    c->call_id, c->tool, c->srv->conf->id, msg);
    call_done(c, &ev);
}

/* Fail every call the server holds.  Calls are unlinked first, so callbacks
 * that start new calls or cancel others see a consistent server. */
static void fail_all(struct srv *s, int sent_status, const char *msg)
{
    struct mcpgw_call *list = NULL, *c;

    for (size_t i = 0; i <= s->mask; i++) {
        if ((c = s->slots[i])) {
            s->slots[i] = NULL;
            c->req_id = 0;
            c->next = list;
            list = c;
        }
    }
    while ((c = list)) {
        list = c->next;
        c->next = NULL;
        call_fail(c, sent_status, msg);
    }
    while ((c = s->q_head))
        call_fail(c, MCPGW_EUNAVAIL, msg);
}

static void fail_waiters(struct srv *s, int status, const char *msg)
{
    struct tools_waiter *w;

    while ((w = s->waiters)) {
        s->waiters = w->next;
        w->cb(w->ud, status, NULL, msg);
        free(w);
    }
}

static void notify_waiters(struct srv *s)
{
    struct tools_waiter *w;

    while ((w = s->waiters)) {
        s->waiters = w->next;
        w->cb(w->ud, 0, s->tools, NULL);
        free(w);
    }
}

/* ---- output to a server --------------------------------------------------- */

static void srv_mark_dirty(struct srv *s)
{
    if (s->hub->in_run) {
        if (!s->dirty) {
            s->dirty = true;
            s->dirty_next = s->hub->dirty;
            s->hub->dirty = s;
        }
    } else {
        srv_flush(s);
    }
}

/* Write what is queued; write first, and wait for EPOLLOUT only if the pipe
 * is full (redis's habit).  A broken pipe means the server is going away:
 * its exit (pidfd) reports why. */
static void srv_flush(struct srv *s)
{
    while (s->outq_off < s->outq.len && s->child.in_fd >= 0) {
        ssize_t n = write(s->child.in_fd, s->outq.ptr + s->outq_off, s->outq.len - s->outq_off);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!s->in_armed) {
                    s->in_armed = true;
                    watch_add(s->hub, s->child.in_fd, &s->w_in, EPOLLOUT);
                }
                return;
            }
            mcpgw_log_debug(COMPONENT, "server '%s': write: %s", s->conf->id, strerror(errno));
            close_fd(s->hub, &s->child.in_fd);
            s->in_armed = false;
            break;
        }
        s->outq_off += (size_t)n;
    }
    mcpgw_buf_reset(&s->outq);
    s->outq_off = 0;
    if (s->in_armed) {
        s->in_armed = false;
        if (s->child.in_fd >= 0)
            epoll_ctl(s->hub->epfd, EPOLL_CTL_DEL, s->child.in_fd, NULL);
    }
}

static void on_stdin(struct watch *w, uint32_t events)
{
    srv_flush(SRV_OF(w, w_in));
}

/* Queue a request line for the server; the caller has checked the size. */
static int srv_write_call(struct srv *s, struct mcpgw_call *c, const char *args, size_t args_len)
{
    int rc;

    c->req_id = next_req_id(s);
    rc = mcpgw__rpc_write_tool_call(&s->outq, c->req_id, c->tool, args, args_len,
                                    c->progress ? c->req_id : 0);
    if (rc < 0) {
        c->req_id = 0;
        return rc == MCPGW_ETOOBIG ? MCPGW_EBUSY : rc;
    }
    slot_put(s, c);
    srv_mark_dirty(s);
    return 0;
}

static void srv_notify(struct srv *s, const char *method, const char *params)
{
    if (mcpgw__rpc_write_notification(&s->outq, method, params) == 0)
        srv_mark_dirty(s);
}

static void srv_cancel_request(struct srv *s, uint64_t id, const char *reason)
{
    char params[256];
    struct mcpgw_buf r;

    mcpgw_buf_init(&r, 200);
    if (mcpgw_buf_add_json_str(&r, reason, strlen(reason)) < 0)
        mcpgw_buf_adds(&r, "\"cancelled\"");
    snprintf(params, sizeof(params), "{\"requestId\":%" PRIu64 ",\"reason\":%s}", id,
             r.ptr ? r.ptr : "\"cancelled\"");
    mcpgw_buf_release(&r);
    srv_notify(s, "notifications/cancelled", params);
}

/* ---- process lifecycle ---------------------------------------------------- */

static void srv_teardown_fds(struct srv *s)
{
    mcpgw_hub *hub = s->hub;

    close_fd(hub, &s->child.in_fd);
    close_fd(hub, &s->child.out_fd);
    close_fd(hub, &s->child.err_fd);
    s->in_armed = false;
    mcpgw_buf_reset(&s->outq);
    s->outq_off = 0;
    s->gen++;
}

static int backoff_delay(struct srv *s)
{
    int64_t d = s->conf->restart_initial_ms;
    int jitter;

    for (unsigned i = 1; i < s->failures && d < s->conf->restart_max_ms; i++)
        d *= 2;
    if (d > s->conf->restart_max_ms)
        d = s->conf->restart_max_ms;
    /* +-20% so servers that failed together do not restart together. */
    jitter = (int)(d / 5);
    if (jitter > 0)
        d += (rand() % (2 * jitter + 1)) - jitter;
    return d < 1 ? 1 : (int)d;
}

/* The process is gone and reaped.  Decide what comes next. */
static void srv_reaped(struct srv *s, int status)
{
    char how[64], msg[200];
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    bool was_failing = s->failing;
    bool shutdown = s->hub->closing;

    mcpgw__wait_status_str(status, how, sizeof(how));
    srv_teardown_fds(s);
    close_fd(s->hub, &s->child.pidfd);
    mcpgw__theap_del(&s->hub->timers, &s->t_start);
    mcpgw__theap_del(&s->hub->timers, &s->t_stop);
    mcpgw__theap_del(&s->hub->timers, &s->t_stable);
    s->stop_phase = 0;
    s->failing = false;
    s->init_id = s->list_id = 0;
    json_object_put(s->tools_new);
    s->tools_new = NULL;

    snprintf(msg, sizeof(msg), "server '%s' exited during the call (%s)", s->conf->id, how);
    if (!was_failing && !shutdown)
        snprintf(s->last_error, sizeof(s->last_error), "exited (%s)", how);
    fail_all(s, MCPGW_ESERVERGONE, msg);
    fail_waiters(s, MCPGW_EUNAVAIL, msg);

    if (shutdown) {
        mcpgw_log_info(COMPONENT, "server '%s' stopped (%s)", s->conf->id, how);
        set_state(s, MCPGW_SERVER_IDLE, status);
        return;
    }
    if (!was_failing && clean && s->conf->restart_policy == MCPGW_RESTART_ON_FAILURE) {
        mcpgw_log_info(COMPONENT, "server '%s' exited (%s); it starts again on next use",
                       s->conf->id, how);
        set_state(s, MCPGW_SERVER_IDLE, status);
        return;
    }
    if (s->conf->restart_policy == MCPGW_RESTART_NEVER) {
        mcpgw_log_warn(COMPONENT, "server '%s' %s (%s); restart policy is 'never', disabling it",
                       s->conf->id, was_failing ? "failed" : "exited", how);
        set_state(s, MCPGW_SERVER_DISABLED, status);
        return;
    }
    s->failures++;
    {
        int delay = backoff_delay(s);

        s->next_retry_wall = wall_ms() + delay;
        timer_arm(s->hub, &s->t_retry, mcpgw__mono_ms() + delay);
        mcpgw_log_warn(COMPONENT, "server '%s' %s (%s); restarting in %.1f s",
                       s->conf->id, was_failing ? s->last_error : "exited", how, delay / 1000.0);
    }
    set_state(s, MCPGW_SERVER_BACKOFF, status);
}

/* Reap if the child has exited.  true when it was reaped (and handled). */
static bool srv_check_exit(struct srv *s)
{
    pid_t pgid = s->child.pid;
    int status = 0;

    if (pgid <= 0 || mcpgw__child_reap(&s->child, &status) != 1)
        return false;
    /* npx and friends run the real server as a grandchild: take the whole
     * group down with the leader.  A group id is not reused while any
     * member lives, so this cannot hit a stranger. */
    kill(-pgid, SIGKILL);
    srv_reaped(s, status);
    return true;
}

static void on_pidfd(struct watch *w, uint32_t events)
{
    srv_check_exit(SRV_OF(w, w_pid));
}

/* Stop the process: close stdin, then SIGTERM the group, then SIGKILL.
 * A failing server skips the polite first step: it already misbehaved. */
static void srv_begin_stop(struct srv *s, bool failing)
{
    mcpgw_hub *hub = s->hub;

    if (s->child.pid <= 0)
        return;
    s->failing = s->failing || failing;
    if (s->stop_phase == 0) {
        close_fd(hub, &s->child.in_fd);
        s->in_armed = false;
        s->stop_phase = 1;
        if (failing) {
            mcpgw__child_signal(&s->child, SIGTERM);
            s->stop_phase = 2;
            timer_arm(hub, &s->t_stop, mcpgw__mono_ms() + MCPGW_STOP_TERM_GRACE);
        } else {
            timer_arm(hub, &s->t_stop, mcpgw__mono_ms() + MCPGW_STOP_STDIN_GRACE);
        }
    }
    mcpgw__theap_del(&hub->timers, &s->t_start);
    mcpgw__theap_del(&hub->timers, &s->t_stable);
    set_state(s, MCPGW_SERVER_STOPPING, -1);
}

static void on_stop_timer(struct mcpgw__timer *t)
{
    struct srv *s = SRV_OF(t, t_stop);

    if (srv_check_exit(s))
        return;
    if (s->child.pidfd < 0 && s->stop_phase == 3) {
        /* No pidfd: poll for the exit. */
        timer_arm(s->hub, &s->t_stop, mcpgw__mono_ms() + 50);
        return;
    }
    if (s->stop_phase == 1) {
        mcpgw__child_signal(&s->child, SIGTERM);
        s->stop_phase = 2;
        timer_arm(s->hub, &s->t_stop, mcpgw__mono_ms() + MCPGW_STOP_TERM_GRACE);
    } else if (s->stop_phase == 2) {
        mcpgw_log_warn(COMPONENT, "server '%s' ignored SIGTERM; sending SIGKILL", s->conf->id);
        mcpgw__child_signal(&s->child, SIGKILL);
        s->stop_phase = 3;
        if (s->child.pidfd < 0)
            timer_arm(s->hub, &s->t_stop, mcpgw__mono_ms() + 50);
    }
}

/* Something went wrong with a running server: fail what it holds now (the
 * callers should not wait for the process to die), then stop it. */
static void srv_fail(struct srv *s, int status, const char *fmt, ...)
{
    char msg[200], reason[150];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    snprintf(s->last_error, sizeof(s->last_error), "%s", reason);
    snprintf(msg, sizeof(msg), "server '%s' %s", s->conf->id, reason);
    mcpgw_log_warn(COMPONENT, "%s", msg);
    srv_begin_stop(s, true);
    fail_all(s, status, msg);
    fail_waiters(s, MCPGW_EUNAVAIL, msg);
}

/* stdout hit EOF or stdin broke: the process is almost always exiting.
 * Give it a moment to become reapable so the error says how it died. */
static void srv_lost(struct srv *s, const char *what)
{
    struct pollfd p = { .fd = s->child.pidfd, .events = POLLIN };

    if (s->child.pidfd >= 0)
        poll(&p, 1, 100);
    if (srv_check_exit(s))
        return;
    if (s->state != MCPGW_SERVER_STOPPING)
        srv_fail(s, MCPGW_ESERVERGONE, "%s", what);
}

static void srv_start(struct srv *s)
{
    mcpgw_hub *hub = s->hub;
    char err[sizeof(s->last_error)], params[256];
    int rc;

    mcpgw__theap_del(&hub->timers, &s->t_retry);
    mcpgw__framer_release(&s->fout);
    mcpgw__framer_release(&s->ferr);
    mcpgw__framer_init(&s->fout, hub->conf->limits.max_message_bytes);
    mcpgw__framer_init(&s->ferr, MCPGW_STDERR_LINE_MAX);
    s->proto[0] = '\0';
    s->garbage = 0;
    json_object_put(s->tools);
    s->tools = NULL;
    rc = mcpgw__spawn(s->conf, &s->child, err, sizeof(err));
    if (rc < 0) {
        snprintf(s->last_error, sizeof(s->last_error), "%s", err);
        mcpgw_log_error(COMPONENT, "cannot start server '%s': %s", s->conf->id, err);
        s->failing = true;
        /* Route through the common exit path with a synthetic status so
         * back-off and the restart policy apply alike. */
        srv_reaped(s, 127 << 8);
        return;
    }
    if (s->starts++)
        s->restarts++;
    s->spawned_at = mcpgw__mono_ms();
    watch_add(hub, s->child.out_fd, &s->w_out, EPOLLIN);
    watch_add(hub, s->child.err_fd, &s->w_err, EPOLLIN);
    watch_add(hub, s->child.pidfd, &s->w_pid, EPOLLIN);
    mcpgw_log_info(COMPONENT, "starting server '%s' (pid %d)", s->conf->id, (int)s->child.pid);
    set_state(s, MCPGW_SERVER_STARTING, -1);

    /* No client capabilities: we cannot answer roots, sampling or
     * elicitation, and declaring them makes servers ask (facts §9). */
    snprintf(params, sizeof(params),
             "{\"protocolVersion\":\"%s\",\"capabilities\":{},"
             "\"clientInfo\":{\"name\":\"mcpgw\",\"version\":\"%s\"}}",
             PROTOCOL_LATEST, PACKAGE_VERSION);
    s->init_id = next_req_id(s);
    if (mcpgw__rpc_write_request(&s->outq, s->init_id, "initialize", params) == 0)
        srv_mark_dirty(s);
    timer_arm(hub, &s->t_start, mcpgw__mono_ms() + s->conf->start_timeout_ms);
}

static void on_start_timer(struct mcpgw__timer *t)
{
    struct srv *s = SRV_OF(t, t_start);

    if (s->state == MCPGW_SERVER_STARTING)
        srv_fail(s, MCPGW_EUNAVAIL, "did not finish starting within %d ms",
                 s->conf->start_timeout_ms);
}

static void on_retry_timer(struct mcpgw__timer *t)
{
    struct srv *s = SRV_OF(t, t_retry);

    if (s->state == MCPGW_SERVER_BACKOFF && !s->hub->closing)
        srv_start(s);
}

static void on_stable_timer(struct mcpgw__timer *t)
{
    struct srv *s = SRV_OF(t, t_stable);

    if (s->failures)
        mcpgw_log_info(COMPONENT, "server '%s' has run stably; back-off reset", s->conf->id);
    s->failures = 0;
}

/* ---- what a server says ----------------------------------------------------- */

static void srv_garbage(struct srv *s, const char *what, const char *line, size_t len)
{
    int64_t now = mcpgw__mono_ms();

    mcpgw_log_warn("dispatch", "server '%s' sent %s: %.*s%s", s->conf->id, what,
                   (int)(len > 120 ? 120 : len), line, len > 120 ? "[...]" : "");
    if (now - s->garbage_since > MCPGW_GARBAGE_WINDOW) {
        s->garbage_since = now;
        s->garbage = 0;
    }
    if (++s->garbage >= MCPGW_GARBAGE_LINES_MAX)
        srv_fail(s, MCPGW_ESERVERGONE, "sent %d malformed messages within %d s",
                 s->garbage, MCPGW_GARBAGE_WINDOW / 1000);
}

static bool version_supported(const char *v)
{
    for (int i = 0; protocol_versions[i]; i++)
        if (strcmp(v, protocol_versions[i]) == 0)
            return true;
    return false;
}

static bool tool_listed(struct srv *s, const char *tool)
{
    size_t n;

    if (!s->tools)
        return false;
    n = json_object_array_length(s->tools);
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(s->tools, i), *name;

        if (json_object_object_get_ex(t, "name", &name) &&
            strcmp(json_object_get_string(name), tool) == 0)
            return true;
    }
    return false;
}

static void srv_became_ready(struct srv *s)
{
    mcpgw__theap_del(&s->hub->timers, &s->t_start);
    timer_arm(s->hub, &s->t_stable, mcpgw__mono_ms() + s->conf->restart_reset_ms);
    s->last_error[0] = '\0';
    mcpgw_log_info(COMPONENT, "server '%s' ready (%zu tools, protocol %s, started in %" PRId64 " ms)",
                   s->conf->id, json_object_array_length(s->tools), s->proto,
                   mcpgw__mono_ms() - s->spawned_at);
    set_state(s, MCPGW_SERVER_READY, -1);
}

static void handle_init_result(struct srv *s, struct mcpgw__rpc *m)
{
    json_object *v;
    const char *ver;

    s->init_id = 0;
    if (m->error) {
        srv_fail(s, MCPGW_EUNAVAIL, "refused initialize: %.80s",
                 json_object_to_json_string_ext(m->error, JSON_C_TO_STRING_PLAIN));
        return;
    }
    if (!json_object_is_type(m->result, json_type_object) ||
        !json_object_object_get_ex(m->result, "protocolVersion", &v) ||
        !json_object_is_type(v, json_type_string)) {
        srv_fail(s, MCPGW_EUNAVAIL, "sent an initialize result without protocolVersion");
        return;
    }
    ver = json_object_get_string(v);
    if (!version_supported(ver)) {
        srv_fail(s, MCPGW_EUNAVAIL, "speaks protocol version '%.32s', which mcpgw does not support",
                 ver);
        return;
    }
    snprintf(s->proto, sizeof(s->proto), "%s", ver);
    /* Always: some servers register tools only once told (facts §3). */
    srv_notify(s, "notifications/initialized", NULL);
    srv_list_tools(s, NULL);
}

static void srv_list_tools(struct srv *s, const char *cursor)
{
    struct mcpgw_buf p;

    if (!cursor) {
        json_object_put(s->tools_new);
        s->tools_new = json_object_new_array();
        s->list_pages = 0;
    }
    s->list_pages++;
    mcpgw_buf_init(&p, 4096);
    if (cursor) {
        mcpgw_buf_adds(&p, "{\"cursor\":");
        mcpgw_buf_add_json_str(&p, cursor, strlen(cursor));
        mcpgw_buf_addc(&p, '}');
    }
    s->list_id = next_req_id(s);
    if (mcpgw__rpc_write_request(&s->outq, s->list_id, "tools/list", cursor ? p.ptr : NULL) == 0)
        srv_mark_dirty(s);
    mcpgw_buf_release(&p);
}

static void handle_list_result(struct srv *s, struct mcpgw__rpc *m)
{
    json_object *tools, *cursor;
    size_t n;

    s->list_id = 0;
    if (m->error || !json_object_is_type(m->result, json_type_object) ||
        !json_object_object_get_ex(m->result, "tools", &tools) ||
        !json_object_is_type(tools, json_type_array)) {
        if (s->state == MCPGW_SERVER_STARTING) {
            srv_fail(s, MCPGW_EUNAVAIL, "answered tools/list without a tool array");
            return;
        }
        mcpgw_log_warn(COMPONENT, "server '%s' answered tools/list without a tool array; "
                       "keeping the previous list", s->conf->id);
        json_object_put(s->tools_new);
        s->tools_new = NULL;
        srv_send_queued(s);
        return;
    }
    n = json_object_array_length(tools);
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(tools, i), *name;

        if (!json_object_object_get_ex(t, "name", &name) ||
            !json_object_is_type(name, json_type_string))
            continue;
        if (!mcpgw_conf_tool_allowed(s->conf, json_object_get_string(name)))
            continue;
        if (json_object_array_add(s->tools_new, json_object_get(t)) < 0)
            json_object_put(t);
    }
    if (json_object_object_get_ex(m->result, "nextCursor", &cursor) &&
        json_object_is_type(cursor, json_type_string) && json_object_get_string_len(cursor) > 0) {
        if (s->list_pages < MCPGW_TOOLS_PAGES_MAX) {
            srv_list_tools(s, json_object_get_string(cursor));
            return;
        }
        mcpgw_log_warn(COMPONENT, "server '%s': tools/list has more than %d pages; using the first",
                       s->conf->id, MCPGW_TOOLS_PAGES_MAX);
    }
    json_object_put(s->tools);
    s->tools = s->tools_new;
    s->tools_new = NULL;
    if (s->state == MCPGW_SERVER_STARTING)
        srv_became_ready(s);
    else
        mcpgw_log_info(COMPONENT, "server '%s' tool list refreshed (%zu tools)", s->conf->id,
                       json_object_array_length(s->tools));
    if (s->list_again) {
        s->list_again = false;
        srv_list_tools(s, NULL);
        return;
    }
    notify_waiters(s);
    srv_send_queued(s);
}

static void handle_call_result(struct srv *s, struct mcpgw_call *c, struct mcpgw__rpc *m)
{
    struct mcpgw_call_event ev = { 0 };
    char msg[200];

    if (m->error) {
        json_object *code = NULL, *text = NULL;

        json_object_object_get_ex(m->error, "code", &code);
        json_object_object_get_ex(m->error, "message", &text);
        ev.status = MCPGW_ERPC;
        ev.rpc_code = code ? json_object_get_int(code) : 0;
        snprintf(msg, sizeof(msg), "server '%s' returned error %d: %.120s", s->conf->id,
                 ev.rpc_code, text ? json_object_get_string(text) : "(no message)");
        ev.error = msg;
        ev.result = m->error;
    } else if (!json_object_is_type(m->result, json_type_object)) {
        ev.status = MCPGW_EPROTO;
        snprintf(msg, sizeof(msg), "server '%s' sent a tools/call result that is not an object",
                 s->conf->id);
        ev.error = msg;
    } else {
        json_object *iserr;

        ev.result = m->result;
        ev.is_error = json_object_object_get_ex(m->result, "isError", &iserr) &&
                      json_object_get_boolean(iserr);
    }
    call_done(c, &ev);
}

static void handle_response(struct srv *s, struct mcpgw__rpc *m, const char *line, size_t len)
{
    struct mcpgw_call *c;
    uint64_t id;

    if (!mcpgw__rpc_id_ours(m->id, &id)) {
        srv_garbage(s, "a response with an id mcpgw never used", line, len);
        return;
    }
    if (id == s->init_id) {
        handle_init_result(s, m);
        return;
    }
    if (id == s->list_id) {
        handle_list_result(s, m);
        return;
    }
    c = slot_get(s, id);
    if (!c) {
        /* A late answer to a call that timed out or was cancelled. */
        mcpgw_log_debug(COMPONENT, "server '%s': dropped late response %" PRIu64, s->conf->id, id);
        return;
    }
    handle_call_result(s, c, m);
}

/* Requests from the server are always answered: a server left waiting may
 * block the very tool call that asked (facts §9). */
static void handle_request(struct srv *s, struct mcpgw__rpc *m)
{
    const char *id = json_object_to_json_string_ext(m->id, JSON_C_TO_STRING_PLAIN);
    char msg[160];
    int rc;

    if (strcmp(m->method, "ping") == 0) {
        rc = mcpgw__rpc_write_result(&s->outq, id, "{}");
    } else {
        snprintf(msg, sizeof(msg), "mcpgw does not offer '%.64s' to MCP servers", m->method);
        rc = mcpgw__rpc_write_error(&s->outq, id, -32601, msg);
        mcpgw_log_info(COMPONENT, "server '%s' asked for '%.64s'; refused (not offered)",
                       s->conf->id, m->method);
    }
    if (rc == 0)
        srv_mark_dirty(s);
}

static bool get_number(json_object *o, const char *key, double *out)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v) ||
        !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
        return false;
    *out = json_object_get_double(v);
    return true;
}

static void handle_progress(struct srv *s, json_object *params)
{
    struct mcpgw_call_event ev = { .kind = MCPGW_CALL_PROGRESS };
    json_object *tok, *msg;
    struct mcpgw_call *c;
    uint64_t id;

    if (!params || !json_object_object_get_ex(params, "progressToken", &tok) ||
        !mcpgw__rpc_id_ours(tok, &id))
        return;
    c = slot_get(s, id);
    /* Servers keep sending progress after a cancel (facts §7): a token
     * whose call is gone is dropped here. */
    if (!c || !c->progress || !get_number(params, "progress", &ev.progress))
        return;
    ev.has_total = get_number(params, "total", &ev.total);
    if (json_object_object_get_ex(params, "message", &msg) &&
        json_object_is_type(msg, json_type_string))
        ev.message = json_object_get_string(msg);
    if (s->hub->observer) {
        struct mcpgw_hub_event oev = {
            .kind = MCPGW_HUB_CALL_PROGRESS, .call_id = c->call_id, .server = s->conf->id,
            .tool = c->tool, .caller = c->caller, .client_call_id = c->client_call_id,
            .transport = c->transport,
            .call = &ev, .exit_status = -1
        };
        s->hub->observer(s->hub->observer_ud, &oev);
    }
    c->cb(c, &ev, c->ud);
}

static void handle_notification(struct srv *s, struct mcpgw__rpc *m)
{
    if (strcmp(m->method, "notifications/progress") == 0) {
        handle_progress(s, m->params);
    } else if (strcmp(m->method, "notifications/tools/list_changed") == 0) {
        if (s->list_id || s->init_id)
            s->list_again = s->list_id != 0;
        else
            srv_list_tools(s, NULL);
    } else if (strcmp(m->method, "notifications/message") == 0) {
        mcpgw_log_debug(COMPONENT, "server '%s' log: %.300s", s->conf->id,
                        json_object_to_json_string_ext(m->params, JSON_C_TO_STRING_PLAIN));
    }
    /* Others (cancelled for the server's own requests, resources/...) are
     * of no use to a tool gateway. */
}

/* Not JSON-RPC.  If it names one of our calls (a response with neither
 * result nor error, say), that call fails now rather than at its timeout. */
static void handle_invalid(struct srv *s, struct mcpgw__rpc *m, const char *line, size_t len)
{
    json_object *id;
    struct mcpgw_call *c = NULL;
    unsigned gen = s->gen;
    char msg[200];
    uint64_t n;

    if (json_object_is_type(m->root, json_type_object) &&
        json_object_object_get_ex(m->root, "id", &id) && mcpgw__rpc_id_ours(id, &n))
        c = slot_get(s, n);
    srv_garbage(s, "JSON that is not JSON-RPC 2.0", line, len);
    if (c && gen == s->gen && slot_get(s, n) == c) {
        snprintf(msg, sizeof(msg), "server '%s' sent a malformed response", s->conf->id);
        call_fail(c, MCPGW_EPROTO, msg);
    }
}

static void handle_line(struct srv *s, const char *line, size_t len)
{
    struct mcpgw__rpc m;

    if (mcpgw__rpc_parse(s->hub->tok, line, len, &m) < 0) {
        srv_garbage(s, "a line that is not JSON", line, len);
        return;
    }
    switch (m.kind) {
    case MCPGW__RPC_RESPONSE:
        handle_response(s, &m, line, len);
        break;
    case MCPGW__RPC_REQUEST:
        handle_request(s, &m);
        break;
    case MCPGW__RPC_NOTIFICATION:
        handle_notification(s, &m);
        break;
    default:
        handle_invalid(s, &m, line, len);
        break;
    }
    mcpgw__rpc_release(&m);
}

static void handle_oversize(struct srv *s, const char *tail, size_t len)
{
    size_t size = mcpgw__framer_skipped(&s->fout);
    struct mcpgw_call *c;
    char msg[200];
    uint64_t id;

    snprintf(msg, sizeof(msg), "server '%s' sent a %zu-byte message, over the %zu-byte limit",
             s->conf->id, size, s->hub->conf->limits.max_message_bytes);
    if (mcpgw__rpc_tail_id(tail, len, &id) && (c = slot_get(s, id))) {
        unsigned gen = s->gen;

        call_fail(c, MCPGW_ETOOBIG, msg);
        if (gen == s->gen)
            srv_garbage(s, "an oversized message", tail, len);
        return;
    }
    srv_fail(s, MCPGW_ESERVERGONE, "sent a %zu-byte message with no id mcpgw could recover", size);
}

static void on_stdout(struct watch *w, uint32_t events)
{
    struct srv *s = SRV_OF(w, w_out);
    unsigned gen = s->gen;

    for (int i = 0; i < READ_BUDGET; i++) {
        ssize_t n = mcpgw__framer_read(&s->fout, s->child.out_fd);
        char *line;
        size_t len;
        int kind;

        if (n == -EAGAIN)
            return;
        if (n <= 0) {
            close_fd(s->hub, &s->child.out_fd);
            srv_lost(s, n == 0 ? "closed its stdout" : "stdout read failed");
            return;
        }
        while ((kind = mcpgw__framer_next(&s->fout, &line, &len)) != MCPGW__FRAME_NONE) {
            if (kind == MCPGW__FRAME_LINE)
                handle_line(s, line, len);
            else
                handle_oversize(s, line, len);
            /* A callback or a failure may have torn the process down. */
            if (gen != s->gen || s->child.out_fd < 0)
                return;
        }
        /* A short read drained the pipe: another read would only say
         * EAGAIN, a syscall per call at low concurrency. */
        if (n < MCPGW__FRAMER_CHUNK / 4)
            return;
    }
}

static void on_stderr(struct watch *w, uint32_t events)
{
    struct srv *s = SRV_OF(w, w_err);
    char comp[MCPGW_SERVER_ID_MAX + 8];
    int64_t sec = mcpgw__mono_ms() / 1000;
    ssize_t n;
    char *line;
    size_t len;
    int kind;

    n = mcpgw__framer_read(&s->ferr, s->child.err_fd);
    if (n == -EAGAIN)
        return;
    if (n <= 0) {
        close_fd(s->hub, &s->child.err_fd);
        return;
    }
    snprintf(comp, sizeof(comp), "server:%s", s->conf->id);
    while ((kind = mcpgw__framer_next(&s->ferr, &line, &len)) != MCPGW__FRAME_NONE) {
        if (sec != s->err_sec) {
            if (s->err_dropped)
                mcpgw_log_warn(comp, "%u stderr lines dropped (over %d lines/s)",
                               s->err_dropped, MCPGW_STDERR_LINES_PER_SEC);
            s->err_sec = sec;
            s->err_lines = s->err_dropped = 0;
        }
        if (++s->err_lines > MCPGW_STDERR_LINES_PER_SEC) {
            s->err_dropped++;
            continue;
        }
        if (kind == MCPGW__FRAME_LINE)
            mcpgw_log_info(comp, "%.*s", (int)len, line);
        else
            mcpgw_log_info(comp, "[%zu-byte line cut] ...%.*s", mcpgw__framer_skipped(&s->ferr),
                           (int)len, line);
    }
}

/* Send queued calls once the server is ready and its tool list current. */
static void srv_send_queued(struct srv *s)
{
    struct mcpgw_call *c;
    char msg[200];
    int rc;

    /* Always take the head: a callback may cancel any other queued call. */
    while ((c = s->q_head) && s->state == MCPGW_SERVER_READY && !s->list_id) {
        if (!tool_listed(s, c->tool)) {
            snprintf(msg, sizeof(msg), "server '%s' has no tool '%.80s'", s->conf->id, c->tool);
            call_fail(c, MCPGW_EUNKNOWNTOOL, msg);
            continue;
        }
        queue_remove(s, c);
        rc = srv_write_call(s, c, c->args, c->args_len);
        free(c->args);
        c->args = NULL;
        if (rc < 0) {
            snprintf(msg, sizeof(msg), "server '%s' is not reading its input fast enough",
                     s->conf->id);
            call_fail(c, rc, msg);
        }
    }
}

/* ---- the loop --------------------------------------------------------------- */

static void rearm_timerfd(mcpgw_hub *hub)
{
    struct mcpgw__timer *t = mcpgw__theap_peek(&hub->timers);
    struct itimerspec its = { 0 };

    if (!t) {
        if (hub->armed_for) {
            timerfd_settime(hub->tfd, 0, &its, NULL);
            hub->armed_for = 0;
        }
        return;
    }
    /* Calls finishing early leave the timerfd set for a deadline that no
     * longer exists; that costs one spurious wake-up, far cheaper than a
     * syscall per call. */
    if (hub->armed_for && hub->armed_for <= t->when)
        return;
    its.it_value.tv_sec = t->when / 1000;
    its.it_value.tv_nsec = (t->when % 1000) * 1000000 + 1;
    timerfd_settime(hub->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    hub->armed_for = t->when;
}

static void run_timers(mcpgw_hub *hub)
{
    int64_t now = mcpgw__mono_ms();
    struct mcpgw__timer *t;

    while ((t = mcpgw__theap_peek(&hub->timers)) && t->when <= now) {
        mcpgw__theap_del(&hub->timers, t);
        t->fn(t);
    }
}

static void on_timerfd(struct watch *w, uint32_t events)
{
    mcpgw_hub *hub = (mcpgw_hub *)((char *)w - offsetof(mcpgw_hub, w_timer));
    uint64_t n;

    if (read(hub->tfd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        mcpgw_log_debug(COMPONENT, "timerfd read: %s", strerror(errno));
    hub->armed_for = 0;
}

static void run_posts(mcpgw_hub *hub)
{
    struct post *list, *p;

    pthread_mutex_lock(&hub->post_lock);
    list = hub->posts;
    hub->posts = hub->posts_tail = NULL;
    pthread_mutex_unlock(&hub->post_lock);
    while ((p = list)) {
        list = p->next;
        p->fn(hub, p->ud);
        free(p);
    }
}

static void on_eventfd(struct watch *w, uint32_t events)
{
    mcpgw_hub *hub = (mcpgw_hub *)((char *)w - offsetof(mcpgw_hub, w_event));
    uint64_t n;

    if (read(hub->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
        mcpgw_log_debug(COMPONENT, "eventfd read: %s", strerror(errno));
    run_posts(hub);
}

static void run_waiters(mcpgw_hub *hub)
{
    hub->waiters_due = false;
    for (size_t i = 0; i < hub->nsrv; i++) {
        struct srv *s = &hub->srvs[i];

        if (s->waiters && s->state == MCPGW_SERVER_READY && !s->list_id)
            notify_waiters(s);
    }
}

static void flush_dirty(mcpgw_hub *hub)
{
    struct srv *s;

    while ((s = hub->dirty)) {
        hub->dirty = s->dirty_next;
        s->dirty = false;
        srv_flush(s);
    }
}

int mcpgw_hub_run(mcpgw_hub *hub, int timeout_ms)
{
    struct epoll_event evs[64];
    int n;

    rearm_timerfd(hub);
    if (hub->waiters_due)
        timeout_ms = 0;
    n = epoll_wait(hub->epfd, evs, 64, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    hub->in_run = true;
    for (int i = 0; i < n; i++) {
        struct watch *w = evs[i].data.ptr;

        w->fn(w, evs[i].events);
    }
    run_timers(hub);
    if (hub->waiters_due)
        run_waiters(hub);
    flush_dirty(hub);
    hub->in_run = false;
    rearm_timerfd(hub);
    return 0;
}

int mcpgw_hub_fd(const mcpgw_hub *hub)
{
    return hub->epfd;
}

int mcpgw_hub_post(mcpgw_hub *hub, void (*fn)(mcpgw_hub *hub, void *ud), void *ud)
{
    struct post *p = malloc(sizeof(*p));

    if (!p)
        return -ENOMEM;
    p->fn = fn;
    p->ud = ud;
    p->next = NULL;
    pthread_mutex_lock(&hub->post_lock);
    if (hub->closing) {
        pthread_mutex_unlock(&hub->post_lock);
        free(p);
        return MCPGW_ESHUTDOWN;
    }
    if (hub->posts_tail)
        hub->posts_tail->next = p;
    else
        hub->posts = p;
    hub->posts_tail = p;
    pthread_mutex_unlock(&hub->post_lock);
    wake(hub);
    return 0;
}

/* ---- creation and teardown -------------------------------------------------- */

static size_t slots_for(int max_inflight)
{
    size_t n = 16;

    while (n < (size_t)max_inflight * 2 + 2)
        n *= 2;
    return n;
}

mcpgw_hub *mcpgw_hub_new(struct mcpgw_conf *conf, int *rcp)
{
    mcpgw_hub *hub = calloc(1, sizeof(*hub));
    int rc = -ENOMEM;

    if (!hub)
        goto fail_nohub;
    hub->epfd = hub->tfd = hub->efd = -1;
    pthread_mutex_init(&hub->post_lock, NULL);
    mcpgw__theap_init(&hub->timers);
    mcpgw_buf_init(&hub->scratch, MCPGW_MESSAGE_BYTES_MAX);
    hub->w_timer.fn = on_timerfd;
    hub->w_event.fn = on_eventfd;
    hub->epfd = epoll_create1(EPOLL_CLOEXEC);
    hub->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    hub->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (hub->epfd < 0 || hub->tfd < 0 || hub->efd < 0) {
        rc = -errno;
        goto fail;
    }
    watch_add(hub, hub->tfd, &hub->w_timer, EPOLLIN);
    watch_add(hub, hub->efd, &hub->w_event, EPOLLIN);
    hub->tok = json_tokener_new_ex(conf->limits.max_json_depth);
    if (!hub->tok)
        goto fail;
    json_tokener_set_flags(hub->tok, JSON_TOKENER_STRICT);
    hub->nsrv = conf->nservers;
    hub->srvs = calloc(hub->nsrv ? hub->nsrv : 1, sizeof(*hub->srvs));
    if (!hub->srvs)
        goto fail;
    for (size_t i = 0; i < hub->nsrv; i++) {
        struct srv *s = &hub->srvs[i];

        s->hub = hub;
        s->conf = &conf->servers[i];
        s->child.in_fd = s->child.out_fd = s->child.err_fd = s->child.pidfd = -1;
        s->w_out.fn = on_stdout;
        s->w_err.fn = on_stderr;
        s->w_in.fn = on_stdin;
        s->w_pid.fn = on_pidfd;
        mcpgw__timer_init(&s->t_start, on_start_timer);
        mcpgw__timer_init(&s->t_retry, on_retry_timer);
        mcpgw__timer_init(&s->t_stop, on_stop_timer);
        mcpgw__timer_init(&s->t_stable, on_stable_timer);
        mcpgw_buf_init(&s->outq, MCPGW_SERVER_OUTQ_MAX);
        mcpgw__framer_init(&s->fout, conf->limits.max_message_bytes);
        mcpgw__framer_init(&s->ferr, MCPGW_STDERR_LINE_MAX);
        s->mask = slots_for(s->conf->max_inflight) - 1;
        s->slots = calloc(s->mask + 1, sizeof(*s->slots));
        if (!s->slots)
            goto fail;
        s->state = s->conf->enabled ? MCPGW_SERVER_IDLE : MCPGW_SERVER_DISABLED;
        if (!s->conf->enabled)
            snprintf(s->last_error, sizeof(s->last_error), "disabled in the configuration");
    }
    srand((unsigned)(mcpgw__mono_ms() ^ getpid()));
    hub->conf = conf;
    return hub;
fail:
    hub->conf = NULL;
    mcpgw_hub_free(hub);
fail_nohub:
    if (rcp)
        *rcp = rc;
    return NULL;
}

/* Stop every server and wait for each to be reaped.  On the loop thread. */
void mcpgw__hub_stop_all(mcpgw_hub *hub)
{
    int64_t deadline = mcpgw__mono_ms() + MCPGW_STOP_STDIN_GRACE + MCPGW_STOP_TERM_GRACE + 1000;
    bool alive;

    pthread_mutex_lock(&hub->post_lock);
    hub->closing = true;
    pthread_mutex_unlock(&hub->post_lock);
    run_posts(hub);
    for (size_t i = 0; i < hub->nsrv; i++) {
        struct srv *s = &hub->srvs[i];
        char msg[120];

        mcpgw__theap_del(&hub->timers, &s->t_retry);
        snprintf(msg, sizeof(msg), "gateway is shutting down; server '%s' stopped", s->conf->id);
        fail_all(s, MCPGW_ESHUTDOWN, msg);
        fail_waiters(s, MCPGW_ESHUTDOWN, msg);
        if (s->child.pid > 0) {
            /* Let queued output (a cancel, say) go out before EOF. */
            srv_flush(s);
            srv_begin_stop(s, false);
        }
    }
    do {
        alive = false;
        for (size_t i = 0; i < hub->nsrv; i++)
            alive = alive || hub->srvs[i].child.pid > 0;
        if (alive)
            mcpgw_hub_run(hub, 50);
    } while (alive && mcpgw__mono_ms() < deadline);
    for (size_t i = 0; i < hub->nsrv; i++) {
        struct srv *s = &hub->srvs[i];
        pid_t pid = s->child.pid;
        int status;

        if (pid <= 0)
            continue;
        /* Past every grace period: no more waiting politely. */
        mcpgw__child_signal(&s->child, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
        kill(-pid, SIGKILL);
        s->child.pid = 0;
        mcpgw__child_close_fds(&s->child);
    }
}

bool mcpgw__hub_on_loop_thread(const mcpgw_hub *hub)
{
    return !hub->thread_running || pthread_equal(pthread_self(), hub->loop_thread);
}

void mcpgw_hub_free(mcpgw_hub *hub)
{
    if (!hub)
        return;
    if (hub->thread_running)
        mcpgw_hub_thread_stop(hub);
    if (hub->conf)
        mcpgw__hub_stop_all(hub);
    for (size_t i = 0; hub->srvs && i < hub->nsrv; i++) {
        struct srv *s = &hub->srvs[i];

        srv_teardown_fds(s);
        close_fd(hub, &s->child.pidfd);
        mcpgw__framer_release(&s->fout);
        mcpgw__framer_release(&s->ferr);
        mcpgw_buf_release(&s->outq);
        json_object_put(s->tools);
        json_object_put(s->tools_new);
        free(s->slots);
    }
    free(hub->srvs);
    run_posts(hub);
    mcpgw__theap_release(&hub->timers);
    mcpgw_buf_release(&hub->scratch);
    if (hub->tok)
        json_tokener_free(hub->tok);
    if (hub->epfd >= 0)
        close(hub->epfd);
    if (hub->tfd >= 0)
        close(hub->tfd);
    if (hub->efd >= 0)
        close(hub->efd);
    pthread_mutex_destroy(&hub->post_lock);
    mcpgw_conf_free(hub->conf);
    free(hub);
}

const struct mcpgw_conf *mcpgw_hub_conf(const mcpgw_hub *hub)
{
    return hub->conf;
}

void mcpgw_hub_set_observer(mcpgw_hub *hub, void (*fn)(void *ud, const struct mcpgw_hub_event *ev),
                            void *ud)
{
    hub->observer = fn;
    hub->observer_ud = ud;
}

/* ---- servers ------------------------------------------------------------------ */

static struct srv *find_srv(const mcpgw_hub *hub, const char *id)
{
    for (size_t i = 0; i < hub->nsrv; i++)
        if (strcmp(hub->srvs[i].conf->id, id) == 0)
            return &hub->srvs[i];
    return NULL;
}

size_t mcpgw_hub_server_count(const mcpgw_hub *hub)
{
    return hub->nsrv;
}

bool mcpgw_hub_health(const mcpgw_hub *hub, size_t i, struct mcpgw_server_health *h)
{
    if (i >= hub->nsrv)
        return false;
    fill_health(&hub->srvs[i], h);
    return true;
}

int mcpgw_hub_health_of(const mcpgw_hub *hub, const char *server, struct mcpgw_server_health *h)
{
    struct srv *s = find_srv(hub, server);

    if (!s)
        return MCPGW_EUNKNOWNSERVER;
    fill_health(s, h);
    return 0;
}

/* Start s if it is idle; report whether it can take work now or soon. */
static int srv_ensure(struct srv *s)
{
    if (s->hub->closing)
        return MCPGW_ESHUTDOWN;
    if (s->state == MCPGW_SERVER_IDLE)
        srv_start(s);
    switch (s->state) {
    case MCPGW_SERVER_STARTING:
    case MCPGW_SERVER_READY:
        return 0;
    default:
        return MCPGW_EUNAVAIL;
    }
}

int mcpgw_hub_start(mcpgw_hub *hub, const char *server)
{
    struct srv *s = find_srv(hub, server);

    if (!s)
        return MCPGW_EUNKNOWNSERVER;
    if (s->state == MCPGW_SERVER_BACKOFF && s->next_retry_wall <= wall_ms())
        srv_start(s);
    return srv_ensure(s);
}

json_object *mcpgw_hub_tools(mcpgw_hub *hub, const char *server)
{
    struct srv *s = find_srv(hub, server);

    return s && s->state == MCPGW_SERVER_READY ? s->tools : NULL;
}

int mcpgw_hub_list_tools(mcpgw_hub *hub, const char *server, mcpgw_tools_cb cb, void *ud)
{
    struct srv *s = find_srv(hub, server);
    struct tools_waiter *w;
    int rc;

    if (!s)
        return MCPGW_EUNKNOWNSERVER;
    if ((rc = srv_ensure(s)) < 0)
        return rc;
    if (!(w = calloc(1, sizeof(*w))))
        return -ENOMEM;
    w->cb = cb;
    w->ud = ud;
    w->next = s->waiters;
    s->waiters = w;
    if (s->state == MCPGW_SERVER_READY && !s->list_id) {
        /* Answer on the next turn, never from inside this call. */
        hub->waiters_due = true;
        wake(hub);
    }
    return 0;
}

/* ---- calls -------------------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int mcpgw_hub_call(mcpgw_hub *hub, const char *server, const char *tool, json_object *args,
                   const struct mcpgw_call_opts *opts, mcpgw_call_cb cb, void *ud,
                   mcpgw_call **out)
{
    static const struct mcpgw_call_opts no_opts;
    struct srv *s = find_srv(hub, server);
    struct mcpgw_call *c = NULL;
    const char *args_json = "{}";
    size_t args_len = 2;
    int rc, timeout;

    if (!opts)
        opts = &no_opts;
    if (!s)
        return MCPGW_EUNKNOWNSERVER;
    if (!tool || !*tool || !cb)
        return -EINVAL;
    if (args && !json_object_is_type(args, json_type_object))
        return -EINVAL;
    if (!mcpgw_conf_tool_allowed(s->conf, tool))
        return MCPGW_EUNKNOWNTOOL;
    if (hub->closing)
        return MCPGW_ESHUTDOWN;
    if (s->state == MCPGW_SERVER_DISABLED || s->state == MCPGW_SERVER_BACKOFF ||
        s->state == MCPGW_SERVER_STOPPING)
        return MCPGW_EUNAVAIL;
    if (s->inflight >= (unsigned)s->conf->max_inflight)
        return MCPGW_EBUSY;
    if (s->state == MCPGW_SERVER_READY && !s->list_id && !tool_listed(s, tool))
        return MCPGW_EUNKNOWNTOOL;
    if (args) {
        /* The server gets our re-serialisation of what was validated,
         * never the client's raw bytes. */
        args_json = json_object_to_json_string_length(args, JSON_C_TO_STRING_PLAIN |
                                                      JSON_C_TO_STRING_NOSLASHESCAPE, &args_len);
        if (!args_json)
            return -ENOMEM;
    }
    if (args_len + strlen(tool) + 160 > hub->conf->limits.max_message_bytes ||
        args_len + strlen(tool) + 160 > MCPGW_STDIO_WRITE_BYTES_MAX)
        return MCPGW_ETOOBIG;

    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->srv = s;
    c->call_id = ++hub->next_call_id;
    c->progress = opts->progress;
    c->cb = cb;
    c->ud = ud;
    c->started = mcpgw__mono_ms();
    mcpgw__timer_init(&c->timer, on_call_timer);
    c->tool = strdup(tool);
    c->caller = dup_or_null(opts->caller);
    c->client_call_id = dup_or_null(opts->client_call_id);
    c->transport = dup_or_null(opts->transport);
    if (!c->tool || (opts->caller && !c->caller) ||
        (opts->client_call_id && !c->client_call_id) || (opts->transport && !c->transport)) {
        call_free(c);
        return -ENOMEM;
    }
    if ((rc = srv_ensure(s)) < 0) {
        call_free(c);
        return rc;
    }
    if (s->state == MCPGW_SERVER_READY && !s->list_id) {
        if ((rc = srv_write_call(s, c, args_json, args_len)) < 0) {
            call_free(c);
            return rc;
        }
    } else {
        c->args = malloc(args_len + 1);
        if (!c->args) {
            call_free(c);
            return -ENOMEM;
        }
        memcpy(c->args, args_json, args_len + 1);
        c->args_len = args_len;
        c->queued = true;
        c->prev = s->q_tail;
        if (s->q_tail)
            s->q_tail->next = c;
        else
            s->q_head = c;
        s->q_tail = c;
    }
    s->inflight++;
    timeout = opts->timeout_ms > 0 && opts->timeout_ms < s->conf->call_timeout_ms ?
              opts->timeout_ms : s->conf->call_timeout_ms;
    timer_arm(hub, &c->timer, c->started + timeout);
    if (hub->observer) {
        struct mcpgw_hub_event oev = {
            .kind = MCPGW_HUB_CALL_START, .call_id = c->call_id, .server = s->conf->id,
            .tool = c->tool, .caller = c->caller, .client_call_id = c->client_call_id,
            .transport = c->transport, .args = args,
            .exit_status = -1
        };
        hub->observer(hub->observer_ud, &oev);
    }
    if (out)
        *out = c;
    return 0;
}

static void on_call_timer(struct mcpgw__timer *t)
{
    struct mcpgw_call *c = (struct mcpgw_call *)((char *)t - offsetof(struct mcpgw_call, timer));
    struct srv *s = c->srv;
    char msg[200];

    snprintf(msg, sizeof(msg), "server '%s' did not answer '%.80s' within %" PRId64 " ms",
             s->conf->id, c->tool, mcpgw__mono_ms() - c->started);
    if (!c->queued && c->req_id)
        srv_cancel_request(s, c->req_id, "timed out in mcpgw");
    mcpgw_log_info(COMPONENT, "%s", msg);
    call_fail(c, MCPGW_ETIMEDOUT, msg);
}

void mcpgw_call_cancel(mcpgw_call *c, const char *reason)
{
    char msg[200];

    if (!c->queued && c->req_id)
        srv_cancel_request(c->srv, c->req_id, reason ? reason : "cancelled by the client");
    snprintf(msg, sizeof(msg), "call to '%.80s' on server '%s' cancelled", c->tool,
             c->srv->conf->id);
    call_fail(c, MCPGW_ECANCELED, msg);
}

uint64_t mcpgw_call_id(const mcpgw_call *c)
{
    return c->call_id;
}
