//! Retention through the binary: a server's sweeper deletes finished
//! executions past retention and keeps what is still needed (unfinished ones,
//! dead-lettered ones, a pipeline's own longer `retentionDays`); `redrive
//! prune` does the same for a store no server runs on, `--dry-run` counts
//! first; `doctor` finds the pruned stores sound.

mod common;
use common::*;
use serde_json::Value;
use std::time::Duration;

fn executions(url: &str, pipeline: &str) -> Vec<Value> {
    cli(url, &["execution", "list", pipeline, "--output", "json"]).ok().json()["executions"].as_array().unwrap().clone()
}

fn statuses(url: &str, pipeline: &str) -> Vec<String> {
    executions(url, pipeline).iter().map(|e| e["status"].as_str().unwrap().to_string()).collect()
}

const QUICK: &str = "name: quick\nexecutionMode: PARALLEL\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {}\n";
const KEPT: &str =
    "name: kept\nretentionDays: 1\nexecutionMode: PARALLEL\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {}\n";
const DEAD: &str = "name: dead\ndeadLetterQueue: dead-q\nexecutionMode: PARALLEL\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {failFirst: 100, failWith: Custom.Boom}\n        retryPolicies: [{exceptionType: [Custom.Boom], maxAttempts: 0}]\n";
const SLOW: &str = "name: slow\nexecutionMode: PARALLEL\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {sleepMs: 600000}\n        timeoutSeconds: 3600\n";

#[test]
fn the_sweeper_deletes_what_is_past_retention_and_keeps_what_is_needed() {
    let sb = Sandbox::new();
    let config = sb.write("server.yaml", "retention:\n  executions: 1s\n  deadLetterEntries: 1s\n  sweepEvery: 1s\n  stepSize: 7\n");
    let server = start_server(
        server_command(&sb, "127.0.0.1:0").arg("--config").arg(&config).env_remove("REDRIVE_SERVER").env_remove("REDRIVE_CONFIG"),
    );
    let url = server.url.as_str();
    for (name, text) in [("quick", QUICK), ("kept", KEPT), ("dead", DEAD), ("slow", SLOW)] {
        let file = sb.write(&format!("{name}.yaml"), text);
        cli(url, &["pipeline", "create", "-f", file.to_str().unwrap()]).ok();
    }
    for _ in 0..20 {
        cli(url, &["execution", "start", "quick"]).ok();
    }
    let kept = cli(url, &["execution", "start", "kept"]).ok().stdout.trim().to_string();
    let dead = cli(url, &["execution", "start", "dead"]).ok().stdout.trim().to_string();
    let slow = cli(url, &["execution", "start", "slow"]).ok().stdout.trim().to_string();

    // Every quick execution finishes, then goes (20 over several steps of 7).
    eventually("the quick executions to be pruned", || executions(url, "quick").is_empty().then_some(()));
    // What must stay: a pipeline keeping its own 1 day, a dead-lettered
    // execution (its entry is queued), an unfinished one.
    eventually("kept to succeed", || (statuses(url, "kept") == ["Succeeded"]).then_some(()));
    eventually("dead to fail", || (statuses(url, "dead") == ["Failed"]).then_some(()));
    std::thread::sleep(Duration::from_millis(2_500)); // two more sweeps
    assert_eq!(executions(url, "kept")[0]["pipelineExecutionId"], kept.as_str());
    assert_eq!(executions(url, "dead")[0]["pipelineExecutionId"], dead.as_str());
    assert_eq!(executions(url, "slow")[0]["pipelineExecutionId"], slow.as_str());
    assert_eq!(statuses(url, "slow"), ["InProgress"]);
    let entry = cli(url, &["dlq", "get", &dead, "--output", "json"]).ok().json();
    assert_eq!(entry["state"], "QUEUED", "{entry}");

    // Purged, the entry no longer holds its execution: it goes at the next sweep.
    cli(url, &["dlq", "purge", "dead-q", "--yes"]).ok();
    eventually("the dead-lettered execution to be pruned", || executions(url, "dead").is_empty().then_some(()));

    // Beside the running server: a dry run counts; doctor finds the store sound.
    let dry =
        finish(bin().args(["prune", "--dry-run", "--output", "json", "--config"]).arg(&config).arg("--db").arg(sb.db()).output().unwrap());
    let dry = dry.ok().json();
    assert_eq!((dry["dryRun"].clone(), dry["executions"].clone()), (Value::Bool(true), Value::from(0)), "{dry}");
    let doctor = finish(bin().args(["doctor", "--output", "json", "--db"]).arg(sb.db()).output().unwrap());
    assert_eq!(doctor.code, 0, "{}", doctor.stdout);
}

#[test]
fn prune_counts_then_deletes_for_a_store_no_server_runs_on() {
    let sb = Sandbox::new();
    let file = sb.write("quick.yaml", QUICK);
    for _ in 0..3 {
        let out = bin().args(["run", "--output", "json", "--db"]).arg(sb.db()).arg(&file).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let config = sb.write("server.yaml", "retention: {executions: 1s, redriveRuns: forever}\n");
    let bad = sb.write("bad.yaml", "retention: {executions: 10ms, deadLetterEntries: sometimes, sweepEvery: 2d, stepSize: 0, keep: 1}\n");
    let prune = |extra: &[&str], config: &std::path::Path| {
        finish(bin().arg("prune").args(extra).arg("--config").arg(config).arg("--db").arg(sb.db()).output().unwrap())
    };

    let r = prune(&["--dry-run"], &bad).code(2);
    for what in
        ["$.retention.executions", "$.retention.deadLetterEntries", "$.retention.sweepEvery", "$.retention.stepSize", "unknown key keep"]
    {
        assert!(r.stderr.contains(what), "{what} not named:\n{}", r.stderr);
    }
    std::thread::sleep(Duration::from_millis(1_100)); // past the 1 s retention
    let r = prune(&["--dry-run"], &config).ok();
    assert!(r.stdout.contains("would delete 3 executions"), "{}", r.stdout);
    assert!(r.stdout.contains("finished redrive runs and bulk retries forever"), "{}", r.stdout);
    let r = prune(&["--output", "json"], &config).ok().json();
    assert_eq!(r["executions"], 3, "{r}");
    assert!(r["ledgerRows"].as_u64().unwrap() >= 3, "{r}");
    let r = prune(&["--dry-run"], &config).ok();
    assert!(r.stdout.contains("would delete 0 executions"), "{}", r.stdout);
    let doctor = finish(bin().args(["doctor", "--output", "json", "--db"]).arg(sb.db()).output().unwrap());
    assert_eq!(doctor.code, 0, "{}", doctor.stdout);
}
