//! Several `redrive server --cluster-mode standby`s on one PostgreSQL database:
//! any of them accepts any call; the leader drives every execution; when it dies (kill -9) or stalls
//! past its lease (SIGSTOP), a follower takes over, finishes the work, and the
//! old leader can never commit again (fencing).

mod common;
mod pg;
use common::*;
use pg::FreshDatabase;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The lease the tests run with (short, so that a stalled leader is replaced fast).
const LEASE_SECONDS: &str = "2";

fn server(db: &FreshDatabase) -> ServerProcess {
    start_server(bin().args([
        "server",
        "--cluster-mode",
        "standby",
        "--listen",
        "127.0.0.1:0",
        "--grace-seconds",
        "1",
        "--lease-seconds",
        LEASE_SECONDS,
        "--db",
        &db.url,
    ]))
}

fn cluster(addr: &str) -> Value {
    let (status, v) = http(addr, "GET", "/v1/cluster", None);
    assert_eq!(status, 200, "{v}");
    v
}

fn role_of(status: &Value, pid: u32) -> String {
    status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["pid"] == pid)
        .map(|m| m["role"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

fn status_of(addr: &str, pipeline: &str, id: &str) -> String {
    let (_, v) = http(addr, "GET", &format!("/v1/pipelines/{pipeline}/executions/{id}"), None);
    v["status"].as_str().unwrap_or_default().to_string()
}

fn wait_all(addr: &str, pipeline: &str, ids: &[String], want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    for id in ids {
        while status_of(addr, pipeline, id) != want {
            assert!(Instant::now() < deadline, "execution {id} never reached {want} (last {})", status_of(addr, pipeline, id));
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits until the process `pid` holds the store's engine lease; how long that took.
fn wait_for_takeover(db: &FreshDatabase, pid: u32, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let holder = db.query("SELECT member FROM engine_lock WHERE id = 1");
        if holder.ends_with(&format!("-{pid}")) {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "process {pid} never took the lease over (holder: {holder:?})");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn either_server_accepts_any_call_and_the_cluster_shows_who_leads() {
    let db = FreshDatabase::new("two");
    let a = server(&db);
    let b = server(&db);
    assert!(b.banner.contains("following"), "the second process follows: {}", b.banner);
    let definition = json!({"name": "p", "executionMode": "PARALLEL", "stages": [{"name": "S", "actions": [
        {"name": "A", "noop": {"failFirst": 1, "failWith": "Step.SERVICE_FAULT"},
         "retryPolicies": [{"exceptionType": ["Step.SERVICE_FAULT"], "intervalSeconds": 0, "maxAttempts": 3}]}]}]});
    // Created through the follower, started through both.
    assert_eq!(http(&b.addr, "POST", "/v1/pipelines", Some(definition)).0, 201);
    let ids: Vec<String> = (0..20).map(|i| start_execution(if i % 2 == 0 { &a.addr } else { &b.addr }, "p")).collect();
    wait_all(&b.addr, "p", &ids, "Succeeded", Duration::from_secs(30));
    assert_eq!(db.query("SELECT count(*) FROM ledger"), "40", "each execution: one failure, one success");

    for addr in [&a.addr, &b.addr] {
        let status = cluster(addr);
        assert_eq!(status["backend"], "postgres", "{status}");
        assert_eq!(role_of(&status, a.child.id()), "leader", "{status}");
        assert_eq!(role_of(&status, b.child.id()), "follower", "{status}");
        assert!(status["lease"]["fencingToken"].as_i64().unwrap() >= 1, "{status}");
    }
    // The CLI shows the same.
    let shown = cli(&b.url, &["cluster", "status"]).ok();
    assert!(shown.stdout.contains("leader") && shown.stdout.contains("follower"), "{}", shown.stdout);
}

#[test]
fn kill_9_of_the_leader_hands_its_work_to_the_follower() {
    let db = FreshDatabase::new("kill");
    let sb = Sandbox::new();
    let log = sb.path("effects.log");
    let hold = sb.path("hold");
    std::fs::write(&hold, "").unwrap();
    let a = server(&db);
    let b = server(&db);
    let definition = json!({"name": "p", "executionMode": "PARALLEL", "stages": [
        {"name": "One", "actions": [{"name": "First", "command": ["sh", "-c", format!("echo \"$REDRIVE_EXECUTION_ID First\" >> {}", log.display())]}]},
        {"name": "Two", "actions": [{"name": "Held", "command": ["sh", "-c", format!("echo \"$REDRIVE_EXECUTION_ID Held\" >> {}; while [ -e {} ]; do sleep 0.01; done", log.display(), hold.display())]}]}
    ]});
    assert_eq!(http(&b.addr, "POST", "/v1/pipelines", Some(definition)).0, 201);
    let ids: Vec<String> = (0..10).map(|_| start_execution(&b.addr, "p")).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&log).unwrap_or_default().matches("Held").count() < ids.len() {
        assert!(Instant::now() < deadline, "not every execution reached Held");
        std::thread::sleep(Duration::from_millis(10));
    }
    let b_pid = b.child.id();
    a.kill9();
    let took = wait_for_takeover(&db, b_pid, Duration::from_secs(10));
    assert!(took < Duration::from_secs(5), "a dead leader is replaced within a heartbeat or two, took {took:?}");
    std::fs::remove_file(&hold).unwrap();
    wait_all(&b.addr, "p", &ids, "Succeeded", Duration::from_secs(30));
    let effects = std::fs::read_to_string(&log).unwrap();
    for id in &ids {
        assert_eq!(effects.matches(&format!("{id} First")).count(), 1, "{id}: a committed action never runs again");
        assert_eq!(effects.matches(&format!("{id} Held")).count(), 2, "{id}: the interrupted attempt runs once more");
    }
    assert_eq!(
        db.query("SELECT count(*) FROM ledger WHERE action = 'Held' AND exception_type = 'Step.SERVICE_FAULT'"),
        ids.len().to_string()
    );
}

#[test]
fn a_stalled_leader_is_fenced_after_the_follower_takes_over() {
    let db = FreshDatabase::new("stall");
    let sb = Sandbox::new();
    let log = sb.path("effects.log");
    let a = server(&db);
    let b = server(&db);
    // The action outlives the stall: it finishes while its leader is stopped,
    // and the stopped leader tries to commit its result when it continues.
    let definition = json!({"name": "p", "executionMode": "PARALLEL", "stages": [{"name": "One", "actions": [
        {"name": "Slow", "command": ["sh", "-c", format!("echo \"$REDRIVE_EXECUTION_ID start\" >> {}; sleep 1; echo \"$REDRIVE_EXECUTION_ID end\" >> {}", log.display(), log.display())]}]}]});
    assert_eq!(http(&a.addr, "POST", "/v1/pipelines", Some(definition)).0, 201);
    let id = start_execution(&a.addr, "p");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("start") {
        assert!(Instant::now() < deadline, "Slow never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (a_pid, b_pid) = (a.child.id(), b.child.id());
    unsafe { libc::kill(a_pid as i32, libc::SIGSTOP) };
    wait_for_takeover(&db, b_pid, Duration::from_secs(15));
    wait_all(&b.addr, "p", std::slice::from_ref(&id), "Succeeded", Duration::from_secs(30));
    let ledger_before = db.query("SELECT count(*) FROM ledger");
    unsafe { libc::kill(a_pid as i32, libc::SIGCONT) };
    // The old leader wakes up with a finished attempt to commit: refused, it stops.
    let mut a = a;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = a.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the fenced leader kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "a fenced leader exits non-zero: {status:?}");
    assert_eq!(db.query("SELECT count(*) FROM ledger"), ledger_before, "nothing the fenced leader did was recorded");
    assert_eq!(db.query("SELECT count(*) FROM ledger WHERE outcome = 'SUCCEEDED'"), "1", "the action succeeded once in the ledger");
    assert_eq!(status_of(&b.addr, "p", &id), "Succeeded");
}

#[test]
fn a_hundred_concurrent_stage_retries_over_two_servers_start_one_series() {
    let db = FreshDatabase::new("retry");
    let sb = Sandbox::new();
    let a = server(&db);
    let b = server(&db);
    hundred_concurrent_stage_retries_start_one_series(&a.addr, &b.addr, &sb, |sql| db.query(sql));
}

#[test]
fn an_idle_stalled_leader_steps_down_when_it_wakes_up() {
    let db = FreshDatabase::new("idle");
    let a = server(&db);
    let b = server(&db);
    let (a_pid, b_pid) = (a.child.id(), b.child.id());
    unsafe { libc::kill(a_pid as i32, libc::SIGSTOP) };
    wait_for_takeover(&db, b_pid, Duration::from_secs(15));
    unsafe { libc::kill(a_pid as i32, libc::SIGCONT) };
    // Nothing to write: it finds out from its lease and stops by itself.
    let mut a = a;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = a.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the stale leader kept running as if it led");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{status:?}");
    assert_eq!(role_of(&cluster(&b.addr), b_pid), "leader");
}
