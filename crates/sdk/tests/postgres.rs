//! The SDK on a PostgreSQL store (`Engine::open("postgres://…")`): a durable
//! function's steps are checkpointed there and replayed after a restart.
//! Needs PostgreSQL (scripts/ensure-postgres.sh; REDRIVE_TEST_POSTGRES_URL).

use redrive_sdk::{Context, Engine, Error, StepPolicy};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn admin_url() -> String {
    std::env::var("REDRIVE_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Runs `sql` on the database at `url`; its output.
fn psql_on(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql]).output().expect("psql");
    assert!(out.status.success(), "{sql}: {} (is PostgreSQL running? scripts/ensure-postgres.sh)", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn psql(sql: &str) {
    psql_on(&admin_url(), sql);
}

/// A new empty database `redrive_sdk_TAG_PID`: its name and URL.
fn fresh_database(tag: &str) -> (String, String) {
    let name = format!("redrive_sdk_{tag}_{}", std::process::id());
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql(&format!("CREATE DATABASE {name}"));
    let url = format!("{}/{name}", admin_url().rsplit_once('/').unwrap().0);
    (name, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_on_postgres_replays_its_checkpoints_after_a_restart() {
    let (name, url) = fresh_database("replay");
    let runs = Arc::new(AtomicUsize::new(0));
    let register = |engine: &Engine| {
        let runs = runs.clone();
        engine.register("charge", move |ctx: Context, cents: u32| {
            let runs = runs.clone();
            async move {
                let id: String = ctx
                    .step("charge", StepPolicy::default(), |_| {
                        let runs = runs.clone();
                        async move { Ok(format!("ch_{}_{cents}", runs.fetch_add(1, Ordering::SeqCst))) }
                    })
                    .await?;
                Ok::<_, Error>(id)
            }
        });
    };
    let engine = Engine::open(&url).await.unwrap();
    register(&engine);
    let first: String = engine.start("charge", "order-1", &42u32).await.unwrap().result().await.unwrap();
    assert_eq!(first, "ch_0_42");
    engine.shutdown().await;
    drop(engine);

    // Another engine on the same database: the same start returns the recorded result.
    let engine = Engine::open(&url).await.unwrap();
    register(&engine);
    let again: String = engine.start("charge", "order-1", &42u32).await.unwrap().result().await.unwrap();
    assert_eq!(again, "ch_0_42");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the step ran once");
    engine.shutdown().await;
    drop(engine);
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

/// An SDK process does not open a database whose shards a `redrive server`
/// holds (a server cannot run a function's steps): the error names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_process_refuses_a_database_whose_shards_a_server_holds() {
    let (name, url) = fresh_database("roles");
    let engine = Engine::open(&url).await.unwrap(); // makes the schema
    engine.shutdown().await;
    drop(engine);
    let on_db = |sql: &str| drop(psql_on(&url, sql));
    let now = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";
    on_db(&format!(
        "INSERT INTO members (id, host, pid, url, started_at, heartbeat_at, kind) VALUES ('srv-9', 'h', 9, 'http://h:1', {now}, {now}, 'server')"
    ));
    on_db(&format!("UPDATE engine_lock SET member = 'srv-9', expires_at = {now} + 60000 WHERE id = 5"));
    match Engine::open(&url).await {
        Err(Error::Engine(message)) => assert!(message.contains("redrive server(s) srv-9"), "{message}"),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("opened beside a server"),
    }
    // Once the server's lease is gone, it opens and holds every shard.
    on_db("UPDATE engine_lock SET expires_at = 0 WHERE id = 5");
    let engine = Engine::open(&url).await.unwrap();
    engine.shutdown().await;
    drop(engine);
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

/// `shutdown` lets every shard go at once (another process may take them),
/// also while handles of the engine's executions are kept and its API was served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_frees_every_shard_at_once() {
    let (name, url) = fresh_database("free");
    let advisory_locks = || {
        let sql = format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database WHERE l.locktype = 'advisory' AND d.datname = '{name}'"
        );
        psql_on(&admin_url(), &sql).parse::<u32>().unwrap()
    };
    let engine = Engine::open(&url).await.unwrap();
    engine.register("echo", |_ctx: Context, n: u32| async move { Ok::<_, Error>(n) });
    engine.serve("127.0.0.1:0").await.unwrap();
    let handle = engine.start("echo", "one", &7u32).await.unwrap();
    assert_eq!(handle.result::<u32>().await.unwrap(), 7);
    assert!(advisory_locks() >= 16, "the 16 shards' locks are held");
    engine.shutdown().await;
    // Sessions end asynchronously once their connections are dropped.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while advisory_locks() > 0 {
        assert!(std::time::Instant::now() < deadline, "shard locks still held after shutdown: {}", advisory_locks());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop((handle, engine));
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

/// `OpenOptions::lease` sets the shards' lease (renewed every heartbeat, a
/// fifth of it); a lease under a second is refused as invalid input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shards_lease_is_the_one_asked_for() {
    use redrive_sdk::OpenOptions;
    let (name, url) = fresh_database("lease");
    let short = OpenOptions::default().lease(std::time::Duration::from_millis(500));
    assert!(matches!(Engine::open_with(&url, short).await, Err(Error::Invalid(m)) if m.contains("at least 1000 ms")));
    let engine = Engine::open_with(&url, OpenOptions::default().lease(std::time::Duration::from_secs(2))).await.unwrap();
    let sql = "SELECT max(expires_at) - (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT FROM engine_lock WHERE id >= 2";
    let left_ms: i64 = psql_on(&url, sql).parse().unwrap();
    assert!((0..=2_000).contains(&left_ms), "a shard's lease runs {left_ms} ms more (asked for 2 s)");
    engine.shutdown().await;
    drop(engine);
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}

/// The database goes away while a step runs (connections refused, every
/// session ended) and comes back: the SDK process keeps its shards (its locks
/// re-taken), commits the step's result once it can, and the execution
/// finishes without the step running again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdk_process_rides_out_a_database_outage() {
    let (name, url) = fresh_database("outage");
    let engine = Engine::open(&url).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    engine.register("slow", move |ctx: Context, n: u32| {
        let runs = counted.clone();
        async move {
            let v: u32 = ctx
                .step("wait", StepPolicy::default(), |_| {
                    let runs = runs.clone();
                    async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
                        Ok(n + 1)
                    }
                })
                .await?;
            Ok::<_, Error>(v)
        }
    });
    let handle = engine.start("slow", "one", &41u32).await.unwrap();
    while runs.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Waiting for the result from before the outage to after it.
    let waiting = tokio::spawn(async move { handle.result::<u32>().await });
    psql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"));
    psql(&format!("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{name}'"));
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    psql(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"));
    let result = tokio::time::timeout(std::time::Duration::from_secs(60), waiting).await;
    assert_eq!(result.expect("finished within 60 s after the outage").unwrap().unwrap(), 42);
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the step ran once");
    engine.shutdown().await;
    drop(engine);
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
}
