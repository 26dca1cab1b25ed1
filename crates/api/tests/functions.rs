//! Durable-function executions through real HTTP: an engine in this process runs
//! an untyped function (one execution succeeds after a retried step, one fails,
//! one is suspended on a one-hour retry); a server over the same store and engine
//! lists and shows them with their steps, step attempts and dead-letter entry.

use redrive_core::exception::{ExceptionType, Failure};
use redrive_core::function::FunctionState;
use redrive_core::policy::{RetryPolicy, RetryPolicySpec};
use redrive_engine::function::{FnContext, FnFuture, StepRetry};
use redrive_engine::service::Service;
use redrive_engine::{Driver, DriverConfig, EngineHandle, ManualClock};
use redrive_store::{SqliteOptions, SqliteStore, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn policy(types: &[&str], interval_seconds: f64, max_attempts: f64) -> RetryPolicy {
    RetryPolicy::new(&RetryPolicySpec {
        exception_types: types.iter().map(|t| t.to_string()).collect(),
        interval_seconds: Some(interval_seconds),
        max_attempts: Some(max_attempts),
        ..Default::default()
    })
    .unwrap()
}

/// `orders`: reserve (succeeds), charge (fails once with a service fault, retried
/// at once; or, with `"wait": true`, throttled and retried in an hour), then, with
/// `"fail": true`, ship (fails for good: the execution fails with its error).
fn orders() -> Arc<dyn redrive_engine::function::DurableFunction> {
    let f = |ctx: FnContext, input: String| -> FnFuture {
        Box::pin(async move {
            let input: Value = serde_json::from_str(&input).unwrap();
            let once = StepRetry { policies: vec![policy(&["Step.SERVICE_FAULT"], 0.0, 3.0)], ..StepRetry::default() };
            let hourly = StepRetry { policies: vec![policy(&["Step.THROTTLING"], 3600.0, 5.0)], ..StepRetry::default() };
            let never = StepRetry { policies: vec![RetryPolicy::none()], ..StepRetry::default() };
            ctx.step("reserve", &once, || async { Ok(json!({"sku": "book", "qty": 1})) }).await?;
            let wait = input["wait"] == true;
            let mut attempts = 0;
            let charge = ctx
                .step("charge", if wait { &hourly } else { &once }, || {
                    attempts += 1;
                    let first = attempts == 1;
                    async move {
                        if wait {
                            Err(Failure::new(ExceptionType::Throttling, "the gateway says slow down"))
                        } else if first {
                            Err(Failure::new(ExceptionType::ServiceFault, "gateway timeout"))
                        } else {
                            Ok(json!("ch_1"))
                        }
                    }
                })
                .await?;
            if input["fail"] == true {
                ctx.step("ship", &never, || async { Err(Failure::new(ExceptionType::ActionFailed, "no courier")) }).await?;
            }
            Ok(json!({"charge": charge}))
        })
    };
    Arc::new(f)
}

struct Server {
    url: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    ids: std::collections::HashMap<&'static str, String>,
}

async fn wait_suspended(store: &SqliteStore, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rec = store.get_execution(id).await.unwrap().unwrap();
        let state: FunctionState = serde_json::from_str(&rec.state_json).unwrap();
        if state.waiting_on().is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "never suspended: {}", rec.state_json);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(handle: &EngineHandle, name: &str, input: Value) -> String {
    handle.start_function("orders", name, input.to_string()).await.unwrap().0
}

async fn server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("r.db"), SqliteOptions::default()).unwrap());
    // Virtual time: the one-hour retry never comes due, and starts are ordered
    // by moving the clock, not by sleeping.
    let clock = Arc::new(ManualClock::new(redrive_core::time::Timestamp::from_unix_ms(1_767_225_600_000)));
    let (handle, _join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    // `orders` leaves executions that fail for good in a dead-letter queue.
    let queue = redrive_core::name::Name::parse("retry-orders").unwrap();
    handle.register_function_now("orders", orders(), Some(queue)).unwrap();
    handle.register_function("other", orders()).await.unwrap();
    let mut ids = std::collections::HashMap::new();
    // Started one after another, so the listing order is known.
    for (key, input) in [("ok", json!({})), ("bad", json!({"fail": true})), ("other", json!({}))] {
        let id = if key == "other" {
            handle.start_function("other", "o-1", input.to_string()).await.unwrap().0
        } else {
            start(&handle, &format!("{key}-1"), input).await
        };
        handle.wait(&id).await.unwrap();
        ids.insert(key, id);
        clock.advance(3);
    }
    let id = start(&handle, "wait-1", json!({"wait": true})).await;
    wait_suspended(&store, &id).await;
    ids.insert("wait", id);

    let service = Arc::new(Service::new(store, handle, clock));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(redrive_api::server::serve(service, listener, 1024 * 1024, async {
        let _ = rx.await;
    }));
    Server { url, client: reqwest::Client::new(), _dir: dir, _shutdown: tx, ids }
}

impl Server {
    async fn call(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(format!("{}{path}", self.url)).send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")))
    }

    async fn get(&self, path: &str) -> Value {
        let (st, v) = self.call(path).await;
        assert_eq!(st, 200, "GET {path}: {v}");
        v
    }

    async fn err(&self, path: &str, status: u16) -> (String, String) {
        let (st, v) = self.call(path).await;
        assert_eq!(st, status, "GET {path}: {v}");
        (v["error"]["code"].as_str().unwrap().to_string(), v["error"]["message"].as_str().unwrap().to_string())
    }

    fn id(&self, key: &str) -> &str {
        &self.ids[key]
    }
}

fn names(list: &Value) -> Vec<&str> {
    list["executions"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_executions_are_listed_newest_first_with_paging() {
    let s = server().await;
    let v = s.get("/v1/functions/orders/executions").await;
    assert_eq!(names(&v), ["wait-1", "bad-1", "ok-1"], "{v}");
    assert_eq!(v["nextToken"], Value::Null);
    let e = &v["executions"];
    assert_eq!(e[0]["executionId"], s.id("wait"));
    assert_eq!(e[0]["function"], "orders");
    assert_eq!(e[0]["status"], "InProgress");
    assert_eq!(e[0]["steps"], 2);
    assert!(e[0]["waitingUntil"].is_string(), "{}", e[0]);
    assert_eq!(e[0]["endTime"], Value::Null);
    assert_eq!(e[1]["status"], "Failed");
    assert_eq!(e[1]["steps"], 3);
    assert!(e[1]["endTime"].is_string());
    assert_eq!(e[1]["waitingUntil"], Value::Null);
    assert_eq!(e[2]["status"], "Succeeded");
    assert_eq!(e[2]["steps"], 2);

    // Pages follow nextToken and never repeat or skip.
    let p1 = s.get("/v1/functions/orders/executions?limit=2").await;
    assert_eq!(names(&p1), ["wait-1", "bad-1"]);
    let token = p1["nextToken"].as_str().expect("a next token");
    let p2 = s.get(&format!("/v1/functions/orders/executions?limit=2&nextToken={token}")).await;
    assert_eq!(names(&p2), ["ok-1"]);
    assert_eq!(p2["nextToken"], Value::Null);

    // Another function's executions are its own.
    assert_eq!(names(&s.get("/v1/functions/other/executions").await), ["o-1"]);
    // A function that never ran has no executions; that is not an error.
    let none = s.get("/v1/functions/never-ran/executions").await;
    assert_eq!(none, json!({"executions": [], "nextToken": null}));
    // Pipeline listings do not see function executions, nor the reverse.
    s.err("/v1/pipelines/orders/executions", 404).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_execution_shows_its_steps_and_attempts() {
    let s = server().await;

    let ok = s.get(&format!("/v1/functions/orders/executions/{}", s.id("ok"))).await;
    assert_eq!(ok["executionId"], s.id("ok"));
    assert_eq!(ok["name"], "ok-1");
    assert_eq!(ok["status"], "Succeeded");
    assert_eq!(ok["input"], json!({}));
    assert_eq!(ok["result"], json!({"charge": "ch_1"}));
    assert_eq!(ok["error"], Value::Null);
    let steps = ok["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["name"], "reserve");
    assert_eq!(steps[0]["kind"], "step");
    assert_eq!(steps[0]["status"], "Succeeded");
    assert_eq!(steps[0]["attempt"], 1);
    assert_eq!(steps[0]["result"], json!({"sku": "book", "qty": 1}));
    assert_eq!(steps[1]["name"], "charge");
    assert_eq!(steps[1]["attempt"], 2);
    assert_eq!(steps[1]["result"], "ch_1");
    assert_eq!(steps[1]["dueAt"], Value::Null);
    // The ledger, oldest first: reserve once, charge failed then succeeded.
    let attempts: Vec<(String, u64, String, Value)> = ok["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["step"].as_str().unwrap().into(),
                a["attempt"].as_u64().unwrap(),
                a["status"].as_str().unwrap().into(),
                a["exceptionType"].clone(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            ("reserve".into(), 1, "SUCCEEDED".into(), Value::Null),
            ("charge".into(), 1, "FAILED".into(), json!("Step.SERVICE_FAULT")),
            ("charge".into(), 2, "SUCCEEDED".into(), Value::Null),
        ]
    );
    assert_eq!(ok["attempts"][1]["message"], "gateway timeout");
    assert!(ok["attempts"][1]["decision"].is_object(), "{}", ok["attempts"][1]);
    assert_eq!(ok["attemptsTruncated"], false);

    let bad = s.get(&format!("/v1/functions/orders/executions/{}", s.id("bad"))).await;
    assert_eq!(bad["status"], "Failed");
    assert_eq!(bad["input"], json!({"fail": true}));
    assert_eq!(bad["result"], Value::Null);
    assert_eq!(bad["error"]["exceptionType"], "Action.FAILED");
    assert_eq!(bad["error"]["message"], "no courier");
    assert_eq!(bad["steps"][2]["name"], "ship");
    assert_eq!(bad["steps"][2]["status"], "Failed");
    assert_eq!(bad["steps"][2]["lastFailure"], json!({"exceptionType": "Action.FAILED", "message": "no courier"}));
    assert_eq!(bad["deadLetterQueue"], "retry-orders");
    assert_eq!(bad["deadLetter"], json!({"queue": "retry-orders", "entryId": s.id("bad")}));
    assert_eq!(ok["deadLetterQueue"], "retry-orders");
    assert_eq!(ok["deadLetter"], Value::Null);

    // Suspended on a one-hour retry: what it waits for and when it wakes.
    let wait = s.get(&format!("/v1/functions/orders/executions/{}", s.id("wait"))).await;
    assert_eq!(wait["status"], "InProgress");
    let charge = &wait["steps"][1];
    assert_eq!(charge["status"], "WaitingRetry");
    assert_eq!(charge["attempt"], 1);
    assert_eq!(charge["lastFailure"]["exceptionType"], "Step.THROTTLING");
    assert!(charge["dueAt"].is_string(), "{charge}");
    assert_eq!(wait["waitingUntil"], charge["dueAt"]);
    assert_eq!(wait["endTime"], Value::Null);
    assert_eq!(wait["attempts"].as_array().unwrap().len(), 2);

    // Errors: an unknown id, an id of another function, malformed names and ids, bad queries.
    let unknown = "00000000-0000-4000-8000-000000000000";
    let (code, msg) = s.err(&format!("/v1/functions/orders/executions/{unknown}"), 404).await;
    assert_eq!(code, "PipelineExecutionNotFoundException");
    assert!(msg.contains(unknown) && msg.contains("orders"), "{msg}");
    s.err(&format!("/v1/functions/orders/executions/{}", s.id("other")), 404).await;
    s.err(&format!("/v1/functions/never-ran/executions/{}", s.id("ok")), 404).await;
    let (code, _) = s.err("/v1/functions/orders/executions/not-a-uuid", 400).await;
    assert_eq!(code, "ValidationException");
    let (_, msg) = s.err("/v1/functions/bad:name/executions", 400).await;
    assert!(msg.contains("function name"), "{msg}");
    s.err("/v1/functions/orders/executions?limit=0", 400).await;
    s.err("/v1/functions/orders/executions?nextToken=garbage", 400).await;
    let (_, msg) = s.err("/v1/functions/orders/executions?colour=red", 400).await;
    assert!(msg.contains("colour"), "{msg}");
}
