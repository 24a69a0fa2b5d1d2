/* check_npm.c - the hub against the real MCP servers from npm.
 *
 * @modelcontextprotocol/server-everything and server-memory, as pinned in
 * package-lock.json and installed by tools/setup.sh into node_modules.
 * These prove the protocol details that a fake cannot: version negotiation,
 * tools registered after notifications/initialized, progress from a real
 * long-running tool, isError results, a server that keeps sending progress
 * after a cancel, and a SIGKILL mid-call.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conf.h"
#include "err.h"
#include "hub.h"
#include "theap.h"

static char modules[512];  /* node_modules: $MCPGW_NODE_MODULES or the source tree's */
static char tmpdir[] = "/tmp/check_npm.XXXXXX";

static mcpgw_hub *hub_new(void)
{
    char json[4096], err[512];
    struct mcpgw_conf *conf;
    mcpgw_hub *hub;
    int rc;

    snprintf(json, sizeof(json),
             "{\"gateway\":{\"stateDir\":\"%s\"},\"mcpServers\":{"
             "\"everything\":{\"command\":\"node\",\"args\":[\"%s/"
             "@modelcontextprotocol/server-everything/dist/index.js\",\"stdio\"],"
             "\"restart\":{\"initialDelayMs\":100}},"
             "\"memory\":{\"command\":\"node\",\"args\":[\"%s/"
             "@modelcontextprotocol/server-memory/dist/index.js\"],"
             "\"env\":{\"MEMORY_FILE_PATH\":\"%s/memory.jsonl\"}}}}",
             tmpdir, modules, modules, tmpdir);
    rc = mcpgw_conf_parse(json, strlen(json), "npm.json", tmpdir, &conf, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    hub = mcpgw_hub_new(conf, &rc);
    ck_assert_ptr_nonnull(hub);
    return hub;
}

struct result {
    int done, progress, status;
    bool is_error;
    char text[1024];
    char error[256];
};

static void record(mcpgw_call *call, const struct mcpgw_call_event *ev, void *ud)
{
    struct result *r = ud;
    json_object *content, *text;

    if (ev->kind == MCPGW_CALL_PROGRESS) {
        r->progress++;
        return;
    }
    r->done++;
    r->status = ev->status;
    r->is_error = ev->is_error;
    if (ev->error)
        snprintf(r->error, sizeof(r->error), "%s", ev->error);
    if (ev->status == 0 && json_object_object_get_ex(ev->result, "content", &content) &&
        json_object_object_get_ex(json_object_array_get_idx(content, 0), "text", &text))
        snprintf(r->text, sizeof(r->text), "%s", json_object_get_string(text));
}

static void wait_for(mcpgw_hub *hub, const int *counter, int want, int ms)
{
    int64_t end = mcpgw__mono_ms() + ms;

    while (*counter < want && mcpgw__mono_ms() < end)
        mcpgw_hub_run(hub, 20);
    ck_assert_msg(*counter >= want, "waited %d ms: %d of %d", ms, *counter, want);
}

static void do_call(mcpgw_hub *hub, const char *server, const char *tool, const char *args,
                    const struct mcpgw_call_opts *opts, struct result *r, mcpgw_call **out)
{
    json_object *a = json_tokener_parse(args);

    memset(r, 0, sizeof(*r));
    ck_assert_int_eq(mcpgw_hub_call(hub, server, tool, a, opts, record, r, out), 0);
    json_object_put(a);
}

static void call_wait(mcpgw_hub *hub, const char *server, const char *tool, const char *args,
                      struct result *r)
{
    do_call(hub, server, tool, args, NULL, r, NULL);
    wait_for(hub, &r->done, 1, 20000);
}

START_TEST(everything_echo_sum_and_version)
{
    mcpgw_hub *hub = hub_new();
    struct mcpgw_server_health h;
    struct result r;

    call_wait(hub, "everything", "echo", "{\"message\":\"hello\"}", &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.text, "Echo: hello");
    call_wait(hub, "everything", "get-sum", "{\"a\":2,\"b\":3.5}", &r);
    ck_assert_str_eq(r.text, "The sum of 2 and 3.5 is 5.5.");
    ck_assert_int_eq(mcpgw_hub_health_of(hub, "everything", &h), 0);
    ck_assert_str_eq(h.protocol_version, "2025-11-25");
    ck_assert_uint_ge(h.ntools, 12);
    mcpgw_hub_free(hub);
}
END_TEST

/* simulate-research-query is registered only after notifications/initialized
 * and announced with list_changed: the hub must pick it up. */
START_TEST(everything_tools_added_after_initialized_are_seen)
{
    mcpgw_hub *hub = hub_new();
    struct result r;
    json_object *tools;
    bool found = false;

    call_wait(hub, "everything", "echo", "{\"message\":\"x\"}", &r);
    for (int64_t end = mcpgw__mono_ms() + 3000; !found && mcpgw__mono_ms() < end;) {
        mcpgw_hub_run(hub, 20);
        tools = mcpgw_hub_tools(hub, "everything");
        for (size_t i = 0; tools && i < json_object_array_length(tools); i++) {
            json_object *name;

            json_object_object_get_ex(json_object_array_get_idx(tools, i), "name", &name);
            found = found || strcmp(json_object_get_string(name), "simulate-research-query") == 0;
        }
    }
    ck_assert(found);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(everything_tool_errors_are_results)
{
    mcpgw_hub *hub = hub_new();
    struct result r;

    call_wait(hub, "everything", "echo", "{\"message\":123}", &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(r.is_error);
    ck_assert_ptr_nonnull(strstr(r.text, "Input validation error"));
    /* unknown tools never reach the server */
    ck_assert_int_eq(mcpgw_hub_call(hub, "everything", "no-such-tool", NULL, NULL, record, &r,
                                    NULL), MCPGW_EUNKNOWNTOOL);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(everything_long_running_reports_progress)
{
    mcpgw_hub *hub = hub_new();
    struct mcpgw_call_opts opts = { .progress = true };
    struct result r;

    do_call(hub, "everything", "trigger-long-running-operation", "{\"duration\":1,\"steps\":4}",
            &opts, &r, NULL);
    wait_for(hub, &r.done, 1, 20000);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(r.progress, 4);
    ck_assert_ptr_nonnull(strstr(r.text, "Long running operation completed"));
    mcpgw_hub_free(hub);
}
END_TEST

/* server-everything ignores cancellation and keeps sending progress: the
 * hub must stop it reaching the caller. */
START_TEST(everything_cancel_stops_progress)
{
    mcpgw_hub *hub = hub_new();
    struct mcpgw_call_opts opts = { .progress = true };
    struct result r, e;
    mcpgw_call *c;
    int seen;

    do_call(hub, "everything", "trigger-long-running-operation", "{\"duration\":2,\"steps\":8}",
            &opts, &r, &c);
    wait_for(hub, &r.progress, 1, 20000);
    mcpgw_call_cancel(c, "test cancel");
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.status, MCPGW_ECANCELED);
    seen = r.progress;
    for (int64_t end = mcpgw__mono_ms() + 1200; mcpgw__mono_ms() < end;)
        mcpgw_hub_run(hub, 20);
    ck_assert_int_eq(r.progress, seen);
    call_wait(hub, "everything", "echo", "{\"message\":\"after\"}", &e);
    ck_assert_str_eq(e.text, "Echo: after");
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(everything_sixty_four_in_flight)
{
    mcpgw_hub *hub = hub_new();
    struct result r[64];
    int done = 0;

    call_wait(hub, "everything", "echo", "{\"message\":\"warm\"}", &r[0]);
    for (int i = 0; i < 64; i++) {
        char args[64];

        snprintf(args, sizeof(args), "{\"message\":\"n%d\"}", i);
        do_call(hub, "everything", "echo", args, NULL, &r[i], NULL);
    }
    for (int64_t end = mcpgw__mono_ms() + 20000; done < 64 && mcpgw__mono_ms() < end;) {
        mcpgw_hub_run(hub, 20);
        done = 0;
        for (int i = 0; i < 64; i++)
            done += r[i].done;
    }
    for (int i = 0; i < 64; i++) {
        char want[32];

        snprintf(want, sizeof(want), "Echo: n%d", i);
        ck_assert_int_eq(r[i].done, 1);
        ck_assert_str_eq(r[i].text, want);
    }
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(everything_sigkill_mid_call)
{
    mcpgw_hub *hub = hub_new();
    struct mcpgw_server_health h;
    struct result r, e;
    int64_t t0;

    call_wait(hub, "everything", "echo", "{\"message\":\"x\"}", &e);
    mcpgw_hub_health_of(hub, "everything", &h);
    do_call(hub, "everything", "trigger-long-running-operation", "{\"duration\":10,\"steps\":2}",
            NULL, &r, NULL);
    mcpgw_hub_run(hub, 50);
    t0 = mcpgw__mono_ms();
    kill(h.pid, SIGKILL);
    wait_for(hub, &r.done, 1, 5000);
    ck_assert_int_lt(mcpgw__mono_ms() - t0, 1000);
    ck_assert_int_eq(r.status, MCPGW_ESERVERGONE);
    ck_assert_msg(strstr(r.error, "killed by signal 9"), "%s", r.error);
    for (int64_t end = mcpgw__mono_ms() + 10000; mcpgw__mono_ms() < end;) {
        mcpgw_hub_run(hub, 20);
        mcpgw_hub_health_of(hub, "everything", &h);
        if (h.state == MCPGW_SERVER_READY)
            break;
    }
    call_wait(hub, "everything", "echo", "{\"message\":\"again\"}", &e);
    ck_assert_str_eq(e.text, "Echo: again");
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(memory_create_then_search)
{
    mcpgw_hub *hub = hub_new();
    struct result r;

    call_wait(hub, "memory", "create_entities",
              "{\"entities\":[{\"name\":\"mcpgw\",\"entityType\":\"project\","
              "\"observations\":[\"an MCP gateway written in C\"]},"
              "{\"name\":\"lighttpd\",\"entityType\":\"server\",\"observations\":[\"fast\"]}]}",
              &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(!r.is_error);
    call_wait(hub, "memory", "search_nodes", "{\"query\":\"gateway\"}", &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.text, "mcpgw"));
    ck_assert_ptr_null(strstr(r.text, "lighttpd"));
    call_wait(hub, "memory", "create_entities", "{\"entities\":\"x\"}", &r);
    ck_assert(r.is_error);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(shutdown_leaves_no_node_process)
{
    mcpgw_hub *hub = hub_new();
    struct mcpgw_server_health a, b;
    struct result r;
    int st;

    call_wait(hub, "everything", "echo", "{\"message\":\"x\"}", &r);
    call_wait(hub, "memory", "read_graph", "{}", &r);
    mcpgw_hub_health_of(hub, "everything", &a);
    mcpgw_hub_health_of(hub, "memory", &b);
    mcpgw_hub_free(hub);
    ck_assert_int_eq(kill(a.pid, 0), -1);
    ck_assert_int_eq(kill(b.pid, 0), -1);
    ck_assert_int_eq(waitpid(-1, &st, WNOHANG), -1);
    ck_assert_int_eq(errno, ECHILD);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("npm");
    TCase *tc = tcase_create("npm");
    const char *top = getenv("top_srcdir"), *mods = getenv("MCPGW_NODE_MODULES");
    char probe[700];
    SRunner *sr;
    int failed;

    if (mods && *mods)
        snprintf(modules, sizeof(modules), "%s", mods);
    else
        snprintf(modules, sizeof(modules), "%s/node_modules", top ? top : ".");
    snprintf(probe, sizeof(probe), "%s/@modelcontextprotocol/server-memory/dist/index.js",
             modules);
    if (access(probe, R_OK) != 0) {
        fprintf(stderr, "check_npm: %s missing: run tools/setup.sh (npm ci)\n", probe);
        return getenv("CI") ? 1 : 77;
    }
    if (!mkdtemp(tmpdir))
        return 1;
    signal(SIGPIPE, SIG_IGN);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, everything_echo_sum_and_version);
    tcase_add_test(tc, everything_tools_added_after_initialized_are_seen);
    tcase_add_test(tc, everything_tool_errors_are_results);
    tcase_add_test(tc, everything_long_running_reports_progress);
    tcase_add_test(tc, everything_cancel_stops_progress);
    tcase_add_test(tc, everything_sixty_four_in_flight);
    tcase_add_test(tc, everything_sigkill_mid_call);
    tcase_add_test(tc, memory_create_then_search);
    tcase_add_test(tc, shutdown_leaves_no_node_process);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    snprintf(probe, sizeof(probe), "rm -rf '%s'", tmpdir);
    if (system(probe) != 0)
        fprintf(stderr, "check_npm: could not remove %s\n", tmpdir);
    return failed ? 1 : 0;
}
