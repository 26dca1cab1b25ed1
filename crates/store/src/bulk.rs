//! Bulk stage retry operations (docs/retry-control.md): the operation's record
//! and its per-execution results. Self-contained tables in each backend
//! (`sqlite/bulk.rs`, `postgres/bulk.rs`), written through the backend's writer.

use crate::StoreError;
use redrive_core::limits::{MAX_BULK_RETRY_EXECUTIONS, MAX_BULK_RETRY_JSON_BYTES, MAX_BULK_RETRY_REASON_BYTES};
use redrive_core::time::Timestamp;

/// A recorded bulk stage retry: what was asked and how far it got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkRetryRecord {
    pub id: String,
    pub pipeline: String,
    pub stage: String,
    /// `RUNNING`, `SUCCEEDED` (went through every matched execution), `ABORTED`,
    /// `FAILED`, `INTERRUPTED` (the server stopped first).
    pub status: String,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// The request (filter, mode, rate, max) as JSON; opaque to the store.
    pub request_json: String,
    /// Counts so far, as JSON; opaque to the store.
    pub summary_json: String,
}

/// What happened to one execution in an operation. `(op_id, seq)` and
/// `(op_id, execution_id)` are each unique: an execution gets one result per
/// operation, so one retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkRetryResult {
    pub op_id: String,
    /// 1, 2, … in the order the operation handled its executions.
    pub seq: u64,
    pub execution_id: String,
    /// `retried`, `skipped` or `failed`.
    pub outcome: String,
    pub reason: Option<String>,
    pub at: Timestamp,
}

/// A write of an operation or a result, sent to a backend's writer
/// ([`crate::Store::write_bulk_retry`]; the trait's `*_bulk_retry*` methods wrap it).
#[derive(Clone, Debug)]
pub enum BulkWrite {
    Create(BulkRetryRecord),
    /// Replaces status, finished_at and summary ([`StoreError::NotFound`] if missing).
    Update(BulkRetryRecord),
    /// Every `RUNNING` operation becomes `INTERRUPTED` at this time.
    Interrupt(Timestamp),
    /// [`StoreError::AlreadyExists`] when the operation already has a result for
    /// that execution or seq; [`StoreError::NotFound`] without the operation.
    AddResult(BulkRetryResult),
}

pub(crate) fn check_record(r: &BulkRetryRecord) -> Result<(), StoreError> {
    if r.id.is_empty() || r.id.len() > 100 {
        return Err(StoreError::Limit(format!("bulk retry: the id {:?} must be 1 to 100 bytes", r.id)));
    }
    for (field, len) in [("request_json", r.request_json.len()), ("summary_json", r.summary_json.len())] {
        if len > MAX_BULK_RETRY_JSON_BYTES {
            return Err(StoreError::Limit(format!(
                "bulk retry {}: {field} is {len} bytes; the maximum is {MAX_BULK_RETRY_JSON_BYTES} bytes",
                r.id
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_result(r: &BulkRetryResult) -> Result<(), StoreError> {
    if r.seq == 0 || r.seq > MAX_BULK_RETRY_EXECUTIONS {
        return Err(StoreError::Limit(format!("bulk retry {}: result seq {} is not 1 to {MAX_BULK_RETRY_EXECUTIONS}", r.op_id, r.seq)));
    }
    if r.execution_id.len() > 100 || r.outcome.len() > 16 {
        return Err(StoreError::Limit(format!("bulk retry {}: a result's execution id or outcome is too long", r.op_id)));
    }
    if let Some(reason) = r.reason.as_ref().filter(|x| x.len() > MAX_BULK_RETRY_REASON_BYTES) {
        return Err(StoreError::Limit(format!(
            "bulk retry {}: a reason is {} bytes; the maximum is {MAX_BULK_RETRY_REASON_BYTES} bytes",
            r.op_id,
            reason.len()
        )));
    }
    Ok(())
}

impl BulkWrite {
    pub fn check(&self) -> Result<(), StoreError> {
        match self {
            BulkWrite::Create(r) | BulkWrite::Update(r) => check_record(r),
            BulkWrite::Interrupt(_) => Ok(()),
            BulkWrite::AddResult(r) => check_result(r),
        }
    }
}
