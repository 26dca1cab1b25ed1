//! `redrive validate`, `redrive run` on invalid files, `redrive policy explain`.

mod common;
use common::*;

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
