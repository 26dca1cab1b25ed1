//! Per-key concurrency in the views (docs/retry-control.md): the attempts
//! waiting for a slot of their concurrency key, from the engine
//! (`EngineHandle::key_waits`), as the `waiting` of an action view, and the
//! `redrive_attempts_waiting_for_key` gauge of `/metrics`.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redrive_core::machine::ActionAt;
use redrive_engine::keys::KeyWait;
use redrive_engine::service::Service;
use redrive_store::Store;
use redrive_wire as w;
use std::collections::HashMap;

/// The waiting attempts the engine reports, by (execution, action).
#[derive(Default)]
pub struct Waits(HashMap<(String, ActionAt), KeyWait>);

impl Waits {
    /// Of one execution, or (`None`) all. An engine that cannot answer (stopping)
    /// reports none: the views then show the stored state alone.
    pub async fn fetch<S: Store>(svc: &Service<S>, execution_id: Option<&str>) -> Waits {
        let waits = svc.engine().key_waits(execution_id).await.unwrap_or_default();
        Waits(waits.into_iter().map(|k| ((k.waiter.execution_id.clone(), k.waiter.id.at), k)).collect())
    }

    /// The `waiting` of an action view: only the running attempt it was for.
    pub fn view(&self, execution_id: &str, at: ActionAt, series: u32, attempt: u32) -> Option<w::KeyWaiting> {
        let k = self.0.get(&(execution_id.to_string(), at))?;
        (k.waiter.id.series == series && k.waiter.id.attempt == attempt).then(|| waiting(k))
    }
}

pub fn waiting(k: &KeyWait) -> w::KeyWaiting {
    w::KeyWaiting {
        concurrency_key: k.key.value.text().map(String::from),
        running: k.view.running,
        max: k.view.max,
        position: k.position as u64,
        since: k.waiter.since.to_string(),
    }
}

/// Adds `redrive_attempts_waiting_for_key` (how many attempts wait now).
pub fn register_key_metrics(registry: &mut Registry, waiting: usize) {
    let gauge = Gauge::<i64>::default();
    gauge.set(i64::try_from(waiting).unwrap_or(i64::MAX));
    registry.register(
        "redrive_attempts_waiting_for_key",
        "Attempts committed as started that wait for a slot of their action's concurrency key",
        gauge,
    );
}
