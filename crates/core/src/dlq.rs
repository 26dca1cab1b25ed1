//! Dead-letter redrives, decided purely: how an entry is resubmitted, where an
//! entry is in its life, and whether a redrive may take it (in scope, in its
//! queue, not poison unless forced, not already being taken, answered by its
//! execution). The engine's driver and its dry-run planner ask the same
//! functions, over rows they read beforehand.

use crate::machine::DeadLetterLink;
use serde::{Deserialize, Serialize};

/// How a redriven entry is resubmitted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedriveMode {
    /// Retry the failed stage of the original execution (FAILED_ACTIONS).
    #[default]
    RetryStage,
    /// Start a new execution of the pipeline's latest version with the original input.
    NewExecution,
}

impl RedriveMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RedriveMode::RetryStage => "retry-stage",
            RedriveMode::NewExecution => "new-execution",
        }
    }

    pub fn parse(s: &str) -> Result<RedriveMode, String> {
        match s {
            "retry-stage" => Ok(RedriveMode::RetryStage),
            "new-execution" => Ok(RedriveMode::NewExecution),
            _ => Err(format!("{s:?} is not a redrive mode; allowed: retry-stage, new-execution")),
        }
    }
}

/// Where a dead-letter entry is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DlqEntryState {
    /// In its queue, waiting for a redrive (or poison, if its count is used up).
    Queued,
    /// Taken out of its queue and resubmitted; returns to `Queued` if the
    /// resubmission fails for good.
    Redriven,
    /// The resubmission (or a manual retry) succeeded.
    Resolved,
}

impl DlqEntryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DlqEntryState::Queued => "QUEUED",
            DlqEntryState::Redriven => "REDRIVEN",
            DlqEntryState::Resolved => "RESOLVED",
        }
    }

    pub fn parse(s: &str) -> Option<DlqEntryState> {
        match s {
            "QUEUED" => Some(DlqEntryState::Queued),
            "REDRIVEN" => Some(DlqEntryState::Redriven),
            "RESOLVED" => Some(DlqEntryState::Resolved),
            _ => None,
        }
    }
}

/// Why a redrive left an entry where it was.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SkipReason {
    NotFound,
    /// The entry is not in its queue (`REDRIVEN` or `RESOLVED`).
    NotQueued(&'static str),
    /// Redriven `maxRedrives` times already: parked until a forced redrive.
    Poison {
        redrive_count: u32,
        max_redrives: u32,
    },
    /// Another redrive of this entry is being committed.
    BeingRedriven,
    /// The entry's queue is outside the run's prefix.
    OutOfScope {
        queue: String,
        prefix: String,
    },
    /// The entry's execution no longer exists.
    ExecutionGone(String),
    /// The pipeline to start a new execution of no longer exists.
    PipelineGone(String),
    /// The execution refused the stage retry (the reason says why).
    Refused(String),
    /// Servers started with `--spread`: the entry's pipeline is in this shard,
    /// and no process holding it answered (none held it, or its holder could
    /// not be reached, for as long as a takeover takes).
    OtherShard(u16),
}

impl SkipReason {
    /// A stable short code, for counts in summaries.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::NotFound => "not-found",
            SkipReason::NotQueued(_) => "not-in-queue",
            SkipReason::Poison { .. } => "poison",
            SkipReason::BeingRedriven => "being-redriven",
            SkipReason::OutOfScope { .. } => "out-of-scope",
            SkipReason::ExecutionGone(_) => "execution-gone",
            SkipReason::PipelineGone(_) => "pipeline-gone",
            SkipReason::Refused(_) => "refused",
            SkipReason::OtherShard(_) => "other-shard",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::NotFound => write!(f, "no such dead-letter entry"),
            SkipReason::NotQueued(state) => write!(f, "the entry is not in its queue (it is {state})"),
            SkipReason::Poison { redrive_count, max_redrives } => write!(
                f,
                "the entry is poison: redriven {redrive_count} times (maxRedrives {max_redrives}); only an explicit --entry ID --force redrives it"
            ),
            SkipReason::BeingRedriven => write!(f, "another redrive of this entry is being committed"),
            SkipReason::OutOfScope { queue, prefix } => write!(f, "queue {queue} is outside this run's scope (prefix {prefix:?})"),
            SkipReason::ExecutionGone(id) => write!(f, "execution {id} no longer exists"),
            SkipReason::PipelineGone(name) => write!(f, "pipeline {name} no longer exists"),
            SkipReason::Refused(why) => write!(f, "the execution refused the stage retry: {why}"),
            SkipReason::OtherShard(shard) => write!(
                f,
                "its pipeline is in shard {shard}, and no process holding that shard answered (--spread: a shard's holder \
                 redrives its entries); the entry stays in its queue"
            ),
        }
    }
}

/// What a redrive knows about the entry it would take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryFacts<'a> {
    pub queue: &'a str,
    pub state: DlqEntryState,
    pub redrive_count: u32,
    pub max_redrives: u32,
}

impl EntryFacts<'_> {
    /// Parked: its redrives are used up.
    pub fn is_poison(&self) -> bool {
        self.redrive_count >= self.max_redrives
    }
}

/// What a redrive asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TakeRequest<'a> {
    /// Redrive a poison entry (only for an explicit single entry).
    pub force: bool,
    /// Only entries of queues whose name starts with this (a schedule's scope).
    pub scope: Option<&'a str>,
    /// Another redrive of this entry is accepted but not yet durable.
    pub being_taken: bool,
}

/// Whether a redrive may take the entry (`None`: it does not exist), in the
/// order a person would want the reason: missing, being taken, out of scope,
/// not in its queue, poison.
pub fn check_take(entry: Option<&EntryFacts<'_>>, req: &TakeRequest<'_>) -> Result<(), SkipReason> {
    let Some(entry) = entry else { return Err(SkipReason::NotFound) };
    if req.being_taken {
        return Err(SkipReason::BeingRedriven);
    }
    if let Some(prefix) = req.scope.filter(|p| !entry.queue.starts_with(p)) {
        return Err(SkipReason::OutOfScope { queue: entry.queue.to_string(), prefix: prefix.to_string() });
    }
    if entry.state != DlqEntryState::Queued {
        return Err(SkipReason::NotQueued(entry.state.as_str()));
    }
    if entry.is_poison() && !req.force {
        return Err(SkipReason::Poison { redrive_count: entry.redrive_count, max_redrives: entry.max_redrives });
    }
    Ok(())
}

/// Whether the execution to resubmit answers to the entry: its lineage's entry
/// is this one (an execution redriven into a new execution answers to the new
/// one's entry, not to an older entry it failed into first).
pub fn check_lineage(execution_id: &str, link: Option<&DeadLetterLink>, entry_id: &str) -> Result<(), SkipReason> {
    match link {
        Some(l) if l.entry_id == entry_id => Ok(()),
        _ => Err(SkipReason::Refused(format!("execution {execution_id} does not answer to entry {entry_id}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(queue: &str, state: DlqEntryState, redrive_count: u32) -> EntryFacts<'_> {
        EntryFacts { queue, state, redrive_count, max_redrives: 3 }
    }

    const PLAIN: TakeRequest<'static> = TakeRequest { force: false, scope: None, being_taken: false };

    #[test]
    fn take_checks_as_data() {
        let q = DlqEntryState::Queued;
        let cases: Vec<(Option<EntryFacts<'_>>, TakeRequest<'_>, Result<(), &str>)> = vec![
            (Some(entry("retry-a", q, 0)), PLAIN, Ok(())),
            (None, PLAIN, Err("not-found")),
            (Some(entry("retry-a", q, 0)), TakeRequest { being_taken: true, ..PLAIN }, Err("being-redriven")),
            (Some(entry("other", q, 0)), TakeRequest { scope: Some("retry-"), ..PLAIN }, Err("out-of-scope")),
            (Some(entry("retry-a", q, 0)), TakeRequest { scope: Some("retry-"), ..PLAIN }, Ok(())),
            (Some(entry("retry-a", DlqEntryState::Redriven, 0)), PLAIN, Err("not-in-queue")),
            (Some(entry("retry-a", DlqEntryState::Resolved, 0)), TakeRequest { force: true, ..PLAIN }, Err("not-in-queue")),
            (Some(entry("retry-a", q, 3)), PLAIN, Err("poison")),
            (Some(entry("retry-a", q, 3)), TakeRequest { force: true, ..PLAIN }, Ok(())),
            (Some(entry("other", q, 3)), TakeRequest { force: true, scope: Some("retry-"), ..PLAIN }, Err("out-of-scope")),
        ];
        for (i, (e, req, want)) in cases.into_iter().enumerate() {
            assert_eq!(check_take(e.as_ref(), &req).map_err(|r| r.code()), want, "case {i}");
        }
    }

    #[test]
    fn lineage_must_match() {
        let link = DeadLetterLink { entry_id: "e1".into(), queue: crate::name::Name::parse("q").unwrap() };
        assert!(check_lineage("x", Some(&link), "e1").is_ok());
        assert!(check_lineage("x", Some(&link), "e2").is_err());
        assert_eq!(check_lineage("x", None, "e1").unwrap_err().code(), "refused");
    }
}
