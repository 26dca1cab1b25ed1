//! Dead-letter queues over the native REST API (`/v1/dlq/...`) and their
//! Prometheus figures (`/metrics`).
//!
//! Queues, entries, purges, redrives (mid-level: one queue; high-level: every
//! queue under a prefix), dry runs, recorded runs and the configured schedules.
//! The domain lives in the engine's service; this module only maps wire formats:
//! query strings and bodies in (every value checked, unknown body fields
//! refused), camelCase JSON out.

use crate::error::{Result, invalid};
use crate::extract::{JsonBody, QueryParams};
use crate::page::{MAX_PAGE_SIZE, keyset_token, page_limit, parse_keyset_token, parse_name_token};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use redrive_core::time::{Timestamp, human_duration_ms, parse_duration_ms};
use redrive_engine::redrive::{DEFAULT_RATE, QueueScope, Rate, RedriveMode, RedriveRequest};
use redrive_engine::service::{EntryQuery, Service};

use redrive_store::{DlqEntryCursor, DlqEntryRecord, DlqEntryState, DlqQueueStats, RedriveRunRecord, Store};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::fmt::Write as _;
use std::sync::Arc;

/// Queues `/metrics` reports at most (in name order); a scrape never reads more.
pub const MAX_METRICS_QUEUES: usize = 10_000;

/// The content type of `/metrics` (Prometheus text exposition 0.0.4).
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Filter fields of purge and redrive bodies.
const FILTER_FIELDS: &[&str] = &["type", "source", "olderThan"];
/// Fields of a one-queue redrive body.
const REDRIVE_FIELDS: &[&str] = &["type", "source", "olderThan", "maxEntries", "rate", "mode", "dryRun", "entryId", "force"];
/// Fields of a prefix redrive body.
const PREFIX_REDRIVE_FIELDS: &[&str] =
    &["queuePrefix", "type", "source", "olderThan", "maxEntries", "rate", "mode", "dryRun", "entryId", "force"];

type St<S> = State<Arc<Service<S>>>;

pub fn router<S: Store>() -> Router<Arc<Service<S>>> {
    Router::new()
        .route("/v1/dlq/queues", get(list_queues::<S>))
        .route("/v1/dlq/queues/{queue}", get(get_queue::<S>).put(configure_queue::<S>))
        .route("/v1/dlq/queues/{queue}/entries", get(list_entries::<S>))
        .route("/v1/dlq/queues/{queue}/purge", post(purge::<S>))
        .route("/v1/dlq/queues/{queue}/redrive", post(redrive_queue::<S>))
        .route("/v1/dlq/entries/{id}", get(get_entry::<S>))
        .route("/v1/dlq/redrive", post(redrive_prefix::<S>))
        .route("/v1/dlq/redrives", get(list_runs::<S>))
        .route("/v1/dlq/redrives/{id}", get(get_run::<S>))
        .route("/v1/dlq/schedules", get(list_schedules::<S>))
        .route("/metrics", get(metrics::<S>))
}

// ---------------------------------------------------------------------------
// Wire forms

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// Seconds since `t` (never negative), as Prometheus and people read ages.
fn age_seconds(t: Timestamp, now: Timestamp) -> f64 {
    now.ms_since(t).max(0) as f64 / 1000.0
}

pub fn queue_out(q: &DlqQueueStats, now: Timestamp) -> Value {
    json!({
        "name": q.queue.name,
        "maxRedrives": q.queue.max_redrives,
        "depth": q.depth,
        "poison": q.poison,
        "redriven": q.redriven,
        "oldestEnteredAt": q.oldest_entered_at.map(|t| t.to_string()),
        "oldestAgeSeconds": q.oldest_entered_at.map(|t| age_seconds(t, now)),
        "createdAt": q.queue.created_at.to_string(),
    })
}

pub fn entry_out(e: &DlqEntryRecord) -> Value {
    json!({
        "entryId": e.id,
        "queue": e.queue,
        "state": e.state.as_str(),
        "poison": e.is_poison(),
        "redriveCount": e.redrive_count,
        "maxRedrives": e.max_redrives,
        "source": {
            "kind": e.source.kind().as_str(),
            "pipelineName": e.source.name(),
            "pipelineVersion": e.source.pipeline_version(),
            "executionId": e.execution_id,
            "stage": e.stage,
            "action": e.action,
        },
        "error": {"exceptionType": e.exception_type, "message": e.message},
        "input": parse_json(&e.input_json),
        "attempts": parse_json(&e.detail_json),
        "firstFailureAt": e.first_failure_at.to_string(),
        "lastFailureAt": e.last_failure_at.to_string(),
        "enteredAt": e.entered_at.to_string(),
        "updatedAt": e.updated_at.to_string(),
        "redrivenTo": e.redriven_to,
        "redrivenAt": e.redriven_at.map(|t| t.to_string()),
        "resolvedAt": e.resolved_at.map(|t| t.to_string()),
    })
}

pub fn run_out(r: &RedriveRunRecord) -> Value {
    json!({
        "runId": r.id,
        "schedule": r.schedule,
        "status": r.status,
        "startedAt": r.started_at.to_string(),
        "finishedAt": r.finished_at.map(|t| t.to_string()),
        "request": parse_json(&r.request_json),
        "summary": parse_json(&r.summary_json),
    })
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

/// A JSON body as an object whose fields are all in `allowed`.
fn body_fields(body: Value, allowed: &[&str]) -> Result<Map<String, Value>> {
    let Value::Object(map) = body else {
        return Err(invalid(format!("the request body must be a JSON object with the fields {}", allowed.join(", "))));
    };
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(format!("unknown field {unknown:?} in the request body; allowed: {}", allowed.join(", "))));
    }
    // `null` means absent.
    Ok(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
}

fn field_str(map: &Map<String, Value>, name: &str) -> Result<Option<String>> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(format!("{name} must be a string (got {other})"))),
    }
}

fn field_bool(map: &Map<String, Value>, name: &str) -> Result<Option<bool>> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(invalid(format!("{name} must be true or false (got {other})"))),
    }
}

/// A whole number in `min..=max` (`max` `None`: no upper bound).
fn field_int(map: &Map<String, Value>, name: &str, min: u64, max: Option<u64>) -> Result<Option<u64>> {
    let Some(v) = map.get(name) else { return Ok(None) };
    let range = match max {
        Some(max) => format!("from {min} to {max}"),
        None => format!("of at least {min}"),
    };
    let out_of_range = || invalid(format!("{name} {v} is out of range: a whole number {range}"));
    match v {
        Value::Number(n) if n.is_u64() => {
            n.as_u64().filter(|n| *n >= min && max.is_none_or(|max| *n <= max)).map(Some).ok_or_else(out_of_range)
        }
        Value::Number(n) if n.is_i64() => Err(out_of_range()),
        _ => Err(invalid(format!("{name} must be a whole number {range} (got {v})"))),
    }
}

/// The filters shared by purge and redrive bodies.
struct BodyFilters {
    exception_type: Option<String>,
    pipeline_name: Option<String>,
    older_than_ms: Option<u64>,
}

fn body_filters(map: &Map<String, Value>) -> Result<BodyFilters> {
    Ok(BodyFilters {
        exception_type: field_str(map, "type")?,
        pipeline_name: field_str(map, "source")?,
        older_than_ms: field_str(map, "olderThan")?.as_deref().map(parse_older_than).transpose()?,
    })
}

// ---------------------------------------------------------------------------
// Queues

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueuesQuery {
    pub prefix: Option<String>,
    pub next_token: Option<String>,
    pub limit: Option<usize>,
}

async fn list_queues<S: Store>(State(svc): St<S>, QueryParams(q): QueryParams<QueuesQuery>) -> Result<Json<Value>> {
    let limit = page_limit(q.limit)?;
    let after = q.next_token.as_deref().map(parse_name_token).transpose()?;
    let rows = svc.list_dlq_queues(q.prefix.as_deref(), after, limit).await?;
    let now = svc.now();
    let next = (rows.len() == limit).then(|| rows.last().map(|r| r.queue.name.clone())).flatten();
    Ok(Json(json!({"queues": rows.iter().map(|r| queue_out(r, now)).collect::<Vec<_>>(), "nextToken": next})))
}

async fn get_queue<S: Store>(State(svc): St<S>, Path(queue): Path<String>) -> Result<Json<Value>> {
    let stats = svc.get_dlq_queue(&queue).await?;
    Ok(Json(queue_out(&stats, svc.now())))
}

async fn configure_queue<S: Store>(State(svc): St<S>, Path(queue): Path<String>, JsonBody(body): JsonBody<Value>) -> Result<Json<Value>> {
    let map = body_fields(body, &["maxRedrives"])?;
    let max = redrive_store::MAX_MAX_REDRIVES;
    let max_redrives = field_int(&map, "maxRedrives", 1, Some(u64::from(max)))?
        .ok_or_else(|| invalid(format!("maxRedrives is required: a whole number from 1 to {max}")))?;
    svc.configure_dlq_queue(&queue, max_redrives as u32).await?;
    let stats = svc.get_dlq_queue(&queue).await?;
    Ok(Json(queue_out(&stats, svc.now())))
}

// ---------------------------------------------------------------------------
// Entries

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntriesQuery {
    #[serde(rename = "type")]
    pub exception_type: Option<String>,
    pub source: Option<String>,
    pub older_than: Option<String>,
    pub state: Option<String>,
    pub poison: Option<String>,
    pub next_token: Option<String>,
    pub limit: Option<usize>,
}

async fn list_entries<S: Store>(
    State(svc): St<S>,
    Path(queue): Path<String>,
    QueryParams(q): QueryParams<EntriesQuery>,
) -> Result<Json<Value>> {
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
    let count = svc.count_dlq_entries(&queue, &query).await?;
    query.after = after;
    let rows = svc.list_dlq_entries(&queue, &query).await?;
    let next = (rows.len() == limit).then(|| rows.last().map(|e| keyset_token(e.entered_at, &e.id))).flatten();
    Ok(Json(json!({"entries": rows.iter().map(entry_out).collect::<Vec<_>>(), "nextToken": next, "count": count})))
}

async fn get_entry<S: Store>(State(svc): St<S>, Path(id): Path<String>) -> Result<Json<Value>> {
    Ok(Json(entry_out(&svc.get_dlq_entry(&id).await?)))
}

async fn purge<S: Store>(State(svc): St<S>, Path(queue): Path<String>, JsonBody(body): JsonBody<Value>) -> Result<Json<Value>> {
    let allowed: Vec<&str> = FILTER_FIELDS.iter().copied().chain(["poison"]).collect();
    let map = body_fields(body, &allowed)?;
    let f = body_filters(&map)?;
    let query = EntryQuery {
        exception_type: f.exception_type,
        pipeline_name: f.pipeline_name,
        older_than_ms: f.older_than_ms,
        poison: field_bool(&map, "poison")?,
        ..EntryQuery::default()
    };
    let purged = svc.purge_dlq(&queue, &query).await?;
    Ok(Json(json!({"purged": purged})))
}

// ---------------------------------------------------------------------------
// Redrives

/// A redrive body as a request in `scope`, and whether it is a dry run.
fn redrive_request(map: &Map<String, Value>, scope: QueueScope) -> Result<(RedriveRequest, bool)> {
    let f = body_filters(map)?;
    let rate = match field_str(map, "rate")? {
        None => DEFAULT_RATE,
        Some(r) => Rate::parse(&r).map_err(|e| invalid(if e.starts_with("rate ") { e } else { format!("rate: {e}") }))?,
    };
    let mode = match field_str(map, "mode")? {
        None => RedriveMode::default(),
        Some(m) => RedriveMode::parse(&m).map_err(|e| invalid(format!("mode: {e}")))?,
    };
    let req = RedriveRequest {
        scope,
        entry_id: field_str(map, "entryId")?,
        force: field_bool(map, "force")?.unwrap_or(false),
        exception_type: f.exception_type,
        pipeline_name: f.pipeline_name,
        older_than_ms: f.older_than_ms,
        max_entries: field_int(map, "maxEntries", 1, None)?,
        rate,
        mode,
    };
    Ok((req, field_bool(map, "dryRun")?.unwrap_or(false)))
}

async fn redrive<S: Store>(svc: &Service<S>, req: RedriveRequest, dry_run: bool) -> Result<Response> {
    if dry_run {
        let plan = svc.plan_redrive(&req).await?;
        return Ok(Json(serde_json::to_value(&plan).unwrap_or(Value::Null)).into_response());
    }
    let run = svc.start_redrive(req).await?;
    Ok((StatusCode::ACCEPTED, Json(run_out(&run))).into_response())
}

async fn redrive_queue<S: Store>(State(svc): St<S>, Path(queue): Path<String>, JsonBody(body): JsonBody<Value>) -> Result<Response> {
    let map = body_fields(body, REDRIVE_FIELDS)?;
    let (req, dry_run) = redrive_request(&map, QueueScope::Queue(queue))?;
    redrive(&svc, req, dry_run).await
}

async fn redrive_prefix<S: Store>(State(svc): St<S>, JsonBody(body): JsonBody<Value>) -> Result<Response> {
    let map = body_fields(body, PREFIX_REDRIVE_FIELDS)?;
    let prefix = field_str(&map, "queuePrefix")?
        .ok_or_else(|| invalid("queuePrefix is required: the redrive covers every queue whose name starts with it"))?;
    let (req, dry_run) = redrive_request(&map, QueueScope::Prefix(prefix))?;
    redrive(&svc, req, dry_run).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunsQuery {
    pub schedule: Option<String>,
    pub next_token: Option<String>,
    pub limit: Option<usize>,
}

async fn list_runs<S: Store>(State(svc): St<S>, QueryParams(q): QueryParams<RunsQuery>) -> Result<Json<Value>> {
    let limit = page_limit(q.limit)?;
    if let Some(s) = &q.schedule {
        redrive_engine::service::validate_name("schedule", s)?;
    }
    let before = q.next_token.as_deref().map(parse_keyset_token).transpose()?;
    let rows = svc.list_redrive_runs(q.schedule.as_deref(), before, limit).await?;
    let next = (rows.len() == limit).then(|| rows.last().map(|r| keyset_token(r.started_at, &r.id))).flatten();
    Ok(Json(json!({"runs": rows.iter().map(run_out).collect::<Vec<_>>(), "nextToken": next})))
}

async fn get_run<S: Store>(State(svc): St<S>, Path(id): Path<String>) -> Result<Json<Value>> {
    Ok(Json(run_out(&svc.get_redrive_run(&id).await?)))
}

async fn list_schedules<S: Store>(State(svc): St<S>) -> Result<Json<Value>> {
    let mut out = Vec::new();
    for s in svc.schedules() {
        let next_due = svc.schedule_next_due(s).await?;
        let last = svc.list_redrive_runs(Some(&s.name), None, 1).await?;
        out.push(json!({
            "name": s.name,
            "every": human_duration_ms(s.every_ms),
            "everyMs": s.every_ms,
            "queuePrefix": s.prefix(),
            "request": serde_json::to_value(&s.request).unwrap_or(Value::Null),
            "nextDueAt": next_due.to_string(),
            "lastRun": last.first().map(run_out),
        }));
    }
    Ok(Json(json!({"schedules": out})))
}

// ---------------------------------------------------------------------------
// Metrics

/// A label value escaped for the text exposition format: `\`, `"` and newlines.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// The text exposition of every queue's figures (at most [`MAX_METRICS_QUEUES`]
/// queues, by name; `redrive_dlq_metrics_truncated` says whether there were more).
pub fn render_metrics(queues: &[DlqQueueStats], truncated: bool, now: Timestamp) -> String {
    type Figure = fn(&DlqQueueStats, Timestamp) -> String;
    let families: [(&str, &str, Figure); 5] = [
        ("redrive_dlq_depth", "Entries in the dead-letter queue (QUEUED, poison included).", |q, _| q.depth.to_string()),
        ("redrive_dlq_poison", "Queued entries whose redrives are used up (parked until a forced redrive).", |q, _| q.poison.to_string()),
        ("redrive_dlq_redriven", "Entries taken out of the queue and resubmitted, outcome not known yet.", |q, _| q.redriven.to_string()),
        ("redrive_dlq_oldest_entry_age_seconds", "Seconds the oldest queued entry has been in the queue (0 when empty).", |q, now| {
            q.oldest_entered_at.map_or(0.0, |t| age_seconds(t, now)).to_string()
        }),
        ("redrive_dlq_max_redrives", "Redrives after which an entry of the queue is poison.", |q, _| q.queue.max_redrives.to_string()),
    ];
    let mut out = String::new();
    for (name, help, figure) in families {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for q in queues {
            let _ = writeln!(out, "{name}{{queue=\"{}\"}} {}", escape_label_value(&q.queue.name), figure(q, now));
        }
    }
    let _ = writeln!(out, "# HELP redrive_dlq_queues Dead-letter queues reported in this scrape.");
    let _ = writeln!(out, "# TYPE redrive_dlq_queues gauge");
    let _ = writeln!(out, "redrive_dlq_queues {}", queues.len());
    let _ = writeln!(out, "# HELP redrive_dlq_metrics_truncated 1 if only the first {MAX_METRICS_QUEUES} queues (by name) are reported.");
    let _ = writeln!(out, "# TYPE redrive_dlq_metrics_truncated gauge");
    let _ = writeln!(out, "redrive_dlq_metrics_truncated {}", u8::from(truncated));
    out
}

/// Figures computed at scrape time from the store, paging through the queues.
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
    let body = render_metrics(&queues, truncated, svc.now());
    Ok(([(axum::http::header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redrive_store::DlqQueueRecord;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("x\ny"), "x\\ny");
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
        assert!(text.contains("redrive_dlq_depth{queue=\"a\"} 2\nredrive_dlq_depth{queue=\"b\"} 0\n"), "{text}");
        assert!(text.contains("redrive_dlq_oldest_entry_age_seconds{queue=\"a\"} 42.5\n"), "{text}");
        assert!(text.contains("redrive_dlq_oldest_entry_age_seconds{queue=\"b\"} 0\n"), "{text}");
        assert!(text.contains("redrive_dlq_max_redrives{queue=\"a\"} 3\n"), "{text}");
        assert!(text.contains("redrive_dlq_metrics_truncated 0\n"), "{text}");
        // Every family's HELP and TYPE come once, before its samples.
        assert_eq!(text.matches("# TYPE redrive_dlq_depth gauge").count(), 1);
    }
}
