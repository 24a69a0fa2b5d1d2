# valgrind-lib.sh - sourced by the integration tests that honour
# MCPGW_TEST_WRAPPER (`make check-valgrind` sets it; see Makefile.am).
#
# MCPGW_TEST_WRAPPER holds words a test puts in front of our own programs
# (mcpgw-wsd, mcpgw-fcgi, mcpgw-events.cgi, mcpgw), never in front of node,
# apache2 or lighttpd.  For valgrind it names its logs
# --log-file=%q{MCPGW_VG_DIR}/valgrind.%p.log: a test exports MCPGW_VG_DIR
# (its own temp directory, so parallel tests never read each other's logs)
# with vg_dir, and calls vg_check on it before it removes that directory.
#
# MCPGW_TEST_SLOW (a factor, 1 without a wrapper) stretches the tests' own
# deadlines for start-up and shutdown: valgrind runs our code 20-50 times
# slower.  It never stretches a limit the test proves.

# shellcheck disable=SC2206  # the wrapper is meant to be split into words
wrap=(${MCPGW_TEST_WRAPPER:-})
slow=${MCPGW_TEST_SLOW:-1}
# A full path: some starters (spawn-fcgi) exec without a PATH search.
if [ ${#wrap[@]} -gt 0 ] && [ "${wrap[0]#/}" = "${wrap[0]}" ]; then
    wrap[0]=$(command -v "${wrap[0]}") || {
        echo "MCPGW_TEST_WRAPPER: ${MCPGW_TEST_WRAPPER%% *} is not installed" >&2
        exit 99
    }
fi
if [ ${#wrap[@]} -gt 0 ] && [ -z "${MCPGW_TEST_SLOW:-}" ]; then
    slow=10
fi

# vg_dir DIR: the wrapped programs started from now on log into DIR.
vg_dir() {
    MCPGW_VG_DIR=$1
    export MCPGW_VG_DIR
}

# vg_check DIR: 0 when no valgrind log in DIR reports an error (a leak of a
# kind counted as one included: --errors-for-leak-kinds); otherwise prints
# the reports and returns 1.  A process killed by SIGKILL writes no summary;
# its log still counts if it holds any report (a stack trace).
vg_check() {
    local dir=$1 f bad=0 n=0
    [ ${#wrap[@]} -gt 0 ] || return 0
    for f in "$dir"/valgrind.*.log; do
        [ -f "$f" ] || continue
        n=$((n + 1))
        if grep -qE '^==[0-9]+== ERROR SUMMARY: [1-9]' "$f" ||
           { ! grep -q 'ERROR SUMMARY' "$f" && grep -qE '^==[0-9]+== +(at|by) 0x' "$f"; }; then
            bad=$((bad + 1))
            printf '# valgrind: %s\n' "$f"
            grep -E '^==[0-9]+== ' "$f" | grep -vE '^==[0-9]+== (Memcheck|Copyright|Using Valgrind|Command|Parent PID|HEAP SUMMARY|   (in use at exit|total heap usage)|For lists of|Rerun with)' |
                head -n 120 | sed 's/^/#   /'
        fi
    done
    printf '# valgrind: %d logs, %d with errors\n' "$n" "$bad"
    [ "$bad" -eq 0 ]
}
