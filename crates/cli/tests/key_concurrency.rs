//! Per-key concurrency through the binary and real HTTP (docs/retry-control.md):
//! an action with `concurrency: {key: "$.input.tenant", max: 2}` against a local
//! service that holds every request a while and records when each was in
//! flight. Tenant A's 20 executions never have more than 2 requests in flight
//! at the service, while tenant B's executions, started after all of A's, go
//! through at once instead of queueing behind A. A waiting attempt is shown as
//! waiting (native API, `redrive execution get`, `/metrics`), and every
//! execution's action runs exactly once. A drain (SIGTERM) releases waiting
//! attempts: after a restart they run as the same attempt, still one at a time.

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long the service holds each request (the first test).
const HOLD: Duration = Duration::from_millis(300);
const TENANT_A: usize = 20;
const TENANT_B: usize = 4;
const MAX: usize = 2;

/// Most requests of `ids` in flight at once at the service.
fn most_in_flight(seen: &[Seen], ids: &[String]) -> usize {
    let mut edges: Vec<(Duration, i32)> = Vec::new();
    for s in seen.iter().filter(|s| ids.iter().any(|id| s.key.starts_with(&format!("{id}/")))) {
        edges.push((s.entered, 1));
        edges.push((s.left, -1));
    }
    edges.sort(); // at the same instant a leave (-1) sorts before an entry
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

/// Pipeline `tenants`: one http action calling `service`, `max` per tenant.
fn create(addr: &str, service: &HttpService, max: usize) {
    let definition = json!({
        "name": "tenants",
        "executionMode": "PARALLEL",
        "maxConcurrentExecutions": 1000,
        "stages": [{"name": "S", "actions": [{
            "name": "Call",
            "http": {"method": "POST", "url": format!("http://{}/work", service.addr)},
            "concurrency": {"key": "$.input.tenant", "max": max}
        }]}]
    });
    let (status, v) = http(addr, "POST", "/v1/pipelines", Some(definition));
    assert_eq!(status, 201, "{v}");
}

fn waiting_of(addr: &str, id: &str) -> Option<Value> {
    let v = execution(addr, id);
    let action = &v["stages"][0]["actions"][0];
    (action["status"] == "Running" && action["waiting"].is_object()).then(|| action["waiting"].clone())
}

fn wait_succeeded(addr: &str, ids: &[String]) {
    for id in ids {
        let deadline = Instant::now() + Duration::from_secs(60);
        while execution(addr, id)["status"] != "Succeeded" {
            assert!(Instant::now() < deadline, "execution {id} did not succeed");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn start(addr: &str, tenant: &str) -> String {
    let (status, v) = http(addr, "POST", "/v1/pipelines/tenants/executions", Some(json!({"input": {"tenant": tenant}})));
    assert_eq!(status, 201, "{v}");
    v["pipelineExecutionId"].as_str().unwrap().to_string()
}

fn execution(addr: &str, id: &str) -> Value {
    let (status, v) = http(addr, "GET", &format!("/v1/pipelines/tenants/executions/{id}"), None);
    assert_eq!(status, 200, "{v}");
    v
}

#[test]
fn one_tenant_never_exceeds_its_limit_and_another_is_not_held_behind_it() {
    let service = HttpService::start(HOLD, false);
    let sb = Sandbox::new();
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    create(&server.addr, &service, MAX);

    let a: Vec<String> = (0..TENANT_A).map(|_| start(&server.addr, "acme")).collect();
    let b: Vec<String> = (0..TENANT_B).map(|_| start(&server.addr, "globex")).collect();

    // The last of A's attempts waits for a slot of "acme", and says so.
    let last = a.last().unwrap();
    let waiting = eventually("an attempt of tenant A shows it waits for its key", || waiting_of(&server.addr, last));
    assert_eq!(
        (waiting["concurrencyKey"].as_str(), waiting["running"].as_u64(), waiting["max"].as_u64()),
        (Some("acme"), Some(2), Some(2)),
        "{waiting}"
    );
    assert!(waiting["position"].as_u64().unwrap() >= 1, "{waiting}");
    let shown = cli(&server.url, &["execution", "get", "tenants", last]).ok().stdout;
    assert!(shown.contains("waiting for key acme: 2/2 running"), "{shown}");
    let (_, metrics) = http_text(&server.addr, "GET", "/metrics", None);
    let gauge = metrics.lines().find(|l| l.starts_with("redrive_attempts_waiting_for_key ")).expect("the gauge is exported");
    let count: u64 = gauge.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(count >= 1, "{gauge}");

    wait_succeeded(&server.addr, &a);
    wait_succeeded(&server.addr, &b);
    let seen = service.seen();
    assert_eq!(seen.len(), TENANT_A + TENANT_B, "each execution's action ran exactly once (nothing lost or doubled)");
    let a_most = most_in_flight(&seen, &a);
    let b_most = most_in_flight(&seen, &b);
    eprintln!("most in flight: tenant A {a_most}, tenant B {b_most}");
    assert_eq!(a_most, MAX, "tenant A used its {MAX} slots and never more");
    assert!(b_most <= MAX, "tenant B: {b_most} in flight");

    // B started after all of A, yet finished while A still queued.
    let of = |ids: &[String]| -> Vec<Seen> {
        seen.iter().filter(|s| ids.iter().any(|id| s.key.starts_with(&format!("{id}/")))).cloned().collect()
    };
    let b_done = of(&b).iter().map(|s| s.left).max().unwrap();
    let a_last_entered = of(&a).iter().map(|s| s.entered).max().unwrap();
    assert!(b_done < a_last_entered, "tenant B finished at {b_done:?}, after tenant A's last request began ({a_last_entered:?})");

    // Nothing waits any more; the waits took no attempt numbers.
    let v = execution(&server.addr, last);
    let action = &v["stages"][0]["actions"][0];
    assert_eq!((action["attempt"].as_u64(), action.get("waiting")), (Some(1), None), "{action}");
}

#[test]
fn a_drain_releases_waiting_attempts_and_after_a_restart_they_run_as_the_same_attempt() {
    let service = HttpService::start(Duration::from_secs(1), false);
    let sb = Sandbox::new();
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    create(&server.addr, &service, 1);
    let ids: Vec<String> = (0..4).map(|_| start(&server.addr, "acme")).collect();
    eventually("the last execution waits for its key", || waiting_of(&server.addr, ids.last().unwrap()));

    // SIGTERM: the running attempt finishes within the grace; the waiting ones are released.
    let mut server = server;
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let status = server.child.wait().unwrap();
    assert!(status.success(), "a drained server exits cleanly: {status}");
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    wait_succeeded(&server.addr, &ids);

    let seen = service.seen();
    assert_eq!(seen.len(), ids.len(), "each action ran once: released attempts were not failed and retried");
    assert_eq!(most_in_flight(&seen, &ids), 1, "one at a time before, across and after the restart");
    for id in &ids {
        let v = execution(&server.addr, id);
        let action = &v["stages"][0]["actions"][0];
        assert_eq!((action["attempt"].as_u64(), action["totalAttempts"].as_u64()), (Some(1), Some(1)), "{action}");
    }
}

#[test]
fn after_a_kill_9_the_attempts_that_were_waiting_run_as_the_same_attempt() {
    let service = HttpService::start(Duration::from_secs(1), false);
    let sb = Sandbox::new();
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    create(&server.addr, &service, 1);
    let ids: Vec<String> = (0..4).map(|_| start(&server.addr, "acme")).collect();
    eventually("the last execution waits for its key", || waiting_of(&server.addr, ids.last().unwrap()));

    let mut server = server;
    server.child.kill().unwrap(); // SIGKILL: no drain
    server.child.wait().unwrap();
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    wait_succeeded(&server.addr, &ids);

    // At most one attempt was in flight at the kill (max 1): it is recorded as
    // lost and retried. Those that waited never ran, and run as attempt 1.
    let total: Vec<u64> =
        ids.iter().map(|id| execution(&server.addr, id)["stages"][0]["actions"][0]["totalAttempts"].as_u64().unwrap()).collect();
    assert!(total.iter().filter(|&&n| n == 1).count() >= ids.len() - 1, "only the one in flight used a second attempt: {total:?}");
    assert!(total.iter().all(|&n| n <= 2), "{total:?}");
    // (The request in flight at the kill is still held by the service when the
    // new server starts, so "one at a time" does not hold across a kill -9.)
    let attempts = total.iter().sum::<u64>();
    eventually("each attempt reached the service once", || (service.seen().len() as u64 == attempts).then_some(()));
}
