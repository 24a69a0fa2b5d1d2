/* hub_pins.c - the hub's side of tool-definition pinning (pins.h).
 *
 * A server's tool list, once complete and filtered by the config's "tools"
 * allow-list, is kept whole in s->tools_all; s->tools is what clients are
 * served.  With gateway.toolPinning "enforce" that is the pinned subset;
 * with "warn" or "off" it is the whole list.  Approval happens in another
 * process (mcpgw tools approve) or through mcpgw_hub_approve_tools(), so a
 * listing or a call that meets a withheld tool first looks whether the pins
 * file changed (one stat) and judges the list again.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "hub_internal.h"
#include "log.h"
#include "pins.h"

static mcpgw_pins *hub_pins(mcpgw_hub *hub)
{
    char path[4096];

    if (hub->pins)
        return hub->pins;
    if (snprintf(path, sizeof(path), "%s/tool-pins.json", hub->conf->state_dir) >=
        (int)sizeof(path))
        return NULL;
    if (mcpgw_pins_open(path, &hub->pins) < 0)
        hub->pins = NULL;
    return hub->pins;
}

static const char *tool_name(json_object *t)
{
    json_object *n;

    return json_object_object_get_ex(t, "name", &n) && json_object_is_type(n, json_type_string)
           ? json_object_get_string(n) : NULL;
}

/* Judge s->tools_all and set s->tools.  quiet: a re-judgement after a
 * pins-file change, which logs only what changed its verdict. */
static void judge(struct srv *s, bool quiet)
{
    enum mcpgw_tool_pinning mode = s->hub->conf->tool_pinning;
    size_t n = json_object_array_length(s->tools_all);
    enum mcpgw_pin_verdict *v = NULL;
    json_object *served = NULL;
    mcpgw_pins *pins;
    bool first = false;
    char err[512];
    int rc;

    if (mode == MCPGW_PINNING_OFF) {
        json_object_put(s->tools);
        s->tools = json_object_get(s->tools_all);
        return;
    }
    pins = hub_pins(s->hub);
    v = calloc(n ? n : 1, sizeof(*v));
    if (!pins || !v) {
        free(v);
        mcpgw_log_error(COMPONENT, "server '%s': cannot check tool pins: out of memory",
                        s->conf->id);
        json_object_put(s->tools);
        s->tools = mode == MCPGW_PINNING_ENFORCE ? json_object_new_array()
                                                 : json_object_get(s->tools_all);
        return;
    }
    err[0] = '\0';
    rc = mcpgw_pins_check(pins, s->conf->id, s->tools_all, v, &first, err, sizeof(err));
    if (rc < 0) {
        /* No verdict: in enforce mode nothing unverified is served.  Said
         * once per list, not at every call that meets a withheld tool. */
        if (!quiet)
            mcpgw_log_error(COMPONENT, "server '%s': cannot check tool pins: %s%s", s->conf->id,
                            err, mode == MCPGW_PINNING_ENFORCE ? "; withholding every tool" : "");
        for (size_t i = 0; i < n; i++)
            v[i] = MCPGW_PIN_NEW;
        quiet = true;
    }
    if (first)
        mcpgw_log_info(COMPONENT, "server '%s': pinned %zu tools on first use", s->conf->id, n);
    served = mode == MCPGW_PINNING_ENFORCE ? json_object_new_array() : NULL;
    for (size_t i = 0; i < n; i++) {
        json_object *t = json_object_array_get_idx(s->tools_all, i);
        const char *name = tool_name(t);

        if (v[i] == MCPGW_PIN_MATCH) {
            if (served && json_object_array_add(served, json_object_get(t)) < 0)
                json_object_put(t);
            continue;
        }
        if (quiet)
            continue;
        mcpgw_log_warn(COMPONENT, "server '%s' tool '%.128s' %s: %s 'mcpgw tools approve %s "
                       "%.128s'", s->conf->id, name ? name : "?",
                       v[i] == MCPGW_PIN_CHANGED ? "changed since it was approved"
                                                 : "is new and not approved",
                       mode == MCPGW_PINNING_ENFORCE ? "withheld until"
                                                     : "served (toolPinning is warn); approve with",
                       s->conf->id, name ? name : "");
    }
    free(v);
    json_object_put(s->tools);
    s->tools = served ? served : json_object_get(s->tools_all);
}

void mcpgw__srv_pin_tools(struct srv *s)
{
    judge(s, false);
}

/* Whether tool is in the server's list but withheld; looks at the pins
 * file again first, so an approval made meanwhile counts at once. */
bool mcpgw__srv_tool_held(struct srv *s, const char *tool)
{
    if (!s->tools_all || s->tools == s->tools_all || !mcpgw__tools_have(s->tools_all, tool))
        return false;
    judge(s, true);
    return !mcpgw__srv_tool_listed(s, tool);
}

void mcpgw__srv_pins_refresh(struct srv *s)
{
    if (s->tools_all && s->tools != s->tools_all)
        judge(s, true);
}

json_object *mcpgw_hub_tools_unpinned(mcpgw_hub *hub, const char *server)
{
    struct srv *s = mcpgw__hub_find_srv(hub, server);

    return s && s->state == MCPGW_SERVER_READY ? s->tools_all : NULL;
}

int mcpgw_hub_approve_tools(mcpgw_hub *hub, const char *server, const char *const *names,
                            size_t nnames, size_t *napproved, char *err, size_t errlen)
{
    struct srv *s = mcpgw__hub_find_srv(hub, server);
    mcpgw_pins *pins;
    int rc;

    if (!s) {
        snprintf(err, errlen, "no server '%s' in the configuration", server);
        return MCPGW_EUNKNOWNSERVER;
    }
    if (!s->tools_all || s->state != MCPGW_SERVER_READY) {
        snprintf(err, errlen, "server '%s' has not listed its tools yet", server);
        return MCPGW_EUNAVAIL;
    }
    if (!(pins = hub_pins(hub))) {
        snprintf(err, errlen, "%s", mcpgw_strerror(-ENOMEM));
        return -ENOMEM;
    }
    rc = mcpgw_pins_approve(mcpgw_pins_path(pins), server, s->tools_all, names, nnames,
                            napproved, err, errlen);
    if (rc == 0)
        judge(s, true);
    return rc;
}
