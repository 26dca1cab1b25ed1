//! Live progress and end-of-run summaries.

use crate::OutputFormat;
use crate::present::Table;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use redrive_core::machine::{AttemptRecord, ExecutionState};
use redrive_core::policy::Decision;
use redrive_core::time::{Timestamp, human_duration_ms};
use redrive_engine::{Clock, EngineHandle, Notification, SystemClock};
use redrive_store::{ExecutionRecord, LedgerEntry, Store};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast::error::RecvError;

/// One line describing a retry decision.
pub fn decision_text(d: &Decision, now: Option<Timestamp>) -> String {
    match d {
        Decision::Retry(r) => {
            let when = match now {
                Some(now) => human_duration_ms(r.due_at.ms_since(now).max(0) as u64),
                None => human_duration_ms(r.delay_ms),
            };
            let mut s = format!("retry in {when} under {} (retry {})", r.policy, r.retry_number);
            if let Some(h) = r.hint_ms {
                s.push_str(&format!(", server asked for {}", human_duration_ms(h)));
            }
            s
        }
        Decision::GiveUp { policy, reason } => match policy {
            Some(p) => format!("gave up under {p}: {reason}"),
            None => format!("gave up: {reason}"),
        },
    }
}

enum Line {
    Running { attempt: u32, since: Timestamp },
    Waiting { record: AttemptRecord },
    Done,
}

struct Tty {
    multi: MultiProgress,
    bars: HashMap<String, (ProgressBar, Line)>,
    order: Vec<String>,
}

impl Tty {
    fn bar(&mut self, key: &str) -> &mut (ProgressBar, Line) {
        if !self.bars.contains_key(key) {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(ProgressStyle::with_template("{spinner} {prefix:30} {msg}").expect("template").tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏✓"));
            bar.set_prefix(key.to_string());
            self.order.push(key.to_string());
            self.bars.insert(key.to_string(), (bar, Line::Done));
        }
        self.bars.get_mut(key).expect("inserted")
    }

    fn refresh(&mut self, now: Timestamp) {
        for (bar, line) in self.bars.values() {
            match line {
                Line::Running { attempt, since } => {
                    bar.set_message(format!("attempt {attempt} running ({})", human_duration_ms(now.ms_since(*since).max(0) as u64)))
                }
                Line::Waiting { record } => {
                    let f = record.failure.as_ref().expect("waiting after a failure");
                    let d = record.decision.as_ref().map(|d| decision_text(d, Some(now))).unwrap_or_default();
                    bar.set_message(format!("attempt {} failed: {} — {d}", record.id.attempt, f.exception_type));
                }
                Line::Done => {}
            }
            bar.tick();
        }
    }
}

/// Shows what the engine does: spinners on a terminal, log lines otherwise
/// (nothing in `--output json` mode unless stderr is a terminal).
pub struct Progress {
    tty: Option<Arc<Mutex<Tty>>>,
    lines: bool,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    pub fn start(handle: &EngineHandle, output: OutputFormat) -> Progress {
        let is_tty = std::io::stderr().is_terminal();
        let lines = !is_tty && output == OutputFormat::Text;
        if !is_tty && !lines {
            return Progress { tty: None, lines: false, task: None };
        }
        let mut rx = handle.subscribe();
        let tty = is_tty.then(|| {
            Arc::new(Mutex::new(Tty {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: HashMap::new(),
                order: Vec::new(),
            }))
        });
        let tty2 = tty.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tokio::select! {
                    n = rx.recv() => match n {
                        Ok(n) => match &tty2 {
                            Some(t) => on_tty(&mut t.lock().expect("progress lock"), n),
                            None => on_line(n),
                        },
                        Err(RecvError::Lagged(k)) => {
                            if tty2.is_none() { eprintln!("({k} progress messages skipped)"); }
                        }
                        Err(RecvError::Closed) => break,
                    },
                    _ = tick.tick() => {
                        if let Some(t) = &tty2 { t.lock().expect("progress lock").refresh(SystemClock.now()); }
                    }
                }
            }
        });
        Progress { tty, lines, task: Some(task) }
    }

    pub fn note(&self, msg: &str) {
        match &self.tty {
            Some(t) => {
                let _ = t.lock().expect("progress lock").multi.println(msg);
            }
            None if self.lines => eprintln!("{msg}"),
            None => {}
        }
    }

    pub fn finish(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        if let Some(t) = &self.tty {
            let t = t.lock().expect("progress lock");
            for (bar, _) in t.bars.values() {
                bar.finish();
            }
        }
    }
}

fn on_tty(t: &mut Tty, n: Notification) {
    match n {
        Notification::AttemptStarted { stage, action, attempt, at, .. } => {
            let (_, line) = t.bar(&format!("{stage}/{action}"));
            *line = Line::Running { attempt, since: at };
        }
        Notification::AttemptFinished { stage, action, record, .. } => {
            let (bar, line) = t.bar(&format!("{stage}/{action}"));
            match (&record.failure, &record.decision) {
                (None, _) => {
                    bar.finish_with_message(format!("succeeded on attempt {}", record.id.attempt));
                    *line = Line::Done;
                }
                (Some(_), Some(Decision::Retry(_))) => *line = Line::Waiting { record },
                (Some(f), d) => {
                    let why = d.as_ref().map(|d| decision_text(d, None)).unwrap_or_default();
                    bar.finish_with_message(format!(
                        "FAILED on attempt {}: {}: {} — {why}",
                        record.id.attempt,
                        f.exception_type,
                        first_line(&f.message)
                    ));
                    *line = Line::Done;
                }
            }
        }
        Notification::ExecutionFinished { execution_id, status, .. } => {
            let _ = t.multi.println(format!("execution {execution_id} {}", status.as_str()));
        }
    }
}

fn on_line(n: Notification) {
    match n {
        Notification::AttemptStarted { stage, action, attempt, at, .. } => {
            eprintln!("{} {stage}/{action} attempt {attempt} started", clock_time(at))
        }
        Notification::AttemptFinished { stage, action, record, .. } => match &record.failure {
            None => eprintln!("{} {stage}/{action} attempt {} succeeded", clock_time(record.finished_at), record.id.attempt),
            Some(f) => eprintln!(
                "{} {stage}/{action} attempt {} failed: {}: {} → {}",
                clock_time(record.finished_at),
                record.id.attempt,
                f.exception_type,
                first_line(&f.message),
                record.decision.as_ref().map(|d| decision_text(d, None)).unwrap_or_default()
            ),
        },
        Notification::ExecutionFinished { execution_id, status, at } => {
            eprintln!("{} execution {execution_id} {}", clock_time(at), status.as_str())
        }
    }
}

/// `HH:MM:SS.mmm` (UTC) of a timestamp.
fn clock_time(t: Timestamp) -> String {
    t.to_string()[11..23].to_string()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// Everything about one execution, for the end-of-run report.
pub struct Summary {
    pub execution: ExecutionRecord,
    pub state: ExecutionState,
    pub ledger: Vec<LedgerEntry>,
}

impl Summary {
    pub async fn load<S: Store>(store: &S, id: &str) -> anyhow::Result<Summary> {
        let execution = store.get_execution(id).await?.ok_or_else(|| anyhow::anyhow!("execution {id} vanished"))?;
        // A quarantined execution shows as failed with the engine's failure.
        let state: ExecutionState = redrive_engine::service::execution_state(&execution);
        let ledger = store.ledger(id).await?;
        Ok(Summary { execution, state, ledger })
    }

    fn duration_ms(&self) -> u64 {
        self.state.finished_at.map(|f| f.ms_since(self.state.started_at).max(0) as u64).unwrap_or(0)
    }

    fn to_json(&self) -> serde_json::Value {
        let attempts: Vec<serde_json::Value> = self
            .ledger
            .iter()
            .map(|e| {
                serde_json::json!({
                    "stage": e.stage,
                    "action": e.action,
                    "series": e.series,
                    "attempt": e.attempt,
                    "trigger": e.trigger,
                    "startedAt": e.started_at.to_string(),
                    "finishedAt": e.finished_at.to_string(),
                    "durationMs": e.finished_at.ms_since(e.started_at),
                    "outcome": e.outcome,
                    "exceptionType": e.exception_type,
                    "message": e.message,
                    "decision": e.decision_json.as_deref().and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok()),
                })
            })
            .collect();
        serde_json::json!({
            "executionId": self.execution.id,
            "pipeline": {"name": self.execution.target.name(), "version": self.execution.target.pipeline_version()},
            // The state's status: the store keeps every unfinished one (Paused too) InProgress.
            "status": self.state.status.as_str(),
            "startedAt": self.state.started_at.to_string(),
            "finishedAt": self.state.finished_at.map(|t| t.to_string()),
            "durationMs": self.duration_ms(),
            "failure": self.state.failure.as_ref().map(|f| serde_json::json!({"exceptionType": f.exception_type, "message": f.message})),
            "attempts": attempts,
        })
    }

    fn print_text(&self) {
        println!();
        println!(
            "Execution {}  pipeline {} v{}  {} in {}",
            self.execution.id,
            self.execution.target.name(),
            self.execution.target.pipeline_version().unwrap_or_default(),
            self.state.status.as_str(),
            human_duration_ms(self.duration_ms())
        );
        println!();
        let table = self.attempts_table();
        let mut lines = table.lines();
        println!("{}", lines.next().unwrap_or_default());
        // The message goes under the attempt's row, below the columns after ACTION.
        let indent = self.ledger.iter().map(|e| e.stage.chars().count() + e.action.chars().count() + 1).max().unwrap_or(0).max(6) + 2;
        for (e, line) in self.ledger.iter().zip(lines) {
            println!("{line}");
            if let Some(m) = e.message.as_deref().filter(|m| !m.is_empty()) {
                println!("{:indent$}message: {}", "", first_line(m));
            }
        }
        if let Some(f) = &self.state.failure {
            println!();
            println!("The engine failed this execution: {}: {}", f.exception_type, first_line(&f.message));
        }
    }
}

impl Summary {
    /// One row per attempt: action, attempt, trigger, duration, result, exception, decision.
    fn attempts_table(&self) -> String {
        let mut t = Table::new(&["ACTION", "#", "TRIGGER", "TOOK", "RESULT", "EXCEPTION", "DECISION"]);
        t.align_right(&[1, 3]);
        for e in &self.ledger {
            let decision = e
                .decision_json
                .as_deref()
                .and_then(|d| serde_json::from_str::<Decision>(d).ok())
                .map(|d| decision_text(&d, None))
                .unwrap_or_default();
            let attempt = if e.series > 1 { format!("{}.{}", e.series, e.attempt) } else { e.attempt.to_string() };
            t.row(vec![
                format!("{}/{}", e.stage, e.action),
                attempt,
                e.trigger.to_string(),
                human_duration_ms(e.finished_at.ms_since(e.started_at).max(0) as u64),
                e.outcome.to_string(),
                e.exception_type.clone().unwrap_or_else(|| "-".into()),
                decision,
            ]);
        }
        t.render()
    }
}

pub fn print_summaries(summaries: &[Summary], output: OutputFormat) {
    match output {
        OutputFormat::Json => {
            let v: Vec<serde_json::Value> = summaries.iter().map(Summary::to_json).collect();
            let v = if v.len() == 1 { v.into_iter().next().expect("one") } else { serde_json::Value::Array(v) };
            println!("{}", serde_json::to_string_pretty(&v).expect("json"));
        }
        OutputFormat::Text => summaries.iter().for_each(Summary::print_text),
    }
}
