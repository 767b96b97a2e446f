#!/usr/bin/env bash
# rayd benchmarks: every figure is a ratio against a baseline measured in the same run,
# because the machine is shared and its absolute numbers are noisy. See BENCHMARKS.md.
#
#   tests/bench/run.sh                    (or `make bench`, which runs `make all` first)
#
# Environment:
#   BENCH_ONLY=a,b,...  run only these benchmarks (default: all, in order)
#   BENCH_SECONDS=N     duration of each wrk run (default 10)
#   BENCH_ROUNDS=N      wrk rounds per side in a and b, alternated ABBA (default 2)
#   BENCH_KEEP=1        keep build/bench/big-1g.bin (the 1 GiB upload file) afterwards
#   BENCH_BIG_RUNS=N    runs of the 1 GiB put/get in benchmark c, best counts (default 3)
#   BENCH_TASK_ROUNDS=N rounds of 10,000 tasks in benchmark e (default 5)
#   BENCH_ACTORS=N      actors created in benchmark i (default 100000)
#   BENCH_REMOTE_CALLS=N        sequential remote calls per side in j (default 4000)
#   BENCH_REMOTE_CONC_CALLS=N   remote calls per side over 16 connections in j (default 8000)
#   BENCH_J_MODES="normal quick ..."  j's runs in order: wordcount registered without / with "quick"
#                               (default "normal quick quick normal")
#   BENCH_PROFILE_GETS=N        GETs profiled under callgrind in l (default 20000)
#   BENCH_CLIENT_ROUNDS=N       rounds per side of each workload in m (default 6)
#   BENCH_CLUSTER_BIG_RUNS=N    runs of the 1 GiB node-to-node get in n (default 3)
#   BENCH_N_ONLY=get,own,actor,state,batch,big  only these parts of n (default: all): get =
#                       100-byte GET through a non-owner, own = a node's own GET and task
#                       with/without RAYD_CLUSTER, actor = actor calls through a non-owner,
#                       state = remote-class calls with state_in_cluster vs not, batch =
#                       10,000 tasks on A waited through B, big = 1 GiB
#   BENCH_SPILL_ROUNDS=N        rounds of the spill write (4 runs each) and spilled GET in o (default 3)
#   RAYD_BIN=path       the server under test (default build/rayd)
#   BENCH_BARE_CONN_MEMORY=BYTES  the baseline's connection memory limit (default: rayd's,
#                       read from api/server.c, else 262144)
#
# Writes build/bench/report.md (and prints the same markdown on stdout). Exits non-zero
# only when a benchmark could not be run (server does not start, a sanity check fails,
# errors during the load); a missed target is reported as MISSED, exit status 0.
#
# Adding a benchmark: write a function bench_<name> that calls row/note/fail (see
# bench_a), and add <name> to BENCHES.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

BENCHES=(a b c d e f g h i j k l m n o) # registry of benchmarks, run in this order: bench_a, bench_b, ...

BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_ONLY=${BENCH_ONLY:-}
BENCH_KEEP=${BENCH_KEEP:-0}
RAYD_BIN=${RAYD_BIN:-build/rayd}
OUT=build/bench
LOGS=$OUT/logs
BARE_BIN=$OUT/bare_server
TASKBATCH_BIN=$OUT/taskbatch
BIG_FILE=$OUT/big-1g.bin
BIG_SIZE=$((1024 * 1024 * 1024))
WRK=(wrk -t2 -c32 "-d${BENCH_SECONDS}s" --latency)

for v in BENCH_SECONDS BENCH_ROUNDS BENCH_BIG_RUNS BENCH_TASK_ROUNDS BENCH_ACTORS \
    BENCH_REMOTE_CALLS BENCH_REMOTE_CONC_CALLS BENCH_PROFILE_GETS BENCH_CLIENT_ROUNDS \
    BENCH_CLUSTER_BIG_RUNS BENCH_SPILL_ROUNDS; do
    [[ ${!v:-1} =~ ^[1-9][0-9]*$ ]] || {
        echo "run.sh: $v must be a positive integer" >&2
        exit 2
    }
done

mkdir -p "$OUT" "$LOGS"

# ---------------------------------------------------------------------------------------
# Report state
ROWS=()     # markdown table rows
NOTES=()    # free-text lines under the table
COMMANDS=() # exact commands that produced the figures
FAILED=0

log() { printf '[bench] %s\n' "$*" >&2; }
note() { NOTES+=("$*"); }
# row BENCH METRIC BARE RAYD RATIO TARGET RESULT
row() {
    local out="|" x
    for x in "$@"; do out+=" $x |"; done
    ROWS+=("$out")
}
fail() {
    log "FAILED: $*"
    NOTES+=("**FAILED**: $*")
    FAILED=1
}
# shq ARGS...: the arguments as one shell-quoted line, for the report
shq() {
    local a out=""
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
            out+="$a "
        else
            out+="'${a//\'/\'\\\'\'}' "
        fi
    done
    printf '%s' "${out% }"
}
# Run a command, recording it for the report. Output goes to stdout as usual.
cmd() {
    COMMANDS+=("$(shq "$@")")
    "$@"
}
# verdict VALUE OP TARGET -> OK or MISSED (OP is >= or <=; or <). Ratios are judged before
# they are rounded for the table (0.596 is printed 0.60 but misses >= 0.60).
verdict() {
    awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN {
        ok = (op == ">=") ? (v >= t) : (op == "<=") ? (v <= t) : (v < t);
        print ok ? "OK" : "MISSED" }'
}
calc() { awk "BEGIN { printf \"$1\", $2 }"; }

# ---------------------------------------------------------------------------------------
# Servers. start_server NAME CMD... sets SRV_PID and SRV_PORT; all are stopped on exit.
# It waits START_TRIES x 0.1 s for the listening line (more under valgrind, see l).
SERVER_PIDS=()
SRV_PID=
SRV_PORT=
START_TRIES=100

start_server() {
    local name=$1
    shift
    local out=$LOGS/$name.stdout err=$LOGS/$name.stderr
    : >"$out"
    "$@" >"$out" 2>"$err" &
    SRV_PID=$!
    SERVER_PIDS+=("$SRV_PID")
    local i line
    for ((i = 0; i < START_TRIES; i++)); do
        line=$(grep -m1 '"event":"listening"' "$out" || true)
        if [[ -n $line ]]; then
            SRV_PORT=$(sed -n 's/.*"port": *\([0-9][0-9]*\).*/\1/p' <<<"$line")
            if [[ -n $SRV_PORT ]]; then
                log "$name listening on 127.0.0.1:$SRV_PORT (pid $SRV_PID)"
                return 0
            fi
        fi
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "$name did not start; stderr:"
    tail -5 "$err" >&2 || true
    stop_server "$SRV_PID"
    return 1
}

stop_server() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    local i
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do stop_server "$pid"; done
    if [[ $BENCH_KEEP != 1 ]]; then rm -f "$BIG_FILE" "$OUT"/batch-*.json; fi
    rm -f "$OUT"/actors-*.txt
}
trap cleanup EXIT

# The bare server's per-connection memory follows rayd's (api/server.c CONNECTION_MEMORY),
# because libmicrohttpd 0.9.75 zeroes the whole pool between two requests of a keep-alive
# connection (MHD_pool_reset): its size alone changes small-request throughput ~2x.
bare_conn_memory() {
    local expr
    expr=$(sed -n 's/^#define CONNECTION_MEMORY[[:space:]]*(\{0,1\}\([0-9 *]*\))\{0,1\}.*/\1/p' api/server.c 2>/dev/null | head -1)
    if [[ $expr =~ ^[0-9\ *]+$ ]]; then echo $((expr)); else echo 262144; fi
}
BARE_CONN_MEMORY=${BENCH_BARE_CONN_MEMORY:-$(bare_conn_memory)}
start_bare() {
    start_server bare "$BARE_BIN" --port 0 --threads 2 --connection-memory "$BARE_CONN_MEMORY"
}
# start_rayd NAME [extra args]
start_rayd() {
    local name=$1
    shift
    start_server "$name" "$RAYD_BIN" --bind 127.0.0.1 --port 0 "$@"
}

# kB fields of /proc/PID/status, returned in bytes
proc_bytes() { awk -v k="$2:" '$1 == k { print $2 * 1024 }' "/proc/$1/status"; }

# ---------------------------------------------------------------------------------------
# HTTP helpers
# post_object PORT FILE CONTENT_TYPE -> prints the ref (empty on failure)
post_object() {
    curl -s --max-time 60 -X POST --data-binary @"$2" -H "Content-Type: $3" \
        "http://127.0.0.1:$1/v1/objects" | jq -r '.ref // empty' 2>/dev/null || true
}

# sanity_rayd PORT: a 100-byte object round-trips, bytes and content type exact.
sanity_rayd() {
    local port=$1 f=$OUT/sanity.bin got=$OUT/sanity.got ref hdr
    head -c 100 /dev/urandom >"$f"
    ref=$(post_object "$port" "$f" application/x-bench-sanity)
    [[ -n $ref ]] || {
        echo "rayd POST /v1/objects returned no ref"
        return 1
    }
    hdr=$(curl -s --max-time 10 -D - -o "$got" "http://127.0.0.1:$port/v1/objects/$ref" || true)
    grep -qi '^content-type: application/x-bench-sanity' <<<"$hdr" || {
        echo "rayd GET /v1/objects/$ref: wrong Content-Type"
        return 1
    }
    cmp -s "$f" "$got" || {
        echo "rayd GET /v1/objects/$ref: bytes differ from what was posted"
        return 1
    }
}

# sanity_bare PORT: GET and POST answer 200 {}.
sanity_bare() {
    local port=$1 a b
    a=$(curl -s --max-time 10 -w ' %{http_code}' "http://127.0.0.1:$port/" || true)
    b=$(curl -s --max-time 10 -w ' %{http_code}' -X POST --data-binary 'x' \
        "http://127.0.0.1:$port/v1/objects" || true)
    [[ $a == '{} 200' && $b == '{} 200' ]] || {
        echo "bare server answered '$a' / '$b'"
        return 1
    }
}

# wrk_run LABEL ARGS... : runs wrk, sets W_RPS, W_P99_MS, W_NON2XX, W_SOCKERR, W_REQS
# (completed requests) and W_MAX_MS (largest latency).
wrk_run() {
    local label=$1
    shift
    local outf=$LOGS/wrk-$label.txt
    cmd "${WRK[@]}" "$@" >"$outf" 2>&1 || {
        W_RPS=
        return 1
    }
    W_RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$outf")
    W_P99_MS=$(awk '$1 == "99%" {
        v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        print (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : v }' "$outf")
    W_NON2XX=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$outf")
    W_NON2XX=${W_NON2XX:-0}
    W_SOCKERR=$(awk '/Socket errors:/ { s = 0; for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) s += $i; print s }' "$outf")
    W_SOCKERR=${W_SOCKERR:-0}
    # completed requests ("N requests in 10.00s, ...") and the largest latency seen (ms)
    W_REQS=$(awk '$2 == "requests" && $3 == "in" { print $1 }' "$outf")
    W_REQS=${W_REQS:-0}
    W_MAX_MS=$(awk '$1 == "Latency" && NF >= 4 {
        v = $4; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
        print (u == "us") ? v / 1000 : (u == "s") ? v * 1000 : (u == "m") ? v * 60000 : v; exit }' "$outf")
    W_MAX_MS=${W_MAX_MS:-0}
    log "$label: ${W_RPS:-?} req/s, p99 ${W_P99_MS:-?} ms, non-2xx $W_NON2XX, socket errors $W_SOCKERR"
    [[ -n $W_RPS ]]
}

# ---------------------------------------------------------------------------------------
# Benchmarks. Each starts the servers it needs on ephemeral loopback ports and stops them.

mean() { printf '%s\n' "$@" | awk '{ s += $1 } END { printf "%.2f", s / NR }'; }

# wrk_abba NAME BARE_URL RAYD_URL [WRK_ARGS...]: BENCH_ROUNDS (default 2) rounds of wrk,
# alternating bare, rayd, rayd, bare, ... so that drift in the machine's load hits both
# sides alike. Sets P_BARE_RPS, P_RAYD_RPS, P_BARE_P99, P_RAYD_P99 (means), P_NON2XX (rayd
# non-2xx answers, summed), P_RAYD_REQS, P_RAYD_SOCKERR (rayd's completed requests and socket
# errors, summed), P_RAYD_MAX_MS (rayd's largest latency), P_RAYD_RUNS (rayd runs) and P_RUNS
# (each run's req/s, in order); returns 1 if wrk fails.
wrk_abba() {
    local name=$1 burl=$2 rurl=$3
    shift 3
    local rounds=${BENCH_ROUNDS:-2} i k=0 side order=() brps=() rrps=() bp99=() rp99=()
    for ((i = 0; i < rounds; i++)); do
        if ((i % 2 == 0)); then order+=(bare rayd); else order+=(rayd bare); fi
    done
    P_NON2XX=0 P_RUNS="" P_RAYD_REQS=0 P_RAYD_SOCKERR=0 P_RAYD_MAX_MS=0 P_RAYD_RUNS=0
    for side in "${order[@]}"; do
        k=$((k + 1))
        if [[ $side == bare ]]; then
            wrk_run "$name-$k-bare" "$@" "$burl" || return 1
            if [[ $W_NON2XX != 0 ]]; then
                fail "$name: the bare server answered $W_NON2XX non-2xx"
                return 1
            fi
            brps+=("$W_RPS") bp99+=("$W_P99_MS")
        else
            wrk_run "$name-$k-rayd" "$@" "$rurl" || return 1
            P_NON2XX=$((P_NON2XX + W_NON2XX))
            P_RAYD_REQS=$((P_RAYD_REQS + W_REQS)) P_RAYD_SOCKERR=$((P_RAYD_SOCKERR + W_SOCKERR))
            P_RAYD_RUNS=$((P_RAYD_RUNS + 1))
            P_RAYD_MAX_MS=$(awk -v a="$P_RAYD_MAX_MS" -v b="$W_MAX_MS" 'BEGIN { print (b > a) ? b : a }')
            rrps+=("$W_RPS") rp99+=("$W_P99_MS")
        fi
        P_RUNS+="${P_RUNS:+, }$side $(calc %.0f "$W_RPS")"
    done
    P_BARE_RPS=$(mean "${brps[@]}") P_RAYD_RPS=$(mean "${rrps[@]}")
    P_BARE_P99=$(mean "${bp99[@]}") P_RAYD_P99=$(mean "${rp99[@]}")
}

# a) GET of a 100-byte object on rayd vs GET / on the bare server.
bench_a() {
    local bare rayd ref msg
    start_bare || { fail "a: bare server did not start"; return; }
    bare=$SRV_PID
    local bport=$SRV_PORT
    start_rayd rayd-a || { fail "a: rayd did not start"; stop_server "$bare"; return; }
    rayd=$SRV_PID
    local rport=$SRV_PORT
    if ! msg=$(sanity_bare "$bport") || ! msg=$(sanity_rayd "$rport"); then
        fail "a: $msg"
        stop_server "$bare"
        stop_server "$rayd"
        return
    fi
    head -c 100 /dev/urandom >"$OUT/obj100.bin"
    ref=$(post_object "$rport" "$OUT/obj100.bin" application/octet-stream)
    if [[ -z $ref ]]; then
        fail "a: could not store the 100-byte object"
        stop_server "$bare"
        stop_server "$rayd"
        return
    fi
    local ok=1
    wrk_abba a "http://127.0.0.1:$bport/" "http://127.0.0.1:$rport/v1/objects/$ref" ||
        { fail "a: wrk failed"; ok=0; }
    # the object must still be served exactly after the load
    curl -s --max-time 10 -o "$OUT/obj100.got" "http://127.0.0.1:$rport/v1/objects/$ref" || true
    cmp -s "$OUT/obj100.bin" "$OUT/obj100.got" || { fail "a: object bytes wrong after the load"; ok=0; }
    stop_server "$bare"
    stop_server "$rayd"
    [[ $ok == 1 ]] || return
    if [[ $P_NON2XX != 0 ]]; then
        fail "a: rayd answered $P_NON2XX non-2xx responses under load"
        return
    fi
    local ratio
    ratio=$(calc %.2f "$P_RAYD_RPS / $P_BARE_RPS")
    row a "GET 100 B object, req/s (p99 ms)" "$(calc %.0f "$P_BARE_RPS") ($P_BARE_P99)" \
        "$(calc %.0f "$P_RAYD_RPS") ($P_RAYD_P99)" "$ratio" ">= 0.70" "$(verdict "$(calc %.6f "$P_RAYD_RPS / $P_BARE_RPS")" '>=' 0.70)"
    note "a: req/s of each ${BENCH_SECONDS} s run, in order: $P_RUNS."
}

# b) POST of a 100-byte body: rayd /v1/objects vs the bare server.
bench_b() {
    local bare rayd msg
    start_bare || { fail "b: bare server did not start"; return; }
    bare=$SRV_PID
    local bport=$SRV_PORT
    start_rayd rayd-b || { fail "b: rayd did not start"; stop_server "$bare"; return; }
    rayd=$SRV_PID
    local rport=$SRV_PORT
    if ! msg=$(sanity_bare "$bport") || ! msg=$(sanity_rayd "$rport"); then
        fail "b: $msg"
        stop_server "$bare"
        stop_server "$rayd"
        return
    fi
    local ok=1
    wrk_abba b "http://127.0.0.1:$bport/v1/objects" "http://127.0.0.1:$rport/v1/objects" \
        -s tests/bench/post100.lua || { fail "b: wrk failed"; ok=0; }
    local objects rss
    objects=$(curl -s --max-time 10 "http://127.0.0.1:$rport/v1/status" |
        jq -r '.object_store.objects // empty' 2>/dev/null || true)
    rss=$(proc_bytes "$rayd" VmRSS)
    if ! msg=$(sanity_rayd "$rport"); then
        fail "b: after the load: $msg"
        ok=0
    fi
    stop_server "$bare"
    stop_server "$rayd"
    [[ $ok == 1 ]] || return
    if [[ $P_NON2XX != 0 ]]; then
        fail "b: rayd answered $P_NON2XX non-2xx responses under load"
        return
    fi
    local ratio
    ratio=$(calc %.2f "$P_RAYD_RPS / $P_BARE_RPS")
    row b "POST 100 B object, req/s (p99 ms)" "$(calc %.0f "$P_BARE_RPS") ($P_BARE_P99)" \
        "$(calc %.0f "$P_RAYD_RPS") ($P_RAYD_P99)" "$ratio" ">= 0.60" "$(verdict "$(calc %.6f "$P_RAYD_RPS / $P_BARE_RPS")" '>=' 0.60)"
    note "b: req/s of each ${BENCH_SECONDS} s run, in order: $P_RUNS."
    note "b: rayd keeps every object posted: ${objects:-?} objects at the end, RSS $(calc %.0f "${rss:-0} / 1048576") MiB (a long run stores millions; rayd's memory limit, 30% of RAM by default, evicts beyond it)."
}

# c) 1 GiB upload with curl: bare vs rayd, then GET of it from rayd; rayd peak RSS.
make_big_file() {
    if [[ -f $BIG_FILE && $(stat -c %s "$BIG_FILE") == "$BIG_SIZE" ]]; then return 0; fi
    log "creating $BIG_FILE (1 GiB of random bytes)"
    head -c "$BIG_SIZE" /dev/urandom >"$BIG_FILE.tmp"
    mv "$BIG_FILE.tmp" "$BIG_FILE"
}

# curl_time ARGS... : sets C_TIME (s), C_CODE, C_UP, C_DOWN
curl_time() {
    local w
    C_TIME=0 C_CODE=000 C_UP=0 C_DOWN=0
    COMMANDS+=("$(shq curl -s --max-time 300 -w '%{time_total} %{http_code} %{size_upload} %{size_download}' "$@")")
    w=$(curl -s --max-time 300 -w '%{time_total} %{http_code} %{size_upload} %{size_download}' "$@") || {
        C_CODE=000
        return 1
    }
    read -r C_TIME C_CODE C_UP C_DOWN <<<"$w"
}

bench_c() {
    local bare rayd msg runs=${BENCH_BIG_RUNS:-3}
    make_big_file || { fail "c: cannot create $BIG_FILE"; return; }
    cat "$BIG_FILE" >/dev/null # warm the page cache: every run reads it from memory
    # -T streams the file; curl 7.88 refuses `--data-binary @file` for a file of 1 GiB or more
    # (its MAX_FILE2MEMORY), and reads the whole file into memory before sending otherwise.
    local put=(-X POST -T "$BIG_FILE" -H 'Content-Type: application/octet-stream')

    start_bare || { fail "c: bare server did not start"; return; }
    bare=$SRV_PID
    local bport=$SRV_PORT
    if ! msg=$(sanity_bare "$bport"); then
        fail "c: $msg"
        stop_server "$bare"
        return
    fi
    start_rayd rayd-c --max-body 2G || { fail "c: rayd did not start"; stop_server "$bare"; return; }
    rayd=$SRV_PID
    local rport=$SRV_PORT
    if ! msg=$(sanity_rayd "$rport"); then
        fail "c: $msg"
        stop_server "$bare"
        stop_server "$rayd"
        return
    fi

    # Interleaved runs (bare put, rayd put, rayd get) so that both sides see the same
    # noise; the best of $runs counts for each. The object is deleted between runs.
    local i bare_t=999999 put_t=999999 get_t=999999 ref="" hdr=$OUT/big-put.json ok=1 runs_txt=""
    for ((i = 1; i <= runs; i++)); do
        curl_time -o /dev/null "${put[@]}" "http://127.0.0.1:$bport/v1/objects" || true
        if [[ $C_CODE != 200 || $C_UP != "$BIG_SIZE" ]]; then
            fail "c: bare upload answered $C_CODE after $C_UP bytes"
            ok=0
            break
        fi
        bare_t=$(awk -v a="$bare_t" -v b="$C_TIME" 'BEGIN { print (b < a) ? b : a }')
        runs_txt+="${runs_txt:+, }bare put $(calc %.2f "$BIG_SIZE / $C_TIME / 1e9")"

        curl_time -o "$hdr" "${put[@]}" "http://127.0.0.1:$rport/v1/objects" || true
        ref=$(jq -r '.ref // empty' "$hdr" 2>/dev/null || true)
        if [[ $C_CODE != 201 || -z $ref ]]; then
            fail "c: rayd 1 GiB upload answered $C_CODE: $(head -c 300 "$hdr")"
            ok=0
            break
        fi
        put_t=$(awk -v a="$put_t" -v b="$C_TIME" 'BEGIN { print (b < a) ? b : a }')
        runs_txt+=", rayd put $(calc %.2f "$BIG_SIZE / $C_TIME / 1e9")"

        curl_time -o /dev/null "http://127.0.0.1:$rport/v1/objects/$ref" || true
        if [[ $C_CODE != 200 || $C_DOWN != "$BIG_SIZE" ]]; then
            fail "c: rayd GET answered $C_CODE with $C_DOWN bytes"
            ok=0
            break
        fi
        get_t=$(awk -v a="$get_t" -v b="$C_TIME" 'BEGIN { print (b < a) ? b : a }')
        runs_txt+=", rayd get $(calc %.2f "$BIG_SIZE / $C_TIME / 1e9")"
        if ((i < runs)); then
            curl -s --max-time 10 -o /dev/null -X DELETE "http://127.0.0.1:$rport/v1/objects/$ref" || true
        fi
    done
    # the stored object must be exactly the file (checked outside the timed runs)
    if [[ $ok == 1 ]] && ! curl -s --max-time 300 "http://127.0.0.1:$rport/v1/objects/$ref" | cmp -s - "$BIG_FILE"; then
        fail "c: the 1 GiB object read back differs from the file"
        ok=0
    fi
    local hwm
    hwm=$(proc_bytes "$rayd" VmHWM) # peak over every put and get, and the check
    stop_server "$bare"
    stop_server "$rayd"
    [[ $ok == 1 ]] || return

    local gb=$BIG_SIZE bare_gbs put_gbs get_gbs r_put r_get hwm_gib
    bare_gbs=$(calc %.2f "$gb / $bare_t / 1e9")
    put_gbs=$(calc %.2f "$gb / $put_t / 1e9")
    get_gbs=$(calc %.2f "$gb / $get_t / 1e9")
    r_put=$(calc %.2f "$bare_t / $put_t")
    r_get=$(calc %.2f "$bare_t / $get_t")
    hwm_gib=$(calc %.2f "$hwm / 1073741824")
    row c "1 GiB PUT (curl -T), GB/s, best of $runs" "$bare_gbs" "$put_gbs" "$r_put" ">= 0.5" "$(verdict "$(calc %.6f "$bare_t / $put_t")" '>=' 0.5)"
    row c "1 GiB GET (curl) vs bare PUT, GB/s, best of $runs" "$bare_gbs" "$get_gbs" "$r_get" ">= 0.5" "$(verdict "$(calc %.6f "$bare_t / $get_t")" '>=' 0.5)"
    row c "rayd peak RSS (VmHWM), GiB" "-" "$hwm_gib" "-" "<= 2.2" "$(verdict "$hwm_gib" '<=' 2.2)"
    note "c: GB/s of each run, in order: $runs_txt."
}

# d) one million 16-byte objects through POST /v1/objects/batch; RSS per object.
bench_d() {
    local rayd msg n_batches=100 per_batch=10000
    log "writing $n_batches batch bodies of $per_batch objects"
    local i
    for ((i = 0; i < n_batches; i++)); do
        # each value is a 14-char JSON string: stored compact with its quotes, 16 bytes
        awk -v b="$i" -v n="$per_batch" 'BEGIN {
            printf "{\"objects\":[";
            for (j = 0; j < n; j++) printf "%s\"v%013d\"", (j ? "," : ""), b * n + j;
            printf "]}" }' >"$OUT/batch-$i.json"
    done

    start_rayd rayd-d --max-body 64M || { fail "d: rayd did not start"; return; }
    rayd=$SRV_PID
    local rport=$SRV_PORT
    if ! msg=$(sanity_rayd "$rport"); then
        fail "d: $msg"
        stop_server "$rayd"
        return
    fi
    # the value stored from a batch is the 16-byte compact JSON
    local r got
    r=$(curl -s --max-time 10 -X POST -H 'Content-Type: application/json' \
        --data-binary '{"objects":["abcdefghijklmn"]}' "http://127.0.0.1:$rport/v1/objects/batch" |
        jq -r '.refs[0] // empty' 2>/dev/null || true)
    got=$(curl -s --max-time 10 "http://127.0.0.1:$rport/v1/objects/$r" || true)
    if [[ -z $r || $got != '"abcdefghijklmn"' ]]; then
        fail "d: batch value read back as '$got' (ref '$r')"
        stop_server "$rayd"
        return
    fi

    local before after t0 t1 urls=()
    for ((i = 0; i < n_batches; i++)); do
        ((i == 0)) || urls+=(--next)
        urls+=(-s --max-time 120 -H 'Content-Type: application/json' -o /dev/null -w '%{http_code}\n'
            --data-binary @"$OUT/batch-$i.json" "http://127.0.0.1:$rport/v1/objects/batch")
    done
    before=$(proc_bytes "$rayd" VmRSS)
    t0=$(date +%s.%N)
    # one curl, one keep-alive connection, 100 requests in a row
    local codes
    codes=$(curl "${urls[@]}" | sort | uniq -c | xargs || true)
    t1=$(date +%s.%N)
    COMMANDS+=("curl -s --max-time 120 -H 'Content-Type: application/json' -o /dev/null -w '%{http_code}\\n' --data-binary @build/bench/batch-N.json http://127.0.0.1:PORT/v1/objects/batch --next ... (N = 0..99, one curl, one keep-alive connection)")
    after=$(proc_bytes "$rayd" VmRSS)
    local objects
    objects=$(curl -s --max-time 10 "http://127.0.0.1:$rport/v1/status" |
        jq -r '.object_store.objects // empty' 2>/dev/null || true)
    # spot check: the last object of the last batch
    r=$(curl -s --max-time 10 -X POST -H 'Content-Type: application/json' \
        --data-binary '{"objects":["zzzzzzzzzzzzzz"]}' "http://127.0.0.1:$rport/v1/objects/batch" |
        jq -r '.refs[0] // empty' 2>/dev/null || true)
    got=$(curl -s --max-time 10 "http://127.0.0.1:$rport/v1/objects/$r" || true)
    stop_server "$rayd"
    if [[ $codes != "$n_batches 201" ]]; then
        fail "d: batch POSTs answered: $codes"
        return
    fi
    if [[ $got != '"zzzzzzzzzzzzzz"' ]]; then
        fail "d: after the load a batch value read back as '$got'"
        return
    fi
    local n=$((n_batches * per_batch)) per overhead rate
    per=$(calc %.1f "($after - $before) / $n")
    overhead=$(calc %.1f "($after - $before) / $n - 16")
    rate=$(calc %.0f "$n / ($t1 - $t0)")
    row d "RSS per 16 B object (payload 16 B subtracted: overhead)" "-" "$per ($overhead)" "-" \
        "overhead < 200" "$(verdict "$overhead" '<' 200)"
    note "d: 1,000,000 objects stored in $(calc %.2f "$t1 - $t0") s ($rate objects/s, 100 requests of 10,000); RSS $(calc %.0f "$before / 1048576") -> $(calc %.0f "$after / 1048576") MiB; store reports ${objects:-?} objects."
}

# ---------------------------------------------------------------------------------------
# Tasks and actors (e-i). tests/bench/taskbatch.c is their libcurl client (built below,
# like the bare server); it prints key=value lines, read back with kv.
kv() { sed -n "s/^$2=//p" "$1" | head -1; }

# taskbatch LABEL ARGS...: runs the client, its key=value answer in $OUT/taskbatch-LABEL.txt,
# its stderr in the logs; on failure the last stderr line is in TB_ERR.
taskbatch() {
    local label=$1
    shift
    TB_OUT=$OUT/taskbatch-$label.txt TB_ERR=
    if ! cmd "$TASKBATCH_BIN" "$@" >"$TB_OUT" 2>"$LOGS/taskbatch-$label.stderr"; then
        TB_ERR=$(tail -1 "$LOGS/taskbatch-$label.stderr")
        return 1
    fi
}

# rayd_status PORT JQ_FILTER
rayd_status() {
    curl -s --max-time 10 "http://127.0.0.1:$1/v1/status" | jq -r "$2 // empty" 2>/dev/null || true
}

# e) task throughput: rounds of 10,000 `echo` tasks in one POST /v1/tasks/batch, then one
# POST /v1/wait with num_returns 10000 on all their refs; end to end, fresh refs each round.
bench_e() {
    local rayd msg rounds=${BENCH_TASK_ROUNDS:-5} n=10000
    start_rayd rayd-e || { fail "e: rayd did not start"; return; }
    rayd=$SRV_PID
    local rport=$SRV_PORT
    if ! msg=$(sanity_rayd "$rport"); then
        fail "e: $msg"
        stop_server "$rayd"
        return
    fi
    # one round first, not counted: the first 10,000 tasks of a fresh process fault in the
    # memory of its task table and store (its rate is in the notes)
    local warm=""
    if taskbatch e-warmup batch "$rport" 1 "$n"; then warm=$(kv "$TB_OUT" rate); fi
    if ! taskbatch e batch "$rport" "$rounds" "$n"; then
        fail "e: $TB_ERR"
        stop_server "$rayd"
        return
    fi
    local res=$TB_OUT finished failed
    finished=$(rayd_status "$rport" .tasks.finished)
    failed=$(rayd_status "$rport" .tasks.failed)
    stop_server "$rayd"
    if [[ ${failed:-0} != 0 ]]; then
        fail "e: rayd reports $failed failed tasks"
        return
    fi
    local rate
    rate=$(kv "$res" rate)
    row e "10,000 echo tasks: batch POST + wait for all, tasks/s ($rounds rounds)" "-" "$rate" "-" \
        ">= 100000" "$(verdict "$rate" '>=' 100000)"
    note "e: tasks/s of each round (10,000 tasks, from the batch POST to the wait answer listing all 10,000 ready): $(kv "$res" rates) (best $(kv "$res" best_rate), worst $(kv "$res" worst_rate)); the figure is all tasks / all time. Warm-up round before them, not counted: ${warm:-failed} tasks/s. In every round the wait answer listed 10,000 ready and none not ready, and one value read back was the echoed argument; rayd counts ${finished:-?} finished tasks (warm-up included), 0 failed."
}

# f) one task per request, answered when done: POST /v1/tasks echo(1) with Prefer: wait=5,
# wrk vs the same POST on the bare server.
bench_f() {
    local bare rayd msg
    start_bare || { fail "f: bare server did not start"; return; }
    bare=$SRV_PID
    local bport=$SRV_PORT
    start_rayd rayd-f || { fail "f: rayd did not start"; stop_server "$bare"; return; }
    rayd=$SRV_PID
    local rport=$SRV_PORT
    if ! msg=$(sanity_bare "$bport") || ! msg=$(sanity_rayd "$rport"); then
        fail "f: $msg"
        stop_server "$bare"
        stop_server "$rayd"
        return
    fi
    # a sample answer: 200, body 1, X-Ray-Ref
    local hdr body code
    body=$(curl -s --max-time 10 -D "$OUT/f-sample.hdr" -w '\n%{http_code}' -H 'Prefer: wait=5' \
        -H 'Content-Type: application/json' --data-binary '{"function":"echo","args":[1]}' \
        "http://127.0.0.1:$rport/v1/tasks" || true)
    code=${body##*$'\n'} body=${body%$'\n'*}
    hdr=$(grep -i '^x-ray-ref: [A-Za-z0-9_-]' "$OUT/f-sample.hdr" || true)
    if [[ $code != 200 || $body != 1 || -z $hdr ]]; then
        fail "f: sample POST /v1/tasks with Prefer: wait=5 answered $code '$body' (X-Ray-Ref: ${hdr:-missing})"
        stop_server "$bare"
        stop_server "$rayd"
        return
    fi
    local ok=1
    wrk_abba f "http://127.0.0.1:$bport/v1/tasks" "http://127.0.0.1:$rport/v1/tasks" \
        -s tests/bench/task_echo.lua || { fail "f: wrk failed"; ok=0; }
    sleep 0.5 # let the calls in flight when wrk stopped finish
    local submitted finished failed
    submitted=$(rayd_status "$rport" .tasks.submitted)
    finished=$(rayd_status "$rport" .tasks.finished)
    failed=$(rayd_status "$rport" .tasks.failed)
    if ! msg=$(sanity_rayd "$rport"); then
        fail "f: after the load: $msg"
        ok=0
    fi
    stop_server "$bare"
    stop_server "$rayd"
    [[ $ok == 1 ]] || return
    if [[ $P_NON2XX != 0 ]]; then
        fail "f: rayd answered $P_NON2XX non-2xx responses under load"
        return
    fi
    # An answer slower than the 5 s wait would be a 202 receipt (2xx for wrk), not a result.
    if awk -v m="$P_RAYD_MAX_MS" 'BEGIN { exit !(m >= 5000) }'; then
        fail "f: an answer took ${P_RAYD_MAX_MS} ms, beyond Prefer: wait=5: some answers may be 202 receipts"
        return
    fi
    # Every answered request is a finished task; at most one request per connection per rayd
    # run was in flight when wrk stopped (sent, run, not counted by wrk).
    local extra=$((${submitted:-0} - P_RAYD_REQS - 1)) slack=$((32 * P_RAYD_RUNS + P_RAYD_SOCKERR))
    if ((extra < 0 || extra > slack)) || [[ ${failed:-0} != 0 || ${finished:-0} != "${submitted:-0}" ]]; then
        fail "f: rayd counts $submitted tasks submitted, $finished finished, $failed failed, for $P_RAYD_REQS answers to wrk + 1 sample (allowed: 0..$slack more submitted, in flight at the end of a run)"
        return
    fi
    local ratio
    ratio=$(calc %.2f "$P_RAYD_RPS / $P_BARE_RPS")
    row f "task per request, Prefer: wait=5, req/s (p99 ms)" "$(calc %.0f "$P_BARE_RPS") ($P_BARE_P99)" \
        "$(calc %.0f "$P_RAYD_RPS") ($P_RAYD_P99)" "$ratio" ">= 0.50" "$(verdict "$(calc %.6f "$P_RAYD_RPS / $P_BARE_RPS")" '>=' 0.50)"
    note "f: req/s of each ${BENCH_SECONDS} s run, in order: $P_RUNS. Sample answer 200 \`1\` with ${hdr%$'\r'}; slowest answer under load ${P_RAYD_MAX_MS} ms (< 5 s, so every answer was the result, none a 202 receipt); rayd ran $submitted tasks for $P_RAYD_REQS answers + 1 sample ($extra in flight when wrk stopped, allowed 0..$slack), all finished."
}

# g) dependency chains of 10,000 `add` tasks, one request each (see taskbatch.c, cmd_chain).
bench_g() {
    local rayd msg n=10000
    start_rayd rayd-g || { fail "g: rayd did not start"; return; }
    rayd=$SRV_PID
    local rport=$SRV_PORT
    if ! msg=$(sanity_rayd "$rport"); then
        fail "g: $msg"
        stop_server "$rayd"
        return
    fi
    if ! taskbatch g chain "$rport" "$n"; then
        fail "g: $TB_ERR"
        stop_server "$rayd"
        return
    fi
    stop_server "$rayd"
    local r=$TB_OUT
    row g "chain of 10,000 adds, one POST each: µs per hop, first submit to last ready" "-" \
        "$(kv "$r" open_us_per_hop)" "-" "-" "-"
    row g "same chain held by a pending gate: µs per hop, gate ready to last ready" "-" \
        "$(kv "$r" gated_us_per_hop)" "-" "-" "-"
    note "g: open chain (t1 = add(0, 1), t_i = add({\"\$ref\": t_{i-1}}, 1)): 10,000 submitted in $(kv "$r" open_submit_s) s ($(kv "$r" open_submit_rate) POST/s, one keep-alive connection), last ref ready $(kv "$r" open_total_s) s after the first submit, value 10000 as expected. Gated chain (t1 = add({\"\$ref\": gate}, 1), gate = sleep($(kv "$r" gate_s) s)): all 10,000 submitted in $(kv "$r" gated_submit_s) s while the gate was pending (checked), then $(kv "$r" gated_release_s) s from the gate's long-poll GET returning to the last ref's (server's finished_at timestamps: $(kv "$r" server_release_s) s, $(kv "$r" server_us_per_hop) µs per hop); final value $(kv "$r" final_value) = gate value + 10000."
}

# h) actor calls, one per request, answered when done: 32 Counter actors, wrk spreading
# POST /v1/actors/{id}/methods/incr over them, vs the same requests on the bare server.
bench_h() {
    local bare rayd msg nact=32
    start_bare || { fail "h: bare server did not start"; return; }
    bare=$SRV_PID
    local bport=$SRV_PORT
    start_rayd rayd-h || { fail "h: rayd did not start"; stop_server "$bare"; return; }
    rayd=$SRV_PID
    local rport=$SRV_PORT
    if ! msg=$(sanity_bare "$bport") || ! msg=$(sanity_rayd "$rport"); then
        fail "h: $msg"
        stop_server "$bare"
        stop_server "$rayd"
        return
    fi
    local ids=$OUT/actors-h.txt
    if ! taskbatch h-create actors "$rport" "$nact" 8 "$ids"; then
        fail "h: creating $nact actors: $TB_ERR"
        stop_server "$bare"
        stop_server "$rayd"
        return
    fi
    # one sample call per actor: 200, body 1 (the counter's new value), X-Ray-Ref
    local id body code bad=""
    while read -r id; do
        body=$(curl -s --max-time 10 -D "$OUT/h-sample.hdr" -w '\n%{http_code}' -H 'Prefer: wait=5' \
            -H 'Content-Type: application/json' --data-binary '{"args":[1]}' \
            "http://127.0.0.1:$rport/v1/actors/$id/methods/incr" || true)
        code=${body##*$'\n'} body=${body%$'\n'*}
        if [[ $code != 200 || $body != 1 ]] || ! grep -qi '^x-ray-ref: [A-Za-z0-9_-]' "$OUT/h-sample.hdr"; then
            bad="actor $id: sample incr answered $code '$body'"
            break
        fi
    done <"$ids"
    if [[ -n $bad ]]; then
        fail "h: $bad"
        stop_server "$bare"
        stop_server "$rayd"
        return
    fi
    local ok=1
    export BENCH_ACTORS_FILE=$ids
    wrk_abba h "http://127.0.0.1:$bport/" "http://127.0.0.1:$rport/" \
        -s tests/bench/actor_calls.lua || { fail "h: wrk failed"; ok=0; }
    unset BENCH_ACTORS_FILE
    # The counters: each call queues behind the ones accepted before it, so `get` waits
    # for the calls still in flight when wrk stopped.
    local sum=0 min=-1 max=0 v
    while read -r id; do
        v=$(curl -s --max-time 30 -H 'Prefer: wait=20' -H 'Content-Type: application/json' \
            --data-binary '{}' "http://127.0.0.1:$rport/v1/actors/$id/methods/get" || true)
        [[ $v =~ ^[0-9]+$ ]] || { fail "h: actor $id: get answered '$v'"; ok=0; break; }
        sum=$((sum + v))
        if ((min < 0 || v < min)); then min=$v; fi
        if ((v > max)); then max=$v; fi
    done <"$ids"
    if ! msg=$(sanity_rayd "$rport"); then
        fail "h: after the load: $msg"
        ok=0
    fi
    stop_server "$bare"
    stop_server "$rayd"
    [[ $ok == 1 ]] || return
    if [[ $P_NON2XX != 0 ]]; then
        fail "h: rayd answered $P_NON2XX non-2xx responses under load"
        return
    fi
    if awk -v m="$P_RAYD_MAX_MS" 'BEGIN { exit !(m >= 5000) }'; then
        fail "h: an answer took ${P_RAYD_MAX_MS} ms, beyond Prefer: wait=5: some answers may be 202 receipts"
        return
    fi
    # sum of counters = wrk's answers + the 32 samples + calls in flight when a run stopped
    # (at most one per connection per rayd run, plus any wrk socket errors)
    local extra=$((sum - P_RAYD_REQS - nact)) slack=$((32 * P_RAYD_RUNS + P_RAYD_SOCKERR))
    if ((extra < 0 || extra > slack)); then
        fail "h: the $nact counters sum to $sum for $P_RAYD_REQS answers to wrk + $nact samples (allowed 0..$slack more: calls in flight when a run stopped)"
        return
    fi
    local ratio
    ratio=$(calc %.2f "$P_RAYD_RPS / $P_BARE_RPS")
    row h "actor call per request (32 Counters), Prefer: wait=5, req/s (p99 ms)" \
        "$(calc %.0f "$P_BARE_RPS") ($P_BARE_P99)" "$(calc %.0f "$P_RAYD_RPS") ($P_RAYD_P99)" \
        "$ratio" ">= 0.50" "$(verdict "$(calc %.6f "$P_RAYD_RPS / $P_BARE_RPS")" '>=' 0.50)"
    note "h: req/s of each ${BENCH_SECONDS} s run, in order: $P_RUNS. The 32 counters sum to $sum = $P_RAYD_REQS answers to wrk + 32 samples + $extra calls in flight when wrk stopped (allowed 0..$slack: one per connection per rayd run, plus socket errors); per actor $min..$max calls; slowest answer ${P_RAYD_MAX_MS} ms (< 5 s: all results, no 202 receipts). wrk reads the actor ids from BENCH_ACTORS_FILE."
}

# i) memory per idle actor: BENCH_ACTORS (default 100,000) Counter actors, VmRSS before/after.
bench_i() {
    local rayd msg n=${BENCH_ACTORS:-100000}
    start_rayd rayd-i || { fail "i: rayd did not start"; return; }
    rayd=$SRV_PID
    local rport=$SRV_PORT
    if ! msg=$(sanity_rayd "$rport"); then
        fail "i: $msg"
        stop_server "$rayd"
        return
    fi
    local before after alive=0 k ids=$OUT/actors-i.txt
    before=$(proc_bytes "$rayd" VmRSS)
    if ! taskbatch i actors "$rport" "$n" 8 "$ids"; then
        fail "i: $TB_ERR"
        stop_server "$rayd"
        return
    fi
    # constructors run asynchronously: measure once all are ALIVE
    for ((k = 0; k < 300; k++)); do
        alive=$(rayd_status "$rport" .actors.by_state.ALIVE)
        ((${alive:-0} >= n)) && break
        sleep 0.1
    done
    after=$(proc_bytes "$rayd" VmRSS)
    # one of them answers a call
    local id body
    id=$(sed -n "$((n / 2 + 1))p" "$ids")
    body=$(curl -s --max-time 10 -H 'Prefer: wait=5' -H 'Content-Type: application/json' \
        --data-binary '{"args":[5]}' "http://127.0.0.1:$rport/v1/actors/$id/methods/incr" || true)
    stop_server "$rayd"
    if ((${alive:-0} != n)); then
        fail "i: $alive of $n actors ALIVE after 30 s"
        return
    fi
    if [[ $body != 5 ]]; then
        fail "i: actor $id: incr(5) answered '$body'"
        return
    fi
    local per
    per=$(calc %.0f "($after - $before) / $n")
    row i "RSS per idle Counter actor, bytes ($n actors)" "-" "$per" "-" "< 1024" "$(verdict "$per" '<' 1024)"
    note "i: $n actors created in $(kv "$TB_OUT" seconds) s ($(kv "$TB_OUT" rate) POST /v1/actors per s over 8 keep-alive connections), all ALIVE; RSS $(calc %.1f "$before / 1048576") -> $(calc %.1f "$after / 1048576") MiB; one of them answered incr(5) with 5."
}

# ---------------------------------------------------------------------------------------
# j) remote functions ("any-language functions"): the example Python worker's `wordcount`
# called directly and through rayd (POST /v1/tasks, Prefer: wait=5), sequential calls on one
# keep-alive connection and calls over 16 connections, interleaved direct, rayd, rayd,
# direct (tests/bench/taskbatch.c, cmd_remote).
#
# The worker is examples/python/worker.py run as it is, except that its handler sets
# TCP_NODELAY (`disable_nagle_algorithm`, a standard BaseHTTPRequestHandler attribute):
# http.server writes the headers and the body of an answer in two send() calls, so with
# Nagle on, the body waits for the client's delayed ACK of the headers, ~40 ms on every
# call, whoever the client is (measured here: 44 ms p50 directly and through rayd alike).
# If worker.py sets it itself, this changes nothing.
WORKER_PY='import sys
sys.path.insert(0, "examples/python")
sys.argv = ["worker.py", "0"]
import worker
worker.Handler.disable_nagle_algorithm = True
worker.main()'

# start_worker: the example worker on a port the kernel picks; sets SRV_PID and SRV_PORT.
start_worker() {
    local out=$LOGS/worker-j.stdout err=$LOGS/worker-j.stderr i
    : >"$out"
    COMMANDS+=("HOST=127.0.0.1 python3 -c '<examples/python/worker.py, port 0, Handler.disable_nagle_algorithm = True: WORKER_PY in run.sh>'")
    HOST=127.0.0.1 python3 -c "$WORKER_PY" >"$out" 2>"$err" &
    SRV_PID=$!
    SERVER_PIDS+=("$SRV_PID")
    for ((i = 0; i < 100; i++)); do
        SRV_PORT=$(sed -n 's|^worker listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$out")
        if [[ -n $SRV_PORT ]]; then
            log "worker listening on 127.0.0.1:$SRV_PORT (pid $SRV_PID)"
            return 0
        fi
        kill -0 "$SRV_PID" 2>/dev/null || break
        sleep 0.1
    done
    log "worker did not start; stderr:"
    tail -5 "$err" >&2 || true
    stop_server "$SRV_PID"
    return 1
}

# j_register PORT WPORT QUICK: (re-)registers wordcount with "quick": true, or without it
# (QUICK false: so that a build from before "quick" can be measured too).
j_register() {
    local reg code quick=
    [[ $3 == true ]] && quick=',"quick":true'
    reg=$(curl -s --max-time 10 -w '\n%{http_code}' -X PUT -H 'Content-Type: application/json' \
        --data-binary "{\"url\":\"http://127.0.0.1:$2/functions/wordcount\",\"timeout\":10$quick}" \
        "http://127.0.0.1:$1/v1/functions/wordcount" || true)
    code=${reg##*$'\n'} reg=${reg%$'\n'*}
    if [[ $code != 20[01] ]] || ! jq -e ".kind == \"remote\" and (.quick // false) == $3" >/dev/null 2>&1 <<<"$reg"; then
        J_ERR="PUT /v1/functions/wordcount (quick $3) answered $code: $reg"
        return 1
    fi
}

# j's runs: wordcount registered without and with "quick", alternated (BENCH_J_MODES, default
# "normal quick quick normal"), one taskbatch run each in the same rayd and worker.
bench_j() {
    local worker rayd msg n=${BENCH_REMOTE_CALLS:-4000} m=${BENCH_REMOTE_CONC_CALLS:-8000} conc=16
    local modes=(${BENCH_J_MODES:-normal quick quick normal})
    command -v python3 >/dev/null || { fail "j: python3 is not installed"; return; }
    start_worker || { fail "j: the example worker did not start"; return; }
    worker=$SRV_PID
    local wport=$SRV_PORT
    start_rayd rayd-j --remote-allow "http://127.0.0.1:$wport" ||
        { fail "j: rayd did not start"; stop_server "$worker"; return; }
    rayd=$SRV_PID
    local rport=$SRV_PORT
    j_stop() { stop_server "$rayd"; stop_server "$worker"; }
    if ! msg=$(sanity_rayd "$rport"); then
        fail "j: $msg"
        j_stop
        return
    fi
    if ! j_register "$rport" "$wport" false; then
        fail "j: $J_ERR"
        j_stop
        return
    fi
    # a sample each way: "the cat and the hat" has 5 words
    local direct via
    direct=$(curl -s --max-time 10 -w ' %{http_code}' -H 'Content-Type: application/json' \
        --data-binary '{"task_id":"sample","function":"wordcount","attempt":1,"args":["the cat and the hat"],"kwargs":{}}' \
        "http://127.0.0.1:$wport/functions/wordcount" || true)
    via=$(curl -s --max-time 10 -D "$OUT/j-sample.hdr" -w ' %{http_code}' -H 'Prefer: wait=5' \
        -H 'Content-Type: application/json' --data-binary '{"function":"wordcount","args":["the cat and the hat"]}' \
        "http://127.0.0.1:$rport/v1/tasks" || true)
    if [[ $direct != '5 200' || $via != '5 200' ]] || ! grep -qi '^x-ray-ref: [A-Za-z0-9_-]' "$OUT/j-sample.hdr"; then
        fail "j: sample wordcount answered '$direct' directly and '$via' through rayd (expected '5 200', with X-Ray-Ref)"
        j_stop
        return
    fi
    local before
    before=$(curl -s --max-time 10 "http://127.0.0.1:$wport/stats" | jq -r '.wordcount.calls // 0' 2>/dev/null || true)
    local results=() i mode calls=0 rcalls=0 here=0 missed=0 qc
    for i in "${!modes[@]}"; do
        mode=${modes[i]}
        if ! j_register "$rport" "$wport" "$([[ $mode == quick ]] && echo true || echo false)"; then
            fail "j: $J_ERR"
            j_stop
            return
        fi
        if ! taskbatch "j$i-$mode" remote "$wport" "$rport" wordcount "$n" "$conc" "$m"; then
            fail "j: $TB_ERR"
            j_stop
            return
        fi
        results+=("$TB_OUT")
        calls=$((calls + $(kv "$TB_OUT" calls_total))) rcalls=$((rcalls + $(kv "$TB_OUT" rayd_calls)))
        if [[ $mode == quick ]]; then
            qc=$(curl -s --max-time 10 "http://127.0.0.1:$rport/v1/functions/wordcount" | jq -r '"\(.quick_calls.answered_here) \(.quick_calls.wait_missed)"')
            here=$((here + ${qc% *})) missed=$((missed + ${qc#* }))
        fi
    done
    local after submitted finished failed retries
    sleep 0.2
    after=$(curl -s --max-time 10 "http://127.0.0.1:$wport/stats" | jq -r '.wordcount.calls // 0' 2>/dev/null || true)
    submitted=$(rayd_status "$rport" .tasks.submitted)
    finished=$(rayd_status "$rport" .tasks.finished)
    failed=$(rayd_status "$rport" .tasks.failed)
    retries=$(rayd_status "$rport" .tasks.retries)
    j_stop
    # every call reached the worker exactly once (no retries), every rayd call is one task
    if [[ $((${after:-0} - ${before:-0})) != "$calls" || ${submitted:-0} != $((rcalls + 1)) ||
        ${finished:-0} != "${submitted:-0}" || ${failed:-1} != 0 || ${retries:-1} != 0 ]]; then
        fail "j: the worker counts $((${after:-0} - ${before:-0})) calls for $calls made; rayd $submitted tasks submitted, $finished finished, $failed failed, $retries retries, for $rcalls calls + 1 sample"
        return
    fi
    local r ov_mean ov_p50 ov_p99
    for i in "${!modes[@]}"; do
        r=${results[i]} mode=${modes[i]}
        ov_mean=$(calc %+.0f "$(kv "$r" rayd_seq_mean_us) - $(kv "$r" direct_seq_mean_us)")
        ov_p50=$(calc %+.0f "$(kv "$r" rayd_seq_p50_us) - $(kv "$r" direct_seq_p50_us)")
        ov_p99=$(calc %+.0f "$(kv "$r" rayd_seq_p99_us) - $(kv "$r" direct_seq_p99_us)")
        lat3() { printf '%s / %s / %s' "$(calc %.0f "$(kv "$r" "$1_mean_us")")" "$(calc %.0f "$(kv "$r" "$1_p50_us")")" "$(calc %.0f "$(kv "$r" "$1_p99_us")")"; }
        row j "run $((i + 1)), $mode: remote wordcount (Python worker), sequential calls, latency µs mean / p50 / p99 (bare column: the worker called directly)" \
            "$(lat3 direct_seq)" "$(lat3 rayd_seq)" "-" "-" "-"
        row j "run $((i + 1)), $mode: rayd's overhead per remote call (rayd - direct), µs mean / p50 / p99" "-" "$ov_mean / $ov_p50 / $ov_p99" "-" "-" "-"
        row j "run $((i + 1)), $mode: remote wordcount, 16 concurrent connections, calls/s (p50 / p99 µs)" \
            "$(kv "$r" direct_conc_rate) ($(calc %.0f "$(kv "$r" direct_conc_p50_us)") / $(calc %.0f "$(kv "$r" direct_conc_p99_us)"))" \
            "$(kv "$r" rayd_conc_rate) ($(calc %.0f "$(kv "$r" rayd_conc_p50_us)") / $(calc %.0f "$(kv "$r" rayd_conc_p99_us)"))" \
            "$(calc %.2f "$(kv "$r" rayd_conc_rate) / $(kv "$r" direct_conc_rate)")" "-" "-"
    done
    r=${results[0]}
    note "j: examples/python/worker.py (stdlib ThreadingHTTPServer; TCP_NODELAY set by run.sh, see WORKER_PY) and rayd --remote-allow for it; wordcount registered with PUT /v1/functions/wordcount, re-registered before each run: \"quick\": false for the runs marked normal, true for those marked quick (${modes[*]}, in that order, one rayd and one worker). Quick runs: $here calls answered on the HTTP thread, $missed waits missed (GET /v1/functions/wordcount, quick_calls). Call i's argument is a string of (i mod 64) + 1 words and its answer must be that number, checked on every call. $n sequential calls per side per run (one keep-alive connection), then $m per side over $conc connections (one curl multi handle), each in two halves interleaved direct, rayd, rayd, direct after $((conc + 1)) warm-up calls per side. Through rayd: POST /v1/tasks {\"function\":\"wordcount\",\"args\":[text]} with Prefer: wait=5, 200 with the result. The worker counted exactly the $calls calls made (no retries); rayd $submitted tasks, all finished, 0 failed, 0 retries."
}

# ---------------------------------------------------------------------------------------
# m) the Python client (clients/python) against raw http.client keep-alive, same calls, same
# rayd, interleaved (tests/bench/clients.py): 1,000 sequential rd.get(add.remote(1, 2)), and
# 10,000 add tasks in one batch request then one get of all their refs.
bench_m() {
    local rayd msg rounds=${BENCH_CLIENT_ROUNDS:-6} py=/usr/bin/python3
    [[ -x $py ]] || py=python3
    start_rayd rayd-m || { fail "m: rayd did not start"; return; }
    rayd=$SRV_PID
    local rport=$SRV_PORT
    if ! msg=$(sanity_rayd "$rport"); then
        fail "m: $msg"
        stop_server "$rayd"
        return
    fi
    local out=$OUT/clients-m.txt
    if ! cmd "$py" tests/bench/clients.py "$rport" "$rounds" 1000 10000 >"$out" 2>"$LOGS/clients-m.stderr"; then
        fail "m: tests/bench/clients.py: $(tail -1 "$LOGS/clients-m.stderr")"
        stop_server "$rayd"
        return
    fi
    local failed
    failed=$(rayd_status "$rport" .tasks.failed)
    stop_server "$rayd"
    if [[ ${failed:-0} != 0 ]]; then
        fail "m: rayd reports $failed failed tasks"
        return
    fi
    local w
    for w in seq batch; do
        local what="1,000 sequential rd.get(add.remote(1, 2)), calls/s"
        [[ $w == batch ]] && what="10,000 add tasks: rd.submit (one batch request) + rd.get of all, tasks/s"
        row m "Python client vs raw http.client: $what" "$(kv "$out" ${w}_raw_rate)" \
            "$(kv "$out" ${w}_client_rate)" "$(calc %.2f "$(kv "$out" ${w}_ratio)")" ">= 0.70" \
            "$(verdict "$(kv "$out" ${w}_ratio)" '>=' 0.70)"
    done
    note "m: Python $(kv "$out" python), clients/python against raw http.client on one keep-alive connection (bare column), $rounds rounds per side alternated client, raw, raw, client; a side's rate is all its calls over all its time. Each run, client / raw: sequential $(kv "$out" seq_client_runs) / $(kv "$out" seq_raw_runs) calls/s; batch $(kv "$out" batch_client_runs) / $(kv "$out" batch_raw_runs) tasks/s. The client sends an Idempotency-Key with each POST (its default) and checks every answer is rayd's; every result is checked on both sides; rayd counts 0 failed tasks."
}

# ---------------------------------------------------------------------------------------
# k) Redis ("proof under pressure"): redis-server GET and SET of 100-byte values with
# redis-benchmark, and in the same session rayd's GET and POST of 100 bytes with wrk (as a
# and b), plus the bare libmicrohttpd server for scale. Runs mirrored: redis, bare GET,
# rayd GET, bare POST, rayd POST, rayd POST, bare POST, rayd GET, bare GET, redis.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# redis_bench PORT LABEL: sets R_SET, R_GET (req/s) and R_SET_P50, R_GET_P50 (ms)
redis_bench() {
    local outf=$LOGS/redis-benchmark-$2.txt
    cmd redis-benchmark -h 127.0.0.1 -p "$1" -t set,get -d 100 -c 32 -n 400000 -P 1 --threads 2 -q \
        >"$outf" 2>&1 || return 1
    local lines
    lines=$(tr '\r' '\n' <"$outf" | grep -E '^(SET|GET): [0-9.]+ requests per second' || true)
    R_SET=$(awk '$1 == "SET:" { print $2 }' <<<"$lines")
    R_GET=$(awk '$1 == "GET:" { print $2 }' <<<"$lines")
    R_SET_P50=$(sed -n 's/^SET: .*p50=\([0-9.]*\) msec.*/\1/p' <<<"$lines")
    R_GET_P50=$(sed -n 's/^GET: .*p50=\([0-9.]*\) msec.*/\1/p' <<<"$lines")
    log "redis $2: SET ${R_SET:-?} req/s, GET ${R_GET:-?} req/s"
    [[ -n $R_SET && -n $R_GET ]]
}

bench_k() {
    local t
    for t in redis-server redis-benchmark redis-cli python3; do
        command -v "$t" >/dev/null || {
            fail "k: $t is not installed (apt-get install -y redis-server redis-tools)"
            return
        }
    done
    local port redis bare rayd msg i
    port=$(free_port)
    COMMANDS+=("redis-server --port $port --bind 127.0.0.1 --save '' --appendonly no --daemonize no")
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
        >"$LOGS/redis-server.log" 2>&1 &
    redis=$!
    SERVER_PIDS+=("$redis")
    for ((i = 0; i < 100; i++)); do
        [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]] && break
        kill -0 "$redis" 2>/dev/null || break
        sleep 0.1
    done
    if [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) != PONG ]]; then
        fail "k: redis-server did not start on port $port ($(tail -1 "$LOGS/redis-server.log"))"
        stop_server "$redis"
        return
    fi
    log "redis-server listening on 127.0.0.1:$port (pid $redis)"
    start_bare || { fail "k: bare server did not start"; stop_server "$redis"; return; }
    bare=$SRV_PID
    local bport=$SRV_PORT
    start_rayd rayd-k || { fail "k: rayd did not start"; stop_server "$bare"; stop_server "$redis"; return; }
    rayd=$SRV_PID
    local rport=$SRV_PORT
    k_stop() { stop_server "$bare"; stop_server "$rayd"; stop_server "$redis"; }
    if ! msg=$(sanity_bare "$bport") || ! msg=$(sanity_rayd "$rport"); then
        fail "k: $msg"
        k_stop
        return
    fi
    local ref
    head -c 100 /dev/urandom >"$OUT/obj100-k.bin"
    ref=$(post_object "$rport" "$OUT/obj100-k.bin" application/octet-stream)
    [[ -n $ref ]] || { fail "k: could not store the 100-byte object"; k_stop; return; }
    local step seq=(redis bare-get rayd-get bare-post rayd-post rayd-post bare-post rayd-get bare-get redis)
    local rs=() rg=() bg=() bp=() yg=() yp=() runs="" nredis=0 non2xx=0 ok=1 k=0
    for step in "${seq[@]}"; do
        k=$((k + 1))
        case $step in
        redis)
            nredis=$((nredis + 1))
            redis_bench "$port" "k-$nredis" || { fail "k: redis-benchmark failed (see $LOGS/redis-benchmark-k-$nredis.txt)"; ok=0; break; }
            rs+=("$R_SET") rg+=("$R_GET")
            runs+="${runs:+, }redis SET $(calc %.0f "$R_SET") GET $(calc %.0f "$R_GET")"
            continue
            ;;
        bare-get) wrk_run "k-$k-$step" "http://127.0.0.1:$bport/" || { ok=0; break; } ;;
        rayd-get) wrk_run "k-$k-$step" "http://127.0.0.1:$rport/v1/objects/$ref" || { ok=0; break; } ;;
        bare-post) wrk_run "k-$k-$step" -s tests/bench/post100.lua "http://127.0.0.1:$bport/v1/objects" || { ok=0; break; } ;;
        rayd-post) wrk_run "k-$k-$step" -s tests/bench/post100.lua "http://127.0.0.1:$rport/v1/objects" || { ok=0; break; } ;;
        esac
        non2xx=$((non2xx + W_NON2XX))
        case $step in
        bare-get) bg+=("$W_RPS") ;;
        rayd-get) yg+=("$W_RPS") ;;
        bare-post) bp+=("$W_RPS") ;;
        rayd-post) yp+=("$W_RPS") ;;
        esac
        runs+=", $step $(calc %.0f "$W_RPS")"
    done
    [[ $ok == 1 ]] || fail "k: a load run failed"
    local vlen
    vlen=$(redis-cli -h 127.0.0.1 -p "$port" strlen key:__rand_int__ 2>/dev/null || true)
    if [[ $ok == 1 ]]; then
        curl -s --max-time 10 -o "$OUT/obj100-k.got" "http://127.0.0.1:$rport/v1/objects/$ref" || true
        cmp -s "$OUT/obj100-k.bin" "$OUT/obj100-k.got" || { fail "k: rayd's object bytes wrong after the load"; ok=0; }
        msg=$(sanity_rayd "$rport") || { fail "k: after the load: $msg"; ok=0; }
        [[ $vlen == 100 ]] || { fail "k: redis holds a ${vlen:-missing}-byte value after SET -d 100"; ok=0; }
        [[ $non2xx == 0 ]] || { fail "k: $non2xx non-2xx answers under load"; ok=0; }
    fi
    k_stop
    [[ $ok == 1 ]] || return
    local m_rs m_rg m_bg m_bp m_yg m_yp
    m_rs=$(mean "${rs[@]}") m_rg=$(mean "${rg[@]}") m_bg=$(mean "${bg[@]}")
    m_bp=$(mean "${bp[@]}") m_yg=$(mean "${yg[@]}") m_yp=$(mean "${yp[@]}")
    row k "GET 100 B, req/s: redis-server GET (bare column) vs rayd GET /v1/objects/{ref}" \
        "$(calc %.0f "$m_rg")" "$(calc %.0f "$m_yg")" "$(calc %.2f "$m_yg / $m_rg")" "-" "-"
    row k "put 100 B, req/s: redis-server SET (bare column) vs rayd POST /v1/objects" \
        "$(calc %.0f "$m_rs")" "$(calc %.0f "$m_yp")" "$(calc %.2f "$m_yp / $m_rs")" "-" "-"
    note "k: $(nproc) cores shared by redis-server (one thread), redis-benchmark (--threads 2) or wrk (-t2 -c32), and the servers. Redis speaks RESP, a much lighter protocol than HTTP/1.1 (no header parsing, no Date/ETag/request-id headers, no JSON log line), so rayd/redis is the honest end-to-end comparison, not a like-for-like one. For scale, the bare libmicrohttpd server (it answers {} and keeps nothing) in the same session: GET $(calc %.0f "$m_bg") req/s ($(calc %.2f "$m_bg / $m_rg") of redis), POST $(calc %.0f "$m_bp") req/s ($(calc %.2f "$m_bp / $m_rs") of redis); rayd/bare: GET $(calc %.2f "$m_yg / $m_bg"), POST $(calc %.2f "$m_yp / $m_bp"). Each run, in order: $runs (redis-benchmark: 400,000 requests per test, one key, value of 100 bytes, checked afterwards with STRLEN; wrk: ${BENCH_SECONDS} s each). redis-benchmark p50 of the last run: SET $R_SET_P50 ms, GET $R_GET_P50 ms."
}

# ---------------------------------------------------------------------------------------
# l) profile of the small-GET path under callgrind: BENCH_PROFILE_GETS (default 20,000)
# GETs of a 100-byte object on one keep-alive connection (taskbatch gets), counters zeroed
# after a warm-up and dumped after the last GET (callgrind_control), then SIGTERM. The same
# for the bare server's GET /, for scale. Instruction counts do not depend on the machine's
# load, so Ir per request is the repeatable figure. Summary: build/bench/callgrind-summary.txt.

# cg_run LABEL PATH FILE CMD...: starts CMD under callgrind (PATH may contain @REF@, replaced
# by the ref of a 100-byte object stored first from FILE); a warm-up of n/20 GETs, zero,
# n GETs, dump, SIGTERM. Sets CG_FILE (the dump of the n GETs), CG_IR (its total Ir) and
# CG_RATE (GETs/s under valgrind); on failure returns 1 with the reason in CG_ERR.
cg_run() {
    local label=$1 path=$2 file=$3 n=${BENCH_PROFILE_GETS:-20000} pid port ref i
    shift 3
    CG_ERR="did not start"
    START_TRIES=600
    if ! start_server "$label" valgrind --tool=callgrind \
        --callgrind-out-file="$OUT/callgrind.out.$label.%p" "$@"; then
        START_TRIES=100
        return 1
    fi
    START_TRIES=100
    pid=$SRV_PID port=$SRV_PORT
    if [[ $path == *@REF@* ]]; then
        ref=$(post_object "$port" "$file" application/octet-stream)
        [[ -n $ref ]] || { stop_server "$pid"; CG_ERR="could not store the object"; return 1; }
        path=${path//@REF@/$ref}
    fi
    if ! taskbatch "$label-warmup" gets "$port" "$path" $((n / 20)) "$file" ||
        ! cmd callgrind_control -z "$pid" >/dev/null ||
        ! taskbatch "$label" gets "$port" "$path" "$n" "$file" ||
        ! cmd callgrind_control -d "$pid" >/dev/null; then
        stop_server "$pid"
        CG_ERR=${TB_ERR:-callgrind_control failed}
        return 1
    fi
    CG_RATE=$(kv "$TB_OUT" rate)
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    stop_server "$pid"
    CG_FILE=$OUT/callgrind.out.$label.$pid.1
    [[ -s $CG_FILE ]] || { CG_ERR="no dump in $CG_FILE"; return 1; }
    CG_IR=$(awk '/^totals:/ { print $2; exit }' "$CG_FILE")
    [[ -n $CG_IR ]] || { CG_ERR="no total in $CG_FILE"; return 1; }
}

# cg_costs FILE: exclusive Ir of every function in a callgrind dump (one event, Ir), as
# "Ir<TAB>object<TAB>function<TAB>source file" lines. Cost lines after `calls=` are the
# callee's inclusive cost and are skipped; names are compressed as "(id) name" then "(id)".
cg_costs() {
    awk '
        function nm(kind, v,   id, rest) {
            if (v !~ /^\([0-9]+\)/) return v;
            id = v; sub(/\).*/, "", id); sub(/^\(/, "", id);
            rest = v; sub(/^\([0-9]+\) ?/, "", rest);
            if (rest != "") names[kind, id] = rest;
            return names[kind, id] }
        /^ob=/ { ob = nm("ob", substr($0, 4)); next }
        /^cob=/ { nm("ob", substr($0, 5)); next }
        /^fl=/ { fl = nm("fl", substr($0, 4)); next }
        /^(fi|fe)=/ { nm("fl", substr($0, 4)); next }
        /^(cfi|cfl)=/ { nm("fl", substr($0, 5)); next }
        /^fn=/ { fn = nm("fn", substr($0, 4)); file[ob "\t" fn] = fl; next }
        /^cfn=/ { nm("fn", substr($0, 5)); next }
        /^calls=/ { skip = 1; next }
        /^[0-9+*-]/ { if (skip) { skip = 0; next } cost[ob "\t" fn] += $2 }
        END { for (k in cost) if (cost[k] > 0) printf "%d\t%s\t%s\n", cost[k], k, file[k] }
    ' "$1" | sed "s|/usr/lib/x86_64-linux-gnu/||; s|$ROOT/||g" | sort -t$'\t' -k1,1nr
}

# cg_groups FILE N: where the instructions go, per request, by group: "Ir<TAB>pct<TAB>group"
cg_groups() {
    cg_costs "$1" | awk -F'\t' -v n="$2" -v bin="$3" '
        { ob = $2; fn = $3; f = $4; g = "other: " ob
          if (ob ~ /^libc\.so/ && fn ~ /^__mem(set|set_avx|set_erms)|^__memset/) g = "libc memset (libmicrohttpd zeroing its connection memory pool)"
          else if (ob ~ /^libc\.so/ && fn ~ /malloc|free|calloc|realloc|consolidate|unlink_chunk|tcache|memalign|^strdup|^__strdup/) g = "libc malloc/free/strdup"
          else if (ob ~ /^libc\.so/ && fn ~ /printf|xsputn|_itoa|strchrnul|_IO_|__printf_fp|hack_digit|__mpn_/) g = "libc printf family"
          else if (ob ~ /^libc\.so/ && fn ~ /^__(str|mem)|^str|^mem/) g = "libc string functions"
          else if (ob ~ /^libc\.so/ && fn ~ /time|tz|offtime|clock_gettime/) g = "libc time conversion"
          else if (ob ~ /^libc\.so/ && fn ~ /pthread|mutex|lll_|futex/) g = "libc locks"
          else if (ob ~ /^libc\.so/) g = "libc other"
          else if (ob ~ /libmicrohttpd/) g = "libmicrohttpd"
          else if (ob ~ /libjansson/) g = "jansson"
          else if (ob ~ ("(^|/)" bin "$")) g = bin " " f
          sum[g] += $1; tot += $1 }
        END { for (g in sum) if (sum[g] / n >= 5) printf "%.0f\t%.1f\t%s\n", sum[g] / n, 100 * sum[g] / tot, g }
    ' | sort -t$'\t' -k1,1nr
}

# cg_top FILE N [inclusive]: the 25 costliest functions, "Ir per request (pct) function [object]"
cg_top() {
    if [[ ${3:-} == inclusive ]]; then
        callgrind_annotate --auto=no --threshold=100 --inclusive=yes "$1" 2>/dev/null |
            grep -E '^ *[0-9,]+ \(.*\]$' | sed -E "s|/usr/lib/x86_64-linux-gnu/||; s|$ROOT/||g; s#  (\\./|/usr/|\\?\\?\\?:)[^ ]*:#  #" |
            awk -v n="$2" '{ ir = $1; gsub(/,/, "", ir); $1 = ""; if (NR <= 25) printf "%9.0f %s\n", ir / n, $0 }'
    else
        cg_costs "$1" | awk -F'\t' -v n="$2" '{ tot += $1; l[NR] = $0 }
            END { for (i = 1; i <= 25 && i <= NR; i++) { split(l[i], a, "\t");
                printf "%9.0f (%5.2f%%)  %s [%s]\n", a[1] / n, 100 * a[1] / tot,
                    (a[4] ~ /^[.\/?]/ || a[4] == "") ? a[3] : a[4] ":" a[3], a[2] } }'
    fi
}

bench_l() {
    local t
    for t in valgrind callgrind_control callgrind_annotate; do
        command -v "$t" >/dev/null || { fail "l: $t is not installed (apt-get install -y valgrind)"; return; }
    done
    local n=${BENCH_PROFILE_GETS:-20000} sum=$OUT/callgrind-summary.txt
    rm -f "$OUT"/callgrind.out.*
    head -c 100 /dev/urandom >"$OUT/obj100-l.bin"
    printf '{}' >"$OUT/bare-answer.json"
    if ! cg_run rayd-l '/v1/objects/@REF@' "$OUT/obj100-l.bin" "$RAYD_BIN" --bind 127.0.0.1 --port 0; then
        fail "l: rayd under callgrind: $CG_ERR"
        return
    fi
    local rfile=$CG_FILE rir=$CG_IR rrate=$CG_RATE
    if ! cg_run bare-l / "$OUT/bare-answer.json" "$BARE_BIN" --port 0 --threads 2 \
        --connection-memory "$BARE_CONN_MEMORY"; then
        fail "l: bare server under callgrind: $CG_ERR"
        return
    fi
    local bfile=$CG_FILE bir=$CG_IR
    local rper bper bin
    bin=$(basename "$RAYD_BIN")
    rper=$(calc %.0f "$rir / $n") bper=$(calc %.0f "$bir / $n")
    {
        echo "callgrind: $n GETs on one keep-alive connection (taskbatch gets), counters zeroed after $((n / 20)) warm-up GETs"
        echo "rayd: $rfile: $rir Ir, $rper Ir per GET of a 100-byte object"
        echo "bare: $bfile: $bir Ir, $bper Ir per GET / (answers {})"
        echo "Figures below are Ir per GET. Valgrind counts each iteration of a rep-prefixed"
        echo "instruction (memset's rep stosb) as one instruction, so the memset share is far larger"
        echo "in Ir than in CPU time."
        echo
        echo "== rayd: exclusive Ir per GET by group (Ir, % of all)"
        cg_groups "$rfile" "$n" "$bin"
        echo
        echo "== rayd: top 25 functions, exclusive (Ir per GET, % of all)"
        cg_top "$rfile" "$n"
        echo
        echo "== rayd: top 25 functions, inclusive (Ir per GET, % of all)"
        cg_top "$rfile" "$n" inclusive
        echo
        echo "== bare: exclusive Ir per GET by group"
        cg_groups "$bfile" "$n" "$(basename "$BARE_BIN")"
    } >"$sum"
    COMMANDS+=("callgrind_annotate --auto=no --threshold=100 [--inclusive=yes] build/bench/callgrind.out.rayd-l.PID.1")
    local rmem bmem
    rmem=$(cg_groups "$rfile" "$n" "$bin" | awk -F'\t' '$3 ~ /^libc memset/ { print $1 }')
    bmem=$(cg_groups "$bfile" "$n" "$(basename "$BARE_BIN")" | awk -F'\t' '$3 ~ /^libc memset/ { print $1 }')
    row l "small-GET path under callgrind: instructions (Ir) per GET of 100 B, all / without the pool memset ($n GETs)" \
        "$bper / $((bper - ${bmem:-0}))" "$rper / $((rper - ${rmem:-0}))" \
        "$(calc %.2f "$rper / $bper") / $(calc %.2f "($rper - ${rmem:-0}) / ($bper - ${bmem:-0})")" "-" "-"
    local groups
    groups=$(cg_groups "$rfile" "$n" "$bin" | awk -F'\t' 'NR <= 12 { printf "%s%s %s", (NR > 1 ? ", " : ""), $3, $1 }')
    note "l: rayd's $n GETs cost $rir instructions ($rper per GET; the bare server's GET /: $bper; the ratio column is rayd/bare in instructions, higher is costlier). Both spend ${rmem:-?} / ${bmem:-?} Ir per request in memset: libmicrohttpd zeroing its connection memory pool, which valgrind counts byte by byte (rep stosb). Ir per GET by group: $groups. Top functions: $sum; dumps: $rfile, $bfile. Under valgrind the client got $rrate GETs/s (not a performance figure)."
}

# n) Cluster mode (docs/cluster.md): Redis on a free loopback port, two rayd in cluster mode
# (A and B) and one rayd alone. Three ratios, each measured in this run:
#   - GET of a 100-byte object owned by A, through B (B's secondary copy cached after the
#     first read), against the same GET on A;
#   - 1 GiB put on A, read through B (B relays it from A as it arrives; the first read of
#     each put, so no copy helps), against curl's 1 GiB PUT to the bare server (as in c);
#   - a node's own work with RAYD_CLUSTER set against a rayd without it: a small GET, and
#     one task per request (Prefer: wait);
#   - an actor call with Prefer: wait through B (relayed to A, which owns the actor)
#     against the same call on A;
#   - a remote-class actor call (the example Python worker's Account) on A whose class keeps
#     its state in the cluster (state_in_cluster: one Redis write per call) against the same
#     call of a class that does not (reported: no target).
#   - a 10,000-task batch submitted to A and waited for through B, with a third node C up
#     (tasks/s end to end, n_batch_across).
# wait_ready PORT: /readyz 200 within 15 s (a cluster node answers 200 once it has joined).
wait_ready() {
    local i
    for ((i = 0; i < 150; i++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz") == 200 ]] && return 0
        sleep 0.1
    done
    return 1
}

# n_batch_across APORT BPORT: within bench n, with a third node C started here (a cluster of
# three): rounds of 10,000 `echo` tasks in one POST /v1/tasks/batch to A, each followed by
# one POST /v1/wait with num_returns 10000 on all their refs sent to B (which owns none of
# them and asks A; api/wait_owners.h); end to end, as bench e on one node.
n_batch_across() {
    local aport=$1 bport=$2 c rounds=${BENCH_TASK_ROUNDS:-5} n=10000
    start_server rayd-n-c "${cluster[@]}" || { fail "n: node C did not start"; return; }
    c=$SRV_PID
    if ! wait_ready "$SRV_PORT"; then
        fail "n: node C did not join"
        stop_server "$c"
        return
    fi
    local warm="" nodes
    nodes=$(curl -s "http://127.0.0.1:$bport/v1/status" | jq '[.cluster.nodes[] | select(.alive)] | length')
    if taskbatch n-batch-warmup batch "$aport" 1 "$n" "$bport"; then warm=$(kv "$TB_OUT" rate); fi
    if ! taskbatch n-batch batch "$aport" "$rounds" "$n" "$bport"; then
        fail "n: batch on A waited through B: $TB_ERR"
        stop_server "$c"
        return
    fi
    local res=$TB_OUT rate direct="failed"
    # For reference, the same rounds waited for on A itself (bench e's shape, on a cluster node).
    if taskbatch n-batch-direct batch "$aport" "$rounds" "$n"; then
        direct="$(kv "$TB_OUT" rate) tasks/s (rounds $(kv "$TB_OUT" rates))"
    fi
    stop_server "$c"
    rate=$(kv "$res" rate)
    row n "10,000 echo tasks: batch POST to node A + wait for all through node B (3 nodes), tasks/s ($rounds rounds)" \
        "-" "$rate" "-" ">= 100000" "$(verdict "$rate" '>=' 100000)"
    note "n: batch through A, waited through B: tasks/s of each round: $(kv "$res" rates) (best $(kv "$res" best_rate), worst $(kv "$res" worst_rate)); the figure is all tasks / all time. Warm-up round, not counted: ${warm:-failed} tasks/s. Right after, the same waited for on A itself: $direct. $nodes live nodes; in every round B's wait answer listed 10,000 ready and none not ready, and one value read back through B was the echoed argument."
}

bench_n() {
    local t
    for t in redis-server redis-cli; do
        command -v $t >/dev/null || { fail "n: $t is not installed (make cluster-test installs it)"; return; }
    done
    local rport redis a b alone aport bport lport msg runs=${BENCH_CLUSTER_BIG_RUNS:-3}
    n_part() { [[ -z ${BENCH_N_ONLY:-} || ,$BENCH_N_ONLY, == *,$1,* ]]; }
    local worker wport
    command -v python3 >/dev/null || { fail "n: python3 is not installed"; return; }
    start_worker || { fail "n: the example worker did not start"; return; }
    worker=$SRV_PID wport=$SRV_PORT
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT" \
        >"$LOGS/redis-n.log" 2>&1 &
    redis=$!
    SERVER_PIDS+=("$redis")
    for ((t = 0; t < 100; t++)); do
        [[ $(redis-cli -p "$rport" ping 2>/dev/null) == PONG ]] && break
        sleep 0.05
    done
    local cluster=(env "RAYD_CLUSTER=redis://127.0.0.1:$rport" "$RAYD_BIN" --bind 127.0.0.1 --port 0
        --max-body 2G --memory-limit 3G --remote-allow "http://127.0.0.1:$wport")
    COMMANDS+=("$(shq "${cluster[@]}")")
    start_server rayd-n-a "${cluster[@]}" || { fail "n: node A did not start"; stop_server "$redis"; return; }
    a=$SRV_PID aport=$SRV_PORT
    start_server rayd-n-b "${cluster[@]}" || { fail "n: node B did not start"; stop_server "$a"; stop_server "$redis"; return; }
    b=$SRV_PID bport=$SRV_PORT
    start_rayd rayd-n-alone --max-body 2G --memory-limit 3G || { fail "n: rayd alone did not start"; stop_server "$a"; stop_server "$b"; stop_server "$redis"; return; }
    alone=$SRV_PID lport=$SRV_PORT
    n_stop() { stop_server "$a"; stop_server "$b"; stop_server "$alone"; stop_server "$redis"; stop_server "$worker"; }
    if ! wait_ready "$aport" || ! wait_ready "$bport"; then
        fail "n: the cluster nodes did not join"
        n_stop
        return
    fi
    if ! msg=$(sanity_rayd "$aport") || ! msg=$(sanity_rayd "$lport"); then
        fail "n: $msg"
        n_stop
        return
    fi

    # --- 100-byte GET through the non-owner (copy cached) vs on the owner
    local ref ok=1
    head -c 100 /dev/urandom >"$OUT/obj100n.bin"
    ref=$(post_object "$aport" "$OUT/obj100n.bin" application/octet-stream)
    curl -s --max-time 10 -o "$OUT/obj100n.got" "http://127.0.0.1:$bport/v1/objects/$ref" || true
    if [[ -z $ref ]] || ! cmp -s "$OUT/obj100n.bin" "$OUT/obj100n.got"; then
        fail "n: a 100-byte object put on A did not read back through B"
        n_stop
        return
    fi
    local copies
    copies=$(curl -s "http://127.0.0.1:$bport/v1/status" | jq -r '.object_store.copies // .object_store.objects // "?"')
    if ! n_part get; then
        :
    elif wrk_abba n-get "http://127.0.0.1:$aport/v1/objects/$ref" "http://127.0.0.1:$bport/v1/objects/$ref"; then
        if [[ $P_NON2XX != 0 ]]; then
            fail "n: B answered $P_NON2XX non-2xx to GETs of A's object"
        else
            row n "GET 100 B through a non-owner (copy) vs on the owner, req/s (p99 ms)" \
                "$(calc %.0f "$P_BARE_RPS") ($P_BARE_P99)" "$(calc %.0f "$P_RAYD_RPS") ($P_RAYD_P99)" \
                "$(calc %.2f "$P_RAYD_RPS / $P_BARE_RPS")" ">= 0.5" \
                "$(verdict "$(calc %.6f "$P_RAYD_RPS / $P_BARE_RPS")" '>=' 0.5)"
            note "n: the \"bare\" column of this row is node A (the owner), \"rayd\" node B; req/s of each run, in order: $P_RUNS. B's store before the load: $copies (status object_store)."
        fi
    else
        fail "n: wrk failed on the GETs"
    fi

    # --- a node's own work with RAYD_CLUSTER set vs without
    local lref
    lref=$(post_object "$lport" "$OUT/obj100n.bin" application/octet-stream)
    if ! n_part own; then
        :
    elif wrk_abba n-own-get "http://127.0.0.1:$lport/v1/objects/$lref" "http://127.0.0.1:$aport/v1/objects/$ref"; then
        row n "own GET 100 B, RAYD_CLUSTER set vs not, req/s (p99 ms)" \
            "$(calc %.0f "$P_BARE_RPS") ($P_BARE_P99)" "$(calc %.0f "$P_RAYD_RPS") ($P_RAYD_P99)" \
            "$(calc %.2f "$P_RAYD_RPS / $P_BARE_RPS")" ">= 0.9" \
            "$(verdict "$(calc %.6f "$P_RAYD_RPS / $P_BARE_RPS")" '>=' 0.9)"
        note "n: own GET: the \"bare\" column is rayd without RAYD_CLUSTER, \"rayd\" node A; req/s of each run: $P_RUNS."
        [[ $P_NON2XX == 0 ]] || fail "n: node A answered $P_NON2XX non-2xx to its own GETs"
    else
        fail "n: wrk failed on the own GETs"
    fi
    if ! n_part own; then
        :
    elif wrk_abba n-own-task "http://127.0.0.1:$lport/v1/tasks" "http://127.0.0.1:$aport/v1/tasks" \
        -s tests/bench/task_echo.lua; then
        row n "own task per request (Prefer: wait), RAYD_CLUSTER set vs not, req/s (p99 ms)" \
            "$(calc %.0f "$P_BARE_RPS") ($P_BARE_P99)" "$(calc %.0f "$P_RAYD_RPS") ($P_RAYD_P99)" \
            "$(calc %.2f "$P_RAYD_RPS / $P_BARE_RPS")" ">= 0.9" \
            "$(verdict "$(calc %.6f "$P_RAYD_RPS / $P_BARE_RPS")" '>=' 0.9)"
        note "n: own task: req/s of each run: $P_RUNS."
        [[ $P_NON2XX == 0 ]] || fail "n: node A answered $P_NON2XX non-2xx to its own tasks"
    else
        fail "n: wrk failed on the own tasks"
    fi

    # --- actor calls (Prefer: wait) to 32 Counters on A: through B (relayed) vs on A
    local ids=$OUT/actors-n.txt id
    : >"$ids"
    for ((t = 0; t < 32; t++)); do
        n_part actor || break
        id=$(curl -s --max-time 10 -H 'Content-Type: application/json' \
            --data-binary '{"class":"Counter"}' "http://127.0.0.1:$aport/v1/actors" | jq -r '.actor_id // empty')
        [[ -n $id ]] && echo "$id" >>"$ids"
    done
    local sample
    n_part actor && sample=$(curl -s --max-time 10 -H 'Prefer: wait=5' -H 'Content-Type: application/json' \
        --data-binary '{"args":[1]}' "http://127.0.0.1:$bport/v1/actors/$(head -n1 "$ids")/methods/incr" || true)
    if ! n_part actor; then
        :
    elif [[ $(wc -l <"$ids") != 32 || $sample != 1 ]]; then
        fail "n: 32 actors on A, called through B: made $(wc -l <"$ids"), sample call answered '$sample'"
    else
        export BENCH_ACTORS_FILE=$ids
        if wrk_abba n-actor "http://127.0.0.1:$aport/" "http://127.0.0.1:$bport/" \
            -s tests/bench/actor_calls.lua; then
            row n "actor call (Prefer: wait) through a non-owner vs on its own node, req/s (p99 ms)" \
                "$(calc %.0f "$P_BARE_RPS") ($P_BARE_P99)" "$(calc %.0f "$P_RAYD_RPS") ($P_RAYD_P99)" \
                "$(calc %.2f "$P_RAYD_RPS / $P_BARE_RPS")" ">= 0.4" \
                "$(verdict "$(calc %.6f "$P_RAYD_RPS / $P_BARE_RPS")" '>=' 0.4)"
            note "n: actor calls to 32 Counters on A: the \"bare\" column is A (the owner), \"rayd\" B (relaying each call to A); req/s of each run: $P_RUNS."
            [[ $P_NON2XX == 0 ]] || fail "n: $P_NON2XX non-2xx answers to actor calls"
        else
            fail "n: wrk failed on the actor calls"
        fi
        unset BENCH_ACTORS_FILE
    fi

    # --- remote-class actor calls on A: state kept in the cluster (Redis) vs not
    local kind cls reg sample_plain sample_kept
    if n_part state; then
    for kind in plain kept; do
        cls=PlainAccount
        [[ $kind == kept ]] && cls=KeptAccount
        reg=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
            --data-binary "{\"url\":\"http://127.0.0.1:$wport/classes/Account\",\"timeout\":10,\"state_in_cluster\":$([[ $kind == kept ]] && echo true || echo false)}" \
            "http://127.0.0.1:$aport/v1/actor-classes/$cls" || true)
        [[ $reg == 201 ]] || fail "n: PUT /v1/actor-classes/$cls answered $reg"
        : >"$OUT/actors-n-state-$kind"
        for ((t = 0; t < 16; t++)); do
            id=$(curl -s --max-time 10 -H 'Content-Type: application/json' \
                --data-binary "{\"class\":\"$cls\",\"args\":[0],\"options\":{\"max_restarts\":1}}" \
                "http://127.0.0.1:$aport/v1/actors" | jq -r '.actor_id // empty')
            [[ -n $id ]] && echo "$id" >>"$OUT/actors-n-state-$kind"
        done
    done
    sample_plain=$(curl -s --max-time 10 -H 'Prefer: wait=5' -H 'Content-Type: application/json' \
        --data-binary '{"args":[1]}' "http://127.0.0.1:$aport/v1/actors/$(head -n1 "$OUT/actors-n-state-plain")/methods/deposit" || true)
    sample_kept=$(curl -s --max-time 10 -H 'Prefer: wait=5' -H 'Content-Type: application/json' \
        --data-binary '{"args":[1]}' "http://127.0.0.1:$aport/v1/actors/$(head -n1 "$OUT/actors-n-state-kept")/methods/deposit" || true)
    local kept_state
    kept_state=$(redis-cli -p "$rport" hget "actor:$(head -n1 "$OUT/actors-n-state-kept")" state 2>/dev/null || true)
    if [[ $(wc -l <"$OUT/actors-n-state-plain") != 16 || $(wc -l <"$OUT/actors-n-state-kept") != 16 ||
          $sample_plain != 1 || $sample_kept != 1 || $kept_state != '{"balance":1}' ]]; then
        fail "n: 16 + 16 Accounts on A: sample deposits answered '$sample_plain' and '$sample_kept', the kept state in Redis '$kept_state'"
    else
        export BENCH_ACTORS_FILE=$OUT/actors-n-state- BENCH_ACTORS_BY_PATH=1 BENCH_ACTOR_METHOD=deposit
        if wrk_abba n-state "http://127.0.0.1:$aport/plain" "http://127.0.0.1:$aport/kept" \
            -s tests/bench/actor_calls.lua; then
            row n "remote-class actor call (Prefer: wait), state kept in Redis (state_in_cluster) vs not, req/s (p99 ms)" \
                "$(calc %.0f "$P_BARE_RPS") ($P_BARE_P99)" "$(calc %.0f "$P_RAYD_RPS") ($P_RAYD_P99)" \
                "$(calc %.2f "$P_RAYD_RPS / $P_BARE_RPS")" "report" "-"
            note "n: state_in_cluster: Account.deposit(1) on 16 actors of each class on A (the example Python worker, as in j; both classes the same endpoint, every actor max_restarts 1): the \"bare\" column is the class without state_in_cluster, \"rayd\" the class with it (each call also writes the new state to Redis, one EVAL on the node's command thread, before it completes); req/s of each run: $P_RUNS. The state in Redis was checked after a sample call."
            [[ $P_NON2XX == 0 ]] || fail "n: $P_NON2XX non-2xx answers to remote-class actor calls"
        else
            fail "n: wrk failed on the remote-class actor calls"
        fi
        unset BENCH_ACTORS_FILE BENCH_ACTORS_BY_PATH BENCH_ACTOR_METHOD
    fi
    fi
    # --- 10,000-task batch on A, waited for through B, a third node up
    n_part batch && n_batch_across "$aport" "$bport"

    # --- 1 GiB: put on A, read through B, against curl's PUT to the bare server
    if ! n_part big; then
        n_stop
        return
    fi
    make_big_file || { fail "n: cannot create $BIG_FILE"; n_stop; return; }
    cat "$BIG_FILE" >/dev/null
    local put=(-X POST -T "$BIG_FILE" -H 'Content-Type: application/octet-stream')
    local bare bport_bare i bare_t=999999 get_t=999999 local_t=999999 hdr=$OUT/big-put-n.json runs_txt=""
    start_bare || { fail "n: bare server did not start"; n_stop; return; }
    bare=$SRV_PID bport_bare=$SRV_PORT
    for ((i = 1; i <= runs; i++)); do
        curl_time -o /dev/null "${put[@]}" "http://127.0.0.1:$bport_bare/v1/objects" || true
        if [[ $C_CODE != 200 || $C_UP != "$BIG_SIZE" ]]; then
            fail "n: bare upload answered $C_CODE after $C_UP bytes"
            ok=0
            break
        fi
        bare_t=$(awk -v a="$bare_t" -v b="$C_TIME" 'BEGIN { print (b < a) ? b : a }')
        runs_txt+="${runs_txt:+, }bare put $(calc %.2f "$BIG_SIZE / $C_TIME / 1e9")"
        curl -s --max-time 300 -o "$hdr" "${put[@]}" "http://127.0.0.1:$aport/v1/objects" || true
        ref=$(jq -r '.ref // empty' "$hdr" 2>/dev/null || true)
        if [[ -z $ref ]]; then
            fail "n: 1 GiB put on A failed: $(head -c 300 "$hdr")"
            ok=0
            break
        fi
        curl_time -o /dev/null "http://127.0.0.1:$bport/v1/objects/$ref" || true
        if [[ $C_CODE != 200 || $C_DOWN != "$BIG_SIZE" ]]; then
            fail "n: 1 GiB GET through B answered $C_CODE with $C_DOWN bytes"
            ok=0
            break
        fi
        get_t=$(awk -v a="$get_t" -v b="$C_TIME" 'BEGIN { print (b < a) ? b : a }')
        runs_txt+=", get through B $(calc %.2f "$BIG_SIZE / $C_TIME / 1e9")"
        curl_time -o /dev/null "http://127.0.0.1:$aport/v1/objects/$ref" || true
        local_t=$(awk -v a="$local_t" -v b="$C_TIME" 'BEGIN { print (b < a) ? b : a }')
        runs_txt+=", get on A $(calc %.2f "$BIG_SIZE / $C_TIME / 1e9")"
        if ((i == runs)); then # bytes exact, outside the timed runs, from B's copy
            curl -s --max-time 300 "http://127.0.0.1:$bport/v1/objects/$ref" | cmp -s - "$BIG_FILE" ||
                { fail "n: the 1 GiB object read through B differs from the file"; ok=0; }
        fi
        # Freed on A, and B's copy with it: the next read through B goes to A again.
        curl -s --max-time 30 -o /dev/null -X DELETE "http://127.0.0.1:$bport/v1/objects/$ref" || true
    done
    local hwm_b
    hwm_b=$(proc_bytes "$b" VmHWM)
    stop_server "$bare"
    n_stop
    [[ $ok == 1 ]] || return
    row n "1 GiB put on A, GET through B vs bare PUT, GB/s, best of $runs" \
        "$(calc %.2f "$BIG_SIZE / $bare_t / 1e9")" "$(calc %.2f "$BIG_SIZE / $get_t / 1e9")" \
        "$(calc %.2f "$bare_t / $get_t")" ">= 0.5" "$(verdict "$(calc %.6f "$bare_t / $get_t")" '>=' 0.5)"
    note "n: 1 GiB: GB/s of each run, in order: $runs_txt (get on A: the owner's own GET, for reference). B's peak RSS $(calc %.2f "${hwm_b:-0} / 1073741824") GiB (an object over 64 MiB passes through its 4 MiB window and is not kept; before that limit B kept a copy, 1 GiB)."
}

# ---------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------
# o) spilling: the spill thread's write rate against dd writing the same bytes to the same
# directory; GET of a spilled 64 MiB object against the same object in memory; GET of a
# spilled 100-byte object; the peak RSS while 8x the memory limit is stored.

# spill_rate PORT TOTAL: waits (up to 120 s) until TOTAL bytes less the memory limit are
# spilled, then sets S_RATE (bytes/s while the spill thread worked) and S_SECONDS.
spill_rate() {
    local port=$1 want=$2 i spilled
    for ((i = 0; i < 1200; i++)); do
        spilled=$(rayd_status "$port" .object_store.spilled_bytes)
        ((${spilled:-0} >= want)) && break
        sleep 0.1
    done
    ((${spilled:-0} >= want)) || return 1
    local bytes secs
    bytes=$(rayd_status "$port" .object_store.spill_write_bytes)
    secs=$(rayd_status "$port" .object_store.spill_thread_seconds)
    S_SECONDS=$secs
    S_RATE=$(calc %.0f "$bytes / $secs")
}

# post_urls FILE PORT N: a curl config (-K) of N POSTs to /v1/objects, answers discarded
post_urls() {
    local k
    for ((k = 0; k < $3; k++)); do
        printf 'url = "http://127.0.0.1:%s/v1/objects"\noutput = "/dev/null"\n' "$2"
    done >"$1"
}

bench_o() {
    local rounds=${BENCH_SPILL_ROUNDS:-3} dir=$OUT/spill-o mib=$((1024 * 1024))
    local limit=$((64 * mib)) nobj=128 obj=$((4 * mib)) total i
    total=$((nobj * obj))
    rm -rf "$dir"
    mkdir -p "$dir"
    head -c "$obj" /dev/urandom >"$OUT/obj4m.bin"
    head -c $((64 * mib)) /dev/urandom >"$OUT/obj64m.bin"
    head -c 100 /dev/urandom >"$OUT/obj100o.bin"
    local ddc_rates=() ddw_rates=() ddd_rates=() rayd_rates=() runs_txt="" hwm=0 rss=0

    # --- write rate: each side writes 512 MiB into $dir, in an order rotated every round so
    # that drift hits all sides alike. dd buffered copies every byte into the page cache, and
    # how fast the kernel hands it pages depends on this VM (free page reporting: pages freed
    # more than about 2 s ago were handed back to the host, and touching them again costs a
    # fault on the host): so it runs both ways, ddc after a 5 s pause (its pages come back
    # from the host) and ddw right after an unmeasured run of its own (it reuses the pages
    # that run just freed). ddd is dd with oflag=direct, which writes as rayd's spill does.
    local order=() side sides=(ddc ddw ddd rayd)
    for ((i = 0; i < rounds; i++)); do
        order+=("${sides[i % 4]}" "${sides[(i + 1) % 4]}" "${sides[(i + 2) % 4]}" "${sides[(i + 3) % 4]}")
    done
    for side in "${order[@]}"; do
        if [[ $side == dd? ]]; then
            local t0 t1 flags=() rate
            [[ $side == ddd ]] && flags=(oflag=direct)
            [[ $side == ddc ]] && sleep 5
            if [[ $side == ddw ]]; then
                dd if=/dev/zero of="$dir/dd.bin" bs=4M count=$nobj status=none
                rm -f "$dir/dd.bin"
            fi
            t0=$(date +%s%N)
            cmd dd if=/dev/zero of="$dir/dd.bin" bs=4M count=$nobj "${flags[@]}" status=none
            t1=$(date +%s%N)
            rm -f "$dir/dd.bin"
            rate=$(calc %.0f "$total / (($t1 - $t0) / 1e9)")
            case $side in
                ddc) ddc_rates+=("$rate") ;;
                ddw) ddw_rates+=("$rate") ;;
                ddd) ddd_rates+=("$rate") ;;
            esac
            runs_txt+="${runs_txt:+, }$side $(calc %.2f "$rate / 1e9")"
        else
            start_rayd rayd-o-spill --memory-limit 64M --spill-dir "$dir/rayd" --max-body 128M ||
                { fail "o: rayd did not start"; return; }
            local r=$SRV_PID port=$SRV_PORT
            # one curl, one keep-alive connection, the same 4 MiB posted to every URL listed
            post_urls "$OUT/o-urls.txt" "$port" $nobj
            cmd curl -s --max-time 300 -X POST --data-binary @"$OUT/obj4m.bin" \
                -H 'Content-Type: application/octet-stream' -K "$OUT/o-urls.txt" || true
            local objects
            objects=$(rayd_status "$port" .object_store.objects)
            if [[ $objects != "$nobj" ]] || ! spill_rate "$port" $((total - limit)); then
                fail "o: rayd stored ${objects:-?} of $nobj objects, or did not spill them within 120 s"
                stop_server "$r"
                return
            fi
            rayd_rates+=("$S_RATE")
            runs_txt+=", rayd $(calc %.2f "$S_RATE / 1e9") (spill thread busy $(calc %.2f "$S_SECONDS") s)"
            local h
            h=$(proc_bytes "$r" VmHWM)
            ((h > hwm)) && hwm=$h
            rss=$(proc_bytes "$r" VmRSS)
            stop_server "$r"
        fi
    done
    runs_txt=${runs_txt#, }
    local ddc_mean ddw_mean ddd_mean rayd_mean w
    ddc_mean=$(mean "${ddc_rates[@]}") ddw_mean=$(mean "${ddw_rates[@]}")
    ddd_mean=$(mean "${ddd_rates[@]}") rayd_mean=$(mean "${rayd_rates[@]}")
    for w in ddd ddc ddw; do
        local base_mean what
        case $w in
            ddd) base_mean=$ddd_mean what="dd oflag=direct (as rayd writes)" ;;
            ddc) base_mean=$ddc_mean what="dd buffered, its pages from the host (after a pause)" ;;
            ddw) base_mean=$ddw_mean what="dd buffered, its pages just freed by a dd before it" ;;
        esac
        row o "spill write rate (512 MiB in 4 MiB objects, 64 MiB limit) vs $what, same directory, GB/s" \
            "$(calc %.2f "$base_mean / 1e9")" "$(calc %.2f "$rayd_mean / 1e9")" \
            "$(calc %.2f "$rayd_mean / $base_mean")" ">= 0.7" "$(verdict "$(calc %.6f "$rayd_mean / $base_mean")" '>=' 0.7)"
    done
    local hwm_mib
    hwm_mib=$(calc %.0f "$hwm / $mib")
    row o "peak RSS (VmHWM) while 512 MiB are stored at a 64 MiB limit, MiB" "-" "$hwm_mib" "-" \
        "<= 64 + 128" "$(verdict "$hwm_mib" '<=' 192)"
    note "o: write rate: the bare columns are dd if=/dev/zero bs=4M count=$nobj of=FILE in the spill directory, buffered (ddc, ddw: every byte copied into the page cache) and with oflag=direct (ddd: from dd's buffer to the disk); the rayd column is spill_write_bytes / spill_thread_seconds from /v1/status (the thread's rate while it works, while the puts go on), which writes each object's whole pages with O_DIRECT and its unaligned head and tail (under 4 KiB each) buffered. Nobody syncs. File system: $(df -P "$dir" | awk 'NR == 2 { print $1 }'). GB/s of each run, in order: $runs_txt. VmRSS after the last run: $(calc %.0f "$rss / $mib") MiB."

    # --- GET of a spilled 64 MiB object vs the same in memory; 100-byte GETs
    start_rayd rayd-o-mem --max-body 128M || { fail "o: rayd (in memory) did not start"; return; }
    local mem=$SRV_PID mport=$SRV_PORT
    start_rayd rayd-o-spilled --memory-limit 32M --spill-dir "$dir/rayd" --max-body 128M ||
        { fail "o: rayd (spilling) did not start"; stop_server "$mem"; return; }
    local sp=$SRV_PID sport=$SRV_PORT
    o_stop() { stop_server "$mem"; stop_server "$sp"; }
    local mref sref small_m small_s
    mref=$(post_object "$mport" "$OUT/obj64m.bin" application/octet-stream)
    sref=$(post_object "$sport" "$OUT/obj64m.bin" application/octet-stream)
    small_m=$(post_object "$mport" "$OUT/obj100o.bin" application/octet-stream)
    small_s=$(post_object "$sport" "$OUT/obj100o.bin" application/octet-stream)
    # 48 MiB more on the spilling node push the 100-byte object (least recently used) out
    post_urls "$OUT/o-urls.txt" "$sport" 12
    curl -s --max-time 120 -X POST --data-binary @"$OUT/obj4m.bin" -K "$OUT/o-urls.txt" || true
    local spilled_big spilled_small
    for ((k = 0; k < 300; k++)); do
        spilled_small=$(curl -s "http://127.0.0.1:$sport/v1/objects/$small_s/meta" | jq -r .spilled)
        [[ $spilled_small == true ]] && break
        sleep 0.1
    done
    spilled_big=$(curl -s "http://127.0.0.1:$sport/v1/objects/$sref/meta" | jq -r .spilled)
    if [[ -z $mref || $spilled_big != true || $spilled_small != true ]]; then
        fail "o: the objects did not spill (64 MiB spilled: $spilled_big, 100 B spilled: $spilled_small)"
        o_stop
        return
    fi
    if ! curl -s --max-time 60 "http://127.0.0.1:$sport/v1/objects/$sref" | cmp -s - "$OUT/obj64m.bin"; then
        fail "o: the spilled 64 MiB object read back differs"
        o_stop
        return
    fi
    local mem_t=999999 sp_t=999999 gets_txt=""
    for ((i = 0; i < rounds; i++)); do
        for side in mem spilled spilled mem; do
            if [[ $side == mem ]]; then
                curl_time -o /dev/null "http://127.0.0.1:$mport/v1/objects/$mref" || true
                mem_t=$(awk -v a="$mem_t" -v b="$C_TIME" 'BEGIN { print (b < a) ? b : a }')
            else
                curl_time -o /dev/null "http://127.0.0.1:$sport/v1/objects/$sref" || true
                sp_t=$(awk -v a="$sp_t" -v b="$C_TIME" 'BEGIN { print (b < a) ? b : a }')
            fi
            [[ $C_CODE == 200 && $C_DOWN == $((64 * mib)) ]] || { fail "o: a 64 MiB GET ($side) answered $C_CODE with $C_DOWN bytes"; o_stop; return; }
            gets_txt+="${gets_txt:+, }$side $(calc %.2f "64 * $mib / $C_TIME / 1e9")"
        done
    done
    row o "GET 64 MiB spilled vs in memory, GB/s, best of $((2 * rounds))" \
        "$(calc %.2f "64 * $mib / $mem_t / 1e9")" "$(calc %.2f "64 * $mib / $sp_t / 1e9")" \
        "$(calc %.2f "$mem_t / $sp_t")" ">= 0.5" "$(verdict "$(calc %.6f "$mem_t / $sp_t")" '>=' 0.5)"
    note "o: 64 MiB GETs (GB/s, in order): $gets_txt. The spilled object is sent from its file (sendfile); it was written with O_DIRECT, so the first GET of it reads the disk and the later ones find its pages in the page cache."
    if wrk_abba o-get100 "http://127.0.0.1:$mport/v1/objects/$small_m" "http://127.0.0.1:$sport/v1/objects/$small_s"; then
        row o "GET 100 B spilled vs in memory, req/s (p99 ms)" \
            "$(calc %.0f "$P_BARE_RPS") ($P_BARE_P99)" "$(calc %.0f "$P_RAYD_RPS") ($P_RAYD_P99)" \
            "$(calc %.2f "$P_RAYD_RPS / $P_BARE_RPS")" "report" "-"
        note "o: 100-byte GETs: the bare column is rayd with the object in memory, the rayd column rayd with it spilled; req/s of each run: $P_RUNS."
        [[ $P_NON2XX == 0 ]] || fail "o: $P_NON2XX non-2xx answers to GETs of the spilled 100-byte object"
    else
        fail "o: wrk failed on the 100-byte GETs"
    fi
    spilled_small=$(curl -s "http://127.0.0.1:$sport/v1/objects/$small_s/meta" | jq -r .spilled)
    [[ $spilled_small == true ]] || note "o: the 100-byte object was no longer spilled after the load (read back into memory)"
    o_stop
    rm -rf "$dir" "$OUT/obj4m.bin" "$OUT/obj64m.bin" "$OUT/o-urls.txt"
}

selected() {
    [[ -z $BENCH_ONLY ]] && return 0
    [[ ,$BENCH_ONLY, == *",$1,"* ]]
}

for b in ${BENCH_ONLY//,/ }; do
    [[ " ${BENCHES[*]} " == *" $b "* ]] || {
        echo "run.sh: unknown benchmark '$b' in BENCH_ONLY (have: ${BENCHES[*]})" >&2
        exit 2
    }
done

command -v wrk >/dev/null || { echo "run.sh: wrk is not installed (make deps)" >&2; exit 1; }
command -v curl >/dev/null || { echo "run.sh: curl is not installed (make deps)" >&2; exit 1; }
command -v jq >/dev/null || { echo "run.sh: jq is not installed (make deps)" >&2; exit 1; }
[[ -x $RAYD_BIN ]] || { echo "run.sh: $RAYD_BIN not built (make all)" >&2; exit 1; }

log "building $BARE_BIN"
# shellcheck disable=SC2046
cc -O2 -o "$BARE_BIN" tests/bench/bare_server.c $(pkg-config --cflags --libs libmicrohttpd)
log "building $TASKBATCH_BIN"
# shellcheck disable=SC2046
cc -O2 -o "$TASKBATCH_BIN" tests/bench/taskbatch.c $(pkg-config --cflags --libs libcurl) -lm

STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
# the tree's state when the run starts (others may commit while it runs)
GIT_DESC="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ', dirty tree')"
LOADS="" # load average when each benchmark started
for b in "${BENCHES[@]}"; do
    selected "$b" || continue
    LOADS+="${LOADS:+; }$b $(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)"
    log "== benchmark $b"
    "bench_$b"
done

{
    echo "# rayd benchmark report"
    echo
    echo "- date: $STARTED; machine: $(nproc) cores ($(uname -m)), $(awk '/MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo)"
    echo "- rayd: \`$RAYD_BIN\` (tree at $GIT_DESC when the run started); baseline: \`$BARE_BIN --threads 2 --connection-memory $BARE_CONN_MEMORY\` (bare libmicrohttpd)"
    echo "- load average at the start (1, 5, 15 min): $LOADAVG"
    echo "- load average (1, 5, 15 min) when each benchmark started (UTC): $LOADS"
    echo "- BENCH_SECONDS=$BENCH_SECONDS BENCH_ONLY=${BENCH_ONLY:-all}; load generator and servers share the machine, loopback only"
    echo
    echo "| bench | metric | bare | rayd | ratio | target | result |"
    echo "|---|---|---|---|---|---|---|"
    for r in "${ROWS[@]}"; do echo "$r"; done
    echo
    for n in "${NOTES[@]}"; do echo "- $n"; done
    echo
    echo "Commands (ports are ephemeral):"
    echo
    echo '```'
    for c in "${COMMANDS[@]}"; do echo "$c"; done | awk '!seen[$0]++'
    echo '```'
} >"$OUT/report.md"
cat "$OUT/report.md"

if grep -q '| MISSED |' "$OUT/report.md"; then echo "MISSED: at least one target was not met (see the table)"; fi
if [[ $FAILED != 0 ]]; then
    echo "FAILED: at least one benchmark could not be run (see the notes)" >&2
    exit 1
fi
