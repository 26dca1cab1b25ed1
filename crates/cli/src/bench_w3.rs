//! W3: recovery. A `redrive server` (this binary, as a child process) starts N
//! executions of a pipeline whose first action is a 2 s noop, is killed with
//! SIGKILL while the first wave runs, and is restarted on the same SQLite file.
//! From the attempt ledger (read only): the first attempt that started after
//! the restart, the latest re-dispatch of an attempt that was running at the
//! kill (recovered as `Step.SERVICE_FAULT`; its next attempt is the
//! re-dispatch), executions that never succeeded, and actions that succeeded
//! twice (a committed success run again).

use crate::OutputFormat;
use crate::bench::{BenchArgs, median};
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Starts in flight at once over HTTP.
const START_WINDOW: usize = 64;
/// How long the first wave runs before the kill.
const KILL_AFTER_MS: u64 = 1_000;
/// Longest wait for every execution to finish after the restart.
const FINISH_DEADLINE_S: u64 = 600;

const PIPELINE: &str = r#"{"name": "w3", "executionMode": "PARALLEL", "maxConcurrentExecutions": 10000,
  "stages": [{"name": "One", "actions": [{"name": "Slow", "noop": {"sleepMs": 2000}}]},
             {"name": "Two", "actions": [{"name": "Quick", "noop": {}}]}]}"#;

/// One round. Field names are part of `--output json` (docs/benchmarks.md).
#[derive(Serialize)]
pub(crate) struct W3Round {
    pub restart_to_ready_ms: u64,
    /// The first attempt started after the restart (null: none).
    pub first_new_attempt_ms: Option<i64>,
    /// The latest re-dispatch of an attempt running at the kill (null: none was).
    pub all_redispatched_ms: Option<i64>,
    /// Attempts running at the kill (recovered as Step.SERVICE_FAULT).
    pub in_flight_at_kill: u64,
    pub lost: u64,
    pub committed_rerun: u64,
}

#[derive(Serialize)]
pub(crate) struct W3Report {
    pub workload: &'static str,
    pub executions: usize,
    pub rounds: Vec<W3Round>,
    pub median_first_new_attempt_ms: Option<f64>,
    pub median_all_redispatched_ms: Option<f64>,
}

pub(crate) async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.db.is_none(), "W3 runs its own server on a fresh SQLite file: --db is not taken");
    anyhow::ensure!(args.durability == crate::bench::DurabilityArg::Full, "W3 runs the server as it ships: full durability");
    anyhow::ensure!(args.executions() <= 10_000, "W3 runs one pipeline of at most 10000 unfinished executions");
    let mut rounds = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        rounds.push(one_round(args).await?);
    }
    let med = |f: &dyn Fn(&W3Round) -> Option<i64>| {
        let v: Vec<f64> = rounds.iter().filter_map(f).map(|v| v as f64).collect();
        (!v.is_empty()).then(|| median(&v))
    };
    let report = W3Report {
        workload: "w3",
        executions: args.executions(),
        median_first_new_attempt_ms: med(&|r| r.first_new_attempt_ms),
        median_all_redispatched_ms: med(&|r| r.all_redispatched_ms),
        rounds,
    };
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => print_text(&report),
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// A server on `db` with an ephemeral port; its address once it listens.
fn start_server(db: &Path) -> anyhow::Result<(Child, String)> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["server", "--listen", "127.0.0.1:0", "--grace-seconds", "1", "--db"]).arg(db);
    spawn_server(&mut command)
}

/// Spawns `command` (a `redrive server` listening on an ephemeral port); the
/// child and its address once it announces it.
pub(crate) fn spawn_server(command: &mut Command) -> anyhow::Result<(Child, String)> {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().expect("piped stderr");
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line?;
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
            // Keep draining the server's log so it never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok((child, addr));
        }
    }
    anyhow::bail!("the server did not start (exit {:?})", child.wait()?.code())
}

async fn one_round(args: &BenchArgs) -> anyhow::Result<W3Round> {
    let tmp = tempfile::tempdir()?;
    let db = tmp.path().join("w3.db");
    let (mut server, addr) = start_server(&db)?;
    let client = reqwest::Client::new();
    let base = format!("http://{addr}/v1/pipelines");
    let created = client.post(&base).header("content-type", "application/json").body(PIPELINE).send().await?;
    anyhow::ensure!(created.status().as_u16() == 201, "creating the pipeline: HTTP {}", created.status());
    let mut starts = tokio::task::JoinSet::new();
    for _ in 0..args.executions() {
        if starts.len() >= START_WINDOW {
            starts.join_next().await.expect("a start in flight")??;
        }
        let (client, url) = (client.clone(), format!("{base}/w3/executions"));
        starts.spawn(async move {
            let r = client.post(url).header("content-type", "application/json").body("{}").send().await?;
            anyhow::ensure!(r.status().as_u16() == 201, "starting an execution: HTTP {}", r.status());
            anyhow::Ok(())
        });
    }
    while let Some(r) = starts.join_next().await {
        r??;
    }
    tokio::time::sleep(Duration::from_millis(KILL_AFTER_MS)).await;
    server.kill()?; // SIGKILL
    server.wait()?;
    let restarted_at = now_ms();
    let clock = Instant::now();
    let (mut server, _) = start_server(&db)?;
    let restart_to_ready_ms = clock.elapsed().as_millis() as u64;
    let finished = wait_finished(&db).await;
    let round = finished.and_then(|()| read_round(&db, restarted_at, restart_to_ready_ms));
    // SIGTERM: a graceful stop.
    // SAFETY: kill(2) with the pid of a child this process spawned and has not reaped.
    unsafe {
        libc::kill(server.id() as libc::pid_t, libc::SIGTERM);
    }
    server.wait()?;
    round
}

async fn wait_finished(db: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(FINISH_DEADLINE_S);
    let conn = reader(db)?;
    loop {
        let unfinished: i64 = conn.query_row("SELECT count(*) FROM executions WHERE status = 'InProgress'", [], |r| r.get(0))?;
        if unfinished == 0 {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{unfinished} executions still in progress after {FINISH_DEADLINE_S} s");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn reader(db: &Path) -> anyhow::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    Ok(conn)
}

fn read_round(db: &Path, restarted_at: i64, restart_to_ready_ms: u64) -> anyhow::Result<W3Round> {
    let conn = reader(db)?;
    let count = |sql: &str| -> anyhow::Result<u64> { Ok(conn.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
    let first: Option<i64> = conn.query_row("SELECT min(started_at) FROM ledger WHERE started_at >= ?1", [restarted_at], |r| r.get(0))?;
    let redispatched: Option<i64> = conn.query_row(
        "SELECT max(n.started_at) FROM ledger AS f JOIN ledger AS n \
           ON n.execution_id = f.execution_id AND n.stage = f.stage AND n.action = f.action \
          AND n.series = f.series AND n.attempt = f.attempt + 1 \
         WHERE f.exception_type = 'Step.SERVICE_FAULT'",
        [],
        |r| r.get(0),
    )?;
    Ok(W3Round {
        restart_to_ready_ms,
        first_new_attempt_ms: first.map(|t| t - restarted_at),
        all_redispatched_ms: redispatched.map(|t| t - restarted_at),
        in_flight_at_kill: count("SELECT count(*) FROM ledger WHERE exception_type = 'Step.SERVICE_FAULT'")?,
        lost: count("SELECT count(*) FROM executions WHERE status <> 'Succeeded'")?,
        committed_rerun: count(
            "SELECT count(*) FROM (SELECT execution_id, stage, action FROM ledger WHERE outcome = 'SUCCEEDED' \
             GROUP BY 1, 2, 3 HAVING count(*) > 1)",
        )?,
    })
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

fn print_text(r: &W3Report) {
    println!("W3: kill -9 with {} executions in flight (a 2 s noop, then a quick one), restart on the same file", r.executions);
    println!(
        "| round | restart → ready (ms) | first new attempt (ms) | all re-dispatched (ms) | running at the kill | lost | committed re-run |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, x) in r.rounds.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            x.restart_to_ready_ms,
            opt(x.first_new_attempt_ms),
            opt(x.all_redispatched_ms),
            x.in_flight_at_kill,
            x.lost,
            x.committed_rerun
        );
    }
    let f = |v: Option<f64>| v.map_or_else(|| "none".to_string(), |v| format!("{v:.0}"));
    println!(
        "\nmedians: first new attempt {} ms, all re-dispatched {} ms",
        f(r.median_first_new_attempt_ms),
        f(r.median_all_redispatched_ms)
    );
}
