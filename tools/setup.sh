#!/usr/bin/env bash
# tools/setup.sh - install what mcpgw needs to build, test and run, on Debian 12.
#
# Idempotent: installs only what is missing, runs `apt-get update` once and
# only when something must be installed, and never starts a service. As a
# normal user it works when everything is already there (apt is skipped);
# otherwise it names what is missing and the command to run as root.
#
# Debian's nodejs/npm are installed only when there is no `node` on PATH: a
# newer node that is already there (e.g. NodeSource's) is kept.
# Then the pinned Node packages (real MCP servers and web clients for the
# integration tests, see package.json) are installed with `npm ci` when
# node_modules is missing or older than package-lock.json.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive

say() { printf 'setup: %s\n' "$*"; }

packages=(build-essential autoconf automake libtool pkg-config git
          libjson-c-dev libssl-dev zlib1g-dev libfcgi-dev libmicrohttpd-dev libwslay-dev
          check libsubunit-dev valgrind libhiredis-dev redis-server
          clang libclang-rt-14-dev
          apache2 libapache2-mod-fcgid lighttpd spawn-fcgi curl)
missing=()
for p in "${packages[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
        missing+=("$p")
    fi
done
if ! command -v node >/dev/null 2>&1; then
    missing+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
fi

if [ ${#missing[@]} -eq 0 ]; then
    say "Debian packages: all ${#packages[@]} present"
else
    if [ "$(id -u)" -ne 0 ]; then
        say "missing Debian packages: ${missing[*]}" >&2
        say "run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
        say "(or run this script as root: sudo bash tools/setup.sh)" >&2
        exit 1
    fi
    say "installing Debian packages: ${missing[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v node >/dev/null 2>&1; then
    say "node is not on PATH even after installing nodejs" >&2
    exit 1
fi
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
    say "node $(node --version) at $(command -v node) is too old: the MCP servers need node >= 18" >&2
    exit 1
fi
say "node $(node --version) at $(command -v node), npm $(npm --version)"

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "npm ci (pinned MCP servers and clients from package-lock.json)"
    npm ci --no-audit --no-fund
else
    say "node_modules is up to date with package-lock.json"
fi
