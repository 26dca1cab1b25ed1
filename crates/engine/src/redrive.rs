//! Dead-letter redrives: taking entries out of their queues and resubmitting them
//! (mid-level: one queue, by a person; high-level: every queue under a prefix, on
//! a schedule), paced by a rate limit, with loop protection.
//!
//! Each entry moves through [`EngineHandle::redrive`], which commits the entry's
//! removal and its resubmission as one transition — so a crash anywhere leaves
//! every entry either in its queue or resubmitted. A run only bookkeeps: it picks
//! entries page by page from the store (filters are SQL, pages are bounded),
//! paces them, and records what happened in its [`RedriveRunRecord`].
//!
//! Loop protection has two layers: an entry that has been redriven
//! `maxRedrives` times is poison and a run never picks it (only an explicit
//! `--entry ID --force` does); and a run only picks entries that entered their
//! queue before the run started, so an entry that fails again during the run is
//! not picked a second time by the same run.

use crate::clock::Clock;
use crate::error::EngineError;
use crate::handle::EngineHandle;
use crate::locks::LockKey;
use crate::pipeline::LoadedPipeline;
use redrive_core::definition::RetryMode;
pub use redrive_core::dlq::{RedriveMode, SkipReason};
use redrive_core::dlq::{TakeRequest, check_lineage, check_take};
use redrive_core::machine::{self, Event, ExecutionState, Trigger};
use redrive_core::merge_patch::InputPatch;
use redrive_core::schedule::StageLocks;
use redrive_core::shard::ShardId;
use redrive_core::time::Timestamp;
use redrive_store::{
    DlqEntryCursor, DlqEntryFilter, DlqEntryRecord, DlqEntryState, ExecutionKind, RedriveRunRecord, Store, StoreError, Target,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Entries resubmitted concurrently by one run (each waits for its commit).
pub const MAX_IN_FLIGHT_PER_RUN: usize = 32;
/// Entries fetched per store query.
pub const PAGE_SIZE: usize = 200;
/// Outcomes kept in a run's summary (the first ones); counts cover all.
pub const MAX_SUMMARY_OUTCOMES: usize = 100;
/// Queues itemised in a run's summary; counts cover all.
pub const MAX_SUMMARY_QUEUES: usize = 500;
/// Items listed by a dry run (counts cover all).
pub const MAX_PLAN_ITEMS: usize = 1000;
/// Fastest allowed rate.
pub const MAX_RATE_PER_SECOND: f64 = 10_000.0;
/// Default rate of a redrive.
pub const DEFAULT_RATE: Rate = Rate { per_second: Some(100.0) };
/// How often a running run writes its summary.
const SUMMARY_EVERY_MS: u64 = 500;

/// Entries per second; `None` = as fast as the engine commits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rate {
    pub per_second: Option<f64>,
}

impl Rate {
    /// `50/s`, `300/m`, `1000/h`, or `unlimited`.
    pub fn parse(text: &str) -> Result<Rate, String> {
        let what = || format!("{text:?} is not a rate; write N/s, N/m or N/h (e.g. 50/s), or unlimited");
        if text == "unlimited" {
            return Ok(Rate { per_second: None });
        }
        let (n, unit) = text.split_once('/').ok_or_else(what)?;
        let n: f64 = n.trim().parse().map_err(|_| what())?;
        let per_second = match unit.trim() {
            "s" => n,
            "m" => n / 60.0,
            "h" => n / 3600.0,
            _ => return Err(what()),
        };
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(format!("rate {text:?} must be more than 0"));
        }
        if per_second > MAX_RATE_PER_SECOND {
            return Err(format!("rate {text:?} is above the maximum of {MAX_RATE_PER_SECOND}/s; use unlimited for no limit"));
        }
        Ok(Rate { per_second: Some(per_second) })
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.per_second {
            None => write!(f, "unlimited"),
            Some(r) => write!(f, "{r}/s"),
        }
    }
}

/// Which queues a run may touch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum QueueScope {
    /// One queue (mid-level).
    Queue(String),
    /// Every queue whose name starts with this (high-level). The prefix is also
    /// the run's capability: the engine refuses entries of any other queue.
    Prefix(String),
}

/// What a redrive asks for (validated by the service).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveRequest {
    pub scope: QueueScope,
    /// Only this entry (with `force`, even if it is poison).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_id: Option<String>,
    #[serde(default)]
    pub force: bool,
    /// Only entries whose final error has this exception type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception_type: Option<String>,
    /// Only entries from this pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline_name: Option<String>,
    /// Only entries that have been in their queue at least this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub older_than_ms: Option<u64>,
    /// Redrive at most this many entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entries: Option<u64>,
    pub rate: Rate,
    pub mode: RedriveMode,
    /// A JSON merge patch for the input each entry is resubmitted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_patch: Option<serde_json::Value>,
}

/// Redriven/skipped counts of one queue in a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueCounts {
    pub redriven: u64,
    pub skipped: u64,
}

/// One entry's outcome in a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryOutcome {
    pub entry_id: String,
    pub queue: String,
    /// `redriven` or `skipped`.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What a run did so far (all of it, once finished).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveSummary {
    /// Entries the run set out to redrive (matching, not poison, capped by max).
    pub matched: u64,
    /// Entries handled so far (redriven + skipped).
    pub processed: u64,
    pub redriven: u64,
    pub skipped: u64,
    /// Skipped entries by reason code.
    pub skipped_by_reason: BTreeMap<String, u64>,
    /// Poison entries matching the filters, left parked.
    pub parked: u64,
    /// Per queue (at most [`MAX_SUMMARY_QUEUES`]).
    pub queues: BTreeMap<String, QueueCounts>,
    /// The first [`MAX_SUMMARY_OUTCOMES`] outcomes.
    pub outcomes: Vec<EntryOutcome>,
    /// Why the run failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl RedriveSummary {
    fn record(&mut self, entry: &DlqEntryRecord, result: &Result<String, SkipReason>) {
        self.processed += 1;
        let queue_known = self.queues.contains_key(&entry.queue);
        let counts = if queue_known || self.queues.len() < MAX_SUMMARY_QUEUES {
            Some(self.queues.entry(entry.queue.clone()).or_default())
        } else {
            None
        };
        let outcome = match result {
            Ok(execution_id) => {
                self.redriven += 1;
                if let Some(c) = counts {
                    c.redriven += 1;
                }
                EntryOutcome {
                    entry_id: entry.id.clone(),
                    queue: entry.queue.clone(),
                    outcome: "redriven".into(),
                    execution_id: Some(execution_id.clone()),
                    reason: None,
                }
            }
            Err(reason) => {
                self.skipped += 1;
                if let Some(c) = counts {
                    c.skipped += 1;
                }
                *self.skipped_by_reason.entry(reason.code().to_string()).or_default() += 1;
                EntryOutcome {
                    entry_id: entry.id.clone(),
                    queue: entry.queue.clone(),
                    outcome: "skipped".into(),
                    execution_id: None,
                    reason: Some(reason.to_string()),
                }
            }
        };
        if self.outcomes.len() < MAX_SUMMARY_OUTCOMES {
            self.outcomes.push(outcome);
        }
    }
}

/// What a dry run says would happen to one entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanItem {
    pub entry_id: String,
    pub queue: String,
    pub pipeline_name: String,
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    pub exception_type: String,
    pub redrive_count: u32,
    /// `redrive` or `skip`.
    pub would: String,
    /// What the redrive would do, or why it would skip.
    pub detail: String,
}

/// A dry run's answer: nothing was changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedrivePlan {
    /// Entries a run would go through (matching, not poison, capped by max).
    pub matched: u64,
    pub would_redrive: u64,
    pub would_skip: u64,
    /// Poison entries matching the filters (a run leaves them parked).
    pub parked: u64,
    /// The first [`MAX_PLAN_ITEMS`] entries.
    pub items: Vec<PlanItem>,
}

/// A run's status once an abort stopped it: no entry was started after the
/// abort; entries already resubmitted finished and are counted.
pub const ABORTED: &str = "ABORTED";

/// A run's abort request: a flag, and a wake-up for the run waiting for its
/// next turn under its rate.
#[derive(Default)]
pub(crate) struct AbortSignal {
    requested: AtomicBool,
    wake: tokio::sync::Notify,
}

impl AbortSignal {
    pub(crate) fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    fn request(&self) {
        self.requested.store(true, Ordering::SeqCst);
        // One waiter (the run's loop); the permit is kept if it is not waiting yet.
        self.wake.notify_one();
    }

    /// Sleeps until `at`, or less if an abort comes first.
    pub(crate) async fn sleep_until(&self, at: tokio::time::Instant) {
        if self.is_requested() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = self.wake.notified() => {}
        }
    }
}

/// The runs this process is driving, each with its abort signal.
#[derive(Clone, Default)]
pub struct RunningRedrives(Arc<std::sync::Mutex<HashMap<String, Arc<AbortSignal>>>>);

impl RunningRedrives {
    pub(crate) fn register(&self, run_id: &str) -> Arc<AbortSignal> {
        let signal = Arc::new(AbortSignal::default());
        self.0.lock().expect("not poisoned").insert(run_id.to_string(), signal.clone());
        signal
    }

    pub(crate) fn finished(&self, run_id: &str) {
        self.0.lock().expect("not poisoned").remove(run_id);
    }

    /// Asks run `run_id` to stop starting entries. False when this process is
    /// not driving it (finished, or run by another process).
    pub fn abort(&self, run_id: &str) -> bool {
        match self.0.lock().expect("not poisoned").get(run_id) {
            Some(signal) => {
                signal.request();
                true
            }
            None => false,
        }
    }
}

/// One entry's redrive as the process holding its shard is asked to do it
/// (`--spread`): the holder loads the pipeline (new-execution mode) itself.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryRedrive {
    pub entry_id: String,
    /// The entry's pipeline or function (its shard's holder is asked).
    pub source_name: String,
    pub mode: RedriveMode,
    pub force: bool,
    /// The run's queue prefix (its capability), if it has one.
    pub scope_prefix: Option<String>,
    pub input_patch: Option<serde_json::Value>,
}

/// The answer of another process to an [`EntryRedrive`]: the execution the
/// entry was resubmitted to, or why not ([`EngineError::NotRedriven`]; its
/// [`EngineError::OtherShard`] when no process holding the shard answered).
pub type PeerFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, EngineError>> + Send>>;

/// Asks the process holding a shard to redrive one entry.
pub type PeerRedrive = Arc<dyn Fn(EntryRedrive) -> PeerFuture + Send + Sync>;

/// `--spread`: who drives a shard, seen from this process.
#[derive(Clone)]
pub enum ShardHolder {
    /// This process: the shard's engine.
    Here(EngineHandle),
    /// Another process, asked through [`PeerRedrive`] (which finds the
    /// shard's holder at the time of each call).
    Elsewhere(PeerRedrive),
}

/// `--spread`: who drives each shard.
pub type ShardHolders = Arc<dyn Fn(ShardId) -> ShardHolder + Send + Sync>;

/// Runs redrives against a store and an engine.
pub struct Redriver<S: Store> {
    pub store: Arc<S>,
    pub engine: EngineHandle,
    pub clock: Arc<dyn Clock>,
    /// Where the runs it drives can be aborted.
    pub running: RunningRedrives,
    /// With a store of one shard (`--spread`): who drives the other shards —
    /// an entry of a shard another process holds is redriven by that process.
    pub shard_holders: Option<ShardHolders>,
}

impl<S: Store> Clone for Redriver<S> {
    fn clone(&self) -> Self {
        let Redriver { store, engine, clock, running, shard_holders } = self;
        Redriver {
            store: store.clone(),
            engine: engine.clone(),
            clock: clock.clone(),
            running: running.clone(),
            shard_holders: shard_holders.clone(),
        }
    }
}

/// The store filter of a request's entries, as of `started_at`.
pub fn entry_filter(req: &RedriveRequest, started_at: Timestamp) -> DlqEntryFilter {
    let older = started_at.unix_ms() - i64::try_from(req.older_than_ms.unwrap_or(0)).unwrap_or(i64::MAX);
    let (queue, queue_prefix) = match &req.scope {
        QueueScope::Queue(q) => (Some(q.clone()), None),
        QueueScope::Prefix(p) => (None, Some(p.clone())),
    };
    DlqEntryFilter {
        queue,
        queue_prefix,
        state: Some(DlqEntryState::Queued),
        poison: Some(false),
        exception_type: req.exception_type.clone(),
        source_name: req.pipeline_name.clone(),
        // Never entries that entered after the run started: one that fails
        // again during the run waits for the next run.
        entered_at_or_before: Some(Timestamp::from_unix_ms(older)),
        after: None,
        limit: PAGE_SIZE,
    }
}

impl<S: Store> Redriver<S> {
    /// Who drives `entry`'s pipeline: this engine, or (`--spread`) the
    /// engine of another shard of this process, or another process.
    fn holder_of(&self, entry: &DlqEntryRecord) -> Result<ShardHolder, SkipReason> {
        let Some(held) = self.store.driven_shard() else { return Ok(ShardHolder::Here(self.engine.clone())) };
        let shard = ShardId::of(entry.source.name());
        if shard == held {
            return Ok(ShardHolder::Here(self.engine.clone()));
        }
        self.shard_holders.as_ref().map(|holders| holders(shard)).ok_or(SkipReason::OtherShard(shard.index()))
    }

    fn scope_prefix(req: &RedriveRequest) -> Option<&str> {
        match &req.scope {
            QueueScope::Prefix(p) => Some(p.as_str()),
            QueueScope::Queue(_) => None,
        }
    }

    /// The latest version of a pipeline, for new executions (cached per run).
    async fn latest_pipeline(
        &self,
        cache: &mut HashMap<String, Option<Arc<LoadedPipeline>>>,
        name: &str,
    ) -> Result<Option<Arc<LoadedPipeline>>, EngineError> {
        if let Some(p) = cache.get(name) {
            return Ok(p.clone());
        }
        let loaded = match self.store.get_pipeline(name, None).await? {
            Some(rec) => Some(Arc::new(LoadedPipeline::from_record(rec)?)),
            None => None,
        };
        cache.insert(name.to_string(), loaded.clone());
        Ok(loaded)
    }

    /// The single entry of an `--entry` request, if it is in the request's scope.
    async fn single_entry(&self, req: &RedriveRequest, id: &str) -> Result<Option<DlqEntryRecord>, StoreError> {
        let entry = self.store.get_dlq_entry(id).await?;
        Ok(entry.filter(|e| match &req.scope {
            QueueScope::Queue(q) => &e.queue == q,
            QueueScope::Prefix(p) => e.queue.starts_with(p.as_str()),
        }))
    }

    /// Whether the entry's execution would accept the stage retry now: the same
    /// check the driver makes, on a copy of the stored state (the machine is pure).
    /// `locks`: each pipeline's stage locks, read once per dry run.
    async fn plan_stage_retry(
        &self,
        e: &DlqEntryRecord,
        patch: Option<&serde_json::Value>,
        now: Timestamp,
        locks: &mut HashMap<String, StageLocks<LockKey>>,
    ) -> Result<Result<String, SkipReason>, EngineError> {
        let Some(rec) = self.store.get_execution(&e.execution_id).await? else {
            return Ok(Err(SkipReason::ExecutionGone(e.execution_id.clone())));
        };
        let Target::Pipeline { name, version } = &rec.target else {
            return Ok(Err(SkipReason::Refused(format!("execution {} is not a pipeline execution", rec.id))));
        };
        let Some(prec) = self.store.get_pipeline(name, Some(*version)).await? else {
            return Ok(Err(SkipReason::PipelineGone(format!("{name} version {version}"))));
        };
        let loaded = LoadedPipeline::from_record(prec)?;
        let mut state: ExecutionState = serde_json::from_str(&rec.state_json)
            .map_err(|err| EngineError::CorruptState { id: rec.id.clone(), reason: err.to_string() })?;
        if let Err(refused) = check_lineage(&rec.id, state.dead_letter.as_ref(), &e.id) {
            return Ok(Err(refused));
        }
        let Some(si) = loaded.pipeline.stage_index(&e.stage) else {
            return Ok(Err(SkipReason::Refused(format!("stage {} is not in the execution's pipeline", e.stage))));
        };
        if state.stage_locked {
            if !locks.contains_key(name) {
                locks.insert(name.clone(), crate::locks::locks_of(&crate::locks::unfinished(&*self.store, name).await?));
            }
            if let Some(why) = crate::locks::held_by_another(&locks[name], si, &e.stage, &(rec.created_at, rec.id.clone())) {
                return Ok(Err(SkipReason::Refused(why)));
            }
        }
        let input = match patch.cloned() {
            None => None,
            Some(p) => {
                let current = state.input.as_ref().map_or_else(|| rec.input_json.clone(), |i| i.to_string());
                match InputPatch::apply_text(&current, p) {
                    Ok(input) => Some(input),
                    Err(e) => return Ok(Err(SkipReason::Refused(format!("the input patch: {e}")))),
                }
            }
        };
        let event = Event::RetryStage { stage: si, mode: RetryMode::FailedActions, trigger: Trigger::Redrive, input };
        Ok(match machine::apply(&loaded.pipeline, &mut state, event, now) {
            Ok(_) => Ok(format!("retry stage {} of execution {} (FAILED_ACTIONS)", e.stage, e.execution_id)),
            Err(r) => Err(SkipReason::Refused(r.to_string())),
        })
    }

    /// What a run would do now, changing nothing.
    pub async fn plan(&self, req: &RedriveRequest) -> Result<RedrivePlan, EngineError> {
        let now = self.clock.now();
        let mut plan = RedrivePlan::default();
        let mut pipelines = HashMap::new();
        let mut locks = HashMap::new();
        let entries: Vec<DlqEntryRecord> = match &req.entry_id {
            Some(id) => self.single_entry(req, id).await?.into_iter().collect(),
            None => {
                let filter = entry_filter(req, now);
                plan.parked = self.store.count_dlq_entries(DlqEntryFilter { poison: Some(true), ..filter.clone() }).await?;
                let mut total = self.store.count_dlq_entries(filter.clone()).await?;
                if let Some(max) = req.max_entries {
                    total = total.min(max);
                }
                plan.matched = total;
                let mut out = Vec::new();
                let mut after: Option<DlqEntryCursor> = None;
                while (out.len() as u64) < total.min(MAX_PLAN_ITEMS as u64) {
                    let page = self.store.list_dlq_entries(DlqEntryFilter { after: after.clone(), ..filter.clone() }).await?;
                    let Some(last) = page.last() else { break };
                    after = Some(last.cursor());
                    out.extend(page);
                }
                out.truncate(total.min(MAX_PLAN_ITEMS as u64) as usize);
                out
            }
        };
        if req.entry_id.is_some() {
            plan.matched = entries.len() as u64;
        }
        for e in entries {
            // The same checks the driver makes; the scope was applied by the listing.
            let take = TakeRequest { force: req.force, scope: None, being_taken: false };
            let verdict: Result<String, String> = if let Err(skip) = check_take(Some(&e.facts()), &take) {
                Err(skip.to_string())
            } else if e.source.kind() == ExecutionKind::Function && req.input_patch.is_some() {
                Err(SkipReason::Refused("an input patch applies to pipeline entries only".into()).to_string())
            } else if let Some(Err(why)) =
                req.input_patch.clone().filter(|_| req.mode == RedriveMode::NewExecution).map(|p| InputPatch::apply_text(&e.input_json, p))
            {
                Err(SkipReason::Refused(format!("the input patch: {why}")).to_string())
            } else if e.source.kind() == ExecutionKind::Function {
                // A durable function's entry resumes its execution in either mode.
                Ok(format!(
                    "resume function execution {} (its failed step {} runs again; the function must be registered)",
                    e.execution_id, e.action
                ))
            } else {
                match req.mode {
                    RedriveMode::RetryStage => {
                        self.plan_stage_retry(&e, req.input_patch.as_ref(), now, &mut locks).await?.map_err(|r| r.to_string())
                    }
                    RedriveMode::NewExecution => match self.latest_pipeline(&mut pipelines, e.source.name()).await? {
                        Some(p) => {
                            Ok(format!("start a new execution of {} version {} with the original input", p.record.name, p.record.version))
                        }
                        None => Err(SkipReason::PipelineGone(e.source.name().to_string()).to_string()),
                    },
                }
            };
            let (would, detail) = match verdict {
                Ok(d) => {
                    plan.would_redrive += 1;
                    ("redrive", d)
                }
                Err(d) => {
                    plan.would_skip += 1;
                    ("skip", d)
                }
            };
            plan.items.push(PlanItem {
                entry_id: e.id,
                queue: e.queue,
                pipeline_name: e.source.name().to_string(),
                execution_id: e.execution_id,
                stage: e.stage,
                action: e.action,
                exception_type: e.exception_type,
                redrive_count: e.redrive_count,
                would: would.into(),
                detail,
            });
        }
        Ok(plan)
    }

    /// Runs a recorded redrive to its end, writing its summary as it goes. The
    /// run record must exist (status `RUNNING`); it ends `SUCCEEDED`, `FAILED`,
    /// or [`ABORTED`] when [`RunningRedrives::abort`] stopped it.
    pub async fn run(&self, mut record: RedriveRunRecord, req: RedriveRequest) -> RedriveRunRecord {
        let mut summary = RedriveSummary::default();
        let abort = self.running.register(&record.id);
        let result = self.drive(&record, &req, &mut summary, &abort).await;
        self.running.finished(&record.id);
        record.finished_at = Some(self.clock.now());
        match result {
            Ok(()) if abort.is_requested() => record.status = ABORTED.into(),
            Ok(()) => record.status = "SUCCEEDED".into(),
            Err(e) => {
                // The engine stopping (server shutdown) leaves the run for the
                // next start to mark INTERRUPTED; anything else failed it.
                record.status = if matches!(e, EngineError::Stopped) { "INTERRUPTED" } else { "FAILED" }.into();
                summary.error = Some(e.to_string());
            }
        }
        record.summary_json = serde_json::to_string(&summary).expect("summary serialises");
        self.engine.metrics().redrive_run_ended(&record.status);
        if let Err(e) = self.store.update_redrive_run(record.clone()).await {
            tracing::error!(run = record.id, error = %e, "could not record the end of a redrive run");
        }
        record
    }

    fn settle(
        joined: Result<(DlqEntryRecord, Result<String, EngineError>), tokio::task::JoinError>,
        summary: &mut RedriveSummary,
    ) -> Result<(), EngineError> {
        let (entry, r) = joined.map_err(|e| EngineError::Conflict(format!("a redrive task failed: {e}")))?;
        let outcome = match r {
            Ok(execution_id) => Ok(execution_id),
            Err(EngineError::NotRedriven(reason)) => Err(reason),
            // The shard moved during the run, and no holder could be asked.
            Err(EngineError::OtherShard { shard, .. }) => Err(SkipReason::OtherShard(shard.index())),
            Err(e) => return Err(e),
        };
        summary.record(&entry, &outcome);
        Ok(())
    }

    async fn save(&self, record: &RedriveRunRecord, summary: &RedriveSummary) -> Result<(), EngineError> {
        let mut r = record.clone();
        r.summary_json = serde_json::to_string(summary).expect("summary serialises");
        self.store.update_redrive_run(r).await?;
        Ok(())
    }

    async fn drive(
        &self,
        record: &RedriveRunRecord,
        req: &RedriveRequest,
        summary: &mut RedriveSummary,
        abort: &AbortSignal,
    ) -> Result<(), EngineError> {
        let started_at = record.started_at;
        let filter = entry_filter(req, started_at);
        let (total, mut source): (u64, Source) = match &req.entry_id {
            Some(id) => match self.single_entry(req, id).await? {
                Some(entry) => (1, Source::One(Some(Box::new(entry)))),
                None => {
                    // Purged (or moved) since the request was accepted: a skip, not a failure.
                    summary.matched = 1;
                    summary.processed = 1;
                    summary.skipped = 1;
                    summary.skipped_by_reason.insert(SkipReason::NotFound.code().to_string(), 1);
                    summary.outcomes.push(EntryOutcome {
                        entry_id: id.clone(),
                        queue: String::new(),
                        outcome: "skipped".into(),
                        execution_id: None,
                        reason: Some(SkipReason::NotFound.to_string()),
                    });
                    return Ok(());
                }
            },
            None => {
                summary.parked = self.store.count_dlq_entries(DlqEntryFilter { poison: Some(true), ..filter.clone() }).await?;
                let mut total = self.store.count_dlq_entries(filter.clone()).await?;
                if let Some(max) = req.max_entries {
                    total = total.min(max);
                }
                (total, Source::Pages { after: None, page: Vec::new().into_iter(), done: false })
            }
        };
        summary.matched = total;
        self.save(record, summary).await?;

        let mut pipelines: HashMap<String, Option<Arc<LoadedPipeline>>> = HashMap::new();
        let mut in_flight = tokio::task::JoinSet::new();
        let mut picked: u64 = 0;
        let interval = req.rate.per_second.map(|r| std::time::Duration::from_secs_f64(1.0 / r));
        let mut next_at = tokio::time::Instant::now();
        let mut last_save = tokio::time::Instant::now();
        loop {
            let open = picked < total && in_flight.len() < MAX_IN_FLIGHT_PER_RUN && !abort.is_requested();
            let next = if open { source.next(&*self.store, &filter).await? } else { None };
            if let Some(entry) = next {
                picked += 1;
                if let Some(step) = interval {
                    abort.sleep_until(next_at).await;
                    // No bursts after a stall: the schedule restarts from now.
                    next_at = next_at.max(tokio::time::Instant::now()) + step;
                }
                if abort.is_requested() {
                    continue; // aborted while waiting for its turn: left in the queue
                }
                let pipeline = match req.mode {
                    RedriveMode::NewExecution => self.latest_pipeline(&mut pipelines, entry.source.name()).await?,
                    RedriveMode::RetryStage => None,
                };
                let holder = match self.holder_of(&entry) {
                    Ok(holder) => holder,
                    Err(reason) => {
                        summary.record(&entry, &Err(reason));
                        continue;
                    }
                };
                let call = EntryRedrive {
                    entry_id: entry.id.clone(),
                    source_name: entry.source.name().to_string(),
                    mode: req.mode,
                    force: req.force,
                    scope_prefix: Self::scope_prefix(req).map(str::to_string),
                    input_patch: req.input_patch.clone(),
                };
                in_flight.spawn(async move {
                    let r = match holder {
                        ShardHolder::Here(engine) => {
                            let EntryRedrive { entry_id, mode, force, scope_prefix, input_patch, .. } = call;
                            engine.redrive(&entry_id, mode, force, scope_prefix.as_deref(), pipeline, input_patch).await
                        }
                        ShardHolder::Elsewhere(peer) => peer(call).await,
                    };
                    (entry, r)
                });
                while let Some(joined) = in_flight.try_join_next() {
                    Self::settle(joined, summary)?;
                }
            } else {
                // Nothing more can start now: wait for a resubmission to finish.
                match in_flight.join_next().await {
                    Some(joined) => Self::settle(joined, summary)?,
                    None => break,
                }
            }
            if last_save.elapsed() >= std::time::Duration::from_millis(SUMMARY_EVERY_MS) {
                self.save(record, summary).await?;
                last_save = tokio::time::Instant::now();
            }
        }
        Ok(())
    }
}

/// Where a run's entries come from: one entry, or pages of the filter.
enum Source {
    One(Option<Box<DlqEntryRecord>>),
    Pages { after: Option<DlqEntryCursor>, page: std::vec::IntoIter<DlqEntryRecord>, done: bool },
}

impl Source {
    async fn next<S: Store>(&mut self, store: &S, filter: &DlqEntryFilter) -> Result<Option<DlqEntryRecord>, StoreError> {
        match self {
            Source::One(e) => Ok(e.take().map(|e| *e)),
            Source::Pages { after, page, done } => {
                if let Some(e) = page.next() {
                    return Ok(Some(e));
                }
                if *done {
                    return Ok(None);
                }
                let rows = store.list_dlq_entries(DlqEntryFilter { after: after.clone(), ..filter.clone() }).await?;
                if rows.len() < filter.limit.max(1) {
                    *done = true;
                }
                *after = rows.last().map(DlqEntryRecord::cursor).or(after.take());
                *page = rows.into_iter();
                Ok(page.next())
            }
        }
    }
}

/// Shortest interval between runs of a schedule.
pub const MIN_SCHEDULE_EVERY_MS: u64 = 1000;
/// Schedules one server runs at most.
pub const MAX_SCHEDULES: usize = 100;

/// A high-level redrive: every `every_ms`, redrive every queue under a prefix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedriveSchedule {
    pub name: String,
    pub every_ms: u64,
    /// Its scope is always [`QueueScope::Prefix`]; no `entry_id`, no `force`.
    pub request: RedriveRequest,
}

impl RedriveSchedule {
    pub fn prefix(&self) -> &str {
        match &self.request.scope {
            QueueScope::Prefix(p) => p,
            QueueScope::Queue(q) => q,
        }
    }
}

impl<S: Store> Redriver<S> {
    /// When `schedule` runs next: `every` after its last recorded run, or after
    /// `since` (the server's start) if it never ran.
    pub async fn next_due(&self, schedule: &RedriveSchedule, since: Timestamp) -> Result<Timestamp, StoreError> {
        let last = self
            .store
            .list_redrive_runs(redrive_store::RedriveRunFilter { schedule: Some(schedule.name.clone()), before: None, limit: 1 })
            .await?;
        Ok(last.first().map_or(since, |r| r.started_at).plus_ms(schedule.every_ms))
    }

    /// Creates a run record (`RUNNING`) for `req`.
    pub async fn create_run(&self, req: &RedriveRequest, schedule: Option<&str>) -> Result<RedriveRunRecord, StoreError> {
        let record = RedriveRunRecord {
            id: uuid::Uuid::new_v4().to_string(),
            schedule: schedule.map(str::to_string),
            status: "RUNNING".into(),
            dry_run: false,
            started_at: self.clock.now(),
            finished_at: None,
            request_json: serde_json::to_string(req).expect("request serialises"),
            summary_json: serde_json::to_string(&RedriveSummary::default()).expect("summary serialises"),
        };
        self.store.create_redrive_run(record.clone()).await?;
        Ok(record)
    }

    /// Records a scheduled run in the audit log under the schedule's own
    /// principal, `schedule:<name>` (status 200 when it went through every
    /// matching entry, else 500; the run's id and status in the summary).
    async fn audit_scheduled_run(&self, schedule: &RedriveSchedule, done: &RedriveRunRecord) {
        let record = redrive_store::AuditRecord {
            seq: 0,
            at: self.clock.now(),
            principal: format!("schedule:{}", schedule.name),
            action: "scheduled redrive".to_string(),
            target: Some(format!("{}*", schedule.prefix())),
            status: if done.status == "SUCCEEDED" { 200 } else { 500 },
            summary_json: serde_json::json!({"run": done.id, "status": done.status}).to_string(),
        };
        if let Err(e) = self.store.append_audit(record).await {
            tracing::warn!(schedule = schedule.name, error = %e, "the audit record of a scheduled redrive could not be written");
        }
    }

    /// Runs `schedule` forever: sleeps until it is due, runs it to the end (so
    /// runs of one schedule never overlap), records it, repeats. Returns when the
    /// engine stops.
    pub async fn run_schedule(self, schedule: RedriveSchedule, since: Timestamp) {
        loop {
            let due = match self.next_due(&schedule, since).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(schedule = schedule.name, error = %e, "cannot read the schedule's last run; retrying in 10s");
                    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                    continue;
                }
            };
            self.clock.sleep_until(due).await;
            let record = match self.create_run(&schedule.request, Some(&schedule.name)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(schedule = schedule.name, error = %e, "cannot record a scheduled redrive; retrying in 10s");
                    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                    continue;
                }
            };
            let done = self.run(record, schedule.request.clone()).await;
            tracing::info!(schedule = schedule.name, run = done.id, status = done.status, "scheduled redrive finished");
            self.audit_scheduled_run(&schedule, &done).await;
            if done.status == "INTERRUPTED" {
                return; // the engine stopped
            }
        }
    }
}
