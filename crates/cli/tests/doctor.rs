//! `redrive doctor` through the binary: a sound store passes (exit 0); each
//! broken invariant is named (exit 1).

mod common;
use common::*;
use std::path::PathBuf;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/upgrade/schema5.db")
}

fn doctor(sb: &Sandbox) -> (i32, serde_json::Value) {
    let out = bin().args(["doctor", "--output", "json", "--db"]).arg(sb.db()).output().unwrap();
    let (code, report, _) = parse(out);
    (code, report)
}

fn sql(sb: &Sandbox, statement: &str) {
    rusqlite::Connection::open(sb.db()).unwrap().execute_batch(statement).unwrap();
}

#[test]
fn a_sound_store_passes_and_every_broken_invariant_is_named() {
    let sb = Sandbox::new();
    std::fs::copy(fixture(), sb.db()).unwrap();
    // The fixture is an older schema: a command that writes upgrades it first
    // (a prune that keeps everything).
    let keep_all = sb.write("keep.yaml", "retention: {executions: forever, deadLetterEntries: forever, redriveRuns: forever}\n");
    let upgraded = bin().args(["prune", "--config"]).arg(&keep_all).arg("--db").arg(sb.db()).output().unwrap();
    assert_eq!(upgraded.status.code(), Some(0), "{}", String::from_utf8_lossy(&upgraded.stderr));
    let (code, report) = doctor(&sb);
    assert_eq!((code, &report["sound"], &report["problems"]), (0, &serde_json::json!(true), &serde_json::json!(0)), "{report}");
    assert_eq!(report["integrity"], "ok");
    assert_eq!(report["checked"]["executions"], 3);
    let rows = |table: &str| report["tables"].as_array().unwrap().iter().find(|t| t["table"] == table).unwrap()["rows"].clone();
    assert_eq!((rows("executions"), rows("ledger"), rows("dlq_entries")), (3.into(), 4.into(), 1.into()));

    // A gap in a series, a dead-letter entry whose execution is gone, a timer of a
    // finished execution, a state that cannot be read.
    sql(
        &sb,
        "PRAGMA foreign_keys = OFF;
         INSERT INTO ledger (execution_id, stage, action, series, attempt, \"trigger\", started_at, finished_at, outcome, pipeline_name, kind)
           SELECT execution_id, stage, action, series, 4, \"trigger\", started_at, finished_at, outcome, pipeline_name, kind
           FROM ledger WHERE action = 'Compile' LIMIT 1;
         DELETE FROM executions WHERE pipeline_name = 'dead';
         INSERT INTO timers (execution_id, key, due_at) SELECT id, 'stray', 0 FROM executions WHERE pipeline_name = 'done';
         UPDATE executions SET state_json = '{\"not\": \"a state\"}' WHERE pipeline_name = 'held';",
    );
    let (code, report) = doctor(&sb);
    assert_eq!(code, 1, "{report}");
    let checks: Vec<&str> = report["findings"].as_array().unwrap().iter().map(|f| f["check"].as_str().unwrap()).collect();
    for check in ["ledger", "dead-letter", "timer", "state"] {
        assert!(checks.contains(&check), "{check} not found: {report}");
    }
    let text = bin().args(["doctor", "--db"]).arg(sb.db()).output().unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.status.code(), Some(1));
    assert!(stdout.contains("Compile series 1: attempts [1, 2, 4]"), "{stdout}");
    assert!(stdout.contains("does not exist"), "{stdout}");
}
