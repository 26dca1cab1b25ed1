#!/usr/bin/env python3
"""Retention soak (by hand, never in CI): a retry-heavy workload for a
"simulated month" with retention in seconds, watching the store's size level off.

    scripts/retention-soak.py [--bin target/release/redrive] [--minutes 5] [--rate 100]

A `redrive server` keeps finished executions 10 s (`retention:` in its config,
sweep every 1 s). A client starts `--rate` executions per second of a pipeline
whose 3 actions each fail twice before succeeding (9 attempts per execution);
one execution in 50 fails for good into a dead-letter queue, and every 20 s the
queue is redriven (stage retries), so entries move and resolved ones age out. Every 10 s the script samples the database + WAL size, the rows per table
(read-only) and the pruned totals. The size must level off once the first
retention period has passed: the last third's mean size is compared with the
middle third's.
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
    "name": "soak",
    "executionMode": "PARALLEL",
    "maxConcurrentExecutions": 10000,
    "deadLetterQueue": "soak-dlq",
    "stages": [
        {
            "name": "Work",
            "actions": [
                {
                    "name": f"A{i}",
                    "runOrder": i,
                    "noop": {"failFirst": 2, "failWith": "Step.SERVICE_FAULT"},
                    "retryPolicies": [{"exceptionType": ["Step.SERVICE_FAULT"], "intervalSeconds": 0.05, "maxAttempts": 3}],
                }
                for i in (1, 2, 3)
            ],
        }
    ],
}
DOOMED = dict(PIPELINE, name="doomed")
DOOMED["stages"] = [{"name": "Work", "actions": [{"name": "A", "noop": {"failFirst": 1, "failWith": "Custom.Boom"},
                                                 "retryPolicies": [{"exceptionType": ["Custom.Boom"], "maxAttempts": 0}]}]}]
CONFIG = "retention:\n  executions: 10s\n  deadLetterEntries: 10s\n  redriveRuns: 10s\n  sweepEvery: 1s\n"


def start_server(binary: str, db: str, config: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([binary, "server", "--listen", "127.0.0.1:0", "--db", db, "--config", config],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "listening on http://" in line:
            return proc, line.split("listening on http://", 1)[1].split()[0]
    raise SystemExit(f"the server did not start (exit {proc.wait()})")


def request(conn: http.client.HTTPConnection, method: str, path: str, body=None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    resp = conn.getresponse()
    text = resp.read()
    return resp.status, (json.loads(text) if text else {})


def size_bytes(db: str) -> int:
    return sum(os.path.getsize(p) for p in (db, db + "-wal") if os.path.exists(p))


def rows(db: str) -> dict:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    out = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("executions", "ledger", "dlq_entries")}
    conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default="target/release/redrive")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--rate", type=int, default=100, help="executions started per second")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="redrive-soak-")
    db, config = os.path.join(work, "soak.db"), os.path.join(work, "server.yaml")
    with open(config, "w") as f:
        f.write(CONFIG)
    proc, addr = start_server(os.path.abspath(args.bin), db, config)
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    for p in (PIPELINE, DOOMED):
        status, body = request(conn, "POST", "/v1/pipelines", p)
        assert status == 201, body
    started, samples, started_total = time.time(), [], 0
    next_sample, next_redrive = started, started + 20
    print("| t (s) | size (MiB) | executions | ledger rows | dead-letter entries | started |")
    print("|---|---|---|---|---|---|")
    while time.time() - started < args.minutes * 60:
        tick = time.time()
        for i in range(args.rate):
            name = "doomed" if (started_total + i) % 50 == 0 else "soak"
            status, body = request(conn, "POST", f"/v1/pipelines/{name}/executions", {})
            assert status == 201, body
        started_total += args.rate
        if tick >= next_redrive:
            status, body = request(conn, "POST", "/v1/dlq/queues/soak-dlq/redrive", {})
            next_redrive += 20
        if tick >= next_sample:
            r = rows(db)
            s = size_bytes(db)
            samples.append((tick - started, s))
            print(f"| {tick - started:.0f} | {s / 2**20:.1f} | {r['executions']} | {r['ledger']} | {r['dlq_entries']} | {started_total} |", flush=True)
            next_sample += 10
        time.sleep(max(0.0, 1.0 - (time.time() - tick)))
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    third = len(samples) // 3
    middle = statistics.mean(s for _, s in samples[third:2 * third])
    last = statistics.mean(s for _, s in samples[2 * third:])
    print(f"\nstarted {started_total} executions; mean size middle third {middle / 2**20:.1f} MiB, last third {last / 2**20:.1f} MiB "
          f"(ratio {last / middle:.2f}; about 1.0 means it levelled off)")


if __name__ == "__main__":
    sys.exit(main())
