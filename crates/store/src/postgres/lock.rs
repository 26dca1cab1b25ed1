//! The engine lock (a session-level advisory lock on a dedicated connection)
//! and the fencing token every write checks.

use super::{map_error, open_error, wall_clock_ms};
use crate::StoreError;
use redrive_core::shard::ShardId;
use redrive_core::time::Timestamp;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, NoTls, Socket};

/// The key of the session-level advisory lock an engine holds (`"redrive!"`);
/// shard `i`'s lock is this key plus `1 + i`.
pub(super) const ENGINE_LOCK_KEY: i64 = 0x7265_6472_6976_6521;
/// The `engine_lock` row of the whole-database lock; shard `i`'s row is
/// `FIRST_SHARD_LOCK_ROW + i`.
pub(super) const ENGINE_LOCK_ROW: i32 = 1;
pub(super) const FIRST_SHARD_LOCK_ROW: i32 = 2;

/// Which lock a store takes: the whole database's (one engine drives every
/// execution), or one shard's (an engine drives that shard's executions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LockSlot {
    /// The `engine_lock` row holding the token and the lease.
    pub row: i32,
    /// The session-level advisory lock's key.
    pub key: i64,
    /// `None` for the whole database.
    pub shard: Option<ShardId>,
}

impl LockSlot {
    pub(super) const WHOLE: LockSlot = LockSlot { row: ENGINE_LOCK_ROW, key: ENGINE_LOCK_KEY, shard: None };

    pub(super) fn shard(shard: ShardId) -> LockSlot {
        LockSlot {
            row: FIRST_SHARD_LOCK_ROW + i32::from(shard.index()),
            key: ENGINE_LOCK_KEY + 1 + i64::from(shard.index()),
            shard: Some(shard),
        }
    }

    /// "the engine lock" or "the lock of shard 3", for messages.
    pub(super) fn describe(&self) -> String {
        match self.shard {
            None => "the engine lock".to_owned(),
            Some(shard) => format!("the lock of shard {shard}"),
        }
    }
}
/// First and last delay between two attempts to re-take a lost engine lock.
const RECONNECT_FIRST_DELAY: Duration = Duration::from_millis(100);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(2);

/// The database's clock in unix milliseconds: leases are timed by one clock,
/// whatever the members' clocks say.
pub(super) const DB_NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";
/// Takes the lock row's token and records the holder and its lease, in one statement.
const SQL_TAKE_TOKEN: &str = "UPDATE engine_lock SET token = token + 1, host = $1, pid = $2, acquired_at = $3, member = $4, \
     expires_at = (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT + $5, backend_pid = pg_backend_pid() WHERE id = $6 RETURNING token";
/// Re-takes the token after a reconnection, only if nobody took it meanwhile.
const SQL_RETAKE_TOKEN: &str = "UPDATE engine_lock SET token = token + 1, host = $1, pid = $2, acquired_at = $3, member = $4, \
     expires_at = (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT + $5, backend_pid = pg_backend_pid() \
     WHERE id = $7 AND token = $6 RETURNING token";
/// Extends the lease, only while the token is ours.
const SQL_RENEW: &str =
    "UPDATE engine_lock SET expires_at = (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT + $1 WHERE id = $3 AND token = $2";
/// The backend holding the advisory lock of a holder whose lease lapsed.
const SQL_LAPSED_HOLDER: &str = "SELECT backend_pid, member FROM engine_lock \
     WHERE id = $1 AND backend_pid IS NOT NULL AND expires_at < (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";
const SQL_READ_TOKEN: &str = "SELECT token FROM engine_lock WHERE id = $1";
const SQL_HOLDER: &str = "SELECT host, pid, acquired_at FROM engine_lock WHERE id = $1";
/// The processes holding a live shard lease (spread servers), which keep the
/// whole database's lock from being taken.
const SQL_SHARD_HOLDERS: &str = "SELECT host, pid, count(*) FROM engine_lock \
     WHERE id >= 2 AND host IS NOT NULL AND pid IS NOT NULL \
     AND expires_at > (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT \
     GROUP BY host, pid ORDER BY host, pid LIMIT 8";

/// Whether this store may write, as far as the engine lock goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum FenceState {
    /// We hold the lock; our fencing token.
    Held(i64),
    /// The lock connection died; a background task is re-taking the lock.
    /// Writes fail with [`StoreError::Unavailable`] meanwhile.
    Reconnecting(i64),
    /// Another process took the database over: every call fails for good.
    Lost(String),
    /// A member that does not lead (yet): it reads, and writes nothing.
    Following,
}

/// The fencing state shared by the writer, the readers and the lock keeper.
pub(super) struct Fence {
    state: Mutex<FenceState>,
    db: String,
    /// The lock whose token this fence checks.
    pub(super) slot: LockSlot,
    /// Wakes the keeper when the store is lost (it then lets the lock go).
    lost: tokio::sync::Notify,
}

impl Fence {
    pub(super) fn new(token: i64, db: String, slot: LockSlot) -> Fence {
        Fence { state: Mutex::new(FenceState::Held(token)), db, slot, lost: tokio::sync::Notify::new() }
    }

    /// A member's fence before it leads.
    pub(super) fn following(db: String, slot: LockSlot) -> Fence {
        Fence { state: Mutex::new(FenceState::Following), db, slot, lost: tokio::sync::Notify::new() }
    }

    /// This member now leads with `token`.
    pub(super) fn lead(&self, token: i64) {
        self.set(FenceState::Held(token));
    }

    pub(super) fn state(&self) -> FenceState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, state: FenceState) {
        let lost = matches!(state, FenceState::Lost(_));
        {
            let mut current = self.state.lock().unwrap_or_else(|e| e.into_inner());
            // Lost is forever.
            if matches!(*current, FenceState::Lost(_)) {
                return;
            }
            *current = state;
        }
        if lost {
            self.lost.notify_one();
        }
    }

    /// `Err(Lost)` once the database was taken over (for every call).
    pub(super) fn check_not_lost(&self) -> Result<(), StoreError> {
        match self.state() {
            FenceState::Lost(m) => Err(StoreError::Lost(m)),
            _ => Ok(()),
        }
    }

    /// Our token if we may write now.
    pub(super) fn writable_token(&self) -> Result<i64, StoreError> {
        match self.state() {
            FenceState::Held(token) => Ok(token),
            FenceState::Reconnecting(_) => Err(StoreError::Unavailable(format!(
                "the connection holding {} of {} was lost; reconnecting",
                self.slot.describe(),
                self.db
            ))),
            FenceState::Lost(m) => Err(StoreError::Lost(m)),
            FenceState::Following => Err(StoreError::Unavailable(match self.slot.shard {
                None => format!("this process does not lead {}: another process holds the engine lease and makes every change", self.db),
                Some(shard) => format!("this process does not hold shard {shard} of {}: another process drives its executions", self.db),
            })),
        }
    }

    /// Compares the token read in a write transaction (`FOR SHARE`) with ours.
    /// A different token means another process took the lock: the store is lost.
    pub(super) fn check_token(&self, stored: Option<i64>) -> Result<(), StoreError> {
        let ours = self.writable_token()?;
        if stored == Some(ours) {
            return Ok(());
        }
        let message = format!(
            "another process took over {} of the database {} (its token is {}, this process holds {ours}); \
             this process must stop",
            self.slot.describe(),
            self.db,
            stored.map_or_else(|| "missing".to_owned(), |t| t.to_string())
        );
        self.set(FenceState::Lost(message.clone()));
        Err(StoreError::Lost(message))
    }

    fn lose(&self, message: String) {
        self.set(FenceState::Lost(message));
    }
}

/// The connection holding the engine lock now (the keeper replaces it).
pub(super) type CurrentLock = Arc<Mutex<Option<LockConnection>>>;

type PgConnection = tokio_postgres::Connection<Socket, NoTlsStream>;
type ConnectionSlot = Arc<Mutex<Option<Pin<Box<PgConnection>>>>>;

/// A dedicated connection (not pooled) whose I/O is driven by its own task. It
/// can be closed synchronously ([`LockConnection::close`]): its socket is
/// dropped at once, so the server ends the session and releases the lock.
pub(super) struct LockConnection {
    client: Arc<Client>,
    slot: ConnectionSlot,
    driver: JoinHandle<()>,
}

impl LockConnection {
    /// Connects; the receiver resolves when the connection ends (error, server
    /// shutdown, or [`LockConnection::close`]).
    pub(super) async fn connect(config: &Config) -> Result<(LockConnection, oneshot::Receiver<()>), tokio_postgres::Error> {
        let (client, connection) = config.connect(NoTls).await?;
        let slot: ConnectionSlot = Arc::new(Mutex::new(Some(Box::pin(connection))));
        let (ended_tx, ended_rx) = oneshot::channel();
        let polled = Arc::clone(&slot);
        let driver = tokio::spawn(async move {
            std::future::poll_fn(|cx| {
                let mut slot = polled.lock().unwrap_or_else(|e| e.into_inner());
                match slot.as_mut() {
                    None => Poll::Ready(()),
                    Some(connection) => match connection.as_mut().poll(cx) {
                        Poll::Ready(_) => {
                            *slot = None;
                            Poll::Ready(())
                        }
                        Poll::Pending => Poll::Pending,
                    },
                }
            })
            .await;
            let _ = ended_tx.send(());
        });
        Ok((LockConnection { client: Arc::new(client), slot, driver }, ended_rx))
    }

    /// Drops the socket now (releasing the session's advisory lock server-side).
    pub(super) fn close(&self) {
        drop(self.slot.lock().unwrap_or_else(|e| e.into_inner()).take());
        self.driver.abort();
    }

    /// `pg_try_advisory_lock` of the slot's key. A shard's lock also takes the
    /// whole database's key *shared* (on the same session): shards can be held
    /// by many processes at once, but never while one engine holds the whole
    /// database (which takes that key exclusively), nor the other way round.
    async fn try_lock(&self, slot: LockSlot) -> Result<bool, tokio_postgres::Error> {
        if slot.shard.is_some() {
            let shared: bool = self.client.query_one("SELECT pg_try_advisory_lock_shared($1)", &[&ENGINE_LOCK_KEY]).await?.get(0);
            if !shared {
                return Ok(false);
            }
        }
        Ok(self.client.query_one("SELECT pg_try_advisory_lock($1)", &[&slot.key]).await?.get(0))
    }
}

impl Drop for LockConnection {
    fn drop(&mut self) {
        self.close();
    }
}

/// What names this process as the holder: host name and pid.
fn holder_identity() -> (String, i64) {
    (crate::hostname(), i64::from(std::process::id()))
}

/// The lease parameters of a holder: its member id and lease length.
#[derive(Clone, Debug)]
pub(super) struct LeaseTerms {
    pub member: String,
    /// Which lock these terms are for.
    pub slot: LockSlot,
    pub lease: Duration,
    pub heartbeat: Duration,
    /// What the member announces itself as.
    pub kind: crate::MemberKind,
}

impl LeaseTerms {
    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

/// How long an open waits for the lock of a holder that is gone (see
/// [`holder_is_gone`]), and how often it tries.
const RELEASE_WAIT: Duration = Duration::from_millis(1000);
const RELEASE_POLL: Duration = Duration::from_millis(10);

/// Whether the recorded holder runs on this host and is this process (a store
/// dropped a moment ago) or a process that has exited: its session is about
/// to end server-side.
async fn holder_is_gone(client: &Client, slot: LockSlot) -> bool {
    let Ok(Some(row)) = client.query_opt(SQL_HOLDER, &[&slot.row]).await else { return false };
    let (host, pid): (Option<String>, Option<i64>) = (row.try_get(0).ok().flatten(), row.try_get(1).ok().flatten());
    let (our_host, our_pid) = holder_identity();
    match (host, pid) {
        (Some(host), Some(pid)) if host == our_host => pid == our_pid || !u32::try_from(pid).is_ok_and(crate::process_is_alive),
        _ => false,
    }
}

/// The holder recorded in `engine_lock`, for the [`StoreError::Locked`]
/// message: for the whole database's lock, the processes holding shards if
/// any do (spread servers).
async fn describe_holder(client: &Client, slot: LockSlot) -> String {
    if slot.shard.is_none()
        && let Ok(rows) = client.query(SQL_SHARD_HOLDERS, &[]).await
        && !rows.is_empty()
    {
        let holders: Vec<String> = rows
            .iter()
            .filter_map(|row| {
                let (host, pid, shards): (String, i64, i64) = (row.try_get(0).ok()?, row.try_get(1).ok()?, row.try_get(2).ok()?);
                Some(format!("host {host}, pid {pid} ({shards} shards)"))
            })
            .collect();
        return format!("spread servers hold its shards: {}", holders.join("; "));
    }
    match client.query_opt(SQL_HOLDER, &[&slot.row]).await {
        Ok(Some(row)) => {
            let host: Option<String> = row.try_get(0).ok().flatten();
            let pid: Option<i64> = row.try_get(1).ok().flatten();
            let since: Option<i64> = row.try_get(2).ok().flatten();
            match (host, pid) {
                (Some(host), Some(pid)) => {
                    let since = since.map_or_else(String::new, |ms| format!(", since {}", Timestamp::from_unix_ms(ms)));
                    format!("host {host}, pid {pid}{since}")
                }
                _ => "holder unknown".to_owned(),
            }
        }
        // No row or no table yet: the holder is still creating the schema.
        _ => "holder unknown; it is still starting".to_owned(),
    }
}

/// Takes the engine lock on a new dedicated connection, running `setup`
/// (the migrations) once it is held, then bumps the fencing token.
pub(super) async fn acquire<F, Fut>(
    config: &Config,
    db: &str,
    terms: &LeaseTerms,
    setup: F,
) -> Result<(LockConnection, oneshot::Receiver<()>, i64), StoreError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    let (conn, ended) = LockConnection::connect(config).await.map_err(|e| open_error(db, &e))?;
    let mut locked = conn.try_lock(terms.slot).await.map_err(|e| map_error(db, &e))?;
    if !locked && holder_is_gone(&conn.client, terms.slot).await {
        // A store of this process was just dropped, or the holder exited: the
        // server ends its session (releasing the lock) a moment later.
        let deadline = Instant::now() + RELEASE_WAIT;
        while !locked && Instant::now() < deadline {
            tokio::time::sleep(RELEASE_POLL).await;
            locked = conn.try_lock(terms.slot).await.map_err(|e| map_error(db, &e))?;
        }
    }
    if !locked {
        let holder = describe_holder(&conn.client, terms.slot).await;
        return Err(StoreError::Locked(format!(
            "the PostgreSQL database {db} is in use by another redrive engine ({holder}); \
             stop that engine, or give this one another database with --db"
        )));
    }
    setup().await?;
    let token = take_token(&conn, db, terms).await?;
    Ok((conn, ended, token))
}

async fn take_token(conn: &LockConnection, db: &str, terms: &LeaseTerms) -> Result<i64, StoreError> {
    let (host, pid) = holder_identity();
    let row = conn
        .client
        .query_one(SQL_TAKE_TOKEN, &[&host, &pid, &wall_clock_ms(), &terms.member, &terms.lease_ms(), &terms.slot.row])
        .await
        .map_err(|e| map_error(db, &e))?;
    Ok(row.get(0))
}

/// One attempt of a member to lead: takes the advisory lock if it is free (the
/// previous holder's session ended: it exited or died) and then the token.
/// If a live session holds it but its lease lapsed (the holder stalled:
/// stopped, paused, cut off), ends that session so that the next attempt can
/// take over; the stalled holder's writes are refused from then on (fencing).
pub(super) async fn try_take(
    config: &Config,
    db: &str,
    terms: &LeaseTerms,
) -> Result<Option<(LockConnection, oneshot::Receiver<()>, i64)>, StoreError> {
    let (conn, ended) = LockConnection::connect(config).await.map_err(|e| map_error(db, &e))?;
    if conn.try_lock(terms.slot).await.map_err(|e| map_error(db, &e))? {
        let token = take_token(&conn, db, terms).await?;
        return Ok(Some((conn, ended, token)));
    }
    let lapsed = conn.client.query_opt(SQL_LAPSED_HOLDER, &[&terms.slot.row]).await.map_err(|e| map_error(db, &e))?;
    if let Some(row) = lapsed {
        let (backend, member): (i32, Option<String>) = (row.get(0), row.get(1));
        tracing::warn!(
            leader = member.as_deref().unwrap_or("unknown"),
            "the leader of {db} stopped renewing its lease; ending its session to take over"
        );
        conn.client.query_opt("SELECT pg_terminate_backend($1)", &[&backend]).await.map_err(|e| map_error(db, &e))?;
    }
    conn.close();
    Ok(None)
}

/// The background task that re-takes the lock after its connection died: with
/// back-off, on a new connection; if the token is still ours it bumps and
/// adopts it, if not the store is lost for good.
pub(super) async fn keep(config: Config, terms: LeaseTerms, fence: Arc<Fence>, current: CurrentLock, mut ended: oneshot::Receiver<()>) {
    loop {
        tokio::select! {
            _ = &mut ended => {}
            _ = fence.lost.notified() => {
                // Another process owns the database now: let our lock go.
                drop(current.lock().unwrap_or_else(|e| e.into_inner()).take());
                return;
            }
            _ = renew_until_broken(&terms, &fence, &current) => {}
        }
        let ours = match fence.state() {
            FenceState::Held(token) | FenceState::Reconnecting(token) => token,
            FenceState::Lost(_) | FenceState::Following => return,
        };
        fence.set(FenceState::Reconnecting(ours));
        drop(current.lock().unwrap_or_else(|e| e.into_inner()).take());
        let mut delay = RECONNECT_FIRST_DELAY;
        loop {
            tokio::time::sleep(delay).await;
            if matches!(fence.state(), FenceState::Lost(_)) {
                return;
            }
            delay = (delay * 2).min(RECONNECT_MAX_DELAY);
            match retake(&config, &fence.db, &terms, ours).await {
                Retake::Held(conn, new_ended, token) => {
                    *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
                    fence.set(FenceState::Held(token));
                    ended = new_ended;
                    break;
                }
                Retake::NotYet => {}
                Retake::Lost(message) => {
                    fence.lose(message);
                    return;
                }
            }
        }
    }
}

/// Extends the lease every heartbeat while the token is ours. Returns when the
/// renewal cannot be made (the lock connection broke: the keeper reconnects);
/// a renewal refused because the token changed loses the store.
async fn renew_until_broken(terms: &LeaseTerms, fence: &Fence, current: &CurrentLock) {
    loop {
        tokio::time::sleep(terms.heartbeat).await;
        let FenceState::Held(token) = fence.state() else { return std::future::pending().await };
        let client = match current.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(conn) => conn.client.clone(),
            None => return,
        };
        match client.execute(SQL_RENEW, &[&terms.lease_ms(), &token, &terms.slot.row]).await {
            Ok(1) => {}
            Ok(_) => {
                fence.lose(format!(
                    "another process took over the database {} (this process's lease with token {token} was taken over); this process must stop",
                    fence.db
                ));
                return std::future::pending().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the engine lease failed");
                return;
            }
        }
    }
}

enum Retake {
    Held(LockConnection, oneshot::Receiver<()>, i64),
    /// Not reachable yet, or our old session still holds the lock server-side.
    NotYet,
    Lost(String),
}

async fn retake(config: &Config, db: &str, terms: &LeaseTerms, ours: i64) -> Retake {
    let Ok((conn, ended)) = LockConnection::connect(config).await else { return Retake::NotYet };
    let lost = |token: Option<i64>| {
        Retake::Lost(format!(
            "another process took over the database {db} while this process was reconnecting (engine lock token is {}, \
             this process held {ours}); this process must stop",
            token.map_or_else(|| "missing".to_owned(), |t| t.to_string())
        ))
    };
    match conn.try_lock(terms.slot).await {
        Ok(true) => {
            let (host, pid) = holder_identity();
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
                [&host, &pid, &wall_clock_ms(), &terms.member, &terms.lease_ms(), &ours, &terms.slot.row];
            match conn.client.query_opt(SQL_RETAKE_TOKEN, &params).await {
                Ok(Some(row)) => Retake::Held(conn, ended, row.get(0)),
                Ok(None) => {
                    let token = conn.client.query_opt(SQL_READ_TOKEN, &[&terms.slot.row]).await.ok().flatten().map(|r| r.get(0));
                    lost(token)
                }
                Err(_) => Retake::NotYet,
            }
        }
        Ok(false) => match conn.client.query_opt(SQL_READ_TOKEN, &[&terms.slot.row]).await {
            Ok(row) => {
                let token: Option<i64> = row.map(|r| r.get(0));
                if token == Some(ours) { Retake::NotYet } else { lost(token) }
            }
            Err(_) => Retake::NotYet,
        },
        Err(_) => Retake::NotYet,
    }
}
