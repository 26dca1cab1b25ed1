//! PLACEHOLDER (replaced by the real backend from branch `pg` before landing).
use crate::*;

#[derive(Clone, Debug)]
pub struct PostgresOptions {
    pub max_connections: usize,
    pub max_batch_transitions: usize,
}
impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions { max_connections: 8, max_batch_transitions: 4096 }
    }
}
pub struct PostgresStore {
    url: String,
}
pub fn redact_url(url: &str) -> String {
    url.to_string()
}
impl PostgresStore {
    pub async fn open(url: &str, _opts: PostgresOptions) -> Result<PostgresStore, StoreError> {
        Err(StoreError::Unavailable(format!("{url}: placeholder")))
    }
    pub async fn open_read_only(url: &str) -> Result<PostgresStore, StoreError> {
        Err(StoreError::Unavailable(format!("{url}: placeholder")))
    }
    pub fn is_read_only(&self) -> bool {
        false
    }
    pub fn display_url(&self) -> &str {
        &self.url
    }
    pub async fn open_member(url: &str, _opts: PostgresOptions) -> Result<PostgresStore, StoreError> {
        Err(StoreError::Unavailable(format!("{url}: placeholder")))
    }
    pub async fn try_lead(&self) -> Result<bool, StoreError> {
        Ok(false)
    }
    pub async fn leader_url(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
    pub async fn announce(&self, _url: &str) -> Result<(), StoreError> {
        Ok(())
    }
    pub fn heartbeat(&self) -> std::time::Duration {
        std::time::Duration::from_secs(1)
    }
}
macro_rules! todo_store {
    ($($name:ident ( $($arg:ident : $ty:ty),* ) -> $ret:ty;)*) => {
        impl Store for PostgresStore {
            $(async fn $name(&self, $($arg: $ty),*) -> Result<$ret, StoreError> { $(let _ = $arg;)* unimplemented!() })*
            fn stats(&self) -> CommitStats { CommitStats::default() }
        }
    };
}
todo_store! {
    put_pipeline(name: &str, definition_json: &str, source_dir: Option<&str>, now: Timestamp) -> PipelineRecord;
    create_pipeline(name: &str, definition_json: &str, source_dir: Option<&str>, now: Timestamp) -> PipelineRecord;
    update_pipeline(name: &str, definition_json: &str, source_dir: Option<&str>, now: Timestamp) -> PipelineRecord;
    delete_pipeline(name: &str, now: Timestamp) -> bool;
    get_pipeline(name: &str, version: Option<u32>) -> Option<PipelineRecord>;
    list_pipelines(after_name: Option<&str>, limit: usize) -> Vec<PipelineRecord>;
    commit(transitions: Arc<[Transition]>) -> CommitResult;
    quarantine_execution(id: &str, status: &str, fault: ExecutionFault, at: Timestamp) -> Option<u64>;
    get_execution(id: &str) -> Option<ExecutionRecord>;
    list_executions(filter: ExecutionFilter) -> Vec<ExecutionRecord>;
    ledger(execution_id: &str) -> Vec<LedgerEntry>;
    list_ledger(filter: LedgerFilter) -> Vec<LedgerEntry>;
    due_timers(now: Timestamp, limit: usize) -> Vec<TimerRecord>;
    due_timers_after(now: Timestamp, after: &TimerRecord, limit: usize) -> Vec<TimerRecord>;
    next_timer_due() -> Option<Timestamp>;
    count_timers() -> u64;
    execution_timers(execution_id: &str) -> Vec<TimerRecord>;
    ensure_dlq_queue(name: &str, now: Timestamp) -> DlqQueueRecord;
    configure_dlq_queue(name: &str, max_redrives: u32, now: Timestamp) -> DlqQueueRecord;
    get_dlq_queue(name: &str) -> Option<DlqQueueStats>;
    list_dlq_queues(prefix: Option<&str>, after_name: Option<&str>, limit: usize) -> Vec<DlqQueueStats>;
    get_dlq_entry(id: &str) -> Option<DlqEntryRecord>;
    list_dlq_entries(filter: DlqEntryFilter) -> Vec<DlqEntryRecord>;
    count_dlq_entries(filter: DlqEntryFilter) -> u64;
    purge_dlq_entries(filter: DlqEntryFilter) -> u64;
    create_redrive_run(run: RedriveRunRecord) -> ();
    update_redrive_run(run: RedriveRunRecord) -> ();
    get_redrive_run(id: &str) -> Option<RedriveRunRecord>;
    list_redrive_runs(filter: RedriveRunFilter) -> Vec<RedriveRunRecord>;
    interrupt_redrive_runs(now: Timestamp) -> u64;
}
