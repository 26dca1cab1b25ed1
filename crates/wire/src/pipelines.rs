//! Pipelines, their executions, their state and their attempts (`/v1/pipelines/...`).

use crate::{AttemptStatus, Failure, Timestamp, Trigger, wire_enum};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A pipeline version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PipelineSummary {
    pub name: String,
    pub version: u32,
    pub created: Timestamp,
}

/// A pipeline version with its definition (native form, as stored).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PipelineResponse {
    pub pipeline: PipelineSummary,
    /// The definition: `name`, `stages`, options (see the README).
    pub definition: Value,
}

/// `GET /v1/pipelines`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineList {
    pub pipelines: Vec<PipelineSummary>,
    pub next_token: Option<String>,
}

wire_enum!(
    /// An execution's status (CodePipeline's spelling).
    ExecutionStatus {
        InProgress = "InProgress",
        Stopping = "Stopping",
        Succeeded = "Succeeded",
        Failed = "Failed",
        Stopped = "Stopped",
        Superseded = "Superseded",
        Paused = "Paused",
    }
);

wire_enum!(
    /// A stage's status within an execution.
    StageStatus {
        NotStarted = "NotStarted",
        InProgress = "InProgress",
        Succeeded = "Succeeded",
        Failed = "Failed",
    }
);

wire_enum!(
    /// An action's status within an execution.
    ActionStatus {
        NotStarted = "NotStarted",
        Running = "Running",
        WaitingRetry = "WaitingRetry",
        Succeeded = "Succeeded",
        Failed = "Failed",
        Paused = "Paused",
    }
);

wire_enum!(
    /// Which actions a stage retry runs again.
    RetryMode {
        FailedActions = "FAILED_ACTIONS",
        AllActions = "ALL_ACTIONS",
    }
);

/// An action of an execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionView {
    pub name: String,
    pub status: ActionStatus,
    pub series: u32,
    pub attempt: u32,
    pub total_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The due attempt is held by its dependency until `nextAttemptAt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<crate::HeldBy>,
    /// The attempt (status `Running`) has not begun: it waits for a slot of
    /// its action's concurrency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<KeyWaiting>,
}

/// An attempt waiting for a slot of its concurrency key (`concurrency: {key, max}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyWaiting {
    /// The execution's key value: a string as it is, another value as its JSON
    /// text; `null` when the input has none (those executions share one slot set).
    pub concurrency_key: Option<String>,
    /// Attempts of this action with this key running now, and at most.
    pub running: u32,
    pub max: u32,
    /// Its place in the key's queue (1: next to run).
    pub position: u64,
    /// When it started waiting.
    pub since: Timestamp,
}

/// A stage of an execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageView {
    pub name: String,
    pub status: StageStatus,
    pub retry_in_progress: bool,
    pub auto_retries: u32,
    pub manual_retries: u32,
    pub actions: Vec<ActionView>,
}

/// `GET /v1/pipelines/{name}/executions/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Execution {
    pub pipeline_execution_id: String,
    pub pipeline_name: String,
    pub pipeline_version: u32,
    pub status: ExecutionStatus,
    pub start_time: Timestamp,
    pub last_update_time: Timestamp,
    pub end_time: Option<Timestamp>,
    pub input: Value,
    /// Why the engine itself failed it (a limit, an unreadable state), if it did.
    pub failure: Option<Failure>,
    pub stages: Vec<StageView>,
}

/// An execution in a listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionSummary {
    pub pipeline_execution_id: String,
    pub pipeline_version: u32,
    pub status: ExecutionStatus,
    pub start_time: Timestamp,
    pub last_update_time: Timestamp,
}

/// `GET /v1/pipelines/{name}/executions` (newest first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionList {
    pub executions: Vec<ExecutionSummary>,
    pub next_token: Option<String>,
}

/// The answer of start, stop and retry: the execution concerned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionId {
    pub pipeline_execution_id: String,
}

/// `POST /v1/pipelines/{name}/executions`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartExecutionRequest {
    /// The execution's input document (default `{}`).
    #[serde(default)]
    pub input: Option<Value>,
    /// Idempotency token: a start repeated with it returns the same execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_request_token: Option<String>,
}

/// `POST /v1/pipelines/{name}/executions/{id}/stop`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopExecutionRequest {
    /// Stop at once, killing running attempts (else after them).
    #[serde(default)]
    pub abandon: bool,
    /// At most 200 characters.
    #[serde(default)]
    pub reason: String,
}

/// `POST /v1/pipelines/{name}/executions/{id}/resume`: continue a `Paused`
/// execution with a fresh series of attempts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResumeExecutionRequest {
    /// Only this paused action, as `Stage/Action` (default: every paused action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// A JSON merge patch (RFC 7396) applied to the execution's input first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
}

/// `POST /v1/pipelines/{name}/executions/{id}/stages/{stage}/retry`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryStageRequest {
    /// Which actions re-run; required unless `fromAction` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_mode: Option<RetryMode>,
    /// Re-run the stage from this action's runOrder group on (a Failed or
    /// Paused execution; earlier groups keep their results). Not with `retryMode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_action: Option<String>,
    /// With `fromAction`: a JSON merge patch (RFC 7396) applied to the
    /// execution's input first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_patch: Option<Value>,
}

/// The latest execution of a stage in `GET /v1/pipelines/{name}/state`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageExecution {
    pub pipeline_execution_id: String,
    pub status: StageStatus,
    pub retry_in_progress: bool,
    pub auto_retries: u32,
    pub manual_retries: u32,
    pub latest_retry_trigger: Option<Trigger>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageState {
    pub stage_name: String,
    pub latest_execution: Option<StageExecution>,
    pub actions: Vec<ActionView>,
}

/// `GET /v1/pipelines/{name}/state`: each stage's latest execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineState {
    pub pipeline_name: String,
    pub pipeline_version: u32,
    pub stages: Vec<StageState>,
}

/// One attempt of an action (a ledger row).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionExecution {
    pub seq: i64,
    pub pipeline_execution_id: String,
    pub stage_name: String,
    pub action_name: String,
    pub series: u32,
    pub attempt: u32,
    pub trigger: Trigger,
    pub start_time: Timestamp,
    pub end_time: Timestamp,
    pub status: AttemptStatus,
    pub exception_type: Option<String>,
    pub message: Option<String>,
    /// The retry decision recorded with a failure.
    pub decision: Option<Value>,
}

/// `GET /v1/pipelines/{name}/action-executions` (newest first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionExecutionList {
    pub action_executions: Vec<ActionExecution>,
    pub next_token: Option<String>,
}

/// `GET /v1/pipelines/{name}/executions/{id}/export`: everything about one
/// execution, for a bug report or an audit — the definition version it ran, its
/// input, its stored state, its pending timers and its whole attempt ledger (in
/// commit order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionExport {
    /// The shape of this document (1).
    pub export_version: u32,
    pub exported_at: Timestamp,
    pub pipeline_name: String,
    pub pipeline_version: u32,
    /// The definition of that version, as stored.
    pub definition: Value,
    /// The execution as `GET …/executions/{id}` shows it.
    pub execution: Execution,
    /// The engine's stored state document, verbatim (`null` if it cannot be read;
    /// `stateText` then holds it).
    pub state: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_text: Option<String>,
    /// Version of the stored state (bumped by every committed transition).
    pub state_version: u64,
    pub timers: Vec<ExportedTimer>,
    /// Every attempt, oldest first.
    pub ledger: Vec<ActionExecution>,
}

/// A pending durable timer of an exported execution.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportedTimer {
    pub key: String,
    pub due_at: Timestamp,
}
