#!/usr/bin/env bash
# Memcheck over the daemon: runs API test binaries with RAYD_BIN=tests/valgrind/rayd.sh, so
# that every server they start runs under valgrind (one log per process in
# $BUILD/valgrind/rayd.<pid>.log), then checks every log:
#   - "ERROR SUMMARY: 0 errors" (a log without one: the process was killed before the end)
#   - "definitely lost: 0 bytes" when there is a leak summary at all
#   - no "Process terminating with default action of signal"
#   - a server the harness stopped with SIGTERM or SIGINT exited 0 (clean shutdown); one it
#     had to SIGKILL fails. The harness writes how each server ended to $RAYD_EXIT_LOG.
# Processes the tests run to completion themselves (rayd --help, a bad flag) have no exit
# entry: only their valgrind log is judged.
#
# Usage: tests/valgrind/run.sh [test_name ...]   (default: the list below; names are the
# binaries in $BUILD/tests/api, built beforehand, e.g. by `make valgrind`)
# Environment: BUILD (default build; must be an unsanitized build), VALGRIND_TEST_TIMEOUT
# (seconds per test binary, default 300).
#
# Not in the default list: test_modules (finds its example module next to $RAYD_BIN, which
# here is this folder's wrapper) and test_semantics (test_get_timeout_then_value's timing
# does not hold under valgrind's slowdown).
set -u
cd "$(dirname "$0")/../.." || exit 2
BUILD=${BUILD:-build}
TIMEOUT=${VALGRIND_TEST_TIMEOUT:-300}
DEFAULT_TESTS="test_objects test_tasks test_actors test_service test_long_poll test_bad_input
               test_config test_remote test_limits test_idempotency test_actor_stress"
if [ $# -gt 0 ]; then tests="$*"; else tests=$DEFAULT_TESTS; fi

if ! command -v valgrind >/dev/null 2>&1; then
    echo "installing valgrind"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind || exit 2
fi
if [ ! -x "$BUILD/rayd" ]; then
    echo "run.sh: $BUILD/rayd is missing (make all)" >&2
    exit 2
fi
if nm -an "$BUILD/rayd" 2>/dev/null | grep -q __asan_init; then
    echo "run.sh: $BUILD/rayd is built with AddressSanitizer; valgrind needs a plain build" >&2
    exit 2
fi

out=$BUILD/valgrind
rm -rf "$out"
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
export RAYD_BIN=tests/valgrind/rayd.sh
export RAYD_VALGRIND_DIR=$out
export RAYD_VALGRIND_REAL=$(cd "$BUILD" && pwd)/rayd
export RAYD_EXIT_LOG=$out/exits
: >"$RAYD_EXIT_LOG"

t_pass=0
t_fail=0
failed_tests=""
start=$(date +%s)
for t in $tests; do
    bin=$BUILD/tests/api/$t
    if [ ! -x "$bin" ]; then
        echo "FAIL $t: $bin is missing"
        t_fail=$((t_fail + 1))
        failed_tests="$failed_tests $t"
        continue
    fi
    # tests too timing-sensitive for valgrind's slowdown (a glob for RAYD_TEST_SKIP)
    case $t in
    test_remote) skip=test_endpoint_comes_back ;; # a worker started while retries back off
    *) skip= ;;
    esac
    t0=$(date +%s)
    RAYD_TEST_SKIP=$skip timeout -k 10 "$TIMEOUT" "$bin" >"$out/$t.out" 2>&1
    rc=$?
    took=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then
        echo "ok   $t (${took} s)"
        t_pass=$((t_pass + 1))
    else
        echo "FAIL $t (exit $rc, ${took} s): $out/$t.out"
        grep -E '^\[  (FAILED|ERROR)|^ERROR: ' "$out/$t.out" | grep -v 'listed below' | head -8 |
            sed 's/^/       /'
        t_fail=$((t_fail + 1))
        failed_tests="$failed_tests $t"
    fi
done

# ---- the logs
pass=0
fail=0
shopt -s nullglob
for log in "$out"/rayd.*.log; do
    pid=${log##*/rayd.}
    pid=${pid%.log}
    why=""
    if ! grep -q "ERROR SUMMARY:" "$log"; then
        why="no ERROR SUMMARY (killed before exiting?)"
    elif ! grep -q "ERROR SUMMARY: 0 errors" "$log"; then
        why=$(grep -m1 -o "ERROR SUMMARY: [0-9]* errors[^(]*" "$log")
    fi
    if grep -q "definitely lost:" "$log" && ! grep -q "definitely lost: 0 bytes" "$log"; then
        why="${why:+$why; }$(grep -m1 -o 'definitely lost: .*' "$log")"
    fi
    if grep -q "Process terminating with default action of signal" "$log"; then
        why="${why:+$why; }$(grep -m1 -o 'Process terminating with default action of signal [0-9]* ([A-Z]*)' "$log")"
    fi
    entry=$(grep -m1 "^pid=$pid " "$RAYD_EXIT_LOG")
    if [ -n "$entry" ]; then
        how=$(echo "$entry" | sed -n 's/.* how=\([a-z]*\).*/\1/p')
        sig=$(echo "$entry" | sed -n 's/.* sig=\([0-9-]*\).*/\1/p')
        st=$(echo "$entry" | sed -n 's/.* status=\([0-9-]*\).*/\1/p')
        if [ "$how" = signal ] && { [ "$sig" = 15 ] || [ "$sig" = 2 ]; } && [ "$st" != 0 ]; then
            why="${why:+$why; }exit status $st after signal $sig (want 0)"
        elif [ "$how" = signal ] && [ "$sig" = 9 ]; then
            why="${why:+$why; }SIGKILLed by the harness (a test failed, or it did not stop)"
        fi
    fi
    if [ -z "$why" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL $log: $why"
        # the first error's stack, for the reader
        grep -m1 -A12 -E '== (Invalid|Conditional|Use of|Syscall|Mismatched|Source and|[0-9,]+ bytes in [0-9,]+ blocks are definitely)' "$log" |
            sed 's/^/       /'
    fi
done

echo "tests: $t_pass passed, $t_fail failed${failed_tests:+ (}${failed_tests# }${failed_tests:+)}; $(($(date +%s) - start)) s"
echo "valgrind: $pass passed, $fail failed"
if [ $((pass + fail)) -eq 0 ]; then
    echo "run.sh: no valgrind logs were written" >&2
    exit 1
fi
[ $fail -eq 0 ] && [ $t_fail -eq 0 ]
