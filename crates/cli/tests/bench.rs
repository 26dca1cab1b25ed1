//! `redrive bench` through the binary: every figure is counted, the JSON field
//! names documented in docs/benchmarks.md are there, and the ceiling ran.
//! (No speed is asserted: targets live in the benchmark, not in tests.)

mod common;

use common::bin;
use serde_json::Value;

fn bench_json(args: &[&str]) -> Value {
    let out = bin().arg("bench").args(args).args(["--output", "json", "--durability", "normal"]).output().unwrap();
    assert!(out.status.success(), "bench {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bench {args:?}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn w1_counts_ten_attempts_per_execution_and_measures_its_ceiling() {
    let report = bench_json(&["--executions", "40", "--runs", "2"]);
    assert_eq!(report["workload"], "w1");
    assert_eq!(report["store"], "sqlite");
    let rounds = report["rounds"].as_array().unwrap();
    assert_eq!(rounds.len(), 2);
    for round in rounds {
        assert_eq!(round["attempts"], 400, "5 actions × 2 attempts × 40 executions, counted from the ledger");
        let (aps, ceiling) = (round["attempts_per_second"].as_f64().unwrap(), round["ceiling_attempts_per_second"].as_f64().unwrap());
        assert!(aps > 0.0 && ceiling > 0.0);
        assert!((round["ratio_to_ceiling"].as_f64().unwrap() - aps / ceiling).abs() < 1e-9);
        assert!(round["commits"].as_u64().unwrap() > 0);
    }
    assert!(report["median"]["ratio_to_ceiling"].as_f64().unwrap() > 0.0);
    let shape = &report["ceiling"];
    assert_eq!(shape["attempts_per_transaction"], 256);
    assert!(shape["ledger_row_bytes"].as_u64().unwrap() > 50, "sized from the engine's own ledger rows: {shape}");
    assert!(shape["state_bytes"].as_u64().unwrap() > 100, "sized from the engine's own state documents: {shape}");
}

#[test]
fn w1_functions_count_their_step_attempts_against_the_ledger() {
    let report = bench_json(&["--functions", "--executions", "30", "--runs", "1", "--no-ceiling"]);
    assert_eq!(report["workload"], "w1-functions");
    assert_eq!(report["rounds"][0]["attempts"], 300);
    assert!(report["rounds"][0]["ceiling_attempts_per_second"].is_null());
    assert!(report["ceiling"].is_null());
}

#[test]
fn w2_times_single_executions_beside_a_probe_commit() {
    let report = bench_json(&["--workload", "w2", "--executions", "15", "--runs", "1"]);
    assert_eq!(report["workload"], "w2");
    let round = &report["rounds"][0];
    for shape in ["pipeline", "function"] {
        let l = &round[shape];
        assert!(l["p50_ms"].as_f64().unwrap() > 0.0 && l["p99_ms"].as_f64().unwrap() >= l["p50_ms"].as_f64().unwrap());
        // At least one durable commit per action or step, counted by the store.
        assert!(l["commits_per_execution"].as_f64().unwrap() >= 3.0, "{shape}: {l}");
        assert!(l["floor_ms"].as_f64().unwrap() > 0.0);
    }
    assert!(round["commit_p50_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_refuses_out_of_range_rounds() {
    let out = bin().args(["bench", "--runs", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--runs must be between 1 and 20"));
}

#[test]
fn w4_counts_each_retry_once_and_its_lateness_from_the_ledger() {
    let report = bench_json(&["--workload", "w4", "--executions", "60", "--delay-seconds", "1", "--runs", "1"]);
    let round = &report.as_array().unwrap()[0];
    assert_eq!(round["workload"], "w4");
    assert_eq!(round["retries"], 60, "one retry per execution, read from the ledger: {round}");
    assert_eq!(round["executions_not_retried_once"], 0);
    assert_eq!(round["retries_early"], 0, "timers never fire early");
    assert!(round["lateness_max_ms"].as_u64().unwrap() >= round["lateness_p99_ms"].as_u64().unwrap());
    assert!(round["wall_seconds"].as_f64().unwrap() >= 1.0, "the retries waited their delay: {round}");
    assert!(round["peak_rss_mib"].as_f64().unwrap() >= round["peak_rss_while_starting_mib"].as_f64().unwrap());
}

#[test]
fn w3_kills_a_server_with_executions_in_flight_and_loses_nothing() {
    let out = bin().args(["bench", "--workload", "w3", "--executions", "40", "--runs", "1", "--output", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let round = &report["rounds"][0];
    assert!(round["in_flight_at_kill"].as_u64().unwrap() > 0, "the kill met running attempts: {round}");
    assert_eq!(round["lost"], 0);
    assert_eq!(round["committed_rerun"], 0);
    assert!(round["all_redispatched_ms"].as_i64().unwrap() >= round["first_new_attempt_ms"].as_i64().unwrap());
}
