//! Durable function executions in the loop: the same group commit, durable
//! timers and waiters as pipelines (one [`Live`] type, one commit path), with
//! [`redrive_core::function`] as the state machine and an invocation task
//! instead of runners.
//!
//! A function execution is an `executions` row of kind function
//! ([`redrive_store::Target::Function`]). Its timers are keyed `#fn/<step index>`
//! (`#` is not a name character, so no pipeline timer looks like one).

use super::Driver;
use super::Msg;
use super::batch::{Batch, Pending, StepAttempt, unit_reply};
use super::live::{Body, FunctionRun, Live, function_status};
use super::load::Found;
use crate::error::EngineError;
use crate::function::{DurableFunction, FnContext, Inner};
use redrive_core::exception::Failure;
use redrive_core::function::{FnEffect, FnEvent, FnRejection, FunctionState, FunctionStatus, StepState};
use redrive_core::limits;
use redrive_core::time::Timestamp;
use redrive_store::{ClientToken, DlqEntryWrite, DlqOp, LedgerEntry, Store, Target, TimerRecord};
use std::sync::Arc;
use tokio::sync::oneshot;

const TIMER_PREFIX: &str = "#fn/";

pub(super) fn timer_key(index: usize) -> String {
    format!("{TIMER_PREFIX}{index}")
}

pub(super) fn timer_index(key: &str) -> Option<usize> {
    key.strip_prefix(TIMER_PREFIX)?.parse().ok()
}

/// A registered function and its options.
#[derive(Clone)]
pub(super) struct Registered {
    pub function: Arc<dyn DurableFunction>,
    pub dead_letter_queue: Option<redrive_core::name::Name>,
}

/// Steps listed in a function's dead-letter detail, at most (the last ones; the
/// number left out is given), so the detail stays under
/// [`limits::MAX_DLQ_DETAIL_BYTES`] however many steps ran.
pub const MAX_DLQ_DETAIL_STEPS: usize = 100;

/// A function's dead-letter detail: attempts of the failed step, the last
/// [`MAX_DLQ_DETAIL_STEPS`] steps, and how many earlier ones are left out.
fn dead_letter_detail(state: &FunctionState, failed_step: Option<&str>) -> String {
    let attempts = failed_step.and_then(|n| state.steps.iter().rev().find(|s| s.name == n)).map_or(0, |s| s.attempt);
    let omitted = state.steps.len().saturating_sub(MAX_DLQ_DETAIL_STEPS);
    let steps: Vec<serde_json::Value> =
        state.steps[omitted..].iter().map(|s| serde_json::json!({"name": s.name, "status": s.status, "attempt": s.attempt})).collect();
    let detail = serde_json::json!({ "attempts": attempts, "steps": steps, "stepsOmitted": omitted }).to_string();
    // Step names are at most MAX_STEP_NAME_CHARS: within the limit.
    debug_assert!(detail.len() <= limits::MAX_DLQ_DETAIL_BYTES, "dead-letter detail is {} bytes", detail.len());
    detail
}

fn event_index(e: &FnEvent) -> Option<usize> {
    match e {
        FnEvent::StepBegin { index, .. }
        | FnEvent::StepSucceeded { index, .. }
        | FnEvent::StepFailed { index, .. }
        | FnEvent::SleepBegin { index, .. }
        | FnEvent::TimerFired { index } => Some(*index),
        FnEvent::Finished { .. } | FnEvent::Resume => None,
    }
}

/// The attempt-ledger row of one step attempt.
#[allow(clippy::too_many_arguments)]
fn step_ledger_entry(
    id: &str,
    state: &FunctionState,
    index: usize,
    attempt: u32,
    started_at: Timestamp,
    failure: Option<&Failure>,
    decision_json: Option<String>,
    now: Timestamp,
) -> LedgerEntry {
    LedgerEntry {
        seq: 0,
        execution_id: id.to_string(),
        stage: state.function.clone(),
        action: state.steps[index].name.clone(),
        series: 1,
        attempt,
        trigger: if attempt <= 1 { "initial" } else { "policy" }.to_string(),
        started_at,
        finished_at: now,
        outcome: if failure.is_none() { "SUCCEEDED" } else { "FAILED" }.to_string(),
        exception_type: failure.map(|f| f.exception_type.to_string()),
        message: failure.map(|f| f.message.clone()),
        decision_json,
    }
}

/// The function run of a live execution the caller knows is a function, and its input.
fn run_of<'a>(live: &'a mut std::collections::HashMap<String, Live>, id: &str) -> (&'a mut FunctionRun, Arc<str>) {
    let live = live.get_mut(id).expect("caller ensured the function execution is live");
    let input = live.input_json.clone();
    (live.function_mut().expect("a function execution"), input)
}

impl<S: Store> Driver<S> {
    pub(super) fn fn_apply(&mut self, id: &str, event: FnEvent, now: Timestamp, batch: &mut Batch) -> Result<(), FnRejection> {
        let _span = tracing::debug_span!("execution", execution_id = id).entered();
        let (run, input_json) = run_of(&mut self.live, id);
        let effects = redrive_core::function::apply(&mut run.state, event, now)?;
        let pending = batch.entry(id);
        pending.unbuild();
        for effect in effects {
            match effect {
                FnEffect::SetTimer { index, due_at } => {
                    pending.timers.insert(timer_key(index), Some(due_at));
                }
                FnEffect::ClearTimer { index } => {
                    pending.timers.insert(timer_key(index), None);
                }
                FnEffect::Record { index, attempt, started_at, failure, decision } => {
                    let decision_json = decision.as_ref().map(|d| serde_json::to_string(d).expect("decision serialises"));
                    pending.ledger.push(step_ledger_entry(
                        id,
                        &run.state,
                        index,
                        attempt,
                        started_at,
                        failure.as_ref(),
                        decision_json,
                        now,
                    ));
                    let step = run.state.steps[index].name.clone();
                    pending.steps.push(StepAttempt { step, failure, duration_ms: now.ms_since(started_at), decision });
                }
                FnEffect::Invoke => pending.invoke = true,
                FnEffect::Finished(s) => pending.finished = Some(function_status(s)),
                FnEffect::DeadLetter { link, failure, step, first_failure_at } => {
                    pending.dead_letters.push((link.queue.to_string(), failure.exception_type.as_str().to_string()));
                    let detail = dead_letter_detail(&run.state, step.as_deref());
                    pending.dlq.push(DlqOp::Enter(DlqEntryWrite {
                        id: link.entry_id,
                        queue: link.queue.to_string(),
                        source: Target::function(run.state.function.clone()),
                        execution_id: id.to_string(),
                        stage: run.state.function.clone(),
                        action: step.unwrap_or_else(|| "(outside steps)".into()),
                        exception_type: failure.exception_type.to_string(),
                        message: limits::truncate_utf8(failure.message, limits::MAX_DLQ_MESSAGE_BYTES),
                        input_json: input_json.to_string(),
                        detail_json: detail,
                        first_failure_at,
                        last_failure_at: now,
                    }));
                }
                FnEffect::DeadLetterResolved { entry_id } => pending.dlq.push(DlqOp::Resolve { entry_id }),
            }
        }
        Ok(())
    }

    /// Checks what a function hands in where it enters: a step's or the
    /// function's result at most [`limits::MAX_JSON_DEPTH`] levels deep, and any
    /// result or failure message must fit what is left of the execution's state
    /// budget. `Err` is the `Engine.LIMIT_EXCEEDED` failure that ends the function.
    fn fn_admit(&mut self, id: &str, event: FnEvent) -> Result<FnEvent, Failure> {
        let live = self.live.get_mut(id).expect("the caller checked the execution is live");
        let state_bytes = live.state_bytes;
        let run = live.function().expect("a function execution");
        let function = run.state.function.clone();
        let (value, bytes, what) = match &event {
            FnEvent::StepSucceeded { index, result } => {
                let name = run.state.steps.get(*index).map_or("?", |s| s.name.as_str());
                (Some(result), limits::json_bytes(result), format!("the result of step {name:?} of function {function}"))
            }
            FnEvent::StepFailed { failure, .. } => (None, failure.message.len(), format!("a failure message of function {function}")),
            FnEvent::Finished { result: Ok(result) } => {
                (Some(result), limits::json_bytes(result), format!("the result of function {function}"))
            }
            _ => return Ok(event),
        };
        let what = || what.clone();
        if let Some(value) = value {
            limits::check_json_depth(what, value).map_err(|e| Failure::limit_exceeded(&e))?;
        }
        limits::check_output_fits(what, bytes, state_bytes).map_err(|e| Failure::limit_exceeded(&e))?;
        live.state_bytes += bytes;
        Ok(event)
    }

    /// Starts a function execution. Its name is its client token: a repeat is
    /// refused by the store with the first execution's id (`TokenReused`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fn_start(
        &mut self,
        function: String,
        name: String,
        execution_id: String,
        input_json: String,
        fingerprint: String,
        reply: oneshot::Sender<Result<(), EngineError>>,
        now: Timestamp,
        batch: &mut Batch,
    ) {
        let Some(reg) = self.functions.get(&function).cloned() else {
            let _ = reply.send(Err(EngineError::FunctionNotRegistered(function)));
            return;
        };
        let mut state = FunctionState::new(execution_id.clone(), function, name.clone(), now);
        state.dead_letter_queue = reg.dead_letter_queue;
        let run = FunctionRun { function: reg.function, state, invoking: false, reinvoke: false };
        let live = Live {
            version: None,
            unacked: 0,
            client_token: Some(ClientToken { token: name, fingerprint }),
            input_json: input_json.into(),
            state_bytes: 0,
            body: Body::Function(run),
        };
        self.live.insert(execution_id.clone(), live);
        let pending = batch.entry(&execution_id);
        pending.invoke = true;
        pending.replies.push(unit_reply(reply));
    }

    /// A history change from a running invocation, answered once durable.
    pub(super) fn fn_event(
        &mut self,
        id: String,
        event: FnEvent,
        reply: oneshot::Sender<Result<Option<StepState>, EngineError>>,
        now: Timestamp,
        batch: &mut Batch,
    ) {
        if self.live.get(&id).is_none_or(|l| l.function().is_none()) {
            let _ = reply.send(Err(EngineError::ExecutionNotFound(id)));
            return;
        }
        if self.draining.is_some() && matches!(event, FnEvent::StepBegin { .. }) {
            // No attempt starts while draining; a restart replays from here.
            let _ = reply.send(Err(EngineError::Stopped));
            return;
        }
        let index = event_index(&event);
        let event = match self.fn_admit(&id, event) {
            Ok(event) => event,
            Err(failure) => {
                // The function is failed; the invocation's call gets the reason.
                let message = failure.message.clone();
                if let Err(r) = self.fn_apply(&id, FnEvent::Finished { result: Err(failure) }, now, batch) {
                    tracing::warn!(execution_id = id, %r, "could not fail a function over a limit");
                }
                let _ = reply.send(Err(EngineError::LimitExceeded(message)));
                return;
            }
        };
        match self.fn_apply(&id, event, now, batch) {
            Ok(()) => {
                let run = self.live[&id].function().expect("a function execution");
                let step = index.and_then(|i| run.state.steps.get(i).cloned());
                batch.entry(&id).replies.push(Box::new(move |r: Result<(), EngineError>| {
                    let _ = reply.send(r.map(|()| step));
                }));
            }
            Err(r) => {
                tracing::warn!(execution_id = id, %r, "function event refused");
                let _ = reply.send(Err(EngineError::Conflict(r.to_string())));
            }
        }
    }

    /// An invocation ended: the function returned (`Some`) or suspended (`None`).
    pub(super) fn fn_ended(&mut self, id: String, result: Option<Result<serde_json::Value, Failure>>, now: Timestamp, batch: &mut Batch) {
        let Some(run) = self.live.get_mut(&id).and_then(Live::function_mut) else { return };
        run.invoking = false;
        match result {
            Some(result) if run.state.status == FunctionStatus::Running => {
                let finished = self.fn_admit(&id, FnEvent::Finished { result }).unwrap_or_else(|f| FnEvent::Finished { result: Err(f) });
                if let Err(r) = self.fn_apply(&id, finished, now, batch) {
                    tracing::warn!(execution_id = id, %r, "function result refused");
                }
            }
            Some(_) => {}
            None => {
                if std::mem::take(&mut run.reinvoke) {
                    self.spawn_invocation(&id);
                } else if !batch.pending.contains_key(&id) {
                    self.evict_idle_function(&id, now);
                }
            }
        }
    }

    /// Fires one function timer (parking it until its execution is read).
    pub(super) fn function_timer(&mut self, t: TimerRecord, index: usize, now: Timestamp, batch: &mut Batch) {
        match self.find(&t.execution_id, now, batch) {
            Found::Live => {}
            Found::Park(need) => return self.park(need, Msg::Timer(t)),
            Found::Err(EngineError::FunctionNotRegistered(name)) => {
                tracing::debug!(execution_id = t.execution_id, function = name, "a due timer of an unregistered function waits");
                return self.unregistered_timer(t.execution_id);
            }
            Found::Err(_) => return, // gone, finished or given up on
        }
        if self.live[&t.execution_id].function().is_none() {
            return;
        }
        match self.fn_apply(&t.execution_id, FnEvent::TimerFired { index }, now, batch) {
            Ok(()) | Err(FnRejection::TimerEarly { .. }) => {}
            Err(r) => {
                tracing::warn!(execution_id = t.execution_id, index, %r, "clearing a stale function timer");
                batch.entry(&t.execution_id).timers.insert(t.key, None);
            }
        }
    }

    /// Runs the function (a replay from the top) on a task.
    pub(super) fn spawn_invocation(&mut self, id: &str) {
        if self.draining.is_some() {
            return; // a restart invokes it
        }
        let Some(live) = self.live.get_mut(id) else { return };
        let input = live.input_json.to_string();
        let Some(run) = live.function_mut() else { return };
        if run.invoking {
            run.reinvoke = true;
            return;
        }
        run.invoking = true;
        let ctx = FnContext {
            execution_id: id.to_string(),
            inner: Arc::new(std::sync::Mutex::new(Inner { history: run.state.clone(), next_index: 0, suspend: None })),
            calls: self.fn_tx.clone(),
            clock: self.clock.clone(),
        };
        let function = run.function.clone();
        let tx = self.tx.clone();
        let execution_id = id.to_string();
        let span = tracing::info_span!("execution", execution_id = %execution_id, function = %run.state.function);
        let invocation = async move {
            let outcome = crate::function::invoke(function, ctx, input).await;
            let _ = tx.send(crate::handle::Inbound::FnEnded { execution_id, outcome }).await;
        };
        tokio::spawn(tracing::Instrument::instrument(invocation, span));
    }

    /// The effects of a committed function transition: answer, invoke if asked,
    /// wake waiters of a finished execution; then drop it from memory if it is
    /// finished, or waits on a distant timer, and nothing of it is in flight.
    pub(super) fn function_after_commit(&mut self, id: &str, pending: Pending, now: Timestamp) {
        for reply in pending.replies {
            reply(Ok(()));
        }
        if pending.invoke {
            self.spawn_invocation(id);
        }
        if let Some(outcome) = self.live[id].durable_outcome(id) {
            for w in self.waiters.remove(id).unwrap_or_default() {
                let _ = w.send(Ok(outcome.clone()));
            }
        }
        self.evict_idle_function(id, now);
    }

    /// Drops an idle function execution that is finished or only waits on a
    /// distant timer.
    fn evict_idle_function(&mut self, id: &str, now: Timestamp) {
        let Some(live) = self.live.get(id).filter(|l| l.is_idle()) else { return };
        let Some(run) = live.function() else { return };
        let far = run.state.waiting_on().is_some_and(|(_, due)| due.ms_since(now) > self.config.evict_waiting_after_ms as i64);
        if far || run.state.status != FunctionStatus::Running {
            self.evict(id);
            self.shrink_live();
        }
    }

    /// A burst of executions that then leave must not leave a burst-sized table.
    pub(super) fn shrink_live(&mut self) {
        let (len, cap) = (self.live.len(), self.live.capacity());
        if cap > 1024 && len * 4 < cap {
            self.live.shrink_to(len * 2);
        }
    }
}
