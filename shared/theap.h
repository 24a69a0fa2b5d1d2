/* theap.h - a binary min-heap of timers, keyed by monotonic ms (internal).
 *
 * Timers are embedded in their owners (no allocation per timer); a timer
 * knows its heap index, so removal is O(log n).  One heap serves a whole hub:
 * call timeouts, start timeouts, back-off and stop grace periods.
 */
#ifndef MCPGW_THEAP_H
#define MCPGW_THEAP_H

#include <stddef.h>
#include <stdint.h>

struct mcpgw__timer {
    int64_t when;       /* monotonic ms */
    size_t idx;         /* position in the heap; SIZE_MAX when not armed */
    void (*fn)(struct mcpgw__timer *t);
};

struct mcpgw__theap {
    struct mcpgw__timer **v;
    size_t n, cap;
};

void mcpgw__timer_init(struct mcpgw__timer *t, void (*fn)(struct mcpgw__timer *t));
static inline int mcpgw__timer_armed(const struct mcpgw__timer *t)
{
    return t->idx != (size_t)-1;
}

void mcpgw__theap_init(struct mcpgw__theap *h);
void mcpgw__theap_release(struct mcpgw__theap *h);
/* Arm (or re-arm) t for when.  0 or -ENOMEM (t left as it was). */
int mcpgw__theap_add(struct mcpgw__theap *h, struct mcpgw__timer *t, int64_t when);
/* Disarm t; no-op if not armed. */
void mcpgw__theap_del(struct mcpgw__theap *h, struct mcpgw__timer *t);
/* Earliest timer, or NULL. */
struct mcpgw__timer *mcpgw__theap_peek(const struct mcpgw__theap *h);

/* Monotonic clock in ms. */
int64_t mcpgw__mono_ms(void);

#endif
