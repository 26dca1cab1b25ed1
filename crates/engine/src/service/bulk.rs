//! Bulk stage retry by filter (docs/retry-control.md): a named, recorded
//! operation that retries one stage of many executions of a pipeline.
//!
//! The matching and pacing rules are `redrive_core::bulk`; whether each
//! execution's retry is accepted is the single retry's own check
//! ([`Service::retry_check`] and `machine::retry_targets`), made once more for
//! each execution just before its retry. Executions are handled newest first;
//! one the operation retried does not make older ones out of date (the
//! NotLatestPipelineExecution rule sees its stage as re-opened), so a dry run
//! and the run agree.
//!
//! The NotLatestPipelineExecution rule is answered in one newest-first walk
//! over the pipeline's executions (`redrive_core::schedule::LatestFailure`),
//! not by reading every later execution for each one, so a plan and a run are
//! linear in the executions read. Before each check the run reads the
//! executions started since the newest one it saw and looks again at those it
//! saw unfinished (they may have failed the stage since). Each retry is a normal stage retry (trigger `manual`); the
//! result of each execution is recorded once (`bulk_retry_results` is unique per
//! operation and execution). A server that stops leaves its running operations
//! to be marked `INTERRUPTED` at the next start; nothing is resumed, so nothing
//! is retried twice.

use super::NewerFailure;
use super::{Service, ServiceError, execution_state, validate_name};
use redrive_core::bulk::{BulkCounts, BulkFilter, BulkOutcome, BulkRate, Pace, later_stage, max_executions};
use redrive_core::definition::RetryMode;
use redrive_core::exception::ExceptionType;
use redrive_core::limits::{DEFAULT_BULK_RETRY_RATE_PER_S, MAX_BULK_RETRY_REASON_BYTES, MAX_BULK_RETRY_SCAN, truncate_utf8};
use redrive_core::machine::Trigger;
use redrive_core::schedule::{LaterStage, LatestFailure};
use redrive_core::time::Timestamp;
use redrive_store::{
    BulkRetryRecord, BulkRetryResult, ExecutionCursor, ExecutionFilter, ExecutionRecord, MAX_EXECUTIONS_PER_READ, Store, TargetName,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Items a plan lists (its counts cover all).
pub const MAX_PLAN_ITEMS: usize = 1000;
/// How often a running operation writes its summary.
const SUMMARY_EVERY_MS: u64 = 500;

/// What a bulk retry asks for, as recorded with the operation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkRequest {
    pub pipeline: String,
    pub stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_type: Option<String>,
    /// Only executions that failed at most this long ago.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    pub mode: RetryMode,
    /// Stage retries started per second (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_s: Option<f64>,
    /// Go through at most this many matched executions (default and most: 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

/// A request whose fields were checked.
struct Checked {
    filter: BulkFilter,
    rate: BulkRate,
    max: u64,
}

/// What the dry run (or the start) says would happen to one execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkPlanItem {
    pub execution_id: String,
    /// `retry` or `skip`.
    pub would: String,
    /// The actions a retry would re-run, or why it would be skipped.
    pub detail: String,
}

/// The count shown first: how many executions match and what a run would do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkPlan {
    pub matched: u64,
    pub would_retry: u64,
    pub would_skip: u64,
    /// Executions of the pipeline read to find them.
    pub scanned: u64,
    /// False when the pipeline has more than [`MAX_BULK_RETRY_SCAN`] executions
    /// (older ones were not looked at).
    pub scan_complete: bool,
    /// The first [`MAX_PLAN_ITEMS`], newest execution first.
    pub items: Vec<BulkPlanItem>,
}

/// An operation's progress, written as it goes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BulkSummary {
    #[serde(flatten)]
    pub counts: BulkCounts,
    /// Why the operation failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A bulk retry's status once an abort stopped it.
pub const ABORTED: &str = "ABORTED";

/// An execution's place in the newest-first order (`(created_at, id)`): the
/// keys of the walk.
type Key = (Timestamp, String);

/// One execution of the pipeline as the plan read it, newest first.
#[derive(Clone, Debug)]
struct Seen {
    key: Key,
    /// It matches the filter: the operation goes through it.
    matched: bool,
    /// Its stage, for the NotLatestPipelineExecution rule of older ones.
    stage: LaterStage,
}

/// The retried stage's index in each pipeline version, read once a version.
#[derive(Default)]
struct StageOfVersion(HashMap<u32, Option<usize>>);

impl StageOfVersion {
    async fn get<S: Store>(&mut self, svc: &Service<S>, req: &BulkRequest, version: u32) -> Result<Option<usize>, ServiceError> {
        if let Some(si) = self.0.get(&version) {
            return Ok(*si);
        }
        // A version that cannot be read has no such stage to match; a store
        // that cannot answer stops the operation.
        let p = match svc.get_pipeline(&req.pipeline, Some(version)).await {
            Err(e @ ServiceError::Unavailable(_)) => return Err(e),
            other => other.ok(),
        };
        let si = p.and_then(|p| p.loaded.pipeline.stage_index(&req.stage));
        self.0.insert(version, si);
        Ok(si)
    }

    /// What `r` means for older executions' NotLatestPipelineExecution rule.
    async fn later_stage<S: Store>(
        &mut self,
        svc: &Service<S>,
        req: &BulkRequest,
        r: &ExecutionRecord,
    ) -> Result<LaterStage, ServiceError> {
        let si = match r.target.pipeline_version() {
            Some(version) => self.get(svc, req, version).await?,
            None => None,
        };
        Ok(later_stage(&execution_state(r), si))
    }
}

/// A run's walk: the plan's executions, brought up to date before each check.
struct RunWalk {
    walk: LatestFailure<Key>,
    /// The newest execution read: any newer one started after the plan.
    newest_read: Key,
    stages: StageOfVersion,
}

impl<S: Store> Service<S> {
    fn check_bulk(req: &BulkRequest, now: Timestamp) -> Result<Checked, ServiceError> {
        validate_name("pipeline", &req.pipeline)?;
        validate_name("stage", &req.stage)?;
        let exception_type = req
            .exception_type
            .as_deref()
            .map(|t| ExceptionType::parse(t).map_err(|e| ServiceError::Validation(format!("exceptionType {t:?}: {e}"))))
            .transpose()?;
        let failed_since =
            req.since_ms.map(|ms| Timestamp::from_unix_ms(now.unix_ms().saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))));
        let rate = BulkRate::new(req.rate_per_s.unwrap_or(DEFAULT_BULK_RETRY_RATE_PER_S)).map_err(ServiceError::Validation)?;
        let max = max_executions(req.max).map_err(ServiceError::Validation)?;
        Ok(Checked { filter: BulkFilter { exception_type, failed_since }, rate, max })
    }

    /// The pipeline's executions newest first, up to the last one that matches
    /// (at most `max` match), and how many executions were read to find them.
    async fn bulk_scan(&self, req: &BulkRequest, checked: &Checked) -> Result<(Vec<Seen>, u64, bool), ServiceError> {
        let latest = self.get_pipeline(&req.pipeline, None).await?;
        if latest.loaded.pipeline.stage_index(&req.stage).is_none() {
            return Err(ServiceError::StageNotFound(format!("stage {} not found in pipeline {}", req.stage, req.pipeline)));
        }
        let mut stages = StageOfVersion::default();
        let (mut seen, mut matched, mut scanned, mut before) = (Vec::new(), 0u64, 0u64, None::<ExecutionCursor>);
        let complete = 'pages: loop {
            let filter =
                ExecutionFilter { target: Some(TargetName::pipeline(&req.pipeline)), before: before.clone(), ..Default::default() };
            let page = self.store.list_executions(filter).await?;
            let Some(last) = page.last() else { break true };
            before = Some(last.cursor());
            for r in &page {
                scanned += 1;
                let si = match r.target.pipeline_version() {
                    Some(version) => stages.get(self, req, version).await?,
                    None => None,
                };
                let state = execution_state(r);
                let is_match = si.is_some_and(|si| checked.filter.matches(&state, si));
                seen.push(Seen { key: (r.created_at, r.id.clone()), matched: is_match, stage: later_stage(&state, si) });
                matched += u64::from(is_match);
                if matched >= checked.max {
                    break 'pages true;
                }
                if scanned >= MAX_BULK_RETRY_SCAN {
                    break 'pages false;
                }
            }
        };
        // Executions older than the last match play no part.
        seen.truncate(seen.iter().rposition(|s| s.matched).map_or(0, |i| i + 1));
        Ok((seen, scanned, complete))
    }

    /// One execution's retry as the single retry would answer it now, given
    /// the newest later execution whose stage failed (and which the operation
    /// did not retry): the actions, or why not.
    async fn bulk_check_one(&self, req: &BulkRequest, id: &str, newer: Option<&Key>) -> Result<Vec<String>, ServiceError> {
        let newer = NewerFailure::Known(newer.map(|(_, id)| id.clone()));
        self.retry_check_with(&req.pipeline, &req.stage, id, newer).await?.targets(req.mode)
    }

    /// The dry run: what a bulk retry would do now; changes nothing.
    pub async fn plan_bulk_retry(&self, req: &BulkRequest) -> Result<BulkPlan, ServiceError> {
        let checked = Self::check_bulk(req, self.clock.now())?;
        Ok(self.plan_checked(req, &checked).await?.0)
    }

    async fn plan_checked(&self, req: &BulkRequest, checked: &Checked) -> Result<(BulkPlan, Vec<Seen>), ServiceError> {
        let (seen, scanned, scan_complete) = self.bulk_scan(req, checked).await?;
        let matched = seen.iter().filter(|s| s.matched).count() as u64;
        let mut plan = BulkPlan { matched, scanned, scan_complete, ..Default::default() };
        let mut walk = LatestFailure::default();
        for s in &seen {
            if !s.matched {
                walk.pass(s.key.clone(), s.stage);
                continue;
            }
            let id = &s.key.1;
            let (would, detail) = match self.bulk_check_one(req, id, walk.newest()).await {
                Ok(actions) => {
                    walk.pass(s.key.clone(), LaterStage::Settled);
                    plan.would_retry += 1;
                    ("retry", format!("re-runs {}", actions.join(", ")))
                }
                Err(ServiceError::Unavailable(m)) => return Err(ServiceError::Unavailable(m)),
                Err(e) => {
                    walk.pass(s.key.clone(), s.stage);
                    plan.would_skip += 1;
                    ("skip", e.to_string())
                }
            };
            if plan.items.len() < MAX_PLAN_ITEMS {
                plan.items.push(BulkPlanItem { execution_id: id.clone(), would: would.into(), detail });
            }
        }
        Ok((plan, seen))
    }

    /// Brings a run's walk up to date before a check: the executions started
    /// since the newest one read, and those read unfinished, again.
    async fn bulk_look_again(&self, req: &BulkRequest, run: &mut RunWalk) -> Result<(), ServiceError> {
        let mut fresh = self.executions_since(req, &run.newest_read).await?;
        if let Some(newest) = fresh.first() {
            run.newest_read = (newest.created_at, newest.id.clone());
        }
        let unsettled: Vec<Key> = run.walk.unsettled().cloned().collect();
        for chunk in unsettled.chunks(MAX_EXECUTIONS_PER_READ) {
            let ids: Vec<String> = chunk.iter().map(|(_, id)| id.clone()).collect();
            let read = self.store.get_executions(&ids).await?;
            // One no longer there (pruned, deleted) cannot fail the stage.
            for key in chunk.iter().filter(|(_, id)| !read.iter().any(|r| r.id == *id)) {
                run.walk.pass(key.clone(), LaterStage::Settled);
            }
            fresh.extend(read);
        }
        for r in &fresh {
            let stage = run.stages.later_stage(self, req, r).await?;
            run.walk.pass((r.created_at, r.id.clone()), stage);
        }
        Ok(())
    }

    /// The pipeline's executions newer than `after`, newest first.
    async fn executions_since(&self, req: &BulkRequest, after: &Key) -> Result<Vec<ExecutionRecord>, ServiceError> {
        const PAGE: usize = 100;
        let (mut out, mut before) = (Vec::new(), None::<ExecutionCursor>);
        loop {
            let filter = ExecutionFilter {
                target: Some(TargetName::pipeline(&req.pipeline)),
                before: before.clone(),
                limit: PAGE,
                ..Default::default()
            };
            let page = self.store.list_executions(filter).await?;
            let Some(last) = page.last() else { return Ok(out) };
            before = Some(last.cursor());
            for r in page {
                if (r.created_at, r.id.as_str()) <= (after.0, after.1.as_str()) {
                    return Ok(out);
                }
                out.push(r);
            }
        }
    }

    /// Shows the count first, records the operation (`RUNNING`) and starts it
    /// in the background. Returns the record and the plan it starts from.
    pub async fn start_bulk_retry(self: &Arc<Self>, req: BulkRequest) -> Result<(BulkRetryRecord, BulkPlan), ServiceError> {
        let now = self.clock.now();
        let checked = Self::check_bulk(&req, now)?;
        let (plan, seen) = self.plan_checked(&req, &checked).await?;
        let summary = BulkSummary { counts: BulkCounts { matched: plan.matched, ..Default::default() }, error: None };
        let record = BulkRetryRecord {
            id: uuid::Uuid::new_v4().to_string(),
            pipeline: req.pipeline.clone(),
            stage: req.stage.clone(),
            status: "RUNNING".into(),
            started_at: now,
            finished_at: None,
            request_json: serde_json::to_string(&req).expect("request serialises"),
            summary_json: serde_json::to_string(&summary).expect("summary serialises"),
        };
        self.store.create_bulk_retry(record.clone()).await?;
        let (svc, run) = (self.clone(), record.clone());
        tokio::spawn(async move { svc.run_bulk_retry(run, req, checked.rate, seen, summary).await });
        Ok((record, plan))
    }

    async fn run_bulk_retry(
        &self,
        mut record: BulkRetryRecord,
        req: BulkRequest,
        rate: BulkRate,
        seen: Vec<Seen>,
        mut summary: BulkSummary,
    ) {
        let abort = self.running.register(&record.id);
        let result = self.drive_bulk(&record, &req, rate, &seen, &mut summary, &abort).await;
        self.running.finished(&record.id);
        record.finished_at = Some(self.clock.now());
        record.status = match result {
            Ok(()) if abort.is_requested() => ABORTED.into(),
            Ok(()) => "SUCCEEDED".into(),
            Err(e) => {
                summary.error = Some(e.to_string());
                "FAILED".into()
            }
        };
        record.summary_json = serde_json::to_string(&summary).expect("summary serialises");
        if let Err(e) = self.store.update_bulk_retry(record.clone()).await {
            tracing::error!(op = record.id, error = %e, "could not record the end of a bulk retry");
        }
    }

    async fn drive_bulk(
        &self,
        record: &BulkRetryRecord,
        req: &BulkRequest,
        rate: BulkRate,
        seen: &[Seen],
        summary: &mut BulkSummary,
        abort: &crate::redrive::AbortSignal,
    ) -> Result<(), ServiceError> {
        let Some(newest) = seen.first() else { return Ok(()) };
        let mut run = RunWalk { walk: LatestFailure::default(), newest_read: newest.key.clone(), stages: StageOfVersion::default() };
        let mut pace = Pace::new(rate);
        let (mut last_save, mut unsaved, mut seq) = (tokio::time::Instant::now(), false, 0u64);
        for s in seen {
            if !s.matched {
                run.walk.pass(s.key.clone(), s.stage);
                continue;
            }
            let id = &s.key.1;
            let now = self.clock.now();
            let wait_ms = pace.take_slot(now).ms_since(now).max(0) as u64;
            // Progress is written every half second, and before any long wait.
            if unsaved && (wait_ms >= SUMMARY_EVERY_MS || last_save.elapsed() >= std::time::Duration::from_millis(SUMMARY_EVERY_MS)) {
                self.save_bulk(record, summary).await?;
                last_save = tokio::time::Instant::now();
            }
            abort.sleep_until(tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms)).await;
            if abort.is_requested() {
                return Ok(());
            }
            let (outcome, reason) = self.bulk_retry_one(req, id, &mut run).await;
            // A skipped one is looked at again before the next check (whether
            // its stage is failed now).
            run.walk.pass(s.key.clone(), if outcome == BulkOutcome::Retried { LaterStage::Settled } else { LaterStage::Unsettled });
            seq += 1;
            let result = BulkRetryResult {
                op_id: record.id.clone(),
                seq,
                execution_id: id.clone(),
                outcome: outcome.as_str().into(),
                reason: reason.clone(),
                at: self.clock.now(),
            };
            self.store.add_bulk_retry_result(result).await?;
            summary.counts.record(outcome);
            if outcome == BulkOutcome::Failed {
                return Err(ServiceError::Unavailable(format!("execution {id}: {}", reason.unwrap_or_default())));
            }
            unsaved = true;
        }
        Ok(())
    }

    async fn save_bulk(&self, record: &BulkRetryRecord, summary: &BulkSummary) -> Result<(), ServiceError> {
        let r = BulkRetryRecord { summary_json: serde_json::to_string(summary).expect("summary serialises"), ..record.clone() };
        Ok(self.store.update_bulk_retry(r).await?)
    }

    /// One execution: the walk brought up to date, the single retry's checks,
    /// then the retry itself.
    async fn bulk_retry_one(&self, req: &BulkRequest, id: &str, run: &mut RunWalk) -> (BulkOutcome, Option<String>) {
        let checked = match self.bulk_look_again(req, run).await {
            Ok(()) => self.bulk_check_one(req, id, run.walk.newest()).await,
            Err(e) => Err(e),
        };
        let result = match checked {
            Ok(_) => self.engine.retry_stage(id, &req.stage, req.mode, Trigger::Manual).await.map_err(ServiceError::from),
            Err(e) => Err(e),
        };
        let reason = |e: ServiceError| Some(truncate_utf8(e.to_string(), MAX_BULK_RETRY_REASON_BYTES));
        match result {
            Ok(()) => (BulkOutcome::Retried, None),
            Err(e @ ServiceError::Unavailable(_)) => (BulkOutcome::Failed, reason(e)),
            Err(e) => (BulkOutcome::Skipped, reason(e)),
        }
    }

    pub async fn get_bulk_retry(&self, pipeline: &str, id: &str) -> Result<BulkRetryRecord, ServiceError> {
        validate_name("pipeline", pipeline)?;
        let not_found = || ServiceError::BulkRetryNotFound(format!("pipeline {pipeline} has no bulk retry {id}"));
        if id.is_empty() || id.len() > 100 {
            return Err(not_found());
        }
        self.store.get_bulk_retry(id).await?.filter(|op| op.pipeline == pipeline).ok_or_else(not_found)
    }

    /// A pipeline's bulk retries, newest first.
    pub async fn list_bulk_retries(
        &self,
        pipeline: &str,
        before: Option<(Timestamp, String)>,
        limit: usize,
    ) -> Result<Vec<BulkRetryRecord>, ServiceError> {
        validate_name("pipeline", pipeline)?;
        Ok(self.store.list_bulk_retries(pipeline, before, limit).await?)
    }

    /// An operation's per-execution results, in the order it handled them.
    pub async fn bulk_retry_results(
        &self,
        pipeline: &str,
        id: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<BulkRetryResult>, ServiceError> {
        let op = self.get_bulk_retry(pipeline, id).await?;
        Ok(self.store.list_bulk_retry_results(&op.id, after_seq, limit).await?)
    }

    /// Stops a running operation before its next execution (the one under way
    /// finishes and is recorded); it ends `ABORTED`.
    pub async fn abort_bulk_retry(&self, pipeline: &str, id: &str) -> Result<BulkRetryRecord, ServiceError> {
        let op = self.get_bulk_retry(pipeline, id).await?;
        if op.status != "RUNNING" {
            return Err(ServiceError::Conflict(format!("bulk retry {id} is already {}; only a RUNNING one can be aborted", op.status)));
        }
        if !self.running.abort(id) {
            return Err(ServiceError::Conflict(format!("bulk retry {id} is not driven by this server process; abort it there")));
        }
        Ok(op)
    }
}
