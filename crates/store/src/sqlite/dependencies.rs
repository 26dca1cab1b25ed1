//! Dependency state on SQLite: the migration that adds its table, the upsert
//! the writer runs and the listing.

use crate::{DependencyRecord, MAX_DEPENDENCY_RECORDS};
use redrive_core::time::Timestamp;
use rusqlite::{Connection, Row, params};

/// One row per dependency name. Self-contained (it touches no other table), so
/// it can be renumbered when merged with others.
pub(super) const MIGRATION_DEPENDENCIES: &str = r#"
CREATE TABLE dependencies (
    name       TEXT    NOT NULL PRIMARY KEY,
    state_json TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);
"#;

const SQL_PUT: &str = "INSERT INTO dependencies (name, state_json, updated_at) VALUES (?1, ?2, ?3) \
     ON CONFLICT (name) DO UPDATE SET state_json = excluded.state_json, updated_at = excluded.updated_at";

/// Upserts every record inside the writer's transaction; returns how many.
pub(super) fn put(conn: &Connection, records: &[DependencyRecord]) -> rusqlite::Result<u64> {
    let mut st = conn.prepare_cached(SQL_PUT)?;
    for r in records {
        st.execute(params![r.name, r.state_json, r.updated_at.unix_ms()])?;
    }
    Ok(records.len() as u64)
}

pub(super) fn list(conn: &Connection) -> rusqlite::Result<Vec<DependencyRecord>> {
    let sql = format!("SELECT name, state_json, updated_at FROM dependencies ORDER BY name LIMIT {MAX_DEPENDENCY_RECORDS}");
    conn.prepare_cached(&sql)?.query_map([], from_row)?.collect()
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<DependencyRecord> {
    Ok(DependencyRecord { name: row.get(0)?, state_json: row.get(1)?, updated_at: Timestamp::from_unix_ms(row.get(2)?) })
}
