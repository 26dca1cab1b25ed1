//! Tokens and the audit log on PostgreSQL: the migration that adds their
//! tables, and the statements the writer and the readers run.

use super::rows::{get, get_opt_ts, get_ts, get_u64};
use crate::{AuditRecord, AuthWrite, MAX_TOKENS, StoreError, TokenRecord};
use deadpool_postgres::Transaction;
use redrive_core::time::Timestamp;
use tokio_postgres::Row;

/// Tokens (only their SHA-256 is stored) and the audit log. Self-contained (it
/// touches no other table), so it can be renumbered when merged with others.
pub(super) const MIGRATION_AUTH: &str = r#"
CREATE TABLE tokens (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    token_hash TEXT   NOT NULL UNIQUE,
    grant_json TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE TABLE audit_log (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           BIGINT NOT NULL,
    principal    TEXT   NOT NULL,
    action       TEXT   NOT NULL,
    target       TEXT,
    status       INTEGER NOT NULL,
    summary_json TEXT   NOT NULL
);
"#;

pub(super) const SQL_LIST_TOKENS: &str = "SELECT name, token_hash, grant_json, created_at, expires_at FROM tokens ORDER BY name LIMIT 1000";
pub(super) const SQL_TOKEN_BY_HASH: &str = "SELECT name, token_hash, grant_json, created_at, expires_at FROM tokens WHERE token_hash = $1";
pub(super) const SQL_LIST_AUDIT: &str = "SELECT seq, at, principal, action, target, status, summary_json \
     FROM audit_log WHERE seq < $1 ORDER BY seq DESC LIMIT $2";
const SQL_COUNT_TOKENS: &str = "SELECT COUNT(*) FROM tokens";
const SQL_INSERT_TOKEN: &str = "INSERT INTO tokens (name, token_hash, grant_json, created_at, expires_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
const SQL_DELETE_TOKEN: &str = "DELETE FROM tokens WHERE name = $1";
const SQL_INSERT_AUDIT: &str = "INSERT INTO audit_log (at, principal, action, target, status, summary_json) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq";

/// Applies one write inside the writer's transaction. A refused write (a name
/// taken, too many tokens) is the inner error and writes nothing.
pub(super) async fn apply(tx: &Transaction<'_>, write: &AuthWrite) -> Result<Result<u64, StoreError>, tokio_postgres::Error> {
    match write {
        AuthWrite::CreateToken(t) => {
            let count: i64 = tx.query_one(SQL_COUNT_TOKENS, &[]).await?.get(0);
            if count as usize >= MAX_TOKENS {
                return Ok(Err(StoreError::Limit(format!("there are {count} tokens; at most {MAX_TOKENS} are allowed"))));
            }
            let st = tx.prepare_cached(SQL_INSERT_TOKEN).await?;
            let expires = t.expires_at.map(Timestamp::unix_ms);
            let inserted = tx.execute(&st, &[&t.name, &t.token_hash, &t.grant_json, &t.created_at.unix_ms(), &expires]).await?;
            if inserted == 0 {
                return Ok(Err(StoreError::AlreadyExists(format!("a token named {} already exists", t.name))));
            }
            Ok(Ok(0))
        }
        AuthWrite::RevokeToken(name) => {
            let st = tx.prepare_cached(SQL_DELETE_TOKEN).await?;
            Ok(Ok(tx.execute(&st, &[name]).await?))
        }
        AuthWrite::AppendAudit(r) => {
            let st = tx.prepare_cached(SQL_INSERT_AUDIT).await?;
            let status = i32::from(r.status);
            let row = tx.query_one(&st, &[&r.at.unix_ms(), &r.principal, &r.action, &r.target, &status, &r.summary_json]).await?;
            Ok(Ok(row.get::<_, i64>(0) as u64))
        }
    }
}

/// U+0000 cannot be stored: such a write is refused up front.
pub(super) fn nul_problem(write: &AuthWrite) -> Result<(), StoreError> {
    match write {
        AuthWrite::CreateToken(t) => super::nul::check("token", [("name", Some(t.name.as_str())), ("grant", Some(t.grant_json.as_str()))]),
        AuthWrite::RevokeToken(_) => Ok(()),
        AuthWrite::AppendAudit(r) => super::nul::check(
            "audit record",
            [
                ("principal", Some(r.principal.as_str())),
                ("action", Some(r.action.as_str())),
                ("target", r.target.as_deref()),
                ("summary", Some(r.summary_json.as_str())),
            ],
        ),
    }
}

pub(super) fn token_from_row(row: &Row) -> Result<TokenRecord, StoreError> {
    Ok(TokenRecord {
        name: get(row, 0)?,
        token_hash: get(row, 1)?,
        grant_json: get(row, 2)?,
        created_at: get_ts(row, 3)?,
        expires_at: get_opt_ts(row, 4)?,
    })
}

pub(super) fn audit_from_row(row: &Row) -> Result<AuditRecord, StoreError> {
    let status: i32 = get(row, 5)?;
    Ok(AuditRecord {
        seq: get_u64(row, 0)?,
        at: get_ts(row, 1)?,
        principal: get(row, 2)?,
        action: get(row, 3)?,
        target: get(row, 4)?,
        status: u16::try_from(status).map_err(|_| StoreError::Schema(format!("unexpected audit status {status}")))?,
        summary_json: get(row, 6)?,
    })
}
