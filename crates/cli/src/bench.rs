//! `redrive bench`: workload W1 through the real engine and store.
//!
//! N executions of a pipeline with 5 noop actions in sequence, started at once
//! (PARALLEL mode). Every action fails its first attempt with
//! `Step.SERVICE_FAULT` and is retried at `intervalSeconds: 0`, so each execution
//! makes 10 attempts.

use crate::{OutputFormat, exit};
use redrive_core::definition::source::parse_document;
use redrive_engine::{Driver, DriverConfig, LoadedPipeline, SystemClock};
use redrive_store::{Durability, SqliteOptions, SqliteStore, Store};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DurabilityArg {
    /// synchronous=FULL: every commit is fsynced before it is acknowledged.
    Full,
    /// synchronous=NORMAL: WAL commits survive a process crash but not a power loss.
    Normal,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Number of executions.
    #[arg(long, default_value_t = 10_000)]
    executions: usize,
    #[arg(long, value_enum, default_value_t = DurabilityArg::Full)]
    durability: DurabilityArg,
    /// Store file (default: a fresh file in a temporary directory, removed afterwards).
    #[arg(long, value_name = "PATH")]
    db: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

const ACTIONS: usize = 5;

fn w1_definition() -> String {
    let mut s =
        String::from("name: bench-w1\nexecutionMode: PARALLEL\nmaxConcurrentExecutions: 10000\nstages:\n  - name: Work\n    actions:\n");
    for i in 1..=ACTIONS {
        s.push_str(&format!(
            "      - name: A{i}\n        runOrder: {i}\n        noop: {{failFirst: 1, failWith: Step.SERVICE_FAULT}}\n        retryPolicies:\n          - {{exceptionType: [Step.SERVICE_FAULT], intervalSeconds: 0, maxAttempts: 3}}\n"
        ));
    }
    s
}

pub fn bench(args: BenchArgs) -> u8 {
    if args.executions == 0 || args.executions > 1_000_000 {
        eprintln!("error: --executions must be between 1 and 1000000");
        return exit::INVALID_INPUT;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run_bench(&args)) {
        Ok(()) => exit::SUCCEEDED,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::ENGINE_ERROR
        }
    }
}

async fn run_bench(args: &BenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let db = args.db.clone().unwrap_or_else(|| tmp.path().join("bench.db"));
    let durability = match args.durability {
        DurabilityArg::Full => Durability::Full,
        DurabilityArg::Normal => Durability::Normal,
    };
    let store = Arc::new(SqliteStore::open(&db, SqliteOptions { durability, ..Default::default() })?);
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let definition = w1_definition();
    let json = parse_document(&definition).map_err(|e| anyhow::anyhow!("{e}"))?.to_json().to_string();
    let record = store.put_pipeline("bench-w1", &json, None, redrive_engine::Clock::now(&SystemClock)).await?;
    let pipeline = Arc::new(LoadedPipeline::from_record(record)?);
    let before = store.stats();

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.executions {
        let handle = handle.clone();
        let pipeline = pipeline.clone();
        tasks.spawn(async move {
            let id = handle.start(pipeline, "{}".into()).await?;
            handle.wait(&id).await
        });
    }
    let mut latencies_ms = Vec::with_capacity(args.executions);
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        let outcome = r??;
        if outcome.status != redrive_core::machine::ExecutionStatus::Succeeded {
            failed += 1;
        }
        latencies_ms.push(outcome.finished_at.ms_since(outcome.started_at).max(0) as u64);
    }
    let wall = started.elapsed().as_secs_f64();
    handle.shutdown().await;
    join.await??;
    let stats = store.stats();
    let commits = stats.commits - before.commits;
    let transitions = stats.transitions - before.transitions;
    anyhow::ensure!(failed == 0, "{failed} executions did not succeed");

    latencies_ms.sort_unstable();
    let pct = |p: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * p).round() as usize];
    let n = args.executions as f64;
    let attempts = n * (ACTIONS * 2) as f64;
    let rss_kib = peak_rss_kib();
    let rows = [
        ("executions", format!("{}", args.executions)),
        ("durability", format!("{:?}", args.durability).to_lowercase()),
        ("wall time", format!("{wall:.2} s")),
        ("executions/s", format!("{:.0}", n / wall)),
        ("actions/s", format!("{:.0}", n * ACTIONS as f64 / wall)),
        ("attempts/s", format!("{:.0}", attempts / wall)),
        ("commits/s", format!("{:.0}", commits as f64 / wall)),
        ("transitions/commit", format!("{:.1}", transitions as f64 / commits.max(1) as f64)),
        (
            "store writer busy",
            format!("{:.0}% of wall time", (stats.commit_micros_total - before.commit_micros_total) as f64 / 1e6 / wall * 100.0),
        ),
        ("p50 execution latency", format!("{} ms", pct(0.50))),
        ("p99 execution latency", format!("{} ms", pct(0.99))),
        ("peak RSS", rss_kib.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))),
    ];
    if args.output == OutputFormat::Json {
        let v: serde_json::Map<String, serde_json::Value> =
            rows.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone()))).collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "W1: {} executions × {ACTIONS} noop actions, each failing once with Step.SERVICE_FAULT (retry interval 0)",
            args.executions
        );
        println!("| metric | value |\n|---|---|");
        for (k, v) in rows {
            println!("| {k} | {v} |");
        }
    }
    Ok(())
}

/// Peak resident set size of this process (VmHWM), Linux only.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
