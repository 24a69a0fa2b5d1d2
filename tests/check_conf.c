/* check_conf.c - the configuration file: shape, defaults, every way it can
 * be wrong (each with its exact one-line message), file checks, and the
 * example config shipped in etc/. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "err.h"
#include "limits.h"
#include "log.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/usr/local/etc"
#endif

#define NAME "t.json"
#define CDIR "/etc/mcpgw"

static char errbuf[1024];

static struct mcpgw_conf *parse_ok(const char *text)
{
    struct mcpgw_conf *conf = NULL;
    int rc = mcpgw_conf_parse(text, strlen(text), NAME, CDIR, &conf, errbuf, sizeof(errbuf));

    ck_assert_msg(rc == 0, "parse failed (%d): %s", rc, errbuf);
    ck_assert_ptr_nonnull(conf);
    ck_assert_str_eq(errbuf, "");
    return conf;
}

/* ---- a good config, every key set ---------------------------------------- */

static const char full_config[] =
    "{\n"
    "  \"$schema\": \"https://example.invalid/mcpgw.schema.json\",\n"
    "  \"$comment\": \"every key set\",\n"
    "  \"gateway\": {\n"
    "    \"listen\": [\"127.0.0.1:3000\", \"[::1]:3001\", \"/run/mcpgw/gw.sock\"],\n"
    "    \"tokenFile\": \"secrets/tokens.json\",\n"
    "    \"requireAuth\": false,\n"
    "    \"toolPinning\": \"enforce\",\n"
    "    \"log\": {\"file\": \"/var/log/mcpgw/gw.log\", \"level\": \"debug\", \"syslog\": true},\n"
    "    \"allowedOrigins\": [\"http://localhost:8080\", \"https://app.example.com\"],\n"
    "    \"limits\": {\n"
    "      \"maxMessageBytes\": 1048576,\n"
    "      \"maxJsonDepth\": 32,\n"
    "      \"maxConnections\": 500,\n"
    "      \"maxConnectionsPerIp\": 20,\n"
    "      \"maxInFlightPerConnection\": 8,\n"
    "      \"heartbeatIntervalMs\": 20000,\n"
    "      \"handshakeTimeoutMs\": 5000,\n"
    "      \"idleTimeoutMs\": 60000\n"
    "    }\n"
    "  },\n"
    "  \"mcpServers\": {\n"
    "    \"memory\": {\n"
    "      \"type\": \"stdio\",\n"
    "      \"command\": \"npx\",\n"
    "      \"args\": [\"-y\", \"@modelcontextprotocol/server-memory\"],\n"
    "      \"env\": {\"MEMORY_FILE_PATH\": \"/var/lib/mcpgw/memory.jsonl\", \"_X1\": \"\"},\n"
    "      \"cwd\": \"work\",\n"
    "      \"callTimeoutMs\": 120000,\n"
    "      \"startTimeoutMs\": 45000,\n"
    "      \"maxInFlight\": 16,\n"
    "      \"restart\": {\"policy\": \"always\", \"initialDelayMs\": 500,\n"
    "                  \"maxDelayMs\": 60000, \"resetAfterMs\": 120000},\n"
    "      \"tools\": [\"read_graph\", \"search_nodes\"],\n"
    "      \"user\": \"mcp-memory\",\n"
    "      \"resourceLimits\": {\"openFiles\": 256, \"memoryBytes\": 1073741824,\n"
    "                         \"processes\": 64, \"cpuSeconds\": 3600},\n"
    "      \"enabled\": false\n"
    "    },\n"
    "    \"everything\": {\n"
    "      \"command\": \"/usr/bin/npx\",\n"
    "      \"args\": [\"-y\", \"@modelcontextprotocol/server-everything\", \"stdio\"],\n"
    "      \"restart\": {\"policy\": \"never\"}\n"
    "    }\n"
    "  }\n"
    "}\n";

START_TEST(test_full_config_round_trip)
{
    struct mcpgw_conf *conf = parse_ok(full_config);
    const struct mcpgw_conf_server *m, *e;

    ck_assert_str_eq(conf->path, CDIR "/" NAME);
    ck_assert_str_eq(conf->dir, CDIR);
    ck_assert_uint_eq(conf->nlisten, 3);
    ck_assert_str_eq(conf->listen[0], "127.0.0.1:3000");
    ck_assert_str_eq(conf->listen[1], "[::1]:3001");
    ck_assert_str_eq(conf->listen[2], "/run/mcpgw/gw.sock");
    ck_assert_ptr_null(conf->listen[3]);
    ck_assert_str_eq(conf->token_file, CDIR "/secrets/tokens.json");
    ck_assert(!conf->require_auth);
    ck_assert_int_eq(conf->tool_pinning, MCPGW_PINNING_ENFORCE);
    ck_assert_str_eq(conf->log_file, "/var/log/mcpgw/gw.log");
    ck_assert_int_eq(conf->log_level, MCPGW_LOG_DEBUG);
    ck_assert(conf->log_syslog);
    ck_assert_uint_eq(conf->norigins, 2);
    ck_assert_str_eq(conf->allowed_origins[0], "http://localhost:8080");
    ck_assert_str_eq(conf->allowed_origins[1], "https://app.example.com");
    ck_assert_ptr_null(conf->allowed_origins[2]);
    ck_assert_uint_eq(conf->limits.max_message_bytes, 1048576);
    ck_assert_int_eq(conf->limits.max_json_depth, 32);
    ck_assert_int_eq(conf->limits.max_connections, 500);
    ck_assert_int_eq(conf->limits.max_connections_per_ip, 20);
    ck_assert_int_eq(conf->limits.max_inflight_per_conn, 8);
    ck_assert_int_eq(conf->limits.heartbeat_ms, 20000);
    ck_assert_int_eq(conf->limits.handshake_timeout_ms, 5000);
    ck_assert_int_eq(conf->limits.idle_timeout_ms, 60000);

    ck_assert_uint_eq(conf->nservers, 2);
    m = &conf->servers[0];
    ck_assert_str_eq(m->id, "memory");
    ck_assert_str_eq(m->command, "npx");
    ck_assert_uint_eq(m->nargs, 2);
    ck_assert_str_eq(m->args[0], "-y");
    ck_assert_str_eq(m->args[1], "@modelcontextprotocol/server-memory");
    ck_assert_ptr_null(m->args[2]);
    ck_assert_uint_eq(m->nenv, 2);
    ck_assert_str_eq(m->env[0].name, "MEMORY_FILE_PATH");
    ck_assert_str_eq(m->env[0].value, "/var/lib/mcpgw/memory.jsonl");
    ck_assert_str_eq(m->env[1].name, "_X1");
    ck_assert_str_eq(m->env[1].value, "");
    ck_assert_str_eq(m->cwd, CDIR "/work");
    ck_assert_int_eq(m->call_timeout_ms, 120000);
    ck_assert_int_eq(m->start_timeout_ms, 45000);
    ck_assert_int_eq(m->max_inflight, 16);
    ck_assert_int_eq(m->restart_policy, MCPGW_RESTART_ALWAYS);
    ck_assert_int_eq(m->restart_initial_ms, 500);
    ck_assert_int_eq(m->restart_max_ms, 60000);
    ck_assert_int_eq(m->restart_reset_ms, 120000);
    ck_assert_uint_eq(m->ntools, 2);
    ck_assert_str_eq(m->tools[0], "read_graph");
    ck_assert_str_eq(m->tools[1], "search_nodes");
    ck_assert_ptr_null(m->tools[2]);
    ck_assert(!m->enabled);
    ck_assert_str_eq(m->user, "mcp-memory");
    ck_assert_int_eq(m->max_open_files, 256);
    ck_assert_int_eq(m->max_memory_bytes, 1073741824LL);
    ck_assert_int_eq(m->max_processes, 64);
    ck_assert_int_eq(m->max_cpu_seconds, 3600);

    e = &conf->servers[1];
    ck_assert_str_eq(e->id, "everything");
    ck_assert_str_eq(e->command, "/usr/bin/npx");
    ck_assert_uint_eq(e->nargs, 3);
    ck_assert_str_eq(e->args[2], "stdio");
    ck_assert_int_eq(e->restart_policy, MCPGW_RESTART_NEVER);
    ck_assert_ptr_null(e->tools);
    ck_assert_ptr_null(e->user);
    ck_assert_int_eq(e->max_open_files, 0);
    ck_assert_int_eq(e->max_memory_bytes, 0);
    ck_assert(e->enabled);

    ck_assert_ptr_eq(mcpgw_conf_server(conf, "memory"), m);
    ck_assert_ptr_eq(mcpgw_conf_server(conf, "everything"), e);
    ck_assert_ptr_null(mcpgw_conf_server(conf, "Memory"));
    ck_assert_ptr_null(mcpgw_conf_server(conf, NULL));
    ck_assert_ptr_null(mcpgw_conf_server(NULL, "memory"));
    mcpgw_conf_free(conf);
}
END_TEST

/* ---- defaults ------------------------------------------------------------- */

START_TEST(test_empty_object_gets_every_default)
{
    struct mcpgw_conf *conf = parse_ok("{}");

    ck_assert_uint_eq(conf->nlisten, 1);
    ck_assert_str_eq(conf->listen[0], "127.0.0.1:3000");
    ck_assert_ptr_null(conf->listen[1]);
    ck_assert_str_eq(conf->token_file, CDIR "/tokens.json");
    ck_assert(conf->require_auth);
    ck_assert_int_eq(conf->tool_pinning, MCPGW_PINNING_OFF);
    ck_assert_str_eq(conf->log_file, CDIR "/logs/gateway.log");
    ck_assert_int_eq(conf->log_level, MCPGW_LOG_INFO);
    ck_assert(!conf->log_syslog);
    ck_assert_ptr_null(conf->allowed_origins);
    ck_assert_uint_eq(conf->norigins, 0);
    ck_assert_uint_eq(conf->limits.max_message_bytes, MCPGW_MESSAGE_BYTES_DEFAULT);
    ck_assert_int_eq(conf->limits.max_json_depth, MCPGW_JSON_DEPTH_DEFAULT);
    ck_assert_int_eq(conf->limits.max_connections, MCPGW_CONNECTIONS_DEFAULT);
    ck_assert_int_eq(conf->limits.max_connections_per_ip, MCPGW_CONNECTIONS_PER_IP_DEFAULT);
    ck_assert_int_eq(conf->limits.max_inflight_per_conn, MCPGW_CONN_INFLIGHT_DEFAULT);
    ck_assert_int_eq(conf->limits.heartbeat_ms, MCPGW_HEARTBEAT_DEFAULT);
    ck_assert_int_eq(conf->limits.handshake_timeout_ms, MCPGW_HANDSHAKE_TIMEOUT_DEFAULT);
    ck_assert_int_eq(conf->limits.idle_timeout_ms, MCPGW_IDLE_TIMEOUT_DEFAULT);
    ck_assert_uint_eq(conf->nservers, 0);
    ck_assert_ptr_null(conf->servers);
    mcpgw_conf_free(conf);
}
END_TEST

START_TEST(test_front_end_sections_defaults_and_values)
{
    static const char text[] =
        "{\"gateway\": {\"stateDir\": \"state\", \"ticketTtlMs\": 5000,"
        " \"events\": {\"backend\": \"redis\", \"redis\": {\"host\": \"::1\", \"port\": 6380},"
        " \"maxEvents\": 50, \"includeParams\": true},"
        " \"sse\": {\"retryMs\": 500}, \"fcgi\": {\"threads\": 4},"
        " \"websocket\": {\"pingIntervalMs\": 5000, \"maxFragments\": 10, \"restThreads\": 3},"
        " \"tokenLimits\": {\"maxConcurrentCalls\": 8, \"callsPerSecond\": 20, \"burst\": 40}}}";
    struct mcpgw_conf *c;
    char err[256];

    ck_assert_int_eq(mcpgw_conf_parse("{}", 2, "t.json", "/etc/gw", &c, err, sizeof(err)), 0);
    ck_assert_str_eq(c->state_dir, LOCALSTATEDIR "/lib/mcpgw");
    ck_assert_str_eq(c->events.dir, LOCALSTATEDIR "/lib/mcpgw/events");
    ck_assert_int_eq(c->events.backend, MCPGW_EVENTS_FILE);
    ck_assert_str_eq(c->events.redis_key, "mcpgw:events");
    ck_assert_int_eq(c->events.max_events, MCPGW_EVENTS_COUNT_DEFAULT);
    ck_assert_int_eq(c->sse.max_stream_ms, MCPGW_SSE_STREAM_DEFAULT);
    ck_assert_int_eq(c->fcgi_threads, MCPGW_FCGI_THREADS_DEFAULT);
    ck_assert_int_eq(c->websocket.ping_interval_ms, MCPGW_WS_PING_DEFAULT);
    ck_assert_uint_eq(c->websocket.outq_max_bytes, MCPGW_WS_OUTQ_MAX_DEFAULT);
    ck_assert_int_eq(c->websocket.rest_threads, MCPGW_WSD_REST_THREADS_DEFAULT);
    ck_assert_int_eq(c->ticket_ttl_ms, MCPGW_TICKET_TTL_DEFAULT);
    ck_assert_int_eq(c->max_server_processes, MCPGW_SERVER_PROCS_DEFAULT);
    ck_assert_int_eq(c->token_limits.max_concurrent, MCPGW_TOKEN_CONCURRENT_DEFAULT);
    ck_assert_int_eq(c->token_limits.per_second, MCPGW_TOKEN_RATE_DEFAULT);
    ck_assert_int_eq(c->token_limits.burst, MCPGW_TOKEN_BURST_DEFAULT);
    mcpgw_conf_free(c);
    ck_assert_int_eq(mcpgw_conf_parse(text, sizeof(text) - 1, "t.json", "/etc/gw", &c, err,
                                      sizeof(err)), 0);
    ck_assert_str_eq(c->state_dir, "/etc/gw/state");
    ck_assert_str_eq(c->events.dir, "/etc/gw/state/events");
    ck_assert_int_eq(c->events.backend, MCPGW_EVENTS_REDIS);
    ck_assert_str_eq(c->events.redis_host, "::1");
    ck_assert_int_eq(c->events.redis_port, 6380);
    ck_assert_int_eq(c->events.max_events, 50);
    ck_assert(c->events.include_params);
    ck_assert_int_eq(c->sse.retry_ms, 500);
    ck_assert_int_eq(c->fcgi_threads, 4);
    ck_assert_int_eq(c->websocket.max_fragments, 10);
    ck_assert_int_eq(c->websocket.rest_threads, 3);
    ck_assert_int_eq(c->ticket_ttl_ms, 5000);
    ck_assert_int_eq(c->token_limits.max_concurrent, 8);
    ck_assert_int_eq(c->token_limits.per_second, 20);
    ck_assert_int_eq(c->token_limits.burst, 40);
    mcpgw_conf_free(c);
}
END_TEST

START_TEST(test_minimal_server_gets_every_default)
{
    struct mcpgw_conf *conf = parse_ok("{\"mcpServers\": {\"s\": {\"command\": \"srv\"}}}");
    const struct mcpgw_conf_server *s = &conf->servers[0];

    ck_assert_uint_eq(conf->nservers, 1);
    ck_assert_str_eq(s->id, "s");
    ck_assert_str_eq(s->command, "srv");
    ck_assert_uint_eq(s->nargs, 0);
    ck_assert_ptr_nonnull(s->args);
    ck_assert_ptr_null(s->args[0]);
    ck_assert_uint_eq(s->nenv, 0);
    ck_assert_ptr_null(s->cwd);
    ck_assert_int_eq(s->call_timeout_ms, MCPGW_CALL_TIMEOUT_DEFAULT);
    ck_assert_int_eq(s->start_timeout_ms, MCPGW_START_TIMEOUT_DEFAULT);
    ck_assert_int_eq(s->max_inflight, MCPGW_SERVER_INFLIGHT_DEFAULT);
    ck_assert_int_eq(s->restart_policy, MCPGW_RESTART_ON_FAILURE);
    ck_assert_int_eq(s->restart_initial_ms, MCPGW_RESTART_INITIAL_DEFAULT);
    ck_assert_int_eq(s->restart_max_ms, MCPGW_RESTART_MAX_DEFAULT);
    ck_assert_int_eq(s->restart_reset_ms, MCPGW_RESTART_RESET_DEFAULT);
    ck_assert_ptr_null(s->tools);
    ck_assert(s->enabled);
    mcpgw_conf_free(conf);
}
END_TEST

START_TEST(test_zero_servers_is_valid)
{
    struct mcpgw_conf *conf = parse_ok("{\"mcpServers\": {}, \"gateway\": {}}");

    ck_assert_uint_eq(conf->nservers, 0);
    ck_assert_ptr_null(mcpgw_conf_server(conf, "x"));
    mcpgw_conf_free(conf);
}
END_TEST

START_TEST(test_servers_keep_file_order)
{
    struct mcpgw_conf *conf = parse_ok(
        "{\"mcpServers\": {\"zeta\": {\"command\": \"z\"}, \"$comment\": \"skipped\","
        " \"alpha\": {\"command\": \"a\"}, \"m.i-d_1\": {\"command\": \"m\"}}}");

    ck_assert_uint_eq(conf->nservers, 3);
    ck_assert_str_eq(conf->servers[0].id, "zeta");
    ck_assert_str_eq(conf->servers[1].id, "alpha");
    ck_assert_str_eq(conf->servers[2].id, "m.i-d_1");
    mcpgw_conf_free(conf);
}
END_TEST

/* Limits at their hard caps are accepted: the cap is a bound, not a bar. */
START_TEST(test_values_at_the_caps_are_accepted)
{
    char text[2048];
    struct mcpgw_conf *conf;

    snprintf(text, sizeof(text),
             "{\"gateway\": {\"limits\": {\"maxMessageBytes\": %u, \"maxJsonDepth\": %d,"
             " \"maxConnections\": %d, \"maxInFlightPerConnection\": %d,"
             " \"heartbeatIntervalMs\": %d, \"handshakeTimeoutMs\": %d, \"idleTimeoutMs\": %d}},"
             " \"mcpServers\": {\"s\": {\"command\": \"c\", \"callTimeoutMs\": %d,"
             " \"startTimeoutMs\": %d, \"maxInFlight\": %d,"
             " \"restart\": {\"initialDelayMs\": %d, \"maxDelayMs\": %d}}}}",
             MCPGW_MESSAGE_BYTES_MAX, MCPGW_JSON_DEPTH_MIN, MCPGW_CONNECTIONS_MAX,
             MCPGW_CONN_INFLIGHT_MAX, MCPGW_HEARTBEAT_MAX, MCPGW_TIMEOUT_MIN, MCPGW_TIMEOUT_MAX,
             MCPGW_CALL_TIMEOUT_MAX, MCPGW_START_TIMEOUT_MIN, MCPGW_SERVER_INFLIGHT_MAX,
             MCPGW_RESTART_DELAY_MAX, MCPGW_RESTART_DELAY_MAX);
    conf = parse_ok(text);
    ck_assert_uint_eq(conf->limits.max_message_bytes, MCPGW_MESSAGE_BYTES_MAX);
    ck_assert_int_eq(conf->limits.max_json_depth, MCPGW_JSON_DEPTH_MIN);
    ck_assert_int_eq(conf->limits.max_connections, MCPGW_CONNECTIONS_MAX);
    ck_assert_int_eq(conf->servers[0].call_timeout_ms, MCPGW_CALL_TIMEOUT_MAX);
    ck_assert_int_eq(conf->servers[0].max_inflight, MCPGW_SERVER_INFLIGHT_MAX);
    ck_assert_int_eq(conf->servers[0].restart_initial_ms, MCPGW_RESTART_DELAY_MAX);
    mcpgw_conf_free(conf);
}
END_TEST

/* JSON has one number type: 6e4 and 60000.0 are the integer 60000. */
START_TEST(test_whole_numbers_in_any_notation)
{
    struct mcpgw_conf *conf = parse_ok(
        "{\"mcpServers\": {\"s\": {\"command\": \"c\", \"callTimeoutMs\": 6e4,"
        " \"startTimeoutMs\": 1000.0}}}");

    ck_assert_int_eq(conf->servers[0].call_timeout_ms, 60000);
    ck_assert_int_eq(conf->servers[0].start_timeout_ms, 1000);
    mcpgw_conf_free(conf);
}
END_TEST

START_TEST(test_listen_forms_accepted)
{
    struct mcpgw_conf *conf = parse_ok(
        "{\"gateway\": {\"listen\": [\"0.0.0.0:1\", \"[::]:65535\", \"localhost:8080\","
        " \"gw-1.example.com:443\", \"[fe80::1]:80\", \"/tmp/s\"]}}");

    ck_assert_uint_eq(conf->nlisten, 6);
    ck_assert_str_eq(conf->listen[4], "[fe80::1]:80");
    mcpgw_conf_free(conf);
}
END_TEST

/* Origins are stored as browsers send them, so a plain compare matches. */
START_TEST(test_origins_stored_in_browser_form)
{
    struct mcpgw_conf *conf = parse_ok(
        "{\"gateway\": {\"allowedOrigins\": [\"HTTP://LocalHost:80\", \"https://A.example:443\","
        " \"http://[::1]:8080\", \"https://x.example:8443\", \"chrome-extension://abcdef\"]}}");

    ck_assert_uint_eq(conf->norigins, 5);
    ck_assert_str_eq(conf->allowed_origins[0], "http://localhost");
    ck_assert_str_eq(conf->allowed_origins[1], "https://a.example");
    ck_assert_str_eq(conf->allowed_origins[2], "http://[::1]:8080");
    ck_assert_str_eq(conf->allowed_origins[3], "https://x.example:8443");
    ck_assert_str_eq(conf->allowed_origins[4], "chrome-extension://abcdef");
    mcpgw_conf_free(conf);
}
END_TEST

/* [] is not "absent": it allows no browser origin at all. */
START_TEST(test_empty_origins_differs_from_absent)
{
    struct mcpgw_conf *conf = parse_ok("{\"gateway\": {\"allowedOrigins\": []}}");

    ck_assert_ptr_nonnull(conf->allowed_origins);
    ck_assert_ptr_null(conf->allowed_origins[0]);
    ck_assert_uint_eq(conf->norigins, 0);
    mcpgw_conf_free(conf);
}
END_TEST

/* trustedProxies: absent is loopback and unix sockets; [] trusts none;
 * a list is kept as parsed blocks. */
START_TEST(test_trusted_proxies_default_empty_and_list)
{
    struct mcpgw_conf *conf = parse_ok("{}");
    uint8_t a[16];

    ck_assert_uint_eq(conf->ntrusted_proxies, 3);
    ck_assert(mcpgw_peer_parse_addr("127.3.2.1", 9, a));
    ck_assert(mcpgw_peer_in(conf->trusted_proxies, conf->ntrusted_proxies, a));
    ck_assert(mcpgw_peer_parse_addr("::1", 3, a));
    ck_assert(mcpgw_peer_in(conf->trusted_proxies, conf->ntrusted_proxies, a));
    ck_assert(mcpgw_peer_parse_addr("10.0.0.1", 8, a));
    ck_assert(!mcpgw_peer_in(conf->trusted_proxies, conf->ntrusted_proxies, a));
    ck_assert(conf->trusted_proxies[2].unix_socket);
    mcpgw_conf_free(conf);

    conf = parse_ok("{\"gateway\": {\"trustedProxies\": []}}");
    ck_assert_ptr_nonnull(conf->trusted_proxies);
    ck_assert_uint_eq(conf->ntrusted_proxies, 0);
    mcpgw_conf_free(conf);

    conf = parse_ok("{\"gateway\": {\"trustedProxies\": [\"10.0.0.0/8\", \"2001:db8::/32\","
                    " \"192.0.2.7\"]}}");
    ck_assert_uint_eq(conf->ntrusted_proxies, 3);
    ck_assert(mcpgw_peer_in(conf->trusted_proxies, conf->ntrusted_proxies, a));
    ck_assert(mcpgw_peer_parse_addr("127.0.0.1", 9, a));
    ck_assert(!mcpgw_peer_in(conf->trusted_proxies, conf->ntrusted_proxies, a));
    ck_assert_uint_eq(conf->trusted_proxies[1].bits, 32);
    ck_assert_uint_eq(conf->trusted_proxies[2].bits, 128);
    mcpgw_conf_free(conf);
}
END_TEST

START_TEST(test_tool_allow_list)
{
    struct mcpgw_conf *conf = parse_ok(
        "{\"mcpServers\": {\"all\": {\"command\": \"c\"},"
        " \"some\": {\"command\": \"c\", \"tools\": [\"echo\", \"get-sum\"]},"
        " \"none\": {\"command\": \"c\", \"tools\": []}}}");
    const struct mcpgw_conf_server *all = mcpgw_conf_server(conf, "all");
    const struct mcpgw_conf_server *some = mcpgw_conf_server(conf, "some");
    const struct mcpgw_conf_server *none = mcpgw_conf_server(conf, "none");

    ck_assert(mcpgw_conf_tool_allowed(all, "anything"));
    ck_assert(mcpgw_conf_tool_allowed(some, "echo"));
    ck_assert(mcpgw_conf_tool_allowed(some, "get-sum"));
    ck_assert(!mcpgw_conf_tool_allowed(some, "get-env"));
    ck_assert(!mcpgw_conf_tool_allowed(some, "ech"));
    ck_assert(!mcpgw_conf_tool_allowed(some, NULL));
    ck_assert(!mcpgw_conf_tool_allowed(none, "echo"));
    ck_assert(!mcpgw_conf_tool_allowed(NULL, "echo"));
    mcpgw_conf_free(conf);
}
END_TEST

START_TEST(test_relative_paths_resolve_against_config_dir)
{
    struct mcpgw_conf *conf = parse_ok(
        "{\"gateway\": {\"tokenFile\": \"./keys//tokens.json\","
        " \"log\": {\"file\": \"../log/mcpgw/gw.log\"}},"
        " \"mcpServers\": {\"a\": {\"command\": \"c\", \"cwd\": \"srv/a/\"},"
        " \"b\": {\"command\": \"c\", \"cwd\": \"/opt/b\"}}}");

    ck_assert_str_eq(conf->token_file, CDIR "/keys/tokens.json");
    /* ".." stays: only the kernel resolves it right past a symlink. */
    ck_assert_str_eq(conf->log_file, CDIR "/../log/mcpgw/gw.log");
    ck_assert_str_eq(conf->servers[0].cwd, CDIR "/srv/a");
    ck_assert_str_eq(conf->servers[1].cwd, "/opt/b");
    mcpgw_conf_free(conf);
}
END_TEST

START_TEST(test_parse_without_dir_uses_cwd)
{
    char cwd[4096], want[4200];
    struct mcpgw_conf *conf = NULL;
    const char *text = "{\"gateway\": {\"tokenFile\": \"t.json\"}}";

    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
    ck_assert_int_eq(mcpgw_conf_parse(text, strlen(text), NULL, NULL, &conf, NULL, 0), 0);
    ck_assert_str_eq(conf->dir, strcmp(cwd, "/") ? cwd : "/");
    snprintf(want, sizeof(want), "%s/t.json", strcmp(cwd, "/") ? cwd : "");
    ck_assert_str_eq(conf->token_file, want);
    mcpgw_conf_free(conf);
}
END_TEST

/* A text cut at len is read only up to len: the caller's buffer need not end
 * in a NUL. */
START_TEST(test_parse_respects_len)
{
    static const char src[] = "{\"mcpServers\": {}}";
    size_t len = sizeof(src) - 1;
    char *text = malloc(len);   /* exactly len bytes: ASan sees any over-read */
    struct mcpgw_conf *conf = NULL;

    ck_assert_ptr_nonnull(text);
    memcpy(text, src, len);
    ck_assert_int_eq(mcpgw_conf_parse(text, len, NAME, CDIR, &conf, errbuf, sizeof(errbuf)), 0);
    mcpgw_conf_free(conf);
    /* The same, cut short: an error, still within len. */
    ck_assert_int_eq(mcpgw_conf_parse(text, len - 1, NAME, CDIR, &conf, errbuf, sizeof(errbuf)),
                     MCPGW_ECONFIG);
    ck_assert_str_eq(errbuf, "t.json: line 1, column 18: unexpected end of file");
    free(text);
}
END_TEST

START_TEST(test_bom_and_comments_ignored)
{
    struct mcpgw_conf *conf = parse_ok(
        "\xef\xbb\xbf{\"$schema\": 1, \"$comment\": [\"any\"], \"gateway\": {\"$comment\": \"x\","
        " \"log\": {\"$comment\": \"x\"}, \"limits\": {\"$comment\": \"x\"}},"
        " \"mcpServers\": {\"s\": {\"$comment\": \"x\", \"command\": \"c\","
        " \"restart\": {\"$comment\": \"x\"}}}}");

    ck_assert_uint_eq(conf->nservers, 1);
    mcpgw_conf_free(conf);
}
END_TEST

/* The message is cut to errlen and always NUL-terminated; no buffer at all
 * is fine too. */
START_TEST(test_error_buffer_cut_and_optional)
{
    struct mcpgw_conf *conf = (struct mcpgw_conf *)&conf;
    char small[8];
    int rc;

    memset(small, 'x', sizeof(small));
    rc = mcpgw_conf_parse("[]", 2, NAME, CDIR, &conf, small, sizeof(small));
    ck_assert_int_eq(rc, MCPGW_ECONFIG);
    ck_assert_ptr_null(conf);
    ck_assert_str_eq(small, "t.json:");
    rc = mcpgw_conf_parse("[]", 2, NAME, CDIR, &conf, NULL, 0);
    ck_assert_int_eq(rc, MCPGW_ECONFIG);
    rc = mcpgw_conf_parse("[]", 2, NAME, CDIR, &conf, small, 0);
    ck_assert_int_eq(rc, MCPGW_ECONFIG);
    mcpgw_conf_free(NULL);
}
END_TEST

/* ---- the bad-input table ----------------------------------------------- */

struct bad {
    const char *text;           /* NULL: made by gen */
    size_t len;                 /* 0: strlen(text) */
    char *(*gen)(size_t *len);
    const char *msg;            /* the exact message */
};

/* head, then n items "<pre><i><post>" separated by commas, then tail. */
static char *gen_repeat(const char *head, const char *pre, const char *post, size_t n,
                        const char *tail, size_t *len)
{
    struct mcpgw_buf b;

    mcpgw_buf_init(&b, 2u * MCPGW_CONFIG_BYTES_MAX);
    ck_assert_int_eq(mcpgw_buf_adds(&b, head), 0);
    for (size_t i = 0; i < n; i++) {
        if (i)
            ck_assert_int_eq(mcpgw_buf_addc(&b, ','), 0);
        ck_assert_int_eq(mcpgw_buf_printf(&b, "%s%zu%s", pre, i, post), 0);
    }
    ck_assert_int_eq(mcpgw_buf_adds(&b, tail), 0);
    *len = b.len;
    return b.ptr;
}

static char *gen_deep(size_t *len)
{
    struct mcpgw_buf b;

    mcpgw_buf_init(&b, 4096);
    ck_assert_int_eq(mcpgw_buf_adds(&b, "{\"$comment\": "), 0);
    for (int i = 0; i < MCPGW_JSON_DEPTH_DEFAULT + 10; i++)
        ck_assert_int_eq(mcpgw_buf_addc(&b, '['), 0);
    *len = b.len;
    return b.ptr;
}

/* One byte over the cap, made of valid JSON so only the size is wrong. */
static char *gen_big(size_t *len)
{
    size_t n = MCPGW_CONFIG_BYTES_MAX + 1;
    char *t = malloc(n + 1);

    ck_assert_ptr_nonnull(t);
    memset(t, ' ', n);
    memcpy(t, "{}", 2);
    t[n] = '\0';
    *len = n;
    return t;
}

static char *gen_servers(size_t *len)
{
    return gen_repeat("{\"mcpServers\": {", "\"s", "\": {\"command\": \"c\"}",
                      MCPGW_SERVERS_MAX + 1, "}}", len);
}

static char *gen_args(size_t *len)
{
    return gen_repeat("{\"mcpServers\": {\"s\": {\"command\": \"c\", \"args\": [", "\"a", "\"",
                      MCPGW_ARGS_MAX + 1, "]}}}", len);
}

static char *gen_env(size_t *len)
{
    return gen_repeat("{\"mcpServers\": {\"s\": {\"command\": \"c\", \"env\": {", "\"V", "\": \"\"",
                      MCPGW_ENV_MAX + 1, "}}}}", len);
}

static char *gen_proxies(size_t *len)
{
    return gen_repeat("{\"gateway\": {\"trustedProxies\": [", "\"10.0.0.", "\"",
                      MCPGW_TRUSTED_PROXIES_MAX + 1, "]}}", len);
}

static char *gen_origins(size_t *len)
{
    return gen_repeat("{\"gateway\": {\"allowedOrigins\": [", "\"http://h", ".example\"",
                      MCPGW_ORIGINS_MAX + 1, "]}}", len);
}

#define S(body) "{\"mcpServers\": {\"x\": {\"command\": \"c\", " body "}}}"
#define G(body) "{\"gateway\": {" body "}}"
#define L(body) "{\"gateway\": {\"limits\": {" body "}}}"

static const struct bad bad[] = {
    /* JSON text */
    { "{\n  \"gateway\": {\n    \"requireAuth\": tru\n  }\n}", 0, NULL,
      "t.json: line 3, column 23: boolean expected" },
    { "{\"mcpServers\": {},}", 0, NULL, "t.json: line 1, column 19: unexpected character" },
    { "{} x", 0, NULL, "t.json: line 1, column 4: unexpected character" },
    { "{}{}", 0, NULL, "t.json: line 1, column 3: unexpected character" },
    { "{\n\"gateway\": {", 0, NULL, "t.json: line 2, column 13: unexpected end of file" },
    { "", 0, NULL, "t.json: line 1, column 1: unexpected end of file" },
    { "// comment\n{}", 0, NULL, "t.json: line 1, column 1: unexpected character" },
    { "{'gateway': {}}", 0, NULL, "t.json: line 1, column 2: strings need double quotes" },
    { "{\"$comment\": NaN}", 0, NULL,
      "t.json: line 1, column 14: unexpected 'NaN' (JSON has no NaN or Infinity)" },
    { "{\"$comment\": 1.}", 0, NULL, "t.json: line 1, column 14: invalid number" },
    { "{\"$comment\": \"a\tb\"}", 0, NULL,
      "t.json: line 1, column 16: control character in a string (write it as an escape such as \\n)" },
    { "{\"$comment\": \"\xc3\xa9\xff\"}", 0, NULL,
      "t.json: line 1, column 16: invalid utf-8 string" },
    { "{}\n\0", 4, NULL, "t.json: line 2, column 1: NUL byte in the file" },
    { "{\"mcpServers\": {\"a\": {\"command\": \"1\"},\n  \"a\": {\"command\": \"2\"}}}", 0, NULL,
      "t.json: line 2, column 3: duplicate key \"a\"" },
    { "{\"mcpServers\": {\"m\\u0000x\": {\"command\": \"c\"}}}", 0, NULL,
      "t.json: line 1, column 17: a key contains a NUL byte (\\u0000)" },
    { NULL, 0, gen_deep, "t.json: line 1, column 77: nesting deeper than 64 levels" },
    { NULL, 0, gen_big, "t.json: file too big (1048577 bytes, the limit is 1048576)" },
    { "[]", 0, NULL, "t.json: expected an object at the top level, got an array" },
    { "null", 0, NULL, "t.json: expected an object at the top level, got null" },

    /* top level */
    { "{\"gatway\": {}}", 0, NULL, "t.json: gatway: unknown key, did you mean 'gateway'?" },
    { "{\"servers\": {}}", 0, NULL, "t.json: servers: unknown key" },
    { "{\"mcpServers\": []}", 0, NULL, "t.json: mcpServers: expected an object, got an array" },
    { "{\"gateway\": \"on\"}", 0, NULL, "t.json: gateway: expected an object, got \"on\"" },

    /* gateway: the front ends' and event store's sections */
    { G("\"events\": {\"backend\": \"kafka\"}"), 0, NULL,
      "t.json: gateway.events.backend: expected one of \"file\", \"redis\", got \"kafka\"" },
    { G("\"events\": {\"redis\": {\"port\": 70000}}"), 0, NULL,
      "t.json: gateway.events.redis.port: 70000 is above the hard cap of 65535" },
    { G("\"events\": {\"redis\": {\"hots\": \"x\"}}"), 0, NULL,
      "t.json: gateway.events.redis.hots: unknown key, did you mean 'host'?" },
    { G("\"events\": {\"maxBytes\": 10}"), 0, NULL,
      "t.json: gateway.events.maxBytes: expected an integer from 65536 to 1073741824, got 10" },
    { G("\"sse\": {\"maxStreamMs\": 999999999}"), 0, NULL,
      "t.json: gateway.sse.maxStreamMs: 999999999 is above the hard cap of 86400000" },
    { G("\"sse\": []"), 0, NULL, "t.json: gateway.sse: expected an object, got an array" },
    { G("\"fcgi\": {\"threads\": 0}"), 0, NULL,
      "t.json: gateway.fcgi.threads: expected an integer from 1 to 1024, got 0" },
    { G("\"websocket\": {\"outputHighBytes\": 2000000, \"outputMaxBytes\": 1000000}"), 0, NULL,
      "t.json: gateway.websocket: outputHighBytes (2000000) must not exceed outputMaxBytes (1000000)" },
    { G("\"maxServerProcesses\": 0"), 0, NULL,
      "t.json: gateway.maxServerProcesses: expected an integer from 1 to 4096, got 0" },
    { G("\"tokenLimits\": {\"maxConcurrentCalls\": 0}"), 0, NULL,
      "t.json: gateway.tokenLimits.maxConcurrentCalls: expected an integer from 1 to 100000, got 0" },
    { G("\"tokenLimits\": {\"callsPerSecond\": 2000000}"), 0, NULL,
      "t.json: gateway.tokenLimits.callsPerSecond: 2000000 is above the hard cap of 1000000" },
    { G("\"tokenLimits\": {\"burst\": 1.5}"), 0, NULL,
      "t.json: gateway.tokenLimits.burst: expected an integer from 1 to 1000000, got 1.5" },
    { G("\"tokenLimits\": {\"perToken\": {}}"), 0, NULL,
      "t.json: gateway.tokenLimits.perToken: unknown key" },
    { G("\"ticketTtlMs\": 10"), 0, NULL,
      "t.json: gateway.ticketTtlMs: expected an integer from 1000 to 600000, got 10" },

    /* gateway */
    { G("\"port\": 3000"), 0, NULL, "t.json: gateway.port: unknown key" },
    { G("\"requireAuth\": \"yes\""), 0, NULL,
      "t.json: gateway.requireAuth: expected true or false, got \"yes\"" },
    { G("\"tokenFile\": \"\""), 0, NULL, "t.json: gateway.tokenFile: expected a non-empty string" },
    { G("\"tokenFile\": 7"), 0, NULL, "t.json: gateway.tokenFile: expected a string, got 7" },
    { G("\"listen\": \"127.0.0.1:3000\""), 0, NULL,
      "t.json: gateway.listen: expected an array of addresses, got \"127.0.0.1:3000\"" },
    { G("\"listen\": []"), 0, NULL, "t.json: gateway.listen: expected at least one address" },
    { G("\"listen\": [\"127.0.0.1:0\"]"), 0, NULL,
      "t.json: gateway.listen[0]: invalid port in \"127.0.0.1:0\": expected 1 to 65535" },
    { G("\"listen\": [\"localhost:3000\", \"localhost:65536\"]"), 0, NULL,
      "t.json: gateway.listen[1]: invalid port in \"localhost:65536\": expected 1 to 65535" },
    { G("\"listen\": [\"localhost:http\"]"), 0, NULL,
      "t.json: gateway.listen[0]: invalid port in \"localhost:http\": expected 1 to 65535" },
    { G("\"listen\": [\"localhost\"]"), 0, NULL,
      "t.json: gateway.listen[0]: expected \"HOST:PORT\", \"[IPV6]:PORT\" or an absolute unix "
      "socket path, got \"localhost\"" },
    { G("\"listen\": [\"run/gw.sock\"]"), 0, NULL,
      "t.json: gateway.listen[0]: expected \"HOST:PORT\", \"[IPV6]:PORT\" or an absolute unix "
      "socket path, got \"run/gw.sock\"" },
    { G("\"listen\": [\"::1:3000\"]"), 0, NULL,
      "t.json: gateway.listen[0]: an IPv6 address needs brackets, e.g. \"[::1]:3000\", "
      "got \"::1:3000\"" },
    { G("\"listen\": [\"[::g]:3000\"]"), 0, NULL,
      "t.json: gateway.listen[0]: invalid IPv6 address in \"[::g]:3000\"" },
    { G("\"listen\": [\"bad_host:3000\"]"), 0, NULL,
      "t.json: gateway.listen[0]: invalid host name in \"bad_host:3000\"" },
    { G("\"listen\": [\"300.1.1.1:3000\"]"), 0, NULL,
      "t.json: gateway.listen[0]: invalid host name in \"300.1.1.1:3000\"" },
    { G("\"listen\": [\":3000\"]"), 0, NULL,
      "t.json: gateway.listen[0]: missing host in \":3000\" (0.0.0.0 or [::] listens on every "
      "interface)" },
    { G("\"listen\": [\"/run/mcpgw/" /* 108 bytes in all: one over sun_path */
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "ab\"]"), 0, NULL,
      "t.json: gateway.listen[0]: unix socket path is longer than 107 bytes" },
    { G("\"listen\": [\"127.0.0.1:3000\", \"127.0.0.1:3000\"]"), 0, NULL,
      "t.json: gateway.listen[1]: duplicate of [0] \"127.0.0.1:3000\"" },
    { G("\"log\": {\"lvl\": \"info\"}"), 0, NULL,
      "t.json: gateway.log.lvl: unknown key, did you mean 'level'?" },
    { G("\"log\": {\"level\": \"verbose\"}"), 0, NULL,
      "t.json: gateway.log.level: expected one of \"error\", \"warn\", \"info\", \"debug\", "
      "got \"verbose\"" },
    { G("\"log\": {\"syslog\": 1}"), 0, NULL,
      "t.json: gateway.log.syslog: expected true or false, got 1" },
    { G("\"log\": \"gw.log\""), 0, NULL, "t.json: gateway.log: expected an object, got \"gw.log\"" },
    { G("\"allowedOrigins\": [\"*\"]"), 0, NULL,
      "t.json: gateway.allowedOrigins[0]: a wildcard origin is not allowed: list each origin" },
    { G("\"allowedOrigins\": [\"http://localhost:8080/\"]"), 0, NULL,
      "t.json: gateway.allowedOrigins[0]: an origin has no path, query or trailing '/', got "
      "\"http://localhost:8080/\"" },
    { G("\"allowedOrigins\": [\"localhost:8080\"]"), 0, NULL,
      "t.json: gateway.allowedOrigins[0]: expected an origin \"scheme://host[:port]\", got "
      "\"localhost:8080\"" },
    { G("\"allowedOrigins\": [\"http://user@localhost\"]"), 0, NULL,
      "t.json: gateway.allowedOrigins[0]: expected an origin \"scheme://host[:port]\", got "
      "\"http://user@localhost\"" },
    { G("\"allowedOrigins\": [\"http://localhost:99999\"]"), 0, NULL,
      "t.json: gateway.allowedOrigins[0]: invalid port in \"http://localhost:99999\": expected "
      "1 to 65535" },
    { G("\"allowedOrigins\": [\"http://a.example\", \"HTTP://A.example:80\"]"), 0, NULL,
      "t.json: gateway.allowedOrigins[1]: duplicate of [0] \"http://a.example\"" },
    { NULL, 0, gen_origins, "t.json: gateway.allowedOrigins: too many origins (65, the limit is 64)" },
    { G("\"trustedProxies\": [\"localhost\"]"), 0, NULL,
      "t.json: gateway.trustedProxies[0]: expected an IP address, an address block "
      "\"ADDR/LEN\" or \"unix\", got \"localhost\"" },
    { G("\"trustedProxies\": [\"127.0.0.1\", \"10.0.0.1/8\"]"), 0, NULL,
      "t.json: gateway.trustedProxies[1]: address bits are set after the 8-bit prefix (the "
      "block is \"10.0.0.0/8\"), got \"10.0.0.1/8\"" },
    { G("\"trustedProxies\": [\"10.0.0.0/33\"]"), 0, NULL,
      "t.json: gateway.trustedProxies[0]: the prefix length after '/' must be 0 to 32, got "
      "\"10.0.0.0/33\"" },
    { G("\"trustedProxies\": [\"::1/129\"]"), 0, NULL,
      "t.json: gateway.trustedProxies[0]: the prefix length after '/' must be 0 to 128, got "
      "\"::1/129\"" },
    { G("\"trustedProxies\": [\"127.0.0.1:8080\"]"), 0, NULL,
      "t.json: gateway.trustedProxies[0]: expected an IP address, an address block "
      "\"ADDR/LEN\" or \"unix\", got \"127.0.0.1:8080\"" },
    { G("\"trustedProxies\": [\"\"]"), 0, NULL,
      "t.json: gateway.trustedProxies[0]: expected a non-empty string" },
    { G("\"trustedProxies\": [\"unix\", \"unix\"]"), 0, NULL,
      "t.json: gateway.trustedProxies[1]: duplicate of [0] \"unix\"" },
    { G("\"trustedProxies\": \"127.0.0.1\""), 0, NULL,
      "t.json: gateway.trustedProxies: expected an array of addresses, got \"127.0.0.1\"" },
    { G("\"trustedProxies\": [127]"), 0, NULL,
      "t.json: gateway.trustedProxies[0]: expected a string, got 127" },
    { NULL, 0, gen_proxies,
      "t.json: gateway.trustedProxies: too many addresses (65, the limit is 64)" },
    { L("\"maxMessageSize\": 1"), 0, NULL, "t.json: gateway.limits.maxMessageSize: unknown key" },
    { L("\"maxMessageBytes\": 100000000"), 0, NULL,
      "t.json: gateway.limits.maxMessageBytes: 100000000 is above the hard cap of 67108864" },
    { L("\"maxMessageBytes\": 100"), 0, NULL,
      "t.json: gateway.limits.maxMessageBytes: expected an integer from 1024 to 67108864, got 100" },
    { L("\"maxJsonDepth\": 1000"), 0, NULL,
      "t.json: gateway.limits.maxJsonDepth: 1000 is above the hard cap of 256" },
    { L("\"maxConnections\": 0"), 0, NULL,
      "t.json: gateway.limits.maxConnections: expected an integer from 1 to 100000, got 0" },
    { L("\"maxConnectionsPerIp\": 100001"), 0, NULL,
      "t.json: gateway.limits.maxConnectionsPerIp: 100001 is above the hard cap of 100000" },
    { L("\"maxInFlightPerConnection\": \"64\""), 0, NULL,
      "t.json: gateway.limits.maxInFlightPerConnection: expected an integer from 1 to 1024, got \"64\"" },
    { L("\"heartbeatIntervalMs\": 1500.5"), 0, NULL,
      "t.json: gateway.limits.heartbeatIntervalMs: expected an integer from 1000 to 300000, got 1500.5" },
    { L("\"handshakeTimeoutMs\": null"), 0, NULL,
      "t.json: gateway.limits.handshakeTimeoutMs: expected an integer from 100 to 3600000, got null" },
    { L("\"idleTimeoutMs\": 99999999999999999999"), 0, NULL,
      "t.json: gateway.limits.idleTimeoutMs: 18446744073709551615 is above the hard cap of 3600000" },

    /* servers */
    { "{\"mcpServers\": {\"my server\": {\"command\": \"c\"}}}", 0, NULL,
      "t.json: mcpServers: invalid server id \"my server\": expected 1 to 64 of A-Z a-z 0-9 _ . -" },
    { "{\"mcpServers\": {\"\": {\"command\": \"c\"}}}", 0, NULL,
      "t.json: mcpServers: invalid server id \"\": expected 1 to 64 of A-Z a-z 0-9 _ . -" },
    { "{\"mcpServers\": {\"s1234567890123456789012345678901234567890123456789012345678901234\":"
      " {\"command\": \"c\"}}}", 0, NULL,
      "t.json: mcpServers: invalid server id \"s12345678901234567890123456789012345678901234567890123456789...\": "
      "expected 1 to 64 of A-Z a-z 0-9 _ . -" },
    { "{\"mcpServers\": {\"a\\nb\": {\"command\": \"c\"}}}", 0, NULL,
      "t.json: mcpServers: invalid server id \"a\\nb\": expected 1 to 64 of A-Z a-z 0-9 _ . -" },
    { NULL, 0, gen_servers, "t.json: mcpServers: too many servers (257, the limit is 256)" },
    { "{\"mcpServers\": {\"x\": \"npx\"}}", 0, NULL,
      "t.json: mcpServers.x: expected an object, got \"npx\"" },
    { "{\"mcpServers\": {\"x\": {\"args\": []}}}", 0, NULL,
      "t.json: mcpServers.x: missing required key 'command'" },
    { "{\"mcpServers\": {\"memory\": {\"comand\": \"npx\"}}}", 0, NULL,
      "t.json: mcpServers.memory.comand: unknown key, did you mean 'command'?" },
    { S("\"autoApprove\": []"), 0, NULL, "t.json: mcpServers.x.autoApprove: unknown key" },
    { "{\"mcpServers\": {\"x\": {\"command\": \"\"}}}", 0, NULL,
      "t.json: mcpServers.x.command: expected a non-empty string" },
    { "{\"mcpServers\": {\"x\": {\"command\": [\"npx\"]}}}", 0, NULL,
      "t.json: mcpServers.x.command: expected a string, got an array" },
    { "{\"mcpServers\": {\"x\": {\"command\": \"np\\u0000x\"}}}", 0, NULL,
      "t.json: mcpServers.x.command: contains a NUL byte (\\u0000)" },
    { S("\"args\": \"-y pkg\""), 0, NULL,
      "t.json: mcpServers.x.args: expected an array of strings, got \"-y pkg\"" },
    { S("\"args\": [\"-y\", 5]"), 0, NULL, "t.json: mcpServers.x.args[1]: expected a string, got 5" },
    { S("\"args\": [\"a\", \"b\\u0000c\"]"), 0, NULL,
      "t.json: mcpServers.x.args[1]: contains a NUL byte (\\u0000)" },
    { NULL, 0, gen_args, "t.json: mcpServers.s.args: too many arguments (257, the limit is 256)" },
    { S("\"env\": [\"A=1\"]"), 0, NULL, "t.json: mcpServers.x.env: expected an object, got an array" },
    { S("\"env\": {\"1FOO\": \"x\"}"), 0, NULL,
      "t.json: mcpServers.x.env: invalid variable name \"1FOO\": expected letters, digits and '_', "
      "not starting with a digit" },
    { S("\"env\": {\"A=B\": \"x\"}"), 0, NULL,
      "t.json: mcpServers.x.env: invalid variable name \"A=B\": expected letters, digits and '_', "
      "not starting with a digit" },
    { S("\"env\": {\"PORT\": 8080}"), 0, NULL,
      "t.json: mcpServers.x.env.PORT: expected a string, got 8080" },
    { S("\"env\": {\"K\": \"a\\u0000b\"}"), 0, NULL,
      "t.json: mcpServers.x.env.K: contains a NUL byte (\\u0000)" },
    { NULL, 0, gen_env, "t.json: mcpServers.s.env: too many variables (129, the limit is 128)" },
    { S("\"cwd\": 7"), 0, NULL, "t.json: mcpServers.x.cwd: expected a string, got 7" },
    { "{\"mcpServers\": {\"x\": {\"type\": \"sse\", \"url\": \"http://h/sse\"}}}", 0, NULL,
      "t.json: mcpServers.x.type: only stdio servers are supported, got \"sse\"" },
    { "{\"mcpServers\": {\"x\": {\"url\": \"http://h/mcp\"}}}", 0, NULL,
      "t.json: mcpServers.x.url: only stdio servers are supported: give a command instead of a url" },
    { S("\"callTimeoutMs\": -5"), 0, NULL,
      "t.json: mcpServers.x.callTimeoutMs: expected an integer from 100 to 3600000, got -5" },
    { S("\"callTimeoutMs\": 3600001"), 0, NULL,
      "t.json: mcpServers.x.callTimeoutMs: 3600001 is above the hard cap of 3600000" },
    { S("\"startTimeoutMs\": 50"), 0, NULL,
      "t.json: mcpServers.x.startTimeoutMs: expected an integer from 100 to 600000, got 50" },
    { G("\"toolPinning\": \"strict\""), 0, NULL,
      "t.json: gateway.toolPinning: expected one of \"off\", \"warn\", \"enforce\", got \"strict\"" },
    { G("\"toolPinning\": true"), 0, NULL,
      "t.json: gateway.toolPinning: expected a string, got true" },
    { S("\"user\": \"\""), 0, NULL, "t.json: mcpServers.x.user: expected a non-empty string" },
    { S("\"user\": \"Root\""), 0, NULL,
      "t.json: mcpServers.x.user: expected a user name (a-z 0-9 _ -, up to 32), got \"Root\"" },
    { S("\"user\": \"a/../b\""), 0, NULL,
      "t.json: mcpServers.x.user: expected a user name (a-z 0-9 _ -, up to 32), got \"a/../b\"" },
    { S("\"user\": 0"), 0, NULL, "t.json: mcpServers.x.user: expected a string, got 0" },
    { S("\"resourceLimits\": 5"), 0, NULL,
      "t.json: mcpServers.x.resourceLimits: expected an object, got 5" },
    { S("\"resourceLimits\": {\"nofile\": 5}"), 0, NULL,
      "t.json: mcpServers.x.resourceLimits.nofile: unknown key" },
    { S("\"resourceLimits\": {\"openFiles\": 8}"), 0, NULL,
      "t.json: mcpServers.x.resourceLimits.openFiles: expected an integer from 32 to 1048576, got 8" },
    { S("\"resourceLimits\": {\"memoryBytes\": 1000}"), 0, NULL,
      "t.json: mcpServers.x.resourceLimits.memoryBytes: expected an integer from 67108864 to "
      "70368744177664, got 1000" },
    { S("\"resourceLimits\": {\"processes\": 0}"), 0, NULL,
      "t.json: mcpServers.x.resourceLimits.processes: expected an integer from 1 to 4194304, got 0" },
    { S("\"resourceLimits\": {\"cpuSeconds\": 1e12}"), 0, NULL,
      "t.json: mcpServers.x.resourceLimits.cpuSeconds: 1e12 is above the hard cap of 31536000" },
    { S("\"maxInFlight\": 0"), 0, NULL,
      "t.json: mcpServers.x.maxInFlight: expected an integer from 1 to 4096, got 0" },
    { S("\"maxInFlight\": 5000"), 0, NULL,
      "t.json: mcpServers.x.maxInFlight: 5000 is above the hard cap of 4096" },
    { S("\"restart\": \"always\""), 0, NULL,
      "t.json: mcpServers.x.restart: expected an object, got \"always\"" },
    { S("\"restart\": {\"policy\": \"sometimes\"}"), 0, NULL,
      "t.json: mcpServers.x.restart.policy: expected one of \"on-failure\", \"always\", \"never\", "
      "got \"sometimes\"" },
    { S("\"restart\": {\"delay\": 5}"), 0, NULL, "t.json: mcpServers.x.restart.delay: unknown key" },
    { S("\"restart\": {\"initialDelayMs\": 5000, \"maxDelayMs\": 1000}"), 0, NULL,
      "t.json: mcpServers.x.restart: initialDelayMs (5000) is greater than maxDelayMs (1000)" },
    { S("\"restart\": {\"initialDelayMs\": 400000}"), 0, NULL,
      "t.json: mcpServers.x.restart: initialDelayMs (400000) is greater than maxDelayMs (300000)" },
    { S("\"restart\": {\"initialDelayMs\": 5}"), 0, NULL,
      "t.json: mcpServers.x.restart.initialDelayMs: expected an integer from 10 to 3600000, got 5" },
    { S("\"tools\": \"echo\""), 0, NULL,
      "t.json: mcpServers.x.tools: expected an array of tool names, got \"echo\"" },
    { S("\"tools\": [\"echo\", \"\"]"), 0, NULL,
      "t.json: mcpServers.x.tools[1]: expected a non-empty string" },
    { S("\"tools\": [\"echo\", \"echo\"]"), 0, NULL,
      "t.json: mcpServers.x.tools[1]: duplicate of [0] \"echo\"" },
    { S("\"enabled\": \"false\""), 0, NULL,
      "t.json: mcpServers.x.enabled: expected true or false, got \"false\"" },
};

START_TEST(test_bad_input_exact_message)
{
    const struct bad *b = &bad[_i];
    struct mcpgw_conf *conf = (struct mcpgw_conf *)&conf;
    char *owned = NULL;
    const char *text = b->text;
    size_t len = b->len;
    int rc;

    if (b->gen)
        text = owned = b->gen(&len);
    else if (!len)
        len = strlen(text);
    memset(errbuf, 'x', sizeof(errbuf));
    rc = mcpgw_conf_parse(text, len, NAME, CDIR, &conf, errbuf, sizeof(errbuf));
    ck_assert_msg(rc == MCPGW_ECONFIG, "row %d: rc %d", _i, rc);
    ck_assert_ptr_null(conf);
    ck_assert_msg(strcmp(errbuf, b->msg) == 0, "row %d:\n got: %s\nwant: %s", _i, errbuf, b->msg);
    ck_assert_ptr_null(strchr(errbuf, '\n'));
    free(owned);
}
END_TEST

/* ---- files ----------------------------------------------------------------- */

static char tmpdir[64];

static void tmp_setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_conf.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    unsetenv("MCPGW_CONFIG");
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void tmp_teardown(void)
{
    nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    unsetenv("MCPGW_CONFIG");
}

/* Write text to tmpdir/rel with exactly this mode; the full path in *out. */
static void write_file(const char *rel, const char *text, size_t len, mode_t mode, char *out,
                       size_t outlen)
{
    int fd;

    snprintf(out, outlen, "%s/%s", tmpdir, rel);
    fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, text, len), (ssize_t)len);
    ck_assert_int_eq(fchmod(fd, mode), 0);
    close(fd);
}

static const char small_config[] =
    "{\"gateway\": {\"tokenFile\": \"tokens.json\", \"log\": {\"file\": \"/var/log/gw.log\"}},\n"
    " \"mcpServers\": {\"s\": {\"command\": \"c\", \"cwd\": \"work/s\"}}}\n";

START_TEST(test_load_resolves_paths_against_file_dir)
{
    char path[256], want[256], cwd[4096];
    struct mcpgw_conf *conf = NULL;

    write_file("gateway.json", small_config, strlen(small_config), 0644, path, sizeof(path));
    ck_assert_int_eq(mcpgw_conf_load(path, &conf, errbuf, sizeof(errbuf)), 0);
    ck_assert_str_eq(conf->path, path);
    ck_assert_str_eq(conf->dir, tmpdir);
    snprintf(want, sizeof(want), "%s/tokens.json", tmpdir);
    ck_assert_str_eq(conf->token_file, want);
    ck_assert_str_eq(conf->log_file, "/var/log/gw.log");
    snprintf(want, sizeof(want), "%s/work/s", tmpdir);
    ck_assert_str_eq(conf->servers[0].cwd, want);
    mcpgw_conf_free(conf);

    /* A relative file name gives the same absolute paths. */
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
    ck_assert_int_eq(chdir(tmpdir), 0);
    ck_assert_int_eq(mcpgw_conf_load("./gateway.json", &conf, errbuf, sizeof(errbuf)), 0);
    ck_assert_int_eq(chdir(cwd), 0);
    ck_assert_str_eq(conf->path, path);
    ck_assert_str_eq(conf->dir, tmpdir);
    ck_assert_str_eq(conf->servers[0].cwd, want);
    mcpgw_conf_free(conf);
}
END_TEST

START_TEST(test_load_refuses_group_or_world_writable)
{
    static const mode_t modes[] = { 0664, 0646, 0666, 0620 };
    char path[256], want[512];
    struct mcpgw_conf *conf = NULL;

    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        write_file("gateway.json", "{}", 2, modes[i], path, sizeof(path));
        ck_assert_int_eq(mcpgw_conf_load(path, &conf, errbuf, sizeof(errbuf)), MCPGW_ECONFIG);
        ck_assert_ptr_null(conf);
        snprintf(want, sizeof(want), "%s: refusing a group- or world-writable config file "
                 "(mode %04o): run chmod go-w on it", path, (unsigned)modes[i]);
        ck_assert_str_eq(errbuf, want);
    }
    write_file("gateway.json", "{}", 2, 0640, path, sizeof(path));
    ck_assert_int_eq(mcpgw_conf_load(path, &conf, errbuf, sizeof(errbuf)), 0);
    mcpgw_conf_free(conf);
}
END_TEST

START_TEST(test_load_missing_file)
{
    char path[256], want[512];
    struct mcpgw_conf *conf = NULL;

    snprintf(path, sizeof(path), "%s/nope.json", tmpdir);
    ck_assert_int_eq(mcpgw_conf_load(path, &conf, errbuf, sizeof(errbuf)), -ENOENT);
    ck_assert_ptr_null(conf);
    snprintf(want, sizeof(want), "%s: cannot open: %s", path, strerror(ENOENT));
    ck_assert_str_eq(errbuf, want);
}
END_TEST

/* A directory or a FIFO is refused, and the FIFO without hanging in open. */
START_TEST(test_load_refuses_non_regular_files)
{
    char path[256], want[512];
    struct mcpgw_conf *conf = NULL;

    ck_assert_int_eq(mcpgw_conf_load(tmpdir, &conf, errbuf, sizeof(errbuf)), MCPGW_ECONFIG);
    snprintf(want, sizeof(want), "%s: not a regular file", tmpdir);
    ck_assert_str_eq(errbuf, want);

    snprintf(path, sizeof(path), "%s/fifo", tmpdir);
    ck_assert_int_eq(mkfifo(path, 0600), 0);
    ck_assert_int_eq(mcpgw_conf_load(path, &conf, errbuf, sizeof(errbuf)), MCPGW_ECONFIG);
    snprintf(want, sizeof(want), "%s: not a regular file", path);
    ck_assert_str_eq(errbuf, want);
    ck_assert_ptr_null(conf);
}
END_TEST

START_TEST(test_load_oversized_file)
{
    size_t len;
    char *big = gen_big(&len);
    char path[256], want[512];
    struct mcpgw_conf *conf = NULL;

    write_file("big.json", big, len, 0600, path, sizeof(path));
    free(big);
    ck_assert_int_eq(mcpgw_conf_load(path, &conf, errbuf, sizeof(errbuf)), MCPGW_ECONFIG);
    ck_assert_ptr_null(conf);
    snprintf(want, sizeof(want), "%s: file too big (1048577 bytes, the limit is 1048576)", path);
    ck_assert_str_eq(errbuf, want);
}
END_TEST

/* Messages name the file as the caller gave it, not its absolute path. */
START_TEST(test_load_message_uses_given_path)
{
    char path[256], cwd[4096];
    struct mcpgw_conf *conf = NULL;
    const char text[] = "{\n  \"mcpServers\": {\"x\": {\"command\": \"c\", \"maxInFlight\": -1}}\n}\n";

    write_file("gw.json", text, strlen(text), 0600, path, sizeof(path));
    ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
    ck_assert_int_eq(chdir(tmpdir), 0);
    ck_assert_int_eq(mcpgw_conf_load("gw.json", &conf, errbuf, sizeof(errbuf)), MCPGW_ECONFIG);
    ck_assert_int_eq(chdir(cwd), 0);
    ck_assert_str_eq(errbuf,
                     "gw.json: mcpServers.x.maxInFlight: expected an integer from 1 to 4096, got -1");
}
END_TEST

START_TEST(test_load_null_uses_env_var)
{
    char path[256];
    struct mcpgw_conf *conf = NULL;

    write_file("env.json", small_config, strlen(small_config), 0600, path, sizeof(path));
    ck_assert_int_eq(setenv("MCPGW_CONFIG", path, 1), 0);
    ck_assert_int_eq(mcpgw_conf_load(NULL, &conf, errbuf, sizeof(errbuf)), 0);
    ck_assert_str_eq(conf->path, path);
    ck_assert_uint_eq(conf->nservers, 1);
    mcpgw_conf_free(conf);
}
END_TEST

START_TEST(test_load_null_without_env_uses_default)
{
    char want[512];
    struct mcpgw_conf *conf = NULL;
    int rc;

    ck_assert_str_eq(mcpgw_conf_default_path(), SYSCONFDIR "/mcpgw/gateway.json");
    ck_assert_int_eq(setenv("MCPGW_CONFIG", "", 1), 0);
    rc = mcpgw_conf_load(NULL, &conf, errbuf, sizeof(errbuf));
    if (access(mcpgw_conf_default_path(), F_OK) == 0) {
        /* Installed on this machine: the message or config must name it. */
        if (rc == 0)
            ck_assert_str_eq(conf->path, mcpgw_conf_default_path());
        else
            ck_assert_int_eq(strncmp(errbuf, mcpgw_conf_default_path(),
                                     strlen(mcpgw_conf_default_path())), 0);
        mcpgw_conf_free(conf);
        return;
    }
    ck_assert_int_eq(rc, -ENOENT);
    snprintf(want, sizeof(want), "%s: cannot open: %s", mcpgw_conf_default_path(),
             strerror(ENOENT));
    ck_assert_str_eq(errbuf, want);
}
END_TEST

/* ---- the shipped example ------------------------------------------------- */

/* Read etc/gateway.json and check it through mcpgw_conf_parse: a checkout
 * made under umask 002 is group-writable, which is the loader's business,
 * not the example's. */
START_TEST(test_example_config_is_valid)
{
    const char *top = getenv("top_srcdir");
    char path[4096], dir[4096], chunk[4096];
    struct mcpgw_buf text;
    struct mcpgw_conf *conf = NULL;
    const struct mcpgw_conf_server *m, *e;
    ssize_t r;
    int fd;

    if (!top || !*top)
        top = ".";
    snprintf(path, sizeof(path), "%s/etc/gateway.json", top);
    snprintf(dir, sizeof(dir), "%s/etc", top);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "cannot open %s: %s", path, strerror(errno));
    mcpgw_buf_init(&text, MCPGW_CONFIG_BYTES_MAX);
    while ((r = read(fd, chunk, sizeof(chunk))) > 0)
        ck_assert_int_eq(mcpgw_buf_add(&text, chunk, (size_t)r), 0);
    ck_assert_int_eq(r, 0);
    close(fd);

    ck_assert_msg(mcpgw_conf_parse(text.ptr, text.len, path, dir, &conf, errbuf,
                                   sizeof(errbuf)) == 0, "%s", errbuf);
    ck_assert_uint_eq(conf->nservers, 2);
    m = &conf->servers[0];
    e = &conf->servers[1];
    ck_assert_str_eq(m->id, "memory");
    ck_assert_str_eq(m->command, "npx");
    ck_assert_uint_eq(m->nargs, 2);
    ck_assert_str_eq(m->args[0], "-y");
    ck_assert_str_eq(m->args[1], "@modelcontextprotocol/server-memory");
    ck_assert_uint_eq(m->nenv, 1);
    ck_assert_str_eq(m->env[0].name, "MEMORY_FILE_PATH");
    /* make install substitutes the placeholder; the loader takes it as is. */
    ck_assert_str_eq(m->env[0].value, "@localstatedir@/lib/mcpgw/memory.jsonl");
    ck_assert_str_eq(e->id, "everything");
    ck_assert_str_eq(e->command, "npx");
    ck_assert_uint_ge(e->nargs, 2);
    ck_assert_str_eq(e->args[1], "@modelcontextprotocol/server-everything");
    ck_assert_str_eq(e->args[e->nargs - 1], "stdio");
    ck_assert(conf->require_auth);
    ck_assert_uint_ge(conf->nlisten, 1);
    mcpgw_conf_free(conf);
    mcpgw_buf_release(&text);
}
END_TEST

static Suite *conf_suite(void)
{
    Suite *s = suite_create("conf");
    TCase *tc;

    tc = tcase_create("valid");
    tcase_add_test(tc, test_full_config_round_trip);
    tcase_add_test(tc, test_empty_object_gets_every_default);
    tcase_add_test(tc, test_minimal_server_gets_every_default);
    tcase_add_test(tc, test_front_end_sections_defaults_and_values);
    tcase_add_test(tc, test_zero_servers_is_valid);
    tcase_add_test(tc, test_servers_keep_file_order);
    tcase_add_test(tc, test_values_at_the_caps_are_accepted);
    tcase_add_test(tc, test_whole_numbers_in_any_notation);
    tcase_add_test(tc, test_listen_forms_accepted);
    tcase_add_test(tc, test_origins_stored_in_browser_form);
    tcase_add_test(tc, test_empty_origins_differs_from_absent);
    tcase_add_test(tc, test_trusted_proxies_default_empty_and_list);
    tcase_add_test(tc, test_tool_allow_list);
    tcase_add_test(tc, test_relative_paths_resolve_against_config_dir);
    tcase_add_test(tc, test_parse_without_dir_uses_cwd);
    tcase_add_test(tc, test_parse_respects_len);
    tcase_add_test(tc, test_bom_and_comments_ignored);
    tcase_add_test(tc, test_error_buffer_cut_and_optional);
    tcase_add_test(tc, test_example_config_is_valid);
    suite_add_tcase(s, tc);

    tc = tcase_create("invalid");
    tcase_add_loop_test(tc, test_bad_input_exact_message, 0, (int)(sizeof(bad) / sizeof(bad[0])));
    suite_add_tcase(s, tc);

    tc = tcase_create("files");
    tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
    tcase_add_test(tc, test_load_resolves_paths_against_file_dir);
    tcase_add_test(tc, test_load_refuses_group_or_world_writable);
    tcase_add_test(tc, test_load_missing_file);
    tcase_add_test(tc, test_load_refuses_non_regular_files);
    tcase_add_test(tc, test_load_oversized_file);
    tcase_add_test(tc, test_load_message_uses_given_path);
    tcase_add_test(tc, test_load_null_uses_env_var);
    tcase_add_test(tc, test_load_null_without_env_uses_default);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(conf_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
