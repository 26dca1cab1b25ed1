//! Dead-letter queues over the native REST API (`/v1/dlq/...`) and their
//! Prometheus figures (`/metrics`).
//!
//! Queues, entries, purges, redrives (mid-level: one queue; high-level: every
//! queue under a prefix), dry runs, recorded runs and the configured schedules.
//! The domain lives in the engine's service; this module only maps wire formats:
//! query strings and bodies in (`redrive_wire` request types: every value
//! checked, unknown fields refused), `redrive_wire` answers out.

use crate::doc::op;
use crate::error::{ApiError, Result, invalid};
use crate::extract::{JsonBody, QueryParams};
use crate::page::{MAX_PAGE_SIZE, keyset_token, page_limit, parse_keyset_token, parse_name_token};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redrive_core::dlq::{DlqEntryState, RedriveMode};
use redrive_core::time::{Timestamp, human_duration_ms, parse_duration_ms};
use redrive_engine::redrive::{self as rd, DEFAULT_RATE, QueueScope, Rate, RedriveRequest};
use redrive_engine::service::{EntryQuery, Service, ServiceError};
use redrive_store::{DlqEntryCursor, DlqEntryRecord, DlqQueueStats, ExecutionKind, RedriveRunRecord, Store};
use redrive_wire as w;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;

/// Queues `/metrics` reports at most (in name order); a scrape never reads more.
pub const MAX_METRICS_QUEUES: usize = 10_000;

/// The content type of `/metrics`: OpenMetrics 1.0 text (Prometheus scrapes it).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type St<S> = State<Arc<Service<S>>>;

pub fn router<S: Store>() -> OpenApiRouter<Arc<Service<S>>> {
    OpenApiRouter::new()
        .routes(op::<__path_list_queues, _, _, _>(list_queues::<S>))
        .routes(op::<__path_get_queue, _, _, _>(get_queue::<S>))
        .routes(op::<__path_configure_queue, _, _, _>(configure_queue::<S>))
        .routes(op::<__path_list_entries, _, _, _>(list_entries::<S>))
        .routes(op::<__path_purge, _, _, _>(purge::<S>))
        .routes(op::<__path_redrive_queue, _, _, _>(redrive_queue::<S>))
        .routes(op::<__path_get_entry, _, _, _>(get_entry::<S>))
        .routes(op::<__path_redrive_prefix, _, _, _>(redrive_prefix::<S>))
        .routes(op::<__path_redrive_entry_here, _, _, _>(redrive_entry_here::<S>))
        .routes(op::<__path_list_runs, _, _, _>(list_runs::<S>))
        .routes(op::<__path_get_run, _, _, _>(get_run::<S>))
        .routes(op::<__path_abort_run, _, _, _>(abort_run::<S>))
        .routes(op::<__path_list_schedules, _, _, _>(list_schedules::<S>))
        .routes(op::<__path_metrics, _, _, _>(metrics::<S>))
}

// ---------------------------------------------------------------------------
// Engine types → wire types

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Seconds since `t` (never negative), as Prometheus and people read ages.
fn age_seconds(t: Timestamp, now: Timestamp) -> f64 {
    now.ms_since(t).max(0) as f64 / 1000.0
}

pub fn queue(q: &DlqQueueStats, now: Timestamp) -> w::Queue {
    w::Queue {
        name: q.queue.name.clone(),
        max_redrives: q.queue.max_redrives,
        depth: q.depth,
        poison: q.poison,
        redriven: q.redriven,
        oldest_entered_at: q.oldest_entered_at.map(|t| t.to_string()),
        oldest_age_seconds: q.oldest_entered_at.map(|t| age_seconds(t, now)),
        created_at: q.queue.created_at.to_string(),
    }
}

fn entry_state(s: DlqEntryState) -> w::EntryState {
    match s {
        DlqEntryState::Queued => w::EntryState::Queued,
        DlqEntryState::Redriven => w::EntryState::Redriven,
        DlqEntryState::Resolved => w::EntryState::Resolved,
    }
}

pub fn entry(e: &DlqEntryRecord) -> w::Entry {
    w::Entry {
        entry_id: e.id.clone(),
        queue: e.queue.clone(),
        state: entry_state(e.state),
        poison: e.is_poison(),
        redrive_count: e.redrive_count,
        max_redrives: e.max_redrives,
        source: w::EntrySource {
            kind: match e.source.kind() {
                ExecutionKind::Pipeline => w::TargetKind::Pipeline,
                ExecutionKind::Function => w::TargetKind::Function,
            },
            pipeline_name: e.source.name().to_string(),
            pipeline_version: e.source.pipeline_version(),
            execution_id: e.execution_id.clone(),
            stage: e.stage.clone(),
            action: e.action.clone(),
        },
        error: w::Failure { exception_type: e.exception_type.clone(), message: e.message.clone() },
        input: parse_json(&e.input_json),
        attempts: parse_json(&e.detail_json),
        first_failure_at: e.first_failure_at.to_string(),
        last_failure_at: e.last_failure_at.to_string(),
        entered_at: e.entered_at.to_string(),
        updated_at: e.updated_at.to_string(),
        redriven_to: e.redriven_to.clone(),
        redriven_at: e.redriven_at.map(|t| t.to_string()),
        resolved_at: e.resolved_at.map(|t| t.to_string()),
    }
}

/// A redrive mode on the wire.
pub fn redrive_mode(m: RedriveMode) -> w::RedriveMode {
    match m {
        RedriveMode::RetryStage => w::RedriveMode::RetryStage,
        RedriveMode::NewExecution => w::RedriveMode::NewExecution,
    }
}

pub fn run_request(r: &RedriveRequest) -> w::RunRequest {
    let (queue, prefix) = match &r.scope {
        QueueScope::Queue(q) => (Some(q.clone()), None),
        QueueScope::Prefix(p) => (None, Some(p.clone())),
    };
    w::RunRequest {
        scope: w::RunScope { queue, prefix },
        entry_id: r.entry_id.clone(),
        force: r.force,
        exception_type: r.exception_type.clone(),
        pipeline_name: r.pipeline_name.clone(),
        older_than_ms: r.older_than_ms,
        max_entries: r.max_entries,
        rate: w::RunRate { per_second: r.rate.per_second },
        mode: redrive_mode(r.mode),
    }
}

fn outcome(o: &rd::EntryOutcome) -> w::EntryOutcome {
    w::EntryOutcome {
        entry_id: o.entry_id.clone(),
        queue: o.queue.clone(),
        outcome: if o.outcome == "redriven" { w::EntryOutcomeKind::Redriven } else { w::EntryOutcomeKind::Skipped },
        execution_id: o.execution_id.clone(),
        reason: o.reason.clone(),
    }
}

fn run_summary(s: &rd::RedriveSummary) -> w::RunSummary {
    w::RunSummary {
        matched: s.matched,
        processed: s.processed,
        redriven: s.redriven,
        skipped: s.skipped,
        skipped_by_reason: s.skipped_by_reason.clone(),
        parked: s.parked,
        queues: s.queues.iter().map(|(q, c)| (q.clone(), w::QueueCounts { redriven: c.redriven, skipped: c.skipped })).collect(),
        outcomes: s.outcomes.iter().map(outcome).collect(),
        error: s.error.clone(),
    }
}

fn run_status(text: &str) -> w::RunStatus {
    match text {
        "RUNNING" => w::RunStatus::Running,
        "SUCCEEDED" => w::RunStatus::Succeeded,
        "INTERRUPTED" => w::RunStatus::Interrupted,
        rd::ABORTED => w::RunStatus::Aborted,
        _ => w::RunStatus::Failed,
    }
}

/// A run record; its request and summary are stored as the engine's JSON.
pub fn run(r: &RedriveRunRecord) -> Result<w::Run> {
    let unreadable =
        |what: &str, e: serde_json::Error| ApiError(ServiceError::Unavailable(format!("run {}: stored {what} unreadable: {e}", r.id)));
    let request: RedriveRequest = serde_json::from_str(&r.request_json).map_err(|e| unreadable("request", e))?;
    let summary: rd::RedriveSummary = serde_json::from_str(&r.summary_json).map_err(|e| unreadable("summary", e))?;
    Ok(w::Run {
        run_id: r.id.clone(),
        schedule: r.schedule.clone(),
        status: run_status(&r.status),
        started_at: r.started_at.to_string(),
        finished_at: r.finished_at.map(|t| t.to_string()),
        request: run_request(&request),
        summary: run_summary(&summary),
    })
}

fn plan(p: &rd::RedrivePlan) -> w::Plan {
    let item = |i: &rd::PlanItem| w::PlanItem {
        entry_id: i.entry_id.clone(),
        queue: i.queue.clone(),
        pipeline_name: i.pipeline_name.clone(),
        execution_id: i.execution_id.clone(),
        stage: i.stage.clone(),
        action: i.action.clone(),
        exception_type: i.exception_type.clone(),
        redrive_count: i.redrive_count,
        would: if i.would == "redrive" { w::Would::Redrive } else { w::Would::Skip },
        detail: i.detail.clone(),
    };
    w::Plan {
        matched: p.matched,
        would_redrive: p.would_redrive,
        would_skip: p.would_skip,
        parked: p.parked,
        items: p.items.iter().map(item).collect(),
    }
}

// ---------------------------------------------------------------------------
// Parameters

fn parse_older_than(text: &str) -> Result<u64> {
    parse_duration_ms(text).map_err(|e| invalid(format!("olderThan: {e}")))
}

fn parse_state(text: &str) -> Result<(Option<DlqEntryState>, bool)> {
    if text == "ALL" {
        return Ok((None, true));
    }
    DlqEntryState::parse(text)
        .map(|s| (Some(s), false))
        .ok_or_else(|| invalid(format!("state {text:?} is not one of QUEUED, REDRIVEN, RESOLVED, ALL")))
}

fn parse_poison(text: &str) -> Result<bool> {
    match text {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(invalid(format!("poison {other:?} is not one of true, false"))),
    }
}

// ---------------------------------------------------------------------------
// Queues

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct QueuesQuery {
    /// Only queues whose name starts with this.
    pub prefix: Option<String>,
    pub next_token: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

/// Dead-letter queues by name with their figures, one page.
#[utoipa::path(get, path = "/v1/dlq/queues", tag = "dlq", params(QueuesQuery),
    responses((status = 200, description = "Success", body = w::QueueList), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn list_queues<S: Store>(State(svc): St<S>, QueryParams(q): QueryParams<QueuesQuery>) -> Result<Json<w::QueueList>> {
    let limit = page_limit(q.limit)?;
    let after = q.next_token.as_deref().map(parse_name_token).transpose()?;
    let rows = svc.list_dlq_queues(q.prefix.as_deref(), after, limit).await?;
    let now = svc.now();
    let next_token = (rows.len() == limit).then(|| rows.last().map(|r| r.queue.name.clone())).flatten();
    Ok(Json(w::QueueList { queues: rows.iter().map(|r| queue(r, now)).collect(), next_token }))
}

/// A queue with its figures.
#[utoipa::path(get, path = "/v1/dlq/queues/{queue}", tag = "dlq", params(("queue" = String, Path)),
    responses((status = 200, description = "Success", body = w::Queue), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn get_queue<S: Store>(State(svc): St<S>, Path(name): Path<String>) -> Result<Json<w::Queue>> {
    let stats = svc.get_dlq_queue(&name).await?;
    Ok(Json(queue(&stats, svc.now())))
}

/// Creates or configures a queue.
#[utoipa::path(put, path = "/v1/dlq/queues/{queue}", tag = "dlq", params(("queue" = String, Path)), request_body = w::ConfigureQueueRequest,
    responses((status = 200, description = "Success", body = w::Queue), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse), (status = 503, description = "The engine is degraded; `Retry-After` says when to retry", body = w::ErrorResponse)))]
async fn configure_queue<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<w::ConfigureQueueRequest>,
) -> Result<Json<w::Queue>> {
    let max = redrive_store::MAX_MAX_REDRIVES;
    let n = body.max_redrives;
    if !(1..=u64::from(max)).contains(&n) {
        return Err(invalid(format!("maxRedrives {n} is out of range: a whole number from 1 to {max}")));
    }
    svc.configure_dlq_queue(&name, n as u32).await?;
    let stats = svc.get_dlq_queue(&name).await?;
    Ok(Json(queue(&stats, svc.now())))
}

// ---------------------------------------------------------------------------
// Entries

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct EntriesQuery {
    /// Exception type of the final error.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub exception_type: Option<String>,
    /// Pipeline the entries came from.
    pub source: Option<String>,
    /// Minimum time in the queue, e.g. `10m`.
    pub older_than: Option<String>,
    /// `QUEUED` (default), `REDRIVEN`, `RESOLVED` or `ALL`.
    pub state: Option<String>,
    /// `true` or `false`.
    pub poison: Option<String>,
    pub next_token: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

/// A queue's entries (oldest first), one page, and how many match in all.
#[utoipa::path(get, path = "/v1/dlq/queues/{queue}/entries", tag = "dlq", params(("queue" = String, Path), EntriesQuery),
    responses((status = 200, description = "Success", body = w::EntryList), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn list_entries<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    QueryParams(q): QueryParams<EntriesQuery>,
) -> Result<Json<w::EntryList>> {
    let limit = page_limit(q.limit)?;
    let (state, any_state) = match q.state.as_deref() {
        None => (None, false),
        Some(s) => parse_state(s)?,
    };
    let after = q.next_token.as_deref().map(parse_keyset_token).transpose()?.map(|(entered_at, id)| DlqEntryCursor { entered_at, id });
    let mut query = EntryQuery {
        exception_type: q.exception_type,
        pipeline_name: q.source,
        older_than_ms: q.older_than.as_deref().map(parse_older_than).transpose()?,
        state,
        any_state,
        poison: q.poison.as_deref().map(parse_poison).transpose()?,
        after: None,
        limit,
    };
    let count = svc.count_dlq_entries(&name, &query).await?;
    query.after = after;
    let rows = svc.list_dlq_entries(&name, &query).await?;
    let next_token = (rows.len() == limit).then(|| rows.last().map(|e| keyset_token(e.entered_at, &e.id))).flatten();
    Ok(Json(w::EntryList { entries: rows.iter().map(entry).collect(), next_token, count }))
}

/// One entry.
#[utoipa::path(get, path = "/v1/dlq/entries/{id}", tag = "dlq", params(("id" = String, Path)),
    responses((status = 200, description = "Success", body = w::Entry), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn get_entry<S: Store>(State(svc): St<S>, Path(id): Path<String>) -> Result<Json<w::Entry>> {
    Ok(Json(entry(&svc.get_dlq_entry(&id).await?)))
}

/// Deletes a queue's matching queued entries.
#[utoipa::path(post, path = "/v1/dlq/queues/{queue}/purge", tag = "dlq", params(("queue" = String, Path)), request_body = w::PurgeRequest,
    responses((status = 200, description = "Success", body = w::PurgeResponse), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse), (status = 503, description = "The engine is degraded; `Retry-After` says when to retry", body = w::ErrorResponse)))]
async fn purge<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<w::PurgeRequest>,
) -> Result<Json<w::PurgeResponse>> {
    let query = EntryQuery {
        exception_type: body.exception_type,
        pipeline_name: body.source,
        older_than_ms: body.older_than.as_deref().map(parse_older_than).transpose()?,
        poison: body.poison,
        ..EntryQuery::default()
    };
    let purged = svc.purge_dlq(&name, &query).await?;
    Ok(Json(w::PurgeResponse { purged }))
}

// ---------------------------------------------------------------------------
// Redrives

/// A redrive body as a request in `scope`, and whether it is a dry run.
fn redrive_request(b: w::RedriveRequest, scope: QueueScope) -> Result<(RedriveRequest, bool)> {
    let rate = match b.rate.as_deref() {
        None => DEFAULT_RATE,
        Some(r) => Rate::parse(r).map_err(|e| invalid(if e.starts_with("rate ") { e } else { format!("rate: {e}") }))?,
    };
    if let Some(n) = b.max_entries.filter(|n| *n < 1) {
        return Err(invalid(format!("maxEntries {n} is out of range: a whole number of at least 1")));
    }
    let req = RedriveRequest {
        scope,
        entry_id: b.entry_id,
        force: b.force.unwrap_or(false),
        input_patch: b.input_patch,
        exception_type: b.exception_type,
        pipeline_name: b.source,
        older_than_ms: b.older_than.as_deref().map(parse_older_than).transpose()?,
        max_entries: b.max_entries,
        rate,
        mode: mode_of(b.mode),
    };
    Ok((req, b.dry_run.unwrap_or(false)))
}

async fn redrive<S: Store>(svc: &Service<S>, req: RedriveRequest, dry_run: bool) -> Result<Response> {
    if dry_run {
        return Ok(Json(w::RedriveResponse::Plan(plan(&svc.plan_redrive(&req).await?))).into_response());
    }
    let started = svc.start_redrive(req).await?;
    Ok((StatusCode::ACCEPTED, Json(w::RedriveResponse::Run(Box::new(run(&started)?)))).into_response())
}

/// Redrives a queue's matching entries: a run (202), or with `dryRun` its plan (200).
#[utoipa::path(post, path = "/v1/dlq/queues/{queue}/redrive", tag = "dlq", params(("queue" = String, Path)), request_body = w::RedriveRequest,
    responses((status = 202, description = "Started", body = w::Run), (status = 200, description = "Success", body = w::Plan), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse), (status = 503, description = "The engine is degraded; `Retry-After` says when to retry", body = w::ErrorResponse)))]
async fn redrive_queue<S: Store>(
    State(svc): St<S>,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<w::RedriveRequest>,
) -> Result<Response> {
    if body.queue_prefix.is_some() {
        return Err(invalid("queuePrefix: not a field of a one-queue redrive; POST /v1/dlq/redrive redrives every queue under a prefix"));
    }
    let (req, dry_run) = redrive_request(body, QueueScope::Queue(name))?;
    redrive(&svc, req, dry_run).await
}

/// Redrives every queue under `queuePrefix`: a run (202), or with `dryRun` its plan (200).
#[utoipa::path(post, path = "/v1/dlq/redrive", tag = "dlq", request_body = w::RedriveRequest,
    responses((status = 202, description = "Started", body = w::Run), (status = 200, description = "Success", body = w::Plan), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse), (status = 503, description = "The engine is degraded; `Retry-After` says when to retry", body = w::ErrorResponse)))]
async fn redrive_prefix<S: Store>(State(svc): St<S>, JsonBody(mut body): JsonBody<w::RedriveRequest>) -> Result<Response> {
    let prefix = body
        .queue_prefix
        .take()
        .ok_or_else(|| invalid("queuePrefix is required: the redrive covers every queue whose name starts with it"))?;
    let (req, dry_run) = redrive_request(body, QueueScope::Prefix(prefix))?;
    redrive(&svc, req, dry_run).await
}

/// Redrives one entry of the pipeline (or durable function) `name` now,
/// through the engine driving it, and answers once its resubmission is
/// committed (200 either way: `redriven`, or `skipped` with the reason). With
/// `--spread` the request goes to the process holding the pipeline's shard; a
/// redrive run asks this of every entry's holder.
#[utoipa::path(post, path = "/v1/pipelines/{name}/dlq-entries/{id}/redrive", tag = "dlq",
    params(("name" = String, Path, description = "The entry's pipeline or function"), ("id" = String, Path, description = "The entry")),
    request_body = w::EntryRedriveRequest,
    responses((status = 200, description = "Success", body = w::EntryRedriveResponse), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse), (status = 503, description = "The engine is degraded; `Retry-After` says when to retry", body = w::ErrorResponse)))]
async fn redrive_entry_here<S: Store>(
    State(svc): St<S>,
    Path((name, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<w::EntryRedriveRequest>,
) -> Result<Json<w::EntryRedriveResponse>> {
    let call = rd::EntryRedrive {
        entry_id: id,
        source_name: name,
        mode: mode_of(body.mode),
        force: body.force.unwrap_or(false),
        scope_prefix: body.queue_prefix,
        input_patch: body.input_patch,
    };
    Ok(Json(match svc.redrive_entry_here(call).await? {
        Ok(execution_id) => w::EntryRedriveResponse {
            outcome: w::EntryOutcomeKind::Redriven,
            execution_id: Some(execution_id),
            skipped: None,
            message: None,
        },
        Err(reason) => w::EntryRedriveResponse {
            outcome: w::EntryOutcomeKind::Skipped,
            execution_id: None,
            message: Some(reason.to_string()),
            skipped: Some(skip_to_wire(&reason)),
        },
    }))
}

fn mode_of(m: Option<w::RedriveMode>) -> RedriveMode {
    match m.unwrap_or(w::RedriveMode::RetryStage) {
        w::RedriveMode::RetryStage => RedriveMode::RetryStage,
        w::RedriveMode::NewExecution => RedriveMode::NewExecution,
    }
}

/// A skip reason on the wire.
pub fn skip_to_wire(reason: &rd::SkipReason) -> w::EntrySkip {
    use rd::SkipReason as R;
    match reason.clone() {
        R::NotFound => w::EntrySkip::NotFound,
        R::NotQueued(state) => w::EntrySkip::NotInQueue { state: state.to_string() },
        R::Poison { redrive_count, max_redrives } => w::EntrySkip::Poison { redrive_count, max_redrives },
        R::BeingRedriven => w::EntrySkip::BeingRedriven,
        R::OutOfScope { queue, prefix } => w::EntrySkip::OutOfScope { queue, prefix },
        R::ExecutionGone(execution_id) => w::EntrySkip::ExecutionGone { execution_id },
        R::PipelineGone(pipeline) => w::EntrySkip::PipelineGone { pipeline },
        R::Refused(why) => w::EntrySkip::Refused { why },
        R::OtherShard(shard) => w::EntrySkip::OtherShard { shard },
    }
}

/// A skip reason from the wire (another process's answer); `Err` names a
/// state no entry has.
pub fn skip_from_wire(skip: w::EntrySkip) -> std::result::Result<rd::SkipReason, String> {
    use rd::SkipReason as R;
    Ok(match skip {
        w::EntrySkip::NotFound => R::NotFound,
        w::EntrySkip::NotInQueue { state } => {
            R::NotQueued(DlqEntryState::parse(&state).ok_or_else(|| format!("{state:?} is not a dead-letter entry state"))?.as_str())
        }
        w::EntrySkip::Poison { redrive_count, max_redrives } => R::Poison { redrive_count, max_redrives },
        w::EntrySkip::BeingRedriven => R::BeingRedriven,
        w::EntrySkip::OutOfScope { queue, prefix } => R::OutOfScope { queue, prefix },
        w::EntrySkip::ExecutionGone { execution_id } => R::ExecutionGone(execution_id),
        w::EntrySkip::PipelineGone { pipeline } => R::PipelineGone(pipeline),
        w::EntrySkip::Refused { why } => R::Refused(why),
        w::EntrySkip::OtherShard { shard } => R::OtherShard(shard),
    })
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct RunsQuery {
    /// Only this schedule's runs.
    pub schedule: Option<String>,
    pub next_token: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<usize>,
}

/// Redrive runs, newest first, one page.
#[utoipa::path(get, path = "/v1/dlq/redrives", tag = "dlq", params(RunsQuery),
    responses((status = 200, description = "Success", body = w::RunList), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn list_runs<S: Store>(State(svc): St<S>, QueryParams(q): QueryParams<RunsQuery>) -> Result<Json<w::RunList>> {
    let limit = page_limit(q.limit)?;
    if let Some(s) = &q.schedule {
        redrive_engine::service::validate_name("schedule", s)?;
    }
    let before = q.next_token.as_deref().map(parse_keyset_token).transpose()?;
    let rows = svc.list_redrive_runs(q.schedule.as_deref(), before, limit).await?;
    let next_token = (rows.len() == limit).then(|| rows.last().map(|r| keyset_token(r.started_at, &r.id))).flatten();
    Ok(Json(w::RunList { runs: rows.iter().map(run).collect::<Result<_>>()?, next_token }))
}

/// One redrive run.
#[utoipa::path(get, path = "/v1/dlq/redrives/{id}", tag = "dlq", params(("id" = String, Path)),
    responses((status = 200, description = "Success", body = w::Run), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn get_run<S: Store>(State(svc): St<S>, Path(id): Path<String>) -> Result<Json<w::Run>> {
    Ok(Json(run(&svc.get_redrive_run(&id).await?)?))
}

/// Aborts a running redrive: it starts no more entries and ends `ABORTED` once
/// those already resubmitted finish. Answers the run as it is now (202).
#[utoipa::path(post, path = "/v1/dlq/redrives/{id}/abort", tag = "dlq", params(("id" = String, Path)),
    request_body(content = Object, description = "`{}`"),
    responses((status = 202, description = "Abort requested", body = w::Run), (status = "4XX", description = "The request was refused (`ConflictException` when the run is not running here); `error.code` says why", body = w::ErrorResponse)))]
async fn abort_run<S: Store>(
    State(svc): St<S>,
    Path(id): Path<String>,
    JsonBody(_): JsonBody<Value>,
) -> Result<(StatusCode, Json<w::Run>)> {
    Ok((StatusCode::ACCEPTED, Json(run(&svc.abort_redrive(&id).await?)?)))
}

/// The configured redrive schedules, with their next due time and last run.
#[utoipa::path(get, path = "/v1/dlq/schedules", tag = "dlq",
    responses((status = 200, description = "Success", body = w::ScheduleList), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn list_schedules<S: Store>(State(svc): St<S>) -> Result<Json<w::ScheduleList>> {
    let mut schedules = Vec::new();
    for s in svc.schedules() {
        let next_due = svc.schedule_next_due(s).await?;
        let last = svc.list_redrive_runs(Some(&s.name), None, 1).await?;
        schedules.push(w::Schedule {
            name: s.name.clone(),
            every: human_duration_ms(s.every_ms),
            every_ms: s.every_ms,
            queue_prefix: s.prefix().to_string(),
            request: run_request(&s.request),
            next_due_at: next_due.to_string(),
            last_run: last.first().map(run).transpose()?,
        });
    }
    Ok(Json(w::ScheduleList { schedules }))
}

// ---------------------------------------------------------------------------
// Metrics

/// The label of every per-queue figure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabel {
    queue: String,
}

/// The exposition (OpenMetrics text, which Prometheus scrapes) of every
/// queue's figures alone (see [`register_dlq_metrics`]).
pub fn render_metrics(queues: &[DlqQueueStats], truncated: bool, now: Timestamp) -> String {
    let mut registry = Registry::default();
    register_dlq_metrics(&mut registry, queues, truncated, now);
    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// Adds every queue's figures (at most [`MAX_METRICS_QUEUES`] queues, by name;
/// `redrive_dlq_metrics_truncated` says whether there were more) to `registry`.
/// The encoder ends each HELP text with a period; samples of a family come in
/// no set order.
pub fn register_dlq_metrics(registry: &mut Registry, queues: &[DlqQueueStats], truncated: bool, now: Timestamp) {
    type Figure = fn(&DlqQueueStats) -> u64;
    let counts: [(&str, &str, Figure); 4] = [
        ("redrive_dlq_depth", "Entries in the dead-letter queue (QUEUED, poison included)", |q| q.depth),
        ("redrive_dlq_poison", "Queued entries whose redrives are used up (parked until a forced redrive)", |q| q.poison),
        ("redrive_dlq_redriven", "Entries taken out of the queue and resubmitted, outcome not known yet", |q| q.redriven),
        ("redrive_dlq_max_redrives", "Redrives after which an entry of the queue is poison", |q| u64::from(q.queue.max_redrives)),
    ];
    for (name, help, figure) in counts {
        let family = Family::<QueueLabel, Gauge>::default();
        for q in queues {
            family.get_or_create(&QueueLabel { queue: q.queue.name.clone() }).set(i64::try_from(figure(q)).unwrap_or(i64::MAX));
        }
        registry.register(name, help, family);
    }
    let ages = Family::<QueueLabel, Gauge<f64, AtomicU64>>::default();
    for q in queues {
        let age = q.oldest_entered_at.map_or(0.0, |t| age_seconds(t, now));
        ages.get_or_create(&QueueLabel { queue: q.queue.name.clone() }).set(age);
    }
    registry.register("redrive_dlq_oldest_entry_age_seconds", "Seconds the oldest queued entry has been in the queue (0 when empty)", ages);
    let reported = Gauge::<i64>::default();
    reported.set(i64::try_from(queues.len()).unwrap_or(i64::MAX));
    registry.register("redrive_dlq_queues", "Dead-letter queues reported in this scrape", reported);
    let cut = Gauge::<i64>::default();
    cut.set(i64::from(truncated));
    registry.register(
        "redrive_dlq_metrics_truncated",
        format!("1 if only the first {MAX_METRICS_QUEUES} queues (by name) are reported"),
        cut,
    );
}

/// Unfinished executions a scrape looks at for `redrive_executions_paused`
/// (newest first); a scrape never parses more states.
const MAX_METRICS_UNFINISHED: usize = 10_000;

/// Paused executions as the store holds them at scrape time.
fn register_paused_metrics(registry: &mut Registry, paused: u64, truncated: bool) {
    let count = Gauge::<i64>::default();
    count.set(i64::try_from(paused).unwrap_or(i64::MAX));
    registry.register("redrive_executions_paused", "Pipeline executions paused on exhaustion, waiting for resume or fail", count);
    let cut = Gauge::<i64>::default();
    cut.set(i64::from(truncated));
    registry.register(
        "redrive_executions_paused_truncated",
        "1 if more unfinished executions exist than the scrape looked at for redrive_executions_paused",
        cut,
    );
}

/// The durable timers as the store holds them at scrape time.
fn register_timer_metrics(registry: &mut Registry, pending: u64, next_due: Option<Timestamp>, now: Timestamp) {
    let count = Gauge::<i64>::default();
    count.set(i64::try_from(pending).unwrap_or(i64::MAX));
    registry.register("redrive_timers_pending", "Durable timers (retries, sleeps) waiting in the store", count);
    let behind = Gauge::<f64, AtomicU64>::default();
    behind.set(next_due.map_or(0.0, |due| age_seconds(due, now)));
    registry.register("redrive_timers_behind_seconds", "Seconds the earliest timer is past due (0 when none is due)", behind);
}

/// Figures computed at scrape time from the store, paging through the queues.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics 1.0 text exposition", content_type = "application/openmetrics-text", body = String)))]
async fn metrics<S: Store>(State(svc): St<S>) -> Result<Response> {
    let mut queues: Vec<DlqQueueStats> = Vec::new();
    loop {
        let limit = MAX_PAGE_SIZE.min(MAX_METRICS_QUEUES - queues.len());
        let page = svc.list_dlq_queues(None, queues.last().map(|q| q.queue.name.as_str()), limit).await?;
        let done = page.len() < limit;
        queues.extend(page);
        if done || queues.len() >= MAX_METRICS_QUEUES {
            break;
        }
    }
    let truncated =
        queues.len() >= MAX_METRICS_QUEUES && !svc.list_dlq_queues(None, queues.last().map(|q| q.queue.name.as_str()), 1).await?.is_empty();
    let unavailable = |e: redrive_store::StoreError| ApiError(ServiceError::Unavailable(e.to_string()));
    let timers_pending = svc.whole_store().count_timers().await.map_err(unavailable)?;
    let next_due = svc.whole_store().next_timer_due().await.map_err(unavailable)?;
    let (paused, paused_truncated) = svc.count_paused(MAX_METRICS_UNFINISHED).await?;
    let now = svc.now();
    let mut registry = Registry::default();
    register_paused_metrics(&mut registry, paused, paused_truncated);
    register_dlq_metrics(&mut registry, &queues, truncated, now);
    register_timer_metrics(&mut registry, timers_pending, next_due, now);
    // The engines of this process (`--spread`: every shard it holds; they
    // count into one set of figures).
    svc.engine().metrics().register(&mut registry);
    let (mut key_waits, mut deps) = (0, Vec::new());
    for engine in svc.local_engines() {
        key_waits += engine.key_waits(None).await.map_or(0, |w| w.len());
        deps.push(engine.dependencies().await.unwrap_or_default());
    }
    crate::keys::register_key_metrics(&mut registry, key_waits);
    crate::dependencies::register_dependency_metrics(&mut registry, &crate::dependencies::merge_engines(deps));
    let mut body = String::new();
    encode(&mut body, &registry).expect("writing to a String cannot fail");
    Ok(([(axum::http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redrive_store::DlqQueueRecord;

    #[test]
    fn label_values_are_escaped() {
        let q = DlqQueueStats {
            queue: DlqQueueRecord { name: "a\"b\\c".into(), max_redrives: 3, created_at: Timestamp::from_unix_ms(0) },
            depth: 1,
            poison: 0,
            redriven: 0,
            oldest_entered_at: None,
        };
        let text = render_metrics(&[q], false, Timestamp::from_unix_ms(0));
        assert!(text.contains(r#"redrive_dlq_depth{queue="a\"b\\c"} 1"#), "{text}");
    }

    #[test]
    fn metrics_group_samples_by_family() {
        let q = |name: &str, depth: u64, oldest: Option<i64>| DlqQueueStats {
            queue: DlqQueueRecord { name: name.into(), max_redrives: 3, created_at: Timestamp::from_unix_ms(0) },
            depth,
            poison: 1,
            redriven: 0,
            oldest_entered_at: oldest.map(Timestamp::from_unix_ms),
        };
        let text = render_metrics(&[q("a", 2, Some(1_000)), q("b", 0, None)], false, Timestamp::from_unix_ms(43_500));
        assert!(text.contains("redrive_dlq_depth{queue=\"a\"} 2\n"), "{text}");
        assert!(text.contains("redrive_dlq_depth{queue=\"b\"} 0\n"), "{text}");
        assert!(text.contains("# HELP redrive_dlq_depth Entries in the dead-letter queue (QUEUED, poison included).\n"), "{text}");
        assert!(text.contains("redrive_dlq_oldest_entry_age_seconds{queue=\"a\"} 42.5\n"), "{text}");
        assert!(text.contains("redrive_dlq_oldest_entry_age_seconds{queue=\"b\"} 0.0\n"), "{text}");
        assert!(text.contains("redrive_dlq_max_redrives{queue=\"a\"} 3\n"), "{text}");
        assert!(text.contains("redrive_dlq_metrics_truncated 0\n"), "{text}");
        // Every family's HELP and TYPE come once, before its samples.
        assert_eq!(text.matches("# TYPE redrive_dlq_depth gauge").count(), 1);
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
