//! Per-key concurrency in the driver, on virtual time ([`ManualClock`]): noops
//! that sleep 1 s on the engine's clock, at most one at a time per key value.
//! Waiters queue in order and are visible; another key runs at once; an
//! abandoned waiter leaves the queue; a waited attempt records when it began.

mod common;

use common::{manual_clock, until, within};
use redrive_core::definition::source::parse_document;
use redrive_core::machine::{ExecutionState, ExecutionStatus};
use redrive_engine::{Clock, Driver, DriverConfig, LoadedPipeline, SystemClock};
use redrive_store::{SqliteOptions, SqliteStore, Store};
use std::sync::Arc;

const ONE_AT_A_TIME: &str = "name: k\nexecutionMode: PARALLEL\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {sleepMs: 1000}\n        concurrency: {key: $.input.t, max: 1}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_of_a_full_key_wait_in_order_and_begin_when_a_slot_frees() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap());
    let json = parse_document(ONE_AT_A_TIME).unwrap().to_json().to_string();
    let rec = store.put_pipeline("k", &json, None, SystemClock.now()).await.unwrap();
    let p = Arc::new(LoadedPipeline::from_record(rec).unwrap());
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let t0 = clock.now();
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(handle.start(p.clone(), r#"{"t":"a"}"#.into()).await.unwrap());
    }
    let b = handle.start(p.clone(), r#"{"t":"b"}"#.into()).await.unwrap();
    until("two attempts of key a wait", || {
        let h = handle.clone();
        async move { h.key_waits(None).await.unwrap().len() == 2 }
    })
    .await;
    let waits = handle.key_waits(None).await.unwrap();
    let shown: Vec<(&str, usize, u32, u32)> =
        waits.iter().map(|w| (w.waiter.execution_id.as_str(), w.position, w.view.running, w.view.max)).collect();
    assert_eq!(shown, vec![(a[1].as_str(), 1, 1, 1), (a[2].as_str(), 2, 1, 1)], "in arrival order; key b waits for nothing");
    assert!(handle.key_waits(Some(&b)).await.unwrap().is_empty());

    // An abandoned waiter leaves the queue (its task is aborted).
    handle.stop(&a[2], true, "test").await.unwrap();
    until("the abandoned waiter left the queue", || {
        let h = handle.clone();
        async move { h.key_waits(None).await.unwrap().len() == 1 }
    })
    .await;
    let waits = handle.key_waits(None).await.unwrap();
    assert_eq!(waits.iter().map(|w| (w.waiter.execution_id.as_str(), w.position)).collect::<Vec<_>>(), vec![(a[1].as_str(), 1)]);

    // The first of each key sleeps once its beginning is committed.
    until("the first of each key sleeps", || async { clock.sleepers() >= 2 }).await;
    clock.advance(1000);
    for id in [&a[0], &b] {
        assert_eq!(within("the first of each key", handle.wait(id)).await.unwrap().status, ExecutionStatus::Succeeded);
    }
    until("the second of key a runs", || {
        let h = handle.clone();
        async move { h.key_waits(None).await.unwrap().is_empty() }
    })
    .await;
    until("the second of key a sleeps", || async { clock.sleepers() >= 1 }).await;
    clock.advance(1000);
    assert_eq!(within("the second of key a", handle.wait(&a[1])).await.unwrap().status, ExecutionStatus::Succeeded);
    let ledger = store.ledger(&a[1]).await.unwrap();
    assert_eq!(ledger.len(), 1, "one attempt: waiting used none");
    assert_eq!((ledger[0].attempt, ledger[0].started_at), (1, t0.plus_ms(1000)), "it began when the slot freed, not when it was due");
    assert_eq!(ledger[0].finished_at, t0.plus_ms(2000));
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}

/// A crash (the engine's task aborted: nothing more is committed) while one
/// attempt of a key runs and another waits for its slot: after the restart the
/// waiter, which never began, runs as the same attempt with no failure in the
/// ledger; the one that was running is lost in flight (`Step.SERVICE_FAULT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_at_a_crash_runs_after_the_restart_as_the_same_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let clock = manual_clock();
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap());
    let json = parse_document(ONE_AT_A_TIME).unwrap().to_json().to_string();
    let rec = store.put_pipeline("k", &json, None, SystemClock.now()).await.unwrap();
    let p = Arc::new(LoadedPipeline::from_record(rec).unwrap());
    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let running = handle.start(p.clone(), r#"{"t":"a"}"#.into()).await.unwrap();
    let waiting = handle.start(p.clone(), r#"{"t":"a"}"#.into()).await.unwrap();
    let awaiting_key = |id: String| {
        let store = store.clone();
        async move {
            let state = store.get_execution(&id).await.unwrap().unwrap().state_json;
            serde_json::from_str::<ExecutionState>(&state).unwrap().stages[0].actions[0].awaiting_key
        }
    };
    until("the first began and the second waits", || async {
        handle.key_waits(None).await.unwrap().len() == 1 && !awaiting_key(running.clone()).await && awaiting_key(waiting.clone()).await
    })
    .await;
    join.abort();
    let _ = join.await;
    drop(handle);

    let (handle, join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    for id in [&running, &waiting] {
        match handle.resume(id).await {
            Ok(()) | Err(redrive_engine::EngineError::AlreadyFinished { .. }) => {}
            Err(e) => panic!("resume {id}: {e}"),
        }
    }
    common::advance_until(&clock, 500, "the waiter succeeded", || async {
        store.get_execution(&waiting).await.unwrap().unwrap().status == "Succeeded"
    })
    .await;
    let ledger = store.ledger(&waiting).await.unwrap();
    assert_eq!(ledger.len(), 1, "one attempt, no failure: {ledger:?}");
    assert_eq!((ledger[0].series, ledger[0].attempt, ledger[0].outcome.as_str()), (1, 1, "SUCCEEDED"));
    let lost = store.ledger(&running).await.unwrap();
    assert_eq!(lost[0].exception_type.as_deref(), Some("Step.SERVICE_FAULT"), "{lost:?}");
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}
