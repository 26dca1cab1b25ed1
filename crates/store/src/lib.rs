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

pub mod conformance;
pub mod faulty;
pub mod sqlite;
pub mod validate;

pub use sqlite::{Durability, SqliteOptions, SqliteStore};

/// Upper bounds enforced by every backend.
pub mod limits {
    /// Transitions in one `commit` call.
    pub const MAX_TRANSITIONS_PER_COMMIT: usize = 10_000;
    /// Size of an execution's state document.
    pub const MAX_STATE_BYTES: usize = 4 * 1024 * 1024;
    /// Size of an execution's input document.
    pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
    /// Size of a pipeline definition document.
    pub const MAX_DEFINITION_BYTES: usize = 1024 * 1024;
    /// Rows returned by one page of any listing.
    pub const MAX_PAGE_SIZE: usize = 1000;
    /// Characters of a [`crate::ClientToken::token`] (at least 1).
    pub const MAX_CLIENT_TOKEN_CHARS: usize = 128;
    /// Size of a [`crate::ClientToken::fingerprint`].
    pub const MAX_FINGERPRINT_BYTES: usize = 1024;
}

#[derive(Debug, thiserror::Error)]
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
    /// A live pipeline of that name already exists ([`Store::create_pipeline`]).
    #[error("already exists: {0}")]
    AlreadyExists(String),
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionRecord {
    pub id: String,
    pub pipeline_name: String,
    pub pipeline_version: u32,
    /// `InProgress`, `Succeeded`, `Failed`, `Stopped`, ...; finished ones are not `InProgress`.
    pub status: String,
    pub input_json: String,
    pub state_json: String,
    pub version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl ExecutionRecord {
    /// The cursor for the page after the one ending with this record.
    pub fn cursor(&self) -> ExecutionCursor {
        ExecutionCursor { created_at: self.created_at, id: self.id.clone() }
    }
}

/// Start idempotency (`clientRequestToken`): at most one execution is created per
/// `(pipeline_name, token)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientToken {
    /// 1 to [`limits::MAX_CLIENT_TOKEN_CHARS`] characters, chosen by the client.
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
    /// Pipeline and input are recorded on create and immutable afterwards: an
    /// update ignores these three fields.
    pub pipeline_name: String,
    pub pipeline_version: u32,
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
    /// execution, keyed by `(pipeline_name, token)`. If the token was already used
    /// for that pipeline, the create is refused with
    /// [`TransitionError::TokenReused`] (checked before
    /// [`TransitionError::AlreadyExists`]); a refused create does not consume the
    /// token. Ignored on update.
    pub client_token: Option<ClientToken>,
}

/// Position in the newest-first execution order `(created_at DESC, id DESC)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExecutionCursor {
    pub created_at: Timestamp,
    pub id: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecutionFilter {
    pub pipeline_name: Option<String>,
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
    /// Entries of executions of this pipeline (any version).
    pub pipeline_name: String,
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
    pub commit_micros_total: u64,
}

pub type CommitResult = Vec<Result<u64, TransitionError>>;

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
    /// or nothing, and each gets its own result (a version conflict refuses only
    /// that transition). Resolves only after the data is durable.
    fn commit(&self, transitions: Vec<Transition>) -> impl Future<Output = Result<CommitResult, StoreError>> + Send;

    fn get_execution(&self, id: &str) -> impl Future<Output = Result<Option<ExecutionRecord>, StoreError>> + Send;

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

    /// The earliest timer's due time.
    fn next_timer_due(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;

    /// Timers of one execution.
    fn execution_timers(&self, execution_id: &str) -> impl Future<Output = Result<Vec<TimerRecord>, StoreError>> + Send;

    fn stats(&self) -> CommitStats;
}
