# lib.sh - shared by the web-server integration tests (sourced).
#
# Sets up one gateway deployment in a temp directory - config, tokens, the
# MCP servers from npm and tests/fake_mcp - renders the deploy/ templates
# with deploy/render.sh (free loopback ports, the temp paths), starts the
# web server in the foreground, runs tests/webservers/suite.mjs against
# it, and stops everything it started by PID.
#
# When run as root, the web server's workers (and the gateway processes it
# spawns) run as www-data, as on a real host: the deployment directory is
# handed to that user.

set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
modules=${MCPGW_NODE_MODULES:-$top_srcdir/node_modules}
render="$top_srcdir/deploy/render.sh"
fcgi_bin="$top_builddir/fcgi/mcpgw-fcgi"
cgi_bin="$top_builddir/sse-cgi/mcpgw-events.cgi"
cli="$top_builddir/cli/mcpgw"
# MCPGW_TEST_WRAPPER (valgrind, `make check-valgrind`): $wrap goes in front
# of the gateway programs a test starts itself (never node or the web
# server); their logs land in $work and finish checks them.
. "$top_srcdir/tests/valgrind-lib.sh"

failures=0
pids=()

say() { printf '# %s\n' "$*"; }

skip_all() {
    echo "1..0 # SKIP $*"
    exit 77
}

need() {
    if [ ! -f "$modules/@modelcontextprotocol/server-everything/dist/index.js" ] ||
       [ ! -f "$modules/eventsource/package.json" ]; then
        echo "node_modules missing: run tools/setup.sh" >&2
        [ -n "${CI:-}" ] && exit 1
        skip_all "node_modules missing"
    fi
    for b in "$@"; do
        if ! command -v "$b" >/dev/null 2>&1 && [ ! -x "$b" ]; then
            echo "$b is not installed: run tools/setup.sh" >&2
            [ -n "${CI:-}" ] && exit 1
            skip_all "$b not installed"
        fi
    done
}

free_port() {
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# A fresh deployment directory: $work, with gateway.json and two tokens.
setup_deployment() {
    work=$(mktemp -d /tmp/mcpgw-web.XXXXXX)
    chmod 0755 "$work"
    mkdir -p "$work/www" "$work/run" "$work/server" "$work/logs" "$work/state"
    vg_dir "$work"
    web_user=$(id -un)
    web_group=$(id -gn)
    if [ "$(id -u)" = 0 ] && id www-data >/dev/null 2>&1; then
        web_user=www-data
        web_group=www-data
    fi
    cat >"$work/gateway.json" <<JSON
{
  "gateway": {
    "tokenFile": "tokens.json",
    "stateDir": "state",
    "log": { "file": "logs/gateway.log", "level": "info" },
    "limits": { "heartbeatIntervalMs": ${HEARTBEAT_MS:-1000}, "maxMessageBytes": 65536 },
    "sse": { "maxStreamMs": 60000, "retryMs": 300, "maxStreams": ${MAX_STREAMS:-600} },
    "fcgi": { "threads": 24 }${TOKEN_LIMITS:+,
    "tokenLimits": $TOKEN_LIMITS}
  },
  "mcpServers": {
    "everything": { "command": "node",
                    "args": ["$modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"],
                    "env": { "MCPGW_TEST_RUN": "$work" } },
    "fake": { "command": "$top_builddir/tests/fake_mcp", "callTimeoutMs": 1000, "maxInFlight": 2,
              "env": { "MCPGW_TEST_RUN": "$work" } },
    "off": { "command": "/bin/false", "enabled": false }
  }
}
JSON
    chmod 0644 "$work/gateway.json"
    token_full=$("${wrap[@]}" "$cli" -c "$work/gateway.json" token add full --scope '*' | tail -n 1)
    token_echo=$("${wrap[@]}" "$cli" -c "$work/gateway.json" token add echo-only \
                 --scope 'everything:echo' | tail -n 1)
    # as_web_user: a command prefix that runs a daemon the web server talks
    # to as the web server's user, so they share the state directory.
    as_web_user=()
    if [ "$web_user" != "$(id -un)" ]; then
        chown -R "$web_user:$web_group" "$work"
        as_web_user=(setpriv "--reuid=$web_user" "--regid=$web_group" --init-groups --)
    fi

}

# render TEMPLATE OUTPUT [NAME=VALUE...]: the deployment's values plus more.
render() {
    local t=$1 out=$2
    shift 2
    "$render" "$top_srcdir/deploy/$t" \
        "SBINDIR=$top_builddir/fcgi" "PKGLIBEXECDIR=$top_builddir/sse-cgi" \
        "CONFIG=$work/gateway.json" "RUNDIR=$work/run" "FCGI_SOCKET=$work/run/fcgi.sock" \
        "PORT=$port" "BIND=127.0.0.1" "DOCROOT=$work/www" "SERVERROOT=$work/server" \
        "USER=$web_user" "GROUP=$web_group" "WSD_PORT=${wsd_port:-1}" \
        "FCGI_THREADS=24" "FCGID_PROCS=400" "$@" >"$out" || exit 1
}


start_bg() {   # start_bg LOG CMD...: run CMD in the background, remember its PID
    local log=$1
    shift
    "$@" >>"$log" 2>&1 &
    pids+=($!)
    last_pid=$!
}

wait_health() {   # wait_health URL: until the gateway answers (any JSON), 20 s
    local url=$1 i
    for i in $(seq 1 $((200 * slow))); do
        if curl -s -o /dev/null --max-time 2 "$url"; then return 0; fi
        sleep 0.1
    done
    say "no answer from $url"
    return 1
}

# stop PID [SIGNAL]: signal, then wait up to 10 s (x MCPGW_TEST_SLOW), then
# SIGKILL.
stop_pid() {
    local pid=$1 sig=${2:-TERM} i
    kill -"$sig" "$pid" 2>/dev/null || return 0
    for i in $(seq 1 $((100 * slow))); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
        sleep 0.1
    done
    say "pid $pid did not stop on SIG$sig: killing it"
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}

stop_all() {
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        stop_pid "${pids[$i]}"
    done
    pids=()
}

# No process whose environment names this deployment may survive it: MCP
# servers, gateway processes, CGI programs.
check_no_leftovers() {
    local left="" p
    for p in /proc/[0-9]*; do
        if tr '\0' '\n' 2>/dev/null <"$p/environ" |
           grep -qxF -e "MCPGW_CONFIG=$work/gateway.json" -e "MCPGW_TEST_RUN=$work"; then
            left="$left ${p#/proc/}"
        fi
    done
    if [ -n "$left" ]; then
        say "processes left behind:$left"
        left=${left# }
        ps -o pid,ppid,user,args -p "${left// /,}" || true
        return 1
    fi
    return 0
}

# Sanitizer reports in any log (ASan/UBSan in our programs).
check_logs_clean() {
    if grep -rlE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$work/server" "$work/logs" "$work"/*.log 2>/dev/null; then
        say "sanitizer reports:"
        grep -rhE -A 30 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$work/server" "$work/logs" "$work"/*.log 2>/dev/null | head -n 80
        return 1
    fi
    return 0
}

# run_suite NAME [ENV=VALUE...]: the REST and SSE suite against $port.
run_suite() {
    local name=$1
    shift
    say "=== $name ==="
    if env BASE="http://127.0.0.1:$port" TOKEN_FULL="$token_full" TOKEN_ECHO="$token_echo" \
           MODULES="$modules" HEARTBEAT_MS="${HEARTBEAT_MS:-1000}" \
           GATEWAY_LOG="$work/logs/gateway.log" VARIANT="$name" "$@" \
           node "$top_srcdir/tests/webservers/suite.mjs"; then
        return 0
    fi
    failures=$((failures + 1))
    say "--- $name: web server error log ---"
    tail -n 40 "$work/server/error.log" 2>/dev/null | sed 's/^/#   /'
    say "--- $name: gateway log (repeated lines counted, then the last 40) ---"
    sed -E 's/^[0-9TZ:.-]+ //' "$work/logs/gateway.log" 2>/dev/null | sort | uniq -c |
        sort -rn | head -n 20 | sed 's/^/#   /'
    tail -n 40 "$work/logs/gateway.log" 2>/dev/null | sed 's/^/#   /'
    return 1
}

# pid_of_exe PATH: the PID of our process running PATH for this deployment.
pid_of_exe() {
    local p
    for p in /proc/[0-9]*; do
        if [ "$(readlink "$p/exe" 2>/dev/null)" = "$1" ] &&
           tr '\0' '\n' 2>/dev/null <"$p/environ" | grep -qxF "MCPGW_CONFIG=$work/gateway.json"; then
            echo "${p#/proc/}"
            return 0
        fi
    done
    return 1
}

finish() {
    local rc=0
    stop_all
    # Give MCP servers the hub's stop sequence (close stdin, TERM, KILL).
    for _ in $(seq 1 60); do
        check_no_leftovers >/dev/null 2>&1 && break
        sleep 0.1
    done
    check_no_leftovers || rc=1
    check_logs_clean || rc=1
    vg_check "$work" || rc=1
    if [ "$rc" = 0 ] && [ -z "${KEEP_WORK:-}" ]; then
        rm -rf "$work"
    else
        say "kept $work"
    fi
    return $rc
}
