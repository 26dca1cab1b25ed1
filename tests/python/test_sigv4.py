"""AWS Signature V4 on the CodePipeline protocol of a server with `auth:`:
requests signed by botocore itself (boto3 and the AWS CLI) with the configured
access keys work; a wrong secret, an unknown key, a skewed clock, no signature
and a grant too small or limited to other names are refused with the AWS error
types."""

from __future__ import annotations

import datetime

import boto3
import botocore.auth
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

import support
from conftest import AUTH_KEYS

NO_RETRIES = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=30)


def client(endpoint: str, key_id: str, secret: str, **config):
    return boto3.session.Session().client(
        "codepipeline",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=NO_RETRIES.merge(Config(**config)) if config else NO_RETRIES,
    )


def as_key(endpoint: str, name: str):
    key_id, secret, _ = AUTH_KEYS[name]
    return client(endpoint, key_id, secret)


def pipeline(name: str) -> dict:
    return {
        "name": name,
        "roleArn": "arn:aws:iam::123456789012:role/redrive",
        "stages": [
            {"name": "Source", "actions": [{"name": "A", "actionTypeId": {"category": "Source", "owner": "Custom", "provider": "Noop", "version": "1"}}]},
            {"name": "Build", "actions": [{"name": "B", "actionTypeId": {"category": "Build", "owner": "Custom", "provider": "Noop", "version": "1"}}]},
        ],
    }


def error_code(call) -> str:
    with pytest.raises(ClientError) as e:
        call()
    return e.value.response["Error"]["Code"]


def test_signed_requests_with_configured_keys_work(auth_endpoint):
    admin = as_key(auth_endpoint, "admin")
    admin.create_pipeline(pipeline=pipeline("payments-sig"))
    names = [p["name"] for p in as_key(auth_endpoint, "reader").list_pipelines()["pipelines"]]
    assert "payments-sig" in names
    started = as_key(auth_endpoint, "payments").start_pipeline_execution(name="payments-sig")
    assert started["pipelineExecutionId"]


def test_a_wrong_secret_is_an_invalid_signature(auth_endpoint):
    key_id, _, _ = AUTH_KEYS["admin"]
    assert error_code(lambda: client(auth_endpoint, key_id, "not-the-secret").list_pipelines()) == "InvalidSignatureException"


def test_an_unknown_key_is_an_unrecognized_client(auth_endpoint):
    assert error_code(lambda: client(auth_endpoint, "AKIDNOBODY", "whatever").list_pipelines()) == "UnrecognizedClientException"


def test_a_request_signed_20_minutes_ago_is_refused(auth_endpoint, monkeypatch):
    skewed = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=20)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: skewed)
    code = error_code(lambda: as_key(auth_endpoint, "admin").list_pipelines())
    assert code == "InvalidSignatureException"


def test_a_request_signed_10_minutes_ago_is_within_the_window(auth_endpoint, monkeypatch):
    skewed = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: skewed)
    as_key(auth_endpoint, "admin").list_pipelines()


def test_an_unsigned_request_is_refused(auth_endpoint):
    unsigned = boto3.session.Session().client(
        "codepipeline", endpoint_url=auth_endpoint, region_name="us-east-1", config=NO_RETRIES.merge(Config(signature_version=UNSIGNED))
    )
    assert error_code(unsigned.list_pipelines) == "MissingAuthenticationTokenException"


def test_a_missing_scope_is_access_denied(auth_endpoint):
    reader = as_key(auth_endpoint, "reader")
    assert error_code(lambda: reader.create_pipeline(pipeline=pipeline("payments-denied"))) == "AccessDeniedException"
    as_key(auth_endpoint, "admin").create_pipeline(pipeline=pipeline("orders-sig"))
    payments = as_key(auth_endpoint, "payments")
    assert error_code(lambda: payments.start_pipeline_execution(name="orders-sig")) == "AccessDeniedException"
    assert error_code(lambda: payments.delete_pipeline(name="payments-sig-x")) == "AccessDeniedException", "operate < admin"
    assert error_code(payments.list_pipelines) == "AccessDeniedException", "a prefix-limited grant cannot list every pipeline"


def test_the_aws_cli_works_with_real_credentials(auth_endpoint, tmp_path):
    key_id, secret, _ = AUTH_KEYS["admin"]
    support.run_aws(auth_endpoint, str(tmp_path), ["codepipeline", "create-pipeline", "--cli-input-json", _json(pipeline("payments-cli"))], credentials=(key_id, secret))
    out = support.run_aws(auth_endpoint, str(tmp_path), ["codepipeline", "get-pipeline", "--name", "payments-cli"], credentials=(key_id, secret))
    assert out["pipeline"]["name"] == "payments-cli"
    with pytest.raises(support.AwsCliError) as e:
        support.run_aws(auth_endpoint, str(tmp_path), ["codepipeline", "list-pipelines"], credentials=(key_id, "wrong"))
    assert e.value.code == "InvalidSignatureException"
    with pytest.raises(support.AwsCliError) as e:
        support.run_aws(auth_endpoint, str(tmp_path), ["codepipeline", "list-pipelines"])
    assert e.value.code == "UnrecognizedClientException", "the suite's dummy key is not configured"


def _json(pipeline_declaration: dict) -> str:
    import json

    return json.dumps({"pipeline": pipeline_declaration})


def signed_request(endpoint: str, name: str, operation: str, body: dict):
    """A request signed by botocore's own SigV4 signer: (url, headers, body bytes)."""
    import json

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key_id, secret, _ = AUTH_KEYS[name]
    data = json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=data,
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"CodePipeline_20150709.{operation}"},
    )
    SigV4Auth(Credentials(key_id, secret), "codepipeline", "us-east-1").add_auth(request)
    return endpoint + "/", dict(request.headers.items()), data


def test_a_forged_body_and_a_replayed_change_are_refused(auth_endpoint):
    import requests

    as_key(auth_endpoint, "admin").create_pipeline(pipeline=pipeline("payments-replay"))
    url, headers, data = signed_request(auth_endpoint, "payments", "StartPipelineExecution", {"name": "payments-replay"})
    forged = data.replace(b"payments-replay", b"payments-forged")
    r = requests.post(url, data=forged, headers=headers, timeout=10)
    assert (r.status_code, r.json()["__type"]) == (403, "InvalidSignatureException"), r.text
    r = requests.post(url, data=data, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    r = requests.post(url, data=data, headers=headers, timeout=10)
    assert (r.status_code, r.json()["__type"]) == (403, "InvalidSignatureException"), "a replay: " + r.text
    assert "replay" in r.json()["message"]
    # A signed read may be repeated (botocore signs two identical calls within a second alike).
    url, headers, data = signed_request(auth_endpoint, "reader", "GetPipeline", {"name": "payments-replay"})
    for _ in range(2):
        assert requests.post(url, data=data, headers=headers, timeout=10).status_code == 200
