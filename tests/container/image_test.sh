#!/usr/bin/env bash
# The container image test: build docker/Dockerfile with podman, run it, and check
# /healthz, a put/get round trip (byte-exact), /readyz, the HEALTHCHECK, the non-root
# user, and a clean stop (SIGTERM -> exit code 0). Then the set docker/compose.yaml
# describes: Redis, three rayd in cluster mode and nginx (docker/nginx.conf, addresses
# changed), started with podman run (no compose here) sharing one network namespace, and
# a put on one node read back byte-exact through the two others and through nginx.
#
# Works without a Docker engine or a registry, as on the machines this project is built on:
#   - podman keeps its storage under build/podman (make clean removes it);
#   - the Debian 12 base image is made locally with debootstrap from the mirror apt
#     already uses, and cached in build/podman as localhost/debian:bookworm;
#   - runc instead of crun, and lower ulimits on podman run.
# The Dockerfile itself is unchanged: only --build-arg BASE points at the local base.
# No registry means no redis or nginx image either: the cluster part builds one from the
# same local base with Debian's redis-server and nginx (cached as localhost/rayd-infra).
#
# Exit 0 when the test passes, or with one line "SKIP: podman cannot start containers
# here: <reason>" when podman cannot start any container at all; 1 on any other failure.
set -u

cd "$(dirname "$0")/../.." || exit 1
ROOT=$PWD
DIR=$ROOT/build/podman
BASE_IMAGE=localhost/debian:bookworm
INFRA_IMAGE=localhost/rayd-infra:bookworm
TAG=localhost/rayd-image-test:$$
NAME=rayd-image-test-$$
WORK=$DIR/tmp.$$
PACKAGES="podman runc debootstrap uidmap slirp4netns curl python3"
P=(podman --root "$DIR/storage" --runroot "$DIR/run" --runtime runc)
U=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)

log() { echo "image-test: $*"; }

cleanup() {
    trap - EXIT INT TERM
    if command -v podman >/dev/null 2>&1 && [ -d "$DIR/storage" ]; then
        # One at a time, the Redis container last: the others share its network namespace,
        # and podman refuses to remove it while they exist (a failed name also stops a
        # multi-name rm).
        local c
        for c in "$NAME" "$NAME-nginx" "$NAME-rayd1" "$NAME-rayd2" "$NAME-rayd3" "$NAME-redis"; do
            "${P[@]}" rm -f -t 0 "$c" >/dev/null 2>&1
        done
        "${P[@]}" rmi -f "$TAG" >/dev/null 2>&1
        # Build-stage layers (the compiler image) are dangling now; the base stays cached.
        "${P[@]}" image prune -f >/dev/null 2>&1
    fi
    rm -rf "$WORK"
}

fail() {
    echo "FAIL: $*"
    cleanup
    echo "image-test: 0 passed, 1 failed"
    exit 1
}

skip() {
    cleanup
    echo "SKIP: podman cannot start containers here: $*"
    exit 0
}

trap 'fail "interrupted"' INT TERM
trap cleanup EXIT

# --- tools -----------------------------------------------------------------------
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    [ "$(id -u)" -eq 0 ] || fail "missing packages:$missing (run as root, or install them)"
    log "installing:$missing"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing; } \
        >/dev/null || fail "apt-get install$missing failed"
fi
mkdir -p "$DIR" "$WORK"


# --- the Debian 12 base, made locally and cached -----------------------------------
# The mirror apt uses for bookworm (not -security/-updates), from deb822 or one-line
# sources; deb.debian.org if none is found.
debian_mirror() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'BEGIN { RS = ""; FS = "\n" }
             { uri = ""; ok = 0
               for (i = 1; i <= NF; i++) {
                   if ($i ~ /^URIs:/)   { split($i, a, /[ \t]+/); uri = a[2] }
                   if ($i ~ /^Suites:/) { if ($i ~ /[ \t]bookworm([ \t]|$)/) ok = 1 }
               }
               if (ok && uri != "") { print uri; exit } }' "$f"
    done
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
        awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) break
                           if ($(i + 1) == "bookworm") print $i }'
    echo http://deb.debian.org/debian
}

if ! "${P[@]}" image exists "$BASE_IMAGE"; then
    mirror=$(debian_mirror | head -n 1)
    log "making $BASE_IMAGE with debootstrap from $mirror (about a minute, cached afterwards)"
    rootfs=$WORK/rootfs
    debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -n 20 "$WORK/debootstrap.log"; fail "debootstrap from $mirror failed"; }
    tar -C "$rootfs" -c . | "${P[@]}" import - "$BASE_IMAGE" >/dev/null ||
        fail "podman import of the base rootfs failed"
    rm -rf "$rootfs"
fi

# Can podman start a container at all? If not, this machine cannot run the test.
if ! out=$("${P[@]}" run --rm "${U[@]}" "$BASE_IMAGE" true 2>&1); then
    skip "$(printf '%s\n' "$out" | grep -v '^\s*$' | tail -n 1)"
fi

# --- build -----------------------------------------------------------------------
# --format docker keeps HEALTHCHECK, which the OCI image format has no field for.
log "building $TAG from docker/Dockerfile"
start=$(date +%s)
if ! "${P[@]}" build --format docker --build-arg BASE="$BASE_IMAGE" -t "$TAG" \
        -f docker/Dockerfile . >"$WORK/build.log" 2>&1; then
    tail -n 30 "$WORK/build.log"
    fail "podman build failed"
fi
log "built in $(($(date +%s) - start)) s"

user=$("${P[@]}" image inspect -f '{{.Config.User}}' "$TAG")
[ "$user" = "10001:10001" ] || fail "image user is '$user', expected 10001:10001"
"${P[@]}" image inspect -f '{{.Config.Healthcheck}}' "$TAG" | grep -q healthz ||
    fail "image has no HEALTHCHECK on /healthz"

# --- run -------------------------------------------------------------------------
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
"${P[@]}" run -d --name "$NAME" "${U[@]}" -p "127.0.0.1:$PORT:8080" "$TAG" >/dev/null 2>"$WORK/run.err" ||
    fail "podman run failed: $(tail -n 1 "$WORK/run.err")"

code=000
for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/healthz" 2>/dev/null)
    [ "$code" = 200 ] && break
    sleep 0.1
done
[ "$code" = 200 ] || { "${P[@]}" logs "$NAME" 2>&1 | tail -n 20; fail "/healthz answered $code, expected 200"; }
log "ok /healthz 200"

# Byte-exact round trip: every byte value, NULs and CRLFs included.
python3 -c 'import os, sys; sys.stdout.buffer.write(bytes(range(256)) * 256 + os.urandom(65536))' >"$WORK/put.bin"
resp=$(curl -s -w '\n%{http_code}' -X POST -H 'Content-Type: application/octet-stream' \
    --data-binary @"$WORK/put.bin" "$URL/v1/objects")
code=${resp##*$'\n'}
[ "$code" = 201 ] || fail "put answered $code: ${resp%$'\n'*}"
ref=$(printf '%s' "${resp%$'\n'*}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["ref"])') ||
    fail "put answer has no ref"
code=$(curl -s -o "$WORK/get.bin" -w '%{http_code} %{content_type}' "$URL/v1/objects/$ref")
[ "$code" = "200 application/octet-stream" ] || fail "get answered '$code'"
cmp -s "$WORK/put.bin" "$WORK/get.bin" || fail "get returned different bytes than put"
log "ok put/get round trip, $(stat -c %s "$WORK/put.bin") bytes, byte-exact"

code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/readyz")
[ "$code" = 200 ] || fail "/readyz answered $code, expected 200"
log "ok /readyz 200"

uid=$("${P[@]}" exec "$NAME" id -u 2>/dev/null)
[ "$uid" = 10001 ] || fail "rayd runs as uid '$uid', expected 10001"
log "ok runs as uid 10001"

"${P[@]}" healthcheck run "$NAME" >/dev/null 2>&1 || fail "the image's HEALTHCHECK failed"
log "ok HEALTHCHECK passes"

# --- stop: SIGTERM, graceful drain, exit code 0 -------------------------------------
# -t above RAYD_DRAIN_TIMEOUT (25 s): a SIGKILL would show as exit code 137.
"${P[@]}" stop -t 35 "$NAME" >/dev/null 2>&1 || fail "podman stop failed"
state=$("${P[@]}" inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$NAME")
[ "$state" = "exited 0" ] || { "${P[@]}" logs "$NAME" 2>&1 | tail -n 5; fail "after podman stop: '$state', expected 'exited 0'"; }
"${P[@]}" logs "$NAME" 2>/dev/null | grep -q '"event":"stopped"' ||
    fail "no \"stopped\" log line after SIGTERM"
log "ok podman stop (SIGTERM): drained, exit code 0"

# --- cluster: Redis, three rayd in cluster mode, nginx -----------------------------------
# docker/compose.yaml's set, with podman run: the containers share the Redis container's
# network namespace (no DNS between containers needed), so the nodes listen on ports of
# their own (8081-8083, admin 9091-9093) and nginx reaches them on 127.0.0.1.
if ! "${P[@]}" image exists "$INFRA_IMAGE"; then
    log "building $INFRA_IMAGE (Debian's redis-server and nginx; cached afterwards)"
    printf 'ARG BASE\nFROM ${BASE}\nRUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server redis-tools nginx curl && rm -rf /var/lib/apt/lists/*\n' \
        >"$WORK/Containerfile.infra"
    "${P[@]}" build --build-arg BASE="$BASE_IMAGE" -t "$INFRA_IMAGE" -f "$WORK/Containerfile.infra" \
        "$WORK" >"$WORK/infra.log" 2>&1 || { tail -n 20 "$WORK/infra.log"; fail "building $INFRA_IMAGE failed"; }
fi
CPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
CURL=http://127.0.0.1:$CPORT
"${P[@]}" run -d --name "$NAME-redis" "${U[@]}" -p "127.0.0.1:$CPORT:8080" "$INFRA_IMAGE" \
    redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no >/dev/null 2>"$WORK/run.err" ||
    fail "podman run redis failed: $(tail -n 1 "$WORK/run.err")"
NET=(--network "container:$NAME-redis")
for i in 1 2 3; do
    "${P[@]}" run -d --name "$NAME-rayd$i" "${U[@]}" "${NET[@]}" \
        -e RAYD_CLUSTER=redis://127.0.0.1:6379 -e RAYD_PORT=808$i -e RAYD_ADMIN_PORT=909$i \
        -e RAYD_ADVERTISE_URL=http://127.0.0.1:808$i "$TAG" >/dev/null 2>"$WORK/run.err" ||
        fail "podman run rayd$i failed: $(tail -n 1 "$WORK/run.err")"
done
sed -e 's#server rayd\([123]\):8080 #server 127.0.0.1:808\1 #' docker/nginx.conf >"$WORK/nginx.conf"
grep -q 'rayd[123]:8080' "$WORK/nginx.conf" && fail "docker/nginx.conf changed shape: upstreams not replaced"
"${P[@]}" run -d --name "$NAME-nginx" "${U[@]}" "${NET[@]}" \
    -v "$WORK/nginx.conf:/etc/nginx/rayd.conf:ro" "$INFRA_IMAGE" \
    nginx -c /etc/nginx/rayd.conf -g 'daemon off;' >/dev/null 2>"$WORK/run.err" ||
    fail "podman run nginx failed: $(tail -n 1 "$WORK/run.err")"

# Every node joined (ready), and each sees three live nodes.
for i in 1 2 3; do
    code=000
    for _ in $(seq 1 200); do
        code=$("${P[@]}" exec "$NAME-rayd$i" curl -s -o /dev/null -w '%{http_code}' \
            "http://127.0.0.1:808$i/readyz" 2>/dev/null)
        [ "$code" = 200 ] && break
        sleep 0.1
    done
    [ "$code" = 200 ] || { "${P[@]}" logs "$NAME-rayd$i" 2>&1 | tail -n 10; fail "rayd$i never joined (/readyz $code)"; }
done
alive=$("${P[@]}" exec "$NAME-rayd1" curl -s http://127.0.0.1:8081/v1/status |
    python3 -c 'import json, sys; print(sum(n["alive"] for n in json.load(sys.stdin)["cluster"]["nodes"]))')
[ "$alive" = 3 ] || fail "node 1 sees $alive live nodes, expected 3"
code=000
for _ in $(seq 1 100); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$CURL/healthz" 2>/dev/null)
    [ "$code" = 200 ] && break
    sleep 0.1
done
[ "$code" = 200 ] || { "${P[@]}" logs "$NAME-nginx" 2>&1 | tail -n 10; fail "nginx /healthz answered $code"; }
log "ok cluster up: redis, three rayd joined (3 live nodes), nginx"

# A put on node 1, read through nodes 2 and 3 and six times through nginx, byte-exact.
"${P[@]}" cp "$WORK/put.bin" "$NAME-rayd1:/tmp/put.bin" 2>/dev/null ||
    "${P[@]}" exec -i "$NAME-rayd1" sh -c 'cat > /tmp/put.bin' <"$WORK/put.bin"
ref=$("${P[@]}" exec "$NAME-rayd1" curl -s -X POST -H 'Content-Type: application/octet-stream' \
    --data-binary @/tmp/put.bin http://127.0.0.1:8081/v1/objects |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["ref"])') || fail "put on node 1 failed"
for i in 2 3; do
    "${P[@]}" exec "$NAME-rayd$i" curl -s "http://127.0.0.1:808$i/v1/objects/$ref" >"$WORK/get$i.bin"
    cmp -s "$WORK/put.bin" "$WORK/get$i.bin" || fail "node $i returned other bytes for node 1's object"
done
for k in 1 2 3 4 5 6; do
    code=$(curl -s -o "$WORK/lb.bin" -w '%{http_code}' "$CURL/v1/objects/$ref")
    [ "$code" = 200 ] || fail "GET $k through nginx answered $code"
    cmp -s "$WORK/put.bin" "$WORK/lb.bin" || fail "GET $k through nginx returned other bytes"
done
log "ok put on node 1, byte-exact through nodes 2 and 3 and 6 times through nginx"
# A put through nginx, read back through nginx (round-robin: the other nodes too).
resp=$(curl -s -X POST --data-binary 'through nginx' "$CURL/v1/objects")
ref=$(printf '%s' "$resp" | python3 -c 'import json, sys; print(json.load(sys.stdin)["ref"])') ||
    fail "put through nginx: $resp"
for k in 1 2 3 4 5 6; do
    body=$(curl -s "$CURL/v1/objects/$ref")
    [ "$body" = "through nginx" ] || fail "GET $k through nginx of a put through nginx: '$body'"
done
# A task through nginx, answered in the same request (Prefer: wait).
body=$(curl -s -H 'Content-Type: application/json' -H 'Prefer: wait=10' \
    --data '{"function":"add","args":[20,22]}' "$CURL/v1/tasks")
[ "$body" = 42 ] || fail "task add(20, 22) through nginx answered '$body'"
log "ok put/get and a task through nginx"
for i in 1 2 3; do
    "${P[@]}" stop -t 35 "$NAME-rayd$i" >/dev/null 2>&1
    state=$("${P[@]}" inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$NAME-rayd$i")
    [ "$state" = "exited 0" ] || fail "rayd$i after podman stop: '$state'"
done
log "ok the three nodes stop cleanly (exit code 0)"

cleanup
echo "image-test: 2 passed, 0 failed"
exit 0
