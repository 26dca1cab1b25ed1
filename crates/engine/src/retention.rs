//! The retention sweeper: deletes what is past retention in small steps.
//!
//! A sweep reads candidates from the store (finished executions no dead-letter
//! entry names, oldest first, page by page), keeps those past their pipeline's
//! retention ([`redrive_core::retention`]) and hands each page to a pruner as
//! one [`PruneStep`]; then resolved dead-letter entries, finished redrive
//! runs and finished bulk retry operations (kept as long as redrive runs), a
//! step at a time. In a server the pruner is the engine
//! ([`EngineHandle::prune`]: it leaves out what it holds in memory); with no
//! engine running (`redrive prune`) it is the store itself.

use crate::clock::Clock;
use crate::error::EngineError;
use crate::handle::EngineHandle;
use crate::pipeline::LoadedPipeline;
use redrive_core::retention::{Keep, Retention};
use redrive_core::time::Timestamp;
use redrive_store::{ExecutionKind, MAX_PRUNE_STEP, PruneCandidate, PruneCounts, PruneExecution, PruneQuery, PruneStep, Store};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

/// A sweep starts this often by default.
pub const DEFAULT_SWEEP_EVERY_MS: u64 = 60_000;
/// Executions (or entries, or runs) per step by default.
pub const DEFAULT_STEP_SIZE: usize = 100;
/// The sweeper waits this long between two steps, so a long sweep never keeps
/// the writer busy for long.
pub const STEP_PAUSE_MS: u64 = 20;
/// Most pipelines whose `retentionDays` a sweep reads.
pub const MAX_PIPELINES_READ: usize = 100_000;

/// How the sweeper runs: what it keeps, how often, how much per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SweepConfig {
    pub retention: Retention,
    pub every_ms: u64,
    /// 1 to [`MAX_PRUNE_STEP`].
    pub step_size: usize,
}

impl Default for SweepConfig {
    fn default() -> Self {
        SweepConfig { retention: Retention::default(), every_ms: DEFAULT_SWEEP_EVERY_MS, step_size: DEFAULT_STEP_SIZE }
    }
}

/// Each live pipeline's own `retentionDays` (pipelines without one are absent).
pub async fn pipeline_retention<S: Store>(store: &S) -> Result<HashMap<String, u32>, EngineError> {
    let mut days = HashMap::new();
    let mut after: Option<String> = None;
    let mut read = 0;
    while read < MAX_PIPELINES_READ {
        let page = store.list_pipelines(after.as_deref(), 0).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        read += page.len();
        for record in page {
            // A definition that no longer parses keeps the default.
            if let Ok(loaded) = LoadedPipeline::from_record(record)
                && let Some(d) = loaded.pipeline.retention_days
            {
                days.insert(loaded.record.name, d);
            }
        }
    }
    Ok(days)
}

/// Of a page of candidates, those past their retention at `now`, as a step.
/// Pure: a pipeline's `retentionDays` wins over the default; a function uses
/// the default.
pub fn expired(candidates: &[PruneCandidate], retention: &Retention, days: &HashMap<String, u32>, now: Timestamp) -> Vec<PruneExecution> {
    candidates
        .iter()
        .filter(|c| {
            let own = match c.target.kind {
                ExecutionKind::Pipeline => days.get(&c.target.name).copied(),
                ExecutionKind::Function => None,
            };
            retention.execution_keep(own).expired(c.finished_at, now)
        })
        .map(|c| PruneExecution { id: c.id.clone(), version: c.version })
        .collect()
}

/// What one sweep found: deleted, or (dry run) what would go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub counts: PruneCounts,
    pub steps: u64,
}

/// One sweep at `now`. With `dry_run` nothing is deleted: executions are
/// counted from the candidates, entries and runs with `count_prunable` (ledger
/// rows are not counted). Otherwise every step goes through `prune`, with
/// `pause` awaited between steps.
pub async fn sweep<S, P, PF, W, WF>(
    store: &S,
    config: &SweepConfig,
    now: Timestamp,
    dry_run: bool,
    mut prune: P,
    mut pause: W,
) -> Result<SweepReport, EngineError>
where
    S: Store,
    P: FnMut(PruneStep) -> PF,
    PF: Future<Output = Result<PruneCounts, EngineError>>,
    W: FnMut() -> WF,
    WF: Future<Output = ()>,
{
    let step_size = config.step_size.clamp(1, MAX_PRUNE_STEP);
    let retention = &config.retention;
    let days = pipeline_retention(store).await?;
    let shortest = days.values().fold(retention.executions, |keep, d| keep.min(Keep::days(*d)));
    let mut report = SweepReport::default();
    if let Some(cutoff) = shortest.cutoff(now) {
        let mut query = PruneQuery { finished_before: cutoff, after: None, limit: step_size };
        loop {
            let page = store.prune_candidates(query.clone()).await?;
            let executions = expired(&page, retention, &days, now);
            if dry_run {
                report.counts.executions += executions.len() as u64;
            } else if !executions.is_empty() {
                report.counts.add(prune(PruneStep { executions, ..PruneStep::default() }).await?);
                report.steps += 1;
                pause().await;
            }
            match page.last() {
                Some(last) if page.len() == step_size => query.after = Some(last.cursor()),
                _ => break,
            }
        }
    }
    let rest = PruneStep {
        resolved_entries_before: retention.dlq_entries.cutoff(now),
        runs_finished_before: retention.redrive_runs.cutoff(now),
        bulk_retries_finished_before: retention.redrive_runs.cutoff(now),
        audit_before: retention.audit_records.cutoff(now),
        limit: step_size,
        ..PruneStep::default()
    };
    if rest.resolved_entries_before.is_none() && rest.runs_finished_before.is_none() && rest.audit_before.is_none() {
        return Ok(report);
    }
    if dry_run {
        let counted = store.count_prunable(rest).await?;
        report.counts.dlq_entries = counted.dlq_entries;
        report.counts.redrive_runs = counted.redrive_runs;
        report.counts.bulk_retries = counted.bulk_retries;
        report.counts.audit_records = counted.audit_records;
        return Ok(report);
    }
    loop {
        let done = prune(rest.clone()).await?;
        report.counts.add(done);
        report.steps += 1;
        let full = step_size as u64;
        if done.dlq_entries < full && done.redrive_runs < full && done.bulk_retries < full && done.audit_records < full {
            return Ok(report);
        }
        pause().await;
    }
}

/// Sweeps every `config.every_ms` through the engine until it stops. A sweep
/// that fails (the store is down) is logged and tried again next time.
pub fn spawn_sweeper<S: Store>(
    store: Arc<S>,
    engine: EngineHandle,
    clock: Arc<dyn Clock>,
    config: SweepConfig,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            clock.sleep_until(clock.now().plus_ms(config.every_ms)).await;
            let pause = || clock.sleep_until(clock.now().plus_ms(STEP_PAUSE_MS));
            let prune = |step| engine.prune(step);
            match sweep(&*store, &config, clock.now(), false, prune, pause).await {
                Ok(report) if !report.counts.is_empty() => tracing::info!(
                    executions = report.counts.executions,
                    ledger_rows = report.counts.ledger_rows,
                    dlq_entries = report.counts.dlq_entries,
                    redrive_runs = report.counts.redrive_runs,
                    bulk_retries = report.counts.bulk_retries,
                    audit_records = report.counts.audit_records,
                    steps = report.steps,
                    "retention: deleted what was past retention"
                ),
                Ok(_) => {}
                Err(EngineError::Stopped) => return,
                Err(e) => tracing::warn!(error = %e, "retention sweep failed; trying again at the next sweep"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use redrive_store::TargetName;

    fn candidate(id: &str, target: TargetName, finished_ms: i64) -> PruneCandidate {
        PruneCandidate {
            id: id.into(),
            target,
            status: "Succeeded".into(),
            version: 3,
            created_at: Timestamp::from_unix_ms(0),
            finished_at: Timestamp::from_unix_ms(finished_ms),
        }
    }

    #[test]
    fn a_pipelines_own_days_decide_and_functions_use_the_default() {
        let day = 86_400_000_i64;
        let retention = Retention { executions: Keep::For { ms: 10 * day as u64 }, ..Retention::default() };
        let days = HashMap::from([("short".to_string(), 1), ("long".to_string(), 100)]);
        let now = Timestamp::from_unix_ms(200 * day);
        let page = vec![
            candidate("s", TargetName::pipeline("short"), 198 * day), // 2 days old, keeps 1
            candidate("l", TargetName::pipeline("long"), 150 * day),  // 50 days old, keeps 100
            candidate("d", TargetName::pipeline("other"), 185 * day), // 15 days old, keeps 10
            candidate("f", TargetName::function("short"), 198 * day), // a function: the default (10)
            candidate("n", TargetName::pipeline("other"), 195 * day), // 5 days old
        ];
        let ids: Vec<String> = expired(&page, &retention, &days, now).into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["s", "d"]);
        let forever = Retention { executions: Keep::Forever, ..retention };
        let ids: Vec<String> = expired(&page, &forever, &days, now).into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["s"], "forever keeps all but what a pipeline's own days let go");
    }
}
