/* hub_proc.c - a server's process: start, write to it, stop, reap, back off.
 *
 * Spawning is spawn.c's; this file decides when.  A failure fails the calls
 * the server holds at once (callers should not wait for a process to die),
 * then stops it: SIGTERM to its group, SIGKILL after a grace period.  Once
 * reaped, the restart policy and the consecutive-failure count choose what
 * comes next: idle (start on next use), back-off with a jittered,
 * doubling delay, or disabled.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec.h"
#include "err.h"
#include "hub_internal.h"
#include "jsonrpc.h"
#include "limits.h"
#include "log.h"
#include "slots.h"

#define PROTOCOL_LATEST "2025-11-25"

/* ---- output to a server --------------------------------------------------- */

void mcpgw__srv_mark_dirty(struct srv *s)
{
    if (s->hub->in_run || s->hub->batch_writes) {
        if (!s->dirty) {
            s->dirty = true;
            s->dirty_next = s->hub->dirty;
            s->hub->dirty = s;
            /* Outside a turn: make the loop run one, which flushes. */
            if (!s->hub->in_run)
                mcpgw__hub_wake(s->hub);
        }
    } else {
        mcpgw__srv_flush(s);
    }
}

/* Write what is queued; write first, and wait for EPOLLOUT only if the pipe
 * is full (redis's habit).  A broken pipe means the server is going away:
 * its exit (pidfd) reports why. */
void mcpgw__srv_flush(struct srv *s)
{
    while (s->outq_off < s->outq.len && s->child.in_fd >= 0) {
        ssize_t n = write(s->child.in_fd, s->outq.ptr + s->outq_off, s->outq.len - s->outq_off);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                if (!s->in_armed) {
                    s->in_armed = true;
                    mcpgw__hub_watch_add(s->hub, s->child.in_fd, &s->w_in, EPOLLOUT);
                }
                return;
            }
            mcpgw_log_debug(COMPONENT, "server '%s': write: %s", s->conf->id, strerror(errno));
            mcpgw__hub_close_fd(s->hub, &s->child.in_fd);
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

void mcpgw__srv_on_stdin(struct watch *w, uint32_t events)
{
    mcpgw__srv_flush(SRV_OF(w, w_in));
}

/* Queue a request line for the server; the caller has checked the size. */
int mcpgw__srv_write_call(struct srv *s, struct mcpgw_call *c, const char *args, size_t args_len)
{
    int rc;

    c->req_id = mcpgw__srv_next_id(s);
    rc = mcpgw__rpc_write_tool_call(&s->outq, c->req_id, c->tool, args, args_len,
                                    c->progress ? c->req_id : 0);
    if (rc < 0) {
        c->req_id = 0;
        return rc == MCPGW_ETOOBIG ? MCPGW_EBUSY : rc;
    }
    mcpgw__srv_slot_put(s, c);
    mcpgw__srv_mark_dirty(s);
    return 0;
}

void mcpgw__srv_notify(struct srv *s, const char *method, const char *params)
{
    if (mcpgw__rpc_write_notification(&s->outq, method, params) == 0)
        mcpgw__srv_mark_dirty(s);
}

void mcpgw__srv_cancel_request(struct srv *s, uint64_t id, const char *reason)
{
    char params[256];
    struct mcpgw_buf r;

    mcpgw_buf_init(&r, 200);
    if (mcpgw_buf_add_json_str(&r, reason, strlen(reason)) < 0)
        mcpgw_buf_adds(&r, "\"cancelled\"");
    snprintf(params, sizeof(params), "{\"requestId\":%" PRIu64 ",\"reason\":%s}", id,
             r.ptr ? r.ptr : "\"cancelled\"");
    mcpgw_buf_release(&r);
    mcpgw__srv_notify(s, "notifications/cancelled", params);
}

/* ---- process lifecycle ---------------------------------------------------- */

/* A host-wide slot for the process about to start (slots.h).  0, or -EAGAIN
 * with a message when the cap is reached.  A slot directory we cannot use
 * is said once and the server runs uncapped: refusing every start for a
 * state directory's permissions would take the whole gateway down. */
static int take_slot(struct srv *s, char *err, size_t errlen)
{
    mcpgw_hub *hub = s->hub;
    int fd;

    if (s->slot_fd >= 0)
        return 0;
    fd = mcpgw__slot_take(hub->slots_dir, hub->conf->max_server_processes);
    if (fd >= 0) {
        s->slot_fd = fd;
        return 0;
    }
    if (fd == -EAGAIN) {
        snprintf(err, errlen, "the host-wide limit of %d MCP server processes is reached",
                 hub->conf->max_server_processes);
        return fd;
    }
    if (!hub->slots_warned) {
        hub->slots_warned = true;
        mcpgw_log_warn(COMPONENT, "cannot use '%s' (%s): the host-wide limit of MCP server "
                       "processes is not enforced", hub->slots_dir, mcpgw_strerror(fd));
    }
    return 0;
}

static void release_slot(struct srv *s)
{
    if (s->slot_fd >= 0) {
        close(s->slot_fd);
        s->slot_fd = -1;
    }
}

void mcpgw__srv_teardown_fds(struct srv *s)
{
    mcpgw_hub *hub = s->hub;

    mcpgw__hub_close_fd(hub, &s->child.in_fd);
    mcpgw__hub_close_fd(hub, &s->child.out_fd);
    mcpgw__hub_close_fd(hub, &s->child.err_fd);
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
    mcpgw__srv_teardown_fds(s);
    release_slot(s);
    mcpgw__hub_close_fd(s->hub, &s->child.pidfd);
    mcpgw__theap_del(&s->hub->timers, &s->t_start);
    mcpgw__theap_del(&s->hub->timers, &s->t_stop);
    mcpgw__theap_del(&s->hub->timers, &s->t_stable);
    mcpgw__theap_del(&s->hub->timers, &s->t_drain);
    s->stop_phase = 0;
    s->failing = false;
    s->init_id = s->list_id = s->ping_id = 0;
    mcpgw__theap_del(&s->hub->timers, &s->t_ping);
    json_object_put(s->tools_new);
    s->tools_new = NULL;

    snprintf(msg, sizeof(msg), "server '%s' exited during the call (%s)", s->conf->id, how);
    if (!was_failing && !shutdown)
        snprintf(s->last_error, sizeof(s->last_error), "exited (%s)", how);
    mcpgw__srv_fail_all(s, MCPGW_ESERVERGONE, msg);
    mcpgw__srv_fail_waiters(s, MCPGW_EUNAVAIL, msg);

    if (shutdown || s->retired) {
        mcpgw_log_info(COMPONENT, "server '%s' stopped%s (%s)", s->conf->id,
                       s->retired && !shutdown ? " after the reload" : "", how);
        /* A retired server is never restarted; the end of this turn frees it. */
        mcpgw__srv_set_state(s, MCPGW_SERVER_IDLE, status);
        return;
    }
    if (!was_failing && clean && s->conf->restart_policy == MCPGW_RESTART_ON_FAILURE) {
        mcpgw_log_info(COMPONENT, "server '%s' exited (%s); it starts again on next use",
                       s->conf->id, how);
        mcpgw__srv_set_state(s, MCPGW_SERVER_IDLE, status);
        return;
    }
    if (s->conf->restart_policy == MCPGW_RESTART_NEVER) {
        mcpgw_log_warn(COMPONENT, "server '%s' %s (%s); restart policy is 'never', disabling it",
                       s->conf->id, was_failing ? "failed" : "exited", how);
        mcpgw__srv_set_state(s, MCPGW_SERVER_DISABLED, status);
        return;
    }
    s->failures++;
    {
        int delay = backoff_delay(s);

        s->next_retry_wall = mcpgw_now_ms() + delay;
        mcpgw__hub_timer_arm(s->hub, &s->t_retry, mcpgw__mono_ms() + delay);
        mcpgw_log_warn(COMPONENT, "server '%s' %s (%s); restarting in %.1f s",
                       s->conf->id, was_failing ? s->last_error : "exited", how, delay / 1000.0);
    }
    mcpgw__srv_set_state(s, MCPGW_SERVER_BACKOFF, status);
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

void mcpgw__srv_on_pidfd(struct watch *w, uint32_t events)
{
    srv_check_exit(SRV_OF(w, w_pid));
}

/* Stop the process: close stdin, then SIGTERM the group, then SIGKILL.
 * A failing server skips the polite first step: it already misbehaved. */
void mcpgw__srv_begin_stop(struct srv *s, bool failing)
{
    mcpgw_hub *hub = s->hub;

    if (s->child.pid <= 0)
        return;
    s->failing = s->failing || failing;
    if (s->stop_phase == 0) {
        mcpgw__hub_close_fd(hub, &s->child.in_fd);
        s->in_armed = false;
        s->stop_phase = 1;
        if (failing) {
            mcpgw__child_signal(&s->child, SIGTERM);
            s->stop_phase = 2;
            mcpgw__hub_timer_arm(hub, &s->t_stop, mcpgw__mono_ms() + MCPGW_STOP_TERM_GRACE);
        } else {
            mcpgw__hub_timer_arm(hub, &s->t_stop, mcpgw__mono_ms() + MCPGW_STOP_STDIN_GRACE);
        }
    }
    mcpgw__theap_del(&hub->timers, &s->t_start);
    mcpgw__theap_del(&hub->timers, &s->t_stable);
    mcpgw__srv_set_state(s, MCPGW_SERVER_STOPPING, -1);
}

void mcpgw__srv_on_stop_timer(struct mcpgw__timer *t)
{
    struct srv *s = SRV_OF(t, t_stop);

    if (srv_check_exit(s))
        return;
    if (s->child.pidfd < 0 && s->stop_phase == 3) {
        /* No pidfd: poll for the exit. */
        mcpgw__hub_timer_arm(s->hub, &s->t_stop, mcpgw__mono_ms() + 50);
        return;
    }
    if (s->stop_phase == 1) {
        mcpgw__child_signal(&s->child, SIGTERM);
        s->stop_phase = 2;
        mcpgw__hub_timer_arm(s->hub, &s->t_stop, mcpgw__mono_ms() + MCPGW_STOP_TERM_GRACE);
    } else if (s->stop_phase == 2) {
        mcpgw_log_warn(COMPONENT, "server '%s' ignored SIGTERM; sending SIGKILL", s->conf->id);
        mcpgw__child_signal(&s->child, SIGKILL);
        s->stop_phase = 3;
        if (s->child.pidfd < 0)
            mcpgw__hub_timer_arm(s->hub, &s->t_stop, mcpgw__mono_ms() + 50);
    }
}

/* Something went wrong with a running server: fail what it holds now (the
 * callers should not wait for the process to die), then stop it. */
void mcpgw__srv_fail(struct srv *s, int status, const char *fmt, ...)
{
    char msg[200], reason[150];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    snprintf(s->last_error, sizeof(s->last_error), "%s", reason);
    snprintf(msg, sizeof(msg), "server '%s' %s", s->conf->id, reason);
    mcpgw_log_warn(COMPONENT, "%s", msg);
    mcpgw__srv_begin_stop(s, true);
    mcpgw__srv_fail_all(s, status, msg);
    mcpgw__srv_fail_waiters(s, MCPGW_EUNAVAIL, msg);
}

/* stdout hit EOF or stdin broke: the process is almost always exiting.
 * Give it a moment to become reapable so the error says how it died. */
void mcpgw__srv_lost(struct srv *s, const char *what)
{
    struct pollfd p = { .fd = s->child.pidfd, .events = POLLIN };

    if (s->child.pidfd >= 0) {
        poll(&p, 1, 100);
    } else {
        /* No pidfd (a kernel before 5.3, or valgrind, which has no
         * pidfd_open): nothing else would notice the exit before the 2 s
         * stop grace, so look for it the same 100 ms, every 5 ms. */
        for (int ms = 0; ms < 100; ms += 5) {
            if (srv_check_exit(s))
                return;
            poll(NULL, 0, 5);
        }
    }
    if (srv_check_exit(s))
        return;
    if (s->state != MCPGW_SERVER_STOPPING)
        mcpgw__srv_fail(s, MCPGW_ESERVERGONE, "%s", what);
}

void mcpgw__srv_start(struct srv *s)
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
    json_object_put(s->tools_all);
    s->tools_all = NULL;
    rc = take_slot(s, err, sizeof(err));
    if (rc == 0)
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
    mcpgw__hub_watch_add(hub, s->child.out_fd, &s->w_out, EPOLLIN);
    mcpgw__hub_watch_add(hub, s->child.err_fd, &s->w_err, EPOLLIN);
    mcpgw__hub_watch_add(hub, s->child.pidfd, &s->w_pid, EPOLLIN);
    mcpgw_log_info(COMPONENT, "starting server '%s' (pid %d)", s->conf->id, (int)s->child.pid);
    mcpgw__srv_set_state(s, MCPGW_SERVER_STARTING, -1);

    /* No client capabilities: we cannot answer roots, sampling or
     * elicitation, and declaring them makes servers ask (facts §9). */
    snprintf(params, sizeof(params),
             "{\"protocolVersion\":\"%s\",\"capabilities\":{},"
             "\"clientInfo\":{\"name\":\"mcpgw\",\"version\":\"%s\"}}",
             PROTOCOL_LATEST, PACKAGE_VERSION);
    s->init_id = mcpgw__srv_next_id(s);
    if (mcpgw__rpc_write_request(&s->outq, s->init_id, "initialize", params) == 0)
        mcpgw__srv_mark_dirty(s);
    mcpgw__hub_timer_arm(hub, &s->t_start, mcpgw__mono_ms() + s->conf->start_timeout_ms);
}

void mcpgw__srv_on_start_timer(struct mcpgw__timer *t)
{
    struct srv *s = SRV_OF(t, t_start);

    if (s->state == MCPGW_SERVER_STARTING)
        mcpgw__srv_fail(s, MCPGW_EUNAVAIL, "did not finish starting within %d ms",
                 s->conf->start_timeout_ms);
}

void mcpgw__srv_on_retry_timer(struct mcpgw__timer *t)
{
    struct srv *s = SRV_OF(t, t_retry);

    if (s->state == MCPGW_SERVER_BACKOFF && !s->hub->closing)
        mcpgw__srv_start(s);
}

void mcpgw__srv_on_stable_timer(struct mcpgw__timer *t)
{
    struct srv *s = SRV_OF(t, t_stable);

    if (s->failures)
        mcpgw_log_info(COMPONENT, "server '%s' has run stably; back-off reset", s->conf->id);
    s->failures = 0;
}


/* ---- liveness -------------------------------------------------------------- */

void mcpgw__srv_probe(struct srv *s)
{
    int wait = s->conf->call_timeout_ms < MCPGW_PING_TIMEOUT ? s->conf->call_timeout_ms
                                                            : MCPGW_PING_TIMEOUT;

    if (s->state != MCPGW_SERVER_READY || s->ping_id)
        return;
    s->ping_id = mcpgw__srv_next_id(s);
    if (mcpgw__rpc_write_request(&s->outq, s->ping_id, "ping", NULL) < 0) {
        s->ping_id = 0;
        return;
    }
    mcpgw__srv_mark_dirty(s);
    mcpgw__hub_timer_arm(s->hub, &s->t_ping, mcpgw__mono_ms() + wait);
}

void mcpgw__srv_probe_answered(struct srv *s)
{
    s->ping_id = 0;
    mcpgw__theap_del(&s->hub->timers, &s->t_ping);
}

void mcpgw__srv_on_ping_timer(struct mcpgw__timer *t)
{
    struct srv *s = SRV_OF(t, t_ping);
    int wait = s->conf->call_timeout_ms < MCPGW_PING_TIMEOUT ? s->conf->call_timeout_ms
                                                            : MCPGW_PING_TIMEOUT;

    if (s->ping_id && s->state == MCPGW_SERVER_READY)
        mcpgw__srv_fail(s, MCPGW_ESERVERGONE,
                        "stopped answering (no reply to a ping within %d ms after a call timed out)",
                        wait);
}
