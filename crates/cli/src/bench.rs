//! `redrive bench`: workloads through the real engine and store, every figure
//! counted, with the raw-SQLite ceilings measured beside them in the same run.
//!
//! - W1 (`bench_w1`): N executions of a pipeline with 5 noop actions in
//!   sequence, started at once (PARALLEL mode); every action fails its first
//!   attempt with `Step.SERVICE_FAULT` and is retried at `intervalSeconds: 0`, so
//!   each execution makes 10 attempts. `--functions`: the same as durable
//!   functions. Beside it, the ceiling: raw SQLite doing the same attempts' writes.
//! - W2 (`bench_w2`): one execution at a time, start to result, a 3-action
//!   pipeline and a 3-step function; beside it, one durable commit's latency.
//! - W3 (`bench_w3`): kill -9 a server (this binary) with executions in
//!   flight, restart it, and read recovery times from the ledger.
//! - W4 (`bench_w4`): a million pending retries: peak RSS while they are
//!   started and wait, and each retry's lateness from the ledger.
//! - `--functions --suspended`: what N suspended function executions hold.
//! - `--with-sweeper` (`bench_sweep`): W1 beside W1 with retention deleting.

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
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DurabilityArg::Full => "full",
            DurabilityArg::Normal => "normal",
        }
    }
}

/// The workloads of `--workload`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Throughput: N executions at once, every action failing once.
    W1,
    /// Latency: one execution at a time, start to result.
    W2,
    /// Recovery: kill -9 a server with executions in flight and restart it.
    W3,
    /// Many pending retries: memory while they wait and how late they fire.
    W4,
    /// W1 spread over `--processes` `redrive server --spread` processes on PostgreSQL.
    W5,
}

/// Most rounds `--runs` takes.
const RUNS_MAX: usize = 20;
/// Most executions `--executions` takes.
const EXECUTIONS_MAX: usize = 1_000_000;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// The workload.
    #[arg(long, value_enum, default_value_t = Workload::W1)]
    pub(crate) workload: Workload,
    /// Number of executions (default: 10000 for W1 and W3, 1000 for W2, 1000000 for W4).
    #[arg(long)]
    executions: Option<usize>,
    /// Rounds; medians are reported. Each round runs on a fresh SQLite file
    /// (unless --db), the workload and then its ceiling.
    #[arg(long, default_value_t = 3)]
    pub(crate) runs: usize,
    /// Do not measure the raw-SQLite ceiling beside the workload.
    #[arg(long)]
    pub(crate) no_ceiling: bool,
    #[arg(long, value_enum, default_value_t = DurabilityArg::Full)]
    pub(crate) durability: DurabilityArg,
    /// W4: the retry delay, so the retries come due this far ahead of their starts.
    #[arg(long, default_value_t = 180, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) delay_seconds: u64,
    /// The store: a SQLite file or a PostgreSQL URL (`postgres://…`; use an
    /// empty database). Default: a fresh SQLite file in a temporary directory,
    /// removed afterwards.
    #[arg(long, value_name = "PATH|URL")]
    pub(crate) db: Option<StoreLocation>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub(crate) output: OutputFormat,
    /// W5: how many `redrive server --spread` processes share the work (1 to 8).
    #[arg(long, default_value_t = 2)]
    pub(crate) processes: usize,
    /// W1 as durable functions: N executions × 5 checkpointed steps, each
    /// failing its first attempt with Step.SERVICE_FAULT (retry interval 0).
    #[arg(long, conflicts_with = "workload")]
    pub(crate) functions: bool,
    /// With --functions: instead, start N executions whose first step is throttled
    /// with a one-hour backoff, and report what the suspended executions hold
    /// (memory, tasks, executions in the engine's memory).
    #[arg(long, requires = "functions")]
    suspended: bool,
    /// Run W1 alone and with the retention sweeper deleting concurrently, side
    /// by side, 3 rounds on fresh SQLite files, and print the medians' ratio.
    #[arg(long, conflicts_with_all = ["functions", "db", "workload"])]
    with_sweeper: bool,
}

impl BenchArgs {
    /// `--executions`, or the workload's default.
    pub(crate) fn executions(&self) -> usize {
        self.executions.unwrap_or(match self.workload {
            Workload::W1 => 10_000,
            Workload::W2 => 1_000,
            Workload::W3 => 10_000,
            Workload::W4 => 1_000_000,
            Workload::W5 => 10_000,
        })
    }
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
    if !(1..=EXECUTIONS_MAX).contains(&args.executions()) {
        eprintln!("error: --executions must be between 1 and {EXECUTIONS_MAX}");
        return exit::INVALID_INPUT;
    }
    if !(1..=RUNS_MAX).contains(&args.runs) {
        eprintln!("error: --runs must be between 1 and {RUNS_MAX}");
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
        return crate::bench_sweep::compare(args.executions(), args.durability).await;
    }
    if args.functions && args.suspended {
        let tmp = tempfile::tempdir()?;
        let (store, handle, join) = open_engine(args, tmp.path()).await?;
        return run_suspended(args, store, handle, join).await;
    }
    match args.workload {
        Workload::W1 => crate::bench_w1::run(args).await,
        Workload::W2 => crate::bench_w2::run(args).await,
        Workload::W3 => crate::bench_w3::run(args).await,
        Workload::W4 => crate::bench_w4::run(args).await,
        Workload::W5 => crate::bench_w5::run(args, args.processes).await,
    }
}

/// The store of a run (`--db`, or a fresh SQLite file in `dir`) and an engine on it.
pub(crate) async fn open_engine(
    args: &BenchArgs,
    dir: &std::path::Path,
) -> anyhow::Result<(Arc<AnyStore>, redrive_engine::EngineHandle, tokio::task::JoinHandle<Result<(), redrive_engine::EngineError>>)> {
    let db = args.db.clone().unwrap_or_else(|| StoreLocation::Sqlite(dir.join("bench.db")));
    let options =
        StoreOptions { sqlite: SqliteOptions { durability: args.durability.store(), ..Default::default() }, ..Default::default() };
    let store = Arc::new(AnyStore::open(&db, options).await?);
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    Ok((store, handle, join))
}

/// Puts a pipeline definition (YAML text) into the store and loads it.
pub(crate) async fn put_pipeline(store: &AnyStore, name: &str, definition: &str) -> anyhow::Result<Arc<LoadedPipeline>> {
    let json = parse_document(definition).map_err(|e| anyhow::anyhow!("{e}"))?.to_json().to_string();
    let record = store.put_pipeline(name, &json, None, redrive_engine::Clock::now(&SystemClock)).await?;
    Ok(Arc::new(LoadedPipeline::from_record(record)?))
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

/// The median of `values` (the upper one of an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// The `p` quantile (0..=1) of `values`, nearest rank.
pub(crate) fn quantile(values: &[u64], p: f64) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[rank(sorted.len(), p)]
}

/// The index of the `p` quantile (0..=1) in `len` sorted values, nearest rank.
pub(crate) fn rank(len: usize, p: f64) -> usize {
    assert!(len > 0 && (0.0..=1.0).contains(&p));
    ((len - 1) as f64 * p).round() as usize
}

/// A step's retry: one policy for `exception_type`.
pub(crate) fn step_retry(
    exception_type: &str,
    interval_seconds: f64,
    max_attempts: f64,
) -> anyhow::Result<redrive_engine::function::StepRetry> {
    let policy = redrive_core::policy::RetryPolicy::new(&redrive_core::policy::RetryPolicySpec {
        exception_types: vec![exception_type.into()],
        interval_seconds: Some(interval_seconds),
        max_attempts: Some(max_attempts),
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(redrive_engine::function::StepRetry { policies: vec![policy], ..Default::default() })
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
    for i in 0..args.executions() {
        let handle = handle.clone();
        starts.spawn(async move { handle.start_function("bench-suspended", &format!("s-{i}"), "{}".into()).await });
    }
    while let Some(r) = starts.join_next().await {
        r??;
    }
    while suspended.load(std::sync::atomic::Ordering::SeqCst) < args.executions() {
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
        ("suspended executions", format!("{}", args.executions())),
        ("time to start and suspend all", format!("{wall:.2} s")),
        ("executions in engine memory", format!("{}", stats.live_functions)),
        ("tokio tasks alive before / after", format!("{tasks_before} / {tasks_after}")),
        ("RSS before / after / after malloc_trim", format!("{} / {} / {}", mib(rss_before), mib(rss_after), mib(rss_trimmed))),
        ("durable timers pending (counted in the store)", format!("{timers}")),
    ];
    println!("{} durable function executions suspended on a one-hour backoff", args.executions());
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
pub(crate) fn current_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident set size of this process (VmHWM), Linux only.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
