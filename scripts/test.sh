#!/usr/bin/env bash
# Sets up and runs the whole test suite: type check, format check, unit tests (among them the layout's import
# rules, test/unit/layout.test.ts), integration tests against real nats-server processes, and the chaos test
# against a real fleet. Ends with one "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
echo "== typecheck"
npx tsc --noEmit || { echo "0 passed, 1 failed"; exit 1; }
echo "== format (prettier, 120 columns; npm run format fixes it)"
npx prettier --check --log-level warn "{statecharts,shared,lib,services,test,bench}/**/*.ts" vitest.config.ts || { echo "0 passed, 1 failed"; exit 1; }
report=$(mktemp)
echo "== vitest"
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
status=$?
# A file whose suite failed without a failed test (a throw at import, a failed beforeAll/afterAll hook)
# counts as one failure: its tests never ran, and a closing line of "0 failed" would hide it.
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const status = Number(process.argv[2]);
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  const brokenFiles = r.testResults.filter((f) => f.status === "failed" && !f.assertionResults.some((t) => t.status === "failed"));
  for (const f of brokenFiles) console.log(`failed suite: ${f.name}: ${(f.message || "failed outside its tests").split("\n")[0]}`);
  let failed = r.numFailedTests + brokenFiles.length;
  if (status !== 0 && failed === 0) {
    console.log(`vitest exited with status ${status} though no test or suite failed`);
    failed = 1;
  }
  console.log(`${r.numPassedTests} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "$report" "$status" 2>/dev/null || echo "0 passed, 1 failed"
rm -f "$report"
exit $status
