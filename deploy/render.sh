#!/bin/sh
# render.sh - fill in an mcpgw deploy template (deploy/apache/*.in,
# deploy/lighttpd/*.in): every @NAME@ is replaced by the value of NAME,
# given as NAME=VALUE arguments or taken from the defaults below, which
# `make install` sets to the installed paths.
#
#   render.sh TEMPLATE [NAME=VALUE ...] > OUTPUT
#
# A placeholder left without a value is an error (exit 1), so a rendered
# config never reaches a web server with an @NAME@ in it.  The tests render
# the very same templates with their own ports and directories.
set -eu

: "${SBINDIR:=/usr/local/sbin}"
: "${PKGLIBEXECDIR:=/usr/local/libexec/mcpgw}"
: "${SYSCONFDIR:=/usr/local/etc}"
: "${LOCALSTATEDIR:=/usr/local/var}"

if [ $# -lt 1 ] || [ ! -f "$1" ]; then
    echo "usage: render.sh TEMPLATE [NAME=VALUE ...] > OUTPUT" >&2
    exit 64
fi
template=$1
shift

# Defaults; arguments override them (later assignments win).
set -- "SBINDIR=$SBINDIR" "PKGLIBEXECDIR=$PKGLIBEXECDIR" \
    "CONFIG=$SYSCONFDIR/mcpgw/gateway.json" "RUNDIR=/run/mcpgw" \
    "FCGI_SOCKET=/run/mcpgw/fcgi.sock" "WSD_HOST=127.0.0.1" "WSD_PORT=3000" \
    "PORT=80" "BIND=127.0.0.1" "DOCROOT=/var/www/mcpgw" "LOGDIR=/var/log/mcpgw" \
    "USER=www-data" "GROUP=www-data" "SERVERROOT=/etc/apache2" \
    "APACHE_MODULES=/usr/lib/apache2/modules" \
    "FCGI_THREADS=16" "FCGID_PROCS=100" "SITE=/etc/mcpgw/site.conf" "$@"

script=
for kv in "$@"; do
    case $kv in
        *=*) ;;
        *) echo "render.sh: expected NAME=VALUE, got '$kv'" >&2; exit 64 ;;
    esac
    name=${kv%%=*}
    value=${kv#*=}
    case $name in
        ''|*[!A-Z0-9_]*) echo "render.sh: bad name '$name'" >&2; exit 64 ;;
    esac
    case $value in
        *'
'*) echo "render.sh: the value of $name has a line break" >&2; exit 64 ;;
    esac
    # Escape what sed's replacement treats specially: \ & and the delimiter.
    esc=$(printf '%s' "$value" | sed -e 's/[\\&|]/\\&/g')
    # Prepended: the last value given for a name is the one applied.
    script="s|@$name@|$esc|g
$script"
done

out=$(sed -e "$script" "$template")
left=$(printf '%s\n' "$out" | grep -o '@[A-Z][A-Z0-9_]*@' | sort -u | tr '\n' ' ' || true)
if [ -n "$left" ]; then
    echo "render.sh: $template: no value for $left" >&2
    exit 1
fi
printf '%s\n' "$out"
