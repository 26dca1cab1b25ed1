//! Stage retry from a chosen action (native API and CLI only; the AWS protocol
//! keeps RetryStageExecution's exact semantics): on a `Failed` or `Paused`
//! execution, re-run stage S from action A's runOrder group on — the groups
//! before it keep their results (they must have succeeded), A's group and every
//! later one run again — optionally with the execution's input merge-patched,
//! the patch recorded in [`ExecutionState::input_patches`].
//! [`retry_from_targets`] is the whole check, so a preview and the retry agree.

use super::{ActionStatus, ExecutionState, ExecutionStatus, Rejection, StageStatus, Step, Trigger, check_stage_retry};
use crate::definition::Pipeline;
use crate::merge_patch::InputPatch;

/// The actions (indexes in stage `si`) a retry from action `ai` would re-run,
/// or why the state refuses it. Makes [`super::retry_targets`]' checks that do
/// not depend on the mode first.
pub fn retry_from_targets(pipeline: &Pipeline, state: &ExecutionState, si: usize, ai: usize) -> Result<Vec<usize>, Rejection> {
    let stage = check_stage_retry(state, si)?;
    if !matches!(state.status, ExecutionStatus::Failed | ExecutionStatus::Paused) {
        return Err(Rejection::NotRetryable(format!(
            "a retry from an action needs a Failed or Paused execution; this one is {}",
            state.status.as_str()
        )));
    }
    let stage_def = &pipeline.stages[si];
    let Some(from) = stage_def.actions.get(ai) else {
        return Err(Rejection::Invalid(format!("stage {} has no action with index {ai}", stage_def.name)));
    };
    if !stage.actions.iter().any(|a| matches!(a.status, ActionStatus::Failed | ActionStatus::Paused)) {
        return Err(Rejection::NotRetryable("the stage has no failed or paused actions".into()));
    }
    if stage.actions.iter().any(|a| a.is_active()) {
        return Err(Rejection::NotRetryable("actions of the stage are in progress".into()));
    }
    let earlier = (0..stage.actions.len()).filter(|&i| stage_def.actions[i].run_order < from.run_order);
    if let Some(i) = earlier.clone().find(|&i| stage.actions[i].status != ActionStatus::Succeeded) {
        return Err(Rejection::NotRetryable(format!(
            "action {} (runOrder {}, before {}'s group) did not succeed; retry from it",
            stage_def.actions[i].name, stage_def.actions[i].run_order, from.name
        )));
    }
    Ok((0..stage.actions.len()).filter(|&i| stage_def.actions[i].run_order >= from.run_order).collect())
}

impl Step<'_> {
    pub(super) fn retry_from_action(&mut self, si: usize, ai: usize, input: Option<InputPatch>) -> Result<(), Rejection> {
        let targets = retry_from_targets(self.pipeline, self.state, si, ai)?;
        let run_order = self.pipeline.stages[si].actions[ai].run_order;
        let group = self.pipeline.stages[si].run_orders().iter().position(|&r| r == run_order).expect("the action's own runOrder");
        if let Some(patch) = input {
            self.patch_input(patch, Trigger::Manual);
        }
        self.state.status = ExecutionStatus::InProgress;
        self.state.finished_at = None;
        self.state.failure = None;
        self.state.current_stage = si;
        let stage = &mut self.state.stages[si];
        stage.status = StageStatus::InProgress;
        stage.manual_retries_used += 1;
        stage.retry_in_progress = true;
        stage.latest_retry_trigger = Some(Trigger::Manual);
        for i in targets {
            stage.actions[i].status = ActionStatus::NotStarted;
        }
        self.start_group(si, group, Trigger::Manual);
        Ok(())
    }
}
