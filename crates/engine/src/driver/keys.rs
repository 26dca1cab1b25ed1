//! Per-key concurrency in the loop: which key slot an attempt needs (read from
//! the execution's input as the attempt gets it), and the wait for it on the
//! attempt's task, before the fair slot. The attempt is committed as started
//! before it waits (commit before effect, as for any attempt); its number and
//! retries are unchanged by the wait, and when it had to wait its result carries
//! when it really began (`Event::AttemptBegan`), so its recorded start and its
//! series' `expireAfterMin` budget do not count the wait.

use crate::clock::Clock;
use crate::keys::{Closed, KeyGate, KeyPermit, Waiter};
use crate::pipeline::LoadedPipeline;
use redrive_core::concurrency::SlotKey;
use redrive_core::machine::AttemptId;
use redrive_core::time::Timestamp;
use std::sync::Arc;

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

/// Waits for the attempt's key slot, if it needs one: the permit (held while it
/// runs) and, when it had to wait, when it got it.
pub(super) async fn wait_for_key(
    keys: &Arc<KeyGate>,
    slot: Option<(SlotKey, u32)>,
    waiter: Waiter,
    clock: &dyn Clock,
) -> Result<(Option<KeyPermit>, Option<Timestamp>), Closed> {
    let Some((key, max)) = slot else { return Ok((None, None)) };
    let (permit, waited) = keys.acquire(key, max, waiter).await?;
    Ok((Some(permit), waited.then(|| clock.now())))
}
