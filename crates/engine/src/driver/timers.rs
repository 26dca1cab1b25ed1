//! Durable timers in the loop. Timers are store rows; the loop keeps only the
//! earliest due time ([`TimerState::next_due`]) and sleeps on its clock until
//! then. Both reads — the due timers, and afterwards the next due time — run on
//! tasks and come back as messages, so a slow store never holds up a batch.
//!
//! Polls run while commits are in flight and while fired timers wait for their
//! executions' reads: every timer handed to the machine is remembered with the
//! batch that clears it ([`TimerState::in_flight`]) until that batch is
//! durable, and a poll that began before then passes over it — so a timer is
//! never fired twice, and the store's copy of a timer a commit in flight clears
//! is never taken for a new one. A full page is followed by the next one at
//! once (up to [`MAX_PARKED_TIMERS`] waiting for reads); a sweep that met only
//! timers in flight waits for the next acknowledgement. The in-memory state
//! machine decides whether a timer it is handed still means anything.
//!
//! Timers due within the read-ahead window are looked at before they are due:
//! their executions are read into memory, and the timers found fire from
//! memory at their due time ([`Driver::fire_timers_ahead`]), handed to the
//! machine like a poll's (see [`super::ahead`]).

use super::ahead::Look;
use super::load::{Found, Need, READ_RETRY_MS};
use super::{Batch, Driver, Msg, functions};
use crate::clock::Sleep;
use crate::health::FaultSource;
use redrive_core::time::Timestamp;
use redrive_store::{Store, StoreError, TimerRecord};
use std::collections::{HashMap, HashSet};

/// Executions of unregistered functions remembered at most (see
/// [`TimerState::unregistered`]).
const MAX_UNREGISTERED_REMEMBERED: usize = 100_000;

/// Fired timers waiting for their executions' reads, at most, before polls
/// pause (each holds a parked message and a read).
pub(super) const MAX_PARKED_TIMERS: usize = 10_000;

/// The batch a parked timer will be handled in is not known yet.
const PARKED: u64 = u64::MAX;

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
    /// Timers handed to the machine whose clearing batch may not be durable yet:
    /// (execution id, key) → the sequence number of the batch that handled it
    /// ([`PARKED`] while it waits for its execution's read).
    in_flight: HashMap<(String, String), u64>,
    /// Batches submitted to the store so far; the batch being built is the next.
    batches_submitted: u64,
    /// Batches acknowledged (durable) so far: batches `1..=batches_acked`.
    batches_acked: u64,
    /// `batches_acked` when the poll under way began: what it read includes
    /// every batch up to it, and maybe later ones.
    poll_floor: u64,
    /// The last sweep ended on timers in flight only: poll again after the next
    /// acknowledgement (or a parked timer's read), not in a loop before it.
    wait_for_ack: bool,
}

impl TimerState {
    /// A commit set a timer due at `due`.
    pub fn armed(&mut self, due: Timestamp) {
        self.next_due = Some(self.next_due.map_or(due, |d| d.min(due)));
    }

    fn busy(&self) -> bool {
        self.polling || self.refreshing || self.parked >= MAX_PARKED_TIMERS || self.wait_for_ack
    }

    /// The batch being built was handed to the store (`submitted`) or had
    /// nothing to write — then it cleared no timer and what it handled is forgotten.
    pub fn batch_done(&mut self, submitted: bool) {
        if submitted {
            self.batches_submitted += 1;
        } else {
            let this = self.batches_submitted + 1;
            self.in_flight.retain(|_, seq| *seq != this);
        }
    }

    /// The oldest submitted batch is durable.
    pub fn batch_acknowledged(&mut self) {
        self.batches_acked += 1;
        debug_assert!(self.batches_acked <= self.batches_submitted);
        self.wait_for_ack = false;
    }

    /// Whether a poll that began at `poll_floor` must pass over this timer: it
    /// was handled in a batch that was not durable when the poll began.
    fn in_flight_at_poll(&self, t: &TimerRecord) -> bool {
        self.in_flight.get(&(t.execution_id.clone(), t.key.clone())).is_some_and(|seq| *seq > self.poll_floor)
    }
}

impl<S: Store> Driver<S> {
    /// What the loop sleeps on for timers: until the earliest is due (`None`:
    /// nothing to wake for now — no timer, a read under way, too many fired
    /// timers waiting for reads, or a sweep waiting for an acknowledgement).
    pub(super) fn timer_wake(&self) -> Option<Sleep> {
        if self.draining.is_some() {
            return None;
        }
        let poll = self.timers.next_due.filter(|_| !self.timers.busy());
        let look = self.read_ahead.wake_at(self.timers.next_due);
        let at = poll.into_iter().chain(look).chain(self.read_ahead.next_scheduled()).min()?;
        Some(self.clock.sleep_until(at))
    }

    /// Starts reading the due timers if one is due and nothing stands in the way.
    pub(super) fn poll_timers_if_due(&mut self, now: Timestamp) {
        let t = &self.timers;
        let due = t.next_due.is_some_and(|d| d <= now);
        if !due || t.busy() || self.draining.is_some() {
            return;
        }
        // What the poll finds is handled; a full page is followed by the next at
        // once; what a sweep leaves (timers armed meanwhile) is read after its
        // batch is durable. Timers handled in batches durable by now are
        // forgotten: this poll reads them cleared.
        let acked = self.timers.batches_acked;
        self.timers.in_flight.retain(|_, seq| *seq > acked);
        self.timers.poll_floor = acked;
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
        // A full poll may have left due timers behind it: the next one continues
        // there, at once.
        let full = due.len() >= self.config.timer_poll_limit;
        self.timers.last_read = due.last().cloned().or(self.timers.last_read.take());
        self.timers.cursor = if full { self.timers.last_read.clone() } else { None };
        if full {
            self.timers.armed(now);
        } else {
            self.timers.swept_to = self.timers.last_read.take();
        }
        let mut passed_over = false;
        for t in due {
            if self.timers.unregistered.contains(&t.execution_id) {
                continue; // its function is not registered here: it waits
            }
            if self.timers.in_flight_at_poll(&t) {
                passed_over = true;
                continue; // handled in a batch not durable when the poll began
            }
            if batch.pending.get(&t.execution_id).is_some_and(|p| p.timers.contains_key(&t.key)) {
                continue; // already handled in this batch
            }
            self.recorder.timer_fired(now.ms_since(t.due_at));
            self.fire_timer(t, now, batch);
        }
        // A sweep that ended on timers in flight: the next one after an acknowledgement.
        self.timers.wait_for_ack = passed_over && !full;
    }

    /// Fires one timer (pipeline or function, by its key), remembering it until
    /// the batch that handles it is durable.
    pub(super) fn fire_timer(&mut self, t: TimerRecord, now: Timestamp, batch: &mut Batch) {
        self.read_ahead.forget(&t.execution_id);
        let key = (t.execution_id.clone(), t.key.clone());
        let parked_before = self.timers.parked;
        match functions::timer_index(&t.key) {
            Some(index) => self.function_timer(t, index, now, batch),
            None => self.pipeline_timer(t, now, batch),
        }
        let seq = if self.timers.parked > parked_before { PARKED } else { self.timers.batches_submitted + 1 };
        self.timers.in_flight.insert(key, seq);
    }

    /// Starts a look at the timers due within the read-ahead window if one is
    /// due (see [`super::ahead`]).
    pub(super) fn look_ahead_if_due(&mut self, now: Timestamp) {
        if self.draining.is_some() {
            return;
        }
        let Some(look) = self.read_ahead.start(now, self.timers.next_due) else { return };
        let (store, tx) = (self.store.clone(), self.own_tx.clone());
        tokio::spawn(async move {
            let found = store.due_timers_after(look.until, &look.after, look.limit).await;
            let _ = tx.send(Msg::TimersAhead(look, found));
        });
    }

    /// Reads the executions of the timers a look found, unless the loop holds
    /// or reads them already. A failed look only costs the head start: the
    /// regular poll reads what it needs when the timers are due.
    pub(super) fn timers_ahead(&mut self, look: Look, found: Result<Vec<TimerRecord>, StoreError>, now: Timestamp) {
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, "could not look at the timers ahead");
                return self.read_ahead.failed(look, now, READ_RETRY_MS);
            }
        };
        let (live, parked, given_up, unregistered) = (&self.live, &self.parked, &self.given_up, &self.timers.unregistered);
        let held = |id: &str| {
            live.contains_key(id)
                || given_up.contains_key(id)
                || unregistered.contains(id)
                || parked.contains_key(&Need::Execution(id.to_string()))
        };
        for id in self.read_ahead.found(&look, &found, now, held) {
            self.park(Need::Execution(id.clone()), Msg::ReadAhead(id));
        }
    }

    /// Fires the timers read ahead that are due by now, as a poll would (see
    /// [`Driver::timers_due`]) but without waiting for one: their executions
    /// are in memory (or being read). One handled already — by a poll whose
    /// batch may not be durable, or in this batch — is left alone.
    pub(super) fn fire_timers_ahead(&mut self, now: Timestamp, batch: &mut Batch) {
        if self.draining.is_some() {
            return;
        }
        for t in self.read_ahead.due(now) {
            let handled = self.timers.in_flight.contains_key(&(t.execution_id.clone(), t.key.clone()))
                || batch.pending.get(&t.execution_id).is_some_and(|p| p.timers.contains_key(&t.key));
            if handled {
                continue;
            }
            batch.timers_fired = true;
            self.recorder.timer_fired(now.ms_since(t.due_at));
            self.fire_timer(t, now, batch);
        }
    }

    /// An execution read ahead of its timer is here: installed, it waits in
    /// memory for its timer. One that cannot be installed is left to its timer.
    pub(super) fn read_ahead_loaded(&mut self, id: String, now: Timestamp, batch: &mut Batch) {
        match self.find(&id, now, batch) {
            Found::Live => {}
            Found::Park(need @ Need::Pipeline(..)) => self.park(need, Msg::ReadAhead(id)),
            Found::Park(_) | Found::Err(_) => self.read_ahead.forget(&id),
        }
    }

    /// A timer message parks (`true`) or is handled again after its read (`false`).
    pub(super) fn timer_parked(&mut self, parked: bool) {
        if parked {
            self.timers.parked += 1;
        } else {
            self.timers.parked = self.timers.parked.saturating_sub(1);
            self.timers.wait_for_ack = false;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(id: &str) -> TimerRecord {
        TimerRecord { execution_id: id.into(), key: "S/A".into(), due_at: Timestamp::from_unix_ms(0) }
    }

    /// What a poll does when it begins (see `poll_timers_if_due`).
    fn begin_poll(t: &mut TimerState) {
        let acked = t.batches_acked;
        t.in_flight.retain(|_, seq| *seq > acked);
        t.poll_floor = acked;
    }

    fn handle(t: &mut TimerState, id: &str, seq: u64) {
        t.in_flight.insert((id.into(), "S/A".into()), seq);
    }

    #[test]
    fn a_timer_is_passed_over_until_the_batch_that_handled_it_is_durable_before_the_poll() {
        let mut t = TimerState::default();
        handle(&mut t, "a", 1); // handled in batch 1
        t.batch_done(true);
        begin_poll(&mut t);
        assert!(t.in_flight_at_poll(&timer("a")), "batch 1 is in flight: the store may still hold the timer");
        t.batch_acknowledged();
        assert!(t.in_flight_at_poll(&timer("a")), "acknowledged after the poll began: what it read may predate it");
        begin_poll(&mut t);
        assert!(!t.in_flight_at_poll(&timer("a")), "durable before this poll began: a timer it reads is a new one");
        assert!(t.in_flight.is_empty(), "forgotten once durable");
    }

    #[test]
    fn a_parked_timer_is_passed_over_until_it_is_handled() {
        let mut t = TimerState::default();
        handle(&mut t, "a", PARKED);
        for _ in 0..3 {
            t.batch_done(true);
            t.batch_acknowledged();
        }
        begin_poll(&mut t);
        assert!(t.in_flight_at_poll(&timer("a")), "still waiting for its execution's read");
    }

    #[test]
    fn a_batch_with_nothing_to_write_forgets_what_it_handled() {
        let mut t = TimerState::default();
        handle(&mut t, "a", 1);
        t.batch_done(false);
        begin_poll(&mut t);
        assert!(!t.in_flight_at_poll(&timer("a")), "nothing clears it: a poll must be able to fire it again");
    }

    #[test]
    fn an_acknowledgement_or_a_read_ends_a_wait() {
        let mut t = TimerState { wait_for_ack: true, ..TimerState::default() };
        assert!(t.busy());
        t.batch_done(true);
        t.batch_acknowledged();
        assert!(!t.busy());
    }
}
