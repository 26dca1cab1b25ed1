//! [`FaultyStore`] injects failures without writing and passes conformance when
//! healthy.

use redrive_core::time::Timestamp;
use redrive_store::conformance;
use redrive_store::faulty::{FaultyStore, INJECTED_FAULT};
use redrive_store::{
    DlqEntryFilter, LedgerFilter, RedriveRunFilter, RedriveRunRecord, SqliteOptions, SqliteStore, Store, StoreError, Transition,
};
use std::sync::atomic::{AtomicUsize, Ordering};

fn create(id: &str) -> Transition {
    Transition {
        execution_id: id.into(),
        expected_version: None,
        target: redrive_store::Target::pipeline("p", 1),
        status: "InProgress".into(),
        input_json: "{}".into(),
        state_json: "{}".into(),
        at: Timestamp::from_unix_ms(1),
        ledger: vec![],
        set_timers: vec![],
        clear_timers: vec![],
        client_token: None,
        dlq: Vec::new(),
    }
}

fn assert_injected<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Unavailable(m)) => assert_eq!(m, INJECTED_FAULT),
        other => panic!("expected an injected fault, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_faulty_store_passes_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    let base = dir.path();
    conformance::run_all(|| {
        let path = base.join(format!("f{}.db", n.fetch_add(1, Ordering::SeqCst)));
        async move { FaultyStore::new(SqliteStore::open(&path, SqliteOptions::default()).unwrap()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_commit_failure_writes_nothing_and_later_commit_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let store = FaultyStore::new(SqliteStore::open(&dir.path().join("db"), SqliteOptions::default()).unwrap());

    store.fail_next_commits(2);
    assert_injected(store.commit(vec![create("e1")].into()).await);
    assert_injected(store.commit(vec![create("e1")].into()).await);
    assert_eq!(store.get_execution("e1").await.unwrap(), None, "an injected failure writes nothing");
    assert_eq!(store.stats().commits, 0, "the inner store was not called");
    assert_eq!(store.commit(vec![create("e1")].into()).await.unwrap(), vec![Ok(1)], "later commits succeed");

    store.set_fail_commits(true);
    assert_injected(store.commit(vec![create("e2")].into()).await);
    assert_injected(store.commit(vec![create("e2")].into()).await);
    store.set_fail_commits(false);
    assert_eq!(store.commit(vec![create("e2")].into()).await.unwrap(), vec![Ok(1)]);
    assert_eq!(store.injected_faults(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_ack_commits_but_reports_failure() {
    let dir = tempfile::tempdir().unwrap();
    let store = FaultyStore::new(SqliteStore::open(&dir.path().join("db"), SqliteOptions::default()).unwrap());
    store.lose_next_commit_acks(1);
    assert_injected(store.commit(vec![create("e1")].into()).await);
    assert_eq!(store.get_execution("e1").await.unwrap().unwrap().version, 1, "the commit was applied");
    assert!(store.commit(vec![create("e1")].into()).await.unwrap()[0].is_err(), "a retry sees AlreadyExists");
}

#[tokio::test(flavor = "multi_thread")]
async fn read_and_pipeline_faults() {
    let dir = tempfile::tempdir().unwrap();
    let store = FaultyStore::new(SqliteStore::open(&dir.path().join("db"), SqliteOptions::default()).unwrap());
    store.fail_next_put_pipelines(1);
    assert_injected(store.put_pipeline("p", "{}", None, Timestamp::from_unix_ms(0)).await);
    assert_eq!(store.get_pipeline("p", None).await.unwrap(), None);
    store.put_pipeline("p", "{}", None, Timestamp::from_unix_ms(0)).await.unwrap();

    store.set_fail_reads(true);
    assert_injected(store.get_pipeline("p", None).await);
    assert_injected(store.get_execution("x").await);
    assert_injected(store.list_executions(Default::default()).await);
    assert_injected(store.ledger("x").await);
    assert_injected(store.due_timers(Timestamp::from_unix_ms(0), 1).await);
    assert_injected(store.next_timer_due().await);
    assert_injected(store.execution_timers("x").await);
    assert_injected(store.list_pipelines(None, 0).await);
    assert_injected(store.list_ledger(LedgerFilter { target: redrive_store::TargetName::pipeline("p"), ..Default::default() }).await);
    store.heal();
    assert!(store.get_pipeline("p", None).await.unwrap().is_some());

    store.fail_next_reads(1);
    assert_injected(store.get_execution("x").await);
    assert_eq!(store.get_execution("x").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn pipeline_write_faults_cover_create_update_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = FaultyStore::new(SqliteStore::open(&dir.path().join("db"), SqliteOptions::default()).unwrap());
    let at = Timestamp::from_unix_ms(0);

    store.fail_next_pipeline_writes(1);
    assert_injected(store.create_pipeline("p", "{}", None, at).await);
    assert_eq!(store.get_pipeline("p", None).await.unwrap(), None, "an injected create writes nothing");
    assert_eq!(store.create_pipeline("p", "{}", None, at).await.unwrap().version, 1);

    store.set_fail_pipeline_writes(true);
    assert_injected(store.update_pipeline("p", "{}", None, at).await);
    assert_injected(store.delete_pipeline("p", at).await);
    assert_injected(store.put_pipeline("p", "{\"x\":1}", None, at).await);
    store.set_fail_pipeline_writes(false);
    assert_eq!(store.get_pipeline("p", None).await.unwrap().unwrap().version, 1, "injected writes change nothing");
    assert_eq!(store.update_pipeline("p", "{}", None, at).await.unwrap().version, 2);
    assert!(store.delete_pipeline("p", at).await.unwrap());
    assert_eq!(store.list_pipelines(None, 0).await.unwrap(), vec![]);
    assert_eq!(store.injected_faults(), 4);
}

fn run(id: &str) -> RedriveRunRecord {
    RedriveRunRecord {
        id: id.into(),
        schedule: None,
        status: "RUNNING".into(),
        dry_run: false,
        started_at: Timestamp::from_unix_ms(1),
        finished_at: None,
        request_json: "{}".into(),
        summary_json: "{}".into(),
    }
}

/// Dead-letter and redrive-run queries obey the read switch; their writes are
/// admin writes and obey the pipeline-write switch.
#[tokio::test(flavor = "multi_thread")]
async fn dlq_and_redrive_run_faults() {
    let dir = tempfile::tempdir().unwrap();
    let store = FaultyStore::new(SqliteStore::open(&dir.path().join("db"), SqliteOptions::default()).unwrap());
    let at = Timestamp::from_unix_ms(0);
    store.ensure_dlq_queue("q", at).await.unwrap();
    store.create_redrive_run(run("r1")).await.unwrap();

    store.set_fail_reads(true);
    assert_injected(store.get_dlq_queue("q").await);
    assert_injected(store.list_dlq_queues(None, None, 0).await);
    assert_injected(store.get_dlq_entry("e").await);
    assert_injected(store.list_dlq_entries(DlqEntryFilter::default()).await);
    assert_injected(store.count_dlq_entries(DlqEntryFilter::default()).await);
    assert_injected(store.get_redrive_run("r1").await);
    assert_injected(store.list_redrive_runs(RedriveRunFilter::default()).await);
    store.set_fail_reads(false);
    assert_eq!(store.injected_faults(), 7);

    store.set_fail_pipeline_writes(true);
    assert_injected(store.ensure_dlq_queue("q2", at).await);
    assert_injected(store.configure_dlq_queue("q", 7, at).await);
    assert_injected(store.purge_dlq_entries(DlqEntryFilter::default()).await);
    assert_injected(store.create_redrive_run(run("r2")).await);
    assert_injected(store.update_redrive_run(RedriveRunRecord { status: "SUCCEEDED".into(), ..run("r1") }).await);
    assert_injected(store.interrupt_redrive_runs(at).await);
    store.set_fail_pipeline_writes(false);
    assert_eq!(store.injected_faults(), 13);

    assert_eq!(store.get_dlq_queue("q2").await.unwrap(), None, "an injected ensure writes nothing");
    assert_eq!(store.get_dlq_queue("q").await.unwrap().unwrap().queue.max_redrives, 3, "an injected configure writes nothing");
    assert_eq!(store.get_redrive_run("r2").await.unwrap(), None, "an injected create writes nothing");
    assert_eq!(store.get_redrive_run("r1").await.unwrap().unwrap().status, "RUNNING", "injected update and interrupt write nothing");

    store.fail_next_pipeline_writes(1);
    assert_injected(store.interrupt_redrive_runs(at).await);
    assert_eq!(store.interrupt_redrive_runs(at).await.unwrap(), 1, "the next admin write goes through");
}
