/* hub_internal.h - the hub's structures, shared by hub.c and hub_sync.c
 * (internal; tests may look inside). */
#ifndef MCPGW_HUB_INTERNAL_H
#define MCPGW_HUB_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "framer.h"
#include "hub.h"
#include "spawn.h"
#include "theap.h"

struct watch {
    void (*fn)(struct watch *w, uint32_t events);
};

struct tools_waiter {
    mcpgw_tools_cb cb;
    void *ud;
    struct tools_waiter *next;
};

struct srv;

struct mcpgw_call {
    struct srv *srv;
    uint64_t call_id;           /* hub-wide */
    uint64_t req_id;            /* JSON-RPC id on this server; 0 while queued */
    bool queued;
    struct mcpgw_call *prev, *next;     /* queue links while queued */
    struct mcpgw__timer timer;  /* the call's deadline */
    char *tool;
    char *args;                 /* serialised arguments, kept only while queued */
    size_t args_len;
    bool progress, result_text;
    char *caller, *client_call_id, *transport;
    mcpgw_call_cb cb;
    void *ud;
    int64_t started;            /* monotonic ms */
};

struct srv {
    mcpgw_hub *hub;
    const struct mcpgw_conf_server *conf;
    enum mcpgw_server_state state;
    unsigned gen;               /* bumped whenever the process is torn down */
    struct mcpgw__child child;
    int slot_fd;                /* holds a host-wide process slot; -1 if none */
    struct watch w_out, w_err, w_in, w_pid;
    bool in_armed, dirty;
    struct srv *dirty_next;
    struct mcpgw__framer fout, ferr;
    struct mcpgw_buf outq;
    size_t outq_off;
    struct mcpgw_call **slots;  /* sent calls by req_id & mask */
    size_t mask;
    uint64_t next_id;           /* never reset: ids are never reused */
    unsigned inflight;          /* queued + sent */
    unsigned text_inflight;     /* of those, calls with result_text */
    struct mcpgw_call *q_head, *q_tail;
    uint64_t init_id, list_id;  /* internal requests in flight, 0 if none */
    uint64_t ping_id;           /* liveness ping after a timeout, 0 if none */
    json_object *tools;         /* array served: filtered by config and pins; NULL until listed */
    json_object *tools_all;     /* filtered by config only (hub_pins.c); NULL until listed */
    json_object *tools_new;     /* being assembled across pages */
    unsigned list_pages;
    bool list_again;            /* list_changed came while a list was in flight */
    struct tools_waiter *waiters;
    struct mcpgw__timer t_start, t_retry, t_stop, t_stable, t_ping;
    int stop_phase;             /* 0, 1 stdin closed, 2 SIGTERM sent, 3 SIGKILL sent */
    bool failing;               /* the stop under way is a failure */
    unsigned failures;          /* consecutive, for back-off */
    unsigned restarts, starts;
    int64_t spawned_at;         /* monotonic */
    int64_t next_retry_wall;
    char proto[24];
    char last_error[160];
    int garbage;
    int64_t garbage_since;
    int64_t err_sec;
    unsigned err_lines, err_dropped;
    /* Taken out of service by mcpgw_hub_reload() (hub_reload.c): no longer
     * found by id, never restarted, its state no longer observed.  It
     * lives on hub->retired until its process is reaped and nothing it
     * held is left, then is freed at the end of a hub turn. */
    bool retired;
    struct srv *retired_next;
    struct mcpgw__timer t_drain;    /* a changed server's calls may finish until then */
};

/* A config replaced by a reload: kept until the hub is freed (hub_reload.c). */
struct conf_keep {
    struct mcpgw_conf *conf;
    struct conf_keep *next;
};

struct post {
    void (*fn)(mcpgw_hub *hub, void *ud);
    void *ud;
    struct post *next;
};

struct mcpgw_hub {
    struct mcpgw_conf *conf;    /* written on the loop thread only, atomically */
    struct srv **srvs;          /* in service, in config order; each its own
                                 * allocation, so a reload moves none */
    size_t nsrv;
    struct srv *retired;        /* taken out of service by a reload */
    struct conf_keep *old_confs;
    int reload_grace_ms;        /* MCPGW_RELOAD_GRACE; tests shorten it */
    unsigned run_depth;         /* nesting of mcpgw_hub_run() */
    int epfd, tfd, efd;
    struct watch w_timer, w_event;
    struct mcpgw__theap timers;
    int64_t armed_for;          /* deadline the timerfd is set to, 0 = unset */
    json_tokener *tok;
    uint64_t next_call_id;
    bool in_run;
    bool batch_writes;          /* mcpgw_hub_set_batching() */
    struct srv *dirty;          /* servers with output to flush at turn end */
    bool waiters_due;
    char *slots_dir;            /* <stateDir>/slots */
    struct mcpgw_pins *pins;    /* <stateDir>/tool-pins.json, opened when first needed */
    bool slots_warned;          /* said once that the cap cannot be kept */
    struct mcpgw_buf scratch;
    void (*observer)(void *ud, const struct mcpgw_hub_event *ev);
    void *observer_ud;
    /* cross-thread */
    pthread_mutex_t post_lock;
    struct post *posts, *posts_tail;
    bool closing;
    pthread_t thread;
    bool thread_running;
    bool bound;                 /* mcpgw_hub_bind_thread() named loop_thread */
    volatile bool thread_quit;
    pthread_t loop_thread;      /* valid while thread_running or bound */
};

#define COMPONENT "dispatch"

/* hub_pins.c: judge a complete tool list (s->tools_all) into s->tools;
 * whether a listed tool is withheld (looking at the pins file again
 * first); judge again if the pins file changed. */
void mcpgw__srv_pin_tools(struct srv *s);
/* hub.c: the server in service with this id, or NULL. */
struct srv *mcpgw__hub_find_srv(const mcpgw_hub *hub, const char *id);
/* hub_mcp.c: whether a tool array holds a tool of this name. */
bool mcpgw__tools_have(json_object *tools, const char *tool);
bool mcpgw__srv_tool_held(struct srv *s, const char *tool);
void mcpgw__srv_pins_refresh(struct srv *s);
#define SRV_OF(ptr, member) ((struct srv *)((char *)(ptr) - offsetof(struct srv, member)))

/* Sent calls sit in a slot table indexed by request id & mask. */
static inline void mcpgw__srv_slot_put(struct srv *s, struct mcpgw_call *c)
{
    s->slots[c->req_id & s->mask] = c;
}

static inline struct mcpgw_call *mcpgw__srv_slot_get(struct srv *s, uint64_t id)
{
    struct mcpgw_call *c = s->slots[id & s->mask];

    return c && c->req_id == id ? c : NULL;
}

/* hub.c: the loop, bookkeeping of calls */
void mcpgw__hub_stop_all(mcpgw_hub *hub);
/* A server in its first state for conf (borrowed: must outlive it), or
 * NULL on out of memory.  srv_free: every fd closed, every timer disarmed;
 * the process, if any, must already be reaped. */
struct srv *mcpgw__srv_new(mcpgw_hub *hub, const struct mcpgw_conf_server *conf,
                           size_t max_message_bytes);
void mcpgw__srv_free(struct srv *s);
void mcpgw__srv_observe(struct srv *s, int exit_status);
void mcpgw__srv_fill_health(const struct srv *s, struct mcpgw_server_health *h);
bool mcpgw__hub_on_loop_thread(const mcpgw_hub *hub);
void mcpgw__hub_timer_arm(mcpgw_hub *hub, struct mcpgw__timer *t, int64_t when);
void mcpgw__hub_watch_add(mcpgw_hub *hub, int fd, struct watch *w, uint32_t events);
void mcpgw__hub_close_fd(mcpgw_hub *hub, int *fd);
void mcpgw__srv_set_state(struct srv *s, enum mcpgw_server_state st, int exit_status);
uint64_t mcpgw__srv_next_id(struct srv *s);
void mcpgw__srv_queue_remove(struct srv *s, struct mcpgw_call *c);
/* Detach the call, run its DONE callback (and the observer), free it. */
void mcpgw__call_done(struct mcpgw_call *c, struct mcpgw_call_event *ev);
void mcpgw__call_fail(struct mcpgw_call *c, int status, const char *msg);
void mcpgw__srv_fail_all(struct srv *s, int sent_status, const char *msg);
void mcpgw__srv_fail_waiters(struct srv *s, int status, const char *msg);
void mcpgw__srv_notify_waiters(struct srv *s);

/* hub_proc.c: the process and its stdin */
void mcpgw__srv_mark_dirty(struct srv *s);
/* Make the hub's fd readable, so its loop runs a turn. */
void mcpgw__hub_wake(mcpgw_hub *hub);
void mcpgw__srv_flush(struct srv *s);
int mcpgw__srv_write_call(struct srv *s, struct mcpgw_call *c, const char *args, size_t args_len);
void mcpgw__srv_notify(struct srv *s, const char *method, const char *params);
void mcpgw__srv_cancel_request(struct srv *s, uint64_t id, const char *reason);
void mcpgw__srv_teardown_fds(struct srv *s);
void mcpgw__srv_begin_stop(struct srv *s, bool failing);
void mcpgw__srv_fail(struct srv *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void mcpgw__srv_lost(struct srv *s, const char *what);
void mcpgw__srv_start(struct srv *s);
void mcpgw__srv_on_stdin(struct watch *w, uint32_t events);
void mcpgw__srv_on_pidfd(struct watch *w, uint32_t events);
void mcpgw__srv_on_stop_timer(struct mcpgw__timer *t);
void mcpgw__srv_on_start_timer(struct mcpgw__timer *t);
void mcpgw__srv_on_retry_timer(struct mcpgw__timer *t);
void mcpgw__srv_on_stable_timer(struct mcpgw__timer *t);
void mcpgw__srv_on_ping_timer(struct mcpgw__timer *t);
/* A call timed out: make sure the server still answers at all. */
void mcpgw__srv_probe(struct srv *s);
void mcpgw__srv_probe_answered(struct srv *s);

/* hub_reload.c: retired servers */
/* Stop retired servers that hold nothing any more; with free_dead, free
 * those whose process is gone.  Only
 * where no epoll event of the turn can still name a server: outside
 * mcpgw_hub_run() or at the very end of the outermost one. */
void mcpgw__hub_sweep_retired(mcpgw_hub *hub, bool free_dead);
void mcpgw__srv_on_drain_timer(struct mcpgw__timer *t);

/* hub_mcp.c: the protocol */
bool mcpgw__srv_tool_listed(struct srv *s, const char *tool);
void mcpgw__srv_on_stdout(struct watch *w, uint32_t events);
void mcpgw__srv_on_stderr(struct watch *w, uint32_t events);

#endif
