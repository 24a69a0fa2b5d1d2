# wsd-lib.sh - shared by tests/wsd-*.test: a real mcpgw-wsd on a free
# loopback port, with real MCP servers from npm and tests/fake_mcp.
#
# A test sources this, writes its config with wsd_config (or its own),
# starts the daemon with wsd_start, runs node clients from tests/ws/, and
# ends with wsd_stop (which also checks the clean exit).  Everything it
# starts is stopped by PID on exit; nothing else is touched.
#
# Readiness is an event, not a guess: the daemon logs "listening on
# ADDR:PORT" (port 0 asks the kernel for a free one) and the tests wait for
# that line with a deadline.

set -eu

: "${top_srcdir:?run through make check, or set top_srcdir and top_builddir}"
: "${top_builddir:?}"

WSD=$top_builddir/wsd/mcpgw-wsd
MCPGW=$top_builddir/cli/mcpgw
FAKE=$top_builddir/tests/fake_mcp
TICKET=$top_builddir/tests/wsd_ticket
NODE_MODULES=${MCPGW_NODE_MODULES:-$top_srcdir/node_modules}
export NODE_MODULES

if ! command -v node >/dev/null 2>&1 || [ ! -d "$NODE_MODULES/ws" ]; then
    echo "SKIP: node and node_modules (tools/setup.sh) are needed"
    exit 77
fi

T=$(mktemp -d "${TMPDIR:-/tmp}/wsd-test.XXXXXX")
chmod 700 "$T"
# MCPGW_TEST_WRAPPER (valgrind, `make check-valgrind`) goes in front of the
# daemon and the CLI; its logs are checked when the test ends.
. "$top_srcdir/tests/valgrind-lib.sh"
vg_dir "$T"
WSD_PID=
wsd_cleanup() {
    local rc=$?
    if [ -n "$WSD_PID" ] && kill -0 "$WSD_PID" 2>/dev/null; then
        kill -KILL "$WSD_PID" 2>/dev/null || true
        wait "$WSD_PID" 2>/dev/null || true
    fi
    if ! vg_check "$T" >&2; then
        printf 'FAIL: valgrind reported errors\n' >&2
        [ "$rc" -ne 0 ] || rc=1
        WSD_KEEP=1
    fi
    if [ "${WSD_KEEP:-}" = 1 ]; then
        echo "kept $T"
    else
        rm -rf "$T"
    fi
    exit "$rc"
}
trap wsd_cleanup EXIT

say() { printf '# %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; [ -f "$T/wsd.err" ] && tail -n 40 "$T/wsd.err" >&2; exit 1; }

# JSON string of a path from this machine.
json_str() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }

# wsd_config [EXTRA_GATEWAY_JSON [EXTRA_SERVERS_JSON]]: the standard test
# config: everything and memory from npm, and fake_mcp as "fake" (short
# timeouts) and "crashy" (restarts fast).  EXTRA_GATEWAY goes into
# "gateway" (e.g. '"requireAuth": false'), EXTRA_SERVERS into mcpServers.
wsd_config() {
    local extra=${1:-} servers=${2:-}
    [ -n "$extra" ] && extra="$extra,"
    [ -n "$servers" ] && servers=",$servers"
    cat > "$T/gateway.json" <<JSON
{
  "gateway": {
    $extra
    "tokenFile": "tokens.json",
    "stateDir": $(json_str "$T/state"),
    "log": {"file": "wsd.log", "level": "debug"}
  },
  "mcpServers": {
    "everything": {"command": "node",
                   "args": [$(json_str "$NODE_MODULES/@modelcontextprotocol/server-everything/dist/index.js"), "stdio"]},
    "memory": {"command": "node",
               "args": [$(json_str "$NODE_MODULES/@modelcontextprotocol/server-memory/dist/index.js")],
               "env": {"MEMORY_FILE_PATH": $(json_str "$T/memory.jsonl")}},
    "fake": {"command": $(json_str "$FAKE"), "callTimeoutMs": 1500,
             "restart": {"initialDelayMs": 50, "maxDelayMs": 200}},
    "crashy": {"command": $(json_str "$FAKE"),
               "restart": {"initialDelayMs": 50, "maxDelayMs": 200}}
    $servers
  }
}
JSON
    chmod 644 "$T/gateway.json"
}

# wsd_token NAME SCOPE...: create a token, print it.
wsd_token() {
    local name=$1 args=() s
    shift
    for s in "$@"; do args+=(--scope "$s"); done
    "${wrap[@]}" "$MCPGW" -c "$T/gateway.json" token add "$name" "${args[@]}" | tail -n 1
}

# wsd_start [ARGS...]: start the daemon in the foreground on a free port;
# sets WSD_PID, WSD_PORT, WSD_URL.
wsd_start() {
    local deadline line
    : > "$T/wsd.err"
    "${wrap[@]}" "$WSD" -c "$T/gateway.json" --listen 127.0.0.1:0 --foreground "$@" \
        2>"$T/wsd.err" &
    WSD_PID=$!
    deadline=$((SECONDS + 20 * slow))
    while :; do
        line=$(grep -m1 -o 'listening on 127\.0\.0\.1:[0-9]*' "$T/wsd.err" || true)
        [ -n "$line" ] && break
        kill -0 "$WSD_PID" 2>/dev/null || fail "mcpgw-wsd exited while starting"
        [ $SECONDS -lt $deadline ] || fail "mcpgw-wsd did not start listening within $((20 * slow)) s"
        sleep 0.05
    done
    WSD_PORT=${line##*:}
    WSD_URL=ws://127.0.0.1:$WSD_PORT/ws
    export WSD_PID WSD_PORT WSD_URL
    export WSD_LOG=$T/wsd.log WSD_ERR=$T/wsd.err WSD_CONF=$T/gateway.json MCPGW TICKET
}

# wsd_wait_log PATTERN [SECONDS]: wait until the daemon's log has a line
# matching the extended regex PATTERN.
wsd_wait_log() {
    local deadline=$((SECONDS + ${2:-10}))
    until grep -qE "$1" "$T/wsd.log" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || fail "no log line matching '$1' within ${2:-10} s"
        sleep 0.05
    done
}

# wsd_stop: SIGTERM and check exit status 0 (within the shutdown grace).
wsd_stop() {
    local rc=0
    kill -TERM "$WSD_PID"
    wait "$WSD_PID" || rc=$?
    WSD_PID=
    [ "$rc" -eq 0 ] || fail "mcpgw-wsd exited with status $rc after SIGTERM"
    grep -q 'websocket: stopped$' "$T/wsd.log" || fail "no 'stopped' line in the log"
}

# wsd_node SCRIPT [ARGS]: run a client script from tests/ws.
wsd_node() {
    local script=$1
    shift
    node "$top_srcdir/tests/ws/$script" "$@" || fail "tests/ws/$script failed"
}
