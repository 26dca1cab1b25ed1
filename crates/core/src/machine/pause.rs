//! Pause on exhaustion (`onExhausted: PAUSE`), and what ends a pause.
//!
//! When a retry policy gives up on an action *for exhaustion* and the policy
//! (or, when the policy does not say, the action) has `onExhausted: PAUSE`, the
//! action becomes [`ActionStatus::Paused`] instead of `Failed`. Once nothing
//! else of its runOrder group runs, the execution becomes
//! [`ExecutionStatus::Paused`]: unfinished, holding nothing in flight, waiting
//! for [`Event::Resume`] (a fresh series of attempts, optionally with a patched
//! input) or [`Event::Fail`] (failed for good, dead-lettered like any failure).
//!
//! Exhaustion is `maxAttemptsReached`, `expired`, `attemptCeiling` and
//! `retriesDisabled` (a matching policy with maxAttempts/expireAfterMin 0). A
//! failure no policy retries (`noMatchingPolicy`), a stop, an abort, and a
//! terminal exception type (`Engine.LIMIT_EXCEEDED`, `Engine.CORRUPT_STATE`) never
//! pause: resuming could not change their outcome.

use super::{ActionAt, ActionStatus, ExecutionStatus, Rejection, StageStatus, Step, Trigger};
use crate::definition::Action;
use crate::exception::Failure;
use crate::merge_patch::InputPatch;
use crate::policy::{GiveUpReason, OnExhausted, PolicyRef};

/// Whether a give-up pauses the action rather than failing it.
pub fn pauses(action: &Action, policy: Option<PolicyRef>, reason: &GiveUpReason, failure: &Failure) -> bool {
    let exhausted = matches!(
        reason,
        GiveUpReason::MaxAttemptsReached { .. }
            | GiveUpReason::Expired { .. }
            | GiveUpReason::AttemptCeiling { .. }
            | GiveUpReason::RetriesDisabled
    );
    exhausted && !failure.exception_type.is_terminal() && on_exhausted(action, policy) == OnExhausted::Pause
}

/// The `onExhausted` that applies to a give-up under `policy`: the policy's own,
/// else the action's.
pub fn on_exhausted(action: &Action, policy: Option<PolicyRef>) -> OnExhausted {
    let declared = match policy {
        Some(PolicyRef::Declared(i)) => action.retry_policies.get(i).and_then(|p| p.on_exhausted()),
        _ => None,
    };
    declared.unwrap_or(action.on_exhausted)
}

impl Step<'_> {
    /// The paused actions of the current stage.
    fn paused_actions(&self) -> Vec<ActionAt> {
        let si = self.state.current_stage;
        let stage = &self.state.stages[si];
        (0..stage.actions.len())
            .filter(|&ai| stage.actions[ai].status == ActionStatus::Paused)
            .map(|ai| ActionAt { stage: si, action: ai })
            .collect()
    }

    pub(super) fn resume(&mut self, action: Option<ActionAt>, input: Option<InputPatch>) -> Result<(), Rejection> {
        if self.state.status != ExecutionStatus::Paused {
            return Err(Rejection::NotPaused(self.state.status));
        }
        let paused = self.paused_actions();
        debug_assert!(!paused.is_empty(), "a paused execution has a paused action");
        let targets = match action {
            None => paused,
            Some(at) if paused.contains(&at) => vec![at],
            Some(at) => {
                let (stage, action) = (&self.pipeline.stages[at.stage], at.action);
                let name = stage.actions.get(action).map_or_else(|| format!("#{action}"), |a| a.name.to_string());
                return Err(Rejection::Invalid(format!("action {}/{name} is not paused", stage.name)));
            }
        };
        if let Some(patch) = input {
            self.patch_input(patch, Trigger::Resume);
        }
        self.state.status = ExecutionStatus::InProgress;
        for at in targets {
            self.start_series(at, Trigger::Resume);
        }
        Ok(())
    }

    pub(super) fn fail_paused(&mut self) -> Result<(), Rejection> {
        if self.state.status != ExecutionStatus::Paused {
            return Err(Rejection::NotPaused(self.state.status));
        }
        for at in self.paused_actions() {
            self.state.action_mut(at).status = ActionStatus::Failed;
        }
        let si = self.state.current_stage;
        self.state.stages[si].status = StageStatus::Failed;
        self.finish(ExecutionStatus::Failed);
        Ok(())
    }
}
