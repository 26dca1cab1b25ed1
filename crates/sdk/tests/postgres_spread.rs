//! Durable functions spread over two SDK processes on one PostgreSQL
//! database: the test binary re-runs itself as the two worker processes. They
//! share the 16 shards, a start of a function whose shard the other process
//! holds is run there, and after a `kill -9` of one the other takes its
//! shards over and finishes its executions.
//! Needs PostgreSQL (scripts/ensure-postgres.sh; REDRIVE_TEST_POSTGRES_URL).

#[allow(dead_code)]
mod support;

use redrive_core::shard::{SHARD_COUNT, ShardId};
use redrive_sdk::{Context, Engine, Error, OpenOptions, StepPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "REDRIVE_SDK_TEST_SPREAD_WORKER";

fn admin_url() -> String {
    std::env::var("REDRIVE_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql]).output().expect("psql");
    assert!(out.status.success(), "{sql}: {} (is PostgreSQL running? scripts/ensure-postgres.sh)", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One function per shard: `fn-N` names, the first found for each shard.
fn functions() -> BTreeMap<ShardId, String> {
    let mut by_shard = BTreeMap::new();
    for i in 0.. {
        by_shard.entry(ShardId::of(&format!("fn-{i}"))).or_insert_with(|| format!("fn-{i}"));
        if by_shard.len() == usize::from(SHARD_COUNT) {
            return by_shard;
        }
    }
    unreachable!()
}

/// What a worker's function does: one step that logs its run
/// (`EXECUTION PID`) to `runs.log`, sleeps `sleep_ms`, and returns the pid.
async fn work(ctx: Context, sleep_ms: u64, dir: PathBuf) -> Result<u32, Error> {
    let name = ctx.execution_name();
    let pid = ctx
        .step("work", StepPolicy::default(), |_| {
            let (name, dir) = (name.clone(), dir.clone());
            async move {
                let mut log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("runs.log")).unwrap();
                // One write(2) per line: O_APPEND keeps the lines of concurrent writers whole.
                log.write_all(format!("{name} {}\n", std::process::id()).as_bytes()).unwrap();
                tokio::time::sleep(Duration::from_millis(sleep_ms)).await;
                Ok(std::process::id())
            }
        })
        .await?;
    Ok(pid)
}

/// Not a test on its own: a worker process (runs only with CHILD_ENV =
/// `URL DIR ROLE LEASE_MS`). Every worker registers the functions; the `starter`
/// also starts a batch of executions when asked (a file `go-BATCH-SLEEPMS`:
/// one per function, one after the other; `burst-FUNCTION`: 100 of one
/// function at once) and writes their results (`results-BATCH.json`:
/// execution name → pid).
#[test]
fn child_worker() {
    let Ok(spec) = std::env::var(CHILD_ENV) else { return };
    let parts: Vec<&str> = spec.split(' ').collect();
    let (url, dir, starter) = (parts[0].to_string(), PathBuf::from(parts[1]), parts[2] == "starter");
    let lease = Duration::from_millis(parts[3].parse().unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let engine = Engine::open_with(&url, OpenOptions::default().lease(lease)).await.unwrap();
        for name in functions().values() {
            let dir = dir.clone();
            engine.register(name, move |ctx, sleep_ms: u64| work(ctx, sleep_ms, dir.clone()));
        }
        let addr = engine.serve("127.0.0.1:0").await.unwrap();
        std::fs::write(dir.join(format!("addr-{}", std::process::id())), addr.to_string()).unwrap();
        std::fs::write(dir.join(format!("ready-{}", std::process::id())), "").unwrap();
        let engine = std::sync::Arc::new(engine);
        let mut done = BTreeSet::new();
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if !starter {
                continue;
            }
            for entry in std::fs::read_dir(&dir).unwrap() {
                let file = entry.unwrap().file_name().to_string_lossy().to_string();
                if let Some(function) = file.strip_prefix("burst-") {
                    if done.insert(file.clone()) {
                        burst(&engine, function, &dir).await;
                    }
                    continue;
                }
                let Some(rest) = file.strip_prefix("go-") else { continue };
                if !done.insert(file.clone()) {
                    continue;
                }
                let (batch, sleep_ms) = rest.split_once('-').unwrap();
                let mut handles = Vec::new();
                for name in functions().values() {
                    let execution = format!("{batch}-{name}");
                    handles.push((execution.clone(), engine.start(name, &execution, &sleep_ms.parse::<u64>().unwrap()).await.unwrap()));
                }
                let mut results = BTreeMap::new();
                for (execution, handle) in handles {
                    results.insert(execution, handle.result::<u32>().await.unwrap());
                }
                std::fs::write(dir.join(format!("results-{batch}.json")), serde_json::to_string(&results).unwrap()).unwrap();
            }
        }
    });
}

/// A worker process, killed when dropped (also when the test fails).
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        support::kill9(&mut self.0);
    }
}

/// 100 executions of `function` started at once (each from a task of its own).
async fn burst(engine: &std::sync::Arc<Engine>, function: &str, dir: &Path) {
    let mut starting = tokio::task::JoinSet::new();
    for i in 0..100 {
        let (engine, function) = (engine.clone(), function.to_string());
        starting.spawn(async move {
            let execution = format!("burst-{i}");
            let pid = engine.start(&function, &execution, &0u64).await.unwrap().result::<u32>().await.unwrap();
            (execution, pid)
        });
    }
    let results: BTreeMap<String, u32> = starting.join_all().await.into_iter().collect();
    std::fs::write(dir.join("results-burst.json"), serde_json::to_string(&results).unwrap()).unwrap();
}

fn spawn_worker(url: &str, dir: &Path, role: &str, lease: Duration) -> Worker {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_worker", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{url} {} {role} {}", dir.display(), lease.as_millis()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Worker(child)
}

/// Polls `f` until it returns `Some`, for at most `limit`.
fn within<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The live shard leases: shard → holder's pid.
fn holders(url: &str) -> BTreeMap<u16, u32> {
    let rows = psql(
        url,
        "SELECT l.id - 2, m.pid FROM engine_lock l JOIN members m ON m.id = l.member \
         WHERE l.id >= 2 AND l.expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT",
    );
    rows.lines().filter_map(|l| l.split_once('|')).map(|(s, p)| (s.parse().unwrap(), p.parse().unwrap())).collect()
}

fn results(dir: &Path, batch: &str) -> Option<BTreeMap<String, u32>> {
    serde_json::from_str(&std::fs::read_to_string(dir.join(format!("results-{batch}.json"))).ok()?).ok()
}

/// One `GET` over a fresh connection: (status, JSON body).
fn get(addr: &str, path: &str) -> (u16, serde_json::Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status: u16 = out[9..12].parse().unwrap();
    (status, out.split_once("\r\n\r\n").and_then(|x| serde_json::from_str(x.1).ok()).unwrap_or_default())
}

/// `(execution name, pid)` of every step run logged.
fn runs(dir: &Path) -> Vec<(String, u32)> {
    let text = std::fs::read_to_string(dir.join("runs.log")).unwrap_or_default();
    text.lines().filter_map(|l| l.split_once(' ')).map(|(e, p)| (e.to_string(), p.parse().unwrap())).collect()
}

/// Two workers on a fresh database, the shards split between them.
struct Pair {
    db: String,
    url: String,
    dir: tempfile::TempDir,
    /// The starter, then the runner.
    a: Worker,
    b: Worker,
    a_pid: u32,
    b_pid: u32,
    /// Shard → holder's pid once they split 8/8.
    split: BTreeMap<u16, u32>,
}

/// Starts worker A (the starter) on database `redrive_sdk_TAG_PID`, checks it
/// holds every shard alone, starts B, and waits for the 8/8 split.
fn two_workers(tag: &str, lease: Duration) -> Pair {
    let db = format!("redrive_sdk_{tag}_{}", std::process::id());
    psql(&admin_url(), &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
    psql(&admin_url(), &format!("CREATE DATABASE {db}"));
    let url = format!("{}/{db}", admin_url().rsplit_once('/').unwrap().0);
    let dir = tempfile::tempdir().unwrap();
    let a = spawn_worker(&url, dir.path(), "starter", lease);
    let a_pid = a.0.id();
    within(Duration::from_secs(30), "worker A opens", || dir.path().join(format!("ready-{a_pid}")).exists().then_some(()));
    assert_eq!(holders(&url).values().collect::<BTreeSet<_>>(), BTreeSet::from([&a_pid]), "alone, A holds every shard");
    let b = spawn_worker(&url, dir.path(), "runner", lease);
    let b_pid = b.0.id();
    let split = within(Duration::from_secs(30), "the shards split 8/8", || {
        let h = holders(&url);
        let count = |pid| h.values().filter(|p| **p == pid).count();
        (h.len() == 16 && count(a_pid) == 8 && count(b_pid) == 8).then_some(h)
    });
    Pair { db, url, dir, a, b, a_pid, b_pid, split }
}

#[test]
fn two_sdk_processes_share_the_shards_forward_starts_and_take_over_after_a_kill() {
    let Pair { db, url, dir, a, b, a_pid, b_pid, split } = two_workers("spread", Duration::from_secs(10));

    // A starts an execution of a function in every shard: each runs at its shard's holder.
    let asked = Instant::now();
    std::fs::write(dir.path().join("go-fast-0"), "").unwrap();
    let fast = within(Duration::from_secs(30), "the fast batch's results", || results(dir.path(), "fast"));
    eprintln!("16 starts (8 forwarded) and their results, one after the other: {:?}", asked.elapsed());
    for (shard, name) in functions() {
        assert_eq!(fast[&format!("fast-{name}")], split[&shard.index()], "{name} (shard {shard}) ran at its holder");
    }
    assert_eq!(runs(dir.path()).len(), 16, "each step ran once");
    // Either process's API shows any function's executions (served by its shard's holder).
    for pid in [a_pid, b_pid] {
        let addr = std::fs::read_to_string(dir.path().join(format!("addr-{pid}"))).unwrap();
        for name in functions().values() {
            // (503 only while a shard changes hands: the routes follow within 200 ms.)
            let v = within(Duration::from_secs(5), &format!("{name}'s executions at {pid}"), || {
                let (status, v) = get(&addr, &format!("/v1/functions/{name}/executions"));
                (status == 200).then_some(v)
            });
            assert_eq!(v["executions"][0]["name"], format!("fast-{name}"), "{name} at {pid}: {v}");
        }
    }

    // 100 starts at once of a function of B's: more than a page of requests, all run at B.
    let b_function = &functions()[&ShardId::new(*split.iter().find(|(_, p)| **p == b_pid).unwrap().0).unwrap()];
    std::fs::write(dir.path().join(format!("burst-{b_function}")), "").unwrap();
    let burst = within(Duration::from_secs(30), "the burst's results", || results(dir.path(), "burst"));
    assert_eq!(burst.len(), 100);
    assert!(burst.values().all(|p| *p == b_pid), "{burst:?}");
    // Slow steps; B is killed while it runs some: A takes its shards and finishes them.
    std::fs::write(dir.path().join("go-slow-3000"), "").unwrap();
    within(Duration::from_secs(30), "B runs a slow step", || {
        runs(dir.path()).iter().any(|(e, p)| e.starts_with("slow-") && *p == b_pid).then_some(())
    });
    drop(b); // kill -9
    let slow = within(Duration::from_secs(60), "the slow batch's results after the kill", || results(dir.path(), "slow"));
    assert_eq!(slow.len(), 16);
    let b_shards: Vec<ShardId> = split.iter().filter(|(_, p)| **p == b_pid).map(|(s, _)| ShardId::new(*s).unwrap()).collect();
    for shard in &b_shards {
        let name = &functions()[shard];
        assert_eq!(slow[&format!("slow-{name}")], a_pid, "{name} was finished by A after B died");
    }
    assert_eq!(holders(&url).values().collect::<BTreeSet<_>>(), BTreeSet::from([&a_pid]), "A holds every shard again");
    // Each slow step ran at most twice (once more only if B died running it), and A ran each once.
    let slow_runs: Vec<(String, u32)> = runs(dir.path()).into_iter().filter(|(e, _)| e.starts_with("slow-")).collect();
    for name in functions().values() {
        let by_a = slow_runs.iter().filter(|(e, p)| *e == format!("slow-{name}") && *p == a_pid).count();
        assert_eq!(by_a, 1, "slow-{name} ran once at A: {slow_runs:?}");
    }
    let status = psql(&url, "SELECT status, count(*) FROM executions GROUP BY status");
    assert_eq!(status, "Succeeded|132");
    drop(a);
    psql(&admin_url(), &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
}

fn signal(worker: &Worker, signal: i32) {
    // SAFETY: kill(2) on our own child process.
    assert_eq!(unsafe { libc::kill(worker.0.id() as i32, signal) }, 0);
}

/// `(execution name, result)` of every execution, as stored.
fn stored_results(url: &str) -> BTreeMap<String, String> {
    let rows = psql(url, "SELECT state_json::json->>'name', COALESCE(state_json::json->>'result', '-') FROM executions");
    rows.lines().filter_map(|l| l.split_once('|')).map(|(n, r)| (n.to_string(), r.to_string())).collect()
}

#[test]
fn a_stalled_sdk_process_loses_its_shards_and_its_late_results_are_refused() {
    let Pair { db, url, dir, a, b, a_pid, b_pid, split } = two_workers("stall", Duration::from_secs(2));

    // B stops (SIGSTOP) while running slow steps: A takes its shards after the lease and runs them again.
    std::fs::write(dir.path().join("go-slow-3000"), "").unwrap();
    within(Duration::from_secs(30), "B runs a slow step", || runs(dir.path()).iter().any(|(_, p)| *p == b_pid).then_some(()));
    signal(&b, libc::SIGSTOP);
    let slow = within(Duration::from_secs(60), "the results after B stalled", || results(dir.path(), "slow"));
    for (shard, name) in functions() {
        let expected = if split[&shard.index()] == b_pid { a_pid } else { split[&shard.index()] };
        assert_eq!(slow[&format!("slow-{name}")], expected, "{name} (shard {shard})");
    }
    let before = stored_results(&url);
    assert_eq!(before.len(), 16);

    // B continues: its steps finish, and their results are refused (its token is stale).
    signal(&b, libc::SIGCONT);
    std::thread::sleep(Duration::from_secs(4)); // its 3 s steps end, and a heartbeat or two
    assert_eq!(stored_results(&url), before, "nothing B did after its lease lapsed was recorded");
    assert_eq!(psql(&url, "SELECT status, count(*) FROM executions GROUP BY status"), "Succeeded|16");
    // It is fenced, not gone: it takes its share again.
    within(Duration::from_secs(30), "B holds shards again", || {
        let h = holders(&url);
        (h.len() == 16 && h.values().filter(|p| **p == b_pid).count() == 8).then_some(())
    });
    drop((a, b));
    psql(&admin_url(), &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
}
