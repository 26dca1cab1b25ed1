//! The driver against a real SQLite store: durable timers, restarts, store faults,
//! memory held by waiting executions.

use redrive_core::definition::source::parse_document;
use redrive_core::machine::ExecutionStatus;
use redrive_core::time::Timestamp;
use redrive_engine::{Clock, Driver, DriverConfig, EngineError, LoadedPipeline, SystemClock};
use redrive_store::{ExecutionFilter, SqliteOptions, SqliteStore, Store};
use std::sync::Arc;
use std::time::Duration;

async fn pipeline<S: Store>(store: &S, yaml: &str) -> Arc<LoadedPipeline> {
    let json = parse_document(yaml).unwrap().to_json().to_string();
    let name = parse_document(yaml).unwrap().get("name").map(|n| n.to_json().as_str().unwrap().to_string()).unwrap();
    let rec = store.put_pipeline(&name, &json, None, SystemClock.now()).await.unwrap();
    Arc::new(LoadedPipeline::from_record(rec).unwrap())
}

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap()
}

const ONE_RETRY_AFTER_1500MS: &str = "name: timed\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {failFirst: 1, failWith: Job.CAPACITY_ERROR}\n        retryPolicies: [{exceptionType: Job.CAPACITY_ERROR, intervalSeconds: 1.5}]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_survives_restart_and_never_fires_early() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let p = pipeline(store.as_ref(), ONE_RETRY_AFTER_1500MS).await;
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let id = handle.start(p, "{}".into()).await.unwrap();
    // Wait until the failure and its timer are durable, then stop the engine.
    let timer = loop {
        let timers = store.execution_timers(&id).await.unwrap();
        if let Some(t) = timers.first() {
            break t.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    handle.shutdown().await;
    join.await.unwrap().unwrap();
    drop(handle);
    drop(store);

    // A new engine process: the timer is read back from the store and fires when due.
    let store = Arc::new(open(&dir));
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    match handle.resume(&id).await {
        Ok(()) | Err(EngineError::AlreadyFinished { .. }) => {} // on a slow machine the timer may be due already
        Err(other) => panic!("resume failed: {other}"),
    }
    let outcome = handle.wait(&id).await.unwrap();
    assert_eq!(outcome.status, ExecutionStatus::Succeeded);
    let ledger = store.ledger(&id).await.unwrap();
    assert_eq!(ledger.len(), 2);
    assert!(ledger[1].started_at >= timer.due_at, "retry started at {} before its due time {}", ledger[1].started_at, timer.due_at);
    assert!(ledger[1].started_at >= ledger[0].finished_at.plus_ms(1500));
    assert!(store.execution_timers(&id).await.unwrap().is_empty(), "a fired timer is removed");
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_timers_fire_at_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let p = pipeline(store.as_ref(), ONE_RETRY_AFTER_1500MS).await;
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(handle.start(p.clone(), "{}".into()).await.unwrap());
    }
    while store.next_timer_due().await.unwrap().is_none() || futures_all_timed(&*store, &ids).await < ids.len() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.shutdown().await;
    join.await.unwrap().unwrap();
    drop(handle);
    drop(store);
    tokio::time::sleep(Duration::from_millis(1700)).await; // every timer is now overdue

    let store = Arc::new(open(&dir));
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let unfinished = store.list_executions(ExecutionFilter { unfinished_only: true, ..Default::default() }).await.unwrap();
    assert_eq!(unfinished.len(), 20);
    let resumed_at = SystemClock.now();
    for e in &unfinished {
        // Overdue timers fire as soon as the engine runs, so an execution may
        // already have finished by the time it is resumed.
        match handle.resume(&e.id).await {
            Ok(()) | Err(EngineError::AlreadyFinished { .. }) => {}
            Err(other) => panic!("resume failed: {other}"),
        }
    }
    for id in &ids {
        assert_eq!(handle.wait(id).await.unwrap().status, ExecutionStatus::Succeeded);
        let ledger = store.ledger(id).await.unwrap();
        let late_by = ledger[1].started_at.ms_since(resumed_at);
        assert!(late_by < 1000, "an overdue timer fired {late_by} ms after restart");
    }
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

async fn futures_all_timed<S: Store>(store: &S, ids: &[String]) -> usize {
    let mut n = 0;
    for id in ids {
        n += usize::from(!store.execution_timers(id).await.unwrap().is_empty());
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_waiting_on_distant_timers_are_not_held_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let p = pipeline(
        store.as_ref(),
        "name: w\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {failFirst: 1, failWith: Job.CAPACITY_ERROR}\n        retryPolicies: [{exceptionType: Job.CAPACITY_ERROR, intervalSeconds: 3600}]\n",
    )
    .await;
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (h, p) = (handle.clone(), p.clone());
        tasks.spawn(async move { h.start(p, "{}".into()).await.unwrap() });
    }
    while tasks.join_next().await.is_some() {}
    let stats = loop {
        let s = handle.stats().await.unwrap();
        if s.live_executions == 0 && s.submitted_batches == 0 {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let due = stats.next_timer_due.expect("timers are known");
    assert!(due > SystemClock.now().plus_ms(3_500_000), "next timer about an hour out: {due}");
    assert_eq!(store.due_timers(Timestamp::from_unix_ms(i64::MAX), 2000).await.unwrap().len(), 1000, "every pending retry is a row");
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stage_retries_start_exactly_one_series() {
    use redrive_core::definition::RetryMode;
    use redrive_core::machine::{Rejection, Trigger};
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("fixed");
    let store = Arc::new(open(&dir));
    let yaml = format!(
        "name: r\nstages:\n  - name: S\n    actions:\n      - name: A\n        command: [\"sh\", \"-c\", \"echo x >> {runs}; test -e {flag}\"]\n",
        runs = dir.path().join("runs").display(),
        flag = flag.display()
    );
    let p = pipeline(store.as_ref(), &yaml).await;
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let id = handle.start(p, "{}".into()).await.unwrap();
    assert_eq!(handle.wait(&id).await.unwrap().status, ExecutionStatus::Failed);
    std::fs::write(&flag, "").unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (h, id) = (handle.clone(), id.clone());
        tasks.spawn(async move { h.retry_stage(&id, "S", RetryMode::FailedActions, Trigger::Manual).await });
    }
    let (mut ok, mut conflicts) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            Ok(()) => ok += 1,
            Err(EngineError::Rejected(Rejection::RetryInProgress)) => conflicts += 1,
            // The retry may already have succeeded: nothing left to retry.
            Err(EngineError::Rejected(Rejection::NotRetryable(_))) => conflicts += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 99));
    assert_eq!(handle.wait(&id).await.unwrap().status, ExecutionStatus::Succeeded);
    let ledger = store.ledger(&id).await.unwrap();
    assert_eq!(
        ledger.iter().map(|e| (e.series, e.trigger.as_str(), e.outcome.as_str())).collect::<Vec<_>>(),
        vec![(1, "initial", "FAILED"), (2, "manual", "SUCCEEDED")]
    );
    assert_eq!(std::fs::read_to_string(dir.path().join("runs")).unwrap().lines().count(), 2);

    // Unknown stage, and a stage with nothing failed.
    assert!(matches!(
        handle.retry_stage(&id, "Nope", RetryMode::FailedActions, Trigger::Manual).await,
        Err(EngineError::StageNotFound { .. })
    ));
    assert!(matches!(
        handle.retry_stage(&id, "S", RetryMode::AllActions, Trigger::Manual).await,
        Err(EngineError::Rejected(Rejection::NotRetryable(_)))
    ));
    assert_eq!(handle.stats().await.unwrap().live_executions, 0, "refused requests leave nothing in memory");
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_cancels_a_pending_retry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let p = pipeline(
        store.as_ref(),
        "name: s\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {failFirst: 5, failWith: Job.CAPACITY_ERROR}\n        retryPolicies: [{exceptionType: Job.CAPACITY_ERROR, intervalSeconds: 600}]\n",
    )
    .await;
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let id = handle.start(p, "{}".into()).await.unwrap();
    while store.execution_timers(&id).await.unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle.stop(&id, false, "test").await.unwrap();
    assert_eq!(handle.wait(&id).await.unwrap().status, ExecutionStatus::Stopped);
    assert!(store.execution_timers(&id).await.unwrap().is_empty(), "the pending retry's timer is gone");
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_executions_run_one_at_a_time_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let p = pipeline(
        store.as_ref(),
        "name: q\nexecutionMode: QUEUED\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {sleepMs: 300}\n",
    )
    .await;
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(handle.start(p.clone(), "{}".into()).await.unwrap());
    }
    let mut spans = Vec::new();
    for id in &ids {
        assert_eq!(handle.wait(id).await.unwrap().status, ExecutionStatus::Succeeded);
        let l = store.ledger(id).await.unwrap();
        spans.push((l[0].started_at, l[0].finished_at));
    }
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "a queued execution started before the previous one finished: {spans:?}");
    }
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_execution_supersedes_an_older_one_at_its_next_stage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let p = pipeline(
        store.as_ref(),
        "name: sup\nstages:\n  - name: One\n    actions:\n      - name: A\n        noop: {sleepMs: 400}\n  - name: Two\n    actions:\n      - name: B\n        noop: {}\n",
    )
    .await;
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let older = handle.start(p.clone(), "{}".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let newer = handle.start(p.clone(), "{}".into()).await.unwrap();
    assert_eq!(handle.wait(&older).await.unwrap().status, ExecutionStatus::Superseded);
    assert_eq!(handle.wait(&newer).await.unwrap().status, ExecutionStatus::Succeeded);
    let older_ledger = store.ledger(&older).await.unwrap();
    assert_eq!(older_ledger.len(), 1, "the older execution finished stage One and went no further");
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandon_kills_the_running_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let done = dir.path().join("done");
    let store = Arc::new(open(&dir));
    let yaml = format!(
        "name: ab\nstages:\n  - name: S\n    actions:\n      - name: A\n        command: [\"sh\", \"-c\", \"sleep 2; touch {}\"]\n",
        done.display()
    );
    let p = pipeline(store.as_ref(), &yaml).await;
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let id = handle.start(p, "{}".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.stop(&id, true, "abandon").await.unwrap();
    assert_eq!(handle.wait(&id).await.unwrap().status, ExecutionStatus::Stopped);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!done.exists(), "the abandoned command kept running");
    // The drain has nothing left to wait for.
    assert_eq!(handle.drain(Duration::from_secs(5)).await.unwrap(), 0);
    join.await.unwrap().unwrap();
}

/// Attempt slots are shared fairly: a pipeline of long attempts holds at most
/// its share, and another pipeline's attempt still starts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_of_long_attempts_does_not_starve_another() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir));
    let hog_yaml = format!(
        "name: hog\nstages:\n  - name: S\n    actions:\n{}",
        (1..=6).map(|i| format!("      - name: A{i}\n        noop: {{sleepMs: 3000}}\n")).collect::<String>()
    );
    let hog = pipeline(store.as_ref(), &hog_yaml).await;
    let other =
        pipeline(store.as_ref(), "name: other\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {sleepMs: 1}\n").await;
    let config = DriverConfig { max_inflight_attempts: 4, max_inflight_attempts_per_pipeline: 3, ..DriverConfig::default() };
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), config);
    let long = handle.start(hog, "{}".into()).await.unwrap();
    let started = std::time::Instant::now();
    let quick = handle.start(other, "{}".into()).await.unwrap();
    assert_eq!(handle.wait(&quick).await.unwrap().status, ExecutionStatus::Succeeded);
    assert!(started.elapsed() < Duration::from_millis(2500), "the other pipeline waited for the hog: {:?}", started.elapsed());
    assert_eq!(handle.wait(&long).await.unwrap().status, ExecutionStatus::Succeeded);
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}
