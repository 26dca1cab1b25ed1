//! One batch of changes: per execution, what its transition will hold and
//! what to do once that transition is durable.

use crate::error::EngineError;
use redrive_core::machine::{AttemptId, AttemptRecord, ExecutionStatus};
use redrive_core::time::Timestamp;
use redrive_store::{DlqEntryFilter, DlqOp, LedgerEntry, PruneCounts, PruneStep, Transition};
use std::collections::{BTreeMap, HashMap};
use tokio::sync::oneshot;

/// Told the outcome of a request once the transition it caused is durable (or at
/// once if it was refused).
pub(super) type Reply = Box<dyn FnOnce(Result<(), EngineError>) + Send>;

pub(super) fn unit_reply(tx: oneshot::Sender<Result<(), EngineError>>) -> Reply {
    Box::new(move |r| {
        let _ = tx.send(r);
    })
}

/// One execution's change in a batch.
#[derive(Default)]
pub(super) struct Pending {
    pub ledger: Vec<LedgerEntry>,
    /// Timer key → Some(due) to set, None to clear.
    pub timers: BTreeMap<String, Option<Timestamp>>,
    /// Attempts of a pipeline execution to dispatch once durable.
    pub starts: Vec<AttemptId>,
    pub records: Vec<AttemptRecord>,
    pub finished: Option<ExecutionStatus>,
    pub replies: Vec<Reply>,
    /// Dead-letter changes committed with this execution's transition.
    pub dlq: Vec<DlqOp>,
    /// Entries taken by redrives in `dlq` (forgotten from `dlq_taken` on ack).
    pub taken: Vec<String>,
    /// A durable function execution: invoke (replay) it once this is durable.
    pub invoke: bool,
    /// The transition, once built and checked against the limits
    /// (`enforce_limits`); a later event on the execution in the same batch
    /// unbuilds it.
    pub built: Option<Transition>,
}

impl Pending {
    /// Takes back the ledger and dead-letter ops of a built transition (they come
    /// before anything added since), so it is built again.
    pub fn unbuild(&mut self) {
        if let Some(t) = self.built.take() {
            let mut ledger = t.ledger;
            ledger.append(&mut self.ledger);
            self.ledger = ledger;
            let mut dlq = t.dlq;
            dlq.append(&mut self.dlq);
            self.dlq = dlq;
        }
    }
}

/// A pipeline execution that finished (or was given up on): its pipeline, its
/// key in the pipeline's set of unfinished executions, and whether the pipeline
/// queues executions (a queue may move).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Finished {
    pub pipeline: String,
    pub key: (Timestamp, String),
    pub queued_mode: bool,
}

#[derive(Default)]
pub(super) struct Batch {
    pub order: Vec<String>,
    pub pending: HashMap<String, Pending>,
    /// Executions of pipelines that finished in this batch (their place in the
    /// unfinished set is released, and a queue may move).
    pub finished: Vec<Finished>,
    /// Due timers were fired in this batch: the next due time is read again
    /// once it is durable.
    pub timers_fired: bool,
    /// Purges and prunes run once this batch (and every earlier one) is durable.
    pub deletes: Vec<Delete>,
}

/// A delete of stored rows outside commits: run after the batch is durable.
pub(super) enum Delete {
    Purge(DlqEntryFilter, oneshot::Sender<Result<u64, EngineError>>),
    Prune(PruneStep, oneshot::Sender<Result<PruneCounts, EngineError>>),
}

impl Delete {
    /// Whether it deletes dead-letter entries.
    pub fn touches_entries(&self) -> bool {
        match self {
            Delete::Purge(..) => true,
            Delete::Prune(step, _) => step.resolved_entries_before.is_some(),
        }
    }
}

impl Batch {
    pub fn entry(&mut self, id: &str) -> &mut Pending {
        if !self.pending.contains_key(id) {
            self.order.push(id.to_string());
        }
        self.pending.entry(id.to_string()).or_default()
    }
}
