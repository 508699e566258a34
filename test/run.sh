#!/usr/bin/env bash
# The test command (README: `npm test`). Installs what the tests need, then typechecks and runs vitest.
# Set ECGFAAS_MITDB to a directory of MIT-BIH records to also run the tests on the full DS1 set.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --tests

npx tsc --noEmit -p tsconfig.json

# vitest's own summary is for people; the plain "N passed, N failed" line at the end is for CI.
results="$(mktemp -t ecgfaas-vitest-XXXXXX.json)"
trap 'rm -f "$results"' EXIT
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$results" "$@" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' "$results" || true
exit "$status"
