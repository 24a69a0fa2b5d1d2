/* mcpgw-events.cgi - the /api/v1/events stream as a plain CGI program.
 *
 * For hosts without FastCGI (Apache mod_cgi/mod_cgid, lighttpd mod_cgi):
 * the same routes, events, heartbeats, Last-Event-ID resume and auth as
 * mcpgw-fcgi, one process per open stream.  It reads the shared event store
 * and starts no MCP server: tool calls are served by mcpgw-fcgi or
 * mcpgw-wsd, whose events it relays.  It also answers POST /api/v1/tickets.
 *
 * Config: $MCPGW_CONFIG (SetEnv / setenv.add-environment), else the default
 * path; -c FILE when run by hand.
 *
 * It exits when the client goes (a failed write, or the web server closing
 * our stdout), when the stream reaches gateway.sse.maxStreamMs, or on
 * SIGTERM (Apache's mod_cgi sends it when the client aborts), after a
 * final stream_end event where the client can still read it.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "err.h"
#include "events.h"
#include "http.h"
#include "log.h"
#include "routes.h"

static mcpgw_routes *routes;

static void on_term(int sig)
{
    (void)sig;
    /* mcpgw_routes_shutdown only sets a flag and writes an eventfd. */
    if (routes)
        mcpgw_routes_shutdown(routes, false);
}

static const char *get_env(void *ud, const char *name)
{
    (void)ud;
    return getenv(name);
}

static ssize_t read_stdin(void *ud, char *buf, size_t len)
{
    (void)ud;
    for (;;) {
        ssize_t n = read(0, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        return n;
    }
}

static int write_all(const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(1, p, n);

        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int w_begin(void *ud, int status, const struct mcpgw_http_header *h, size_t n)
{
    struct mcpgw_buf head;
    int rc;

    (void)ud;
    mcpgw_buf_init(&head, 16384);
    rc = mcpgw_http_cgi_head(&head, status, h, n);
    if (rc == 0)
        rc = write_all(head.ptr, head.len);
    mcpgw_buf_release(&head);
    return rc;
}

static int w_write(void *ud, const char *p, size_t n)
{
    (void)ud;
    return write_all(p, n);
}

static int w_flush(void *ud)
{
    (void)ud;
    return 0;       /* every write goes straight to the pipe */
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    struct mcpgw_conf *conf = NULL;
    mcpgw_events *events = NULL;
    struct mcpgw_http_cgi cgi = { .get = get_env };
    struct mcpgw_http_request req;
    struct mcpgw_http_writer w = { w_begin, w_write, w_flush, NULL, 1, 0 };
    struct mcpgw_routes_opts ro;
    struct sigaction sa;
    char err[512];
    int rc;

    if (argc == 3 && strcmp(argv[1], "-c") == 0) {
        config_path = argv[2];
    } else if (argc != 1) {
        fprintf(stderr, "usage: mcpgw-events.cgi [-c FILE]  (run by a web server as a CGI "
                "program; see mcpgw-events.cgi(8))\n");
        return 64;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (fcntl(2, F_GETFD) < 0)
        open("/dev/null", O_WRONLY);
    if (!getenv("GATEWAY_INTERFACE") && !getenv("REQUEST_METHOD")) {
        fprintf(stderr, "mcpgw-events.cgi: not started as a CGI program (no REQUEST_METHOD)\n");
        return 64;
    }
    if (mcpgw_conf_load(config_path, &conf, err, sizeof(err)) < 0) {
        static const char body[] = "{\"error\":\"the gateway is not configured\","
                                   "\"code\":\"internal\"}";
        /* The web server's error log gets stderr. */
        fprintf(stderr, "mcpgw-events.cgi: %s\n", err);
        mcpgw_http_respond(&w, 500, "application/json", NULL, 0, body, sizeof(body) - 1);
        return 1;
    }
    if (mcpgw_log_open(conf->log_file, conf->log_level, true, MCPGW_LOG_WARN) < 0)
        mcpgw_log_open(NULL, MCPGW_LOG_WARN, true, MCPGW_LOG_WARN);
    rc = mcpgw_events_open(conf, &events, err, sizeof(err));
    if (rc == 0) {
        ro = (struct mcpgw_routes_opts){ .conf = conf, .hub = NULL, .events = events,
                                         .component = "sse" };
        rc = mcpgw_routes_new(&ro, &routes, err, sizeof(err));
    }
    if (rc < 0) {
        static const char body[] = "{\"error\":\"the event stream is unavailable\","
                                   "\"code\":\"server_unavailable\"}";
        mcpgw_log_error("sse", "%s", err);
        mcpgw_http_respond(&w, 503, "application/json", NULL, 0, body, sizeof(body) - 1);
        goto out;
    }
    if (mcpgw_http_cgi_request(&cgi, &req) < 0) {
        static const char body[] = "{\"error\":\"malformed request (CONTENT_LENGTH or path)\","
                                   "\"code\":\"bad_request\"}";
        mcpgw_http_respond(&w, 400, "application/json", NULL, 0, body, sizeof(body) - 1);
        goto out;
    }
    req.read_body = read_stdin;
    mcpgw_routes_handle(routes, &req, &w);
out:
    {
        mcpgw_routes *rt = routes;

        routes = NULL;
        mcpgw_routes_free(rt);
    }
    mcpgw_events_close(events);
    mcpgw_conf_free(conf);
    mcpgw_log_close();
    return 0;
}
