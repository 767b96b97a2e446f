#!/bin/sh
# Lint openapi/openapi.yaml with Redocly CLI (pinned in package.json, config in
# redocly.yaml). Installs the pinned CLI from package-lock.json first if it is missing.
# Exits non-zero if the linter reports any error.
set -eu
cd "$(dirname "$0")/.."
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
if [ ! -d node_modules/@redocly/cli ]; then
  npm ci --no-audit --no-fund
fi
exec npx --no-install redocly lint openapi/openapi.yaml "$@"
