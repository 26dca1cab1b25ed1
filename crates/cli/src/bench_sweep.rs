//! `redrive bench --with-sweeper`: W1 with the retention sweeper deleting
//! concurrently, side by side with W1 alone (issue 16's "within 10%").
//!
//! Each of 3 rounds runs W1 twice on fresh SQLite files: once alone; once after
//! a first, untimed W1 whose executions are then past a 1 s retention, with a
//! sweeper deleting them (and the timed run's own as they age) while the timed
//! W1 runs. Executions and ledger rows deleted during the timed run are counted
//! from the prune steps that finished before it ended.

use crate::bench::{ACTIONS, DurabilityArg, median, run_all, w1_definition};
use redrive_core::definition::source::parse_document;
use redrive_core::retention::{Keep, Retention};
use redrive_engine::retention::{STEP_PAUSE_MS, SweepConfig, sweep};
use redrive_engine::{Clock, Driver, DriverConfig, EngineHandle, LoadedPipeline, SystemClock};
use redrive_store::{AnyStore, Durability, PruneCounts, SqliteOptions, Store, StoreLocation, StoreOptions};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;

const ROUNDS: usize = 3;

/// One timed W1: attempts per second, and what the sweeper deleted meanwhile.
struct Round {
    attempts_per_s: f64,
    deleted: PruneCounts,
}

pub async fn compare(executions: usize, durability: DurabilityArg) -> anyhow::Result<()> {
    let durability = durability.store();
    let (mut alone, mut swept) = (Vec::new(), Vec::new());
    println!("W1 ({executions} executions × {ACTIONS} actions failing once), alone and with the retention sweeper deleting concurrently");
    println!("| round | alone attempts/s | with sweeper attempts/s | executions deleted during the run | ledger rows deleted |");
    println!("|---|---|---|---|---|");
    for round in 1..=ROUNDS {
        let a = w1_round(executions, durability, false).await?;
        let s = w1_round(executions, durability, true).await?;
        println!("| {round} | {:.0} | {:.0} | {} | {} |", a.attempts_per_s, s.attempts_per_s, s.deleted.executions, s.deleted.ledger_rows);
        anyhow::ensure!(s.deleted.executions > 0, "round {round}: the sweeper deleted nothing during the run; nothing was measured");
        alone.push(a.attempts_per_s);
        swept.push(s.attempts_per_s);
    }
    let (a, s) = (median(&alone), median(&swept));
    println!("\nmedian of {ROUNDS}: alone {a:.0} attempts/s, with the sweeper {s:.0} attempts/s: ratio {:.2}", s / a);
    Ok(())
}

async fn w1_round(executions: usize, durability: Durability, with_sweeper: bool) -> anyhow::Result<Round> {
    let tmp = tempfile::tempdir()?;
    let db = StoreLocation::Sqlite(tmp.path().join("bench.db"));
    let options = StoreOptions { sqlite: SqliteOptions { durability, ..Default::default() }, ..Default::default() };
    let store = Arc::new(AnyStore::open(&db, options).await?);
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let json = parse_document(&w1_definition()).map_err(|e| anyhow::anyhow!("{e}"))?.to_json().to_string();
    let record = store.put_pipeline("bench-w1", &json, None, SystemClock.now()).await?;
    let pipeline = Arc::new(LoadedPipeline::from_record(record)?);
    if with_sweeper {
        w1(&handle, &pipeline, executions).await?; // the executions the sweeper deletes
        tokio::time::sleep(Duration::from_millis(1_100)).await; // past the 1 s retention
    }
    let stop = Arc::new(AtomicBool::new(false));
    let deleted = Arc::new(Mutex::new(PruneCounts::default()));
    let sweeper = with_sweeper.then(|| tokio::spawn(sweep_until(store.clone(), handle.clone(), stop.clone(), deleted.clone())));
    let before = store.stats();
    let wall = w1(&handle, &pipeline, executions).await?;
    let attempts = store.stats().ledger_rows - before.ledger_rows;
    let deleted_during = *deleted.lock().await;
    stop.store(true, Ordering::SeqCst);
    if let Some(sweeper) = sweeper {
        sweeper.await??;
    }
    handle.shutdown().await;
    join.await??;
    Ok(Round { attempts_per_s: attempts as f64 / wall, deleted: deleted_during })
}

/// Runs W1's executions to the end; the wall time in seconds.
async fn w1(handle: &EngineHandle, pipeline: &Arc<LoadedPipeline>, executions: usize) -> anyhow::Result<f64> {
    let (_, failed, wall) = run_all(executions, |_| {
        let (handle, pipeline) = (handle.clone(), pipeline.clone());
        async move {
            let id = handle.start(pipeline, "{}".into()).await?;
            handle.wait(&id).await
        }
    })
    .await?;
    anyhow::ensure!(failed == 0, "{failed} executions did not succeed");
    Ok(wall)
}

/// Sweeps (1 s retention, steps of the default size, the server's pause
/// between steps) back to back until `stop`, adding up what each step deleted.
async fn sweep_until(
    store: Arc<AnyStore>,
    handle: EngineHandle,
    stop: Arc<AtomicBool>,
    deleted: Arc<Mutex<PruneCounts>>,
) -> anyhow::Result<()> {
    let keep = Keep::For { ms: 1_000 };
    let config = SweepConfig {
        retention: Retention { executions: keep, dlq_entries: keep, redrive_runs: keep, audit_records: keep },
        ..SweepConfig::default()
    };
    while !stop.load(Ordering::SeqCst) {
        let prune = |step| {
            let (handle, deleted) = (handle.clone(), deleted.clone());
            async move {
                let counts = handle.prune(step).await?;
                deleted.lock().await.add(counts);
                Ok(counts)
            }
        };
        let pause = || tokio::time::sleep(Duration::from_millis(STEP_PAUSE_MS));
        sweep(&*store, &config, SystemClock.now(), false, prune, pause).await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
