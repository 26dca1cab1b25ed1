//! `redrive doctor`: checks the engine's own invariants over what a store holds
//! (read-only; runs beside a server). The rules are pure functions over one
//! execution's rows ([`check_execution`]); [`examine`] pages through the store
//! and collects what they find.
//!
//! - an execution's state can be read, unless the engine already failed it for
//!   that (a quarantine fault);
//! - an unfinished pipeline execution has something that moves it on: an attempt
//!   running (taken over at start-up), a durable timer, a place in its queue or
//!   a stage it waits for; and every action waiting for a retry has a timer;
//! - its ledger numbers attempts 1, 2, … without gaps or repeats in every series;
//! - a dead-letter entry names executions that exist;
//! - a timer belongs to an execution that exists and is unfinished.

use redrive_core::machine::{ActionStatus, ExecutionState, ExecutionStatus};
use redrive_store::{
    DlqEntryCursor, DlqEntryFilter, ExecutionCursor, ExecutionFilter, ExecutionKind, ExecutionRecord, LedgerEntry, Store, StoreError,
    TimerRecord,
};
use std::collections::BTreeMap;

/// Findings kept, at most (the counts go on).
pub const MAX_FINDINGS: usize = 1000;
/// Timers read per page when looking for orphans.
const TIMER_PAGE: usize = 1000;

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Which rule (`state`, `progress`, `ledger`, `dead-letter`, `timer`).
    pub check: &'static str,
    /// What it concerns: an execution, entry or timer.
    pub subject: String,
    pub problem: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DoctorReport {
    pub executions: u64,
    pub unfinished: u64,
    pub ledger_rows: u64,
    pub dead_letter_entries: u64,
    pub timers: u64,
    /// How many findings there were (only the first [`MAX_FINDINGS`] are kept).
    pub problems: u64,
    pub findings: Vec<Finding>,
}

impl DoctorReport {
    fn add(&mut self, found: impl IntoIterator<Item = Finding>) {
        for finding in found {
            self.problems += 1;
            if self.findings.len() < MAX_FINDINGS {
                self.findings.push(finding);
            }
        }
    }
}

fn finding(check: &'static str, subject: &str, problem: String) -> Finding {
    Finding { check, subject: subject.to_string(), problem }
}

/// The rules for one pipeline execution, given its ledger (in commit order)
/// and its timers. Pure.
pub fn check_execution(record: &ExecutionRecord, ledger: &[LedgerEntry], timers: &[TimerRecord]) -> Vec<Finding> {
    let mut found = check_ledger(&record.id, ledger);
    if record.fault.is_some() || record.target.kind() != ExecutionKind::Pipeline {
        return found;
    }
    let state = match serde_json::from_str::<ExecutionState>(&record.state_json) {
        Ok(state) => state,
        Err(e) => {
            found.push(finding("state", &record.id, format!("the stored state cannot be read: {e}")));
            return found;
        }
    };
    if record.status == "InProgress" {
        found.extend(check_progress(&record.id, &state, timers));
    }
    found
}

fn check_progress(id: &str, state: &ExecutionState, timers: &[TimerRecord]) -> Vec<Finding> {
    let actions = || state.stages.iter().flat_map(|s| s.actions.iter());
    let running = actions().any(|a| a.status == ActionStatus::Running);
    let waiting_retry = actions().filter(|a| a.status == ActionStatus::WaitingRetry).count();
    let mut found = Vec::new();
    if waiting_retry > 0 && timers.is_empty() {
        found.push(finding("progress", id, format!("{waiting_retry} action(s) wait for a retry but the execution has no timer")));
    }
    // A paused execution waits for a person (resume or fail), through a paused action.
    let paused = state.status == ExecutionStatus::Paused;
    if paused && !actions().any(|a| a.status == ActionStatus::Paused) {
        found.push(finding("progress", id, "paused, but none of its actions is paused".into()));
    }
    let waits = state.queued || state.waiting_for_stage.is_some() || state.status == ExecutionStatus::Stopping || paused;
    if !running && timers.is_empty() && !waits && waiting_retry == 0 {
        found.push(finding("progress", id, "unfinished, with no attempt running, no timer and nothing it waits for".into()));
    }
    found
}

/// Attempts of every (stage, action, series) are numbered 1..=n.
pub fn check_ledger(id: &str, ledger: &[LedgerEntry]) -> Vec<Finding> {
    let mut series: BTreeMap<(&str, &str, u32), Vec<u32>> = BTreeMap::new();
    for entry in ledger.iter().filter(|e| e.outcome != redrive_core::dependency::DEFERRED_OUTCOME) {
        series.entry((&entry.stage, &entry.action, entry.series)).or_default().push(entry.attempt);
    }
    let mut found = Vec::new();
    for ((stage, action, number), mut attempts) in series {
        attempts.sort_unstable();
        let expected: Vec<u32> = (1..=attempts.len() as u32).collect();
        if attempts != expected {
            found.push(finding("ledger", id, format!("{stage}/{action} series {number}: attempts {attempts:?}, expected {expected:?}")));
        }
    }
    found
}

/// Reads the whole store (page by page) and checks every rule.
pub async fn examine<S: Store>(store: &S) -> Result<DoctorReport, StoreError> {
    let mut report = DoctorReport::default();
    let mut before: Option<ExecutionCursor> = None;
    loop {
        let page = store.list_executions(ExecutionFilter { before: before.clone(), limit: 0, ..Default::default() }).await?;
        let Some(last) = page.last() else { break };
        before = Some(last.cursor());
        for record in &page {
            let ledger = store.ledger(&record.id).await?;
            let timers = store.execution_timers(&record.id).await?;
            report.executions += 1;
            report.unfinished += u64::from(record.status == "InProgress");
            report.ledger_rows += ledger.len() as u64;
            report.add(check_execution(record, &ledger, &timers));
        }
    }
    examine_entries(store, &mut report).await?;
    examine_timers(store, &mut report).await?;
    Ok(report)
}

async fn examine_entries<S: Store>(store: &S, report: &mut DoctorReport) -> Result<(), StoreError> {
    let mut after: Option<DlqEntryCursor> = None;
    loop {
        let page = store.list_dlq_entries(DlqEntryFilter { after: after.clone(), limit: 0, ..Default::default() }).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.cursor());
        for entry in &page {
            report.dead_letter_entries += 1;
            for (what, id) in [("failed execution", Some(&entry.execution_id)), ("redriven-to execution", entry.redriven_to.as_ref())] {
                if let Some(id) = id
                    && store.get_execution(id).await?.is_none()
                {
                    report.add([finding("dead-letter", &entry.id, format!("its {what} {id} does not exist"))]);
                }
            }
        }
    }
    Ok(())
}

async fn examine_timers<S: Store>(store: &S, report: &mut DoctorReport) -> Result<(), StoreError> {
    let all = redrive_core::time::Timestamp::from_unix_ms(i64::MAX);
    let mut page = store.due_timers(all, TIMER_PAGE).await?;
    while let Some(last) = page.last().cloned() {
        for timer in &page {
            report.timers += 1;
            let subject = format!("{} {}", timer.execution_id, timer.key);
            match store.get_execution(&timer.execution_id).await? {
                None => report.add([finding("timer", &subject, "its execution does not exist".into())]),
                Some(e) if e.status != "InProgress" => report.add([finding("timer", &subject, format!("its execution is {}", e.status))]),
                Some(_) => {}
            }
        }
        page = store.due_timers_after(all, &last, TIMER_PAGE).await?;
    }
    Ok(())
}
