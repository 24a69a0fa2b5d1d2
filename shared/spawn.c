/* spawn.c - start an MCP server process safely, stop it, reap it.
 *
 * Why fork + exec and not posix_spawn: posix_spawn covers the signal mask,
 * default dispositions, the process group and dup2 onto 0..2, but several
 * properties spawn.h promises need code in the child between fork and exec
 * that no spawn attribute expresses:
 *  - PR_SET_PDEATHSIG(SIGKILL), and the getppid() check that closes the race
 *    where the gateway died before the prctl took effect;
 *  - RLIMIT_CORE 0 for the child alone (setting it in the gateway would
 *    change the gateway's own limit and race with other threads);
 *  - close_range(3, ~0U) so the child holds no fd but its three pipes, even
 *    ones some library opened without O_CLOEXEC (libfcgi's accepted
 *    sockets); glibc's posix_spawn_file_actions_addclosefrom_np only came
 *    in 2.34 and still gives no pdeathsig or rlimit;
 *  - chdir with its failure told apart from exec's failure;
 *  - the configured resource limits, the configured user's ids and
 *    PR_SET_NO_NEW_PRIVS, all for the child alone.
 * So the parent does everything that may allocate or take a lock (argv,
 * envp, PATH lookup) before fork, and the child only makes raw,
 * async-signal-safe calls until execve.  Any failure there travels back
 * through a close-on-exec errno pipe (libuv's trick): EOF on it means execve
 * succeeded, a record means the step and errno that failed.
 *
 * Lookup rules, chosen to match what a shell started in the server's cwd
 * would run: a command with '/' is used as is if absolute, else taken
 * relative to the configured cwd; PATH is the child's (configured env
 * first), and its empty or relative elements also count from that cwd.
 * A relative cwd is refused (conf makes it absolute), since the parent's
 * lookup and the child's chdir would read it differently.  execve gets the
 * resolved path, argv[0] the command as written.  Unlike execvp there is no
 * /bin/sh fallback for a file without #!: that is -ENOEXEC.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/limits.h>    /* PATH_MAX; <limits.h> would find shared/limits.h under -Ishared */
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "limits.h"
#include "log.h"
#include "spawn.h"

#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

/* Gateway variables a child may inherit; everything else is dropped. */
static const char *const inherited_env[] = { "PATH", "HOME", "LANG" };
#define N_INHERITED (sizeof(inherited_env) / sizeof(inherited_env[0]))

/* The child-side step that failed, sent with errno over the errno pipe. */
enum child_step {
    STEP_SETPGID = 1,
    STEP_SIGNALS,
    STEP_PDEATHSIG,
    STEP_RLIMIT,
    STEP_IDS,
    STEP_NO_NEW_PRIVS,
    STEP_DUP2,
    STEP_CHDIR,
    STEP_CLOSE_FDS,
    STEP_EXEC
};

static const char *step_name(int step)
{
    switch (step) {
    case STEP_SETPGID: return "setpgid";
    case STEP_SIGNALS: return "reset signals";
    case STEP_PDEATHSIG: return "prctl(PR_SET_PDEATHSIG)";
    case STEP_RLIMIT: return "setrlimit";
    case STEP_IDS: return "setgroups/setgid/setuid";
    case STEP_NO_NEW_PRIVS: return "prctl(PR_SET_NO_NEW_PRIVS)";
    case STEP_DUP2: return "dup2";
    case STEP_CHDIR: return "chdir";
    case STEP_CLOSE_FDS: return "close_range";
    case STEP_EXEC: return "execve";
    default: return "unknown step";
    }
}

struct child_report {
    int err;
    int step;
};

/* Everything the child needs, prepared before fork so the child never
 * allocates. */
struct plan {
    char path[PATH_MAX];        /* what execve gets */
    char **argv;                /* borrowed strings from the config */
    char **envp;                /* owned, NULL-terminated */
    size_t nenvp;
    const char *child_path;     /* PATH of the child's environment (borrowed) */
    pid_t parent;
    int max_fd;                 /* close loop bound when close_range is missing */
    /* The configured user's ids (set_ids), resolved before fork because
     * getpwnam and getgrouplist read files and allocate. */
    bool set_ids;
    uid_t uid;
    gid_t gid;
    gid_t groups[MCPGW_SPAWN_GROUPS_MAX];
    int ngroups;
    char home[PATH_MAX];        /* the user's home, for HOME */
    /* RLIMIT_CORE 0 first, then the configured ones. */
    struct { int res; rlim_t v; } lim[5];
    int nlim;
};

static void plan_release(struct plan *p)
{
    size_t i;

    free(p->argv);
    if (p->envp) {
        for (i = 0; i < p->nenvp; i++)
            free(p->envp[i]);
        free(p->envp);
    }
    p->argv = NULL;
    p->envp = NULL;
    p->nenvp = 0;
}

/* One-line reason into err: "<what>: <strerror>", prefixed and cut to
 * errlen.  err may be NULL. */
static void set_err(char *err, size_t errlen, const struct mcpgw_conf_server *s,
                    const char *what, const char *detail)
{
    if (!err || errlen == 0)
        return;
    if (s && s->id)
        snprintf(err, errlen, "%s for server '%s': %s", what, s->id, detail);
    else
        snprintf(err, errlen, "%s: %s", what, detail);
}

static bool valid_env_name(const char *name)
{
    return name && name[0] && !strchr(name, '=');
}

/* "name=value" in a new string, or NULL. */
static char *env_pair(const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    char *p = malloc(nl + vl + 2);

    if (!p)
        return NULL;
    memcpy(p, name, nl);
    p[nl] = '=';
    memcpy(p + nl + 1, value, vl + 1);
    return p;
}

/* The child's environment: the allow-listed gateway variables (PATH with a
 * default), then the server's own entries, a later entry replacing an
 * earlier one of the same name.  The child's PATH is remembered for the
 * command lookup. */
static int build_env(const struct mcpgw_conf_server *s, struct plan *p,
                     char *err, size_t errlen)
{
    size_t cap = N_INHERITED + s->nenv + 1, i, j;
    const char *names[N_INHERITED + MCPGW_ENV_MAX];
    const char *values[N_INHERITED + MCPGW_ENV_MAX];
    size_t n = 0;

    for (i = 0; i < N_INHERITED; i++) {
        const char *v = getenv(inherited_env[i]);

        if (!v && strcmp(inherited_env[i], "PATH") == 0)
            v = DEFAULT_PATH;
        if (p->set_ids && strcmp(inherited_env[i], "HOME") == 0)
            v = p->home;
        if (!v)
            continue;
        names[n] = inherited_env[i];
        values[n++] = v;
    }
    for (i = 0; i < s->nenv; i++) {
        const struct mcpgw_conf_env *e = &s->env[i];

        if (!valid_env_name(e->name) || !e->value) {
            set_err(err, errlen, s, "cannot spawn",
                    "invalid name or value in its environment");
            return -EINVAL;
        }
        for (j = 0; j < n; j++)
            if (strcmp(names[j], e->name) == 0)
                break;
        names[j] = e->name;
        values[j] = e->value;
        if (j == n)
            n++;
    }

    p->envp = calloc(cap, sizeof(*p->envp));
    if (!p->envp)
        goto nomem;
    for (i = 0; i < n; i++) {
        p->envp[i] = env_pair(names[i], values[i]);
        if (!p->envp[i])
            goto nomem;
        p->nenvp++;
        if (strcmp(names[i], "PATH") == 0)
            p->child_path = values[i];
    }
    return 0;

nomem:
    set_err(err, errlen, s, "cannot spawn", strerror(ENOMEM));
    return -ENOMEM;
}

/* The ids of s->user, when it names someone other than us.  Only root can
 * switch; for anyone else asking is a configuration error worth a clear
 * message, not a child that silently runs as the gateway's user. */
static int plan_ids(const struct mcpgw_conf_server *s, struct plan *p, char *err, size_t errlen)
{
    struct passwd pw, *res = NULL;
    char buf[16384], what[64 + MCPGW_USER_NAME_MAX];
    int n = MCPGW_SPAWN_GROUPS_MAX, rc;

    if (!s->user)
        return 0;
    snprintf(what, sizeof(what), "cannot run as user '%s'", s->user);
    rc = getpwnam_r(s->user, &pw, buf, sizeof(buf), &res);
    if (rc != 0 || !res) {
        set_err(err, errlen, s, what, rc ? strerror(rc) : "no such user");
        return rc ? -rc : -ENOENT;
    }
    if (pw.pw_uid == geteuid() && pw.pw_gid == getegid())
        return 0;
    if (geteuid() != 0) {
        set_err(err, errlen, s, what, "the gateway is not running as root");
        return -EPERM;
    }
    if (pw.pw_uid == 0) {
        set_err(err, errlen, s, what, "refusing to switch to uid 0 by name");
        return -EPERM;
    }
    if (getgrouplist(pw.pw_name, pw.pw_gid, p->groups, &n) < 0) {
        set_err(err, errlen, s, what, "the user has too many supplementary groups");
        return -E2BIG;
    }
    if (strlen(pw.pw_dir) >= sizeof(p->home)) {
        set_err(err, errlen, s, what, "home directory path too long");
        return -ENAMETOOLONG;
    }
    p->ngroups = n;
    p->uid = pw.pw_uid;
    p->gid = pw.pw_gid;
    memcpy(p->home, pw.pw_dir, strlen(pw.pw_dir) + 1);
    p->set_ids = true;
    return 0;
}

static void plan_limits(const struct mcpgw_conf_server *s, struct plan *p)
{
    const struct { int res; long long v; } want[] = {
        { RLIMIT_CORE, 0 },     /* always: no core dump holding secrets */
        { RLIMIT_NOFILE, s->max_open_files },
        { RLIMIT_DATA, s->max_memory_bytes },
        { RLIMIT_NPROC, s->max_processes },
        { RLIMIT_CPU, s->max_cpu_seconds },
    };

    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (i > 0 && want[i].v <= 0)
            continue;
        p->lim[p->nlim].res = want[i].res;
        p->lim[p->nlim++].v = (rlim_t)want[i].v;
    }
}

static int build_argv(const struct mcpgw_conf_server *s, struct plan *p,
                      char *err, size_t errlen)
{
    size_t i;

    p->argv = calloc(s->nargs + 2, sizeof(*p->argv));
    if (!p->argv) {
        set_err(err, errlen, s, "cannot spawn", strerror(ENOMEM));
        return -ENOMEM;
    }
    /* argv[0] as written, as a shell would pass it: npx and friends look at
     * it, and the resolved path is what execve needs anyway. */
    p->argv[0] = s->command;
    for (i = 0; i < s->nargs; i++) {
        if (!s->args[i]) {
            set_err(err, errlen, s, "cannot spawn", "missing argument");
            return -EINVAL;
        }
        p->argv[i + 1] = s->args[i];
    }
    return 0;
}

/* dir + "/" + name into out (dir NULL or "": name alone). */
static int join_path(const char *dir, size_t dlen, const char *name,
                     char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    size_t need = dlen + (dlen ? 1 : 0) + nlen + 1;

    if (need > outlen)
        return -ENAMETOOLONG;
    if (dlen) {
        memcpy(out, dir, dlen);
        out[dlen] = '/';
        dlen++;
    }
    memcpy(out + dlen, name, nlen + 1);
    return 0;
}

static bool is_executable_file(const char *path)
{
    struct stat st;

    /* AT_EACCESS: execve checks the effective ids, so do we. */
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
           faccessat(AT_FDCWD, path, X_OK, AT_EACCESS) == 0;
}

/* The lookup execvp would do in a child whose working directory is base
 * (NULL: ours).  Relative results are made relative to base so that the
 * parent's check and the child's execve (after its chdir) name the same
 * file; base must then be absolute, which mcpgw__spawn ensures. */
static int resolve_in(const char *cmd, const char *path_list, const char *base,
                      char *out, size_t outlen)
{
    size_t blen = base ? strlen(base) : 0;
    char dir[PATH_MAX];
    const char *seg, *end;
    bool toolong = false;
    int rc;

    if (!out || outlen == 0)
        return -ENAMETOOLONG;
    out[0] = '\0';
    if (!cmd || !cmd[0])
        return -ENOENT;
    if (strchr(cmd, '/')) {
        if (cmd[0] == '/' || !blen)
            return join_path(NULL, 0, cmd, out, outlen);
        return join_path(base, blen, cmd, out, outlen);
    }
    if (!path_list)
        path_list = DEFAULT_PATH;

    for (seg = path_list;; seg = end + 1) {
        size_t slen;

        end = strchrnul(seg, ':');
        slen = (size_t)(end - seg);
        /* POSIX: an empty element is the current directory. */
        if (slen == 0) {
            rc = blen ? join_path(base, blen, cmd, out, outlen)
                      : join_path(".", 1, cmd, out, outlen);
        } else if (seg[0] != '/' && blen) {
            if (blen + 1 + slen + 1 > sizeof(dir)) {
                rc = -ENAMETOOLONG;
            } else {
                memcpy(dir, base, blen);
                dir[blen] = '/';
                memcpy(dir + blen + 1, seg, slen);
                rc = join_path(dir, blen + 1 + slen, cmd, out, outlen);
            }
        } else {
            rc = join_path(seg, slen, cmd, out, outlen);
        }
        if (rc == 0 && is_executable_file(out))
            return 0;
        if (rc == -ENAMETOOLONG)
            toolong = true;
        if (!*end)
            break;
    }
    out[0] = '\0';
    return toolong ? -ENAMETOOLONG : -ENOENT;
}

int mcpgw__spawn_resolve(const char *cmd, const char *path_list, char *out, size_t outlen)
{
    return resolve_in(cmd, path_list, NULL, out, outlen);
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* Move fd off 0..2 (keeping it close-on-exec).  The gateway may run with
 * those closed (a FastCGI application starts with stdout and stderr closed),
 * and pipe2 then hands them out: the parent's end would catch a stray
 * printf, and the child's end would be clobbered by its own dup2 onto 0..2.
 * Every pipe is created before any is lifted, so a slot freed here is not
 * taken by our next pipe. */
static int lift_fd(int *fd)
{
    int nfd;

    if (*fd > 2)
        return 0;
    nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0)
        return -errno;
    close(*fd);
    *fd = nfd;
    return 0;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

static int close_from(unsigned int lo, unsigned int hi, int max_fd)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, lo, hi, 0) == 0)
        return 0;
    if (errno != ENOSYS)
        return -errno;
#endif
    /* Kernels before 5.9: a bounded close loop.  max_fd was taken from
     * RLIMIT_NOFILE before fork; no fd we could have inherited lies above
     * the hard limit's ceiling. */
    for (; lo <= hi && lo < (unsigned int)max_fd; lo++)
        close((int)lo);
    return 0;
}

/* After fork: async-signal-safe calls only (no malloc, no stdio, no locks),
 * never returns. */

/* The kernel's own struct sigaction for rt_sigaction(2), on the ABIs whose
 * layout we know (handler, flags, restorer, mask); elsewhere glibc's
 * internal signals keep whatever disposition they came with. */
static void raw_sig_default(int sig)
{
#if defined(__x86_64__) || defined(__aarch64__) || defined(__i386__) || defined(__arm__)
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        unsigned long mask[2];
    } ksa = { .handler = SIG_DFL };

    syscall(SYS_rt_sigaction, sig, &ksa, NULL, (size_t)8);
#else
    (void)sig;
#endif
}

static void __attribute__((noreturn))
child_run(const struct plan *p, const char *cwd, int in_r, int out_w, int err_w, int rep_w)
{
    struct child_report rep = { 0, 0 };
    struct sigaction sa;
    sigset_t empty;
    ssize_t wr;
    int sig;

    if (setpgid(0, 0) < 0) {
        rep.step = STEP_SETPGID;
        goto fail;
    }

    /* Handled signals reset on exec by themselves; ignored ones (SIGPIPE
     * in the gateway) would not.  glibc's sigaction() refuses its internal
     * signals 32 and 33 with EINVAL, yet they arrive ignored from some
     * parents (GNU make starts its children so), and an ignored disposition
     * survives exec: those two go through the raw system call. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (sig = 1; sig < _NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        if (sigaction(sig, &sa, NULL) < 0 && errno == EINVAL)
            raw_sig_default(sig);
    }
    sigemptyset(&empty);
    if (sigprocmask(SIG_SETMASK, &empty, NULL) < 0) {
        rep.step = STEP_SIGNALS;
        goto fail;
    }

    for (int i = 0; i < p->nlim; i++) {
        struct rlimit rl = { p->lim[i].v, p->lim[i].v };

        if (setrlimit(p->lim[i].res, &rl) < 0) {
            rep.step = STEP_RLIMIT;
            goto fail;
        }
    }

    /* Groups first: after setuid we could no longer change them. */
    if (p->set_ids && (setgroups((size_t)p->ngroups, p->groups) < 0 || setgid(p->gid) < 0 ||
                       setuid(p->uid) < 0)) {
        rep.step = STEP_IDS;
        goto fail;
    }

    /* After the id change, which clears the parent-death signal. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
        rep.step = STEP_PDEATHSIG;
        goto fail;
    }
    /* The gateway may have died between fork and prctl; then nobody would
     * ever kill us, and nobody reads the report either. */
    if (getppid() != p->parent)
        _exit(127);

    /* No set-user-id program (sudo, su, ping) can raise what a compromised
     * server, or the web client steering it, may do. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        rep.step = STEP_NO_NEW_PRIVS;
        goto fail;
    }

    /* All three are above 2 (lift_fd), so dup2 never clobbers one with
     * another and always clears close-on-exec on the copy. */
    if (dup2(in_r, 0) < 0 || dup2(out_w, 1) < 0 || dup2(err_w, 2) < 0) {
        rep.step = STEP_DUP2;
        goto fail;
    }

    if (cwd && chdir(cwd) < 0) {
        rep.step = STEP_CHDIR;
        goto fail;
    }

    /* Keep only the report pipe (close-on-exec) besides 0..2. */
    if ((rep_w > 3 && close_from(3, (unsigned int)rep_w - 1, p->max_fd) < 0) ||
        close_from((unsigned int)rep_w + 1, ~0U, p->max_fd) < 0) {
        rep.step = STEP_CLOSE_FDS;
        goto fail;
    }

    execve(p->path, p->argv, p->envp);
    rep.step = STEP_EXEC;

fail:
    rep.err = errno;
    /* One write under PIPE_BUF is atomic; nothing to do if it fails. */
    wr = write(rep_w, &rep, sizeof(rep));
    (void)wr;
    _exit(127);
}

/* Wait for the errno pipe to close (execve succeeded) or deliver a report.
 * 0 on EOF, 1 with *rep filled, -errno if the pipe itself failed. */
static int read_report(int fd, struct child_report *rep)
{
    size_t got = 0;

    while (got < sizeof(*rep)) {
        ssize_t n = read(fd, (char *)rep + got, sizeof(*rep) - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    if (got == 0)
        return 0;
    if (got < sizeof(*rep)) {
        /* The child died mid-write: it certainly did not exec. */
        rep->err = EIO;
        rep->step = 0;
    }
    return 1;
}

/* Kill and reap a child we are giving up on (blocking, but the child is
 * either dead already or dies from SIGKILL at once). */
static void discard_child(pid_t pid)
{
    int st;

    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
}

static void child_init(struct mcpgw__child *c)
{
    c->pid = 0;
    c->pidfd = c->in_fd = c->out_fd = c->err_fd = -1;
}

int mcpgw__spawn(const struct mcpgw_conf_server *s, struct mcpgw__child *c,
                 char *err, size_t errlen)
{
    struct plan p;
    struct child_report rep;
    struct rlimit nofile;
    sigset_t all, old;
    /* [0] read end, [1] write end; child keeps in[0], out[1], errp[1]. */
    int in[2] = { -1, -1 }, out[2] = { -1, -1 }, errp[2] = { -1, -1 }, rp[2] = { -1, -1 };
    int *fds[] = { &in[0], &in[1], &out[0], &out[1], &errp[0], &errp[1], &rp[0], &rp[1] };
    pid_t pid;
    size_t i;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (!c)
        return -EINVAL;
    child_init(c);
    memset(&p, 0, sizeof(p));
    if (!s || !s->command || !s->command[0]) {
        set_err(err, errlen, s, "cannot spawn", "no command");
        return -EINVAL;
    }
    if (s->nargs > MCPGW_ARGS_MAX || s->nenv > MCPGW_ENV_MAX) {
        set_err(err, errlen, s, "cannot spawn", "too many arguments or environment entries");
        return -E2BIG;
    }
    if ((s->nargs && !s->args) || (s->nenv && !s->env)) {
        set_err(err, errlen, s, "cannot spawn", "missing arguments or environment");
        return -EINVAL;
    }
    if (s->cwd && s->cwd[0] != '/') {
        /* conf makes cwd absolute; a relative one would mean one thing to
         * the PATH lookup here and another after the child's chdir. */
        char what[PATH_MAX + 32];

        snprintf(what, sizeof(what), "cannot chdir to '%s'", s->cwd);
        set_err(err, errlen, s, what, "not an absolute path");
        return -EINVAL;
    }

    rc = plan_ids(s, &p, err, errlen);
    if (rc < 0)
        goto fail;
    plan_limits(s, &p);
    rc = build_argv(s, &p, err, errlen);
    if (rc < 0)
        goto fail;
    rc = build_env(s, &p, err, errlen);
    if (rc < 0)
        goto fail;
    rc = resolve_in(s->command, p.child_path, s->cwd, p.path, sizeof(p.path));
    if (rc < 0) {
        char what[PATH_MAX + 32];

        snprintf(what, sizeof(what), "cannot run '%s'", s->command);
        set_err(err, errlen, s, what,
                rc == -ENOENT ? "command not found in PATH" : strerror(-rc));
        goto fail;
    }
    p.parent = getpid();
    p.max_fd = 65536;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
        rlim_t m = nofile.rlim_max > nofile.rlim_cur ? nofile.rlim_max : nofile.rlim_cur;

        /* fs.nr_open's default ceiling; RLIM_INFINITY cannot be looped to. */
        p.max_fd = m > (1u << 20) ? (1 << 20) : (int)m;
    }

    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 ||
        pipe2(errp, O_CLOEXEC) < 0 || pipe2(rp, O_CLOEXEC) < 0) {
        rc = -errno;
        set_err(err, errlen, s, "cannot spawn", strerror(-rc));
        goto fail;
    }
    for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
        rc = lift_fd(fds[i]);
        if (rc < 0) {
            set_err(err, errlen, s, "cannot spawn", strerror(-rc));
            goto fail;
        }
    }
    /* The child's stdio stays blocking: most servers expect that. */
    if ((rc = set_nonblock(in[1])) < 0 || (rc = set_nonblock(out[0])) < 0 ||
        (rc = set_nonblock(errp[0])) < 0) {
        set_err(err, errlen, s, "cannot spawn", strerror(-rc));
        goto fail;
    }

    /* No handler of ours may run in the child before it resets them. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = fork();
    if (pid == 0)
        child_run(&p, s->cwd, in[0], out[1], errp[1], rp[1]);
    rc = pid < 0 ? -errno : 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        set_err(err, errlen, s, "cannot spawn", strerror(-rc));
        goto fail;
    }

    /* No setpgid(pid, pid) here as spawners that return before exec need:
     * we return only after the report pipe closed, so the child's own
     * setpgid has happened (or failed and been reported) by then. */
    close_fd(&in[0]);
    close_fd(&out[1]);
    close_fd(&errp[1]);
    close_fd(&rp[1]);

    rc = read_report(rp[0], &rep);
    close_fd(&rp[0]);
    if (rc != 0) {
        char what[PATH_MAX + 32];

        if (rc < 0) {
            rep.err = -rc;
            rep.step = 0;
        }
        discard_child(pid);
        if (rep.err <= 0)
            rep.err = EIO;
        rc = -rep.err;
        if (rep.step == STEP_CHDIR) {
            snprintf(what, sizeof(what), "cannot chdir to '%s'", s->cwd);
            set_err(err, errlen, s, what, strerror(rep.err));
        } else if (rep.step == STEP_EXEC) {
            if (strcmp(p.path, s->command) == 0)
                snprintf(what, sizeof(what), "cannot run '%s'", s->command);
            else
                snprintf(what, sizeof(what), "cannot run '%s' (%s)", s->command, p.path);
            set_err(err, errlen, s, what, strerror(rep.err));
        } else {
            char detail[256];

            snprintf(what, sizeof(what), "cannot start '%s'", s->command);
            snprintf(detail, sizeof(detail), "%s: %s", step_name(rep.step), strerror(rep.err));
            set_err(err, errlen, s, what, detail);
        }
        goto fail;
    }

#ifdef SYS_pidfd_open
    c->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
#else
    c->pidfd = -1;
    errno = ENOSYS;
#endif
    if (c->pidfd < 0 && errno != ENOSYS) {
        rc = -errno;
        discard_child(pid);
        set_err(err, errlen, s, "cannot watch process", strerror(-rc));
        c->pidfd = -1;
        goto fail;
    }
    if (c->pidfd >= 0 && c->pidfd <= 2) {
        rc = lift_fd(&c->pidfd);
        if (rc < 0) {
            close_fd(&c->pidfd);
            discard_child(pid);
            set_err(err, errlen, s, "cannot watch process", strerror(-rc));
            goto fail;
        }
    }

    c->pid = pid;
    c->in_fd = in[1];
    c->out_fd = out[0];
    c->err_fd = errp[0];
    mcpgw_log_debug("dispatch", "spawned '%s' as pid %d (%s)", s->command, (int)pid, p.path);
    plan_release(&p);
    return 0;

fail:
    for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        close_fd(fds[i]);
    plan_release(&p);
    child_init(c);
    return rc;
}

int mcpgw__child_signal(const struct mcpgw__child *c, int sig)
{
    /* pid 0 or 1 would turn kill(-pid) into "our own group" or "everyone". */
    if (!c || c->pid <= 1)
        return -ESRCH;
    if (kill(-c->pid, sig) == 0)
        return 0;
    if (errno != ESRCH)
        return -errno;
    /* No such group (the child moved itself out of it): the child alone. */
    if (kill(c->pid, sig) == 0)
        return 0;
    return -errno;
}

int mcpgw__child_reap(struct mcpgw__child *c, int *status)
{
    pid_t r;
    int st = 0;

    if (!c || c->pid <= 0)
        return -ECHILD;
    do
        r = waitpid(c->pid, &st, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return 0;
    if (r < 0) {
        int rc = -errno;

        /* ECHILD: someone else reaped it (a waitpid(-1) elsewhere).  The pid
         * is free for reuse now, so forget it rather than ever signal it. */
        if (rc == -ECHILD) {
            c->pid = 0;
            close_fd(&c->pidfd);
        }
        return rc;
    }
    if (status)
        *status = st;
    c->pid = 0;
    close_fd(&c->pidfd);
    return 1;
}

void mcpgw__child_close_fds(struct mcpgw__child *c)
{
    if (!c)
        return;
    close_fd(&c->pidfd);
    close_fd(&c->in_fd);
    close_fd(&c->out_fd);
    close_fd(&c->err_fd);
}

const char *mcpgw__wait_status_str(int status, char *buf, size_t len)
{
    if (!buf || len == 0)
        return "";
    if (WIFEXITED(status)) {
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char *name = NULL;

#if defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 32)
        name = sigabbrev_np(sig);
#endif
#endif
        snprintf(buf, len, "killed by signal %d%s%s%s%s", sig,
                 name ? " (SIG" : "", name ? name : "", name ? ")" : "",
                 WCOREDUMP(status) ? " (core dumped)" : "");
    } else if (WIFSTOPPED(status)) {
        snprintf(buf, len, "stopped by signal %d", WSTOPSIG(status));
    } else {
        snprintf(buf, len, "unknown wait status 0x%x", (unsigned int)status);
    }
    return buf;
}
