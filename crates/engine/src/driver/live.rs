//! One execution in memory, pipeline or function alike: the bookkeeping both
//! kinds share (version, unacknowledged commits, input, state size) and the
//! kind's own state.

use crate::function::DurableFunction;
use crate::handle::ExecutionOutcome;
use crate::pipeline::LoadedPipeline;
use redrive_core::function::{FunctionState, FunctionStatus};
use redrive_core::machine::{ExecutionState, ExecutionStatus};
use redrive_core::time::Timestamp;
use redrive_store::{ClientToken, Target};
use std::sync::Arc;

pub(super) struct Live {
    /// The version the store will hold once every submitted commit lands
    /// (`None` until the create is submitted). Commits land in submission order,
    /// a transient store fault is retried until the commit goes through, a
    /// refused transition gives the execution up (it leaves memory) and any other
    /// failure stops the engine, so the prediction is exact.
    pub version: Option<u64>,
    /// Submitted commits touching this execution that are not yet acknowledged; it
    /// stays in memory until they are.
    pub unacked: u32,
    /// Sent with the create transition, then dropped.
    pub client_token: Option<ClientToken>,
    pub input_json: Arc<str>,
    /// The size of the state document when last serialised, plus the outputs
    /// admitted since: what `limits::check_output_fits` measures against.
    pub state_bytes: usize,
    pub body: Body,
}

/// What the execution runs, with its state machine's state.
pub(super) enum Body {
    Pipeline(PipelineRun),
    Function(FunctionRun),
}

pub(super) struct PipelineRun {
    pub pipeline: Arc<LoadedPipeline>,
    pub state: ExecutionState,
}

pub(super) struct FunctionRun {
    pub function: Arc<dyn DurableFunction>,
    pub state: FunctionState,
    /// An invocation task is running.
    pub invoking: bool,
    /// Invoke again as soon as the running invocation ends.
    pub reinvoke: bool,
}

impl Live {
    pub fn target(&self) -> Target {
        match &self.body {
            Body::Pipeline(p) => Target::pipeline(p.pipeline.record.name.clone(), p.pipeline.record.version),
            Body::Function(f) => Target::function(f.state.function.clone()),
        }
    }

    /// The status as the execution reads it (functions map onto pipelines' statuses).
    pub fn status(&self) -> ExecutionStatus {
        match &self.body {
            Body::Pipeline(p) => p.state.status,
            Body::Function(f) => function_status(f.state.status),
        }
    }

    /// The store's status is the lifecycle: every unfinished execution (running,
    /// stopping, queued) is `InProgress`; the state has the rest.
    pub fn stored_status(&self) -> &'static str {
        let status = self.status();
        if status.is_finished() { status.as_str() } else { ExecutionStatus::InProgress.as_str() }
    }

    pub fn started_at(&self) -> Timestamp {
        match &self.body {
            Body::Pipeline(p) => p.state.started_at,
            Body::Function(f) => f.state.started_at,
        }
    }

    pub fn state_json(&self) -> String {
        match &self.body {
            Body::Pipeline(p) => serde_json::to_string(&p.state),
            Body::Function(f) => serde_json::to_string(&f.state),
        }
        .expect("state serialises")
    }

    pub fn outcome(&self, execution_id: &str) -> ExecutionOutcome {
        let (started_at, finished_at) = match &self.body {
            Body::Pipeline(p) => (p.state.started_at, p.state.finished_at),
            Body::Function(f) => (f.state.started_at, f.state.finished_at),
        };
        ExecutionOutcome {
            execution_id: execution_id.to_string(),
            status: self.status(),
            started_at,
            finished_at: finished_at.unwrap_or(started_at),
        }
    }

    /// Finished, and durably so: what a waiter may be told.
    pub fn durable_outcome(&self, execution_id: &str) -> Option<ExecutionOutcome> {
        (self.status().is_finished() && self.unacked == 0).then(|| self.outcome(execution_id))
    }

    /// Nothing about it is in flight: it may leave memory.
    pub fn is_idle(&self) -> bool {
        self.unacked == 0 && !matches!(&self.body, Body::Function(f) if f.invoking)
    }

    pub fn pipeline(&self) -> Option<&PipelineRun> {
        match &self.body {
            Body::Pipeline(p) => Some(p),
            Body::Function(_) => None,
        }
    }

    pub fn pipeline_mut(&mut self) -> Option<&mut PipelineRun> {
        match &mut self.body {
            Body::Pipeline(p) => Some(p),
            Body::Function(_) => None,
        }
    }

    pub fn function_mut(&mut self) -> Option<&mut FunctionRun> {
        match &mut self.body {
            Body::Function(f) => Some(f),
            Body::Pipeline(_) => None,
        }
    }

    pub fn function(&self) -> Option<&FunctionRun> {
        match &self.body {
            Body::Function(f) => Some(f),
            Body::Pipeline(_) => None,
        }
    }
}

pub(super) fn function_status(s: FunctionStatus) -> ExecutionStatus {
    match s {
        FunctionStatus::Running => ExecutionStatus::InProgress,
        FunctionStatus::Succeeded => ExecutionStatus::Succeeded,
        FunctionStatus::Failed => ExecutionStatus::Failed,
    }
}

/// Whether a stored execution has finished, from its record (`Err`: its state
/// cannot be read).
pub(super) fn stored_outcome(rec: &redrive_store::ExecutionRecord) -> Result<Option<ExecutionOutcome>, String> {
    let (status, started_at, finished_at) = match &rec.target {
        Target::Pipeline { .. } => {
            let state: ExecutionState = serde_json::from_str(&rec.state_json).map_err(|e| e.to_string())?;
            (state.status, state.started_at, state.finished_at)
        }
        Target::Function { .. } => {
            let state: FunctionState = serde_json::from_str(&rec.state_json).map_err(|e| e.to_string())?;
            (function_status(state.status), state.started_at, state.finished_at)
        }
    };
    Ok(status.is_finished().then(|| ExecutionOutcome {
        execution_id: rec.id.clone(),
        status,
        started_at,
        finished_at: finished_at.unwrap_or(started_at),
    }))
}
