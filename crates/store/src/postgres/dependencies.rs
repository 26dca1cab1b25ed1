//! Dependency state on PostgreSQL: the migration that adds its table, the
//! upsert the writer runs and the listing.

use super::rows::{get, get_ts};
use crate::{DependencyRecord, ShardDependencyRecord, StoreError};
use deadpool_postgres::Transaction;
use redrive_core::shard::ShardId;
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

/// One row per (shard, dependency name): each shard's engine keeps its own
/// state (`--spread`) and reads the others'. Self-contained.
pub(super) const MIGRATION_SHARD_DEPENDENCIES: &str = r#"
CREATE TABLE shard_dependencies (
    shard      SMALLINT NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    state_json TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (shard, name)
);
"#;

pub(super) const SQL_LIST: &str = "SELECT name, state_json, updated_at FROM dependencies ORDER BY name LIMIT 10000";
pub(super) const SQL_LIST_SHARD: &str =
    "SELECT name, state_json, updated_at FROM shard_dependencies WHERE shard = $1 ORDER BY name LIMIT 10000";
pub(super) const SQL_LIST_SHARDS: &str =
    "SELECT name, state_json, updated_at, shard FROM shard_dependencies ORDER BY shard, name LIMIT 10000";
const SQL_PUT: &str = "INSERT INTO dependencies (name, state_json, updated_at) \
     SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) \
     ON CONFLICT (name) DO UPDATE SET state_json = excluded.state_json, updated_at = excluded.updated_at";
const SQL_PUT_SHARD: &str = "INSERT INTO shard_dependencies (name, state_json, updated_at, shard) \
     SELECT u.*, $4::SMALLINT FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u \
     ON CONFLICT (shard, name) DO UPDATE SET state_json = excluded.state_json, updated_at = excluded.updated_at";

/// Upserts every record inside the writer's transaction (one statement), as
/// `shard`'s if given; returns how many.
pub(super) async fn put(tx: &Transaction<'_>, records: &[DependencyRecord], shard: Option<i16>) -> Result<u64, tokio_postgres::Error> {
    let names: Vec<&str> = records.iter().map(|r| r.name.as_str()).collect();
    let states: Vec<&str> = records.iter().map(|r| r.state_json.as_str()).collect();
    let at: Vec<i64> = records.iter().map(|r| r.updated_at.unix_ms()).collect();
    match shard {
        None => {
            let st = tx.prepare_cached(SQL_PUT).await?;
            tx.execute(&st, &[&names, &states, &at]).await
        }
        Some(shard) => {
            let st = tx.prepare_cached(SQL_PUT_SHARD).await?;
            tx.execute(&st, &[&names, &states, &at, &shard]).await
        }
    }
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

pub(super) fn shard_record_from_row(row: &Row) -> Result<ShardDependencyRecord, StoreError> {
    let column: i16 = get(row, 3)?;
    let shard = u16::try_from(column)
        .map_err(|e| e.to_string())
        .and_then(ShardId::new)
        .map_err(|e| StoreError::Schema(format!("shard_dependencies: shard {column}: {e}")))?;
    Ok(ShardDependencyRecord { shard, record: from_row(row)? })
}
