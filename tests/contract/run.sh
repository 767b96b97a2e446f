#!/usr/bin/env bash
# Contract tests: the API suite's responses and spec-driven generated requests checked
# against openapi/openapi.yaml.
#
#   tests/contract/run.sh        (BUILD=build, RAYD_BIN=$BUILD/rayd by default;
#                                 API_TEST_BIN: the API test binaries, default all built)
#
# Builds nothing: build rayd, the API test binaries and the example modules first (the
# Makefile's contract target does). Installs the pinned npm tools from package-lock.json
# when node_modules lacks them. Then:
#   1. runs every API test binary with RAYD_CONTRACT_LOG=$BUILD/contract.jsonl, so the
#      harness records each response it gets;
#   2. tests/contract/validate.mjs checks the recorded responses against the spec;
#   3. tests/contract/generate.mjs sends generated requests to a rayd of its own.
# All three run even when one fails; exits 1 if any failed.
#
# CONTRACT_RECORDED=<file>: responses already recorded by an earlier API run (make test
# with RAYD_CONTRACT_LOG=<file>, as .ci/run does); step 1 is skipped and <file> checked.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
export RAYD_BIN=${RAYD_BIN:-$BUILD/rayd}

for m in ajv ajv-formats yaml fast-check json-schema-faker @redocly/cli; do
    if [ ! -d "node_modules/$m" ]; then
        npm ci --no-audit --no-fund || exit 1
        break
    fi
done
if [ ! -x "$RAYD_BIN" ]; then
    echo "contract: $RAYD_BIN is missing; build first (make all)" >&2
    exit 2
fi

# Step 1: runs the API test binaries ($API_TEST_BIN, the Makefile's list, else the built
# ones) with the recorder on; sets api to their exit status.
record_api_suite() {
    local tests=()
    if [ -n "${API_TEST_BIN:-}" ]; then
        read -r -a tests <<<"$API_TEST_BIN"
    else
        for f in "$BUILD"/tests/api/test_*; do
            [ -f "$f" ] && [ -x "$f" ] && [ "${f%.d}" = "$f" ] && tests+=("$f")
        done
    fi
    rm -f "$log"
    mkdir -p "$(dirname "$log")"
    local start=$(date +%s)
    RAYD_CONTRACT_LOG=$log tests/run_all.sh "${tests[@]}"
    api=$?
    echo "== API suite (recorded) took $(($(date +%s) - start)) s"
}

if [ -n "${CONTRACT_RECORDED:-}" ]; then
    if [ ! -s "$CONTRACT_RECORDED" ]; then
        echo "contract: CONTRACT_RECORDED=$CONTRACT_RECORDED holds no responses" >&2
        exit 2
    fi
    log=$CONTRACT_RECORDED
    api=0
    echo "== API suite: responses recorded earlier, in $log"
else
    log=$PWD/$BUILD/contract.jsonl
    record_api_suite
fi

start=$(date +%s)
node tests/contract/validate.mjs "$log"
validate=$?
echo "== validate took $(($(date +%s) - start)) s"

start=$(date +%s)
node tests/contract/generate.mjs
generate=$?
echo "== generate took $(($(date +%s) - start)) s"

failed=0
[ $api -eq 0 ] || { echo "FAILED: the API suite"; failed=$((failed + 1)); }
[ $validate -eq 0 ] || { echo "FAILED: recorded responses against the spec (validate.mjs)"; failed=$((failed + 1)); }
[ $generate -eq 0 ] || { echo "FAILED: generated requests (generate.mjs)"; failed=$((failed + 1)); }
echo "contract steps: $((3 - failed)) passed, $failed failed"
[ $failed -eq 0 ]
