#!/usr/bin/env python3
"""W3 (by hand, never in CI): kill -9 a `redrive server` with N executions in
flight, restart it on the same store, and measure from the attempt ledger:

- first new attempt after the restart (target <= 1 s);
- every attempt that was running at the kill re-dispatched (target <= 5 s);
- executions lost (never finished) and committed successes run again (target 0).

    scripts/bench-w3.py [--bin target/release/redrive] [--executions 10000] [--runs 3]

Each execution runs one noop action that takes 2 s, then a quick one; attempt
slots are shared (256 at most run at once), so at the kill a few hundred attempts
are running and the rest wait for a slot. Every figure is counted from the store.
Prints one line per run and the medians.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

PIPELINE = {
    "name": "w3",
    "executionMode": "PARALLEL",
    "maxConcurrentExecutions": 10000,
    "stages": [
        {"name": "One", "actions": [{"name": "Slow", "noop": {"sleepMs": 2000}}]},
        {"name": "Two", "actions": [{"name": "Quick", "noop": {}}]},
    ],
}


def start_server(binary: str, db: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([binary, "server", "--listen", "127.0.0.1:0", "--db", db, "--grace-seconds", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "listening on http://" in line:
            addr = line.split("listening on http://", 1)[1].split()[0]
            return proc, addr
    raise SystemExit(f"the server did not start (exit {proc.wait()})")


def request(conn: http.client.HTTPConnection, method: str, path: str, body=None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    resp = conn.getresponse()
    text = resp.read()
    return resp.status, (json.loads(text) if text else {})


def now_ms() -> int:
    return int(time.time() * 1000)


def one_run(binary: str, executions: int) -> dict:
    work = tempfile.mkdtemp(prefix="redrive-w3-")
    db = os.path.join(work, "w3.db")
    proc, addr = start_server(binary, db)
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    status, _ = request(conn, "POST", "/v1/pipelines", PIPELINE)
    assert status == 201, status
    for _ in range(executions):
        status, body = request(conn, "POST", "/v1/pipelines/w3/executions", {})
        assert status == 201, body
    conn.close()
    # Kill while the first wave of 2 s attempts runs.
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    restarted_at = now_ms()
    proc, addr = start_server(binary, db)
    ready_at = now_ms()
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    deadline = time.time() + 600
    while True:
        unfinished = reader.execute("SELECT COUNT(*) FROM executions WHERE status = 'InProgress'").fetchone()[0]
        if unfinished == 0 or time.time() > deadline:
            break
        time.sleep(0.5)
    first_after = reader.execute("SELECT MIN(started_at) FROM ledger WHERE started_at >= ?", (restarted_at,)).fetchone()[0]
    # Attempts running at the kill: recorded at recovery as Step.SERVICE_FAULT;
    # their next attempt is the re-dispatch.
    redispatch = reader.execute(
        """SELECT MAX(n.started_at) FROM ledger f JOIN ledger n
             ON n.execution_id = f.execution_id AND n.stage = f.stage AND n.action = f.action
            AND n.series = f.series AND n.attempt = f.attempt + 1
           WHERE f.exception_type = 'Step.SERVICE_FAULT'"""
    ).fetchone()[0]
    recovered = reader.execute("SELECT COUNT(*) FROM ledger WHERE exception_type = 'Step.SERVICE_FAULT'").fetchone()[0]
    lost = reader.execute("SELECT COUNT(*) FROM executions WHERE status <> 'Succeeded'").fetchone()[0]
    rerun = reader.execute(
        """SELECT COUNT(*) FROM (SELECT execution_id, stage, action FROM ledger WHERE outcome = 'SUCCEEDED'
           GROUP BY 1, 2, 3 HAVING COUNT(*) > 1)"""
    ).fetchone()[0]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    return {
        "restart_to_ready_ms": ready_at - restarted_at,
        "first_new_attempt_ms": (first_after - restarted_at) if first_after else None,
        "all_redispatched_ms": (redispatch - restarted_at) if redispatch else None,
        "in_flight_at_kill": recovered,
        "lost": lost,
        "committed_rerun": rerun,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/redrive")
    parser.add_argument("--executions", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    for i in range(args.runs):
        r = one_run(os.path.abspath(args.bin), args.executions)
        results.append(r)
        print(f"run {i + 1}: {json.dumps(r)}", flush=True)
    for key in results[0]:
        values = [r[key] for r in results if r[key] is not None]
        if values:
            print(f"median {key}: {statistics.median(values)}")


if __name__ == "__main__":
    sys.exit(main())
