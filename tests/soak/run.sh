#!/usr/bin/env bash
# rayd soak and fault test (`make soak`): builds tests/soak/soak.c, starts build/rayd and the
# example Python worker on loopback (ephemeral ports), runs a mixed workload for SOAK_SECONDS
# while the worker is SIGKILLed (at 1/3) and restarted (at 1/2), checks what rayd answered,
# then SIGTERMs rayd and requires exit status 0.
#
#   tests/soak/run.sh                       (SOAK_SECONDS=60 by default)
#
# Environment:
#   SOAK_SECONDS=N        load duration (default 60)
#   SOAK_CONCURRENCY=N    flows in flight (default 32)
#   SOAK_HOLD_MB=N        MiB of objects the client keeps alive (default 320, over the
#                         store limit below, so LRU eviction is exercised)
#   SOAK_MEMORY_LIMIT=S   rayd --memory-limit (default 256M)
#   SOAK_WORKERS=N        rayd --workers (default 8: sleep tasks hold a worker each)
#   SOAK_MAX_TASKS=N      stop submitting tasks beyond this many (default 80000, under the
#                         100,000 ended task records rayd remembers: RAYD_MAX_TASK_RECORDS)
#   SOAK_MAX_TOMBSTONES=N rayd --max-tombstones (default 20000: refs freed long before
#                         answer 404, tracked by the client against the server's count)
#   SOAK_MAX_DEAD_ACTORS=N rayd --max-dead-actors (default 1000)
#   SOAK_SETTLE=S         after freeing everything, the longest wait for rayd's allocator to
#                         report its freed pages given back before RSS is read (default 10)
#   SOAK_SEED=N           random seed (default: from the clock; printed in the report)
#   SOAK_WORKER=path      the remote worker (default examples/python/worker.py)
#   RAYD_BIN=path         the server under test (default build/rayd, built by `make all`)
#   SOAK_RAYD_ENV="A=b .." extra environment for rayd only, e.g. to try an allocator setting:
#                         SOAK_RAYD_ENV=GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072
#
# Writes build/soak/report.md (also printed), logs in build/soak/. The last line is
# `soak: N passed, M failed`; the exit status is non-zero when a check failed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

SOAK_SECONDS=${SOAK_SECONDS:-60}
SOAK_CONCURRENCY=${SOAK_CONCURRENCY:-32}
SOAK_HOLD_MB=${SOAK_HOLD_MB:-320}
SOAK_MEMORY_LIMIT=${SOAK_MEMORY_LIMIT:-256M}
SOAK_WORKERS=${SOAK_WORKERS:-8}
SOAK_MAX_TASKS=${SOAK_MAX_TASKS:-80000}
SOAK_SETTLE=${SOAK_SETTLE:-10}
SOAK_MAX_TOMBSTONES=${SOAK_MAX_TOMBSTONES:-20000}
SOAK_MAX_DEAD_ACTORS=${SOAK_MAX_DEAD_ACTORS:-1000}
SOAK_SEED=${SOAK_SEED:-$(( $(date +%s) * 1000 + RANDOM % 1000 ))}
SOAK_WORKER=${SOAK_WORKER:-examples/python/worker.py}
RAYD_BIN=${RAYD_BIN:-build/rayd}
SOAK_RAYD_ENV=${SOAK_RAYD_ENV:-}
DRAIN_TIMEOUT=10
OUT=build/soak

for v in SOAK_SECONDS SOAK_CONCURRENCY SOAK_HOLD_MB SOAK_WORKERS SOAK_MAX_TASKS SOAK_SEED \
    SOAK_MAX_TOMBSTONES SOAK_MAX_DEAD_ACTORS; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || {
        echo "run.sh: $v must be a positive integer" >&2
        exit 2
    }
done
[[ $SOAK_SETTLE =~ ^[0-9]+([.][0-9]+)?$ ]] || {
    echo "run.sh: SOAK_SETTLE must be a number of seconds" >&2
    exit 2
}

log() { printf '[soak] %s\n' "$*" >&2; }

mkdir -p "$OUT"
rm -f "$OUT"/checks.tsv "$OUT"/soak.md "$OUT"/report.md "$OUT"/*.log "$OUT"/worker.pid

# ---- build ------------------------------------------------------------------------------
if [[ $RAYD_BIN == build/rayd ]]; then
    make -s all >&2
fi
[[ -x $RAYD_BIN ]] || {
    echo "run.sh: $RAYD_BIN is not built" >&2
    exit 2
}
[[ -f $SOAK_WORKER ]] || {
    echo "run.sh: the worker $SOAK_WORKER is missing" >&2
    exit 2
}
cc -std=gnu11 -O2 -g -Wall -Wextra -Wshadow -o "$OUT/soak" tests/soak/soak.c \
    -lcurl -ljansson -pthread -lm

# ---- start the worker and rayd ----------------------------------------------------------
RAYD_PID=""
WORKER_PIDFILE=$OUT/worker.pid
cleanup() {
    local p
    if [[ -n $RAYD_PID ]]; then kill -9 "$RAYD_PID" 2>/dev/null || true; fi
    if [[ -f $WORKER_PIDFILE ]]; then
        p=$(cat "$WORKER_PIDFILE" 2>/dev/null || true)
        if [[ -n $p ]]; then kill -9 "$p" 2>/dev/null || true; fi
    fi
    if [[ -n ${WORKER0_PID:-} ]]; then kill -9 "$WORKER0_PID" 2>/dev/null || true; fi
    return 0
}
trap cleanup EXIT

# wait_line FILE REGEX SECONDS: the first line of FILE matching REGEX, waiting for it
wait_line() {
    local i line
    for ((i = 0; i < $3 * 20; i++)); do
        line=$(grep -m1 -E "$2" "$1" 2>/dev/null || true)
        if [[ -n $line ]]; then
            printf '%s\n' "$line"
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# The first worker, in a subshell that records how it ended (137: the soak's SIGKILL).
(
    python3 "$SOAK_WORKER" 0 >"$OUT/worker.log" 2>&1 &
    echo $! >"$WORKER_PIDFILE"
    st=0
    wait $! || st=$?
    echo "$st" >"$OUT/worker0.status"
) 2>/dev/null &
for ((i = 0; i < 100; i++)); do
    [[ -s $WORKER_PIDFILE ]] && break
    sleep 0.05
done
WORKER0_PID=$(cat "$WORKER_PIDFILE")
line=$(wait_line "$OUT/worker.log" 'listening on http://' 10) || {
    echo "run.sh: the worker did not start; $OUT/worker.log:" >&2
    cat "$OUT/worker.log" >&2
    exit 2
}
WORKER_PORT=${line##*:}
WORKER_URL=http://127.0.0.1:$WORKER_PORT
log "worker on $WORKER_URL (pid $WORKER0_PID)"

# What rayd remembers of finished work: every task record the soak checks at the end, and
# few tombstones and dead actors, so that forgetting them (404 after 410) is exercised and
# what stays after the final free is mostly the task records the RSS check allows for.
RAYD_ARGS=(--bind 127.0.0.1 --port 0 --remote-allow "$WORKER_URL" --workers "$SOAK_WORKERS"
    --memory-limit "$SOAK_MEMORY_LIMIT" --drain-timeout "${DRAIN_TIMEOUT}s"
    --max-task-records $((SOAK_MAX_TASKS + 1000)) --max-tombstones "$SOAK_MAX_TOMBSTONES"
    --max-dead-actors "$SOAK_MAX_DEAD_ACTORS")
# shellcheck disable=SC2086 # SOAK_RAYD_ENV is a list of NAME=value words
env $SOAK_RAYD_ENV "$RAYD_BIN" "${RAYD_ARGS[@]}" >"$OUT/rayd.log" 2>"$OUT/rayd.err" &
RAYD_PID=$!
line=$(wait_line "$OUT/rayd.log" '"event":"listening"' 10) || {
    echo "run.sh: rayd did not start; $OUT/rayd.err:" >&2
    cat "$OUT/rayd.err" >&2
    exit 2
}
RAYD_PORT=$(sed -n 's/.*"port": *\([0-9][0-9]*\).*/\1/p' <<<"$line")
BASE=http://127.0.0.1:$RAYD_PORT
log "rayd on $BASE (pid $RAYD_PID): ${RAYD_ARGS[*]}"

# ---- the soak ---------------------------------------------------------------------------
# Bounded: the load, up to 120 s to drain it, up to ~8 min of final checks.
SOAK_CMD=("$OUT/soak" --base "$BASE" --pid "$RAYD_PID" --worker-url "$WORKER_URL"
    --worker-pidfile "$WORKER_PIDFILE" --out "$OUT" --seconds "$SOAK_SECONDS"
    --concurrency "$SOAK_CONCURRENCY" --hold-mb "$SOAK_HOLD_MB" --max-tasks "$SOAK_MAX_TASKS"
    --settle "$SOAK_SETTLE" --seed "$SOAK_SEED" -- python3 "$SOAK_WORKER" "$WORKER_PORT")
set +e
timeout -k 5 $((SOAK_SECONDS + 600)) "${SOAK_CMD[@]}" 2>"$OUT/soak.log"
SOAK_STATUS=$?
set -e
log "load generator exited $SOAK_STATUS (log: $OUT/soak.log)"

WORKER_NOTE=""
if [[ -s $OUT/worker0.status ]]; then
    st=$(cat "$OUT/worker0.status")
    if [[ $st != 137 ]]; then
        WORKER_NOTE="The first worker ended with status $st, not by the soak's SIGKILL (137): something else stopped it."
        log "$WORKER_NOTE"
    fi
fi

# ---- SIGTERM: drain and exit 0 ------------------------------------------------------------
EXIT_DETAIL=""
RAYD_EXIT=-1
if kill -0 "$RAYD_PID" 2>/dev/null; then
    T0=$(date +%s.%N)
    kill -TERM "$RAYD_PID"
    for ((i = 0; i < (DRAIN_TIMEOUT + 10) * 20; i++)); do
        kill -0 "$RAYD_PID" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$RAYD_PID" 2>/dev/null; then
        EXIT_DETAIL="still running $((DRAIN_TIMEOUT + 10)) s after SIGTERM (killed)"
        kill -9 "$RAYD_PID" 2>/dev/null || true
        wait "$RAYD_PID" 2>/dev/null || true
    else
        set +e
        wait "$RAYD_PID"
        RAYD_EXIT=$?
        set -e
        EXIT_DETAIL="exit status $RAYD_EXIT, $(awk -v a="$T0" -v b="$(date +%s.%N)" \
            'BEGIN{printf "%.2f", b-a}') s after SIGTERM"
    fi
else
    set +e
    wait "$RAYD_PID"
    RAYD_EXIT=$?
    set -e
    EXIT_DETAIL="rayd died during the soak (status $RAYD_EXIT)"
    RAYD_EXIT=-2
fi
RAYD_PID=""

# ---- report -----------------------------------------------------------------------------
CHECKS=()
if [[ -s $OUT/checks.tsv ]]; then
    mapfile -t CHECKS <"$OUT/checks.tsv"
fi
case $SOAK_STATUS in
0 | 1) CHECKS+=($'load generator ran to the end\tPASS\t'"exit status $SOAK_STATUS") ;;
124 | 137) CHECKS+=($'load generator ran to the end\tFAIL\ttimed out (killed)') ;;
*) CHECKS+=($'load generator ran to the end\tFAIL\t'"exit status $SOAK_STATUS; see $OUT/soak.log") ;;
esac
if [[ $RAYD_EXIT == 0 ]]; then
    CHECKS+=($'SIGTERM: rayd drains and exits 0\tPASS\t'"$EXIT_DETAIL")
else
    CHECKS+=($'SIGTERM: rayd drains and exits 0\tFAIL\t'"$EXIT_DETAIL")
fi

PASSED=0
FAILED=0
{
    echo "## Soak: $SOAK_SECONDS s mixed load with a worker fault"
    echo
    echo "\`SOAK_SECONDS=$SOAK_SECONDS SOAK_SEED=$SOAK_SEED tests/soak/run.sh\` on $(nproc) cores," \
        "rayd \`${SOAK_RAYD_ENV:+$SOAK_RAYD_ENV }${RAYD_ARGS[*]}\`, worker \`$SOAK_WORKER\`, commit" \
        "\`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`$(git diff --quiet 2>/dev/null || echo ' (dirty tree)')."
    echo
    [[ -s $OUT/soak.md ]] && cat "$OUT/soak.md" && echo
    [[ -n $WORKER_NOTE ]] && echo "$WORKER_NOTE" && echo
    echo "| check | result | detail |"
    echo "|---|---|---|"
    for c in "${CHECKS[@]}"; do
        IFS=$'\t' read -r name result detail <<<"$c"
        if [[ $result == PASS ]]; then
            PASSED=$((PASSED + 1))
        else
            FAILED=$((FAILED + 1))
            result="**FAIL**"
        fi
        echo "| $name | $result | ${detail//|//} |"
    done
    echo
    echo "soak: $PASSED passed, $FAILED failed"
} >"$OUT/report.md"
cat "$OUT/report.md"
[[ $FAILED -eq 0 ]]
