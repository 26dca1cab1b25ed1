//! Executions: a pipeline's history (status filter, pages) and one execution
//! with its stages, the attempt timeline of every action (trigger, duration,
//! exception, decision and delay), its input and outputs, and Stop.

use super::pipelines::{action_status, short_id};
use super::view::{self, q};
use super::{PAGE_ROWS, PageQuery, PageResult, bad_request, ok_fragment, ok_page};
use crate::page::{execution_token, parse_execution_token, parse_seq_token};
use axum::extract::{Path, State};
use maud::{Markup, html};
use redrive_core::auth::{Resource, Scope};
use redrive_core::limits::MAX_PAGE_SIZE;
use redrive_core::machine::ExecutionStatus;
use redrive_core::policy::Decision;
use redrive_core::time::human_duration_ms;
use redrive_engine::service::{ExecutionView, Service, ServiceError};
use redrive_store::{LedgerEntry, Store};
use serde::Deserialize;
use std::sync::Arc;

type St<S> = State<Arc<Service<S>>>;

/// Executions read to fill one filtered page (a page may hold fewer matches;
/// its Next link goes on from where the scan stopped).
const FILTER_SCAN_ROWS: usize = 500;

const STATUSES: [&str; 7] = ["InProgress", "Stopping", "Paused", "Succeeded", "Failed", "Stopped", "Superseded"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    next: Option<String>,
}

pub async fn list<S: Store>(State(svc): St<S>, Path(name): Path<String>, PageQuery(query): PageQuery<ListQuery>) -> PageResult {
    let status = query.status.filter(|s| !s.is_empty());
    if let Some(s) = status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(bad_request(format!("status {s:?} is not one of {}", STATUSES.join(", "))));
    }
    let before = query.next.as_deref().map(parse_execution_token).transpose()?;
    let scan = if status.is_some() { FILTER_SCAN_ROWS } else { PAGE_ROWS };
    let rows = svc.list_executions(&name, before, scan).await?;
    let (shown, last_read) = filter_page(&rows, status.as_deref());
    let next = last_read.filter(|_| rows.len() == scan || shown.len() == PAGE_ROWS).map(|v| {
        let filter = status.as_deref().map(|s| format!("status={s}&")).unwrap_or_default();
        format!("/console/pipelines/{name}/executions?{filter}next={}", q(&execution_token(&v.record.cursor())))
    });
    let body = html! {
        nav.crumbs { a href="/console" { "Pipelines" } " / " a href=(format!("/console/pipelines/{name}")) { (name) } " / executions" }
        h1 { "Executions of " (name) }
        form.filters method="get" {
            label { "Status " select name="status" {
                option value="" selected[status.is_none()] { "any" }
                @for s in STATUSES { option value=(s) selected[status.as_deref() == Some(s)] { (s) } }
            } }
            " " button type="submit" { "Filter" }
        }
        @if shown.is_empty() { p { "No executions match on this page." } }
        @else {
            table.list {
                thead { tr { th { "Execution" } th { "Status" } th { "Version" } th { "Started" } th { "Updated" } th { "Failure" } } }
                tbody {
                    @for v in &shown {
                        tr {
                            td { a href=(format!("/console/pipelines/{name}/executions/{}", v.record.id)) { code { (v.record.id) } } }
                            td { (view::status(v.state.status.as_str())) }
                            td { (v.pipeline_version()) }
                            td { (view::time(v.state.started_at)) }
                            td { (view::time(v.record.updated_at)) }
                            td { (view::failure(v.state.failure.as_ref())) }
                        }
                    }
                }
            }
        }
        (view::next_link(next))
    };
    ok_page(&format!("Executions of {name}"), body)
}

/// The first [`PAGE_ROWS`] rows with `status` (all when `None`), and the last
/// row read to find them (where the next page starts).
fn filter_page<'a>(rows: &'a [ExecutionView], status: Option<&str>) -> (Vec<&'a ExecutionView>, Option<&'a ExecutionView>) {
    let mut shown = Vec::new();
    let mut last = None;
    for v in rows {
        last = Some(v);
        if status.is_none_or(|s| v.state.status.as_str() == s) {
            shown.push(v);
            if shown.len() == PAGE_ROWS {
                break;
            }
        }
    }
    (shown, last)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailQuery {
    /// Attempts older than this ledger sequence number (the timeline's pages).
    before: Option<String>,
}

pub async fn detail<S: Store>(
    State(svc): St<S>,
    Path((name, id)): Path<(String, String)>,
    PageQuery(query): PageQuery<DetailQuery>,
) -> PageResult {
    let before = query.before.as_deref().map(parse_seq_token).transpose()?;
    let live = live_markup(&svc, &name, &id, before).await?;
    let body = html! {
        nav.crumbs {
            a href="/console" { "Pipelines" } " / " a href=(format!("/console/pipelines/{name}")) { (name) }
            " / " a href=(format!("/console/pipelines/{name}/executions")) { "executions" } " / " (short_id(&id))
        }
        h1 { "Execution " code { (id) } }
        @let poll = match before { Some(b) => format!("/console/pipelines/{name}/executions/{id}/live?before={b}"), None => format!("/console/pipelines/{name}/executions/{id}/live") };
        div #live data-poll=(poll) { (live) }
    };
    ok_page(&format!("Execution {}", short_id(&id)), body)
}

/// The execution's changing parts, polled by its page.
pub async fn live<S: Store>(
    State(svc): St<S>,
    Path((name, id)): Path<(String, String)>,
    PageQuery(query): PageQuery<DetailQuery>,
) -> PageResult {
    let before = query.before.as_deref().map(parse_seq_token).transpose()?;
    ok_fragment(live_markup(&svc, &name, &id, before).await?)
}

async fn live_markup<S: Store>(svc: &Service<S>, name: &str, id: &str, before: Option<i64>) -> Result<Markup, ServiceError> {
    let v = svc.get_execution(name, id).await?;
    let p = svc.get_pipeline(name, Some(v.pipeline_version())).await?;
    let ledger = svc.list_action_executions(name, Some(id), before, MAX_PAGE_SIZE).await?;
    let older = (ledger.len() == MAX_PAGE_SIZE)
        .then(|| ledger.last().map(|e| format!("/console/pipelines/{name}/executions/{id}?before={}", e.seq)))
        .flatten();
    let s = &v.state;
    let stoppable = matches!(s.status, ExecutionStatus::InProgress | ExecutionStatus::Stopping | ExecutionStatus::Paused);
    let paused = s.status == ExecutionStatus::Paused;
    let allowed = super::may(Scope::Operate, Resource::Pipeline(name));
    let input: serde_json::Value =
        s.input.clone().unwrap_or_else(|| serde_json::from_str(&v.record.input_json).unwrap_or(serde_json::Value::Null));
    Ok(html! {
        dl.facts {
            dt { "Status" } dd { (view::status(s.status.as_str())) }
            dt { "Pipeline version" } dd { (v.pipeline_version()) }
            dt { "Started" } dd { (view::time(s.started_at)) }
            dt { "Ended" } dd { (view::time_opt(s.finished_at)) }
            @if let Some(f) = &s.failure { dt { "Failure" } dd { (view::failure(Some(f))) } }
        }
        @if paused {
            div.controls {
                p { "An action exhausted its retries and the execution is paused: resume it (a fresh series of attempts) or fail it for good." }
                button type="button" disabled[allowed.is_err()] data-post=(format!("/v1/pipelines/{name}/executions/{id}/resume")) data-body="{}"
                    data-confirm="Resume this execution? Its paused actions start a fresh series of attempts." { "Resume" }
                " "
                button type="button" class="danger" disabled[allowed.is_err()] data-post=(format!("/v1/pipelines/{name}/executions/{id}/fail")) data-body="{}"
                    data-confirm="Fail this execution for good? It is dead-lettered if its pipeline has a queue." { "Fail" }
                @if let Err(why) = &allowed { (super::denied_note(why)) }
                p.result role="status" aria-live="polite" {}
            }
        }
        @if stoppable {
            div.controls {
                button type="button" disabled[allowed.is_err()] data-post=(format!("/v1/pipelines/{name}/executions/{id}/stop"))
                    data-body=(serde_json::json!({"reason": "stopped from the console"}).to_string())
                    data-confirm="Stop this execution? Running attempts finish; nothing new starts." { "Stop" }
                " "
                button type="button" class="danger" disabled[allowed.is_err()] data-post=(format!("/v1/pipelines/{name}/executions/{id}/stop"))
                    data-body=(serde_json::json!({"reason": "abandoned from the console", "abandon": true}).to_string())
                    data-confirm="Stop and abandon? Running attempts are killed." { "Stop and abandon" }
                @if let Err(why) = &allowed { (super::denied_note(why)) }
                p.result role="status" aria-live="polite" {}
            }
        }
        h2 { "Stages" }
        @for (def, st) in p.loaded.pipeline.stages.iter().zip(&s.stages) {
            section.stage-detail aria-label=(format!("Stage {}", def.name)) {
                h3 { (def.name.as_str()) " " (view::status(stage_text(st.status))) }
                @for (a, ast) in def.actions.iter().zip(&st.actions) {
                    @let rows: Vec<&LedgerEntry> = ledger.iter().rev().filter(|e| e.stage == def.name.as_str() && e.action == a.name.as_str()).collect();
                    div.action-detail {
                        h4 { (a.name.as_str()) " " (view::status(action_status(ast.status))) }
                        @if let Some(f) = &ast.last_failure { p { "Last error: " (view::failure(Some(f))) } }
                        @if let Some(out) = &ast.output { details { summary { "Output" } (view::json_block(out)) } }
                        (timeline(&rows))
                    }
                }
            }
        }
        @if let Some(href) = older { nav.pager { a href=(href) { "Older attempts →" } } }
        h2 { "Input" }
        (view::json_block(&input))
    })
}

fn stage_text(s: redrive_core::machine::StageStatus) -> &'static str {
    use redrive_core::machine::StageStatus as S;
    match s {
        S::NotStarted => "NotStarted",
        S::InProgress => "InProgress",
        S::Succeeded => "Succeeded",
        S::Failed => "Failed",
    }
}

/// One action's attempts, oldest first.
fn timeline(rows: &[&LedgerEntry]) -> Markup {
    html! {
        @if rows.is_empty() { p.meta { "No attempts recorded." } }
        @else {
            table.timeline {
                thead { tr { th { "Series.attempt" } th { "Trigger" } th { "Started" } th { "Duration" } th { "Outcome" } th { "Exception" } th { "Decision" } } }
                tbody {
                    @for e in rows {
                        tr { td { (e.series) "." (e.attempt) } (attempt_cells(e)) }
                    }
                }
            }
        }
    }
}

/// A ledger row's cells after its number: trigger, start, duration, outcome,
/// exception and decision.
pub fn attempt_cells(e: &LedgerEntry) -> Markup {
    html! {
        td { (e.trigger) }
        td { (view::time(e.started_at)) }
        td { (view::duration_ms(e.finished_at.ms_since(e.started_at))) }
        td { (view::status(&e.outcome)) }
        td { @if let Some(t) = &e.exception_type { (view::error_text(t, e.message.as_deref().unwrap_or(""))) } }
        td { (decision_text(e)) }
    }
}

/// A ledger row's decision: the retry (policy, number, delay, due time) or why
/// the engine gave up.
pub fn decision_text(e: &LedgerEntry) -> Markup {
    let Some(d) = e.decision_json.as_deref().and_then(|d| serde_json::from_str::<Decision>(d).ok()) else { return html! {} };
    match d {
        Decision::Retry(r) => html! {
            "retry #" (r.retry_number) " under " (r.policy.to_string()) " after " (human_duration_ms(r.delay_ms))
            " (computed " (human_duration_ms(r.computed_delay_ms))
            @if let Some(h) = r.hint_ms { ", Retry-After " (human_duration_ms(h)) }
            "), due " (view::time(r.due_at))
        },
        Decision::GiveUp { policy, reason } => html! {
            "gave up: " (reason.to_string()) @if let Some(p) = policy { " (" (p.to_string()) ")" }
        },
    }
}
