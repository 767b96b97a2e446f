#!/bin/sh
# rayd under valgrind's memcheck, for tests/valgrind/run.sh: the API test harness starts this
# script as RAYD_BIN. One log per server process in $RAYD_VALGRIND_DIR (build/valgrind).
# RAYD_VALGRIND_REAL overrides the binary (default build/rayd, relative to the repository).
here=$(cd "$(dirname "$0")/../.." && pwd)
dir=${RAYD_VALGRIND_DIR:-$here/build/valgrind}
bin=${RAYD_VALGRIND_REAL:-$here/build/rayd}
mkdir -p "$dir"
# --soname-synonyms: rayd links jemalloc; memcheck must replace its malloc and free (3.19
# does so unasked; the synonym says it for any version), not only glibc's.
exec valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
    --soname-synonyms=somalloc='*jemalloc*' \
    --error-exitcode=99 --log-file="$dir/rayd.%p.log" "$bin" "$@"
