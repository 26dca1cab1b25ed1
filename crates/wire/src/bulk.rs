//! Bulk stage retries (`/v1/pipelines/{name}/bulk-retries...`).

use crate::{RetryMode, Timestamp, wire_enum};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/pipelines/{name}/bulk-retries`. Absent or `null` fields take their defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkRetryRequest {
    /// The stage to retry in every matching execution (it failed there).
    pub stage: String,
    /// Only executions with a failed action of this exception type in the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_type: Option<String>,
    /// Only executions that failed at most this long ago (`2h`, `30m`, `1d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Default FAILED_ACTIONS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_mode: Option<RetryMode>,
    /// `20/s`, `600/m`: stage retries started per second, at most 1000/s (default 10/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Go through at most this many matching executions (1 to 10000, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    /// Only show what would happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

wire_enum!(
    BulkWould {
        Retry = "retry",
        Skip = "skip",
    }
);

/// What the dry run says would happen to one execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkPlanItem {
    pub execution_id: String,
    pub would: BulkWould,
    /// The actions a retry re-runs, or why it would be skipped.
    pub detail: String,
}

/// The count shown first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkPlan {
    pub matched: u64,
    pub would_retry: u64,
    pub would_skip: u64,
    /// Executions of the pipeline read to find the matching ones.
    pub scanned: u64,
    /// False when the pipeline has more executions than one operation reads.
    pub scan_complete: bool,
    /// The first 1000, newest execution first.
    pub items: Vec<BulkPlanItem>,
}

wire_enum!(
    BulkStatus {
        Running = "RUNNING",
        Succeeded = "SUCCEEDED",
        Aborted = "ABORTED",
        Failed = "FAILED",
        Interrupted = "INTERRUPTED",
    }
);

/// An operation's progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkCounts {
    pub matched: u64,
    pub processed: u64,
    pub retried: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// A bulk retry operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkRetry {
    pub id: String,
    pub pipeline: String,
    pub stage: String,
    pub status: BulkStatus,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub exception_type: Option<String>,
    pub since_ms: Option<u64>,
    pub retry_mode: RetryMode,
    pub rate_per_second: f64,
    pub max: u64,
    pub counts: BulkCounts,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// `POST /v1/pipelines/{name}/bulk-retries` without `dryRun` (202).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkRetryStarted {
    pub operation: BulkRetry,
    /// The count it starts from.
    pub plan: BulkPlan,
}

/// `GET /v1/pipelines/{name}/bulk-retries` (newest first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkRetryList {
    pub operations: Vec<BulkRetry>,
    pub next_token: Option<String>,
}

wire_enum!(
    BulkOutcome {
        Retried = "retried",
        Skipped = "skipped",
        Failed = "failed",
    }
);

/// What happened to one execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkResult {
    pub seq: u64,
    pub execution_id: String,
    pub outcome: BulkOutcome,
    pub reason: Option<String>,
    pub at: Timestamp,
}

/// `GET /v1/pipelines/{name}/bulk-retries/{id}/results` (in the order handled).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkResultList {
    pub results: Vec<BulkResult>,
    pub next_token: Option<String>,
}
