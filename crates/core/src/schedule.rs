//! Rules that span the executions of one pipeline, decided purely over the
//! pipeline's unfinished executions (read beforehand by the engine): how a new
//! execution begins in each execution mode, which execution a new one
//! supersedes, who is next in a queue, and whether a finished execution may be
//! reopened by a stage retry under the concurrency limit.
//!
//! The engine keeps each pipeline's unfinished executions in memory, in start
//! order, on its single writer path, so these decisions are exact at any size.

use crate::definition::ExecutionMode;

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

/// SUPERSEDED: the execution a new one overtakes — the newest unfinished one
/// (`unfinished` oldest first). Every older one was overtaken when that one
/// started, so one mark per start keeps them all marked.
pub fn supersede_target<K>(mode: ExecutionMode, unfinished: &[K]) -> Option<&K> {
    (mode == ExecutionMode::Superseded).then(|| unfinished.last()).flatten()
}

/// QUEUED: after an execution finished, the oldest unfinished one starts if it
/// is still waiting in the queue (`queued`).
pub fn next_in_queue<K>(mode: ExecutionMode, oldest: Option<(&K, bool)>) -> Option<&K> {
    match (mode, oldest) {
        (ExecutionMode::Queued, Some((key, true))) => Some(key),
        _ => None,
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
    fn the_newest_is_superseded() {
        assert_eq!(supersede_target(Superseded, &["a", "b", "c"]), Some(&"c"));
        assert_eq!(supersede_target(Superseded, &[] as &[&str]), None);
        assert_eq!(supersede_target(Queued, &["a"]), None);
        assert_eq!(supersede_target(Parallel, &["a"]), None);
    }

    #[test]
    fn the_queue_moves_only_for_a_waiting_head() {
        assert_eq!(next_in_queue(Queued, Some((&"a", true))), Some(&"a"));
        assert_eq!(next_in_queue(Queued, Some((&"a", false))), None, "already running");
        assert_eq!(next_in_queue(Queued, None::<(&&str, bool)>), None);
        assert_eq!(next_in_queue(Superseded, Some((&"a", true))), None);
    }
}
