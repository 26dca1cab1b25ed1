//! The native JSON REST API for pipelines (`/v1/pipelines/...`), described by
//! `/openapi.json`. Answers are `redrive_wire` types built here from engine types.
//!
//! Errors are `{"error": {"code": "<CodePipeline-style name>", "message": "..."}}`
//! with a meaningful HTTP status; a definition with problems also carries them
//! under `error.problems` (JSON path, field, value, what is allowed).

use crate::doc::op;
use crate::error::{Result, invalid};
use crate::extract::{JsonBody, QueryParams};
use crate::keys::Waits;
use crate::page::{Page, execution_token, page_limit, parse_execution_token, parse_name_token, parse_seq_token};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use redrive_core::definition::RetryMode;
use redrive_core::exception::Failure;
use redrive_core::machine::{self as m, ActionState, ExecutionState};
use redrive_engine::service::{ExecutionView, Service, StageView};
use redrive_store::{LedgerEntry, PipelineRecord, Store};
use redrive_wire as w;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;

type St<S> = State<Arc<Service<S>>>;

pub fn router<S: Store>() -> OpenApiRouter<Arc<Service<S>>> {
    OpenApiRouter::new()
        .routes(op::<__path_create_pipeline, _, _, _>(create_pipeline::<S>))
        .routes(op::<__path_list_pipelines, _, _, _>(list_pipelines::<S>))
        .routes(op::<__path_get_pipeline, _, _, _>(get_pipeline::<S>))
        .routes(op::<__path_update_pipeline, _, _, _>(update_pipeline::<S>))
        .routes(op::<__path_delete_pipeline, _, _, _>(delete_pipeline::<S>))
        .routes(op::<__path_pipeline_state, _, _, _>(pipeline_state::<S>))
        .routes(op::<__path_start_execution, _, _, _>(start_execution::<S>))
        .routes(op::<__path_list_executions, _, _, _>(list_executions::<S>))
        .routes(op::<__path_get_execution, _, _, _>(get_execution::<S>))
        .routes(op::<__path_export_execution, _, _, _>(export_execution::<S>))
        .routes(op::<__path_stop_execution, _, _, _>(stop_execution::<S>))
        .routes(op::<__path_resume_execution, _, _, _>(resume_execution::<S>))
        .routes(op::<__path_fail_execution, _, _, _>(fail_execution::<S>))
        .routes(op::<__path_retry_stage, _, _, _>(retry_stage::<S>))
        .routes(op::<__path_list_action_executions, _, _, _>(list_action_executions::<S>))
}

// ---- engine types → wire types -------------------------------------------------

pub fn failure(f: &Failure) -> w::Failure {
    w::Failure { exception_type: f.exception_type.to_string(), message: f.message.clone() }
}

pub fn execution_status(s: m::ExecutionStatus) -> w::ExecutionStatus {
    use m::ExecutionStatus as E;
    match s {
        E::InProgress => w::ExecutionStatus::InProgress,
        E::Stopping => w::ExecutionStatus::Stopping,
        E::Succeeded => w::ExecutionStatus::Succeeded,
        E::Failed => w::ExecutionStatus::Failed,
        E::Stopped => w::ExecutionStatus::Stopped,
        E::Superseded => w::ExecutionStatus::Superseded,
        E::Paused => w::ExecutionStatus::Paused,
    }
}

fn stage_status(s: m::StageStatus) -> w::StageStatus {
    use m::StageStatus as S;
    match s {
        S::NotStarted => w::StageStatus::NotStarted,
        S::InProgress => w::StageStatus::InProgress,
        S::Succeeded => w::StageStatus::Succeeded,
        S::Failed => w::StageStatus::Failed,
    }
}

fn action_status(s: m::ActionStatus) -> w::ActionStatus {
    use m::ActionStatus as A;
    match s {
        A::NotStarted => w::ActionStatus::NotStarted,
        A::Running => w::ActionStatus::Running,
        A::WaitingRetry => w::ActionStatus::WaitingRetry,
        A::Succeeded => w::ActionStatus::Succeeded,
        A::Failed => w::ActionStatus::Failed,
        A::Paused => w::ActionStatus::Paused,
    }
}

pub fn trigger(t: m::Trigger) -> w::Trigger {
    match t {
        m::Trigger::Initial => w::Trigger::Initial,
        m::Trigger::Policy => w::Trigger::Policy,
        m::Trigger::StageAutoRetry => w::Trigger::StageAutoRetry,
        m::Trigger::Manual => w::Trigger::Manual,
        m::Trigger::Redrive => w::Trigger::Redrive,
        m::Trigger::Resume => w::Trigger::Resume,
    }
}

/// A ledger row's `trigger` column, written from `machine::Trigger::as_str`.
pub fn ledger_trigger(text: &str) -> w::Trigger {
    [m::Trigger::Initial, m::Trigger::Policy, m::Trigger::StageAutoRetry, m::Trigger::Manual, m::Trigger::Redrive, m::Trigger::Resume]
        .into_iter()
        .find(|t| t.as_str() == text)
        .map_or(w::Trigger::Initial, trigger)
}

/// A ledger row's `outcome` column: `SUCCEEDED` or `FAILED`.
pub fn ledger_outcome(text: &str) -> w::AttemptStatus {
    match text {
        "SUCCEEDED" => w::AttemptStatus::Succeeded,
        redrive_core::dependency::DEFERRED_OUTCOME => w::AttemptStatus::Deferred,
        _ => w::AttemptStatus::Failed,
    }
}

pub fn decision(e: &LedgerEntry) -> Option<Value> {
    e.decision_json.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok())
}

fn summary(r: &PipelineRecord) -> w::PipelineSummary {
    w::PipelineSummary { name: r.name.clone(), version: r.version, created: r.created_at.to_string() }
}

fn pipeline_response(r: &PipelineRecord) -> w::PipelineResponse {
    w::PipelineResponse { pipeline: summary(r), definition: serde_json::from_str(&r.definition_json).unwrap_or(Value::Null) }
}

fn action_view(name: &str, a: &ActionState, waiting: Option<w::KeyWaiting>) -> w::ActionView {
    w::ActionView {
        name: name.to_string(),
        status: action_status(a.status),
        series: a.series,
        attempt: a.attempt,
        total_attempts: a.total_attempts,
        error: a.last_failure.as_ref().map(failure),
        next_attempt_at: a.next_attempt_at.map(|t| t.to_string()),
        output: a.output.clone(),
        held: a.held.as_ref().filter(|_| a.status == m::ActionStatus::WaitingRetry).map(crate::dependencies::held_by),
        waiting: waiting.filter(|_| a.status == m::ActionStatus::Running),
    }
}

/// The `waiting` of action `ai` of stage `si` of an execution.
fn waiting_of(waits: &Waits, execution_id: &str, si: usize, ai: usize, a: &ActionState) -> Option<w::KeyWaiting> {
    waits.view(execution_id, m::ActionAt { stage: si, action: ai }, a.series, a.attempt)
}

fn stage_view(st: &m::StageState, (name, actions): &(String, Vec<String>), (id, si, waits): (&str, usize, &Waits)) -> w::StageView {
    w::StageView {
        name: name.clone(),
        status: stage_status(st.status),
        retry_in_progress: st.retry_in_progress,
        auto_retries: st.auto_retries_used,
        manual_retries: st.manual_retries_used,
        actions: st
            .actions
            .iter()
            .zip(actions)
            .enumerate()
            .map(|(ai, (a, n))| action_view(n, a, waiting_of(waits, id, si, ai, a)))
            .collect(),
    }
}

/// An execution with its stages and actions, by name.
pub fn execution(view: &ExecutionView, stage_names: &[(String, Vec<String>)], waits: &Waits) -> w::Execution {
    let s: &ExecutionState = &view.state;
    w::Execution {
        pipeline_execution_id: view.record.id.clone(),
        pipeline_name: view.record.target.name().to_string(),
        pipeline_version: view.pipeline_version(),
        status: execution_status(s.status),
        start_time: s.started_at.to_string(),
        last_update_time: view.record.updated_at.to_string(),
        end_time: s.finished_at.map(|t| t.to_string()),
        // The input attempts get: as a resume patched it, else as created.
        input: s.input.clone().unwrap_or_else(|| serde_json::from_str::<Value>(&view.record.input_json).unwrap_or(Value::Null)),
        failure: s.failure.as_ref().map(failure),
        stages: s
            .stages
            .iter()
            .zip(stage_names)
            .enumerate()
            .map(|(si, (st, names))| stage_view(st, names, (&view.record.id, si, waits)))
            .collect(),
    }
}

fn execution_summary(v: &ExecutionView) -> w::ExecutionSummary {
    w::ExecutionSummary {
        pipeline_execution_id: v.record.id.clone(),
        pipeline_version: v.pipeline_version(),
        status: execution_status(v.state.status),
        start_time: v.state.started_at.to_string(),
        last_update_time: v.record.updated_at.to_string(),
    }
}

pub fn action_execution(e: &LedgerEntry) -> w::ActionExecution {
    w::ActionExecution {
        seq: e.seq,
        pipeline_execution_id: e.execution_id.clone(),
        stage_name: e.stage.clone(),
        action_name: e.action.clone(),
        series: e.series,
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

fn stage_state(name: &str, latest: Option<&StageView>, waits: &Waits) -> w::StageState {
    let Some(sv) = latest else {
        return w::StageState { stage_name: name.to_string(), latest_execution: None, actions: Vec::new() };
    };
    let st = sv.stage_state();
    w::StageState {
        stage_name: name.to_string(),
        latest_execution: Some(w::StageExecution {
            pipeline_execution_id: sv.execution.record.id.clone(),
            status: stage_status(st.status),
            retry_in_progress: st.retry_in_progress,
            auto_retries: st.auto_retries_used,
            manual_retries: st.manual_retries_used,
            latest_retry_trigger: st.latest_retry_trigger.map(trigger),
        }),
        actions: sv
            .stage_definition()
            .actions
            .iter()
            .zip(&st.actions)
            .enumerate()
            .map(|(ai, (a, s))| action_view(a.name.as_str(), s, waiting_of(waits, &sv.execution.record.id, sv.stage_index, ai, s)))
            .collect(),
    }
}

pub fn retry_mode(m: w::RetryMode) -> RetryMode {
    match m {
        w::RetryMode::FailedActions => RetryMode::FailedActions,
        w::RetryMode::AllActions => RetryMode::AllActions,
    }
}

// ---- handlers -------------------------------------------------------------------

/// A definition body may be the pipeline itself or `{"pipeline": {...}}`.
fn unwrap_definition(body: Value) -> Value {
    match body {
        Value::Object(mut m) if m.len() == 1 && m.contains_key("pipeline") => m.remove("pipeline").unwrap_or(Value::Null),
        other => other,
    }
}

/// Creates a pipeline (version 1) from a definition.
#[utoipa::path(post, path = "/v1/pipelines", tag = "pipelines",
    request_body(content = Object, description = "The definition, or `{\"pipeline\": definition}`"),
    responses((status = 201, description = "Created", body = w::PipelineResponse), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn create_pipeline<S: Store>(State(svc): St<S>, JsonBody(body): JsonBody<Value>) -> Result<(StatusCode, Json<w::PipelineResponse>)> {
    let rec = svc.create_pipeline(&unwrap_definition(body)).await?;
    Ok((StatusCode::CREATED, Json(pipeline_response(&rec))))
}

/// Adds a version of a pipeline.
#[utoipa::path(put, path = "/v1/pipelines/{name}", tag = "pipelines", params(("name" = String, Path)),
    request_body(content = Object, description = "The definition, or `{\"pipeline\": definition}`; its name must be the URL's"),
    responses((status = 200, description = "Success", body = w::PipelineResponse), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn update_pipeline<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Json<w::PipelineResponse>> {
    let def = unwrap_definition(body);
    if def.get("name").and_then(Value::as_str) != Some(name.as_str()) {
        return Err(invalid(format!("the definition's name must be {name:?}, the pipeline in the URL")));
    }
    let rec = svc.update_pipeline(&def).await?;
    Ok(Json(pipeline_response(&rec)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// A version (default: the latest).
    pub version: Option<u32>,
}

/// A pipeline version with its definition.
#[utoipa::path(get, path = "/v1/pipelines/{name}", tag = "pipelines", params(("name" = String, Path), VersionQuery),
    responses((status = 200, description = "Success", body = w::PipelineResponse), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn get_pipeline<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<VersionQuery>,
) -> Result<Json<w::PipelineResponse>> {
    let view = svc.get_pipeline(&name, q.version).await?;
    Ok(Json(pipeline_response(&view.record)))
}

/// Pipelines by name (latest versions), one page.
#[utoipa::path(get, path = "/v1/pipelines", tag = "pipelines", params(Page),
    responses((status = 200, description = "Success", body = w::PipelineList), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn list_pipelines<S: Store>(State(svc): St<S>, QueryParams(page): QueryParams<Page>) -> Result<Json<w::PipelineList>> {
    let limit = page_limit(page.limit)?;
    let after = page.next_token.as_deref().map(parse_name_token).transpose()?;
    let rows = svc.list_pipelines(after, limit).await?;
    let next_token = (rows.len() == limit).then(|| rows.last().map(|r| r.name.clone())).flatten();
    Ok(Json(w::PipelineList { pipelines: rows.iter().map(summary).collect(), next_token }))
}

/// Deletes a pipeline (a missing one too, as CodePipeline does).
#[utoipa::path(delete, path = "/v1/pipelines/{name}", tag = "pipelines", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn delete_pipeline<S: Store>(State(svc): St<S>, Path(name): Path<String>) -> Result<StatusCode> {
    svc.delete_pipeline(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Starts an execution of the latest version.
#[utoipa::path(post, path = "/v1/pipelines/{name}/executions", tag = "executions", params(("name" = String, Path)),
    request_body = w::StartExecutionRequest,
    responses((status = 201, description = "Created", body = w::ExecutionId), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse), (status = 503, description = "The engine is degraded; `Retry-After` says when to retry", body = w::ErrorResponse)))]
async fn start_execution<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<w::StartExecutionRequest>,
) -> Result<(StatusCode, Json<w::ExecutionId>)> {
    let input = body.input.unwrap_or_else(|| json!({}));
    let id = svc.start_execution(&name, &input, body.client_request_token.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(w::ExecutionId { pipeline_execution_id: id })))
}

fn stage_names(p: &redrive_core::definition::Pipeline) -> Vec<(String, Vec<String>)> {
    p.stages.iter().map(|s| (s.name.to_string(), s.actions.iter().map(|a| a.name.to_string()).collect())).collect()
}

/// An execution with its stages and actions.
#[utoipa::path(get, path = "/v1/pipelines/{name}/executions/{id}", tag = "executions",
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "Success", body = w::Execution), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn get_execution<S: Store>(State(svc): St<S>, Path((name, id)): Path<(String, String)>) -> Result<Json<w::Execution>> {
    let view = svc.get_execution(&name, &id).await?;
    let p = svc.get_pipeline(&name, Some(view.pipeline_version())).await?;
    let waits = Waits::fetch(&svc, Some(&id)).await;
    Ok(Json(execution(&view, &stage_names(&p.loaded.pipeline), &waits)))
}

/// Everything about one execution: the definition version it ran, its input,
/// stored state, pending timers and whole attempt ledger.
#[utoipa::path(get, path = "/v1/pipelines/{name}/executions/{id}/export", tag = "executions",
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "Success", body = w::ExecutionExport), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn export_execution<S: Store>(State(svc): St<S>, Path((name, id)): Path<(String, String)>) -> Result<Json<w::ExecutionExport>> {
    let (view, timers, ledger) = svc.export_execution(&name, &id).await?;
    let p = svc.get_pipeline(&name, Some(view.pipeline_version())).await?;
    let definition = serde_json::from_str(&p.record.definition_json).unwrap_or(serde_json::Value::String(p.record.definition_json.clone()));
    let (state, state_text) = match serde_json::from_str(&view.record.state_json) {
        Ok(v) => (v, None),
        Err(_) => (serde_json::Value::Null, Some(view.record.state_json.clone())),
    };
    Ok(Json(w::ExecutionExport {
        export_version: 1,
        exported_at: svc.now().to_string(),
        pipeline_name: name,
        pipeline_version: view.pipeline_version(),
        definition,
        execution: execution(&view, &stage_names(&p.loaded.pipeline), &Waits::fetch(&svc, Some(&view.record.id)).await),
        state,
        state_text,
        state_version: view.record.version,
        timers: timers.iter().map(|t| w::ExportedTimer { key: t.key.clone(), due_at: t.due_at.to_string() }).collect(),
        ledger: ledger.iter().map(action_execution).collect(),
    }))
}

/// Executions, newest first, one page.
#[utoipa::path(get, path = "/v1/pipelines/{name}/executions", tag = "executions", params(("name" = String, Path), Page),
    responses((status = 200, description = "Success", body = w::ExecutionList), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn list_executions<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    QueryParams(page): QueryParams<Page>,
) -> Result<Json<w::ExecutionList>> {
    let limit = page_limit(page.limit)?;
    let before = page.next_token.as_deref().map(parse_execution_token).transpose()?;
    let rows = svc.list_executions(&name, before, limit).await?;
    let next_token = (rows.len() == limit).then(|| rows.last().map(|v| execution_token(&v.record.cursor()))).flatten();
    Ok(Json(w::ExecutionList { executions: rows.iter().map(execution_summary).collect(), next_token }))
}

/// Stops an execution.
#[utoipa::path(post, path = "/v1/pipelines/{name}/executions/{id}/stop", tag = "executions",
    params(("name" = String, Path), ("id" = String, Path)), request_body = w::StopExecutionRequest,
    responses((status = 200, description = "Success", body = w::ExecutionId), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse), (status = 503, description = "The engine is degraded; `Retry-After` says when to retry", body = w::ErrorResponse)))]
async fn stop_execution<S: Store>(
    State(svc): St<S>,
    Path((name, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<w::StopExecutionRequest>,
) -> Result<Json<w::ExecutionId>> {
    if body.reason.len() > 200 {
        return Err(invalid("reason is longer than 200 characters"));
    }
    svc.stop_execution(&name, &id, body.abandon, &body.reason).await?;
    Ok(Json(w::ExecutionId { pipeline_execution_id: id }))
}

/// Resumes a `Paused` execution: its paused actions (or `action`) start a fresh
/// series of attempts, the input merge-patched by `input` first.
#[utoipa::path(post, path = "/v1/pipelines/{name}/executions/{id}/resume", tag = "executions",
    params(("name" = String, Path), ("id" = String, Path)), request_body = w::ResumeExecutionRequest,
    responses((status = 200, description = "Success", body = w::ExecutionId), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse), (status = 503, description = "The engine is degraded; `Retry-After` says when to retry", body = w::ErrorResponse)))]
async fn resume_execution<S: Store>(
    State(svc): St<S>,
    Path((name, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<w::ResumeExecutionRequest>,
) -> Result<Json<w::ExecutionId>> {
    svc.resume_execution(&name, &id, body.action.as_deref(), body.input).await?;
    Ok(Json(w::ExecutionId { pipeline_execution_id: id }))
}

/// Fails a `Paused` execution for good (dead-lettered like any failure).
#[utoipa::path(post, path = "/v1/pipelines/{name}/executions/{id}/fail", tag = "executions",
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "Success", body = w::ExecutionId), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse), (status = 503, description = "The engine is degraded; `Retry-After` says when to retry", body = w::ErrorResponse)))]
async fn fail_execution<S: Store>(State(svc): St<S>, Path((name, id)): Path<(String, String)>) -> Result<Json<w::ExecutionId>> {
    svc.fail_execution(&name, &id).await?;
    Ok(Json(w::ExecutionId { pipeline_execution_id: id }))
}

/// Each stage's latest execution.
#[utoipa::path(get, path = "/v1/pipelines/{name}/state", tag = "pipelines", params(("name" = String, Path)),
    responses((status = 200, description = "Success", body = w::PipelineState), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn pipeline_state<S: Store>(State(svc): St<S>, Path(name): Path<String>) -> Result<Json<w::PipelineState>> {
    let (view, per_stage) = svc.pipeline_state(&name).await?;
    let waits = Waits::fetch(&svc, None).await;
    let stages = view
        .loaded
        .pipeline
        .stages
        .iter()
        .zip(&per_stage)
        .map(|(stage, latest)| stage_state(stage.name.as_str(), latest.as_ref(), &waits))
        .collect();
    Ok(Json(w::PipelineState { pipeline_name: name, pipeline_version: view.record.version, stages }))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ActionQuery {
    /// Only this execution's attempts.
    pub execution_id: Option<String>,
    pub next_token: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

/// Action attempts (the ledger), newest first, one page.
#[utoipa::path(get, path = "/v1/pipelines/{name}/action-executions", tag = "executions", params(("name" = String, Path), ActionQuery),
    responses((status = 200, description = "Success", body = w::ActionExecutionList), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn list_action_executions<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<ActionQuery>,
) -> Result<Json<w::ActionExecutionList>> {
    let limit = page_limit(q.limit)?;
    let before = q.next_token.as_deref().map(parse_seq_token).transpose()?;
    let rows = svc.list_action_executions(&name, q.execution_id.as_deref(), before, limit).await?;
    let next_token = (rows.len() == limit).then(|| rows.last().map(|e| e.seq.to_string())).flatten();
    Ok(Json(w::ActionExecutionList { action_executions: rows.iter().map(action_execution).collect(), next_token }))
}

/// Retries a stage of an execution.
#[utoipa::path(post, path = "/v1/pipelines/{name}/executions/{id}/stages/{stage}/retry", tag = "executions",
    params(("name" = String, Path), ("id" = String, Path), ("stage" = String, Path)), request_body = w::RetryStageRequest,
    responses((status = 200, description = "Success", body = w::ExecutionId), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse), (status = 503, description = "The engine is degraded; `Retry-After` says when to retry", body = w::ErrorResponse)))]
async fn retry_stage<S: Store>(
    State(svc): St<S>,
    Path((name, id, stage)): Path<(String, String, String)>,
    JsonBody(body): JsonBody<w::RetryStageRequest>,
) -> Result<Json<w::ExecutionId>> {
    let id = match (body.retry_mode, body.from_action) {
        (Some(mode), None) if body.input_patch.is_none() => {
            svc.retry_stage(&name, &stage, &id, retry_mode(mode), m::Trigger::Manual).await?
        }
        (None, Some(action)) => svc.retry_stage_from(&name, &stage, &id, &action, body.input_patch).await?,
        (Some(_), None) => return Err(invalid("inputPatch is only allowed with fromAction")),
        (Some(_), Some(_)) => return Err(invalid("give retryMode or fromAction, not both")),
        (None, None) => return Err(invalid("retryMode (FAILED_ACTIONS or ALL_ACTIONS) or fromAction is required")),
    };
    Ok(Json(w::ExecutionId { pipeline_execution_id: id }))
}
