//! Reads off the loop. A message that needs data the loop does not hold (an
//! execution not in memory, a pipeline's unfinished executions, a dead-letter
//! entry, a pipeline version) is *parked* on that [`Need`]; a task reads it and
//! sends it back ([`Loaded`]); the loop installs it and handles the parked
//! messages again, in order. So no store read is ever awaited inside a batch:
//! one slow read delays only the messages that wait for it.

use super::batch::{Batch, Finished};
use super::live::{Body, FunctionRun, Live, PipelineRun};
use super::quarantine::corrupt_state_fault;
use super::{Driver, Msg};
use crate::error::EngineError;
use crate::health::FaultSource;
use crate::locks::Unfinished;
use crate::pipeline::LoadedPipeline;
use redrive_core::function::{FunctionState, FunctionStatus};
use redrive_core::machine::{ActionStatus, Event, ExecutionState, ExecutionStatus};
use redrive_core::schedule::StageLocks;
use redrive_core::time::Timestamp;
use redrive_store::{DlqEntryRecord, ExecutionRecord, MAX_EXECUTIONS_PER_READ, PipelineRecord, Store, StoreError, Target};
use std::collections::HashMap;
use std::sync::Arc;

/// After a failed read, the loop tries it again this much later.
pub(super) const READ_RETRY_MS: u64 = 1000;

/// Data a parked message waits for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Need {
    /// An execution's record.
    Execution(String),
    /// A pipeline's unfinished executions.
    Active(String),
    /// A dead-letter entry.
    Entry(String),
    /// A pipeline version's definition.
    Pipeline(String, u32),
}

/// What a read task found.
pub(crate) enum Loaded {
    Execution(String, Result<Option<ExecutionRecord>, StoreError>),
    Active(String, Result<Unfinished, StoreError>),
    Entry(String, Result<Option<DlqEntryRecord>, StoreError>),
    Pipeline(String, u32, Result<Option<PipelineRecord>, StoreError>),
}

impl Loaded {
    fn need(&self) -> Need {
        match self {
            Loaded::Execution(id, _) => Need::Execution(id.clone()),
            Loaded::Active(p, _) => Need::Active(p.clone()),
            Loaded::Entry(id, _) => Need::Entry(id.clone()),
            Loaded::Pipeline(p, v, _) => Need::Pipeline(p.clone(), *v),
        }
    }
}

/// Where an execution a message names is.
pub(super) enum Found {
    /// In memory (installed now if it was read).
    Live,
    /// Not read yet: park on this.
    Park(Need),
    Err(EngineError),
}

/// Reads what `need` names.
async fn read<S: Store>(store: &S, need: Need) -> Loaded {
    match need {
        Need::Execution(id) => {
            let r = store.get_execution(&id).await;
            Loaded::Execution(id, r)
        }
        Need::Active(pipeline) => {
            let r = crate::locks::unfinished(store, &pipeline).await;
            Loaded::Active(pipeline, r)
        }
        Need::Entry(id) => {
            let r = store.get_dlq_entry(&id).await;
            Loaded::Entry(id, r)
        }
        Need::Pipeline(name, version) => {
            let r = store.get_pipeline(&name, Some(version)).await;
            Loaded::Pipeline(name, version, r)
        }
    }
}

impl<S: Store> Driver<S> {
    /// Parks `msg` until `need` is read (starting the read unless one is under way).
    pub(super) fn park(&mut self, need: Need, msg: Msg) {
        if matches!(msg, Msg::Timer(_)) {
            self.timer_parked(true);
        }
        let waiting = self.parked.entry(need.clone()).or_default();
        waiting.push(msg);
        if waiting.len() == 1 {
            if let Need::Active(pipeline) = &need {
                self.active_reading.insert(pipeline.clone(), Vec::new());
            }
            self.start_read(need, None);
        }
    }

    fn start_read(&mut self, need: Need, after_ms: Option<u64>) {
        if let (Need::Execution(id), None) = (&need, after_ms) {
            // Read with the others the loop needs, once its batch is handled.
            self.execution_reads.push(id.clone());
            return;
        }
        let (store, tx, epoch) = (self.store.clone(), self.own_tx.clone(), self.store_epoch);
        let delay = after_ms.map(|ms| self.clock.sleep_until(self.clock.now().plus_ms(ms)));
        tokio::spawn(async move {
            if let Some(delay) = delay {
                delay.await;
            }
            let loaded = read(&*store, need).await;
            let _ = tx.send(Msg::Loaded { epoch, loaded: Box::new(loaded) });
        });
    }

    /// Starts the execution reads asked for since the last call: one store read
    /// per [`MAX_EXECUTIONS_PER_READ`] of them, each answering every execution
    /// it was asked for (`None`: not found), so a burst of timers or resumes
    /// costs a few queries, not one each.
    pub(super) fn start_execution_reads(&mut self) {
        if self.execution_reads.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.execution_reads);
        for chunk in ids.chunks(MAX_EXECUTIONS_PER_READ) {
            let (store, tx, epoch, chunk) = (self.store.clone(), self.own_tx.clone(), self.store_epoch, chunk.to_vec());
            tokio::spawn(async move {
                let read = store.get_executions(&chunk).await;
                for (id, r) in answer_each(chunk, read) {
                    let _ = tx.send(Msg::Loaded { epoch, loaded: Box::new(Loaded::Execution(id, r)) });
                }
            });
        }
    }

    /// Installs what a read found (of the store as of `epoch`) and handles the messages parked on it. A read
    /// that failed is retried later (the engine is degraded for reads meanwhile);
    /// its messages stay parked.
    pub(super) fn loaded(&mut self, epoch: u64, loaded: Loaded, now: Timestamp, batch: &mut Batch) {
        let need = loaded.need();
        if epoch != self.store_epoch && matches!(need, Need::Execution(_) | Need::Entry(_)) {
            // The store changed outside commits (a purge, a quarantine) while it
            // was read: what was read may predate that.
            return self.start_read(need, None);
        }
        let failed = match loaded {
            Loaded::Execution(id, r) => r.map(|rec| self.stage_record(id, rec)).err(),
            Loaded::Active(pipeline, r) => r.map(|set| self.install_active(pipeline, set, now, batch)).err(),
            Loaded::Entry(id, r) => r.map(|entry| self.staged_entries.insert(id, entry)).map(drop).err(),
            Loaded::Pipeline(name, version, r) => r.map(|rec| self.install_pipeline(name, version, rec)).err(),
        };
        if let Some(e) = failed {
            self.health.fault(FaultSource::Read, &e.to_string());
            self.start_read(need, Some(READ_RETRY_MS));
            return;
        }
        self.health.cleared(FaultSource::Read);
        for msg in self.parked.remove(&need).unwrap_or_default() {
            if matches!(msg, Msg::Timer(_)) {
                self.timer_parked(false);
            }
            self.handle_now(msg, now, batch);
        }
    }

    /// Keeps a record read for parked messages — unless its execution is in
    /// memory by now (memory is ahead of the store).
    fn stage_record(&mut self, id: String, rec: Option<ExecutionRecord>) {
        if !self.live.contains_key(&id) {
            self.staged_records.insert(id, rec);
        }
    }

    fn install_active(&mut self, pipeline: String, mut read: Unfinished, now: Timestamp, batch: &mut Batch) {
        // The read may predate the finish of executions released since.
        for key in self.active_reading.remove(&pipeline).unwrap_or_default() {
            read.remove(&key);
        }
        // Executions of this pipeline in memory are ahead of the store: an
        // unfinished one not yet durable is in the set, a finished one is not.
        for (id, live) in &self.live {
            let Some(run) = live.pipeline().filter(|r| r.pipeline.record.name == pipeline) else { continue };
            let key = (run.state.started_at, id.clone());
            if run.state.status.is_finished() {
                read.remove(&key);
            } else {
                read.insert(key, run.state.stage_position());
            }
        }
        let positions = read.iter().filter_map(|(k, at)| Some((k.clone(), (*at)?)));
        let (locks, moves) = StageLocks::from_positions(positions);
        self.stage_locks.insert(pipeline.clone(), locks);
        self.active.insert(pipeline, read.into_keys().collect());
        for action in moves {
            self.lock_action(action, now, batch);
        }
    }

    fn install_pipeline(&mut self, name: String, version: u32, rec: Option<PipelineRecord>) {
        let parsed = match rec {
            None => Err(format!("pipeline {name} version {version} is missing")),
            Some(rec) => LoadedPipeline::from_record(rec).map(Arc::new).map_err(|e| e.to_string()),
        };
        self.pipelines.insert((name, version), parsed);
    }

    /// Drops what was read for parked messages once none is parked any more.
    pub(super) fn forget_staged(&mut self) {
        if self.parked.is_empty() {
            self.staged_records.clear();
            self.staged_entries.clear();
        }
    }

    /// Finds an execution for a message: in memory, or installed from what was
    /// read for it, or to be read. This engine holds the store exclusively, so an
    /// attempt a loaded pipeline state calls running belongs to a process that
    /// died: it is recovered (failed as `Step.SERVICE_FAULT` and left to its
    /// policy) at once. An unfinished function execution that is not waiting on a
    /// timer is invoked (its replay finds the step that was running). An execution
    /// whose state cannot be read is given up on (quarantined,
    /// `Engine.CORRUPT_STATE`); the engine goes on with the others.
    pub(super) fn find(&mut self, id: &str, now: Timestamp, batch: &mut Batch) -> Found {
        if self.live.contains_key(id) {
            return Found::Live;
        }
        if let Some(g) = self.given_up.get(id) {
            return Found::Err(EngineError::quarantined(id, &g.fault));
        }
        let rec = match self.staged_records.get(id) {
            None => return Found::Park(Need::Execution(id.to_string())),
            Some(None) => return Found::Err(EngineError::ExecutionNotFound(id.to_string())),
            Some(Some(rec)) => rec,
        };
        if let Some(fault) = &rec.fault {
            return Found::Err(EngineError::quarantined(id, fault));
        }
        // A shard's engine never holds another shard's execution (its holder does).
        if let Some(held) = self.store.driven_shard() {
            let shard = redrive_core::shard::ShardId::of(rec.target.name());
            if shard != held {
                return Found::Err(EngineError::OtherShard { execution_id: id.to_string(), target: rec.target.name().to_string(), shard });
            }
        }
        let body = match &rec.target {
            Target::Pipeline { name, version } => match self.pipelines.get(&(name.clone(), *version)) {
                None => return Found::Park(Need::Pipeline(name.clone(), *version)),
                Some(Ok(p)) => pipeline_body(rec, p.clone()),
                Some(Err(reason)) => Err(reason.clone()),
            },
            Target::Function { name } => match self.functions.get(name) {
                None => return Found::Err(EngineError::FunctionNotRegistered(name.clone())),
                Some(reg) => function_body(rec, reg.function.clone()),
            },
        };
        let rec = self.staged_records.get_mut(id).and_then(Option::take).expect("read above");
        match body {
            Ok(body) => {
                self.install(rec, body, now, batch);
                Found::Live
            }
            Err(reason) => {
                let fault = corrupt_state_fault(&reason);
                // Its pipeline's mode is unknown here: the queue's head decides by its own.
                let finished =
                    Finished { pipeline: rec.target.name().to_string(), key: (rec.created_at, rec.id.clone()), queued_mode: true };
                let finished = (rec.target.kind() == redrive_store::ExecutionKind::Pipeline).then_some(finished);
                self.give_up(id, fault.clone(), rec.created_at, finished, batch.pending.remove(id));
                Found::Err(EngineError::quarantined(id, &fault))
            }
        }
    }

    fn install(&mut self, rec: ExecutionRecord, body: Body, now: Timestamp, batch: &mut Batch) {
        let recover = matches!(&body, Body::Pipeline(p) if !p.state.status.is_finished()
            && p.state.stages.iter().flat_map(|s| &s.actions).any(|a| a.status == ActionStatus::Running));
        let invoke = matches!(&body, Body::Function(f) if f.state.status == FunctionStatus::Running && f.state.waiting_on().is_none());
        // An execution in its pipeline's stage locks (one waiting before a stage
        // after a restart, say) needs the locks known: reading them lets it in.
        let locked = match &body {
            Body::Pipeline(p) if p.state.stage_position().is_some() => Some(p.pipeline.record.name.clone()),
            _ => None,
        };
        let live = Live {
            version: Some(rec.version),
            unacked: 0,
            client_token: None,
            state_bytes: rec.state_json.len(),
            input_json: rec.input_json.into(),
            body,
        };
        self.live.insert(rec.id.clone(), live);
        self.installed.push(rec.id.clone());
        if recover {
            self.apply(&rec.id, Event::Recover, now, batch).expect("an unfinished execution accepts Recover");
        }
        if invoke {
            self.spawn_invocation(&rec.id);
        }
        if let Some(pipeline) = locked.filter(|p| !self.stage_locks.contains_key(p))
            && let Err(need) = self.unfinished(&pipeline)
        {
            self.park(need, Msg::HandOver { pipeline });
        }
    }

    /// Executions installed only to answer a message, finished (or paused: it
    /// runs nothing until a person resumes it) and idle, leave memory again at
    /// the end of the batch.
    pub(super) fn drop_idle_installed(&mut self, batch: &Batch) {
        for id in std::mem::take(&mut self.installed) {
            let settled = |s: ExecutionStatus| s.is_finished() || s == ExecutionStatus::Paused;
            let idle_finished = self.live.get(&id).is_some_and(|l| settled(l.status()) && l.is_idle());
            if idle_finished && !batch.pending.contains_key(&id) {
                self.evict(&id);
            }
        }
    }
}

/// One answer per id asked for, from one read of them all.
fn answer_each(
    ids: Vec<String>,
    read: Result<Vec<ExecutionRecord>, StoreError>,
) -> Vec<(String, Result<Option<ExecutionRecord>, StoreError>)> {
    match read {
        Err(e) => ids.into_iter().map(|id| (id, Err(e.clone()))).collect(),
        Ok(records) => {
            let mut found: HashMap<String, ExecutionRecord> = records.into_iter().map(|r| (r.id.clone(), r)).collect();
            ids.into_iter().map(|id| (id.clone(), Ok(found.remove(&id)))).collect()
        }
    }
}

fn pipeline_body(rec: &ExecutionRecord, pipeline: Arc<LoadedPipeline>) -> Result<Body, String> {
    let state: ExecutionState = serde_json::from_str(&rec.state_json).map_err(|e| e.to_string())?;
    if state.stages.len() != pipeline.pipeline.stages.len() || state.execution_id != rec.id {
        return Err("the state does not match its execution and pipeline".into());
    }
    Ok(Body::Pipeline(PipelineRun { pipeline, state }))
}

fn function_body(rec: &ExecutionRecord, function: Arc<dyn crate::function::DurableFunction>) -> Result<Body, String> {
    let state: FunctionState = serde_json::from_str(&rec.state_json).map_err(|e| e.to_string())?;
    Ok(Body::Function(FunctionRun { function, state, invoking: false, reinvoke: false }))
}
