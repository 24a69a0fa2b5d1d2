/* hub.c - the hub's public face: creation, the loop, servers and calls.
 *
 * The life of a server: IDLE -> (first use) spawn -> STARTING (initialize,
 * notifications/initialized, tools/list) -> READY.  A death, a start that
 * takes too long, or repeated garbage on stdout fails every call it holds
 * and moves it through STOPPING (SIGTERM to its group, SIGKILL after a
 * grace period) to BACKOFF, from which it restarts after an exponentially
 * growing, jittered delay.  hub_proc.c runs that life, hub_mcp.c speaks the
 * protocol; see hub.h for the contract with callers and
 * ../shared/reference/mcp-stdio-facts.md for why each protocol step is so.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include "codec.h"
#include "err.h"
#include "hub_internal.h"
#include "limits.h"
#include "log.h"
#include "pins.h"

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
    case MCPGW_SERVER_REMOVED: return "removed";
    }
    return "unknown";
}

/* ---- small helpers ------------------------------------------------------ */

void mcpgw__srv_fill_health(const struct srv *s, struct mcpgw_server_health *h)
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

void mcpgw__srv_observe(struct srv *s, int exit_status)
{
    struct mcpgw_server_health h;
    struct mcpgw_hub_event ev = { .kind = MCPGW_HUB_SERVER_STATE, .exit_status = exit_status };

    /* A retired server's id may already name its successor: its own
     * stopping and exit would read as the new server's. */
    if (!s->hub->observer || s->retired)
        return;
    mcpgw__srv_fill_health(s, &h);
    ev.health = &h;
    ev.server = s->conf->id;
    s->hub->observer(s->hub->observer_ud, &ev);
}

void mcpgw__srv_set_state(struct srv *s, enum mcpgw_server_state st, int exit_status)
{
    if (s->state == st && exit_status < 0)
        return;
    s->state = st;
    mcpgw__srv_observe(s, exit_status);
}

void mcpgw__hub_timer_arm(mcpgw_hub *hub, struct mcpgw__timer *t, int64_t when)
{
    /* Out of memory here would lose a deadline; the heap grows in steps of
     * doubling, so retrying once after the failure is pointless.  Log it:
     * the call still completes when the server answers or dies. */
    if (mcpgw__theap_add(&hub->timers, t, when) < 0)
        mcpgw_log_error(COMPONENT, "cannot arm a timer: out of memory");
}

void mcpgw__hub_watch_add(mcpgw_hub *hub, int fd, struct watch *w, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = w };

    if (fd >= 0 && epoll_ctl(hub->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
        mcpgw_log_error(COMPONENT, "epoll_ctl add: %s", strerror(errno));
}

void mcpgw__hub_close_fd(mcpgw_hub *hub, int *fd)
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

void mcpgw__hub_wake(mcpgw_hub *hub)
{
    wake(hub);
}

/* ---- call bookkeeping ------------------------------------------------------- */


/* A fresh request id whose slot is free.  In-flight calls are fewer than
 * half the slots, so this loop ends quickly. */
uint64_t mcpgw__srv_next_id(struct srv *s)
{
    uint64_t id;

    do {
        id = ++s->next_id;
    } while (s->slots[id & s->mask]);
    return id;
}

void mcpgw__srv_queue_remove(struct srv *s, struct mcpgw_call *c)
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
void mcpgw__call_done(struct mcpgw_call *c, struct mcpgw_call_event *ev)
{
    struct srv *s = c->srv;
    mcpgw_hub *hub = s->hub;

    if (c->queued)
        mcpgw__srv_queue_remove(s, c);
    else if (c->req_id && mcpgw__srv_slot_get(s, c->req_id) == c)
        s->slots[c->req_id & s->mask] = NULL;
    mcpgw__theap_del(&hub->timers, &c->timer);
    s->inflight--;
    s->text_inflight -= c->result_text;
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
    /* The last call of a retired server: a turn stops or frees it. */
    if (s->retired && s->inflight == 0)
        wake(hub);
}

void mcpgw__call_fail(struct mcpgw_call *c, int status, const char *msg)
{
    struct mcpgw_call_event ev = { .status = status, .error = msg };

    mcpgw_log_debug(COMPONENT, "call %" PRIu64 " '%s' on '%s' failed: %s",
                    c->call_id, c->tool, c->srv->conf->id, msg);
    mcpgw__call_done(c, &ev);
}

/* Fail every call the server holds.  Calls are unlinked first, so callbacks
 * that start new calls or cancel others see a consistent server. */
void mcpgw__srv_fail_all(struct srv *s, int sent_status, const char *msg)
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
        mcpgw__call_fail(c, sent_status, msg);
    }
    while ((c = s->q_head))
        mcpgw__call_fail(c, MCPGW_EUNAVAIL, msg);
}

void mcpgw__srv_fail_waiters(struct srv *s, int status, const char *msg)
{
    struct tools_waiter *w;

    while ((w = s->waiters)) {
        s->waiters = w->next;
        w->cb(w->ud, status, NULL, msg);
        free(w);
    }
}

void mcpgw__srv_notify_waiters(struct srv *s)
{
    struct tools_waiter *w;

    mcpgw__srv_pins_refresh(s);
    while ((w = s->waiters)) {
        s->waiters = w->next;
        w->cb(w->ud, 0, s->tools, NULL);
        free(w);
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
        struct srv *s = hub->srvs[i];

        if (s->waiters && s->state == MCPGW_SERVER_READY && !s->list_id)
            mcpgw__srv_notify_waiters(s);
    }
    for (struct srv *s = hub->retired; s; s = s->retired_next)
        if (s->waiters && s->state == MCPGW_SERVER_READY && !s->list_id)
            mcpgw__srv_notify_waiters(s);
}

static void flush_dirty(mcpgw_hub *hub)
{
    struct srv *s;

    while ((s = hub->dirty)) {
        hub->dirty = s->dirty_next;
        s->dirty = false;
        mcpgw__srv_flush(s);
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
    hub->run_depth++;
    for (int i = 0; i < n; i++) {
        struct watch *w = evs[i].data.ptr;

        w->fn(w, evs[i].events);
    }
    run_timers(hub);
    if (hub->waiters_due)
        run_waiters(hub);
    /* evs[] may still name a retired server's watches until here: only the
     * outermost turn may free one. */
    if (hub->retired)
        mcpgw__hub_sweep_retired(hub, hub->run_depth == 1);
    flush_dirty(hub);
    hub->run_depth--;
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

struct srv *mcpgw__srv_new(mcpgw_hub *hub, const struct mcpgw_conf_server *conf,
                           size_t max_message_bytes)
{
    struct srv *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->hub = hub;
    s->conf = conf;
    s->child.in_fd = s->child.out_fd = s->child.err_fd = s->child.pidfd = -1;
    s->slot_fd = -1;
    s->w_out.fn = mcpgw__srv_on_stdout;
    s->w_err.fn = mcpgw__srv_on_stderr;
    s->w_in.fn = mcpgw__srv_on_stdin;
    s->w_pid.fn = mcpgw__srv_on_pidfd;
    mcpgw__timer_init(&s->t_start, mcpgw__srv_on_start_timer);
    mcpgw__timer_init(&s->t_retry, mcpgw__srv_on_retry_timer);
    mcpgw__timer_init(&s->t_stop, mcpgw__srv_on_stop_timer);
    mcpgw__timer_init(&s->t_stable, mcpgw__srv_on_stable_timer);
    mcpgw__timer_init(&s->t_ping, mcpgw__srv_on_ping_timer);
    mcpgw__timer_init(&s->t_drain, mcpgw__srv_on_drain_timer);
    mcpgw_buf_init(&s->outq, MCPGW_SERVER_OUTQ_MAX);
    mcpgw__framer_init(&s->fout, max_message_bytes);
    mcpgw__framer_init(&s->ferr, MCPGW_STDERR_LINE_MAX);
    s->mask = slots_for(conf->max_inflight) - 1;
    s->slots = calloc(s->mask + 1, sizeof(*s->slots));
    if (!s->slots) {
        mcpgw__srv_free(s);
        return NULL;
    }
    s->state = conf->enabled ? MCPGW_SERVER_IDLE : MCPGW_SERVER_DISABLED;
    if (!conf->enabled)
        snprintf(s->last_error, sizeof(s->last_error), "disabled in the configuration");
    return s;
}

void mcpgw__srv_free(struct srv *s)
{
    mcpgw_hub *hub;

    if (!s)
        return;
    hub = s->hub;
    mcpgw__srv_teardown_fds(s);
    mcpgw__hub_close_fd(hub, &s->child.pidfd);
    if (s->slot_fd >= 0)
        close(s->slot_fd);
    mcpgw__theap_del(&hub->timers, &s->t_start);
    mcpgw__theap_del(&hub->timers, &s->t_retry);
    mcpgw__theap_del(&hub->timers, &s->t_stop);
    mcpgw__theap_del(&hub->timers, &s->t_stable);
    mcpgw__theap_del(&hub->timers, &s->t_ping);
    mcpgw__theap_del(&hub->timers, &s->t_drain);
    if (s->dirty) {
        struct srv **pp = &hub->dirty;

        while (*pp && *pp != s)
            pp = &(*pp)->dirty_next;
        if (*pp)
            *pp = s->dirty_next;
    }
    mcpgw__framer_release(&s->fout);
    mcpgw__framer_release(&s->ferr);
    mcpgw_buf_release(&s->outq);
    json_object_put(s->tools);
    json_object_put(s->tools_all);
    json_object_put(s->tools_new);
    free(s->slots);
    free(s);
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
    mcpgw__hub_watch_add(hub, hub->tfd, &hub->w_timer, EPOLLIN);
    mcpgw__hub_watch_add(hub, hub->efd, &hub->w_event, EPOLLIN);
    hub->tok = json_tokener_new_ex(conf->limits.max_json_depth);
    if (!hub->tok)
        goto fail;
    json_tokener_set_flags(hub->tok, JSON_TOKENER_STRICT);
    hub->reload_grace_ms = MCPGW_RELOAD_GRACE;
    hub->srvs = calloc(conf->nservers ? conf->nservers : 1, sizeof(*hub->srvs));
    if (!hub->srvs)
        goto fail;
    for (size_t i = 0; i < conf->nservers; i++) {
        if (!(hub->srvs[i] = mcpgw__srv_new(hub, &conf->servers[i],
                                            conf->limits.max_message_bytes)))
            goto fail;
        hub->nsrv++;
    }
    srand((unsigned)(mcpgw__mono_ms() ^ getpid()));
    /* The state directory itself may be missing on a first run: make it,
     * and its slots directory, but nothing above. */
    if (mkdir(conf->state_dir, 0750) < 0 && errno != EEXIST)
        mcpgw_log_debug(COMPONENT, "cannot create '%s': %s", conf->state_dir, strerror(errno));
    if (asprintf(&hub->slots_dir, "%s/slots", conf->state_dir) < 0) {
        hub->slots_dir = NULL;
        goto fail;
    }
    hub->conf = conf;
    return hub;
fail:
    /* Not ours to free on failure; and nothing was started to stop. */
    hub->conf = NULL;
    mcpgw_hub_free(hub);
fail_nohub:
    if (rcp)
        *rcp = rc;
    return NULL;
}

static void stop_one(struct srv *s)
{
    char msg[120];

    mcpgw__theap_del(&s->hub->timers, &s->t_retry);
    mcpgw__theap_del(&s->hub->timers, &s->t_drain);
    snprintf(msg, sizeof(msg), "gateway is shutting down; server '%s' stopped", s->conf->id);
    mcpgw__srv_fail_all(s, MCPGW_ESHUTDOWN, msg);
    mcpgw__srv_fail_waiters(s, MCPGW_ESHUTDOWN, msg);
    if (s->child.pid > 0) {
        /* Let queued output (a cancel, say) go out before EOF. */
        mcpgw__srv_flush(s);
        mcpgw__srv_begin_stop(s, false);
    }
}

/* Past every grace period: no more waiting politely. */
static void kill_one(struct srv *s)
{
    pid_t pid = s->child.pid;
    int status;

    if (pid <= 0)
        return;
    mcpgw__child_signal(&s->child, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    kill(-pid, SIGKILL);
    s->child.pid = 0;
    mcpgw__child_close_fds(&s->child);
}

static bool any_alive(const mcpgw_hub *hub)
{
    for (size_t i = 0; i < hub->nsrv; i++)
        if (hub->srvs[i]->child.pid > 0)
            return true;
    for (const struct srv *s = hub->retired; s; s = s->retired_next)
        if (s->child.pid > 0)
            return true;
    return false;
}

/* Stop every server, retired ones too, and wait for each to be reaped.
 * On the loop thread. */
void mcpgw__hub_stop_all(mcpgw_hub *hub)
{
    int64_t deadline = mcpgw__mono_ms() + MCPGW_STOP_STDIN_GRACE + MCPGW_STOP_TERM_GRACE + 1000;

    pthread_mutex_lock(&hub->post_lock);
    hub->closing = true;
    pthread_mutex_unlock(&hub->post_lock);
    run_posts(hub);
    for (size_t i = 0; i < hub->nsrv; i++)
        stop_one(hub->srvs[i]);
    for (struct srv *s = hub->retired; s; s = s->retired_next)
        stop_one(s);
    while (any_alive(hub) && mcpgw__mono_ms() < deadline)
        mcpgw_hub_run(hub, 50);
    for (size_t i = 0; i < hub->nsrv; i++)
        kill_one(hub->srvs[i]);
    for (struct srv *s = hub->retired; s; s = s->retired_next)
        kill_one(s);
}

bool mcpgw__hub_on_loop_thread(const mcpgw_hub *hub)
{
    return !(hub->thread_running || hub->bound) || pthread_equal(pthread_self(), hub->loop_thread);
}

void mcpgw_hub_free(mcpgw_hub *hub)
{
    if (!hub)
        return;
    if (hub->thread_running)
        mcpgw_hub_thread_stop(hub);
    if (hub->conf)
        mcpgw__hub_stop_all(hub);
    for (size_t i = 0; hub->srvs && i < hub->nsrv; i++)
        mcpgw__srv_free(hub->srvs[i]);
    free(hub->srvs);
    while (hub->retired) {
        struct srv *s = hub->retired;

        hub->retired = s->retired_next;
        mcpgw__srv_free(s);
    }
    while (hub->old_confs) {
        struct conf_keep *k = hub->old_confs;

        hub->old_confs = k->next;
        mcpgw_conf_free(k->conf);
        free(k);
    }
    free(hub->slots_dir);
    mcpgw_pins_free(hub->pins);
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
    /* Any thread; mcpgw_hub_reload() stores it. */
    return __atomic_load_n(&hub->conf, __ATOMIC_ACQUIRE);
}

void mcpgw_hub_set_observer(mcpgw_hub *hub, void (*fn)(void *ud, const struct mcpgw_hub_event *ev),
                            void *ud)
{
    hub->observer = fn;
    hub->observer_ud = ud;
}

void mcpgw_hub_set_batching(mcpgw_hub *hub, bool on)
{
    hub->batch_writes = on;
}

/* ---- servers ------------------------------------------------------------------ */

struct srv *mcpgw__hub_find_srv(const mcpgw_hub *hub, const char *id)
{
    for (size_t i = 0; i < hub->nsrv; i++)
        if (strcmp(hub->srvs[i]->conf->id, id) == 0)
            return hub->srvs[i];
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
    mcpgw__srv_fill_health(hub->srvs[i], h);
    return true;
}

int mcpgw_hub_health_of(const mcpgw_hub *hub, const char *server, struct mcpgw_server_health *h)
{
    struct srv *s = mcpgw__hub_find_srv(hub, server);

    if (!s)
        return MCPGW_EUNKNOWNSERVER;
    mcpgw__srv_fill_health(s, h);
    return 0;
}

/* Start s if it is idle; report whether it can take work now or soon. */
static int srv_ensure(struct srv *s)
{
    if (s->hub->closing)
        return MCPGW_ESHUTDOWN;
    if (s->state == MCPGW_SERVER_IDLE)
        mcpgw__srv_start(s);
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
    struct srv *s = mcpgw__hub_find_srv(hub, server);

    if (!s)
        return MCPGW_EUNKNOWNSERVER;
    if (s->state == MCPGW_SERVER_BACKOFF && s->next_retry_wall <= mcpgw_now_ms())
        mcpgw__srv_start(s);
    return srv_ensure(s);
}

json_object *mcpgw_hub_tools(mcpgw_hub *hub, const char *server)
{
    struct srv *s = mcpgw__hub_find_srv(hub, server);

    return s && s->state == MCPGW_SERVER_READY ? s->tools : NULL;
}

int mcpgw_hub_list_tools(mcpgw_hub *hub, const char *server, mcpgw_tools_cb cb, void *ud)
{
    struct srv *s = mcpgw__hub_find_srv(hub, server);
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

/* ---- calls: the API ------------------------------------------------------------ */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

int mcpgw_hub_call(mcpgw_hub *hub, const char *server, const char *tool, json_object *args,
                   const struct mcpgw_call_opts *opts, mcpgw_call_cb cb, void *ud,
                   mcpgw_call **out)
{
    static const struct mcpgw_call_opts no_opts;
    struct srv *s = mcpgw__hub_find_srv(hub, server);
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
    if (s->state == MCPGW_SERVER_READY && !s->list_id && !mcpgw__srv_tool_listed(s, tool)) {
        /* Withheld by pinning, unless approved meanwhile (held looks). */
        if (mcpgw__srv_tool_held(s, tool))
            return MCPGW_EFORBIDDEN;
        if (!mcpgw__srv_tool_listed(s, tool))
            return MCPGW_EUNKNOWNTOOL;
    }
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
    c->result_text = opts->result_text;
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
        if ((rc = mcpgw__srv_write_call(s, c, args_json, args_len)) < 0) {
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
    s->text_inflight += c->result_text;
    timeout = opts->timeout_ms > 0 && opts->timeout_ms < s->conf->call_timeout_ms ?
              opts->timeout_ms : s->conf->call_timeout_ms;
    mcpgw__hub_timer_arm(hub, &c->timer, c->started + timeout);
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
        mcpgw__srv_cancel_request(s, c->req_id, "timed out in mcpgw");
    mcpgw_log_info(COMPONENT, "%s", msg);
    mcpgw__call_fail(c, MCPGW_ETIMEDOUT, msg);
    mcpgw__srv_probe(s);
}

void mcpgw_call_cancel(mcpgw_call *c, const char *reason)
{
    char msg[200];

    if (!c->queued && c->req_id)
        mcpgw__srv_cancel_request(c->srv, c->req_id, reason ? reason : "cancelled by the client");
    snprintf(msg, sizeof(msg), "call to '%.80s' on server '%s' cancelled", c->tool,
             c->srv->conf->id);
    mcpgw__call_fail(c, MCPGW_ECANCELED, msg);
}

uint64_t mcpgw_call_id(const mcpgw_call *c)
{
    return c->call_id;
}

