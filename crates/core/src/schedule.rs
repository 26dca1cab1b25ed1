//! Rules that span the executions of one pipeline, decided purely over the
//! pipeline's unfinished executions (read beforehand by the engine): how a new
//! execution begins in each execution mode, SUPERSEDED mode's stage locks (who
//! enters a stage, who waits, who is superseded), who is next in a queue, and
//! whether a finished execution may be reopened by a stage retry under the
//! concurrency limit.
//!
//! The engine keeps each pipeline's unfinished executions in memory, in start
//! order, on its single writer path, so these decisions are exact at any size.

use crate::definition::ExecutionMode;
use crate::machine::StagePosition;
use std::collections::{BTreeMap, BTreeSet};

/// How a new execution begins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartDecision {
    /// It starts its first stage now.
    Start,
    /// QUEUED: it waits behind the unfinished ones, and starts when it is the oldest.
    Enqueue,
    /// PARALLEL: `maxConcurrentExecutions` are already unfinished.
    Refuse(ConcurrencyLimit),
}

/// A refusal under `maxConcurrentExecutions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConcurrencyLimit {
    pub unfinished: usize,
    pub max: u32,
}

/// How a new execution of a pipeline in `mode` begins, with `unfinished`
/// executions of it unfinished now.
pub fn start_decision(mode: ExecutionMode, max_concurrent: u32, unfinished: usize) -> StartDecision {
    match mode {
        ExecutionMode::Queued if unfinished > 0 => StartDecision::Enqueue,
        ExecutionMode::Parallel if unfinished >= max_concurrent as usize => {
            StartDecision::Refuse(ConcurrencyLimit { unfinished, max: max_concurrent })
        }
        ExecutionMode::Queued | ExecutionMode::Parallel | ExecutionMode::Superseded => StartDecision::Start,
    }
}

/// Whether a stage retry may reopen a finished execution: in PARALLEL mode the
/// reopened execution counts against `maxConcurrentExecutions` again.
pub fn reopen_decision(mode: ExecutionMode, max_concurrent: u32, unfinished: usize) -> Result<(), ConcurrencyLimit> {
    match start_decision(mode, max_concurrent, unfinished) {
        StartDecision::Refuse(limit) if mode == ExecutionMode::Parallel => Err(limit),
        _ => Ok(()),
    }
}

/// QUEUED: after an execution finished, the oldest unfinished one starts if it
/// is still waiting in the queue (`queued`).
pub fn next_in_queue<K>(mode: ExecutionMode, oldest: Option<(&K, bool)>) -> Option<&K> {
    match (mode, oldest) {
        (ExecutionMode::Queued, Some((key, true))) => Some(key),
        _ => None,
    }
}

/// RetryStageExecution's NotLatestPipelineExecution rule: a stage retry of an
/// execution is out of date when the stage failed again in a later execution.
/// `later`: the executions started after it, newest first, with whether the
/// stage failed in each; returns the newest such execution.
pub fn newer_failure<K>(later: impl IntoIterator<Item = (K, bool)>) -> Option<K> {
    later.into_iter().find_map(|(k, failed)| failed.then_some(k))
}

/// A later execution's stage, as a bulk retry saw it ([`LatestFailure`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaterStage {
    /// The stage failed (and this operation did not retry it).
    Failed,
    /// The execution is unfinished: it may still fail the stage, so it is
    /// looked at again ([`LatestFailure::unsettled`]).
    Unsettled,
    /// The stage did not fail and cannot any more (the execution finished), or
    /// this operation retried it (which re-opened the stage).
    Settled,
}

/// [`newer_failure`] for every execution of a walk over a pipeline's
/// executions at once (a bulk retry's): executions are passed in any order
/// (keys order them by start, older first), and for the next one to check the
/// answer is the newest failure among those passed so far — the same as
/// [`newer_failure`] over the later ones, newest first, in linear time.
/// Unsettled executions are kept for a caller to look at again and pass anew.
#[derive(Clone, Debug)]
pub struct LatestFailure<K> {
    newest: Option<K>,
    unsettled: BTreeSet<K>,
}

impl<K: Ord + Clone> Default for LatestFailure<K> {
    fn default() -> Self {
        LatestFailure { newest: None, unsettled: BTreeSet::new() }
    }
}

impl<K: Ord + Clone> LatestFailure<K> {
    /// The newest passed execution whose stage failed: the one that makes any
    /// older execution's stage retry out of date.
    pub fn newest(&self) -> Option<&K> {
        self.newest.as_ref()
    }

    /// Records what `key`'s stage is now (again, for an unsettled one).
    pub fn pass(&mut self, key: K, stage: LaterStage) {
        match stage {
            LaterStage::Failed => {
                self.unsettled.remove(&key);
                if self.newest.as_ref().is_none_or(|n| *n < key) {
                    self.newest = Some(key);
                }
            }
            LaterStage::Unsettled => {
                self.unsettled.insert(key);
            }
            LaterStage::Settled => {
                self.unsettled.remove(&key);
            }
        }
    }

    /// The executions to look at again before the next check.
    pub fn unsettled(&self) -> impl Iterator<Item = &K> {
        self.unsettled.iter()
    }
}

/// SUPERSEDED mode's stage locks, as CodePipeline defines them: a stage
/// processes one execution at a time; an execution that finished a stage waits
/// before the next one while it is locked; and when a newer execution arrives
/// to wait before the same stage, the older waiting one is superseded (an
/// execution inside a stage is never interrupted). Keys order executions by
/// start (older first).
#[derive(Clone, Debug)]
pub struct StageLocks<K> {
    held: BTreeMap<usize, K>,
    waiting: BTreeMap<usize, K>,
}

/// What the engine does after a lock moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockAction<K> {
    /// Let `who` into `stage` (it now holds the lock).
    Enter { who: K, stage: usize },
    /// `who`, waiting, was overtaken by the newer `by`.
    Supersede { who: K, by: K },
}

impl<K: Ord + Clone> Default for StageLocks<K> {
    fn default() -> Self {
        StageLocks { held: BTreeMap::new(), waiting: BTreeMap::new() }
    }
}

impl<K: Ord + Clone> StageLocks<K> {
    /// The locks of a pipeline's unfinished executions as read (after a
    /// restart, say), and what to do so they are consistent: let a waiter into
    /// a free stage, supersede all but the newest of several waiting before one.
    pub fn from_positions(positions: impl IntoIterator<Item = (K, StagePosition)>) -> (StageLocks<K>, Vec<LockAction<K>>) {
        let mut positions: Vec<(K, StagePosition)> = positions.into_iter().collect();
        positions.sort_by(|a, b| a.0.cmp(&b.0));
        let mut locks = StageLocks::default();
        let mut actions = Vec::new();
        for (who, at) in positions.iter().filter(|(_, at)| matches!(at, StagePosition::Holding(_))) {
            actions.extend(locks.moved(who, None, Some(*at)));
        }
        for (who, at) in positions.iter().filter(|(_, at)| matches!(at, StagePosition::Waiting(_))) {
            actions.extend(locks.moved(who, None, Some(*at)));
        }
        (locks, actions)
    }

    /// `who` moved from `from` to `to` (`None`: outside the locks — finished,
    /// queued, not stage-locked). Returns what follows for the others and for
    /// `who` itself; the locks already reflect those actions.
    pub fn moved(&mut self, who: &K, from: Option<StagePosition>, to: Option<StagePosition>) -> Vec<LockAction<K>> {
        let mut actions = Vec::new();
        if from == to {
            return actions;
        }
        match from {
            Some(StagePosition::Holding(stage)) => self.release(who, stage, &mut actions),
            Some(StagePosition::Waiting(stage)) if self.waiting.get(&stage) == Some(who) => {
                self.waiting.remove(&stage);
            }
            Some(StagePosition::Waiting(_)) | None => {}
        }
        match to {
            Some(StagePosition::Holding(stage)) => {
                self.held.insert(stage, who.clone());
            }
            Some(StagePosition::Waiting(stage)) => self.arrive(who, stage, &mut actions),
            None => {}
        }
        actions
    }

    /// `who` left the locks for good (finished or given up on), wherever it was.
    pub fn forget(&mut self, who: &K) -> Vec<LockAction<K>> {
        let mut actions = Vec::new();
        let held: Vec<usize> = self.held.iter().filter(|(_, k)| *k == who).map(|(s, _)| *s).collect();
        for stage in held {
            self.release(who, stage, &mut actions);
        }
        self.waiting.retain(|_, k| k != who);
        actions
    }

    fn release(&mut self, who: &K, stage: usize, actions: &mut Vec<LockAction<K>>) {
        if self.held.get(&stage) != Some(who) {
            return;
        }
        self.held.remove(&stage);
        if let Some(next) = self.waiting.remove(&stage) {
            self.held.insert(stage, next.clone());
            actions.push(LockAction::Enter { who: next, stage });
        }
    }

    fn arrive(&mut self, who: &K, stage: usize, actions: &mut Vec<LockAction<K>>) {
        let waiter = self.waiting.get(&stage).cloned();
        match waiter {
            Some(w) if w > *who => actions.push(LockAction::Supersede { who: who.clone(), by: w }),
            Some(w) => {
                actions.push(LockAction::Supersede { who: w, by: who.clone() });
                self.waiting.insert(stage, who.clone());
            }
            None if self.held.contains_key(&stage) => {
                self.waiting.insert(stage, who.clone());
            }
            None => {
                self.held.insert(stage, who.clone());
                actions.push(LockAction::Enter { who: who.clone(), stage });
            }
        }
        if !self.held.contains_key(&stage)
            && let Some(next) = self.waiting.remove(&stage)
        {
            // Only reachable with a waiter before a free stage (a read found it so).
            self.held.insert(stage, next.clone());
            actions.push(LockAction::Enter { who: next, stage });
        }
    }

    /// Who holds `stage`, and who waits before it.
    pub fn at(&self, stage: usize) -> (Option<&K>, Option<&K>) {
        (self.held.get(&stage), self.waiting.get(&stage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExecutionMode::{Parallel, Queued, Superseded};

    #[test]
    fn starts_as_data() {
        let refuse = |unfinished, max| StartDecision::Refuse(ConcurrencyLimit { unfinished, max });
        let cases = [
            (Superseded, 1, 0, StartDecision::Start),
            (Superseded, 1, 7, StartDecision::Start),
            (Queued, 1, 0, StartDecision::Start),
            (Queued, 1, 3, StartDecision::Enqueue),
            (Parallel, 2, 1, StartDecision::Start),
            (Parallel, 2, 2, refuse(2, 2)),
            (Parallel, 10_000, 10_000, refuse(10_000, 10_000)),
            (Parallel, 10_000, 9_999, StartDecision::Start),
        ];
        for (mode, max, unfinished, want) in cases {
            assert_eq!(start_decision(mode, max, unfinished), want, "{mode:?} max {max} with {unfinished} unfinished");
        }
    }

    #[test]
    fn reopening_counts_only_in_parallel() {
        assert_eq!(reopen_decision(Parallel, 1, 1), Err(ConcurrencyLimit { unfinished: 1, max: 1 }));
        assert_eq!(reopen_decision(Parallel, 2, 1), Ok(()));
        assert_eq!(reopen_decision(Queued, 1, 5), Ok(()), "a reopened QUEUED execution does not wait again");
        assert_eq!(reopen_decision(Superseded, 1, 5), Ok(()));
    }

    #[test]
    fn a_later_failure_of_the_stage_makes_a_retry_out_of_date() {
        assert_eq!(newer_failure([("e9", false), ("e8", true), ("e7", true)]), Some("e8"), "the newest failure is named");
        assert_eq!(newer_failure([("e9", false), ("e8", false)]), None, "later runs passed the stage");
        assert_eq!(newer_failure(Vec::<(&str, bool)>::new()), None, "it is the latest");
    }

    #[test]
    fn the_latest_failure_is_the_newest_failed_and_unsettled_ones_are_looked_at_again() {
        let mut walk = LatestFailure::default();
        walk.pass(9, LaterStage::Settled);
        walk.pass(8, LaterStage::Unsettled);
        assert_eq!((walk.newest(), walk.unsettled().collect::<Vec<_>>()), (None, vec![&8]));
        walk.pass(7, LaterStage::Failed);
        walk.pass(6, LaterStage::Failed);
        assert_eq!(walk.newest(), Some(&7), "the newest failure is named");
        walk.pass(8, LaterStage::Failed); // looked at again: it failed since
        assert_eq!((walk.newest(), walk.unsettled().count()), (Some(&8), 0));
        walk.pass(10, LaterStage::Unsettled);
        walk.pass(10, LaterStage::Settled);
        assert_eq!((walk.newest(), walk.unsettled().count()), (Some(&8), 0));
    }

    proptest::proptest! {
        /// A newest-first walk that checks each execution, passes it (failed or
        /// not, as the check decided) and sometimes learns of a newer one
        /// answers for each exactly what [`newer_failure`] over all the later
        /// ones (newest first) answers.
        #[test]
        fn the_walk_equals_newer_failure_over_the_later_executions(
            steps in proptest::collection::vec((proptest::bool::ANY, proptest::option::of(proptest::bool::ANY)), 0..60),
        ) {
            // Checked executions are keyed 1000 down; executions started during
            // the walk 1001 up.
            let mut walk = LatestFailure::default();
            let mut passed: Vec<(u32, bool)> = Vec::new();
            for (i, (failed, arrived)) in steps.into_iter().enumerate() {
                if let Some(arrived_failed) = arrived {
                    let key = 1001 + i as u32;
                    passed.push((key, arrived_failed));
                    walk.pass(key, if arrived_failed { LaterStage::Failed } else { LaterStage::Settled });
                }
                let key = 1000 - i as u32;
                let mut later = passed.clone();
                later.sort_by_key(|e| std::cmp::Reverse(e.0));
                proptest::prop_assert_eq!(walk.newest().copied(), newer_failure(later));
                passed.push((key, failed));
                walk.pass(key, if failed { LaterStage::Failed } else { LaterStage::Settled });
            }
        }
    }

    #[test]
    fn the_queue_moves_only_for_a_waiting_head() {
        assert_eq!(next_in_queue(Queued, Some((&"a", true))), Some(&"a"));
        assert_eq!(next_in_queue(Queued, Some((&"a", false))), None, "already running");
        assert_eq!(next_in_queue(Queued, None::<(&&str, bool)>), None);
        assert_eq!(next_in_queue(Superseded, Some((&"a", true))), None);
    }

    mod stage_locks {
        use super::super::*;
        use LockAction::{Enter, Supersede};
        use StagePosition::{Holding, Waiting};

        #[test]
        fn codepipeline_superseded_flow_as_data() {
            // e1 runs stage 0; e2 and e3 start; e1 moves on; e4 starts.
            let mut l = StageLocks::default();
            type Step = (u32, Option<StagePosition>, Option<StagePosition>, Vec<LockAction<u32>>);
            let steps: Vec<Step> = vec![
                (1, None, Some(Waiting(0)), vec![Enter { who: 1, stage: 0 }]),
                (1, Some(Waiting(0)), Some(Holding(0)), vec![]),
                (2, None, Some(Waiting(0)), vec![]),
                (3, None, Some(Waiting(0)), vec![Supersede { who: 2, by: 3 }]),
                (2, Some(Waiting(0)), None, vec![]),
                // e1 finishes stage 0: e3 enters it; e1 enters the free stage 1.
                (1, Some(Holding(0)), Some(Waiting(1)), vec![Enter { who: 3, stage: 0 }, Enter { who: 1, stage: 1 }]),
                (4, None, Some(Waiting(0)), vec![]),
                // e3 finishes stage 0 while e1 still holds stage 1: it waits there, e4 enters 0.
                (3, Some(Holding(0)), Some(Waiting(1)), vec![Enter { who: 4, stage: 0 }]),
                // e4 reaches stage 1 too: the older waiter e3 is superseded.
                (4, Some(Holding(0)), Some(Waiting(1)), vec![Supersede { who: 3, by: 4 }]),
                // e1 finishes: e4 gets stage 1.
                (1, Some(Holding(1)), None, vec![Enter { who: 4, stage: 1 }]),
            ];
            for (i, (who, from, to, want)) in steps.into_iter().enumerate() {
                assert_eq!(l.moved(&who, from, to), want, "step {i}: e{who} {from:?} -> {to:?}");
            }
            assert_eq!(l.at(1), (Some(&4), None));
            assert_eq!(l.at(0), (None, None));
        }

        #[test]
        fn an_older_arrival_behind_a_newer_waiter_is_itself_superseded() {
            let mut l = StageLocks::default();
            l.moved(&1, None, Some(Holding(2)));
            l.moved(&5, None, Some(Waiting(2)));
            assert_eq!(l.moved(&3, None, Some(Waiting(2))), vec![Supersede { who: 3, by: 5 }]);
            assert_eq!(l.at(2), (Some(&1), Some(&5)));
        }

        #[test]
        fn forgetting_a_holder_lets_the_waiter_in() {
            let mut l = StageLocks::default();
            l.moved(&1, None, Some(Holding(0)));
            l.moved(&2, None, Some(Waiting(0)));
            assert_eq!(l.forget(&1), vec![Enter { who: 2, stage: 0 }]);
            assert_eq!(l.forget(&2), vec![]);
            assert_eq!(l.at(0), (None, None));
        }

        #[test]
        fn positions_read_after_a_restart_are_made_consistent() {
            // e2 waits before a free stage 1 (its holder finished before the
            // hand-over was durable); e3 and e4 both wait before locked stage 0.
            let (l, actions) = StageLocks::from_positions([(4, Waiting(0)), (2, Waiting(1)), (1, Holding(0)), (3, Waiting(0))]);
            assert_eq!(actions, vec![Enter { who: 2, stage: 1 }, Supersede { who: 3, by: 4 }]);
            assert_eq!(l.at(0), (Some(&1), Some(&4)));
            assert_eq!(l.at(1), (Some(&2), None));
        }
    }
}
