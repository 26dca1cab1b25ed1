//! Dead-letter redrives against a real server process: kill -9 in the middle of a
//! 1,000-entry redrive loses and duplicates nothing; the rate limit holds; a
//! scheduled prefix redrive touches only matching queues.

mod common;
use common::*;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn ok(addr: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (st, v) = http(addr, method, path, body);
    assert!((200..300).contains(&st), "{method} {path} → {st}: {v}");
    v
}

/// A pipeline whose one action always fails at once (Action.FAILED: no retry).
/// PARALLEL: executions are independent (in SUPERSEDED mode a newer execution
/// overtakes older ones, which then refuse a stage retry).
fn failing_pipeline(name: &str, queue: &str) -> Value {
    json!({"name": name, "executionMode": "PARALLEL", "deadLetterQueue": queue, "stages": [
        {"name": "S", "actions": [{"name": "A", "noop": {"failFirst": 1000, "failWith": "Action.FAILED"}}]}
    ]})
}

/// Starts `n` executions (8 client threads) and waits until `n` entries are queued.
fn fill(addr: &str, pipeline: &str, queue: &str, n: usize) {
    std::thread::scope(|s| {
        for t in 0..8 {
            s.spawn(move || {
                for i in (t..n).step_by(8) {
                    ok(addr, "POST", &format!("/v1/pipelines/{pipeline}/executions"), Some(json!({"input": {"n": i}})));
                }
            });
        }
    });
    wait_for(|| ok(addr, "GET", &format!("/v1/dlq/queues/{queue}"), None)["depth"] == n as u64, "the queue to fill");
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every entry of the queue (any state), with paging.
fn all_entries(addr: &str, queue: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let path = match &token {
            Some(t) => format!("/v1/dlq/queues/{queue}/entries?state=ALL&limit=1000&nextToken={t}"),
            None => format!("/v1/dlq/queues/{queue}/entries?state=ALL&limit=1000"),
        };
        let v = ok(addr, "GET", &path, None);
        out.extend(v["entries"].as_array().unwrap().iter().cloned());
        match v["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return out,
        }
    }
}

fn run_of(addr: &str, id: &str) -> Value {
    ok(addr, "GET", &format!("/v1/dlq/redrives/{id}"), None)
}

/// The ledger's count of redrive-started attempts of one execution, read from the db file.
fn redrive_attempts(db: &std::path::Path) -> std::collections::HashMap<String, i64> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut st = conn.prepare("SELECT execution_id, COUNT(*) FROM ledger WHERE trigger = 'redrive' GROUP BY execution_id").unwrap();
    st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap().map(Result::unwrap).collect()
}

#[test]
fn kill_9_in_the_middle_of_a_1000_entry_redrive_moves_every_entry_exactly_once() {
    const N: usize = 1000;
    let sb = Sandbox::new();
    let addr = free_addr();
    let server = start_server(&mut server_command(&sb, &addr));
    ok(&addr, "POST", "/v1/pipelines", Some(failing_pipeline("bulk", "retry-bulk")));
    fill(&addr, "bulk", "retry-bulk", N);

    // Redrive all of them at 250/s (4 s) and kill the server about a third of the way.
    let run = ok(&addr, "POST", "/v1/dlq/queues/retry-bulk/redrive", Some(json!({"rate": "250/s"})));
    let run_id = run["runId"].as_str().unwrap().to_string();
    wait_for(|| run_of(&addr, &run_id)["summary"]["processed"].as_u64().unwrap_or(0) >= 300, "a third of the redrive");
    let before_kill = run_of(&addr, &run_id);
    // The phase: the run is in progress, part of the way through.
    assert_eq!(before_kill["status"], "RUNNING", "{before_kill}");
    assert!(before_kill["summary"]["processed"].as_u64().unwrap() < N as u64, "{before_kill}");
    server.kill9();

    let server = start_server(&mut server_command(&sb, &addr));
    // The interrupted run says so; resubmissions in flight settle (they fail again).
    wait_for(|| run_of(&addr, &run_id)["status"] == "INTERRUPTED", "the run to be marked interrupted");
    wait_for(|| all_entries(&addr, "retry-bulk").iter().all(|e| e["state"] == "QUEUED"), "resubmissions to settle");
    let entries = all_entries(&addr, "retry-bulk");
    assert_eq!(entries.len(), N, "no entry lost, none duplicated");
    let redriven_attempts = redrive_attempts(&sb.db());
    let mut moved = 0;
    for e in &entries {
        let count = e["redriveCount"].as_i64().unwrap();
        let id = e["source"]["executionId"].as_str().unwrap();
        // Exactly once: the count went up if and only if the resubmission committed.
        assert!(count == 0 || count == 1, "entry {} redriven {count} times", e["entryId"]);
        assert_eq!(redriven_attempts.get(id).copied().unwrap_or(0), count, "entry {}: count vs resubmissions", e["entryId"]);
        moved += count;
    }
    assert!(moved >= 250 && moved < N as i64, "the kill came mid-run: {moved} moved; the run said {before_kill}");

    // A second redrive after the restart picks up exactly the entries not yet moved.
    let run = ok(&addr, "POST", "/v1/dlq/queues/retry-bulk/redrive", Some(json!({"rate": "unlimited"})));
    let run_id = run["runId"].as_str().unwrap().to_string();
    wait_for(|| run_of(&addr, &run_id)["status"] != "RUNNING", "the second run");
    let summary = run_of(&addr, &run_id)["summary"].clone();
    assert_eq!(summary["redriven"].as_u64().unwrap(), N as u64, "{summary}");
    wait_for(|| all_entries(&addr, "retry-bulk").iter().all(|e| e["state"] == "QUEUED"), "resubmissions to settle");
    let entries = all_entries(&addr, "retry-bulk");
    assert_eq!(entries.len(), N);
    let redriven_attempts = redrive_attempts(&sb.db());
    for e in &entries {
        let count = e["redriveCount"].as_i64().unwrap();
        let id = e["source"]["executionId"].as_str().unwrap();
        assert_eq!(redriven_attempts.get(id).copied().unwrap_or(0), count);
    }
    drop(server);
}

#[test]
fn the_rate_limit_holds_and_a_scheduled_prefix_redrive_touches_only_its_queues() {
    let sb = Sandbox::new();
    let config =
        sb.write("server.yaml", "redriveSchedules:\n  - name: sweeper\n    every: 2s\n    queuePrefix: retry-\n    rate: unlimited\n");
    let addr = free_addr();
    let _server = start_server(server_command(&sb, &addr).arg("--config").arg(&config));
    ok(&addr, "POST", "/v1/pipelines", Some(failing_pipeline("paced", "paced")));
    ok(&addr, "POST", "/v1/pipelines", Some(failing_pipeline("a", "retry-a")));
    ok(&addr, "POST", "/v1/pipelines", Some(failing_pipeline("b", "other-b")));
    fill(&addr, "paced", "paced", 40);

    // 40 entries at 20/s: the first goes at once, so at least 39/20 s.
    let run = ok(&addr, "POST", "/v1/dlq/queues/paced/redrive", Some(json!({"rate": "20/s"})));
    let run_id = run["runId"].as_str().unwrap().to_string();
    wait_for(|| run_of(&addr, &run_id)["status"] != "RUNNING", "the paced run");
    let r = run_of(&addr, &run_id);
    assert_eq!(r["status"], "SUCCEEDED", "{r}");
    assert_eq!(r["summary"]["redriven"], 40);
    let ms = |k: &str| {
        let t = r[k].as_str().unwrap();
        // RFC 3339 with milliseconds, same day: compare the time of day.
        let hms = &t[11..23];
        let p: Vec<f64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
        (p[0] * 3600.0 + p[1] * 60.0 + p[2]) * 1000.0
    };
    let took_ms = ms("finishedAt") - ms("startedAt");
    assert!(took_ms >= 39.0 / 20.0 * 1000.0 * 0.95, "40 entries at 20/s took only {took_ms} ms");
    assert!(took_ms < 30_000.0, "40 entries at 20/s took {took_ms} ms");

    // The schedule runs every 2 s over retry-*: it redrives retry-a, never other-b.
    fill(&addr, "a", "retry-a", 3);
    fill(&addr, "b", "other-b", 3);
    wait_for(
        || {
            let runs = ok(&addr, "GET", "/v1/dlq/redrives?schedule=sweeper", None);
            runs["runs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["status"] == "SUCCEEDED" && r["summary"]["redriven"].as_u64().unwrap_or(0) > 0)
        },
        "a scheduled run that redrove something",
    );
    let runs = ok(&addr, "GET", "/v1/dlq/redrives?schedule=sweeper", None);
    for r in runs["runs"].as_array().unwrap() {
        assert_eq!(r["schedule"], "sweeper");
        for q in r["summary"]["queues"].as_object().unwrap().keys() {
            assert!(q.starts_with("retry-"), "scheduled run touched {q}");
        }
    }
    for e in all_entries(&addr, "other-b") {
        assert_eq!(e["redriveCount"], 0, "other-b is outside the prefix");
    }
    assert!(all_entries(&addr, "retry-a").iter().all(|e| e["redriveCount"].as_u64().unwrap() >= 1));
    assert!(all_entries(&addr, "paced").iter().all(|e| e["redriveCount"] == 1), "paced is outside the prefix");
}
