//! The engine's mailbox: [`EngineHandle`], the cheap cloneable handle every
//! caller (service, CLI, SDK) drives the engine through, the messages it sends
//! ([`Inbound`]), and what the engine answers and reports.

use crate::error::EngineError;
use crate::function::DurableFunction;
use crate::health::Health;
use crate::pipeline::LoadedPipeline;
use redrive_core::definition::RetryMode;
use redrive_core::dlq::RedriveMode;
use redrive_core::exception::Failure;
use redrive_core::limits;
use redrive_core::machine::{AttemptId, AttemptRecord, ExecutionStatus, Trigger};
use redrive_core::name::Name;
use redrive_core::time::Timestamp;
use redrive_store::{ClientToken, DlqEntryFilter, PruneCounts, PruneStep};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::runner::AttemptOutcome;

/// What the engine reports as it goes (for progress displays). Lossy under load:
/// a slow subscriber misses messages; the ledger is the record.
#[derive(Clone, Debug)]
pub enum Notification {
    AttemptStarted { execution_id: String, stage: String, action: String, series: u32, attempt: u32, at: Timestamp },
    AttemptFinished { execution_id: String, stage: String, action: String, record: AttemptRecord },
    ExecutionFinished { execution_id: String, status: ExecutionStatus, at: Timestamp },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecutionOutcome {
    pub execution_id: String,
    pub status: ExecutionStatus,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
}

/// What callers (and the engine's own tasks) ask of the driver loop.
pub(crate) enum Inbound {
    RegisterFunction {
        name: String,
        function: Arc<dyn DurableFunction>,
        dead_letter_queue: Option<Name>,
    },
    /// Start a durable function execution (idempotent on `(function, name)`).
    FnStart {
        function: String,
        name: String,
        execution_id: String,
        input_json: String,
        fingerprint: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// An invocation ended: the function returned (`Some`) or it suspended (`None`).
    FnEnded {
        execution_id: String,
        outcome: Option<Result<serde_json::Value, Failure>>,
    },
    Start {
        pipeline: Arc<LoadedPipeline>,
        execution_id: String,
        input_json: String,
        client_token: Option<ClientToken>,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Resume {
        execution_id: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Wait {
        execution_id: String,
        reply: oneshot::Sender<Result<ExecutionOutcome, EngineError>>,
    },
    /// `from_task`: the attempt ran on a task counted in `tasks_in_flight`.
    Result {
        execution_id: String,
        id: AttemptId,
        outcome: AttemptOutcome,
        from_task: bool,
    },
    /// An attempt of an action with `concurrency:` got its key slot: its
    /// action runs once `Event::AttemptBegan` is committed (the reply). `at`:
    /// when, if it had to wait (see [`crate::keys`]).
    Began {
        execution_id: String,
        id: AttemptId,
        at: Option<Timestamp>,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Stats {
        reply: oneshot::Sender<DriverStats>,
    },
    /// An attempt committed as started but not dispatched (draining), or turned
    /// away while it waited for a key slot (`from_task`: its task is counted).
    Release {
        execution_id: String,
        id: AttemptId,
        from_task: bool,
    },
    Drain {
        grace: std::time::Duration,
        reply: oneshot::Sender<usize>,
    },
    /// The attempts waiting for a slot of their concurrency key (of one execution, or all).
    KeyWaits {
        execution_id: Option<String>,
        reply: oneshot::Sender<Vec<crate::keys::KeyWait>>,
    },
    /// Every dependency's state as the driver holds it.
    Dependencies {
        reply: oneshot::Sender<Vec<crate::dependencies::DependencySnapshot>>,
    },
    /// The dependency states the other shards' engines stored (`--spread`).
    DependencyPeers {
        records: Vec<redrive_store::DependencyRecord>,
    },
    RetryStage {
        execution_id: String,
        stage: String,
        how: StageRetry,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Stop {
        execution_id: String,
        abandon: bool,
        reason: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// Resume a paused execution (all its paused actions, or `action` =
    /// (stage, action) names), its input merge-patched with `input_patch`.
    ResumePaused {
        execution_id: String,
        action: Option<(String, String)>,
        input_patch: Option<serde_json::Value>,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// Fail a paused execution for good.
    FailPaused {
        execution_id: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    Redrive {
        entry_id: String,
        mode: RedriveMode,
        force: bool,
        /// Only entries of queues whose name starts with this.
        scope: Option<String>,
        /// The pipeline version a new execution runs (mode `new-execution`).
        pipeline: Option<Arc<LoadedPipeline>>,
        new_execution_id: String,
        input_patch: Option<serde_json::Value>,
        reply: oneshot::Sender<Result<String, EngineError>>,
    },
    Purge {
        filter: DlqEntryFilter,
        reply: oneshot::Sender<Result<u64, EngineError>>,
    },
    /// One retention step; executions held in memory are left out of it.
    Prune {
        step: PruneStep,
        reply: oneshot::Sender<Result<PruneCounts, EngineError>>,
    },
    Shutdown,
}

/// What a stage retry re-runs.
#[derive(Clone, Debug)]
pub(crate) enum StageRetry {
    /// RetryStageExecution's modes (also a redrive's retry).
    Mode { mode: RetryMode, trigger: Trigger, input_patch: Option<serde_json::Value> },
    /// From this action's runOrder group on, the input merge-patched first.
    FromAction { action: String, input_patch: Option<serde_json::Value> },
}

/// A snapshot of the driver's bookkeeping (for tests, metrics and `bench`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriverStats {
    /// Executions whose state is held in memory.
    pub live_executions: usize,
    /// Durable function executions held in memory (running or about to).
    pub live_functions: usize,
    /// The earliest known timer.
    pub next_timer_due: Option<Timestamp>,
    /// Batches submitted to the store and not yet acknowledged.
    pub submitted_batches: usize,
}

/// A cheap, cloneable handle to a running driver.
#[derive(Clone)]
pub struct EngineHandle {
    pub(crate) tx: mpsc::Sender<Inbound>,
    pub(crate) notify: broadcast::Sender<Notification>,
    pub(crate) health: watch::Receiver<Health>,
    pub(crate) metrics: Arc<crate::metrics::EngineMetrics>,
}

impl EngineHandle {
    /// Whether the engine is ready, degraded (the store refuses operations for
    /// now; it retries) or stopped.
    pub fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    /// The engine's Prometheus figures (what `/metrics` encodes).
    pub fn metrics(&self) -> &Arc<crate::metrics::EngineMetrics> {
        &self.metrics
    }

    /// Changes of [`EngineHandle::health`].
    pub fn health_watch(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// Creates and starts an execution; resolves once its start is durable.
    pub async fn start(&self, pipeline: Arc<LoadedPipeline>, input_json: String) -> Result<String, EngineError> {
        self.start_with_token(pipeline, input_json, None).await
    }

    /// Like [`EngineHandle::start`], idempotent on `client_token`: a token used
    /// before gives [`EngineError::TokenReused`] naming the first execution.
    pub async fn start_with_token(
        &self,
        pipeline: Arc<LoadedPipeline>,
        input_json: String,
        client_token: Option<ClientToken>,
    ) -> Result<String, EngineError> {
        // Time-ordered ids (UUIDv7, monotonic within the process): executions
        // created in the same millisecond still sort in creation order, which is
        // the QUEUED order (`(created_at, id)`), also after a restart.
        let execution_id = uuid::Uuid::now_v7().to_string();
        let (reply, rx) = oneshot::channel();
        self.send(Inbound::Start { pipeline, execution_id: execution_id.clone(), input_json, client_token, reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)??;
        Ok(execution_id)
    }

    /// Takes over an unfinished execution from the store: attempts it recorded as
    /// running are failed with `Step.SERVICE_FAULT` and retried under policy.
    pub async fn resume(&self, execution_id: &str) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Inbound::Resume { execution_id: execution_id.to_string(), reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Resolves when the execution finishes (at once if it already has).
    pub async fn wait(&self, execution_id: &str) -> Result<ExecutionOutcome, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Inbound::Wait { execution_id: execution_id.to_string(), reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Re-runs a stage of an execution (RetryStageExecution); resolves once the
    /// retry is durable. The state machine's refusals come back as
    /// [`EngineError::Rejected`].
    pub async fn retry_stage(&self, execution_id: &str, stage: &str, mode: RetryMode, trigger: Trigger) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        let how = StageRetry::Mode { mode, trigger, input_patch: None };
        self.send(Inbound::RetryStage { execution_id: execution_id.into(), stage: stage.into(), how, reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Re-runs a stage of a Failed or Paused execution from `action`'s runOrder
    /// group on (native API), the input merge-patched by `input_patch`;
    /// resolves once the retry is durable.
    pub async fn retry_stage_from(
        &self,
        execution_id: &str,
        stage: &str,
        action: &str,
        input_patch: Option<serde_json::Value>,
    ) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        let how = StageRetry::FromAction { action: action.into(), input_patch };
        self.send(Inbound::RetryStage { execution_id: execution_id.into(), stage: stage.into(), how, reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Stops an execution: at once with `abandon`, else after running attempts finish.
    pub async fn stop(&self, execution_id: &str, abandon: bool, reason: &str) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Inbound::Stop { execution_id: execution_id.into(), abandon, reason: reason.into(), reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Resumes a paused execution: its paused actions (or the one named by
    /// `action` = (stage, action)) start a fresh series of attempts, with the
    /// execution's input merge-patched (RFC 7396) by `input_patch`. Resolves once
    /// the resume is durable; one that is not paused is
    /// [`EngineError::Rejected`] with `Rejection::NotPaused`.
    pub async fn resume_paused(
        &self,
        execution_id: &str,
        action: Option<(String, String)>,
        input_patch: Option<serde_json::Value>,
    ) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Inbound::ResumePaused { execution_id: execution_id.into(), action, input_patch, reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Fails a paused execution for good (dead-lettered like any failure).
    pub async fn fail_paused(&self, execution_id: &str) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Inbound::FailPaused { execution_id: execution_id.into(), reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Takes one dead-letter entry out of its queue and resubmits it — the take and
    /// the resubmission commit together or not at all. `RetryStage` retries the
    /// failed stage of the entry's execution (FAILED_ACTIONS); `NewExecution`
    /// starts `pipeline` (the caller's choice of version, normally the latest)
    /// with the entry's input. `scope`: refuse entries of queues not starting
    /// with it. `input_patch`: a JSON merge patch (RFC 7396) for the input the
    /// entry is resubmitted with, applied in the same transition as the take.
    /// Resolves with the execution resubmitted to, once durable; an entry left
    /// in place gives [`EngineError::NotRedriven`] with the reason.
    pub async fn redrive(
        &self,
        entry_id: &str,
        mode: RedriveMode,
        force: bool,
        scope: Option<&str>,
        pipeline: Option<Arc<LoadedPipeline>>,
        input_patch: Option<serde_json::Value>,
    ) -> Result<String, EngineError> {
        let (reply, rx) = oneshot::channel();
        let new_execution_id = uuid::Uuid::now_v7().to_string();
        let scope = scope.map(str::to_string);
        let (entry_id, reply) = (entry_id.to_string(), reply);
        self.send(Inbound::Redrive { entry_id, mode, force, scope, pipeline, new_execution_id, input_patch, reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Deletes the `QUEUED` dead-letter entries matching `filter`, after every
    /// change the engine accepted before it is durable (so a redrive in flight is
    /// never purged from under its resubmission). Returns how many.
    pub async fn purge(&self, filter: DlqEntryFilter) -> Result<u64, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Inbound::Purge { filter, reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Applies one retention step ([`PruneStep`]) once everything the engine
    /// accepted so far is durable. An execution the engine holds in memory (or
    /// is reading) is left out, so the engine never holds a deleted execution.
    pub async fn prune(&self, step: PruneStep) -> Result<PruneCounts, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Inbound::Prune { step, reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Registers a durable function under `name` (replacing one of that name).
    /// Its unfinished executions are not resumed by this; see
    /// [`EngineHandle::resume`].
    pub async fn register_function(&self, name: &str, function: Arc<dyn DurableFunction>) -> Result<(), EngineError> {
        self.send(Inbound::RegisterFunction { name: name.to_string(), function, dead_letter_queue: None }).await
    }

    /// [`EngineHandle::register_function`] without waiting (for synchronous
    /// callers); fails only if the engine stopped or its inbox is full.
    /// `dead_letter_queue`: where its executions that fail for good leave an entry.
    pub fn register_function_now(
        &self,
        name: &str,
        function: Arc<dyn DurableFunction>,
        dead_letter_queue: Option<Name>,
    ) -> Result<(), EngineError> {
        self.tx
            .try_send(Inbound::RegisterFunction { name: name.to_string(), function, dead_letter_queue })
            .map_err(|_| EngineError::Stopped)
    }

    /// Starts an execution of a registered function, named `name` (its
    /// idempotency key). Resolves with its id once the start is durable. The same
    /// name with the same input answers with the existing execution (and `true`);
    /// with another input, [`EngineError::ExecutionAlreadyExists`].
    pub async fn start_function(&self, function: &str, name: &str, input_json: String) -> Result<(String, bool), EngineError> {
        check_function_start(function, name, &input_json)?;
        let execution_id = uuid::Uuid::now_v7().to_string();
        let (reply, rx) = oneshot::channel();
        let fingerprint = fingerprint(function, &input_json);
        self.send(Inbound::FnStart {
            function: function.to_string(),
            name: name.to_string(),
            execution_id: execution_id.clone(),
            input_json,
            fingerprint,
            reply,
        })
        .await?;
        match rx.await.map_err(|_| EngineError::Stopped)? {
            Ok(()) => Ok((execution_id, false)),
            Err(EngineError::TokenReused { execution_id, same_request: true }) => Ok((execution_id, true)),
            Err(EngineError::TokenReused { execution_id, same_request: false }) => {
                Err(EngineError::ExecutionAlreadyExists { function: function.to_string(), name: name.to_string(), execution_id })
            }
            Err(e) => Err(e),
        }
    }

    pub async fn stats(&self) -> Result<DriverStats, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Inbound::Stats { reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Notification> {
        self.notify.subscribe()
    }

    /// Graceful stop: no new attempt starts and no timer fires; attempts already
    /// running may finish (and their results commit) for up to `grace`; then the
    /// loop stops. Resolves with the number of attempts still running at the end —
    /// they, and attempts committed as started but not dispatched, are recovered as
    /// `Step.SERVICE_FAULT` on the next start.
    pub async fn drain(&self, grace: std::time::Duration) -> Result<usize, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Inbound::Drain { grace, reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Every dependency the engine knows (the server config's, and those
    /// attempts met), with its breaker, budget and held attempts now.
    pub async fn dependencies(&self) -> Result<Vec<crate::dependencies::DependencySnapshot>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Inbound::Dependencies { reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Hands the engine the dependency states the other shards' engines stored
    /// (`--spread`, at each heartbeat): its budgets and breakers decide over them too.
    pub async fn set_dependency_peers(&self, records: Vec<redrive_store::DependencyRecord>) -> Result<(), EngineError> {
        self.send(Inbound::DependencyPeers { records }).await
    }

    /// The attempts waiting for a slot of their concurrency key: of one
    /// execution, or (`None`) all of them.
    pub async fn key_waits(&self, execution_id: Option<&str>) -> Result<Vec<crate::keys::KeyWait>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Inbound::KeyWaits { execution_id: execution_id.map(String::from), reply }).await?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Stops the loop after the current batch. Running attempts are abandoned; they
    /// are recorded as failed with `Step.SERVICE_FAULT` on the next resume.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Inbound::Shutdown).await;
    }

    async fn send(&self, msg: Inbound) -> Result<(), EngineError> {
        self.tx.send(msg).await.map_err(|_| EngineError::Stopped)
    }
}

/// A function start's sizes where it enters: the execution name (its
/// idempotency key) 1 to [`limits::MAX_EXECUTION_NAME_BYTES`], the input at most
/// [`limits::MAX_INPUT_BYTES`] and [`limits::MAX_JSON_DEPTH`] levels, the
/// function's name a valid name.
fn check_function_start(function: &str, name: &str, input_json: &str) -> Result<(), EngineError> {
    Name::parse(function).map_err(|e| EngineError::LimitExceeded(format!("function name {function:?} {e}")))?;
    if name.is_empty() || name.len() > limits::MAX_EXECUTION_NAME_BYTES {
        return Err(EngineError::LimitExceeded(format!(
            "the execution name is {} bytes; it must be 1 to {} bytes",
            name.len(),
            limits::MAX_EXECUTION_NAME_BYTES
        )));
    }
    let what = || "the function's input".to_string();
    match limits::parse_bounded_json(what, input_json, limits::MAX_INPUT_BYTES) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(EngineError::LimitExceeded(format!("the function's input is not JSON: {e}"))),
        Err(e) => Err(EngineError::LimitExceeded(e.to_string())),
    }
}

/// A stable fingerprint of a start request, for clientRequestToken checks.
pub(crate) fn fingerprint(pipeline: &str, input_json: &str) -> String {
    // FNV-1a over the canonical request; collisions only weaken a safety check.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pipeline.bytes().chain([0u8]).chain(input_json.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
