//! Paused executions in the loop (`onExhausted: PAUSE`; the rules are
//! `redrive_core::machine::pause`): resuming one with an optionally patched
//! input, and the input its attempts get. A paused execution runs nothing, so
//! after the commit that pauses it the driver evicts it like one that waits on
//! distant timers; a resume or fail reads it back.

use super::Driver;
use super::batch::Batch;
use super::live::Live;
use crate::error::EngineError;
use redrive_core::machine::{ActionAt, Event, Rejection};
use redrive_core::merge_patch::InputPatch;
use redrive_core::time::Timestamp;
use redrive_store::Store;

/// The input an attempt of a pipeline execution gets: the input a resume
/// patched it to, else the one it was created with.
pub(super) fn attempt_input(live: &Live) -> String {
    match live.pipeline().and_then(|run| run.state.input.as_ref()) {
        Some(patched) => patched.to_string(),
        None => live.input_json.to_string(),
    }
}

/// A stored input text with `patch` merged in, as text, within the limits.
pub(super) fn patch_text(input_json: &str, patch: serde_json::Value) -> Result<String, String> {
    Ok(InputPatch::apply_text(input_json, patch)?.input().to_string())
}

/// The execution's current input with `patch` merged in, within the limits.
pub(super) fn patched_input(live: &Live, patch: serde_json::Value) -> Result<InputPatch, EngineError> {
    InputPatch::apply_text(&attempt_input(live), patch).map_err(EngineError::LimitExceeded)
}

impl<S: Store> Driver<S> {
    /// `Event::RetryFromAction` for action `name` of stage `si`, the patch
    /// applied to the execution's current input.
    pub(super) fn retry_from_event(
        &self,
        execution_id: &str,
        si: usize,
        name: &str,
        input_patch: Option<serde_json::Value>,
    ) -> Result<Event, EngineError> {
        let live = &self.live[execution_id];
        let run = live.pipeline().expect("a pipeline execution");
        let stage = &run.pipeline.pipeline.stages[si];
        let Some(action) = stage.actions.iter().position(|a| a.name.as_str() == name) else {
            let version = run.pipeline.record.version;
            let why = format!("version {version} of the pipeline has no action {}/{name}", stage.name);
            return Err(EngineError::Rejected(Rejection::Invalid(why)));
        };
        let input = input_patch.map(|patch| patched_input(live, patch)).transpose()?;
        Ok(Event::RetryFromAction { stage: si, action, input })
    }

    /// `Event::Resume` of a live pipeline execution: names resolved against its
    /// pipeline version, the patch applied to its current input and limit-checked.
    pub(super) fn resume_paused(
        &mut self,
        execution_id: &str,
        action: Option<(String, String)>,
        input_patch: Option<serde_json::Value>,
        now: Timestamp,
        batch: &mut Batch,
    ) -> Result<(), EngineError> {
        let live = &self.live[execution_id];
        let run = live.pipeline().expect("a pipeline execution");
        let p = &run.pipeline.pipeline;
        let at = match &action {
            None => None,
            Some((stage, name)) => {
                let found = p.stage_index(stage).and_then(|si| {
                    let ai = p.stages[si].actions.iter().position(|a| a.name.as_str() == name)?;
                    Some(ActionAt { stage: si, action: ai })
                });
                let version = run.pipeline.record.version;
                Some(found.ok_or_else(|| {
                    EngineError::Rejected(Rejection::Invalid(format!("version {version} of the pipeline has no action {stage}/{name}")))
                })?)
            }
        };
        let input = input_patch.map(|patch| patched_input(live, patch)).transpose()?;
        self.apply(execution_id, Event::Resume { action: at, input }, now, batch).map_err(EngineError::Rejected)
    }
}
