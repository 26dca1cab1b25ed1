//! `POST /` — the CodePipeline AWS JSON 1.1 protocol, for the AWS CLI and SDKs.
//!
//! Signatures are accepted without verification (authentication comes later).

use crate::codepipeline::convert::{native_to_wire, wire_to_native};
use crate::codepipeline::errors::{ApiError, ErrorCode};
use crate::codepipeline::model as w;
use crate::codepipeline::protocol::{self, Operation, Request};
use crate::codepipeline::validate::validate_request;
use crate::page::{execution_token, parse_execution_token};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use redrive_core::definition::RetryMode;
use redrive_core::machine::{ActionState, ActionStatus, ExecutionStatus, StageStatus, Trigger};
use redrive_core::time::Timestamp;
use redrive_engine::service::{ExecutionView, Service, ServiceError};
use redrive_store::{ExecutionCursor, LedgerEntry, PipelineRecord, Store};
use serde_json::Value;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;

pub fn router<S: Store>() -> OpenApiRouter<Arc<Service<S>>> {
    OpenApiRouter::new().routes(crate::doc::op::<__path_handle, _, _, _>(handle::<S>))
}

/// A request to `POST /` with a method other than POST (405), in the protocol's format.
pub fn method_not_allowed() -> Response {
    let e = ApiError::new(ErrorCode::UnknownOperationException, "the CodePipeline protocol is served on POST / only".to_string());
    respond(StatusCode::METHOD_NOT_ALLOWED, e.body_json().into_bytes(), Some(e.code))
}

/// A request to `/` refused by the transport (431), in the protocol's format.
pub fn transport_error(status: StatusCode, message: String) -> Response {
    let e = ApiError::new(ErrorCode::ValidationException, message);
    respond(status, e.body_json().into_bytes(), Some(e.code))
}

fn respond(status: StatusCode, body: Vec<u8>, error: Option<ErrorCode>) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert("content-type", HeaderValue::from_static(protocol::CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        h.insert(protocol::REQUEST_ID_HEADER, v);
    }
    if let Some(code) = error {
        h.insert(crate::codepipeline::errors::ERROR_TYPE_HEADER, HeaderValue::from_static(code.as_str()));
    }
    r
}

/// An error in the protocol's format (`__type` body, `x-amzn-ErrorType`).
pub(crate) fn error_response(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    respond(status, e.body_json().into_bytes(), Some(e.code))
}

/// The CodePipeline error for a service error.
pub fn to_api_error(e: ServiceError) -> ApiError {
    use ServiceError::*;
    let code = match &e {
        InvalidStructure(problems) => return ApiError::from_problems(problems),
        Validation(_) => ErrorCode::ValidationException,
        PipelineNotFound(_) => ErrorCode::PipelineNotFoundException,
        PipelineNameInUse(_) => ErrorCode::PipelineNameInUseException,
        PipelineVersionNotFound { .. } => ErrorCode::PipelineVersionNotFoundException,
        ExecutionNotFound(_) => ErrorCode::PipelineExecutionNotFoundException,
        ExecutionNotStoppable(_) => ErrorCode::PipelineExecutionNotStoppableException,
        DuplicatedStopRequest(_) => ErrorCode::DuplicatedStopRequestException,
        StageNotFound(_) => ErrorCode::StageNotFoundException,
        StageNotRetryable(_) => ErrorCode::StageNotRetryableException,
        NotLatestPipelineExecution(_) => ErrorCode::NotLatestPipelineExecutionException,
        Conflict(_) => ErrorCode::ConflictException,
        ConcurrentExecutionsLimitExceeded(_) => ErrorCode::ConcurrentPipelineExecutionsLimitExceededException,
        Unavailable(_) => ErrorCode::ServiceUnavailable,
        // Not reachable through CodePipeline operations.
        DlqQueueNotFound(_)
        | DlqEntryNotFound(_)
        | RedriveRunNotFound(_)
        | BulkRetryNotFound(_)
        | DependencyNotFound(_)
        | NotRedriven(_) => ErrorCode::ValidationException,
    };
    ApiError::new(code, e.to_string())
}

/// The CodePipeline service (AWS JSON 1.1): the operation is named by
/// `X-Amz-Target: CodePipeline_20150709.<Operation>`; shapes and errors as in
/// botocore's `codepipeline` model (errors: `{"__type", "message"}`).
#[utoipa::path(post, path = "/", tag = "codepipeline",
    params(("X-Amz-Target" = String, Header, description = "CodePipeline_20150709.<Operation>")),
    request_body(content = Object, content_type = "application/x-amz-json-1.1"),
    responses((status = 200, description = "The operation's output shape", content_type = "application/x-amz-json-1.1", body = Object),
        (status = "4XX", description = "`{\"__type\", \"message\"}`", content_type = "application/x-amz-json-1.1", body = Object),
        (status = 503, description = "`ServiceUnavailable`, with `Retry-After`", content_type = "application/x-amz-json-1.1", body = Object)))]
async fn handle<S: Store>(
    State(svc): State<Arc<Service<S>>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            // Over the size limit (413) or unreadable: still an AWS JSON error.
            let status = e.status();
            let err = ApiError::new(ErrorCode::ValidationException, format!("request body: {}", e.body_text()));
            return respond(status, err.body_json().into_bytes(), Some(err.code));
        }
    };
    let result = async {
        let target = headers
            .get(protocol::TARGET_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::new(ErrorCode::UnknownOperationException, format!("missing {} header", protocol::TARGET_HEADER)))?;
        let op = Operation::from_target(target)?;
        let request = Request::decode(op, &body)?;
        validate_request(&request)?;
        dispatch(&svc, request).await
    }
    .await;
    match result {
        Ok(body) => respond(StatusCode::OK, body, None),
        Err(e) => error_response(e),
    }
}

fn ok<T: serde::Serialize>(t: &T) -> Result<Vec<u8>, ApiError> {
    Ok(protocol::encode_response(t))
}

fn secs(t: Timestamp) -> w::EpochSeconds {
    w::EpochSeconds(t)
}

fn declaration(rec: &PipelineRecord) -> Result<w::PipelineDeclaration, ApiError> {
    let native: Value = serde_json::from_str(&rec.definition_json).map_err(|e| ApiError::new(ErrorCode::InternalFailure, e.to_string()))?;
    let mut decl = native_to_wire(&native).map_err(|e| ApiError::new(ErrorCode::InternalFailure, e.to_string()))?;
    decl.version = Some(rec.version as i32);
    Ok(decl)
}

fn execution_status(s: ExecutionStatus) -> w::PipelineExecutionStatus {
    match s {
        ExecutionStatus::InProgress => w::PipelineExecutionStatus::InProgress,
        ExecutionStatus::Stopping => w::PipelineExecutionStatus::Stopping,
        ExecutionStatus::Succeeded => w::PipelineExecutionStatus::Succeeded,
        ExecutionStatus::Failed => w::PipelineExecutionStatus::Failed,
        ExecutionStatus::Stopped => w::PipelineExecutionStatus::Stopped,
        ExecutionStatus::Superseded => w::PipelineExecutionStatus::Superseded,
        // AWS has no Paused: the execution is unfinished and may still succeed
        // (a resume), so InProgress; its paused action shows the failure.
        ExecutionStatus::Paused => w::PipelineExecutionStatus::InProgress,
    }
}

fn stage_status(s: StageStatus, execution: ExecutionStatus) -> Option<w::StageExecutionStatus> {
    Some(match s {
        StageStatus::NotStarted => return None,
        StageStatus::InProgress if execution == ExecutionStatus::Stopping => w::StageExecutionStatus::Stopping,
        StageStatus::InProgress if execution == ExecutionStatus::Stopped => w::StageExecutionStatus::Stopped,
        StageStatus::InProgress => w::StageExecutionStatus::InProgress,
        StageStatus::Succeeded => w::StageExecutionStatus::Succeeded,
        StageStatus::Failed => w::StageExecutionStatus::Failed,
    })
}

fn action_execution(a: &ActionState, updated: Timestamp) -> Option<w::ActionExecution> {
    let status = match a.status {
        ActionStatus::NotStarted => return None,
        ActionStatus::Running | ActionStatus::WaitingRetry | ActionStatus::Paused => w::ActionExecutionStatus::InProgress,
        ActionStatus::Succeeded => w::ActionExecutionStatus::Succeeded,
        ActionStatus::Failed => w::ActionExecutionStatus::Failed,
    };
    let summary = match a.status {
        ActionStatus::WaitingRetry => a.next_attempt_at.map(|t| format!("attempt {} failed; retry scheduled at {t}", a.attempt)),
        ActionStatus::Running => Some(format!("attempt {} running", a.attempt)),
        ActionStatus::Paused => Some(format!("paused: retries exhausted after attempt {}; resume or fail it (native API)", a.attempt)),
        _ => Some(format!("{} attempt(s) in series {}", a.attempt, a.series)),
    };
    Some(w::ActionExecution {
        status: Some(status),
        summary,
        last_status_change: Some(secs(a.attempt_started_at.unwrap_or(updated))),
        error_details: a
            .last_failure
            .as_ref()
            .map(|f| w::ErrorDetails { code: Some(f.exception_type.to_string()), message: Some(f.message.clone()) }),
        ..Default::default()
    })
}

fn execution_summary(v: &ExecutionView) -> w::PipelineExecutionSummary {
    w::PipelineExecutionSummary {
        pipeline_execution_id: Some(v.record.id.clone()),
        status: Some(execution_status(v.state.status)),
        start_time: Some(secs(v.state.started_at)),
        last_update_time: Some(secs(v.record.updated_at)),
        ..Default::default()
    }
}

fn ledger_detail(e: &LedgerEntry, version: Option<u32>) -> w::ActionExecutionDetail {
    let failed = e.outcome != "SUCCEEDED";
    let decision = e.decision_json.as_deref().and_then(|d| serde_json::from_str::<redrive_core::policy::Decision>(d).ok());
    w::ActionExecutionDetail {
        pipeline_execution_id: Some(e.execution_id.clone()),
        action_execution_id: Some(format!("{}-{}", &e.execution_id[..8.min(e.execution_id.len())], e.seq)),
        pipeline_version: version.map(|v| v as i32),
        stage_name: Some(e.stage.clone()),
        action_name: Some(e.action.clone()),
        start_time: Some(secs(e.started_at)),
        last_update_time: Some(secs(e.finished_at)),
        status: Some(if failed { w::ActionExecutionStatus::Failed } else { w::ActionExecutionStatus::Succeeded }),
        output: Some(w::ActionExecutionOutput {
            execution_result: Some(w::ActionExecutionResult {
                external_execution_id: Some(format!("series {} attempt {} ({})", e.series, e.attempt, e.trigger)),
                external_execution_summary: decision.map(|d| match d {
                    redrive_core::policy::Decision::Retry(r) => {
                        format!("retry in {} ms under {} (retry {})", r.delay_ms, r.policy, r.retry_number)
                    }
                    redrive_core::policy::Decision::GiveUp { reason, .. } => format!("gave up: {reason}"),
                }),
                error_details: failed.then(|| w::ErrorDetails { code: e.exception_type.clone(), message: e.message.clone() }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn page_size(max_results: Option<i32>) -> usize {
    max_results.map_or(100, |n| n.clamp(1, 1000) as usize)
}

async fn dispatch<S: Store>(svc: &Service<S>, request: Request) -> Result<Vec<u8>, ApiError> {
    match request {
        Request::CreatePipeline(i) => {
            let rec = svc.create_pipeline(&wire_to_native(&i.pipeline)).await.map_err(to_api_error)?;
            ok(&w::CreatePipelineOutput { pipeline: Some(declaration(&rec)?), tags: i.tags })
        }
        Request::UpdatePipeline(i) => {
            let rec = svc.update_pipeline(&wire_to_native(&i.pipeline)).await.map_err(to_api_error)?;
            ok(&w::UpdatePipelineOutput { pipeline: Some(declaration(&rec)?) })
        }
        Request::GetPipeline(i) => {
            let view = svc.get_pipeline(&i.name, i.version.map(|v| v.max(0) as u32)).await.map_err(to_api_error)?;
            let first = svc.get_pipeline(&i.name, Some(1)).await.ok().map(|f| f.record.created_at).unwrap_or(view.record.created_at);
            ok(&w::GetPipelineOutput {
                pipeline: Some(declaration(&view.record)?),
                metadata: Some(w::PipelineMetadata {
                    pipeline_arn: Some(format!("arn:aws:codepipeline:local:000000000000:{}", view.record.name)),
                    created: Some(secs(first)),
                    updated: Some(secs(view.record.created_at)),
                    ..Default::default()
                }),
            })
        }
        Request::ListPipelines(i) => {
            let limit = page_size(i.max_results);
            let after = i.next_token.as_deref().map(crate::page::parse_name_token).transpose().map_err(invalid_next_token)?;
            let rows = svc.list_pipelines(after, limit).await.map_err(to_api_error)?;
            let next = (rows.len() == limit).then(|| rows.last().map(|r| r.name.clone())).flatten();
            ok(&w::ListPipelinesOutput {
                pipelines: Some(
                    rows.iter()
                        .map(|r| w::PipelineSummary {
                            name: Some(r.name.clone()),
                            version: Some(r.version as i32),
                            created: Some(secs(r.created_at)),
                            updated: Some(secs(r.created_at)),
                            ..Default::default()
                        })
                        .collect(),
                ),
                next_token: next,
            })
        }
        Request::DeletePipeline(i) => {
            svc.delete_pipeline(&i.name).await.map_err(to_api_error)?;
            ok(&serde_json::json!({}))
        }
        Request::StartPipelineExecution(i) => {
            let vars: serde_json::Map<String, Value> =
                i.variables.unwrap_or_default().into_iter().map(|v| (v.name, Value::String(v.value))).collect();
            let input = if vars.is_empty() { serde_json::json!({}) } else { serde_json::json!({ "variables": vars }) };
            let id = svc.start_execution(&i.name, &input, i.client_request_token.as_deref()).await.map_err(to_api_error)?;
            ok(&w::StartPipelineExecutionOutput { pipeline_execution_id: Some(id) })
        }
        Request::GetPipelineExecution(i) => {
            let v = svc.get_execution(&i.pipeline_name, &i.pipeline_execution_id).await.map_err(to_api_error)?;
            let failure = v.state.failure.as_ref().or_else(|| {
                v.state
                    .stages
                    .iter()
                    .flat_map(|s| &s.actions)
                    .find_map(|a| a.last_failure.as_ref().filter(|_| a.status == ActionStatus::Failed))
            });
            ok(&w::GetPipelineExecutionOutput {
                pipeline_execution: Some(w::PipelineExecution {
                    pipeline_name: Some(v.record.target.name().to_string()),
                    pipeline_version: Some(v.pipeline_version() as i32),
                    pipeline_execution_id: Some(v.record.id.clone()),
                    status: Some(execution_status(v.state.status)),
                    status_summary: failure.map(|f| format!("{}: {}", f.exception_type, f.message)),
                    ..Default::default()
                }),
            })
        }
        Request::ListPipelineExecutions(i) => {
            let limit = page_size(i.max_results);
            let before: Option<ExecutionCursor> =
                i.next_token.as_deref().map(parse_execution_token).transpose().map_err(invalid_next_token)?;
            let rows = svc.list_executions(&i.pipeline_name, before, limit).await.map_err(to_api_error)?;
            let next = (rows.len() == limit)
                .then(|| {
                    rows.last().map(|v| execution_token(&ExecutionCursor { created_at: v.record.created_at, id: v.record.id.clone() }))
                })
                .flatten();
            ok(&w::ListPipelineExecutionsOutput {
                pipeline_execution_summaries: Some(rows.iter().map(execution_summary).collect()),
                next_token: next,
            })
        }
        Request::StopPipelineExecution(i) => {
            svc.stop_execution(&i.pipeline_name, &i.pipeline_execution_id, i.abandon.unwrap_or(false), i.reason.as_deref().unwrap_or(""))
                .await
                .map_err(to_api_error)?;
            ok(&w::StopPipelineExecutionOutput { pipeline_execution_id: Some(i.pipeline_execution_id) })
        }
        Request::GetPipelineState(i) => {
            let (view, per_stage) = svc.pipeline_state(&i.name).await.map_err(to_api_error)?;
            let mut stage_states = Vec::new();
            for (stage, latest) in view.loaded.pipeline.stages.iter().zip(&per_stage) {
                let mut out = w::StageState { stage_name: Some(stage.name.to_string()), ..Default::default() };
                if let Some(sv) = latest {
                    let (ev, st) = (&sv.execution, sv.stage_state());
                    out.latest_execution = stage_status(st.status, ev.state.status).map(|status| w::StageExecution {
                        pipeline_execution_id: ev.record.id.clone(),
                        status,
                        execution_type: None,
                    });
                    out.action_states = Some(
                        sv.stage_definition()
                            .actions
                            .iter()
                            .zip(&st.actions)
                            .map(|(a, s)| w::ActionState {
                                action_name: Some(a.name.to_string()),
                                latest_execution: action_execution(s, ev.record.updated_at),
                                ..Default::default()
                            })
                            .collect(),
                    );
                    if st.auto_retries_used + st.manual_retries_used > 0 {
                        out.retry_stage_metadata = Some(w::RetryStageMetadata {
                            auto_stage_retry_attempt: Some(st.auto_retries_used as i32),
                            manual_stage_retry_attempt: Some(st.manual_retries_used as i32),
                            latest_retry_trigger: st.latest_retry_trigger.map(|t| match t {
                                Trigger::StageAutoRetry => w::RetryTrigger::AutomatedStageRetry,
                                _ => w::RetryTrigger::ManualStageRetry,
                            }),
                        });
                    }
                } else {
                    out.action_states = Some(
                        stage
                            .actions
                            .iter()
                            .map(|a| w::ActionState { action_name: Some(a.name.to_string()), ..Default::default() })
                            .collect(),
                    );
                }
                stage_states.push(out);
            }
            let first = svc.get_pipeline(&i.name, Some(1)).await.ok().map(|f| f.record.created_at).unwrap_or(view.record.created_at);
            ok(&w::GetPipelineStateOutput {
                pipeline_name: Some(view.record.name.clone()),
                pipeline_version: Some(view.record.version as i32),
                stage_states: Some(stage_states),
                created: Some(secs(first)),
                updated: Some(secs(view.record.created_at)),
            })
        }
        Request::ListActionExecutions(i) => {
            let limit = page_size(i.max_results);
            let before = i.next_token.as_deref().map(crate::page::parse_seq_token).transpose().map_err(invalid_next_token)?;
            let exec = i.filter.as_ref().and_then(|f| f.pipeline_execution_id.clone());
            let rows = svc.list_action_executions(&i.pipeline_name, exec.as_deref(), before, limit).await.map_err(to_api_error)?;
            let next = (rows.len() == limit).then(|| rows.last().map(|e| e.seq.to_string())).flatten();
            let mut versions = std::collections::HashMap::new();
            let mut details = Vec::with_capacity(rows.len());
            // A deferral is not an action execution: CodePipeline's listing keeps its shape.
            for e in rows.iter().filter(|e| e.outcome != redrive_core::dependency::DEFERRED_OUTCOME) {
                if !versions.contains_key(&e.execution_id) {
                    let v = svc.store().get_execution(&e.execution_id).await.ok().flatten().and_then(|r| r.target.pipeline_version());
                    versions.insert(e.execution_id.clone(), v);
                }
                details.push(ledger_detail(e, versions[&e.execution_id]));
            }
            ok(&w::ListActionExecutionsOutput { action_execution_details: Some(details), next_token: next })
        }
        Request::RetryStageExecution(i) => {
            let mode = match i.retry_mode {
                w::StageRetryMode::FailedActions => RetryMode::FailedActions,
                w::StageRetryMode::AllActions => RetryMode::AllActions,
            };
            let id = svc
                .retry_stage(&i.pipeline_name, &i.stage_name, &i.pipeline_execution_id, mode, Trigger::Manual)
                .await
                .map_err(to_api_error)?;
            ok(&w::RetryStageExecutionOutput { pipeline_execution_id: Some(id) })
        }
    }
}

/// A `nextToken` this server did not issue: the model's `InvalidNextTokenException`
/// on every list operation (parsed one way, by `page`).
fn invalid_next_token(e: ServiceError) -> ApiError {
    ApiError::new(ErrorCode::InvalidNextTokenException, e.to_string())
}
