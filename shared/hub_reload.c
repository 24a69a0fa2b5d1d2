/* hub_reload.c - a new config for a running hub, and the servers it retires.
 *
 * A reload builds the new server table first (every allocation that can
 * fail happens before anything changes, so a refused reload leaves the hub
 * as it was), then swaps it in, then retires what the new config no longer
 * has in that form.  A retired server is no longer found by id, which is
 * what lets a changed server's successor take the id at once while the old
 * process finishes its calls.  A retired server is freed only once its
 * process is reaped and it holds nothing: an epoll event of the current
 * turn may still name its watches (a pidfd and a stdout hang-up arrive
 * together), so freeing waits for the end of the outermost mcpgw_hub_run(),
 * or happens at once when the reload itself runs outside one.
 *
 * Superseded configs are kept until mcpgw_hub_free(), not freed when the
 * last retired server lets go of one: other threads borrow the config
 * without telling us (the REST routes of mcpgw-wsd and mcpgw-fcgi read
 * mcpgw_hub_conf() and health ids on their workers), and a pointer that
 * outlives every server using it must still not dangle.  The cost is one
 * config's memory per reload.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub_internal.h"
#include "limits.h"
#include "log.h"

/* ---- what counts as the same server ---------------------------------------- */

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool strv_eq(char *const *a, size_t na, char *const *b, size_t nb)
{
    if (na != nb || !a != !b)
        return false;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i]) != 0)
            return false;
    return true;
}

/* Every setting of struct mcpgw_conf_server: a field added there must be
 * compared here, or a change to it would keep the old process running.
 * The size check makes the build say so (on the 64-bit targets we build). */
#if defined(__x86_64__) || defined(__aarch64__)
_Static_assert(sizeof(struct mcpgw_conf_server) == 152,
               "struct mcpgw_conf_server changed: compare the new field in server_same()");
#endif

static bool server_same(const struct mcpgw_conf_server *x, const struct mcpgw_conf_server *y)
{
    if (strcmp(x->id, y->id) != 0 || strcmp(x->command, y->command) != 0 ||
        !strv_eq(x->args, x->nargs, y->args, y->nargs) || !str_eq(x->cwd, y->cwd) ||
        x->call_timeout_ms != y->call_timeout_ms || x->start_timeout_ms != y->start_timeout_ms ||
        x->max_inflight != y->max_inflight || x->restart_policy != y->restart_policy ||
        x->restart_initial_ms != y->restart_initial_ms || x->restart_max_ms != y->restart_max_ms ||
        x->restart_reset_ms != y->restart_reset_ms || x->enabled != y->enabled ||
        !str_eq(x->user, y->user) || x->max_open_files != y->max_open_files ||
        x->max_memory_bytes != y->max_memory_bytes || x->max_processes != y->max_processes ||
        x->max_cpu_seconds != y->max_cpu_seconds ||
        !strv_eq(x->tools, x->ntools, y->tools, y->ntools) || x->nenv != y->nenv)
        return false;
    for (size_t i = 0; i < x->nenv; i++)
        if (strcmp(x->env[i].name, y->env[i].name) != 0 ||
            strcmp(x->env[i].value, y->env[i].value) != 0)
            return false;
    return true;
}

static struct srv *find_in(struct srv **v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i]->conf->id, id) == 0)
            return v[i];
    return NULL;
}

/* ---- retiring -------------------------------------------------------------- */

static void retire(mcpgw_hub *hub, struct srv *s, bool removed)
{
    char msg[200];

    s->retired = true;
    s->retired_next = hub->retired;
    hub->retired = s;
    mcpgw__theap_del(&hub->timers, &s->t_retry);
    mcpgw__theap_del(&hub->timers, &s->t_stable);
    if (removed) {
        snprintf(msg, sizeof(msg), "server '%s' was removed by a reload of the configuration",
                 s->conf->id);
        mcpgw__srv_fail_all(s, MCPGW_EUNAVAIL, msg);
        mcpgw__srv_fail_waiters(s, MCPGW_EUNAVAIL, msg);
        if (s->child.pid > 0) {
            mcpgw_log_info(COMPONENT, "server '%s' removed by the reload: stopping it (pid %d)",
                           s->conf->id, (int)s->child.pid);
            mcpgw__srv_flush(s);
            mcpgw__srv_begin_stop(s, false);
        } else {
            mcpgw_log_info(COMPONENT, "server '%s' removed by the reload", s->conf->id);
        }
        return;
    }
    if (s->child.pid > 0 && (s->inflight || s->waiters) && s->stop_phase == 0) {
        mcpgw_log_info(COMPONENT, "server '%s' changed by the reload: its old process (pid %d) "
                       "may finish %u calls in flight within %d ms", s->conf->id,
                       (int)s->child.pid, s->inflight, hub->reload_grace_ms);
        mcpgw__hub_timer_arm(hub, &s->t_drain, mcpgw__mono_ms() + hub->reload_grace_ms);
        return;
    }
    mcpgw_log_info(COMPONENT, "server '%s' changed by the reload%s", s->conf->id,
                   s->child.pid > 0 ? ": stopping its old process" : "");
    if (s->child.pid > 0 && s->stop_phase == 0) {
        mcpgw__srv_flush(s);
        mcpgw__srv_begin_stop(s, false);
    }
}

void mcpgw__srv_on_drain_timer(struct mcpgw__timer *t)
{
    struct srv *s = (struct srv *)((char *)t - offsetof(struct srv, t_drain));
    char msg[200];

    if (s->child.pid <= 0 || s->stop_phase)
        return;
    snprintf(msg, sizeof(msg), "server '%s' was changed by a reload of the configuration and its "
             "old process did not finish the call within %d ms", s->conf->id,
             s->hub->reload_grace_ms);
    mcpgw_log_warn(COMPONENT, "server '%s': %u calls still in flight on the process the reload "
                   "replaced; failing them and stopping it", s->conf->id, s->inflight);
    mcpgw__srv_fail_all(s, MCPGW_EUNAVAIL, msg);
    mcpgw__srv_fail_waiters(s, MCPGW_EUNAVAIL, msg);
    mcpgw__srv_flush(s);
    mcpgw__srv_begin_stop(s, false);
}

void mcpgw__hub_sweep_retired(mcpgw_hub *hub, bool free_dead)
{
    struct srv **pp = &hub->retired;

    while (*pp) {
        struct srv *s = *pp;
        bool holds = s->inflight || s->waiters;

        if (s->child.pid > 0) {
            /* A changed server whose old process finished its work. */
            if (!holds && s->stop_phase == 0) {
                mcpgw__theap_del(&hub->timers, &s->t_drain);
                mcpgw_log_debug(COMPONENT, "server '%s': the replaced process finished its "
                                "calls; stopping it", s->conf->id);
                mcpgw__srv_flush(s);
                mcpgw__srv_begin_stop(s, false);
            }
        } else if (free_dead && !holds) {
            *pp = s->retired_next;
            mcpgw__srv_free(s);
            continue;
        }
        pp = &s->retired_next;
    }
}

/* ---- the reload ------------------------------------------------------------- */

/* The one state event of a removed server: its last health, as "removed". */
static void observe_removed(struct srv *s)
{
    mcpgw_hub *hub = s->hub;
    struct mcpgw_server_health h;
    struct mcpgw_hub_event ev = { .kind = MCPGW_HUB_SERVER_STATE, .exit_status = -1 };

    if (!hub->observer)
        return;
    mcpgw__srv_fill_health(s, &h);
    h.state = MCPGW_SERVER_REMOVED;
    h.inflight = 0;
    h.ntools = 0;
    h.protocol_version = NULL;
    snprintf(h.last_error, sizeof(h.last_error), "removed by a reload of the configuration");
    ev.health = &h;
    ev.server = s->conf->id;
    hub->observer(hub->observer_ud, &ev);
}

static void log_gateway_changes(mcpgw_hub *hub, const struct mcpgw_conf *old,
                                const struct mcpgw_conf *conf)
{
    if (!str_eq(old->state_dir, conf->state_dir))
        mcpgw_log_warn(COMPONENT, "gateway.stateDir changed to '%s': the MCP server process "
                       "slots stay in '%s' until a restart", conf->state_dir, hub->slots_dir);
    if (old->max_server_processes != conf->max_server_processes)
        mcpgw_log_info(COMPONENT, "gateway.maxServerProcesses is now %d (was %d); it applies to "
                       "the next server starts", conf->max_server_processes,
                       old->max_server_processes);
    if (old->limits.max_message_bytes != conf->limits.max_message_bytes)
        mcpgw_log_info(COMPONENT, "gateway.limits.maxMessageBytes is now %zu (was %zu) for new "
                       "calls; running servers read with the old limit until they restart",
                       conf->limits.max_message_bytes, old->limits.max_message_bytes);
}

int mcpgw_hub_reload(mcpgw_hub *hub, struct mcpgw_conf *conf, struct mcpgw_hub_reload_result *res)
{
    struct mcpgw_hub_reload_result r = { 0 };
    size_t n, old_n = hub->nsrv;
    struct srv **news = NULL, **old_srvs = hub->srvs;
    struct conf_keep *keep = NULL;
    json_tokener *tok = NULL;
    bool *fresh = NULL, *kept = NULL;
    struct mcpgw_conf *old = hub->conf;
    int rc = -ENOMEM;

    if (!conf)
        return -EINVAL;
    if (hub->closing)
        return MCPGW_ESHUTDOWN;
    n = conf->nservers;
    news = calloc(n ? n : 1, sizeof(*news));
    fresh = calloc(n ? n : 1, sizeof(*fresh));
    kept = calloc(old_n ? old_n : 1, sizeof(*kept));
    keep = calloc(1, sizeof(*keep));
    if (!news || !fresh || !kept || !keep)
        goto fail;
    if (conf->limits.max_json_depth != old->limits.max_json_depth) {
        if (!(tok = json_tokener_new_ex(conf->limits.max_json_depth)))
            goto fail;
        json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    }
    for (size_t j = 0; j < n; j++) {
        const struct mcpgw_conf_server *c = &conf->servers[j];
        struct srv *s = find_in(old_srvs, old_n, c->id);

        if (s && server_same(s->conf, c)) {
            news[j] = s;
            for (size_t i = 0; i < old_n; i++)
                kept[i] = kept[i] || old_srvs[i] == s;
            continue;
        }
        if (!(news[j] = mcpgw__srv_new(hub, c, conf->limits.max_message_bytes)))
            goto fail;
        fresh[j] = true;
    }

    /* Nothing can fail from here on. */
    for (size_t j = 0; j < n; j++)
        news[j]->conf = &conf->servers[j];
    hub->srvs = news;
    hub->nsrv = n;
    /* Other threads may read it (mcpgw_hub_conf()). */
    __atomic_store_n(&hub->conf, conf, __ATOMIC_RELEASE);
    if (tok) {
        json_tokener_free(hub->tok);
        hub->tok = tok;
    }
    log_gateway_changes(hub, old, conf);
    keep->conf = old;
    keep->next = hub->old_confs;
    hub->old_confs = keep;
    /* Callbacks run by retiring may start calls: they must already see the
     * new table, where a removed server is unknown. */
    for (size_t i = 0; i < old_n; i++) {
        struct srv *s = old_srvs[i];
        bool removed;

        if (kept[i]) {
            r.kept++;
            continue;
        }
        removed = !mcpgw_conf_server(conf, s->conf->id);
        if (removed) {
            r.removed++;
            observe_removed(s);
        } else {
            r.changed++;
        }
        retire(hub, s, removed);
    }
    for (size_t j = 0; j < n; j++) {
        if (!fresh[j])
            continue;
        if (!mcpgw_conf_server(old, news[j]->conf->id)) {
            r.added++;
            mcpgw_log_info(COMPONENT, "server '%s' added by the reload", news[j]->conf->id);
        }
        mcpgw__srv_observe(news[j], -1);
    }
    mcpgw_log_info(COMPONENT, "configuration reloaded: %u servers kept running as they were, "
                   "%u added, %u changed, %u removed", r.kept, r.added, r.changed, r.removed);
    free(old_srvs);
    free(fresh);
    free(kept);
    if (hub->run_depth == 0)
        mcpgw__hub_sweep_retired(hub, true);
    if (res)
        *res = r;
    return 0;
fail:
    for (size_t j = 0; news && fresh && j < n; j++)
        if (fresh[j])
            mcpgw__srv_free(news[j]);
    free(news);
    free(fresh);
    free(kept);
    free(keep);
    if (tok)
        json_tokener_free(tok);
    return rc;
}
