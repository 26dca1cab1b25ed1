#!/usr/bin/env bash
# Writes tests/fixtures/upgrade/<NAME>.db: a small SQLite store written by the
# redrive binary given, holding what later releases must keep reading —
#   - `done`: an execution that succeeded after a retry (ledger: failure, success);
#   - `dead`: an execution that failed for good into the dead-letter queue `dead-q`;
#   - `held`: an unfinished execution, killed (kill -9) in the middle of an attempt
#     of its second stage (its first stage committed).
# Run once per release that changes the schema, and commit the file; the test
# `upgrade.rs` opens every fixture with the current code.
#
#   scripts/make-upgrade-fixture.sh BINARY NAME     e.g. target/release/redrive schema5
set -euo pipefail
bin="$(realpath "$1")"
name="$2"
out="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/upgrade/$name.db"
[ ! -e "$out" ] || { echo "$out exists" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
cat > done.yaml <<'YAML'
name: done
stages:
  - name: Build
    actions:
      - name: Compile
        noop: {failFirst: 1, failWith: Step.SERVICE_FAULT}
        retryPolicies:
          - {exceptionType: [Step.SERVICE_FAULT], intervalSeconds: 0, maxAttempts: 3}
YAML
cat > dead.yaml <<'YAML'
name: dead
deadLetterQueue: dead-q
stages:
  - name: Deploy
    actions:
      - name: Push
        noop: {failFirst: 5, failWith: Action.FAILED}
YAML
# The second stage holds while the hold file exists (it does while the fixture is
# written; a resumed attempt later finds none and succeeds at once). Actions do
# not inherit the engine's environment, so the switch is a file.
cat > held.yaml <<'YAML'
name: held
stages:
  - name: One
    actions:
      - name: First
        noop: {}
  - name: Two
    actions:
      - name: Slow
        command: ["sh", "-c", "if [ -e /tmp/redrive-upgrade-fixture.hold ]; then touch /tmp/redrive-upgrade-fixture.holding; sleep 600; fi"]
        # Absolute: the fixture is opened far from the directory it was written in.
        workingDirectory: /
YAML
"$bin" run done.yaml --db f.db >/dev/null
"$bin" run dead.yaml --db f.db >/dev/null 2>&1 || true
hold=/tmp/redrive-upgrade-fixture.hold holding=/tmp/redrive-upgrade-fixture.holding
rm -f "$holding"; touch "$hold"
"$bin" run held.yaml --db f.db >/dev/null 2>&1 &
pid=$!
for _ in $(seq 300); do [ -e "$holding" ] && break; sleep 0.1; done
[ -e "$holding" ] || { echo "the held action never started" >&2; exit 1; }
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
rm -f "$hold" "$holding"
# One self-contained file: fold the WAL in.
python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.execute('PRAGMA journal_mode=DELETE'); c.close()" f.db
cp f.db "$out"
chmod 0644 "$out"
echo "wrote $out ($(stat -c %s "$out") bytes, schema $(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select max(version) from schema_migrations').fetchone()[0])" "$out"))"
