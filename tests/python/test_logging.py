"""`redrive server --log-format json` with `RUST_LOG`: every stderr line is one
JSON object, and what a runner logs about an attempt carries the spans of its
execution, stage and attempt with their ids."""

from __future__ import annotations

import json
import os
from pathlib import Path

import requests

from conftest import stop_process
from support import wait_for
from test_cluster import start_server


def test_json_logs_carry_execution_stage_and_attempt_spans(tmp_path: Path):
    env = {**os.environ, "RUST_LOG": "info,redrive_engine=debug"}
    log_path = tmp_path / "server.log"
    proc, url = start_server(str(tmp_path / "l.db"), log_path, ["--log-format", "json"], env=env)
    try:
        definition = {"name": "logged", "stages": [{"name": "Build", "actions": [{"name": "Compile", "command": ["true"]}]}]}
        assert requests.post(url + "/v1/pipelines", json=definition, timeout=10).status_code == 201
        eid = requests.post(url + "/v1/pipelines/logged/executions", json={}, timeout=10).json()["pipelineExecutionId"]
        wait_for("the execution", lambda: requests.get(f"{url}/v1/pipelines/logged/executions/{eid}", timeout=10).json(),
                 lambda e: e["status"] == "Succeeded")
    finally:
        stop_process(proc)
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every line is JSON
    banner = [e for e in events if "listening on http://" in e["fields"].get("message", "")]
    assert banner and banner[0]["level"] == "INFO" and banner[0]["fields"]["listen"] == url, banner
    started = [e for e in events if e["fields"].get("message") == "command started"]
    assert len(started) == 1, events
    spans = {s["name"]: s for s in started[0]["spans"]}
    assert spans["execution"]["execution_id"] == eid and spans["execution"]["pipeline"] == "logged", started[0]
    assert spans["stage"]["stage"] == "Build"
    assert spans["attempt"]["action"] == "Compile" and spans["attempt"]["attempt"] == 1
    assert started[0]["span"]["name"] == "attempt"
    assert any("shutting down" in e["fields"].get("message", "") for e in events)
