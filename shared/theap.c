#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "theap.h"

void mcpgw__timer_init(struct mcpgw__timer *t, void (*fn)(struct mcpgw__timer *t))
{
    t->when = 0;
    t->idx = (size_t)-1;
    t->fn = fn;
}

void mcpgw__theap_init(struct mcpgw__theap *h)
{
    h->v = NULL;
    h->n = h->cap = 0;
}

void mcpgw__theap_release(struct mcpgw__theap *h)
{
    for (size_t i = 0; i < h->n; i++)
        h->v[i]->idx = (size_t)-1;
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}

static void place(struct mcpgw__theap *h, size_t i, struct mcpgw__timer *t)
{
    h->v[i] = t;
    t->idx = i;
}

static void sift_up(struct mcpgw__theap *h, size_t i)
{
    struct mcpgw__timer *t = h->v[i];

    while (i > 0) {
        size_t p = (i - 1) / 2;

        if (h->v[p]->when <= t->when)
            break;
        place(h, i, h->v[p]);
        i = p;
    }
    place(h, i, t);
}

static void sift_down(struct mcpgw__theap *h, size_t i)
{
    struct mcpgw__timer *t = h->v[i];

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= h->n)
            break;
        if (c + 1 < h->n && h->v[c + 1]->when < h->v[c]->when)
            c++;
        if (t->when <= h->v[c]->when)
            break;
        place(h, i, h->v[c]);
        i = c;
    }
    place(h, i, t);
}

int mcpgw__theap_add(struct mcpgw__theap *h, struct mcpgw__timer *t, int64_t when)
{
    if (mcpgw__timer_armed(t)) {
        int64_t old = t->when;

        t->when = when;
        if (when < old)
            sift_up(h, t->idx);
        else
            sift_down(h, t->idx);
        return 0;
    }
    if (h->n == h->cap) {
        size_t ncap = h->cap ? h->cap * 2 : 64;
        struct mcpgw__timer **nv = realloc(h->v, ncap * sizeof(*nv));

        if (!nv)
            return -ENOMEM;
        h->v = nv;
        h->cap = ncap;
    }
    t->when = when;
    place(h, h->n++, t);
    sift_up(h, h->n - 1);
    return 0;
}

void mcpgw__theap_del(struct mcpgw__theap *h, struct mcpgw__timer *t)
{
    size_t i = t->idx;
    struct mcpgw__timer *last;

    if (!mcpgw__timer_armed(t))
        return;
    t->idx = (size_t)-1;
    last = h->v[--h->n];
    if (i == h->n)
        return;
    place(h, i, last);
    if (i > 0 && h->v[(i - 1) / 2]->when > last->when)
        sift_up(h, i);
    else
        sift_down(h, i);
}

struct mcpgw__timer *mcpgw__theap_peek(const struct mcpgw__theap *h)
{
    return h->n ? h->v[0] : NULL;
}

int64_t mcpgw__mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
