//! The writer task: group commit of every write, one transaction per group.
//! One writer serves every store of a process (the whole database's, or each
//! shard's it holds): a group may hold the requests of several shards, and its
//! transaction checks the fencing token of each of them.

use super::lock::Fence;
use super::rows::{dlq_queue_from_row, pipeline_from_row, target_columns};
use super::shards;
use super::sql::DlqEntryQuery;
use super::{MAX_WRITE_GROUPS_IN_FLIGHT, connection_broken, join_all, map_error};
use crate::{
    CommitResult, CommitStats, DEFAULT_MAX_REDRIVES, DlqEntryFilter, DlqEntryState, DlqOp, DlqQueueRecord, ExecutionFault, PipelineRecord,
    PruneCounts, PruneStep, RedriveRunRecord, StoreError, Transition, TransitionError,
};
use deadpool_postgres::{Object, Pool, Transaction};
use redrive_core::shard::ShardId;
use redrive_core::time::Timestamp;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

type Param = Box<dyn ToSql + Sync + Send>;

/// The tokens of the lock rows of a group's stores, locked (a take-over of one
/// of them waits for the group's transaction to end).
const SQL_FENCE: &str = "SELECT id, token FROM engine_lock WHERE id = ANY($1::INTEGER[]) FOR SHARE";
/// For the rest of a write transaction (see [`Writer::transact_on`]).
const SQL_GENERIC_PLANS: &str = "SET LOCAL plan_cache_mode = force_generic_plan";

const SQL_LATEST_STORED_PIPELINE: &str = "SELECT name, version, definition_json, source_dir, created_at \
     FROM pipelines WHERE name = $1 ORDER BY version DESC LIMIT 1";
const SQL_INSERT_PIPELINE: &str =
    "INSERT INTO pipelines (name, version, definition_json, source_dir, created_at) VALUES ($1, $2, $3, $4, $5)";
const SQL_PIPELINE_IS_LIVE: &str = "SELECT deleted_at IS NULL FROM pipeline_names WHERE name = $1";
const SQL_REVIVE_PIPELINE_NAME: &str =
    "INSERT INTO pipeline_names (name, deleted_at) VALUES ($1, NULL) ON CONFLICT (name) DO UPDATE SET deleted_at = NULL";
const SQL_DELETE_PIPELINE_NAME: &str = "UPDATE pipeline_names SET deleted_at = $2 WHERE name = $1 AND deleted_at IS NULL";
const SQL_DELETE_PIPELINE_TOKENS: &str = "DELETE FROM client_tokens WHERE kind = 'pipeline' AND pipeline_name = $1";

const SQL_INSERT_CLIENT_TOKEN: &str = "INSERT INTO client_tokens (kind, pipeline_name, token, fingerprint, execution_id, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";
/// A create without a client token: one row if inserted, none if the id exists.
/// A function execution's `pipeline_version` column holds 0, never read.
const SQL_INSERT_EXECUTION: &str = "INSERT INTO executions \
     (id, kind, pipeline_name, pipeline_version, status, input_json, state_json, version, created_at, updated_at, shard) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8, $9) ON CONFLICT (id) DO NOTHING RETURNING 1";
/// A create with a client token, in one statement: the token's use (checked
/// first), and whether the execution was inserted (not if the token is used or
/// the id exists). One row: `(used by, used fingerprint, inserted)`.
const SQL_INSERT_EXECUTION_WITH_TOKEN: &str = "WITH used AS (SELECT execution_id, fingerprint FROM client_tokens \
     WHERE kind = $2::TEXT AND pipeline_name = $3::TEXT AND token = $10::TEXT), \
     inserted AS (INSERT INTO executions \
     (id, kind, pipeline_name, pipeline_version, status, input_json, state_json, version, created_at, updated_at, shard) \
     SELECT $1::TEXT, $2::TEXT, $3::TEXT, $4::BIGINT, $5::TEXT, $6::TEXT, $7::TEXT, 1, $8::BIGINT, $8::BIGINT, $9::SMALLINT \
     WHERE NOT EXISTS (SELECT 1 FROM used) ON CONFLICT (id) DO NOTHING RETURNING 1) \
     SELECT (SELECT execution_id FROM used), (SELECT fingerprint FROM used), EXISTS (SELECT 1 FROM inserted)";
/// An update (compare-and-set on the version), in one statement. Target and
/// input are fixed at create. One row: the stored target if updated (for the
/// ledger rows), and the version the row had before this statement (the
/// `actual` of a conflict). PostgreSQL's HOT check compares values, so an
/// unchanged status does not touch the status indexes.
const SQL_UPDATE_EXECUTION: &str = "WITH updated AS (UPDATE executions SET status = $2, state_json = $3, \
     version = version + 1, updated_at = $4 WHERE id = $1 AND version = $5 RETURNING kind, pipeline_name) \
     SELECT (SELECT kind FROM updated), (SELECT pipeline_name FROM updated), (SELECT version FROM executions WHERE id = $1)";
const SQL_QUARANTINE_EXECUTION: &str = "UPDATE executions SET status = $2, fault_type = $3, fault_message = $4, \
     version = version + 1, updated_at = $5 WHERE id = $1 AND ($6::SMALLINT IS NULL OR shard = $6) RETURNING version";
const SQL_DELETE_EXECUTION_TIMERS: &str = "DELETE FROM timers WHERE execution_id = $1";
/// Every update of a segment (distinct executions), compare-and-set on the
/// version, in one statement. Returns the updated ones: id and stored target
/// (for the ledger rows); the others conflict ([`SQL_EXECUTION_VERSIONS`]).
/// No join on the rows it returns: a prepared statement's generic plan
/// expects a few array elements, and would nest such a join's loops (quadratic
/// in the group's size). PostgreSQL's HOT check compares values, so an
/// unchanged status does not touch the status indexes.
const SQL_UPDATE_EXECUTIONS: &str = "UPDATE executions e SET status = u.status, state_json = u.state_json, \
     version = e.version + 1, updated_at = u.at \
     FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[]) AS u(id, expected, status, state_json, at) \
     WHERE e.id = u.id AND e.version = u.expected RETURNING e.id, e.kind, e.pipeline_name";
/// The stored versions of the updates that conflicted (the `actual` of each
/// conflict; an id without a row does not exist).
const SQL_EXECUTION_VERSIONS: &str = "SELECT id, version FROM executions WHERE id = ANY($1::TEXT[])";
/// Every create without a client token of a segment (distinct ids), in one
/// statement: the ids inserted (not those that exist).
const SQL_INSERT_EXECUTIONS: &str = "INSERT INTO executions \
     (id, kind, pipeline_name, pipeline_version, status, input_json, state_json, version, created_at, updated_at, shard) \
     SELECT id, kind, pipeline_name, pipeline_version, status, input_json, state_json, 1, at, at, shard \
     FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], $8::BIGINT[], \
     $9::SMALLINT[]) AS u(id, kind, pipeline_name, pipeline_version, status, input_json, state_json, at, shard) \
     ON CONFLICT (id) DO NOTHING RETURNING id";
/// Ledger rows, `seq` in array order.
const SQL_INSERT_LEDGER_ROWS: &str = "INSERT INTO ledger (execution_id, kind, pipeline_name, stage, action, series, attempt, \"trigger\", \
     started_at, finished_at, outcome, exception_type, message, decision_json) \
     SELECT execution_id, kind, pipeline_name, stage, action, series, attempt, tr, started_at, finished_at, outcome, \
     exception_type, message, decision_json \
     FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::BIGINT[], $8::TEXT[], \
     $9::BIGINT[], $10::BIGINT[], $11::TEXT[], $12::TEXT[], $13::TEXT[], $14::TEXT[]) WITH ORDINALITY \
     AS u(execution_id, kind, pipeline_name, stage, action, series, attempt, tr, started_at, finished_at, outcome, \
     exception_type, message, decision_json, ord) ORDER BY ord";
/// Timers set: `(execution_id, key)` pairs distinct.
const SQL_UPSERT_TIMERS: &str = "INSERT INTO timers (execution_id, key, due_at, shard) \
     SELECT * FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::SMALLINT[]) \
     ON CONFLICT (execution_id, key) DO UPDATE SET due_at = excluded.due_at";
const SQL_DELETE_TIMERS: &str = "DELETE FROM timers WHERE (execution_id, key) IN (SELECT * FROM unnest($1::TEXT[], $2::TEXT[]))";

/// Creates the queue of an entry entering for the first time (a returning entry
/// keeps its queue, so nothing is created for it).
const SQL_ENSURE_QUEUE_OF_NEW_DLQ_ENTRY: &str = "INSERT INTO dlq_queues (name, max_redrives, created_at) \
     SELECT $1::TEXT, $2::BIGINT, $3::BIGINT WHERE NOT EXISTS (SELECT 1 FROM dlq_entries WHERE id = $4) \
     ON CONFLICT (name) DO NOTHING";
/// [`DlqOp::Enter`]: a new entry, or a returning one back in its queue with its
/// `id`, `queue`, `first_failure_at`, `redrive_count`, `redriven_to` and
/// `redriven_at` kept.
const SQL_ENTER_DLQ_ENTRY: &str = "INSERT INTO dlq_entries (id, queue, state, pipeline_name, pipeline_version, \
     execution_id, stage, action, exception_type, message, input_json, detail_json, redrive_count, first_failure_at, \
     last_failure_at, entered_at, redriven_to, redriven_at, resolved_at, updated_at, kind) \
     VALUES ($1, $2, 'QUEUED', $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $13, $14, NULL, NULL, NULL, $14, $15) \
     ON CONFLICT (id) DO UPDATE SET state = 'QUEUED', pipeline_name = excluded.pipeline_name, kind = excluded.kind, \
     pipeline_version = excluded.pipeline_version, execution_id = excluded.execution_id, stage = excluded.stage, \
     action = excluded.action, exception_type = excluded.exception_type, message = excluded.message, \
     input_json = excluded.input_json, detail_json = excluded.detail_json, last_failure_at = excluded.last_failure_at, \
     entered_at = excluded.entered_at, resolved_at = NULL, updated_at = excluded.updated_at";
/// [`DlqOp::Take`]: matches nothing unless the entry is `QUEUED`.
const SQL_TAKE_DLQ_ENTRY: &str = "UPDATE dlq_entries SET state = 'REDRIVEN', redrive_count = redrive_count + 1, \
     redriven_to = $2, redriven_at = $3, updated_at = $3 WHERE id = $1 AND state = 'QUEUED'";
/// [`DlqOp::Resolve`]: matches nothing if the entry was purged.
const SQL_RESOLVE_DLQ_ENTRY: &str = "UPDATE dlq_entries SET state = 'RESOLVED', resolved_at = $2, updated_at = $2 WHERE id = $1";

const SQL_ENSURE_DLQ_QUEUE: &str =
    "INSERT INTO dlq_queues (name, max_redrives, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING";
const SQL_CONFIGURE_DLQ_QUEUE: &str = "INSERT INTO dlq_queues (name, max_redrives, created_at) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET max_redrives = excluded.max_redrives RETURNING name, max_redrives, created_at";
const SQL_GET_DLQ_QUEUE_RECORD: &str = "SELECT name, max_redrives, created_at FROM dlq_queues WHERE name = $1";

const SQL_INSERT_REDRIVE_RUN: &str = "INSERT INTO redrive_runs \
     (id, schedule, status, dry_run, started_at, finished_at, request_json, summary_json) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING";
const SQL_UPDATE_REDRIVE_RUN: &str = "UPDATE redrive_runs SET status = $2, finished_at = $3, summary_json = $4 WHERE id = $1";
const SQL_INTERRUPT_REDRIVE_RUNS: &str = "UPDATE redrive_runs SET status = 'INTERRUPTED', finished_at = $1 WHERE status = 'RUNNING'";

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

#[derive(Default)]
pub(super) struct Stats {
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

    pub(super) fn snapshot(&self) -> CommitStats {
        CommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            transitions: self.transitions.load(Ordering::Relaxed),
            ledger_rows: self.ledger_rows.load(Ordering::Relaxed),
            commit_micros_total: self.commit_micros_total.load(Ordering::Relaxed),
        }
    }
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// One caller's write, answered after the group containing it commits.
pub(super) enum WriteRequest {
    /// The transitions at the indexes in `valid` (the others were refused by
    /// [`crate::validate::check_transition`] and are answered by the caller).
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
        /// A shard's store quarantines only that shard's executions.
        shard: Option<i16>,
        reply: oneshot::Sender<Result<Option<u64>, StoreError>>,
    },
    /// A token or audit write; answers a count, a `seq`, or why it was refused.
    Auth {
        write: crate::AuthWrite,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// A bulk stage retry operation or result write (answered like `Auth`).
    Bulk {
        write: crate::bulk::BulkWrite,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Dependency states to upsert; answers how many.
    Dependencies {
        records: Vec<crate::DependencyRecord>,
        /// A shard's store writes its shard's records (`None`: the whole database's).
        shard: Option<i16>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    Prune {
        step: PruneStep,
        reply: oneshot::Sender<Result<PruneCounts, StoreError>>,
    },
}

/// A request and the store that sent it: the fence whose token guards it and
/// the statistics that count it.
pub(super) struct Queued {
    pub(super) request: WriteRequest,
    pub(super) fence: Arc<Fence>,
    pub(super) stats: Arc<Stats>,
}

/// Which pipeline write: the three differ only in when a new version is inserted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PipelineMode {
    Put,
    Create,
    Update,
}

pub(super) struct PipelineWrite {
    pub(super) mode: PipelineMode,
    pub(super) name: String,
    pub(super) definition_json: String,
    pub(super) source_dir: Option<String>,
    pub(super) now: Timestamp,
}

pub(super) struct DlqQueueWrite {
    pub(super) name: String,
    pub(super) max_redrives: Option<u32>,
    pub(super) now: Timestamp,
}

pub(super) enum RedriveRunWrite {
    Create(RedriveRunRecord),
    Update(RedriveRunRecord),
}

impl WriteRequest {
    fn weight(&self) -> usize {
        match self {
            WriteRequest::Commit { valid, .. } => valid.len(),
            WriteRequest::Prune { step, .. } => step.executions.len().max(1),
            _ => 1,
        }
    }

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
                let _ = reply.send(queue);
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

    fn fail(self, error: &StoreError) {
        let e = error.clone();
        match self {
            WriteRequest::Commit { reply, .. } => drop(reply.send(Err(e))),
            WriteRequest::Pipeline { reply, .. } => drop(reply.send(Err(e))),
            WriteRequest::DeletePipeline { reply, .. } => drop(reply.send(Err(e))),
            WriteRequest::DlqQueue { reply, .. } => drop(reply.send(Err(e))),
            WriteRequest::PurgeDlq { reply, .. }
            | WriteRequest::InterruptRedriveRuns { reply, .. }
            | WriteRequest::Dependencies { reply, .. } => drop(reply.send(Err(e))),
            WriteRequest::RedriveRun { reply, .. } => drop(reply.send(Err(e))),
            WriteRequest::Quarantine { reply, .. } => drop(reply.send(Err(e))),
            WriteRequest::Auth { reply, .. } | WriteRequest::Bulk { reply, .. } => drop(reply.send(Err(e))),
            WriteRequest::Prune { reply, .. } => drop(reply.send(Err(e))),
        }
    }
}

/// What one request produced inside a group transaction.
enum Applied {
    Commit(CommitResult),
    Pipeline(Result<PipelineRecord, StoreError>),
    Deleted(bool),
    DlqQueue(Result<DlqQueueRecord, StoreError>),
    Counted(u64),
    RedriveRun(Result<(), StoreError>),
    Quarantined(Option<u64>),
    Auth(Result<u64, StoreError>),
    Pruned(PruneCounts),
}

/// Why a group transaction failed (nothing of it is committed).
enum GroupFailure {
    /// A PostgreSQL error, with the request(s) whose statement failed.
    Pg { error: tokio_postgres::Error, culprit: Culprit },
    /// No request of the group may be written (the connection pool failed).
    Store(StoreError),
    /// The token of a store with requests in the group is not its own any
    /// more (that store is lost) or it may not write now: nothing was written,
    /// and the group is applied again without that store's requests.
    Fenced,
}

impl From<tokio_postgres::Error> for GroupFailure {
    fn from(error: tokio_postgres::Error) -> Self {
        GroupFailure::Pg { error, culprit: Culprit::Unknown }
    }
}

/// Which request of a group a failed statement belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Culprit {
    /// The request at this index of the group.
    Request(usize),
    /// A statement batching the transitions of several requests: one of them.
    Batch,
    /// None in particular: before or after the requests, e.g. at `COMMIT`.
    Unknown,
}

type PgResult<T> = Result<T, tokio_postgres::Error>;

/// Whether `e` is caused by the data of one request (the same request would
/// fail in any group: a constraint, a trigger raising, a value out of range)
/// rather than by the server or the connection.
fn is_request_specific(e: &tokio_postgres::Error) -> bool {
    let Some(code) = e.code() else { return false };
    let class = &code.code()[..2];
    matches!(class, "22" | "23" | "P0" | "54" | "2F" | "38" | "39" | "44" | "27" | "09")
}

// ---------------------------------------------------------------------------
// The writer
// ---------------------------------------------------------------------------

pub(super) struct Writer {
    pub(super) pool: Pool,
    pub(super) max_batch: usize,
    pub(super) db: String,
}

/// Which store sent a request (its fence is its own).
fn store_of(queued: &Queued) -> usize {
    Arc::as_ptr(&queued.fence) as usize
}

/// The stores with requests in `group`.
fn stores_of(group: &[Queued]) -> Vec<usize> {
    let mut stores: Vec<usize> = group.iter().map(store_of).collect();
    stores.sort_unstable();
    stores.dedup();
    stores
}

/// The requests taken off the channel and not yet in a group, in arrival order.
#[derive(Default)]
struct Waiting {
    queue: VecDeque<Queued>,
    /// The sum of their weights.
    weight: usize,
}

impl Waiting {
    fn push(&mut self, queued: Queued) {
        self.weight += queued.request.weight();
        self.queue.push_back(queued);
    }

    /// The next group: the waiting requests, in order, of the stores not in
    /// `busy`, up to `max_batch` transitions (the first one whatever its
    /// weight); it stops at the first that does not fit, so every store's
    /// requests stay in order. Abandoned requests are dropped.
    fn take_group(&mut self, busy: &HashSet<usize>, max_batch: usize) -> Vec<Queued> {
        let (mut group, mut weight, mut full) = (Vec::new(), 0, false);
        let mut rest = VecDeque::with_capacity(self.queue.len());
        for queued in self.queue.drain(..) {
            if queued.request.abandoned() {
                continue;
            }
            let w = queued.request.weight();
            if full || busy.contains(&store_of(&queued)) {
                rest.push_back(queued);
            } else if !group.is_empty() && weight + w > max_batch {
                full = true;
                rest.push_back(queued);
            } else {
                weight += w;
                group.push(queued);
            }
        }
        self.weight = rest.iter().map(|q| q.request.weight()).sum();
        self.queue = rest;
        group
    }
}

impl Writer {
    /// Serves requests until every sender is gone. Requests wait in arrival
    /// order (at most a group's weight of them are taken off the channel); a
    /// group is formed whenever fewer than [`MAX_WRITE_GROUPS_IN_FLIGHT`] are in
    /// flight, of the waiting requests whose store has none in flight.
    pub(super) async fn run(self, mut rx: mpsc::Receiver<Queued>) {
        let writer = Arc::new(self);
        let mut waiting = Waiting::default();
        let mut busy: HashSet<usize> = HashSet::new();
        let mut in_flight: JoinSet<Vec<usize>> = JoinSet::new();
        let mut open = true;
        loop {
            while in_flight.len() < MAX_WRITE_GROUPS_IN_FLIGHT {
                let group = waiting.take_group(&busy, writer.max_batch);
                if group.is_empty() {
                    break;
                }
                let stores = stores_of(&group);
                busy.extend(stores.iter().copied());
                let writer = Arc::clone(&writer);
                in_flight.spawn(async move {
                    writer.apply_group(group).await;
                    stores
                });
            }
            if !open && in_flight.is_empty() {
                break;
            }
            // With nothing in flight every waiting request was just taken.
            let room = waiting.weight < writer.max_batch || in_flight.is_empty();
            tokio::select! {
                received = rx.recv(), if open && room => match received {
                    Some(queued) => {
                        waiting.push(queued);
                        while waiting.weight < writer.max_batch && let Ok(queued) = rx.try_recv() {
                            waiting.push(queued);
                        }
                    }
                    None => open = false,
                },
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => match done {
                    Ok(stores) => {
                        for store in stores {
                            busy.remove(&store);
                        }
                    }
                    // A group that panicked ends the writer, as it always did.
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    Err(_) => break,
                },
            }
        }
    }

    /// Applies `group` in one transaction and answers every request in it.
    /// The requests of a store that may not write are refused alone (see
    /// [`admit`]). If the transaction fails nothing of it is committed and
    /// every request gets the error — except that a request whose own data
    /// makes the server fail (a constraint, a trigger) is answered with that
    /// error alone and the others are applied again without it.
    async fn apply_group(&self, group: Vec<Queued>) {
        let mut pending: VecDeque<Vec<Queued>> = VecDeque::from([group]);
        while let Some(group) = pending.pop_front() {
            let mut group = admit(group);
            if group.is_empty() {
                continue;
            }
            let started = Instant::now();
            match self.transact(&group).await {
                Ok(outcomes) => {
                    record_stats(&group, &outcomes, started.elapsed());
                    for (queued, outcome) in group.into_iter().zip(outcomes) {
                        queued.request.answer(outcome);
                    }
                }
                // The stores fenced off are refused at the next admission.
                Err(GroupFailure::Fenced) => pending.push_front(group),
                Err(GroupFailure::Store(error)) => {
                    for queued in group {
                        queued.request.fail(&error);
                    }
                }
                Err(GroupFailure::Pg { error, culprit }) => {
                    let store_error = map_error(&self.db, &error);
                    if is_request_specific(&error) {
                        match culprit {
                            Culprit::Request(culprit) => {
                                // The request being applied failed: it fails
                                // alone, the others are retried without it.
                                group.remove(culprit).request.fail(&store_error);
                                if !group.is_empty() {
                                    pending.push_front(group);
                                }
                                continue;
                            }
                            Culprit::Batch if group.len() > 1 => {
                                // One of the requests of a batched statement:
                                // halve the group until it is found (the halves
                                // commit in order).
                                let second = group.split_off(group.len() / 2);
                                pending.push_front(second);
                                pending.push_front(group);
                                continue;
                            }
                            Culprit::Unknown if group.len() > 1 => {
                                // Failed at COMMIT (a deferred check): retry each alone.
                                for (k, queued) in group.into_iter().enumerate() {
                                    pending.insert(k, vec![queued]);
                                }
                                continue;
                            }
                            _ => {}
                        }
                    }
                    for queued in group {
                        queued.request.fail(&store_error);
                    }
                }
            }
        }
    }

    /// Takes a pooled connection and runs the group in one transaction. A
    /// connection that failed is discarded rather than returned to the pool.
    async fn transact(&self, group: &[Queued]) -> Result<Vec<Applied>, GroupFailure> {
        let mut client = self.pool.get().await.map_err(|e| GroupFailure::Store(super::pool_error(&self.db, e)))?;
        let result = self.transact_on(&mut client, group).await;
        if let Err(GroupFailure::Pg { error, .. }) = &result
            && connection_broken(error, &client)
        {
            drop(Object::take(client));
        }
        result
    }

    async fn transact_on(&self, client: &mut Object, group: &[Queued]) -> Result<Vec<Applied>, GroupFailure> {
        let tx = client.transaction().await?;
        check_fences(&tx, group).await?;
        // The batched statements take arrays of any length: a custom plan
        // (the first five executions of a statement on each connection) costs
        // planning the arrays' contents and may hash-join a whole table; the
        // generic plan looks rows up by key.
        tx.batch_execute(SQL_GENERIC_PLANS).await?;
        let mut outcomes = Vec::with_capacity(group.len());
        let mut index = 0;
        while index < group.len() {
            // A run of commit requests: their transitions are applied together.
            let mut items: Vec<(usize, &Transition)> = Vec::new();
            let mut end = index;
            while let Some(WriteRequest::Commit { transitions, valid, .. }) = group.get(end).map(|q| &q.request) {
                items.extend(valid.iter().map(|&i| (end, &transitions[i])));
                end += 1;
            }
            if end > index {
                let mut results =
                    apply_transitions(&tx, &items).await.map_err(|(error, culprit)| GroupFailure::Pg { error, culprit })?.into_iter();
                for queued in &group[index..end] {
                    if let WriteRequest::Commit { valid, .. } = &queued.request {
                        outcomes.push(Applied::Commit(results.by_ref().take(valid.len()).collect()));
                    }
                }
                index = end;
                continue;
            }
            let outcome = apply_request(&tx, &group[index].request)
                .await
                .map_err(|error| GroupFailure::Pg { error, culprit: Culprit::Request(index) })?;
            outcomes.push(outcome);
            index += 1;
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// The requests of `group` whose store may write now; the others are refused
/// with the reason (lost for good, reconnecting, not leading).
fn admit(group: Vec<Queued>) -> Vec<Queued> {
    let mut admitted = Vec::with_capacity(group.len());
    for queued in group {
        match queued.fence.writable_token() {
            Ok(_) => admitted.push(queued),
            Err(error) => queued.request.fail(&error),
        }
    }
    admitted
}

/// The first statement of a group's transaction: reads the token of every
/// store with requests in the group `FOR SHARE` (a take-over waits until the
/// transaction ends) and compares it with the store's own. A store whose token
/// changed is lost for good ([`Fence::check_token`]); then the group is
/// [`GroupFailure::Fenced`] and nothing of it is written.
async fn check_fences(tx: &Transaction<'_>, group: &[Queued]) -> Result<(), GroupFailure> {
    let mut fences: Vec<&Arc<Fence>> = Vec::new();
    for queued in group {
        if !fences.iter().any(|f| Arc::ptr_eq(f, &queued.fence)) {
            fences.push(&queued.fence);
        }
    }
    let mut rows: Vec<i32> = fences.iter().map(|f| f.slot.row).collect();
    rows.sort_unstable();
    rows.dedup();
    let st = tx.prepare_cached(SQL_FENCE).await?;
    let stored: HashMap<i32, i64> = tx.query(&st, &[&rows]).await?.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut fenced = false;
    for fence in fences {
        fenced |= fence.check_token(stored.get(&fence.slot.row).copied()).is_err();
    }
    if fenced { Err(GroupFailure::Fenced) } else { Ok(()) }
}

/// Counts a committed group in the statistics of each store with requests in
/// it: one commit, and its own accepted transitions and their ledger rows.
fn record_stats(group: &[Queued], outcomes: &[Applied], elapsed: Duration) {
    let mut counted: Vec<(&Arc<Stats>, u64, u64)> = Vec::new();
    for (queued, outcome) in group.iter().zip(outcomes) {
        let index = match counted.iter().position(|(s, _, _)| Arc::ptr_eq(s, &queued.stats)) {
            Some(index) => index,
            None => {
                counted.push((&queued.stats, 0, 0));
                counted.len() - 1
            }
        };
        if let (WriteRequest::Commit { transitions, valid, .. }, Applied::Commit(results)) = (&queued.request, outcome) {
            for (&i, r) in valid.iter().zip(results) {
                if r.is_ok() {
                    counted[index].1 += 1;
                    counted[index].2 += transitions[i].ledger.len() as u64;
                }
            }
        }
    }
    for (stats, applied, ledger_rows) in counted {
        stats.record(applied, ledger_rows, elapsed);
    }
}

async fn apply_request(tx: &Transaction<'_>, request: &WriteRequest) -> PgResult<Applied> {
    Ok(match request {
        WriteRequest::Commit { .. } => unreachable!("commit requests are applied by apply_transitions"),
        WriteRequest::Pipeline { write, .. } => Applied::Pipeline(write_pipeline(tx, write).await?),
        WriteRequest::DeletePipeline { name, now, .. } => Applied::Deleted(delete_pipeline(tx, name, *now).await?),
        WriteRequest::DlqQueue { write, .. } => Applied::DlqQueue(write_dlq_queue(tx, write).await?),
        WriteRequest::PurgeDlq { filter, .. } => Applied::Counted(purge_dlq_entries(tx, filter).await?),
        WriteRequest::RedriveRun { write, .. } => Applied::RedriveRun(write_redrive_run(tx, write).await?),
        WriteRequest::InterruptRedriveRuns { now, .. } => {
            let st = tx.prepare_cached(SQL_INTERRUPT_REDRIVE_RUNS).await?;
            Applied::Counted(tx.execute(&st, &[&now.unix_ms()]).await?)
        }
        WriteRequest::Quarantine { id, status, fault, at, shard, .. } => {
            Applied::Quarantined(quarantine(tx, id, status, fault, *at, *shard).await?)
        }
        WriteRequest::Auth { write, .. } => Applied::Auth(super::auth::apply(tx, write).await?),
        WriteRequest::Bulk { write, .. } => Applied::Auth(super::bulk::apply(tx, write).await?),
        WriteRequest::Dependencies { records, shard, .. } => Applied::Counted(super::dependencies::put(tx, records, *shard).await?),
        WriteRequest::Prune { step, .. } => Applied::Pruned(prune(tx, step).await?),
    })
}

/// Of the executions named (id, version), those that may go now — still
/// finished, at that version, named by no dead-letter entry — locked.
const SQL_PRUNABLE_EXECUTIONS: &str = "SELECT e.id FROM executions e
   JOIN unnest($1::text[], $2::bigint[]) AS p (id, version) ON e.id = p.id AND e.version = p.version
  WHERE e.status IN ('Succeeded', 'Failed', 'Stopped', 'Superseded')
    AND NOT EXISTS (SELECT 1 FROM dlq_entries d WHERE d.execution_id = e.id)
    AND NOT EXISTS (SELECT 1 FROM dlq_entries d WHERE d.redriven_to = e.id)
  ORDER BY e.id
    FOR UPDATE OF e";
const SQL_MARK_LEDGER_PRUNABLE: &str = "INSERT INTO ledger_prunable (execution_id) SELECT unnest($1::text[])";
const SQL_DELETE_LEDGER: &str = "DELETE FROM ledger WHERE execution_id = ANY($1::text[])";
const SQL_UNMARK_LEDGER_PRUNABLE: &str = "DELETE FROM ledger_prunable WHERE execution_id = ANY($1::text[])";
const SQL_DELETE_TIMERS_OF: &str = "DELETE FROM timers WHERE execution_id = ANY($1::text[])";
const SQL_DELETE_TOKENS_OF: &str = "DELETE FROM client_tokens WHERE execution_id = ANY($1::text[])";
const SQL_DELETE_EXECUTIONS: &str = "DELETE FROM executions WHERE id = ANY($1::text[])";
/// `RESOLVED` entries resolved before $1 (entered before it too: `dlq_entries_state`).
pub(super) const SQL_PRUNE_DLQ_ENTRIES: &str = "DELETE FROM dlq_entries WHERE id IN (
    SELECT id FROM dlq_entries WHERE state = 'RESOLVED' AND entered_at < $1 AND resolved_at < $1 ORDER BY entered_at, id LIMIT $2)";
/// Finished runs that finished before $1 (started before it too: `redrive_runs_started`).
pub(super) const SQL_PRUNE_REDRIVE_RUNS: &str = "DELETE FROM redrive_runs WHERE id IN (
    SELECT id FROM redrive_runs WHERE started_at < $1 AND status <> 'RUNNING' AND finished_at < $1 ORDER BY started_at, id LIMIT $2)";

/// Audit records written before $1, oldest first (`seq` follows `at`).
const SQL_PRUNE_AUDIT: &str = "DELETE FROM audit_log WHERE seq IN (SELECT seq FROM audit_log WHERE at < $1 ORDER BY seq LIMIT $2)";

/// One retention step ([`PruneStep`]) inside the group's transaction.
async fn prune(tx: &Transaction<'_>, step: &PruneStep) -> PgResult<PruneCounts> {
    let mut counts = PruneCounts::default();
    if !step.executions.is_empty() {
        let ids: Vec<&str> = step.executions.iter().map(|e| e.id.as_str()).collect();
        let versions: Vec<i64> = step.executions.iter().map(|e| e.version as i64).collect();
        let st = tx.prepare_cached(SQL_PRUNABLE_EXECUTIONS).await?;
        let going: Vec<String> = tx.query(&st, &[&ids, &versions]).await?.iter().map(|r| r.get(0)).collect();
        if !going.is_empty() {
            let mut deleted = Vec::with_capacity(6);
            for sql in [
                SQL_MARK_LEDGER_PRUNABLE,
                SQL_DELETE_LEDGER,
                SQL_UNMARK_LEDGER_PRUNABLE,
                SQL_DELETE_TIMERS_OF,
                SQL_DELETE_TOKENS_OF,
                SQL_DELETE_EXECUTIONS,
            ] {
                let st = tx.prepare_cached(sql).await?;
                deleted.push(tx.execute(&st, &[&going]).await?);
            }
            counts.ledger_rows = deleted[1];
            counts.executions = deleted[5];
        }
    }
    let limit = step.limit as i64;
    if let Some(before) = step.resolved_entries_before {
        let st = tx.prepare_cached(SQL_PRUNE_DLQ_ENTRIES).await?;
        counts.dlq_entries = tx.execute(&st, &[&before.unix_ms(), &limit]).await?;
    }
    if let Some(before) = step.runs_finished_before {
        let st = tx.prepare_cached(SQL_PRUNE_REDRIVE_RUNS).await?;
        counts.redrive_runs = tx.execute(&st, &[&before.unix_ms(), &limit]).await?;
    }
    if let Some(before) = step.bulk_retries_finished_before {
        let st = tx.prepare_cached(super::bulk::SQL_PRUNE).await?;
        counts.bulk_retries = tx.execute(&st, &[&before.unix_ms(), &limit]).await?;
    }
    if let Some(before) = step.audit_before {
        let st = tx.prepare_cached(SQL_PRUNE_AUDIT).await?;
        counts.audit_records = tx.execute(&st, &[&before.unix_ms(), &limit]).await?;
    }
    Ok(counts)
}

/// One statement of a pipeline, tagged with the request(s) it belongs to (to
/// tell which request made the server fail).
struct Op {
    sql: &'static str,
    params: Vec<Param>,
    culprit: Culprit,
}

/// A result whose error names the request(s) whose statement failed.
type Tagged<T> = Result<T, (tokio_postgres::Error, Culprit)>;

/// Statements sent together in one pipeline at most.
const PIPELINE_CHUNK: usize = 1024;

/// Runs statements in order, pipelined (tokio-postgres sends queries polled
/// together without waiting; the server runs them in order). Returns each
/// one's rows, or the first error in order with its culprit.
async fn pipeline_query(tx: &Transaction<'_>, ops: &[Op]) -> Tagged<Vec<Vec<Row>>> {
    let mut out = Vec::with_capacity(ops.len());
    for chunk in ops.chunks(PIPELINE_CHUNK) {
        let mut statements = Vec::with_capacity(chunk.len());
        for op in chunk {
            statements.push(tx.prepare_cached(op.sql).await.map_err(|e| (e, op.culprit))?);
        }
        let params: Vec<Vec<&(dyn ToSql + Sync)>> =
            chunk.iter().map(|op| op.params.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect()).collect();
        let futures: Vec<_> = statements.iter().zip(&params).map(|(st, p)| tx.query(st, p.as_slice())).collect();
        for (result, op) in join_all(futures).await.into_iter().zip(chunk) {
            out.push(result.map_err(|e| (e, op.culprit))?);
        }
    }
    Ok(out)
}

/// Like [`pipeline_query`], returning the rows each statement affected.
async fn pipeline_execute(tx: &Transaction<'_>, ops: &[Op]) -> Tagged<Vec<u64>> {
    let mut out = Vec::with_capacity(ops.len());
    for chunk in ops.chunks(PIPELINE_CHUNK) {
        let mut statements = Vec::with_capacity(chunk.len());
        for op in chunk {
            statements.push(tx.prepare_cached(op.sql).await.map_err(|e| (e, op.culprit))?);
        }
        let params: Vec<Vec<&(dyn ToSql + Sync)>> =
            chunk.iter().map(|op| op.params.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect()).collect();
        let futures: Vec<_> = statements.iter().zip(&params).map(|(st, p)| tx.execute(st, p.as_slice())).collect();
        for (result, op) in join_all(futures).await.into_iter().zip(chunk) {
            out.push(result.map_err(|e| (e, op.culprit))?);
        }
    }
    Ok(out)
}

/// Untagged statements of one request, pipelined.
async fn execute_pipelined(tx: &Transaction<'_>, ops: Vec<(&'static str, Vec<Param>)>) -> PgResult<Vec<u64>> {
    let ops: Vec<Op> = ops.into_iter().map(|(sql, params)| Op { sql, params, culprit: Culprit::Unknown }).collect();
    pipeline_execute(tx, &ops).await.map_err(|(e, _)| e)
}

/// A transition whose execution row was written: what its other writes need.
struct Accepted {
    new_version: u64,
    /// The execution's own target (an update's `target` is ignored).
    kind: String,
    name: String,
}

/// Applies the transitions of consecutive commit requests, in order, with the
/// semantics of [`Transition`] (each refused alone), in as few statements as
/// the rules allow. Transitions are cut into segments that can be pipelined as
/// two phases — every execution row first, then the other writes of the
/// accepted ones — with the results of running them one by one:
/// - a segment never holds the same execution twice (its execution rows are
///   written by batched statements, which see none of each other's rows), nor
///   two creates with the same client token (the second must see the first's
///   token);
/// - a transition with a dead-letter `Take` (the only refusal after its
///   execution row is written) is applied alone in a `SAVEPOINT`.
///
/// So the execution rows of a segment are independent of each other: one
/// `UPDATE … FROM unnest(…)` writes every update (compare-and-set), one
/// `INSERT … SELECT … FROM unnest(…)` every create without a client token, and
/// a create with a token keeps its own statement. The first phase reads only
/// `executions` and `client_tokens`, which the second phase of the same
/// segment does not write (tokens aside, excluded above). The second phase
/// writes each accepted transition's client token and dead-letter ops (its own
/// statements, in order), then every ledger row of the segment in one
/// statement (`seq` in transition order, then entry order), every cleared
/// timer in one, every set timer in one (cleared before set; the timers of
/// distinct executions are distinct rows). So the order of the writes is the
/// order of the transitions, and a group costs a handful of statements per
/// segment whatever its size. Errors come with the request whose statement
/// failed ([`Culprit::Batch`] for a batched statement).
async fn apply_transitions(tx: &Transaction<'_>, items: &[(usize, &Transition)]) -> Tagged<Vec<Result<u64, TransitionError>>> {
    let mut results = Vec::with_capacity(items.len());
    let mut segment: Vec<(usize, &Transition)> = Vec::new();
    let mut tokens: HashSet<(&str, &str, &str)> = HashSet::new();
    let mut executions: HashSet<&str> = HashSet::new();
    for &(request, t) in items {
        let take = t.dlq.iter().any(|op| matches!(op, DlqOp::Take { .. }));
        let token = t
            .client_token
            .as_ref()
            .filter(|_| t.expected_version.is_none())
            .map(|c| (t.target.kind().as_str(), t.target.name(), c.token.as_str()));
        if take || token.is_some_and(|key| tokens.contains(&key)) || executions.contains(t.execution_id.as_str()) {
            results.extend(apply_segment(tx, &segment).await?);
            segment.clear();
            tokens.clear();
            executions.clear();
        }
        if take {
            results.push(apply_alone(tx, request, t).await.map_err(|e| (e, Culprit::Request(request)))?);
            continue;
        }
        tokens.extend(token);
        executions.insert(t.execution_id.as_str());
        segment.push((request, t));
    }
    results.extend(apply_segment(tx, &segment).await?);
    Ok(results)
}

/// The two pipelined phases of a segment (see [`apply_transitions`]).
async fn apply_segment(tx: &Transaction<'_>, segment: &[(usize, &Transition)]) -> Tagged<Vec<Result<u64, TransitionError>>> {
    if segment.is_empty() {
        return Ok(Vec::new());
    }
    let batch = |e| (e, Culprit::Batch);
    let mut updates = UpdateColumns::default();
    let mut creates = CreateColumns::default();
    let mut token_creates = Vec::new();
    for &(request, t) in segment {
        match (t.expected_version, &t.client_token) {
            (Some(expected), _) => updates.push(t, expected),
            (None, None) => creates.push(t),
            (None, Some(_)) => token_creates.push(execution_row_op(request, t)),
        }
    }
    let (has_updates, has_creates) = (!updates.id.is_empty(), !creates.id.is_empty());
    let mut ops = Vec::with_capacity(2 + token_creates.len());
    if has_updates {
        ops.push(Op { sql: SQL_UPDATE_EXECUTIONS, params: updates.into_params(), culprit: Culprit::Batch });
    }
    if has_creates {
        ops.push(Op { sql: SQL_INSERT_EXECUTIONS, params: creates.into_params(), culprit: Culprit::Batch });
    }
    ops.extend(token_creates);
    let mut rows = pipeline_query(tx, &ops).await?.into_iter();
    // Each updated execution's stored kind and name.
    let mut updated: HashMap<String, (String, String)> = HashMap::new();
    if has_updates {
        for row in rows.next().unwrap_or_default() {
            updated.insert(row.try_get(0).map_err(batch)?, (row.try_get(1).map_err(batch)?, row.try_get(2).map_err(batch)?));
        }
    }
    let mut inserted: HashSet<String> = HashSet::new();
    if has_creates {
        for row in rows.next().unwrap_or_default() {
            inserted.insert(row.try_get(0).map_err(batch)?);
        }
    }
    // The versions of the conflicting updates (not changed by this segment:
    // its executions are distinct).
    let conflicting: Vec<String> = segment
        .iter()
        .filter(|(_, t)| t.expected_version.is_some() && !updated.contains_key(t.execution_id.as_str()))
        .map(|(_, t)| t.execution_id.clone())
        .collect();
    let mut actual: HashMap<String, i64> = HashMap::new();
    if !conflicting.is_empty() {
        let st = tx.prepare_cached(SQL_EXECUTION_VERSIONS).await.map_err(batch)?;
        for row in tx.query(&st, &[&conflicting]).await.map_err(batch)? {
            actual.insert(row.try_get(0).map_err(batch)?, row.try_get(1).map_err(batch)?);
        }
    }
    let mut verdicts = Vec::with_capacity(segment.len());
    for &(request, t) in segment {
        let (kind, name, _) = target_columns(&t.target);
        let verdict = match (t.expected_version, &t.client_token) {
            (Some(expected), _) => match updated.get(t.execution_id.as_str()) {
                Some((kind, name)) => Ok(Accepted { new_version: expected + 1, kind: kind.clone(), name: name.clone() }),
                None => Err(TransitionError::VersionConflict {
                    execution_id: t.execution_id.clone(),
                    expected,
                    actual: actual.get(t.execution_id.as_str()).map(|&v| v as u64),
                }),
            },
            (None, None) if inserted.contains(t.execution_id.as_str()) => {
                Ok(Accepted { new_version: 1, kind: kind.to_owned(), name: name.to_owned() })
            }
            (None, None) => Err(TransitionError::AlreadyExists(t.execution_id.clone())),
            (None, Some(_)) => judge(t, &rows.next().unwrap_or_default()).map_err(|e| (e, Culprit::Request(request)))?,
        };
        verdicts.push(verdict);
    }
    let mut ops = Vec::new();
    let mut accepted = Vec::new();
    for (&(request, t), verdict) in segment.iter().zip(&verdicts) {
        if let Ok(a) = verdict {
            side_writes(request, t, a, &mut ops);
            accepted.push((t, a));
        }
    }
    batched_writes(&accepted, Culprit::Batch, &mut ops);
    pipeline_execute(tx, &ops).await?;
    Ok(verdicts.into_iter().map(|v| v.map(|a| a.new_version)).collect())
}

/// The columns of a segment's updates, for [`SQL_UPDATE_EXECUTIONS`].
#[derive(Default)]
struct UpdateColumns {
    id: Vec<String>,
    expected: Vec<i64>,
    status: Vec<String>,
    state_json: Vec<String>,
    at: Vec<i64>,
}

impl UpdateColumns {
    fn push(&mut self, t: &Transition, expected: u64) {
        self.id.push(t.execution_id.clone());
        // A version beyond i64 is never stored: -1 matches no row.
        self.expected.push(i64::try_from(expected).unwrap_or(-1));
        self.status.push(t.status.clone());
        self.state_json.push(t.state_json.clone());
        self.at.push(t.at.unix_ms());
    }

    fn into_params(self) -> Vec<Param> {
        vec![Box::new(self.id), Box::new(self.expected), Box::new(self.status), Box::new(self.state_json), Box::new(self.at)]
    }
}

/// The columns of a segment's creates without a client token, for [`SQL_INSERT_EXECUTIONS`].
#[derive(Default)]
struct CreateColumns {
    id: Vec<String>,
    kind: Vec<String>,
    name: Vec<String>,
    version: Vec<i64>,
    status: Vec<String>,
    input_json: Vec<String>,
    state_json: Vec<String>,
    at: Vec<i64>,
    shard: Vec<i16>,
}

impl CreateColumns {
    fn push(&mut self, t: &Transition) {
        let (kind, name, version) = target_columns(&t.target);
        self.id.push(t.execution_id.clone());
        self.kind.push(kind.to_owned());
        self.name.push(name.to_owned());
        self.version.push(version);
        self.status.push(t.status.clone());
        self.input_json.push(t.input_json.clone());
        self.state_json.push(t.state_json.clone());
        self.at.push(t.at.unix_ms());
        self.shard.push(shards::column(ShardId::of(name)));
    }

    fn into_params(self) -> Vec<Param> {
        vec![
            Box::new(self.id),
            Box::new(self.kind),
            Box::new(self.name),
            Box::new(self.version),
            Box::new(self.status),
            Box::new(self.input_json),
            Box::new(self.state_json),
            Box::new(self.at),
            Box::new(self.shard),
        ]
    }
}

/// A transition with a dead-letter `Take`, alone in a `SAVEPOINT`: a refused
/// `Take` undoes the execution row and the ops before it.
async fn apply_alone(tx: &Transaction<'_>, request: usize, t: &Transition) -> PgResult<Result<u64, TransitionError>> {
    let untag = |(e, _): (tokio_postgres::Error, Culprit)| e;
    tx.batch_execute("SAVEPOINT transition").await?;
    let rows = pipeline_query(tx, &[execution_row_op(request, t)]).await.map_err(untag)?;
    let accepted = match judge(t, &rows[0])? {
        Ok(accepted) => accepted,
        Err(refused) => {
            // Nothing was written.
            tx.batch_execute("RELEASE SAVEPOINT transition").await?;
            return Ok(Err(refused));
        }
    };
    let mut ops = Vec::new();
    let takes = side_writes(request, t, &accepted, &mut ops);
    batched_writes(&[(t, &accepted)], Culprit::Request(request), &mut ops);
    let counts = pipeline_execute(tx, &ops).await.map_err(untag)?;
    if let Some((_, entry_id)) = takes.iter().find(|(index, _)| counts[*index] == 0) {
        tx.batch_execute("ROLLBACK TO SAVEPOINT transition; RELEASE SAVEPOINT transition").await?;
        return Ok(Err(TransitionError::DlqEntryNotQueued { entry_id: entry_id.clone() }));
    }
    tx.batch_execute("RELEASE SAVEPOINT transition").await?;
    Ok(Ok(accepted.new_version))
}

/// The statement writing one transition's execution row (see [`judge`]): a
/// create with a client token in a segment, any transition applied alone.
fn execution_row_op(request: usize, t: &Transition) -> Op {
    let at = t.at.unix_ms();
    let (kind, name, version) = target_columns(&t.target);
    let (sql, params): (&'static str, Vec<Param>) = match (t.expected_version, &t.client_token) {
        (None, token) => {
            let mut params: Vec<Param> = vec![
                Box::new(t.execution_id.clone()),
                Box::new(kind),
                Box::new(name.to_owned()),
                Box::new(version),
                Box::new(t.status.clone()),
                Box::new(t.input_json.clone()),
                Box::new(t.state_json.clone()),
                Box::new(at),
                Box::new(shards::column(ShardId::of(name))),
            ];
            match token {
                None => (SQL_INSERT_EXECUTION, params),
                Some(token) => {
                    params.push(Box::new(token.token.clone()));
                    (SQL_INSERT_EXECUTION_WITH_TOKEN, params)
                }
            }
        }
        (Some(expected), _) => {
            // A version beyond i64 is never stored: -1 matches no row.
            let expected = i64::try_from(expected).unwrap_or(-1);
            (
                SQL_UPDATE_EXECUTION,
                vec![
                    Box::new(t.execution_id.clone()),
                    Box::new(t.status.clone()),
                    Box::new(t.state_json.clone()),
                    Box::new(at),
                    Box::new(expected),
                ],
            )
        }
    };
    Op { sql, params, culprit: Culprit::Request(request) }
}

/// Whether a transition's execution row was written, from what its statement
/// ([`execution_row_op`]) returned: a used token first, then an existing id,
/// or a version conflict.
fn judge(t: &Transition, rows: &[Row]) -> PgResult<Result<Accepted, TransitionError>> {
    let (kind, name, _) = target_columns(&t.target);
    let accepted = |new_version, kind: &str, name: &str| Ok(Ok(Accepted { new_version, kind: kind.to_owned(), name: name.to_owned() }));
    match (t.expected_version, &t.client_token) {
        (None, None) if rows.is_empty() => Ok(Err(TransitionError::AlreadyExists(t.execution_id.clone()))),
        (None, None) => accepted(1, kind, name),
        (None, Some(token)) => {
            let row = &rows[0];
            let used: (Option<String>, Option<String>, bool) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            match used {
                (Some(execution_id), fingerprint, _) => Ok(Err(TransitionError::TokenReused {
                    execution_id,
                    same_request: fingerprint.as_deref() == Some(token.fingerprint.as_str()),
                })),
                (None, _, false) => Ok(Err(TransitionError::AlreadyExists(t.execution_id.clone()))),
                (None, _, true) => accepted(1, kind, name),
            }
        }
        (Some(expected), _) => {
            let row = &rows[0];
            let stored: (Option<String>, Option<String>, Option<i64>) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            match stored {
                (Some(kind), Some(name), _) => accepted(expected + 1, &kind, &name),
                (_, _, actual) => Ok(Err(TransitionError::VersionConflict {
                    execution_id: t.execution_id.clone(),
                    expected,
                    actual: actual.map(|v| v as u64),
                })),
            }
        }
    }
}

/// The writes of an accepted transition after its execution row that keep
/// their own statements, in order: the client token, the dead-letter ops (its
/// ledger rows and timers go into [`batched_writes`]). Returns where each
/// `Take` is in `ops` (a `Take` matching no row refuses the transition).
fn side_writes(request: usize, t: &Transition, accepted: &Accepted, ops: &mut Vec<Op>) -> Vec<(usize, String)> {
    let at = t.at.unix_ms();
    macro_rules! push {
        ($sql:expr, $params:expr $(,)?) => {
            ops.push(Op { sql: $sql, params: $params, culprit: Culprit::Request(request) })
        };
    }
    if let Some(token) = t.client_token.as_ref().filter(|_| t.expected_version.is_none()) {
        push!(
            SQL_INSERT_CLIENT_TOKEN,
            vec![
                Box::new(accepted.kind.clone()),
                Box::new(accepted.name.clone()),
                Box::new(token.token.clone()),
                Box::new(token.fingerprint.clone()),
                Box::new(t.execution_id.clone()),
                Box::new(at),
            ],
        );
    }
    let mut takes = Vec::new();
    for op in &t.dlq {
        match op {
            DlqOp::Enter(w) => {
                push!(
                    SQL_ENSURE_QUEUE_OF_NEW_DLQ_ENTRY,
                    vec![Box::new(w.queue.clone()), Box::new(i64::from(DEFAULT_MAX_REDRIVES)), Box::new(at), Box::new(w.id.clone())],
                );
                let (kind, name, version) = target_columns(&w.source);
                push!(
                    SQL_ENTER_DLQ_ENTRY,
                    vec![
                        Box::new(w.id.clone()),
                        Box::new(w.queue.clone()),
                        Box::new(name.to_owned()),
                        Box::new(version),
                        Box::new(w.execution_id.clone()),
                        Box::new(w.stage.clone()),
                        Box::new(w.action.clone()),
                        Box::new(w.exception_type.clone()),
                        Box::new(w.message.clone()),
                        Box::new(w.input_json.clone()),
                        Box::new(w.detail_json.clone()),
                        Box::new(w.first_failure_at.unix_ms()),
                        Box::new(w.last_failure_at.unix_ms()),
                        Box::new(at),
                        Box::new(kind),
                    ],
                );
            }
            DlqOp::Take { entry_id, execution_id } => {
                takes.push((ops.len(), entry_id.clone()));
                push!(SQL_TAKE_DLQ_ENTRY, vec![Box::new(entry_id.clone()), Box::new(execution_id.clone()), Box::new(at)]);
            }
            DlqOp::Resolve { entry_id } => push!(SQL_RESOLVE_DLQ_ENTRY, vec![Box::new(entry_id.clone()), Box::new(at)]),
        }
    }
    takes
}

/// The ledger rows and timer changes of accepted transitions (of distinct
/// executions, in order), in at most three statements: every ledger row (`seq`
/// in transition order, then entry order), every cleared timer, then every set
/// timer (a key set twice by one transition keeps its last due time).
fn batched_writes(items: &[(&Transition, &Accepted)], culprit: Culprit, ops: &mut Vec<Op>) {
    let rows: usize = items.iter().map(|(t, _)| t.ledger.len()).sum();
    if rows > 0 {
        let mut execution_id = Vec::with_capacity(rows);
        let mut kind = Vec::with_capacity(rows);
        let mut name = Vec::with_capacity(rows);
        let mut stage = Vec::with_capacity(rows);
        let mut action = Vec::with_capacity(rows);
        let mut series = Vec::with_capacity(rows);
        let mut attempt = Vec::with_capacity(rows);
        let mut trigger = Vec::with_capacity(rows);
        let mut started_at = Vec::with_capacity(rows);
        let mut finished_at = Vec::with_capacity(rows);
        let mut outcome = Vec::with_capacity(rows);
        let mut exception_type = Vec::with_capacity(rows);
        let mut message = Vec::with_capacity(rows);
        let mut decision_json = Vec::with_capacity(rows);
        for (t, accepted) in items {
            for e in &t.ledger {
                execution_id.push(t.execution_id.clone());
                kind.push(accepted.kind.clone());
                name.push(accepted.name.clone());
                stage.push(e.stage.clone());
                action.push(e.action.clone());
                series.push(i64::from(e.series));
                attempt.push(i64::from(e.attempt));
                trigger.push(e.trigger.clone());
                started_at.push(e.started_at.unix_ms());
                finished_at.push(e.finished_at.unix_ms());
                outcome.push(e.outcome.clone());
                exception_type.push(e.exception_type.clone());
                message.push(e.message.clone());
                decision_json.push(e.decision_json.clone());
            }
        }
        ops.push(Op {
            sql: SQL_INSERT_LEDGER_ROWS,
            params: vec![
                Box::new(execution_id),
                Box::new(kind),
                Box::new(name),
                Box::new(stage),
                Box::new(action),
                Box::new(series),
                Box::new(attempt),
                Box::new(trigger),
                Box::new(started_at),
                Box::new(finished_at),
                Box::new(outcome),
                Box::new(exception_type),
                Box::new(message),
                Box::new(decision_json),
            ],
            culprit,
        });
    }
    let (mut cleared_ids, mut cleared_keys) = (Vec::new(), Vec::new());
    for (t, _) in items {
        for key in &t.clear_timers {
            cleared_ids.push(t.execution_id.clone());
            cleared_keys.push(key.clone());
        }
    }
    if !cleared_ids.is_empty() {
        ops.push(Op { sql: SQL_DELETE_TIMERS, params: vec![Box::new(cleared_ids), Box::new(cleared_keys)], culprit });
    }
    let (mut set_ids, mut set_keys, mut set_due, mut set_shard) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (t, accepted) in items {
        let shard = shards::column(ShardId::of(&accepted.name));
        // One statement cannot upsert a row twice: the last write of a key wins.
        let mut seen = HashSet::new();
        for timer in t.set_timers.iter().rev().filter(|timer| seen.insert(timer.key.as_str())) {
            set_ids.push(t.execution_id.clone());
            set_keys.push(timer.key.clone());
            set_due.push(timer.due_at.unix_ms());
            set_shard.push(shard);
        }
    }
    if !set_ids.is_empty() {
        ops.push(Op {
            sql: SQL_UPSERT_TIMERS,
            params: vec![Box::new(set_ids), Box::new(set_keys), Box::new(set_due), Box::new(set_shard)],
            culprit,
        });
    }
}

async fn quarantine(
    tx: &Transaction<'_>,
    id: &str,
    status: &str,
    fault: &ExecutionFault,
    at: Timestamp,
    shard: Option<i16>,
) -> PgResult<Option<u64>> {
    let st = tx.prepare_cached(SQL_QUARANTINE_EXECUTION).await?;
    let params: [&(dyn ToSql + Sync); 6] = [&id, &status, &fault.exception_type, &fault.message, &at.unix_ms(), &shard];
    let version: Option<i64> = tx.query_opt(&st, &params).await?.map(|r| r.get(0));
    if version.is_some() {
        let st = tx.prepare_cached(SQL_DELETE_EXECUTION_TIMERS).await?;
        tx.execute(&st, &[&id]).await?;
    }
    Ok(version.map(|v| v as u64))
}

async fn write_pipeline(tx: &Transaction<'_>, w: &PipelineWrite) -> PgResult<Result<PipelineRecord, StoreError>> {
    let name = w.name.as_str();
    let (live_st, latest_st) = (tx.prepare_cached(SQL_PIPELINE_IS_LIVE).await?, tx.prepare_cached(SQL_LATEST_STORED_PIPELINE).await?);
    let params: [&(dyn ToSql + Sync); 1] = [&name];
    let (live, latest) = tokio::join!(tx.query_opt(&live_st, &params), tx.query_opt(&latest_st, &params));
    let live = live?.map(|r| r.get::<_, bool>(0)) == Some(true);
    let latest = match latest? {
        Some(row) => match pipeline_from_row(&row) {
            Ok(p) => Some(p),
            Err(e) => return Ok(Err(e)),
        },
        None => None,
    };
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
    let mut ops: Vec<(&'static str, Vec<Param>)> = vec![(
        SQL_INSERT_PIPELINE,
        vec![
            Box::new(record.name.clone()),
            Box::new(i64::from(record.version)),
            Box::new(record.definition_json.clone()),
            Box::new(record.source_dir.clone()),
            Box::new(record.created_at.unix_ms()),
        ],
    )];
    if !live {
        ops.push((SQL_REVIVE_PIPELINE_NAME, vec![Box::new(record.name.clone())]));
    }
    execute_pipelined(tx, ops).await?;
    Ok(Ok(record))
}

async fn delete_pipeline(tx: &Transaction<'_>, name: &str, now: Timestamp) -> PgResult<bool> {
    let st = tx.prepare_cached(SQL_DELETE_PIPELINE_NAME).await?;
    let deleted = tx.execute(&st, &[&name, &now.unix_ms()]).await? > 0;
    if deleted {
        let st = tx.prepare_cached(SQL_DELETE_PIPELINE_TOKENS).await?;
        tx.execute(&st, &[&name]).await?;
    }
    Ok(deleted)
}

async fn write_dlq_queue(tx: &Transaction<'_>, w: &DlqQueueWrite) -> PgResult<Result<DlqQueueRecord, StoreError>> {
    let now = w.now.unix_ms();
    let row = match w.max_redrives {
        None => {
            let ensure = tx.prepare_cached(SQL_ENSURE_DLQ_QUEUE).await?;
            tx.execute(&ensure, &[&w.name, &i64::from(DEFAULT_MAX_REDRIVES), &now]).await?;
            let get = tx.prepare_cached(SQL_GET_DLQ_QUEUE_RECORD).await?;
            tx.query_one(&get, &[&w.name]).await?
        }
        Some(max_redrives) => {
            let st = tx.prepare_cached(SQL_CONFIGURE_DLQ_QUEUE).await?;
            tx.query_one(&st, &[&w.name, &i64::from(max_redrives), &now]).await?
        }
    };
    Ok(dlq_queue_from_row(&row))
}

async fn purge_dlq_entries(tx: &Transaction<'_>, filter: &DlqEntryFilter) -> PgResult<u64> {
    let query = DlqEntryQuery::new(filter, Some(DlqEntryState::Queued), false);
    let st = tx.prepare_cached(&query.purge_sql()).await?;
    tx.execute(&st, &query.params()).await
}

async fn write_redrive_run(tx: &Transaction<'_>, write: &RedriveRunWrite) -> PgResult<Result<(), StoreError>> {
    match write {
        RedriveRunWrite::Create(run) => {
            let st = tx.prepare_cached(SQL_INSERT_REDRIVE_RUN).await?;
            let inserted = tx
                .execute(
                    &st,
                    &[
                        &run.id,
                        &run.schedule,
                        &run.status,
                        &run.dry_run,
                        &run.started_at.unix_ms(),
                        &run.finished_at.map(Timestamp::unix_ms),
                        &run.request_json,
                        &run.summary_json,
                    ],
                )
                .await?;
            if inserted == 0 {
                return Ok(Err(StoreError::AlreadyExists(format!("redrive run {} already exists", run.id))));
            }
        }
        RedriveRunWrite::Update(run) => {
            let st = tx.prepare_cached(SQL_UPDATE_REDRIVE_RUN).await?;
            let updated = tx.execute(&st, &[&run.id, &run.status, &run.finished_at.map(Timestamp::unix_ms), &run.summary_json]).await?;
            if updated == 0 {
                return Ok(Err(StoreError::NotFound(format!("redrive run {} does not exist", run.id))));
            }
        }
    }
    Ok(Ok(()))
}
