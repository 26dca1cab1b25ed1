//! The CLI as a client of a running `redrive server`: pipeline, execution, state and
//! retry-stage commands against the real binary.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

fn wait_status(server: &str, pipeline: &str, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = cli(server, &["execution", "get", pipeline, id, "--output", "json"]).ok().json();
        if v["status"] == want {
            return v;
        }
        assert!(Instant::now() < deadline, "execution never reached {want}: {v}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn definition(flag: &Path) -> String {
    format!(
        r#"name: p
stages:
  - name: Build
    actions:
      - name: Compile
        noop: {{}}
  - name: Deploy
    actions:
      - name: Check
        command: ["sh", "-c", "test -e {}"]
        retryPolicies: [{{exceptionType: [Action.FAILED], maxAttempts: 0}}]
      - name: Notify
        noop: {{sleepMs: 5}}
"#,
        flag.display()
    )
}

#[test]
fn create_start_fail_inspect_retry_and_succeed() {
    let sb = Sandbox::new();
    let server = start_server(server_command(&sb, "127.0.0.1:0").env_remove("REDRIVE_SERVER"));
    let url = server.url.as_str();
    let flag = sb.path("flag");
    let file = sb.write("p.yaml", &definition(&flag));
    let file = file.to_str().unwrap();

    let r = cli(url, &["pipeline", "create", "-f", file]).ok();
    assert!(r.stdout.contains("created pipeline p version 1"), "{}", r.stdout);
    // A second create is the server's 409: exit 2, the error printed as code: message.
    let r = cli(url, &["pipeline", "create", "-f", file, "--output", "json"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("error: PipelineNameInUseException: "), "{}", r.stderr);
    assert_eq!(r.json()["error"]["code"], "PipelineNameInUseException");

    let id = cli(url, &["execution", "start", "p", "--output", "json"]).ok().json()["pipelineExecutionId"].as_str().unwrap().to_string();
    let v = wait_status(url, "p", &id, "Failed");
    assert_eq!(v["stages"][1]["actions"][0]["status"], "Failed");

    let r = cli(url, &["execution", "get", "p", &id]).ok();
    assert!(r.stdout.contains("status:  Failed"), "{}", r.stdout);
    let check = r.stdout.lines().find(|l| l.contains("Check")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(check.contains("Failed") && check.contains("Action.FAILED"), "{check}");

    // state: a readable table, the failed stage marked retryable with what FAILED_ACTIONS re-runs.
    let r = cli(url, &["state", "p"]).ok();
    let deploy = r.stdout.lines().find(|l| l.starts_with("Deploy")).unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(deploy.contains(&id) && deploy.contains("Failed (retryable)") && deploy.contains("Check"), "{deploy}");
    assert!(deploy.contains("Action.FAILED: exit code 1"), "{deploy}");
    assert!(r.stdout.contains("FAILED_ACTIONS would retry: Check\n"), "{}", r.stdout);
    assert!(!r.stdout.lines().any(|l| l.starts_with("Build") && l.contains("retryable")), "{}", r.stdout);
    let state = cli(url, &["state", "p", "--output", "json"]).ok().json();
    assert_eq!(state["stages"][1]["latestExecution"]["status"], "Failed");

    // A request file missing a field is refused before anything is sent.
    let partial = sb.write("partial.json", r#"{"pipelineName": "p", "stageName": "Deploy", "retryMode": "FAILED_ACTIONS"}"#);
    let r = cli(url, &["retry-stage", "--cli-input-json", &format!("file://{}", partial.display())]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--execution-id (pipelineExecutionId)"), "{}", r.stderr);

    std::fs::write(&flag, "").unwrap();
    let req = sb.write(
        "retry.json",
        &format!(r#"{{"pipelineName": "p", "stageName": "Deploy", "pipelineExecutionId": "{id}", "retryMode": "FAILED_ACTIONS"}}"#),
    );
    let r = cli(url, &["retry-stage", "--cli-input-json", &format!("file://{}", req.display())]).ok();
    assert!(r.stdout.contains("retrying stage Deploy"), "{}", r.stdout);
    let v = wait_status(url, "p", &id, "Succeeded");
    assert_eq!(v["stages"][1]["actions"][0]["series"], 2, "{v}");

    // Retrying again: the stage has no failed actions (409 → exit 2).
    let r = cli(url, &["retry-stage", "--cli-input-json", req.to_str().unwrap(), "--mode", "ALL_ACTIONS"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("error: StageNotRetryableException: "), "{}", r.stderr);

    let attempts = cli(url, &["execution", "attempts", "p", "--execution-id", &id, "--output", "json"]).ok().json();
    let check: Vec<&Value> = attempts["actionExecutions"].as_array().unwrap().iter().filter(|a| a["actionName"] == "Check").collect();
    assert_eq!(check.len(), 2, "{attempts}");

    let list = cli(url, &["execution", "list", "p", "--output", "json"]).ok().json();
    assert_eq!(list["executions"].as_array().unwrap().len(), 1);
    assert_eq!(list["nextToken"], Value::Null);
    let r = cli(url, &["execution", "list", "p"]).ok();
    assert!(r.stdout.lines().nth(1).unwrap().contains(&id), "{}", r.stdout);

    // Stopping a finished execution is the server's 409.
    let r = cli(url, &["execution", "stop", "p", &id, "--reason", "test"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("error: PipelineExecutionNotStoppableException: "), "{}", r.stderr);

    // `pipeline get` text is YAML that validates and updates the pipeline.
    let got = cli(url, &["pipeline", "get", "p"]).ok();
    assert!(got.stdout.starts_with("# pipeline p, version 1"), "{}", got.stdout);
    let saved = sb.write("got.yaml", &got.stdout);
    cli(url, &["validate", saved.to_str().unwrap()]).ok();
    let r = cli(url, &["pipeline", "update", "-f", saved.to_str().unwrap()]).ok();
    assert!(r.stdout.contains("updated pipeline p version 2"), "{}", r.stdout);
    let v1 = cli(url, &["pipeline", "get", "p", "--version", "1", "--output", "json"]).ok().json();
    let v2 = cli(url, &["pipeline", "get", "p", "--output", "json"]).ok().json();
    assert_eq!(v1["pipeline"]["version"], 1);
    assert_eq!(v2["pipeline"]["version"], 2);
    assert_eq!(v1["definition"], v2["definition"]);

    // Listings follow nextToken over every page, or stop at --max-items.
    for name in ["q1", "q2", "q3"] {
        let f = sb.write(
            &format!("{name}.yaml"),
            &format!("name: {name}\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {{}}\n"),
        );
        cli(url, &["pipeline", "create", "-f", f.to_str().unwrap()]).ok();
    }
    let all = cli(url, &["pipeline", "list", "--page-size", "1", "--output", "json"]).ok().json();
    let names: Vec<&str> = all["pipelines"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["p", "q1", "q2", "q3"]);
    assert_eq!(all["nextToken"], Value::Null);
    let two = cli(url, &["pipeline", "list", "--max-items", "2", "--output", "json"]).ok().json();
    assert_eq!(two["pipelines"].as_array().unwrap().len(), 2);
    let token = two["nextToken"].as_str().expect("a token to continue from").to_string();
    let rest = cli(url, &["pipeline", "list", "--starting-token", &token, "--output", "json"]).ok().json();
    assert_eq!(rest["pipelines"].as_array().unwrap().len(), 2);
    let table = cli(url, &["pipeline", "list"]).ok();
    assert!(table.stdout.starts_with("NAME"), "{}", table.stdout);
    assert_eq!(table.stdout.lines().count(), 5, "{}", table.stdout);

    // Text output of start is the id alone, for scripts.
    let r = cli(url, &["execution", "start", "q1", "--input", r#"{"k": 1}"#, "--client-request-token", "t-1"]).ok();
    let q1 = r.stdout.trim();
    assert_eq!(q1.len(), 36, "{}", r.stdout);
    let again = cli(url, &["execution", "start", "q1", "--input", r#"{"k": 1}"#, "--client-request-token", "t-1"]).ok();
    assert_eq!(again.stdout.trim(), q1, "the token makes start idempotent");

    let r = cli(url, &["pipeline", "delete", "q3"]).ok();
    assert!(r.stdout.contains("deleted pipeline q3"));
    let r = cli(url, &["pipeline", "get", "q3"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("error: PipelineNotFoundException: "), "{}", r.stderr);
}

#[test]
fn invalid_definition_is_reported_locally_and_nothing_is_created() {
    let sb = Sandbox::new();
    let server = start_server(server_command(&sb, "127.0.0.1:0").env_remove("REDRIVE_SERVER"));
    let file = sb.write(
        "invalid.yaml",
        "name: \"bad name!\"\nstages:\n  - name: S\n    actions:\n      - name: A\n        command: []\n        retryPolicies: [{exceptionType: [Action.FAILED], maxAttempts: 99}]\n",
    );
    let r = cli(&server.url, &["pipeline", "create", "-f", file.to_str().unwrap()]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let shown = file.display().to_string();
    for line in [1, 6, 7] {
        assert!(r.stderr.contains(&format!("{shown}:{line}: ")), "problem on line {line}:\n{}", r.stderr);
    }
    assert!(r.stderr.contains("3 problems"), "{}", r.stderr);
    let list = cli(&server.url, &["pipeline", "list", "--output", "json"]).ok().json();
    assert_eq!(list["pipelines"], serde_json::json!([]));
    assert!(cli(&server.url, &["pipeline", "list"]).ok().stdout.contains("no pipelines"));

    // Bad local input: exit 2 before any request.
    let r = cli(&server.url, &["execution", "start", "p", "--input", "{not json"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--input is not valid JSON"), "{}", r.stderr);
}

#[test]
fn an_unreachable_server_exits_3_naming_it() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let r = finish(bin().args(["pipeline", "list", "--server", &url]).env_remove("REDRIVE_SERVER").output().unwrap());
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains(&format!("cannot reach the redrive server at {url}")), "{}", r.stderr);

    // Through the environment, with credentials in the URL: they are never printed.
    let r = cli(&format!("http://admin:s3cret@127.0.0.1:{port}"), &["state", "p"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains(&url), "{}", r.stderr);
    assert!(!r.stderr.contains("s3cret") && !r.stdout.contains("s3cret"), "{}", r.stderr);
    let help = cli(&format!("http://admin:s3cret@127.0.0.1:{port}"), &["state", "--help"]);
    assert!(!help.stdout.contains("s3cret"), "{}", help.stdout);

    let r = cli(&url, &["retry-stage", "--pipeline", "p", "--stage", "S", "--execution-id", "x", "--mode", "FAILED_ACTIONS"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
}

/// `execution export` writes the definition version, input, state, timers and
/// the whole ledger of one execution as JSON, to a new 0600 file with --out.
#[test]
fn execution_export_holds_the_definition_state_and_ledger() {
    let sb = Sandbox::new();
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    let flag = sb.path("flag");
    let f = sb.write("p.yaml", &definition(&flag));
    cli(&server.url, &["pipeline", "create", "-f", f.to_str().unwrap()]).ok();
    let id =
        cli(&server.url, &["execution", "start", "p", "--input", r#"{"order": 7}"#, "--output", "json"]).ok().json()["pipelineExecutionId"]
            .as_str()
            .unwrap()
            .to_string();
    wait_status(&server.url, "p", &id, "Failed");

    let v = cli(&server.url, &["execution", "export", "p", &id]).ok().json();
    assert_eq!((v["exportVersion"].as_u64(), v["pipelineName"].as_str(), v["pipelineVersion"].as_u64()), (Some(1), Some("p"), Some(1)));
    assert_eq!(v["definition"]["name"], "p", "{v}");
    assert_eq!(v["execution"]["input"], serde_json::json!({"order": 7}));
    assert_eq!(v["execution"]["status"], "Failed");
    assert!(v["state"].is_object() && v["stateVersion"].as_u64().unwrap() >= 2, "{v}");
    let attempts: Vec<(&str, &str)> =
        v["ledger"].as_array().unwrap().iter().map(|a| (a["actionName"].as_str().unwrap(), a["status"].as_str().unwrap())).collect();
    assert!(attempts.contains(&("Compile", "SUCCEEDED")) && attempts.contains(&("Check", "FAILED")), "{attempts:?}");
    let seqs: Vec<i64> = v["ledger"].as_array().unwrap().iter().map(|a| a["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first: {seqs:?}");

    let out = sb.path("export.json");
    cli(&server.url, &["execution", "export", "p", &id, "--out", out.to_str().unwrap()]).ok();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(written["ledger"], v["ledger"]);
    cli(&server.url, &["execution", "export", "p", &id, "--out", out.to_str().unwrap()]).code(2);
    let missing = cli(&server.url, &["execution", "export", "p", "01a22fcf-38a4-766d-87cf-c37d5c9748ec"]);
    assert_ne!(missing.code, 0);
}
