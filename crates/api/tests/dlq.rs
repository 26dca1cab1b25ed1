//! Dead-letter queues through real HTTP: an in-process server on a loopback port,
//! a real SQLite store and engine; executions that fail for good fill a queue,
//! which is listed, inspected, redriven (dry, bulk, forced, new-execution),
//! configured, purged and scraped.

use redrive_engine::redrive::{DEFAULT_RATE, QueueScope, RedriveMode, RedriveRequest, RedriveSchedule};
use redrive_engine::service::Service;
use redrive_engine::{Driver, DriverConfig, ManualClock};
use redrive_store::{SqliteOptions, SqliteStore};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

struct Server {
    url: String,
    client: reqwest::Client,
    dir: tempfile::TempDir,
    /// The engine's and the service's clock: virtual, moved by the test.
    clock: Arc<ManualClock>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn server_with(schedules: Vec<RedriveSchedule>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("r.db"), SqliteOptions::default()).unwrap());
    let clock = Arc::new(ManualClock::new(redrive_core::time::Timestamp::from_unix_ms(1_767_225_600_000)));
    let (handle, _join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let mut service = Service::new(store, handle, clock.clone());
    service.set_schedules(schedules).unwrap();
    let service = Arc::new(service);
    service.start_schedules().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(redrive_api::server::serve(service, listener, 1024 * 1024, async {
        let _ = rx.await;
    }));
    Server { url, client: reqwest::Client::new(), dir, clock, _shutdown: tx }
}

async fn server() -> Server {
    server_with(Vec::new()).await
}

impl Server {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")) })
    }

    async fn get(&self, path: &str) -> Value {
        let (st, v) = self.call(Method::GET, path, None).await;
        assert_eq!(st, 200, "GET {path}: {v}");
        v
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// The error code of a failed call, asserting its status.
    async fn err(&self, method: Method, path: &str, body: Option<Value>, status: u16) -> (String, String) {
        let (st, v) = self.call(method.clone(), path, body).await;
        assert_eq!(st, status, "{method} {path}: {v}");
        (v["error"]["code"].as_str().unwrap().to_string(), v["error"]["message"].as_str().unwrap().to_string())
    }

    async fn create_pipeline(&self, definition: Value) {
        let (st, v) = self.post("/v1/pipelines", definition).await;
        assert_eq!(st, 201, "{v}");
    }

    async fn start(&self, pipeline: &str, input: Value) -> String {
        let (st, v) = self.post(&format!("/v1/pipelines/{pipeline}/executions"), json!({"input": input})).await;
        assert_eq!(st, 201, "{v}");
        v["pipelineExecutionId"].as_str().unwrap().to_string()
    }

    async fn wait_execution(&self, pipeline: &str, id: &str, want: &str) -> Value {
        for _ in 0..400 {
            let v = self.get(&format!("/v1/pipelines/{pipeline}/executions/{id}")).await;
            if v["status"] == want {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("execution {id} never reached {want}");
    }

    /// Polls a run until it is no longer RUNNING; returns it.
    async fn wait_run(&self, run_id: &str) -> Value {
        for _ in 0..400 {
            let v = self.get(&format!("/v1/dlq/redrives/{run_id}")).await;
            if v["status"] != "RUNNING" {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redrive run {run_id} never finished");
    }

    /// Polls a path until `done` holds for its body.
    async fn wait_for(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..400 {
            last = self.get(path).await;
            if done(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("GET {path}: never {what}; last {last}");
    }

    /// Starts a redrive, expects 202 RUNNING, waits for it to succeed.
    async fn redrive(&self, path: &str, body: Value) -> Value {
        // Runs list newest first by start time (ms): keep starts apart.
        self.clock.advance(1);
        let (st, run) = self.post(path, body).await;
        assert_eq!(st, 202, "{run}");
        assert_eq!(run["status"], "RUNNING");
        assert!(run["finishedAt"].is_null());
        let done = self.wait_run(run["runId"].as_str().unwrap()).await;
        assert_eq!(done["status"], "SUCCEEDED", "{done}");
        assert!(done["finishedAt"].is_string());
        done
    }

    async fn metrics(&self) -> String {
        let r = self.client.get(format!("{}/metrics", self.url)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let ct = r.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/openmetrics-text; version=1.0.0"), "{ct}");
        r.text().await.unwrap()
    }
}

/// A pipeline whose only action always fails with `fail_with`, not retried, into
/// queue `retry-orders`. PARALLEL: its executions are independent, so a redrive
/// retries them all at once (SUPERSEDED lets one execution into a stage at a time).
fn always_failing(name: &str, fail_with: &str) -> Value {
    json!({
        "name": name,
        "executionMode": "PARALLEL",
        "deadLetterQueue": "retry-orders",
        "stages": [{"name": "Charge", "actions": [{
            "name": "Card",
            "noop": {"failFirst": 1000, "failWith": fail_with},
            "retryPolicies": [{"exceptionType": [fail_with], "maxAttempts": 0}]
        }]}]
    })
}

const Q: &str = "/v1/dlq/queues/retry-orders";

/// Entries of the queue (any query), all pages of `limit`, checking paging.
async fn all_entries(s: &Server, query: &str, limit: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("{Q}/entries?limit={limit}{query}");
        if let Some(t) = &token {
            path.push_str(&format!("&nextToken={t}"));
        }
        let page = s.get(&path).await;
        let entries = page["entries"].as_array().unwrap();
        assert!(entries.len() <= limit);
        out.extend(entries.iter().cloned());
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return out,
        }
    }
    panic!("paging never ended");
}

fn ids(entries: &[Value]) -> Vec<String> {
    entries.iter().map(|e| e["entryId"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_entries_redrives_poison_and_purge() {
    let s = server().await;
    s.create_pipeline(always_failing("orders", "Step.THROTTLING")).await;
    s.create_pipeline(always_failing("billing", "Action.FAILED")).await;

    // Before anything failed: the pipeline named the queue, so it exists, empty.
    assert_eq!(s.get("/v1/dlq/schedules").await, json!({"schedules": []}));
    assert_eq!(s.get("/v1/dlq/redrives").await, json!({"runs": [], "nextToken": null}));

    let mut orders = Vec::new();
    for n in 0..3 {
        orders.push(s.start("orders", json!({"order": n})).await);
    }
    let billing = s.start("billing", json!({"invoice": 7})).await;
    for id in &orders {
        s.wait_execution("orders", id, "Failed").await;
    }
    s.wait_execution("billing", &billing, "Failed").await;

    // ---- queues ----
    let queues = s.get("/v1/dlq/queues").await;
    assert_eq!(queues["nextToken"], Value::Null);
    let q = queues["queues"].as_array().unwrap().iter().find(|q| q["name"] == "retry-orders").cloned().expect("queue listed");
    assert_eq!((q["depth"].as_u64(), q["poison"].as_u64(), q["redriven"].as_u64()), (Some(4), Some(0), Some(0)), "{q}");
    assert_eq!(q["maxRedrives"], 3);
    assert!(q["oldestEnteredAt"].is_string() && q["oldestAgeSeconds"].as_f64().unwrap() >= 0.0, "{q}");
    assert!(q["createdAt"].is_string());
    assert_eq!(s.get("/v1/dlq/queues?prefix=retry-").await["queues"].as_array().unwrap().len(), 1);
    assert_eq!(s.get("/v1/dlq/queues?prefix=other-").await["queues"], json!([]));
    let one = s.get(Q).await;
    assert_eq!(one["depth"], 4);

    // ---- metrics ----
    let text = s.metrics().await;
    assert!(text.contains("# TYPE redrive_dlq_depth gauge\n"), "{text}");
    assert!(text.contains("\nredrive_dlq_depth{queue=\"retry-orders\"} 4\n"), "{text}");
    assert!(text.contains("\nredrive_dlq_poison{queue=\"retry-orders\"} 0\n"), "{text}");
    assert!(text.contains("\nredrive_dlq_max_redrives{queue=\"retry-orders\"} 3\n"), "{text}");
    assert!(text.contains("\nredrive_dlq_oldest_entry_age_seconds{queue=\"retry-orders\"} "), "{text}");

    // ---- entries: filters, count, paging ----
    let listed = s.get(&format!("{Q}/entries")).await;
    assert_eq!(listed["count"], 4);
    assert_eq!(listed["nextToken"], Value::Null);
    let throttled = s.get(&format!("{Q}/entries?type=Step.THROTTLING")).await;
    assert_eq!(throttled["count"], 3);
    assert!(throttled["entries"].as_array().unwrap().iter().all(|e| e["source"]["pipelineName"] == "orders"));
    let from_billing = s.get(&format!("{Q}/entries?source=billing")).await;
    assert_eq!(from_billing["count"], 1);
    assert_eq!(from_billing["entries"][0]["error"]["exceptionType"], "Action.FAILED");
    assert_eq!(s.get(&format!("{Q}/entries?olderThan=1h")).await["count"], 0);
    assert_eq!(s.get(&format!("{Q}/entries?olderThan=0s&state=QUEUED&poison=false")).await["count"], 4);
    assert_eq!(s.get(&format!("{Q}/entries?state=REDRIVEN")).await["count"], 0);
    assert_eq!(s.get(&format!("{Q}/entries?state=ALL")).await["count"], 4);
    assert_eq!(s.get(&format!("{Q}/entries?poison=true")).await["count"], 0);
    let paged = all_entries(&s, "", 1).await;
    let paged_ids = ids(&paged);
    assert_eq!(paged_ids.len(), 4);
    assert_eq!(paged_ids.iter().collect::<HashSet<_>>().len(), 4, "no duplicates across pages");
    // Oldest first, the same order as one page.
    assert_eq!(paged_ids, ids(listed["entries"].as_array().unwrap()));
    // The count ignores paging.
    assert_eq!(s.get(&format!("{Q}/entries?limit=1")).await["count"], 4);

    // ---- one entry ----
    let first = &orders[0];
    let e = s.get(&format!("/v1/dlq/entries/{first}")).await;
    assert_eq!(e["entryId"], first.as_str());
    assert_eq!(e["queue"], "retry-orders");
    assert_eq!(e["state"], "QUEUED");
    assert_eq!(e["poison"], false);
    assert_eq!(e["redriveCount"], 0);
    assert_eq!(e["maxRedrives"], 3);
    assert_eq!(
        e["source"],
        json!({"kind": "pipeline", "pipelineName": "orders", "pipelineVersion": 1, "executionId": first, "stage": "Charge", "action": "Card"})
    );
    assert_eq!(e["error"]["exceptionType"], "Step.THROTTLING");
    assert!(e["error"]["message"].as_str().unwrap().contains("scripted failure"));
    assert_eq!(e["input"], json!({"order": 0}));
    assert_eq!(e["attempts"]["attempts"], 1);
    assert_eq!(e["attempts"]["series"], 1);
    assert_eq!(e["attempts"]["actions"][0]["action"], "Card");
    for field in ["firstFailureAt", "lastFailureAt", "enteredAt", "updatedAt"] {
        assert!(e[field].is_string(), "{field}: {e}");
    }
    for field in ["redrivenTo", "redrivenAt", "resolvedAt"] {
        assert!(e[field].is_null(), "{field}: {e}");
    }

    // ---- dry run: a plan, nothing changed, nothing recorded ----
    let (st, plan) = s.post(&format!("{Q}/redrive"), json!({"type": "Step.THROTTLING", "dryRun": true})).await;
    assert_eq!(st, 200, "{plan}");
    assert_eq!((plan["matched"].as_u64(), plan["wouldRedrive"].as_u64(), plan["wouldSkip"].as_u64()), (Some(3), Some(3), Some(0)));
    assert_eq!(plan["parked"], 0);
    let items = plan["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|i| i["would"] == "redrive" && i["pipelineName"] == "orders" && i["stage"] == "Charge"), "{plan}");
    let (_, capped) = s.post(&format!("{Q}/redrive"), json!({"dryRun": true, "maxEntries": 2})).await;
    assert_eq!(capped["matched"], 2);
    let (_, wide) = s.post("/v1/dlq/redrive", json!({"queuePrefix": "retry-", "dryRun": true, "mode": "new-execution"})).await;
    assert_eq!(wide["wouldRedrive"], 4, "{wide}");
    assert_eq!(s.get(Q).await["depth"], 4);
    assert_eq!(s.get("/v1/dlq/redrives").await["runs"], json!([]));

    // ---- a real redrive (retry-stage): the action still fails, the entries come back ----
    let run = s.redrive(&format!("{Q}/redrive"), json!({"type": "Step.THROTTLING", "rate": "unlimited"})).await;
    let sum = &run["summary"];
    assert_eq!((sum["matched"].as_u64(), sum["redriven"].as_u64(), sum["skipped"].as_u64()), (Some(3), Some(3), Some(0)), "{run}");
    assert_eq!(sum["queues"]["retry-orders"]["redriven"], 3);
    assert_eq!(run["schedule"], Value::Null);
    assert_eq!(run["request"]["scope"], json!({"queue": "retry-orders"}));
    assert_eq!(run["request"]["exceptionType"], "Step.THROTTLING");
    let outcomes = sum["outcomes"].as_array().unwrap();
    assert!(outcomes.iter().all(|o| o["outcome"] == "redriven" && orders.contains(&o["executionId"].as_str().unwrap().to_string())));
    let back = s
        .wait_for(&format!("{Q}/entries?type=Step.THROTTLING"), "all three back with redriveCount 1", |v| {
            v["count"] == 3 && v["entries"].as_array().unwrap().iter().all(|e| e["redriveCount"] == 1)
        })
        .await;
    for e in back["entries"].as_array().unwrap() {
        assert_eq!(e["state"], "QUEUED");
        // retry-stage resubmits to the same execution: a second series of the action.
        assert_eq!(e["redrivenTo"], e["entryId"]);
        assert!(e["redrivenAt"].is_string());
        assert_eq!(e["attempts"]["series"], 2, "{e}");
    }
    let runs = s.get("/v1/dlq/redrives").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    assert_eq!(runs["runs"][0]["runId"], run["runId"]);

    // ---- loop protection: maxRedrives 1 makes them poison ----
    let (st, q) = s.call(Method::PUT, Q, Some(json!({"maxRedrives": 1}))).await;
    assert_eq!(st, 200, "{q}");
    assert_eq!((q["maxRedrives"].as_u64(), q["depth"].as_u64(), q["poison"].as_u64()), (Some(1), Some(4), Some(3)), "{q}");
    assert_eq!(s.get(&format!("{Q}/entries?poison=true")).await["count"], 3);
    assert_eq!(s.get(&format!("/v1/dlq/entries/{first}")).await["poison"], true);
    let (_, plan) = s.post(&format!("{Q}/redrive"), json!({"type": "Step.THROTTLING", "dryRun": true})).await;
    assert_eq!((plan["matched"].as_u64(), plan["parked"].as_u64()), (Some(0), Some(3)), "{plan}");
    let parked = s.redrive(&format!("{Q}/redrive"), json!({"type": "Step.THROTTLING"})).await;
    assert_eq!((parked["summary"]["parked"].as_u64(), parked["summary"]["redriven"].as_u64()), (Some(3), Some(0)), "{parked}");
    assert_eq!(s.get(Q).await["depth"], 4);
    // One poison entry without force: skipped, still there.
    let refused = s.redrive(&format!("{Q}/redrive"), json!({"entryId": first})).await;
    assert_eq!(refused["summary"]["skipped"], 1, "{refused}");
    assert_eq!(refused["summary"]["skippedByReason"]["poison"], 1, "{refused}");
    assert_eq!(s.get(&format!("/v1/dlq/entries/{first}")).await["redriveCount"], 1);
    // force is for one entry only.
    let (code, msg) = s.err(Method::POST, &format!("{Q}/redrive"), Some(json!({"force": true})), 400).await;
    assert_eq!(code, "ValidationException");
    assert!(msg.contains("force"), "{msg}");
    // entryId + force redrives it.
    let forced = s.redrive(&format!("{Q}/redrive"), json!({"entryId": first, "force": true})).await;
    assert_eq!(forced["summary"]["redriven"], 1, "{forced}");
    assert_eq!(forced["summary"]["outcomes"][0]["entryId"], first.as_str());
    s.wait_for(&format!("/v1/dlq/entries/{first}"), "back with redriveCount 2", |e| e["state"] == "QUEUED" && e["redriveCount"] == 2).await;

    // ---- new-execution mode: the billing entry is resubmitted to a new execution ----
    let redriven = s.redrive("/v1/dlq/redrive", json!({"queuePrefix": "retry-", "source": "billing", "mode": "new-execution"})).await;
    assert_eq!(redriven["summary"]["redriven"], 1, "{redriven}");
    assert_eq!(redriven["request"]["scope"], json!({"prefix": "retry-"}));
    assert_eq!(redriven["request"]["mode"], "new-execution");
    let new_id = redriven["summary"]["outcomes"][0]["executionId"].as_str().unwrap().to_string();
    assert_ne!(new_id, billing);
    let e = s
        .wait_for(&format!("/v1/dlq/entries/{billing}"), "back from the new execution", |e| {
            e["state"] == "QUEUED" && e["redriveCount"] == 1
        })
        .await;
    assert_eq!(e["source"]["executionId"], new_id.as_str());
    assert_eq!(e["redrivenTo"], new_id.as_str());
    assert_eq!(e["input"], json!({"invoice": 7}));
    s.wait_execution("billing", &new_id, "Failed").await;

    // Runs, newest first, paged.
    let runs = s.get("/v1/dlq/redrives").await["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 5);
    assert_eq!(runs[0]["runId"], redriven["runId"]);
    assert_eq!(runs[4]["runId"], run["runId"]);
    let mut seen = Vec::new();
    let mut path = "/v1/dlq/redrives?limit=2".to_string();
    loop {
        let page = s.get(&path).await;
        seen.extend(page["runs"].as_array().unwrap().iter().map(|r| r["runId"].clone()));
        match page["nextToken"].as_str() {
            Some(t) => path = format!("/v1/dlq/redrives?limit=2&nextToken={t}"),
            None => break,
        }
    }
    assert_eq!(seen, runs.iter().map(|r| r["runId"].clone()).collect::<Vec<_>>());
    assert_eq!(s.get("/v1/dlq/redrives?schedule=nightly").await["runs"], json!([]));

    // ---- purge ----
    let (st, v) = s.post(&format!("{Q}/purge"), json!({"type": "Step.THROTTLING", "olderThan": "1h"})).await;
    assert_eq!((st, v), (200, json!({"purged": 0})));
    let (st, v) = s.post(&format!("{Q}/purge"), json!({"type": "Step.THROTTLING", "poison": true})).await;
    assert_eq!((st, v), (200, json!({"purged": 3})));
    assert_eq!(s.get(Q).await["depth"], 1);
    let (st, v) = s.post(&format!("{Q}/purge"), json!({})).await;
    assert_eq!((st, v), (200, json!({"purged": 1})));
    let q = s.get(Q).await;
    assert_eq!((q["depth"].as_u64(), q["poison"].as_u64()), (Some(0), Some(0)));
    assert_eq!(q["oldestEnteredAt"], Value::Null);
    assert_eq!(q["oldestAgeSeconds"], Value::Null);
    let (code, _) = s.err(Method::GET, &format!("/v1/dlq/entries/{first}"), None, 404).await;
    assert_eq!(code, "DeadLetterEntryNotFoundException");
    let text = s.metrics().await;
    assert!(text.contains("\nredrive_dlq_depth{queue=\"retry-orders\"} 0\n"), "{text}");
    assert!(text.contains("\nredrive_dlq_oldest_entry_age_seconds{queue=\"retry-orders\"} 0.0\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_and_bad_requests() {
    let s = server().await;
    s.create_pipeline(always_failing("orders", "Step.THROTTLING")).await;
    let id = s.start("orders", json!({})).await;
    s.wait_execution("orders", &id, "Failed").await;

    // ---- 404s ----
    for (method, path, body) in [
        (Method::GET, "/v1/dlq/queues/nope".to_string(), None),
        (Method::GET, "/v1/dlq/queues/nope/entries".to_string(), None),
        (Method::POST, "/v1/dlq/queues/nope/purge".to_string(), Some(json!({}))),
        (Method::POST, "/v1/dlq/queues/nope/redrive".to_string(), Some(json!({}))),
        (Method::POST, "/v1/dlq/queues/nope/redrive".to_string(), Some(json!({"dryRun": true}))),
    ] {
        let (code, _) = s.err(method, &path, body, 404).await;
        assert_eq!(code, "DeadLetterQueueNotFoundException", "{path}");
    }
    let (code, _) = s.err(Method::GET, "/v1/dlq/entries/no-such-entry", None, 404).await;
    assert_eq!(code, "DeadLetterEntryNotFoundException");
    let (code, _) = s.err(Method::POST, &format!("{Q}/redrive"), Some(json!({"entryId": "no-such-entry"})), 404).await;
    assert_eq!(code, "DeadLetterEntryNotFoundException");
    let (code, _) = s.err(Method::GET, "/v1/dlq/redrives/no-such-run", None, 404).await;
    assert_eq!(code, "RedriveRunNotFoundException");

    // ---- 400s, each naming the parameter ----
    let bad: Vec<(Method, String, Option<Value>, &str)> = vec![
        (Method::GET, format!("{Q}/entries?olderThan=soon"), None, "olderThan"),
        (Method::GET, format!("{Q}/entries?state=GONE"), None, "QUEUED, REDRIVEN, RESOLVED, ALL"),
        (Method::GET, format!("{Q}/entries?poison=maybe"), None, "poison"),
        (Method::GET, format!("{Q}/entries?limit=0"), None, "limit"),
        (Method::GET, format!("{Q}/entries?nextToken=garbage"), None, "nextToken"),
        (Method::GET, format!("{Q}/entries?typo=1"), None, "typo"),
        (Method::GET, "/v1/dlq/queues?limit=5000".into(), None, "limit"),
        (Method::GET, "/v1/dlq/queues?prefix=bad%20prefix".into(), None, "prefix"),
        (Method::GET, "/v1/dlq/redrives?nextToken=x".into(), None, "nextToken"),
        (Method::POST, format!("{Q}/redrive"), Some(json!({"olderThan": "10 minutes"})), "olderThan"),
        (Method::POST, format!("{Q}/redrive"), Some(json!({"rate": "fast"})), "rate"),
        (Method::POST, format!("{Q}/redrive"), Some(json!({"rate": "0/s"})), "rate"),
        (
            Method::POST,
            format!("{Q}/redrive"),
            Some(json!({"mode": "sideways"})),
            "$.mode: unknown variant `sideways`, expected `retry-stage` or `new-execution`",
        ),
        (Method::POST, format!("{Q}/redrive"), Some(json!({"maxEntries": 0})), "maxEntries"),
        (Method::POST, format!("{Q}/redrive"), Some(json!({"dryRun": "yes"})), "dryRun"),
        (
            Method::POST,
            format!("{Q}/redrive"),
            Some(json!({"typo": 1})),
            "$.typo: unknown field `typo`, expected one of `queuePrefix`, `type`, `source`, `olderThan`",
        ),
        (Method::POST, format!("{Q}/redrive"), Some(json!({"queuePrefix": "retry-"})), "queuePrefix"),
        (Method::POST, format!("{Q}/redrive"), Some(json!([1])), "JSON object"),
        (Method::POST, "/v1/dlq/redrive".into(), Some(json!({})), "queuePrefix"),
        (Method::POST, "/v1/dlq/redrive".into(), Some(json!({"queuePrefix": "a b"})), "queuePrefix"),
        (Method::POST, format!("{Q}/purge"), Some(json!({"olderThan": "x"})), "olderThan"),
        (Method::POST, format!("{Q}/purge"), Some(json!({"poison": "true"})), "poison"),
        (
            Method::POST,
            format!("{Q}/purge"),
            Some(json!({"mode": "retry-stage"})),
            "unknown field `mode`, expected one of `type`, `source`, `olderThan`, `poison`",
        ),
        (Method::PUT, Q.into(), Some(json!({"maxRedrives": 0})), "maxRedrives"),
        (Method::PUT, Q.into(), Some(json!({"maxRedrives": 1001})), "maxRedrives"),
        (Method::PUT, Q.into(), Some(json!({"maxRedrives": -1})), "maxRedrives"),
        (Method::PUT, Q.into(), Some(json!({"maxRedrives": 2.5})), "maxRedrives"),
        (Method::PUT, Q.into(), Some(json!({"maxRedrives": "3"})), "maxRedrives"),
        (Method::PUT, Q.into(), Some(json!({})), "maxRedrives"),
        (Method::PUT, Q.into(), Some(json!({"maxRedrives": 2, "depth": 0})), "depth"),
    ];
    for (method, path, body, needle) in bad {
        let (code, msg) = s.err(method.clone(), &path, body.clone(), 400).await;
        assert_eq!(code, "ValidationException", "{method} {path} {body:?}");
        assert!(msg.contains(needle), "{method} {path} {body:?}: {msg:?} should mention {needle:?}");
    }
    // A malformed JSON body is a JSON 400 too.
    let r =
        s.client.post(format!("{}{Q}/redrive", s.url)).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "ValidationException");
    // None of that changed the queue.
    let q = s.get(Q).await;
    assert_eq!((q["depth"].as_u64(), q["maxRedrives"].as_u64()), (Some(1), Some(3)));
    assert_eq!(s.get("/v1/dlq/redrives").await["runs"], json!([]));

    // PUT creates a missing queue.
    let (st, q) = s.call(Method::PUT, "/v1/dlq/queues/fresh", Some(json!({"maxRedrives": 7}))).await;
    assert_eq!(st, 200, "{q}");
    assert_eq!((q["name"].as_str(), q["maxRedrives"].as_u64(), q["depth"].as_u64()), (Some("fresh"), Some(7), Some(0)));
    let names: Vec<Value> = s.get("/v1/dlq/queues?limit=1").await["queues"].as_array().unwrap().iter().map(|q| q["name"].clone()).collect();
    assert_eq!(names, vec![json!("fresh")]);
    let page2 = s.get("/v1/dlq/queues?limit=1&nextToken=fresh").await;
    assert_eq!(page2["queues"][0]["name"], "retry-orders");
}

/// A stage retry resubmission that succeeds resolves the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_redrive_resolves_the_entry() {
    let s = server().await;
    let flag = s.dir.path().join("fixed").display().to_string();
    s.create_pipeline(json!({
        "name": "flaky",
        "deadLetterQueue": "retry-orders",
        "stages": [
            {"name": "Build", "actions": [{
                "name": "Step",
                "command": ["sh", "-c", format!("test -e {flag}")],
                "retryPolicies": [{"exceptionType": ["Action.FAILED"], "maxAttempts": 0}]
            }]},
            {"name": "Ship", "actions": [{"name": "Done", "noop": {}}]}
        ]
    }))
    .await;
    let id = s.start("flaky", json!({"k": "v"})).await;
    s.wait_execution("flaky", &id, "Failed").await;
    let e = s.get(&format!("/v1/dlq/entries/{id}")).await;
    assert_eq!((e["state"].as_str(), e["error"]["exceptionType"].as_str()), (Some("QUEUED"), Some("Action.FAILED")), "{e}");
    assert_eq!(e["source"]["stage"], "Build");

    std::fs::write(&flag, "").unwrap();
    let run = s.redrive(&format!("{Q}/redrive"), json!({})).await;
    assert_eq!(run["summary"]["outcomes"][0]["executionId"], id.as_str(), "{run}");
    s.wait_execution("flaky", &id, "Succeeded").await;
    let e = s.wait_for(&format!("/v1/dlq/entries/{id}"), "RESOLVED", |e| e["state"] == "RESOLVED").await;
    assert_eq!(e["redriveCount"], 1);
    assert!(e["resolvedAt"].is_string(), "{e}");
    let q = s.get(Q).await;
    assert_eq!((q["depth"].as_u64(), q["redriven"].as_u64()), (Some(0), Some(0)), "{q}");
    assert_eq!(s.get(&format!("{Q}/entries?state=RESOLVED")).await["count"], 1);
    assert_eq!(s.get(&format!("{Q}/entries")).await["count"], 0);
    // A resolved entry is not purged, and cannot be redriven again.
    let (_, v) = s.post(&format!("{Q}/purge"), json!({})).await;
    assert_eq!(v, json!({"purged": 0}));
    let again = s.redrive(&format!("{Q}/redrive"), json!({"entryId": id})).await;
    assert_eq!(again["summary"]["skippedByReason"]["not-in-queue"], 1, "{again}");
}

/// `POST /v1/pipelines/{name}/dlq-entries/{id}/redrive` redrives one entry
/// now (what a `--spread` run asks of an entry's shard holder) and says why
/// not when it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_entry_is_redriven_at_once_through_its_pipelines_route() {
    let s = server().await;
    let flag = s.dir.path().join("fixed").display().to_string();
    s.create_pipeline(json!({
        "name": "flaky",
        "deadLetterQueue": "retry-orders",
        "stages": [{"name": "Build", "actions": [{
            "name": "Step",
            "command": ["sh", "-c", format!("test -e {flag}")],
            "retryPolicies": [{"exceptionType": ["Action.FAILED"], "maxAttempts": 0}]
        }]}]
    }))
    .await;
    let id = s.start("flaky", json!({})).await;
    s.wait_execution("flaky", &id, "Failed").await;
    let path = format!("/v1/pipelines/flaky/dlq-entries/{id}/redrive");

    let (code, message) = s.err(Method::POST, &format!("/v1/pipelines/other/dlq-entries/{id}/redrive"), Some(json!({})), 400).await;
    assert!(code == "ValidationException" && message.contains("came from flaky, not other"), "{code}: {message}");
    s.err(Method::POST, &path, Some(json!({"mode": "sideways"})), 400).await;
    let (st, v) = s.post("/v1/pipelines/flaky/dlq-entries/no-such-entry/redrive", json!({})).await;
    assert_eq!((st, v["outcome"].as_str(), v["skipped"]["code"].as_str()), (200, Some("skipped"), Some("not-found")), "{v}");
    let (st, v) = s.post(&path, json!({"queuePrefix": "billing-"})).await;
    assert_eq!((st, v["skipped"]["code"].as_str(), v["skipped"]["prefix"].as_str()), (200, Some("out-of-scope"), Some("billing-")), "{v}");
    assert_eq!(s.get(&format!("/v1/dlq/entries/{id}")).await["state"], "QUEUED", "a skip changes nothing");

    std::fs::write(&flag, "").unwrap();
    let (st, v) = s.post(&path, json!({"queuePrefix": "retry-"})).await;
    assert_eq!((st, v["outcome"].as_str(), v["executionId"].as_str()), (200, Some("redriven"), Some(id.as_str())), "{v}");
    s.wait_execution("flaky", &id, "Succeeded").await;
    let (st, v) = s.post(&path, json!({})).await;
    assert_eq!((st, v["skipped"]["code"].as_str()), (200, Some("not-in-queue")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("not in its queue"), "{v}");
}

/// Scheduled redrives are listed with their next due time and last run, and
/// their runs are recorded under the schedule's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_and_their_runs() {
    let schedule = RedriveSchedule {
        name: "every-second".into(),
        every_ms: 1000,
        request: RedriveRequest {
            scope: QueueScope::Prefix("retry-".into()),
            entry_id: None,
            force: false,
            exception_type: None,
            pipeline_name: None,
            older_than_ms: None,
            max_entries: None,
            rate: DEFAULT_RATE,
            mode: RedriveMode::RetryStage,
            input_patch: None,
        },
    };
    let s = server_with(vec![schedule]).await;
    let v = s.get("/v1/dlq/schedules").await;
    let sched = &v["schedules"][0];
    assert_eq!(sched["name"], "every-second");
    assert_eq!(sched["every"], "1s");
    assert_eq!(sched["everyMs"], 1000);
    assert_eq!(sched["queuePrefix"], "retry-");
    assert_eq!(sched["request"]["scope"], json!({"prefix": "retry-"}));
    assert!(sched["nextDueAt"].is_string());
    // Not due while the (virtual) clock stands still.
    assert!(v["schedules"][0]["lastRun"].is_null(), "{v}");
    assert!(s.get("/v1/dlq/redrives?schedule=every-second").await["runs"].as_array().unwrap().is_empty());

    // A virtual second at a time until the schedule has run.
    let done = |v: &Value| v["schedules"][0]["lastRun"]["status"].as_str().is_some_and(|st| st != "RUNNING");
    let mut v = s.get("/v1/dlq/schedules").await;
    for _ in 0..400 {
        if done(&v) {
            break;
        }
        s.clock.advance(1000);
        tokio::time::sleep(Duration::from_millis(25)).await;
        v = s.get("/v1/dlq/schedules").await;
    }
    assert!(done(&v), "the schedule never ran: {v}");
    let last = &v["schedules"][0]["lastRun"];
    assert_eq!(last["schedule"], "every-second");
    assert_eq!(last["status"], "SUCCEEDED", "{last}");
    let runs = s.get("/v1/dlq/redrives?schedule=every-second").await;
    assert!(!runs["runs"].as_array().unwrap().is_empty());
    assert!(runs["runs"].as_array().unwrap().iter().all(|r| r["schedule"] == "every-second"));
    // Each run is audited under the schedule's own principal.
    let audit = s
        .wait_for("/v1/audit", "the scheduled run's audit record", |v| {
            v["entries"].as_array().is_some_and(|e| e.iter().any(|e| e["principal"] == "schedule:every-second"))
        })
        .await;
    let entry = audit["entries"].as_array().unwrap().iter().find(|e| e["principal"] == "schedule:every-second").unwrap().clone();
    assert_eq!(
        (entry["action"].as_str(), entry["target"].as_str(), entry["status"].as_u64()),
        (Some("scheduled redrive"), Some("retry-*"), Some(200)),
        "{entry}"
    );
    assert_eq!(entry["request"]["run"], last["runId"], "{entry}");
}
