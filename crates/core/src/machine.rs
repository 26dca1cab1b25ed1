//! The execution state machine: `(pipeline, state, event, now) -> effects`.
//!
//! Pure and deterministic. The shell (redrive-engine) persists the new state and
//! the effects' ledger records in one transaction, and only after that commit
//! performs the effects (start attempts, arm timers). A crash between commit and
//! effect is repaired by [`Event::Recover`]: attempts the state says are running
//! are recorded as failed with `Step.SERVICE_FAULT` and retried under policy —
//! except an attempt still waiting for a slot of its concurrency key
//! ([`ActionState::awaiting_key`]), which never ran and is made due again as the
//! same attempt.

use crate::definition::{Pipeline, RetryMode};
use crate::dependency::DeferReason;
use crate::exception::{ExceptionType, Failure};
use crate::jitter::JitterDraw;
use crate::merge_patch::InputPatch;
use crate::name::Name;
use crate::policy::{Decision, RetryHistory, decide};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutionStatus {
    InProgress,
    /// Stop requested: no new attempts start; running ones finish.
    Stopping,
    Succeeded,
    Failed,
    Stopped,
    /// A newer execution of the pipeline overtook this one (SUPERSEDED mode).
    Superseded,
    /// An action exhausted its retries under `onExhausted: PAUSE`: nothing runs
    /// until [`Event::Resume`] or [`Event::Fail`]. Unfinished.
    Paused,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::InProgress => "InProgress",
            ExecutionStatus::Stopping => "Stopping",
            ExecutionStatus::Succeeded => "Succeeded",
            ExecutionStatus::Failed => "Failed",
            ExecutionStatus::Stopped => "Stopped",
            ExecutionStatus::Superseded => "Superseded",
            ExecutionStatus::Paused => "Paused",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, ExecutionStatus::Succeeded | ExecutionStatus::Failed | ExecutionStatus::Stopped | ExecutionStatus::Superseded)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StageStatus {
    NotStarted,
    InProgress,
    Succeeded,
    Failed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionStatus {
    NotStarted,
    /// An attempt is running (or was, when the engine stopped).
    Running,
    /// Failed; a retry is due at `next_attempt_at` (a durable timer).
    WaitingRetry,
    Succeeded,
    /// Failed for good in this series.
    Failed,
    /// Exhausted its retries under `onExhausted: PAUSE`: waits for a person.
    Paused,
}

/// What started a series of attempts, or one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// The first series of an action in an execution.
    Initial,
    /// A retry granted by a retry policy.
    Policy,
    /// `onFailure: RETRY` on the stage.
    StageAutoRetry,
    /// RetryStageExecution by a person or client.
    Manual,
    /// A dead-letter-queue redrive.
    Redrive,
    /// A paused action resumed by a person or client ([`Event::Resume`]).
    Resume,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Initial => "initial",
            Trigger::Policy => "policy",
            Trigger::StageAutoRetry => "stage-auto-retry",
            Trigger::Manual => "manual",
            Trigger::Redrive => "redrive",
            Trigger::Resume => "resume",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionState {
    pub status: ActionStatus,
    /// 0 until the action first starts; +1 for each new series (stage retry).
    pub series: u32,
    /// Attempts started in the current series.
    pub attempt: u32,
    pub series_trigger: Trigger,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_started_at: Option<Timestamp>,
    /// Retries granted per policy slot in this series (declared policies + built-in).
    #[serde(default)]
    pub retries_by_policy: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// Attempts over all series (for summaries).
    #[serde(default)]
    pub total_attempts: u32,
    /// When an attempt of this action first failed, over all series.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed_at: Option<Timestamp>,
    /// The due attempt is held by its dependency ([`Event::Defer`]) until
    /// `next_attempt_at` (meaningful while `WaitingRetry`; kept through the
    /// start that asks again, so a repeated hold for the same reason is one
    /// ledger row; cleared when an attempt ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Hold>,
    /// The running attempt of an action with `concurrency:` has not begun: it
    /// waits for a slot of its key, and its action has not run. Set when such an
    /// attempt starts; cleared by [`Event::AttemptBegan`], which the engine
    /// commits before the action runs — so after a crash, a running attempt
    /// with it set never ran ([`Event::Recover`] makes it due again). States
    /// written before it existed lack it: their attempts count as begun.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_key: bool,
}

/// Why a due attempt waits: its dependency's budget or breaker held it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    pub dependency: Name,
    pub reason: DeferReason,
    pub since: Timestamp,
    pub until: Timestamp,
}

impl ActionState {
    fn new() -> ActionState {
        ActionState {
            status: ActionStatus::NotStarted,
            series: 0,
            attempt: 0,
            series_trigger: Trigger::Initial,
            series_started_at: None,
            attempt_started_at: None,
            retries_by_policy: Vec::new(),
            next_attempt_at: None,
            last_failure: None,
            output: None,
            total_attempts: 0,
            first_failed_at: None,
            held: None,
            awaiting_key: false,
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(self.status, ActionStatus::Running | ActionStatus::WaitingRetry)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StageState {
    pub status: StageStatus,
    /// Index into the stage's distinct runOrders.
    pub group: usize,
    pub auto_retries_used: u32,
    /// Manual (or redrive) retries started on this stage.
    #[serde(default)]
    pub manual_retries_used: u32,
    /// A stage retry is under way and the stage has not settled since.
    #[serde(default)]
    pub retry_in_progress: bool,
    /// What started the latest retry of this stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_retry_trigger: Option<Trigger>,
    pub actions: Vec<ActionState>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionState {
    pub execution_id: String,
    pub status: ExecutionStatus,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    pub current_stage: usize,
    pub stages: Vec<StageState>,
    /// Waiting for earlier executions of the pipeline to finish (QUEUED mode).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub queued: bool,
    /// A newer execution that overtook this one (SUPERSEDED mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<String>,
    /// SUPERSEDED mode's stage locks apply: the execution enters each stage
    /// only when let in ([`Event::EnterStage`]), and waits before it until then.
    /// (Executions stored before stage locks existed lack it and stop at their
    /// next stage boundary once overtaken.)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stage_locked: bool,
    /// With `stage_locked`: the stage it waits to enter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for_stage: Option<usize>,
    /// The dead-letter entry of this execution's lineage: set when it first fails
    /// for good in a pipeline with a `deadLetterQueue`, or at creation when a
    /// redrive starts it as a new execution. A later failure for good puts that
    /// entry back in its queue; a success resolves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterLink>,
    /// Why the engine itself failed the execution ([`Event::Abort`]), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// The input attempts get, once a resume patched it ([`Event::Resume`]);
    /// `None`: the input the execution was created with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    /// Every input patch applied, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_patches: Vec<InputPatchRecord>,
}

/// One input patch applied to an execution (the history [`Event::Resume`] keeps).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputPatchRecord {
    pub at: Timestamp,
    pub trigger: Trigger,
    /// The merge patch as given.
    pub patch: serde_json::Value,
}

/// Where an execution stands with SUPERSEDED mode's stage locks (see
/// [`crate::schedule::StageLocks`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StagePosition {
    /// In the stage: it holds the stage's lock.
    Holding(usize),
    /// Waiting before the stage for its lock.
    Waiting(usize),
}

/// Which dead-letter entry an execution answers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterLink {
    pub entry_id: String,
    pub queue: Name,
}

/// What an execution that failed for good leaves in its dead-letter queue.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub entry_id: String,
    pub queue: Name,
    /// The failed stage and its first failed action (in definition order).
    pub stage: usize,
    pub action: usize,
    /// That action's final error.
    pub failure: Failure,
    /// That action's first failure (over every series and redrive of this
    /// execution) and its last one (now).
    pub first_failure_at: Timestamp,
    pub last_failure_at: Timestamp,
    /// Every action of the failed stage.
    pub actions: Vec<DeadLetterAction>,
}

/// Attempt counts of one action of a dead-lettered stage.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterAction {
    pub action: usize,
    pub status: ActionStatus,
    /// Attempts over every series.
    pub total_attempts: u32,
    /// Series of attempts (1 + stage retries of this action).
    pub series: u32,
    /// Attempts in the last series.
    pub attempts_in_last_series: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
}

impl ExecutionState {
    /// A fresh, not yet started execution of `pipeline`.
    pub fn new(pipeline: &Pipeline, execution_id: impl Into<String>, now: Timestamp) -> ExecutionState {
        ExecutionState {
            execution_id: execution_id.into(),
            status: ExecutionStatus::InProgress,
            started_at: now,
            finished_at: None,
            current_stage: 0,
            queued: false,
            superseded_by: None,
            stage_locked: false,
            waiting_for_stage: None,
            dead_letter: None,
            failure: None,
            input: None,
            input_patches: Vec::new(),
            stages: pipeline
                .stages
                .iter()
                .map(|s| StageState {
                    status: StageStatus::NotStarted,
                    group: 0,
                    auto_retries_used: 0,
                    manual_retries_used: 0,
                    retry_in_progress: false,
                    latest_retry_trigger: None,
                    actions: s.actions.iter().map(|_| ActionState::new()).collect(),
                })
                .collect(),
        }
    }

    /// A fresh execution started by a redrive of dead-letter entry `link` (a new
    /// execution of the lineage): its own failure returns that entry.
    pub fn redriven(pipeline: &Pipeline, execution_id: impl Into<String>, now: Timestamp, link: DeadLetterLink) -> ExecutionState {
        ExecutionState { dead_letter: Some(link), ..ExecutionState::new(pipeline, execution_id, now) }
    }

    pub fn action(&self, at: ActionAt) -> &ActionState {
        &self.stages[at.stage].actions[at.action]
    }

    /// Where a stage-locked unfinished execution stands with the stage locks:
    /// holding the stage it is in, or waiting before one. `None`: not stage-locked,
    /// finished, queued, or not started.
    pub fn stage_position(&self) -> Option<StagePosition> {
        if !self.stage_locked || self.status.is_finished() || self.queued {
            return None;
        }
        if let Some(stage) = self.waiting_for_stage {
            return Some(StagePosition::Waiting(stage));
        }
        let current = self.stages.get(self.current_stage)?;
        (current.status != StageStatus::NotStarted).then_some(StagePosition::Holding(self.current_stage))
    }

    fn action_mut(&mut self, at: ActionAt) -> &mut ActionState {
        &mut self.stages[at.stage].actions[at.action]
    }
}

/// An action's position: stage index and action index within the stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActionAt {
    pub stage: usize,
    pub action: usize,
}

/// Identifies one attempt; events naming another attempt than the current one are stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttemptId {
    pub at: ActionAt,
    pub series: u32,
    pub attempt: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Begin the execution (only valid on a fresh state).
    Start,
    AttemptSucceeded {
        id: AttemptId,
        output: Option<serde_json::Value>,
    },
    AttemptFailed {
        id: AttemptId,
        failure: Failure,
    },
    /// The retry timer of this action fired.
    TimerFired {
        at: ActionAt,
    },
    /// The engine restarted: attempts marked running were lost in flight —
    /// failed as `Step.SERVICE_FAULT` — except those that had not begun
    /// ([`ActionState::awaiting_key`]): made due at once as the same attempt,
    /// with nothing in the ledger (as [`Event::Release`]).
    Recover,
    /// Re-run a failed stage (manual retry or redrive); `input` (a redrive's
    /// input patch) replaces the execution's input, recorded in
    /// [`ExecutionState::input_patches`].
    RetryStage {
        stage: usize,
        mode: RetryMode,
        trigger: Trigger,
        input: Option<InputPatch>,
    },
    /// An attempt that was committed as started was never dispatched (the engine is
    /// shutting down): un-start it and make it due again at once, so that after a
    /// restart it runs as the same attempt with nothing recorded against it.
    Release {
        id: AttemptId,
    },
    /// The attempt just started (in this same batch, not dispatched) is held by
    /// its dependency ([`crate::dependency::gate`] deferred it): un-start it and
    /// make it due at `hold.until`, keeping its number, so nothing is lost or
    /// doubled. Emits the timer and — unless the attempt was already held for the
    /// same reason — [`Effect::Deferred`] for the ledger.
    Defer {
        id: AttemptId,
        hold: Hold,
    },
    /// The running attempt `id` got a slot of its concurrency key and begins
    /// (its action runs once this is committed): it is no longer
    /// [`ActionState::awaiting_key`]. `at`: when, if it had to wait — its
    /// recorded start moves to `at`, and its series' start moves by the same
    /// wait, so `expireAfterMin` does not count the wait. No effects; refused
    /// when `id` is not running or `at` is not after its start.
    AttemptBegan {
        id: AttemptId,
        at: Option<Timestamp>,
    },
    /// Put a fresh execution in the pipeline's queue (QUEUED mode); `Start` later.
    Enqueue,
    /// A newer execution overtook this one (SUPERSEDED mode). A stage-locked
    /// execution is overtaken only while it waits before a stage, and finishes
    /// `Superseded` at once; an older one finishes so at its next stage boundary.
    Supersede {
        by: String,
    },
    /// A stage-locked execution waiting before `stage` may enter it (its lock is free).
    EnterStage {
        stage: usize,
    },
    /// Stop the execution. `abandon`: stop at once, abandoning running attempts;
    /// otherwise running attempts finish first (status `Stopping`). Either way no
    /// new attempt starts and pending retries are cancelled.
    Stop {
        abandon: bool,
        reason: String,
    },
    /// The engine fails the execution for good — a limit it cannot get under
    /// (`Engine.LIMIT_EXCEEDED`). Running attempts are recorded as failed with
    /// `failure` (their late results will be stale), pending retries are
    /// cancelled, every output is dropped (outputs are what can make a state too
    /// big), and the execution finishes `Failed` — dead-lettered like any failure.
    Abort {
        failure: Failure,
    },
    /// A paused execution continues: its paused actions (or only `action`)
    /// start a fresh series of attempts; `input` replaces the execution's input
    /// (recorded in [`ExecutionState::input_patches`]). See [`pause`].
    Resume {
        action: Option<ActionAt>,
        input: Option<InputPatch>,
    },
    /// A paused execution gives up for good: it fails with the failures its
    /// paused actions recorded, dead-lettered like any failure.
    Fail,
    /// Re-run stage `stage` from `action`'s runOrder group on (native API; see
    /// [`from_action`]), the input merge-patched by `input`.
    RetryFromAction {
        stage: usize,
        action: usize,
        input: Option<InputPatch>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    pub id: AttemptId,
    pub trigger: Trigger,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// `None` = succeeded.
    pub failure: Option<Failure>,
    pub decision: Option<Decision>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Run this attempt now (its start is part of the committed state).
    StartAttempt(AttemptId),
    /// Persist a timer that fires `TimerFired { at }` no earlier than `due_at`.
    SetTimer {
        at: ActionAt,
        due_at: Timestamp,
    },
    ClearTimer {
        at: ActionAt,
    },
    /// Append to the attempt ledger.
    Record(AttemptRecord),
    /// Append a deferral to the attempt ledger (the attempt did not run).
    Deferred {
        id: AttemptId,
        hold: Hold,
    },
    Finished(ExecutionStatus),
    /// The execution failed for good: write (or return) its dead-letter entry, in
    /// the same commit as the failure.
    DeadLetter(DeadLetter),
    /// The execution succeeded: its dead-letter entry (if still there) is resolved.
    DeadLetterResolved {
        entry_id: String,
    },
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("event for attempt {0:?} does not match the current attempt")]
    Stale(AttemptId),
    #[error("timer for stage {} action {} fired before it was due ({due})", .at.stage, .at.action)]
    TimerEarly { at: ActionAt, due: Timestamp },
    #[error("execution is already {0:?}")]
    Finished(ExecutionStatus),
    #[error("execution was already started")]
    AlreadyStarted,
    /// Another retry of this stage has not settled yet.
    #[error("a retry of this stage is already in progress")]
    RetryInProgress,
    /// The stage cannot be retried in its current state (the reason says why).
    #[error("{0}")]
    NotRetryable(String),
    #[error("the execution is already stopping")]
    AlreadyStopping,
    #[error("{0}")]
    Invalid(String),
    /// Resume or Fail of an execution that is not paused.
    #[error("the execution is not paused (it is {})", .0.as_str())]
    NotPaused(ExecutionStatus),
}

/// The message recorded for a pending retry cancelled by a stop.
pub const STOPPED_MESSAGE: &str = "the execution was stopped";
/// The exception type recorded for an attempt abandoned by a stop.
pub const STOPPED_EXCEPTION_TYPE: &str = "Execution.STOPPED";

/// The message recorded for an attempt lost when the engine stopped.
pub const IN_FLIGHT_LOST_MESSAGE: &str = "the engine stopped while this attempt was in flight; recorded as failed on restart";

/// The actions (indexes in stage `si`) a stage retry in `mode` would re-run, or
/// why the state refuses it: FAILED_ACTIONS re-runs the failed actions,
/// ALL_ACTIONS every action of the stage. [`apply`] of `Event::RetryStage` makes
/// exactly these checks; consoles and CLIs call this to preview a retry.
pub fn retry_targets(state: &ExecutionState, si: usize, mode: RetryMode) -> Result<Vec<usize>, Rejection> {
    let stage = check_stage_retry(state, si)?;
    if state.status == ExecutionStatus::Paused {
        return Err(Rejection::NotRetryable("the execution is paused: resume it or fail it".into()));
    }
    if !stage.actions.iter().any(|a| a.status == ActionStatus::Failed) {
        return Err(Rejection::NotRetryable("the stage has no failed actions".into()));
    }
    if mode == RetryMode::AllActions && stage.actions.iter().any(ActionState::is_active) {
        return Err(Rejection::NotRetryable("ALL_ACTIONS is refused while actions of the stage are in progress".into()));
    }
    Ok(match mode {
        RetryMode::FailedActions => (0..stage.actions.len()).filter(|&ai| stage.actions[ai].status == ActionStatus::Failed).collect(),
        RetryMode::AllActions => (0..stage.actions.len()).collect(),
    })
}

/// The checks every stage retry makes of the state, whatever it re-runs.
fn check_stage_retry(state: &ExecutionState, si: usize) -> Result<&StageState, Rejection> {
    let Some(stage) = state.stages.get(si) else {
        return Err(Rejection::Invalid(format!("no stage with index {si}")));
    };
    if state.status == ExecutionStatus::Stopping {
        return Err(Rejection::AlreadyStopping);
    }
    if state.status == ExecutionStatus::Stopped {
        return Err(Rejection::NotRetryable("the execution was stopped".into()));
    }
    if let Some(by) = &state.superseded_by {
        return Err(Rejection::NotRetryable(format!("the execution was superseded by {by}")));
    }
    if stage.retry_in_progress {
        return Err(Rejection::RetryInProgress);
    }
    Ok(stage)
}

/// Applies one event. On `Err`, `state` is unchanged.
pub fn apply(pipeline: &Pipeline, state: &mut ExecutionState, event: Event, now: Timestamp) -> Result<Vec<Effect>, Rejection> {
    debug_assert_eq!(state.stages.len(), pipeline.stages.len());
    if matches!(event, Event::Resume { .. } | Event::Fail) && state.status != ExecutionStatus::Paused {
        return Err(Rejection::NotPaused(state.status));
    }
    if state.status.is_finished() && !matches!(event, Event::RetryStage { .. } | Event::RetryFromAction { .. }) {
        return Err(Rejection::Finished(state.status));
    }
    if state.status == ExecutionStatus::Stopping && matches!(event, Event::Start | Event::RetryStage { .. } | Event::RetryFromAction { .. })
    {
        return Err(Rejection::AlreadyStopping);
    }
    let mut m = Step { pipeline, state, now, effects: Vec::new() };
    match event {
        Event::Start => {
            if m.state.stages.first().is_some_and(|s| s.status != StageStatus::NotStarted) {
                return Err(Rejection::AlreadyStarted);
            }
            m.state.queued = false;
            m.enter_or_wait(0);
        }
        Event::Release { id } => {
            m.check_current(id)?;
            m.release(id);
        }
        Event::Defer { id, hold } => {
            m.check_current(id)?;
            if hold.until <= now {
                return Err(Rejection::Invalid("a deferral must end after now".into()));
            }
            let a = m.state.action_mut(id.at);
            a.attempt -= 1;
            a.total_attempts -= 1;
            a.status = ActionStatus::WaitingRetry;
            a.next_attempt_at = Some(hold.until);
            a.awaiting_key = false;
            // Held again for the same reason: one ledger row per hold, not per recheck.
            let again = a.held.as_ref().is_some_and(|h| h.dependency == hold.dependency && h.reason.as_str() == hold.reason.as_str());
            let since = if again { a.held.as_ref().map_or(now, |h| h.since) } else { now };
            let hold = Hold { since, ..hold };
            a.held = Some(hold.clone());
            m.effects.push(Effect::SetTimer { at: id.at, due_at: hold.until });
            if !again {
                m.effects.push(Effect::Deferred { id, hold });
            }
        }
        Event::AttemptBegan { id, at } => {
            m.check_current(id)?;
            let a = m.state.action_mut(id.at);
            let started = a.attempt_started_at.unwrap_or(now);
            if let Some(at) = at {
                if at <= started || at > now {
                    return Err(Rejection::Invalid(format!("an attempt begins after its start ({started}) and by now ({now})")));
                }
                let waited_ms = at.ms_since(started).max(0) as u64;
                a.attempt_started_at = Some(at);
                a.series_started_at = a.series_started_at.map(|s| s.plus_ms(waited_ms).min(at));
            }
            a.awaiting_key = false;
        }
        Event::Enqueue => {
            if m.state.stages.first().is_some_and(|s| s.status != StageStatus::NotStarted) {
                return Err(Rejection::AlreadyStarted);
            }
            m.state.queued = true;
        }
        Event::Supersede { by } => {
            if m.state.stage_locked && m.state.waiting_for_stage.is_none() {
                return Err(Rejection::Invalid("only an execution waiting before a stage can be superseded".into()));
            }
            m.state.superseded_by = Some(by);
            if m.state.waiting_for_stage.is_some() {
                m.finish(ExecutionStatus::Superseded);
            }
        }
        Event::EnterStage { stage } => {
            if m.state.waiting_for_stage != Some(stage) {
                return Err(Rejection::Invalid(format!("the execution is not waiting to enter stage {stage}")));
            }
            m.state.waiting_for_stage = None;
            m.start_stage(stage, Trigger::Initial);
        }
        Event::AttemptSucceeded { id, output } => {
            m.check_current(id)?;
            m.succeed(id, output);
        }
        Event::AttemptFailed { id, failure } => {
            m.check_current(id)?;
            m.fail(id, failure);
        }
        Event::TimerFired { at } => {
            let a = m.state.action(at);
            let due = a.next_attempt_at.unwrap_or(Timestamp::EPOCH);
            if a.status != ActionStatus::WaitingRetry {
                return Err(Rejection::Stale(AttemptId { at, series: a.series, attempt: a.attempt }));
            }
            if now < due {
                return Err(Rejection::TimerEarly { at, due });
            }
            m.effects.push(Effect::ClearTimer { at });
            m.start_attempt(at);
        }
        Event::Recover => {
            let running: Vec<AttemptId> = m
                .state
                .stages
                .iter()
                .enumerate()
                .flat_map(|(si, s)| {
                    s.actions.iter().enumerate().filter(|(_, a)| a.status == ActionStatus::Running).map(move |(ai, a)| AttemptId {
                        at: ActionAt { stage: si, action: ai },
                        series: a.series,
                        attempt: a.attempt,
                    })
                })
                .collect();
            for id in running {
                if m.state.action(id.at).awaiting_key {
                    m.release(id); // it never ran
                } else {
                    m.fail(id, Failure::new(ExceptionType::ServiceFault, IN_FLIGHT_LOST_MESSAGE));
                }
            }
        }
        Event::RetryStage { stage, mode, trigger, input } => {
            m.retry_stage(stage, mode, trigger, input)?;
        }
        Event::Stop { abandon, reason } => {
            if m.state.status == ExecutionStatus::Stopping && !abandon {
                return Err(Rejection::AlreadyStopping);
            }
            m.stop(abandon, &reason);
        }
        Event::Abort { failure } => m.abort(failure),
        Event::Resume { action, input } => m.resume(action, input)?,
        Event::Fail => m.fail_paused()?,
        Event::RetryFromAction { stage, action, input } => m.retry_from_action(stage, action, input)?,
    }
    Ok(m.effects)
}

struct Step<'a> {
    pipeline: &'a Pipeline,
    state: &'a mut ExecutionState,
    now: Timestamp,
    effects: Vec<Effect>,
}

impl<'a> Step<'a> {
    fn check_current(&self, id: AttemptId) -> Result<(), Rejection> {
        let a = self.state.action(id.at);
        if a.status != ActionStatus::Running || a.series != id.series || a.attempt != id.attempt {
            return Err(Rejection::Stale(id));
        }
        Ok(())
    }

    /// Enters stage `si`, or — stage-locked — waits before it to be let in.
    fn enter_or_wait(&mut self, si: usize) {
        if self.state.stage_locked {
            self.state.waiting_for_stage = Some(si);
        } else {
            self.start_stage(si, Trigger::Initial);
        }
    }

    fn start_stage(&mut self, si: usize, trigger: Trigger) {
        self.state.current_stage = si;
        let stage = &mut self.state.stages[si];
        stage.status = StageStatus::InProgress;
        stage.group = 0;
        self.start_group(si, 0, trigger);
    }

    fn start_group(&mut self, si: usize, group: usize, trigger: Trigger) {
        self.state.stages[si].group = group;
        let pipeline: &'a Pipeline = self.pipeline;
        for ai in pipeline.stages[si].group_members(group) {
            self.start_series(ActionAt { stage: si, action: ai }, trigger);
        }
    }

    fn start_series(&mut self, at: ActionAt, trigger: Trigger) {
        let slots = self.pipeline.stages[at.stage].actions[at.action].retry_policies.len() + 1;
        let now = self.now;
        let a = self.state.action_mut(at);
        a.series += 1;
        a.attempt = 0;
        a.series_trigger = trigger;
        a.series_started_at = Some(now);
        a.retries_by_policy = vec![0; slots];
        a.last_failure = None;
        a.output = None;
        self.start_attempt(at);
    }

    fn start_attempt(&mut self, at: ActionAt) {
        let now = self.now;
        let a = self.state.action_mut(at);
        a.attempt += 1;
        a.total_attempts += 1;
        a.status = ActionStatus::Running;
        a.attempt_started_at = Some(now);
        a.next_attempt_at = None;
        a.awaiting_key = self.pipeline.stages[at.stage].actions[at.action].concurrency.is_some();
        let id = AttemptId { at, series: a.series, attempt: a.attempt };
        self.effects.push(Effect::StartAttempt(id));
    }

    /// Un-starts the running attempt `id` and makes it due at once: it runs
    /// again as the same attempt, with nothing in the ledger.
    fn release(&mut self, id: AttemptId) {
        let now = self.now;
        let a = self.state.action_mut(id.at);
        a.attempt -= 1;
        a.total_attempts -= 1;
        a.status = ActionStatus::WaitingRetry;
        a.next_attempt_at = Some(now);
        a.awaiting_key = false;
        self.effects.push(Effect::SetTimer { at: id.at, due_at: now });
    }

    fn attempt_trigger(a: &ActionState) -> Trigger {
        if a.attempt <= 1 { a.series_trigger } else { Trigger::Policy }
    }

    fn succeed(&mut self, id: AttemptId, output: Option<serde_json::Value>) {
        let now = self.now;
        let a = self.state.action_mut(id.at);
        a.status = ActionStatus::Succeeded;
        a.held = None;
        a.last_failure = None;
        a.awaiting_key = false;
        a.output = output;
        let record = AttemptRecord {
            id,
            trigger: Self::attempt_trigger(a),
            started_at: a.attempt_started_at.unwrap_or(now),
            finished_at: now,
            failure: None,
            decision: None,
        };
        self.effects.push(Effect::Record(record));
        self.advance(id.at.stage);
    }

    fn fail(&mut self, id: AttemptId, failure: Failure) {
        let now = self.now;
        let pipeline: &'a Pipeline = self.pipeline;
        let stage_def = &pipeline.stages[id.at.stage];
        let action_def = &stage_def.actions[id.at.action];
        let draw = JitterDraw::for_attempt(&self.state.execution_id, stage_def.name.as_str(), action_def.name.as_str(), id.attempt);
        let stopping = self.state.status == ExecutionStatus::Stopping;
        let a = self.state.action_mut(id.at);
        let history = RetryHistory {
            first_attempt_started_at: a.series_started_at.unwrap_or(now),
            retries_by_policy: &a.retries_by_policy,
            attempts: a.attempt,
        };
        let decision = if stopping {
            Decision::GiveUp { policy: None, reason: crate::policy::GiveUpReason::Stopped }
        } else {
            decide(&action_def.retry_policies, history, &failure, now, draw)
        };
        let record = AttemptRecord {
            id,
            trigger: Self::attempt_trigger(a),
            started_at: a.attempt_started_at.unwrap_or(now),
            finished_at: now,
            failure: Some(failure.clone()),
            decision: Some(decision.clone()),
        };
        a.last_failure = Some(failure);
        a.held = None;
        a.awaiting_key = false;
        a.first_failed_at.get_or_insert(now);
        self.effects.push(Effect::Record(record));
        match decision {
            Decision::Retry(r) => {
                let slots = action_def.retry_policies.len();
                a.retries_by_policy[r.policy.slot(slots)] += 1;
                if r.due_at <= now {
                    self.start_attempt(id.at);
                } else {
                    a.status = ActionStatus::WaitingRetry;
                    a.next_attempt_at = Some(r.due_at);
                    self.effects.push(Effect::SetTimer { at: id.at, due_at: r.due_at });
                }
            }
            Decision::GiveUp { policy, reason } => {
                let failure = a.last_failure.as_ref().expect("recorded above");
                a.status = if pause::pauses(action_def, policy, &reason, failure) { ActionStatus::Paused } else { ActionStatus::Failed };
                self.advance(id.at.stage);
            }
        }
    }

    /// After an action settled: move the group, stage and execution forward.
    fn advance(&mut self, si: usize) {
        let pipeline: &'a Pipeline = self.pipeline;
        let stage_def = &pipeline.stages[si];
        let group = self.state.stages[si].group;
        let members = stage_def.group_members(group);
        let actions = &self.state.stages[si].actions;
        if members.iter().any(|&ai| actions[ai].is_active()) {
            return; // others in the group are still running: they finish first
        }
        if self.state.status == ExecutionStatus::Stopping {
            // Nothing runs any more: the stop completes.
            let stage = &mut self.state.stages[si];
            stage.retry_in_progress = false;
            if stage.actions.iter().any(|a| a.status == ActionStatus::Failed) {
                stage.status = StageStatus::Failed;
            }
            self.finish(ExecutionStatus::Stopped);
            return;
        }
        let all_succeeded = members.iter().all(|&ai| actions[ai].status == ActionStatus::Succeeded);
        let paused = members.iter().any(|&ai| actions[ai].status == ActionStatus::Paused);
        self.state.stages[si].retry_in_progress = false;
        if paused {
            self.state.status = ExecutionStatus::Paused;
            return;
        }
        if all_succeeded {
            if group + 1 < stage_def.run_orders().len() {
                self.start_group(si, group + 1, Trigger::Initial);
            } else {
                self.state.stages[si].status = StageStatus::Succeeded;
                if si + 1 < self.pipeline.stages.len() && self.state.superseded_by.is_some() {
                    self.finish(ExecutionStatus::Superseded);
                } else if si + 1 < self.pipeline.stages.len() {
                    self.enter_or_wait(si + 1);
                } else {
                    self.finish(ExecutionStatus::Succeeded);
                }
            }
            return;
        }
        // Some member failed for good.
        let stage = &mut self.state.stages[si];
        if let Some(auto) = stage_def.on_failure
            && stage.auto_retries_used < auto.max_retries
        {
            stage.auto_retries_used += 1;
            self.restart_stage(si, auto.retry_mode, Trigger::StageAutoRetry);
            return;
        }
        stage.status = StageStatus::Failed;
        self.finish(ExecutionStatus::Failed);
    }

    fn finish(&mut self, status: ExecutionStatus) {
        self.state.status = status;
        self.state.waiting_for_stage = None;
        self.state.finished_at = Some(self.now);
        self.effects.push(Effect::Finished(status));
        match status {
            ExecutionStatus::Failed => self.dead_letter(),
            ExecutionStatus::Succeeded => {
                if let Some(link) = &self.state.dead_letter {
                    self.effects.push(Effect::DeadLetterResolved { entry_id: link.entry_id.clone() });
                }
            }
            _ => {}
        }
    }

    /// After a failure for good: the entry of this lineage (returning) or a new
    /// one keyed by this execution's id, if the pipeline names a queue.
    fn dead_letter(&mut self) {
        if self.state.dead_letter.is_none() {
            let Some(queue) = self.pipeline.dead_letter_queue.clone() else { return };
            self.state.dead_letter = Some(DeadLetterLink { entry_id: self.state.execution_id.clone(), queue });
        }
        let link = self.state.dead_letter.clone().expect("set above");
        let si = self.state.current_stage;
        let stage = &self.state.stages[si];
        // An execution the engine aborted before any action failed (e.g. while
        // queued) is filed under its current stage's first action.
        let failed_at = stage.actions.iter().position(|a| a.status == ActionStatus::Failed);
        debug_assert!(failed_at.is_some() || self.state.failure.is_some(), "a failed execution has a failed action or a failure");
        let ai = failed_at.unwrap_or(0);
        let failed = &stage.actions[ai];
        let failure = failed
            .last_failure
            .clone()
            .or_else(|| self.state.failure.clone())
            .unwrap_or_else(|| Failure::new(ExceptionType::ActionFailed, "the action failed"));
        let actions = stage
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| DeadLetterAction {
                action: i,
                status: a.status,
                total_attempts: a.total_attempts,
                series: a.series,
                attempts_in_last_series: a.attempt,
                last_failure: a.last_failure.clone(),
            })
            .collect();
        self.effects.push(Effect::DeadLetter(DeadLetter {
            entry_id: link.entry_id,
            queue: link.queue,
            stage: si,
            action: ai,
            failure,
            first_failure_at: failed.first_failed_at.unwrap_or(self.now),
            last_failure_at: self.now,
            actions,
        }));
    }

    fn restart_stage(&mut self, si: usize, mode: RetryMode, trigger: Trigger) {
        self.state.current_stage = si;
        let stage = &mut self.state.stages[si];
        stage.status = StageStatus::InProgress;
        stage.retry_in_progress = true;
        stage.latest_retry_trigger = Some(trigger);
        match mode {
            RetryMode::FailedActions => {
                let failed: Vec<usize> = (0..self.state.stages[si].actions.len())
                    .filter(|&ai| self.state.stages[si].actions[ai].status == ActionStatus::Failed)
                    .collect();
                for ai in failed {
                    self.start_series(ActionAt { stage: si, action: ai }, trigger);
                }
            }
            RetryMode::AllActions => {
                for a in &mut self.state.stages[si].actions {
                    a.status = ActionStatus::NotStarted;
                }
                self.start_group(si, 0, trigger);
            }
        }
    }

    /// Manual stage retry. The service layer checks the API's preconditions
    /// (latest execution, pipeline version, concurrency); this checks the state's.
    fn retry_stage(&mut self, si: usize, mode: RetryMode, trigger: Trigger, input: Option<InputPatch>) -> Result<(), Rejection> {
        retry_targets(self.state, si, mode)?;
        if let Some(patch) = input {
            self.patch_input(patch, trigger);
        }
        if self.state.status.is_finished() {
            self.state.status = ExecutionStatus::InProgress;
            self.state.finished_at = None;
            self.state.failure = None;
        }
        if matches!(trigger, Trigger::Manual | Trigger::Redrive) {
            self.state.stages[si].manual_retries_used += 1;
        }
        self.restart_stage(si, mode, trigger);
        Ok(())
    }

    /// The execution's input becomes the patched one; the patch is recorded.
    fn patch_input(&mut self, patch: InputPatch, trigger: Trigger) {
        self.state.input = Some(patch.input().clone());
        self.state.input_patches.push(InputPatchRecord { at: self.now, trigger, patch: patch.patch().clone() });
    }

    fn stop(&mut self, abandon: bool, reason: &str) {
        let now = self.now;
        let message = if reason.is_empty() { STOPPED_MESSAGE.to_string() } else { format!("{STOPPED_MESSAGE}: {reason}") };
        let mut running = false;
        for si in 0..self.state.stages.len() {
            let stage = &mut self.state.stages[si];
            stage.retry_in_progress = false;
            for ai in 0..stage.actions.len() {
                let at = ActionAt { stage: si, action: ai };
                let a = &mut stage.actions[ai];
                match a.status {
                    ActionStatus::WaitingRetry => {
                        a.status = ActionStatus::Failed;
                        a.next_attempt_at = None;
                        self.effects.push(Effect::ClearTimer { at });
                    }
                    ActionStatus::Paused => a.status = ActionStatus::Failed,
                    ActionStatus::Running if abandon => {
                        // The attempt is abandoned: its late result will be stale.
                        let failure = Failure::new(ExceptionType::Custom(STOPPED_EXCEPTION_TYPE.into()), message.clone());
                        self.effects.push(Effect::Record(AttemptRecord {
                            id: AttemptId { at, series: a.series, attempt: a.attempt },
                            trigger: Self::attempt_trigger(a),
                            started_at: a.attempt_started_at.unwrap_or(now),
                            finished_at: now,
                            failure: Some(failure.clone()),
                            decision: Some(Decision::GiveUp { policy: None, reason: crate::policy::GiveUpReason::Stopped }),
                        }));
                        a.status = ActionStatus::Failed;
                        a.last_failure = Some(failure);
                    }
                    ActionStatus::Running => running = true,
                    _ => {}
                }
            }
            if stage.status == StageStatus::InProgress && !stage.actions.iter().any(ActionState::is_active) {
                stage.status =
                    if stage.actions.iter().any(|a| a.status == ActionStatus::Failed) { StageStatus::Failed } else { stage.status };
            }
        }
        if running {
            self.state.status = ExecutionStatus::Stopping;
        } else {
            self.finish(ExecutionStatus::Stopped);
        }
    }

    fn abort(&mut self, failure: Failure) {
        let now = self.now;
        for si in 0..self.state.stages.len() {
            let stage = &mut self.state.stages[si];
            stage.retry_in_progress = false;
            for ai in 0..stage.actions.len() {
                let at = ActionAt { stage: si, action: ai };
                let a = &mut stage.actions[ai];
                a.output = None;
                match a.status {
                    ActionStatus::WaitingRetry => {
                        a.next_attempt_at = None;
                        self.effects.push(Effect::ClearTimer { at });
                    }
                    ActionStatus::Running => self.effects.push(Effect::Record(AttemptRecord {
                        id: AttemptId { at, series: a.series, attempt: a.attempt },
                        trigger: Self::attempt_trigger(a),
                        started_at: a.attempt_started_at.unwrap_or(now),
                        finished_at: now,
                        failure: Some(failure.clone()),
                        decision: Some(Decision::GiveUp { policy: None, reason: crate::policy::GiveUpReason::Aborted }),
                    })),
                    ActionStatus::Paused => {}
                    _ => continue,
                }
                a.status = ActionStatus::Failed;
                a.last_failure = Some(failure.clone());
                a.first_failed_at.get_or_insert(now);
            }
            if stage.status == StageStatus::InProgress {
                stage.status = StageStatus::Failed;
            }
        }
        self.state.failure = Some(failure);
        self.state.queued = false;
        self.finish(ExecutionStatus::Failed);
    }
}

pub mod from_action;
pub mod pause;
#[cfg(test)]
mod tests;
