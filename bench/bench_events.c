/* bench_events - the event stream: publishing throughput and publish ->
 * deliver latency, for the embedded store and for Redis Streams.
 *
 *   bench_events [--seconds S] [--readers 1,100,1000] [--rate N]
 *                [--backend file|redis|both]
 *
 * 1. Throughput: 4 processes publish as fast as they can for S seconds
 *    (default 3), each through its own handle, events of about 250 bytes;
 *    events/s is the sum of what they published over the time they ran.
 * 2. Latency: one process publishes N events/s (default 200) carrying their
 *    CLOCK_MONOTONIC time of publishing; this process holds R readers
 *    (1, 100, 1000) in one epoll loop, as a front end would, and records,
 *    for every event and every reader, the time from publishing to the
 *    read that returned it.  p50/p99 over all of them.
 * Redis runs on a redis-server this program starts on a free loopback port
 * (no persistence) and stops by PID.  Figures are for the machine they ran
 * on; bench/README.md records ours.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <json-c/json.h>

#include "conf.h"
#include "events.h"

static char store_dir[128];
static int redis_port;
static pid_t redis_pid;
static char redis_dir[128];

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static mcpgw_events *open_backend(const char *backend, const char *key)
{
    char json[1024], err[256];
    struct mcpgw_conf *conf;
    mcpgw_events *ev;

    if (strcmp(backend, "redis") == 0)
        snprintf(json, sizeof(json), "{\"gateway\":{\"events\":{\"backend\":\"redis\","
                 "\"redis\":{\"port\":%d,\"key\":\"%s\"},\"maxEvents\":100000}}}",
                 redis_port, key);
    else
        snprintf(json, sizeof(json), "{\"gateway\":{\"events\":{\"dir\":\"%s/%s\","
                 "\"maxEvents\":100000}}}", store_dir, key);
    if (mcpgw_conf_parse(json, strlen(json), "bench.json", "/tmp", &conf, err, sizeof(err)) < 0 ||
        mcpgw_events_open(conf, &ev, err, sizeof(err)) < 0) {
        fprintf(stderr, "bench_events: %s\n", err);
        exit(1);
    }
    mcpgw_conf_free(conf);
    return ev;
}

/* A tool_result-like event of about 250 bytes. */
static json_object *sample_data(int64_t t_ns, int k, int n)
{
    json_object *d = json_object_new_object();
    char cid[32];

    snprintf(cid, sizeof(cid), "a1b2c3d4-%d", n);
    json_object_object_add(d, "callId", json_object_new_string(cid));
    json_object_object_add(d, "clientCallId", json_object_new_string("client-call-42"));
    json_object_object_add(d, "serverId", json_object_new_string("memory"));
    json_object_object_add(d, "toolName", json_object_new_string("read_graph"));
    json_object_object_add(d, "success", json_object_new_boolean(1));
    json_object_object_add(d, "durationMs", json_object_new_int(3));
    json_object_object_add(d, "publisher", json_object_new_int(k));
    json_object_object_add(d, "t", json_object_new_int64(t_ns));
    return d;
}

/* ---- throughput ------------------------------------------------------------------- */

struct tp {
    double per_s;               /* all processes together */
    double min_share, max_share;        /* events of the least and most served process */
    double max_ms;              /* the longest single publish */
    uint64_t dropped;
};

static struct tp throughput(const char *backend, int nproc, double seconds)
{
    int res[2], go[2];
    pid_t pids[16];
    uint64_t total = 0;
    double elapsed = 0;
    struct tp tp = { 0, 1e18, 0, 0, 0 };
    char key[64];

    snprintf(key, sizeof(key), "tp-%ld", (long)getpid());
    if (pipe(res) < 0 || pipe(go) < 0)
        exit(1);
    for (int k = 0; k < nproc; k++) {
        if ((pids[k] = fork()) == 0) {
            mcpgw_events *ev = open_backend(backend, key);
            struct mcpgw_events_stats st;
            int64_t t0, end, worst = 0;
            char c;
            double out[4];
            int n = 0;

            close(go[1]);
            if (read(go[0], &c, 1) < 0)
                _exit(1);
            t0 = mono_ns();
            end = t0 + (int64_t)(seconds * 1e9);
            while (mono_ns() < end) {
                for (int i = 0; i < 64; i++, n++) {
                    int64_t t1 = mono_ns();
                    json_object *d = sample_data(t1, k, n);

                    mcpgw_events_publish(ev, "tool_result", d, NULL);
                    json_object_put(d);
                    if (mono_ns() - t1 > worst)
                        worst = mono_ns() - t1;
                }
            }
            mcpgw_events_stats(ev, &st);
            out[0] = (double)st.published;
            out[1] = (mono_ns() - t0) / 1e9;
            out[2] = worst / 1e6;
            out[3] = (double)st.dropped;
            if (write(res[1], out, sizeof(out)) != sizeof(out))
                _exit(1);
            mcpgw_events_close(ev);
            _exit(0);
        }
    }
    close(go[0]);
    close(go[1]);
    for (int k = 0; k < nproc; k++) {
        double out[4];
        int status;

        if (read(res[0], out, sizeof(out)) != sizeof(out))
            exit(1);
        total += (uint64_t)out[0];
        if (out[1] > elapsed)
            elapsed = out[1];
        if (out[0] < tp.min_share)
            tp.min_share = out[0];
        if (out[0] > tp.max_share)
            tp.max_share = out[0];
        if (out[2] > tp.max_ms)
            tp.max_ms = out[2];
        tp.dropped += (uint64_t)out[3];
        waitpid(pids[k], &status, 0);
    }
    close(res[0]);
    close(res[1]);
    tp.per_s = total / elapsed;
    return tp;
}

/* ---- latency ------------------------------------------------------------------------ */

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return x < y ? -1 : x > y;
}

static void latency(const char *backend, int nreaders, int rate, double seconds,
                    double *p50, double *p99, double *p999, size_t *nsamples)
{
    mcpgw_events *ev;
    mcpgw_events_reader **r = calloc((size_t)nreaders, sizeof(*r));
    int nevents = (int)(rate * seconds), ep = epoll_create1(EPOLL_CLOEXEC), go[2];
    size_t cap = (size_t)nevents * (size_t)nreaders, n = 0;
    int64_t *lat = malloc(cap * sizeof(*lat)), deadline;
    int *got = calloc((size_t)nreaders, sizeof(int));
    int done = 0;
    char key[64];
    pid_t pid;

    snprintf(key, sizeof(key), "lat-%d-%ld", nreaders, (long)getpid());
    ev = open_backend(backend, key);
    for (int i = 0; i < nreaders; i++) {
        struct epoll_event ee = { .events = EPOLLIN, .data.u32 = (uint32_t)i };

        if (mcpgw_events_reader_open(ev, NULL, &r[i]) < 0 ||
            epoll_ctl(ep, EPOLL_CTL_ADD, mcpgw_events_reader_fd(r[i]), &ee) < 0) {
            fprintf(stderr, "bench_events: reader %d: %s\n", i, strerror(errno));
            exit(1);
        }
        /* Arm each reader (Redis: its XREAD BLOCK goes out). */
        {
            struct mcpgw_event e;

            while (mcpgw_events_read(r[i], &e, 0) == 1)
                ;
        }
    }
    if (pipe(go) < 0)
        exit(1);
    if ((pid = fork()) == 0) {
        mcpgw_events *pub = open_backend(backend, key);
        int64_t t0, gap = 1000000000 / rate;
        char c;

        close(go[1]);
        if (read(go[0], &c, 1) < 0)
            _exit(1);
        t0 = mono_ns();
        for (int i = 0; i < nevents; i++) {
            int64_t at = t0 + i * gap, now = mono_ns();
            json_object *d;

            if (at > now) {
                struct timespec ts = { (at - now) / 1000000000, (at - now) % 1000000000 };

                nanosleep(&ts, NULL);
            }
            d = sample_data(mono_ns(), 0, i);
            mcpgw_events_publish(pub, "tool_result", d, NULL);
            json_object_put(d);
        }
        mcpgw_events_close(pub);
        _exit(0);
    }
    close(go[0]);
    close(go[1]);
    deadline = mono_ns() + (int64_t)((seconds + 10) * 1e9);
    while (done < nreaders && mono_ns() < deadline) {
        struct epoll_event evs[256];
        int k = epoll_wait(ep, evs, 256, 100);

        for (int j = 0; j < k; j++) {
            int i = (int)evs[j].data.u32;
            struct mcpgw_event e;

            while (mcpgw_events_read(r[i], &e, 0) == 1) {
                int64_t now = mono_ns();
                /* The publish time, without parsing the whole event (a
                 * front end sends the text as it is). */
                const char *t = strstr(e.json, "\"t\":");

                if (t && n < cap)
                    lat[n++] = now - strtoll(t + 4, NULL, 10);
                if (++got[i] == nevents)
                    done++;
            }
        }
    }
    {
        int status;

        waitpid(pid, &status, 0);
    }
    if (done < nreaders)
        fprintf(stderr, "  (only %d of %d readers got all %d events)\n", done, nreaders, nevents);
    qsort(lat, n, sizeof(*lat), cmp_i64);
    *nsamples = n;
    *p50 = n ? lat[n / 2] / 1e6 : 0;
    *p99 = n ? lat[(size_t)(n * 0.99)] / 1e6 : 0;
    *p999 = n ? lat[(size_t)(n * 0.999)] / 1e6 : 0;
    for (int i = 0; i < nreaders; i++)
        mcpgw_events_reader_close(r[i]);
    mcpgw_events_close(ev);
    close(ep);
    free(r);
    free(lat);
    free(got);
}

/* ---- redis-server ------------------------------------------------------------------- */

static bool redis_pings(int port)
{
    struct timeval tv = { 0, 200000 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    redisReply *rep;
    bool ok = false;

    if (c && !c->err && (rep = redisCommand(c, "PING"))) {
        ok = rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
    }
    if (c)
        redisFree(c);
    return ok;
}

static bool redis_start(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    char port[16], log[200];
    int64_t end;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        return false;
    redis_port = ntohs(a.sin_port);
    close(fd);
    snprintf(redis_dir, sizeof(redis_dir), "/tmp/mcpgw-bench-redis-XXXXXX");
    if (!mkdtemp(redis_dir))
        return false;
    snprintf(port, sizeof(port), "%d", redis_port);
    snprintf(log, sizeof(log), "%s/redis.log", redis_dir);
    if ((redis_pid = fork()) == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", redis_dir, "--logfile", log,
               "--maxclients", "4096", (char *)NULL);
        _exit(127);
    }
    end = mono_ns() + 10000000000LL;
    while (!redis_pings(redis_port)) {
        int status;

        if (waitpid(redis_pid, &status, WNOHANG) == redis_pid || mono_ns() > end) {
            kill(redis_pid, SIGKILL);
            redis_pid = 0;
            return false;
        }
        usleep(10000);
    }
    return true;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(int argc, char **argv)
{
    double seconds = 3;
    int rate = 200, readers[8] = { 1, 100, 1000 }, nr = 3;
    const char *which = "both";
    const char *backends[2] = { "file", "redis" };
    struct rlimit rl;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc) {
            rate = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            which = argv[++i];
        } else if (strcmp(argv[i], "--readers") == 0 && i + 1 < argc) {
            char *s = argv[++i], *tok;

            nr = 0;
            while ((tok = strsep(&s, ",")) && nr < 8)
                readers[nr++] = atoi(tok);
        } else {
            fprintf(stderr, "usage: bench_events [--seconds S] [--readers 1,100,1000] "
                    "[--rate N] [--backend file|redis|both]\n");
            return 2;
        }
    }
    if (seconds <= 0 || rate <= 0 || nr == 0) {
        fprintf(stderr, "bench_events: bad arguments\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* 1,000 readers hold a few fds each. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    snprintf(store_dir, sizeof(store_dir), "/tmp/mcpgw-bench-events-XXXXXX");
    if (!mkdtemp(store_dir)) {
        perror("mkdtemp");
        return 1;
    }
    if (strcmp(which, "file") != 0 && !redis_start()) {
        fprintf(stderr, "bench_events: cannot start redis-server (apt-get install "
                "redis-server); Redis figures skipped\n");
        if (strcmp(which, "redis") == 0)
            return 1;
        which = "file";
    }
    printf("event stream benchmark: %.1f s per run, latency at %d events/s\n\n", seconds, rate);
    printf("| backend | test | result |\n|---|---|---:|\n");
    for (int b = 0; b < 2; b++) {
        if (strcmp(which, "both") != 0 && strcmp(which, backends[b]) != 0)
            continue;
        for (int np = 4; np >= 1; np -= 3) {
            struct tp tp = throughput(backends[b], np, seconds);
            char dir[300];

            /* Hundreds of MB were written and deleted: let the disk settle
             * so the latency runs measure the stream, not the journal
             * committing those deletions (seconds with ext4 -o discard). */
            snprintf(dir, sizeof(dir), "%s/tp-%ld", store_dir, (long)getpid());
            nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
            sync();

            printf("| %s | events/s, %d publishing process%s | %.0f |\n", backends[b], np,
                   np == 1 ? "" : "es", tp.per_s);
            printf("| %s | ... share of the least / most served process; longest publish ms; "
                   "dropped | %.0f / %.0f; %.2f; %" PRIu64 " |\n", backends[b], tp.min_share,
                   tp.max_share, tp.max_ms, tp.dropped);
        }
        fflush(stdout);
        for (int i = 0; i < nr; i++) {
            double p50, p99, p999;
            size_t n;

            latency(backends[b], readers[i], rate, seconds, &p50, &p99, &p999, &n);
            printf("| %s | publish->deliver, %d reader%s: p50 / p99 / p99.9 ms (%zu samples) "
                   "| %.3f / %.3f / %.3f |\n", backends[b], readers[i], readers[i] == 1 ? "" : "s",
                   n, p50, p99, p999);
            fflush(stdout);
        }
    }
    if (redis_pid > 0) {
        int status;

        kill(redis_pid, SIGTERM);
        waitpid(redis_pid, &status, 0);
        nftw(redis_dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    }
    nftw(store_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
