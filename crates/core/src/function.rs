//! The durable-function state machine: `(state, event, now) -> effects`, pure.
//!
//! A durable function's *history* is the ordered list of its steps (and sleeps).
//! The SDK re-invokes the function from the top after every suspension or crash;
//! each `ctx.step` call at position `i` is matched against `steps[i]` (same name,
//! same kind, or the execution fails as non-deterministic). A completed step
//! returns its recorded result without running; a step waiting for a retry or a
//! sleep suspends the invocation until its durable timer fires.
//!
//! A function that *returns* before reaching every step its history recorded is
//! non-deterministic as well ([`returned`]): the history says it went on.
//!
//! Each step has a stable identity, its [`StepKey`] (`"{execution_id}/{position}"`):
//! the same on every attempt, retry and replay of that step, different for two
//! steps of one name at different positions. It is the idempotency key to hand to
//! external services.
//!
//! Retry decisions use the same [`decide`] as pipeline actions; the SDK passes the
//! step's policies (and whether its predicate allows a retry) with the failure,
//! because policies with predicates are code, not data.

use crate::exception::{ExceptionType, Failure};
use crate::jitter::JitterDraw;
use crate::machine::DeadLetterLink;
use crate::name::Name;
use crate::policy::{Decision, GiveUpReason, RetryHistory, RetryPolicy, decide};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

pub use crate::limits::{MAX_STEP_NAME_CHARS, MAX_STEPS};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FunctionStatus {
    Running,
    Succeeded,
    Failed,
}

impl FunctionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionStatus::Running => "InProgress",
            FunctionStatus::Succeeded => "Succeeded",
            FunctionStatus::Failed => "Failed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StepKind {
    Step,
    Sleep,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepStatus {
    /// An attempt is running (or was, when the process died).
    Running,
    /// Failed; the next attempt is due at `due_at` (a durable timer).
    WaitingRetry,
    /// A durable sleep until `due_at`.
    Sleeping,
    Succeeded,
    /// Retries exhausted (or not allowed): the error went back to the function.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepState {
    pub name: String,
    pub kind: StepKind,
    pub status: StepStatus,
    /// Attempts started (0 for a sleep).
    pub attempt: u32,
    #[serde(default)]
    pub retries_by_policy: Vec<u32>,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<Timestamp>,
    /// The checkpointed result (JSON) of a succeeded step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionState {
    pub execution_id: String,
    pub function: String,
    /// The caller's name for the execution (its idempotency key).
    pub name: String,
    pub status: FunctionStatus,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    pub steps: Vec<StepState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
    /// Where a failure for good leaves its dead-letter entry (set at start from
    /// the function's registration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<Name>,
    /// The dead-letter entry of this execution, once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterLink>,
}

impl FunctionState {
    pub fn new(execution_id: impl Into<String>, function: impl Into<String>, name: impl Into<String>, now: Timestamp) -> FunctionState {
        FunctionState {
            execution_id: execution_id.into(),
            function: function.into(),
            name: name.into(),
            status: FunctionStatus::Running,
            started_at: now,
            finished_at: None,
            steps: Vec::new(),
            result: None,
            error: None,
            dead_letter_queue: None,
            dead_letter: None,
        }
    }

    /// The step the execution waits on (a retry or a sleep), with its due time.
    pub fn waiting_on(&self) -> Option<(usize, Timestamp)> {
        let (i, s) = self.steps.iter().enumerate().next_back()?;
        match s.status {
            StepStatus::WaitingRetry | StepStatus::Sleeping => s.due_at.map(|d| (i, d)),
            _ => None,
        }
    }
}

/// The exception type of an execution that failed as non-deterministic.
pub const NON_DETERMINISM: &str = "Function.NON_DETERMINISTIC";
/// The exception type of an error returned by the function outside any step.
pub const FUNCTION_ERROR: &str = "Function.ERROR";

#[derive(Clone, Debug)]
pub enum FnEvent {
    /// The invocation reached `ctx.step(name)` at position `index`, and no
    /// recorded outcome answers it: run an attempt now.
    StepBegin {
        index: usize,
        name: String,
        policy_slots: usize,
    },
    StepSucceeded {
        index: usize,
        result: serde_json::Value,
    },
    /// The attempt failed. `retryable` is false when the step's predicate refused
    /// a retry (or the step is at-most-once and the attempt was interrupted). A
    /// retry due at once starts right away: the step stays `Running` with the next
    /// attempt number.
    StepFailed {
        index: usize,
        failure: Failure,
        policies: Vec<RetryPolicy>,
        retryable: bool,
    },
    /// The invocation reached `ctx.sleep(name)` at `index` (new): wake at `due_at`.
    SleepBegin {
        index: usize,
        name: String,
        due_at: Timestamp,
    },
    /// The timer of the step at `index` fired.
    TimerFired {
        index: usize,
    },
    /// The function returned.
    Finished {
        result: Result<serde_json::Value, Failure>,
    },
    /// A redrive of its dead-letter entry: a failed execution runs again. Its last
    /// step, if it failed, gets a fresh series of attempts (due now); completed
    /// steps keep their results. The function is invoked and replays.
    Resume,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FnEffect {
    SetTimer {
        index: usize,
        due_at: Timestamp,
    },
    ClearTimer {
        index: usize,
    },
    /// A finished attempt, for the ledger.
    Record {
        index: usize,
        attempt: u32,
        started_at: Timestamp,
        failure: Option<Failure>,
        decision: Option<Decision>,
    },
    /// Invoke (replay) the function: what it waited for is ready.
    Invoke,
    Finished(FunctionStatus),
    /// Failed for good: write (or return) the dead-letter entry, in this commit.
    DeadLetter {
        link: DeadLetterLink,
        failure: Failure,
        step: Option<String>,
        first_failure_at: Timestamp,
    },
    /// Succeeded: the entry of this execution, if any, is resolved.
    DeadLetterResolved {
        entry_id: String,
    },
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum FnRejection {
    #[error("the execution has already finished ({0:?})")]
    Finished(FunctionStatus),
    #[error("{0}")]
    Invalid(String),
    #[error("timer for step {index} fired before it was due ({due})")]
    TimerEarly { index: usize, due: Timestamp },
}

/// The identity of the step (or sleep) at one position of one execution:
/// `"{execution_id}/{position}"`, the position counted from 0 in the execution's
/// history (`steps[position]`; sleeps take positions too). E.g.
/// `"0190a4c2-7d1e-7c3a-9f00-3b2f1e0c9a11/2"` for the third call.
///
/// It is the same on every attempt, retry and replay of the step (also after a
/// crash or a redrive) and different for two steps of one name at different
/// positions: the idempotency key to hand to services that deduplicate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StepKey(String);

impl StepKey {
    pub fn new(execution_id: &str, position: usize) -> StepKey {
        StepKey(format!("{execution_id}/{position}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for StepKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for StepKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<StepKey> for String {
    fn from(k: StepKey) -> String {
        k.0
    }
}

/// Bytes of a function's own error quoted in a non-determinism message at most
/// (the history's side of the message always fits).
pub const MAX_QUOTED_ERROR_BYTES: usize = 300;

/// What a replaying function did at a position where the history disagrees.
#[derive(Clone, Debug, PartialEq)]
pub enum Reached {
    /// It called a step or sleep (of another name or kind than recorded).
    Call { kind: StepKind, name: String },
    /// It returned: with a result, or with this error.
    Return { error: Option<Failure> },
}

/// A replay that departs from the recorded history at `position` (counted from
/// 0): the history has `recorded_kind` `recorded_name` there, the function did
/// `reached` instead. The execution fails with [`NON_DETERMINISM`], not retried.
#[derive(Clone, Debug, PartialEq)]
pub struct NonDeterminism {
    pub position: usize,
    pub recorded_kind: StepKind,
    pub recorded_name: String,
    /// Steps the history holds in all.
    pub recorded_steps: usize,
    pub reached: Reached,
}

impl NonDeterminism {
    /// The failure the execution ends with.
    pub fn failure(&self) -> Failure {
        Failure::new(ExceptionType::Custom(NON_DETERMINISM.into()), self.to_string())
    }
}

fn kind_word(k: StepKind) -> &'static str {
    match k {
        StepKind::Step => "step",
        StepKind::Sleep => "sleep",
    }
}

impl std::fmt::Display for NonDeterminism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (call, recorded, name) = (self.position + 1, kind_word(self.recorded_kind), &self.recorded_name);
        match &self.reached {
            Reached::Call { kind, name: called } => {
                write!(
                    f,
                    "non-deterministic replay: call {call} is {} {called:?}, but the recorded history has {recorded} {name:?} there",
                    kind_word(*kind)
                )?;
            }
            Reached::Return { error } => {
                let outcome = match error {
                    None => "returned a result".to_string(),
                    Some(e) => {
                        let message = crate::limits::truncate_utf8(e.message.clone(), MAX_QUOTED_ERROR_BYTES);
                        format!("returned an error ({}: {message})", e.exception_type)
                    }
                };
                write!(
                    f,
                    "non-deterministic replay: the function {outcome} at call {call}, but the recorded history has {recorded} {name:?} \
                     there ({} calls recorded)",
                    self.recorded_steps
                )?;
            }
        }
        f.write_str("; a function must call the same steps in the same order on every run")
    }
}

/// What the history says about `ctx.step(name)` / `ctx.sleep(name)` at `index`
/// during a replay.
#[derive(Clone, Debug, PartialEq)]
pub enum Replay {
    /// Nothing recorded there: a new step.
    New,
    /// Recorded as succeeded: return this result without running.
    Succeeded(serde_json::Value),
    /// Recorded as failed for good: return this error without running.
    Failed(Failure),
    /// A retry (or a sleep) is due at this time; suspend until then if it is later.
    Waiting(Timestamp),
    /// The retry is due now: run the next attempt.
    Ready,
    /// An attempt was running when the process died.
    Interrupted,
    /// The recorded step at this position has another name or kind.
    Mismatch(NonDeterminism),
}

/// Matches a step call during replay against the history.
pub fn replay(state: &FunctionState, index: usize, name: &str, kind: StepKind, now: Timestamp) -> Replay {
    let Some(s) = state.steps.get(index) else { return Replay::New };
    if s.name != name || s.kind != kind {
        return Replay::Mismatch(departure(state, index, Reached::Call { kind, name: name.to_string() }));
    }
    match s.status {
        StepStatus::Succeeded => Replay::Succeeded(s.result.clone().unwrap_or(serde_json::Value::Null)),
        StepStatus::Failed => {
            Replay::Failed(s.last_failure.clone().unwrap_or_else(|| Failure::new(ExceptionType::ActionFailed, "the step failed")))
        }
        StepStatus::Running => Replay::Interrupted,
        StepStatus::WaitingRetry | StepStatus::Sleeping => match s.due_at {
            Some(d) if d > now => Replay::Waiting(d),
            _ if s.status == StepStatus::Sleeping => Replay::Succeeded(serde_json::Value::Null),
            _ => Replay::Ready,
        },
    }
}

/// Checks a function's return against the history: it made `calls` step and sleep
/// calls, and returned `result`. Returning before every recorded step was reached
/// is non-deterministic (the history says this run went on); the execution then
/// fails with [`NonDeterminism::failure`] instead of finishing with `result`.
pub fn returned(state: &FunctionState, calls: usize, result: &Result<serde_json::Value, Failure>) -> Result<(), NonDeterminism> {
    if calls >= state.steps.len() {
        return Ok(());
    }
    Err(departure(state, calls, Reached::Return { error: result.as_ref().err().cloned() }))
}

/// The non-determinism at `position`, which the history holds.
fn departure(state: &FunctionState, position: usize, reached: Reached) -> NonDeterminism {
    let s = &state.steps[position];
    NonDeterminism { position, recorded_kind: s.kind, recorded_name: s.name.clone(), recorded_steps: state.steps.len(), reached }
}

/// Applies one event. On `Err`, `state` is unchanged.
pub fn apply(state: &mut FunctionState, event: FnEvent, now: Timestamp) -> Result<Vec<FnEffect>, FnRejection> {
    if matches!(event, FnEvent::Resume) {
        return resume(state, now);
    }
    if state.status != FunctionStatus::Running {
        return Err(FnRejection::Finished(state.status));
    }
    let mut fx = Vec::new();
    match event {
        FnEvent::StepBegin { index, name, policy_slots } => {
            if index == state.steps.len() {
                if index >= MAX_STEPS {
                    return Err(FnRejection::Invalid(format!("an execution may record at most {MAX_STEPS} steps")));
                }
                if name.is_empty() || name.chars().count() > MAX_STEP_NAME_CHARS {
                    return Err(FnRejection::Invalid(format!("a step name must be 1 to {MAX_STEP_NAME_CHARS} characters")));
                }
                state.steps.push(StepState {
                    name,
                    kind: StepKind::Step,
                    status: StepStatus::Running,
                    attempt: 1,
                    retries_by_policy: vec![0; policy_slots + 1],
                    started_at: now,
                    attempt_started_at: Some(now),
                    due_at: None,
                    result: None,
                    last_failure: None,
                });
            } else {
                let s = step_mut(state, index)?;
                if s.name != name || s.status != StepStatus::WaitingRetry || s.due_at.is_some_and(|d| d > now) {
                    return Err(FnRejection::Invalid(format!("step {index} ({name}) is not ready for another attempt")));
                }
                s.status = StepStatus::Running;
                s.attempt += 1;
                s.attempt_started_at = Some(now);
                s.due_at = None;
            }
        }
        FnEvent::StepSucceeded { index, result } => {
            let s = running(state, index)?;
            s.status = StepStatus::Succeeded;
            s.result = Some(result);
            s.last_failure = None;
            let started_at = s.attempt_started_at.unwrap_or(now);
            fx.push(FnEffect::Record { index, attempt: s.attempt, started_at, failure: None, decision: None });
        }
        FnEvent::StepFailed { index, failure, policies, retryable } => {
            let execution_id = state.execution_id.clone();
            let function = state.function.clone();
            let s = running(state, index)?;
            if s.retries_by_policy.len() != policies.len() + 1 {
                s.retries_by_policy.resize(policies.len() + 1, 0);
            }
            let decision = if retryable {
                let history =
                    RetryHistory { first_attempt_started_at: s.started_at, retries_by_policy: &s.retries_by_policy, attempts: s.attempt };
                let draw = JitterDraw::for_attempt(&execution_id, &function, &s.name, s.attempt);
                decide(&policies, history, &failure, now, draw)
            } else {
                Decision::GiveUp { policy: None, reason: GiveUpReason::RetriesDisabled }
            };
            let started_at = s.attempt_started_at.unwrap_or(now);
            s.last_failure = Some(failure.clone());
            fx.push(FnEffect::Record { index, attempt: s.attempt, started_at, failure: Some(failure), decision: Some(decision.clone()) });
            match decision {
                Decision::Retry(r) => {
                    let slot = r.policy.slot(policies.len());
                    s.retries_by_policy[slot] += 1;
                    if r.due_at > now {
                        s.status = StepStatus::WaitingRetry;
                        s.due_at = Some(r.due_at);
                        fx.push(FnEffect::SetTimer { index, due_at: r.due_at });
                    } else {
                        // Due now: the next attempt starts in this same transition.
                        s.attempt += 1;
                        s.attempt_started_at = Some(now);
                        s.due_at = None;
                    }
                }
                Decision::GiveUp { .. } => s.status = StepStatus::Failed,
            }
        }
        FnEvent::SleepBegin { index, name, due_at } => {
            if index != state.steps.len() {
                return Err(FnRejection::Invalid(format!("sleep {name} at {index} is not the next step")));
            }
            if index >= MAX_STEPS {
                return Err(FnRejection::Invalid(format!("an execution may record at most {MAX_STEPS} steps")));
            }
            let done = due_at <= now;
            state.steps.push(StepState {
                name,
                kind: StepKind::Sleep,
                status: if done { StepStatus::Succeeded } else { StepStatus::Sleeping },
                attempt: 0,
                retries_by_policy: Vec::new(),
                started_at: now,
                attempt_started_at: None,
                due_at: Some(due_at),
                result: done.then_some(serde_json::Value::Null),
                last_failure: None,
            });
            if !done {
                fx.push(FnEffect::SetTimer { index, due_at });
            }
        }
        FnEvent::TimerFired { index } => {
            let s = step_mut(state, index)?;
            let due = s.due_at.unwrap_or(Timestamp::EPOCH);
            if !matches!(s.status, StepStatus::WaitingRetry | StepStatus::Sleeping) {
                return Err(FnRejection::Invalid(format!("step {index} is not waiting")));
            }
            if now < due {
                return Err(FnRejection::TimerEarly { index, due });
            }
            if s.status == StepStatus::Sleeping {
                s.status = StepStatus::Succeeded;
                s.result = Some(serde_json::Value::Null);
            }
            fx.push(FnEffect::ClearTimer { index });
            fx.push(FnEffect::Invoke);
        }
        FnEvent::Finished { result } => {
            state.finished_at = Some(now);
            match result {
                Ok(v) => {
                    state.status = FunctionStatus::Succeeded;
                    state.result = Some(v);
                }
                Err(f) => {
                    state.status = FunctionStatus::Failed;
                    state.error = Some(f);
                }
            }
            for (i, s) in state.steps.iter_mut().enumerate() {
                if matches!(s.status, StepStatus::WaitingRetry | StepStatus::Sleeping) && s.due_at.is_some_and(|d| d > now) {
                    fx.push(FnEffect::ClearTimer { index: i });
                }
            }
            fx.push(FnEffect::Finished(state.status));
            dead_letter(state, now, &mut fx);
        }
        FnEvent::Resume => unreachable!("handled above"),
    }
    Ok(fx)
}

/// After finishing: a failure for good enters the dead-letter queue (a new entry
/// keyed by this execution, or its existing one); a success resolves the entry.
fn dead_letter(state: &mut FunctionState, now: Timestamp, fx: &mut Vec<FnEffect>) {
    match state.status {
        FunctionStatus::Failed => {
            if state.dead_letter.is_none() {
                let Some(queue) = state.dead_letter_queue.clone() else { return };
                state.dead_letter = Some(DeadLetterLink { entry_id: state.execution_id.clone(), queue });
            }
            let link = state.dead_letter.clone().expect("set above");
            let failed = state.steps.iter().rev().find(|s| s.status == StepStatus::Failed);
            let failure =
                state.error.clone().unwrap_or_else(|| Failure::new(ExceptionType::Custom(FUNCTION_ERROR.into()), "the function failed"));
            fx.push(FnEffect::DeadLetter {
                link,
                failure,
                step: failed.map(|s| s.name.clone()),
                first_failure_at: failed.map_or(now, |s| s.started_at),
            });
        }
        FunctionStatus::Succeeded => {
            if let Some(link) = &state.dead_letter {
                fx.push(FnEffect::DeadLetterResolved { entry_id: link.entry_id.clone() });
            }
        }
        FunctionStatus::Running => {}
    }
}

fn resume(state: &mut FunctionState, now: Timestamp) -> Result<Vec<FnEffect>, FnRejection> {
    if state.status != FunctionStatus::Failed {
        return Err(FnRejection::Invalid(format!("only a failed execution can be resumed; this one is {:?}", state.status)));
    }
    state.status = FunctionStatus::Running;
    state.finished_at = None;
    state.error = None;
    if let Some(last) = state.steps.last_mut().filter(|s| s.status == StepStatus::Failed && s.kind == StepKind::Step) {
        last.status = StepStatus::WaitingRetry;
        last.due_at = Some(now);
        last.started_at = now; // a fresh series: expireAfterMin counts from here
        last.retries_by_policy.iter_mut().for_each(|r| *r = 0);
        last.last_failure = None;
    }
    Ok(vec![FnEffect::Invoke])
}

fn step_mut(state: &mut FunctionState, index: usize) -> Result<&mut StepState, FnRejection> {
    let n = state.steps.len();
    state.steps.get_mut(index).ok_or_else(|| FnRejection::Invalid(format!("no step {index} (the history has {n})")))
}

fn running(state: &mut FunctionState, index: usize) -> Result<&mut StepState, FnRejection> {
    let s = step_mut(state, index)?;
    if s.status != StepStatus::Running {
        return Err(FnRejection::Invalid(format!("step {index} ({}) has no attempt running", s.name)));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::RetryPolicySpec;

    fn t(ms: i64) -> Timestamp {
        Timestamp::from_unix_ms(ms)
    }

    fn throttled() -> Failure {
        Failure::new(ExceptionType::Throttling, "slow down")
    }

    fn twice() -> Vec<RetryPolicy> {
        vec![
            RetryPolicy::new(&RetryPolicySpec {
                exception_types: vec!["Step.THROTTLING".into()],
                interval_seconds: Some(1.0),
                backoff_rate: Some(2.0),
                max_attempts: Some(2.0),
                ..Default::default()
            })
            .unwrap(),
        ]
    }

    #[test]
    fn a_failed_step_waits_on_a_timer_then_runs_again_and_replays_its_result() {
        let mut s = FunctionState::new("e", "f", "n", t(0));
        assert_eq!(replay(&s, 0, "charge", StepKind::Step, t(0)), Replay::New);
        apply(&mut s, FnEvent::StepBegin { index: 0, name: "charge".into(), policy_slots: 1 }, t(0)).unwrap();
        let fx = apply(&mut s, FnEvent::StepFailed { index: 0, failure: throttled(), policies: twice(), retryable: true }, t(10)).unwrap();
        let due = match fx.last() {
            Some(FnEffect::SetTimer { index: 0, due_at }) => *due_at,
            other => panic!("{other:?}"),
        };
        assert!(due > t(10));
        assert_eq!(s.waiting_on(), Some((0, due)));
        assert_eq!(replay(&s, 0, "charge", StepKind::Step, t(10)), Replay::Waiting(due));
        assert!(matches!(apply(&mut s, FnEvent::TimerFired { index: 0 }, t(11)), Err(FnRejection::TimerEarly { .. })));
        let fx = apply(&mut s, FnEvent::TimerFired { index: 0 }, due).unwrap();
        assert!(fx.contains(&FnEffect::Invoke));
        assert_eq!(replay(&s, 0, "charge", StepKind::Step, due), Replay::Ready);
        apply(&mut s, FnEvent::StepBegin { index: 0, name: "charge".into(), policy_slots: 1 }, due).unwrap();
        apply(&mut s, FnEvent::StepSucceeded { index: 0, result: serde_json::json!({"ok": true}) }, due).unwrap();
        assert_eq!(replay(&s, 0, "charge", StepKind::Step, due), Replay::Succeeded(serde_json::json!({"ok": true})));
        assert_eq!(s.steps[0].attempt, 2);
    }

    #[test]
    fn policy_none_refuses_even_service_faults() {
        let mut s = FunctionState::new("e", "f", "n", t(0));
        apply(&mut s, FnEvent::StepBegin { index: 0, name: "a".into(), policy_slots: 1 }, t(0)).unwrap();
        let fault = Failure::new(ExceptionType::ServiceFault, "lost");
        apply(&mut s, FnEvent::StepFailed { index: 0, failure: fault, policies: vec![RetryPolicy::none()], retryable: true }, t(1))
            .unwrap();
        assert_eq!(s.steps[0].status, StepStatus::Failed);
    }

    #[test]
    fn a_failure_dead_letters_and_a_resume_retries_the_failed_step_with_fresh_counters() {
        let mut s = FunctionState::new("e1", "f", "n", t(0));
        s.dead_letter_queue = Some(Name::parse("retry-f").unwrap());
        apply(&mut s, FnEvent::StepBegin { index: 0, name: "a".into(), policy_slots: 0 }, t(0)).unwrap();
        apply(&mut s, FnEvent::StepSucceeded { index: 0, result: serde_json::json!(1) }, t(1)).unwrap();
        apply(&mut s, FnEvent::StepBegin { index: 1, name: "b".into(), policy_slots: 1 }, t(2)).unwrap();
        apply(&mut s, FnEvent::StepFailed { index: 1, failure: throttled(), policies: twice(), retryable: false }, t(3)).unwrap();
        let fx = apply(&mut s, FnEvent::Finished { result: Err(throttled()) }, t(4)).unwrap();
        match fx.last() {
            Some(FnEffect::DeadLetter { link, step, .. }) => {
                assert_eq!((link.entry_id.as_str(), link.queue.as_str(), step.as_deref()), ("e1", "retry-f", Some("b")));
            }
            other => panic!("{other:?}"),
        }
        let fx = apply(&mut s, FnEvent::Resume, t(10)).unwrap();
        assert_eq!(fx, vec![FnEffect::Invoke]);
        assert_eq!(replay(&s, 0, "a", StepKind::Step, t(10)), Replay::Succeeded(serde_json::json!(1)));
        assert_eq!(replay(&s, 1, "b", StepKind::Step, t(10)), Replay::Ready);
        apply(&mut s, FnEvent::StepBegin { index: 1, name: "b".into(), policy_slots: 1 }, t(10)).unwrap();
        apply(&mut s, FnEvent::StepSucceeded { index: 1, result: serde_json::json!(2) }, t(11)).unwrap();
        let fx = apply(&mut s, FnEvent::Finished { result: Ok(serde_json::json!(3)) }, t(12)).unwrap();
        assert!(fx.contains(&FnEffect::DeadLetterResolved { entry_id: "e1".into() }));
        assert!(apply(&mut s, FnEvent::Resume, t(13)).is_err(), "only failed executions resume");
    }

    #[test]
    fn exhausted_or_refused_retries_fail_the_step_not_the_execution() {
        let mut s = FunctionState::new("e", "f", "n", t(0));
        apply(&mut s, FnEvent::StepBegin { index: 0, name: "a".into(), policy_slots: 1 }, t(0)).unwrap();
        apply(&mut s, FnEvent::StepFailed { index: 0, failure: throttled(), policies: twice(), retryable: false }, t(1)).unwrap();
        assert_eq!(s.steps[0].status, StepStatus::Failed);
        assert_eq!(s.status, FunctionStatus::Running);
        assert!(matches!(replay(&s, 0, "a", StepKind::Step, t(2)), Replay::Failed(_)));
    }

    #[test]
    fn a_different_name_or_kind_at_a_position_is_non_deterministic() {
        let mut s = FunctionState::new("e", "f", "n", t(0));
        apply(&mut s, FnEvent::StepBegin { index: 0, name: "charge".into(), policy_slots: 0 }, t(0)).unwrap();
        match replay(&s, 0, "ship", StepKind::Step, t(1)) {
            Replay::Mismatch(nd) => {
                assert_eq!((nd.position, nd.recorded_name.as_str()), (0, "charge"));
                let m = nd.failure().message;
                assert!(m.contains("step \"ship\"") && m.contains("step \"charge\""), "{m}");
                assert_eq!(nd.failure().exception_type.to_string(), NON_DETERMINISM);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(replay(&s, 0, "charge", StepKind::Sleep, t(1)), Replay::Mismatch(_)));
        assert_eq!(replay(&s, 0, "charge", StepKind::Step, t(1)), Replay::Interrupted);
    }

    #[test]
    fn sleeps_are_durable_and_finish_clears_pending_timers() {
        let mut s = FunctionState::new("e", "f", "n", t(0));
        let fx = apply(&mut s, FnEvent::SleepBegin { index: 0, name: "cool".into(), due_at: t(60_000) }, t(0)).unwrap();
        assert_eq!(fx, vec![FnEffect::SetTimer { index: 0, due_at: t(60_000) }]);
        assert_eq!(replay(&s, 0, "cool", StepKind::Sleep, t(59_999)), Replay::Waiting(t(60_000)));
        assert_eq!(replay(&s, 0, "cool", StepKind::Sleep, t(60_000)), Replay::Succeeded(serde_json::Value::Null));
        let fx = apply(&mut s, FnEvent::Finished { result: Err(Failure::new(ExceptionType::Custom(FUNCTION_ERROR.into()), "x")) }, t(1))
            .unwrap();
        assert!(fx.contains(&FnEffect::ClearTimer { index: 0 }));
        assert_eq!(s.status, FunctionStatus::Failed);
        assert!(apply(&mut s, FnEvent::TimerFired { index: 0 }, t(60_000)).is_err());
        let back: FunctionState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    /// Steps "a" (succeeded), sleep "nap" (succeeded), "b" (waiting for a retry).
    fn three_recorded() -> FunctionState {
        let mut s = FunctionState::new("e", "f", "n", t(0));
        apply(&mut s, FnEvent::StepBegin { index: 0, name: "a".into(), policy_slots: 1 }, t(0)).unwrap();
        apply(&mut s, FnEvent::StepSucceeded { index: 0, result: serde_json::json!(1) }, t(0)).unwrap();
        apply(&mut s, FnEvent::SleepBegin { index: 1, name: "nap".into(), due_at: t(0) }, t(0)).unwrap();
        apply(&mut s, FnEvent::StepBegin { index: 2, name: "b".into(), policy_slots: 1 }, t(0)).unwrap();
        apply(&mut s, FnEvent::StepFailed { index: 2, failure: throttled(), policies: twice(), retryable: true }, t(1)).unwrap();
        s
    }

    #[test]
    fn returning_after_every_recorded_step_is_deterministic() {
        let s = three_recorded();
        assert_eq!(returned(&s, 3, &Ok(serde_json::json!("done"))), Ok(()));
        assert_eq!(returned(&s, 4, &Err(throttled())), Ok(()), "a call beyond the history was new, not a departure");
        let fresh = FunctionState::new("e", "f", "n", t(0));
        assert_eq!(returned(&fresh, 0, &Ok(serde_json::Value::Null)), Ok(()), "no history: nothing to depart from");
    }

    #[test]
    fn returning_before_a_recorded_step_is_non_deterministic_naming_both_sides() {
        let s = three_recorded();
        let nd = returned(&s, 2, &Ok(serde_json::json!("early"))).unwrap_err();
        assert_eq!((nd.position, nd.recorded_kind, nd.recorded_name.as_str(), nd.recorded_steps), (2, StepKind::Step, "b", 3));
        assert_eq!(nd.reached, Reached::Return { error: None });
        let m = nd.failure().message;
        assert!(m.contains("returned a result at call 3") && m.contains("step \"b\" there (3 calls recorded)"), "{m}");
        assert_eq!(nd.failure().exception_type.to_string(), NON_DETERMINISM);

        let nd = returned(&s, 1, &Ok(serde_json::Value::Null)).unwrap_err();
        assert!(nd.to_string().contains("sleep \"nap\" there"), "{nd}");
    }

    #[test]
    fn an_early_return_with_an_error_quotes_the_error_bounded() {
        let s = three_recorded();
        let own = Failure::new(ExceptionType::Custom(FUNCTION_ERROR.into()), "the input does not deserialize");
        let m = returned(&s, 0, &Err(own)).unwrap_err().to_string();
        assert!(m.contains("returned an error (Function.ERROR: the input does not deserialize) at call 1"), "{m}");
        assert!(m.contains("step \"a\" there"), "{m}");
        let long = Failure::new(ExceptionType::Custom(FUNCTION_ERROR.into()), "x".repeat(10 * MAX_QUOTED_ERROR_BYTES));
        let m = returned(&s, 0, &Err(long)).unwrap_err().to_string();
        assert!(m.len() < 2 * MAX_QUOTED_ERROR_BYTES, "{} bytes", m.len());
        assert!(m.ends_with("on every run") && m.contains("step \"a\""), "the history's side is kept: {m}");
    }

    #[test]
    fn a_non_deterministic_return_fails_the_execution_for_good_and_clears_its_timers() {
        let mut s = three_recorded();
        let due = s.waiting_on().unwrap().1;
        let nd = returned(&s, 1, &Ok(serde_json::Value::Null)).unwrap_err();
        let fx = apply(&mut s, FnEvent::Finished { result: Err(nd.failure()) }, t(2)).unwrap();
        assert!(fx.contains(&FnEffect::ClearTimer { index: 2 }), "{fx:?}");
        assert_eq!(s.status, FunctionStatus::Failed);
        assert_eq!(s.error.as_ref().map(|e| e.exception_type.to_string()), Some(NON_DETERMINISM.to_string()));
        assert!(s.result.is_none());
        assert!(apply(&mut s, FnEvent::TimerFired { index: 2 }, due).is_err(), "the pending retry does not fire");
    }

    #[test]
    fn a_step_key_is_the_execution_and_the_position() {
        assert_eq!(StepKey::new("0190a4c2-7d1e-7c3a-9f00-3b2f1e0c9a11", 2).as_str(), "0190a4c2-7d1e-7c3a-9f00-3b2f1e0c9a11/2");
        assert_eq!(StepKey::new("e", 0), StepKey::new("e", 0));
        assert_ne!(StepKey::new("e", 0), StepKey::new("e", 1), "one name at two positions: two keys");
        assert_ne!(StepKey::new("e", 0), StepKey::new("f", 0));
        assert_eq!(String::from(StepKey::new("e", 7)), StepKey::new("e", 7).to_string());
    }
}
