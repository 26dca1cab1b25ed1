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
use crate::present::{Table, age_of, now_ms, one_line, parse_timestamp_ms, to_yaml};
use crate::remote::{ERROR_CELL, Paging, Remote, collect_pages, print_json, run};
use crate::{OutputFormat, exit};
use clap::{ArgGroup, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use redrive_core::time::{human_duration_ms, parse_duration_ms};
use redrive_engine::redrive::Rate;
use redrive_wire as w;
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
    fn wire(self) -> w::RedriveMode {
        match self {
            ModeArg::RetryStage => w::RedriveMode::RetryStage,
            ModeArg::NewExecution => w::RedriveMode::NewExecution,
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
    /// A JSON merge patch (RFC 7396) for the input each entry is resubmitted
    /// with (retry-stage: the execution's input, recorded with it).
    #[arg(long, value_name = "JSON")]
    input_patch: Option<String>,
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

fn entries_word(n: u64) -> &'static str {
    if n == 1 { "entry" } else { "entries" }
}

// --- list ------------------------------------------------------------------------

fn list(args: ListArgs) -> u8 {
    let prefix = args.prefix;
    run(&args.remote, |c, out| async move {
        let paging = Paging { max_items: None, starting_token: None, page_size: 1000 };
        let v: w::QueueList = collect_pages(c.server(), &paging, out, |t, n| {
            let (c, prefix) = (&c, &prefix);
            async move { c.list_dlq_queues(prefix.as_deref(), t.as_deref(), Some(n)).await }
        })
        .await?;
        if out == OutputFormat::Json {
            print_json(&v);
            return Ok(exit::SUCCEEDED);
        }
        let mut t = Table::new(&["QUEUE", "DEPTH", "POISON", "REDRIVEN", "OLDEST", "MAX-REDRIVES"]);
        for q in &v.queues {
            let oldest = match q.oldest_age_seconds {
                Some(s) => human_duration_ms((s.max(0.0) * 1000.0) as u64),
                None => age_of(q.oldest_entered_at.as_deref()),
            };
            t.row(vec![
                q.name.clone(),
                q.depth.to_string(),
                q.poison.to_string(),
                q.redriven.to_string(),
                oldest,
                q.max_redrives.to_string(),
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
fn source_cell(e: &w::Entry) -> String {
    let s = &e.source;
    let version = s.pipeline_version.map_or("-".to_string(), |v| v.to_string());
    format!("{} v{version}/{}/{}", s.pipeline_name, s.stage, s.action)
}

fn entry_error_cell(e: &w::Entry) -> String {
    let (t, m) = (&e.error.exception_type, &e.error.message);
    if m.trim().is_empty() { t.clone() } else { one_line(&format!("{t}: {m}"), ERROR_CELL) }
}

fn redrives_cell(e: &w::Entry) -> String {
    let mut s = format!("{}/{}", e.redrive_count, e.max_redrives);
    if e.poison {
        s.push_str(" poison");
    }
    s
}

/// The entries table of `dlq show` (a STATE column unless only queued ones are shown).
fn entries_table(entries: &[w::Entry], with_state: bool) -> Table {
    let mut header = vec!["ENTRY"];
    if with_state {
        header.push("STATE");
    }
    header.extend(["EXECUTION", "SOURCE", "ERROR", "REDRIVES", "AGE"]);
    let mut t = Table::new(&header);
    for e in entries {
        let mut row = vec![e.entry_id.clone()];
        if with_state {
            row.push(e.state.to_string());
        }
        row.extend([e.source.execution_id.clone(), source_cell(e), entry_error_cell(e), redrives_cell(e), age_of(Some(&e.entered_at))]);
        t.row(row);
    }
    t
}

/// `N matching entries in Q (which)`, or `N of M … shown`, with a word on poison ones.
fn entries_footer(entries: &[w::Entry], count: u64, queue: &str, state: StateArg, which: &str) -> String {
    let shown = entries.len() as u64;
    let poison = entries.iter().filter(|e| e.poison).count();
    let total = count.max(shown);
    let mut line = if total == shown {
        format!("{total} matching {} in {queue} ({which})", entries_word(total))
    } else {
        format!("{shown} of {total} matching entries in {queue} shown ({which})")
    };
    if poison > 0 && state != StateArg::Resolved {
        line.push_str(&format!(" ({poison} poison shown: only `--entry ID --force` redrives them)"));
    }
    line
}

fn show(args: ShowArgs) -> u8 {
    let filters = match args.filter.to_filters(args.poison.value()) {
        Ok(f) => f,
        Err(e) => return invalid(&e),
    };
    let (queue, state, paging) = (args.queue, args.state, args.paging);
    run(&args.remote, |c, out| async move {
        let count: Cell<Option<u64>> = Cell::new(None);
        let mut v: w::EntryList = collect_pages(c.server(), &paging, out, |t, n| {
            let (c, queue, filters, count) = (&c, &queue, &filters, &count);
            async move {
                let page = c.list_dlq_entries(queue, filters, Some(state.wire()), t.as_deref(), Some(n)).await?;
                if count.get().is_none() {
                    count.set(Some(page.count));
                }
                Ok(page)
            }
        })
        .await?;
        v.count = count.get().unwrap_or(0);
        if out == OutputFormat::Json {
            print_json(&v);
            return Ok(exit::SUCCEEDED);
        }
        let t = entries_table(&v.entries, state != StateArg::Queued);
        let which = match state {
            StateArg::Queued => "queued",
            StateArg::Redriven => "redriven, outcome not known yet",
            StateArg::Resolved => "resolved",
            StateArg::All => "any state",
        };
        // The queue's figures, as `dlq list` shows them.
        let q = c.get_dlq_queue(&queue).await?;
        println!("queue {}: depth {}, {} poison, {} redriven, maxRedrives {}\n", q.name, q.depth, q.poison, q.redriven, q.max_redrives);
        if t.is_empty() {
            println!("no matching entries in {queue} ({which})");
            return Ok(exit::SUCCEEDED);
        }
        print!("{}", t.render());
        println!("{}", entries_footer(&v.entries, v.count, &queue, state, which));
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
        println!(
            "# dead-letter entry {} in queue {}: {}, redriven {} of {} times{}",
            v.entry_id,
            v.queue,
            v.state,
            v.redrive_count,
            v.max_redrives,
            if v.poison { " (poison: parked)" } else { "" }
        );
        if v.poison && v.state == w::EntryState::Queued {
            println!("# only an explicit redrive resubmits it: redrive dlq redrive {} --entry {} --force", v.queue, v.entry_id);
        }
        let doc = serde_json::to_value(&v).expect("wire types serialize");
        print!("{}", yaml_in_order(&doc, ENTRY_ORDER));
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
            let n = page.count;
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
            let n = v.purged;
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
    let input_patch = match args.input_patch.as_deref().map(serde_json::from_str::<serde_json::Value>).transpose() {
        Ok(p) => p,
        Err(e) => return invalid(&format!("--input-patch is not JSON: {e}")),
    };
    let body = RedriveBody {
        input_patch,
        filters,
        max_entries: args.max,
        rate: Some(args.rate.clone()),
        mode: Some(args.mode.wire()),
        dry_run: args.dry_run,
        entry_id: args.entry.clone(),
        force: args.force,
    };
    let (queue, prefix, no_wait) = (args.queue, args.prefix, args.no_wait);
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
        let run = match v {
            w::RedriveResponse::Plan(plan) => {
                if out == OutputFormat::Json {
                    print_json(&plan);
                } else {
                    print!("{}", plan_text(&plan));
                }
                return Ok(exit::SUCCEEDED);
            }
            w::RedriveResponse::Run(run) => *run,
        };
        let id = run.run_id.clone();
        if no_wait {
            if out == OutputFormat::Json {
                print_json(&run);
            } else {
                println!("redrive run {id} started on {target}; it continues in the server");
                println!("follow it with: redrive dlq run {id}");
            }
            return Ok(exit::SUCCEEDED);
        }
        let fin = match follow(&c, run).await {
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
        if out == OutputFormat::Json {
            print_json(&fin);
        } else {
            println!("redrive run {id} on {target}: {}{}", fin.status, took(&fin).map(|t| format!(" in {t}")).unwrap_or_default());
            print!("{}", summary_text(&fin.summary, Some(&target_hint(&queue))));
        }
        if fin.status == w::RunStatus::Succeeded {
            Ok(exit::SUCCEEDED)
        } else {
            let error = fin.summary.error.as_deref().unwrap_or("no error recorded");
            eprintln!("error: redrive run {id} {}: {error}", fin.status);
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
async fn follow(c: &Client, first: w::Run) -> Result<Option<w::Run>, ClientError> {
    let id = first.run_id.clone();
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
            let s = &v.summary;
            b.set_length(s.matched);
            b.set_position(s.processed);
            b.set_message(format!("redriven {}, skipped {}", s.redriven, s.skipped));
        }
        if v.status != w::RunStatus::Running {
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
fn took(run: &w::Run) -> Option<String> {
    let start = parse_timestamp_ms(&run.started_at)?;
    let end = parse_timestamp_ms(run.finished_at.as_deref()?)?;
    Some(human_duration_ms(end.saturating_sub(start).max(0) as u64))
}

/// `redriven N, skipped M (poison: a, refused: b), parked P`, per-queue lines when
/// more than one queue, the first skipped entries, and what to do about parked ones.
fn summary_text(s: &w::RunSummary, queue_hint: Option<&str>) -> String {
    let reasons: Vec<String> = s.skipped_by_reason.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    let mut out = format!(
        "redriven {}, skipped {}{}, parked {}\n",
        s.redriven,
        s.skipped,
        if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join(", ")) },
        s.parked
    );
    if s.queues.len() > 1 {
        for (name, c) in &s.queues {
            out.push_str(&format!("  {name}: redriven {}, skipped {}\n", c.redriven, c.skipped));
        }
    }
    out.push_str(&skipped_text(&s.outcomes));
    let by_reason = |code: &str| s.skipped_by_reason.get(code).copied().unwrap_or(0);
    if by_reason("refused") + by_reason("execution-gone") > 0 {
        out.push_str(
            "entries whose stage cannot be retried (superseded, stopped or gone executions) stay queued; \
`--mode new-execution` resubmits them as new executions\n",
        );
    }
    if s.parked > 0 {
        let (parked, q) = (s.parked, queue_hint.unwrap_or("QUEUE"));
        out.push_str(&format!(
            "{parked} poison {} left parked (redriven maxRedrives times): redrive one with `redrive dlq redrive {q} --entry ID --force`, \
or raise the limit with `redrive dlq configure {q} --max-redrives N`\n",
            entries_word(parked)
        ));
    }
    out
}

/// The first skipped entries of a run, and how many more there are.
fn skipped_text(outcomes: &[w::EntryOutcome]) -> String {
    let skipped: Vec<&w::EntryOutcome> = outcomes.iter().filter(|o| o.outcome == w::EntryOutcomeKind::Skipped).collect();
    let mut out = String::new();
    for o in skipped.iter().take(SKIPPED_SHOWN) {
        out.push_str(&format!("  skipped {} ({}): {}\n", o.entry_id, o.queue, o.reason.as_deref().unwrap_or("-")));
    }
    if skipped.len() > SKIPPED_SHOWN {
        out.push_str(&format!("  … {} more skipped; see `redrive dlq run ID --output json`\n", skipped.len() - SKIPPED_SHOWN));
    }
    out
}

fn plan_text(v: &w::Plan) -> String {
    let mut out = String::new();
    let mut t = Table::new(&["ENTRY", "QUEUE", "EXECUTION", "STAGE/ACTION", "ERROR", "WOULD", "DETAIL"]);
    for i in &v.items {
        t.row(vec![
            i.entry_id.clone(),
            i.queue.clone(),
            i.execution_id.clone(),
            format!("{}/{}", i.stage, i.action),
            i.exception_type.clone(),
            i.would.to_string(),
            one_line(&i.detail, 120),
        ]);
    }
    if !t.is_empty() {
        out.push_str(&t.render());
    }
    if (v.items.len() as u64) < v.matched {
        out.push_str(&format!("(the first {} of {} entries are listed)\n", v.items.len(), v.matched));
    }
    out.push_str(&format!(
        "dry run: {} would be redriven, {} skipped, {} parked (poison); nothing was changed\n",
        v.would_redrive, v.would_skip, v.parked
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
        let poison = v.poison;
        println!("queue {}: maxRedrives {} (depth {}, {poison} poison)", v.name, v.max_redrives, v.depth);
        if poison > 0 {
            println!(
                "{poison} {} redriven {} or more times {} parked: bulk and scheduled redrives skip them; `--entry ID --force` redrives one",
                entries_word(poison),
                v.max_redrives,
                if poison == 1 { "is" } else { "are" }
            );
        }
        Ok(exit::SUCCEEDED)
    })
}

// --- runs, run, schedules ----------------------------------------------------------

/// The stored request (object, or a JSON string of one).
/// A run's request in words: scope, entry, filters, limits, rate and mode
/// (`with_scope: false` leaves the scope out).
fn request_text(r: &w::RunRequest, with_scope: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    match (&r.scope.queue, &r.scope.prefix) {
        _ if !with_scope => {}
        (Some(q), _) => parts.push(format!("queue {q}")),
        (None, Some(p)) => parts.push(format!("queues under prefix {p}")),
        (None, None) => {}
    }
    if let Some(id) = &r.entry_id {
        parts.push(format!("entry {id}{}", if r.force { " (forced)" } else { "" }));
    }
    if let Some(t) = &r.exception_type {
        parts.push(format!("type={t}"));
    }
    if let Some(p) = &r.pipeline_name {
        parts.push(format!("source={p}"));
    }
    if let Some(ms) = r.older_than_ms {
        parts.push(format!("older than {}", human_duration_ms(ms)));
    }
    if let Some(n) = r.max_entries {
        parts.push(format!("at most {n}"));
    }
    match r.rate.per_second {
        Some(p) => parts.push(format!("rate {p}/s")),
        None => parts.push("rate unlimited".into()),
    }
    parts.push(format!("mode {}", r.mode));
    parts.join(", ")
}

fn runs(args: RunsArgs) -> u8 {
    let schedule = args.schedule;
    let paging =
        Paging { max_items: Some(args.max_items), starting_token: args.starting_token, page_size: args.max_items.min(1000) as usize };
    run(&args.remote, |c, out| async move {
        let v: w::RunList = collect_pages(c.server(), &paging, out, |t, n| {
            let (c, schedule) = (&c, &schedule);
            async move { c.list_redrive_runs(schedule.as_deref(), t.as_deref(), Some(n)).await }
        })
        .await?;
        if out == OutputFormat::Json {
            print_json(&v);
            return Ok(exit::SUCCEEDED);
        }
        let mut t = Table::new(&["RUN", "STARTED", "STATUS", "SCHEDULE", "MATCHED", "REDRIVEN", "SKIPPED", "PARKED"]);
        for r in &v.runs {
            let s = &r.summary;
            t.row(vec![
                r.run_id.clone(),
                r.started_at.clone(),
                r.status.to_string(),
                r.schedule.clone().unwrap_or_else(|| "(manual)".into()),
                s.matched.to_string(),
                s.redriven.to_string(),
                s.skipped.to_string(),
                s.parked.to_string(),
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

fn run_text(v: &w::Run) -> String {
    let s = &v.summary;
    let mut out = format!(
        "redrive run {} ({})\nstatus:   {}\nstarted:  {}\n",
        v.run_id,
        match &v.schedule {
            Some(name) => format!("schedule {name}"),
            None => "manual".into(),
        },
        v.status,
        v.started_at
    );
    if let Some(end) = &v.finished_at {
        out.push_str(&format!("finished: {end}{}\n", took(v).map(|t| format!(" (took {t})")).unwrap_or_default()));
    }
    out.push_str(&format!("request:  {}\n", request_text(&v.request, true)));
    out.push_str(&format!("matched {}, processed {}\n", s.matched, s.processed));
    let without_outcomes = w::RunSummary { outcomes: Vec::new(), ..s.clone() };
    out.push_str(&summary_text(&without_outcomes, v.request.scope.queue.as_deref()));
    if let Some(e) = &s.error {
        out.push_str(&format!("error: {e}\n"));
    }
    if !s.queues.is_empty() {
        let mut t = Table::new(&["QUEUE", "REDRIVEN", "SKIPPED"]);
        for (name, c) in &s.queues {
            t.row(vec![name.clone(), c.redriven.to_string(), c.skipped.to_string()]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    out.push_str(&outcomes_text(&s.outcomes, s.processed));
    out
}

/// The outcomes a run kept, one row each.
fn outcomes_text(outcomes: &[w::EntryOutcome], processed: u64) -> String {
    if outcomes.is_empty() {
        return String::new();
    }
    let mut t = Table::new(&["ENTRY", "QUEUE", "OUTCOME", "EXECUTION / REASON"]);
    for o in outcomes {
        let detail = match &o.execution_id {
            Some(e) => e.clone(),
            None => one_line(o.reason.as_deref().unwrap_or("-"), 120),
        };
        t.row(vec![o.entry_id.clone(), o.queue.clone(), o.outcome.to_string(), detail]);
    }
    let mut out = format!("\n{}", t.render());
    if (outcomes.len() as u64) < processed {
        out.push_str(&format!("(the first {} of {processed} outcomes are kept)\n", outcomes.len()));
    }
    out
}

/// When a schedule runs next: `T (in 5m00s)`, or `T (due)`.
fn next_due(at: &str) -> String {
    match parse_timestamp_ms(at) {
        Some(ms) if ms > now_ms() => format!("{at} (in {})", human_duration_ms((ms - now_ms()) as u64)),
        Some(_) => format!("{at} (due)"),
        None => at.to_string(),
    }
}

fn schedules(args: SchedulesArgs) -> u8 {
    run(&args.remote, |c, out| async move {
        let v = c.list_redrive_schedules().await?;
        if out == OutputFormat::Json {
            print_json(&v);
            return Ok(exit::SUCCEEDED);
        }
        let mut t = Table::new(&["NAME", "EVERY", "PREFIX", "NEXT-DUE", "LAST-RUN", "OPTIONS"]);
        for s in &v.schedules {
            let last = match &s.last_run {
                Some(r) => format!("{}, {} ago", r.status, age_of(Some(&r.started_at))),
                None => "never".into(),
            };
            t.row(vec![
                s.name.clone(),
                s.every.clone(),
                s.queue_prefix.clone(),
                next_due(&s.next_due_at),
                last,
                request_text(&s.request, false),
            ]);
        }
        if t.is_empty() {
            println!("no redrive schedules (configure them under redriveSchedules in the file of `redrive server --config FILE`)");
        } else {
            let n = v.schedules.len();
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
        let s: w::RunSummary = serde_json::from_value(
            json!({"matched": 4, "processed": 4, "redriven": 2, "skipped": 2, "skippedByReason": {"poison": 1, "refused": 1},
            "parked": 3, "queues": {"a": {"redriven": 2, "skipped": 0}, "b": {"redriven": 0, "skipped": 2}},
            "outcomes": [{"entryId": "e1", "queue": "b", "outcome": "skipped", "reason": "why"}]}),
        )
        .unwrap();
        let t = summary_text(&s, Some("a"));
        assert!(t.starts_with("redriven 2, skipped 2 (poison: 1, refused: 1), parked 3\n"), "{t}");
        assert!(t.contains("  b: redriven 0, skipped 2\n") && t.contains("skipped e1 (b): why") && t.contains("--entry ID --force"), "{t}");
        let r: w::RunRequest = serde_json::from_value(json!({"scope": {"prefix": "retry-"}, "exceptionType": "X", "olderThanMs": 600000, "rate": {"perSecond": 50.0}, "mode": "retry-stage", "force": false})).unwrap();
        assert_eq!(request_text(&r, true), "queues under prefix retry-, type=X, older than 10m00s, rate 50/s, mode retry-stage");
    }
}
