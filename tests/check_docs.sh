#!/usr/bin/env bash
# Checks that documentation generated from the code cannot drift from it:
# - the README's configuration table is exactly what `rayd --config-markdown` prints from
#   the settings table;
# - every problem title the HTTP layer answers with has a row in api/problem.c's table of
#   kinds, so that its `type` (/problems/<title>) resolves to a page.
set -euo pipefail
cd "$(dirname "$0")/.."
RAYD_BIN=${RAYD_BIN:-build/rayd}
passed=0 failed=0
want=$("$RAYD_BIN" --config-markdown)
have=$(sed -n '/<!-- config-table:/,/<!-- config-table-end -->/p' README.md | sed '1d;$d')
if [ "$want" != "$have" ]; then
    echo "README.md's configuration table differs from rayd --config-markdown:"
    diff <(echo "$have") <(echo "$want") || true
    failed=$((failed + 1))
else
    passed=$((passed + 1))
fi
# Titles in calls such as api_problem(req, 404, "NotFound", ...), api_problemf(...) and
# api_problem_new(404, "NotFound", ...), also when the call spans lines.
used=$(cat api/*.c | tr '\n' ' ' |
    grep -oE 'api_problem(f|_new)?\([[:space:]]*(req,[[:space:]]*)?[0-9]{3},[[:space:]]*"[A-Za-z]+"' |
    sed -E 's/.*"([A-Za-z]+)"$/\1/' | sort -u)
missing=""
for t in $used; do
    grep -qE "^[[:space:]]*\{\"$t\"," api/problem.c || missing="$missing $t"
done
if [ -n "$missing" ] || [ -z "$used" ]; then
    echo "problem titles without a row in api/problem.c's KINDS table:${missing:- (none found: the pattern is stale)}"
    failed=$((failed + 1))
else
    passed=$((passed + 1))
fi
echo "docs: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
