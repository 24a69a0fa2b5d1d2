#!/usr/bin/env bash
# tools/run.sh - the run command: sudo bash tools/run.sh (or as root: bash tools/run.sh)
#
# Installs what is missing (tools/setup.sh), builds build/plain if needed,
# writes run/gateway.json for the two real MCP servers installed by npm
# (memory and everything), checks them through the mcpgw CLI, makes a
# development token (run/dev-token), then runs the gateway: mcpgw-wsd in
# the foreground on 127.0.0.1:3000 (MCPGW_LISTEN to change), serving /ws.
# For Apache or lighttpd in front, see docs/deployment.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

say() { printf 'run: %s\n' "$*"; }

bash tools/setup.sh

if [ ! -f build/plain/config.status ]; then
    if [ -f config.status ]; then
        # An in-tree configure blocks out-of-tree builds (see tools/test.sh).
        say "the source tree is configured in-tree; running 'make distclean' first"
        [ -f Makefile ] && { make distclean >/dev/null 2>&1 || true; }
        if [ -f config.status ]; then
            say "'make distclean' did not unconfigure the source tree; clean it by hand" >&2
            exit 1
        fi
    fi
    [ -x configure ] || ./autogen.sh >/dev/null
    say "configuring build/plain"
    mkdir -p build/plain
    (cd build/plain && ../../configure >/dev/null)
fi
say "building build/plain"
make -C build/plain -j2 >/dev/null

node=$(command -v node)
modules=$root/node_modules/@modelcontextprotocol
mkdir -p run
# JSON strings: the paths come from this machine, so escape \ and " in them.
json_str() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }
cat > run/gateway.json <<JSON
{
  "gateway": {
    "listen": [$(json_str "${MCPGW_LISTEN:-127.0.0.1:3000}")],
    "stateDir": $(json_str "$root/run/state")
  },
  "mcpServers": {
    "memory": {
      "command": $(json_str "$node"),
      "args": [$(json_str "$modules/server-memory/dist/index.js")],
      "env": { "MEMORY_FILE_PATH": $(json_str "$root/run/memory.jsonl") }
    },
    "everything": {
      "command": $(json_str "$node"),
      "args": [$(json_str "$modules/server-everything/dist/index.js"), "stdio"]
    }
  }
}
JSON
say "wrote run/gateway.json"

mcpgw=build/plain/cli/mcpgw
"$mcpgw" -c run/gateway.json servers
"$mcpgw" -c run/gateway.json call everything echo '{"message":"hello"}'

# A token for trying it out, made once and kept in run/ (mode 0600).
if [ ! -s run/dev-token ]; then
    (umask 077; "$mcpgw" -c run/gateway.json token add "dev-$(date +%s)" --scope '*' \
        | tail -n 1 > run/dev-token)
fi
say "gateway: ws://${MCPGW_LISTEN:-127.0.0.1:3000}/ws (token in run/dev-token); Ctrl-C stops it"
say "try:     node tests/test-websocket.js ws://${MCPGW_LISTEN:-127.0.0.1:3000}/ws \$(cat run/dev-token)"
say "watch:   tail -f run/logs/gateway.log | grep -E '(websocket|sse)'"
exec build/plain/wsd/mcpgw-wsd -c run/gateway.json --foreground
