//! What the engine says about itself: ready, degraded, or stopped.
//!
//! *Degraded* means the store refuses writes or reads for now (disk full, I/O
//! errors, a locked or read-only file): the engine keeps every acknowledged
//! transition, dispatches nothing new, retries with capped backoff and becomes
//! ready again by itself when the fault clears. *Stopped* is final (a fatal
//! fault: the store changed underneath the engine, or a bug); the process should
//! exit so a supervisor restarts it.
//!
//! The state is published on a `watch` channel: `/readyz`, the APIs (503 with
//! `Retry-After` while degraded) and `redrive run` (which says why it waits) read it.

use crate::clock::Clock;
use redrive_core::time::Timestamp;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// `Retry-After` suggested to clients while the engine is degraded.
pub const DEGRADED_RETRY_AFTER_SECONDS: u64 = 5;
/// First wait before retrying an operation after a transient store fault.
pub const STORE_RETRY_MIN_MS: u64 = 50;
/// Longest wait between retries (the backoff doubles up to this).
pub const STORE_RETRY_MAX_MS: u64 = 5_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Ready,
    /// The store refuses some operations for now; the engine retries them.
    Degraded {
        reason: String,
        since: Timestamp,
    },
    /// The engine stopped for good.
    Stopped {
        reason: String,
    },
}

impl Health {
    pub fn is_ready(&self) -> bool {
        matches!(self, Health::Ready)
    }

    /// Why the engine is not ready.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Health::Ready => None,
            Health::Degraded { reason, .. } | Health::Stopped { reason } => Some(reason),
        }
    }
}

/// Which operation found the store at fault (each clears on its own success).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultSource {
    /// Commits of transitions (and quarantines).
    Commit,
    /// Reads the engine loop needs (due timers, loading executions).
    Read,
}

impl FaultSource {
    fn as_str(self) -> &'static str {
        match self {
            FaultSource::Commit => "writing",
            FaultSource::Read => "reading",
        }
    }
}

/// Publishes [`Health`]: the current faults per source, and whether the engine stopped.
pub struct HealthReporter {
    tx: watch::Sender<Health>,
    clock: Arc<dyn Clock>,
    faults: Mutex<BTreeMap<FaultSource, (String, Timestamp)>>,
}

impl HealthReporter {
    pub fn new(clock: Arc<dyn Clock>) -> Arc<HealthReporter> {
        let (tx, _) = watch::channel(Health::Ready);
        Arc::new(HealthReporter { tx, clock, faults: Mutex::new(BTreeMap::new()) })
    }

    pub fn subscribe(&self) -> watch::Receiver<Health> {
        self.tx.subscribe()
    }

    /// The store failed `source`'s operation with `error`; logged when it starts.
    pub fn fault(&self, source: FaultSource, error: &str) {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.clock.now();
        if !faults.contains_key(&source) {
            tracing::error!(error, "the store failed while {}; retrying until it recovers", source.as_str());
        }
        let since = faults.get(&source).map_or(now, |(_, since)| *since);
        faults.insert(source, (format!("the store failed while {}: {error}", source.as_str()), since));
        self.publish(&faults);
    }

    /// `source`'s operation succeeded: its fault (if any) is over.
    pub fn cleared(&self, source: FaultSource) {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, since)) = faults.remove(&source) {
            let ms = self.clock.now().ms_since(since).max(0) as u64;
            tracing::warn!("the store recovered ({}) after {}", source.as_str(), redrive_core::time::human_duration_ms(ms));
            self.publish(&faults);
        }
    }

    /// The engine stopped for good.
    pub fn stopped(&self, reason: String) {
        self.tx.send_replace(Health::Stopped { reason });
    }

    fn publish(&self, faults: &BTreeMap<FaultSource, (String, Timestamp)>) {
        if matches!(*self.tx.borrow(), Health::Stopped { .. }) {
            return;
        }
        let health = match faults.values().next() {
            None => Health::Ready,
            Some(_) => {
                let reason = faults.values().map(|(r, _)| r.as_str()).collect::<Vec<_>>().join("; ");
                let since = faults.values().map(|(_, s)| *s).min().expect("not empty");
                Health::Degraded { reason, since }
            }
        };
        self.tx.send_replace(health);
    }
}

/// Runs `op` until it succeeds or fails with a non-transient error. While it
/// fails transiently, `source` is at fault (the engine is degraded) and the
/// calls are spaced by a doubling backoff capped at [`STORE_RETRY_MAX_MS`].
/// Returns the result and whether any retry happened.
pub async fn retry_transient<T, F, Fut>(
    health: &HealthReporter,
    source: FaultSource,
    mut op: F,
) -> Result<(T, bool), redrive_store::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, redrive_store::StoreError>>,
{
    let mut delay_ms = STORE_RETRY_MIN_MS;
    let mut retried = false;
    loop {
        match op().await {
            Ok(value) => {
                if retried {
                    health.cleared(source);
                }
                return Ok((value, retried));
            }
            Err(e) if e.is_transient() => {
                health.fault(source, &e.to_string());
                tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
                delay_ms = (delay_ms * 2).min(STORE_RETRY_MAX_MS);
                retried = true;
            }
            Err(e) => return Err(e),
        }
    }
}
