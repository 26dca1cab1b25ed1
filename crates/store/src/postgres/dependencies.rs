//! Dependency state on PostgreSQL: the migration that adds its table, the
//! upsert the writer runs and the listing.

use super::rows::{get, get_ts};
use crate::{DependencyRecord, StoreError};
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

/// One row per dependency name. Self-contained (it touches no other table), so
/// it can be renumbered when merged with others.
pub(super) const MIGRATION_DEPENDENCIES: &str = r#"
CREATE TABLE dependencies (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    state_json TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
"#;

pub(super) const SQL_LIST: &str = "SELECT name, state_json, updated_at FROM dependencies ORDER BY name LIMIT 10000";
const SQL_PUT: &str = "INSERT INTO dependencies (name, state_json, updated_at) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) \
     ON CONFLICT (name) DO UPDATE SET state_json = excluded.state_json, updated_at = excluded.updated_at";

/// Upserts every record inside the writer's transaction (one statement); returns how many.
pub(super) async fn put(tx: &Transaction<'_>, records: &[DependencyRecord]) -> Result<u64, tokio_postgres::Error> {
    let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
    let states: Vec<&str> = records.iter().map(|r| r.state_json.as_str()).collect();
    let at: Vec<i64> = records.iter().map(|r| r.updated_at.unix_ms()).collect();
    let st = tx.prepare_cached(SQL_PUT).await?;
    tx.execute(&st, &[&names, &states, &at]).await
}

/// U+0000 cannot be stored: such a write is refused up front.
pub(super) fn nul_problem(records: &[DependencyRecord]) -> Result<(), StoreError> {
    for r in records {
        super::nul::check("dependency", [("name", Some(r.name.as_str())), ("state", Some(r.state_json.as_str()))])?;
    }
    Ok(())
}

pub(super) fn from_row(row: &Row) -> Result<DependencyRecord, StoreError> {
    Ok(DependencyRecord { name: get(row, 0)?, state_json: get(row, 1)?, updated_at: get_ts(row, 2)? })
}
