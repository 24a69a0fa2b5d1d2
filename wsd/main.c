/* mcpgw-wsd - the WebSocket daemon: /ws over libmicrohttpd, tool calls
 * through the hub, thousands of connections on one event loop.
 *
 *   mcpgw-wsd [-c FILE] [--listen HOST:PORT | --listen /path.sock]
 *             [--foreground] [--pid-file FILE]
 *
 * THREADS.  The loop (loop.h) runs everything but the blocking /api/v1
 * routes (their workers, (c) below) and the event publisher (publish.h).
 * libmicrohttpd runs in its "external" epoll mode (MHD_USE_EPOLL without an internal thread): its
 * epoll fd is one watch in our loop and MHD_run() runs on the loop thread,
 * and so do the hub (its fd is another watch) and every client socket.
 * Why this mode, against the three needs of this daemon:
 *  (a) upgraded sockets handled only by our loop: MHD calls the upgrade
 *      handler from MHD_run(), i.e. on the loop thread, which puts the socket
 *      straight into the same epoll set.  No hand-over queue, no locks, and
 *      nothing can race with a socket between MHD and us.
 *  (b) 10,000 idle upgraded connections must not hold 10,000 threads.  MHD's
 *      thread-per-connection mode ends a connection's thread after the
 *      upgrade but joins it only when the socket is released, so every idle
 *      WebSocket would keep a finished thread's stack resident (10-16 KiB
 *      each: most of the memory budget at 10,000).  Here a connection is
 *      its buffers and nothing else.
 *  (c) the blocking REST/SSE routes (routes.h) on the same port (rest.h):
 *      the access handler (on the loop) reads an /api/v1 request, suspends
 *      it (MHD_suspend_connection; MHD_ALLOW_SUSPEND_RESUME) and hands it
 *      to a worker thread - a pool of websocket.restThreads for REST, a
 *      thread each for event streams, up to sse.maxStreams - that runs the
 *      shared routes and blocks as it likes; its output reaches MHD through
 *      a content-reader callback fed from a bounded queue, and
 *      MHD_resume_connection() plus a write to rest's eventfd (a watch
 *      here: MHD's own ITC is not in its epoll set in this set-up) tells
 *      the loop there is more.  The internal-thread modes would give
 *      nothing more for that, and would add a thread hop to every upgrade.
 *      The hub knows the loop thread is ours (mcpgw_hub_bind_thread()
 *      below), so blocking calls from those workers are posted to it.
 *
 * SIGNALS (signalfd on the loop): SIGTERM/SIGINT stop accepting, end open
 * event streams with their final event, let calls in flight (WebSocket and
 * REST) finish for MCPGW_WS_SHUTDOWN_GRACE, cancel the rest (each WebSocket
 * client gets error "cancelled", a REST client 503), close every client
 * with 1001, send the REST answers still queued, join the workers, stop
 * the MCP servers and exit 0; a second SIGTERM skips the grace period.  SIGHUP
 * reloads the config without dropping a connection: mcpServers through
 * mcpgw_hub_reload() (unchanged servers keep their process and calls;
 * added ones start, removed ones stop, changed ones restart while the old
 * process finishes its calls), the front-end settings here (changes to
 * listen, events and log.syslog need a restart and are logged as such); it
 * reopens the log and reloads the token file, closing (1008) connections
 * whose token was revoked.  The token file is also checked for changes
 * every second.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "codec.h"
#include "err.h"
#include "http.h"
#include "log.h"
#include "publish.h"
#include "rest.h"
#include "session.h"
#include "ws.h"
#include "wsd.h"

#define C WSD_COMPONENT
#define EXIT_USAGE 64
#define LISTEN_MAX 16

enum phase { RUNNING, DRAINING, CLOSING, DONE };

static struct {
    struct wsd d;
    struct wsd_http *http[LISTEN_MAX];
    size_t nhttp;
    struct wsd_watch sig_w, hub_w, rest_w;
    struct mcpgw__timer tick, publish;
    struct wsd_defer hub_kick;
    mcpgw_events *events;
    enum phase phase;
    int64_t deadline;
    char *config_path;          /* absolute */
    struct mcpgw_buf conf_text; /* the file as last applied (see reload()) */
    char *pid_path;
    int pid_fd;
    struct stat token_st;
    bool token_st_ok;
} g = { .pid_fd = -1 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mcpgw-wsd [-c FILE] [--listen ADDR] [--foreground] [--pid-file FILE]\n"
            "\n"
            "The WebSocket daemon: serves /ws (docs/websocket.md) and runs the MCP servers\n"
            "of the configuration.\n"
            "\n"
            "options:\n"
            "  -c, --config FILE    configuration (default: $MCPGW_CONFIG, else %s)\n"
            "  -l, --listen ADDR    listen on HOST:PORT, [IPV6]:PORT or /path/to.sock instead of\n"
            "                       gateway.listen (port 0: any free port, logged)\n"
            "  -f, --foreground     do not detach; log to stderr as well\n"
            "  -p, --pid-file FILE  write the daemon's pid there (locked while it runs)\n"
            "  -h, --help           this text\n"
            "  -V, --version        print the version\n",
            mcpgw_conf_default_path());
}

/* -- listen sockets ----------------------------------------------------------------- */

static int listen_unix(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "unix socket path too long: '%s'", path);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        goto sys_fail;
    if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        /* A socket file left by a daemon that died: reuse the path only if
         * nobody answers on it. */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            close(probe);
            close(fd);
            snprintf(err, errlen, "cannot listen on '%s': another process is serving it", path);
            return -EADDRINUSE;
        }
        if (probe >= 0)
            close(probe);
        unlink(path);
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, SOMAXCONN) < 0)
        goto sys_fail;
    return fd;
sys_fail:;
    int rc = -errno;

    snprintf(err, errlen, "cannot listen on '%s': %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return rc;
}

/* HOST:PORT or [IPV6]:PORT.  name gets the address actually bound. */
static int listen_tcp(const char *spec, char *name, size_t namelen, char *err, size_t errlen)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
    struct addrinfo *ai = NULL;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[256], port[8], hbuf[NI_MAXHOST], pbuf[NI_MAXSERV];
    const char *colon;
    size_t hn;
    int fd = -1, one = 1, rc;

    if (spec[0] == '[') {
        const char *rb = strchr(spec, ']');

        if (!rb || rb[1] != ':')
            goto bad;
        hn = (size_t)(rb - spec - 1);
        if (hn >= sizeof(host))
            goto bad;
        memcpy(host, spec + 1, hn);
        colon = rb + 1;
    } else {
        colon = strrchr(spec, ':');
        if (!colon || colon == spec || memchr(spec, ':', (size_t)(colon - spec)))
            goto bad;
        hn = (size_t)(colon - spec);
        if (hn >= sizeof(host))
            goto bad;
        memcpy(host, spec, hn);
    }
    host[hn] = '\0';
    if (strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof(port) ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1) || atoi(colon + 1) > 65535)
        goto bad;
    snprintf(port, sizeof(port), "%s", colon + 1);
    if ((rc = getaddrinfo(host, port, &hints, &ai)) != 0) {
        snprintf(err, errlen, "cannot listen on '%s': %s", spec, gai_strerror(rc));
        return -EINVAL;
    }
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        goto sys_fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, SOMAXCONN) < 0)
        goto sys_fail;
    freeaddrinfo(ai);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
        getnameinfo((struct sockaddr *)&ss, sl, hbuf, sizeof(hbuf), pbuf, sizeof(pbuf),
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        snprintf(name, namelen, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", hbuf, pbuf);
    else
        snprintf(name, namelen, "%s", spec);
    return fd;
bad:
    snprintf(err, errlen, "invalid listen address '%s': expected HOST:PORT, [IPV6]:PORT or an "
             "absolute unix socket path", spec);
    return -EINVAL;
sys_fail:
    rc = -errno;
    snprintf(err, errlen, "cannot listen on '%s': %s", spec, strerror(errno));
    if (ai)
        freeaddrinfo(ai);
    if (fd >= 0)
        close(fd);
    return rc;
}

static int open_listener(const char *spec, char *name, size_t namelen, char *err, size_t errlen)
{
    if (spec[0] == '/') {
        snprintf(name, namelen, "%s", spec);
        return listen_unix(spec, err, errlen);
    }
    return listen_tcp(spec, name, namelen, err, errlen);
}

/* -- process housekeeping ------------------------------------------------------------ */

static void sd_notify_msg(const char *msg)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t n;
    int fd;

    if (!path || (path[0] != '/' && path[0] != '@') || (n = strlen(path)) >= sizeof(sa.sun_path))
        return;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@')
        sa.sun_path[0] = '\0';      /* abstract namespace */
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    (void)!sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
                  (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
    close(fd);
}

/* Fork twice (no controlling terminal ever again); the original process
 * waits on a pipe until the daemon says it is serving (exit 0) or why it
 * could not (exit 1).  Returns the pipe's write end in the daemon. */
static int daemonize(void)
{
    int p[2], devnull;
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) < 0) {
        fprintf(stderr, "mcpgw-wsd: pipe: %s\n", strerror(errno));
        exit(1);
    }
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "mcpgw-wsd: fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid > 0) {
        char buf[512];
        size_t got = 0;
        ssize_t n;

        close(p[1]);
        waitpid(pid, NULL, 0);
        while ((n = read(p[0], buf + got, sizeof(buf) - 1 - got)) > 0 ||
               (n < 0 && errno == EINTR))
            if (n > 0)
                got += (size_t)n;
        buf[got] = '\0';
        if (strcmp(buf, "OK") == 0)
            _exit(0);
        fprintf(stderr, "mcpgw-wsd: %s\n", got ? buf : "the daemon died while starting; see the log");
        _exit(1);
    }
    close(p[0]);
    if (setsid() < 0)
        _exit(1);
    pid = fork();
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0);
    if (chdir("/") < 0)
        _exit(1);
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        if (devnull > 2)
            close(devnull);
    }
    return p[1];
}

static void tell_parent(int fd, const char *msg)
{
    if (fd < 0)
        return;
    (void)!write(fd, msg, strlen(msg));
    close(fd);
}

static int write_pid_file(const char *path, char *err, size_t errlen)
{
    char buf[32];
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    int n;

    if (fd < 0) {
        snprintf(err, errlen, "cannot open pid file '%s': %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        ssize_t r = read(fd, buf, sizeof(buf) - 1);

        buf[r > 0 ? r : 0] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        snprintf(err, errlen, "pid file '%s' is locked: mcpgw-wsd is already running (pid %s)",
                 path, buf[0] ? buf : "?");
        close(fd);
        return -1;
    }
    n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n) {
        snprintf(err, errlen, "cannot write pid file '%s': %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static char *absolute(const char *path)
{
    char cwd[4096], *out;
    size_t n;

    if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
        return strdup(path);
    n = strlen(cwd) + strlen(path) + 2;
    if ((out = malloc(n)))
        snprintf(out, n, "%s/%s", cwd, path);
    return out;
}

static void syslog_sink(void *ud, int level, const char *line, size_t len)
{
    static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

    syslog(prio[level < 0 ? 0 : level > 3 ? 3 : level], "%.*s", (int)len, line);
}

/* -- tokens ------------------------------------------------------------------------------ */

/* The per-token limits' table, shared with every gateway process on the
 * host through gateway.stateDir (quota.h).  One that cannot be shared is
 * still a table of this process: logged, not fatal. */
static int open_quota(void)
{
    const struct mcpgw_conf_token_limits *tl = &g.d.conf->token_limits;
    struct mcpgw_quota_limits lim = { (unsigned)tl->max_concurrent, (unsigned)tl->per_second,
                                      (unsigned)tl->burst };
    char why[4800];
    int rc = mcpgw_quota_new(g.d.conf->state_dir, g.d.conf->token_file, &lim, &g.d.quota, why,
                             sizeof(why));

    if (rc == 0 && why[0])
        mcpgw_log_warn(C, "%s", why);
    return rc;
}

static int load_tokens(bool at_start)
{
    mcpgw_tokens *t;
    char err[512];
    struct stat st;

    g.token_st_ok = stat(g.d.conf->token_file, &st) == 0;
    if (g.token_st_ok)
        g.token_st = st;
    if (mcpgw_tokens_load(g.d.conf->token_file, &t, err, sizeof(err)) < 0) {
        mcpgw_log_error(C, "%s%s", err, at_start ? "" : "; keeping the tokens loaded before");
        return -1;
    }
    mcpgw_tokens_free(g.d.tokens);
    g.d.tokens = t;
    return 0;
}

static bool token_file_changed(void)
{
    struct stat st;
    bool ok = stat(g.d.conf->token_file, &st) == 0;

    if (ok != g.token_st_ok)
        return true;
    return ok && (st.st_ino != g.token_st.st_ino || st.st_dev != g.token_st.st_dev ||
                  st.st_size != g.token_st.st_size ||
                  st.st_mtim.tv_sec != g.token_st.st_mtim.tv_sec ||
                  st.st_mtim.tv_nsec != g.token_st.st_mtim.tv_nsec);
}

/* -- reload (SIGHUP) ------------------------------------------------------------------------ */

static bool strv_eq(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb || (!a) != (!b))
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

static bool str_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool events_eq(const struct mcpgw_conf_events *a, const struct mcpgw_conf_events *b)
{
    return a->backend == b->backend && str_eq(a->dir, b->dir) &&
           str_eq(a->redis_host, b->redis_host) && a->redis_port == b->redis_port &&
           str_eq(a->redis_key, b->redis_key) && a->include_params == b->include_params;
}

/* Start servers now rather than on the first call: a daemon's first client
 * should not wait for a node process to boot.  At start-up, and for the
 * servers a reload added or changed. */
static void start_idle_servers(void)
{
    struct mcpgw_server_health h;

    for (size_t i = 0; mcpgw_hub_health(g.d.hub, i, &h); i++)
        if (h.state == MCPGW_SERVER_IDLE)
            mcpgw_hub_start(g.d.hub, h.id);
}

/* The config file's bytes into b (reset first).  0 or -errno /
 * MCPGW_ETOOBIG; the loader reports what is wrong with the file. */
static int read_config_text(struct mcpgw_buf *b)
{
    char chunk[8192];
    ssize_t n;
    int fd, rc = 0;

    mcpgw_buf_reset(b);
    if ((fd = open(g.config_path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0)
        return -errno;
    while (rc == 0 && ((n = read(fd, chunk, sizeof(chunk))) > 0 || (n < 0 && errno == EINTR)))
        if (n > 0)
            rc = mcpgw_buf_add(b, chunk, (size_t)n);
    if (rc == 0 && n < 0)
        rc = -errno;
    close(fd);
    return rc;
}

/* The hub takes the new mcpServers (hub.h, mcpgw_hub_reload: unchanged
 * servers keep their process and calls), the front end the rest; open
 * connections are untouched.  The hub owns every config and keeps the
 * ones it replaced, so g.d.conf may simply follow it.  That costs a
 * config's memory per reload, so a file whose bytes did not change (the
 * SIGHUP of a log rotation) is not loaded again at all. */
static void reload(void)
{
    const struct mcpgw_conf *old = g.d.conf;
    struct mcpgw_hub_reload_result res;
    struct mcpgw_conf *conf;
    struct mcpgw_buf text;
    char err[512];
    int rc, read_rc;

    sd_notify_msg("RELOADING=1");
    mcpgw_log_info(C, "SIGHUP: reloading '%s'", g.config_path);
    mcpgw_buf_init(&text, MCPGW_CONFIG_BYTES_MAX);
    read_rc = read_config_text(&text);
    if (read_rc == 0 && g.conf_text.len && text.len == g.conf_text.len &&
        memcmp(text.ptr, g.conf_text.ptr, text.len) == 0) {
        mcpgw_log_info(C, "'%s' is unchanged: servers and settings stay as they are",
                       g.config_path);
    } else if (mcpgw_conf_load(g.config_path, &conf, err, sizeof(err)) < 0) {
        mcpgw_log_error(C, "reload failed, keeping the running configuration: %s", err);
    } else if ((rc = mcpgw_hub_reload(g.d.hub, conf, &res)) < 0) {
        mcpgw_log_error(C, "reload failed, keeping the running configuration: %s",
                        mcpgw_strerror(rc));
        mcpgw_conf_free(conf);
    } else {
        if (!strv_eq(conf->listen, conf->nlisten, old->listen, old->nlisten))
            mcpgw_log_warn(C, "gateway.listen changed: restart mcpgw-wsd to apply it");
        if (!events_eq(&conf->events, &old->events))
            mcpgw_log_warn(C, "gateway.events changed: restart mcpgw-wsd to apply it");
        if (conf->log_syslog != old->log_syslog)
            mcpgw_log_warn(C, "gateway.log.syslog changed: restart mcpgw-wsd to apply it");
        if (!str_eq(conf->log_file, old->log_file)) {
            rc = mcpgw_log_open(conf->log_file, conf->log_level, true, MCPGW_LOG_WARN);
            if (rc < 0)
                mcpgw_log_error(C, "cannot open log file '%s': %s", conf->log_file,
                                mcpgw_strerror(rc));
        }
        mcpgw_log_set_level(conf->log_level);
        g.d.conf = mcpgw_hub_conf(g.d.hub);
        if (res.added || res.changed)
            start_idle_servers();
        /* What was read may differ from what was loaded if the file changed
         * in between: then the next SIGHUP loads it again, which is right. */
        if (read_rc == 0) {
            mcpgw_buf_release(&g.conf_text);
            g.conf_text = text;
            mcpgw_buf_init(&text, MCPGW_CONFIG_BYTES_MAX);
        }
    }
    mcpgw_buf_release(&text);
    if ((rc = mcpgw_log_reopen()) < 0)
        mcpgw_log_error(C, "cannot reopen the log file: %s", mcpgw_strerror(rc));
    if (load_tokens(false) == 0)
        wsd_sessions_recheck(&g.d);
    mcpgw_quota_set_limits(g.d.quota, &(struct mcpgw_quota_limits){
        (unsigned)g.d.conf->token_limits.max_concurrent,
        (unsigned)g.d.conf->token_limits.per_second, (unsigned)g.d.conf->token_limits.burst });
    sd_notify_msg("READY=1");
}

/* -- shutdown --------------------------------------------------------------------------------- */

static void begin_shutdown(int sig)
{
    if (g.phase == RUNNING) {
        unsigned n = wsd_sessions_inflight(&g.d);

        unsigned rest = wsd_rest_busy(g.d.rest, NULL);

        mcpgw_log_info(C, "%s: shutting down; %u clients, %u calls in flight, %u HTTP requests "
                       "and streams (grace %d ms)", strsignal(sig), g.d.nsessions, n, rest,
                       MCPGW_WS_SHUTDOWN_GRACE);
        sd_notify_msg("STOPPING=1");
        g.d.draining = true;
        /* Event streams end now with their final event; REST calls in
         * flight get the same grace as the WebSocket calls. */
        wsd_rest_shutdown(g.d.rest, false);
        for (size_t i = 0; i < g.nhttp; i++)
            wsd_http_quiesce(g.http[i]);
        g.phase = DRAINING;
        g.deadline = mcpgw__mono_ms() + MCPGW_WS_SHUTDOWN_GRACE;
    } else if (g.phase == DRAINING) {
        mcpgw_log_info(C, "%s again: not waiting for calls in flight", strsignal(sig));
        g.deadline = 0;
    }
}

static void shutdown_step(void)
{
    int64_t now = mcpgw__mono_ms();

    if (g.phase == DRAINING && ((wsd_sessions_inflight(&g.d) == 0 &&
                                 wsd_rest_busy(g.d.rest, NULL) == 0) || now >= g.deadline)) {
        unsigned n = wsd_sessions_inflight(&g.d), rest = wsd_rest_busy(g.d.rest, NULL);

        if (n) {
            mcpgw_log_info(C, "cancelling %u calls still in flight", n);
            wsd_sessions_cancel_calls(&g.d, "gateway is shutting down: call cancelled");
        }
        if (rest) {
            mcpgw_log_info(C, "cancelling %u HTTP requests still running", rest);
            wsd_rest_shutdown(g.d.rest, true);
        }
        g.d.closing = true;
        wsd_sessions_close(&g.d, 1001, "gateway shutting down");
        g.phase = CLOSING;
        g.deadline = now + MCPGW_WS_CLOSE_TIMEOUT + 1000;
    }
    if (g.phase == CLOSING) {
        unsigned open;

        /* Every REST answer, the streams' final events included, out. */
        wsd_rest_busy(g.d.rest, &open);
        if (g.d.nsessions == 0 && open == 0) {
            g.phase = DONE;
        } else if (now >= g.deadline) {
            if (g.d.nsessions)
                mcpgw_log_error(C, "%u clients did not close in time", g.d.nsessions);
            if (open)
                mcpgw_log_error(C, "%u HTTP responses were not sent in time", open);
            g.phase = DONE;
        }
    }
}

/* -- loop callbacks ----------------------------------------------------------------------------- */

static void on_signal(struct wsd_watch *w, uint32_t events)
{
    struct signalfd_siginfo si;

    while (read(w->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP)
            reload();
        else
            begin_shutdown((int)si.ssi_signo);
    }
}

static void on_hub(struct wsd_watch *w, uint32_t events)
{
    int rc = mcpgw_hub_run(g.d.hub, 0);

    if (rc < 0)
        mcpgw_log_error(C, "hub loop: %s", mcpgw_strerror(rc));
}

/* A call started outside mcpgw_hub_run() arms its deadline in the hub's
 * heap but not the hub's timerfd, which is re-armed at the end of each hub
 * turn: run one (non-blocking) turn after any turn that started calls. */
static void on_hub_kick(struct wsd_defer *d)
{
    mcpgw_hub_run(g.d.hub, 0);
}

/* A REST worker resumed a connection: libmicrohttpd must run to send
 * what it has (rest.h). */
static void on_rest_wake(struct wsd_watch *w, uint32_t events)
{
    uint64_t n;

    if (read(w->fd, &n, sizeof(n)) < 0) {
        /* EAGAIN: another turn drained it already */
    }
    for (size_t i = 0; i < g.nhttp; i++)
        wsd_http_kick(g.http[i]);
}

/* Events that did not make a batch go out at most this late. */
static void on_publish_timer(struct mcpgw__timer *t)
{
    wsd_publisher_kick(g.d.publisher, true);
}

static void on_tick(struct mcpgw__timer *t)
{
    if (token_file_changed()) {
        mcpgw_log_info(C, "token file '%s' changed: reloading it", g.d.conf->token_file);
        if (load_tokens(false) == 0)
            wsd_sessions_recheck(&g.d);
    }
    wsd_sessions_expire(&g.d, time(NULL));
    wsd_loop_timer(g.d.loop, &g.tick, mcpgw__mono_ms() + 1000);
}

/* -- main --------------------------------------------------------------------------------------- */

static void raise_nofile(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "listen", required_argument, NULL, 'l' },
        { "foreground", no_argument, NULL, 'f' },
        { "pid-file", required_argument, NULL, 'p' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 }
    };
    const char *config = NULL, *listen_opt = NULL, *pid_opt = NULL;
    struct mcpgw_conf *conf = NULL;
    int listen_fds[LISTEN_MAX], nlisten = 0, ready_fd = -1, sfd, rc, c;
    char names[LISTEN_MAX][128], err[512];
    bool foreground = false;
    struct rlimit rl;
    sigset_t sigs;

    mcpgw_codec_thread_init(); /* the loop runs on this thread */
    while ((c = getopt_long(argc, argv, "c:l:fp:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'l': listen_opt = optarg; break;
        case 'f': foreground = true; break;
        case 'p': pid_opt = optarg; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("mcpgw-wsd %s\n", PACKAGE_VERSION); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mcpgw-wsd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }
    if (mcpgw_conf_load(config, &conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "mcpgw-wsd: %s\n", err);
        return 1;
    }
    g.config_path = strdup(conf->path);
    mcpgw_buf_init(&g.conf_text, MCPGW_CONFIG_BYTES_MAX);
    /* Unreadable now (it was just loaded) only in a race: the first SIGHUP
     * then loads it. */
    if (g.config_path)
        read_config_text(&g.conf_text);
    g.pid_path = pid_opt ? absolute(pid_opt) : NULL;
    if (!g.config_path || (pid_opt && !g.pid_path)) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail_early;
    }
    rc = mcpgw_log_open(conf->log_file, conf->log_level, true,
                        foreground ? conf->log_level : MCPGW_LOG_ERROR);
    if (rc < 0) {
        snprintf(err, sizeof(err), "cannot open log file '%s': %s", conf->log_file,
                 mcpgw_strerror(rc));
        foreground = true;      /* no log to say it in: stderr must */
        goto fail_early;
    }
    if (conf->log_syslog) {
        openlog("mcpgw-wsd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
        mcpgw_log_set_sink(syslog_sink, NULL);
    }
    raise_nofile();
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
        rl.rlim_cur < (rlim_t)conf->limits.max_connections + 64)
        mcpgw_log_warn(C, "the open-file limit (%llu) is below gateway.limits.maxConnections "
                       "(%d) plus the daemon's own files: raise it (LimitNOFILE=, ulimit -n)",
                       (unsigned long long)rl.rlim_cur, conf->limits.max_connections);

    for (size_t i = 0; listen_opt ? i < 1 : i < conf->nlisten; i++) {
        const char *spec = listen_opt ? listen_opt : conf->listen[i];

        if (nlisten == LISTEN_MAX)
            break;
        listen_fds[nlisten] = open_listener(spec, names[nlisten], sizeof(names[0]), err,
                                            sizeof(err));
        if (listen_fds[nlisten] < 0) {
            foreground = true;  /* not daemonized yet: stderr is the terminal */
            goto fail_early;
        }
        nlisten++;
    }

    if (!foreground)
        ready_fd = daemonize();
    if (g.pid_path && (g.pid_fd = write_pid_file(g.pid_path, err, sizeof(err))) < 0)
        goto fail_early;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);

    mcpgw_buf_init(&g.d.out, MCPGW_MESSAGE_BYTES_MAX + 64 * 1024);
    if (sfd < 0 || wsd_loop_new(&g.d.loop) < 0 || wsd_iptab_new(&g.d.ips) < 0) {
        snprintf(err, sizeof(err), "cannot set up the event loop: %s", strerror(errno));
        goto fail_early;
    }
    g.d.hub = mcpgw_hub_new(conf, &rc);
    if (!g.d.hub) {
        snprintf(err, sizeof(err), "cannot create the hub: %s", mcpgw_strerror(rc));
        goto fail_early;
    }
    g.d.conf = mcpgw_hub_conf(g.d.hub);
    conf = NULL;
    /* The loop thread is this one: blocking calls from other threads (the
     * HTTP workers of the REST routes, when this daemon serves them) are
     * posted to it. */
    mcpgw_hub_bind_thread(g.d.hub);
    /* Calls made here show up in the event stream every front end reads.
     * A store that cannot be opened costs the stream, not the service. */
    if (mcpgw_events_open(g.d.conf, &g.events, err, sizeof(err)) < 0) {
        mcpgw_log_error(C, "no event stream: %s", err);
        g.events = NULL;
    } else if ((rc = wsd_publisher_start(g.events, &g.d.publisher)) < 0) {
        mcpgw_log_error(C, "no event stream: cannot start its thread: %s", mcpgw_strerror(rc));
    } else {
        mcpgw_hub_set_observer(g.d.hub, wsd_publisher_observer, g.d.publisher);
    }
    /* Calls started by one turn's messages reach each server in one write. */
    mcpgw_hub_set_batching(g.d.hub, true);
    if (load_tokens(true) < 0) {
        snprintf(err, sizeof(err), "cannot load the token file '%s' (see the log)",
                 g.d.conf->token_file);
        goto fail_early;
    }
    if (open_quota() < 0) {
        snprintf(err, sizeof(err), "cannot set up the per-token limits: out of memory");
        goto fail_early;
    }
    /* After mcpgw_hub_bind_thread(): the workers' hub calls are posted to
     * this thread.  Signals are blocked: the workers inherit that. */
    if (wsd_rest_start(g.d.hub, g.events, &g.d.rest, err, sizeof(err)) < 0)
        goto fail_early;
    wsd_watch_init(&g.sig_w, on_signal);
    wsd_watch_init(&g.hub_w, on_hub);
    wsd_watch_init(&g.rest_w, on_rest_wake);
    wsd_defer_init(&g.hub_kick, on_hub_kick);
    g.d.hub_kick = &g.hub_kick;
    mcpgw__timer_init(&g.tick, on_tick);
    mcpgw__timer_init(&g.publish, on_publish_timer);
    if (wsd_loop_watch(g.d.loop, &g.sig_w, sfd, EPOLLIN) < 0 ||
        wsd_loop_watch(g.d.loop, &g.hub_w, mcpgw_hub_fd(g.d.hub), EPOLLIN) < 0 ||
        wsd_loop_watch(g.d.loop, &g.rest_w, wsd_rest_wake_fd(g.d.rest), EPOLLIN) < 0 ||
        wsd_loop_timer(g.d.loop, &g.tick, mcpgw__mono_ms() + 1000) < 0) {
        snprintf(err, sizeof(err), "cannot set up the event loop: %s", strerror(errno));
        goto fail_early;
    }
    for (int i = 0; i < nlisten; i++) {
        if (wsd_http_start(&g.d, listen_fds[i], names[i], &g.http[g.nhttp], err,
                           sizeof(err)) < 0)
            goto fail_early;
        g.nhttp++;
        mcpgw_log_info(C, "listening on %s", names[i]);
    }
    start_idle_servers();
    mcpgw_log_info(C, "mcpgw-wsd %s ready: pid %ld, %zu MCP servers, auth %s, /ws and /api/v1 "
                   "(%d REST threads, up to %d event streams)", PACKAGE_VERSION,
                   (long)getpid(), mcpgw_hub_server_count(g.d.hub),
                   g.d.conf->require_auth ? "required" : "not required",
                   g.d.conf->websocket.rest_threads, g.d.conf->sse.max_streams);
    tell_parent(ready_fd, "OK");
    ready_fd = -1;
    sd_notify_msg("READY=1");

    while (g.phase != DONE) {
        int wait = -1;

        for (size_t i = 0; i < g.nhttp; i++) {
            int t = wsd_http_timeout(g.http[i]);

            if (t >= 0 && (wait < 0 || t < wait))
                wait = t;
        }
        if (g.phase != RUNNING && (wait < 0 || wait > 100))
            wait = 100;
        rc = wsd_loop_turn(g.d.loop, wait);
        if (rc < 0) {
            mcpgw_log_error(C, "event loop failed: %s", mcpgw_strerror(rc));
            break;
        }
        for (size_t i = 0; i < g.nhttp; i++)
            wsd_http_after_turn(g.http[i]);
        if (wsd_publisher_kick(g.d.publisher, false) && !mcpgw__timer_armed(&g.publish))
            wsd_loop_timer(g.d.loop, &g.publish, mcpgw__mono_ms() + WSD_PUBLISH_DELAY_MS);
        if (g.phase != RUNNING)
            shutdown_step();
    }

    /* Whatever still runs is cancelled and its writes fail; a worker in a
     * hub call needs the loop to hear the answer before it can be joined,
     * and the cancellation posted to the hub must run while the routes it
     * names exist: at least one more turn. */
    if (g.d.rest) {
        int64_t until = mcpgw__mono_ms() + 2000;

        wsd_rest_shutdown(g.d.rest, true);
        wsd_rest_abort(g.d.rest);
        do {
            wsd_loop_turn(g.d.loop, 20);
            for (size_t i = 0; i < g.nhttp; i++)
                wsd_http_after_turn(g.http[i]);
        } while (wsd_rest_busy(g.d.rest, NULL) && mcpgw__mono_ms() < until);
        if (wsd_rest_busy(g.d.rest, NULL))
            mcpgw_log_error(C, "HTTP requests still running at exit: waiting for them");
    }
    wsd_rest_stop(g.d.rest);
    if (g.d.nsessions == 0) {
        for (size_t i = 0; i < g.nhttp; i++)
            wsd_http_free(g.http[i]);
    }
    wsd_rest_free(g.d.rest);
    mcpgw_log_info(C, "stopping the MCP servers");
    wsd_loop_unwatch(g.d.loop, &g.hub_w);
    mcpgw_hub_free(g.d.hub);
    mcpgw_quota_free(g.d.quota);    /* after the hub: its last calls give their holds back */
    wsd_publisher_stop(g.d.publisher);
    mcpgw_events_close(g.events);
    mcpgw_tokens_free(g.d.tokens);
    wsd_iptab_free(g.d.ips);
    wsd_ws_cleanup();
    wsd_loop_free(g.d.loop);
    mcpgw_buf_release(&g.d.out);
    close(sfd);
    if (g.pid_fd >= 0) {
        unlink(g.pid_path);
        close(g.pid_fd);
    }
    mcpgw_log_info(C, "stopped");
    free(g.config_path);
    mcpgw_buf_release(&g.conf_text);
    free(g.pid_path);
    mcpgw_log_close();
    return rc < 0 ? 1 : 0;

fail_early:
    mcpgw_log_error(C, "%s", err);
    if (foreground)
        fprintf(stderr, "mcpgw-wsd: %s\n", err);
    tell_parent(ready_fd, err);
    wsd_rest_stop(g.d.rest);
    for (size_t i = 0; i < g.nhttp; i++)
        wsd_http_free(g.http[i]);
    wsd_rest_free(g.d.rest);
    for (int i = (int)g.nhttp; i < nlisten; i++)
        close(listen_fds[i]);
    mcpgw_hub_free(g.d.hub);
    mcpgw_quota_free(g.d.quota);
    wsd_publisher_stop(g.d.publisher);
    mcpgw_events_close(g.events);
    mcpgw_conf_free(conf);
    if (g.pid_fd >= 0)
        unlink(g.pid_path);
    free(g.config_path);
    mcpgw_buf_release(&g.conf_text);
    free(g.pid_path);
    mcpgw_log_close();
    return 1;
}
