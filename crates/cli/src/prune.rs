//! `redrive prune`: delete (or, with `--dry-run`, count) what is past
//! retention, as a server's sweeper does — for a store no server runs on.

use crate::config::{ServerConfig, load_config, report_config_error};
use crate::run::DEFAULT_DB;
use crate::{OutputFormat, exit};
use anyhow::Context;
use redrive_core::retention::Keep;
use redrive_core::time::human_duration_ms;
use redrive_engine::clock::{Clock, SystemClock};
use redrive_engine::error::EngineError;
use redrive_engine::retention::{SweepConfig, SweepReport, sweep};
use redrive_store::{AnyStore, Store, StoreLocation, StoreOptions};
use serde_json::json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct PruneArgs {
    /// The store: a SQLite file or a PostgreSQL URL. Without --dry-run no server
    /// may be running on it (a server's own sweeper prunes it).
    #[arg(long, value_name = "PATH|URL", env = "REDRIVE_DB", default_value = DEFAULT_DB)]
    db: StoreLocation,
    /// The server config file whose `retention:` applies (defaults otherwise:
    /// executions 30d, dead-letter entries 30d, redrive runs 90d).
    #[arg(long, value_name = "FILE", env = "REDRIVE_CONFIG")]
    config: Option<PathBuf>,
    /// Count what would go, change nothing (opens the store read-only, so a
    /// server may be running on it).
    #[arg(long)]
    dry_run: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub fn prune(args: PruneArgs) -> u8 {
    let config = match &args.config {
        None => ServerConfig::default(),
        Some(path) => match load_config(path) {
            Ok(config) => config,
            Err(e) => return report_config_error(path, &e),
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(&args, &config.sweep)) {
        Ok(()) => exit::SUCCEEDED,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::for_error(&e)
        }
    }
}

async fn run(args: &PruneArgs, sweep_config: &SweepConfig) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let report = if args.dry_run {
        let store = AnyStore::open_read_only(&args.db).await.with_context(|| format!("opening {}", args.db))?;
        sweep(&store, sweep_config, now, true, |_| async { Ok(Default::default()) }, || async {}).await?
    } else {
        let store = AnyStore::open(&args.db, StoreOptions::default())
            .await
            .with_context(|| format!("opening {} (a running server prunes its store itself; --dry-run works beside it)", args.db))?;
        let prune = |step| async { store.prune(step).await.map_err(EngineError::from) };
        sweep(&store, sweep_config, now, false, prune, || async {}).await?
    };
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&as_json(args, sweep_config, &report)).expect("JSON")),
        OutputFormat::Text => print_text(args, sweep_config, &report),
    }
    Ok(())
}

fn keep_text(keep: Keep) -> String {
    match keep {
        Keep::Forever => "forever".into(),
        Keep::For { ms } => human_duration_ms(ms),
    }
}

fn keep_json(keep: Keep) -> serde_json::Value {
    match keep {
        Keep::Forever => json!("forever"),
        Keep::For { ms } => json!(ms),
    }
}

fn print_text(args: &PruneArgs, config: &SweepConfig, report: &SweepReport) {
    let r = &config.retention;
    println!(
        "retention: finished executions {}, resolved dead-letter entries {}, finished redrive runs and bulk retries {}, audit records {} (a pipeline's retentionDays wins)",
        keep_text(r.executions),
        keep_text(r.dlq_entries),
        keep_text(r.redrive_runs),
        keep_text(r.audit_records)
    );
    let c = &report.counts;
    if args.dry_run {
        println!(
            "would delete {} executions (with their ledgers), {} dead-letter entries, {} redrive runs, {} bulk retries, {} audit records (dry run: nothing changed)",
            c.executions, c.dlq_entries, c.redrive_runs, c.bulk_retries, c.audit_records
        );
    } else {
        println!(
            "deleted {} executions, {} ledger rows, {} dead-letter entries, {} redrive runs, {} bulk retries, {} audit records in {} steps",
            c.executions, c.ledger_rows, c.dlq_entries, c.redrive_runs, c.bulk_retries, c.audit_records, report.steps
        );
    }
}

fn as_json(args: &PruneArgs, config: &SweepConfig, report: &SweepReport) -> serde_json::Value {
    let r = &config.retention;
    let c = &report.counts;
    json!({
        "store": args.db.to_string(),
        "dryRun": args.dry_run,
        "retentionMs": {
            "executions": keep_json(r.executions),
            "deadLetterEntries": keep_json(r.dlq_entries),
            "redriveRuns": keep_json(r.redrive_runs),
            "auditRecords": keep_json(r.audit_records),
        },
        "executions": c.executions,
        "ledgerRows": if args.dry_run { serde_json::Value::Null } else { json!(c.ledger_rows) },
        "deadLetterEntries": c.dlq_entries,
        "redriveRuns": c.redrive_runs,
        "bulkRetries": c.bulk_retries,
        "auditRecords": c.audit_records,
        "steps": report.steps,
    })
}
