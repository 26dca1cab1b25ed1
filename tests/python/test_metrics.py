"""`/metrics` after a known workload, read with the Prometheus client library's
OpenMetrics parser: every figure the engine counts equals what the ledger and
the executions say (attempts by exception type and outcome, retries by policy,
give-ups by reason, executions by status, dead-letter depth, histogram counts).
Runs its own `redrive server` (a fresh database), so nothing else is counted."""

from __future__ import annotations

from collections import Counter

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import stop_process
from support import wait_for
from test_cluster import start_server

FLAKY_RUNS = 3
DOOMED_RUNS = 2


@pytest.fixture()
def server(tmp_path):
    proc, url = start_server(str(tmp_path / "metrics.db"), tmp_path / "server.log")
    try:
        yield url
    finally:
        stop_process(proc)


def post(url: str, path: str, body: dict) -> dict:
    r = requests.post(url + path, json=body, timeout=10)
    assert r.status_code in (200, 201), r.text
    return r.json()


def flaky() -> dict:
    """Fails twice with Step.THROTTLING (retried by policy 0), then succeeds."""
    return {
        "name": "metrics-flaky",
        "executionMode": "PARALLEL",
        "stages": [{"name": "S", "actions": [{
            "name": "Flaky",
            "noop": {"failFirst": 2, "failWith": "Step.THROTTLING"},
            "retryPolicies": [{"exceptionType": ["Step.THROTTLING"], "intervalSeconds": 0.05, "maxAttempts": 3}],
        }]}],
    }


def doomed() -> dict:
    """Always fails with Custom.Boom, not retried, into a dead-letter queue."""
    return {
        "name": "metrics-doomed",
        "executionMode": "PARALLEL",
        "deadLetterQueue": "metrics-dlq",
        "stages": [{"name": "S", "actions": [{
            "name": "Boom",
            "noop": {"failFirst": 1000, "failWith": "Custom.Boom"},
            "retryPolicies": [{"exceptionType": ["Custom.Boom"], "maxAttempts": 0}],
        }]}],
    }


def run_all(url: str, pipeline: str, runs: int, status: str) -> None:
    ids = [post(url, f"/v1/pipelines/{pipeline}/executions", {})["pipelineExecutionId"] for _ in range(runs)]
    for i in ids:
        wait_for(f"{pipeline} {i} {status}", lambda i=i: requests.get(f"{url}/v1/pipelines/{pipeline}/executions/{i}", timeout=10).json(),
                 lambda e: e["status"] == status)


def ledger(url: str, pipeline: str) -> list[dict]:
    r = requests.get(f"{url}/v1/pipelines/{pipeline}/action-executions?limit=1000", timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["nextToken"] is None
    return body["actionExecutions"]


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """Samples by name, then by their labels (sorted (name, value) pairs)."""
    r = requests.get(url + "/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def only(series: dict[tuple, float], **labels: str) -> dict[tuple, float]:
    return {k: v for k, v in series.items() if all(dict(k).get(n) == v2 for n, v2 in labels.items())}


def test_metrics_equal_what_the_ledger_says(server: str):
    url = server
    post(url, "/v1/pipelines", flaky())
    post(url, "/v1/pipelines", doomed())
    run_all(url, "metrics-flaky", FLAKY_RUNS, "Succeeded")
    run_all(url, "metrics-doomed", DOOMED_RUNS, "Failed")
    m = scrape(url)

    # Attempts by pipeline, action, exception type and outcome = the ledger's rows.
    want: Counter = Counter()
    retries: Counter = Counter()
    give_ups: Counter = Counter()
    for pipeline in ("metrics-flaky", "metrics-doomed"):
        for row in ledger(url, pipeline):
            want[(pipeline, row["actionName"], row["exceptionType"] or "none", row["status"])] += 1
            d = row["decision"]
            if d and d["decision"] == "retry":
                retries[(pipeline, row["actionName"], row["exceptionType"], str(d["policy"]["index"]))] += 1
            elif d and d["decision"] == "giveUp":
                give_ups[(pipeline, row["actionName"], row["exceptionType"], d["reason"])] += 1
    got = {
        (dict(k)["pipeline"], dict(k)["action"], dict(k)["exception_type"], dict(k)["outcome"]): v
        for k, v in m["redrive_attempts_total"].items()
    }
    assert got == dict(want)
    assert want[("metrics-flaky", "Flaky", "Step.THROTTLING", "FAILED")] == 2 * FLAKY_RUNS
    assert want[("metrics-doomed", "Boom", "Custom.Boom", "FAILED")] == DOOMED_RUNS

    # Retries scheduled by policy, give-ups by reason: the ledger's decisions.
    def keyed(name: str, last: str) -> dict:
        return {(dict(k)["pipeline"], dict(k)["action"], dict(k)["exception_type"], dict(k)[last]): v for k, v in m[name].items()}

    assert keyed("redrive_retries_scheduled_total", "policy") == dict(retries) == {("metrics-flaky", "Flaky", "Step.THROTTLING", "0"): 2 * FLAKY_RUNS}
    assert keyed("redrive_give_ups_total", "reason") == dict(give_ups) == {("metrics-doomed", "Boom", "Custom.Boom", "retriesDisabled"): DOOMED_RUNS}

    # Executions by status.
    executions = {(dict(k)["pipeline"], dict(k)["status"]): v for k, v in m["redrive_executions_total"].items()}
    assert executions == {
        ("metrics-flaky", "Started"): FLAKY_RUNS,
        ("metrics-flaky", "Succeeded"): FLAKY_RUNS,
        ("metrics-doomed", "Started"): DOOMED_RUNS,
        ("metrics-doomed", "Failed"): DOOMED_RUNS,
    }

    # Histograms: one duration per attempt, one delay per retry, one lateness per fired timer.
    attempts = sum(want.values())
    assert m["redrive_attempt_duration_seconds_count"][(("kind", "pipeline"),)] == attempts
    assert m["redrive_retry_delay_seconds_count"][()] == 2 * FLAKY_RUNS
    # Delays 0.05 s then 0.1 s (no jitter by default) for each flaky run.
    assert m["redrive_retry_delay_seconds_sum"][()] == pytest.approx(0.15 * FLAKY_RUNS)
    assert m["redrive_timer_lateness_seconds_count"][()] == 2 * FLAKY_RUNS
    commits = m["redrive_store_commit_seconds_count"][()]
    assert commits == m["redrive_store_transitions_per_commit_count"][()] and commits >= 1
    # Every transition of every execution went through a commit: at least one per attempt's result.
    assert m["redrive_store_transitions_per_commit_sum"][()] >= attempts

    # Dead-letter entries written, by pipeline, queue and exception type.
    dead = {(dict(k)["pipeline"], dict(k)["queue"], dict(k)["exception_type"]): v for k, v in m["redrive_dead_letters_total"].items()}
    assert dead == {("metrics-doomed", "metrics-dlq", "Custom.Boom"): DOOMED_RUNS}

    # Dead-letter gauges (kept), timers, build info.
    assert m["redrive_dlq_depth"][(("queue", "metrics-dlq"),)] == DOOMED_RUNS
    assert m["redrive_dlq_oldest_entry_age_seconds"][(("queue", "metrics-dlq"),)] >= 0
    assert m["redrive_timers_pending"][()] == 0
    assert m["redrive_timers_behind_seconds"][()] == 0
    assert m["redrive_executions_quarantined_total"][()] == 0
    assert list(m["redrive_build_info"].values()) == [1]
    assert dict(next(iter(m["redrive_build_info"])))["version"]
