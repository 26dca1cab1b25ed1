//! `redrive validate`, `redrive run` on invalid files, `redrive policy explain`,
//! and files that are not definitions at all (devices, FIFOs, huge files).

mod common;
use common::*;
use redrive_core::limits::{MAX_CONFIG_FILE_BYTES, MAX_DEFINITION_BYTES, MAX_PROBLEMS_REPORTED};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn validate(sb: &Sandbox, text: &str) -> (i32, String) {
    let f = sb.write("bad.yaml", text);
    let out = bin().arg("validate").arg(&f).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8_lossy(&out.stderr).to_string())
}

const HEAD: &str = "name: p\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {}\n";

fn with_policy(policy: &str) -> String {
    format!("{HEAD}        retryPolicies:\n          - {policy}\n")
}

#[test]
fn each_invalid_case_is_reported_with_location() {
    let sb = Sandbox::new();
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            with_policy("{ExceptionType: [Step.THROTTLING], MaxAttempts: 3, ExpireAfterMin: 5}"),
            vec!["bad.yaml:8", "MaxAttempts", "ExpireAfterMin"],
        ),
        (
            with_policy("{ExceptionType: [Step.THROTTLING], IntervalSeconds: 50000}"),
            vec!["bad.yaml:8", "IntervalSeconds", "50000", "43200"],
        ),
        (with_policy("{exceptionType: [Step.THROTTLING], maxAttempts: 21}"), vec!["bad.yaml:8", "maxAttempts", "21", "20"]),
        (with_policy("{exceptionType: [Step.FOO]}"), vec!["bad.yaml:8", "Step.FOO", "Step.THROTTLING"]),
        (
            "name: \"bad name!\"\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {}\n".into(),
            vec!["bad.yaml:1", "bad name!", "A-Z"],
        ),
        (format!("{HEAD}      - name: A\n        noop: {{}}\n"), vec!["bad.yaml:7", "duplicate", "A"]),
        ("name: p\nstages:\n  - name: Empty\n    actions: []\n".into(), vec!["bad.yaml:4", "Empty", "no actions"]),
    ];
    for (text, needles) in cases {
        let (code, stderr) = validate(&sb, &text);
        assert_eq!(code, 2, "{text}\n{stderr}");
        for n in needles {
            assert!(stderr.contains(n), "expected {n:?} in:\n{stderr}\nfor:\n{text}");
        }
    }
}

#[test]
fn every_problem_is_reported_at_once_and_run_writes_nothing() {
    let sb = Sandbox::new();
    let text = r#"name: p
stages:
  - name: S
    actions:
      - name: A
        noop: {}
        retryPolicies:
          - {ExceptionType: [Step.THROTTLING], MaxAttempts: 30, ExpireAfterMin: 5}
          - {ExceptionType: [Step.NOPE], IntervalSeconds: 99999}
      - name: A
        noop: {}
  - name: "white space"
    actions: []
"#;
    let (code, stderr) = validate(&sb, text);
    assert_eq!(code, 2);
    let problems = stderr.lines().filter(|l| l.trim_start().starts_with(&*sb.path("bad.yaml").to_string_lossy())).count();
    assert!(problems >= 6, "expected all problems at once:\n{stderr}");

    let f = sb.path("bad.yaml");
    let out = bin().arg("run").arg(&f).arg("--db").arg(sb.db()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!sb.db().exists(), "an invalid definition must not create or touch the store");
}

#[test]
fn valid_file_validates_in_json_too() {
    let sb = Sandbox::new();
    let f = sb.write("ok.yaml", HEAD);
    let out = bin().arg("validate").arg(&f).args(["--output", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
}

fn explain(sb: &Sandbox, policy: &str, t: &str, extra: &[&str]) -> serde_json::Value {
    let f = sb.write("p.yaml", &with_policy(policy));
    let out =
        bin().args(["policy", "explain"]).arg(&f).args(["--action", "S/A", "--type", t, "--output", "json"]).args(extra).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn explain_matches_the_sagemaker_schedule() {
    let sb = Sandbox::new();
    let v = explain(
        &sb,
        "{ExceptionType: [Job.INTERNAL_ERROR], IntervalSeconds: 1, BackoffRate: 2, MaxAttempts: 5}",
        "SageMaker.JOB_INTERNAL_ERROR",
        &[],
    );
    let delays: Vec<i64> = v["retries"].as_array().unwrap().iter().map(|r| ms(&r["delayMs"])).collect();
    let offsets: Vec<i64> = v["retries"].as_array().unwrap().iter().map(|r| ms(&r["offsetMs"])).collect();
    assert_eq!(delays, vec![1000, 2000, 4000, 8000, 16000]);
    assert_eq!(offsets, vec![1000, 3000, 7000, 15000, 31000]);
    assert_eq!(v["worstCaseTotalWaitMs"], 31000);
    assert_eq!(v["stop"]["reason"], "maxAttemptsReached");
}

#[test]
fn explain_expiry_and_jitter_per_execution() {
    let sb = Sandbox::new();
    let v =
        explain(&sb, "{exceptionType: [Step.THROTTLING], intervalSeconds: 10, backoffRate: 2, expireAfterMin: 1}", "Step.THROTTLING", &[]);
    // Failures at 0, 10, 30, 70 s: the one at 70 s is past the 1-minute expiry.
    let offsets: Vec<i64> = v["retries"].as_array().unwrap().iter().map(|r| ms(&r["offsetMs"])).collect();
    assert_eq!(offsets, vec![10_000, 30_000, 70_000]);
    assert_eq!(v["stop"]["reason"], "expired");

    let jittered = "{exceptionType: [Step.THROTTLING], intervalSeconds: 4, maxAttempts: 4, jitter: FULL}";
    let a = explain(&sb, jittered, "Step.THROTTLING", &["--execution-id", "11111111-1111-1111-1111-111111111111"]);
    let b = explain(&sb, jittered, "Step.THROTTLING", &["--execution-id", "11111111-1111-1111-1111-111111111111"]);
    let c = explain(&sb, jittered, "Step.THROTTLING", &["--execution-id", "22222222-2222-2222-2222-222222222222"]);
    assert_eq!(a["retries"], b["retries"], "same execution, same delays");
    assert_ne!(a["retries"], c["retries"], "different executions draw differently");
    for r in a["retries"].as_array().unwrap() {
        assert!(ms(&r["delayMs"]) <= ms(&r["computedDelayMs"]));
    }
}

#[test]
fn explain_unknown_action_lists_the_actions() {
    let sb = Sandbox::new();
    let f = sb.write("p.yaml", HEAD);
    let out = bin().args(["policy", "explain"]).arg(&f).args(["--action", "S/Nope", "--type", "Step.THROTTLING"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("S/A"));
}

// ---------------------------------------------------------------------------
// Files that are not (bounded) definitions

/// How long a refusal may take: it must not read the file, nor wait for a writer.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(10);

/// Runs `cmd` to completion, killing it (and failing) if it is still running at
/// `deadline`; its output is drained meanwhile so it can never block on a pipe.
fn finish_within(cmd: &mut Command, deadline: Duration) -> Run {
    finish_measured(cmd, deadline).0
}

/// [`finish_within`], with the child's peak resident memory in KiB (from wait4).
#[allow(clippy::zombie_processes, reason = "the child is reaped by wait4, which std does not see")]
fn finish_measured(cmd: &mut Command, deadline: Duration) -> (Run, i64) {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn redrive");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = r.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let (stdout, stderr) = (drain(Box::new(child.stdout.take().unwrap())), drain(Box::new(child.stderr.take().unwrap())));
    let (pid, start) = (child.id() as libc::pid_t, Instant::now());
    let (status, usage) = loop {
        let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
        // SAFETY: wait4 on our own child, with valid pointers to write to.
        match unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) } {
            0 => {}
            r if r == pid => break (status, usage),
            _ => panic!("wait4: {}", std::io::Error::last_os_error()),
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still ran after {deadline:?} and was killed; stderr so far:\n{}", stderr.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    (Run { code, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }, usage.ru_maxrss)
}

fn mkfifo(sb: &Sandbox, name: &str) -> PathBuf {
    let p = sb.path(name);
    let out = Command::new("mkfifo").arg(&p).output().expect("mkfifo");
    assert!(out.status.success(), "mkfifo: {}", String::from_utf8_lossy(&out.stderr));
    p
}

/// Exit 2 within the deadline, with one error line naming the file, what it is
/// (`needle`) and the limit, and nothing in the store.
fn assert_refused(sb: &Sandbox, cmd: &mut Command, file: &Path, needle: &str, max_bytes: usize) {
    let r = finish_within(cmd, REFUSAL_DEADLINE).code(2);
    let first = r.stderr.lines().next().unwrap_or_default();
    assert!(first.starts_with("error: ") && first.contains(&*file.to_string_lossy()), "{cmd:?}: {}", r.stderr);
    assert!(first.contains(needle), "{cmd:?}: expected {needle:?} in {first}");
    assert!(first.contains(&format!("at most {max_bytes} bytes")), "{cmd:?}: {first}");
    assert!(!sb.db().exists(), "{cmd:?}: a refused file must not create or touch the store");
}

fn validate_cmd(file: &Path) -> Command {
    let mut cmd = bin();
    cmd.arg("validate").arg(file);
    cmd
}

#[test]
fn validate_refuses_what_is_not_a_bounded_regular_file_at_once() {
    let sb = Sandbox::new();
    let fifo = mkfifo(&sb, "fifo.yaml");
    let dir = sb.path("dir.yaml");
    std::fs::create_dir(&dir).unwrap();
    let missing = sb.path("missing.yaml");
    let not_utf8 = sb.path("latin1.yaml");
    std::fs::write(&not_utf8, b"name: caf\xe9\n").unwrap();
    let cases: [(&Path, &str); 5] = [
        (Path::new("/dev/zero"), "is a character device, not a regular file"),
        (&fifo, "is a FIFO, not a regular file"),
        (&dir, "is a directory, not a regular file"),
        (&missing, "cannot read it: No such file or directory"),
        (&not_utf8, "is not UTF-8 text"),
    ];
    for (file, needle) in cases {
        assert_refused(&sb, &mut validate_cmd(file), file, needle, MAX_DEFINITION_BYTES);
    }
}

#[test]
fn validate_refuses_an_unreadable_file() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new();
    let f = sb.write("secret.yaml", HEAD);
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = validate_cmd(&f);
    if std::fs::File::open(&f).is_ok() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: this process reads a mode-000 file anyway (CAP_DAC_OVERRIDE) and cannot run redrive as another user");
            return;
        }
        // Root reads anything: run redrive as nobody, who may look into the
        // directory but not read the file.
        std::fs::set_permissions(sb.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        cmd.uid(65534).gid(65534);
    }
    assert_refused(&sb, &mut cmd, &f, "cannot open it: Permission denied", MAX_DEFINITION_BYTES);
}

#[test]
fn a_definition_may_be_exactly_the_limit_and_not_a_byte_more() {
    let sb = Sandbox::new();
    let padded = |len: usize| {
        let mut text = format!("{HEAD}#");
        text.push_str(&"x".repeat(len - text.len() - 1));
        text.push('\n');
        assert_eq!(text.len(), len);
        text
    };
    let at_limit = sb.write("at-limit.yaml", &padded(MAX_DEFINITION_BYTES));
    finish_within(&mut validate_cmd(&at_limit), REFUSAL_DEADLINE).ok();
    let over = sb.write("over.yaml", &padded(MAX_DEFINITION_BYTES + 1));
    let needle = format!("is {} bytes long", MAX_DEFINITION_BYTES + 1);
    assert_refused(&sb, &mut validate_cmd(&over), &over, &needle, MAX_DEFINITION_BYTES);
}

#[test]
fn run_create_and_server_refuse_devices_and_fifos() {
    let sb = Sandbox::new();
    let fifo = mkfifo(&sb, "fifo.yaml");
    for file in [Path::new("/dev/zero"), &fifo] {
        let needle = if file == fifo { "is a FIFO" } else { "is a character device" };
        let mut run = bin();
        run.arg("run").arg(file).arg("--db").arg(sb.db());
        assert_refused(&sb, &mut run, file, needle, MAX_DEFINITION_BYTES);
        let mut create = bin();
        // Nothing listens there: the file must be refused before any connection.
        create.args(["pipeline", "create", "-f"]).arg(file).env("REDRIVE_SERVER", format!("http://{}", free_addr()));
        assert_refused(&sb, &mut create, file, needle, MAX_DEFINITION_BYTES);
        let mut server = server_command(&sb, "127.0.0.1:0");
        server.arg("--config").arg(file);
        assert_refused(&sb, &mut server, file, &format!("config file {}: {needle}", file.display()), MAX_CONFIG_FILE_BYTES);
    }
}

/// `{"name": "p", KEY: [0, 0, ...]}` of `MAX_DEFINITION_BYTES`: ~520k items.
fn half_a_million_items(sb: &Sandbox, key: &str) -> (PathBuf, usize) {
    let head = format!("{{\"name\": \"p\", \"{key}\": [0");
    let items = (MAX_DEFINITION_BYTES - head.len() - 2) / 2 + 1;
    let text = format!("{head}{}]}}", ",0".repeat(items - 1));
    assert!(text.len() <= MAX_DEFINITION_BYTES && items > 500_000, "{} bytes, {items} items", text.len());
    (sb.write(&format!("{key}.json"), &text), items)
}

#[test]
fn half_a_million_list_items_give_a_bounded_report() {
    let sb = Sandbox::new();
    let (file, items) = half_a_million_items(&sb, "stages");
    // Every item is a problem, and so is their number.
    let total = items + 1;
    let (r, text_rss_kib) = finish_measured(&mut validate_cmd(&file), Duration::from_secs(60));
    let r = r.code(2);
    let problem_lines = r.stderr.lines().filter(|l| l.starts_with("  ")).count();
    assert_eq!(problem_lines, MAX_PROBLEMS_REPORTED + 1, "{}", &r.stderr[..2000.min(r.stderr.len())]);
    assert!(r.stderr.starts_with(&format!("error: {} is invalid ({total} problems):", file.display())), "{}", &r.stderr[..300]);
    let omitted = total - MAX_PROBLEMS_REPORTED;
    assert!(
        r.stderr.trim_end().ends_with(&format!("$: and {omitted} more problems (only the first {MAX_PROBLEMS_REPORTED} are reported)"))
    );

    let (r, json_rss_kib) = finish_measured(validate_cmd(&file).args(["--output", "json"]), Duration::from_secs(60));
    let v = r.code(2).json();
    assert_eq!((v["problemCount"].as_u64(), v["problems"].as_array().map(Vec::len)), (Some(total as u64), Some(MAX_PROBLEMS_REPORTED + 1)));
    // Tens of MiB (the located tree) for 1 MiB of text; 250 to 750 MiB when every
    // problem was kept, and 140 when the YAML scanner held the whole document.
    for rss_kib in [text_rss_kib, json_rss_kib] {
        assert!(rss_kib < 100 * 1024, "validate peaked at {rss_kib} KiB");
    }
}

#[test]
fn a_config_of_half_a_million_items_gives_a_bounded_report() {
    let sb = Sandbox::new();
    let (file, _) = half_a_million_items(&sb, "redriveSchedules");
    let mut server = server_command(&sb, "127.0.0.1:0");
    server.arg("--config").arg(&file);
    let r = finish_within(&mut server, Duration::from_secs(60)).code(2);
    let problem_lines = r.stderr.lines().filter(|l| l.starts_with("  ")).count();
    assert_eq!(problem_lines, MAX_PROBLEMS_REPORTED + 1, "{}", &r.stderr[..2000.min(r.stderr.len())]);
    assert!(r.stderr.contains("more problems (only the first"), "{}", &r.stderr[..300]);
    assert!(!sb.db().exists());
}

#[test]
fn run_checks_input_size_and_depth_before_parsing() {
    let sb = Sandbox::new();
    let f = sb.write("ok.yaml", HEAD);
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let r = finish_within(bin().arg("run").arg(&f).arg("--db").arg(sb.db()).args(["--input", &deep]), REFUSAL_DEADLINE).code(2);
    assert!(r.stderr.contains("--input is nested 100 levels deep; the maximum is 64 levels"), "{}", r.stderr);
    assert!(!sb.db().exists());
}

#[test]
fn the_api_answers_a_half_million_item_definition_with_a_bounded_report() {
    let sb = Sandbox::new();
    let (file, items) = half_a_million_items(&sb, "stages");
    let definition: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    let (status, v) = http(&server.addr, "POST", "/v1/pipelines", Some(definition));
    let answer = v.to_string();
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("InvalidStructureException")), "{}", &answer[..300.min(answer.len())]);
    let problems = v["error"]["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), MAX_PROBLEMS_REPORTED + 1);
    let omitted = items + 1 - MAX_PROBLEMS_REPORTED;
    assert!(problems[MAX_PROBLEMS_REPORTED]["message"].as_str().unwrap().starts_with(&format!("and {omitted} more problems")));
    // The whole answer: the problems, and the message that lists them again.
    assert!(answer.len() < 64 * 1024, "the answer is {} bytes", answer.len());
}

#[test]
fn a_definition_starting_with_a_byte_order_mark_is_accepted() {
    let sb = Sandbox::new();
    for (name, text) in [
        ("bom.yaml", format!("\u{feff}{HEAD}")),
        (
            "bom.json",
            "\u{feff}{\"name\": \"p\", \"stages\": [{\"name\": \"S\", \"actions\": [{\"name\": \"A\", \"noop\": {}}]}]}".to_string(),
        ),
    ] {
        let f = sb.write(name, &text);
        let out = bin().arg("validate").arg(&f).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let (code, v, stderr) = sb.run_json(&f);
        assert_eq!(code, 0, "{name}: {stderr}");
        assert_eq!(v["status"], "Succeeded", "{name}");
    }
}

#[test]
fn explain_says_a_dependency_may_hold_the_retries() {
    let sb = Sandbox::new();
    let text = "name: p\ndependencies:\n  - name: pay\n    retryBudget: {ratio: 0.1, minRetriesPerSecond: 5, window: 60s}\n    circuitBreaker: {failureThreshold: 20, coolDown: 30s}\n  - name: bare\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {}\n        dependency: pay\n        retryPolicies: [{exceptionType: '*', maxAttempts: 2}]\n      - name: B\n        noop: {}\n        dependency: bare\n        retryPolicies: [{exceptionType: '*', maxAttempts: 2}]\n      - name: C\n        noop: {}\n        retryPolicies: [{exceptionType: '*', maxAttempts: 2}]\n";
    let f = sb.write("deps.yaml", text);
    let run = |action: &str, json: bool| {
        let mut cmd = bin();
        cmd.args(["policy", "explain"]).arg(&f).args(["--action", action, "--type", "Step.THROTTLING"]);
        if json {
            cmd.args(["--output", "json"]);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run("S/A", false);
    assert!(text.contains("Dependency: pay"), "{text}");
    assert!(text.contains("retries at most 10% of first attempts (or 5/s, whichever is more) over 1m"), "{text}");
    assert!(text.contains("opens after 20 failures in a row, holds every attempt for 30s"), "{text}");
    assert!(text.contains("held until admitted"), "{text}");
    let bare = run("S/B", false);
    assert!(bare.contains("Dependency: bare — its retry budget and circuit breaker are the server config's"), "{bare}");
    assert!(!run("S/C", false).contains("Dependency"), "an action without a dependency says nothing of holds");

    let v: serde_json::Value = serde_json::from_str(&run("S/A", true)).unwrap();
    assert_eq!(v["dependency"]["name"], "pay");
    assert_eq!(v["dependency"]["mayHoldRetries"], true);
    assert_eq!(v["dependency"]["declared"]["circuitBreaker"]["failureThreshold"], 20);
    let v: serde_json::Value = serde_json::from_str(&run("S/C", true)).unwrap();
    assert!(v.get("dependency").is_none(), "{v}");
}
