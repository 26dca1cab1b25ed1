//! `redrive server --spread` on one PostgreSQL database: the servers share the
//! shards evenly, each runs the attempts of its shards' executions, either
//! accepts any call, and when one dies (kill -9) the other takes its shards
//! over and finishes its work — no committed attempt runs again; a dead-letter
//! redrive has each entry resubmitted by its shard's holder.

mod common;
mod pg;
use common::*;
use pg::FreshDatabase;
use redrive_core::shard::{SHARD_COUNT, ShardId};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

/// A server's `auth:` config and an admin token for it.
struct Auth {
    config: std::path::PathBuf,
    token: String,
}

impl Auth {
    /// Writes `auth: {}` into `sb` and makes an admin token in `db`.
    fn new(sb: &Sandbox, db: &FreshDatabase) -> Auth {
        let config = sb.write("server.yaml", "auth: {}\n");
        let made = finish(bin().args(["token", "create", "--db", &db.url, "--name", "admin", "--scope", "admin"]).output().unwrap()).ok();
        Auth { config, token: made.stdout.trim().to_string() }
    }
}

/// A `--spread` server on `db` with the server config `config`.
fn spread_server_configured(db: &FreshDatabase, config: Option<&Path>) -> ServerProcess {
    let mut cmd = bin();
    // Spread is the default with PostgreSQL.
    cmd.args(["server", "--listen", "127.0.0.1:0", "--grace-seconds", "1", "--lease-seconds", "2", "--db", &db.url]);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    start_server(&mut cmd)
}

/// The shards `pid` holds, as `GET /v1/cluster` on `addr` shows them.
fn shards_of(addr: &str, token: Option<&str>, pid: u32) -> Vec<u16> {
    let (status, v) = http_as(addr, token, "GET", "/v1/cluster", None);
    assert_eq!(status, 200, "{v}");
    let member = v["members"].as_array().unwrap().iter().find(|m| m["pid"] == pid).cloned().unwrap_or(Value::Null);
    member["shards"].as_array().map(|a| a.iter().map(|s| s.as_u64().unwrap() as u16).collect()).unwrap_or_default()
}

/// Waits until the processes hold `counts` shards each (in order).
fn wait_for_shares(addr: &str, pids: &[u32], counts: &[usize], within: Duration) -> Vec<Vec<u16>> {
    wait_for_shares_as(addr, None, pids, counts, within)
}

fn wait_for_shares_as(addr: &str, token: Option<&str>, pids: &[u32], counts: &[usize], within: Duration) -> Vec<Vec<u16>> {
    let deadline = Instant::now() + within;
    loop {
        let held: Vec<Vec<u16>> = pids.iter().map(|pid| shards_of(addr, token, *pid)).collect();
        if held.iter().map(Vec::len).eq(counts.iter().copied()) {
            return held;
        }
        assert!(Instant::now() < deadline, "the shards were never shared as {counts:?}: {held:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two `--spread` servers on `db`, the first started alone (it takes every
/// shard), then the second; returned once each holds half the shards, with
/// the shards each holds.
fn two_balanced_servers(db: &FreshDatabase) -> (ServerProcess, ServerProcess, Vec<Vec<u16>>) {
    two_balanced_servers_as(db, None)
}

fn two_balanced_servers_as(db: &FreshDatabase, auth: Option<&Auth>) -> (ServerProcess, ServerProcess, Vec<Vec<u16>>) {
    two_balanced_servers_configured(db, auth.map(|a| a.config.as_path()), auth.map(|a| a.token.as_str()))
}

fn two_balanced_servers_configured(
    db: &FreshDatabase,
    config: Option<&Path>,
    token: Option<&str>,
) -> (ServerProcess, ServerProcess, Vec<Vec<u16>>) {
    let all = usize::from(SHARD_COUNT);
    let a = spread_server_configured(db, config);
    wait_for_shares_as(&a.addr, token, &[a.child.id()], &[all], Duration::from_secs(20));
    let b = spread_server_configured(db, config);
    // The first process gives shards back one per heartbeat until both hold half.
    let held = wait_for_shares_as(&b.addr, token, &[a.child.id(), b.child.id()], &[all / 2, all / 2], Duration::from_secs(60));
    (a, b, held)
}

/// One pipeline name in each of the given shards' sets: `p0`, `p1`, … until
/// every set has one.
fn names_in(sets: &[&[u16]]) -> Vec<String> {
    sets.iter().map(|set| (0..).map(|i| format!("p{i}")).find(|n| set.contains(&ShardId::of(n).index())).unwrap()).collect()
}

/// A pipeline whose first action writes `EXECUTION_ID First SERVER_PID` to `log`
/// and whose second does the same with `Held` and waits while `hold` exists.
fn define(addr: &str, name: &str, log: &Path, hold: &Path) {
    let line = |what: &str| format!("echo \"$REDRIVE_EXECUTION_ID {what} $PPID\" >> {}", log.display());
    let definition = json!({"name": name, "executionMode": "PARALLEL", "stages": [
        {"name": "One", "actions": [{"name": "First", "command": ["sh", "-c", line("First")]}]},
        {"name": "Two", "actions": [{"name": "Held", "command": ["sh", "-c", format!("{}; while [ -e {} ]; do sleep 0.01; done", line("Held"), hold.display())]}]}
    ]});
    let (status, v) = http(addr, "POST", "/v1/pipelines", Some(definition));
    assert_eq!(status, 201, "{v}");
}

fn wait_succeeded(addr: &str, runs: &[(String, String)], within: Duration) {
    let deadline = Instant::now() + within;
    for (pipeline, id) in runs {
        loop {
            let (_, v) = http(addr, "GET", &format!("/v1/pipelines/{pipeline}/executions/{id}"), None);
            if v["status"] == "Succeeded" {
                break;
            }
            assert!(Instant::now() < deadline, "{pipeline} {id} never succeeded: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn wait_for_lines(log: &Path, what: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(log).unwrap_or_default().matches(what).count() < count {
        assert!(Instant::now() < deadline, "fewer than {count} {what:?} lines");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pids that wrote `EXECUTION_ID WHAT PID` lines for `id`.
fn writers(effects: &str, id: &str, what: &str) -> Vec<u32> {
    let prefix = format!("{id} {what} ");
    effects.lines().filter_map(|l| l.strip_prefix(&prefix)).map(|pid| pid.trim().parse().unwrap()).collect()
}

#[test]
fn spread_servers_share_the_shards_and_the_work_and_take_over_a_dead_ones() {
    let db = FreshDatabase::new("spread");
    let sb = Sandbox::new();
    let (log, hold) = (sb.path("effects.log"), sb.path("hold"));
    std::fs::write(&hold, "").unwrap();
    let (a, b, held) = two_balanced_servers(&db);
    let (a_pid, b_pid, all) = (a.child.id(), b.child.id(), usize::from(SHARD_COUNT));
    let both: BTreeSet<u16> = held.iter().flatten().copied().collect();
    assert_eq!(both.len(), all, "every shard has one holder: {held:?}");

    // Pipelines in A's shards and in B's, created, started and read through either server.
    let names = names_in(&[&held[0], &held[1]]);
    for (i, name) in names.iter().enumerate() {
        define(if i % 2 == 0 { &b.addr } else { &a.addr }, name, &log, &hold);
    }
    let runs: Vec<(String, String)> = (0..12)
        .map(|i| {
            let name = &names[i % names.len()];
            (name.clone(), start_execution(if i % 3 == 0 { &a.addr } else { &b.addr }, name))
        })
        .collect();
    wait_for_lines(&log, "Held", runs.len());
    let effects = std::fs::read_to_string(&log).unwrap();
    for (pipeline, id) in &runs {
        let owner = if pipeline == &names[0] { a_pid } else { b_pid };
        assert_eq!(writers(&effects, id, "First"), vec![owner], "{pipeline} {id} ran on its shard's holder");
    }
    // Each process's /metrics counts the attempts of its own shards' engines,
    // and both show the database's timers and paused executions.
    let (scrape_a, scrape_b) = (http_text(&a.addr, "GET", "/metrics", None).1, http_text(&b.addr, "GET", "/metrics", None).1);
    let first_ok = |text: &str, name: &str| {
        let wanted = format!("pipeline=\"{name}\",action=\"First\",exception_type=\"none\",outcome=\"SUCCEEDED\"}} 6");
        text.lines().any(|l| l.starts_with("redrive_attempts_total{") && l.contains(&wanted))
    };
    assert!(first_ok(&scrape_a, &names[0]) && !scrape_a.contains(&format!("pipeline=\"{}\"", names[1])), "{scrape_a}");
    assert!(first_ok(&scrape_b, &names[1]) && !scrape_b.contains(&format!("pipeline=\"{}\"", names[0])), "{scrape_b}");
    let gauge = |text: &str, name: &str| text.lines().find(|l| l.starts_with(name)).map(str::to_string);
    assert_eq!(gauge(&scrape_a, "redrive_timers_pending "), gauge(&scrape_b, "redrive_timers_pending "));

    // kill -9 of A: B takes A's shards over within a few heartbeats and
    // finishes A's executions; their committed First never runs again.
    a.kill9();
    wait_for_shares(&b.addr, &[b_pid], &[all], Duration::from_secs(15));
    std::fs::remove_file(&hold).unwrap();
    wait_succeeded(&b.addr, &runs, Duration::from_secs(30));
    let effects = std::fs::read_to_string(&log).unwrap();
    for (pipeline, id) in &runs {
        assert_eq!(writers(&effects, id, "First").len(), 1, "{id}: a committed action never runs again");
        let held_by = writers(&effects, id, "Held");
        if pipeline == &names[0] {
            assert_eq!(held_by, vec![a_pid, b_pid], "{id}: the attempt A was running runs once more, on B");
        } else {
            assert_eq!(held_by, vec![b_pid], "{id}: B's own execution is not disturbed");
        }
    }
    let ledger_rows: usize = db.query("SELECT count(*) FROM ledger").parse().unwrap();
    let a_runs = runs.iter().filter(|(p, _)| p == &names[0]).count();
    assert_eq!(ledger_rows, runs.len() * 2 + a_runs, "First and Held once each, and A's interrupted Held once more");
}

#[test]
fn a_codepipeline_call_is_routed_by_the_pipeline_in_its_body() {
    let db = FreshDatabase::new("spread_aws");
    let sb = Sandbox::new();
    let (log, hold) = (sb.path("effects.log"), sb.path("hold"));
    let (a, b, held) = two_balanced_servers(&db);
    let names = names_in(&[&held[0]]);
    define(&b.addr, &names[0], &log, &hold);
    // StartPipelineExecution through B for a pipeline of A's shard.
    let (status, v) = aws_call(&b.addr, "StartPipelineExecution", json!({"name": names[0]}));
    assert_eq!(status, 200, "{v}");
    let id = v["pipelineExecutionId"].as_str().unwrap().to_string();
    wait_succeeded(&b.addr, &[(names[0].clone(), id.clone())], Duration::from_secs(30));
    let effects = std::fs::read_to_string(&log).unwrap();
    assert_eq!(writers(&effects, &id, "First"), vec![a.child.id()], "run by the shard's holder");
    let (status, v) = aws_call(&a.addr, "GetPipelineExecution", json!({"pipelineName": names[0], "pipelineExecutionId": id}));
    assert_eq!((status, v["pipelineExecution"]["status"].as_str()), (200, Some("Succeeded")), "{v}");
}

/// A pipeline that dead-letters into `queue` at once unless `flag` exists;
/// once it does, its action writes `EXECUTION_ID Check SERVER_PID` to `log`.
fn define_dead_lettering(addr: &str, token: Option<&str>, name: &str, queue: &str, flag: &Path, log: &Path) {
    let check = format!("test -f {} && echo \"$REDRIVE_EXECUTION_ID Check $PPID\" >> {}", flag.display(), log.display());
    let definition = json!({"name": name, "deadLetterQueue": queue, "executionMode": "PARALLEL", "stages": [
        {"name": "Ship", "actions": [{"name": "Check", "command": ["sh", "-c", check],
         "retryPolicies": [{"exceptionType": ["Action.FAILED"], "maxAttempts": 0}]}]}
    ]});
    let (status, v) = http_as(addr, token, "POST", "/v1/pipelines", Some(definition));
    assert_eq!(status, 201, "{v}");
}

/// `redrive ARGS` against `addr` with `token`.
fn cli_as(addr: &str, token: &str, args: &[&str]) -> Run {
    finish(bin().args(args).env("REDRIVE_SERVER", format!("http://{addr}")).env("REDRIVE_TOKEN", token).output().unwrap())
}

#[test]
fn a_redrive_run_has_each_entry_resubmitted_by_its_shards_holder_exactly_once() {
    let db = FreshDatabase::new("spread_dlq");
    let sb = Sandbox::new();
    let (flag, log) = (sb.path("flag"), sb.path("checks.log"));
    // Under auth: the processes call each other with tokens they make themselves.
    let auth = Auth::new(&sb, &db);
    let token = auth.token.as_str();
    let (a, b, held) = two_balanced_servers_as(&db, Some(&auth));
    assert!(held[0].contains(&0), "the first process keeps shard 0: {held:?}");
    let a_other: Vec<u16> = held[0].iter().copied().filter(|s| *s != 0).collect();
    let names = names_in(&[&[0], &a_other, &held[1]]);
    let holder = |name: &String| if held[0].contains(&ShardId::of(name).index()) { a.child.id() } else { b.child.id() };
    let mut executions = Vec::new();
    for name in &names {
        define_dead_lettering(&b.addr, Some(token), name, "dlq-spread", &flag, &log);
        for _ in 0..2 {
            let (status, v) = http_as(&b.addr, Some(token), "POST", &format!("/v1/pipelines/{name}/executions"), Some(json!({})));
            assert_eq!(status, 201, "{v}");
            executions.push((name.clone(), v["pipelineExecutionId"].as_str().unwrap().to_string()));
        }
    }
    let queued = || db.query("SELECT count(*) FROM dlq_entries WHERE state = 'QUEUED'");
    eventually("six entries in the queue", || (queued() == "6").then_some(()));
    std::fs::write(&flag, "").unwrap();
    // An admin revokes the processes' own tokens: they make new ones.
    let (status, tokens) = http_as(&a.addr, Some(token), "GET", "/v1/tokens", None);
    assert_eq!(status, 200, "{tokens}");
    let peers: Vec<String> = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .filter(|n| n.starts_with("peer-"))
        .map(str::to_string)
        .collect();
    assert_eq!(peers.len(), 2, "one token per process: {tokens}");
    for name in &peers {
        assert_eq!(http_as(&a.addr, Some(token), "DELETE", &format!("/v1/tokens/{name}"), None).0, 204);
    }

    // Two runs at once, through A and through B; both are run by shard 0's
    // holder (A), which has B resubmit the entries of B's shards.
    let runs: Vec<Value> = std::thread::scope(|s| {
        let started: Vec<_> = [&a.addr, &b.addr]
            .map(|addr| s.spawn(move || cli_as(addr, token, &["dlq", "redrive", "dlq-spread", "--rate", "unlimited", "--output", "json"])))
            .into_iter()
            .collect();
        started.into_iter().map(|h| h.join().unwrap().ok().json()).collect()
    });
    let redriven: u64 = runs.iter().map(|v| v["summary"]["redriven"].as_u64().unwrap()).sum();
    for v in &runs {
        assert_eq!(v["status"].as_str(), Some("SUCCEEDED"), "{v}");
        assert_eq!(v["summary"]["skippedByReason"]["other-shard"].as_u64(), None, "no entry is left for its shard: {v}");
    }
    assert_eq!(redriven, 6, "each entry redriven by exactly one of the runs: {runs:?}");
    assert_eq!(db.query("SELECT count(*) FROM dlq_entries WHERE redrive_count = 1 AND state <> 'QUEUED'"), "6", "each entry once");
    let checks = eventually("every execution's retried action ran", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.lines().count() == executions.len()).then_some(text)
    });
    for (name, id) in &executions {
        assert_eq!(writers(&checks, id, "Check"), vec![holder(name)], "{id} ({name}) retried once, by its shard's holder");
    }
    // B's two entries were asked of B with A's own token (by one run, or by both).
    let peer_calls: u32 = db.query("SELECT count(*) FROM audit_log WHERE principal LIKE 'peer-%'").parse().unwrap();
    assert!((2..=4).contains(&peer_calls), "{peer_calls} calls between the processes");
    assert_eq!(queued(), "0");
}

/// kill -9 of the process holding some entries' shards just before a run: the
/// run's calls to it fail, and are tried again until the survivor has taken
/// its shards over; every entry is redriven once, by the survivor.
#[test]
fn a_redrive_run_waits_out_the_take_over_of_a_dead_holders_shards() {
    let db = FreshDatabase::new("spread_dlq_kill");
    let sb = Sandbox::new();
    let (flag, log) = (sb.path("flag"), sb.path("checks.log"));
    let (a, b, held) = two_balanced_servers(&db);
    let names = names_in(&[&[0], &held[1]]);
    let mut executions = Vec::new();
    for name in &names {
        define_dead_lettering(&a.addr, None, name, "dlq-kill", &flag, &log);
        for _ in 0..2 {
            executions.push(start_execution(&a.addr, name));
        }
    }
    eventually("four entries in the queue", || (db.query("SELECT count(*) FROM dlq_entries WHERE state = 'QUEUED'") == "4").then_some(()));
    std::fs::write(&flag, "").unwrap();
    let a_pid = a.child.id();
    b.kill9();
    let v = cli(&a.url, &["dlq", "redrive", "dlq-kill", "--rate", "unlimited", "--output", "json"]).ok().json();
    assert_eq!((v["status"].as_str(), v["summary"]["redriven"].as_u64()), (Some("SUCCEEDED"), Some(4)), "{v}");
    let checks = eventually("every retried action ran", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.lines().count() == executions.len()).then_some(text)
    });
    for id in &executions {
        assert_eq!(writers(&checks, id, "Check"), vec![a_pid], "{id} retried once, by the survivor");
    }
    assert_eq!(db.query("SELECT count(*) FROM dlq_entries WHERE redrive_count = 1 AND state <> 'QUEUED'"), "4", "each entry once");
}

#[test]
fn a_stalled_spread_server_loses_its_shards_and_its_late_results_are_refused() {
    let db = FreshDatabase::new("spread_stall");
    let sb = Sandbox::new();
    let (log, hold) = (sb.path("effects.log"), sb.path("hold"));
    std::fs::write(&hold, "").unwrap();
    let (a, b, held) = two_balanced_servers(&db);
    let (a_pid, b_pid, all) = (a.child.id(), b.child.id(), usize::from(SHARD_COUNT));
    let names = names_in(&[&held[0]]);
    define(&b.addr, &names[0], &log, &hold);
    let runs: Vec<(String, String)> = (0..4).map(|_| (names[0].clone(), start_execution(&b.addr, &names[0]))).collect();
    wait_for_lines(&log, "Held", runs.len());

    // A stops (its Held commands go on running); after its lease B takes its shards.
    unsafe { libc::kill(a_pid as i32, libc::SIGSTOP) };
    wait_for_shares(&b.addr, &[b_pid], &[all], Duration::from_secs(20));
    std::fs::remove_file(&hold).unwrap();
    wait_succeeded(&b.addr, &runs, Duration::from_secs(30));
    let ledger_before = db.query("SELECT count(*) FROM ledger");
    // A wakes up with finished attempts to commit: refused (fenced). It drops
    // the lost shards, keeps running, and gets its share back.
    unsafe { libc::kill(a_pid as i32, libc::SIGCONT) };
    wait_for_shares(&b.addr, &[a_pid, b_pid], &[all / 2, all / 2], Duration::from_secs(60));
    assert_eq!(
        db.query("SELECT count(*) FROM ledger"),
        ledger_before,
        "nothing the stalled process did after losing its shards was recorded"
    );
    let effects = std::fs::read_to_string(&log).unwrap();
    for (_, id) in &runs {
        assert_eq!(writers(&effects, id, "First"), vec![a_pid], "{id}: a committed action never runs again");
        assert_eq!(writers(&effects, id, "Held"), vec![a_pid, b_pid], "{id}: the stalled attempt runs again on B");
    }
    let succeeded: usize = db.query("SELECT count(*) FROM ledger WHERE action = 'Held' AND outcome = 'SUCCEEDED'").parse().unwrap();
    assert_eq!(succeeded, runs.len(), "Held succeeded once per execution in the ledger");
    drop(a);
}

#[test]
fn a_hundred_concurrent_stage_retries_over_two_spread_servers_start_one_series() {
    let db = FreshDatabase::new("spread_retry");
    let sb = Sandbox::new();
    let (a, b, _) = two_balanced_servers(&db);
    hundred_concurrent_stage_retries_start_one_series(&a.addr, &b.addr, &sb, |sql| db.query(sql));
}

/// A pipeline whose one action calls `service` as dependency `svc` (the
/// server config's settings), retrying its 503s every 0.2 s.
fn define_calling(addr: &str, name: &str, service: &HttpService) {
    let definition = json!({"name": name, "dependencies": [{"name": "svc"}], "stages": [{"name": "S", "actions": [{
        "name": "Call",
        "http": {"method": "POST", "url": format!("http://{}/work", service.addr)},
        "dependency": "svc",
        "retryPolicies": [{"exceptionType": ["Step.SERVICE_FAULT"], "intervalSeconds": 0.2, "backoffRate": 1, "maxAttempts": 20, "jitter": "NONE"}]
    }]}]});
    let (status, v) = http(addr, "POST", "/v1/pipelines", Some(definition));
    assert_eq!(status, 201, "{v}");
}

fn start_one(addr: &str, pipeline: &str) -> String {
    let (status, v) = http(addr, "POST", &format!("/v1/pipelines/{pipeline}/executions"), Some(json!({})));
    assert_eq!(status, 201, "{v}");
    v["pipelineExecutionId"].as_str().unwrap().to_string()
}

/// A circuit breaker opened by one server's executions holds the attempts of
/// the other server's executions against the same dependency: each shard's
/// engine keeps its own state and reads the others' every heartbeat.
#[test]
fn a_breaker_opened_by_one_spread_servers_failures_holds_the_others_attempts() {
    let db = FreshDatabase::new("spread_breaker");
    let sb = Sandbox::new();
    let service = HttpService::start(Duration::ZERO, true);
    let config = sb
        .write("server.yaml", "dependencies:\n  - name: svc\n    circuitBreaker: {failureThreshold: 3, coolDown: 6s, halfOpenProbes: 1}\n");
    let (a, b, held) = two_balanced_servers_configured(&db, Some(&config), None);
    let names = names_in(&[&held[0], &held[1]]);
    for name in &names {
        define_calling(&a.addr, name, &service);
    }
    // Three failures of an execution of a pipeline of A's open the breaker of its shard.
    let first = start_one(&a.addr, &names[0]);
    let breaker = || http(&b.addr, "GET", "/v1/dependencies/svc", None).1["breaker"]["state"].clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    while breaker() != "open" {
        assert!(Instant::now() < deadline, "the breaker never showed open: {}", http(&b.addr, "GET", "/v1/dependencies/svc", None).1);
        std::thread::sleep(Duration::from_millis(50));
    }
    let failed = service.seen().len();
    assert_eq!(failed, 3, "the threshold's failures reached the service, then the breaker held the retry");
    // Two heartbeats on (lease 2 s: 0.4 s each), an execution of a pipeline of
    // B's: its first attempt is held too, and nothing reaches the service.
    std::thread::sleep(Duration::from_millis(800));
    let second = start_one(&b.addr, &names[1]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let ledger = loop {
        let (_, v) = http(&b.addr, "GET", &format!("/v1/pipelines/{}/action-executions?limit=100", names[1]), None);
        if v["actionExecutions"].as_array().is_some_and(|rows| rows.iter().any(|r| r["status"] == "DEFERRED")) {
            break v;
        }
        assert!(Instant::now() < deadline, "the other server's attempt was never held: {v}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let deferred = ledger["actionExecutions"].as_array().unwrap().iter().find(|r| r["status"] == "DEFERRED").unwrap().clone();
    assert_eq!(deferred["decision"]["deferred"]["reason"]["kind"], "breaker-open", "{deferred}");
    assert_eq!(service.seen().len(), failed, "no attempt reached the service while the breaker was open");
    // The service recovers; after the cool-down the probes close the breakers
    // and both executions succeed, each with one successful call.
    service.set_failing(false);
    wait_succeeded(&a.addr, &[(names[0].clone(), first), (names[1].clone(), second)], Duration::from_secs(40));
    assert_eq!(service.seen().iter().filter(|s| s.status == 200).count(), 2, "one successful call each");
}

/// Servers and SDK processes (members of kind `functions`) do not share a
/// database's shards: a spread server refuses to start while an SDK process
/// holds one, naming it, and starts once that lease is gone.
#[test]
fn a_spread_server_refuses_a_database_whose_shards_sdk_processes_hold() {
    let db = FreshDatabase::new("sdkheld");
    // The schema, made by any command that opens the store.
    finish(bin().args(["token", "create", "--db", &db.url, "--name", "admin", "--scope", "admin"]).output().unwrap()).ok();
    let now = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";
    db.query(&format!(
        "INSERT INTO members (id, host, pid, url, started_at, heartbeat_at, kind) VALUES ('worker-7', 'h', 7, NULL, {now}, {now}, 'functions')"
    ));
    db.query(&format!("UPDATE engine_lock SET member = 'worker-7', expires_at = {now} + 60000 WHERE id = 2"));
    // `cluster status --db` reads the members from the database (SDK processes serve no API).
    let status = finish(bin().args(["cluster", "status", "--db", &db.url, "--output", "json"]).output().unwrap()).ok();
    let v: Value = serde_json::from_str(&status.stdout).unwrap();
    let worker = v["members"].as_array().unwrap().iter().find(|m| m["id"] == "worker-7").cloned().unwrap();
    assert_eq!((&worker["kind"], &worker["role"], &worker["shards"]), (&json!("functions"), &json!("sharded"), &json!([0])), "{v}");
    let table = finish(bin().args(["cluster", "status", "--db", &db.url]).output().unwrap()).ok();
    assert!(table.stdout.lines().any(|l| l.contains("worker-7") && l.contains("functions")), "{}", table.stdout);

    let out = bin().args(["server", "--listen", "127.0.0.1:0", "--db", &db.url]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("SDK process(es) worker-7"), "names the SDK process: {stderr}");
    assert_eq!(db.query("SELECT count(*) FROM engine_lock WHERE id > 2 AND member IS NOT NULL"), "0", "it took nothing");
    db.query("UPDATE engine_lock SET expires_at = 0 WHERE id = 2");
    let server = spread_server_configured(&db, None);
    // (Its share grows to all 16 once the processes that just exited stop counting.)
    wait_for_shares(&server.addr, &[server.child.id()], &[usize::from(SHARD_COUNT)], Duration::from_secs(20));
}
