#!/usr/bin/env bash
# Cluster tests: one redis-server on a free loopback port (no persistence), three rayd in
# cluster mode, and nginx in front of them, round-robin, configured by docker/nginx.conf
# with only the addresses and paths changed (as tests/lb/lb_demo.sh does); then the
# cluster test binaries against them, in order (one pauses and empties Redis, one kills a
# node, the last two start a fourth node of their own and stop it). Everything
# started here is stopped at the end, whatever happens. Files go to $BUILD/cluster.
#
#   tests/cluster/run.sh [test binary...]     default: those in $BUILD/tests/cluster
#   tests/cluster/run.sh --api [test binary...]
#       the single-node API tests (default: every $BUILD/tests/api/test_*) through nginx
#       against the three nodes (RAYD_TEST_URL, tests/api/support/harness.h), leaving out
#       the tests tests/cluster/api_node_local.txt names as node-local, with its reason;
#       the nodes run with API_NODE_ARGS (the flags the tests' main servers use)
#
# The nodes may call 127.0.0.1:$RAYD_CLUSTER_WORKER_PORT (--remote-allow), where a test
# starts the example Python worker for remote actor classes.
#
# Environment: RAYD_BIN (default $BUILD/rayd), BUILD (default build). redis-server and
# nginx are installed from Debian when missing (as root). Prints one line per binary and
# "cluster-test: N passed, M failed"; exits 1 if anything failed.
set -u

cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
BUILD=${BUILD:-build}
OUT=$ROOT/$BUILD/cluster
RAYD=${RAYD_BIN:-$ROOT/$BUILD/rayd}
case "$RAYD" in /*) ;; *) RAYD=$ROOT/$RAYD ;; esac
MODE=cluster
if [ "${1:-}" = --api ]; then
    MODE=api
    shift
fi
# The API tests' main servers run with these (test_objects, test_tasks): so do the nodes.
# (test_objects' --max-wait 5 is left out: test_tasks wants the default.)
API_NODE_ARGS=(--memory-limit 256M --max-body 128M --workers 8)
NODE_ARGS=(--spillback-queued 2) # test_spillback needs a low threshold
[ "$MODE" = api ] && NODE_ARGS=("${API_NODE_ARGS[@]}")
if [ $# -gt 0 ]; then
    TESTS=("$@")
elif [ "$MODE" = api ]; then
    TESTS=()
    for t in "$BUILD"/tests/api/test_*; do
        case "$t" in *.d) ;; *) [ -x "$t" ] && TESTS+=("$t") ;; esac
    done
else
    TESTS=("$BUILD/tests/cluster/test_cluster_objects" "$BUILD/tests/cluster/test_cluster_tasks"
           "$BUILD/tests/cluster/test_cluster_waits"
           "$BUILD/tests/cluster/test_cluster_listing" "$BUILD/tests/cluster/test_cluster_actors"
           "$BUILD/tests/cluster/test_cluster_actor_failover" "$BUILD/tests/cluster/test_cluster_idempotency"
           "$BUILD/tests/cluster/test_cluster_redis"
           "$BUILD/tests/cluster/test_cluster_failure" "$BUILD/tests/cluster/test_cluster_observe"
           "$BUILD/tests/cluster/test_cluster_registry" # after those that count nodes or logs
           "$BUILD/tests/cluster/test_cluster_modules") # a fourth node with --module, as registry's
fi
NGINX=/usr/sbin/nginx
REDIS_PID=""
NGINX_PID=""
RAYD_PIDS=()
PASSED=0
FAILED=0

say() { echo "cluster-test: $*"; }

stop_all() {
    trap - EXIT INT TERM
    local pid
    for pid in "${RAYD_PIDS[@]}"; do
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    done
    [ -n "$NGINX_PID" ] && kill -QUIT "$NGINX_PID" 2>/dev/null
    for pid in "${RAYD_PIDS[@]}" $NGINX_PID; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null
    done
    # Redis last: the nodes remove their records as they stop. A test may have paused it,
    # or stopped it and started another on the same port (redis-restart.sh, pid file).
    [ -n "$REDIS_PID" ] && kill -CONT "$REDIS_PID" 2>/dev/null
    [ -n "$REDIS_PID" ] && kill -TERM "$REDIS_PID" 2>/dev/null && wait "$REDIS_PID" 2>/dev/null
    if [ -s "$OUT/redis-restarted.pid" ]; then
        local again
        again=$(cat "$OUT/redis-restarted.pid")
        kill -CONT "$again" 2>/dev/null
        kill -TERM "$again" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$again" 2>/dev/null || break; sleep 0.05; done
        rm -f "$OUT/redis-restarted.pid"
    fi
    RAYD_PIDS=()
    NGINX_PID=""
    REDIS_PID=""
}

abort() {
    echo "FAIL $*"
    for f in "$OUT"/rayd*.err; do
        [ -s "$f" ] && { echo "--- $f"; tail -n 5 "$f"; }
    done
    stop_all
    echo "cluster-test: $PASSED passed, $((FAILED + 1)) failed"
    exit 1
}
trap 'abort "interrupted"' INT TERM
trap stop_all EXIT

# --- tools ---------------------------------------------------------------------------
missing=""
command -v redis-server >/dev/null || missing="$missing redis-server"
command -v redis-cli >/dev/null || missing="$missing redis-tools"
[ -x "$NGINX" ] || missing="$missing nginx"
if [ -n "$missing" ]; then
    [ "$(id -u)" -eq 0 ] || abort "missing:$missing (apt-get install, as root)"
    say "installing:$missing"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing; } \
        >/dev/null || abort "apt-get install$missing failed"
fi
for t in curl python3; do command -v $t >/dev/null || abort "$t is missing"; done
[ -x "$RAYD" ] || abort "no rayd at $RAYD (make all)"
for t in "${TESTS[@]}"; do [ -x "$t" ] || abort "no test binary $t"; done

rm -rf "$OUT"
mkdir -p "$OUT/tmp" "$OUT/redis"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- Redis ---------------------------------------------------------------------------
RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT/redis" \
    >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$RPORT" ping 2>/dev/null)" = PONG ] && break
    kill -0 "$REDIS_PID" 2>/dev/null || abort "redis-server exited: $(tail -n 3 "$OUT/redis.log")"
    sleep 0.05
done
[ "$(redis-cli -p "$RPORT" ping 2>/dev/null)" = PONG ] || abort "redis-server did not answer"
say "redis-server on 127.0.0.1:$RPORT (pid $REDIS_PID)"
# For a test that stops Redis and starts it again on the same port (empty, as a restart
# without persistence): a daemon this script stops at the end through its pid file.
cat >"$OUT/redis-restart.sh" <<EOF
#!/bin/sh
exec redis-server --port $RPORT --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT/redis" \\
    --daemonize yes --pidfile "$OUT/redis-restarted.pid" --logfile "$OUT/redis-restarted.log"
EOF
chmod +x "$OUT/redis-restart.sh"

# --- three rayd in cluster mode ------------------------------------------------------------
# A port for the example Python worker that a test starts (remote actor classes), and
# nginx's port, chosen now: the nodes may call both (test_cluster_registry registers
# POST /v1/objects through nginx as a remote function's endpoint).
WPORT=$(free_port)
NPORT=$(free_port)
[ "$MODE" = cluster ] && NODE_ARGS+=(--remote-allow "http://127.0.0.1:$WPORT,http://127.0.0.1:$NPORT")
PORTS=()
for i in 1 2 3; do
    RAYD_CLUSTER=redis://127.0.0.1:$RPORT "$RAYD" --bind 127.0.0.1 --port 0 \
        --drain-timeout 5s "${NODE_ARGS[@]}" >"$OUT/rayd$i.log" 2>"$OUT/rayd$i.err" &
    RAYD_PIDS+=($!)
done
for i in 1 2 3; do
    port=""
    for _ in $(seq 1 200); do
        port=$(grep -m1 '"event":"listening"' "$OUT/rayd$i.log" 2>/dev/null |
               sed -n 's/.*"port":\([0-9]*\).*/\1/p')
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || abort "rayd $i did not log its listening port"
    PORTS+=("$port")
done
# Ready once joined (tag taken, heartbeat written, the others read).
for i in 0 1 2; do
    code=000
    for _ in $(seq 1 300); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${PORTS[i]}/readyz")
        [ "$code" = 200 ] && break
        sleep 0.05
    done
    [ "$code" = 200 ] || abort "rayd on port ${PORTS[i]} never became ready (joined)"
done
say "rayd on 127.0.0.1:${PORTS[0]}, :${PORTS[1]}, :${PORTS[2]} (pids ${RAYD_PIDS[*]})"

# --- nginx, configured by docker/nginx.conf ---------------------------------------------------
sed -e "s#server rayd1:8080 #server 127.0.0.1:${PORTS[0]} #" \
    -e "s#server rayd2:8080 #server 127.0.0.1:${PORTS[1]} #" \
    -e "s#server rayd3:8080 #server 127.0.0.1:${PORTS[2]} #" \
    -e "s#^\( *\)listen 8080;#\1listen 127.0.0.1:$NPORT;#" \
    -e "s#^pid .*;#pid $OUT/nginx.pid;#" \
    -e "s#^error_log [^ ;]*#error_log $OUT/error.log#" \
    -e "s#^\( *\)access_log [^ ;]*#\1access_log $OUT/access.log#" \
    -e "/^http {/a\\
    client_body_temp_path $OUT/tmp/body;\\
    proxy_temp_path $OUT/tmp/proxy;\\
    fastcgi_temp_path $OUT/tmp/fastcgi;\\
    uwsgi_temp_path $OUT/tmp/uwsgi;\\
    scgi_temp_path $OUT/tmp/scgi;" \
    docker/nginx.conf >"$OUT/nginx.conf"
grep -q 'rayd[123]:8080' "$OUT/nginx.conf" && abort "docker/nginx.conf changed shape: upstreams not replaced"
"$NGINX" -t -q -e "$OUT/error.log" -p "$OUT/" -c "$OUT/nginx.conf" 2>"$OUT/nginx-t.err" ||
    abort "nginx -t rejects the config: $(tail -n 3 "$OUT/nginx-t.err")"
"$NGINX" -e "$OUT/error.log" -p "$OUT/" -c "$OUT/nginx.conf" -g 'daemon off;' 2>>"$OUT/error.log" &
NGINX_PID=$!
code=000
for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$NPORT/healthz")
    [ "$code" = 200 ] && break
    kill -0 "$NGINX_PID" 2>/dev/null || abort "nginx exited: $(tail -n 3 "$OUT/error.log")"
    sleep 0.05
done
[ "$code" = 200 ] || abort "nginx does not answer on port $NPORT"
say "nginx on 127.0.0.1:$NPORT (pid $NGINX_PID)"

# --- the tests ------------------------------------------------------------------------------
export RAYD_CLUSTER_NODES="http://127.0.0.1:${PORTS[0]} http://127.0.0.1:${PORTS[1]} http://127.0.0.1:${PORTS[2]}"
export RAYD_CLUSTER_PIDS="${RAYD_PIDS[*]}"
export RAYD_CLUSTER_LB="http://127.0.0.1:$NPORT"
export RAYD_CLUSTER_REDIS="$REDIS_PID $RPORT"
export RAYD_CLUSTER_REDIS_RESTART="$OUT/redis-restart.sh"
export RAYD_CLUSTER_REDIS_PIDFILE="$OUT/redis-restarted.pid" # once a test restarted it
export RAYD_CLUSTER_LOGS="$OUT/rayd1.log $OUT/rayd2.log $OUT/rayd3.log"
export RAYD_CLUSTER_WORKER_PORT="$WPORT"
# Node-local API tests: "binary test-glob reason" lines; a glob of * is the whole binary.
node_local() { # binary name -> comma-separated globs to skip, or "*" for all
    awk -v b="$1" -v pending="${RAYD_CLUSTER_API_PENDING:-0}" \
        '$1 == b && !($3 == "pending" && pending == "1") { printf "%s%s", (n++ ? "," : ""), $2 }' \
        tests/cluster/api_node_local.txt 2>/dev/null
}
for t in "${TESTS[@]}"; do
    echo "== $t"
    if [ "$MODE" = api ]; then
        skip=$(node_local "$(basename "$t")")
        if [ "$skip" = "*" ]; then
            echo "skipped as a whole: $(awk -v b="$(basename "$t")" \
                '$1 == b { k = $3; $1 = ""; $2 = ""; $3 = ""; sub(/^ +/, "");
                           print k ": " $0 "; it runs on one node in make test"; exit }' \
                tests/cluster/api_node_local.txt)"
            continue
        fi
        if RAYD_TEST_URL=$RAYD_CLUSTER_LB RAYD_TEST_SKIP=$skip "$t"; then
            PASSED=$((PASSED + 1))
        else
            FAILED=$((FAILED + 1))
            echo "FAILED: $t"
        fi
        continue
    fi
    if "$t"; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); echo "FAILED: $t"; fi
done

# --- every node still running stops cleanly ----------------------------------------------------
for i in 0 1 2; do
    pid=${RAYD_PIDS[i]}
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)
    if [ -z "$state" ] || [ "$state" = Z ]; then # the one a test killed
        { wait "$pid"; } 2>/dev/null
        RAYD_PIDS[i]=""
        continue
    fi
    kill -TERM "$pid"
    wait "$pid"
    rc=$?
    RAYD_PIDS[i]=""
    if [ "$rc" -eq 0 ]; then
        PASSED=$((PASSED + 1))
    else
        FAILED=$((FAILED + 1))
        echo "FAILED: rayd $((i + 1)) exited $rc on SIGTERM"
    fi
done
stop_all
echo "cluster-test: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
