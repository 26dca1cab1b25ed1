//! Durable-function executions (`/v1/functions/...`, read only).

use crate::{AttemptStatus, Failure, Timestamp, Trigger, wire_enum};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

wire_enum!(
    /// A function execution's status.
    FunctionStatus {
        InProgress = "InProgress",
        Succeeded = "Succeeded",
        Failed = "Failed",
    }
);

wire_enum!(
    StepStatus {
        Running = "Running",
        WaitingRetry = "WaitingRetry",
        Sleeping = "Sleeping",
        Succeeded = "Succeeded",
        Failed = "Failed",
    }
);

wire_enum!(
    StepKind {
        Step = "step",
        Sleep = "sleep",
    }
);

/// A function execution in a listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionExecutionSummary {
    pub execution_id: String,
    pub function: String,
    pub name: String,
    pub status: FunctionStatus,
    pub start_time: Timestamp,
    pub last_update_time: Timestamp,
    pub end_time: Option<Timestamp>,
    /// When a suspended execution wakes.
    pub waiting_until: Option<Timestamp>,
    /// Steps recorded so far.
    pub steps: usize,
}

/// `GET /v1/functions/{name}/executions` (newest first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionExecutionList {
    pub executions: Vec<FunctionExecutionSummary>,
    pub next_token: Option<String>,
}

/// A step of a function execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub name: String,
    pub kind: StepKind,
    pub status: StepStatus,
    pub attempt: u32,
    pub start_time: Timestamp,
    pub due_at: Option<Timestamp>,
    /// The checkpointed result.
    pub result: Option<Value>,
    pub last_failure: Option<Failure>,
}

/// A step attempt (a ledger row).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepAttempt {
    pub seq: i64,
    pub step: String,
    pub attempt: u32,
    pub trigger: Trigger,
    pub start_time: Timestamp,
    pub end_time: Timestamp,
    pub status: AttemptStatus,
    pub exception_type: Option<String>,
    pub message: Option<String>,
    pub decision: Option<Value>,
}

/// The dead-letter entry a failed execution went to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterLink {
    pub queue: String,
    pub entry_id: String,
}

/// `GET /v1/functions/{name}/executions/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionExecution {
    pub execution_id: String,
    pub function: String,
    pub name: String,
    pub status: FunctionStatus,
    pub start_time: Timestamp,
    pub last_update_time: Timestamp,
    pub end_time: Option<Timestamp>,
    pub waiting_until: Option<Timestamp>,
    pub input: Value,
    pub result: Option<Value>,
    pub error: Option<Failure>,
    pub dead_letter_queue: Option<String>,
    pub dead_letter: Option<DeadLetterLink>,
    pub steps: Vec<Step>,
    /// Step attempts from the ledger (the newest, when truncated).
    pub attempts: Vec<StepAttempt>,
    pub attempts_truncated: bool,
}
