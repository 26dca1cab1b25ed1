//! The conformance suite and PostgreSQL-specific behaviour of [`PostgresStore`].
//!
//! Needs a PostgreSQL server: `REDRIVE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) names a database whose user
//! may create databases; every store gets a fresh database, dropped afterwards.

use redrive_core::shard::ShardId;
use redrive_core::time::Timestamp;
use redrive_store::conformance;
use redrive_store::postgres::{MAX_WRITE_GROUPS_IN_FLIGHT, PostgresOptions, PostgresStore, redact_url};
use redrive_store::{CommitResult, LedgerEntry, Store, StoreError, Target, TimerRecord, Transition, TransitionError};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio_postgres::{Client, NoTls};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn admin_url() -> String {
    std::env::var("REDRIVE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database replaced by `db`.
fn url_for(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..].find('/').map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{db}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A raw connection (not through the store).
async fn raw(url: &str) -> Client {
    let (client, connection) = match tokio_postgres::connect(url, NoTls).await {
        Ok(pair) => pair,
        Err(e) => panic!(
            "cannot connect to PostgreSQL at {} ({e}; {:?}).\n\
             These tests need a PostgreSQL server whose user may create databases. Start one, e.g.\n  \
             sudo service postgresql start   (or: docker run -e POSTGRES_HOST_AUTH_METHOD=trust -p 5432:5432 postgres:15)\n\
             and point REDRIVE_TEST_POSTGRES_URL at it (default {DEFAULT_ADMIN_URL}).",
            redact_url(url),
            std::error::Error::source(&e).map(ToString::to_string)
        ),
    };
    tokio::spawn(connection);
    client
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Fresh databases, dropped (best effort) when [`Databases::drop_all`] runs.
#[derive(Default)]
struct Databases {
    names: Mutex<Vec<String>>,
}

impl Databases {
    /// Creates a fresh, empty database; returns its URL.
    async fn create(&self) -> String {
        let name = format!("redrive_t_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst));
        let admin = raw(&admin_url()).await;
        // Identifiers cannot be bound; this one is generated here. A linguistic
        // default collation (ICU en-US: `a < B < Zeta`), where the server has
        // ICU, so that the byte order the contract asks for is really tested.
        let icu = format!("CREATE DATABASE \"{name}\" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'");
        if admin.batch_execute(&icu).await.is_err() {
            admin.batch_execute(&format!("CREATE DATABASE \"{name}\"")).await.expect("create a test database");
        }
        self.names.lock().unwrap_or_else(|e| e.into_inner()).push(name.clone());
        url_for(&admin_url(), &name)
    }

    async fn drop_all(&self) {
        let names = std::mem::take(&mut *self.names.lock().unwrap_or_else(|e| e.into_inner()));
        drop_databases(names).await;
    }
}

async fn drop_databases(names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    let admin = raw(&admin_url()).await;
    for name in names {
        let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
    }
}

impl Drop for Databases {
    /// Drops what a failed test left (best effort, on a thread of its own: this
    /// may run while a runtime unwinds).
    fn drop(&mut self) {
        let names = std::mem::take(&mut *self.names.lock().unwrap_or_else(|e| e.into_inner()));
        if names.is_empty() {
            return;
        }
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(drop_databases(names));
        })
        .join();
    }
}

fn opts() -> PostgresOptions {
    PostgresOptions::default()
}

async fn open(url: &str) -> PostgresStore {
    PostgresStore::open(url, opts()).await.expect("open the PostgreSQL store")
}

/// A creating transition with one ledger entry and one timer.
fn create(id: &str, at: i64) -> Transition {
    Transition {
        execution_id: id.into(),
        expected_version: None,
        target: Target::pipeline("p", 1),
        status: "InProgress".into(),
        input_json: "{}".into(),
        state_json: r#"{"s":1}"#.into(),
        at: Timestamp::from_unix_ms(at),
        ledger: vec![LedgerEntry {
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
        set_timers: vec![TimerRecord { execution_id: id.into(), key: "k".into(), due_at: Timestamp::from_unix_ms(at + 100) }],
        clear_timers: vec![],
        client_token: None,
        dlq: Vec::new(),
    }
}

async fn run_suite() {
    let dbs = Databases::default();
    conformance::run_all(|| async {
        let url = dbs.create().await;
        open(&url).await
    })
    .await;
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_multi_thread() {
    run_suite().await;
}

#[tokio::test(flavor = "current_thread")]
async fn conformance_current_thread_runtime() {
    run_suite().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn data_survives_drop_and_reopen() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    {
        let store = open(&url).await;
        assert_eq!(store.commit(vec![create("a", 1), create("b", 2)].into()).await.unwrap(), vec![Ok(1), Ok(1)]);
        store.put_pipeline("p", "{}", None, Timestamp::from_unix_ms(1)).await.unwrap();
    }
    let store = open(&url).await;
    assert_eq!(store.get_execution("a").await.unwrap().unwrap().version, 1);
    assert_eq!(store.ledger("b").await.unwrap().len(), 1);
    assert_eq!(store.count_timers().await.unwrap(), 2);
    assert_eq!(store.get_pipeline("p", None).await.unwrap().unwrap().version, 1);
    assert_eq!(store.commit(vec![create("c", 3)].into()).await.unwrap(), vec![Ok(1)]);
    drop(store);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn second_open_is_locked_until_the_first_is_dropped() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    let first = open(&url).await;
    match PostgresStore::open(&url, opts()).await {
        Err(StoreError::Locked(m)) => {
            assert!(m.contains(&format!("pid {}", std::process::id())), "names the holder's pid: {m}");
            assert!(m.contains("--db"), "suggests a fix: {m}");
            assert!(m.contains(&redact_url(&url)), "names the database: {m}");
        }
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("expected Locked, got a second store"),
    }
    drop(first);
    // Dropping closes the lock connection; the open waits the moment the
    // server takes to end that session (the holder is this process).
    let second = open(&url).await;
    assert_eq!(second.commit(vec![create("a", 1)].into()).await.unwrap(), vec![Ok(1)]);
    drop(second);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_reads_while_the_engine_runs_and_refuses_writes() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    match PostgresStore::open_read_only(&url).await {
        Err(StoreError::Schema(m)) => assert!(m.contains("not a redrive database"), "{m}"),
        Err(e) => panic!("expected Schema, got {e}"),
        Ok(_) => panic!("an empty database must be refused"),
    }
    let engine = open(&url).await;
    assert_eq!(engine.commit(vec![create("a", 1)].into()).await.unwrap(), vec![Ok(1)]);
    let reader = PostgresStore::open_read_only(&url).await.unwrap();
    assert!(reader.is_read_only() && !engine.is_read_only());
    assert_eq!(reader.get_execution("a").await.unwrap().unwrap().version, 1);
    assert_eq!(reader.ledger("a").await.unwrap().len(), 1);
    match reader.commit(vec![create("b", 1)].into()).await {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("read-only"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    match reader.put_pipeline("p", "{}", None, Timestamp::from_unix_ms(1)).await {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("read-only"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(reader.interrupt_redrive_runs(Timestamp::from_unix_ms(1)).await, Err(StoreError::Unavailable(_))));
    assert_eq!(engine.get_execution("b").await.unwrap(), None);
    assert_eq!(engine.commit(vec![create("c", 1)].into()).await.unwrap(), vec![Ok(1)], "the engine keeps writing");
    drop((engine, reader));
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ledger_is_append_only() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    let store = open(&url).await;
    assert_eq!(store.commit(vec![create("a", 1)].into()).await.unwrap(), vec![Ok(1)]);
    let conn = raw(&url).await;
    for sql in ["UPDATE ledger SET stage = 'X'", "DELETE FROM ledger", "DELETE FROM ledger WHERE false", "TRUNCATE ledger CASCADE"] {
        let e = conn.batch_execute(sql).await.expect_err(sql);
        let message = e.as_db_error().map(|d| d.message().to_owned()).unwrap_or_default();
        assert!(message.contains("append-only"), "{sql}: {message}");
    }
    // Retention lists the executions whose rows may go; no other row may.
    let other_listed = "BEGIN; INSERT INTO ledger_prunable VALUES ('other'); DELETE FROM ledger; COMMIT";
    let e = conn.batch_execute(other_listed).await.expect_err("deleting an unlisted execution's rows");
    assert!(e.as_db_error().is_some_and(|d| d.message().contains("append-only")), "{e}");
    conn.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(store.ledger("a").await.unwrap().len(), 1);
    drop(store);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn newer_schema_is_refused() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    drop(open(&url).await);
    let conn = raw(&url).await;
    conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", &[&99_i64, &0_i64]).await.unwrap();
    let check = |result: Result<PostgresStore, StoreError>| match result {
        Err(StoreError::Schema(m)) => assert!(m.contains("schema version 99") && m.contains("newer"), "{m}"),
        Err(e) => panic!("expected Schema, got {e}"),
        Ok(_) => panic!("a newer schema must be refused"),
    };
    check(PostgresStore::open_read_only(&url).await);
    check(PostgresStore::open(&url, opts()).await);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_opens_of_a_fresh_database() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::open(&url, opts()).await })
        })
        .collect();
    let mut stores = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(store) => stores.push(store),
            Err(StoreError::Locked(_)) => {}
            Err(e) => panic!("expected a store or Locked, got {e}"),
        }
    }
    assert_eq!(stores.len(), 1, "exactly one open takes the engine lock");
    let conn = raw(&url).await;
    let applied: i64 = conn.query_one("SELECT COUNT(*) FROM schema_migrations", &[]).await.unwrap().get(0);
    assert_eq!(applied, i64::from(redrive_store::postgres::SCHEMA_VERSION), "each migration applied exactly once");
    let token: i64 = conn.query_one("SELECT token FROM engine_lock WHERE id = 1", &[]).await.unwrap().get(0);
    assert_eq!(token, 1, "one engine took the token");
    assert_eq!(stores[0].commit(vec![create("a", 1)].into()).await.unwrap(), vec![Ok(1)]);
    drop(stores);
    dbs.drop_all().await;
}

/// Installs a trigger (through a raw connection) that makes inserting a timer
/// with key `boom` fail, to provoke a failure in the middle of a group.
async fn poison_timer_key(url: &str) {
    raw(url)
        .await
        .batch_execute(
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.key = 'boom' THEN RAISE EXCEPTION 'boom timer refused'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER boom BEFORE INSERT ON timers FOR EACH ROW EXECUTE FUNCTION boom();",
        )
        .await
        .unwrap();
}

fn poisoned(id: &str) -> Transition {
    let mut t = create(id, 1);
    t.set_timers[0].key = "boom".into();
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn failure_mid_transaction_commits_nothing() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    let store = open(&url).await;
    poison_timer_key(&url).await;

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
    drop(store);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn poisoned_request_fails_alone_in_a_group() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    let store = Arc::new(open(&url).await);
    poison_timer_key(&url).await;

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
    drop(store);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bumped_fencing_token_loses_the_store() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    let store = open(&url).await;
    assert_eq!(store.commit(vec![create("a", 1)].into()).await.unwrap(), vec![Ok(1)]);
    let conn = raw(&url).await;
    conn.batch_execute("UPDATE engine_lock SET token = token + 1 WHERE id = 1").await.unwrap();

    match store.commit(vec![create("b", 1)].into()).await {
        Err(StoreError::Lost(m)) => assert!(m.contains("another process took over"), "{m}"),
        other => panic!("expected Lost, got {other:?}"),
    }
    let written: i64 = conn.query_one("SELECT COUNT(*) FROM executions WHERE id = 'b'", &[]).await.unwrap().get(0);
    assert_eq!(written, 0, "a fenced-off commit writes nothing");
    assert!(matches!(store.commit(vec![create("c", 1)].into()).await, Err(StoreError::Lost(_))), "lost for good");
    assert!(matches!(store.put_pipeline("p", "{}", None, Timestamp::from_unix_ms(1)).await, Err(StoreError::Lost(_))));
    assert!(matches!(store.get_execution("a").await, Err(StoreError::Lost(_))));
    drop(store);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn terminated_connections_recover_without_loss_or_doubling() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    let store = open(&url).await;
    for i in 0..10 {
        assert_eq!(store.commit(vec![create(&format!("e{i}"), i)].into()).await.unwrap(), vec![Ok(1)]);
    }
    let db = url.rsplit('/').next().unwrap().to_owned();
    let admin = raw(&admin_url()).await;
    let terminated: i64 = admin
        .query_one(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()) t",
            &[&db],
        )
        .await
        .unwrap()
        .get(0);
    assert!(terminated >= 2, "the lock connection and a pooled one: {terminated}");

    let mut unavailable = 0;
    for i in 10..20 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match store.commit(vec![create(&format!("e{i}"), i)].into()).await {
                Ok(result) => {
                    assert_eq!(result, vec![Ok(1)], "e{i}");
                    break;
                }
                Err(StoreError::Unavailable(m)) => {
                    assert!(Instant::now() < deadline, "e{i}: the store did not recover: {m}");
                    unavailable += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("e{i}: {e}"),
            }
        }
    }
    assert!(unavailable < 500, "no hot loop");
    for i in 0..20 {
        let id = format!("e{i}");
        assert_eq!(store.get_execution(&id).await.unwrap().unwrap().version, 1, "{id}");
        assert_eq!(store.ledger(&id).await.unwrap().len(), 1, "{id}: written once");
    }
    // The lock was re-taken on a new connection: the token is ours, bumped once.
    let conn = raw(&url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = conn.query_one("SELECT token, pid FROM engine_lock WHERE id = 1", &[]).await.unwrap();
        let (token, pid): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(pid, i64::from(std::process::id()));
        if token == 2 {
            break;
        }
        assert!(token == 1 && Instant::now() < deadline, "the engine lock was not re-taken (token {token})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.commit(vec![create("after", 1)].into()).await {
            Ok(result) => break assert_eq!(result, vec![Ok(1)]),
            Err(StoreError::Unavailable(m)) if Instant::now() < deadline => {
                let _ = m;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("after the re-take: {e}"),
        }
    }
    drop(store);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_take_over_while_reconnecting_loses_the_store() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    let store = open(&url).await;
    assert_eq!(store.commit(vec![create("a", 1)].into()).await.unwrap(), vec![Ok(1)]);
    let db = url.rsplit('/').next().unwrap().to_owned();
    let admin = raw(&admin_url()).await;
    // Kill the store's sessions (its engine lock goes), and take the token as
    // another engine would before the store re-takes the lock.
    admin
        .execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", &[&db])
        .await
        .unwrap();
    raw(&url).await.batch_execute("UPDATE engine_lock SET token = token + 1, pid = 0 WHERE id = 1").await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.commit(vec![create("b", 1)].into()).await {
            Err(StoreError::Lost(m)) => break assert!(m.contains("another process took over"), "{m}"),
            Err(StoreError::Unavailable(m)) => {
                assert!(Instant::now() < deadline, "never lost: {m}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("expected Lost, got {other:?}"),
        }
    }
    assert!(matches!(store.get_execution("a").await, Err(StoreError::Lost(_))), "lost for good");
    let written: i64 = raw(&url).await.query_one("SELECT COUNT(*) FROM executions WHERE id = 'b'", &[]).await.unwrap().get(0);
    assert_eq!(written, 0);
    drop(store);
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_never_show_a_password() {
    let url = "postgres://postgres:supersecret@127.0.0.1:1/nowhere";
    let errors = [PostgresStore::open(url, opts()).await.err(), PostgresStore::open_read_only(url).await.err()];
    for error in errors {
        match error {
            Some(StoreError::Unavailable(m)) => {
                assert!(!m.contains("supersecret"), "{m}");
                assert!(m.contains("postgres://postgres:***@127.0.0.1:1/nowhere"), "names the database: {m}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert_eq!(redact_url(url), "postgres://postgres:***@127.0.0.1:1/nowhere");

    // A database that does not exist, on a live server.
    let missing = url_for(&admin_url(), "redrive_t_no_such_database");
    for error in [PostgresStore::open(&missing, opts()).await.err(), PostgresStore::open_read_only(&missing).await.err()] {
        match error {
            Some(StoreError::NotFound(m)) => assert!(m.contains("does not exist"), "{m}"),
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nul_character_is_refused_as_a_limit() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    let store = open(&url).await;
    let mut nul = create("b", 1);
    nul.ledger[0].message = Some("stderr: \0 binary".into());
    let results = store.commit(vec![create("a", 1), nul, create("c", 1)].into()).await.unwrap();
    assert_eq!(results[0], Ok(1));
    match &results[1] {
        Err(redrive_store::TransitionError::Limit(m)) => assert!(m.contains("ledger message") && m.contains("U+0000"), "{m}"),
        other => panic!("expected a Limit refusal, got {other:?}"),
    }
    assert_eq!(results[2], Ok(1));
    assert_eq!(store.get_execution("b").await.unwrap(), None);
    assert!(matches!(store.put_pipeline("p", "{\"a\":\"\0\"}", None, Timestamp::from_unix_ms(1)).await, Err(StoreError::Limit(_))));
    drop(store);
    dbs.drop_all().await;
}

/// [`create`] for an execution of pipeline `name`.
fn create_in(id: &str, name: &str, at: i64) -> Transition {
    Transition { target: Target::pipeline(name, 1), ..create(id, at) }
}

/// The ids of what a store's scoped listings see: its due timers, its
/// unfinished executions (newest first), its next due time and timer count.
async fn seen_by(store: &PostgresStore) -> (Vec<String>, Vec<String>, Option<Timestamp>, u64) {
    let far = Timestamp::from_unix_ms(i64::MAX / 2);
    let timers = store.due_timers(far, 100).await.unwrap().into_iter().map(|t| t.execution_id).collect();
    let filter = redrive_store::ExecutionFilter { unfinished_only: true, ..Default::default() };
    let unfinished = store.list_executions(filter).await.unwrap().into_iter().map(|e| e.id).collect();
    (timers, unfinished, store.next_timer_due().await.unwrap(), store.count_timers().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_store_drives_its_shard_only() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    let (orders, payments) = (ShardId::of("orders"), ShardId::of("payments-api"));
    assert_ne!(orders, payments, "the test needs two shards");
    let member = PostgresStore::open_member(&url, opts()).await.unwrap();
    let a = member.shard_member(orders, &opts()).unwrap();
    let b = member.shard_member(payments, &opts()).unwrap();
    assert_eq!((a.shard(), member.shard()), (Some(orders), None));
    assert!(matches!(a.commit(vec![create_in("o1", "orders", 1)].into()).await, Err(StoreError::Unavailable(_))), "follows until it leads");
    assert!(a.try_lead().await.unwrap() && b.try_lead().await.unwrap());
    assert_eq!(a.commit(vec![create_in("o1", "orders", 1)].into()).await.unwrap(), vec![Ok(1)]);
    assert_eq!(b.commit(vec![create_in("p1", "payments-api", 5)].into()).await.unwrap(), vec![Ok(1)]);

    // Another shard's execution is refused alone; the rest of the group commits.
    let mixed = a.commit(vec![create_in("p2", "payments-api", 2), create_in("o2", "orders", 3)].into()).await.unwrap();
    assert_eq!(mixed[0], Err(TransitionError::OutsideShard { execution_id: "p2".into(), shard: payments, held: orders }));
    assert_eq!(mixed[1], Ok(1));
    let conn = raw(&url).await;
    let rows =
        conn.query("SELECT e.id, e.shard, t.shard FROM executions e JOIN timers t ON t.execution_id = e.id ORDER BY e.id", &[]).await;
    let stored: Vec<(String, i16, i16)> = rows.unwrap().iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    let (o, p) = (orders.index() as i16, payments.index() as i16);
    assert_eq!(stored, vec![("o1".into(), o, o), ("o2".into(), o, o), ("p1".into(), p, p)]);

    // Each shard's store lists its own executions and timers only.
    let t = |ms| Some(Timestamp::from_unix_ms(ms));
    assert_eq!(seen_by(&a).await, (vec!["o1".into(), "o2".into()], vec!["o2".into(), "o1".into()], t(101), 2));
    assert_eq!(seen_by(&b).await, (vec!["p1".into()], vec!["p1".into()], t(105), 1));
    assert_eq!(seen_by(&member).await.3, 3, "the whole database's store sees every timer");
    let first = a.due_timers(t(101).unwrap(), 1).await.unwrap().remove(0);
    let after = a.due_timers_after(Timestamp::from_unix_ms(i64::MAX / 2), &first, 10).await;
    assert_eq!(after.unwrap().into_iter().map(|t| t.execution_id).collect::<Vec<_>>(), vec!["o2".to_owned()]);

    // No engine takes the whole database while shards are held.
    assert!(!member.try_lead().await.unwrap());
    assert!(matches!(PostgresStore::open(&url, opts()).await, Err(StoreError::Locked(_))));
    // Another process cannot take a held shard.
    let other = PostgresStore::open_member(&url, opts()).await.unwrap();
    assert!(!other.shard_member(orders, &opts()).unwrap().try_lead().await.unwrap());

    // A take-over of one shard (its token bumped) fences that shard's store only.
    conn.execute("UPDATE engine_lock SET token = token + 1 WHERE id = $1", &[&(2 + i32::from(orders.index()))]).await.unwrap();
    match a.commit(vec![create_in("o3", "orders", 4)].into()).await {
        Err(StoreError::Lost(m)) => assert!(m.contains(&format!("shard {orders}")), "{m}"),
        other => panic!("expected Lost, got {other:?}"),
    }
    assert_eq!(b.commit(vec![create_in("p3", "payments-api", 6)].into()).await.unwrap(), vec![Ok(1)]);
    // A shard's store shares the process's pool: dropping it leaves the pool open.
    drop(a);
    assert!(member.get_execution("o1").await.unwrap().is_some());
    assert_eq!(b.commit(vec![create_in("p4", "payments-api", 7)].into()).await.unwrap(), vec![Ok(1)]);
    drop((b, other, member));
    dbs.drop_all().await;
}

/// Each shard's store keeps its dependency records apart (from each other's
/// and the whole database's); every shard's are listed with their shard.
#[tokio::test(flavor = "multi_thread")]
async fn shard_stores_keep_their_dependency_states_apart() {
    use redrive_store::{DependencyRecord, ShardDependencyRecord};
    let dbs = Databases::default();
    let url = dbs.create().await;
    let (orders, payments) = (ShardId::of("orders"), ShardId::of("payments-api"));
    let member = PostgresStore::open_member(&url, opts()).await.unwrap();
    let a = member.shard_member(orders, &opts()).unwrap();
    let b = member.shard_member(payments, &opts()).unwrap();
    assert!(a.try_lead().await.unwrap() && b.try_lead().await.unwrap());
    let rec = |state: &str, at| DependencyRecord { name: "svc".into(), state_json: state.into(), updated_at: Timestamp::from_unix_ms(at) };
    a.put_dependencies(vec![rec("{\"a\":1}", 1)]).await.unwrap();
    b.put_dependencies(vec![rec("{\"b\":1}", 2)]).await.unwrap();
    a.put_dependencies(vec![rec("{\"a\":2}", 3)]).await.unwrap();
    assert_eq!(a.list_dependencies().await.unwrap(), [rec("{\"a\":2}", 3)], "its own, replaced");
    assert_eq!(b.list_dependencies().await.unwrap(), [rec("{\"b\":1}", 2)], "not overwritten by another shard's");
    assert_eq!(member.list_dependencies().await.unwrap(), [], "the whole database's are apart");
    let mut expected = vec![
        ShardDependencyRecord { shard: orders, record: rec("{\"a\":2}", 3) },
        ShardDependencyRecord { shard: payments, record: rec("{\"b\":1}", 2) },
    ];
    expected.sort_by_key(|r| r.shard);
    assert_eq!(member.list_shard_dependencies().await.unwrap(), expected);
    // A fenced shard's store writes none.
    let conn = raw(&url).await;
    conn.execute("UPDATE engine_lock SET token = token + 1 WHERE id = $1", &[&lock_row(orders)]).await.unwrap();
    assert!(a.put_dependencies(vec![rec("{\"a\":3}", 4)]).await.is_err());
    assert_eq!(b.list_dependencies().await.unwrap().len(), 1);
    assert_eq!(member.list_shard_dependencies().await.unwrap(), expected, "the fenced write changed nothing");
    drop((a, b, member));
    dbs.drop_all().await;
}

/// Holds the lock rows `rows` (`FOR UPDATE`, in a transaction of `conn`,
/// bumping the token of `bump` if given: a take-over as `engine_lock` sees it)
/// until the returned transaction commits; meanwhile a write transaction of a
/// store of one of them waits at its first statement.
async fn hold_lock_rows<'c>(conn: &'c mut Client, rows: &[i32], bump: Option<i32>) -> tokio_postgres::Transaction<'c> {
    let tx = conn.transaction().await.unwrap();
    tx.execute("UPDATE engine_lock SET token = token + (id = $2)::INT WHERE id = ANY($1)", &[&rows.to_vec(), &bump.unwrap_or(0)])
        .await
        .unwrap();
    tx
}

/// Waits until `n` write transactions wait at their fencing check.
async fn until_writers_wait(conn: &Client, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock' AND query LIKE '%FROM engine_lock WHERE id = ANY%FOR SHARE'";
        let waiting: i64 = conn.query_one(sql, &[]).await.unwrap().get(0);
        if waiting >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{waiting} write transactions wait for the lock rows, not {n}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Commits `t` through `store` on a task of its own.
fn spawn_commit(store: &Arc<PostgresStore>, t: Transition) -> tokio::task::JoinHandle<Result<CommitResult, StoreError>> {
    let store = Arc::clone(store);
    tokio::spawn(async move { store.commit(vec![t].into()).await })
}

/// `n` pipeline names of distinct shards, none in `taken`.
fn names_in_other_shards(n: usize, taken: &[ShardId]) -> Vec<String> {
    let mut shards = taken.to_vec();
    let mut names = Vec::new();
    for i in 0.. {
        let name = format!("x{i}");
        if names.len() == n {
            break;
        }
        if !shards.contains(&ShardId::of(&name)) {
            shards.push(ShardId::of(&name));
            names.push(name);
        }
    }
    names
}

/// The `engine_lock` row of `shard`.
fn lock_row(shard: ShardId) -> i32 {
    2 + i32::from(shard.index())
}

/// Sends a commit through each of `stores` (of pipeline `names`), one after
/// the other once the previous one's group waits for its lock row: one group
/// per store, in flight at once.
async fn occupy_the_writer(
    stores: &[Arc<PostgresStore>],
    names: &[String],
    round: i64,
    watcher: &Client,
) -> Vec<tokio::task::JoinHandle<Result<CommitResult, StoreError>>> {
    let mut tasks = Vec::new();
    for (store, name) in stores.iter().zip(names) {
        tasks.push(spawn_commit(store, create_in(&format!("{name}-{round}"), name, round)));
        until_writers_wait(watcher, tasks.len() as i64).await;
    }
    assert_eq!(tasks.len(), MAX_WRITE_GROUPS_IN_FLIGHT);
    tasks
}

#[tokio::test(flavor = "multi_thread")]
async fn shard_stores_of_a_process_share_one_writer_and_are_fenced_apart() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    let (orders, payments) = (ShardId::of("orders"), ShardId::of("payments-api"));
    let member = PostgresStore::open_member(&url, opts()).await.unwrap();
    let a = Arc::new(member.shard_member(orders, &opts()).unwrap());
    let b = Arc::new(member.shard_member(payments, &opts()).unwrap());
    // Stores of other shards whose groups keep the writer's every slot busy.
    let busy_names = names_in_other_shards(MAX_WRITE_GROUPS_IN_FLIGHT, &[orders, payments]);
    let mut busy = Vec::new();
    for name in &busy_names {
        busy.push(Arc::new(member.shard_member(ShardId::of(name), &opts()).unwrap()));
    }
    for store in busy.iter().chain([&a, &b]) {
        assert!(store.try_lead().await.unwrap());
    }
    let busy_rows: Vec<i32> = busy_names.iter().map(|name| lock_row(ShardId::of(name))).collect();
    let (mut blocker, watcher) = (raw(&url).await, raw(&url).await);

    // While the writer's groups wait (as many at once as it runs), both
    // shards' commits queue: then one group, one transaction.
    let held = hold_lock_rows(&mut blocker, &busy_rows, None).await;
    let mut firsts = occupy_the_writer(&busy, &busy_names, 1, &watcher).await;
    firsts.push(spawn_commit(&a, create_in("o1", "orders", 2)));
    firsts.push(spawn_commit(&b, create_in("p1", "payments-api", 3)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.commit().await.unwrap();
    for task in firsts {
        assert_eq!(task.await.unwrap().unwrap(), vec![Ok(1)]);
    }
    let xmin = "SELECT count(DISTINCT xmin::TEXT) FROM executions WHERE id IN ('o1', 'p1')";
    assert_eq!(watcher.query_one(xmin, &[]).await.unwrap().get::<_, i64>(0), 1, "o1 and p1 were written by one transaction");

    // Shard A taken over while requests of both shards wait: A's are refused
    // (A is lost for good), B's in the same group commit.
    let rows: Vec<i32> = busy_rows.iter().copied().chain([lock_row(orders)]).collect();
    let held = hold_lock_rows(&mut blocker, &rows, Some(lock_row(orders))).await;
    let firsts = occupy_the_writer(&busy, &busy_names, 2, &watcher).await;
    let (o3, p3) = (spawn_commit(&a, create_in("o3", "orders", 5)), spawn_commit(&b, create_in("p3", "payments-api", 6)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.commit().await.unwrap();
    for task in firsts {
        assert_eq!(task.await.unwrap().unwrap(), vec![Ok(1)]);
    }
    assert!(matches!(o3.await.unwrap(), Err(StoreError::Lost(_))), "shard A's commit is refused");
    assert_eq!(p3.await.unwrap().unwrap(), vec![Ok(1)], "shard B's commit in the same window goes in");
    assert!(a.get_execution("o1").await.is_err() && a.lost_reason().is_some(), "A is lost for good");
    let sql = "SELECT id FROM executions WHERE shard = ANY($1) ORDER BY id";
    let shards = vec![orders.index() as i16, payments.index() as i16];
    let stored: Vec<String> = watcher.query(sql, &[&shards]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(stored, ["o1", "p1", "p3"]);

    // Another process takes shard A (A's store let its lock go) and writes it;
    // B goes on beside it.
    let other = PostgresStore::open_member(&url, opts()).await.unwrap();
    let taker = other.shard_member(orders, &opts()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !taker.try_lead().await.unwrap() {
        assert!(Instant::now() < deadline, "the other process could not take shard A");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(taker.commit(vec![create_in("o4", "orders", 7)].into()).await.unwrap(), vec![Ok(1)]);
    assert!(matches!(a.commit(vec![create_in("o5", "orders", 8)].into()).await, Err(StoreError::Lost(_))));
    assert_eq!(b.commit(vec![create_in("p4", "payments-api", 9)].into()).await.unwrap(), vec![Ok(1)]);
    drop((a, b, busy, member, taker, other));
    dbs.drop_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_written_before_shards_get_their_shard() {
    let dbs = Databases::default();
    let url = dbs.create().await;
    let store = open(&url).await;
    let group = vec![create_in("o1", "orders", 1), create_in("p1", "payments-api", 2), create_in("a1", "a", 3)];
    assert_eq!(store.commit(group.into()).await.unwrap(), vec![Ok(1), Ok(1), Ok(1)]);
    drop(store);
    let conn = raw(&url).await;
    // The database as the release before shards left it.
    conn.batch_execute(
        "DELETE FROM schema_migrations WHERE version >= 6; DROP TABLE shard_dependencies; \
         DROP TABLE function_starts; ALTER TABLE members DROP COLUMN kind; \
         DROP INDEX executions_shard_unfinished; DROP INDEX timers_shard_due; \
         ALTER TABLE executions DROP COLUMN shard; ALTER TABLE timers DROP COLUMN shard; \
         DELETE FROM engine_lock WHERE id > 1; \
         ALTER TABLE engine_lock DROP CONSTRAINT engine_lock_id_check; \
         ALTER TABLE engine_lock ADD CONSTRAINT engine_lock_id_check CHECK (id = 1);",
    )
    .await
    .unwrap();
    let store = open(&url).await;
    let rows = conn.query("SELECT e.id, e.pipeline_name, e.shard, t.shard FROM executions e JOIN timers t ON t.execution_id = e.id", &[]);
    for row in rows.await.unwrap() {
        let (id, name, shard, timer_shard): (String, String, i16, i16) = (row.get(0), row.get(1), row.get(2), row.get(3));
        let expected = ShardId::of(&name).index() as i16;
        assert_eq!((shard, timer_shard), (expected, expected), "execution {id} of {name}");
    }
    let defaults = conn
        .query(
            "SELECT column_default FROM information_schema.columns WHERE column_name = 'shard' AND table_name IN ('executions', 'timers')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        defaults.iter().map(|r| r.get::<_, Option<String>>(0)).collect::<Vec<_>>(),
        vec![None, None],
        "every insert names its shard"
    );
    let locks: i64 = conn.query_one("SELECT COUNT(*) FROM engine_lock", &[]).await.unwrap().get(0);
    assert_eq!(locks, 1 + i64::from(redrive_core::shard::SHARD_COUNT));
    drop(store);
    dbs.drop_all().await;
}

/// A start request reaches its shard's store only, is answered once and its
/// outcome read once; limits are checked where it enters; outcomes nobody
/// read are pruned. Members count only their own kind, and see the shards
/// held by the other kind's.
#[tokio::test(flavor = "multi_thread")]
async fn start_requests_reach_their_shards_holder_once() {
    use redrive_store::{MemberKind, StartRequest, limits};
    let dbs = Databases::default();
    let url = dbs.create().await;
    let (orders, payments) = (ShardId::of("orders"), ShardId::of("payments-api"));
    let functions = PostgresOptions { kind: MemberKind::Functions, ..opts() };
    let member = PostgresStore::open_member(&url, functions.clone()).await.unwrap();
    let a = member.shard_member(orders, &functions).unwrap();
    let b = member.shard_member(payments, &functions).unwrap();
    assert!(a.try_lead().await.unwrap() && b.try_lead().await.unwrap());
    let mut listener = member.listen_for_start_requests().await.unwrap();
    let request = StartRequest { function: "orders".into(), name: "order-1".into(), input_json: "{\"cents\":42}".into() };
    let at = Timestamp::from_unix_ms(1_000);
    let id = member.request_function_start(orders, &request, at).await.unwrap();
    // Announced to the listeners, with its shard.
    let announced = tokio::time::timeout(Duration::from_secs(10), listener.next()).await;
    assert_eq!(announced, Ok(Some(orders)));
    let waiting = a.waiting_function_starts(10).await.unwrap();
    assert_eq!(waiting.iter().map(|w| (w.id, &w.request, w.requested_at)).collect::<Vec<_>>(), [(id, &request, at)]);
    assert_eq!(b.waiting_function_starts(10).await.unwrap(), [], "another shard's store does not see it");
    assert!(matches!(member.waiting_function_starts(10).await, Err(StoreError::Unavailable(_))), "only a shard's store reads them");
    assert_eq!(member.take_function_start_outcome(id).await.unwrap(), None, "not answered yet");
    let outcome = "{\"outcome\":\"notRegistered\"}";
    assert!(a.answer_function_start(id, outcome, at).await.unwrap());
    assert!(!a.answer_function_start(id, "{}", at).await.unwrap(), "answered once");
    assert_eq!(a.waiting_function_starts(10).await.unwrap(), []);
    assert_eq!(member.take_function_start_outcome(id).await.unwrap().as_deref(), Some(outcome));
    assert_eq!(member.take_function_start_outcome(id).await.unwrap(), None, "read once");

    // Limits where a request enters: refused, nothing written.
    let too_big = StartRequest { input_json: "x".repeat(limits::MAX_INPUT_BYTES + 1), ..request.clone() };
    let nul = StartRequest { name: "a\0b".into(), ..request.clone() };
    let bad_function = StartRequest { function: "no spaces".into(), ..request.clone() };
    for bad in [too_big, nul, bad_function] {
        assert!(matches!(member.request_function_start(orders, &bad, at).await, Err(StoreError::Limit(_))), "{:?}", bad.name);
    }
    assert_eq!(a.waiting_function_starts(10).await.unwrap(), []);

    // An outcome nobody read is pruned once older than the cut-off.
    let unread = member.request_function_start(orders, &request, at).await.unwrap();
    assert!(a.answer_function_start(unread, "{}", Timestamp::from_unix_ms(2_000)).await.unwrap());
    assert_eq!(member.prune_function_start_outcomes(Timestamp::from_unix_ms(2_000)).await.unwrap(), 0);
    assert_eq!(member.prune_function_start_outcomes(Timestamp::from_unix_ms(2_001)).await.unwrap(), 1);

    // A server (another kind) holding a shard: seen, and not counted as a peer.
    let conn = raw(&url).await;
    let now = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";
    let sql = format!(
        "INSERT INTO members (id, host, pid, url, started_at, heartbeat_at, kind) VALUES ('srv-1', 'h', 1, NULL, {now}, {now}, 'server')"
    );
    conn.execute(&sql, &[]).await.unwrap();
    assert_eq!(member.shard_holders_of_other_kinds().await.unwrap(), Vec::<String>::new(), "it holds no shard yet");
    let free = ShardId::all().find(|s| ![orders, payments].contains(s)).unwrap();
    let sql = format!("UPDATE engine_lock SET member = 'srv-1', expires_at = {now} + 60000 WHERE id = $1");
    conn.execute(&sql, &[&lock_row(free)]).await.unwrap();
    assert_eq!(member.shard_holders_of_other_kinds().await.unwrap(), ["srv-1"]);
    assert_eq!(member.live_members().await.unwrap(), [redrive_store::member_id()], "members of its own kind only");
    drop((a, b, member));
    dbs.drop_all().await;
}
