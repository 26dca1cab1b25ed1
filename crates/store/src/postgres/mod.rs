//! The PostgreSQL backend: a pool of connections for reads and writes, one
//! writer task doing group commit, an engine lock with a fencing token.
//!
//! # Schema
//! One versioned migration list ([`SCHEMA_VERSION`]); migration 1 is the final
//! shape of the SQLite schema (pipelines, pipeline_names, executions with their
//! `kind`, the ledger with an identity `seq`, timers, client_tokens, dlq_queues,
//! dlq_entries, redrive_runs) plus the one-row `engine_lock` table; migration
//! 2 leaves half of each `executions` page free for in-place (HOT) updates.
//! Timestamps are BIGINT unix milliseconds; text columns that are ordered or
//! prefix-matched are `COLLATE "C"` (byte order, like SQLite). Pending
//! migrations run in one transaction under `pg_advisory_xact_lock`, so several
//! processes opening a database at once apply each exactly once; a database
//! with a newer schema is refused ([`StoreError::Schema`]). The ledger is
//! append-only: a statement trigger refuses UPDATE, DELETE and TRUNCATE.
//!
//! # Group commit
//! Every write is sent over a channel to one writer task (one per process: the
//! stores of the shards a process holds send theirs to the writer of the store
//! they were made from). It waits for one
//! request, drains what is queued (up to
//! [`PostgresOptions::max_batch_transitions`] transitions) and applies it all in
//! one transaction on a pooled connection (`synchronous_commit` forced on for
//! every connection: the group is durable before anyone is answered). Up to
//! [`MAX_WRITE_GROUPS_IN_FLIGHT`] groups run at once, never two with requests of
//! the same store: one store's requests are applied one group after the other. A transition is refused alone
//! (version conflict, used token, existing execution, a refused `Take`, a
//! limit), with the same results as SQLite's savepoint per transition: the
//! refusals before its first write need nothing undone (the execution row's
//! statement checks the token, the id or the version itself), and a transition
//! with a dead-letter `Take` (the only refusal after a write) runs in its own
//! `SAVEPOINT`. Statements are prepared once per connection (`prepare_cached`)
//! and pipelined: the transitions of a group are cut into segments (at a
//! `Take`, at a second transition of the same execution, or at a second create
//! with the same client token) and each segment costs two round trips of a
//! handful of statements whatever its size, with array parameters and
//! `unnest`: one `UPDATE … FROM unnest(…)` for every update (compare-and-set
//! on the version), one `INSERT … SELECT … FROM unnest(…)` for every create
//! without a client token (a create with one keeps its own statement), then
//! the client tokens and dead-letter ops of the accepted transitions (their own
//! statements), one statement for all their ledger rows (`seq` in transition
//! order), one for the cleared timers and one for the set timers. If the
//! transaction fails (connection lost, server error) nothing is committed and
//! every request of the group gets [`StoreError::Unavailable`] — except that a
//! request whose own data makes the server fail (a constraint, a trigger
//! raising) fails alone and the group is applied again without it (a batched
//! statement, holding several requests, fails: the group is halved until the
//! request is found). A
//! connection that failed is dropped, not returned to the pool.
//!
//! # Engine lock and fencing token
//! [`PostgresStore::open`] takes a session-level `pg_try_advisory_lock` on a
//! dedicated connection (not pooled); another holder makes it fail with
//! [`StoreError::Locked`], naming the holder recorded in `engine_lock`. Once
//! held, one statement bumps `engine_lock.token` and records this holder (host,
//! pid, since); the store remembers the token. Every write transaction first
//! reads the token `FOR SHARE` (a take-over waits for it) and, if it is not ours
//! any more, fails with [`StoreError::Lost`] and writes nothing; from then on
//! every call fails with `Lost`. (A group holding several shards' requests
//! reads each of their tokens in that first statement; a shard whose token
//! changed is lost and its requests refused, and the group is applied again
//! without them.) Dropping the store closes the lock connection
//! (its socket at once), which releases the lock as soon as the server ends the
//! session; an open whose recorded holder is gone (a dropped store of this
//! process, or an exited process on this host) waits up to a second for that.
//!
//! # Reconnection
//! Pooled connections that break are replaced on the next call (a call that met
//! the break fails with [`StoreError::Unavailable`]). If the lock connection dies
//! (database restart, terminated backend), writes fail with `Unavailable` while
//! a background task reconnects with back-off (100 ms doubling to 2 s) and
//! re-takes the advisory lock: if the token is still ours it bumps it and
//! adopts the new value; if someone else took it meanwhile the store is lost
//! for good. A commit whose connection breaks during `COMMIT` itself gets
//! `Unavailable` although the server may have committed it (as with any client
//! of a remote database); re-sending it is refused as a conflict, not doubled.
//!
//! # Differences from SQLite
//! PostgreSQL cannot store U+0000 in text: a transition holding one is refused
//! alone with [`crate::TransitionError::Limit`] (other writes with
//! [`StoreError::Limit`]) instead of failing at the server. Opening a database
//! that does not exist is [`StoreError::NotFound`] (the store never creates
//! databases, only its schema).
//!
//! # Shards
//! Every execution and timer row carries its shard (`redrive_core::shard`: a
//! fixed hash of the pipeline's or function's name; migration 6 computed it for
//! older rows), and `engine_lock` has a row per shard besides the whole
//! database's. [`PostgresStore::shard_member`] makes a store of one shard over
//! the same pool: it takes that shard's advisory lock, lease and fencing token
//! (the same keeper, renewal and take-over as the whole database's), lists only
//! that shard's executions and timers, and refuses a transition of another
//! shard's execution ([`TransitionError::OutsideShard`]). Its writes go to the
//! process's one writer (group commit across the shards a process holds) and
//! check that shard's token, so a process that lost one shard is fenced from
//! it and keeps writing its others, in the same groups.
//!
//! # Not done yet
//! No TLS (`NoTls`): use a local socket or a trusted network.

mod auth;
mod bulk;
mod dependencies;
mod lock;
mod member;
mod nul;
mod rows;
mod schema;
mod shards;
mod sql;
mod starts;
mod writer;

pub use schema::SCHEMA_VERSION;
pub use starts::{MAX_START_REQUESTS_READ, START_CHANNEL, StartListener};

use crate::validate::{
    check_commit, check_definition, check_dlq_queue_name, check_fault, check_max_redrives, check_redrive_run, check_transition,
};
use crate::{
    CommitResult, CommitStats, DlqEntryFilter, DlqEntryRecord, DlqQueueRecord, DlqQueueStats, ExecutionFault, ExecutionFilter,
    ExecutionRecord, LedgerEntry, LedgerFilter, PipelineRecord, PruneCandidate, PruneCounts, PruneQuery, PruneStep, RedriveRunFilter,
    RedriveRunRecord, Store, StoreError, TimerRecord, Transition, TransitionError, check_prune_step, limits::MAX_PAGE_SIZE,
};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use lock::{CurrentLock, Fence, LeaseTerms, LockSlot};
use redrive_core::shard::ShardId;
use redrive_core::time::Timestamp;
use sql::*;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Config, NoTls, Row};
use writer::{DlqQueueWrite, PipelineMode, PipelineWrite, Queued, RedriveRunWrite, Stats, WriteRequest, Writer};

/// Default pooled connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8;
/// Default cap on the transitions applied in one transaction.
pub const DEFAULT_MAX_BATCH_TRANSITIONS: usize = 4096;
/// Group transactions a process's writer runs at once, at most. A group starts
/// beside another only if it holds no request of a store that has one in
/// flight: each store's requests are applied one group after the other, in
/// order, so a store alone (the whole database's) has exactly one transaction
/// at a time, and the shards of a process overlap their groups (as when each
/// had its own writer) while each group commits several shards' writes.
pub const MAX_WRITE_GROUPS_IN_FLIGHT: usize = 2;
/// Write requests that may wait for the writer before callers block (for all
/// the stores of a process: they share its writer).
const WRITE_QUEUE_CAPACITY: usize = 1024;
/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive: idle time before the first probe, time between probes, and
/// unanswered probes before the connection is dropped.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;
/// Data sent and not acknowledged this long fails the connection (Linux).
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a call waits for a pooled connection.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Tuning of a [`PostgresStore`].
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Pooled connections for reads and writes (default 8).
    pub max_connections: usize,
    /// Most transitions per group-commit transaction (default 4096, like
    /// SQLite's); a shard's store writes through the writer of the store it was
    /// made from, with that store's setting.
    pub max_batch_transitions: usize,
    /// How long the engine lease lasts without a renewal (default 10 s): a
    /// leader that stalls this long (stopped, paused, cut off) is taken over.
    pub lease: Duration,
    /// How often the leader renews its lease, members announce themselves and
    /// followers try to take over (default 1 s; at most a third of `lease`).
    pub heartbeat: Duration,
    /// What this process is to the others (servers and SDK processes do not
    /// share the shards of a database).
    pub kind: crate::MemberKind,
}

/// Default [`PostgresOptions::lease`].
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);
/// Default [`PostgresOptions::heartbeat`].
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_batch_transitions: DEFAULT_MAX_BATCH_TRANSITIONS,
            lease: DEFAULT_LEASE,
            heartbeat: DEFAULT_HEARTBEAT,
            kind: crate::MemberKind::default(),
        }
    }
}

impl PostgresOptions {
    fn terms(&self, slot: LockSlot) -> LeaseTerms {
        let lease = self.lease.max(Duration::from_millis(300));
        let heartbeat = self.heartbeat.min(lease / 3).max(Duration::from_millis(50));
        LeaseTerms { member: crate::member_id(), slot, lease, heartbeat, kind: self.kind }
    }
}

/// A [`Store`] in a PostgreSQL database. See the module docs for the design.
pub struct PostgresStore {
    display_url: String,
    pool: Pool,
    /// `None` for a store opened with [`PostgresStore::open_read_only`]; a
    /// shard's store shares the writer of the store it was made from.
    writer: Option<mpsc::Sender<Queued>>,
    fence: Option<Arc<Fence>>,
    stats: Arc<Stats>,
    /// The connection holding the engine lock (replaced by the keeper after a
    /// reconnection), and the keeper task; `None` while following.
    lock: Mutex<Option<(CurrentLock, JoinHandle<()>)>>,
    /// Connection settings (a member takes the lease later with them).
    config: Config,
    terms: LeaseTerms,
    /// Where this process serves HTTP, announced in `members`.
    url: Arc<Mutex<Option<String>>>,
    /// Keeps this process's `members` row fresh.
    heartbeat_task: Option<JoinHandle<()>>,
    /// Whether dropping this store closes `pool` (not a shard's store, which
    /// shares the pool of the store it was made from).
    owns_pool: bool,
}

impl PostgresStore {
    /// Connects, creates/migrates the schema, takes the engine lock. `url` is a
    /// libpq-style URL `postgres://USER[:PASS]@HOST[:PORT]/DB` (also `postgresql://`).
    ///
    /// Errors: [`StoreError::Locked`] if another engine holds the database,
    /// [`StoreError::Schema`] if it holds a newer (or foreign) schema,
    /// [`StoreError::Unavailable`] if the server cannot be reached.
    pub async fn open(url: &str, opts: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let display_url = redact_url(url);
        let config = parse_url(url, &display_url)?;
        let migration_config = config.clone();
        let db = display_url.clone();
        let terms = opts.terms(LockSlot::WHOLE);
        let (conn, ended, token) = lock::acquire(&config, &display_url, &terms, || async move {
            let (mut client, connection) = migration_config.connect(NoTls).await.map_err(|e| map_error(&db, &e))?;
            let driver = tokio::spawn(connection);
            let result = schema::migrate(&mut client, &db).await;
            drop(client);
            let _ = driver.await;
            result
        })
        .await?;

        let fence = Arc::new(Fence::new(token, display_url.clone(), LockSlot::WHOLE));
        let store = PostgresStore::assemble(display_url, config, fence, &opts)?;
        store.keep_lock(conn, ended);
        Ok(store)
    }

    /// Joins the database as a member that does not lead yet (a `redrive server`
    /// beside others): connects, creates/migrates the schema, announces itself;
    /// reads work, writes are refused until [`PostgresStore::try_lead`] succeeds.
    pub async fn open_member(url: &str, opts: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let display_url = redact_url(url);
        let config = parse_url(url, &display_url)?;
        let (mut client, connection) = config.connect(NoTls).await.map_err(|e| map_error(&display_url, &e))?;
        let driver = tokio::spawn(connection);
        let migrated = schema::migrate(&mut client, &display_url).await;
        drop(client);
        let _ = driver.await;
        migrated?;
        let fence = Arc::new(Fence::following(display_url.clone(), LockSlot::WHOLE));
        PostgresStore::assemble(display_url, config, fence, &opts)
    }

    /// The pool, the writer task and the member heartbeat around `fence`.
    fn assemble(display_url: String, config: Config, fence: Arc<Fence>, opts: &PostgresOptions) -> Result<PostgresStore, StoreError> {
        let pool = build_pool(with_idle_transaction_timeout(config.clone(), opts.lease), opts.max_connections)?;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let writer = Writer { pool: pool.clone(), max_batch: opts.max_batch_transitions.max(1), db: display_url.clone() };
        tokio::spawn(writer.run(rx));
        let terms = opts.terms(fence.slot);
        let url = Arc::new(Mutex::new(None));
        let heartbeat_task = Some(tokio::spawn(member::heartbeat(pool.clone(), terms.clone(), Arc::clone(&url))));
        Ok(PostgresStore {
            display_url,
            pool,
            writer: Some(tx),
            fence: Some(fence),
            stats: Arc::new(Stats::default()),
            lock: Mutex::new(None),
            config,
            terms,
            url,
            heartbeat_task,
            owns_pool: true,
        })
    }

    /// Holds `conn` (which holds the engine lock) and starts its keeper.
    fn keep_lock(&self, conn: lock::LockConnection, ended: oneshot::Receiver<()>) {
        let Some(fence) = &self.fence else { return };
        let current: CurrentLock = Arc::new(Mutex::new(Some(conn)));
        let keeper = tokio::spawn(lock::keep(self.config.clone(), self.terms.clone(), Arc::clone(fence), Arc::clone(&current), ended));
        *self.lock.lock().unwrap_or_else(|e| e.into_inner()) = Some((current, keeper));
    }

    /// For inspection while an engine runs: no engine lock; every write method
    /// returns [`StoreError::Unavailable`] ("read-only"). Refuses
    /// ([`StoreError::Schema`]) a database without redrive's schema or with
    /// another version of it; never creates the schema.
    pub async fn open_read_only(url: &str) -> Result<PostgresStore, StoreError> {
        let display_url = redact_url(url);
        let config = parse_url(url, &display_url)?;
        let pool = build_pool(config.clone(), DEFAULT_MAX_CONNECTIONS.min(2))?;
        {
            let client = pool.get().await.map_err(|e| match e {
                PoolError::Backend(e) => open_error(&display_url, &e),
                e => pool_error(&display_url, e),
            })?;
            let version = schema::schema_version(&client).await.map_err(|e| map_error(&display_url, &e))?;
            match version {
                None => {
                    return Err(StoreError::Schema(format!("{display_url} is not a redrive database (it has no schema_migrations table)")));
                }
                Some(v) if v > i64::from(SCHEMA_VERSION) => return Err(schema::newer_schema_error(&display_url, v)),
                Some(v) if v < i64::from(SCHEMA_VERSION) => {
                    return Err(StoreError::Schema(format!(
                        "{display_url} has schema version {v} but this redrive reads version {SCHEMA_VERSION}; \
                         open it once with a command that writes (e.g. the server) to upgrade it"
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(PostgresStore {
            display_url,
            pool,
            writer: None,
            fence: None,
            stats: Arc::new(Stats::default()),
            lock: Mutex::new(None),
            config,
            terms: PostgresOptions::default().terms(LockSlot::WHOLE),
            url: Arc::new(Mutex::new(None)),
            heartbeat_task: None,
            owns_pool: true,
        })
    }

    /// The shard this store drives (`None`: the whole database). A shard's
    /// store lists only that shard's executions and timers and refuses
    /// transitions of executions in other shards.
    pub fn shard(&self) -> Option<ShardId> {
        self.fence.as_ref().and_then(|f| f.slot.shard)
    }

    /// The refusal of a transition this store may not write: its execution is
    /// in another shard than the one this store drives.
    fn outside_shard(&self, t: &Transition) -> Option<TransitionError> {
        let held = self.shard()?;
        let shard = ShardId::of(t.target.name());
        (shard != held).then(|| TransitionError::OutsideShard { execution_id: t.execution_id.clone(), shard, held })
    }

    /// A store over the same database and connection pool that drives one
    /// shard: it follows until [`PostgresStore::try_lead`] takes that shard's
    /// lease, then writes under that lease's fencing token. Several shards'
    /// stores of one process share its pool and its writer: a group commits
    /// the writes of every shard that has some queued, checking each one's
    /// token. (`opts` gives the shard's lease terms; the writer keeps the
    /// settings of `self`.)
    pub fn shard_member(&self, shard: ShardId, opts: &PostgresOptions) -> Result<PostgresStore, StoreError> {
        let Some(writer) = self.writer.clone() else {
            return Err(StoreError::Unavailable(format!("{} was opened read-only; it cannot drive a shard", self.display_url)));
        };
        let fence = Arc::new(Fence::following(self.display_url.clone(), LockSlot::shard(shard)));
        Ok(PostgresStore {
            display_url: self.display_url.clone(),
            pool: self.pool.clone(),
            writer: Some(writer),
            terms: opts.terms(fence.slot),
            fence: Some(fence),
            stats: Arc::new(Stats::default()),
            lock: Mutex::new(None),
            config: self.config.clone(),
            url: Arc::clone(&self.url),
            heartbeat_task: None,
            owns_pool: false,
        })
    }

    pub fn is_read_only(&self) -> bool {
        self.writer.is_none()
    }

    /// The URL with any password replaced by `***` (for messages and logs).
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    /// Sends a request to the writer task (waiting while its queue is full),
    /// with this store's fence and statistics.
    async fn send(&self, request: WriteRequest) -> Result<(), StoreError> {
        let (Some(writer), Some(fence)) = (&self.writer, &self.fence) else {
            return Err(StoreError::Unavailable(format!("{} was opened read-only; writes are not possible", self.display_url)));
        };
        fence.check_not_lost()?;
        let queued = Queued { request, fence: Arc::clone(fence), stats: Arc::clone(&self.stats) };
        writer.send(queued).await.map_err(|_| writer_gone())
    }

    /// Runs a read query on a pooled connection; a connection that failed is
    /// dropped rather than returned to the pool.
    async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, StoreError> {
        if let Some(fence) = &self.fence {
            fence.check_not_lost()?;
        }
        let client = self.pool.get().await.map_err(|e| pool_error(&self.display_url, e))?;
        let result = async {
            let statement = client.prepare_cached(sql).await?;
            client.query(&statement, params).await
        }
        .await;
        match result {
            Ok(rows) => Ok(rows),
            Err(e) => {
                let error = map_error(&self.display_url, &e);
                if connection_broken(&e, &client) {
                    drop(Object::take(client));
                }
                Err(error)
            }
        }
    }

    async fn query_map<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.query(sql, params).await?.iter().map(f).collect()
    }

    async fn query_opt<T>(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        f: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.query(sql, params).await?.first().map(f).transpose()
    }

    async fn write_pipeline(
        &self,
        mode: PipelineMode,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> Result<PipelineRecord, StoreError> {
        check_definition(name, definition_json)?;
        nul::check(
            &format!("pipeline {name:?}"),
            [("name", Some(name)), ("definition", Some(definition_json)), ("source directory", source_dir)],
        )?;
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

    async fn write_dlq_queue(&self, write: DlqQueueWrite) -> Result<DlqQueueRecord, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::DlqQueue { write, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn write_redrive_run(&self, write: RedriveRunWrite) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::RedriveRun { write, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn write_auth(&self, write: crate::AuthWrite) -> Result<u64, StoreError> {
        auth::nul_problem(&write)?;
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::Auth { write, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }
}

impl Drop for PostgresStore {
    /// Stops the lock keeper and closes the lock connection at once (releasing
    /// the engine lock); the writer task ends once every store sharing it is
    /// dropped.
    fn drop(&mut self) {
        self.writer.take();
        if let Some(task) = self.heartbeat_task.take() {
            task.abort();
        }
        if let Some((current, keeper)) = self.lock.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            keeper.abort();
            if let Some(conn) = current.lock().unwrap_or_else(|e| e.into_inner()).take() {
                conn.close();
            }
        }
        // A shard's store shares its process's pool: the store that made the
        // pool closes it.
        if self.owns_pool {
            self.pool.close();
        }
    }
}

impl Store for PostgresStore {
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
        match version {
            None => self.query_opt(SQL_LATEST_LIVE_PIPELINE, &[&name], rows::pipeline_from_row).await,
            Some(v) => self.query_opt(SQL_PIPELINE_VERSION, &[&name, &i64::from(v)], rows::pipeline_from_row).await,
        }
    }

    async fn list_pipelines(&self, after_name: Option<&str>, limit: usize) -> Result<Vec<PipelineRecord>, StoreError> {
        let limit = page_size(limit) as i64;
        match after_name {
            None => self.query_map(SQL_LIST_PIPELINES, &[&limit], rows::pipeline_from_row).await,
            Some(after) => self.query_map(SQL_LIST_PIPELINES_AFTER, &[&limit, &after], rows::pipeline_from_row).await,
        }
    }

    async fn commit(&self, transitions: Arc<[Transition]>) -> Result<CommitResult, StoreError> {
        check_commit(&transitions)?;
        let refusals: Vec<Option<TransitionError>> = transitions
            .iter()
            .map(|t| {
                let problem = check_transition(t).err().or_else(|| nul::transition_problem(t));
                problem.map(TransitionError::Limit).or_else(|| self.outside_shard(t))
            })
            .collect();
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
                Some(refusal) => Err(refusal),
                None => applied.next().expect("one result per valid transition"),
            })
            .collect())
    }

    async fn quarantine_execution(&self, id: &str, status: &str, fault: ExecutionFault, at: Timestamp) -> Result<Option<u64>, StoreError> {
        check_fault(id, &fault)?;
        let fields = [
            ("status", Some(status)),
            ("fault type", Some(fault.exception_type.as_str())),
            ("fault message", Some(fault.message.as_str())),
        ];
        nul::check(&format!("quarantine of execution {id}"), fields)?;
        let (reply, rx) = oneshot::channel();
        let shard = self.shard().map(shards::column);
        self.send(WriteRequest::Quarantine { id: id.to_owned(), status: status.to_owned(), fault, at, shard, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn get_execution(&self, id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        self.query_opt(SQL_GET_EXECUTION, &[&id], rows::execution_from_row).await
    }

    async fn get_executions(&self, ids: &[String]) -> Result<Vec<ExecutionRecord>, StoreError> {
        crate::check_executions_per_read(ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // A shard's engine reads its own executions only: another shard's is
        // never installed in its memory (it is "not found" here).
        match self.shard().map(shards::column) {
            None => self.query_map(SQL_GET_EXECUTIONS, &[&ids], rows::execution_from_row).await,
            Some(shard) => self.query_map(SQL_SHARD_GET_EXECUTIONS, &[&ids, &shard], rows::execution_from_row).await,
        }
    }

    async fn list_executions(&self, filter: ExecutionFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
        let limit = page_size(filter.limit) as i64;
        let shard = self.shard().map(shards::column);
        let sql = list_executions_sql(filter.target.is_some(), filter.unfinished_only, filter.before.is_some(), shard.is_some());
        let kind = filter.target.as_ref().map(|t| t.kind.as_str());
        let cursor_at = filter.before.as_ref().map(|c| c.created_at.unix_ms());
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&limit];
        if let (Some(target), Some(kind)) = (&filter.target, &kind) {
            params.push(kind);
            params.push(&target.name);
        }
        if let (Some(cursor), Some(at)) = (&filter.before, &cursor_at) {
            params.push(at);
            params.push(&cursor.id);
        }
        if let Some(shard) = &shard {
            params.push(shard);
        }
        self.query_map(&sql, &params, rows::execution_from_row).await
    }

    async fn ledger(&self, execution_id: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        self.query_map(SQL_LEDGER, &[&execution_id], rows::ledger_from_row).await
    }

    async fn list_ledger(&self, filter: LedgerFilter) -> Result<Vec<LedgerEntry>, StoreError> {
        let limit = page_size(filter.limit) as i64;
        let sql = list_ledger_sql(filter.execution_id.is_some(), filter.before_seq.is_some());
        let kind = filter.target.kind.as_str();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&limit, &kind, &filter.target.name];
        if let Some(execution_id) = &filter.execution_id {
            params.push(execution_id);
        }
        if let Some(before) = &filter.before_seq {
            params.push(before);
        }
        self.query_map(&sql, &params, rows::ledger_from_row).await
    }

    async fn due_timers(&self, now: Timestamp, limit: usize) -> Result<Vec<TimerRecord>, StoreError> {
        let limit = limit.min(MAX_PAGE_SIZE) as i64;
        if limit == 0 {
            return Ok(Vec::new());
        }
        match self.shard().map(shards::column) {
            None => self.query_map(SQL_DUE_TIMERS, &[&now.unix_ms(), &limit], rows::timer_from_row).await,
            Some(shard) => self.query_map(SQL_SHARD_DUE_TIMERS, &[&now.unix_ms(), &limit, &shard], rows::timer_from_row).await,
        }
    }

    async fn due_timers_after(&self, now: Timestamp, after: &TimerRecord, limit: usize) -> Result<Vec<TimerRecord>, StoreError> {
        let limit = limit.min(MAX_PAGE_SIZE) as i64;
        if limit == 0 {
            return Ok(Vec::new());
        }
        let params: [&(dyn ToSql + Sync); 5] = [&now.unix_ms(), &after.due_at.unix_ms(), &after.execution_id, &after.key, &limit];
        match self.shard().map(shards::column) {
            None => self.query_map(SQL_DUE_TIMERS_AFTER, &params, rows::timer_from_row).await,
            Some(shard) => {
                let params: Vec<&(dyn ToSql + Sync)> = params.into_iter().chain([&shard as &(dyn ToSql + Sync)]).collect();
                self.query_map(SQL_SHARD_DUE_TIMERS_AFTER, &params, rows::timer_from_row).await
            }
        }
    }

    async fn next_timer_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let due = match self.shard().map(shards::column) {
            None => self.query_opt(SQL_NEXT_TIMER_DUE, &[], rows::optional_timestamp_from_row).await?,
            Some(shard) => self.query_opt(SQL_SHARD_NEXT_TIMER_DUE, &[&shard], rows::optional_timestamp_from_row).await?,
        };
        Ok(due.flatten())
    }

    async fn count_timers(&self) -> Result<u64, StoreError> {
        let count = match self.shard().map(shards::column) {
            None => self.query_opt(SQL_COUNT_TIMERS, &[], rows::count_from_row).await?,
            Some(shard) => self.query_opt(SQL_SHARD_COUNT_TIMERS, &[&shard], rows::count_from_row).await?,
        };
        Ok(count.unwrap_or(0))
    }

    async fn execution_timers(&self, execution_id: &str) -> Result<Vec<TimerRecord>, StoreError> {
        self.query_map(SQL_EXECUTION_TIMERS, &[&execution_id], rows::timer_from_row).await
    }

    async fn ensure_dlq_queue(&self, name: &str, now: Timestamp) -> Result<DlqQueueRecord, StoreError> {
        check_dlq_queue_name(name)?;
        nul::check("dead-letter queue", [("name", Some(name))])?;
        self.write_dlq_queue(DlqQueueWrite { name: name.to_owned(), max_redrives: None, now }).await
    }

    async fn configure_dlq_queue(&self, name: &str, max_redrives: u32, now: Timestamp) -> Result<DlqQueueRecord, StoreError> {
        check_dlq_queue_name(name)?;
        nul::check("dead-letter queue", [("name", Some(name))])?;
        check_max_redrives(name, max_redrives)?;
        self.write_dlq_queue(DlqQueueWrite { name: name.to_owned(), max_redrives: Some(max_redrives), now }).await
    }

    async fn get_dlq_queue(&self, name: &str) -> Result<Option<DlqQueueStats>, StoreError> {
        self.query_opt(SQL_GET_DLQ_QUEUE, &[&name], rows::dlq_queue_stats_from_row).await
    }

    async fn list_dlq_queues(
        &self,
        prefix: Option<&str>,
        after_name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DlqQueueStats>, StoreError> {
        let limit = page_size(limit) as i64;
        let prefix = prefix.filter(|p| !p.is_empty());
        let prefix_end = prefix.and_then(prefix_upper_bound);
        let sql = list_dlq_queues_sql(prefix.is_some(), prefix_end.is_some(), after_name.is_some());
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&limit];
        if let Some(prefix) = &prefix {
            params.push(prefix);
        }
        if let Some(end) = &prefix_end {
            params.push(end);
        }
        if let Some(after) = &after_name {
            params.push(after);
        }
        self.query_map(&sql, &params, rows::dlq_queue_stats_from_row).await
    }

    async fn get_dlq_entry(&self, id: &str) -> Result<Option<DlqEntryRecord>, StoreError> {
        self.query_opt(SQL_GET_DLQ_ENTRY, &[&id], rows::dlq_entry_from_row).await
    }

    async fn list_dlq_entries(&self, filter: DlqEntryFilter) -> Result<Vec<DlqEntryRecord>, StoreError> {
        let limit = page_size(filter.limit) as i64;
        let query = DlqEntryQuery::new(&filter, filter.state, true);
        let mut params = query.params();
        params.push(&limit);
        self.query_map(&query.list_sql(), &params, rows::dlq_entry_from_row).await
    }

    async fn count_dlq_entries(&self, filter: DlqEntryFilter) -> Result<u64, StoreError> {
        let query = DlqEntryQuery::new(&filter, filter.state, false);
        Ok(self.query_opt(&query.count_sql(), &query.params(), rows::count_from_row).await?.unwrap_or(0))
    }

    async fn purge_dlq_entries(&self, filter: DlqEntryFilter) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::PurgeDlq { filter, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn create_redrive_run(&self, run: RedriveRunRecord) -> Result<(), StoreError> {
        check_redrive_run(&run)?;
        nul::check(&format!("redrive run {:?}", run.id), redrive_run_fields(&run))?;
        self.write_redrive_run(RedriveRunWrite::Create(run)).await
    }

    async fn update_redrive_run(&self, run: RedriveRunRecord) -> Result<(), StoreError> {
        check_redrive_run(&run)?;
        nul::check(&format!("redrive run {:?}", run.id), redrive_run_fields(&run))?;
        self.write_redrive_run(RedriveRunWrite::Update(run)).await
    }

    async fn get_redrive_run(&self, id: &str) -> Result<Option<RedriveRunRecord>, StoreError> {
        self.query_opt(SQL_GET_REDRIVE_RUN, &[&id], rows::redrive_run_from_row).await
    }

    async fn list_redrive_runs(&self, filter: RedriveRunFilter) -> Result<Vec<RedriveRunRecord>, StoreError> {
        let limit = page_size(filter.limit) as i64;
        let sql = list_redrive_runs_sql(filter.schedule.is_some(), filter.before.is_some());
        let cursor_at = filter.before.as_ref().map(|(at, _)| at.unix_ms());
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&limit];
        if let Some(schedule) = &filter.schedule {
            params.push(schedule);
        }
        if let (Some((_, id)), Some(at)) = (&filter.before, &cursor_at) {
            params.push(at);
            params.push(id);
        }
        self.query_map(&sql, &params, rows::redrive_run_from_row).await
    }

    async fn interrupt_redrive_runs(&self, now: Timestamp) -> Result<u64, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::InterruptRedriveRuns { now, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn create_token(&self, token: crate::TokenRecord) -> Result<(), StoreError> {
        crate::validate::check_token(&token)?;
        self.write_auth(crate::AuthWrite::CreateToken(token)).await.map(drop)
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.write_auth(crate::AuthWrite::RevokeToken(name.to_owned())).await? > 0)
    }

    async fn list_tokens(&self) -> Result<Vec<crate::TokenRecord>, StoreError> {
        self.query_map(auth::SQL_LIST_TOKENS, &[], auth::token_from_row).await
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<crate::TokenRecord>, StoreError> {
        if token_hash.contains('\0') {
            return Ok(None);
        }
        self.query_opt(auth::SQL_TOKEN_BY_HASH, &[&token_hash], auth::token_from_row).await
    }

    async fn append_audit(&self, record: crate::AuditRecord) -> Result<u64, StoreError> {
        crate::validate::check_audit(&record)?;
        self.write_auth(crate::AuthWrite::AppendAudit(record)).await
    }

    async fn list_audit(&self, filter: crate::AuditFilter) -> Result<Vec<crate::AuditRecord>, StoreError> {
        let limit = page_size(filter.limit) as i64;
        let before = filter.before_seq.map_or(i64::MAX, |s| s.min(i64::MAX as u64) as i64);
        self.query_map(auth::SQL_LIST_AUDIT, &[&before, &limit], auth::audit_from_row).await
    }
    async fn put_dependencies(&self, records: Vec<crate::DependencyRecord>) -> Result<(), StoreError> {
        crate::validate::check_dependencies(&records)?;
        dependencies::nul_problem(&records)?;
        if records.is_empty() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        let shard = self.shard().map(shards::column);
        self.send(WriteRequest::Dependencies { records, shard, reply }).await?;
        rx.await.map_err(|_| writer_gone())?.map(drop)
    }

    async fn list_dependencies(&self) -> Result<Vec<crate::DependencyRecord>, StoreError> {
        match self.shard().map(shards::column) {
            None => self.query_map(dependencies::SQL_LIST, &[], dependencies::from_row).await,
            Some(shard) => self.query_map(dependencies::SQL_LIST_SHARD, &[&shard], dependencies::from_row).await,
        }
    }

    async fn list_shard_dependencies(&self) -> Result<Vec<crate::ShardDependencyRecord>, StoreError> {
        self.query_map(dependencies::SQL_LIST_SHARDS, &[], dependencies::shard_record_from_row).await
    }

    async fn write_bulk_retry(&self, write: crate::BulkWrite) -> Result<u64, StoreError> {
        write.check()?;
        bulk::nul_problem(&write)?;
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::Bulk { write, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn get_bulk_retry(&self, id: &str) -> Result<Option<crate::BulkRetryRecord>, StoreError> {
        if id.contains('\0') {
            return Ok(None);
        }
        self.query_opt(bulk::SQL_GET, &[&id], bulk::record_from_row).await
    }

    async fn list_bulk_retries(
        &self,
        pipeline: &str,
        before: Option<(Timestamp, String)>,
        limit: usize,
    ) -> Result<Vec<crate::BulkRetryRecord>, StoreError> {
        if pipeline.contains('\0') {
            return Ok(Vec::new());
        }
        let (at, id) = before.unwrap_or((Timestamp::from_unix_ms(i64::MAX), String::new()));
        let limit = page_size(limit) as i64;
        self.query_map(bulk::SQL_LIST, &[&pipeline, &at.unix_ms(), &id, &limit], bulk::record_from_row).await
    }

    async fn list_bulk_retry_results(&self, op_id: &str, after_seq: u64, limit: usize) -> Result<Vec<crate::BulkRetryResult>, StoreError> {
        if op_id.contains('\0') {
            return Ok(Vec::new());
        }
        let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
        let limit = page_size(limit) as i64;
        self.query_map(bulk::SQL_RESULTS, &[&op_id, &after, &limit], bulk::result_from_row).await
    }

    async fn prune_candidates(&self, query: PruneQuery) -> Result<Vec<PruneCandidate>, StoreError> {
        let limit = page_size(query.limit) as i64;
        let (at, id) = query.after.as_ref().map_or((-1, ""), |c| (c.created_at.unix_ms(), c.id.as_str()));
        let before = query.finished_before.unix_ms();
        // A shard's store prunes that shard's executions only.
        let shard = self.shard().map(shards::column);
        self.query_map(SQL_PRUNE_CANDIDATES, &[&before, &at, &id, &limit, &shard], rows::prune_candidate_from_row).await
    }

    async fn prune(&self, step: PruneStep) -> Result<PruneCounts, StoreError> {
        check_prune_step(&step)?;
        let (reply, rx) = oneshot::channel();
        self.send(WriteRequest::Prune { step, reply }).await?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn count_prunable(&self, step: PruneStep) -> Result<PruneCounts, StoreError> {
        let mut counts = PruneCounts::default();
        if let Some(before) = step.resolved_entries_before {
            counts.dlq_entries =
                self.query_opt(SQL_COUNT_PRUNABLE_DLQ_ENTRIES, &[&before.unix_ms()], rows::count_from_row).await?.unwrap_or(0);
        }
        if let Some(before) = step.runs_finished_before {
            counts.redrive_runs =
                self.query_opt(SQL_COUNT_PRUNABLE_REDRIVE_RUNS, &[&before.unix_ms()], rows::count_from_row).await?.unwrap_or(0);
        }
        if let Some(before) = step.bulk_retries_finished_before {
            counts.bulk_retries = self.query_opt(bulk::SQL_COUNT_PRUNABLE, &[&before.unix_ms()], rows::count_from_row).await?.unwrap_or(0);
        }
        if let Some(before) = step.audit_before {
            counts.audit_records = self.query_opt(SQL_COUNT_PRUNABLE_AUDIT, &[&before.unix_ms()], rows::count_from_row).await?.unwrap_or(0);
        }
        Ok(counts)
    }

    fn stats(&self) -> CommitStats {
        self.stats.snapshot()
    }

    fn driven_shard(&self) -> Option<ShardId> {
        self.shard()
    }

    async fn cluster(&self) -> Result<crate::ClusterRecord, StoreError> {
        self.read_cluster().await
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn redrive_run_fields(run: &RedriveRunRecord) -> [(&'static str, Option<&str>); 5] {
    [
        ("id", Some(run.id.as_str())),
        ("schedule", run.schedule.as_deref()),
        ("status", Some(run.status.as_str())),
        ("request", Some(run.request_json.as_str())),
        ("summary", Some(run.summary_json.as_str())),
    ]
}

/// A listing's `limit` as a page size: 0 means the largest page.
fn page_size(limit: usize) -> usize {
    if limit == 0 { MAX_PAGE_SIZE } else { limit.min(MAX_PAGE_SIZE) }
}

fn wall_clock_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn parse_url(url: &str, display_url: &str) -> Result<Config, StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::InvalidLocation(format!(
            "{display_url} is not a PostgreSQL URL (expected postgres://USER[:PASS]@HOST[:PORT]/DB)"
        )));
    }
    let mut config: Config = url.parse().map_err(|e: tokio_postgres::Error| {
        StoreError::InvalidLocation(format!("invalid PostgreSQL URL {display_url}: {}", describe(&e)))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    // A silent network (a cable pulled, a firewall dropping packets) fails a
    // call within seconds instead of hanging it until the kernel gives up
    // (hours): the store then degrades (503) and reconnects.
    config.keepalives(true).keepalives_idle(KEEPALIVE_IDLE).keepalives_interval(KEEPALIVE_INTERVAL).keepalives_retries(KEEPALIVE_RETRIES);
    config.tcp_user_timeout(TCP_USER_TIMEOUT);
    if config.get_application_name().is_none() {
        config.application_name("redrive");
    }
    // A commit is acknowledged only once durable, whatever the server's default.
    let options = match config.get_options() {
        Some(given) => format!("{given} -c synchronous_commit=on"),
        None => "-c synchronous_commit=on".to_owned(),
    };
    config.options(options);
    Ok(config)
}

/// The pool's sessions end a transaction left open longer than `lease`: a
/// process stopped in the middle of a write group (SIGSTOP, a long pause)
/// would otherwise keep the `FOR SHARE` locks of its group's lock rows — and
/// with them block the process taking its shards over — until it runs again.
/// Its late statements then fail like any other of a process that lost its lease.
fn with_idle_transaction_timeout(mut config: Config, lease: Duration) -> Config {
    let ms = lease.as_millis().max(1);
    let setting = format!("-c idle_in_transaction_session_timeout={ms}");
    let options = match config.get_options() {
        Some(given) => format!("{given} {setting}"),
        None => setting,
    };
    config.options(options);
    config
}

fn build_pool(config: Config, max_connections: usize) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(max_connections.max(2))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(POOL_WAIT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Unavailable(format!("cannot create the connection pool: {e}")))
}

/// `url` with its password replaced by `***` (in the user info and in a
/// `password=` query parameter).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else { return url.to_owned() };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    // The user info ends at the last '@' before the query string.
    let at = rest[..rest.find('?').unwrap_or(rest.len())].rfind('@');
    let mut out = String::from(scheme);
    let tail = match at {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..=q]);
            let params: Vec<String> = tail[q + 1..]
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

/// An error with its cause (tokio-postgres prints only its kind).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{db} (SQLSTATE {})", db.code().code()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Classifies a PostgreSQL error. A damaged or foreign schema (undefined
/// table/column, class 42) is [`StoreError::Schema`]; everything else —
/// connection refused or closed, timeouts, admin shutdown (57P01), disk full
/// (53100), a constraint or trigger — is [`StoreError::Unavailable`].
fn map_error(db: &str, e: &tokio_postgres::Error) -> StoreError {
    match e.code().map(|c| c.code()) {
        Some(code) if code.starts_with("42") => {
            StoreError::Schema(format!("{db}: the schema is not what this redrive expects: {}", describe(e)))
        }
        Some(_) => StoreError::Unavailable(format!("{db}: {}", describe(e))),
        None => StoreError::Unavailable(format!("cannot reach PostgreSQL at {db}: {}", describe(e))),
    }
}

/// Like [`map_error`], for the first connection of an open: a database that
/// does not exist is [`StoreError::NotFound`].
fn open_error(db: &str, e: &tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(code) if *code == tokio_postgres::error::SqlState::INVALID_CATALOG_NAME => StoreError::NotFound(format!(
            "the PostgreSQL database {db} does not exist; create it first (e.g. createdb, or CREATE DATABASE)"
        )),
        _ => map_error(db, e),
    }
}

fn pool_error(db: &str, e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => map_error(db, &e),
        PoolError::Timeout(kind) => StoreError::Unavailable(format!("cannot reach PostgreSQL at {db}: timed out ({kind:?})")),
        other => StoreError::Unavailable(format!("cannot reach PostgreSQL at {db}: {other}")),
    }
}

/// Whether the connection that produced `e` must not be reused: it is closed,
/// the error is not a server's answer (I/O, protocol), or the server ended or
/// will end the session (classes 08, 57, 58, XX).
fn connection_broken(e: &tokio_postgres::Error, client: &Object) -> bool {
    if client.is_closed() || e.is_closed() {
        return true;
    }
    match e.code() {
        None => true,
        Some(code) => matches!(&code.code()[..2], "08" | "57" | "58" | "XX"),
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("the PostgreSQL writer task has stopped".into())
}

/// Polls every future together (so tokio-postgres pipelines their queries),
/// returning their outputs in order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(redact_url("postgres://h/db"), "postgres://h/db");
        assert_eq!(redact_url("postgres://u:p%40ss@h/db?password=x&sslmode=disable"), "postgres://u:***@h/db?password=***&sslmode=disable");
        assert_eq!(redact_url("postgres://u:pa/ss@h/db"), "postgres://u:***@h/db");
    }

    #[test]
    fn pool_sessions_end_transactions_idle_past_the_lease() {
        let config = parse_url("postgres://u@h/db", "postgres://u@h/db").unwrap();
        let config = with_idle_transaction_timeout(config, Duration::from_secs(10));
        assert_eq!(config.get_options(), Some("-c synchronous_commit=on -c idle_in_transaction_session_timeout=10000"));
    }

    #[test]
    fn prefix_bounds() {
        assert_eq!(prefix_upper_bound("retry-").as_deref(), Some("retry."));
        assert_eq!(prefix_upper_bound(""), None);
    }
}
