//! W1: throughput. N executions × 5 noop actions (or 5 function steps) started
//! at once, each action failing its first attempt with `Step.SERVICE_FAULT`
//! and retried at interval 0. Each round runs the workload on a fresh store,
//! then the raw-SQLite ceiling for the same number of attempts (counted from
//! the ledger), with the engine's row sizes, on the same disk, so the ratio
//! compares two figures measured seconds apart.

use crate::OutputFormat;
use crate::bench::{ACTIONS, BenchArgs, median, open_engine, peak_rss_kib, put_pipeline, quantile, run_all, step_retry, w1_definition};
use crate::bench_ceiling::{ATTEMPTS_PER_TRANSACTION, RowSizes, attempt_ceiling};
use redrive_engine::{EngineError, EngineHandle};
use redrive_store::{Store, StoreLocation};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One round, counted. Field names are part of `--output json` (docs/benchmarks.md).
#[derive(Serialize)]
pub(crate) struct W1Round {
    pub wall_seconds: f64,
    /// Attempts counted: ledger rows written (pipelines) or step attempts run and
    /// checked against the ledger (functions).
    pub attempts: u64,
    pub attempts_per_second: f64,
    pub executions_per_second: f64,
    pub commits: u64,
    pub transitions_per_commit: f64,
    /// Time the store's writer spent committing, over the wall time.
    pub writer_busy_percent: f64,
    pub latency_p50_ms: u64,
    pub latency_p99_ms: u64,
    /// The raw-SQLite loop's attempts per second in this round (SQLite stores only).
    pub ceiling_attempts_per_second: Option<f64>,
    /// `attempts_per_second / ceiling_attempts_per_second`.
    pub ratio_to_ceiling: Option<f64>,
}

/// Medians over the rounds.
#[derive(Serialize)]
pub(crate) struct W1Medians {
    pub attempts_per_second: f64,
    pub executions_per_second: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub ceiling_attempts_per_second: Option<f64>,
    pub ratio_to_ceiling: Option<f64>,
}

/// What the ceiling loop wrote per attempt.
#[derive(Serialize)]
pub(crate) struct CeilingShape {
    pub attempts_per_transaction: usize,
    pub ledger_row_bytes: usize,
    pub state_bytes: usize,
}

/// `redrive bench --workload w1 --output json`.
#[derive(Serialize)]
pub(crate) struct W1Report {
    /// `w1` or `w1-functions`.
    pub workload: &'static str,
    pub executions: usize,
    /// `sqlite` or `postgres`.
    pub store: &'static str,
    pub durability: &'static str,
    pub rounds: Vec<W1Round>,
    pub median: W1Medians,
    pub ceiling: Option<CeilingShape>,
    /// Peak resident set size of the whole run (VmHWM).
    pub peak_rss_mib: Option<f64>,
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let mut rounds = Vec::with_capacity(args.runs);
    let mut shape = None;
    for round in 1..=args.runs {
        let (r, sizes) = one_round(args, round).await?;
        shape = sizes.map(|s: RowSizes| CeilingShape {
            attempts_per_transaction: ATTEMPTS_PER_TRANSACTION,
            ledger_row_bytes: s.ledger_row_bytes,
            state_bytes: s.state_bytes,
        });
        rounds.push(r);
    }
    let report = W1Report {
        workload: if args.functions { "w1-functions" } else { "w1" },
        executions: args.executions(),
        store: store_kind(args.db.as_ref()),
        durability: args.durability.as_str(),
        median: medians(&rounds),
        rounds,
        ceiling: shape,
        peak_rss_mib: peak_rss_kib().map(|k| k as f64 / 1024.0),
    };
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => print_text(&report),
    }
    Ok(())
}

pub(crate) fn store_kind(db: Option<&StoreLocation>) -> &'static str {
    match db {
        Some(StoreLocation::Postgres(_)) => "postgres",
        _ => "sqlite",
    }
}

fn medians(rounds: &[W1Round]) -> W1Medians {
    let of = |f: &dyn Fn(&W1Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    let opt = |f: &dyn Fn(&W1Round) -> Option<f64>| {
        let v: Option<Vec<f64>> = rounds.iter().map(f).collect();
        v.map(|v| median(&v))
    };
    W1Medians {
        attempts_per_second: of(&|r| r.attempts_per_second),
        executions_per_second: of(&|r| r.executions_per_second),
        latency_p50_ms: of(&|r| r.latency_p50_ms as f64),
        latency_p99_ms: of(&|r| r.latency_p99_ms as f64),
        ceiling_attempts_per_second: opt(&|r| r.ceiling_attempts_per_second),
        ratio_to_ceiling: opt(&|r| r.ratio_to_ceiling),
    }
}

/// The workload on a fresh store, then (SQLite only) the ceiling beside it.
async fn one_round(args: &BenchArgs, round: usize) -> anyhow::Result<(W1Round, Option<RowSizes>)> {
    let tmp = tempfile::tempdir()?;
    let (store, handle, join) = open_engine(args, tmp.path()).await?;
    let before = store.stats();
    let run = if args.functions { functions(args, &handle, round).await? } else { pipelines(args, &store, &handle).await? };
    handle.shutdown().await;
    join.await??;
    let stats = store.stats();
    drop(store);
    anyhow::ensure!(run.failed == 0, "{} executions did not succeed", run.failed);
    let ledger_rows = stats.ledger_rows - before.ledger_rows;
    let attempts = run.attempts_counted.unwrap_or(ledger_rows);
    anyhow::ensure!(attempts == ledger_rows, "the steps ran {attempts} attempts but the ledger recorded {ledger_rows}");
    let commits = stats.commits - before.commits;
    let n = args.executions() as f64;
    let sqlite_file = match &args.db {
        None => Some(tmp.path().join("bench.db")),
        Some(StoreLocation::Sqlite(path)) => Some(path.clone()),
        Some(_) => None,
    };
    let ceiling = match sqlite_file.filter(|_| !args.no_ceiling) {
        Some(file) => {
            let sizes = RowSizes::measure(&file)?;
            let (dir, executions, durability) = (tmp.path().to_path_buf(), args.executions(), args.durability);
            Some(tokio::task::spawn_blocking(move || attempt_ceiling(&dir, executions, attempts, sizes, durability)).await??)
        }
        None => None,
    };
    let attempts_per_second = attempts as f64 / run.wall_seconds;
    let r = W1Round {
        wall_seconds: run.wall_seconds,
        attempts,
        attempts_per_second,
        executions_per_second: n / run.wall_seconds,
        commits,
        transitions_per_commit: (stats.transitions - before.transitions) as f64 / commits.max(1) as f64,
        writer_busy_percent: (stats.commit_micros_total - before.commit_micros_total) as f64 / 1e6 / run.wall_seconds * 100.0,
        latency_p50_ms: quantile(&run.latencies_ms, 0.50),
        latency_p99_ms: quantile(&run.latencies_ms, 0.99),
        ceiling_attempts_per_second: ceiling.map(|c| c.attempts_per_second()),
        ratio_to_ceiling: ceiling.map(|c| attempts_per_second / c.attempts_per_second()),
    };
    Ok((r, ceiling.map(|c| c.sizes)))
}

/// What one workload run measured.
struct Run {
    latencies_ms: Vec<u64>,
    failed: usize,
    wall_seconds: f64,
    /// Attempts counted by the workload itself (functions count their steps' runs).
    attempts_counted: Option<u64>,
}

async fn pipelines(args: &BenchArgs, store: &redrive_store::AnyStore, handle: &EngineHandle) -> anyhow::Result<Run> {
    let pipeline = put_pipeline(store, "bench-w1", &w1_definition()).await?;
    let (latencies_ms, failed, wall_seconds) = run_all(args.executions(), |_| {
        let (handle, pipeline) = (handle.clone(), pipeline.clone());
        async move {
            let id = handle.start(pipeline, "{}".into()).await?;
            handle.wait(&id).await
        }
    })
    .await?;
    Ok(Run { latencies_ms, failed, wall_seconds, attempts_counted: None })
}

/// W1 as durable functions: each execution runs 5 steps, each failing once.
async fn functions(args: &BenchArgs, handle: &EngineHandle, round: usize) -> anyhow::Result<Run> {
    use redrive_core::exception::{ExceptionType, Failure};
    use redrive_engine::function::{FnContext, FnFuture};
    let retry = step_retry("Step.SERVICE_FAULT", 0.0, 3.0)?;
    // Step attempts as the steps themselves count them (replays do not run a step).
    let ran = Arc::new(AtomicU64::new(0));
    let ran_in_steps = ran.clone();
    let function = move |ctx: FnContext, _input: String| -> FnFuture {
        let (retry, ran) = (retry.clone(), ran_in_steps.clone());
        Box::pin(async move {
            for i in 1..=ACTIONS {
                let mut attempts = 0;
                ctx.step(&format!("S{i}"), &retry, || {
                    attempts += 1;
                    ran.fetch_add(1, Ordering::Relaxed);
                    let first = attempts == 1;
                    async move {
                        if first { Err(Failure::new(ExceptionType::ServiceFault, "first attempt fails")) } else { Ok(serde_json::json!(i)) }
                    }
                })
                .await?;
            }
            Ok(serde_json::Value::Null)
        })
    };
    handle.register_function("bench-w1", Arc::new(function)).await?;
    let (latencies_ms, failed, wall_seconds) = run_all(args.executions(), |i| {
        let handle = handle.clone();
        async move {
            // Named per round: starts are idempotent on the name, and --db may keep
            // an earlier round's executions.
            let (id, _) = handle.start_function("bench-w1", &format!("w1-r{round}-{i}"), "{}".into()).await?;
            handle.wait(&id).await.map_err(|e: EngineError| e)
        }
    })
    .await?;
    Ok(Run { latencies_ms, failed, wall_seconds, attempts_counted: Some(ran.load(Ordering::Relaxed)) })
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
}

fn print_text(r: &W1Report) {
    let what = if r.workload == "w1" { "noop actions" } else { "function steps" };
    println!(
        "W1: {} executions × {ACTIONS} {what}, each failing once with Step.SERVICE_FAULT (retry interval 0); store {}, durability {}",
        r.executions, r.store, r.durability
    );
    println!(
        "| round | attempts (counted) | wall (s) | attempts/s | ceiling attempts/s | ratio | executions/s | commits | transitions/commit | writer busy | p50 / p99 latency (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (i, x) in r.rounds.iter().enumerate() {
        println!(
            "| {} | {} | {:.2} | {:.0} | {} | {} | {:.0} | {} | {:.1} | {:.0}% | {} / {} |",
            i + 1,
            x.attempts,
            x.wall_seconds,
            x.attempts_per_second,
            opt(x.ceiling_attempts_per_second, 0),
            opt(x.ratio_to_ceiling, 2),
            x.executions_per_second,
            x.commits,
            x.transitions_per_commit,
            x.writer_busy_percent,
            x.latency_p50_ms,
            x.latency_p99_ms
        );
    }
    let m = &r.median;
    println!(
        "| **median** | | | **{:.0}** | {} | **{}** | {:.0} | | | | {:.0} / {:.0} |",
        m.attempts_per_second,
        opt(m.ceiling_attempts_per_second, 0),
        opt(m.ratio_to_ceiling, 2),
        m.executions_per_second,
        m.latency_p50_ms,
        m.latency_p99_ms
    );
    match &r.ceiling {
        Some(c) => println!(
            "\nceiling: raw SQLite in this process, per attempt one ledger INSERT ({} B) and one state UPDATE ({} B), {} attempts per transaction, WAL, durability {}",
            c.ledger_row_bytes, c.state_bytes, c.attempts_per_transaction, r.durability
        ),
        None => println!("\nceiling: not measured (--no-ceiling, or the store is not SQLite)"),
    }
    println!("peak RSS: {}", r.peak_rss_mib.map_or("n/a".into(), |m| format!("{m:.1} MiB")));
}
