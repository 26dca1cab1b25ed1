//! `redrive backup`: a consistent snapshot of a store file, taken while an
//! engine (a server) may be writing it.

use crate::exit;
use crate::run::DEFAULT_DB;
use redrive_store::{SqliteStore, StoreError, StoreLocation};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct BackupArgs {
    /// The store file to back up (a running server may hold it). A PostgreSQL
    /// store is backed up with PostgreSQL's own tools (`pg_dump`), see README.
    #[arg(long, value_name = "PATH", env = "REDRIVE_DB", default_value = DEFAULT_DB)]
    db: StoreLocation,
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
    let Some(path) = args.db.sqlite_path() else {
        return Err(StoreError::Schema(format!(
            "{} is a PostgreSQL database: back it up with PostgreSQL's tools, e.g. `pg_dump --format=custom --file=OUT DBNAME` \
             (a consistent snapshot while servers run); `redrive backup` copies SQLite files",
            args.db
        )));
    };
    let store = SqliteStore::open_read_only(path)?;
    let counts = store.backup_into(&args.out).await?;
    if counts.integrity != "ok" {
        return Err(StoreError::Schema(format!("the copy {} failed its integrity check: {}", args.out.display(), counts.integrity)));
    }
    println!(
        "backed up {} to {} (checked: integrity ok; {} executions, {} ledger rows, {} dead-letter entries, {} timers)",
        args.db,
        args.out.display(),
        counts.executions,
        counts.ledger_rows,
        counts.dead_letter_entries,
        counts.timers
    );
    Ok(())
}
