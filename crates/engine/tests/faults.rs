//! Fault isolation in the driver: a store fault degrades the engine and it
//! recovers by itself with nothing acknowledged lost; a fatal store fault stops
//! it; one execution over a limit, refused by the store or unreadable fails
//! alone while the others go on. Sleeping noops and retry timers run on a
//! [`ManualClock`](redrive_engine::ManualClock); the store's own backoff after a
//! fault is real time (a real store is under test), so health is awaited with a
//! deadline.

mod common;

use common::{advance_until, manual_clock, stays_false, within};
use redrive_core::definition::source::parse_document;
use redrive_core::machine::ExecutionStatus;
use redrive_engine::health::Health;
use redrive_engine::{Clock, Driver, DriverConfig, EngineError, EngineHandle, LoadedPipeline, SystemClock};
use redrive_store::faulty::FaultyStore;
use redrive_store::{SqliteOptions, SqliteStore, Store, TimerRecord, Transition};
use std::sync::Arc;
use std::time::Duration;

type Faulty = FaultyStore<SqliteStore>;

async fn pipeline<S: Store>(store: &S, yaml: &str) -> Arc<LoadedPipeline> {
    let doc = parse_document(yaml).unwrap();
    let name = doc.get("name").and_then(|n| n.to_json().as_str().map(str::to_string)).unwrap();
    let rec = store.put_pipeline(&name, &doc.to_json().to_string(), None, SystemClock.now()).await.unwrap();
    Arc::new(LoadedPipeline::from_record(rec).unwrap())
}

fn faulty(dir: &tempfile::TempDir) -> Arc<Faulty> {
    Arc::new(FaultyStore::new(SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap()))
}

/// Polls `health` until `want` holds (a real store and real backoff are under test).
async fn health_until(handle: &EngineHandle, what: &str, want: impl Fn(&Health) -> bool) -> Health {
    let mut watch = handle.health_watch();
    let result = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let now = watch.borrow_and_update().clone();
            if want(&now) {
                return now;
            }
            watch.changed().await.expect("the engine publishes its health");
        }
    })
    .await;
    result.unwrap_or_else(|_| panic!("health never became {what}: {:?}", handle.health()))
}

const SLOW: &str = "name: slow\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {sleepMs: 300}\n";
const QUICK: &str = "name: quick\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {}\n";

/// Disk full (or any I/O error) while a batch commits: the engine is degraded,
/// keeps what was acknowledged, accepts nothing new as done, and finishes
/// everything by itself once the fault clears — no restart, no lost attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_commits_degrade_and_the_engine_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir);
    let (slow, quick) = (pipeline(store.as_ref(), SLOW).await, pipeline(store.as_ref(), QUICK).await);
    let clock = manual_clock();
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let running = handle.start(slow.clone(), "{}".into()).await.unwrap();
    assert!(handle.health().is_ready());

    store.set_fail_commits(true);
    // The running attempt ends; committing its result fails.
    advance_until(&clock, 100, "the engine to degrade", || {
        let degraded = matches!(handle.health(), Health::Degraded { .. });
        async move { degraded }
    })
    .await;
    let degraded = handle.health();
    assert!(degraded.reason().unwrap().contains("injected fault"), "{degraded:?}");
    // A start while degraded is not acknowledged (it is not durable).
    let start = tokio::spawn({
        let (handle, quick) = (handle.clone(), quick.clone());
        async move { handle.start(quick, "{}".into()).await }
    });
    stays_false("a start was answered before it was durable", || {
        let done = start.is_finished();
        async move { done }
    })
    .await;
    assert!(store.inner().ledger(&running).await.unwrap().is_empty(), "nothing was written while the store failed");

    store.heal();
    health_until(&handle, "ready", Health::is_ready).await;
    let started = within("the start once the store heals", start).await.unwrap().unwrap();
    let ids = [running.clone(), started.clone()];
    advance_until(&clock, 100, "both executions", || finished(store.clone(), ids.clone())).await;
    for id in [&running, &started] {
        assert_eq!(handle.wait(id).await.unwrap().status, ExecutionStatus::Succeeded);
        let ledger = store.inner().ledger(id).await.unwrap();
        assert_eq!(ledger.len(), 1, "exactly one attempt, no lost or repeated one: {ledger:?}");
        assert_eq!(ledger[0].outcome, "SUCCEEDED");
    }
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// Whether every execution in `ids` has finished (by the store).
async fn finished<const N: usize>(store: Arc<Faulty>, ids: [String; N]) -> bool {
    for id in &ids {
        if store.inner().get_execution(id).await.unwrap().unwrap().status == "InProgress" {
            return false;
        }
    }
    true
}

/// A commit applied whose acknowledgement was lost (an error after COMMIT) is
/// retried and recognised as done: nothing is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_acknowledgement_is_retried_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir);
    let p = pipeline(store.as_ref(), QUICK).await;
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    store.lose_next_commit_acks(3);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(handle.start(p.clone(), "{}".into()).await.unwrap());
    }
    for id in &ids {
        assert_eq!(handle.wait(id).await.unwrap().status, ExecutionStatus::Succeeded);
        assert_eq!(store.inner().ledger(id).await.unwrap().len(), 1, "one ledger row per attempt");
    }
    assert!(store.injected_faults() >= 3);
    health_until(&handle, "ready", Health::is_ready).await;
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// Reads failing while a timer is due: degraded for reads, and the timer fires
/// once reads work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_reads_degrade_and_timers_fire_after_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir);
    let p = pipeline(
        store.as_ref(),
        "name: t\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {failFirst: 1, failWith: Job.CAPACITY_ERROR}\n        retryPolicies: [{exceptionType: Job.CAPACITY_ERROR, intervalSeconds: 0.5}]\n",
    )
    .await;
    let clock = manual_clock();
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let id = handle.start(p, "{}".into()).await.unwrap();
    // Wait for the retry timer to be durable, then fail every read and let it come due.
    common::until("the retry timer to be durable", || {
        let (store, id) = (store.clone(), id.clone());
        async move { !store.inner().execution_timers(&id).await.unwrap().is_empty() }
    })
    .await;
    store.set_fail_reads(true);
    clock.advance(500);
    let degraded = health_until(&handle, "degraded", |h| matches!(h, Health::Degraded { .. })).await;
    assert!(degraded.reason().unwrap().contains("reading"), "{degraded:?}");
    assert_eq!(store.inner().ledger(&id).await.unwrap().len(), 1, "the retry cannot start while its timer cannot be read");
    store.heal();
    // The engine reads again after its read-retry delay (on its clock).
    advance_until(&clock, 100, "the retry after recovery", || finished(store.clone(), [id.clone()])).await;
    assert_eq!(handle.wait(&id).await.unwrap().status, ExecutionStatus::Succeeded);
    assert_eq!(store.inner().ledger(&id).await.unwrap().len(), 2);
    health_until(&handle, "ready", Health::is_ready).await;
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// A timer read ahead fires from memory at its due time: its evicted execution
/// was read back within the read-ahead window, so the retry starts on time even
/// though no read works by then (the store's timers cannot be polled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_read_ahead_fires_when_due_without_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir);
    let p = pipeline(
        store.as_ref(),
        "name: t\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {failFirst: 1, failWith: Job.CAPACITY_ERROR}\n        retryPolicies: [{exceptionType: Job.CAPACITY_ERROR, intervalSeconds: 10}]\n",
    )
    .await;
    let clock = manual_clock();
    let config = DriverConfig { read_ahead_window_ms: 1000, ..DriverConfig::default() };
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), config);
    let id = handle.start(p, "{}".into()).await.unwrap();
    let due = clock.now().plus_ms(10_000);
    let live = || {
        let handle = handle.clone();
        async move { handle.stats().await.unwrap().live_executions }
    };
    common::until("the execution to wait evicted", || {
        let (store, id, live) = (store.clone(), id.clone(), live());
        async move { !store.inner().execution_timers(&id).await.unwrap().is_empty() && live.await == 0 }
    })
    .await;
    clock.advance(9_500);
    common::until("the execution to be read ahead", || async { live().await == 1 }).await;
    store.set_fail_reads(true);
    clock.advance(500);
    common::until("the retry, from memory", || {
        let (store, id) = (store.clone(), id.clone());
        async move { store.inner().ledger(&id).await.unwrap().len() == 2 }
    })
    .await;
    let ledger = store.inner().ledger(&id).await.unwrap();
    assert_eq!(ledger[1].started_at, due, "started when due (the clock stood still there)");
    store.heal();
    assert_eq!(within("the execution", handle.wait(&id)).await.unwrap().status, ExecutionStatus::Succeeded);
    assert_eq!(store.inner().ledger(&id).await.unwrap().len(), 2, "retried once");
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// A store that is lost (the file deleted underneath) is not retried: the
/// engine stops, says so in its health, and the join result names the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_store_stops_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir);
    let p = pipeline(store.as_ref(), SLOW).await;
    let clock = manual_clock();
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let id = handle.start(p, "{}".into()).await.unwrap();
    store.set_lost(true);
    // The attempt ends and its commit meets the lost store.
    advance_until(&clock, 100, "the engine to stop", || {
        let stopped = matches!(handle.health(), Health::Stopped { .. });
        async move { stopped }
    })
    .await;
    assert!(matches!(within("the wait", handle.wait(&id)).await, Err(EngineError::Stopped)));
    let cause = join.await.unwrap().unwrap_err();
    assert!(cause.to_string().contains("lost"), "{cause}");
    assert!(matches!(handle.health(), Health::Stopped { reason } if reason.contains("lost")));
}

/// The store refuses one execution's transition over a limit the engine did
/// not foresee: that execution alone is failed (quarantined with
/// Engine.LIMIT_EXCEEDED) and the others finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_transition_fails_only_its_execution() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir);
    let p = pipeline(store.as_ref(), SLOW).await;
    let clock = manual_clock();
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let bad = handle.start(p.clone(), "{}".into()).await.unwrap();
    let good = handle.start(p.clone(), "{}".into()).await.unwrap();
    // Refused before its attempt can end: the clock has not moved.
    store.refuse_execution(&bad);
    advance_until(&clock, 100, "both executions", || finished(store.clone(), [bad.clone(), good.clone()])).await;
    let outcome = handle.wait(&bad).await.unwrap();
    assert_eq!(outcome.status, ExecutionStatus::Failed);
    let rec = store.inner().get_execution(&bad).await.unwrap().unwrap();
    let fault = rec.fault.expect("quarantined");
    assert_eq!(fault.exception_type, "Engine.LIMIT_EXCEEDED");
    assert!(fault.message.contains("injected fault"), "{}", fault.message);
    assert_eq!(rec.status, "Failed");
    assert_eq!(handle.wait(&good).await.unwrap().status, ExecutionStatus::Succeeded);
    // The engine goes on: new executions run.
    let later = handle.start(p, "{}".into()).await.unwrap();
    advance_until(&clock, 100, "a later execution", || finished(store.clone(), [later.clone()])).await;
    assert_eq!(handle.wait(&later).await.unwrap().status, ExecutionStatus::Succeeded);
    match handle.resume(&bad).await {
        Err(EngineError::Quarantined { exception_type, .. }) => assert_eq!(exception_type, "Engine.LIMIT_EXCEEDED"),
        other => panic!("a quarantined execution is not resumed: {other:?}"),
    }
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// An execution whose stored state cannot be read (corrupt JSON, a missing
/// pipeline version) is quarantined with Engine.CORRUPT_STATE when the engine
/// meets it; the engine goes on with the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_executions_are_quarantined_and_the_engine_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir);
    let p = pipeline(store.as_ref(), QUICK).await;
    let now = SystemClock.now();
    let corrupt = |id: &str, version: u32, state: &str| Transition {
        execution_id: id.into(),
        expected_version: None,
        target: redrive_store::Target::pipeline("quick", version),
        status: "InProgress".into(),
        input_json: "{}".into(),
        state_json: state.into(),
        at: now,
        ledger: vec![],
        set_timers: vec![TimerRecord { execution_id: id.into(), key: "S/A".into(), due_at: now }],
        clear_timers: vec![],
        client_token: None,
        dlq: vec![],
    };
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let rows = vec![corrupt("garbage", 1, "{not json"), corrupt("deep", 1, &deep), corrupt("no-pipeline", 7, "{}")];
    assert!(store.commit(rows.into()).await.unwrap().iter().all(Result::is_ok));

    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    // Waiting on one is answered (it is quarantined by the wait, or by its timer).
    assert_eq!(handle.wait("garbage").await.unwrap().status, ExecutionStatus::Failed);
    let fine = handle.start(p, "{}".into()).await.unwrap();
    assert_eq!(handle.wait(&fine).await.unwrap().status, ExecutionStatus::Succeeded);
    for id in ["garbage", "deep", "no-pipeline"] {
        assert_eq!(handle.wait(id).await.unwrap().status, ExecutionStatus::Failed, "{id}");
        let rec = store.inner().get_execution(id).await.unwrap().unwrap();
        assert_eq!(rec.fault.map(|f| f.exception_type).as_deref(), Some("Engine.CORRUPT_STATE"), "{id}");
        assert!(store.inner().execution_timers(id).await.unwrap().is_empty(), "{id}: its timers are gone");
    }
    assert_eq!(store.inner().next_timer_due().await.unwrap(), None);
    assert!(handle.health().is_ready());
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// A function start is bounded where it enters: the execution name (its
/// idempotency key), the input's size and nesting, the function's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_starts_over_a_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir);
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let big = format!("\"{}\"", "x".repeat(redrive_core::limits::MAX_INPUT_BYTES));
    let long_name = "n".repeat(redrive_core::limits::MAX_EXECUTION_NAME_BYTES + 1);
    for (function, name, input, needle) in [
        ("f", long_name.as_str(), "{}", "execution name"),
        ("f", "", "{}", "execution name"),
        ("f", "n", deep.as_str(), "nested 100 levels"),
        ("f", "n", big.as_str(), "bytes"),
        ("no spaces", "n", "{}", "function name"),
    ] {
        match handle.start_function(function, name, input.to_string()).await {
            Err(EngineError::LimitExceeded(m)) => assert!(m.contains(needle), "{m}"),
            other => panic!("{needle}: expected LimitExceeded, got {other:?}"),
        }
    }
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// Timers are polled while commits are in flight (here held there by
/// transient faults the committer retries) and page after page, while fired
/// timers wait for their evicted executions' reads: every retry runs exactly
/// once, none early, none lost. (The bookkeeping that passes over a timer whose
/// clearing commit is not durable is unit-tested in `driver::timers`; here the
/// whole loop is.) Once with the timers fired by the polls alone, once with
/// them read ahead too (1 s out, they are in the window at once): fired from
/// memory when due while polls read them from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_polled_while_their_commits_are_in_flight_fire_exactly_once() {
    timers_fire_exactly_once_while_commits_are_in_flight(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_read_ahead_and_polled_while_their_commits_are_in_flight_fire_exactly_once() {
    timers_fire_exactly_once_while_commits_are_in_flight(1000).await;
}

async fn timers_fire_exactly_once_while_commits_are_in_flight(read_ahead_window_ms: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir);
    let p = pipeline(
        store.as_ref(),
        "name: t\nexecutionMode: PARALLEL\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {failFirst: 1, failWith: Job.CAPACITY_ERROR}\n        retryPolicies: [{exceptionType: Job.CAPACITY_ERROR, intervalSeconds: 1, maxAttempts: 2}]\n",
    )
    .await;
    let clock = manual_clock();
    // A tiny page, so the due timers take many polls; evicted executions, so
    // fired timers also wait for reads.
    let config = DriverConfig { timer_poll_limit: 3, evict_waiting_after_ms: 0, read_ahead_window_ms, ..DriverConfig::default() };
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), config);
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(handle.start(p.clone(), "{}".into()).await.unwrap());
    }
    common::until("every retry timer to be durable", || {
        let store = store.clone();
        async move { store.inner().count_timers().await.unwrap() == 40 }
    })
    .await;
    // Commits fail (transiently) while the timers come due: the batches that
    // fire them stay in flight while later polls read the store.
    store.fail_next_commits(6);
    clock.advance(1_000);
    let all = ids.clone();
    advance_until(&clock, 10, "every retry to run", || {
        let (store, ids) = (store.clone(), all.clone());
        async move {
            for id in &ids {
                if store.inner().get_execution(id).await.unwrap().unwrap().status == "InProgress" {
                    return false;
                }
            }
            true
        }
    })
    .await;
    for id in &ids {
        let ledger = store.inner().ledger(id).await.unwrap();
        assert_eq!(ledger.len(), 2, "{id}: the first attempt and exactly one retry: {ledger:?}");
        let due =
            serde_json::from_str::<serde_json::Value>(ledger[0].decision_json.as_deref().unwrap()).unwrap()["dueAt"].as_i64().unwrap();
        assert!(ledger[1].started_at.unix_ms() >= due, "{id}: the retry started before it was due");
    }
    assert!(store.injected_faults() >= 6);
    assert_eq!(store.inner().count_timers().await.unwrap(), 0);
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// CPU time this process used so far (user + system), in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage(2) fills the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// A drain whose deadline passed while a commit cannot complete (the store is
/// down at shutdown) waits for that commit without spinning, and ends once the
/// store is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_past_its_deadline_waits_for_a_stuck_commit_without_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let store = faulty(&dir);
    let quick = pipeline(store.as_ref(), QUICK).await;
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    store.set_fail_commits(true);
    let start = tokio::spawn({
        let (handle, quick) = (handle.clone(), quick.clone());
        async move { handle.start(quick, "{}".into()).await }
    });
    health_until(&handle, "degraded", |h| matches!(h, Health::Degraded { .. })).await;
    let drain = tokio::spawn({
        let handle = handle.clone();
        async move { handle.drain(Duration::from_millis(50)).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_seconds();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_seconds() - before;
    assert!(used < 0.3, "the engine used {used:.2} s of CPU in 1 s while its drain waited for a stuck commit");
    assert!(!drain.is_finished(), "the drain waits for the commit in flight");
    store.set_fail_commits(false);
    within("the drain to end once the commit went in", drain).await.unwrap().unwrap();
    assert!(start.await.unwrap().is_ok(), "the start was committed and acknowledged");
    handle.shutdown().await;
    let _ = join.await;
}
