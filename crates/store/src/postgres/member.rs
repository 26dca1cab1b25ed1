//! Membership: the processes sharing a database announce themselves in
//! `members` every heartbeat; one of them leads (holds the engine lock and its
//! lease, [`super::lock`]); the others follow and try to take over every
//! heartbeat.

use super::lock::{self, DB_NOW_MS, FenceState, LeaseTerms};
use super::{PostgresStore, map_error, pool_error};
use crate::{ClusterRecord, LeaseRecord, MemberRecord, ShardLeaseRecord, ShardOwner, StoreError};
use deadpool_postgres::Pool;
use redrive_core::shard::ShardId;
use redrive_core::time::Timestamp;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Heartbeats a member may miss before it stops counting for the shards' shares.
pub const LIVE_HEARTBEATS: u32 = 3;
/// Members listed by [`PostgresStore::cluster`], at most.
pub const MAX_MEMBERS_LISTED: i64 = 100;

/// Every shard lease ever taken: row id, holder, token, times, whether it runs now.
const SQL_SHARD_LEASES: &str = "SELECT id, member, token, acquired_at, expires_at, \
     expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT FROM engine_lock WHERE id >= 2 AND member IS NOT NULL ORDER BY id";

fn shard_owners_sql() -> String {
    format!(
        "SELECT l.id, l.member, m.url FROM engine_lock l LEFT JOIN members m ON m.id = l.member \
         WHERE l.id >= $1 AND l.member IS NOT NULL AND l.expires_at > {DB_NOW_MS} ORDER BY l.id"
    )
}

fn upsert_member_sql() -> String {
    format!(
        "INSERT INTO members (id, host, pid, url, started_at, heartbeat_at, kind) VALUES ($1, $2, $3, $4, {DB_NOW_MS}, {DB_NOW_MS}, $5) \
         ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, heartbeat_at = EXCLUDED.heartbeat_at, kind = EXCLUDED.kind"
    )
}

/// Announces this process in `members` now and every heartbeat.
pub(super) async fn heartbeat(pool: Pool, terms: LeaseTerms, url: Arc<Mutex<Option<String>>>) {
    loop {
        if let Err(e) = announce_once(&pool, &terms, &url).await {
            tracing::debug!(error = %e, "announcing this process failed; retrying at the next heartbeat");
        }
        tokio::time::sleep(terms.heartbeat).await;
    }
}

async fn announce_once(pool: &Pool, terms: &LeaseTerms, url: &Mutex<Option<String>>) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| e.to_string())?;
    let url = url.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let pid = i64::from(std::process::id());
    let kind = terms.kind.as_str();
    client.execute(&upsert_member_sql(), &[&terms.member, &crate::hostname(), &pid, &url, &kind]).await.map_err(|e| e.to_string())?;
    Ok(())
}

impl PostgresStore {
    /// Tries to take the engine lease: `Ok(true)` once this process leads (its
    /// writes then carry the lease's fencing token). The lock is free when the
    /// previous leader's session ended (it exited or died: taken at once); a
    /// leader that stopped renewing for longer than the lease has its session
    /// ended by this call, and a later call takes over.
    pub async fn try_lead(&self) -> Result<bool, StoreError> {
        let Some(fence) = &self.fence else {
            return Err(StoreError::Unavailable(format!("{} was opened read-only; it cannot lead", self.display_url)));
        };
        match fence.state() {
            FenceState::Held(_) | FenceState::Reconnecting(_) => return Ok(true),
            FenceState::Lost(message) => return Err(StoreError::Lost(message)),
            FenceState::Following => {}
        }
        let Some((conn, ended, token)) = lock::try_take(&self.config, &self.display_url, &self.terms).await? else {
            return Ok(false);
        };
        fence.lead(token);
        self.keep_lock(conn, ended);
        Ok(true)
    }

    /// Where the leader serves HTTP (as it announced), while its lease runs.
    pub async fn leader_url(&self) -> Result<Option<String>, StoreError> {
        let sql =
            format!("SELECT m.url FROM engine_lock l JOIN members m ON m.id = l.member WHERE l.id = 1 AND l.expires_at > {DB_NOW_MS}");
        let rows = self.query(&sql, &[]).await?;
        Ok(rows.first().and_then(|row| row.get::<_, Option<String>>(0)))
    }

    /// Tells the other members where this process serves HTTP.
    pub async fn announce(&self, url: &str) -> Result<(), StoreError> {
        *self.url.lock().unwrap_or_else(|e| e.into_inner()) = Some(url.to_string());
        announce_once(&self.pool, &self.terms, &self.url).await.map_err(StoreError::Unavailable)
    }

    /// Why this store can never be used again, once another process took the
    /// database over (its lease was taken over, or its fencing token changed).
    pub fn lost_reason(&self) -> Option<String> {
        match self.fence.as_ref()?.state() {
            FenceState::Lost(message) => Some(message),
            _ => None,
        }
    }

    /// How often followers try to take over.
    pub fn heartbeat(&self) -> Duration {
        self.terms.heartbeat
    }

    /// The schema version, the database's size and each table's rows, size and
    /// oldest row (for `redrive doctor`). PostgreSQL checks its own pages; redrive
    /// runs no integrity check of its own here (`integrity` is `None`).
    pub async fn inspect(&self) -> Result<crate::StoreInspection, StoreError> {
        let client = self.pool.get().await.map_err(|e| pool_error(&self.display_url, e))?;
        let db = &self.display_url;
        let fail = |e: tokio_postgres::Error| map_error(db, &e);
        let schema_version: i64 =
            client.query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations", &[]).await.map_err(fail)?.get(0);
        let total: i64 = client.query_one("SELECT pg_database_size(current_database())", &[]).await.map_err(fail)?.get(0);
        let mut tables = Vec::new();
        for (table, dated_by) in crate::INSPECTED_TABLES {
            let sql = format!("SELECT COUNT(*)::BIGINT, MIN({dated_by}), pg_total_relation_size('{table}')::BIGINT FROM {table}");
            let row = client.query_one(&sql, &[]).await.map_err(fail)?;
            let (rows, oldest, bytes): (i64, Option<i64>, i64) = (row.get(0), row.get(1), row.get(2));
            tables.push(crate::TableStats {
                table,
                rows: u64::try_from(rows).unwrap_or(0),
                bytes: u64::try_from(bytes).ok(),
                oldest: oldest.map(Timestamp::from_unix_ms),
            });
        }
        Ok(crate::StoreInspection {
            integrity: None,
            schema_version: u32::try_from(schema_version).unwrap_or(0),
            total_bytes: u64::try_from(total).ok(),
            tables,
        })
    }

    pub(super) async fn read_cluster(&self) -> Result<ClusterRecord, StoreError> {
        let client = self.pool.get().await.map_err(|e| pool_error(&self.display_url, e))?;
        let db = &self.display_url;
        let lease = client
            .query_opt("SELECT member, token, acquired_at, expires_at FROM engine_lock WHERE id = 1 AND member IS NOT NULL", &[])
            .await
            .map_err(|e| map_error(db, &e))?
            .map(|row| LeaseRecord {
                holder: row.get(0),
                token: row.get(1),
                acquired_at: Timestamp::from_unix_ms(row.get::<_, Option<i64>>(2).unwrap_or(0)),
                expires_at: Timestamp::from_unix_ms(row.get::<_, Option<i64>>(3).unwrap_or(0)),
            });
        let lease_ms = i64::try_from(self.terms.lease.as_millis()).unwrap_or(i64::MAX);
        let sql = format!(
            "SELECT id, host, pid, url, started_at, heartbeat_at, heartbeat_at > {DB_NOW_MS} - $1, kind FROM members \
             ORDER BY heartbeat_at DESC, id LIMIT $2"
        );
        let members = client
            .query(&sql, &[&lease_ms, &MAX_MEMBERS_LISTED])
            .await
            .map_err(|e| map_error(db, &e))?
            .iter()
            .map(|row| MemberRecord {
                id: row.get(0),
                host: row.get(1),
                pid: u32::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                url: row.get(3),
                started_at: Timestamp::from_unix_ms(row.get(4)),
                heartbeat_at: Timestamp::from_unix_ms(row.get(5)),
                alive: row.get(6),
                kind: crate::MemberKind::parse(row.get(7)),
            })
            .collect();
        let shards = client
            .query(SQL_SHARD_LEASES, &[])
            .await
            .map_err(|e| map_error(db, &e))?
            .iter()
            .filter_map(|row| {
                let shard = ShardId::new(u16::try_from(row.get::<_, i32>(0) - lock::FIRST_SHARD_LOCK_ROW).ok()?).ok()?;
                let lease = LeaseRecord {
                    holder: row.get(1),
                    token: row.get(2),
                    acquired_at: Timestamp::from_unix_ms(row.get::<_, Option<i64>>(3).unwrap_or(0)),
                    expires_at: Timestamp::from_unix_ms(row.get::<_, Option<i64>>(4).unwrap_or(0)),
                };
                Some(ShardLeaseRecord { shard, lease, live: row.get(5) })
            })
            .collect();
        Ok(ClusterRecord { backend: "postgres", lease, members, shards })
    }

    /// The shards whose lease runs now, with their holders and URLs.
    pub async fn shard_owners(&self) -> Result<Vec<ShardOwner>, StoreError> {
        let rows = self.query(&shard_owners_sql(), &[&lock::FIRST_SHARD_LOCK_ROW]).await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let shard = ShardId::new(u16::try_from(row.get::<_, i32>(0) - lock::FIRST_SHARD_LOCK_ROW).ok()?).ok()?;
                Some(ShardOwner { shard, member: row.get(1), url: row.get(2) })
            })
            .collect())
    }

    /// The live members' ids of this store's kind, in id order (a member's
    /// rank among them decides its fair share of the shards): those that
    /// announced themselves within
    /// the last [`LIVE_HEARTBEATS`] heartbeats (at most the lease), so that a
    /// dead process stops counting a few heartbeats after it died and the
    /// others take its shards then, not a lease later.
    pub async fn live_members(&self) -> Result<Vec<String>, StoreError> {
        let window = (self.terms.heartbeat * LIVE_HEARTBEATS).min(self.terms.lease);
        let lease_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let sql = format!("SELECT id FROM members WHERE heartbeat_at > {DB_NOW_MS} - $1 AND kind = $3 ORDER BY id LIMIT $2");
        let kind = self.terms.kind.as_str();
        Ok(self.query(&sql, &[&lease_ms, &MAX_MEMBERS_LISTED, &kind]).await?.iter().map(|row| row.get(0)).collect())
    }
}
