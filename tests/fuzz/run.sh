#!/usr/bin/env bash
# Builds and runs rayd's libFuzzer harnesses (tests/fuzz/fuzz_*.c) against the real sources.
#
#   tests/fuzz/run.sh                      every harness, FUZZ_SECONDS (default 10) each
#   FUZZ_SECONDS=60 tests/fuzz/run.sh      longer runs; 0 only replays corpus + regressions
#   FUZZ_HARNESSES="fuzz_range fuzz_config" tests/fuzz/run.sh   a subset
#   CLANG=clang-14 tests/fuzz/run.sh       another compiler (must ship libFuzzer)
#   FUZZ_CFLAGS=-DMAX_REPEAT=1900 ...      extra flags for the harnesses only
#
# Steps:
#   1. compiles runtime/*.c api/*.c service/parse.c and the embedded OpenAPI document once,
#      with -fsanitize=fuzzer-no-link,address,undefined -g -O1, into build/fuzz/obj (only
#      what changed), and archives them as build/fuzz/librayd_fuzz.a;
#   2. links each harness with -fsanitize=fuzzer,address,undefined into build/fuzz/bin;
#   3. replays every file in tests/fuzz/regressions/<harness>/: each must run clean (one
#      that crashes fails the harness, which is still fuzzed afterwards);
#   4. fuzzes each harness for FUZZ_SECONDS on a working copy of its seed corpus in
#      build/fuzz/corpus/<harness> (the repo's corpus is never written; new inputs
#      accumulate in the copy across runs), logs in build/fuzz/logs, crashes in
#      build/fuzz/artifacts/<harness>/.
# Prints one result line per harness and `fuzz: N passed, M failed`; exits 1 if any
# harness failed to build, crashed on a regression input, or crashed while fuzzing.
set -u
cd "$(dirname "$0")/../.." || exit 2

FUZZ_SECONDS=${FUZZ_SECONDS:-10}
CLANG=${CLANG:-clang}
OUT=build/fuzz
FUZZ_DIR=tests/fuzz
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

if ! command -v "$CLANG" >/dev/null 2>&1; then
    echo "fuzz: $CLANG not found (Debian: apt-get install clang libclang-rt-14-dev)" >&2
    exit 2
fi
case "$FUZZ_SECONDS" in
'' | *[!0-9]*) echo "fuzz: FUZZ_SECONDS must be a whole number of seconds" >&2; exit 2 ;;
esac

PKG_CFLAGS=$(pkg-config --cflags libmicrohttpd jansson libcurl hiredis 2>/dev/null)
PKG_LIBS=$(pkg-config --libs libmicrohttpd jansson libcurl hiredis 2>/dev/null ||
    echo "-lmicrohttpd -ljansson -lcurl -lhiredis")
BASE_FLAGS="-std=gnu11 -g -O1 -fno-omit-frame-pointer -pthread -I. -D_GNU_SOURCE
    -fno-sanitize-recover=undefined $PKG_CFLAGS"
LIB_FLAGS="$BASE_FLAGS -fsanitize=fuzzer-no-link,address,undefined -Wall -Wextra
    -Wno-unused-parameter -Wno-missing-field-initializers"
HARNESS_FLAGS="$BASE_FLAGS -fsanitize=fuzzer,address,undefined -Wall -Wextra -Werror
    -Wno-unused-parameter -Wmissing-prototypes ${FUZZ_CFLAGS:-}"
LIBS="$PKG_LIBS -lm -ldl -pthread"

mkdir -p "$OUT/obj" "$OUT/bin" "$OUT/gen" "$OUT/logs" "$OUT/corpus" "$OUT/artifacts"

# Different flags or compiler: start the objects over.
stamp="$CLANG $("$CLANG" --version | head -1) $LIB_FLAGS"
if [ "$(cat "$OUT/obj/.flags" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$OUT/obj"
    mkdir -p "$OUT/obj"
    printf '%s' "$stamp" >"$OUT/obj/.flags"
fi

# ---- 1. the rayd objects ------------------------------------------------------------
spec_c="$OUT/gen/openapi_spec.c"
if [ ! -s "$spec_c" ] || [ openapi/openapi.yaml -nt "$spec_c" ] || [ openapi/embed.py -nt "$spec_c" ]; then
    /usr/bin/python3 openapi/embed.py openapi/openapi.yaml "$spec_c" || {
        echo "fuzz: cannot generate $spec_c" >&2
        exit 2
    }
fi

# The dashboard's files, embedded as the Makefile does (api/dashboard.c links against them).
dashboard_c="$OUT/gen/dashboard_files.c"
dashboard_files=(dashboard/index.html dashboard/app.js dashboard/style.css) # as DASHBOARD_FILES in the Makefile
regenerate=0
[ -s "$dashboard_c" ] || regenerate=1
for f in "${dashboard_files[@]}" dashboard/embed.py; do
    [ "$f" -nt "$dashboard_c" ] && regenerate=1
done
if [ "$regenerate" = 1 ]; then
    /usr/bin/python3 dashboard/embed.py "$dashboard_c" "${dashboard_files[@]}" || {
        echo "fuzz: cannot generate $dashboard_c" >&2
        exit 2
    }
fi

# Is the object stale? Missing, older than its source, or older than a header it used.
stale() {
    local src=$1 obj=$2 dep=${2%.o}.d
    [ -e "$obj" ] && [ -e "$dep" ] || return 0
    local f
    for f in $(sed -e ':a' -e '/\\$/{N;s/\\\n//;ba' -e '}' "$dep" | head -1 | sed 's/^[^:]*://'); do
        [ "$f" -nt "$obj" ] && return 0
    done
    return 1
}

sources=(runtime/*.c api/*.c service/parse.c "$spec_c" "$dashboard_c")
objects=()
failed_compile=0
running=0
for src in "${sources[@]}"; do
    obj="$OUT/obj/$(echo "${src#"$OUT"/}" | tr / _)"
    obj=${obj%.c}.o
    objects+=("$obj")
    if stale "$src" "$obj"; then
        # shellcheck disable=SC2086
        "$CLANG" $LIB_FLAGS -MMD -MP -c -o "$obj" "$src" &
        running=$((running + 1))
        if [ "$running" -ge "$JOBS" ]; then
            wait -n || failed_compile=1
            running=$((running - 1))
        fi
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || failed_compile=1
    running=$((running - 1))
done
if [ "$failed_compile" -ne 0 ]; then
    echo "fuzz: compiling the rayd sources failed" >&2
    exit 2
fi
lib="$OUT/librayd_fuzz.a"
rm -f "$lib"
ar rcs "$lib" "${objects[@]}" || exit 2

# ---- 2..4. each harness -----------------------------------------------------------
if [ -n "${FUZZ_HARNESSES:-}" ]; then
    read -r -a harnesses <<<"$FUZZ_HARNESSES"
else
    harnesses=()
    for f in "$FUZZ_DIR"/fuzz_*.c; do
        harnesses+=("$(basename "$f" .c)")
    done
fi

# The dictionary of a harness, if it has one.
dict_of() {
    case $1 in
    fuzz_router) echo "$FUZZ_DIR/dicts/router.dict" ;;
    fuzz_range) echo "$FUZZ_DIR/dicts/range.dict" ;;
    fuzz_config) echo "$FUZZ_DIR/dicts/config.dict" ;;
    fuzz_decode_*) echo "$FUZZ_DIR/dicts/json.dict" ;;
    fuzz_problem) echo "$FUZZ_DIR/dicts/problem.dict" ;;
    esac
}

# "cov: N ft: M" from a libFuzzer status line of the given kind (INITED, DONE, ...).
stat_of() { # log kind field
    grep -E "^#[0-9]+[[:space:]]+$2 " "$1" | tail -1 | sed -nE "s/.* $3: ([0-9]+).*/\1/p"
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0
failed=0
for h in "${harnesses[@]}"; do
    src="$FUZZ_DIR/$h.c"
    bin="$OUT/bin/$h"
    log="$OUT/logs/$h.log"
    : >"$log"
    if [ ! -f "$src" ]; then
        printf '%-24s FAIL  no such harness %s\n' "$h" "$src"
        failed=$((failed + 1))
        continue
    fi
    # shellcheck disable=SC2086
    if ! "$CLANG" $HARNESS_FLAGS -o "$bin" "$src" "$lib" $LIBS >>"$log" 2>&1; then
        printf '%-24s FAIL  build (see %s)\n' "$h" "$log"
        failed=$((failed + 1))
        continue
    fi

    # Regressions: every file must run without a crash.
    bad_regressions=()
    nreg=0
    if [ -d "$FUZZ_DIR/regressions/$h" ]; then
        for f in "$FUZZ_DIR/regressions/$h"/*; do
            [ -f "$f" ] || continue
            nreg=$((nreg + 1))
            if ! "$bin" -timeout=25 "$f" >>"$log" 2>&1; then
                bad_regressions+=("$f")
            fi
        done
    fi
    reg_note=""
    if [ "${#bad_regressions[@]}" -gt 0 ]; then
        reg_note=$(printf '%d of %d regression inputs crash: %s' "${#bad_regressions[@]}" \
            "$nreg" "${bad_regressions[*]}")
        reg_why=$(grep -m2 -E "fuzz invariant failed|^SUMMARY|runtime error:" "$log")
    fi

    # Fuzzing on a working copy of the seed corpus.
    work="$OUT/corpus/$h"
    mkdir -p "$work" "$OUT/artifacts/$h"
    if [ -d "$FUZZ_DIR/corpus/$h" ]; then
        cp -n "$FUZZ_DIR/corpus/$h"/* "$work"/ 2>/dev/null
    fi
    dict=$(dict_of "$h")
    args=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$OUT/artifacts/$h/")
    [ -n "$dict" ] && [ -f "$dict" ] && args+=(-dict="$dict")
    if [ "$FUZZ_SECONDS" -eq 0 ]; then
        args+=(-runs=0) # execute the corpus once, no mutations
    else
        args+=(-max_total_time="$FUZZ_SECONDS")
    fi
    echo "== $bin ${args[*]} $work" >>"$log"
    "$bin" "${args[@]}" "$work" >>"$log" 2>&1
    rc=$?
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -1)
    eps=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -1)
    cov0=$(stat_of "$log" INITED cov)
    ft0=$(stat_of "$log" INITED ft)
    cov1=$(stat_of "$log" DONE cov)
    ft1=$(stat_of "$log" DONE ft)
    [ -z "$cov1" ] && cov1=$(grep -E "^#[0-9]+[[:space:]]" "$log" | tail -1 | sed -nE 's/.* cov: ([0-9]+).*/\1/p')
    [ -z "$ft1" ] && ft1=$(grep -E "^#[0-9]+[[:space:]]" "$log" | tail -1 | sed -nE 's/.* ft: ([0-9]+).*/\1/p')
    corpus=$(find "$work" -type f | wc -l)
    summary=$(printf 'runs=%s exec/s=%s cov %s->%s ft %s->%s corpus=%s regressions=%d' \
        "${runs:-?}" "${eps:-?}" "${cov0:-?}" "${cov1:-?}" "${ft0:-?}" "${ft1:-?}" "$corpus" "$nreg")
    if [ -n "$reg_note" ]; then
        printf '%-24s FAIL  %s; fuzzing: exit %d, %s\n' "$h" "$reg_note" "$rc" "$summary"
        while IFS= read -r line; do echo "    $line"; done <<<"$reg_why"
        echo "    log: $log"
        failed=$((failed + 1))
    elif [ "$rc" -eq 0 ]; then
        printf '%-24s ok    %s\n' "$h" "$summary"
        passed=$((passed + 1))
    else
        artifact=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -1)
        printf '%-24s FAIL  exit %d, %s\n' "$h" "$rc" "$summary"
        printf '    input: %s (keep it under %s/regressions/%s/)\n' "${artifact:-?}" "$FUZZ_DIR" "$h"
        grep -m3 -E "fuzz invariant failed|^SUMMARY|ERROR: (AddressSanitizer|libFuzzer|UndefinedBehaviorSanitizer)|runtime error:" "$log" |
            sed 's/^/    /'
        echo "    log: $log"
        failed=$((failed + 1))
    fi
done

echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
