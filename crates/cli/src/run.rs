//! `redrive run`: one pipeline to completion (or `--resume` unfinished ones).

use crate::load::{load_file, report_load_error};
use crate::render::{self, Progress};
use crate::{OutputFormat, exit};
use anyhow::Context;
use redrive_core::limits::{MAX_INPUT_BYTES, parse_bounded_json};
use redrive_core::machine::ExecutionStatus;
use redrive_engine::health::{FaultSource, HealthReporter, retry_transient};
use redrive_engine::{Driver, DriverConfig, EngineHandle, LoadedPipeline, SystemClock};
use redrive_store::{AnyStore, Durability, ExecutionFilter, SqliteOptions, Store, StoreLocation, StoreOptions};
use std::path::PathBuf;
use std::sync::Arc;

/// Default store file, in the current directory.
pub const DEFAULT_DB: &str = "redrive.db";

#[derive(clap::Args)]
pub struct RunArgs {
    /// Pipeline definition (YAML or JSON). Not used with --resume: the definition
    /// is stored with each execution.
    #[arg(required_unless_present = "resume", conflicts_with = "resume")]
    file: Option<PathBuf>,
    /// Execution input, a JSON document (handed to commands as $REDRIVE_INPUT).
    #[arg(long, value_name = "JSON", default_value = "{}")]
    input: String,
    /// The store: a SQLite file (created if missing) or a PostgreSQL database,
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (schema created on first use).
    #[arg(long, value_name = "PATH|URL", env = "REDRIVE_DB", default_value = DEFAULT_DB)]
    db: StoreLocation,
    /// Continue unfinished executions after a crash: the one given, or all of them.
    #[arg(long, value_name = "EXECUTION_ID", num_args = 0..=1, default_missing_value = "")]
    resume: Option<String>,
    /// Summary format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
}

pub fn run(args: RunArgs) -> u8 {
    // Validate everything before touching the store: bad input writes nothing.
    // Size and nesting are checked before the text is parsed.
    let input = match parse_bounded_json(|| "--input".into(), &args.input, MAX_INPUT_BYTES) {
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
    let loaded = match &args.file {
        Some(file) => match load_file(file) {
            Ok(l) => {
                if let Some(f) = l
                    .pipeline
                    .stages
                    .iter()
                    .flat_map(|s| s.actions.iter().map(move |a| (s, a)))
                    .find(|(_, a)| a.kind.provider() == "Function")
                {
                    eprintln!(
                        "error: {}: action {}/{} runs a durable function; `redrive run` has no functions registered (they run through the Rust SDK)",
                        file.display(),
                        f.0.name,
                        f.1.name
                    );
                    return exit::INVALID_INPUT;
                }
                Some((file.clone(), l))
            }
            Err(e) => return report_load_error(file, &e, args.output),
        },
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async move {
        match run_async(args, loaded, input).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("error: {e:#}");
                crate::exit::for_error(&e)
            }
        }
    })
}

async fn run_async(args: RunArgs, loaded: Option<(PathBuf, crate::load::LoadedFile)>, input: serde_json::Value) -> anyhow::Result<u8> {
    // A store that fails for now (a full disk, an I/O error) is waited for,
    // saying why, as the engine waits for its own writes; a locked or foreign
    // file is an error at once.
    let health = HealthReporter::new(Arc::new(SystemClock));
    let options = StoreOptions { sqlite: SqliteOptions { durability: Durability::Full, ..Default::default() }, ..Default::default() };
    let open = || AnyStore::open(&args.db, options.clone());
    let (store, _) = retry_transient(&health, FaultSource::Commit, open).await.with_context(|| format!("opening {}", args.db))?;
    let store = Arc::new(store);
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let progress = Progress::start(&handle, args.output);
    let ids: Vec<String> = match (&loaded, &args.resume) {
        (Some((_, l)), _) => {
            let now = redrive_engine::Clock::now(&SystemClock);
            let source_dir = l.source_dir.to_string_lossy();
            let put = || store.put_pipeline(l.pipeline.name.as_str(), &l.definition_json, Some(&source_dir), now);
            let (record, _) = retry_transient(&health, FaultSource::Commit, put).await?;
            if let Some(queue) = &l.pipeline.dead_letter_queue {
                retry_transient(&health, FaultSource::Commit, || store.ensure_dlq_queue(queue.as_str(), now)).await?;
            }
            let pipeline = Arc::new(LoadedPipeline::from_record(record)?);
            let id = handle.start(pipeline, input.to_string()).await?;
            progress.note(&format!(
                "execution {id} started (store {}; resume after a crash with: redrive run --resume {id} --db {})",
                args.db, args.db
            ));
            vec![id]
        }
        (None, Some(id)) => {
            let ids = if id.is_empty() {
                let unfinished = store
                    .list_executions(ExecutionFilter {
                        unfinished_only: true,
                        limit: redrive_store::limits::MAX_PAGE_SIZE,
                        ..Default::default()
                    })
                    .await?;
                unfinished.into_iter().map(|e| e.id).collect()
            } else {
                vec![id.clone()]
            };
            if ids.is_empty() {
                eprintln!("nothing to resume: {} has no unfinished executions", args.db);
                handle.shutdown().await;
                let _ = join.await;
                return Ok(exit::SUCCEEDED);
            }
            for id in &ids {
                match handle.resume(id).await {
                    Ok(()) => progress.note(&format!("resuming execution {id}")),
                    // Finished meanwhile (its timer fired in this engine) or before: report it.
                    Err(redrive_engine::EngineError::AlreadyFinished { status, .. }) => {
                        progress.note(&format!("execution {id} has already finished ({status})"))
                    }
                    Err(e @ redrive_engine::EngineError::Quarantined { .. }) => progress.note(&e.to_string()),
                    Err(e @ redrive_engine::EngineError::ExecutionNotFound(_)) => {
                        eprintln!("error: {e} in {}", args.db);
                        return Ok(exit::INVALID_INPUT);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            ids
        }
        (None, None) => unreachable!("clap requires FILE or --resume"),
    };

    let outcome = tokio::select! {
        r = wait_all(&handle, &ids) => r,
        statuses = settled_paused(store.as_ref(), &ids) => statuses,
        _ = tokio::signal::ctrl_c() => {
            progress.finish();
            eprintln!("\ninterrupted: progress is saved; continue with `redrive run --resume --db {}`", args.db);
            return Ok(exit::INTERRUPTED);
        }
    };
    progress.finish();
    let statuses = match outcome {
        Ok(s) => s,
        Err(e) => {
            // The engine stopped: report its own error, which is the cause.
            return match join.await {
                Ok(Err(cause)) => Err(anyhow::Error::new(cause).context("the engine stopped")),
                _ => Err(e.into()),
            };
        }
    };
    handle.shutdown().await;
    join.await.context("engine task")??;

    let mut summaries = Vec::new();
    for id in &ids {
        summaries.push(render::Summary::load(store.as_ref(), id).await?);
    }
    render::print_summaries(&summaries, args.output);
    for (id, status) in ids.iter().zip(&statuses) {
        if *status != ExecutionStatus::Failed {
            continue;
        }
        let Some(record) = store.get_execution(id).await? else { continue };
        let link = serde_json::from_str::<redrive_core::machine::ExecutionState>(&record.state_json).ok().and_then(|s| s.dead_letter);
        if let Some(link) = link {
            let entry = store.get_dlq_entry(&link.entry_id).await?;
            let count = entry.map_or(0, |e| e.redrive_count);
            eprintln!(
                "execution {id} failed for good: its entry {} is in dead-letter queue {} (redriven {count} times). \
Inspect and redrive it through a server on this store: `redrive server --db {}`, then `redrive dlq show {}`",
                link.entry_id, link.queue, args.db, link.queue
            );
        }
    }
    for (id, status) in ids.iter().zip(&statuses) {
        if *status == ExecutionStatus::Paused {
            eprintln!(
                "execution {id} is paused: an action exhausted its retries under onExhausted: PAUSE. Resume or fail it \
through a server on this store: `redrive server --db {}`, then `redrive execution resume|fail PIPELINE {id}`",
                args.db
            );
        }
    }
    Ok(if statuses.iter().all(|s| *s == ExecutionStatus::Succeeded) { exit::SUCCEEDED } else { exit::EXECUTION_FAILED })
}

/// How often `run` looks for executions that paused (nothing wakes a paused
/// execution in a local run: it waits for a person, through a server).
const PAUSED_POLL_MS: u64 = 250;

/// Resolves once every execution is paused or finished, with at least one
/// paused (as stored): what a local run then reports. Never resolves otherwise.
async fn settled_paused<S: Store>(store: &S, ids: &[String]) -> Result<Vec<ExecutionStatus>, redrive_engine::EngineError> {
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(PAUSED_POLL_MS)).await;
        let mut statuses = Vec::new();
        for id in ids {
            let Ok(Some(rec)) = store.get_execution(id).await else { break };
            statuses.push(redrive_engine::service::execution_state(&rec).status);
        }
        let settled = |s: &ExecutionStatus| s.is_finished() || *s == ExecutionStatus::Paused;
        if statuses.len() == ids.len() && statuses.iter().all(settled) && statuses.contains(&ExecutionStatus::Paused) {
            return Ok(statuses);
        }
    }
}

async fn wait_all(handle: &EngineHandle, ids: &[String]) -> Result<Vec<ExecutionStatus>, redrive_engine::EngineError> {
    let mut out = Vec::new();
    for id in ids {
        out.push(handle.wait(id).await?.status);
    }
    Ok(out)
}
