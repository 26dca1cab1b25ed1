//! Bulk stage retry's plan and run over many executions (SQLite): the
//! NotLatestPipelineExecution rule is answered in one newest-first pass, and
//! the `#[ignore]`d bench times a dry run over 10,000 failed executions.

mod common;

use common::{manual_clock, until};
use redrive_core::definition::source::parse_document;
use redrive_core::machine::ExecutionState;
use redrive_engine::service::{BulkPlan, BulkRequest, Service};
use redrive_engine::{Clock, Driver, DriverConfig, LoadedPipeline, ManualClock};
use redrive_store::{ExecutionRecord, SqliteOptions, SqliteStore, Store, Target, Transition};
use std::sync::Arc;

/// A noop that fails the first attempt of every series; no retries.
/// `timeout_s` tells versions apart.
fn failing(timeout_s: u32) -> String {
    format!(
        "name: p\nexecutionMode: PARALLEL\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {{failFirst: 1}}\n        timeoutSeconds: {timeout_s}\n        retryPolicies: [{{exceptionType: Action.FAILED, maxAttempts: 0}}]\n"
    )
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    service: Arc<Service<SqliteStore>>,
    /// The first execution, failed by the engine: the template of the copies.
    template: ExecutionRecord,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap());
    let clock = manual_clock();
    let p = put(&store, &clock, 60).await;
    let (handle, _join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let id = handle.start(p, "{}".into()).await.unwrap();
    handle.wait(&id).await.unwrap();
    let template = store.get_execution(&id).await.unwrap().unwrap();
    assert_eq!(template.status, "Failed");
    let service = Arc::new(Service::new(store.clone(), handle, clock.clone()));
    Fixture { _dir: dir, store, clock, service, template }
}

async fn put(store: &SqliteStore, clock: &ManualClock, timeout_s: u32) -> Arc<LoadedPipeline> {
    let json = parse_document(&failing(timeout_s)).unwrap().to_json().to_string();
    Arc::new(LoadedPipeline::from_record(store.put_pipeline("p", &json, None, clock.now()).await.unwrap()).unwrap())
}

impl Fixture {
    /// `n` copies of the failed template (the given pipeline version), each
    /// started 1 ms after the previous one, written through the store; their
    /// ids, oldest first.
    async fn copies(&self, n: usize, pipeline_version: u32) -> Vec<String> {
        let mut ids = Vec::with_capacity(n);
        let mut batch = Vec::new();
        for _ in 0..n {
            self.clock.advance(1);
            let id = uuid::Uuid::new_v4().to_string();
            let mut state: ExecutionState = serde_json::from_str(&self.template.state_json).unwrap();
            state.execution_id = id.clone();
            let target = Target::pipeline("p", pipeline_version);
            batch.push(Transition {
                execution_id: id.clone(),
                expected_version: None,
                target,
                status: self.template.status.clone(),
                input_json: self.template.input_json.clone(),
                state_json: serde_json::to_string(&state).unwrap(),
                at: self.clock.now(),
                ledger: Vec::new(),
                set_timers: Vec::new(),
                clear_timers: Vec::new(),
                client_token: None,
                dlq: Vec::new(),
            });
            ids.push(id);
            if batch.len() == 500 {
                self.store.commit(std::mem::take(&mut batch).into()).await.unwrap();
            }
        }
        if !batch.is_empty() {
            self.store.commit(batch.into()).await.unwrap();
        }
        ids
    }

    async fn plan(&self) -> BulkPlan {
        self.service.plan_bulk_retry(&request(None)).await.unwrap()
    }
}

fn request(rate_per_s: Option<f64>) -> BulkRequest {
    BulkRequest {
        pipeline: "p".into(),
        stage: "S".into(),
        exception_type: None,
        since_ms: None,
        mode: redrive_core::definition::RetryMode::FailedActions,
        rate_per_s,
        max: None,
    }
}

/// Newest first, as a plan lists them.
fn newest_first(ids: &[String]) -> Vec<String> {
    ids.iter().rev().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_execution_makes_every_older_one_out_of_date() {
    let f = fixture().await;
    let old = f.copies(5, 1).await;
    put(&f.store, &f.clock, 61).await;
    let new = f.copies(5, 2).await;
    let plan = f.plan().await;
    let all: Vec<String> = newest_first(&new).into_iter().chain(newest_first(&old)).chain([f.template.id.clone()]).collect();
    assert_eq!((plan.matched, plan.would_retry, plan.would_skip), (11, 5, 6), "{plan:#?}");
    assert_eq!(plan.items.iter().map(|i| i.execution_id.clone()).collect::<Vec<_>>(), all);
    for item in &plan.items[..5] {
        assert_eq!((item.would.as_str(), item.detail.as_str()), ("retry", "re-runs A"));
    }
    // The newest version-1 execution is skipped (the pipeline changed); it is
    // not retried, so it is the stage's latest failure for all older ones.
    assert!(plan.items[5].detail.contains("the pipeline was updated to version 2"), "{:?}", plan.items[5]);
    let newest_old = &old[4];
    for item in &plan.items[6..] {
        assert_eq!(item.would, "skip");
        assert!(item.detail.contains(&format!("failed again in a later execution ({newest_old})")), "{item:?}");
    }
    // Alone (no operation retried anything), each but the newest is out of
    // date: the newest is failed.
    assert!(f.service.retry_check("p", "S", &all[0]).await.is_ok());
    for id in &all[1..] {
        let single = f.service.retry_check("p", "S", id).await.err().unwrap().to_string();
        assert!(single.contains(&format!("failed again in a later execution ({})", all[0])), "{single}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_sees_a_failure_in_an_execution_started_after_its_plan() {
    let f = fixture().await;
    let ids = f.copies(3, 1).await;
    // One retry a second (the virtual clock stands still: the pace waits in real time).
    let (op, plan) = f.service.start_bulk_retry(request(Some(1.0))).await.unwrap();
    assert_eq!(plan.would_retry, 4, "{plan:#?}");
    let results = || async { f.store.list_bulk_retry_results(&op.id, 0, 100).await.unwrap() };
    until("the newest execution retried", || async { !results().await.is_empty() }).await;
    let later = f.copies(1, 1).await; // failed, newer than all the operation saw
    until("the operation finished", || async { results().await.len() == 4 }).await;
    let results = results().await;
    assert_eq!(results[0].execution_id, ids[2]);
    assert_eq!(results[0].outcome, "retried");
    for r in &results[1..] {
        assert_eq!(r.outcome, "skipped", "{r:?}");
        assert!(r.reason.as_deref().unwrap().contains(&format!("failed again in a later execution ({})", later[0])), "{r:?}");
    }
}

/// `cargo test -p redrive-engine --release --test bulk_plan -- --ignored --nocapture`;
/// `REDRIVE_BULK_BENCH_N` executions (default 10,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "bench"]
async fn bench_dry_run_plan() {
    let n: usize = std::env::var("REDRIVE_BULK_BENCH_N").ok().map(|s| s.parse().unwrap()).unwrap_or(10_000);
    let f = fixture().await;
    f.copies(n - 1, 1).await;
    let t = std::time::Instant::now();
    let plan = f.plan().await;
    let elapsed = t.elapsed();
    assert_eq!((plan.matched, plan.would_retry), (n as u64, n as u64));
    println!("bulk dry-run plan of {n} failed executions: {} ms", elapsed.as_millis());
}

/// Retention: a finished operation goes with its results once it finished
/// longer ago than `redriveRuns`; the dry run counts it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_a_finished_operation_with_its_results() {
    use redrive_core::retention::{Keep, Retention};
    use redrive_engine::retention::{SweepConfig, sweep};
    let f = fixture().await;
    let (op, _) = f.service.start_bulk_retry(request(Some(1000.0))).await.unwrap();
    until("the operation finished", || async { f.store.get_bulk_retry(&op.id).await.unwrap().unwrap().status == "SUCCEEDED" }).await;
    assert_eq!(f.store.list_bulk_retry_results(&op.id, 0, 0).await.unwrap().len(), 1);
    let keep = |redrive_runs| SweepConfig {
        retention: Retention { executions: Keep::Forever, redrive_runs, ..Retention::default() },
        ..SweepConfig::default()
    };
    let later = f.clock.now().plus_ms(61_000);
    let run = |config: SweepConfig, dry_run: bool| {
        let store = f.store.clone();
        async move {
            let prune = |step| {
                let store = store.clone();
                async move { Ok(store.prune(step).await?) }
            };
            sweep(&*store, &config, later, dry_run, prune, || async {}).await.unwrap().counts.bulk_retries
        }
    };
    assert_eq!(run(keep(Keep::For { ms: 120_000 }), false).await, 0, "kept 2 minutes: not yet");
    assert_eq!(run(keep(Keep::For { ms: 60_000 }), true).await, 1, "counted");
    assert!(f.store.get_bulk_retry(&op.id).await.unwrap().is_some(), "a dry run deletes nothing");
    assert_eq!(run(keep(Keep::For { ms: 60_000 }), false).await, 1);
    assert!(f.store.get_bulk_retry(&op.id).await.unwrap().is_none());
    assert!(f.store.list_bulk_retry_results(&op.id, 0, 0).await.unwrap().is_empty(), "its results went with it");
}
