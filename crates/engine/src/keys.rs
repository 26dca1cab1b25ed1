//! [`KeyGate`] (a leaf module): the per-key concurrency slots of an engine
//! (the rule is [`redrive_core::concurrency::KeySlots`], FIFO per key). An
//! attempt task of an action with `concurrency:` waits in [`KeyGate::acquire`]
//! for a [`KeyPermit`] *before* it asks for a fair slot (so a waiting attempt
//! holds no engine slot); dropping the permit — the attempt ended, or its task
//! was aborted — hands the slot to the key's next waiter. A waiter dropped
//! before its turn (its execution stopped) leaves the queue.
//!
//! The slots are memory only: only attempts that run hold them, and an engine
//! that starts has none running, so after a restart the counts rebuild
//! themselves from the attempts that are resumed.
//!
//! [`KeyGate::close`] (the engine drains) turns every waiter away: its attempt
//! never ran, and the driver releases it (`Event::Release`) so a restart runs it
//! as the same attempt.

use redrive_core::concurrency::{KeySlots, KeyView, SlotKey};
use redrive_core::machine::AttemptId;
use redrive_core::time::Timestamp;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// The attempt a waiter stands for.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiter {
    pub execution_id: String,
    pub id: AttemptId,
    pub since: Timestamp,
}

/// An attempt waiting for a slot of its key, as the state views show it.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyWait {
    pub waiter: Waiter,
    pub key: SlotKey,
    /// The key's slots now (`running` = `max` while anyone waits, unless a
    /// new pipeline version lowered `max`).
    pub view: KeyView,
    /// 1 = next to run.
    pub position: usize,
}

/// The gate is closed (the engine drains): the attempt must not run.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed;

#[derive(Default)]
struct State {
    slots: KeySlots<u64>,
    next_ticket: u64,
    /// Waiters not yet granted, by ticket.
    waiting: HashMap<u64, (SlotKey, Waiter, oneshot::Sender<()>)>,
    closed: bool,
}

#[derive(Default)]
pub struct KeyGate {
    state: Mutex<State>,
}

/// One held slot of a key; released when dropped.
pub struct KeyPermit {
    gate: Arc<KeyGate>,
    key: SlotKey,
}

/// Gives up a waiter's place — or its slot, when it was granted meanwhile —
/// unless the wait completed (`rx` taken).
struct WaitGuard<'a> {
    gate: &'a Arc<KeyGate>,
    key: &'a SlotKey,
    ticket: u64,
    rx: Option<oneshot::Receiver<()>>,
}

impl KeyGate {
    pub fn new() -> Arc<KeyGate> {
        Arc::new(KeyGate::default())
    }

    /// Waits for a slot of `key` (`max` as the attempt's action declares it).
    /// `Ok((permit, waited))`; `waited` says it had to queue. Cancel-safe.
    pub async fn acquire(self: &Arc<Self>, key: SlotKey, max: u32, waiter: Waiter) -> Result<(KeyPermit, bool), Closed> {
        let waiting = {
            let mut state = self.lock();
            if state.closed {
                return Err(Closed);
            }
            state.next_ticket += 1;
            let ticket = state.next_ticket;
            let (tx, rx) = oneshot::channel();
            state.waiting.insert(ticket, (key.clone(), waiter, tx));
            let run = state.slots.acquire(key.clone(), max, ticket);
            let waited = !run.contains(&ticket);
            Self::wake(&mut state, run);
            (ticket, rx, waited)
        };
        let (ticket, rx, waited) = waiting;
        let mut guard = WaitGuard { gate: self, key: &key, ticket, rx: Some(rx) };
        let granted = guard.rx.as_mut().expect("set above").await.is_ok();
        guard.rx = None;
        drop(guard);
        if !granted {
            return Err(Closed);
        }
        Ok((KeyPermit { gate: Arc::clone(self), key }, waited))
    }

    /// Turns every waiter away, and every later `acquire` (the engine drains).
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        for (ticket, (key, _, tx)) in std::mem::take(&mut state.waiting) {
            state.slots.cancel(&key, &ticket);
            drop(tx);
        }
    }

    /// The attempts waiting now (of one execution, or all), oldest first.
    pub fn waits(&self, execution_id: Option<&str>) -> Vec<KeyWait> {
        let state = self.lock();
        let mut tickets: Vec<u64> = state.waiting.keys().copied().collect();
        tickets.sort_unstable();
        // Tickets grow with arrival, and each key's queue is in arrival order.
        let mut ahead: HashMap<&SlotKey, usize> = HashMap::new();
        let mut out = Vec::new();
        for ticket in tickets {
            let (key, waiter, _) = &state.waiting[&ticket];
            let position = ahead.entry(key).or_insert(0);
            *position += 1;
            if execution_id.is_none_or(|e| waiter.execution_id == e) {
                let view = state.slots.view(key).unwrap_or(KeyView { running: 0, max: 0, waiting: 0 });
                out.push(KeyWait { waiter: waiter.clone(), key: key.clone(), view, position: *position });
            }
        }
        out
    }

    /// Attempts waiting for a key slot now (for `/metrics`).
    pub fn waiting_total(&self) -> usize {
        self.lock().waiting.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the granted waiters. A waiter that went away meanwhile cannot be
    /// here: its guard took it out of `waiting` (and the slots) under the lock.
    fn wake(state: &mut State, run: Vec<u64>) {
        for ticket in run {
            if let Some((_, _, tx)) = state.waiting.remove(&ticket) {
                let _ = tx.send(());
            }
        }
    }

    fn release(&self, key: &SlotKey) {
        let mut state = self.lock();
        let run = state.slots.release(key);
        Self::wake(&mut state, run);
    }
}

impl Drop for KeyPermit {
    fn drop(&mut self) {
        self.gate.release(&self.key);
    }
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let Some(mut rx) = self.rx.take() else { return };
        let mut state = self.gate.lock();
        if state.waiting.remove(&self.ticket).is_some() {
            state.slots.cancel(self.key, &self.ticket);
            return;
        }
        drop(state);
        // Out of the queue: granted (the grant was sent under the lock, so it is
        // here now) or turned away by `close` (nothing to give back).
        if rx.try_recv().is_ok() {
            self.gate.release(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redrive_core::concurrency::KeyValue;
    use redrive_core::machine::ActionAt;
    use std::time::Duration;

    fn key(v: &str) -> SlotKey {
        SlotKey { pipeline: "p".into(), stage: "S".into(), action: "A".into(), value: KeyValue::Text(v.into()) }
    }

    fn waiter(n: u32) -> Waiter {
        Waiter {
            execution_id: format!("e{n}"),
            id: AttemptId { at: ActionAt { stage: 0, action: 0 }, series: 1, attempt: n },
            since: Timestamp::EPOCH,
        }
    }

    async fn try_acquire(gate: &Arc<KeyGate>, k: &str, n: u32) -> Option<(KeyPermit, bool)> {
        tokio::time::timeout(Duration::from_millis(50), gate.acquire(key(k), 1, waiter(n))).await.ok().map(|r| r.expect("open"))
    }

    #[tokio::test]
    async fn a_dropped_waiter_leaves_the_queue_and_a_dropped_permit_hands_the_slot_on() {
        let gate = KeyGate::new();
        let (first, waited) = try_acquire(&gate, "a", 1).await.expect("a free slot");
        assert!(!waited);
        assert!(try_acquire(&gate, "a", 2).await.is_none(), "full: the timed-out waiter is dropped");
        assert_eq!(gate.waiting_total(), 0, "a dropped waiter leaves the queue");
        let other = try_acquire(&gate, "b", 3).await.expect("another key is free");
        let gate2 = Arc::clone(&gate);
        let queued = tokio::spawn(async move { gate2.acquire(key("a"), 1, waiter(4)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waits = gate.waits(Some("e4"));
        assert_eq!(waits.len(), 1);
        assert_eq!((waits[0].view.running, waits[0].view.max, waits[0].position), (1, 1, 1));
        drop(first);
        let (second, waited) = queued.await.unwrap().expect("granted");
        assert!(waited);
        drop((second, other));
        assert!(try_acquire(&gate, "a", 5).await.is_some(), "every slot came back");
    }

    #[tokio::test]
    async fn closing_turns_waiters_away() {
        let gate = KeyGate::new();
        let held = try_acquire(&gate, "a", 1).await.expect("free");
        let gate2 = Arc::clone(&gate);
        let queued = tokio::spawn(async move { gate2.acquire(key("a"), 1, waiter(2)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        gate.close();
        assert_eq!(queued.await.unwrap().err(), Some(Closed));
        assert_eq!(gate.acquire(key("b"), 1, waiter(3)).await.err(), Some(Closed));
        drop(held);
        assert_eq!(gate.waiting_total(), 0);
    }
}
