//! Dependencies through the binary and real HTTP: a local service that fails
//! with 503 for a while, counted at the service.
//!
//! - A retry budget (ratio 0.1) keeps the retries that reach the service during
//!   the outage within `max(0.1 × first attempts, minRetriesPerSecond × window)`,
//!   and every execution still succeeds after recovery (deferred, not dropped).
//! - A circuit breaker opens after its threshold of failures (no request reaches
//!   the service during the cool-down), stays open across a restart of the
//!   server, lets one probe through and closes.

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn pipeline(name: &str, service: &HttpService, dependency: Value) -> Value {
    json!({
        "name": name,
        "executionMode": "PARALLEL",
        "maxConcurrentExecutions": 1000,
        "dependencies": [dependency],
        "stages": [{"name": "S", "actions": [{
            "name": "Call",
            "http": {"method": "POST", "url": format!("http://{}/work", service.addr)},
            "dependency": "svc",
            "retryPolicies": [{"exceptionType": ["Step.SERVICE_FAULT"], "intervalSeconds": 0.2, "backoffRate": 1, "maxAttempts": 20, "jitter": "NONE"}]
        }]}]
    })
}

fn create(addr: &str, definition: Value) {
    let (status, v) = http(addr, "POST", "/v1/pipelines", Some(definition));
    assert_eq!(status, 201, "{v}");
}

fn start(addr: &str, pipeline: &str) -> String {
    let (status, v) = http(addr, "POST", &format!("/v1/pipelines/{pipeline}/executions"), Some(json!({})));
    assert_eq!(status, 201, "{v}");
    v["pipelineExecutionId"].as_str().unwrap().to_string()
}

fn execution(addr: &str, pipeline: &str, id: &str) -> Value {
    let (status, v) = http(addr, "GET", &format!("/v1/pipelines/{pipeline}/executions/{id}"), None);
    assert_eq!(status, 200, "{v}");
    v
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn show(server: &str) -> Value {
    cli(server, &["dependency", "show", "svc", "--output", "json"]).ok().json()
}

const OUTAGE: Duration = Duration::from_secs(3);
const EXECUTIONS: usize = 200;
/// Threads starting the executions (`EXECUTIONS` is a multiple of it).
const STARTERS: usize = 8;
const WINDOW_SECONDS: u64 = 4;
const MIN_RETRIES_PER_SECOND: f64 = 15.0;
const RATIO: f64 = 0.1;

#[test]
fn a_retry_budget_bounds_retries_during_an_outage_and_every_execution_succeeds_after() {
    let service = HttpService::start(Duration::ZERO, true);
    let sb = Sandbox::new();
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    let dependency = json!({"name": "svc", "retryBudget": {"ratio": RATIO, "minRetriesPerSecond": MIN_RETRIES_PER_SECOND, "window": format!("{WINDOW_SECONDS}s")}});
    create(&server.addr, pipeline("budgeted", &service, dependency));
    // Started from a few threads at once, so that a loaded machine still gets
    // every first attempt in before the outage ends.
    let ids: Vec<String> = std::thread::scope(|scope| {
        let starters: Vec<_> = (0..STARTERS)
            .map(|_| scope.spawn(|| (0..EXECUTIONS / STARTERS).map(|_| start(&server.addr, "budgeted")).collect::<Vec<_>>()))
            .collect();
        starters.into_iter().flat_map(|s| s.join().unwrap()).collect()
    });
    assert_eq!(ids.len(), EXECUTIONS);
    let started_by = service.started.elapsed();
    assert!(started_by < OUTAGE, "the starts took {started_by:?}: too slow for this test");
    let remaining = OUTAGE.saturating_sub(service.started.elapsed());
    std::thread::sleep(remaining);
    service.set_failing(false);
    let outage_end = service.started.elapsed();

    // While retries are held, the state says so.
    let during = show(&server.url);
    assert_eq!(during["retryBudget"]["ratio"], RATIO, "{during}");

    wait_until("every execution succeeded", Duration::from_secs(60), || {
        service.seen().iter().filter(|s| s.status == 200).count() >= EXECUTIONS
    });
    for id in &ids {
        wait_until("the execution is recorded as succeeded", Duration::from_secs(10), || {
            execution(&server.addr, "budgeted", id)["status"] == "Succeeded"
        });
    }

    // Count at the service: the first request per execution is its first
    // attempt, every later one a retry.
    let seen = service.seen();
    let mut keys = std::collections::HashSet::new();
    let (mut firsts, mut retries_during_outage) = (0u64, 0u64);
    for s in seen.iter().filter(|s| s.entered < outage_end) {
        if keys.insert(s.key.clone()) {
            firsts += 1;
        } else {
            retries_during_outage += 1;
        }
    }
    assert_eq!(firsts as usize, EXECUTIONS, "every first attempt went through at once (first attempts are not budgeted)");
    // The outage spans at most WINDOW_SECONDS one-second buckets, so every
    // retry admitted during it was admitted within one window.
    assert!(OUTAGE.as_secs() < WINDOW_SECONDS);
    let bound = (RATIO * firsts as f64).max(MIN_RETRIES_PER_SECOND * WINDOW_SECONDS as f64);
    eprintln!("first attempts {firsts}, retries during the outage {retries_during_outage}, bound {bound}");
    assert!(retries_during_outage > 0, "retries were attempted during the outage");
    assert!(
        retries_during_outage as f64 <= bound,
        "{retries_during_outage} retries reached the service during the outage; the budget allows {bound} (without it, ~{})",
        EXECUTIONS as u64 * OUTAGE.as_millis() as u64 / 200
    );
    assert_eq!(keys.len(), EXECUTIONS);
    assert_eq!(seen.iter().filter(|s| s.status == 200).count(), EXECUTIONS, "each execution succeeded exactly once (nothing doubled)");

    // Deferrals are in the ledger, with the attempt number unchanged.
    let (_, ledger) = http(&server.addr, "GET", "/v1/pipelines/budgeted/action-executions?limit=1000", None);
    let rows = ledger["actionExecutions"].as_array().unwrap();
    let deferred: Vec<&Value> = rows.iter().filter(|r| r["status"] == "DEFERRED").collect();
    assert!(!deferred.is_empty(), "some retries were deferred by the budget");
    assert_eq!(deferred[0]["decision"]["deferred"]["reason"]["kind"], "budget", "{}", deferred[0]);
    let list = cli(&server.url, &["dependency", "list"]).ok();
    assert!(list.stdout.contains("svc") && list.stdout.contains("BUDGET USED"), "{}", list.stdout);
}

#[test]
fn a_circuit_breaker_opens_holds_attempts_through_a_restart_then_probes_and_closes() {
    let service = HttpService::start(Duration::ZERO, true);
    let sb = Sandbox::new();
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    let dependency = json!({"name": "svc", "circuitBreaker": {"failureThreshold": 3, "coolDown": "4s", "halfOpenProbes": 1}});
    create(&server.addr, pipeline("guarded", &service, dependency));
    let id = start(&server.addr, "guarded");

    wait_until("the breaker opened", Duration::from_secs(20), || show(&server.url)["breaker"]["state"] == "open");
    // The retry after the third failure comes due (0.2 s later) and is held.
    wait_until("the breaker holds the retry", Duration::from_secs(5), || show(&server.url)["attemptsHeld"] == 1);
    let opened = service.seen();
    assert_eq!(opened.len(), 3, "exactly the threshold of failures reached the service: {opened:?}");
    let open = show(&server.url);
    assert_eq!(open["attemptsDeferred"], 1, "{open}");
    let action = &execution(&server.addr, "guarded", &id)["stages"][0]["actions"][0];
    assert_eq!(action["held"]["reason"], "breaker-open", "{action}");
    assert_eq!(action["attempt"], 3, "the held attempt keeps its number (4 runs when the hold ends): {action}");
    let state = cli(&server.url, &["state", "guarded"]).ok();
    assert!(state.stdout.contains("held by dependency svc: breaker-open"), "{}", state.stdout);

    // Restart while open: the breaker is still open, opened at the same time.
    std::thread::sleep(Duration::from_millis(500)); // its state is written after the batch that opened it
    server.kill9();
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    let after = show(&server.url);
    assert_eq!(after["breaker"]["state"], "open", "{after}");
    assert_eq!(after["breaker"]["openedAt"], open["breaker"]["openedAt"], "{after}");
    assert_eq!(service.seen().len(), 3, "nothing reached the service during the cool-down");

    service.set_failing(false);
    wait_until("the execution succeeded", Duration::from_secs(30), || execution(&server.addr, "guarded", &id)["status"] == "Succeeded");
    let seen = service.seen();
    assert_eq!(seen.len(), 4, "one probe, then closed: {seen:?}");
    let cool_down = seen[3].entered - seen[2].entered;
    assert!(cool_down >= Duration::from_secs(4), "the probe came {cool_down:?} after the failure that opened the breaker");
    wait_until("the breaker closed", Duration::from_secs(10), || show(&server.url)["breaker"]["state"] == "closed");
    let shown = cli(&server.url, &["dependency", "show", "svc"]).ok();
    assert!(shown.stdout.contains("breaker:         closed"), "{}", shown.stdout);
}
