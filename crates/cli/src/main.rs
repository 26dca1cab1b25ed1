//! `redrive`: run pipelines whose actions fail and are retried well.

mod auth;
mod backup;
mod bench;
mod bench_ceiling;
mod bench_sweep;
mod bench_w1;
mod bench_w2;
mod bench_w3;
mod bench_w4;
mod bench_w5;
mod bulk;
mod client;
mod config;
mod dependency;
mod dlq;
mod doctor;
mod explain;
mod load;
mod peer;
mod present;
mod prune;
mod remote;
mod render;
mod run;
mod server;
mod spread;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit statuses, documented in `--help`.
pub mod exit {
    pub const SUCCEEDED: u8 = 0;
    pub const EXECUTION_FAILED: u8 = 1;
    pub const INVALID_INPUT: u8 = 2;
    pub const ENGINE_ERROR: u8 = 3;
    pub const INTERRUPTED: u8 = 130;

    /// The exit status for an error that stopped a command: invalid input when
    /// the store's location is malformed (`--db`), else an engine or store error.
    pub fn for_error(e: &anyhow::Error) -> u8 {
        let bad_location = e
            .chain()
            .any(|cause| matches!(cause.downcast_ref::<redrive_store::StoreError>(), Some(redrive_store::StoreError::InvalidLocation(_))));
        if bad_location { INVALID_INPUT } else { ENGINE_ERROR }
    }
}

#[derive(Parser)]
#[command(
    name = "redrive",
    version,
    about = "A durable pipeline engine that retries failures well",
    long_about = "redrive runs pipelines of actions (commands, HTTP calls, no-ops) with per-action retry \
policies, durable timers and crash-safe resume, on an embedded SQLite file or a PostgreSQL database.",
    after_help = "Exit status: 0 success, 1 execution failed, 2 invalid input (definition, arguments), \
3 engine or store error, 130 interrupted."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines on stderr: `text` (human) or `json` (one object per line, with
    /// the spans of the execution, stage and attempt it is about). Which lines:
    /// `RUST_LOG` (or `REDRIVE_LOG`), e.g. `info,redrive_engine=debug`; default
    /// `info` for `server`, `warn` otherwise.
    #[arg(long, global = true, value_enum, value_name = "FORMAT", env = "REDRIVE_LOG_FORMAT", default_value = "text")]
    log_format: OutputFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline to completion on the embedded store, with live progress.
    ///
    /// Validates FILE (YAML or JSON) first and writes nothing if it is invalid.
    /// After a crash or kill, `redrive run --resume` continues every unfinished
    /// execution from its last commit: committed successes never run again, and
    /// attempts that were in flight are recorded as failed with Step.SERVICE_FAULT
    /// and retried under their policies.
    Run(run::RunArgs),
    /// Run the engine continuously behind HTTP APIs: native REST (/v1, OpenAPI at
    /// /openapi.json) and the CodePipeline protocol (POST /, for the AWS CLI and SDKs).
    ///
    /// Without an `auth:` section in --config it authenticates no one and listens on
    /// loopback only; with one, every request needs a bearer token (`redrive token
    /// create`) or an AWS signature by a configured access key (docs/security.md).
    /// Unfinished executions in the store are resumed at start.
    Server(server::ServerArgs),
    /// Check a pipeline definition and report every problem at once.
    Validate {
        /// Pipeline definition files (YAML or JSON).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
        output: OutputFormat,
    },
    /// Retry-policy tools.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Benchmarks: W1 throughput (N executions × 5 actions, each failing once) or W2
    /// latency, with the raw-SQLite ceiling measured beside them.
    Bench(bench::BenchArgs),
    /// Write a consistent snapshot of a store file to a new file, while a server
    /// may be running on it (SQLite's VACUUM INTO), and check the copy.
    Backup(backup::BackupArgs),
    /// Check a store: its own integrity check, the engine's invariants over what
    /// it holds (every unfinished execution can move on, ledger attempts numbered
    /// without gaps, dead-letter entries and timers pointing at executions that
    /// exist), and its sizes and oldest rows. Read-only; a server may be running
    /// on it. Exit status 1 when a problem is found.
    Doctor(doctor::DoctorArgs),
    /// Delete what is past retention now — finished executions (with their
    /// ledgers), resolved dead-letter entries, finished redrive runs — as a
    /// server's sweeper does; --dry-run counts it instead (beside a server too).
    /// Never: unfinished executions, queued or redriven entries, or an
    /// execution a dead-letter entry names.
    Prune(prune::PruneArgs),
    /// Create, update, show, list and delete pipelines on a running server.
    Pipeline {
        #[command(subcommand)]
        command: remote::PipelineCommand,
    },
    /// Start, list, show and stop executions on a running server.
    ///
    /// `list NAME --function` and `get NAME ID --function` show the executions of
    /// a durable function (Rust SDK) with their steps: serve them from the SDK
    /// process with `engine.serve("127.0.0.1:7878")`, or run `redrive server` on
    /// its store file while no SDK process holds it.
    Execution {
        #[command(subcommand)]
        command: remote::ExecutionCommand,
    },
    /// Show a pipeline's stages and actions in their latest executions, and which
    /// failed stages can be retried (and which actions a retry would re-run).
    State(remote::StateArgs),
    /// Retry a failed stage of an execution (RetryStageExecution), or with
    /// --bulk of every execution of a pipeline it failed in (a recorded,
    /// paced operation: see `bulk-retry`).
    RetryStage(remote::RetryStageArgs),
    /// Bulk stage retries (`retry-stage --bulk`) on a running server: list,
    /// show (progress and per-execution results), abort.
    BulkRetry {
        #[command(subcommand)]
        command: bulk::BulkRetryCommand,
    },
    /// Dead-letter queues on a running server: list, show, get, purge, redrive
    /// and configure them; recorded redrive runs and schedules.
    ///
    /// A pipeline with `deadLetterQueue: NAME` writes one entry to that queue for
    /// every execution that fails for good. Redriving takes entries out of the
    /// queue and resubmits them (retry-stage: the failed stage of the original
    /// execution; new-execution: a new execution with the original input).
    /// Loop protection: an entry redriven maxRedrives times (default 3 per
    /// queue) is poison and parked; only `--entry ID --force` redrives it.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// The processes sharing a server's store (several `redrive server`s on one
    /// PostgreSQL database): leader, lease, followers, timer lag.
    Cluster {
        #[command(subcommand)]
        command: remote::ClusterCommand,
    },
    /// Dependencies: retry budgets and circuit breakers shared by every
    /// execution that calls them (declared under `dependencies:` in a pipeline
    /// or the server config; an action names its `dependency:`, an http action
    /// defaults to its URL's host).
    Dependency {
        #[command(subcommand)]
        command: dependency::DependencyCommand,
    },
    /// Bearer tokens for a server with `auth:`: create (printed once), list, revoke.
    ///
    /// Through a running server with an admin token (--server, --token), or with
    /// --db on a store no server runs on (how the first admin token is made).
    Token {
        #[command(subcommand)]
        command: auth::TokenCommand,
    },
    /// The audit log: every state-changing call, with who made it, newest first.
    Audit(auth::AuditArgs),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Print the retry schedule an action's policies give an exception type, without running anything.
    Explain(explain::ExplainArgs),
}

/// What must outlive the program's work for its telemetry to be delivered
/// (with `--features otlp`: the span exporter, flushed when dropped).
struct Telemetry {
    #[cfg(feature = "otlp")]
    _otlp: Option<otlp::Flush>,
}

/// Log lines go to stderr in `format`, filtered by `RUST_LOG`, else
/// `REDRIVE_LOG`, else `default_level`. With `--features otlp` and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) set, the spans that
/// pass the filter are also exported over OTLP/HTTP.
fn init_logging(format: OutputFormat, default_level: &str) -> Telemetry {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::{EnvFilter, Layer, Registry, layer::Layered};
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_from_env("REDRIVE_LOG"))
        .unwrap_or_else(|_| EnvFilter::new(default_level));
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour);
    let fmt: Box<dyn Layer<Layered<EnvFilter, Registry>> + Send + Sync> = match format {
        OutputFormat::Text => fmt.boxed(),
        OutputFormat::Json => fmt.json().with_current_span(true).with_span_list(true).boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(filter).with(fmt);
    #[cfg(feature = "otlp")]
    {
        let (layer, flush) = match otlp::layer() {
            Ok(Some((layer, flush))) => (Some(layer), Some(flush)),
            Ok(None) => (None, None),
            Err(e) => {
                eprintln!("warning: OTLP export disabled: {e}");
                (None, None)
            }
        };
        subscriber.with(layer).init();
        Telemetry { _otlp: flush }
    }
    #[cfg(not(feature = "otlp"))]
    {
        subscriber.init();
        Telemetry {}
    }
}

/// OpenTelemetry export of the spans (`--features otlp`).
#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::registry::LookupSpan;

    /// Flushes and stops the exporter when dropped.
    pub struct Flush(SdkTracerProvider);

    impl Drop for Flush {
        fn drop(&mut self) {
            let _ = self.0.shutdown();
        }
    }

    /// A layer sending spans to the OTLP/HTTP endpoint of the standard
    /// `OTEL_EXPORTER_OTLP_*` variables; `None` when no endpoint is set.
    #[allow(clippy::type_complexity)]
    pub fn layer<S>() -> Result<Option<(tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>, Flush)>, String>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let configured =
            ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].iter().any(|v| std::env::var_os(v).is_some());
        if !configured {
            return Ok(None);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build().map_err(|e| e.to_string())?;
        let resource = opentelemetry_sdk::Resource::builder().with_service_name("redrive").build();
        let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build();
        let tracer = provider.tracer("redrive");
        Ok(Some((tracing_opentelemetry::layer().with_tracer(tracer), Flush(provider))))
    }
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`redrive ... | head`), like other Unix tools,
    // instead of panicking in println!.
    // SAFETY: called before any thread starts; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Server(_)) { "info" } else { "warn" };
    let _telemetry = init_logging(cli.log_format, default_level);
    let code = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Server(args) => server::server(args),
        Command::Validate { files, output } => load::validate(&files, output),
        Command::Policy { command: PolicyCommand::Explain(args) } => explain::explain(args),
        Command::Bench(args) => bench::bench(args),
        Command::Backup(args) => backup::backup(args),
        Command::Doctor(args) => doctor::doctor(args),
        Command::Prune(args) => prune::prune(args),
        Command::Pipeline { command } => remote::pipeline(command),
        Command::Execution { command } => remote::execution(command),
        Command::State(args) => remote::state(args),
        Command::RetryStage(args) => remote::retry_stage(args),
        Command::BulkRetry { command } => bulk::bulk_retry(command),
        Command::Dlq { command } => dlq::dlq(command),
        Command::Cluster { command } => remote::cluster(command),
        Command::Dependency { command } => dependency::dependency(command),
        Command::Token { command } => auth::token(command),
        Command::Audit(args) => auth::audit(args),
    };
    ExitCode::from(code)
}
