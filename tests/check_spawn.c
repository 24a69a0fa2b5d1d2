/* check_spawn.c - what a spawned MCP server gets, and how it fails.
 *
 * Children here are real programs (/bin/sleep, /bin/cat, /usr/bin/env,
 * /bin/sh -c as a probe); the spawner itself never uses a shell.  Properties
 * are read from the outside where possible (/proc/<pid>/fd, status, stat,
 * limits, cmdline), so the probe cannot disturb what it measures.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/limits.h>    /* PATH_MAX; <limits.h> would find shared/limits.h under -Ishared */
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "limits.h"
#include "log.h"
#include "spawn.h"

#define WAIT_MS 5000

static char tmpdir[PATH_MAX];

/* --- helpers -------------------------------------------------------------- */

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* A server entry over borrowed strings; args is NULL-terminated. */
static void server_init(struct mcpgw_conf_server *s, const char *cmd, const char *const *args)
{
    memset(s, 0, sizeof(*s));
    s->id = (char *)"t1";
    s->command = (char *)cmd;
    s->args = (char **)args;
    while (args && args[s->nargs])
        s->nargs++;
}

static void tmp_path(char *out, size_t len, const char *name)
{
    int n = snprintf(out, len, "%s/%s", tmpdir, name);

    ck_assert(n > 0 && (size_t)n < len);
}

static void write_file(const char *name, const char *text, mode_t mode)
{
    char p[PATH_MAX];
    int fd;

    tmp_path(p, sizeof(p), name);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    ck_assert_int_eq(fchmod(fd, mode), 0);
    close(fd);
}

static void setup_tmp(void)
{
    char p[PATH_MAX];

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_spawn.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    tmp_path(p, sizeof(p), "bin");
    ck_assert_int_eq(mkdir(p, 0755), 0);
    tmp_path(p, sizeof(p), "bin2");
    ck_assert_int_eq(mkdir(p, 0755), 0);
    write_file("noexec", "#!/bin/sh\nexit 0\n", 0644);
    write_file("bin2/noexec", "#!/bin/sh\nexit 0\n", 0755);
    write_file("badinterp", "#!/nonexistent/mcpgw-interp\n", 0755);
    write_file("noshebang", "echo hi\n", 0755);
    write_file("bin/tool", "#!/bin/sh\necho \"tool:$PWD\"\n", 0755);
    write_file("bin2/tool", "#!/bin/sh\necho tool2\n", 0755);
    write_file("tool2", "#!/bin/sh\necho \"cwdtool:$PWD\"\n", 0755);
    write_file("afile", "x\n", 0644);
}

static void teardown_tmp(void)
{
    static const char *const files[] = {
        "noexec", "bin2/noexec", "badinterp", "noshebang", "bin/tool",
        "bin2/tool", "tool2", "afile"
    };
    char p[PATH_MAX];
    size_t i;

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        tmp_path(p, sizeof(p), files[i]);
        unlink(p);
    }
    tmp_path(p, sizeof(p), "bin");
    rmdir(p);
    tmp_path(p, sizeof(p), "bin2");
    rmdir(p);
    rmdir(tmpdir);
}

/* Number of fds this process has open. */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;       /* the directory's own fd */
}

/* The fd numbers pid has open, sorted ascending by the kernel's listing. */
static int list_fds(pid_t pid, int *fds, int max)
{
    char p[64];
    DIR *d;
    struct dirent *e;
    int n = 0;

    snprintf(p, sizeof(p), "/proc/%d/fd", (int)pid);
    d = opendir(p);
    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && n < max)
            fds[n++] = atoi(e->d_name);
    closedir(d);
    return n;
}

static bool fds_are_stdio_only(pid_t pid)
{
    int fds[64], n, i;
    bool seen[3] = { false, false, false };

    n = list_fds(pid, fds, 64);
    if (n != 3)
        return false;
    for (i = 0; i < n; i++) {
        if (fds[i] < 0 || fds[i] > 2)
            return false;
        seen[fds[i]] = true;
    }
    return seen[0] && seen[1] && seen[2];
}

/* Read a whole small /proc file into buf (NUL-terminated); length. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n, got = 0;

    if (fd < 0)
        return -1;
    while ((size_t)got < len - 1 && (n = read(fd, buf + got, len - 1 - (size_t)got)) > 0)
        got += n;
    close(fd);
    buf[got] = '\0';
    return got;
}

/* Value of "Key:" in /proc/<pid>/status, into out. */
static bool status_field(pid_t pid, const char *key, char *out, size_t len)
{
    char p[64], buf[8192], *line, *save = NULL;
    size_t klen = strlen(key);

    snprintf(p, sizeof(p), "/proc/%d/status", (int)pid);
    if (read_small(p, buf, sizeof(buf)) <= 0)
        return false;
    for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            const char *v = line + klen + 1;

            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(out, len, "%s", v);
            return true;
        }
    }
    return false;
}

/* Field n (1-based, as in proc(5)) of /proc/<pid>/stat, counted after the
 * parenthesised comm so a comm with spaces cannot shift it. */
static long stat_field(pid_t pid, int n)
{
    char p[64], buf[1024], *s;
    int f;

    snprintf(p, sizeof(p), "/proc/%d/stat", (int)pid);
    ck_assert_int_gt(read_small(p, buf, sizeof(buf)), 0);
    s = strrchr(buf, ')');
    ck_assert_ptr_nonnull(s);
    s += 2;                         /* field 3, state */
    for (f = 3; f < n; f++) {
        s = strchr(s, ' ');
        ck_assert_ptr_nonnull(s);
        s++;
    }
    if (n == 3)
        return *s;
    return strtol(s, NULL, 10);
}

/* Read fd (non-blocking) until EOF or timeout; bytes read. */
static size_t read_all(int fd, char *buf, size_t max, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    size_t got = 0;

    for (;;) {
        struct pollfd pfd = { fd, POLLIN, 0 };
        long left = deadline - now_ms();
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        n = read(fd, buf + got, max - 1 - got);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == max - 1)
            break;
    }
    buf[got] = '\0';
    return got;
}

/* Read one line (up to '\n') from fd; false on timeout or EOF first. */
static bool read_line(int fd, char *buf, size_t max, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;
    size_t got = 0;

    while (got < max - 1) {
        struct pollfd pfd = { fd, POLLIN, 0 };
        long left = deadline - now_ms();
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return false;
        n = read(fd, buf + got, 1);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (n <= 0)
            return false;
        if (buf[got] == '\n') {
            buf[got] = '\0';
            return true;
        }
        got++;
    }
    return false;
}

/* Wait for the child to exit (pidfd if there is one, else polling reap)
 * and reap it.  1 if reaped, 0 on timeout, -errno from reap.  Asserts
 * nothing, so threads and forked helpers may use it. */
static int reap_within(struct mcpgw__child *c, int timeout_ms, int *status)
{
    long deadline = now_ms() + timeout_ms;
    int rc;

    for (;;) {
        rc = mcpgw__child_reap(c, status);
        if (rc != 0)
            return rc;
        if (now_ms() >= deadline)
            return 0;
        if (c->pidfd >= 0) {
            struct pollfd pfd = { c->pidfd, POLLIN, 0 };
            long left = deadline - now_ms();

            poll(&pfd, 1, left > 0 ? (int)left : 0);
        } else {
            sleep_ms(2);
        }
    }
}

static int wait_child(struct mcpgw__child *c, int timeout_ms, int *status)
{
    int rc = reap_within(c, timeout_ms, status);

    ck_assert_int_ge(rc, 0);
    return rc;
}

/* Kill a child we are done with and reap it. */
static void finish_child(struct mcpgw__child *c)
{
    int st;

    if (c->pid > 0) {
        mcpgw__child_signal(c, SIGKILL);
        ck_assert_int_eq(wait_child(c, WAIT_MS, &st), 1);
    }
    mcpgw__child_close_fds(c);
}

/* waitpid with a deadline (for reparented grandchildren). */
static bool waitpid_deadline(pid_t pid, int *st, int timeout_ms)
{
    long deadline = now_ms() + timeout_ms;

    do {
        pid_t r = waitpid(pid, st, WNOHANG);

        if (r > 0)
            return true;
        if (r < 0 && errno != EINTR)
            return false;
        sleep_ms(2);
    } while (now_ms() < deadline);
    return false;
}

/* Whether this kernel (or valgrind, which lacks it) offers pidfd_open. */
static bool have_pidfd(void)
{
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);

    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* Valgrind cannot recover when a traced process's execve fails after its
 * own pre-check passed (a script whose interpreter is missing): it exits
 * 101 instead of returning the error, so that one failure cannot be seen
 * through the errno pipe under it. */
static bool under_valgrind(void)
{
    const char *p = getenv("LD_PRELOAD");

    return p && strstr(p, "vgpreload");
}

static void assert_no_children(void)
{
    int st;

    errno = 0;
    ck_assert_int_eq(waitpid(-1, &st, WNOHANG), -1);
    ck_assert_int_eq(errno, ECHILD);
}

/* Keep a variable of the gateway's environment for restoring (CK_FORK=no
 * runs every test in one process). */
struct saved_env {
    const char *name;
    char *value;
};

static void env_save(struct saved_env *e, const char *name)
{
    const char *v = getenv(name);

    e->name = name;
    e->value = v ? strdup(v) : NULL;
}

static void env_restore(struct saved_env *e)
{
    if (e->value)
        setenv(e->name, e->value, 1);
    else
        unsetenv(e->name);
    free(e->value);
    e->value = NULL;
}

/* --- command lookup ------------------------------------------------------- */

START_TEST(resolve_finds_first_executable_regular_file)
{
    char out[PATH_MAX], exp[PATH_MAX], path[3 * PATH_MAX];
    char longdir[PATH_MAX + 100];

    ck_assert_int_eq(mcpgw__spawn_resolve("sh", "/nonexistent:/bin", out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/bin/sh");

    /* NULL path list: the default PATH. */
    ck_assert_int_eq(mcpgw__spawn_resolve("sh", NULL, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/usr/bin/sh");

    /* First match in PATH order wins. */
    snprintf(path, sizeof(path), "%s/bin:%s/bin2", tmpdir, tmpdir);
    ck_assert_int_eq(mcpgw__spawn_resolve("tool", path, out, sizeof(out)), 0);
    tmp_path(exp, sizeof(exp), "bin/tool");
    ck_assert_str_eq(out, exp);

    /* A non-executable file earlier in PATH is skipped, as execvp does. */
    snprintf(path, sizeof(path), "%s:%s/bin2", tmpdir, tmpdir);
    ck_assert_int_eq(mcpgw__spawn_resolve("noexec", path, out, sizeof(out)), 0);
    tmp_path(exp, sizeof(exp), "bin2/noexec");
    ck_assert_str_eq(out, exp);

    /* An element too long for a path is skipped, not fatal. */
    memset(longdir, 'a', sizeof(longdir) - 1);
    longdir[0] = '/';
    longdir[sizeof(longdir) - 1] = '\0';
    snprintf(path, sizeof(path), "%s:/bin", longdir);
    ck_assert_int_eq(mcpgw__spawn_resolve("sh", path, out, sizeof(out)), 0);
    ck_assert_str_eq(out, "/bin/sh");
}
END_TEST

START_TEST(resolve_empty_path_element_is_current_directory)
{
    static const char *const lists[] = { ":/nonexistent", "/nonexistent:", "/nonexistent::/x" };
    char out[PATH_MAX], oldcwd[PATH_MAX];
    size_t i;

    ck_assert_ptr_nonnull(getcwd(oldcwd, sizeof(oldcwd)));
    ck_assert_int_eq(chdir(tmpdir), 0);
    for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        ck_assert_int_eq(mcpgw__spawn_resolve("tool2", lists[i], out, sizeof(out)), 0);
        ck_assert_str_eq(out, "./tool2");
    }
    /* Without the empty element the current directory is not searched. */
    ck_assert_int_eq(mcpgw__spawn_resolve("tool2", "/nonexistent", out, sizeof(out)), -ENOENT);
    ck_assert_int_eq(chdir(oldcwd), 0);
}
END_TEST

struct resolve_case {
    const char *what;
    const char *cmd;
    const char *path;       /* "@" = tmpdir */
    size_t outlen;
    int rc;
    const char *out;        /* expected on success */
};

static const struct resolve_case resolve_cases[] = {
    { "empty command", "", "/bin", PATH_MAX, -ENOENT, NULL },
    { "not in PATH", "mcpgw-test-no-such-command", "/bin:/usr/bin", PATH_MAX, -ENOENT, NULL },
    { "empty PATH value", "sh", "", PATH_MAX, -ENOENT, NULL },
    { "only non-executable match", "noexec", "@", PATH_MAX, -ENOENT, NULL },
    { "directory of that name", "bin", "@", PATH_MAX, -ENOENT, NULL },
    { "slash: taken as is", "./x/y", "/bin", PATH_MAX, 0, "./x/y" },
    { "absolute: taken as is", "/nonexistent/cmd", "/bin", PATH_MAX, 0, "/nonexistent/cmd" },
    { "output too small", "sh", "/bin", 7, -ENAMETOOLONG, NULL },
    { "output fits exactly", "sh", "/bin", 8, 0, "/bin/sh" },
    { "slash command too long", "/bin/sh", "/bin", 7, -ENAMETOOLONG, NULL },
    { "no output room at all", "sh", "/bin", 0, -ENAMETOOLONG, NULL },
};

START_TEST(resolve_bad_input_table)
{
    const struct resolve_case *t = &resolve_cases[_i];
    char out[PATH_MAX];
    const char *path = strcmp(t->path, "@") == 0 ? tmpdir : t->path;
    int rc;

    memset(out, 'Z', sizeof(out));
    rc = mcpgw__spawn_resolve(t->cmd, path, out, t->outlen);
    ck_assert_msg(rc == t->rc, "%s: got %d, want %d", t->what, rc, t->rc);
    if (t->out)
        ck_assert_str_eq(out, t->out);
}
END_TEST

/* --- what the child gets --------------------------------------------------- */

START_TEST(child_holds_only_stdio_fds)
{
    static const char *const args[] = { "30", NULL };
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    char err[256], p[64], link[256];
    int leak_pipe[2], sock, file, high;
    long deadline;
    bool clean = false;
    int fd;

    /* Leaks waiting to happen: no O_CLOEXEC on any of them. */
    ck_assert_int_eq(pipe(leak_pipe), 0);
    sock = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(sock, 0);
    file = open("/dev/null", O_RDONLY);
    ck_assert_int_ge(file, 0);
    high = dup2(file, 900);
    ck_assert_int_eq(high, 900);

    server_init(&s, "/bin/sleep", args);
    ck_assert_int_eq(mcpgw__spawn(&s, &c, err, sizeof(err)), 0);

    /* The dynamic loader may hold a library fd for a moment after exec; an
     * inherited fd would stay forever, so waiting for {0,1,2} is sound. */
    deadline = now_ms() + WAIT_MS;
    while (!(clean = fds_are_stdio_only(c.pid)) && now_ms() < deadline)
        sleep_ms(5);
    ck_assert_msg(clean, "child holds fds beyond 0, 1, 2");

    for (fd = 0; fd <= 2; fd++) {
        ssize_t n;

        snprintf(p, sizeof(p), "/proc/%d/fd/%d", (int)c.pid, fd);
        n = readlink(p, link, sizeof(link) - 1);
        ck_assert_int_gt(n, 0);
        link[n] = '\0';
        ck_assert_msg(strncmp(link, "pipe:", 5) == 0, "fd %d is %s, not a pipe", fd, link);
    }

    finish_child(&c);
    close(leak_pipe[0]);
    close(leak_pipe[1]);
    close(sock);
    close(file);
    close(high);
}
END_TEST

START_TEST(parent_ends_nonblocking_cloexec_child_stdio_blocking)
{
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    char err[256], p[64], buf[512], *f;
    int fds[4], i, st;

    server_init(&s, "cat", NULL);
    ck_assert_int_eq(mcpgw__spawn(&s, &c, err, sizeof(err)), 0);
    fds[0] = c.in_fd;
    fds[1] = c.out_fd;
    fds[2] = c.err_fd;
    fds[3] = c.pidfd;
    for (i = 0; i < 4; i++) {
        if (fds[i] < 0)
            continue;           /* pidfd -1: kernel without pidfd_open */
        ck_assert_int_gt(fds[i], 2);
        ck_assert_int_eq(fcntl(fds[i], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
        if (i < 3)
            ck_assert_int_eq(fcntl(fds[i], F_GETFL) & O_NONBLOCK, O_NONBLOCK);
    }

    /* Servers expect ordinary blocking stdio. */
    for (i = 0; i <= 2; i++) {
        long flags;

        snprintf(p, sizeof(p), "/proc/%d/fdinfo/%d", (int)c.pid, i);
        ck_assert_int_gt(read_small(p, buf, sizeof(buf)), 0);
        f = strstr(buf, "flags:");
        ck_assert_ptr_nonnull(f);
        flags = strtol(f + 6, NULL, 8);
        ck_assert_msg((flags & O_NONBLOCK) == 0, "child fd %d is non-blocking", i);
    }

    /* And the pipes are wired: stdin in, stdout out, EOF ends it. */
    ck_assert_int_eq(write(c.in_fd, "hello\n", 6), 6);
    ck_assert(read_line(c.out_fd, buf, sizeof(buf), WAIT_MS));
    ck_assert_str_eq(buf, "hello");
    close(c.in_fd);
    c.in_fd = -1;
    ck_assert_int_eq(wait_child(&c, WAIT_MS, &st), 1);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    mcpgw__child_close_fds(&c);
    ck_assert_int_eq(c.out_fd, -1);
    ck_assert_int_eq(c.err_fd, -1);
    ck_assert_int_eq(c.pidfd, -1);
}
END_TEST

START_TEST(argv_is_verbatim_with_command_as_written)
{
    static const char *const sleep_args[] = { "30", NULL };
    static const char *const sh_args[] = {
        "-c", "printf '[%s]' \"$0\" \"$@\"", "zero", "a b", "", "c*", "$HOME", NULL
    };
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    char err[256], p[64], buf[512];
    ssize_t n;
    int st;

    /* argv[0] is "sleep" as configured, not the resolved path. */
    server_init(&s, "sleep", sleep_args);
    ck_assert_int_eq(mcpgw__spawn(&s, &c, err, sizeof(err)), 0);
    snprintf(p, sizeof(p), "/proc/%d/cmdline", (int)c.pid);
    n = read_small(p, buf, sizeof(buf));
    ck_assert_int_eq(n, 9);
    ck_assert_mem_eq(buf, "sleep\0" "30\0", 9);
    finish_child(&c);

    /* No word splitting, globbing or expansion on the way. */
    server_init(&s, "/bin/sh", sh_args);
    ck_assert_int_eq(mcpgw__spawn(&s, &c, err, sizeof(err)), 0);
    read_all(c.out_fd, buf, sizeof(buf), WAIT_MS);
    ck_assert_str_eq(buf, "[zero][a b][][c*][$HOME]");
    ck_assert_int_eq(wait_child(&c, WAIT_MS, &st), 1);
    mcpgw__child_close_fds(&c);
}
END_TEST

/* Runs /usr/bin/env for s and collects its lines, sorted by the caller. */
static int env_lines(const struct mcpgw_conf_server *s, char lines[][256], int max)
{
    struct mcpgw__child c;
    char err[256], buf[8192], *line, *save = NULL;
    int n = 0, st;

    ck_assert_msg(mcpgw__spawn(s, &c, err, sizeof(err)) == 0, "%s", err);
    read_all(c.out_fd, buf, sizeof(buf), WAIT_MS);
    ck_assert_int_eq(wait_child(&c, WAIT_MS, &st), 1);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    mcpgw__child_close_fds(&c);
    for (line = strtok_r(buf, "\n", &save); line && n < max; line = strtok_r(NULL, "\n", &save))
        snprintf(lines[n++], 256, "%s", line);
    return n;
}

static bool has_line(char lines[][256], int n, const char *want)
{
    int i;

    for (i = 0; i < n; i++)
        if (strcmp(lines[i], want) == 0)
            return true;
    return false;
}

static const char *const hostile_env[] = {
    "HTTP_PROXY", "CONTENT_LENGTH", "REMOTE_ADDR", "LD_FOO", "MCPGW_SECRET",
    "QUERY_STRING", "HTTP_AUTHORIZATION"
};
#define N_HOSTILE (sizeof(hostile_env) / sizeof(hostile_env[0]))

START_TEST(environment_is_allow_list_plus_configured)
{
    struct mcpgw_conf_env env[] = {
        { (char *)"FOO", (char *)"bar" },
        { (char *)"EMPTY", (char *)"" },
        { (char *)"WITH_EQ", (char *)"a=b" },
    };
    struct saved_env saved[3];
    struct mcpgw_conf_server s;
    char lines[64][256];
    size_t i;
    int n;

    env_save(&saved[0], "PATH");
    env_save(&saved[1], "HOME");
    env_save(&saved[2], "LANG");
    for (i = 0; i < N_HOSTILE; i++)
        setenv(hostile_env[i], "http://evil.example:3128", 1);
    setenv("PATH", "/usr/bin:/bin", 1);
    setenv("HOME", "/home/gw", 1);
    setenv("LANG", "C.UTF-8", 1);

    server_init(&s, "/usr/bin/env", NULL);
    s.env = env;
    s.nenv = 3;
    n = env_lines(&s, lines, 64);
    ck_assert_int_eq(n, 6);
    ck_assert(has_line(lines, n, "PATH=/usr/bin:/bin"));
    ck_assert(has_line(lines, n, "HOME=/home/gw"));
    ck_assert(has_line(lines, n, "LANG=C.UTF-8"));
    ck_assert(has_line(lines, n, "FOO=bar"));
    ck_assert(has_line(lines, n, "EMPTY="));
    ck_assert(has_line(lines, n, "WITH_EQ=a=b"));

    for (i = 0; i < N_HOSTILE; i++)
        unsetenv(hostile_env[i]);
    for (i = 0; i < 3; i++)
        env_restore(&saved[i]);
}
END_TEST

START_TEST(environment_config_overrides_and_defaults)
{
    struct mcpgw_conf_env env[] = {
        { (char *)"PATH", (char *)"/nonexistent:/usr/bin" },
        { (char *)"HOME", (char *)"/srv/memory" },
        { (char *)"X", (char *)"1" },
        { (char *)"X", (char *)"2" },       /* a later entry wins */
    };
    struct saved_env saved[3];
    struct mcpgw_conf_server s;
    char lines[64][256];
    int n, i;

    env_save(&saved[0], "PATH");
    env_save(&saved[1], "HOME");
    env_save(&saved[2], "LANG");
    setenv("PATH", "/bin", 1);
    setenv("HOME", "/home/gw", 1);
    unsetenv("LANG");

    /* Configured values replace the gateway's, once each; unset LANG stays
     * unset; "env" is looked up in the child's PATH, not the gateway's. */
    server_init(&s, "env", NULL);
    s.env = env;
    s.nenv = 4;
    n = env_lines(&s, lines, 64);
    ck_assert_int_eq(n, 3);
    ck_assert(has_line(lines, n, "PATH=/nonexistent:/usr/bin"));
    ck_assert(has_line(lines, n, "HOME=/srv/memory"));
    ck_assert(has_line(lines, n, "X=2"));

    /* Nothing set in the gateway: only the default PATH. */
    unsetenv("PATH");
    unsetenv("HOME");
    server_init(&s, "/usr/bin/env", NULL);
    n = env_lines(&s, lines, 64);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(lines[0], "PATH=/usr/local/bin:/usr/bin:/bin");

    for (i = 0; i < 3; i++)
        env_restore(&saved[i]);
}
END_TEST

static void on_term(int sig)
{
    (void)sig;
}

START_TEST(signals_default_own_group_no_core)
{
    static const char *const args[] = { "30", NULL };
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    struct sigaction sa, old_pipe, old_hup, old_term;
    struct rlimit old_core, big = { RLIM_INFINITY, RLIM_INFINITY };
    sigset_t block, old_mask;
    char err[256], val[64], hard[64], p[64], buf[4096], *line;

    /* The gateway's own state that must not leak: ignored SIGPIPE and
     * SIGHUP, a handled SIGTERM, blocked SIGUSR1/2, core dumps allowed. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);
    sigaction(SIGHUP, &sa, &old_hup);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, &old_term);
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &block, &old_mask);
    getrlimit(RLIMIT_CORE, &old_core);
    if (setrlimit(RLIMIT_CORE, &big) < 0) {
        big.rlim_cur = old_core.rlim_max;
        setrlimit(RLIMIT_CORE, &big);
    }
    ck_assert(status_field(getpid(), "SigIgn", val, sizeof(val)));
    ck_assert_str_ne(val, "0000000000000000");

    server_init(&s, "/bin/sleep", args);
    ck_assert_int_eq(mcpgw__spawn(&s, &c, err, sizeof(err)), 0);

    ck_assert(status_field(c.pid, "SigIgn", val, sizeof(val)));
    ck_assert_str_eq(val, "0000000000000000");
    ck_assert(status_field(c.pid, "SigBlk", val, sizeof(val)));
    ck_assert_str_eq(val, "0000000000000000");

    /* Own process group; same session (not a daemon of its own). */
    ck_assert_int_eq(stat_field(c.pid, 5), c.pid);
    ck_assert_int_eq(stat_field(c.pid, 6), getsid(0));
    ck_assert_int_ne(getpgrp(), c.pid);

    snprintf(p, sizeof(p), "/proc/%d/limits", (int)c.pid);
    ck_assert_int_gt(read_small(p, buf, sizeof(buf)), 0);
    line = strstr(buf, "Max core file size");
    ck_assert_ptr_nonnull(line);
    ck_assert_int_eq(sscanf(line, "Max core file size %63s %63s", val, hard), 2);
    ck_assert_str_eq(val, "0");
    ck_assert_str_eq(hard, "0");

    finish_child(&c);
    sigaction(SIGPIPE, &old_pipe, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    setrlimit(RLIMIT_CORE, &old_core);
}
END_TEST

/* "Max open files  64  64  files" -> soft and hard, as text. */
static void limit_of(pid_t pid, const char *name, char *soft, char *hard)
{
    char p[64], buf[4096], *line;

    snprintf(p, sizeof(p), "/proc/%d/limits", (int)pid);
    ck_assert_int_gt(read_small(p, buf, sizeof(buf)), 0);
    line = strstr(buf, name);
    ck_assert_msg(line != NULL, "no '%s' in %s", name, p);
    ck_assert_int_eq(sscanf(line + strlen(name), " %63s %63s", soft, hard), 2);
}

START_TEST(no_new_privs_and_configured_resource_limits)
{
    static const char *const args[] = { "30", NULL };
    static const struct {
        const char *name, *value;
    } want[] = {
        { "Max open files", "64" },
        { "Max data size", "268435456" },
        { "Max processes", "4096" },
        { "Max cpu time", "600" },
        { "Max core file size", "0" },
    };
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    char err[256], val[64], soft[64], hard[64];

    server_init(&s, "/bin/sleep", args);
    s.max_open_files = 64;
    s.max_memory_bytes = 256LL << 20;
    s.max_processes = 4096;
    s.max_cpu_seconds = 600;
    ck_assert_msg(mcpgw__spawn(&s, &c, err, sizeof(err)) == 0, "%s", err);
    ck_assert(status_field(c.pid, "NoNewPrivs", val, sizeof(val)));
    ck_assert_str_eq(val, "1");
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        limit_of(c.pid, want[i].name, soft, hard);
        ck_assert_msg(strcmp(soft, want[i].value) == 0 && strcmp(hard, want[i].value) == 0,
                      "%s: %s %s, want %s", want[i].name, soft, hard, want[i].value);
    }
    finish_child(&c);

    /* Unset limits are inherited, and no_new_privs holds without any. */
    server_init(&s, "/bin/sleep", args);
    ck_assert_msg(mcpgw__spawn(&s, &c, err, sizeof(err)) == 0, "%s", err);
    ck_assert(status_field(c.pid, "NoNewPrivs", val, sizeof(val)));
    ck_assert_str_eq(val, "1");
    {
        struct rlimit ours;
        char exp[64];

        getrlimit(RLIMIT_NOFILE, &ours);
        limit_of(c.pid, "Max open files", soft, hard);
        snprintf(exp, sizeof(exp), "%llu", (unsigned long long)ours.rlim_cur);
        ck_assert_str_eq(soft, exp);
    }
    finish_child(&c);
}
END_TEST

/* As root the child runs as the configured user with that user's groups
 * and HOME; as anyone else asking for another user is refused with a
 * message that says why.  An unknown user is refused either way. */
START_TEST(runs_as_configured_user)
{
    static const char *const args[] = { "30", NULL };
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    struct passwd *nobody = getpwnam("nobody");
    char err[256], val[128], want[128], lines[64][256], home[PATH_MAX + 8];
    int n;

    server_init(&s, "/bin/sleep", args);
    s.user = (char *)"no-such-user-mcpgw";
    ck_assert_int_eq(mcpgw__spawn(&s, &c, err, sizeof(err)), -ENOENT);
    ck_assert_msg(strstr(err, "cannot run as user 'no-such-user-mcpgw'") &&
                  strstr(err, "no such user"), "%s", err);
    ck_assert_int_eq(c.pid, 0);

    ck_assert_ptr_nonnull(nobody);
    s.user = (char *)"nobody";
    if (geteuid() != 0) {
        ck_assert_int_eq(mcpgw__spawn(&s, &c, err, sizeof(err)), -EPERM);
        ck_assert_msg(strstr(err, "not running as root"), "%s", err);
        return;
    }
    ck_assert_msg(mcpgw__spawn(&s, &c, err, sizeof(err)) == 0, "%s", err);
    snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", nobody->pw_uid, nobody->pw_uid,
             nobody->pw_uid, nobody->pw_uid);
    ck_assert(status_field(c.pid, "Uid", val, sizeof(val)));
    ck_assert_str_eq(val, want);
    snprintf(want, sizeof(want), "%u\t%u\t%u\t%u", nobody->pw_gid, nobody->pw_gid,
             nobody->pw_gid, nobody->pw_gid);
    ck_assert(status_field(c.pid, "Gid", val, sizeof(val)));
    ck_assert_str_eq(val, want);
    /* root's supplementary groups are gone: only nobody's own remain. */
    ck_assert(status_field(c.pid, "Groups", val, sizeof(val)));
    {
        char *save = NULL;

        for (char *g = strtok_r(val, " ", &save); g; g = strtok_r(NULL, " ", &save))
            ck_assert_msg(strtoul(g, NULL, 10) != 0, "the child kept root's group 0");
    }
    ck_assert(status_field(c.pid, "NoNewPrivs", val, sizeof(val)));
    ck_assert_str_eq(val, "1");
    finish_child(&c);

    server_init(&s, "/usr/bin/env", NULL);
    s.user = (char *)"nobody";
    n = env_lines(&s, lines, 64);
    snprintf(home, sizeof(home), "HOME=%s", nobody->pw_dir);
    ck_assert(has_line(lines, n, home));
}
END_TEST

START_TEST(cwd_and_relative_commands_follow_it)
{
    static const char *const no_args[] = { NULL };
    struct mcpgw_conf_env env_rel[] = { { (char *)"PATH", (char *)"bin:/usr/bin" } };
    struct mcpgw_conf_env env_empty[] = { { (char *)"PATH", (char *)":/usr/bin" } };
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    char err[256], buf[PATH_MAX + 64], real[PATH_MAX], want[PATH_MAX + 64];
    int st;

    ck_assert_ptr_nonnull(realpath(tmpdir, real));

    server_init(&s, "/bin/pwd", no_args);
    s.cwd = tmpdir;
    ck_assert_int_eq(mcpgw__spawn(&s, &c, err, sizeof(err)), 0);
    read_all(c.out_fd, buf, sizeof(buf), WAIT_MS);
    ck_assert_int_eq(wait_child(&c, WAIT_MS, &st), 1);
    mcpgw__child_close_fds(&c);
    snprintf(want, sizeof(want), "%s\n", real);
    ck_assert_str_eq(buf, want);

    /* "bin/tool" means <cwd>/bin/tool, as in a shell started there. */
    server_init(&s, "bin/tool", no_args);
    s.cwd = tmpdir;
    ck_assert_msg(mcpgw__spawn(&s, &c, err, sizeof(err)) == 0, "%s", err);
    read_all(c.out_fd, buf, sizeof(buf), WAIT_MS);
    ck_assert_int_eq(wait_child(&c, WAIT_MS, &st), 1);
    mcpgw__child_close_fds(&c);
    snprintf(want, sizeof(want), "tool:%s\n", tmpdir);
    ck_assert_str_eq(buf, want);

    /* A relative PATH element is relative to the cwd too. */
    server_init(&s, "tool", no_args);
    s.cwd = tmpdir;
    s.env = env_rel;
    s.nenv = 1;
    ck_assert_msg(mcpgw__spawn(&s, &c, err, sizeof(err)) == 0, "%s", err);
    read_all(c.out_fd, buf, sizeof(buf), WAIT_MS);
    ck_assert_int_eq(wait_child(&c, WAIT_MS, &st), 1);
    mcpgw__child_close_fds(&c);
    ck_assert_str_eq(buf, want);

    /* And so is an empty one. */
    server_init(&s, "tool2", no_args);
    s.cwd = tmpdir;
    s.env = env_empty;
    s.nenv = 1;
    ck_assert_msg(mcpgw__spawn(&s, &c, err, sizeof(err)) == 0, "%s", err);
    read_all(c.out_fd, buf, sizeof(buf), WAIT_MS);
    ck_assert_int_eq(wait_child(&c, WAIT_MS, &st), 1);
    mcpgw__child_close_fds(&c);
    snprintf(want, sizeof(want), "cwdtool:%s\n", tmpdir);
    ck_assert_str_eq(buf, want);
}
END_TEST

/* --- failures --------------------------------------------------------------- */

struct fail_case {
    const char *what;
    const char *cmd;        /* "@x": <tmpdir>/x */
    const char *cwd;        /* "@x": <tmpdir>/x */
    const char *env_name, *env_value;
    int special;            /* 1: NULL command, 2: too many args, 3: too many env,
                               4: exec fails past valgrind's pre-check */
    int rc;
    const char *msg;        /* expected in err; "@x" expands */
};

static const struct fail_case fail_cases[] = {
    { "not in PATH", "mcpgw-test-no-such-command", NULL, NULL, NULL, 0, -ENOENT,
      "cannot run 'mcpgw-test-no-such-command' for server 't1': command not found in PATH" },
    { "not in the child's PATH", "env", NULL, "PATH", "/nonexistent", 0, -ENOENT,
      "cannot run 'env'" },
    { "absolute, missing", "/nonexistent/mcpgw-cmd", NULL, NULL, NULL, 0, -ENOENT,
      "cannot run '/nonexistent/mcpgw-cmd' for server 't1': No such file or directory" },
    { "not executable", "@noexec", NULL, NULL, NULL, 0, -EACCES, "'@noexec'" },
    { "a directory", "/tmp", NULL, NULL, NULL, 0, -EACCES, "cannot run '/tmp'" },
    { "bad interpreter", "@badinterp", NULL, NULL, NULL, 4, -ENOENT, "'@badinterp'" },
    { "no shebang, no shell fallback", "@noshebang", NULL, NULL, NULL, 0, -ENOEXEC,
      "'@noshebang'" },
    { "missing cwd", "/bin/true", "/nonexistent-mcpgw-dir", NULL, NULL, 0, -ENOENT,
      "cannot chdir to '/nonexistent-mcpgw-dir' for server 't1': No such file or directory" },
    { "cwd is a file", "/bin/true", "@afile", NULL, NULL, 0, -ENOTDIR,
      "cannot chdir to '@afile'" },
    { "relative cwd", "/bin/true", "relative/dir", NULL, NULL, 0, -EINVAL,
      "cannot chdir to 'relative/dir'" },
    { "empty command", "", NULL, NULL, NULL, 0, -EINVAL, "for server 't1'" },
    { "NULL command", NULL, NULL, NULL, NULL, 1, -EINVAL, "for server 't1'" },
    { "env name with '='", "/bin/true", NULL, "A=B", "x", 0, -EINVAL, "environment" },
    { "empty env name", "/bin/true", NULL, "", "x", 0, -EINVAL, "environment" },
    { "NULL env value", "/bin/true", NULL, "A", NULL, 0, -EINVAL, "environment" },
    { "too many args", "/bin/true", NULL, NULL, NULL, 2, -E2BIG, "too many" },
    { "too many env entries", "/bin/true", NULL, NULL, NULL, 3, -E2BIG, "too many" },
};

static void expand(char *out, size_t len, const char *in)
{
    const char *at = in ? strchr(in, '@') : NULL;
    int n;

    if (!in) {
        out[0] = '\0';
        return;
    }
    /* "...@name'..." -> "...<tmpdir>/name'..." */
    if (at)
        n = snprintf(out, len, "%.*s%s/%s", (int)(at - in), in, tmpdir, at + 1);
    else
        n = snprintf(out, len, "%s", in);
    ck_assert(n >= 0 && (size_t)n < len);
}

START_TEST(spawn_failure_table)
{
    const struct fail_case *t = &fail_cases[_i];
    static char *many_args[MCPGW_ARGS_MAX + 2];
    static struct mcpgw_conf_env many_env[MCPGW_ENV_MAX + 1];
    struct mcpgw_conf_env one_env;
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    char cmd[PATH_MAX], cwd[PATH_MAX], msg[PATH_MAX], err[512];
    int before, rc;
    size_t i;

    if (t->special == 4 && under_valgrind())
        return;
    expand(cmd, sizeof(cmd), t->cmd);
    expand(cwd, sizeof(cwd), t->cwd);
    expand(msg, sizeof(msg), t->msg);
    server_init(&s, t->special == 1 ? NULL : cmd, NULL);
    if (t->special == 1)
        s.command = NULL;
    if (t->cwd)
        s.cwd = cwd;
    if (t->env_name) {
        one_env.name = (char *)t->env_name;
        one_env.value = (char *)t->env_value;
        s.env = &one_env;
        s.nenv = 1;
    }
    if (t->special == 2) {
        for (i = 0; i < MCPGW_ARGS_MAX + 1; i++)
            many_args[i] = (char *)"x";
        s.args = many_args;
        s.nargs = MCPGW_ARGS_MAX + 1;
    }
    if (t->special == 3) {
        for (i = 0; i < MCPGW_ENV_MAX + 1; i++) {
            many_env[i].name = (char *)"X";
            many_env[i].value = (char *)"1";
        }
        s.env = many_env;
        s.nenv = MCPGW_ENV_MAX + 1;
    }

    before = count_fds();
    memset(&c, 0x55, sizeof(c));
    rc = mcpgw__spawn(&s, &c, err, sizeof(err));
    ck_assert_msg(rc == t->rc, "%s: got %d (%s), want %d", t->what, rc, err, t->rc);
    ck_assert_msg(strstr(err, msg) != NULL, "%s: message '%s' lacks '%s'", t->what, err, msg);
    ck_assert_int_eq(c.pid, 0);
    ck_assert_int_eq(c.pidfd, -1);
    ck_assert_int_eq(c.in_fd, -1);
    ck_assert_int_eq(c.out_fd, -1);
    ck_assert_int_eq(c.err_fd, -1);
    ck_assert_int_eq(count_fds(), before);
    assert_no_children();
}
END_TEST

START_TEST(spawn_failure_message_is_cut_to_errlen)
{
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    char err[16];

    server_init(&s, "mcpgw-test-no-such-command", NULL);
    memset(err, 'Z', sizeof(err));
    ck_assert_int_eq(mcpgw__spawn(&s, &c, err, sizeof(err)), -ENOENT);
    ck_assert_uint_eq(strlen(err), sizeof(err) - 1);
    /* NULL err is fine too. */
    ck_assert_int_eq(mcpgw__spawn(&s, &c, NULL, 0), -ENOENT);
    ck_assert_int_eq(mcpgw__spawn(NULL, &c, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(mcpgw__spawn(&s, NULL, err, sizeof(err)), -EINVAL);
    assert_no_children();
}
END_TEST

/* --- watching and reaping ------------------------------------------------------ */

START_TEST(pidfd_readable_on_exit_and_reap_status)
{
    static const char *const exit3[] = { "-c", "exit 3", NULL };
    static const char *const args[] = { "30", NULL };
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    struct pollfd pfd;
    char err[256], buf[64];
    bool pidfd = have_pidfd();
    int st = -1;

    server_init(&s, "/bin/sh", exit3);
    ck_assert_int_eq(mcpgw__spawn(&s, &c, err, sizeof(err)), 0);
    if (!pidfd) {
        /* The documented fallback: no pidfd, the caller polls reap. */
        ck_assert_int_eq(c.pidfd, -1);
        ck_assert_int_eq(wait_child(&c, WAIT_MS, &st), 1);
    } else {
        ck_assert_int_gt(c.pidfd, 2);
        pfd.fd = c.pidfd;
        pfd.events = POLLIN;
        ck_assert_int_eq(poll(&pfd, 1, WAIT_MS), 1);
        ck_assert(pfd.revents & POLLIN);
        ck_assert_int_eq(mcpgw__child_reap(&c, &st), 1);
    }
    ck_assert(WIFEXITED(st));
    ck_assert_int_eq(WEXITSTATUS(st), 3);
    ck_assert_str_eq(mcpgw__wait_status_str(st, buf, sizeof(buf)), "exited with status 3");
    ck_assert_int_eq(c.pid, 0);
    ck_assert_int_eq(c.pidfd, -1);
    ck_assert_int_eq(mcpgw__child_reap(&c, &st), -ECHILD);
    ck_assert_int_eq(mcpgw__child_signal(&c, SIGTERM), -ESRCH);
    mcpgw__child_close_fds(&c);

    /* Running: not readable, reap says 0; killed: readable, status says so. */
    server_init(&s, "/bin/sleep", args);
    ck_assert_int_eq(mcpgw__spawn(&s, &c, err, sizeof(err)), 0);
    ck_assert_int_eq(mcpgw__child_reap(&c, &st), 0);
    ck_assert_int_gt(c.pid, 0);
    if (pidfd) {
        pfd.fd = c.pidfd;
        ck_assert_int_eq(poll(&pfd, 1, 0), 0);
    }
    ck_assert_int_eq(mcpgw__child_signal(&c, SIGKILL), 0);
    if (pidfd) {
        ck_assert_int_eq(poll(&pfd, 1, WAIT_MS), 1);
        ck_assert_int_eq(mcpgw__child_reap(&c, &st), 1);
    } else {
        ck_assert_int_eq(wait_child(&c, WAIT_MS, &st), 1);
    }
    ck_assert(WIFSIGNALED(st));
    ck_assert_str_eq(mcpgw__wait_status_str(st, buf, sizeof(buf)),
                     "killed by signal 9 (SIGKILL)");
    mcpgw__child_close_fds(&c);
    assert_no_children();
}
END_TEST

START_TEST(reap_after_foreign_waitpid_forgets_pid)
{
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    char err[256];
    int st;

    server_init(&s, "/bin/true", NULL);
    ck_assert_int_eq(mcpgw__spawn(&s, &c, err, sizeof(err)), 0);
    ck_assert_int_eq(waitpid(c.pid, &st, 0), c.pid);
    /* Someone else reaped it: the pid may be reused, so it must be gone. */
    ck_assert_int_eq(mcpgw__child_reap(&c, &st), -ECHILD);
    ck_assert_int_eq(c.pid, 0);
    ck_assert_int_eq(c.pidfd, -1);
    ck_assert_int_eq(mcpgw__child_signal(&c, SIGKILL), -ESRCH);
    mcpgw__child_close_fds(&c);
    mcpgw__child_close_fds(&c);     /* idempotent */
    mcpgw__child_close_fds(NULL);
}
END_TEST

START_TEST(signal_refuses_pid_0_and_1)
{
    struct mcpgw__child c = { 0, -1, -1, -1, -1 };
    int st;

    /* kill(-0) would hit our own group, kill(-1) everything. */
    ck_assert_int_eq(mcpgw__child_signal(&c, SIGKILL), -ESRCH);
    c.pid = 1;
    ck_assert_int_eq(mcpgw__child_signal(&c, SIGKILL), -ESRCH);
    c.pid = -1;
    ck_assert_int_eq(mcpgw__child_signal(&c, SIGKILL), -ESRCH);
    ck_assert_int_eq(mcpgw__child_reap(&c, &st), -ECHILD);
    ck_assert_int_eq(mcpgw__child_signal(NULL, SIGKILL), -ESRCH);
    ck_assert_int_eq(mcpgw__child_reap(NULL, &st), -ECHILD);
}
END_TEST

struct status_case {
    int status;
    const char *text;
};

static const struct status_case status_cases[] = {
    { 0x0000, "exited with status 0" },
    { 0x0300, "exited with status 3" },
    { 0x7f00, "exited with status 127" },
    { 0x0009, "killed by signal 9 (SIGKILL)" },
    { 0x000f, "killed by signal 15 (SIGTERM)" },
    { 0x008b, "killed by signal 11 (SIGSEGV) (core dumped)" },
    { 0x137f, "stopped by signal 19" },
};

START_TEST(wait_status_str_table)
{
    const struct status_case *t = &status_cases[_i];
    char buf[64];

    ck_assert_str_eq(mcpgw__wait_status_str(t->status, buf, sizeof(buf)), t->text);
}
END_TEST

START_TEST(wait_status_str_small_buffers)
{
    char buf[8];

    ck_assert_str_eq(mcpgw__wait_status_str(0x0009, buf, sizeof(buf)), "killed ");
    ck_assert_str_eq(mcpgw__wait_status_str(0, buf, 0), "");
    ck_assert_str_eq(mcpgw__wait_status_str(0, NULL, 10), "");
}
END_TEST

/* --- process groups and parent death -------------------------------------------- */

START_TEST(group_signal_reaches_grandchildren)
{
    /* Like npx: the leader keeps a grandchild running.  The leader execs
     * sleep, which never reaps, so the grandchild's fate is ours to see. */
    static const char *const args[] = { "-c", "sleep 100 & echo $!; exec sleep 100", NULL };
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    char err[256], line[64];
    pid_t grandchild;
    int st;

    /* Orphaned grandchildren come to us, so they can be waited for. */
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    server_init(&s, "/bin/sh", args);
    ck_assert_int_eq(mcpgw__spawn(&s, &c, err, sizeof(err)), 0);
    ck_assert(read_line(c.out_fd, line, sizeof(line), WAIT_MS));
    grandchild = (pid_t)atoi(line);
    ck_assert_int_gt(grandchild, 1);
    ck_assert_int_eq(stat_field(grandchild, 4), c.pid);     /* ppid */
    ck_assert_int_eq(stat_field(grandchild, 5), c.pid);     /* pgrp */

    ck_assert_int_eq(mcpgw__child_signal(&c, SIGTERM), 0);
    ck_assert_int_eq(wait_child(&c, WAIT_MS, &st), 1);
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
    ck_assert(waitpid_deadline(grandchild, &st, WAIT_MS));
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
    assert_no_children();
    mcpgw__child_close_fds(&c);
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
}
END_TEST

static void *spawn_and_leave(void *arg)
{
    static const char *const args[] = { "30", NULL };
    struct mcpgw__child *c = arg;
    struct mcpgw_conf_server s;
    char err[256];

    server_init(&s, "/bin/sleep", args);
    if (mcpgw__spawn(&s, c, err, sizeof(err)) < 0)
        c->pid = -1;
    return NULL;
}

START_TEST(child_dies_with_spawning_thread)
{
    struct mcpgw__child c;
    pthread_t th;
    int st;

    /* Why spawn.h says "from the long-lived loop thread only". */
    ck_assert_int_eq(pthread_create(&th, NULL, spawn_and_leave, &c), 0);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_int_gt(c.pid, 0);
    ck_assert_int_eq(wait_child(&c, WAIT_MS, &st), 1);
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    mcpgw__child_close_fds(&c);
}
END_TEST

START_TEST(child_dies_with_gateway_process)
{
    int report[2], st;
    pid_t gw, server = 0;

    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    ck_assert_int_eq(pipe2(report, O_CLOEXEC), 0);
    gw = fork();
    ck_assert_int_ge(gw, 0);
    if (gw == 0) {
        struct mcpgw__child c;

        spawn_and_leave(&c);
        if (write(report[1], &c.pid, sizeof(c.pid)) != sizeof(c.pid))
            _exit(2);
        _exit(0);       /* a crash, as far as the child can tell */
    }
    close(report[1]);
    ck_assert_int_eq(read(report[0], &server, sizeof(server)), sizeof(server));
    close(report[0]);
    ck_assert_int_gt(server, 0);
    ck_assert(waitpid_deadline(gw, &st, WAIT_MS));
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    ck_assert(waitpid_deadline(server, &st, WAIT_MS));
    ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 0), 0);
}
END_TEST

/* --- a gateway started with stdio closed ------------------------------------------ */

/* Each check in the closed-stdio process exits with its own code. */
static int closed_stdio_run(int lowest_closed)
{
    static const char *const args[] = {
        "-c", "read line; echo \"got:$line\"; echo \"err:$line\" >&2", NULL
    };
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    char err[256], buf[64];
    int fd, st;

    for (fd = lowest_closed; fd <= 2; fd++)
        close(fd);
    server_init(&s, "/bin/sh", args);
    if (mcpgw__spawn(&s, &c, err, sizeof(err)) != 0)
        return 10;
    if (c.in_fd <= 2 || c.out_fd <= 2 || c.err_fd <= 2 || (c.pidfd >= 0 && c.pidfd <= 2))
        return 11;
    /* Nothing of ours was left on the closed slots. */
    for (fd = lowest_closed; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
            return 12;
    if (write(c.in_fd, "hi\n", 3) != 3)
        return 13;
    if (!read_line(c.out_fd, buf, sizeof(buf), WAIT_MS) || strcmp(buf, "got:hi") != 0)
        return 14;
    if (!read_line(c.err_fd, buf, sizeof(buf), WAIT_MS) || strcmp(buf, "err:hi") != 0)
        return 15;
    if (reap_within(&c, WAIT_MS, &st) != 1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return 16;
    mcpgw__child_close_fds(&c);
    return 0;
}

START_TEST(works_when_gateway_stdio_is_closed)
{
    /* _i = 0: stdout and stderr closed (FastCGI); 1: all three closed. */
    int lowest = _i == 0 ? 1 : 0;
    pid_t pid;
    int st;

    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(closed_stdio_run(lowest));
    ck_assert(waitpid_deadline(pid, &st, 2 * WAIT_MS));
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "closed-stdio check failed with code %d", WEXITSTATUS(st));
}
END_TEST

/* --- load ------------------------------------------------------------------------ */

START_TEST(many_spawns_leak_nothing)
{
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    char err[256];
    int before, i, st;

    server_init(&s, "/bin/true", NULL);
    before = count_fds();
    for (i = 0; i < 200; i++) {
        ck_assert_msg(mcpgw__spawn(&s, &c, err, sizeof(err)) == 0, "spawn %d: %s", i, err);
        ck_assert_int_eq(wait_child(&c, WAIT_MS, &st), 1);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        mcpgw__child_close_fds(&c);
    }
    ck_assert_int_eq(count_fds(), before);
    assert_no_children();
}
END_TEST

#define SPAWN_THREADS 4
#define SPAWNS_PER_THREAD 50

static atomic_bool noise_stop;
static atomic_long noise_lines;

static void count_sink(void *ud, int level, const char *line, size_t len)
{
    (void)ud;
    (void)level;
    (void)line;
    (void)len;
    atomic_fetch_add(&noise_lines, 1);
}

/* Holds malloc's, stdio's and the logger's locks as often as it can, so a
 * fork often lands while one is taken. */
static void *noise(void *arg)
{
    FILE *null = fopen("/dev/null", "we");
    unsigned int seed = 1;

    (void)arg;
    while (!atomic_load(&noise_stop)) {
        size_t n = (size_t)(rand_r(&seed) % 4096) + 1;
        char *p = malloc(n);

        if (p) {
            memset(p, 'x', n);
            p[n - 1] = '\0';
            mcpgw_log_info("dispatch", "noise %zu %.16s", n, p);
            if (null)
                fprintf(null, "%s\n", p);
            free(p);
        }
    }
    if (null)
        fclose(null);
    return NULL;
}

struct spawner {
    int code;       /* exit code its children use */
    int ok;         /* spawns that behaved */
};

static void *spawner_run(void *arg)
{
    struct spawner *sp = arg;
    char script[32], err[256], buf[16];
    const char *args[] = { "-c", script, NULL };
    struct mcpgw_conf_server s;
    struct mcpgw__child c;
    int i, st;

    snprintf(script, sizeof(script), "exit %d", sp->code);
    server_init(&s, "/bin/sh", args);
    for (i = 0; i < SPAWNS_PER_THREAD; i++) {
        if (mcpgw__spawn(&s, &c, err, sizeof(err)) != 0)
            continue;
        if (reap_within(&c, WAIT_MS, &st) == 1 && WIFEXITED(st) &&
            WEXITSTATUS(st) == sp->code &&
            /* EOF on stdout: no sibling child kept our pipe's write end. */
            read_all(c.out_fd, buf, sizeof(buf), WAIT_MS) == 0)
            sp->ok++;
        mcpgw__child_close_fds(&c);
    }
    return NULL;
}

START_TEST(concurrent_spawns_from_threads)
{
    struct spawner sp[SPAWN_THREADS];
    pthread_t th[SPAWN_THREADS], nt;
    int i, before;

    before = count_fds();
    atomic_store(&noise_stop, false);
    atomic_store(&noise_lines, 0);
    mcpgw_log_set_sink(count_sink, NULL);
    ck_assert_int_eq(pthread_create(&nt, NULL, noise, NULL), 0);
    for (i = 0; i < SPAWN_THREADS; i++) {
        sp[i].code = 10 + i;
        sp[i].ok = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, spawner_run, &sp[i]), 0);
    }
    for (i = 0; i < SPAWN_THREADS; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    atomic_store(&noise_stop, true);
    ck_assert_int_eq(pthread_join(nt, NULL), 0);
    mcpgw_log_set_sink(NULL, NULL);

    for (i = 0; i < SPAWN_THREADS; i++)
        ck_assert_int_eq(sp[i].ok, SPAWNS_PER_THREAD);
    ck_assert_int_gt(atomic_load(&noise_lines), 0);
    ck_assert_int_eq(count_fds(), before);
    assert_no_children();
}
END_TEST

static Suite *spawn_suite(void)
{
    Suite *s = suite_create("spawn");
    TCase *tc;

    tc = tcase_create("resolve");
    tcase_add_checked_fixture(tc, setup_tmp, teardown_tmp);
    tcase_add_test(tc, resolve_finds_first_executable_regular_file);
    tcase_add_test(tc, resolve_empty_path_element_is_current_directory);
    tcase_add_loop_test(tc, resolve_bad_input_table, 0,
                        (int)(sizeof(resolve_cases) / sizeof(resolve_cases[0])));
    suite_add_tcase(s, tc);

    tc = tcase_create("child");
    tcase_add_checked_fixture(tc, setup_tmp, teardown_tmp);
    tcase_add_test(tc, child_holds_only_stdio_fds);
    tcase_add_test(tc, parent_ends_nonblocking_cloexec_child_stdio_blocking);
    tcase_add_test(tc, argv_is_verbatim_with_command_as_written);
    tcase_add_test(tc, environment_is_allow_list_plus_configured);
    tcase_add_test(tc, environment_config_overrides_and_defaults);
    tcase_add_test(tc, signals_default_own_group_no_core);
    tcase_add_test(tc, cwd_and_relative_commands_follow_it);
    tcase_add_test(tc, runs_as_configured_user);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    /* valgrind refuses any change to RLIMIT_NOFILE (EPERM: it keeps the top
     * fds for itself), and the fork child is still under valgrind: make
     * check-valgrind leaves this case out (CK_EXCLUDE_TAGS=novalgrind). */
    tc = tcase_create("rlimits");
    tcase_set_tags(tc, "novalgrind");
    tcase_add_checked_fixture(tc, setup_tmp, teardown_tmp);
    tcase_add_test(tc, no_new_privs_and_configured_resource_limits);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("failure");
    tcase_add_checked_fixture(tc, setup_tmp, teardown_tmp);
    tcase_add_loop_test(tc, spawn_failure_table, 0,
                        (int)(sizeof(fail_cases) / sizeof(fail_cases[0])));
    tcase_add_test(tc, spawn_failure_message_is_cut_to_errlen);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("reap");
    tcase_add_test(tc, pidfd_readable_on_exit_and_reap_status);
    tcase_add_test(tc, reap_after_foreign_waitpid_forgets_pid);
    tcase_add_test(tc, signal_refuses_pid_0_and_1);
    tcase_add_loop_test(tc, wait_status_str_table, 0,
                        (int)(sizeof(status_cases) / sizeof(status_cases[0])));
    tcase_add_test(tc, wait_status_str_small_buffers);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("lifetime");
    tcase_add_test(tc, group_signal_reaches_grandchildren);
    tcase_add_test(tc, child_dies_with_spawning_thread);
    tcase_add_test(tc, child_dies_with_gateway_process);
    tcase_add_loop_test(tc, works_when_gateway_stdio_is_closed, 0, 2);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);

    tc = tcase_create("load");
    tcase_add_test(tc, many_spawns_leak_nothing);
    tcase_add_test(tc, concurrent_spawns_from_threads);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(spawn_suite());
    int failed;

    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
