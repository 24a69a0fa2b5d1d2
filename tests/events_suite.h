/* events_suite.h - the event stream's behaviour, the same for every backend.
 *
 * Included by check_events.c (the embedded store) and check_events_redis.c
 * (Redis Streams on a real redis-server).  The includer defines,
 * before including,
 *   static const char *backend_name;                 "file" or "redis"
 * and after it
 *   static void backend_keys(char *out, size_t n);   JSON members for
 *       gateway.events naming a fresh, empty store for this test
 * and calls add_common_tests(tc).
 *
 * What these tests prove: events published by many threads and many
 * processes reach a reader once each, in id order, with dense per-source
 * order; a reader that resumes gets exactly what it missed (1,000 events);
 * retention by count shows up as a gap event, at open and mid-stream, never
 * a silent skip; an id the store never gave gets a gap and then everything;
 * a publisher killed with SIGKILL in a tight loop leaves a readable stream;
 * readers are woken through their fd; bad events are dropped and counted,
 * never failing the caller; and the hub observer turns real calls to a real
 * MCP server (tests/fake_mcp) into tool_call/tool_progress/tool_result and
 * server_status events that can be followed by callId.
 */
#ifndef MCPGW_TESTS_EVENTS_SUITE_H
#define MCPGW_TESTS_EVENTS_SUITE_H

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "conf.h"
#include "err.h"
#include "events.h"
#include "hub.h"
#include "limits.h"
#include "log.h"

static void backend_keys(char *out, size_t n);
static char fake_mcp[512];

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A config whose gateway.events is the test's store plus extra keys, and
 * one fake MCP server (used by the hub tests). */
static struct mcpgw_conf *conf_with(const char *extra)
{
    char keys[1024], json[4096], err[512];
    struct mcpgw_conf *conf = NULL;
    int rc;

    backend_keys(keys, sizeof(keys));
    snprintf(json, sizeof(json),
             "{\"gateway\":{\"events\":{%s%s%s}},"
             "\"mcpServers\":{\"fake\":{\"command\":\"%s\","
             "\"restart\":{\"initialDelayMs\":100,\"maxDelayMs\":1000}}}}",
             keys, extra && extra[0] ? "," : "", extra ? extra : "", fake_mcp);
    rc = mcpgw_conf_parse(json, strlen(json), "test.json", "/tmp", &conf, err, sizeof(err));
    ck_assert_msg(rc == 0, "config: %s", err);
    return conf;
}

static mcpgw_events *ev_open(const char *extra)
{
    struct mcpgw_conf *conf = conf_with(extra);
    mcpgw_events *ev = NULL;
    char err[512];
    int rc = mcpgw_events_open(conf, &ev, err, sizeof(err));

    ck_assert_msg(rc == 0, "events_open: %d %s", rc, err);
    mcpgw_conf_free(conf);
    return ev;
}

/* Publish {"src":src,"n":n,"serverId":"s1"} and return its id in id. */
static void pub(mcpgw_events *ev, const char *type, const char *src, int n, char *id)
{
    json_object *d = json_object_new_object();
    char tmp[MCPGW_EVENT_ID_MAX + 1];

    json_object_object_add(d, "src", json_object_new_string(src));
    json_object_object_add(d, "n", json_object_new_int(n));
    json_object_object_add(d, "serverId", json_object_new_string("s1"));
    ck_assert_int_eq(mcpgw_events_publish(ev, type, d, id ? id : tmp), 0);
    json_object_put(d);
}

/* Read one event within timeout_ms, which must come. */
static void must_read(mcpgw_events_reader *r, struct mcpgw_event *e, int timeout_ms)
{
    int rc = mcpgw_events_read(r, e, timeout_ms);

    ck_assert_msg(rc == 1, "read: expected an event within %d ms, got %d", timeout_ms, rc);
}

static json_object *event_json(const struct mcpgw_event *e)
{
    json_object *o = json_tokener_parse(e->json);

    ck_assert_msg(o != NULL, "event is not JSON: %.*s", (int)e->json_len, e->json);
    ck_assert_uint_eq(strlen(e->json), e->json_len);
    return o;
}

static const char *jstr(json_object *o, const char *k1, const char *k2)
{
    json_object *v;

    if (!json_object_object_get_ex(o, k1, &v))
        return NULL;
    if (k2 && !json_object_object_get_ex(v, k2, &v))
        return NULL;
    return json_object_get_string(v);
}

static int64_t jint(json_object *o, const char *k1, const char *k2)
{
    json_object *v;

    if (!json_object_object_get_ex(o, k1, &v))
        return -1;
    if (k2 && !json_object_object_get_ex(v, k2, &v))
        return -1;
    return json_object_get_int64(v);
}

static bool jhas(json_object *o, const char *k1, const char *k2)
{
    json_object *v;

    return json_object_object_get_ex(o, k1, &v) && (!k2 || json_object_object_get_ex(v, k2, &v));
}

/* ---- publisher processes ----------------------------------------------------
 *
 * Other gateway processes are played by this same test program, executed
 * again with --publisher: a process of its own with its own handle (and,
 * since it is exec'd, no state inherited from a parent whose threads were
 * running when it forked).
 *   <prog> --publisher <events members> <src> <count, -1 = forever> <text bytes>
 * It waits for a byte or EOF on stdin, publishes "tool_call" events
 * {src, n, serverId} (+ text), and exits 0 if none was dropped. */

static int publisher_main(int argc, char **argv)
{
    char json[2048], err[256], c;
    struct mcpgw_conf *conf;
    mcpgw_events *ev;
    struct mcpgw_events_stats st;
    json_object *d;
    int count, size;
    char *text = NULL;

    if (argc != 6)
        return 64;
    count = atoi(argv[4]);
    size = atoi(argv[5]);
    snprintf(json, sizeof(json), "{\"gateway\":{\"events\":{%s}}}", argv[2]);
    if (mcpgw_conf_parse(json, strlen(json), "pub.json", "/tmp", &conf, err, sizeof(err)) < 0 ||
        mcpgw_events_open(conf, &ev, err, sizeof(err)) < 0) {
        fprintf(stderr, "publisher: %s\n", err);
        return 1;
    }
    mcpgw_conf_free(conf);
    if (size > 0) {
        text = malloc((size_t)size + 1);
        memset(text, 'p', (size_t)size);
        text[size] = 0;
    }
    if (read(0, &c, 1) < 0)
        return 1;
    for (int i = 0; count < 0 || i < count; i++) {
        d = json_object_new_object();
        json_object_object_add(d, "src", json_object_new_string(argv[3]));
        json_object_object_add(d, "n", json_object_new_int(i));
        json_object_object_add(d, "serverId", json_object_new_string("s1"));
        if (text)
            json_object_object_add(d, "text", json_object_new_string(text));
        mcpgw_events_publish(ev, "tool_call", d, NULL);
        json_object_put(d);
    }
    mcpgw_events_stats(ev, &st);
    mcpgw_events_close(ev);
    free(text);
    if (st.dropped)
        fprintf(stderr, "publisher %s: dropped %" PRIu64 " of %d\n", argv[3], st.dropped, count);
    return st.dropped ? 2 : 0;
}

/* Start a publisher process; it starts publishing when go_fd (its stdin)
 * gives a byte or EOF; go_fd -1: at once. */
static pid_t spawn_publisher(const char *extra, const char *src, int count, int size, int go_fd)
{
    char keys[1024], members[1400], cnt[16], sz[16], self[4096];
    char *argv[] = { "publisher", "--publisher", members, (char *)src, cnt, sz, NULL };
    int devnull = go_fd >= 0 ? go_fd : open("/dev/null", O_RDONLY | O_CLOEXEC);
    ssize_t n;
    pid_t pid;

    /* The path itself, not an exec of /proc/self/exe: under valgrind that
     * link names valgrind's tool, while readlink answers with ours. */
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    ck_assert_int_gt(n, 0);
    self[n] = '\0';

    backend_keys(keys, sizeof(keys));
    snprintf(members, sizeof(members), "%s%s%s", keys, extra && extra[0] ? "," : "",
             extra ? extra : "");
    snprintf(cnt, sizeof(cnt), "%d", count);
    snprintf(sz, sizeof(sz), "%d", size);
    ck_assert_int_ge(devnull, 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        /* Only system calls between fork and exec: other threads may hold
         * allocator locks. */
        if (dup2(devnull, 0) < 0)
            _exit(126);
        execv(self, argv);
        _exit(127);
    }
    if (go_fd < 0)
        close(devnull);
    return pid;
}

static void wait_publisher(pid_t pid, const char *what)
{
    int status;

    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: status %d", what, status);
}

/* ---- order, fields, ids --------------------------------------------------- */

START_TEST(events_arrive_in_order_with_their_fields)
{
    mcpgw_events *ev = ev_open("");
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    char ids[50][MCPGW_EVENT_ID_MAX + 1], prev[MCPGW_EVENT_ID_MAX + 1] = "";
    json_object *o;
    struct mcpgw_events_stats st;

    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    ck_assert_int_eq(mcpgw_events_read(r, &e, 0), 0);
    for (int i = 0; i < 50; i++) {
        pub(ev, i % 2 ? "tool_call" : "server_status", "t", i, ids[i]);
        ck_assert_msg(ids[i][0], "no id for event %d", i);
        ck_assert(mcpgw_events_id_valid(ev, ids[i]));
        if (i)
            ck_assert_int_lt(mcpgw_events_id_cmp(ev, ids[i - 1], ids[i]), 0);
    }
    for (int i = 0; i < 50; i++) {
        must_read(r, &e, 2000);
        ck_assert_str_eq(e.id, ids[i]);
        if (prev[0])
            ck_assert_int_lt(mcpgw_events_id_cmp(ev, prev, e.id), 0);
        snprintf(prev, sizeof(prev), "%s", e.id);
        ck_assert_str_eq(e.type, i % 2 ? "tool_call" : "server_status");
        ck_assert(e.is_tool_event == (i % 2 == 1));
        ck_assert_ptr_nonnull(e.server_id);
        ck_assert_str_eq(e.server_id, "s1");
        o = event_json(&e);
        ck_assert_str_eq(jstr(o, "type", NULL), e.type);
        ck_assert_int_gt(jint(o, "timestamp", NULL), 1700000000000);
        ck_assert_int_eq(jint(o, "data", "n"), i);
        ck_assert_str_eq(jstr(o, "data", "src"), "t");
        json_object_put(o);
    }
    ck_assert_int_eq(mcpgw_events_read(r, &e, 50), 0);
    mcpgw_events_stats(ev, &st);
    ck_assert_uint_eq(st.published, 50);
    ck_assert_uint_eq(st.dropped, 0);
    ck_assert_str_eq(st.newest, ids[49]);
    ck_assert(st.oldest[0]);
    ck_assert_int_le(mcpgw_events_id_cmp(ev, st.oldest, ids[0]), 0);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

START_TEST(ids_validate_and_compare)
{
    mcpgw_events *ev = ev_open("");
    char id[MCPGW_EVENT_ID_MAX + 1];
    mcpgw_events_reader *r;

    pub(ev, "client", "t", 0, id);
    ck_assert(mcpgw_events_id_valid(ev, id));
    ck_assert(!mcpgw_events_id_valid(ev, ""));
    ck_assert(!mcpgw_events_id_valid(ev, "abc"));
    ck_assert(!mcpgw_events_id_valid(ev, "1 2"));
    ck_assert(!mcpgw_events_id_valid(ev, "-1"));
    ck_assert(!mcpgw_events_id_valid(ev, "99999999999999999999999999"));
    ck_assert(!mcpgw_events_id_valid(ev, NULL));
    ck_assert_int_eq(mcpgw_events_id_cmp(ev, id, id), 0);
    /* Malformed ids sort before every valid one. */
    ck_assert_int_lt(mcpgw_events_id_cmp(ev, "junk", id), 0);
    ck_assert_int_gt(mcpgw_events_id_cmp(ev, id, "junk"), 0);
    /* A reader refuses a malformed Last-Event-ID. */
    ck_assert_int_eq(mcpgw_events_reader_open(ev, "junk", &r), -EINVAL);
    ck_assert_int_eq(mcpgw_events_reader_open(ev, "1\r\nx", &r), -EINVAL);
    mcpgw_events_close(ev);
}
END_TEST

START_TEST(bad_events_are_dropped_and_counted_never_failing)
{
    mcpgw_events *ev = ev_open("");
    char id[MCPGW_EVENT_ID_MAX + 1] = "x";
    struct mcpgw_events_stats st;
    json_object *d = json_object_new_object();
    char *big = malloc(MCPGW_EVENT_BYTES_MAX + 10);

    memset(big, 'x', MCPGW_EVENT_BYTES_MAX + 9);
    big[MCPGW_EVENT_BYTES_MAX + 9] = 0;
    json_object_object_add(d, "text", json_object_new_string(big));
    ck_assert_int_eq(mcpgw_events_publish(ev, "tool_call", d, id), 0);
    ck_assert_str_eq(id, "");
    ck_assert_int_eq(mcpgw_events_publish(ev, "Bad-Type", NULL, id), 0);
    ck_assert_str_eq(id, "");
    ck_assert_int_eq(mcpgw_events_publish(ev, "", NULL, id), 0);
    ck_assert_int_eq(mcpgw_events_publish(ev, "client", NULL, id), 0);
    ck_assert(id[0]);
    mcpgw_events_stats(ev, &st);
    ck_assert_uint_eq(st.dropped, 3);
    ck_assert_uint_eq(st.published, 1);
    json_object_put(d);
    free(big);
    mcpgw_events_close(ev);
}
END_TEST

/* ---- resuming --------------------------------------------------------------- */

START_TEST(reader_resumes_after_1000_missed_events)
{
    mcpgw_events *ev = ev_open("");
    mcpgw_events *other = ev_open("");     /* another process's handle */
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    char seen[MCPGW_EVENT_ID_MAX + 1], ids[1000][MCPGW_EVENT_ID_MAX + 1];

    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    pub(ev, "client", "before", 0, NULL);
    must_read(r, &e, 2000);
    snprintf(seen, sizeof(seen), "%s", e.id);
    mcpgw_events_reader_close(r);           /* the browser goes away */

    for (int i = 0; i < 1000; i++)
        pub(i % 3 ? ev : other, "tool_result", "away", i, ids[i]);

    ck_assert_int_eq(mcpgw_events_reader_open(other, seen, &r), 0);
    for (int i = 0; i < 1000; i++) {
        json_object *o;

        must_read(r, &e, 5000);
        ck_assert_msg(strcmp(e.id, ids[i]) == 0, "event %d: id %s, expected %s", i, e.id, ids[i]);
        o = event_json(&e);
        ck_assert_int_eq(jint(o, "data", "n"), i);
        json_object_put(o);
    }
    ck_assert_int_eq(mcpgw_events_read(r, &e, 50), 0);
    /* And live events follow. */
    pub(ev, "client", "live", 0, ids[0]);
    must_read(r, &e, 2000);
    ck_assert_str_eq(e.id, ids[0]);
    mcpgw_events_reader_close(r);

    /* Resuming from the newest id gives nothing until something new. */
    ck_assert_int_eq(mcpgw_events_reader_open(ev, ids[0], &r), 0);
    ck_assert_int_eq(mcpgw_events_read(r, &e, 50), 0);
    pub(other, "client", "next", 1, ids[1]);
    must_read(r, &e, 2000);
    ck_assert_str_eq(e.id, ids[1]);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
    mcpgw_events_close(other);
}
END_TEST

/* Read a gap event and check it: requested, and oldest = what follows. */
static void check_gap(mcpgw_events *ev, const struct mcpgw_event *e, const char *requested,
                      char *oldest_out)
{
    json_object *o;

    ck_assert_str_eq(e->type, "gap");
    ck_assert(!e->is_tool_event);
    ck_assert_ptr_null(e->server_id);
    ck_assert(mcpgw_events_id_valid(ev, e->id));
    o = event_json(e);
    ck_assert_str_eq(jstr(o, "type", NULL), "gap");
    ck_assert_str_eq(jstr(o, "data", "requested"), requested);
    ck_assert(jstr(o, "data", "oldest") != NULL);
    snprintf(oldest_out, MCPGW_EVENT_ID_MAX + 1, "%s", jstr(o, "data", "oldest"));
    /* The gap's own id lies between: a client resuming after it asks
     * from there and gets the oldest on. */
    ck_assert_int_lt(mcpgw_events_id_cmp(ev, e->id, oldest_out), 0);
    json_object_put(o);
}

START_TEST(resuming_past_retention_gets_a_gap_first)
{
    mcpgw_events *ev = ev_open("\"maxEvents\":64");
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    char first[MCPGW_EVENT_ID_MAX + 1], last[MCPGW_EVENT_ID_MAX + 1];
    char oldest[MCPGW_EVENT_ID_MAX + 1], prev[MCPGW_EVENT_ID_MAX + 1];
    struct mcpgw_events_stats st;
    int n = 0, nn = -1;

    pub(ev, "client", "t", 0, first);
    for (int i = 1; i < 1000; i++)
        pub(ev, "client", "t", i, last);
    mcpgw_events_stats(ev, &st);
    ck_assert_str_eq(st.newest, last);
    ck_assert_int_gt(mcpgw_events_id_cmp(ev, st.oldest, first), 0);

    ck_assert_int_eq(mcpgw_events_reader_open(ev, first, &r), 0);
    must_read(r, &e, 2000);
    check_gap(ev, &e, first, oldest);
    ck_assert_str_eq(oldest, st.oldest);
    snprintf(prev, sizeof(prev), "%s", e.id);
    while (mcpgw_events_read(r, &e, 200) == 1) {
        json_object *o = event_json(&e);
        int k = (int)jint(o, "data", "n");

        ck_assert_str_ne(e.type, "gap");
        ck_assert_int_lt(mcpgw_events_id_cmp(ev, prev, e.id), 0);
        if (n == 0)
            ck_assert_str_eq(e.id, oldest);
        else
            ck_assert_int_eq(k, nn + 1);    /* nothing skipped after the gap */
        nn = k;
        snprintf(prev, sizeof(prev), "%s", e.id);
        n++;
        json_object_put(o);
    }
    ck_assert_int_eq(nn, 999);
    /* Count retention: at most maxEvents, and most of them. */
    ck_assert_int_le(n, 64);
    ck_assert_int_ge(n, 48);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

START_TEST(slow_reader_gets_a_gap_mid_stream)
{
    mcpgw_events *ev = ev_open("\"maxEvents\":32");
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    char prev[MCPGW_EVENT_ID_MAX + 1], oldest[MCPGW_EVENT_ID_MAX + 1];
    char last[MCPGW_EVENT_ID_MAX + 1];
    int gaps = 0, n = 0, lastn = -1;

    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    pub(ev, "client", "t", 0, NULL);
    must_read(r, &e, 2000);
    snprintf(prev, sizeof(prev), "%s", e.id);
    /* The reader does not read; more than a process keeps in memory for
     * its readers (Redis: the tail's ring of 4,096) goes by. */
    for (int i = 1; i <= 5000; i++)
        pub(ev, "client", "t", i, last);
    while (mcpgw_events_read(r, &e, 300) == 1) {
        ck_assert_int_lt(mcpgw_events_id_cmp(ev, prev, e.id), 0);
        if (strcmp(e.type, "gap") == 0) {
            check_gap(ev, &e, prev, oldest);
            gaps++;
            lastn = -1;                     /* consecutive again from here */
        } else {
            json_object *o = event_json(&e);
            int k = (int)jint(o, "data", "n");

            if (lastn >= 0)
                ck_assert_int_eq(k, lastn + 1);
            lastn = k;
            json_object_put(o);
            n++;
        }
        snprintf(prev, sizeof(prev), "%s", e.id);
        if (strcmp(e.id, last) == 0)
            break;
    }
    ck_assert_str_eq(prev, last);
    /* At least one gap, and (checked above) none of the numbering breaks
     * without one.  More than one is honest on a loaded machine: with 32
     * retained, the stream may be trimmed past events before a process's
     * tail has read them, and each such hole is announced. */
    ck_assert_int_ge(gaps, 1);
    ck_assert_int_eq(lastn, 5000);
    ck_assert_int_le(n, 32 + 32);   /* what it still had open, and the retained */
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

/* An id this store never gave (another deployment, a store that was
 * wiped, a forged header): a gap, then everything retained. */
START_TEST(unknown_id_gets_a_gap_then_everything)
{
    mcpgw_events *ev = ev_open("");
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    char ids[5][MCPGW_EVENT_ID_MAX + 1], oldest[MCPGW_EVENT_ID_MAX + 1];
    const char *future = strchr(backend_name, 'r') ? "99999999999999-0" : "99999999999999999";

    for (int i = 0; i < 5; i++)
        pub(ev, "client", "t", i, ids[i]);
    ck_assert_int_eq(mcpgw_events_reader_open(ev, future, &r), 0);
    must_read(r, &e, 2000);
    check_gap(ev, &e, future, oldest);
    for (int i = 0; i < 5; i++) {
        must_read(r, &e, 2000);
        ck_assert_str_eq(e.id, ids[i]);
    }
    ck_assert_int_eq(mcpgw_events_read(r, &e, 50), 0);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

/* ---- many publishers ---------------------------------------------------------- */

struct thr_arg {
    mcpgw_events *ev;
    int k, n;
};

static void *thr_pub(void *p)
{
    struct thr_arg *a = p;
    char src[8];

    snprintf(src, sizeof(src), "T%d", a->k);
    for (int i = 0; i < a->n; i++)
        pub(a->ev, "tool_progress", src, i, NULL);
    return NULL;
}

/* Read until every source has sent n events; each seen once, in order per
 * source, ids increasing overall. */
static void read_sources(mcpgw_events *ev, mcpgw_events_reader *r, const char *prefix,
                         int nsrc, int n, int timeout_ms)
{
    int *next = calloc((size_t)nsrc, sizeof(int)), total = 0;
    char prev[MCPGW_EVENT_ID_MAX + 1] = "";
    struct mcpgw_event e;
    int64_t end = now_ms() + timeout_ms;

    while (total < nsrc * n) {
        json_object *o;
        const char *src;
        int k, left = (int)(end - now_ms());

        ck_assert_msg(left > 0, "only %d of %d events arrived", total, nsrc * n);
        ck_assert_int_eq(mcpgw_events_read(r, &e, left), 1);
        if (prev[0])
            ck_assert_msg(mcpgw_events_id_cmp(ev, prev, e.id) < 0, "id %s after %s", e.id, prev);
        snprintf(prev, sizeof(prev), "%s", e.id);
        o = event_json(&e);
        src = jstr(o, "data", "src");
        ck_assert_msg(src && strncmp(src, prefix, strlen(prefix)) == 0, "stray event %s", e.json);
        k = atoi(src + strlen(prefix));
        ck_assert(k >= 0 && k < nsrc);
        ck_assert_msg(jint(o, "data", "n") == next[k], "source %d: event %d, expected %d",
                      k, (int)jint(o, "data", "n"), next[k]);
        next[k]++;
        total++;
        json_object_put(o);
    }
    ck_assert_int_eq(mcpgw_events_read(r, &e, 50), 0);
    free(next);
}

START_TEST(threads_publish_through_one_handle)
{
    mcpgw_events *ev = ev_open("");
    mcpgw_events_reader *r;
    pthread_t t[4];
    struct thr_arg a[4];
    struct mcpgw_events_stats st;

    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thr_arg){ ev, i, 300 };
        ck_assert_int_eq(pthread_create(&t[i], NULL, thr_pub, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    read_sources(ev, r, "T", 4, 300, 20000);
    mcpgw_events_stats(ev, &st);
    ck_assert_uint_eq(st.published, 1200);
    ck_assert_uint_eq(st.dropped, 0);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

/* Stand-ins for wsd, two mcpgw-fcgi and the CLI: four processes, each with
 * its own handle, publishing at once; one reader sees all, once, in order. */
START_TEST(processes_publish_one_reader_sees_all_once_in_order)
{
    mcpgw_events *ev = ev_open("");
    mcpgw_events_reader *r;
    pid_t pids[4];
    int go[2];

    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    ck_assert_int_eq(pipe2(go, O_CLOEXEC), 0);
    for (int k = 0; k < 4; k++) {
        char src[8];

        snprintf(src, sizeof(src), "P%d", k);
        pids[k] = spawn_publisher("", src, 500, 0, go[0]);
    }
    close(go[0]);
    close(go[1]);                           /* EOF: all start together */
    read_sources(ev, r, "P", 4, 500, 30000);
    for (int k = 0; k < 4; k++)
        wait_publisher(pids[k], "publisher");
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

/* A publisher in a tight loop is killed with SIGKILL, five times; the
 * stream stays readable, later events flow, ids never repeat. */
START_TEST(kill9_of_a_publisher_leaves_a_readable_stream)
{
    mcpgw_events *ev = ev_open("\"maxEvents\":100000,\"maxBytes\":1073741824");
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    char prev[MCPGW_EVENT_ID_MAX + 1] = "", first[MCPGW_EVENT_ID_MAX + 1] = "";
    char after[MCPGW_EVENT_ID_MAX + 1];
    int total = 0;

    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    for (int round = 0; round < 5; round++) {
        /* Large events make a kill mid-write likely. */
        pid_t pid = spawn_publisher("\"maxEvents\":100000,\"maxBytes\":1073741824", "killed",
                                    -1, 24 * 1024, -1);
        int seen = 0, status;

        while (seen < 20) {
            must_read(r, &e, 10000);
            if (!first[0])
                snprintf(first, sizeof(first), "%s", e.id);
            if (prev[0])
                ck_assert_int_lt(mcpgw_events_id_cmp(ev, prev, e.id), 0);
            snprintf(prev, sizeof(prev), "%s", e.id);
            seen++;
            total++;
        }
        kill(pid, SIGKILL);
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        /* A later event is published and flows. */
        pub(ev, "client", "after", round, after);
        for (;;) {
            must_read(r, &e, 10000);
            ck_assert_int_lt(mcpgw_events_id_cmp(ev, prev, e.id), 0);
            snprintf(prev, sizeof(prev), "%s", e.id);
            total++;
            if (strcmp(e.id, after) == 0)
                break;
        }
    }
    mcpgw_events_reader_close(r);
    /* The whole stream reads back, complete JSON every time. */
    {
        char prev2[MCPGW_EVENT_ID_MAX + 1];
        int n = 0;

        ck_assert_int_eq(mcpgw_events_reader_open(ev, first, &r), 0);
        snprintf(prev2, sizeof(prev2), "%s", first);
        while (mcpgw_events_read(r, &e, 200) == 1) {
            json_object *o = event_json(&e);

            ck_assert_str_ne(e.type, "gap");
            ck_assert_int_lt(mcpgw_events_id_cmp(ev, prev2, e.id), 0);
            snprintf(prev2, sizeof(prev2), "%s", e.id);
            json_object_put(o);
            n++;
        }
        ck_assert_str_eq(prev2, after);
        ck_assert_int_ge(n, total - 1);
        mcpgw_events_reader_close(r);
    }
    mcpgw_events_close(ev);
}
END_TEST

/* ---- waking readers ------------------------------------------------------------ */

START_TEST(reader_fd_wakes_for_another_process)
{
    mcpgw_events *ev = ev_open("");
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    struct pollfd p;
    pid_t pid;
    int fd;
    int64_t t0;

    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    fd = mcpgw_events_reader_fd(r);
    ck_assert_int_ge(fd, 0);
    /* Nothing yet: the fd stays quiet once drained. */
    while (mcpgw_events_read(r, &e, 0) == 1)
        ;
    p = (struct pollfd){ .fd = fd, .events = POLLIN };
    while (poll(&p, 1, 0) == 1 && mcpgw_events_read(r, &e, 0) == 0)
        ;
    t0 = now_ms();
    pid = spawn_publisher("", "woke", 1, 0, -1);
    /* An event loop: poll the fd, then read without waiting. */
    for (;;) {
        int rc;

        ck_assert_msg(now_ms() - t0 < 10000, "no wake-up within 10 s");
        p.revents = 0;
        ck_assert_int_ge(poll(&p, 1, 10000), 0);
        rc = mcpgw_events_read(r, &e, 0);
        ck_assert_int_ge(rc, 0);
        if (rc == 1)
            break;
    }
    {
        json_object *o = event_json(&e);

        ck_assert_str_eq(jstr(o, "data", "src"), "woke");
        json_object_put(o);
    }
    wait_publisher(pid, "publisher");
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

/* ---- the hub observer ----------------------------------------------------------- */

struct done {
    int n;
};

static void on_done(mcpgw_call *call, const struct mcpgw_call_event *ev, void *ud)
{
    if (ev->kind == MCPGW_CALL_DONE)
        ((struct done *)ud)->n++;
}

static void hub_call(mcpgw_hub *hub, const char *tool, const char *args, bool progress,
                     const char *ccid)
{
    struct mcpgw_call_opts o = { .progress = progress, .caller = "alice", .client_call_id = ccid,
                                 .transport = "websocket" };
    json_object *a = json_tokener_parse(args);
    struct done d = { 0 };
    int64_t end = now_ms() + 15000;

    ck_assert_int_eq(mcpgw_hub_call(hub, "fake", tool, a, &o, on_done, &d, NULL), 0);
    json_object_put(a);
    while (d.n == 0 && now_ms() < end)
        mcpgw_hub_run(hub, 20);
    ck_assert_int_eq(d.n, 1);
}

/* The next event of one of the types (others are skipped), running the
 * hub meanwhile: a server's exit is seen only by a running hub. */
static mcpgw_hub *cur_hub;

static json_object *next_of(mcpgw_events_reader *r, const char *t1, const char *t2)
{
    struct mcpgw_event e;
    int64_t end = now_ms() + 10000;

    for (;;) {
        int rc = mcpgw_events_read(r, &e, 0);

        ck_assert_int_ge(rc, 0);
        if (rc == 0) {
            ck_assert_msg(now_ms() < end, "no '%s' event within 10 s", t1);
            mcpgw_hub_run(cur_hub, 10);
            continue;
        }
        if (strcmp(e.type, t1) == 0 || (t2 && strcmp(e.type, t2) == 0))
            return event_json(&e);
    }
}

START_TEST(hub_calls_become_events_that_can_be_followed)
{
    struct mcpgw_conf *conf = conf_with("");
    mcpgw_events *ev = NULL;
    mcpgw_events_reader *r;
    mcpgw_hub *hub;
    json_object *o;
    char err[256], callid[64];
    int rc;

    ck_assert_int_eq(mcpgw_events_open(conf, &ev, err, sizeof(err)), 0);
    hub = mcpgw_hub_new(conf, &rc);
    ck_assert_ptr_nonnull(hub);
    mcpgw_hub_set_observer(hub, mcpgw_events_hub_observer, ev);
    cur_hub = hub;
    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);

    hub_call(hub, "echo", "{\"message\":\"hi\"}", false, "c-1");
    o = next_of(r, "server_status", NULL);
    ck_assert_str_eq(jstr(o, "data", "serverId"), "fake");
    ck_assert_str_eq(jstr(o, "data", "status"), "starting");
    json_object_put(o);
    o = next_of(r, "tool_call", NULL);
    ck_assert_str_eq(jstr(o, "data", "serverId"), "fake");
    ck_assert_str_eq(jstr(o, "data", "toolName"), "echo");
    ck_assert_str_eq(jstr(o, "data", "clientCallId"), "c-1");
    ck_assert_str_eq(jstr(o, "data", "caller"), "alice");
    ck_assert_str_eq(jstr(o, "data", "transport"), "websocket");
    ck_assert(!jhas(o, "data", "params"));  /* includeParams is off */
    snprintf(callid, sizeof(callid), "%s", jstr(o, "data", "callId"));
    ck_assert(callid[0]);
    json_object_put(o);
    o = next_of(r, "server_status", NULL);
    ck_assert_str_eq(jstr(o, "data", "status"), "ready");
    ck_assert_int_gt(jint(o, "data", "pid"), 0);
    ck_assert_int_gt(jint(o, "data", "tools"), 0);
    json_object_put(o);
    o = next_of(r, "tool_result", NULL);
    ck_assert_str_eq(jstr(o, "data", "callId"), callid);
    ck_assert_str_eq(jstr(o, "data", "clientCallId"), "c-1");
    ck_assert_str_eq(jstr(o, "data", "toolName"), "echo");
    ck_assert(json_object_get_boolean(json_object_object_get(json_object_object_get(o, "data"),
                                                             "success")));
    ck_assert_int_ge(jint(o, "data", "durationMs"), 0);
    ck_assert(!jhas(o, "data", "errorCode"));
    json_object_put(o);

    /* Progress: every event of the call carries its ids. */
    hub_call(hub, "progress", "{\"steps\":2,\"intervalMs\":20}", true, "c-2");
    o = next_of(r, "tool_call", NULL);
    snprintf(callid, sizeof(callid), "%s", jstr(o, "data", "callId"));
    json_object_put(o);
    for (int i = 1; i <= 2; i++) {
        o = next_of(r, "tool_progress", NULL);
        ck_assert_str_eq(jstr(o, "data", "callId"), callid);
        ck_assert_str_eq(jstr(o, "data", "clientCallId"), "c-2");
        ck_assert_str_eq(jstr(o, "data", "serverId"), "fake");
        ck_assert_str_eq(jstr(o, "data", "toolName"), "progress");
        ck_assert_int_eq(jint(o, "data", "progress"), i);
        ck_assert_int_eq(jint(o, "data", "total"), 2);
        ck_assert(jstr(o, "data", "message") != NULL);
        json_object_put(o);
    }
    o = next_of(r, "tool_result", NULL);
    ck_assert_str_eq(jstr(o, "data", "callId"), callid);
    json_object_put(o);

    /* A tool that reports failure, and a JSON-RPC error. */
    hub_call(hub, "iserror", "{}", false, "c-3");
    o = next_of(r, "tool_result", NULL);
    ck_assert(!json_object_get_boolean(json_object_object_get(json_object_object_get(o, "data"),
                                                              "success")));
    ck_assert_str_eq(jstr(o, "data", "errorCode"), "tool_error");
    json_object_put(o);
    hub_call(hub, "error", "{\"code\":-32000}", false, "c-4");
    o = next_of(r, "tool_result", NULL);
    ck_assert_int_eq(jint(o, "data", "rpcCode"), -32000);
    ck_assert(jstr(o, "data", "errorCode") != NULL);
    json_object_put(o);

    /* A crash: the call fails, and the server's exit is told. */
    hub_call(hub, "crash", "{}", false, "c-5");
    o = next_of(r, "tool_result", "server_status");
    while (strcmp(jstr(o, "type", NULL), "server_status") == 0 &&
           !jhas(o, "data", "exitStatus")) {
        json_object_put(o);
        o = next_of(r, "tool_result", "server_status");
    }
    if (strcmp(jstr(o, "type", NULL), "tool_result") == 0) {
        ck_assert_str_eq(jstr(o, "data", "errorCode"), "server_unavailable");
        ck_assert(jstr(o, "data", "error") != NULL);
        json_object_put(o);
        o = next_of(r, "server_status", NULL);
        while (!jhas(o, "data", "exitStatus")) {
            json_object_put(o);
            o = next_of(r, "server_status", NULL);
        }
    }
    ck_assert_str_eq(jstr(o, "data", "exitStatus"), "exited with status 3");
    ck_assert_int_eq(jint(o, "data", "exitCode"), 3);
    ck_assert_str_eq(jstr(o, "data", "status"), "backing-off");
    ck_assert_int_gt(jint(o, "data", "nextRetry"), 1700000000000);
    ck_assert(!jhas(o, "data", "pid"));
    json_object_put(o);

    mcpgw_events_reader_close(r);
    mcpgw_hub_free(hub);
    mcpgw_events_close(ev);
}
END_TEST

START_TEST(params_are_published_only_when_configured)
{
    struct mcpgw_conf *conf = conf_with("\"includeParams\":true");
    mcpgw_events *ev = NULL;
    mcpgw_events_reader *r;
    mcpgw_hub *hub;
    json_object *o;
    char err[256], *big, *args;
    int rc;
    size_t n = 40 * 1024;

    ck_assert_int_eq(mcpgw_events_open(conf, &ev, err, sizeof(err)), 0);
    hub = mcpgw_hub_new(conf, &rc);
    ck_assert_ptr_nonnull(hub);
    mcpgw_hub_set_observer(hub, mcpgw_events_hub_observer, ev);
    cur_hub = hub;
    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    hub_call(hub, "echo", "{\"message\":\"secret-ish\"}", false, "p-1");
    o = next_of(r, "tool_call", NULL);
    {
        json_object *params = json_object_object_get(json_object_object_get(o, "data"),
                                                     "params");

        ck_assert(json_object_is_type(params, json_type_object));
        ck_assert_str_eq(jstr(params, "message", NULL), "secret-ish");
    }
    json_object_put(o);
    /* Params too large for an event: the call is still published. */
    big = malloc(n + 1);
    args = malloc(n + 32);
    memset(big, 'b', n);
    big[n] = 0;
    snprintf(args, n + 32, "{\"message\":\"%s\"}", big);
    hub_call(hub, "echo", args, false, "p-2");
    o = next_of(r, "tool_call", NULL);
    ck_assert_str_eq(jstr(o, "data", "clientCallId"), "p-2");
    ck_assert(!jhas(o, "data", "params"));
    ck_assert(json_object_get_boolean(json_object_object_get(json_object_object_get(o, "data"),
                                                             "paramsTruncated")));
    json_object_put(o);
    free(big);
    free(args);
    mcpgw_events_reader_close(r);
    mcpgw_hub_free(hub);
    mcpgw_events_close(ev);
}
END_TEST

/* What a publisher thread hands over at once: 300 hub events (over four
 * batches of the observer, across seven segment rotations in the file
 * store).
 * Each is stored, in order, with dense ids where the backend numbers them
 * densely; text from clients is cut at a character boundary and escaped. */
START_TEST(hub_events_handed_over_together_are_all_stored_in_order)
{
    enum { N = 300 };
    mcpgw_events *ev = ev_open("\"maxEvents\":640");
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    struct mcpgw_hub_event *h = calloc(N, sizeof(*h));
    struct mcpgw_call_event *c = calloc(N, sizeof(*c));
    const struct mcpgw_hub_event **hp = calloc(N, sizeof(*hp));
    char caller[400], ccid[N][16], prev[MCPGW_EVENT_ID_MAX + 1] = "";
    struct mcpgw_events_stats st;

    /* 255 bytes then a 3-byte character across the 256-byte cut; a quote
     * and a control character to escape. */
    memset(caller, 'a', sizeof(caller));
    memcpy(caller, "q\"\x01", 3);
    memcpy(caller + 255, "\xe2\x82\xac", 3);
    caller[sizeof(caller) - 1] = 0;
    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    for (int i = 0; i < N; i++) {
        snprintf(ccid[i], sizeof(ccid[i]), "b-%d", i);
        h[i].kind = i % 2 ? MCPGW_HUB_CALL_DONE : MCPGW_HUB_CALL_START;
        h[i].call_id = (uint64_t)(i / 2);
        h[i].server = "fake";
        h[i].tool = "echo";
        h[i].caller = caller;
        h[i].client_call_id = ccid[i];
        h[i].transport = "websocket";
        h[i].exit_status = -1;
        c[i].kind = MCPGW_CALL_DONE;
        c[i].status = i % 4 == 3 ? MCPGW_ETIMEDOUT : 0;
        c[i].error = "server 'fake' took too long";
        c[i].duration_ms = i;
        h[i].call = i % 2 ? &c[i] : NULL;
        hp[i] = &h[i];
    }
    mcpgw_events_hub_observe_many(ev, hp, N);
    for (int i = 0; i < N; i++) {
        json_object *o;
        const char *cut;

        must_read(r, &e, 5000);
        o = event_json(&e);
        ck_assert_str_eq(jstr(o, "type", NULL), i % 2 ? "tool_result" : "tool_call");
        ck_assert_str_eq(jstr(o, "data", "clientCallId"), ccid[i]);
        ck_assert_str_eq(jstr(o, "data", "serverId"), "fake");
        if (i % 2 == 0) {
            cut = jstr(o, "data", "caller");
            ck_assert_uint_eq(strlen(cut), 255);
            ck_assert(memcmp(cut, "q\"\x01", 3) == 0);
        } else {
            ck_assert_int_eq(jint(o, "data", "durationMs"), i);
            if (i % 4 == 3)
                ck_assert_str_eq(jstr(o, "data", "errorCode"), "timeout");
        }
        if (prev[0])
            ck_assert_int_lt(mcpgw_events_id_cmp(ev, prev, e.id), 0);
        if (prev[0] && strcmp(backend_name, "file") == 0)
            ck_assert_uint_eq(strtoull(e.id, NULL, 10), strtoull(prev, NULL, 10) + 1);
        snprintf(prev, sizeof(prev), "%s", e.id);
        json_object_put(o);
    }
    ck_assert_int_eq(mcpgw_events_read(r, &e, 100), 0);
    mcpgw_events_stats(ev, &st);
    ck_assert_uint_eq(st.published, N);
    ck_assert_uint_eq(st.dropped, 0);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
    free(h);
    free(c);
    free(hp);
}
END_TEST

/* A batch filled on one thread and stored on another, twice (the second
 * round reuses the first's memory): hub and plain events in the order
 * added, with their serverIds indexed; one that cannot be made is counted
 * as dropped and takes nothing else with it. */
struct batch_arg {
    mcpgw_events *ev;
    mcpgw_events_batch *b;
};

static void *thr_store(void *p)
{
    struct batch_arg *a = p;

    mcpgw_events_batch_store(a->ev, a->b);
    return NULL;
}

START_TEST(batch_made_on_one_thread_is_stored_on_another_in_order)
{
    mcpgw_events *ev = ev_open("");
    mcpgw_events_batch *b = mcpgw_events_batch_new();
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    struct mcpgw_events_stats st;
    struct mcpgw_call_event c = { .kind = MCPGW_CALL_DONE, .duration_ms = 7 };
    struct mcpgw_hub_event h = { .kind = MCPGW_HUB_CALL_DONE, .server = "fake", .tool = "echo",
                                 .caller = "t", .transport = "websocket", .exit_status = -1,
                                 .call = &c };
    struct mcpgw_hub_event none = { .kind = MCPGW_HUB_CALL_PROGRESS };   /* no call: no event */
    char *big = malloc(MCPGW_EVENT_BYTES_MAX + 10);
    json_object *d = json_object_new_object(), *huge = json_object_new_object();
    pthread_t t;
    struct batch_arg a = { ev, b };

    ck_assert_ptr_nonnull(b);
    memset(big, 'x', MCPGW_EVENT_BYTES_MAX + 9);
    big[MCPGW_EVENT_BYTES_MAX + 9] = 0;
    json_object_object_add(huge, "blob", json_object_new_string(big));
    json_object_object_add(d, "serverId", json_object_new_string("s2"));
    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    for (int round = 0; round < 2; round++) {
        char ccid[16];

        for (int i = 0; i < 50; i++) {
            json_object_object_add(d, "n", json_object_new_int(i));
            snprintf(ccid, sizeof(ccid), "c-%d", i);
            h.client_call_id = ccid;
            ck_assert_int_eq(mcpgw_events_batch_add_hub(ev, b, &h), 1);
            ck_assert_int_eq(mcpgw_events_batch_add_hub(ev, b, &none), 0);
            ck_assert_int_eq(mcpgw_events_batch_add(ev, b, "client", d), 1);
        }
        ck_assert_int_lt(mcpgw_events_batch_add(ev, b, "client", huge), 0);
        ck_assert_int_lt(mcpgw_events_batch_add(ev, b, "Bad-Type", d), 0);
        ck_assert_uint_eq(mcpgw_events_batch_count(b), 100);
        ck_assert_int_eq(pthread_create(&t, NULL, thr_store, &a), 0);
        pthread_join(t, NULL);
        ck_assert_uint_eq(mcpgw_events_batch_count(b), 0);
        ck_assert_uint_eq(mcpgw_events_batch_bytes(b), 0);
        for (int i = 0; i < 100; i++) {
            json_object *o;

            must_read(r, &e, 5000);
            o = event_json(&e);
            if (i % 2 == 0) {
                snprintf(ccid, sizeof(ccid), "c-%d", i / 2);
                ck_assert_str_eq(e.type, "tool_result");
                ck_assert_str_eq(e.server_id, "fake");
                ck_assert_str_eq(jstr(o, "data", "clientCallId"), ccid);
            } else {
                ck_assert_str_eq(e.type, "client");
                ck_assert_str_eq(e.server_id, "s2");
                ck_assert_int_eq(jint(o, "data", "n"), i / 2);
                ck_assert(jint(o, "timestamp", NULL) > 0);
            }
            json_object_put(o);
        }
    }
    ck_assert_int_eq(mcpgw_events_read(r, &e, 100), 0);
    mcpgw_events_stats(ev, &st);
    ck_assert_uint_eq(st.published, 200);
    ck_assert_uint_eq(st.dropped, 4);
    mcpgw_events_batch_store(ev, b);      /* empty: nothing happens */
    mcpgw_events_batch_free(b);
    mcpgw_events_batch_free(NULL);
    json_object_put(d);
    json_object_put(huge);
    free(big);
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
}
END_TEST

static void add_common_tests(TCase *tc)
{
    tcase_add_test(tc, events_arrive_in_order_with_their_fields);
    tcase_add_test(tc, ids_validate_and_compare);
    tcase_add_test(tc, bad_events_are_dropped_and_counted_never_failing);
    tcase_add_test(tc, reader_resumes_after_1000_missed_events);
    tcase_add_test(tc, resuming_past_retention_gets_a_gap_first);
    tcase_add_test(tc, slow_reader_gets_a_gap_mid_stream);
    tcase_add_test(tc, unknown_id_gets_a_gap_then_everything);
    tcase_add_test(tc, threads_publish_through_one_handle);
    tcase_add_test(tc, processes_publish_one_reader_sees_all_once_in_order);
    tcase_add_test(tc, kill9_of_a_publisher_leaves_a_readable_stream);
    tcase_add_test(tc, reader_fd_wakes_for_another_process);
    tcase_add_test(tc, hub_calls_become_events_that_can_be_followed);
    tcase_add_test(tc, params_are_published_only_when_configured);
    tcase_add_test(tc, hub_events_handed_over_together_are_all_stored_in_order);
    tcase_add_test(tc, batch_made_on_one_thread_is_stored_on_another_in_order);
}

#endif
