#!/usr/bin/env bash
# The test command (README: `npm test`). Installs what the tests need, then typechecks and runs vitest.
# Set ECGFAAS_MITDB to a directory of MIT-BIH records to also run the tests on the full DS1 set.
set -euo pipefail
cd "$(dirname "$0")/.."

# npm packages: install when missing or when the lock file changed since the last install.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

npx tsc --noEmit -p tsconfig.json
npx vitest run "$@"
