/* slowloris - many HTTP connections that trickle their request head.
 *
 *   slowloris PORT COUNT GAP_MS LIMIT_MS
 *
 * Opens COUNT connections to 127.0.0.1:PORT (non-blocking, one epoll set)
 * and sends each one byte of a request head that never ends every GAP_MS,
 * the shape of a slow-loris attack: each connection stays busy enough that
 * an idle timeout never fires.  Run by tests/wsd-http.test against
 * mcpgw-wsd, whose handshake deadline must close every one of them.
 *
 * Prints "connected N" (flushed) once every connection is established or
 * has failed, so a test can start measuring, then at the end one line
 *
 *   result connected=N failed=N closed=N answered408=N open=N min_ms=N max_ms=N
 *
 * closed: the server ended the connection; answered408: its answer began
 * "HTTP/1.1 408 "; min_ms/max_ms: from connect to close, over the closed
 * ones.  Ends when every connection is closed or LIMIT_MS after the start,
 * whichever is first; every loop is bounded by that deadline.  Exit 0
 * whenever it could run (the test judges the numbers), 2 on bad usage or a
 * local failure.
 */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#define COUNT_MAX 20000

enum cstate { CONNECTING, OPEN, CLOSED, FAILED };

struct conn {
    int fd;
    enum cstate st;
    size_t sent;                /* bytes of HEAD sent */
    int64_t t_connect, t_closed;
    char answer[16];            /* the first bytes of the server's answer */
    size_t alen;
};

/* Long enough that no connection finishes it within any sane deadline. */
static const char HEAD[] =
    "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\nX-Trickle: "
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long arg(const char *s, long lo, long hi, const char *what)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) {
        fprintf(stderr, "slowloris: %s must be from %ld to %ld, got '%s'\n", what, lo, hi, s);
        exit(2);
    }
    return v;
}

static void finish(struct conn *c, int64_t t)
{
    close(c->fd);
    c->fd = -1;
    c->st = CLOSED;
    c->t_closed = t;
}

/* Read what the server says; the end of the stream is its close. */
static void drain(struct conn *c, int64_t t)
{
    char buf[4096];

    for (int i = 0; i < 16; i++) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n > 0) {
            size_t take = sizeof(c->answer) - c->alen;

            if ((size_t)n < take)
                take = (size_t)n;
            memcpy(c->answer + c->alen, buf, take);
            c->alen += take;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            finish(c, t);
        return;
    }
}

/* One byte more of the head (never the last: the head never ends). */
static void trickle(struct conn *c, int64_t t)
{
    ssize_t n;

    if (c->sent + 1 >= sizeof(HEAD) - 1)
        return;
    n = send(c->fd, HEAD + c->sent, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == 1) {
        c->sent++;
    } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        /* EPIPE/ECONNRESET: the server closed it; keep what it said. */
        drain(c, t);
        if (c->st == OPEN)
            finish(c, t);
    }
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    struct epoll_event evs[256];
    struct rlimit rl;
    struct conn *cs;
    long port, count, gap, limit;
    int64_t start, deadline, next_round;
    int ep, pending, live;
    bool told = false;

    if (argc != 5) {
        fprintf(stderr, "usage: slowloris PORT COUNT GAP_MS LIMIT_MS\n");
        return 2;
    }
    port = arg(argv[1], 1, 65535, "PORT");
    count = arg(argv[2], 1, COUNT_MAX, "COUNT");
    gap = arg(argv[3], 1, 600000, "GAP_MS");
    limit = arg(argv[4], 1, 3600000, "LIMIT_MS");
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)count + 16) {
        fprintf(stderr, "slowloris: the open-file limit (%llu) is too low for %ld connections\n",
                (unsigned long long)rl.rlim_cur, count);
        return 2;
    }
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!(cs = calloc((size_t)count, sizeof(*cs))) || (ep = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        perror("slowloris");
        return 2;
    }
    start = now_ms();
    deadline = start + limit;
    pending = 0;
    for (long i = 0; i < count; i++) {
        struct conn *c = &cs[i];
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.ptr = c };

        c->t_connect = now_ms();
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            perror("slowloris: socket");
            return 2;
        }
        if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno != EINPROGRESS) {
            close(c->fd);
            c->fd = -1;
            c->st = FAILED;
            continue;
        }
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
            perror("slowloris: epoll_ctl");
            return 2;
        }
        c->st = CONNECTING;
        pending++;
    }
    next_round = now_ms() + gap;
    for (;;) {
        int64_t t = now_ms();
        int wait, n;

        live = 0;
        for (long i = 0; i < count; i++)
            live += cs[i].st == OPEN || cs[i].st == CONNECTING;
        if (!told && pending == 0) {
            long ok = 0;

            for (long i = 0; i < count; i++)
                ok += cs[i].st != FAILED;
            printf("connected %ld\n", ok);
            fflush(stdout);
            told = true;
        }
        if (live == 0 || t >= deadline)
            break;
        if (t >= next_round) {
            for (long i = 0; i < count; i++)
                if (cs[i].st == OPEN)
                    trickle(&cs[i], t);
            next_round += gap;
            continue;
        }
        wait = (int)((next_round < deadline ? next_round : deadline) - t);
        n = epoll_wait(ep, evs, (int)(sizeof(evs) / sizeof(evs[0])), wait);
        if (n < 0 && errno != EINTR) {
            perror("slowloris: epoll_wait");
            return 2;
        }
        t = now_ms();
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;

            if (c->st == CONNECTING && (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
                int err = 0;
                socklen_t el = sizeof(err);
                struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = c };

                pending--;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    close(c->fd);
                    c->fd = -1;
                    c->st = FAILED;
                    continue;
                }
                c->st = OPEN;
                c->t_connect = t;
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                trickle(c, t);
                if (c->st != OPEN)
                    continue;
            }
            if (c->st == OPEN && (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                drain(c, t);
        }
    }
    {
        long connected = 0, failed = 0, closed = 0, a408 = 0, open = 0;
        int64_t mn = -1, mx = -1;

        for (long i = 0; i < count; i++) {
            struct conn *c = &cs[i];

            failed += c->st == FAILED;
            connected += c->st != FAILED;
            open += c->st == OPEN || c->st == CONNECTING;
            if (c->st != CLOSED)
                continue;
            closed++;
            a408 += c->alen >= 13 && memcmp(c->answer, "HTTP/1.1 408 ", 13) == 0;
            if (mn < 0 || c->t_closed - c->t_connect < mn)
                mn = c->t_closed - c->t_connect;
            if (c->t_closed - c->t_connect > mx)
                mx = c->t_closed - c->t_connect;
        }
        if (!told)
            printf("connected %ld\n", connected);
        printf("result connected=%ld failed=%ld closed=%ld answered408=%ld open=%ld min_ms=%lld "
               "max_ms=%lld\n", connected, failed, closed, a408, open, (long long)mn,
               (long long)mx);
        for (long i = 0; i < count; i++)
            if (cs[i].fd >= 0)
                close(cs[i].fd);
    }
    close(ep);
    free(cs);
    return 0;
}
