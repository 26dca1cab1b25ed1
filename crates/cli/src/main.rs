//! `redrive`: run pipelines whose actions fail and are retried well.

mod auth;
mod backup;
mod bench;
mod bench_sweep;
mod client;
mod config;
mod dlq;
mod doctor;
mod explain;
mod load;
mod present;
mod prune;
mod remote;
mod render;
mod run;
mod server;

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
    /// Benchmark workload W1: N executions of a 5-action pipeline, each action failing once.
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
    /// Retry a failed stage of an execution (RetryStageExecution).
    RetryStage(remote::RetryStageArgs),
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

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`redrive ... | head`), like other Unix tools,
    // instead of panicking in println!.
    // SAFETY: called before any thread starts; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("REDRIVE_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
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
        Command::Dlq { command } => dlq::dlq(command),
        Command::Cluster { command } => remote::cluster(command),
        Command::Token { command } => auth::token(command),
        Command::Audit(args) => auth::audit(args),
    };
    ExitCode::from(code)
}
