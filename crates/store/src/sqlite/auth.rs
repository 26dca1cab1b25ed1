//! Tokens and the audit log on SQLite: the migration that adds their tables,
//! and the statements the writer and the readers run.

use crate::{AuditFilter, AuditRecord, AuthWrite, MAX_TOKENS, StoreError, TokenRecord};
use redrive_core::time::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

/// Tokens (only their SHA-256 is stored) and the audit log. Self-contained (it
/// touches no other table), so it can be renumbered when merged with others.
pub(super) const MIGRATION_AUTH: &str = r#"
CREATE TABLE tokens (
    name       TEXT    NOT NULL PRIMARY KEY,
    token_hash TEXT    NOT NULL UNIQUE,
    grant_json TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);
CREATE TABLE audit_log (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    at           INTEGER NOT NULL,
    principal    TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    target       TEXT,
    status       INTEGER NOT NULL,
    summary_json TEXT    NOT NULL
);
"#;

const TOKEN_COLUMNS: &str = "name, token_hash, grant_json, created_at, expires_at";
const SQL_COUNT_TOKENS: &str = "SELECT COUNT(*) FROM tokens";
const SQL_INSERT_TOKEN: &str = "INSERT INTO tokens (name, token_hash, grant_json, created_at, expires_at) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";
const SQL_DELETE_TOKEN: &str = "DELETE FROM tokens WHERE name = ?1";
const SQL_INSERT_AUDIT: &str = "INSERT INTO audit_log (at, principal, action, target, status, summary_json) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING seq";
const AUDIT_COLUMNS: &str = "seq, at, principal, action, target, status, summary_json";

/// Applies one write inside the writer's transaction. A refused write (a name
/// taken, too many tokens) is the inner error and writes nothing.
pub(super) fn apply(conn: &Connection, write: &AuthWrite) -> rusqlite::Result<Result<u64, StoreError>> {
    match write {
        AuthWrite::CreateToken(t) => {
            let count: i64 = conn.prepare_cached(SQL_COUNT_TOKENS)?.query_row([], |r| r.get(0))?;
            if count as usize >= MAX_TOKENS {
                return Ok(Err(StoreError::Limit(format!("there are {count} tokens; at most {MAX_TOKENS} are allowed"))));
            }
            let expires = t.expires_at.map(Timestamp::unix_ms);
            let inserted = conn.prepare_cached(SQL_INSERT_TOKEN)?.execute(params![
                t.name,
                t.token_hash,
                t.grant_json,
                t.created_at.unix_ms(),
                expires
            ])?;
            if inserted == 0 {
                return Ok(Err(StoreError::AlreadyExists(format!("a token named {} already exists", t.name))));
            }
            Ok(Ok(0))
        }
        AuthWrite::RevokeToken(name) => Ok(Ok(conn.prepare_cached(SQL_DELETE_TOKEN)?.execute(params![name])? as u64)),
        AuthWrite::AppendAudit(r) => {
            let seq: i64 = conn
                .prepare_cached(SQL_INSERT_AUDIT)?
                .query_row(params![r.at.unix_ms(), r.principal, r.action, r.target, r.status, r.summary_json], |row| row.get(0))?;
            Ok(Ok(seq as u64))
        }
    }
}

pub(super) fn list_tokens(conn: &Connection) -> rusqlite::Result<Vec<TokenRecord>> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY name LIMIT {MAX_TOKENS}");
    conn.prepare_cached(&sql)?.query_map([], token_from_row)?.collect()
}

pub(super) fn token_by_hash(conn: &Connection, hash: &str) -> rusqlite::Result<Option<TokenRecord>> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_hash = ?1");
    conn.prepare_cached(&sql)?.query_row(params![hash], token_from_row).optional()
}

pub(super) fn list_audit(conn: &Connection, filter: &AuditFilter, limit: i64) -> rusqlite::Result<Vec<AuditRecord>> {
    let before = filter.before_seq.map_or(i64::MAX, |s| s.min(i64::MAX as u64) as i64);
    let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2");
    conn.prepare_cached(&sql)?.query_map(params![before, limit], audit_from_row)?.collect()
}

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        name: row.get(0)?,
        token_hash: row.get(1)?,
        grant_json: row.get(2)?,
        created_at: Timestamp::from_unix_ms(row.get(3)?),
        expires_at: row.get::<_, Option<i64>>(4)?.map(Timestamp::from_unix_ms),
    })
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: row.get::<_, i64>(0)? as u64,
        at: Timestamp::from_unix_ms(row.get(1)?),
        principal: row.get(2)?,
        action: row.get(3)?,
        target: row.get(4)?,
        status: row.get(5)?,
        summary_json: row.get(6)?,
    })
}
