//! redrive-store: durable state behind one [`Store`] trait.
//!
//! The engine talks to storage only through [`Store`]. Every backend (SQLite now,
//! PostgreSQL later) must pass the same [`conformance`] suite. A transition is
//! acknowledged only after it is durably committed; many transitions of many
//! executions share one commit (group commit).
//!
//! The store knows nothing of the state machine: an execution's state is an opaque
//! JSON document with a few indexed columns beside it (status, pipeline, times).
//! Optimistic concurrency: every execution row has a `version`; a transition names
//! the version it was computed from, and a stale one is refused
//! ([`TransitionError::VersionConflict`]). A PostgreSQL backend adds leases and
//! fencing tokens on top of the same check.

use redrive_core::time::Timestamp;
use std::future::Future;
use std::sync::Arc;

pub mod any;
pub mod bulk;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod faulty;
pub mod postgres;
pub mod sqlite;
pub mod validate;

pub use any::{AnyStore, PostgresUrl, StoreLocation, StoreOptions};
pub use bulk::{BulkRetryRecord, BulkRetryResult, BulkWrite};
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::{BackupCounts, Durability, SqliteOptions, SqliteStore};

/// Upper bounds enforced by every backend: the limits of [`redrive_core::limits`]
/// (defined there, once, for every crate).
pub use redrive_core::limits;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or written right now (disk full, I/O error,
    /// database locked or down). Nothing in the failed call was committed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Another process holds the store's engine lock.
    #[error("{0}")]
    Locked(String),
    /// The database was written by a newer redrive, or is damaged.
    #[error("store schema problem: {0}")]
    Schema(String),
    /// A value exceeded one of [`limits`].
    #[error("limit exceeded: {0}")]
    Limit(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The store's location is malformed (e.g. a PostgreSQL URL that does not
    /// parse): retrying cannot help.
    #[error("{0}")]
    InvalidLocation(String),
    /// A live pipeline of that name already exists ([`Store::create_pipeline`]).
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The database file was deleted or replaced underneath this process: what it
    /// writes from now on would be lost. Not retryable; the engine must stop.
    #[error("the database was lost: {0}")]
    Lost(String),
}

impl StoreError {
    /// A fault that may clear by itself (disk full, I/O error, locked): the same
    /// call can be retried later.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// Why a single transition of a commit was refused (the others still commit;
/// nothing of the refused one is written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("execution {execution_id}: expected version {expected}, store has {actual:?}")]
    VersionConflict { execution_id: String, expected: u64, actual: Option<u64> },
    #[error("execution {0} already exists")]
    AlreadyExists(String),
    /// The create carried a [`ClientToken`] already used for that pipeline, by
    /// `execution_id`. `same_request` says whether the fingerprints are equal (a
    /// retry of the same request: answer with `execution_id`) or not (a different
    /// request reusing the token: an error for the client).
    #[error("client request token already used by execution {execution_id} (same request: {same_request})")]
    TokenReused { execution_id: String, same_request: bool },
    /// A [`DlqOp::Take`] named an entry that is missing or not `QUEUED`.
    #[error("dead-letter entry {entry_id} is not in its queue")]
    DlqEntryNotQueued { entry_id: String },
    /// The transition breaks one of [`limits`] (the message names which, and by
    /// how much). Only this transition is refused; it can never succeed as written.
    #[error("{0}")]
    Limit(String),
    /// The store drives one shard (PostgreSQL, several processes) and the
    /// execution belongs to another: only that shard's holder may write it.
    #[error("execution {execution_id} is in shard {shard}; this store drives shard {held}")]
    OutsideShard { execution_id: String, shard: redrive_core::shard::ShardId, held: redrive_core::shard::ShardId },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineRecord {
    pub name: String,
    /// 1 for the first version; bumped by every update and by a changed
    /// `put_pipeline`. Versions of a name are never reused, even across a delete.
    pub version: u32,
    /// Canonical JSON of the definition as written.
    pub definition_json: String,
    /// Directory relative paths in the definition resolve against.
    pub source_dir: Option<String>,
    pub created_at: Timestamp,
}

/// The two kinds of execution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExecutionKind {
    #[default]
    Pipeline,
    Function,
}

impl ExecutionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionKind::Pipeline => "pipeline",
            ExecutionKind::Function => "function",
        }
    }

    pub fn parse(s: &str) -> Option<ExecutionKind> {
        match s {
            "pipeline" => Some(ExecutionKind::Pipeline),
            "function" => Some(ExecutionKind::Function),
            _ => None,
        }
    }
}

/// What an execution runs (and what a dead-letter entry came from).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A version of a pipeline.
    Pipeline { name: String, version: u32 },
    /// A durable function, registered under `name` by the process that runs it.
    Function { name: String },
}

impl Target {
    pub fn pipeline(name: impl Into<String>, version: u32) -> Target {
        Target::Pipeline { name: name.into(), version }
    }

    pub fn function(name: impl Into<String>) -> Target {
        Target::Function { name: name.into() }
    }

    pub fn kind(&self) -> ExecutionKind {
        match self {
            Target::Pipeline { .. } => ExecutionKind::Pipeline,
            Target::Function { .. } => ExecutionKind::Function,
        }
    }

    /// The pipeline's or the function's name.
    pub fn name(&self) -> &str {
        match self {
            Target::Pipeline { name, .. } | Target::Function { name } => name,
        }
    }

    /// The pipeline version, for a pipeline execution.
    pub fn pipeline_version(&self) -> Option<u32> {
        match self {
            Target::Pipeline { version, .. } => Some(*version),
            Target::Function { .. } => None,
        }
    }

    /// The kind and name (what listings select by).
    pub fn target_name(&self) -> TargetName {
        TargetName { kind: self.kind(), name: self.name().to_string() }
    }
}

/// A pipeline or a function, by name (any version).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TargetName {
    pub kind: ExecutionKind,
    pub name: String,
}

impl TargetName {
    pub fn pipeline(name: impl Into<String>) -> TargetName {
        TargetName { kind: ExecutionKind::Pipeline, name: name.into() }
    }

    pub fn function(name: impl Into<String>) -> TargetName {
        TargetName { kind: ExecutionKind::Function, name: name.into() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionRecord {
    pub id: String,
    pub target: Target,
    /// `InProgress`, `Succeeded`, `Failed`, `Stopped`, ...; finished ones are not `InProgress`.
    pub status: String,
    pub input_json: String,
    pub state_json: String,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set when the engine quarantined the execution ([`Store::quarantine_execution`]).
    pub fault: Option<ExecutionFault>,
}

/// Why the engine gave up on an execution it could not drive: its state could
/// not be read, or a transition of it could never be committed. The execution's
/// state document is kept as it was, for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionFault {
    /// An exception type, e.g. `Engine.CORRUPT_STATE` or `Engine.LIMIT_EXCEEDED`.
    pub exception_type: String,
    /// At most [`limits::MAX_FAILURE_MESSAGE_BYTES`].
    pub message: String,
}

impl ExecutionRecord {
    /// The cursor for the page after the one ending with this record.
    pub fn cursor(&self) -> ExecutionCursor {
        ExecutionCursor { created_at: self.created_at, id: self.id.clone() }
    }
}

/// Start idempotency (`clientRequestToken`, or a function execution's name): at
/// most one execution is created per target (kind and name) and token.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientToken {
    /// 1 to [`limits::MAX_CLIENT_TOKEN_BYTES`] bytes, chosen by the client.
    pub token: String,
    /// A hash of the request payload, computed by the caller; tells a retry of the
    /// same request from a different request reusing the token. At most
    /// [`limits::MAX_FINGERPRINT_BYTES`].
    pub fingerprint: String,
}

/// One finished attempt in the append-only ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Assigned by the store on insert (ascending); ignored on write.
    pub seq: i64,
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    /// Series of attempts (1, then +1 per stage retry of this action).
    pub series: u32,
    /// Attempt number within the series (1 = first try).
    pub attempt: u32,
    /// What started the series/attempt: `initial`, `policy`, `stage-retry`, `manual`, `redrive`.
    pub trigger: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// `SUCCEEDED` or `FAILED`.
    pub outcome: String,
    pub exception_type: Option<String>,
    pub message: Option<String>,
    /// JSON of the retry decision (retry at / give up and why), absent on success.
    pub decision_json: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerRecord {
    pub execution_id: String,
    /// Unique within the execution, e.g. `Build/Compile#2`.
    pub key: String,
    pub due_at: Timestamp,
}

/// The new state of one execution plus what happened, committed atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub execution_id: String,
    /// `None` creates the execution (refused if it exists); `Some(v)` requires the
    /// stored version to be `v`. On success the stored version becomes `v + 1`
    /// (or 1 on create).
    pub expected_version: Option<u64>,
    /// Target and input are recorded on create and immutable afterwards: an
    /// update ignores these two fields.
    pub target: Target,
    pub status: String,
    pub input_json: String,
    pub state_json: String,
    pub at: Timestamp,
    pub ledger: Vec<LedgerEntry>,
    /// Inserted or replaced (same key).
    pub set_timers: Vec<TimerRecord>,
    /// Keys of this execution's timers to delete.
    pub clear_timers: Vec<String>,
    /// Idempotency of a create: checked and recorded atomically with the new
    /// execution, keyed by the target's kind and name and the token. If the token
    /// was already used for that pipeline (or function), the create is refused with
    /// [`TransitionError::TokenReused`] (checked before
    /// [`TransitionError::AlreadyExists`]); a refused create does not consume the
    /// token. Ignored on update.
    pub client_token: Option<ClientToken>,
    /// Dead-letter-queue changes committed atomically with this transition, in
    /// order (see [`DlqOp`]). A refused op refuses the whole transition.
    pub dlq: Vec<DlqOp>,
}

/// Default [`DlqQueueRecord::max_redrives`] of a queue created on first use.
pub const DEFAULT_MAX_REDRIVES: u32 = 3;
/// Largest configurable [`DlqQueueRecord::max_redrives`].
pub const MAX_MAX_REDRIVES: u32 = 1000;

/// A dead-letter queue. Queues are created on first use (a pipeline naming it, an
/// entry entering it) with [`DEFAULT_MAX_REDRIVES`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DlqQueueRecord {
    pub name: String,
    /// An entry whose `redrive_count` reached this is *poison*: parked, never
    /// redriven by a bulk or scheduled redrive, only by an explicit forced one.
    pub max_redrives: u32,
    pub created_at: Timestamp,
}

/// A queue with its current figures (entries in state `QUEUED` only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DlqQueueStats {
    pub queue: DlqQueueRecord,
    /// `QUEUED` entries, poison included.
    pub depth: u64,
    /// `QUEUED` entries with `redrive_count >= max_redrives`.
    pub poison: u64,
    /// `REDRIVEN` entries (resubmitted, outcome not known yet).
    pub redriven: u64,
    /// The earliest `entered_at` of a `QUEUED` entry.
    pub oldest_entered_at: Option<Timestamp>,
}

/// Where a dead-letter entry is in its life (defined with the redrive rules).
pub use redrive_core::dlq::DlqEntryState;

/// What an execution that failed for good writes to its dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DlqEntryWrite {
    /// The entry's id: the id of the execution that first failed (an execution
    /// lineage has one entry, however often it is redriven).
    pub id: String,
    /// Used only when the entry is created; a returning entry keeps its queue.
    pub queue: String,
    /// What failed: a pipeline version or a function.
    pub source: Target,
    /// The execution that failed this time.
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    pub exception_type: String,
    pub message: String,
    /// The execution's input (at most [`limits::MAX_INPUT_BYTES`]).
    pub input_json: String,
    /// Everything else (attempt counts per action, ...), as a JSON object; opaque
    /// to the store. At most [`limits::MAX_DLQ_DETAIL_BYTES`].
    pub detail_json: String,
    /// Kept from the first write of the entry when it returns.
    pub first_failure_at: Timestamp,
    pub last_failure_at: Timestamp,
}

/// A dead-letter-queue change inside a [`Transition`].
// `Enter` is large, but ops are few (one per failure for good) and built once:
// boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DlqOp {
    /// The execution failed for good. Creates the entry (state `QUEUED`,
    /// `redrive_count` 0, `entered_at` = the transition's `at`; its queue is
    /// created if missing) or, if the id exists (any state), puts it back in its
    /// queue: state `QUEUED`, the new source/failure fields, `entered_at` = `at`;
    /// `id`, `queue`, `first_failure_at` and `redrive_count` are kept.
    Enter(DlqEntryWrite),
    /// A redrive: the entry must be `QUEUED` (otherwise the transition is refused
    /// with [`TransitionError::DlqEntryNotQueued`]); it becomes `REDRIVEN`,
    /// `redrive_count` + 1, `redriven_to` = `execution_id`, `redriven_at` = `at`.
    Take { entry_id: String, execution_id: String },
    /// The lineage succeeded: the entry (any state) becomes `RESOLVED`,
    /// `resolved_at` = `at`. A missing entry (purged) is not an error.
    Resolve { entry_id: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DlqEntryRecord {
    pub id: String,
    pub queue: String,
    pub state: DlqEntryState,
    pub source: Target,
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    pub exception_type: String,
    pub message: String,
    pub input_json: String,
    pub detail_json: String,
    pub redrive_count: u32,
    /// The queue's `max_redrives` at read time.
    pub max_redrives: u32,
    pub first_failure_at: Timestamp,
    pub last_failure_at: Timestamp,
    /// When the entry (last) entered its queue.
    pub entered_at: Timestamp,
    /// The execution the latest redrive resubmitted to.
    pub redriven_to: Option<String>,
    pub redriven_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

impl DlqEntryRecord {
    /// Parked: its redrives are used up.
    pub fn is_poison(&self) -> bool {
        self.facts().is_poison()
    }

    /// What the redrive rules ([`redrive_core::dlq::check_take`]) look at.
    pub fn facts(&self) -> redrive_core::dlq::EntryFacts<'_> {
        redrive_core::dlq::EntryFacts {
            queue: &self.queue,
            state: self.state,
            redrive_count: self.redrive_count,
            max_redrives: self.max_redrives,
        }
    }

    pub fn cursor(&self) -> DlqEntryCursor {
        DlqEntryCursor { entered_at: self.entered_at, id: self.id.clone() }
    }
}

/// Position in the oldest-first entry order `(entered_at ASC, id ASC)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DlqEntryCursor {
    pub entered_at: Timestamp,
    pub id: String,
}

/// Which entries a listing, count or purge covers. Every field narrows (AND).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DlqEntryFilter {
    /// Entries of this queue.
    pub queue: Option<String>,
    /// Entries of queues whose name starts with this (a scheduled redrive's scope).
    pub queue_prefix: Option<String>,
    /// Only entries in this state; `None` = any state.
    pub state: Option<DlqEntryState>,
    /// `Some(true)`: only poison entries; `Some(false)`: only non-poison ones.
    pub poison: Option<bool>,
    /// Exact exception type of the final error.
    pub exception_type: Option<String>,
    /// Entries from this pipeline or function (by name, either kind).
    pub source_name: Option<String>,
    /// Only entries that entered their queue at or before this time (`--older-than`).
    pub entered_at_or_before: Option<Timestamp>,
    /// Keyset pagination: only entries strictly after this cursor in
    /// `(entered_at, id)` ascending order. Ignored by count and purge.
    pub after: Option<DlqEntryCursor>,
    /// Page size, capped at [`limits::MAX_PAGE_SIZE`]; 0 means the largest page.
    /// Ignored by count and purge.
    pub limit: usize,
}

/// A recorded redrive (manual or scheduled): what was asked and what happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedriveRunRecord {
    pub id: String,
    /// The schedule's name for a scheduled run; `None` for a manual one.
    pub schedule: Option<String>,
    /// `RUNNING`, `SUCCEEDED` (went through every matching entry), `FAILED`,
    /// `INTERRUPTED` (the server stopped first).
    pub status: String,
    pub dry_run: bool,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// The request (queues, filters, mode, rate, max) as JSON; opaque to the store.
    pub request_json: String,
    /// Counts and outcomes so far, as JSON; opaque to the store.
    pub summary_json: String,
}

/// Which runs [`Store::list_redrive_runs`] returns, newest first `(started_at DESC, id DESC)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedriveRunFilter {
    /// Only runs of this schedule.
    pub schedule: Option<String>,
    /// Keyset pagination: only runs strictly older than `(started_at, id)`.
    pub before: Option<(Timestamp, String)>,
    /// Page size, capped at [`limits::MAX_PAGE_SIZE`]; 0 means the largest page.
    pub limit: usize,
}

/// One dependency's runtime state (its breaker and retry-budget window counts,
/// `redrive_core::dependency::DependencyState` as JSON): upserted by the engine
/// after the batches that change it, read back when it starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyRecord {
    pub name: String,
    pub state_json: String,
    pub updated_at: Timestamp,
}

/// A dependency state a shard's engine stored (`--spread`): each shard's
/// engine keeps its own, and reads the others' to decide for the cluster
/// ([`redrive_core::dependency::Peers`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardDependencyRecord {
    pub shard: redrive_core::shard::ShardId,
    pub record: DependencyRecord,
}

/// Dependency records one [`Store::list_dependencies`] returns at most (and
/// one [`Store::put_dependencies`] writes at most).
pub const MAX_DEPENDENCY_RECORDS: usize = 10_000;

/// A bearer token: its name and grant, and the SHA-256 of its value (the
/// value itself is never stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// Unique among live tokens; 1 to [`redrive_core::name::NAME_MAX_LEN`] name characters.
    pub name: String,
    /// Lower-case hex SHA-256 of the token ([`TOKEN_HASH_HEX_LEN`] characters); unique.
    pub token_hash: String,
    /// The grant (scope and name limits) as JSON; opaque to the store.
    pub grant_json: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// Length of [`TokenRecord::token_hash`].
pub const TOKEN_HASH_HEX_LEN: usize = 64;
/// Most live tokens a store holds.
pub const MAX_TOKENS: usize = 1000;

/// One state-changing call, recorded after it was answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Assigned by the store on append, increasing; ignored by [`Store::append_audit`].
    pub seq: u64,
    pub at: Timestamp,
    /// The token, access key or schedule that made the call (`anonymous` without auth).
    pub principal: String,
    /// The route (`POST /v1/pipelines/{name}/executions`) or the CodePipeline operation.
    pub action: String,
    /// The pipeline or queue named, if any.
    pub target: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
    /// A bounded summary of the request as JSON (never a secret or token value).
    pub summary_json: String,
}

/// Which audit records [`Store::list_audit`] returns, newest first (`seq DESC`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Keyset pagination: only records with `seq < before_seq`.
    pub before_seq: Option<u64>,
    /// Page size, capped at [`limits::MAX_PAGE_SIZE`]; 0 means the largest page.
    pub limit: usize,
}

/// A token or audit write, sent to a backend's writer.
#[derive(Clone, Debug)]
pub(crate) enum AuthWrite {
    CreateToken(TokenRecord),
    RevokeToken(String),
    AppendAudit(AuditRecord),
}
/// Statuses of a finished execution: the only ones retention may delete.
pub const FINISHED_STATUSES: [&str; 4] = ["Succeeded", "Failed", "Stopped", "Superseded"];

/// Most executions one [`Store::get_executions`] reads.
pub const MAX_EXECUTIONS_PER_READ: usize = 500;

/// `Err(Limit)` when a [`Store::get_executions`] asks for too many.
pub fn check_executions_per_read(ids: &[String]) -> Result<(), StoreError> {
    if ids.len() > MAX_EXECUTIONS_PER_READ {
        return Err(StoreError::Limit(format!("{} executions asked for in one read; at most {MAX_EXECUTIONS_PER_READ}", ids.len())));
    }
    Ok(())
}

/// Most executions one [`PruneStep`] deletes (and most entries or runs).
pub const MAX_PRUNE_STEP: usize = 1000;

/// Which executions [`Store::prune_candidates`] returns: finished ones, last
/// changed before `finished_before`, that no dead-letter entry names — oldest
/// created first `(created_at, id)`, after `after`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneQuery {
    pub finished_before: Timestamp,
    /// Continue after this `(created_at, id)` (exclusive).
    pub after: Option<ExecutionCursor>,
    /// At most this many (capped at [`limits::MAX_PAGE_SIZE`]).
    pub limit: usize,
}

/// A finished execution retention may delete once it is old enough for its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneCandidate {
    pub id: String,
    pub target: TargetName,
    pub status: String,
    /// The version a [`PruneStep`] must still find.
    pub version: u64,
    pub created_at: Timestamp,
    /// When it finished (its last change).
    pub finished_at: Timestamp,
}

impl PruneCandidate {
    pub fn cursor(&self) -> ExecutionCursor {
        ExecutionCursor { created_at: self.created_at, id: self.id.clone() }
    }
}

/// An execution a [`PruneStep`] deletes if it is still at `version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PruneExecution {
    pub id: String,
    pub version: u64,
}

/// One bounded step of retention, applied in one transaction. An execution goes
/// with its ledger rows, timers and client tokens, and only if it is still
/// finished, still at the version given and named by no dead-letter entry (else
/// it is skipped); a dead-letter entry only if `RESOLVED`; a redrive run or a
/// bulk retry operation only if not `RUNNING`; audit records by age alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneStep {
    /// At most [`MAX_PRUNE_STEP`].
    pub executions: Vec<PruneExecution>,
    /// Delete up to `limit` `RESOLVED` entries resolved before this.
    pub resolved_entries_before: Option<Timestamp>,
    /// Delete up to `limit` finished runs that finished before this.
    pub runs_finished_before: Option<Timestamp>,
    /// Delete up to `limit` finished bulk retry operations that finished
    /// before this, each with its per-execution results.
    pub bulk_retries_finished_before: Option<Timestamp>,
    /// Delete up to `limit` audit records written before this, oldest first.
    pub audit_before: Option<Timestamp>,
    /// At most [`MAX_PRUNE_STEP`].
    pub limit: usize,
}

/// What a [`PruneStep`] deleted (or, counted, would delete).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneCounts {
    pub executions: u64,
    pub ledger_rows: u64,
    pub dlq_entries: u64,
    pub redrive_runs: u64,
    /// Bulk retry operations (their results are not counted).
    pub bulk_retries: u64,
    pub audit_records: u64,
}

impl PruneCounts {
    pub fn add(&mut self, other: PruneCounts) {
        self.executions += other.executions;
        self.ledger_rows += other.ledger_rows;
        self.dlq_entries += other.dlq_entries;
        self.redrive_runs += other.redrive_runs;
        self.bulk_retries += other.bulk_retries;
        self.audit_records += other.audit_records;
    }

    pub fn is_empty(&self) -> bool {
        *self == PruneCounts::default()
    }
}

/// Checks a step against [`MAX_PRUNE_STEP`].
pub fn check_prune_step(step: &PruneStep) -> Result<(), StoreError> {
    if step.executions.len() > MAX_PRUNE_STEP || step.limit > MAX_PRUNE_STEP {
        return Err(StoreError::Limit(format!(
            "a prune step deletes at most {MAX_PRUNE_STEP} executions and {MAX_PRUNE_STEP} entries or runs (got {} and limit {})",
            step.executions.len(),
            step.limit
        )));
    }
    Ok(())
}

/// Position in the newest-first execution order `(created_at DESC, id DESC)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExecutionCursor {
    pub created_at: Timestamp,
    pub id: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    /// Only executions of this pipeline (any version) or function; `None`: all,
    /// of both kinds.
    pub target: Option<TargetName>,
    /// Only unfinished (`InProgress`) executions.
    pub unfinished_only: bool,
    /// Keyset pagination: only executions strictly after this cursor in the
    /// listing order, i.e. `(created_at, id) < (cursor.created_at, cursor.id)`.
    /// Pass the [`ExecutionRecord::cursor`] of the last row of a page to get the
    /// next page.
    pub before: Option<ExecutionCursor>,
    /// Page size, capped at [`limits::MAX_PAGE_SIZE`]; 0 means the largest page.
    pub limit: usize,
}

/// Which ledger entries [`Store::list_ledger`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerFilter {
    /// Entries of executions of this pipeline (any version) or function.
    pub target: TargetName,
    /// Only this execution's entries (none if it belongs to another pipeline).
    pub execution_id: Option<String>,
    /// Keyset pagination: only entries with `seq < before_seq`. Pass the `seq` of
    /// the last entry of a page to get the next page.
    pub before_seq: Option<i64>,
    /// Page size, capped at [`limits::MAX_PAGE_SIZE`]; 0 means the largest page.
    pub limit: usize,
}

/// Counters since the store was opened (for benchmarks and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub commits: u64,
    pub transitions: u64,
    /// Attempt-ledger rows written by committed transitions.
    pub ledger_rows: u64,
    pub commit_micros_total: u64,
}

pub type CommitResult = Vec<Result<u64, TransitionError>>;

/// What `redrive doctor` reads about a store itself (not its contents' rules).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreInspection {
    /// The backend's own integrity check (`PRAGMA integrity_check` on SQLite:
    /// `ok` when sound); `None` when the backend has none redrive runs.
    pub integrity: Option<String>,
    /// The schema version the store is at.
    pub schema_version: u32,
    /// Bytes the whole store takes (the SQLite file and its WAL; the PostgreSQL database).
    pub total_bytes: Option<u64>,
    pub tables: Vec<TableStats>,
}

/// One table: its rows, its size when the backend reports it, its oldest row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableStats {
    pub table: &'static str,
    pub rows: u64,
    pub bytes: Option<u64>,
    /// The oldest row's time (creation, start, entry or due time, per table).
    pub oldest: Option<Timestamp>,
}

/// The tables [`StoreInspection::tables`] lists, each with the column that
/// dates its rows. Constant names only (they are formatted into SQL).
pub const INSPECTED_TABLES: [(&str, &str); 6] = [
    ("pipelines", "created_at"),
    ("executions", "created_at"),
    ("ledger", "started_at"),
    ("timers", "due_at"),
    ("dlq_entries", "entered_at"),
    ("redrive_runs", "started_at"),
];

/// This machine's host name (for [`MemberRecord::host`] and lock holders).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer; the last
    // byte stays 0, so a truncated name is still terminated.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if rc == 0 { String::from_utf8_lossy(&buf[..end]).into_owned() } else { "localhost".to_string() }
}

/// Whether a process with this pid runs on this host (`kill(pid, 0)`): the
/// holder of a lock that may have exited.
pub(crate) fn process_is_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && (unsafe { libc::kill(pid, 0) } == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// The engine processes that share a store, and which of them leads: holds the
/// store's engine lease, drives every execution and commits every transition.
/// (SQLite: the one process holding the file's engine lock.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterRecord {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The lease, if a process holds one.
    pub lease: Option<LeaseRecord>,
    /// Processes that announced themselves, most recent heartbeat first.
    pub members: Vec<MemberRecord>,
    /// The shards' leases that were ever taken (PostgreSQL), by shard.
    pub shards: Vec<ShardLeaseRecord>,
}

/// One shard's lease (PostgreSQL): its holder drives that shard's executions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardLeaseRecord {
    pub shard: redrive_core::shard::ShardId,
    pub lease: LeaseRecord,
    /// Whether the lease runs now (by the database's clock).
    pub live: bool,
}

/// What a member of a PostgreSQL cluster is: the two kinds share nothing
/// but the database and must not hold its shards at the same time (a
/// server cannot run a function's steps; an SDK process does not serve a
/// server's API).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MemberKind {
    /// `redrive server` (and `redrive run`, `bench`).
    #[default]
    Server,
    /// A process of the Rust SDK (`Engine::open`) running durable functions.
    Functions,
}

impl MemberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberKind::Server => "server",
            MemberKind::Functions => "functions",
        }
    }

    /// The kind stored as `text` (an unknown one reads as a server's).
    pub fn parse(text: &str) -> MemberKind {
        match text {
            "functions" => MemberKind::Functions,
            _ => MemberKind::Server,
        }
    }
}

/// A request to start an execution of a durable function, for the holder of
/// its shard (see [`PostgresStore::request_function_start`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartRequest {
    pub function: String,
    /// The execution name: the start's idempotency key.
    pub name: String,
    pub input_json: String,
}

impl StartRequest {
    /// Its sizes, where it enters: a valid function name, an execution name of
    /// 1 to [`limits::MAX_EXECUTION_NAME_BYTES`] bytes, an input of at most
    /// [`limits::MAX_INPUT_BYTES`].
    pub fn check(&self) -> Result<(), StoreError> {
        redrive_core::name::Name::parse(&self.function).map_err(|e| StoreError::Limit(format!("function name {:?} {e}", self.function)))?;
        if self.name.is_empty() || self.name.len() > limits::MAX_EXECUTION_NAME_BYTES {
            return Err(StoreError::Limit(format!(
                "execution name of {} bytes; allowed: 1 to {}",
                self.name.len(),
                limits::MAX_EXECUTION_NAME_BYTES
            )));
        }
        if self.input_json.len() > limits::MAX_INPUT_BYTES {
            return Err(StoreError::Limit(format!(
                "input of {} bytes; allowed: at most {}",
                self.input_json.len(),
                limits::MAX_INPUT_BYTES
            )));
        }
        Ok(())
    }
}

/// A start request waiting for its shard's holder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartRequestRecord {
    pub id: i64,
    pub request: StartRequest,
    pub requested_at: Timestamp,
}

/// Who drives a shard now: a live lease's holder and where it serves HTTP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardOwner {
    pub shard: redrive_core::shard::ShardId,
    /// The holder's [`MemberRecord::id`].
    pub member: String,
    /// The URL it announced (`None` before it announced one).
    pub url: Option<String>,
}

/// The store's engine lease: its holder drives the executions; every write it
/// makes carries `token` and is refused once another process took the lease over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The [`MemberRecord::id`] of the holder.
    pub holder: String,
    /// The fencing token: +1 at every change of holder.
    pub token: i64,
    pub acquired_at: Timestamp,
    /// Until when the holder is the leader unless it renews (by the database's clock).
    pub expires_at: Timestamp,
}

/// One engine process sharing the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberRecord {
    /// Unique per process start (host, pid and a random part).
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// Where it serves HTTP, as other processes reach it (followers forward requests there).
    pub url: Option<String>,
    /// A server or an SDK process.
    pub kind: MemberKind,
    pub started_at: Timestamp,
    pub heartbeat_at: Timestamp,
    /// Whether its heartbeat is recent (within the lease length).
    pub alive: bool,
}

/// This process's [`MemberRecord::id`]: `HOST-PID`.
pub fn member_id() -> String {
    format!("{}-{}", hostname(), std::process::id())
}

/// Durable state. Every method is cancel-safe in the sense that dropping the future
/// never leaves a half-written transaction; a commit whose future was dropped may
/// or may not have been applied.
///
/// # Pipelines
/// Every version of a pipeline is kept (executions name the version they run).
/// A name is *live* from its first create/put until [`Store::delete_pipeline`],
/// which leaves a tombstone: the name is hidden from [`Store::get_pipeline`]
/// (latest) and [`Store::list_pipelines`], its versions stay readable by number,
/// and a later create/put revives it with version latest+1 (versions are never
/// reused).
pub trait Store: Send + Sync + 'static {
    /// Stores a pipeline definition (what `redrive run` does). If the name is live
    /// and its latest version has the same `definition_json` and `source_dir`,
    /// returns that version unchanged; otherwise inserts version latest+1 (or 1),
    /// reviving a deleted name.
    fn put_pipeline(
        &self,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> impl Future<Output = Result<PipelineRecord, StoreError>> + Send;

    /// Creates a pipeline: version 1, or latest+1 if the name was deleted before.
    /// [`StoreError::AlreadyExists`] if a live pipeline of that name exists.
    fn create_pipeline(
        &self,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> impl Future<Output = Result<PipelineRecord, StoreError>> + Send;

    /// Updates a live pipeline: always inserts version latest+1, even if the
    /// definition is unchanged. [`StoreError::NotFound`] if no live pipeline has
    /// that name.
    fn update_pipeline(
        &self,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> impl Future<Output = Result<PipelineRecord, StoreError>> + Send;

    /// Deletes a pipeline (a tombstone, see the trait docs) and forgets the client
    /// tokens of its executions. Returns `false` if no live pipeline had that name.
    fn delete_pipeline(&self, name: &str, now: Timestamp) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// A given version (even of a deleted pipeline), or the latest when `version`
    /// is `None` (`None` if the pipeline is deleted).
    fn get_pipeline(&self, name: &str, version: Option<u32>) -> impl Future<Output = Result<Option<PipelineRecord>, StoreError>> + Send;

    /// The latest version of each live pipeline, ordered by name (byte order),
    /// names strictly after `after_name` (cursor pagination), at most `limit`
    /// (capped at [`limits::MAX_PAGE_SIZE`]; 0 means the largest page).
    fn list_pipelines(
        &self,
        after_name: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PipelineRecord>, StoreError>> + Send;

    /// Commits transitions atomically as one durable group: each transition is all
    /// or nothing, and each gets its own result (a version conflict, a refused
    /// dead-letter op or a transition over one of [`limits`] —
    /// [`TransitionError::Limit`] — refuses only that transition). Resolves only
    /// after the data is durable. [`StoreError::Limit`] only for more than
    /// [`limits::MAX_TRANSITIONS_PER_COMMIT`] transitions.
    /// The transitions are shared (`Arc`) so that a caller can retry the same
    /// commit after a transient [`StoreError::Unavailable`] without copying them.
    fn commit(&self, transitions: Arc<[Transition]>) -> impl Future<Output = Result<CommitResult, StoreError>> + Send;

    /// Quarantines an execution the engine cannot drive: whatever its version,
    /// sets `status` (a finished one) and `fault`, bumps the version (so any
    /// commit computed before is refused as a conflict), and deletes its timers;
    /// the state document and the ledger stay as they are. Returns the new
    /// version, or `None` if the execution does not exist. Durable when it resolves.
    fn quarantine_execution(
        &self,
        id: &str,
        status: &str,
        fault: ExecutionFault,
        at: Timestamp,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    fn get_execution(&self, id: &str) -> impl Future<Output = Result<Option<ExecutionRecord>, StoreError>> + Send;

    /// The records of those of `ids` that exist, in no particular order, read
    /// in one query: at most [`MAX_EXECUTIONS_PER_READ`] ids (more is
    /// [`StoreError::Limit`]).
    fn get_executions(&self, ids: &[String]) -> impl Future<Output = Result<Vec<ExecutionRecord>, StoreError>> + Send;

    /// Newest first: `(created_at DESC, id DESC)`, so executions created at the
    /// same instant come in descending id order; see [`ExecutionFilter`].
    fn list_executions(&self, filter: ExecutionFilter) -> impl Future<Output = Result<Vec<ExecutionRecord>, StoreError>> + Send;

    /// The ledger of one execution, in commit order.
    fn ledger(&self, execution_id: &str) -> impl Future<Output = Result<Vec<LedgerEntry>, StoreError>> + Send;

    /// Ledger entries of a pipeline's executions, newest first (`seq DESC`); see
    /// [`LedgerFilter`].
    fn list_ledger(&self, filter: LedgerFilter) -> impl Future<Output = Result<Vec<LedgerEntry>, StoreError>> + Send;

    /// Timers due at or before `now`, earliest first, at most `limit`.
    fn due_timers(&self, now: Timestamp, limit: usize) -> impl Future<Output = Result<Vec<TimerRecord>, StoreError>> + Send;

    /// Like [`Store::due_timers`], continuing after `after` in the same order
    /// (due time, execution id, key): a poll can page past due timers nobody can
    /// fire yet instead of meeting them first every time.
    fn due_timers_after(
        &self,
        now: Timestamp,
        after: &TimerRecord,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<TimerRecord>, StoreError>> + Send;

    /// The earliest timer's due time.
    fn next_timer_due(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;

    /// How many timers are pending (due or not).
    fn count_timers(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Timers of one execution.
    fn execution_timers(&self, execution_id: &str) -> impl Future<Output = Result<Vec<TimerRecord>, StoreError>> + Send;

    // ---- dead-letter queues ----

    /// Creates the queue with [`DEFAULT_MAX_REDRIVES`] if it does not exist;
    /// returns it either way.
    fn ensure_dlq_queue(&self, name: &str, now: Timestamp) -> impl Future<Output = Result<DlqQueueRecord, StoreError>> + Send;

    /// Creates or updates a queue's settings. `max_redrives` in 1..=[`MAX_MAX_REDRIVES`]
    /// ([`StoreError::Limit`] otherwise).
    fn configure_dlq_queue(
        &self,
        name: &str,
        max_redrives: u32,
        now: Timestamp,
    ) -> impl Future<Output = Result<DlqQueueRecord, StoreError>> + Send;

    fn get_dlq_queue(&self, name: &str) -> impl Future<Output = Result<Option<DlqQueueStats>, StoreError>> + Send;

    /// Queues ordered by name, names strictly after `after_name`, only names
    /// starting with `prefix` if given, at most `limit` (capped at
    /// [`limits::MAX_PAGE_SIZE`]; 0 means the largest page).
    fn list_dlq_queues(
        &self,
        prefix: Option<&str>,
        after_name: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DlqQueueStats>, StoreError>> + Send;

    fn get_dlq_entry(&self, id: &str) -> impl Future<Output = Result<Option<DlqEntryRecord>, StoreError>> + Send;

    /// Oldest first `(entered_at ASC, id ASC)`; see [`DlqEntryFilter`].
    fn list_dlq_entries(&self, filter: DlqEntryFilter) -> impl Future<Output = Result<Vec<DlqEntryRecord>, StoreError>> + Send;

    /// How many entries match (`after` and `limit` ignored).
    fn count_dlq_entries(&self, filter: DlqEntryFilter) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Deletes the matching entries that are `QUEUED` (whatever `filter.state`
    /// says; `after` and `limit` ignored) in one transaction; returns how many.
    fn purge_dlq_entries(&self, filter: DlqEntryFilter) -> impl Future<Output = Result<u64, StoreError>> + Send;

    // ---- redrive runs ----

    /// Inserts a run ([`StoreError::AlreadyExists`] if the id exists).
    fn create_redrive_run(&self, run: RedriveRunRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces a run's status, finished_at and summary ([`StoreError::NotFound`] if missing).
    fn update_redrive_run(&self, run: RedriveRunRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    fn get_redrive_run(&self, id: &str) -> impl Future<Output = Result<Option<RedriveRunRecord>, StoreError>> + Send;

    fn list_redrive_runs(&self, filter: RedriveRunFilter) -> impl Future<Output = Result<Vec<RedriveRunRecord>, StoreError>> + Send;

    /// Marks every `RUNNING` run `INTERRUPTED` with `finished_at` = `now` (at
    /// start-up: the process that ran them is gone); returns how many.
    fn interrupt_redrive_runs(&self, now: Timestamp) -> impl Future<Output = Result<u64, StoreError>> + Send;

    // ---- tokens and audit ----

    /// Stores a token ([`StoreError::AlreadyExists`] if the name or hash is
    /// taken; [`StoreError::Limit`] past [`MAX_TOKENS`] or over the field limits).
    fn create_token(&self, token: TokenRecord) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes a token; `false` if no token had that name.
    fn revoke_token(&self, name: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Every token, by name (at most [`MAX_TOKENS`]).
    fn list_tokens(&self) -> impl Future<Output = Result<Vec<TokenRecord>, StoreError>> + Send;

    /// The token with this hash (the caller compares the hash again in constant time).
    fn token_by_hash(&self, token_hash: &str) -> impl Future<Output = Result<Option<TokenRecord>, StoreError>> + Send;

    /// Appends an audit record; returns its `seq`.
    fn append_audit(&self, record: AuditRecord) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Audit records, newest first; see [`AuditFilter`].
    fn list_audit(&self, filter: AuditFilter) -> impl Future<Output = Result<Vec<AuditRecord>, StoreError>> + Send;
    // ---- dependencies ----

    /// Inserts or replaces each record (by name), all in one transaction;
    /// [`StoreError::Limit`] over the field limits (nothing is written then).
    /// A shard's store keeps its shard's records apart from every other
    /// shard's and from the whole database's.
    fn put_dependencies(&self, records: Vec<DependencyRecord>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every dependency record, by name (at most [`MAX_DEPENDENCY_RECORDS`]):
    /// the whole database's, or a shard's store's own shard's.
    fn list_dependencies(&self) -> impl Future<Output = Result<Vec<DependencyRecord>, StoreError>> + Send;

    /// The records every shard's store wrote, by shard and name (at most
    /// [`MAX_DEPENDENCY_RECORDS`]); none where the database has no shards (SQLite).
    fn list_shard_dependencies(&self) -> impl Future<Output = Result<Vec<ShardDependencyRecord>, StoreError>> + Send;

    // ---- bulk stage retries ----

    /// Applies one operation or result write ([`BulkWrite`] says what each
    /// refuses); returns how many rows it changed.
    fn write_bulk_retry(&self, write: BulkWrite) -> impl Future<Output = Result<u64, StoreError>> + Send;

    fn get_bulk_retry(&self, id: &str) -> impl Future<Output = Result<Option<BulkRetryRecord>, StoreError>> + Send;

    /// A pipeline's operations, newest first `(started_at DESC, id DESC)`,
    /// strictly before `before`; `limit` capped at [`limits::MAX_PAGE_SIZE`]
    /// (0 means the largest page).
    fn list_bulk_retries(
        &self,
        pipeline: &str,
        before: Option<(Timestamp, String)>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<BulkRetryRecord>, StoreError>> + Send;

    /// An operation's results in `seq` order, `seq > after_seq`; `limit` as above.
    fn list_bulk_retry_results(
        &self,
        op_id: &str,
        after_seq: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<BulkRetryResult>, StoreError>> + Send;

    /// Inserts an operation ([`StoreError::AlreadyExists`] if the id exists).
    fn create_bulk_retry(&self, op: BulkRetryRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move { self.write_bulk_retry(BulkWrite::Create(op)).await.map(drop) }
    }

    /// Replaces an operation's status, finished_at and summary.
    fn update_bulk_retry(&self, op: BulkRetryRecord) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move { self.write_bulk_retry(BulkWrite::Update(op)).await.map(drop) }
    }

    /// Marks every `RUNNING` operation `INTERRUPTED` (at start-up); returns how many.
    fn interrupt_bulk_retries(&self, now: Timestamp) -> impl Future<Output = Result<u64, StoreError>> + Send {
        async move { self.write_bulk_retry(BulkWrite::Interrupt(now)).await }
    }

    /// Records one execution's result (refused if the operation has one for it).
    fn add_bulk_retry_result(&self, result: BulkRetryResult) -> impl Future<Output = Result<(), StoreError>> + Send {
        async move { self.write_bulk_retry(BulkWrite::AddResult(result)).await.map(drop) }
    }

    // ---- retention ----

    /// Finished executions old enough to be deleted (see [`PruneQuery`]).
    fn prune_candidates(&self, query: PruneQuery) -> impl Future<Output = Result<Vec<PruneCandidate>, StoreError>> + Send;

    /// Applies one step of retention in one transaction ([`PruneStep`]).
    fn prune(&self, step: PruneStep) -> impl Future<Output = Result<PruneCounts, StoreError>> + Send;

    /// How many `RESOLVED` entries resolved before `resolved_entries_before`,
    /// finished runs finished before `runs_finished_before`, finished bulk
    /// retry operations finished before `bulk_retries_finished_before` and audit
    /// records written before `audit_before` a prune would delete
    /// (executions are counted through [`Store::prune_candidates`]).
    fn count_prunable(&self, step: PruneStep) -> impl Future<Output = Result<PruneCounts, StoreError>> + Send;

    fn stats(&self) -> CommitStats;

    /// The one shard this store drives (a PostgreSQL shard's store, see
    /// `PostgresStore::shard_member`): its engine must hold only that shard's
    /// executions. `None`: every execution (the default).
    fn driven_shard(&self) -> Option<redrive_core::shard::ShardId> {
        None
    }

    /// Who leads and who shares the store. A single-process store reports the
    /// process that holds it.
    fn cluster(&self) -> impl Future<Output = Result<ClusterRecord, StoreError>> + Send {
        async { Ok(ClusterRecord { backend: "unknown", lease: None, members: Vec::new(), shards: Vec::new() }) }
    }
}
