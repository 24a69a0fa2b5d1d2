#!/usr/bin/env bash
# bench_rest.sh - REST tool calls and event streams through lighttpd +
# mcpgw-fcgi (bin-path), configured from deploy/lighttpd/ like the tests.
# Not a test: it prints figures.  Run from a build directory:
#   make bench-rest [BENCH_ARGS="--clients 64 --seconds 10 --streams 1000 --hold 30"]
#
#  1. REST: bench_rest_client, N concurrent keep-alive clients calling
#     server-everything's echo through lighttpd; calls/s and latency.
#  2. Baseline: bench_dispatch's "direct" figure - the same echo calls with
#     64 in flight written straight to the server's stdio - and the ratio.
#  3. SSE: sse_load.mjs holds M streams through lighttpd while tool calls
#     publish events: every heartbeat delivered?  memory per stream, and
#     publish->receive latency p50/p99 over every delivery.
# Use a build without sanitizers for meaningful figures.
clients=64 seconds=10 streams=1000 hold=30
while [ $# -gt 0 ]; do
    case $1 in
        --clients) clients=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --streams) streams=$2; shift 2 ;;
        --hold) hold=$2; shift 2 ;;
        *) echo "usage: bench_rest.sh [--clients N] [--seconds S] [--streams M] [--hold S]" >&2; exit 64 ;;
    esac
done
. "$top_srcdir/tests/webservers/lib.sh"
need lighttpd node curl "$fcgi_bin" "$cli"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# One token makes every call: lift its limits (gateway.tokenLimits) out of
# the way of the load.
TOKEN_LIMITS='{"maxConcurrentCalls": 100000, "callsPerSecond": 1000000, "burst": 1000000}' \
    HEARTBEAT_MS=5000 MAX_STREAMS=$((streams + 200)) setup_deployment
trap 'finish; exit 1' INT TERM
port=$(free_port)
render lighttpd/mcpgw-fastcgi.conf.in "$work/server/site.conf" "FCGI_THREADS=$((clients + 8))"
render lighttpd/lighttpd-standalone.conf.in "$work/server/lighttpd.conf" "SITE=$work/server/site.conf"
start_bg "$work/server/stderr.log" lighttpd -D -f "$work/server/lighttpd.conf"
wait_health "http://127.0.0.1:$port/api/v1/health" || { finish; exit 1; }
for _ in 1 2 3; do
    curl -s -o /dev/null -H "Authorization: Bearer $token_full" -H 'Content-Type: application/json' \
        -d '{"serverId":"everything","toolName":"echo","params":{"message":"warm"}}' \
        "http://127.0.0.1:$port/api/v1/tools/call"
done
fcgi_pid=$(pid_of_exe "$(readlink -f "$fcgi_bin")")

echo "== REST through lighttpd + mcpgw-fcgi: $clients clients, $seconds s =="
rest=$("$top_builddir/bench/bench_rest_client" --port "$port" --clients "$clients" \
       --seconds "$seconds" --token "$token_full")
echo "$rest"
echo "== direct stdio baseline (bench_dispatch, everything, 64 in flight) =="
direct=$(top_srcdir=$top_srcdir top_builddir=$top_builddir "$top_builddir/bench/bench_dispatch" \
         --server everything --inflight 64 --seconds "$seconds" --repeat 1 | grep -E '^everything')
echo "$direct"
rps=$(printf '%s\n' "$rest" | sed -n 's/^calls\/s=\([0-9]*\).*/\1/p')
dps=$(printf '%s\n' "$direct" | awk '{print $3}')
if [ -n "$rps" ] && [ -n "$dps" ] && [ "$dps" != 0 ]; then
    awk -v r="$rps" -v d="$dps" 'BEGIN { printf "REST/direct: %.2f (%d vs %d calls/s)\n", r / d, r, d }'
fi

echo "== $streams event streams through lighttpd, held $hold s =="
BASE="http://127.0.0.1:$port" TOKEN="$token_full" STREAMS="$streams" HOLD_S="$hold" \
    HEARTBEAT_MS=5000 EVENTS=20 FCGI_PID="$fcgi_pid" node "$top_srcdir/bench/sse_load.mjs"
rc=$?
finish || rc=1
exit $rc
