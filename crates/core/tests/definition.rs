//! Pipeline definitions through the public API: text → validated `Pipeline`, or
//! every problem with its path, line and field.

use redrive_core::definition::source::{Node, parse_document};
use redrive_core::definition::*;
use redrive_core::exception::ExceptionType;
use redrive_core::policy::{Jitter, RetryLimit, RetryPolicy};

const EXAMPLE_YAML: &str = r#"name: quickstart
executionMode: PARALLEL
stages:
  - name: Build
    actions:
      - name: Compile
        runOrder: 1
        command: ["./scripts/flaky.sh", "2"]   # argv; env, workingDirectory, timeoutSeconds, exitCodes beside it
        timeoutSeconds: 60
        env: {RUST_LOG: debug, RETRIES: 3}
        workingDirectory: scripts
        exitCodes: {"75": Step.THROTTLING, 3: SageMaker.CAPACITY_ERROR}
        retryPolicies:
          - exceptionType: [Action.FAILED]
            intervalSeconds: 0.5
            backoffRate: 2
            maxAttempts: 3
      - name: Notify
        runOrder: 2
        http: {method: POST, url: "http://127.0.0.1:9000/hook", headers: {}, body: {}}
  - name: Deploy
    onFailure: {result: RETRY, retryConfiguration: {retryMode: FAILED_ACTIONS}}
    actions:
      - name: Rollout
        function: rollout          # a function registered through the SDK
      - name: Smoke
        noop: {failFirst: 1, failWith: Step.THROTTLING, sleepMs: 5}
"#;

const EXAMPLE_JSON: &str = r#"{
  "name": "quickstart",
  "executionMode": "PARALLEL",
  "stages": [
    {
      "name": "Build",
      "actions": [
        {
          "name": "Compile",
          "runOrder": 1,
          "command": ["./scripts/flaky.sh", "2"],
          "timeoutSeconds": 60,
          "env": {"RUST_LOG": "debug", "RETRIES": "3"},
          "workingDirectory": "scripts",
          "exitCodes": {"75": "Step.THROTTLING", "3": "Job.CAPACITY_ERROR"},
          "retryPolicies": [
            {"exceptionType": ["Action.FAILED"], "intervalSeconds": 0.5, "backoffRate": 2, "maxAttempts": 3}
          ]
        },
        {
          "name": "Notify",
          "runOrder": 2,
          "http": {"method": "POST", "url": "http://127.0.0.1:9000/hook", "headers": {}, "body": {}}
        }
      ]
    },
    {
      "name": "Deploy",
      "onFailure": {"result": "RETRY", "retryConfiguration": {"retryMode": "FAILED_ACTIONS"}},
      "actions": [
        {"name": "Rollout", "function": "rollout"},
        {"name": "Smoke", "noop": {"failFirst": 1, "failWith": "Step.THROTTLING", "sleepMs": 5}}
      ]
    }
  ]
}"#;

fn ok(text: &str) -> Pipeline {
    match parse_pipeline_text(text) {
        Ok(p) => p,
        Err(problems) => panic!("unexpected problems:\n{}", lines(&problems)),
    }
}

fn problems(text: &str) -> Vec<Problem> {
    match parse_pipeline_text(text) {
        Ok(p) => panic!("expected problems, got {p:?}"),
        Err(problems) => problems,
    }
}

fn lines(problems: &[Problem]) -> String {
    problems.iter().map(|p| format!("  {p}\n")).collect()
}

/// Exactly one problem.
fn one(text: &str) -> Problem {
    let ps = problems(text);
    assert_eq!(ps.len(), 1, "expected one problem:\n{}", lines(&ps));
    ps.into_iter().next().unwrap()
}

/// A pipeline whose only action (Build/Compile) carries one retry policy written
/// as `policy` lines; the policy's first line is line 8.
fn with_policy(list_key: &str, policy: &[&str]) -> String {
    let mut s =
        format!("name: p\nstages:\n  - name: Build\n    actions:\n      - name: Compile\n        command: [make]\n        {list_key}:\n");
    for (i, l) in policy.iter().enumerate() {
        s.push_str(if i == 0 { "          - " } else { "            " });
        s.push_str(l);
        s.push('\n');
    }
    s
}

fn only_policy(p: &Pipeline) -> &RetryPolicy {
    &p.stages[0].actions[0].retry_policies[0]
}

// ---------------------------------------------------------------------------
// Valid definitions

#[test]
fn product_example_yaml() {
    let p = ok(EXAMPLE_YAML);
    assert_eq!(p.name.as_str(), "quickstart");
    assert_eq!(p.execution_mode, ExecutionMode::Parallel);
    assert_eq!(p.max_concurrent_executions, DEFAULT_MAX_CONCURRENT_EXECUTIONS);
    assert_eq!(p.stages.len(), 2);

    let build = &p.stages[0];
    assert_eq!(build.name.as_str(), "Build");
    assert_eq!(build.on_failure, None);
    assert_eq!(build.run_orders(), vec![1, 2]);
    let compile = &build.actions[0];
    assert_eq!(compile.run_order, 1);
    assert_eq!(compile.timeout_seconds, Some(60));
    let ActionKind::Command(c) = &compile.kind else { panic!("{:?}", compile.kind) };
    assert_eq!(c.argv, vec!["./scripts/flaky.sh", "2"]);
    assert_eq!(c.env.get("RUST_LOG").map(String::as_str), Some("debug"));
    assert_eq!(c.env.get("RETRIES").map(String::as_str), Some("3"), "numbers in env are stringified");
    assert_eq!(c.working_directory.as_deref(), Some("scripts"));
    assert_eq!(c.exit_codes.get(&75), Some(&ExceptionType::Throttling));
    assert_eq!(c.exit_codes.get(&3), Some(&ExceptionType::JobCapacityError));
    let policy = only_policy(&p);
    assert_eq!(policy.interval_ms(), 500);
    assert_eq!(policy.backoff_rate(), 2.0);
    assert_eq!(policy.limit(), RetryLimit::MaxAttempts(3));
    assert!(policy.matches(&ExceptionType::ActionFailed));

    let notify = &build.actions[1];
    assert_eq!(notify.run_order, 2);
    let ActionKind::Http(h) = &notify.kind else { panic!() };
    assert_eq!((h.method.as_str(), h.url.as_str()), ("POST", "http://127.0.0.1:9000/hook"));
    assert_eq!(h.body, Some(serde_json::json!({})));

    let deploy = &p.stages[1];
    assert_eq!(deploy.on_failure, Some(StageAutoRetry { retry_mode: RetryMode::FailedActions, max_retries: 1 }));
    let ActionKind::Function(f) = &deploy.actions[0].kind else { panic!() };
    assert_eq!(f.function_name.as_str(), "rollout");
    assert_eq!(deploy.actions[0].run_order, 1);
    let ActionKind::Noop(n) = &deploy.actions[1].kind else { panic!() };
    assert_eq!(n, &NoopSpec { fail_first: 1, fail_with: ExceptionType::Throttling, sleep_ms: 5, retry_after_seconds: None });
}

#[test]
fn json_and_yaml_give_the_same_pipeline() {
    assert_eq!(ok(EXAMPLE_JSON), ok(EXAMPLE_YAML));
}

#[test]
fn code_pipeline_create_shape_is_accepted() {
    let wrapped = format!(r#"{{"pipeline": {EXAMPLE_JSON}, "tags": [{{"key": "team", "value": "ml"}}]}}"#);
    assert_eq!(ok(&wrapped), ok(EXAMPLE_YAML));
}

#[test]
fn parse_pipeline_accepts_trees_built_from_json() {
    let v: serde_json::Value = serde_json::from_str(EXAMPLE_JSON).unwrap();
    assert_eq!(parse_pipeline(&Node::from_json(&v)).unwrap(), ok(EXAMPLE_YAML));
    assert_eq!(parse_pipeline(&parse_document(EXAMPLE_JSON).unwrap()).unwrap(), ok(EXAMPLE_YAML));
}

#[test]
fn defaults_and_accepted_but_ignored_fields() {
    let p = ok(r#"
name: p
version: 3
roleArn: arn:aws:iam::123:role/x
artifactStore: {type: S3, location: bucket}
pipelineType: V2
variables: []
triggers: []
deadLetterQueue: retry-orders
stages:
  - name: S
    blockers: []
    onSuccess: {}
    beforeEntry: {}
    onFailure: {result: RETRY, retryConfiguration: {retryMode: ALL_ACTIONS}, maxRetries: 3}
    actions:
      - name: A
        noop:
        inputArtifacts: []
        outputArtifacts: []
        region: us-east-1
        namespace: ns
        roleArn: x
"#);
    assert_eq!(p.execution_mode, ExecutionMode::Superseded);
    assert_eq!(p.max_concurrent_executions, DEFAULT_MAX_CONCURRENT_EXECUTIONS);
    assert_eq!(p.stages[0].on_failure, Some(StageAutoRetry { retry_mode: RetryMode::AllActions, max_retries: 3 }));
    let a = &p.stages[0].actions[0];
    assert_eq!(a.run_order, 1);
    assert!(a.retry_policies.is_empty());
    assert_eq!(a.timeout_seconds, None);
    assert_eq!(
        a.kind,
        ActionKind::Noop(NoopSpec { fail_first: 0, fail_with: ExceptionType::ActionFailed, sleep_ms: 0, retry_after_seconds: None })
    );

    let p = ok(
        "name: p\nexecutionMode: PARALLEL\nmaxConcurrentExecutions: 4\nstages: [{name: S, actions: [{name: A, http: {url: 'https://x.test/'}}]}]",
    );
    assert_eq!(p.max_concurrent_executions, 4);
    let ActionKind::Http(h) = &p.stages[0].actions[0].kind else { panic!() };
    assert_eq!(h.method, "POST");
    assert_eq!(h.body, None);
}

#[test]
fn three_policy_spellings_mean_the_same() {
    let camel = ok(&with_policy(
        "retryPolicies",
        &[
            "exceptionType: [Step.THROTTLING, Job.INTERNAL_ERROR]",
            "intervalSeconds: 2",
            "backoffRate: 3",
            "maxAttempts: 4",
            "maxIntervalSeconds: 30",
            "jitter: FULL",
        ],
    ));
    let pascal = ok(&with_policy(
        "RetryPolicies",
        &[
            "ExceptionType: [Step.THROTTLING, SageMaker.JOB_INTERNAL_ERROR]",
            "IntervalSeconds: 2",
            "BackoffRate: 3",
            "MaxAttempts: 4",
            "MaxIntervalSeconds: 30",
            "Jitter: FULL",
        ],
    ));
    let step_functions = ok(&with_policy(
        "Retry",
        &[
            "ErrorEquals: [Step.THROTTLING, Job.INTERNAL_ERROR]",
            "IntervalSeconds: 2",
            "BackoffRate: 3",
            "MaxAttempts: 4",
            "MaxDelaySeconds: 30",
            "JitterStrategy: FULL",
        ],
    ));
    assert_eq!(only_policy(&camel), only_policy(&pascal));
    assert_eq!(only_policy(&camel), only_policy(&step_functions));
    assert_eq!(camel, pascal);
    assert_eq!(camel, step_functions);
    let p = only_policy(&camel);
    assert_eq!((p.interval_ms(), p.backoff_rate(), p.limit()), (2000, 3.0, RetryLimit::MaxAttempts(4)));
    assert_eq!((p.max_interval_ms(), p.jitter()), (Some(30_000), Jitter::Full));

    // A PascalCase policy in a camelCase list, and a single exception type as a string.
    let mixed_lists = ok(&with_policy("retryPolicies", &["ExceptionType: Step.THROTTLING", "ExpireAfterMin: 60"]));
    assert_eq!(only_policy(&mixed_lists).limit(), RetryLimit::ExpireAfterMin(60));
}

/// The CodePipeline wire form of the example, with every setting a string.
const WIRE_YAML: &str = r#"
pipeline:
  name: quickstart
  executionMode: PARALLEL
  version: 1
  stages:
    - name: Build
      actions:
        - name: Compile
          runOrder: 1
          actionTypeId: {category: Build, owner: Custom, provider: Command, version: "1"}
          configuration:
            Command: '["./scripts/flaky.sh", "2"]'
            TimeoutSeconds: "60"
            Env: '{"RUST_LOG": "debug", "RETRIES": "3"}'
            WorkingDirectory: scripts
            ExitCodes: '{"75": "Step.THROTTLING", "3": "Job.CAPACITY_ERROR"}'
            RetryPolicies: '[{"ExceptionType": ["Action.FAILED"], "IntervalSeconds": 0.5, "BackoffRate": 2, "MaxAttempts": 3}]'
          inputArtifacts: []
        - name: Notify
          runOrder: 2
          actionTypeId: {category: Invoke, owner: Custom, provider: Http, version: "1"}
          configuration: {Url: "http://127.0.0.1:9000/hook", Method: POST, Headers: "{}", Body: "{}"}
    - name: Deploy
      onFailure: {result: RETRY, retryConfiguration: {retryMode: FAILED_ACTIONS}}
      actions:
        - name: Rollout
          actionTypeId: {category: Deploy, owner: Custom, provider: Function, version: "1"}
          configuration: {FunctionName: rollout}
        - name: Smoke
          actionTypeId: {category: Test, owner: Custom, provider: Noop, version: "1"}
          configuration: {FailFirst: "1", FailWith: Step.THROTTLING, SleepMs: "5"}
"#;

#[test]
fn wire_form_equals_shorthand() {
    assert_eq!(ok(WIRE_YAML), ok(EXAMPLE_YAML));
}

#[test]
fn wire_form_body_and_step_functions_retry_in_configuration() {
    let wire = ok(r#"
name: p
stages:
  - name: S
    actions:
      - name: H
        actionTypeId: {category: Invoke, owner: Custom, provider: Http, version: "1"}
        configuration:
          Url: https://example.test/x
          Body: plain text, not JSON
          RetryPolicies: '[{"ErrorEquals": ["Step.THROTTLING"], "MaxAttempts": 2}]'
"#);
    let short = ok(r#"
name: p
stages:
  - name: S
    actions:
      - name: H
        http: {url: "https://example.test/x", body: "plain text, not JSON"}
        Retry: [{ErrorEquals: [Step.THROTTLING], MaxAttempts: 2}]
"#);
    assert_eq!(wire, short);
}

// ---------------------------------------------------------------------------
// Problems

#[test]
fn max_attempts_and_expire_after_min_together() {
    let p = one(&with_policy("RetryPolicies", &["ExceptionType: [Step.THROTTLING]", "MaxAttempts: 3", "ExpireAfterMin: 5"]));
    assert_eq!(p.path, "$.stages[0].actions[0].RetryPolicies[0].ExpireAfterMin");
    assert_eq!(p.line, Some(10));
    assert_eq!(p.field, "ExpireAfterMin");
    assert!(p.message.contains("MaxAttempts") && p.message.contains("ExpireAfterMin"), "{p}");
    assert!(p.message.contains("policy #1") && p.message.contains("Build/Compile"), "{p}");
    assert_eq!(
        p.message,
        "action Build/Compile, policy #1: MaxAttempts and ExpireAfterMin cannot both be set; a policy takes one or the other"
    );

    // camelCase: the message uses the user's spelling.
    let p = one(&with_policy("retryPolicies", &["exceptionType: [Step.THROTTLING]", "maxAttempts: 3", "expireAfterMin: 5"]));
    assert_eq!(p.field, "expireAfterMin");
    assert!(p.message.contains("maxAttempts and expireAfterMin"), "{p}");
}

#[test]
fn interval_seconds_out_of_range() {
    let p = one(&with_policy("RetryPolicies", &["ExceptionType: [Step.THROTTLING]", "IntervalSeconds: 50000"]));
    assert_eq!(p.path, "$.stages[0].actions[0].RetryPolicies[0].IntervalSeconds");
    assert_eq!((p.line, p.field.as_str(), p.value.as_deref()), (Some(9), "IntervalSeconds", Some("50000")));
    assert!(p.allowed.as_deref().unwrap().contains("43200"), "{p}");
}

#[test]
fn max_attempts_out_of_range() {
    let p = one(&with_policy("RetryPolicies", &["ExceptionType: [Step.THROTTLING]", "MaxAttempts: 21"]));
    assert_eq!(p.path, "$.stages[0].actions[0].RetryPolicies[0].MaxAttempts");
    assert_eq!((p.line, p.field.as_str(), p.value.as_deref()), (Some(9), "MaxAttempts", Some("21")));
    assert!(p.allowed.as_deref().unwrap().contains("0 to 20"), "{p}");
    assert_eq!(
        p.to_string(),
        "line 9: $.stages[0].actions[0].RetryPolicies[0].MaxAttempts: action Build/Compile, policy #1, MaxAttempts: is out of range (got 21; allowed: an integer from 0 to 20 (0 = never retry))"
    );
}

#[test]
fn unknown_exception_type_points_at_the_list_entry() {
    let p = one(&with_policy(
        "RetryPolicies",
        &["ExceptionType:", "  - Step.THROTTLING", "  - Action.FAILED", "  - Step.FOO", "MaxAttempts: 2"],
    ));
    assert_eq!(p.path, "$.stages[0].actions[0].RetryPolicies[0].ExceptionType[2]");
    assert_eq!((p.line, p.field.as_str(), p.value.as_deref()), (Some(11), "ExceptionType", Some("\"Step.FOO\"")));
    assert!(p.message.contains("Step.FOO"), "{p}");

    let p = one(&with_policy("Retry", &["ErrorEquals: [Step.FOO]"]));
    assert_eq!(p.path, "$.stages[0].actions[0].Retry[0].ErrorEquals[0]");
    assert_eq!(p.field, "ErrorEquals");

    let p = one(&with_policy("retryPolicies", &["exceptionType: Step.FOO"]));
    assert_eq!(p.path, "$.stages[0].actions[0].retryPolicies[0].exceptionType");
}

#[test]
fn missing_exception_type_uses_the_spelling_in_use() {
    let p = one(&with_policy("RetryPolicies", &["MaxAttempts: 2"]));
    assert_eq!(p.path, "$.stages[0].actions[0].RetryPolicies[0].ExceptionType");
    assert_eq!((p.line, p.field.as_str(), p.value.as_deref()), (Some(8), "ExceptionType", None));
    let p = one(&with_policy("retryPolicies", &["maxAttempts: 2"]));
    assert_eq!(p.field, "exceptionType");
}

#[test]
fn bad_pipeline_name() {
    let p = one("name: bad name!\nstages: [{name: S, actions: [{name: A, noop: {}}]}]\n");
    assert_eq!((p.path.as_str(), p.line, p.field.as_str()), ("$.name", Some(1), "name"));
    assert_eq!(p.value.as_deref(), Some("\"bad name!\""));
    assert!(p.allowed.as_deref().unwrap().contains("A-Za-z0-9"), "{p}");
}

#[test]
fn duplicate_action_names() {
    let p = one("name: p\nstages:\n  - name: Build\n    actions:\n      - name: A\n        noop: {}\n      - name: A\n        noop: {}\n");
    assert_eq!((p.path.as_str(), p.line, p.field.as_str()), ("$.stages[0].actions[1].name", Some(7), "name"));
    assert_eq!(p.message, "duplicate action name \"A\" in stage Build (also at $.stages[0].actions[0])");
}

#[test]
fn duplicate_stage_names() {
    let p = one("name: p\nstages:\n  - {name: S, actions: [{name: A, noop: {}}]}\n  - {name: S, actions: [{name: A, noop: {}}]}\n");
    assert_eq!((p.path.as_str(), p.line), ("$.stages[1].name", Some(4)));
    assert!(p.message.contains("$.stages[0]"), "{p}");
}

#[test]
fn empty_stage() {
    let p = one("name: p\nstages:\n  - name: Build\n    actions: []\n");
    assert_eq!((p.path.as_str(), p.line, p.field.as_str()), ("$.stages[0].actions", Some(4), "actions"));
    assert!(p.message.contains("stage Build has no actions"), "{p}");

    let p = one("name: p\nstages:\n  - name: Build\n");
    assert_eq!((p.path.as_str(), p.line, p.field.as_str()), ("$.stages[0].actions", Some(3), "actions"));
    assert!(p.message.contains("stage Build has no actions"), "{p}");
}

#[test]
fn no_stages() {
    let p = one("name: p\n");
    assert_eq!((p.path.as_str(), p.line, p.field.as_str()), ("$.stages", Some(1), "stages"));
    assert!(p.message.contains("no stages"), "{p}");
    let p = one("name: p\nstages: []\n");
    assert_eq!((p.path.as_str(), p.line), ("$.stages", Some(2)));
    assert!(p.message.contains("no stages"), "{p}");
    // JSON, where lines are known too.
    let p = one("{\n  \"name\": \"x\",\n  \"stages\": []\n}");
    assert_eq!((p.path.as_str(), p.line), ("$.stages", Some(3)));
}

#[test]
fn unknown_field_typo() {
    let text = "name: p\nstages:\n  - name: Build\n    actions:\n      - name: Compile\n        command: [make]\n        retryPolicy:\n          - {exceptionType: [Step.THROTTLING]}\n";
    let p = one(text);
    assert_eq!(p.path, "$.stages[0].actions[0].retryPolicy");
    assert_eq!(p.field, "retryPolicy");
    assert!(p.message.contains("unknown field") && p.message.contains("did you mean retryPolicies"), "{p}");
    assert!(p.allowed.as_deref().unwrap().contains("retryPolicies"), "{p}");

    let p = one("name: p\nexecutionmode: QUEUED\nstages: [{name: S, actions: [{name: A, noop: {}}]}]\n");
    assert_eq!((p.path.as_str(), p.line), ("$.executionmode", Some(2)));
    assert!(p.message.contains("did you mean executionMode"), "{p}");

    let p = one(&with_policy("RetryPolicies", &["ExceptionType: [Step.THROTTLING]", "MaxAttempt: 3"]));
    assert_eq!(p.path, "$.stages[0].actions[0].RetryPolicies[0].MaxAttempt");
    assert!(p.message.contains("did you mean MaxAttempts"), "{p}");
}

#[test]
fn every_problem_is_reported() {
    let text = r#"name: bad name!
stages:
  - name: Build
    actions:
      - name: Compile
        command: [make]
        retryPolicies:
          - exceptionType: [Step.FOO]
            maxAttempts: 21
      - name: Compile
        noop: {}
  - name: Empty
    actions: []
"#;
    let ps = problems(text);
    assert_eq!(ps.len(), 5, "{}", lines(&ps));
    let got: Vec<(&str, Option<u32>)> = ps.iter().map(|p| (p.path.as_str(), p.line)).collect();
    assert_eq!(
        got,
        vec![
            ("$.name", Some(1)),
            ("$.stages[0].actions[0].retryPolicies[0].exceptionType[0]", Some(8)),
            ("$.stages[0].actions[0].retryPolicies[0].maxAttempts", Some(9)),
            ("$.stages[0].actions[1].name", Some(10)),
            ("$.stages[1].actions", Some(13)),
        ]
    );
}

#[test]
fn problems_of_different_kinds_are_all_reported() {
    let text = r#"name: p
executionMode: QUEUED
maxConcurrentExecutions: 3
stages:
  - name: Build
    actions:
      - name: Compile
        command: []
        retryPolicies:
          - ExceptionType: [Step.THROTTLING]
            IntervalSeconds: 50000
      - name: Notify
        http: {url: "ftp://example.test/"}
  - name: Deploy
    onFailure: {result: ROLLBACK}
    actions:
      - name: Ship
        function: ship
        runOrder: 0
"#;
    let ps = problems(text);
    let got: Vec<(&str, Option<u32>, &str)> = ps.iter().map(|p| (p.path.as_str(), p.line, p.field.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("$.maxConcurrentExecutions", Some(3), "maxConcurrentExecutions"),
            ("$.stages[0].actions[0].command", Some(8), "command"),
            ("$.stages[0].actions[0].retryPolicies[0].IntervalSeconds", Some(11), "IntervalSeconds"),
            ("$.stages[0].actions[1].http.url", Some(13), "url"),
            ("$.stages[1].onFailure.result", Some(15), "result"),
            ("$.stages[1].actions[0].runOrder", Some(19), "runOrder"),
        ],
        "{}",
        lines(&ps)
    );
}

#[test]
fn syntax_error_is_one_problem_at_the_root() {
    let p = one("name: p\nstages: [\n  {name: S\n");
    assert_eq!(p.path, "$");
    assert_eq!(p.field, "");
    assert!(p.line.is_some());
    let p = one("name: p\nname: q\nstages: []\n");
    assert_eq!((p.path.as_str(), p.line), ("$", Some(2)));
    assert!(p.message.contains("duplicate key \"name\""), "{p}");
    assert_eq!(one("").message, "empty document (column 1)");
}

#[test]
fn display_leaves_out_missing_parts() {
    let p = Problem { path: "$.stages".into(), line: None, field: "stages".into(), value: None, message: "required".into(), allowed: None };
    assert_eq!(p.to_string(), "$.stages: required");
    let p = Problem { line: Some(4), allowed: Some("1 to 50".into()), ..p };
    assert_eq!(p.to_string(), "line 4: $.stages: required (allowed: 1 to 50)");
    let p = Problem { value: Some("[]".into()), allowed: None, ..p };
    assert_eq!(p.to_string(), "line 4: $.stages: required (got [])");
}

#[test]
fn policy_shape_problems() {
    // Two spellings of one field.
    let p = one(&with_policy("retryPolicies", &["exceptionType: [Step.THROTTLING]", "maxAttempts: 2", "MaxAttempts: 2"]));
    assert_eq!((p.path.as_str(), p.line), ("$.stages[0].actions[0].retryPolicies[0].MaxAttempts", Some(10)));
    assert!(p.message.contains("maxAttempts") && p.message.contains("MaxAttempts") && p.message.contains("mixes"), "{p}");

    // Type errors name the expected type.
    let p = one(&with_policy("retryPolicies", &["exceptionType: [Step.THROTTLING]", "maxAttempts: three"]));
    assert_eq!(p.path, "$.stages[0].actions[0].retryPolicies[0].maxAttempts");
    assert!(p.message.contains("expected a number"), "{p}");
    let p = one(&with_policy("retryPolicies", &["exceptionType: [Step.THROTTLING, 5]"]));
    assert_eq!(p.path, "$.stages[0].actions[0].retryPolicies[0].exceptionType[1]");
    assert!(p.message.contains("expected a string"), "{p}");

    // Step Functions jitter has no EQUAL.
    let p = one(&with_policy("Retry", &["ErrorEquals: [States.ALL]", "JitterStrategy: EQUAL"]));
    assert_eq!(p.allowed.as_deref(), Some("FULL or NONE"));

    // Two policy lists on one action.
    let text =
        "name: p\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {}\n        retryPolicies: []\n        Retry: []\n";
    let p = one(text);
    assert_eq!((p.path.as_str(), p.line), ("$.stages[0].actions[0].Retry", Some(8)));

    // Too many policies.
    let many: String = (0..21).map(|_| "{exceptionType: [Step.THROTTLING]}").collect::<Vec<_>>().join(", ");
    let p = one(&format!("name: p\nstages: [{{name: S, actions: [{{name: A, noop: {{}}, retryPolicies: [{many}]}}]}}]"));
    assert!(p.message.contains("too many retry policies"), "{p}");
}

#[test]
fn action_shape_problems() {
    let base = |action: &str| format!("name: p\nstages:\n  - name: S\n    actions:\n      - {action}\n");
    let p = one(&base("{name: A}"));
    assert_eq!((p.path.as_str(), p.line), ("$.stages[0].actions[0]", Some(5)));
    assert!(p.allowed.as_deref().unwrap().contains("command, http, noop, function"), "{p}");

    let p = one(&base("{name: A, noop: {}, function: f}"));
    assert_eq!(p.path, "$.stages[0].actions[0].function");
    assert!(p.message.contains("more than one kind"), "{p}");

    let p = one(&base("{name: A, noop: {}, env: {X: y}}"));
    assert_eq!(p.path, "$.stages[0].actions[0].env");

    let p = one(&base("{name: A, command: [make], exitCodes: {\"256\": Step.THROTTLING}}"));
    assert_eq!(p.path, "$.stages[0].actions[0].exitCodes[\"256\"]");

    let p = one(&base("{name: A, http: {method: post, url: 'http://x'}}"));
    assert_eq!(p.path, "$.stages[0].actions[0].http.method");

    let p = one(&base("{name: A, noop: {failWith: Step.NOPE}}"));
    assert_eq!(p.path, "$.stages[0].actions[0].noop.failWith");

    let p = one(&base("{name: A, function: 'bad name'}"));
    assert_eq!(p.path, "$.stages[0].actions[0].function");

    let p = one(&base("{name: A, noop: {}, timeoutSeconds: 0}"));
    assert_eq!(p.path, "$.stages[0].actions[0].timeoutSeconds");

    let p = one(&base("{name: A, actionTypeId: {provider: Lambda}, configuration: {}}"));
    assert_eq!(p.path, "$.stages[0].actions[0].actionTypeId.provider");

    let p = one(&base("{name: A, actionTypeId: {provider: Command}, configuration: {Command: '[\"a\",'}}"));
    assert_eq!(p.path, "$.stages[0].actions[0].configuration.Command");
    assert!(p.message.contains("not valid JSON"), "{p}");

    let p = one(&base("{name: A, actionTypeId: {provider: Command}, configuration: {Command: '[\"a\"]', Url: x}}"));
    assert_eq!(p.path, "$.stages[0].actions[0].configuration.Url");

    let p = one(&base(
        "{name: A, actionTypeId: {provider: Noop}, configuration: {RetryPolicies: '[{\"MaxAttempts\": 21, \"ExceptionType\": [\"*\"]}]'}}",
    ));
    assert_eq!(p.path, "$.stages[0].actions[0].configuration.RetryPolicies[0].MaxAttempts");
    assert_eq!(p.line, Some(5));
}

#[test]
fn pipeline_and_stage_level_problems() {
    let p = one("name: p\nexecutionMode: PARALLEL\nmaxConcurrentExecutions: 0\nstages: [{name: S, actions: [{name: A, noop: {}}]}]\n");
    assert_eq!(p.path, "$.maxConcurrentExecutions");
    let p = one("name: p\nmaxConcurrentExecutions: 5\nstages: [{name: S, actions: [{name: A, noop: {}}]}]\n");
    assert!(p.message.contains("only allowed with executionMode PARALLEL"), "{p}");
    let p = one("name: p\nexecutionMode: FIFO\nstages: [{name: S, actions: [{name: A, noop: {}}]}]\n");
    assert_eq!(p.allowed.as_deref(), Some("SUPERSEDED, QUEUED, PARALLEL"));
    let p = one("name: p\nstages: [{name: S, onFailure: {result: FAIL}, actions: [{name: A, noop: {}}]}]\n");
    assert!(p.message.contains("only RETRY"), "{p}");
    let p = one("- a\n- b\n");
    assert_eq!(p.path, "$");
    let p = one("{\"pipeline\": {\"name\": \"p\", \"stages\": []}}");
    assert_eq!(p.path, "$.pipeline.stages");
}

// ---------------------------------------------------------------------------
// Bounded reports

/// `count` stages, each a problem of its own (an integer where a map belongs),
/// one per line from line 3.
fn integer_stages(count: usize) -> String {
    let mut s = String::from("name: p\nstages:\n");
    s.push_str(&"  - 0\n".repeat(count));
    s
}

#[test]
fn problems_are_capped_in_document_order_and_the_rest_counted() {
    use redrive_core::limits::MAX_PROBLEMS_REPORTED;
    let ps = problems(&integer_stages(1000));
    // 1000 stages, each not a map, and "too many stages": 1001 problems.
    assert_eq!(ps.len(), MAX_PROBLEMS_REPORTED + 1, "{}", lines(&ps[..3]));
    assert_eq!(total_problems(&ps), 1001);
    assert!(ps[0].message.contains("too many stages"), "{}", ps[0]);
    for (i, p) in ps[1..MAX_PROBLEMS_REPORTED].iter().enumerate() {
        assert_eq!((p.path.clone(), p.line), (format!("$.stages[{i}]"), Some(3 + i as u32)), "{p}");
    }
    let last = ps.last().unwrap();
    assert_eq!(last.omitted(), Some(1001 - MAX_PROBLEMS_REPORTED));
    assert!(last.to_string().starts_with(&format!("$: and {} more problems", 1001 - MAX_PROBLEMS_REPORTED)), "{last}");

    // At the cap exactly: every problem, no count.
    let ps = problems(&integer_stages(MAX_PROBLEMS_REPORTED - 1));
    assert_eq!(ps.len(), MAX_PROBLEMS_REPORTED);
    assert!(ps.iter().all(|p| p.omitted().is_none()), "{}", lines(&ps));
}

#[test]
fn half_a_million_list_items_yield_a_bounded_report() {
    // The shape users hit: a 1 MiB document of ~520k list items.
    let items = vec!["0"; 520_000].join(",");
    let text = format!("{{\"name\": \"p\", \"stages\": [{items}]}}");
    assert!(text.len() <= redrive_core::limits::MAX_DEFINITION_BYTES);
    let ps = problems(&text);
    assert_eq!(ps.len(), redrive_core::limits::MAX_PROBLEMS_REPORTED + 1);
    assert_eq!(total_problems(&ps), 520_001);
}

#[test]
fn a_policy_lists_a_bounded_number_of_exception_types() {
    let types = |n: usize| vec!["Step.THROTTLING"; n].join(", ");
    let at_limit = format!("exceptionType: [{}]", types(MAX_EXCEPTION_TYPES_PER_POLICY));
    assert_eq!(only_policy(&ok(&with_policy("retryPolicies", &[&at_limit]))).exception_types().len(), MAX_EXCEPTION_TYPES_PER_POLICY);

    let over = format!("exceptionType: [{}]", vec!["no!"; 200_000].join(", "));
    let p = one(&with_policy("retryPolicies", &[&over]));
    assert_eq!((p.path.as_str(), p.line), ("$.stages[0].actions[0].retryPolicies[0].exceptionType", Some(8)));
    assert!(p.message.contains("policy #1 lists too many exception types"), "{p}");
    assert_eq!(p.value.as_deref(), Some("200000 exception types"));
    assert_eq!(p.allowed, Some(format!("at most {MAX_EXCEPTION_TYPES_PER_POLICY} exception types")));
}

#[test]
fn retention_days_is_a_whole_number_of_days() {
    let stages = "stages: [{name: S, actions: [{name: A, noop: {}}]}]";
    assert_eq!(ok(&format!("name: p\n{stages}")).retention_days, None);
    assert_eq!(ok(&format!("name: p\nretentionDays: 7\n{stages}")).retention_days, Some(7));
    assert_eq!(ok(&format!("name: p\nretentionDays: 36500\n{stages}")).retention_days, Some(36_500));
    for bad in ["0", "36501", "1.5", "'7d'"] {
        let p = one(&format!("name: p\nretentionDays: {bad}\n{stages}"));
        assert_eq!((p.path.as_str(), p.line), ("$.retentionDays", Some(2)), "{p}");
    }
}

#[test]
fn secret_env_names_are_checked() {
    let base = |action: &str| format!("name: p\nstages:\n  - name: S\n    actions:\n      - {action}\n");
    let p = ok(&base("{name: A, command: [deploy], env: {MODE: fast}, secretEnv: [API_TOKEN, _DB_PASS2]}"));
    let ActionKind::Command(c) = &p.stages[0].actions[0].kind else { panic!("a command") };
    assert_eq!(c.secret_env, ["API_TOKEN", "_DB_PASS2"]);

    for (names, why) in [
        ("[1TOKEN]", "environment variable name"),
        ("[\"A-B\"]", "environment variable name"),
        ("[\"\"]", "environment variable name"),
        ("[REDRIVE_INPUT]", "set by the engine"),
        ("[MODE]", "also in env"),
        ("[T, T]", "listed twice"),
    ] {
        let p = one(&base(&format!("{{name: A, command: [deploy], env: {{MODE: fast}}, secretEnv: {names}}}")));
        assert!(p.path.starts_with("$.stages[0].actions[0].secretEnv["), "{names}: {p}");
        assert!(p.message.contains(why), "{names}: {p}");
    }
    let many: Vec<String> = (0..=redrive_core::limits::MAX_SECRET_ENV).map(|i| format!("S{i}")).collect();
    let p = one(&base(&format!("{{name: A, command: [deploy], secretEnv: [{}]}}", many.join(", "))));
    assert!(p.message.contains("too many names"), "{p}");
    let p = one(&base("{name: A, noop: {}, secretEnv: [T]}"));
    assert_eq!(p.path, "$.stages[0].actions[0].secretEnv");

    // The wire form: configuration.SecretEnv, a JSON array.
    let wire = r#"{"name": "p", "stages": [{"name": "S", "actions": [{"name": "A",
        "actionTypeId": {"category": "Build", "owner": "Custom", "provider": "Command", "version": "1"},
        "configuration": {"Command": "[\"deploy\"]", "SecretEnv": "[\"API_TOKEN\"]"}}]}]}"#;
    let ActionKind::Command(c) = &ok(wire).stages[0].actions[0].kind else { panic!("a command") };
    assert_eq!(c.secret_env, ["API_TOKEN"]);
}

#[test]
fn secret_headers_name_secrets_and_are_checked() {
    use redrive_core::definition::SecretHeader;
    let base = |http: &str| format!("name: p\nstages:\n  - name: S\n    actions:\n      - {{name: A, http: {http}}}\n");
    let p = ok(&base(
        r#"{url: "https://api.example/x", headers: {X-Plain: v}, secretHeaders: {Authorization: {secretEnv: API_TOKEN, prefix: "Bearer "}, X-Key: {secretEnv: KEY}}}"#,
    ));
    let ActionKind::Http(h) = &p.stages[0].actions[0].kind else { panic!("an http action") };
    assert_eq!(h.secret_headers["Authorization"], SecretHeader { secret_env: "API_TOKEN".into(), prefix: "Bearer ".into() });
    assert_eq!(h.secret_headers["X-Key"], SecretHeader { secret_env: "KEY".into(), prefix: String::new() });
    // The parsed form names the secrets, never a value.
    let canonical = serde_json::to_value(&p).unwrap();
    let http = &canonical["stages"][0]["actions"][0]["kind"];
    assert_eq!(http["kind"], "http", "{canonical}");
    assert_eq!(
        http["secretHeaders"],
        serde_json::json!({"Authorization": {"secretEnv": "API_TOKEN", "prefix": "Bearer "}, "X-Key": {"secretEnv": "KEY"}})
    );
    assert!(!canonical.to_string().contains("value"), "{canonical}");

    for (headers, path, why) in [
        ("{Authorization: {secretEnv: 1A}}", "secretHeaders.Authorization.secretEnv", "a secret's name"),
        ("{Authorization: {secretEnv: REDRIVE_TOKEN}}", "secretHeaders.Authorization.secretEnv", "a secret's name"),
        ("{Authorization: {prefix: x}}", "secretHeaders.Authorization", "secretEnv"),
        ("{x-plain: {secretEnv: T}}", "secretHeaders", "also in headers"),
        ("{\"A B\": {secretEnv: T}}", "secretHeaders", "header names"),
        ("{Authorization: {secretEnv: T, prefix: \"a\\nb\"}}", "secretHeaders.Authorization.prefix", "not a header value prefix"),
        ("{Authorization: {secretEnv: T, value: x}}", "secretHeaders.Authorization", "value"),
    ] {
        let p = one(&base(&format!("{{url: \"https://h/\", headers: {{X-Plain: v}}, secretHeaders: {headers}}}")));
        assert!(p.path.contains(path), "{headers}: {p}");
        assert!(p.to_string().contains(why), "{headers}: {p}");
    }

    // The wire form: configuration.SecretHeaders, a JSON object.
    let wire = r#"{"name": "p", "stages": [{"name": "S", "actions": [{"name": "A",
        "actionTypeId": {"category": "Invoke", "owner": "Custom", "provider": "Http", "version": "1"},
        "configuration": {"Url": "https://h/", "SecretHeaders": "{\"Authorization\": {\"secretEnv\": \"T\"}}"}}]}]}"#;
    let ActionKind::Http(h) = &ok(wire).stages[0].actions[0].kind else { panic!("an http action") };
    assert_eq!(h.secret_headers["Authorization"].secret_env, "T");
}

/// `http.redirects` (issue 13): SAME_ORIGIN, ANY_ORIGIN or NONE; absent = the
/// server's default; anything else is a located problem naming the choices.
#[test]
fn http_redirects_mode_is_parsed_and_checked() {
    use redrive_core::definition::RedirectMode;
    let base = |http: &str| format!("name: p\nstages:\n  - name: S\n    actions:\n      - name: A\n        http: {http}\n");
    let mode = |text: &str| {
        let p = ok(text);
        let ActionKind::Http(h) = &p.stages[0].actions[0].kind else { panic!("an http action") };
        h.redirects
    };
    assert_eq!(mode(&base(r#"{url: "https://h/"}"#)), None);
    for (name, m) in [("SAME_ORIGIN", RedirectMode::SameOrigin), ("ANY_ORIGIN", RedirectMode::AnyOrigin), ("NONE", RedirectMode::Never)] {
        assert_eq!(mode(&base(&format!(r#"{{url: "https://h/", redirects: {name}}}"#))), Some(m));
        assert_eq!(m.name(), name);
    }
    // The parsed form spells the mode as it is written.
    let p = ok(&base(r#"{url: "https://h/", redirects: ANY_ORIGIN}"#));
    assert_eq!(serde_json::to_value(&p).unwrap()["stages"][0]["actions"][0]["kind"]["redirects"], "ANY_ORIGIN");

    for bad in ["any_origin", "ALL", "1", "[ANY_ORIGIN]", "true"] {
        let p = one(&base(&format!(r#"{{url: "https://h/", redirects: {bad}}}"#)));
        assert_eq!((p.path.as_str(), p.line), ("$.stages[0].actions[0].http.redirects", Some(6)), "{bad}: {p}");
        assert!(p.to_string().contains("SAME_ORIGIN, ANY_ORIGIN, NONE"), "{bad}: {p}");
    }
    // Checked even when the rest of the spec is refused: both problems reported.
    let ps = problems(&base(r#"{url: "ftp://h/", redirects: SOMETIMES}"#));
    assert_eq!(ps.len(), 2, "{}", lines(&ps));

    // The wire form: configuration.Redirects, a plain string.
    let wire = |v: &str| {
        format!(
            r#"{{"name": "p", "stages": [{{"name": "S", "actions": [{{"name": "A",
            "actionTypeId": {{"category": "Invoke", "owner": "Custom", "provider": "Http", "version": "1"}},
            "configuration": {{"Url": "https://h/", "Redirects": "{v}"}}}}]}}]}}"#
        )
    };
    let ActionKind::Http(h) = &ok(&wire("NONE")).stages[0].actions[0].kind else { panic!("an http action") };
    assert_eq!(h.redirects, Some(RedirectMode::Never));
    let p = one(&wire("sometimes"));
    assert!(p.path.ends_with("configuration.Redirects") && p.to_string().contains("ANY_ORIGIN"), "{p}");
}

// ---------------------------------------------------------------------------
// onExhausted (pause on exhaustion)

#[test]
fn on_exhausted_on_policies_and_actions() {
    use redrive_core::policy::OnExhausted;
    // Default FAIL on the action, nothing on a policy.
    let p = ok(&with_policy("retryPolicies", &["exceptionType: [Step.THROTTLING]"]));
    assert_eq!((p.stages[0].actions[0].on_exhausted, only_policy(&p).on_exhausted()), (OnExhausted::Fail, None));
    // camelCase and SageMaker PascalCase policies; not Step Functions.
    let p = ok(&with_policy("retryPolicies", &["exceptionType: [Step.THROTTLING]", "onExhausted: PAUSE"]));
    assert_eq!(only_policy(&p).on_exhausted(), Some(OnExhausted::Pause));
    let p = ok(&with_policy("RetryPolicies", &["ExceptionType: [Step.THROTTLING]", "OnExhausted: FAIL"]));
    assert_eq!(only_policy(&p).on_exhausted(), Some(OnExhausted::Fail));
    let p = one(&with_policy("Retry", &["ErrorEquals: [States.ALL]", "OnExhausted: PAUSE"]));
    assert!(p.message.contains("mixes spellings"), "{p}");
    // On the action.
    let text = "name: p\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {}\n        onExhausted: PAUSE\n";
    assert_eq!(ok(text).stages[0].actions[0].on_exhausted, OnExhausted::Pause);
}

#[test]
fn bad_on_exhausted_names_path_line_and_allowed_values() {
    let p = one(&with_policy("retryPolicies", &["exceptionType: [Step.THROTTLING]", "onExhausted: WAIT"]));
    assert_eq!((p.path.as_str(), p.line), ("$.stages[0].actions[0].retryPolicies[0].onExhausted", Some(9)));
    assert_eq!((p.value.as_deref(), p.allowed.as_deref()), (Some("\"WAIT\""), Some("FAIL or PAUSE")));
    assert!(p.message.contains("policy #1, onExhausted"), "{p}");
    let p = one(&with_policy("RetryPolicies", &["ExceptionType: [Step.THROTTLING]", "OnExhausted: pause"]));
    assert_eq!(p.path, "$.stages[0].actions[0].RetryPolicies[0].OnExhausted");
    assert!(p.message.contains("OnExhausted"), "the user's spelling: {p}");
    let text = "name: p\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {}\n        onExhausted: 3\n";
    let p = one(text);
    assert_eq!((p.path.as_str(), p.line), ("$.stages[0].actions[0].onExhausted", Some(7)));
    let text = "name: p\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {}\n        onExhausted: RETRY\n";
    let p = one(text);
    assert_eq!((p.path.as_str(), p.allowed.as_deref()), ("$.stages[0].actions[0].onExhausted", Some("FAIL or PAUSE")));
}
