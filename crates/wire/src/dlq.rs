//! Dead-letter queues, entries, purges, redrives and schedules (`/v1/dlq/...`).

use crate::{Failure, Timestamp, wire_enum};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A queue with its figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Queue {
    pub name: String,
    pub max_redrives: u32,
    /// Queued entries (poison included).
    pub depth: u64,
    pub poison: u64,
    pub redriven: u64,
    pub oldest_entered_at: Option<Timestamp>,
    pub oldest_age_seconds: Option<f64>,
    pub created_at: Timestamp,
}

/// `GET /v1/dlq/queues`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueList {
    pub queues: Vec<Queue>,
    pub next_token: Option<String>,
}

/// `PUT /v1/dlq/queues/{queue}` (creates the queue if missing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigureQueueRequest {
    /// Redrives after which an entry is poison (1 to 1000).
    pub max_redrives: u64,
}

wire_enum!(
    EntryState {
        Queued = "QUEUED",
        Redriven = "REDRIVEN",
        Resolved = "RESOLVED",
    }
);

wire_enum!(
    /// What an execution runs: a pipeline or a durable function.
    TargetKind {
        Pipeline = "pipeline",
        Function = "function",
    }
);

/// Where a dead-letter entry came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntrySource {
    pub kind: TargetKind,
    pub pipeline_name: String,
    /// `null` for a function.
    pub pipeline_version: Option<u32>,
    pub execution_id: String,
    pub stage: String,
    pub action: String,
}

/// A dead-letter entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub entry_id: String,
    pub queue: String,
    pub state: EntryState,
    pub poison: bool,
    pub redrive_count: u32,
    pub max_redrives: u32,
    pub source: EntrySource,
    pub error: Failure,
    pub input: Value,
    /// Attempt counts and first/last failure details.
    pub attempts: Value,
    pub first_failure_at: Timestamp,
    pub last_failure_at: Timestamp,
    pub entered_at: Timestamp,
    pub updated_at: Timestamp,
    pub redriven_to: Option<String>,
    pub redriven_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
}

/// `GET /v1/dlq/queues/{queue}/entries`: a page, and how many match in all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryList {
    pub entries: Vec<Entry>,
    pub next_token: Option<String>,
    pub count: u64,
}

/// `POST /v1/dlq/queues/{queue}/purge`. Absent or `null` fields do not narrow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurgeRequest {
    /// Exception type of the final error.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub exception_type: Option<String>,
    /// Pipeline the entries came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Minimum time in the queue, e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poison: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PurgeResponse {
    pub purged: u64,
}

wire_enum!(
    /// How a redriven entry is resubmitted.
    RedriveMode {
        RetryStage = "retry-stage",
        NewExecution = "new-execution",
    }
);

/// `POST /v1/dlq/queues/{queue}/redrive` (without `queuePrefix`) or
/// `POST /v1/dlq/redrive` (with it). Absent or `null` fields take their defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedriveRequest {
    /// `/v1/dlq/redrive` only: every queue whose name starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_prefix: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub exception_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than: Option<String>,
    /// At least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<u64>,
    /// `50/s`, `300/m`, `1000/h` or `unlimited` (default 100/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RedriveMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
    /// A JSON merge patch (RFC 7396) for the input each entry is resubmitted
    /// with (pipeline entries only), applied in the same transition as the take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_patch: Option<serde_json::Value>,
}

/// Which queues a run may touch (exactly one of the two).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Entries per second; `null` = as fast as the engine commits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRate {
    pub per_second: Option<f64>,
}

/// What a run was asked for, as the server understood it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    pub scope: RunScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
    #[serde(default)]
    pub force: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<u64>,
    pub rate: RunRate,
    pub mode: RedriveMode,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueCounts {
    pub redriven: u64,
    pub skipped: u64,
}

wire_enum!(
    EntryOutcomeKind {
        Redriven = "redriven",
        Skipped = "skipped",
    }
);

/// One entry's outcome in a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryOutcome {
    pub entry_id: String,
    pub queue: String,
    pub outcome: EntryOutcomeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// Why it was skipped (a reason code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a run did so far (all of it, once finished).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RunSummary {
    pub matched: u64,
    pub processed: u64,
    pub redriven: u64,
    pub skipped: u64,
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// Poison entries matching the filters, left parked.
    pub parked: u64,
    pub queues: BTreeMap<String, QueueCounts>,
    /// The first outcomes.
    pub outcomes: Vec<EntryOutcome>,
    /// Why the run failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

wire_enum!(
    RunStatus {
        Running = "RUNNING",
        Succeeded = "SUCCEEDED",
        Failed = "FAILED",
        Interrupted = "INTERRUPTED",
        /// Stopped by `POST /v1/dlq/redrives/{id}/abort`.
        Aborted = "ABORTED",
    }
);

/// A redrive run (`202` when started).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    pub run_id: String,
    /// The schedule that started it; `null` for a manual run.
    pub schedule: Option<String>,
    pub status: RunStatus,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub request: RunRequest,
    pub summary: RunSummary,
}

/// `GET /v1/dlq/redrives` (newest first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunList {
    pub runs: Vec<Run>,
    pub next_token: Option<String>,
}

wire_enum!(
    Would {
        Redrive = "redrive",
        Skip = "skip",
    }
);

/// What a dry run says would happen to one entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanItem {
    pub entry_id: String,
    pub queue: String,
    pub pipeline_name: String,
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    pub exception_type: String,
    pub redrive_count: u32,
    pub would: Would,
    /// What the redrive would do, or why it would skip.
    pub detail: String,
}

/// A dry run's answer (`dryRun: true`): nothing was changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub matched: u64,
    pub would_redrive: u64,
    pub would_skip: u64,
    pub parked: u64,
    pub items: Vec<PlanItem>,
}

/// The answer of a redrive: a run started (202), or a dry run's plan (200).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RedriveResponse {
    Run(Box<Run>),
    Plan(Plan),
}

/// A configured redrive schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub name: String,
    /// As people write it (`10m`).
    pub every: String,
    pub every_ms: u64,
    pub queue_prefix: String,
    pub request: RunRequest,
    pub next_due_at: Timestamp,
    pub last_run: Option<Run>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
}

/// `POST /v1/pipelines/{name}/dlq-entries/{id}/redrive`: redrive one entry of
/// the pipeline (or durable function) `name` now, through the engine driving
/// it; answered once the resubmission is committed. (`--spread`: a redrive run
/// asks each entry's shard holder this.) Absent fields take their defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntryRedriveRequest {
    /// Default `retry-stage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RedriveMode>,
    /// Redrive it even if it is poison.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<bool>,
    /// Refuse it unless its queue starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_prefix: Option<String>,
    /// A JSON merge patch (RFC 7396) for the input it is resubmitted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_patch: Option<Value>,
}

/// Why a redrive left an entry where it was (`code` is the reason code of
/// run summaries).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "code", rename_all = "kebab-case", rename_all_fields = "camelCase")]
pub enum EntrySkip {
    NotFound,
    /// `REDRIVEN` or `RESOLVED`.
    NotInQueue {
        state: String,
    },
    Poison {
        redrive_count: u32,
        max_redrives: u32,
    },
    BeingRedriven,
    OutOfScope {
        queue: String,
        prefix: String,
    },
    ExecutionGone {
        execution_id: String,
    },
    PipelineGone {
        pipeline: String,
    },
    Refused {
        why: String,
    },
    OtherShard {
        shard: u16,
    },
}

/// The answer of `POST /v1/pipelines/{name}/dlq-entries/{id}/redrive`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntryRedriveResponse {
    pub outcome: EntryOutcomeKind,
    /// The execution it was resubmitted to (`redriven`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// Why not (`skipped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<EntrySkip>,
    /// Why not, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
