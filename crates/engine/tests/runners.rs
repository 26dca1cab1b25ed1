//! Runner classification tests (PRODUCT.md §3): real processes, a real local
//! HTTP responder on std::net, scripted noop outcomes.

use redrive_core::definition::{CommandSpec, HttpSpec, NoopSpec};
use redrive_core::exception::ExceptionType;
use redrive_engine::runner::{
    AttemptContext, AttemptOutcome, http_client, noop_outcome, parse_retry_after, run_command, run_http, run_noop,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
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
    }
}

fn cmd(argv: &[&str]) -> CommandSpec {
    CommandSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::new(),
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
    // The real work runs in a grandchild, out of PR_SET_PDEATHSIG's reach.
    let spec = sh(&format!("sleep 30 & echo \"$$ $!\" > '{pidfile}.tmp'; mv '{pidfile}.tmp' '{pidfile}'; wait"));
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
    let pids: Vec<i32> = loop {
        if let Ok(s) = std::fs::read_to_string(&pidfile) {
            break s.split_whitespace().map(|p| p.parse().unwrap()).collect();
        }
        assert!(Instant::now() < deadline, "helper never started the command");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|p| !process_gone(*p)));
    helper.kill().unwrap(); // SIGKILL: no destructor, no guard runs
    helper.wait().unwrap();
    for pid in pids {
        assert!(wait_gone(pid), "{pid} outlived a kill -9 of redrive");
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
    HttpSpec { method: method.into(), url: url.into(), headers: BTreeMap::new(), body: None }
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
    let date = http_date(in_a_minute);
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

/// IMF-fixdate for a time, for the Retry-After test.
fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mon = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][(m - 1) as usize];
    format!("{wd}, {d:02} {mon} {y} {:02}:{:02}:{:02} GMT", sod / 3600, sod % 3600 / 60, sod % 60)
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

#[tokio::test]
async fn noop_sleeps_and_times_out() {
    let mut c = ctx();
    c.attempt = 2;
    let start = Instant::now();
    assert_eq!(expect_output(&run_noop(&noop(1, 100), &c).await), Some(json!({"attempt": 2})));
    assert!(start.elapsed() >= Duration::from_millis(100));
    c.timeout = Some(Duration::from_millis(50));
    let f = expect_failure(&run_noop(&noop(1, 10_000), &c).await, ExceptionType::Timeout);
    assert_eq!(f.message, "timed out after 0.05s");
}
