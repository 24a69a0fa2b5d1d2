/* check_routes.c - every /api/v1 route and the event stream, through an
 * in-memory front end over a real hub (running in its own thread, as in
 * mcpgw-fcgi), the real event store, tests/fake_mcp and the npm
 * server-everything.
 *
 * Proves, route by route: statuses, the closed error-code list, JSON
 * shapes (tool_response data for REST, tool_progress/tool_response frames
 * with Accept: text/event-stream), auth (one 401 - status, headers and body
 * byte for byte - for missing, malformed, unknown, expired and revoked
 * tokens, used tickets and tokens in URLs, on every route), per-token
 * limits (429 rate_limited with Retry-After over maxConcurrentCalls or
 * callsPerSecond, the hold given back on every way a call ends),
 * scopes (servers, tools and events), CORS (preflight, 403 for a foreign
 * Origin), 405 with Allow, 413/415/400 on bodies, 404 unknown server/tool,
 * 429 when a server is full, 502 server down, 504 timeout, tickets (once
 * only), and the event stream: connected/retry/heartbeat, live tool events
 * only for tokens, ?types/?serverId filters, Last-Event-ID resume with
 * nothing lost, end at max duration and at shutdown with a final event,
 * the stream cap, and a client that goes away (failed write or hang-up)
 * freeing the thread.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "events.h"
#include "http.h"
#include "hub.h"
#include "limits.h"
#include "quota.h"
#include "routes.h"
#include "token.h"

static char fake[512], modules[512];
static char dir[64];
static char tok_full[80], tok_echo[80], tok_gone[80];
static mcpgw_hub *hub;
static mcpgw_events *events;
static mcpgw_routes *rt;

/* ---- the in-memory front end ------------------------------------------------ */

struct fake_req {
    const char *hdr[16][2];
    size_t nhdr;
    const char *body;
    size_t body_len, off;
};

static const char *fake_header(void *ud, const char *lname)
{
    struct fake_req *f = ud;

    for (size_t i = 0; i < f->nhdr; i++)
        if (strcmp(f->hdr[i][0], lname) == 0)
            return f->hdr[i][1];
    return NULL;
}

static ssize_t fake_read(void *ud, char *buf, size_t len)
{
    struct fake_req *f = ud;
    size_t n = f->body_len - f->off;

    if (n > len)
        n = len;
    memcpy(buf, f->body + f->off, n);
    f->off += n;
    return (ssize_t)n;
}

struct cap {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int status;
    char head[4096];
    struct mcpgw_buf body;
    size_t fail_after;          /* writes fail once the body would pass this (0: never) */
    int flushes;
    bool done;
    int rc;
    /* for streams run on a thread */
    struct fake_req fr;
    struct mcpgw_http_request req;
    struct mcpgw_http_writer w;
    pthread_t thread;
    int hang[2];                /* pipe: closing [0] is the client hanging up */
    char path[512];
};

static int cap_begin(void *ud, int status, const struct mcpgw_http_header *h, size_t n)
{
    struct cap *c = ud;
    size_t o = 0;

    pthread_mutex_lock(&c->lock);
    c->status = status;
    for (size_t i = 0; i < n; i++) {
        ck_assert(mcpgw_http_header_value_ok(h[i].value));
        o += (size_t)snprintf(c->head + o, sizeof(c->head) - o, "%s: %s\n", h[i].name, h[i].value);
    }
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static int cap_write(void *ud, const char *p, size_t n)
{
    struct cap *c = ud;
    int rc = 0;

    pthread_mutex_lock(&c->lock);
    if (c->fail_after && c->body.len + n > c->fail_after)
        rc = -EPIPE;
    else
        ck_assert_int_eq(mcpgw_buf_add(&c->body, p, n), 0);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static int cap_flush(void *ud)
{
    struct cap *c = ud;

    pthread_mutex_lock(&c->lock);
    c->flushes++;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static void cap_init(struct cap *c)
{
    memset(c, 0, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    mcpgw_buf_init(&c->body, 64u * 1024 * 1024);
    c->hang[0] = c->hang[1] = -1;
}

static void cap_release(struct cap *c)
{
    mcpgw_buf_release(&c->body);
    if (c->hang[0] >= 0)
        close(c->hang[0]);
    if (c->hang[1] >= 0)
        close(c->hang[1]);
}

/* "Name: value" pairs, NULL-terminated, become the request's headers. */
static void prepare(struct cap *c, const char *method, const char *target, const char *const *hdrs,
                    const char *body)
{
    const char *q = strchr(target, '?');
    char *path = c->path;

    snprintf(path, sizeof(c->path), "%.*s", q ? (int)(q - target) : (int)strlen(target), target);
    c->fr.nhdr = 0;
    for (size_t i = 0; hdrs && hdrs[i]; i += 2) {
        c->fr.hdr[c->fr.nhdr][0] = hdrs[i];
        c->fr.hdr[c->fr.nhdr][1] = hdrs[i + 1];
        c->fr.nhdr++;
    }
    c->fr.body = body;
    c->fr.body_len = body ? strlen(body) : 0;
    c->req = (struct mcpgw_http_request){
        .method = method, .path = path, .query = q ? q + 1 : "",
        .header = fake_header, .header_ud = &c->fr,
        .content_length = body ? (long long)strlen(body) : -1,
        .read_body = body ? fake_read : NULL, .body_ud = &c->fr, .remote_addr = "127.0.0.1" };
    c->w = (struct mcpgw_http_writer){ cap_begin, cap_write, cap_flush, c, c->hang[0], POLLRDHUP };
}

static int request(struct cap *c, const char *method, const char *target, const char *const *hdrs,
                   const char *body)
{
    cap_init(c);
    prepare(c, method, target, hdrs, body);
    c->rc = mcpgw_routes_handle(rt, &c->req, &c->w);
    return c->status;
}

static void *stream_thread(void *arg)
{
    struct cap *c = arg;
    int rc = mcpgw_routes_handle(rt, &c->req, &c->w);

    pthread_mutex_lock(&c->lock);
    c->rc = rc;
    c->done = true;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void stream_start(struct cap *c, const char *target, const char *const *hdrs)
{
    cap_init(c);
    ck_assert_int_eq(pipe(c->hang), 0);
    /* The route polls hang[0] for a hang-up: the write end going away
     * stands for the client's connection closing. */
    prepare(c, "GET", target, hdrs, NULL);
    ck_assert_int_eq(pthread_create(&c->thread, NULL, stream_thread, c), 0);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait until the body holds needle (count times), or the stream ends. */
/* Time bounds stretched for slow runs (MCPGW_TEST_SLOW, set by make
 * check-valgrind): what they prove is an order, not a speed. */
static int64_t slowed(int64_t ms)
{
    const char *f = getenv("MCPGW_TEST_SLOW");
    long k = f ? strtol(f, NULL, 10) : 1;

    return k > 1 ? ms * k : ms;
}

static bool wait_body(struct cap *c, const char *needle, int count, int ms)
{
    int64_t end = now_ms() + slowed(ms);
    bool ok = false;

    pthread_mutex_lock(&c->lock);
    for (;;) {
        int seen = 0;
        const char *p = c->body.ptr;

        while (p && (p = strstr(p, needle))) {
            seen++;
            p++;
        }
        if (seen >= count) {
            ok = true;
            break;
        }
        if (c->done || now_ms() >= end)
            break;
        {
            struct timespec ts;

            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20 * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&c->cond, &c->lock, &ts);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return ok;
}

static bool wait_done(struct cap *c, int ms)
{
    int64_t end = now_ms() + slowed(ms);
    bool done;

    for (;;) {
        pthread_mutex_lock(&c->lock);
        done = c->done;
        pthread_mutex_unlock(&c->lock);
        if (done || now_ms() >= end)
            break;
        usleep(10000);
    }
    if (done)
        pthread_join(c->thread, NULL);
    return done;
}

static char *body_copy(struct cap *c)
{
    char *s;

    pthread_mutex_lock(&c->lock);
    s = strdup(c->body.ptr ? c->body.ptr : "");
    pthread_mutex_unlock(&c->lock);
    return s;
}

static json_object *body_json(struct cap *c)
{
    json_object *o = json_tokener_parse(c->body.ptr ? c->body.ptr : "");

    ck_assert_msg(o != NULL, "not JSON: %s", c->body.ptr ? c->body.ptr : "(empty)");
    return o;
}

static const char *jstr(json_object *o, const char *key)
{
    json_object *v;

    if (!json_object_object_get_ex(o, key, &v))
        return NULL;
    return json_object_get_string(v);
}

static void assert_error(struct cap *c, int status, const char *code)
{
    json_object *o;

    ck_assert_msg(c->status == status, "status %d, wanted %d: %s", c->status, status,
                  c->body.ptr ? c->body.ptr : "");
    o = body_json(c);
    ck_assert_str_eq(jstr(o, "code"), code);
    ck_assert_ptr_nonnull(jstr(o, "error"));
    json_object_put(o);
    ck_assert_ptr_nonnull(strstr(c->head, "Content-Type: application/json"));
}

/* ---- fixture -------------------------------------------------------------------- */

#define SSE_CONF "\"maxStreamMs\":8000,\"retryMs\":1500,\"maxStreams\":4"
static const char *sse_conf = SSE_CONF;

static void make_routes(const char *gw_extra, const char *fake_extra)
{
    char json[4096], err[512], path[128];
    struct mcpgw_conf *conf;
    struct mcpgw_routes_opts ro;
    int rc;

    snprintf(path, sizeof(path), "%s/tokens.json", dir);
    snprintf(json, sizeof(json),
             "{\"gateway\":{\"stateDir\":\"%s/state\",\"tokenFile\":\"%s\","
             "\"limits\":{\"heartbeatIntervalMs\":1000,\"maxMessageBytes\":65536},"
             "\"sse\":{%s}%s},"
             "\"mcpServers\":{"
             "\"fake\":{\"command\":\"%s\",\"callTimeoutMs\":1500,\"maxInFlight\":3,"
             "\"restart\":{\"initialDelayMs\":60000,\"maxDelayMs\":60000}%s},"
             "\"everything\":{\"command\":\"node\",\"args\":[\"%s/@modelcontextprotocol/"
             "server-everything/dist/index.js\",\"stdio\"]},"
             "\"off\":{\"command\":\"/bin/false\",\"enabled\":false}}}",
             dir, path, sse_conf, gw_extra, fake, fake_extra, modules);
    rc = mcpgw_conf_parse(json, strlen(json), "routes.json", dir, &conf, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_int_eq(mcpgw_events_open(conf, &events, err, sizeof(err)), 0);
    hub = mcpgw_hub_new(conf, &rc);
    ck_assert_ptr_nonnull(hub);
    mcpgw_hub_set_observer(hub, mcpgw_events_hub_observer, events);
    ck_assert_int_eq(mcpgw_hub_thread_start(hub), 0);
    ro = (struct mcpgw_routes_opts){ .conf = mcpgw_hub_conf(hub), .hub = hub, .events = events,
                                     .component = "test" };
    ck_assert_msg(mcpgw_routes_new(&ro, &rt, err, sizeof(err)) == 0, "%s", err);
}

static void setup(void)
{
    char path[128], err[512];
    const char *const all[] = { "*" };
    const char *const echo[] = { "fake:echo" };

    /* A test may change it; with CK_FORK=no (valgrind) the next one must
     * not inherit that. */
    sse_conf = SSE_CONF;
    snprintf(dir, sizeof(dir), "/tmp/check_routes.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/tokens.json", dir);
    ck_assert_msg(mcpgw_tokens_add(path, "full", all, 1, 0, tok_full, sizeof(tok_full), err,
                                   sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(mcpgw_tokens_add(path, "echo-only", echo, 1, 0, tok_echo, sizeof(tok_echo),
                                      err, sizeof(err)), 0);
    ck_assert_int_eq(mcpgw_tokens_add(path, "gone", all, 1, 0, tok_gone, sizeof(tok_gone), err,
                                      sizeof(err)), 0);
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "gone", err, sizeof(err)), 0);
    make_routes("", "");
}

static void teardown(void)
{
    char cmd[128];

    mcpgw_routes_free(rt);
    mcpgw_hub_free(hub);
    mcpgw_events_close(events);
    rt = NULL;
    hub = NULL;
    events = NULL;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static char bearer_full[100], bearer_echo[100], bearer_gone[100];

static void bearers(void)
{
    snprintf(bearer_full, sizeof(bearer_full), "Bearer %s", tok_full);
    snprintf(bearer_echo, sizeof(bearer_echo), "Bearer %s", tok_echo);
    snprintf(bearer_gone, sizeof(bearer_gone), "Bearer %s", tok_gone);
}

#define JSON_POST(auth) (const char *const[]){ "authorization", auth, \
                                               "content-type", "application/json", NULL }

/* ---- health, routing, CORS --------------------------------------------------------- */

START_TEST(health_needs_no_auth_and_reports_states)
{
    struct cap c;
    json_object *o, *servers;

    ck_assert_int_eq(request(&c, "GET", "/api/v1/health", NULL, NULL), 200);
    o = body_json(&c);
    ck_assert_str_eq(jstr(o, "status"), "ok");
    ck_assert_str_eq(jstr(o, "version"), PACKAGE_VERSION);
    ck_assert(json_object_object_get_ex(o, "servers", &servers));
    ck_assert_uint_eq(json_object_array_length(servers), 3);
    ck_assert_str_eq(jstr(json_object_array_get_idx(servers, 0), "state"), "idle");
    ck_assert_str_eq(jstr(json_object_array_get_idx(servers, 2), "state"), "disabled");
    json_object_put(o);
    cap_release(&c);
    /* the same route mounted under a prefix */
    ck_assert_int_eq(request(&c, "GET", "/mcpgw/api/v1/health", NULL, NULL), 200);
    cap_release(&c);
}
END_TEST

START_TEST(health_is_503_when_nothing_is_usable)
{
    char json[512], err[256];
    struct mcpgw_conf *conf;
    mcpgw_hub *h2;
    mcpgw_routes *r2, *saved = rt;
    struct mcpgw_routes_opts ro;
    struct cap c;
    int rc;

    snprintf(json, sizeof(json), "{\"gateway\":{\"stateDir\":\"%s/s2\"},\"mcpServers\":"
             "{\"off\":{\"command\":\"/bin/false\",\"enabled\":false}}}", dir);
    ck_assert_int_eq(mcpgw_conf_parse(json, strlen(json), "x.json", dir, &conf, err, sizeof(err)), 0);
    h2 = mcpgw_hub_new(conf, &rc);
    ck_assert_int_eq(mcpgw_hub_thread_start(h2), 0);
    ro = (struct mcpgw_routes_opts){ .conf = mcpgw_hub_conf(h2), .hub = h2, .component = "t" };
    ck_assert_int_eq(mcpgw_routes_new(&ro, &r2, err, sizeof(err)), 0);
    rt = r2;
    ck_assert_int_eq(request(&c, "GET", "/api/v1/health", NULL, NULL), 503);
    ck_assert_ptr_nonnull(strstr(c.body.ptr, "\"status\":\"unavailable\""));
    cap_release(&c);
    rt = saved;
    mcpgw_routes_free(r2);
    mcpgw_hub_free(h2);
}
END_TEST

START_TEST(routing_errors_have_their_statuses)
{
    struct cap c;

    request(&c, "GET", "/api/v1/nope", NULL, NULL);
    assert_error(&c, 404, "bad_request");
    cap_release(&c);
    request(&c, "GET", "/elsewhere", NULL, NULL);
    assert_error(&c, 404, "bad_request");
    cap_release(&c);
    request(&c, "GET", "/api/v1/%2e%2e/health", NULL, NULL);
    assert_error(&c, 400, "bad_request");
    cap_release(&c);
    request(&c, "GET", "/api/v1//health", NULL, NULL);
    assert_error(&c, 400, "bad_request");
    cap_release(&c);
    request(&c, "GET", "/api/v1/tools/call", NULL, NULL);
    assert_error(&c, 405, "bad_request");
    ck_assert_ptr_nonnull(strstr(c.head, "Allow: POST, OPTIONS"));
    cap_release(&c);
    request(&c, "DELETE", "/api/v1/servers", NULL, NULL);
    assert_error(&c, 405, "bad_request");
    ck_assert_ptr_nonnull(strstr(c.head, "Allow: GET, OPTIONS"));
    cap_release(&c);
    ck_assert_int_eq(request(&c, "OPTIONS", "/api/v1/servers", NULL, NULL), 204);
    ck_assert_ptr_nonnull(strstr(c.head, "Allow: GET, OPTIONS"));
    cap_release(&c);
}
END_TEST

START_TEST(cors_preflight_and_foreign_origins)
{
    struct cap c;
    const char *const pre[] = { "origin", "http://localhost:5500",
                                "access-control-request-method", "POST",
                                "access-control-request-headers", "authorization,content-type",
                                NULL };
    const char *const local[] = { "origin", "http://127.0.0.1:8080", NULL };
    const char *const evil[] = { "origin", "https://evil.example", NULL };

    ck_assert_int_eq(request(&c, "OPTIONS", "/api/v1/tools/call", pre, NULL), 204);
    ck_assert_ptr_nonnull(strstr(c.head, "Access-Control-Allow-Origin: http://localhost:5500"));
    ck_assert_ptr_nonnull(strstr(c.head, "Access-Control-Allow-Methods: POST, OPTIONS"));
    ck_assert_ptr_nonnull(strstr(c.head, "Authorization"));
    ck_assert_ptr_null(strstr(c.head, "Credentials"));
    cap_release(&c);
    ck_assert_int_eq(request(&c, "GET", "/api/v1/health", local, NULL), 200);
    ck_assert_ptr_nonnull(strstr(c.head, "Access-Control-Allow-Origin: http://127.0.0.1:8080"));
    cap_release(&c);
    request(&c, "GET", "/api/v1/health", evil, NULL);
    assert_error(&c, 403, "forbidden");
    ck_assert_ptr_null(strstr(c.head, "Access-Control-Allow-Origin"));
    cap_release(&c);
}
END_TEST

/* ---- auth and scopes ------------------------------------------------------------- */

/* The whole response as the client sees it: status, headers, body. */
static char *whole_response(struct cap *c)
{
    struct mcpgw_buf b;
    char *s;

    mcpgw_buf_init(&b, 1u << 20);
    ck_assert_int_eq(mcpgw_buf_printf(&b, "%d\n%s\n", c->status, c->head), 0);
    ck_assert_int_eq(mcpgw_buf_add(&b, c->body.ptr ? c->body.ptr : "", c->body.len), 0);
    ck_assert_ptr_nonnull(s = strndup(b.ptr, b.len));
    mcpgw_buf_release(&b);
    return s;
}

START_TEST(auth_401_identical_for_every_bad_credential)
{
    char path[128], err[256], unknown[80], expired[80], ticket[80];
    char b_unknown[100], b_expired[100], b_ticket[100], target[200], *first = NULL;
    const char *const all[] = { "*" };
    time_t exp = time(NULL) + 1;
    struct cap c;
    json_object *o;
    int n = 0;

    bearers();
    /* unknown: a well-formed token of another store */
    snprintf(path, sizeof(path), "%s/other-tokens.json", dir);
    ck_assert_int_eq(mcpgw_tokens_add(path, "full", all, 1, 0, unknown, sizeof(unknown), err,
                                      sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/tokens.json", dir);
    ck_assert_int_eq(mcpgw_tokens_add(path, "brief", all, 1, exp, expired, sizeof(expired), err,
                                      sizeof(err)), 0);
    /* a used ticket */
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tickets",
                             (const char *const[]){ "authorization", bearer_full, NULL }, NULL),
                     200);
    o = body_json(&c);
    snprintf(ticket, sizeof(ticket), "%s", jstr(o, "ticket"));
    json_object_put(o);
    cap_release(&c);
    snprintf(target, sizeof(target), "/api/v1/servers?ticket=%s", ticket);
    snprintf(b_ticket, sizeof(b_ticket), "Bearer %s", ticket);
    snprintf(b_unknown, sizeof(b_unknown), "Bearer %s", unknown);
    snprintf(b_expired, sizeof(b_expired), "Bearer %s", expired);
    /* The expiry is a whole second: wait for it to pass. */
    for (int64_t end = now_ms() + 3000; time(NULL) < exp && now_ms() < end;)
        usleep(20000);
    ck_assert_int_ge(time(NULL), exp);
    {
        /* missing, malformed, unknown, expired, revoked, a ticket where a
         * token goes, a token in the URL; on every route that needs one */
        const char *creds[] = { NULL, "Bearer mcpgw_nope", "Basic dXNlcjpwdw==", "Bearer",
                                "Bearer a b", b_unknown, b_expired, bearer_gone, b_ticket, NULL };
        const size_t ncreds = sizeof(creds) / sizeof(creds[0]) - 1;
        char url_token[200];

        snprintf(url_token, sizeof(url_token), "/api/v1/servers?access_token=%s", tok_full);
        for (size_t i = 0; i <= ncreds + 3; i++) {
            const char *h[] = { "authorization", i < ncreds ? creds[i] : NULL,
                                "content-type", "application/json", NULL };
            const char *const *hh = i < ncreds && creds[i] ? h : h + 2;
            char *got;

            if (i < ncreds) {
                static const char *const routes[][2] = {
                    { "GET", "/api/v1/servers" }, { "GET", "/api/v1/servers/fake/tools" },
                    { "POST", "/api/v1/tools/call" }, { "POST", "/api/v1/tickets" },
                    { "GET", "/api/v1/events" } };

                for (size_t k = 0; k < sizeof(routes) / sizeof(routes[0]); k++) {
                    /* without credentials the event stream is anonymous */
                    if (!creds[i] && strcmp(routes[k][1], "/api/v1/events") == 0)
                        continue;
                    request(&c, routes[k][0], routes[k][1], hh,
                            routes[k][0][0] == 'P' ? "{\"serverId\":\"fake\",\"toolName\":\"echo\"}"
                                                   : NULL);
                    got = whole_response(&c);
                    assert_error(&c, 401, "auth_required");
                    if (!first)
                        first = strdup(got);
                    ck_assert_msg(strcmp(got, first) == 0, "credential %zu on %s:\n%s\n--- "
                                  "differs from ---\n%s", i, routes[k][1], got, first);
                    free(got);
                    cap_release(&c);
                    n++;
                }
                continue;
            }
            if (i == ncreds)
                request(&c, "GET", url_token, NULL, NULL);
            else if (i == ncreds + 1)
                request(&c, "GET", target, NULL, NULL);     /* ticket on a token-only route */
            else if (i == ncreds + 2) {
                /* the ticket on the event stream: good once, then like any bad one */
                struct cap s;
                char ev[200];

                snprintf(ev, sizeof(ev), "/api/v1/events?ticket=%s", ticket);
                stream_start(&s, ev, NULL);
                ck_assert(wait_body(&s, "\"type\":\"connected\"", 1, 5000));
                close(s.hang[1]);
                s.hang[1] = -1;
                ck_assert(wait_done(&s, 3000));
                cap_release(&s);
                request(&c, "GET", ev, NULL, NULL);
            } else {
                snprintf(target, sizeof(target), "/api/v1/events?ticket=%.50s", "x");
                request(&c, "GET", target, NULL, NULL);
            }
            got = whole_response(&c);
            assert_error(&c, 401, "auth_required");
            ck_assert_msg(strcmp(got, first) == 0, "case %zu:\n%s\n--- differs from ---\n%s",
                          i, got, first);
            free(got);
            cap_release(&c);
            n++;
        }
    }
    ck_assert_int_ge(n, 40);
    ck_assert_ptr_nonnull(strstr(first, "WWW-Authenticate: Bearer realm=\"mcpgw\"\n"));
    ck_assert_ptr_null(strstr(first, "error="));
    ck_assert_ptr_nonnull(strstr(first, MCPGW_ROUTES_401_TEXT));
    free(first);
}
END_TEST

START_TEST(scopes_limit_servers_and_tools)
{
    struct cap c;
    json_object *o, *arr;
    const char *const full[] = { "authorization", bearer_full, NULL };
    const char *const echo[] = { "authorization", bearer_echo, NULL };

    bearers();
    ck_assert_int_eq(request(&c, "GET", "/api/v1/servers", full, NULL), 200);
    o = body_json(&c);
    ck_assert(json_object_object_get_ex(o, "servers", &arr));
    ck_assert_uint_eq(json_object_array_length(arr), 3);
    json_object_put(o);
    cap_release(&c);
    ck_assert_int_eq(request(&c, "GET", "/api/v1/servers", echo, NULL), 200);
    o = body_json(&c);
    ck_assert(json_object_object_get_ex(o, "servers", &arr));
    ck_assert_uint_eq(json_object_array_length(arr), 1);
    ck_assert_str_eq(jstr(json_object_array_get_idx(arr, 0), "id"), "fake");
    json_object_put(o);
    cap_release(&c);
    /* tools: only echo for the echo-only token, exactly the three keys */
    ck_assert_int_eq(request(&c, "GET", "/api/v1/servers/fake/tools", echo, NULL), 200);
    o = body_json(&c);
    ck_assert_str_eq(jstr(o, "serverId"), "fake");
    ck_assert(json_object_object_get_ex(o, "tools", &arr));
    ck_assert_uint_eq(json_object_array_length(arr), 1);
    {
        json_object *t = json_object_array_get_idx(arr, 0), *schema;
        int keys = 0;

        json_object_object_foreach(t, k, v) {
            (void)v;
            ck_assert(strcmp(k, "name") == 0 || strcmp(k, "description") == 0 ||
                      strcmp(k, "inputSchema") == 0);
            keys++;
        }
        ck_assert_int_ge(keys, 2);
        ck_assert_str_eq(jstr(t, "name"), "echo");
        ck_assert(json_object_object_get_ex(t, "inputSchema", &schema));
    }
    json_object_put(o);
    cap_release(&c);
    request(&c, "GET", "/api/v1/servers/everything/tools", echo, NULL);
    assert_error(&c, 403, "forbidden");
    cap_release(&c);
    request(&c, "GET", "/api/v1/servers/nosuch/tools", full, NULL);
    assert_error(&c, 404, "unknown_server");
    cap_release(&c);
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_echo),
            "{\"serverId\":\"fake\",\"toolName\":\"sleep\",\"params\":{\"ms\":1}}");
    assert_error(&c, 403, "forbidden");
    cap_release(&c);
}
END_TEST

START_TEST(open_gateway_allows_anonymous)
{
    struct cap c;

    mcpgw_routes_free(rt);
    mcpgw_hub_free(hub);
    mcpgw_events_close(events);
    make_routes(",\"requireAuth\":false", "");
    ck_assert_int_eq(request(&c, "GET", "/api/v1/servers", NULL, NULL), 200);
    cap_release(&c);
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call",
                             (const char *const[]){ "content-type", "application/json", NULL },
                             "{\"serverId\":\"fake\",\"toolName\":\"echo\","
                             "\"params\":{\"message\":\"open\"}}"), 200);
    cap_release(&c);
    /* a wrong token is still wrong */
    request(&c, "GET", "/api/v1/servers",
            (const char *const[]){ "authorization", "Bearer mcpgw_x", NULL }, NULL);
    assert_error(&c, 401, "auth_required");
    cap_release(&c);
}
END_TEST

/* ---- tool calls ------------------------------------------------------------------ */

START_TEST(call_success_and_is_error_shapes)
{
    struct cap c;
    json_object *o, *res;

    bearers();
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
                             "{\"serverId\":\"fake\",\"toolName\":\"echo\","
                             "\"params\":{\"message\":\"hi\"}}"), 200);
    o = body_json(&c);
    ck_assert(json_object_get_boolean(json_object_object_get(o, "success")));
    ck_assert_str_eq(jstr(o, "serverId"), "fake");
    ck_assert_str_eq(jstr(o, "toolName"), "echo");
    ck_assert(json_object_object_get_ex(o, "result", &res));
    ck_assert_ptr_nonnull(strstr(json_object_to_json_string(res), "Echo: hi"));
    json_object_put(o);
    cap_release(&c);
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
                             "{\"serverId\":\"fake\",\"toolName\":\"iserror\"}"), 200);
    o = body_json(&c);
    ck_assert(!json_object_get_boolean(json_object_object_get(o, "success")));
    json_object_put(o);
    cap_release(&c);
    /* the real npm server, through the same route */
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
                             "{\"serverId\":\"everything\",\"toolName\":\"echo\","
                             "\"params\":{\"message\":\"npm\"}}"), 200);
    ck_assert_ptr_nonnull(strstr(c.body.ptr, "Echo: npm"));
    cap_release(&c);
}
END_TEST

START_TEST(call_bad_bodies)
{
    struct cap c;
    char *big;
    static const char *const bodies[] = {
        "", "{", "[1]", "{\"serverId\":\"fake\"}", "{\"serverId\":1,\"toolName\":\"echo\"}",
        "{\"serverId\":\"fake\",\"toolName\":\"echo\",\"params\":[]}",
        "{\"serverId\":\"fake\",\"toolName\":\"echo\"} x", "{\"serverId\":\"\\u00ff\xff\"}",
        NULL };

    bearers();
    for (size_t i = 0; bodies[i]; i++) {
        request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full), bodies[i]);
        assert_error(&c, 400, "bad_request");
        cap_release(&c);
    }
    request(&c, "POST", "/api/v1/tools/call",
            (const char *const[]){ "authorization", bearer_full, "content-type", "text/plain",
                                   NULL }, "{}");
    assert_error(&c, 415, "bad_request");
    cap_release(&c);
    big = malloc(70000);
    memset(big, ' ', 69999);
    big[69999] = '\0';
    big[0] = '{';
    big[69998] = '}';
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full), big);
    assert_error(&c, 413, "too_large");
    cap_release(&c);
    free(big);
}
END_TEST

START_TEST(call_failures_map_to_statuses)
{
    struct cap c;

    bearers();
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"nosuch\",\"toolName\":\"echo\"}");
    assert_error(&c, 404, "unknown_server");
    cap_release(&c);
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"fake\",\"toolName\":\"no_such_tool\"}");
    assert_error(&c, 404, "unknown_tool");
    cap_release(&c);
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"fake\",\"toolName\":\"hang\"}");
    assert_error(&c, 504, "timeout");
    cap_release(&c);
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"off\",\"toolName\":\"x\"}");
    assert_error(&c, 502, "server_unavailable");
    cap_release(&c);
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"fake\",\"toolName\":\"crash\"}");
    assert_error(&c, 502, "server_unavailable");
    cap_release(&c);
    /* now backing off for a minute: 502 with Retry-After */
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"fake\",\"toolName\":\"echo\"}");
    assert_error(&c, 502, "server_unavailable");
    ck_assert_ptr_nonnull(strstr(c.head, "Retry-After: "));
    cap_release(&c);
}
END_TEST

struct bg_call {
    struct cap c;
    const char *body;
    pthread_t t;
};

static void *bg_call_main(void *arg)
{
    struct bg_call *b = arg;

    request(&b->c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full), b->body);
    return NULL;
}

START_TEST(full_server_is_429)
{
    struct bg_call bg[3];
    struct cap c;
    struct mcpgw_server_health h;
    int64_t end;

    bearers();
    /* warm the server so its calls go out at once */
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
                             "{\"serverId\":\"fake\",\"toolName\":\"echo\"}"), 200);
    cap_release(&c);
    for (int i = 0; i < 3; i++) {
        bg[i].body = "{\"serverId\":\"fake\",\"toolName\":\"sleep\",\"params\":{\"ms\":1000}}";
        ck_assert_int_eq(pthread_create(&bg[i].t, NULL, bg_call_main, &bg[i]), 0);
    }
    /* wait until all three are in flight (maxInFlight is 3) */
    end = now_ms() + 5000;
    do {
        struct cap hc;

        request(&hc, "GET", "/api/v1/servers", (const char *const[]){ "authorization",
                bearer_full, NULL }, NULL);
        h.inflight = strstr(hc.body.ptr, "\"inflight\":3") ? 3 : 0;
        cap_release(&hc);
    } while (h.inflight < 3 && now_ms() < end && usleep(20000) == 0);
    ck_assert_uint_eq(h.inflight, 3);
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"fake\",\"toolName\":\"echo\"}");
    assert_error(&c, 429, "rate_limited");
    ck_assert_ptr_nonnull(strstr(c.head, "Retry-After: 1"));
    cap_release(&c);
    for (int i = 0; i < 3; i++) {
        pthread_join(bg[i].t, NULL);
        ck_assert_int_eq(bg[i].c.status, 200);
        cap_release(&bg[i].c);
    }
}
END_TEST

/* ---- per-token limits ------------------------------------------------------------ */

/* Another handle on the gateway's quota table, as another process would
 * have: it sees every process's calls. */
static mcpgw_quota *quota_view(void)
{
    char state[128], tokens[128], err[4800];
    struct mcpgw_quota_limits lim = { 1, 1, 1 };
    mcpgw_quota *q;

    snprintf(state, sizeof(state), "%s/state", dir);
    snprintf(tokens, sizeof(tokens), "%s/tokens.json", dir);
    ck_assert_int_eq(mcpgw_quota_new(state, tokens, &lim, &q, err, sizeof(err)), 0);
    ck_assert_msg(mcpgw_quota_shared(q), "%s", err);
    return q;
}

static bool wait_inflight(mcpgw_quota *q, const char *name, unsigned n, int ms)
{
    int64_t end = now_ms() + ms;

    while (mcpgw_quota_inflight(q, name) != n && now_ms() < end)
        usleep(5000);
    return mcpgw_quota_inflight(q, name) == n;
}

START_TEST(token_over_its_concurrency_is_429)
{
    struct bg_call bg[2];
    struct cap c;
    mcpgw_quota *q;

    mcpgw_routes_free(rt);
    mcpgw_hub_free(hub);
    mcpgw_events_close(events);
    /* the server takes 3 at once: the token's limit of 2 is what bites */
    make_routes(",\"tokenLimits\":{\"maxConcurrentCalls\":2}", "");
    q = quota_view();
    bearers();
    /* warm the server (with another token) so the calls go out at once */
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_echo),
                             "{\"serverId\":\"fake\",\"toolName\":\"echo\"}"), 200);
    cap_release(&c);
    for (int i = 0; i < 2; i++) {
        bg[i].body = "{\"serverId\":\"fake\",\"toolName\":\"sleep\",\"params\":{\"ms\":1000}}";
        ck_assert_int_eq(pthread_create(&bg[i].t, NULL, bg_call_main, &bg[i]), 0);
    }
    ck_assert(wait_inflight(q, "full", 2, 5000));
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"fake\",\"toolName\":\"echo\"}");
    assert_error(&c, 429, "rate_limited");
    ck_assert_ptr_nonnull(strstr(c.head, "Retry-After: 1\n"));
    ck_assert_ptr_nonnull(strstr(c.body.ptr, "maxConcurrentCalls"));
    cap_release(&c);
    /* streamed calls are refused the same way, before any stream starts */
    request(&c, "POST", "/api/v1/tools/call",
            (const char *const[]){ "authorization", bearer_full, "content-type",
                                   "application/json", "accept", "text/event-stream", NULL },
            "{\"serverId\":\"fake\",\"toolName\":\"echo\"}");
    assert_error(&c, 429, "rate_limited");
    cap_release(&c);
    /* another token is not held back by this one */
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_echo),
                             "{\"serverId\":\"fake\",\"toolName\":\"echo\"}"), 200);
    cap_release(&c);
    for (int i = 0; i < 2; i++) {
        pthread_join(bg[i].t, NULL);
        ck_assert_int_eq(bg[i].c.status, 200);
        cap_release(&bg[i].c);
    }
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "full"), 0);
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
                             "{\"serverId\":\"fake\",\"toolName\":\"echo\"}"), 200);
    cap_release(&c);
    mcpgw_quota_free(q);
}
END_TEST

START_TEST(token_over_its_rate_is_429_with_retry_after)
{
    struct cap c;
    const char *call = "{\"serverId\":\"fake\",\"toolName\":\"echo\"}";
    int64_t t0;

    mcpgw_routes_free(rt);
    mcpgw_hub_free(hub);
    mcpgw_events_close(events);
    make_routes(",\"tokenLimits\":{\"callsPerSecond\":1,\"burst\":2}", "");
    bearers();
    t0 = now_ms();
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full), call),
                         200);
        cap_release(&c);
    }
    /* refused at once, not queued.  A slow run (valgrind) may take over a
     * second for the burst, and then tokens have come back: a call may
     * pass only for each second gone by. */
    for (int extra = 0;; extra++) {
        if (request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full), call) != 200)
            break;
        /* burst 2 (full at t0), then one more per second since */
        ck_assert_int_le(extra + 1, (now_ms() - t0) / 1000);
        cap_release(&c);
    }
    assert_error(&c, 429, "rate_limited");
    ck_assert_ptr_nonnull(strstr(c.head, "Retry-After: 1\n"));
    ck_assert_ptr_nonnull(strstr(c.body.ptr, "1 calls per second"));
    cap_release(&c);
    if (now_ms() - t0 < 900) {
        request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full), call);
        assert_error(&c, 429, "rate_limited");
        cap_release(&c);
    }
    /* calls refused for other reasons cost nothing; other tokens are free */
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_echo), call),
                     200);
    cap_release(&c);
    /* a second later one more call is allowed */
    for (int64_t end = now_ms() + 3000; now_ms() < end; usleep(50000)) {
        if (request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full), call) == 200)
            break;
        assert_error(&c, 429, "rate_limited");
        cap_release(&c);
    }
    ck_assert_int_eq(c.status, 200);
    ck_assert_int_ge(now_ms() - t0, 500);
    cap_release(&c);
}
END_TEST

static void *shutdown_when_inflight(void *arg)
{
    mcpgw_quota *q = arg;

    if (wait_inflight(q, "full", 1, 10000))
        mcpgw_routes_shutdown(rt, true);
    return NULL;
}

START_TEST(token_hold_released_on_every_path)
{
    const char *const sse[] = { "authorization", bearer_full, "content-type", "application/json",
                                "accept", "text/event-stream", NULL };
    mcpgw_quota *q = quota_view();
    struct cap c;
    pthread_t t;

    bearers();
    /* result */
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
                             "{\"serverId\":\"fake\",\"toolName\":\"echo\"}"), 200);
    cap_release(&c);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "full"), 0);
    /* a tool error (isError), and a call the hub refuses */
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
                             "{\"serverId\":\"fake\",\"toolName\":\"iserror\"}"), 200);
    cap_release(&c);
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"fake\",\"toolName\":\"no_such_tool\"}");
    assert_error(&c, 404, "unknown_tool");
    cap_release(&c);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "full"), 0);
    /* streamed, and streamed to a client that goes away mid-stream */
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", sse,
                             "{\"serverId\":\"fake\",\"toolName\":\"progress\","
                             "\"params\":{\"steps\":3,\"intervalMs\":30}}"), 200);
    cap_release(&c);
    cap_init(&c);
    prepare(&c, "POST", "/api/v1/tools/call", sse,
            "{\"serverId\":\"fake\",\"toolName\":\"progress\","
            "\"params\":{\"steps\":5,\"intervalMs\":30}}");
    c.fail_after = 1;
    ck_assert_int_lt(mcpgw_routes_handle(rt, &c.req, &c.w), 0);
    cap_release(&c);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "full"), 0);
    /* timeout */
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"fake\",\"toolName\":\"hang\"}");
    assert_error(&c, 504, "timeout");
    cap_release(&c);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "full"), 0);
    /* the server dies mid-call, and calls while it is down */
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"fake\",\"toolName\":\"crash\"}");
    assert_error(&c, 502, "server_unavailable");
    cap_release(&c);
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"fake\",\"toolName\":\"echo\"}");
    assert_error(&c, 502, "server_unavailable");
    cap_release(&c);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "full"), 0);
    /* cancelled by a shutdown while in flight */
    ck_assert_int_eq(pthread_create(&t, NULL, shutdown_when_inflight, q), 0);
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"everything\",\"toolName\":\"trigger-long-running-operation\","
            "\"params\":{\"duration\":30,\"steps\":3}}");
    pthread_join(t, NULL);
    assert_error(&c, 503, "server_unavailable");
    cap_release(&c);
    ck_assert_uint_eq(mcpgw_quota_inflight(q, "full"), 0);
    mcpgw_quota_free(q);
}
END_TEST

START_TEST(call_streams_progress_then_response)
{
    struct cap c;
    const char *const h[] = { "authorization", bearer_full, "content-type", "application/json",
                              "accept", "text/event-stream", NULL };
    const char *p1, *resp;

    bearers();
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", h,
                             "{\"serverId\":\"fake\",\"toolName\":\"progress\","
                             "\"params\":{\"steps\":3,\"intervalMs\":50}}"), 200);
    ck_assert_ptr_nonnull(strstr(c.head, "Content-Type: text/event-stream"));
    p1 = strstr(c.body.ptr, "data: {\"type\":\"tool_progress\"");
    resp = strstr(c.body.ptr, "data: {\"type\":\"tool_response\"");
    ck_assert_ptr_nonnull(p1);
    ck_assert_ptr_nonnull(resp);
    ck_assert(p1 < resp);
    ck_assert_ptr_nonnull(strstr(resp, "\"success\":true"));
    ck_assert_ptr_nonnull(strstr(resp, "progress: 3 steps done"));
    ck_assert_ptr_null(strstr(resp + 1, "data: "));
    ck_assert_int_ge(c.flushes, 2);
    cap_release(&c);
    /* refused at once: a proper status, not a stream */
    request(&c, "POST", "/api/v1/tools/call", h, "{\"serverId\":\"fake\",\"toolName\":\"nope\"}");
    assert_error(&c, 404, "unknown_tool");
    cap_release(&c);
}
END_TEST

/* ---- tickets ------------------------------------------------------------------------ */

START_TEST(tickets_are_single_use)
{
    struct cap c, s;
    char target[200];
    json_object *o;

    bearers();
    request(&c, "POST", "/api/v1/tickets", NULL, NULL);
    assert_error(&c, 401, "auth_required");
    cap_release(&c);
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tickets",
                             (const char *const[]){ "authorization", bearer_echo, NULL }, NULL),
                     200);
    o = body_json(&c);
    ck_assert_uint_eq(strlen(jstr(o, "ticket")), 50);
    ck_assert_int_eq(json_object_get_int(json_object_object_get(o, "expiresInMs")), 60000);
    snprintf(target, sizeof(target), "/api/v1/events?ticket=%s", jstr(o, "ticket"));
    json_object_put(o);
    cap_release(&c);
    stream_start(&s, target, NULL);
    ck_assert(wait_body(&s, "\"type\":\"connected\"", 1, 5000));
    ck_assert_int_eq(s.status, 200);
    /* used once: the second use fails like any bad credential */
    request(&c, "GET", target, NULL, NULL);
    assert_error(&c, 401, "auth_required");
    cap_release(&c);
    /* a ticket is not a token: it cannot buy another ticket */
    {
        char h[100];

        snprintf(h, sizeof(h), "Bearer %s", strchr(target, '=') + 1);
        request(&c, "POST", "/api/v1/tickets", (const char *const[]){ "authorization", h, NULL },
                NULL);
        assert_error(&c, 401, "auth_required");
        cap_release(&c);
    }
    close(s.hang[1]);
    s.hang[1] = -1;
    ck_assert(wait_done(&s, 3000));
    cap_release(&s);
}
END_TEST

/* ---- the event stream ------------------------------------------------------------------ */

START_TEST(stream_connected_retry_heartbeat_headers)
{
    struct cap s;
    int64_t t0 = now_ms();
    char *b;

    stream_start(&s, "/api/v1/events", NULL);
    ck_assert(wait_body(&s, "\"type\":\"connected\"", 1, 5000));
    ck_assert_ptr_nonnull(strstr(s.head, "Content-Type: text/event-stream"));
    ck_assert_ptr_nonnull(strstr(s.head, "Cache-Control: no-cache"));
    ck_assert_ptr_nonnull(strstr(s.head, "X-Accel-Buffering: no"));
    /* heartbeat every 1 s: two within 2 s + 1 s of slack */
    ck_assert(wait_body(&s, "\"type\":\"heartbeat\"", 2, 3000));
    ck_assert_int_le(now_ms() - t0, slowed(3000));
    b = body_copy(&s);
    ck_assert(strncmp(b, "retry: 1500\n", 12) == 0);
    ck_assert_ptr_nonnull(strstr(b, "data: {\"type\":\"connected\",\"timestamp\":"));
    ck_assert_ptr_nonnull(strstr(b, "\"message\":\"Connected to MCP Gateway events\"}\n\n"));
    ck_assert_ptr_null(strstr(b, "event:"));     /* unnamed: onmessage gets all */
    free(b);
    close(s.hang[1]);
    s.hang[1] = -1;
    ck_assert(wait_done(&s, 3000));
    cap_release(&s);
}
END_TEST

START_TEST(stream_tool_events_need_a_token_and_scope)
{
    struct cap anon, full, echo, c;
    const char *const hf[] = { "authorization", bearer_full, NULL };
    const char *const he[] = { "authorization", bearer_echo, NULL };
    char *b;

    bearers();
    stream_start(&anon, "/api/v1/events", NULL);
    stream_start(&full, "/api/v1/events", hf);
    stream_start(&echo, "/api/v1/events", he);
    ck_assert(wait_body(&anon, "connected", 1, 5000));
    ck_assert(wait_body(&full, "connected", 1, 5000));
    ck_assert(wait_body(&echo, "connected", 1, 5000));
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
                             "{\"serverId\":\"fake\",\"toolName\":\"echo\","
                             "\"params\":{\"message\":\"ev\"}}"), 200);
    cap_release(&c);
    ck_assert_int_eq(request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
                             "{\"serverId\":\"fake\",\"toolName\":\"sleep\","
                             "\"params\":{\"ms\":1}}"), 200);
    cap_release(&c);
    ck_assert(wait_body(&full, "\"type\":\"tool_result\"", 2, 5000));
    ck_assert(wait_body(&full, "\"type\":\"server_status\"", 1, 5000));
    ck_assert(wait_body(&anon, "\"type\":\"server_status\"", 1, 5000));
    ck_assert(wait_body(&echo, "\"type\":\"tool_result\"", 1, 5000));
    /* events carry ids */
    b = body_copy(&full);
    ck_assert_ptr_nonnull(strstr(b, "\nid: "));
    free(b);
    b = body_copy(&anon);
    ck_assert_ptr_null(strstr(b, "tool_call"));
    ck_assert_ptr_null(strstr(b, "tool_result"));
    free(b);
    /* echo-only sees echo's events, not sleep's */
    ck_assert(!wait_body(&echo, "\"type\":\"tool_result\"", 2, 500));
    b = body_copy(&echo);
    ck_assert_ptr_null(strstr(b, "\"toolName\":\"sleep\""));
    free(b);
    mcpgw_routes_shutdown(rt, false);
    ck_assert(wait_done(&anon, 3000) && wait_done(&full, 3000) && wait_done(&echo, 3000));
    b = body_copy(&full);
    ck_assert_ptr_nonnull(strstr(b, "retry: 1500\ndata: {\"type\":\"stream_end\""));
    ck_assert_ptr_nonnull(strstr(b, "\"reason\":\"shutdown\""));
    free(b);
    cap_release(&anon);
    cap_release(&full);
    cap_release(&echo);
}
END_TEST

START_TEST(stream_filters)
{
    struct cap s, c;
    const char *const hf[] = { "authorization", bearer_full, NULL };
    char *b;

    bearers();
    stream_start(&s, "/api/v1/events?types=tool_result&serverId=everything", hf);
    ck_assert(wait_body(&s, "connected", 1, 5000));
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"fake\",\"toolName\":\"echo\"}");
    cap_release(&c);
    request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
            "{\"serverId\":\"everything\",\"toolName\":\"echo\",\"params\":{\"message\":\"f\"}}");
    ck_assert_int_eq(c.status, 200);
    cap_release(&c);
    ck_assert(wait_body(&s, "\"type\":\"tool_result\"", 1, 10000));
    b = body_copy(&s);
    ck_assert_ptr_null(strstr(b, "\"serverId\":\"fake\""));
    ck_assert_ptr_null(strstr(b, "\"type\":\"tool_call\""));
    ck_assert_ptr_null(strstr(b, "\"type\":\"server_status\""));
    free(b);
    close(s.hang[1]);
    s.hang[1] = -1;
    ck_assert(wait_done(&s, 3000));
    cap_release(&s);
    request(&c, "GET", "/api/v1/events?types=Bad-Type", NULL, NULL);
    assert_error(&c, 400, "bad_request");
    cap_release(&c);
    request(&c, "GET", "/api/v1/events?serverId=a/b", NULL, NULL);
    assert_error(&c, 400, "bad_request");
    cap_release(&c);
    request(&c, "GET", "/api/v1/events", (const char *const[]){ "last-event-id", "x;y", NULL },
            NULL);
    assert_error(&c, 400, "bad_request");
    cap_release(&c);
}
END_TEST

/* The ids of the tool_result events in body, in order. */
static int result_ids(const char *b, char ids[][64], int max)
{
    int n = 0;

    for (const char *p = b; (p = strstr(p, "id: ")) && n < max; p++) {
        const char *end = strchr(p, '\n');

        if (end && strncmp(end + 1, "data: {\"type\":\"tool_result\"", 27) == 0)
            snprintf(ids[n++], 64, "%.*s", (int)(end - p - 4), p + 4);
    }
    return n;
}

START_TEST(stream_resume_loses_nothing)
{
    struct cap s, c;
    const char *const hf[] = { "authorization", bearer_full, NULL };
    char ids[40][64], ids2[40][64], last[64], target[120];
    char *b;
    int n, n2;

    bearers();
    stream_start(&s, "/api/v1/events?types=tool_result", hf);
    ck_assert(wait_body(&s, "connected", 1, 5000));
    for (int i = 0; i < 5; i++) {
        request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
                "{\"serverId\":\"fake\",\"toolName\":\"echo\"}");
        cap_release(&c);
    }
    ck_assert(wait_body(&s, "tool_result", 5, 5000));
    close(s.hang[1]);
    s.hang[1] = -1;
    ck_assert(wait_done(&s, 3000));
    b = body_copy(&s);
    n = result_ids(b, ids, 40);
    free(b);
    ck_assert_int_eq(n, 5);
    snprintf(last, sizeof(last), "%s", ids[2]);
    cap_release(&s);
    /* while disconnected: five more */
    for (int i = 0; i < 5; i++) {
        request(&c, "POST", "/api/v1/tools/call", JSON_POST(bearer_full),
                "{\"serverId\":\"fake\",\"toolName\":\"echo\"}");
        cap_release(&c);
    }
    /* resume after the third: exactly the two after it, then the five */
    stream_start(&s, "/api/v1/events?types=tool_result",
                 (const char *const[]){ "authorization", bearer_full, "last-event-id", last, NULL });
    ck_assert(wait_body(&s, "tool_result", 7, 5000));
    ck_assert(!wait_body(&s, "tool_result", 8, 300));
    b = body_copy(&s);
    n2 = result_ids(b, ids2, 40);
    free(b);
    ck_assert_int_eq(n2, 7);
    ck_assert_str_eq(ids2[0], ids[3]);
    ck_assert_str_eq(ids2[1], ids[4]);
    close(s.hang[1]);
    s.hang[1] = -1;
    ck_assert(wait_done(&s, 3000));
    cap_release(&s);
    /* the same through ?lastEventId= */
    snprintf(target, sizeof(target), "/api/v1/events?types=tool_result&lastEventId=%s", ids[4]);
    stream_start(&s, target, hf);
    ck_assert(wait_body(&s, "tool_result", 5, 5000));
    ck_assert(!wait_body(&s, "tool_result", 6, 300));
    close(s.hang[1]);
    s.hang[1] = -1;
    ck_assert(wait_done(&s, 3000));
    cap_release(&s);
}
END_TEST

START_TEST(stream_ends_at_max_duration)
{
    struct cap s;
    int64_t t0;

    mcpgw_routes_free(rt);
    mcpgw_hub_free(hub);
    mcpgw_events_close(events);
    sse_conf = "\"maxStreamMs\":1500,\"retryMs\":700";
    make_routes("", "");
    t0 = now_ms();
    stream_start(&s, "/api/v1/events", NULL);
    ck_assert(wait_done(&s, 4000));
    ck_assert_int_ge(now_ms() - t0, 1400);
    ck_assert_ptr_nonnull(strstr(s.body.ptr, "retry: 700\ndata: {\"type\":\"stream_end\""));
    ck_assert_ptr_nonnull(strstr(s.body.ptr, "\"reason\":\"max_duration\""));
    ck_assert_int_eq(s.rc, 0);
    cap_release(&s);
}
END_TEST

START_TEST(stream_client_gone_frees_the_thread)
{
    struct cap s;
    int64_t t0;
    unsigned streams;

    /* a write that fails: noticed at the next heartbeat */
    cap_init(&s);
    ck_assert_int_eq(pipe(s.hang), 0);
    prepare(&s, "GET", "/api/v1/events", NULL, NULL);
    s.w.hangup_fd = -1;
    s.fail_after = 150;    /* the connected event fits, the first heartbeat does not */
    t0 = now_ms();
    ck_assert_int_eq(pthread_create(&s.thread, NULL, stream_thread, &s), 0);
    ck_assert(wait_done(&s, 3000));
    ck_assert_int_le(now_ms() - t0, slowed(2000));
    ck_assert_int_lt(s.rc, 0);
    cap_release(&s);
    /* a hang-up: noticed at once, without a write */
    stream_start(&s, "/api/v1/events", NULL);
    ck_assert(wait_body(&s, "connected", 1, 5000));
    t0 = now_ms();
    close(s.hang[1]);
    s.hang[1] = -1;
    ck_assert(wait_done(&s, 3000));
    ck_assert_int_le(now_ms() - t0, slowed(500));
    cap_release(&s);
    ck_assert_uint_eq(mcpgw_routes_active(rt, &streams), 0);
    ck_assert_uint_eq(streams, 0);
}
END_TEST

START_TEST(stream_cap_is_503)
{
    struct cap s[4], c;

    for (int i = 0; i < 4; i++) {
        stream_start(&s[i], "/api/v1/events", NULL);
        ck_assert(wait_body(&s[i], "connected", 1, 5000));
    }
    request(&c, "GET", "/api/v1/events", NULL, NULL);
    assert_error(&c, 503, "rate_limited");
    ck_assert_ptr_nonnull(strstr(c.head, "Retry-After: "));
    cap_release(&c);
    /* REST still works while every stream slot is taken */
    ck_assert_int_eq(request(&c, "GET", "/api/v1/health", NULL, NULL), 200);
    cap_release(&c);
    for (int i = 0; i < 4; i++) {
        close(s[i].hang[1]);
        s[i].hang[1] = -1;
        ck_assert(wait_done(&s[i], 3000));
        cap_release(&s[i]);
    }
}
END_TEST

START_TEST(stream_ends_when_its_token_is_revoked)
{
    struct cap s;
    char path[128], err[256];
    const char *const he[] = { "authorization", bearer_echo, NULL };
    char *b;

    bearers();
    stream_start(&s, "/api/v1/events", he);
    ck_assert(wait_body(&s, "connected", 1, 5000));
    snprintf(path, sizeof(path), "%s/tokens.json", dir);
    ck_assert_int_eq(mcpgw_tokens_revoke(path, "echo-only", err, sizeof(err)), 0);
    {
        json_object *d = json_object_new_object();

        json_object_object_add(d, "name", json_object_new_string("echo-only"));
        ck_assert_int_eq(mcpgw_events_publish(events, "token_revoked", d, NULL), 0);
        json_object_put(d);
    }
    ck_assert(wait_done(&s, 3000));
    b = body_copy(&s);
    ck_assert_ptr_nonnull(strstr(b, "\"reason\":\"token_revoked\""));
    free(b);
    cap_release(&s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("routes");
    TCase *tc = tcase_create("routes");
    const char *b = getenv("top_builddir"), *top = getenv("top_srcdir");
    const char *mods = getenv("MCPGW_NODE_MODULES");
    char probe[700];
    SRunner *sr;
    int failed;

    snprintf(fake, sizeof(fake), "%s/tests/fake_mcp", b ? b : ".");
    if (mods && *mods)
        snprintf(modules, sizeof(modules), "%s", mods);
    else
        snprintf(modules, sizeof(modules), "%s/node_modules", top ? top : ".");
    snprintf(probe, sizeof(probe), "%s/@modelcontextprotocol/server-everything/dist/index.js",
             modules);
    if (access(probe, R_OK) != 0) {
        fprintf(stderr, "check_routes: %s missing: run tools/setup.sh (npm ci)\n", probe);
        return getenv("CI") ? 1 : 77;
    }
    signal(SIGPIPE, SIG_IGN);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, health_needs_no_auth_and_reports_states);
    tcase_add_test(tc, health_is_503_when_nothing_is_usable);
    tcase_add_test(tc, routing_errors_have_their_statuses);
    tcase_add_test(tc, cors_preflight_and_foreign_origins);
    tcase_add_test(tc, auth_401_identical_for_every_bad_credential);
    tcase_add_test(tc, scopes_limit_servers_and_tools);
    tcase_add_test(tc, open_gateway_allows_anonymous);
    tcase_add_test(tc, call_success_and_is_error_shapes);
    tcase_add_test(tc, call_bad_bodies);
    tcase_add_test(tc, call_failures_map_to_statuses);
    tcase_add_test(tc, full_server_is_429);
    tcase_add_test(tc, token_over_its_concurrency_is_429);
    tcase_add_test(tc, token_over_its_rate_is_429_with_retry_after);
    tcase_add_test(tc, token_hold_released_on_every_path);
    tcase_add_test(tc, call_streams_progress_then_response);
    tcase_add_test(tc, tickets_are_single_use);
    tcase_add_test(tc, stream_connected_retry_heartbeat_headers);
    tcase_add_test(tc, stream_tool_events_need_a_token_and_scope);
    tcase_add_test(tc, stream_filters);
    tcase_add_test(tc, stream_resume_loses_nothing);
    tcase_add_test(tc, stream_ends_at_max_duration);
    tcase_add_test(tc, stream_client_gone_frees_the_thread);
    tcase_add_test(tc, stream_cap_is_503);
    tcase_add_test(tc, stream_ends_when_its_token_is_revoked);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
