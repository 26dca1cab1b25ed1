//! Every operation and error case through real HTTP: an in-process server on a
//! loopback port, a real SQLite store and engine.

use redrive_engine::service::Service;
use redrive_engine::{Driver, DriverConfig, ManualClock};
use redrive_store::{SqliteOptions, SqliteStore};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

struct Server {
    url: String,
    client: reqwest::Client,
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("r.db"), SqliteOptions::default()).unwrap());
    // Virtual time: a sleeping noop holds its execution open until the test
    // moves the clock (it never does), so limits are checked against executions
    // that are certainly running. Commands are real processes on real time.
    let clock = Arc::new(ManualClock::new(redrive_core::time::Timestamp::from_unix_ms(1_767_225_600_000)));
    let (handle, _join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let service = Arc::new(Service::new(store, handle, clock.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(redrive_api::server::serve(service, listener, 1024 * 1024, async {
        let _ = rx.await;
    }));
    Server { url, client: reqwest::Client::new(), dir, clock, _shutdown: tx }
}

impl Server {
    /// A CodePipeline call: (HTTP status, body, x-amzn-ErrorType header).
    async fn aws(&self, op: &str, body: Value) -> (u16, Value, Option<String>) {
        let r = self
            .client
            .post(format!("{}/", self.url))
            .header("X-Amz-Target", format!("CodePipeline_20150709.{op}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let et = r.headers().get("x-amzn-ErrorType").map(|v| v.to_str().unwrap().to_string());
        assert!(r.headers().contains_key("x-amzn-RequestId"));
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")), et)
    }

    /// The `__type` of a failed call, asserting it failed.
    async fn aws_err(&self, op: &str, body: Value) -> String {
        let (status, v, header) = self.aws(op, body).await;
        assert!(status >= 400, "{op} unexpectedly succeeded: {v}");
        let t = v["__type"].as_str().unwrap().to_string();
        assert_eq!(header.as_deref(), Some(t.as_str()));
        assert!(!v["message"].as_str().unwrap().is_empty());
        t
    }

    async fn aws_ok(&self, op: &str, body: Value) -> Value {
        let (status, v, _) = self.aws(op, body).await;
        assert_eq!(status, 200, "{op}: {v}");
        v
    }

    async fn native(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")) })
    }

    fn flag(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    async fn wait_status(&self, pipeline: &str, id: &str, want: &str) -> Value {
        for _ in 0..300 {
            let v = self.aws_ok("GetPipelineExecution", json!({"pipelineName": pipeline, "pipelineExecutionId": id})).await;
            if v["pipelineExecution"]["status"] == want {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("execution {id} never reached {want}");
    }
}

/// A wire declaration: stage `Build` with a command action that fails until `flag`
/// exists (no retries), then stage `Deploy` with a noop.
fn flaky_declaration(name: &str, flag: &str) -> Value {
    json!({
        "name": name,
        "roleArn": "arn:aws:iam::123456789012:role/x",
        "stages": [
            {"name": "Build", "actions": [
                {"name": "Flaky", "runOrder": 1,
                 "actionTypeId": {"category": "Build", "owner": "Custom", "provider": "Command", "version": "1"},
                 "configuration": {"Command": json!(["sh", "-c", format!("test -e {flag}")]).to_string(),
                                    "RetryPolicies": "[{\"ExceptionType\": [\"Action.FAILED\"], \"MaxAttempts\": 0}]"}},
                {"name": "Steady", "runOrder": 1,
                 "actionTypeId": {"category": "Test", "owner": "Custom", "provider": "Noop", "version": "1"}}
            ]},
            {"name": "Deploy", "actions": [
                {"name": "Ship", "actionTypeId": {"category": "Test", "owner": "Custom", "provider": "Noop", "version": "1"}}
            ]}
        ]
    })
}

async fn failed_execution(s: &Server, name: &str, flag: &str) -> String {
    s.aws_ok("CreatePipeline", json!({"pipeline": flaky_declaration(name, flag)})).await;
    let id = s.aws_ok("StartPipelineExecution", json!({"name": name})).await["pipelineExecutionId"].as_str().unwrap().to_string();
    s.wait_status(name, &id, "Failed").await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_crud_over_both_protocols() {
    let s = server().await;
    let decl = flaky_declaration("crud", "/nonexistent");
    let created = s.aws_ok("CreatePipeline", json!({"pipeline": decl})).await;
    assert_eq!(created["pipeline"]["version"], 1);
    assert_eq!(s.aws_err("CreatePipeline", json!({"pipeline": decl})).await, "PipelineNameInUseException");
    let got = s.aws_ok("GetPipeline", json!({"name": "crud"})).await;
    assert_eq!(got["pipeline"]["stages"][0]["actions"][0]["actionTypeId"]["provider"], "Command");
    assert!(got["metadata"]["created"].is_number(), "timestamps are epoch seconds");
    let updated = s.aws_ok("UpdatePipeline", json!({"pipeline": decl})).await;
    assert_eq!(updated["pipeline"]["version"], 2, "an update bumps the version");
    assert_eq!(s.aws_ok("GetPipeline", json!({"name": "crud", "version": 1})).await["pipeline"]["version"], 1);
    assert_eq!(s.aws_err("GetPipeline", json!({"name": "crud", "version": 9})).await, "PipelineVersionNotFoundException");
    // Native view of the same pipeline, created natively and read on the wire.
    let (st, _) = s
        .native(
            reqwest::Method::POST,
            "/v1/pipelines",
            Some(json!({"name": "native", "stages": [{"name": "S", "actions": [{"name": "A", "noop": {}}]}]})),
        )
        .await;
    assert_eq!(st, 201);
    let wire = s.aws_ok("GetPipeline", json!({"name": "native"})).await;
    assert_eq!(wire["pipeline"]["stages"][0]["actions"][0]["actionTypeId"]["provider"], "Noop");
    let (st, v) = s.native(reqwest::Method::GET, "/v1/pipelines/crud", None).await;
    assert_eq!((st, v["pipeline"]["version"].clone()), (200, json!(2)));
    let names: Vec<Value> =
        s.aws_ok("ListPipelines", json!({})).await["pipelines"].as_array().unwrap().iter().map(|p| p["name"].clone()).collect();
    assert_eq!(names, vec![json!("crud"), json!("native")]);
    // Pagination.
    let page = s.aws_ok("ListPipelines", json!({"maxResults": 1})).await;
    let rest = s.aws_ok("ListPipelines", json!({"nextToken": page["nextToken"]})).await;
    assert_eq!(rest["pipelines"][0]["name"], "native");
    s.aws_ok("DeletePipeline", json!({"name": "crud"})).await;
    assert_eq!(s.aws_err("GetPipeline", json!({"name": "crud"})).await, "PipelineNotFoundException");
    s.aws_ok("DeletePipeline", json!({"name": "crud"})).await; // deleting again is fine
    let (st, v) = s.native(reqwest::Method::GET, "/v1/pipelines/crud", None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("PipelineNotFoundException")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_definitions_and_malformed_requests() {
    let s = server().await;
    let mut bad = flaky_declaration("bad", "/x");
    bad["stages"][0]["actions"][0]["configuration"]["RetryPolicies"] = json!("[{\"ExceptionType\": [\"Step.NOPE\"], \"MaxAttempts\": 30}]");
    let t = s.aws_err("CreatePipeline", json!({"pipeline": bad})).await;
    assert_eq!(t, "InvalidActionDeclarationException");
    let (st, v) = s.native(reqwest::Method::POST, "/v1/pipelines", Some(json!({"name": "bad", "stages": []}))).await;
    assert_eq!(st, 400);
    assert_eq!(v["error"]["code"], "InvalidStructureException");
    assert!(v["error"]["problems"].as_array().is_some_and(|p| !p.is_empty()));

    // Not JSON, unknown operation, missing target, oversized body, bad names and ids.
    let r = s
        .client
        .post(format!("{}/", s.url))
        .header("X-Amz-Target", "CodePipeline_20150709.ListPipelines")
        .header("Content-Type", "application/x-amz-json-1.1")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["__type"], "SerializationException");
    assert_eq!(s.aws_err("DropAllTables", json!({})).await, "UnknownOperationException");
    let r = s.client.post(format!("{}/", s.url)).header("Content-Type", "application/x-amz-json-1.1").body("{}").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let big = "x".repeat(1024 * 1024 + 100); // just over the limit: the request is rejected, not cut mid-send
    let r = s
        .client
        .post(format!("{}/", s.url))
        .header("X-Amz-Target", "CodePipeline_20150709.ListPipelines")
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let r = s.client.post(format!("{}/v1/pipelines", s.url)).header("Content-Type", "application/json").body(big).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let (st, v) = s
        .native(reqwest::Method::POST, "/v1/pipelines/x/executions/not-a-uuid/stages/S/retry", Some(json!({"retryMode": "FAILED_ACTIONS"})))
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("ValidationException")));
    let r = s.client.post(format!("{}/v1/pipelines", s.url)).header("Content-Type", "application/json").body("{nope").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "ValidationException");
    assert_eq!(s.aws_err("GetPipeline", json!({"name": "bad name!"})).await, "ValidationException");
    let (st, _) = s.native(reqwest::Method::GET, "/nope", None).await;
    assert_eq!(st, 404);
    let (st, v) = s.native(reqwest::Method::GET, "/v1/pipelines?limit=abc", None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("ValidationException")));
    let (st, v) = s.native(reqwest::Method::GET, "/v1/pipelines?limit=0", None).await;
    assert_eq!((st, v["error"]["code"].as_str()), (400, Some("ValidationException")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_start_idempotently_list_and_stop() {
    let s = server().await;
    s.native(
        reqwest::Method::POST,
        "/v1/pipelines",
        Some(json!({"name": "slow", "executionMode": "PARALLEL", "maxConcurrentExecutions": 3, "stages": [{"name": "S", "actions": [{"name": "A", "noop": {"sleepMs": 4000}}]}]})),
    )
    .await;
    let a = s.aws_ok("StartPipelineExecution", json!({"name": "slow", "clientRequestToken": "tok-1"})).await["pipelineExecutionId"].clone();
    let b = s.aws_ok("StartPipelineExecution", json!({"name": "slow", "clientRequestToken": "tok-1"})).await["pipelineExecutionId"].clone();
    assert_eq!(a, b, "same token, same request: same execution");
    let t = s
        .aws_err(
            "StartPipelineExecution",
            json!({"name": "slow", "clientRequestToken": "tok-1", "variables": [{"name": "v", "value": "1"}]}),
        )
        .await;
    assert_eq!(t, "ConflictException", "same token, different request");
    let c = s.aws_ok("StartPipelineExecution", json!({"name": "slow"})).await["pipelineExecutionId"].clone();
    s.aws_ok("StartPipelineExecution", json!({"name": "slow"})).await;
    assert_eq!(s.aws_err("StartPipelineExecution", json!({"name": "slow"})).await, "ConcurrentPipelineExecutionsLimitExceededException");
    assert_eq!(s.aws_err("StartPipelineExecution", json!({"name": "nope"})).await, "PipelineNotFoundException");

    let list = s.aws_ok("ListPipelineExecutions", json!({"pipelineName": "slow", "maxResults": 2})).await;
    assert_eq!(list["pipelineExecutionSummaries"].as_array().unwrap().len(), 2);
    let rest = s.aws_ok("ListPipelineExecutions", json!({"pipelineName": "slow", "nextToken": list["nextToken"]})).await;
    assert_eq!(rest["pipelineExecutionSummaries"].as_array().unwrap().len(), 1);
    assert_eq!(
        s.aws_err("ListPipelineExecutions", json!({"pipelineName": "slow", "nextToken": "garbage"})).await,
        "InvalidNextTokenException"
    );

    let id = a.as_str().unwrap();
    s.aws_ok("StopPipelineExecution", json!({"pipelineName": "slow", "pipelineExecutionId": id, "reason": "test"})).await;
    assert_eq!(
        s.aws_err("StopPipelineExecution", json!({"pipelineName": "slow", "pipelineExecutionId": id})).await,
        "DuplicatedStopRequestException"
    );
    // Abandon stops at once, even while the attempt still runs.
    s.aws_ok("StopPipelineExecution", json!({"pipelineName": "slow", "pipelineExecutionId": c, "abandon": true})).await;
    s.wait_status("slow", c.as_str().unwrap(), "Stopped").await;
    // Without abandon, the running attempt finishes first (Stopping, then Stopped):
    // it is still sleeping, since the clock has not moved.
    let v = s.aws_ok("GetPipelineExecution", json!({"pipelineName": "slow", "pipelineExecutionId": id})).await;
    assert_eq!(v["pipelineExecution"]["status"], "Stopping", "{v}");
    s.clock.advance(4000);
    s.wait_status("slow", id, "Stopped").await;
    assert_eq!(
        s.aws_err("StopPipelineExecution", json!({"pipelineName": "slow", "pipelineExecutionId": id})).await,
        "PipelineExecutionNotStoppableException"
    );
    assert_eq!(
        s.aws_err("GetPipelineExecution", json!({"pipelineName": "slow", "pipelineExecutionId": "00000000-0000-4000-8000-000000000000"}))
            .await,
        "PipelineExecutionNotFoundException"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_stage_state_retry_and_history() {
    let s = server().await;
    let flag = s.flag("fixed");
    let id = failed_execution(&s, "flow", &flag).await;
    let state = s.aws_ok("GetPipelineState", json!({"name": "flow"})).await;
    let build = &state["stageStates"][0];
    assert_eq!(build["latestExecution"]["status"], "Failed");
    assert_eq!(build["latestExecution"]["pipelineExecutionId"], id.as_str());
    assert_eq!(build["actionStates"][0]["latestExecution"]["errorDetails"]["code"], "Action.FAILED");
    assert_eq!(build["actionStates"][1]["latestExecution"]["status"], "Succeeded");
    assert!(state["stageStates"][1].get("latestExecution").is_none(), "Deploy never ran");

    std::fs::write(&flag, "").unwrap();
    let r = s
        .aws_ok(
            "RetryStageExecution",
            json!({"pipelineName": "flow", "stageName": "Build", "pipelineExecutionId": id, "retryMode": "FAILED_ACTIONS"}),
        )
        .await;
    assert_eq!(r["pipelineExecutionId"], id.as_str());
    s.wait_status("flow", &id, "Succeeded").await;
    let state = s.aws_ok("GetPipelineState", json!({"name": "flow"})).await;
    assert_eq!(state["stageStates"][0]["retryStageMetadata"]["manualStageRetryAttempt"], 1);
    assert_eq!(state["stageStates"][0]["retryStageMetadata"]["latestRetryTrigger"], "ManualStageRetry");

    let history = s.aws_ok("ListActionExecutions", json!({"pipelineName": "flow", "filter": {"pipelineExecutionId": id}})).await;
    let rows: Vec<(String, String)> = history["actionExecutionDetails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["actionName"].as_str().unwrap().to_string(), d["status"].as_str().unwrap().to_string()))
        .collect();
    assert!(rows.contains(&("Flaky".into(), "Failed".into())) && rows.contains(&("Flaky".into(), "Succeeded".into())), "{rows:?}");
    let (st, v) = s.native(reqwest::Method::GET, &format!("/v1/pipelines/flow/action-executions?executionId={id}&limit=2"), None).await;
    assert_eq!((st, v["actionExecutions"].as_array().unwrap().len()), (200, 2));
    assert!(v["nextToken"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_retry_stage_error() {
    let s = server().await;
    let flag = s.flag("fixed");
    let retry = |pipeline: &str, stage: &str, id: &str, mode: &str| json!({"pipelineName": pipeline, "stageName": stage, "pipelineExecutionId": id, "retryMode": mode});
    let first = failed_execution(&s, "errs", &flag).await;

    assert_eq!(s.aws_err("RetryStageExecution", retry("errs", "Build", &first, "SOME_ACTIONS")).await, "ValidationException");
    assert_eq!(
        s.aws_err("RetryStageExecution", retry("errs", "Build", "3137f7cb-7cf7-EXAMPLE", "FAILED_ACTIONS")).await,
        "ValidationException"
    );
    assert_eq!(s.aws_err("RetryStageExecution", retry("bad name", "Build", &first, "FAILED_ACTIONS")).await, "ValidationException");
    assert_eq!(s.aws_err("RetryStageExecution", retry("nope", "Build", &first, "FAILED_ACTIONS")).await, "PipelineNotFoundException");
    assert_eq!(s.aws_err("RetryStageExecution", retry("errs", "Nope", &first, "FAILED_ACTIONS")).await, "StageNotFoundException");
    assert_eq!(
        s.aws_err("RetryStageExecution", retry("errs", "Deploy", &first, "FAILED_ACTIONS")).await,
        "StageNotRetryableException",
        "no failed actions"
    );

    // The stage failed again in a later execution: the first one is out of date.
    let second = s.aws_ok("StartPipelineExecution", json!({"name": "errs"})).await["pipelineExecutionId"].as_str().unwrap().to_string();
    s.wait_status("errs", &second, "Failed").await;
    assert_eq!(
        s.aws_err("RetryStageExecution", retry("errs", "Build", &first, "FAILED_ACTIONS")).await,
        "NotLatestPipelineExecutionException"
    );

    // The pipeline changed since the failure.
    s.aws_ok("UpdatePipeline", json!({"pipeline": flaky_declaration("errs", &flag)})).await;
    assert_eq!(s.aws_err("RetryStageExecution", retry("errs", "Build", &second, "FAILED_ACTIONS")).await, "StageNotRetryableException");

    // Concurrent retries: exactly one wins, the others conflict.
    let slow_flag = s.flag("slow-fixed");
    let mut decl = flaky_declaration("race", &slow_flag);
    decl["stages"][0]["actions"][0]["configuration"]["Command"] =
        Value::String(json!(["sh", "-c", format!("sleep 1; test -e {slow_flag}")]).to_string());
    s.aws_ok("CreatePipeline", json!({"pipeline": decl})).await;
    let id = s.aws_ok("StartPipelineExecution", json!({"name": "race"})).await["pipelineExecutionId"].as_str().unwrap().to_string();
    s.wait_status("race", &id, "Failed").await;
    let s = Arc::new(s);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (s, id) = (s.clone(), id.clone());
        tasks.spawn(async move {
            s.aws(
                "RetryStageExecution",
                json!({"pipelineName": "race", "stageName": "Build", "pipelineExecutionId": id, "retryMode": "FAILED_ACTIONS"}),
            )
            .await
        });
    }
    let mut outcomes = std::collections::BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        let (status, v, _) = r.unwrap();
        let key = if status == 200 { "ok".to_string() } else { v["__type"].as_str().unwrap().to_string() };
        *outcomes.entry(key).or_insert(0) += 1;
    }
    assert_eq!(outcomes.get("ok"), Some(&1), "{outcomes:?}");
    assert_eq!(outcomes.get("ConflictException"), Some(&99), "{outcomes:?}");
    // ALL_ACTIONS while an action of the stage is in progress (the retry is running).
    let t = s
        .aws_err(
            "RetryStageExecution",
            json!({"pipelineName": "race", "stageName": "Build", "pipelineExecutionId": id, "retryMode": "ALL_ACTIONS"}),
        )
        .await;
    assert!(t == "ConflictException" || t == "StageNotRetryableException", "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_actions_reruns_the_whole_stage_and_parallel_limit_applies_to_retries() {
    let s = server().await;
    let flag = s.flag("fixed");
    let id = failed_execution(&s, "all", &flag).await;
    std::fs::write(&flag, "").unwrap();
    s.aws_ok(
        "RetryStageExecution",
        json!({"pipelineName": "all", "stageName": "Build", "pipelineExecutionId": id, "retryMode": "ALL_ACTIONS"}),
    )
    .await;
    s.wait_status("all", &id, "Succeeded").await;
    let history = s.aws_ok("ListActionExecutions", json!({"pipelineName": "all"})).await;
    let steady = history["actionExecutionDetails"].as_array().unwrap().iter().filter(|d| d["actionName"] == "Steady").count();
    assert_eq!(steady, 2, "ALL_ACTIONS re-ran the action that had succeeded");

    // A PARALLEL pipeline at its limit refuses to reopen a failed execution.
    let f2 = s.flag("never");
    s.native(
        reqwest::Method::POST,
        "/v1/pipelines",
        Some(json!({"name": "lim", "executionMode": "PARALLEL", "maxConcurrentExecutions": 1, "stages": [
            {"name": "S", "actions": [{"name": "A", "command": ["sh", "-c", format!(r#"test -e {f2} || {{ [ "$REDRIVE_INPUT" = {hold} ] && sleep 5; exit 1; }}"#, hold = "'{\"hold\":true}'")],
              "retryPolicies": [{"exceptionType": ["Action.FAILED"], "maxAttempts": 0}]}]}]})),
    )
    .await;
    let failed = s.native(reqwest::Method::POST, "/v1/pipelines/lim/executions", Some(json!({}))).await.1["pipelineExecutionId"]
        .as_str()
        .unwrap()
        .to_string();
    s.wait_status("lim", &failed, "Failed").await;
    let (st, _) = s.native(reqwest::Method::POST, "/v1/pipelines/lim/executions", Some(json!({"input": {"hold": true}}))).await;
    assert_eq!(st, 201);
    let t = s
        .aws_err(
            "RetryStageExecution",
            json!({"pipelineName": "lim", "stageName": "S", "pipelineExecutionId": failed, "retryMode": "FAILED_ACTIONS"}),
        )
        .await;
    assert_eq!(t, "ConcurrentPipelineExecutionsLimitExceededException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_and_health() {
    let s = server().await;
    let (st, v) = s.native(reqwest::Method::GET, "/openapi.json", None).await;
    assert_eq!(st, 200);
    assert_eq!(v["openapi"], "3.1.0");
    let r = s.client.get(format!("{}/healthz", s.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}
