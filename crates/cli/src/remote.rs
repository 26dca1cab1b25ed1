//! The client commands: `pipeline …`, `execution …`, `state`, `retry-stage`, each
//! a request to a running `redrive server` (native API under `/v1`).
//! `execution list/get --function` show durable-function executions
//! (`/v1/functions/...`), served by `redrive server` or by an SDK process's
//! `engine.serve(ADDR)`.
//!
//! `--output json` prints the server's JSON response body, pretty-printed (listings
//! that follow `nextToken` print every page's items in one body). Errors the server
//! answers with print as `error: <code>: <message>` and exit 2 (4xx) or 3 (5xx); a
//! server that cannot be reached exits 3.

use crate::client::{self, Client, ClientError};
use crate::load::{load_file, plural, report_load_error};
use crate::present::{Table, one_line, or_dash, to_yaml};
use crate::{OutputFormat, exit};
use redrive_core::definition::{ActionKind, Pipeline};
use redrive_core::limits::{MAX_INPUT_BYTES, parse_bounded_json};
use redrive_wire as w;
use serde::Serialize;
use serde_json::{Value, json};
use std::future::Future;
use std::path::{Path, PathBuf};

/// Listings stop after this many pages (and say so) unless `--max-items` is given.
pub const MAX_PAGES: usize = 100;
/// Page size asked for when following `nextToken` (the server's largest).
const PAGE_SIZE: usize = 1000;
/// Widest error message in a table cell; `--output json` has all of it.
pub(crate) const ERROR_CELL: usize = 80;

/// Where the server is and how to print.
#[derive(clap::Args, Clone)]
pub struct Remote {
    /// The redrive server (`redrive server`) to send the request to.
    #[arg(long, value_name = "URL", env = "REDRIVE_SERVER", hide_env_values = true, default_value = client::DEFAULT_SERVER)]
    pub server: String,
    /// A bearer token (`redrive token create`), sent as `Authorization: Bearer`;
    /// needed when the server's config has an `auth:` section.
    #[arg(long, value_name = "TOKEN", env = "REDRIVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// `text`: human tables; `json`: the server's JSON response.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// How much of a listing to fetch.
#[derive(clap::Args, Clone)]
pub struct Paging {
    /// Fetch at most N items (default: every page, up to 100 pages).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_items: Option<u64>,
    /// Continue a listing from the `nextToken` a previous one printed.
    #[arg(long, value_name = "TOKEN")]
    pub starting_token: Option<String>,
    /// Items per request (1 to 1000); every page is still fetched.
    #[arg(long, value_name = "N", default_value_t = PAGE_SIZE, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u16).range(1..=1000), usize::from))]
    pub page_size: usize,
}

#[derive(clap::Subcommand)]
pub enum PipelineCommand {
    /// Create a pipeline from a definition file (YAML or JSON), checked locally first.
    Create(FileArgs),
    /// Store a new version of a pipeline from a definition file (its `name` says which).
    Update(FileArgs),
    /// Show a pipeline's definition: the latest version, or --version N.
    ///
    /// The text output is YAML (the summary as comments): save it and pass it to
    /// `pipeline update -f`.
    Get {
        name: String,
        #[arg(long, value_name = "N")]
        version: Option<u32>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List pipelines (latest versions).
    List {
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a pipeline with every version (deleting a missing one succeeds).
    Delete {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(clap::Args)]
pub struct FileArgs {
    /// Pipeline definition file (YAML or JSON).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    remote: Remote,
}

/// The values `execution list --status` accepts.
const EXECUTION_STATUSES: [&str; 7] = ["InProgress", "Stopping", "Paused", "Succeeded", "Failed", "Stopped", "Superseded"];

#[derive(clap::Subcommand)]
pub enum ExecutionCommand {
    /// Start an execution of a pipeline's latest version; prints its id.
    Start {
        pipeline: String,
        /// Execution input, a JSON document (handed to commands as $REDRIVE_INPUT).
        #[arg(long, value_name = "JSON", default_value = "{}")]
        input: String,
        /// Idempotency token: repeating a start with the same token and input
        /// returns the first execution instead of starting another.
        #[arg(long, value_name = "TOKEN")]
        client_request_token: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// List a pipeline's executions, newest first; with --function, a durable
    /// function's executions (name, status, steps, when a suspended one wakes).
    List {
        /// The pipeline (with --function: the durable function).
        #[arg(value_name = "NAME")]
        pipeline: String,
        /// NAME is a durable function (Rust SDK) whose executions the server's
        /// store holds, e.g. a process serving them with `engine.serve(ADDR)`.
        #[arg(long)]
        function: bool,
        /// Only executions with this status (of the pages fetched).
        #[arg(long, value_name = "STATUS", value_parser = EXECUTION_STATUSES, conflicts_with = "function")]
        status: Option<String>,
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show an execution: its status, then every stage and action; with
    /// --function, a durable function's execution with every step (status,
    /// attempts, when it is due, last error).
    Get {
        /// The pipeline (with --function: the durable function).
        #[arg(value_name = "NAME")]
        pipeline: String,
        execution_id: String,
        /// NAME is a durable function (Rust SDK), not a pipeline.
        #[arg(long)]
        function: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Write everything about one execution as JSON — the definition version it
    /// ran, its input, stored state, pending timers and whole attempt ledger — for
    /// a bug report or an audit.
    Export {
        pipeline: String,
        execution_id: String,
        /// Write to this new file (mode 0600: inputs may be sensitive) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Stop an execution: no new attempts start; running ones finish (or, with
    /// --abandon, are left behind).
    Stop {
        pipeline: String,
        execution_id: String,
        /// Do not wait for running attempts.
        #[arg(long)]
        abandon: bool,
        /// Why (at most 200 characters); recorded with the stop.
        #[arg(long, value_name = "TEXT", default_value = "")]
        reason: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Resume a Paused execution (its actions exhausted their retries under
    /// `onExhausted: PAUSE`): its paused actions start a fresh series of attempts.
    Resume {
        pipeline: String,
        execution_id: String,
        /// Only this paused action.
        #[arg(long, value_name = "STAGE/ACTION")]
        action: Option<String>,
        /// A JSON merge patch (RFC 7396) applied to the execution's input first.
        #[arg(long, value_name = "JSON")]
        input: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Fail a Paused execution for good (then the dead-letter rules apply).
    Fail {
        pipeline: String,
        execution_id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List every attempt of a pipeline's actions (the ledger), newest first.
    Attempts {
        pipeline: String,
        /// Only this execution's attempts.
        #[arg(long, value_name = "ID")]
        execution_id: Option<String>,
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(clap::Args)]
pub struct StateArgs {
    /// The pipeline.
    pipeline: String,
    #[command(flatten)]
    remote: Remote,
}

#[derive(clap::Args)]
#[command(after_help = "The --cli-input-json file is the one `aws codepipeline retry-stage-execution` takes:\n  \
{\"pipelineName\": \"P\", \"stageName\": \"S\", \"pipelineExecutionId\": \"ID\", \"retryMode\": \"FAILED_ACTIONS\"}\n\
Flags given beside it override its fields.")]
pub struct RetryStageArgs {
    /// The pipeline (or --pipeline).
    #[arg(value_name = "PIPELINE")]
    pipeline_arg: Option<String>,
    /// The execution (or --execution-id).
    #[arg(value_name = "EXECUTION_ID")]
    execution_id_arg: Option<String>,
    /// The stage (or --stage).
    #[arg(value_name = "STAGE")]
    stage_arg: Option<String>,
    /// Re-run the stage from this action's runOrder group on, on a Failed or
    /// Paused execution (earlier groups keep their results); instead of --mode.
    #[arg(long, value_name = "ACTION", conflicts_with = "mode")]
    from_action: Option<String>,
    /// With --from-action: a JSON merge patch (RFC 7396) applied to the
    /// execution's input first, recorded with the execution.
    #[arg(long, value_name = "JSON", requires = "from_action")]
    input_patch: Option<String>,
    /// The pipeline.
    #[arg(long, visible_alias = "pipeline-name", value_name = "NAME")]
    pipeline: Option<String>,
    /// The failed stage.
    #[arg(long, visible_alias = "stage-name", value_name = "NAME")]
    stage: Option<String>,
    /// The execution the stage failed in (the stage's latest).
    #[arg(long, visible_alias = "pipeline-execution-id", value_name = "ID")]
    execution_id: Option<String>,
    /// FAILED_ACTIONS re-runs the failed actions; ALL_ACTIONS re-runs the stage from its first action.
    #[arg(long, visible_alias = "retry-mode", value_name = "MODE", value_parser = ["FAILED_ACTIONS", "ALL_ACTIONS"])]
    mode: Option<String>,
    /// The request as JSON: `file://PATH`, a path, or the JSON itself.
    #[arg(long, value_name = "file://FILE")]
    cli_input_json: Option<String>,
    #[command(flatten)]
    bulk: crate::bulk::BulkArgs,
    #[command(flatten)]
    remote: Remote,
}

// --- plumbing ------------------------------------------------------------------

pub(crate) fn connect(remote: &Remote) -> Result<Client, u8> {
    Client::new(&remote.server).map(|c| c.with_token(remote.token.clone())).map_err(|e| {
        eprintln!("error: {e}");
        exit::INVALID_INPUT
    })
}

pub(crate) fn block<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime").block_on(f)
}

/// A wire value as pretty JSON (keys sorted, as `serde_json::Value` keeps them).
pub(crate) fn print_json<T: Serialize>(v: &T) {
    let v = serde_json::to_value(v).expect("wire types serialize");
    println!("{}", serde_json::to_string_pretty(&v).expect("json"));
}

/// Prints a client error and returns the exit code.
pub(crate) fn report(err: &ClientError, output: OutputFormat) -> u8 {
    match err {
        ClientError::Unreachable { server, detail } => {
            eprintln!(
                "error: cannot reach the redrive server at {server}: {detail} (start one with `redrive server`, or point --server / REDRIVE_SERVER at it)"
            );
            exit::ENGINE_ERROR
        }
        ClientError::BadResponse { server, detail } => {
            eprintln!("error: unexpected response from {server}: {detail}");
            exit::ENGINE_ERROR
        }
        ClientError::Api(e) => {
            if output == OutputFormat::Json {
                print_json(&e.body);
            }
            eprintln!("error: {}: {}", e.code(), e.message());
            for p in e.problems() {
                eprintln!("  {}", problem_line(p));
            }
            if (400..500).contains(&e.status) { exit::INVALID_INPUT } else { exit::ENGINE_ERROR }
        }
    }
}

/// A problem the server reported: `path[:line]: message (got value; allowed: ...)`.
fn problem_line(p: &w::Problem) -> String {
    let mut s = p.path.clone();
    if let Some(line) = p.line {
        s.push_str(&format!(" (line {line})"));
    }
    s.push_str(&format!(": {}", p.message));
    match (&p.value, &p.allowed) {
        (Some(v), Some(a)) => s.push_str(&format!(" (got {v}; allowed: {a})")),
        (Some(v), None) => s.push_str(&format!(" (got {v})")),
        (None, Some(a)) => s.push_str(&format!(" (allowed: {a})")),
        (None, None) => {}
    }
    s
}

/// Runs one request-and-print: `f` returns the exit code or a client error.
pub(crate) fn run<F, Fut>(remote: &Remote, f: F) -> u8
where
    F: FnOnce(Client, OutputFormat) -> Fut,
    Fut: Future<Output = Result<u8, ClientError>>,
{
    let client = match connect(remote) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match block(f(client, remote.output)) {
        Ok(code) => code,
        Err(e) => report(&e, remote.output),
    }
}

/// A listing answer: a page of items and where the next page starts.
pub(crate) trait Listing: Sized {
    type Item;
    fn into_page(self) -> (Vec<Self::Item>, Option<String>);
    fn from_page(items: Vec<Self::Item>, next_token: Option<String>) -> Self;
}

macro_rules! listing {
    ($($list:ty => $items:ident: $item:ty { $($extra:ident: $value:expr),* }),+ $(,)?) => {$(
        impl Listing for $list {
            type Item = $item;
            fn into_page(self) -> (Vec<$item>, Option<String>) {
                (self.$items, self.next_token)
            }
            fn from_page($items: Vec<$item>, next_token: Option<String>) -> Self {
                Self { $items, next_token $(, $extra: $value)* }
            }
        }
    )+};
}

listing! {
    w::PipelineList => pipelines: w::PipelineSummary {},
    w::ExecutionList => executions: w::ExecutionSummary {},
    w::ActionExecutionList => action_executions: w::ActionExecution {},
    w::FunctionExecutionList => executions: w::FunctionExecutionSummary {},
    w::QueueList => queues: w::Queue {},
    w::RunList => runs: w::Run {},
    w::EntryList => entries: w::Entry { count: 0 },
}

/// Every page of a listing, merged into one answer whose `nextToken` says where
/// it stopped (`null`: at the end).
pub(crate) async fn collect_pages<L, F, Fut>(server: String, paging: &Paging, output: OutputFormat, mut fetch: F) -> Result<L, ClientError>
where
    L: Listing,
    F: FnMut(Option<String>, usize) -> Fut,
    Fut: Future<Output = client::Result<L>>,
{
    let mut items: Vec<L::Item> = Vec::new();
    let mut token = paging.starting_token.clone();
    let max = paging.max_items.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let mut pages = 0usize;
    loop {
        let want = match max {
            Some(m) => (m - items.len()).min(paging.page_size),
            None => paging.page_size,
        };
        let (page, next) = fetch(token.clone(), want).await?.into_page();
        pages += 1;
        items.extend(page);
        let done_by_max = max.is_some_and(|m| items.len() >= m);
        match next {
            None => {
                token = None;
                break;
            }
            Some(t) if Some(&t) == token.as_ref() => {
                return Err(ClientError::BadResponse { server, detail: format!("the server repeated nextToken {t:?}") });
            }
            Some(t) => {
                token = Some(t);
                if done_by_max {
                    break;
                }
                if max.is_none() && pages >= MAX_PAGES {
                    if output == OutputFormat::Text {
                        eprintln!("note: stopped after {MAX_PAGES} pages ({} items); pass --max-items N for more", items.len());
                    }
                    break;
                }
            }
        }
    }
    if let (Some(t), OutputFormat::Text) = (&token, output) {
        eprintln!("note: more may follow; continue with --starting-token {t}");
    }
    Ok(L::from_page(items, token))
}

// --- pipeline ------------------------------------------------------------------

pub fn pipeline(cmd: PipelineCommand) -> u8 {
    match cmd {
        PipelineCommand::Create(args) => put_definition(args, false),
        PipelineCommand::Update(args) => put_definition(args, true),
        PipelineCommand::Get { name, version, remote } => run(&remote, |c, out| async move {
            let v = c.get_pipeline(&name, version).await?;
            if out == OutputFormat::Json {
                print_json(&v);
            } else {
                let p = &v.pipeline;
                println!("# pipeline {}, version {}, created {}", p.name, p.version, p.created);
                print!("{}", to_yaml(&v.definition));
            }
            Ok(exit::SUCCEEDED)
        }),
        PipelineCommand::List { paging, remote } => run(&remote, |c, out| async move {
            let v: w::PipelineList = collect_pages(c.server(), &paging, out, |t, n| {
                let c = &c;
                async move { c.list_pipelines(t.as_deref(), Some(n)).await }
            })
            .await?;
            if out == OutputFormat::Json {
                print_json(&v);
                return Ok(exit::SUCCEEDED);
            }
            let mut t = Table::new(&["NAME", "VERSION", "CREATED"]);
            for p in &v.pipelines {
                t.row(vec![p.name.clone(), p.version.to_string(), p.created.clone()]);
            }
            if t.is_empty() {
                println!("no pipelines");
            } else {
                print!("{}", t.render());
            }
            Ok(exit::SUCCEEDED)
        }),
        PipelineCommand::Delete { name, remote } => run(&remote, |c, out| async move {
            c.delete_pipeline(&name).await?;
            if out == OutputFormat::Json {
                print_json(&json!({}));
            } else {
                println!("deleted pipeline {name}");
            }
            Ok(exit::SUCCEEDED)
        }),
    }
}

/// `pipeline create|update -f FILE`: validated locally (every problem, with
/// file:line) before anything is sent.
fn put_definition(args: FileArgs, update: bool) -> u8 {
    let loaded = match load_file(&args.file) {
        Ok(l) => l,
        Err(e) => return report_load_error(&args.file, &e, args.remote.output),
    };
    let definition: Value = serde_json::from_str(&loaded.definition_json).expect("canonical JSON");
    let name = loaded.pipeline.name.to_string();
    warn_relative_paths(&loaded.pipeline, &args.file);
    run(&args.remote, |c, output| async move {
        let v = if update { c.update_pipeline(&name, &definition).await? } else { c.create_pipeline(&definition).await? };
        if output == OutputFormat::Json {
            print_json(&v);
        } else {
            let p = &v.pipeline;
            let stages = loaded.pipeline.stages.len();
            let actions: usize = loaded.pipeline.stages.iter().map(|s| s.actions.len()).sum();
            println!(
                "{} pipeline {} version {} ({stages} stage{}, {actions} action{})",
                if update { "updated" } else { "created" },
                p.name,
                p.version,
                plural(stages),
                plural(actions)
            );
        }
        Ok(exit::SUCCEEDED)
    })
}

/// `redrive run` resolves relative paths against the file's directory; a server
/// has no file, so they resolve against the server's working directory.
fn warn_relative_paths(p: &Pipeline, file: &Path) {
    for s in &p.stages {
        for a in &s.actions {
            let ActionKind::Command(spec) = &a.kind else { continue };
            let mut rel: Vec<&str> = Vec::new();
            if let Some(prog) = spec.argv.first().filter(|p| p.contains('/') && !Path::new(p.as_str()).is_absolute()) {
                rel.push(prog);
            }
            if let Some(wd) = spec.working_directory.as_deref().filter(|w| !Path::new(w).is_absolute()) {
                rel.push(wd);
            }
            for r in rel {
                eprintln!(
                    "warning: {}/{}: {r:?} is relative: on a server it resolves against the server's working directory, not {}'s directory",
                    s.name,
                    a.name,
                    file.display()
                );
            }
        }
    }
}

// --- execution -----------------------------------------------------------------

pub fn execution(cmd: ExecutionCommand) -> u8 {
    match cmd {
        ExecutionCommand::Start { pipeline, input, client_request_token, remote } => {
            // Size and nesting are checked before the text is parsed.
            let input: Value = match parse_bounded_json(|| "--input".into(), &input, MAX_INPUT_BYTES) {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    eprintln!("error: --input is not valid JSON: {e}");
                    return exit::INVALID_INPUT;
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    return exit::INVALID_INPUT;
                }
            };
            run(&remote, |c, out| async move {
                let v = c.start_execution(&pipeline, input, client_request_token).await?;
                if out == OutputFormat::Json {
                    print_json(&v);
                } else {
                    println!("{}", v.pipeline_execution_id);
                }
                Ok(exit::SUCCEEDED)
            })
        }
        ExecutionCommand::List { pipeline: name, function: true, status: _, paging, remote } => run(&remote, |c, out| async move {
            let v: w::FunctionExecutionList = collect_pages(c.server(), &paging, out, |t, n| {
                let (c, name) = (&c, &name);
                async move { c.list_function_executions(name, t.as_deref(), Some(n)).await }
            })
            .await?;
            if out == OutputFormat::Json {
                print_json(&v);
            } else {
                print!("{}", function_executions_text(&name, &v));
            }
            Ok(exit::SUCCEEDED)
        }),
        ExecutionCommand::Get { pipeline: name, execution_id, function: true, remote } => run(&remote, |c, out| async move {
            let v = c.get_function_execution(&name, &execution_id).await?;
            if out == OutputFormat::Json {
                print_json(&v);
            } else {
                print!("{}", function_execution_text(&v));
            }
            Ok(exit::SUCCEEDED)
        }),
        ExecutionCommand::List { pipeline, function: false, status, paging, remote } => run(&remote, |c, out| async move {
            let mut v: w::ExecutionList = collect_pages(c.server(), &paging, out, |t, n| {
                let (c, pipeline) = (&c, &pipeline);
                async move { c.list_executions(pipeline, t.as_deref(), Some(n)).await }
            })
            .await?;
            if let Some(status) = &status {
                v.executions.retain(|e| e.status.as_str() == status);
            }
            if out == OutputFormat::Json {
                print_json(&v);
                return Ok(exit::SUCCEEDED);
            }
            let mut t = Table::new(&["EXECUTION", "STATUS", "VERSION", "STARTED", "UPDATED"]);
            for e in &v.executions {
                t.row(vec![
                    e.pipeline_execution_id.clone(),
                    e.status.to_string(),
                    e.pipeline_version.to_string(),
                    e.start_time.clone(),
                    e.last_update_time.clone(),
                ]);
            }
            if t.is_empty() {
                println!("no executions of {pipeline}");
            } else {
                print!("{}", t.render());
            }
            Ok(exit::SUCCEEDED)
        }),
        ExecutionCommand::Export { pipeline, execution_id, out: file, remote } => run(&remote, |c, _| async move {
            let v = c.export_execution(&pipeline, &execution_id).await?;
            let text = serde_json::to_string_pretty(&v).expect("an export serializes") + "\n";
            match file {
                None => print!("{text}"),
                Some(path) => {
                    if let Err(e) = write_new_private_file(&path, text.as_bytes()) {
                        eprintln!("error: cannot write {}: {e}", path.display());
                        return Ok(exit::INVALID_INPUT);
                    }
                    eprintln!("wrote {} ({} attempts)", path.display(), v.ledger.len());
                }
            }
            Ok(exit::SUCCEEDED)
        }),
        ExecutionCommand::Get { pipeline, execution_id, function: false, remote } => run(&remote, |c, out| async move {
            let v = c.get_execution(&pipeline, &execution_id).await?;
            if out == OutputFormat::Json {
                print_json(&v);
            } else {
                print!("{}", execution_text(&v));
            }
            Ok(exit::SUCCEEDED)
        }),
        ExecutionCommand::Stop { pipeline, execution_id, abandon, reason, remote } => run(&remote, |c, out| async move {
            let v = c.stop_execution(&pipeline, &execution_id, abandon, &reason).await?;
            if out == OutputFormat::Json {
                print_json(&v);
            } else if abandon {
                println!("stopping execution {execution_id}: running attempts are abandoned");
            } else {
                println!("stopping execution {execution_id}: no new attempts start; running ones finish");
            }
            Ok(exit::SUCCEEDED)
        }),
        ExecutionCommand::Resume { pipeline, execution_id, action, input, remote } => {
            let input = match input.as_deref().map(serde_json::from_str::<serde_json::Value>).transpose() {
                Ok(input) => input,
                Err(e) => {
                    eprintln!("error: --input is not JSON: {e}");
                    return exit::INVALID_INPUT;
                }
            };
            run(&remote, |c, out| async move {
                let body = w::ResumeExecutionRequest { action: action.clone(), input };
                let v = c.resume_execution(&pipeline, &execution_id, &body).await?;
                if out == OutputFormat::Json {
                    print_json(&v);
                } else {
                    let what = action.map_or_else(|| "its paused actions start".to_string(), |a| format!("{a} starts"));
                    println!("resumed execution {execution_id}: {what} a fresh series of attempts");
                }
                Ok(exit::SUCCEEDED)
            })
        }
        ExecutionCommand::Fail { pipeline, execution_id, remote } => run(&remote, |c, out| async move {
            let v = c.fail_execution(&pipeline, &execution_id).await?;
            if out == OutputFormat::Json {
                print_json(&v);
            } else {
                println!("failed execution {execution_id} for good");
            }
            Ok(exit::SUCCEEDED)
        }),
        ExecutionCommand::Attempts { pipeline, execution_id, paging, remote } => run(&remote, |c, out| async move {
            let v: w::ActionExecutionList = collect_pages(c.server(), &paging, out, |t, n| {
                let (c, pipeline, id) = (&c, &pipeline, &execution_id);
                async move { c.list_action_executions(pipeline, id.as_deref(), t.as_deref(), Some(n)).await }
            })
            .await?;
            if out == OutputFormat::Json {
                print_json(&v);
                return Ok(exit::SUCCEEDED);
            }
            let mut t = Table::new(&["EXECUTION", "STAGE", "ACTION", "SERIES", "ATTEMPT", "TRIGGER", "STATUS", "ENDED", "ERROR"]);
            for a in &v.action_executions {
                let error = match (&a.exception_type, &a.message) {
                    (Some(t), Some(m)) if !m.is_empty() => one_line(&format!("{t}: {m}"), ERROR_CELL),
                    (Some(t), _) => t.clone(),
                    _ => String::new(),
                };
                t.row(vec![
                    a.pipeline_execution_id.clone(),
                    a.stage_name.clone(),
                    a.action_name.clone(),
                    a.series.to_string(),
                    a.attempt.to_string(),
                    a.trigger.to_string(),
                    a.status.to_string(),
                    a.end_time.clone(),
                    error,
                ]);
            }
            if t.is_empty() {
                println!("no attempts");
            } else {
                print!("{}", t.render());
            }
            Ok(exit::SUCCEEDED)
        }),
    }
}

/// `Type: message` of a failure, on one line; "" without one.
fn failure_cell(f: Option<&w::Failure>) -> String {
    match f {
        Some(f) if !f.message.is_empty() => one_line(&format!("{}: {}", f.exception_type, f.message), ERROR_CELL),
        Some(f) => f.exception_type.clone(),
        None => String::new(),
    }
}

/// `Running`, `WaitingRetry (next at T)`, or `Running (waiting for key acme: 2/2 running, #3 in line)`.
fn action_status_cell(action: &w::ActionView) -> String {
    if let Some(k) = &action.waiting {
        let key = k.concurrency_key.as_deref().unwrap_or("(absent)");
        return format!("{} (waiting for key {key}: {}/{} running, #{} in line)", action.status, k.running, k.max, k.position);
    }
    match (&action.next_attempt_at, &action.held) {
        (Some(at), Some(h)) => format!("{} (held by dependency {}: {}; next at {at})", action.status, h.dependency, h.reason),
        (Some(at), None) => format!("{} (next at {at})", action.status),
        (None, _) => action.status.to_string(),
    }
}

/// `3`, or `2 (series 2, 5 total)` after a stage retry.
fn attempts_cell(a: &w::ActionView) -> String {
    if a.series > 1 { format!("{} (series {}, {} total)", a.attempt, a.series, a.total_attempts) } else { a.attempt.to_string() }
}

/// `execution get`: the execution's status, then one row per action.
fn execution_text(v: &w::Execution) -> String {
    let mut out = format!(
        "execution {} of {} (version {})\nstatus:  {}\nstarted: {}\n",
        v.pipeline_execution_id, v.pipeline_name, v.pipeline_version, v.status, v.start_time
    );
    if let Some(end) = &v.end_time {
        out.push_str(&format!("ended:   {end}\n"));
    }
    out.push('\n');
    let mut t = Table::new(&["STAGE", "STAGE STATUS", "ACTION", "STATUS", "ATTEMPT", "ERROR"]);
    for s in &v.stages {
        let mut status = s.status.to_string();
        if s.retry_in_progress {
            status.push_str(" (retrying)");
        }
        if s.actions.is_empty() {
            t.row(vec![s.name.clone(), status.clone(), "-".into()]);
        }
        for (i, a) in s.actions.iter().enumerate() {
            let (stage, st) = if i == 0 { (s.name.clone(), status.clone()) } else { (String::new(), String::new()) };
            t.row(vec![stage, st, a.name.clone(), action_status_cell(a), attempts_cell(a), failure_cell(a.error.as_ref())]);
        }
    }
    out.push_str(&t.render());
    out
}

// --- function executions -------------------------------------------------------

/// The listing of `execution list NAME --function`.
fn function_executions_text(function: &str, v: &w::FunctionExecutionList) -> String {
    let mut t = Table::new(&["EXECUTION", "NAME", "STATUS", "STEPS", "STARTED", "ENDED", "WAITING UNTIL"]);
    for e in &v.executions {
        t.row(vec![
            e.execution_id.clone(),
            e.name.clone(),
            e.status.to_string(),
            e.steps.to_string(),
            e.start_time.clone(),
            or_dash(e.end_time.as_deref()),
            or_dash(e.waiting_until.as_deref()),
        ]);
    }
    if t.is_empty() { format!("no executions of function {function}\n") } else { t.render() }
}

/// What a suspended function execution waits for: ` (sleep S)` or ` (retry of step S)`.
fn waiting_on(v: &w::FunctionExecution) -> String {
    v.steps
        .last()
        .map(|s| {
            let what = if s.status == w::StepStatus::Sleeping { "sleep" } else { "retry of step" };
            format!(" ({what} {})", s.name)
        })
        .unwrap_or_default()
}

/// `execution get NAME ID --function`: the execution as `key: value` lines, then
/// one row per step.
fn function_execution_text(v: &w::FunctionExecution) -> String {
    let mut lines: Vec<(&str, String)> =
        vec![("name", v.name.clone()), ("status", v.status.to_string()), ("started", v.start_time.clone())];
    if let Some(end) = &v.end_time {
        lines.push(("ended", end.clone()));
    }
    if let Some(until) = &v.waiting_until {
        lines.push(("waiting until", format!("{until}{}", waiting_on(v))));
    }
    lines.push(("input", one_line(&v.input.to_string(), 200)));
    if let Some(r) = v.result.as_ref().filter(|r| !r.is_null()) {
        lines.push(("result", one_line(&r.to_string(), 200)));
    }
    if let Some(e) = &v.error {
        lines.push(("error", failure_cell(Some(e))));
    }
    if let Some(d) = &v.dead_letter {
        lines.push(("dead letter", format!("entry {} in queue {}", d.entry_id, d.queue)));
    }
    let mut out = format!("function execution {} of {}\n", v.execution_id, v.function);
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, val) in &lines {
        out.push_str(&format!("{:<width$} {val}\n", format!("{k}:")));
    }
    out.push('\n');
    out.push_str(&steps_text(&v.steps));
    let recorded = v.attempts.len();
    let more = if v.attempts_truncated { " (the newest; older ones exist)" } else { "" };
    out.push_str(&format!("\n{recorded} step attempt{} recorded{more}; --output json lists them\n", plural(recorded)));
    out
}

/// One row per step of a function execution.
fn steps_text(steps: &[w::Step]) -> String {
    if steps.is_empty() {
        return "no steps yet\n".into();
    }
    let mut t = Table::new(&["STEP", "KIND", "STATUS", "ATTEMPTS", "WAITING UNTIL", "LAST ERROR"]);
    for s in steps {
        let attempts = if s.kind == w::StepKind::Sleep { "-".to_string() } else { s.attempt.to_string() };
        t.row(vec![
            s.name.clone(),
            s.kind.to_string(),
            s.status.to_string(),
            attempts,
            or_dash(s.due_at.as_deref()),
            failure_cell(s.last_failure.as_ref()),
        ]);
    }
    t.render()
}

// --- state ---------------------------------------------------------------------

/// The actions a FAILED_ACTIONS retry of a stage would re-run: its failed ones.
fn failed_actions(actions: &[w::ActionView]) -> Vec<&str> {
    actions.iter().filter(|a| a.status == w::ActionStatus::Failed).map(|a| a.name.as_str()).collect()
}

/// Why the engine would refuse a retry of a stage in this execution: it is stopped
/// or superseded (`None` when it is not, or when the execution cannot be read).
async fn retry_refused(c: &Client, pipeline: &str, id: &str) -> Option<w::ExecutionStatus> {
    let status = c.get_execution(pipeline, id).await.ok()?.status;
    matches!(status, w::ExecutionStatus::Stopped | w::ExecutionStatus::Superseded).then_some(status)
}

/// The note under `state` for a retryable stage: what each retry mode would do.
fn retryable_note(pipeline: &str, stage: &str, id: &str, actions: &[w::ActionView]) -> String {
    let active: Vec<&str> = actions
        .iter()
        .filter(|a| matches!(a.status, w::ActionStatus::Running | w::ActionStatus::WaitingRetry))
        .map(|a| a.name.as_str())
        .collect();
    let mut note =
        format!("stage {stage} is retryable (execution {id}):\n  FAILED_ACTIONS would retry: {}\n", failed_actions(actions).join(", "));
    if active.is_empty() {
        let all: Vec<&str> = actions.iter().map(|a| a.name.as_str()).collect();
        note.push_str(&format!("  ALL_ACTIONS would re-run: {}\n", all.join(", ")));
    } else {
        note.push_str(&format!("  ALL_ACTIONS is refused while {} in progress\n", active.join(", ")));
    }
    note.push_str(&format!("  redrive retry-stage --pipeline {pipeline} --stage {stage} --execution-id {id} --mode FAILED_ACTIONS"));
    note
}

/// A stage's rows in the `state` table (its latest execution), and a note when
/// it has failed actions.
async fn stage_rows(c: &Client, v: &w::PipelineState, s: &w::StageState, t: &mut Table) -> Option<String> {
    let stage = s.stage_name.as_str();
    let Some(latest) = &s.latest_execution else {
        t.row(vec![stage.into(), "-".into(), "NotStarted".into()]);
        return None;
    };
    let id = latest.pipeline_execution_id.as_str();
    let mut status = latest.status.to_string();
    let mut note = None;
    if latest.retry_in_progress {
        status.push_str(" (retrying)");
    } else if !failed_actions(&s.actions).is_empty() {
        // The engine also refuses a retry of a stopped or superseded execution.
        note = Some(match retry_refused(c, &v.pipeline_name, id).await {
            Some(why) => format!("stage {stage} has failed actions but is not retryable: execution {id} is {why}"),
            None => {
                status.push_str(" (retryable)");
                retryable_note(&v.pipeline_name, stage, id, &s.actions)
            }
        });
    }
    if s.actions.is_empty() {
        t.row(vec![stage.into(), id.into(), status.clone(), "-".into()]);
    }
    for (i, a) in s.actions.iter().enumerate() {
        let first = |x: &str| if i == 0 { x.to_string() } else { String::new() };
        t.row(vec![
            first(stage),
            first(id),
            first(&status),
            a.name.clone(),
            action_status_cell(a),
            attempts_cell(a),
            failure_cell(a.error.as_ref()),
        ]);
    }
    note
}

#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// The processes sharing the server's store: who leads (holds the engine
    /// lease, with its fencing token and expiry), who follows, who is gone, and
    /// how far behind the durable timers are.
    Status {
        #[command(flatten)]
        remote: Remote,
        /// Read the status from this store instead of asking a server (opened
        /// read-only): e.g. a PostgreSQL database shared by SDK processes, which
        /// serve no API.
        #[arg(long, value_name = "PATH|URL", conflicts_with = "server")]
        db: Option<redrive_store::StoreLocation>,
    },
}

pub fn cluster(command: ClusterCommand) -> u8 {
    let ClusterCommand::Status { remote, db } = command;
    if let Some(db) = db {
        return cluster_from_store(&db, remote.output);
    }
    run(&remote, |c, out| async move {
        let v = c.cluster_status().await?;
        let source = format!("answered by {}", v.answered_by);
        print_cluster(&v, &source, out);
        Ok(exit::SUCCEEDED)
    })
}

/// `cluster status --db`: the status read from the store itself.
fn cluster_from_store(db: &redrive_store::StoreLocation, out: OutputFormat) -> u8 {
    let read = block(async {
        let store = redrive_store::AnyStore::open_read_only(db).await?;
        redrive_api::cluster::read_status(&store, redrive_engine::Clock::now(&redrive_engine::SystemClock)).await
    });
    match read {
        Ok(v) => {
            print_cluster(&v, &format!("read from {db}"), out);
            exit::SUCCEEDED
        }
        Err(e) => {
            let e = anyhow::Error::from(e).context(format!("reading the cluster's status from {db}"));
            eprintln!("error: {e:#}");
            exit::for_error(&e)
        }
    }
}

/// The status as a table (`source`: who answered it) or as its JSON.
fn print_cluster(v: &redrive_wire::ClusterStatus, source: &str, out: OutputFormat) {
    if out == OutputFormat::Json {
        print_json(v);
        return;
    }
    println!("store: {} ({source})", v.backend);
    match &v.lease {
        Some(l) => {
            println!("lease: held by {} since {}, fencing token {}, expires {}", l.holder, l.acquired_at, l.fencing_token, l.expires_at)
        }
        None if v.backend == "sqlite" => println!("lease: none (a SQLite store is held by one process, with a file lock)"),
        None if !v.shards.is_empty() => {
            let live = v.shards.iter().filter(|s| s.live).count();
            println!("shards: {live} of {} held by a live process (--spread)", redrive_core::shard::SHARD_COUNT)
        }
        None => println!("lease: nobody holds it (a follower takes it over within a heartbeat)"),
    }
    let next = v.timers.next_due_at.as_deref().unwrap_or("-");
    println!("timers: {} pending, next due {next}, behind by {} ms\n", v.timers.pending, v.timers.behind_ms);
    let mut t = Table::new(&["MEMBER", "KIND", "ROLE", "SHARDS", "HOST", "PID", "URL", "STARTED", "LAST HEARTBEAT"]);
    for m in &v.members {
        let shards = m.shards.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        t.row(vec![
            m.id.clone(),
            m.kind.as_str().to_string(),
            m.role.as_str().to_string(),
            if shards.is_empty() { "-".into() } else { shards },
            m.host.clone(),
            m.pid.to_string(),
            m.url.clone().unwrap_or_else(|| "-".into()),
            m.started_at.clone(),
            m.last_heartbeat_at.clone(),
        ]);
    }
    print!("{}", t.render());
}

pub fn state(args: StateArgs) -> u8 {
    let pipeline = args.pipeline;
    run(&args.remote, |c, out| async move {
        let v = c.pipeline_state(&pipeline).await?;
        if out == OutputFormat::Json {
            print_json(&v);
            return Ok(exit::SUCCEEDED);
        }
        println!("pipeline {} (version {})\n", v.pipeline_name, v.pipeline_version);
        let mut t = Table::new(&["STAGE", "EXECUTION", "STAGE STATUS", "ACTION", "ACTION STATUS", "ATTEMPTS", "LAST ERROR"]);
        let mut notes: Vec<String> = Vec::new();
        for s in &v.stages {
            notes.extend(stage_rows(&c, &v, s, &mut t).await);
        }
        print!("{}", t.render());
        for n in notes {
            println!("\n{n}");
        }
        Ok(exit::SUCCEEDED)
    })
}

// --- retry-stage ---------------------------------------------------------------

/// The four fields of a RetryStageExecution request.
#[derive(Debug, Default, PartialEq)]
struct RetryRequest {
    pipeline_name: Option<String>,
    stage_name: Option<String>,
    pipeline_execution_id: Option<String>,
    retry_mode: Option<String>,
}

const RETRY_FIELDS: [&str; 4] = ["pipelineName", "stageName", "pipelineExecutionId", "retryMode"];

/// `file://PATH`, a plain path, or inline JSON (starting with `{`).
fn read_cli_input_json(arg: &str) -> Result<RetryRequest, String> {
    let (text, origin) = if arg.trim_start().starts_with('{') {
        (arg.to_string(), "--cli-input-json".to_string())
    } else {
        let path = arg.strip_prefix("file://").unwrap_or(arg);
        let text = crate::load::read_bounded(std::path::Path::new(path), "--cli-input-json", redrive_core::limits::MAX_INPUT_BYTES)
            .map_err(|e| format!("--cli-input-json {e}"))?;
        (text, path.to_string())
    };
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("{origin} is not valid JSON: {e}"))?;
    let Value::Object(m) = v else {
        return Err(format!("{origin} must be a JSON object with {}", RETRY_FIELDS.join(", ")));
    };
    let unknown: Vec<&str> = m.keys().map(String::as_str).filter(|k| !RETRY_FIELDS.contains(k)).collect();
    if !unknown.is_empty() {
        return Err(format!(
            "{origin}: unknown parameter{} {}; must be one of: {}",
            plural(unknown.len()),
            unknown.join(", "),
            RETRY_FIELDS.join(", ")
        ));
    }
    let field = |k: &str| -> Result<Option<String>, String> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{origin}: {k} must be a string, not {other}")),
        }
    };
    Ok(RetryRequest {
        pipeline_name: field("pipelineName")?,
        stage_name: field("stageName")?,
        pipeline_execution_id: field("pipelineExecutionId")?,
        retry_mode: field("retryMode")?,
    })
}

pub fn retry_stage(args: RetryStageArgs) -> u8 {
    if args.bulk.bulk {
        return retry_stage_bulk(args);
    }
    let mut req = match args.cli_input_json.as_deref().map(read_cli_input_json).transpose() {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::INVALID_INPUT;
        }
    };
    // Flags override the file.
    req.pipeline_name = args.pipeline.or(args.pipeline_arg).or(req.pipeline_name);
    req.stage_name = args.stage.or(args.stage_arg).or(req.stage_name);
    req.pipeline_execution_id = args.execution_id.or(args.execution_id_arg).or(req.pipeline_execution_id);
    req.retry_mode = args.mode.or(req.retry_mode);
    let missing: Vec<&str> = [
        ("--pipeline (pipelineName)", req.pipeline_name.is_none()),
        ("--stage (stageName)", req.stage_name.is_none()),
        ("--execution-id (pipelineExecutionId)", req.pipeline_execution_id.is_none()),
        ("--mode (retryMode)", req.retry_mode.is_none() && args.from_action.is_none()),
    ]
    .into_iter()
    .filter(|(_, m)| *m)
    .map(|(n, _)| n)
    .collect();
    if !missing.is_empty() {
        eprintln!(
            "error: retry-stage is missing {}: pass the flag{} or set the field{} in the --cli-input-json file",
            missing.join(", "),
            plural(missing.len()),
            plural(missing.len())
        );
        return exit::INVALID_INPUT;
    }
    let (p, s, id, mode) = (
        req.pipeline_name.unwrap_or_default(),
        req.stage_name.unwrap_or_default(),
        req.pipeline_execution_id.unwrap_or_default(),
        req.retry_mode.unwrap_or_default(),
    );
    if let Some(action) = args.from_action {
        return retry_stage_from(&args.remote, (p, id, s), action, args.input_patch.as_deref());
    }
    let Ok(mode) = serde_json::from_value::<w::RetryMode>(Value::String(mode.clone())) else {
        eprintln!("error: retryMode {mode:?} is not one of FAILED_ACTIONS, ALL_ACTIONS");
        return exit::INVALID_INPUT;
    };
    run(&args.remote, |c, out| async move {
        let v = c.retry_stage(&p, &id, &s, mode).await?;
        if out == OutputFormat::Json {
            print_json(&v);
        } else {
            println!("retrying stage {s} of execution {} ({mode})", v.pipeline_execution_id);
        }
        Ok(exit::SUCCEEDED)
    })
}

/// `retry-stage --bulk --pipeline P --stage S …` (native API only).
fn retry_stage_bulk(args: RetryStageArgs) -> u8 {
    let (Some(pipeline), Some(stage)) = (args.pipeline.or(args.pipeline_arg), args.stage.or(args.stage_arg)) else {
        eprintln!("error: retry-stage --bulk needs --pipeline and --stage");
        return exit::INVALID_INPUT;
    };
    let mode = match args.mode.map(|m| serde_json::from_value::<w::RetryMode>(Value::String(m))).transpose() {
        Ok(mode) => mode,
        Err(_) => {
            eprintln!("error: --mode is not one of FAILED_ACTIONS, ALL_ACTIONS");
            return exit::INVALID_INPUT;
        }
    };
    crate::bulk::retry_stage_bulk(pipeline, stage, mode, args.bulk, &args.remote)
}

/// `retry-stage … --from-action A [--input-patch JSON]` (native API only).
fn retry_stage_from(remote: &Remote, (p, id, s): (String, String, String), action: String, input_patch: Option<&str>) -> u8 {
    let input_patch = match input_patch.map(serde_json::from_str::<Value>).transpose() {
        Ok(patch) => patch,
        Err(e) => {
            eprintln!("error: --input-patch is not JSON: {e}");
            return exit::INVALID_INPUT;
        }
    };
    run(remote, |c, out| async move {
        let v = c.retry_stage_from(&p, &id, &s, &action, input_patch).await?;
        if out == OutputFormat::Json {
            print_json(&v);
        } else {
            println!("retrying stage {s} of execution {} from action {action}", v.pipeline_execution_id);
        }
        Ok(exit::SUCCEEDED)
    })
}

/// Creates `path` (refused if it exists) with mode 0600 and writes `bytes`.
fn write_new_private_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_input_json_is_read_from_a_file_or_inline() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("r.json");
        std::fs::write(&f, r#"{"pipelineName": "p", "stageName": "S", "retryMode": "FAILED_ACTIONS"}"#).unwrap();
        let want = RetryRequest {
            pipeline_name: Some("p".into()),
            stage_name: Some("S".into()),
            pipeline_execution_id: None,
            retry_mode: Some("FAILED_ACTIONS".into()),
        };
        assert_eq!(read_cli_input_json(&format!("file://{}", f.display())).unwrap(), want);
        assert_eq!(read_cli_input_json(&f.display().to_string()).unwrap(), want);
        assert_eq!(read_cli_input_json(r#"{"pipelineName": "p"}"#).unwrap().pipeline_name.as_deref(), Some("p"));
        assert!(read_cli_input_json(r#"{"pipeline": "p"}"#).unwrap_err().contains("unknown parameter pipeline"));
        assert!(read_cli_input_json(r#"{"stageName": 3}"#).unwrap_err().contains("must be a string"));
        assert!(read_cli_input_json("file:///nonexistent/x.json").is_err());
    }
}
