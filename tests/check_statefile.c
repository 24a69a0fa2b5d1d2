/* check_statefile.c - the read/replace/lock rules every private state file
 * (tokens, tool pins) relies on. */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "buf.h"
#include "err.h"
#include "statefile.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/check_statefile.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[PATH_MAX + 300];

    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        if (unlink(p) < 0)
            rmdir(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static void path_of(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static void put(const char *name, const char *data, size_t len, mode_t mode)
{
    char p[PATH_MAX];
    int fd;

    path_of(p, sizeof(p), name);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    fchmod(fd, mode);
    close(fd);
}

static int read_file(const char *name, size_t max, char *err, size_t errlen, struct mcpgw_buf *b)
{
    char p[PATH_MAX];

    path_of(p, sizeof(p), name);
    mcpgw_buf_init(b, max);
    return mcpgw_statefile_read(p, max, b, NULL, err, errlen);
}

START_TEST(read_accepts_private_regular_file)
{
    struct mcpgw_buf b;
    char err[256] = "";

    put("ok.json", "{\"a\":1}", 7, 0600);
    ck_assert_int_eq(read_file("ok.json", 64, err, sizeof(err), &b), 0);
    ck_assert_uint_eq(b.len, 7);
    ck_assert_str_eq(b.ptr, "{\"a\":1}");
    mcpgw_buf_release(&b);

    /* Exactly at the cap is fine; empty is fine (the caller decides). */
    put("cap.json", "0123456789", 10, 0640);
    ck_assert_int_eq(read_file("cap.json", 10, err, sizeof(err), &b), 0);
    ck_assert_uint_eq(b.len, 10);
    mcpgw_buf_release(&b);
    put("empty.json", "", 0, 0600);
    ck_assert_int_eq(read_file("empty.json", 10, err, sizeof(err), &b), 0);
    ck_assert_uint_eq(b.len, 0);
    mcpgw_buf_release(&b);
}
END_TEST

START_TEST(read_refusals_say_why)
{
    struct mcpgw_buf b;
    char err[512], p[PATH_MAX], want[PATH_MAX + 128];

    err[0] = '\0';
    ck_assert_int_eq(read_file("missing.json", 64, err, sizeof(err), &b), -ENOENT);
    ck_assert_str_eq(err, "");
    mcpgw_buf_release(&b);

    put("gw.json", "{}", 2, 0620);
    ck_assert_int_eq(read_file("gw.json", 64, err, sizeof(err), &b), MCPGW_ECONFIG);
    path_of(p, sizeof(p), "gw.json");
    snprintf(want, sizeof(want), "%s: refusing a group- or world-writable file (mode 0620); "
             "run chmod 600", p);
    ck_assert_str_eq(err, want);
    mcpgw_buf_release(&b);

    put("ww.json", "{}", 2, 0602);
    ck_assert_int_eq(read_file("ww.json", 64, err, sizeof(err), &b), MCPGW_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, "(mode 0602)"));
    mcpgw_buf_release(&b);

    put("big.json", "01234567890", 11, 0600);
    ck_assert_int_eq(read_file("big.json", 10, err, sizeof(err), &b), MCPGW_ECONFIG);
    path_of(p, sizeof(p), "big.json");
    snprintf(want, sizeof(want), "%s: larger than 10 bytes", p);
    ck_assert_str_eq(err, want);
    mcpgw_buf_release(&b);

    put("nul.json", "{\"a\0\":1}", 8, 0600);
    ck_assert_int_eq(read_file("nul.json", 64, err, sizeof(err), &b), MCPGW_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, ": contains a NUL byte"));
    mcpgw_buf_release(&b);

    path_of(p, sizeof(p), "adir");
    ck_assert_int_eq(mkdir(p, 0700), 0);
    ck_assert_int_eq(read_file("adir", 64, err, sizeof(err), &b), MCPGW_ECONFIG);
    snprintf(want, sizeof(want), "%s: not a regular file", p);
    ck_assert_str_eq(err, want);
    mcpgw_buf_release(&b);

    /* A FIFO must not hang the reader (nobody will ever write to it). */
    path_of(p, sizeof(p), "fifo");
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    ck_assert_int_eq(read_file("fifo", 64, err, sizeof(err), &b), MCPGW_ECONFIG);
    ck_assert_ptr_nonnull(strstr(err, ": not a regular file"));
    mcpgw_buf_release(&b);
}
END_TEST

START_TEST(replace_is_private_whole_and_leaves_no_temp)
{
    struct mcpgw_buf b;
    struct stat st;
    char err[256], p[PATH_MAX];
    DIR *d;
    struct dirent *e;
    int entries = 0;

    path_of(p, sizeof(p), "state.json");
    umask(022);
    ck_assert_int_eq(mcpgw_statefile_replace(p, "one", 3, NULL, "test", err, sizeof(err)), 0);
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
    /* Replacing a file that was made 0644 by hand leaves it 0600. */
    ck_assert_int_eq(chmod(p, 0644), 0);
    ck_assert_int_eq(mcpgw_statefile_replace(p, "two!", 4, &st, "test", err, sizeof(err)), 0);
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
    ck_assert_int_eq(read_file("state.json", 64, err, sizeof(err), &b), 0);
    ck_assert_str_eq(b.ptr, "two!");
    mcpgw_buf_release(&b);

    d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            entries++;
    closedir(d);
    ck_assert_int_eq(entries, 1);

    /* A directory that does not exist: a clear error, nothing created. */
    path_of(p, sizeof(p), "nodir/state.json");
    ck_assert_int_eq(mcpgw_statefile_replace(p, "x", 1, NULL, "test", err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "cannot create"));
}
END_TEST

/* As root, a file owned by someone else keeps its owner across a rewrite
 * (sudo mcpgw token add must not take the gateway's file away from it). */
START_TEST(replace_keeps_previous_owner)
{
    struct stat st;
    char err[256], p[PATH_MAX];

    if (geteuid() != 0)
        return;
    path_of(p, sizeof(p), "owned.json");
    put("owned.json", "{}", 2, 0600);
    ck_assert_int_eq(chown(p, 65534, 65534), 0);
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(mcpgw_statefile_replace(p, "{ }", 3, &st, "test", err, sizeof(err)), 0);
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_int_eq(st.st_uid, 65534);
    ck_assert_int_eq(st.st_gid, 65534);
}
END_TEST

START_TEST(lock_excludes_other_processes)
{
    char err[256], p[PATH_MAX], lp[PATH_MAX + 8];
    int fd, other, st;
    pid_t pid;

    path_of(p, sizeof(p), "locked.json");
    fd = mcpgw_statefile_lock(p, err, sizeof(err));
    ck_assert_int_ge(fd, 0);
    snprintf(lp, sizeof(lp), "%s.lock", p);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* A second open file description: flock conflicts across them. */
        other = open(lp, O_RDWR | O_CLOEXEC);
        _exit(other >= 0 && flock(other, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK ? 0 : 1);
    }
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(fd);
    /* Released: a new lock is granted, and the lock file is still there. */
    fd = mcpgw_statefile_lock(p, err, sizeof(err));
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(access(lp, F_OK), 0);
    close(fd);
}
END_TEST

static Suite *statefile_suite(void)
{
    Suite *s = suite_create("statefile");
    TCase *tc = tcase_create("statefile");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, read_accepts_private_regular_file);
    tcase_add_test(tc, read_refusals_say_why);
    tcase_add_test(tc, replace_is_private_whole_and_leaves_no_temp);
    tcase_add_test(tc, replace_keeps_previous_owner);
    tcase_add_test(tc, lock_excludes_other_processes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(statefile_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
