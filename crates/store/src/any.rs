//! One store of either backend, chosen by the `--db` value: a SQLite file (the
//! embedded default) or a PostgreSQL database (`postgres://…`). The CLI and the
//! SDK hold an [`AnyStore`]; the engine stays generic over [`Store`].

use crate::postgres::{PostgresOptions, PostgresStore, redact_url};
use crate::sqlite::{SqliteOptions, SqliteStore};
use crate::{
    ClusterRecord, CommitResult, CommitStats, DlqEntryFilter, DlqEntryRecord, DlqQueueRecord, DlqQueueStats, ExecutionFault,
    ExecutionFilter, ExecutionRecord, LedgerEntry, LedgerFilter, PipelineRecord, PruneCandidate, PruneCounts, PruneQuery, PruneStep,
    RedriveRunFilter, RedriveRunRecord, Store, StoreError, TimerRecord, Transition,
};
use redrive_core::time::Timestamp;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a store lives, parsed from a `--db` value (or `REDRIVE_DB`): a URL
/// starting `postgres://` or `postgresql://` names a PostgreSQL database;
/// anything else is the path of a SQLite file.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Postgres(PostgresUrl),
}

/// A PostgreSQL connection URL. Its password is never displayed: `Display` and
/// `Debug` show it as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(String);

impl PostgresUrl {
    /// The full URL, password included, for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

/// URL schemes that select the PostgreSQL backend.
pub const POSTGRES_SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

impl StoreLocation {
    pub fn parse(value: &str) -> StoreLocation {
        if POSTGRES_SCHEMES.iter().any(|scheme| value.starts_with(scheme)) {
            StoreLocation::Postgres(PostgresUrl(value.to_string()))
        } else {
            StoreLocation::Sqlite(PathBuf::from(value))
        }
    }

    /// The SQLite file, if this is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            StoreLocation::Sqlite(path) => Some(path),
            StoreLocation::Postgres(_) => None,
        }
    }
}

impl std::str::FromStr for StoreLocation {
    type Err = std::convert::Infallible;
    fn from_str(value: &str) -> Result<StoreLocation, Self::Err> {
        Ok(StoreLocation::parse(value))
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Sqlite(path) => write!(f, "{}", path.display()),
            StoreLocation::Postgres(url) => write!(f, "{url}"),
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreLocation({self})")
    }
}

/// Options for whichever backend a location names.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    pub sqlite: SqliteOptions,
    pub postgres: PostgresOptions,
}

/// A store of either backend.
pub enum AnyStore {
    Sqlite(SqliteStore),
    /// Boxed: the PostgreSQL store is several times the size of the SQLite one.
    Postgres(Box<PostgresStore>),
}

impl AnyStore {
    /// Opens (creating or migrating it) the store at `location` for an engine:
    /// it takes the store's engine lock.
    pub async fn open(location: &StoreLocation, options: StoreOptions) -> Result<AnyStore, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => SqliteStore::open(path, options.sqlite).map(AnyStore::Sqlite),
            StoreLocation::Postgres(url) => {
                PostgresStore::open(url.expose(), options.postgres).await.map(|s| AnyStore::Postgres(Box::new(s)))
            }
        }
    }

    /// Opens an existing store for inspection beside a running engine: no engine
    /// lock, every write refused.
    pub async fn open_read_only(location: &StoreLocation) -> Result<AnyStore, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => SqliteStore::open_read_only(path).map(AnyStore::Sqlite),
            StoreLocation::Postgres(url) => PostgresStore::open_read_only(url.expose()).await.map(|s| AnyStore::Postgres(Box::new(s))),
        }
    }

    /// Opens the store for a `redrive server` that shares it with others: a
    /// PostgreSQL store is joined as a member that leads only after
    /// [`AnyStore::try_lead`] succeeds; a SQLite file is opened (and locked) as by
    /// [`AnyStore::open`] — its one process always leads.
    pub async fn open_member(location: &StoreLocation, options: StoreOptions) -> Result<AnyStore, StoreError> {
        match location {
            StoreLocation::Sqlite(path) => SqliteStore::open(path, options.sqlite).map(AnyStore::Sqlite),
            StoreLocation::Postgres(url) => {
                PostgresStore::open_member(url.expose(), options.postgres).await.map(|s| AnyStore::Postgres(Box::new(s)))
            }
        }
    }

    /// Tries to take the store's engine lease: `true` once this process leads
    /// (its writes then carry the lease's fencing token).
    pub async fn try_lead(&self) -> Result<bool, StoreError> {
        match self {
            AnyStore::Sqlite(_) => Ok(true),
            AnyStore::Postgres(store) => store.try_lead().await,
        }
    }

    /// Where the leader serves HTTP, as it announced it.
    pub async fn leader_url(&self) -> Result<Option<String>, StoreError> {
        match self {
            AnyStore::Sqlite(_) => Ok(None),
            AnyStore::Postgres(store) => store.leader_url().await,
        }
    }

    /// Tells the other members where this process serves HTTP.
    pub async fn announce(&self, url: &str) -> Result<(), StoreError> {
        match self {
            AnyStore::Sqlite(_) => Ok(()),
            AnyStore::Postgres(store) => store.announce(url).await,
        }
    }

    /// Why this store can never be used again (another process took the
    /// database over); `None` while it can. A SQLite store is lost only when its
    /// file is, which its writes report.
    pub fn lost_reason(&self) -> Option<String> {
        match self {
            AnyStore::Sqlite(_) => None,
            AnyStore::Postgres(store) => store.lost_reason(),
        }
    }

    /// How often a follower checks whether it can take over.
    /// A store of one shard over the same database (PostgreSQL only; see
    /// [`PostgresStore::shard_member`]).
    pub fn shard_member(&self, shard: redrive_core::shard::ShardId, options: &StoreOptions) -> Result<AnyStore, StoreError> {
        match self {
            AnyStore::Sqlite(_) => Err(StoreError::Unavailable("shards need a PostgreSQL store; SQLite has one engine".into())),
            AnyStore::Postgres(store) => Ok(AnyStore::Postgres(Box::new(store.shard_member(shard, &options.postgres)?))),
        }
    }

    /// The shards whose lease runs now (none on SQLite).
    pub async fn shard_owners(&self) -> Result<Vec<crate::ShardOwner>, StoreError> {
        match self {
            AnyStore::Sqlite(_) => Ok(Vec::new()),
            AnyStore::Postgres(store) => store.shard_owners().await,
        }
    }

    /// The live members' ids in id order (SQLite: none).
    pub async fn live_members(&self) -> Result<Vec<String>, StoreError> {
        match self {
            AnyStore::Sqlite(_) => Ok(Vec::new()),
            AnyStore::Postgres(store) => store.live_members().await,
        }
    }

    /// Asks the holder of `shard` to start a function's execution
    /// (PostgreSQL; see [`PostgresStore::request_function_start`]).
    pub async fn request_function_start(
        &self,
        shard: redrive_core::shard::ShardId,
        request: &crate::StartRequest,
        now: redrive_core::time::Timestamp,
    ) -> Result<i64, StoreError> {
        self.postgres("start requests")?.request_function_start(shard, request, now).await
    }

    /// A connection told of every start request (PostgreSQL).
    pub async fn listen_for_start_requests(&self) -> Result<crate::postgres::StartListener, StoreError> {
        self.postgres("start requests")?.listen_for_start_requests().await
    }

    /// The start requests waiting for this shard's store (PostgreSQL).
    pub async fn waiting_function_starts(&self, limit: usize) -> Result<Vec<crate::StartRequestRecord>, StoreError> {
        self.postgres("start requests")?.waiting_function_starts(limit).await
    }

    /// Records a start request's outcome; `false` if it had one (PostgreSQL).
    pub async fn answer_function_start(&self, id: i64, outcome_json: &str, now: redrive_core::time::Timestamp) -> Result<bool, StoreError> {
        self.postgres("start requests")?.answer_function_start(id, outcome_json, now).await
    }

    /// A start request's outcome once answered, deleting it (PostgreSQL).
    pub async fn take_function_start_outcome(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.postgres("start requests")?.take_function_start_outcome(id).await
    }

    /// Deletes outcomes nobody took, answered before `before` (PostgreSQL; none on SQLite).
    pub async fn prune_function_start_outcomes(&self, before: redrive_core::time::Timestamp) -> Result<u64, StoreError> {
        match self {
            AnyStore::Sqlite(_) => Ok(0),
            AnyStore::Postgres(store) => store.prune_function_start_outcomes(before).await,
        }
    }

    /// Live members of another kind holding shards (none on SQLite).
    pub async fn shard_holders_of_other_kinds(&self) -> Result<Vec<String>, StoreError> {
        match self {
            AnyStore::Sqlite(_) => Ok(Vec::new()),
            AnyStore::Postgres(store) => store.shard_holders_of_other_kinds().await,
        }
    }

    fn postgres(&self, what: &str) -> Result<&PostgresStore, StoreError> {
        match self {
            AnyStore::Sqlite(_) => Err(StoreError::Unavailable(format!("{what} need a PostgreSQL store; SQLite has one engine"))),
            AnyStore::Postgres(store) => Ok(store),
        }
    }

    pub fn heartbeat(&self) -> std::time::Duration {
        match self {
            AnyStore::Sqlite(_) => std::time::Duration::from_secs(1),
            AnyStore::Postgres(store) => store.heartbeat(),
        }
    }

    /// The store's own health and sizes (see [`crate::StoreInspection`]).
    pub async fn inspect(&self) -> Result<crate::StoreInspection, StoreError> {
        match self {
            AnyStore::Sqlite(store) => store.inspect().await,
            AnyStore::Postgres(store) => store.inspect().await,
        }
    }

    /// Which backend, for messages and metrics: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            AnyStore::Sqlite(_) => "sqlite",
            AnyStore::Postgres(_) => "postgres",
        }
    }
}

/// Calls the same method on whichever backend `self` holds.
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            AnyStore::Sqlite($store) => $call,
            AnyStore::Postgres($store) => $call,
        }
    };
}

impl Store for AnyStore {
    async fn put_pipeline(
        &self,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> Result<PipelineRecord, StoreError> {
        dispatch!(self, s => s.put_pipeline(name, definition_json, source_dir, now).await)
    }
    async fn create_pipeline(
        &self,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> Result<PipelineRecord, StoreError> {
        dispatch!(self, s => s.create_pipeline(name, definition_json, source_dir, now).await)
    }
    async fn update_pipeline(
        &self,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> Result<PipelineRecord, StoreError> {
        dispatch!(self, s => s.update_pipeline(name, definition_json, source_dir, now).await)
    }
    async fn delete_pipeline(&self, name: &str, now: Timestamp) -> Result<bool, StoreError> {
        dispatch!(self, s => s.delete_pipeline(name, now).await)
    }
    async fn get_pipeline(&self, name: &str, version: Option<u32>) -> Result<Option<PipelineRecord>, StoreError> {
        dispatch!(self, s => s.get_pipeline(name, version).await)
    }
    async fn list_pipelines(&self, after_name: Option<&str>, limit: usize) -> Result<Vec<PipelineRecord>, StoreError> {
        dispatch!(self, s => s.list_pipelines(after_name, limit).await)
    }
    async fn commit(&self, transitions: Arc<[Transition]>) -> Result<CommitResult, StoreError> {
        dispatch!(self, s => s.commit(transitions).await)
    }
    async fn quarantine_execution(&self, id: &str, status: &str, fault: ExecutionFault, at: Timestamp) -> Result<Option<u64>, StoreError> {
        dispatch!(self, s => s.quarantine_execution(id, status, fault, at).await)
    }
    async fn get_execution(&self, id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        dispatch!(self, s => s.get_execution(id).await)
    }
    async fn get_executions(&self, ids: &[String]) -> Result<Vec<ExecutionRecord>, StoreError> {
        dispatch!(self, s => s.get_executions(ids).await)
    }
    async fn list_executions(&self, filter: ExecutionFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
        dispatch!(self, s => s.list_executions(filter).await)
    }
    async fn ledger(&self, execution_id: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        dispatch!(self, s => s.ledger(execution_id).await)
    }
    async fn list_ledger(&self, filter: LedgerFilter) -> Result<Vec<LedgerEntry>, StoreError> {
        dispatch!(self, s => s.list_ledger(filter).await)
    }
    async fn due_timers(&self, now: Timestamp, limit: usize) -> Result<Vec<TimerRecord>, StoreError> {
        dispatch!(self, s => s.due_timers(now, limit).await)
    }
    async fn due_timers_after(&self, now: Timestamp, after: &TimerRecord, limit: usize) -> Result<Vec<TimerRecord>, StoreError> {
        dispatch!(self, s => s.due_timers_after(now, after, limit).await)
    }
    async fn next_timer_due(&self) -> Result<Option<Timestamp>, StoreError> {
        dispatch!(self, s => s.next_timer_due().await)
    }
    async fn count_timers(&self) -> Result<u64, StoreError> {
        dispatch!(self, s => s.count_timers().await)
    }
    async fn execution_timers(&self, execution_id: &str) -> Result<Vec<TimerRecord>, StoreError> {
        dispatch!(self, s => s.execution_timers(execution_id).await)
    }
    async fn ensure_dlq_queue(&self, name: &str, now: Timestamp) -> Result<DlqQueueRecord, StoreError> {
        dispatch!(self, s => s.ensure_dlq_queue(name, now).await)
    }
    async fn configure_dlq_queue(&self, name: &str, max_redrives: u32, now: Timestamp) -> Result<DlqQueueRecord, StoreError> {
        dispatch!(self, s => s.configure_dlq_queue(name, max_redrives, now).await)
    }
    async fn get_dlq_queue(&self, name: &str) -> Result<Option<DlqQueueStats>, StoreError> {
        dispatch!(self, s => s.get_dlq_queue(name).await)
    }
    async fn list_dlq_queues(
        &self,
        prefix: Option<&str>,
        after_name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DlqQueueStats>, StoreError> {
        dispatch!(self, s => s.list_dlq_queues(prefix, after_name, limit).await)
    }
    async fn get_dlq_entry(&self, id: &str) -> Result<Option<DlqEntryRecord>, StoreError> {
        dispatch!(self, s => s.get_dlq_entry(id).await)
    }
    async fn list_dlq_entries(&self, filter: DlqEntryFilter) -> Result<Vec<DlqEntryRecord>, StoreError> {
        dispatch!(self, s => s.list_dlq_entries(filter).await)
    }
    async fn count_dlq_entries(&self, filter: DlqEntryFilter) -> Result<u64, StoreError> {
        dispatch!(self, s => s.count_dlq_entries(filter).await)
    }
    async fn purge_dlq_entries(&self, filter: DlqEntryFilter) -> Result<u64, StoreError> {
        dispatch!(self, s => s.purge_dlq_entries(filter).await)
    }
    async fn create_redrive_run(&self, run: RedriveRunRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_redrive_run(run).await)
    }
    async fn update_redrive_run(&self, run: RedriveRunRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.update_redrive_run(run).await)
    }
    async fn get_redrive_run(&self, id: &str) -> Result<Option<RedriveRunRecord>, StoreError> {
        dispatch!(self, s => s.get_redrive_run(id).await)
    }
    async fn list_redrive_runs(&self, filter: RedriveRunFilter) -> Result<Vec<RedriveRunRecord>, StoreError> {
        dispatch!(self, s => s.list_redrive_runs(filter).await)
    }
    async fn interrupt_redrive_runs(&self, now: Timestamp) -> Result<u64, StoreError> {
        dispatch!(self, s => s.interrupt_redrive_runs(now).await)
    }
    async fn create_token(&self, token: crate::TokenRecord) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_token(token).await)
    }
    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        dispatch!(self, s => s.revoke_token(name).await)
    }
    async fn list_tokens(&self) -> Result<Vec<crate::TokenRecord>, StoreError> {
        dispatch!(self, s => s.list_tokens().await)
    }
    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<crate::TokenRecord>, StoreError> {
        dispatch!(self, s => s.token_by_hash(token_hash).await)
    }
    async fn append_audit(&self, record: crate::AuditRecord) -> Result<u64, StoreError> {
        dispatch!(self, s => s.append_audit(record).await)
    }
    async fn list_audit(&self, filter: crate::AuditFilter) -> Result<Vec<crate::AuditRecord>, StoreError> {
        dispatch!(self, s => s.list_audit(filter).await)
    }
    async fn put_dependencies(&self, records: Vec<crate::DependencyRecord>) -> Result<(), StoreError> {
        dispatch!(self, s => s.put_dependencies(records).await)
    }
    async fn list_dependencies(&self) -> Result<Vec<crate::DependencyRecord>, StoreError> {
        dispatch!(self, s => s.list_dependencies().await)
    }
    async fn list_shard_dependencies(&self) -> Result<Vec<crate::ShardDependencyRecord>, StoreError> {
        dispatch!(self, s => s.list_shard_dependencies().await)
    }
    async fn write_bulk_retry(&self, write: crate::BulkWrite) -> Result<u64, StoreError> {
        dispatch!(self, s => s.write_bulk_retry(write).await)
    }
    async fn get_bulk_retry(&self, id: &str) -> Result<Option<crate::BulkRetryRecord>, StoreError> {
        dispatch!(self, s => s.get_bulk_retry(id).await)
    }
    async fn list_bulk_retries(
        &self,
        pipeline: &str,
        before: Option<(Timestamp, String)>,
        limit: usize,
    ) -> Result<Vec<crate::BulkRetryRecord>, StoreError> {
        dispatch!(self, s => s.list_bulk_retries(pipeline, before, limit).await)
    }
    async fn list_bulk_retry_results(&self, op_id: &str, after_seq: u64, limit: usize) -> Result<Vec<crate::BulkRetryResult>, StoreError> {
        dispatch!(self, s => s.list_bulk_retry_results(op_id, after_seq, limit).await)
    }
    async fn prune_candidates(&self, query: PruneQuery) -> Result<Vec<PruneCandidate>, StoreError> {
        dispatch!(self, s => s.prune_candidates(query).await)
    }
    async fn prune(&self, step: PruneStep) -> Result<PruneCounts, StoreError> {
        dispatch!(self, s => s.prune(step).await)
    }
    async fn count_prunable(&self, step: PruneStep) -> Result<PruneCounts, StoreError> {
        dispatch!(self, s => s.count_prunable(step).await)
    }
    fn stats(&self) -> CommitStats {
        dispatch!(self, s => s.stats())
    }
    fn driven_shard(&self) -> Option<redrive_core::shard::ShardId> {
        dispatch!(self, s => s.driven_shard())
    }
    async fn cluster(&self) -> Result<ClusterRecord, StoreError> {
        dispatch!(self, s => s.cluster().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_selects_postgres_and_anything_else_is_a_file() {
        for url in ["postgres://u@h/db", "postgresql://u:pw@h:5433/db"] {
            assert!(matches!(StoreLocation::parse(url), StoreLocation::Postgres(_)), "{url}");
        }
        for path in ["redrive.db", "/var/lib/redrive/x.db", "postgres.db", "./postgres:/x"] {
            assert_eq!(StoreLocation::parse(path).sqlite_path(), Some(Path::new(path)), "{path}");
        }
    }

    #[test]
    fn a_location_never_displays_a_password() {
        let location = StoreLocation::parse("postgres://app:s3cret@db.internal:5432/redrive");
        for shown in [location.to_string(), format!("{location:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("db.internal"), "{shown}");
        }
    }
}
