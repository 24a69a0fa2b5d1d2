# ws-proxy.sh - shared by ws-apache.test and ws-lighttpd.test (sourced after
# lib.sh): a real mcpgw-wsd on a free loopback port behind a web server
# rendered from deploy/ (its /ws route), and the WebSocket client suites of
# tests/ws/ run through the web server's port.
#
# ws_phases runs, each with its own daemon config and the daemon restarted
# on the same port behind the same running web server (which so also shows
# that it reconnects to a restarted daemon):
#   open    requireAuth off: tests/ws/protocol.js (docs/protocol.md case by
#           case: status, ping, tool calls to server-everything and
#           server-memory, errors with the call's id, unknown tools,
#           progress, cancel, ...), then tests/ws/proxy.js open (1 MiB+
#           message, too-large result, 200 concurrent clients, Origin 403)
#   auth    requireAuth on: tests/ws/auth.js (header, auth message,
#           scopes, revocation, Origin), its tickets from POST
#           /api/v1/tickets through the same web server
#   limits  maxConnectionsPerIp 2, trustedProxies ["127.0.0.1"] (the web
#           server's address): tests/ws/proxy.js limits - clients counted
#           and logged as themselves, spoofed headers ignored
# Clients that must be different users connect from 127.0.0.2, 127.0.0.3,
# ... (all loopback): the web server sees each address and forwards it.

wsd_bin=$top_builddir/wsd/mcpgw-wsd
fake_bin=$top_builddir/tests/fake_mcp
wsd_pid=

json_str() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }

# ws_config FILE GATEWAY-KEYS: a daemon config in the deployment directory
# (so tokens.json and state/ are shared with mcpgw-fcgi's gateway.json),
# with the MCP servers of tests/wsd-lib.sh.
ws_config() {
    local env
    env="\"MCPGW_TEST_RUN\": $(json_str "$work")"
    cat >"$1" <<JSON
{
  "gateway": {
    $2,
    "tokenFile": "tokens.json",
    "stateDir": "state",
    "log": { "file": "logs/gateway.log", "level": "debug" }
  },
  "mcpServers": {
    "everything": { "command": "node",
                    "args": [$(json_str "$modules/@modelcontextprotocol/server-everything/dist/index.js"), "stdio"],
                    "env": { $env } },
    "memory": { "command": "node",
                "args": [$(json_str "$modules/@modelcontextprotocol/server-memory/dist/index.js")],
                "env": { "MEMORY_FILE_PATH": $(json_str "$work/state/memory.jsonl"), $env } },
    "fake": { "command": $(json_str "$fake_bin"), "callTimeoutMs": 1500,
              "restart": { "initialDelayMs": 50, "maxDelayMs": 200 }, "env": { $env } },
    "crashy": { "command": $(json_str "$fake_bin"),
                "restart": { "initialDelayMs": 50, "maxDelayMs": 200 }, "env": { $env } }
  }
}
JSON
    chmod 0644 "$1"
    if [ "$web_user" != "$(id -un)" ]; then chown "$web_user:$web_group" "$1"; fi
}

# The deployment (lib.sh) with the three daemon configs.  gateway.json is
# the auth phase's and also mcpgw-fcgi's.
ws_setup() {
    setup_deployment
    ws_config "$work/gateway.json" '"requireAuth": true,
    "limits": { "handshakeTimeoutMs": 1200 },
    "websocket": { "maxAuthFailures": 3 },
    "trustedProxies": ["127.0.0.1"]'
    ws_config "$work/open.json" '"requireAuth": false,
    "limits": { "maxInFlightPerConnection": 8, "maxMessageBytes": 65536 }'
    ws_config "$work/limits.json" '"requireAuth": false,
    "limits": { "maxConnectionsPerIp": 2 },
    "trustedProxies": ["127.0.0.1"]'
    wsd_port=$(free_port)
}

# Fresh tokens for auth.js (which revokes one and expires another), in a
# new token file the web server's user can read.
ws_tokens() {
    local n s t
    rm -f "$work/tokens.json" "$work/tokens.json.lock"
    TOKENS={
    for n in all:'*' mem:'memory:*' echo:'everything:echo' rev:'*' tk:'memory:*' exp:'*'; do
        s=${n#*:}
        n=${n%%:*}
        t=$("$cli" -c "$work/gateway.json" token add "$n" --scope "$s" | tail -n 1) || return 1
        TOKENS="$TOKENS\"$n\":\"$t\","
    done
    TOKENS="${TOKENS%,}}"
    if [ "$web_user" != "$(id -un)" ]; then
        chown "$web_user:$web_group" "$work"/tokens.json*
    fi
}

# wsd_start CONFIG: the daemon as the web server's user (it shares state/
# with mcpgw-fcgi: tickets, events) on 127.0.0.1:$wsd_port.
# Its stderr goes to $work/wsd-N.log, where finish() looks for sanitizer
# reports.
wsd_runs=0
wsd_start() {
    local i
    wsd_runs=$((wsd_runs + 1))
    wsd_err=$work/wsd-$wsd_runs.log
    start_bg "$wsd_err" "${as_web_user[@]}" "$wsd_bin" -c "$1" \
        --listen "127.0.0.1:$wsd_port" --foreground
    wsd_pid=$last_pid
    for i in $(seq 1 400); do
        grep -q "listening on 127\.0\.0\.1:$wsd_port" "$wsd_err" 2>/dev/null && return 0
        kill -0 "$wsd_pid" 2>/dev/null || break
        sleep 0.05
    done
    say "mcpgw-wsd did not start with $1:"
    sed 's/^/#   /' "$wsd_err"
    failures=$((failures + 1))
    return 1
}

# wsd_stop: SIGTERM, and the daemon must exit 0 within its grace period.
wsd_stop() {
    local rc=0 pid=$wsd_pid
    [ -n "$pid" ] || return 0
    wsd_pid=
    pids=("${pids[@]/$pid/}")
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" || rc=$?
    if [ "$rc" != 0 ]; then
        say "mcpgw-wsd exited with status $rc after SIGTERM:"
        tail -n 30 "$wsd_err" | sed 's/^/#   /'
        failures=$((failures + 1))
    fi
}

# run_ws NAME CONFIG SCRIPT [ARGS]: a tests/ws client script through the
# web server on $port.
run_ws() {
    local name=$1 conf=$2 script=$3 tokens=${TOKENS:-'{}'}
    shift 3
    say "=== $name ==="
    if env WSD_URL="ws://127.0.0.1:$port/ws" WSD_PORT="$port" WSD_DIRECT_PORT="$wsd_port" \
           WSD_CONF="$conf" WSD_LOG="$work/logs/gateway.log" WSD_PID="$wsd_pid" \
           MCPGW="$cli" TOKENS="$tokens" TICKET_URL="http://127.0.0.1:$port/api/v1/tickets" \
           NODE_MODULES="$modules" \
           node "$top_srcdir/tests/ws/$script" "$@"; then
        return 0
    fi
    failures=$((failures + 1))
    say "--- $name: web server error log ---"
    tail -n 30 "$work/server/error.log" 2>/dev/null | sed 's/^/#   /'
    say "--- $name: gateway log ---"
    tail -n 40 "$work/logs/gateway.log" 2>/dev/null | sed 's/^/#   /'
    return 1
}

# ws_phases VARIANT: the three phases through the running web server.
ws_phases() {
    local v=$1
    if wsd_start "$work/open.json"; then
        run_ws "$v: the protocol" "$work/open.json" protocol.js
        run_ws "$v: behind the proxy" "$work/open.json" proxy.js open
        wsd_stop
    fi
    ws_tokens || { failures=$((failures + 1)); return 1; }
    if wsd_start "$work/gateway.json"; then
        run_ws "$v: authentication, tickets from POST /api/v1/tickets" "$work/gateway.json" auth.js
        wsd_stop
    fi
    if wsd_start "$work/limits.json"; then
        run_ws "$v: per-client limits and logs" "$work/limits.json" proxy.js limits
        wsd_stop
    fi
}
