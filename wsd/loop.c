/* loop.c - epoll, timers and deferred work for mcpgw-wsd (see loop.h). */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "loop.h"

#define EVENTS_PER_WAIT 256

struct wsd_loop {
    int epfd;
    struct mcpgw__theap timers;
    struct wsd_defer *dq_head, *dq_tail;
    unsigned gen;               /* deferred work queued now runs in batch gen */
    int64_t now;
};

int wsd_loop_new(struct wsd_loop **out)
{
    struct wsd_loop *l = calloc(1, sizeof(*l));

    if (!l)
        return -ENOMEM;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        int rc = -errno;

        free(l);
        return rc;
    }
    mcpgw__theap_init(&l->timers);
    l->now = mcpgw__mono_ms();
    *out = l;
    return 0;
}

void wsd_loop_free(struct wsd_loop *l)
{
    if (!l)
        return;
    close(l->epfd);
    mcpgw__theap_release(&l->timers);
    free(l);
}

void wsd_watch_init(struct wsd_watch *w, void (*fn)(struct wsd_watch *w, uint32_t events))
{
    w->fn = fn;
    w->fd = -1;
    w->events = 0;
}

int wsd_loop_watch(struct wsd_loop *l, struct wsd_watch *w, int fd, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = w };
    int op = w->fd == fd ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;

    if (w->fd >= 0 && w->fd != fd)
        return -EINVAL;
    if (op == EPOLL_CTL_MOD && w->events == events)
        return 0;
    if (epoll_ctl(l->epfd, op, fd, &ev) == -1)
        return -errno;
    w->fd = fd;
    w->events = events;
    return 0;
}

void wsd_loop_unwatch(struct wsd_loop *l, struct wsd_watch *w)
{
    if (w->fd < 0)
        return;
    /* The fd may already be closed by its owner (then the kernel has
     * dropped it from the set): the error is of no interest. */
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    w->fd = -1;
    w->events = 0;
}

int wsd_loop_timer(struct wsd_loop *l, struct mcpgw__timer *t, int64_t when)
{
    return mcpgw__theap_add(&l->timers, t, when);
}

void wsd_loop_timer_stop(struct wsd_loop *l, struct mcpgw__timer *t)
{
    mcpgw__theap_del(&l->timers, t);
}

void wsd_defer_init(struct wsd_defer *d, void (*fn)(struct wsd_defer *d))
{
    memset(d, 0, sizeof(*d));
    d->fn = fn;
}

void wsd_loop_defer(struct wsd_loop *l, struct wsd_defer *d)
{
    if (d->queued)
        return;
    d->queued = true;
    d->gen = l->gen;
    d->next = NULL;
    d->prev = l->dq_tail;
    if (l->dq_tail)
        l->dq_tail->next = d;
    else
        l->dq_head = d;
    l->dq_tail = d;
}

void wsd_loop_undefer(struct wsd_loop *l, struct wsd_defer *d)
{
    if (!d->queued)
        return;
    if (d->prev)
        d->prev->next = d->next;
    else
        l->dq_head = d->next;
    if (d->next)
        d->next->prev = d->prev;
    else
        l->dq_tail = d->prev;
    d->prev = d->next = NULL;
    d->queued = false;
}

int64_t wsd_loop_now(const struct wsd_loop *l)
{
    return l->now;
}

static void run_timers(struct wsd_loop *l)
{
    struct mcpgw__timer *t;

    while ((t = mcpgw__theap_peek(&l->timers)) && t->when <= l->now) {
        mcpgw__theap_del(&l->timers, t);
        t->fn(t);
    }
}

/* Work deferred while this batch runs (a flush that re-queues itself
 * because its write budget ran out) waits for the next turn, so one
 * connection cannot keep the loop from waiting on epoll. */
static void run_deferred(struct wsd_loop *l)
{
    unsigned gen = l->gen++;
    struct wsd_defer *d;

    /* Entries are appended in order, so this batch is a prefix of the
     * queue; any entry may be removed (a connection freed) meanwhile. */
    while ((d = l->dq_head) && d->gen == gen) {
        wsd_loop_undefer(l, d);
        d->fn(d);
    }
}

int wsd_loop_turn(struct wsd_loop *l, int max_wait_ms)
{
    struct epoll_event evs[EVENTS_PER_WAIT];
    struct mcpgw__timer *t;
    int timeout = max_wait_ms, n;

    if (l->dq_head)
        timeout = 0;
    if ((t = mcpgw__theap_peek(&l->timers))) {
        int64_t due = t->when - mcpgw__mono_ms();

        if (due < 0)
            due = 0;
        if (timeout < 0 || due < timeout)
            timeout = (int)(due > 3600000 ? 3600000 : due);
    }
    n = epoll_wait(l->epfd, evs, EVENTS_PER_WAIT, timeout);
    if (n < 0 && errno != EINTR)
        return -errno;
    l->now = mcpgw__mono_ms();
    for (int i = 0; i < n; i++) {
        struct wsd_watch *w = evs[i].data.ptr;

        if (w->fd >= 0)
            w->fn(w, evs[i].events);
    }
    run_timers(l);
    run_deferred(l);
    return 0;
}
