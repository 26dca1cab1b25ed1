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

use crate::error::Result;
use crate::extract::QueryParams;
use crate::page::{Page, execution_token, page_limit, parse_execution_token};
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use redrive_core::exception::Failure;
use redrive_core::function::{StepKind, StepState, StepStatus};
use redrive_engine::service::{FunctionExecutionDetail, FunctionExecutionView, Service};
use redrive_store::{LedgerEntry, Store};
use serde_json::{Value, json};
use std::sync::Arc;

type St<S> = State<Arc<Service<S>>>;

pub fn router<S: Store>() -> Router<Arc<Service<S>>> {
    Router::new()
        .route("/v1/functions/{name}/executions", get(list_executions::<S>))
        .route("/v1/functions/{name}/executions/{id}", get(get_execution::<S>))
}

fn failure_out(f: &Failure) -> Value {
    json!({"exceptionType": f.exception_type, "message": f.message})
}

pub fn step_status(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Running => "Running",
        StepStatus::WaitingRetry => "WaitingRetry",
        StepStatus::Sleeping => "Sleeping",
        StepStatus::Succeeded => "Succeeded",
        StepStatus::Failed => "Failed",
    }
}

pub fn step_out(s: &StepState) -> Value {
    json!({
        "name": s.name,
        "kind": match s.kind { StepKind::Step => "step", StepKind::Sleep => "sleep" },
        "status": step_status(s.status),
        "attempt": s.attempt,
        "startTime": s.started_at.to_string(),
        "dueAt": s.due_at.map(|t| t.to_string()),
        "result": s.result,
        "lastFailure": s.last_failure.as_ref().map(failure_out),
    })
}

/// A step attempt (ledger row) of a function execution.
pub fn attempt_out(e: &LedgerEntry) -> Value {
    json!({
        "seq": e.seq,
        "step": e.action,
        "attempt": e.attempt,
        "trigger": e.trigger,
        "startTime": e.started_at.to_string(),
        "endTime": e.finished_at.to_string(),
        "status": e.outcome,
        "exceptionType": e.exception_type,
        "message": e.message,
        "decision": e.decision_json.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
    })
}

/// The fields a listing and a single execution share.
fn summary_out(v: &FunctionExecutionView) -> Value {
    let s = &v.state;
    json!({
        "executionId": v.record.id,
        "function": s.function,
        "name": s.name,
        "status": s.status.as_str(),
        "startTime": s.started_at.to_string(),
        "lastUpdateTime": v.record.updated_at.to_string(),
        "endTime": s.finished_at.map(|t| t.to_string()),
        "waitingUntil": s.waiting_on().map(|(_, due)| due.to_string()),
    })
}

pub fn execution_summary_out(v: &FunctionExecutionView) -> Value {
    let mut out = summary_out(v);
    out["steps"] = json!(v.state.steps.len());
    out
}

pub fn execution_out(d: &FunctionExecutionDetail) -> Value {
    let v = &d.execution;
    let mut out = summary_out(v);
    out["input"] = serde_json::from_str::<Value>(&v.record.input_json).unwrap_or(Value::Null);
    out["result"] = v.state.result.clone().unwrap_or(Value::Null);
    out["error"] = v.state.error.as_ref().map(failure_out).unwrap_or(Value::Null);
    out["deadLetterQueue"] = json!(v.state.dead_letter_queue.as_ref().map(|q| q.as_str()));
    out["deadLetter"] =
        v.state.dead_letter.as_ref().map(|l| json!({"queue": l.queue.as_str(), "entryId": l.entry_id})).unwrap_or(Value::Null);
    out["steps"] = json!(v.state.steps.iter().map(step_out).collect::<Vec<_>>());
    out["attempts"] = json!(d.attempts.iter().map(attempt_out).collect::<Vec<_>>());
    out["attemptsTruncated"] = json!(d.attempts_truncated);
    out
}

async fn list_executions<S: Store>(State(svc): St<S>, Path(name): Path<String>, QueryParams(q): QueryParams<Page>) -> Result<Json<Value>> {
    let limit = page_limit(q.limit)?;
    let before = q.next_token.as_deref().map(parse_execution_token).transpose()?;
    let rows = svc.list_function_executions(&name, before, limit).await?;
    let next = (rows.len() == limit).then(|| rows.last().map(|v| execution_token(&v.record.cursor()))).flatten();
    Ok(Json(json!({"executions": rows.iter().map(execution_summary_out).collect::<Vec<_>>(), "nextToken": next})))
}

async fn get_execution<S: Store>(State(svc): St<S>, Path((name, id)): Path<(String, String)>) -> Result<Json<Value>> {
    let detail = svc.get_function_execution(&name, &id).await?;
    Ok(Json(execution_out(&detail)))
}
