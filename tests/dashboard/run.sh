#!/usr/bin/env bash
# The dashboard in a real browser: Debian's chromium driven by playwright-core (pinned in
# package.json) against a rayd started here with RAYD_API_TOKEN set.
#
#   tests/dashboard/run.sh     (BUILD=build, RAYD_BIN=$BUILD/rayd; DASHBOARD_TASKS=100000)
#
# Builds nothing (the Makefile's dashboard-test target builds rayd and installs chromium).
# Screenshots of every page go to $BUILD/dashboard/. Exits non-zero when a check failed.
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
out=$BUILD/dashboard
mkdir -p "$out"
token=dash-$$-$RANDOM
log=$out/rayd.log
RAYD_API_TOKEN=$token "$RAYD_BIN" --bind 127.0.0.1 --port 0 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
port=""
for _ in $(seq 1 200); do
    port=$(grep -o '"port":[0-9]*' "$log" | head -1 | cut -d: -f2)
    [ -n "$port" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
done
if [ -z "$port" ]; then
    echo "dashboard: rayd did not start" >&2
    cat "$log" >&2
    exit 1
fi
RAYD_URL=http://127.0.0.1:$port RAYD_TOKEN=$token SCREENSHOT_DIR=$out \
    node tests/dashboard/test.mjs
