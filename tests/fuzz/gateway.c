/* gateway.c - the fuzz targets' gateway (gateway.h). */
#include "config.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "err.h"
#include "gateway.h"
#include "ticket.h"

static struct fuzz_gateway gw;
static bool made;

static void die(const char *what, const char *err)
{
    fprintf(stderr, "fuzz gateway: %s: %s\n", what, err);
    abort();
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void cleanup(void)
{
    if (gw.dir[0])
        nftw(gw.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct mcpgw_conf *make_conf(bool require_auth)
{
    char json[2048], path[128], err[512];
    struct mcpgw_conf *conf;

    snprintf(path, sizeof(path), "%s/tokens.json", gw.dir);
    snprintf(json, sizeof(json),
             "{\"gateway\":{\"stateDir\":\"%s/state\",\"tokenFile\":\"%s\",\"requireAuth\":%s,"
             "\"allowedOrigins\":[\"https://app.example\"],"
             "\"limits\":{\"maxMessageBytes\":65536,\"maxJsonDepth\":16},"
             "\"events\":{\"maxEvents\":6},"
             "\"sse\":{\"maxStreamMs\":1000,\"retryMs\":1500,\"maxStreams\":4}},"
             "\"mcpServers\":{"
             "\"srv\":{\"command\":\"%s/no-such-mcp-server\",\"tools\":[\"echo\",\"add\"],"
             "\"restart\":{\"initialDelayMs\":3600000,\"maxDelayMs\":3600000}},"
             "\"other\":{\"command\":\"%s/no-such-mcp-server\",\"callTimeoutMs\":1000,"
             "\"restart\":{\"initialDelayMs\":3600000,\"maxDelayMs\":3600000}},"
             "\"off\":{\"command\":\"/bin/false\",\"enabled\":false}}}",
             gw.dir, path, require_auth ? "true" : "false", gw.dir, gw.dir);
    if (mcpgw_conf_parse(json, strlen(json), "fuzz.json", gw.dir, &conf, err, sizeof(err)) < 0)
        die("config", err);
    /* Below the file's minimum, on purpose (gateway.h). */
    conf->sse.max_stream_ms = 5;
    conf->limits.heartbeat_ms = 2;
    return conf;
}

static void publish(const char *type, const char *data_json)
{
    json_object *data = json_tokener_parse(data_json);

    if (!data)
        die("event data", data_json);
    mcpgw_events_publish(gw.events, type, data, NULL);
    json_object_put(data);
}

struct fuzz_gateway *fuzz_gateway(void)
{
    const char *const all[] = { "*" };
    const char *const narrow[] = { "srv:echo" };
    struct mcpgw_routes_opts ro;
    struct mcpgw_conf *conf;
    char path[128], err[512];
    int rc;

    if (made)
        return &gw;
    snprintf(gw.dir, sizeof(gw.dir), "/tmp/mcpgw-fuzz.XXXXXX");
    if (!mkdtemp(gw.dir))
        die("mkdtemp", gw.dir);
    atexit(cleanup);
    snprintf(path, sizeof(path), "%s/tokens.json", gw.dir);
    if (mcpgw_tokens_add(path, "full", all, 1, 0, gw.tok_full, sizeof(gw.tok_full), err,
                         sizeof(err)) < 0 ||
        mcpgw_tokens_add(path, "narrow", narrow, 1, 0, gw.tok_narrow, sizeof(gw.tok_narrow), err,
                         sizeof(err)) < 0 ||
        mcpgw_tokens_add(path, "gone", all, 1, 0, gw.tok_gone, sizeof(gw.tok_gone), err,
                         sizeof(err)) < 0 ||
        mcpgw_tokens_revoke(path, "gone", err, sizeof(err)) < 0 ||
        mcpgw_tokens_load(path, &gw.tokens, err, sizeof(err)) < 0)
        die("tokens", err);
    conf = make_conf(true);
    gw.conf_open = make_conf(false);
    if (mcpgw_events_open(conf, &gw.events, err, sizeof(err)) < 0)
        die("events", err);
    publish("server_status", "{\"serverId\":\"srv\",\"state\":\"ready\"}");
    publish("tool_call", "{\"serverId\":\"srv\",\"toolName\":\"echo\",\"caller\":\"full\"}");
    publish("tool_progress", "{\"serverId\":\"srv\",\"toolName\":\"add\",\"progress\":1}");
    publish("tool_result", "{\"serverId\":\"other\",\"toolName\":\"x\",\"success\":true}");
    publish("client", "{\"transport\":\"websocket\",\"state\":\"connected\"}");
    publish("server_status", "{\"serverId\":\"other\",\"state\":\"backoff\"}");
    publish("tool_result", "{\"serverId\":\"srv\",\"toolName\":\"echo\",\"text\":\"a\\nb\"}");
    publish("token_revoked", "{\"name\":\"narrow\"}");
    if (!(gw.hub = mcpgw_hub_new(conf, &rc)))
        die("hub", mcpgw_strerror(rc));
    gw.conf = mcpgw_hub_conf(gw.hub);
    if ((rc = mcpgw_hub_thread_start(gw.hub)) < 0)
        die("hub thread", mcpgw_strerror(rc));
    ro = (struct mcpgw_routes_opts){ .conf = gw.conf, .hub = gw.hub, .events = gw.events,
                                     .component = "fuzz" };
    if (mcpgw_routes_new(&ro, &gw.rt, err, sizeof(err)) < 0)
        die("routes", err);
    ro.conf = gw.conf_open;
    if (mcpgw_routes_new(&ro, &gw.rt_open, err, sizeof(err)) < 0)
        die("routes", err);
    made = true;
    return &gw;
}

void fuzz_gateway_ticket(struct fuzz_gateway *g, char *out, size_t outlen)
{
    struct mcpgw_token_info info;
    char err[256];

    if (mcpgw_tokens_verify(g->tokens, g->tok_full, strlen(g->tok_full), time(NULL), &info) < 0 ||
        mcpgw_ticket_issue(g->conf, &info, out, outlen, err, sizeof(err)) < 0)
        die("ticket", "cannot issue");
}

json_object *fuzz_strict_parse(const char *p, size_t n)
{
    json_tokener *tok = json_tokener_new_ex(64);
    json_object *o;

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    o = json_tokener_parse_ex(tok, p, (int)n);
    if (o && json_tokener_get_parse_end(tok) != n) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}
