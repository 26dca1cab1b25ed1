//! [`FairSlots`]: the attempt slots of an engine, shared fairly between
//! pipelines (the rule is [`redrive_core::fair::pick_next`]). An attempt task
//! waits in [`FairSlots::acquire`] for a [`SlotPermit`]; dropping the permit (the
//! attempt ended, or its task was aborted) frees the slot for the next waiter.

use redrive_core::fair::{Waiting, pick_next};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

pub struct FairSlots {
    state: Mutex<State>,
}

struct State {
    capacity: usize,
    per_key_max: usize,
    running_total: usize,
    running: HashMap<String, usize>,
    /// Per pipeline, its waiters in arrival order: (arrival number, where to send the permit).
    waiting: BTreeMap<String, VecDeque<(u64, oneshot::Sender<SlotPermit>)>>,
    arrivals: u64,
}

/// One held slot; released when dropped.
pub struct SlotPermit {
    slots: Arc<FairSlots>,
    key: String,
}

impl FairSlots {
    /// `capacity` slots in all; one pipeline holds at most `per_key_max` (at least 1).
    pub fn new(capacity: usize, per_key_max: usize) -> Arc<FairSlots> {
        let state = State {
            capacity: capacity.max(1),
            per_key_max: per_key_max.clamp(1, capacity.max(1)),
            running_total: 0,
            running: HashMap::new(),
            waiting: BTreeMap::new(),
            arrivals: 0,
        };
        Arc::new(FairSlots { state: Mutex::new(state) })
    }

    /// Waits for a slot for an attempt of pipeline `key`. Cancel-safe: a waiter
    /// dropped before or after its grant gives the slot back.
    pub async fn acquire(self: &Arc<Self>, key: &str) -> SlotPermit {
        let rx = {
            let mut state = self.lock();
            let (tx, rx) = oneshot::channel();
            state.arrivals += 1;
            let arrival = state.arrivals;
            state.waiting.entry(key.to_string()).or_default().push_back((arrival, tx));
            rx
        };
        self.grant();
        rx.await.expect("a waiter's sender is only dropped after sending it a permit")
    }

    /// Slots in use now (for stats and tests).
    pub fn in_use(&self) -> usize {
        self.lock().running_total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands free slots to waiters, by the fairness rule.
    fn grant(self: &Arc<Self>) {
        loop {
            let (key, tx) = {
                let mut state = self.lock();
                if state.running_total >= state.capacity {
                    return;
                }
                let keys: Vec<&String> = state.waiting.keys().collect();
                let candidates: Vec<Waiting> = keys
                    .iter()
                    .map(|k| Waiting {
                        running: state.running.get(*k).copied().unwrap_or(0),
                        oldest: state.waiting[*k].front().map_or(u64::MAX, |(a, _)| *a),
                    })
                    .collect();
                let Some(i) = pick_next(&candidates, state.per_key_max) else { return };
                let key = keys[i].clone();
                let queue = state.waiting.get_mut(&key).expect("picked from the map");
                let (_, tx) = queue.pop_front().expect("waiting queues are never empty");
                if queue.is_empty() {
                    state.waiting.remove(&key);
                }
                state.running_total += 1;
                *state.running.entry(key.clone()).or_insert(0) += 1;
                (key, tx)
            };
            // Outside the lock: a waiter that went away returns the permit here,
            // and dropping it releases the slot (which takes the lock).
            let permit = SlotPermit { slots: Arc::clone(self), key };
            drop(tx.send(permit));
        }
    }

    fn release(self: &Arc<Self>, key: &str) {
        {
            let mut state = self.lock();
            state.running_total -= 1;
            if let Some(n) = state.running.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    state.running.remove(key);
                }
            }
        }
        self.grant();
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        self.slots.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn try_acquire(slots: &Arc<FairSlots>, key: &str) -> Option<SlotPermit> {
        tokio::time::timeout(Duration::from_millis(50), slots.acquire(key)).await.ok()
    }

    #[tokio::test]
    async fn one_pipeline_cannot_take_every_slot() {
        let slots = FairSlots::new(4, 3);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(try_acquire(&slots, "hog").await.expect("under the cap"));
        }
        assert!(try_acquire(&slots, "hog").await.is_none(), "the hog is at its cap of 3");
        let other = try_acquire(&slots, "other").await.expect("a slot is left for another pipeline");
        assert_eq!(slots.in_use(), 4);
        drop(other);
        drop(held);
        assert_eq!(slots.in_use(), 0, "dropped permits (and cancelled waiters) give their slots back");
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_the_pipeline_holding_fewest() {
        let slots = FairSlots::new(2, 2);
        let a1 = slots.acquire("a").await;
        let _a2 = slots.acquire("a").await;
        let waiting_a = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire("a").await }
        });
        tokio::task::yield_now().await;
        let waiting_b = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire("b").await }
        });
        tokio::task::yield_now().await;
        drop(a1);
        let b = tokio::time::timeout(Duration::from_secs(5), waiting_b).await.expect("b is served first").unwrap();
        assert!(!waiting_a.is_finished(), "a waits though it came first: it holds more");
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), waiting_a).await.expect("then a").unwrap();
    }
}
