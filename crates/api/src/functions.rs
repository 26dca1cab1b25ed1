//! Durable-function executions over the native REST API (read only):
//!
//! - `GET /v1/functions/{name}/executions?limit=&nextToken=`: newest first, one
//!   summary per execution (status, step count, when it wakes if suspended).
//! - `GET /v1/functions/{name}/executions/{id}`: the execution with its input,
//!   result or error, every step (status, attempt, due time, checkpointed result,
//!   last failure), its dead-letter queue and entry, and its step attempts from
//!   the ledger.
//!
//! Function executions are run by the process that registered the function (the
//! Rust SDK); any server over the same store can show them.

use crate::doc::op;
use crate::error::Result;
use crate::extract::QueryParams;
use crate::native::{decision, failure, ledger_outcome, ledger_trigger};
use crate::page::{Page, execution_token, page_limit, parse_execution_token};
use axum::Json;
use axum::extract::{Path, State};
use redrive_core::function::{FunctionStatus, StepKind, StepState, StepStatus};
use redrive_engine::service::{FunctionExecutionDetail, FunctionExecutionView, Service};
use redrive_store::{LedgerEntry, Store};
use redrive_wire as w;
use serde_json::Value;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;

type St<S> = State<Arc<Service<S>>>;

pub fn router<S: Store>() -> OpenApiRouter<Arc<Service<S>>> {
    OpenApiRouter::new()
        .routes(op::<__path_list_executions, _, _, _>(list_executions::<S>))
        .routes(op::<__path_get_execution, _, _, _>(get_execution::<S>))
}

fn status(s: FunctionStatus) -> w::FunctionStatus {
    match s {
        FunctionStatus::Running => w::FunctionStatus::InProgress,
        FunctionStatus::Succeeded => w::FunctionStatus::Succeeded,
        FunctionStatus::Failed => w::FunctionStatus::Failed,
    }
}

pub fn step_status(s: StepStatus) -> w::StepStatus {
    match s {
        StepStatus::Running => w::StepStatus::Running,
        StepStatus::WaitingRetry => w::StepStatus::WaitingRetry,
        StepStatus::Sleeping => w::StepStatus::Sleeping,
        StepStatus::Succeeded => w::StepStatus::Succeeded,
        StepStatus::Failed => w::StepStatus::Failed,
    }
}

pub fn step(s: &StepState) -> w::Step {
    w::Step {
        name: s.name.clone(),
        kind: match s.kind {
            StepKind::Step => w::StepKind::Step,
            StepKind::Sleep => w::StepKind::Sleep,
        },
        status: step_status(s.status),
        attempt: s.attempt,
        start_time: s.started_at.to_string(),
        due_at: s.due_at.map(|t| t.to_string()),
        result: s.result.clone(),
        last_failure: s.last_failure.as_ref().map(failure),
    }
}

/// A step attempt (ledger row) of a function execution.
pub fn attempt(e: &LedgerEntry) -> w::StepAttempt {
    w::StepAttempt {
        seq: e.seq,
        step: e.action.clone(),
        attempt: e.attempt,
        trigger: ledger_trigger(&e.trigger),
        start_time: e.started_at.to_string(),
        end_time: e.finished_at.to_string(),
        status: ledger_outcome(&e.outcome),
        exception_type: e.exception_type.clone(),
        message: e.message.clone(),
        decision: decision(e),
    }
}

pub fn execution_summary(v: &FunctionExecutionView) -> w::FunctionExecutionSummary {
    let s = &v.state;
    w::FunctionExecutionSummary {
        execution_id: v.record.id.clone(),
        function: s.function.to_string(),
        name: s.name.to_string(),
        status: status(s.status),
        start_time: s.started_at.to_string(),
        last_update_time: v.record.updated_at.to_string(),
        end_time: s.finished_at.map(|t| t.to_string()),
        waiting_until: s.waiting_on().map(|(_, due)| due.to_string()),
        steps: s.steps.len(),
    }
}

pub fn execution(d: &FunctionExecutionDetail) -> w::FunctionExecution {
    let v = &d.execution;
    let s = &v.state;
    w::FunctionExecution {
        execution_id: v.record.id.clone(),
        function: s.function.to_string(),
        name: s.name.to_string(),
        status: status(s.status),
        start_time: s.started_at.to_string(),
        last_update_time: v.record.updated_at.to_string(),
        end_time: s.finished_at.map(|t| t.to_string()),
        waiting_until: s.waiting_on().map(|(_, due)| due.to_string()),
        input: serde_json::from_str::<Value>(&v.record.input_json).unwrap_or(Value::Null),
        result: s.result.clone(),
        error: s.error.as_ref().map(failure),
        dead_letter_queue: s.dead_letter_queue.as_ref().map(|q| q.as_str().to_string()),
        dead_letter: s
            .dead_letter
            .as_ref()
            .map(|l| w::DeadLetterLink { queue: l.queue.as_str().to_string(), entry_id: l.entry_id.clone() }),
        steps: s.steps.iter().map(step).collect(),
        attempts: d.attempts.iter().map(attempt).collect(),
        attempts_truncated: d.attempts_truncated,
    }
}

/// A durable function's executions, newest first, one page.
#[utoipa::path(get, path = "/v1/functions/{name}/executions", operation_id = "list_function_executions", tag = "functions", params(("name" = String, Path), Page),
    responses((status = 200, description = "Success", body = w::FunctionExecutionList), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn list_executions<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<Page>,
) -> Result<Json<w::FunctionExecutionList>> {
    let limit = page_limit(q.limit)?;
    let before = q.next_token.as_deref().map(parse_execution_token).transpose()?;
    let rows = svc.list_function_executions(&name, before, limit).await?;
    let next_token = (rows.len() == limit).then(|| rows.last().map(|v| execution_token(&v.record.cursor()))).flatten();
    Ok(Json(w::FunctionExecutionList { executions: rows.iter().map(execution_summary).collect(), next_token }))
}

/// A function execution with its steps and step attempts.
#[utoipa::path(get, path = "/v1/functions/{name}/executions/{id}", operation_id = "get_function_execution", tag = "functions", params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "Success", body = w::FunctionExecution), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn get_execution<S: Store>(State(svc): St<S>, Path((name, id)): Path<(String, String)>) -> Result<Json<w::FunctionExecution>> {
    Ok(Json(execution(&svc.get_function_execution(&name, &id).await?)))
}
