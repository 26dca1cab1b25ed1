//! Paused executions in the driver: nothing of them stays in memory, no timer
//! is pending, and resume / fail read them back (virtual time: nothing here waits
//! on a delay).

mod common;

use common::{manual_clock, until};
use redrive_core::definition::source::parse_document;
use redrive_core::machine::{ExecutionState, ExecutionStatus};
use redrive_core::time::Timestamp;
use redrive_engine::{Clock, Driver, DriverConfig, EngineError, LoadedPipeline, SystemClock};
use redrive_store::{SqliteOptions, SqliteStore, Store};
use std::sync::Arc;

/// A noop that fails its first attempt of every series; no retries; PAUSE.
const PAUSING: &str = "name: p\nexecutionMode: PARALLEL\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {failFirst: 1}\n        onExhausted: PAUSE\n        retryPolicies: [{exceptionType: Action.FAILED, maxAttempts: 0}]\n";

async fn status<S: Store>(store: &S, id: &str) -> ExecutionStatus {
    let rec = store.get_execution(id).await.unwrap().unwrap();
    serde_json::from_str::<ExecutionState>(&rec.state_json).unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_executions_leave_memory_and_are_read_back_to_resume_or_fail() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("t.db"), SqliteOptions::default()).unwrap());
    let json = parse_document(PAUSING).unwrap().to_json().to_string();
    let p = Arc::new(LoadedPipeline::from_record(store.put_pipeline("p", &json, None, SystemClock.now()).await.unwrap()).unwrap());
    let (handle, join) = Driver::spawn(store.clone(), manual_clock(), DriverConfig::default());
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(handle.start(p.clone(), r#"{"k":1}"#.into()).await.unwrap());
    }
    let idle = || {
        let handle = handle.clone();
        async move {
            let s = handle.stats().await.unwrap();
            s.live_executions == 0 && s.submitted_batches == 0
        }
    };
    until("every execution paused and evicted", idle).await;
    for id in &ids {
        assert_eq!(status(store.as_ref(), id).await, ExecutionStatus::Paused);
    }
    assert!(store.due_timers(Timestamp::from_unix_ms(i64::MAX), 100).await.unwrap().is_empty(), "a pause holds no timer");
    let rec = store.get_execution(&ids[0]).await.unwrap().unwrap();
    assert_eq!(rec.status, "InProgress", "unfinished as the store counts it (concurrency, retention)");

    // Resume: read back, a fresh series (which fails and pauses again), evicted again.
    handle.resume_paused(&ids[0], None, Some(serde_json::json!({"k": 2}))).await.unwrap();
    until("paused again and evicted", idle).await;
    let state: ExecutionState = serde_json::from_str(&store.get_execution(&ids[0]).await.unwrap().unwrap().state_json).unwrap();
    assert_eq!((state.status, state.stages[0].actions[0].series), (ExecutionStatus::Paused, 2));
    assert_eq!(state.input, Some(serde_json::json!({"k": 2})));

    // Fail: read back and failed for good; a second fail is refused.
    handle.fail_paused(&ids[1]).await.unwrap();
    assert_eq!(handle.wait(&ids[1]).await.unwrap().status, ExecutionStatus::Failed);
    let again = handle.fail_paused(&ids[1]).await.unwrap_err();
    assert!(matches!(again, EngineError::Rejected(_) | EngineError::AlreadyFinished { .. }), "{again:?}");
    until("nothing held after the fail", idle).await;
    handle.shutdown().await;
    join.await.unwrap().unwrap();
}
