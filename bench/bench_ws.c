/* bench_ws - a WebSocket load generator for mcpgw-wsd, and its baseline.
 *
 *   bench_ws calls  --port P [--host H] [--token T] [--server ID] [--tool NAME]
 *                   [--conns N] [--inflight K] [--seconds S] [--progress on|off]
 *       N connections (default 1), each keeping K tool_calls in flight
 *       (default 64) for S seconds; prints calls/s and latency p50/p99.
 *       --progress off sends "progress":false (no progress reports wanted).
 *   bench_ws direct [--inflight K] [--seconds S] [--progress on|off] -- COMMAND [ARGS...]
 *       the same calls straight to an MCP server over its stdio (the
 *       ceiling the gateway is measured against).  --progress on asks for
 *       progress reports as the gateway does for a WebSocket call
 *       (params._meta.progressToken); off (the default) is a bare call.
 *   bench_ws idle   --port P [--host H] [--token T] --conns N --seconds S [--pid PID]
 *       opens N authenticated connections, answers the daemon's pings and
 *       holds them for S seconds; prints how many stayed open and, with
 *       --pid, the daemon's resident memory before, while held, and per
 *       connection.
 *
 * One thread, one epoll loop, non-blocking sockets, requests written in
 * batches: the generator must cost much less than the daemon it measures
 * (it prints its own CPU time so that can be checked).  Calls carry
 * integer ids; answers are matched by scanning for "id": in each text
 * frame, so no JSON library is in the way.  The output's last line is a
 * tab-separated record for scripts: mode, calls/s, p50 ms, p99 ms (calls and
 * direct) or conns held, RSS before/after KiB, bytes per connection (idle).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#else
#define _GNU_SOURCE     /* memmem; built by automake, or alone with plain gcc */
#endif

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RING (1u << 20)          /* ids in flight per connection modulo this */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_ws: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = calloc(1, n);

    if (!p)
        die("calloc");
    return p;
}

/* -- latency samples ----------------------------------------------------------------- */

static double *lat;
static size_t nlat, caplat;

static void sample(double v)
{
    if (nlat == caplat) {
        caplat = caplat ? caplat * 2 : 1 << 16;
        lat = realloc(lat, caplat * sizeof(*lat));
        if (!lat)
            die("realloc");
    }
    lat[nlat++] = v;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    return nlat ? lat[(size_t)(p * (double)(nlat - 1))] * 1e3 : 0;
}

/* -- a WebSocket client connection --------------------------------------------------- */

struct conn {
    int fd;
    bool open;                  /* handshake done */
    bool closed;
    char *in;                   /* received, not yet parsed */
    size_t inlen, incap;
    char *out;                  /* to send */
    size_t outlen, outoff, outcap;
    long next_id;
    int inflight;
    double *sent_at;            /* by id % RING */
    long answered;
};

static const char *opt_host = "127.0.0.1", *opt_port, *opt_token, *opt_server = "echo",
                  *opt_tool = "echo";
static int opt_conns = 1, opt_inflight = 64;
static double opt_seconds = 5;
static long opt_pid;
static int opt_progress = -1;   /* -1: the mode's default */

static void out_add(struct conn *c, const void *p, size_t n)
{
    if (c->outlen + n > c->outcap) {
        c->outcap = (c->outlen + n) * 2;
        c->out = realloc(c->out, c->outcap);
        if (!c->out)
            die("realloc");
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
}

/* A masked client frame. */
static void frame(struct conn *c, int op, const char *p, size_t n)
{
    unsigned char h[14], mask[4] = { 0x11, 0x22, 0x33, 0x44 };
    size_t hn = 2;
    char tmp[512];

    h[0] = (unsigned char)(0x80 | op);
    if (n < 126) {
        h[1] = (unsigned char)(0x80 | n);
    } else {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hn = 4;
    }
    memcpy(h + hn, mask, 4);
    out_add(c, h, hn + 4);
    for (size_t i = 0; i < n; i += sizeof(tmp)) {
        size_t k = n - i < sizeof(tmp) ? n - i : sizeof(tmp);

        for (size_t j = 0; j < k; j++)
            tmp[j] = (char)(p[i + j] ^ mask[(i + j) % 4]);
        out_add(c, tmp, k);
    }
}

static int connect_to(void)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
    int fd, one = 1;

    if (getaddrinfo(opt_host, opt_port, &hints, &ai) != 0) {
        fprintf(stderr, "bench_ws: cannot resolve %s:%s\n", opt_host, opt_port);
        exit(1);
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        die("connect");
    freeaddrinfo(ai);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static void conn_start(struct conn *c)
{
    char req[1024];
    int n;

    c->fd = connect_to();
    n = snprintf(req, sizeof(req),
                 "GET /ws HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                 "%s%s%s\r\n", opt_host, opt_port, opt_token ? "Authorization: Bearer " : "",
                 opt_token ? opt_token : "", opt_token ? "\r\n" : "");
    out_add(c, req, (size_t)n);
    fcntl(c->fd, F_SETFL, O_NONBLOCK);
}

static void send_calls(struct conn *c, double t)
{
    char msg[400];

    while (c->inflight < opt_inflight) {
        long id = c->next_id++;
        int n = snprintf(msg, sizeof(msg),
                         "{\"type\":\"tool_call\",\"id\":%ld,\"data\":{\"serverId\":\"%s\","
                         "\"toolName\":\"%s\",\"params\":{\"message\":\"hello\"}%s}}",
                         id, opt_server, opt_tool, opt_progress ? "" : ",\"progress\":false");

        c->sent_at[id % RING] = t;
        frame(c, 1, msg, (size_t)n);
        c->inflight++;
    }
}

static bool flush_out(struct conn *c)
{
    while (c->outoff < c->outlen) {
        ssize_t n = send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return false;
            die("send");
        }
        c->outoff += (size_t)n;
    }
    c->outlen = c->outoff = 0;
    return true;
}

static long scan_id(const char *p, size_t n)
{
    static const char key[] = "\"id\":";

    for (size_t i = 0; i + sizeof(key) - 1 < n; i++)
        if (memcmp(p + i, key, sizeof(key) - 1) == 0)
            return strtol(p + i + sizeof(key) - 1, NULL, 10);
    return -1;
}

/* Parse what arrived: the 101, then frames.  Returns the number of call
 * answers (tool_response or error carrying an id). */
static long parse_in(struct conn *c, bool counting, double t)
{
    size_t off = 0;
    long answers = 0;

    if (!c->open) {
        char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);

        if (!end)
            return 0;
        if (c->inlen < 12 || memcmp(c->in + 9, "101", 3) != 0) {
            fprintf(stderr, "bench_ws: handshake refused: %.*s\n", (int)(end - c->in), c->in);
            exit(1);
        }
        c->open = true;
        off = (size_t)(end - c->in) + 4;
    }
    while (c->inlen - off >= 2) {
        const unsigned char *h = (const unsigned char *)c->in + off;
        size_t hn = 2, len = h[1] & 0x7f;
        int op = h[0] & 0x0f;

        if (len == 126) {
            if (c->inlen - off < 4)
                break;
            len = (size_t)h[2] << 8 | h[3];
            hn = 4;
        } else if (len == 127) {
            if (c->inlen - off < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | h[2 + i];
            hn = 10;
        }
        if (c->inlen - off < hn + len)
            break;
        if (op == 9) {
            frame(c, 10, c->in + off + hn, len);        /* pong */
        } else if (op == 8) {
            c->closed = true;
        } else if (op == 1 && counting) {
            const char *p = c->in + off + hn;

            if ((len > 24 && memmem(p, len < 40 ? len : 40, "tool_response", 13)) ||
                memmem(p, len < 40 ? len : 40, "\"error\"", 7)) {
                long id = scan_id(p, len);

                if (id >= 0 && c->inflight > 0) {
                    sample(t - c->sent_at[id % RING]);
                    c->inflight--;
                    c->answered++;
                    answers++;
                }
            }
        }
        off += hn + len;
    }
    memmove(c->in, c->in + off, c->inlen - off);
    c->inlen -= off;
    return answers;
}

static bool read_in(struct conn *c)
{
    for (;;) {
        ssize_t n;

        if (c->incap - c->inlen < 65536) {
            c->incap = c->incap ? c->incap * 2 : 131072;
            c->in = realloc(c->in, c->incap);
            if (!c->in)
                die("realloc");
        }
        n = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, 0);
        if (n > 0) {
            c->inlen += (size_t)n;
            continue;
        }
        if (n == 0) {
            c->closed = true;
            return false;
        }
        if (errno == EAGAIN || errno == EINTR)
            return true;
        c->closed = true;
        return false;
    }
}

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static double cpu_s(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* -- calls over WebSocket -------------------------------------------------------------- */

static int run_calls(void)
{
    struct conn *cs = xmalloc((size_t)opt_conns * sizeof(*cs));
    struct epoll_event ev, evs[256];
    int ep = epoll_create1(EPOLL_CLOEXEC), opened = 0;
    double start = 0, end = 0, cpu0 = 0;
    long total = 0;
    bool measuring = false;

    for (int i = 0; i < opt_conns; i++) {
        cs[i].sent_at = xmalloc(RING * sizeof(double));
        conn_start(&cs[i]);
        flush_out(&cs[i]);
        ev.events = EPOLLIN;
        ev.data.ptr = &cs[i];
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    for (;;) {
        int n = epoll_wait(ep, evs, 256, 100);
        double t = now_s();

        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            bool was_open = c->open;

            if (evs[i].events & EPOLLIN) {
                read_in(c);
                total += parse_in(c, true, t);
            }
            if (c->closed) {
                fprintf(stderr, "bench_ws: the daemon closed a connection\n");
                return 1;
            }
            if (!was_open && c->open && ++opened == opt_conns) {
                measuring = true;
                start = now_s();
                end = start + opt_seconds;
                cpu0 = cpu_s();
                total = 0;
                nlat = 0;
                for (int k = 0; k < opt_conns; k++) {
                    send_calls(&cs[k], start);
                    flush_out(&cs[k]);
                }
                continue;
            }
            if (measuring && t < end)
                send_calls(c, t);
            if (!flush_out(c)) {
                ev.events = EPOLLIN | EPOLLOUT;
                ev.data.ptr = c;
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            } else if (evs[i].events & EPOLLOUT) {
                ev.events = EPOLLIN;
                ev.data.ptr = c;
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            }
        }
        if (measuring && t >= end) {
            bool idle = true;

            for (int i = 0; i < opt_conns; i++)
                idle = idle && cs[i].inflight == 0;
            if (idle || t >= end + 10)
                break;
        }
    }
    {
        double el = now_s() - start, cpu = cpu_s() - cpu0;

        qsort(lat, nlat, sizeof(*lat), cmp_d);
        printf("websocket: %d conns x %d in flight, %s:%s: %ld calls in %.2f s = %.0f calls/s, "
               "p50 %.3f ms, p99 %.3f ms (generator CPU %.0f%%)\n", opt_conns, opt_inflight,
               opt_server, opt_tool, total, el, (double)total / el, pct(0.5), pct(0.99),
               100 * cpu / el);
        printf("calls\t%.0f\t%.3f\t%.3f\n", (double)total / el, pct(0.5), pct(0.99));
    }
    return 0;
}

/* -- calls straight over stdio ------------------------------------------------------------ */

static int run_direct(char **argv)
{
    static const char init[] =
        "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
        "\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"bench_ws\",\"version\":\"0\"}}}\n"
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n";
    int to[2], from[2], inflight = 0;
    char *buf = xmalloc(1 << 22), req[400];
    double *sent = xmalloc(RING * sizeof(double)), start, end, cpu0;
    size_t len = 0;
    long next = 1, total = 0;
    bool ready = false;
    pid_t pid;

    if (pipe(to) < 0 || pipe(from) < 0)
        die("pipe");
    pid = fork();
    if (pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]); close(to[1]); close(from[0]); close(from[1]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    if (write(to[1], init, sizeof(init) - 1) < 0)
        die("write");
    start = end = cpu0 = 0;
    for (;;) {
        char *nl;
        ssize_t n;

        if (ready) {
            double t = now_s();
            size_t rl = 0;
            char *batch = buf + (1 << 21);

            if (t >= end && inflight == 0)
                break;
            while (t < end && inflight < opt_inflight) {
                char meta[64] = "";
                int k;

                /* What the gateway sends for a client that wants progress. */
                if (opt_progress)
                    snprintf(meta, sizeof(meta), ",\"_meta\":{\"progressToken\":%ld}", next);
                k = snprintf(req, sizeof(req),
                             "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\",\"params\":"
                             "{\"name\":\"%s\",\"arguments\":{\"message\":\"hello\"}%s}}\n",
                             next, opt_tool, meta);

                sent[next % RING] = t;
                next++;
                memcpy(batch + rl, req, (size_t)k);
                rl += (size_t)k;
                inflight++;
            }
            for (size_t o = 0; o < rl;) {
                ssize_t w = write(to[1], batch + o, rl - o);

                if (w < 0)
                    die("write");
                o += (size_t)w;
            }
        }
        n = read(from[0], buf + len, (1 << 21) - len);
        if (n <= 0) {
            fprintf(stderr, "bench_ws: the server closed its stdout\n");
            return 1;
        }
        len += (size_t)n;
        while ((nl = memchr(buf, '\n', len))) {
            size_t ll = (size_t)(nl - buf) + 1;
            long id = scan_id(buf, ll);

            if (id == 0 && !ready) {
                ready = true;
                start = now_s();
                end = start + opt_seconds;
                cpu0 = cpu_s();
            } else if (id > 0 && ready && memmem(buf, ll, "\"result\"", 8)) {
                sample(now_s() - sent[id % RING]);
                inflight--;
                total++;
            }
            memmove(buf, buf + ll, len - ll);
            len -= ll;
        }
    }
    {
        double el = now_s() - start, cpu = cpu_s() - cpu0;

        close(to[1]);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        qsort(lat, nlat, sizeof(*lat), cmp_d);
        printf("direct: %d in flight, %s: %ld calls in %.2f s = %.0f calls/s, p50 %.3f ms, "
               "p99 %.3f ms (generator CPU %.0f%%)\n", opt_inflight, argv[0], total, el,
               (double)total / el, pct(0.5), pct(0.99), 100 * cpu / el);
        printf("direct\t%.0f\t%.3f\t%.3f\n", (double)total / el, pct(0.5), pct(0.99));
    }
    return 0;
}

/* -- idle connections --------------------------------------------------------------------- */

static long rss_kib(long pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/status", pid);
    if (!(f = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static int run_idle(void)
{
    struct conn *cs = xmalloc((size_t)opt_conns * sizeof(*cs));
    struct epoll_event ev, evs[512];
    int ep = epoll_create1(EPOLL_CLOEXEC), opened = 0, held;
    long before = opt_pid ? rss_kib(opt_pid) : -1, during = -1;
    double t0 = now_s(), end = 0;

    for (int i = 0; i < opt_conns; i++) {
        conn_start(&cs[i]);
        flush_out(&cs[i]);
        ev.events = EPOLLIN;
        ev.data.ptr = &cs[i];
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev) < 0)
            die("epoll_ctl");
        /* Let the handshakes through as we go: the listen backlog is finite. */
        if (i % 256 == 255) {
            int n = epoll_wait(ep, evs, 512, 0);

            for (int k = 0; k < n; k++) {
                struct conn *c = evs[k].data.ptr;
                bool was = c->open;

                read_in(c);
                parse_in(c, false, 0);
                flush_out(c);
                opened += !was && c->open;
            }
        }
    }
    while (opened < opt_conns && now_s() - t0 < 120) {
        int n = epoll_wait(ep, evs, 512, 1000);

        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            bool was = c->open;

            read_in(c);
            parse_in(c, false, 0);
            flush_out(c);
            opened += !was && c->open;
        }
    }
    printf("idle: %d of %d connections open after %.1f s\n", opened, opt_conns, now_s() - t0);
    end = now_s() + opt_seconds;
    while (now_s() < end) {
        int n = epoll_wait(ep, evs, 512, 500);

        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;

            read_in(c);
            parse_in(c, false, 0);
            flush_out(c);
        }
        if (opt_pid) {
            long r = rss_kib(opt_pid);

            if (r > during)
                during = r;
        }
    }
    held = 0;
    for (int i = 0; i < opt_conns; i++)
        held += cs[i].open && !cs[i].closed;
    printf("idle: %d of %d connections held for %.0f s (pings answered)\n", held, opt_conns,
           opt_seconds);
    if (opt_pid)
        printf("idle: daemon RSS %ld KiB before, %ld KiB with them (peak), %.0f bytes per "
               "connection\n", before, during, (double)(during - before) * 1024 / held);
    printf("idle\t%d\t%ld\t%ld\t%.0f\n", held, before, during,
           held ? (double)(during - before) * 1024 / held : 0);
    return held == opt_conns ? 0 : 1;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_ws calls|idle --port P [--host H] [--token T] [--server ID] "
            "[--tool T] [--conns N] [--inflight K] [--seconds S] [--pid PID] [--progress on|off]\n"
            "       bench_ws direct [--inflight K] [--seconds S] [--tool T] [--progress on|off] "
            "-- COMMAND [ARGS]\n");
    exit(64);
}

int main(int argc, char **argv)
{
    const char *mode;
    int i;

    if (argc < 2)
        usage();
    mode = argv[1];
    for (i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (!v)
            usage();
        if (strcmp(a, "--host") == 0) opt_host = v;
        else if (strcmp(a, "--port") == 0) opt_port = v;
        else if (strcmp(a, "--token") == 0) opt_token = v;
        else if (strcmp(a, "--server") == 0) opt_server = v;
        else if (strcmp(a, "--tool") == 0) opt_tool = v;
        else if (strcmp(a, "--conns") == 0) opt_conns = atoi(v);
        else if (strcmp(a, "--inflight") == 0) opt_inflight = atoi(v);
        else if (strcmp(a, "--seconds") == 0) opt_seconds = atof(v);
        else if (strcmp(a, "--pid") == 0) opt_pid = atol(v);
        else if (strcmp(a, "--progress") == 0 && (!strcmp(v, "on") || !strcmp(v, "off")))
            opt_progress = strcmp(v, "on") == 0;
        else usage();
        i++;
    }
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();
    if (opt_conns < 1 || opt_inflight < 1 || opt_seconds <= 0)
        usage();
    if (opt_progress < 0)
        opt_progress = strcmp(mode, "direct") != 0;
    if (strcmp(mode, "direct") == 0) {
        if (i >= argc)
            usage();
        return run_direct(argv + i);
    }
    if (!opt_port)
        usage();
    if (strcmp(mode, "calls") == 0)
        return run_calls();
    if (strcmp(mode, "idle") == 0)
        return run_idle();
    usage();
    return 64;
}
