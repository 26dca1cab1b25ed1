//! Look-ahead reads of timers' executions: the pure decisions.
//!
//! An execution that waits only on a distant timer leaves memory, so a timer
//! that fires needs its execution read back before its attempt can start. To
//! start it at its due time instead, the loop looks at the timers due within
//! the next [`ReadAhead::window_ms`] and reads their executions *before* they
//! are due, and keeps the timers it found: at a timer's due time the loop fires
//! it from memory ([`ReadAhead::due`]) — its execution is there, so the attempt
//! starts in that batch, without waiting for a store poll (whose rhythm follows
//! the commits in flight). Such a timer is fired like one a poll found (see
//! `driver::timers`): never before its due time, and a poll that reads it
//! while the batch that fired it is not durable passes over it, so it fires
//! once. One whose execution left memory, or whose timer fired otherwise, is
//! dropped: the regular poll still has it. At most [`ReadAhead::max_executions`]
//! executions read ahead wait in memory for their timers at once.
//!
//! [`ReadAhead`] decides when to look, from where, how many, which of the
//! timers found to read, and which are due; the loop does the reads and fires.

use redrive_core::time::Timestamp;
use redrive_store::TimerRecord;
use std::collections::{BTreeSet, HashMap};

/// Timers read per look at most (one store page).
pub(super) const MAX_TIMERS_PER_LOOK: usize = 1000;

/// A look that found the window exhausted is followed by the next after this
/// much time (timers come into the window as the clock moves).
const LOOK_EVERY_MS: u64 = 100;

/// A look continues from where the last one stopped while that is at most this
/// far behind now (the loop fell behind: the timers that fell due meanwhile
/// are read ahead too, and fire from memory as soon as they are read); further
/// behind, it starts at now and leaves those to the regular poll.
const MAX_CATCH_UP_MS: u64 = 2_000;

/// Executions read ahead whose timer is this far past due without firing are
/// no longer counted against the budget (their timer went another way).
const FORGET_AFTER_DUE_MS: u64 = 60_000;

/// What a look reads: the timers due by `until`, after `after`, at most `limit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Look {
    pub until: Timestamp,
    pub after: TimerRecord,
    pub limit: usize,
}

#[derive(Debug)]
pub(super) struct ReadAhead {
    /// How far ahead of now timers' executions are read (0: never).
    window_ms: u64,
    /// Executions read ahead and waiting for their timers, at most.
    max_executions: usize,
    /// Executions read ahead (or being read) whose timer has not fired yet → that timer's due time.
    held: HashMap<String, Timestamp>,
    /// The timers found of executions read ahead, by due time (those of
    /// executions no longer held are dropped when due).
    scheduled: BTreeSet<(Timestamp, String, String)>,
    /// The last timer a look read: the next look continues after it.
    cursor: Option<TimerRecord>,
    /// A look is under way.
    looking: bool,
    /// The next look is not before this (`None`: whenever a timer is near).
    next_look_at: Option<Timestamp>,
}

impl ReadAhead {
    pub fn new(window_ms: u64, max_executions: usize) -> ReadAhead {
        ReadAhead {
            window_ms,
            max_executions,
            held: HashMap::new(),
            scheduled: BTreeSet::new(),
            cursor: None,
            looking: false,
            next_look_at: None,
        }
    }

    fn enabled(&self) -> bool {
        self.window_ms > 0 && self.max_executions > 0
    }

    fn room(&self) -> usize {
        self.max_executions.saturating_sub(self.held.len())
    }

    /// When a look should start, given the earliest due time known: once that
    /// timer is in the window, and not before the last look allows. `None`:
    /// nothing to look for (disabled, a look under way, no room, no timer).
    pub fn wake_at(&self, next_due: Option<Timestamp>) -> Option<Timestamp> {
        if !self.enabled() || self.looking || self.room() == 0 {
            return None;
        }
        let window = i64::try_from(self.window_ms).unwrap_or(i64::MAX);
        let in_window_at = Timestamp::from_unix_ms(next_due?.unix_ms().saturating_sub(window));
        Some(self.next_look_at.map_or(in_window_at, |at| at.max(in_window_at)))
    }

    /// The look to start now, if one is due (see [`ReadAhead::wake_at`]): from
    /// where the last look stopped, unless that is more than
    /// [`MAX_CATCH_UP_MS`] behind `now` (then from `now`: older timers are the
    /// regular poll's).
    pub fn start(&mut self, now: Timestamp, next_due: Option<Timestamp>) -> Option<Look> {
        if self.room() == 0 {
            self.forget_stale(now);
        }
        if self.wake_at(next_due)? > now {
            return None;
        }
        let from_now = TimerRecord { execution_id: String::new(), key: String::new(), due_at: now };
        let after = match self.cursor.take() {
            Some(c) if c.due_at.plus_ms(MAX_CATCH_UP_MS) > now => c,
            _ => from_now,
        };
        self.looking = true;
        Some(Look { until: now.plus_ms(self.window_ms), after, limit: self.room().min(MAX_TIMERS_PER_LOOK) })
    }

    /// What a look found (`look` asked for it): the executions to read now,
    /// each once, leaving out those `in_memory_or_read` says the loop holds or
    /// is reading already (their timers are the poll's). The timers of the
    /// executions read ahead are kept to fire when due. A full page is
    /// followed by the next at once.
    pub fn found(&mut self, look: &Look, timers: &[TimerRecord], now: Timestamp, in_memory_or_read: impl Fn(&str) -> bool) -> Vec<String> {
        self.looking = false;
        let full = timers.len() >= look.limit;
        self.cursor = Some(timers.last().cloned().unwrap_or_else(|| look.after.clone()));
        self.next_look_at = Some(if full { now } else { now.plus_ms(LOOK_EVERY_MS) });
        let mut read = Vec::new();
        for t in timers {
            if !self.held.contains_key(&t.execution_id) {
                if in_memory_or_read(&t.execution_id) {
                    continue;
                }
                self.held.insert(t.execution_id.clone(), t.due_at);
                read.push(t.execution_id.clone());
            }
            self.scheduled.insert((t.due_at, t.execution_id.clone(), t.key.clone()));
        }
        read
    }

    /// The earliest due time of a timer kept to fire.
    pub fn next_scheduled(&self) -> Option<Timestamp> {
        self.scheduled.first().map(|(due, _, _)| *due)
    }

    /// The timers kept that are due by `now`, earliest first, of executions
    /// still held (read ahead, their timers not fired yet).
    pub fn due(&mut self, now: Timestamp) -> Vec<TimerRecord> {
        let mut due = Vec::new();
        while self.scheduled.first().is_some_and(|(at, _, _)| *at <= now) {
            let (due_at, execution_id, key) = self.scheduled.pop_first().expect("checked above");
            if self.held.contains_key(&execution_id) {
                due.push(TimerRecord { execution_id, key, due_at });
            }
        }
        due
    }

    /// A look failed: the next one after `retry_ms`, from where this one began.
    pub fn failed(&mut self, look: Look, now: Timestamp, retry_ms: u64) {
        self.looking = false;
        self.cursor = Some(look.after);
        self.next_look_at = Some(now.plus_ms(retry_ms));
    }

    /// An execution's timer fired, or it left memory, or its read-ahead came to
    /// nothing: it no longer counts against the budget.
    pub fn forget(&mut self, execution_id: &str) {
        if !self.held.is_empty() {
            self.held.remove(execution_id);
        }
    }

    /// Executions read ahead whose timer is long past due (it was cleared some
    /// other way) stop counting, so the budget cannot leak.
    fn forget_stale(&mut self, now: Timestamp) {
        self.held.retain(|_, due| due.plus_ms(FORGET_AFTER_DUE_MS) > now);
    }

    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_ms(ms)
    }

    fn timer(id: &str, due: i64) -> TimerRecord {
        TimerRecord { execution_id: id.into(), key: "S/A".into(), due_at: at(due) }
    }

    #[test]
    fn a_look_starts_once_the_earliest_timer_is_in_the_window() {
        let mut r = ReadAhead::new(1000, 10);
        assert_eq!(r.wake_at(Some(at(5000))), Some(at(4000)));
        assert_eq!(r.start(at(3999), Some(at(5000))), None, "the timer is not in the window yet");
        let look = r.start(at(4000), Some(at(5000))).expect("in the window");
        assert_eq!(look.until, at(5000));
        assert_eq!(look.after.due_at, at(4000), "timers due by now are the regular poll's");
        assert_eq!(look.limit, 10);
        assert_eq!(r.wake_at(Some(at(5000))), None, "one look at a time");
        assert_eq!(ReadAhead::new(1000, 10).wake_at(None), None, "no timer, nothing to look for");
        assert_eq!(ReadAhead::new(0, 10).wake_at(Some(at(0))), None, "a window of 0 turns it off");
    }

    #[test]
    fn each_execution_is_read_once_and_what_the_loop_holds_is_left_out() {
        let mut r = ReadAhead::new(1000, 10);
        let look = r.start(at(0), Some(at(500))).unwrap();
        let found = [timer("a", 500), timer("a", 600), timer("live", 700), timer("b", 800)];
        assert_eq!(r.found(&look, &found, at(0), |id| id == "live"), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(r.held(), 2);
        // The next look continues after the last timer found, not from the start.
        let look = r.start(at(100), Some(at(500))).unwrap();
        assert_eq!(look.after, timer("b", 800));
        assert_eq!(r.found(&look, &[timer("a", 900), timer("c", 900)], at(100), |_| false), vec!["c".to_string()]);
        r.forget("a");
        assert_eq!(r.held(), 2, "b and c wait for their timers");
    }

    #[test]
    fn at_most_the_budget_is_read_ahead_and_a_fired_timer_frees_its_place() {
        let mut r = ReadAhead::new(1000, 2);
        let look = r.start(at(0), Some(at(10))).unwrap();
        assert_eq!(look.limit, 2, "no more than the room left");
        assert_eq!(r.found(&look, &[timer("a", 10), timer("b", 20)], at(0), |_| false).len(), 2);
        assert_eq!(r.start(at(0), Some(at(10))), None, "full: a full page would look again at once, but there is no room");
        assert_eq!(r.wake_at(Some(at(10))), None);
        r.forget("a");
        assert_eq!(r.start(at(0), Some(at(10))).map(|l| l.limit), Some(1));
    }

    #[test]
    fn a_look_that_exhausted_the_window_waits_before_the_next() {
        let mut r = ReadAhead::new(1000, 10);
        let look = r.start(at(0), Some(at(10))).unwrap();
        assert!(r.found(&look, &[timer("a", 10)], at(0), |_| false).len() == 1);
        assert_eq!(r.start(at(50), Some(at(10))), None);
        assert_eq!(r.wake_at(Some(at(10))), Some(at(LOOK_EVERY_MS as i64)));
        assert!(r.start(at(LOOK_EVERY_MS as i64), Some(at(10))).is_some());
    }

    #[test]
    fn a_cursor_a_little_behind_now_is_continued_one_far_behind_moves_to_now_and_a_failed_look_is_repeated() {
        let mut r = ReadAhead::new(1000, 10);
        let look = r.start(at(0), Some(at(10))).unwrap();
        r.found(&look, &[timer("a", 800)], at(0), |_| false);
        let look = r.start(at(100), Some(at(10))).unwrap();
        assert_eq!(look.after, timer("a", 800), "ahead of now: continued");
        r.failed(look, at(100), 1000);
        assert_eq!(r.start(at(1099), Some(at(10))), None, "retried later");
        let look = r.start(at(1100), Some(at(10))).unwrap();
        assert_eq!(look.after, timer("a", 800), "behind now by less than the catch-up: what fell due meanwhile is read too");
        assert_eq!(look.until, at(2100));
        r.failed(look, at(1100), 1000);
        let late = 800 + MAX_CATCH_UP_MS as i64;
        let look = r.start(at(late), Some(at(10))).unwrap();
        assert_eq!(look.after.due_at, at(late), "far behind: what fell due meanwhile is the regular poll's");
    }

    #[test]
    fn timers_found_are_due_at_their_time_not_before_and_only_while_their_execution_is_held() {
        let mut r = ReadAhead::new(1000, 10);
        let look = r.start(at(0), Some(at(300))).unwrap();
        let found = [timer("a", 300), timer("live", 300), timer("b", 500), timer("c", 500)];
        r.found(&look, &found, at(0), |id| id == "live");
        assert_eq!(r.next_scheduled(), Some(at(300)));
        assert_eq!(r.due(at(299)), vec![], "not before its time");
        assert_eq!(r.due(at(300)), vec![timer("a", 300)], "a timer of an execution the loop held is the poll's");
        assert_eq!(r.due(at(300)), vec![], "each once");
        r.forget("b"); // fired by a poll, or left memory
        assert_eq!(r.due(at(600)), vec![timer("c", 500)]);
        assert_eq!(r.next_scheduled(), None);
    }

    #[test]
    fn executions_whose_timers_went_another_way_stop_counting() {
        let mut r = ReadAhead::new(1000, 1);
        let look = r.start(at(0), Some(at(10))).unwrap();
        r.found(&look, &[timer("a", 10)], at(0), |_| false);
        assert_eq!(r.start(at(10 + FORGET_AFTER_DUE_MS as i64 - 1), Some(at(10))), None, "still counted");
        assert!(r.start(at(10 + FORGET_AFTER_DUE_MS as i64), Some(at(10))).is_some(), "long past due: forgotten");
    }
}
