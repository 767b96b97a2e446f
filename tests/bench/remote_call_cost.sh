#!/usr/bin/env bash
# What one remote call costs rayd, in figures that hold still on a shared machine: the
# thread wake-ups (voluntary context switches, summed over all of rayd's threads) and the
# CPU time (schedstat) per call, besides the latency that benchmark j reports.
#
#   tests/bench/remote_call_cost.sh [CALLS]     (default 2000; RAYD_BIN as in run.sh)
#   QUICK=1 tests/bench/remote_call_cost.sh     (wordcount registered with "quick": true)
#
# Starts examples/python/worker.py (TCP_NODELAY, as run.sh's WORKER_PY) and rayd with
# --remote-allow for it, registers wordcount, and runs `taskbatch remote` (CALLS sequential
# calls each way, direct and through rayd, POST /v1/tasks with Prefer: wait=5). Prints
# taskbatch's sequential latencies and one line: rayd's wake-ups and CPU µs per call, over
# every call rayd ran in the taskbatch run (its 33 concurrent ones included).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
calls=${1:-2000}
RAYD_BIN=${RAYD_BIN:-build/rayd}
out=build/bench/remote-cost
mkdir -p "$out"
[[ -x build/bench/taskbatch ]] || cc -O2 -o build/bench/taskbatch tests/bench/taskbatch.c \
    $(pkg-config --cflags --libs libcurl) -lm

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
HOST=127.0.0.1 python3 -c 'import sys
sys.path.insert(0, "examples/python")
sys.argv = ["worker.py", "0"]
import worker
worker.Handler.disable_nagle_algorithm = True
worker.main()' >"$out/worker.out" 2>&1 &
pids+=($!)
wport= rport=
for _ in $(seq 100); do
    wport=$(sed -n 's|^worker listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$out/worker.out")
    [[ -n $wport ]] && break
    sleep 0.1
done
[[ -n $wport ]] || { echo "remote_call_cost: the worker did not start" >&2; exit 1; }
"$RAYD_BIN" --bind 127.0.0.1 --port 0 --remote-allow "http://127.0.0.1:$wport" >"$out/rayd.out" 2>&1 &
rpid=$!
pids+=("$rpid")
for _ in $(seq 100); do
    rport=$(grep -m1 '"event":"listening"' "$out/rayd.out" | sed -n 's/.*"port": *\([0-9][0-9]*\).*/\1/p' || true)
    [[ -n $rport ]] && break
    sleep 0.1
done
[[ -n $rport ]] || { echo "remote_call_cost: rayd did not start" >&2; exit 1; }
curl -sf -o /dev/null -X PUT -H 'Content-Type: application/json' \
    --data-binary "{\"url\":\"http://127.0.0.1:$wport/functions/wordcount\",\"timeout\":10${QUICK:+,\"quick\":true}}" \
    "http://127.0.0.1:$rport/v1/functions/wordcount"

# CPU nanoseconds and voluntary context switches, summed over the process's threads
threads_stat() {
    local t ns=0 cs=0 a v
    for t in /proc/"$1"/task/*; do
        read -r a _ <"$t/schedstat" || continue
        v=$(awk '/^voluntary_ctxt_switches/ { print $2 }' "$t/status" 2>/dev/null || echo 0)
        ns=$((ns + a)) cs=$((cs + v))
    done
    echo "$ns $cs"
}
before=$(threads_stat "$rpid")
build/bench/taskbatch remote "$wport" "$rport" wordcount "$calls" 16 32 >"$out/taskbatch.txt" 2>&1
after=$(threads_stat "$rpid")
ran=$(curl -s "http://127.0.0.1:$rport/metrics" | awk '/^rayd_task_run_seconds_count/ { print $2 }')
[[ -z ${QUICK:-} ]] || echo "quick_calls: $(curl -s "http://127.0.0.1:$rport/v1/functions/wordcount" | jq -c .quick_calls)"
grep -E '^(direct|rayd)_seq_(mean|p50|p99)_us=' "$out/taskbatch.txt"
echo "$before $after ${ran:-0}" | awk '$5 > 0 {
    printf "rayd per call: %.2f wake-ups, %.0f us CPU (%d calls)\n", ($4 - $2) / $5, ($3 - $1) / 1000 / $5, $5 }'
