//! `redrive dlq …`: dead-letter queues on a running `redrive server` — list, show,
//! get, purge, redrive (one queue or every queue under a prefix), configure, and
//! the recorded redrive runs and schedules.
//!
//! Options are checked here before any request (filters, durations, rates, modes),
//! with errors naming the option and what is allowed (exit 2). Everything else
//! follows the conventions of the other client commands (see `remote.rs`): server
//! errors print as `error: <code>: <message>` and exit 2 (4xx) or 3 (5xx or
//! unreachable); `--output json` prints the server's JSON.

use crate::client::{Client, ClientError, DlqFilters, RedriveBody};
use crate::load::plural;
use crate::present::{Table, age_of, now_ms, one_line, parse_timestamp_ms, str_of, text_of, to_yaml};
use crate::remote::{ERROR_CELL, Paging, Remote, collect_pages, print_json, run};
use crate::{OutputFormat, exit};
use clap::{ArgGroup, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use redrive_core::time::{human_duration_ms, parse_duration_ms};
use redrive_engine::redrive::Rate;
use serde_json::{Value, json};
use std::cell::Cell;
use std::io::IsTerminal;
use std::time::Duration;

/// How often a waiting `dlq redrive` asks for its run.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// Skipped entries itemised after a redrive (the run has more with `dlq run ID`).
const SKIPPED_SHOWN: usize = 10;
/// Runs `dlq runs` shows unless told otherwise.
const DEFAULT_RUNS: u64 = 20;

const LOOP_PROTECTION: &str = "Loop protection: every redrive of an entry is counted. An entry redriven maxRedrives times \
(3 per queue unless `redrive dlq configure QUEUE --max-redrives N` says otherwise) is poison: it stays parked in its queue, \
bulk and scheduled redrives skip it, and only `redrive dlq redrive QUEUE --entry ID --force` resubmits it.";

const FILTER_KEYS: &str =
    "type (the final error's exception type, e.g. type=Step.THROTTLING), source (the pipeline the entry came from, e.g. source=orders)";

#[derive(clap::Subcommand)]
pub enum DlqCommand {
    /// List dead-letter queues: depth, poison entries, entries being redriven, age
    /// of the oldest entry and maxRedrives.
    ///
    /// A pipeline names its queue with `deadLetterQueue: NAME`; an execution that
    /// fails for good (no retry policy allows another attempt) writes one entry
    /// there. Queues are created on first use with maxRedrives 3.
    #[command(after_help = LOOP_PROTECTION)]
    List(ListArgs),
    /// Show the entries of a queue, oldest first: the failed execution, where it
    /// failed, the final error, redrives so far and time in the queue.
    ///
    /// By default only entries in the queue (state queued, poison included) are
    /// shown; --state redriven shows entries resubmitted whose outcome is not
    /// known yet, resolved those whose resubmission succeeded, all every one.
    #[command(after_help = LOOP_PROTECTION)]
    Show(ShowArgs),
    /// Show one entry in full: source, error, input, attempt counts, redrive history.
    Get(GetArgs),
    /// Delete entries from a queue (only entries in the queue; redriven and
    /// resolved ones are kept). Without --yes, only says how many would go.
    Purge(PurgeArgs),
    /// Redrive entries: take them out of their queue and resubmit them.
    ///
    /// Mode retry-stage (the default) retries the failed stage of the original
    /// execution (FAILED_ACTIONS); new-execution starts a new execution of the
    /// pipeline's latest version with the original input. A redriven entry is
    /// resolved if the resubmission succeeds and returns to its queue (one more
    /// redrive counted) if it fails for good.
    ///
    /// Give QUEUE to redrive one queue, or --prefix P to redrive every queue
    /// whose name starts with P. Entries go oldest first at --rate (default
    /// 100/s). The redrive runs in the server and is recorded (`redrive dlq
    /// runs`); this command follows it with a progress bar (on a terminal) and
    /// prints a summary, unless --no-wait. --dry-run shows what would happen and
    /// changes nothing.
    #[command(after_help = LOOP_PROTECTION)]
    Redrive(RedriveArgs),
    /// Set a queue's maxRedrives (1 to 1000; default 3), creating the queue if missing.
    #[command(after_help = LOOP_PROTECTION)]
    Configure(ConfigureArgs),
    /// List recorded redrive runs (manual and scheduled), newest first.
    Runs(RunsArgs),
    /// Show one redrive run: its request, status, and what it did (skips by
    /// reason, per queue, per entry).
    Run(RunArgs),
    /// List the server's scheduled redrives (`redriveSchedules` in the file of
    /// `redrive server --config`), when each runs next and how its last run went.
    ///
    /// A schedule redrives, every `every`, each queue whose name starts with its
    /// queuePrefix, like `redrive dlq redrive --prefix P` with its options.
    #[command(after_help = LOOP_PROTECTION)]
    Schedules(SchedulesArgs),
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Only queues whose name starts with PREFIX.
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

/// `--filter KEY=VALUE` keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterKey {
    Type,
    Source,
}

impl FilterKey {
    fn as_str(self) -> &'static str {
        match self {
            FilterKey::Type => "type",
            FilterKey::Source => "source",
        }
    }
}

fn parse_filter(s: &str) -> Result<(FilterKey, String), String> {
    let Some((k, v)) = s.split_once('=') else {
        return Err(format!("expected KEY=VALUE; allowed keys: {FILTER_KEYS}"));
    };
    let key = match k.trim() {
        "type" => FilterKey::Type,
        "source" => FilterKey::Source,
        other => return Err(format!("unknown filter key {other:?}; allowed keys: {FILTER_KEYS}")),
    };
    let v = v.trim();
    if v.is_empty() {
        return Err(format!(
            "{} needs a value, e.g. {}",
            key.as_str(),
            if key == FilterKey::Type { "type=Step.THROTTLING" } else { "source=orders" }
        ));
    }
    Ok((key, v.to_string()))
}

fn parse_older_than(s: &str) -> Result<String, String> {
    parse_duration_ms(s).map(|_| s.trim().to_string())
}

fn parse_rate(s: &str) -> Result<String, String> {
    Rate::parse(s.trim()).map(|_| s.trim().to_string())
}

/// Entry filters shared by show, purge and redrive.
#[derive(clap::Args, Clone)]
pub struct FilterArgs {
    /// Only entries matching KEY=VALUE. Keys: `type` (the exception type of the final
    /// error, e.g. type=Step.THROTTLING) and `source` (the pipeline the entry came
    /// from, e.g. source=orders). Repeat for both keys; each key at most once.
    #[arg(long = "filter", value_name = "KEY=VALUE", value_parser = parse_filter)]
    filters: Vec<(FilterKey, String)>,
    /// Only entries that have been in their queue at least this long (e.g. 30s, 10m, 1h30m).
    #[arg(long, value_name = "DURATION", value_parser = parse_older_than)]
    older_than: Option<String>,
}

impl FilterArgs {
    fn to_filters(&self, poison: Option<bool>) -> Result<DlqFilters, String> {
        let mut f = DlqFilters { older_than: self.older_than.clone(), poison, ..Default::default() };
        for (k, v) in &self.filters {
            let slot = match k {
                FilterKey::Type => &mut f.exception_type,
                FilterKey::Source => &mut f.source,
            };
            if let Some(first) = slot {
                return Err(format!(
                    "--filter {key} is given twice ({key}={first}, {key}={v}); each key at most once (allowed keys: {FILTER_KEYS})",
                    key = k.as_str()
                ));
            }
            *slot = Some(v.clone());
        }
        Ok(f)
    }
}

/// `--poison` / `--not-poison`.
#[derive(clap::Args, Clone)]
pub struct PoisonArgs {
    /// Only poison entries (redriven maxRedrives times; parked).
    #[arg(long, conflicts_with = "not_poison")]
    poison: bool,
    /// Only entries that are not poison.
    #[arg(long)]
    not_poison: bool,
}

impl PoisonArgs {
    fn value(&self) -> Option<bool> {
        if self.poison {
            Some(true)
        } else if self.not_poison {
            Some(false)
        } else {
            None
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    /// In the queue (poison included).
    Queued,
    /// Resubmitted; outcome not known yet.
    Redriven,
    /// The resubmission succeeded.
    Resolved,
    /// Every state.
    All,
}

impl StateArg {
    fn wire(self) -> &'static str {
        match self {
            StateArg::Queued => "QUEUED",
            StateArg::Redriven => "REDRIVEN",
            StateArg::Resolved => "RESOLVED",
            StateArg::All => "ALL",
        }
    }
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// The queue.
    queue: String,
    #[command(flatten)]
    filter: FilterArgs,
    /// Which entries by state.
    #[arg(long, value_enum, default_value_t = StateArg::Queued)]
    state: StateArg,
    #[command(flatten)]
    poison: PoisonArgs,
    #[command(flatten)]
    paging: Paging,
    #[command(flatten)]
    remote: Remote,
}

#[derive(clap::Args)]
pub struct GetArgs {
    /// The entry's id (the id of the execution that first failed).
    entry_id: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(clap::Args)]
pub struct PurgeArgs {
    /// The queue.
    queue: String,
    #[command(flatten)]
    filter: FilterArgs,
    #[command(flatten)]
    poison: PoisonArgs,
    /// Really delete the entries (without it, only say how many would go).
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    remote: Remote,
}

/// How a redriven entry is resubmitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Retry the failed stage of the original execution (FAILED_ACTIONS).
    RetryStage,
    /// Start a new execution of the pipeline's latest version with the original input.
    NewExecution,
}

impl ModeArg {
    fn wire(self) -> &'static str {
        match self {
            ModeArg::RetryStage => redrive_engine::redrive::RedriveMode::RetryStage.as_str(),
            ModeArg::NewExecution => redrive_engine::redrive::RedriveMode::NewExecution.as_str(),
        }
    }
}

#[derive(clap::Args)]
#[command(group(ArgGroup::new("target").required(true).args(["queue", "prefix"])))]
pub struct RedriveArgs {
    /// The queue to redrive.
    queue: Option<String>,
    /// Redrive every queue whose name starts with PREFIX instead of one QUEUE.
    #[arg(long, value_name = "PREFIX", conflicts_with = "queue")]
    prefix: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Redrive at most N entries (oldest first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max: Option<u64>,
    /// How fast entries are resubmitted: N/s, N/m, N/h, or unlimited.
    #[arg(long, value_name = "RATE", default_value = "100/s", value_parser = parse_rate)]
    rate: String,
    /// How entries are resubmitted.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ModeArg::RetryStage)]
    mode: ModeArg,
    /// Show what would be redriven and skipped; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Redrive only this entry.
    #[arg(long, value_name = "ID", conflicts_with_all = ["filters", "older_than", "max"])]
    entry: Option<String>,
    /// With --entry: redrive it even if it is poison (the only way to).
    #[arg(long, requires = "entry")]
    force: bool,
    /// Do not wait for the redrive: print its run id and return.
    #[arg(long, conflicts_with = "dry_run")]
    no_wait: bool,
    #[command(flatten)]
    remote: Remote,
}

#[derive(clap::Args)]
pub struct ConfigureArgs {
    /// The queue (created if missing).
    queue: String,
    /// Redrives after which an entry is poison and parked (1 to 1000; queues start with 3).
    #[arg(long, value_name = "N", required = true, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_redrives: u32,
    #[command(flatten)]
    remote: Remote,
}

#[derive(clap::Args)]
pub struct RunsArgs {
    /// Only runs of this schedule.
    #[arg(long, value_name = "NAME")]
    schedule: Option<String>,
    /// Show at most N runs.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RUNS, value_parser = clap::value_parser!(u64).range(1..))]
    max_items: u64,
    /// Continue from the `nextToken` a previous listing printed.
    #[arg(long, value_name = "TOKEN")]
    starting_token: Option<String>,
    #[command(flatten)]
    remote: Remote,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// The run's id (printed by `redrive dlq redrive`, listed by `redrive dlq runs`).
    run_id: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(clap::Args)]
pub struct SchedulesArgs {
    #[command(flatten)]
    remote: Remote,
}

pub fn dlq(cmd: DlqCommand) -> u8 {
    match cmd {
        DlqCommand::List(a) => list(a),
        DlqCommand::Show(a) => show(a),
        DlqCommand::Get(a) => get(a),
        DlqCommand::Purge(a) => purge(a),
        DlqCommand::Redrive(a) => redrive(a),
        DlqCommand::Configure(a) => configure(a),
        DlqCommand::Runs(a) => runs(a),
        DlqCommand::Run(a) => show_run(a),
        DlqCommand::Schedules(a) => schedules(a),
    }
}

fn invalid(msg: &str) -> u8 {
    eprintln!("error: {msg}");
    exit::INVALID_INPUT
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

fn entries_word(n: u64) -> &'static str {
    if n == 1 { "entry" } else { "entries" }
}

// --- list ------------------------------------------------------------------------

fn list(args: ListArgs) -> u8 {
    let prefix = args.prefix;
    run(&args.remote, |c, out| async move {
        let paging = Paging { max_items: None, starting_token: None, page_size: 1000 };
        let v = collect_pages(c.server(), "queues", &paging, out, |t, n| {
            let (c, prefix) = (&c, &prefix);
            async move { c.list_dlq_queues(prefix.as_deref(), t.as_deref(), Some(n)).await }
        })
        .await?;
        if out == OutputFormat::Json {
            print_json(&v);
            return Ok(exit::SUCCEEDED);
        }
        let mut t = Table::new(&["QUEUE", "DEPTH", "POISON", "REDRIVEN", "OLDEST", "MAX-REDRIVES"]);
        for q in v["queues"].as_array().into_iter().flatten() {
            let oldest = match q.get("oldestAgeSeconds").and_then(Value::as_f64) {
                Some(s) => human_duration_ms((s.max(0.0) * 1000.0) as u64),
                None => age_of(q.get("oldestEnteredAt").and_then(Value::as_str)),
            };
            t.row(vec![
                str_of(q, "name").into(),
                text_of(q, "depth"),
                text_of(q, "poison"),
                text_of(q, "redriven"),
                oldest,
                text_of(q, "maxRedrives"),
            ]);
        }
        if t.is_empty() {
            match &prefix {
                Some(p) => println!("no dead-letter queues under prefix {p}"),
                None => println!("no dead-letter queues (a pipeline names one with `deadLetterQueue: NAME`)"),
            }
        } else {
            print!("{}", t.render());
        }
        Ok(exit::SUCCEEDED)
    })
}

// --- show ------------------------------------------------------------------------

/// `orders v2/Deploy/Check`.
fn source_cell(e: &Value) -> String {
    let s = &e["source"];
    format!("{} v{}/{}/{}", str_of(s, "pipelineName"), text_of(s, "pipelineVersion"), str_of(s, "stage"), str_of(s, "action"))
}

/// `Action.FAILED: message`, on one line, cut.
fn entry_error_cell(e: &Value) -> String {
    let err = &e["error"];
    let t = str_of(err, "exceptionType");
    match err.get("message").and_then(Value::as_str) {
        Some(m) if !m.trim().is_empty() => one_line(&format!("{t}: {m}"), ERROR_CELL),
        _ => t.to_string(),
    }
}

/// `1/3`, or `3/3 poison`.
fn redrives_cell(e: &Value) -> String {
    let mut s = format!("{}/{}", text_of(e, "redriveCount"), text_of(e, "maxRedrives"));
    if e.get("poison").and_then(Value::as_bool) == Some(true) {
        s.push_str(" poison");
    }
    s
}

fn show(args: ShowArgs) -> u8 {
    let filters = match args.filter.to_filters(args.poison.value()) {
        Ok(f) => f,
        Err(e) => return invalid(&e),
    };
    let (queue, state, paging) = (args.queue, args.state, args.paging);
    run(&args.remote, |c, out| async move {
        let count: Cell<Option<u64>> = Cell::new(None);
        let mut v = collect_pages(c.server(), "entries", &paging, out, |t, n| {
            let (c, queue, filters, count) = (&c, &queue, &filters, &count);
            async move {
                let page = c.list_dlq_entries(queue, filters, Some(state.wire()), t.as_deref(), Some(n)).await?;
                if count.get().is_none() {
                    count.set(page.get("count").and_then(Value::as_u64));
                }
                Ok(page)
            }
        })
        .await?;
        let count = count.get();
        if out == OutputFormat::Json {
            v["count"] = json!(count);
            print_json(&v);
            return Ok(exit::SUCCEEDED);
        }
        let entries: Vec<&Value> = v["entries"].as_array().into_iter().flatten().collect();
        let with_state = state != StateArg::Queued;
        let mut header = vec!["ENTRY"];
        if with_state {
            header.push("STATE");
        }
        header.extend(["EXECUTION", "SOURCE", "ERROR", "REDRIVES", "AGE"]);
        let mut t = Table::new(&header);
        for e in &entries {
            let mut row = vec![str_of(e, "entryId").to_string()];
            if with_state {
                row.push(str_of(e, "state").into());
            }
            row.extend([
                str_of(&e["source"], "executionId").to_string(),
                source_cell(e),
                entry_error_cell(e),
                redrives_cell(e),
                age_of(e.get("enteredAt").and_then(Value::as_str)),
            ]);
            t.row(row);
        }
        let which = match state {
            StateArg::Queued => "queued",
            StateArg::Redriven => "redriven, outcome not known yet",
            StateArg::Resolved => "resolved",
            StateArg::All => "any state",
        };
        // The queue's figures, as `dlq list` shows them.
        let q = c.get_dlq_queue(&queue).await?;
        println!(
            "queue {}: depth {}, {} poison, {} redriven, maxRedrives {}\n",
            str_of(&q, "name"),
            text_of(&q, "depth"),
            text_of(&q, "poison"),
            text_of(&q, "redriven"),
            text_of(&q, "maxRedrives")
        );
        if t.is_empty() {
            println!("no matching entries in {queue} ({which})");
            return Ok(exit::SUCCEEDED);
        }
        print!("{}", t.render());
        let shown = entries.len() as u64;
        let poison = entries.iter().filter(|e| e.get("poison").and_then(Value::as_bool) == Some(true)).count();
        let total = count.unwrap_or(shown).max(shown);
        let mut line = if total == shown {
            format!("{total} matching {} in {queue} ({which})", entries_word(total))
        } else {
            format!("{shown} of {total} matching entries in {queue} shown ({which})")
        };
        if poison > 0 && state != StateArg::Resolved {
            line.push_str(&format!(" ({poison} poison shown: only `--entry ID --force` redrives them)"));
        }
        println!("{line}");
        Ok(exit::SUCCEEDED)
    })
}

// --- get -------------------------------------------------------------------------

fn get(args: GetArgs) -> u8 {
    let id = args.entry_id;
    run(&args.remote, |c, out| async move {
        let v = c.get_dlq_entry(&id).await?;
        if out == OutputFormat::Json {
            print_json(&v);
            return Ok(exit::SUCCEEDED);
        }
        let poison = v.get("poison").and_then(Value::as_bool) == Some(true);
        println!(
            "# dead-letter entry {} in queue {}: {}, redriven {} of {} times{}",
            str_of(&v, "entryId"),
            str_of(&v, "queue"),
            str_of(&v, "state"),
            text_of(&v, "redriveCount"),
            text_of(&v, "maxRedrives"),
            if poison { " (poison: parked)" } else { "" }
        );
        if poison && str_of(&v, "state") == "QUEUED" {
            println!(
                "# only an explicit redrive resubmits it: redrive dlq redrive {} --entry {} --force",
                str_of(&v, "queue"),
                str_of(&v, "entryId")
            );
        }
        print!("{}", yaml_in_order(&v, ENTRY_ORDER));
        Ok(exit::SUCCEEDED)
    })
}

/// The order `dlq get` shows an entry's fields in (others follow).
const ENTRY_ORDER: &[&str] = &[
    "entryId",
    "queue",
    "state",
    "poison",
    "redriveCount",
    "maxRedrives",
    "source",
    "error",
    "firstFailureAt",
    "lastFailureAt",
    "enteredAt",
    "redrivenTo",
    "redrivenAt",
    "resolvedAt",
    "updatedAt",
    "input",
    "attempts",
];
const SOURCE_ORDER: &[&str] = &["pipelineName", "pipelineVersion", "executionId", "stage", "action"];

/// An object as YAML with its top-level keys in `order` (then the rest); `source`
/// in its own reading order.
fn yaml_in_order(v: &Value, order: &[&str]) -> String {
    let Some(m) = v.as_object() else { return to_yaml(v) };
    let mut keys: Vec<&str> = order.iter().copied().filter(|k| m.contains_key(*k)).collect();
    keys.extend(m.keys().map(String::as_str).filter(|k| !order.contains(k)));
    let mut out = String::new();
    for k in keys {
        let value = &m[k];
        if k == "source" && value.as_object().is_some_and(|s| !s.is_empty()) {
            out.push_str("source:\n");
            for line in yaml_in_order(value, SOURCE_ORDER).lines() {
                out.push_str(&format!("  {line}\n"));
            }
        } else {
            out.push_str(&to_yaml(&json!({ k: value })));
        }
    }
    out
}

// --- purge -----------------------------------------------------------------------

fn purge(args: PurgeArgs) -> u8 {
    let filters = match args.filter.to_filters(args.poison.value()) {
        Ok(f) => f,
        Err(e) => return invalid(&e),
    };
    let (queue, yes) = (args.queue, args.yes);
    run(&args.remote, |c, out| async move {
        if !yes {
            let page = c.list_dlq_entries(&queue, &filters, None, None, Some(1)).await?;
            let n = page.get("count").and_then(Value::as_u64).unwrap_or(0);
            if out == OutputFormat::Json {
                print_json(&json!({"queue": queue, "wouldPurge": n, "purged": 0}));
            } else {
                println!("would purge {n} {} from {queue}", entries_word(n));
            }
            eprintln!("error: nothing was purged: purging cannot be undone; pass --yes to purge the matching entries in the queue");
            return Ok(exit::INVALID_INPUT);
        }
        let v = c.purge_dlq(&queue, &filters).await?;
        if out == OutputFormat::Json {
            print_json(&v);
        } else {
            let n = u64_of(&v, "purged");
            println!("purged {n} {} from {queue}", entries_word(n));
        }
        Ok(exit::SUCCEEDED)
    })
}

// --- redrive ---------------------------------------------------------------------

fn redrive(args: RedriveArgs) -> u8 {
    let filters = match args.filter.to_filters(None) {
        Ok(f) => f,
        Err(e) => return invalid(&e),
    };
    let body = RedriveBody {
        filters,
        max_entries: args.max,
        rate: Some(args.rate.clone()),
        mode: Some(args.mode.wire().to_string()),
        dry_run: args.dry_run,
        entry_id: args.entry.clone(),
        force: args.force,
    };
    let (queue, prefix, no_wait, dry_run) = (args.queue, args.prefix, args.no_wait, args.dry_run);
    let target = match (&queue, &prefix) {
        (Some(q), _) => format!("queue {q}"),
        (None, Some(p)) => format!("queues under prefix {p}"),
        (None, None) => return invalid("give a QUEUE or --prefix PREFIX"),
    };
    run(&args.remote, |c, out| async move {
        let v = match (&queue, &prefix) {
            (Some(q), _) => c.redrive_queue(q, &body).await?,
            (None, Some(p)) => c.redrive_prefix(p, &body).await?,
            (None, None) => unreachable!("checked above"),
        };
        if dry_run {
            if out == OutputFormat::Json {
                print_json(&v);
            } else {
                print!("{}", plan_text(&v));
            }
            return Ok(exit::SUCCEEDED);
        }
        let id = str_of(&v, "runId").to_string();
        if no_wait {
            if out == OutputFormat::Json {
                print_json(&v);
            } else {
                println!("redrive run {id} started on {target}; it continues in the server");
                println!("follow it with: redrive dlq run {id}");
            }
            return Ok(exit::SUCCEEDED);
        }
        let fin = match follow(&c, v).await {
            Ok(Some(fin)) => fin,
            Ok(None) => {
                eprintln!("interrupted: redrive run {id} continues in the server; follow it with `redrive dlq run {id}`");
                return Ok(exit::INTERRUPTED);
            }
            Err(e) => {
                eprintln!("note: redrive run {id} was started and continues in the server; follow it with `redrive dlq run {id}`");
                return Err(e);
            }
        };
        let status = str_of(&fin, "status").to_string();
        if out == OutputFormat::Json {
            print_json(&fin);
        } else {
            println!("redrive run {id} on {target}: {status}{}", took(&fin).map(|t| format!(" in {t}")).unwrap_or_default());
            print!("{}", summary_text(&fin["summary"], Some(&target_hint(&queue))));
        }
        if status == "SUCCEEDED" {
            Ok(exit::SUCCEEDED)
        } else {
            let error = fin["summary"].get("error").and_then(Value::as_str).unwrap_or("no error recorded");
            eprintln!("error: redrive run {id} {status}: {error}");
            Ok(exit::ENGINE_ERROR)
        }
    })
}

/// `QUEUE` for hints, or a placeholder for prefix redrives.
fn target_hint(queue: &Option<String>) -> String {
    queue.clone().unwrap_or_else(|| "QUEUE".into())
}

/// Polls the run until it is no longer RUNNING, with a progress bar on a terminal.
/// `None` when interrupted (Ctrl-C): the run goes on in the server.
async fn follow(c: &Client, first: Value) -> Result<Option<Value>, ClientError> {
    let id = str_of(&first, "runId").to_string();
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        b.set_style(
            ProgressStyle::with_template("{spinner} redrive [{bar:30}] {pos}/{len} {msg}").expect("template").progress_chars("=> "),
        );
        b.enable_steady_tick(Duration::from_millis(100));
        b
    });
    let mut v = first;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if let Some(b) = &bar {
            let s = &v["summary"];
            b.set_length(u64_of(s, "matched"));
            b.set_position(u64_of(s, "processed"));
            b.set_message(format!("redriven {}, skipped {}", u64_of(s, "redriven"), u64_of(s, "skipped")));
        }
        if str_of(&v, "status") != "RUNNING" {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = &mut ctrl_c => {
                if let Some(b) = &bar { b.abandon(); }
                return Ok(None);
            }
        }
        v = match c.get_redrive_run(&id).await {
            Ok(v) => v,
            Err(e) => {
                if let Some(b) = &bar {
                    b.abandon();
                }
                return Err(e);
            }
        };
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    Ok(Some(v))
}

/// How long a finished run took.
fn took(run: &Value) -> Option<String> {
    let start = parse_timestamp_ms(run.get("startedAt")?.as_str()?)?;
    let end = parse_timestamp_ms(run.get("finishedAt")?.as_str()?)?;
    Some(human_duration_ms(end.saturating_sub(start).max(0) as u64))
}

/// `redriven N, skipped M (poison: a, refused: b), parked P`, per-queue lines when
/// more than one queue, the first skipped entries, and what to do about parked ones.
fn summary_text(s: &Value, queue_hint: Option<&str>) -> String {
    let mut out = String::new();
    let reasons: Vec<String> = s
        .get("skippedByReason")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, n)| format!("{k}: {}", n.as_u64().unwrap_or(0)))
        .collect();
    out.push_str(&format!(
        "redriven {}, skipped {}{}, parked {}\n",
        u64_of(s, "redriven"),
        u64_of(s, "skipped"),
        if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
        u64_of(s, "parked")
    ));
    if let Some(queues) = s.get("queues").and_then(Value::as_object).filter(|q| q.len() > 1) {
        for (name, c) in queues {
            out.push_str(&format!("  {name}: redriven {}, skipped {}\n", u64_of(c, "redriven"), u64_of(c, "skipped")));
        }
    }
    let skipped: Vec<&Value> =
        s.get("outcomes").and_then(Value::as_array).into_iter().flatten().filter(|o| str_of(o, "outcome") == "skipped").collect();
    for o in skipped.iter().take(SKIPPED_SHOWN) {
        out.push_str(&format!("  skipped {} ({}): {}\n", str_of(o, "entryId"), str_of(o, "queue"), str_of(o, "reason")));
    }
    if skipped.len() > SKIPPED_SHOWN {
        out.push_str(&format!("  … {} more skipped; see `redrive dlq run ID --output json`\n", skipped.len() - SKIPPED_SHOWN));
    }
    let by_reason = |code: &str| s.get("skippedByReason").and_then(|r| r.get(code)).and_then(Value::as_u64).unwrap_or(0);
    if by_reason("refused") + by_reason("execution-gone") > 0 {
        out.push_str(
            "entries whose stage cannot be retried (superseded, stopped or gone executions) stay queued; \
`--mode new-execution` resubmits them as new executions\n",
        );
    }
    let parked = u64_of(s, "parked");
    if parked > 0 {
        let q = queue_hint.unwrap_or("QUEUE");
        out.push_str(&format!(
            "{parked} poison {} left parked (redriven maxRedrives times): redrive one with `redrive dlq redrive {q} --entry ID --force`, \
or raise the limit with `redrive dlq configure {q} --max-redrives N`\n",
            entries_word(parked)
        ));
    }
    out
}

/// The dry-run plan: a table and the counts.
fn plan_text(v: &Value) -> String {
    let mut out = String::new();
    let mut t = Table::new(&["ENTRY", "QUEUE", "EXECUTION", "STAGE/ACTION", "ERROR", "WOULD", "DETAIL"]);
    let items: Vec<&Value> = v["items"].as_array().into_iter().flatten().collect();
    for i in &items {
        t.row(vec![
            str_of(i, "entryId").into(),
            str_of(i, "queue").into(),
            str_of(i, "executionId").into(),
            format!("{}/{}", str_of(i, "stage"), str_of(i, "action")),
            str_of(i, "exceptionType").into(),
            str_of(i, "would").into(),
            one_line(str_of(i, "detail"), 120),
        ]);
    }
    if !t.is_empty() {
        out.push_str(&t.render());
    }
    let matched = u64_of(v, "matched");
    if (items.len() as u64) < matched {
        out.push_str(&format!("(the first {} of {matched} entries are listed)\n", items.len()));
    }
    out.push_str(&format!(
        "dry run: {} would be redriven, {} skipped, {} parked (poison); nothing was changed\n",
        u64_of(v, "wouldRedrive"),
        u64_of(v, "wouldSkip"),
        u64_of(v, "parked")
    ));
    out
}

// --- configure -------------------------------------------------------------------

fn configure(args: ConfigureArgs) -> u8 {
    let (queue, max) = (args.queue, args.max_redrives);
    run(&args.remote, |c, out| async move {
        let v = c.configure_dlq_queue(&queue, max).await?;
        if out == OutputFormat::Json {
            print_json(&v);
            return Ok(exit::SUCCEEDED);
        }
        let poison = u64_of(&v, "poison");
        println!(
            "queue {}: maxRedrives {} (depth {}, {poison} poison)",
            str_of(&v, "name"),
            text_of(&v, "maxRedrives"),
            text_of(&v, "depth")
        );
        if poison > 0 {
            println!(
                "{poison} {} redriven {} or more times {} parked: bulk and scheduled redrives skip them; `--entry ID --force` redrives one",
                entries_word(poison),
                text_of(&v, "maxRedrives"),
                if poison == 1 { "is" } else { "are" }
            );
        }
        Ok(exit::SUCCEEDED)
    })
}

// --- runs, run, schedules ----------------------------------------------------------

/// The stored request (object, or a JSON string of one).
fn request_of(run: &Value) -> Value {
    match run.get("request") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    }
}

/// `queue retry-orders; type=…, source=…, older than 10m, at most 5, rate 100/s, retry-stage`.
fn request_text(r: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    let scope = &r["scope"];
    if let Some(q) = scope.get("queue").and_then(Value::as_str) {
        parts.push(format!("queue {q}"));
    } else if let Some(p) = scope.get("prefix").and_then(Value::as_str) {
        parts.push(format!("queues under prefix {p}"));
    }
    if let Some(id) = r.get("entryId").and_then(Value::as_str) {
        parts.push(format!("entry {id}{}", if r.get("force").and_then(Value::as_bool) == Some(true) { " (forced)" } else { "" }));
    }
    if let Some(t) = r.get("exceptionType").and_then(Value::as_str) {
        parts.push(format!("type={t}"));
    }
    if let Some(p) = r.get("pipelineName").and_then(Value::as_str) {
        parts.push(format!("source={p}"));
    }
    if let Some(ms) = r.get("olderThanMs").and_then(Value::as_u64) {
        parts.push(format!("older than {}", human_duration_ms(ms)));
    }
    if let Some(n) = r.get("maxEntries").and_then(Value::as_u64) {
        parts.push(format!("at most {n}"));
    }
    if let Some(rate) = r.get("rate") {
        match rate.get("perSecond").and_then(Value::as_f64) {
            Some(p) => parts.push(format!("rate {p}/s")),
            None if rate.is_object() => parts.push("rate unlimited".into()),
            None => {}
        }
    }
    if let Some(m) = r.get("mode").and_then(Value::as_str) {
        parts.push(format!("mode {m}"));
    }
    if parts.is_empty() { "-".into() } else { parts.join(", ") }
}

fn runs(args: RunsArgs) -> u8 {
    let schedule = args.schedule;
    let paging =
        Paging { max_items: Some(args.max_items), starting_token: args.starting_token, page_size: args.max_items.min(1000) as usize };
    run(&args.remote, |c, out| async move {
        let v = collect_pages(c.server(), "runs", &paging, out, |t, n| {
            let (c, schedule) = (&c, &schedule);
            async move { c.list_redrive_runs(schedule.as_deref(), t.as_deref(), Some(n)).await }
        })
        .await?;
        if out == OutputFormat::Json {
            print_json(&v);
            return Ok(exit::SUCCEEDED);
        }
        let mut t = Table::new(&["RUN", "STARTED", "STATUS", "SCHEDULE", "MATCHED", "REDRIVEN", "SKIPPED", "PARKED"]);
        for r in v["runs"].as_array().into_iter().flatten() {
            let s = &r["summary"];
            t.row(vec![
                str_of(r, "runId").into(),
                str_of(r, "startedAt").into(),
                str_of(r, "status").into(),
                r.get("schedule").and_then(Value::as_str).unwrap_or("(manual)").into(),
                u64_of(s, "matched").to_string(),
                u64_of(s, "redriven").to_string(),
                u64_of(s, "skipped").to_string(),
                u64_of(s, "parked").to_string(),
            ]);
        }
        if t.is_empty() {
            println!("no redrive runs{}", schedule.map(|s| format!(" of schedule {s}")).unwrap_or_default());
        } else {
            print!("{}", t.render());
        }
        Ok(exit::SUCCEEDED)
    })
}

fn show_run(args: RunArgs) -> u8 {
    let id = args.run_id;
    run(&args.remote, |c, out| async move {
        let v = c.get_redrive_run(&id).await?;
        if out == OutputFormat::Json {
            print_json(&v);
            return Ok(exit::SUCCEEDED);
        }
        print!("{}", run_text(&v));
        Ok(exit::SUCCEEDED)
    })
}

fn run_text(v: &Value) -> String {
    let request = request_of(v);
    let s = &v["summary"];
    let mut out = format!(
        "redrive run {} ({})\nstatus:   {}\nstarted:  {}\n",
        str_of(v, "runId"),
        match v.get("schedule").and_then(Value::as_str) {
            Some(name) => format!("schedule {name}"),
            None => "manual".into(),
        },
        str_of(v, "status"),
        str_of(v, "startedAt")
    );
    if let Some(end) = v.get("finishedAt").and_then(Value::as_str) {
        out.push_str(&format!("finished: {end}{}\n", took(v).map(|t| format!(" (took {t})")).unwrap_or_default()));
    }
    out.push_str(&format!("request:  {}\n", request_text(&request)));
    out.push_str(&format!("matched {}, processed {}\n", u64_of(s, "matched"), u64_of(s, "processed")));
    let queue = request["scope"].get("queue").and_then(Value::as_str);
    out.push_str(&summary_text_without_outcomes(s, queue));
    if let Some(e) = s.get("error").and_then(Value::as_str) {
        out.push_str(&format!("error: {e}\n"));
    }
    if let Some(queues) = s.get("queues").and_then(Value::as_object).filter(|q| !q.is_empty()) {
        let mut t = Table::new(&["QUEUE", "REDRIVEN", "SKIPPED"]);
        for (name, c) in queues {
            t.row(vec![name.clone(), u64_of(c, "redriven").to_string(), u64_of(c, "skipped").to_string()]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    let outcomes: Vec<&Value> = s.get("outcomes").and_then(Value::as_array).into_iter().flatten().collect();
    if !outcomes.is_empty() {
        let mut t = Table::new(&["ENTRY", "QUEUE", "OUTCOME", "EXECUTION / REASON"]);
        for o in &outcomes {
            let detail = match o.get("executionId").and_then(Value::as_str) {
                Some(e) => e.to_string(),
                None => one_line(str_of(o, "reason"), 120),
            };
            t.row(vec![str_of(o, "entryId").into(), str_of(o, "queue").into(), str_of(o, "outcome").into(), detail]);
        }
        out.push('\n');
        out.push_str(&t.render());
        let processed = u64_of(s, "processed");
        if (outcomes.len() as u64) < processed {
            out.push_str(&format!("(the first {} of {processed} outcomes are kept)\n", outcomes.len()));
        }
    }
    out
}

/// The summary line and the parked hint (outcomes are tabled separately).
fn summary_text_without_outcomes(s: &Value, queue: Option<&str>) -> String {
    let mut trimmed = s.clone();
    if let Some(m) = trimmed.as_object_mut() {
        m.remove("outcomes");
    }
    summary_text(&trimmed, queue)
}

fn schedules(args: SchedulesArgs) -> u8 {
    run(&args.remote, |c, out| async move {
        let v = c.list_redrive_schedules().await?;
        if out == OutputFormat::Json {
            print_json(&v);
            return Ok(exit::SUCCEEDED);
        }
        let mut t = Table::new(&["NAME", "EVERY", "PREFIX", "NEXT-DUE", "LAST-RUN", "OPTIONS"]);
        for s in v["schedules"].as_array().into_iter().flatten() {
            let next = match s.get("nextDueAt").and_then(Value::as_str) {
                Some(at) => match parse_timestamp_ms(at) {
                    Some(ms) if ms > now_ms() => format!("{at} (in {})", human_duration_ms((ms - now_ms()) as u64)),
                    Some(_) => format!("{at} (due)"),
                    None => at.to_string(),
                },
                None => "-".into(),
            };
            let last = match s.get("lastRun").filter(|r| r.is_object()) {
                Some(r) => format!("{}, {} ago", str_of(r, "status"), age_of(r.get("startedAt").and_then(Value::as_str))),
                None => "never".into(),
            };
            let mut request = s.get("request").cloned().unwrap_or(Value::Null);
            if let Some(m) = request.as_object_mut() {
                m.remove("scope");
            }
            t.row(vec![
                str_of(s, "name").into(),
                str_of(s, "every").into(),
                str_of(s, "queuePrefix").into(),
                next,
                last,
                request_text(&request),
            ]);
        }
        if t.is_empty() {
            println!("no redrive schedules (configure them under redriveSchedules in the file of `redrive server --config FILE`)");
        } else {
            let n = v["schedules"].as_array().map_or(0, Vec::len);
            print!("{}", t.render());
            println!("{n} schedule{}", plural(n));
        }
        Ok(exit::SUCCEEDED)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_refuse_repeats_and_unknown_keys() {
        assert_eq!(parse_filter("type=Step.THROTTLING").unwrap(), (FilterKey::Type, "Step.THROTTLING".into()));
        assert_eq!(parse_filter("source=orders").unwrap(), (FilterKey::Source, "orders".into()));
        let e = parse_filter("queue=x").unwrap_err();
        assert!(e.contains("unknown filter key \"queue\"") && e.contains("type") && e.contains("source"), "{e}");
        assert!(parse_filter("type").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_filter("type=").unwrap_err().contains("needs a value"));
        let args = FilterArgs { filters: vec![(FilterKey::Type, "A".into()), (FilterKey::Type, "B".into())], older_than: None };
        assert!(args.to_filters(None).unwrap_err().contains("given twice"));
        let args =
            FilterArgs { filters: vec![(FilterKey::Type, "A".into()), (FilterKey::Source, "p".into())], older_than: Some("10m".into()) };
        let f = args.to_filters(Some(true)).unwrap();
        assert_eq!(
            f,
            DlqFilters { exception_type: Some("A".into()), source: Some("p".into()), older_than: Some("10m".into()), poison: Some(true) }
        );
    }

    #[test]
    fn rates_and_durations_are_checked_locally() {
        assert!(parse_rate("50/s").is_ok() && parse_rate("unlimited").is_ok());
        assert!(parse_rate("fast").unwrap_err().contains("N/s"));
        assert!(parse_older_than("1h30m").is_ok());
        assert!(parse_older_than("10x").unwrap_err().contains("not a duration"));
    }

    #[test]
    fn summaries_read_well() {
        let s = json!({"matched": 4, "processed": 4, "redriven": 2, "skipped": 2, "skippedByReason": {"poison": 1, "refused": 1},
            "parked": 3, "queues": {"a": {"redriven": 2, "skipped": 0}, "b": {"redriven": 0, "skipped": 2}},
            "outcomes": [{"entryId": "e1", "queue": "b", "outcome": "skipped", "reason": "why"}]});
        let t = summary_text(&s, Some("a"));
        assert!(t.starts_with("redriven 2, skipped 2 (poison: 1, refused: 1), parked 3\n"), "{t}");
        assert!(t.contains("  b: redriven 0, skipped 2\n") && t.contains("skipped e1 (b): why") && t.contains("--entry ID --force"), "{t}");
        let r = json!({"scope": {"prefix": "retry-"}, "exceptionType": "X", "olderThanMs": 600000, "rate": {"perSecond": 50.0}, "mode": "retry-stage", "force": false});
        assert_eq!(request_text(&r), "queues under prefix retry-, type=X, older than 10m00s, rate 50/s, mode retry-stage");
    }
}
