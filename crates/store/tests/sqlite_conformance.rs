//! The conformance suite and SQLite-specific behaviour of [`SqliteStore`].

use redrive_core::time::Timestamp;
use redrive_store::conformance;
use redrive_store::sqlite::{SCHEMA_VERSION, SqliteStore};
use redrive_store::{
    DlqEntryFilter, DlqEntryState, DlqEntryWrite, DlqOp, Durability, RedriveRunRecord, SqliteOptions, Store, StoreError, Transition,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

fn opts(durability: Durability) -> SqliteOptions {
    SqliteOptions { durability, ..SqliteOptions::default() }
}

/// A creating transition with one ledger entry and one timer.
fn create(id: &str, at: i64) -> Transition {
    Transition {
        execution_id: id.into(),
        expected_version: None,
        target: redrive_store::Target::pipeline("p", 1),
        status: "InProgress".into(),
        input_json: "{}".into(),
        state_json: r#"{"s":1}"#.into(),
        at: Timestamp::from_unix_ms(at),
        ledger: vec![redrive_store::LedgerEntry {
            seq: 0,
            execution_id: id.into(),
            stage: "S".into(),
            action: "A".into(),
            series: 1,
            attempt: 1,
            trigger: "initial".into(),
            started_at: Timestamp::from_unix_ms(at),
            finished_at: Timestamp::from_unix_ms(at + 1),
            outcome: "SUCCEEDED".into(),
            exception_type: None,
            message: None,
            decision_json: None,
        }],
        set_timers: vec![redrive_store::TimerRecord {
            execution_id: id.into(),
            key: "k".into(),
            due_at: Timestamp::from_unix_ms(at + 100),
        }],
        clear_timers: vec![],
        client_token: None,
        dlq: Vec::new(),
    }
}

async fn run_suite(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let counter = AtomicUsize::new(0);
    let dir_path: &Path = dir.path();
    conformance::run_all(|| {
        let path = dir_path.join(format!("store-{}.db", counter.fetch_add(1, Ordering::SeqCst)));
        async move { SqliteStore::open(&path, opts(durability)).expect("open sqlite store") }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_full_durability() {
    run_suite(Durability::Full).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_normal_durability() {
    run_suite(Durability::Normal).await;
}

#[tokio::test(flavor = "current_thread")]
async fn conformance_current_thread_runtime() {
    run_suite(Durability::Normal).await;
}

fn db_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("redrive.db")
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        store.put_pipeline("p", "{}", Some("/x"), Timestamp::from_unix_ms(1)).await.unwrap();
        assert_eq!(store.commit(vec![create("e1", 10), create("e2", 20)].into()).await.unwrap(), vec![Ok(1), Ok(1)]);
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    assert_eq!(store.get_pipeline("p", None).await.unwrap().unwrap().version, 1);
    assert_eq!(store.get_execution("e1").await.unwrap().unwrap().version, 1);
    assert_eq!(store.ledger("e2").await.unwrap().len(), 1);
    assert_eq!(store.next_timer_due().await.unwrap(), Some(Timestamp::from_unix_ms(110)));
    drop(store);

    // Inspection without the lock sees the same data.
    let ro = SqliteStore::open_read_only(&path).unwrap();
    assert!(ro.is_read_only());
    assert_eq!(ro.list_executions(Default::default()).await.unwrap().len(), 2);
    match ro.commit(vec![create("e3", 30)].into()).await {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("read-only"), "{m}"),
        other => panic!("a read-only store must refuse writes, got {other:?}"),
    }
}

/// Dead-letter entries, queues and redrive runs survive a reopen; a read-only
/// store reads them and refuses their writes.
#[tokio::test(flavor = "multi_thread")]
async fn dlq_survives_reopen_and_read_only_refuses_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let at = Timestamp::from_unix_ms(50);
    let run = RedriveRunRecord {
        id: "run1".into(),
        schedule: Some("nightly".into()),
        status: "RUNNING".into(),
        dry_run: true,
        started_at: at,
        finished_at: None,
        request_json: r#"{"queue":"q"}"#.into(),
        summary_json: "{}".into(),
    };
    {
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        let mut failed = create("e1", 10);
        failed.dlq = vec![DlqOp::Enter(DlqEntryWrite {
            id: "e1".into(),
            queue: "q".into(),
            source: redrive_store::Target::pipeline("p", 1),
            execution_id: "e1".into(),
            stage: "S".into(),
            action: "A".into(),
            exception_type: "Step.TIMEOUT".into(),
            message: "timed out".into(),
            input_json: "{}".into(),
            detail_json: "{}".into(),
            first_failure_at: Timestamp::from_unix_ms(9),
            last_failure_at: Timestamp::from_unix_ms(9),
        })];
        assert_eq!(store.commit(vec![failed].into()).await.unwrap(), vec![Ok(1)]);
        store.configure_dlq_queue("q", 7, at).await.unwrap();
        store.create_redrive_run(run.clone()).await.unwrap();
    }
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let entry = store.get_dlq_entry("e1").await.unwrap().unwrap();
    assert_eq!((entry.state, entry.max_redrives, entry.entered_at), (DlqEntryState::Queued, 7, Timestamp::from_unix_ms(10)));
    assert_eq!(store.get_redrive_run("run1").await.unwrap(), Some(run.clone()));
    drop(store);

    let ro = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(ro.get_dlq_queue("q").await.unwrap().unwrap().depth, 1);
    assert_eq!(ro.list_dlq_entries(DlqEntryFilter::default()).await.unwrap().len(), 1);
    assert_eq!(ro.list_redrive_runs(Default::default()).await.unwrap(), vec![run]);
    let refused = |result: Result<(), StoreError>, what: &str| match result {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("read-only"), "{what}: {m}"),
        other => panic!("{what}: a read-only store must refuse writes, got {other:?}"),
    };
    refused(ro.ensure_dlq_queue("q2", at).await.map(drop), "ensure_dlq_queue");
    refused(ro.configure_dlq_queue("q", 2, at).await.map(drop), "configure_dlq_queue");
    refused(ro.purge_dlq_entries(DlqEntryFilter::default()).await.map(drop), "purge_dlq_entries");
    refused(ro.interrupt_redrive_runs(at).await.map(drop), "interrupt_redrive_runs");
    assert_eq!(ro.count_dlq_entries(DlqEntryFilter::default()).await.unwrap(), 1, "nothing was purged");
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_can_inspect_while_engine_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    store.commit(vec![create("e1", 10)].into()).await.unwrap();
    let ro = SqliteStore::open_read_only(&path).unwrap();
    assert!(ro.get_execution("e1").await.unwrap().is_some());
    store.commit(vec![create("e2", 20)].into()).await.unwrap();
    assert!(ro.get_execution("e2").await.unwrap().is_some(), "read-only store sees later commits");
}

#[test]
fn open_read_only_missing_file_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    match SqliteStore::open_read_only(&dir.path().join("missing.db")) {
        Err(StoreError::NotFound(m)) => assert!(m.contains("missing.db"), "{m}"),
        Err(e) => panic!("expected NotFound, got {e:?}"),
        Ok(_) => panic!("expected NotFound, got a store"),
    }
    assert!(!dir.path().join("missing.db").exists(), "open_read_only must not create the file");
}

#[test]
fn engine_lock_refuses_second_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let first = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    let lock_file = SqliteStore::lock_path(&path);
    let pid = std::fs::read_to_string(&lock_file).unwrap();
    assert_eq!(pid.trim(), std::process::id().to_string(), "the lock file holds the holder's pid");

    match SqliteStore::open(&path, SqliteOptions::default()) {
        Err(StoreError::Locked(m)) => {
            assert!(m.contains(&path.display().to_string()), "names the database: {m}");
            assert!(m.contains(&format!("pid {}", std::process::id())), "names the holder: {m}");
            assert!(m.contains("--db"), "suggests a fix: {m}");
        }
        Err(e) => panic!("expected Locked, got {e:?}"),
        Ok(_) => panic!("a second open of a locked database must fail"),
    }
    // Inspection is still allowed.
    SqliteStore::open_read_only(&path).unwrap();

    drop(first);
    SqliteStore::open(&path, SqliteOptions::default()).expect("the lock is released when the store is dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn ledger_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    store.commit(vec![create("e1", 10)].into()).await.unwrap();

    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    let update = raw.execute("UPDATE ledger SET outcome = 'FAILED'", []);
    assert!(matches!(&update, Err(e) if e.to_string().contains("append-only")), "UPDATE of the ledger must be refused: {update:?}");
    let delete = raw.execute("DELETE FROM ledger", []);
    assert!(matches!(&delete, Err(e) if e.to_string().contains("append-only")), "DELETE from the ledger must be refused: {delete:?}");
    // Retention lists the executions whose rows may go; no other row may.
    raw.execute("INSERT INTO ledger_prunable (execution_id) VALUES ('other')", []).unwrap();
    let delete = raw.execute("DELETE FROM ledger", []);
    assert!(matches!(&delete, Err(e) if e.to_string().contains("append-only")), "only a listed execution's rows may go: {delete:?}");
    assert_eq!(store.ledger("e1").await.unwrap()[0].outcome, "SUCCEEDED");
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, 0)", [SCHEMA_VERSION + 1]).unwrap();
    drop(raw);

    for result in [SqliteStore::open(&path, SqliteOptions::default()), SqliteStore::open_read_only(&path)] {
        match result {
            Err(StoreError::Schema(m)) => {
                assert!(m.contains(&format!("schema version {}", SCHEMA_VERSION + 1)), "{m}");
                assert!(m.contains("newer"), "{m}");
            }
            Err(e) => panic!("expected Schema, got {e:?}"),
            Ok(_) => panic!("a database from a newer redrive must be refused"),
        }
    }
}

#[test]
fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    for _ in 0..3 {
        drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    let versions: Vec<u32> = raw
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>(), "each migration recorded exactly once");
    let mode: String = raw.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn not_a_database_is_a_schema_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    std::fs::write(&path, b"this is not a sqlite database, just some text that is long enough to matter....").unwrap();
    match SqliteStore::open(&path, SqliteOptions::default()) {
        Err(StoreError::Schema(m)) => assert!(m.contains("redrive.db"), "{m}"),
        Err(e) => panic!("expected Schema, got {e:?}"),
        Ok(_) => panic!("garbage must not open"),
    }
    // A foreign SQLite database without our schema cannot be inspected.
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other).unwrap().execute_batch("CREATE TABLE t (x);").unwrap();
    match SqliteStore::open_read_only(&other) {
        Err(StoreError::Schema(m)) => assert!(m.contains("not a redrive database"), "{m}"),
        Err(e) => panic!("expected Schema, got {e:?}"),
        Ok(_) => panic!("a foreign database must not open read-only"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_respect_max_batch_transitions() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store =
        std::sync::Arc::new(SqliteStore::open(&path, SqliteOptions { max_batch_transitions: 3, ..SqliteOptions::default() }).unwrap());
    let mut tasks = Vec::new();
    for i in 0..30 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move { store.commit(vec![create(&format!("e{i}"), i)].into()).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), vec![Ok(1)]);
    }
    // A single commit larger than the batch cap still runs (as one transaction).
    let big: Vec<Transition> = (0..10).map(|i| create(&format!("big{i}"), i)).collect();
    assert!(store.commit(big.into()).await.unwrap().iter().all(Result::is_ok));
    let stats = store.stats();
    assert_eq!(stats.transitions, 40);
    assert!(stats.commits >= 11, "30 single commits in groups of at most 3, plus one: {stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn write_failure_reports_unavailable_and_store_recovers() {
    // The whole group fails (BEGIN IMMEDIATE times out); nothing is written.
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    store.commit(vec![create("before", 1)].into()).await.unwrap();

    // Another connection holds the write lock beyond the busy timeout.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = std::time::Instant::now();
    match store.commit(vec![create("blocked", 2), create("blocked2", 2)].into()).await {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("locked"), "{m}"),
        other => panic!("expected Unavailable while the database is locked, got {other:?}"),
    }
    assert!(started.elapsed() >= std::time::Duration::from_secs(4), "waits for busy_timeout first");
    raw.execute_batch("ROLLBACK").unwrap();
    assert_eq!(store.get_execution("blocked").await.unwrap(), None, "nothing of the failed group is written");

    assert_eq!(store.commit(vec![create("blocked", 3)].into()).await.unwrap(), vec![Ok(1)], "the store recovers");
}

/// Installs a trigger (through a raw connection) that makes inserting a timer
/// with key `boom` fail, to provoke a failure in the middle of a group.
fn poison_timer_key(path: &Path) {
    let raw = rusqlite::Connection::open(path).unwrap();
    raw.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    raw.execute_batch(
        "CREATE TRIGGER boom BEFORE INSERT ON timers WHEN NEW.key = 'boom' \
         BEGIN SELECT RAISE(ABORT, 'boom timer refused'); END;",
    )
    .unwrap();
}

fn poisoned(id: &str) -> Transition {
    let mut t = create(id, 1);
    t.set_timers[0].key = "boom".into();
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_mid_transaction_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
    poison_timer_key(&path);

    match store.commit(vec![create("a", 1), poisoned("b"), create("c", 1)].into()).await {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("boom timer refused"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    for id in ["a", "b", "c"] {
        assert_eq!(store.get_execution(id).await.unwrap(), None, "{id}: a failed commit writes nothing");
        assert!(store.ledger(id).await.unwrap().is_empty(), "{id}: no ledger rows");
    }
    assert_eq!(store.next_timer_due().await.unwrap(), None, "no timers");
    assert_eq!(store.commit(vec![create("a", 1)].into()).await.unwrap(), vec![Ok(1)], "the store keeps working");
}

#[tokio::test(flavor = "multi_thread")]
async fn poisoned_request_fails_alone_in_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_in(&dir);
    let store = std::sync::Arc::new(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
    poison_timer_key(&path);

    const CALLS: usize = 200;
    let mut tasks = Vec::new();
    for i in 0..CALLS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("e{i}");
            let t = if i % 10 == 3 { poisoned(&id) } else { create(&id, 1) };
            store.commit(vec![t].into()).await
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        let stored = store.get_execution(&format!("e{i}")).await.unwrap();
        if i % 10 == 3 {
            assert!(matches!(result, Err(StoreError::Unavailable(_))), "e{i}: poisoned commit must fail: {result:?}");
            assert_eq!(stored, None, "e{i}: poisoned commit must write nothing");
        } else {
            assert_eq!(result.unwrap(), vec![Ok(1)], "e{i}: healthy commit must succeed despite a poisoned neighbour");
            assert!(stored.is_some(), "e{i}: healthy commit must be stored");
        }
    }
    assert!(store.stats().commits < CALLS as u64, "still group-committed: {:?}", store.stats());
}
