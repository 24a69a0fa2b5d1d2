/* bench_dispatch - tool-call throughput and latency: direct stdio vs libmcpgw.
 *
 *   bench_dispatch [--seconds S] [--repeat N] [--server echo|everything|both]
 *                  [--inflight 1,8,64]
 *
 * For each MCP server and each number of calls kept in flight, in one run:
 *  (a) direct: this program spawns the server itself and speaks JSON-RPC on
 *      its pipes with no library: write requests, read lines, match ids
 *      with a byte scan.  This is the ceiling.
 *  (b) hub: the same calls through mcpgw_hub_call() on the same kind of
 *      server process, each answer parsed into a CallToolResult.
 * Runs alternate a, b, a, b... (--repeat times each, default 3) so drift in
 * machine load hits both alike; it prints the median run's calls/s and its
 * p50/p99 latency for each, and the ratio of the medians b/a.  Figures are
 * for the machine they ran on; bench/README.md records ours.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "err.h"
#include "hub.h"

struct target {
    const char *name;
    char command[1024];
    char arg[1024];
    bool has_arg2;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

struct stats {
    double *lat;        /* seconds, one per completed call */
    size_t n, cap;
    double elapsed;
};

static void stats_add(struct stats *s, double v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->lat = realloc(s->lat, s->cap * sizeof(double));
        if (!s->lat) {
            perror("realloc");
            exit(1);
        }
    }
    s->lat[s->n++] = v;
}

static double pct(struct stats *s, double p)
{
    size_t i = (size_t)(p * (double)(s->n - 1));

    return s->n ? s->lat[i] * 1e3 : 0;
}

/* ---- (a) direct stdio ------------------------------------------------------ */

struct direct {
    pid_t pid;
    int in, out;
    char buf[1 << 20];
    size_t len;
};

static void direct_spawn(struct direct *d, const struct target *t)
{
    int to[2], from[2];

    if (pipe(to) || pipe(from)) {
        perror("pipe");
        exit(1);
    }
    d->pid = fork();
    if (d->pid == 0) {
        dup2(to[0], 0);
        dup2(from[1], 1);
        close(to[0]); close(to[1]); close(from[0]); close(from[1]);
        if (t->has_arg2)
            execlp(t->command, t->command, t->arg, "stdio", (char *)NULL);
        else
            execlp(t->command, t->command, (char *)NULL);
        _exit(127);
    }
    close(to[0]);
    close(from[1]);
    d->in = to[1];
    d->out = from[0];
    d->len = 0;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            perror("write");
            exit(1);
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Next line's id (our requests carry plain integer ids); -1 for lines
 * without one (notifications). */
static long direct_next_id(struct direct *d)
{
    for (;;) {
        char *nl = memchr(d->buf, '\n', d->len);

        if (nl) {
            long id = -1;
            char *p = d->buf;
            size_t linelen = (size_t)(nl - d->buf) + 1;

            *nl = '\0';
            while ((p = strstr(p, "\"id\":"))) {
                p += 5;
                if (*p >= '0' && *p <= '9')
                    id = strtol(p, NULL, 10);
            }
            memmove(d->buf, nl + 1, d->len - linelen);
            d->len -= linelen;
            return id;
        }
        ssize_t n = read(d->out, d->buf + d->len, sizeof(d->buf) - d->len);

        if (n <= 0) {
            fprintf(stderr, "bench: server closed stdout\n");
            exit(1);
        }
        d->len += (size_t)n;
    }
}

static void direct_run(const struct target *t, int inflight, double seconds, struct stats *st)
{
    static const char init[] =
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":"
        "\"2025-11-25\",\"capabilities\":{},\"clientInfo\":{\"name\":\"bench\",\"version\":\"0\"}}}\n"
        "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n";
    struct direct *d = calloc(1, sizeof(*d));
    double *sent_at = calloc(1u << 22, sizeof(double));
    long next = 2, id;
    char req[256];
    double start, end;
    int out = 0, n, st_;

    direct_spawn(d, t);
    write_all(d->in, init, sizeof(init) - 1);
    while (direct_next_id(d) != 1)
        ;
    start = now_s();
    end = start + seconds;
    for (;;) {
        while (out < inflight && now_s() < end) {
            n = snprintf(req, sizeof(req),
                         "{\"jsonrpc\":\"2.0\",\"id\":%ld,\"method\":\"tools/call\",\"params\":"
                         "{\"name\":\"echo\",\"arguments\":{\"message\":\"hello\"}}}\n", next);
            sent_at[next & ((1u << 22) - 1)] = now_s();
            next++;
            write_all(d->in, req, (size_t)n);
            out++;
        }
        if (out == 0)
            break;
        id = direct_next_id(d);
        if (id < 2)
            continue;
        stats_add(st, now_s() - sent_at[id & ((1u << 22) - 1)]);
        out--;
    }
    st->elapsed = now_s() - start;
    close(d->in);
    kill(d->pid, SIGTERM);
    waitpid(d->pid, &st_, 0);
    close(d->out);
    free(sent_at);
    free(d);
}

/* ---- (b) through the hub ------------------------------------------------------ */

struct hubrun {
    mcpgw_hub *hub;
    json_object *args;
    int out, inflight;
    double end;
    struct stats *st;
    unsigned errors;
};

struct slot {
    struct hubrun *run;
    double sent;
};

static void issue(struct hubrun *r, struct slot *s);

static void done_cb(mcpgw_call *call, const struct mcpgw_call_event *ev, void *ud)
{
    struct slot *s = ud;
    struct hubrun *r = s->run;

    if (ev->kind != MCPGW_CALL_DONE)
        return;
    r->out--;
    if (ev->status != 0 || ev->is_error)
        r->errors++;
    else
        stats_add(r->st, now_s() - s->sent);
    if (now_s() < r->end)
        issue(r, s);
}

static void issue(struct hubrun *r, struct slot *s)
{
    int rc;

    s->sent = now_s();
    rc = mcpgw_hub_call(r->hub, "bench", "echo", r->args, NULL, done_cb, s, NULL);
    if (rc < 0) {
        fprintf(stderr, "bench: call: %s\n", mcpgw_strerror(rc));
        exit(1);
    }
    r->out++;
}

static mcpgw_hub *bench_hub(const struct target *t)
{
    char json[4096], err[256];
    struct mcpgw_conf *conf;
    mcpgw_hub *hub;

    snprintf(json, sizeof(json),
             "{\"gateway\":{\"stateDir\":\"/tmp\"},"
             "\"mcpServers\":{\"bench\":{\"command\":\"%s\",\"args\":[%s%s%s],"
             "\"maxInFlight\":1024}}}",
             t->command, t->has_arg2 ? "\"" : "", t->has_arg2 ? t->arg : "",
             t->has_arg2 ? "\",\"stdio\"" : "");
    if (mcpgw_conf_parse(json, strlen(json), "bench.json", ".", &conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench: %s\n", err);
        exit(1);
    }
    hub = mcpgw_hub_new(conf, NULL);
    if (!hub || mcpgw_hub_start(hub, "bench") < 0) {
        fprintf(stderr, "bench: cannot start the server\n");
        exit(1);
    }
    return hub;
}

static void hub_run_bench(const struct target *t, int inflight, double seconds, struct stats *st)
{
    struct hubrun r = { .inflight = inflight, .st = st };
    struct slot *slots = calloc((size_t)inflight, sizeof(*slots));
    struct mcpgw_server_health h;
    double start;

    r.hub = bench_hub(t);
    r.args = json_tokener_parse("{\"message\":\"hello\"}");
    do {
        mcpgw_hub_run(r.hub, 10);
        mcpgw_hub_health_of(r.hub, "bench", &h);
    } while (h.state == MCPGW_SERVER_STARTING);
    if (h.state != MCPGW_SERVER_READY) {
        fprintf(stderr, "bench: server not ready: %s\n", h.last_error);
        exit(1);
    }
    start = now_s();
    r.end = start + seconds;
    for (int i = 0; i < inflight; i++) {
        slots[i].run = &r;
        issue(&r, &slots[i]);
    }
    while (r.out > 0)
        mcpgw_hub_run(r.hub, 100);
    st->elapsed = now_s() - start;
    if (r.errors)
        fprintf(stderr, "bench: %u calls failed\n", r.errors);
    json_object_put(r.args);
    mcpgw_hub_free(r.hub);
    free(slots);
}

/* Median by throughput; its latencies are the ones shown. */
static struct stats *median(struct stats *runs, int n)
{
    struct stats *order[16];

    for (int i = 0; i < n; i++)
        order[i] = &runs[i];
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && order[j]->n / order[j]->elapsed <
                                 order[j - 1]->n / order[j - 1]->elapsed; j--) {
            struct stats *t = order[j];

            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    return order[n / 2];
}

static void report(const char *server, int inflight, struct stats *a, struct stats *b)
{
    double ra = a->n / a->elapsed, rb = b->n / b->elapsed;

    qsort(a->lat, a->n, sizeof(double), cmp_double);
    qsort(b->lat, b->n, sizeof(double), cmp_double);
    printf("%-11s %8d %12.0f %8.3f %8.3f %12.0f %8.3f %8.3f %7.2f\n", server, inflight, ra,
           pct(a, 0.5), pct(a, 0.99), rb, pct(b, 0.5), pct(b, 0.99), rb / ra);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    struct target targets[2];
    size_t ntargets = 0;
    int levels[8] = { 1, 8, 64 }, nlevels = 3;
    double seconds = 3;
    int repeat = 3;
    const char *which = "both", *top = getenv("top_srcdir"), *build = getenv("top_builddir");

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            repeat = atoi(argv[++i]);
            if (repeat < 1 || repeat > 15)
                repeat = 3;
        } else if (strcmp(argv[i], "--server") == 0 && i + 1 < argc) {
            which = argv[++i];
        } else if (strcmp(argv[i], "--inflight") == 0 && i + 1 < argc) {
            char *p = argv[++i];

            for (nlevels = 0; p && *p && nlevels < 8; nlevels++) {
                levels[nlevels] = atoi(p);
                p = strchr(p, ',');
                p = p ? p + 1 : NULL;
            }
        } else {
            fprintf(stderr, "usage: bench_dispatch [--seconds S] [--repeat N]"
                    " [--server echo|everything|both] [--inflight 1,8,64]\n");
            return 64;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(which, "everything") != 0) {
        targets[ntargets].name = "c-echo";
        snprintf(targets[ntargets].command, sizeof(targets[0].command), "%s/bench/echo_mcp",
                 build ? build : ".");
        targets[ntargets++].has_arg2 = false;
    }
    if (strcmp(which, "echo") != 0) {
        targets[ntargets].name = "everything";
        snprintf(targets[ntargets].command, sizeof(targets[0].command), "node");
        snprintf(targets[ntargets].arg, sizeof(targets[0].arg),
                 "%s/node_modules/@modelcontextprotocol/server-everything/dist/index.js",
                 top ? top : ".");
        targets[ntargets++].has_arg2 = true;
    }
    printf("# %.1f s per run, %d interleaved runs each, medians; latency in ms;"
           " ratio = hub/direct throughput\n", seconds, repeat);
    printf("%-11s %8s %12s %8s %8s %12s %8s %8s %7s\n", "server", "inflight", "direct/s",
           "p50", "p99", "hub/s", "p50", "p99", "ratio");
    for (size_t t = 0; t < ntargets; t++) {
        for (int l = 0; l < nlevels; l++) {
            struct stats a[15] = { 0 }, b[15] = { 0 };

            for (int r = 0; r < repeat; r++) {
                direct_run(&targets[t], levels[l], seconds, &a[r]);
                hub_run_bench(&targets[t], levels[l], seconds, &b[r]);
            }
            report(targets[t].name, levels[l], median(a, repeat), median(b, repeat));
            for (int r = 0; r < repeat; r++) {
                free(a[r].lat);
                free(b[r].lat);
            }
        }
    }
    return 0;
}
