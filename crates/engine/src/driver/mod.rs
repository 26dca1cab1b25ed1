//! The engine's event loop.
//!
//! One task owns every live execution's state, pipeline and durable function
//! alike ([`live::Live`]). It takes a batch of messages (attempt results, timer
//! firings, starts, resumes, function history changes), applies each to its
//! pure state machine (`redrive_core::machine`, `redrive_core::function`; the
//! rules across a pipeline's executions are `redrive_core::schedule`), and
//! commits the whole batch — every execution it touched — as one store commit
//! (group commit). Only after the commit acknowledges does it perform the
//! effects: start attempts, invoke functions, wake waiters. A crash at any point
//! therefore loses nothing that was acknowledged, and an attempt is never
//! started before the state that says "running" is durable.
//!
//! The loop never awaits a store read inside a batch: a message that needs data
//! it does not hold is parked while a task reads it ([`load`]), and handled
//! again when the data arrives. Timers are rows in the store; the loop keeps
//! only the earliest due time in memory and sleeps on its [`Clock`] until then
//! ([`timers`]), so tests drive it in virtual time. Executions that only wait on
//! a distant timer leave memory and are read again when it fires.

mod ahead;
mod batch;
mod commit;
mod dependencies;
mod functions;
mod keys;
mod live;
mod load;
mod pause;
mod pipelines;
mod quarantine;
mod redrive;
mod timers;

use crate::clock::Clock;
use crate::error::EngineError;
use crate::function::FnCall;
use crate::handle::{DriverStats, EngineHandle, ExecutionOutcome, Inbound, Notification};
use crate::health::HealthReporter;
use crate::pipeline::LoadedPipeline;
use crate::runner;
use batch::{Batch, Delete, Finished, unit_reply};
use commit::{CommitJob, MAX_SUBMITTED_BATCHES, Submitted, committer, wait_oldest};
use live::Live;
use load::{Found, Loaded, Need};
use pipelines::NewExecution;
use quarantine::GivenUp;
use redrive_core::machine::{AttemptId, Event};
use redrive_core::time::Timestamp;
use redrive_store::{DlqEntryRecord, ExecutionRecord, Store, StoreError, TimerRecord};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use pipelines::{idempotency_key, ledger_entry};

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
    /// Executions of timers due within this much of now are read into memory
    /// before their timers are due (see `driver::ahead`); 0 turns it off.
    pub read_ahead_window_ms: u64,
    /// Executions read ahead that wait in memory for their timers, at most.
    pub max_read_ahead_executions: usize,
    /// Capacity of the inbound channel.
    pub inbound_capacity: usize,
    /// Where command actions' `secretEnv` values come from.
    pub secrets: Arc<runner::secrets::Secrets>,
    /// The server config's dependencies (a pipeline's own declaration of a
    /// name wins, see [`redrive_core::dependency::effective`]).
    pub dependencies: Arc<[redrive_core::dependency::Dependency]>,
    /// Which redirects an http action without `redirects` follows (the server
    /// config's `httpActions.redirects`).
    pub http_redirects: redrive_core::definition::RedirectMode,
    /// Where the engine counts (`/metrics`); `None`: figures of its own. The
    /// engines of one process's shards (`--spread`) share one.
    pub metrics: Option<Arc<crate::metrics::EngineMetrics>>,
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
            read_ahead_window_ms: 1000,
            max_read_ahead_executions: 10_000,
            inbound_capacity: 65_536,
            secrets: Arc::default(),
            dependencies: Arc::from(Vec::new()),
            http_redirects: redrive_core::definition::RedirectMode::default(),
            metrics: None,
        }
    }
}

/// A message the loop handles: a caller's, or one of its own (from its read,
/// timer and quarantine tasks, or a follow-up it gives itself).
pub(super) enum Msg {
    In(Inbound),
    /// A history change from a running function invocation.
    FnCall(FnCall),
    /// A read a parked message waits for is done; it started at `epoch`.
    Loaded {
        epoch: u64,
        loaded: Box<Loaded>,
    },
    /// SUPERSEDED: a stage-lock event (enter a stage, or be superseded) for an
    /// execution that had to be read first.
    StageLock {
        execution_id: String,
        event: redrive_core::machine::Event,
    },
    /// QUEUED: start the oldest unfinished execution of `pipeline` if it waits.
    HandOver {
        pipeline: String,
    },
    /// An execution left its pipeline's unfinished set outside a batch (given up on).
    Released(Finished),
    /// A due timer to fire.
    Timer(TimerRecord),
    /// A timer poll's result.
    TimersDue(Result<Vec<TimerRecord>, StoreError>),
    /// The earliest timer's due time, read after fired timers were committed.
    NextTimerDue(Result<Option<Timestamp>, StoreError>),
    /// What a look at the timers ahead found.
    TimersAhead(ahead::Look, Result<Vec<TimerRecord>, StoreError>),
    /// An execution read ahead of its timer is here.
    ReadAhead(String),
    /// A quarantine ([`Driver::give_up`]) is durable (or failed for good).
    Quarantined {
        execution_id: String,
        result: Result<Option<u64>, StoreError>,
    },
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
    /// The loop's own tasks report here (reads, timer polls, quarantines).
    own_rx: mpsc::UnboundedReceiver<Msg>,
    own_tx: mpsc::UnboundedSender<Msg>,
    notify: broadcast::Sender<Notification>,
    /// Executions in memory, pipeline and function alike.
    live: HashMap<String, Live>,
    /// Pipeline versions read so far (`Err`: the stored definition is unusable).
    pipelines: HashMap<(String, u32), Result<Arc<LoadedPipeline>, String>>,
    /// Unfinished executions per pipeline, oldest first (for the execution
    /// modes); read from the store the first time a pipeline needs it.
    active: HashMap<String, BTreeSet<(Timestamp, String)>>,
    /// Pipelines whose unfinished set is being read: executions released
    /// meanwhile (the read may predate their finish).
    active_reading: HashMap<String, Vec<(Timestamp, String)>>,
    /// SUPERSEDED pipelines' stage locks, installed with `active`.
    stage_locks: HashMap<String, redrive_core::schedule::StageLocks<crate::locks::LockKey>>,
    /// Messages waiting for a read, per what they wait for.
    parked: HashMap<Need, Vec<Msg>>,
    /// Executions to read, asked for since the loop last started reads
    /// ([`Driver::start_execution_reads`]).
    execution_reads: Vec<String>,
    /// Execution records read for parked messages, of executions not in memory
    /// (`None`: not found). Taken when installed.
    staged_records: HashMap<String, Option<ExecutionRecord>>,
    /// Dead-letter entries read for parked redrives; each redrive takes its copy.
    staged_entries: HashMap<String, Option<DlqEntryRecord>>,
    /// Executions installed from the store in this batch (see `drop_idle_installed`).
    installed: Vec<String>,
    waiters: HashMap<String, Vec<oneshot::Sender<Result<ExecutionOutcome, EngineError>>>>,
    /// Messages the loop gave itself, handled with the next batch.
    local: VecDeque<Msg>,
    timers: timers::TimerState,
    /// Executions read ahead of their timers.
    read_ahead: ahead::ReadAhead,
    http: runner::HttpClient,
    /// Batches handed to the committer task, oldest first.
    submitted: VecDeque<Submitted>,
    committer: mpsc::Sender<CommitJob>,
    /// The committer task; awaited on exit so the store is released when `run` ends.
    committer_task: Option<tokio::task::JoinHandle<()>>,
    /// Attempts running on tasks (dispatched, result not yet received).
    tasks_in_flight: Arc<AtomicUsize>,
    /// The tasks behind `tasks_in_flight`, per execution, to abort abandoned ones
    /// (dropping an attempt kills its process group).
    running_tasks: HashMap<String, HashMap<AttemptId, tokio::task::AbortHandle>>,
    /// Set by a drain: its deadline and who to tell when it is over.
    draining: Option<(tokio::time::Instant, Vec<oneshot::Sender<usize>>)>,
    /// Dead-letter entries taken by a redrive whose commit is not acknowledged
    /// yet: the store still says `QUEUED`, so a second redrive must not trust it.
    dlq_taken: HashSet<String>,
    /// Registered durable functions.
    functions: HashMap<String, functions::Registered>,
    health: Arc<HealthReporter>,
    /// Executions the engine gave up on ([`Driver::give_up`]) and is quarantining;
    /// their commits still in flight are refused as conflicts, which is expected.
    given_up: HashMap<String, GivenUp>,
    /// Attempt slots shared fairly between pipelines.
    slots: Arc<crate::fair::FairSlots>,
    /// Per-key concurrency slots (actions with `concurrency:`).
    keys: Arc<crate::keys::KeyGate>,
    /// Counts changes of the store made outside commits (purges, quarantines):
    /// a record or entry read across one may be stale and is read again.
    store_epoch: u64,
    /// An error that stops the loop, found while handling a message.
    fatal: Option<EngineError>,
    /// Counts what committed transitions did (`/metrics`).
    recorder: crate::metrics::Recorder,
    /// Retry budgets and circuit breakers, one state per dependency name.
    dependencies: crate::dependencies::Dependencies,
}

impl<S: Store> Driver<S> {
    /// Spawns the loop on the current tokio runtime.
    pub fn spawn(
        store: Arc<S>,
        clock: Arc<dyn Clock>,
        config: DriverConfig,
    ) -> (EngineHandle, tokio::task::JoinHandle<Result<(), EngineError>>) {
        let (tx, rx) = mpsc::channel(config.inbound_capacity);
        let config_dependencies = config.dependencies.clone();
        let http = runner::HttpClient::new(config.http_redirects);
        let (fn_tx, fn_rx) = mpsc::channel(config.inbound_capacity);
        let (own_tx, own_rx) = mpsc::unbounded_channel();
        let (notify, _) = broadcast::channel(4096);
        let (committer_tx, committer_rx) = mpsc::channel(MAX_SUBMITTED_BATCHES * 8);
        let health = HealthReporter::new(clock.clone());
        let metrics = config.metrics.clone().unwrap_or_default();
        let committer_task = tokio::spawn(committer(store.clone(), committer_rx, health.clone(), metrics.clone()));
        let handle = EngineHandle { tx: tx.clone(), notify: notify.clone(), health: health.subscribe(), metrics: metrics.clone() };
        let read_ahead = ahead::ReadAhead::new(config.read_ahead_window_ms, config.max_read_ahead_executions);
        let driver = Driver {
            slots: crate::fair::FairSlots::new(config.max_inflight_attempts, config.max_inflight_attempts_per_pipeline),
            keys: crate::keys::KeyGate::new(),
            store,
            clock,
            config,
            rx,
            tx,
            fn_rx,
            fn_tx,
            own_rx,
            own_tx,
            notify,
            live: HashMap::new(),
            pipelines: HashMap::new(),
            active: HashMap::new(),
            active_reading: HashMap::new(),
            stage_locks: HashMap::new(),
            parked: HashMap::new(),
            execution_reads: Vec::new(),
            staged_records: HashMap::new(),
            staged_entries: HashMap::new(),
            installed: Vec::new(),
            waiters: HashMap::new(),
            local: VecDeque::new(),
            timers: timers::TimerState::default(),
            read_ahead,
            http,
            submitted: VecDeque::new(),
            committer: committer_tx,
            committer_task: Some(committer_task),
            tasks_in_flight: Arc::new(AtomicUsize::new(0)),
            running_tasks: HashMap::new(),
            draining: None,
            dlq_taken: HashSet::new(),
            functions: HashMap::new(),
            health,
            given_up: HashMap::new(),
            store_epoch: 0,
            fatal: None,
            recorder: crate::metrics::Recorder::new(metrics),
            dependencies: crate::dependencies::Dependencies::new(config_dependencies),
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
        let result = match self.install_dependencies().await {
            Ok(()) => self.run_loop().await,
            Err(e) => Err(e),
        };
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
        self.refresh_next_timer();
        loop {
            if self.drain_over() {
                return Ok(());
            }
            self.start_execution_reads();
            let mut inbox: Vec<Msg> = self.local.drain(..).collect();
            if inbox.is_empty() {
                let timer_wake = self.timer_wake();
                // Wakes once at the drain's deadline; after it the loop waits for the
                // commits still in flight (a deadline in the past would wake it at
                // once, every turn: a busy loop while the store is down).
                let drain_deadline = self
                    .draining
                    .as_ref()
                    .map(|(deadline, _)| *deadline)
                    .filter(|deadline| *deadline > tokio::time::Instant::now())
                    .map(tokio::time::sleep_until);
                tokio::select! {
                    msg = self.rx.recv() => match msg {
                        Some(m) => inbox.push(Msg::In(m)),
                        None => return self.drain_submitted().await,
                    },
                    Some(call) = self.fn_rx.recv() => inbox.push(Msg::FnCall(call)),
                    Some(msg) = self.own_rx.recv() => inbox.push(msg),
                    () = wake_or_never(timer_wake) => {}
                    () = wake_or_never(drain_deadline.map(|s| Box::pin(s) as crate::clock::Sleep)) => {}
                    () = wait_oldest(&mut self.submitted) => {
                        self.acknowledge_oldest().await?;
                        continue;
                    }
                }
            }
            self.fill_inbox(&mut inbox);
            let shutdown = self.run_batch(inbox).await?;
            while self.submitted.len() >= MAX_SUBMITTED_BATCHES || (shutdown && !self.submitted.is_empty()) {
                self.acknowledge_oldest().await?;
            }
            if shutdown {
                return Ok(());
            }
        }
    }

    /// Tops the inbox up with whatever is waiting, up to a batch's worth.
    fn fill_inbox(&mut self, inbox: &mut Vec<Msg>) {
        let max = self.config.max_batch_messages;
        while inbox.len() < max
            && let Ok(m) = self.own_rx.try_recv()
        {
            inbox.push(m);
        }
        while inbox.len() < max
            && let Ok(m) = self.rx.try_recv()
        {
            inbox.push(Msg::In(m));
        }
        while inbox.len() < max
            && let Ok(call) = self.fn_rx.try_recv()
        {
            inbox.push(Msg::FnCall(call));
        }
    }

    /// Handles one batch of messages and submits what they changed. Returns
    /// whether a shutdown was asked for.
    async fn run_batch(&mut self, inbox: Vec<Msg>) -> Result<bool, EngineError> {
        let now = self.clock.now();
        let mut batch = Batch::default();
        let mut shutdown = false;
        for msg in inbox {
            match msg {
                Msg::In(Inbound::Shutdown) => shutdown = true,
                msg => self.handle_now(msg, now, &mut batch),
            }
        }
        if let Some(e) = self.fatal.take() {
            return Err(e);
        }
        if !shutdown {
            self.fire_timers_ahead(now, &mut batch);
            self.poll_timers_if_due(now);
            self.look_ahead_if_due(now);
        }
        // Move queues, and check every transition against the limits: an
        // execution failed by the check finishes, which may move a queue again.
        loop {
            for finished in std::mem::take(&mut batch.finished) {
                self.release(finished, now, &mut batch);
            }
            if !self.enforce_limits(&mut batch, now) && batch.finished.is_empty() {
                break;
            }
        }
        self.drop_idle_installed(&batch);
        self.forget_staged();
        let deletes = std::mem::take(&mut batch.deletes);
        let timers_fired = batch.timers_fired;
        if !self.submit(batch, now).await? && timers_fired {
            self.refresh_next_timer(); // nothing to wait for
        }
        self.save_dependencies(now).await;
        if !deletes.is_empty() {
            // Every take the loop accepted so far must be durable first: the
            // store still calls those entries QUEUED until then (and an entry a
            // prune may delete could be entering its queue again). A prune of
            // executions alone needs no drain: it leaves out every execution
            // with a commit in flight (those are in memory).
            if deletes.iter().any(Delete::touches_entries) {
                self.drain_submitted().await?;
            }
            for delete in deletes {
                self.delete(delete).await;
            }
            self.staged_entries.clear();
            self.store_epoch += 1;
        }
        Ok(shutdown)
    }

    /// Runs a purge or a prune. A prune leaves out the executions the loop
    /// holds or is reading: only the loop writes executions, so what it does
    /// not hold cannot change under the prune, and a read under way is read
    /// again after it (the store epoch moves) and finds the execution gone.
    async fn delete(&mut self, delete: Delete) {
        match delete {
            Delete::Purge(filter, reply) => {
                let _ = reply.send(self.store.purge_dlq_entries(filter).await.map_err(EngineError::from));
            }
            Delete::Prune(mut step, reply) => {
                step.executions.retain(|e| !self.live.contains_key(&e.id) && !self.parked.contains_key(&Need::Execution(e.id.clone())));
                let _ = reply.send(self.store.prune(step).await.map_err(EngineError::from));
            }
        }
    }

    /// A drain is over once nothing is left to commit and no attempt runs (or
    /// its grace ran out): everyone who asked is told how many still run.
    fn drain_over(&mut self) -> bool {
        let Some((deadline, _)) = &self.draining else { return false };
        let running = self.tasks_in_flight.load(Ordering::SeqCst);
        let over = self.submitted.is_empty() && self.local.is_empty() && (running == 0 || tokio::time::Instant::now() >= *deadline);
        if over {
            let (_, replies) = self.draining.take().expect("draining");
            for r in replies {
                let _ = r.send(running);
            }
        }
        over
    }

    /// Handles one message against the batch. Never awaits: what needs a read
    /// is parked (see [`load`]).
    fn handle_now(&mut self, msg: Msg, now: Timestamp, batch: &mut Batch) {
        match msg {
            Msg::In(inbound) => self.handle_inbound(inbound, now, batch),
            Msg::FnCall(FnCall { execution_id, event, reply }) => self.fn_event(execution_id, event, reply, now, batch),
            Msg::Loaded { epoch, loaded } => self.loaded(epoch, *loaded, now, batch),
            Msg::StageLock { execution_id, event } => self.stage_lock_event(execution_id, event, now, batch),
            Msg::HandOver { pipeline } => self.hand_over(pipeline, now, batch),
            Msg::Released(finished) => self.release(finished, now, batch),
            Msg::Timer(t) => self.fire_timer(t, now, batch),
            Msg::TimersDue(due) => self.timers_due(due, now, batch),
            Msg::NextTimerDue(due) => self.next_timer_read(due),
            Msg::TimersAhead(look, found) => self.timers_ahead(look, found, now),
            Msg::ReadAhead(id) => self.read_ahead_loaded(id, now, batch),
            Msg::Quarantined { execution_id, result } => {
                if let Err(e) = self.quarantined(execution_id, result) {
                    self.fatal.get_or_insert(e);
                }
            }
        }
    }

    fn handle_inbound(&mut self, msg: Inbound, now: Timestamp, batch: &mut Batch) {
        match msg {
            Inbound::Start { pipeline, execution_id, input_json, client_token, reply } => {
                if let Some(need) = self.unfinished(&pipeline.record.name).err() {
                    let msg = Inbound::Start { pipeline, execution_id, input_json, client_token, reply };
                    return self.park(need, Msg::In(msg));
                }
                let new = NewExecution { pipeline, execution_id: execution_id.clone(), input_json, client_token, dead_letter: None };
                let Ok(result) = self.begin(new, now, batch) else { unreachable!("the pipeline's unfinished executions are in memory") };
                self.reply_after_commit(&execution_id, result, reply, batch);
            }
            Inbound::Redrive { entry_id, mode, force, scope, pipeline, new_execution_id, input_patch, reply } => {
                let request = redrive::RedriveRequest { entry_id, mode, force, scope, pipeline, new_execution_id, input_patch };
                self.redrive(request, reply, now, batch);
            }
            Inbound::Purge { filter, reply } => batch.deletes.push(Delete::Purge(filter, reply)),
            Inbound::Prune { step, reply } => batch.deletes.push(Delete::Prune(step, reply)),
            Inbound::RegisterFunction { name, function, dead_letter_queue } => {
                self.functions.insert(name, functions::Registered { function, dead_letter_queue });
                self.function_registered(now); // its timers can fire now
            }
            Inbound::FnStart { function, name, execution_id, input_json, fingerprint, reply } => {
                self.fn_start(function, name, execution_id, input_json, fingerprint, reply, now, batch)
            }
            Inbound::FnEnded { execution_id, outcome } => self.fn_ended(execution_id, outcome, now, batch),
            Inbound::Resume { execution_id, reply } => self.resume(execution_id, reply, now, batch),
            Inbound::Wait { execution_id, reply } => self.wait(execution_id, reply, now, batch),
            Inbound::Result { execution_id, id, outcome, from_task } => {
                if from_task && self.forget_task(&execution_id, id) {
                    self.tasks_in_flight.fetch_sub(1, Ordering::SeqCst);
                }
                self.attempt_result(execution_id, id, outcome, now, batch);
            }
            Inbound::Began { execution_id, id, at, reply } => {
                let result = match self.live.get(&execution_id).and_then(|l| l.pipeline()) {
                    Some(_) => self.apply(&execution_id, Event::AttemptBegan { id, at }, now, batch).map_err(EngineError::Rejected),
                    None => Err(EngineError::ExecutionNotFound(execution_id.clone())),
                };
                self.reply_after_commit(&execution_id, result, reply, batch);
            }
            Inbound::Stats { reply } => {
                let functions = self.live.values().filter(|l| l.function().is_some()).count();
                let _ = reply.send(DriverStats {
                    live_executions: self.live.len() - functions,
                    live_functions: functions,
                    next_timer_due: self.timers.next_due,
                    submitted_batches: self.submitted.len(),
                });
            }
            Inbound::RetryStage { execution_id, stage, how, reply } => match self.find_pipeline_execution(&execution_id, now, batch) {
                Found::Live => match self.retry_stage(&execution_id, &stage, how.clone(), now, batch) {
                    Ok(result) => self.reply_after_commit(&execution_id, result, reply, batch),
                    Err(need) => self.park(need, Msg::In(Inbound::RetryStage { execution_id, stage, how, reply })),
                },
                Found::Park(need) => self.park(need, Msg::In(Inbound::RetryStage { execution_id, stage, how, reply })),
                Found::Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Inbound::Stop { execution_id, abandon, reason, reply } => match self.find_pipeline_execution(&execution_id, now, batch) {
                Found::Live => {
                    let result = self.apply(&execution_id, Event::Stop { abandon, reason }, now, batch).map_err(EngineError::Rejected);
                    self.reply_after_commit(&execution_id, result, reply, batch);
                }
                Found::Park(need) => self.park(need, Msg::In(Inbound::Stop { execution_id, abandon, reason, reply })),
                Found::Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Inbound::ResumePaused { execution_id, action, input_patch, reply } => {
                match self.find_pipeline_execution(&execution_id, now, batch) {
                    Found::Live => {
                        let result = self.resume_paused(&execution_id, action, input_patch, now, batch);
                        self.reply_after_commit(&execution_id, result, reply, batch);
                    }
                    Found::Park(need) => self.park(need, Msg::In(Inbound::ResumePaused { execution_id, action, input_patch, reply })),
                    Found::Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Inbound::FailPaused { execution_id, reply } => match self.find_pipeline_execution(&execution_id, now, batch) {
                Found::Live => {
                    let result = self.apply(&execution_id, Event::Fail, now, batch).map_err(EngineError::Rejected);
                    self.reply_after_commit(&execution_id, result, reply, batch);
                }
                Found::Park(need) => self.park(need, Msg::In(Inbound::FailPaused { execution_id, reply })),
                Found::Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Inbound::Release { execution_id, id, from_task } => {
                if from_task && self.forget_task(&execution_id, id) {
                    self.tasks_in_flight.fetch_sub(1, Ordering::SeqCst);
                }
                if self.live.get(&execution_id).is_some_and(|l| l.pipeline().is_some())
                    && let Err(r) = self.apply(&execution_id, Event::Release { id }, now, batch)
                {
                    tracing::warn!(execution_id, %r, "could not release an undispatched attempt");
                }
            }
            Inbound::KeyWaits { execution_id, reply } => {
                let _ = reply.send(self.keys.waits(execution_id.as_deref()));
            }
            Inbound::Dependencies { reply } => {
                let _ = reply.send(self.dependencies.snapshot(now));
            }
            Inbound::DependencyPeers { records } => self.dependencies.set_peers(records),
            Inbound::Drain { grace, reply } => match &mut self.draining {
                Some((_, replies)) => replies.push(reply),
                None => {
                    // Attempts waiting for a key slot never ran: they are released.
                    self.keys.close();
                    self.draining = Some((tokio::time::Instant::now() + grace, vec![reply]));
                }
            },
            Inbound::Shutdown => unreachable!("handled by the loop"),
        }
    }

    /// A pipeline execution a request names (a function execution is refused).
    fn find_pipeline_execution(&mut self, id: &str, now: Timestamp, batch: &mut Batch) -> Found {
        match self.find(id, now, batch) {
            Found::Live if self.live[id].pipeline().is_none() => Found::Err(EngineError::FunctionExecution(id.to_string())),
            found => found,
        }
    }

    /// Takes over an unfinished execution from the store (see [`Driver::find`]:
    /// loading it recovers it).
    fn resume(&mut self, id: String, reply: oneshot::Sender<Result<(), EngineError>>, now: Timestamp, batch: &mut Batch) {
        match self.find(&id, now, batch) {
            Found::Live => {}
            Found::Park(need) => return self.park(need, Msg::In(Inbound::Resume { execution_id: id, reply })),
            Found::Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        }
        let status = self.live[&id].status();
        if status.is_finished() {
            let _ = reply.send(Err(EngineError::AlreadyFinished { id, status: status.as_str().into() }));
        } else if let Some(pending) = batch.pending.get_mut(&id) {
            pending.replies.push(unit_reply(reply)); // answered once the recovery is durable
        } else {
            let _ = reply.send(Ok(()));
        }
    }

    /// Answers once the execution has finished, durably. The in-memory state can
    /// be ahead of the store while a commit is in flight, so only durable state
    /// answers; otherwise the waiter waits for the acknowledgement. An execution
    /// not in memory answers from its stored record, without being loaded.
    fn wait(&mut self, id: String, reply: oneshot::Sender<Result<ExecutionOutcome, EngineError>>, now: Timestamp, batch: &mut Batch) {
        let finished = if batch.pending.contains_key(&id) || self.given_up.contains_key(&id) {
            Ok(None)
        } else if let Some(live) = self.live.get(&id) {
            Ok(live.durable_outcome(&id))
        } else {
            match self.staged_records.get(&id) {
                None => return self.park(Need::Execution(id.clone()), Msg::In(Inbound::Wait { execution_id: id, reply })),
                Some(None) => Err(EngineError::ExecutionNotFound(id.clone())),
                Some(Some(rec)) => self.stored_outcome(rec.clone(), now, batch),
            }
        };
        match finished {
            Ok(Some(o)) => {
                let _ = reply.send(Ok(o));
            }
            Ok(None) => self.waiters.entry(id).or_default().push(reply),
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// Whether a stored execution has finished, from its record. One whose state
    /// cannot be read is given up on (quarantined): `None`, and the waiter is
    /// answered once the quarantine is durable.
    fn stored_outcome(&mut self, rec: ExecutionRecord, now: Timestamp, batch: &mut Batch) -> Result<Option<ExecutionOutcome>, EngineError> {
        if rec.fault.is_some() {
            return Ok(Some(ExecutionOutcome {
                execution_id: rec.id.clone(),
                status: quarantine::QUARANTINED_STATUS,
                started_at: rec.created_at,
                finished_at: rec.updated_at,
            }));
        }
        match live::stored_outcome(&rec) {
            Ok(outcome) => Ok(outcome),
            Err(reason) => {
                let _ = now;
                let finished = (rec.target.kind() == redrive_store::ExecutionKind::Pipeline).then(|| Finished {
                    pipeline: rec.target.name().to_string(),
                    key: (rec.created_at, rec.id.clone()),
                    queued_mode: true,
                });
                self.give_up(&rec.id, quarantine::corrupt_state_fault(&reason), rec.created_at, finished, batch.pending.remove(&rec.id));
                Ok(None)
            }
        }
    }

    /// Answers a request at once on error, else once the batch holding its change
    /// is durable. A finished execution loaded only to refuse the request leaves
    /// memory again at the end of the batch.
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
            self.tasks_in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Takes an execution out of memory (with anything read for it earlier).
    fn evict(&mut self, id: &str) -> Option<Live> {
        self.staged_records.remove(id);
        self.read_ahead.forget(id);
        self.live.remove(id)
    }
}

async fn wake_or_never(sleep: Option<crate::clock::Sleep>) {
    match sleep {
        Some(s) => s.await,
        None => std::future::pending().await,
    }
}
