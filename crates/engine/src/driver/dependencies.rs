//! Dependencies in the loop: their states read back at start, every attempt a
//! machine step starts gated (a held one becomes `Event::Defer` in the same
//! step, so it is never dispatched and keeps its number), results recorded for
//! the breakers, and changed states written after each batch through the
//! committer (after the batch's own commit, in order).

use super::Driver;
use super::commit::CommitJob;
use crate::error::EngineError;
use crate::health::{FaultSource, retry_transient};
use redrive_core::definition::Pipeline;
use redrive_core::machine::{self, Effect, Event, ExecutionState};
use redrive_core::time::Timestamp;
use redrive_store::Store;

impl<S: Store> Driver<S> {
    /// Reads the stored dependency states (retrying while the store is unavailable).
    pub(super) async fn install_dependencies(&mut self) -> Result<(), EngineError> {
        let store = self.store.clone();
        let (records, _) = retry_transient(&self.health, FaultSource::Read, || store.list_dependencies()).await?;
        self.dependencies.install(records);
        Ok(())
    }

    /// Hands the dependency states this batch changed to the committer.
    pub(super) async fn save_dependencies(&mut self, now: Timestamp) {
        let records = self.dependencies.take_dirty(now);
        if !records.is_empty() {
            let _ = self.committer.send(CommitJob::Dependencies { records }).await;
        }
    }
}

/// Gates the attempts `effects` start: each one its dependency holds is
/// deferred at once (`Event::Defer`), its start replaced by the deferral's timer
/// and ledger record.
pub(super) fn gate_starts(
    deps: &mut crate::dependencies::Dependencies,
    p: &Pipeline,
    state: &mut ExecutionState,
    execution_id: &str,
    now: Timestamp,
    effects: &mut Vec<Effect>,
) {
    let starts: Vec<_> = effects.iter().filter_map(|e| if let Effect::StartAttempt(id) = e { Some(*id) } else { None }).collect();
    if starts.is_empty() {
        return;
    }
    for (id, hold) in deps.gate(p, execution_id, now, &starts) {
        let more = machine::apply(p, state, Event::Defer { id, hold }, now).expect("an attempt started in this step can be deferred");
        effects.retain(|e| *e != Effect::StartAttempt(id));
        effects.extend(more);
    }
}
