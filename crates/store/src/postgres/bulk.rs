//! Bulk stage retry operations on PostgreSQL: the migration that adds their
//! tables, the writes the writer runs and the listings.

use super::rows::{get, get_opt_ts, get_ts, get_u64};
use crate::StoreError;
use crate::bulk::{BulkRetryRecord, BulkRetryResult, BulkWrite};
use deadpool_postgres::Transaction;
use redrive_core::time::Timestamp;
use tokio_postgres::Row;

/// Operations and their per-execution results. Self-contained (it touches no
/// other table), so it can be renumbered when merged with others.
pub(super) const MIGRATION_BULK_RETRIES: &str = r#"
CREATE TABLE bulk_retries (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    pipeline     TEXT COLLATE "C" NOT NULL,
    stage        TEXT   NOT NULL,
    status       TEXT   NOT NULL,
    started_at   BIGINT NOT NULL,
    finished_at  BIGINT,
    request_json TEXT   NOT NULL,
    summary_json TEXT   NOT NULL
);
CREATE INDEX bulk_retries_pipeline_started ON bulk_retries (pipeline, started_at, id);
CREATE INDEX bulk_retries_running          ON bulk_retries (id) WHERE status = 'RUNNING';
CREATE TABLE bulk_retry_results (
    op_id        TEXT COLLATE "C" NOT NULL REFERENCES bulk_retries (id) ON DELETE CASCADE,
    seq          BIGINT NOT NULL,
    execution_id TEXT COLLATE "C" NOT NULL,
    outcome      TEXT   NOT NULL,
    reason       TEXT,
    at           BIGINT NOT NULL,
    PRIMARY KEY (op_id, seq),
    UNIQUE (op_id, execution_id)
);
"#;

/// Finished operations that finished before $1, oldest first, `LIMIT $2`;
/// their results go with them (`ON DELETE CASCADE`). No index: operations are
/// few (each is started by hand).
pub(super) const SQL_PRUNE: &str = "DELETE FROM bulk_retries WHERE id IN (
    SELECT id FROM bulk_retries WHERE status <> 'RUNNING' AND finished_at < $1 ORDER BY finished_at, id LIMIT $2)";
pub(super) const SQL_COUNT_PRUNABLE: &str = "SELECT COUNT(*) FROM bulk_retries WHERE status <> 'RUNNING' AND finished_at < $1";

const SQL_INSERT: &str = "INSERT INTO bulk_retries (id, pipeline, stage, status, started_at, finished_at, request_json, summary_json) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING";
const SQL_UPDATE: &str = "UPDATE bulk_retries SET status = $2, finished_at = $3, summary_json = $4 WHERE id = $1";
const SQL_INTERRUPT: &str = "UPDATE bulk_retries SET status = 'INTERRUPTED', finished_at = $1 WHERE status = 'RUNNING'";
const SQL_EXISTS: &str = "SELECT 1 FROM bulk_retries WHERE id = $1";
const SQL_INSERT_RESULT: &str = "INSERT INTO bulk_retry_results (op_id, seq, execution_id, outcome, reason, at) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING";
pub(super) const SQL_GET: &str = "SELECT id, pipeline, stage, status, started_at, finished_at, request_json, summary_json \
     FROM bulk_retries WHERE id = $1";
/// Parameters: pipeline, before (started_at, id), limit.
pub(super) const SQL_LIST: &str = "SELECT id, pipeline, stage, status, started_at, finished_at, request_json, summary_json \
     FROM bulk_retries WHERE pipeline = $1 AND (started_at, id) < ($2, $3) ORDER BY started_at DESC, id DESC LIMIT $4";
pub(super) const SQL_RESULTS: &str = "SELECT op_id, seq, execution_id, outcome, reason, at FROM bulk_retry_results \
     WHERE op_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// Applies one write inside the writer's transaction. A refused write is the
/// inner error and writes nothing.
pub(super) async fn apply(tx: &Transaction<'_>, write: &BulkWrite) -> Result<Result<u64, StoreError>, tokio_postgres::Error> {
    match write {
        BulkWrite::Create(r) => {
            let st = tx.prepare_cached(SQL_INSERT).await?;
            let finished = r.finished_at.map(Timestamp::unix_ms);
            let n = tx
                .execute(
                    &st,
                    &[&r.id, &r.pipeline, &r.stage, &r.status, &r.started_at.unix_ms(), &finished, &r.request_json, &r.summary_json],
                )
                .await?;
            Ok(if n == 0 { Err(StoreError::AlreadyExists(format!("bulk retry {} already exists", r.id))) } else { Ok(1) })
        }
        BulkWrite::Update(r) => {
            let st = tx.prepare_cached(SQL_UPDATE).await?;
            let finished = r.finished_at.map(Timestamp::unix_ms);
            let n = tx.execute(&st, &[&r.id, &r.status, &finished, &r.summary_json]).await?;
            Ok(if n == 0 { Err(StoreError::NotFound(format!("bulk retry {}", r.id))) } else { Ok(1) })
        }
        BulkWrite::Interrupt(now) => {
            let st = tx.prepare_cached(SQL_INTERRUPT).await?;
            Ok(Ok(tx.execute(&st, &[&now.unix_ms()]).await?))
        }
        BulkWrite::AddResult(r) => {
            let st = tx.prepare_cached(SQL_EXISTS).await?;
            if tx.query_opt(&st, &[&r.op_id]).await?.is_none() {
                return Ok(Err(StoreError::NotFound(format!("bulk retry {}", r.op_id))));
            }
            let st = tx.prepare_cached(SQL_INSERT_RESULT).await?;
            let n = tx.execute(&st, &[&r.op_id, &(r.seq as i64), &r.execution_id, &r.outcome, &r.reason, &r.at.unix_ms()]).await?;
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

/// U+0000 cannot be stored: such a write is refused up front.
pub(super) fn nul_problem(write: &BulkWrite) -> Result<(), StoreError> {
    match write {
        BulkWrite::Create(r) | BulkWrite::Update(r) => super::nul::check(
            "bulk retry",
            [
                ("id", Some(r.id.as_str())),
                ("pipeline", Some(r.pipeline.as_str())),
                ("stage", Some(r.stage.as_str())),
                ("status", Some(r.status.as_str())),
                ("request", Some(r.request_json.as_str())),
                ("summary", Some(r.summary_json.as_str())),
            ],
        ),
        BulkWrite::Interrupt(_) => Ok(()),
        BulkWrite::AddResult(r) => super::nul::check(
            "bulk retry result",
            [
                ("op id", Some(r.op_id.as_str())),
                ("execution id", Some(r.execution_id.as_str())),
                ("outcome", Some(r.outcome.as_str())),
                ("reason", r.reason.as_deref()),
            ],
        ),
    }
}

pub(super) fn record_from_row(row: &Row) -> Result<BulkRetryRecord, StoreError> {
    Ok(BulkRetryRecord {
        id: get(row, 0)?,
        pipeline: get(row, 1)?,
        stage: get(row, 2)?,
        status: get(row, 3)?,
        started_at: get_ts(row, 4)?,
        finished_at: get_opt_ts(row, 5)?,
        request_json: get(row, 6)?,
        summary_json: get(row, 7)?,
    })
}

pub(super) fn result_from_row(row: &Row) -> Result<BulkRetryResult, StoreError> {
    Ok(BulkRetryResult {
        op_id: get(row, 0)?,
        seq: get_u64(row, 1)?,
        execution_id: get(row, 2)?,
        outcome: get(row, 3)?,
        reason: get(row, 4)?,
        at: get_ts(row, 5)?,
    })
}
