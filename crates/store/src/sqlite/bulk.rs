//! Bulk stage retry operations on SQLite: the migration that adds their
//! tables, the writes the writer runs and the listings.

use crate::StoreError;
use crate::bulk::{BulkRetryRecord, BulkRetryResult, BulkWrite};
use redrive_core::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Operations and their per-execution results. Self-contained (it touches no
/// other table), so it can be renumbered when merged with others.
pub(super) const MIGRATION_BULK_RETRIES: &str = r#"
CREATE TABLE bulk_retries (
    id           TEXT    NOT NULL PRIMARY KEY,
    pipeline     TEXT    NOT NULL,
    stage        TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    request_json TEXT    NOT NULL,
    summary_json TEXT    NOT NULL
);
CREATE INDEX bulk_retries_pipeline_started ON bulk_retries (pipeline, started_at, id);
CREATE INDEX bulk_retries_running          ON bulk_retries (id) WHERE status = 'RUNNING';
CREATE TABLE bulk_retry_results (
    op_id        TEXT    NOT NULL REFERENCES bulk_retries (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    execution_id TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,
    reason       TEXT,
    at           INTEGER NOT NULL,
    PRIMARY KEY (op_id, seq),
    UNIQUE (op_id, execution_id)
);
"#;

/// Finished operations that finished before ?1, oldest first, `LIMIT ?2`;
/// their results go with them (`ON DELETE CASCADE`). No index: operations are
/// few (each is started by hand).
pub(super) const SQL_PRUNE: &str = "DELETE FROM bulk_retries WHERE id IN (
    SELECT id FROM bulk_retries WHERE status <> 'RUNNING' AND finished_at < ?1 ORDER BY finished_at, id LIMIT ?2)";
pub(super) const SQL_COUNT_PRUNABLE: &str = "SELECT COUNT(*) FROM bulk_retries WHERE status <> 'RUNNING' AND finished_at < ?1";

const COLUMNS: &str = "id, pipeline, stage, status, started_at, finished_at, request_json, summary_json";
const SQL_INSERT: &str = "INSERT OR IGNORE INTO bulk_retries \
     (id, pipeline, stage, status, started_at, finished_at, request_json, summary_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const SQL_UPDATE: &str = "UPDATE bulk_retries SET status = ?2, finished_at = ?3, summary_json = ?4 WHERE id = ?1";
const SQL_INTERRUPT: &str = "UPDATE bulk_retries SET status = 'INTERRUPTED', finished_at = ?1 WHERE status = 'RUNNING'";
const SQL_EXISTS: &str = "SELECT 1 FROM bulk_retries WHERE id = ?1";
const SQL_INSERT_RESULT: &str = "INSERT OR IGNORE INTO bulk_retry_results \
     (op_id, seq, execution_id, outcome, reason, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Applies one write inside the writer's transaction. A refused write (an id
/// taken, a result already recorded, no such operation) is the inner error and
/// writes nothing.
pub(super) fn apply(conn: &Connection, write: &BulkWrite) -> rusqlite::Result<Result<u64, StoreError>> {
    match write {
        BulkWrite::Create(r) => {
            let n = conn.prepare_cached(SQL_INSERT)?.execute(params![
                r.id,
                r.pipeline,
                r.stage,
                r.status,
                r.started_at.unix_ms(),
                r.finished_at.map(Timestamp::unix_ms),
                r.request_json,
                r.summary_json
            ])?;
            Ok(if n == 0 { Err(StoreError::AlreadyExists(format!("bulk retry {} already exists", r.id))) } else { Ok(1) })
        }
        BulkWrite::Update(r) => {
            let n =
                conn.prepare_cached(SQL_UPDATE)?.execute(params![r.id, r.status, r.finished_at.map(Timestamp::unix_ms), r.summary_json])?;
            Ok(if n == 0 { Err(StoreError::NotFound(format!("bulk retry {}", r.id))) } else { Ok(1) })
        }
        BulkWrite::Interrupt(now) => Ok(Ok(conn.prepare_cached(SQL_INTERRUPT)?.execute(params![now.unix_ms()])? as u64)),
        BulkWrite::AddResult(r) => {
            if conn.prepare_cached(SQL_EXISTS)?.query_row(params![r.op_id], |_| Ok(())).optional()?.is_none() {
                return Ok(Err(StoreError::NotFound(format!("bulk retry {}", r.op_id))));
            }
            let n = conn.prepare_cached(SQL_INSERT_RESULT)?.execute(params![
                r.op_id,
                r.seq as i64,
                r.execution_id,
                r.outcome,
                r.reason,
                r.at.unix_ms()
            ])?;
            Ok(if n == 0 {
                Err(StoreError::AlreadyExists(format!(
                    "bulk retry {} already has a result for execution {} or seq {}",
                    r.op_id, r.execution_id, r.seq
                )))
            } else {
                Ok(1)
            })
        }
    }
}

pub(super) fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<BulkRetryRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM bulk_retries WHERE id = ?1");
    conn.prepare_cached(&sql)?.query_row(params![id], record_from_row).optional()
}

/// Newest first `(started_at DESC, id DESC)`, strictly before `before`.
pub(super) fn list(
    conn: &Connection,
    pipeline: &str,
    before: Option<&(Timestamp, String)>,
    limit: i64,
) -> rusqlite::Result<Vec<BulkRetryRecord>> {
    let (at, id) = before.map_or((i64::MAX, ""), |(at, id)| (at.unix_ms(), id.as_str()));
    let sql = format!(
        "SELECT {COLUMNS} FROM bulk_retries WHERE pipeline = ?1 AND (started_at < ?2 OR (started_at = ?2 AND id < ?3)) \
         ORDER BY started_at DESC, id DESC LIMIT ?4"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params![pipeline, at, id, limit], record_from_row)?;
    rows.collect()
}

/// Results in `seq` order, after `after_seq`.
pub(super) fn results(conn: &Connection, op_id: &str, after_seq: u64, limit: i64) -> rusqlite::Result<Vec<BulkRetryResult>> {
    let sql = "SELECT op_id, seq, execution_id, outcome, reason, at FROM bulk_retry_results \
               WHERE op_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";
    conn.prepare_cached(sql)?
        .query_map(params![op_id, after_seq as i64, limit], |row| {
            Ok(BulkRetryResult {
                op_id: row.get(0)?,
                seq: row.get::<_, i64>(1)? as u64,
                execution_id: row.get(2)?,
                outcome: row.get(3)?,
                reason: row.get(4)?,
                at: Timestamp::from_unix_ms(row.get(5)?),
            })
        })?
        .collect()
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<BulkRetryRecord> {
    Ok(BulkRetryRecord {
        id: row.get(0)?,
        pipeline: row.get(1)?,
        stage: row.get(2)?,
        status: row.get(3)?,
        started_at: Timestamp::from_unix_ms(row.get(4)?),
        finished_at: row.get::<_, Option<i64>>(5)?.map(Timestamp::from_unix_ms),
        request_json: row.get(6)?,
        summary_json: row.get(7)?,
    })
}
