//! Bulk stage retries under `/v1/pipelines/{name}/bulk-retries` (docs/retry-control.md):
//! start one (or its dry run), list them, show one, its per-execution results,
//! abort it. Scope `operate` to start or abort, `read` to look (auth/rules.rs).

use crate::doc::op;
use crate::error::{ApiError, Result, invalid};
use crate::extract::{JsonBody, QueryParams};
use crate::page::{Page, keyset_token, page_limit, parse_keyset_token, parse_seq_token};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use redrive_core::time::parse_duration_ms;
use redrive_engine::redrive::Rate;
use redrive_engine::service::{BulkPlan, BulkRequest, BulkSummary, Service, ServiceError};
use redrive_store::{BulkRetryRecord, BulkRetryResult, Store};
use redrive_wire as w;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;

type St<S> = State<Arc<Service<S>>>;

pub fn router<S: Store>() -> OpenApiRouter<Arc<Service<S>>> {
    OpenApiRouter::new()
        .routes(op::<__path_start_bulk_retry, _, _, _>(start_bulk_retry::<S>))
        .routes(op::<__path_list_bulk_retries, _, _, _>(list_bulk_retries::<S>))
        .routes(op::<__path_get_bulk_retry, _, _, _>(get_bulk_retry::<S>))
        .routes(op::<__path_bulk_retry_results, _, _, _>(bulk_retry_results::<S>))
        .routes(op::<__path_abort_bulk_retry, _, _, _>(abort_bulk_retry::<S>))
}

fn request(pipeline: String, b: w::BulkRetryRequest) -> Result<(BulkRequest, bool)> {
    let rate_per_s = match b.rate.as_deref() {
        None => None,
        Some(text) => match Rate::parse(text).map_err(|e| invalid(format!("rate: {e}")))?.per_second {
            Some(r) => Some(r),
            None => return Err(invalid("rate: a bulk retry is always paced; give N/s, N/m or N/h (at most 1000/s)")),
        },
    };
    let since_ms = b.since.as_deref().map(|s| parse_duration_ms(s).map_err(|e| invalid(format!("since: {e}")))).transpose()?;
    let req = BulkRequest {
        pipeline,
        stage: b.stage,
        exception_type: b.exception_type,
        since_ms,
        mode: crate::native::retry_mode(b.retry_mode.unwrap_or(w::RetryMode::FailedActions)),
        rate_per_s,
        max: b.max,
    };
    Ok((req, b.dry_run.unwrap_or(false)))
}

fn plan(p: &BulkPlan) -> w::BulkPlan {
    let item = |i: &redrive_engine::service::BulkPlanItem| w::BulkPlanItem {
        execution_id: i.execution_id.clone(),
        would: if i.would == "retry" { w::BulkWould::Retry } else { w::BulkWould::Skip },
        detail: i.detail.clone(),
    };
    w::BulkPlan {
        matched: p.matched,
        would_retry: p.would_retry,
        would_skip: p.would_skip,
        scanned: p.scanned,
        scan_complete: p.scan_complete,
        items: p.items.iter().map(item).collect(),
    }
}

fn status(s: &str) -> w::BulkStatus {
    match s {
        "RUNNING" => w::BulkStatus::Running,
        "SUCCEEDED" => w::BulkStatus::Succeeded,
        "ABORTED" => w::BulkStatus::Aborted,
        "INTERRUPTED" => w::BulkStatus::Interrupted,
        _ => w::BulkStatus::Failed,
    }
}

/// An operation record; its request and summary are stored as the engine's JSON.
fn operation(r: &BulkRetryRecord) -> Result<w::BulkRetry> {
    let unreadable = |what: &str, e: serde_json::Error| {
        ApiError(ServiceError::Unavailable(format!("bulk retry {}: stored {what} unreadable: {e}", r.id)))
    };
    let req: BulkRequest = serde_json::from_str(&r.request_json).map_err(|e| unreadable("request", e))?;
    let summary: BulkSummary = serde_json::from_str(&r.summary_json).map_err(|e| unreadable("summary", e))?;
    let c = &summary.counts;
    Ok(w::BulkRetry {
        id: r.id.clone(),
        pipeline: r.pipeline.clone(),
        stage: r.stage.clone(),
        status: status(&r.status),
        started_at: r.started_at.to_string(),
        finished_at: r.finished_at.map(|t| t.to_string()),
        exception_type: req.exception_type,
        since_ms: req.since_ms,
        retry_mode: match req.mode {
            redrive_core::definition::RetryMode::FailedActions => w::RetryMode::FailedActions,
            redrive_core::definition::RetryMode::AllActions => w::RetryMode::AllActions,
        },
        rate_per_second: req.rate_per_s.unwrap_or(redrive_core::limits::DEFAULT_BULK_RETRY_RATE_PER_S),
        max: req.max.unwrap_or(redrive_core::limits::MAX_BULK_RETRY_EXECUTIONS),
        counts: w::BulkCounts { matched: c.matched, processed: c.processed, retried: c.retried, skipped: c.skipped, failed: c.failed },
        error: summary.error,
    })
}

fn result(r: &BulkRetryResult) -> w::BulkResult {
    w::BulkResult {
        seq: r.seq,
        execution_id: r.execution_id.clone(),
        outcome: match r.outcome.as_str() {
            "retried" => w::BulkOutcome::Retried,
            "skipped" => w::BulkOutcome::Skipped,
            _ => w::BulkOutcome::Failed,
        },
        reason: r.reason.clone(),
        at: r.at.to_string(),
    }
}

/// Retries a stage of every matching execution, paced: the operation (202) with
/// the count it starts from, or with `dryRun` only that count (200).
#[utoipa::path(post, path = "/v1/pipelines/{name}/bulk-retries", tag = "executions", params(("name" = String, Path)),
    request_body = w::BulkRetryRequest,
    responses((status = 202, description = "Started", body = w::BulkRetryStarted), (status = 200, description = "The dry run", body = w::BulkPlan), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse), (status = 503, description = "The engine is degraded; `Retry-After` says when to retry", body = w::ErrorResponse)))]
async fn start_bulk_retry<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<w::BulkRetryRequest>,
) -> Result<Response> {
    let (req, dry_run) = request(name, body)?;
    if dry_run {
        return Ok(Json(plan(&svc.plan_bulk_retry(&req).await?)).into_response());
    }
    let (record, p) = svc.start_bulk_retry(req).await?;
    let started = w::BulkRetryStarted { operation: operation(&record)?, plan: plan(&p) };
    Ok((StatusCode::ACCEPTED, Json(started)).into_response())
}

/// A pipeline's bulk retries, newest first, one page.
#[utoipa::path(get, path = "/v1/pipelines/{name}/bulk-retries", tag = "executions", params(("name" = String, Path), Page),
    responses((status = 200, description = "Success", body = w::BulkRetryList), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn list_bulk_retries<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<Page>,
) -> Result<Json<w::BulkRetryList>> {
    let limit = page_limit(q.limit)?;
    let before = q.next_token.as_deref().map(parse_keyset_token).transpose()?;
    let rows = svc.list_bulk_retries(&name, before, limit).await?;
    let next_token = (rows.len() == limit).then(|| rows.last().map(|r| keyset_token(r.started_at, &r.id))).flatten();
    Ok(Json(w::BulkRetryList { operations: rows.iter().map(operation).collect::<Result<_>>()?, next_token }))
}

/// One bulk retry with its progress.
#[utoipa::path(get, path = "/v1/pipelines/{name}/bulk-retries/{id}", tag = "executions", params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "Success", body = w::BulkRetry), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn get_bulk_retry<S: Store>(State(svc): St<S>, Path((name, id)): Path<(String, String)>) -> Result<Json<w::BulkRetry>> {
    Ok(Json(operation(&svc.get_bulk_retry(&name, &id).await?)?))
}

/// A bulk retry's per-execution results, in the order it handled them.
#[utoipa::path(get, path = "/v1/pipelines/{name}/bulk-retries/{id}/results", tag = "executions", params(("name" = String, Path), ("id" = String, Path), Page),
    responses((status = 200, description = "Success", body = w::BulkResultList), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn bulk_retry_results<S: Store>(
    State(svc): St<S>,
    Path((name, id)): Path<(String, String)>,
    QueryParams(q): QueryParams<Page>,
) -> Result<Json<w::BulkResultList>> {
    let limit = page_limit(q.limit)?;
    let after = q.next_token.as_deref().map(parse_seq_token).transpose()?.unwrap_or(0) as u64;
    let rows = svc.bulk_retry_results(&name, &id, after, limit).await?;
    let next_token = (rows.len() == limit).then(|| rows.last().map(|r| r.seq.to_string())).flatten();
    Ok(Json(w::BulkResultList { results: rows.iter().map(result).collect(), next_token }))
}

/// Aborts a running bulk retry: no execution is retried after it; the one under
/// way is recorded; the operation ends ABORTED.
#[utoipa::path(post, path = "/v1/pipelines/{name}/bulk-retries/{id}/abort", tag = "executions", params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "Success", body = w::BulkRetry), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn abort_bulk_retry<S: Store>(State(svc): St<S>, Path((name, id)): Path<(String, String)>) -> Result<Json<w::BulkRetry>> {
    Ok(Json(operation(&svc.abort_bulk_retry(&name, &id).await?)?))
}
