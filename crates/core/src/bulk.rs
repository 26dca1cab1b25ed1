//! Bulk stage retry by filter (docs/retry-control.md): which executions an
//! operation matches, when each of its retries may start under its rate, and
//! how its outcomes are counted. Whether one matched execution's retry is
//! accepted is *not* decided here: it is the single retry's own check
//! (`machine::retry_targets` behind the service's `retry_check`).

use crate::exception::ExceptionType;
use crate::limits::{MAX_BULK_RETRY_EXECUTIONS, MAX_BULK_RETRY_RATE_PER_S};
use crate::machine::{ActionStatus, ExecutionState, StageStatus};
use crate::schedule::LaterStage;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Which executions of a pipeline an operation goes through: the stage failed
/// (stage index in the execution's own pipeline version), optionally with a
/// failed action of `exception_type`, optionally finished at or after
/// `failed_since`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BulkFilter {
    pub exception_type: Option<ExceptionType>,
    pub failed_since: Option<Timestamp>,
}

impl BulkFilter {
    /// Whether `state`, whose stage `si` is the one retried, matches.
    pub fn matches(&self, state: &ExecutionState, si: usize) -> bool {
        let Some(stage) = state.stages.get(si) else { return false };
        if stage.status != StageStatus::Failed {
            return false;
        }
        if let Some(since) = self.failed_since {
            // A stage fails with its execution (no later stage runs); an execution
            // still unfinished has not failed "within" anything yet.
            if state.finished_at.is_none_or(|at| at < since) {
                return false;
            }
        }
        match &self.exception_type {
            None => true,
            Some(t) => stage
                .actions
                .iter()
                .filter(|a| a.status == ActionStatus::Failed)
                .filter_map(|a| a.last_failure.as_ref())
                .any(|f| f.exception_type == *t),
        }
    }
}

/// What an execution later than a retried one means for the
/// NotLatestPipelineExecution rule: `si` is the stage's index in the
/// execution's own pipeline version (`None`: that version has no such stage).
pub fn later_stage(state: &ExecutionState, si: Option<usize>) -> LaterStage {
    match si.and_then(|si| state.stages.get(si)) {
        Some(stage) if stage.status == StageStatus::Failed => LaterStage::Failed,
        Some(_) if !state.status.is_finished() => LaterStage::Unsettled,
        _ => LaterStage::Settled,
    }
}

/// How many executions an operation goes through: `--max`, at most
/// [`MAX_BULK_RETRY_EXECUTIONS`] (the default).
pub fn max_executions(requested: Option<u64>) -> Result<u64, String> {
    match requested {
        None => Ok(MAX_BULK_RETRY_EXECUTIONS),
        Some(n) if (1..=MAX_BULK_RETRY_EXECUTIONS).contains(&n) => Ok(n),
        Some(n) => Err(format!("max {n} is out of range: a whole number from 1 to {MAX_BULK_RETRY_EXECUTIONS}")),
    }
}

/// Stage retries started per second: more than 0, at most
/// [`MAX_BULK_RETRY_RATE_PER_S`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BulkRate(f64);

impl BulkRate {
    pub fn new(per_s: f64) -> Result<BulkRate, String> {
        if per_s.is_finite() && per_s > 0.0 && per_s <= MAX_BULK_RETRY_RATE_PER_S {
            Ok(BulkRate(per_s))
        } else {
            Err(format!("rate {per_s}/s is out of range: more than 0, at most {MAX_BULK_RETRY_RATE_PER_S}/s"))
        }
    }

    pub fn per_s(self) -> f64 {
        self.0
    }

    /// Milliseconds between two starts (at least 1).
    pub fn interval_ms(self) -> u64 {
        ((1000.0 / self.0).round() as u64).max(1)
    }
}

/// The pacing schedule: the first retry may start at once, each next one an
/// interval after the previous slot — and never before `now`, so a stall (a slow
/// check, a slow commit) is not made up for with a burst.
#[derive(Clone, Debug)]
pub struct Pace {
    interval_ms: u64,
    next_at: Option<Timestamp>,
}

impl Pace {
    pub fn new(rate: BulkRate) -> Pace {
        Pace { interval_ms: rate.interval_ms(), next_at: None }
    }

    /// When the next retry may start, given the time now; takes that slot.
    pub fn take_slot(&mut self, now: Timestamp) -> Timestamp {
        let at = self.next_at.map_or(now, |n| n.max(now));
        self.next_at = Some(at.plus_ms(self.interval_ms));
        at
    }
}

/// What happened to one matched execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkOutcome {
    /// Its stage retry was committed (a new series for the retried actions).
    Retried,
    /// The single-retry check refused it (the reason says which rule).
    Skipped,
    /// The retry could not be made (the store or engine refused it).
    Failed,
}

impl BulkOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            BulkOutcome::Retried => "retried",
            BulkOutcome::Skipped => "skipped",
            BulkOutcome::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<BulkOutcome> {
        [BulkOutcome::Retried, BulkOutcome::Skipped, BulkOutcome::Failed].into_iter().find(|o| o.as_str() == text)
    }
}

/// An operation's progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkCounts {
    /// Executions the operation set out to go through (matching, capped by max).
    pub matched: u64,
    /// Handled so far: retried + skipped + failed.
    pub processed: u64,
    pub retried: u64,
    pub skipped: u64,
    pub failed: u64,
}

impl BulkCounts {
    pub fn record(&mut self, outcome: BulkOutcome) {
        self.processed += 1;
        match outcome {
            BulkOutcome::Retried => self.retried += 1,
            BulkOutcome::Skipped => self.skipped += 1,
            BulkOutcome::Failed => self.failed += 1,
        }
    }
}

#[cfg(test)]
mod tests;
