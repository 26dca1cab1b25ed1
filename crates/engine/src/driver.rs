//! The engine's event loop.
//!
//! One task owns every live execution's state. It takes a batch of inbound
//! messages (attempt results, timer firings, starts, resumes), applies each to the
//! pure state machine, and commits the whole batch — every execution it touched —
//! as one store commit (group commit). Only after the commit acknowledges does it
//! perform the effects: start attempts, arm timers, wake waiters. A crash at any
//! point therefore loses nothing that was acknowledged, and an attempt is never
//! started before the state that says "running" is durable.
//!
//! Timers are rows in the store; the loop keeps only the earliest due time in
//! memory and sleeps until then. Executions that are only waiting on a distant
//! timer are evicted from memory and reloaded when it fires.

use crate::clock::Clock;
pub use crate::error::EngineError;
use crate::function::FnCall;
use crate::handle::Inbound;
pub use crate::handle::{DriverStats, EngineHandle, ExecutionOutcome, Notification};
use crate::health::{FaultSource, HealthReporter};
pub use crate::pipeline::LoadedPipeline;
use crate::runner::{self, AttemptContext, AttemptOutcome};
use redrive_core::definition::{ActionKind, ExecutionMode, Pipeline, RetryMode};
use redrive_core::dlq::{RedriveMode, SkipReason, TakeRequest, check_lineage, check_take};
use redrive_core::exception::{ExceptionType, Failure};
use redrive_core::limits;
use redrive_core::machine::{
    self, ActionAt, ActionStatus, AttemptId, AttemptRecord, DeadLetter, DeadLetterLink, Effect, Event, ExecutionState, ExecutionStatus,
    Rejection, Trigger,
};
use redrive_core::name::Name;
use redrive_core::time::Timestamp;
use redrive_store::{
    ClientToken, DlqEntryFilter, DlqEntryRecord, DlqEntryWrite, DlqOp, ExecutionFault, ExecutionKind, LedgerEntry, PipelineRecord, Store,
    StoreError, Target, TargetName, TimerRecord, Transition, TransitionError,
};
use std::collections::{BTreeMap, HashMap, VecDeque};

use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

/// The status a quarantined execution gets.
const QUARANTINED_STATUS: ExecutionStatus = ExecutionStatus::Failed;

/// The fault of an execution whose state cannot be read.
fn corrupt_state_fault(reason: &str) -> ExecutionFault {
    ExecutionFault {
        exception_type: ExceptionType::CorruptState.to_string(),
        message: limits::truncate_utf8(format!("the stored state cannot be read: {reason}"), limits::MAX_FAILURE_MESSAGE_BYTES),
    }
}

/// The fault of an execution a transition of which can never be committed.
fn limit_fault(problem: &str) -> ExecutionFault {
    ExecutionFault {
        exception_type: ExceptionType::LimitExceeded.to_string(),
        message: limits::truncate_utf8(format!("a change of the execution cannot be stored: {problem}"), limits::MAX_FAILURE_MESSAGE_BYTES),
    }
}

#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// Attempts running at once on runners (commands, HTTP calls, sleeping noops).
    pub max_inflight_attempts: usize,
    /// Of those, at most this many for one pipeline, so a pipeline of long
    /// attempts never starves the others (free slots go to the pipeline holding
    /// fewest, see [`crate::fair`]).
    pub max_inflight_attempts_per_pipeline: usize,
    /// Inbound messages folded into one commit at most.
    pub max_batch_messages: usize,
    /// Transitions per store commit call.
    pub max_transitions_per_commit: usize,
    /// An execution waiting only on timers due further out than this is evicted from memory.
    pub evict_waiting_after_ms: u64,
    /// Due timers fetched per poll.
    pub timer_poll_limit: usize,
    /// Capacity of the inbound channel.
    pub inbound_capacity: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            max_inflight_attempts: 256,
            max_inflight_attempts_per_pipeline: 192,
            max_batch_messages: 8192,
            max_transitions_per_commit: 4096,
            evict_waiting_after_ms: 5_000,
            timer_poll_limit: 1000,
            inbound_capacity: 65_536,
        }
    }
}

struct Live {
    pipeline: Arc<LoadedPipeline>,
    state: ExecutionState,
    /// The version the store will hold once every submitted commit lands
    /// (`None` until the create is submitted). Commits land in submission order,
    /// a transient store fault is retried until the commit goes through, a
    /// refused transition gives the execution up (it leaves memory) and any other
    /// failure stops the engine, so the prediction is exact.
    version: Option<u64>,
    /// Submitted commits touching this execution that are not yet acknowledged; it
    /// stays in memory until they are.
    unacked: u32,
    /// Sent with the create transition, then dropped.
    client_token: Option<ClientToken>,
    input_json: Arc<str>,
    /// The size of the state document when last serialised, plus the outputs
    /// admitted since: what [`limits::check_output_fits`] measures against.
    state_bytes: usize,
}

#[derive(Default)]
struct Pending {
    ledger: Vec<LedgerEntry>,
    /// Timer key → Some(due) to set, None to clear.
    timers: BTreeMap<String, Option<Timestamp>>,
    starts: Vec<AttemptId>,
    records: Vec<AttemptRecord>,
    finished: Option<ExecutionStatus>,
    replies: Vec<Reply>,
    /// Dead-letter changes committed with this execution's transition.
    dlq: Vec<DlqOp>,
    /// Entries taken by redrives in `dlq` (forgotten from `dlq_taken` on ack).
    taken: Vec<String>,
    /// A durable function execution: invoke (replay) it once this is durable.
    fn_invoke: bool,
    /// The transition, once built and checked against the limits
    /// ([`Driver::enforce_limits`]); a later event on the execution in the same
    /// batch unbuilds it.
    built: Option<Transition>,
}

impl Pending {
    /// Takes back the ledger and dead-letter ops of a built transition (they come
    /// before anything added since), so it is built again.
    fn unbuild(&mut self) {
        if let Some(t) = self.built.take() {
            let mut ledger = t.ledger;
            ledger.append(&mut self.ledger);
            self.ledger = ledger;
            let mut dlq = t.dlq;
            dlq.append(&mut self.dlq);
            self.dlq = dlq;
        }
    }
}

/// Told the outcome of a request once the transition it caused is durable (or at
/// once if it was refused).
type Reply = Box<dyn FnOnce(Result<(), EngineError>) + Send>;

fn unit_reply(tx: oneshot::Sender<Result<(), EngineError>>) -> Reply {
    Box::new(move |r| {
        let _ = tx.send(r);
    })
}

#[derive(Default)]
struct Batch {
    order: Vec<String>,
    pending: HashMap<String, Pending>,
    timers_fired: bool,
    /// Executions that finished in this batch (for the QUEUED hand-over).
    finished: Vec<Finished>,
    /// Purges run once this batch (and every earlier one) is durable.
    purges: Vec<(DlqEntryFilter, oneshot::Sender<Result<u64, EngineError>>)>,
}

/// An execution that finished: its pipeline, its key in the pipeline's set of
/// unfinished executions, and whether the pipeline queues executions.
#[derive(Clone, Debug)]
struct Finished {
    pipeline: String,
    key: (Timestamp, String),
    queued_mode: bool,
}

impl Batch {
    fn entry(&mut self, id: &str) -> &mut Pending {
        if !self.pending.contains_key(id) {
            self.order.push(id.to_string());
        }
        self.pending.entry(id.to_string()).or_default()
    }
}

pub struct Driver<S: Store> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    config: DriverConfig,
    rx: mpsc::Receiver<Inbound>,
    tx: mpsc::Sender<Inbound>,
    /// History changes from running function invocations (their own channel, so
    /// the function module does not know the driver's messages).
    fn_rx: mpsc::Receiver<FnCall>,
    fn_tx: mpsc::Sender<FnCall>,
    notify: broadcast::Sender<Notification>,
    live: HashMap<String, Live>,
    pipelines: HashMap<(String, u32), Arc<LoadedPipeline>>,
    waiters: HashMap<String, Vec<oneshot::Sender<Result<ExecutionOutcome, EngineError>>>>,
    /// Results of attempts that complete without a task (instant noops).
    local: VecDeque<Inbound>,
    next_timer_due: Option<Timestamp>,
    http: reqwest::Client,
    /// Batches handed to the committer task, oldest first.
    submitted: VecDeque<Submitted>,
    committer: mpsc::Sender<CommitJob>,
    /// The committer task; awaited on exit so the store is released when `run` ends.
    committer_task: Option<tokio::task::JoinHandle<()>>,
    /// Attempts running on tasks (dispatched, result not yet received).
    tasks_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    /// The tasks behind `tasks_in_flight`, per execution, to abort abandoned ones
    /// (dropping an attempt kills its process group).
    running_tasks: HashMap<String, HashMap<AttemptId, tokio::task::AbortHandle>>,
    /// Set by a drain: its deadline and who to tell when it is over.
    draining: Option<(tokio::time::Instant, Vec<oneshot::Sender<usize>>)>,
    /// Unfinished executions per pipeline, oldest first (for QUEUED and
    /// SUPERSEDED); loaded from the store the first time a pipeline needs it.
    active: HashMap<String, std::collections::BTreeSet<(Timestamp, String)>>,
    /// Dead-letter entries taken by a redrive whose commit is not acknowledged
    /// yet: the store still says `QUEUED`, so a second redrive must not trust it.
    dlq_taken: std::collections::HashSet<String>,
    /// Registered durable functions.
    functions: HashMap<String, functions::Registered>,
    /// Durable function executions in memory (running, or waiting on a near timer).
    fn_live: HashMap<String, functions::FnLive>,
    /// Due timers of functions not registered here: do not poll for them again before this.
    timer_backoff_until: Option<tokio::time::Instant>,
    health: Arc<HealthReporter>,
    /// Executions the engine gave up on ([`Driver::give_up`]) and is quarantining;
    /// their commits still in flight are refused as conflicts, which is expected.
    given_up: HashMap<String, GivenUp>,
    /// Executions that finished outside a batch (given up while acknowledging),
    /// handed over in the next batch.
    carry_finished: Vec<Finished>,
    /// Hand-overs that could not read the next execution; tried with the next batch.
    handover_retry: Vec<Finished>,
    /// Attempt slots shared fairly between pipelines.
    slots: Arc<crate::fair::FairSlots>,
}

struct GivenUp {
    fault: ExecutionFault,
    started_at: Timestamp,
    /// The quarantine is durable.
    durable: bool,
}

mod functions;

/// After a failed store read, the loop tries again this much later.
const READ_RETRY_MS: u64 = 1000;

/// Commits submitted to the store at once, at most (one being written while the
/// next is built: the driver's CPU work overlaps the writer's).
const MAX_SUBMITTED_BATCHES: usize = 2;

type CommitReply = oneshot::Receiver<Result<redrive_store::CommitResult, StoreError>>;

/// What the committer writes, in order.
enum CommitJob {
    Commit { transitions: Arc<[Transition]>, reply: oneshot::Sender<Result<redrive_store::CommitResult, StoreError>> },
    Quarantine { execution_id: String, fault: ExecutionFault, at: Timestamp, reply: oneshot::Sender<Result<Option<u64>, StoreError>> },
}

/// A batch whose commit is in flight; its effects wait for the acknowledgement.
struct Submitted {
    /// Replies not yet received, in submission order.
    replies: VecDeque<CommitReply>,
    /// Replies already received (by `wait_oldest`), in submission order.
    received: Vec<Result<redrive_store::CommitResult, StoreError>>,
    /// (execution id, version expected after the commit, deferred effects).
    entries: Vec<(String, u64, Pending)>,
    timers_fired: bool,
    now: Timestamp,
}

/// Sends commit jobs to the store one after another, preserving their order. A
/// job that fails transiently (disk full, I/O error, locked) is retried with
/// backoff until it goes through, and the engine is degraded meanwhile: nothing
/// after it is acknowledged, so nothing is dispatched, and nothing acknowledged
/// is lost. Only a non-transient error reaches the driver (which stops).
async fn committer<S: Store>(store: Arc<S>, mut jobs: mpsc::Receiver<CommitJob>, health: Arc<HealthReporter>) {
    use crate::health::retry_transient;
    while let Some(job) = jobs.recv().await {
        match job {
            CommitJob::Commit { transitions, reply } => {
                let result = retry_transient(&health, FaultSource::Commit, || store.commit(transitions.clone())).await;
                let result = result.map(|(results, retried)| if retried { reconcile(&transitions, results) } else { results });
                let _ = reply.send(result);
            }
            CommitJob::Quarantine { execution_id, fault, at, reply } => {
                let status = QUARANTINED_STATUS.as_str();
                let quarantine = || store.quarantine_execution(&execution_id, status, fault.clone(), at);
                let _ = reply.send(retry_transient(&health, FaultSource::Commit, quarantine).await.map(|(version, _)| version));
            }
        }
    }
}

/// After a commit that was retried: an earlier try may have been applied with
/// its acknowledgement lost (an error after COMMIT). This engine is the store's
/// only writer, so a create that now exists, or a conflict exactly one version
/// ahead, is that try's own write.
fn reconcile(transitions: &[Transition], results: redrive_store::CommitResult) -> redrive_store::CommitResult {
    transitions
        .iter()
        .zip(results)
        .map(|(t, result)| match result {
            Err(TransitionError::VersionConflict { expected, actual: Some(actual), .. }) if actual == expected + 1 => Ok(actual),
            Err(TransitionError::AlreadyExists(_)) if t.expected_version.is_none() => Ok(1),
            Err(TransitionError::TokenReused { execution_id, .. }) if execution_id == t.execution_id => Ok(1),
            other => other,
        })
        .collect()
}

/// Timer key of an action: `Stage/Action` (names are unique, so keys are).
fn timer_key(p: &Pipeline, at: ActionAt) -> String {
    format!("{}/{}", p.stages[at.stage].name, p.stages[at.stage].actions[at.action].name)
}

fn action_at(p: &Pipeline, key: &str) -> Option<ActionAt> {
    let (stage, action) = key.split_once('/')?;
    let si = p.stage_index(stage)?;
    let ai = p.stages[si].actions.iter().position(|a| a.name.as_str() == action)?;
    Some(ActionAt { stage: si, action: ai })
}

/// The ledger row of an attempt record.
pub fn ledger_entry(execution_id: &str, p: &Pipeline, r: &AttemptRecord) -> LedgerEntry {
    let stage = &p.stages[r.id.at.stage];
    LedgerEntry {
        seq: 0,
        execution_id: execution_id.to_string(),
        stage: stage.name.to_string(),
        action: stage.actions[r.id.at.action].name.to_string(),
        series: r.id.series,
        attempt: r.id.attempt,
        trigger: r.trigger.as_str().to_string(),
        started_at: r.started_at,
        finished_at: r.finished_at,
        outcome: if r.failure.is_none() { "SUCCEEDED" } else { "FAILED" }.to_string(),
        exception_type: r.failure.as_ref().map(|f| f.exception_type.to_string()),
        message: r.failure.as_ref().map(|f| f.message.clone()),
        decision_json: r.decision.as_ref().map(|d| serde_json::to_string(d).expect("decision serialises")),
    }
}

/// A batch's timer changes of one execution: (timers to set, keys to clear).
fn split_timers(execution_id: &str, timers: &BTreeMap<String, Option<Timestamp>>) -> (Vec<TimerRecord>, Vec<String>) {
    let mut set = Vec::new();
    let mut clear = Vec::new();
    for (key, due) in timers {
        match due {
            Some(due_at) => set.push(TimerRecord { execution_id: execution_id.to_string(), key: key.clone(), due_at: *due_at }),
            None => clear.push(key.clone()),
        }
    }
    (set, clear)
}

/// The dead-letter entry an execution that failed for good writes.
fn dead_letter_write(record: &PipelineRecord, p: &Pipeline, state: &ExecutionState, input_json: &str, d: &DeadLetter) -> DlqEntryWrite {
    let stage = &p.stages[d.stage];
    let message = limits::truncate_utf8(d.failure.message.clone(), limits::MAX_DLQ_MESSAGE_BYTES);
    DlqEntryWrite {
        id: d.entry_id.clone(),
        queue: d.queue.to_string(),
        source: Target::pipeline(record.name.clone(), record.version),
        execution_id: state.execution_id.clone(),
        stage: stage.name.to_string(),
        action: stage.actions[d.action].name.to_string(),
        exception_type: d.failure.exception_type.to_string(),
        message,
        input_json: input_json.to_string(),
        detail_json: dead_letter_detail(stage, state, d),
        first_failure_at: d.first_failure_at,
        last_failure_at: d.last_failure_at,
    }
}

/// Per-action failure messages in a dead-letter detail are cut to each of these
/// in turn until the detail fits [`limits::MAX_DLQ_DETAIL_BYTES`] (`0`: left
/// out). Escaping can make a message's JSON six times its length, so a stage of
/// many failed actions may need the shorter cuts.
const DLQ_DETAIL_MESSAGE_CUTS_BYTES: [usize; 3] = [limits::MAX_DLQ_DETAIL_MESSAGE_BYTES, 128, 0];

/// A dead-letter entry's detail: the failed action's counts and every action of
/// the stage with its last failure, always within [`limits::MAX_DLQ_DETAIL_BYTES`].
fn dead_letter_detail(stage: &redrive_core::definition::Stage, state: &ExecutionState, d: &DeadLetter) -> String {
    let failed = &d.actions[d.action];
    let with_messages_cut_to = |cut: usize| {
        let actions: Vec<serde_json::Value> = d
            .actions
            .iter()
            .map(|a| {
                serde_json::json!({
                    "action": stage.actions[a.action].name.as_str(),
                    "status": a.status,
                    "totalAttempts": a.total_attempts,
                    "series": a.series,
                    "attemptsInLastSeries": a.attempts_in_last_series,
                    "lastFailure": a.last_failure.as_ref().map(|f| detail_failure(f, cut)),
                })
            })
            .collect();
        serde_json::json!({
            "attempts": failed.total_attempts,
            "series": failed.series,
            "attemptsInLastSeries": failed.attempts_in_last_series,
            "stageAttempts": d.actions.iter().map(|a| a.total_attempts).sum::<u32>(),
            "executionStartedAt": state.started_at,
            "actions": actions,
        })
        .to_string()
    };
    let mut detail = String::new();
    for cut in DLQ_DETAIL_MESSAGE_CUTS_BYTES {
        detail = with_messages_cut_to(cut);
        if detail.len() <= limits::MAX_DLQ_DETAIL_BYTES {
            break;
        }
    }
    // Without messages: at most MAX_ACTIONS_PER_STAGE actions of names and counts.
    debug_assert!(detail.len() <= limits::MAX_DLQ_DETAIL_BYTES, "dead-letter detail is {} bytes", detail.len());
    detail
}

/// A failure as a dead-letter entry's detail holds it, its message cut to
/// `message_bytes`.
fn detail_failure(f: &Failure, message_bytes: usize) -> serde_json::Value {
    let cut = Failure { message: limits::truncate_utf8(f.message.clone(), message_bytes), ..f.clone() };
    serde_json::to_value(cut).expect("a failure serialises")
}

/// The idempotency key handed to every attempt of one action in one execution.
pub fn idempotency_key(execution_id: &str, stage: &str, action: &str) -> String {
    format!("{execution_id}/{stage}/{action}")
}

impl<S: Store> Driver<S> {
    /// Spawns the loop on the current tokio runtime.
    pub fn spawn(
        store: Arc<S>,
        clock: Arc<dyn Clock>,
        config: DriverConfig,
    ) -> (EngineHandle, tokio::task::JoinHandle<Result<(), EngineError>>) {
        let (tx, rx) = mpsc::channel(config.inbound_capacity);
        let (fn_tx, fn_rx) = mpsc::channel(config.inbound_capacity);
        let (notify, _) = broadcast::channel(4096);
        let (committer_tx, committer_rx) = mpsc::channel(MAX_SUBMITTED_BATCHES * 8);
        let health = HealthReporter::new(clock.clone());
        let committer_task = tokio::spawn(committer(store.clone(), committer_rx, health.clone()));
        let handle = EngineHandle { tx: tx.clone(), notify: notify.clone(), health: health.subscribe() };
        let driver = Driver {
            submitted: VecDeque::new(),
            committer: committer_tx,
            committer_task: Some(committer_task),
            tasks_in_flight: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            running_tasks: HashMap::new(),
            draining: None,
            active: HashMap::new(),
            dlq_taken: std::collections::HashSet::new(),
            functions: HashMap::new(),
            fn_live: HashMap::new(),
            timer_backoff_until: None,
            given_up: HashMap::new(),
            carry_finished: Vec::new(),
            handover_retry: Vec::new(),
            slots: crate::fair::FairSlots::new(config.max_inflight_attempts, config.max_inflight_attempts_per_pipeline),
            health,
            store,
            clock,
            config,
            rx,
            tx,
            fn_rx,
            fn_tx,
            notify,
            live: HashMap::new(),
            pipelines: HashMap::new(),
            waiters: HashMap::new(),
            local: VecDeque::new(),
            next_timer_due: None,
            http: runner::http_client(),
        };
        // What attempts of engines that died left behind (scratch directories,
        // cgroups, escaped processes) goes, off the loop: it can block a while.
        tokio::task::spawn_blocking(|| match runner::remove_stale_attempt_dirs() {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed what attempts of stopped engines left behind"),
            Err(e) => tracing::warn!(error = %e, "could not remove what attempts of stopped engines left behind"),
        });
        let join = tokio::spawn(driver.run());
        (handle, join)
    }

    async fn run(mut self) -> Result<(), EngineError> {
        let result = self.run_loop().await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "the engine stopped");
            self.health.stopped(e.to_string());
        }
        // Wake every waiter so nobody hangs on a dead engine.
        for (_, ws) in self.waiters.drain() {
            for w in ws {
                let _ = w.send(Err(EngineError::Stopped));
            }
        }
        // Close the committer's queue and wait for it, so that when `run` ends
        // nothing of this engine holds the store any more.
        let task = self.committer_task.take();
        drop(self);
        if let Some(task) = task {
            let _ = task.await;
        }
        result
    }

    async fn run_loop(&mut self) -> Result<(), EngineError> {
        self.refresh_next_timer().await;
        loop {
            if let Some((deadline, _)) = &self.draining {
                let running = self.tasks_in_flight.load(std::sync::atomic::Ordering::SeqCst);
                if self.submitted.is_empty() && self.local.is_empty() && (running == 0 || tokio::time::Instant::now() >= *deadline) {
                    let (_, replies) = self.draining.take().expect("draining");
                    for r in replies {
                        let _ = r.send(running);
                    }
                    return Ok(());
                }
            }
            let mut inbox: Vec<Inbound> = self.local.drain(..).collect();
            if inbox.is_empty() && self.carry_finished.is_empty() {
                let sleep = match &self.draining {
                    Some((deadline, _)) => Some(deadline.saturating_duration_since(tokio::time::Instant::now())),
                    None if self.submitted.is_empty() => self.until_next_timer(),
                    None => None,
                };
                tokio::select! {
                    msg = self.rx.recv() => match msg {
                        Some(m) => inbox.push(m),
                        None => return self.drain_submitted().await,
                    },
                    Some(call) = self.fn_rx.recv() => inbox.push(Inbound::FnCall(call)),
                    _ = sleep_or_forever(sleep) => {}
                    _ = wait_oldest(&mut self.submitted) => {
                        self.acknowledge_oldest().await?;
                        continue;
                    }
                }
            }
            while inbox.len() < self.config.max_batch_messages {
                match self.rx.try_recv() {
                    Ok(m) => inbox.push(m),
                    Err(_) => break,
                }
            }
            while inbox.len() < self.config.max_batch_messages {
                match self.fn_rx.try_recv() {
                    Ok(call) => inbox.push(Inbound::FnCall(call)),
                    Err(_) => break,
                }
            }
            let now = self.clock.now();
            let mut batch = Batch::default();
            batch.finished.append(&mut self.handover_retry);
            let mut shutdown = false;
            for msg in inbox {
                match msg {
                    Inbound::Shutdown => shutdown = true,
                    msg => self.handle(msg, now, &mut batch).await?,
                }
            }
            // Timers are read from the store, so only when no commit is in flight:
            // a timer cleared by an unacknowledged commit must not fire again.
            let backing_off = self.timer_backoff_until.is_some_and(|t| tokio::time::Instant::now() < t);
            if self.next_timer_due.is_some_and(|due| due <= now)
                && !backing_off
                && !shutdown
                && self.submitted.is_empty()
                && self.draining.is_none()
            {
                self.fire_timers(now, &mut batch).await;
            }
            // Hand over QUEUED pipelines, and check every transition against the
            // limits: an execution failed by the check finishes, which may hand over again.
            loop {
                batch.finished.append(&mut self.carry_finished);
                self.start_queued(now, &mut batch).await;
                if !self.enforce_limits(&mut batch, now) && self.carry_finished.is_empty() {
                    break;
                }
            }
            let purges = std::mem::take(&mut batch.purges);
            self.submit(batch, now).await?;
            if !purges.is_empty() {
                // Every take the loop accepted so far must be durable first: the
                // store still calls those entries QUEUED until then.
                self.drain_submitted().await?;
                for (filter, reply) in purges {
                    let _ = reply.send(self.store.purge_dlq_entries(filter).await.map_err(EngineError::from));
                }
            }
            while self.submitted.len() >= MAX_SUBMITTED_BATCHES || (shutdown && !self.submitted.is_empty()) {
                self.acknowledge_oldest().await?;
            }
            if shutdown {
                return Ok(());
            }
        }
    }

    /// Reads the earliest timer's due time. A store fault is not fatal: the
    /// engine is degraded for reads and tries again in a second.
    async fn refresh_next_timer(&mut self) {
        match self.store.next_timer_due().await {
            Ok(due) => {
                self.next_timer_due = due;
                self.health.cleared(FaultSource::Read);
            }
            Err(e) => self.read_fault(&e),
        }
    }

    /// A store read the loop needs failed: degraded, and the loop wakes again
    /// in [`READ_RETRY_MS`] to try again.
    fn read_fault(&mut self, e: &StoreError) {
        self.health.fault(FaultSource::Read, &e.to_string());
        let retry = self.clock.now().plus_ms(READ_RETRY_MS);
        self.next_timer_due = Some(self.next_timer_due.map_or(retry, |d| d.min(retry)));
    }

    async fn drain_submitted(&mut self) -> Result<(), EngineError> {
        while !self.submitted.is_empty() {
            self.acknowledge_oldest().await?;
        }
        Ok(())
    }

    fn until_next_timer(&self) -> Option<std::time::Duration> {
        let due = self.next_timer_due?;
        let ms = due.ms_since(self.clock.now()).clamp(0, 60_000) as u64;
        let backoff =
            self.timer_backoff_until.map_or(std::time::Duration::ZERO, |t| t.saturating_duration_since(tokio::time::Instant::now()));
        Some(std::time::Duration::from_millis(ms).max(backoff))
    }

    async fn handle(&mut self, msg: Inbound, now: Timestamp, batch: &mut Batch) -> Result<(), EngineError> {
        match msg {
            Inbound::Start { pipeline, execution_id, input_json, client_token, reply } => {
                match self.begin(pipeline, execution_id.clone(), input_json, client_token, None, now, batch).await {
                    Ok(()) => batch.entry(&execution_id).replies.push(unit_reply(reply)),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Inbound::Quarantined { execution_id, result } => self.quarantined(execution_id, result)?,
            Inbound::Redrive { entry_id, mode, force, scope, pipeline, new_execution_id, reply } => {
                match self.redrive(&entry_id, mode, force, scope.as_deref(), pipeline, new_execution_id, now, batch).await {
                    Ok(execution_id) => {
                        let answer = execution_id.clone();
                        batch.entry(&execution_id).replies.push(Box::new(move |r: Result<(), EngineError>| {
                            let _ = reply.send(r.map(|()| answer));
                        }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Inbound::Purge { filter, reply } => batch.purges.push((filter, reply)),
            Inbound::RegisterFunction { name, function, dead_letter_queue } => {
                self.functions.insert(name, functions::Registered { function, dead_letter_queue });
                self.timer_backoff_until = None; // its timers can fire now
            }
            Inbound::FnStart { function, name, execution_id, input_json, fingerprint, reply } => {
                self.fn_start(function, name, execution_id, input_json, fingerprint, reply, now, batch)
            }
            Inbound::FnCall(FnCall { execution_id, event, reply }) => self.fn_event(execution_id, event, reply, now, batch),
            Inbound::FnEnded { execution_id, outcome } => self.fn_ended(execution_id, outcome, now, batch),
            Inbound::Resume { execution_id, reply } => match self.ensure_live(&execution_id, now, batch).await {
                Err(EngineError::FunctionExecution(_)) => {
                    let r = self.ensure_fn_live(&execution_id, now, batch).await;
                    let _ = reply.send(r);
                }
                Ok(()) => {
                    let status = self.live[&execution_id].state.status;
                    if status.is_finished() {
                        let _ = reply.send(Err(EngineError::AlreadyFinished { id: execution_id, status: status.as_str().into() }));
                    } else if let Some(pending) = batch.pending.get_mut(&execution_id) {
                        pending.replies.push(unit_reply(reply)); // answered once the recovery is durable
                    } else {
                        let _ = reply.send(Ok(()));
                    }
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Inbound::Wait { execution_id, reply } => {
                // A change in this (unsubmitted) batch is not durable either.
                let in_batch = batch.pending.contains_key(&execution_id);
                let finished = match (self.live.get(&execution_id), self.fn_live.get(&execution_id)) {
                    _ if in_batch || self.given_up.contains_key(&execution_id) => Ok(None),
                    // The in-memory state can be ahead of the store while a batch is in
                    // flight: answer only from durable state; otherwise wait for the ack.
                    (Some(l), _) => Ok((l.state.status.is_finished() && l.unacked == 0).then(|| outcome_of(&l.state))),
                    (None, Some(f)) => Ok(f.durable_outcome()),
                    (None, None) => self.stored_outcome(&execution_id).await,
                };
                match finished {
                    Ok(Some(o)) => {
                        let _ = reply.send(Ok(o));
                    }
                    Ok(None) => self.waiters.entry(execution_id).or_default().push(reply),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Inbound::Result { execution_id, id, outcome, from_task } => {
                if from_task && self.forget_task(&execution_id, id) {
                    self.tasks_in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
                if !self.live.contains_key(&execution_id) {
                    tracing::warn!(execution_id, ?id, "result for an execution not in memory; ignored");
                    return Ok(());
                }
                let event = match outcome {
                    AttemptOutcome::Succeeded { output } => match self.admit_output(&execution_id, id, output) {
                        Ok(output) => Event::AttemptSucceeded { id, output },
                        Err(failure) => Event::AttemptFailed { id, failure },
                    },
                    AttemptOutcome::Failed(failure) => Event::AttemptFailed { id, failure },
                };
                if let Err(r) = self.apply(&execution_id, event, now, batch) {
                    tracing::warn!(execution_id, %r, "attempt result rejected");
                }
            }
            Inbound::Stats { reply } => {
                let _ = reply.send(DriverStats {
                    live_executions: self.live.len(),
                    live_functions: self.fn_live.len(),
                    next_timer_due: self.next_timer_due,
                    submitted_batches: self.submitted.len(),
                });
            }
            Inbound::RetryStage { execution_id, stage, mode, trigger, reply } => {
                let result = match self.ensure_live(&execution_id, now, batch).await {
                    Ok(()) => {
                        let live = &self.live[&execution_id];
                        let (name, started) = (live.pipeline.record.name.clone(), live.state.started_at);
                        match live.pipeline.pipeline.stage_index(&stage) {
                            Some(si) => {
                                let r = self
                                    .apply(&execution_id, Event::RetryStage { stage: si, mode, trigger }, now, batch)
                                    .map_err(EngineError::Rejected);
                                if let (Ok(()), Some(set)) = (&r, self.active.get_mut(&name)) {
                                    set.insert((started, execution_id.clone())); // unfinished again
                                }
                                r
                            }
                            None => Err(EngineError::StageNotFound {
                                pipeline: live.pipeline.record.name.clone(),
                                version: live.pipeline.record.version,
                                stage,
                            }),
                        }
                    }
                    Err(e) => Err(e),
                };
                self.reply_after_commit(&execution_id, result, reply, batch);
            }
            Inbound::Stop { execution_id, abandon, reason, reply } => {
                let result = match self.ensure_live(&execution_id, now, batch).await {
                    Ok(()) => self.apply(&execution_id, Event::Stop { abandon, reason }, now, batch).map_err(EngineError::Rejected),
                    Err(e) => Err(e),
                };
                self.reply_after_commit(&execution_id, result, reply, batch);
            }
            Inbound::Release { execution_id, id } => {
                if self.live.contains_key(&execution_id)
                    && let Err(r) = self.apply(&execution_id, Event::Release { id }, now, batch)
                {
                    tracing::warn!(execution_id, %r, "could not release an undispatched attempt");
                }
            }
            Inbound::Drain { grace, reply } => match &mut self.draining {
                Some((_, replies)) => replies.push(reply),
                None => self.draining = Some((tokio::time::Instant::now() + grace, vec![reply])),
            },
            Inbound::Shutdown => unreachable!("handled by the loop"),
        }
        Ok(())
    }

    /// Creates an execution in memory and applies its first event (Start, or
    /// Enqueue behind others in QUEUED mode; SUPERSEDED marks older ones).
    #[allow(clippy::too_many_arguments)]
    async fn begin(
        &mut self,
        pipeline: Arc<LoadedPipeline>,
        execution_id: String,
        input_json: String,
        client_token: Option<ClientToken>,
        dead_letter: Option<DeadLetterLink>,
        now: Timestamp,
        batch: &mut Batch,
    ) -> Result<(), EngineError> {
        let name = pipeline.record.name.clone();
        let mode = pipeline.pipeline.execution_mode;
        self.load_active(&name).await?;
        let others_unfinished = !self.active[&name].is_empty();
        let state = match dead_letter {
            Some(link) => ExecutionState::redriven(&pipeline.pipeline, execution_id.clone(), now, link),
            None => ExecutionState::new(&pipeline.pipeline, execution_id.clone(), now),
        };
        self.pipelines.entry((name.clone(), pipeline.record.version)).or_insert_with(|| pipeline.clone());
        let live = Live { pipeline, state, version: None, unacked: 0, client_token, input_json: input_json.into(), state_bytes: 0 };
        self.live.insert(execution_id.clone(), live);
        let first = if mode == ExecutionMode::Queued && others_unfinished { Event::Enqueue } else { Event::Start };
        self.apply(&execution_id, first, now, batch).expect("a fresh execution accepts Start and Enqueue");
        if mode == ExecutionMode::Superseded {
            // Newest first; older ones were superseded when a newer one
            // started, so stop at the first that already is (O(1) per start).
            let mut below: Option<(Timestamp, String)> = None;
            loop {
                let set = &self.active[&name];
                let next = match &below {
                    None => set.iter().next_back().cloned(),
                    Some(k) => set.range(..k.clone()).next_back().cloned(),
                };
                let Some(key) = next else { break };
                if self.ensure_live(&key.1, now, batch).await.is_ok() {
                    if self.live[&key.1].state.superseded_by.is_some() {
                        break;
                    }
                    let _ = self.apply(&key.1, Event::Supersede { by: execution_id.clone() }, now, batch);
                }
                below = Some(key);
            }
        }
        self.active.get_mut(&name).expect("loaded").insert((now, execution_id));
        Ok(())
    }

    /// Takes dead-letter entry `entry_id` out of its queue and resubmits it, in
    /// one transition: the entry's `Take` commits with the stage retry (or the new
    /// execution's creation) or not at all. Returns the execution resubmitted to.
    /// This loop is the only writer of entries, so the checks below cannot race
    /// with another redrive or a purge (`dlq_taken` covers takes not yet durable).
    #[allow(clippy::too_many_arguments)]
    async fn redrive(
        &mut self,
        entry_id: &str,
        mode: RedriveMode,
        force: bool,
        scope: Option<&str>,
        pipeline: Option<Arc<LoadedPipeline>>,
        new_execution_id: String,
        now: Timestamp,
        batch: &mut Batch,
    ) -> Result<String, EngineError> {
        let skip = |r: SkipReason| Err(EngineError::NotRedriven(r));
        let entry = self.store.get_dlq_entry(entry_id).await?;
        let request = TakeRequest { force, scope, being_taken: self.dlq_taken.contains(entry_id) };
        check_take(entry.as_ref().map(DlqEntryRecord::facts).as_ref(), &request).map_err(EngineError::NotRedriven)?;
        let entry = entry.expect("checked: the entry exists");
        let execution_id = match mode {
            // A function's entry resumes its execution, whatever the mode.
            _ if entry.source.kind() == ExecutionKind::Function => self.redrive_function(&entry, now, batch).await?,
            RedriveMode::RetryStage => self.redrive_stage(&entry, now, batch).await?,
            RedriveMode::NewExecution => {
                let Some(pipeline) = pipeline else { return skip(SkipReason::PipelineGone(entry.source.name().to_string())) };
                let queue = Name::parse(&entry.queue)
                    .map_err(|e| EngineError::CorruptState { id: entry.id.clone(), reason: format!("queue name: {e}") })?;
                let link = DeadLetterLink { entry_id: entry.id.clone(), queue };
                self.begin(pipeline, new_execution_id.clone(), entry.input_json.clone(), None, Some(link), now, batch).await?;
                new_execution_id
            }
        };
        let pending = batch.entry(&execution_id);
        pending.dlq.push(DlqOp::Take { entry_id: entry.id.clone(), execution_id: execution_id.clone() });
        pending.taken.push(entry.id.clone());
        self.dlq_taken.insert(entry.id);
        Ok(execution_id)
    }

    /// Retries the failed stage (FAILED_ACTIONS) of the entry's execution.
    async fn redrive_stage(&mut self, entry: &DlqEntryRecord, now: Timestamp, batch: &mut Batch) -> Result<String, EngineError> {
        let id = entry.execution_id.clone();
        match self.ensure_live(&id, now, batch).await {
            Ok(()) => {}
            Err(EngineError::ExecutionNotFound(_)) => return Err(EngineError::NotRedriven(SkipReason::ExecutionGone(id))),
            Err(e) => return Err(e),
        }
        let live = &self.live[&id];
        let result = if let Err(refused) = check_lineage(&id, live.state.dead_letter.as_ref(), &entry.id) {
            Err(refused)
        } else if let Some(si) = live.pipeline.pipeline.stage_index(&entry.stage) {
            let (name, started) = (live.pipeline.record.name.clone(), live.state.started_at);
            let event = Event::RetryStage { stage: si, mode: RetryMode::FailedActions, trigger: Trigger::Redrive };
            match self.apply(&id, event, now, batch) {
                Ok(()) => {
                    if let Some(set) = self.active.get_mut(&name) {
                        set.insert((started, id.clone())); // unfinished again
                    }
                    Ok(())
                }
                Err(r) => Err(SkipReason::Refused(r.to_string())),
            }
        } else {
            Err(SkipReason::Refused(format!("stage {} is not in the execution's pipeline", entry.stage)))
        };
        if let Err(reason) = result {
            // A finished execution loaded only to refuse the redrive leaves memory again.
            let idle = self.live.get(&id).is_some_and(|l| l.state.status.is_finished() && l.unacked == 0);
            if idle && !batch.pending.contains_key(&id) {
                self.live.remove(&id);
            }
            return Err(EngineError::NotRedriven(reason));
        }
        Ok(id)
    }

    /// The unfinished executions of `pipeline`, from the store, once.
    async fn load_active(&mut self, pipeline: &str) -> Result<(), EngineError> {
        if self.active.contains_key(pipeline) {
            return Ok(());
        }
        let mut set = std::collections::BTreeSet::new();
        let mut before = None;
        loop {
            let page = self
                .store
                .list_executions(redrive_store::ExecutionFilter {
                    target: Some(TargetName::pipeline(pipeline)),
                    unfinished_only: true,
                    before: before.clone(),
                    limit: 0,
                })
                .await?;
            let Some(last) = page.last() else { break };
            before = Some(redrive_store::ExecutionCursor { created_at: last.created_at, id: last.id.clone() });
            set.extend(page.into_iter().map(|e| (e.created_at, e.id)));
        }
        self.active.insert(pipeline.to_string(), set);
        Ok(())
    }

    /// After executions finished: forget them, and in QUEUED pipelines start the
    /// oldest queued execution — in the same batch, so the hand-over is atomic. If
    /// the next one cannot be read now, the hand-over is tried again with a
    /// later batch.
    async fn start_queued(&mut self, now: Timestamp, batch: &mut Batch) {
        let mut i = 0;
        while i < batch.finished.len() {
            let finished = batch.finished[i].clone();
            i += 1;
            let Some(set) = self.active.get_mut(&finished.pipeline) else { continue };
            set.remove(&finished.key); // keyed by (start time, id): O(log n)
            if !finished.queued_mode {
                continue;
            }
            // Only the oldest unfinished execution matters: if it is queued, its turn has come.
            let Some((_, head)) = set.iter().next().cloned() else { continue };
            match self.ensure_live(&head, now, batch).await {
                Ok(()) => {}
                Err(EngineError::Store(e)) => {
                    self.read_fault(&e);
                    self.handover_retry.push(finished);
                    continue;
                }
                Err(_) => {
                    // Given up on (quarantined): its own hand-over follows.
                    continue;
                }
            }
            let live = &self.live[&head];
            if live.pipeline.pipeline.execution_mode == ExecutionMode::Queued && live.state.queued {
                let _ = self.apply(&head, Event::Start, now, batch);
            }
        }
    }

    /// Removes a task from the bookkeeping; false if it was already forgotten (aborted).
    fn forget_task(&mut self, execution_id: &str, id: AttemptId) -> bool {
        let Some(tasks) = self.running_tasks.get_mut(execution_id) else { return false };
        let known = tasks.remove(&id).is_some();
        if tasks.is_empty() {
            self.running_tasks.remove(execution_id);
        }
        known
    }

    /// Aborts every task still running for an execution that stopped.
    fn abort_tasks(&mut self, execution_id: &str) {
        if self.running_tasks.is_empty() {
            return;
        }
        for (_, task) in self.running_tasks.remove(execution_id).unwrap_or_default() {
            task.abort();
            self.tasks_in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Replies at once on error, else once the batch holding the change is durable.
    fn reply_after_commit(
        &mut self,
        execution_id: &str,
        result: Result<(), EngineError>,
        reply: oneshot::Sender<Result<(), EngineError>>,
        batch: &mut Batch,
    ) {
        match result {
            Ok(()) => batch.entry(execution_id).replies.push(unit_reply(reply)),
            Err(e) => {
                let _ = reply.send(Err(e));
                // A finished execution loaded only to refuse the request leaves memory again.
                let idle = self.live.get(execution_id).is_some_and(|l| l.state.status.is_finished() && l.unacked == 0);
                if idle && !batch.pending.contains_key(execution_id) {
                    self.live.remove(execution_id);
                }
            }
        }
    }

    /// Loads an execution into memory if it is not there. This engine holds the
    /// store exclusively, so an attempt the stored state calls running belongs to
    /// a process that died: it is recovered (failed as `Step.SERVICE_FAULT` and
    /// left to its policy) right away, whatever caused the load. An execution
    /// whose state cannot be read is given up on (quarantined,
    /// `Engine.CORRUPT_STATE`); the engine goes on with the others.
    async fn ensure_live(&mut self, execution_id: &str, now: Timestamp, batch: &mut Batch) -> Result<(), EngineError> {
        if self.live.contains_key(execution_id) {
            return Ok(());
        }
        if let Some(g) = self.given_up.get(execution_id) {
            return Err(EngineError::quarantined(execution_id, &g.fault));
        }
        if self.fn_live.contains_key(execution_id) {
            return Err(EngineError::FunctionExecution(execution_id.to_string()));
        }
        let rec = self.store.get_execution(execution_id).await?.ok_or_else(|| EngineError::ExecutionNotFound(execution_id.to_string()))?;
        let Target::Pipeline { name, version } = &rec.target else {
            return Err(EngineError::FunctionExecution(execution_id.to_string()));
        };
        let key = (name.clone(), *version);
        if let Some(fault) = &rec.fault {
            return Err(EngineError::quarantined(execution_id, fault));
        }
        let (pipeline, state) = match self.read_execution(&rec, &key).await {
            Ok(read) => read,
            Err(EngineError::Store(e)) => return Err(EngineError::Store(e)),
            Err(e) => {
                let fault = corrupt_state_fault(&e.to_string());
                let finished = Finished { pipeline: key.0, key: (rec.created_at, rec.id.clone()), queued_mode: true };
                self.give_up(execution_id, fault.clone(), rec.created_at, Some(finished), batch.pending.remove(execution_id));
                return Err(EngineError::quarantined(execution_id, &fault));
            }
        };
        let orphans = state.stages.iter().flat_map(|s| &s.actions).any(|a| a.status == ActionStatus::Running);
        let finished = state.status.is_finished();
        let live = Live {
            pipeline,
            state,
            version: Some(rec.version),
            unacked: 0,
            client_token: None,
            state_bytes: rec.state_json.len(),
            input_json: rec.input_json.into(),
        };
        self.live.insert(rec.id, live);
        if orphans && !finished {
            self.apply(execution_id, Event::Recover, now, batch).expect("an unfinished execution accepts Recover");
        }
        Ok(())
    }

    /// An execution's pipeline version and parsed state. [`EngineError::Store`]
    /// if the store cannot be read now; anything else means the stored execution
    /// is unreadable.
    async fn read_execution(
        &mut self,
        rec: &redrive_store::ExecutionRecord,
        key: &(String, u32),
    ) -> Result<(Arc<LoadedPipeline>, ExecutionState), EngineError> {
        let pipeline = match self.pipelines.get(key) {
            Some(p) => p.clone(),
            None => {
                let prec = self.store.get_pipeline(&key.0, Some(key.1)).await?.ok_or_else(|| EngineError::CorruptState {
                    id: rec.id.clone(),
                    reason: format!("pipeline {} version {} is missing", key.0, key.1),
                })?;
                let p = Arc::new(LoadedPipeline::from_record(prec)?);
                self.pipelines.insert(key.clone(), p.clone());
                p
            }
        };
        let state = parse_state(&rec.id, &rec.state_json)?;
        if state.stages.len() != pipeline.pipeline.stages.len() || state.execution_id != rec.id {
            return Err(EngineError::CorruptState {
                id: rec.id.clone(),
                reason: "the state does not match its execution and pipeline".into(),
            });
        }
        Ok((pipeline, state))
    }

    /// Whether a stored execution has finished, from the store (for `Wait`). One
    /// whose state cannot be read is given up on (quarantined): `None`, and the
    /// waiter is answered once the quarantine is durable.
    async fn stored_outcome(&mut self, execution_id: &str) -> Result<Option<ExecutionOutcome>, EngineError> {
        let rec = self.store.get_execution(execution_id).await?.ok_or_else(|| EngineError::ExecutionNotFound(execution_id.to_string()))?;
        if rec.fault.is_some() {
            let at = |t| ExecutionOutcome {
                execution_id: rec.id.clone(),
                status: QUARANTINED_STATUS,
                started_at: rec.created_at,
                finished_at: t,
            };
            return Ok(Some(at(rec.updated_at)));
        }
        let outcome = if rec.target.kind() == ExecutionKind::Function {
            functions::stored_outcome(&rec)
        } else {
            parse_state(&rec.id, &rec.state_json).map(|state| state.status.is_finished().then(|| outcome_of(&state)))
        };
        outcome.or_else(|e| {
            // Unreadable: quarantine it; the waiter learns the outcome when that is durable.
            let finished = Finished { pipeline: rec.target.name().to_string(), key: (rec.created_at, rec.id.clone()), queued_mode: true };
            self.give_up(execution_id, corrupt_state_fault(&e.to_string()), rec.created_at, Some(finished), None);
            Ok(None)
        })
    }

    /// Checks an attempt's output where it enters: at most
    /// [`limits::MAX_JSON_DEPTH`] levels, and it must fit what is left of the
    /// execution's state budget. One that does not fails the attempt with
    /// `Engine.LIMIT_EXCEEDED` (through the normal failure path) instead of
    /// growing the state.
    fn admit_output(
        &mut self,
        execution_id: &str,
        id: AttemptId,
        output: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, Failure> {
        let Some(value) = output else { return Ok(None) };
        let live = self.live.get_mut(execution_id).expect("the caller checked the execution is live");
        let stage = &live.pipeline.pipeline.stages[id.at.stage];
        let what = || format!("the output of action {}/{}", stage.name, stage.actions[id.at.action].name);
        limits::check_json_depth(what, &value).map_err(|e| Failure::limit_exceeded(&e))?;
        let bytes = limits::json_bytes(&value);
        limits::check_output_fits(what, bytes, live.state_bytes).map_err(|e| Failure::limit_exceeded(&e))?;
        live.state_bytes += bytes;
        Ok(Some(value))
    }

    /// Gives up on an execution the engine cannot drive — its state cannot be
    /// read, or a change of it can never be stored: forgets it, kills its
    /// attempts, answers what waits on its pending change, and quarantines it in
    /// the store through the committer, so after every commit of it already
    /// submitted (those then conflict with nothing, or with the quarantine, which
    /// is expected). Waiters learn it failed once the quarantine is durable;
    /// `finished` is its place in its pipeline's unfinished set (hand-over).
    fn give_up(&mut self, id: &str, fault: ExecutionFault, started_at: Timestamp, finished: Option<Finished>, pending: Option<Pending>) {
        tracing::error!(execution_id = id, exception_type = %fault.exception_type, message = %fault.message, "the engine failed this execution (quarantined)");
        if let Some(p) = pending {
            for reply in p.replies {
                reply(Err(EngineError::quarantined(id, &fault)));
            }
            for entry_id in &p.taken {
                self.dlq_taken.remove(entry_id);
            }
        }
        let finished = match self.live.remove(id) {
            Some(live) => Some(Finished {
                pipeline: live.pipeline.record.name.clone(),
                key: (live.state.started_at, id.to_string()),
                queued_mode: live.pipeline.pipeline.execution_mode == ExecutionMode::Queued,
            }),
            None => finished,
        };
        self.carry_finished.extend(finished);
        self.fn_live.remove(id);
        self.abort_tasks(id);
        self.given_up.insert(id.to_string(), GivenUp { fault: fault.clone(), started_at, durable: false });
        let (committer, tx, execution_id, at) = (self.committer.clone(), self.tx.clone(), id.to_string(), self.clock.now());
        tokio::spawn(async move {
            let (reply, rx) = oneshot::channel();
            let job = CommitJob::Quarantine { execution_id: execution_id.clone(), fault, at, reply };
            let stopped = || Err(StoreError::Unavailable("the committer stopped".into()));
            let result = match committer.send(job).await {
                Ok(()) => rx.await.unwrap_or_else(|_| stopped()),
                Err(_) => stopped(),
            };
            let _ = tx.send(Inbound::Quarantined { execution_id, result }).await;
        });
    }

    /// A quarantine is durable: waiters learn the execution failed.
    fn quarantined(&mut self, id: String, result: Result<Option<u64>, StoreError>) -> Result<(), EngineError> {
        let stored = result?;
        let Some(given_up) = self.given_up.get_mut(&id) else { return Ok(()) };
        given_up.durable = true;
        let outcome = ExecutionOutcome {
            execution_id: id.clone(),
            status: QUARANTINED_STATUS,
            started_at: given_up.started_at,
            finished_at: self.clock.now(),
        };
        for w in self.waiters.remove(&id).unwrap_or_default() {
            let _ = w.send(if stored.is_some() { Ok(outcome.clone()) } else { Err(EngineError::ExecutionNotFound(id.clone())) });
        }
        self.forget_given_up();
        Ok(())
    }

    /// Forgets quarantined executions once no commit of theirs is in flight.
    fn forget_given_up(&mut self) {
        let submitted = &self.submitted;
        self.given_up.retain(|id, g| !g.durable || submitted.iter().any(|b| b.entries.iter().any(|(e, _, _)| e == id)));
    }

    fn apply(&mut self, execution_id: &str, event: Event, now: Timestamp, batch: &mut Batch) -> Result<(), Rejection> {
        let live = self.live.get_mut(execution_id).expect("caller ensured the execution is live");
        let p = &live.pipeline.pipeline;
        let effects = machine::apply(p, &mut live.state, event, now)?;
        let mut finished = false;
        let pending = batch.entry(execution_id);
        pending.unbuild();
        for effect in effects {
            match effect {
                Effect::StartAttempt(id) => pending.starts.push(id),
                Effect::SetTimer { at, due_at } => {
                    pending.timers.insert(timer_key(p, at), Some(due_at));
                }
                Effect::ClearTimer { at } => {
                    pending.timers.insert(timer_key(p, at), None);
                }
                Effect::Record(r) => {
                    pending.ledger.push(ledger_entry(execution_id, p, &r));
                    pending.records.push(r);
                }
                Effect::Finished(s) => {
                    pending.finished = Some(s);
                    finished = true;
                }
                Effect::DeadLetter(d) => {
                    let write = dead_letter_write(&live.pipeline.record, p, &live.state, &live.input_json, &d);
                    pending.dlq.push(DlqOp::Enter(write));
                }
                Effect::DeadLetterResolved { entry_id } => pending.dlq.push(DlqOp::Resolve { entry_id }),
            }
        }
        if finished {
            batch.finished.push(Finished {
                pipeline: live.pipeline.record.name.clone(),
                key: (live.state.started_at, execution_id.to_string()),
                queued_mode: p.execution_mode == ExecutionMode::Queued,
            });
        }
        Ok(())
    }

    /// Fires the due timers (as many as one poll returns). A store fault while
    /// reading ends this round: the engine is degraded for reads and tries again.
    async fn fire_timers(&mut self, now: Timestamp, batch: &mut Batch) {
        batch.timers_fired = true;
        let due: Vec<TimerRecord> = match self.store.due_timers(now, self.config.timer_poll_limit).await {
            Ok(due) => due,
            Err(e) => return self.read_fault(&e),
        };
        for t in due {
            if batch.pending.get(&t.execution_id).is_some_and(|p| p.timers.contains_key(&t.key)) {
                continue; // already handled in this batch
            }
            let fired = match functions::timer_index(&t.key) {
                Some(index) => self.fn_timer(&t.execution_id, index, now, batch).await,
                None => self.pipeline_timer(&t, now, batch).await,
            };
            if let Err(e) = fired {
                return self.read_fault(&e);
            }
        }
    }

    /// Fires one pipeline timer. Only a store fault is an error (the execution
    /// gone, or given up on, leaves nothing to do).
    async fn pipeline_timer(&mut self, t: &TimerRecord, now: Timestamp, batch: &mut Batch) -> Result<(), StoreError> {
        match self.ensure_live(&t.execution_id, now, batch).await {
            Ok(()) => {}
            Err(EngineError::Store(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        let at = action_at(&self.live[&t.execution_id].pipeline.pipeline, &t.key);
        let result = match at {
            Some(at) => self.apply(&t.execution_id, Event::TimerFired { at }, now, batch),
            None => Err(Rejection::Invalid(format!("timer key {} names no action", t.key))),
        };
        match result {
            Ok(()) | Err(Rejection::TimerEarly { .. }) => {}
            Err(r) => {
                tracing::warn!(execution_id = t.execution_id, key = t.key, %r, "clearing a stale timer");
                batch.entry(&t.execution_id).timers.insert(t.key.clone(), None);
            }
        }
        Ok(())
    }

    /// Builds the transition of every execution in the batch not built yet and
    /// checks it against the limits before anything is submitted. A pipeline
    /// execution over a limit is failed by the machine (`Event::Abort`, which
    /// drops its outputs) and built again; one still over — or a function
    /// execution over — is given up on (quarantined). Returns whether an
    /// execution finished here (the QUEUED hand-over must run again).
    fn enforce_limits(&mut self, batch: &mut Batch, now: Timestamp) -> bool {
        let finished_before = batch.finished.len();
        // Nothing below adds an execution to the batch (an abort changes only its
        // own), so the order can be walked while the batch changes.
        let order = std::mem::take(&mut batch.order);
        for id in &order {
            let Err(problem) = self.build(id, batch, now) else { continue };
            let aborted = self.live.contains_key(id) && {
                batch.pending.get_mut(id).expect("just built").unbuild();
                let message = format!("{problem}; the engine failed the execution and dropped its outputs");
                let failure = Failure::new(ExceptionType::LimitExceeded, message);
                self.apply(id, Event::Abort { failure }, now, batch).is_ok()
            };
            let rebuilt = if aborted { self.build(id, batch, now) } else { Err(problem) };
            if let Err(problem) = rebuilt {
                let started_at = self.started_at(id).unwrap_or(now);
                let pending = batch.pending.remove(id);
                self.give_up(id, limit_fault(&problem), started_at, None, pending);
            }
        }
        debug_assert!(batch.order.is_empty(), "enforce_limits adds no execution to the batch");
        batch.order = order;
        batch.finished.len() > finished_before
    }

    /// When a live execution started.
    fn started_at(&self, id: &str) -> Option<Timestamp> {
        self.live.get(id).map(|l| l.state.started_at).or_else(|| self.fn_live.get(id).map(|f| f.state.started_at))
    }

    /// Builds one execution's transition into its pending change and checks it
    /// with the store's own per-transition check.
    /// One already built (or given up on) is left as it is.
    fn build(&mut self, id: &str, batch: &mut Batch, now: Timestamp) -> Result<(), String> {
        let Some(pending) = batch.pending.get_mut(id).filter(|p| p.built.is_none()) else { return Ok(()) };
        let t = if self.live.contains_key(id) { self.pipeline_transition(id, pending, now) } else { self.fn_transition(id, pending, now) };
        let checked = redrive_store::validate::check_transition(&t);
        pending.built = Some(t);
        checked
    }

    fn pipeline_transition(&mut self, id: &str, pending: &mut Pending, now: Timestamp) -> Transition {
        let live = self.live.get_mut(id).expect("batched executions are live");
        let (set_timers, clear_timers) = split_timers(id, &pending.timers);
        let state_json = serde_json::to_string(&live.state).expect("state serialises");
        live.state_bytes = state_json.len();
        Transition {
            execution_id: id.to_string(),
            expected_version: live.version,
            target: Target::pipeline(live.pipeline.record.name.clone(), live.pipeline.record.version),
            // The store's status is the lifecycle: every unfinished execution
            // (running, stopping, queued) is `InProgress`; the state has the rest.
            status: if live.state.status.is_finished() { live.state.status.as_str() } else { ExecutionStatus::InProgress.as_str() }
                .to_string(),
            input_json: live.input_json.to_string(),
            state_json,
            at: now,
            ledger: std::mem::take(&mut pending.ledger),
            set_timers,
            clear_timers,
            client_token: if live.version.is_none() { live.client_token.clone() } else { None },
            dlq: std::mem::take(&mut pending.dlq),
        }
    }

    /// The version an execution's store row has once its next submitted commit
    /// lands (commits land in submission order); counts the commit as unacknowledged.
    fn bump_version(&mut self, id: &str) -> u64 {
        let (version, unacked, token) = if let Some(l) = self.live.get_mut(id) {
            (&mut l.version, &mut l.unacked, &mut l.client_token)
        } else {
            let f = self.fn_live.get_mut(id).expect("a built transition's execution is in memory");
            (&mut f.version, &mut f.unacked, &mut f.client_token)
        };
        let next = version.map_or(1, |v| v + 1);
        *version = Some(next);
        *unacked += 1;
        *token = None; // sent with the create
        next
    }

    /// Hands a batch to the committer. Its effects wait in `submitted` for the
    /// ack. Every transition was built and checked by [`Driver::enforce_limits`].
    async fn submit(&mut self, mut batch: Batch, now: Timestamp) -> Result<(), EngineError> {
        let order = std::mem::take(&mut batch.order);
        let mut submitted = Submitted {
            replies: VecDeque::new(),
            received: Vec::new(),
            entries: Vec::with_capacity(order.len()),
            timers_fired: batch.timers_fired,
            now,
        };
        for chunk in order.chunks(self.config.max_transitions_per_commit.max(1)) {
            let mut transitions = Vec::with_capacity(chunk.len());
            for id in chunk {
                let Some(mut pending) = batch.pending.remove(id) else { continue }; // given up on
                let t = pending.built.take().expect("enforce_limits built every transition");
                let next = self.bump_version(id);
                transitions.push(t);
                submitted.entries.push((id.clone(), next, pending));
            }
            if transitions.is_empty() {
                continue;
            }
            let (reply, rx) = oneshot::channel();
            let job = CommitJob::Commit { transitions: transitions.into(), reply };
            self.committer.send(job).await.map_err(|_| EngineError::Stopped)?;
            submitted.replies.push_back(rx);
        }
        if submitted.entries.is_empty() {
            if submitted.timers_fired {
                self.refresh_next_timer().await;
            }
            return Ok(());
        }
        self.submitted.push_back(submitted);
        Ok(())
    }

    /// Waits for the oldest submitted batch to be durable, then performs its
    /// effects. A transition the store refused over a limit gives its execution
    /// up (the engine's own check should have caught it); commits of executions
    /// given up on are expected to conflict. Any other refusal, or a store error
    /// that is not transient (the committer retries those), stops the engine.
    async fn acknowledge_oldest(&mut self) -> Result<(), EngineError> {
        let Some(submitted) = self.submitted.pop_front() else { return Ok(()) };
        let mut results = Vec::with_capacity(submitted.entries.len());
        for r in submitted.received {
            results.extend(r?);
        }
        for rx in submitted.replies {
            results.extend(rx.await.map_err(|_| EngineError::Stopped)??);
        }
        debug_assert_eq!(results.len(), submitted.entries.len());
        for ((id, expected, pending), result) in submitted.entries.into_iter().zip(results) {
            let version = match result {
                Ok(v) => v,
                Err(_) if self.given_up.contains_key(&id) => {
                    let fault = self.given_up[&id].fault.clone();
                    for reply in pending.replies {
                        reply(Err(EngineError::quarantined(&id, &fault)));
                    }
                    continue;
                }
                Err(TransitionError::TokenReused { execution_id, same_request }) if expected == 1 => {
                    // The start was a repeat: nothing of it was written; answer with the first execution.
                    self.live.remove(&id);
                    self.fn_live.remove(&id);
                    for reply in pending.replies {
                        reply(Err(EngineError::TokenReused { execution_id: execution_id.clone(), same_request }));
                    }
                    continue;
                }
                Err(TransitionError::Limit(problem)) => {
                    let started_at = self.started_at(&id).unwrap_or(submitted.now);
                    self.give_up(&id, limit_fault(&problem), started_at, None, Some(pending));
                    continue;
                }
                Err(e) => return Err(EngineError::Conflict(e.to_string())),
            };
            if version != expected {
                return Err(EngineError::Conflict(format!("execution {id}: store is at version {version}, engine expected {expected}")));
            }
            self.after_commit(&id, pending, submitted.now);
        }
        if !self.given_up.is_empty() {
            self.forget_given_up();
        }
        if submitted.timers_fired {
            self.refresh_next_timer().await;
        }
        Ok(())
    }

    /// Performs a committed transition's effects.
    fn after_commit(&mut self, id: &str, pending: Pending, now: Timestamp) {
        if self.fn_live.contains_key(id) {
            return self.fn_after_commit(id, pending, now);
        }
        let notify = self.notify.receiver_count() > 0;
        let Some(live) = self.live.get_mut(id) else { return };
        live.unacked -= 1;
        for due in pending.timers.values().flatten() {
            self.next_timer_due = Some(self.next_timer_due.map_or(*due, |d| d.min(*due)));
        }
        for reply in pending.replies {
            reply(Ok(()));
        }
        for entry_id in &pending.taken {
            self.dlq_taken.remove(entry_id);
        }
        if notify {
            let p = &live.pipeline.pipeline;
            for r in &pending.records {
                let stage = &p.stages[r.id.at.stage];
                let _ = self.notify.send(Notification::AttemptFinished {
                    execution_id: id.to_string(),
                    stage: stage.name.to_string(),
                    action: stage.actions[r.id.at.action].name.to_string(),
                    record: r.clone(),
                });
            }
            for a in &pending.starts {
                let stage = &p.stages[a.at.stage];
                let _ = self.notify.send(Notification::AttemptStarted {
                    execution_id: id.to_string(),
                    stage: stage.name.to_string(),
                    action: stage.actions[a.at.action].name.to_string(),
                    series: a.series,
                    attempt: a.attempt,
                    at: now,
                });
            }
        }
        for a in pending.starts {
            self.dispatch(id, a);
        }
        if let Some(status) = pending.finished {
            // Attempts abandoned by a stop or an abort: kill them.
            self.abort_tasks(id);
            let outcome = outcome_of(&self.live[id].state);
            if notify {
                let _ = self.notify.send(Notification::ExecutionFinished { execution_id: id.to_string(), status, at: now });
            }
            for w in self.waiters.remove(id).unwrap_or_default() {
                let _ = w.send(Ok(outcome.clone()));
            }
        }
        // Drop finished executions, and evict those that only wait on distant
        // timers (they cost disk, not RAM) — once nothing about them is in flight.
        let live = &self.live[id];
        if live.unacked > 0 {
            return;
        }
        if live.state.status.is_finished() {
            // Durable now: wake anyone who started waiting while it was in flight.
            let outcome = outcome_of(&live.state);
            for w in self.waiters.remove(id).unwrap_or_default() {
                let _ = w.send(Ok(outcome.clone()));
            }
            self.live.remove(id);
            return;
        }
        let all_waiting_far = live.state.stages.iter().flat_map(|s| &s.actions).filter(|a| a.is_active()).all(|a| {
            a.status == ActionStatus::WaitingRetry
                && a.next_attempt_at.is_some_and(|d| d.ms_since(now) > self.config.evict_waiting_after_ms as i64)
        });
        if all_waiting_far {
            self.live.remove(id);
        }
    }

    /// Runs one attempt: instant noops inline, everything else on a task.
    fn dispatch(&mut self, execution_id: &str, id: AttemptId) {
        if self.draining.is_some() {
            // Never dispatched: release it durably so a restart runs it as the same attempt.
            self.local.push_back(Inbound::Release { execution_id: execution_id.to_string(), id });
            return;
        }
        let live = &self.live[execution_id];
        let pipeline = live.pipeline.clone();
        let action = &pipeline.pipeline.stages[id.at.stage].actions[id.at.action];
        if let ActionKind::Noop(spec) = &action.kind
            && spec.sleep_ms == 0
        {
            let outcome = runner::noop_outcome(spec, id.attempt);
            self.local.push_back(Inbound::Result { execution_id: execution_id.to_string(), id, outcome, from_task: false });
            return;
        }
        let stage_name = pipeline.pipeline.stages[id.at.stage].name.to_string();
        let action_name = action.name.to_string();
        let ctx = AttemptContext {
            idempotency_key: idempotency_key(execution_id, &stage_name, &action_name),
            execution_id: execution_id.to_string(),
            stage: stage_name,
            action: action_name,
            series: id.series,
            attempt: id.attempt,
            timeout: action.timeout_seconds.map(std::time::Duration::from_secs),
            base_dir: pipeline.base_dir.clone(),
            input_json: live.input_json.to_string(),
        };
        let tx = self.tx.clone();
        let slots = self.slots.clone();
        let pipeline_name = pipeline.record.name.clone();
        let in_flight_count = self.tasks_in_flight.clone();
        in_flight_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Decremented when the driver receives the result (or the send fails).
        let http = self.http.clone();
        let engine = EngineHandle { tx: self.tx.clone(), notify: self.notify.clone(), health: self.health.subscribe() };
        let store = self.store.clone();
        let execution_id = execution_id.to_string();
        let task_execution_id = execution_id.to_string();
        let task = tokio::spawn(async move {
            let _slot = slots.acquire(&pipeline_name).await;
            let action = &pipeline.pipeline.stages[id.at.stage].actions[id.at.action];
            let outcome = match &action.kind {
                ActionKind::Command(spec) => runner::run_command(spec, &ctx).await,
                ActionKind::Http(spec) => runner::run_http(&http, spec, &ctx).await,
                ActionKind::Noop(spec) => runner::run_noop(spec, &ctx).await,
                ActionKind::Function(f) => run_function_action(&engine, &*store, f.function_name.as_str(), &ctx).await,
            };
            if tx.send(Inbound::Result { execution_id, id, outcome, from_task: true }).await.is_err() {
                in_flight_count.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        self.running_tasks.entry(task_execution_id).or_default().insert(id, task.abort_handle());
    }
}

/// A `function:` action: one execution of the registered durable function per
/// attempt (named after the attempt, so a repeated start of the same attempt
/// re-attaches), with the pipeline execution's input; its result is the
/// attempt's output, its failure the attempt's failure.
async fn run_function_action<S: Store>(engine: &EngineHandle, store: &S, function: &str, ctx: &AttemptContext) -> AttemptOutcome {
    let name = format!("{}/{}/{}/{}.{}", ctx.execution_id, ctx.stage, ctx.action, ctx.series, ctx.attempt);
    let fail = |t: ExceptionType, m: String| AttemptOutcome::Failed(Failure::new(t, m));
    let id = match engine.start_function(function, &name, ctx.input_json.clone()).await {
        Ok((id, _)) => id,
        Err(EngineError::FunctionNotRegistered(n)) => {
            return fail(ExceptionType::ActionFailed, format!("no durable function named {n} is registered in this process"));
        }
        Err(e) => return fail(ExceptionType::ServiceFault, format!("could not start function {function}: {e}")),
    };
    if let Err(e) = engine.wait(&id).await {
        return fail(ExceptionType::ServiceFault, format!("function execution {id}: {e}"));
    }
    let state = match store.get_execution(&id).await {
        Ok(Some(rec)) => functions::parse_fn_state(&rec),
        Ok(None) => Err(EngineError::ExecutionNotFound(id.clone())),
        Err(e) => Err(e.into()),
    };
    match state {
        Ok(s) if s.status == redrive_core::function::FunctionStatus::Succeeded => AttemptOutcome::Succeeded { output: s.result },
        Ok(s) => AttemptOutcome::Failed(s.error.unwrap_or_else(|| Failure::new(ExceptionType::ActionFailed, "the function failed"))),
        Err(e) => fail(ExceptionType::ServiceFault, format!("function execution {id}: {e}")),
    }
}

fn parse_state(id: &str, json: &str) -> Result<ExecutionState, EngineError> {
    serde_json::from_str(json).map_err(|e| EngineError::CorruptState { id: id.to_string(), reason: e.to_string() })
}

fn outcome_of(state: &ExecutionState) -> ExecutionOutcome {
    ExecutionOutcome {
        execution_id: state.execution_id.clone(),
        status: state.status,
        started_at: state.started_at,
        finished_at: state.finished_at.unwrap_or(state.started_at),
    }
}

/// Resolves once every reply of the oldest submitted batch has arrived (never if
/// nothing is submitted). Cancel-safe: received replies are kept in the batch.
async fn wait_oldest(submitted: &mut VecDeque<Submitted>) {
    let Some(oldest) = submitted.front_mut() else { return std::future::pending().await };
    while let Some(rx) = oldest.replies.front_mut() {
        let result = rx.await.unwrap_or(Err(StoreError::Unavailable("the committer stopped".into())));
        oldest.replies.pop_front();
        oldest.received.push(result);
    }
}

async fn sleep_or_forever(d: Option<std::time::Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
