//! The driver against a real SQLite store: durable timers, restarts, store faults,
//! memory held by waiting executions. Time is virtual ([`ManualClock`]) wherever
//! it is the logic: retry delays, timers overdue after a restart, sleeping noops;
//! real time only bounds the polls that wait for the engine to act.

mod common;

use common::{advance_until, manual_clock, stays_false, until, within};
use redrive_core::definition::source::parse_document;
use redrive_core::machine::ExecutionStatus;
use redrive_core::time::Timestamp;
use redrive_engine::{Clock, Driver, DriverConfig, EngineError, LoadedPipeline, Notification, SystemClock};
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

const ONE_RETRY_AFTER_1500MS: &str = "name: timed\nexecutionMode: PARALLEL\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {failFirst: 1, failWith: Job.CAPACITY_ERROR}\n        retryPolicies: [{exceptionType: Job.CAPACITY_ERROR, intervalSeconds: 1.5}]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_survives_restart_and_never_fires_early() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let store = Arc::new(open(&dir));
    let p = pipeline(store.as_ref(), ONE_RETRY_AFTER_1500MS).await;
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let id = handle.start(p, "{}".into()).await.unwrap();
    // Wait until the failure and its timer are durable, then stop the engine.
    until("the retry timer to be durable", || {
        let (store, id) = (store.clone(), id.clone());
        async move { !store.execution_timers(&id).await.unwrap().is_empty() }
    })
    .await;
    let timer = store.execution_timers(&id).await.unwrap()[0].clone();
    assert_eq!(timer.due_at, clock.now().plus_ms(1500), "due 1.5 s after the failure (the clock has not moved)");
    handle.shutdown().await;
    join.await.unwrap().unwrap();
    drop(handle);
    drop(store);

    // A new engine process: the timer is read back from the store and fires when due.
    let store = Arc::new(open(&dir));
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    handle.resume(&id).await.expect("not due yet: resumed and waiting");
    clock.advance(1499);
    stays_false("the retry started 1 ms before its due time", || {
        let (store, id) = (store.clone(), id.clone());
        async move { store.ledger(&id).await.unwrap().len() > 1 }
    })
    .await;
    clock.advance(1);
    let outcome = within("the retry at its due time", handle.wait(&id)).await.unwrap();
    assert_eq!(outcome.status, ExecutionStatus::Succeeded);
    let ledger = store.ledger(&id).await.unwrap();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[1].started_at, timer.due_at, "the retry starts exactly when due (the clock stood still there)");
    assert_eq!(ledger[1].started_at, ledger[0].finished_at.plus_ms(1500));
    assert!(store.execution_timers(&id).await.unwrap().is_empty(), "a fired timer is removed");
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overdue_timers_fire_at_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let store = Arc::new(open(&dir));
    let p = pipeline(store.as_ref(), ONE_RETRY_AFTER_1500MS).await;
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(handle.start(p.clone(), "{}".into()).await.unwrap());
    }
    until("every retry timer to be durable", || {
        let (store, ids) = (store.clone(), ids.clone());
        async move { futures_all_timed(&*store, &ids).await == ids.len() }
    })
    .await;
    handle.shutdown().await;
    join.await.unwrap().unwrap();
    drop(handle);
    drop(store);
    clock.advance(1700); // while no engine runs: every timer is now overdue

    let store = Arc::new(open(&dir));
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let unfinished = store.list_executions(ExecutionFilter { unfinished_only: true, ..Default::default() }).await.unwrap();
    assert_eq!(unfinished.len(), 20);
    let resumed_at = clock.now();
    for e in &unfinished {
        // Overdue timers fire as soon as the engine runs, so an execution may
        // already have finished by the time it is resumed.
        match handle.resume(&e.id).await {
            Ok(()) | Err(EngineError::AlreadyFinished { .. }) => {}
            Err(other) => panic!("resume failed: {other}"),
        }
    }
    // The clock stands still: an overdue timer that waited for anything but
    // the restart would never fire, and the wait would time out.
    for id in &ids {
        assert_eq!(within("an overdue retry", handle.wait(id)).await.unwrap().status, ExecutionStatus::Succeeded);
        let ledger = store.ledger(id).await.unwrap();
        assert_eq!(ledger[1].started_at, resumed_at, "an overdue timer fires at once after restart");
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
    let clock = manual_clock();
    let store = Arc::new(open(&dir));
    let p = pipeline(
        store.as_ref(),
        "name: w\nexecutionMode: PARALLEL\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {failFirst: 1, failWith: Job.CAPACITY_ERROR}\n        retryPolicies: [{exceptionType: Job.CAPACITY_ERROR, intervalSeconds: 3600}]\n",
    )
    .await;
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (h, p) = (handle.clone(), p.clone());
        tasks.spawn(async move { h.start(p, "{}".into()).await.unwrap() });
    }
    while tasks.join_next().await.is_some() {}
    until("every execution to be evicted", || {
        let handle = handle.clone();
        async move {
            let s = handle.stats().await.unwrap();
            s.live_executions == 0 && s.submitted_batches == 0
        }
    })
    .await;
    let stats = handle.stats().await.unwrap();
    let due = stats.next_timer_due.expect("timers are known");
    assert_eq!(due, clock.now().plus_ms(3_600_000), "next timer an hour out (the clock has not moved)");
    assert_eq!(store.due_timers(Timestamp::from_unix_ms(i64::MAX), 2000).await.unwrap().len(), 1000, "every pending retry is a row");
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// Executions that left memory while they wait are read back *ahead* of their
/// timers — once the timer is within the read-ahead window, at most the
/// configured number — and the timers fire at their due time, not before, each
/// once (the clock stands still at each step: only the look-ahead can move them
/// into memory, only the due time can start a retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executions_are_read_ahead_of_their_timers_which_fire_when_due_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let store = Arc::new(open(&dir));
    let p = pipeline(
        store.as_ref(),
        "name: ahead\nexecutionMode: PARALLEL\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {failFirst: 1, failWith: Job.CAPACITY_ERROR}\n        retryPolicies: [{exceptionType: Job.CAPACITY_ERROR, intervalSeconds: 10}]\n",
    )
    .await;
    let config = DriverConfig { read_ahead_window_ms: 1000, max_read_ahead_executions: 20, ..DriverConfig::default() };
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), config);
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(handle.start(p.clone(), "{}".into()).await.unwrap());
    }
    let due = clock.now().plus_ms(10_000);
    let live = || {
        let handle = handle.clone();
        async move { handle.stats().await.unwrap().live_executions }
    };
    until("every execution to wait evicted", || {
        let (store, live) = (store.clone(), live());
        async move { store.count_timers().await.unwrap() == 30 && live.await == 0 }
    })
    .await;
    let retried = || {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            let mut n = 0;
            for id in &ids {
                n += usize::from(store.ledger(id).await.unwrap().len() > 1);
            }
            n
        }
    };

    clock.advance(10_000 - 1001);
    stays_false("an execution read back more than the window ahead", || async { live().await > 0 }).await;
    clock.advance(1);
    until("the executions to be read ahead", || async { live().await == 20 }).await;
    stays_false("more read ahead than allowed", || async { live().await > 20 }).await;
    clock.advance(999);
    stays_false("a retry 1 ms early", || async { retried().await > 0 }).await;
    assert_eq!(live().await, 20, "the executions read ahead wait in memory");

    clock.advance(1);
    for id in &ids {
        assert_eq!(within("the retry at its due time", handle.wait(id)).await.unwrap().status, ExecutionStatus::Succeeded);
        let ledger = store.ledger(id).await.unwrap();
        assert_eq!(ledger.len(), 2, "{id}: retried exactly once");
        assert_eq!(ledger[1].started_at, due, "{id}: the retry starts when due (the clock stood still there)");
    }
    until("every execution to leave memory", || async { live().await == 0 }).await;
    assert_eq!(store.count_timers().await.unwrap(), 0);
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
    let clock = manual_clock();
    let store = Arc::new(open(&dir));
    let p = pipeline(
        store.as_ref(),
        "name: s\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {failFirst: 5, failWith: Job.CAPACITY_ERROR}\n        retryPolicies: [{exceptionType: Job.CAPACITY_ERROR, intervalSeconds: 600}]\n",
    )
    .await;
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let id = handle.start(p, "{}".into()).await.unwrap();
    until("the retry timer to be durable", || {
        let (store, id) = (store.clone(), id.clone());
        async move { !store.execution_timers(&id).await.unwrap().is_empty() }
    })
    .await;
    handle.stop(&id, false, "test").await.unwrap();
    assert_eq!(within("the stop", handle.wait(&id)).await.unwrap().status, ExecutionStatus::Stopped);
    assert!(store.execution_timers(&id).await.unwrap().is_empty(), "the pending retry's timer is gone");
    clock.advance(600_000);
    assert_eq!(store.ledger(&id).await.unwrap().len(), 1, "no retry ran");
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_executions_run_one_at_a_time_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let store = Arc::new(open(&dir));
    let p = pipeline(
        store.as_ref(),
        "name: q\nexecutionMode: QUEUED\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {sleepMs: 300}\n",
    )
    .await;
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(handle.start(p.clone(), "{}".into()).await.unwrap());
    }
    advance_until(&clock, 50, "three queued executions", || {
        let (store, ids) = (store.clone(), ids.clone());
        async move {
            for id in &ids {
                if store.ledger(id).await.unwrap().is_empty() {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let mut spans = Vec::new();
    for id in &ids {
        assert_eq!(within("a queued execution", handle.wait(id)).await.unwrap().status, ExecutionStatus::Succeeded);
        let l = store.ledger(id).await.unwrap();
        assert!(l[0].finished_at.ms_since(l[0].started_at) >= 300, "a noop slept its 300 ms: {l:?}");
        spans.push((l[0].started_at, l[0].finished_at));
    }
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "a queued execution started before the previous one finished: {spans:?}");
    }
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// SUPERSEDED as CodePipeline defines it: a stage holds one execution at a
/// time; an execution inside a stage is never interrupted; of the executions
/// waiting before a locked stage only the newest stays — the older is superseded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superseded_mode_locks_each_stage_and_supersedes_the_older_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let store = Arc::new(open(&dir));
    let p = pipeline(
        store.as_ref(),
        "name: sup\nstages:\n  - name: One\n    actions:\n      - name: A\n        noop: {sleepMs: 400}\n  - name: Two\n    actions:\n      - name: B\n        noop: {}\n",
    )
    .await;
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let mut events = handle.subscribe();
    let first = handle.start(p.clone(), "{}".into()).await.unwrap();
    // The first execution is in stage One (its attempt started) before the others start.
    within("the first execution's attempt", async {
        loop {
            if let Notification::AttemptStarted { execution_id, stage, .. } = events.recv().await.unwrap()
                && execution_id == first
            {
                assert_eq!(stage, "One");
                break;
            }
        }
    })
    .await;
    // Stage One is locked: the second waits before it, and the third overtakes it there.
    let second = handle.start(p.clone(), "{}".into()).await.unwrap();
    let third = handle.start(p.clone(), "{}".into()).await.unwrap();
    let outcome = within("the second to be superseded", handle.wait(&second)).await.unwrap();
    assert_eq!(outcome.status, ExecutionStatus::Superseded);
    assert!(store.ledger(&second).await.unwrap().is_empty(), "the superseded execution never entered a stage");
    assert!(store.ledger(&third).await.unwrap().is_empty(), "the third waits while the first holds stage One");
    advance_until(&clock, 50, "both running executions", || {
        let (store, ids) = (store.clone(), [first.clone(), third.clone()]);
        async move {
            for id in &ids {
                if store.get_execution(id).await.unwrap().unwrap().status == "InProgress" {
                    return false;
                }
            }
            true
        }
    })
    .await;
    // The first was never interrupted; the third ran every stage after it.
    assert_eq!(handle.wait(&first).await.unwrap().status, ExecutionStatus::Succeeded);
    assert_eq!(handle.wait(&third).await.unwrap().status, ExecutionStatus::Succeeded);
    let (a, c) = (store.ledger(&first).await.unwrap(), store.ledger(&third).await.unwrap());
    assert_eq!((a.len(), c.len()), (2, 2), "both ran stages One and Two");
    assert!(c[0].started_at >= a[0].finished_at, "the third entered stage One only once the first left it");
    let state = store.get_execution(&second).await.unwrap().unwrap();
    assert!(state.state_json.contains(&format!("\"supersededBy\":\"{third}\"")), "{}", state.state_json);
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// Stage locks survive a restart: an execution waiting before a locked stage
/// is let in when the holder (read back from the store) leaves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_locks_are_rebuilt_from_the_store_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let store = Arc::new(open(&dir));
    let p = pipeline(
        store.as_ref(),
        "name: sup2\nstages:\n  - name: One\n    actions:\n      - name: A\n        noop: {failFirst: 1, failWith: Job.CAPACITY_ERROR}\n        retryPolicies: [{exceptionType: Job.CAPACITY_ERROR, intervalSeconds: 60}]\n",
    )
    .await;
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let first = handle.start(p.clone(), "{}".into()).await.unwrap();
    until("the first waits on its retry timer", || {
        let (store, id) = (store.clone(), first.clone());
        async move { !store.execution_timers(&id).await.unwrap().is_empty() }
    })
    .await;
    let second = handle.start(p.clone(), "{}".into()).await.unwrap();
    handle.shutdown().await;
    join.await.unwrap().unwrap();
    drop(handle);
    assert!(store.ledger(&second).await.unwrap().is_empty(), "the second waits before the locked stage");

    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    clock.advance(60_000);
    assert_eq!(within("the first", handle.wait(&first)).await.unwrap().status, ExecutionStatus::Succeeded);
    advance_until(&clock, 1000, "the second", || {
        let (store, id) = (store.clone(), second.clone());
        async move { store.get_execution(&id).await.unwrap().unwrap().status != "InProgress" }
    })
    .await;
    assert_eq!(handle.wait(&second).await.unwrap().status, ExecutionStatus::Succeeded);
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// A noop that sleeps longer than its `timeoutSeconds` times out on the
/// engine's clock, like any other action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_noop_times_out_on_the_engines_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let store = Arc::new(open(&dir));
    let p = pipeline(
        store.as_ref(),
        "name: t\nstages:\n  - name: S\n    actions:\n      - name: A\n        timeoutSeconds: 1\n        noop: {sleepMs: 600000}\n        retryPolicies: []\n",
    )
    .await;
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let id = handle.start(p, "{}".into()).await.unwrap();
    advance_until(&clock, 100, "the attempt to end", || {
        let (store, id) = (store.clone(), id.clone());
        async move { !store.ledger(&id).await.unwrap().is_empty() }
    })
    .await;
    assert_eq!(within("the execution", handle.wait(&id)).await.unwrap().status, ExecutionStatus::Failed);
    let l = store.ledger(&id).await.unwrap();
    assert_eq!(l[0].exception_type.as_deref(), Some("Step.TIMEOUT"), "{l:?}");
    let took = l[0].finished_at.ms_since(l[0].started_at);
    assert!((1000..600_000).contains(&took), "timed out after its 1 s limit, not its 10-minute sleep: {took} ms");
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// A real process is under test here: the attempt runs `sh`, and the test
/// waits (polling, bounded) for it to start and then to be gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandon_kills_the_running_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (started, pid_file, done) = (dir.path().join("started"), dir.path().join("pid"), dir.path().join("done"));
    let store = Arc::new(open(&dir));
    let yaml = format!(
        "name: ab\nstages:\n  - name: S\n    actions:\n      - name: A\n        command: [\"sh\", \"-c\", \"echo $$ > {pid}; touch {started}; sleep 30; touch {done}\"]\n",
        pid = pid_file.display(),
        started = started.display(),
        done = done.display()
    );
    let p = pipeline(store.as_ref(), &yaml).await;
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let id = handle.start(p, "{}".into()).await.unwrap();
    until("the command to be running", || {
        let started = started.clone();
        async move { started.exists() }
    })
    .await;
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    handle.stop(&id, true, "abandon").await.unwrap();
    assert_eq!(within("the stop", handle.wait(&id)).await.unwrap().status, ExecutionStatus::Stopped);
    until("the abandoned command to be gone", || async move { !alive(pid) }).await;
    assert!(!done.exists(), "the abandoned command kept running");
    // The drain has nothing left to wait for.
    assert_eq!(handle.drain(Duration::from_secs(5)).await.unwrap(), 0);
    join.await.unwrap().unwrap();
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Attempt slots are shared fairly: a pipeline of long attempts holds at most
/// its share, and another pipeline's attempt still starts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_of_long_attempts_does_not_starve_another() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let store = Arc::new(open(&dir));
    let hog_yaml = format!(
        "name: hog\nstages:\n  - name: S\n    actions:\n{}",
        (1..=6).map(|i| format!("      - name: A{i}\n        noop: {{sleepMs: 3000}}\n")).collect::<String>()
    );
    let hog = pipeline(store.as_ref(), &hog_yaml).await;
    let other =
        pipeline(store.as_ref(), "name: other\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {sleepMs: 1}\n").await;
    let config = DriverConfig { max_inflight_attempts: 4, max_inflight_attempts_per_pipeline: 3, ..DriverConfig::default() };
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), config);
    let long = handle.start(hog, "{}".into()).await.unwrap();
    let began = clock.now();
    let quick = handle.start(other, "{}".into()).await.unwrap();
    // One virtual millisecond at a time: the quick attempt needs 1 ms, the hog's 3 s.
    advance_until(&clock, 1, "the other pipeline's attempt", || {
        let (store, quick) = (store.clone(), quick.clone());
        async move { !store.ledger(&quick).await.unwrap().is_empty() }
    })
    .await;
    assert_eq!(within("the quick execution", handle.wait(&quick)).await.unwrap().status, ExecutionStatus::Succeeded);
    assert!(store.ledger(&long).await.unwrap().is_empty(), "the other pipeline waited for a hog attempt to end");
    assert!(clock.now().ms_since(began) < 3000, "the other pipeline waited for the hog: {} ms", clock.now().ms_since(began));
    advance_until(&clock, 500, "the hog", || {
        let (store, long) = (store.clone(), long.clone());
        async move { store.ledger(&long).await.unwrap().len() == 6 }
    })
    .await;
    assert_eq!(within("the hog", handle.wait(&long)).await.unwrap().status, ExecutionStatus::Succeeded);
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// `ExpireAfterMin` on virtual time (the logic of the CLI's end-to-end expiry
/// test, which would take a minute of wall clock): attempts take 31 s, the first
/// failure (at 31 s) is retried, the second (at 62 s, past the 1-minute expiry)
/// is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expire_after_min_stops_retries() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let store = Arc::new(open(&dir));
    let p = pipeline(
        store.as_ref(),
        "name: expiry\nstages:\n  - name: S\n    actions:\n      - name: Slow\n        noop: {failFirst: 10, failWith: Job.RESOURCE_LIMIT, sleepMs: 31000}\n        retryPolicies:\n          - {ExceptionType: [Job.RESOURCE_LIMIT], IntervalSeconds: 0, ExpireAfterMin: 1}\n",
    )
    .await;
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let started = clock.now();
    let id = handle.start(p, "{}".into()).await.unwrap();
    advance_until(&clock, 1000, "the execution to end", || {
        let (store, id) = (store.clone(), id.clone());
        async move { store.get_execution(&id).await.unwrap().unwrap().status != "InProgress" }
    })
    .await;
    assert_eq!(within("the execution", handle.wait(&id)).await.unwrap().status, ExecutionStatus::Failed);
    let ledger = store.ledger(&id).await.unwrap();
    assert_eq!(ledger.len(), 2, "{ledger:?}");
    let decision = |i: usize| serde_json::from_str::<serde_json::Value>(ledger[i].decision_json.as_deref().unwrap()).unwrap();
    assert_eq!(decision(0)["decision"], "retry", "{}", decision(0));
    assert_eq!(decision(1)["reason"], "expired", "{}", decision(1));
    let elapsed = decision(1)["elapsedMs"].as_u64().unwrap();
    assert!((62_000..75_000).contains(&elapsed), "the second failure came {elapsed} ms after the first attempt started");
    assert!(ledger[1].finished_at.ms_since(started) >= 62_000);
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// Due timers nobody can fire yet (their function is not registered in this
/// process) never stand in front of the others: a poll pages past them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_timers_of_unregistered_functions_do_not_starve_the_others() {
    use redrive_store::{Target, TimerRecord, Transition};
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let store = Arc::new(open(&dir));
    // Five function executions of a function no process registered, each with a
    // timer already due: more than one poll's worth (the limit is 2 here).
    let t0 = clock.now();
    for i in 0..5 {
        let id = format!("0b6f2a52-0000-4000-8000-00000000000{i}");
        let state = redrive_core::function::FunctionState::new(id.clone(), "ghost", format!("g-{i}"), t0);
        let create = Transition {
            execution_id: id.clone(),
            expected_version: None,
            target: Target::function("ghost"),
            status: "InProgress".into(),
            input_json: "null".into(),
            state_json: serde_json::to_string(&state).unwrap(),
            at: t0,
            ledger: Vec::new(),
            set_timers: vec![TimerRecord { execution_id: id, key: "#fn/0".into(), due_at: t0 }],
            clear_timers: Vec::new(),
            client_token: None,
            dlq: Vec::new(),
        };
        assert_eq!(store.commit(vec![create].into()).await.unwrap(), vec![Ok(1)]);
    }
    let p = pipeline(store.as_ref(), ONE_RETRY_AFTER_1500MS).await;
    let config = DriverConfig { timer_poll_limit: 2, ..DriverConfig::default() };
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), config);
    let id = handle.start(p, "{}".into()).await.unwrap();
    until("the retry timer to be durable", || {
        let (store, id) = (store.clone(), id.clone());
        async move { !store.execution_timers(&id).await.unwrap().is_empty() }
    })
    .await;
    // The retry is due 1.5 s after the ghosts' timers, and fires on time (before
    // polls paged past them, the ghosts came first in every poll and it never did).
    advance_until(&clock, 100, "the pipeline's retry", || {
        let (store, id) = (store.clone(), id.clone());
        async move { store.get_execution(&id).await.unwrap().unwrap().status == "Succeeded" }
    })
    .await;
    let ledger = store.ledger(&id).await.unwrap();
    let late_ms = ledger[1].started_at.ms_since(ledger[0].finished_at.plus_ms(1500));
    assert!((0..1000).contains(&late_ms), "the retry ran {late_ms} ms after its due time");
    assert_eq!(store.count_timers().await.unwrap(), 5, "the ghosts' timers wait for their function");
    // Once the function is registered, its timers are handled (these histories
    // have no step 0, so each timer is cleared as stale).
    let ghost = |_ctx: redrive_engine::function::FnContext, _input: String| -> redrive_engine::function::FnFuture {
        Box::pin(async { Ok(serde_json::Value::Null) })
    };
    handle.register_function("ghost", Arc::new(ghost)).await.unwrap();
    until("the ghosts' timers to be handled", || {
        let store = store.clone();
        async move { store.count_timers().await.unwrap() == 0 }
    })
    .await;
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}
