/* mcpgw - the operator's command line, and the library's first user.
 *
 *   mcpgw [-c FILE] [-v] servers [--no-start]
 *   mcpgw [-c FILE] [-v] tools SERVER [--json]
 *   mcpgw [-c FILE] [-v] call SERVER TOOL [JSON] [--timeout MS] [--json]
 *   mcpgw check-config [FILE]
 *   mcpgw [-c FILE] token add NAME --scope SCOPE [--scope SCOPE...] [--expires-days N]
 *   mcpgw [-c FILE] token list
 *   mcpgw [-c FILE] token revoke NAME
 *
 * Exit status of call: 0 success, 1 the tool reported an error (isError or
 * a JSON-RPC error), 2 the call failed (timeout, server down, ...), 64 usage.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "conf.h"
#include "err.h"
#include "events.h"
#include "hub.h"
#include "limits.h"
#include "log.h"
#include "pins.h"
#include "token.h"

#define EXIT_TOOL_ERROR 1
#define EXIT_FAILED 2
#define EXIT_USAGE 64

static const char *config_path;
static int verbose;
static mcpgw_events *events;    /* the shared event stream, when it can be opened */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mcpgw [-c FILE] [-v] COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  servers [--no-start]             start each server and show its state\n"
            "  tools SERVER [--json] [--pending]\n"
            "                                   list a server's tools (--pending: those\n"
            "                                   withheld or flagged by toolPinning)\n"
            "  tools approve SERVER [TOOL...]   pin the current definitions (all, or these)\n"
            "  call SERVER TOOL [JSON] [--timeout MS] [--json]\n"
            "                                   call a tool; JSON is its arguments object\n"
            "  check-config [FILE]              validate a configuration file\n"
            "  token add NAME --scope SCOPE [--scope SCOPE...] [--expires-days N]\n"
            "                                   create a token; it is printed once, on the last line\n"
            "  token list                       list tokens (names, prefixes, scopes; never secrets)\n"
            "  token revoke NAME                revoke a token\n"
            "\n"
            "options:\n"
            "  -c, --config FILE   configuration (default: $MCPGW_CONFIG, else %s)\n"
            "  -v, --verbose       log to stderr too (twice: debug)\n"
            "  -h, --help          this text\n"
            "  -V, --version       print the version\n",
            mcpgw_conf_default_path());
}

static struct mcpgw_conf *load_config(void)
{
    struct mcpgw_conf *conf;
    char err[512];

    if (mcpgw_conf_load(config_path, &conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "mcpgw: %s\n", err);
        return NULL;
    }
    return conf;
}

/* Logs go to the configured file like every other program's, so an operator
 * sees CLI calls beside the daemons'.  A log file we may not write (say, a
 * system path for an unprivileged user) is not worth failing the command. */
static void open_log(const struct mcpgw_conf *conf)
{
    int level = verbose > 1 ? MCPGW_LOG_DEBUG : conf->log_level;
    int err_level = verbose > 1 ? MCPGW_LOG_DEBUG : verbose ? MCPGW_LOG_INFO : MCPGW_LOG_WARN;
    int rc = mcpgw_log_open(conf->log_file, level > err_level ? level : err_level, true, err_level);

    if (rc < 0) {
        mcpgw_log_open(NULL, err_level, true, err_level);
        if (verbose)
            fprintf(stderr, "mcpgw: cannot open log '%s': %s; logging to stderr only\n",
                    conf->log_file, mcpgw_strerror(rc));
    }
}

/* The CLI's calls belong on the same event stream as the daemons', so a
 * browser watching /api/v1/events sees them too.  A store this user cannot
 * open (a system stateDir, say) is no reason to refuse the command. */
static void open_events(const struct mcpgw_conf *conf)
{
    char err[256];

    if (mcpgw_events_open(conf, &events, err, sizeof(err)) < 0) {
        events = NULL;
        mcpgw_log_info("cli", "event stream not available: %s", err);
    }
}

static mcpgw_hub *open_hub(struct mcpgw_conf *conf)
{
    int rc;
    mcpgw_hub *hub = mcpgw_hub_new(conf, &rc);

    if (!hub) {
        fprintf(stderr, "mcpgw: cannot create the dispatch hub: %s\n", mcpgw_strerror(rc));
        mcpgw_conf_free(conf);
        return NULL;
    }
    open_events(mcpgw_hub_conf(hub));
    if (events)
        mcpgw_hub_set_observer(hub, mcpgw_events_hub_observer, events);
    return hub;
}

/* The hub first: stopping its servers still publishes their state. */
static void close_hub(mcpgw_hub *hub)
{
    mcpgw_hub_free(hub);
    mcpgw_events_close(events);
    events = NULL;
}

/* ---- servers -------------------------------------------------------------- */

struct wait_all {
    int pending;
};

static void tools_arrived(void *ud, int status, json_object *tools, const char *error)
{
    ((struct wait_all *)ud)->pending--;
}

static void print_health(const struct mcpgw_server_health *h)
{
    char retry[48] = "";

    if (h->state == MCPGW_SERVER_BACKOFF) {
        int64_t in = h->next_retry_ms - mcpgw_now_ms();

        snprintf(retry, sizeof(retry), " (retry in %.1f s)", in > 0 ? in / 1000.0 : 0.0);
    }
    printf("%-20s %-12s %5u %8d  %-11s %s%s\n", h->id, mcpgw_server_state_name(h->state),
           h->ntools, (int)h->pid, h->protocol_version ? h->protocol_version : "-",
           h->last_error, retry);
}

static int cmd_servers(int argc, char **argv)
{
    struct mcpgw_conf *conf;
    struct wait_all w = { 0 };
    struct mcpgw_server_health h;
    mcpgw_hub *hub;
    bool start = true;
    int failed = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-start") == 0) {
            start = false;
        } else {
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!(conf = load_config()))
        return EXIT_FAILED;
    open_log(conf);
    if (!(hub = open_hub(conf)))
        return EXIT_FAILED;
    if (start) {
        for (size_t i = 0; mcpgw_hub_health(hub, i, &h); i++)
            if (mcpgw_hub_list_tools(hub, h.id, tools_arrived, &w) == 0)
                w.pending++;
        while (w.pending > 0)
            mcpgw_hub_run(hub, -1);
    }
    printf("%-20s %-12s %5s %8s  %-11s %s\n", "SERVER", "STATE", "TOOLS", "PID", "PROTOCOL",
           "LAST ERROR");
    for (size_t i = 0; mcpgw_hub_health(hub, i, &h); i++) {
        print_health(&h);
        if (start && h.state != MCPGW_SERVER_READY && h.state != MCPGW_SERVER_DISABLED)
            failed++;
    }
    close_hub(hub);
    return failed ? EXIT_FAILED : 0;
}

/* ---- tools ---------------------------------------------------------------- */

struct tools_result {
    bool done;
    int status;
    json_object *tools;
    char error[200];
};

static void tools_done(void *ud, int status, json_object *tools, const char *error)
{
    struct tools_result *r = ud;

    r->done = true;
    r->status = status;
    r->tools = json_object_get(tools);
    snprintf(r->error, sizeof(r->error), "%s", error ? error : mcpgw_strerror(status));
}

static const char *first_line(const char *s, char *buf, size_t len)
{
    size_t n = strcspn(s, "\n");

    if (n >= len)
        n = len - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return buf;
}

/* Start the hub and wait for server's tool list: the hub and 0, or NULL
 * after saying why. */
static mcpgw_hub *hub_with_tools(const char *server, struct tools_result *r)
{
    struct mcpgw_conf *conf;
    mcpgw_hub *hub;
    int rc;

    if (!(conf = load_config()))
        return NULL;
    open_log(conf);
    if (!(hub = open_hub(conf)))
        return NULL;
    rc = mcpgw_hub_list_tools(hub, server, tools_done, r);
    if (rc < 0) {
        fprintf(stderr, "mcpgw: '%s': %s\n", server, mcpgw_strerror(rc));
        close_hub(hub);
        return NULL;
    }
    while (!r->done)
        mcpgw_hub_run(hub, -1);
    if (r->status < 0) {
        fprintf(stderr, "mcpgw: %s\n", r->error);
        json_object_put(r->tools);
        close_hub(hub);
        return NULL;
    }
    return hub;
}

/* mcpgw tools approve SERVER [TOOL...] */
static int tools_approve(int argc, char **argv)
{
    struct tools_result r = { 0 };
    mcpgw_hub *hub;
    size_t n = 0;
    char err[512];
    int rc;

    if (argc < 3 || argv[2][0] == '-') {
        fprintf(stderr, "usage: mcpgw tools approve SERVER [TOOL...]\n");
        return EXIT_USAGE;
    }
    if (!(hub = hub_with_tools(argv[2], &r)))
        return EXIT_FAILED;
    rc = mcpgw_hub_approve_tools(hub, argv[2], (const char *const *)argv + 3, (size_t)argc - 3,
                                 &n, err, sizeof(err));
    if (rc < 0)
        fprintf(stderr, "mcpgw: %s\n", err);
    else
        printf("approved %zu tool definition%s of server '%s'\n", n, n == 1 ? "" : "s", argv[2]);
    json_object_put(r.tools);
    close_hub(hub);
    return rc < 0 ? EXIT_FAILED : 0;
}

/* The tools of the list that are not served as the pins stand (or that
 * warn mode only flags), with why; all when --json. */
static int tools_pending(mcpgw_hub *hub, const char *server, bool as_json)
{
    const struct mcpgw_conf *conf = mcpgw_hub_conf(hub);
    json_object *all = mcpgw_hub_tools_unpinned(hub, server), *out = NULL;
    enum mcpgw_pin_verdict *v = NULL;
    mcpgw_pins *pins = NULL;
    char path[4096], err[512];
    size_t n;
    int rc = EXIT_FAILED;

    if (conf->tool_pinning == MCPGW_PINNING_OFF) {
        fprintf(stderr, "mcpgw: gateway.toolPinning is off: nothing is pinned or withheld\n");
        return EXIT_FAILED;
    }
    n = all ? json_object_array_length(all) : 0;
    snprintf(path, sizeof(path), "%s/tool-pins.json", conf->state_dir);
    if (!(v = calloc(n ? n : 1, sizeof(*v))) || !(out = json_object_new_array()) ||
        mcpgw_pins_open(path, &pins) < 0) {
        fprintf(stderr, "mcpgw: out of memory\n");
        goto out;
    }
    if (mcpgw_pins_check(pins, server, all, v, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "mcpgw: %s\n", err);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(all, i), *name;

        if (v[i] == MCPGW_PIN_MATCH)
            continue;
        if (as_json) {
            json_object *e = json_object_new_object();

            json_object_object_add(e, "pin", json_object_new_string(mcpgw_pin_verdict_name(v[i])));
            json_object_object_add(e, "tool", json_object_get(t));
            json_object_array_add(out, e);
        } else {
            printf("%-8s %s\n", mcpgw_pin_verdict_name(v[i]),
                   json_object_object_get_ex(t, "name", &name) ? json_object_get_string(name) : "?");
        }
    }
    if (as_json)
        printf("%s\n", json_object_to_json_string_ext(out, JSON_C_TO_STRING_PRETTY |
                                                     JSON_C_TO_STRING_NOSLASHESCAPE));
    rc = 0;
out:
    json_object_put(out);
    mcpgw_pins_free(pins);
    free(v);
    return rc;
}

static int cmd_tools(int argc, char **argv)
{
    struct tools_result r = { 0 };
    mcpgw_hub *hub;
    bool as_json = false, pending = false;
    const char *server = NULL;

    if (argc > 1 && strcmp(argv[1], "approve") == 0)
        return tools_approve(argc, argv);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            as_json = true;
        else if (strcmp(argv[i], "--pending") == 0)
            pending = true;
        else if (!server)
            server = argv[i];
        else {
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!server) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!(hub = hub_with_tools(server, &r)))
        return EXIT_FAILED;
    if (pending) {
        int rc = tools_pending(hub, server, as_json);

        json_object_put(r.tools);
        close_hub(hub);
        return rc;
    }
    if (as_json) {
        printf("%s\n", json_object_to_json_string_ext(r.tools, JSON_C_TO_STRING_PRETTY |
                                                      JSON_C_TO_STRING_NOSLASHESCAPE));
    } else {
        for (size_t i = 0; i < json_object_array_length(r.tools); i++) {
            json_object *t = json_object_array_get_idx(r.tools, i), *name, *desc;
            char line[100];

            json_object_object_get_ex(t, "name", &name);
            printf("%-32s %s\n", json_object_get_string(name),
                   json_object_object_get_ex(t, "description", &desc) ?
                   first_line(json_object_get_string(desc), line, sizeof(line)) : "");
        }
    }
    json_object_put(r.tools);
    close_hub(hub);
    return 0;
}

/* ---- call ----------------------------------------------------------------- */

static void print_progress(void *ud, const struct mcpgw_call_event *ev)
{
    if (ev->has_total)
        fprintf(stderr, "progress %g/%g%s%s\n", ev->progress, ev->total,
                ev->message ? ": " : "", ev->message ? ev->message : "");
    else
        fprintf(stderr, "progress %g%s%s\n", ev->progress, ev->message ? ": " : "",
                ev->message ? ev->message : "");
}

/* Text blocks as text, anything else as its JSON: what a person wants to
 * read.  --json gives the CallToolResult untouched. */
static void print_result(json_object *result)
{
    json_object *content;

    if (!json_object_object_get_ex(result, "content", &content) ||
        !json_object_is_type(content, json_type_array)) {
        printf("%s\n", json_object_to_json_string_ext(result, JSON_C_TO_STRING_PRETTY));
        return;
    }
    for (size_t i = 0; i < json_object_array_length(content); i++) {
        json_object *block = json_object_array_get_idx(content, i), *type, *text;

        if (json_object_object_get_ex(block, "type", &type) &&
            strcmp(json_object_get_string(type), "text") == 0 &&
            json_object_object_get_ex(block, "text", &text))
            printf("%s\n", json_object_get_string(text));
        else
            printf("%s\n", json_object_to_json_string_ext(block, JSON_C_TO_STRING_PLAIN));
    }
}

static int cmd_call(int argc, char **argv)
{
    struct mcpgw_call_opts opts = { .progress = true, .caller = "cli", .transport = "cli" };
    struct mcpgw_conf *conf;
    json_object *args = NULL, *result = NULL;
    const char *pos[3] = { 0 };
    int npos = 0, rc, exit_code;
    bool as_json = false, is_error = false;
    mcpgw_hub *hub;
    char err[256];

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            as_json = true;
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);

            if (*end || v < MCPGW_CALL_TIMEOUT_MIN || v > MCPGW_CALL_TIMEOUT_MAX) {
                fprintf(stderr, "mcpgw: --timeout: expected milliseconds from %d to %d\n",
                        MCPGW_CALL_TIMEOUT_MIN, MCPGW_CALL_TIMEOUT_MAX);
                return EXIT_USAGE;
            }
            opts.timeout_ms = (int)v;
        } else if (npos < 3) {
            pos[npos++] = argv[i];
        } else {
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (npos < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (pos[2]) {
        enum json_tokener_error jerr;

        args = json_tokener_parse_verbose(pos[2], &jerr);
        if (!args || !json_object_is_type(args, json_type_object)) {
            fprintf(stderr, "mcpgw: arguments must be a JSON object: %s\n",
                    args ? "got another JSON type" : json_tokener_error_desc(jerr));
            json_object_put(args);
            return EXIT_USAGE;
        }
    }
    if (!(conf = load_config())) {
        json_object_put(args);
        return EXIT_FAILED;
    }
    open_log(conf);
    if (!(hub = open_hub(conf))) {
        json_object_put(args);
        return EXIT_FAILED;
    }
    rc = mcpgw_hub_call_sync(hub, pos[0], pos[1], args, &opts, print_progress, NULL, &result,
                             &is_error, err, sizeof(err));
    if (rc == 0) {
        if (as_json)
            printf("%s\n", json_object_to_json_string_ext(result, JSON_C_TO_STRING_PRETTY |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE));
        else
            print_result(result);
        exit_code = is_error ? EXIT_TOOL_ERROR : 0;
    } else {
        if (rc == MCPGW_EUNKNOWNSERVER || rc == MCPGW_EUNKNOWNTOOL)
            fprintf(stderr, "mcpgw: %s '%s'\n", mcpgw_strerror(rc),
                    rc == MCPGW_EUNKNOWNSERVER ? pos[0] : pos[1]);
        else
            fprintf(stderr, "mcpgw: %s\n", err);
        exit_code = rc == MCPGW_ERPC ? EXIT_TOOL_ERROR : EXIT_FAILED;
    }
    json_object_put(result);
    json_object_put(args);
    close_hub(hub);
    return exit_code;
}

/* ---- check-config ----------------------------------------------------------- */

static int cmd_check_config(int argc, char **argv)
{
    struct mcpgw_conf *conf;
    char err[512];
    const char *path = argc > 1 ? argv[1] : config_path;

    if (argc > 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (mcpgw_conf_load(path, &conf, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("%s: ok (%zu server%s)\n", conf->path, conf->nservers, conf->nservers == 1 ? "" : "s");
    mcpgw_conf_free(conf);
    return 0;
}

/* ---- token -------------------------------------------------------------------- */



static int token_add(int argc, char **argv, const char *path)
{
    const char *scopes[MCPGW_TOKEN_SCOPES_MAX + 1];
    size_t nscopes = 0;
    const char *name = NULL;
    time_t expires = 0;
    char token[128], err[512];

    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--scope") == 0 && i + 1 < argc) {
            if (nscopes == MCPGW_TOKEN_SCOPES_MAX) {
                fprintf(stderr, "mcpgw: at most %d scopes\n", MCPGW_TOKEN_SCOPES_MAX);
                return EXIT_USAGE;
            }
            scopes[nscopes++] = argv[++i];
        } else if (strcmp(argv[i], "--expires-days") == 0 && i + 1 < argc) {
            char *end;
            long d = strtol(argv[++i], &end, 10);

            if (*end || d < 1 || d > 36500) {
                fprintf(stderr, "mcpgw: --expires-days: expected 1 to 36500\n");
                return EXIT_USAGE;
            }
            expires = time(NULL) + (time_t)d * 86400;
        } else if (!name && argv[i][0] != '-') {
            name = argv[i];
        } else {
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!name || nscopes == 0) {
        fprintf(stderr, "usage: mcpgw token add NAME --scope SCOPE [--scope SCOPE...]\n");
        return EXIT_USAGE;
    }
    scopes[nscopes] = NULL;
    if (mcpgw_tokens_add(path, name, scopes, nscopes, expires, token, sizeof(token), err,
                         sizeof(err)) < 0) {
        fprintf(stderr, "mcpgw: %s\n", err);
        return EXIT_FAILED;
    }
    printf("token '%s' created; it is shown once, store it now:\n%s\n", name, token);
    return 0;
}

static void format_time(time_t t, char *buf, size_t len)
{
    struct tm tm;

    if (!t) {
        snprintf(buf, len, "never");
        return;
    }
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d", &tm);
}

static int token_list(const char *path)
{
    struct mcpgw_token_info info;
    mcpgw_tokens *t;
    char err[512], created[16], expires[16];
    time_t now = time(NULL);

    if (mcpgw_tokens_load(path, &t, err, sizeof(err)) < 0) {
        fprintf(stderr, "mcpgw: %s\n", err);
        return EXIT_FAILED;
    }
    printf("%-24s %-14s %-10s %-10s %-8s %s\n", "NAME", "PREFIX", "CREATED", "EXPIRES",
           "STATUS", "SCOPES");
    for (size_t i = 0; mcpgw_tokens_get(t, i, &info); i++) {
        format_time(info.created, created, sizeof(created));
        format_time(info.expires, expires, sizeof(expires));
        printf("%-24s %-14s %-10s %-10s %-8s", info.name, info.prefix, created, expires,
               info.revoked ? "revoked" : info.expires && info.expires <= now ? "expired" : "active");
        for (size_t j = 0; j < info.nscopes; j++)
            printf("%s%s", j ? "," : " ", info.scopes[j]);
        printf("\n");
    }
    mcpgw_tokens_free(t);
    return 0;
}

/* Every process holding a stream for this token ends it on its own (they
 * re-read the token file); the event tells everyone watching. */
static void publish_revoked(const struct mcpgw_conf *conf, const char *name)
{
    json_object *data = json_object_new_object();

    open_events(conf);
    if (events && data &&
        json_object_object_add(data, "name", json_object_new_string(name)) == 0)
        mcpgw_events_publish(events, "token_revoked", data, NULL);
    json_object_put(data);
    mcpgw_events_close(events);
    events = NULL;
}

static int cmd_token(int argc, char **argv)
{
    struct mcpgw_conf *conf;
    char err[512];
    const char *path;
    int rc;

    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (!(conf = load_config()))
        return EXIT_FAILED;
    path = conf->token_file;
    mcpgw_log_open(NULL, verbose ? MCPGW_LOG_INFO : MCPGW_LOG_WARN, true,
                   verbose ? MCPGW_LOG_INFO : MCPGW_LOG_WARN);
    if (strcmp(argv[1], "add") == 0) {
        rc = token_add(argc - 2, argv + 2, path);
    } else if (strcmp(argv[1], "list") == 0 && argc == 2) {
        rc = token_list(path);
    } else if (strcmp(argv[1], "revoke") == 0 && argc == 3) {
        rc = mcpgw_tokens_revoke(path, argv[2], err, sizeof(err));
        if (rc < 0) {
            fprintf(stderr, "mcpgw: %s\n", err);
        } else {
            printf("token '%s' revoked\n", argv[2]);
            publish_revoked(conf, argv[2]);
        }
        rc = rc < 0 ? EXIT_FAILED : 0;
    } else {
        usage(stderr);
        rc = EXIT_USAGE;
    }
    mcpgw_conf_free(conf);
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "config", required_argument, NULL, 'c' },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 }
    };
    int c, rc;

    /* A write to a server that just died must be an EPIPE, not our death. */
    signal(SIGPIPE, SIG_IGN);
    /* '+': options stop at the command, so "call x y --json" works. */
    while ((c = getopt_long(argc, argv, "+c:vhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': config_path = optarg; break;
        case 'v': verbose++; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("mcpgw %s\n", PACKAGE_VERSION); return 0;
        default: usage(stderr); return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    argc -= optind;
    argv += optind;
    if (strcmp(argv[0], "servers") == 0)
        rc = cmd_servers(argc, argv);
    else if (strcmp(argv[0], "tools") == 0)
        rc = cmd_tools(argc, argv);
    else if (strcmp(argv[0], "call") == 0)
        rc = cmd_call(argc, argv);
    else if (strcmp(argv[0], "check-config") == 0)
        rc = cmd_check_config(argc, argv);
    else if (strcmp(argv[0], "token") == 0)
        rc = cmd_token(argc, argv);
    else {
        fprintf(stderr, "mcpgw: unknown command '%s'\n", argv[0]);
        usage(stderr);
        rc = EXIT_USAGE;
    }
    mcpgw_log_close();
    return rc;
}
