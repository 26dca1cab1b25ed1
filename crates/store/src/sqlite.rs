//! The SQLite backend: one database file in WAL mode, one writer thread doing group
//! commit, a small pool of read-only connections for queries.
//!
//! # Writes
//! Every write ([`Store::commit`], the pipeline writes, the dead-letter-queue and
//! redrive-run writes) is sent over a bounded channel to a single writer thread
//! that owns the only read-write connection. The writer blocks for one request,
//! then drains every request already queued (up to
//! [`SqliteOptions::max_batch_transitions`] transitions) and applies them all in one
//! `BEGIN IMMEDIATE` … `COMMIT` transaction, so many callers share one fsync. Each
//! transition (with its dead-letter ops) runs inside its own `SAVEPOINT`: a version
//! conflict, a duplicate create or a refused dead-letter op rolls back that
//! transition alone. Callers are answered only after
//! `COMMIT` returns; if the transaction fails (disk full, I/O error, busy) it is
//! rolled back and every caller in the group gets [`StoreError::Unavailable`].
//!
//! # Reads
//! Queries run on read-only connections via [`tokio::task::spawn_blocking`]; WAL
//! mode gives them a consistent snapshot without blocking the writer.
//!
//! # Engine lock
//! [`SqliteStore::open`] takes an exclusive advisory lock (`flock`) on the
//! database file itself for the store's lifetime — on the file's identity (device
//! and inode), so a second redrive process is refused whatever path reaches the
//! file (a symlink, a hard link under another name, whose WAL would be another
//! file). `<db path>-redrive.lock` holds the holder's pid for error messages.
//! [`SqliteStore::open_read_only`] takes no lock.
//!
//! # A file deleted or replaced underneath
//! Before every group the writer checks that the path still names the file it
//! holds open and that the file still has a link. If not, everything it would
//! commit from then on would be lost, so every write fails with
//! [`StoreError::Lost`] (the engine stops, and a supervisor restarts it).

mod auth;
mod bulk;
mod dependencies;

use crate::process_is_alive;
use crate::validate::{
    check_audit, check_commit, check_definition, check_dlq_queue_name, check_fault, check_max_redrives, check_redrive_run, check_token,
    check_transition,
};
use crate::{
    AuditFilter, AuditRecord, AuthWrite, ClusterRecord, CommitResult, CommitStats, DEFAULT_MAX_REDRIVES, DlqEntryFilter, DlqEntryRecord,
    DlqEntryState, DlqOp, DlqQueueRecord, DlqQueueStats, ExecutionFault, ExecutionFilter, ExecutionKind, ExecutionRecord, LedgerEntry,
    LedgerFilter, MemberRecord, PipelineRecord, PruneCandidate, PruneCounts, PruneQuery, PruneStep, RedriveRunFilter, RedriveRunRecord,
    Store, StoreError, Target, TargetName, TimerRecord, TokenRecord, Transition, TransitionError, check_prune_step, limits::MAX_PAGE_SIZE,
};
use redrive_core::time::Timestamp;
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, ToSql, params};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Default cap on the transitions applied in one SQLite transaction.
pub const DEFAULT_MAX_BATCH_TRANSITIONS: usize = 4096;
/// Default number of read-only connections.
pub const DEFAULT_READERS: usize = 2;
/// How long a connection waits for a lock held by another connection.
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);
/// Appended to the database path to name the engine lock file.
pub const LOCK_FILE_SUFFIX: &str = "-redrive.lock";
/// Write requests that may wait for the writer before `commit` callers block.
const WRITE_QUEUE_CAPACITY: usize = 1024;
/// Prepared statements cached per connection.
const STATEMENT_CACHE_CAPACITY: usize = 64;
/// The status of an unfinished execution (see [`ExecutionRecord::status`]).
const UNFINISHED_STATUS: &str = "InProgress";
/// The per-transition savepoint inside a group transaction.
const SQL_SAVEPOINT: &str = "SAVEPOINT transition";
const SQL_ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO transition";
const SQL_RELEASE_SAVEPOINT: &str = "RELEASE transition";

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: the WAL is fsynced at every commit; an acknowledged
    /// transition survives power loss and OS crashes.
    #[default]
    Full,
    /// `synchronous=NORMAL`: fsync only at checkpoints; an acknowledged transition
    /// survives a process crash but the latest ones may be lost on power loss.
    Normal,
}

impl Durability {
    fn pragma_value(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// Tuning of a [`SqliteStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqliteOptions {
    pub durability: Durability,
    /// Most transitions applied in one SQLite transaction (one group commit). A
    /// single `commit` call larger than this still runs as one transaction.
    pub max_batch_transitions: usize,
    /// Read-only connections serving queries (at least 1 is used).
    pub readers: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { durability: Durability::Full, max_batch_transitions: DEFAULT_MAX_BATCH_TRANSITIONS, readers: DEFAULT_READERS }
    }
}

// ---------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------

/// Migration 1: the initial schema.
const MIGRATION_1: &str = r#"
CREATE TABLE pipelines (
    name            TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    definition_json TEXT    NOT NULL,
    source_dir      TEXT,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE executions (
    id               TEXT    NOT NULL PRIMARY KEY,
    pipeline_name    TEXT    NOT NULL,
    pipeline_version INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    input_json       TEXT    NOT NULL,
    state_json       TEXT    NOT NULL,
    version          INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX executions_created          ON executions (created_at);
CREATE INDEX executions_status_created   ON executions (status, created_at);
CREATE INDEX executions_pipeline_created ON executions (pipeline_name, created_at);

CREATE TABLE ledger (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id   TEXT    NOT NULL REFERENCES executions (id),
    stage          TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    series         INTEGER NOT NULL,
    attempt        INTEGER NOT NULL,
    "trigger"      TEXT    NOT NULL,
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER NOT NULL,
    outcome        TEXT    NOT NULL,
    exception_type TEXT,
    message        TEXT,
    decision_json  TEXT
);
CREATE INDEX ledger_execution_seq ON ledger (execution_id, seq);

-- The ledger is append-only: history is never rewritten.
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE is not allowed');
END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only: DELETE is not allowed');
END;

CREATE TABLE timers (
    execution_id TEXT    NOT NULL REFERENCES executions (id),
    key          TEXT    NOT NULL,
    due_at       INTEGER NOT NULL,
    PRIMARY KEY (execution_id, key)
);
-- Covering index: due_timers and next_timer_due never touch the table.
CREATE INDEX timers_due ON timers (due_at, execution_id, key);
"#;

/// Migration 2: what `redrive server` needs.
///
/// - `pipeline_names`: one row per pipeline name ever written; `deleted_at` is the
///   tombstone of a deleted pipeline (its versions stay in `pipelines`, since
///   executions reference them, and a revived name continues their numbering).
/// - `client_tokens`: start idempotency, one row per `(pipeline, token)`.
/// - Executions are listed in `(created_at DESC, id DESC)` order for keyset
///   pagination, so the indexes end in `(created_at, id)` (migration 1's ended in
///   the rowid). The unfinished ones are partial indexes: they hold only
///   `InProgress` rows, the few that matter.
/// - The ledger gets the execution's pipeline (backfilled) so a pipeline's
///   attempts can be listed newest first from one index. The append-only trigger
///   is lifted for the backfill and restored unchanged, in the same transaction.
const MIGRATION_2: &str = r#"
CREATE TABLE pipeline_names (
    name       TEXT    NOT NULL PRIMARY KEY,
    deleted_at INTEGER
) WITHOUT ROWID;
INSERT INTO pipeline_names (name) SELECT DISTINCT name FROM pipelines;
CREATE INDEX pipeline_names_live ON pipeline_names (name) WHERE deleted_at IS NULL;

CREATE TABLE client_tokens (
    pipeline_name TEXT    NOT NULL,
    token         TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    execution_id  TEXT    NOT NULL REFERENCES executions (id),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (pipeline_name, token)
) WITHOUT ROWID;

DROP INDEX executions_created;
DROP INDEX executions_status_created;
DROP INDEX executions_pipeline_created;
CREATE INDEX executions_created_id          ON executions (created_at, id);
CREATE INDEX executions_pipeline_created_id ON executions (pipeline_name, created_at, id);
CREATE INDEX executions_unfinished          ON executions (created_at, id) WHERE status = 'InProgress';
CREATE INDEX executions_pipeline_unfinished ON executions (pipeline_name, created_at, id) WHERE status = 'InProgress';

ALTER TABLE ledger ADD COLUMN pipeline_name TEXT NOT NULL DEFAULT '';
DROP TRIGGER ledger_no_update;
UPDATE ledger SET pipeline_name = COALESCE((SELECT e.pipeline_name FROM executions e WHERE e.id = ledger.execution_id), '');
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE is not allowed');
END;
CREATE INDEX ledger_pipeline_seq ON ledger (pipeline_name, seq);
"#;

/// Migration 3: dead-letter queues and redrive runs.
///
/// - `dlq_queues`: one row per queue, created on first use.
/// - `dlq_entries`: one row per failed execution lineage. Every listing is
///   oldest first `(entered_at, id)`, so each index ends in those columns after
///   its equality columns. `dlq_entries_queue` serves a queue's (or a queue
///   prefix's, as a range) entries and, ending in `redrive_count`, counts a
///   queue's poison entries without touching the table; the others serve the
///   state, pipeline and exception-type filters and the unfiltered listing.
/// - `redrive_runs`: newest first `(started_at DESC, id DESC)`, overall or per
///   schedule; the partial index finds the `RUNNING` ones at start-up.
const MIGRATION_3: &str = r#"
CREATE TABLE dlq_queues (
    name         TEXT    NOT NULL PRIMARY KEY,
    max_redrives INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE dlq_entries (
    id               TEXT    NOT NULL PRIMARY KEY,
    queue            TEXT    NOT NULL REFERENCES dlq_queues (name),
    state            TEXT    NOT NULL CHECK (state IN ('QUEUED', 'REDRIVEN', 'RESOLVED')),
    pipeline_name    TEXT    NOT NULL,
    pipeline_version INTEGER NOT NULL,
    execution_id     TEXT    NOT NULL,
    stage            TEXT    NOT NULL,
    action           TEXT    NOT NULL,
    exception_type   TEXT    NOT NULL,
    message          TEXT    NOT NULL,
    input_json       TEXT    NOT NULL,
    detail_json      TEXT    NOT NULL,
    redrive_count    INTEGER NOT NULL,
    first_failure_at INTEGER NOT NULL,
    last_failure_at  INTEGER NOT NULL,
    entered_at       INTEGER NOT NULL,
    redriven_to      TEXT,
    redriven_at      INTEGER,
    resolved_at      INTEGER,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX dlq_entries_queue     ON dlq_entries (queue, state, entered_at, id, redrive_count);
CREATE INDEX dlq_entries_state     ON dlq_entries (state, entered_at, id);
CREATE INDEX dlq_entries_entered   ON dlq_entries (entered_at, id);
CREATE INDEX dlq_entries_pipeline  ON dlq_entries (pipeline_name, state, entered_at, id);
CREATE INDEX dlq_entries_exception ON dlq_entries (exception_type, state, entered_at, id);

CREATE TABLE redrive_runs (
    id           TEXT    NOT NULL PRIMARY KEY,
    schedule     TEXT,
    status       TEXT    NOT NULL,
    dry_run      INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    request_json TEXT    NOT NULL,
    summary_json TEXT    NOT NULL
);
CREATE INDEX redrive_runs_started          ON redrive_runs (started_at, id);
CREATE INDEX redrive_runs_schedule_started ON redrive_runs (schedule, started_at, id);
CREATE INDEX redrive_runs_running          ON redrive_runs (id) WHERE status = 'RUNNING';
"#;

/// Migration 4: quarantined executions ([`Store::quarantine_execution`]): the
/// fault that made the engine give up on one (both NULL for every other).
const MIGRATION_4: &str = r#"
ALTER TABLE executions ADD COLUMN fault_type TEXT;
ALTER TABLE executions ADD COLUMN fault_message TEXT;
"#;

/// Migration 5: one execution model with a `kind` (`pipeline` | `function`)
/// instead of function executions named `fn:<function>` with pipeline version 0.
/// Executions, their ledger rows, dead-letter entries and client tokens get the
/// kind; names lose the prefix; the name indexes (and the client tokens' key)
/// start with the kind, so a function and a pipeline may share a name. The
/// `pipeline_version` column of a function execution keeps 0, unread. The
/// ledger's append-only trigger is lifted for the backfill and restored
/// unchanged, in the same transaction.
const MIGRATION_5: &str = r#"
ALTER TABLE executions ADD COLUMN kind TEXT NOT NULL DEFAULT 'pipeline' CHECK (kind IN ('pipeline', 'function'));
UPDATE executions SET kind = 'function', pipeline_name = substr(pipeline_name, 4)
 WHERE pipeline_version = 0 AND pipeline_name LIKE 'fn:%';
DROP INDEX executions_pipeline_created_id;
DROP INDEX executions_pipeline_unfinished;
CREATE INDEX executions_target_created_id ON executions (kind, pipeline_name, created_at, id);
CREATE INDEX executions_target_unfinished ON executions (kind, pipeline_name, created_at, id) WHERE status = 'InProgress';

ALTER TABLE ledger ADD COLUMN kind TEXT NOT NULL DEFAULT 'pipeline';
DROP TRIGGER ledger_no_update;
UPDATE ledger SET kind = 'function', pipeline_name = substr(pipeline_name, 4) WHERE pipeline_name LIKE 'fn:%';
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE is not allowed');
END;
DROP INDEX ledger_pipeline_seq;
CREATE INDEX ledger_target_seq ON ledger (kind, pipeline_name, seq);

ALTER TABLE dlq_entries ADD COLUMN kind TEXT NOT NULL DEFAULT 'pipeline' CHECK (kind IN ('pipeline', 'function'));
UPDATE dlq_entries SET kind = 'function', pipeline_name = substr(pipeline_name, 4)
 WHERE pipeline_version = 0 AND pipeline_name LIKE 'fn:%';

CREATE TABLE client_tokens_v5 (
    kind          TEXT    NOT NULL,
    pipeline_name TEXT    NOT NULL,
    token         TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    execution_id  TEXT    NOT NULL REFERENCES executions (id),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (kind, pipeline_name, token)
) WITHOUT ROWID;
INSERT INTO client_tokens_v5 (kind, pipeline_name, token, fingerprint, execution_id, created_at)
 SELECT CASE WHEN pipeline_name LIKE 'fn:%' THEN 'function' ELSE 'pipeline' END,
        CASE WHEN pipeline_name LIKE 'fn:%' THEN substr(pipeline_name, 4) ELSE pipeline_name END,
        token, fingerprint, execution_id, created_at
   FROM client_tokens;
DROP TABLE client_tokens;
ALTER TABLE client_tokens_v5 RENAME TO client_tokens;
"#;

/// Migration 6: retention ([`Store::prune`]).
///
/// - `ledger_prunable`: the executions whose ledger rows the prune running in
///   this transaction may delete. The append-only trigger on DELETE now lets a
///   row go only if its execution is listed there (the prune lists it, deletes
///   its rows and unlists it in one transaction); UPDATE stays refused.
/// - Indexes for what a prune checks per execution: the dead-letter entries that
///   name it (an execution an entry names is never deleted) and its client tokens.
const MIGRATION_6: &str = r#"
CREATE TABLE ledger_prunable (
    execution_id TEXT NOT NULL PRIMARY KEY
) WITHOUT ROWID;
DROP TRIGGER ledger_no_delete;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
WHEN NOT EXISTS (SELECT 1 FROM ledger_prunable p WHERE p.execution_id = OLD.execution_id)
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only: DELETE is allowed only for an execution retention deletes');
END;
CREATE INDEX dlq_entries_execution   ON dlq_entries (execution_id);
CREATE INDEX dlq_entries_redriven_to ON dlq_entries (redriven_to) WHERE redriven_to IS NOT NULL;
CREATE INDEX client_tokens_execution ON client_tokens (execution_id);
"#;

/// Ordered schema migrations; migration `i` brings the schema to version `i + 1`.
/// Never edit a released migration: append a new one.
const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
    MIGRATION_6,
    auth::MIGRATION_AUTH,
    dependencies::MIGRATION_DEPENDENCIES,
    bulk::MIGRATION_BULK_RETRIES,
];

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

// ---------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------

/// The latest stored version, whether or not the name is deleted.
const SQL_LATEST_STORED_PIPELINE: &str = "SELECT name, version, definition_json, source_dir, created_at \
     FROM pipelines WHERE name = ?1 ORDER BY version DESC LIMIT 1";
/// The latest version of a live pipeline.
const SQL_LATEST_LIVE_PIPELINE: &str = "SELECT p.name, p.version, p.definition_json, p.source_dir, p.created_at \
     FROM pipeline_names n JOIN pipelines p ON p.name = n.name \
     WHERE n.name = ?1 AND n.deleted_at IS NULL ORDER BY p.version DESC LIMIT 1";
const SQL_PIPELINE_VERSION: &str = "SELECT name, version, definition_json, source_dir, created_at \
     FROM pipelines WHERE name = ?1 AND version = ?2";
const SQL_INSERT_PIPELINE: &str =
    "INSERT INTO pipelines (name, version, definition_json, source_dir, created_at) VALUES (?1, ?2, ?3, ?4, ?5)";
/// `Some(true)` live, `Some(false)` deleted, no row: never written.
const SQL_PIPELINE_IS_LIVE: &str = "SELECT deleted_at IS NULL FROM pipeline_names WHERE name = ?1";
const SQL_REVIVE_PIPELINE_NAME: &str =
    "INSERT INTO pipeline_names (name, deleted_at) VALUES (?1, NULL) ON CONFLICT (name) DO UPDATE SET deleted_at = NULL";
const SQL_DELETE_PIPELINE_NAME: &str = "UPDATE pipeline_names SET deleted_at = ?2 WHERE name = ?1 AND deleted_at IS NULL";
const SQL_DELETE_PIPELINE_TOKENS: &str = "DELETE FROM client_tokens WHERE kind = 'pipeline' AND pipeline_name = ?1";
/// The latest version of each live pipeline, by name.
const SQL_LIST_PIPELINES: &str = "SELECT p.name, p.version, p.definition_json, p.source_dir, p.created_at \
     FROM pipeline_names n JOIN pipelines p ON p.name = n.name \
     AND p.version = (SELECT MAX(m.version) FROM pipelines m WHERE m.name = n.name) \
     WHERE n.deleted_at IS NULL ORDER BY n.name LIMIT ?1";
const SQL_LIST_PIPELINES_AFTER: &str = "SELECT p.name, p.version, p.definition_json, p.source_dir, p.created_at \
     FROM pipeline_names n JOIN pipelines p ON p.name = n.name \
     AND p.version = (SELECT MAX(m.version) FROM pipelines m WHERE m.name = n.name) \
     WHERE n.deleted_at IS NULL AND n.name > ?2 ORDER BY n.name LIMIT ?1";

const SQL_GET_CLIENT_TOKEN: &str =
    "SELECT execution_id, fingerprint FROM client_tokens WHERE kind = ?3 AND pipeline_name = ?1 AND token = ?2";
const SQL_INSERT_CLIENT_TOKEN: &str = "INSERT INTO client_tokens (pipeline_name, token, fingerprint, execution_id, created_at, kind) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// A function execution's `pipeline_version` column holds 0, never read.
const SQL_INSERT_EXECUTION: &str = "INSERT INTO executions \
     (id, pipeline_name, pipeline_version, status, input_json, state_json, version, created_at, updated_at, kind) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7, ?8) ON CONFLICT (id) DO NOTHING";
/// Pipeline and input are fixed when an execution is created; an update writes
/// only what changes, so the pipeline index is never touched. Most updates keep
/// the status: this statement leaves `status` out of its SET list, so SQLite
/// does not touch the status (partial) indexes; it matches nothing if the status
/// changes, and [`SQL_UPDATE_EXECUTION_STATUS`] runs instead. Both return the
/// execution's pipeline (for its ledger rows).
const SQL_UPDATE_EXECUTION_SAME_STATUS: &str = "UPDATE executions SET state_json = ?3, version = version + 1, \
     updated_at = ?4 WHERE id = ?1 AND version = ?5 AND status = ?2 RETURNING kind, pipeline_name";
const SQL_UPDATE_EXECUTION_STATUS: &str = "UPDATE executions SET status = ?2, state_json = ?3, version = version + 1, \
     updated_at = ?4 WHERE id = ?1 AND version = ?5 RETURNING kind, pipeline_name";
const SQL_EXECUTION_VERSION: &str = "SELECT version FROM executions WHERE id = ?1";
const SQL_QUARANTINE_EXECUTION: &str = "UPDATE executions SET status = ?2, fault_type = ?3, fault_message = ?4, \
     version = version + 1, updated_at = ?5 WHERE id = ?1 RETURNING version";
const SQL_DELETE_EXECUTION_TIMERS: &str = "DELETE FROM timers WHERE execution_id = ?1";
const SQL_INSERT_LEDGER: &str = "INSERT INTO ledger (execution_id, stage, action, series, attempt, \"trigger\", \
     started_at, finished_at, outcome, exception_type, message, decision_json, pipeline_name, kind) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";
const SQL_UPSERT_TIMER: &str = "INSERT INTO timers (execution_id, key, due_at) VALUES (?1, ?2, ?3) \
     ON CONFLICT (execution_id, key) DO UPDATE SET due_at = excluded.due_at";
const SQL_DELETE_TIMER: &str = "DELETE FROM timers WHERE execution_id = ?1 AND key = ?2";

const SQL_GET_EXECUTION: &str = "SELECT id, pipeline_name, pipeline_version, status, input_json, state_json, \
     version, created_at, updated_at, fault_type, fault_message, kind FROM executions WHERE id = ?1";
/// The executions whose ids are in the JSON array `?1` (one primary-key lookup each).
const SQL_GET_EXECUTIONS: &str = "SELECT id, pipeline_name, pipeline_version, status, input_json, state_json, \
     version, created_at, updated_at, fault_type, fault_message, kind FROM executions WHERE id IN (SELECT value FROM json_each(?1))";
/// The `list_executions` query for each filter shape, indexed by
/// [`list_executions_variant`]. Newest first, `(created_at DESC, id DESC)`; every
/// shape has an index ending in `(created_at, id)` after its equality columns, so
/// no sort step is needed and the cursor is a range bound on that index. The
/// unfinished shapes name the status literally so the partial indexes apply.
/// Named parameters: `:limit`, `:pipeline`, `:at`, `:id`.
static SQL_LIST_EXECUTIONS: LazyLock<[String; 8]> = LazyLock::new(|| {
    std::array::from_fn(|variant| {
        let (by_pipeline, unfinished, after_cursor) = (variant & 1 != 0, variant & 2 != 0, variant & 4 != 0);
        let mut conditions = Vec::new();
        if by_pipeline {
            conditions.push("kind = :kind AND pipeline_name = :pipeline".to_owned());
        }
        if unfinished {
            conditions.push(format!("status = '{UNFINISHED_STATUS}'"));
        }
        if after_cursor {
            conditions.push("(created_at, id) < (:at, :id)".to_owned());
        }
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {} ", conditions.join(" AND ")) };
        format!(
            "SELECT id, pipeline_name, pipeline_version, status, input_json, state_json, version, created_at, updated_at, \
             fault_type, fault_message, kind FROM executions {filter}ORDER BY created_at DESC, id DESC LIMIT :limit"
        )
    })
});

fn list_executions_variant(by_pipeline: bool, unfinished: bool, after_cursor: bool) -> usize {
    usize::from(by_pipeline) | usize::from(unfinished) << 1 | usize::from(after_cursor) << 2
}

const SQL_LEDGER: &str = "SELECT seq, execution_id, stage, action, series, attempt, \"trigger\", started_at, \
     finished_at, outcome, exception_type, message, decision_json FROM ledger WHERE execution_id = ?1 ORDER BY seq";
/// The `list_ledger` query for each filter shape, indexed by
/// [`list_ledger_variant`]: newest first from `ledger_target_seq`, or from
/// `ledger_execution_seq` for one execution (the unary `+` keeps the planner off
/// the target index there). Named parameters: `:limit`, `:kind`, `:pipeline`,
/// `:execution`, `:before`.
static SQL_LIST_LEDGER: LazyLock<[String; 4]> = LazyLock::new(|| {
    std::array::from_fn(|variant| {
        let (by_execution, before) = (variant & 1 != 0, variant & 2 != 0);
        let mut filter = if by_execution {
            "+kind = :kind AND +pipeline_name = :pipeline AND execution_id = :execution"
        } else {
            "kind = :kind AND pipeline_name = :pipeline"
        }
        .to_owned();
        if before {
            filter.push_str(" AND seq < :before");
        }
        format!(
            "SELECT seq, execution_id, stage, action, series, attempt, \"trigger\", started_at, finished_at, outcome, \
             exception_type, message, decision_json FROM ledger WHERE {filter} ORDER BY seq DESC LIMIT :limit"
        )
    })
});

fn list_ledger_variant(by_execution: bool, before: bool) -> usize {
    usize::from(by_execution) | usize::from(before) << 1
}
/// Served entirely by the covering index `timers_due`.
pub(crate) const SQL_DUE_TIMERS: &str = "SELECT execution_id, key, due_at FROM timers WHERE due_at <= ?1 \
     ORDER BY due_at, execution_id, key LIMIT ?2";
const SQL_DUE_TIMERS_AFTER: &str = "SELECT execution_id, key, due_at FROM timers WHERE due_at <= ?1 \
     AND (due_at, execution_id, key) > (?2, ?3, ?4) ORDER BY due_at, execution_id, key LIMIT ?5";
const SQL_NEXT_TIMER_DUE: &str = "SELECT MIN(due_at) FROM timers";
const SQL_COUNT_TIMERS: &str = "SELECT COUNT(*) FROM timers";
const SQL_EXECUTION_TIMERS: &str = "SELECT execution_id, key, due_at FROM timers WHERE execution_id = ?1 ORDER BY key";

/// Creates the queue of an entry entering for the first time (a returning entry
/// keeps its queue, so nothing is created for it).
const SQL_ENSURE_QUEUE_OF_NEW_DLQ_ENTRY: &str = "INSERT INTO dlq_queues (name, max_redrives, created_at) \
     SELECT ?1, ?2, ?3 WHERE NOT EXISTS (SELECT 1 FROM dlq_entries WHERE id = ?4) ON CONFLICT (name) DO NOTHING";
/// [`DlqOp::Enter`]: a new entry, or a returning one back in its queue with its
/// `id`, `queue`, `first_failure_at`, `redrive_count`, `redriven_to` and
/// `redriven_at` kept.
const SQL_ENTER_DLQ_ENTRY: &str = "INSERT INTO dlq_entries (id, queue, state, pipeline_name, pipeline_version, \
     execution_id, stage, action, exception_type, message, input_json, detail_json, redrive_count, first_failure_at, \
     last_failure_at, entered_at, redriven_to, redriven_at, resolved_at, updated_at, kind) \
     VALUES (?1, ?2, 'QUEUED', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, ?12, ?13, ?14, NULL, NULL, NULL, ?14, ?15) \
     ON CONFLICT (id) DO UPDATE SET state = 'QUEUED', pipeline_name = excluded.pipeline_name, kind = excluded.kind, \
     pipeline_version = excluded.pipeline_version, execution_id = excluded.execution_id, stage = excluded.stage, \
     action = excluded.action, exception_type = excluded.exception_type, message = excluded.message, \
     input_json = excluded.input_json, detail_json = excluded.detail_json, last_failure_at = excluded.last_failure_at, \
     entered_at = excluded.entered_at, resolved_at = NULL, updated_at = excluded.updated_at";
/// [`DlqOp::Take`]: matches nothing unless the entry is `QUEUED`.
const SQL_TAKE_DLQ_ENTRY: &str = "UPDATE dlq_entries SET state = 'REDRIVEN', redrive_count = redrive_count + 1, \
     redriven_to = ?2, redriven_at = ?3, updated_at = ?3 WHERE id = ?1 AND state = 'QUEUED'";
/// [`DlqOp::Resolve`]: matches nothing if the entry was purged.
const SQL_RESOLVE_DLQ_ENTRY: &str = "UPDATE dlq_entries SET state = 'RESOLVED', resolved_at = ?2, updated_at = ?2 WHERE id = ?1";

const SQL_ENSURE_DLQ_QUEUE: &str =
    "INSERT INTO dlq_queues (name, max_redrives, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING";
const SQL_CONFIGURE_DLQ_QUEUE: &str = "INSERT INTO dlq_queues (name, max_redrives, created_at) VALUES (?1, ?2, ?3) \
     ON CONFLICT (name) DO UPDATE SET max_redrives = excluded.max_redrives RETURNING name, max_redrives, created_at";
const SQL_GET_DLQ_QUEUE_RECORD: &str = "SELECT name, max_redrives, created_at FROM dlq_queues WHERE name = ?1";

/// The columns of a [`DlqQueueStats`] (see [`dlq_queue_stats_from_row`]) of the
/// queue `q`. Every figure is counted from the covering index `dlq_entries_queue`.
macro_rules! dlq_queue_stats_columns {
    () => {
        "q.name, q.max_redrives, q.created_at, \
         (SELECT COUNT(*) FROM dlq_entries e WHERE e.queue = q.name AND e.state = 'QUEUED'), \
         (SELECT COUNT(*) FROM dlq_entries e WHERE e.queue = q.name AND e.state = 'QUEUED' AND e.redrive_count >= q.max_redrives), \
         (SELECT COUNT(*) FROM dlq_entries e WHERE e.queue = q.name AND e.state = 'REDRIVEN'), \
         (SELECT MIN(e.entered_at) FROM dlq_entries e WHERE e.queue = q.name AND e.state = 'QUEUED')"
    };
}
const SQL_GET_DLQ_QUEUE: &str = concat!("SELECT ", dlq_queue_stats_columns!(), " FROM dlq_queues q WHERE q.name = ?1");

/// The columns of a [`DlqEntryRecord`] (see [`dlq_entry_from_row`]): the entry
/// `e` joined with its queue `q` (for `max_redrives`).
macro_rules! dlq_entry_columns {
    () => {
        "e.id, e.queue, e.state, e.pipeline_name, e.pipeline_version, e.execution_id, e.stage, e.action, \
         e.exception_type, e.message, e.input_json, e.detail_json, e.redrive_count, q.max_redrives, \
         e.first_failure_at, e.last_failure_at, e.entered_at, e.redriven_to, e.redriven_at, e.resolved_at, e.updated_at, e.kind"
    };
}
const SQL_GET_DLQ_ENTRY: &str =
    concat!("SELECT ", dlq_entry_columns!(), " FROM dlq_entries e JOIN dlq_queues q ON q.name = e.queue WHERE e.id = ?1");

const SQL_INSERT_REDRIVE_RUN: &str = "INSERT INTO redrive_runs \
     (id, schedule, status, dry_run, started_at, finished_at, request_json, summary_json) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING";
const SQL_UPDATE_REDRIVE_RUN: &str = "UPDATE redrive_runs SET status = ?2, finished_at = ?3, summary_json = ?4 WHERE id = ?1";
const SQL_GET_REDRIVE_RUN: &str = "SELECT id, schedule, status, dry_run, started_at, finished_at, request_json, summary_json \
     FROM redrive_runs WHERE id = ?1";
/// Served by the partial index `redrive_runs_running`.
const SQL_INTERRUPT_REDRIVE_RUNS: &str = "UPDATE redrive_runs SET status = 'INTERRUPTED', finished_at = ?1 WHERE status = 'RUNNING'";
// ---- retention ----

/// Finished executions no dead-letter entry names, oldest created first, from
/// `executions_created_id` (finished before the cutoff means created before it).
/// Parameters: `:before`, `:at`, `:id` (the cursor; `:at` = -1 for none), `:limit`.
const SQL_PRUNE_CANDIDATES: &str = "SELECT e.id, e.pipeline_name, e.kind, e.status, e.version, e.created_at, e.updated_at
   FROM executions e
  WHERE e.created_at < :before AND (e.created_at, e.id) > (:at, :id)
    AND e.status IN ('Succeeded', 'Failed', 'Stopped', 'Superseded') AND e.updated_at < :before
    AND NOT EXISTS (SELECT 1 FROM dlq_entries d WHERE d.execution_id = e.id)
    AND NOT EXISTS (SELECT 1 FROM dlq_entries d WHERE d.redriven_to = e.id)
  ORDER BY e.created_at, e.id
  LIMIT :limit";
/// Whether an execution may go now: still finished, at this version, named by no entry.
const SQL_PRUNABLE_EXECUTION: &str = "SELECT 1 FROM executions e
  WHERE e.id = ?1 AND e.version = ?2 AND e.status IN ('Succeeded', 'Failed', 'Stopped', 'Superseded')
    AND NOT EXISTS (SELECT 1 FROM dlq_entries d WHERE d.execution_id = e.id)
    AND NOT EXISTS (SELECT 1 FROM dlq_entries d WHERE d.redriven_to = e.id)";
const SQL_MARK_LEDGER_PRUNABLE: &str = "INSERT INTO ledger_prunable (execution_id) VALUES (?1)";
const SQL_DELETE_EXECUTION_LEDGER: &str = "DELETE FROM ledger WHERE execution_id = ?1";
const SQL_UNMARK_LEDGER_PRUNABLE: &str = "DELETE FROM ledger_prunable WHERE execution_id = ?1";
const SQL_DELETE_EXECUTION_TOKENS: &str = "DELETE FROM client_tokens WHERE execution_id = ?1";
const SQL_DELETE_EXECUTION: &str = "DELETE FROM executions WHERE id = ?1";
/// `RESOLVED` entries resolved before ?1 (entered before it too: `dlq_entries_state`).
const SQL_PRUNE_DLQ_ENTRIES: &str = "DELETE FROM dlq_entries WHERE id IN (
    SELECT id FROM dlq_entries WHERE state = 'RESOLVED' AND entered_at < ?1 AND resolved_at < ?1 ORDER BY entered_at, id LIMIT ?2)";
const SQL_COUNT_PRUNABLE_DLQ_ENTRIES: &str =
    "SELECT COUNT(*) FROM dlq_entries WHERE state = 'RESOLVED' AND entered_at < ?1 AND resolved_at < ?1";
/// Finished runs that finished before ?1 (started before it too: `redrive_runs_started`).
const SQL_PRUNE_REDRIVE_RUNS: &str = "DELETE FROM redrive_runs WHERE id IN (
    SELECT id FROM redrive_runs WHERE started_at < ?1 AND status <> 'RUNNING' AND finished_at < ?1 ORDER BY started_at, id LIMIT ?2)";
const SQL_COUNT_PRUNABLE_REDRIVE_RUNS: &str =
    "SELECT COUNT(*) FROM redrive_runs WHERE started_at < ?1 AND status <> 'RUNNING' AND finished_at < ?1";
/// Audit records written before ?1, oldest first (`seq` follows `at`).
const SQL_PRUNE_AUDIT: &str = "DELETE FROM audit_log WHERE seq IN (SELECT seq FROM audit_log WHERE at < ?1 ORDER BY seq LIMIT ?2)";
const SQL_COUNT_PRUNABLE_AUDIT: &str = "SELECT COUNT(*) FROM audit_log WHERE at < ?1";
/// Pages a prune returns to the file system at most (incremental auto-vacuum).
const PRUNE_VACUUM_PAGES: u32 = 2048;
/// The `list_redrive_runs` query for each filter shape, indexed by
/// [`list_redrive_runs_variant`]: newest first from `redrive_runs_started`, or
/// from `redrive_runs_schedule_started` for one schedule, the cursor a range
/// bound on the index. Named parameters: `:limit`, `:schedule`, `:at`, `:id`.
static SQL_LIST_REDRIVE_RUNS: LazyLock<[String; 4]> = LazyLock::new(|| {
    std::array::from_fn(|variant| {
        let (by_schedule, before) = (variant & 1 != 0, variant & 2 != 0);
        let mut conditions = Vec::new();
        if by_schedule {
            conditions.push("schedule = :schedule");
        }
        if before {
            conditions.push("(started_at, id) < (:at, :id)");
        }
        let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {} ", conditions.join(" AND ")) };
        format!(
            "SELECT id, schedule, status, dry_run, started_at, finished_at, request_json, summary_json \
             FROM redrive_runs {filter}ORDER BY started_at DESC, id DESC LIMIT :limit"
        )
    })
});

fn list_redrive_runs_variant(by_schedule: bool, before: bool) -> usize {
    usize::from(by_schedule) | usize::from(before) << 1
}

/// A [`DlqEntryFilter`] as SQL over `dlq_entries e` (joined with its queue `q`
/// where needed): the conditions hold only column names and named parameters,
/// the values are bound separately. Every shape is served by an index of
/// migration 3:
/// - a queue: `dlq_entries_queue` (`queue = ?`, with the state if given; the
///   unary `+` keeps the planner off the pipeline and exception-type indexes);
/// - a queue prefix: the range `[prefix, successor)` of `dlq_entries_queue` (see
///   [`prefix_upper_bound`]), unless a pipeline or exception type is given
///   (the unary `+` on the state keeps the planner off `dlq_entries_state`);
/// - otherwise the exception-type, pipeline, state or `(entered_at, id)` index.
///
/// Named parameters: `:queue`, `:prefix`, `:prefix_end`, `:state`, `:exception`,
/// `:pipeline`, `:before`, `:at`, `:id` (the cursor) and `:limit`.
struct DlqEntryQuery {
    conditions: Vec<&'static str>,
    values: Vec<(&'static str, Value)>,
    /// Whether a condition reads the queue `q` (the poison filter).
    joins_queue: bool,
}

impl DlqEntryQuery {
    /// `state` replaces `filter.state` (a purge covers only `QUEUED` entries);
    /// `with_cursor` applies `filter.after` (listings only).
    fn new(filter: &DlqEntryFilter, state: Option<DlqEntryState>, with_cursor: bool) -> DlqEntryQuery {
        let mut q = DlqEntryQuery { conditions: Vec::new(), values: Vec::new(), joins_queue: false };
        let by_queue = filter.queue.is_some();
        let prefix = filter.queue_prefix.as_deref().filter(|p| !p.is_empty());
        let by_prefix_range = !by_queue && prefix.is_some() && filter.exception_type.is_none() && filter.source_name.is_none();
        if let Some(queue) = &filter.queue {
            q.push("e.queue = :queue", ":queue", Value::Text(queue.clone()));
        }
        if let Some(prefix) = prefix {
            q.push("e.queue >= :prefix", ":prefix", Value::Text(prefix.to_owned()));
            if let Some(end) = prefix_upper_bound(prefix) {
                q.push("e.queue < :prefix_end", ":prefix_end", Value::Text(end));
            }
        }
        if let Some(state) = state {
            let condition = if by_prefix_range { "+e.state = :state" } else { "e.state = :state" };
            q.push(condition, ":state", Value::Text(state.as_str().to_owned()));
        }
        if let Some(poison) = filter.poison {
            q.conditions.push(if poison { "e.redrive_count >= q.max_redrives" } else { "e.redrive_count < q.max_redrives" });
            q.joins_queue = true;
        }
        if let Some(exception_type) = &filter.exception_type {
            let condition = if by_queue { "+e.exception_type = :exception" } else { "e.exception_type = :exception" };
            q.push(condition, ":exception", Value::Text(exception_type.clone()));
        }
        if let Some(pipeline) = &filter.source_name {
            let condition = if by_queue { "+e.pipeline_name = :pipeline" } else { "e.pipeline_name = :pipeline" };
            q.push(condition, ":pipeline", Value::Text(pipeline.clone()));
        }
        if let Some(before) = filter.entered_at_or_before {
            q.push("e.entered_at <= :before", ":before", Value::Integer(before.unix_ms()));
        }
        if let Some(cursor) = filter.after.as_ref().filter(|_| with_cursor) {
            q.conditions.push("(e.entered_at, e.id) > (:at, :id)");
            q.values.push((":at", Value::Integer(cursor.entered_at.unix_ms())));
            q.values.push((":id", Value::Text(cursor.id.clone())));
        }
        q
    }

    fn push(&mut self, condition: &'static str, name: &'static str, value: Value) {
        self.conditions.push(condition);
        self.values.push((name, value));
    }

    /// `WHERE …` (with a trailing space), or nothing.
    fn where_clause(&self) -> String {
        if self.conditions.is_empty() { String::new() } else { format!("WHERE {} ", self.conditions.join(" AND ")) }
    }

    /// `dlq_entries e`, joined with its queue if a condition needs it. `CROSS
    /// JOIN` keeps the entries in the outer loop, so their index drives the query.
    fn tables_sql(&self) -> &'static str {
        if self.joins_queue { "dlq_entries e CROSS JOIN dlq_queues q ON q.name = e.queue" } else { "dlq_entries e" }
    }

    /// The `list_dlq_entries` query, oldest first.
    fn list_sql(&self) -> String {
        format!(
            concat!(
                "SELECT ",
                dlq_entry_columns!(),
                " FROM dlq_entries e CROSS JOIN dlq_queues q ON q.name = e.queue {}ORDER BY e.entered_at, e.id LIMIT :limit"
            ),
            self.where_clause()
        )
    }

    fn count_sql(&self) -> String {
        format!("SELECT COUNT(*) FROM {} {}", self.tables_sql(), self.where_clause())
    }

    fn purge_sql(&self) -> String {
        format!("DELETE FROM dlq_entries WHERE id IN (SELECT e.id FROM {} {})", self.tables_sql(), self.where_clause())
    }

    fn bound(&self) -> Vec<(&str, &dyn ToSql)> {
        self.values.iter().map(|(name, value)| (*name, value as &dyn ToSql)).collect()
    }
}

/// `list_dlq_queues`: named parameters `:prefix`, `:prefix_end`, `:after`, `:limit`.
fn list_dlq_queues_sql(prefix: bool, prefix_end: bool, after: bool) -> String {
    let mut conditions = Vec::new();
    if prefix {
        conditions.push("q.name >= :prefix");
    }
    if prefix_end {
        conditions.push("q.name < :prefix_end");
    }
    if after {
        conditions.push("q.name > :after");
    }
    let filter = if conditions.is_empty() { String::new() } else { format!("WHERE {} ", conditions.join(" AND ")) };
    format!(concat!("SELECT ", dlq_queue_stats_columns!(), " FROM dlq_queues q {}ORDER BY q.name LIMIT :limit"), filter)
}

/// The least string greater than every string starting with `prefix` (in the
/// byte order SQLite compares text in), `None` if there is none: `prefix` with
/// its last character incremented, dropping trailing characters that cannot be.
/// Queue names are ASCII, so this is normally the last byte plus one.
fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // UTF-8 byte order is code point order; the surrogates are no chars.
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

// ---------------------------------------------------------------------------
// The store
// ---------------------------------------------------------------------------

/// A [`Store`] in one SQLite file. See the module docs for the design.
pub struct SqliteStore {
    path: PathBuf,
    /// `None` for a store opened with [`SqliteStore::open_read_only`].
    writer: Option<WriterHandle>,
    readers: Arc<ReaderPool>,
    stats: Arc<Stats>,
    /// Held for the store's lifetime; released after the writer has stopped.
    _lock: Option<EngineLock>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` for reading and writing:
    /// takes the engine lock, applies pending migrations and starts the writer
    /// thread.
    ///
    /// Errors: [`StoreError::Locked`] if another redrive process holds the lock,
    /// [`StoreError::Schema`] if the file is not a redrive database or was written
    /// by a newer redrive, [`StoreError::Unavailable`] on I/O problems.
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let lock = EngineLock::acquire(path)?;
        let guard = lock.guard(path)?;
        let mut conn = Connection::open(path).map_err(|e| open_error(path, e))?;
        configure_connection(&conn, Some(opts.durability)).map_err(|e| open_error(path, e))?;
        migrate(&mut conn, path)?;

        let readers = Arc::new(ReaderPool::open(path, opts.readers)?);
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let writer_stats = Arc::clone(&stats);
        let max_batch = opts.max_batch_transitions.max(1);
        let thread = std::thread::Builder::new()
            .name("redrive-sqlite-writer".into())
            .spawn(move || Writer { conn, max_batch, stats: writer_stats, guard: Mutex::new(guard) }.run(rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite writer thread: {e}")))?;

        Ok(SqliteStore { path: path.to_path_buf(), writer: Some(WriterHandle { tx, thread }), readers, stats, _lock: Some(lock) })
    }

    /// Opens an existing database for inspection only: no writer, no engine lock,
    /// no migrations. Writes fail with [`StoreError::Unavailable`].
    ///
    /// Errors: [`StoreError::NotFound`] if the file does not exist,
    /// [`StoreError::Schema`] if it is not a redrive database or its schema
    /// version differs from [`SCHEMA_VERSION`].
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.exists() {
            return Err(StoreError::NotFound(format!("database {} does not exist", path.display())));
        }
        let readers = ReaderPool::open(path, DEFAULT_READERS)?;
        {
            let conn = readers.take().map_err(|e| open_error(path, e))?;
            let version = schema_version(&conn).map_err(|e| open_error(path, e))?;
            match version {
                None => {
                    return Err(StoreError::Schema(format!(
                        "{} is not a redrive database (it has no schema_migrations table)",
                        path.display()
                    )));
                }
                Some(v) if v > SCHEMA_VERSION => return Err(newer_schema_error(path, v)),
                Some(v) if v < SCHEMA_VERSION => {
                    return Err(StoreError::Schema(format!(
                        "{} has schema version {v} but this redrive reads version {SCHEMA_VERSION}; \
                         open it once with a command that writes (e.g. the server) to upgrade it",
                        path.display()
                    )));
                }
                Some(_) => {}
            }
            readers.give_back(conn);
        }
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: None,
            readers: Arc::new(readers),
            stats: Arc::new(Stats::default()),
            _lock: None,
        })
    }

    /// The database file.
    /// Writes a consistent snapshot of the database to `out` (SQLite's
    /// `VACUUM INTO`, from a read connection, so it runs beside an engine that
    /// writes), as a new 0600 file — refused if `out` exists — and checks the copy:
    /// its integrity, its schema version, and what it holds.
    pub async fn backup_into(&self, out: &Path) -> Result<BackupCounts, StoreError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let created = options.open(out);
        if let Err(e) = created {
            let why = format!("cannot create {}: {e}", out.display());
            return Err(if e.kind() == std::io::ErrorKind::AlreadyExists {
                StoreError::AlreadyExists(why)
            } else {
                StoreError::Unavailable(why)
            });
        }
        let target = out.to_string_lossy().into_owned();
        let written = self.read(move |conn| conn.execute("VACUUM INTO ?1", [target]).map(drop)).await;
        if let Err(e) = written {
            let _ = std::fs::remove_file(out);
            return Err(e);
        }
        let copy = SqliteStore::open_read_only(out)?;
        copy.read(|conn| {
            let ok: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            let count =
                |table: &str| conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get::<_, i64>(0)).map(|n| n as u64);
            Ok(BackupCounts {
                integrity: ok,
                executions: count("executions")?,
                ledger_rows: count("ledger")?,
                dead_letter_entries: count("dlq_entries")?,
                timers: count("timers")?,
            })
        })
        .await
    }

    /// The integrity check, the schema version, the file size and each table's
    /// rows and oldest row (for `redrive doctor`; runs beside an engine).
    pub async fn inspect(&self) -> Result<crate::StoreInspection, StoreError> {
        let file_bytes = |suffix: &str| {
            let mut name = self.path.as_os_str().to_owned();
            name.push(suffix);
            std::fs::metadata(PathBuf::from(name)).map(|m| m.len()).unwrap_or(0)
        };
        let total_bytes = Some(file_bytes("") + file_bytes("-wal"));
        self.read(move |conn| {
            let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            let schema_version = schema_version(conn)?.unwrap_or(0);
            let mut tables = Vec::new();
            for (table, dated_by) in crate::INSPECTED_TABLES {
                let (rows, oldest): (i64, Option<i64>) =
                    conn.query_row(&format!("SELECT COUNT(*), MIN({dated_by}) FROM {table}"), [], |r| Ok((r.get(0)?, r.get(1)?)))?;
                tables.push(crate::TableStats { table, rows: rows as u64, bytes: None, oldest: oldest.map(Timestamp::from_unix_ms) });
            }
            Ok(crate::StoreInspection { integrity: Some(integrity), schema_version, total_bytes, tables })
        })
        .await
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this store was opened with [`SqliteStore::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    /// The path of the engine lock file of the database at `db_path`.
    pub fn lock_path(db_path: &Path) -> PathBuf {
        let mut s = db_path.as_os_str().to_owned();
        s.push(LOCK_FILE_SUFFIX);
        PathBuf::from(s)
    }

    /// Sends a request to the writer thread (waiting while its queue is full).
    async fn send(&self, request: WriteRequest) -> Result<(), StoreError> {
        let Some(writer) = &self.writer else {
            return Err(StoreError::Unavailable(format!("{} was opened read-only; writes are not possible", self.path.display())));
        };
        writer.tx.send(request).await.map_err(|_| writer_gone())
    }

    /// Runs `query` on a pooled read-only connection on the blocking thread pool.
    async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let permit =
            Arc::clone(&self.readers.permits).acquire_owned().await.map_err(|_| StoreError::Unavailable("the store is closing".into()))?;
        let pool = Arc::clone(&self.readers);
        let joined = tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let result = query(&conn);
            pool.give_back(conn);
            drop(permit);
            result
        })
        .await;
        match joined {
            Ok(result) => result.map_err(map_error),
            Err(e) => Err(StoreError::Unavailable(format!("a store read failed: {e}"))),
        }
    }
}

impl SqliteStore {
    /// Sends a put/create/update of a pipeline to the writer.
    async fn write_pipeline(
        &self,
        mode: PipelineMode,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> Result<PipelineRecord, StoreError> {
        check_definition(name, definition_json)?;
        let (reply, rx) = oneshot::channel();
        let write = PipelineWrite {
            mode,
            name: name.to_owned(),
            definition_json: definition_json.to_owned(),
            source_dir: source_dir.map(str::to_owned),
            now,
        };
        self.send(WriteRequest::Pipeline { write, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Sends an ensure/configure of a dead-letter queue to the writer.
    async fn write_dlq_queue(&self, write: DlqQueueWrite) -> Result<DlqQueueRecord, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::DlqQueue { write, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Sends a create/update of a redrive run to the writer.
    async fn write_redrive_run(&self, write: RedriveRunWrite) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::RedriveRun { write, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    /// Sends a token or audit write to the writer.
    async fn write_auth(&self, write: AuthWrite) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::Auth { write, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }
}

impl Drop for SqliteStore {
    /// Closes the readers, then closes the write queue and waits for the writer to
    /// finish the requests already queued; the engine lock is released last.
    fn drop(&mut self) {
        self.readers.close_idle();
        if let Some(WriterHandle { tx, thread }) = self.writer.take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

impl Store for SqliteStore {
    async fn put_pipeline(
        &self,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> Result<PipelineRecord, StoreError> {
        self.write_pipeline(PipelineMode::Put, name, definition_json, source_dir, now).await
    }

    async fn create_pipeline(
        &self,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> Result<PipelineRecord, StoreError> {
        self.write_pipeline(PipelineMode::Create, name, definition_json, source_dir, now).await
    }

    async fn update_pipeline(
        &self,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> Result<PipelineRecord, StoreError> {
        self.write_pipeline(PipelineMode::Update, name, definition_json, source_dir, now).await
    }

    async fn delete_pipeline(&self, name: &str, now: Timestamp) -> Result<bool, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::DeletePipeline { name: name.to_owned(), now, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn get_pipeline(&self, name: &str, version: Option<u32>) -> Result<Option<PipelineRecord>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| match version {
            None => conn.prepare_cached(SQL_LATEST_LIVE_PIPELINE)?.query_row(params![name], pipeline_from_row).optional(),
            Some(v) => conn.prepare_cached(SQL_PIPELINE_VERSION)?.query_row(params![name, v], pipeline_from_row).optional(),
        })
        .await
    }

    async fn list_pipelines(&self, after_name: Option<&str>, limit: usize) -> Result<Vec<PipelineRecord>, StoreError> {
        let limit = page_size(limit) as i64;
        let after = after_name.map(str::to_owned);
        self.read(move |conn| match &after {
            None => conn.prepare_cached(SQL_LIST_PIPELINES)?.query_map(params![limit], pipeline_from_row)?.collect(),
            Some(after) => conn.prepare_cached(SQL_LIST_PIPELINES_AFTER)?.query_map(params![limit, after], pipeline_from_row)?.collect(),
        })
        .await
    }

    async fn commit(&self, transitions: Arc<[Transition]>) -> Result<CommitResult, StoreError> {
        check_commit(&transitions)?;
        let refusals: Vec<Option<String>> = transitions.iter().map(|t| check_transition(t).err()).collect();
        let valid: Vec<usize> = refusals.iter().enumerate().filter(|(_, r)| r.is_none()).map(|(i, _)| i).collect();
        let mut applied = if valid.is_empty() {
            Vec::new()
        } else {
            let (reply, rx) = oneshot::channel();
            self.send(WriteRequest::Commit { transitions, valid, reply }).await?;
            rx.await.map_err(|_| writer_gone())??
        }
        .into_iter();
        Ok(refusals
            .into_iter()
            .map(|refusal| match refusal {
                Some(problem) => Err(TransitionError::Limit(problem)),
                None => applied.next().expect("one result per valid transition"),
            })
            .collect())
    }

    async fn quarantine_execution(&self, id: &str, status: &str, fault: ExecutionFault, at: Timestamp) -> Result<Option<u64>, StoreError> {
        check_fault(id, &fault)?;
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::Quarantine { id: id.to_owned(), status: status.to_owned(), fault, at, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn get_execution(&self, id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| conn.prepare_cached(SQL_GET_EXECUTION)?.query_row(params![id], execution_from_row).optional()).await
    }

    async fn get_executions(&self, ids: &[String]) -> Result<Vec<ExecutionRecord>, StoreError> {
        crate::check_executions_per_read(ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = serde_json::to_string(ids).expect("strings serialise");
        self.read(move |conn| conn.prepare_cached(SQL_GET_EXECUTIONS)?.query_map(params![ids], execution_from_row)?.collect()).await
    }

    async fn list_executions(&self, filter: ExecutionFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
        let limit = page_size(filter.limit) as i64;
        self.read(move |conn| {
            let sql =
                &SQL_LIST_EXECUTIONS[list_executions_variant(filter.target.is_some(), filter.unfinished_only, filter.before.is_some())];
            let cursor_at = filter.before.as_ref().map(|c| c.created_at.unix_ms());
            let kind = filter.target.as_ref().map(|t| t.kind.as_str());
            let mut bound: Vec<(&str, &dyn ToSql)> = vec![(":limit", &limit)];
            if let (Some(target), Some(kind)) = (&filter.target, &kind) {
                bound.push((":kind", kind));
                bound.push((":pipeline", &target.name));
            }
            if let (Some(cursor), Some(at)) = (&filter.before, &cursor_at) {
                bound.push((":at", at));
                bound.push((":id", &cursor.id));
            }
            conn.prepare_cached(sql)?.query_map(bound.as_slice(), execution_from_row)?.collect()
        })
        .await
    }

    async fn ledger(&self, execution_id: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        let id = execution_id.to_owned();
        self.read(move |conn| conn.prepare_cached(SQL_LEDGER)?.query_map(params![id], ledger_from_row)?.collect()).await
    }

    async fn list_ledger(&self, filter: LedgerFilter) -> Result<Vec<LedgerEntry>, StoreError> {
        let limit = page_size(filter.limit) as i64;
        self.read(move |conn| {
            let sql = &SQL_LIST_LEDGER[list_ledger_variant(filter.execution_id.is_some(), filter.before_seq.is_some())];
            let kind = filter.target.kind.as_str();
            let mut bound: Vec<(&str, &dyn ToSql)> = vec![(":limit", &limit), (":kind", &kind), (":pipeline", &filter.target.name)];
            if let Some(execution_id) = &filter.execution_id {
                bound.push((":execution", execution_id));
            }
            if let Some(before) = &filter.before_seq {
                bound.push((":before", before));
            }
            conn.prepare_cached(sql)?.query_map(bound.as_slice(), ledger_from_row)?.collect()
        })
        .await
    }

    async fn due_timers(&self, now: Timestamp, limit: usize) -> Result<Vec<TimerRecord>, StoreError> {
        let limit = limit.min(MAX_PAGE_SIZE) as i64;
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.read(move |conn| conn.prepare_cached(SQL_DUE_TIMERS)?.query_map(params![now.unix_ms(), limit], timer_from_row)?.collect())
            .await
    }

    async fn due_timers_after(&self, now: Timestamp, after: &TimerRecord, limit: usize) -> Result<Vec<TimerRecord>, StoreError> {
        let limit = limit.min(MAX_PAGE_SIZE) as i64;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (at, id, key) = (after.due_at.unix_ms(), after.execution_id.clone(), after.key.clone());
        self.read(move |conn| {
            conn.prepare_cached(SQL_DUE_TIMERS_AFTER)?.query_map(params![now.unix_ms(), at, id, key, limit], timer_from_row)?.collect()
        })
        .await
    }

    async fn next_timer_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.read(|conn| {
            let due: Option<i64> = conn.prepare_cached(SQL_NEXT_TIMER_DUE)?.query_row([], |r| r.get(0))?;
            Ok(due.map(Timestamp::from_unix_ms))
        })
        .await
    }

    async fn count_timers(&self) -> Result<u64, StoreError> {
        self.read(|conn| Ok(conn.prepare_cached(SQL_COUNT_TIMERS)?.query_row([], |r| r.get::<_, i64>(0))? as u64)).await
    }

    async fn execution_timers(&self, execution_id: &str) -> Result<Vec<TimerRecord>, StoreError> {
        let id = execution_id.to_owned();
        self.read(move |conn| conn.prepare_cached(SQL_EXECUTION_TIMERS)?.query_map(params![id], timer_from_row)?.collect()).await
    }

    async fn ensure_dlq_queue(&self, name: &str, now: Timestamp) -> Result<DlqQueueRecord, StoreError> {
        check_dlq_queue_name(name)?;
        self.write_dlq_queue(DlqQueueWrite { name: name.to_owned(), max_redrives: None, now }).await
    }

    async fn configure_dlq_queue(&self, name: &str, max_redrives: u32, now: Timestamp) -> Result<DlqQueueRecord, StoreError> {
        check_dlq_queue_name(name)?;
        check_max_redrives(name, max_redrives)?;
        self.write_dlq_queue(DlqQueueWrite { name: name.to_owned(), max_redrives: Some(max_redrives), now }).await
    }

    async fn get_dlq_queue(&self, name: &str) -> Result<Option<DlqQueueStats>, StoreError> {
        let name = name.to_owned();
        self.read(move |conn| conn.prepare_cached(SQL_GET_DLQ_QUEUE)?.query_row(params![name], dlq_queue_stats_from_row).optional()).await
    }

    async fn list_dlq_queues(
        &self,
        prefix: Option<&str>,
        after_name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DlqQueueStats>, StoreError> {
        let limit = page_size(limit) as i64;
        let prefix = prefix.filter(|p| !p.is_empty()).map(str::to_owned);
        let prefix_end = prefix.as_deref().and_then(prefix_upper_bound);
        let after = after_name.map(str::to_owned);
        self.read(move |conn| {
            let sql = list_dlq_queues_sql(prefix.is_some(), prefix_end.is_some(), after.is_some());
            let mut bound: Vec<(&str, &dyn ToSql)> = vec![(":limit", &limit)];
            if let Some(prefix) = &prefix {
                bound.push((":prefix", prefix));
            }
            if let Some(end) = &prefix_end {
                bound.push((":prefix_end", end));
            }
            if let Some(after) = &after {
                bound.push((":after", after));
            }
            conn.prepare_cached(&sql)?.query_map(bound.as_slice(), dlq_queue_stats_from_row)?.collect()
        })
        .await
    }

    async fn get_dlq_entry(&self, id: &str) -> Result<Option<DlqEntryRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| conn.prepare_cached(SQL_GET_DLQ_ENTRY)?.query_row(params![id], dlq_entry_from_row).optional()).await
    }

    async fn list_dlq_entries(&self, filter: DlqEntryFilter) -> Result<Vec<DlqEntryRecord>, StoreError> {
        let limit = page_size(filter.limit) as i64;
        self.read(move |conn| {
            let query = DlqEntryQuery::new(&filter, filter.state, true);
            let mut bound = query.bound();
            bound.push((":limit", &limit));
            conn.prepare_cached(&query.list_sql())?.query_map(bound.as_slice(), dlq_entry_from_row)?.collect()
        })
        .await
    }

    async fn count_dlq_entries(&self, filter: DlqEntryFilter) -> Result<u64, StoreError> {
        self.read(move |conn| {
            let query = DlqEntryQuery::new(&filter, filter.state, false);
            let count: i64 = conn.prepare_cached(&query.count_sql())?.query_row(query.bound().as_slice(), |r| r.get(0))?;
            Ok(count as u64)
        })
        .await
    }

    async fn purge_dlq_entries(&self, filter: DlqEntryFilter) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::PurgeDlq { filter, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn create_redrive_run(&self, run: RedriveRunRecord) -> Result<(), StoreError> {
        check_redrive_run(&run)?;
        self.write_redrive_run(RedriveRunWrite::Create(run)).await
    }

    async fn update_redrive_run(&self, run: RedriveRunRecord) -> Result<(), StoreError> {
        check_redrive_run(&run)?;
        self.write_redrive_run(RedriveRunWrite::Update(run)).await
    }

    async fn get_redrive_run(&self, id: &str) -> Result<Option<RedriveRunRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| conn.prepare_cached(SQL_GET_REDRIVE_RUN)?.query_row(params![id], redrive_run_from_row).optional()).await
    }

    async fn list_redrive_runs(&self, filter: RedriveRunFilter) -> Result<Vec<RedriveRunRecord>, StoreError> {
        let limit = page_size(filter.limit) as i64;
        self.read(move |conn| {
            let sql = &SQL_LIST_REDRIVE_RUNS[list_redrive_runs_variant(filter.schedule.is_some(), filter.before.is_some())];
            let cursor_at = filter.before.as_ref().map(|(at, _)| at.unix_ms());
            let mut bound: Vec<(&str, &dyn ToSql)> = vec![(":limit", &limit)];
            if let Some(schedule) = &filter.schedule {
                bound.push((":schedule", schedule));
            }
            if let (Some((_, id)), Some(at)) = (&filter.before, &cursor_at) {
                bound.push((":at", at));
                bound.push((":id", id));
            }
            conn.prepare_cached(sql)?.query_map(bound.as_slice(), redrive_run_from_row)?.collect()
        })
        .await
    }

    async fn interrupt_redrive_runs(&self, now: Timestamp) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::InterruptRedriveRuns { now, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn create_token(&self, token: TokenRecord) -> Result<(), StoreError> {
        check_token(&token)?;
        self.write_auth(AuthWrite::CreateToken(token)).await.map(drop)
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.write_auth(AuthWrite::RevokeToken(name.to_owned())).await? > 0)
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read(auth::list_tokens).await
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let hash = token_hash.to_owned();
        self.read(move |conn| auth::token_by_hash(conn, &hash)).await
    }

    async fn append_audit(&self, record: AuditRecord) -> Result<u64, StoreError> {
        check_audit(&record)?;
        self.write_auth(AuthWrite::AppendAudit(record)).await
    }

    async fn list_audit(&self, filter: AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = page_size(filter.limit) as i64;
        self.read(move |conn| auth::list_audit(conn, &filter, limit)).await
    }
    async fn put_dependencies(&self, records: Vec<crate::DependencyRecord>) -> Result<(), StoreError> {
        crate::validate::check_dependencies(&records)?;
        if records.is_empty() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::Dependencies { records, reply }).await?;
        rx.await.map_err(|_| writer_gone())?.map(drop)
    }

    async fn list_dependencies(&self) -> Result<Vec<crate::DependencyRecord>, StoreError> {
        self.read(dependencies::list).await
    }

    async fn list_shard_dependencies(&self) -> Result<Vec<crate::ShardDependencyRecord>, StoreError> {
        // One process has the database: it has no shards.
        Ok(Vec::new())
    }

    async fn write_bulk_retry(&self, write: crate::bulk::BulkWrite) -> Result<u64, StoreError> {
        write.check()?;
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::Bulk { write, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn get_bulk_retry(&self, id: &str) -> Result<Option<crate::BulkRetryRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| bulk::get(conn, &id)).await
    }

    async fn list_bulk_retries(
        &self,
        pipeline: &str,
        before: Option<(Timestamp, String)>,
        limit: usize,
    ) -> Result<Vec<crate::BulkRetryRecord>, StoreError> {
        let (pipeline, limit) = (pipeline.to_owned(), page_size(limit) as i64);
        self.read(move |conn| bulk::list(conn, &pipeline, before.as_ref(), limit)).await
    }

    async fn list_bulk_retry_results(&self, op_id: &str, after_seq: u64, limit: usize) -> Result<Vec<crate::BulkRetryResult>, StoreError> {
        let (op_id, limit) = (op_id.to_owned(), page_size(limit) as i64);
        self.read(move |conn| bulk::results(conn, &op_id, after_seq, limit)).await
    }

    async fn prune_candidates(&self, query: PruneQuery) -> Result<Vec<PruneCandidate>, StoreError> {
        let limit = page_size(query.limit) as i64;
        self.read(move |conn| {
            let (at, id) = query.after.as_ref().map_or((-1, ""), |c| (c.created_at.unix_ms(), c.id.as_str()));
            let before = query.finished_before.unix_ms();
            let bound: [(&str, &dyn ToSql); 4] = [(":before", &before), (":at", &at), (":id", &id), (":limit", &limit)];
            conn.prepare_cached(SQL_PRUNE_CANDIDATES)?.query_map(bound.as_slice(), prune_candidate_from_row)?.collect()
        })
        .await
    }

    async fn prune(&self, step: PruneStep) -> Result<PruneCounts, StoreError> {
        check_prune_step(&step)?;
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::Prune { step, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn count_prunable(&self, step: PruneStep) -> Result<PruneCounts, StoreError> {
        self.read(move |conn| {
            let count = |sql: &str, before: Option<Timestamp>| -> rusqlite::Result<u64> {
                let Some(before) = before else { return Ok(0) };
                conn.prepare_cached(sql)?.query_row(params![before.unix_ms()], |r| r.get::<_, i64>(0)).map(|n| n as u64)
            };
            Ok(PruneCounts {
                dlq_entries: count(SQL_COUNT_PRUNABLE_DLQ_ENTRIES, step.resolved_entries_before)?,
                redrive_runs: count(SQL_COUNT_PRUNABLE_REDRIVE_RUNS, step.runs_finished_before)?,
                bulk_retries: count(bulk::SQL_COUNT_PRUNABLE, step.bulk_retries_finished_before)?,
                audit_records: count(SQL_COUNT_PRUNABLE_AUDIT, step.audit_before)?,
                ..PruneCounts::default()
            })
        })
        .await
    }

    fn stats(&self) -> CommitStats {
        self.stats.snapshot()
    }

    /// The process holding the file's engine lock (by the pid in the lock file,
    /// if it is alive), as the one member and leader; no lease: the lock lasts
    /// as long as the process.
    async fn cluster(&self) -> Result<ClusterRecord, StoreError> {
        let holder = std::fs::read_to_string(SqliteStore::lock_path(&self.path))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .filter(|pid| process_is_alive(*pid));
        let now = Timestamp::from_unix_ms(wall_clock_ms());
        let members = holder
            .map(|pid| MemberRecord {
                id: format!("{}-{pid}", crate::hostname()),
                host: crate::hostname(),
                pid,
                url: None,
                kind: crate::MemberKind::Server,
                started_at: now,
                heartbeat_at: now,
                alive: true,
            })
            .into_iter()
            .collect();
        Ok(ClusterRecord { backend: "sqlite", lease: None, members, shards: Vec::new() })
    }
}

/// A listing's `limit` as a page size: 0 means the largest page.
fn page_size(limit: usize) -> usize {
    if limit == 0 { MAX_PAGE_SIZE } else { limit.min(MAX_PAGE_SIZE) }
}

/// What a backup holds, read back from the copy (see [`SqliteStore::backup_into`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupCounts {
    /// `PRAGMA integrity_check` of the copy: `ok` when sound.
    pub integrity: String,
    pub executions: u64,
    pub ledger_rows: u64,
    pub dead_letter_entries: u64,
    pub timers: u64,
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    commits: AtomicU64,
    transitions: AtomicU64,
    ledger_rows: AtomicU64,
    commit_micros_total: AtomicU64,
}

impl Stats {
    fn record(&self, transitions: u64, ledger_rows: u64, elapsed: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.transitions.fetch_add(transitions, Ordering::Relaxed);
        self.ledger_rows.fetch_add(ledger_rows, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.commit_micros_total.fetch_add(micros, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CommitStats {
        CommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            transitions: self.transitions.load(Ordering::Relaxed),
            ledger_rows: self.ledger_rows.load(Ordering::Relaxed),
            commit_micros_total: self.commit_micros_total.load(Ordering::Relaxed),
        }
    }
}

// ---------------------------------------------------------------------------
// The writer thread
// ---------------------------------------------------------------------------

struct WriterHandle {
    tx: mpsc::Sender<WriteRequest>,
    thread: JoinHandle<()>,
}

/// One caller's write, answered after the group containing it commits.
enum WriteRequest {
    /// The transitions at the indexes in `valid` (the others were refused by
    /// [`check_transition`] and are answered by the caller).
    Commit {
        transitions: Arc<[Transition]>,
        valid: Vec<usize>,
        reply: oneshot::Sender<Result<CommitResult, StoreError>>,
    },
    Pipeline {
        write: PipelineWrite,
        reply: oneshot::Sender<Result<PipelineRecord, StoreError>>,
    },
    DeletePipeline {
        name: String,
        now: Timestamp,
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    DlqQueue {
        write: DlqQueueWrite,
        reply: oneshot::Sender<Result<DlqQueueRecord, StoreError>>,
    },
    PurgeDlq {
        filter: DlqEntryFilter,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    RedriveRun {
        write: RedriveRunWrite,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    InterruptRedriveRuns {
        now: Timestamp,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Quarantine {
        id: String,
        status: String,
        fault: ExecutionFault,
        at: Timestamp,
        reply: oneshot::Sender<Result<Option<u64>, StoreError>>,
    },
    /// A token or audit write; answers a count, a `seq`, or why it was refused.
    Auth {
        write: AuthWrite,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Dependency states to upsert; answers how many.
    Dependencies {
        records: Vec<crate::DependencyRecord>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// A bulk stage retry operation or result write (answered like `Auth`).
    Bulk {
        write: crate::bulk::BulkWrite,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Prune {
        step: PruneStep,
        reply: oneshot::Sender<Result<PruneCounts, StoreError>>,
    },
}

/// Which pipeline write: the three differ only in when a new version is inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PipelineMode {
    /// [`Store::put_pipeline`]: a new version unless the live latest is identical.
    Put,
    /// [`Store::create_pipeline`]: refused if the name is live.
    Create,
    /// [`Store::update_pipeline`]: refused unless the name is live.
    Update,
}

struct PipelineWrite {
    mode: PipelineMode,
    name: String,
    definition_json: String,
    source_dir: Option<String>,
    now: Timestamp,
}

/// [`Store::ensure_dlq_queue`] (`max_redrives` `None`) or
/// [`Store::configure_dlq_queue`].
struct DlqQueueWrite {
    name: String,
    max_redrives: Option<u32>,
    now: Timestamp,
}

enum RedriveRunWrite {
    /// [`Store::create_redrive_run`].
    Create(RedriveRunRecord),
    /// [`Store::update_redrive_run`].
    Update(RedriveRunRecord),
}

impl WriteRequest {
    /// Counted against [`SqliteOptions::max_batch_transitions`].
    fn weight(&self) -> usize {
        match self {
            WriteRequest::Commit { valid, .. } => valid.len(),
            WriteRequest::Pipeline { .. }
            | WriteRequest::DeletePipeline { .. }
            | WriteRequest::DlqQueue { .. }
            | WriteRequest::PurgeDlq { .. }
            | WriteRequest::RedriveRun { .. }
            | WriteRequest::InterruptRedriveRuns { .. }
            | WriteRequest::Quarantine { .. }
            | WriteRequest::Auth { .. }
            | WriteRequest::Bulk { .. }
            | WriteRequest::Dependencies { .. } => 1,
            // Its deletes cost about what a transition of each execution does.
            WriteRequest::Prune { step, .. } => step.executions.len().max(1),
        }
    }

    /// The caller stopped waiting (its future was dropped); the contract allows
    /// skipping the write.
    fn abandoned(&self) -> bool {
        match self {
            WriteRequest::Commit { reply, .. } => reply.is_closed(),
            WriteRequest::Pipeline { reply, .. } => reply.is_closed(),
            WriteRequest::DeletePipeline { reply, .. } => reply.is_closed(),
            WriteRequest::DlqQueue { reply, .. } => reply.is_closed(),
            WriteRequest::PurgeDlq { reply, .. } | WriteRequest::InterruptRedriveRuns { reply, .. } => reply.is_closed(),
            WriteRequest::RedriveRun { reply, .. } => reply.is_closed(),
            WriteRequest::Quarantine { reply, .. } => reply.is_closed(),
            WriteRequest::Auth { reply, .. } | WriteRequest::Dependencies { reply, .. } | WriteRequest::Bulk { reply, .. } => {
                reply.is_closed()
            }
            WriteRequest::Prune { reply, .. } => reply.is_closed(),
        }
    }

    /// Answers the caller with what its request produced in a committed group.
    fn answer(self, outcome: Applied) {
        match (self, outcome) {
            (WriteRequest::Commit { reply, .. }, Applied::Commit(results)) => {
                let _ = reply.send(Ok(results));
            }
            (WriteRequest::Pipeline { reply, .. }, Applied::Pipeline(result)) => {
                let _ = reply.send(result);
            }
            (WriteRequest::DeletePipeline { reply, .. }, Applied::Deleted(deleted)) => {
                let _ = reply.send(Ok(deleted));
            }
            (WriteRequest::DlqQueue { reply, .. }, Applied::DlqQueue(queue)) => {
                let _ = reply.send(Ok(queue));
            }
            (
                WriteRequest::PurgeDlq { reply, .. }
                | WriteRequest::InterruptRedriveRuns { reply, .. }
                | WriteRequest::Dependencies { reply, .. },
                Applied::Counted(n),
            ) => {
                let _ = reply.send(Ok(n));
            }
            (WriteRequest::RedriveRun { reply, .. }, Applied::RedriveRun(result)) => {
                let _ = reply.send(result);
            }
            (WriteRequest::Quarantine { reply, .. }, Applied::Quarantined(version)) => {
                let _ = reply.send(Ok(version));
            }
            (WriteRequest::Auth { reply, .. } | WriteRequest::Bulk { reply, .. }, Applied::Auth(result)) => {
                let _ = reply.send(result);
            }
            (WriteRequest::Prune { reply, .. }, Applied::Pruned(counts)) => {
                let _ = reply.send(Ok(counts));
            }
            _ => unreachable!("outcomes are produced in request order"),
        }
    }

    /// Answers the caller with the failure of its group.
    fn fail(self, error: &StoreError) {
        match self {
            WriteRequest::Commit { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            WriteRequest::Pipeline { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            WriteRequest::DeletePipeline { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            WriteRequest::DlqQueue { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            WriteRequest::PurgeDlq { reply, .. }
            | WriteRequest::InterruptRedriveRuns { reply, .. }
            | WriteRequest::Dependencies { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            WriteRequest::RedriveRun { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            WriteRequest::Quarantine { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            WriteRequest::Auth { reply, .. } | WriteRequest::Bulk { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
            WriteRequest::Prune { reply, .. } => {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// What one request produced inside a group transaction.
enum Applied {
    Commit(CommitResult),
    /// A refused create/update (exists / not found) wrote nothing and does not
    /// abort the group.
    Pipeline(Result<PipelineRecord, StoreError>),
    Deleted(bool),
    DlqQueue(DlqQueueRecord),
    /// Rows purged or runs interrupted.
    Counted(u64),
    /// A refused run write (exists / not found) wrote nothing and does not abort
    /// the group.
    RedriveRun(Result<(), StoreError>),
    /// The new version of a quarantined execution (`None`: no such execution).
    Quarantined(Option<u64>),
    /// A token, audit or bulk retry write (a refused one wrote nothing).
    Auth(Result<u64, StoreError>),
    Pruned(PruneCounts),
}

struct Writer {
    conn: Connection,
    max_batch: usize,
    stats: Arc<Stats>,
    /// Checked before every group: the file must still be the one we locked.
    guard: Mutex<FileGuard>,
}

impl Writer {
    /// Serves requests until every sender is gone, then closes the connection.
    fn run(self, mut rx: mpsc::Receiver<WriteRequest>) {
        let mut carried: Option<WriteRequest> = None;
        loop {
            let first = match carried.take() {
                Some(request) => request,
                None => match rx.blocking_recv() {
                    Some(request) => request,
                    None => break,
                },
            };
            let mut weight = first.weight();
            let mut group = vec![first];
            while weight < self.max_batch {
                match rx.try_recv() {
                    Ok(request) if weight + request.weight() > self.max_batch => {
                        carried = Some(request);
                        break;
                    }
                    Ok(request) => {
                        weight += request.weight();
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            group.retain(|r| !r.abandoned());
            if !group.is_empty() {
                self.apply_group(group);
            }
        }
    }

    /// Applies `group` in one transaction and answers every request in it. If the
    /// transaction fails, nothing of it is committed: every request gets the error,
    /// except that a request-specific failure (e.g. a constraint) in a group of
    /// several requests makes each request run again alone.
    fn apply_group(&self, group: Vec<WriteRequest>) {
        let lost = self.guard.lock().unwrap_or_else(|e| e.into_inner()).check();
        if let Err(what) = lost {
            let error = StoreError::Lost(what);
            for request in group {
                request.fail(&error);
            }
            return;
        }
        let started = Instant::now();
        match self.transact(&group) {
            Ok(outcomes) => {
                let (mut applied, mut ledger_rows) = (0, 0);
                for (request, outcome) in group.iter().zip(&outcomes) {
                    if let (WriteRequest::Commit { transitions, valid, .. }, Applied::Commit(results)) = (request, outcome) {
                        for (&i, r) in valid.iter().zip(results) {
                            if r.is_ok() {
                                applied += 1;
                                ledger_rows += transitions[i].ledger.len() as u64;
                            }
                        }
                    }
                }
                self.stats.record(applied, ledger_rows, started.elapsed());
                for (request, outcome) in group.into_iter().zip(outcomes) {
                    request.answer(outcome);
                }
            }
            Err(e) => {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                if group.len() > 1 && is_request_specific(&e) {
                    // One request is poisoned (it fails whatever it is grouped
                    // with): retry each alone so only the culprit fails.
                    for request in group {
                        self.apply_group(vec![request]);
                    }
                    return;
                }
                let error = map_error(e);
                for request in group {
                    request.fail(&error);
                }
            }
        }
    }

    /// `BEGIN IMMEDIATE`, every request, `COMMIT`. Any SQLite error aborts the
    /// whole group (the caller rolls back).
    fn transact(&self, group: &[WriteRequest]) -> rusqlite::Result<Vec<Applied>> {
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let mut outcomes = Vec::with_capacity(group.len());
        for request in group {
            outcomes.push(match request {
                WriteRequest::Commit { transitions, valid, .. } => {
                    let mut results = Vec::with_capacity(valid.len());
                    for &i in valid {
                        results.push(self.apply_transition_isolated(&transitions[i])?);
                    }
                    Applied::Commit(results)
                }
                WriteRequest::Pipeline { write, .. } => Applied::Pipeline(self.write_pipeline(write)?),
                WriteRequest::DeletePipeline { name, now, .. } => Applied::Deleted(self.delete_pipeline(name, *now)?),
                WriteRequest::DlqQueue { write, .. } => Applied::DlqQueue(self.write_dlq_queue(write)?),
                WriteRequest::PurgeDlq { filter, .. } => Applied::Counted(self.purge_dlq_entries(filter)?),
                WriteRequest::RedriveRun { write, .. } => Applied::RedriveRun(self.write_redrive_run(write)?),
                WriteRequest::InterruptRedriveRuns { now, .. } => {
                    Applied::Counted(self.conn.prepare_cached(SQL_INTERRUPT_REDRIVE_RUNS)?.execute(params![now.unix_ms()])? as u64)
                }
                WriteRequest::Quarantine { id, status, fault, at, .. } => Applied::Quarantined(self.quarantine(id, status, fault, *at)?),
                WriteRequest::Auth { write, .. } => Applied::Auth(auth::apply(&self.conn, write)?),
                WriteRequest::Bulk { write, .. } => Applied::Auth(bulk::apply(&self.conn, write)?),
                WriteRequest::Dependencies { records, .. } => Applied::Counted(dependencies::put(&self.conn, records)?),
                WriteRequest::Prune { step, .. } => Applied::Pruned(self.prune(step)?),
            });
        }
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(outcomes)
    }

    /// Applies one transition; a refused one writes nothing. Every refusal but
    /// a dead-letter op's is found before the transition's first write, so
    /// only a transition with dead-letter ops runs in a savepoint (undone if
    /// refused): two statements fewer per transition on the hot path.
    fn apply_transition_isolated(&self, t: &Transition) -> rusqlite::Result<Result<u64, TransitionError>> {
        let conn = &self.conn;
        if t.dlq.is_empty() {
            let changes_before = conn.total_changes();
            let result = self.apply_transition(t)?;
            debug_assert!(result.is_ok() || conn.total_changes() == changes_before, "a refused transition wrote: {result:?}");
            return Ok(result);
        }
        conn.prepare_cached(SQL_SAVEPOINT)?.execute([])?;
        let result = self.apply_transition(t)?;
        if result.is_err() {
            conn.prepare_cached(SQL_ROLLBACK_TO_SAVEPOINT)?.execute([])?;
        }
        conn.prepare_cached(SQL_RELEASE_SAVEPOINT)?.execute([])?;
        Ok(result)
    }

    /// The semantics of [`Transition`]: create (after the client token check) or
    /// compare-and-set the execution row, apply the dead-letter ops in order (a
    /// refused one refuses the transition), append the ledger, then clear and set
    /// timers (a key both cleared and set ends up set).
    fn apply_transition(&self, t: &Transition) -> rusqlite::Result<Result<u64, TransitionError>> {
        let conn = &self.conn;
        let at = t.at.unix_ms();
        let (kind, name, version) = target_columns(&t.target);
        let (new_version, stored_target) = match t.expected_version {
            None => {
                if let Some(token) = &t.client_token {
                    let used: Option<(String, String)> = conn
                        .prepare_cached(SQL_GET_CLIENT_TOKEN)?
                        .query_row(params![name, token.token, kind], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?;
                    if let Some((execution_id, fingerprint)) = used {
                        return Ok(Err(TransitionError::TokenReused { execution_id, same_request: fingerprint == token.fingerprint }));
                    }
                }
                let inserted = conn.prepare_cached(SQL_INSERT_EXECUTION)?.execute(params![
                    t.execution_id,
                    name,
                    version,
                    t.status,
                    t.input_json,
                    t.state_json,
                    at,
                    kind
                ])?;
                if inserted == 0 {
                    return Ok(Err(TransitionError::AlreadyExists(t.execution_id.clone())));
                }
                if let Some(token) = &t.client_token {
                    conn.prepare_cached(SQL_INSERT_CLIENT_TOKEN)?.execute(params![
                        name,
                        token.token,
                        token.fingerprint,
                        t.execution_id,
                        at,
                        kind
                    ])?;
                }
                (1, None)
            }
            Some(expected) => {
                let updated: Option<(String, String)> = match i64::try_from(expected) {
                    Ok(expected_sql) => {
                        let values = params![t.execution_id, t.status, t.state_json, at, expected_sql];
                        let row = |r: &Row<'_>| Ok((r.get(0)?, r.get(1)?));
                        match conn.prepare_cached(SQL_UPDATE_EXECUTION_SAME_STATUS)?.query_row(values, row).optional()? {
                            Some(stored) => Some(stored),
                            None => conn.prepare_cached(SQL_UPDATE_EXECUTION_STATUS)?.query_row(values, row).optional()?,
                        }
                    }
                    Err(_) => None,
                };
                let Some(stored) = updated else {
                    let actual: Option<i64> =
                        conn.prepare_cached(SQL_EXECUTION_VERSION)?.query_row(params![t.execution_id], |r| r.get(0)).optional()?;
                    return Ok(Err(TransitionError::VersionConflict {
                        execution_id: t.execution_id.clone(),
                        expected,
                        actual: actual.map(|v| v as u64),
                    }));
                };
                (expected + 1, Some(stored))
            }
        };
        if let Err(refused) = self.apply_dlq_ops(&t.dlq, at)? {
            return Ok(Err(refused));
        }

        if !t.ledger.is_empty() {
            // The execution's own target: an update's `target` is ignored.
            let (kind, name) = stored_target.as_ref().map_or((kind, name), |(k, n)| (k.as_str(), n.as_str()));
            let mut insert = conn.prepare_cached(SQL_INSERT_LEDGER)?;
            for e in &t.ledger {
                insert.execute(params![
                    t.execution_id,
                    e.stage,
                    e.action,
                    e.series,
                    e.attempt,
                    e.trigger,
                    e.started_at.unix_ms(),
                    e.finished_at.unix_ms(),
                    e.outcome,
                    e.exception_type,
                    e.message,
                    e.decision_json,
                    name,
                    kind
                ])?;
            }
        }
        if !t.clear_timers.is_empty() {
            let mut delete = conn.prepare_cached(SQL_DELETE_TIMER)?;
            for key in &t.clear_timers {
                delete.execute(params![t.execution_id, key])?;
            }
        }
        if !t.set_timers.is_empty() {
            let mut upsert = conn.prepare_cached(SQL_UPSERT_TIMER)?;
            for timer in &t.set_timers {
                upsert.execute(params![t.execution_id, timer.key, timer.due_at.unix_ms()])?;
            }
        }
        Ok(Ok(new_version))
    }

    /// Marks an execution quarantined and drops its timers (see [`Store::quarantine_execution`]).
    /// One retention step ([`PruneStep`]): each execution that may still go,
    /// with its ledger rows (through `ledger_prunable`), timers and client tokens;
    /// then resolved entries, finished runs and finished bulk retry operations
    /// (with their results); then returns freed pages to the
    /// file system (a no-op unless the file uses incremental auto-vacuum).
    fn prune(&self, step: &PruneStep) -> rusqlite::Result<PruneCounts> {
        let conn = &self.conn;
        let mut counts = PruneCounts::default();
        for e in &step.executions {
            let version = e.version as i64;
            if conn.prepare_cached(SQL_PRUNABLE_EXECUTION)?.query_row(params![e.id, version], |_| Ok(())).optional()?.is_none() {
                continue;
            }
            conn.prepare_cached(SQL_MARK_LEDGER_PRUNABLE)?.execute(params![e.id])?;
            counts.ledger_rows += conn.prepare_cached(SQL_DELETE_EXECUTION_LEDGER)?.execute(params![e.id])? as u64;
            conn.prepare_cached(SQL_UNMARK_LEDGER_PRUNABLE)?.execute(params![e.id])?;
            conn.prepare_cached(SQL_DELETE_EXECUTION_TIMERS)?.execute(params![e.id])?;
            conn.prepare_cached(SQL_DELETE_EXECUTION_TOKENS)?.execute(params![e.id])?;
            counts.executions += conn.prepare_cached(SQL_DELETE_EXECUTION)?.execute(params![e.id])? as u64;
        }
        let limit = step.limit as i64;
        if let Some(before) = step.resolved_entries_before {
            counts.dlq_entries = conn.prepare_cached(SQL_PRUNE_DLQ_ENTRIES)?.execute(params![before.unix_ms(), limit])? as u64;
        }
        if let Some(before) = step.runs_finished_before {
            counts.redrive_runs = conn.prepare_cached(SQL_PRUNE_REDRIVE_RUNS)?.execute(params![before.unix_ms(), limit])? as u64;
        }
        if let Some(before) = step.bulk_retries_finished_before {
            counts.bulk_retries = conn.prepare_cached(bulk::SQL_PRUNE)?.execute(params![before.unix_ms(), limit])? as u64;
        }
        if let Some(before) = step.audit_before {
            counts.audit_records = conn.prepare_cached(SQL_PRUNE_AUDIT)?.execute(params![before.unix_ms(), limit])? as u64;
        }
        if !counts.is_empty() {
            conn.query_row(&format!("PRAGMA incremental_vacuum({PRUNE_VACUUM_PAGES})"), [], |_| Ok(())).optional()?;
        }
        Ok(counts)
    }

    fn quarantine(&self, id: &str, status: &str, fault: &ExecutionFault, at: Timestamp) -> rusqlite::Result<Option<u64>> {
        let values = params![id, status, fault.exception_type, fault.message, at.unix_ms()];
        let version: Option<i64> = self.conn.prepare_cached(SQL_QUARANTINE_EXECUTION)?.query_row(values, |r| r.get(0)).optional()?;
        if version.is_some() {
            self.conn.prepare_cached(SQL_DELETE_EXECUTION_TIMERS)?.execute(params![id])?;
        }
        Ok(version.map(|v| v as u64))
    }

    /// Put, create or update a pipeline (see [`PipelineMode`]). A new version is
    /// always latest stored + 1, so numbers are never reused across a delete.
    fn write_pipeline(&self, w: &PipelineWrite) -> rusqlite::Result<Result<PipelineRecord, StoreError>> {
        let conn = &self.conn;
        let name = w.name.as_str();
        let live = conn.prepare_cached(SQL_PIPELINE_IS_LIVE)?.query_row(params![name], |r| r.get::<_, bool>(0)).optional()? == Some(true);
        let latest = conn.prepare_cached(SQL_LATEST_STORED_PIPELINE)?.query_row(params![name], pipeline_from_row).optional()?;
        match w.mode {
            PipelineMode::Create if live => return Ok(Err(StoreError::AlreadyExists(format!("pipeline {name} already exists")))),
            PipelineMode::Update if !live => return Ok(Err(StoreError::NotFound(format!("pipeline {name} does not exist")))),
            PipelineMode::Put if live => {
                if let Some(latest) = &latest
                    && latest.definition_json == w.definition_json
                    && latest.source_dir == w.source_dir
                {
                    return Ok(Ok(latest.clone()));
                }
            }
            _ => {}
        }
        let record = PipelineRecord {
            name: w.name.clone(),
            version: latest.map_or(1, |p| p.version + 1),
            definition_json: w.definition_json.clone(),
            source_dir: w.source_dir.clone(),
            created_at: w.now,
        };
        conn.prepare_cached(SQL_INSERT_PIPELINE)?.execute(params![
            record.name,
            record.version,
            record.definition_json,
            record.source_dir,
            record.created_at.unix_ms()
        ])?;
        if !live {
            conn.prepare_cached(SQL_REVIVE_PIPELINE_NAME)?.execute(params![name])?;
        }
        Ok(Ok(record))
    }

    /// The [`DlqOp`]s of a transition at `at` (unix ms), in order. A `Take` of an
    /// entry that is not `QUEUED` refuses the transition (the caller rolls back
    /// its savepoint).
    fn apply_dlq_ops(&self, ops: &[DlqOp], at: i64) -> rusqlite::Result<Result<(), TransitionError>> {
        let conn = &self.conn;
        for op in ops {
            match op {
                DlqOp::Enter(w) => {
                    conn.prepare_cached(SQL_ENSURE_QUEUE_OF_NEW_DLQ_ENTRY)?.execute(params![w.queue, DEFAULT_MAX_REDRIVES, at, w.id])?;
                    let (kind, name, version) = target_columns(&w.source);
                    conn.prepare_cached(SQL_ENTER_DLQ_ENTRY)?.execute(params![
                        w.id,
                        w.queue,
                        name,
                        version,
                        w.execution_id,
                        w.stage,
                        w.action,
                        w.exception_type,
                        w.message,
                        w.input_json,
                        w.detail_json,
                        w.first_failure_at.unix_ms(),
                        w.last_failure_at.unix_ms(),
                        at,
                        kind
                    ])?;
                }
                DlqOp::Take { entry_id, execution_id } => {
                    if conn.prepare_cached(SQL_TAKE_DLQ_ENTRY)?.execute(params![entry_id, execution_id, at])? == 0 {
                        return Ok(Err(TransitionError::DlqEntryNotQueued { entry_id: entry_id.clone() }));
                    }
                }
                DlqOp::Resolve { entry_id } => {
                    conn.prepare_cached(SQL_RESOLVE_DLQ_ENTRY)?.execute(params![entry_id, at])?;
                }
            }
        }
        Ok(Ok(()))
    }

    /// Ensures (`max_redrives` `None`: created with [`DEFAULT_MAX_REDRIVES`] if
    /// missing, else unchanged) or configures a queue; returns it.
    fn write_dlq_queue(&self, w: &DlqQueueWrite) -> rusqlite::Result<DlqQueueRecord> {
        let conn = &self.conn;
        let now = w.now.unix_ms();
        match w.max_redrives {
            None => {
                conn.prepare_cached(SQL_ENSURE_DLQ_QUEUE)?.execute(params![w.name, DEFAULT_MAX_REDRIVES, now])?;
                conn.prepare_cached(SQL_GET_DLQ_QUEUE_RECORD)?.query_row(params![w.name], dlq_queue_from_row)
            }
            Some(max_redrives) => {
                conn.prepare_cached(SQL_CONFIGURE_DLQ_QUEUE)?.query_row(params![w.name, max_redrives, now], dlq_queue_from_row)
            }
        }
    }

    /// Deletes the `QUEUED` entries matching `filter` (its state, cursor and limit ignored).
    fn purge_dlq_entries(&self, filter: &DlqEntryFilter) -> rusqlite::Result<u64> {
        let query = DlqEntryQuery::new(filter, Some(DlqEntryState::Queued), false);
        Ok(self.conn.prepare_cached(&query.purge_sql())?.execute(query.bound().as_slice())? as u64)
    }

    /// Inserts (refused if the id exists) or updates (refused if missing) a run.
    fn write_redrive_run(&self, write: &RedriveRunWrite) -> rusqlite::Result<Result<(), StoreError>> {
        let conn = &self.conn;
        match write {
            RedriveRunWrite::Create(run) => {
                let inserted = conn.prepare_cached(SQL_INSERT_REDRIVE_RUN)?.execute(params![
                    run.id,
                    run.schedule,
                    run.status,
                    run.dry_run,
                    run.started_at.unix_ms(),
                    run.finished_at.map(Timestamp::unix_ms),
                    run.request_json,
                    run.summary_json
                ])?;
                if inserted == 0 {
                    return Ok(Err(StoreError::AlreadyExists(format!("redrive run {} already exists", run.id))));
                }
            }
            RedriveRunWrite::Update(run) => {
                let updated = conn.prepare_cached(SQL_UPDATE_REDRIVE_RUN)?.execute(params![
                    run.id,
                    run.status,
                    run.finished_at.map(Timestamp::unix_ms),
                    run.summary_json
                ])?;
                if updated == 0 {
                    return Ok(Err(StoreError::NotFound(format!("redrive run {} does not exist", run.id))));
                }
            }
        }
        Ok(Ok(()))
    }

    /// Tombstones a live pipeline name and forgets its client tokens.
    fn delete_pipeline(&self, name: &str, now: Timestamp) -> rusqlite::Result<bool> {
        let deleted = self.conn.prepare_cached(SQL_DELETE_PIPELINE_NAME)?.execute(params![name, now.unix_ms()])? > 0;
        if deleted {
            self.conn.prepare_cached(SQL_DELETE_PIPELINE_TOKENS)?.execute(params![name])?;
        }
        Ok(deleted)
    }
}

// ---------------------------------------------------------------------------
// Readers
// ---------------------------------------------------------------------------

/// Read-only connections; `permits` bounds how many are in use at once.
struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ReaderPool {
    fn open(path: &Path, readers: usize) -> Result<ReaderPool, StoreError> {
        let readers = readers.max(1);
        let mut idle = Vec::with_capacity(readers);
        for _ in 0..readers {
            idle.push(open_reader(path).map_err(|e| open_error(path, e))?);
        }
        Ok(ReaderPool { path: path.to_path_buf(), idle: Mutex::new(idle), permits: Arc::new(Semaphore::new(readers)) })
    }

    /// An idle connection, or a fresh one if a panicking query lost one.
    fn take(&self) -> rusqlite::Result<Connection> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path),
        }
    }

    fn give_back(&self, conn: Connection) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
    }

    /// Closes the idle connections (the store is being dropped).
    fn close_idle(&self) {
        self.permits.close();
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A read-only connection. `journal_mode` is persistent in the file (set by the
/// writer) and `synchronous` does not matter for readers.
fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags)?;
    configure_connection(&conn, None)?;
    Ok(conn)
}

/// Applies the PRAGMAs; `durability` is `None` for read-only connections.
fn configure_connection(conn: &Connection, durability: Option<Durability>) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    conn.execute_batch("PRAGMA foreign_keys = ON;")?;
    if let Some(durability) = durability {
        // Only a file without pages takes it, and only before WAL: a new
        // database returns what retention frees to the file system.
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if pages == 0 {
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
        }
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                Some(format!("cannot switch the database to WAL mode (journal_mode is {mode})")),
            ));
        }
        conn.execute_batch(&format!("PRAGMA synchronous = {};", durability.pragma_value()))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Migrations
// ---------------------------------------------------------------------------

/// The highest applied migration, `None` if the database has no
/// `schema_migrations` table.
fn schema_version(conn: &Connection) -> rusqlite::Result<Option<u32>> {
    let has_table: bool =
        conn.query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')", [], |r| {
            r.get(0)
        })?;
    if !has_table {
        return Ok(None);
    }
    conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", [], |r| r.get(0)).map(Some)
}

fn newer_schema_error(path: &Path, version: u32) -> StoreError {
    StoreError::Schema(format!(
        "{} has schema version {version}, newer than the versions this redrive knows (up to {SCHEMA_VERSION}); \
         use a newer redrive to open it",
        path.display()
    ))
}

/// Brings the schema to [`SCHEMA_VERSION`], one transaction per migration.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    migrate_to(conn, path, SCHEMA_VERSION)
}

/// Applies the pending migrations up to schema version `target` (tests create
/// older databases with a lower target).
fn migrate_to(conn: &mut Connection, path: &Path, target: u32) -> Result<(), StoreError> {
    let migration_error = |version: usize, e: rusqlite::Error| match map_error(e) {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("applying schema migration {version} to {}: {m}", path.display())),
        other => StoreError::Schema(format!("applying schema migration {version} to {}: {other}", path.display())),
    };
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);")
        .map_err(|e| open_error(path, e))?;
    let current = schema_version(conn).map_err(|e| open_error(path, e))?.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(newer_schema_error(path, current));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().take(target as usize).skip(current as usize) {
        let version = index + 1;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(|e| migration_error(version, e))?;
        tx.execute_batch(sql).map_err(|e| match e {
            // A plain SQL error here means the file holds something we did not write.
            rusqlite::Error::SqliteFailure(f, m) if f.code == ErrorCode::Unknown => StoreError::Schema(format!(
                "applying schema migration {version} to {}: {} (is this a redrive database?)",
                path.display(),
                m.unwrap_or_else(|| f.to_string())
            )),
            e => migration_error(version, e),
        })?;
        tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)", params![version as i64, wall_clock_ms()])
            .map_err(|e| migration_error(version, e))?;
        tx.commit().map_err(|e| migration_error(version, e))?;
    }
    Ok(())
}

fn wall_clock_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

// ---------------------------------------------------------------------------
// Engine lock
// ---------------------------------------------------------------------------

/// The engine lock: an exclusive `flock` on the database file itself (so on its
/// device and inode, whatever path reached it) and on `<db>-redrive.lock` (which
/// holds the holder's pid for messages, and is what redrive releases before this
/// one locked). Released when dropped (or when the process dies).
struct EngineLock {
    _pid_file: File,
    db: Arc<File>,
    /// The two locked descriptors, as registered in [`lock_fds`].
    fds: [i32; 2],
}

/// How long opening waits for the lock of an engine that has exited (held on by
/// a child it forked that has not exec'd or died yet).
const LOCK_TAKEOVER_WAIT: Duration = Duration::from_secs(10);
const LOCK_RETRY_INTERVAL: Duration = Duration::from_millis(20);

/// Descriptors of every engine lock this process holds. A child forked to run
/// a command shares them until it execs (they are close-on-exec); a child that
/// blocks before exec would hold the lock past this process's death, so it
/// closes them first ([`inherited_lock_fds`]).
fn lock_fds() -> std::sync::MutexGuard<'static, Vec<i32>> {
    static FDS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
    FDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The descriptors a forked child should close before anything else (read
/// before the fork: the child may not lock or allocate).
pub fn inherited_lock_fds() -> Vec<i32> {
    lock_fds().clone()
}

impl Drop for EngineLock {
    fn drop(&mut self) {
        lock_fds().retain(|fd| !self.fds.contains(fd));
    }
}

/// The pid that took the `flock` on `file`, from `/proc/locks` (a child that
/// inherited the lock keeps it under its parent's pid): `Ok(None)` if no lock is
/// listed (released meanwhile), `Err` if `/proc/locks` cannot be read.
#[cfg(unix)]
fn flock_holder(file: &File) -> Result<Option<u32>, ()> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().map_err(drop)?;
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let wanted = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").map_err(drop)?;
    Ok(locks.lines().find_map(|line| {
        // `1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&wanted.as_str())).then(|| fields.get(4)?.parse().ok()).flatten()
    }))
}

/// An exclusive, non-blocking `flock(2)` (fs4 calls it through rustix):
/// `Ok(false)` if another open file description holds a lock on the file.
#[cfg(unix)]
fn flock_exclusive(file: &File) -> std::io::Result<bool> {
    // Called as a path: std's own `File::try_lock` (Rust 1.89) is newer than our MSRV.
    match fs4::FileExt::try_lock(file) {
        Ok(()) => Ok(true),
        Err(fs4::TryLockError::WouldBlock) => Ok(false),
        Err(fs4::TryLockError::Error(e)) => Err(e),
    }
}

/// Opens (creating, mode 0600) a file the lock needs.
fn open_lock_target(path: &Path) -> Result<File, StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))
}

impl EngineLock {
    #[cfg(unix)]
    fn acquire(db_path: &Path) -> Result<EngineLock, StoreError> {
        use std::io::{Seek, SeekFrom, Write};
        use std::os::fd::AsRawFd;

        let lock_path = SqliteStore::lock_path(db_path);
        let mut pid_file = open_lock_target(&lock_path)?;
        let db = open_lock_target(db_path)?;
        let pid_file_holder = || std::fs::read_to_string(&lock_path).ok().and_then(|h| h.trim().parse::<u32>().ok());
        let in_use = |holder: Option<u32>, still: &str| {
            let pid = holder.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
            StoreError::Locked(format!(
                "{} is in use by another redrive process (pid {pid}{still}); wait for it to finish or use a different --db",
                db_path.display()
            ))
        };
        for (file, path) in [(&pid_file, lock_path.as_path()), (&db, db_path)] {
            // A killed engine's lock outlives it while a child it forked has not
            // yet exec'd or died (it shares the open file); wait for that, but
            // not for a live engine.
            let deadline = Instant::now() + LOCK_TAKEOVER_WAIT;
            loop {
                let holder = match flock_exclusive(file) {
                    Ok(true) => break,
                    // Not listed: released meanwhile, try again.
                    Ok(false) => flock_holder(file).unwrap_or_else(|()| pid_file_holder()),
                    Err(e) => return Err(StoreError::Unavailable(format!("cannot lock {}: {e}", path.display()))),
                };
                if holder.is_some_and(process_is_alive) {
                    return Err(in_use(holder, ""));
                }
                if Instant::now() >= deadline {
                    return Err(in_use(holder, ", which has exited; a process it started still holds the file"));
                }
                std::thread::sleep(LOCK_RETRY_INTERVAL);
            }
        }
        let write_pid = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())?;
            file.flush()
        };
        write_pid(&mut pid_file).map_err(|e| StoreError::Unavailable(format!("cannot write lock file {}: {e}", lock_path.display())))?;
        let fds = [pid_file.as_raw_fd(), db.as_raw_fd()];
        lock_fds().extend(fds);
        Ok(EngineLock { _pid_file: pid_file, db: Arc::new(db), fds })
    }

    /// Advisory locking is only implemented on Unix; elsewhere the files are
    /// opened but not locked.
    #[cfg(not(unix))]
    fn acquire(db_path: &Path) -> Result<EngineLock, StoreError> {
        let pid_file = open_lock_target(&SqliteStore::lock_path(db_path))?;
        let db = open_lock_target(db_path)?;
        Ok(EngineLock { _pid_file: pid_file, db: Arc::new(db), fds: [-1, -1] })
    }

    fn guard(&self, db_path: &Path) -> Result<FileGuard, StoreError> {
        let identity = file_identity(&self.db.metadata().map_err(|e| StoreError::Unavailable(format!("cannot stat the database: {e}")))?);
        let mut wal_path = db_path.as_os_str().to_owned();
        wal_path.push("-wal");
        Ok(FileGuard { path: db_path.to_path_buf(), wal_path: PathBuf::from(wal_path), db: Arc::clone(&self.db), identity, wal: None })
    }
}

/// Device and inode.
type FileIdentity = (u64, u64);

#[cfg(unix)]
fn file_identity(m: &std::fs::Metadata) -> FileIdentity {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

#[cfg(not(unix))]
fn file_identity(_: &std::fs::Metadata) -> FileIdentity {
    (0, 0)
}

/// Notices a database file (or its WAL) deleted or replaced underneath the
/// writer: whatever it committed from then on would be lost.
struct FileGuard {
    path: PathBuf,
    wal_path: PathBuf,
    db: Arc<File>,
    identity: FileIdentity,
    /// The WAL's identity, once it exists (SQLite creates it on the first write).
    wal: Option<FileIdentity>,
}

impl FileGuard {
    /// What happened to the file, if anything (two `stat`s and an `fstat`).
    fn check(&mut self) -> Result<(), String> {
        let path = self.path.display();
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if self.db.metadata().map_or(0, |m| m.nlink()) == 0 {
                return Err(format!("{path} was deleted while this process had it open"));
            }
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if file_identity(&m) == self.identity => {}
            Ok(_) => return Err(format!("{path} was replaced by another file while this process had it open")),
            Err(e) => return Err(format!("{path} cannot be found any more ({e}): it was moved or deleted")),
        }
        match (std::fs::metadata(&self.wal_path).map(|m| file_identity(&m)), self.wal) {
            (Ok(now), None) => self.wal = Some(now),
            (Ok(now), Some(was)) if now == was => {}
            (Ok(_), Some(_)) => return Err(format!("{} was replaced while this process had it open", self.wal_path.display())),
            (Err(_), Some(_)) => return Err(format!("{} was deleted while this process had it open", self.wal_path.display())),
            (Err(_), None) => {}
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Rows and errors
// ---------------------------------------------------------------------------

fn pipeline_from_row(row: &Row<'_>) -> rusqlite::Result<PipelineRecord> {
    Ok(PipelineRecord {
        name: row.get(0)?,
        version: row.get(1)?,
        definition_json: row.get(2)?,
        source_dir: row.get(3)?,
        created_at: Timestamp::from_unix_ms(row.get(4)?),
    })
}

/// The `kind`, name and `pipeline_version` columns of a target (a function's
/// version column holds 0, never read).
fn target_columns(target: &Target) -> (&'static str, &str, u32) {
    (target.kind().as_str(), target.name(), target.pipeline_version().unwrap_or(0))
}

/// A target from its `kind`, name and `pipeline_version` columns (at `kind_at`,
/// `name_at` and `name_at + 1`).
fn target_from_row(row: &Row<'_>, kind_at: usize, name_at: usize) -> rusqlite::Result<Target> {
    let kind: String = row.get(kind_at)?;
    let name: String = row.get(name_at)?;
    match ExecutionKind::parse(&kind) {
        Some(ExecutionKind::Pipeline) => Ok(Target::Pipeline { name, version: row.get(name_at + 1)? }),
        Some(ExecutionKind::Function) => Ok(Target::Function { name }),
        None => Err(rusqlite::Error::FromSqlConversionFailure(
            kind_at,
            rusqlite::types::Type::Text,
            format!("unknown execution kind {kind:?}").into(),
        )),
    }
}

fn prune_candidate_from_row(row: &Row<'_>) -> rusqlite::Result<PruneCandidate> {
    let kind: String = row.get(2)?;
    let kind = ExecutionKind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, format!("unknown execution kind {kind:?}").into())
    })?;
    Ok(PruneCandidate {
        id: row.get(0)?,
        target: TargetName { kind, name: row.get(1)? },
        status: row.get(3)?,
        version: row.get::<_, i64>(4)? as u64,
        created_at: Timestamp::from_unix_ms(row.get(5)?),
        finished_at: Timestamp::from_unix_ms(row.get(6)?),
    })
}

fn execution_from_row(row: &Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        id: row.get(0)?,
        target: target_from_row(row, 11, 1)?,
        status: row.get(3)?,
        input_json: row.get(4)?,
        state_json: row.get(5)?,
        version: row.get::<_, i64>(6)? as u64,
        created_at: Timestamp::from_unix_ms(row.get(7)?),
        updated_at: Timestamp::from_unix_ms(row.get(8)?),
        fault: match (row.get::<_, Option<String>>(9)?, row.get::<_, Option<String>>(10)?) {
            (Some(exception_type), message) => Some(ExecutionFault { exception_type, message: message.unwrap_or_default() }),
            (None, _) => None,
        },
    })
}

fn ledger_from_row(row: &Row<'_>) -> rusqlite::Result<LedgerEntry> {
    Ok(LedgerEntry {
        seq: row.get(0)?,
        execution_id: row.get(1)?,
        stage: row.get(2)?,
        action: row.get(3)?,
        series: row.get(4)?,
        attempt: row.get(5)?,
        trigger: row.get(6)?,
        started_at: Timestamp::from_unix_ms(row.get(7)?),
        finished_at: Timestamp::from_unix_ms(row.get(8)?),
        outcome: row.get(9)?,
        exception_type: row.get(10)?,
        message: row.get(11)?,
        decision_json: row.get(12)?,
    })
}

fn dlq_queue_from_row(row: &Row<'_>) -> rusqlite::Result<DlqQueueRecord> {
    Ok(DlqQueueRecord { name: row.get(0)?, max_redrives: row.get(1)?, created_at: Timestamp::from_unix_ms(row.get(2)?) })
}

/// The columns of `dlq_queue_stats_columns!`.
fn dlq_queue_stats_from_row(row: &Row<'_>) -> rusqlite::Result<DlqQueueStats> {
    Ok(DlqQueueStats {
        queue: dlq_queue_from_row(row)?,
        depth: row.get::<_, i64>(3)? as u64,
        poison: row.get::<_, i64>(4)? as u64,
        redriven: row.get::<_, i64>(5)? as u64,
        oldest_entered_at: row.get::<_, Option<i64>>(6)?.map(Timestamp::from_unix_ms),
    })
}

/// The columns of `dlq_entry_columns!`.
fn dlq_entry_from_row(row: &Row<'_>) -> rusqlite::Result<DlqEntryRecord> {
    let state: String = row.get(2)?;
    let Some(state) = DlqEntryState::parse(&state) else {
        return Err(rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown dead-letter entry state {state:?}").into(),
        ));
    };
    Ok(DlqEntryRecord {
        id: row.get(0)?,
        queue: row.get(1)?,
        state,
        source: target_from_row(row, 21, 3)?,
        execution_id: row.get(5)?,
        stage: row.get(6)?,
        action: row.get(7)?,
        exception_type: row.get(8)?,
        message: row.get(9)?,
        input_json: row.get(10)?,
        detail_json: row.get(11)?,
        redrive_count: row.get(12)?,
        max_redrives: row.get(13)?,
        first_failure_at: Timestamp::from_unix_ms(row.get(14)?),
        last_failure_at: Timestamp::from_unix_ms(row.get(15)?),
        entered_at: Timestamp::from_unix_ms(row.get(16)?),
        redriven_to: row.get(17)?,
        redriven_at: row.get::<_, Option<i64>>(18)?.map(Timestamp::from_unix_ms),
        resolved_at: row.get::<_, Option<i64>>(19)?.map(Timestamp::from_unix_ms),
        updated_at: Timestamp::from_unix_ms(row.get(20)?),
    })
}

fn redrive_run_from_row(row: &Row<'_>) -> rusqlite::Result<RedriveRunRecord> {
    Ok(RedriveRunRecord {
        id: row.get(0)?,
        schedule: row.get(1)?,
        status: row.get(2)?,
        dry_run: row.get(3)?,
        started_at: Timestamp::from_unix_ms(row.get(4)?),
        finished_at: row.get::<_, Option<i64>>(5)?.map(Timestamp::from_unix_ms),
        request_json: row.get(6)?,
        summary_json: row.get(7)?,
    })
}

fn timer_from_row(row: &Row<'_>) -> rusqlite::Result<TimerRecord> {
    Ok(TimerRecord { execution_id: row.get(0)?, key: row.get(1)?, due_at: Timestamp::from_unix_ms(row.get(2)?) })
}

/// Classifies a SQLite error: damage → [`StoreError::Schema`], everything else
/// (disk full, I/O, busy, locked, cannot open, …) → [`StoreError::Unavailable`].
fn map_error(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::Schema(format!("the database is damaged or not a redrive database: {e}"))
            }
            ErrorCode::DiskFull => StoreError::Unavailable(format!("disk full: {e}")),
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                StoreError::Unavailable(format!("database is locked by another connection: {e}"))
            }
            _ => StoreError::Unavailable(e.to_string()),
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..) => StoreError::Schema(format!("unexpected data in the database: {e}")),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// Whether `e` is caused by the data of a request (so the same request would
/// fail again in any group) rather than by the database or the disk.
fn is_request_specific(e: &rusqlite::Error) -> bool {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => {
            matches!(f.code, ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch)
        }
        rusqlite::Error::ToSqlConversionFailure(_) => true,
        _ => false,
    }
}

/// Like [`map_error`], naming the file (for errors while opening).
fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match map_error(e) {
        StoreError::Schema(m) => StoreError::Schema(format!("{}: {m}", path.display())),
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("cannot open {}: {m}", path.display())),
        other => other,
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the SQLite writer thread has stopped".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientToken, TargetName};

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let values: Vec<Box<dyn rusqlite::ToSql>> = (1..=stmt.parameter_count())
            .map(|i| match stmt.parameter_name(i) {
                Some(":limit" | ":at" | ":before") => Box::new(1_i64) as Box<dyn rusqlite::ToSql>,
                Some(_) => Box::new("x"),
                None if i == 1 => Box::new(1_i64),
                None => Box::new("x"),
            })
            .collect();
        let bound: Vec<&dyn rusqlite::ToSql> = values.iter().map(|v| v.as_ref()).collect();
        let rows: Vec<String> = stmt.query_map(bound.as_slice(), |r| r.get::<_, String>(3)).unwrap().collect::<Result<_, _>>().unwrap();
        rows.join("; ")
    }

    fn migrated(dir: &tempfile::TempDir) -> Connection {
        let path = dir.path().join("plan.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        conn
    }

    /// `due_timers` and `list_executions` must be served by indexes, without a sort.
    #[test]
    fn queries_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = migrated(&dir);
        let due = plan(&conn, SQL_DUE_TIMERS);
        assert!(due.contains("COVERING INDEX timers_due"), "due_timers plan: {due}");
        assert!(!due.contains("TEMP B-TREE"), "due_timers must not sort: {due}");
        let after = plan(&conn, SQL_DUE_TIMERS_AFTER);
        assert!(after.contains("COVERING INDEX timers_due"), "due_timers_after plan: {after}");
        assert!(!after.contains("TEMP B-TREE"), "due_timers_after must not sort: {after}");
        let next = plan(&conn, SQL_NEXT_TIMER_DUE);
        assert!(next.contains("timers_due"), "next_timer_due plan: {next}");
    }

    /// Every `list_executions` shape uses its index, with the cursor as a range
    /// bound on it, and never sorts.
    #[test]
    fn execution_listings_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = migrated(&dir);
        for by_pipeline in [false, true] {
            for unfinished in [false, true] {
                for after_cursor in [false, true] {
                    let sql = &SQL_LIST_EXECUTIONS[list_executions_variant(by_pipeline, unfinished, after_cursor)];
                    let p = plan(&conn, sql);
                    let index = match (by_pipeline, unfinished) {
                        (false, false) => "executions_created_id",
                        (true, false) => "executions_target_created_id",
                        (false, true) => "executions_unfinished",
                        (true, true) => "executions_target_unfinished",
                    };
                    assert!(p.contains(&format!("USING INDEX {index}")), "{sql}: expected {index}: {p}");
                    assert!(!p.contains("TEMP B-TREE"), "{sql} must not sort: {p}");
                    if after_cursor {
                        assert!(p.contains("(created_at,id)<(?,?)"), "{sql}: the cursor must bound the index range: {p}");
                    }
                    if by_pipeline {
                        assert!(p.contains("pipeline_name=?"), "{sql}: the pipeline must be an index prefix: {p}");
                    }
                }
            }
        }
    }

    /// Pipeline and ledger listings use indexes, without a sort.
    #[test]
    fn pipeline_and_ledger_listings_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = migrated(&dir);
        for sql in [SQL_LIST_PIPELINES, SQL_LIST_PIPELINES_AFTER] {
            let p = plan(&conn, sql);
            assert!(p.contains("pipeline_names_live"), "{sql}: live names from the partial index: {p}");
            assert!(p.contains("USING PRIMARY KEY") || p.contains("USING INDEX sqlite_autoindex_pipelines"), "{sql}: {p}");
            assert!(!p.contains("TEMP B-TREE"), "{sql} must not sort: {p}");
            if sql == SQL_LIST_PIPELINES_AFTER {
                assert!(p.contains("name>?"), "{sql}: the cursor must bound the index range: {p}");
            }
        }
        let latest = plan(&conn, SQL_LATEST_LIVE_PIPELINE);
        assert!(!latest.contains("SCAN"), "get_pipeline(latest) must not scan: {latest}");
        for by_execution in [false, true] {
            for before in [false, true] {
                let sql = &SQL_LIST_LEDGER[list_ledger_variant(by_execution, before)];
                let p = plan(&conn, sql);
                let index = if by_execution { "ledger_execution_seq" } else { "ledger_target_seq" };
                assert!(p.contains(&format!("USING INDEX {index}")), "{sql}: expected {index}: {p}");
                assert!(!p.contains("TEMP B-TREE"), "{sql} must not sort: {p}");
                if before {
                    assert!(p.contains("seq<?"), "{sql}: before_seq must bound the index range: {p}");
                }
            }
        }
        let token = plan(&conn, SQL_GET_CLIENT_TOKEN);
        assert!(token.contains("PRIMARY KEY"), "client token lookup by primary key: {token}");
    }

    /// A database written by a redrive that knew only migration 1 upgrades to the
    /// current schema with its data intact and usable.
    #[tokio::test(flavor = "multi_thread")]
    async fn version_1_database_upgrades() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate_to(&mut conn, &path, 1).unwrap();
            assert_eq!(schema_version(&conn).unwrap(), Some(1));
            conn.execute_batch(
                r#"
                INSERT INTO pipelines VALUES ('build', 1, '{"v":1}', '/src', 1000), ('build', 2, '{"v":2}', NULL, 2000),
                                             ('deploy', 1, '{"d":1}', NULL, 3000);
                INSERT INTO executions VALUES
                    ('e1', 'build', 1, 'Succeeded', '{}', '{"s":1}', 3, 1500, 1600),
                    ('e2', 'build', 2, 'InProgress', '{}', '{"s":2}', 1, 2500, 2500),
                    ('e3', 'deploy', 1, 'InProgress', '{}', '{"s":3}', 2, 3500, 3600);
                INSERT INTO ledger (execution_id, stage, action, series, attempt, "trigger", started_at, finished_at, outcome)
                VALUES ('e1', 'Build', 'Compile', 1, 1, 'initial', 1500, 1510, 'FAILED'),
                       ('e3', 'Ship', 'Push', 1, 1, 'initial', 3500, 3510, 'SUCCEEDED'),
                       ('e1', 'Build', 'Compile', 1, 2, 'policy', 1520, 1530, 'SUCCEEDED');
                INSERT INTO timers VALUES ('e2', 'Build/Compile#2', 9000);
                "#,
            )
            .unwrap();
        }
        {
            let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            let raw = Connection::open(&path).unwrap();
            let versions: Vec<u32> = raw
                .prepare("SELECT version FROM schema_migrations ORDER BY version")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>(), "every later migration is applied on top of migration 1");

            let build = store.get_pipeline("build", None).await.unwrap().unwrap();
            assert_eq!((build.version, build.definition_json.as_str(), build.created_at.unix_ms()), (2, r#"{"v":2}"#, 2000));
            assert_eq!(store.get_pipeline("build", Some(1)).await.unwrap().unwrap().source_dir.as_deref(), Some("/src"));
            let listed: Vec<(String, u32)> =
                store.list_pipelines(None, 0).await.unwrap().into_iter().map(|p| (p.name, p.version)).collect();
            assert_eq!(listed, [("build".to_owned(), 2), ("deploy".to_owned(), 1)], "existing pipelines are live");

            let all: Vec<String> = store.list_executions(ExecutionFilter::default()).await.unwrap().into_iter().map(|e| e.id).collect();
            assert_eq!(all, ["e3", "e2", "e1"]);
            let unfinished = store
                .list_executions(ExecutionFilter {
                    target: Some(TargetName::pipeline("build")),
                    unfinished_only: true,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(unfinished.len(), 1);
            assert_eq!(unfinished[0].id, "e2");
            assert_eq!(store.get_execution("e1").await.unwrap().unwrap().version, 3);
            assert_eq!(store.next_timer_due().await.unwrap(), Some(Timestamp::from_unix_ms(9000)));

            let build_ledger =
                store.list_ledger(LedgerFilter { target: TargetName::pipeline("build"), ..Default::default() }).await.unwrap();
            let attempts: Vec<(i64, &str, u32)> = build_ledger.iter().map(|e| (e.seq, e.execution_id.as_str(), e.attempt)).collect();
            assert_eq!(attempts, [(3, "e1", 2), (1, "e1", 1)], "old ledger rows are filed under their execution's pipeline");
            let deploy_ledger =
                store.list_ledger(LedgerFilter { target: TargetName::pipeline("deploy"), ..Default::default() }).await.unwrap();
            assert_eq!(deploy_ledger.len(), 1);
            assert_eq!(store.ledger("e1").await.unwrap().len(), 2);

            // Still append-only.
            raw.busy_timeout(Duration::from_secs(5)).unwrap();
            let update = raw.execute("UPDATE ledger SET outcome = 'FAILED'", []);
            assert!(matches!(&update, Err(e) if e.to_string().contains("append-only")), "UPDATE must still be refused: {update:?}");
            let delete = raw.execute("DELETE FROM ledger", []);
            assert!(matches!(&delete, Err(e) if e.to_string().contains("append-only")), "DELETE must still be refused: {delete:?}");

            // And writable with the new features.
            assert_eq!(store.update_pipeline("build", "{}", None, Timestamp::from_unix_ms(4000)).await.unwrap().version, 3);
            assert!(store.delete_pipeline("deploy", Timestamp::from_unix_ms(4100)).await.unwrap());
            assert_eq!(store.create_pipeline("deploy", "{}", None, Timestamp::from_unix_ms(4200)).await.unwrap().version, 2);
            let mut u = Transition {
                execution_id: "e2".into(),
                expected_version: Some(1),
                target: Target::pipeline("build", 2),
                status: "Succeeded".into(),
                input_json: "{}".into(),
                state_json: "{}".into(),
                at: Timestamp::from_unix_ms(5000),
                ledger: Vec::new(),
                set_timers: Vec::new(),
                clear_timers: vec!["Build/Compile#2".into()],
                client_token: None,
                dlq: Vec::new(),
            };
            u.ledger.push(LedgerEntry { execution_id: "e2".into(), ..build_ledger[0].clone() });
            assert_eq!(store.commit(vec![u].into()).await.unwrap(), vec![Ok(2)]);
            assert_eq!(
                store.list_ledger(LedgerFilter { target: TargetName::pipeline("build"), ..Default::default() }).await.unwrap().len(),
                3
            );
        }
        // Reopening does not migrate again.
        drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
        let raw = Connection::open(&path).unwrap();
        let count: i64 = raw.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(count, i64::from(SCHEMA_VERSION));
    }

    /// Every [`DlqEntryFilter`] shape (list, count, purge) is served by an index,
    /// never a table scan; the main shapes use the index meant for them.
    #[test]
    fn dlq_queries_use_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let conn = migrated(&dir);
        let no_table_scan = |what: &str, p: &str| {
            for step in p.split("; ") {
                if step.starts_with("SCAN e") || step.starts_with("SCAN dlq_entries") {
                    assert!(step.contains(" USING "), "{what}: dead-letter entries must be read through an index: {p}");
                }
            }
        };
        for shape in 0..256_u32 {
            let bit = |b: u32| shape & (1 << b) != 0;
            let f = DlqEntryFilter {
                queue: bit(0).then(|| "retry-a".to_owned()),
                queue_prefix: bit(1).then(|| "retry-".to_owned()),
                state: bit(2).then_some(DlqEntryState::Queued),
                poison: bit(3).then_some(false),
                exception_type: bit(4).then(|| "Step.TIMEOUT".to_owned()),
                source_name: bit(5).then(|| "build".to_owned()),
                entered_at_or_before: bit(6).then_some(Timestamp::from_unix_ms(1)),
                after: bit(7).then(|| crate::DlqEntryCursor { entered_at: Timestamp::from_unix_ms(1), id: "x".into() }),
                limit: 0,
            };
            let list = DlqEntryQuery::new(&f, f.state, true);
            let count = DlqEntryQuery::new(&f, f.state, false);
            let purge = DlqEntryQuery::new(&f, Some(DlqEntryState::Queued), false);
            for (what, sql) in [("list", list.list_sql()), ("count", count.count_sql()), ("purge", purge.purge_sql())] {
                let p = plan(&conn, &sql);
                let what = format!("{what} {f:?}");
                no_table_scan(&what, &p);
                if f.queue.is_some() {
                    let index = if what.starts_with("purge") || f.state.is_some() { "(queue=? AND state=?" } else { "(queue=?" };
                    assert!(p.contains(&format!("INDEX dlq_entries_queue {index}")), "{what}: one queue from its index: {p}");
                } else if f.queue_prefix.is_some()
                    && f.exception_type.is_none()
                    && f.source_name.is_none()
                    && f.entered_at_or_before.is_none()
                {
                    // (With entered_at_or_before the planner may prefer the range of `dlq_entries_entered`.)
                    assert!(p.contains("INDEX dlq_entries_queue (queue>? AND queue<?)"), "{what}: a queue prefix is an index range: {p}");
                }
            }
        }

        // The main listings: one queue's (or a pipeline's, an exception type's)
        // queued entries, oldest first, page after page, without a sort.
        let queued = |f: DlqEntryFilter| DlqEntryFilter { state: Some(DlqEntryState::Queued), ..f };
        let cursor = Some(crate::DlqEntryCursor { entered_at: Timestamp::from_unix_ms(1), id: "x".into() });
        for (f, index) in [
            (queued(DlqEntryFilter { queue: Some("q".into()), ..Default::default() }), "dlq_entries_queue (queue=? AND state=?"),
            (
                queued(DlqEntryFilter { queue: Some("q".into()), poison: Some(false), after: cursor.clone(), ..Default::default() }),
                "dlq_entries_queue (queue=? AND state=? AND (entered_at,id)>(?,?))",
            ),
            (
                queued(DlqEntryFilter { queue: Some("q".into()), exception_type: Some("x".into()), ..Default::default() }),
                "dlq_entries_queue (queue=? AND state=?",
            ),
            (queued(DlqEntryFilter::default()), "dlq_entries_state (state=?"),
            (
                queued(DlqEntryFilter { source_name: Some("p".into()), ..Default::default() }),
                "dlq_entries_pipeline (pipeline_name=? AND state=?",
            ),
            (
                queued(DlqEntryFilter { exception_type: Some("x".into()), ..Default::default() }),
                "dlq_entries_exception (exception_type=? AND state=?",
            ),
            (DlqEntryFilter { after: cursor, ..Default::default() }, "dlq_entries_entered ((entered_at,id)>(?,?))"),
        ] {
            let sql = DlqEntryQuery::new(&f, f.state, true).list_sql();
            let p = plan(&conn, &sql);
            assert!(p.contains(&format!("USING INDEX {index}")), "{f:?}: expected {index}: {p}");
            assert!(!p.contains("TEMP B-TREE"), "{f:?} must not sort: {p}");
        }

        // Queue figures are counted from the covering queue index.
        for sql in [SQL_GET_DLQ_QUEUE.to_owned(), list_dlq_queues_sql(true, true, true), list_dlq_queues_sql(false, false, false)] {
            let p = plan(&conn, &sql);
            assert_eq!(p.matches("COVERING INDEX dlq_entries_queue (queue=? AND state=?)").count(), 4, "{sql}: {p}");
            assert!(!p.contains("TEMP B-TREE"), "{sql} must not sort: {p}");
        }
        let entry = plan(&conn, SQL_GET_DLQ_ENTRY);
        assert!(!entry.contains("SCAN"), "get_dlq_entry must not scan: {entry}");

        for by_schedule in [false, true] {
            for before in [false, true] {
                let sql = &SQL_LIST_REDRIVE_RUNS[list_redrive_runs_variant(by_schedule, before)];
                let p = plan(&conn, sql);
                let index = if by_schedule { "redrive_runs_schedule_started" } else { "redrive_runs_started" };
                assert!(p.contains(&format!("USING INDEX {index}")), "{sql}: expected {index}: {p}");
                assert!(!p.contains("TEMP B-TREE"), "{sql} must not sort: {p}");
                if before {
                    assert!(p.contains("(started_at,id)<(?,?)"), "{sql}: the cursor must bound the index range: {p}");
                }
            }
        }
        let interrupt = plan(&conn, SQL_INTERRUPT_REDRIVE_RUNS);
        assert!(interrupt.contains("redrive_runs_running"), "interrupt_redrive_runs from the partial index: {interrupt}");
    }

    #[test]
    fn prefix_upper_bounds() {
        assert_eq!(prefix_upper_bound("retry-").as_deref(), Some("retry."));
        assert_eq!(prefix_upper_bound("retry").as_deref(), Some("retrz"));
        assert_eq!(prefix_upper_bound("a").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound("a\u{d7ff}").as_deref(), Some("a\u{e000}"), "the surrogates are skipped");
        assert_eq!(prefix_upper_bound("a\u{10ffff}").as_deref(), Some("b"), "a last character without successor is dropped");
        assert_eq!(prefix_upper_bound("\u{10ffff}"), None);
        assert_eq!(prefix_upper_bound(""), None);
    }

    /// A database written by a redrive that knew migrations 1 and 2 upgrades to
    /// the current schema with its data intact, and gains the dead-letter tables.
    /// Version 4 named function executions `fn:<function>` with pipeline version 0:
    /// version 5 gives them the function kind and their plain name, with their
    /// ledger rows, dead-letter entries and client tokens.
    #[tokio::test(flavor = "multi_thread")]
    async fn version_4_function_executions_get_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v4.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate_to(&mut conn, &path, 4).unwrap();
            conn.execute_batch(
                r#"
                INSERT INTO executions (id, pipeline_name, pipeline_version, status, input_json, state_json, version, created_at, updated_at)
                VALUES ('f1', 'fn:pay', 0, 'Failed', '{}', '{}', 3, 1000, 1100),
                       ('p1', 'pay', 2, 'Succeeded', '{}', '{}', 2, 1000, 1200);
                INSERT INTO client_tokens VALUES ('fn:pay', 'order-1', 'x', 'f1', 1000), ('pay', 'order-1', 'y', 'p1', 1000);
                INSERT INTO ledger (execution_id, stage, action, series, attempt, "trigger", started_at, finished_at, outcome, pipeline_name)
                VALUES ('f1', 'pay', 'charge', 1, 1, 'initial', 1000, 1010, 'FAILED', 'fn:pay'),
                       ('p1', 'S', 'A', 1, 1, 'initial', 1000, 1010, 'SUCCEEDED', 'pay');
                INSERT INTO dlq_queues VALUES ('q', 3, 1000);
                INSERT INTO dlq_entries (id, queue, state, pipeline_name, pipeline_version, execution_id, stage, action,
                    exception_type, message, input_json, detail_json, redrive_count, first_failure_at, last_failure_at,
                    entered_at, updated_at)
                VALUES ('f1', 'q', 'QUEUED', 'fn:pay', 0, 'f1', 'pay', 'charge', 'X', 'm', '{}', '{}', 0, 1000, 1100, 1100, 1100);
                "#,
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        assert_eq!(store.get_execution("f1").await.unwrap().unwrap().target, Target::function("pay"));
        assert_eq!(store.get_execution("p1").await.unwrap().unwrap().target, Target::pipeline("pay", 2));
        for (target, id) in [(TargetName::function("pay"), "f1"), (TargetName::pipeline("pay"), "p1")] {
            let rows = store.list_executions(ExecutionFilter { target: Some(target.clone()), ..Default::default() }).await.unwrap();
            assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [id], "{target:?}");
            let ledger = store.list_ledger(LedgerFilter { target, ..Default::default() }).await.unwrap();
            assert_eq!(ledger.iter().map(|e| e.execution_id.as_str()).collect::<Vec<_>>(), [id]);
        }
        assert_eq!(store.get_dlq_entry("f1").await.unwrap().unwrap().source, Target::function("pay"));
        let mut again = Transition {
            execution_id: "f2".into(),
            expected_version: None,
            target: Target::function("pay"),
            status: "InProgress".into(),
            input_json: "{}".into(),
            state_json: "{}".into(),
            at: Timestamp::from_unix_ms(2000),
            ledger: vec![],
            set_timers: vec![],
            clear_timers: vec![],
            client_token: Some(ClientToken { token: "order-1".into(), fingerprint: "x".into() }),
            dlq: vec![],
        };
        let reused = store.commit(vec![again.clone()].into()).await.unwrap();
        assert_eq!(reused, vec![Err(TransitionError::TokenReused { execution_id: "f1".into(), same_request: true })]);
        again.target = Target::function("other");
        assert_eq!(store.commit(vec![again].into()).await.unwrap(), vec![Ok(1)], "tokens are per function");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn version_2_database_upgrades() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v2.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate_to(&mut conn, &path, 2).unwrap();
            assert_eq!(schema_version(&conn).unwrap(), Some(2));
            let dlq_tables: i64 = conn
                .query_row("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'dlq_%' OR name LIKE 'redrive_runs%'", [], |r| r.get(0))
                .unwrap();
            assert_eq!(dlq_tables, 0, "schema version 2 has no dead-letter tables");
            conn.execute_batch(
                r#"
                INSERT INTO pipelines VALUES ('build', 1, '{"v":1}', NULL, 1000);
                INSERT INTO pipeline_names (name) VALUES ('build');
                INSERT INTO executions VALUES ('e1', 'build', 1, 'Failed', '{"in":1}', '{"s":1}', 2, 1500, 1600);
                INSERT INTO ledger (execution_id, stage, action, series, attempt, "trigger", started_at, finished_at, outcome, pipeline_name)
                VALUES ('e1', 'Build', 'Compile', 1, 1, 'initial', 1500, 1510, 'FAILED', 'build');
                "#,
            )
            .unwrap();
        }
        {
            match SqliteStore::open_read_only(&path) {
                Err(StoreError::Schema(m)) => assert!(m.contains("schema version 2"), "{m}"),
                Err(e) => panic!("expected Schema, got {e:?}"),
                Ok(_) => panic!("a version 2 database must not open read-only"),
            }
            let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
            let raw = Connection::open(&path).unwrap();
            let versions: Vec<u32> = raw
                .prepare("SELECT version FROM schema_migrations ORDER BY version")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>(), "every later migration is applied on top of migration 2");

            assert_eq!(store.get_pipeline("build", None).await.unwrap().unwrap().version, 1);
            let e1 = store.get_execution("e1").await.unwrap().unwrap();
            assert_eq!((e1.version, e1.status.as_str()), (2, "Failed"));
            assert_eq!(store.ledger("e1").await.unwrap().len(), 1);
            assert!(store.list_dlq_queues(None, None, 0).await.unwrap().is_empty(), "no queues yet");
            assert_eq!(store.count_dlq_entries(DlqEntryFilter::default()).await.unwrap(), 0);

            // The old execution's failure enters a queue.
            let at = Timestamp::from_unix_ms(2000);
            let u = Transition {
                execution_id: "e1".into(),
                expected_version: Some(2),
                target: Target::pipeline("build", 1),
                status: "Failed".into(),
                input_json: String::new(),
                state_json: r#"{"s":2}"#.into(),
                at,
                ledger: Vec::new(),
                set_timers: Vec::new(),
                clear_timers: Vec::new(),
                client_token: None,
                dlq: vec![DlqOp::Enter(crate::DlqEntryWrite {
                    id: "e1".into(),
                    queue: "retry".into(),
                    source: Target::pipeline("build", 1),
                    execution_id: "e1".into(),
                    stage: "Build".into(),
                    action: "Compile".into(),
                    exception_type: "Step.TIMEOUT".into(),
                    message: "timed out".into(),
                    input_json: e1.input_json.clone(),
                    detail_json: "{}".into(),
                    first_failure_at: Timestamp::from_unix_ms(1510),
                    last_failure_at: Timestamp::from_unix_ms(1510),
                })],
            };
            assert_eq!(store.commit(vec![u].into()).await.unwrap(), vec![Ok(3)]);
            let entry = store.get_dlq_entry("e1").await.unwrap().unwrap();
            assert_eq!((entry.state, entry.redrive_count, entry.max_redrives), (DlqEntryState::Queued, 0, DEFAULT_MAX_REDRIVES));
            let queue = store.get_dlq_queue("retry").await.unwrap().unwrap();
            assert_eq!((queue.depth, queue.oldest_entered_at), (1, Some(at)));
            assert_eq!(store.interrupt_redrive_runs(at).await.unwrap(), 0);
        }
        drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
        SqliteStore::open_read_only(&path).expect("after the upgrade the database opens read-only");
        let raw = Connection::open(&path).unwrap();
        let count: i64 = raw.query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0)).unwrap();
        assert_eq!(count, i64::from(SCHEMA_VERSION), "reopening does not migrate again");
    }

    /// A database that stopped at schema version 1 cannot be inspected read-only
    /// until a writer upgrades it.
    #[test]
    fn read_only_refuses_version_1_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let mut conn = Connection::open(&path).unwrap();
        migrate_to(&mut conn, &path, 1).unwrap();
        drop(conn);
        match SqliteStore::open_read_only(&path) {
            Err(StoreError::Schema(m)) => assert!(m.contains("schema version 1"), "{m}"),
            Err(e) => panic!("expected Schema, got {e:?}"),
            Ok(_) => panic!("a version 1 database must not open read-only"),
        }
        drop(SqliteStore::open(&path, SqliteOptions::default()).unwrap());
        SqliteStore::open_read_only(&path).expect("after an upgrade the database opens read-only");
    }
}
