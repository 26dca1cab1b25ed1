//! Bulk stage retry by filter through the real binary (docs/retry-control.md):
//! executions fail one stage with two exception types; the dry run counts them
//! and says what would happen to each; a filtered, paced run retries exactly the
//! matching ones once each and records a result per execution; the single-retry
//! rules skip (with the reason) what they refuse; abort stops an operation; a
//! server killed mid-operation leaves it INTERRUPTED with nothing retried twice.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

const DECLINED: &str = "Card.DECLINED";
const DOWN: &str = "Bank.DOWN";

/// Charge fails every attempt with the exception type the input names.
fn pipeline(script: &str) -> String {
    format!(
        r#"name: orders
executionMode: PARALLEL
stages:
  - name: Charge
    actions:
      - name: Pay
        command: ["sh", "{script}"]
"#
    )
}

const SCRIPT: &str = r#"case "$REDRIVE_INPUT" in *DECLINED*) t=Card.DECLINED;; *) t=Bank.DOWN;; esac
printf '{"errorType":"%s","message":"no"}' "$t" > "$REDRIVE_ERROR_FILE"
exit 1
"#;

fn execution(url: &str, id: &str) -> Value {
    cli(url, &["execution", "get", "orders", id, "--output", "json"]).ok().json()
}

/// The series of the Pay action (1 after the first run, +1 per stage retry).
fn series(url: &str, id: &str) -> u64 {
    execution(url, id)["stages"][0]["actions"][0]["series"].as_u64().unwrap()
}

fn start_failed(url: &str, exception_type: &str) -> String {
    let input = format!(r#"{{"type":"{exception_type}"}}"#);
    let id = cli(url, &["execution", "start", "orders", "--input", &input]).ok().stdout.trim().to_string();
    eventually("the execution fails", || (execution(url, &id)["status"] == "Failed").then_some(()));
    std::thread::sleep(std::time::Duration::from_millis(5)); // distinct creation times: a clear newest-first order
    id
}

fn bulk(url: &str, extra: &[&str]) -> Value {
    let mut args = vec!["retry-stage", "--bulk", "--pipeline", "orders", "--stage", "Charge", "--output", "json"];
    args.extend_from_slice(extra);
    cli(url, &args).ok().json()
}

fn show(url: &str, id: &str) -> Value {
    cli(url, &["bulk-retry", "show", "orders", id, "--output", "json"]).ok().json()
}

/// Milliseconds into the day of an RFC 3339 UTC time (`…T11:20:00.123Z`).
fn ms_of_day(v: &Value) -> i64 {
    let t = v.as_str().unwrap().split_once('T').unwrap().1.trim_end_matches('Z');
    let (hms, frac) = t.split_once('.').unwrap_or((t, "0"));
    let p: Vec<i64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
    ((p[0] * 60 + p[1]) * 60 + p[2]) * 1000 + format!("{frac:0<3}")[..3].parse::<i64>().unwrap()
}

fn ids_of(results: &Value, outcome: &str) -> BTreeSet<String> {
    results.as_array().unwrap().iter().filter(|r| r["outcome"] == outcome).map(|r| r["executionId"].as_str().unwrap().to_string()).collect()
}

#[test]
fn bulk_retry_counts_first_retries_the_matching_executions_once_and_aborts() {
    let sb = Sandbox::new();
    let script = sb.write("pay.sh", SCRIPT);
    let file = sb.write("orders.yaml", &pipeline(script.to_str().unwrap()));
    let server = start_server(server_command(&sb, "127.0.0.1:0").env_remove("REDRIVE_SERVER").env_remove("REDRIVE_CONFIG"));
    let url = server.url.as_str();
    cli(url, &["pipeline", "create", "-f", file.to_str().unwrap()]).ok();
    // Older: three declined; newer: three with the bank down.
    let declined: Vec<String> = (0..3).map(|_| start_failed(url, DECLINED)).collect();
    let down: Vec<String> = (0..3).map(|_| start_failed(url, DOWN)).collect();

    // The count first: every failed execution would be retried (newest first, the
    // operation's own retries do not make older ones out of date).
    let plan = bulk(url, &["--dry-run"]);
    assert_eq!((plan["matched"].as_u64(), plan["wouldRetry"].as_u64(), plan["wouldSkip"].as_u64()), (Some(6), Some(6), Some(0)), "{plan}");
    assert_eq!(plan["items"][0]["executionId"], down[2].as_str(), "newest first: {plan}");
    assert!(plan["items"][0]["detail"].as_str().unwrap().contains("Pay"), "{plan}");
    let plan = bulk(url, &["--dry-run", "--max", "2"]);
    assert_eq!(plan["matched"], 2, "--max bounds it: {plan}");
    let plan = bulk(url, &["--dry-run", "--exception-type", DOWN]);
    assert_eq!((plan["matched"].as_u64(), plan["wouldRetry"].as_u64()), (Some(3), Some(3)), "{plan}");
    // The declined ones are out of date: the stage failed again in a later execution.
    let plan = bulk(url, &["--dry-run", "--exception-type", DECLINED]);
    assert_eq!((plan["matched"].as_u64(), plan["wouldSkip"].as_u64()), (Some(3), Some(3)), "{plan}");
    assert!(plan["items"][0]["detail"].as_str().unwrap().contains("failed again in a later execution"), "{plan}");
    let plan = bulk(url, &["--dry-run", "--since", "1ms"]);
    assert_eq!(plan["matched"], 0, "nothing failed within the last millisecond: {plan}");
    // Bad input is refused with what is allowed, and changes nothing.
    let r = cli(url, &["retry-stage", "--bulk", "--pipeline", "orders", "--stage", "Charge", "--rate", "5000/s"]).code(2);
    assert!(r.stderr.contains("at most 1000/s"), "{}", r.stderr);
    let r = cli(url, &["retry-stage", "--bulk", "--pipeline", "orders", "--stage", "Nope", "--dry-run"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("stage Nope not found"), "{}", r.stderr);
    assert!(declined.iter().chain(&down).all(|id| series(url, id) == 1), "dry runs retried nothing");

    // The run: filtered on Bank.DOWN, paced at 5/s.
    let started = bulk(url, &["--exception-type", DOWN, "--rate", "5/s", "--wait"]);
    let op = &started["operation"];
    assert_eq!(op["status"], "SUCCEEDED", "{started}");
    assert_eq!((op["counts"]["matched"].as_u64(), op["counts"]["retried"].as_u64()), (Some(3), Some(3)), "{started}");
    let results = &started["results"];
    assert_eq!(results.as_array().unwrap().len(), 3, "{started}");
    assert_eq!(ids_of(results, "retried"), down.iter().cloned().collect(), "exactly the Bank.DOWN executions");
    let (t0, t1) = (ms_of_day(&results[0]["at"]), ms_of_day(&results[2]["at"]));
    assert!(t1 - t0 >= 350, "three retries at 5/s take at least 0.4 s apart from the first: {t0} → {t1}");
    assert!(down.iter().all(|id| series(url, id) == 2), "each retried once: one new series");
    assert!(declined.iter().all(|id| series(url, id) == 1), "the others untouched");
    for id in &down {
        eventually("the retried execution fails again", || (execution(url, id)["status"] == "Failed").then_some(()));
    }

    // The declined ones now: skipped with the single retry's reason, as the dry run said.
    let started = bulk(url, &["--exception-type", DECLINED, "--rate", "100/s", "--wait"]);
    assert_eq!(started["operation"]["counts"]["skipped"], 3, "{started}");
    let reason = started["results"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("failed again in a later execution"), "{reason}");
    assert!(declined.iter().all(|id| series(url, id) == 1), "skipped ones were not retried");

    // Abort: a slow operation over all six stops before the next execution.
    let started = bulk(url, &["--rate", "1/s"]);
    let op_id = started["operation"]["id"].as_str().unwrap().to_string();
    assert_eq!(started["plan"]["matched"], 6, "{started}");
    eventually("the first retry", || (show(url, &op_id)["operation"]["counts"]["processed"].as_u64() >= Some(1)).then_some(()));
    cli(url, &["bulk-retry", "abort", "orders", &op_id]).ok();
    let shown = eventually("the operation ends", || {
        let v = show(url, &op_id);
        (v["operation"]["status"] != "RUNNING").then_some(v)
    });
    assert_eq!(shown["operation"]["status"], "ABORTED", "{shown}");
    let processed = shown["operation"]["counts"]["processed"].as_u64().unwrap();
    assert!(processed < 6, "{shown}");
    assert_eq!(shown["results"].as_array().unwrap().len() as u64, processed, "one result per handled execution: {shown}");
    let r = cli(url, &["bulk-retry", "abort", "orders", &op_id]);
    assert_ne!(r.code, 0, "only a running operation can be aborted");
    assert!(r.stderr.contains("already ABORTED"), "{}", r.stderr);

    // Every operation is listed and was audited; the dry runs were not recorded.
    let listed = cli(url, &["bulk-retry", "list", "orders", "--output", "json"]).ok().json();
    assert_eq!(listed["operations"].as_array().unwrap().len(), 3, "{listed}");
    let audit = cli(url, &["audit", "--output", "json"]).ok().stdout;
    assert!(audit.contains("/v1/pipelines/orders/bulk-retries"), "{audit}");
    assert!(audit.contains("/abort"), "{audit}");

    // A server killed mid-operation: the operation is INTERRUPTED after the
    // restart, and no execution got more than one new series from it.
    let before: Vec<u64> = declined.iter().chain(&down).map(|id| series(url, id)).collect();
    let started = bulk(url, &["--rate", "2/s"]);
    let op_id = started["operation"]["id"].as_str().unwrap().to_string();
    eventually("a retry", || (show(url, &op_id)["operation"]["counts"]["processed"].as_u64() >= Some(1)).then_some(()));
    server.kill9();
    let server = start_server(server_command(&sb, "127.0.0.1:0").env_remove("REDRIVE_SERVER").env_remove("REDRIVE_CONFIG"));
    let url = server.url.as_str();
    let shown = show(url, &op_id);
    assert_eq!(shown["operation"]["status"], "INTERRUPTED", "{shown}");
    let after: Vec<u64> = declined.iter().chain(&down).map(|id| series(url, id)).collect();
    let retried_by_op = ids_of(&shown["results"], "retried");
    for ((id, b), a) in declined.iter().chain(&down).zip(&before).zip(&after) {
        assert!(a - b <= 1, "{id}: at most one new series ({b} → {a})");
        if retried_by_op.contains(id) {
            assert_eq!(a - b, 1, "{id}: its recorded retry happened");
        }
    }
}
