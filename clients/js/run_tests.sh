#!/bin/sh
# The JavaScript client's tests (node --test) against a live rayd: $RAYD_BIN, default
# build/rayd.
cd "$(dirname "$0")" || exit 1
exec node --test test/client.test.mjs test/worker.test.mjs test/examples.test.mjs
