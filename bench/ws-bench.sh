#!/usr/bin/env bash
# ws-bench.sh - mcpgw-wsd's figures: `make bench-ws` (not a test: it takes a
# few minutes and its numbers depend on the machine; bench/README.md keeps
# ours).  Options: --seconds S (per run, default 5), --repeat N (default 3),
# --idle-conns N (default 10000), --idle-seconds S (default 35),
# --events file|off: the daemon publishes every call to the event stream
# (gateway.events; "file", the default store, is what a deployment runs);
# "off" points it at a Redis that is not there, so events are dropped at
# once and the figures show the daemon's own cost.
#
#  1. idle RSS of the daemon with two configured servers (server-everything
#     and the C echo server), once both are ready;
#  2. tool calls over one WebSocket with 64 in flight to server-everything
#     echo, against direct stdio to the same server in the same run: runs
#     alternate direct, WebSocket, direct, ... so drift hits both; medians;
#     also each side with the other's request upstream (progressToken or
#     not), since Node servers spend measurably more on a call that asks
#     for progress: the bar (0.90) is for the same request both ways, the
#     gateway's own cost; and direct through bench/relay, a process that copies
#     bytes between two pipes and parses nothing: the ceiling for any
#     process in the path on this machine;
#  3. the same to the C echo server (bench/echo_mcp): calls/s and p99;
#  4. N authenticated idle connections held while the daemon pings them
#     (pingIntervalMs 10000): how many stayed, the daemon's RSS, bytes per
#     connection.
# bench_ws is the load generator (one epoll thread, C); it reports its own
# CPU use so it can be seen not to be the bottleneck.
set -euo pipefail

: "${top_srcdir:?run through make bench-ws}"
: "${top_builddir:?}"
seconds=5 repeat=3 idle_conns=10000 idle_seconds=35 events=file
while [ $# -gt 0 ]; do
    case $1 in
        --seconds) seconds=$2; shift 2 ;;
        --repeat) repeat=$2; shift 2 ;;
        --idle-conns) idle_conns=$2; shift 2 ;;
        --idle-seconds) idle_seconds=$2; shift 2 ;;
        --events) events=$2; shift 2 ;;
        *) echo "usage: ws-bench.sh [--seconds S] [--repeat N] [--idle-conns N] [--idle-seconds S] [--events file|off]" >&2
           exit 64 ;;
    esac
done

WSD=$top_builddir/wsd/mcpgw-wsd
BENCH=$top_builddir/bench/bench_ws
ECHO=$top_builddir/bench/echo_mcp
RELAY=$top_builddir/bench/relay
EVERYTHING=${MCPGW_NODE_MODULES:-$top_srcdir/node_modules}/@modelcontextprotocol/server-everything/dist/index.js
T=$(mktemp -d "${TMPDIR:-/tmp}/ws-bench.XXXXXX")
pid=
cleanup() {
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
json_str() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# min-max of a series: single runs move by +-15 % (a fresh node's JIT and
# GC), so the spread says how far a median can be trusted.
spread() { sort -n | awk 'NR==1 {lo=$1} {hi=$1} END {print lo "-" hi}'; }
case $events in
    file) events_json='"events": {"backend": "file"},' ;;
    off) # Port 9 (discard): nothing listens there on loopback; a refused
         # connection makes the store drop events at once.
         events_json='"events": {"backend": "redis", "redis": {"port": 9}},' ;;
    *) echo "ws-bench.sh: --events file|off" >&2; exit 64 ;;
esac

cat > "$T/gateway.json" <<JSON
{
  "gateway": {
    "tokenFile": "tokens.json", "stateDir": $(json_str "$T/state"),
    "limits": {"maxConnections": 100000, "maxConnectionsPerIp": 100000,
               "maxInFlightPerConnection": 1024},
    "websocket": {"pingIntervalMs": 10000},
    "tokenLimits": {"maxConcurrentCalls": 100000, "callsPerSecond": 1000000, "burst": 1000000},
    $events_json
    "log": {"file": "wsd.log", "level": "info"}
  },
  "mcpServers": {
    "everything": {"command": "node", "args": [$(json_str "$EVERYTHING"), "stdio"],
                   "maxInFlight": 1024},
    "echo": {"command": $(json_str "$ECHO"), "maxInFlight": 4096}
  }
}
JSON
chmod 644 "$T/gateway.json"
token=$("$top_builddir/cli/mcpgw" -c "$T/gateway.json" token add bench --scope '*' | tail -n 1)

"$WSD" -c "$T/gateway.json" --listen 127.0.0.1:0 --foreground 2>"$T/err" &
pid=$!
deadline=$((SECONDS + 30))
until grep -q 'listening on' "$T/err"; do
    [ $SECONDS -lt $deadline ] || { cat "$T/err"; exit 1; }
    sleep 0.1
done
port=$(grep -m1 -o 'listening on 127\.0\.0\.1:[0-9]*' "$T/err"); port=${port##*:}
# Servers are started at boot; wait until both answer.
until "$BENCH" calls --port "$port" --token "$token" --server everything --seconds 0.2 \
        --inflight 1 >/dev/null 2>&1 &&
      "$BENCH" calls --port "$port" --token "$token" --server echo --seconds 0.2 \
        --inflight 1 >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { echo "servers did not come up"; cat "$T/err"; exit 1; }
    sleep 0.2
done
sleep 1
idle_rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
echo "event stream: $events"
echo "1. idle daemon RSS with 2 servers (children excluded): $idle_rss KiB"

echo "2. server-everything echo, 64 in flight, ${seconds} s runs x $repeat (medians):"
# Four kinds of run, alternating: a bare tools/call straight to the
# server (the bar's baseline); the same with _meta.progressToken, which is
# what the gateway sends for a WebSocket call by default; and through wsd
# with the default call and with "progress": false (a bare call upstream);
# and the bare call through a relay that only copies bytes.
: > "$T/direct"; : > "$T/directp"; : > "$T/ws"; : > "$T/wsnp"; : > "$T/relay"
for i in $(seq "$repeat"); do
    "$BENCH" direct --seconds "$seconds" --inflight 64 -- node "$EVERYTHING" stdio 2>/dev/null |
        tee -a "$T/direct.log" | awk -F'\t' '$1=="direct" {print $2}' >> "$T/direct"
    "$BENCH" calls --port "$port" --token "$token" --server everything --seconds "$seconds" \
        --inflight 64 | tee -a "$T/ws.log" | awk -F'\t' '$1=="calls" {print $2}' >> "$T/ws"
    "$BENCH" direct --progress on --seconds "$seconds" --inflight 64 -- node "$EVERYTHING" \
        stdio 2>/dev/null | awk -F'\t' '$1=="direct" {print $2}' >> "$T/directp"
    "$BENCH" calls --progress off --port "$port" --token "$token" --server everything \
        --seconds "$seconds" --inflight 64 | awk -F'\t' '$1=="calls" {print $2}' >> "$T/wsnp"
    "$BENCH" direct --seconds "$seconds" --inflight 64 -- "$RELAY" node "$EVERYTHING" stdio \
        2>/dev/null | awk -F'\t' '$1=="direct" {print $2}' >> "$T/relay"
done
grep -hv '^direct	\|^calls	' "$T/direct.log" "$T/ws.log" | sed 's/^/   /'
d=$(median < "$T/direct"); w=$(median < "$T/ws")
dp=$(median < "$T/directp"); wn=$(median < "$T/wsnp")
div() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
# The bar compares the gateway with direct stdio doing the same work on the
# server: the same request upstream, bare both ways ("progress": false) or
# with _meta.progressToken both ways.  The default call asks for progress,
# which costs a Node server 10-15 % by itself, so its ratio against a bare
# direct call is printed too, for what a client that wants progress gets.
echo "   direct stdio, bare call: $d calls/s ($(spread < "$T/direct"));" \
     "with progressToken: $dp calls/s ($(spread < "$T/directp"))"
echo "   through wsd, \"progress\": false: $wn calls/s ($(spread < "$T/wsnp"));" \
     "default call: $w calls/s ($(spread < "$T/ws"))"
echo "   ratio, same request upstream (bar: 0.90): bare $(div "$wn" "$d")," \
     "with progressToken $(div "$w" "$dp")"
echo "   default call (asks for progress) vs bare direct: $(div "$w" "$d")"
r=$(median < "$T/relay")
echo "   a byte relay in the path (no parsing): $r calls/s ($(spread < "$T/relay")):" \
     "$(div "$r" "$d") of direct, the ceiling for any process in between"

echo "3. C echo server, 64 in flight, ${seconds} s runs x $repeat (median):"
: > "$T/echo"
for i in $(seq "$repeat"); do
    "$BENCH" calls --port "$port" --token "$token" --server echo --seconds "$seconds" \
        --inflight 64 | tee -a "$T/echo.log" | awk -F'\t' '$1=="calls" {print $2, $4}' >> "$T/echo"
done
grep -v '^calls' "$T/echo.log" | sed 's/^/   /'
e=$(awk '{print $1}' "$T/echo" | median)
echo "   median $e calls/s (bar: 50000)"

echo "4. $idle_conns authenticated idle connections for ${idle_seconds} s with pings:"
"$BENCH" idle --port "$port" --token "$token" --conns "$idle_conns" --seconds "$idle_seconds" \
    --pid "$pid" | sed 's/^/   /'
echo "   daemon still alive: $(kill -0 "$pid" && echo yes)"
