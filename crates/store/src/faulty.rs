//! [`FaultyStore`]: a [`Store`] wrapper that injects failures on demand, for
//! testing how the engine behaves when storage is unavailable.
//!
//! Faults are controlled through atomics, so a test can flip them while other
//! tasks use the store. An injected fault is always
//! [`StoreError::Unavailable`] with the message [`INJECTED_FAULT`].

use crate::{
    CommitResult, CommitStats, DlqEntryFilter, DlqEntryRecord, DlqQueueRecord, DlqQueueStats, ExecutionFilter, ExecutionRecord,
    LedgerEntry, LedgerFilter, PipelineRecord, PruneCandidate, PruneCounts, PruneQuery, PruneStep, RedriveRunFilter, RedriveRunRecord,
    Store, StoreError, TimerRecord, Transition, TransitionError,
};
use redrive_core::time::Timestamp;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The message of every injected [`StoreError::Unavailable`].
pub const INJECTED_FAULT: &str = "injected fault";

/// One kind of fault: "fail the next n calls" plus "fail every call while set".
#[derive(Default)]
struct FaultSwitch {
    next: AtomicU64,
    always: AtomicBool,
}

impl FaultSwitch {
    /// Whether this call should fail, consuming one of the `next` failures.
    fn trip(&self) -> bool {
        if self.always.load(Ordering::SeqCst) {
            return true;
        }
        self.next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

/// Delegates to `inner` unless told to fail.
///
/// - commit faults: [`Store::commit`] (and [`Store::quarantine_execution`]) fails
///   *without* calling the inner store,
///   so nothing is written;
/// - lost-ack faults: `commit` reaches the inner store (the data is committed)
///   but the caller still gets an error, like a connection dropped after COMMIT;
/// - pipeline faults ("admin writes"): every pipeline write
///   ([`Store::put_pipeline`], [`Store::create_pipeline`],
///   [`Store::update_pipeline`], [`Store::delete_pipeline`]) and every other
///   write outside `commit` ([`Store::ensure_dlq_queue`],
///   [`Store::configure_dlq_queue`], [`Store::purge_dlq_entries`],
///   [`Store::create_redrive_run`], [`Store::update_redrive_run`],
///   [`Store::interrupt_redrive_runs`]) fails without writing;
/// - read faults: every query method fails (including [`Store::list_pipelines`],
///   [`Store::list_ledger`] and the dead-letter and redrive-run queries).
///
/// - lost-store faults: every write fails with [`StoreError::Lost`] (the file
///   was deleted underneath), which is not transient;
/// - refused executions: a transition of a named execution is refused alone
///   with [`TransitionError::Limit`] (the others of its commit go through),
///   like a store whose last-line limit check disagrees with the engine's.
///
/// [`Store::stats`] is never faulted.
pub struct FaultyStore<S: Store> {
    inner: S,
    commits: FaultSwitch,
    lost_acks: FaultSwitch,
    pipelines: FaultSwitch,
    reads: FaultSwitch,
    lost: AtomicBool,
    refused: std::sync::Mutex<std::collections::HashSet<String>>,
    injected: AtomicU64,
}

impl<S: Store> FaultyStore<S> {
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            commits: FaultSwitch::default(),
            lost_acks: FaultSwitch::default(),
            pipelines: FaultSwitch::default(),
            reads: FaultSwitch::default(),
            lost: AtomicBool::new(false),
            refused: std::sync::Mutex::new(std::collections::HashSet::new()),
            injected: AtomicU64::new(0),
        }
    }

    /// The wrapped store (unfaulted access, e.g. to check what was written).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The next `n` commits fail without writing anything.
    pub fn fail_next_commits(&self, n: u64) {
        self.commits.next.store(n, Ordering::SeqCst);
    }

    /// While `true`, every commit fails without writing anything.
    pub fn set_fail_commits(&self, fail: bool) {
        self.commits.always.store(fail, Ordering::SeqCst);
    }

    /// The next `n` commits are applied by the inner store, but report failure.
    pub fn lose_next_commit_acks(&self, n: u64) {
        self.lost_acks.next.store(n, Ordering::SeqCst);
    }

    /// The next `n` admin writes (pipeline put, create, update or delete, and the
    /// dead-letter-queue and redrive-run writes) fail without writing anything.
    pub fn fail_next_pipeline_writes(&self, n: u64) {
        self.pipelines.next.store(n, Ordering::SeqCst);
    }

    /// While `true`, every admin write (see [`FaultyStore::fail_next_pipeline_writes`])
    /// fails without writing anything.
    pub fn set_fail_pipeline_writes(&self, fail: bool) {
        self.pipelines.always.store(fail, Ordering::SeqCst);
    }

    /// The next `n` pipeline writes fail; same as
    /// [`FaultyStore::fail_next_pipeline_writes`] (named when `put_pipeline` was
    /// the only one).
    pub fn fail_next_put_pipelines(&self, n: u64) {
        self.fail_next_pipeline_writes(n);
    }

    /// Same as [`FaultyStore::set_fail_pipeline_writes`].
    pub fn set_fail_put_pipelines(&self, fail: bool) {
        self.set_fail_pipeline_writes(fail);
    }

    /// The next `n` reads (any query method) fail.
    pub fn fail_next_reads(&self, n: u64) {
        self.reads.next.store(n, Ordering::SeqCst);
    }

    /// While `true`, every read fails.
    pub fn set_fail_reads(&self, fail: bool) {
        self.reads.always.store(fail, Ordering::SeqCst);
    }

    /// While `true`, every commit and quarantine fails with [`StoreError::Lost`].
    pub fn set_lost(&self, lost: bool) {
        self.lost.store(lost, Ordering::SeqCst);
    }

    /// From now on, every transition of `execution_id` is refused alone with
    /// [`TransitionError::Limit`] (message [`INJECTED_FAULT`]).
    pub fn refuse_execution(&self, execution_id: &str) {
        self.refused.lock().unwrap_or_else(|e| e.into_inner()).insert(execution_id.to_string());
    }

    /// Clears every pending and permanent fault.
    pub fn heal(&self) {
        for switch in [&self.commits, &self.lost_acks, &self.pipelines, &self.reads] {
            switch.next.store(0, Ordering::SeqCst);
            switch.always.store(false, Ordering::SeqCst);
        }
        self.lost.store(false, Ordering::SeqCst);
        self.refused.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// How many faults have been injected so far.
    pub fn injected_faults(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }

    fn check_lost(&self) -> Result<(), StoreError> {
        if self.lost.load(Ordering::SeqCst) {
            self.injected.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::Lost(INJECTED_FAULT.into()));
        }
        Ok(())
    }

    fn check(&self, switch: &FaultSwitch) -> Result<(), StoreError> {
        if switch.trip() {
            self.injected.fetch_add(1, Ordering::SeqCst);
            Err(StoreError::Unavailable(INJECTED_FAULT.into()))
        } else {
            Ok(())
        }
    }
}

impl<S: Store> Store for FaultyStore<S> {
    async fn put_pipeline(
        &self,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> Result<PipelineRecord, StoreError> {
        self.check(&self.pipelines)?;
        self.inner.put_pipeline(name, definition_json, source_dir, now).await
    }

    async fn create_pipeline(
        &self,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> Result<PipelineRecord, StoreError> {
        self.check(&self.pipelines)?;
        self.inner.create_pipeline(name, definition_json, source_dir, now).await
    }

    async fn update_pipeline(
        &self,
        name: &str,
        definition_json: &str,
        source_dir: Option<&str>,
        now: Timestamp,
    ) -> Result<PipelineRecord, StoreError> {
        self.check(&self.pipelines)?;
        self.inner.update_pipeline(name, definition_json, source_dir, now).await
    }

    async fn delete_pipeline(&self, name: &str, now: Timestamp) -> Result<bool, StoreError> {
        self.check(&self.pipelines)?;
        self.inner.delete_pipeline(name, now).await
    }

    async fn get_pipeline(&self, name: &str, version: Option<u32>) -> Result<Option<PipelineRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.get_pipeline(name, version).await
    }

    async fn list_pipelines(&self, after_name: Option<&str>, limit: usize) -> Result<Vec<PipelineRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.list_pipelines(after_name, limit).await
    }

    async fn commit(&self, transitions: std::sync::Arc<[Transition]>) -> Result<CommitResult, StoreError> {
        self.check_lost()?;
        self.check(&self.commits)?;
        let refused: Vec<bool> = {
            let ids = self.refused.lock().unwrap_or_else(|e| e.into_inner());
            transitions.iter().map(|t| ids.contains(&t.execution_id)).collect()
        };
        if !refused.iter().any(|r| *r) {
            let result = self.inner.commit(transitions).await?;
            self.check(&self.lost_acks)?;
            return Ok(result);
        }
        let passed: Vec<Transition> = transitions.iter().zip(&refused).filter(|(_, r)| !**r).map(|(t, _)| t.clone()).collect();
        let mut applied = if passed.is_empty() { Vec::new() } else { self.inner.commit(passed.into()).await? }.into_iter();
        self.check(&self.lost_acks)?;
        Ok(refused
            .into_iter()
            .map(|r| if r { Err(TransitionError::Limit(INJECTED_FAULT.into())) } else { applied.next().expect("one result each") })
            .collect())
    }

    async fn quarantine_execution(
        &self,
        id: &str,
        status: &str,
        fault: crate::ExecutionFault,
        at: Timestamp,
    ) -> Result<Option<u64>, StoreError> {
        self.check_lost()?;
        self.check(&self.commits)?;
        self.inner.quarantine_execution(id, status, fault, at).await
    }

    async fn get_execution(&self, id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.get_execution(id).await
    }

    async fn get_executions(&self, ids: &[String]) -> Result<Vec<ExecutionRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.get_executions(ids).await
    }

    async fn list_executions(&self, filter: ExecutionFilter) -> Result<Vec<ExecutionRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.list_executions(filter).await
    }

    async fn ledger(&self, execution_id: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        self.check(&self.reads)?;
        self.inner.ledger(execution_id).await
    }

    async fn list_ledger(&self, filter: LedgerFilter) -> Result<Vec<LedgerEntry>, StoreError> {
        self.check(&self.reads)?;
        self.inner.list_ledger(filter).await
    }

    async fn due_timers(&self, now: Timestamp, limit: usize) -> Result<Vec<TimerRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.due_timers(now, limit).await
    }

    async fn next_timer_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.check(&self.reads)?;
        self.inner.next_timer_due().await
    }

    async fn due_timers_after(&self, now: Timestamp, after: &TimerRecord, limit: usize) -> Result<Vec<TimerRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.due_timers_after(now, after, limit).await
    }

    async fn count_timers(&self) -> Result<u64, StoreError> {
        self.check(&self.reads)?;
        self.inner.count_timers().await
    }

    async fn execution_timers(&self, execution_id: &str) -> Result<Vec<TimerRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.execution_timers(execution_id).await
    }

    async fn ensure_dlq_queue(&self, name: &str, now: Timestamp) -> Result<DlqQueueRecord, StoreError> {
        self.check(&self.pipelines)?;
        self.inner.ensure_dlq_queue(name, now).await
    }

    async fn configure_dlq_queue(&self, name: &str, max_redrives: u32, now: Timestamp) -> Result<DlqQueueRecord, StoreError> {
        self.check(&self.pipelines)?;
        self.inner.configure_dlq_queue(name, max_redrives, now).await
    }

    async fn get_dlq_queue(&self, name: &str) -> Result<Option<DlqQueueStats>, StoreError> {
        self.check(&self.reads)?;
        self.inner.get_dlq_queue(name).await
    }

    async fn list_dlq_queues(
        &self,
        prefix: Option<&str>,
        after_name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DlqQueueStats>, StoreError> {
        self.check(&self.reads)?;
        self.inner.list_dlq_queues(prefix, after_name, limit).await
    }

    async fn get_dlq_entry(&self, id: &str) -> Result<Option<DlqEntryRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.get_dlq_entry(id).await
    }

    async fn list_dlq_entries(&self, filter: DlqEntryFilter) -> Result<Vec<DlqEntryRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.list_dlq_entries(filter).await
    }

    async fn count_dlq_entries(&self, filter: DlqEntryFilter) -> Result<u64, StoreError> {
        self.check(&self.reads)?;
        self.inner.count_dlq_entries(filter).await
    }

    async fn purge_dlq_entries(&self, filter: DlqEntryFilter) -> Result<u64, StoreError> {
        self.check(&self.pipelines)?;
        self.inner.purge_dlq_entries(filter).await
    }

    async fn create_redrive_run(&self, run: RedriveRunRecord) -> Result<(), StoreError> {
        self.check(&self.pipelines)?;
        self.inner.create_redrive_run(run).await
    }

    async fn update_redrive_run(&self, run: RedriveRunRecord) -> Result<(), StoreError> {
        self.check(&self.pipelines)?;
        self.inner.update_redrive_run(run).await
    }

    async fn get_redrive_run(&self, id: &str) -> Result<Option<RedriveRunRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.get_redrive_run(id).await
    }

    async fn list_redrive_runs(&self, filter: RedriveRunFilter) -> Result<Vec<RedriveRunRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.list_redrive_runs(filter).await
    }

    async fn interrupt_redrive_runs(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.check(&self.pipelines)?;
        self.inner.interrupt_redrive_runs(now).await
    }

    async fn create_token(&self, token: crate::TokenRecord) -> Result<(), StoreError> {
        self.check(&self.pipelines)?;
        self.inner.create_token(token).await
    }

    async fn revoke_token(&self, name: &str) -> Result<bool, StoreError> {
        self.check(&self.pipelines)?;
        self.inner.revoke_token(name).await
    }

    async fn list_tokens(&self) -> Result<Vec<crate::TokenRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.list_tokens().await
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<crate::TokenRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.token_by_hash(token_hash).await
    }

    async fn append_audit(&self, record: crate::AuditRecord) -> Result<u64, StoreError> {
        self.check(&self.pipelines)?;
        self.inner.append_audit(record).await
    }

    async fn list_audit(&self, filter: crate::AuditFilter) -> Result<Vec<crate::AuditRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.list_audit(filter).await
    }
    async fn put_dependencies(&self, records: Vec<crate::DependencyRecord>) -> Result<(), StoreError> {
        self.check(&self.pipelines)?;
        self.inner.put_dependencies(records).await
    }

    async fn list_dependencies(&self) -> Result<Vec<crate::DependencyRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.list_dependencies().await
    }

    async fn list_shard_dependencies(&self) -> Result<Vec<crate::ShardDependencyRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.list_shard_dependencies().await
    }

    async fn write_bulk_retry(&self, write: crate::BulkWrite) -> Result<u64, StoreError> {
        self.check(&self.pipelines)?;
        self.inner.write_bulk_retry(write).await
    }

    async fn get_bulk_retry(&self, id: &str) -> Result<Option<crate::BulkRetryRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.get_bulk_retry(id).await
    }

    async fn list_bulk_retries(
        &self,
        pipeline: &str,
        before: Option<(Timestamp, String)>,
        limit: usize,
    ) -> Result<Vec<crate::BulkRetryRecord>, StoreError> {
        self.check(&self.reads)?;
        self.inner.list_bulk_retries(pipeline, before, limit).await
    }

    async fn list_bulk_retry_results(&self, op_id: &str, after_seq: u64, limit: usize) -> Result<Vec<crate::BulkRetryResult>, StoreError> {
        self.check(&self.reads)?;
        self.inner.list_bulk_retry_results(op_id, after_seq, limit).await
    }
    async fn prune_candidates(&self, query: PruneQuery) -> Result<Vec<PruneCandidate>, StoreError> {
        self.check(&self.reads)?;
        self.inner.prune_candidates(query).await
    }

    async fn prune(&self, step: PruneStep) -> Result<PruneCounts, StoreError> {
        self.check(&self.pipelines)?;
        self.inner.prune(step).await
    }

    async fn count_prunable(&self, step: PruneStep) -> Result<PruneCounts, StoreError> {
        self.check(&self.reads)?;
        self.inner.count_prunable(step).await
    }

    fn stats(&self) -> CommitStats {
        self.inner.stats()
    }

    fn driven_shard(&self) -> Option<redrive_core::shard::ShardId> {
        self.inner.driven_shard()
    }

    async fn cluster(&self) -> Result<crate::ClusterRecord, StoreError> {
        self.inner.cluster().await
    }
}
