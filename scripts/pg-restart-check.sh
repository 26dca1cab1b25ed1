#!/usr/bin/env bash
# By hand (it restarts the machine's PostgreSQL server, so never in CI): two
# `redrive server`s on a fresh database, N executions of a 2-stage pipeline whose
# actions take a moment, PostgreSQL restarted in the middle; then checks that
# every execution succeeded, that no action succeeded twice in the ledger, and
# that the servers answered 503 (not a crash) while the database was down.
#
#   scripts/pg-restart-check.sh [BINARY] [EXECUTIONS]
#   STANDBY=1 scripts/pg-restart-check.sh …  # the servers with --cluster-mode standby
#   (the default, --cluster-mode spread, spreads the executions by shard)
set -euo pipefail
bin="${1:-target/release/redrive}"
n="${2:-50}"
admin="${REDRIVE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
db="redrive_restart_$$"
url="${admin%/*}/$db"
work="$(mktemp -d)"
version="$(ls /etc/postgresql | sort -V | tail -n1)"
cleanup() { kill "${pids[@]}" 2>/dev/null || true; psql "$admin" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; }
pids=()
mode=(--cluster-mode spread); [ -n "${STANDBY:-}" ] && mode=(--cluster-mode standby)
trap cleanup EXIT
psql "$admin" -qc "CREATE DATABASE $db"
for port in 7801 7802; do
  REDRIVE_DB="$url" "$bin" server "${mode[@]}" --listen "127.0.0.1:$port" --grace-seconds 1 >"$work/server-$port.log" 2>&1 &
  pids+=("$!")
  sleep 1
done
# Spread: wait until each server holds half of the shards.
if [ -z "${STANDBY:-}" ]; then
  halves="SELECT count(*) FROM (SELECT member FROM engine_lock WHERE id >= 2 AND expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT GROUP BY member HAVING count(*) = 8) h"
  until [ "$(psql "$url" -Atc "$halves")" = 2 ]; do sleep 0.5; done
  sleep 1
fi
# Four pipelines (spread: in different shards).
for i in 0 1 2 3; do
cat >"$work/p.json" <<JSON
{"name": "restart-$i", "executionMode": "PARALLEL", "maxConcurrentExecutions": 1000, "stages": [
  {"name": "One", "actions": [{"name": "Work", "command": ["sh", "-c", "sleep 1; echo \"\$REDRIVE_EXECUTION_ID One\" >> $work/effects.log"]}]},
  {"name": "Two", "actions": [{"name": "More", "command": ["sh", "-c", "echo \"\$REDRIVE_EXECUTION_ID Two\" >> $work/effects.log"]}]}]}
JSON
curl -sf -XPOST localhost:7802/v1/pipelines -H 'content-type: application/json' -d @"$work/p.json" >/dev/null
done
for i in $(seq "$n"); do curl -sf -XPOST "localhost:$((7801 + i % 2))/v1/pipelines/restart-$((i % 4))/executions" -H 'content-type: application/json' -d '{}' >/dev/null; done
echo "started $n executions; restarting PostgreSQL $version"
pg_ctlcluster --skip-systemctl-redirect "$version" main stop -m fast
sleep 0.5
codes="$(for port in 7801 7802; do curl -s -o /dev/null -w '%{http_code} ' -XPOST "localhost:$port/v1/pipelines/restart-0/executions" -H 'content-type: application/json' -d '{}'; done)"
echo "a start on each server while PostgreSQL is down answered: $codes"
sleep 3
pg_ctlcluster --skip-systemctl-redirect "$version" main start
deadline=$((SECONDS + 120))
while :; do
  done_count="$(psql "$url" -Atc "SELECT count(*) FROM executions WHERE status <> 'InProgress'" 2>/dev/null || echo 0)"
  total="$(psql "$url" -Atc "SELECT count(*) FROM executions" 2>/dev/null || echo -1)"
  [ "$done_count" = "$total" ] && break
  [ $SECONDS -lt $deadline ] || { echo "FAIL: $done_count of $total finished"; exit 1; }
  sleep 1
done
echo "statuses: $(psql "$url" -Atc "SELECT status || '=' || count(*) FROM executions GROUP BY status" | tr '\n' ' ')"
doubled="$(psql "$url" -Atc "SELECT count(*) FROM (SELECT execution_id, stage, action FROM ledger WHERE outcome = 'SUCCEEDED' GROUP BY 1, 2, 3 HAVING count(*) > 1) d")"
faults="$(psql "$url" -Atc "SELECT count(*) FROM ledger WHERE exception_type = 'Step.SERVICE_FAULT'")"
alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
echo "actions that succeeded twice in the ledger: $doubled; attempts recorded as Step.SERVICE_FAULT: $faults; servers still running: $alive of 2"
echo "leases now: $(psql "$url" -Atc "SELECT id || ':' || member || ' token ' || token FROM engine_lock WHERE member IS NOT NULL ORDER BY id" | tr '\n' ' ')"
[ "$doubled" = 0 ] || { echo FAIL; exit 1; }
echo OK
