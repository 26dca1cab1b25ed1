//! `redrive execution list/get --function` through the real binary: the store is
//! filled by an engine driven in this test process (as an SDK process would: one
//! execution succeeds after a retried step, one fails, one is suspended on a
//! one-hour retry, one sleeps), the engine is shut down, and `redrive server` on
//! the same file serves them (it skips their resumption: the functions are not
//! registered with it).

mod common;
use common::*;
use redrive_core::exception::{ExceptionType, Failure};
use redrive_core::function::FunctionState;
use redrive_core::policy::{RetryPolicy, RetryPolicySpec};
use redrive_engine::function::{DurableFunction, FnContext, FnFuture, StepRetry};
use redrive_engine::{Clock, Driver, DriverConfig, ManualClock, SystemClock};
use redrive_store::{SqliteOptions, SqliteStore, Store};
use serde_json::{Value, json};
use std::collections::HashMap;
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

/// reserve; charge (a service fault retried at once, or with `wait` throttled and
/// retried in an hour); with `fail`, ship fails for good; with `sleep`, a one-hour
/// durable sleep at the end.
fn orders() -> Arc<dyn DurableFunction> {
    let f = |ctx: FnContext, input: String| -> FnFuture {
        Box::pin(async move {
            let input: Value = serde_json::from_str(&input).unwrap();
            let once = StepRetry { policies: vec![policy(&["Step.SERVICE_FAULT"], 0.0, 3.0)], ..StepRetry::default() };
            let hourly = StepRetry { policies: vec![policy(&["Step.THROTTLING"], 3600.0, 5.0)], ..StepRetry::default() };
            let never = StepRetry { policies: vec![RetryPolicy::none()], ..StepRetry::default() };
            ctx.step("reserve", &once, || async { Ok(json!({"sku": "book"})) }).await?;
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
            if input["sleep"] == true {
                ctx.sleep("cool-down", Duration::from_secs(3600)).await;
            }
            Ok(json!({"charge": charge}))
        })
    };
    Arc::new(f)
}

/// Runs the executions on `db` in this process and stops the engine; returns
/// their ids by name.
fn populate(db: &std::path::Path) -> HashMap<&'static str, String> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let store = Arc::new(SqliteStore::open(db, SqliteOptions::default()).unwrap());
        // Virtual time from now: the server that reads this store later runs on
        // the real clock, so one-hour waits stay an hour ahead of it.
        let clock = Arc::new(ManualClock::new(SystemClock.now()));
        let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
        handle.register_function("orders", orders()).await.unwrap();
        let mut ids = HashMap::new();
        for (name, input) in
            [("ok-1", json!({})), ("bad-1", json!({"fail": true})), ("wait-1", json!({"wait": true})), ("nap-1", json!({"sleep": true}))]
        {
            let (id, _) = handle.start_function("orders", name, input.to_string()).await.unwrap();
            if input.as_object().unwrap().is_empty() || input["fail"] == true {
                handle.wait(&id).await.unwrap();
            } else {
                // Suspended: wait until the history says what it waits for.
                let deadline = Instant::now() + Duration::from_secs(20);
                loop {
                    let rec = store.get_execution(&id).await.unwrap().unwrap();
                    let state: FunctionState = serde_json::from_str(&rec.state_json).unwrap();
                    if state.waiting_on().is_some() {
                        break;
                    }
                    assert!(Instant::now() < deadline, "never suspended: {}", rec.state_json);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            ids.insert(name, id);
            // Distinct start times, so the newest-first order is known.
            clock.advance(3);
        }
        handle.shutdown().await;
        join.await.unwrap().unwrap();
        drop(store);
        ids
    })
}

#[test]
fn execution_list_and_get_show_function_executions_and_their_steps() {
    let sb = Sandbox::new();
    let ids = populate(&sb.db());
    let server = start_server(server_command(&sb, "127.0.0.1:0").env_remove("REDRIVE_SERVER"));
    let url = server.url.as_str();

    // The listing: newest first, with status, steps and when suspended ones wake.
    let r = cli(url, &["execution", "list", "orders", "--function"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("EXECUTION") && lines[0].contains("WAITING UNTIL"), "{}", r.stdout);
    assert_eq!(lines.len(), 5, "{}", r.stdout);
    let row = |name: &str| *lines.iter().find(|l| l.contains(&format!(" {name} "))).unwrap_or_else(|| panic!("{name}:\n{}", r.stdout));
    assert!(lines[1].contains("nap-1") && lines[4].contains("ok-1"), "{}", r.stdout);
    assert!(row("ok-1").contains(&ids["ok-1"]) && row("ok-1").contains("Succeeded"), "{}", row("ok-1"));
    assert!(row("bad-1").contains("Failed"), "{}", row("bad-1"));
    let wait = row("wait-1");
    assert!(wait.contains("InProgress") && wait.trim_end().ends_with('Z'), "{wait}");
    let json = cli(url, &["execution", "list", "orders", "--function", "--output", "json"]).ok().json();
    let names: Vec<&str> = json["executions"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["nap-1", "wait-1", "bad-1", "ok-1"]);
    assert_eq!(json["executions"][1]["steps"], 2);
    assert!(json["executions"][1]["waitingUntil"].is_string());
    // Pages are followed; --max-items stops early.
    let two =
        cli(url, &["execution", "list", "orders", "--function", "--page-size", "1", "--max-items", "2", "--output", "json"]).ok().json();
    assert_eq!(two["executions"].as_array().unwrap().len(), 2, "{two}");
    let all = cli(url, &["execution", "list", "orders", "--function", "--page-size", "1", "--output", "json"]).ok().json();
    assert_eq!(all["executions"].as_array().unwrap().len(), 4, "{all}");

    // One execution: key: value lines, then its steps.
    let r = cli(url, &["execution", "get", "orders", &ids["ok-1"], "--function"]).ok();
    assert!(r.stdout.starts_with(&format!("function execution {} of orders\n", ids["ok-1"])), "{}", r.stdout);
    assert!(r.stdout.lines().any(|l| l.starts_with("status:") && l.ends_with(" Succeeded")), "{}", r.stdout);
    assert!(r.stdout.lines().any(|l| l.starts_with("result:") && l.contains(r#"{"charge":"ch_1"}"#)), "{}", r.stdout);
    let charge = r.stdout.lines().find(|l| l.starts_with("charge")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(charge.contains("Succeeded") && charge.contains(" 2 "), "{charge}");
    assert!(r.stdout.contains("3 step attempts recorded"), "{}", r.stdout);

    let r = cli(url, &["execution", "get", "orders", &ids["bad-1"], "--function"]).ok();
    assert!(r.stdout.lines().any(|l| l.starts_with("error:") && l.ends_with("Action.FAILED: no courier")), "{}", r.stdout);
    let ship = r.stdout.lines().find(|l| l.starts_with("ship")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(ship.contains("Failed") && ship.contains("Action.FAILED: no courier"), "{ship}");

    let r = cli(url, &["execution", "get", "orders", &ids["wait-1"], "--function"]).ok();
    let waiting = r.stdout.lines().find(|l| l.starts_with("waiting until:")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(waiting.ends_with("(retry of step charge)"), "{waiting}");
    let charge = r.stdout.lines().find(|l| l.starts_with("charge")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(charge.contains("WaitingRetry") && charge.contains("Step.THROTTLING: the gateway says slow down"), "{charge}");

    let r = cli(url, &["execution", "get", "orders", &ids["nap-1"], "--function"]).ok();
    assert!(r.stdout.lines().any(|l| l.starts_with("waiting until:") && l.ends_with("(sleep cool-down)")), "{}", r.stdout);
    let nap = r.stdout.lines().find(|l| l.starts_with("cool-down")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(nap.contains("sleep") && nap.contains("Sleeping") && nap.contains(" - "), "{nap}");

    // --output json is the server's body.
    let v = cli(url, &["execution", "get", "orders", &ids["wait-1"], "--function", "--output", "json"]).ok().json();
    assert_eq!(v["steps"][1]["status"], "WaitingRetry");
    assert_eq!(v["waitingUntil"], v["steps"][1]["dueAt"]);
    assert_eq!(v["input"], json!({"wait": true}));
    assert_eq!(v["attempts"].as_array().unwrap().len(), 2);

    // Errors and empty listings.
    let r = cli(url, &["execution", "get", "orders", "00000000-0000-4000-8000-000000000000", "--function"]).code(2);
    assert!(r.stderr.contains("error: PipelineExecutionNotFoundException: "), "{}", r.stderr);
    let r = cli(url, &["execution", "list", "nope", "--function"]).ok();
    assert_eq!(r.stdout, "no executions of function nope\n");
    // Without --function the name is a pipeline's, and there is none.
    let r = cli(url, &["execution", "list", "orders"]).code(2);
    assert!(r.stderr.contains("PipelineNotFoundException"), "{}", r.stderr);
}
