/* conf.h - the gateway's one JSON configuration file.
 *
 * Shape (docs/configuration.md has every key):
 *   {
 *     "gateway": { "listen": [...], "tokenFile": "...", "requireAuth": true,
 *                  "log": {"file": "...", "level": "info"},
 *                  "allowedOrigins": [...], "limits": {...} },
 *     "mcpServers": { "<id>": { "command": "npx", "args": [...], "env": {...},
 *                               "cwd": "...", "callTimeoutMs": 60000, ... } }
 *   }
 * "mcpServers" is the shape MCP desktop clients use, so a user's existing
 * block can be pasted in; the gateway-only keys per server are optional.
 *
 * Validation is strict: an unknown key, a wrong type or an out-of-range value
 * is an error naming the file, the key path and what is wrong, e.g.
 *   gateway.json: mcpServers.memory.callTimeoutMs: expected an integer from 100 to 3600000, got -5
 * Limits come from limits.h: config may lower a hard cap, never raise it.
 *
 * Relative paths in the file (tokenFile, log.file, cwd) are resolved against
 * the directory of the config file, so a deployment can be moved as a whole.
 */
#ifndef MCPGW_CONF_H
#define MCPGW_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "peer.h"

enum mcpgw_restart_policy {
    MCPGW_RESTART_ON_FAILURE = 0,   /* default: restart after a crash or hang */
    MCPGW_RESTART_ALWAYS,           /* also after a clean exit */
    MCPGW_RESTART_NEVER             /* stay down (state "disabled") */
};

/* gateway.toolPinning (pins.h): what happens when a tool's definition is
 * not the one approved. */
enum mcpgw_tool_pinning {
    MCPGW_PINNING_OFF = 0,      /* "off" (default): not checked */
    MCPGW_PINNING_WARN,         /* "warn": logged, still served */
    MCPGW_PINNING_ENFORCE       /* "enforce": withheld until approved */
};

struct mcpgw_conf_env {
    char *name, *value;
};

struct mcpgw_conf_server {
    char *id;                   /* key in mcpServers: [A-Za-z0-9_.-]{1,64} */
    char *command;              /* as written; looked up in PATH at spawn */
    char **args;                /* NULL-terminated, nargs entries */
    size_t nargs;
    struct mcpgw_conf_env *env; /* the server's own "env" */
    size_t nenv;
    char *cwd;                  /* absolute after load, or NULL */
    int call_timeout_ms;        /* callTimeoutMs */
    int start_timeout_ms;       /* startTimeoutMs */
    int max_inflight;           /* maxInFlight */
    enum mcpgw_restart_policy restart_policy;   /* restart.policy */
    int restart_initial_ms;     /* restart.initialDelayMs */
    int restart_max_ms;         /* restart.maxDelayMs */
    int restart_reset_ms;       /* restart.resetAfterMs */
    char *user;                 /* user: account to run as (gateway must be root), or NULL */
    /* resourceLimits: what the child may use, 0 = inherit the gateway's. */
    long long max_open_files;   /* resourceLimits.openFiles   -> RLIMIT_NOFILE */
    long long max_memory_bytes; /* resourceLimits.memoryBytes -> RLIMIT_DATA */
    long long max_processes;    /* resourceLimits.processes   -> RLIMIT_NPROC */
    long long max_cpu_seconds;  /* resourceLimits.cpuSeconds  -> RLIMIT_CPU */
    char **tools;               /* allow-list "tools", NULL-terminated; NULL = all */
    size_t ntools;
    bool enabled;               /* enabled (default true) */
};

struct mcpgw_conf_limits {
    size_t max_message_bytes;   /* limits.maxMessageBytes */
    int max_json_depth;         /* limits.maxJsonDepth */
    int max_connections;        /* limits.maxConnections */
    int max_connections_per_ip; /* limits.maxConnectionsPerIp */
    int max_inflight_per_conn;  /* limits.maxInFlightPerConnection */
    int heartbeat_ms;           /* limits.heartbeatIntervalMs */
    int handshake_timeout_ms;   /* limits.handshakeTimeoutMs */
    int idle_timeout_ms;        /* limits.idleTimeoutMs */
};

enum mcpgw_events_backend {
    MCPGW_EVENTS_FILE = 0,      /* embedded store under events.dir (default) */
    MCPGW_EVENTS_REDIS          /* Redis Streams, for several hosts */
};

struct mcpgw_conf_events {
    enum mcpgw_events_backend backend;  /* events.backend: "file" | "redis" */
    char *dir;                  /* events.dir, absolute; default <stateDir>/events */
    char *redis_host;           /* events.redis.host (default 127.0.0.1) */
    int redis_port;             /* events.redis.port (default 6379) */
    char *redis_key;            /* events.redis.key (default "mcpgw:events") */
    int max_events;             /* events.maxEvents */
    int max_age_ms;             /* events.maxAgeMs */
    size_t max_bytes;           /* events.maxBytes */
    bool include_params;        /* events.includeParams (default false) */
};

struct mcpgw_conf_sse {
    int max_stream_ms;          /* sse.maxStreamMs: a response ends itself after this */
    int retry_ms;               /* sse.retryMs: the retry: hint */
    int max_streams;            /* sse.maxStreams: open streams per process */
};

/* gateway.tokenLimits: each token's tool calls, over every gateway process
 * on the host (quota.h). */
struct mcpgw_conf_token_limits {
    int max_concurrent;         /* tokenLimits.maxConcurrentCalls */
    int per_second;             /* tokenLimits.callsPerSecond */
    int burst;                  /* tokenLimits.burst */
};

struct mcpgw_conf_websocket {
    int ping_interval_ms;       /* websocket.pingIntervalMs */
    int max_missed_pongs;       /* websocket.maxMissedPongs */
    int max_fragments;          /* websocket.maxFragments per message */
    size_t outq_high_bytes;     /* websocket.outputHighBytes: stop reading above */
    size_t outq_max_bytes;      /* websocket.outputMaxBytes: close (1008) above */
    int max_auth_failures;      /* websocket.maxAuthFailures before close */
    int rest_threads;           /* websocket.restThreads: mcpgw-wsd's /api/v1 pool */
};

struct mcpgw_conf {
    char *path;                 /* absolute path of the file loaded */
    char *dir;                  /* its directory */
    char **listen;              /* gateway.listen: "HOST:PORT" or "/unix/path", NULL-terminated */
    size_t nlisten;
    char *token_file;           /* gateway.tokenFile, absolute; default <dir>/tokens.json */
    bool require_auth;          /* gateway.requireAuth (default true) */
    enum mcpgw_tool_pinning tool_pinning;   /* gateway.toolPinning */
    char *log_file;             /* gateway.log.file, absolute; default <dir>/logs/gateway.log */
    int log_level;              /* gateway.log.level -> enum mcpgw_log_level */
    bool log_syslog;            /* gateway.log.syslog (default false) */
    char **allowed_origins;     /* gateway.allowedOrigins, NULL-terminated; NULL = loopback only */
    size_t norigins;
    /* gateway.trustedProxies: peers whose X-Forwarded-For is believed
     * (peer.h).  Default: loopback and unix sockets; [] trusts none. */
    struct mcpgw_netblock *trusted_proxies;
    size_t ntrusted_proxies;
    struct mcpgw_conf_limits limits;
    char *state_dir;            /* gateway.stateDir, absolute; default LOCALSTATEDIR "/lib/mcpgw" */
    int ticket_ttl_ms;          /* gateway.ticketTtlMs */
    int max_server_processes;   /* gateway.maxServerProcesses: host-wide cap */
    int fcgi_threads;           /* gateway.fcgi.threads */
    struct mcpgw_conf_events events;        /* gateway.events */
    struct mcpgw_conf_sse sse;              /* gateway.sse */
    struct mcpgw_conf_websocket websocket;  /* gateway.websocket */
    struct mcpgw_conf_token_limits token_limits;    /* gateway.tokenLimits */
    struct mcpgw_conf_server *servers;
    size_t nservers;
};

/* Load and validate a config file.  path NULL: $MCPGW_CONFIG, else the
 * compiled-in default (SYSCONFDIR "/mcpgw/gateway.json").
 * On success returns 0 and *out owns a new config (free with
 * mcpgw_conf_free).  On failure returns MCPGW_ECONFIG or -errno, *out is
 * NULL, and err (if not NULL) receives the one-line message naming file and
 * key path, NUL-terminated and cut to errlen. */
int mcpgw_conf_load(const char *path, struct mcpgw_conf **out, char *err, size_t errlen);

/* Same, from a string in memory; name is what messages call the file and
 * dir resolves relative paths (NULL: the current directory). */
int mcpgw_conf_parse(const char *text, size_t len, const char *name, const char *dir,
                     struct mcpgw_conf **out, char *err, size_t errlen);

void mcpgw_conf_free(struct mcpgw_conf *conf);     /* NULL-safe */

/* The server with this id, or NULL.  Borrowed: lives as long as conf. */
const struct mcpgw_conf_server *mcpgw_conf_server(const struct mcpgw_conf *conf, const char *id);

/* Whether the config lets server s offer tool (its "tools" allow-list). */
bool mcpgw_conf_tool_allowed(const struct mcpgw_conf_server *s, const char *tool);

/* Default config path (compiled-in). */
const char *mcpgw_conf_default_path(void);

#endif
