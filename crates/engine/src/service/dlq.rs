//! Dead-letter queues as a service: queues, entries, purges, redrives (manual,
//! dry, scheduled) and their recorded runs.

use super::{Service, ServiceError, validate_name};
use crate::error::EngineError;
use crate::pipeline::LoadedPipeline;
use crate::redrive::{
    EntryRedrive, MAX_SCHEDULES, MIN_SCHEDULE_EVERY_MS, QueueScope, RedriveMode, RedrivePlan, RedriveRequest, RedriveSchedule, Redriver,
    SkipReason,
};
use redrive_core::time::Timestamp;
use redrive_store::{
    DlqEntryCursor, DlqEntryFilter, DlqEntryRecord, DlqEntryState, DlqQueueRecord, DlqQueueStats, MAX_MAX_REDRIVES, RedriveRunFilter,
    RedriveRunRecord, Store,
};
use std::sync::Arc;

/// Longest exception type a filter may name.
pub use redrive_core::limits::MAX_EXCEPTION_TYPE_CHARS;

/// Which entries of a queue to list or purge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntryQuery {
    pub exception_type: Option<String>,
    pub pipeline_name: Option<String>,
    /// Only entries in their queue at least this long.
    pub older_than_ms: Option<u64>,
    /// `None`: entries in the queue (`QUEUED`); `Some(s)`: entries in state `s`.
    pub state: Option<DlqEntryState>,
    /// Any state (overrides `state`).
    pub any_state: bool,
    pub poison: Option<bool>,
    pub after: Option<DlqEntryCursor>,
    pub limit: usize,
}

fn check_exception_type(t: &Option<String>) -> Result<(), ServiceError> {
    if let Some(t) = t
        && (t.is_empty() || t.chars().count() > MAX_EXCEPTION_TYPE_CHARS || t.chars().any(char::is_control))
    {
        return Err(ServiceError::Validation(format!(
            "exception type filter {t:?} must be 1 to {MAX_EXCEPTION_TYPE_CHARS} printable characters (e.g. Step.THROTTLING)"
        )));
    }
    Ok(())
}

/// A queue-name prefix: non-empty, made of name characters.
pub fn validate_prefix(field: &str, prefix: &str) -> Result<(), ServiceError> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 100
        && prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Validation(format!("{field} {prefix:?} must be 1 to 100 characters of A-Z a-z 0-9 . @ - _")))
    }
}

impl<S: Store> Service<S> {
    fn redriver(&self) -> Redriver<S> {
        let (store, engine, clock) = (self.store.clone(), self.engine.clone(), self.clock.clone());
        Redriver { store, engine, clock, running: self.running.clone(), shard_holders: self.shard_holders.clone() }
    }

    fn entry_filter(&self, queue: Option<&str>, q: &EntryQuery) -> Result<DlqEntryFilter, ServiceError> {
        check_exception_type(&q.exception_type)?;
        if let Some(p) = &q.pipeline_name {
            validate_name("source pipeline", p)?;
        }
        let now = self.clock.now();
        Ok(DlqEntryFilter {
            queue: queue.map(str::to_string),
            queue_prefix: None,
            state: if q.any_state { None } else { Some(q.state.unwrap_or(DlqEntryState::Queued)) },
            poison: q.poison,
            exception_type: q.exception_type.clone(),
            source_name: q.pipeline_name.clone(),
            entered_at_or_before: q
                .older_than_ms
                .map(|ms| Timestamp::from_unix_ms(now.unix_ms().saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX)))),
            after: q.after.clone(),
            limit: q.limit,
        })
    }

    async fn existing_queue(&self, name: &str) -> Result<DlqQueueStats, ServiceError> {
        validate_name("queue name", name)?;
        self.store.get_dlq_queue(name).await?.ok_or_else(|| ServiceError::DlqQueueNotFound(name.into()))
    }

    /// Queues by name (with depth, poison count, oldest entry), optionally under a prefix.
    pub async fn list_dlq_queues(
        &self,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DlqQueueStats>, ServiceError> {
        if let Some(p) = prefix {
            validate_prefix("prefix", p)?;
        }
        Ok(self.store.list_dlq_queues(prefix, after, limit).await?)
    }

    pub async fn get_dlq_queue(&self, name: &str) -> Result<DlqQueueStats, ServiceError> {
        self.existing_queue(name).await
    }

    /// Creates the queue if needed and sets its `maxRedrives` (1..=1000).
    pub async fn configure_dlq_queue(&self, name: &str, max_redrives: u32) -> Result<DlqQueueRecord, ServiceError> {
        validate_name("queue name", name)?;
        if !(1..=MAX_MAX_REDRIVES).contains(&max_redrives) {
            return Err(ServiceError::Validation(format!("maxRedrives {max_redrives} is out of range 1..={MAX_MAX_REDRIVES}")));
        }
        Ok(self.store.configure_dlq_queue(name, max_redrives, self.clock.now()).await?)
    }

    /// Entries of a queue, oldest first.
    pub async fn list_dlq_entries(&self, queue: &str, q: &EntryQuery) -> Result<Vec<DlqEntryRecord>, ServiceError> {
        self.existing_queue(queue).await?;
        let filter = self.entry_filter(Some(queue), q)?;
        Ok(self.store.list_dlq_entries(filter).await?)
    }

    /// How many entries of a queue match (paging ignored).
    pub async fn count_dlq_entries(&self, queue: &str, q: &EntryQuery) -> Result<u64, ServiceError> {
        self.existing_queue(queue).await?;
        let filter = self.entry_filter(Some(queue), q)?;
        Ok(self.store.count_dlq_entries(filter).await?)
    }

    pub async fn get_dlq_entry(&self, id: &str) -> Result<DlqEntryRecord, ServiceError> {
        if id.is_empty() || id.len() > 100 {
            return Err(ServiceError::Validation(format!("entry id {id:?} must be 1 to 100 characters")));
        }
        self.store.get_dlq_entry(id).await?.ok_or_else(|| ServiceError::DlqEntryNotFound(id.into()))
    }

    /// Deletes the matching entries still in the queue (never ones being
    /// redriven). Returns how many.
    pub async fn purge_dlq(&self, queue: &str, q: &EntryQuery) -> Result<u64, ServiceError> {
        self.existing_queue(queue).await?;
        let filter = self.entry_filter(Some(queue), q)?;
        Ok(self.engine.purge(filter).await?)
    }

    fn check_request(req: &RedriveRequest) -> Result<(), ServiceError> {
        match &req.scope {
            QueueScope::Queue(q) => {
                validate_name("queue name", q)?;
            }
            QueueScope::Prefix(p) => validate_prefix("queuePrefix", p)?,
        }
        if req.force && req.entry_id.is_none() {
            return Err(ServiceError::Validation(
                "force is only allowed with a single entry (--entry ID): bulk redrives never touch poison entries".into(),
            ));
        }
        if let Some(id) = &req.entry_id
            && (id.is_empty() || id.len() > 100)
        {
            return Err(ServiceError::Validation(format!("entry id {id:?} must be 1 to 100 characters")));
        }
        check_exception_type(&req.exception_type)?;
        if let Some(p) = &req.pipeline_name {
            validate_name("source pipeline", p)?;
        }
        if req.max_entries == Some(0) {
            return Err(ServiceError::Validation("maxEntries must be at least 1".into()));
        }
        if let Some(r) = req.rate.per_second
            && !(r.is_finite() && r > 0.0 && r <= crate::redrive::MAX_RATE_PER_SECOND)
        {
            return Err(ServiceError::Validation(format!(
                "rate {r}/s is out of range; more than 0 and at most {}/s",
                crate::redrive::MAX_RATE_PER_SECOND
            )));
        }
        Ok(())
    }

    /// Checks a request and that its queue (or entry) exists.
    async fn check_redrive(&self, req: &RedriveRequest) -> Result<(), ServiceError> {
        Self::check_request(req)?;
        if let QueueScope::Queue(q) = &req.scope {
            self.existing_queue(q).await?;
        }
        if let Some(id) = &req.entry_id {
            let entry = self.get_dlq_entry(id).await?;
            let in_scope = match &req.scope {
                QueueScope::Queue(q) => &entry.queue == q,
                QueueScope::Prefix(p) => entry.queue.starts_with(p.as_str()),
            };
            if !in_scope {
                return Err(ServiceError::DlqEntryNotFound(format!("{id} (it is in queue {}, not this one)", entry.queue)));
            }
        }
        Ok(())
    }

    /// What a redrive would do now; changes nothing.
    pub async fn plan_redrive(&self, req: &RedriveRequest) -> Result<RedrivePlan, ServiceError> {
        self.check_redrive(req).await?;
        Ok(self.redriver().plan(req).await?)
    }

    /// Records a redrive run and starts it in the background; returns the run as
    /// recorded (status `RUNNING`). Follow it with [`Service::get_redrive_run`].
    pub async fn start_redrive(&self, req: RedriveRequest) -> Result<RedriveRunRecord, ServiceError> {
        self.check_redrive(&req).await?;
        let redriver = self.redriver();
        let record = redriver.create_run(&req, None).await?;
        let run = record.clone();
        tokio::spawn(async move {
            redriver.run(run, req).await;
        });
        Ok(record)
    }

    /// Redrives one entry now, through this engine, answering when its
    /// resubmission is committed: the execution it went to, or why the entry
    /// stayed where it was. What a run asks of the process holding an entry's
    /// shard (`--spread`); `source_name` must be the entry's pipeline (or
    /// function), which routed the request here.
    pub async fn redrive_entry_here(&self, call: EntryRedrive) -> Result<Result<String, SkipReason>, ServiceError> {
        validate_name("pipeline name", &call.source_name)?;
        if let Some(p) = &call.scope_prefix {
            validate_prefix("queuePrefix", p)?;
        }
        let entry = match self.get_dlq_entry(&call.entry_id).await {
            Err(ServiceError::DlqEntryNotFound(_)) => return Ok(Err(SkipReason::NotFound)),
            other => other?,
        };
        if entry.source.name() != call.source_name {
            return Err(ServiceError::Validation(format!(
                "dead-letter entry {} came from {}, not {}",
                entry.id,
                entry.source.name(),
                call.source_name
            )));
        }
        let pipeline = match call.mode {
            RedriveMode::NewExecution => match self.store.get_pipeline(&call.source_name, None).await? {
                Some(rec) => Some(Arc::new(LoadedPipeline::from_record(rec)?)),
                None => None,
            },
            RedriveMode::RetryStage => None,
        };
        let EntryRedrive { entry_id, mode, force, scope_prefix, input_patch, .. } = call;
        match self.engine.redrive(&entry_id, mode, force, scope_prefix.as_deref(), pipeline, input_patch).await {
            Ok(execution_id) => Ok(Ok(execution_id)),
            Err(EngineError::NotRedriven(reason)) => Ok(Err(reason)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_redrive_run(&self, id: &str) -> Result<RedriveRunRecord, ServiceError> {
        if id.is_empty() || id.len() > 100 {
            return Err(ServiceError::Validation(format!("run id {id:?} must be 1 to 100 characters")));
        }
        self.store.get_redrive_run(id).await?.ok_or_else(|| ServiceError::RedriveRunNotFound(id.into()))
    }

    /// Aborts a running redrive: it starts no more entries; those already
    /// resubmitted finish and are counted, and the run ends `ABORTED`. Returns the
    /// run as recorded now (still `RUNNING` until it settles).
    pub async fn abort_redrive(&self, id: &str) -> Result<RedriveRunRecord, ServiceError> {
        let run = self.get_redrive_run(id).await?;
        if run.status != "RUNNING" {
            return Err(ServiceError::Conflict(format!("redrive run {id} is already {}; only a RUNNING run can be aborted", run.status)));
        }
        if !self.running.abort(id) {
            return Err(ServiceError::Conflict(format!(
                "redrive run {id} is not driven by this server process (another process of the cluster runs it); abort it there"
            )));
        }
        Ok(run)
    }

    /// Runs newest first, optionally of one schedule.
    pub async fn list_redrive_runs(
        &self,
        schedule: Option<&str>,
        before: Option<(Timestamp, String)>,
        limit: usize,
    ) -> Result<Vec<RedriveRunRecord>, ServiceError> {
        Ok(self.store.list_redrive_runs(RedriveRunFilter { schedule: schedule.map(str::to_string), before, limit }).await?)
    }

    /// Sets the scheduled redrives (checked: unique names, prefix scopes, no
    /// single entries or force, `every` at least a second).
    pub fn set_schedules(&mut self, schedules: Vec<RedriveSchedule>) -> Result<(), ServiceError> {
        if schedules.len() > MAX_SCHEDULES {
            return Err(ServiceError::Validation(format!("{} schedules; at most {MAX_SCHEDULES}", schedules.len())));
        }
        let mut names = std::collections::HashSet::new();
        for s in &schedules {
            validate_name("schedule name", &s.name)?;
            if !names.insert(s.name.clone()) {
                return Err(ServiceError::Validation(format!("two schedules are named {}", s.name)));
            }
            if !matches!(s.request.scope, QueueScope::Prefix(_)) {
                return Err(ServiceError::Validation(format!("schedule {} must redrive a queuePrefix", s.name)));
            }
            if s.request.entry_id.is_some() || s.request.force {
                return Err(ServiceError::Validation(format!("schedule {} cannot name an entry or force", s.name)));
            }
            if s.every_ms < MIN_SCHEDULE_EVERY_MS {
                return Err(ServiceError::Validation(format!("schedule {}: every must be at least 1s", s.name)));
            }
            Self::check_request(&s.request)?;
        }
        self.schedules = schedules;
        Ok(())
    }

    pub fn schedules(&self) -> &[RedriveSchedule] {
        &self.schedules
    }

    /// When a schedule runs next (`every` after its last recorded run, or after
    /// the service started).
    pub async fn schedule_next_due(&self, schedule: &RedriveSchedule) -> Result<Timestamp, ServiceError> {
        Ok(self.redriver().next_due(schedule, self.started_at).await?)
    }

    /// Marks runs left `RUNNING` by a previous process `INTERRUPTED`, then starts
    /// one task per schedule. Call once, at server start.
    pub async fn start_schedules(self: &Arc<Self>) -> Result<u64, ServiceError> {
        let interrupted = self.store.interrupt_redrive_runs(self.clock.now()).await?;
        let bulk = self.store.interrupt_bulk_retries(self.clock.now()).await?;
        if bulk > 0 {
            tracing::warn!(count = bulk, "bulk stage retries left running by a stopped server are marked INTERRUPTED");
        }
        for s in self.schedules.clone() {
            tokio::spawn(self.redriver().run_schedule(s, self.started_at));
        }
        Ok(interrupted)
    }
}
