"""Fixtures: one `redrive server` for the whole session, a boto3 CodePipeline
client pointed at it, and the AWS CLI.

The binary is $REDRIVE_BIN, else `debug/redrive` under $CARGO_TARGET_DIR (relative
to the repository root when relative), else the repository's target/debug/redrive.
Build it first with `cargo build -p redrive`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import requests
from botocore.config import Config

import support

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_SECONDS = 30.0


def redrive_binary() -> Path:
    explicit = os.environ.get("REDRIVE_BIN")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or "target")
    if not target.is_absolute():
        target = REPO_ROOT / target
    return target / "debug" / "redrive"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 15 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("redrive-server")


@pytest.fixture(scope="session")
def endpoint(server_dir: Path):
    """Starts `redrive server` on a free loopback port with a fresh database and
    yields its URL, e.g. http://127.0.0.1:40123."""
    yield from serve(server_dir, [], None)


# Access keys of the `auth_endpoint` server: (access key id, secret, grant).
AUTH_KEYS = {
    "admin": ("AKIDREDRIVEADMIN", "admin-secret/with+chars", "scope: admin"),
    "reader": ("AKIDREDRIVEREADER", "reader-secret", "scope: read"),
    "payments": ("AKIDREDRIVEPAYMENTS", "payments-secret", "scope: operate\n      pipelines: [payments-*]"),
}


@pytest.fixture(scope="session")
def auth_endpoint(tmp_path_factory):
    """Like `endpoint`, with an `auth:` section: every request needs a
    credential; the access keys of AUTH_KEYS sign the CodePipeline protocol
    (their secrets reach the server through its environment only)."""
    server_dir = tmp_path_factory.mktemp("redrive-auth-server")
    keys = "".join(
        f"    - accessKeyId: {key_id}\n      secretAccessKeyEnv: REDRIVE_TEST_SECRET_{name.upper()}\n      {grant}\n"
        for name, (key_id, _, grant) in AUTH_KEYS.items()
    )
    config = server_dir / "server.yaml"
    config.write_text(f"auth:\n  awsCredentials:\n{keys}")
    env = {f"REDRIVE_TEST_SECRET_{name.upper()}": secret for name, (_, secret, _) in AUTH_KEYS.items()}
    yield from serve(server_dir, ["--config", str(config)], env)


def serve(server_dir: Path, extra_args: list, extra_env):
    binary = redrive_binary()
    if not binary.is_file():
        pytest.fail(f"redrive binary not found at {binary}: run `cargo build -p redrive` or set REDRIVE_BIN", pytrace=False)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = server_dir / "server.log"
    log = open(log_path, "wb")
    env = dict(os.environ, **(extra_env or {}))
    proc = subprocess.Popen(
        [str(binary), "server", "--listen", f"127.0.0.1:{port}", "--db", str(server_dir / "r.db"), "--grace-seconds", "1", *extra_args],
        cwd=server_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while True:
            if proc.poll() is not None:
                pytest.fail(f"redrive server exited with {proc.returncode} at start:\n{log_path.read_text(errors='replace')}", pytrace=False)
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"redrive server did not answer /healthz within {STARTUP_TIMEOUT_SECONDS:.0f}s:\n{log_path.read_text(errors='replace')}", pytrace=False)
            time.sleep(0.1)
        yield url
        if proc.poll() is not None:
            pytest.fail(f"redrive server died during the tests (exit {proc.returncode}):\n{log_path.read_text(errors='replace')[-5000:]}", pytrace=False)
    finally:
        stop_process(proc)
        log.close()


@pytest.fixture(scope="session")
def cp(endpoint: str):
    """A boto3 CodePipeline client for the server: dummy credentials, us-east-1,
    no automatic retries (so every error reaches the test)."""
    return boto3.session.Session().client(
        "codepipeline",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}, max_pool_connections=32, connect_timeout=5, read_timeout=30),
    )


@pytest.fixture(scope="session")
def aws(endpoint: str, tmp_path_factory):
    """Runs the AWS CLI against the server: `aws("codepipeline", "get-pipeline-state",
    "--name", "p", cwd=...)` returns the parsed JSON output or raises
    support.AwsCliError (with .code, e.g. "StageNotRetryableException")."""
    config_dir = str(tmp_path_factory.mktemp("aws-config"))

    def run(*args: str, cwd=None):
        return support.run_aws(endpoint, config_dir, args, cwd=cwd)

    return run
