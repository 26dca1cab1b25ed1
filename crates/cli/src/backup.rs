//! `redrive backup`: a consistent snapshot of a store file, taken while an
//! engine (a server) may be writing it.

use crate::exit;
use crate::run::DEFAULT_DB;
use redrive_store::{SqliteStore, StoreError};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct BackupArgs {
    /// The store file to back up (a running server may hold it).
    #[arg(long, value_name = "PATH", env = "REDRIVE_DB", default_value = DEFAULT_DB)]
    db: PathBuf,
    /// The new file the snapshot is written to (refused if it exists).
    #[arg(value_name = "OUT")]
    out: PathBuf,
}

pub fn backup(args: BackupArgs) -> u8 {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(run(&args)) {
        Ok(()) => exit::SUCCEEDED,
        Err(e @ (StoreError::NotFound(_) | StoreError::AlreadyExists(_) | StoreError::Schema(_))) => {
            eprintln!("error: {e}");
            exit::INVALID_INPUT
        }
        Err(e) => {
            eprintln!("error: {e}");
            exit::ENGINE_ERROR
        }
    }
}

async fn run(args: &BackupArgs) -> Result<(), StoreError> {
    let store = SqliteStore::open_read_only(&args.db)?;
    let counts = store.backup_into(&args.out).await?;
    if counts.integrity != "ok" {
        return Err(StoreError::Schema(format!("the copy {} failed its integrity check: {}", args.out.display(), counts.integrity)));
    }
    println!(
        "backed up {} to {} (checked: integrity ok; {} executions, {} ledger rows, {} dead-letter entries, {} timers)",
        args.db.display(),
        args.out.display(),
        counts.executions,
        counts.ledger_rows,
        counts.dead_letter_entries,
        counts.timers
    );
    Ok(())
}
