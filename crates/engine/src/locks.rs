//! SUPERSEDED mode's stage locks read from the store (a leaf): a pipeline's
//! unfinished executions and where each stands with the locks. The rules over
//! them are `redrive_core::schedule::StageLocks`; the driver keeps the locks in
//! memory once read, the dry run of a redrive reads them to predict a refusal.

use redrive_core::machine::{ExecutionState, StagePosition};
use redrive_core::schedule::StageLocks;
use redrive_core::time::Timestamp;
use redrive_store::{ExecutionCursor, ExecutionFilter, Store, StoreError, TargetName};
use std::collections::BTreeMap;

/// An execution in its pipeline's stage locks: (started at, id), older first.
pub type LockKey = (Timestamp, String);

/// A pipeline's unfinished executions as read, oldest first, with where each
/// stands with the stage locks.
pub type Unfinished = BTreeMap<LockKey, Option<StagePosition>>;

/// Where a stored execution stands with the stage locks (`None` also for an
/// unreadable state: it is quarantined where it is met).
pub fn stored_position(state_json: &str) -> Option<StagePosition> {
    serde_json::from_str::<ExecutionState>(state_json).ok()?.stage_position()
}

/// Every unfinished execution of a pipeline, page by page.
pub async fn unfinished<S: Store>(store: &S, pipeline: &str) -> Result<Unfinished, StoreError> {
    let mut set = BTreeMap::new();
    let mut before: Option<ExecutionCursor> = None;
    loop {
        let filter =
            ExecutionFilter { target: Some(TargetName::pipeline(pipeline)), unfinished_only: true, before: before.clone(), limit: 0 };
        let page = store.list_executions(filter).await?;
        let Some(last) = page.last() else { return Ok(set) };
        before = Some(last.cursor());
        set.extend(page.into_iter().map(|e| ((e.created_at, e.id), stored_position(&e.state_json))));
    }
}

/// The stage locks of `unfinished` (whatever consistency moves they imply are
/// not made: a reader only looks).
pub fn locks_of(unfinished: &Unfinished) -> StageLocks<LockKey> {
    StageLocks::from_positions(unfinished.iter().filter_map(|(k, at)| Some((k.clone(), (*at)?)))).0
}

/// Why a stage retry of `who` must wait: another execution is inside the stage.
pub fn held_by_another(locks: &StageLocks<LockKey>, stage: usize, stage_name: &str, who: &LockKey) -> Option<String> {
    let (holder, _) = locks.at(stage);
    holder.filter(|h| *h != who).map(|h| {
        format!(
            "stage {stage_name} is processing execution {} (SUPERSEDED mode: one execution per stage); retry once it leaves the stage",
            h.1
        )
    })
}
