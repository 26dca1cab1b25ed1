//! Durable-function executions as a service (read only): listings and single
//! executions with their steps and step attempts, for the native API and the
//! `redrive execution list/get --function` commands.
//!
//! A function execution is an `executions` row of kind function
//! ([`Target::Function`]) whose state is a [`FunctionState`]; its step attempts
//! are ledger rows with `stage` = the function and `action` = the step.

use super::{Service, ServiceError, validate_execution_id, validate_name};
use redrive_core::function::FunctionState;
use redrive_store::{ExecutionCursor, ExecutionFilter, ExecutionRecord, LedgerEntry, LedgerFilter, Store, Target, TargetName};

/// Step attempts a single execution's view carries at most (the newest ones).
pub const MAX_FUNCTION_ATTEMPTS: usize = 500;

/// A function execution with its parsed state.
pub struct FunctionExecutionView {
    pub record: ExecutionRecord,
    pub state: FunctionState,
}

/// One function execution in full: its state and its step attempts.
pub struct FunctionExecutionDetail {
    pub execution: FunctionExecutionView,
    /// Step attempts in commit order: the newest [`MAX_FUNCTION_ATTEMPTS`].
    pub attempts: Vec<LedgerEntry>,
    /// Older attempts exist beyond those in `attempts`.
    pub attempts_truncated: bool,
}

/// A function execution's state as the APIs show it: a quarantined one (or one
/// whose state cannot be read) is `Failed` with the fault as its error.
fn parse_fn_state(rec: &ExecutionRecord) -> FunctionState {
    let parsed = serde_json::from_str::<FunctionState>(&rec.state_json);
    let Some(error) = super::fault_failure(rec, parsed.as_ref().err()) else { return parsed.expect("no fault: it parsed") };
    let mut state = parsed.unwrap_or_else(|_| FunctionState::new(rec.id.clone(), rec.target.name(), "", rec.created_at));
    state.status = redrive_core::function::FunctionStatus::Failed;
    state.finished_at = Some(rec.updated_at);
    state.error = Some(error);
    state
}

impl<S: Store> Service<S> {
    /// A function's executions, newest first. A function that never ran (or is
    /// not registered anywhere) has none: an empty page, not an error.
    pub async fn list_function_executions(
        &self,
        function: &str,
        before: Option<ExecutionCursor>,
        limit: usize,
    ) -> Result<Vec<FunctionExecutionView>, ServiceError> {
        validate_name("function name", function)?;
        let rows = self
            .store
            .list_executions(ExecutionFilter { target: Some(TargetName::function(function)), before, limit, ..Default::default() })
            .await?;
        Ok(rows.into_iter().map(|r| FunctionExecutionView { state: parse_fn_state(&r), record: r }).collect())
    }

    /// One execution of `function`, with its newest step attempts.
    pub async fn get_function_execution(&self, function: &str, execution_id: &str) -> Result<FunctionExecutionDetail, ServiceError> {
        validate_name("function name", function)?;
        validate_execution_id("executionId", execution_id)?;
        let target = Target::function(function);
        let record = match self.store.get_execution(execution_id).await? {
            Some(r) if r.target == target => r,
            _ => {
                return Err(ServiceError::ExecutionNotFound(format!("execution {execution_id} of durable function {function} not found")));
            }
        };
        let state = parse_fn_state(&record);
        let mut attempts = self
            .store
            .list_ledger(LedgerFilter {
                target: target.target_name(),
                execution_id: Some(execution_id.to_string()),
                before_seq: None,
                limit: MAX_FUNCTION_ATTEMPTS + 1,
            })
            .await?;
        let attempts_truncated = attempts.len() > MAX_FUNCTION_ATTEMPTS;
        attempts.truncate(MAX_FUNCTION_ATTEMPTS);
        // The store lists newest first; a history reads oldest first.
        attempts.reverse();
        Ok(FunctionExecutionDetail { execution: FunctionExecutionView { record, state }, attempts, attempts_truncated })
    }
}
