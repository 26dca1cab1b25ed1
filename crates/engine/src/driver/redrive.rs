//! Redriving a dead-letter entry: take it out of its queue and resubmit it, in
//! one transition — the entry's `Take` commits with the stage retry (or the new
//! execution's creation, or the function's resumption) or not at all. The
//! rules are `redrive_core::dlq` (`check_take`, `check_lineage`). This loop is
//! the only writer of entries, so the checks cannot race with another redrive
//! or a purge (`dlq_taken` covers takes not yet durable).

use super::batch::Batch;
use super::load::{Found, Need};
use super::pipelines::NewExecution;
use super::{Driver, Msg};
use crate::error::EngineError;
use crate::handle::{Inbound, StageRetry};
use crate::pipeline::LoadedPipeline;
use redrive_core::definition::RetryMode;
use redrive_core::dlq::{RedriveMode, SkipReason, TakeRequest, check_lineage, check_take};
use redrive_core::function::FnEvent;
use redrive_core::machine::{DeadLetterLink, Trigger};
use redrive_core::name::Name;
use redrive_core::time::Timestamp;
use redrive_store::{DlqEntryRecord, DlqOp, ExecutionKind, Store};
use std::sync::Arc;
use tokio::sync::oneshot;

/// A redrive as [`crate::EngineHandle::redrive`] asks for it.
pub(super) struct RedriveRequest {
    pub entry_id: String,
    pub mode: RedriveMode,
    pub force: bool,
    pub scope: Option<String>,
    pub pipeline: Option<Arc<LoadedPipeline>>,
    pub new_execution_id: String,
    /// A JSON merge patch for the input the entry is resubmitted with.
    pub input_patch: Option<serde_json::Value>,
}

type RedriveReply = oneshot::Sender<Result<String, EngineError>>;

impl RedriveRequest {
    fn parked(self, reply: RedriveReply) -> Msg {
        let RedriveRequest { entry_id, mode, force, scope, pipeline, new_execution_id, input_patch } = self;
        Msg::In(Inbound::Redrive { entry_id, mode, force, scope, pipeline, new_execution_id, input_patch, reply })
    }

    fn take_request(&self, being_taken: bool) -> TakeRequest<'_> {
        TakeRequest { force: self.force, scope: self.scope.as_deref(), being_taken }
    }
}

fn not_redriven(reason: SkipReason) -> EngineError {
    EngineError::NotRedriven(reason)
}

impl<S: Store> Driver<S> {
    /// Redrives one entry once everything it needs is read; answers with the
    /// execution resubmitted to once the take is durable.
    pub(super) fn redrive(&mut self, req: RedriveRequest, reply: RedriveReply, now: Timestamp, batch: &mut Batch) {
        if let Some(need) = self.redrive_needs(&req, now, batch) {
            return self.park(need, req.parked(reply));
        }
        let entry = self.staged_entries.remove(&req.entry_id).flatten();
        match self.redrive_entry(req, entry, now, batch) {
            Ok((execution_id, entry_id)) => {
                let pending = batch.entry(&execution_id);
                pending.dlq.push(DlqOp::Take { entry_id: entry_id.clone(), execution_id: execution_id.clone() });
                pending.taken.push(entry_id.clone());
                self.dlq_taken.insert(entry_id);
                let answer = execution_id.clone();
                batch.entry(&execution_id).replies.push(Box::new(move |r: Result<(), EngineError>| {
                    let _ = reply.send(r.map(|()| answer));
                }));
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    /// What a redrive must wait for: the entry, then what it resubmits to (its
    /// execution, or its pipeline's unfinished executions). `None`: ready (a
    /// redrive bound to be refused needs nothing more).
    fn redrive_needs(&mut self, req: &RedriveRequest, now: Timestamp, batch: &mut Batch) -> Option<Need> {
        let Some(staged) = self.staged_entries.get(&req.entry_id) else { return Some(Need::Entry(req.entry_id.clone())) };
        let entry = staged.as_ref()?;
        let being_taken = self.dlq_taken.contains(&req.entry_id);
        check_take(Some(&entry.facts()), &req.take_request(being_taken)).ok()?;
        let (kind, execution_id) = (entry.source.kind(), entry.execution_id.clone());
        if kind == ExecutionKind::Pipeline && req.mode == RedriveMode::NewExecution {
            return req.pipeline.as_ref().and_then(|p| self.unfinished(&p.record.name).err());
        }
        match self.find(&execution_id, now, batch) {
            Found::Park(need) => Some(need),
            Found::Err(_) => None, // the redrive reports it
            Found::Live => {
                // Reopening a finished pipeline execution counts against its concurrency limit.
                let run = self.live[&execution_id].pipeline().filter(|r| r.state.status.is_finished())?;
                self.unfinished(&run.pipeline.record.name.clone()).err()
            }
        }
    }

    /// Checks the take and resubmits the entry; returns (execution resubmitted
    /// to, entry id). Everything it needs was read (`redrive_needs`).
    fn redrive_entry(
        &mut self,
        req: RedriveRequest,
        entry: Option<DlqEntryRecord>,
        now: Timestamp,
        batch: &mut Batch,
    ) -> Result<(String, String), EngineError> {
        let being_taken = self.dlq_taken.contains(&req.entry_id);
        check_take(entry.as_ref().map(DlqEntryRecord::facts).as_ref(), &req.take_request(being_taken)).map_err(not_redriven)?;
        let entry = entry.expect("checked: the entry exists");
        let execution_id = match req.mode {
            // A function's entry resumes its execution, whatever the mode.
            _ if entry.source.kind() == ExecutionKind::Function => {
                if req.input_patch.is_some() {
                    return Err(not_redriven(SkipReason::Refused("an input patch applies to pipeline entries only".into())));
                }
                self.redrive_function(&entry, now, batch)?
            }
            RedriveMode::RetryStage => self.redrive_stage(&entry, req.input_patch, now, batch)?,
            RedriveMode::NewExecution => {
                let Some(pipeline) = req.pipeline else {
                    return Err(not_redriven(SkipReason::PipelineGone(entry.source.name().to_string())));
                };
                let queue = Name::parse(&entry.queue)
                    .map_err(|e| EngineError::CorruptState { id: entry.id.clone(), reason: format!("queue name: {e}") })?;
                let link = DeadLetterLink { entry_id: entry.id.clone(), queue };
                let id = req.new_execution_id;
                let input_json = match req.input_patch {
                    None => entry.input_json.clone(),
                    Some(patch) => super::pause::patch_text(&entry.input_json, patch)
                        .map_err(|e| not_redriven(SkipReason::Refused(format!("the input patch: {e}"))))?,
                };
                let new = NewExecution { pipeline, execution_id: id.clone(), input_json, client_token: None, dead_letter: Some(link) };
                let Ok(begun) = self.begin(new, now, batch) else {
                    unreachable!("redrive_needs read the pipeline's unfinished executions")
                };
                begun.map_err(|e| not_redriven(SkipReason::Refused(e.to_string())))?;
                id
            }
        };
        Ok((execution_id, entry.id))
    }

    /// Retries the failed stage (FAILED_ACTIONS) of the entry's execution.
    fn redrive_stage(
        &mut self,
        entry: &DlqEntryRecord,
        input_patch: Option<serde_json::Value>,
        now: Timestamp,
        batch: &mut Batch,
    ) -> Result<String, EngineError> {
        let id = entry.execution_id.clone();
        match self.find(&id, now, batch) {
            Found::Live => {}
            Found::Err(EngineError::ExecutionNotFound(_)) => return Err(not_redriven(SkipReason::ExecutionGone(id))),
            Found::Err(e) => return Err(e),
            Found::Park(_) => unreachable!("redrive_needs read the execution"),
        }
        let Some(run) = self.live[&id].pipeline() else {
            return Err(not_redriven(SkipReason::Refused(format!("execution {id} is not a pipeline execution"))));
        };
        check_lineage(&id, run.state.dead_letter.as_ref(), &entry.id).map_err(not_redriven)?;
        let retried = self.retry_stage(
            &id,
            &entry.stage,
            StageRetry::Mode { mode: RetryMode::FailedActions, trigger: Trigger::Redrive, input_patch },
            now,
            batch,
        );
        let Ok(retried) = retried else { unreachable!("redrive_needs read the pipeline's unfinished executions") };
        match retried {
            Ok(()) => Ok(id),
            Err(EngineError::StageNotFound { stage, .. }) => {
                Err(not_redriven(SkipReason::Refused(format!("stage {stage} is not in the execution's pipeline"))))
            }
            Err(e @ (EngineError::Rejected(_) | EngineError::ConcurrencyLimit { .. } | EngineError::LimitExceeded(_))) => {
                Err(not_redriven(SkipReason::Refused(e.to_string())))
            }
            Err(e) => Err(e),
        }
    }

    /// A redrive of a function's dead-letter entry: the failed execution resumes
    /// (its failed last step gets a fresh series) and replays.
    fn redrive_function(&mut self, entry: &DlqEntryRecord, now: Timestamp, batch: &mut Batch) -> Result<String, EngineError> {
        let id = entry.execution_id.clone();
        match self.find(&id, now, batch) {
            Found::Live => {}
            Found::Err(EngineError::ExecutionNotFound(_)) => return Err(not_redriven(SkipReason::ExecutionGone(id))),
            Found::Err(EngineError::FunctionNotRegistered(f)) => {
                return Err(not_redriven(SkipReason::Refused(format!("function {f} is not registered in this process"))));
            }
            Found::Err(e) => return Err(e),
            Found::Park(_) => unreachable!("redrive_needs read the execution"),
        }
        let Some(run) = self.live[&id].function() else {
            return Err(not_redriven(SkipReason::Refused(format!("execution {id} is not a function execution"))));
        };
        check_lineage(&id, run.state.dead_letter.as_ref(), &entry.id).map_err(not_redriven)?;
        self.fn_apply(&id, FnEvent::Resume, now, batch).map_err(|r| not_redriven(SkipReason::Refused(r.to_string())))?;
        Ok(id)
    }
}
