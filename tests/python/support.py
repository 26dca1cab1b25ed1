"""Helpers shared by the end-to-end tests: pipeline builders, raw AWS JSON 1.1
requests, the AWS CLI runner and polling."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import requests

TARGET_PREFIX = "CodePipeline_20150709"
AMZ_JSON = "application/x-amz-json-1.1"
ROLE_ARN = "arn:aws:iam::123456789012:role/redrive-e2e"
DUMMY_ENV = {
    "AWS_ACCESS_KEY_ID": "x",
    "AWS_SECRET_ACCESS_KEY": "x",
    "AWS_DEFAULT_REGION": "us-east-1",
}
TERMINAL = {"Succeeded", "Failed", "Stopped", "Superseded", "Cancelled"}
# Longest any wait in the suite may take.
MAX_WAIT_SECONDS = 30.0


def unique(prefix: str) -> str:
    """A pipeline name no other test uses (they all share one server)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------
# Pipelines on the wire


def no_retry() -> str:
    """A RetryPolicies value under which Action.FAILED gives up at once."""
    return json.dumps([{"ExceptionType": ["Action.FAILED"], "MaxAttempts": 0}])


def command_action(name: str, argv: list[str], run_order: int = 1, category: str = "Build", **config: str) -> dict:
    """A Custom/Command action that is not retried by its own policy."""
    configuration = {"Command": json.dumps(argv), "RetryPolicies": no_retry()}
    configuration.update(config)
    return {
        "name": name,
        "runOrder": run_order,
        "actionTypeId": {"category": category, "owner": "Custom", "provider": "Command", "version": "1"},
        "configuration": configuration,
    }


def sh_action(name: str, script: str, run_order: int = 1, **config: str) -> dict:
    return command_action(name, ["sh", "-c", script], run_order=run_order, **config)


def flag_gate(name: str, flag: os.PathLike | str, run_order: int = 1) -> dict:
    """An action that fails (Action.FAILED, no retries) until `flag` exists."""
    return sh_action(name, f"test -e '{flag}'", run_order=run_order)


def noop_action(name: str, run_order: int = 1, **config: str) -> dict:
    return {
        "name": name,
        "runOrder": run_order,
        "actionTypeId": {"category": "Test", "owner": "Custom", "provider": "Noop", "version": "1"},
        "configuration": dict(config),
    }


def stage(name: str, *actions: dict, **extra: Any) -> dict:
    return {"name": name, "actions": list(actions), **extra}


def pipeline(name: str, *stages: dict, **extra: Any) -> dict:
    return {"name": name, "roleArn": ROLE_ARN, "stages": list(stages), **extra}


# ---------------------------------------------------------------------------
# Raw requests


@dataclass
class RawResponse:
    status: int
    headers: dict
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)


def raw_call(endpoint: str, operation: str | None, body: Any, *, target: str | None = None, headers: dict | None = None) -> RawResponse:
    """POST / with the AWS JSON 1.1 headers and `body` (a dict is JSON-encoded,
    bytes/str are sent as they are). `target` overrides the X-Amz-Target value."""
    h = {"Content-Type": AMZ_JSON}
    if target is not None or operation is not None:
        h["X-Amz-Target"] = target if target is not None else f"{TARGET_PREFIX}.{operation}"
    h.update(headers or {})
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    r = requests.post(endpoint + "/", data=data, headers=h, timeout=30)
    return RawResponse(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.text)


def error_code(exc: Exception) -> str:
    """The error code of a botocore ClientError."""
    return exc.response["Error"]["Code"]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------
# The AWS CLI


class AwsCliError(Exception):
    def __init__(self, returncode: int, stdout: str, stderr: str):
        m = re.search(r"An error occurred \(([^)]+)\) when calling the (\w+) operation(?: \([^)]*\))?: ?(.*)", stderr, re.S)
        self.code = m.group(1) if m else None
        self.operation = m.group(2) if m else None
        self.message = m.group(3).strip() if m else stderr.strip()
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"aws exited {returncode}: {stderr.strip()}")


def aws_cli_command() -> list[str]:
    """The AWS CLI of this interpreter's environment: `python -m awscli`."""
    return [sys.executable, "-m", "awscli"]


def run_aws(endpoint: str, config_dir: str, args: Iterable[str], cwd: str | os.PathLike | None = None, credentials: tuple[str, str] | None = None) -> Any:
    """Runs `aws <args> --endpoint-url <endpoint> --output json` with dummy
    credentials (or `credentials`: access key id and secret) and no retries.
    Returns the parsed JSON output ({} when there is none); raises AwsCliError
    when the command fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(DUMMY_ENV)
    if credentials:
        env.update({"AWS_ACCESS_KEY_ID": credentials[0], "AWS_SECRET_ACCESS_KEY": credentials[1]})
    env.update(
        {
            # Nothing from the user's ~/.aws may change what is tested.
            "AWS_CONFIG_FILE": os.path.join(config_dir, "config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(config_dir, "credentials"),
            "AWS_RETRY_MODE": "standard",
            "AWS_MAX_ATTEMPTS": "1",
            "AWS_PAGER": "",
        }
    )
    cmd = aws_cli_command() + list(args) + ["--endpoint-url", endpoint, "--output", "json"]
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    if p.returncode != 0:
        raise AwsCliError(p.returncode, p.stdout, p.stderr)
    return json.loads(p.stdout) if p.stdout.strip() else {}


# ---------------------------------------------------------------------------
# Waiting


def wait_for(what: str, probe: Callable[[], Any], done: Callable[[Any], bool], timeout: float = MAX_WAIT_SECONDS, interval: float = 0.1) -> Any:
    """Calls `probe` until `done(result)` holds; returns that result. Fails the
    test with the last result after `timeout` seconds (at most 30)."""
    timeout = min(timeout, MAX_WAIT_SECONDS)
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if done(last):
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {json.dumps(last, default=str)[:2000]}")
        time.sleep(interval)


def wait_execution(cp, pipeline_name: str, execution_id: str, status: str, timeout: float = MAX_WAIT_SECONDS) -> dict:
    """Polls GetPipelineExecution until the execution reaches `status`; fails
    at once if it reaches another terminal status instead."""

    def probe() -> dict:
        return cp.get_pipeline_execution(pipelineName=pipeline_name, pipelineExecutionId=execution_id)["pipelineExecution"]

    def done(e: dict) -> bool:
        if e["status"] == status:
            return True
        if e["status"] in TERMINAL:
            raise AssertionError(f"execution {execution_id} ended {e['status']} while waiting for {status}: {e}")
        return False

    return wait_for(f"execution {execution_id} to be {status}", probe, done, timeout)


def stage_state(state: dict, stage_name: str) -> dict:
    for s in state["stageStates"]:
        if s["stageName"] == stage_name:
            return s
    raise AssertionError(f"no stage {stage_name} in {state}")


def action_state(stage: dict, action_name: str) -> dict:
    for a in stage.get("actionStates", []):
        if a["actionName"] == action_name:
            return a
    raise AssertionError(f"no action {action_name} in {stage}")
