//! The engine's errors (a leaf: every other module may use it).

use redrive_core::dlq::SkipReason;
use redrive_core::machine::Rejection;
use redrive_store::{ExecutionFault, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("pipeline {name} version {version} in the store does not parse: {problems}")]
    StoredDefinition { name: String, version: u32, problems: String },
    #[error("execution {0} not found")]
    ExecutionNotFound(String),
    #[error("execution {id} is already {status}")]
    AlreadyFinished { id: String, status: String },
    #[error("the state of execution {id} is unreadable: {reason}")]
    CorruptState { id: String, reason: String },
    #[error("another writer changed execution state underneath this engine: {0}")]
    Conflict(String),
    #[error("the engine has stopped")]
    Stopped,
    #[error("stage {stage} not found in pipeline {pipeline} version {version}")]
    StageNotFound { pipeline: String, version: u32, stage: String },
    /// The state machine refused the request (e.g. a stage retry that is not allowed).
    #[error("{0}")]
    Rejected(Rejection),
    /// The execution is a durable function's, not a pipeline's.
    #[error("execution {0} is a durable function execution")]
    FunctionExecution(String),
    /// No function of that name is registered in this process.
    #[error("no durable function named {0} is registered in this process")]
    FunctionNotRegistered(String),
    /// The function execution name is taken by an execution with another input.
    #[error("execution {name} of function {function} already exists (execution {execution_id}) with a different input")]
    ExecutionAlreadyExists { function: String, name: String, execution_id: String },
    /// The start's client token was used before (for `execution_id`).
    #[error("clientRequestToken already used for execution {execution_id}")]
    TokenReused { execution_id: String, same_request: bool },
    /// A redrive left the dead-letter entry where it was.
    #[error("{0}")]
    NotRedriven(SkipReason),
    /// The engine gave up on the execution and failed it (quarantined it): its
    /// state cannot be read, or a transition of it can never be committed.
    #[error("execution {id} was failed by the engine ({exception_type}): {message}")]
    Quarantined { id: String, exception_type: String, message: String },
    /// PARALLEL: the pipeline already has `maxConcurrentExecutions` unfinished
    /// executions (a start, or a stage retry reopening a finished one, is refused).
    #[error("pipeline {pipeline} already has {running} executions in progress (maxConcurrentExecutions {max})")]
    ConcurrencyLimit { pipeline: String, running: usize, max: u32 },
    /// The execution belongs to a shard this engine does not drive (servers
    /// started with `--spread`): another process drives it.
    #[error(
        "execution {execution_id} ({target}) is in shard {shard}, which this engine does not drive; send the request to the process that holds it"
    )]
    OtherShard { execution_id: String, target: String, shard: redrive_core::shard::ShardId },
    /// A value of the request went over one of the limits (the message says which).
    #[error("{0}")]
    LimitExceeded(String),
}

impl EngineError {
    pub(crate) fn quarantined(id: &str, fault: &ExecutionFault) -> EngineError {
        EngineError::Quarantined { id: id.to_string(), exception_type: fault.exception_type.clone(), message: fault.message.clone() }
    }
}
