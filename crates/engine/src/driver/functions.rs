//! Durable function executions in the driver loop: the same group commit,
//! durable timers and waiters as pipelines, with [`redrive_core::function`] as
//! the state machine and an invocation task instead of runners.
//!
//! A function execution is an `executions` row of kind function
//! ([`redrive_store::Target::Function`]). Its timers are keyed `#fn/<step index>`
//! (`#` is not a name character, so no pipeline timer looks like one).

use super::*;
use crate::function::{DurableFunction, FnContext, Inner};
use redrive_core::function::{FnEffect, FnEvent, FnRejection, FunctionState, FunctionStatus, StepState};

const TIMER_PREFIX: &str = "#fn/";
/// How long due timers of functions nobody registered are left alone.
const UNREGISTERED_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

pub fn timer_key(index: usize) -> String {
    format!("{TIMER_PREFIX}{index}")
}

pub fn timer_index(key: &str) -> Option<usize> {
    key.strip_prefix(TIMER_PREFIX)?.parse().ok()
}

/// A registered function and its options.
#[derive(Clone)]
pub struct Registered {
    pub function: Arc<dyn DurableFunction>,
    pub dead_letter_queue: Option<redrive_core::name::Name>,
}

pub struct FnLive {
    pub function: Arc<dyn DurableFunction>,
    pub state: FunctionState,
    pub version: Option<u64>,
    pub unacked: u32,
    pub client_token: Option<ClientToken>,
    pub input_json: Arc<str>,
    /// Like [`Live::state_bytes`]: the state's size as last serialised plus the
    /// results admitted since.
    pub state_bytes: usize,
    /// An invocation task is running.
    pub invoking: bool,
    /// Invoke again as soon as the running invocation ends.
    pub reinvoke: bool,
}

fn status_of(s: FunctionStatus) -> ExecutionStatus {
    match s {
        FunctionStatus::Running => ExecutionStatus::InProgress,
        FunctionStatus::Succeeded => ExecutionStatus::Succeeded,
        FunctionStatus::Failed => ExecutionStatus::Failed,
    }
}

fn outcome(state: &FunctionState) -> ExecutionOutcome {
    ExecutionOutcome {
        execution_id: state.execution_id.clone(),
        status: status_of(state.status),
        started_at: state.started_at,
        finished_at: state.finished_at.unwrap_or(state.started_at),
    }
}

impl FnLive {
    pub fn durable_outcome(&self) -> Option<ExecutionOutcome> {
        (self.state.status != FunctionStatus::Running && self.unacked == 0).then(|| outcome(&self.state))
    }
}

pub fn parse_fn_state(rec: &redrive_store::ExecutionRecord) -> Result<FunctionState, EngineError> {
    serde_json::from_str(&rec.state_json).map_err(|e| EngineError::CorruptState { id: rec.id.clone(), reason: e.to_string() })
}

pub fn stored_outcome(rec: &redrive_store::ExecutionRecord) -> Result<Option<ExecutionOutcome>, EngineError> {
    let state = parse_fn_state(rec)?;
    Ok((state.status != FunctionStatus::Running).then(|| outcome(&state)))
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

impl<S: Store> Driver<S> {
    fn fn_apply(&mut self, id: &str, event: FnEvent, now: Timestamp, batch: &mut Batch) -> Result<(), FnRejection> {
        let live = self.fn_live.get_mut(id).expect("caller ensured the function execution is live");
        let effects = redrive_core::function::apply(&mut live.state, event, now)?;
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
                    let step = &live.state.steps[index];
                    pending.ledger.push(LedgerEntry {
                        seq: 0,
                        execution_id: id.to_string(),
                        stage: live.state.function.clone(),
                        action: step.name.clone(),
                        series: 1,
                        attempt,
                        trigger: if attempt <= 1 { "initial" } else { "policy" }.to_string(),
                        started_at,
                        finished_at: now,
                        outcome: if failure.is_none() { "SUCCEEDED" } else { "FAILED" }.to_string(),
                        exception_type: failure.as_ref().map(|f| f.exception_type.to_string()),
                        message: failure.as_ref().map(|f| f.message.clone()),
                        decision_json: decision.as_ref().map(|d| serde_json::to_string(d).expect("decision serialises")),
                    });
                }
                FnEffect::Invoke => pending.fn_invoke = true,
                FnEffect::Finished(s) => pending.finished = Some(status_of(s)),
                FnEffect::DeadLetter { link, failure, step, first_failure_at } => {
                    let detail = dead_letter_detail(&live.state, step.as_deref());
                    pending.dlq.push(DlqOp::Enter(DlqEntryWrite {
                        id: link.entry_id,
                        queue: link.queue.to_string(),
                        source: Target::function(live.state.function.clone()),
                        execution_id: id.to_string(),
                        stage: live.state.function.clone(),
                        action: step.unwrap_or_else(|| "(outside steps)".into()),
                        exception_type: failure.exception_type.to_string(),
                        message: failure.message,
                        input_json: live.input_json.to_string(),
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
        let live = self.fn_live.get_mut(id).expect("the caller checked the execution is live");
        let function = live.state.function.clone();
        let (value, bytes, what) = match &event {
            FnEvent::StepSucceeded { index, result } => {
                let name = live.state.steps.get(*index).map_or("?", |s| s.name.as_str());
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
        limits::check_output_fits(what, bytes, live.state_bytes).map_err(|e| Failure::limit_exceeded(&e))?;
        live.state_bytes += bytes;
        Ok(event)
    }

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
        let f = reg.function;
        let mut state = FunctionState::new(execution_id.clone(), function, name.clone(), now);
        state.dead_letter_queue = reg.dead_letter_queue;
        self.fn_live.insert(
            execution_id.clone(),
            FnLive {
                function: f,
                state,
                version: None,
                unacked: 0,
                client_token: Some(ClientToken { token: name, fingerprint }),
                state_bytes: 0,
                input_json: input_json.into(),
                invoking: false,
                reinvoke: false,
            },
        );
        let pending = batch.entry(&execution_id);
        pending.fn_invoke = true;
        pending.replies.push(unit_reply(reply));
    }

    pub(super) fn fn_event(
        &mut self,
        id: String,
        event: FnEvent,
        reply: oneshot::Sender<Result<Option<StepState>, EngineError>>,
        now: Timestamp,
        batch: &mut Batch,
    ) {
        if !self.fn_live.contains_key(&id) {
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
                let step = index.and_then(|i| self.fn_live[&id].state.steps.get(i).cloned());
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

    pub(super) fn fn_ended(&mut self, id: String, result: Option<Result<serde_json::Value, Failure>>, now: Timestamp, batch: &mut Batch) {
        let Some(live) = self.fn_live.get_mut(&id) else { return };
        live.invoking = false;
        match result {
            Some(result) if live.state.status == FunctionStatus::Running => {
                let finished = self.fn_admit(&id, FnEvent::Finished { result }).unwrap_or_else(|f| FnEvent::Finished { result: Err(f) });
                if let Err(r) = self.fn_apply(&id, finished, now, batch) {
                    tracing::warn!(execution_id = id, %r, "function result refused");
                }
            }
            Some(_) => {}
            None => {
                if std::mem::take(&mut live.reinvoke) {
                    self.spawn_invocation(&id);
                } else if live.unacked == 0 && !batch.pending.contains_key(&id) {
                    self.maybe_evict_fn(&id, now);
                }
            }
        }
    }

    /// Fires one function timer. Only a store fault is an error.
    pub(super) async fn fn_timer(&mut self, id: &str, index: usize, now: Timestamp, batch: &mut Batch) -> Result<(), StoreError> {
        match self.ensure_fn_live(id, now, batch).await {
            Ok(()) => {}
            Err(EngineError::FunctionNotRegistered(name)) => {
                tracing::debug!(execution_id = id, function = name, "a due timer of an unregistered function waits");
                self.timer_backoff_until = Some(tokio::time::Instant::now() + UNREGISTERED_BACKOFF);
                return Ok(());
            }
            Err(EngineError::Store(e)) => return Err(e),
            Err(_) => return Ok(()), // gone, finished or given up on
        }
        match self.fn_apply(id, FnEvent::TimerFired { index }, now, batch) {
            Ok(()) | Err(FnRejection::TimerEarly { .. }) => {}
            Err(r) => {
                tracing::warn!(execution_id = id, index, %r, "clearing a stale function timer");
                batch.entry(id).timers.insert(timer_key(index), None);
            }
        }
        Ok(())
    }

    /// Loads a function execution; one that is neither finished nor waiting on a
    /// timer is invoked (this is how a crash is recovered: the replay finds the
    /// step that was running).
    pub(super) async fn ensure_fn_live(&mut self, id: &str, now: Timestamp, batch: &mut Batch) -> Result<(), EngineError> {
        self.load_fn(id, false, now, batch).await
    }

    async fn load_fn(&mut self, id: &str, allow_finished: bool, _now: Timestamp, batch: &mut Batch) -> Result<(), EngineError> {
        if self.fn_live.contains_key(id) {
            return Ok(());
        }
        if let Some(g) = self.given_up.get(id) {
            return Err(EngineError::quarantined(id, &g.fault));
        }
        let rec = self.store.get_execution(id).await?.ok_or_else(|| EngineError::ExecutionNotFound(id.to_string()))?;
        if rec.target.kind() != ExecutionKind::Function {
            return Err(EngineError::ExecutionNotFound(id.to_string()));
        }
        if let Some(fault) = &rec.fault {
            return Err(EngineError::quarantined(id, fault));
        }
        let state = match parse_fn_state(&rec) {
            Ok(state) => state,
            Err(e) => {
                let fault = corrupt_state_fault(&e.to_string());
                self.give_up(id, fault.clone(), rec.created_at, None, batch.pending.remove(id));
                return Err(EngineError::quarantined(id, &fault));
            }
        };
        if state.status != FunctionStatus::Running && !allow_finished {
            return Err(EngineError::AlreadyFinished { id: id.to_string(), status: status_of(state.status).as_str().into() });
        }
        let function = self
            .functions
            .get(&state.function)
            .map(|r| r.function.clone())
            .ok_or(EngineError::FunctionNotRegistered(state.function.clone()))?;
        let idle = state.waiting_on().is_some() || state.status != FunctionStatus::Running;
        self.fn_live.insert(
            id.to_string(),
            FnLive {
                function,
                state,
                version: Some(rec.version),
                unacked: 0,
                client_token: None,
                state_bytes: rec.state_json.len(),
                input_json: rec.input_json.into(),
                invoking: false,
                reinvoke: false,
            },
        );
        if !idle {
            self.spawn_invocation(id);
        }
        Ok(())
    }

    /// A redrive of a function's dead-letter entry: the failed execution resumes
    /// (its failed last step gets a fresh series) and replays.
    pub(super) async fn redrive_function(
        &mut self,
        entry: &DlqEntryRecord,
        now: Timestamp,
        batch: &mut Batch,
    ) -> Result<String, EngineError> {
        use redrive_core::dlq::SkipReason;
        let id = entry.execution_id.clone();
        match self.load_fn(&id, true, now, batch).await {
            Ok(()) => {}
            Err(EngineError::ExecutionNotFound(_)) => return Err(EngineError::NotRedriven(SkipReason::ExecutionGone(id))),
            Err(EngineError::FunctionNotRegistered(f)) => {
                return Err(EngineError::NotRedriven(SkipReason::Refused(format!("function {f} is not registered in this process"))));
            }
            Err(e) => return Err(e),
        }
        let live = &self.fn_live[&id];
        let result = match redrive_core::dlq::check_lineage(&id, live.state.dead_letter.as_ref(), &entry.id) {
            Err(refused) => Err(refused),
            Ok(()) => self.fn_apply(&id, FnEvent::Resume, now, batch).map_err(|r| SkipReason::Refused(r.to_string())),
        };
        if let Err(why) = result {
            let idle = self.fn_live.get(&id).is_some_and(|l| !l.invoking && l.unacked == 0 && l.state.status != FunctionStatus::Running);
            if idle && !batch.pending.contains_key(&id) {
                self.fn_live.remove(&id);
            }
            return Err(EngineError::NotRedriven(why));
        }
        Ok(id)
    }

    /// Runs the function (a replay from the top) on a task.
    fn spawn_invocation(&mut self, id: &str) {
        if self.draining.is_some() {
            return; // a restart invokes it
        }
        let Some(live) = self.fn_live.get_mut(id) else { return };
        if live.invoking {
            live.reinvoke = true;
            return;
        }
        live.invoking = true;
        let ctx = FnContext {
            execution_id: id.to_string(),
            inner: Arc::new(std::sync::Mutex::new(Inner { history: live.state.clone(), next_index: 0, suspend: None })),
            calls: self.fn_tx.clone(),
            clock: self.clock.clone(),
        };
        let (function, input) = (live.function.clone(), live.input_json.to_string());
        let tx = self.tx.clone();
        let execution_id = id.to_string();
        tokio::spawn(async move {
            let outcome = crate::function::invoke(function, ctx, input).await;
            let _ = tx.send(Inbound::FnEnded { execution_id, outcome }).await;
        });
    }

    pub(super) fn fn_transition(&mut self, id: &str, pending: &mut Pending, now: Timestamp) -> Transition {
        let live = self.fn_live.get_mut(id).expect("batched function executions are live");
        let (set_timers, clear_timers) = split_timers(id, &pending.timers);
        let state_json = serde_json::to_string(&live.state).expect("state serialises");
        live.state_bytes = state_json.len();
        Transition {
            execution_id: id.to_string(),
            expected_version: live.version,
            target: Target::function(live.state.function.clone()),
            status: live.state.status.as_str().to_string(),
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

    pub(super) fn fn_after_commit(&mut self, id: &str, pending: Pending, now: Timestamp) {
        let Some(live) = self.fn_live.get_mut(id) else { return };
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
        if pending.fn_invoke {
            self.spawn_invocation(id);
        }
        let live = &self.fn_live[id];
        if let Some(o) = live.durable_outcome() {
            for w in self.waiters.remove(id).unwrap_or_default() {
                let _ = w.send(Ok(o.clone()));
            }
            if !live.invoking {
                self.fn_live.remove(id);
                self.shrink_fn_live();
            }
            return;
        }
        if live.unacked == 0 && !live.invoking {
            self.maybe_evict_fn(id, now);
        }
    }

    /// Drops a function execution that only waits on a distant timer.
    fn maybe_evict_fn(&mut self, id: &str, now: Timestamp) {
        let Some(live) = self.fn_live.get(id) else { return };
        let far = live.state.waiting_on().is_some_and(|(_, due)| due.ms_since(now) > self.config.evict_waiting_after_ms as i64);
        if far || live.state.status != FunctionStatus::Running {
            self.fn_live.remove(id);
            self.shrink_fn_live();
        }
    }

    /// A burst of executions that then suspend must not leave a burst-sized table.
    fn shrink_fn_live(&mut self) {
        let (len, cap) = (self.fn_live.len(), self.fn_live.capacity());
        if cap > 1024 && len * 4 < cap {
            self.fn_live.shrink_to(len * 2);
        }
    }
}
