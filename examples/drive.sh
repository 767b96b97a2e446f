#!/usr/bin/env bash
# A first walk through rayd's remote functions and remote actor classes, with curl.
#
# rayd runs no user code itself: you register the URL of an HTTP endpoint under a name, and
# every task calling that name becomes a POST from rayd to your endpoint (retried while the
# endpoint cannot be reached). A remote actor class works the same way, with the actor's
# state kept in rayd and sent along with each call. examples/python/worker.py and
# examples/node/worker.js are two such endpoints; this script registers one of them and
# drives it, printing every request and answer.
#
# 1. Start rayd, allowing it to call the worker (remote calls are off until you do):
#        build/rayd --remote-allow http://127.0.0.1:9000
# 2. Start a worker (or let this script start the Python one with --start-worker):
#        python3 examples/python/worker.py 9000      # or: node examples/node/worker.js 9000
# 3. Run:
#        examples/drive.sh [--start-worker]
#
# Environment:
#   RAYD_URL      rayd's address (default http://localhost:8080)
#   WORKER_PORT   the worker's port (default 9000)
#   WORKER_URL    the worker's address as rayd reaches it (default http://127.0.0.1:PORT)
#   WORKER        the command --start-worker runs, the port appended
#                 (default: python3 <this folder>/python/worker.py)
#
# Needs curl and jq.
set -euo pipefail

RAYD_URL=${RAYD_URL:-http://localhost:8080}
WORKER_PORT=${WORKER_PORT:-9000}
WORKER_URL=${WORKER_URL:-http://127.0.0.1:$WORKER_PORT}
HERE=$(cd "$(dirname "$0")" && pwd)
WORKER=${WORKER:-python3 $HERE/python/worker.py}

for tool in curl jq; do
    command -v "$tool" >/dev/null || { echo "drive.sh: $tool is needed" >&2; exit 1; }
done

if [ "${1:-}" = "--start-worker" ]; then
    $WORKER "$WORKER_PORT" &
    worker_pid=$!
    trap 'kill "$worker_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 50); do
        curl -sf "$WORKER_URL/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
fi

curl -sf "$RAYD_URL/healthz" >/dev/null ||
    { echo "drive.sh: no rayd at $RAYD_URL (set RAYD_URL)" >&2; exit 1; }
curl -sf "$WORKER_URL/healthz" >/dev/null ||
    { echo "drive.sh: no worker at $WORKER_URL (start one, or pass --start-worker)" >&2; exit 1; }

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# call METHOD PATH [JSON] [curl options...]: prints the request, then the status and body.
# The body is kept in $BODY for the caller.
call() {
    local method=$1 path=$2 data=${3:-}
    shift $(( $# >= 3 ? 3 : $# ))
    printf '$ curl -X %s %s%s' "$method" "$path" "${data:+ -d '$data'}"
    local a
    for a in "$@"; do case $a in *' '*) printf " '%s'" "$a" ;; *) printf ' %s' "$a" ;; esac; done
    printf '\n'
    local out
    if [ -n "$data" ]; then
        out=$(curl -s -w '\n%{http_code}' -X "$method" -H 'Content-Type: application/json' \
              "$@" --data-binary "$data" "$RAYD_URL$path")
    else
        out=$(curl -s -w '\n%{http_code}' -X "$method" "$@" "$RAYD_URL$path")
    fi
    STATUS=${out##*$'\n'}
    BODY=${out%$'\n'*}
    if [ -n "$BODY" ] && jq -e . >/dev/null 2>&1 <<<"$BODY"; then
        printf '%s ' "$STATUS"; jq -c . <<<"$BODY"
    else
        printf '%s %s\n' "$STATUS" "$BODY"
    fi
}

step "Register the worker's functions (PUT /v1/functions/{name})"
# The name is yours to choose; "fail" is a built-in, so the worker's /functions/fail is
# registered as "failing" (PUT /v1/functions/fail would be 409 Conflict).
for pair in wordcount:wordcount slow:slow failing:fail byte_length:byte_length; do
    name=${pair%%:*} endpoint=${pair#*:}
    call PUT "/v1/functions/$name" \
         "{\"url\":\"$WORKER_URL/functions/$endpoint\",\"timeout\":30,\"max_retries\":2}"
    if [ "$STATUS" = 403 ]; then
        echo "rayd refuses to call $WORKER_URL: $(jq -r .detail <<<"$BODY")" >&2
        echo "Start it with --remote-allow $WORKER_URL (or RAYD_REMOTE_ALLOW=$WORKER_URL)." >&2
        exit 1
    fi
done
call GET /v1/functions/wordcount

step "Run one: Prefer: wait answers with the result itself"
call POST /v1/tasks '{"function":"wordcount","args":["the cat and the hat sat on the mat"]}' \
     -H 'Prefer: wait=5'

step "Chain it: a built-in task takes the remote result as {\"\$ref\": ...}"
call POST /v1/tasks '{"function":"wordcount","args":["to be or not to be"]}'
ref=$(jq -r .ref <<<"$BODY")
call POST /v1/tasks "{\"function\":\"mul\",\"args\":[{\"\$ref\":\"$ref\"},100]}" -H 'Prefer: wait=5'
echo "(6 words x 100)"

step "Several at once, then wait for all of them"
call POST /v1/tasks/batch '{"tasks":[
  {"function":"slow","kwargs":{"seconds":0.5}},
  {"function":"slow","kwargs":{"seconds":0.5}},
  {"function":"slow","kwargs":{"seconds":0.5}}]}'
refs=$(jq -c '[.tasks[].ref]' <<<"$BODY")
call POST /v1/wait "{\"refs\":$refs,\"num_returns\":3,\"timeout\":10}"
call POST /v1/objects/get "{\"refs\":$refs}"
echo "(three 0.5 s calls in about 0.5 s: remote calls run concurrently and hold no rayd thread)"

step "A failing endpoint: a non-2xx answer is a TaskError, its problem+json the cause"
call POST /v1/tasks '{"function":"failing","args":["the disk is full"]}' -H 'Prefer: wait=5'

step "Binary objects reach the endpoint as {\"\$bytes\": base64, \"content_type\"}"
echo '$ head -c 1000 /dev/urandom | curl -X POST /v1/objects -H "Content-Type: application/octet-stream" --data-binary @-'
bin_ref=$(head -c 1000 /dev/urandom | curl -s -H 'Content-Type: application/octet-stream' \
          --data-binary @- "$RAYD_URL/v1/objects" | jq -r .ref)
echo "ref $bin_ref"
call POST /v1/tasks "{\"function\":\"byte_length\",\"args\":[{\"\$ref\":\"$bin_ref\"}]}" \
     -H 'Prefer: wait=5'

step "A remote actor class: the state lives in rayd, the code in the worker"
call PUT /v1/actor-classes/Account "{\"url\":\"$WORKER_URL/classes/Account\",\"timeout\":10}"
call POST /v1/actors '{"class":"Account","args":[100]}'
actor=$(jq -r .actor_id <<<"$BODY")
call POST "/v1/actors/$actor/methods/deposit" '{"args":[50]}' -H 'Prefer: wait=5'
call POST "/v1/actors/$actor/methods/withdraw" '{"args":[500]}' -H 'Prefer: wait=5'
echo "(refused by the worker with 409 InsufficientFunds: the state is unchanged)"
call POST "/v1/actors/$actor/methods/withdraw" '{"args":[30]}' -H 'Prefer: wait=5'
call POST "/v1/actors/$actor/methods/balance" '{}' -H 'Prefer: wait=5'
call GET "/v1/actors/$actor"

step "Clean up"
call DELETE "/v1/actors/$actor"
call DELETE /v1/functions/slow
echo
echo "Done. The other registrations stay; remove them with DELETE /v1/functions/{name}"
echo "and DELETE /v1/actor-classes/Account."
