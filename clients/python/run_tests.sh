#!/bin/sh
# The Python client's tests (unittest) against a live rayd: $RAYD_BIN, default build/rayd.
# PYTHON picks the interpreter (default /usr/bin/python3, Debian's, where make deps
# installs python3-numpy for the Getting Started test).
cd "$(dirname "$0")/tests" || exit 1
exec "${PYTHON:-/usr/bin/python3}" -m unittest -v test_client test_worker test_getting_started test_examples
