/* hub_sync.c - the hub's own loop thread and the blocking call wrapper.
 *
 * A FastCGI responder's threads block in FCGX_Accept_r and cannot drive an
 * event loop; they hand work to the hub's thread with mcpgw_hub_post() and
 * wait on a condition variable.  A single-threaded CLI or CGI has no loop
 * thread at all: the wrapper then runs the hub's loop itself until done.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "err.h"
#include "hub_internal.h"

static void *loop_main(void *arg)
{
    mcpgw_hub *hub = arg;

    mcpgw_codec_thread_init(); /* every MCP server's answers are parsed here */
    while (!hub->thread_quit)
        mcpgw_hub_run(hub, -1);
    /* Children die with the thread that spawned them (PR_SET_PDEATHSIG):
     * stop them politely while this thread still lives. */
    mcpgw__hub_stop_all(hub);
    return NULL;
}

void mcpgw_hub_bind_thread(mcpgw_hub *hub)
{
    hub->loop_thread = pthread_self();
    hub->bound = true;
}

int mcpgw_hub_thread_start(mcpgw_hub *hub)
{
    int rc;

    if (hub->thread_running)
        return -EALREADY;
    hub->thread_quit = false;
    hub->thread_running = true;
    rc = pthread_create(&hub->thread, NULL, loop_main, hub);
    if (rc != 0) {
        hub->thread_running = false;
        return -rc;
    }
    hub->loop_thread = hub->thread;
    return 0;
}

static void quit_loop(mcpgw_hub *hub, void *ud)
{
    hub->thread_quit = true;
}

void mcpgw_hub_thread_stop(mcpgw_hub *hub)
{
    if (!hub->thread_running)
        return;
    if (mcpgw_hub_post(hub, quit_loop, NULL) < 0)
        hub->thread_quit = true;    /* closing already: the loop ends on its own */
    pthread_join(hub->thread, NULL);
    hub->thread_running = false;
}

struct sync_call {
    mcpgw_hub *hub;
    const char *server, *tool;
    json_object *args;
    const struct mcpgw_call_opts *opts;
    void (*progress)(void *ud, const struct mcpgw_call_event *ev);
    void *ud;
    /* results */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int status;
    json_object *result;
    bool is_error;
    char err[200];
};

static void sync_cb(mcpgw_call *call, const struct mcpgw_call_event *ev, void *ud)
{
    struct sync_call *sc = ud;

    if (ev->kind == MCPGW_CALL_PROGRESS) {
        if (sc->progress)
            sc->progress(sc->ud, ev);
        return;
    }
    pthread_mutex_lock(&sc->lock);
    sc->status = ev->status;
    sc->is_error = ev->is_error;
    if (ev->status != 0) {
        snprintf(sc->err, sizeof(sc->err), "%s", ev->error ? ev->error : mcpgw_strerror(ev->status));
    } else if (json_object_deep_copy(ev->result, &sc->result, NULL) != 0) {
        /* A copy, made here on the loop thread: the caller's thread must
         * not share reference counts with the hub's tree, and json-c's
         * counts are not atomic in Debian's build. */
        sc->status = -ENOMEM;
        sc->result = NULL;
        snprintf(sc->err, sizeof(sc->err), "out of memory copying the result");
    }
    sc->done = true;
    pthread_cond_signal(&sc->cond);
    pthread_mutex_unlock(&sc->lock);
}

static void sync_start(mcpgw_hub *hub, void *ud)
{
    struct sync_call *sc = ud;
    int rc = mcpgw_hub_call(hub, sc->server, sc->tool, sc->args, sc->opts, sync_cb, sc, NULL);

    if (rc < 0) {
        pthread_mutex_lock(&sc->lock);
        sc->status = rc;
        snprintf(sc->err, sizeof(sc->err), "%s", mcpgw_strerror(rc));
        sc->done = true;
        pthread_cond_signal(&sc->cond);
        pthread_mutex_unlock(&sc->lock);
    }
}

int mcpgw_hub_call_sync(mcpgw_hub *hub, const char *server, const char *tool,
                        json_object *args, const struct mcpgw_call_opts *opts,
                        void (*progress)(void *ud, const struct mcpgw_call_event *ev),
                        void *ud, json_object **result, bool *is_error,
                        char *err, size_t errlen)
{
    struct sync_call sc = {
        .hub = hub, .server = server, .tool = tool, .args = args, .opts = opts,
        .progress = progress, .ud = ud
    };
    int rc;

    pthread_mutex_init(&sc.lock, NULL);
    pthread_cond_init(&sc.cond, NULL);
    if (mcpgw__hub_on_loop_thread(hub)) {
        sync_start(hub, &sc);
        while (!sc.done) {
            rc = mcpgw_hub_run(hub, -1);
            if (rc < 0) {
                /* The loop itself broke: nothing will ever finish the call. */
                snprintf(sc.err, sizeof(sc.err), "event loop failed: %s", mcpgw_strerror(rc));
                sc.status = rc;
                break;
            }
        }
    } else {
        /* args is borrowed by the loop thread until the call is sent or
         * queued, which happens inside sync_start, before we can return. */
        rc = mcpgw_hub_post(hub, sync_start, &sc);
        if (rc < 0) {
            sc.status = rc;
            snprintf(sc.err, sizeof(sc.err), "%s", mcpgw_strerror(rc));
        } else {
            pthread_mutex_lock(&sc.lock);
            while (!sc.done)
                pthread_cond_wait(&sc.cond, &sc.lock);
            pthread_mutex_unlock(&sc.lock);
        }
    }
    pthread_cond_destroy(&sc.cond);
    pthread_mutex_destroy(&sc.lock);
    if (sc.status == 0) {
        *result = sc.result;
        if (is_error)
            *is_error = sc.is_error;
    } else {
        *result = NULL;
        if (err && errlen)
            snprintf(err, errlen, "%s", sc.err);
    }
    return sc.status;
}
