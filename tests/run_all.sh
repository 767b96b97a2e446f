#!/usr/bin/env bash
# Runs each test binary given, all of them even when one fails, and ends with one summary
# line "binaries: N passed, M failed"; exits 1 if any failed.
passed=0 failed=0 failures=()
for t in "$@"; do
    echo "== $t"
    start=$(date +%s%N)
    if "$t"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$t"); fi
    echo "== $t took $(( ($(date +%s%N) - start) / 1000000 )) ms"
done
for f in "${failures[@]}"; do echo "FAILED: $f"; done
echo "binaries: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
