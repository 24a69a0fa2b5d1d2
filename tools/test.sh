#!/usr/bin/env bash
# tools/test.sh - the test command (CI runs it through .ci/run).
#
# Installs what is missing (tools/setup.sh), regenerates the build system,
# then builds and runs `make check` twice, out of tree:
#   build/plain  ../../configure --enable-werror
#   build/asan   ../../configure --enable-werror --enable-sanitizers
# and between the two `make check-valgrind` in build/plain (memcheck over
# the unit tests and a set of integration tests, ~3-4 min on 2 cores).
# On a failure it prints the logs that say why, so CI output is enough.
# Ends with one summary line: "tests: N passed, N failed, N skipped".
# One test by hand: make -C build/plain check TESTS=tests/check_hub
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=$(date +%s)

say() { printf 'test: %s\n' "$*"; }

bash tools/setup.sh

# Out-of-tree builds refuse a source tree that is configured in place (and
# in-tree objects would shadow theirs through VPATH), so clean it first.
if [ -f config.status ]; then
    say "the source tree is configured in-tree; running 'make distclean' first"
    if [ -f Makefile ]; then
        make distclean >/dev/null 2>&1 || true
    fi
    if [ -f config.status ]; then
        say "'make distclean' did not unconfigure the source tree; clean it by hand" >&2
        exit 1
    fi
fi

say "autogen"
./autogen.sh >/dev/null

passed=0 failed=0 skipped=0 checks=0

# Adds the results of one build's test run (automake .trs files) to the counts;
# with NEWER, only the .trs files written after that file (one later run).
count_results() {
    local dir=$1 newer=${2:-} trs res n
    while IFS= read -r -d '' trs; do
        while IFS= read -r res; do
            case $res in
                PASS|XFAIL) passed=$((passed + 1)) ;;
                SKIP) skipped=$((skipped + 1)) ;;
                *) failed=$((failed + 1)) ;;
            esac
        done < <(sed -n 's/^:test-result: //p' "$trs")
        # Check programs log "100%: Checks: N, Failures: 0, Errors: 0".
        n=$(sed -n 's/^[0-9]*%: Checks: \([0-9]*\),.*/\1/p' "${trs%.trs}.log" 2>/dev/null | head -n 1)
        checks=$((checks + ${n:-0}))
    done < <(find "$dir" -name '*.trs' ${newer:+-newer "$newer"} -print0)
}

# Prints why a build failed: the test-suite log (it holds every failing
# test's log; SUITE_LOG names another one), else the logs of failed tests
# one by one.
show_failure() {
    local dir=$1 suite=${2:-test-suite.log} trs
    if [ -f "$dir/$suite" ]; then
        say "----- $dir/$suite -----"
        cat "$dir/$suite"
    fi
    while IFS= read -r -d '' trs; do
        if grep -qE '^:test-result: (FAIL|ERROR|XPASS)' "$trs"; then
            say "FAILED: ${trs%.trs}"
            if [ ! -f "$dir/$suite" ] && [ -f "${trs%.trs}.log" ]; then
                cat "${trs%.trs}.log"
            fi
        fi
    done < <(find "$dir" -name '*.trs' -print0)
}

run_build() {
    local name=$1 dir=build/$1
    shift
    say "=== $dir: configure --enable-werror $* ==="
    rm -rf "$dir"
    mkdir -p "$dir"
    if ! (cd "$dir" && ../../configure --enable-werror "$@" >configure.out 2>&1); then
        cat "$dir/configure.out"
        tail -n 60 "$dir/config.log" 2>/dev/null || true
        say "$name: configure failed"
        return 1
    fi
    say "=== $dir: make ==="
    if ! make -C "$dir" -j2; then
        say "$name: build failed"
        return 1
    fi
    say "=== $dir: make check ==="
    if ! make -C "$dir" -j2 check; then
        count_results "$dir"
        show_failure "$dir"
        say "$name: make check failed"
        return 1
    fi
    count_results "$dir"
}

# The npm MCP servers live in the source tree; distcheck's unpacked copy and
# any out-of-tree build find them through this.
export MCPGW_NODE_MODULES="$PWD/node_modules"

status=0
run_build plain || status=1
if [ $status -eq 0 ]; then
    # The release tarball builds, installs and uninstalls cleanly
    # (automake's distcheck), and runs from the tarball every unit test and
    # one integration test of each kind, so that a file a test needs but
    # the tarball lacks fails here.  The whole suite ran above on the same
    # sources; running it all again from the tarball would add ~6 minutes.
    say "=== build/plain: make distcheck ==="
    dist_tests='$(unit_tests) tests/fuzz/replay.test tests/cli.test tests/wsd-protocol.test
        tests/wsd-http.test tests/wsd-rest.test tests/wsd-quota.test tests/fcgi-raw.test
        tests/webservers/fcgi-direct.test tests/webservers/ws-lighttpd.test'
    if ! make -C build/plain -j2 distcheck TESTS="$(echo $dist_tests)" \
            >build/plain/distcheck.out 2>&1; then
        tail -n 80 build/plain/distcheck.out
        say "plain: make distcheck failed"
        status=1
    fi
fi
if [ $status -eq 0 ]; then
    # valgrind memcheck on the plain build: every Check program with
    # CK_FORK=no, and cli, wsd-protocol, wsd-faults, fcgi-direct and
    # lighttpd (spawn-fcgi) with our daemons and CLI under valgrind (see
    # check-valgrind in Makefile.am).  Its runs replace those tests' plain
    # .trs files, which are already counted: count only the new ones.
    say "=== build/plain: make check-valgrind ==="
    vg_started=$(date +%s)
    touch build/plain/valgrind.stamp
    if ! make -C build/plain -j2 check-valgrind; then
        show_failure build/plain test-suite-valgrind.log
        say "plain: make check-valgrind failed"
        status=1
    fi
    count_results build/plain build/plain/valgrind.stamp
    say "check-valgrind took $(( $(date +%s) - vg_started )) s"
fi
if [ $status -eq 0 ]; then
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    run_build asan --enable-sanitizers || status=1
fi
if [ $status -eq 0 ]; then
    # libFuzzer on every parser for a minute each (clang); a crash stops the
    # run and its reproducer belongs in tests/fuzz/corpus/<target>/.
    say "=== build/asan: make fuzz (FUZZ_SECONDS=${FUZZ_SECONDS:-60} per target) ==="
    if ! make -C build/asan fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}"; then
        say "fuzzing found a crash; see build/asan/tests/fuzz/*.log and build/asan/crash-*"
        status=1
    fi
fi

if [ $status -ne 0 ] && [ $failed -eq 0 ]; then
    failed=1    # a build or configure failure: no test result says so
fi
say "finished in $(( $(date +%s) - started )) s; the test programs ran $checks Check test cases"
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit $status
