//! W2: latency. One execution at a time, from the start call to its result: a
//! pipeline of 3 noop actions in sequence, then a durable function of 3 steps,
//! none failing. Each is timed in-process with a monotonic clock after 20
//! untimed warm-up executions. Beside them, the floor: one durable commit of a
//! one-row update measured in raw SQLite on the same disk, times the commits an
//! execution took (counted by the store); a probe commit is timed after each
//! timed execution, so the two are measured in the same moments.

use crate::OutputFormat;
use crate::bench::{BenchArgs, median, open_engine, put_pipeline, quantile};
use crate::bench_ceiling::CommitProbe;
use crate::bench_w1::store_kind;
use redrive_core::machine::ExecutionStatus;
use redrive_engine::EngineHandle;
use redrive_store::{AnyStore, Store, StoreLocation};
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;

/// Untimed executions before the timed ones.
const WARM_UP: usize = 20;
const STEPS: usize = 3;

/// One shape's latencies in a round (ms).
#[derive(Serialize, Clone, Copy)]
pub(crate) struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Durable commits per execution, counted by the store.
    pub commits_per_execution: f64,
    /// `commits_per_execution × commit_p50_ms`: what waiting for the commits
    /// alone costs (SQLite stores only).
    pub floor_ms: Option<f64>,
}

/// One round. Field names are part of `--output json` (docs/benchmarks.md).
#[derive(Serialize)]
pub(crate) struct W2Round {
    pub pipeline: Latency,
    pub function: Latency,
    /// One durable commit of a one-row update in raw SQLite (SQLite stores only).
    pub commit_p50_ms: Option<f64>,
}

#[derive(Serialize)]
pub(crate) struct W2Medians {
    pub pipeline_p50_ms: f64,
    pub pipeline_p99_ms: f64,
    pub function_p50_ms: f64,
    pub function_p99_ms: f64,
    pub commit_p50_ms: Option<f64>,
}

/// `redrive bench --workload w2 --output json`.
#[derive(Serialize)]
pub(crate) struct W2Report {
    pub workload: &'static str,
    pub executions: usize,
    pub store: &'static str,
    pub durability: &'static str,
    pub rounds: Vec<W2Round>,
    pub median: W2Medians,
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let mut rounds = Vec::with_capacity(args.runs);
    for round in 1..=args.runs {
        rounds.push(one_round(args, round).await?);
    }
    let of = |f: &dyn Fn(&W2Round) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
    let commit: Option<Vec<f64>> = rounds.iter().map(|r| r.commit_p50_ms).collect();
    let median = W2Medians {
        pipeline_p50_ms: of(&|r| r.pipeline.p50_ms),
        pipeline_p99_ms: of(&|r| r.pipeline.p99_ms),
        function_p50_ms: of(&|r| r.function.p50_ms),
        function_p99_ms: of(&|r| r.function.p99_ms),
        commit_p50_ms: commit.map(|c| median(&c)),
    };
    let report = W2Report {
        workload: "w2",
        executions: args.executions(),
        store: store_kind(args.db.as_ref()),
        durability: args.durability.as_str(),
        rounds,
        median,
    };
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => print_text(&report),
    }
    Ok(())
}

fn pipeline_definition() -> String {
    let mut s = String::from("name: bench-w2\nexecutionMode: PARALLEL\nstages:\n  - name: Work\n    actions:\n");
    for i in 1..=STEPS {
        s.push_str(&format!("      - name: A{i}\n        runOrder: {i}\n        noop: {{}}\n"));
    }
    s
}

async fn one_round(args: &BenchArgs, round: usize) -> anyhow::Result<W2Round> {
    let tmp = tempfile::tempdir()?;
    let (store, handle, join) = open_engine(args, tmp.path()).await?;
    // The floor is a raw SQLite commit: measured only beside a SQLite store.
    let mut probe = match &args.db {
        None | Some(StoreLocation::Sqlite(_)) => Some(CommitProbe::open(tmp.path(), args.durability)?),
        Some(_) => None,
    };
    let pipeline = put_pipeline(&store, "bench-w2", &pipeline_definition()).await?;
    let pipeline_run = sequential(args.executions(), &store, probe.as_mut(), |_| {
        let (handle, pipeline) = (handle.clone(), pipeline.clone());
        async move {
            let id = handle.start(pipeline, "{}".into()).await?;
            Ok(handle.wait(&id).await?.status)
        }
    })
    .await?;
    register_function(&handle).await?;
    let function_run = sequential(args.executions(), &store, probe.as_mut(), |i| {
        let handle = handle.clone();
        async move {
            let (id, _) = handle.start_function("bench-w2", &format!("w2-r{round}-{i}"), "{}".into()).await?;
            Ok(handle.wait(&id).await?.status)
        }
    })
    .await?;
    handle.shutdown().await;
    join.await??;
    let commit_us: Vec<u64> = pipeline_run.commit_us.iter().chain(&function_run.commit_us).copied().collect();
    let commit_p50_ms = (!commit_us.is_empty()).then(|| quantile(&commit_us, 0.5) as f64 / 1000.0);
    Ok(W2Round { pipeline: pipeline_run.latency(commit_p50_ms), function: function_run.latency(commit_p50_ms), commit_p50_ms })
}

/// What a sequential run measured.
struct Sequential {
    latencies_us: Vec<u64>,
    commits: u64,
    /// The probe's commit latencies, one after each timed execution.
    commit_us: Vec<u64>,
}

impl Sequential {
    fn latency(&self, commit_p50_ms: Option<f64>) -> Latency {
        let commits_per_execution = self.commits as f64 / self.latencies_us.len() as f64;
        Latency {
            p50_ms: quantile(&self.latencies_us, 0.50) as f64 / 1000.0,
            p99_ms: quantile(&self.latencies_us, 0.99) as f64 / 1000.0,
            commits_per_execution,
            floor_ms: commit_p50_ms.map(|c| c * commits_per_execution),
        }
    }
}

/// Runs `WARM_UP` untimed and then `n` timed executions, one at a time, with a
/// probe commit (not timed into the execution) after each.
async fn sequential<F, Fut>(n: usize, store: &AnyStore, mut probe: Option<&mut CommitProbe>, run_one: F) -> anyhow::Result<Sequential>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<ExecutionStatus>>,
{
    for i in 0..WARM_UP {
        anyhow::ensure!(run_one(n + i).await? == ExecutionStatus::Succeeded, "a warm-up execution did not succeed");
    }
    let (mut latencies_us, mut commit_us, mut commits) = (Vec::with_capacity(n), Vec::with_capacity(n), 0);
    for i in 0..n {
        let before = store.stats().commits;
        let started = Instant::now();
        let status = run_one(i).await?;
        latencies_us.push(started.elapsed().as_micros() as u64);
        commits += store.stats().commits - before;
        anyhow::ensure!(status == ExecutionStatus::Succeeded, "execution {i} ended {}", status.as_str());
        if let Some(probe) = probe.as_deref_mut() {
            commit_us.push(tokio::task::block_in_place(|| probe.sample())?);
        }
    }
    Ok(Sequential { latencies_us, commits, commit_us })
}

async fn register_function(handle: &EngineHandle) -> anyhow::Result<()> {
    use redrive_engine::function::{FnContext, FnFuture, StepRetry};
    let function = move |ctx: FnContext, _input: String| -> FnFuture {
        Box::pin(async move {
            for i in 1..=STEPS {
                ctx.step(&format!("S{i}"), &StepRetry::default(), || async move { Ok(serde_json::json!(i)) }).await?;
            }
            Ok(serde_json::Value::Null)
        })
    };
    handle.register_function("bench-w2", Arc::new(function)).await?;
    Ok(())
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"))
}

fn print_text(r: &W2Report) {
    println!(
        "W2: {} executions one at a time, start to result, after {WARM_UP} warm-up; a {STEPS}-action noop pipeline and a {STEPS}-step function; store {}, durability {}",
        r.executions, r.store, r.durability
    );
    println!(
        "| round | pipeline p50 / p99 (ms) | commits/execution | floor (ms) | function p50 / p99 (ms) | commits/execution | floor (ms) | one commit p50 (ms) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, x) in r.rounds.iter().enumerate() {
        println!(
            "| {} | {:.2} / {:.2} | {:.1} | {} | {:.2} / {:.2} | {:.1} | {} | {} |",
            i + 1,
            x.pipeline.p50_ms,
            x.pipeline.p99_ms,
            x.pipeline.commits_per_execution,
            ms(x.pipeline.floor_ms),
            x.function.p50_ms,
            x.function.p99_ms,
            x.function.commits_per_execution,
            ms(x.function.floor_ms),
            ms(x.commit_p50_ms)
        );
    }
    let m = &r.median;
    println!(
        "| **median** | **{:.2} / {:.2}** | | | **{:.2} / {:.2}** | | | {} |",
        m.pipeline_p50_ms,
        m.pipeline_p99_ms,
        m.function_p50_ms,
        m.function_p99_ms,
        ms(m.commit_p50_ms)
    );
    println!(
        "\nfloor: commits per execution × one durable commit's p50 (a one-row UPDATE in raw SQLite on the same disk, timed after each execution)"
    );
}
