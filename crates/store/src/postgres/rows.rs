//! Rows to records. A value that does not fit its record is damage:
//! [`StoreError::Schema`].

use crate::{
    DlqEntryRecord, DlqEntryState, DlqQueueRecord, DlqQueueStats, ExecutionFault, ExecutionKind, ExecutionRecord, LedgerEntry,
    PipelineRecord, PruneCandidate, RedriveRunRecord, StoreError, Target, TargetName, TimerRecord,
};
use redrive_core::time::Timestamp;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

pub(super) fn get<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i).map_err(|e| StoreError::Schema(format!("unexpected data in the database (column {i}): {e}")))
}

fn get_u32(row: &Row, i: usize) -> Result<u32, StoreError> {
    let v: i64 = get(row, i)?;
    u32::try_from(v).map_err(|_| StoreError::Schema(format!("unexpected data in the database: {v} in column {i} is out of range")))
}

pub(super) fn get_u64(row: &Row, i: usize) -> Result<u64, StoreError> {
    let v: i64 = get(row, i)?;
    u64::try_from(v).map_err(|_| StoreError::Schema(format!("unexpected data in the database: {v} in column {i} is negative")))
}

pub(super) fn get_ts(row: &Row, i: usize) -> Result<Timestamp, StoreError> {
    Ok(Timestamp::from_unix_ms(get(row, i)?))
}

pub(super) fn get_opt_ts(row: &Row, i: usize) -> Result<Option<Timestamp>, StoreError> {
    Ok(get::<Option<i64>>(row, i)?.map(Timestamp::from_unix_ms))
}

/// The `kind`, name and `pipeline_version` columns of a target (a function's
/// version column holds 0, never read).
pub(super) fn target_columns(target: &Target) -> (&'static str, &str, i64) {
    (target.kind().as_str(), target.name(), i64::from(target.pipeline_version().unwrap_or(0)))
}

fn target_from_row(row: &Row, kind_at: usize, name_at: usize) -> Result<Target, StoreError> {
    let kind: String = get(row, kind_at)?;
    let name: String = get(row, name_at)?;
    match ExecutionKind::parse(&kind) {
        Some(ExecutionKind::Pipeline) => Ok(Target::Pipeline { name, version: get_u32(row, name_at + 1)? }),
        Some(ExecutionKind::Function) => Ok(Target::Function { name }),
        None => Err(StoreError::Schema(format!("unexpected data in the database: unknown execution kind {kind:?}"))),
    }
}

/// `name, version, definition_json, source_dir, created_at`.
pub(super) fn pipeline_from_row(row: &Row) -> Result<PipelineRecord, StoreError> {
    Ok(PipelineRecord {
        name: get(row, 0)?,
        version: get_u32(row, 1)?,
        definition_json: get(row, 2)?,
        source_dir: get(row, 3)?,
        created_at: get_ts(row, 4)?,
    })
}

/// The columns of [`super::sql::EXECUTION_COLUMNS`].
pub(super) fn execution_from_row(row: &Row) -> Result<ExecutionRecord, StoreError> {
    Ok(ExecutionRecord {
        id: get(row, 0)?,
        target: target_from_row(row, 11, 1)?,
        status: get(row, 3)?,
        input_json: get(row, 4)?,
        state_json: get(row, 5)?,
        version: get_u64(row, 6)?,
        created_at: get_ts(row, 7)?,
        updated_at: get_ts(row, 8)?,
        fault: match (get::<Option<String>>(row, 9)?, get::<Option<String>>(row, 10)?) {
            (Some(exception_type), message) => Some(ExecutionFault { exception_type, message: message.unwrap_or_default() }),
            (None, _) => None,
        },
    })
}

/// The columns of [`super::sql::LEDGER_COLUMNS`].
pub(super) fn ledger_from_row(row: &Row) -> Result<LedgerEntry, StoreError> {
    Ok(LedgerEntry {
        seq: get(row, 0)?,
        execution_id: get(row, 1)?,
        stage: get(row, 2)?,
        action: get(row, 3)?,
        series: get_u32(row, 4)?,
        attempt: get_u32(row, 5)?,
        trigger: get(row, 6)?,
        started_at: get_ts(row, 7)?,
        finished_at: get_ts(row, 8)?,
        outcome: get(row, 9)?,
        exception_type: get(row, 10)?,
        message: get(row, 11)?,
        decision_json: get(row, 12)?,
    })
}

/// `name, max_redrives, created_at`.
pub(super) fn dlq_queue_from_row(row: &Row) -> Result<DlqQueueRecord, StoreError> {
    Ok(DlqQueueRecord { name: get(row, 0)?, max_redrives: get_u32(row, 1)?, created_at: get_ts(row, 2)? })
}

/// The columns of `dlq_queue_stats_columns!`.
pub(super) fn dlq_queue_stats_from_row(row: &Row) -> Result<DlqQueueStats, StoreError> {
    Ok(DlqQueueStats {
        queue: dlq_queue_from_row(row)?,
        depth: get_u64(row, 3)?,
        poison: get_u64(row, 4)?,
        redriven: get_u64(row, 5)?,
        oldest_entered_at: get_opt_ts(row, 6)?,
    })
}

/// The columns of `dlq_entry_columns!`.
pub(super) fn dlq_entry_from_row(row: &Row) -> Result<DlqEntryRecord, StoreError> {
    let state: String = get(row, 2)?;
    let Some(state) = DlqEntryState::parse(&state) else {
        return Err(StoreError::Schema(format!("unexpected data in the database: unknown dead-letter entry state {state:?}")));
    };
    Ok(DlqEntryRecord {
        id: get(row, 0)?,
        queue: get(row, 1)?,
        state,
        source: target_from_row(row, 21, 3)?,
        execution_id: get(row, 5)?,
        stage: get(row, 6)?,
        action: get(row, 7)?,
        exception_type: get(row, 8)?,
        message: get(row, 9)?,
        input_json: get(row, 10)?,
        detail_json: get(row, 11)?,
        redrive_count: get_u32(row, 12)?,
        max_redrives: get_u32(row, 13)?,
        first_failure_at: get_ts(row, 14)?,
        last_failure_at: get_ts(row, 15)?,
        entered_at: get_ts(row, 16)?,
        redriven_to: get(row, 17)?,
        redriven_at: get_opt_ts(row, 18)?,
        resolved_at: get_opt_ts(row, 19)?,
        updated_at: get_ts(row, 20)?,
    })
}

/// `id, schedule, status, dry_run, started_at, finished_at, request_json, summary_json`.
pub(super) fn redrive_run_from_row(row: &Row) -> Result<RedriveRunRecord, StoreError> {
    Ok(RedriveRunRecord {
        id: get(row, 0)?,
        schedule: get(row, 1)?,
        status: get(row, 2)?,
        dry_run: get(row, 3)?,
        started_at: get_ts(row, 4)?,
        finished_at: get_opt_ts(row, 5)?,
        request_json: get(row, 6)?,
        summary_json: get(row, 7)?,
    })
}

/// `execution_id, key, due_at`.
pub(super) fn timer_from_row(row: &Row) -> Result<TimerRecord, StoreError> {
    Ok(TimerRecord { execution_id: get(row, 0)?, key: get(row, 1)?, due_at: get_ts(row, 2)? })
}

/// A `COUNT(*)` or similar non-negative figure.
/// `id, pipeline_name, kind, status, version, created_at, updated_at`.
pub(super) fn prune_candidate_from_row(row: &Row) -> Result<PruneCandidate, StoreError> {
    let kind: String = get(row, 2)?;
    let kind = ExecutionKind::parse(&kind)
        .ok_or_else(|| StoreError::Schema(format!("unexpected data in the database: unknown execution kind {kind:?}")))?;
    Ok(PruneCandidate {
        id: get(row, 0)?,
        target: TargetName { kind, name: get(row, 1)? },
        status: get(row, 3)?,
        version: get_u64(row, 4)?,
        created_at: get_ts(row, 5)?,
        finished_at: get_ts(row, 6)?,
    })
}

pub(super) fn count_from_row(row: &Row) -> Result<u64, StoreError> {
    get_u64(row, 0)
}

/// A nullable timestamp (`MIN(due_at)`).
pub(super) fn optional_timestamp_from_row(row: &Row) -> Result<Option<Timestamp>, StoreError> {
    get_opt_ts(row, 0)
}
