/* check_ticket.c - single-use browser tickets (shared/ticket.c).
 *
 * Proves: a ticket has the documented shape and carries the token's name
 * and scopes; it works exactly once, also when many processes race for it
 * (exactly one wins); expired, malformed and unknown tickets all fail alike;
 * the store holds only hashes, mode 0600, and issuing sweeps expired files.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "err.h"
#include "ticket.h"

static char dir[64];
static struct mcpgw_conf *conf;

static void setup(void)
{
    char json[512], err[256];

    snprintf(dir, sizeof(dir), "/tmp/check_ticket.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(json, sizeof(json), "{\"gateway\":{\"stateDir\":\"%s/state\",\"ticketTtlMs\":1000}}",
             dir);
    ck_assert_msg(mcpgw_conf_parse(json, strlen(json), "t.json", dir, &conf, err, sizeof(err)) == 0,
                  "%s", err);
}

static void teardown(void)
{
    char cmd[128];

    mcpgw_conf_free(conf);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *const scopes[] = { "memory:*", "everything:echo", NULL };
static const struct mcpgw_token_info who = { .name = "ci", .scopes = scopes, .nscopes = 2 };

static int count_files(void)
{
    char p[128];
    DIR *d;
    struct dirent *de;
    int n = 0;

    snprintf(p, sizeof(p), "%s/state/tickets", dir);
    d = opendir(p);
    if (!d)
        return 0;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

START_TEST(a_ticket_works_once_and_carries_the_scopes)
{
    char t[MCPGW_TICKET_LEN + 1], err[256], p[200];
    struct mcpgw_ticket_info info;
    struct mcpgw_token_info as;
    struct stat st;
    DIR *d;
    struct dirent *de;

    ck_assert_int_eq(mcpgw_ticket_issue(conf, &who, t, sizeof(t), err, sizeof(err)), 0);
    ck_assert_uint_eq(strlen(t), MCPGW_TICKET_LEN);
    ck_assert(strncmp(t, "mcpgwt_", 7) == 0);
    /* stored by hash, 0600, never the ticket itself */
    snprintf(p, sizeof(p), "%s/state/tickets", dir);
    d = opendir(p);
    while ((de = readdir(d))) {
        char f[400];

        if (de->d_name[0] == '.')
            continue;
        ck_assert_uint_eq(strlen(de->d_name), 64);
        ck_assert(strstr(de->d_name, t + 7) == NULL);
        snprintf(f, sizeof(f), "%s/%s", p, de->d_name);
        ck_assert_int_eq(stat(f, &st), 0);
        ck_assert_int_eq(st.st_mode & 0777, 0600);
    }
    closedir(d);
    ck_assert_int_eq(mcpgw_ticket_redeem(conf, t, strlen(t), &info), 0);
    ck_assert_str_eq(info.name, "ci");
    ck_assert_uint_eq(info.nscopes, 2);
    ck_assert_str_eq(info.scopes[1], "everything:echo");
    mcpgw_ticket_as_token(&info, &as);
    ck_assert(mcpgw_token_allows(&as, "everything", "echo"));
    ck_assert(!mcpgw_token_allows(&as, "everything", "add"));
    mcpgw_ticket_info_release(&info);
    ck_assert_int_eq(mcpgw_ticket_redeem(conf, t, strlen(t), &info), MCPGW_EAUTH);
    ck_assert_int_eq(count_files(), 0);
}
END_TEST

START_TEST(bad_and_expired_tickets_fail_alike)
{
    char t[MCPGW_TICKET_LEN + 1], err[256], forged[MCPGW_TICKET_LEN + 1];
    struct mcpgw_ticket_info info;
    struct timespec ts = { 2, 100000000 };

    ck_assert_int_eq(mcpgw_ticket_redeem(conf, "mcpgwt_short", 12, &info), MCPGW_EAUTH);
    memset(forged, 'A', MCPGW_TICKET_LEN);
    memcpy(forged, "mcpgwt_", 7);
    forged[MCPGW_TICKET_LEN] = '\0';
    ck_assert_int_eq(mcpgw_ticket_redeem(conf, forged, MCPGW_TICKET_LEN, &info), MCPGW_EAUTH);
    forged[10] = '/';
    ck_assert_int_eq(mcpgw_ticket_redeem(conf, forged, MCPGW_TICKET_LEN, &info), MCPGW_EAUTH);
    ck_assert_int_eq(mcpgw_ticket_issue(conf, &who, t, sizeof(t), err, sizeof(err)), 0);
    /* the TTL is 1 s, stored rounded up to a whole second: wait it out (a
     * deadline, not a guess: 2.1 s > the most it can live) */
    nanosleep(&ts, NULL);
    ck_assert_int_eq(mcpgw_ticket_redeem(conf, t, strlen(t), &info), MCPGW_EAUTH);
}
END_TEST

/* Expiry is stored in whole seconds: a ticket issued 50 ms before a second
 * ends is still good after that second (it once expired there, after a few
 * ms of its 1 s TTL). */
START_TEST(a_ticket_issued_late_in_a_second_lives_its_ttl)
{
    char t[MCPGW_TICKET_LEN + 1], err[256];
    struct mcpgw_ticket_info info;
    struct timespec now, nap = { 0, 1000000 };

    do {
        clock_gettime(CLOCK_REALTIME, &now);
        if (now.tv_nsec < 950000000)
            nanosleep(&nap, NULL);
    } while (now.tv_nsec < 950000000);
    ck_assert_int_eq(mcpgw_ticket_issue(conf, &who, t, sizeof(t), err, sizeof(err)), 0);
    nap.tv_nsec = 150000000;
    nanosleep(&nap, NULL);
    ck_assert_int_eq(mcpgw_ticket_redeem(conf, t, strlen(t), &info), 0);
    mcpgw_ticket_info_release(&info);
}
END_TEST

START_TEST(issuing_sweeps_expired_tickets)
{
    char t[MCPGW_TICKET_LEN + 1], err[256];
    struct timespec ts = { 2, 100000000 };

    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(mcpgw_ticket_issue(conf, &who, t, sizeof(t), err, sizeof(err)), 0);
    ck_assert_int_eq(count_files(), 5);
    nanosleep(&ts, NULL);
    ck_assert_int_eq(mcpgw_ticket_issue(conf, &who, t, sizeof(t), err, sizeof(err)), 0);
    ck_assert_int_eq(count_files(), 1);
}
END_TEST

START_TEST(racing_processes_redeem_once)
{
    char t[MCPGW_TICKET_LEN + 1], err[256];
    int wins = 0;
    pid_t pids[8];

    ck_assert_int_eq(mcpgw_ticket_issue(conf, &who, t, sizeof(t), err, sizeof(err)), 0);
    for (int i = 0; i < 8; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0) {
            struct mcpgw_ticket_info info;
            int rc = mcpgw_ticket_redeem(conf, t, strlen(t), &info);

            mcpgw_ticket_info_release(&info);
            _exit(rc == 0 ? 0 : 1);
        }
    }
    for (int i = 0; i < 8; i++) {
        int st;

        ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
        ck_assert(WIFEXITED(st));
        wins += WEXITSTATUS(st) == 0;
    }
    ck_assert_int_eq(wins, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ticket");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, a_ticket_works_once_and_carries_the_scopes);
    tcase_add_test(tc, bad_and_expired_tickets_fail_alike);
    tcase_add_test(tc, a_ticket_issued_late_in_a_second_lives_its_ttl);
    tcase_add_test(tc, issuing_sweeps_expired_tickets);
    tcase_add_test(tc, racing_processes_redeem_once);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
