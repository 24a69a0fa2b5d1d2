/* check_hub.c - the dispatch hub against the fault-injection MCP server.
 *
 * Every test drives a real child process (tests/fake_mcp) through the
 * public API: calls in flight out of order, progress, timeouts, cancels,
 * crashes, hangs, garbage, oversized output, restarts with back-off, server
 * requests, tool-list changes, shutdown without zombies.
 */
#include "config.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conf.h"
#include "err.h"
#include "hub.h"
#include "hub_internal.h"
#include "limits.h"
#include "log.h"
#include "pins.h"
#include "slots.h"
#include "theap.h"

static char fake[512];

/* A hub over one fake server "fake" started with extra_args, plus extra
 * per-server keys (JSON fragment, may be ""). */
static mcpgw_hub *hub_with(const char *extra_args, const char *server_keys, const char *gw_keys)
{
    char json[4096], err[512];
    struct mcpgw_conf *conf;
    mcpgw_hub *hub;
    int rc;

    snprintf(json, sizeof(json),
             "{\"gateway\":{\"log\":{\"level\":\"debug\"},\"stateDir\":\"/tmp\"%s%s},"
             "\"mcpServers\":{\"fake\":{\"command\":\"%s\",\"args\":[%s],"
             "\"env\":{\"FAKE_CONFIGURED\":\"yes\"},"
             "\"restart\":{\"initialDelayMs\":100,\"maxDelayMs\":1000}%s%s}}}",
             gw_keys[0] ? "," : "", gw_keys, fake, extra_args,
             server_keys[0] ? "," : "", server_keys);
    rc = mcpgw_conf_parse(json, strlen(json), "test.json", "/tmp", &conf, err, sizeof(err));
    ck_assert_msg(rc == 0, "config: %s", err);
    hub = mcpgw_hub_new(conf, &rc);
    ck_assert_ptr_nonnull(hub);
    return hub;
}

struct result {
    int done;                   /* DONE callbacks seen (must end at 1) */
    int progress;
    int status;
    bool is_error;
    int rpc_code;
    char text[256];
    char error[256];
    size_t text_len;
    int64_t at;                 /* order of completion */
};

static int64_t completion_seq;

static void record(mcpgw_call *call, const struct mcpgw_call_event *ev, void *ud)
{
    struct result *r = ud;
    json_object *content, *block, *text;

    if (ev->kind == MCPGW_CALL_PROGRESS) {
        r->progress++;
        return;
    }
    r->done++;
    r->status = ev->status;
    r->is_error = ev->is_error;
    r->rpc_code = ev->rpc_code;
    r->at = ++completion_seq;
    if (ev->error)
        snprintf(r->error, sizeof(r->error), "%s", ev->error);
    if (ev->status == 0 && json_object_object_get_ex(ev->result, "content", &content) &&
        (block = json_object_array_get_idx(content, 0)) &&
        json_object_object_get_ex(block, "text", &text)) {
        r->text_len = (size_t)json_object_get_string_len(text);
        snprintf(r->text, sizeof(r->text), "%s", json_object_get_string(text));
    }
}

static void run_until(mcpgw_hub *hub, const int *counter, int want, int max_ms)
{
    int64_t end = mcpgw__mono_ms() + max_ms;

    while (*counter < want && mcpgw__mono_ms() < end)
        mcpgw_hub_run(hub, 20);
    ck_assert_msg(*counter >= want, "waited %d ms for %d events, got %d", max_ms, want, *counter);
}

static void run_for(mcpgw_hub *hub, int ms)
{
    int64_t end = mcpgw__mono_ms() + ms;

    while (mcpgw__mono_ms() < end)
        mcpgw_hub_run(hub, 10);
}

static int call(mcpgw_hub *hub, const char *tool, const char *args, struct result *r,
                const struct mcpgw_call_opts *opts, mcpgw_call **out)
{
    json_object *a = args ? json_tokener_parse(args) : NULL;
    int rc = mcpgw_hub_call(hub, "fake", tool, a, opts, record, r, out);

    json_object_put(a);
    return rc;
}

/* Call and wait for the single DONE. */
static void call_wait(mcpgw_hub *hub, const char *tool, const char *args, struct result *r)
{
    memset(r, 0, sizeof(*r));
    ck_assert_int_eq(call(hub, tool, args, r, NULL, NULL), 0);
    run_until(hub, &r->done, 1, 10000);
}

static void assert_no_children(void)
{
    int st;

    ck_assert_int_eq(waitpid(-1, &st, WNOHANG), -1);
    ck_assert_int_eq(errno, ECHILD);
}

START_TEST(echo_round_trip_and_health)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct mcpgw_server_health h;
    struct result r;

    ck_assert_int_eq(mcpgw_hub_health_of(hub, "fake", &h), 0);
    ck_assert_int_eq(h.state, MCPGW_SERVER_IDLE);
    call_wait(hub, "echo", "{\"message\":\"hi \\u2028 there\"}", &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(!r.is_error);
    ck_assert_str_eq(r.text, "Echo: hi \xe2\x80\xa8 there");
    ck_assert_int_eq(mcpgw_hub_health_of(hub, "fake", &h), 0);
    ck_assert_int_eq(h.state, MCPGW_SERVER_READY);
    ck_assert_str_eq(h.protocol_version, "2025-11-25");
    ck_assert_int_gt(h.pid, 0);
    ck_assert_uint_gt(h.ntools, 5);
    ck_assert_uint_eq(h.inflight, 0);
    mcpgw_hub_free(hub);
    assert_no_children();
}
END_TEST

START_TEST(answers_arrive_out_of_order)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct result slow = { 0 }, fast = { 0 };
    int done = 0;

    ck_assert_int_eq(call(hub, "sleep", "{\"ms\":400}", &slow, NULL, NULL), 0);
    ck_assert_int_eq(call(hub, "echo", "{\"message\":\"quick\"}", &fast, NULL, NULL), 0);
    while (done < 2) {
        mcpgw_hub_run(hub, 50);
        done = slow.done + fast.done;
    }
    ck_assert_int_eq(slow.status, 0);
    ck_assert_int_eq(fast.status, 0);
    ck_assert_int_lt(fast.at, slow.at);
    mcpgw_hub_free(hub);
}
END_TEST

/* 200 calls in flight, each with its own payload and delay: every one
 * completes exactly once with its own answer. */
START_TEST(many_in_flight_each_gets_its_own_answer)
{
    enum { N = 200 };
    mcpgw_hub *hub = hub_with("", "", "");
    struct result *r = calloc(N, sizeof(*r));
    int total = 0;

    for (int i = 0; i < N; i++) {
        char args[64];

        snprintf(args, sizeof(args), "{\"ms\":%d,\"message\":\"m%d\"}", (i * 37) % 50, i);
        ck_assert_int_eq(call(hub, "sleep", args, &r[i], NULL, NULL), 0);
    }
    for (int64_t end = mcpgw__mono_ms() + 10000; total < N && mcpgw__mono_ms() < end;) {
        mcpgw_hub_run(hub, 20);
        total = 0;
        for (int i = 0; i < N; i++)
            total += r[i].done;
    }
    for (int i = 0; i < N; i++) {
        char want[32];

        snprintf(want, sizeof(want), "m%d", i);
        ck_assert_int_eq(r[i].done, 1);
        ck_assert_int_eq(r[i].status, 0);
        ck_assert_msg(strstr(r[i].text, want), "call %d got '%s'", i, r[i].text);
    }
    free(r);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(progress_is_relayed_then_done)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct mcpgw_call_opts opts = { .progress = true };
    struct result r = { 0 };

    ck_assert_int_eq(call(hub, "progress", "{\"steps\":4,\"intervalMs\":20}", &r, &opts, NULL), 0);
    run_until(hub, &r.done, 1, 5000);
    ck_assert_int_eq(r.progress, 4);
    ck_assert_int_eq(r.status, 0);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(no_progress_unless_asked)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct result r = { 0 };

    ck_assert_int_eq(call(hub, "progress", "{\"steps\":3,\"intervalMs\":10}", &r, NULL, NULL), 0);
    run_until(hub, &r.done, 1, 5000);
    ck_assert_int_eq(r.progress, 0);
    mcpgw_hub_free(hub);
}
END_TEST

/* A timed-out call completes once; its late answer is dropped; the server
 * keeps serving. */
START_TEST(timeout_completes_once_and_drops_the_late_answer)
{
    mcpgw_hub *hub = hub_with("\"--ignore-cancel\"", "", "");
    struct mcpgw_call_opts opts = { .timeout_ms = 150, .progress = true };
    struct result r = { 0 }, e;

    ck_assert_int_eq(call(hub, "sleep", "{\"ms\":600}", &r, &opts, NULL), 0);
    run_until(hub, &r.done, 1, 5000);
    ck_assert_int_eq(r.status, MCPGW_ETIMEDOUT);
    ck_assert_ptr_nonnull(strstr(r.error, "server 'fake' did not answer 'sleep' within"));
    run_for(hub, 700);
    ck_assert_int_eq(r.done, 1);
    call_wait(hub, "echo", "{\"message\":\"still here\"}", &e);
    ck_assert_str_eq(e.text, "Echo: still here");
    mcpgw_hub_free(hub);
}
END_TEST

/* A hung call is cut at its timeout even while progress keeps coming. */
START_TEST(timeout_holds_while_progress_flows)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct mcpgw_call_opts opts = { .timeout_ms = 300, .progress = true };
    struct result r = { 0 };

    ck_assert_int_eq(call(hub, "progress", "{\"steps\":100,\"intervalMs\":20}", &r, &opts, NULL), 0);
    run_until(hub, &r.done, 1, 5000);
    ck_assert_int_eq(r.status, MCPGW_ETIMEDOUT);
    ck_assert_int_gt(r.progress, 3);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(cancel_runs_the_callback_and_drops_later_progress)
{
    mcpgw_hub *hub = hub_with("\"--ignore-cancel\"", "", "");
    struct mcpgw_call_opts opts = { .progress = true };
    struct result r = { 0 }, e;
    mcpgw_call *c;
    int seen;

    ck_assert_int_eq(call(hub, "progress", "{\"steps\":10,\"intervalMs\":30}", &r, &opts, &c), 0);
    run_until(hub, &r.progress, 1, 5000);
    mcpgw_call_cancel(c, "test");
    ck_assert_int_eq(r.done, 1);
    ck_assert_int_eq(r.status, MCPGW_ECANCELED);
    seen = r.progress;
    run_for(hub, 200);      /* the server keeps sending: we must drop it */
    ck_assert_int_eq(r.progress, seen);
    ck_assert_int_eq(r.done, 1);
    call_wait(hub, "echo", "{\"message\":\"x\"}", &e);
    ck_assert_int_eq(e.status, 0);
    mcpgw_hub_free(hub);
}
END_TEST

/* A crash fails exactly the calls the server held, then it comes back. */
START_TEST(crash_fails_in_flight_calls_and_restarts)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct result a = { 0 }, b = { 0 }, e;
    struct mcpgw_server_health h;
    int done = 0;

    call_wait(hub, "echo", "{\"message\":\"warm\"}", &e);
    ck_assert_int_eq(call(hub, "sleep", "{\"ms\":5000}", &a, NULL, NULL), 0);
    ck_assert_int_eq(call(hub, "crash", "{\"signal\":9}", &b, NULL, NULL), 0);
    while (done < 2) {
        mcpgw_hub_run(hub, 50);
        done = a.done + b.done;
    }
    ck_assert_int_eq(a.status, MCPGW_ESERVERGONE);
    ck_assert_int_eq(b.status, MCPGW_ESERVERGONE);
    ck_assert_msg(strstr(b.error, "server 'fake' exited during the call (killed by signal 9"),
                  "%s", b.error);
    ck_assert_int_eq(mcpgw_hub_health_of(hub, "fake", &h), 0);
    ck_assert_int_eq(h.state, MCPGW_SERVER_BACKOFF);
    ck_assert_int_gt(h.next_retry_ms, 0);
    /* calls during back-off fail at once */
    ck_assert_int_eq(call(hub, "echo", "{}", &e, NULL, NULL), MCPGW_EUNAVAIL);
    for (int64_t end = mcpgw__mono_ms() + 5000; mcpgw__mono_ms() < end;) {
        mcpgw_hub_run(hub, 20);
        mcpgw_hub_health_of(hub, "fake", &h);
        if (h.state == MCPGW_SERVER_READY)
            break;
    }
    ck_assert_int_eq(h.state, MCPGW_SERVER_READY);
    ck_assert_uint_eq(h.restarts, 1);
    call_wait(hub, "echo", "{\"message\":\"back\"}", &e);
    ck_assert_str_eq(e.text, "Echo: back");
    mcpgw_hub_free(hub);
    assert_no_children();
}
END_TEST

START_TEST(unknown_server_and_tool)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct result r = { 0 }, e;

    ck_assert_int_eq(mcpgw_hub_call(hub, "nope", "echo", NULL, NULL, record, &r, NULL),
                     MCPGW_EUNKNOWNSERVER);
    /* before the tool list is known: the answer comes through the callback */
    ck_assert_int_eq(call(hub, "no_such_tool", NULL, &r, NULL, NULL), 0);
    run_until(hub, &r.done, 1, 5000);
    ck_assert_int_eq(r.status, MCPGW_EUNKNOWNTOOL);
    ck_assert_str_eq(r.error, "server 'fake' has no tool 'no_such_tool'");
    /* once known: at once */
    call_wait(hub, "echo", "{\"message\":\"x\"}", &e);
    ck_assert_int_eq(call(hub, "no_such_tool", NULL, &r, NULL, NULL), MCPGW_EUNKNOWNTOOL);
    {
        json_object *arr = json_object_new_array();

        ck_assert_int_eq(mcpgw_hub_call(hub, "fake", "echo", arr, NULL, record, &r, NULL),
                         -EINVAL);
        json_object_put(arr);
    }
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(config_allow_list_hides_tools)
{
    mcpgw_hub *hub = hub_with("", "\"tools\":[\"echo\"]", "");
    struct result r = { 0 }, e;

    ck_assert_int_eq(call(hub, "sleep", "{\"ms\":1}", &r, NULL, NULL), MCPGW_EUNKNOWNTOOL);
    call_wait(hub, "echo", "{\"message\":\"x\"}", &e);
    ck_assert_int_eq(e.status, 0);
    ck_assert_uint_eq(json_object_array_length(mcpgw_hub_tools(hub, "fake")), 1);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(tool_errors_are_results_rpc_errors_are_errors)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct result r;

    call_wait(hub, "iserror", NULL, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(r.is_error);
    call_wait(hub, "error", "{\"code\":-32042,\"message\":\"nope\"}", &r);
    ck_assert_int_eq(r.status, MCPGW_ERPC);
    ck_assert_int_eq(r.rpc_code, -32042);
    ck_assert_str_eq(r.error, "server 'fake' returned error -32042: nope");
    mcpgw_hub_free(hub);
}
END_TEST

/* opts.result_text: a plain answer comes as the server's own bytes (no
 * tree); anything a byte copy could get wrong comes as a parsed tree, the
 * same as without the option. */
struct text_result {
    int done, status;
    bool is_error, had_tree;
    char text[256];             /* result_json as received, "" if none */
};

static void record_text(mcpgw_call *call, const struct mcpgw_call_event *ev, void *ud)
{
    struct text_result *r = ud;

    (void)call;
    if (ev->kind != MCPGW_CALL_DONE)
        return;
    r->done++;
    r->status = ev->status;
    r->is_error = ev->is_error;
    r->had_tree = ev->result != NULL;
    r->text[0] = '\0';
    if (ev->result_json) {
        ck_assert_ptr_null(ev->result);
        ck_assert_uint_lt(ev->result_len, sizeof(r->text));
        memcpy(r->text, ev->result_json, ev->result_len);
        r->text[ev->result_len] = '\0';
    }
}

static void text_call(mcpgw_hub *hub, const char *tool, const char *args, bool want_text,
                      struct text_result *r)
{
    struct mcpgw_call_opts opts = { .result_text = want_text };
    json_object *a = json_tokener_parse(args);

    memset(r, 0, sizeof(*r));
    ck_assert_int_eq(mcpgw_hub_call(hub, "fake", tool, a, &opts, record_text, r, NULL), 0);
    json_object_put(a);
    run_until(hub, &r->done, 1, 10000);
    ck_assert_int_eq(r->done, 1);
}

/* raw: the fake pastes result into its answer as it stands. */
static void raw_call(mcpgw_hub *hub, const char *result, struct text_result *r)
{
    json_object *a = json_object_new_object();

    json_object_object_add(a, "result", json_object_new_string(result));
    text_call(hub, "raw", json_object_to_json_string(a), true, r);
    json_object_put(a);
}

START_TEST(result_text_is_the_servers_bytes_or_a_tree)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct text_result r;

    text_call(hub, "echo", "{\"message\":\"hi\"}", true, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.text, "{\"content\":[{\"type\":\"text\",\"text\":\"Echo: hi\"}]}");
    ck_assert(!r.is_error);
    /* Without the option: a tree, as always. */
    text_call(hub, "echo", "{\"message\":\"hi\"}", false, &r);
    ck_assert(r.had_tree);
    ck_assert_str_eq(r.text, "");

    /* Spacing kept byte for byte; isError read from the text. */
    raw_call(hub, "{\"content\":[],\"isError\" : true }", &r);
    ck_assert_str_eq(r.text, "{\"content\":[],\"isError\" : true }");
    ck_assert(r.is_error);
    raw_call(hub, "{\"content\":[{\"isError\":true}],\"isError\":false}", &r);
    ck_assert_str_eq(r.text, "{\"content\":[{\"isError\":true}],\"isError\":false}");
    ck_assert(!r.is_error);
    /* A repeated key: the last one counts, as in a parse. */
    raw_call(hub, "{\"isError\":true,\"content\":[],\"isError\":false}", &r);
    ck_assert(r.text[0]);
    ck_assert(!r.is_error);

    /* The full parse instead: an escaped key (it is "isError"), an isError
     * that is not a boolean, U+2028 unescaped (our encoder escapes it). */
    raw_call(hub, "{\"content\":[],\"\\u0069sError\":true}", &r);
    ck_assert(r.had_tree);
    ck_assert_str_eq(r.text, "");
    ck_assert(r.is_error);
    raw_call(hub, "{\"content\":[],\"isError\":1}", &r);
    ck_assert(r.had_tree);
    ck_assert(r.is_error);
    raw_call(hub, "{\"content\":[{\"type\":\"text\",\"text\":\"a\xe2\x80\xa8z\"}]}", &r);
    ck_assert(r.had_tree);
    ck_assert_int_eq(r.status, 0);
    /* Not an object: the parse's verdict, as before. */
    raw_call(hub, "[1,2]", &r);
    ck_assert_int_eq(r.status, MCPGW_EPROTO);
    ck_assert_str_eq(r.text, "");

    /* Every call was counted out again: the fast path is off when idle. */
    ck_assert_uint_eq(mcpgw__hub_find_srv(hub, "fake")->text_inflight, 0);
    mcpgw_hub_free(hub);
}
END_TEST

/* One garbage line is logged and tolerated; three in the window restart. */
START_TEST(garbage_is_tolerated_then_restarts)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct mcpgw_server_health h;
    struct result r, held = { 0 };

    call_wait(hub, "garbage", NULL, &r);
    ck_assert_int_eq(r.status, 0);
    call_wait(hub, "garbage", NULL, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_int_eq(call(hub, "sleep", "{\"ms\":5000}", &held, NULL, NULL), 0);
    call_wait(hub, "garbage", NULL, &r);
    ck_assert_int_eq(r.status, MCPGW_ESERVERGONE);
    ck_assert_msg(strstr(r.error, "sent 3 malformed messages"), "%s", r.error);
    run_until(hub, &held.done, 1, 2000);
    ck_assert_int_eq(held.status, MCPGW_ESERVERGONE);
    mcpgw_hub_health_of(hub, "fake", &h);
    ck_assert(h.state == MCPGW_SERVER_STOPPING || h.state == MCPGW_SERVER_BACKOFF);
    mcpgw_hub_free(hub);
}
END_TEST

/* An answer over the message limit fails that call only. */
START_TEST(oversized_answer_fails_only_its_call)
{
    mcpgw_hub *hub = hub_with("", "", "\"limits\":{\"maxMessageBytes\":65536}");
    struct result r, held = { 0 };
    struct mcpgw_server_health h;

    ck_assert_int_eq(call(hub, "sleep", "{\"ms\":300,\"message\":\"ok\"}", &held, NULL, NULL), 0);
    call_wait(hub, "big", "{\"bytes\":200000}", &r);
    ck_assert_int_eq(r.status, MCPGW_ETOOBIG);
    ck_assert_msg(strstr(r.error, "over the 65536-byte limit"), "%s", r.error);
    run_until(hub, &held.done, 1, 3000);
    ck_assert_int_eq(held.status, 0);
    mcpgw_hub_health_of(hub, "fake", &h);
    ck_assert_int_eq(h.state, MCPGW_SERVER_READY);
    ck_assert_uint_eq(h.restarts, 0);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(ten_mib_answer_within_a_raised_limit)
{
    mcpgw_hub *hub = hub_with("", "", "\"limits\":{\"maxMessageBytes\":16777216}");
    struct result r;

    call_wait(hub, "big", "{\"bytes\":10485760}", &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_uint_eq(r.text_len, 10485760);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(start_timeout_backs_off)
{
    mcpgw_hub *hub = hub_with("\"--no-init\"", "\"startTimeoutMs\":200", "");
    struct mcpgw_server_health h;
    struct result r = { 0 };

    ck_assert_int_eq(call(hub, "echo", NULL, &r, NULL, NULL), 0);
    run_until(hub, &r.done, 1, 3000);
    ck_assert_int_eq(r.status, MCPGW_EUNAVAIL);
    ck_assert_str_eq(r.error, "server 'fake' did not finish starting within 200 ms");
    run_for(hub, 100);
    mcpgw_hub_health_of(hub, "fake", &h);
    /* stopping, backing off, or already trying again: never ready */
    ck_assert_msg(h.state != MCPGW_SERVER_READY, "state %s", mcpgw_server_state_name(h.state));
    ck_assert_str_eq(h.last_error, "did not finish starting within 200 ms");
    mcpgw_hub_free(hub);
    assert_no_children();
}
END_TEST

/* A server that dies at once is restarted with growing delays, never in a
 * tight loop. */
START_TEST(crash_loop_backs_off_exponentially)
{
    mcpgw_hub *hub = hub_with("\"--exit-at-start\",\"3\"", "", "");
    struct mcpgw_server_health h;
    unsigned starts_seen = 0;

    ck_assert_int_eq(mcpgw_hub_start(hub, "fake"), 0);
    run_for(hub, 1600);
    mcpgw_hub_health_of(hub, "fake", &h);
    starts_seen = h.restarts + 1;
    /* delays 100, 200, 400, 800 (+-20%): within 1.6 s at most 5 starts */
    ck_assert_uint_ge(starts_seen, 3);
    ck_assert_uint_le(starts_seen, 5);
    ck_assert_str_eq(h.last_error, "exited (exited with status 3)");
    mcpgw_hub_free(hub);
    assert_no_children();
}
END_TEST

START_TEST(missing_command_is_reported)
{
    char json[] = "{\"gateway\":{\"stateDir\":\"/tmp\"},"
                  "\"mcpServers\":{\"fake\":{\"command\":\"/nonexistent/mcp-server\"}}}";
    struct mcpgw_server_health h;
    struct mcpgw_conf *conf;
    struct result r = { 0 };
    char err[256];
    mcpgw_hub *hub;

    ck_assert_int_eq(mcpgw_conf_parse(json, strlen(json), "t.json", "/tmp", &conf, err,
                                      sizeof(err)), 0);
    hub = mcpgw_hub_new(conf, NULL);
    ck_assert_int_eq(mcpgw_hub_call(hub, "fake", "echo", NULL, NULL, record, &r, NULL),
                     MCPGW_EUNAVAIL);
    ck_assert_int_eq(r.done, 0);
    mcpgw_hub_health_of(hub, "fake", &h);
    ck_assert_int_eq(h.state, MCPGW_SERVER_BACKOFF);
    ck_assert_msg(strstr(h.last_error, "/nonexistent/mcp-server"), "%s", h.last_error);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(server_requests_are_always_answered)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct result r;

    call_wait(hub, "ask", "{\"method\":\"ping\"}", &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strstr(r.text, "\"result\":{}"), "%s", r.text);
    call_wait(hub, "ask", "{\"method\":\"roots/list\"}", &r);
    ck_assert_msg(strstr(r.text, "-32601"), "%s", r.text);
    call_wait(hub, "ask", "{\"method\":\"sampling/createMessage\"}", &r);
    ck_assert_msg(strstr(r.text, "-32601"), "%s", r.text);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(tool_list_changes_are_followed)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct result r;

    call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
    ck_assert_int_eq(call(hub, "late_tool", NULL, &r, NULL, NULL), MCPGW_EUNKNOWNTOOL);
    call_wait(hub, "list_changed", NULL, &r);
    ck_assert_int_eq(r.status, 0);
    /* the refresh is in flight or done: the call is held, then sent */
    call_wait(hub, "late_tool", "{\"message\":\"y\"}", &r);
    ck_assert_int_eq(r.status, 0);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(paginated_tool_lists_are_followed)
{
    mcpgw_hub *hub = hub_with("\"--page-size\",\"2\"", "", "");
    struct result r;
    struct mcpgw_server_health h;

    call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
    mcpgw_hub_health_of(hub, "fake", &h);
    ck_assert_uint_gt(h.ntools, 10);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(unknown_response_ids_are_ignored)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct result r;

    call_wait(hub, "unknownid", NULL, &r);
    ck_assert_int_eq(r.status, 0);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(malformed_response_fails_its_call_at_once)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct result r;

    call_wait(hub, "badresponse", NULL, &r);
    ck_assert_int_eq(r.status, MCPGW_EPROTO);
    ck_assert_str_eq(r.error, "server 'fake' sent a malformed response");
    call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
    ck_assert_int_eq(r.status, 0);
    mcpgw_hub_free(hub);
}
END_TEST

START_TEST(child_gets_only_allowed_env_and_fds)
{
    mcpgw_hub *hub;
    struct result r;

    setenv("HTTP_PROXY", "http://evil", 1);
    setenv("MCPGW_CANARY", "mcpgw_canary_secret", 1);
    hub = hub_with("", "", "");
    call_wait(hub, "env", NULL, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_null(strstr(r.text, "HTTP_PROXY"));
    ck_assert_ptr_null(strstr(r.text, "canary"));
    ck_assert_ptr_nonnull(strstr(r.text, "FAKE_CONFIGURED=yes"));
    call_wait(hub, "fds", NULL, &r);
    ck_assert_str_eq(r.text, "0 1 2");
    mcpgw_hub_free(hub);
}
END_TEST

static char logged[65536];
static size_t logged_len;

static void log_sink(void *ud, int level, const char *line, size_t len)
{
    if (logged_len + len + 2 < sizeof(logged)) {
        memcpy(logged + logged_len, line, len);
        logged_len += len;
        logged[logged_len++] = '\n';
        logged[logged_len] = '\0';
    }
}

START_TEST(stderr_is_logged_per_server)
{
    mcpgw_hub *hub;
    struct result r;

    mcpgw_log_open(NULL, MCPGW_LOG_DEBUG, false, 0);
    mcpgw_log_set_sink(log_sink, NULL);
    hub = hub_with("\"--stderr-banner\",\"Fake MCP Server running on stdio\"", "", "");
    call_wait(hub, "stderr", "{\"bytes\":300}", &r);
    run_for(hub, 100);
    ck_assert_msg(strstr(logged, "INFO  server:fake: Fake MCP Server running on stdio"), "%s",
                  logged);
    ck_assert_ptr_nonnull(strstr(logged, "dispatch: server 'fake' ready"));
    mcpgw_hub_free(hub);
    mcpgw_log_set_sink(NULL, NULL);
}
END_TEST

START_TEST(in_flight_cap_answers_busy)
{
    mcpgw_hub *hub = hub_with("", "\"maxInFlight\":4", "");
    struct result r[5] = { 0 };
    int done = 0;

    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(call(hub, "sleep", "{\"ms\":100}", &r[i], NULL, NULL), 0);
    ck_assert_int_eq(call(hub, "sleep", "{\"ms\":1}", &r[4], NULL, NULL), MCPGW_EBUSY);
    while (done < 4) {
        mcpgw_hub_run(hub, 20);
        done = r[0].done + r[1].done + r[2].done + r[3].done;
    }
    mcpgw_hub_free(hub);
}
END_TEST

static void count_shutdown(mcpgw_call *call, const struct mcpgw_call_event *ev, void *ud)
{
    if (ev->kind == MCPGW_CALL_DONE && ev->status == MCPGW_ESHUTDOWN)
        ++*(int *)ud;
}

/* Freeing the hub completes every call and leaves no child behind, even a
 * server that no longer reads or writes anything. */
START_TEST(shutdown_completes_calls_and_reaps)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct mcpgw_server_health h;
    struct result r;
    int shut = 0;
    pid_t pid;
    int64_t t0;

    call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
    mcpgw_hub_health_of(hub, "fake", &h);
    pid = h.pid;
    for (int i = 0; i < 10; i++)
        ck_assert_int_eq(mcpgw_hub_call(hub, "fake", "hang", NULL, NULL, count_shutdown, &shut,
                                        NULL), 0);
    ck_assert_int_eq(mcpgw_hub_call(hub, "fake", "freeze", NULL, NULL, count_shutdown, &shut,
                                    NULL), 0);
    run_for(hub, 100);
    t0 = mcpgw__mono_ms();
    mcpgw_hub_free(hub);
    ck_assert_int_eq(shut, 11);
    ck_assert_int_lt(mcpgw__mono_ms() - t0, 6000);
    ck_assert_int_eq(kill(pid, 0), -1);
    assert_no_children();
}
END_TEST

struct observed {
    int starts, dones, states;
};

static void observer(void *ud, const struct mcpgw_hub_event *ev)
{
    struct observed *o = ud;

    if (ev->kind == MCPGW_HUB_CALL_START) {
        ck_assert_str_eq(ev->client_call_id, "client-7");
        o->starts++;
    } else if (ev->kind == MCPGW_HUB_CALL_DONE) {
        o->dones++;
    } else if (ev->kind == MCPGW_HUB_SERVER_STATE) {
        o->states++;
    }
}

START_TEST(observer_sees_calls_and_states)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct mcpgw_call_opts opts = { .client_call_id = "client-7", .caller = "tester" };
    struct observed o = { 0 };
    struct result r = { 0 };

    mcpgw_hub_set_observer(hub, observer, &o);
    ck_assert_int_eq(call(hub, "echo", "{\"message\":\"x\"}", &r, &opts, NULL), 0);
    run_until(hub, &r.done, 1, 5000);
    ck_assert_int_eq(o.starts, 1);
    ck_assert_int_eq(o.dones, 1);
    ck_assert_int_ge(o.states, 2);  /* starting, ready */
    mcpgw_hub_free(hub);
}
END_TEST

struct worker {
    mcpgw_hub *hub;
    int ok;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    for (int i = 0; i < 50; i++) {
        json_object *args = json_object_new_object(), *res = NULL;
        char msg[32], err[200];
        bool iserr;

        snprintf(msg, sizeof(msg), "w%p-%d", (void *)w, i);
        json_object_object_add(args, "message", json_object_new_string(msg));
        if (mcpgw_hub_call_sync(w->hub, "fake", "echo", args, NULL, NULL, NULL, &res, &iserr,
                                err, sizeof(err)) == 0) {
            json_object *content, *text;

            json_object_object_get_ex(res, "content", &content);
            json_object_object_get_ex(json_object_array_get_idx(content, 0), "text", &text);
            if (strstr(json_object_get_string(text), msg))
                w->ok++;
        }
        json_object_put(res);
        json_object_put(args);
    }
    return NULL;
}

/* The FastCGI shape: the hub on its own thread, blocking callers on others. */
START_TEST(blocking_calls_from_many_threads)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct worker w[8];
    pthread_t t[8];

    ck_assert_int_eq(mcpgw_hub_thread_start(hub), 0);
    for (int i = 0; i < 8; i++) {
        w[i].hub = hub;
        w[i].ok = 0;
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(w[i].ok, 50);
    }
    mcpgw_hub_free(hub);
    assert_no_children();
}
END_TEST

struct own_loop {
    mcpgw_hub *hub;
    volatile bool bound, quit;
};

static void *own_loop_main(void *arg)
{
    struct own_loop *l = arg;

    mcpgw_hub_bind_thread(l->hub);
    l->bound = true;
    while (!l->quit)
        mcpgw_hub_run(l->hub, 20);
    return NULL;
}

/* The wsd shape: a program's own loop drives the hub after binding its
 * thread; blocking calls from worker threads are posted to it. */
START_TEST(blocking_calls_into_a_bound_loop)
{
    struct own_loop l = { .hub = hub_with("", "", "") };
    struct worker w[4];
    pthread_t loop, t[4];

    pthread_create(&loop, NULL, own_loop_main, &l);
    while (!l.bound)
        usleep(1000);
    for (int i = 0; i < 4; i++) {
        w[i].hub = l.hub;
        w[i].ok = 0;
        pthread_create(&t[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ck_assert_int_eq(w[i].ok, 50);
    }
    l.quit = true;
    pthread_join(loop, NULL);
    mcpgw_hub_free(l.hub);
}
END_TEST

START_TEST(blocking_call_without_a_thread)
{
    mcpgw_hub *hub = hub_with("", "", "");
    json_object *res = NULL;
    char err[200];
    bool iserr;

    ck_assert_int_eq(mcpgw_hub_call_sync(hub, "fake", "hang", NULL,
                                         &(struct mcpgw_call_opts){ .timeout_ms = 100 },
                                         NULL, NULL, &res, &iserr, err, sizeof(err)),
                     MCPGW_ETIMEDOUT);
    ck_assert_ptr_null(res);
    ck_assert_msg(strstr(err, "did not answer 'hang'"), "%s", err);
    mcpgw_hub_free(hub);
}
END_TEST



/* A server that stops reading altogether is found out by the ping after a
 * timeout and restarted, instead of holding every later call. */
START_TEST(frozen_server_is_restarted_after_a_timeout)
{
    mcpgw_hub *hub = hub_with("", "\"callTimeoutMs\":1000", "");
    struct mcpgw_call_opts opts = { .timeout_ms = 200 };
    struct mcpgw_server_health h;
    struct result r = { 0 }, e;
    bool saw_failure = false;

    call_wait(hub, "echo", "{\"message\":\"x\"}", &e);
    ck_assert_int_eq(call(hub, "freeze", NULL, &r, &opts, NULL), 0);
    run_until(hub, &r.done, 1, 3000);
    ck_assert_int_eq(r.status, MCPGW_ETIMEDOUT);
    /* the ping goes unanswered for 1 s (callTimeoutMs < MCPGW_PING_TIMEOUT) */
    for (int64_t end = mcpgw__mono_ms() + 6000; mcpgw__mono_ms() < end;) {
        mcpgw_hub_run(hub, 10);
        mcpgw_hub_health_of(hub, "fake", &h);
        if (h.state != MCPGW_SERVER_READY && strstr(h.last_error, "stopped answering"))
            saw_failure = true;
        if (saw_failure && h.state == MCPGW_SERVER_READY)
            break;
    }
    ck_assert(saw_failure);
    ck_assert_int_eq(h.state, MCPGW_SERVER_READY);
    ck_assert_uint_eq(h.restarts, 1);
    call_wait(hub, "echo", "{\"message\":\"back\"}", &e);
    ck_assert_str_eq(e.text, "Echo: back");
    mcpgw_hub_free(hub);
}
END_TEST

/* A slow call that times out on a server that still answers leaves the
 * server alone. */
START_TEST(slow_but_alive_server_is_kept)
{
    mcpgw_hub *hub = hub_with("", "", "");
    struct mcpgw_call_opts opts = { .timeout_ms = 100 };
    struct mcpgw_server_health h;
    struct result r = { 0 };

    ck_assert_int_eq(call(hub, "sleep", "{\"ms\":2000}", &r, &opts, NULL), 0);
    run_until(hub, &r.done, 1, 3000);
    ck_assert_int_eq(r.status, MCPGW_ETIMEDOUT);
    run_for(hub, 400);
    mcpgw_hub_health_of(hub, "fake", &h);
    ck_assert_int_eq(h.state, MCPGW_SERVER_READY);
    ck_assert_uint_eq(h.restarts, 0);
    mcpgw_hub_free(hub);
}
END_TEST

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;

    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* A 100 MB answer streams past without being held: memory stays near the
 * 1 MiB limit, only that call fails. */
START_TEST(hundred_mb_line_keeps_memory_bounded)
{
    mcpgw_hub *hub = hub_with("", "", "\"limits\":{\"maxMessageBytes\":1048576}");
    struct result r;
    long before;

    call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
    before = rss_kib();
    call_wait(hub, "big", "{\"bytes\":104857600}", &r);
    ck_assert_int_eq(r.status, MCPGW_ETOOBIG);
    ck_assert_msg(rss_kib() - before < 16 * 1024, "RSS grew by %ld KiB", rss_kib() - before);
    call_wait(hub, "echo", "{\"message\":\"after\"}", &r);
    ck_assert_int_eq(r.status, 0);
    mcpgw_hub_free(hub);
}
END_TEST

static unsigned stderr_lines;

static void count_server_lines(void *ud, int level, const char *line, size_t len)
{
    if (memmem(line, len, " server:fake: ", 14))
        stderr_lines++;
}

/* 64 MB on stderr: the server is drained (it never blocks), the log gets
 * at most the per-second budget, memory stays flat. */
START_TEST(stderr_flood_is_drained_and_capped)
{
    mcpgw_hub *hub;
    struct result r;
    long before;
    int64_t t0;

    mcpgw_log_open(NULL, MCPGW_LOG_INFO, false, 0);
    mcpgw_log_set_sink(count_server_lines, NULL);
    hub = hub_with("", "", "");
    call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
    before = rss_kib();
    stderr_lines = 0;
    t0 = mcpgw__mono_ms();
    call_wait(hub, "stderr", "{\"bytes\":67108864}", &r);
    ck_assert_int_eq(r.status, 0);
    run_for(hub, 100);
    ck_assert_msg(stderr_lines <= (unsigned)((mcpgw__mono_ms() - t0) / 1000 + 2) *
                                  (MCPGW_STDERR_LINES_PER_SEC + 1),
                  "%u lines logged", stderr_lines);
    ck_assert_msg(rss_kib() - before < 8 * 1024, "RSS grew by %ld KiB", rss_kib() - before);
    mcpgw_hub_free(hub);
    mcpgw_log_set_sink(NULL, NULL);
}
END_TEST

static int count_fds(void)
{
    char path[64];
    int n = 0;

    for (int fd = 0; fd < 1024; fd++) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        n += access(path, F_OK) == 0;
    }
    return n;
}

/* 1,000 crash and restart cycles: every child reaped, no fd left behind. */
START_TEST(thousand_crash_cycles)
{
    char json[1024], err[256];
    struct mcpgw_conf *conf;
    mcpgw_hub *hub;
    struct result r;
    int fds_before, fds_after;

    snprintf(json, sizeof(json),
             "{\"gateway\":{\"stateDir\":\"/tmp\"},\"mcpServers\":{\"fake\":{\"command\":\"%s\","
             "\"restart\":{\"initialDelayMs\":10,\"maxDelayMs\":10}}}}", fake);
    ck_assert_int_eq(mcpgw_conf_parse(json, strlen(json), "t.json", "/tmp", &conf, err,
                                      sizeof(err)), 0);
    hub = mcpgw_hub_new(conf, NULL);
    call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
    fds_before = count_fds();
    for (int i = 0; i < 1000; i++) {
        struct mcpgw_server_health h;

        call_wait(hub, "crash", NULL, &r);
        ck_assert_int_eq(r.status, MCPGW_ESERVERGONE);
        do {
            mcpgw_hub_run(hub, 5);
            mcpgw_hub_health_of(hub, "fake", &h);
        } while (h.state != MCPGW_SERVER_READY);
    }
    fds_after = count_fds();
    ck_assert_int_eq(fds_after, fds_before);
    mcpgw_hub_free(hub);
    assert_no_children();
}
END_TEST


/* Gone, or a zombie waiting for init: either way no longer running. */
static bool process_ended(pid_t pid)
{
    char path[64], buf[256], *p;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r")))
        return true;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] == 'Z';
}

/* kill -9 of a gateway process: its MCP servers end within 5 s, though
 * nothing closes their stdin politely (PR_SET_PDEATHSIG, set by spawn). */
START_TEST(kill_9_of_the_gateway_ends_its_servers)
{
    int fds[2];
    pid_t gw, server = 0;
    int st;

    ck_assert_int_eq(pipe(fds), 0);
    gw = fork();
    if (gw == 0) {
        mcpgw_hub *hub = hub_with("", "", "");
        struct mcpgw_server_health h;
        struct result r;

        close(fds[0]);
        call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
        mcpgw_hub_health_of(hub, "fake", &h);
        if (write(fds[1], &h.pid, sizeof(h.pid)) != sizeof(h.pid))
            _exit(1);
        for (;;)
            mcpgw_hub_run(hub, 100);
    }
    close(fds[1]);
    ck_assert_int_eq(read(fds[0], &server, sizeof(server)), (ssize_t)sizeof(server));
    close(fds[0]);
    ck_assert_int_gt(server, 0);
    ck_assert(!process_ended(server));
    kill(gw, SIGKILL);
    ck_assert_int_eq(waitpid(gw, &st, 0), gw);
    for (int64_t end = mcpgw__mono_ms() + 5000; !process_ended(server) && mcpgw__mono_ms() < end;)
        usleep(10000);
    ck_assert_msg(process_ended(server), "server %d still runs 5 s after its gateway died",
                  (int)server);
}
END_TEST

/* Two fake servers sharing state dir dir, with a host-wide cap. */
static mcpgw_hub *capped_hub(const char *dir, int cap)
{
    char json[2048], err[512];
    struct mcpgw_conf *conf;
    mcpgw_hub *hub;

    snprintf(json, sizeof(json),
             "{\"gateway\":{\"stateDir\":\"%s\",\"maxServerProcesses\":%d},"
             "\"mcpServers\":{\"a\":{\"command\":\"%s\"},\"b\":{\"command\":\"%s\"}}}",
             dir, cap, fake, fake);
    ck_assert_msg(mcpgw_conf_parse(json, strlen(json), "cap.json", "/tmp", &conf, err,
                                   sizeof(err)) == 0, "%s", err);
    hub = mcpgw_hub_new(conf, NULL);
    ck_assert_ptr_nonnull(hub);
    return hub;
}

static int count_ready(mcpgw_hub *hub, int ms)
{
    struct mcpgw_server_health h;
    int ready = 0;

    for (int64_t end = mcpgw__mono_ms() + ms; mcpgw__mono_ms() < end;)
        mcpgw_hub_run(hub, 20);
    for (size_t i = 0; mcpgw_hub_health(hub, i, &h); i++)
        ready += h.state == MCPGW_SERVER_READY;
    return ready;
}

START_TEST(host_wide_cap_refuses_the_next_server)
{
    char dir[] = "/tmp/check_hub_cap.XXXXXX", slots[64];
    struct mcpgw_server_health h;
    mcpgw_hub *hub;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(slots, sizeof(slots), "%s/slots", dir);
    hub = capped_hub(dir, 1);
    ck_assert_int_eq(mcpgw_hub_start(hub, "a"), 0);
    ck_assert_int_eq(count_ready(hub, 300), 1);
    ck_assert_int_eq(mcpgw_hub_start(hub, "b"), MCPGW_EUNAVAIL);
    ck_assert_int_eq(mcpgw_hub_health_of(hub, "b", &h), 0);
    ck_assert_str_eq(h.last_error, "the host-wide limit of 1 MCP server processes is reached");
    ck_assert_int_eq(mcpgw__slots_in_use(slots, 1), 1);
    mcpgw_hub_free(hub);
    ck_assert_int_eq(mcpgw__slots_in_use(slots, 1), 0);
}
END_TEST

/* Four gateway processes, two servers each, three slots on the host: never
 * more than three servers run, and a killed process frees its slots. */
START_TEST(host_wide_cap_holds_across_processes)
{
    char dir[] = "/tmp/check_hub_cap.XXXXXX", slots[64];
    pid_t pids[4];
    int ready = 0, peak = 0, st;

    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(slots, sizeof(slots), "%s/slots", dir);
    for (int i = 0; i < 4; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            mcpgw_hub *hub = capped_hub(dir, 3);
            int n;

            mcpgw_hub_start(hub, "a");
            mcpgw_hub_start(hub, "b");
            n = count_ready(hub, 1500);
            /* hold the slots while the parent counts */
            for (int64_t end = mcpgw__mono_ms() + 1000; mcpgw__mono_ms() < end;)
                mcpgw_hub_run(hub, 20);
            mcpgw_hub_free(hub);
            _exit(n);
        }
    }
    for (int64_t end = mcpgw__mono_ms() + 2000; mcpgw__mono_ms() < end; usleep(20000)) {
        int used = mcpgw__slots_in_use(slots, 3);

        peak = used > peak ? used : peak;
    }
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(waitpid(pids[i], &st, 0), pids[i]);
        ck_assert(WIFEXITED(st));
        ready += WEXITSTATUS(st);
    }
    ck_assert_int_eq(peak, 3);
    ck_assert_int_eq(ready, 3);
    ck_assert_int_eq(mcpgw__slots_in_use(slots, 3), 0);

    /* kill -9 of a gateway process gives its slots back */
    pids[0] = fork();
    if (pids[0] == 0) {
        mcpgw_hub *hub = capped_hub(dir, 3);

        mcpgw_hub_start(hub, "a");
        for (;;)
            mcpgw_hub_run(hub, 100);
    }
    for (int64_t end = mcpgw__mono_ms() + 2000;
         mcpgw__slots_in_use(slots, 3) < 1 && mcpgw__mono_ms() < end;)
        usleep(10000);
    ck_assert_int_eq(mcpgw__slots_in_use(slots, 3), 1);
    kill(pids[0], SIGKILL);
    waitpid(pids[0], &st, 0);
    /* A server child it forked may not have reached exec yet (a long
     * window under valgrind) and still hold the slot's fd: it dies with
     * its parent (PR_SET_PDEATHSIG), so the slot comes back within ms. */
    for (int64_t end = mcpgw__mono_ms() + 2000;
         mcpgw__slots_in_use(slots, 3) > 0 && mcpgw__mono_ms() < end;)
        usleep(10000);
    ck_assert_int_eq(mcpgw__slots_in_use(slots, 3), 0);
}
END_TEST

/* ---- reload ---------------------------------------------------------------- */

/* A config over the given mcpServers members. */
static struct mcpgw_conf *conf_of(const char *servers)
{
    char json[8192], err[512];
    struct mcpgw_conf *conf;

    snprintf(json, sizeof(json),
             "{\"gateway\":{\"log\":{\"level\":\"debug\"},\"stateDir\":\"/tmp\"},"
             "\"mcpServers\":{%s}}", servers);
    ck_assert_msg(mcpgw_conf_parse(json, strlen(json), "reload.json", "/tmp", &conf, err,
                                   sizeof(err)) == 0, "config: %s", err);
    return conf;
}

/* One mcpServers member: fake_mcp as id, with args and env (JSON bodies). */
static const char *fake_as(char *buf, size_t n, const char *id, const char *args, const char *env)
{
    snprintf(buf, n, "\"%s\":{\"command\":\"%s\",\"args\":[%s],\"env\":{%s},"
             "\"restart\":{\"initialDelayMs\":100,\"maxDelayMs\":1000}}", id, fake, args, env);
    return buf;
}

static int call_to(mcpgw_hub *hub, const char *server, const char *tool, const char *args,
                   struct result *r)
{
    json_object *a = args ? json_tokener_parse(args) : NULL;
    int rc;

    memset(r, 0, sizeof(*r));
    rc = mcpgw_hub_call(hub, server, tool, a, NULL, record, r, NULL);
    json_object_put(a);
    return rc;
}

static pid_t pid_of(mcpgw_hub *hub, const char *server)
{
    struct mcpgw_server_health h;

    ck_assert_int_eq(mcpgw_hub_health_of(hub, server, &h), 0);
    return h.pid;
}

static void run_until_ended(mcpgw_hub *hub, pid_t pid)
{
    for (int64_t end = mcpgw__mono_ms() + 8000; !process_ended(pid) && mcpgw__mono_ms() < end;)
        mcpgw_hub_run(hub, 20);
    ck_assert_msg(process_ended(pid), "process %d still runs", (int)pid);
}

/* Every retired server stopped and freed. */
static void run_until_settled(mcpgw_hub *hub)
{
    for (int64_t end = mcpgw__mono_ms() + 8000; hub->retired && mcpgw__mono_ms() < end;)
        mcpgw_hub_run(hub, 20);
    ck_assert_ptr_null(hub->retired);
}

struct reload_seen {
    char events[1024];          /* "id=state " for each server state event */
};

static void reload_observer(void *ud, const struct mcpgw_hub_event *ev)
{
    struct reload_seen *o = ud;
    size_t len = strlen(o->events);

    if (ev->kind == MCPGW_HUB_SERVER_STATE)
        snprintf(o->events + len, sizeof(o->events) - len, "%s=%s ", ev->health->id,
                 mcpgw_server_state_name(ev->health->state));
}

START_TEST(reload_keeps_unchanged_servers_and_adds_new_ones)
{
    char a[1024], b[1024], c[1024], servers[4096];
    struct mcpgw_hub_reload_result res;
    struct reload_seen seen = { "" };
    struct mcpgw_server_health h;
    struct result slow, r;
    mcpgw_hub *hub;
    pid_t pid;

    snprintf(servers, sizeof(servers), "%s,%s", fake_as(a, sizeof(a), "fake", "", ""),
             fake_as(b, sizeof(b), "other", "", ""));
    hub = mcpgw_hub_new(conf_of(servers), NULL);
    mcpgw_hub_set_observer(hub, reload_observer, &seen);
    call_wait(hub, "echo", "{\"message\":\"before\"}", &r);
    pid = pid_of(hub, "fake");
    ck_assert_int_gt(pid, 0);
    ck_assert_int_eq(call_to(hub, "fake", "sleep", "{\"ms\":600,\"message\":\"across\"}", &slow), 0);
    run_for(hub, 100);
    seen.events[0] = '\0';

    /* New order, one server more; "fake" and "other" exactly as they were. */
    snprintf(servers, sizeof(servers), "%s,%s,%s", fake_as(c, sizeof(c), "added", "", ""),
             fake_as(a, sizeof(a), "fake", "", ""), fake_as(b, sizeof(b), "other", "", ""));
    ck_assert_int_eq(mcpgw_hub_reload(hub, conf_of(servers), &res), 0);
    ck_assert_uint_eq(res.kept, 2);
    ck_assert_uint_eq(res.added, 1);
    ck_assert_uint_eq(res.changed + res.removed, 0);
    ck_assert_str_eq(seen.events, "added=idle ");
    ck_assert_uint_eq(mcpgw_hub_server_count(hub), 3);
    ck_assert(mcpgw_hub_health(hub, 0, &h));
    ck_assert_str_eq(h.id, "added");
    ck_assert_int_eq(h.state, MCPGW_SERVER_IDLE);
    ck_assert(mcpgw_hub_health(hub, 1, &h));
    ck_assert_str_eq(h.id, "fake");
    ck_assert_int_eq(h.pid, pid);
    ck_assert_int_eq(h.state, MCPGW_SERVER_READY);
    ck_assert_uint_eq(h.inflight, 1);
    ck_assert_uint_gt(h.ntools, 5);
    ck_assert_str_eq(mcpgw_conf_server(mcpgw_hub_conf(hub), "added")->id, "added");

    /* The call that was in flight finishes on the same process. */
    run_until(hub, &slow.done, 1, 5000);
    ck_assert_int_eq(slow.status, 0);
    ck_assert_str_eq(slow.text, "across");
    ck_assert_int_eq(pid_of(hub, "fake"), pid);
    /* The added server starts on first use, like any other. */
    ck_assert_int_eq(call_to(hub, "added", "echo", "{\"message\":\"new\"}", &r), 0);
    run_until(hub, &r.done, 1, 5000);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.text, "Echo: new");
    ck_assert_int_gt(pid_of(hub, "added"), 0);
    ck_assert_ptr_null(hub->retired);
    mcpgw_hub_free(hub);
    assert_no_children();
}
END_TEST

START_TEST(reload_removes_a_server_and_fails_its_calls)
{
    char a[1024], b[1024], servers[4096];
    struct mcpgw_hub_reload_result res;
    struct reload_seen seen = { "" };
    struct mcpgw_server_health h;
    struct result hang, other, r;
    const struct mcpgw_conf *before;
    const char *gone_id;
    mcpgw_hub *hub;
    pid_t gone;

    snprintf(servers, sizeof(servers), "%s,%s", fake_as(a, sizeof(a), "fake", "", ""),
             fake_as(b, sizeof(b), "gone", "", ""));
    hub = mcpgw_hub_new(conf_of(servers), NULL);
    mcpgw_hub_set_observer(hub, reload_observer, &seen);
    ck_assert_int_eq(call_to(hub, "gone", "echo", "{\"message\":\"x\"}", &r), 0);
    run_until(hub, &r.done, 1, 5000);
    gone = pid_of(hub, "gone");
    before = mcpgw_hub_conf(hub);
    ck_assert_int_eq(mcpgw_hub_health_of(hub, "gone", &h), 0);
    gone_id = h.id;
    ck_assert_int_eq(call_to(hub, "gone", "hang", NULL, &hang), 0);
    ck_assert_int_eq(call_to(hub, "fake", "sleep", "{\"ms\":300}", &other), 0);
    run_for(hub, 100);
    seen.events[0] = '\0';

    ck_assert_int_eq(mcpgw_hub_reload(hub, conf_of(fake_as(a, sizeof(a), "fake", "", "")), &res), 0);
    ck_assert_uint_eq(res.removed, 1);
    ck_assert_uint_eq(res.kept, 1);
    /* Its call completed during the reload, as unavailable, saying why. */
    ck_assert_int_eq(hang.done, 1);
    ck_assert_int_eq(hang.status, MCPGW_EUNAVAIL);
    ck_assert_str_eq(mcpgw_err_code(hang.status), "server_unavailable");
    ck_assert_str_eq(hang.error, "server 'gone' was removed by a reload of the configuration");
    ck_assert_str_eq(seen.events, "gone=removed ");
    /* It is unknown from now on. */
    ck_assert_int_eq(call_to(hub, "gone", "echo", NULL, &r), MCPGW_EUNKNOWNSERVER);
    ck_assert_int_eq(mcpgw_hub_health_of(hub, "gone", &h), MCPGW_EUNKNOWNSERVER);
    ck_assert_int_eq(mcpgw_hub_start(hub, "gone"), MCPGW_EUNKNOWNSERVER);
    ck_assert_uint_eq(mcpgw_hub_server_count(hub), 1);
    /* Its process is stopped the normal way, and nothing more is said of it. */
    run_until_ended(hub, gone);
    run_until_settled(hub);
    ck_assert_str_eq(seen.events, "gone=removed ");
    /* What was borrowed before the reload is still there (ASan would say). */
    ck_assert_ptr_ne(mcpgw_hub_conf(hub), before);
    ck_assert_uint_eq(before->nservers, 2);
    ck_assert_str_eq(gone_id, "gone");
    run_until(hub, &other.done, 1, 5000);
    ck_assert_int_eq(other.status, 0);
    mcpgw_hub_free(hub);
    assert_no_children();
}
END_TEST

START_TEST(reload_restarts_a_changed_server)
{
    char a[1024];
    struct mcpgw_hub_reload_result res;
    struct reload_seen seen = { "" };
    struct result old_call, hang, r;
    mcpgw_hub *hub;
    pid_t first, second;

    hub = mcpgw_hub_new(conf_of(fake_as(a, sizeof(a), "fake", "", "\"V\":\"1\"")), NULL);
    mcpgw_hub_set_observer(hub, reload_observer, &seen);
    call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
    first = pid_of(hub, "fake");
    ck_assert_int_eq(call_to(hub, "fake", "sleep", "{\"ms\":500,\"message\":\"old\"}", &old_call), 0);
    run_for(hub, 50);
    seen.events[0] = '\0';

    /* New args: the id now names a new server; the old process finishes. */
    ck_assert_int_eq(mcpgw_hub_reload(hub, conf_of(fake_as(a, sizeof(a), "fake",
                                                           "\"--stderr-banner\",\"v2\"",
                                                           "\"V\":\"1\"")), &res), 0);
    ck_assert_uint_eq(res.changed, 1);
    ck_assert_uint_eq(res.kept + res.added + res.removed, 0);
    ck_assert_str_eq(seen.events, "fake=idle ");
    ck_assert_int_eq(pid_of(hub, "fake"), 0);
    call_wait(hub, "echo", "{\"message\":\"y\"}", &r);
    ck_assert_int_eq(r.status, 0);
    second = pid_of(hub, "fake");
    ck_assert_int_gt(second, 0);
    ck_assert_int_ne(second, first);
    run_until(hub, &old_call.done, 1, 5000);
    ck_assert_int_eq(old_call.status, 0);
    ck_assert_str_eq(old_call.text, "old");
    run_until_ended(hub, first);
    run_until_settled(hub);

    /* A call the old process does not finish within the grace fails
     * unavailable; the new env is what the new process sees. */
    hub->reload_grace_ms = 200;
    ck_assert_int_eq(call_to(hub, "fake", "hang", NULL, &hang), 0);
    run_for(hub, 50);
    ck_assert_int_eq(mcpgw_hub_reload(hub, conf_of(fake_as(a, sizeof(a), "fake", "",
                                                           "\"V\":\"2\"")), &res), 0);
    ck_assert_uint_eq(res.changed, 1);
    ck_assert_int_eq(hang.done, 0);
    run_until(hub, &hang.done, 1, 3000);
    ck_assert_int_eq(hang.status, MCPGW_EUNAVAIL);
    ck_assert_str_eq(hang.error, "server 'fake' was changed by a reload of the configuration and "
                     "its old process did not finish the call within 200 ms");
    run_until_ended(hub, second);
    call_wait(hub, "env", NULL, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strstr(r.text, "V=2\n") || strstr(r.text, "\nV=2"), "env: %s", r.text);
    ck_assert_int_ne(pid_of(hub, "fake"), second);
    run_until_settled(hub);
    mcpgw_hub_free(hub);
    assert_no_children();
}
END_TEST

START_TEST(refused_reload_changes_nothing)
{
    char json[1024], err[512];
    const struct mcpgw_conf *before;
    struct mcpgw_hub_reload_result res = { 7, 7, 7, 7 };
    struct mcpgw_conf *bad = NULL;
    mcpgw_hub *hub = hub_with("", "", "");
    struct result r;
    pid_t pid;

    call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
    pid = pid_of(hub, "fake");
    before = mcpgw_hub_conf(hub);
    snprintf(json, sizeof(json), "{\"mcpServers\":{\"fake\":{\"command\":\"%s\","
             "\"callTimeoutMs\":-5}}}", fake);
    ck_assert_int_eq(mcpgw_conf_parse(json, strlen(json), "bad.json", "/tmp", &bad, err,
                                      sizeof(err)), MCPGW_ECONFIG);
    ck_assert_ptr_null(bad);
    ck_assert_ptr_nonnull(strstr(err, "bad.json: mcpServers.fake.callTimeoutMs"));
    ck_assert_int_eq(mcpgw_hub_reload(hub, bad, &res), -EINVAL);
    ck_assert_uint_eq(res.kept, 7);
    ck_assert_ptr_eq(mcpgw_hub_conf(hub), before);
    ck_assert_int_eq(pid_of(hub, "fake"), pid);
    call_wait(hub, "echo", "{\"message\":\"still\"}", &r);
    ck_assert_str_eq(r.text, "Echo: still");
    ck_assert_int_eq(pid_of(hub, "fake"), pid);
    mcpgw_hub_free(hub);
    assert_no_children();
}
END_TEST

struct posted_reload {
    struct mcpgw_conf *conf;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int rc;
    struct mcpgw_hub_reload_result res;
};

static void reload_on_loop(mcpgw_hub *hub, void *ud)
{
    struct posted_reload *p = ud;
    int rc = mcpgw_hub_reload(hub, p->conf, &p->res);

    pthread_mutex_lock(&p->lock);
    p->rc = rc;
    p->done = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* The FastCGI shape: the loop on the hub's own thread, the reload posted
 * to it from another, blocking calls before and after. */
START_TEST(reload_posted_to_the_hub_thread)
{
    char a[1024], b[1024], servers[4096], err[200];
    struct posted_reload p = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    const struct mcpgw_conf *before;
    json_object *res = NULL;
    mcpgw_hub *hub;

    hub = mcpgw_hub_new(conf_of(fake_as(a, sizeof(a), "gone", "", "")), NULL);
    ck_assert_int_eq(mcpgw_hub_thread_start(hub), 0);
    ck_assert_int_eq(mcpgw_hub_call_sync(hub, "gone", "echo", NULL, NULL, NULL, NULL, &res, NULL,
                                         err, sizeof(err)), 0);
    json_object_put(res);
    before = mcpgw_hub_conf(hub);
    snprintf(servers, sizeof(servers), "%s", fake_as(b, sizeof(b), "added", "", ""));
    p.conf = conf_of(servers);
    ck_assert_int_eq(mcpgw_hub_post(hub, reload_on_loop, &p), 0);
    pthread_mutex_lock(&p.lock);
    while (!p.done)
        pthread_cond_wait(&p.cond, &p.lock);
    pthread_mutex_unlock(&p.lock);
    ck_assert_int_eq(p.rc, 0);
    ck_assert_uint_eq(p.res.added, 1);
    ck_assert_uint_eq(p.res.removed, 1);
    ck_assert_ptr_ne(mcpgw_hub_conf(hub), before);
    ck_assert_str_eq(before->servers[0].id, "gone");
    ck_assert_int_eq(mcpgw_hub_call_sync(hub, "added", "echo", NULL, NULL, NULL, NULL, &res, NULL,
                                         err, sizeof(err)), 0);
    json_object_put(res);
    ck_assert_int_eq(mcpgw_hub_call_sync(hub, "gone", "echo", NULL, NULL, NULL, NULL, &res, NULL,
                                         err, sizeof(err)), MCPGW_EUNKNOWNSERVER);
    mcpgw_hub_free(hub);
    assert_no_children();
}
END_TEST

/* Live children of this process (the servers; zombies included). */
static int count_children(void)
{
    char path[64], buf[512], *p;
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *de;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d))) {
        FILE *f;
        size_t len;
        int ppid;

        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%.16s/stat", de->d_name);
        if (!(f = fopen(path, "r")))
            continue;
        len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        if ((p = strrchr(buf, ')')) && sscanf(p + 1, " %*c %d", &ppid) == 1 && ppid == getpid())
            n++;
    }
    closedir(d);
    return n;
}

/* Twenty reloads, each changing one server and adding or removing another:
 * no fd, process, retired server or old config is left behind, and the
 * untouched server runs on as the same process throughout. */
START_TEST(twenty_reloads_leave_nothing_behind)
{
    char a[1024], b[1024], k[1024], x[1024], conf_a[4096], conf_b[4096];
    struct mcpgw_hub_reload_result res;
    mcpgw_hub *hub;
    struct result r;
    int fds, children;
    pid_t keep;

    fake_as(k, sizeof(k), "keep", "", "");
    snprintf(conf_a, sizeof(conf_a), "%s,%s", fake_as(a, sizeof(a), "fake", "", ""), k);
    snprintf(conf_b, sizeof(conf_b), "%s,%s,%s",
             fake_as(b, sizeof(b), "fake", "\"--stderr-banner\",\"b\"", ""), k,
             fake_as(x, sizeof(x), "extra", "", ""));
    hub = mcpgw_hub_new(conf_of(conf_a), NULL);
    call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
    ck_assert_int_eq(call_to(hub, "keep", "echo", NULL, &r), 0);
    run_until(hub, &r.done, 1, 5000);
    keep = pid_of(hub, "keep");
    fds = count_fds();
    children = count_children();
    ck_assert_int_eq(children, 2);
    for (int i = 0; i < 20; i++) {
        bool to_b = i % 2 == 0;

        ck_assert_int_eq(mcpgw_hub_reload(hub, conf_of(to_b ? conf_b : conf_a), &res), 0);
        ck_assert_uint_eq(res.kept, 1);
        ck_assert_uint_eq(res.changed, 1);
        ck_assert_uint_eq(to_b ? res.added : res.removed, 1);
        call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
        ck_assert_int_eq(r.status, 0);
        if (to_b) {
            ck_assert_int_eq(call_to(hub, "extra", "echo", NULL, &r), 0);
            run_until(hub, &r.done, 1, 5000);
            ck_assert_int_eq(r.status, 0);
        }
        ck_assert_int_eq(pid_of(hub, "keep"), keep);
    }
    run_until_settled(hub);
    ck_assert_int_eq(count_fds(), fds);
    ck_assert_int_eq(count_children(), children);
    ck_assert_int_eq(pid_of(hub, "keep"), keep);
    mcpgw_hub_free(hub);
    assert_no_children();
}
END_TEST

/* ---- tool pinning (hub_pins.c) -------------------------------------------- */

static char pin_dir[64];

static mcpgw_hub *pinned_hub(const char *mode)
{
    char json[4096], err[512];
    struct mcpgw_conf *conf;
    mcpgw_hub *hub;
    int rc;

    snprintf(pin_dir, sizeof(pin_dir), "/tmp/check_hub_pins.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(pin_dir));
    snprintf(json, sizeof(json),
             "{\"gateway\":{\"stateDir\":\"%s\",\"toolPinning\":\"%s\"},"
             "\"mcpServers\":{\"fake\":{\"command\":\"%s\"}}}", pin_dir, mode, fake);
    rc = mcpgw_conf_parse(json, strlen(json), "pins.json", "/tmp", &conf, err, sizeof(err));
    ck_assert_msg(rc == 0, "config: %s", err);
    hub = mcpgw_hub_new(conf, &rc);
    ck_assert_ptr_nonnull(hub);
    return hub;
}

static void pinned_hub_free(mcpgw_hub *hub)
{
    char p[128];

    mcpgw_hub_free(hub);
    snprintf(p, sizeof(p), "%s/tool-pins.json", pin_dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/tool-pins.json.lock", pin_dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/slots", pin_dir);
    rmdir(p);
    rmdir(pin_dir);
}

static bool tool_served(mcpgw_hub *hub, const char *name)
{
    json_object *tools = mcpgw_hub_tools(hub, "fake");

    for (size_t i = 0; tools && i < json_object_array_length(tools); i++) {
        json_object *n;

        if (json_object_object_get_ex(json_object_array_get_idx(tools, i), "name", &n) &&
            strcmp(json_object_get_string(n), name) == 0)
            return true;
    }
    return false;
}

/* A tool that appears after first use (fake_mcp's list_changed adds
 * late_tool) is withheld in enforce mode until approved, and served once
 * approved, without a restart. */
START_TEST(pinning_enforce_withholds_new_tools_until_approved)
{
    mcpgw_hub *hub = pinned_hub("enforce");
    const char *names[] = { "late_tool" };
    struct result r;
    size_t n = 0;
    char err[256], p[128];
    struct stat st;
    int rc;

    call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
    ck_assert_int_eq(r.status, 0);
    snprintf(p, sizeof(p), "%s/tool-pins.json", pin_dir);
    ck_assert_int_eq(stat(p, &st), 0);
    ck_assert_uint_eq(st.st_mode & 07777, 0600);
    call_wait(hub, "list_changed", NULL, &r);
    ck_assert_int_eq(r.status, 0);
    /* Held while the refresh runs, then refused as withheld - or refused at
     * once when the refresh was already done (the answer to list_changed
     * and to the hub's tools/list can arrive in one read on a busy
     * machine). */
    memset(&r, 0, sizeof(r));
    rc = call(hub, "late_tool", "{\"message\":\"y\"}", &r, NULL, NULL);
    if (rc == 0) {
        run_until(hub, &r.done, 1, 10000);
        ck_assert_int_eq(r.status, MCPGW_EFORBIDDEN);
        ck_assert_msg(strstr(r.error, "tool 'late_tool' of server 'fake' changed since it was "
                             "approved"), "%s", r.error);
    } else {
        ck_assert_int_eq(rc, MCPGW_EFORBIDDEN);
    }
    ck_assert(!tool_served(hub, "late_tool"));
    ck_assert(tool_served(hub, "echo"));
    ck_assert_int_eq(call(hub, "late_tool", NULL, &r, NULL, NULL), MCPGW_EFORBIDDEN);

    ck_assert_int_eq(mcpgw_hub_approve_tools(hub, "fake", names, 1, &n, err, sizeof(err)), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert(tool_served(hub, "late_tool"));
    call_wait(hub, "late_tool", "{\"message\":\"y\"}", &r);
    ck_assert_int_eq(r.status, 0);
    pinned_hub_free(hub);
}
END_TEST

/* A definition that differs from its pin (as after a rug pull) is withheld
 * from the start; an approval written by another process (the CLI) is
 * picked up at the next call. */
START_TEST(pinning_enforce_catches_a_changed_definition)
{
    static const char zero_pin[] =
        "{\"servers\":{\"fake\":{\"echo\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\"}}}\n";
    mcpgw_hub *hub = pinned_hub("enforce");
    json_object *tools;
    struct result r;
    char p[128], err[256];
    size_t n = 0;
    int fd;

    snprintf(p, sizeof(p), "%s/tool-pins.json", pin_dir);
    fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, zero_pin, sizeof(zero_pin) - 1), (ssize_t)sizeof(zero_pin) - 1);
    close(fd);

    memset(&r, 0, sizeof(r));
    ck_assert_int_eq(call(hub, "echo", "{\"message\":\"x\"}", &r, NULL, NULL), 0);
    run_until(hub, &r.done, 1, 10000);
    ck_assert_int_eq(r.status, MCPGW_EFORBIDDEN);
    /* Every other tool is new to the pins: withheld too. */
    ck_assert_int_eq(json_object_array_length(mcpgw_hub_tools(hub, "fake")), 0);

    tools = json_object_get(hub->srvs[0]->tools_all);
    ck_assert_int_eq(mcpgw_pins_approve(p, "fake", tools, NULL, 0, &n, err, sizeof(err)), 0);
    json_object_put(tools);
    ck_assert_uint_gt(n, 5);
    call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.text, "Echo: x");
    pinned_hub_free(hub);
}
END_TEST

START_TEST(pinning_warn_serves_and_off_writes_nothing)
{
    mcpgw_hub *hub = pinned_hub("warn");
    struct result r;
    char p[128];

    call_wait(hub, "list_changed", NULL, &r);
    call_wait(hub, "late_tool", "{\"message\":\"y\"}", &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert(tool_served(hub, "late_tool"));
    pinned_hub_free(hub);

    hub = pinned_hub("off");
    call_wait(hub, "echo", "{\"message\":\"x\"}", &r);
    ck_assert_int_eq(r.status, 0);
    snprintf(p, sizeof(p), "%s/tool-pins.json", pin_dir);
    ck_assert_int_eq(access(p, F_OK), -1);
    pinned_hub_free(hub);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hub");
    TCase *tc = tcase_create("hub");
    const char *b = getenv("top_builddir");
    SRunner *sr;
    int failed;

    snprintf(fake, sizeof(fake), "%s/tests/fake_mcp", b ? b : ".");
    signal(SIGPIPE, SIG_IGN);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, echo_round_trip_and_health);
    tcase_add_test(tc, answers_arrive_out_of_order);
    tcase_add_test(tc, many_in_flight_each_gets_its_own_answer);
    tcase_add_test(tc, progress_is_relayed_then_done);
    tcase_add_test(tc, no_progress_unless_asked);
    tcase_add_test(tc, timeout_completes_once_and_drops_the_late_answer);
    tcase_add_test(tc, timeout_holds_while_progress_flows);
    tcase_add_test(tc, cancel_runs_the_callback_and_drops_later_progress);
    tcase_add_test(tc, crash_fails_in_flight_calls_and_restarts);
    tcase_add_test(tc, unknown_server_and_tool);
    tcase_add_test(tc, config_allow_list_hides_tools);
    tcase_add_test(tc, tool_errors_are_results_rpc_errors_are_errors);
    tcase_add_test(tc, result_text_is_the_servers_bytes_or_a_tree);
    tcase_add_test(tc, garbage_is_tolerated_then_restarts);
    tcase_add_test(tc, oversized_answer_fails_only_its_call);
    tcase_add_test(tc, ten_mib_answer_within_a_raised_limit);
    tcase_add_test(tc, start_timeout_backs_off);
    tcase_add_test(tc, crash_loop_backs_off_exponentially);
    tcase_add_test(tc, missing_command_is_reported);
    tcase_add_test(tc, server_requests_are_always_answered);
    tcase_add_test(tc, tool_list_changes_are_followed);
    tcase_add_test(tc, paginated_tool_lists_are_followed);
    tcase_add_test(tc, unknown_response_ids_are_ignored);
    tcase_add_test(tc, malformed_response_fails_its_call_at_once);
    tcase_add_test(tc, child_gets_only_allowed_env_and_fds);
    tcase_add_test(tc, stderr_is_logged_per_server);
    tcase_add_test(tc, in_flight_cap_answers_busy);
    tcase_add_test(tc, shutdown_completes_calls_and_reaps);
    tcase_add_test(tc, observer_sees_calls_and_states);
    tcase_add_test(tc, blocking_calls_from_many_threads);
    tcase_add_test(tc, blocking_calls_into_a_bound_loop);
    tcase_add_test(tc, blocking_call_without_a_thread);
    tcase_add_test(tc, host_wide_cap_refuses_the_next_server);
    tcase_add_test(tc, host_wide_cap_holds_across_processes);
    tcase_add_test(tc, frozen_server_is_restarted_after_a_timeout);
    tcase_add_test(tc, slow_but_alive_server_is_kept);
    tcase_add_test(tc, hundred_mb_line_keeps_memory_bounded);
    tcase_add_test(tc, stderr_flood_is_drained_and_capped);
    tcase_add_test(tc, thousand_crash_cycles);
    tcase_add_test(tc, kill_9_of_the_gateway_ends_its_servers);
    tcase_add_test(tc, reload_keeps_unchanged_servers_and_adds_new_ones);
    tcase_add_test(tc, reload_removes_a_server_and_fails_its_calls);
    tcase_add_test(tc, reload_restarts_a_changed_server);
    tcase_add_test(tc, refused_reload_changes_nothing);
    tcase_add_test(tc, twenty_reloads_leave_nothing_behind);
    tcase_add_test(tc, reload_posted_to_the_hub_thread);
    tcase_add_test(tc, pinning_enforce_withholds_new_tools_until_approved);
    tcase_add_test(tc, pinning_enforce_catches_a_changed_definition);
    tcase_add_test(tc, pinning_warn_serves_and_off_writes_nothing);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
