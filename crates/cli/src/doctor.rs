//! `redrive doctor`: the store's own integrity check, the engine's invariants
//! over what it holds, and its sizes — read-only, beside a running server.

use crate::present::Table;
use crate::run::DEFAULT_DB;
use crate::{OutputFormat, exit};
use anyhow::Context;
use redrive_engine::doctor::{DoctorReport, examine};
use redrive_store::{AnyStore, StoreInspection, StoreLocation};
use serde_json::json;

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// The store: a SQLite file or a PostgreSQL URL (opened read-only; a server
    /// may be running on it).
    #[arg(long, value_name = "PATH|URL", env = "REDRIVE_DB", default_value = DEFAULT_DB)]
    db: StoreLocation,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

/// Exit 0 when every check passes, 1 when one finds a problem, 3 when the
/// store cannot be read.
pub fn doctor(args: DoctorArgs) -> u8 {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(&args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::for_error(&e)
        }
    }
}

async fn run(args: &DoctorArgs) -> anyhow::Result<u8> {
    let store = AnyStore::open_read_only(&args.db).await.with_context(|| format!("opening {}", args.db))?;
    let inspection = store.inspect().await.context("inspecting the store")?;
    let report = examine(&store).await.context("checking the engine's invariants")?;
    let sound = inspection.integrity.as_deref().is_none_or(|i| i == "ok") && report.problems == 0;
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&as_json(&args.db, &inspection, &report, sound)).expect("JSON")),
        OutputFormat::Text => print_text(&args.db, &inspection, &report),
    }
    Ok(if sound { exit::SUCCEEDED } else { exit::EXECUTION_FAILED })
}

fn print_text(db: &StoreLocation, inspection: &StoreInspection, report: &DoctorReport) {
    let size = inspection.total_bytes.map(|b| format!(", {} bytes", b)).unwrap_or_default();
    println!("store {db} (schema version {}{size})", inspection.schema_version);
    match &inspection.integrity {
        Some(result) => println!("integrity check: {result}"),
        None => println!("integrity check: left to the database server"),
    }
    let mut tables = Table::new(&["TABLE", "ROWS", "BYTES", "OLDEST"]);
    tables.align_right(&[1, 2]);
    for t in &inspection.tables {
        let bytes = t.bytes.map(|b| b.to_string()).unwrap_or_else(|| "-".into());
        tables.row(vec![t.table.to_string(), t.rows.to_string(), bytes, t.oldest.map(|o| o.to_string()).unwrap_or_else(|| "-".into())]);
    }
    println!("\n{}", tables.render());
    println!(
        "checked {} executions ({} unfinished), {} ledger rows, {} dead-letter entries, {} timers: {}",
        report.executions,
        report.unfinished,
        report.ledger_rows,
        report.dead_letter_entries,
        report.timers,
        match report.problems {
            0 => "no problem found".to_string(),
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        }
    );
    if !report.findings.is_empty() {
        let mut problems = Table::new(&["CHECK", "SUBJECT", "PROBLEM"]);
        for f in &report.findings {
            problems.row(vec![f.check.to_string(), f.subject.clone(), f.problem.clone()]);
        }
        println!("\n{}", problems.render());
        if report.problems > report.findings.len() as u64 {
            println!("(the first {} of {} are shown)", report.findings.len(), report.problems);
        }
    }
}

fn as_json(db: &StoreLocation, inspection: &StoreInspection, report: &DoctorReport, sound: bool) -> serde_json::Value {
    json!({
        "store": db.to_string(),
        "sound": sound,
        "schemaVersion": inspection.schema_version,
        "integrity": inspection.integrity,
        "totalBytes": inspection.total_bytes,
        "tables": inspection.tables.iter().map(|t| json!({
            "table": t.table, "rows": t.rows, "bytes": t.bytes, "oldest": t.oldest.map(|o| o.to_string()),
        })).collect::<Vec<_>>(),
        "checked": {
            "executions": report.executions, "unfinished": report.unfinished, "ledgerRows": report.ledger_rows,
            "deadLetterEntries": report.dead_letter_entries, "timers": report.timers,
        },
        "problems": report.problems,
        "findings": report.findings.iter().map(|f| json!({"check": f.check, "subject": f.subject, "problem": f.problem})).collect::<Vec<_>>(),
    })
}
