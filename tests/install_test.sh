#!/usr/bin/env bash
# `make install` into a staging root (DESTDIR), then what the README promises of it: the
# installed rayd runs from the PATH, and the README's C module (its ```c block) builds
# against the installed header alone, loads, and answers. Ends with
# "install: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
stage=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$stage"' EXIT
passed=0 failed=0
check() { # name, then the command
    local name=$1
    shift
    if "$@" >"$stage/out" 2>&1; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAILED: $name"
        cat "$stage/out"
    fi
}
make -s install DESTDIR="$stage" PREFIX=/usr/local >/dev/null
export PATH="$stage/usr/local/bin:$PATH"
check "rayd on the PATH" sh -c 'command -v rayd | grep -q "^'"$stage"'" && rayd --version'
awk '/^```c$/{on=1; next} /^```$/{on=0} on' README.md >"$stage/shout.c"
check "the README's module builds against the installed header" \
    cc -shared -fPIC -I "$stage/usr/local/include/rayd" -o "$stage/shout.so" "$stage/shout.c"
rayd --bind 127.0.0.1 --port 0 --module "$stage/shout.so" >"$stage/log" 2>&1 &
pid=$!
listening() {
    for _ in $(seq 200); do
        grep -q '"event":"listening"' "$stage/log" && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    cat "$stage/log"
    return 1
}
check "the installed rayd loads the module" listening
port=$(sed -n 's/.*"port": *\([0-9][0-9]*\).*/\1/p' "$stage/log" | head -1)
shout() {
    curl -sf -H 'Prefer: wait=5' "http://127.0.0.1:$port/v1/tasks" \
        -d '{"function":"shout","args":["hi"]}' | grep -qx '"hi!"'
}
check "the module's function answers" shout
kill "$pid" && wait "$pid" || true
make -s uninstall DESTDIR="$stage" PREFIX=/usr/local >/dev/null
check "make uninstall removes what install put" test ! -e "$stage/usr/local/bin/rayd"
echo "install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
