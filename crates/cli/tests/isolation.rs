//! Fault isolation through the real binary: one execution's oversized outputs,
//! deeply nested output or huge dead-letter detail fails that execution alone
//! (also after a restart); a second engine on the same file through another path
//! is refused; a database deleted underneath stops the server with a non-zero
//! exit and the reason; a full disk degrades the server until space is freed.

mod common;

use common::{Sandbox, ServerProcess, http, server_command, start_server};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes a ~1 MB JSON document (1,000,012 bytes) as the action's output.
const BIG_OUTPUT_SH: &str = r#"printf '{"data":"' > "$REDRIVE_OUTPUT_FILE"
head -c 1000000 /dev/zero | tr '\0' x >> "$REDRIVE_OUTPUT_FILE"
printf '"}' >> "$REDRIVE_OUTPUT_FILE"
"#;

/// Writes an output nested 125 levels deep (serde_json reads at most 128).
const DEEP_OUTPUT_SH: &str = r#"i=0; s=''; while [ $i -lt 125 ]; do s="[$s]"; i=$((i+1)); done; printf '%s' "$s" > "$REDRIVE_OUTPUT_FILE"
"#;

/// Fails with a 4,000-character message of control characters (each escapes to
/// six bytes of JSON again wherever the message is stored as JSON).
const LOUD_FAILURE_SH: &str = r#"m=$(printf '%4000s' '' | sed 's/ /\\u0001/g')
printf '{"errorType":"Loud","message":"%s"}' "$m" > "$REDRIVE_ERROR_FILE"
exit 1
"#;

fn six_big_outputs(script: &Path) -> Value {
    let stages: Vec<Value> =
        (1..=6).map(|i| json!({"name": format!("S{i}"), "actions": [{"name": "Write", "command": ["sh", script]}]})).collect();
    json!({"name": "big", "stages": stages})
}

fn small() -> Value {
    json!({"name": "small", "stages": [{"name": "S", "actions": [{"name": "A", "noop": {}}]}]})
}

fn create(server: &ServerProcess, definition: Value) {
    let (status, body) = http(&server.addr, "POST", "/v1/pipelines", Some(definition));
    assert_eq!(status, 201, "{body}");
}

fn start(server: &ServerProcess, pipeline: &str) -> String {
    let (status, body) = http(&server.addr, "POST", &format!("/v1/pipelines/{pipeline}/executions"), Some(json!({})));
    assert_eq!(status, 201, "{body}");
    body["pipelineExecutionId"].as_str().unwrap().to_string()
}

/// Polls an execution until it finishes (the engine is a real process).
fn finished(server: &ServerProcess, pipeline: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http(&server.addr, "GET", &format!("/v1/pipelines/{pipeline}/executions/{id}"), None);
        assert_eq!(status, 200, "{body}");
        if !matches!(body["status"].as_str(), Some("InProgress" | "Stopping")) {
            return body;
        }
        assert!(Instant::now() < deadline, "execution {id} did not finish: {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The error of the first failed action of an execution.
fn failed_action(execution: &Value) -> Value {
    let actions = execution["stages"].as_array().unwrap().iter().flat_map(|s| s["actions"].as_array().unwrap().iter());
    actions.clone().find(|a| a["status"] == "Failed").map(|a| json!({"action": a["name"], "error": a["error"]})).unwrap_or(Value::Null)
}

fn big_beside_three_small(server: &ServerProcess) {
    let big = start(server, "big");
    let smalls: Vec<String> = (0..3).map(|_| start(server, "small")).collect();
    let outcome = finished(server, "big", &big);
    assert_eq!(outcome["status"], "Failed", "{}", failed_action(&outcome));
    let failed = failed_action(&outcome);
    assert_eq!(failed["error"]["exceptionType"], "Engine.LIMIT_EXCEEDED", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("the output of action") && message.contains("state"), "names the output and the state budget: {message}");
    for id in &smalls {
        assert_eq!(finished(server, "small", id)["status"], "Succeeded");
    }
    let (status, body) = http(&server.addr, "GET", "/readyz", None);
    assert_eq!((status, &body["status"]), (200, &json!("ready")));
    // New starts are accepted and run.
    let later = start(server, "small");
    assert_eq!(finished(server, "small", &later)["status"], "Succeeded");
    let (status, body) = http(&server.addr, "GET", "/v1/pipelines/big/executions", None);
    assert_eq!(status, 200, "the pipeline's executions stay listable: {body}");
}

#[test]
fn large_outputs_fail_only_their_execution_also_after_a_restart() {
    let sb = Sandbox::new();
    let script = sb.write("big.sh", BIG_OUTPUT_SH);
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    create(&server, six_big_outputs(&script));
    create(&server, small());
    big_beside_three_small(&server);
    drop(server);
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    big_beside_three_small(&server);
}

#[test]
fn run_fails_the_large_execution_with_limit_exceeded_and_exits_1() {
    let sb = Sandbox::new();
    let script = sb.write("big.sh", BIG_OUTPUT_SH);
    let file = sb.write("big.json", &six_big_outputs(&script).to_string());
    let (code, summary, stderr) = sb.run_json(&file);
    assert_eq!(code, 1, "an execution failure, not an engine stop:\n{stderr}");
    assert!(!stderr.contains("engine stopped"), "{stderr}");
    let attempts = summary["attempts"].as_array().unwrap();
    let last = attempts.last().unwrap();
    assert_eq!(last["exceptionType"], "Engine.LIMIT_EXCEEDED", "{last}");
    assert!(attempts.len() >= 4 && attempts.len() <= 6, "the first outputs fit, then one does not: {attempts:?}");
    assert!(attempts[..attempts.len() - 1].iter().all(|a| a["outcome"] == "SUCCEEDED"));
}

#[test]
fn a_deeply_nested_output_fails_its_attempt_and_the_execution_stays_readable() {
    let sb = Sandbox::new();
    let script = sb.write("deep.sh", DEEP_OUTPUT_SH);
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    create(&server, json!({"name": "deep", "stages": [{"name": "S", "actions": [{"name": "A", "command": ["sh", script]}]}]}));
    create(&server, small());
    let id = start(&server, "deep");
    let outcome = finished(&server, "deep", &id);
    let failed = failed_action(&outcome);
    assert_eq!(failed["error"]["exceptionType"], "Engine.LIMIT_EXCEEDED", "{failed}");
    assert!(failed["error"]["message"].as_str().unwrap().contains("nested 125 levels"), "{failed}");
    for path in ["/v1/pipelines/deep/executions", "/v1/pipelines/deep/state"] {
        let (status, body) = http(&server.addr, "GET", path, None);
        assert_eq!(status, 200, "{path}: {body}");
    }
    drop(server);
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    assert_eq!(finished(&server, "deep", &id)["status"], "Failed");
    let later = start(&server, "small");
    assert_eq!(finished(&server, "small", &later)["status"], "Succeeded");
}

#[test]
fn a_huge_dead_letter_detail_is_bounded_and_the_entry_is_written() {
    let sb = Sandbox::new();
    let script = sb.write("loud.sh", LOUD_FAILURE_SH);
    let actions: Vec<Value> = (1..=12).map(|i| json!({"name": format!("A{i}"), "command": ["sh", script]})).collect();
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    create(&server, json!({"name": "loud", "deadLetterQueue": "retry-loud", "stages": [{"name": "S", "actions": actions}]}));
    create(&server, small());
    let id = start(&server, "loud");
    assert_eq!(finished(&server, "loud", &id)["status"], "Failed");
    let (status, entry) = http(&server.addr, "GET", &format!("/v1/dlq/entries/{id}"), None);
    assert_eq!(status, 200, "{entry}");
    assert_eq!(entry["error"]["exceptionType"], "Loud", "{}", entry["error"]);
    assert!(entry["error"]["message"].as_str().unwrap().starts_with('\u{1}'), "the message is the action's own");
    let later = start(&server, "small");
    assert_eq!(finished(&server, "small", &later)["status"], "Succeeded", "the engine goes on");
}

/// An action that replaces `$REDRIVE_OUTPUT_FILE` (or the error file) with a
/// FIFO ends with a clear failure at once; the server keeps answering meanwhile.
#[test]
fn a_fifo_output_file_fails_its_attempt_and_never_wedges_the_server() {
    let sb = Sandbox::new();
    let fifo_out = sb.write("fifo-out.sh", "mkfifo \"$REDRIVE_OUTPUT_FILE\"\n");
    let fifo_err = sb.write("fifo-err.sh", "mkfifo \"$REDRIVE_ERROR_FILE\"; exit 1\n");
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    for (name, script) in [("fifo-out", &fifo_out), ("fifo-err", &fifo_err)] {
        let action = json!({"name": "A", "command": ["sh", script], "timeoutSeconds": 600});
        create(&server, json!({"name": name, "stages": [{"name": "S", "actions": [action]}]}));
    }
    create(&server, small());
    let started = Instant::now();
    let ids: Vec<(&str, String)> = ["fifo-out", "fifo-err"].into_iter().map(|p| (p, start(&server, p))).collect();
    let (status, _) = http(&server.addr, "GET", "/healthz", None);
    assert_eq!(status, 200);
    for (pipeline, id) in &ids {
        let outcome = finished(&server, pipeline, id);
        let failed = failed_action(&outcome);
        assert_eq!(failed["error"]["exceptionType"], "Action.FAILED", "{pipeline}: {failed}");
        assert!(failed["error"]["message"].as_str().unwrap().contains("FIFO"), "{pipeline}: says what the file is: {failed}");
    }
    assert!(started.elapsed() < Duration::from_secs(30), "far sooner than the action's timeout");
    let later = start(&server, "small");
    assert_eq!(finished(&server, "small", &later)["status"], "Succeeded");
}

#[test]
fn a_second_server_through_a_symlink_or_hard_link_is_refused() {
    let sb = Sandbox::new();
    let _first = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    std::os::unix::fs::symlink(sb.db(), sb.path("sym.db")).unwrap();
    std::fs::hard_link(sb.db(), sb.path("hard.db")).unwrap();
    for other in ["sym.db", "hard.db"] {
        let out = common::bin().args(["server", "--listen", "127.0.0.1:0", "--db"]).arg(sb.path(other)).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{other}: {stderr}");
        assert!(stderr.contains("in use by another redrive process"), "{other}: {stderr}");
    }
}

/// The database deleted underneath a running server: the next write is refused
/// as lost, the engine stops, and the process exits non-zero with the reason
/// (a supervisor restarts it) instead of answering `Succeeded` from a file
/// nobody will see again.
#[test]
fn a_deleted_database_stops_the_server_with_a_non_zero_exit() {
    let sb = Sandbox::new();
    let mut cmd = server_command(&sb, "127.0.0.1:0");
    let mut server = start_server(&mut cmd);
    create(&server, small());
    std::fs::remove_file(sb.db()).unwrap();
    let (status, body) = http(&server.addr, "POST", "/v1/pipelines/small/executions", Some(json!({})));
    assert_ne!(status, 201, "a start after the file is gone is not acknowledged: {body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "the server kept running on a deleted database");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(3), "a fatal stop exits with the engine-error status");
}

/// A real full filesystem (a small tmpfs; needs root to mount): the server is
/// degraded — /readyz 503 with the reason, changes 503 with Retry-After — and
/// recovers by itself when space is freed; nothing acknowledged is lost.
#[test]
fn a_full_disk_degrades_the_server_until_space_is_freed() {
    let sb = Sandbox::new();
    let Some(small_fs) = SmallFs::mount(&sb) else { return };
    let mount = small_fs.0.clone();
    let db = mount.join("redrive.db");
    let mut cmd = common::bin();
    cmd.args(["server", "--listen", "127.0.0.1:0", "--db"]).arg(&db);
    let server = start_server(&mut cmd);
    create(&server, small());
    let before = start(&server, "small");
    assert_eq!(finished(&server, "small", &before)["status"], "Succeeded");

    // Fill the filesystem, then keep starting executions until a commit fails.
    let filler = mount.join("filler");
    let _ = std::process::Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", filler.display())).args(["bs=64k"]).output();
    let deadline = Instant::now() + Duration::from_secs(30);
    let degraded = loop {
        let (status, body) = http(&server.addr, "GET", "/readyz", None);
        if status == 503 {
            break body;
        }
        // Starts fill what is left (the WAL grows); some may still be acknowledged.
        let _ = http(&server.addr, "POST", "/v1/pipelines/small/executions", Some(json!({"input": {"pad": "x".repeat(100_000)}})));
        assert!(Instant::now() < deadline, "the server never noticed the full disk");
    };
    assert_eq!(degraded["status"], "degraded", "{degraded}");
    assert!(degraded["reason"].as_str().unwrap().contains("full"), "the reason names the fault: {degraded}");
    let (status, raw) = raw_http(&server.addr, "POST /v1/pipelines/small/executions", "{}");
    assert_eq!(status, 503, "{raw}");
    assert!(raw.to_ascii_lowercase().contains("retry-after:"), "{raw}");
    let (status, _) = http(&server.addr, "GET", "/healthz", None);
    assert_eq!(status, 200, "liveness stays true while degraded");

    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http(&server.addr, "GET", "/readyz", None).0 != 200 {
        assert!(Instant::now() < deadline, "the server did not recover after space was freed");
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = start(&server, "small");
    assert_eq!(finished(&server, "small", &after)["status"], "Succeeded");
    assert_eq!(finished(&server, "small", &before)["status"], "Succeeded", "what was acknowledged before is kept");
    drop(server);
}

/// `redrive run` on a filesystem that fills up while it runs: it waits, says
/// why on stderr, and finishes once space is freed.
#[test]
fn run_waits_for_a_full_disk_and_says_why() {
    use std::io::{BufRead, BufReader};
    let sb = Sandbox::new();
    let Some(small_fs) = SmallFs::mount(&sb) else { return };
    let mount = small_fs.0.clone();
    let stages: Vec<Value> = (1..=3)
        .map(|i| json!({"name": format!("S{i}"), "actions": [{"name": "A", "noop": {"sleepMs": 800, "failFirst": 1, "failWith": "Step.THROTTLING"}, "retryPolicies": [{"exceptionType": "Step.THROTTLING", "intervalSeconds": 0.1}]}]}))
        .collect();
    let file = sb.write("p.json", &json!({"name": "slow", "stages": stages}).to_string());
    let mut child = common::bin()
        .arg("run")
        .arg(&file)
        .arg("--db")
        .arg(mount.join("redrive.db"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |what: &str, pred: &dyn Fn(&str) -> bool| loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if pred(&line) => break line,
            Ok(_) => {}
            Err(e) => panic!("run never printed {what} ({e})"),
        }
    };
    wait_for("that the execution started", &|l| l.contains("started"));
    let filler = mount.join("filler");
    let _ = std::process::Command::new("dd").arg("if=/dev/zero").arg(format!("of={}", filler.display())).args(["bs=4k"]).output();
    let said = wait_for("why it waits", &|l| l.contains("full"));
    assert!(said.contains("retrying"), "{said}");
    assert!(child.try_wait().unwrap().is_none(), "it waits instead of failing");
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "run did not finish after space was freed");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0), "the execution succeeded");
}

/// A 4 MiB tmpfs in the sandbox, unmounted on drop; `None` (with the reason
/// printed) where it cannot be mounted (not root).
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(sb: &Sandbox) -> Option<SmallFs> {
        let mount = sb.path("tmpfs");
        std::fs::create_dir(&mount).unwrap();
        let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"]).arg(&mount).output();
        if !mounted.as_ref().is_ok_and(|o| o.status.success()) {
            let why = mounted.map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_else(|e| e.to_string());
            println!("skipped: cannot mount a tmpfs here (needs root): {}", why.trim());
            return None;
        }
        Some(SmallFs(mount))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// One request; (status, the whole raw response with headers).
fn raw_http(addr: &str, request_line: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{request_line} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out[9..12].parse().unwrap(), out)
}
