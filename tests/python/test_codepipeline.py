"""End-to-end tests of `redrive server` through the CodePipeline wire protocol
(AWS JSON 1.1 on POST /), driven by boto3, the AWS CLI and raw HTTP requests.

PRODUCT.md §4 (pipelines, executions and stage retry) and §7 (interfaces) are
the specification; shared/reference/codepipeline-retry-failed-actions-guide.txt
is followed literally for the AWS CLI flow.
"""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from botocore.exceptions import ClientError

from support import (
    AMZ_JSON,
    AwsCliError,
    action_state,
    error_code,
    flag_gate,
    noop_action,
    pipeline,
    raw_call,
    sh_action,
    stage,
    stage_state,
    unique,
    wait_execution,
    wait_for,
)

RETRY_STAGE_ERRORS = {
    "ValidationException",
    "ConflictException",
    "PipelineNotFoundException",
    "StageNotFoundException",
    "StageNotRetryableException",
    "NotLatestPipelineExecutionException",
    "ConcurrentPipelineExecutionsLimitExceededException",
}


def retry(cp, name, stage_name, execution_id, mode="FAILED_ACTIONS"):
    return cp.retry_stage_execution(pipelineName=name, stageName=stage_name, pipelineExecutionId=execution_id, retryMode=mode)


def retry_error(cp, name, stage_name, execution_id, mode="FAILED_ACTIONS") -> ClientError:
    with pytest.raises(ClientError) as info:
        retry(cp, name, stage_name, execution_id, mode)
    return info.value


def attempts(cp, name, execution_id, stage_name=None, action_name=None) -> list[dict]:
    """Every action execution (attempt) of an execution, oldest first."""
    out = []
    for page in cp.get_paginator("list_action_executions").paginate(pipelineName=name, filter={"pipelineExecutionId": execution_id}):
        out.extend(page["actionExecutionDetails"])
    out = [
        d
        for d in out
        if (stage_name is None or d["stageName"] == stage_name) and (action_name is None or d["actionName"] == action_name)
    ]
    return sorted(out, key=lambda d: (d["startTime"], d["actionExecutionId"]))


def start_and_fail(cp, name) -> str:
    eid = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    wait_execution(cp, name, eid, "Failed")
    return eid


# ---------------------------------------------------------------------------
# The retry flow of the user guide


def test_retry_failed_actions_flow_boto3(cp, tmp_path):
    """create → start → a stage fails → GetPipelineState shows it → fix →
    RetryStageExecution FAILED_ACTIONS → the execution goes on and succeeds; the
    ledger keeps the failed attempt and the one that succeeded."""
    name = unique("flow")
    flag = tmp_path / "flag"
    created = cp.create_pipeline(
        pipeline=pipeline(name, stage("Build", sh_action("Compile", "true")), stage("Deploy", flag_gate("Rollout", flag)))
    )
    assert created["pipeline"]["version"] == 1

    eid = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    failed = wait_execution(cp, name, eid, "Failed")
    assert "Action.FAILED" in failed.get("statusSummary", "")

    state = cp.get_pipeline_state(name=name)
    assert state["pipelineName"] == name and state["pipelineVersion"] == 1
    assert stage_state(state, "Build")["latestExecution"] == {"pipelineExecutionId": eid, "status": "Succeeded"}
    deploy = stage_state(state, "Deploy")
    assert deploy["latestExecution"] == {"pipelineExecutionId": eid, "status": "Failed"}
    rollout = action_state(deploy, "Rollout")["latestExecution"]
    assert rollout["status"] == "Failed"
    assert rollout["errorDetails"]["code"] == "Action.FAILED"
    assert rollout["errorDetails"]["message"]
    assert "retryStageMetadata" not in deploy

    flag.touch()
    out = retry(cp, name, "Deploy", deploy["latestExecution"]["pipelineExecutionId"])
    assert out["pipelineExecutionId"] == eid
    done = wait_execution(cp, name, eid, "Succeeded")
    assert done["pipelineVersion"] == 1

    deploy = stage_state(cp.get_pipeline_state(name=name), "Deploy")
    assert deploy["latestExecution"] == {"pipelineExecutionId": eid, "status": "Succeeded"}
    assert action_state(deploy, "Rollout")["latestExecution"]["status"] == "Succeeded"
    assert deploy["retryStageMetadata"] == {
        "autoStageRetryAttempt": 0,
        "manualStageRetryAttempt": 1,
        "latestRetryTrigger": "ManualStageRetry",
    }

    tries = attempts(cp, name, eid, "Deploy", "Rollout")
    assert [t["status"] for t in tries] == ["Failed", "Succeeded"]
    assert tries[0]["output"]["executionResult"]["errorDetails"]["code"] == "Action.FAILED"
    assert all(t["pipelineExecutionId"] == eid and t["pipelineVersion"] == 1 for t in tries)
    # The stage before the failure is not re-run.
    assert [t["status"] for t in attempts(cp, name, eid, "Build")] == ["Succeeded"]


def test_retry_failed_actions_flow_aws_cli(aws, tmp_path):
    """The same flow with the AWS CLI, exactly as the user guide shows it:
    `aws codepipeline get-pipeline-state --name ...`, then
    `aws codepipeline retry-stage-execution --cli-input-json file://retry.json`."""
    name = unique("cli-flow")
    flag = tmp_path / "flag"
    (tmp_path / "pipeline.json").write_text(
        json.dumps({"pipeline": pipeline(name, stage("Source", sh_action("Fetch", "true")), stage("Staging", flag_gate("Smoke", flag)))})
    )
    created = aws("codepipeline", "create-pipeline", "--cli-input-json", "file://pipeline.json", cwd=tmp_path)
    assert created["pipeline"]["name"] == name and created["pipeline"]["version"] == 1

    eid = aws("codepipeline", "start-pipeline-execution", "--name", name)["pipelineExecutionId"]
    wait_for(
        f"execution {eid} to fail",
        lambda: aws("codepipeline", "get-pipeline-execution", "--pipeline-name", name, "--pipeline-execution-id", eid)["pipelineExecution"],
        lambda e: e["status"] == "Failed",
        interval=0.2,
    )

    # 1. get-pipeline-state shows which stage failed, and in which execution.
    state = aws("codepipeline", "get-pipeline-state", "--name", name)
    assert state["pipelineName"] == name and state["pipelineVersion"] == 1
    assert stage_state(state, "Source")["latestExecution"]["status"] == "Succeeded"
    failed_stages = [s for s in state["stageStates"] if s.get("latestExecution", {}).get("status") == "Failed"]
    assert [s["stageName"] for s in failed_stages] == ["Staging"]
    staging = failed_stages[0]
    smoke = action_state(staging, "Smoke")["latestExecution"]
    assert smoke["status"] == "Failed" and smoke["errorDetails"]["code"] == "Action.FAILED"

    # 2.-4. a JSON file naming pipeline, stage, latest execution and retry mode.
    (tmp_path / "retry.json").write_text(
        json.dumps(
            {
                "pipelineName": name,
                "stageName": "Staging",
                "pipelineExecutionId": staging["latestExecution"]["pipelineExecutionId"],
                "retryMode": "FAILED_ACTIONS",
            }
        )
    )
    flag.touch()
    out = aws("codepipeline", "retry-stage-execution", "--cli-input-json", "file://retry.json", cwd=tmp_path)
    assert out == {"pipelineExecutionId": eid}

    # 5. the results of the retry.
    wait_for(
        f"execution {eid} to succeed",
        lambda: aws("codepipeline", "get-pipeline-execution", "--pipeline-name", name, "--pipeline-execution-id", eid)["pipelineExecution"],
        lambda e: e["status"] == "Succeeded",
        interval=0.2,
    )
    staging = stage_state(aws("codepipeline", "get-pipeline-state", "--name", name), "Staging")
    assert staging["latestExecution"] == {"pipelineExecutionId": eid, "status": "Succeeded"}
    assert staging["retryStageMetadata"]["manualStageRetryAttempt"] == 1

    details = aws("codepipeline", "list-action-executions", "--pipeline-name", name, "--filter", f"pipelineExecutionId={eid}")
    smoke_tries = sorted((d for d in details["actionExecutionDetails"] if d["actionName"] == "Smoke"), key=lambda d: d["startTime"])
    assert [d["status"] for d in smoke_tries] == ["Failed", "Succeeded"]

    # The stage has no failed actions any more: the same request is refused.
    with pytest.raises(AwsCliError) as info:
        aws("codepipeline", "retry-stage-execution", "--cli-input-json", "file://retry.json", cwd=tmp_path)
    assert info.value.code == "StageNotRetryableException"
    assert info.value.operation == "RetryStageExecution"
    assert info.value.message


@pytest.mark.parametrize(("mode", "good_runs"), [("FAILED_ACTIONS", 1), ("ALL_ACTIONS", 2)])
def test_retry_modes_rerun_failed_or_all_actions(cp, tmp_path, mode, good_runs):
    """A stage with two parallel actions, one of which fails. FAILED_ACTIONS
    re-runs only the failed one; ALL_ACTIONS re-runs the stage from its first
    action, so the succeeding action's side effect happens twice."""
    name = unique(mode.lower().replace("_", "-"))
    flag, count = tmp_path / "flag", tmp_path / "count"
    cp.create_pipeline(
        pipeline=pipeline(name, stage("Test", sh_action("Good", f"echo run >> '{count}'"), flag_gate("Bad", flag)))
    )
    eid = start_and_fail(cp, name)
    test = stage_state(cp.get_pipeline_state(name=name), "Test")
    assert action_state(test, "Good")["latestExecution"]["status"] == "Succeeded"
    assert action_state(test, "Bad")["latestExecution"]["status"] == "Failed"
    assert count.read_text().splitlines() == ["run"]

    flag.touch()
    assert retry(cp, name, "Test", eid, mode)["pipelineExecutionId"] == eid
    wait_execution(cp, name, eid, "Succeeded")

    assert count.read_text().splitlines() == ["run"] * good_runs
    assert [t["status"] for t in attempts(cp, name, eid, "Test", "Good")] == ["Succeeded"] * good_runs
    assert [t["status"] for t in attempts(cp, name, eid, "Test", "Bad")] == ["Failed", "Succeeded"]


def test_failed_actions_retry_while_another_action_runs(cp, tmp_path):
    """While a parallel action is still running, ALL_ACTIONS is refused
    (StageNotRetryableException) but FAILED_ACTIONS re-triggers the failed
    action and lets the running one continue."""
    name = unique("in-progress")
    flag = tmp_path / "flag"
    cp.create_pipeline(pipeline=pipeline(name, stage("Test", flag_gate("Fast", flag), sh_action("Slow", "sleep 3"))))
    eid = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]

    def fast_failed_slow_running(state):
        test = stage_state(state, "Test")
        if not test.get("latestExecution"):
            return False
        fast = action_state(test, "Fast").get("latestExecution", {})
        slow = action_state(test, "Slow").get("latestExecution", {})
        return fast.get("status") == "Failed" and slow.get("status") == "InProgress"

    state = wait_for("Fast to fail while Slow runs", lambda: cp.get_pipeline_state(name=name), fast_failed_slow_running, timeout=10)
    assert stage_state(state, "Test")["latestExecution"]["status"] == "InProgress"

    err = retry_error(cp, name, "Test", eid, "ALL_ACTIONS")
    assert error_code(err) == "StageNotRetryableException"

    flag.touch()
    assert retry(cp, name, "Test", eid, "FAILED_ACTIONS")["pipelineExecutionId"] == eid
    wait_execution(cp, name, eid, "Succeeded")
    assert [t["status"] for t in attempts(cp, name, eid, "Test", "Fast")] == ["Failed", "Succeeded"]
    assert [t["status"] for t in attempts(cp, name, eid, "Test", "Slow")] == ["Succeeded"]


def test_automatic_stage_retry_on_failure(cp, tmp_path):
    """onFailure {result: RETRY, retryConfiguration: {retryMode: FAILED_ACTIONS}}
    re-runs a failed stage by itself; GetPipelineState reports it."""
    name = unique("auto-retry")
    runs = tmp_path / "runs"
    flaky = sh_action("Flaky", f"echo x >> '{runs}'; [ $(wc -l < '{runs}') -ge 2 ]")
    cp.create_pipeline(
        pipeline=pipeline(name, stage("Deploy", flaky, onFailure={"result": "RETRY", "retryConfiguration": {"retryMode": "FAILED_ACTIONS"}}))
    )
    got = cp.get_pipeline(name=name)["pipeline"]["stages"][0]
    assert got["onFailure"] == {"result": "RETRY", "retryConfiguration": {"retryMode": "FAILED_ACTIONS"}}

    eid = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    wait_execution(cp, name, eid, "Succeeded")
    assert len(runs.read_text().splitlines()) == 2
    deploy = stage_state(cp.get_pipeline_state(name=name), "Deploy")
    assert deploy["retryStageMetadata"] == {
        "autoStageRetryAttempt": 1,
        "manualStageRetryAttempt": 0,
        "latestRetryTrigger": "AutomatedStageRetry",
    }
    assert [t["status"] for t in attempts(cp, name, eid, "Deploy", "Flaky")] == ["Failed", "Succeeded"]


# ---------------------------------------------------------------------------
# RetryStageExecution errors, each by its exact code


@pytest.fixture(scope="module")
def failed_run(cp, tmp_path_factory):
    """A pipeline Build (succeeds) → Deploy (fails for good) and its failed
    execution. Tests using it must not change it."""
    never = tmp_path_factory.mktemp("never") / "flag-never-created"
    name = unique("failed")
    cp.create_pipeline(pipeline=pipeline(name, stage("Build", sh_action("Compile", "true")), stage("Deploy", flag_gate("Rollout", never))))
    return name, start_and_fail(cp, name)


def test_bad_retry_mode_raw_request(endpoint, failed_run):
    name, eid = failed_run
    r = raw_call(
        endpoint,
        "RetryStageExecution",
        {"pipelineName": name, "stageName": "Deploy", "pipelineExecutionId": eid, "retryMode": "SOME_ACTIONS"},
    )
    assert r.status == 400
    assert r.headers["content-type"] == AMZ_JSON
    assert r.json["__type"] == "ValidationException"
    assert r.headers["x-amzn-errortype"] == "ValidationException"
    assert "retryMode" in r.json["message"] or "SOME_ACTIONS" in r.json["message"]


def test_bad_retry_mode_boto3(cp, failed_run):
    """botocore does not check enumeration values client-side, so boto3 sends a
    bad retryMode and gets the server's ValidationException."""
    name, eid = failed_run
    err = retry_error(cp, name, "Deploy", eid, "SOME_ACTIONS")
    assert error_code(err) == "ValidationException"
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pipelineExecutionId", "not-a-uuid"),
        ("pipelineExecutionId", "3137f7cb-7cf7-EXAMPLE"),
        ("pipelineExecutionId", "ABCDEF01-2345-6789-ABCD-EF0123456789"),
        ("pipelineName", "bad name!"),
        ("pipelineName", "p" * 101),
        ("stageName", "no/slash"),
        ("stageName", "s" * 101),
    ],
)
def test_retry_validation_exception(cp, failed_run, field, value):
    name, eid = failed_run
    args = {"pipelineName": name, "stageName": "Deploy", "pipelineExecutionId": eid, "retryMode": "FAILED_ACTIONS", field: value}
    with pytest.raises(ClientError) as info:
        cp.retry_stage_execution(**args)
    assert error_code(info.value) == "ValidationException"
    assert field in info.value.response["Error"]["Message"]


def test_retry_pipeline_not_found(cp):
    err = retry_error(cp, unique("no-such-pipeline"), "Deploy", str(uuid.uuid4()))
    assert error_code(err) == "PipelineNotFoundException"
    assert isinstance(err, cp.exceptions.PipelineNotFoundException)


def test_retry_stage_not_found(cp, failed_run):
    name, eid = failed_run
    err = retry_error(cp, name, "NoSuchStage", eid)
    assert error_code(err) == "StageNotFoundException"
    assert isinstance(err, cp.exceptions.StageNotFoundException)


def test_retry_unknown_execution_uses_a_retry_stage_error(cp, failed_run):
    name, _ = failed_run
    err = retry_error(cp, name, "Deploy", str(uuid.uuid4()))
    assert error_code(err) == "ValidationException"


def test_retry_stage_without_failed_actions_is_not_retryable(cp, failed_run):
    name, eid = failed_run
    for mode in ("FAILED_ACTIONS", "ALL_ACTIONS"):
        err = retry_error(cp, name, "Build", eid, mode)
        assert error_code(err) == "StageNotRetryableException"
        assert isinstance(err, cp.exceptions.StageNotRetryableException)


def test_retry_after_pipeline_update_is_not_retryable(cp, tmp_path):
    name = unique("updated")
    flag = tmp_path / "flag"
    decl = pipeline(name, stage("Deploy", flag_gate("Rollout", flag)))
    cp.create_pipeline(pipeline=decl)
    eid = start_and_fail(cp, name)

    decl["stages"][0]["actions"].append(sh_action("Notify", "true", run_order=2))
    assert cp.update_pipeline(pipeline=decl)["pipeline"]["version"] == 2
    flag.touch()
    err = retry_error(cp, name, "Deploy", eid)
    assert error_code(err) == "StageNotRetryableException"
    # The refusal changed nothing.
    assert cp.get_pipeline_execution(pipelineName=name, pipelineExecutionId=eid)["pipelineExecution"]["status"] == "Failed"


def test_retry_of_an_older_execution_is_not_latest(cp, tmp_path):
    """The stage failed again in a later execution: retrying the older one is
    NotLatestPipelineExecutionException; the later one can be retried."""
    name = unique("not-latest")
    flag = tmp_path / "flag"
    cp.create_pipeline(pipeline=pipeline(name, stage("Build", sh_action("Compile", "true")), stage("Deploy", flag_gate("Rollout", flag))))
    first = start_and_fail(cp, name)
    second = start_and_fail(cp, name)
    assert stage_state(cp.get_pipeline_state(name=name), "Deploy")["latestExecution"] == {"pipelineExecutionId": second, "status": "Failed"}

    flag.touch()
    err = retry_error(cp, name, "Deploy", first)
    assert error_code(err) == "NotLatestPipelineExecutionException"
    assert isinstance(err, cp.exceptions.NotLatestPipelineExecutionException)

    assert retry(cp, name, "Deploy", second)["pipelineExecutionId"] == second
    wait_execution(cp, name, second, "Succeeded")
    assert cp.get_pipeline_execution(pipelineName=name, pipelineExecutionId=first)["pipelineExecution"]["status"] == "Failed"


def test_concurrent_retries_of_one_stage_conflict(cp, tmp_path):
    """20 simultaneous retries of one failed stage whose retried action takes
    about 2 s: exactly one starts a new attempt series, every other gets
    ConflictException."""
    name = unique("conflict")
    flag = tmp_path / "flag"
    gate = sh_action("Slow", f"if [ -e '{flag}' ]; then sleep 2; exit 0; fi; exit 1")
    cp.create_pipeline(pipeline=pipeline(name, stage("Build", sh_action("Compile", "true")), stage("Gate", gate)))
    eid = start_and_fail(cp, name)
    flag.touch()

    n = 20
    barrier = threading.Barrier(n)

    def one(_):
        barrier.wait(timeout=10)
        try:
            return ("ok", retry(cp, name, "Gate", eid)["pipelineExecutionId"])
        except ClientError as e:
            return ("error", error_code(e))

    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(one, range(n)))

    assert results.count(("ok", eid)) == 1, results
    assert results.count(("error", "ConflictException")) == n - 1, results

    wait_execution(cp, name, eid, "Succeeded")
    assert [t["status"] for t in attempts(cp, name, eid, "Gate", "Slow")] == ["Failed", "Succeeded"]
    gate_state = stage_state(cp.get_pipeline_state(name=name), "Gate")
    assert gate_state["retryStageMetadata"]["manualStageRetryAttempt"] == 1


def create_native(endpoint: str, definition: dict) -> dict:
    r = requests.post(endpoint + "/v1/pipelines", json=definition, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def test_concurrent_executions_limit_on_start(cp, endpoint):
    """A PARALLEL pipeline with maxConcurrentExecutions 1 (a redrive extension
    the AWS model lacks, so the pipeline is created through the native API):
    a second start while one runs is refused."""
    name = unique("parallel")
    create_native(
        endpoint,
        {
            "name": name,
            "executionMode": "PARALLEL",
            "maxConcurrentExecutions": 1,
            "stages": [{"name": "Work", "actions": [{"name": "Sleep", "noop": {"sleepMs": 2000}}]}],
        },
    )
    # The natively created pipeline reads back in the wire form.
    decl = cp.get_pipeline(name=name)["pipeline"]
    assert decl["executionMode"] == "PARALLEL"
    action = decl["stages"][0]["actions"][0]
    assert action["actionTypeId"] == {"category": "Test", "owner": "Custom", "provider": "Noop", "version": "1"}
    assert action["configuration"] == {"SleepMs": "2000"}

    first = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    with pytest.raises(ClientError) as info:
        cp.start_pipeline_execution(name=name)
    assert error_code(info.value) == "ConcurrentPipelineExecutionsLimitExceededException"
    assert isinstance(info.value, cp.exceptions.ConcurrentPipelineExecutionsLimitExceededException)

    wait_execution(cp, name, first, "Succeeded")
    second = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    assert second != first


def test_concurrent_executions_limit_on_retry(cp, endpoint, tmp_path):
    """Retrying a failed execution of a PARALLEL pipeline makes it run again,
    so it counts against maxConcurrentExecutions."""
    name = unique("parallel-retry")
    flag = tmp_path / "flag"
    create_native(
        endpoint,
        {
            "name": name,
            "executionMode": "PARALLEL",
            "maxConcurrentExecutions": 1,
            "stages": [
                {
                    "name": "Work",
                    "actions": [
                        {
                            "name": "Job",
                            "command": ["sh", "-c", f"if [ -e '{flag}' ]; then sleep 2; exit 0; fi; exit 1"],
                            "retryPolicies": [{"exceptionType": ["Action.FAILED"], "maxAttempts": 0}],
                        }
                    ],
                }
            ],
        },
    )
    first = start_and_fail(cp, name)
    flag.touch()
    second = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]

    err = retry_error(cp, name, "Work", first)
    assert error_code(err) == "ConcurrentPipelineExecutionsLimitExceededException"

    wait_execution(cp, name, second, "Succeeded")
    assert retry(cp, name, "Work", first)["pipelineExecutionId"] == first
    wait_execution(cp, name, first, "Succeeded")


# ---------------------------------------------------------------------------
# Idempotent start


def test_start_with_client_request_token_is_idempotent(cp, endpoint):
    name = unique("idempotent")
    # PARALLEL: the three executions are independent (in SUPERSEDED mode the
    # middle one could be overtaken while it waits for the stage).
    cp.create_pipeline(pipeline=pipeline(name, stage("Work", noop_action("Nothing")), pipelineType="V2", executionMode="PARALLEL"))
    token = f"token-{uuid.uuid4()}"
    a = cp.start_pipeline_execution(name=name, clientRequestToken=token)["pipelineExecutionId"]
    b = cp.start_pipeline_execution(name=name, clientRequestToken=token)["pipelineExecutionId"]
    assert a == b
    # The same request sent raw is the same start too.
    r = raw_call(endpoint, "StartPipelineExecution", {"name": name, "clientRequestToken": token})
    assert r.status == 200 and r.json == {"pipelineExecutionId": a}
    # botocore fills in a fresh token when none is given: new executions.
    c = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    d = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    assert len({a, c, d}) == 3
    for eid in (a, c, d):
        wait_execution(cp, name, eid, "Succeeded")
    listed = [s["pipelineExecutionId"] for s in cp.list_pipeline_executions(pipelineName=name)["pipelineExecutionSummaries"]]
    assert sorted(listed) == sorted({a, c, d})


def test_reused_token_with_a_different_request_is_refused(cp, endpoint):
    """The same clientRequestToken with different variables is a different
    request: the server answers ConflictException (HTTP 409, the model's status
    for it) and starts nothing."""
    name = unique("token-reuse")
    cp.create_pipeline(pipeline=pipeline(name, stage("Work", noop_action("Nothing"))))
    token = f"token-{uuid.uuid4()}"
    first = raw_call(endpoint, "StartPipelineExecution", {"name": name, "clientRequestToken": token, "variables": [{"name": "v", "value": "1"}]})
    assert first.status == 200, first.text
    again = raw_call(endpoint, "StartPipelineExecution", {"name": name, "clientRequestToken": token, "variables": [{"name": "v", "value": "2"}]})
    assert again.status == 409, again.text
    assert again.json["__type"] == "ConflictException"
    assert again.headers["x-amzn-errortype"] == "ConflictException"
    assert again.json["message"]
    listed = cp.list_pipeline_executions(pipelineName=name)["pipelineExecutionSummaries"]
    assert [s["pipelineExecutionId"] for s in listed] == [first.json["pipelineExecutionId"]]


# ---------------------------------------------------------------------------
# Pipeline CRUD


def test_pipeline_crud(cp):
    name = unique("crud")
    decl = pipeline(name, stage("Build", sh_action("Compile", "true", TimeoutSeconds="60")))
    created = cp.create_pipeline(pipeline=decl)["pipeline"]
    assert created["version"] == 1

    got = cp.get_pipeline(name=name)
    wire = got["pipeline"]
    assert wire["name"] == name and wire["version"] == 1 and wire["roleArn"] == decl["roleArn"]
    action = wire["stages"][0]["actions"][0]
    assert action["actionTypeId"] == {"category": "Build", "owner": "Custom", "provider": "Command", "version": "1"}
    assert json.loads(action["configuration"]["Command"]) == ["sh", "-c", "true"]
    assert action["configuration"]["TimeoutSeconds"] == "60"
    assert json.loads(action["configuration"]["RetryPolicies"]) == [{"ExceptionType": ["Action.FAILED"], "MaxAttempts": 0}]
    assert name in got["metadata"]["pipelineArn"]

    with pytest.raises(ClientError) as info:
        cp.create_pipeline(pipeline=decl)
    assert error_code(info.value) == "PipelineNameInUseException"

    decl["stages"].append(stage("Deploy", sh_action("Ship", "true")))
    updated = cp.update_pipeline(pipeline=decl)["pipeline"]
    assert updated["version"] == 2
    assert [s["name"] for s in cp.get_pipeline(name=name)["pipeline"]["stages"]] == ["Build", "Deploy"]
    old = cp.get_pipeline(name=name, version=1)["pipeline"]
    assert old["version"] == 1 and [s["name"] for s in old["stages"]] == ["Build"]
    with pytest.raises(ClientError) as info:
        cp.get_pipeline(name=name, version=99)
    assert error_code(info.value) == "PipelineVersionNotFoundException"

    listed = {p["name"]: p for page in cp.get_paginator("list_pipelines").paginate() for p in page["pipelines"]}
    assert listed[name]["version"] == 2

    cp.delete_pipeline(name=name)
    with pytest.raises(ClientError) as info:
        cp.get_pipeline(name=name)
    assert error_code(info.value) == "PipelineNotFoundException"
    listed = {p["name"] for page in cp.get_paginator("list_pipelines").paginate() for p in page["pipelines"]}
    assert name not in listed
    # DeletePipeline of an unknown name succeeds (the model lists no NotFound for it).
    cp.delete_pipeline(name=name)


def test_wire_pipeline_reads_back_in_the_native_form(cp, endpoint):
    name = unique("forms")
    cp.create_pipeline(pipeline=pipeline(name, stage("Build", sh_action("Compile", "true"))))
    r = requests.get(f"{endpoint}/v1/pipelines/{name}", timeout=30)
    assert r.status_code == 200
    action = r.json()["definition"]["stages"][0]["actions"][0]
    assert action["name"] == "Compile" and action["command"] == ["sh", "-c", "true"]


def test_invalid_action_declaration(cp):
    decl = pipeline(unique("invalid"), stage("Build", sh_action("Compile", "true")))
    decl["stages"][0]["actions"][0]["actionTypeId"]["provider"] = "Teleport"
    with pytest.raises(ClientError) as info:
        cp.create_pipeline(pipeline=decl)
    assert error_code(info.value) == "InvalidActionDeclarationException"
    assert "provider" in info.value.response["Error"]["Message"]


# ---------------------------------------------------------------------------
# Malformed requests


def test_oversized_body_is_413(endpoint):
    r = raw_call(endpoint, "ListPipelines", b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert r.status == 413


def test_oversized_body_error_is_aws_json(endpoint):
    r = raw_call(endpoint, "ListPipelines", b"{" + b" " * (2 * 1024 * 1024) + b"}")
    assert r.status == 413
    assert r.headers.get("content-type") == AMZ_JSON
    assert "__type" in r.json


@pytest.mark.parametrize("body", [b"not json{", b"[1, 2]", b'"a string"'])
def test_non_json_body_is_400_with_json_error(endpoint, body):
    r = raw_call(endpoint, "ListPipelines", body)
    assert r.status == 400
    assert r.headers["content-type"] == AMZ_JSON
    assert r.json["__type"] == "SerializationException"
    assert r.json["message"]


@pytest.mark.parametrize(
    "target",
    [
        "CodePipeline_20150709.NoSuchOperation",
        "CodePipeline_20150709.PutApprovalResult",  # a real operation redrive does not serve
        "SomeOtherService_20200101.ListPipelines",
        "garbage",
    ],
)
def test_unknown_target_is_400_with_type(endpoint, target):
    r = raw_call(endpoint, None, {}, target=target)
    assert r.status == 400
    assert r.headers["content-type"] == AMZ_JSON
    assert r.json["__type"] == "UnknownOperationException"
    assert r.headers["x-amzn-errortype"] == "UnknownOperationException"


def test_missing_target_is_400_with_type(endpoint):
    r = raw_call(endpoint, None, {})
    assert r.status == 400
    assert r.json["__type"] == "UnknownOperationException"


def test_signatures_are_accepted_without_verification(endpoint):
    bogus = {
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20151030/us-east-1/codepipeline/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0000",
        "X-Amz-Date": "20151030T230047Z",
    }
    r = raw_call(endpoint, "ListPipelines", {}, headers=bogus)
    assert r.status == 200, r.text
    assert "pipelines" in r.json


def test_superseded_mode_locks_each_stage_and_supersedes_the_older_waiter(cp):
    """SUPERSEDED (the default) as CodePipeline runs it: one execution per stage;
    of two executions waiting before a locked stage the older is Superseded;
    the one inside the stage is never interrupted."""
    name = unique("superseded")
    cp.create_pipeline(
        pipeline=pipeline(name, stage("Build", noop_action("Slow", SleepMs="1500")), stage("Deploy", noop_action("Ship")))
    )
    first = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    second = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    third = cp.start_pipeline_execution(name=name)["pipelineExecutionId"]
    wait_execution(cp, name, second, "Superseded")
    wait_execution(cp, name, first, "Succeeded")
    wait_execution(cp, name, third, "Succeeded")
    statuses = {s["pipelineExecutionId"]: s["status"] for s in cp.list_pipeline_executions(pipelineName=name)["pipelineExecutionSummaries"]}
    assert statuses == {first: "Succeeded", second: "Superseded", third: "Succeeded"}


def test_a_next_token_this_server_did_not_issue_is_invalid_on_every_list(cp, endpoint):
    name = unique("tokens")
    cp.create_pipeline(pipeline=pipeline(name, stage("Work", noop_action("Nothing"))))
    for operation, body in [
        ("ListPipelines", {"nextToken": "not a token!"}),
        ("ListPipelineExecutions", {"pipelineName": name, "nextToken": "bogus"}),
        ("ListActionExecutions", {"pipelineName": name, "nextToken": "bogus"}),
    ]:
        r = raw_call(endpoint, operation, body)
        assert r.status == 400, (operation, r.text)
        assert r.json["__type"] == "InvalidNextTokenException", (operation, r.json)
        assert "nextToken" in r.json["message"], (operation, r.json)
    # A token the server issued still pages.
    page = cp.list_pipelines(maxResults=1)
    if "nextToken" in page:
        cp.list_pipelines(maxResults=1, nextToken=page["nextToken"])
