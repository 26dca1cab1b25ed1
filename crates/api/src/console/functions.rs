//! Durable functions (read only): a function's executions, and one execution's
//! steps with their attempts and errors.

use super::executions::attempt_cells;
use super::view::{self, q};
use super::{PAGE_ROWS, PageQuery, PageResult, ok_page};
use crate::functions::step_status;
use crate::page::{execution_token, parse_execution_token};
use axum::extract::{Path, State};
use maud::html;
use redrive_core::auth::{Resource, Scope};
use redrive_engine::service::Service;
use redrive_store::Store;
use serde::Deserialize;
use std::sync::Arc;

type St<S> = State<Arc<Service<S>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    name: Option<String>,
    next: Option<String>,
}

pub async fn list<S: Store>(State(svc): St<S>, PageQuery(query): PageQuery<ListQuery>) -> PageResult {
    let name = query.name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    let before = query.next.as_deref().map(parse_execution_token).transpose()?;
    // A function is read under its name, like a pipeline: outside a grant's names, refused.
    if let Some(n) = &name
        && let Err(why) = super::may(Scope::Read, Resource::Pipeline(n))
    {
        return super::forbidden(&why);
    }
    let rows = match &name {
        Some(n) => svc.list_function_executions(n, before, PAGE_ROWS).await?,
        None => Vec::new(),
    };
    let next = name.as_ref().and_then(|n| {
        (rows.len() == PAGE_ROWS)
            .then(|| rows.last().map(|v| format!("/console/functions?name={}&next={}", q(n), q(&execution_token(&v.record.cursor())))))
            .flatten()
    });
    let body = html! {
        h1 { "Durable functions" }
        p { "Functions are registered by the processes that run them (the Rust SDK); name one to see its executions." }
        form.filters method="get" {
            label { "Function " input name="name" value=[name.as_deref()] required; }
            button type="submit" { "Show executions" }
        }
        @if let Some(n) = &name {
            h2 { "Executions of " (n) }
            @if rows.is_empty() { p { "No executions on this page." } }
            @else {
                table.list {
                    thead { tr { th { "Execution" } th { "Name" } th { "Status" } th { "Steps" } th { "Started" } th { "Waiting until" } th { "Error" } } }
                    tbody {
                        @for v in &rows {
                            tr {
                                td { a href=(format!("/console/functions/{n}/{}", v.record.id)) { code { (v.record.id) } } }
                                td { (v.state.name) }
                                td { (view::status(function_status(v.state.status))) }
                                td.num { (v.state.steps.len()) }
                                td { (view::time(v.state.started_at)) }
                                td { (view::time_opt(v.state.waiting_on().map(|(_, due)| due))) }
                                td { (view::failure(v.state.error.as_ref())) }
                            }
                        }
                    }
                }
            }
            (view::next_link(next))
        }
    };
    ok_page("Durable functions", body)
}

fn function_status(s: redrive_core::function::FunctionStatus) -> &'static str {
    use redrive_core::function::FunctionStatus as F;
    match s {
        F::Running => "InProgress",
        F::Succeeded => "Succeeded",
        F::Failed => "Failed",
    }
}

pub async fn detail<S: Store>(State(svc): St<S>, Path((name, id)): Path<(String, String)>) -> PageResult {
    let d = svc.get_function_execution(&name, &id).await?;
    let s = &d.execution.state;
    let input: serde_json::Value = serde_json::from_str(&d.execution.record.input_json).unwrap_or(serde_json::Value::Null);
    let body = html! {
        nav.crumbs { a href=(format!("/console/functions?name={}", q(&name))) { (name) } " / " (id) }
        h1 { "Function execution " code { (id) } }
        dl.facts {
            dt { "Name" } dd { (s.name) }
            dt { "Status" } dd { (view::status(function_status(s.status))) }
            dt { "Started" } dd { (view::time(s.started_at)) }
            dt { "Ended" } dd { (view::time_opt(s.finished_at)) }
            @if let Some((_, due)) = s.waiting_on() { dt { "Wakes" } dd { (view::countdown(due)) } }
            @if let Some(e) = &s.error { dt { "Error" } dd { (view::failure(Some(e))) } }
            @if let Some(l) = &s.dead_letter {
                dt { "Dead letter" } dd { a href=(format!("/console/dlq/entries/{}", l.entry_id)) { (l.entry_id) } " in " (l.queue.as_str()) }
            }
        }
        h2 { "Steps" }
        table.list {
            thead { tr { th { "Step" } th { "Status" } th { "Attempts" } th { "Due" } th { "Last error" } } }
            tbody {
                @for st in &s.steps {
                    tr {
                        td { (st.name) }
                        td { (view::status(&step_status(st.status).to_string())) }
                        td.num { (st.attempt) }
                        td { (view::time_opt(st.due_at)) }
                        td { (view::failure(st.last_failure.as_ref())) }
                    }
                }
            }
        }
        h2 { "Step attempts" }
        @if d.attempts_truncated { p.meta { "The newest " (d.attempts.len()) " attempts; older ones exist." } }
        table.timeline {
            thead { tr { th { "Step" } th { "Attempt" } th { "Trigger" } th { "Started" } th { "Duration" } th { "Outcome" } th { "Exception" } th { "Decision" } } }
            tbody {
                @for e in &d.attempts {
                    tr { td { (e.action) } td.num { (e.attempt) } (attempt_cells(e)) }
                }
            }
        }
        h2 { "Input" } (view::json_block(&input))
        @if let Some(r) = &s.result { h2 { "Result" } (view::json_block(r)) }
    };
    ok_page(&format!("Function execution {id}"), body)
}
