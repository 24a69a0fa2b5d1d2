/*
 * fake_mcp - a fault-injection MCP server for mcpgw's tests.
 *
 * It speaks MCP over stdio the way the real SDK servers do (see
 * shared/reference/mcp-stdio-facts.md sections 2-12): one JSON-RPC 2.0 message per
 * line, split on '\n' only (a trailing '\r' is dropped), every server message
 * written as one line. It is event driven (poll() on stdin plus timers), so
 * calls run concurrently and finish out of order, like a Node server.
 *
 * Protocol behaviour
 *   initialize       answers with the requested protocolVersion if it is one of
 *                    2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05, otherwise
 *                    2025-11-25; serverInfo {name:"fake-mcp"}, capabilities
 *                    {tools:{listChanged:true}}. The lifecycle is not enforced.
 *   ping             {}
 *   tools/list       every tool below (paginated with --page-size)
 *   tools/call       the tools below; an unknown tool is a result with isError
 *                    and text "MCP error -32602: Tool X not found" (as the SDK)
 *   other methods    error -32601 "Method not found"
 *   notifications    notifications/cancelled {requestId} drops the pending work
 *                    of that call (see --ignore-cancel); all others are ignored
 *   malformed input  (bad JSON, no "jsonrpc":"2.0", id null or fractional,
 *                    params not an object, batches) is ignored silently
 *   input lines over 16 MiB are dropped (one line on stderr says so)
 *   stdin EOF        keeps running until its timed work (sleep, progress,
 *                    crash) is done, then exits 0, like a Node event loop
 *
 * Tools (arguments in params.arguments; numbers may be omitted)
 *   echo {message}           text "Echo: <message>"
 *   sleep {ms, message?}     answers after ms with message (or "slept <ms> ms")
 *   progress {steps=3, intervalMs=100}
 *                            with params._meta.progressToken, sends
 *                            notifications/progress {progressToken, progress:i,
 *                            total:steps, message:"step i"} every intervalMs,
 *                            then the result "progress: <steps> steps done"
 *   crash {signal?, afterMs?} dies without answering: raise(signal) if given,
 *                            else _exit(3); other calls are served until then
 *   hang                     never answers this call
 *   freeze                   the whole process stops reading and writing forever
 *   garbage {line?}          writes a non-JSON line ("this is not json") to
 *                            stdout, then answers normally
 *   big {bytes}              text of exactly bytes 'x' (at most 64 MiB)
 *   stderr {bytes | lines, lineLength=100}
 *                            writes bytes (or lines*lineLength) bytes to stderr
 *                            in '\n'-terminated lines of lineLength bytes (the
 *                            last may be shorter), with blocking writes, then
 *                            answers
 *   error {code=-32000, message="fake failure"}   a JSON-RPC error response
 *   iserror                  result {content:[text "tool failed"], isError:true}
 *   unknownid                first a response with id 999999999 (never sent by
 *                            anyone), then the real answer
 *   badresponse             {"jsonrpc":"2.0","id":<id>}: neither result nor error
 *   raw {result}             answers {"result":<result>,"jsonrpc":"2.0","id":<id>} with
 *                            the string result pasted in as it stands (bytes the
 *                            gateway must copy or parse exactly)
 *   env                      text: the environment, one NAME=value per line
 *   fds                      text: open fd numbers, ascending, space separated
 *   ask {method, params?}    sends a server->client request (ids count from 0,
 *                            like the SDK), waits for the client's answer and
 *                            returns that whole answer message as JSON text
 *   list_changed             sends notifications/tools/list_changed, adds tool
 *                            "late_tool" (which echoes like echo), answers
 *
 * Flags
 *   --no-init                never answer initialize
 *   --slow-start MS          sleep before reading anything
 *   --exit-at-start CODE     exit with CODE at once (after --pid-file/--stderr-banner)
 *   --crash-after N          the Nth tools/call received makes it _exit(3)
 *                            without answering (calls 1..N-1 work normally)
 *   --page-size N            tools/list returns N tools per page + nextCursor
 *   --ignore-cancel          notifications/cancelled is ignored entirely: the
 *                            call keeps running, progress keeps coming and the
 *                            response is still sent. That is harsher than
 *                            server-everything (which drops only the response)
 *                            and proves the gateway filters both itself.
 *   --stderr-banner TEXT     one line on stderr at start, like real servers
 *   --garbage-at-start       a non-JSON line on stdout before anything else
 *   --pid-file PATH          writes getpid() there at start
 *
 * It is a test tool: it aborts on out-of-memory rather than carrying the
 * error paths, and a failed write to stdout (the gateway went away) ends it
 * with _exit(1).
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#define LINE_BYTES_MAX (16u * 1024 * 1024)
#define READ_CHUNK     (64u * 1024)
#define BIG_BYTES_MAX  (64u * 1024 * 1024)
#define JSON_DEPTH     64
#define DAY_MS         (24 * 3600 * 1000)

extern char **environ;

enum job_kind { JOB_SLEEP, JOB_PROGRESS, JOB_CRASH, JOB_ASK };

/* Work that outlives the tools/call that started it. */
struct job {
    struct job *next;
    enum job_kind kind;
    json_object *id;      /* owned ref: the tools/call id this job answers */
    int64_t due;          /* CLOCK_MONOTONIC ms; -1 = waits for the client */
    int64_t interval, step, steps;
    json_object *token;   /* owned ref or NULL: progress token */
    char *text;           /* owned: sleep's answer */
    int sig;              /* crash's signal, 0 = _exit(3) */
    int64_t ask_id;       /* our request id for JOB_ASK */
};

static struct {
    bool no_init, ignore_cancel, late_tool, stdin_open;
    long crash_after, page_size, calls_seen;
    int64_t next_ask_id;
    struct job *jobs;
} g;

static void oom(void)
{
    static const char msg[] = "fake-mcp: out of memory\n";
    (void)!write(2, msg, sizeof(msg) - 1);
    abort();
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom();
    return p;
}

static json_object *must(json_object *o)
{
    if (!o)
        oom();
    return o;
}

/* Consumes val. json-c leaves val with the caller when the add fails. */
static void add(json_object *obj, const char *key, json_object *val)
{
    if (json_object_object_add(obj, key, val) != 0) {
        json_object_put(val);
        oom();
    }
}

static void push(json_object *arr, json_object *val)
{
    if (json_object_array_add(arr, val) != 0) {
        json_object_put(val);
        oom();
    }
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* Blocking write of every byte; a short write moves on through the iovecs. */
static void write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {  /* someone made our pipe non-blocking */
                struct pollfd p = { .fd = fd, .events = POLLOUT };
                poll(&p, 1, -1);
                continue;
            }
            _exit(1);
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
}

static void write_line(int fd, const char *s, size_t len)
{
    struct iovec iov[2] = { { (void *)s, len }, { (void *)"\n", 1 } };
    write_all(fd, iov, 2);
}

/* Consumes msg. NOSLASHESCAPE: Node's JSON.stringify does not escape '/'. */
static void send_msg(json_object *msg)
{
    size_t len;
    const char *s = json_object_to_json_string_length(
        msg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
    if (!s)
        oom();
    write_line(1, s, len);
    json_object_put(msg);
}

static json_object *new_msg(void)
{
    json_object *m = must(json_object_new_object());
    add(m, "jsonrpc", must(json_object_new_string("2.0")));
    return m;
}

/* id is borrowed; result is consumed. */
static void send_result(json_object *id, json_object *result)
{
    json_object *m = new_msg();
    add(m, "result", result);
    add(m, "id", json_object_get(id));
    send_msg(m);
}

static void send_error(json_object *id, int64_t code, const char *message)
{
    json_object *m = new_msg(), *e = must(json_object_new_object());
    add(e, "code", must(json_object_new_int64(code)));
    add(e, "message", must(json_object_new_string(message)));
    add(m, "id", json_object_get(id));
    add(m, "error", e);
    send_msg(m);
}

static json_object *text_result_len(const char *text, size_t len, bool is_error)
{
    json_object *r = must(json_object_new_object());
    json_object *content = must(json_object_new_array());
    json_object *item = must(json_object_new_object());
    add(item, "type", must(json_object_new_string("text")));
    add(item, "text", must(json_object_new_string_len(text, (int)len)));
    push(content, item);
    add(r, "content", content);
    if (is_error)
        add(r, "isError", must(json_object_new_boolean(1)));
    return r;
}

static json_object *text_result(const char *text, bool is_error)
{
    return text_result_len(text, strlen(text), is_error);
}

static void answer_text(json_object *id, const char *text)
{
    send_result(id, text_result(text, false));
}

/* --- arguments ----------------------------------------------------------- */

static json_object *arg(json_object *args, const char *key)
{
    json_object *v;
    if (!args || !json_object_object_get_ex(args, key, &v))
        return NULL;
    return v;
}

static bool is_number(json_object *v)
{
    return v && (json_object_is_type(v, json_type_int) ||
                 json_object_is_type(v, json_type_double));
}

/* A number argument clamped to [0, max]; def when absent or not a number. */
static int64_t arg_int(json_object *args, const char *key, int64_t def, int64_t max)
{
    json_object *v = arg(args, key);
    if (!is_number(v))
        return def;
    int64_t n = json_object_get_int64(v);
    return n < 0 ? 0 : n > max ? max : n;
}

static const char *arg_str(json_object *args, const char *key, size_t *len)
{
    json_object *v = arg(args, key);
    if (!v || !json_object_is_type(v, json_type_string))
        return NULL;
    if (len)
        *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

/* --- jobs ---------------------------------------------------------------- */

static struct job *job_new(enum job_kind kind, json_object *id, int64_t due)
{
    struct job *j = xmalloc(sizeof(*j));
    memset(j, 0, sizeof(*j));
    j->kind = kind;
    j->id = json_object_get(id);
    j->due = due;
    j->next = g.jobs;
    g.jobs = j;
    return j;
}

static void job_free(struct job *j)
{
    json_object_put(j->id);
    json_object_put(j->token);
    free(j->text);
    free(j);
}

static void job_remove(struct job *j)
{
    for (struct job **pp = &g.jobs; *pp; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            job_free(j);
            return;
        }
    }
}

static _Noreturn void crash(int sig)
{
    if (sig > 0) {
        sigset_t set;
        signal(sig, SIG_DFL);
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        raise(sig);
    }
    _exit(3);
}

static void fire(struct job *j)
{
    char text[64];
    switch (j->kind) {
    case JOB_SLEEP:
        answer_text(j->id, j->text);
        job_remove(j);
        break;
    case JOB_PROGRESS:
        j->step++;
        if (j->token) {
            json_object *m = new_msg(), *p = must(json_object_new_object());
            snprintf(text, sizeof(text), "step %" PRId64, j->step);
            add(m, "method", must(json_object_new_string("notifications/progress")));
            add(p, "progressToken", json_object_get(j->token));
            add(p, "progress", must(json_object_new_int64(j->step)));
            add(p, "total", must(json_object_new_int64(j->steps)));
            add(p, "message", must(json_object_new_string(text)));
            add(m, "params", p);
            send_msg(m);
        }
        if (j->step >= j->steps) {
            snprintf(text, sizeof(text), "progress: %" PRId64 " steps done", j->steps);
            answer_text(j->id, text);
            job_remove(j);
        } else {
            j->due += j->interval;
        }
        break;
    case JOB_CRASH:
        crash(j->sig);
    case JOB_ASK:
        break;
    }
}

/* The earliest due timer, or NULL. */
static struct job *next_timer(void)
{
    struct job *best = NULL;
    for (struct job *j = g.jobs; j; j = j->next)
        if (j->due >= 0 && (!best || j->due < best->due))
            best = j;
    return best;
}

static void run_timers(void)
{
    struct job *j;
    while ((j = next_timer()) && j->due <= now_ms())
        fire(j);
}

/* --- tools --------------------------------------------------------------- */

typedef void tool_fn(json_object *id, json_object *args, json_object *params);

/* Every tool has the same signature; most ignore some of it. */
#define TOOL(fn) static void fn(json_object *id __attribute__((unused)), \
                                json_object *args __attribute__((unused)), \
                                json_object *params __attribute__((unused)))

TOOL(tool_echo)
{
    size_t len;
    const char *msg = arg_str(args, "message", &len);
    if (!msg) {
        send_result(id, text_result("MCP error -32602: Input validation error: "
                                    "Invalid arguments for tool echo: expected "
                                    "string at message", true));
        return;
    }
    char *text = xmalloc(len + 6);
    memcpy(text, "Echo: ", 6);
    memcpy(text + 6, msg, len);
    send_result(id, text_result_len(text, len + 6, false));
    free(text);
}

TOOL(tool_sleep)
{
    int64_t ms = arg_int(args, "ms", 0, DAY_MS);
    const char *msg = arg_str(args, "message", NULL);
    struct job *j = job_new(JOB_SLEEP, id, now_ms() + ms);
    if (msg) {
        j->text = strdup(msg);
    } else {
        j->text = xmalloc(48);
        snprintf(j->text, 48, "slept %" PRId64 " ms", ms);
    }
    if (!j->text)
        oom();
}

TOOL(tool_progress)
{
    json_object *meta, *token = NULL;
    struct job *j = job_new(JOB_PROGRESS, id, 0);
    j->steps = arg_int(args, "steps", 3, 1000000);
    j->interval = arg_int(args, "intervalMs", 100, DAY_MS);
    j->due = now_ms() + j->interval;
    if (json_object_object_get_ex(params, "_meta", &meta) &&
        json_object_is_type(meta, json_type_object) &&
        json_object_object_get_ex(meta, "progressToken", &token) &&
        (json_object_is_type(token, json_type_string) ||
         json_object_is_type(token, json_type_int)))
        j->token = json_object_get(token);
    if (j->steps == 0) {
        answer_text(id, "progress: 0 steps done");
        job_remove(j);
    }
}

TOOL(tool_crash)
{
    int sig = (int)arg_int(args, "signal", 0, 64);
    int64_t after = arg_int(args, "afterMs", 0, DAY_MS);
    if (after == 0)
        crash(sig);
    job_new(JOB_CRASH, id, now_ms() + after)->sig = sig;
}

TOOL(tool_hang)
{
}

TOOL(tool_freeze)
{
    for (;;)
        pause();
}

TOOL(tool_garbage)
{
    size_t len;
    const char *line = arg_str(args, "line", &len);
    if (!line) {
        line = "this is not json";
        len = strlen(line);
    }
    write_line(1, line, len);
    answer_text(id, "garbage sent");
}

TOOL(tool_big)
{
    size_t n = (size_t)arg_int(args, "bytes", 0, BIG_BYTES_MAX);
    char *text = xmalloc(n);
    memset(text, 'x', n);
    send_result(id, text_result_len(text, n, false));
    free(text);
}

TOOL(tool_stderr)
{
    int64_t line_len = arg_int(args, "lineLength", 100, BIG_BYTES_MAX);
    int64_t total;
    char done[64];
    if (line_len < 1)
        line_len = 1;
    if (arg(args, "bytes"))
        total = arg_int(args, "bytes", 0, BIG_BYTES_MAX);
    else
        total = arg_int(args, "lines", 0, BIG_BYTES_MAX) * line_len;
    if (total > BIG_BYTES_MAX)
        total = BIG_BYTES_MAX;
    char *line = xmalloc((size_t)line_len);
    memset(line, 'e', (size_t)line_len);
    for (int64_t left = total; left > 0;) {
        int64_t n = left < line_len ? left : line_len;
        write_line(2, line, (size_t)n - 1);
        left -= n;
    }
    free(line);
    snprintf(done, sizeof(done), "wrote %" PRId64 " bytes to stderr", total);
    answer_text(id, done);
}

TOOL(tool_error)
{
    json_object *code = arg(args, "code");
    const char *msg = arg_str(args, "message", NULL);
    send_error(id, is_number(code) ? json_object_get_int64(code) : -32000,
               msg ? msg : "fake failure");
}

TOOL(tool_raw)
{
    size_t len;
    const char *result = arg_str(args, "result", &len);
    char idbuf[32];
    struct iovec iov[5];
    if (!result) {
        send_result(id, text_result("raw needs a string 'result'", true));
        return;
    }
    snprintf(idbuf, sizeof(idbuf), "%" PRId64, json_object_get_int64(id));
    static const char head[] = "{\"result\":", mid[] = ",\"jsonrpc\":\"2.0\",\"id\":";
    iov[0] = (struct iovec){ (void *)head, sizeof(head) - 1 };
    iov[1] = (struct iovec){ (void *)result, len };
    iov[2] = (struct iovec){ (void *)mid, sizeof(mid) - 1 };
    iov[3] = (struct iovec){ idbuf, strlen(idbuf) };
    iov[4] = (struct iovec){ (void *)"}\n", 2 };
    write_all(1, iov, 5);
}

TOOL(tool_iserror)
{
    send_result(id, text_result("tool failed", true));
}

TOOL(tool_unknownid)
{
    json_object *stray = must(json_object_new_int64(999999999));
    send_result(stray, text_result("response to an id never sent", false));
    json_object_put(stray);
    answer_text(id, "unknownid done");
}

TOOL(tool_badresponse)
{
    json_object *m = new_msg();
    add(m, "id", json_object_get(id));
    send_msg(m);
}

/* open_memstream keeps the joining code short; the text is freed by caller. */
static void answer_stream(json_object *id, char *text, size_t len)
{
    send_result(id, text_result_len(text, len, false));
    free(text);
}

TOOL(tool_env)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        oom();
    for (char **e = environ; *e; e++)
        fprintf(f, "%s%s", e == environ ? "" : "\n", *e);
    fclose(f);
    answer_stream(id, text, len);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

TOOL(tool_fds)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int fds[4096];
    size_t n = 0;
    char *text = NULL;
    size_t len = 0;
    if (!d) {
        send_result(id, text_result("cannot open /proc/self/fd", true));
        return;
    }
    while ((de = readdir(d)) && n < sizeof(fds) / sizeof(fds[0])) {
        if (de->d_name[0] == '.')
            continue;
        int fd = atoi(de->d_name);
        if (fd != dirfd(d))
            fds[n++] = fd;
    }
    closedir(d);
    qsort(fds, n, sizeof(fds[0]), cmp_int);
    FILE *f = open_memstream(&text, &len);
    if (!f)
        oom();
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s%d", i ? " " : "", fds[i]);
    fclose(f);
    answer_stream(id, text, len);
}

TOOL(tool_ask)
{
    const char *method = arg_str(args, "method", NULL);
    json_object *p = arg(args, "params");
    if (!method) {
        send_result(id, text_result("ask needs a string 'method'", true));
        return;
    }
    struct job *j = job_new(JOB_ASK, id, -1);
    j->ask_id = g.next_ask_id++;
    json_object *m = new_msg();
    add(m, "id", must(json_object_new_int64(j->ask_id)));
    add(m, "method", must(json_object_new_string(method)));
    if (p && json_object_is_type(p, json_type_object))
        add(m, "params", json_object_get(p));
    send_msg(m);
}

TOOL(tool_list_changed)
{
    json_object *m = new_msg();
    g.late_tool = true;
    add(m, "method", must(json_object_new_string("notifications/tools/list_changed")));
    send_msg(m);
    answer_text(id, "tools changed");
}

#define NO_ARGS "{\"type\":\"object\",\"properties\":{}}"
#define SCHEMA(props, req) \
    "{\"type\":\"object\",\"properties\":{" props "},\"required\":[" req "]}"
#define NUM(k) "\"" k "\":{\"type\":\"number\"}"
#define STR(k) "\"" k "\":{\"type\":\"string\"}"

static const struct tool {
    const char *name, *description, *schema;
    tool_fn *fn;
    bool late;              /* listed and callable only after list_changed */
} tools[] = {
    { "echo", "Echoes back the message", SCHEMA(STR("message"), "\"message\""), tool_echo, false },
    { "sleep", "Answers after ms milliseconds", SCHEMA(NUM("ms") "," STR("message"), "\"ms\""), tool_sleep, false },
    { "progress", "Sends steps progress notifications, intervalMs apart", SCHEMA(NUM("steps") "," NUM("intervalMs"), ""), tool_progress, false },
    { "crash", "Exits without answering", SCHEMA(NUM("signal") "," NUM("afterMs"), ""), tool_crash, false },
    { "hang", "Never answers", NO_ARGS, tool_hang, false },
    { "freeze", "Stops the whole process forever", NO_ARGS, tool_freeze, false },
    { "garbage", "Writes a non-JSON line to stdout, then answers", SCHEMA(STR("line"), ""), tool_garbage, false },
    { "big", "Returns bytes 'x' characters", SCHEMA(NUM("bytes"), "\"bytes\""), tool_big, false },
    { "stderr", "Writes bytes (or lines) to stderr, then answers", SCHEMA(NUM("bytes") "," NUM("lines") "," NUM("lineLength"), ""), tool_stderr, false },
    { "error", "Answers with a JSON-RPC error", SCHEMA(NUM("code") "," STR("message"), ""), tool_error, false },
    { "iserror", "Answers with isError:true", NO_ARGS, tool_iserror, false },
    { "raw", "Answers with the result given, pasted as it stands", SCHEMA(STR("result"), "\"result\""), tool_raw, false },
    { "unknownid", "Sends a response for an id never sent, then answers", NO_ARGS, tool_unknownid, false },
    { "badresponse", "Answers with neither result nor error", NO_ARGS, tool_badresponse, false },
    { "env", "Returns the environment", NO_ARGS, tool_env, false },
    { "fds", "Returns the open file descriptors", NO_ARGS, tool_fds, false },
    { "ask", "Sends a request to the client and returns its answer", SCHEMA(STR("method") ",\"params\":{\"type\":\"object\"}", "\"method\""), tool_ask, false },
    { "list_changed", "Adds late_tool and sends notifications/tools/list_changed", NO_ARGS, tool_list_changed, false },
    { "late_tool", "Echoes back the message (appears after list_changed)", SCHEMA(STR("message"), "\"message\""), tool_echo, true },
};
#define N_TOOLS (sizeof(tools) / sizeof(tools[0]))

static bool tool_visible(const struct tool *t)
{
    return !t->late || g.late_tool;
}

static json_object *tool_json(const struct tool *t)
{
    json_object *o = must(json_object_new_object());
    add(o, "name", must(json_object_new_string(t->name)));
    add(o, "description", must(json_object_new_string(t->description)));
    add(o, "inputSchema", must(json_tokener_parse(t->schema)));
    return o;
}

/* Cursors are "page:<index of the first tool>"; anything else is -32602. */
static void tools_list(json_object *id, json_object *params)
{
    const struct tool *visible[N_TOOLS];
    size_t n = 0, start = 0, end;
    json_object *cur = NULL;
    for (size_t i = 0; i < N_TOOLS; i++)
        if (tool_visible(&tools[i]))
            visible[n++] = &tools[i];
    if (g.page_size > 0 && params &&
        json_object_object_get_ex(params, "cursor", &cur)) {
        const char *s = json_object_get_string(cur);
        char *endp = NULL;
        unsigned long v = 0;
        errno = 0;
        if (json_object_is_type(cur, json_type_string) && strncmp(s, "page:", 5) == 0)
            v = strtoul(s + 5, &endp, 10);
        if (!endp || errno || *endp || endp == s + 5 || v >= n) {
            send_error(id, -32602, "Invalid cursor");
            return;
        }
        start = v;
    }
    end = g.page_size > 0 && start + (size_t)g.page_size < n ? start + (size_t)g.page_size : n;
    json_object *r = must(json_object_new_object()), *arr = must(json_object_new_array());
    for (size_t i = start; i < end; i++)
        push(arr, tool_json(visible[i]));
    add(r, "tools", arr);
    if (end < n) {
        char next[32];
        snprintf(next, sizeof(next), "page:%zu", end);
        add(r, "nextCursor", must(json_object_new_string(next)));
    }
    send_result(id, r);
}

static void tools_call(json_object *id, json_object *params)
{
    json_object *name, *args = NULL;
    g.calls_seen++;
    if (g.crash_after > 0 && g.calls_seen >= g.crash_after)
        _exit(3);
    if (!params || !json_object_object_get_ex(params, "name", &name) ||
        !json_object_is_type(name, json_type_string)) {
        send_error(id, -32603, "Invalid params: expected string at params.name");
        return;
    }
    if (json_object_object_get_ex(params, "arguments", &args) &&
        !json_object_is_type(args, json_type_object))
        args = NULL;
    for (size_t i = 0; i < N_TOOLS; i++) {
        if (tool_visible(&tools[i]) && strcmp(tools[i].name, json_object_get_string(name)) == 0) {
            tools[i].fn(id, args, params);
            return;
        }
    }
    char msg[512];
    snprintf(msg, sizeof(msg), "MCP error -32602: Tool %s not found", json_object_get_string(name));
    send_result(id, text_result(msg, true));
}

/* --- protocol ------------------------------------------------------------ */

static void initialize(json_object *id, json_object *params)
{
    static const char *const versions[] = { "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05" };
    const char *want = arg_str(params, "protocolVersion", NULL), *version = versions[0];
    if (g.no_init)
        return;
    for (size_t i = 0; want && i < sizeof(versions) / sizeof(versions[0]); i++)
        if (strcmp(want, versions[i]) == 0)
            version = versions[i];
    json_object *r = must(json_object_new_object());
    json_object *caps = must(json_object_new_object()), *t = must(json_object_new_object());
    json_object *info = must(json_object_new_object());
    add(t, "listChanged", must(json_object_new_boolean(1)));
    add(caps, "tools", t);
    add(info, "name", must(json_object_new_string("fake-mcp")));
    add(info, "version", must(json_object_new_string("1.0.0")));
    add(r, "protocolVersion", must(json_object_new_string(version)));
    add(r, "capabilities", caps);
    add(r, "serverInfo", info);
    send_result(id, r);
}

static void handle_request(const char *method, json_object *id, json_object *params)
{
    if (strcmp(method, "initialize") == 0)
        initialize(id, params);
    else if (strcmp(method, "ping") == 0)
        send_result(id, must(json_object_new_object()));
    else if (strcmp(method, "tools/list") == 0)
        tools_list(id, params);
    else if (strcmp(method, "tools/call") == 0)
        tools_call(id, params);
    else
        send_error(id, -32601, "Method not found");
}

static void handle_notification(const char *method, json_object *params)
{
    json_object *rid;
    if (strcmp(method, "notifications/cancelled") != 0 || g.ignore_cancel || !params ||
        !json_object_object_get_ex(params, "requestId", &rid))
        return;
    /* json_object_equal compares types too: 7 does not cancel "7" (as the SDK). */
    for (struct job **pp = &g.jobs; *pp;) {
        struct job *j = *pp;
        if (json_object_equal(j->id, rid)) {
            *pp = j->next;
            job_free(j);
        } else {
            pp = &j->next;
        }
    }
}

/* A client's answer to one of our server->client requests. */
static void handle_response(json_object *msg, json_object *id)
{
    if (!json_object_is_type(id, json_type_int))
        return;
    for (struct job *j = g.jobs; j; j = j->next) {
        if (j->kind == JOB_ASK && j->ask_id == json_object_get_int64(id)) {
            answer_text(j->id, json_object_to_json_string_ext(
                msg, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
            job_remove(j);
            return;
        }
    }
}

static void handle_line(const char *line, size_t len)
{
    json_tokener *tok;
    json_object *msg, *v, *id = NULL, *params = NULL;
    const char *method = NULL;
    bool has_id;

    if (len && line[len - 1] == '\r')
        len--;
    if (len == 0)
        return;
    if (len > LINE_BYTES_MAX) {
        fprintf(stderr, "fake-mcp: dropped a %zu-byte input line\n", len);
        return;
    }
    tok = json_tokener_new_ex(JSON_DEPTH);
    if (!tok)
        oom();
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    msg = json_tokener_parse_ex(tok, line, (int)len);
    if (msg && json_tokener_get_error(tok) == json_tokener_success) {
        /* JSON.parse allows trailing whitespace and nothing else. */
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
            if (!strchr(" \t\r\n", line[i]))
                goto out;
    } else {
        goto out;
    }
    if (!json_object_is_type(msg, json_type_object) ||
        !json_object_object_get_ex(msg, "jsonrpc", &v) ||
        !json_object_is_type(v, json_type_string) || strcmp(json_object_get_string(v), "2.0") != 0)
        goto out;
    if (json_object_object_get_ex(msg, "method", &v)) {
        if (!json_object_is_type(v, json_type_string))
            goto out;
        method = json_object_get_string(v);
    }
    has_id = json_object_object_get_ex(msg, "id", &id);
    if (has_id && !json_object_is_type(id, json_type_int) && !json_object_is_type(id, json_type_string))
        goto out;       /* null and fractional ids are dropped, like the SDK */
    if (json_object_object_get_ex(msg, "params", &params) &&
        !json_object_is_type(params, json_type_object))
        goto out;
    if (method && has_id)
        handle_request(method, id, params);
    else if (method)
        handle_notification(method, params);
    else if (has_id && (json_object_object_get_ex(msg, "result", NULL) ||
                        json_object_object_get_ex(msg, "error", NULL)))
        handle_response(msg, id);
out:
    json_object_put(msg);
    json_tokener_free(tok);
}

/* --- main loop ------------------------------------------------------------ */

struct inbuf {
    char *p;
    size_t len, cap, scanned;
    bool discarding;    /* inside a line already known to be too long */
};

/* Reads once; returns false on EOF. */
static bool read_input(struct inbuf *in)
{
    if (in->cap - in->len < READ_CHUNK) {
        in->cap = in->cap ? in->cap * 2 : 4 * READ_CHUNK;
        if (in->cap > LINE_BYTES_MAX + 2 * READ_CHUNK)
            in->cap = LINE_BYTES_MAX + 2 * READ_CHUNK;
        in->p = realloc(in->p, in->cap);
        if (!in->p)
            oom();
    }
    ssize_t r = read(0, in->p + in->len, in->cap - in->len);
    if (r < 0)
        return errno == EINTR || errno == EAGAIN;
    if (r == 0)
        return false;
    in->len += (size_t)r;

    size_t start = 0;
    char *nl;
    while ((nl = memchr(in->p + in->scanned, '\n', in->len - in->scanned))) {
        size_t end = (size_t)(nl - in->p);
        if (!in->discarding)
            handle_line(in->p + start, end - start);
        in->discarding = false;
        start = in->scanned = end + 1;
    }
    memmove(in->p, in->p + start, in->len - start);
    in->len -= start;
    in->scanned = in->len;
    if (in->len > LINE_BYTES_MAX || (in->discarding && in->len)) {
        if (!in->discarding)
            fprintf(stderr, "fake-mcp: dropping an input line over %u bytes\n", LINE_BYTES_MAX);
        in->discarding = true;
        in->len = in->scanned = 0;
    }
    return true;
}

static long parse_num(const char *flag, const char *s)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || *end || end == s || v < 0) {
        fprintf(stderr, "fake-mcp: %s needs a non-negative number\n", flag);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    const char *pid_file = NULL, *banner = NULL;
    long slow_start = 0, exit_code = -1;
    bool garbage = false;
    struct inbuf in = { 0 };

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-init") == 0)
            g.no_init = true;
        else if (strcmp(a, "--ignore-cancel") == 0)
            g.ignore_cancel = true;
        else if (strcmp(a, "--garbage-at-start") == 0)
            garbage = true;
        else if (strcmp(a, "--slow-start") == 0)
            slow_start = parse_num(a, next), i++;
        else if (strcmp(a, "--exit-at-start") == 0)
            exit_code = parse_num(a, next), i++;
        else if (strcmp(a, "--crash-after") == 0)
            g.crash_after = parse_num(a, next), i++;
        else if (strcmp(a, "--page-size") == 0)
            g.page_size = parse_num(a, next), i++;
        else if (strcmp(a, "--stderr-banner") == 0 && next)
            banner = next, i++;
        else if (strcmp(a, "--pid-file") == 0 && next)
            pid_file = next, i++;
        else {
            fprintf(stderr, "fake-mcp: unknown or incomplete option '%s'\n", a);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);   /* a vanished reader is a write error, see write_all */

    if (pid_file) {
        FILE *f = fopen(pid_file, "w");
        if (!f || fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0) {
            fprintf(stderr, "fake-mcp: cannot write '%s'\n", pid_file);
            return 2;
        }
    }
    if (banner)
        fprintf(stderr, "%s\n", banner);
    if (exit_code >= 0)
        exit((int)exit_code);
    if (garbage)
        write_line(1, "fake-mcp garbage at start", 25);
    if (slow_start > 0)
        sleep_ms(slow_start);

    g.stdin_open = true;
    for (;;) {
        struct job *t = next_timer();
        if (!g.stdin_open && !t)
            break;      /* nothing left that could ever produce output */
        int timeout = -1;
        if (t) {
            int64_t d = t->due - now_ms();
            timeout = d < 0 ? 0 : d > INT32_MAX ? INT32_MAX : (int)d;
        }
        struct pollfd p = { .fd = 0, .events = POLLIN };
        int n = poll(&p, g.stdin_open ? 1 : 0, timeout);
        if (n < 0 && errno != EINTR) {
            perror("fake-mcp: poll");
            return 1;
        }
        if (n > 0 && p.revents)
            g.stdin_open = read_input(&in);
        run_timers();
    }

    while (g.jobs) {
        struct job *j = g.jobs;
        g.jobs = j->next;
        job_free(j);
    }
    free(in.p);
    return 0;
}
