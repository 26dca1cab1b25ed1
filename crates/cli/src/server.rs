//! `redrive server`: the engine running continuously behind the HTTP APIs.

use crate::exit;
use crate::run::DEFAULT_DB;
use anyhow::Context;
use redrive_engine::service::Service;
use redrive_engine::{Driver, DriverConfig, SystemClock};
use redrive_store::{ExecutionCursor, ExecutionFilter, SqliteOptions, SqliteStore, Store};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// Address to listen on. Binds loopback only unless told otherwise.
    #[arg(long, value_name = "ADDR", env = "REDRIVE_LISTEN", default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// The SQLite store file; created if missing.
    #[arg(long, value_name = "PATH", env = "REDRIVE_DB", default_value = DEFAULT_DB)]
    db: PathBuf,
    /// Request bodies larger than this get HTTP 413.
    #[arg(long, value_name = "BYTES", default_value_t = redrive_api::server::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// On SIGTERM/SIGINT, how long running attempts may take to finish before the
    /// server exits (they are retried as Step.SERVICE_FAULT after a restart).
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    grace_seconds: u64,
}

pub fn server(args: ServerArgs) -> u8 {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(serve(args)) {
        Ok(()) => exit::SUCCEEDED,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::ENGINE_ERROR
        }
    }
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let store = Arc::new(SqliteStore::open(&args.db, SqliteOptions::default()).with_context(|| format!("opening {}", args.db.display()))?);
    let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listening on {}", args.listen))?;
    let (handle, join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());

    // Continuity: every unfinished execution is taken over (in-flight attempts of
    // the previous process are recovered as Step.SERVICE_FAULT).
    let mut resumed = 0usize;
    let mut before: Option<ExecutionCursor> = None;
    loop {
        let page = store
            .list_executions(ExecutionFilter { unfinished_only: true, before: before.clone(), limit: 0, ..Default::default() })
            .await?;
        let Some(last) = page.last() else { break };
        before = Some(ExecutionCursor { created_at: last.created_at, id: last.id.clone() });
        for e in &page {
            match handle.resume(&e.id).await {
                Ok(()) | Err(redrive_engine::EngineError::AlreadyFinished { .. }) => resumed += 1,
                Err(err) => return Err(err).with_context(|| format!("resuming execution {}", e.id)),
            }
        }
    }

    let service = Arc::new(Service::new(store.clone(), handle.clone(), Arc::new(SystemClock)));
    eprintln!(
        "redrive server listening on http://{} (store {}; {resumed} unfinished execution{} resumed; CodePipeline API on POST /, native API under /v1, OpenAPI at /openapi.json)",
        listener.local_addr()?,
        args.db.display(),
        if resumed == 1 { "" } else { "s" }
    );
    redrive_api::server::serve(service, listener, args.max_body_bytes, shutdown_signal()).await.context("serving HTTP")?;

    eprintln!("shutting down: no new attempts start; waiting up to {}s for running attempts", args.grace_seconds);
    let left = handle.drain(std::time::Duration::from_secs(args.grace_seconds)).await.unwrap_or(0);
    if left > 0 {
        eprintln!("{left} attempt(s) still running were abandoned; they are retried as Step.SERVICE_FAULT after a restart");
    }
    join.await.context("engine task")??;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
