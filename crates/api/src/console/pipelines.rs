//! Pipelines: the list (latest execution, failed-stage badges) and a pipeline's
//! state (GetPipelineState): stages as columns, their actions, the Retry control
//! (what each mode would re-run, or why it is refused) and, for an action waiting
//! to retry, the countdown and how its delay was worked out.

use super::view::{self, q};
use super::{PAGE_ROWS, PageQuery, PageResult, ok_fragment, ok_page};
use axum::extract::{Path, State};
use maud::{Markup, html};
use redrive_core::auth::{Resource, Scope};
use redrive_core::definition::{Action, RetryMode};
use redrive_core::machine::{ActionState, ActionStatus, StageStatus};
use redrive_core::policy::{Decision, PolicyRef, RetryDecision, RetryPolicy};
use redrive_core::time::human_duration_ms;
use redrive_engine::service::{Service, ServiceError, StageView};
use redrive_store::{LedgerEntry, Store};
use serde::Deserialize;
use std::sync::Arc;

type St<S> = State<Arc<Service<S>>>;

/// Ledger rows read per execution to explain waiting retries (newest first).
const LEDGER_ROWS_FOR_DELAYS: usize = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// The last pipeline name of the previous page.
    after: Option<String>,
}

pub async fn list<S: Store>(State(svc): St<S>, PageQuery(query): PageQuery<ListQuery>) -> PageResult {
    let after = query.after.as_deref().map(|a| redrive_engine::service::validate_name("after", a)).transpose()?;
    let rows = svc.list_pipelines(after.as_ref().map(|n| n.as_str()), PAGE_ROWS).await?;
    let mut items = Vec::with_capacity(rows.len());
    // A grant limited by name sees its own pipelines (the page pages on over the rest).
    for r in rows.iter().filter(|r| super::may(Scope::Read, Resource::Pipeline(&r.name)).is_ok()) {
        let latest = svc.list_executions(&r.name, None, 1).await?.into_iter().next();
        let failed: Vec<String> = match (&latest, svc.get_pipeline(&r.name, None).await) {
            (Some(l), Ok(p)) => failed_stages(&l.state.stages, &p.loaded.pipeline),
            _ => Vec::new(),
        };
        items.push((r, latest, failed));
    }
    let next = (rows.len() == PAGE_ROWS).then(|| rows.last().map(|r| format!("/console?after={}", q(&r.name)))).flatten();
    let body = html! {
        h1 { "Pipelines" }
        @if let Some(limits) = super::name_limits() { p.note { "Showing the pipelines your token may read: " (limits) "." } }
        @if items.is_empty() { p { "No pipelines yet. Create one with " code { "redrive pipeline create" } " or the API." } }
        @else {
            table.list {
                thead { tr { th { "Pipeline" } th { "Version" } th { "Latest execution" } th { "Started" } th { "Failed stages" } } }
                tbody {
                    @for (r, latest, failed) in &items {
                        tr {
                            td { a href=(format!("/console/pipelines/{}", r.name)) { (r.name) } }
                            td { (r.version) }
                            td { @match latest { Some(l) => (view::status(l.state.status.as_str())), None => "never run" } }
                            td { @if let Some(l) = latest { (view::time(l.state.started_at)) } }
                            td { @for s in failed { span.badge.failed { "✖ " (s) } " " } }
                        }
                    }
                }
            }
        }
        (view::next_link(next))
    };
    ok_page("Pipelines", body)
}

fn failed_stages(stages: &[redrive_core::machine::StageState], p: &redrive_core::definition::Pipeline) -> Vec<String> {
    stages.iter().zip(&p.stages).filter(|(s, _)| s.status == StageStatus::Failed).map(|(_, d)| d.name.to_string()).collect()
}

pub async fn state<S: Store>(State(svc): St<S>, Path(name): Path<String>) -> PageResult {
    let board = board_markup(&svc, &name).await?;
    let body = html! {
        nav.crumbs { a href="/console" { "Pipelines" } " / " (name) }
        h1 { "Pipeline " (name) }
        p.links {
            a href=(format!("/console/pipelines/{name}/executions")) { "Execution history" }
        }
        div #board data-poll=(format!("/console/pipelines/{name}/board")) { (board) }
    };
    ok_page(&name, body)
}

/// The stages board alone, polled by the page for live updates.
pub async fn board<S: Store>(State(svc): St<S>, Path(name): Path<String>) -> PageResult {
    ok_fragment(board_markup(&svc, &name).await?)
}

/// What a stage's Retry control shows: per mode, the actions it would re-run or
/// the refusal (CodePipeline's exception name, and the message).
struct RetryChoices {
    execution_id: String,
    modes: Vec<(RetryMode, Result<Vec<String>, Refusal>)>,
}

/// Why a retry would be refused: CodePipeline's exception name and the message.
type Refusal = (&'static str, String);

async fn board_markup<S: Store>(svc: &Service<S>, name: &str) -> Result<Markup, ServiceError> {
    let (view, per_stage) = svc.pipeline_state(name).await?;
    let waits = crate::keys::Waits::fetch(svc, None).await;
    let mut columns = Vec::new();
    for (stage, latest) in view.loaded.pipeline.stages.iter().zip(&per_stage) {
        let choices = match latest {
            Some(sv) if offers_retry(sv) => Some(retry_choices(svc, name, sv).await),
            _ => None,
        };
        let ledger = match latest {
            Some(sv) if sv.stage_state().actions.iter().any(|a| a.status == ActionStatus::WaitingRetry) => {
                svc.list_action_executions(name, Some(&sv.execution.record.id), None, LEDGER_ROWS_FOR_DELAYS).await?
            }
            _ => Vec::new(),
        };
        columns.push(stage_column(name, stage.name.as_str(), latest.as_ref(), choices.as_ref(), &ledger, &waits));
    }
    Ok(html! {
        p.meta { "Version " (view.record.version) }
        div.stages { @for c in columns { (c) } }
    })
}

/// Whether a stage shows a Retry control: it has failed actions, or a retry of
/// it is under way.
fn offers_retry(sv: &StageView) -> bool {
    let st = sv.stage_state();
    st.retry_in_progress || st.actions.iter().any(|a| a.status == ActionStatus::Failed)
}

async fn retry_choices<S: Store>(svc: &Service<S>, pipeline: &str, sv: &StageView) -> RetryChoices {
    let id = sv.execution.record.id.clone();
    let stage = sv.stage_definition().name.as_str();
    let refusal = |e: &ServiceError| (crate::error::error_code(e).0, e.to_string());
    if let Err(why) = super::may(Scope::Operate, Resource::Pipeline(pipeline)) {
        let modes = [RetryMode::FailedActions, RetryMode::AllActions].into_iter().map(|m| (m, Err(("AccessDeniedException", why.clone()))));
        return RetryChoices { execution_id: id, modes: modes.collect() };
    }
    let check = svc.retry_check(pipeline, stage, &id).await;
    let modes = [RetryMode::FailedActions, RetryMode::AllActions]
        .into_iter()
        .map(|mode| match &check {
            Ok(c) => (mode, c.targets(mode).map_err(|e| refusal(&e))),
            Err(e) => (mode, Err(refusal(e))),
        })
        .collect();
    RetryChoices { execution_id: id, modes }
}

fn stage_column(
    pipeline: &str,
    stage: &str,
    latest: Option<&StageView>,
    choices: Option<&RetryChoices>,
    ledger: &[LedgerEntry],
    waits: &crate::keys::Waits,
) -> Markup {
    html! {
        section.stage aria-label=(format!("Stage {stage}")) data-stage=(stage) {
            h2 { (stage) }
            @match latest {
                None => p { (view::status("NotStarted")) },
                Some(sv) => {
                    @let st = sv.stage_state();
                    @let id = &sv.execution.record.id;
                    p.stage-status {
                        (view::status(stage_status(st.status, st.retry_in_progress)))
                        @if st.retry_in_progress { " " span.badge { "retry in progress" } }
                    }
                    p.meta {
                        "Execution " a href=(format!("/console/pipelines/{pipeline}/executions/{id}")) { code { (short_id(id)) } }
                        @if st.manual_retries_used > 0 { " · " (st.manual_retries_used) " manual retries" }
                        @if st.auto_retries_used > 0 { " · " (st.auto_retries_used) " automatic retries" }
                    }
                    @if let Some(c) = choices { (retry_control(pipeline, stage, c)) }
                    ul.actions {
                        @for (ai, (def, a)) in sv.stage_definition().actions.iter().zip(&st.actions).enumerate() {
                            @let at = redrive_core::machine::ActionAt { stage: sv.stage_index, action: ai };
                            @let waiting = waits.view(id, at, a.series, a.attempt).filter(|_| a.status == ActionStatus::Running);
                            li.action data-action=(def.name.as_str()) { (action_card(stage, def, a, ledger, waiting)) }
                        }
                    }
                }
            }
        }
    }
}

fn stage_status(s: StageStatus, retrying: bool) -> &'static str {
    match s {
        StageStatus::NotStarted => "NotStarted",
        StageStatus::InProgress => "InProgress",
        StageStatus::Succeeded => "Succeeded",
        StageStatus::Failed if retrying => "InProgress",
        StageStatus::Failed => "Failed",
    }
}

pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

pub fn action_status(s: ActionStatus) -> &'static str {
    match s {
        ActionStatus::NotStarted => "NotStarted",
        ActionStatus::Running => "InProgress",
        ActionStatus::WaitingRetry => "WaitingRetry",
        ActionStatus::Succeeded => "Succeeded",
        ActionStatus::Failed => "Failed",
        ActionStatus::Paused => "Paused",
    }
}

fn action_card(stage: &str, def: &Action, a: &ActionState, ledger: &[LedgerEntry], waiting: Option<redrive_wire::KeyWaiting>) -> Markup {
    html! {
        div.action-head { strong { (def.name.as_str()) } " " span.kind { (def.kind.provider()) } }
        div { (view::status(action_status(a.status))) }
        @if let Some(k) = &waiting {
            div.held {
                "Waiting for a slot of key " strong { (k.concurrency_key.as_deref().unwrap_or("(absent)")) }
                " (" (k.running) " of " (k.max) " running, #" (k.position) " in line)"
            }
        }
        div.meta { "Attempt " (a.attempt) " of this series · " (a.total_attempts) " in all" }
        @if let Some(f) = &a.last_failure { div { (view::failure(Some(f))) } }
        @if a.status == ActionStatus::WaitingRetry {
            @if let Some(due) = a.next_attempt_at { div.due { "Next attempt " (view::countdown(due)) } }
            @if let Some(h) = &a.held {
                div.held { "Held by dependency " strong { (h.dependency.as_str()) } " (" (hold_text(&h.reason)) ")" }
            }
            @if let Some(d) = last_retry_decision(ledger, stage, def.name.as_str()) { (delay_explained(def, &d)) }
        }
    }
}

/// Why a dependency holds an attempt, for people.
fn hold_text(r: &redrive_core::dependency::DeferReason) -> String {
    use redrive_core::dependency::DeferReason;
    match r {
        DeferReason::Budget { used, allowed } => format!("retry budget spent: {used} retries in its window, {} allowed", allowed.floor()),
        DeferReason::BreakerOpen => "circuit breaker open".into(),
        DeferReason::BreakerHalfOpen => "circuit breaker half-open, its probes are out".into(),
    }
}

/// The retry decision of the action's newest failed attempt, if it granted one.
fn last_retry_decision(ledger: &[LedgerEntry], stage: &str, action: &str) -> Option<RetryDecision> {
    let row = ledger.iter().find(|e| e.stage == stage && e.action == action && e.outcome != redrive_core::dependency::DEFERRED_OUTCOME)?;
    match serde_json::from_str::<Decision>(row.decision_json.as_deref()?).ok()? {
        Decision::Retry(r) => Some(r),
        Decision::GiveUp { .. } => None,
    }
}

/// How a retry's delay was worked out: the policy, its base delay and backoff,
/// the cap, the jitter draw and the server's Retry-After hint.
fn delay_explained(def: &Action, d: &RetryDecision) -> Markup {
    let policy = match d.policy {
        PolicyRef::Declared(i) => def.retry_policies.get(i).cloned(),
        PolicyRef::BuiltinDefault => Some(RetryPolicy::builtin_default()),
    };
    let jittered = match d.hint_ms {
        Some(h) if h >= d.delay_ms => None,
        _ => Some(d.delay_ms),
    };
    html! {
        dl.delay aria-label="How the delay was worked out" {
            dt { "Policy" } dd { (d.policy.to_string()) @if let Some(p) = &policy { ": " code { (p.summary()) } } }
            dt { "Retry" } dd { "#" (d.retry_number) " under this policy" }
            @if let Some(p) = &policy {
                dt { "Base delay" } dd { (human_duration_ms(p.interval_ms())) " × " (p.backoff_rate()) "^" (d.retry_number.saturating_sub(1)) }
                dt { "Cap" } dd { @match p.max_interval_ms() { Some(m) => (human_duration_ms(m)), None => "none (the engine's maximum)" } }
            }
            dt { "Computed" } dd { (human_duration_ms(d.computed_delay_ms)) " before jitter" }
            dt { "Jitter draw" } dd {
                @match (jittered, &policy) {
                    (Some(j), Some(p)) => { (p.jitter().as_str()) " → " (human_duration_ms(j)) }
                    (Some(j), None) => { (human_duration_ms(j)) }
                    (None, _) => "not used: the Retry-After hint was longer"
                }
            }
            dt { "Retry-After" } dd { @match d.hint_ms { Some(h) => (human_duration_ms(h)), None => "no hint" } }
            dt { "Delay" } dd { strong { (human_duration_ms(d.delay_ms)) } }
        }
    }
}

fn mode_name(m: RetryMode) -> &'static str {
    match m {
        RetryMode::FailedActions => "FAILED_ACTIONS",
        RetryMode::AllActions => "ALL_ACTIONS",
    }
}

/// The Retry control: one button per mode. Hovering or focusing a button shows
/// the actions it would re-run; a refused mode is disabled with the reason.
fn retry_control(pipeline: &str, stage: &str, c: &RetryChoices) -> Markup {
    let url = format!("/v1/pipelines/{pipeline}/executions/{}/stages/{stage}/retry", c.execution_id);
    html! {
        div.retry role="group" aria-label=(format!("Retry stage {stage}")) {
            span.retry-label { "Retry" }
            @for (mode, preview) in &c.modes {
                @let tip = format!("tip-{stage}-{}", mode_name(*mode));
                @match preview {
                    Ok(actions) => {
                        span.choice {
                            button type="button" id=(format!("retry-{stage}-{}", mode_name(*mode))) data-post=(url)
                                data-body=(serde_json::json!({"retryMode": mode_name(*mode)}).to_string())
                                data-mode=(mode_name(*mode)) aria-describedby=(tip) { (mode_name(*mode)) }
                            span.tip role="tooltip" id=(tip) { "Would re-run: " (actions.join(", ")) }
                        }
                    }
                    Err(e) => {
                        span.choice {
                            button type="button" id=(format!("retry-{stage}-{}", mode_name(*mode))) disabled
                                data-mode=(mode_name(*mode)) aria-describedby=(tip) { (mode_name(*mode)) }
                            span.reason id=(tip) { strong { (e.0) } ": " (e.1) }
                        }
                    }
                }
            }
            p.result role="status" aria-live="polite" {}
        }
    }
}
