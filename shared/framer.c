#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "framer.h"

#define CHUNK MCPGW__FRAMER_CHUNK

void mcpgw__framer_init(struct mcpgw__framer *f, size_t max)
{
    memset(f, 0, sizeof(*f));
    f->max = max;
}

void mcpgw__framer_release(struct mcpgw__framer *f)
{
    free(f->buf);
    f->buf = NULL;
    f->start = f->len = f->cap = f->scanned = 0;
}

/* Keep the last bytes of a line being discarded, for id recovery. */
static void tail_add(struct mcpgw__framer *f, const char *p, size_t n)
{
    if (n >= MCPGW__FRAMER_TAIL) {
        memcpy(f->tail, p + n - MCPGW__FRAMER_TAIL, MCPGW__FRAMER_TAIL);
        f->tail_len = MCPGW__FRAMER_TAIL;
        return;
    }
    if (f->tail_len + n > MCPGW__FRAMER_TAIL) {
        size_t drop = f->tail_len + n - MCPGW__FRAMER_TAIL;

        memmove(f->tail, f->tail + drop, f->tail_len - drop);
        f->tail_len -= drop;
    }
    memcpy(f->tail + f->tail_len, p, n);
    f->tail_len += n;
}

char *mcpgw__framer_space(struct mcpgw__framer *f, size_t *avail)
{
    size_t want, limit;

    if (f->len == 0)
        f->start = f->scanned = 0;
    if (f->cap - f->start - f->len < CHUNK / 4 && f->start > 0) {
        memmove(f->buf, f->buf + f->start, f->len);
        f->start = 0;
    }
    if (f->cap - f->start - f->len < CHUNK / 4) {
        /* A line may need max+1 bytes ('\n' included) plus the chunk that
         * carries its end; never grow beyond that. */
        limit = f->max + 1 + CHUNK;
        want = f->cap ? f->cap * 2 : CHUNK;
        if (want > limit)
            want = limit;
        if (want > f->cap) {
            char *nb = realloc(f->buf, want);

            if (!nb)
                return NULL;
            f->buf = nb;
            f->cap = want;
        }
    }
    *avail = f->cap - f->start - f->len;
    return *avail ? f->buf + f->start + f->len : NULL;
}

void mcpgw__framer_commit(struct mcpgw__framer *f, size_t n)
{
    f->len += n;
}

int mcpgw__framer_feed(struct mcpgw__framer *f, const char *p, size_t n)
{
    while (n) {
        size_t avail;
        char *dst = mcpgw__framer_space(f, &avail);

        if (!dst)
            return f->cap ? -ENOBUFS : -ENOMEM;
        if (avail > n)
            avail = n;
        memcpy(dst, p, avail);
        mcpgw__framer_commit(f, avail);
        p += avail;
        n -= avail;
    }
    return 0;
}

ssize_t mcpgw__framer_read(struct mcpgw__framer *f, int fd)
{
    size_t avail;
    char *dst = mcpgw__framer_space(f, &avail);
    ssize_t n;

    if (!dst)
        return -ENOMEM;
    do
        n = read(fd, dst, avail);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    mcpgw__framer_commit(f, (size_t)n);
    return n;
}

int mcpgw__framer_next(struct mcpgw__framer *f, char **line, size_t *len)
{
    for (;;) {
        char *p = f->buf + f->start, *nl;
        size_t n;

        if (f->len == 0)
            return MCPGW__FRAME_NONE;
        nl = f->scanned < f->len ? memchr(p + f->scanned, '\n', f->len - f->scanned) : NULL;
        if (!nl) {
            f->scanned = f->len;
            if (f->skipping || f->len > f->max) {
                /* Discard what we have of an oversized line. */
                if (!f->skipping) {
                    f->skipping = true;
                    f->skipped = 0;
                    f->tail_len = 0;
                }
                tail_add(f, p, f->len);
                f->skipped += f->len;
                f->start += f->len;
                f->len = f->scanned = 0;
            }
            return MCPGW__FRAME_NONE;
        }
        n = (size_t)(nl - p);
        f->start += n + 1;
        f->len -= n + 1;
        f->scanned = 0;
        if (f->skipping) {
            tail_add(f, p, n);
            f->skipped += n;
            f->skipping = false;
            if (f->tail_len && f->tail[f->tail_len - 1] == '\r')
                f->tail_len--;
            *line = f->tail;
            *len = f->tail_len;
            return MCPGW__FRAME_OVERSIZE;
        }
        if (n && p[n - 1] == '\r')
            n--;
        if (n > f->max) {
            f->skipped = n;
            f->tail_len = 0;
            tail_add(f, p, n);
            *line = f->tail;
            *len = f->tail_len;
            return MCPGW__FRAME_OVERSIZE;
        }
        if (n == 0)
            continue;
        p[n] = '\0';
        *line = p;
        *len = n;
        return MCPGW__FRAME_LINE;
    }
}

size_t mcpgw__framer_skipped(const struct mcpgw__framer *f)
{
    return f->skipped;
}

size_t mcpgw__framer_pending(const struct mcpgw__framer *f)
{
    return f->len + (f->skipping ? f->skipped : 0);
}
