/* guard.c - the record check under libfcgi's reads (guard.h). */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guard.h"
#include "log.h"
#include "params.h"

struct conn_guard {
    uint64_t head_left;         /* checked head bytes still to pass */
    uint32_t skip;              /* content + padding of the current record still to pass */
    uint16_t req_id;
    uint8_t hdr[FCGI_HEADER_LEN];       /* a header passed in part */
    uint8_t hlen;
    bool active;                /* the head check passed a request on this fd */
    bool last;                  /* the current record is the empty FCGI_STDIN */
    bool ended;                 /* ... and it has been passed whole */
};

static struct conn_guard *guards;
static size_t nguards;

int fcgi_guard_init(void)
{
    struct rlimit rl;
    size_t n = 65536;

    if (guards)
        return 0;
    /* The hard limit: the soft one may be raised later in the process. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY)
        n = rl.rlim_max > (1u << 20) ? (1u << 20) : (size_t)rl.rlim_max;
    /* calloc: untouched pages cost nothing until a descriptor that high is used. */
    guards = calloc(n, sizeof(*guards));
    if (!guards)
        return -ENOMEM;
    nguards = n;
    return 0;
}

void fcgi_guard_begin(int fd, size_t head_len, unsigned req_id)
{
    if (fd < 0 || (size_t)fd >= nguards)
        return;
    guards[fd] = (struct conn_guard){ .head_left = head_len, .req_id = (uint16_t)req_id,
                                      .active = true };
}

static bool refused(const uint8_t *h, unsigned req_id)
{
    return h[0] != FCGI_VERSION_1 || ((unsigned)h[2] << 8 | h[3]) != req_id ||
           (h[1] != FCGI_T_STDIN && h[1] != FCGI_T_ABORT_REQUEST);
}

/* How many of the next n bytes of fd's stream (p, peeked) libfcgi may
 * read: up to a record it must not see, or to the end of the request's
 * input (the next request on a kept connection waits for its own head
 * check).  The state advances over exactly those bytes.  *bad: the very
 * next record is refused (and the connection with it). */
static size_t allowed(struct conn_guard *g, const unsigned char *p, size_t n, bool *bad)
{
    size_t i = 0;

    *bad = false;
    while (i < n && !g->ended) {
        uint8_t hdr[FCGI_HEADER_LEN];
        size_t start = i, h = g->hlen;

        if (g->head_left) {
            size_t take = n - i < g->head_left ? n - i : (size_t)g->head_left;

            g->head_left -= take;
            i += take;
            continue;
        }
        if (g->skip) {
            size_t take = n - i < g->skip ? n - i : g->skip;

            g->skip -= (uint32_t)take;
            i += take;
            g->ended = g->last && !g->skip;
            continue;
        }
        memcpy(hdr, g->hdr, h);
        while (h < FCGI_HEADER_LEN && i < n)
            hdr[h++] = p[i++];
        if (h < FCGI_HEADER_LEN) {
            /* A header cut by the read: its first bytes are harmless alone. */
            memcpy(g->hdr, hdr, h);
            g->hlen = (uint8_t)h;
            break;
        }
        if (refused(hdr, g->req_id)) {
            if (start == 0) {
                mcpgw_log_warn("fcgi", "dropped a connection: a record of type %u for request "
                               "%u (version %u) in the body of request %u", hdr[1],
                               (unsigned)hdr[2] << 8 | hdr[3], hdr[0], g->req_id);
                g->active = false;
                *bad = true;
            }
            return start;
        }
        g->hlen = 0;
        g->skip = ((uint32_t)hdr[4] << 8 | hdr[5]) + hdr[6];
        g->last = hdr[1] == FCGI_T_STDIN && hdr[4] == 0 && hdr[5] == 0;
        g->ended = g->last && !g->skip;
    }
    return i;
}

int OS_Read(int fd, char *buf, size_t len)
{
    struct conn_guard *g;
    ssize_t n;
    size_t k;
    bool bad;

    if (fd < 0 || (size_t)fd >= nguards || !guards[fd].active) {
        errno = EPROTO;
        return -1;
    }
    g = &guards[fd];
    if (g->ended)
        return 0;       /* the request's input is over; what follows is the next head */
    /* Look first, then take exactly what may pass: bytes read past a
     * refused record, or into the next request, could not be put back. */
    n = recv(fd, buf, len, MSG_PEEK);
    if (n <= 0)
        return (int)n;
    k = allowed(g, (const unsigned char *)buf, (size_t)n, &bad);
    if (bad)
        return 0;
    return k ? (int)read(fd, buf, k) : 0;
}
