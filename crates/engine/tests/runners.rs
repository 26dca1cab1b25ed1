//! Runner classification tests (PRODUCT.md §3): real processes, a real local
//! HTTP responder on std::net, scripted noop outcomes.

use redrive_core::definition::{CommandSpec, HttpSpec, NoopSpec, RedirectMode};
use redrive_core::exception::ExceptionType;
use redrive_engine::runner::{
    AttemptContext, AttemptOutcome, HttpClient, http_client, http_time_limit, noop_outcome, parse_retry_after, remove_stale_attempt_dirs,
    run_command, run_http, run_noop,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

fn ctx() -> AttemptContext {
    AttemptContext {
        execution_id: "0b6f2a52-0000-4000-8000-000000000001".into(),
        stage: "Build".into(),
        action: "Compile".into(),
        series: 1,
        attempt: 1,
        idempotency_key: "exec1-Build-Compile".into(),
        timeout: None,
        base_dir: None,
        input_json: r#"{"x":1}"#.into(),
        clock: Default::default(),
        secrets: Default::default(),
    }
}

fn cmd(argv: &[&str]) -> CommandSpec {
    CommandSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
        secret_env: Vec::new(),
        working_directory: None,
        exit_codes: BTreeMap::new(),
    }
}

fn sh(script: &str) -> CommandSpec {
    cmd(&["sh", "-c", script])
}

#[track_caller]
fn expect_failure(o: &AttemptOutcome, t: ExceptionType) -> redrive_core::exception::Failure {
    match o {
        AttemptOutcome::Failed(f) => {
            assert_eq!(f.exception_type, t, "{f:?}");
            f.clone()
        }
        other => panic!("expected failure {t}, got {other:?}"),
    }
}

#[track_caller]
fn expect_output(o: &AttemptOutcome) -> Option<serde_json::Value> {
    match o {
        AttemptOutcome::Succeeded { output } => output.clone(),
        other => panic!("expected success, got {other:?}"),
    }
}

/// Whether a process is gone (or a zombie waiting for its new parent to reap it).
fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().map(|s| s.trim_start().starts_with('Z')).unwrap_or(true),
    }
}

fn wait_gone(pid: i32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

// ---------------------------------------------------------------- commands

#[tokio::test]
async fn command_success_with_output_file() {
    let o = run_command(&sh(r#"echo '{"rows": 42, "ok": true}' > "$REDRIVE_OUTPUT_FILE""#), &ctx()).await;
    assert_eq!(expect_output(&o), Some(json!({"rows": 42, "ok": true})));
}

#[tokio::test]
async fn command_success_without_output_file() {
    let o = run_command(&cmd(&["true"]), &ctx()).await;
    assert_eq!(expect_output(&o), None);
    let o = run_command(&sh(r#": > "$REDRIVE_OUTPUT_FILE""#), &ctx()).await;
    assert_eq!(expect_output(&o), None, "an empty output file is no output");
}

#[tokio::test]
async fn command_invalid_or_huge_output_file_fails() {
    let o = run_command(&sh(r#"echo 'not json' > "$REDRIVE_OUTPUT_FILE""#), &ctx()).await;
    let f = expect_failure(&o, ExceptionType::ActionFailed);
    assert!(f.message.contains("not valid JSON"), "{}", f.message);

    let o = run_command(&sh(r#"head -c 2000000 /dev/zero > "$REDRIVE_OUTPUT_FILE""#), &ctx()).await;
    let f = expect_failure(&o, ExceptionType::LimitExceeded);
    assert_eq!(f.message, "the output of action Build/Compile ($REDRIVE_OUTPUT_FILE) is 2000000 bytes; the maximum is 1048576 bytes");
}

#[tokio::test]
async fn command_error_file_custom_type_and_retry_after() {
    let script =
        r#"echo '{"errorType": "PaymentDeclined", "message": "card expired", "retryAfterSeconds": 7.5}' > "$REDRIVE_ERROR_FILE"; exit 1"#;
    let o = run_command(&sh(script), &ctx()).await;
    let f = expect_failure(&o, ExceptionType::Custom("PaymentDeclined".into()));
    assert_eq!(f.message, "card expired");
    assert_eq!(f.retry_after_ms, Some(7500));

    // A known type through an alias.
    let script = r#"echo '{"errorType": "SageMaker.CAPACITY_ERROR"}' > "$REDRIVE_ERROR_FILE"; echo boom >&2; exit 2"#;
    let f = expect_failure(&run_command(&sh(script), &ctx()).await, ExceptionType::JobCapacityError);
    assert_eq!(f.message, "exit code 2: boom");
    assert_eq!(f.retry_after_ms, None);
}

#[tokio::test]
async fn command_error_file_invalid_type_is_action_failed() {
    let script = r#"echo '{"errorType": "Step.NOPE", "message": "hm"}' > "$REDRIVE_ERROR_FILE"; exit 75"#;
    let mut spec = sh(script);
    spec.exit_codes.insert(75, ExceptionType::Throttling);
    let f = expect_failure(&run_command(&spec, &ctx()).await, ExceptionType::ActionFailed);
    assert!(f.message.contains("Step.NOPE") && f.message.contains("hm"), "{}", f.message);

    // Unparseable file: falls back to exitCodes, and says so.
    let spec = {
        let mut s = sh(r#"echo 'garbage' > "$REDRIVE_ERROR_FILE"; exit 75"#);
        s.exit_codes.insert(75, ExceptionType::Throttling);
        s
    };
    let f = expect_failure(&run_command(&spec, &ctx()).await, ExceptionType::Throttling);
    assert!(f.message.starts_with("exit code 75") && f.message.contains("not valid JSON"), "{}", f.message);
}

#[tokio::test]
async fn command_error_file_ignored_on_success() {
    let o = run_command(&sh(r#"echo '{"errorType": "X"}' > "$REDRIVE_ERROR_FILE"; exit 0"#), &ctx()).await;
    assert_eq!(expect_output(&o), None);
}

#[tokio::test]
async fn command_exit_codes_mapping() {
    let mut spec = sh("echo 'slow down' >&2; exit 75");
    spec.exit_codes.insert(75, ExceptionType::Throttling);
    spec.exit_codes.insert(76, ExceptionType::Custom("Quota".into()));
    let f = expect_failure(&run_command(&spec, &ctx()).await, ExceptionType::Throttling);
    assert_eq!(f.message, "exit code 75: slow down");

    let mut spec76 = spec.clone();
    spec76.argv[2] = "exit 76".into();
    expect_failure(&run_command(&spec76, &ctx()).await, ExceptionType::Custom("Quota".into()));

    let mut spec3 = spec.clone();
    spec3.argv[2] = "exit 3".into();
    let f = expect_failure(&run_command(&spec3, &ctx()).await, ExceptionType::ActionFailed);
    assert_eq!(f.message, "exit code 3");
}

#[tokio::test]
async fn command_plain_nonzero_is_action_failed_with_stderr() {
    let script = "echo progress; echo 'warning: first' >&2; echo >&2; echo 'fatal: disk on fire' >&2; exit 1";
    let f = expect_failure(&run_command(&sh(script), &ctx()).await, ExceptionType::ActionFailed);
    assert_eq!(f.message, "exit code 1: warning: first | fatal: disk on fire");

    // Huge stderr: only the tail is kept, the message stays small.
    let script = "head -c 3000000 /dev/zero | tr '\\0' x >&2; echo >&2; echo 'the real error' >&2; exit 9";
    let f = expect_failure(&run_command(&sh(script), &ctx()).await, ExceptionType::ActionFailed);
    assert!(f.message.len() <= 600, "{} bytes", f.message.len());
    assert!(f.message.starts_with("exit code 9: ") && f.message.ends_with("the real error"), "{}", f.message);

    // No stderr: stdout's last line stands in.
    let f = expect_failure(&run_command(&sh("echo 'only stdout'; exit 4"), &ctx()).await, ExceptionType::ActionFailed);
    assert_eq!(f.message, "exit code 4: only stdout");
}

#[tokio::test]
async fn command_timeout_kills_it() {
    let mut c = ctx();
    c.timeout = Some(Duration::from_millis(300));
    let start = Instant::now();
    let f = expect_failure(&run_command(&cmd(&["sleep", "30"]), &c).await, ExceptionType::Timeout);
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    assert_eq!(f.message, "timed out after 0.3s");

    c.timeout = Some(Duration::from_secs(1));
    let f = expect_failure(&run_command(&cmd(&["sleep", "30"]), &c).await, ExceptionType::Timeout);
    assert_eq!(f.message, "timed out after 1s");
}

#[tokio::test]
async fn command_timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let mut c = ctx();
    c.timeout = Some(Duration::from_millis(500));
    let script = format!("sleep 30 & echo $! > '{}'; wait", pidfile.display());
    let start = Instant::now();
    expect_failure(&run_command(&sh(&script), &c).await, ExceptionType::Timeout);
    // The grandchild holds stdout open: returning promptly means the group died.
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(wait_gone(pid), "grandchild {pid} survived the timeout");
}

#[tokio::test]
async fn command_background_leftovers_do_not_outlive_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("sleep 30 & echo $! > '{}'; echo done", pidfile.display());
    let start = Instant::now();
    let o = run_command(&sh(&script), &ctx()).await;
    assert_eq!(expect_output(&o), None);
    assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(wait_gone(pid), "background {pid} survived the attempt");
}

#[tokio::test]
async fn command_killed_by_signal_is_job_internal_error() {
    let f = expect_failure(&run_command(&sh("kill -9 $$"), &ctx()).await, ExceptionType::JobInternalError);
    assert_eq!(f.message, "killed by signal 9 (SIGKILL)");
    let f = expect_failure(&run_command(&sh("echo dying >&2; kill -TERM $$"), &ctx()).await, ExceptionType::JobInternalError);
    assert_eq!(f.message, "killed by signal 15 (SIGTERM): dying");
}

#[tokio::test]
async fn command_program_not_found() {
    let f = expect_failure(&run_command(&cmd(&["redrive-no-such-program-xyz", "a"]), &ctx()).await, ExceptionType::ActionFailed);
    assert!(f.message.starts_with("failed to start redrive-no-such-program-xyz: "), "{}", f.message);

    // Not executable.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
    let f = expect_failure(&run_command(&cmd(&[script.to_str().unwrap()]), &ctx()).await, ExceptionType::ActionFailed);
    assert!(f.message.contains("failed to start") && f.message.to_lowercase().contains("permission"), "{}", f.message);

    let f = expect_failure(&run_command(&cmd(&[]), &ctx()).await, ExceptionType::ActionFailed);
    assert!(f.message.contains("empty argv"), "{}", f.message);
}

#[tokio::test]
async fn command_env_vars_are_visible() {
    let mut c = ctx();
    c.attempt = 3;
    let mut spec = sh(
        r#"printf '{"attempt": %s, "key": "%s", "exec": "%s", "stage": "%s", "action": "%s", "input": %s, "custom": "%s", "same": %s}' \
            "$REDRIVE_ATTEMPT" "$REDRIVE_IDEMPOTENCY_KEY" "$REDRIVE_EXECUTION_ID" "$REDRIVE_STAGE" "$REDRIVE_ACTION" \
            "$REDRIVE_INPUT" "$MY_VAR" "$(cat "$REDRIVE_INPUT_FILE")" > "$REDRIVE_OUTPUT_FILE";
           test ! -e "$REDRIVE_ERROR_FILE""#,
    );
    spec.env.insert("MY_VAR".into(), "hello".into());
    spec.env.insert("REDRIVE_ATTEMPT".into(), "99".into()); // ours win
    let out = expect_output(&run_command(&spec, &c).await).unwrap();
    assert_eq!(
        out,
        json!({"attempt": 3, "key": "exec1-Build-Compile", "exec": c.execution_id, "stage": "Build",
               "action": "Compile", "input": {"x": 1}, "custom": "hello", "same": {"x": 1}})
    );
}

#[tokio::test]
async fn command_huge_stdout_is_drained_not_buffered() {
    let o = run_command(&cmd(&["head", "-c", "10000000", "/dev/zero"]), &ctx()).await;
    assert_eq!(expect_output(&o), None);
}

#[tokio::test]
async fn command_working_directory_and_relative_program() {
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("sub")).unwrap();
    std::fs::create_dir(base.path().join("bin")).unwrap();
    let tool = base.path().join("bin/tool.sh");
    std::fs::write(&tool, "#!/bin/sh\nprintf '\"%s\"' \"$(pwd)\" > \"$REDRIVE_OUTPUT_FILE\"\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let base_path = base.path().canonicalize().unwrap();

    let mut c = ctx();
    c.base_dir = Some(base_path.clone());
    // Default working directory is base_dir; ./bin/tool.sh resolves against it.
    let out = expect_output(&run_command(&cmd(&["./bin/tool.sh"]), &c).await).unwrap();
    assert_eq!(out, json!(base_path.to_str().unwrap()));
    // Relative workingDirectory resolves against base_dir, and the program still
    // resolves against base_dir, not against the working directory.
    let mut spec = cmd(&["bin/tool.sh"]);
    spec.working_directory = Some("sub".into());
    let out = expect_output(&run_command(&spec, &c).await).unwrap();
    assert_eq!(out, json!(base_path.join("sub").to_str().unwrap()));

    spec.working_directory = Some("missing".into());
    let f = expect_failure(&run_command(&spec, &c).await, ExceptionType::ActionFailed);
    assert!(f.message.contains("working directory") && f.message.contains("does not exist"), "{}", f.message);
    assert!(f.message.contains(base_path.join("missing").to_str().unwrap()), "{}", f.message);
}

#[tokio::test]
async fn command_dropped_attempt_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let spec = sh(&format!("echo $$ > '{}'; sleep 30", pidfile.display()));
    let c = ctx();
    let r = tokio::time::timeout(Duration::from_millis(500), run_command(&spec, &c)).await;
    assert!(r.is_err());
    let pid: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(wait_gone(pid), "{pid} survived a cancelled attempt");
}

/// Helper half of `command_dies_with_redrive`: only acts when run as that
/// test's child process.
#[tokio::test]
async fn helper_run_a_long_command() {
    let Ok(pidfile) = std::env::var("REDRIVE_TEST_PIDFILE") else {
        return;
    };
    // The real work runs in a grandchild, out of PR_SET_PDEATHSIG's reach; a
    // third process leaves the group and the session.
    let spec = sh(&format!(
        "sleep 30 & g=$!; setsid sleep 30 </dev/null >/dev/null 2>&1 & e=$!; \
         echo \"$$ $g $e $(dirname \"$REDRIVE_OUTPUT_FILE\") $(sed -n 's/^0:://p' /proc/self/cgroup)\" > '{pidfile}.tmp'; \
         mv '{pidfile}.tmp' '{pidfile}'; wait"
    ));
    let _ = run_command(&spec, &ctx()).await;
}

#[test]
fn command_dies_with_redrive() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let mut helper = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_run_a_long_command", "--nocapture"])
        .env("REDRIVE_TEST_PIDFILE", &pidfile)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let record: Vec<String> = loop {
        if let Ok(s) = std::fs::read_to_string(&pidfile) {
            break s.split_whitespace().map(str::to_string).collect();
        }
        assert!(Instant::now() < deadline, "helper never started the command");
        std::thread::sleep(Duration::from_millis(20));
    };
    let [leader, grandchild, escaped, scratch, cgroup] = &record[..] else { panic!("unexpected record {record:?}") };
    let pids: Vec<i32> = [leader, grandchild].iter().map(|p| p.parse().unwrap()).collect();
    let escaped: i32 = escaped.parse().unwrap();
    assert!(pids.iter().all(|p| !process_gone(*p)));
    helper.kill().unwrap(); // SIGKILL: no destructor, no guard runs
    helper.wait().unwrap();
    for pid in pids {
        assert!(wait_gone(pid), "{pid} outlived a kill -9 of redrive");
    }
    let cgroup_dir = cgroup2_mount().map(|m| m.join(cgroup.trim_start_matches('/')));
    let in_cgroup = cgroup.contains("redrive-attempt-");
    if in_cgroup {
        // The watchdog killed the attempt's cgroup: the escapee is gone too.
        assert!(wait_gone(escaped), "{escaped} (left the group) outlived a kill -9 of redrive");
    }
    // The crash left the attempt's directories: the next start removes them.
    assert!(Path::new(scratch).is_dir(), "{scratch}");
    wait_for("stale attempt directories removed", 10, || {
        remove_stale_attempt_dirs().unwrap();
        !Path::new(scratch).exists() && !cgroup_dir.as_ref().is_some_and(|d| in_cgroup && d.exists())
    });
    if !in_cgroup {
        // Tracked by marker only: an escapee survives a crash (documented).
        let _ = std::process::Command::new("kill").args(["-KILL", &escaped.to_string()]).status();
    }
}

// ---------------------------------------------------------------- HTTP

#[derive(Debug)]
struct Recorded {
    request_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct Reply {
    status: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

fn reply(status: &'static str, body: &str) -> Reply {
    Reply { status, headers: Vec::new(), body: body.to_string(), delay: Duration::ZERO }
}

impl Reply {
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Reply {
        self.headers.push((k, v.into()));
        self
    }
}

/// Serves one scripted reply per connection, in order, on a fresh port.
fn serve(replies: Vec<Reply>) -> (String, mpsc::Receiver<Recorded>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for r in replies {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            if let Some(rec) = read_request(&stream) {
                let _ = tx.send(rec);
            }
            std::thread::sleep(r.delay);
            let mut out = format!("HTTP/1.1 {}\r\nContent-Length: {}\r\nConnection: close\r\n", r.status, r.body.len());
            for (k, v) in &r.headers {
                out.push_str(&format!("{k}: {v}\r\n"));
            }
            out.push_str("\r\n");
            out.push_str(&r.body);
            let mut s = stream;
            let _ = s.write_all(out.as_bytes());
            let _ = s.flush();
        }
    });
    (url, rx)
}

fn read_request(stream: &TcpStream) -> Option<Recorded> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let len: usize = headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Recorded { request_line: request_line.trim_end().to_string(), headers, body: String::from_utf8_lossy(&body).into() })
}

fn http(method: &str, url: &str) -> HttpSpec {
    HttpSpec {
        method: method.into(),
        url: url.into(),
        headers: BTreeMap::new(),
        secret_headers: BTreeMap::new(),
        body: None,
        redirects: None,
    }
}

#[tokio::test]
async fn http_200_json_is_output_and_headers_arrive() {
    let (url, rx) = serve(vec![reply("200 OK", r#"{"id": 7}"#).header("Content-Type", "application/json")]);
    let mut spec = http("POST", &format!("{url}/jobs"));
    spec.body = Some(json!({"name": "train"}));
    let mut c = ctx();
    c.attempt = 2;
    let o = run_http(&http_client(), &spec, &c).await;
    assert_eq!(expect_output(&o), Some(json!({"id": 7})));
    let req = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(req.request_line, "POST /jobs HTTP/1.1");
    assert_eq!(req.header("Idempotency-Key"), Some("exec1-Build-Compile"));
    assert_eq!(req.header("X-Redrive-Attempt"), Some("2"));
    assert_eq!(req.header("Content-Type"), Some("application/json"));
    assert!(req.header("User-Agent").unwrap().starts_with("redrive/"));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&req.body).unwrap(), json!({"name": "train"}));
}

#[tokio::test]
async fn http_secret_headers_are_sent_and_scrubbed_from_what_comes_back() {
    use redrive_core::definition::SecretHeader;
    let (c, _dir) = with_secrets("API_TOKEN=s3cr3t-val\n");
    let (url, rx) = serve(vec![
        reply("200 OK", r#"{"echo": "Bearer s3cr3t-val", "s3cr3t-val": 1}"#).header("Content-Type", "application/json"),
        reply("401 Unauthorized", "token Bearer s3cr3t-val refused"),
    ]);
    let mut spec = http("GET", &url);
    let header = |name: &str, prefix: &str| SecretHeader { secret_env: name.into(), prefix: prefix.into() };
    spec.secret_headers.insert("Authorization".into(), header("API_TOKEN", "Bearer "));
    let o = run_http(&http_client(), &spec, &c).await;
    assert_eq!(expect_output(&o), Some(json!({"echo": "Bearer ***", "***": 1})), "an echo of the header is scrubbed");
    let req = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(req.header("Authorization"), Some("Bearer s3cr3t-val"), "the secret is sent");
    let f = expect_failure(&run_http(&http_client(), &spec, &c).await, ExceptionType::ActionFailed);
    assert!(f.message.contains("token Bearer *** refused") && !f.message.contains("s3cr3t"), "{}", f.message);
    spec.secret_headers.insert("X-Other".into(), header("NOT_THERE", ""));
    let f = expect_failure(&run_http(&http_client(), &spec, &c).await, ExceptionType::SecretMissing);
    assert!(f.message.contains("secret NOT_THERE is not set in the secrets file"), "{}", f.message);
}

#[tokio::test]
async fn http_string_body_and_own_headers() {
    let (url, rx) = serve(vec![reply("204 No Content", "")]);
    let mut spec = http("PUT", &url);
    spec.body = Some(json!("a=1&b=2"));
    spec.headers.insert("Content-Type".into(), "application/x-www-form-urlencoded".into());
    spec.headers.insert("idempotency-key".into(), "mine".into());
    let o = run_http(&http_client(), &spec, &ctx()).await;
    assert_eq!(expect_output(&o), Some(json!({"status": 204, "body": ""})));
    let req = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(req.body, "a=1&b=2");
    assert_eq!(req.header("Content-Type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(req.header("Idempotency-Key"), Some("mine"));
    assert_eq!(req.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("idempotency-key")).count(), 1);
}

#[tokio::test]
async fn http_200_text_body() {
    let (url, _rx) = serve(vec![reply("200 OK", "plain ok")]);
    let o = run_http(&http_client(), &http("GET", &url), &ctx()).await;
    assert_eq!(expect_output(&o), Some(json!({"status": 200, "body": "plain ok"})));
}

#[tokio::test]
async fn http_429_is_throttling_with_retry_after() {
    let (url, _rx) = serve(vec![reply("429 Too Many Requests", "slow down").header("Retry-After", "2")]);
    let f = expect_failure(&run_http(&http_client(), &http("GET", &url), &ctx()).await, ExceptionType::Throttling);
    assert_eq!(f.retry_after_ms, Some(2000));
    assert_eq!(f.message, "HTTP 429 Too Many Requests: slow down");
}

#[tokio::test]
async fn http_503_with_and_without_retry_after() {
    let (url, _rx) =
        serve(vec![reply("503 Service Unavailable", "").header("Retry-After", "1.5"), reply("503 Service Unavailable", "down")]);
    let client = http_client();
    let f = expect_failure(&run_http(&client, &http("GET", &url), &ctx()).await, ExceptionType::Throttling);
    assert_eq!(f.retry_after_ms, Some(1500));
    assert_eq!(f.message, "HTTP 503 Service Unavailable");
    let f = expect_failure(&run_http(&client, &http("GET", &url), &ctx()).await, ExceptionType::ServiceFault);
    assert_eq!(f.retry_after_ms, None);
}

#[tokio::test]
async fn http_503_with_http_date_retry_after() {
    let in_a_minute = SystemTime::now() + Duration::from_secs(90);
    let date = httpdate::fmt_http_date(in_a_minute);
    let (url, _rx) = serve(vec![reply("503 Service Unavailable", "").header("Retry-After", date)]);
    let f = expect_failure(&run_http(&http_client(), &http("GET", &url), &ctx()).await, ExceptionType::Throttling);
    let ms = f.retry_after_ms.unwrap();
    assert!((85_000..=91_000).contains(&ms), "{ms}");
}

#[tokio::test]
async fn http_5xx_and_408_are_service_faults() {
    let statuses =
        ["500 Internal Server Error", "502 Bad Gateway", "504 Gateway Timeout", "507 Insufficient Storage", "408 Request Timeout"];
    let (url, _rx) = serve(statuses.iter().map(|s| reply(s, "oops")).collect());
    let client = http_client();
    for s in statuses {
        let f = expect_failure(&run_http(&client, &http("GET", &url), &ctx()).await, ExceptionType::ServiceFault);
        assert_eq!(f.message, format!("HTTP {s}: oops"));
    }
}

#[tokio::test]
async fn http_4xx_is_action_failed() {
    let long = "x".repeat(5000);
    let (url, _rx) = serve(vec![reply("404 Not Found", "no such job"), reply("400 Bad Request", &long)]);
    let client = http_client();
    let f = expect_failure(&run_http(&client, &http("GET", &url), &ctx()).await, ExceptionType::ActionFailed);
    assert_eq!(f.message, "HTTP 404 Not Found: no such job");
    let f = expect_failure(&run_http(&client, &http("GET", &url), &ctx()).await, ExceptionType::ActionFailed);
    assert!(f.message.len() <= "HTTP 400 Bad Request: ".len() + 300, "{}", f.message.len());
}

#[tokio::test]
async fn http_reported_error_type_in_body_wins() {
    let (url, _rx) = serve(vec![
        reply("402 Payment Required", r#"{"errorType": "PaymentDeclined", "message": "card expired", "retryAfterSeconds": 30}"#),
        reply("500 Internal Server Error", r#"{"errorType": "Step.BOGUS"}"#),
    ]);
    let client = http_client();
    let f = expect_failure(&run_http(&client, &http("POST", &url), &ctx()).await, ExceptionType::Custom("PaymentDeclined".into()));
    assert_eq!(f.message, "HTTP 402 Payment Required: card expired");
    assert_eq!(f.retry_after_ms, Some(30_000));
    let f = expect_failure(&run_http(&client, &http("POST", &url), &ctx()).await, ExceptionType::ServiceFault);
    assert!(f.message.contains("Step.BOGUS"), "{}", f.message);
}

#[tokio::test]
async fn http_connection_refused_is_service_fault() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let f = expect_failure(
        &run_http(&http_client(), &http("GET", &format!("http://127.0.0.1:{port}/")), &ctx()).await,
        ExceptionType::ServiceFault,
    );
    assert!(f.message.to_lowercase().contains("refused"), "{}", f.message);
}

#[tokio::test]
async fn http_timeout() {
    let (url, _rx) = serve(vec![Reply { delay: Duration::from_secs(3), ..reply("200 OK", "late") }]);
    let mut c = ctx();
    c.timeout = Some(Duration::from_millis(300));
    let start = Instant::now();
    let f = expect_failure(&run_http(&http_client(), &http("GET", &url), &c).await, ExceptionType::Timeout);
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    assert_eq!(f.message, "timed out after 0.3s");
}

#[tokio::test]
async fn http_bad_configuration_is_action_failed() {
    let client = http_client();
    let f = expect_failure(&run_http(&client, &http("GET", "not a url"), &ctx()).await, ExceptionType::ActionFailed);
    assert!(f.message.contains("not a url"), "{}", f.message);
    let mut spec = http("GET", "http://127.0.0.1:1/");
    spec.headers.insert("bad header".into(), "v".into());
    let f = expect_failure(&run_http(&client, &spec, &ctx()).await, ExceptionType::ActionFailed);
    assert!(f.message.contains("bad header"), "{}", f.message);
}

#[test]
fn retry_after_parsing() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
    assert_eq!(parse_retry_after("2", now), Some(2000));
    assert_eq!(parse_retry_after("0.25", now), Some(250));
    assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now), Some(10_000));
    assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(0));
    assert_eq!(parse_retry_after("whenever", now), None);
}

// ---------------------------------------------------------------- noop

fn noop(fail_first: u32, sleep_ms: u64) -> NoopSpec {
    NoopSpec { fail_first, fail_with: ExceptionType::Throttling, sleep_ms, retry_after_seconds: Some(1.5) }
}

#[test]
fn noop_fails_the_first_attempts_then_succeeds() {
    let spec = noop(2, 0);
    for a in 1..=2 {
        let f = expect_failure(&noop_outcome(&spec, a), ExceptionType::Throttling);
        assert_eq!(f.message, format!("noop: scripted failure {a} of 2"));
        assert_eq!(f.retry_after_ms, Some(1500));
    }
    assert_eq!(expect_output(&noop_outcome(&spec, 3)), Some(json!({"attempt": 3})));
    assert_eq!(expect_output(&noop_outcome(&noop(0, 0), 1)), Some(json!({"attempt": 1})));
}

/// A noop sleeps and times out on the engine's clock: virtual time here, so the
/// test advances the clock and never waits for the wall clock.
#[tokio::test]
async fn noop_sleeps_and_times_out_on_the_engines_clock() {
    use redrive_engine::runner::AttemptClock;
    use redrive_engine::{Clock, ManualClock};
    let clock = std::sync::Arc::new(ManualClock::new(redrive_core::time::Timestamp::from_unix_ms(1_000_000)));
    let mut c = ctx();
    c.attempt = 2;
    c.clock = AttemptClock(clock.clone());
    // Waits until the task is parked on the clock (it polls a sleep that is not due).
    async fn parked(task: &tokio::task::JoinHandle<AttemptOutcome>) {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!task.is_finished(), "the noop finished before its time");
    }
    let sleeping = tokio::spawn({
        let c = c.clone();
        async move { run_noop(&noop(1, 100), &c).await }
    });
    parked(&sleeping).await;
    clock.advance(99);
    parked(&sleeping).await;
    clock.advance(1);
    let done = tokio::time::timeout(Duration::from_secs(10), sleeping).await.expect("woken at 100 ms").unwrap();
    assert_eq!(expect_output(&done), Some(json!({"attempt": 2})));

    c.timeout = Some(Duration::from_millis(50));
    let timing_out = tokio::spawn({
        let c = c.clone();
        async move { run_noop(&noop(1, 10_000), &c).await }
    });
    parked(&timing_out).await;
    clock.advance(49);
    parked(&timing_out).await;
    clock.advance(1);
    let done = tokio::time::timeout(Duration::from_secs(10), timing_out).await.expect("timed out at 50 ms").unwrap();
    let f = expect_failure(&done, ExceptionType::Timeout);
    assert_eq!(f.message, "timed out after 0.05s");
    assert_eq!(clock.now(), redrive_core::time::Timestamp::from_unix_ms(1_000_150));
}

// ------------------------------------------- resource hygiene under bad actions
//
// Each bad action must end its attempt with a clear classification, leave no
// process, descriptor, directory or cgroup behind, and never stall the runtime.

/// What `/proc/<pid>/stat` says (state, parent, start ticks).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Stat {
    state: char,
    ppid: i32,
    start: u64,
}

fn stat_of(pid: i32) -> Option<Stat> {
    let line = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = line.rsplit_once(')')?.1.split_whitespace().collect();
    Some(Stat { state: f[0].chars().next()?, ppid: f[1].parse().ok()?, start: f[19].parse().ok()? })
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// A process, told apart from a later one with the same pid.
#[derive(Clone, Copy, Debug)]
struct Proc {
    pid: i32,
    start: u64,
}

impl Proc {
    fn of(pid: i32) -> Proc {
        let start = stat_of(pid).unwrap_or_else(|| panic!("process {pid} is not there")).start;
        Proc { pid, start }
    }

    /// Gone and reaped (not even a zombie left).
    fn reaped(&self) -> bool {
        stat_of(self.pid).is_none_or(|s| s.start != self.start)
    }
}

/// Polls `cond` until it holds; fails the test after `secs` seconds.
#[track_caller]
fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The content of a file a child script writes (once complete: ends in a newline).
#[track_caller]
fn written(path: &Path) -> String {
    let mut text = String::new();
    wait_for(&format!("{} to be written", path.display()), 10, || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.ends_with('\n')
    });
    text.trim().to_string()
}

/// Processes whose environment holds exactly `entry` (`NAME=value`).
fn processes_with_env(entry: &str) -> Vec<i32> {
    let has =
        |pid: i32| std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == entry.as_bytes()));
    all_pids().into_iter().filter(|p| has(*p)).collect()
}

/// This process as the runner names its engine: `<pid>-<start ticks>`.
fn engine_id() -> String {
    let pid = std::process::id() as i32;
    format!("{pid}-{}", Proc::of(pid).start)
}

/// Where cgroup v2 is mounted, if it is.
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let line = info.lines().find(|l| l.split_once(" - ").is_some_and(|(_, fs)| fs.starts_with("cgroup2 ")))?;
    Some(PathBuf::from(line.split_whitespace().nth(4)?))
}

/// This process's cgroup v2 directory (where attempt cgroups are made), if any.
fn own_cgroup_dir() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim_start_matches('/').to_string();
    Some(cgroup2_mount()?.join(own))
}

struct Isolated {
    outcome: AttemptOutcome,
    elapsed: Duration,
    /// The longest a 10 ms heartbeat task on the same runtime waited.
    max_stall: Duration,
}

/// Runs an attempt on a runtime of its own with one worker thread (a small
/// server), beside a heartbeat task. Fails the test if the attempt does not end
/// within `limit`: a runner that blocks its thread would otherwise hang it.
#[track_caller]
fn isolated<F, Fut>(limit: Duration, attempt: F) -> Isolated
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = AttemptOutcome> + Send + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let result = rt.block_on(async move {
            let stall = std::sync::Arc::new(std::sync::Mutex::new(Duration::ZERO));
            let heartbeat = tokio::spawn(heartbeat(stall.clone()));
            let start = Instant::now();
            let outcome = tokio::spawn(attempt()).await.unwrap();
            let elapsed = start.elapsed();
            heartbeat.abort();
            let max_stall = *stall.lock().unwrap();
            Isolated { outcome, elapsed, max_stall }
        });
        let _ = tx.send(result);
    });
    let r = rx.recv_timeout(limit).unwrap_or_else(|_| panic!("the attempt did not end within {limit:?} (a blocked runtime?)"));
    assert!(r.max_stall < Duration::from_millis(500), "the runtime stalled for {:?} during the attempt", r.max_stall);
    r
}

async fn heartbeat(max: std::sync::Arc<std::sync::Mutex<Duration>>) {
    loop {
        let before = Instant::now();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let gap = before.elapsed();
        let mut m = max.lock().unwrap();
        *m = (*m).max(gap);
    }
}

#[track_caller]
fn run_isolated(spec: CommandSpec, c: AttemptContext) -> Isolated {
    isolated(Duration::from_secs(20), move || async move { run_command(&spec, &c).await })
}

fn with_timeout(secs: u64) -> AttemptContext {
    let mut c = ctx();
    c.timeout = Some(Duration::from_secs(secs));
    c
}

// Case 1: the action's files replaced by something that is not a regular file.
#[test]
fn output_and_error_files_that_are_not_regular_files() {
    let cases = [
        (r#"mkfifo "$REDRIVE_OUTPUT_FILE""#, "is a FIFO, not a regular file"),
        (r#"mkdir "$REDRIVE_OUTPUT_FILE""#, "is a directory, not a regular file"),
        (r#"ln -s /dev/zero "$REDRIVE_OUTPUT_FILE""#, "is a symbolic link, not a regular file"),
    ];
    for (script, says) in cases {
        let r = run_isolated(sh(script), with_timeout(5));
        let f = expect_failure(&r.outcome, ExceptionType::ActionFailed);
        assert_eq!(f.message, format!("exit code 0 but $REDRIVE_OUTPUT_FILE {says}"), "{script}");
        assert!(r.elapsed < Duration::from_secs(3), "{script}: took {:?}", r.elapsed);
    }

    // A FIFO (or a symlink to /dev/zero) as error file: ignored, saying so; the
    // exit code still classifies the attempt.
    for (script, kind) in
        [(r#"mkfifo "$REDRIVE_ERROR_FILE"; exit 75"#, "a FIFO"), (r#"ln -s /dev/zero "$REDRIVE_ERROR_FILE"; exit 75"#, "a symbolic link")]
    {
        let mut spec = sh(script);
        spec.exit_codes.insert(75, ExceptionType::Throttling);
        let r = run_isolated(spec, with_timeout(5));
        let f = expect_failure(&r.outcome, ExceptionType::Throttling);
        assert_eq!(f.message, format!("exit code 75 ($REDRIVE_ERROR_FILE ignored: it is {kind}, not a regular file)"));
    }

    // Deleted (the file, or the whole scratch directory): as if never written.
    for script in [r#"echo '{"a":1}' > "$REDRIVE_OUTPUT_FILE"; rm "$REDRIVE_OUTPUT_FILE""#, r#"rm -rf "$(dirname "$REDRIVE_OUTPUT_FILE")""#]
    {
        let r = run_isolated(sh(script), with_timeout(5));
        assert_eq!(expect_output(&r.outcome), None, "{script}");
    }
}

fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

// Case 2: outputs nested too deeply, or too large.
#[test]
fn deep_or_huge_outputs_are_limit_exceeded() {
    let write_deep = |depth: usize| {
        let mut spec = sh(r#"printf '%s' "$DEEP" > "$REDRIVE_OUTPUT_FILE""#);
        spec.env.insert("DEEP".into(), nested(depth));
        spec
    };
    for depth in [65, 125, 127, 5000] {
        let r = run_isolated(write_deep(depth), ctx());
        let f = expect_failure(&r.outcome, ExceptionType::LimitExceeded);
        assert_eq!(
            f.message,
            format!("the output of action Build/Compile ($REDRIVE_OUTPUT_FILE) is nested {depth} levels deep; the maximum is 64 levels")
        );
    }
    let r = run_isolated(write_deep(64), ctx());
    assert_eq!(expect_output(&r.outcome).map(|v| v.to_string().len()), Some(128), "64 levels are fine");

    let r = run_isolated(sh(r#"head -c 1048577 /dev/zero | tr '\0' ' ' > "$REDRIVE_OUTPUT_FILE""#), ctx());
    let f = expect_failure(&r.outcome, ExceptionType::LimitExceeded);
    assert!(f.message.ends_with("is 1048577 bytes; the maximum is 1048576 bytes"), "{}", f.message);
}

#[test]
fn unusable_error_files_leave_the_exit_code_in_charge() {
    let mut deep = sh(r#"printf '{"errorType": %s}' "$DEEP" > "$REDRIVE_ERROR_FILE"; exit 75"#);
    deep.env.insert("DEEP".into(), nested(126));
    let cases = [
        (
            sh(r#"head -c 10485760 /dev/zero | tr '\0' x > "$REDRIVE_ERROR_FILE"; exit 75"#),
            "$REDRIVE_ERROR_FILE ignored: 10485760 bytes, over the limit of 65536 bytes",
        ),
        (sh(r#"echo '{"errorType": "X", oops' > "$REDRIVE_ERROR_FILE"; exit 75"#), "$REDRIVE_ERROR_FILE is not valid JSON"),
        (sh(r#"printf '\377\376' > "$REDRIVE_ERROR_FILE"; exit 75"#), "$REDRIVE_ERROR_FILE is not valid JSON: invalid UTF-8"),
        (deep, "$REDRIVE_ERROR_FILE is nested 127 levels deep; the maximum is 64 levels: ignored"),
    ];
    for (mut spec, says) in cases {
        spec.exit_codes.insert(75, ExceptionType::Throttling);
        let r = run_isolated(spec, ctx());
        let f = expect_failure(&r.outcome, ExceptionType::Throttling);
        assert!(f.message.starts_with(&format!("exit code 75 ({says}")), "{}", f.message);
    }
}

#[tokio::test]
async fn http_deep_json_body_is_limit_exceeded() {
    let (url, _rx) = serve(vec![reply("200 OK", &nested(125)), reply("200 OK", &nested(64))]);
    let client = http_client();
    let f = expect_failure(&run_http(&client, &http("GET", &url), &ctx()).await, ExceptionType::LimitExceeded);
    assert_eq!(f.message, "the output of action Build/Compile (HTTP response body) is nested 125 levels deep; the maximum is 64 levels");
    let out = expect_output(&run_http(&client, &http("GET", &url), &ctx()).await).unwrap();
    assert_eq!(out.to_string(), nested(64));
}

// Case 3: a daemon holding stdout/stderr open does not hold up the attempt.
#[test]
fn daemons_holding_the_pipes_end_with_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    // Double-forked, deaf to SIGHUP/SIGTERM, holding both pipes: one stays in
    // the attempt's process group, the other also leaves it.
    for (how, script) in [
        ("in the group", "(trap '' HUP TERM; sleep 30 & echo $! > \"$PIDFILE\"); echo started; echo started >&2"),
        ("in a session of its own", "(setsid sh -c 'trap \"\" HUP TERM; echo $$ > \"$PIDFILE\"; exec sleep 30' &); echo started"),
    ] {
        let _ = std::fs::remove_file(&pidfile);
        let mut spec = sh(&format!("{script}; while [ ! -s \"$PIDFILE\" ]; do sleep 0.01; done"));
        spec.env.insert("PIDFILE".into(), pidfile.display().to_string());
        let r = run_isolated(spec, ctx());
        assert_eq!(expect_output(&r.outcome), None, "{how}");
        assert!(r.elapsed < Duration::from_millis(1500), "{how}: the attempt took {:?}", r.elapsed);
        let daemon: i32 = written(&pidfile).parse().unwrap();
        assert!(stat_of(daemon).is_none(), "daemon {how} survived the attempt: {:?}", stat_of(daemon));
    }
}

/// Starts a process that leaves the attempt's group and session; `ending` runs
/// once it is there. The escapee records "<pid> <start ticks> <marker> <scratch dir>".
fn escaping(record: &Path, ending: &str) -> CommandSpec {
    let mut spec = sh(&format!(
        "setsid sh -c 'set -- $(cat /proc/$$/stat); \
           echo \"$$ ${{22}} $REDRIVE_ATTEMPT_ID $(dirname \"$REDRIVE_OUTPUT_FILE\")\" > \"$RECORD\"; exec sleep 30' \
           </dev/null >/dev/null 2>&1 &
         while [ ! -s \"$RECORD\" ]; do sleep 0.01; done; {ending}"
    ));
    spec.env.insert("RECORD".into(), record.display().to_string());
    spec
}

struct Escapee {
    proc: Proc,
    marker: String,
    scratch: PathBuf,
}

impl Escapee {
    #[track_caller]
    fn read(record: &Path) -> Escapee {
        let text = written(record);
        let mut f = text.split_whitespace();
        let mut next = || f.next().unwrap();
        let proc = Proc { pid: next().parse().unwrap(), start: next().parse().unwrap() };
        Escapee { proc, marker: next().to_string(), scratch: PathBuf::from(next()) }
    }

    fn all_gone(&self) -> bool {
        self.proc.reaped() && processes_with_env(&format!("REDRIVE_ATTEMPT_ID={}", self.marker)).is_empty() && !self.scratch.exists()
    }
}

// Case 4 (and 8): processes that escaped with setsid are killed and reaped when
// the attempt ends, however it ends; the scratch directory goes with them.
#[test]
fn escaped_processes_die_with_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    for (ending, t) in
        [("exit 0", None), ("exit 3", Some(ExceptionType::ActionFailed)), ("kill -TERM $$", Some(ExceptionType::JobInternalError))]
    {
        let _ = std::fs::remove_file(&record);
        let r = run_isolated(escaping(&record, ending), ctx());
        let e = Escapee::read(&record);
        match t {
            None => assert_eq!(expect_output(&r.outcome), None),
            Some(t) => drop(expect_failure(&r.outcome, t)),
        }
        assert!(e.all_gone(), "after {ending}: {:?} {:?}", stat_of(e.proc.pid), e.scratch);
    }

    let _ = std::fs::remove_file(&record);
    let mut c = ctx();
    c.timeout = Some(Duration::from_secs(1));
    let r = run_isolated(escaping(&record, "sleep 30"), c);
    expect_failure(&r.outcome, ExceptionType::Timeout);
    let e = Escapee::read(&record);
    assert!(e.all_gone(), "after a timeout: {:?} {:?}", stat_of(e.proc.pid), e.scratch);
}

#[test]
fn processes_that_leave_the_attempt_cgroup_die_too() {
    let Some(home) = own_cgroup_dir().filter(|d| d.join("cgroup.procs").metadata().is_ok_and(|m| !m.permissions().readonly())) else {
        eprintln!("no writable cgroup v2 here: nothing to test");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    // As root, a command can move itself out of its attempt's cgroup (once it
    // runs a while: the runner checked where it started), then escape the group
    // and session too: the marker still gives it away.
    let mut spec = escaping(&record, "exit 0");
    spec.argv[2] = format!("sleep 0.3; echo $$ > '{}/cgroup.procs' || exit 99\n{}", home.display(), spec.argv[2]);
    let r = run_isolated(spec, ctx());
    assert_eq!(expect_output(&r.outcome), None);
    let e = Escapee::read(&record);
    assert!(e.all_gone(), "{:?} {:?}", stat_of(e.proc.pid), e.scratch);
}

#[tokio::test]
async fn escaped_processes_die_with_an_aborted_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    let spec = escaping(&record, "sleep 30");
    let task = tokio::spawn(async move { run_command(&spec, &ctx()).await });
    let r = record.clone();
    let e = tokio::task::spawn_blocking(move || Escapee::read(&r)).await.unwrap();
    assert!(!e.proc.reaped() && e.scratch.is_dir());
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    wait_for("the aborted attempt's processes and directory to go", 10, || e.all_gone());
}

// Case 5: programs that cannot be started.
#[tokio::test]
async fn unstartable_programs_are_explained() {
    let base = tempfile::tempdir().unwrap();
    let b = base.path();
    std::fs::create_dir(b.join("subdir")).unwrap();
    std::fs::write(b.join("plain.sh"), "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::write(b.join("orphan.sh"), "#!/no/such/interpreter\nexit 0\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(b.join("orphan.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = ctx();
    c.base_dir = Some(b.to_path_buf());
    let cases = [
        ("./subdir", format!("{} is a directory", b.join("subdir").display())),
        ("./missing", format!("{} does not exist", b.join("missing").display())),
        ("./plain.sh", format!("{} is not executable (permission denied)", b.join("plain.sh").display())),
        ("./orphan.sh", format!("{} exists, but its interpreter (#! line or ELF loader) was not found", b.join("orphan.sh").display())),
        ("redrive-no-such-program-xyz", "not found in PATH".to_string()),
    ];
    for (argv0, says) in cases {
        let f = expect_failure(&run_command(&cmd(&[argv0]), &c).await, ExceptionType::ActionFailed);
        assert_eq!(f.message, format!("failed to start {argv0}: {says}"));
    }
}

/// Accepts one connection and never answers; hangs up when the client does.
fn serve_silence() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        }
    });
    url
}

/// Promises a 1 MB body, then sends a byte every 50 ms (while waiting for the
/// client to hang up) until it does.
fn serve_trickle() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let _ = read_request(&s);
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut sent = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
        let mut buf = [0u8; 64];
        while sent.is_ok() {
            match s.read(&mut buf) {
                Ok(0) => return, // hung up
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                _ => return,
            }
            sent = s.write_all(b"x");
        }
    });
    url
}

// Case 6: the attempt's deadline covers a silent server and a trickling body.
#[test]
fn http_deadline_covers_silence_and_trickles() {
    assert_eq!(http_time_limit(&ctx()), Duration::from_secs(redrive_engine::runner::limits::DEFAULT_HTTP_TIMEOUT_SECONDS));
    assert_eq!(http_time_limit(&with_timeout(7)), Duration::from_secs(7));
    for (what, url) in [("silent server", serve_silence()), ("trickling body", serve_trickle())] {
        let mut c = ctx();
        c.timeout = Some(Duration::from_millis(700));
        let r = isolated(Duration::from_secs(10), move || async move { run_http(&http_client(), &http("GET", &url), &c).await });
        let f = expect_failure(&r.outcome, ExceptionType::Timeout);
        assert_eq!(f.message, "timed out after 0.7s", "{what}");
        assert!(r.elapsed < Duration::from_secs(2), "{what}: took {:?}", r.elapsed);
    }
}

// Case 7: retry hints that are huge, negative or garbage are bounded or ignored.
#[tokio::test]
async fn absurd_retry_hints_are_bounded() {
    use redrive_core::policy::MAX_DELAY_MS;
    let far_future = "Fri, 31 Dec 9999 23:59:59 GMT";
    let past = "Thu, 01 Jan 1970 00:00:00 GMT";
    // Before 1970: not an HTTP-date httpdate reads, so ignored.
    let far_past = "Mon, 01 Jan 0001 00:00:00 GMT";
    let cases: [(&str, Option<u64>); 8] = [
        ("99999999999999999999", Some(MAX_DELAY_MS)),
        ("1e400", None),
        ("-5", Some(0)),
        ("garbage", None),
        (far_future, Some(MAX_DELAY_MS)),
        (past, Some(0)),
        (far_past, None),
        ("Mon, 01 Jan 99999999999999999999 00:00:00 GMT", None),
    ];
    let (url, _rx) = serve(cases.iter().map(|(v, _)| reply("429 Too Many Requests", "slow").header("Retry-After", *v)).collect());
    let client = http_client();
    for (value, ms) in cases {
        let f = expect_failure(&run_http(&client, &http("GET", &url), &ctx()).await, ExceptionType::Throttling);
        assert_eq!(f.retry_after_ms, ms, "Retry-After: {value}");
        let noted = f.message.contains("Retry-After") && f.message.contains("ignored");
        assert_eq!(noted, ms.is_none(), "{value}: {}", f.message);
    }

    let (url, _rx) = serve(vec![reply("503 Service Unavailable", r#"{"errorType": "Quota", "retryAfterSeconds": 1e300}"#)]);
    let f = expect_failure(&run_http(&client, &http("GET", &url), &ctx()).await, ExceptionType::Custom("Quota".into()));
    assert_eq!(f.retry_after_ms, Some(MAX_DELAY_MS));

    for (seconds, ms) in [("1e300", Some(MAX_DELAY_MS)), ("99999999999999999999", Some(MAX_DELAY_MS)), ("-5", None), ("2.5", Some(2500))] {
        let script = format!(r#"echo '{{"errorType": "Quota", "retryAfterSeconds": {seconds}}}' > "$REDRIVE_ERROR_FILE"; exit 1"#);
        let f = expect_failure(&run_command(&sh(&script), &ctx()).await, ExceptionType::Custom("Quota".into()));
        assert_eq!(f.retry_after_ms, ms, "retryAfterSeconds: {seconds}");
    }
}

// Case 8: scratch directories go with their attempt; a dead engine's go at the
// next start, a live engine's never.
#[test]
fn scratch_directories_go_with_the_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("dir");
    let save = format!("dirname \"$REDRIVE_OUTPUT_FILE\" > '{}'", record.display());
    let mut c = ctx();
    c.timeout = Some(Duration::from_millis(500));
    for ending in ["exit 0", "exit 4", "kill -KILL $$", "sleep 30", r#"echo '{' > "$REDRIVE_OUTPUT_FILE""#] {
        let _ = std::fs::remove_file(&record);
        run_isolated(sh(&format!("{save}; {ending}")), c.clone());
        let scratch = written(&record);
        assert!(scratch.contains(&format!("redrive-attempt-{}-", engine_id())), "{scratch}");
        assert!(!Path::new(&scratch).exists(), "after {ending}: {scratch} is still there");
    }
}

#[test]
fn stale_attempt_directories_of_dead_engines_are_removed() {
    let tmp = std::env::temp_dir();
    let uuid = |n: u8| format!("{n:032x}");
    let me = engine_id();
    let (pid, start) = me.split_once('-').unwrap();
    let mut other = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let other_id = format!("{}-{}", other.id(), Proc::of(other.id() as i32).start);
    let dead = tmp.join(format!("redrive-attempt-{pid}-{}-{}", start.parse::<u64>().unwrap() + 1, uuid(1)));
    let live = tmp.join(format!("redrive-attempt-{me}-{}", uuid(2)));
    let other_live = tmp.join(format!("redrive-attempt-{other_id}-{}", uuid(3)));
    let unrelated = tmp.join(format!("redrive-attempt-{}", uuid(4)));
    for d in [&dead, &live, &other_live, &unrelated] {
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/file"), "x").unwrap();
    }
    assert!(remove_stale_attempt_dirs().unwrap() >= 1);
    assert!(!dead.exists(), "a dead engine's directory stayed");
    assert!(live.exists() && other_live.exists() && unrelated.exists(), "a live engine's directory was removed");
    other.kill().unwrap();
    other.wait().unwrap();
    assert!(remove_stale_attempt_dirs().unwrap() >= 1);
    assert!(!other_live.exists(), "the engine died: its directory goes");
    for d in [&live, &unrelated] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn stale_attempt_cgroups_of_dead_engines_are_killed_and_removed() {
    let Some(own) = own_cgroup_dir() else {
        eprintln!("no cgroup v2 here: nothing to test");
        return;
    };
    let me = engine_id();
    let (pid, start) = me.split_once('-').unwrap();
    let name = format!("redrive-attempt-{pid}-{}-{:032x}", start.parse::<u64>().unwrap() + 1, 5);
    let dir = own.join(name);
    if std::fs::create_dir(&dir).is_err() {
        eprintln!("cgroup v2 not writable here: nothing to test");
        return;
    }
    let mut inside = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(dir.join("cgroup.procs"), inside.id().to_string()).unwrap();
    assert!(remove_stale_attempt_dirs().unwrap() >= 1);
    assert!(!dir.exists(), "the stale cgroup stayed");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(inside.wait().unwrap().signal(), Some(9), "its process was not killed");
}

// Case 9: after every bad action above, nothing is left: descriptors, processes
// (marked as this engine's attempts), zombies, scratch directories, cgroups.
// Runs in a process of its own, where nothing else moves the descriptor count.

#[test]
fn bad_actions_leak_nothing() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_run_bad_actions", "--nocapture", "--test-threads=1"])
        .env("REDRIVE_TEST_LEAK_CHECK", "1")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the leak check failed:\n{text}");
    assert!(text.contains("leak check passed"), "the helper did not run:\n{text}");
}

fn bad_commands(record: &Path) -> Vec<(CommandSpec, AttemptContext)> {
    let t = with_timeout(5);
    let mut deep = sh(r#"printf '%s' "$DEEP" > "$REDRIVE_OUTPUT_FILE""#);
    deep.env.insert("DEEP".into(), nested(126));
    let daemon = sh("(trap '' HUP TERM; sleep 30 &); (setsid sleep 30 &); echo started");
    let mut timeout = ctx();
    timeout.timeout = Some(Duration::from_millis(300));
    vec![
        (sh(r#"mkfifo "$REDRIVE_OUTPUT_FILE""#), t.clone()),
        (sh(r#"mkfifo "$REDRIVE_ERROR_FILE"; exit 1"#), t.clone()),
        (sh(r#"mkdir "$REDRIVE_OUTPUT_FILE""#), t.clone()),
        (sh(r#"ln -s /dev/zero "$REDRIVE_OUTPUT_FILE""#), t.clone()),
        (sh(r#"rm -rf "$(dirname "$REDRIVE_OUTPUT_FILE")""#), t.clone()),
        (deep, t.clone()),
        (sh(r#"head -c 2000000 /dev/zero > "$REDRIVE_OUTPUT_FILE""#), t.clone()),
        (sh(r#"head -c 10485760 /dev/zero > "$REDRIVE_ERROR_FILE"; exit 2"#), t.clone()),
        (daemon, t.clone()),
        (escaping(record, "exit 0"), t.clone()),
        (escaping(record, "sleep 30"), timeout),
        (cmd(&["/"]), t.clone()),
        (cmd(&["/no/such/program"]), t.clone()),
        (cmd(&["/etc/passwd"]), t),
    ]
}

fn open_fds() -> Vec<String> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect()
}

/// Helper half of `bad_actions_leak_nothing`: only acts when run as its child.
#[test]
fn helper_run_bad_actions() {
    if std::env::var("REDRIVE_TEST_LEAK_CHECK").is_err() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = http_client();
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    // Warm up what is created once (the SIGCHLD pipe, the blocking pool...).
    rt.block_on(run_command(&sh("true"), &ctx()));
    let baseline = open_fds();

    for (spec, c) in bad_commands(&record) {
        let _ = std::fs::remove_file(&record);
        let o = rt.block_on(run_command(&spec, &c));
        println!("{:?} -> {o:?}", spec.argv);
    }
    let spec = escaping(&record, "sleep 30");
    let _ = std::fs::remove_file(&record);
    let task = rt.spawn(async move { run_command(&spec, &ctx()).await });
    written(&record);
    task.abort();
    let _ = rt.block_on(task);
    let silent = [serve_silence(), serve_trickle()];
    for url in silent {
        let mut c = ctx();
        c.timeout = Some(Duration::from_millis(300));
        println!("{url} -> {:?}", rt.block_on(run_http(&client, &http("GET", &url), &c)));
    }
    let (url, _rx) = serve(vec![reply("429 Too Many Requests", "").header("Retry-After", "1e400"), reply("200 OK", &nested(200))]);
    for _ in 0..2 {
        println!("{url} -> {:?}", rt.block_on(run_http(&client, &http("GET", &url), &ctx())));
    }

    let me = engine_id();
    let pid = std::process::id() as i32;
    wait_for("no process marked as this engine's attempt", 10, || {
        all_pids().into_iter().all(|p| {
            let env = std::fs::read(format!("/proc/{p}/environ")).unwrap_or_default();
            !env.split(|b| *b == 0).any(|e| e.starts_with(format!("REDRIVE_ATTEMPT_ID={me}-").as_bytes()))
        })
    });
    wait_for("no zombie children", 10, || all_pids().into_iter().all(|p| stat_of(p).is_none_or(|s| s.ppid != pid || s.state != 'Z')));
    let mine = |d: &Path| {
        std::fs::read_dir(d)
            .map(|it| it.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&format!("redrive-attempt-{me}-"))))
            .unwrap_or(false)
    };
    wait_for("no scratch directory left", 10, || !mine(&std::env::temp_dir()));
    if let Some(d) = own_cgroup_dir() {
        wait_for("no attempt cgroup left", 10, || !mine(&d));
    }
    drop(client);
    let mut now = Vec::new();
    let settled = (0..500).any(|_| {
        now = open_fds();
        let ok = now.len() <= baseline.len() + 2;
        if !ok {
            std::thread::sleep(Duration::from_millis(20));
        }
        ok
    });
    assert!(settled, "descriptors leaked: {} before, {} after\nbefore: {baseline:?}\nafter: {now:?}", baseline.len(), now.len());
    println!("leak check passed: {} descriptors before, {} after", baseline.len(), now.len());
}

/// A redirect on the same origin is followed; one to another origin (another
/// port is another origin) is not: the other server never sees the action's
/// headers or body, and the attempt fails naming where it pointed.
#[tokio::test]
async fn http_redirects_are_followed_on_the_same_origin_only() {
    let (elsewhere, elsewhere_rx) = serve(vec![reply("200 OK", "should not be reached")]);
    let (url, rx) = serve(vec![
        reply("307 Temporary Redirect", "").header("Location", "/moved"),
        reply("307 Temporary Redirect", "").header("Location", format!("{elsewhere}/stolen")),
    ]);
    let mut spec = http("POST", &format!("{url}/start"));
    spec.headers.insert("X-Api-Key".into(), "secret-key".into());
    spec.body = Some(json!({"card": "4242"}));
    let f = expect_failure(&run_http(&http_client(), &spec, &ctx()).await, ExceptionType::ActionFailed);
    assert!(f.message.starts_with("HTTP 307 Temporary Redirect, redirect to"), "{}", f.message);
    assert!(f.message.contains("/stolen not followed: only redirects to the same origin"), "{}", f.message);
    let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    let second = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((first.request_line.as_str(), second.request_line.as_str()), ("POST /start HTTP/1.1", "POST /moved HTTP/1.1"));
    assert!(second.body.contains("4242"), "a same-origin 307 keeps the body");
    assert!(elsewhere_rx.recv_timeout(Duration::from_millis(300)).is_err(), "the other origin was never contacted");
}

/// An action with secret, plain and idempotency headers and a body, to `url`,
/// following `mode` (issue 13).
fn loaded_spec(method: &str, url: &str, mode: Option<RedirectMode>) -> HttpSpec {
    let mut spec = http(method, url);
    spec.headers.insert("X-Api-Key".into(), "plain-key".into());
    spec.secret_headers.insert(
        "Authorization".into(),
        redrive_core::definition::SecretHeader { secret_env: "API_TOKEN".into(), prefix: "Bearer ".into() },
    );
    spec.body = Some(json!({"card": "4242"}));
    spec.redirects = mode;
    spec
}

/// A context whose secrets file (kept while the directory lives) holds API_TOKEN.
fn with_token() -> (AttemptContext, tempfile::TempDir) {
    with_secrets("API_TOKEN=tok-s3cr3t\n")
}

/// A context whose secrets come from a 0600 file of `lines` (kept while the
/// directory lives).
fn with_secrets(lines: &str) -> (AttemptContext, tempfile::TempDir) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets");
    std::fs::write(&file, lines).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut c = ctx();
    c.secrets = std::sync::Arc::new(redrive_engine::runner::secrets::Secrets::file(&file).unwrap());
    (c, dir)
}

/// What a request that left the action's origin may carry: only what the
/// client adds to every request.
fn assert_bare(r: &Recorded) {
    let names: Vec<String> = r.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
    for n in &names {
        assert!(["host", "user-agent", "accept"].contains(&n.as_str()), "unexpected header {n} in {r:?}");
    }
    assert!(r.body.is_empty(), "a body was sent: {r:?}");
    assert!(r.request_line.starts_with("GET "), "{r:?}");
}

/// ANY_ORIGIN: a POST answered by a 302 to another origin goes on as a bare GET
/// there — none of the action's headers (plain, secret, idempotency, attempt)
/// and no body — and its answer is the attempt's.
#[tokio::test]
async fn http_any_origin_follows_elsewhere_without_headers_or_body() {
    let (elsewhere, elsewhere_rx) = serve(vec![reply("200 OK", r#"{"done": true}"#)]);
    let (url, rx) = serve(vec![
        reply("307 Temporary Redirect", "").header("Location", "/moved"),
        reply("302 Found", "").header("Location", format!("{elsewhere}/result?x=1")),
    ]);
    let spec = loaded_spec("POST", &format!("{url}/start"), Some(RedirectMode::AnyOrigin));
    let out = expect_output(&run_http(&http_client(), &spec, &with_token().0).await).unwrap();
    assert_eq!(out, json!({"done": true}));
    let (first, second) = (rx.recv_timeout(Duration::from_secs(5)).unwrap(), rx.recv_timeout(Duration::from_secs(5)).unwrap());
    for r in [&first, &second] {
        assert_eq!(r.header("authorization"), Some("Bearer tok-s3cr3t"), "the own origin gets the headers: {r:?}");
        assert_eq!(r.header("x-api-key"), Some("plain-key"));
        assert!(r.body.contains("4242"), "a same-origin 307 keeps the body: {r:?}");
    }
    let third = elsewhere_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(third.request_line, "GET /result?x=1 HTTP/1.1");
    assert_bare(&third);
}

/// The server's default applies to an action without `redirects`; the
/// action's own mode wins over it.
#[tokio::test]
async fn http_redirects_default_comes_from_the_client_and_the_action_wins() {
    let (elsewhere, elsewhere_rx) = serve(vec![reply("200 OK", "ok")]);
    let (url, _rx) = serve(vec![
        reply("303 See Other", "").header("Location", format!("{elsewhere}/a")),
        reply("303 See Other", "").header("Location", format!("{elsewhere}/b")),
    ]);
    let any = HttpClient::new(RedirectMode::AnyOrigin);
    expect_output(&run_http(&any, &loaded_spec("PUT", &url, None), &with_token().0).await).unwrap();
    assert_bare(&elsewhere_rx.recv_timeout(Duration::from_secs(5)).unwrap());
    let f = expect_failure(
        &run_http(&any, &loaded_spec("PUT", &url, Some(RedirectMode::SameOrigin)), &with_token().0).await,
        ExceptionType::ActionFailed,
    );
    assert!(f.message.starts_with("HTTP 303 See Other, redirect to http://127.0.0.1:"), "{}", f.message);
    assert!(
        f.message.ends_with("/b not followed: only redirects to the same origin are followed (redirects: SAME_ORIGIN)"),
        "{}",
        f.message
    );
    assert!(elsewhere_rx.recv_timeout(Duration::from_millis(300)).is_err(), "the other origin was contacted once only");
}

/// A 307 (or 308) to another origin would re-send the body there: refused,
/// naming the Location (its credentials scrubbed); the other origin never hears
/// a thing.
#[tokio::test]
async fn http_cross_origin_307_with_a_body_fails_naming_the_location() {
    let (elsewhere, elsewhere_rx) = serve(vec![reply("200 OK", "should not be reached")]);
    let target = elsewhere.replace("http://", "http://user:hunter2@");
    let (url, _rx) = serve(vec![
        reply("307 Temporary Redirect", "").header("Location", format!("{target}/upload")),
        reply("308 Permanent Redirect", "").header("Location", format!("{elsewhere}/upload")),
    ]);
    for status in ["307 Temporary Redirect", "308 Permanent Redirect"] {
        let spec = loaded_spec("POST", &url, Some(RedirectMode::AnyOrigin));
        let f = expect_failure(&run_http(&http_client(), &spec, &with_token().0).await, ExceptionType::ActionFailed);
        assert!(f.message.starts_with(&format!("HTTP {status}, redirect to http://")), "{}", f.message);
        assert!(f.message.contains("/upload not followed: a 30"), "{}", f.message);
        assert!(f.message.contains("must re-send the POST request and its body"), "{}", f.message);
        assert!(!f.message.contains("hunter2"), "{}", f.message);
    }
    assert!(elsewhere_rx.recv_timeout(Duration::from_millis(300)).is_err(), "the other origin was never contacted");
}

/// NONE follows nothing, not even on the same origin; a Location that is not
/// http(s) is never followed; the first answer's 3xx without Location is an answer.
#[tokio::test]
async fn http_redirects_none_schemes_and_plain_3xx() {
    let (url, rx) = serve(vec![
        reply("302 Found", "").header("Location", "/same"),
        reply("302 Found", "").header("Location", "file:///etc/passwd"),
        reply("304 Not Modified", ""),
    ]);
    let f = expect_failure(
        &run_http(&http_client(), &loaded_spec("GET", &url, Some(RedirectMode::Never)), &with_token().0).await,
        ExceptionType::ActionFailed,
    );
    assert_eq!(f.message, "HTTP 302 Found, redirect to /same not followed: redirects: NONE follows no redirect");
    let f = expect_failure(&run_http(&http_client(), &http("GET", &url), &ctx()).await, ExceptionType::ActionFailed);
    assert!(f.message.ends_with("not followed: the Location's scheme file is not http or https"), "{}", f.message);
    let f = expect_failure(&run_http(&http_client(), &http("GET", &url), &ctx()).await, ExceptionType::ActionFailed);
    assert_eq!(f.message, "HTTP 304 Not Modified");
    assert_eq!(rx.try_iter().count(), 3, "one request each");
}

/// At most 5 redirects are followed, same origin or not: the 6th is refused
/// and nothing more is sent.
#[tokio::test]
async fn http_redirect_limit_holds() {
    let (elsewhere, elsewhere_rx) = serve((0..3).map(|i| reply("302 Found", "").header("Location", format!("/e{i}"))).collect());
    let mut replies: Vec<Reply> = (0..3).map(|i| reply("302 Found", "").header("Location", format!("/s{i}"))).collect();
    replies[2] = reply("302 Found", "").header("Location", format!("{elsewhere}/e"));
    let (url, rx) = serve(replies);
    let spec = loaded_spec("GET", &url, Some(RedirectMode::AnyOrigin));
    let f = expect_failure(&run_http(&http_client(), &spec, &with_token().0).await, ExceptionType::ActionFailed);
    assert_eq!(f.message, "HTTP 302 Found, redirect to /e2 not followed: more than 5 redirects");
    assert_eq!(rx.try_iter().count(), 3);
    let elsewhere_requests: Vec<Recorded> = elsewhere_rx.try_iter().collect();
    assert_eq!(elsewhere_requests.len(), 3, "6 requests in all: the first and 5 redirects");
    elsewhere_requests.iter().for_each(assert_bare);
}

/// Credentials written in a URL never reach an error message.
#[tokio::test]
async fn http_url_credentials_stay_out_of_messages() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let spec = http("GET", &format!("http://deploy:hunter2@127.0.0.1:{port}/x"));
    let f = expect_failure(&run_http(&http_client(), &spec, &ctx()).await, ExceptionType::ServiceFault);
    assert!(!f.message.contains("hunter2") && f.message.contains("http://***@127.0.0.1"), "{}", f.message);
    assert_eq!(
        redrive_engine::runner::without_url_credentials("GET https://u:p@h.example/a?b=c failed; see http://plain.example/x"),
        "GET https://***@h.example/a?b=c failed; see http://plain.example/x"
    );
}
