/* loop.h - mcpgw-wsd's one event loop: epoll, a timer heap, end-of-turn work.
 *
 * One thread runs the loop and every callback; nothing here is thread-safe.
 * Everything the daemon waits on is a watch in this one epoll set: client
 * sockets, the hub's fd (itself an epoll fd), libmicrohttpd's epoll fd and a
 * signalfd.  Watches are level-triggered, so work left undone in a turn (a
 * read or write budget spent) is picked up on the next one without extra
 * bookkeeping.
 *
 * A turn: wait (bounded by the earliest timer and the caller's limit),
 * dispatch the ready watches, run due timers, then run the deferred work
 * queued during the turn (connections flush their output there, so many
 * answers produced in one turn leave in one write).
 *
 * Removing a watch from inside a callback is safe even when its fd is among
 * the events still to be dispatched in this turn: the loop skips watches
 * whose fd is -1.  The watch's memory must stay valid until the turn ends,
 * which is why owners free connections from deferred work, never from
 * inside an I/O callback.
 */
#ifndef MCPGW_WSD_LOOP_H
#define MCPGW_WSD_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "theap.h"

struct wsd_loop;

struct wsd_watch {
    void (*fn)(struct wsd_watch *w, uint32_t events);
    int fd;                     /* -1 when not watched */
    uint32_t events;            /* the interest set now registered */
};

struct wsd_defer {
    void (*fn)(struct wsd_defer *d);
    struct wsd_defer *prev, *next;
    unsigned gen;
    bool queued;
};

/* A new loop.  0 and *out, or -errno. */
int wsd_loop_new(struct wsd_loop **out);
/* Frees the loop; watches and timers still registered are forgotten (their
 * owners must not touch the loop afterwards).  NULL-safe. */
void wsd_loop_free(struct wsd_loop *l);

void wsd_watch_init(struct wsd_watch *w, void (*fn)(struct wsd_watch *w, uint32_t events));
/* Watch fd for events (EPOLLIN, EPOLLOUT, ...), or change the interest of a
 * watch already on fd.  0 or -errno (the watch is then unchanged). */
int wsd_loop_watch(struct wsd_loop *l, struct wsd_watch *w, int fd, uint32_t events);
/* Stop watching (no-op if not watched).  Does not close the fd. */
void wsd_loop_unwatch(struct wsd_loop *l, struct wsd_watch *w);

/* Timers (struct mcpgw__timer from theap.h, embedded in their owners).
 * Arm at an absolute monotonic time in ms; re-arming moves it.  0 or
 * -ENOMEM (then the timer is left as it was). */
int wsd_loop_timer(struct wsd_loop *l, struct mcpgw__timer *t, int64_t when);
void wsd_loop_timer_stop(struct wsd_loop *l, struct mcpgw__timer *t);

void wsd_defer_init(struct wsd_defer *d, void (*fn)(struct wsd_defer *d));
/* Run d->fn once at the end of the current turn (or of the next one when
 * called outside a turn).  Queuing it again before it ran is a no-op;
 * d->fn may queue d again, for the turn after. */
void wsd_loop_defer(struct wsd_loop *l, struct wsd_defer *d);
void wsd_loop_undefer(struct wsd_loop *l, struct wsd_defer *d);

/* One turn, waiting at most max_wait_ms (-1: until a watch or a timer is
 * ready).  Returns 0 or -errno from epoll_wait (EINTR is not an error). */
int wsd_loop_turn(struct wsd_loop *l, int max_wait_ms);

/* Monotonic ms, read once at the start of each turn's dispatch. */
int64_t wsd_loop_now(const struct wsd_loop *l);

#endif
