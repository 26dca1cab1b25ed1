//! The raw-SQLite ceilings `redrive bench` prints beside the engine's figures,
//! measured in the same process, in the same minutes, on the same disk.
//!
//! - [`attempt_ceiling`]: what SQLite alone does for the writes an attempt
//!   needs at the least — one ledger row appended and one execution's state
//!   rewritten — batched 256 attempts per transaction, WAL, with the bench's
//!   durability. Row sizes are those the engine's run wrote (measured from its
//!   file), so the loop writes as many bytes per attempt as the engine did.
//! - [`CommitProbe`]: one durable commit of one small update: the floor of
//!   anything that waits for one commit.

use crate::bench::DurabilityArg;
use rusqlite::{Connection, params};
use std::path::Path;
use std::time::Instant;

/// Attempts per transaction in the ceiling loop.
pub(crate) const ATTEMPTS_PER_TRANSACTION: usize = 256;

/// Bytes per attempt the engine wrote, read back from its store file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowSizes {
    /// Mean length of an attempt-ledger row's text columns.
    pub ledger_row_bytes: usize,
    /// Mean length of an execution's state document.
    pub state_bytes: usize,
}

impl RowSizes {
    /// The mean sizes in a redrive SQLite store (read only).
    pub(crate) fn measure(db: &Path) -> anyhow::Result<RowSizes> {
        let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        // Every column's stored length (an integer's as its digits: a few bytes
        // either way), so the loop writes about what a ledger row holds.
        let ledger: f64 = conn.query_row(
            "SELECT coalesce(avg(length(seq) + length(execution_id) + length(stage) + length(action) + length(series) \
             + length(attempt) + length(\"trigger\") + length(started_at) + length(finished_at) + length(outcome) \
             + coalesce(length(exception_type), 0) + coalesce(length(message), 0) + coalesce(length(decision_json), 0)), 0) \
             FROM ledger",
            [],
            |r| r.get(0),
        )?;
        let state: f64 = conn.query_row("SELECT coalesce(avg(length(state_json)), 0) FROM executions", [], |r| r.get(0))?;
        anyhow::ensure!(ledger > 0.0 && state > 0.0, "the engine's store holds no ledger rows or executions to size the ceiling by");
        Ok(RowSizes { ledger_row_bytes: ledger.round() as usize, state_bytes: state.round() as usize })
    }
}

/// What the ceiling loop did, counted.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ceiling {
    pub attempts: u64,
    pub wall_seconds: f64,
    pub sizes: RowSizes,
}

impl Ceiling {
    pub(crate) fn attempts_per_second(&self) -> f64 {
        self.attempts as f64 / self.wall_seconds
    }
}

fn open(path: &Path, durability: DurabilityArg) -> anyhow::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))?;
    let synchronous = match durability {
        DurabilityArg::Full => "FULL",
        DurabilityArg::Normal => "NORMAL",
    };
    conn.execute_batch(&format!("PRAGMA synchronous={synchronous};"))?;
    Ok(conn)
}

/// `attempts` attempts spread round-robin over `executions` executions: per
/// attempt one ledger INSERT and one state UPDATE, cached prepared statements,
/// [`ATTEMPTS_PER_TRANSACTION`] per transaction, in a fresh file under `dir`.
pub(crate) fn attempt_ceiling(
    dir: &Path,
    executions: usize,
    attempts: u64,
    sizes: RowSizes,
    durability: DurabilityArg,
) -> anyhow::Result<Ceiling> {
    assert!(executions > 0, "the ceiling needs executions to update");
    let path = dir.join("ceiling.db");
    let mut conn = open(&path, durability)?;
    conn.execute_batch(
        "CREATE TABLE executions (id TEXT NOT NULL PRIMARY KEY, version INTEGER NOT NULL, state_json TEXT NOT NULL);
         CREATE TABLE ledger (seq INTEGER PRIMARY KEY AUTOINCREMENT, execution_id TEXT NOT NULL, attempt INTEGER NOT NULL, record TEXT NOT NULL);",
    )?;
    let ids: Vec<String> = (0..executions).map(|i| format!("{:032x}", i as u128 * 0x9E37_79B9_7F4A_7C15)).collect();
    let state = "s".repeat(sizes.state_bytes);
    let record = "r".repeat(sizes.ledger_row_bytes);
    let tx = conn.transaction()?;
    for id in &ids {
        tx.execute("INSERT INTO executions (id, version, state_json) VALUES (?1, 0, ?2)", params![id, state])?;
    }
    tx.commit()?;

    let started = Instant::now();
    let mut done: u64 = 0;
    while done < attempts {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO ledger (execution_id, attempt, record) VALUES (?1, ?2, ?3)")?;
            let mut update = tx.prepare_cached("UPDATE executions SET version = version + 1, state_json = ?2 WHERE id = ?1")?;
            let end = (done + ATTEMPTS_PER_TRANSACTION as u64).min(attempts);
            for n in done..end {
                let id = &ids[(n % executions as u64) as usize];
                insert.execute(params![id, n / executions as u64 + 1, record])?;
                anyhow::ensure!(update.execute(params![id, state])? == 1, "the ceiling loop lost an execution row");
            }
            done = end;
        }
        tx.commit()?;
    }
    let wall_seconds = started.elapsed().as_secs_f64();
    let written: i64 = conn.query_row("SELECT count(*) FROM ledger", [], |r| r.get(0))?;
    anyhow::ensure!(written as u64 == attempts, "the ceiling loop wrote {written} ledger rows for {attempts} attempts");
    Ok(Ceiling { attempts, wall_seconds, sizes })
}

/// One durable commit of a one-row UPDATE, timed on demand, so a workload can
/// take its samples between its own executions (side by side, same moments).
pub(crate) struct CommitProbe {
    conn: Connection,
}

impl CommitProbe {
    /// A fresh file `commit-floor.db` in `dir`.
    pub(crate) fn open(dir: &Path, durability: DurabilityArg) -> anyhow::Result<CommitProbe> {
        let conn = open(&dir.join("commit-floor.db"), durability)?;
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL); INSERT INTO t VALUES (1, 0);")?;
        Ok(CommitProbe { conn })
    }

    /// Commits once; the latency in µs.
    pub(crate) fn sample(&mut self) -> anyhow::Result<u64> {
        let started = Instant::now();
        let tx = self.conn.transaction()?;
        tx.prepare_cached("UPDATE t SET v = v + 1 WHERE id = 1")?.execute([])?;
        tx.commit()?;
        Ok(started.elapsed().as_micros() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_writes_one_ledger_row_per_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = RowSizes { ledger_row_bytes: 10, state_bytes: 20 };
        let c = attempt_ceiling(dir.path(), 7, 1000, sizes, DurabilityArg::Normal).unwrap();
        assert_eq!(c.attempts, 1000);
        let conn = Connection::open(dir.path().join("ceiling.db")).unwrap();
        let versions: i64 = conn.query_row("SELECT sum(version) FROM executions", [], |r| r.get(0)).unwrap();
        assert_eq!(versions, 1000, "one state update per attempt");
    }

    #[test]
    fn a_commit_probe_commits_once_per_sample() {
        let dir = tempfile::tempdir().unwrap();
        let mut probe = CommitProbe::open(dir.path(), DurabilityArg::Normal).unwrap();
        for _ in 0..5 {
            probe.sample().unwrap();
        }
        let conn = Connection::open(dir.path().join("commit-floor.db")).unwrap();
        let v: i64 = conn.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(v, 5);
    }
}
