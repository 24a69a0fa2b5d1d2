/* mcpgw-fcgi - the gateway as a multi-threaded FastCGI responder.
 *
 *   mcpgw-fcgi [-c FILE] [--listen PATH|HOST:PORT] [--socket-mode MODE]
 *              [--threads N] [-v] [-h] [-V]
 *
 * Started three ways (docs/deployment.md):
 *  - by the web server (mod_fcgid, lighttpd "bin-path") or spawn-fcgi, with
 *    the listening socket on fd 0 (FastCGI spec section 2.2);
 *  - as its own daemon with --listen: a unix socket (mode 0660 by default,
 *    for the web server's group) or a loopback TCP port, for Apache
 *    mod_proxy_fcgi or a lighttpd "socket"/"host" backend.
 *
 * Threads: fcgi.threads workers accept and serve requests; an event stream
 * is handed to a thread of its own with a small stack (up to sse.maxStreams
 * of them), so streams never starve REST calls.  One hub thread drives the
 * MCP servers, which every thread shares.
 *
 * We accept connections ourselves (accept4 with SOCK_CLOEXEC, so no MCP
 * server child can ever inherit a web connection) and give each to libfcgi
 * as a kept connection; libfcgi's own accept and close select() on the
 * descriptor, which aborts once descriptors pass FD_SETSIZE (1024) - a
 * thousand open streams get there.
 *
 * SIGTERM, SIGUSR1 (mod_fcgid, lighttpd, spawn-fcgi) and SIGINT: stop
 * accepting, end open streams with a final event, let REST calls finish
 * (cancelled after a grace period), stop the MCP servers, exit 0.
 * SIGHUP reopens the log.  It does not reload the configuration: the
 * routes borrow it on every worker thread for the life of the process, and
 * the web server replaces its responders to apply a changed file anyway
 * (docs/configuration.md, "What SIGHUP applies").  Handlers are installed
 * before FCGX_Init(), which then leaves them alone.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "adapter.h"
#include "codec.h"
#include "conf.h"
#include "err.h"
#include "events.h"
#include "guard.h"
#include "hub.h"
#include "limits.h"
#include "log.h"
#include "routes.h"
#include "theap.h"

/* Stack of a stream thread: the SSE loop needs a few KiB. */
#define STREAM_STACK (256u * 1024)
/* Shutdown: how long REST calls may run on before they are cancelled, and
 * how long after that we wait for every thread.  mod_fcgid kills a process
 * a few seconds after SIGTERM. */
#define GRACE_CALLS_MS 2000
#define GRACE_THREADS_MS 3000

static int sig_pipe[2] = { -1, -1 };
static volatile sig_atomic_t got_term, got_hup;

struct server {
    mcpgw_routes *rt;
    int listen_fd;
    int reserve_fd;             /* /dev/null, given up to refuse a connection at EMFILE */
    bool inet;                  /* TCP: check FCGI_WEB_SERVER_ADDRS */
    char *web_addrs;            /* FCGI_WEB_SERVER_ADDRS, or NULL */
    int stop_fd[2];             /* pipe: readable once stopping */
    atomic_uint stream_threads;
    unsigned max_stream_threads;
    /* One thread at a time waits for a connection: with all of them in
     * poll() on the listening socket, every connection would wake every
     * thread (a thundering herd that costs more than the request). */
    pthread_mutex_t accept_lock;
};

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char c = (unsigned char)sig;

    if (sig == SIGHUP)
        got_hup = 1;
    else
        got_term = 1;
    if (write(sig_pipe[1], &c, 1) < 0) {
        /* the pipe is full: a wake-up is pending anyway */
    }
    errno = saved;
}

/* The FastCGI spec says fds 1 and 2 are closed when a responder starts;
 * anything we open next (a pipe to an MCP server) would land there and a
 * stray write would corrupt it. */
static void sane_stdio(bool fd0_too)
{
    for (int fd = fd0_too ? 0 : 1; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0)
            continue;
        int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);

        if (n >= 0 && n != fd) {
            dup2(n, fd);
            close(n);
        }
    }
}

static bool is_listening_socket(int fd)
{
    int v = 0;
    socklen_t len = sizeof(v);

    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == 0 && v;
}

/* A unix socket at path, mode mode (umask can only take bits away, so the
 * mode is set after bind).  A stale socket nobody listens on is replaced. */
static int listen_unix(const char *path, mode_t mode)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    mode_t old;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "mcpgw-fcgi: socket path too long: %s\n", path);
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (lstat(path, &st) == 0) {
        int probe;

        if (!S_ISSOCK(st.st_mode)) {
            fprintf(stderr, "mcpgw-fcgi: '%s' exists and is not a socket\n", path);
            close(fd);
            return -1;
        }
        probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            fprintf(stderr, "mcpgw-fcgi: '%s' is in use by another process\n", path);
            close(probe);
            close(fd);
            return -1;
        }
        if (probe >= 0)
            close(probe);
        unlink(path);
    }
    old = umask(0177);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        umask(old);
        goto fail;
    }
    umask(old);
    if (chmod(path, mode) < 0 || listen(fd, 1024) < 0)
        goto fail;
    return fd;
fail:
    fprintf(stderr, "mcpgw-fcgi: cannot listen on '%s': %s\n", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

/* HOST:PORT on a loopback address only: a FastCGI socket must never be
 * reachable from the network (libfcgi's parser is not hardened against a
 * hostile peer, check A7). */
static int listen_tcp(const char *spec)
{
    char host[128];
    const char *colon = strrchr(spec, ':');
    struct sockaddr_storage ss = { 0 };
    socklen_t len;
    long port;
    char *end;
    int fd, one = 1;

    if (!colon || (size_t)(colon - spec) >= sizeof(host))
        goto bad;
    memcpy(host, spec, (size_t)(colon - spec));
    host[colon - spec] = '\0';
    port = strtol(colon + 1, &end, 10);
    if (*end || port < 1 || port > 65535)
        goto bad;
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

        host[strlen(host) - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1 ||
            !IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
            goto notloop;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        len = sizeof(*s6);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

        if (strcmp(host, "localhost") == 0)
            snprintf(host, sizeof(host), "127.0.0.1");
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            goto bad;
        if ((ntohl(s4->sin_addr.s_addr) >> 24) != 127)
            goto notloop;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        len = sizeof(*s4);
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 1024) < 0) {
        fprintf(stderr, "mcpgw-fcgi: cannot listen on %s: %s\n", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
bad:
    fprintf(stderr, "mcpgw-fcgi: --listen takes an absolute socket path or HOST:PORT, got '%s'\n",
            spec);
    return -1;
notloop:
    fprintf(stderr, "mcpgw-fcgi: refusing to listen on '%s': a FastCGI socket must be a unix "
            "socket or on a loopback address\n", spec);
    return -1;
}

/* FCGI_WEB_SERVER_ADDRS: the IPv4 peers allowed on a TCP socket. */
static bool peer_allowed(const struct server *s, const struct sockaddr_storage *ss)
{
    char addr[INET6_ADDRSTRLEN];
    const char *p;
    size_t n;

    if (!s->inet || !s->web_addrs || !*s->web_addrs)
        return true;
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, addr, sizeof(addr));
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, addr, sizeof(addr));
    else
        return true;
    n = strlen(addr);
    for (p = s->web_addrs; *p;) {
        size_t len = strcspn(p, ", ");

        if (len == n && memcmp(p, addr, n) == 0)
            return true;
        p += len;
        p += strspn(p, ", ");
    }
    return false;
}

static bool stopping(const struct server *s)
{
    struct pollfd p = { .fd = s->stop_fd[0], .events = POLLIN };

    return poll(&p, 1, 0) > 0;
}

/* Out of descriptors: a connection left in the backlog would hang its
 * client (the web server waits for an answer that never comes), so give
 * up the reserve descriptor for one accept and close that connection at
 * once: the web server answers its client 502/503 straight away, requests
 * in flight go on, and new ones are served again as soon as descriptors
 * free up.  Logged at most every 10 s.  false when there is no reserve
 * (it could not be reopened yet). */
static bool refuse_one(struct server *s)
{
    static int64_t logged_at;
    static unsigned long refused;
    int64_t now = mcpgw__mono_ms();
    int fd;

    if (s->reserve_fd < 0) {
        s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        return false;
    }
    close(s->reserve_fd);
    s->reserve_fd = -1;
    fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        refused++;
    }
    s->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (refused && now - logged_at >= 10000) {
        mcpgw_log_warn("fcgi", "out of file descriptors: refused %lu connection%s", refused,
                       refused == 1 ? "" : "s");
        logged_at = now;
        refused = 0;
    }
    return fd >= 0;
}

/* Wait for a connection and accept it; -1 when stopping.  Called with
 * accept_lock held. */
static int accept_one(struct server *s)
{
    for (;;) {
        struct pollfd p[2] = {
            { .fd = s->stop_fd[0], .events = POLLIN },
            { .fd = s->listen_fd, .events = POLLIN },
        };
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd;

        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            mcpgw_log_error("fcgi", "poll failed: %s", strerror(errno));
            return -1;
        }
        if (p[0].revents)
            return -1;
        if (!(p[1].revents & POLLIN))
            continue;
        fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED || errno == EPROTO)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && refuse_one(s))
                continue;
            /* Nothing left to refuse with: back off instead of spinning. */
            mcpgw_log_error("fcgi", "accept failed: %s", strerror(errno));
            poll(p, 1, 100);
            continue;
        }
        if (!peer_allowed(s, &ss)) {
            mcpgw_log_warn("fcgi", "refused a connection from an address not in "
                           "FCGI_WEB_SERVER_ADDRS");
            close(fd);
            continue;
        }
        return fd;
    }
}

static int next_connection(struct server *s)
{
    int fd;

    pthread_mutex_lock(&s->accept_lock);
    fd = accept_one(s);
    pthread_mutex_unlock(&s->accept_lock);
    return fd;
}

/* Read the next request on rq->ipcFd (a new or kept connection). */
static bool read_request(struct server *s, FCGX_Request *rq)
{
    struct pollfd p[2] = {
        { .fd = s->stop_fd[0], .events = POLLIN },
        { .fd = rq->ipcFd, .events = POLLIN },
    };

    /* libfcgi's failure path on a connection that closes before a request
     * select()s on it; look first, with poll. */
    while (poll(p, 2, -1) < 0)
        if (errno != EINTR)
            break;
    if (p[0].revents || !(p[1].revents & POLLIN) ||
        (p[1].revents & (POLLHUP | POLLERR) && !(p[1].revents & POLLIN))) {
        close(rq->ipcFd);
        rq->ipcFd = -1;
        return false;
    }
    /* libfcgi trusts the lengths in the params; look at them first. */
    if (!fcgi_head_ok(rq->ipcFd, s->stop_fd[0])) {
        close(rq->ipcFd);
        rq->ipcFd = -1;
        return false;
    }
    /* A kept connection: FCGX_Accept_r reads from it instead of accepting. */
    rq->keepConnection = 1;
    if (FCGX_Accept_r(rq) < 0) {
        if (rq->ipcFd >= 0) {
            close(rq->ipcFd);
            rq->ipcFd = -1;
        }
        return false;
    }
    return true;
}

struct stream_job {
    struct server *s;
    FCGX_Request *rq;
};

static void *stream_main(void *arg)
{
    struct stream_job *j = arg;

    fcgi_serve(j->s->rt, j->rq);
    if (fcgi_finish(j->rq))
        close(j->rq->ipcFd);
    free(j->rq);
    atomic_fetch_sub(&j->s->stream_threads, 1);
    free(j);
    return NULL;
}

/* Give an event stream a thread of its own.  False: serve it here. */
static bool hand_off(struct server *s, FCGX_Request *rq)
{
    pthread_attr_t attr;
    pthread_t t;
    struct stream_job *j;
    int rc;

    if (atomic_fetch_add(&s->stream_threads, 1) >= s->max_stream_threads) {
        atomic_fetch_sub(&s->stream_threads, 1);
        return false;
    }
    j = malloc(sizeof(*j));
    if (!j) {
        atomic_fetch_sub(&s->stream_threads, 1);
        return false;
    }
    j->s = s;
    j->rq = rq;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, STREAM_STACK);
    rc = pthread_create(&t, &attr, stream_main, j);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        mcpgw_log_warn("fcgi", "cannot start a stream thread: %s", strerror(rc));
        free(j);
        atomic_fetch_sub(&s->stream_threads, 1);
        return false;
    }
    return true;
}

static void *worker_main(void *arg)
{
    struct server *s = arg;
    FCGX_Request *rq = NULL;
    bool kept = false;

    mcpgw_codec_thread_init();
    while (!stopping(s)) {
        if (!rq) {
            rq = malloc(sizeof(*rq));
            /* No listening socket for libfcgi: it must never accept by
             * itself (its accept has no close-on-exec and select()s). */
            if (!rq || FCGX_InitRequest(rq, -1, 0) != 0) {
                mcpgw_log_error("fcgi", "out of memory for a request");
                free(rq);
                rq = NULL;
                break;
            }
            rq->ipcFd = -1;
        }
        if (!kept) {
            rq->ipcFd = next_connection(s);
            if (rq->ipcFd < 0)
                break;
        }
        if (!read_request(s, rq)) {
            kept = false;
            continue;
        }
        if (fcgi_is_stream(rq) && hand_off(s, rq)) {
            rq = NULL;      /* the stream thread owns it now */
            kept = false;
            continue;
        }
        fcgi_serve(s->rt, rq);
        kept = fcgi_finish(rq);
    }
    if (rq) {
        if (rq->ipcFd >= 0)
            close(rq->ipcFd);
        rq->ipcFd = -1;
        FCGX_Free(rq, 0);
        free(rq);
    }
    return NULL;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mcpgw-fcgi [-c FILE] [--listen PATH|HOST:PORT] [--socket-mode MODE]\n"
            "                  [--threads N] [-v] [-h] [-V]\n"
            "\n"
            "A FastCGI responder serving mcpgw's /api/v1 routes and event stream.\n"
            "Without --listen it expects the listening socket on fd 0, as a web server\n"
            "(mod_fcgid, lighttpd bin-path) or spawn-fcgi provides it.\n"
            "\n"
            "  -c, --config FILE     configuration (default: $MCPGW_CONFIG, else %s)\n"
            "  -l, --listen ADDR     listen on a unix socket path or a loopback HOST:PORT\n"
            "  -m, --socket-mode M   mode of the unix socket (octal, default 0660)\n"
            "  -t, --threads N       request threads (default: gateway.fcgi.threads)\n"
            "  -v, --verbose         log to stderr too (twice: debug)\n"
            "  -h, --help            this text\n"
            "  -V, --version         print the version\n",
            mcpgw_conf_default_path());
}

static int install_signals(void)
{
    struct sigaction sa;

    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        return -errno;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    return 0;
}

static void block_signals(int how)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(how, &set, NULL);
}

/* Wait until no request is active (or deadline). */
static bool drained(struct server *s, int64_t deadline)
{
    for (;;) {
        if (mcpgw_routes_active(s->rt, NULL) == 0 && atomic_load(&s->stream_threads) == 0)
            return true;
        if (mcpgw__mono_ms() >= deadline)
            return false;
        poll(NULL, 0, 20);
    }
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "listen", required_argument, NULL, 'l' },
        { "socket-mode", required_argument, NULL, 'm' },
        { "threads", required_argument, NULL, 't' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 }
    };
    const char *config_path = NULL, *listen_spec = NULL;
    mode_t sock_mode = 0660;
    int threads = 0, verbose = 0, opt, rc, exit_code = 1;
    struct mcpgw_conf *conf = NULL;
    mcpgw_hub *hub = NULL;
    mcpgw_events *events = NULL;
    struct server s = { .listen_fd = -1, .reserve_fd = -1, .stop_fd = { -1, -1 },
                        .accept_lock = PTHREAD_MUTEX_INITIALIZER };
    pthread_t *workers = NULL;
    int nworkers = 0;
    char err[512];
    struct mcpgw_routes_opts ro;

    while ((opt = getopt_long(argc, argv, "c:l:m:t:vhV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'l': listen_spec = optarg; break;
        case 'm': {
            char *end;
            long m = strtol(optarg, &end, 8);

            if (*end || m < 0 || m > 0777) {
                fprintf(stderr, "mcpgw-fcgi: --socket-mode takes an octal mode, got '%s'\n", optarg);
                return 64;
            }
            sock_mode = (mode_t)m;
            break;
        }
        case 't': {
            char *end;
            long t = strtol(optarg, &end, 10);

            if (*end || t < 1 || t > MCPGW_FCGI_THREADS_MAX) {
                fprintf(stderr, "mcpgw-fcgi: --threads takes 1 to %d, got '%s'\n",
                        MCPGW_FCGI_THREADS_MAX, optarg);
                return 64;
            }
            threads = (int)t;
            break;
        }
        case 'v': verbose++; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("mcpgw-fcgi %s\n", PACKAGE_VERSION); return 0;
        default: usage(stderr); return 64;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 64;
    }
    sane_stdio(listen_spec != NULL);
    if (install_signals() < 0) {
        fprintf(stderr, "mcpgw-fcgi: cannot create the signal pipe: %s\n", strerror(errno));
        return 1;
    }
    /* Before libfcgi reads anything: its reads go through the guard. */
    if (fcgi_guard_init() < 0) {
        fprintf(stderr, "mcpgw-fcgi: out of memory\n");
        return 1;
    }
    /* After our handlers: FCGX_Init installs its own only where none is. */
    if (FCGX_Init() != 0) {
        fprintf(stderr, "mcpgw-fcgi: FCGX_Init failed\n");
        return 1;
    }
    if (mcpgw_conf_load(config_path, &conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "mcpgw-fcgi: %s\n", err);
        return 1;
    }
    {
        int level = verbose > 1 ? MCPGW_LOG_DEBUG : conf->log_level;
        int err_level = verbose > 1 ? MCPGW_LOG_DEBUG : verbose ? MCPGW_LOG_INFO : MCPGW_LOG_WARN;

        if (mcpgw_log_open(conf->log_file, level > err_level ? level : err_level, true,
                           err_level) < 0) {
            mcpgw_log_open(NULL, err_level, true, err_level);
            mcpgw_log_warn("fcgi", "cannot open the log '%s'; logging to stderr only",
                           conf->log_file);
        }
    }
    if (listen_spec) {
        s.listen_fd = listen_spec[0] == '/' ? listen_unix(listen_spec, sock_mode)
                                            : listen_tcp(listen_spec);
        if (s.listen_fd < 0)
            goto out;
    } else if (is_listening_socket(0)) {
        s.listen_fd = 0;
        fcntl(0, F_SETFD, FD_CLOEXEC);
    } else {
        fprintf(stderr, "mcpgw-fcgi: fd 0 is not a listening socket: start me from the web "
                "server or spawn-fcgi, or give --listen PATH|HOST:PORT\n");
        exit_code = 64;
        goto out;
    }
    s.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);

        if (getsockname(s.listen_fd, (struct sockaddr *)&ss, &len) == 0)
            s.inet = ss.ss_family == AF_INET || ss.ss_family == AF_INET6;
    }
    if (s.inet && getenv("FCGI_WEB_SERVER_ADDRS"))
        s.web_addrs = strdup(getenv("FCGI_WEB_SERVER_ADDRS"));
    fcntl(s.listen_fd, F_SETFL, fcntl(s.listen_fd, F_GETFL) | O_NONBLOCK);
    if (pipe2(s.stop_fd, O_CLOEXEC) < 0) {
        mcpgw_log_error("fcgi", "cannot create a pipe: %s", strerror(errno));
        goto out;
    }
    if (!threads)
        threads = conf->fcgi_threads;
    s.max_stream_threads = (unsigned)conf->sse.max_streams;

    /* Threads (the hub's included) must not take the signals: main waits
     * for them on the self-pipe. */
    block_signals(SIG_BLOCK);
    rc = mcpgw_events_open(conf, &events, err, sizeof(err));
    if (rc < 0) {
        mcpgw_log_error("fcgi", "cannot open the event store: %s", err);
        goto out;
    }
    hub = mcpgw_hub_new(conf, &rc);
    if (!hub) {
        mcpgw_log_error("fcgi", "cannot create the dispatch hub: %s", mcpgw_strerror(rc));
        goto out;
    }
    conf = NULL;    /* the hub owns it */
    mcpgw_hub_set_observer(hub, mcpgw_events_hub_observer, events);
    ro = (struct mcpgw_routes_opts){ .conf = mcpgw_hub_conf(hub), .hub = hub, .events = events,
                                     .component = "fcgi" };
    if (mcpgw_routes_new(&ro, &s.rt, err, sizeof(err)) < 0) {
        mcpgw_log_error("fcgi", "%s", err);
        goto out;
    }
    if ((rc = mcpgw_hub_thread_start(hub)) < 0) {
        mcpgw_log_error("fcgi", "cannot start the hub thread: %s", mcpgw_strerror(rc));
        goto out;
    }
    workers = calloc((size_t)threads, sizeof(*workers));
    if (!workers)
        goto out;
    for (nworkers = 0; nworkers < threads; nworkers++)
        if ((rc = pthread_create(&workers[nworkers], NULL, worker_main, &s)) != 0) {
            mcpgw_log_error("fcgi", "cannot start a worker thread: %s", strerror(rc));
            break;
        }
    block_signals(SIG_UNBLOCK);
    mcpgw_log_info("fcgi", "mcpgw-fcgi %s ready: %d threads, up to %u streams, pid %d",
                   PACKAGE_VERSION, nworkers, s.max_stream_threads, (int)getpid());
    exit_code = 0;
    while (!got_term && nworkers > 0) {
        struct pollfd p = { .fd = sig_pipe[0], .events = POLLIN };
        unsigned char buf[16];

        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            break;
        while (read(sig_pipe[0], buf, sizeof(buf)) > 0)
            ;
        if (got_hup) {
            got_hup = 0;
            mcpgw_log_reopen();
            mcpgw_log_info("fcgi", "log reopened");
        }
    }
    mcpgw_log_info("fcgi", "stopping: %u requests open", mcpgw_routes_active(s.rt, NULL));
out:
    if (s.stop_fd[1] >= 0) {
        /* Workers idle in poll wake up; streams end with a final event. */
        close(s.stop_fd[1]);
        s.stop_fd[1] = -1;
    }
    if (s.rt) {
        mcpgw_routes_shutdown(s.rt, false);
        if (!drained(&s, mcpgw__mono_ms() + GRACE_CALLS_MS)) {
            mcpgw_log_warn("fcgi", "cancelling %u calls still running",
                           mcpgw_routes_active(s.rt, NULL));
            mcpgw_routes_shutdown(s.rt, true);
            if (!drained(&s, mcpgw__mono_ms() + GRACE_THREADS_MS))
                mcpgw_log_error("fcgi", "requests still open at exit");
        }
    }
    for (int i = 0; i < nworkers; i++)
        pthread_join(workers[i], NULL);
    free(workers);
    /* Stream threads are detached; they are gone once the count is 0. */
    mcpgw_hub_free(hub);
    /* A stream thread still running (it cannot be, short of a wedged
     * client write) keeps the routes and the store: exit frees them. */
    if (atomic_load(&s.stream_threads) == 0) {
        mcpgw_routes_free(s.rt);
        mcpgw_events_close(events);
    }
    mcpgw_conf_free(conf);
    if (s.listen_fd > 0) {
        close(s.listen_fd);
        if (listen_spec && listen_spec[0] == '/')
            unlink(listen_spec);
    }
    if (s.reserve_fd >= 0)
        close(s.reserve_fd);
    free(s.web_addrs);
    mcpgw_log_info("fcgi", "stopped");
    mcpgw_log_close();
    return exit_code;
}
