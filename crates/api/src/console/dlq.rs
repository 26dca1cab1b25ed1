//! Dead-letter queues: queues (depth, poison, oldest age), a queue's entries
//! (filtered by exception type, source and age), an entry, the redrive form
//! (dry-run count first; mode, rate, max), purge, and a run's live progress.

use super::view::{self, q};
use super::{ConsoleError, PAGE_ROWS, PageQuery, PageResult, bad_request, ok_fragment, ok_page};
use crate::page::{keyset_token, parse_keyset_token, parse_name_token};
use axum::extract::{Path, State};
use maud::{Markup, html};
use redrive_core::auth::{Resource, Scope};
use redrive_core::time::{human_duration_ms, parse_duration_ms};
use redrive_engine::redrive::{QueueScope, RedriveRequest, RedriveSummary};
use redrive_engine::service::{EntryQuery, Service, ServiceError};
use redrive_store::{DlqEntryCursor, RedriveRunRecord, Store};
use serde::Deserialize;
use std::sync::Arc;

type St<S> = State<Arc<Service<S>>>;

/// Recent runs read to find those of one queue (newest first).
const RECENT_RUNS_SCANNED: usize = 100;
/// Runs shown on a queue's page.
const RUNS_SHOWN: usize = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuesQuery {
    after: Option<String>,
}

pub async fn queues<S: Store>(State(svc): St<S>, PageQuery(query): PageQuery<QueuesQuery>) -> PageResult {
    let after = query.after.as_deref().map(parse_name_token).transpose()?;
    let all = svc.list_dlq_queues(None, after, PAGE_ROWS).await?;
    let now = svc.now();
    let next = (all.len() == PAGE_ROWS).then(|| all.last().map(|r| format!("/console/dlq?after={}", q(&r.queue.name)))).flatten();
    // A grant limited by name sees its own queues (the page pages on over the rest).
    let rows: Vec<_> = all.iter().filter(|r| super::may(Scope::Read, Resource::Queue(&r.queue.name)).is_ok()).collect();
    let body = html! {
        h1 { "Dead-letter queues" }
        @if let Some(limits) = super::name_limits() { p.note { "Showing the queues your token may read: " (limits) "." } }
        @if rows.is_empty() { p { "No dead-letter queues. A pipeline names one with " code { "deadLetterQueue" } "." } }
        @else {
            table.list {
                thead { tr { th { "Queue" } th { "Depth" } th { "Poison" } th { "Redriven (pending)" } th { "Oldest entry" } th { "Max redrives" } } }
                tbody {
                    @for r in &rows {
                        tr {
                            td { a href=(format!("/console/dlq/queues/{}", r.queue.name)) { (r.queue.name) } }
                            td.num { (r.depth) }
                            td.num { (r.poison) }
                            td.num { (r.redriven) }
                            td { @match r.oldest_entered_at {
                                Some(t) => { (human_duration_ms(now.ms_since(t).max(0) as u64)) " old (" (view::time(t)) ")" }
                                None => "–",
                            } }
                            td.num { (r.queue.max_redrives) }
                        }
                    }
                }
            }
        }
        (view::next_link(next))
    };
    ok_page("Dead-letter queues", body)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EntriesQuery {
    #[serde(rename = "type")]
    exception_type: Option<String>,
    source: Option<String>,
    older_than: Option<String>,
    next: Option<String>,
}

impl EntriesQuery {
    /// Empty form fields mean "no filter".
    fn normalised(self) -> EntriesQuery {
        let some = |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        EntriesQuery {
            exception_type: some(self.exception_type),
            source: some(self.source),
            older_than: some(self.older_than),
            next: some(self.next),
        }
    }

    /// The filters as the redrive and purge APIs' JSON fields.
    fn api_filters(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, v) in [("type", &self.exception_type), ("source", &self.source), ("olderThan", &self.older_than)] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        serde_json::Value::Object(m)
    }

    /// The filters and the page (`next`), for the live fragment's URL.
    fn live_query_string(&self) -> String {
        let page = self.next.as_ref().map(|n| format!("next={}", q(n))).unwrap_or_default();
        format!("{}{page}", self.query_string())
    }

    fn query_string(&self) -> String {
        [("type", &self.exception_type), ("source", &self.source), ("olderThan", &self.older_than)]
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}&", q(v))))
            .collect()
    }
}

pub async fn queue<S: Store>(State(svc): St<S>, Path(name): Path<String>, PageQuery(query): PageQuery<EntriesQuery>) -> PageResult {
    let query = query.normalised();
    let live = queue_live_markup(&svc, &name, &query).await?;
    let poll = format!("/console/dlq/queues/{}/live?{}", q(&name), query.live_query_string());
    let body = html! {
        nav.crumbs { a href="/console/dlq" { "Dead-letter queues" } " / " (name) }
        h1 { "Queue " (name) }
        form.filters method="get" {
            label { "Exception type " input name="type" value=[query.exception_type.as_deref()] placeholder="Step.THROTTLING"; }
            label { "Source pipeline " input name="source" value=[query.source.as_deref()]; }
            label { "Older than " input name="olderThan" value=[query.older_than.as_deref()] placeholder="10m"; }
            button type="submit" { "Filter" }
        }
        (redrive_form(&name, &query))
        div.queue-live data-poll=(poll) { (live) }
    };
    ok_page(&format!("Queue {name}"), body)
}

/// The live part of a queue's page (polled, and refreshed after a redrive or
/// purge): its counts, the matching entries and the recent runs.
pub async fn queue_live<S: Store>(State(svc): St<S>, Path(name): Path<String>, PageQuery(query): PageQuery<EntriesQuery>) -> PageResult {
    ok_fragment(queue_live_markup(&svc, &name, &query.normalised()).await?)
}

async fn queue_live_markup<S: Store>(svc: &Service<S>, name: &str, query: &EntriesQuery) -> Result<Markup, ConsoleError> {
    let stats = svc.get_dlq_queue(name).await?;
    let older_than_ms =
        query.older_than.as_deref().map(|t| parse_duration_ms(t).map_err(|e| bad_request(format!("older than: {e}")))).transpose()?;
    let after = query.next.as_deref().map(parse_keyset_token).transpose()?.map(|(entered_at, id)| DlqEntryCursor { entered_at, id });
    let mut eq = EntryQuery {
        exception_type: query.exception_type.clone(),
        pipeline_name: query.source.clone(),
        older_than_ms,
        limit: PAGE_ROWS,
        ..EntryQuery::default()
    };
    let count = svc.count_dlq_entries(name, &eq).await?;
    eq.after = after;
    let rows = svc.list_dlq_entries(name, &eq).await?;
    let runs = queue_runs(svc, name).await?;
    let next = (rows.len() == PAGE_ROWS)
        .then(|| {
            rows.last()
                .map(|e| format!("/console/dlq/queues/{name}?{}next={}", query.query_string(), q(&keyset_token(e.entered_at, &e.id))))
        })
        .flatten();
    Ok(html! {
        p.meta { (stats.depth) " queued · " (stats.poison) " poison · " (stats.redriven) " redriven awaiting outcome" }
        p { strong #match-count { (count) } " queued entries match these filters." }
        h2 { "Entries" }
        @if rows.is_empty() { p { "No entries match." } }
        @else {
            table.list.entries {
                thead { tr { th { "Entry" } th { "Source" } th { "Exception" } th { "Redrives" } th { "In queue for" } } }
                tbody {
                    @for e in &rows {
                        tr {
                            td { a href=(format!("/console/dlq/entries/{}", e.id)) { code { (e.id) } } @if e.is_poison() { " " span.badge.failed { "☠ poison" } } }
                            td { (e.source.name()) " / " (e.stage) " / " (e.action) }
                            td { (view::error_text(&e.exception_type, &e.message)) }
                            td.num { (e.redrive_count) " of " (e.max_redrives) }
                            td { (view::age(e.entered_at)) }
                        }
                    }
                }
            }
        }
        (view::next_link(next))
        h2 { "Recent redrive runs" }
        div.runs { (runs_table(&runs)) }
    })
}

/// The redrive controls: dry run (count), redrive with mode, rate and max, purge.
fn redrive_form(queue: &str, query: &EntriesQuery) -> Markup {
    let filters = query.api_filters().to_string();
    let redrive = super::may(Scope::Operate, Resource::Queue(queue));
    let purge = super::may(Scope::Admin, Resource::Queue(queue));
    html! {
        section.redrive aria-label="Redrive" data-queue=(queue) data-filters=(filters) {
            h2 { "Redrive the matching entries" }
            div.fields {
                label { "Mode " select name="mode" {
                    option value="retry-stage" selected { "retry-stage (retry the failed stage)" }
                    option value="new-execution" { "new-execution (start the pipeline again)" }
                } }
                label { "Rate " input name="rate" value="10/s" size="8"; }
                label { "Max entries " input name="maxEntries" type="number" min="1" size="6"; }
            }
            div.controls {
                button type="button" data-redrive="dry" disabled[redrive.is_err()] { "Dry run (count)" }
                " "
                button type="button" data-redrive="run" disabled[redrive.is_err()] { "Redrive" }
                @if let Err(why) = &redrive { (super::denied_note(why)) }
                " "
                button type="button" data-purge=(format!("/v1/dlq/queues/{queue}/purge")) class="danger" disabled[purge.is_err()] { "Purge…" }
                @if let (Ok(()), Err(why)) = (&redrive, &purge) { (super::denied_note(why)) }
            }
            p.result #redrive-result role="status" aria-live="polite" {}
            div.run-progress {}
        }
    }
}

/// The newest runs whose scope is this queue.
async fn queue_runs<S: Store>(svc: &Service<S>, queue: &str) -> Result<Vec<RedriveRunRecord>, ServiceError> {
    let runs = svc.list_redrive_runs(None, None, RECENT_RUNS_SCANNED).await?;
    Ok(runs
        .into_iter()
        .filter(|r| {
            serde_json::from_str::<RedriveRequest>(&r.request_json).is_ok_and(|req| match &req.scope {
                QueueScope::Queue(q) => q == queue,
                QueueScope::Prefix(p) => queue.starts_with(p.as_str()),
            })
        })
        .take(RUNS_SHOWN)
        .collect())
}

fn runs_table(runs: &[RedriveRunRecord]) -> Markup {
    html! {
        @if runs.is_empty() { p { "No runs yet." } }
        @else {
            table.list {
                thead { tr { th { "Run" } th { "Status" } th { "Started" } th { "Progress" } } }
                tbody {
                    @for r in runs {
                        @let s = summary(r);
                        tr {
                            td { a href=(format!("/console/dlq/runs/{}", r.id)) { code { (r.id) } } }
                            td { (view::status(&r.status)) }
                            td { (view::time(r.started_at)) }
                            td { @if let Some(s) = &s { (s.processed) " of " (s.matched) " processed" } }
                        }
                    }
                }
            }
        }
    }
}

fn summary(r: &RedriveRunRecord) -> Option<RedriveSummary> {
    serde_json::from_str(&r.summary_json).ok()
}

pub async fn entry<S: Store>(State(svc): St<S>, Path(id): Path<String>) -> PageResult {
    let e = svc.get_dlq_entry(&id).await?;
    let w = crate::dlq::entry(&e);
    let body = html! {
        nav.crumbs { a href="/console/dlq" { "Dead-letter queues" } " / " a href=(format!("/console/dlq/queues/{}", e.queue)) { (e.queue) } " / " (e.id) }
        h1 { "Entry " code { (e.id) } }
        dl.facts {
            dt { "State" } dd { (view::status(e.state.as_str())) @if e.is_poison() { " " span.badge.failed { "☠ poison" } } }
            dt { "Source" } dd {
                (e.source.name()) " / " (e.stage) " / " (e.action) " · execution "
                @if let Some(v) = e.source.pipeline_version() {
                    a href=(format!("/console/pipelines/{}/executions/{}", e.source.name(), e.execution_id)) { code { (e.execution_id) } } " (version " (v) ")"
                } @else { code { (e.execution_id) } }
            }
            dt { "Error" } dd { (view::error_text(&e.exception_type, &e.message)) }
            dt { "Redrives" } dd { (e.redrive_count) " of " (e.max_redrives) }
            dt { "First failure" } dd { (view::time(e.first_failure_at)) }
            dt { "Last failure" } dd { (view::time(e.last_failure_at)) }
            dt { "Entered the queue" } dd { (view::time(e.entered_at)) }
            @if let Some(to) = &e.redriven_to { dt { "Redriven to" } dd { code { (to) } " " (view::time_opt(e.redriven_at)) } }
        }
        h2 { "Input" } (view::json_block(&w.input))
        h2 { "Attempts" } (view::json_block(&w.attempts))
    };
    ok_page(&format!("Entry {id}"), body)
}

pub async fn run<S: Store>(State(svc): St<S>, Path(id): Path<String>) -> PageResult {
    let r = svc.get_redrive_run(&id).await?;
    let body = html! {
        nav.crumbs { a href="/console/dlq" { "Dead-letter queues" } " / run " (id) }
        h1 { "Redrive run " code { (id) } }
        div data-poll=(format!("/console/dlq/runs/{id}/live")) { (run_markup(&r)) }
    };
    ok_page(&format!("Run {id}"), body)
}

/// A run's progress, polled while it runs.
pub async fn run_live<S: Store>(State(svc): St<S>, Path(id): Path<String>) -> PageResult {
    ok_fragment(run_markup(&svc.get_redrive_run(&id).await?))
}

fn run_markup(r: &RedriveRunRecord) -> Markup {
    let s = summary(r);
    let request = serde_json::from_str::<RedriveRequest>(&r.request_json).ok();
    let abort = super::may(Scope::Operate, run_resource(request.as_ref()));
    html! {
        div.run data-run=(r.id) data-status=(r.status) {
            p { (view::status(&r.status)) " · started " (view::time(r.started_at)) " · finished " (view::time_opt(r.finished_at)) }
            @if r.status == "RUNNING" {
                div.controls {
                    button type="button" class="danger" disabled[abort.is_err()] data-post=(format!("/v1/dlq/redrives/{}/abort", r.id)) data-body="{}"
                        data-confirm="Abort this run? No more entries are started; those already resubmitted finish." { "Abort" }
                    @if let Err(why) = &abort { (super::denied_note(why)) }
                    p.result role="status" aria-live="polite" {}
                }
            }
            @if let Some(req) = &request {
                p.meta { "Rate " (req.rate.per_second.map_or("unlimited".to_string(), |n| format!("{n}/s"))) " · max " (req.max_entries.map_or("all".to_string(), |n| n.to_string())) }
            }
            @if let Some(s) = &s {
                @let pct = (s.processed * 100).checked_div(s.matched).unwrap_or(100);
                progress max=(s.matched.max(1)) value=(s.processed) aria-label="Entries processed" {}
                p.progress-text { strong { (s.processed) " of " (s.matched) } " processed (" (pct) "%) · " (s.redriven) " redriven · " (s.skipped) " skipped · " (s.parked) " poison left parked" }
                @if let Some(e) = &s.error { p.error role="alert" { (e) } }
            }
        }
    }
}

/// What a run touches, for the viewer's grant: its queue or queue prefix.
fn run_resource(request: Option<&RedriveRequest>) -> Resource<'_> {
    match request.map(|r| &r.scope) {
        Some(QueueScope::Queue(q)) => Resource::Queue(q),
        Some(QueueScope::Prefix(p)) => Resource::QueuePrefix(p),
        None => Resource::AllQueues,
    }
}
