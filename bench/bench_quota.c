/* bench_quota - the cost per tool call of the per-token limits (quota.h).
 *
 *   bench_quota [--seconds S] [--dir DIR]
 *
 * One acquire + release of a token's hold, the work added to every tool
 * call: on a table of this process only, on the host-wide file, with two
 * threads of one process on one token, and with two processes on one
 * token.  Prints ns per call for each.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "limits.h"
#include "quota.h"

static double seconds = 1.0;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Acquire + release in a loop for `seconds`; returns calls done. */
static long run(mcpgw_quota *q, const char *key)
{
    double end = now_s() + seconds;
    long n = 0;

    while (now_s() < end) {
        for (int i = 0; i < 1000; i++) {
            struct mcpgw_quota_hold h = MCPGW_QUOTA_HOLD_INIT;

            if (mcpgw_quota_acquire(q, key, &h, NULL) < 0) {
                fprintf(stderr, "bench_quota: refused: the limits are too low to measure\n");
                exit(1);
            }
            mcpgw_quota_release(q, &h);
        }
        n += 1000;
    }
    return n;
}

/* Far above what a config may set (MCPGW_TOKEN_RATE_MAX), so that the loop,
 * which calls faster than any token may, is never refused and every call
 * takes the whole path: a 1 ns interval and a 4 s burst. */
static const struct mcpgw_quota_limits lim = { 1000000, 1000000000, 4000000000u };

static mcpgw_quota *open_or_die(const char *dir)
{
    mcpgw_quota *q;
    char err[512];

    if (mcpgw_quota_new(dir, "bench", &lim, &q, err, sizeof(err)) < 0 || (dir && err[0])) {
        fprintf(stderr, "bench_quota: %s\n", err[0] ? err : "cannot make a table");
        exit(1);
    }
    return q;
}

struct worker {
    mcpgw_quota *q;
    long n;
};

static void *thread_main(void *ud)
{
    struct worker *w = ud;

    w->n = run(w->q, "shared-token");
    return NULL;
}

int main(int argc, char **argv)
{
    char tmpdir[] = "/tmp/bench_quota.XXXXXX", cmd[128];
    const char *dir = NULL;
    mcpgw_quota *q;
    long n;
    struct worker per[2];
    pthread_t th[2];
    _Atomic long *shared;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else {
            fprintf(stderr, "usage: bench_quota [--seconds S] [--dir DIR]\n");
            return 64;
        }
    }
    if (!dir && !(dir = mkdtemp(tmpdir))) {
        perror("bench_quota: mkdtemp");
        return 1;
    }
    q = open_or_die(NULL);
    n = run(q, "ci");
    printf("per-process table, 1 thread:     %6.1f ns per call\n", seconds * 1e9 / (double)n);
    mcpgw_quota_free(q);

    q = open_or_die(dir);
    n = run(q, "ci");
    printf("host-wide file, 1 thread:        %6.1f ns per call\n", seconds * 1e9 / (double)n);

    for (int i = 0; i < 2; i++) {
        per[i] = (struct worker){ q, 0 };
        pthread_create(&th[i], NULL, thread_main, &per[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    printf("host-wide file, 2 threads, 1 token: %6.1f ns per call per thread\n",
           seconds * 1e9 * 2 / (double)(per[0].n + per[1].n));
    mcpgw_quota_free(q);

    shared = mmap(NULL, sizeof(*shared) * 2, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                  -1, 0);
    for (int i = 0; i < 2; i++) {
        pid_t pid = fork();

        if (pid == 0) {
            mcpgw_quota *cq = open_or_die(dir);

            shared[i] = run(cq, "shared-token");
            mcpgw_quota_free(cq);
            _exit(0);
        }
    }
    while (wait(NULL) > 0)
        ;
    printf("host-wide file, 2 processes, 1 token: %6.1f ns per call per process\n",
           seconds * 1e9 * 2 / (double)(shared[0] + shared[1]));
    if (dir == tmpdir) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_quota: cannot remove %s\n", tmpdir);
    }
    return 0;
}
