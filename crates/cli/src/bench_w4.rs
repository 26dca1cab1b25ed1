//! W4: many pending retries. N executions of a one-action pipeline whose noop
//! action fails its first attempt with `Step.THROTTLING`; its policy retries
//! once after `--delay-seconds`, so N retries wait as durable timers, due over
//! a window as long as the starts took, `--delay-seconds` ahead. Starts go in
//! with at most `START_WINDOW` in flight (a client's backpressure: each start
//! returns once it is durable). Pipelines are PARALLEL and hold at most
//! `MAX_CONCURRENT_EXECUTIONS` unfinished each, so N is spread over enough of
//! them.
//!
//! Counted, not assumed: RSS sampled from /proc every `RSS_SAMPLE_MS` (peak
//! while starting, peak overall) and VmHWM; from the ledger of the run's SQLite
//! file, each retry's lateness (its start − the due time its decision recorded),
//! how many started early, how many executions retried other than exactly once.

use crate::OutputFormat;
use crate::bench::{BenchArgs, current_rss_kib, open_engine, peak_rss_kib, put_pipeline, rank};
use redrive_core::limits::MAX_CONCURRENT_EXECUTIONS;
use redrive_engine::LoadedPipeline;
use redrive_store::{Store, StoreLocation};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Starts in flight at once.
const START_WINDOW: usize = 1024;
const RSS_SAMPLE_MS: u64 = 200;
/// How often the run checks whether every retry has run.
const DONE_POLL_MS: u64 = 500;

/// `redrive bench --workload w4 --output json`. Field names are documented in
/// docs/benchmarks.md.
#[derive(Serialize)]
pub(crate) struct W4Report {
    pub workload: &'static str,
    pub executions: usize,
    pub pipelines: usize,
    pub durability: &'static str,
    pub delay_seconds: u64,
    pub start_seconds: f64,
    /// From the first start to the last retry's success.
    pub wall_seconds: f64,
    pub peak_rss_while_starting_mib: f64,
    pub peak_rss_mib: f64,
    pub retries: u64,
    pub retries_early: u64,
    /// Executions whose retry ran other than exactly once.
    pub executions_not_retried_once: u64,
    pub lateness_p50_ms: u64,
    pub lateness_p99_ms: u64,
    pub lateness_max_ms: u64,
}

fn definition(name: &str, delay_seconds: u64) -> String {
    format!(
        "name: {name}\nexecutionMode: PARALLEL\nmaxConcurrentExecutions: {MAX_CONCURRENT_EXECUTIONS}\nstages:\n  - name: Work\n    actions:\n      - name: Call\n        noop: {{failFirst: 1, failWith: Step.THROTTLING}}\n        retryPolicies:\n          - {{exceptionType: [Step.THROTTLING], intervalSeconds: {delay_seconds}, maxAttempts: 2}}\n"
    )
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let file = match &args.db {
        None => None,
        Some(StoreLocation::Sqlite(path)) => Some(path.clone()),
        Some(_) => anyhow::bail!("W4 reads its figures from a SQLite store's ledger: use the default store or a SQLite --db"),
    };
    anyhow::ensure!(args.runs == 1 || args.db.is_none(), "W4 with --db runs once (--runs 1): a second round would meet the first's rows");
    let mut reports = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        reports.push(one_round(args, file.clone()).await?);
    }
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        OutputFormat::Text => print_text(&reports),
    }
    Ok(())
}

async fn one_round(args: &BenchArgs, file: Option<std::path::PathBuf>) -> anyhow::Result<W4Report> {
    let tmp = tempfile::tempdir()?;
    let file = file.unwrap_or_else(|| tmp.path().join("bench.db"));
    let (store, handle, join) = open_engine(args, tmp.path()).await?;
    let n = args.executions();
    let per_pipeline = MAX_CONCURRENT_EXECUTIONS as usize;
    let mut pipelines: Vec<Arc<LoadedPipeline>> = Vec::new();
    for k in 0..n.div_ceil(per_pipeline) {
        pipelines.push(put_pipeline(&store, &format!("bench-w4-{k}"), &definition(&format!("bench-w4-{k}"), args.delay_seconds)).await?);
    }
    let sampler = RssSampler::spawn();
    let started = Instant::now();
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..n {
        if starts.len() >= START_WINDOW {
            starts.join_next().await.expect("a start in flight")??;
        }
        let (handle, pipeline) = (handle.clone(), pipelines[i / per_pipeline].clone());
        starts.spawn(async move { handle.start(pipeline, "{}".into()).await });
    }
    while let Some(r) = starts.join_next().await {
        r??;
    }
    let start_seconds = started.elapsed().as_secs_f64();
    let peak_rss_while_starting_kib = sampler.peak_kib();
    // Done when no retry waits and the engine holds no execution.
    loop {
        tokio::time::sleep(Duration::from_millis(DONE_POLL_MS)).await;
        if store.count_timers().await? == 0 && handle.stats().await?.live_executions == 0 {
            break;
        }
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    handle.shutdown().await;
    join.await??;
    drop(store);
    let peak_sampled_kib = sampler.stop().await;
    let ledger = tokio::task::spawn_blocking(move || read_ledger(&file)).await??;
    anyhow::ensure!(ledger.succeeded == n as u64, "{} of {n} executions succeeded", ledger.succeeded);
    let mib = |k: u64| k as f64 / 1024.0;
    Ok(W4Report {
        workload: "w4",
        executions: n,
        pipelines: pipelines.len(),
        durability: args.durability.as_str(),
        delay_seconds: args.delay_seconds,
        start_seconds,
        wall_seconds,
        peak_rss_while_starting_mib: mib(peak_rss_while_starting_kib),
        peak_rss_mib: mib(peak_sampled_kib.max(peak_rss_kib().unwrap_or(0))),
        retries: ledger.lateness_ms.len() as u64,
        retries_early: ledger.lateness_ms.iter().filter(|l| **l < 0).count() as u64,
        executions_not_retried_once: ledger.not_retried_once,
        lateness_p50_ms: lateness(&ledger.lateness_ms, 0.50),
        lateness_p99_ms: lateness(&ledger.lateness_ms, 0.99),
        lateness_max_ms: lateness(&ledger.lateness_ms, 1.0),
    })
}

/// A quantile of the sorted lateness, early retries counted as 0 late (they are
/// reported apart).
fn lateness(sorted_ms: &[i64], p: f64) -> u64 {
    if sorted_ms.is_empty() { 0 } else { sorted_ms[rank(sorted_ms.len(), p)].max(0) as u64 }
}

/// What the run's ledger says.
struct Ledger {
    /// Per retry: its start − the due time its decision recorded (ms), ascending.
    lateness_ms: Vec<i64>,
    not_retried_once: u64,
    succeeded: u64,
}

fn read_ledger(file: &std::path::Path) -> anyhow::Result<Ledger> {
    let conn = rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut lateness_ms = Vec::new();
    let mut stmt = conn.prepare(
        "SELECT retry.started_at - json_extract(first.decision_json, '$.dueAt') \
         FROM ledger AS first JOIN ledger AS retry \
           ON retry.execution_id = first.execution_id AND retry.series = first.series AND retry.attempt = 2 \
         WHERE first.attempt = 1 AND first.pipeline_name LIKE 'bench-w4-%'",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        lateness_ms.push(row.get::<_, i64>(0)?);
    }
    let not_retried_once: i64 = conn.query_row(
        "SELECT count(*) FROM (SELECT e.id FROM executions AS e LEFT JOIN ledger AS l ON l.execution_id = e.id AND l.attempt >= 2 \
         WHERE e.pipeline_name LIKE 'bench-w4-%' GROUP BY e.id HAVING count(l.seq) <> 1)",
        [],
        |r| r.get(0),
    )?;
    let succeeded: i64 =
        conn.query_row("SELECT count(*) FROM executions WHERE pipeline_name LIKE 'bench-w4-%' AND status = 'Succeeded'", [], |r| r.get(0))?;
    lateness_ms.sort_unstable();
    Ok(Ledger { lateness_ms, not_retried_once: not_retried_once as u64, succeeded: succeeded as u64 })
}

/// Samples VmRSS on a task until stopped; keeps the peak.
struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn spawn() -> RssSampler {
        let (peak_kib, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (peak, stopped) = (peak_kib.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !stopped.load(Ordering::Relaxed) {
                peak.fetch_max(current_rss_kib().unwrap_or(0), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(RSS_SAMPLE_MS)).await;
            }
        });
        RssSampler { peak_kib, stop, task }
    }

    fn peak_kib(&self) -> u64 {
        self.peak_kib.load(Ordering::Relaxed).max(current_rss_kib().unwrap_or(0))
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let peak_kib = self.peak_kib.clone();
        let _ = self.task.await;
        peak_kib.load(Ordering::Relaxed).max(current_rss_kib().unwrap_or(0))
    }
}

fn print_text(reports: &[W4Report]) {
    let Some(first) = reports.first() else { return };
    println!(
        "W4: {} pending retries ({} pipelines, one noop action failing once, retried after {} s), durability {}",
        first.executions, first.pipelines, first.delay_seconds, first.durability
    );
    println!(
        "| round | starts (s) | wall (s) | peak RSS starting / overall (MiB) | retries | early | not exactly once | lateness p50 / p99 / max (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, r) in reports.iter().enumerate() {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} / {:.1} | {} | {} | {} | {} / {} / {} |",
            i + 1,
            r.start_seconds,
            r.wall_seconds,
            r.peak_rss_while_starting_mib,
            r.peak_rss_mib,
            r.retries,
            r.retries_early,
            r.executions_not_retried_once,
            r.lateness_p50_ms,
            r.lateness_p99_ms,
            r.lateness_max_ms
        );
    }
}
