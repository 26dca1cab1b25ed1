//! Pipeline executions in the loop: starting them under their pipeline's
//! execution mode (the rules are `redrive_core::schedule`), applying events to
//! the state machine, firing their timers, and dispatching their attempts once
//! the transitions that start them are durable.

use super::batch::{Batch, Finished, Pending};
use super::live::{Body, Live, PipelineRun};
use super::load::Found;
use super::{Driver, Msg};
use crate::error::EngineError;
use crate::handle::{EngineHandle, Inbound, Notification, StageRetry};
use crate::locks::LockKey;
use crate::pipeline::LoadedPipeline;
use crate::runner::{self, AttemptContext, AttemptOutcome};
use redrive_core::definition::{ActionKind, ExecutionMode, Pipeline};
use redrive_core::exception::{ExceptionType, Failure};
use redrive_core::limits;
use redrive_core::machine::{
    self, ActionAt, ActionStatus, AttemptId, AttemptRecord, DeadLetter, DeadLetterLink, Effect, Event, ExecutionState, Hold, Rejection,
    StagePosition, Trigger,
};
use redrive_core::schedule::{self, LockAction, StartDecision};
use redrive_core::time::Timestamp;
use redrive_store::{ClientToken, DlqEntryWrite, DlqOp, LedgerEntry, PipelineRecord, Store, Target, TimerRecord};
use std::sync::Arc;

/// A new execution, as a `Start` (or a redrive into a new execution) asks for it.
pub(super) struct NewExecution {
    pub pipeline: Arc<LoadedPipeline>,
    pub execution_id: String,
    pub input_json: String,
    pub client_token: Option<ClientToken>,
    pub dead_letter: Option<DeadLetterLink>,
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

/// The ledger row of a deferral: the attempt (its number unchanged) did not
/// run; its dependency held it (`DEFERRED`, the reason as the exception type's
/// place is left empty, the hold as the decision).
fn deferral_entry(execution_id: &str, p: &Pipeline, state: &ExecutionState, id: AttemptId, hold: &Hold, now: Timestamp) -> LedgerEntry {
    let stage = &p.stages[id.at.stage];
    let a = state.action(id.at);
    let trigger = if id.attempt <= 1 { a.series_trigger } else { Trigger::Policy };
    let message = format!(
        "held by dependency {} ({}) for {}",
        hold.dependency,
        hold.reason.as_str(),
        redrive_core::time::human_duration_ms(hold.until.ms_since(now).max(0) as u64)
    );
    LedgerEntry {
        seq: 0,
        execution_id: execution_id.to_string(),
        stage: stage.name.to_string(),
        action: stage.actions[id.at.action].name.to_string(),
        series: id.series,
        attempt: id.attempt,
        trigger: trigger.as_str().to_string(),
        started_at: now,
        finished_at: now,
        outcome: redrive_core::dependency::DEFERRED_OUTCOME.to_string(),
        exception_type: None,
        message: Some(message),
        decision_json: Some(serde_json::json!({ "deferred": hold }).to_string()),
    }
}

/// The idempotency key handed to every attempt of one action in one execution.
pub fn idempotency_key(execution_id: &str, stage: &str, action: &str) -> String {
    format!("{execution_id}/{stage}/{action}")
}

/// Per-action failure messages in a dead-letter detail are cut to each of these
/// in turn until the detail fits [`limits::MAX_DLQ_DETAIL_BYTES`] (`0`: left
/// out). Escaping can make a message's JSON six times its length, so a stage of
/// many failed actions may need the shorter cuts.
const DLQ_DETAIL_MESSAGE_CUTS_BYTES: [usize; 3] = [limits::MAX_DLQ_DETAIL_MESSAGE_BYTES, 128, 0];

/// The dead-letter entry an execution that failed for good writes.
fn dead_letter_write(record: &PipelineRecord, p: &Pipeline, state: &ExecutionState, input_json: &str, d: &DeadLetter) -> DlqEntryWrite {
    let stage = &p.stages[d.stage];
    DlqEntryWrite {
        id: d.entry_id.clone(),
        queue: d.queue.to_string(),
        source: Target::pipeline(record.name.clone(), record.version),
        execution_id: state.execution_id.clone(),
        stage: stage.name.to_string(),
        action: stage.actions[d.action].name.to_string(),
        exception_type: d.failure.exception_type.to_string(),
        message: limits::truncate_utf8(d.failure.message.clone(), limits::MAX_DLQ_MESSAGE_BYTES),
        input_json: input_json.to_string(),
        detail_json: dead_letter_detail(stage, state, d),
        first_failure_at: d.first_failure_at,
        last_failure_at: d.last_failure_at,
    }
}

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

impl<S: Store> Driver<S> {
    /// The pipeline's unfinished executions, oldest first — or the read to park on.
    pub(super) fn unfinished(&self, pipeline: &str) -> Result<&std::collections::BTreeSet<(Timestamp, String)>, super::load::Need> {
        self.active.get(pipeline).ok_or_else(|| super::load::Need::Active(pipeline.to_string()))
    }

    /// Creates an execution in memory and applies its first event: `Start`, or
    /// `Enqueue` behind others (QUEUED), or a refusal over the concurrency limit
    /// (PARALLEL); SUPERSEDED overtakes the newest unfinished one. Decided on
    /// this single writer path over the pipeline's unfinished executions, so the
    /// limit is exact. `Err(need)`: park until the pipeline's unfinished
    /// executions are read.
    pub(super) fn begin(
        &mut self,
        new: NewExecution,
        now: Timestamp,
        batch: &mut Batch,
    ) -> Result<Result<(), EngineError>, super::load::Need> {
        let p = &new.pipeline.pipeline;
        let (name, mode) = (new.pipeline.record.name.clone(), p.execution_mode);
        let unfinished = self.unfinished(&name)?;
        let first = match schedule::start_decision(mode, p.max_concurrent_executions, unfinished.len()) {
            StartDecision::Refuse(limit) => {
                return Ok(Err(EngineError::ConcurrencyLimit { pipeline: name, running: limit.unfinished, max: limit.max }));
            }
            StartDecision::Enqueue => Event::Enqueue,
            StartDecision::Start => Event::Start,
        };
        let mut state = match new.dead_letter {
            Some(link) => ExecutionState::redriven(p, new.execution_id.clone(), now, link),
            None => ExecutionState::new(p, new.execution_id.clone(), now),
        };
        state.stage_locked = mode == ExecutionMode::Superseded;
        self.pipelines.entry((name.clone(), new.pipeline.record.version)).or_insert_with(|| Ok(new.pipeline.clone()));
        let run = PipelineRun { pipeline: new.pipeline, state };
        let live = Live {
            version: None,
            unacked: 0,
            client_token: new.client_token,
            input_json: new.input_json.into(),
            state_bytes: 0,
            body: Body::Pipeline(run),
        };
        self.live.insert(new.execution_id.clone(), live);
        self.active.get_mut(&name).expect("read above").insert((now, new.execution_id.clone()));
        self.apply(&new.execution_id, first, now, batch).expect("a fresh execution accepts Start and Enqueue");
        Ok(Ok(()))
    }

    /// SUPERSEDED: applies what a move of the stage locks decided — let an
    /// execution into a stage, or supersede one waiting before a stage.
    pub(super) fn lock_action(&mut self, action: LockAction<LockKey>, now: Timestamp, batch: &mut Batch) {
        let (execution_id, event) = match action {
            LockAction::Enter { who, stage } => (who.1, Event::EnterStage { stage }),
            LockAction::Supersede { who, by } => (who.1, Event::Supersede { by: by.1 }),
        };
        self.stage_lock_event(execution_id, event, now, batch);
    }

    /// A stage-lock event for an execution (parked until it is read).
    pub(super) fn stage_lock_event(&mut self, execution_id: String, event: Event, now: Timestamp, batch: &mut Batch) {
        match self.find(&execution_id, now, batch) {
            Found::Live => {
                if let Err(r) = self.apply(&execution_id, event, now, batch) {
                    tracing::debug!(execution_id, %r, "a stage-lock move no longer applies");
                }
            }
            Found::Park(need) => self.park(need, Msg::StageLock { execution_id, event }),
            Found::Err(_) => {} // gone, or given up on: its release moved the locks
        }
    }

    /// An execution's place in its pipeline's stage locks changed: move the
    /// locks (reading the pipeline's unfinished executions first if they are
    /// not known yet — installing them moves the locks from what is read).
    fn stage_moved(
        &mut self,
        pipeline: &str,
        key: LockKey,
        from: Option<StagePosition>,
        to: Option<StagePosition>,
        now: Timestamp,
        batch: &mut Batch,
    ) {
        let Some(locks) = self.stage_locks.get_mut(pipeline) else {
            if let Err(need) = self.unfinished(pipeline) {
                self.park(need, Msg::HandOver { pipeline: pipeline.to_string() });
            }
            return;
        };
        for action in locks.moved(&key, from, to) {
            self.lock_action(action, now, batch);
        }
    }

    /// An execution left its pipeline's unfinished set (finished, or given up on):
    /// forget it there, and in QUEUED pipelines start the oldest queued
    /// execution — in the same batch when it is in memory, so the hand-over
    /// commits with the finish.
    pub(super) fn release(&mut self, finished: Finished, now: Timestamp, batch: &mut Batch) {
        if let Some(set) = self.active.get_mut(&finished.pipeline) {
            set.remove(&finished.key);
        } else if let Some(released) = self.active_reading.get_mut(&finished.pipeline) {
            released.push(finished.key.clone());
        }
        let moves = self.stage_locks.get_mut(&finished.pipeline).map(|l| l.forget(&finished.key)).unwrap_or_default();
        for action in moves {
            self.lock_action(action, now, batch);
        }
        if finished.queued_mode {
            self.hand_over(finished.pipeline, now, batch);
        }
    }

    /// QUEUED: the oldest unfinished execution starts if it is still queued.
    pub(super) fn hand_over(&mut self, pipeline: String, now: Timestamp, batch: &mut Batch) {
        let head = match self.unfinished(&pipeline) {
            Ok(set) => set.first().map(|(_, id)| id.clone()),
            Err(need) => return self.park(need, Msg::HandOver { pipeline }),
        };
        let Some(head) = head else { return };
        match self.find(&head, now, batch) {
            Found::Live => {}
            Found::Park(need) => return self.park(need, Msg::HandOver { pipeline }),
            Found::Err(_) => return, // given up on: its own release moves the queue
        }
        let run = self.live[&head].pipeline().expect("a pipeline's unfinished execution");
        let mode = run.pipeline.pipeline.execution_mode;
        if schedule::next_in_queue(mode, Some((&head, run.state.queued))).is_some() {
            let _ = self.apply(&head, Event::Start, now, batch);
        }
    }

    /// Applies an event to a pipeline execution's state machine and records its
    /// effects in the batch.
    pub(super) fn apply(&mut self, execution_id: &str, event: Event, now: Timestamp, batch: &mut Batch) -> Result<(), Rejection> {
        let _span = tracing::debug_span!("execution", execution_id).entered();
        let live = self.live.get_mut(execution_id).expect("caller ensured the execution is live");
        let input_json = super::pause::attempt_input(live);
        let run = live.pipeline_mut().expect("a pipeline execution");
        let p = &run.pipeline.pipeline;
        let position = run.state.stage_position();
        let mut effects = machine::apply(p, &mut run.state, event, now)?;
        super::dependencies::gate_starts(&mut self.dependencies, p, &mut run.state, execution_id, now, &mut effects);
        let moved = (run.state.stage_position() != position)
            .then(|| (run.pipeline.record.name.clone(), (run.state.started_at, execution_id.to_string()), run.state.stage_position()));
        let pending = batch.entry(execution_id);
        pending.unbuild();
        let mut finished = false;
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
                Effect::Deferred { id, hold } => pending.ledger.push(deferral_entry(execution_id, p, &run.state, id, &hold, now)),
                Effect::Finished(s) => {
                    pending.finished = Some(s);
                    finished = true;
                }
                Effect::DeadLetter(d) => {
                    pending.dead_letters.push((d.queue.to_string(), d.failure.exception_type.as_str().to_string()));
                    let write = dead_letter_write(&run.pipeline.record, p, &run.state, &input_json, &d);
                    pending.dlq.push(DlqOp::Enter(write));
                }
                Effect::DeadLetterResolved { entry_id } => pending.dlq.push(DlqOp::Resolve { entry_id }),
            }
        }
        if finished {
            self.dependencies.forget_execution(execution_id);
            batch.finished.push(Finished {
                pipeline: run.pipeline.record.name.clone(),
                key: (run.state.started_at, execution_id.to_string()),
                queued_mode: p.execution_mode == ExecutionMode::Queued,
            });
        }
        if let Some((pipeline, key, to)) = moved {
            self.stage_moved(&pipeline, key, position, to, now, batch);
        }
        Ok(())
    }

    /// An attempt's result. Its output is checked where it enters: at most
    /// [`limits::MAX_JSON_DEPTH`] levels, and it must fit what is left of the
    /// execution's state budget; one that does not fails the attempt with
    /// `Engine.LIMIT_EXCEEDED` (through the normal failure path).
    pub(super) fn attempt_result(
        &mut self,
        execution_id: String,
        id: AttemptId,
        outcome: AttemptOutcome,
        now: Timestamp,
        batch: &mut Batch,
    ) {
        if !self.live.contains_key(&execution_id) {
            tracing::warn!(execution_id, ?id, "result for an execution not in memory; ignored");
            return;
        }
        let live = self.live.get_mut(&execution_id).expect("checked above");
        if let Some(run) = live.pipeline() {
            let a = run.state.action(id.at);
            if a.status == ActionStatus::Running && a.series == id.series && a.attempt == id.attempt {
                let failure = match &outcome {
                    AttemptOutcome::Succeeded { .. } => None,
                    AttemptOutcome::Failed(f) => Some(f),
                };
                let started_at = a.attempt_started_at.unwrap_or(now);
                self.dependencies.record(&run.pipeline.pipeline, id, started_at, failure, now);
            }
        }
        let event = match outcome {
            AttemptOutcome::Succeeded { output } => match admit_output(live, id, output) {
                Ok(output) => Event::AttemptSucceeded { id, output },
                Err(failure) => Event::AttemptFailed { id, failure },
            },
            AttemptOutcome::Failed(failure) => Event::AttemptFailed { id, failure },
        };
        if let Err(r) = self.apply(&execution_id, event, now, batch) {
            tracing::warn!(execution_id, %r, "attempt result rejected");
        }
    }

    /// RetryStageExecution (or a stage retry a redrive asks for). A finished
    /// execution of a PARALLEL pipeline that is reopened counts against its
    /// concurrency limit again.
    pub(super) fn retry_stage(
        &mut self,
        execution_id: &str,
        stage: &str,
        how: StageRetry,
        now: Timestamp,
        batch: &mut Batch,
    ) -> Result<Result<(), EngineError>, super::load::Need> {
        let run = self.live[execution_id].pipeline().ok_or(()).map_err(|()| unreachable_need())?;
        let (name, started, reopens) = (run.pipeline.record.name.clone(), run.state.started_at, run.state.status.is_finished());
        let (p, record) = (&run.pipeline.pipeline, &run.pipeline.record);
        let Some(si) = p.stage_index(stage) else {
            return Ok(Err(EngineError::StageNotFound {
                pipeline: record.name.clone(),
                version: record.version,
                stage: stage.to_string(),
            }));
        };
        if run.state.stage_locked {
            let key = (started, execution_id.to_string());
            let locks = self.stage_locks.get(&name).ok_or_else(|| super::load::Need::Active(name.clone()))?;
            if let Some(why) = crate::locks::held_by_another(locks, si, stage, &key) {
                return Ok(Err(EngineError::Rejected(Rejection::NotRetryable(why))));
            }
        }
        if reopens {
            let (mode_, max) = (p.execution_mode, p.max_concurrent_executions);
            let unfinished = self.unfinished(&name)?.len();
            if let Err(limit) = schedule::reopen_decision(mode_, max, unfinished) {
                return Ok(Err(EngineError::ConcurrencyLimit { pipeline: name, running: limit.unfinished, max: limit.max }));
            }
        }
        let event = match how {
            StageRetry::Mode { mode, trigger, input_patch } => {
                let live = &self.live[execution_id];
                match input_patch.map(|patch| super::pause::patched_input(live, patch)).transpose() {
                    Ok(input) => Event::RetryStage { stage: si, mode, trigger, input },
                    Err(e) => return Ok(Err(e)),
                }
            }
            StageRetry::FromAction { action, input_patch } => match self.retry_from_event(execution_id, si, &action, input_patch) {
                Ok(event) => event,
                Err(e) => return Ok(Err(e)),
            },
        };
        let r = self.apply(execution_id, event, now, batch).map_err(EngineError::Rejected);
        if r.is_ok()
            && let Some(set) = self.active.get_mut(&name)
        {
            set.insert((started, execution_id.to_string())); // unfinished again
        }
        Ok(r)
    }

    /// Fires one pipeline timer (parking it until its execution is read).
    pub(super) fn pipeline_timer(&mut self, t: TimerRecord, now: Timestamp, batch: &mut Batch) {
        match self.find(&t.execution_id, now, batch) {
            Found::Live => {}
            Found::Park(need) => return self.park(need, Msg::Timer(t)),
            Found::Err(_) => return, // gone, or given up on (its timers go with the quarantine)
        }
        let Some(run) = self.live[&t.execution_id].pipeline() else { return };
        let result = match action_at(&run.pipeline.pipeline, &t.key) {
            Some(at) => self.apply(&t.execution_id, Event::TimerFired { at }, now, batch),
            None => Err(Rejection::Invalid(format!("timer key {} names no action", t.key))),
        };
        match result {
            Ok(()) | Err(Rejection::TimerEarly { .. }) => {}
            Err(r) => {
                tracing::warn!(execution_id = t.execution_id, key = t.key, %r, "clearing a stale timer");
                batch.entry(&t.execution_id).timers.insert(t.key, None);
            }
        }
    }

    /// The effects of a committed pipeline transition: answer, notify, dispatch
    /// the attempts it started, wake waiters of a finished execution; then drop
    /// it from memory if finished, or evict it if it only waits on distant timers.
    pub(super) fn pipeline_after_commit(&mut self, id: &str, pending: Pending, now: Timestamp) {
        if self.notify.receiver_count() > 0 {
            self.notify_attempts(id, &pending, now);
        }
        for reply in pending.replies {
            reply(Ok(()));
        }
        for a in pending.starts {
            self.dispatch(id, a, now);
        }
        if let Some(status) = pending.finished {
            // Attempts abandoned by a stop or an abort: kill them.
            self.abort_tasks(id);
            let _ = self.notify.send(Notification::ExecutionFinished { execution_id: id.to_string(), status, at: now });
        }
        let live = &self.live[id];
        if let Some(outcome) = live.durable_outcome(id) {
            for w in self.waiters.remove(id).unwrap_or_default() {
                let _ = w.send(Ok(outcome.clone()));
            }
            self.evict(id);
            return;
        }
        let run = live.pipeline().expect("a pipeline execution");
        let all_waiting_far = live.unacked == 0
            && run.state.stages.iter().flat_map(|s| &s.actions).filter(|a| a.is_active()).all(|a| {
                a.status == ActionStatus::WaitingRetry
                    && a.next_attempt_at.is_some_and(|d| d.ms_since(now) > self.config.evict_waiting_after_ms as i64)
            });
        if all_waiting_far {
            self.evict(id);
        }
    }

    fn notify_attempts(&self, id: &str, pending: &Pending, now: Timestamp) {
        let Some(run) = self.live[id].pipeline() else { return };
        let p = &run.pipeline.pipeline;
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

    /// Runs one attempt: instant no-ops inline, everything else on a task that
    /// waits for a fair slot. A no-op that sleeps sleeps on the engine's clock.
    fn dispatch(&mut self, execution_id: &str, id: AttemptId, now: Timestamp) {
        if self.draining.is_some() {
            // Never dispatched: release it durably so a restart runs it as the same attempt.
            self.local.push_back(Msg::In(Inbound::Release { execution_id: execution_id.to_string(), id, from_task: false }));
            return;
        }
        let live = &self.live[execution_id];
        let run = live.pipeline().expect("a pipeline execution");
        let pipeline = run.pipeline.clone();
        let action = &pipeline.pipeline.stages[id.at.stage].actions[id.at.action];
        let input_json = super::pause::attempt_input(live);
        let key_slot = super::keys::slot_of(&pipeline, id, &input_json);
        if let ActionKind::Noop(spec) = &action.kind
            && spec.sleep_ms == 0
            && key_slot.is_none()
        {
            let outcome = runner::noop_outcome(spec, id.attempt);
            let result = Inbound::Result { execution_id: execution_id.to_string(), id, outcome, from_task: false };
            self.local.push_back(Msg::In(result));
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
            input_json,
            clock: runner::AttemptClock(self.clock.clone()),
            secrets: self.config.secrets.clone(),
        };
        let (tx, slots, http, store) = (self.tx.clone(), self.slots.clone(), self.http.clone(), self.store.clone());
        let (keys, clock) = (self.keys.clone(), self.clock.clone());
        let waiter = crate::keys::Waiter { execution_id: execution_id.to_string(), id, since: now };
        let engine = EngineHandle {
            tx: self.tx.clone(),
            notify: self.notify.clone(),
            health: self.health.subscribe(),
            metrics: self.recorder.shared().clone(),
        };
        let in_flight_count = self.tasks_in_flight.clone();
        in_flight_count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Decremented when the driver receives the result (or the send fails).
        let execution = execution_id.to_string();
        let span = attempt_span(&execution, &pipeline.record.name, &ctx);
        let task = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let _key = match super::keys::begin(&keys, key_slot, waiter, &*clock, &tx, &execution, id).await {
                    Ok(permit) => permit,
                    Err(super::keys::NotBegun) => {
                        let _ = tx.send(Inbound::Release { execution_id: execution, id, from_task: true }).await;
                        return;
                    }
                };
                let _slot = slots.acquire(&pipeline.record.name).await;
                let action = &pipeline.pipeline.stages[id.at.stage].actions[id.at.action];
                let outcome = match &action.kind {
                    ActionKind::Command(spec) => runner::run_command(spec, &ctx).await,
                    ActionKind::Http(spec) => runner::run_http(&http, spec, &ctx).await,
                    ActionKind::Noop(spec) => runner::run_noop(spec, &ctx).await,
                    ActionKind::Function(f) => run_function_action(&engine, &*store, f.function_name.as_str(), &ctx).await,
                };
                if tx.send(Inbound::Result { execution_id: execution, id, outcome, from_task: true }).await.is_err() {
                    in_flight_count.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                }
            },
            span,
        ));
        self.running_tasks.entry(execution_id.to_string()).or_default().insert(id, task.abort_handle());
    }
}

/// The spans an attempt runs in: its execution, its stage, then the attempt
/// itself (ids as fields), so whatever a runner logs names all three.
fn attempt_span(execution_id: &str, pipeline: &str, ctx: &AttemptContext) -> tracing::Span {
    let execution = tracing::info_span!("execution", execution_id, pipeline);
    let stage = tracing::info_span!(parent: &execution, "stage", stage = %ctx.stage);
    tracing::info_span!(parent: &stage, "attempt", action = %ctx.action, series = ctx.series, attempt = ctx.attempt)
}

/// Checks an attempt's output where it enters (see `attempt_result`).
fn admit_output(live: &mut Live, id: AttemptId, output: Option<serde_json::Value>) -> Result<Option<serde_json::Value>, Failure> {
    let Some(value) = output else { return Ok(None) };
    let Some(run) = live.pipeline() else { return Ok(Some(value)) };
    let stage = &run.pipeline.pipeline.stages[id.at.stage];
    let what = || format!("the output of action {}/{}", stage.name, stage.actions[id.at.action].name);
    limits::check_json_depth(what, &value).map_err(|e| Failure::limit_exceeded(&e))?;
    let bytes = limits::json_bytes(&value);
    limits::check_output_fits(what, bytes, live.state_bytes).map_err(|e| Failure::limit_exceeded(&e))?;
    live.state_bytes += bytes;
    Ok(Some(value))
}

fn unreachable_need() -> super::load::Need {
    unreachable!("retry_stage is only called on pipeline executions")
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
        Ok(Some(rec)) => serde_json::from_str::<redrive_core::function::FunctionState>(&rec.state_json).map_err(|e| e.to_string()),
        Ok(None) => Err(format!("execution {id} not found")),
        Err(e) => Err(e.to_string()),
    };
    match state {
        Ok(s) if s.status == redrive_core::function::FunctionStatus::Succeeded => AttemptOutcome::Succeeded { output: s.result },
        Ok(s) => AttemptOutcome::Failed(s.error.unwrap_or_else(|| Failure::new(ExceptionType::ActionFailed, "the function failed"))),
        Err(e) => fail(ExceptionType::ServiceFault, format!("function execution {id}: {e}")),
    }
}
