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

/// How long due timers of functions nobody registered are left alone.
const UNREGISTERED_BACKOFF_MS: u64 = 5_000;

#[derive(Debug, Default)]
pub(super) struct TimerState {
    /// The earliest due time known: read from the store, or armed by a commit
    /// since (`None`: no timer known).
    pub next_due: Option<Timestamp>,
    /// Due timers of functions nobody registered: no sweep starts before this.
    pub backoff_until: Option<Timestamp>,
    /// Where the next poll continues (the last timer of a full poll): a sweep
    /// pages through every due timer, so due timers nobody can fire yet never
    /// stand in front of the others. `None`: the next poll starts a new sweep.
    cursor: Option<TimerRecord>,
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
        let backoff = self.timers.backoff_until.filter(|_| self.timers.cursor.is_none());
        let at = backoff.map_or(due, |b| b.max(due));
        Some(self.clock.sleep_until(at))
    }

    /// Starts reading the due timers if one is due and nothing stands in the way.
    pub(super) fn poll_timers_if_due(&mut self, now: Timestamp) {
        let t = &self.timers;
        let backed_off = t.cursor.is_none() && t.backoff_until.is_some_and(|b| b > now);
        let due = t.next_due.is_some_and(|d| d <= now) && !backed_off;
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
        self.timers.cursor = (due.len() >= self.config.timer_poll_limit).then(|| due.last().cloned()).flatten();
        for t in due {
            if batch.pending.get(&t.execution_id).is_some_and(|p| p.timers.contains_key(&t.key)) {
                continue; // already handled in this batch
            }
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

    /// Due timers of a function nobody registered wait a while before the next poll.
    pub(super) fn back_off_timers(&mut self, now: Timestamp) {
        self.timers.backoff_until = Some(now.plus_ms(UNREGISTERED_BACKOFF_MS));
    }

    /// Reads the earliest timer's due time on a task. Until it answers, only
    /// timers armed meanwhile are known.
    pub(super) fn refresh_next_timer(&mut self) {
        if self.timers.refreshing {
            return;
        }
        self.timers.refreshing = true;
        self.timers.next_due = None;
        let (store, tx) = (self.store.clone(), self.own_tx.clone());
        tokio::spawn(async move {
            let due = store.next_timer_due().await;
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
        self.timers.armed(self.clock.now().plus_ms(READ_RETRY_MS));
    }
}
