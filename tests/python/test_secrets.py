"""`secretEnv` and `secretHeaders`: a planted sentinel secret reaches the
command (and an HTTP action's header), and its value
appears nowhere redrive keeps or shows anything: not in the API's answers (native
and CodePipeline), the ledger, outputs, the dead-letter entry, `/metrics`, the
server's log (at debug level), nor the raw bytes of the database files — even
though the command echoes it to stdout, stderr, its error file and its output
file, and the HTTP service echoes the header back in its answers (a success and
a failure). Also: a secret missing at attempt time fails the attempt with
Engine.SECRET_MISSING, and a secrets file must be private."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from conftest import redrive_binary, stop_process
from support import raw_call, wait_for
from test_cluster import start_server

SCRIPT_FAIL = (
    'echo "stdout $SENTINEL_TOKEN"; echo "stderr sha $(printf %s "$SENTINEL_TOKEN" | sha256sum | cut -c1-64) $SENTINEL_TOKEN" >&2; '
    'printf \'{"message": "from the error file %s"}\' "$SENTINEL_TOKEN" > "$REDRIVE_ERROR_FILE"; exit 3'
)
SCRIPT_OK = 'printf \'{"token": "%s", "note": "out %s"}\' "$SENTINEL_TOKEN" "$SENTINEL_TOKEN" > "$REDRIVE_OUTPUT_FILE"'


def command(name: str, script: str, secrets: list[str]) -> dict:
    return {
        "name": name,
        "command": ["sh", "-c", script],
        "secretEnv": secrets,
        "retryPolicies": [{"exceptionType": ["*"], "maxAttempts": 0}],
    }


def http_action(name: str, url: str) -> dict:
    return {
        "name": name,
        "http": {"url": url, "secretHeaders": {"Authorization": {"secretEnv": "SENTINEL_TOKEN", "prefix": "Bearer "}}},
        "retryPolicies": [{"exceptionType": ["*"], "maxAttempts": 0}],
    }


class EchoServer:
    """A local HTTP service that answers every request with the Authorization
    header it received, in its body: 200 on /ok, 500 on anything else."""

    def __init__(self):
        self.seen: list[str] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the http.server API)
                auth = self.headers.get("Authorization", "")
                seen.append(auth)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.dumps({"echo": auth}).encode()
                self.send_response(200 if self.path == "/ok" else 500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def pipeline(name: str, action: dict) -> dict:
    return {"name": name, "executionMode": "PARALLEL", "deadLetterQueue": "leaks", "stages": [{"name": "S", "actions": [action]}]}


def run(url: str, name: str, status: str) -> str:
    r = requests.post(f"{url}/v1/pipelines/{name}/executions", json={}, timeout=10)
    assert r.status_code == 201, r.text
    eid = r.json()["pipelineExecutionId"]
    wait_for(f"{name} {status}", lambda: requests.get(f"{url}/v1/pipelines/{name}/executions/{eid}", timeout=10).json(),
             lambda e: e["status"] == status)
    return eid


def everything_shown(url: str, runs: dict[str, str]) -> str:
    """Every answer about the runs: native API, CodePipeline protocol, DLQ, metrics."""
    texts = []
    get = lambda path: requests.get(url + path, timeout=10).text  # noqa: E731
    for name, eid in runs.items():
        for path in (f"/v1/pipelines/{name}", f"/v1/pipelines/{name}/executions/{eid}", f"/v1/pipelines/{name}/executions/{eid}/export",
                     f"/v1/pipelines/{name}/action-executions", f"/v1/pipelines/{name}/state"):
            texts.append(get(path))
        for op, body in (("GetPipelineExecution", {"pipelineName": name, "pipelineExecutionId": eid}), ("GetPipelineState", {"name": name}),
                         ("ListActionExecutions", {"pipelineName": name}), ("GetPipeline", {"name": name})):
            texts.append(raw_call(url, op, body).text)
    entries = requests.get(url + "/v1/dlq/queues/leaks/entries", timeout=10).json()
    assert len(entries["entries"]) == 3, entries  # leak-fail, leak-missing and leak-http-fail
    texts.append(str(entries))
    for e in entries["entries"]:
        texts.append(get(f"/v1/dlq/entries/{e['entryId']}"))
    texts.append(get("/metrics"))
    return "\n".join(texts)


def test_a_planted_secret_never_leaves_the_command(tmp_path: Path):
    sentinel = f"s3nt1nel-{uuid.uuid4().hex}"
    env = {**os.environ, "SENTINEL_TOKEN": sentinel, "REDRIVE_LOG": "debug"}
    db = tmp_path / "secrets.db"
    proc, url = start_server(str(db), tmp_path / "server.log", env=env)
    echo = EchoServer()
    try:
        for name, script in (("leak-fail", SCRIPT_FAIL), ("leak-ok", SCRIPT_OK)):
            r = requests.post(url + "/v1/pipelines", json=pipeline(name, command("A", script, ["SENTINEL_TOKEN"])), timeout=10)
            assert r.status_code == 201, r.text
        for name, path in (("leak-http-ok", "/ok"), ("leak-http-fail", "/fail")):
            r = requests.post(url + "/v1/pipelines", json=pipeline(name, http_action("A", echo.url + path)), timeout=10)
            assert r.status_code == 201, r.text
        r = requests.post(url + "/v1/pipelines", json=pipeline("leak-missing", command("A", "true", ["NOT_SET_ANYWHERE_42"])), timeout=10)
        assert r.status_code == 201, r.text
        runs = {"leak-fail": run(url, "leak-fail", "Failed"), "leak-ok": run(url, "leak-ok", "Succeeded"),
                "leak-missing": run(url, "leak-missing", "Failed"), "leak-http-ok": run(url, "leak-http-ok", "Succeeded"),
                "leak-http-fail": run(url, "leak-http-fail", "Failed")}

        # The HTTP action sent the value; the service's echoes of it were scrubbed.
        assert echo.seen == [f"Bearer {sentinel}"] * 2, echo.seen
        http_ok = requests.get(url + f"/v1/pipelines/leak-http-ok/executions/{runs['leak-http-ok']}/export", timeout=10).text
        assert '"echo":"Bearer ***"' in http_ok, http_ok
        [http_failed] = requests.get(url + "/v1/pipelines/leak-http-fail/action-executions", timeout=10).json()["actionExecutions"]
        assert http_failed["exceptionType"] == "Step.SERVICE_FAULT" and "Bearer ***" in http_failed["message"], http_failed
        http_ledger = str(requests.get(url + f"/v1/pipelines/leak-http-fail/executions/{runs['leak-http-fail']}/export", timeout=10).json())

        # The command had the value (its hash came back), and what it echoed was scrubbed.
        [failed] = requests.get(url + "/v1/pipelines/leak-fail/action-executions", timeout=10).json()["actionExecutions"]
        assert failed["message"].startswith("from the error file ***"), failed
        ledger_text = str(requests.get(url + f"/v1/pipelines/leak-fail/executions/{runs['leak-fail']}/export", timeout=10).json())
        export = requests.get(url + f"/v1/pipelines/leak-ok/executions/{runs['leak-ok']}/export", timeout=10).text
        assert '"token":"***"' in export and '"note":"out ***"' in export, export
        [missing] = requests.get(url + "/v1/pipelines/leak-missing/action-executions", timeout=10).json()["actionExecutions"]
        assert missing["exceptionType"] == "Engine.SECRET_MISSING", missing
        assert "NOT_SET_ANYWHERE_42" in missing["message"]
        shown = everything_shown(url, runs) + ledger_text + http_ledger
        assert "***" in shown
        assert sentinel not in shown
        assert sentinel[9:] not in shown  # nor its random part alone
    finally:
        stop_process(proc)
        echo.close()
    log = (tmp_path / "server.log").read_bytes()
    assert log, "the server logged something at debug level"
    assert sentinel.encode() not in log
    files = [f for f in tmp_path.iterdir() if f.name.startswith("secrets.db")]
    assert db in files
    for f in files:
        assert sentinel.encode() not in f.read_bytes(), f"the secret is in {f.name}"


def test_the_command_gets_the_value_from_a_secrets_file(tmp_path: Path):
    """The value reaches the command (its hash is in the stderr excerpt, where
    the value itself is scrubbed)."""
    sentinel = f"f1le-{uuid.uuid4().hex}"
    secrets = tmp_path / "secrets"
    secrets.write_text(f"# test\nSENTINEL_TOKEN={sentinel}\n")
    secrets.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k != "SENTINEL_TOKEN"}
    proc, url = start_server(str(tmp_path / "f.db"), tmp_path / "server.log", ["--secrets-file", str(secrets)], env=env)
    try:
        r = requests.post(url + "/v1/pipelines", json=pipeline("leak-fail", command("A", SCRIPT_FAIL.replace("; printf", "; exit 3; printf"), ["SENTINEL_TOKEN"])), timeout=10)
        assert r.status_code == 201, r.text
        run(url, "leak-fail", "Failed")
        [failed] = requests.get(url + "/v1/pipelines/leak-fail/action-executions", timeout=10).json()["actionExecutions"]
        digest = hashlib.sha256(sentinel.encode()).hexdigest()
        assert f"stderr sha {digest} ***" in failed["message"], failed
        assert sentinel not in failed["message"]
    finally:
        stop_process(proc)


def test_a_secrets_file_others_can_read_is_refused(tmp_path: Path):
    secrets = tmp_path / "secrets"
    secrets.write_text("SENTINEL_TOKEN=x\n")
    secrets.chmod(0o644)
    out = subprocess.run([str(redrive_binary()), "server", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "n.db"), "--secrets-file", str(secrets)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2, out
    assert "mode 0644" in out.stderr and "chmod 600" in out.stderr, out.stderr
    assert not (tmp_path / "n.db").exists()
