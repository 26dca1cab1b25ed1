//! Pause on exhaustion through the real binary: executions whose action runs out
//! of retries under `onExhausted: PAUSE` are listed as Paused, stay paused
//! across a server restart, and are resumed with a patched input (then
//! succeed) or failed for good (then dead-lettered).

mod common;
use common::*;
use serde_json::{Value, json};

const QUEUE: &str = "paused-orders";

/// Check succeeds only when the execution's input says `"ok":true`; it fails
/// twice (one retry), then pauses.
const DEFINITION: &str = r#"name: orders
deadLetterQueue: paused-orders
executionMode: PARALLEL
stages:
  - name: Ship
    actions:
      - name: Check
        command: ["sh", "-c", "case \"$REDRIVE_INPUT\" in *'\"ok\":true'*) exit 0;; *) echo not ok >&2; exit 1;; esac"]
        retryPolicies: [{exceptionType: [Action.FAILED], maxAttempts: 1, intervalSeconds: 0, onExhausted: PAUSE}]
"#;

fn paused_ids(url: &str) -> Vec<String> {
    let v = cli(url, &["execution", "list", "orders", "--status", "Paused", "--output", "json"]).ok().json();
    v["executions"].as_array().unwrap().iter().map(|e| e["pipelineExecutionId"].as_str().unwrap().to_string()).collect()
}

fn execution(url: &str, id: &str) -> Value {
    cli(url, &["execution", "get", "orders", id, "--output", "json"]).ok().json()
}

fn status_of(url: &str, id: &str) -> String {
    execution(url, id)["status"].as_str().unwrap().to_string()
}

#[test]
fn paused_executions_survive_a_restart_then_resume_with_a_patched_input_or_fail_for_good() {
    let sb = Sandbox::new();
    let server = start_server(server_command(&sb, "127.0.0.1:0").env_remove("REDRIVE_SERVER").env_remove("REDRIVE_CONFIG"));
    let url = server.url.clone();
    let file = sb.write("orders.yaml", DEFINITION);
    cli(&url, &["pipeline", "create", "-f", file.to_str().unwrap()]).ok();
    let mut ids: Vec<String> = (0..2)
        .map(|_| cli(&url, &["execution", "start", "orders", "--input", r#"{"ok":false,"n":1}"#]).ok().stdout.trim().to_string())
        .collect();
    ids.sort();
    let paused = eventually("both executions paused", || {
        let mut p = paused_ids(&url);
        p.sort();
        (p == ids).then_some(p)
    });
    let table = cli(&url, &["execution", "list", "orders", "--status", "Paused"]).ok().stdout;
    assert_eq!(table.lines().filter(|l| l.contains("Paused")).count(), 2, "{table}");
    assert!(cli(&url, &["execution", "list", "orders", "--status", "Failed"]).ok().stdout.contains("no executions"));
    let v = execution(&url, &paused[0]);
    let check = &v["stages"][0]["actions"][0];
    assert_eq!((check["status"].as_str(), check["attempt"].as_u64()), (Some("Paused"), Some(2)), "{v}");
    assert_eq!(check["error"]["exceptionType"], "Action.FAILED", "{v}");
    assert_eq!(entries_in_queue(&url), 0, "no dead-letter entry while paused");
    assert_eq!(paused_metric(&server.addr), 2);

    // A restart: still paused (nothing was in flight, nothing is retried).
    drop(server);
    // Between the two, `redrive doctor` finds a paused execution sound (it waits for a person).
    let (code, report, _) = parse(bin().args(["doctor", "--output", "json", "--db"]).arg(sb.db()).output().unwrap());
    assert_eq!((code, &report["sound"]), (0, &json!(true)), "{report}");
    let server = start_server(server_command(&sb, "127.0.0.1:0").env_remove("REDRIVE_SERVER").env_remove("REDRIVE_CONFIG"));
    let url = server.url.clone();
    let mut again = paused_ids(&url);
    again.sort();
    assert_eq!(again, paused);
    assert_eq!(execution(&url, &paused[0])["stages"][0]["actions"][0]["totalAttempts"], 2);

    // Resume the first with a patched input: a fresh series that succeeds.
    let (first, second) = (&paused[0], &paused[1]);
    let r = cli(&url, &["execution", "resume", "orders", first, "--action", "Ship/Check", "--input", r#"{"ok":true}"#]).ok();
    assert!(r.stdout.contains("resumed execution"), "{}", r.stdout);
    eventually("the resumed execution succeeds", || (status_of(&url, first) == "Succeeded").then_some(()));
    let v = execution(&url, first);
    assert_eq!(v["input"], json!({"ok": true, "n": 1}), "the merge patch kept n: {v}");
    let check = &v["stages"][0]["actions"][0];
    assert_eq!((check["series"].as_u64(), check["attempt"].as_u64(), check["totalAttempts"].as_u64()), (Some(2), Some(1), Some(3)));
    let attempts = cli(&url, &["execution", "attempts", "orders", "--execution-id", first, "--output", "json"]).ok().json();
    let rows: Vec<(u64, u64, &str, &str)> = attempts["actionExecutions"]
        .as_array()
        .unwrap_or_else(|| panic!("{attempts}"))
        .iter()
        .map(|a| {
            (a["series"].as_u64().unwrap(), a["attempt"].as_u64().unwrap(), a["trigger"].as_str().unwrap(), a["status"].as_str().unwrap())
        })
        .collect();
    assert_eq!(rows, [(2, 1, "resume", "SUCCEEDED"), (1, 2, "policy", "FAILED"), (1, 1, "initial", "FAILED")], "{attempts}");
    let exhausted = &attempts["actionExecutions"][1]["decision"];
    assert_eq!((exhausted["decision"].as_str(), exhausted["reason"].as_str()), (Some("giveUp"), Some("maxAttemptsReached")));

    // Refusals: resume of an execution that is not paused; an unknown action; bad JSON.
    let r = cli(&url, &["execution", "resume", "orders", first]).code(2);
    assert!(r.stderr.contains("not paused"), "{}", r.stderr);
    let r = cli(&url, &["execution", "resume", "orders", second, "--action", "Ship/Nope"]).code(2);
    assert!(r.stderr.contains("no action Ship/Nope"), "{}", r.stderr);
    let r = cli(&url, &["execution", "resume", "orders", second, "--input", "{nope"]).code(2);
    assert!(r.stderr.contains("--input is not JSON"), "{}", r.stderr);
    assert_eq!(status_of(&url, second), "Paused", "refusals change nothing");

    // Fail the second for good: Failed, and dead-lettered with the recorded failure.
    cli(&url, &["execution", "fail", "orders", second]).ok();
    eventually("the failed execution is dead-lettered", || (entries_in_queue(&url) == 1).then_some(()));
    assert_eq!(status_of(&url, second), "Failed");
    let e = cli(&url, &["dlq", "show", QUEUE, "--output", "json"]).ok().json();
    let entry = &e["entries"][0];
    assert_eq!(entry["source"]["executionId"].as_str(), Some(second.as_str()), "{e}");
    assert_eq!(entry["error"], json!({"exceptionType": "Action.FAILED", "message": "exit code 1: not ok"}), "{e}");
    let r = cli(&url, &["execution", "fail", "orders", second]).code(2);
    assert!(r.stderr.contains("not paused"), "{}", r.stderr);
    assert_eq!(paused_metric(&server.addr), 0);

    // A redrive can carry an input patch: the entry's execution retries its stage with it, and succeeds.
    let entry = entry["entryId"].as_str().unwrap().to_string();
    let r = cli(&url, &["dlq", "redrive", QUEUE, "--entry", &entry, "--input-patch", "{nope"]).code(2);
    assert!(r.stderr.contains("--input-patch is not JSON"), "{}", r.stderr);
    let dry =
        cli(&url, &["dlq", "redrive", QUEUE, "--entry", &entry, "--input-patch", r#"{"ok":true}"#, "--dry-run", "--output", "json"]).ok();
    assert!(dry.stdout.contains("\"wouldRedrive\": 1"), "{}", dry.stdout);
    cli(&url, &["dlq", "redrive", QUEUE, "--entry", &entry, "--input-patch", r#"{"ok":true}"#]).ok();
    eventually("the redriven execution succeeds", || (status_of(&url, second) == "Succeeded").then_some(()));
    assert_eq!(execution(&url, second)["input"], json!({"ok": true, "n": 1}));
}

/// `redrive_executions_paused` from `/metrics`.
fn paused_metric(addr: &str) -> u64 {
    let (status, text) = http_text(addr, "GET", "/metrics", None);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("redrive_executions_paused_truncated 0\n"), "{text}");
    let line = text.lines().find(|l| l.starts_with("redrive_executions_paused ")).unwrap_or_else(|| panic!("{text}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn entries_in_queue(url: &str) -> usize {
    let v = cli(url, &["dlq", "show", QUEUE, "--state", "all", "--output", "json"]);
    if v.code != 0 {
        return 0; // the queue does not exist until its first entry
    }
    v.json()["entries"].as_array().map_or(0, Vec::len)
}

/// Prepare (runOrder 1) succeeds; Push (runOrder 2) fails for good unless the
/// input says `"ok":true`; Verify (runOrder 3) follows.
const STAGED: &str = r#"name: deploy
executionMode: PARALLEL
stages:
  - name: Release
    actions:
      - name: Prepare
        runOrder: 1
        noop: {}
      - name: Push
        runOrder: 2
        command: ["sh", "-c", "case \"$REDRIVE_INPUT\" in *'\"ok\":true'*) exit 0;; *) exit 1;; esac"]
        retryPolicies: [{exceptionType: [Action.FAILED], maxAttempts: 0}]
      - name: Verify
        runOrder: 3
        noop: {}
"#;

#[test]
fn retry_stage_from_an_action_with_an_input_patch_reruns_that_group_on() {
    let sb = Sandbox::new();
    let server = start_server(server_command(&sb, "127.0.0.1:0").env_remove("REDRIVE_SERVER").env_remove("REDRIVE_CONFIG"));
    let url = server.url.as_str();
    let file = sb.write("deploy.yaml", STAGED);
    cli(url, &["pipeline", "create", "-f", file.to_str().unwrap()]).ok();
    let id = cli(url, &["execution", "start", "deploy", "--input", r#"{"ok":false,"env":"prod"}"#]).ok().stdout.trim().to_string();
    let get = || cli(url, &["execution", "get", "deploy", &id, "--output", "json"]).ok().json();
    eventually("the execution fails", || (get()["status"] == "Failed").then_some(()));

    // Refusals change nothing: an earlier group that did not succeed; a mode beside it; bad JSON.
    let r = cli(url, &["retry-stage", "deploy", &id, "Release", "--from-action", "Verify"]).code(2);
    assert!(r.stderr.contains("Push (runOrder 2, before Verify's group) did not succeed"), "{}", r.stderr);
    let r = cli(url, &["retry-stage", "deploy", &id, "Release", "--from-action", "Nope"]).code(2);
    assert!(r.stderr.contains("no action Nope"), "{}", r.stderr);
    cli(url, &["retry-stage", "deploy", &id, "Release", "--from-action", "Push", "--mode", "ALL_ACTIONS"]).code(2);
    let r = cli(url, &["retry-stage", "deploy", &id, "Release", "--from-action", "Push", "--input-patch", "{"]).code(2);
    assert!(r.stderr.contains("--input-patch is not JSON"), "{}", r.stderr);
    assert_eq!(get()["stages"][0]["manualRetries"], 0);

    let r = cli(url, &["retry-stage", "deploy", &id, "Release", "--from-action", "Push", "--input-patch", r#"{"ok":true}"#]).ok();
    assert!(r.stdout.contains("from action Push"), "{}", r.stdout);
    eventually("the retried execution succeeds", || (get()["status"] == "Succeeded").then_some(()));
    let v = get();
    assert_eq!(v["input"], json!({"ok": true, "env": "prod"}), "{v}");
    let series: Vec<(&str, u64)> = v["stages"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["name"].as_str().unwrap(), a["series"].as_u64().unwrap()))
        .collect();
    assert_eq!(series, [("Prepare", 1), ("Push", 2), ("Verify", 1)], "Prepare kept its result; Push re-ran; Verify ran once: {v}");
    assert_eq!(v["stages"][0]["manualRetries"], 1);
}

#[test]
fn a_local_run_that_pauses_says_so_and_returns() {
    let sb = Sandbox::new();
    let file = sb.write("orders.yaml", DEFINITION);
    let (code, summary, stderr) = sb.run_json(&file);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is paused") && stderr.contains("redrive execution resume|fail"), "{stderr}");
    assert!(summary.to_string().contains("Paused"), "{summary}");
    // --resume finds it paused again and returns at once.
    let (code, _, stderr) = sb.resume_json();
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("is paused"), "{stderr}");
}
