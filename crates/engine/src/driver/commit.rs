//! From a batch to durable transitions: every transition is built once and
//! checked against the limits (`enforce_limits`), handed to the committer task
//! (which retries transient store faults), and its effects performed only once
//! the store acknowledges it.

use super::Driver;
use super::batch::{Batch, Pending};
use super::live::Body;
use super::quarantine::{QUARANTINED_STATUS, limit_fault};
use crate::error::EngineError;
use crate::health::{FaultSource, HealthReporter, retry_transient};
use crate::metrics::{AttemptSample, EngineMetrics, Kind, STARTED};
use redrive_core::exception::{ExceptionType, Failure};
use redrive_core::machine::Event;
use redrive_core::time::Timestamp;
use redrive_store::{CommitResult, ExecutionFault, Store, StoreError, TimerRecord, Transition, TransitionError};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Commits submitted to the store at once, at most (one being written while the
/// next is built: the driver's CPU work overlaps the writer's).
pub(super) const MAX_SUBMITTED_BATCHES: usize = 2;

type CommitReply = oneshot::Receiver<Result<CommitResult, StoreError>>;

/// What the committer writes, in order.
pub(super) enum CommitJob {
    Commit {
        transitions: Arc<[Transition]>,
        reply: oneshot::Sender<Result<CommitResult, StoreError>>,
    },
    Quarantine {
        execution_id: String,
        fault: ExecutionFault,
        at: Timestamp,
        reply: oneshot::Sender<Result<Option<u64>, StoreError>>,
    },
    /// Dependency states a batch changed (written after that batch's commit).
    Dependencies {
        records: Vec<redrive_store::DependencyRecord>,
    },
}

/// A batch whose commit is in flight; its effects wait for the acknowledgement.
pub(super) struct Submitted {
    /// Replies not yet received, in submission order.
    replies: VecDeque<CommitReply>,
    /// Replies already received (by `wait_oldest`), in submission order.
    received: Vec<Result<CommitResult, StoreError>>,
    /// (execution id, version expected after the commit, deferred effects).
    pub entries: Vec<(String, u64, Pending)>,
    /// It fired due timers: read the next due time once it is durable.
    timers_fired: bool,
    now: Timestamp,
}

/// Sends commit jobs to the store one after another, preserving their order. A
/// job that fails transiently (disk full, I/O error, locked) is retried with
/// backoff until it goes through, and the engine is degraded meanwhile: nothing
/// after it is acknowledged, so nothing is dispatched, and nothing acknowledged
/// is lost. Only a non-transient error reaches the driver (which stops).
pub(super) async fn committer<S: Store>(
    store: Arc<S>,
    mut jobs: mpsc::Receiver<CommitJob>,
    health: Arc<HealthReporter>,
    metrics: Arc<EngineMetrics>,
) {
    while let Some(job) = jobs.recv().await {
        match job {
            CommitJob::Commit { transitions, reply } => {
                let began = std::time::Instant::now();
                let result = retry_transient(&health, FaultSource::Commit, || store.commit(transitions.clone())).await;
                metrics.commit(transitions.len(), began.elapsed().as_secs_f64());
                let result = result.map(|(results, retried)| if retried { reconcile(&transitions, results) } else { results });
                let _ = reply.send(result);
            }
            CommitJob::Quarantine { execution_id, fault, at, reply } => {
                let status = QUARANTINED_STATUS.as_str();
                let quarantine = || store.quarantine_execution(&execution_id, status, fault.clone(), at);
                let _ = reply.send(retry_transient(&health, FaultSource::Commit, quarantine).await.map(|(version, _)| version));
            }
            CommitJob::Dependencies { records } => {
                let put = || store.put_dependencies(records.clone());
                if let Err(e) = retry_transient(&health, FaultSource::Commit, put).await {
                    tracing::warn!(error = %e, "could not save dependency states");
                }
            }
        }
    }
}

/// After a commit that was retried: an earlier try may have been applied with
/// its acknowledgement lost (an error after COMMIT). This engine is the store's
/// only writer, so a create that now exists, or a conflict exactly one version
/// ahead, is that try's own write.
fn reconcile(transitions: &[Transition], results: CommitResult) -> CommitResult {
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

/// Resolves once every reply of the oldest submitted batch has arrived (never if
/// nothing is submitted). Cancel-safe: received replies are kept in the batch.
pub(super) async fn wait_oldest(submitted: &mut VecDeque<Submitted>) {
    let Some(oldest) = submitted.front_mut() else { return std::future::pending().await };
    while let Some(rx) = oldest.replies.front_mut() {
        let result = rx.await.unwrap_or(Err(StoreError::Unavailable("the committer stopped".into())));
        oldest.replies.pop_front();
        oldest.received.push(result);
    }
}

impl<S: Store> Driver<S> {
    /// Builds the transition of every execution in the batch not built yet and
    /// checks it against the limits before anything is submitted. A pipeline
    /// execution over a limit is failed by the machine (`Event::Abort`, which
    /// drops its outputs) and built again; one still over — or a function
    /// execution over — is given up on (quarantined). Returns whether an
    /// execution finished here (a queue may move again).
    pub(super) fn enforce_limits(&mut self, batch: &mut Batch, now: Timestamp) -> bool {
        let finished_before = batch.finished.len();
        // Nothing below adds an execution to the batch (an abort changes only its
        // own), so the order can be walked while the batch changes.
        let order = std::mem::take(&mut batch.order);
        for id in &order {
            let Err(problem) = self.build(id, batch, now) else { continue };
            let aborted = self.live.get(id).is_some_and(|l| l.pipeline().is_some()) && {
                batch.pending.get_mut(id).expect("just built").unbuild();
                let message = format!("{problem}; the engine failed the execution and dropped its outputs");
                let failure = Failure::new(ExceptionType::LimitExceeded, message);
                self.apply(id, Event::Abort { failure }, now, batch).is_ok()
            };
            let rebuilt = if aborted { self.build(id, batch, now) } else { Err(problem) };
            if let Err(problem) = rebuilt {
                let started_at = self.live.get(id).map_or(now, |l| l.started_at());
                let pending = batch.pending.remove(id);
                self.give_up(id, limit_fault(&problem), started_at, None, pending);
            }
        }
        debug_assert!(batch.order.is_empty(), "enforce_limits adds no execution to the batch");
        batch.order = order;
        batch.finished.len() > finished_before
    }

    /// Builds one execution's transition into its pending change and checks it
    /// with the store's own per-transition check. One already built (or given up
    /// on) is left as it is.
    fn build(&mut self, id: &str, batch: &mut Batch, now: Timestamp) -> Result<(), String> {
        let Some(pending) = batch.pending.get_mut(id).filter(|p| p.built.is_none()) else { return Ok(()) };
        let live = self.live.get_mut(id).expect("batched executions are live");
        let (set_timers, clear_timers) = split_timers(id, &pending.timers);
        let state_json = live.state_json();
        live.state_bytes = state_json.len();
        let t = Transition {
            execution_id: id.to_string(),
            expected_version: live.version,
            target: live.target(),
            status: live.stored_status().to_string(),
            input_json: live.input_json.to_string(),
            state_json,
            at: now,
            ledger: std::mem::take(&mut pending.ledger),
            set_timers,
            clear_timers,
            client_token: if live.version.is_none() { live.client_token.clone() } else { None },
            dlq: std::mem::take(&mut pending.dlq),
        };
        let checked = redrive_store::validate::check_transition(&t);
        pending.built = Some(t);
        checked
    }

    /// The version an execution's store row has once its next submitted commit
    /// lands (commits land in submission order); counts the commit as unacknowledged.
    fn bump_version(&mut self, id: &str) -> u64 {
        let live = self.live.get_mut(id).expect("a built transition's execution is in memory");
        let next = live.version.map_or(1, |v| v + 1);
        live.version = Some(next);
        live.unacked += 1;
        live.client_token = None; // sent with the create
        next
    }

    /// Hands a batch to the committer. Its effects wait in `submitted` for the
    /// ack. Every transition was built and checked by `enforce_limits`.
    /// Returns whether anything was submitted.
    pub(super) async fn submit(&mut self, mut batch: Batch, now: Timestamp) -> Result<bool, EngineError> {
        let order = std::mem::take(&mut batch.order);
        let entries = Vec::with_capacity(order.len());
        let mut submitted = Submitted { replies: VecDeque::new(), received: Vec::new(), entries, timers_fired: batch.timers_fired, now };
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
            self.timers.batch_done(false);
            return Ok(false);
        }
        self.submitted.push_back(submitted);
        self.timers.batch_done(true);
        Ok(true)
    }

    pub(super) async fn drain_submitted(&mut self) -> Result<(), EngineError> {
        while !self.submitted.is_empty() {
            self.acknowledge_oldest().await?;
        }
        Ok(())
    }

    /// Waits for the oldest submitted batch to be durable, then performs its
    /// effects. A transition the store refused over a limit gives its execution
    /// up (the engine's own check should have caught it); commits of executions
    /// given up on are expected to conflict. Any other refusal, or a store error
    /// that is not transient (the committer retries those), stops the engine.
    pub(super) async fn acknowledge_oldest(&mut self) -> Result<(), EngineError> {
        let Some(submitted) = self.submitted.pop_front() else { return Ok(()) };
        let mut results = Vec::with_capacity(submitted.entries.len());
        for r in submitted.received {
            results.extend(r?);
        }
        for rx in submitted.replies {
            results.extend(rx.await.map_err(|_| EngineError::Stopped)??);
        }
        debug_assert_eq!(results.len(), submitted.entries.len());
        self.timers.batch_acknowledged();
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
                    self.forget_unwritten(&id);
                    for reply in pending.replies {
                        reply(Err(EngineError::TokenReused { execution_id: execution_id.clone(), same_request }));
                    }
                    continue;
                }
                Err(TransitionError::OutsideShard { execution_id, shard, .. }) if expected == 1 => {
                    // A start of another shard's pipeline (a redrive of its entry):
                    // nothing was written; the holder of that shard must start it.
                    let target = self.live.get(&id).map(|l| l.target().name().to_string()).unwrap_or_default();
                    self.forget_unwritten(&id);
                    for reply in pending.replies {
                        reply(Err(EngineError::OtherShard { execution_id: execution_id.clone(), target: target.clone(), shard }));
                    }
                    continue;
                }
                Err(TransitionError::Limit(problem)) => {
                    let started_at = self.live.get(&id).map_or(submitted.now, |l| l.started_at());
                    self.give_up(&id, limit_fault(&problem), started_at, None, Some(pending));
                    continue;
                }
                Err(e) => return Err(EngineError::Conflict(e.to_string())),
            };
            if version != expected {
                return Err(EngineError::Conflict(format!("execution {id}: store is at version {version}, engine expected {expected}")));
            }
            if version == 1 {
                self.count_execution(&id, STARTED);
            }
            self.after_commit(&id, pending, submitted.now);
        }
        if !self.given_up.is_empty() {
            self.forget_given_up();
        }
        if submitted.timers_fired {
            self.refresh_next_timer();
        }
        Ok(())
    }

    /// A create that was not written (its token was used before): the execution
    /// never existed, so it leaves memory and its pipeline's unfinished set.
    fn forget_unwritten(&mut self, id: &str) {
        if let Some(run) = self.evict(id).and_then(|l| match l.body {
            super::live::Body::Pipeline(run) => Some(run),
            super::live::Body::Function(_) => None,
        }) && let Some(set) = self.active.get_mut(&run.pipeline.record.name)
        {
            set.remove(&(run.state.started_at, id.to_string()));
        }
    }

    /// Counts an execution under `status` (its start, or its finish).
    fn count_execution(&mut self, id: &str, status: &str) {
        let Some(live) = self.live.get(id) else { return };
        match &live.body {
            Body::Pipeline(run) => self.recorder.execution(Kind::Pipeline, &run.pipeline.record.name, status),
            Body::Function(run) => self.recorder.execution(Kind::Function, &run.state.function, status),
        }
    }

    /// Counts the attempts a committed transition recorded in the ledger, and
    /// the dead-letter entries it wrote.
    fn count_attempts(&mut self, id: &str, pending: &Pending) {
        let Some(live) = self.live.get(id) else { return };
        let (kind, target) = match &live.body {
            Body::Pipeline(run) => (Kind::Pipeline, run.pipeline.record.name.as_str()),
            Body::Function(run) => (Kind::Function, run.state.function.as_str()),
        };
        for (queue, exception_type) in &pending.dead_letters {
            self.recorder.dead_lettered(kind, target, queue, exception_type);
        }
        match &live.body {
            Body::Pipeline(run) => {
                let p = &run.pipeline.pipeline;
                for r in &pending.records {
                    self.recorder.attempt(AttemptSample {
                        kind: Kind::Pipeline,
                        target: &run.pipeline.record.name,
                        action: p.stages[r.id.at.stage].actions[r.id.at.action].name.as_str(),
                        failure: r.failure.as_ref(),
                        duration_ms: r.finished_at.ms_since(r.started_at),
                        decision: r.decision.as_ref(),
                    });
                }
            }
            Body::Function(run) => {
                for s in &pending.steps {
                    self.recorder.attempt(AttemptSample {
                        kind: Kind::Function,
                        target: &run.state.function,
                        action: &s.step,
                        failure: s.failure.as_ref(),
                        duration_ms: s.duration_ms,
                        decision: s.decision.as_ref(),
                    });
                }
            }
        }
    }

    /// Performs a committed transition's effects: what both kinds share, then
    /// the kind's own.
    fn after_commit(&mut self, id: &str, pending: Pending, now: Timestamp) {
        self.count_attempts(id, &pending);
        if let Some(status) = pending.finished {
            self.count_execution(id, status.as_str());
        }
        let Some(live) = self.live.get_mut(id) else { return };
        live.unacked -= 1;
        for due in pending.timers.values().flatten() {
            self.timers.armed(*due);
        }
        for entry_id in &pending.taken {
            self.dlq_taken.remove(entry_id);
        }
        if live.pipeline().is_some() {
            self.pipeline_after_commit(id, pending, now);
        } else {
            self.function_after_commit(id, pending, now);
        }
    }
}
