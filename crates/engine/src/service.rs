//! Pipelines as a service: the operations behind `redrive server`'s APIs, with
//! domain errors. Wire formats (native REST, CodePipeline JSON 1.1) live in the
//! api crate, which maps [`ServiceError`] to its error codes. Dead-letter
//! operations are in `service/dlq.rs`; durable-function executions (read only) in
//! `service/functions.rs`.

use crate::clock::Clock;
use crate::error::EngineError;
use crate::handle::{EngineHandle, fingerprint};
use crate::pipeline::LoadedPipeline;
use redrive_core::definition::source::Node;
use redrive_core::definition::{Problem, RetryMode, parse_pipeline};
use redrive_core::exception::{ExceptionType, Failure};
use redrive_core::limits::{self, MAX_CLIENT_TOKEN_BYTES};
use redrive_core::machine::{ExecutionState, ExecutionStatus, Rejection, StageStatus, Trigger};
use redrive_core::name::Name;
use redrive_store::{
    ClientToken, ExecutionCursor, ExecutionFilter, ExecutionKind, ExecutionRecord, LedgerEntry, LedgerFilter, PipelineRecord, Store,
    StoreError, TargetName,
};
use std::sync::Arc;

/// Executions scanned to find the latest run of each stage (GetPipelineState).
pub const STATE_SCAN_EXECUTIONS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Validation(String),
    #[error("the pipeline definition is invalid: {}", .0.iter().map(|p| format!("{}: {}", p.path, p.message)).collect::<Vec<_>>().join("; "))]
    InvalidStructure(Vec<Problem>),
    #[error("pipeline {0} not found")]
    PipelineNotFound(String),
    #[error("a pipeline named {0} already exists")]
    PipelineNameInUse(String),
    #[error("pipeline {name} has no version {version}")]
    PipelineVersionNotFound { name: String, version: u32 },
    #[error("{0}")]
    ExecutionNotFound(String),
    #[error("{0}")]
    ExecutionNotStoppable(String),
    #[error("{0}")]
    DuplicatedStopRequest(String),
    #[error("{0}")]
    StageNotFound(String),
    #[error("{0}")]
    StageNotRetryable(String),
    #[error("{0}")]
    NotLatestPipelineExecution(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    ConcurrentExecutionsLimitExceeded(String),
    #[error("dead-letter queue {0} not found")]
    DlqQueueNotFound(String),
    #[error("dead-letter entry {0} not found")]
    DlqEntryNotFound(String),
    #[error("redrive run {0} not found")]
    RedriveRunNotFound(String),
    #[error("{0}")]
    BulkRetryNotFound(String),
    #[error("no dependency named {0} is known")]
    DependencyNotFound(String),
    /// A single-entry redrive left the entry in place (the reason says why).
    #[error("{0}")]
    NotRedriven(String),
    /// The store or engine cannot serve right now (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Unavailable(e.to_string())
    }
}

impl From<EngineError> for ServiceError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Quarantined { .. } => ServiceError::StageNotRetryable(e.to_string()),
            EngineError::Store(s) => s.into(),
            EngineError::ExecutionNotFound(id) => ServiceError::ExecutionNotFound(format!("pipeline execution {id} not found")),
            EngineError::StageNotFound { pipeline, version, stage } => {
                ServiceError::StageNotFound(format!("stage {stage} not found in pipeline {pipeline} version {version}"))
            }
            EngineError::Rejected(Rejection::RetryInProgress) => {
                ServiceError::Conflict("a retry of this stage is already in progress; try again when it settles".into())
            }
            EngineError::Rejected(Rejection::NotRetryable(why)) => ServiceError::StageNotRetryable(why),
            EngineError::Rejected(Rejection::AlreadyStopping) => {
                ServiceError::DuplicatedStopRequest("the execution is already stopping".into())
            }
            EngineError::Rejected(Rejection::Finished(s)) => {
                ServiceError::ExecutionNotStoppable(format!("the execution is already {}", s.as_str()))
            }
            EngineError::Rejected(r @ Rejection::NotPaused(_)) => ServiceError::Conflict(r.to_string()),
            EngineError::Rejected(Rejection::Invalid(m)) => ServiceError::Validation(m),
            EngineError::NotRedriven(reason) => ServiceError::NotRedriven(reason.to_string()),
            EngineError::LimitExceeded(m) => ServiceError::Validation(m),
            e @ EngineError::ConcurrencyLimit { .. } => ServiceError::ConcurrentExecutionsLimitExceeded(e.to_string()),
            EngineError::TokenReused { execution_id, same_request: false } => ServiceError::Conflict(format!(
                "clientRequestToken was already used for execution {execution_id} with a different request; use a new token"
            )),
            other => ServiceError::Unavailable(other.to_string()),
        }
    }
}

/// A stored pipeline, parsed.
pub struct PipelineView {
    pub record: PipelineRecord,
    pub loaded: Arc<LoadedPipeline>,
}

/// The latest run of one stage: the execution, the pipeline version it ran, and
/// the stage's index in that version.
pub struct StageView {
    pub execution: Arc<ExecutionView>,
    pub pipeline: Arc<LoadedPipeline>,
    pub stage_index: usize,
}

impl StageView {
    pub fn stage_state(&self) -> &redrive_core::machine::StageState {
        &self.execution.state.stages[self.stage_index]
    }

    pub fn stage_definition(&self) -> &redrive_core::definition::Stage {
        &self.pipeline.pipeline.stages[self.stage_index]
    }
}

/// A pipeline execution with its parsed state (built only from pipeline
/// executions' records).
pub struct ExecutionView {
    pub record: ExecutionRecord,
    pub state: ExecutionState,
}

impl ExecutionView {
    /// The pipeline version the execution runs.
    pub fn pipeline_version(&self) -> u32 {
        self.record.target.pipeline_version().expect("an ExecutionView is of a pipeline execution")
    }
}

pub struct Service<S: Store> {
    store: Arc<S>,
    engine: EngineHandle,
    clock: Arc<dyn Clock>,
    /// Scheduled (high-level) redrives this server runs.
    schedules: Vec<crate::redrive::RedriveSchedule>,
    /// When this service started (a never-run schedule is due `every` after it).
    started_at: redrive_core::time::Timestamp,
    /// The redrive runs this process drives (to abort them).
    running: crate::redrive::RunningRedrives,
    /// `--spread`: the engines of the other shards this process holds (a
    /// redrive moves their entries through them).
    shard_holders: Option<crate::redrive::ShardHolders>,
    /// `--spread`: the whole database (following), for figures over every
    /// shard; `None`: [`Service::store`] is the whole database.
    whole_store: Option<Arc<S>>,
}

mod bulk;
pub use bulk::{BulkPlan, BulkPlanItem, BulkRequest, BulkSummary};
mod dlq;
pub use dlq::{EntryQuery, MAX_EXCEPTION_TYPE_CHARS, validate_prefix};
mod functions;
pub use functions::{FunctionExecutionDetail, FunctionExecutionView, MAX_FUNCTION_ATTEMPTS};

pub fn validate_name(field: &str, value: &str) -> Result<Name, ServiceError> {
    Name::parse(value).map_err(|e| ServiceError::Validation(format!("{field} {value:?} {e}")))
}

/// Lower-case hyphenated UUID, as CodePipeline execution ids are.
pub fn validate_execution_id(field: &str, value: &str) -> Result<(), ServiceError> {
    let b = value.as_bytes();
    let ok = b.len() == 36
        && b.iter()
            .enumerate()
            .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { *c == b'-' } else { c.is_ascii_digit() || (b'a'..=b'f').contains(c) });
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Validation(format!(
            "{field} {value:?} is not a pipeline execution id (pattern [0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}})"
        )))
    }
}

/// The state of an execution as the APIs show it. A quarantined execution
/// shows as `Failed` with its fault as the execution's failure; one whose state
/// cannot be read (the engine has not met it yet) the same, with no stages —
/// one unreadable execution never makes a listing fail.
pub fn execution_state(rec: &ExecutionRecord) -> ExecutionState {
    let parsed = serde_json::from_str::<ExecutionState>(&rec.state_json);
    let Some(failure) = fault_failure(rec, parsed.as_ref().err()) else { return parsed.expect("no fault: it parsed") };
    let mut state = parsed.unwrap_or_else(|_| ExecutionState {
        execution_id: rec.id.clone(),
        status: ExecutionStatus::Failed,
        started_at: rec.created_at,
        finished_at: None,
        current_stage: 0,
        stages: Vec::new(),
        queued: false,
        superseded_by: None,
        stage_locked: false,
        waiting_for_stage: None,
        dead_letter: None,
        failure: None,
        input: None,
        input_patches: Vec::new(),
    });
    state.status = ExecutionStatus::Failed;
    state.finished_at = Some(rec.updated_at);
    state.failure = Some(failure);
    state
}

/// Why an execution is failed whatever its state says: its quarantine fault,
/// or the reason its state cannot be read.
pub(crate) fn fault_failure(rec: &ExecutionRecord, unreadable: Option<&serde_json::Error>) -> Option<Failure> {
    if let Some(f) = &rec.fault {
        let exception_type = ExceptionType::parse(&f.exception_type).unwrap_or(ExceptionType::CorruptState);
        return Some(Failure::new(exception_type, f.message.clone()));
    }
    unreadable.map(|e| Failure::new(ExceptionType::CorruptState, format!("the stored state cannot be read: {e}")))
}

/// An execution's input where it enters: at most [`limits::MAX_INPUT_BYTES`] and
/// [`limits::MAX_JSON_DEPTH`] levels. Returns its JSON text.
pub fn check_input(input: &serde_json::Value) -> Result<String, ServiceError> {
    limits::check_json_depth(|| "the input".into(), input).map_err(|e| ServiceError::Validation(e.to_string()))?;
    let input_json = input.to_string();
    limits::check_bytes(|| "the input".into(), input_json.len(), limits::MAX_INPUT_BYTES)
        .map_err(|e| ServiceError::Validation(e.to_string()))?;
    Ok(input_json)
}

impl<S: Store> Service<S> {
    pub fn new(store: Arc<S>, engine: EngineHandle, clock: Arc<dyn Clock>) -> Self {
        let started_at = clock.now();
        Service {
            store,
            engine,
            clock,
            schedules: Vec::new(),
            started_at,
            running: Default::default(),
            shard_holders: None,
            whole_store: None,
        }
    }

    /// `--spread`: who drives the other shards (this process, or another).
    pub fn set_shard_holders(&mut self, shard_holders: crate::redrive::ShardHolders) {
        self.shard_holders = Some(shard_holders);
    }

    /// `--spread`: the whole database, read for figures over every shard
    /// (paused executions, timers) where this service's store holds one shard.
    pub fn set_whole_store(&mut self, store: Arc<S>) {
        self.whole_store = Some(store);
    }

    /// The store figures over every execution are read from (`/metrics`).
    pub fn whole_store(&self) -> &Arc<S> {
        self.whole_store.as_ref().unwrap_or(&self.store)
    }

    /// The engines of this process: this service's, and (`--spread`) those
    /// of the other shards it holds.
    pub fn local_engines(&self) -> Vec<EngineHandle> {
        let Some(holders) = &self.shard_holders else { return vec![self.engine.clone()] };
        redrive_core::shard::ShardId::all()
            .filter_map(|shard| match holders(shard) {
                crate::redrive::ShardHolder::Here(engine) => Some(engine),
                crate::redrive::ShardHolder::Elsewhere(_) => None,
            })
            .collect()
    }

    /// The service's notion of now (its clock; tests may inject one).
    pub fn now(&self) -> redrive_core::time::Timestamp {
        self.clock.now()
    }

    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    fn check_definition(definition: &serde_json::Value) -> Result<(String, Option<Name>), ServiceError> {
        let pipeline = parse_pipeline(&Node::from_json(definition)).map_err(ServiceError::InvalidStructure)?;
        if let Some((s, a)) =
            pipeline.stages.iter().flat_map(|s| s.actions.iter().map(move |a| (s, a))).find(|(_, a)| a.kind.provider() == "Function")
        {
            return Err(ServiceError::InvalidStructure(vec![Problem {
                path: "$".into(),
                line: None,
                field: "function".into(),
                value: None,
                message: format!("action {}/{} runs a durable function; no functions are registered with this server", s.name, a.name),
                allowed: Some("command, http or noop actions".into()),
            }]));
        }
        Ok((pipeline.name.to_string(), pipeline.dead_letter_queue))
    }

    pub async fn create_pipeline(&self, definition: &serde_json::Value) -> Result<PipelineRecord, ServiceError> {
        let (name, queue) = Self::check_definition(definition)?;
        let record = match self.store.create_pipeline(&name, &definition.to_string(), None, self.clock.now()).await {
            Err(StoreError::AlreadyExists(_)) => return Err(ServiceError::PipelineNameInUse(name)),
            other => other?,
        };
        self.ensure_queue(queue).await?;
        Ok(record)
    }

    pub async fn update_pipeline(&self, definition: &serde_json::Value) -> Result<PipelineRecord, ServiceError> {
        let (name, queue) = Self::check_definition(definition)?;
        let record = match self.store.update_pipeline(&name, &definition.to_string(), None, self.clock.now()).await {
            Err(StoreError::NotFound(_)) => return Err(ServiceError::PipelineNotFound(name)),
            other => other?,
        };
        self.ensure_queue(queue).await?;
        Ok(record)
    }

    /// A pipeline's dead-letter queue exists (empty) from the moment it is named.
    async fn ensure_queue(&self, queue: Option<Name>) -> Result<(), ServiceError> {
        if let Some(q) = queue {
            self.store.ensure_dlq_queue(q.as_str(), self.clock.now()).await?;
        }
        Ok(())
    }

    pub async fn get_pipeline(&self, name: &str, version: Option<u32>) -> Result<PipelineView, ServiceError> {
        validate_name("pipeline name", name)?;
        let latest = self.store.get_pipeline(name, None).await?.ok_or_else(|| ServiceError::PipelineNotFound(name.into()))?;
        let record = match version {
            None => latest,
            Some(v) => self
                .store
                .get_pipeline(name, Some(v))
                .await?
                .ok_or(ServiceError::PipelineVersionNotFound { name: name.into(), version: v })?,
        };
        let loaded = Arc::new(LoadedPipeline::from_record(record.clone()).map_err(ServiceError::from)?);
        Ok(PipelineView { record, loaded })
    }

    pub async fn list_pipelines(&self, after: Option<&str>, limit: usize) -> Result<Vec<PipelineRecord>, ServiceError> {
        Ok(self.store.list_pipelines(after, limit).await?)
    }

    pub async fn delete_pipeline(&self, name: &str) -> Result<(), ServiceError> {
        validate_name("pipeline name", name)?;
        // Deleting a missing pipeline succeeds, as in CodePipeline.
        self.store.delete_pipeline(name, self.clock.now()).await?;
        Ok(())
    }

    /// Starts an execution of the latest version. A repeated `client_token` with the
    /// same input returns the first execution's id; with a different input, a Conflict.
    pub async fn start_execution(&self, name: &str, input: &serde_json::Value, client_token: Option<&str>) -> Result<String, ServiceError> {
        validate_name("pipeline name", name)?;
        let input_json = check_input(input)?;
        if let Some(t) = client_token
            && (t.is_empty() || t.len() > MAX_CLIENT_TOKEN_BYTES)
        {
            return Err(ServiceError::Validation(format!(
                "clientRequestToken is {} bytes; it must be 1 to {MAX_CLIENT_TOKEN_BYTES} bytes",
                t.len()
            )));
        }
        let view = self.get_pipeline(name, None).await?;
        // maxConcurrentExecutions is the engine's to enforce: it alone knows
        // every unfinished execution, including those not yet durable.
        let token = client_token.map(|t| ClientToken { token: t.to_string(), fingerprint: fingerprint(name, &input_json) });
        match self.engine.start_with_token(view.loaded, input_json, token).await {
            Ok(id) => Ok(id),
            Err(EngineError::TokenReused { execution_id, same_request: true }) => Ok(execution_id),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_execution(&self, pipeline: &str, execution_id: &str) -> Result<ExecutionView, ServiceError> {
        validate_name("pipeline name", pipeline)?;
        validate_execution_id("pipelineExecutionId", execution_id)?;
        let record = self.store.get_execution(execution_id).await?;
        match record {
            Some(r) if r.target.kind() == ExecutionKind::Pipeline && r.target.name() == pipeline => {
                let state = execution_state(&r);
                Ok(ExecutionView { record: r, state })
            }
            _ => {
                if self.store.get_pipeline(pipeline, None).await?.is_none() {
                    return Err(ServiceError::PipelineNotFound(pipeline.into()));
                }
                Err(ServiceError::ExecutionNotFound(format!("pipeline execution {execution_id} not found in pipeline {pipeline}")))
            }
        }
    }

    /// One execution with what an export holds besides: its pending timers and
    /// its whole ledger, oldest first.
    pub async fn export_execution(
        &self,
        pipeline: &str,
        execution_id: &str,
    ) -> Result<(ExecutionView, Vec<redrive_store::TimerRecord>, Vec<redrive_store::LedgerEntry>), ServiceError> {
        let view = self.get_execution(pipeline, execution_id).await?;
        let timers = self.store.execution_timers(execution_id).await?;
        let ledger = self.store.ledger(execution_id).await?;
        Ok((view, timers, ledger))
    }

    pub async fn list_executions(
        &self,
        pipeline: &str,
        before: Option<ExecutionCursor>,
        limit: usize,
    ) -> Result<Vec<ExecutionView>, ServiceError> {
        validate_name("pipeline name", pipeline)?;
        if self.store.get_pipeline(pipeline, None).await?.is_none() {
            return Err(ServiceError::PipelineNotFound(pipeline.into()));
        }
        let rows = self
            .store
            .list_executions(ExecutionFilter { target: Some(TargetName::pipeline(pipeline)), before, limit, ..Default::default() })
            .await?;
        Ok(rows.into_iter().map(|r| ExecutionView { state: execution_state(&r), record: r }).collect())
    }

    pub async fn stop_execution(&self, pipeline: &str, execution_id: &str, abandon: bool, reason: &str) -> Result<(), ServiceError> {
        let view = self.get_execution(pipeline, execution_id).await?;
        if view.state.status.is_finished() {
            return Err(ServiceError::ExecutionNotStoppable(format!(
                "pipeline execution {execution_id} is already {}",
                view.state.status.as_str()
            )));
        }
        if view.state.status == ExecutionStatus::Stopping && !abandon {
            return Err(ServiceError::DuplicatedStopRequest(format!("pipeline execution {execution_id} is already stopping")));
        }
        self.engine.stop(execution_id, abandon, reason).await?;
        Ok(())
    }

    /// Paused pipeline executions among the newest `scan` unfinished ones (the
    /// store keeps every unfinished execution `InProgress`; the state says
    /// `Paused`), and whether there were more unfinished executions to look at.
    pub async fn count_paused(&self, scan: usize) -> Result<(u64, bool), ServiceError> {
        let (mut paused, mut seen, mut before) = (0u64, 0usize, None);
        loop {
            let limit = redrive_core::limits::MAX_PAGE_SIZE.min(scan - seen);
            let page =
                self.whole_store().list_executions(ExecutionFilter { unfinished_only: true, before, limit, ..Default::default() }).await?;
            seen += page.len();
            let pipelines = page.iter().filter(|r| matches!(r.target, redrive_store::Target::Pipeline { .. }));
            paused += pipelines.filter(|r| execution_state(r).status == ExecutionStatus::Paused).count() as u64;
            before = page.last().map(ExecutionRecord::cursor);
            if page.len() < limit {
                return Ok((paused, false));
            }
            if seen >= scan {
                let more = self
                    .whole_store()
                    .list_executions(ExecutionFilter { unfinished_only: true, before, limit: 1, ..Default::default() })
                    .await?;
                return Ok((paused, !more.is_empty()));
            }
        }
    }

    /// Resumes a paused execution (see [`EngineHandle::resume_paused`]); `action`
    /// is `Stage/Action`.
    pub async fn resume_execution(
        &self,
        pipeline: &str,
        execution_id: &str,
        action: Option<&str>,
        input_patch: Option<serde_json::Value>,
    ) -> Result<(), ServiceError> {
        let action = match action {
            None => None,
            Some(a) => match a.split_once('/') {
                Some((stage, name)) if !stage.is_empty() && !name.is_empty() => Some((stage.to_string(), name.to_string())),
                _ => return Err(ServiceError::Validation(format!("action {a:?} is not Stage/Action"))),
            },
        };
        self.get_execution(pipeline, execution_id).await?; // of this pipeline
        self.engine.resume_paused(execution_id, action, input_patch).await?;
        Ok(())
    }

    /// Fails a paused execution for good (dead-lettered like any failure).
    pub async fn fail_execution(&self, pipeline: &str, execution_id: &str) -> Result<(), ServiceError> {
        self.get_execution(pipeline, execution_id).await?; // of this pipeline
        self.engine.fail_paused(execution_id).await?;
        Ok(())
    }

    /// The pipeline and, per stage, the newest execution that reached it.
    pub async fn pipeline_state(&self, name: &str) -> Result<(PipelineView, Vec<Option<StageView>>), ServiceError> {
        let view = self.get_pipeline(name, None).await?;
        let rows = self
            .store
            .list_executions(ExecutionFilter {
                target: Some(TargetName::pipeline(name)),
                limit: STATE_SCAN_EXECUTIONS,
                ..Default::default()
            })
            .await?;
        let mut versions: std::collections::HashMap<u32, Arc<LoadedPipeline>> = std::collections::HashMap::new();
        versions.insert(view.record.version, view.loaded.clone());
        let mut per_stage: Vec<Option<StageView>> = view.loaded.pipeline.stages.iter().map(|_| None).collect();
        for r in rows {
            if per_stage.iter().all(Option::is_some) {
                break;
            }
            let Some(pipeline_version) = r.target.pipeline_version() else { continue };
            let version = match versions.get(&pipeline_version) {
                Some(p) => p.clone(),
                None => {
                    let Some(rec) = self.store.get_pipeline(name, Some(pipeline_version)).await? else { continue };
                    let Ok(loaded) = LoadedPipeline::from_record(rec) else { continue };
                    let loaded = Arc::new(loaded);
                    versions.insert(pipeline_version, loaded.clone());
                    loaded
                }
            };
            let state = Arc::new(ExecutionView { state: execution_state(&r), record: r });
            if state.state.stages.len() != version.pipeline.stages.len() {
                continue; // unreadable: no stage to show
            }
            for (si, stage) in view.loaded.pipeline.stages.iter().enumerate() {
                if per_stage[si].is_some() {
                    continue;
                }
                if let Some(esi) = version.pipeline.stage_index(stage.name.as_str())
                    && state.state.stages[esi].status != StageStatus::NotStarted
                {
                    per_stage[si] = Some(StageView { execution: state.clone(), pipeline: version.clone(), stage_index: esi });
                }
            }
        }
        Ok((view, per_stage))
    }

    pub async fn list_action_executions(
        &self,
        pipeline: &str,
        execution_id: Option<&str>,
        before_seq: Option<i64>,
        limit: usize,
    ) -> Result<Vec<LedgerEntry>, ServiceError> {
        validate_name("pipeline name", pipeline)?;
        if let Some(id) = execution_id {
            validate_execution_id("pipelineExecutionId", id)?;
        }
        if self.store.get_pipeline(pipeline, None).await?.is_none() {
            return Err(ServiceError::PipelineNotFound(pipeline.into()));
        }
        Ok(self
            .store
            .list_ledger(LedgerFilter {
                target: TargetName::pipeline(pipeline),
                execution_id: execution_id.map(Into::into),
                before_seq,
                limit,
            })
            .await?)
    }

    /// The newest execution started after `exec` in which `stage` failed, if
    /// any: every later execution is read (newest first, page by page, up to
    /// `exec` itself), so the answer is exact however many there are; the rule
    /// is `redrive_core::schedule::newer_failure`. (A bulk retry answers it for
    /// all its executions in one pass instead: `service/bulk.rs`.)
    async fn newer_failure_of_stage(&self, pipeline: &str, stage: &str, exec: &ExecutionRecord) -> Result<Option<String>, ServiceError> {
        let own = exec.cursor();
        let mut before: Option<ExecutionCursor> = None;
        let mut pipelines: std::collections::HashMap<u32, Option<Arc<LoadedPipeline>>> = Default::default();
        loop {
            let filter = ExecutionFilter { target: Some(TargetName::pipeline(pipeline)), before: before.clone(), ..Default::default() };
            let page = self.store.list_executions(filter).await?;
            let Some(last) = page.last() else { return Ok(None) };
            before = Some(last.cursor());
            let mut later = Vec::new();
            for r in page.iter().filter(|r| (r.created_at, r.id.as_str()) > (own.created_at, own.id.as_str())) {
                let Some(version) = r.target.pipeline_version() else { continue };
                if let std::collections::hash_map::Entry::Vacant(slot) = pipelines.entry(version) {
                    let loaded = self.store.get_pipeline(pipeline, Some(version)).await?.and_then(|p| LoadedPipeline::from_record(p).ok());
                    slot.insert(loaded.map(Arc::new));
                }
                let stage_failed = pipelines[&version]
                    .as_ref()
                    .and_then(|l| l.pipeline.stage_index(stage))
                    .is_some_and(|si| execution_state(r).stages.get(si).is_some_and(|s| s.status == StageStatus::Failed));
                later.push((r.id.as_str(), stage_failed));
            }
            if let Some(id) = redrive_core::schedule::newer_failure(later) {
                return Ok(Some(id.to_string()));
            }
            if page.iter().any(|r| r.id == exec.id) {
                return Ok(None);
            }
        }
    }

    /// RetryStageExecution, with CodePipeline's errors.
    pub async fn retry_stage(
        &self,
        pipeline: &str,
        stage: &str,
        execution_id: &str,
        mode: RetryMode,
        trigger: Trigger,
    ) -> Result<String, ServiceError> {
        self.retry_preview(pipeline, stage, execution_id, mode).await?;
        self.engine.retry_stage(execution_id, stage, mode, trigger).await?;
        Ok(execution_id.to_string())
    }

    /// Re-runs a stage of a Failed or Paused execution from `action`'s runOrder
    /// group on (native API), the input merge-patched by `input_patch`, after
    /// RetryStageExecution's checks and the preview's ([`RetryCheck::targets_from`]).
    pub async fn retry_stage_from(
        &self,
        pipeline: &str,
        stage: &str,
        execution_id: &str,
        action: &str,
        input_patch: Option<serde_json::Value>,
    ) -> Result<String, ServiceError> {
        self.retry_check(pipeline, stage, execution_id).await?.targets_from(action)?;
        self.engine.retry_stage_from(execution_id, stage, action, input_patch).await?;
        Ok(execution_id.to_string())
    }

    /// The names of the actions a RetryStageExecution in `mode` would re-run
    /// now, or the error it would get (CodePipeline's), changing nothing.
    pub async fn retry_preview(
        &self,
        pipeline: &str,
        stage: &str,
        execution_id: &str,
        mode: RetryMode,
    ) -> Result<Vec<String>, ServiceError> {
        self.retry_check(pipeline, stage, execution_id).await?.targets(mode)
    }

    /// RetryStageExecution's checks that do not depend on the retry mode (in its
    /// order); [`RetryCheck::targets`] makes the rest, for either mode.
    pub async fn retry_check(&self, pipeline: &str, stage: &str, execution_id: &str) -> Result<RetryCheck, ServiceError> {
        self.retry_check_with(pipeline, stage, execution_id, NewerFailure::Read).await
    }

    /// [`Service::retry_check`], the NotLatestPipelineExecution answer read or
    /// given (a bulk retry's).
    async fn retry_check_with(
        &self,
        pipeline: &str,
        stage: &str,
        execution_id: &str,
        newer: NewerFailure,
    ) -> Result<RetryCheck, ServiceError> {
        validate_name("pipelineName", pipeline)?;
        validate_name("stageName", stage)?;
        validate_execution_id("pipelineExecutionId", execution_id)?;
        let latest = self.store.get_pipeline(pipeline, None).await?.ok_or_else(|| ServiceError::PipelineNotFound(pipeline.into()))?;
        // RetryStageExecution answers with its own seven errors only: an unknown
        // execution id is a ValidationException.
        let exec = match self.get_execution(pipeline, execution_id).await {
            Err(ServiceError::ExecutionNotFound(m)) => return Err(ServiceError::Validation(m)),
            other => other?,
        };
        let exec_pipeline = self.get_pipeline(pipeline, Some(exec.pipeline_version())).await?;
        let Some(si) = exec_pipeline.loaded.pipeline.stage_index(stage) else {
            return Err(ServiceError::StageNotFound(format!(
                "stage {stage} not found in pipeline {pipeline} version {}",
                exec.pipeline_version()
            )));
        };
        // A later execution in which this stage failed makes this one out of date.
        let newer = match newer {
            NewerFailure::Read => self.newer_failure_of_stage(pipeline, stage, &exec.record).await?,
            NewerFailure::Known(newer) => newer,
        };
        if let Some(newer) = newer {
            return Err(ServiceError::NotLatestPipelineExecution(format!(
                "stage {stage} failed again in a later execution ({newer}); retry that one"
            )));
        }
        if exec.pipeline_version() != latest.version {
            return Err(ServiceError::StageNotRetryable(format!(
                "the pipeline was updated to version {} after this execution (version {}) ran; its structure may have changed",
                latest.version,
                exec.pipeline_version()
            )));
        }
        if let Some(failure) = exec.state.failure.as_ref().filter(|_| exec.record.fault.is_some()) {
            return Err(ServiceError::StageNotRetryable(format!(
                "the engine failed this execution and quarantined it ({}: {}); start a new execution",
                failure.exception_type, failure.message
            )));
        }
        let Some(stage_state) = exec.state.stages.get(si) else {
            return Err(ServiceError::StageNotRetryable("the execution's state cannot be read".into()));
        };
        if stage_state.retry_in_progress {
            return Err(ServiceError::Conflict(format!("a retry of stage {stage} is already in progress")));
        }
        Ok(RetryCheck { execution: exec, pipeline: exec_pipeline.loaded, stage_index: si })
    }
}

/// Where a retry check's NotLatestPipelineExecution answer comes from.
enum NewerFailure {
    /// Every later execution is read (the single retry).
    Read,
    /// The newest later execution whose stage failed, as a bulk retry's walk
    /// knows it (`redrive_core::schedule::LatestFailure`).
    Known(Option<String>),
}

/// A stage retry that passed the mode-independent checks ([`Service::retry_check`]).
pub struct RetryCheck {
    pub execution: ExecutionView,
    pub pipeline: Arc<LoadedPipeline>,
    pub stage_index: usize,
}

impl RetryCheck {
    /// The names of the actions a retry in `mode` would re-run, or the engine's
    /// refusal (the state machine's own check, `retry_targets`).
    pub fn targets(&self, mode: RetryMode) -> Result<Vec<String>, ServiceError> {
        let si = self.stage_index;
        let targets = redrive_core::machine::retry_targets(&self.execution.state, si, mode)
            .map_err(|r| ServiceError::from(EngineError::Rejected(r)))?;
        let actions = &self.pipeline.pipeline.stages[si].actions;
        Ok(targets.into_iter().map(|ai| actions[ai].name.to_string()).collect())
    }

    /// The names of the actions a retry from `action` would re-run, or the
    /// refusal (the state machine's own check, `retry_from_targets`).
    pub fn targets_from(&self, action: &str) -> Result<Vec<String>, ServiceError> {
        let (si, p) = (self.stage_index, &self.pipeline.pipeline);
        let actions = &p.stages[si].actions;
        let Some(ai) = actions.iter().position(|a| a.name.as_str() == action) else {
            return Err(ServiceError::Validation(format!("stage {} has no action {action}", p.stages[si].name)));
        };
        let targets = redrive_core::machine::from_action::retry_from_targets(p, &self.execution.state, si, ai)
            .map_err(|r| ServiceError::from(EngineError::Rejected(r)))?;
        Ok(targets.into_iter().map(|ai| actions[ai].name.to_string()).collect())
    }
}
