#!/usr/bin/env bash
# The dashboard in a real browser: Debian's chromium driven by playwright-core (pinned in
# package.json) against a rayd started here with RAYD_API_TOKEN set.
#
#   tests/dashboard/run.sh     (BUILD=build, RAYD_BIN=$BUILD/rayd; DASHBOARD_TASKS=100000)
#
# Then a redis-server and two rayd in cluster mode, for the overview's list of every node.
#
# Builds nothing (the Makefile's dashboard-test target builds rayd and installs chromium and
# redis-server). Screenshots of every page go to $BUILD/dashboard/. Exits non-zero when a
# check failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
RAYD_BIN=${RAYD_BIN:-$BUILD/rayd}
if [ ! -d node_modules/playwright-core ]; then
    npm ci --no-audit --no-fund || exit 1
fi
if [ ! -x /usr/bin/chromium ]; then
    echo "dashboard: /usr/bin/chromium is missing (apt-get install chromium)" >&2
    exit 2
fi
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    echo "dashboard: redis-server is missing (apt-get install redis-server)" >&2
    exit 2
fi
out=$BUILD/dashboard
mkdir -p "$out/redis"
token=dash-$$-$RANDOM
pids=()
stop_all() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
}
trap stop_all EXIT

# Starts rayd (extra environment as arguments) logging to $1; prints its port.
start_rayd() {
    local log=$1 port="" _
    shift
    env RAYD_API_TOKEN="$token" "$@" "$RAYD_BIN" --bind 127.0.0.1 --port 0 >"$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 200); do
        port=$(grep -o '"port":[0-9]*' "$log" | head -1 | cut -d: -f2)
        [ -n "$port" ] && break
        kill -0 "${pids[-1]}" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "dashboard: rayd did not start" >&2
        cat "$log" >&2
        exit 1
    fi
    echo "$port"
}

port=$(start_rayd "$out/rayd.log") || exit 1

# Cluster mode: Redis on a free port, two nodes, ready once joined.
rport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$out/redis" \
    >"$out/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$rport" ping 2>/dev/null)" = PONG ] && break
    sleep 0.05
done
node1=$(start_rayd "$out/node1.log" RAYD_CLUSTER=redis://127.0.0.1:$rport) || exit 1
node2=$(start_rayd "$out/node2.log" RAYD_CLUSTER=redis://127.0.0.1:$rport) || exit 1
for p in "$node1" "$node2"; do
    code=000
    for _ in $(seq 1 300); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/readyz")
        [ "$code" = 200 ] && break
        sleep 0.05
    done
    [ "$code" = 200 ] || { echo "dashboard: cluster node on :$p never joined" >&2; exit 1; }
done

RAYD_URL=http://127.0.0.1:$port RAYD_TOKEN=$token SCREENSHOT_DIR=$out \
    RAYD_CLUSTER_URLS="http://127.0.0.1:$node1 http://127.0.0.1:$node2" \
    node tests/dashboard/test.mjs
