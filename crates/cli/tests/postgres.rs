//! The real binary on a PostgreSQL store (`--db postgres://…`): a run, a crash and
//! its resume, one engine per database, and a database outage in the middle of a
//! server's work (503 + Retry-After while it is down, then everything finishes,
//! nothing lost or run twice).

mod common;
mod pg;
use common::*;
use pg::FreshDatabase;
use serde_json::json;
use std::time::{Duration, Instant};

fn noop_pipeline(name: &str) -> String {
    format!(
        "name: {name}\nstages:\n  - name: Build\n    actions:\n      - name: Flaky\n        noop: {{failFirst: 2, failWith: Step.SERVICE_FAULT}}\n        retryPolicies:\n          - {{exceptionType: [Step.SERVICE_FAULT], intervalSeconds: 0, maxAttempts: 3}}\n  - name: Ship\n    actions:\n      - name: Done\n        noop: {{}}\n"
    )
}

#[test]
fn run_on_postgres_retries_and_records_the_ledger_there() {
    let db = FreshDatabase::new("run");
    let sb = Sandbox::new();
    let file = sb.write("p.yaml", &noop_pipeline("pg-run"));
    let out = bin().arg("run").arg(&file).args(["--db", &db.url, "--output", "json"]).output().unwrap();
    let (code, summary, stderr) = parse(out);
    assert_eq!(code, 0, "{summary}\n{stderr}");
    assert_eq!(summary["status"], "Succeeded", "{summary}");
    assert_eq!(attempts(&summary, "Build", "Flaky").len(), 3, "{summary}");
    // The ledger is in PostgreSQL, not in a file.
    assert_eq!(db.query("SELECT count(*) FROM ledger WHERE outcome = 'FAILED'"), "2");
    assert_eq!(db.query("SELECT count(*) FROM ledger WHERE outcome = 'SUCCEEDED'"), "2");
    assert!(!sb.db().exists(), "no SQLite file was created");
    assert!(!stderr.contains("postgres@"), "the URL is not echoed with its user part needlessly: {stderr}");
}

#[test]
fn a_password_in_the_url_never_reaches_the_output() {
    // A server that is not there: the error names the database, never the password.
    let url = "postgres://redrive:hunter2-secret@127.0.0.1:1/nothing";
    let sb = Sandbox::new();
    let file = sb.write("p.yaml", &noop_pipeline("pg-secret"));
    let mut child = bin()
        .arg("run")
        .arg(&file)
        .args(["--db", url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A store that cannot be reached is waited for (a transient fault); give it a moment, then stop it.
    std::thread::sleep(Duration::from_secs(2));
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
}

#[test]
fn a_run_beside_a_server_on_the_same_database_is_refused_naming_the_holder() {
    // `redrive run` needs the database to itself (it drives what it starts);
    // servers share it (one leads, the others follow).
    let db = FreshDatabase::new("lock");
    let sb = Sandbox::new();
    let first = start_server(bin().args(["server", "--listen", "127.0.0.1:0", "--db", &db.url]));
    let file = sb.write("p.yaml", &noop_pipeline("pg-lock"));
    let second = bin().arg("run").arg(&file).args(["--db", &db.url]).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "a second engine must not start: {stderr}");
    assert!(stderr.contains(&format!("pid {}", first.child.id())), "names the holder: {stderr}");
    assert!(stderr.contains("--db"), "says what to do: {stderr}");
}

fn execution_status(addr: &str, pipeline: &str, id: &str) -> Option<String> {
    let (status, v) = http(addr, "GET", &format!("/v1/pipelines/{pipeline}/executions/{id}"), None);
    (status == 200).then(|| v["status"].as_str().unwrap_or_default().to_string())
}

/// Reads a raw response's status line and whether it carries `Retry-After`.
fn readyz(addr: &str) -> (u16, bool) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return (0, false) };
    let _ = write!(s, "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, out.to_ascii_lowercase().contains("\r\nretry-after:"))
}

#[test]
fn a_database_outage_degrades_the_server_and_it_recovers_by_itself() {
    let db = FreshDatabase::new("outage");
    let sb = Sandbox::new();
    let log = sb.path("effects.log");
    let server = start_server(bin().args(["server", "--listen", "127.0.0.1:0", "--grace-seconds", "1", "--db", &db.url]));
    // Each execution: a command that records its side effect and takes a moment,
    // then a second one; while the database is down, attempts finish and cannot
    // be committed yet.
    let definition = json!({"name": "p", "executionMode": "PARALLEL", "stages": [
        {"name": "One", "actions": [{"name": "Work", "command": ["sh", "-c", format!("sleep 0.3; echo \"$REDRIVE_EXECUTION_ID One\" >> {}", log.display())]}]},
        {"name": "Two", "actions": [{"name": "More", "command": ["sh", "-c", format!("echo \"$REDRIVE_EXECUTION_ID Two\" >> {}", log.display())]}]}
    ]});
    assert_eq!(http(&server.addr, "POST", "/v1/pipelines", Some(definition)).0, 201);
    let ids: Vec<String> = (0..20).map(|_| start_execution(&server.addr, "p")).collect();

    db.go_down();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, retry_after) = readyz(&server.addr);
        if status == 503 {
            assert!(retry_after, "a 503 carries Retry-After");
            break;
        }
        assert!(Instant::now() < deadline, "the server never reported the outage (last /readyz {status})");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = http(&server.addr, "POST", "/v1/pipelines/p/executions", Some(json!({})));
    assert_eq!(status, 503, "a start while the database is down is refused with 503, not accepted and lost");
    std::thread::sleep(Duration::from_secs(2));
    assert!(server_is_running(&server), "the server does not exit while the database is down");
    db.come_back();

    let deadline = Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            if execution_status(&server.addr, "p", id).as_deref() == Some("Succeeded") {
                break;
            }
            assert!(Instant::now() < deadline, "execution {id} never finished after the outage");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert_eq!(readyz(&server.addr).0, 200, "ready again");
    // Every execution's actions each succeeded exactly once in the ledger.
    assert_eq!(db.query("SELECT count(*) FROM ledger WHERE outcome = 'SUCCEEDED'"), (ids.len() * 2).to_string());
    assert_eq!(
        db.query("SELECT count(*) FROM (SELECT execution_id, stage, action FROM ledger WHERE outcome = 'SUCCEEDED' GROUP BY 1, 2, 3 HAVING count(*) > 1) d"),
        "0",
        "no action succeeded twice"
    );
}

/// SIGTERM while the database is down and a result waits to be committed: the
/// server does not wait for the database forever — it exits after its grace
/// and the commit wait (10 s) with a failure status; after the database is
/// back, a new server finishes the execution.
#[test]
fn sigterm_during_a_database_outage_exits_within_the_grace_and_the_commit_wait() {
    let db = FreshDatabase::new("sigterm_outage");
    let sb = Sandbox::new();
    let (log, hold) = (sb.path("effects.log"), sb.path("hold"));
    std::fs::write(&hold, "").unwrap();
    let start = || start_server(bin().args(["server", "--listen", "127.0.0.1:0", "--grace-seconds", "1", "--db", &db.url]));
    let mut server = start();
    let held = format!("echo \"$REDRIVE_EXECUTION_ID\" >> {}; while [ -e {} ]; do sleep 0.05; done", log.display(), hold.display());
    let definition = json!({"name": "p", "stages": [{"name": "One", "actions": [{"name": "Held", "command": ["sh", "-c", held]}]}]});
    assert_eq!(http(&server.addr, "POST", "/v1/pipelines", Some(definition)).0, 201);
    let id = start_execution(&server.addr, "p");
    eventually("the action runs", || std::fs::read_to_string(&log).ok().filter(|t| t.contains(&id)));

    db.go_down();
    std::fs::remove_file(&hold).unwrap(); // its result now has nowhere to go
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let asked = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(asked.elapsed() < Duration::from_secs(30), "the server still waits for the database 30 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "an exit without the last changes is a failure: {status}");
    assert!(asked.elapsed() >= Duration::from_secs(1), "it gave the grace first");

    db.come_back();
    let server = start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while execution_status(&server.addr, "p", &id).as_deref() != Some("Succeeded") {
        assert!(Instant::now() < deadline, "execution {id} never finished after the restart");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn server_is_running(server: &ServerProcess) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(server.child.id() as i32, 0) == 0 }
}

#[test]
fn kill_9_on_postgres_then_restart_finishes_without_rerunning_committed_actions() {
    let db = FreshDatabase::new("crash");
    let sb = Sandbox::new();
    let log = sb.path("effects.log");
    let hold = sb.path("hold");
    std::fs::write(&hold, "").unwrap();
    let server = start_server(bin().args(["server", "--listen", "127.0.0.1:0", "--db", &db.url]));
    let definition = json!({"name": "p", "stages": [
        {"name": "One", "actions": [{"name": "First", "command": ["sh", "-c", format!("echo First >> {}", log.display())]}]},
        {"name": "Two", "actions": [{"name": "Held", "command": ["sh", "-c", format!("echo Held >> {}; while [ -e {} ]; do sleep 0.01; done", log.display(), hold.display())]}]}
    ]});
    assert_eq!(http(&server.addr, "POST", "/v1/pipelines", Some(definition)).0, 201);
    let id = start_execution(&server.addr, "p");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("Held") {
        assert!(Instant::now() < deadline, "Held never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill9();
    std::fs::remove_file(&hold).unwrap();

    let restarted = start_server(bin().args(["server", "--listen", "127.0.0.1:0", "--db", &db.url]));
    let deadline = Instant::now() + Duration::from_secs(30);
    while execution_status(&restarted.addr, "p", &id).as_deref() != Some("Succeeded") {
        assert!(Instant::now() < deadline, "the execution never finished after the restart");
        std::thread::sleep(Duration::from_millis(50));
    }
    let effects = std::fs::read_to_string(&log).unwrap();
    assert_eq!(effects.matches("First").count(), 1, "a committed action never runs again: {effects}");
    assert_eq!(effects.matches("Held").count(), 2, "the interrupted attempt is retried once: {effects}");
    assert_eq!(db.query("SELECT exception_type FROM ledger WHERE action = 'Held' AND outcome = 'FAILED'"), "Step.SERVICE_FAULT");
}

#[test]
fn a_malformed_postgres_url_is_invalid_input_and_hides_the_password() {
    let sb = Sandbox::new();
    let file = sb.write("p.yaml", &noop_pipeline("pg-bad-url"));
    for args in [vec!["run", file.to_str().unwrap()], vec!["server", "--listen", "127.0.0.1:0"]] {
        let out = bin().args(&args).args(["--db", "postgres://app:s3cret@db:notaport/x"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("port") && !stderr.contains("s3cret"), "{args:?}: {stderr}");
    }
}
