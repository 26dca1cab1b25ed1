//! `redrive bench`: workload W1 through the real engine and store.
//!
//! N executions of a pipeline with 5 noop actions in sequence, started at once
//! (PARALLEL mode). Every action fails its first attempt with
//! `Step.SERVICE_FAULT` and is retried at `intervalSeconds: 0`, so each execution
//! makes 10 attempts.

use crate::{OutputFormat, exit};
use redrive_core::definition::source::parse_document;
use redrive_engine::{Driver, DriverConfig, LoadedPipeline, SystemClock};
use redrive_store::{AnyStore, Durability, SqliteOptions, Store, StoreLocation, StoreOptions};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DurabilityArg {
    /// synchronous=FULL: every commit is fsynced before it is acknowledged.
    Full,
    /// synchronous=NORMAL: WAL commits survive a process crash but not a power loss.
    Normal,
}

impl DurabilityArg {
    /// The store's durability setting.
    pub(crate) fn store(self) -> Durability {
        match self {
            DurabilityArg::Full => Durability::Full,
            DurabilityArg::Normal => Durability::Normal,
        }
    }

    /// The name `--durability` takes and the report prints.
    fn as_str(self) -> &'static str {
        match self {
            DurabilityArg::Full => "full",
            DurabilityArg::Normal => "normal",
        }
    }
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Number of executions.
    #[arg(long, default_value_t = 10_000)]
    executions: usize,
    #[arg(long, value_enum, default_value_t = DurabilityArg::Full)]
    durability: DurabilityArg,
    /// The store: a SQLite file or a PostgreSQL URL (`postgres://…`; use an
    /// empty database). Default: a fresh SQLite file in a temporary directory,
    /// removed afterwards.
    #[arg(long, value_name = "PATH|URL")]
    db: Option<StoreLocation>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    /// Run W1 as durable functions: N executions × 5 checkpointed steps, each
    /// failing its first attempt with Step.SERVICE_FAULT (retry interval 0).
    #[arg(long)]
    functions: bool,
    /// With --functions: instead, start N executions whose first step is throttled
    /// with a one-hour backoff, and report what the suspended executions hold
    /// (memory, tasks, executions in the engine's memory).
    #[arg(long, requires = "functions")]
    suspended: bool,
    /// Run W1 alone and with the retention sweeper deleting concurrently, side
    /// by side, 3 rounds on fresh SQLite files, and print the medians' ratio.
    #[arg(long, conflicts_with_all = ["functions", "db"])]
    with_sweeper: bool,
}

pub(crate) const ACTIONS: usize = 5;

pub(crate) fn w1_definition() -> String {
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
    if args.with_sweeper {
        return crate::bench_sweep::compare(args.executions, args.durability).await;
    }
    let tmp = tempfile::tempdir()?;
    let db = args.db.clone().unwrap_or_else(|| StoreLocation::Sqlite(tmp.path().join("bench.db")));
    let options =
        StoreOptions { sqlite: SqliteOptions { durability: args.durability.store(), ..Default::default() }, ..Default::default() };
    let store = Arc::new(AnyStore::open(&db, options).await?);
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    if args.functions && args.suspended {
        return run_suspended(args, store, handle, join).await;
    }
    if args.functions {
        return run_functions(args, store, handle, join).await;
    }
    let definition = w1_definition();
    let json = parse_document(&definition).map_err(|e| anyhow::anyhow!("{e}"))?.to_json().to_string();
    let record = store.put_pipeline("bench-w1", &json, None, redrive_engine::Clock::now(&SystemClock)).await?;
    let pipeline = Arc::new(LoadedPipeline::from_record(record)?);
    let before = store.stats();

    let (latencies_ms, failed, wall) = run_all(args.executions, |_| {
        let (handle, pipeline) = (handle.clone(), pipeline.clone());
        async move {
            let id = handle.start(pipeline, "{}".into()).await?;
            handle.wait(&id).await
        }
    })
    .await?;
    handle.shutdown().await;
    join.await??;
    let stats = store.stats();
    let commits = stats.commits - before.commits;
    let transitions = stats.transitions - before.transitions;
    anyhow::ensure!(failed == 0, "{failed} executions did not succeed");

    let title = format!(
        "W1: {} executions × {ACTIONS} noop actions, each failing once with Step.SERVICE_FAULT (retry interval 0)",
        args.executions
    );
    let attempts = stats.ledger_rows - before.ledger_rows;
    report(args, &title, "actions/s", wall, Counted { commits, transitions, attempts }, &stats, &before, latencies_ms)
}

/// What a run did, counted: commits and transitions by the store, attempts
/// from the ledger rows the committed transitions wrote.
struct Counted {
    commits: u64,
    transitions: u64,
    attempts: u64,
}

/// Starts `n` executions at once (`start(i)` starts the i-th and waits for it);
/// returns their latencies in ms, how many did not succeed, and the wall time in s.
pub(crate) async fn run_all<F, Fut>(n: usize, start: F) -> anyhow::Result<(Vec<u64>, usize, f64)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<redrive_engine::ExecutionOutcome, redrive_engine::EngineError>> + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        tasks.spawn(start(i));
    }
    let mut latencies_ms = Vec::with_capacity(n);
    let mut failed = 0;
    while let Some(r) = tasks.join_next().await {
        let outcome = r??;
        if outcome.status != redrive_core::machine::ExecutionStatus::Succeeded {
            failed += 1;
        }
        latencies_ms.push(outcome.finished_at.ms_since(outcome.started_at).max(0) as u64);
    }
    Ok((latencies_ms, failed, started.elapsed().as_secs_f64()))
}

/// A step's retry: one policy for `exception_type`.
fn step_retry(exception_type: &str, interval_seconds: f64, max_attempts: f64) -> anyhow::Result<redrive_engine::function::StepRetry> {
    let policy = redrive_core::policy::RetryPolicy::new(&redrive_core::policy::RetryPolicySpec {
        exception_types: vec![exception_type.into()],
        interval_seconds: Some(interval_seconds),
        max_attempts: Some(max_attempts),
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(redrive_engine::function::StepRetry { policies: vec![policy], ..Default::default() })
}

/// W1 as durable functions: each execution runs 5 steps, each failing once.
async fn run_functions(
    args: &BenchArgs,
    store: Arc<AnyStore>,
    handle: redrive_engine::EngineHandle,
    join: tokio::task::JoinHandle<Result<(), redrive_engine::EngineError>>,
) -> anyhow::Result<()> {
    use redrive_core::exception::{ExceptionType, Failure};
    use redrive_engine::function::{FnContext, FnFuture};
    let retry = step_retry("Step.SERVICE_FAULT", 0.0, 3.0)?;
    // Step attempts as the steps themselves count them (replays do not run a step).
    let ran = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let ran_in_steps = ran.clone();
    let function = move |ctx: FnContext, _input: String| -> FnFuture {
        let (retry, ran) = (retry.clone(), ran_in_steps.clone());
        Box::pin(async move {
            for i in 1..=ACTIONS {
                let mut attempts = 0;
                ctx.step(&format!("S{i}"), &retry, || {
                    attempts += 1;
                    ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    let before = store.stats();
    let (latencies_ms, failed, wall) = run_all(args.executions, |i| {
        let handle = handle.clone();
        async move {
            let (id, _) = handle.start_function("bench-w1", &format!("w1-{i}"), "{}".into()).await?;
            handle.wait(&id).await
        }
    })
    .await?;
    handle.shutdown().await;
    join.await??;
    let stats = store.stats();
    anyhow::ensure!(failed == 0, "{failed} executions did not succeed");
    let title = format!(
        "W1 (durable functions): {} executions × {ACTIONS} steps, each failing once with Step.SERVICE_FAULT (retry interval 0)",
        args.executions
    );
    let attempts = ran.load(std::sync::atomic::Ordering::Relaxed);
    let ledger_rows = stats.ledger_rows - before.ledger_rows;
    anyhow::ensure!(attempts == ledger_rows, "the steps ran {attempts} attempts but the ledger recorded {ledger_rows}");
    let counted = Counted { commits: stats.commits - before.commits, transitions: stats.transitions - before.transitions, attempts };
    report(args, &title, "steps/s", wall, counted, &stats, &before, latencies_ms)
}

/// N function executions suspended on a one-hour backoff: what do they hold?
async fn run_suspended(
    args: &BenchArgs,
    store: Arc<AnyStore>,
    handle: redrive_engine::EngineHandle,
    join: tokio::task::JoinHandle<Result<(), redrive_engine::EngineError>>,
) -> anyhow::Result<()> {
    use redrive_core::exception::{ExceptionType, Failure};
    use redrive_engine::function::{FnContext, FnFuture};
    let retry = step_retry("Step.THROTTLING", 3600.0, 1.0)?;
    // The condition the run waits for, counted by the function itself: every
    // invocation has ended (a suspension drops the function's future, which
    // drops this guard — after the throttled step's failure was made durable).
    struct Ended(Arc<std::sync::atomic::AtomicUsize>);
    impl Drop for Ended {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let suspended = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let suspending = suspended.clone();
    let function = move |ctx: FnContext, _input: String| -> FnFuture {
        let (retry, ended) = (retry.clone(), Ended(suspending.clone()));
        Box::pin(async move {
            let _ended = ended;
            ctx.step("call", &retry, || async { Err(Failure::new(ExceptionType::Throttling, "come back in an hour")) }).await?;
            Ok(serde_json::Value::Null)
        })
    };
    handle.register_function("bench-suspended", Arc::new(function)).await?;
    let rss_before = current_rss_kib();
    let tasks_before = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let started = Instant::now();
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..args.executions {
        let handle = handle.clone();
        starts.spawn(async move { handle.start_function("bench-suspended", &format!("s-{i}"), "{}".into()).await });
    }
    while let Some(r) = starts.join_next().await {
        r??;
    }
    while suspended.load(std::sync::atomic::Ordering::SeqCst) < args.executions {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Let the invocations' tasks end and their last messages be handled; what
    // the engine holds after that is measured, not waited for.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let stats = handle.stats().await?;
    let wall = started.elapsed().as_secs_f64();
    let tasks_after = tokio::runtime::Handle::current().metrics().num_alive_tasks();
    let rss_after = current_rss_kib();
    release_free_heap();
    let rss_trimmed = current_rss_kib();
    let timers = store.count_timers().await?;
    handle.shutdown().await;
    join.await??;
    let mib = |k: Option<u64>| k.map_or("n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    let rows = [
        ("suspended executions", format!("{}", args.executions)),
        ("time to start and suspend all", format!("{wall:.2} s")),
        ("executions in engine memory", format!("{}", stats.live_functions)),
        ("tokio tasks alive before / after", format!("{tasks_before} / {tasks_after}")),
        ("RSS before / after / after malloc_trim", format!("{} / {} / {}", mib(rss_before), mib(rss_after), mib(rss_trimmed))),
        ("durable timers pending (counted in the store)", format!("{timers}")),
    ];
    println!("{} durable function executions suspended on a one-hour backoff", args.executions);
    println!("| metric | value |\n|---|---|");
    for (k, v) in rows {
        println!("| {k} | {v} |");
    }
    Ok(())
}

/// Gives freed heap back to the OS, so what RSS shows after is what is still
/// held (glibc only; elsewhere RSS after is read as it is).
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Current resident set size of this process (VmRSS), Linux only.
fn current_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &BenchArgs,
    title: &str,
    unit_label: &str,
    wall: f64,
    counted: Counted,
    stats: &redrive_store::CommitStats,
    before: &redrive_store::CommitStats,
    mut latencies_ms: Vec<u64>,
) -> anyhow::Result<()> {
    latencies_ms.sort_unstable();
    let pct = |p: f64| latencies_ms[((latencies_ms.len() - 1) as f64 * p).round() as usize];
    let n = args.executions as f64;
    let Counted { commits, transitions, attempts } = counted;
    let rss_kib = peak_rss_kib();
    let rows = [
        ("executions", format!("{}", args.executions)),
        ("durability", args.durability.as_str().to_string()),
        ("wall time", format!("{wall:.2} s")),
        ("executions/s", format!("{:.0}", n / wall)),
        (unit_label, format!("{:.0}", n * ACTIONS as f64 / wall)),
        ("attempts (counted)", format!("{attempts}")),
        ("attempts/s", format!("{:.0}", attempts as f64 / wall)),
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
        println!("{title}");
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
