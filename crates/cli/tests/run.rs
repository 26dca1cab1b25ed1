//! `redrive run` end to end: policies, classification, the built-in default.

mod common;
use common::*;

#[test]
fn flaky_command_is_retried_then_succeeds() {
    let sb = Sandbox::new();
    let f = sb.write(
        "p.yaml",
        r#"
name: flaky
stages:
  - name: Build
    actions:
      - name: Compile
        command: ["sh", "-c", "echo run >> runs.log; [ \"$REDRIVE_ATTEMPT\" -gt 2 ] || { echo broken >&2; exit 1; }"]
        retryPolicies:
          - {exceptionType: [Action.FAILED], intervalSeconds: 0.2, backoffRate: 2, maxAttempts: 3}
"#,
    );
    let (code, v, stderr) = sb.run_json(&f);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(v["status"], "Succeeded");
    let a = attempts(&v, "Build", "Compile");
    assert_eq!(a.len(), 3);
    assert_eq!(a[0]["exceptionType"], "Action.FAILED");
    assert!(a[0]["message"].as_str().unwrap().contains("broken"), "{}", a[0]);
    assert_eq!(a[0]["decision"]["decision"], "retry");
    assert_eq!(a[0]["decision"]["delayMs"], 200);
    assert_eq!(a[1]["decision"]["delayMs"], 400);
    assert_eq!(a[2]["outcome"], "SUCCEEDED");
    // Relative paths run in the definition's directory.
    assert_eq!(std::fs::read_to_string(sb.path("runs.log")).unwrap().lines().count(), 3);
    // The observed gap honours the delay.
    let gap = |i: usize| {
        let a = &a;
        let t = |s: &serde_json::Value| s.as_str().unwrap().to_string();
        (t(&a[i + 1]["startedAt"]), t(&a[i]["finishedAt"]))
    };
    let (next, prev) = gap(0);
    assert!(next > prev);
}

#[test]
fn max_attempts_zero_never_retries() {
    let sb = Sandbox::new();
    let f = sb.write(
        "p.yaml",
        r#"
name: never
stages:
  - name: S
    actions:
      - name: A
        noop: {failFirst: 5, failWith: Step.SERVICE_FAULT}
        retryPolicies:
          - {exceptionType: [Step.SERVICE_FAULT], maxAttempts: 0}
"#,
    );
    let (code, v, _) = sb.run_json(&f);
    assert_eq!(code, 1);
    assert_eq!(v["status"], "Failed");
    let a = attempts(&v, "S", "A");
    assert_eq!(a.len(), 1, "the built-in default is overridden");
    assert_eq!(a[0]["decision"]["decision"], "giveUp");
    assert_eq!(a[0]["decision"]["reason"], "retriesDisabled");
}

#[test]
fn builtin_default_retries_service_fault_and_throttling_only() {
    let sb = Sandbox::new();
    let f = sb.write(
        "p.yaml",
        r#"
name: defaults
stages:
  - name: S
    actions:
      - name: Fault
        noop: {failFirst: 2, failWith: Step.SERVICE_FAULT}
      - name: Throttled
        noop: {failFirst: 1, failWith: Step.THROTTLING}
  - name: T
    actions:
      - name: Broken
        noop: {failFirst: 1, failWith: Job.INTERNAL_ERROR}
"#,
    );
    let (code, v, _) = sb.run_json(&f);
    assert_eq!(code, 1);
    assert_eq!(attempts(&v, "S", "Fault").len(), 3);
    assert_eq!(attempts(&v, "S", "Throttled").len(), 2);
    for a in attempts(&v, "S", "Fault").iter().take(2) {
        assert_eq!(a["decision"]["policy"]["kind"], "builtinDefault");
        assert!(ms(&a["decision"]["delayMs"]) <= ms(&a["decision"]["computedDelayMs"]), "FULL jitter never exceeds the computed delay");
    }
    let broken = attempts(&v, "T", "Broken");
    assert_eq!(broken.len(), 1);
    assert_eq!(broken[0]["decision"]["reason"], "noMatchingPolicy");
}

#[test]
fn first_matching_policy_wins_and_counts_separately() {
    let sb = Sandbox::new();
    let f = sb.write(
        "p.yaml",
        r#"
name: ordering
stages:
  - name: S
    actions:
      - name: A
        command:
          - sh
          - -c
          - |
            case "$REDRIVE_ATTEMPT" in
              1|3) t=Step.THROTTLING ;;
              *) t=PaymentDeclined ;;
            esac
            printf '{"errorType": "%s", "message": "attempt %s"}' "$t" "$REDRIVE_ATTEMPT" > "$REDRIVE_ERROR_FILE"
            exit 1
        retryPolicies:
          - {exceptionType: [Step.THROTTLING], intervalSeconds: 0, maxAttempts: 1}
          - {exceptionType: ["*"], intervalSeconds: 0, maxAttempts: 5}
"#,
    );
    let (code, v, stderr) = sb.run_json(&f);
    assert_eq!(code, 1, "{stderr}");
    let a = attempts(&v, "S", "A");
    let seen: Vec<(String, String)> = a
        .iter()
        .map(|a| {
            (
                a["exceptionType"].as_str().unwrap().to_string(),
                format!("{}:{}", a["decision"]["decision"].as_str().unwrap(), a["decision"]["policy"]["index"]),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("Step.THROTTLING".to_string(), "retry:0".to_string()),
            ("PaymentDeclined".to_string(), "retry:1".to_string()),
            ("Step.THROTTLING".to_string(), "giveUp:0".to_string()),
        ]
    );
    assert_eq!(a[2]["decision"]["reason"], "maxAttemptsReached");
}

#[test]
fn timeout_kills_the_command_and_is_classified() {
    let sb = Sandbox::new();
    let f = sb.write(
        "p.yaml",
        r#"
name: slow
stages:
  - name: S
    actions:
      - name: Hang
        command: ["sleep", "30"]
        timeoutSeconds: 1
"#,
    );
    let t = std::time::Instant::now();
    let (code, v, _) = sb.run_json(&f);
    assert_eq!(code, 1);
    assert!(t.elapsed().as_secs() < 20, "the command was killed on timeout");
    let a = attempts(&v, "S", "Hang");
    assert_eq!(a.len(), 1, "Step.TIMEOUT is not retried by default");
    assert_eq!(a[0]["exceptionType"], "Step.TIMEOUT");
}

#[test]
fn exit_codes_map_to_exception_types() {
    let sb = Sandbox::new();
    let f = sb.write(
        "p.yaml",
        r#"
name: codes
stages:
  - name: S
    actions:
      - name: A
        command: ["sh", "-c", "[ \"$REDRIVE_ATTEMPT\" -gt 1 ] || exit 75"]
        exitCodes: {"75": Step.THROTTLING}
        retryPolicies: [{exceptionType: Step.THROTTLING, intervalSeconds: 0.1}]
"#,
    );
    let (code, v, _) = sb.run_json(&f);
    assert_eq!(code, 0);
    assert_eq!(attempts(&v, "S", "A")[0]["exceptionType"], "Step.THROTTLING");
}

/// `ExpireAfterMin` through the binary, kept short: a failure inside the
/// expiry window is retried, and the retry's decision names the policy. (Whole
/// minutes only, and 0 disables retries, so an expiry seen through the binary
/// costs over a minute of wall clock; the logic — retried at 31 s, expired at
/// 62 s — is tested on virtual time in the engine: `crates/engine/tests/driver.rs`,
/// `expire_after_min_stops_retries`; the decision's wire form in
/// `crates/core/src/policy/tests.rs`.)
#[test]
fn expire_after_min_retries_inside_its_window() {
    let sb = Sandbox::new();
    let f = sb.write(
        "p.yaml",
        r#"
name: expiry
stages:
  - name: S
    actions:
      - name: Slow
        noop: {failFirst: 1, failWith: Job.RESOURCE_LIMIT, sleepMs: 20}
        retryPolicies:
          - {ExceptionType: [Job.RESOURCE_LIMIT], IntervalSeconds: 0, ExpireAfterMin: 1}
"#,
    );
    let (code, v, _) = sb.run_json(&f);
    assert_eq!(code, 0, "{v}");
    let a = attempts(&v, "S", "Slow");
    assert_eq!(a.len(), 2, "{v}");
    assert_eq!(a[0]["decision"]["decision"], "retry", "{v}");
    assert_eq!(a[0]["decision"]["policy"], serde_json::json!({"index": 0, "kind": "declared"}), "{v}");
    assert_eq!(a[1]["outcome"], "SUCCEEDED", "{v}");
}

#[test]
fn http_429_retry_after_is_honoured() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let mut arrivals = Vec::new();
        for (i, stream) in listener.incoming().take(2).enumerate() {
            let mut s = stream.unwrap();
            arrivals.push((std::time::Instant::now(), String::new()));
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).unwrap();
            arrivals.last_mut().unwrap().1 = String::from_utf8_lossy(&buf[..n]).to_string();
            let resp = if i == 0 {
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2\r\nContent-Length: 4\r\nConnection: close\r\n\r\nslow"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{\"ok\":true}"
            };
            s.write_all(resp.as_bytes()).unwrap();
        }
        arrivals
    });
    let sb = Sandbox::new();
    let f = sb.write(
        "p.yaml",
        &format!(
            r#"
name: http
stages:
  - name: S
    actions:
      - name: Call
        http: {{method: POST, url: "http://127.0.0.1:{port}/hook", body: {{"hello": "world"}}}}
        retryPolicies: [{{exceptionType: [Step.THROTTLING], intervalSeconds: 0.1, maxAttempts: 2}}]
"#
        ),
    );
    let (code, v, stderr) = sb.run_json(&f);
    assert_eq!(code, 0, "{stderr}");
    let arrivals = server.join().unwrap();
    let gap = arrivals[1].0 - arrivals[0].0;
    assert!(gap >= std::time::Duration::from_secs(2), "retried after {gap:?}, before the 2 s hint");
    let a = attempts(&v, "S", "Call");
    assert_eq!(a[0]["exceptionType"], "Step.THROTTLING");
    assert_eq!(a[0]["decision"]["delayMs"], 2000);
    assert_eq!(a[0]["decision"]["hintMs"], 2000);
    let key =
        arrivals[0].1.lines().find(|l| l.to_ascii_lowercase().starts_with("idempotency-key:")).expect("Idempotency-Key header").to_string();
    let key2 = arrivals[1].1.lines().find(|l| l.to_ascii_lowercase().starts_with("idempotency-key:")).unwrap().to_string();
    assert_eq!(key, key2, "the key is stable across attempts");
}

#[test]
fn quickstart_example_runs() {
    let sb = Sandbox::new();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.yaml");
    let (code, v, stderr) = sb.run_json(&example);
    assert_eq!(code, 0, "{stderr}\n{v}");
    assert_eq!(attempts(&v, "Build", "Compile").len(), 3);
    let fetch = attempts(&v, "Build", "FetchDependencies");
    assert_eq!(fetch.len(), 3);
    assert!(ms(&fetch[0]["decision"]["delayMs"]) >= 1000, "retryAfterSeconds honoured");
}

/// An action sees its declared `env` and the REDRIVE_* variables, plus PATH and
/// the like, never the rest of the engine's environment (credentials live there).
#[test]
fn actions_do_not_inherit_the_engines_environment() {
    let sb = Sandbox::new();
    let out = sb.path("seen");
    let f = sb.write(
        "p.yaml",
        &format!(
            "name: env\nstages:\n  - name: S\n    actions:\n      - name: A\n        command: [\"sh\", \"-c\", \"echo ${{ENGINE_SECRET:-absent}} ${{DECLARED:-missing}} ${{REDRIVE_ACTION}} $(command -v sh) > {}\"]\n        env: {{DECLARED: yes}}\n",
            out.display()
        ),
    );
    let status = bin()
        .arg("run")
        .arg(&f)
        .arg("--db")
        .arg(sb.db())
        .env("ENGINE_SECRET", "hunter2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let seen = std::fs::read_to_string(&out).unwrap();
    let words: Vec<&str> = seen.split_whitespace().collect();
    assert_eq!(&words[..3], ["absent", "yes", "A"], "{seen}");
    assert!(words[3].ends_with("/sh"), "PATH still finds programs: {seen}");
}
