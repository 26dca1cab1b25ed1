//! Giving up on an execution the engine cannot drive: its stored state cannot be
//! read, or a change of it can never be stored. It is quarantined in the store
//! (failed, with the fault), and the engine goes on with the others.

use super::batch::{Finished, Pending};
use super::commit::CommitJob;
use super::{Driver, Msg};
use crate::error::EngineError;
use crate::handle::ExecutionOutcome;
use redrive_core::exception::ExceptionType;
use redrive_core::limits;
use redrive_core::machine::ExecutionStatus;
use redrive_core::time::Timestamp;
use redrive_store::{ExecutionFault, Store, StoreError};
use tokio::sync::oneshot;

/// The status a quarantined execution gets.
pub(super) const QUARANTINED_STATUS: ExecutionStatus = ExecutionStatus::Failed;

/// An execution the engine gave up on, until its quarantine is durable and no
/// commit of it is in flight.
pub(super) struct GivenUp {
    pub fault: ExecutionFault,
    pub started_at: Timestamp,
    /// The quarantine is durable.
    pub durable: bool,
}

/// The fault of an execution whose state cannot be read.
pub(super) fn corrupt_state_fault(reason: &str) -> ExecutionFault {
    ExecutionFault {
        exception_type: ExceptionType::CorruptState.to_string(),
        message: limits::truncate_utf8(format!("the stored state cannot be read: {reason}"), limits::MAX_FAILURE_MESSAGE_BYTES),
    }
}

/// The fault of an execution a transition of which can never be committed.
pub(super) fn limit_fault(problem: &str) -> ExecutionFault {
    ExecutionFault {
        exception_type: ExceptionType::LimitExceeded.to_string(),
        message: limits::truncate_utf8(format!("a change of the execution cannot be stored: {problem}"), limits::MAX_FAILURE_MESSAGE_BYTES),
    }
}

impl<S: Store> Driver<S> {
    /// Gives up on an execution: forgets it, kills its attempts, answers what
    /// waits on its pending change, and quarantines it in the store through the
    /// committer — so after every commit of it already submitted (those then
    /// conflict, which is expected). Waiters learn it failed once the quarantine
    /// is durable; `finished` is its place in its pipeline's unfinished set.
    pub(super) fn give_up(
        &mut self,
        id: &str,
        fault: ExecutionFault,
        started_at: Timestamp,
        finished: Option<Finished>,
        pending: Option<Pending>,
    ) {
        tracing::error!(execution_id = id, exception_type = %fault.exception_type, message = %fault.message, "the engine failed this execution (quarantined)");
        if let Some(p) = pending {
            for reply in p.replies {
                reply(Err(EngineError::quarantined(id, &fault)));
            }
            for entry_id in &p.taken {
                self.dlq_taken.remove(entry_id);
            }
        }
        let finished = match self.evict(id) {
            Some(live) => live.pipeline().map(|run| Finished {
                pipeline: run.pipeline.record.name.clone(),
                key: (run.state.started_at, id.to_string()),
                queued_mode: run.pipeline.pipeline.execution_mode == redrive_core::definition::ExecutionMode::Queued,
            }),
            None => finished,
        };
        if let Some(finished) = finished {
            self.local.push_back(Msg::Released(finished));
        }
        self.abort_tasks(id);
        self.given_up.insert(id.to_string(), GivenUp { fault: fault.clone(), started_at, durable: false });
        let (committer, tx, execution_id, at) = (self.committer.clone(), self.own_tx.clone(), id.to_string(), self.clock.now());
        tokio::spawn(async move {
            let (reply, rx) = oneshot::channel();
            let job = CommitJob::Quarantine { execution_id: execution_id.clone(), fault, at, reply };
            let stopped = || Err(StoreError::Unavailable("the committer stopped".into()));
            let result = match committer.send(job).await {
                Ok(()) => rx.await.unwrap_or_else(|_| stopped()),
                Err(_) => stopped(),
            };
            let _ = tx.send(Msg::Quarantined { execution_id, result });
        });
    }

    /// A quarantine is durable: waiters learn the execution failed.
    pub(super) fn quarantined(&mut self, id: String, result: Result<Option<u64>, StoreError>) -> Result<(), EngineError> {
        let stored = result?;
        self.store_epoch += 1;
        self.staged_records.remove(&id);
        let Some(given_up) = self.given_up.get_mut(&id) else { return Ok(()) };
        given_up.durable = true;
        self.recorder.quarantined();
        let outcome = ExecutionOutcome {
            execution_id: id.clone(),
            status: QUARANTINED_STATUS,
            started_at: given_up.started_at,
            finished_at: self.clock.now(),
        };
        for w in self.waiters.remove(&id).unwrap_or_default() {
            let _ = w.send(if stored.is_some() { Ok(outcome.clone()) } else { Err(EngineError::ExecutionNotFound(id.clone())) });
        }
        self.forget_given_up();
        Ok(())
    }

    /// Forgets quarantined executions once no commit of theirs is in flight.
    pub(super) fn forget_given_up(&mut self) {
        let submitted = &self.submitted;
        self.given_up.retain(|id, g| !g.durable || submitted.iter().any(|b| b.entries.iter().any(|(e, _, _)| e == id)));
    }
}
