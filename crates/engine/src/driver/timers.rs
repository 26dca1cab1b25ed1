//! Durable timers in the loop. Timers are store rows; the loop keeps only the
//! earliest due time ([`TimerState::next_due`]) and sleeps on its clock until
//! then. Both reads — the due timers, and afterwards the next due time — run on
//! tasks and come back as messages, so a slow store never holds up a batch.
//!
//! Due timers are read only while no commit is in flight, so a timer a commit
//! clears is never read again before that commit is durable; and the in-memory
//! state machine decides whether a timer it is handed still means anything.

use super::load::READ_RETRY_MS;
use super::{Batch, Driver, Msg, functions};
use crate::clock::Sleep;
use crate::health::FaultSource;
use redrive_core::time::Timestamp;
use redrive_store::{Store, StoreError, TimerRecord};
use std::collections::HashSet;

/// Executions of unregistered functions remembered at most (see
/// [`TimerState::unregistered`]).
const MAX_UNREGISTERED_REMEMBERED: usize = 100_000;

#[derive(Debug, Default)]
pub(super) struct TimerState {
    /// The earliest due time known: read from the store, or armed by a commit
    /// since (`None`: no timer known).
    pub next_due: Option<Timestamp>,
    /// Where the next poll continues (the last timer of a full poll): a sweep
    /// pages through every due timer, so due timers nobody can fire yet never
    /// stand in front of the others. `None`: the next poll starts a new sweep.
    cursor: Option<TimerRecord>,
    /// The last timer the current sweep read.
    last_read: Option<TimerRecord>,
    /// The last timer of the sweep that just ended: due timers up to it that
    /// are still there are ones nobody can fire yet, so the next due time is
    /// read *after* it (see [`Driver::refresh_next_timer`]).
    swept_to: Option<TimerRecord>,
    /// Executions of functions nobody registered in this process, whose due
    /// timers are passed over without reading them until a function is registered.
    unregistered: HashSet<String>,
    /// A read of the due timers is under way.
    polling: bool,
    /// A read of the next due time is under way.
    refreshing: bool,
    /// Fired timers parked until their execution is read.
    parked: usize,
}

impl TimerState {
    /// A commit set a timer due at `due`.
    pub fn armed(&mut self, due: Timestamp) {
        self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
    }

    fn busy(&self) -> bool {
        self.polling || self.refreshing || self.parked > 0
    }
}

impl<S: Store> Driver<S> {
    /// What the loop sleeps on for timers: until the earliest is due (`None`:
    /// nothing to wake for now — no timer, a read under way, or a commit in
    /// flight, whose acknowledgement wakes the loop anyway).
    pub(super) fn timer_wake(&self) -> Option<Sleep> {
        if self.timers.busy() || !self.submitted.is_empty() || self.draining.is_some() {
            return None;
        }
        let due = self.timers.next_due?;
        Some(self.clock.sleep_until(due))
    }

    /// Starts reading the due timers if one is due and nothing stands in the way.
    pub(super) fn poll_timers_if_due(&mut self, now: Timestamp) {
        let t = &self.timers;
        let due = t.next_due.is_some_and(|d| d <= now);
        if !due || t.busy() || !self.submitted.is_empty() || self.draining.is_some() {
            return;
        }
        // What the poll finds is handled; what it leaves (the poll limit, or
        // timers armed meanwhile) is read again once the batch is durable. The
        // timers it fires are cleared only by that commit: keeping `next_due`
        // would poll again before it lands and fire them twice.
        self.timers.polling = true;
        self.timers.next_due = None;
        let (store, tx, limit) = (self.store.clone(), self.own_tx.clone(), self.config.timer_poll_limit);
        let after = self.timers.cursor.clone();
        tokio::spawn(async move {
            let due = match &after {
                Some(after) => store.due_timers_after(now, after, limit).await,
                None => store.due_timers(now, limit).await,
            };
            let _ = tx.send(Msg::TimersDue(due));
        });
    }

    /// Fires the timers a poll found. Once what they changed is durable, the
    /// next due time is read again (see `acknowledge_oldest`).
    pub(super) fn timers_due(&mut self, due: Result<Vec<TimerRecord>, StoreError>, now: Timestamp, batch: &mut Batch) {
        self.timers.polling = false;
        let due = match due {
            Ok(due) => due,
            Err(e) => return self.timer_read_fault(&e),
        };
        self.health.cleared(FaultSource::Read);
        batch.timers_fired = true;
        // A full poll may have left due timers behind it: the next one continues there.
        let full = due.len() >= self.config.timer_poll_limit;
        self.timers.last_read = due.last().cloned().or(self.timers.last_read.take());
        self.timers.cursor = if full { self.timers.last_read.clone() } else { None };
        if !full {
            self.timers.swept_to = self.timers.last_read.take();
        }
        for t in due {
            if self.timers.unregistered.contains(&t.execution_id) {
                continue; // its function is not registered here: it waits
            }
            if batch.pending.get(&t.execution_id).is_some_and(|p| p.timers.contains_key(&t.key)) {
                continue; // already handled in this batch
            }
            self.recorder.timer_fired(now.ms_since(t.due_at));
            self.fire_timer(t, now, batch);
        }
    }

    /// Fires one timer (pipeline or function, by its key).
    pub(super) fn fire_timer(&mut self, t: TimerRecord, now: Timestamp, batch: &mut Batch) {
        match functions::timer_index(&t.key) {
            Some(index) => self.function_timer(t, index, now, batch),
            None => self.pipeline_timer(t, now, batch),
        }
    }

    /// A timer message parks (`true`) or is handled again after its read (`false`).
    pub(super) fn timer_parked(&mut self, parked: bool) {
        if parked {
            self.timers.parked += 1;
        } else {
            self.timers.parked = self.timers.parked.saturating_sub(1);
        }
    }

    /// A due timer of a function nobody registered: its execution's timers are
    /// passed over until a function is registered.
    pub(super) fn unregistered_timer(&mut self, execution_id: String) {
        // Past the cap, such timers are read again on each sweep: slower, still right.
        if self.timers.unregistered.len() < MAX_UNREGISTERED_REMEMBERED {
            self.timers.unregistered.insert(execution_id);
        }
    }

    /// A function was registered: timers passed over may fire now.
    pub(super) fn function_registered(&mut self, now: Timestamp) {
        self.timers.unregistered.clear();
        self.timers.armed(now);
    }

    /// Reads the earliest timer's due time on a task. Until it answers, only
    /// timers armed meanwhile are known.
    pub(super) fn refresh_next_timer(&mut self) {
        if self.timers.refreshing {
            return;
        }
        self.timers.refreshing = true;
        // After a sweep that passed over timers nobody can fire, what is due up to
        // its end is those: the next due time is the first timer after it (and
        // what commits armed since the poll, which `next_due` keeps).
        let after = self.timers.swept_to.take().filter(|_| !self.timers.unregistered.is_empty());
        if after.is_none() {
            self.timers.next_due = None;
        }
        let (store, tx) = (self.store.clone(), self.own_tx.clone());
        tokio::spawn(async move {
            let due = match after {
                Some(after) => {
                    store.due_timers_after(Timestamp::from_unix_ms(i64::MAX), &after, 1).await.map(|t| t.first().map(|t| t.due_at))
                }
                None => store.next_timer_due().await,
            };
            let _ = tx.send(Msg::NextTimerDue(due));
        });
    }

    pub(super) fn next_timer_read(&mut self, due: Result<Option<Timestamp>, StoreError>) {
        self.timers.refreshing = false;
        match due {
            Ok(due) => {
                self.health.cleared(FaultSource::Read);
                if let Some(due) = due {
                    self.timers.armed(due);
                }
            }
            Err(e) => self.timer_read_fault(&e),
        }
    }

    /// A timer read failed: the engine is degraded for reads, and polls again
    /// in [`READ_RETRY_MS`] (a poll that finds nothing reads the next due time).
    fn timer_read_fault(&mut self, e: &StoreError) {
        self.health.fault(FaultSource::Read, &e.to_string());
        self.timers.cursor = None;
        self.timers.last_read = None;
        self.timers.armed(self.clock.now().plus_ms(READ_RETRY_MS));
    }
}
