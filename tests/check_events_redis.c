/* check_events_redis.c - the event stream on Redis Streams.
 *
 * The common suite (events_suite.h) against a real redis-server that this
 * program starts on a free loopback port, in a temporary directory, with
 * no persistence (--save "" --appendonly no), and stops by its PID at the
 * end; each test uses a stream key of its own.  Then what only Redis has:
 * Redis down when the gateway starts (publishing drops at once and counts,
 * readers wait, both recover when it comes up), and Redis stopped and
 * started again (empty) in the middle of real tool calls through a hub:
 * the calls keep working while it is down, and events resume after it,
 * behind a gap event that says the stream was lost.
 */
#include "config.h"

static const char *backend_name = "redis";

#include "events_suite.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <hiredis/hiredis.h>

static int redis_port;                      /* the shared server */
static char stream_key[64];
static int key_seq;

static void backend_keys(char *out, size_t n)
{
    snprintf(out, n, "\"backend\":\"redis\",\"redis\":{\"host\":\"127.0.0.1\",\"port\":%d,"
             "\"key\":\"%s\"}", redis_port, stream_key);
}

static void setup(void)
{
    snprintf(stream_key, sizeof(stream_key), "mcpgw:test:%ld:%d", (long)getpid(), ++key_seq);
}

/* ---- a redis-server of our own --------------------------------------------------- */

struct redis {
    pid_t pid;
    int port;
    char dir[128];
};

static int free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        perror("free port");
        exit(1);
    }
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static bool redis_pings(int port)
{
    struct timeval tv = { 0, 200000 };
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    redisReply *rep;
    bool ok = false;

    if (c && !c->err && (rep = redisCommand(c, "PING"))) {
        ok = rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
        freeReplyObject(rep);
    }
    if (c)
        redisFree(c);
    return ok;
}

/* Start redis-server on port (0: a free one) in its own temp dir. */
static void redis_start(struct redis *r, int port)
{
    char portstr[16], log[200];
    int64_t end;

    if (!r->dir[0]) {
        snprintf(r->dir, sizeof(r->dir), "/tmp/mcpgw-redis-XXXXXX");
        if (!mkdtemp(r->dir)) {
            perror("mkdtemp");
            exit(1);
        }
    }
    r->port = port ? port : free_port();
    snprintf(portstr, sizeof(portstr), "%d", r->port);
    snprintf(log, sizeof(log), "%s/redis.log", r->dir);
    r->pid = fork();
    if (r->pid < 0) {
        perror("fork");
        exit(1);
    }
    if (r->pid == 0) {
        /* Never outlive the test process, even one that failed an assert. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        execlp("redis-server", "redis-server", "--port", portstr, "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", r->dir, "--daemonize", "no",
               "--logfile", log, (char *)NULL);
        fprintf(stderr, "cannot run redis-server (%s): apt-get install redis-server\n",
                strerror(errno));
        _exit(127);
    }
    end = now_ms() + 10000;
    while (!redis_pings(r->port)) {
        int status;

        if (waitpid(r->pid, &status, WNOHANG) == r->pid) {
            fprintf(stderr, "redis-server exited at start (status %d); see %s\n", status, log);
            exit(1);
        }
        if (now_ms() > end) {
            fprintf(stderr, "redis-server did not answer within 10 s; see %s\n", log);
            kill(r->pid, SIGKILL);
            exit(1);
        }
        usleep(10000);
    }
}

static void redis_stop(struct redis *r)
{
    int status;

    if (r->pid <= 0)
        return;
    kill(r->pid, SIGTERM);
    waitpid(r->pid, &status, 0);
    r->pid = 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void redis_cleanup(struct redis *r)
{
    redis_stop(r);
    if (r->dir[0])
        nftw(r->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- Redis-only behaviour ------------------------------------------------------ */

START_TEST(redis_down_at_start_drops_at_once_then_recovers)
{
    struct redis own = { 0 };
    mcpgw_events *ev;
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    struct mcpgw_events_stats st;
    char id[MCPGW_EVENT_ID_MAX + 1] = "";
    int saved = redis_port;
    int64_t t0, end;

    redis_port = free_port();               /* nobody listens there yet */
    ev = ev_open("");
    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);
    t0 = now_ms();
    for (int i = 0; i < 50; i++)
        pub(ev, "tool_call", "down", i, id);
    ck_assert_str_eq(id, "");
    ck_assert_int_lt(now_ms() - t0, 1000);  /* no call waits on a dead Redis */
    mcpgw_events_stats(ev, &st);
    ck_assert_uint_eq(st.dropped, 50);
    ck_assert_int_eq(mcpgw_events_read(r, &e, 100), 0);

    redis_start(&own, redis_port);
    end = now_ms() + 15000;
    while (!id[0]) {
        ck_assert_msg(now_ms() < end, "events did not resume within 15 s of Redis starting");
        pub(ev, "tool_call", "up", 0, id);
        if (!id[0])
            usleep(50000);
    }
    for (;;) {
        int rc = mcpgw_events_read(r, &e, (int)(end - now_ms()));

        ck_assert_int_eq(rc, 1);
        if (strcmp(e.id, id) == 0)
            break;
    }
    mcpgw_events_reader_close(r);
    mcpgw_events_close(ev);
    redis_cleanup(&own);
    redis_port = saved;
}
END_TEST

struct done2 {
    int n, status;
};

static void on_done2(mcpgw_call *call, const struct mcpgw_call_event *ev, void *ud)
{
    struct done2 *d = ud;

    if (ev->kind == MCPGW_CALL_DONE) {
        d->n++;
        d->status = ev->status;
    }
}

/* One echo call through the hub; it must succeed within 5 s. */
static void echo_call(mcpgw_hub *hub, int i)
{
    char args[64];
    struct done2 d = { 0, -1 };
    json_object *a;
    int64_t end = now_ms() + 5000;

    snprintf(args, sizeof(args), "{\"message\":\"m%d\"}", i);
    a = json_tokener_parse(args);
    ck_assert_int_eq(mcpgw_hub_call(hub, "fake", "echo", a, NULL, on_done2, &d, NULL), 0);
    json_object_put(a);
    while (d.n == 0 && now_ms() < end)
        mcpgw_hub_run(hub, 10);
    ck_assert_msg(d.n == 1 && d.status == 0, "call %d: done %d status %d", i, d.n, d.status);
}

START_TEST(redis_restart_mid_run_calls_go_on_events_resume)
{
    struct redis own = { 0 };
    struct mcpgw_conf *conf;
    mcpgw_events *ev = NULL;
    mcpgw_events_reader *r;
    struct mcpgw_event e;
    struct mcpgw_events_stats st;
    mcpgw_hub *hub;
    char err[256];
    int saved = redis_port, rc, gaps = 0, results = 0;
    int64_t t0, end;

    redis_start(&own, 0);
    redis_port = own.port;
    conf = conf_with("");
    ck_assert_int_eq(mcpgw_events_open(conf, &ev, err, sizeof(err)), 0);
    hub = mcpgw_hub_new(conf, &rc);
    ck_assert_ptr_nonnull(hub);
    mcpgw_hub_set_observer(hub, mcpgw_events_hub_observer, ev);
    ck_assert_int_eq(mcpgw_events_reader_open(ev, NULL, &r), 0);

    echo_call(hub, 0);
    while (results < 1) {
        must_read(r, &e, 5000);
        results += strcmp(e.type, "tool_result") == 0;
    }

    redis_stop(&own);
    t0 = now_ms();
    for (int i = 1; i <= 20; i++)
        echo_call(hub, i);                  /* tool calls keep working */
    ck_assert_int_lt(now_ms() - t0, 5000);
    mcpgw_events_stats(ev, &st);
    ck_assert_uint_ge(st.dropped, 40);      /* tool_call + tool_result each */
    ck_assert_int_eq(mcpgw_events_read(r, &e, 0), 0);

    redis_start(&own, own.port);            /* back, and empty */
    end = now_ms() + 20000;
    results = 0;
    for (int i = 100; results == 0; i++) {
        ck_assert_msg(now_ms() < end, "events did not resume within 20 s of the restart");
        echo_call(hub, i);
        while ((rc = mcpgw_events_read(r, &e, 100)) == 1) {
            if (strcmp(e.type, "gap") == 0) {
                ck_assert_int_eq(results, 0);
                gaps++;
            }
            results += strcmp(e.type, "tool_result") == 0;
        }
        ck_assert_int_eq(rc, 0);
    }
    ck_assert_int_eq(gaps, 1);              /* the lost stream is reported */
    mcpgw_events_reader_close(r);
    mcpgw_hub_free(hub);
    mcpgw_events_close(ev);
    redis_cleanup(&own);
    redis_port = saved;
}
END_TEST

int main(int argc, char **argv)
{
    Suite *s;
    TCase *tc;
    const char *b = getenv("top_builddir");
    struct redis shared = { 0 };
    SRunner *sr;
    int failed;

    if (argc > 1 && strcmp(argv[1], "--publisher") == 0)
        return publisher_main(argc, argv);
    s = suite_create("events_redis");
    tc = tcase_create("redis");
    snprintf(fake_mcp, sizeof(fake_mcp), "%s/tests/fake_mcp", b ? b : ".");
    signal(SIGPIPE, SIG_IGN);
    redis_start(&shared, 0);
    redis_port = shared.port;
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, NULL);
    add_common_tests(tc);
    tcase_add_test(tc, redis_down_at_start_drops_at_once_then_recovers);
    tcase_add_test(tc, redis_restart_mid_run_calls_go_on_events_resume);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    redis_cleanup(&shared);
    return failed ? 1 : 0;
}
