/* check_quota.c - per-token concurrency and rate limits (shared/quota.c).
 *
 * Proves: a full allowance lets exactly burst calls through, then refills
 * at callsPerSecond (never past the burst) with a Retry-After that is
 * right; concurrency stops at maxConcurrentCalls and a release makes room;
 * keys and namespaces are independent; release is idempotent and every
 * refusal holds nothing; the table stays at its bound, refusing a new key
 * while every entry is busy and reusing idle ones; many threads never get
 * past the limit and leave zero in flight; the file is shared by separate
 * handles and by forked processes, whose calls count together; the calls of
 * a process killed mid-call are given back; a file others may write, of
 * another layout, or with every row taken gives a per-process table and a
 * reason.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "err.h"
#include "limits.h"
#include "quota.h"

#define MS UINT64_C(1000000)
#define SEC UINT64_C(1000000000)
#define T0 (1000 * SEC)

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/check_quota.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    char cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static mcpgw_quota *open_q(const char *d, const char *ns, unsigned max, unsigned rate,
                           unsigned burst)
{
    struct mcpgw_quota_limits lim = { max, rate, burst };
    mcpgw_quota *q;
    char err[512];

    ck_assert_int_eq(mcpgw_quota_new(d, ns, &lim, &q, err, sizeof(err)), 0);
    if (d)
        ck_assert_msg(err[0] == '\0' && mcpgw_quota_shared(q), "%s", err);
    return q;
}

static void release_all(mcpgw_quota *q, struct mcpgw_quota_hold *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        mcpgw_quota_release(q, &h[i]);
}

START_TEST(burst_then_refused_with_retry)
{
    mcpgw_quota *q = open_q(NULL, NULL, 1000, 10, 5);
    struct mcpgw_quota_hold h[8];
    struct mcpgw_quota_refusal why;

    for (int i = 0; i < 8; i++)
        h[i] = (struct mcpgw_quota_hold)MCPGW_QUOTA_HOLD_INIT;
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(mcpgw__quota_acquire_at(q, "ci", T0, &h[i], &why), 0);
    ck_assert_int_eq(mcpgw__quota_acquire_at(q, "ci", T0, &h[5], &why), MCPGW_EBUSY);
    ck_assert_int_eq(why.why, MCPGW_QUOTA_RATE);
    ck_assert_uint_eq(why.limit, 10);
    ck_assert_uint_eq(why.burst, 5);
    ck_assert_uint_eq(why.retry_after_ms, 100);   /* one interval at 10/s */
    ck_assert_int_eq(h[5].slot, -1);              /* a refusal holds nothing */
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "ci"), 5);
    /* 40 ms later the next call is 60 ms away. */
    ck_assert_int_eq(mcpgw__quota_acquire_at(q, "ci", T0 + 40 * MS, &h[5], &why), MCPGW_EBUSY);
    ck_assert_uint_eq(why.retry_after_ms, 60);
    release_all(q, h, 8);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "ci"), 0);
    mcpgw_quota_free(q);
}
END_TEST

START_TEST(refill_at_rate_capped_at_burst)
{
    mcpgw_quota *q = open_q(NULL, NULL, 1000, 10, 5);
    struct mcpgw_quota_hold h = MCPGW_QUOTA_HOLD_INIT;
    uint64_t now = T0;
    int ok;

    for (int i = 0; i < 5; i++, mcpgw_quota_release(q, &h))
        ck_assert_int_eq(mcpgw__quota_acquire_at(q, "ci", now, &h, NULL), 0);
    ck_assert_int_eq(mcpgw__quota_acquire_at(q, "ci", now, &h, NULL), MCPGW_EBUSY);
    /* One interval refills one call, and one only. */
    now += 100 * MS;
    ck_assert_int_eq(mcpgw__quota_acquire_at(q, "ci", now, &h, NULL), 0);
    mcpgw_quota_release(q, &h);
    ck_assert_int_eq(mcpgw__quota_acquire_at(q, "ci", now, &h, NULL), MCPGW_EBUSY);
    /* A long pause refills the burst, not more. */
    now += 60 * SEC;
    for (ok = 0; mcpgw__quota_acquire_at(q, "ci", now, &h, NULL) == 0; ok++)
        mcpgw_quota_release(q, &h);
    ck_assert_int_eq(ok, 5);
    /* Sustained: 10 per second over 3 s of 1 ms steps, plus the burst. */
    ok = 0;
    for (int ms = 0; ms < 3000; ms++) {
        now += MS;
        while (mcpgw__quota_acquire_at(q, "ci", now, &h, NULL) == 0) {
            mcpgw_quota_release(q, &h);
            ok++;
        }
    }
    ck_assert_int_eq(ok, 30);
    mcpgw_quota_free(q);
}
END_TEST

START_TEST(concurrency_limit_and_release)
{
    mcpgw_quota *q = open_q(dir, "tokens.json", 3, MCPGW_TOKEN_RATE_MAX, MCPGW_TOKEN_RATE_MAX);
    struct mcpgw_quota_hold h[4] = { MCPGW_QUOTA_HOLD_INIT, MCPGW_QUOTA_HOLD_INIT,
                                     MCPGW_QUOTA_HOLD_INIT, MCPGW_QUOTA_HOLD_INIT };
    struct mcpgw_quota_refusal why;

    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(mcpgw_quota_acquire(q, "ci", &h[i], &why), 0);
    ck_assert_int_eq(mcpgw_quota_acquire(q, "ci", &h[3], &why), MCPGW_EBUSY);
    ck_assert_int_eq(why.why, MCPGW_QUOTA_CONCURRENCY);
    ck_assert_uint_eq(why.limit, 3);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "ci"), 3);
    /* Another key is not affected. */
    ck_assert_int_eq(mcpgw_quota_acquire(q, "other", &h[3], &why), 0);
    mcpgw_quota_release(q, &h[3]);
    /* A release makes room for exactly one. */
    mcpgw_quota_release(q, &h[1]);
    ck_assert_int_eq(mcpgw_quota_acquire(q, "ci", &h[1], &why), 0);
    ck_assert_int_eq(mcpgw_quota_acquire(q, "ci", &h[3], &why), MCPGW_EBUSY);
    /* Releasing twice, or an empty hold, changes nothing. */
    mcpgw_quota_release(q, &h[0]);
    mcpgw_quota_release(q, &h[0]);
    mcpgw_quota_release(q, &h[3]);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "ci"), 2);
    release_all(q, h, 4);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "ci"), 0);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "never-seen"), 0);
    /* Lowered limits count from the next call. */
    ck_assert_int_eq(mcpgw_quota_set_limits(q, &(struct mcpgw_quota_limits){ 1, 100, 100 }), 0);
    ck_assert_int_eq(mcpgw_quota_acquire(q, "ci", &h[0], NULL), 0);
    ck_assert_int_eq(mcpgw_quota_acquire(q, "ci", &h[1], NULL), MCPGW_EBUSY);
    ck_assert_int_eq(mcpgw_quota_set_limits(q, &(struct mcpgw_quota_limits){ 0, 100, 100 }),
                     -EINVAL);
    mcpgw_quota_release(q, &h[0]);
    mcpgw_quota_free(q);
}
END_TEST

START_TEST(no_table_no_limits_and_bad_limits)
{
    struct mcpgw_quota_hold h = MCPGW_QUOTA_HOLD_INIT;
    mcpgw_quota *q = (mcpgw_quota *)1;

    ck_assert_int_eq(mcpgw_quota_acquire(NULL, "ci", &h, NULL), 0);
    ck_assert_int_eq(h.slot, -1);
    mcpgw_quota_release(NULL, &h);
    ck_assert_uint_eq(mcpgw_quota_inflight(NULL, "ci"), 0);
    mcpgw_quota_free(NULL);
    ck_assert_int_eq(mcpgw_quota_new(NULL, NULL, &(struct mcpgw_quota_limits){ 1, 0, 1 }, &q,
                                     NULL, 0), -EINVAL);
    ck_assert_ptr_null(q);
}
END_TEST

START_TEST(namespaces_share_or_not)
{
    mcpgw_quota *a = open_q(dir, "/etc/mcpgw/tokens.json", 2, 1000, 1000);
    mcpgw_quota *b = open_q(dir, "/etc/mcpgw/tokens.json", 2, 1000, 1000);
    mcpgw_quota *c = open_q(dir, "/srv/other/tokens.json", 2, 1000, 1000);
    struct mcpgw_quota_hold h[4] = { MCPGW_QUOTA_HOLD_INIT, MCPGW_QUOTA_HOLD_INIT,
                                     MCPGW_QUOTA_HOLD_INIT, MCPGW_QUOTA_HOLD_INIT };

    /* a and b are two processes of one gateway: they share the limit. */
    ck_assert_int_eq(mcpgw_quota_acquire(a, "ci", &h[0], NULL), 0);
    ck_assert_int_eq(mcpgw_quota_acquire(b, "ci", &h[1], NULL), 0);
    ck_assert_uint_eq(mcpgw_quota_inflight(a, "ci"), 2);
    ck_assert_int_eq(mcpgw_quota_acquire(b, "ci", &h[2], NULL), MCPGW_EBUSY);
    /* c has another token file: its "ci" is another token. */
    ck_assert_int_eq(mcpgw_quota_acquire(c, "ci", &h[2], NULL), 0);
    ck_assert_uint_eq(mcpgw_quota_inflight(c, "ci"), 1);
    mcpgw_quota_release(a, &h[0]);
    ck_assert_int_eq(mcpgw_quota_acquire(b, "ci", &h[3], NULL), 0);
    mcpgw_quota_release(b, &h[1]);
    mcpgw_quota_release(b, &h[3]);
    mcpgw_quota_release(c, &h[2]);
    ck_assert_uint_eq(mcpgw_quota_inflight(a, "ci"), 0);
    mcpgw_quota_free(a);
    mcpgw_quota_free(b);
    mcpgw_quota_free(c);
}
END_TEST

START_TEST(table_stays_bounded)
{
    mcpgw_quota *q = open_q(NULL, NULL, 10, 10, 1);
    static struct mcpgw_quota_hold h[MCPGW_QUOTA_KEYS];
    struct mcpgw_quota_hold x = MCPGW_QUOTA_HOLD_INIT;
    struct mcpgw_quota_refusal why;
    char key[32];

    for (int i = 0; i < MCPGW_QUOTA_KEYS; i++) {
        h[i] = (struct mcpgw_quota_hold)MCPGW_QUOTA_HOLD_INIT;
        snprintf(key, sizeof(key), "token-%d", i);
        ck_assert_int_eq(mcpgw__quota_acquire_at(q, key, T0, &h[i], NULL), 0);
    }
    ck_assert_uint_eq(mcpgw__quota_entries(q), MCPGW_QUOTA_KEYS);
    /* Every entry is busy: a new token is refused, not added. */
    ck_assert_int_eq(mcpgw__quota_acquire_at(q, "newcomer", T0, &x, &why), MCPGW_EBUSY);
    ck_assert_int_eq(why.why, MCPGW_QUOTA_FULL);
    /* Nothing in flight for token-7, but its allowance is not back yet:
     * its entry still carries state and is kept. */
    mcpgw_quota_release(q, &h[7]);
    ck_assert_int_eq(mcpgw__quota_acquire_at(q, "newcomer", T0 + 50 * MS, &x, &why),
                     MCPGW_EBUSY);
    /* Once it is, the entry is as good as new and is reused. */
    ck_assert_int_eq(mcpgw__quota_acquire_at(q, "newcomer", T0 + 100 * MS, &x, &why), 0);
    ck_assert_uint_eq(mcpgw__quota_entries(q), MCPGW_QUOTA_KEYS);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "token-7"), 0);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "newcomer"), 1);
    /* The others kept their state. */
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "token-8"), 1);
    ck_assert_int_eq(mcpgw__quota_acquire_at(q, "token-8", T0 + 50 * MS, &x, &why), MCPGW_EBUSY);
    ck_assert_int_eq(why.why, MCPGW_QUOTA_RATE);
    release_all(q, h, MCPGW_QUOTA_KEYS);
    mcpgw_quota_free(q);
}
END_TEST

/* ---- threads and processes ------------------------------------------------------ */

#define THREADS 8
#define ROUNDS 20000
#define TMAX 4

struct hammer {
    mcpgw_quota *q;
    _Atomic int *now_in, *peak;
    _Atomic long *ok;
};

static void hammer_round(struct hammer *hm, const char *key)
{
    struct mcpgw_quota_hold h = MCPGW_QUOTA_HOLD_INIT;

    if (mcpgw_quota_acquire(hm->q, key, &h, NULL) < 0)
        return;
    int n = atomic_fetch_add(hm->now_in, 1) + 1, p = atomic_load(hm->peak);

    while (n > p && !atomic_compare_exchange_weak(hm->peak, &p, n))
        ;
    atomic_fetch_add(hm->ok, 1);
    if (n & 1)
        sched_yield();
    atomic_fetch_sub(hm->now_in, 1);
    mcpgw_quota_release(hm->q, &h);
}

static void *hammer_thread(void *ud)
{
    for (int i = 0; i < ROUNDS; i++)
        hammer_round(ud, "shared-token");
    return NULL;
}

START_TEST(many_threads_never_pass_the_limit)
{
    _Atomic int now_in = 0, peak = 0;
    _Atomic long ok = 0;
    struct hammer hm = { open_q(dir, "t", TMAX, MCPGW_TOKEN_RATE_MAX, MCPGW_TOKEN_RATE_MAX),
                         &now_in, &peak, &ok };
    pthread_t th[THREADS];

    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer_thread, &hm), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_le(atomic_load(&peak), TMAX);
    ck_assert_int_ge(atomic_load(&peak), 2);
    ck_assert_int_gt(atomic_load(&ok), ROUNDS);
    ck_assert_uint_eq(mcpgw_quota_inflight(hm.q, "shared-token"), 0);
    mcpgw_quota_free(hm.q);
}
END_TEST

START_TEST(processes_share_the_limit)
{
    /* The children's counters live in memory they share with us. */
    struct shared { _Atomic int now_in, peak; _Atomic long ok; } *sh;
    pid_t pids[4];
    mcpgw_quota *q;

    sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(sh, MAP_FAILED);
    memset(sh, 0, sizeof(*sh));
    for (int c = 0; c < 4; c++) {
        pids[c] = fork();
        ck_assert_int_ge(pids[c], 0);
        if (pids[c] == 0) {
            struct mcpgw_quota_limits lim = { 2, MCPGW_TOKEN_RATE_MAX, MCPGW_TOKEN_RATE_MAX };
            struct hammer hm = { NULL, &sh->now_in, &sh->peak, &sh->ok };
            char err[256];

            if (mcpgw_quota_new(dir, "ns", &lim, &hm.q, err, sizeof(err)) < 0 ||
                !mcpgw_quota_shared(hm.q))
                _exit(2);
            for (int i = 0; i < 10000; i++)
                hammer_round(&hm, "ci");
            mcpgw_quota_free(hm.q);
            _exit(0);
        }
    }
    for (int c = 0; c < 4; c++) {
        int st;

        ck_assert_int_eq(waitpid(pids[c], &st, 0), pids[c]);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    /* How many attempts pass depends on how the processes were scheduled
     * (a holder preempted in its critical section fails the others for a
     * whole time slice; under valgrind 9,207 of 40,000 passed once), so
     * that count is not asserted; what the limit guarantees is. */
    ck_assert_int_le(atomic_load(&sh->peak), 2);
    ck_assert_int_gt(atomic_load(&sh->ok), 0);
    q = open_q(dir, "ns", 2, 1000, 1000);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "ci"), 0);
    {
        /* Every hold was given back: both places are free again. */
        struct mcpgw_quota_hold a = MCPGW_QUOTA_HOLD_INIT, b = MCPGW_QUOTA_HOLD_INIT,
                                c = MCPGW_QUOTA_HOLD_INIT;

        ck_assert_int_eq(mcpgw_quota_acquire(q, "ci", &a, NULL), 0);
        ck_assert_int_eq(mcpgw_quota_acquire(q, "ci", &b, NULL), 0);
        ck_assert_int_lt(mcpgw_quota_acquire(q, "ci", &c, NULL), 0);
        mcpgw_quota_release(q, &b);
        mcpgw_quota_release(q, &a);
    }
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "ci"), 0);
    mcpgw_quota_free(q);
    munmap(sh, sizeof(*sh));
}
END_TEST

START_TEST(a_killed_process_gives_its_calls_back)
{
    mcpgw_quota *q;
    struct mcpgw_quota_hold h = MCPGW_QUOTA_HOLD_INIT;
    int fds[2], st;
    char c;
    pid_t pid;

    ck_assert_int_eq(pipe(fds), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct mcpgw_quota_limits lim = { 3, 1000, 1000 };
        struct mcpgw_quota_hold hh[3] = { MCPGW_QUOTA_HOLD_INIT, MCPGW_QUOTA_HOLD_INIT,
                                          MCPGW_QUOTA_HOLD_INIT };
        mcpgw_quota *cq;

        close(fds[0]);
        if (mcpgw_quota_new(dir, "ns", &lim, &cq, NULL, 0) < 0)
            _exit(2);
        for (int i = 0; i < 3; i++)
            if (mcpgw_quota_acquire(cq, "ci", &hh[i], NULL) < 0)
                _exit(3);
        if (write(fds[1], "k", 1) != 1)
            _exit(4);
        pause();        /* killed mid-call, holds and all */
        _exit(5);
    }
    close(fds[1]);
    ck_assert_int_eq(read(fds[0], &c, 1), 1);
    q = open_q(dir, "ns", 3, 1000, 1000);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "ci"), 3);
    /* While it lives, its calls count. */
    ck_assert_int_eq(mcpgw__quota_reap(q), 0);
    ck_assert_int_eq(mcpgw_quota_acquire(q, "ci", &h, NULL), MCPGW_EBUSY);
    kill(pid, SIGKILL);
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    /* The next call over the limit finds the dead row and clears it; a
     * reap was already tried within the last second, so force the clock. */
    ck_assert_int_eq(mcpgw__quota_acquire_at(q, "ci", UINT64_MAX / 2, &h, NULL), 0);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "ci"), 1);
    ck_assert_int_eq(mcpgw__quota_reap(q), 0);
    mcpgw_quota_release(q, &h);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "ci"), 0);
    mcpgw_quota_free(q);
    close(fds[0]);
}
END_TEST

/* ---- the file ----------------------------------------------------------------- */

static mcpgw_quota *open_expect_private(const char *needle)
{
    struct mcpgw_quota_limits lim = { 1, 1, 1 };
    struct mcpgw_quota_hold h = MCPGW_QUOTA_HOLD_INIT;
    mcpgw_quota *q;
    char err[512];

    ck_assert_int_eq(mcpgw_quota_new(dir, "ns", &lim, &q, err, sizeof(err)), 0);
    ck_assert(!mcpgw_quota_shared(q));
    ck_assert_msg(strstr(err, "per process") && strstr(err, needle), "%s", err);
    /* Still a working table. */
    ck_assert_int_eq(mcpgw_quota_acquire(q, "ci", &h, NULL), 0);
    ck_assert_int_eq(mcpgw_quota_acquire(q, "ci", &h, NULL), MCPGW_EBUSY);
    mcpgw_quota_release(q, &h);
    return q;
}

START_TEST(unsafe_or_foreign_file_falls_back)
{
    char path[128];
    struct stat st;
    mcpgw_quota *q = open_q(dir, "ns", 1, 1, 1);
    FILE *f;

    snprintf(path, sizeof(path), "%s/quota", dir);
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    mcpgw_quota_free(q);
    ck_assert_int_eq(chmod(path, 0620), 0);
    mcpgw_quota_free(open_expect_private("writable by us alone"));
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    fputs("not a quota table\n", f);
    fclose(f);
    chmod(path, 0600);
    mcpgw_quota_free(open_expect_private("another layout"));
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(symlink("/etc/passwd", path), 0);
    mcpgw_quota_free(open_expect_private("cannot open"));
}
END_TEST

START_TEST(every_row_taken_falls_back)
{
    static mcpgw_quota *qs[MCPGW_QUOTA_PROCS];
    struct mcpgw_quota_hold h = MCPGW_QUOTA_HOLD_INIT;
    mcpgw_quota *extra;

    for (int i = 0; i < MCPGW_QUOTA_PROCS; i++)
        qs[i] = open_q(dir, "ns", 100, 1000, 1000);
    extra = open_expect_private("process rows");
    mcpgw_quota_free(extra);
    /* A row given back is there for the next process. */
    ck_assert_int_eq(mcpgw_quota_acquire(qs[5], "ci", &h, NULL), 0);
    mcpgw_quota_free(qs[5]);
    qs[5] = open_q(dir, "ns", 100, 1000, 1000);
    /* ... and what its holder still held went with it. */
    ck_assert_uint_eq(mcpgw_quota_inflight(qs[5], "ci"), 0);
    for (int i = 0; i < MCPGW_QUOTA_PROCS; i++)
        mcpgw_quota_free(qs[i]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("quota");
    TCase *tc = tcase_create("quota");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, burst_then_refused_with_retry);
    tcase_add_test(tc, refill_at_rate_capped_at_burst);
    tcase_add_test(tc, concurrency_limit_and_release);
    tcase_add_test(tc, no_table_no_limits_and_bad_limits);
    tcase_add_test(tc, namespaces_share_or_not);
    tcase_add_test(tc, table_stays_bounded);
    tcase_add_test(tc, many_threads_never_pass_the_limit);
    tcase_add_test(tc, processes_share_the_limit);
    tcase_add_test(tc, a_killed_process_gives_its_calls_back);
    tcase_add_test(tc, unsafe_or_foreign_file_falls_back);
    tcase_add_test(tc, every_row_taken_falls_back);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
