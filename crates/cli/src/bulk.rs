//! Bulk stage retry through a server: `redrive retry-stage --bulk …` (the count
//! first, then a paced, recorded operation) and `redrive bulk-retry
//! list|show|abort` (docs/retry-control.md).

use crate::OutputFormat;
use crate::client::{Client, ClientError};
use crate::exit;
use crate::present::{Table, one_line};
use crate::remote::{ERROR_CELL, MAX_PAGES, Remote, print_json, run};
use redrive_core::time::parse_duration_ms;
use redrive_wire as w;

/// `retry-stage --bulk`'s own flags.
#[derive(clap::Args, Clone, Default)]
pub struct BulkArgs {
    /// Retry the stage in every execution of --pipeline it failed in (with the
    /// filters below): a recorded operation, paced, with per-execution results.
    /// Each retry follows the single retry's rules and is skipped with the
    /// reason otherwise.
    #[arg(long, conflicts_with_all = ["execution_id", "execution_id_arg", "from_action", "cli_input_json"])]
    pub bulk: bool,
    /// Only executions with a failed action of this exception type in the stage.
    #[arg(long, value_name = "TYPE", requires = "bulk")]
    pub exception_type: Option<String>,
    /// Only executions that failed at most this long ago (e.g. 2h, 30m, 1d).
    #[arg(long, value_name = "DURATION", requires = "bulk", value_parser = parse_since)]
    pub since: Option<String>,
    /// Stage retries started per second: N/s, N/m or N/h, at most 1000/s (default 10/s).
    #[arg(long, value_name = "RATE", requires = "bulk")]
    pub rate: Option<String>,
    /// Go through at most N matching executions (1 to 10000, the default).
    #[arg(long, value_name = "N", requires = "bulk", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub max: Option<u64>,
    /// Only show how many executions match and what would happen to each.
    #[arg(long, requires = "bulk")]
    pub dry_run: bool,
    /// Follow the operation until it ends, then print its results.
    #[arg(long, requires = "bulk", conflicts_with = "dry_run")]
    pub wait: bool,
}

fn parse_since(s: &str) -> Result<String, String> {
    parse_duration_ms(s).map(|_| s.trim().to_string())
}

#[derive(clap::Subcommand)]
pub enum BulkRetryCommand {
    /// A pipeline's bulk stage retries, newest first.
    List {
        pipeline: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// One bulk stage retry: its request, progress and per-execution results.
    Show {
        pipeline: String,
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Stop a running bulk stage retry before its next execution (it ends ABORTED).
    Abort {
        pipeline: String,
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

/// `retry-stage --bulk --pipeline P --stage S [filters] [--dry-run|--wait]`.
pub fn retry_stage_bulk(pipeline: String, stage: String, mode: Option<w::RetryMode>, args: BulkArgs, remote: &Remote) -> u8 {
    let body = w::BulkRetryRequest {
        stage,
        exception_type: args.exception_type,
        since: args.since,
        retry_mode: mode,
        rate: args.rate,
        max: args.max,
        dry_run: None,
    };
    run(remote, |c, out| async move {
        if args.dry_run {
            let plan = c.plan_bulk_retry(&pipeline, &body).await?;
            if out == OutputFormat::Json {
                print_json(&plan);
            } else {
                print!("{}", plan_text(&plan));
            }
            return Ok(exit::SUCCEEDED);
        }
        let started = c.start_bulk_retry(&pipeline, &body).await?;
        if !args.wait {
            if out == OutputFormat::Json {
                print_json(&started);
            } else {
                print!("{}", plan_text(&started.plan));
                let op = &started.operation;
                println!(
                    "bulk retry {} started at {}/s; follow it: redrive bulk-retry show {pipeline} {}",
                    op.id, op.rate_per_second, op.id
                );
            }
            return Ok(exit::SUCCEEDED);
        }
        if out == OutputFormat::Text {
            print!("{}", plan_text(&started.plan));
        }
        let op = follow(&c, &pipeline, &started.operation.id, out).await?;
        show(&c, &op, out).await
    })
}

/// Polls the operation until it is no longer RUNNING.
async fn follow(c: &Client, pipeline: &str, id: &str, out: OutputFormat) -> Result<w::BulkRetry, ClientError> {
    loop {
        let op = c.get_bulk_retry(pipeline, id).await?;
        if op.status != w::BulkStatus::Running {
            return Ok(op);
        }
        if out == OutputFormat::Text {
            eprintln!("{}", progress(&op));
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

fn progress(op: &w::BulkRetry) -> String {
    let k = &op.counts;
    format!("{}: {} of {} handled: {} retried, {} skipped, {} failed", op.status, k.processed, k.matched, k.retried, k.skipped, k.failed)
}

fn plan_text(p: &w::BulkPlan) -> String {
    let mut s = format!("{} executions match: {} would be retried, {} skipped\n", p.matched, p.would_retry, p.would_skip);
    if !p.scan_complete {
        s.push_str(&format!("note: only the newest {} executions of the pipeline were read\n", p.scanned));
    }
    let mut t = Table::new(&["EXECUTION", "WOULD", "DETAIL"]);
    for i in &p.items {
        t.row(vec![i.execution_id.clone(), i.would.to_string(), one_line(&i.detail, ERROR_CELL)]);
    }
    if !t.is_empty() {
        s.push_str(&t.render());
    }
    s
}

/// Prints an operation and every result (following pages).
async fn show(c: &Client, op: &w::BulkRetry, out: OutputFormat) -> Result<u8, ClientError> {
    let mut results = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = c.bulk_retry_results(&op.pipeline, &op.id, token.as_deref()).await?;
        results.extend(page.results);
        token = page.next_token;
        if token.is_none() {
            break;
        }
    }
    if out == OutputFormat::Json {
        print_json(&serde_json::json!({"operation": op, "results": results}));
        return Ok(exit::SUCCEEDED);
    }
    println!("bulk retry {} of stage {} in pipeline {}", op.id, op.stage, op.pipeline);
    println!("  filter: exception type {}, failed within {}", op.exception_type.as_deref().unwrap_or("any"), since_text(op.since_ms));
    println!("  mode {}, rate {}/s, max {}", op.retry_mode, op.rate_per_second, op.max);
    println!("  started {}, finished {}", op.started_at, op.finished_at.as_deref().unwrap_or("-"));
    println!("  {}", progress(op));
    if let Some(e) = &op.error {
        println!("  error: {e}");
    }
    let mut t = Table::new(&["#", "EXECUTION", "OUTCOME", "REASON"]);
    for r in &results {
        t.row(vec![
            r.seq.to_string(),
            r.execution_id.clone(),
            r.outcome.to_string(),
            one_line(r.reason.as_deref().unwrap_or("-"), ERROR_CELL),
        ]);
    }
    if !t.is_empty() {
        print!("{}", t.render());
    }
    Ok(exit::SUCCEEDED)
}

fn since_text(ms: Option<u64>) -> String {
    ms.map_or_else(|| "any time".into(), |ms| format!("{}s", ms / 1000))
}

pub fn bulk_retry(command: BulkRetryCommand) -> u8 {
    match command {
        BulkRetryCommand::List { pipeline, remote } => run(&remote, |c, out| async move {
            let v = c.list_bulk_retries(&pipeline, None, Some(1000)).await?;
            if out == OutputFormat::Json {
                print_json(&v);
                return Ok(exit::SUCCEEDED);
            }
            let mut t = Table::new(&["ID", "STAGE", "STATUS", "STARTED", "MATCHED", "RETRIED", "SKIPPED", "FAILED"]);
            t.align_right(&[4, 5, 6, 7]);
            for o in &v.operations {
                let k = &o.counts;
                t.row(vec![
                    o.id.clone(),
                    o.stage.clone(),
                    o.status.to_string(),
                    o.started_at.clone(),
                    k.matched.to_string(),
                    k.retried.to_string(),
                    k.skipped.to_string(),
                    k.failed.to_string(),
                ]);
            }
            if t.is_empty() {
                println!("no bulk retries of pipeline {pipeline}");
            } else {
                print!("{}", t.render());
            }
            Ok(exit::SUCCEEDED)
        }),
        BulkRetryCommand::Show { pipeline, id, remote } => run(&remote, |c, out| async move {
            let op = c.get_bulk_retry(&pipeline, &id).await?;
            show(&c, &op, out).await
        }),
        BulkRetryCommand::Abort { pipeline, id, remote } => run(&remote, |c, out| async move {
            let op = c.abort_bulk_retry(&pipeline, &id).await?;
            if out == OutputFormat::Json {
                print_json(&op);
            } else {
                println!("aborting bulk retry {id}: no execution is retried after the one under way ({})", progress(&op));
            }
            Ok(exit::SUCCEEDED)
        }),
    }
}
