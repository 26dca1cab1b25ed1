//! The native JSON REST API (`/v1/...`), described by `/openapi.json`.
//!
//! Errors are `{"error": {"code": "<CodePipeline-style name>", "message": "..."}}`
//! with a meaningful HTTP status; a definition with problems also carries them
//! under `error.problems` (JSON path, field, value, what is allowed).

use crate::error::Result;
use crate::extract::{JsonBody, QueryParams};
use crate::page::{Page, execution_token, page_limit, parse_execution_token, parse_name_token, parse_seq_token};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use redrive_core::definition::RetryMode;
use redrive_core::machine::{ActionState, ExecutionState, Trigger};
use redrive_engine::service::{ExecutionView, Service, ServiceError};
use redrive_store::{ExecutionCursor, LedgerEntry, PipelineRecord, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSummary {
    pub name: String,
    pub version: u32,
    pub created: String,
}

impl From<&PipelineRecord> for PipelineSummary {
    fn from(r: &PipelineRecord) -> Self {
        PipelineSummary { name: r.name.clone(), version: r.version, created: r.created_at.to_string() }
    }
}

fn definition_of(r: &PipelineRecord) -> Value {
    serde_json::from_str(&r.definition_json).unwrap_or(Value::Null)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionOut {
    pub name: String,
    pub status: String,
    pub series: u32,
    pub attempt: u32,
    pub total_attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

fn action_out(name: &str, a: &ActionState) -> ActionOut {
    ActionOut {
        name: name.to_string(),
        status: format!("{:?}", a.status),
        series: a.series,
        attempt: a.attempt,
        total_attempts: a.total_attempts,
        error: a.last_failure.as_ref().map(|f| json!({"exceptionType": f.exception_type, "message": f.message})),
        next_attempt_at: a.next_attempt_at.map(|t| t.to_string()),
        output: a.output.clone(),
    }
}

/// An execution with its stages and actions, by name.
pub fn execution_out(view: &ExecutionView, stage_names: &[(String, Vec<String>)]) -> Value {
    let s: &ExecutionState = &view.state;
    let stages: Vec<Value> = s
        .stages
        .iter()
        .zip(stage_names)
        .map(|(st, (name, actions))| {
            json!({
                "name": name,
                "status": format!("{:?}", st.status),
                "retryInProgress": st.retry_in_progress,
                "autoRetries": st.auto_retries_used,
                "manualRetries": st.manual_retries_used,
                "actions": st.actions.iter().zip(actions).map(|(a, n)| action_out(n, a)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "pipelineExecutionId": view.record.id,
        "pipelineName": view.record.target.name(),
        "pipelineVersion": view.pipeline_version(),
        "status": s.status.as_str(),
        "startTime": s.started_at.to_string(),
        "lastUpdateTime": view.record.updated_at.to_string(),
        "endTime": s.finished_at.map(|t| t.to_string()),
        "input": serde_json::from_str::<Value>(&view.record.input_json).unwrap_or(Value::Null),
        // Why the engine itself failed it (a limit, an unreadable state), if it did.
        "failure": s.failure.as_ref().map(|f| json!({"exceptionType": f.exception_type, "message": f.message})),
        "stages": stages,
    })
}

pub fn ledger_out(e: &LedgerEntry) -> Value {
    json!({
        "seq": e.seq,
        "pipelineExecutionId": e.execution_id,
        "stageName": e.stage,
        "actionName": e.action,
        "series": e.series,
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

type St<S> = State<Arc<Service<S>>>;

pub fn router<S: Store>() -> Router<Arc<Service<S>>> {
    Router::new()
        .route("/v1/pipelines", post(create_pipeline::<S>).get(list_pipelines::<S>))
        .route("/v1/pipelines/{name}", get(get_pipeline::<S>).put(update_pipeline::<S>).delete(delete_pipeline::<S>))
        .route("/v1/pipelines/{name}/state", get(pipeline_state::<S>))
        .route("/v1/pipelines/{name}/executions", post(start_execution::<S>).get(list_executions::<S>))
        .route("/v1/pipelines/{name}/executions/{id}", get(get_execution::<S>))
        .route("/v1/pipelines/{name}/executions/{id}/stop", post(stop_execution::<S>))
        .route("/v1/pipelines/{name}/executions/{id}/stages/{stage}/retry", post(retry_stage::<S>))
        .route("/v1/pipelines/{name}/action-executions", get(list_action_executions::<S>))
}

/// A definition body may be the pipeline itself or `{"pipeline": {...}}`.
fn unwrap_definition(body: Value) -> Value {
    match body {
        Value::Object(mut m) if m.len() == 1 && m.contains_key("pipeline") => m.remove("pipeline").unwrap_or(Value::Null),
        other => other,
    }
}

async fn create_pipeline<S: Store>(State(svc): St<S>, JsonBody(body): JsonBody<Value>) -> Result<Response> {
    let rec = svc.create_pipeline(&unwrap_definition(body)).await?;
    Ok((StatusCode::CREATED, Json(json!({"pipeline": PipelineSummary::from(&rec), "definition": definition_of(&rec)}))).into_response())
}

async fn update_pipeline<S: Store>(State(svc): St<S>, Path(name): Path<String>, JsonBody(body): JsonBody<Value>) -> Result<Json<Value>> {
    let def = unwrap_definition(body);
    if def.get("name").and_then(Value::as_str) != Some(name.as_str()) {
        return Err(ServiceError::Validation(format!("the definition's name must be {name:?}, the pipeline in the URL")).into());
    }
    let rec = svc.update_pipeline(&def).await?;
    Ok(Json(json!({"pipeline": PipelineSummary::from(&rec), "definition": definition_of(&rec)})))
}

#[derive(Deserialize)]
pub struct VersionQuery {
    pub version: Option<u32>,
}

async fn get_pipeline<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<VersionQuery>,
) -> Result<Json<Value>> {
    let view = svc.get_pipeline(&name, q.version).await?;
    Ok(Json(json!({"pipeline": PipelineSummary::from(&view.record), "definition": definition_of(&view.record)})))
}

async fn list_pipelines<S: Store>(State(svc): St<S>, QueryParams(page): QueryParams<Page>) -> Result<Json<Value>> {
    let limit = page_limit(page.limit)?;
    let after = page.next_token.as_deref().map(parse_name_token).transpose()?;
    let rows = svc.list_pipelines(after, limit).await?;
    let next = (rows.len() == limit).then(|| rows.last().map(|r| r.name.clone())).flatten();
    Ok(Json(json!({"pipelines": rows.iter().map(PipelineSummary::from).collect::<Vec<_>>(), "nextToken": next})))
}

async fn delete_pipeline<S: Store>(State(svc): St<S>, Path(name): Path<String>) -> Result<StatusCode> {
    svc.delete_pipeline(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartBody {
    #[serde(default)]
    pub input: Option<Value>,
    pub client_request_token: Option<String>,
}

async fn start_execution<S: Store>(State(svc): St<S>, Path(name): Path<String>, JsonBody(body): JsonBody<StartBody>) -> Result<Response> {
    let input = body.input.unwrap_or_else(|| json!({}));
    let id = svc.start_execution(&name, &input, body.client_request_token.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(json!({"pipelineExecutionId": id}))).into_response())
}

fn stage_names(p: &redrive_core::definition::Pipeline) -> Vec<(String, Vec<String>)> {
    p.stages.iter().map(|s| (s.name.to_string(), s.actions.iter().map(|a| a.name.to_string()).collect())).collect()
}

async fn get_execution<S: Store>(State(svc): St<S>, Path((name, id)): Path<(String, String)>) -> Result<Json<Value>> {
    let view = svc.get_execution(&name, &id).await?;
    let p = svc.get_pipeline(&name, Some(view.pipeline_version())).await?;
    Ok(Json(execution_out(&view, &stage_names(&p.loaded.pipeline))))
}

async fn list_executions<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<Value>> {
    let limit = page_limit(page.limit)?;
    let before = page.next_token.as_deref().map(parse_execution_token).transpose()?;
    let rows = svc.list_executions(&name, before, limit).await?;
    let next = (rows.len() == limit)
        .then(|| rows.last().map(|v| execution_token(&ExecutionCursor { created_at: v.record.created_at, id: v.record.id.clone() })))
        .flatten();
    let items: Vec<Value> = rows
        .iter()
        .map(|v| {
            json!({
                "pipelineExecutionId": v.record.id,
                "pipelineVersion": v.pipeline_version(),
                "status": v.state.status.as_str(),
                "startTime": v.state.started_at.to_string(),
                "lastUpdateTime": v.record.updated_at.to_string(),
            })
        })
        .collect();
    Ok(Json(json!({"executions": items, "nextToken": next})))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopBody {
    #[serde(default)]
    pub abandon: bool,
    #[serde(default)]
    pub reason: String,
}

async fn stop_execution<S: Store>(
    State(svc): St<S>,
    Path((name, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<StopBody>,
) -> Result<Json<Value>> {
    if body.reason.len() > 200 {
        return Err(ServiceError::Validation("reason is longer than 200 characters".into()).into());
    }
    svc.stop_execution(&name, &id, body.abandon, &body.reason).await?;
    Ok(Json(json!({"pipelineExecutionId": id})))
}

async fn pipeline_state<S: Store>(State(svc): St<S>, Path(name): Path<String>) -> Result<Json<Value>> {
    let (view, per_stage) = svc.pipeline_state(&name).await?;
    let mut stages = Vec::new();
    for (stage, latest) in view.loaded.pipeline.stages.iter().zip(&per_stage) {
        let mut out = json!({"stageName": stage.name.as_str(), "latestExecution": null, "actions": []});
        if let Some(sv) = latest {
            let st = sv.stage_state();
            out["latestExecution"] = json!({
                "pipelineExecutionId": sv.execution.record.id,
                "status": format!("{:?}", st.status),
                "retryInProgress": st.retry_in_progress,
                "autoRetries": st.auto_retries_used,
                "manualRetries": st.manual_retries_used,
                "latestRetryTrigger": st.latest_retry_trigger.map(Trigger::as_str),
            });
            out["actions"] = json!(
                sv.stage_definition().actions.iter().zip(&st.actions).map(|(a, s)| action_out(a.name.as_str(), s)).collect::<Vec<_>>()
            );
        }
        stages.push(out);
    }
    Ok(Json(json!({"pipelineName": name, "pipelineVersion": view.record.version, "stages": stages})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionQuery {
    pub execution_id: Option<String>,
    pub next_token: Option<String>,
    pub limit: Option<usize>,
}

async fn list_action_executions<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<ActionQuery>,
) -> Result<Json<Value>> {
    let limit = page_limit(q.limit)?;
    let before = q.next_token.as_deref().map(parse_seq_token).transpose()?;
    let rows = svc.list_action_executions(&name, q.execution_id.as_deref(), before, limit).await?;
    let next = (rows.len() == limit).then(|| rows.last().map(|e| e.seq.to_string())).flatten();
    Ok(Json(json!({"actionExecutions": rows.iter().map(ledger_out).collect::<Vec<_>>(), "nextToken": next})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBody {
    pub retry_mode: String,
}

pub fn parse_retry_mode(s: &str) -> std::result::Result<RetryMode, ServiceError> {
    match s {
        "FAILED_ACTIONS" => Ok(RetryMode::FailedActions),
        "ALL_ACTIONS" => Ok(RetryMode::AllActions),
        other => Err(ServiceError::Validation(format!("retryMode {other:?} is not one of FAILED_ACTIONS, ALL_ACTIONS"))),
    }
}

async fn retry_stage<S: Store>(
    State(svc): St<S>,
    Path((name, id, stage)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<RetryBody>,
) -> Result<Json<Value>> {
    let mode = parse_retry_mode(&body.retry_mode)?;
    let id = svc.retry_stage(&name, &stage, &id, mode, Trigger::Manual).await?;
    Ok(Json(json!({"pipelineExecutionId": id})))
}
