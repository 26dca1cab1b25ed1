"""Two `redrive server --cluster-mode standby`s on one PostgreSQL database (one
leads, the other follows), driven with the AWS CLI
through the follower: the user guide's retry flow works through either process,
and after the leader is killed (SIGKILL) the follower takes over and the same
commands keep working. Needs PostgreSQL (scripts/ensure-postgres.sh;
REDRIVE_TEST_POSTGRES_URL names another server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import pytest
import requests

import support
from conftest import STARTUP_TIMEOUT_SECONDS, free_port, redrive_binary, stop_process
from support import AwsCliError, flag_gate, pipeline, sh_action, stage, unique, wait_for

ADMIN_URL = os.environ.get("REDRIVE_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def psql(url: str, sql: str) -> str:
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql], capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        pytest.fail(f"psql {sql!r}: {out.stderr} (is PostgreSQL running? scripts/ensure-postgres.sh starts one)", pytrace=False)
    return out.stdout.strip()


@pytest.fixture()
def database():
    name = f"redrive_py_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    psql(ADMIN_URL, f"CREATE DATABASE {name}")
    yield f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    psql(ADMIN_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def start_server(db_url: str, log_path, extra_args: list[str] | None = None, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`redrive server` on a free loopback port (`env`: its whole environment,
    default ours); on PostgreSQL with `--cluster-mode standby` (a SQLite file
    has no cluster mode: other tests start theirs here too)."""
    port = free_port()
    mode = ["--cluster-mode", "standby"] if db_url.startswith("postgres") else []
    url = f"http://127.0.0.1:{port}"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(redrive_binary()), "server", "--listen", f"127.0.0.1:{port}", "--db", db_url, "--grace-seconds", "1", "--lease-seconds", "2",
         *mode, *(extra_args or [])],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        if proc.poll() is not None:
            pytest.fail(f"redrive server exited with {proc.returncode}:\n{open(log_path, errors='replace').read()}", pytrace=False)
        try:
            if requests.get(url + "/healthz", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"redrive server did not answer within {STARTUP_TIMEOUT_SECONDS:.0f}s", pytrace=False)
        time.sleep(0.1)


def roles(url: str) -> dict[int, str]:
    status = requests.get(url + "/v1/cluster", timeout=5).json()
    return {m["pid"]: m["role"] for m in status["members"]}


def test_the_retry_flow_through_a_follower_and_after_the_leader_dies(database, tmp_path):
    leader, leader_url = start_server(database, tmp_path / "leader.log")
    follower, follower_url = start_server(database, tmp_path / "follower.log")
    try:
        assert roles(follower_url) == {leader.pid: "leader", follower.pid: "follower"}
        config_dir = str(tmp_path / "aws-config")
        os.makedirs(config_dir)

        def aws(*args: str, cwd=None):
            return support.run_aws(follower_url, config_dir, args, cwd=cwd)

        name = unique("cluster-flow")
        flag = tmp_path / "flag"
        (tmp_path / "pipeline.json").write_text(
            json.dumps({"pipeline": pipeline(name, stage("Source", sh_action("Fetch", "true")), stage("Staging", flag_gate("Smoke", flag)))})
        )
        aws("codepipeline", "create-pipeline", "--cli-input-json", "file://pipeline.json", cwd=tmp_path)
        eid = aws("codepipeline", "start-pipeline-execution", "--name", name)["pipelineExecutionId"]
        get = lambda: aws("codepipeline", "get-pipeline-execution", "--pipeline-name", name, "--pipeline-execution-id", eid)["pipelineExecution"]
        wait_for(f"execution {eid} to fail", get, lambda e: e["status"] == "Failed", interval=0.2)

        # The leader dies; the follower takes over and serves the rest itself.
        leader.send_signal(signal.SIGKILL)
        leader.wait(timeout=10)
        wait_for("the follower to lead", lambda: roles(follower_url).get(follower.pid), lambda r: r == "leader", timeout=10, interval=0.1)

        (tmp_path / "retry.json").write_text(
            json.dumps({"pipelineName": name, "stageName": "Staging", "pipelineExecutionId": eid, "retryMode": "FAILED_ACTIONS"})
        )
        flag.touch()
        assert aws("codepipeline", "retry-stage-execution", "--cli-input-json", "file://retry.json", cwd=tmp_path) == {"pipelineExecutionId": eid}
        wait_for(f"execution {eid} to succeed", get, lambda e: e["status"] == "Succeeded", interval=0.2)
        with pytest.raises(AwsCliError) as info:
            aws("codepipeline", "retry-stage-execution", "--cli-input-json", "file://retry.json", cwd=tmp_path)
        assert info.value.code == "StageNotRetryableException"
        details = aws("codepipeline", "list-action-executions", "--pipeline-name", name, "--filter", f"pipelineExecutionId={eid}")
        smoke = sorted((d for d in details["actionExecutionDetails"] if d["actionName"] == "Smoke"), key=lambda d: d["startTime"])
        assert [d["status"] for d in smoke] == ["Failed", "Succeeded"]
    finally:
        stop_process(follower)
        stop_process(leader)


def test_under_auth_a_follower_checks_its_cluster_status_and_forwards_signed_requests_intact(database, tmp_path):
    """A follower's own `GET /v1/cluster` needs a credential like the leader's;
    a request signed with AWS Signature V4 (which signs the Host header) and sent
    to the follower still verifies at the leader."""
    import boto3
    from botocore.config import Config

    made = subprocess.run([str(redrive_binary()), "token", "create", "--db", database, "--name", "reader", "--scope", "read"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    reader = made.stdout.strip()
    config = tmp_path / "server.yaml"
    config.write_text("auth:\n  awsCredentials:\n    - accessKeyId: AKIDCLUSTERADMIN\n      secretAccessKeyEnv: CLUSTER_SECRET\n      scope: admin\n")
    env = {**os.environ, "CLUSTER_SECRET": "cluster/secret+x"}
    leader, leader_url = start_server(database, tmp_path / "leader.log", ["--config", str(config)], env)
    follower, follower_url = start_server(database, tmp_path / "follower.log", ["--config", str(config)], env)
    try:
        bearer = {"Authorization": f"Bearer {reader}"}
        for url in (leader_url, follower_url):
            r = requests.get(url + "/v1/cluster", timeout=5)
            assert r.status_code == 401, (url, r.status_code, r.text)
            assert r.json()["error"]["code"] == "UnauthorizedException"
            bad = requests.get(url + "/v1/cluster", headers={"Authorization": "Bearer rdv_" + "0" * 64}, timeout=5)
            assert bad.status_code == 401, (url, bad.text)
        status = requests.get(follower_url + "/v1/cluster", headers=bearer, timeout=5).json()
        seen = {m["pid"]: m["role"] for m in status["members"]}
        assert (seen.get(leader.pid), seen.get(follower.pid)) == ("leader", "follower"), seen

        signed = boto3.session.Session().client(
            "codepipeline", endpoint_url=follower_url, region_name="us-east-1", aws_access_key_id="AKIDCLUSTERADMIN",
            aws_secret_access_key="cluster/secret+x", config=Config(retries={"total_max_attempts": 1}),
        )
        name = unique("signed-through-follower")
        signed.create_pipeline(pipeline={"name": name, "roleArn": "arn:aws:iam::123456789012:role/redrive", "stages": [
            {"name": "A", "actions": [{"name": "a", "actionTypeId": {"category": "Source", "owner": "Custom", "provider": "Noop", "version": "1"}}]},
            {"name": "B", "actions": [{"name": "b", "actionTypeId": {"category": "Build", "owner": "Custom", "provider": "Noop", "version": "1"}}]},
        ]})
        assert name in [p["name"] for p in signed.list_pipelines()["pipelines"]]
    finally:
        stop_process(follower)
        stop_process(leader)
