//! Per-key concurrency in the loop: which key slot an attempt needs (read from
//! the execution's input as the attempt gets it), and the wait for it on the
//! attempt's task, before the fair slot. The attempt is committed as started
//! before it waits (commit before effect, as for any attempt), marked as not
//! begun (`awaiting_key`); its number and retries are unchanged by the wait.
//! Once it has its slot, its beginning (`Event::AttemptBegan`, with when it
//! really began if it had to wait, so its recorded start and its series'
//! `expireAfterMin` budget do not count the wait) is committed before its
//! action runs. So after a crash an attempt still marked as not begun never ran,
//! and recovery runs it again as the same attempt instead of failing it.

use crate::clock::Clock;
use crate::handle::Inbound;
use crate::keys::{Closed, KeyGate, KeyPermit, Waiter};
use crate::pipeline::LoadedPipeline;
use redrive_core::concurrency::SlotKey;
use redrive_core::machine::AttemptId;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The key slot attempt `id` needs and its action's `max`, when the action
/// declares `concurrency:`. An input that is not JSON selects nothing (the
/// absent bucket); stored inputs are always JSON.
pub(super) fn slot_of(p: &LoadedPipeline, id: AttemptId, input_json: &str) -> Option<(SlotKey, u32)> {
    let stage = &p.pipeline.stages[id.at.stage];
    let action = &stage.actions[id.at.action];
    let c = action.concurrency.as_ref()?;
    let input = serde_json::from_str(input_json).unwrap_or(serde_json::Value::Null);
    let key = SlotKey {
        pipeline: p.record.name.clone(),
        stage: stage.name.to_string(),
        action: action.name.to_string(),
        value: c.key().select(&input),
    };
    Some((key, c.max()))
}

/// Why an attempt's action must not run: it was turned away while it waited
/// for its key slot (a drain), or its beginning was not committed. It is
/// released (`Inbound::Release`).
pub(super) struct NotBegun;

/// Waits for the attempt's key slot, if it needs one, then has its beginning
/// committed (`Event::AttemptBegan`, with when it got the slot if it had to
/// wait) before its action may run: so after a crash, a keyed attempt whose
/// beginning is not in the store never ran. Returns the permit to hold while it
/// runs.
pub(super) async fn begin(
    keys: &Arc<KeyGate>,
    slot: Option<(SlotKey, u32)>,
    waiter: Waiter,
    clock: &dyn Clock,
    tx: &mpsc::Sender<Inbound>,
    execution_id: &str,
    id: AttemptId,
) -> Result<Option<KeyPermit>, NotBegun> {
    let Some((key, max)) = slot else { return Ok(None) };
    let (permit, waited) = keys.acquire(key, max, waiter).await.map_err(|Closed| NotBegun)?;
    let (reply, committed) = oneshot::channel();
    let began = Inbound::Began { execution_id: execution_id.to_string(), id, at: waited.then(|| clock.now()), reply };
    tx.send(began).await.map_err(|_| NotBegun)?;
    match committed.await {
        Ok(Ok(())) => Ok(Some(permit)),
        _ => Err(NotBegun),
    }
}
