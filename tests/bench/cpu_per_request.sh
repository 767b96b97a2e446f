#!/usr/bin/env bash
# CPU per request of a running server under wrk: what the ratio benchmarks cannot show on
# a 2-core machine where wrk and the server share the cores.
#
#   tests/bench/cpu_per_request.sh PORT [SECONDS] [LUA_SCRIPT] [PATH]
#
# Runs `wrk -t2 -c32 -dSECONDS -s LUA_SCRIPT http://127.0.0.1:PORT/PATH` (defaults: 5 s,
# tests/bench/task_echo.lua, /v1/tasks: benchmark f's load) against the process listening
# with `--port PORT` on its command line, and prints one line: requests per second, the
# server's CPU time (user + system, from /proc/PID/stat) per request, wrk's CPU time per
# request, and the machine's idle and steal shares during the run. Interleave rounds of two
# servers (e.g. two builds, or rayd and build/bench/bare_server) to compare them.
set -euo pipefail
port=${1:?usage: cpu_per_request.sh PORT [SECONDS] [LUA_SCRIPT] [PATH]}
secs=${2:-5}
here=$(cd "$(dirname "$0")" && pwd)
lua=${3:-$here/task_echo.lua}
path=${4:-/v1/tasks}
pid=$(pgrep -f -- "--port $port( |$)" | head -1 || true)
[[ -n $pid ]] || { echo "no process with --port $port" >&2; exit 2; }
ticks=$(getconf CLK_TCK)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
read -r _ u0 n0 s0 i0 w0 q0 sq0 st0 _ </proc/stat
c0=$(cpu_ticks "$pid")
out=$({ /usr/bin/time -f "WRKCPU %U %S" wrk -t2 -c32 -d"${secs}s" -s "$lua" \
    "http://127.0.0.1:$port$path"; } 2>&1)
c1=$(cpu_ticks "$pid")
read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ </proc/stat
rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
wrk_cpu=$(awk '/WRKCPU/ { print $2 + $3 }' <<<"$out")
[[ -n $rps && -n $wrk_cpu ]] || { echo "wrk failed: $out" >&2; exit 1; }
total=$(((u1 + n1 + s1 + i1 + w1 + q1 + sq1 + st1) - (u0 + n0 + s0 + i0 + w0 + q0 + sq0 + st0)))
awk -v port="$port" -v rps="$rps" -v secs="$secs" -v srv=$((c1 - c0)) -v hz="$ticks" \
    -v wrk="$wrk_cpu" -v idle=$((i1 - i0)) -v steal=$((st1 - st0)) -v tot="$total" 'BEGIN {
    n = rps * secs
    printf "%s: %.0f req/s  server %.1f us/req  wrk %.1f us/req  idle %.0f%%  steal %.0f%%\n",
        port, rps, srv / hz / n * 1e6, wrk / n * 1e6, 100 * idle / tot, 100 * steal / tot }'
