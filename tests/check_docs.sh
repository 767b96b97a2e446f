#!/usr/bin/env bash
# Checks that the README's configuration table is exactly what `rayd --config-markdown`
# prints from the settings table, so the two cannot drift apart.
set -euo pipefail
cd "$(dirname "$0")/.."
RAYD_BIN=${RAYD_BIN:-build/rayd}
want=$("$RAYD_BIN" --config-markdown)
have=$(sed -n '/<!-- config-table:/,/<!-- config-table-end -->/p' README.md | sed '1d;$d')
if [ "$want" != "$have" ]; then
    echo "README.md's configuration table differs from rayd --config-markdown:"
    diff <(echo "$have") <(echo "$want") || true
    echo "docs: 0 passed, 1 failed"
    exit 1
fi
echo "docs: 1 passed, 0 failed"
