#!/usr/bin/env bash
# Load-balancer demo and test: three build/rayd on 127.0.0.1 ephemeral ports behind a
# real nginx whose configuration is docker/nginx.conf itself, with only the upstream
# addresses, the listen address and the pid/log/temp paths changed (all under build/lb).
#
# Until rayd has a cluster mode every replica has its own object store: a ref lives
# only on the replica that made it. So this test does not expect put-then-get through
# nginx to work; it checks what a balancer in front of independent replicas must do:
#   - /healthz through nginx; all three replicas get traffic (their /metrics counts);
#   - X-Request-Id passes through (the client's own, or one nginx makes);
#   - a put through nginx lands on exactly one replica (direct GETs: one 200, two 404),
#     and a GET through nginx with ?timeout=0 is 200 with the same bytes or 404;
#   - a 256 KiB body passes both ways byte-exact; a body over 256 MiB is a 413;
#   - SIGTERM to one replica (graceful drain, exit 0) leaves /healthz through nginx at
#     200 every time, during the drain and after the exit (passive failover).
# Prints "lb-demo: N passed, M failed"; exits 1 if anything failed.
set -u

cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
LB=$ROOT/build/lb
RAYD=${RAYD_BIN:-$ROOT/build/rayd}
NGINX=/usr/sbin/nginx
PASSED=0
FAILED=0
RAYD_PIDS=()
PORTS=()
NGINX_PID=""

ok()   { PASSED=$((PASSED + 1)); echo "ok   $*"; }
bad()  { FAILED=$((FAILED + 1)); echo "FAIL $*"; }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
summary() { echo "lb-demo: $PASSED passed, $FAILED failed"; }

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
    RAYD_PIDS=()
    NGINX_PID=""
}

abort() {
    bad "$*"
    stop_all
    summary
    exit 1
}
trap 'abort "interrupted"' INT TERM
trap stop_all EXIT

# --- tools ---------------------------------------------------------------------------
if [ ! -x "$NGINX" ]; then
    [ "$(id -u)" -eq 0 ] || abort "nginx is missing (apt-get install nginx, as root)"
    echo "installing: nginx"
    # policy-rc.d or not, do not leave the distribution's nginx service running for this.
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; } \
        >/dev/null || abort "apt-get install nginx failed"
fi
[ -x "$RAYD" ] || make --no-print-directory all >/dev/null || abort "cannot build $RAYD"
for t in curl python3; do command -v $t >/dev/null || abort "$t is missing"; done

rm -rf "$LB"
mkdir -p "$LB/tmp"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- three replicas ------------------------------------------------------------------
for i in 1 2 3; do
    "$RAYD" --bind 127.0.0.1 --port 0 --drain-timeout 10s \
        >"$LB/rayd$i.log" 2>"$LB/rayd$i.err" &
    RAYD_PIDS+=($!)
done
for i in 1 2 3; do
    port=""
    for _ in $(seq 1 100); do
        port=$(grep -m1 '"event":"listening"' "$LB/rayd$i.log" 2>/dev/null |
               sed -n 's/.*"port":\([0-9]*\).*/\1/p')
        [ -n "$port" ] && break
        sleep 0.05
    done
    [ -n "$port" ] || abort "rayd $i did not log its listening port: $(cat "$LB/rayd$i.err")"
    PORTS+=("$port")
done
echo "replicas on 127.0.0.1:${PORTS[0]}, :${PORTS[1]}, :${PORTS[2]}"

# --- nginx, configured by docker/nginx.conf --------------------------------------------
NPORT=$(free_port)
URL=http://127.0.0.1:$NPORT
sed -e "s#server rayd1:8080 #server 127.0.0.1:${PORTS[0]} #" \
    -e "s#server rayd2:8080 #server 127.0.0.1:${PORTS[1]} #" \
    -e "s#server rayd3:8080 #server 127.0.0.1:${PORTS[2]} #" \
    -e "s#^\( *\)listen 8080;#\1listen 127.0.0.1:$NPORT;#" \
    -e "s#^pid .*;#pid $LB/nginx.pid;#" \
    -e "s#^error_log [^ ;]*#error_log $LB/error.log#" \
    -e "s#^\( *\)access_log [^ ;]*#\1access_log $LB/access.log#" \
    -e "/^http {/a\\
    client_body_temp_path $LB/tmp/body;\\
    proxy_temp_path $LB/tmp/proxy;\\
    fastcgi_temp_path $LB/tmp/fastcgi;\\
    uwsgi_temp_path $LB/tmp/uwsgi;\\
    scgi_temp_path $LB/tmp/scgi;" \
    docker/nginx.conf >"$LB/nginx.conf"

# The generated file must be docker/nginx.conf with only those lines changed.
config_same_shape() {
    local changed added
    changed=$(diff docker/nginx.conf "$LB/nginx.conf" | grep -c '^<')
    added=$(diff docker/nginx.conf "$LB/nginx.conf" | grep -c '^>')
    # 3 servers + listen + pid + error_log + access_log changed; 5 temp paths added.
    [ "$changed" -eq 7 ] && [ "$added" -eq 12 ] &&
        ! grep -q 'rayd[123]:8080\|/var/' "$LB/nginx.conf"
}
check "nginx config is docker/nginx.conf with only addresses and paths changed" config_same_shape

"$NGINX" -t -q -e "$LB/error.log" -p "$LB/" -c "$LB/nginx.conf" 2>"$LB/nginx-t.err" ||
    abort "nginx -t rejects the config: $(tail -n 3 "$LB/nginx-t.err")"
"$NGINX" -e "$LB/error.log" -p "$LB/" -c "$LB/nginx.conf" -g 'daemon off;' 2>>"$LB/error.log" &
NGINX_PID=$!
code=000
for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz")
    [ "$code" = 200 ] && break
    kill -0 "$NGINX_PID" 2>/dev/null || abort "nginx exited: $(tail -n 3 "$LB/error.log")"
    sleep 0.05
done
echo "nginx on $URL (pid $NGINX_PID)"

# --- helpers ----------------------------------------------------------------------------
status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
healthz_count() { # /healthz 200s a replica has answered, from its /metrics
    curl -s "http://127.0.0.1:$1/metrics" |
        awk '/^rayd_http_requests_total\{route="\/healthz",method="GET",status="200"\}/ { n = $2 }
             END { print n + 0 }'
}
json_field() { python3 -c "import json, sys; print(json.load(sys.stdin)[\"$1\"])"; }

# --- 1. health through nginx ------------------------------------------------------------
check "/healthz through nginx: 200" [ "$code" = 200 ]

# --- 2. every replica gets traffic --------------------------------------------------------
distribution() {
    local before=() after=() i total=0 ok=0
    for i in 0 1 2; do before[i]=$(healthz_count "${PORTS[i]}"); done
    for _ in $(seq 1 30); do
        [ "$(status_of "$URL/healthz")" = 200 ] || return 1
    done
    for i in 0 1 2; do
        after[i]=$(healthz_count "${PORTS[i]}")
        total=$((total + after[i] - before[i]))
        [ $((after[i] - before[i])) -gt 0 ] && ok=$((ok + 1))
    done
    echo "     30 x /healthz through nginx -> replicas got $((after[0] - before[0])), $((after[1] - before[1])), $((after[2] - before[2]))"
    [ "$ok" -eq 3 ] && [ "$total" -eq 30 ]
}
check "30 x /healthz through nginx: all 200, all three replicas reached" distribution

# --- 3. X-Request-Id ----------------------------------------------------------------------
# rayd writes request log lines in batches (within 50 ms): look for a while.
in_rayd_logs() {
    local i
    for i in $(seq 1 40); do
        grep -q "\"request_id\":\"$1\"" "$LB"/rayd[123].log && return 0
        sleep 0.05
    done
    return 1
}

request_id_passes() {
    local rid=lb-demo-$$-$RANDOM got
    got=$(curl -s -o /dev/null -D - -H "X-Request-Id: $rid" "$URL/healthz" |
          tr -d '\r' | sed -n 's/^[Xx]-[Rr]equest-[Ii]d: //p')
    [ "$got" = "$rid" ] && in_rayd_logs "$rid"
}
check "X-Request-Id sent by the client comes back and reaches rayd's log" request_id_passes

request_id_made() { # no id sent: nginx's $request_id (32 hex) is the one rayd uses
    local got
    got=$(curl -s -o /dev/null -D - "$URL/healthz" | tr -d '\r' |
          sed -n 's/^[Xx]-[Rr]equest-[Ii]d: //p')
    [[ "$got" =~ ^[0-9a-f]{32}$ ]] && in_rayd_logs "$got"
}
check "without X-Request-Id, nginx makes one and rayd uses it" request_id_made

# --- 4. a put lives on exactly one replica --------------------------------------------------
put_owner=""
put_on_one_replica() {
    local body="lb-demo object $$ $RANDOM" resp ref i code holders=0 missing=0
    resp=$(curl -s -X POST -H 'Content-Type: text/plain' --data-binary "$body" "$URL/v1/objects")
    ref=$(printf '%s' "$resp" | json_field ref 2>/dev/null) || return 1
    for i in 0 1 2; do
        code=$(curl -s -o "$LB/direct.out" -w '%{http_code}' \
               "http://127.0.0.1:${PORTS[i]}/v1/objects/$ref?timeout=0")
        if [ "$code" = 200 ] && [ "$(cat "$LB/direct.out")" = "$body" ]; then
            holders=$((holders + 1)); put_owner=$i
        elif [ "$code" = 404 ]; then
            missing=$((missing + 1))
        fi
    done
    echo "     ref $ref is on replica $((put_owner + 1)) only"
    [ "$holders" -eq 1 ] && [ "$missing" -eq 2 ] || return 1
    # Through nginx: whichever replica answers, 200 with the bytes or 404, never else.
    local n200=0 n404=0
    for _ in $(seq 1 9); do
        code=$(curl -s -o "$LB/via.out" -w '%{http_code}' "$URL/v1/objects/$ref?timeout=0")
        if [ "$code" = 200 ] && [ "$(cat "$LB/via.out")" = "$body" ]; then
            n200=$((n200 + 1))
        elif [ "$code" = 404 ]; then
            n404=$((n404 + 1))
        else
            return 1
        fi
    done
    echo "     9 x GET through nginx: $n200 x 200 (same bytes), $n404 x 404 (another replica)"
    [ "$n200" -gt 0 ]
}
check "put through nginx lands on exactly one replica; GET via nginx is 200 or 404" put_on_one_replica

# --- 5. big bodies ----------------------------------------------------------------------------
big_body() {
    local resp ref size owner="" i code
    head -c 262144 /dev/urandom >"$LB/big.in"
    resp=$(curl -s -X POST -H 'Content-Type: application/octet-stream' \
           --data-binary @"$LB/big.in" "$URL/v1/objects")
    ref=$(printf '%s' "$resp" | json_field ref 2>/dev/null) || return 1
    size=$(printf '%s' "$resp" | json_field size 2>/dev/null)
    [ "$size" = 262144 ] || return 1
    for i in 0 1 2; do
        code=$(curl -s -o "$LB/big.direct" -w '%{http_code}' \
               "http://127.0.0.1:${PORTS[i]}/v1/objects/$ref?timeout=0")
        [ "$code" = 200 ] && cmp -s "$LB/big.in" "$LB/big.direct" && owner=$i
    done
    [ -n "$owner" ] || return 1
    # And back out through nginx (bigger than its proxy buffers): round robin reaches
    # the owner within three requests per worker.
    for _ in $(seq 1 30); do
        code=$(curl -s -o "$LB/big.via" -w '%{http_code}' "$URL/v1/objects/$ref?timeout=0")
        if [ "$code" = 200 ]; then cmp -s "$LB/big.in" "$LB/big.via"; return; fi
        [ "$code" = 404 ] || return 1
    done
    return 1
}
check "256 KiB body through nginx: stored byte-exact, read back through nginx byte-exact" big_body

too_big() { # Content-Length over client_max_body_size: nginx refuses before reading it
    truncate -s 257M "$LB/huge.in"
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/octet-stream' \
           --data-binary @"$LB/huge.in" "$URL/v1/objects")
    rm -f "$LB/huge.in"
    [ "$code" = 413 ]
}
check "257 MiB body through nginx: 413 (client_max_body_size 256m = RAYD_MAX_BODY)" too_big

# --- 6. passive failover: SIGTERM one replica ------------------------------------------------
all_healthz_200() {
    local n=$1 i
    for i in $(seq 1 "$n"); do
        [ "$(status_of "$URL/healthz")" = 200 ] || return 1
    done
}

# Keep replica 1 busy so that its drain lasts its whole --drain-timeout (10 s), however slow
# the machine: a sleep task far longer than that, cancelled when the drain times out.
victim=0
vport=${PORTS[victim]}
vpid=${RAYD_PIDS[victim]}
curl -s -o /dev/null -X POST "http://127.0.0.1:$vport/v1/tasks" -d '{"function":"sleep","args":[600]}'
kill -TERM "$vpid"
readyz_503() { # the replica says it is draining
    local i
    for i in $(seq 1 100); do
        [ "$(status_of "http://127.0.0.1:$vport/readyz")" = 503 ] && return 0
        sleep 0.05
    done
    return 1
}
check "replica 1 draining: its /readyz is 503" readyz_503
check "replica 1 draining: 12 x /healthz through nginx all 200" all_healthz_200 12
wait "$vpid"
rc=$?
RAYD_PIDS[victim]=""
check "replica 1 stopped after its drain with exit code 0 (got $rc)" [ "$rc" -eq 0 ]
grep -q '"event":"stopped"' "$LB/rayd1.log" || bad "replica 1 logged no \"stopped\" line"
check "replica 1 gone: 30 x /healthz through nginx all 200" all_healthz_200 30
tasks_after_failover() { # POSTs too: a refused connect is retried, even for POST
    local i out
    for i in $(seq 1 6); do
        out=$(curl -s -H 'Prefer: wait=5' "$URL/v1/tasks" -d '{"function":"add","args":[2,2]}')
        [ "$out" = 4 ] || { echo "     got: $out"; return 1; }
    done
}
check "replica 1 gone: 6 x POST /v1/tasks (Prefer: wait) through nginx all answer 4" tasks_after_failover

# --- stop everything --------------------------------------------------------------------------
for i in 1 2; do kill -TERM "${RAYD_PIDS[i]}"; done
for i in 1 2; do
    wait "${RAYD_PIDS[i]}"
    rc=$?
    RAYD_PIDS[i]=""
    check "replica $((i + 1)) stopped on SIGTERM with exit code 0 (got $rc)" [ "$rc" -eq 0 ]
done
kill -QUIT "$NGINX_PID"
wait "$NGINX_PID"
NGINX_PID=""
stop_all

summary
[ "$FAILED" -eq 0 ]
