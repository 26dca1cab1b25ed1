//! W5: W1 spread over processes. `--processes N` `redrive server --spread`
//! children (this binary) on a fresh PostgreSQL database (created beside the
//! one `--db` names, dropped afterwards) share its 16 shards; the bench
//! creates one W1 pipeline per shard (5 noop actions in sequence, each failing
//! its first attempt with `Step.SERVICE_FAULT`, retried at 0 s), starts N
//! executions over HTTP spread over the pipelines and the servers, and waits
//! until none is in progress. Attempts are counted in the ledger; the wall time
//! runs from the first start to the last execution's end.

use crate::OutputFormat;
use crate::bench::{ACTIONS, BenchArgs, median};
use redrive_core::shard::{SHARD_COUNT, ShardId};
use redrive_store::StoreLocation;
use serde::Serialize;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tokio_postgres::NoTls;

/// Most `--processes`.
pub(crate) const PROCESSES_MAX: usize = 8;
/// How many times a start answered 503 is sent.
const START_TRIES: usize = 50;
/// Starts in flight at once per server.
const START_WINDOW_PER_SERVER: usize = 256;
/// Longest wait for the shards to be shared, and for the executions to finish.
const SHARE_DEADLINE_S: u64 = 120;
const FINISH_DEADLINE_S: u64 = 900;
/// The servers' lease (their heartbeat is a fifth of it, at most 1 s).
const LEASE_SECONDS: &str = "5";

/// One round. Field names are part of `--output json` (docs/benchmarks.md).
#[derive(Serialize)]
pub(crate) struct W5Round {
    pub wall_seconds: f64,
    pub starts_seconds: f64,
    /// Ledger rows: every attempt, counted.
    pub attempts: u64,
    pub attempts_per_second: f64,
    /// Executions that did not succeed (should be 0).
    pub not_succeeded: u64,
}

#[derive(Serialize)]
pub(crate) struct W5Report {
    pub workload: &'static str,
    pub executions: usize,
    pub processes: usize,
    pub rounds: Vec<W5Round>,
    pub median_attempts_per_second: f64,
}

pub(crate) async fn run(args: &BenchArgs, processes: usize) -> anyhow::Result<()> {
    let Some(StoreLocation::Postgres(url)) = &args.db else {
        anyhow::bail!(
            "W5 runs `redrive server --spread` processes on PostgreSQL: give --db postgres://… (a database whose user may create databases)"
        )
    };
    anyhow::ensure!((1..=PROCESSES_MAX).contains(&processes), "--processes must be between 1 and {PROCESSES_MAX}");
    let mut rounds = Vec::with_capacity(args.runs);
    for round in 0..args.runs {
        let fresh = FreshDatabase::create(url.expose(), round).await?;
        let result = one_round(&fresh.url, args.executions(), processes).await;
        fresh.drop_it().await;
        rounds.push(result?);
    }
    let median_attempts_per_second = median(&rounds.iter().map(|r| r.attempts_per_second).collect::<Vec<_>>());
    let report = W5Report { workload: "w5", executions: args.executions(), processes, rounds, median_attempts_per_second };
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        OutputFormat::Text => print_text(&report),
    }
    Ok(())
}

/// A database made for one round beside the one `--db` names.
struct FreshDatabase {
    admin: String,
    name: String,
    url: String,
}

impl FreshDatabase {
    async fn create(admin: &str, round: usize) -> anyhow::Result<FreshDatabase> {
        let name = format!("redrive_w5_{}_{round}", std::process::id());
        let (client, connection) = tokio_postgres::connect(admin, NoTls).await?;
        tokio::spawn(connection);
        // The name is made here from digits and letters: no quoting problem.
        client.batch_execute(&format!("CREATE DATABASE {name}")).await?;
        let url = match admin.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => anyhow::bail!("--db must name a database: postgres://USER@HOST:PORT/DB"),
        };
        Ok(FreshDatabase { admin: admin.to_string(), name, url })
    }

    async fn drop_it(self) {
        if let Ok((client, connection)) = tokio_postgres::connect(&self.admin, NoTls).await {
            tokio::spawn(connection);
            let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).await;
        }
    }
}

/// A `--spread` server on `db`; its address once it listens.
fn start_server(db: &str) -> anyhow::Result<(Child, String)> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .args(["server", "--cluster-mode", "spread", "--listen", "127.0.0.1:0", "--grace-seconds", "1", "--lease-seconds", LEASE_SECONDS])
        // In the environment, not argv: a password in the URL is not shown by ps.
        .env("REDRIVE_DB", db);
    crate::bench_w3::spawn_server(&mut command)
}

/// Stops the servers (SIGTERM) when dropped.
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            // SAFETY: kill(2) with the pid of a child this process spawned and has not reaped.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        for child in &mut self.0 {
            let _ = child.wait();
        }
    }
}

/// One pipeline name per shard: `w5-0`, `w5-1`, … the first of each shard.
fn pipeline_names() -> Vec<String> {
    let mut names: Vec<Option<String>> = vec![None; usize::from(SHARD_COUNT)];
    for i in 0.. {
        let name = format!("w5-{i}");
        let slot = &mut names[usize::from(ShardId::of(&name).index())];
        if slot.is_none() {
            *slot = Some(name);
        }
        if names.iter().all(Option::is_some) {
            break;
        }
    }
    names.into_iter().flatten().collect()
}

fn definition(name: &str) -> serde_json::Value {
    let actions: Vec<serde_json::Value> = (1..=ACTIONS)
        .map(|i| {
            serde_json::json!({"name": format!("A{i}"), "runOrder": i,
                "noop": {"failFirst": 1, "failWith": "Step.SERVICE_FAULT"},
                "retryPolicies": [{"exceptionType": ["Step.SERVICE_FAULT"], "intervalSeconds": 0, "maxAttempts": 3}]})
        })
        .collect();
    serde_json::json!({"name": name, "executionMode": "PARALLEL", "maxConcurrentExecutions": 10000,
        "stages": [{"name": "Work", "actions": actions}]})
}

/// Waits until `processes` members each hold their share of the shards.
async fn wait_for_shares(client: &reqwest::Client, addr: &str, processes: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(SHARE_DEADLINE_S);
    loop {
        let status: redrive_wire::ClusterStatus = client.get(format!("http://{addr}/v1/cluster")).send().await?.json().await?;
        let holding: Vec<usize> = status.members.iter().map(|m| m.shards.len()).filter(|n| *n > 0).collect();
        let shares_even = holding.iter().all(|n| n.abs_diff(usize::from(SHARD_COUNT) / processes) <= 1);
        if holding.len() == processes && holding.iter().sum::<usize>() == usize::from(SHARD_COUNT) && shares_even {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the shards were not shared by {processes} processes within {SHARE_DEADLINE_S} s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn one_round(db: &str, executions: usize, processes: usize) -> anyhow::Result<W5Round> {
    let mut servers = Servers(Vec::new());
    let mut addrs = Vec::new();
    for _ in 0..processes {
        let (child, addr) = start_server(db)?;
        servers.0.push(child);
        addrs.push(addr);
    }
    let client = reqwest::Client::new();
    wait_for_shares(&client, &addrs[0], processes).await?;
    let names = pipeline_names();
    for name in &names {
        let created = client.post(format!("http://{}/v1/pipelines", addrs[0])).json(&definition(name)).send().await?;
        anyhow::ensure!(created.status().as_u16() == 201, "creating pipeline {name}: HTTP {}", created.status());
    }
    let started = Instant::now();
    let mut starts = tokio::task::JoinSet::new();
    for i in 0..executions {
        if starts.len() >= START_WINDOW_PER_SERVER * processes {
            starts.join_next().await.expect("a start in flight")??;
        }
        let url = format!("http://{}/v1/pipelines/{}/executions", addrs[i % processes], names[i % names.len()]);
        let client = client.clone();
        starts.spawn(async move {
            // A 503 (a shard moving, or the routes a heartbeat behind) is retried
            // after a moment, as a client would after its Retry-After.
            for _ in 0..START_TRIES {
                let r = client.post(&url).header("content-type", "application/json").body("{}").send().await?;
                match r.status().as_u16() {
                    201 => return anyhow::Ok(()),
                    503 => tokio::time::sleep(Duration::from_millis(100)).await,
                    status => anyhow::bail!("starting an execution: HTTP {status}: {}", r.text().await.unwrap_or_default()),
                }
            }
            anyhow::bail!("starting an execution: HTTP 503 {START_TRIES} times")
        });
    }
    while let Some(r) = starts.join_next().await {
        r??;
    }
    let starts_seconds = started.elapsed().as_secs_f64();
    let (reader, connection) = tokio_postgres::connect(db, NoTls).await?;
    tokio::spawn(connection);
    let deadline = Instant::now() + Duration::from_secs(FINISH_DEADLINE_S);
    loop {
        let unfinished: i64 = reader.query_one("SELECT count(*) FROM executions WHERE status = 'InProgress'", &[]).await?.get(0);
        if unfinished == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{unfinished} executions still in progress after {FINISH_DEADLINE_S} s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    drop(servers);
    let attempts: i64 = reader.query_one("SELECT count(*) FROM ledger", &[]).await?.get(0);
    let not_succeeded: i64 = reader.query_one("SELECT count(*) FROM executions WHERE status <> 'Succeeded'", &[]).await?.get(0);
    let attempts = u64::try_from(attempts).unwrap_or(0);
    Ok(W5Round {
        wall_seconds,
        starts_seconds,
        attempts,
        attempts_per_second: attempts as f64 / wall_seconds,
        not_succeeded: u64::try_from(not_succeeded).unwrap_or(0),
    })
}

fn print_text(r: &W5Report) {
    println!("W5: {} executions × {ACTIONS} actions over {} `redrive server --spread` processes (PostgreSQL)", r.executions, r.processes);
    for (i, round) in r.rounds.iter().enumerate() {
        println!(
            "  round {}: {} attempts in {:.2} s ({:.0} attempts/s; starts took {:.2} s; {} not succeeded)",
            i + 1,
            round.attempts,
            round.wall_seconds,
            round.attempts_per_second,
            round.starts_seconds,
            round.not_succeeded
        );
    }
    println!("  median: {:.0} attempts/s", r.median_attempts_per_second);
}
