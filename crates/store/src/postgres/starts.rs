//! Function starts handed to a shard's holder. SDK processes spread over one
//! database (each drives the shards it holds) start an execution of a
//! function whose shard another process holds by writing a *start request*;
//! the holder starts the execution through its engine and writes the outcome;
//! the requester reads the outcome and deletes the row. Members also record
//! their kind (`server` or `functions`) here, since the two kinds of process
//! must not share a database's shards.

use super::lock::DB_NOW_MS;
use super::rows::{get, get_ts};
use super::{PostgresStore, map_error};
use crate::{StartRequest, StartRequestRecord, StoreError};
use redrive_core::shard::ShardId;
use redrive_core::time::Timestamp;

/// Migration 8: the start requests, and each member's kind. Self-contained.
pub(super) const MIGRATION_FUNCTION_STARTS: &str = r#"
CREATE TABLE function_starts (
    id             BIGSERIAL PRIMARY KEY,
    shard          SMALLINT NOT NULL,
    function_name  TEXT   NOT NULL,
    execution_name TEXT   NOT NULL,
    input_json     TEXT   NOT NULL,
    requested_at   BIGINT NOT NULL,
    outcome_json   TEXT,
    answered_at    BIGINT
);
CREATE INDEX function_starts_waiting ON function_starts (shard, id) WHERE outcome_json IS NULL;
CREATE INDEX function_starts_answered ON function_starts (answered_at) WHERE outcome_json IS NOT NULL;
ALTER TABLE members ADD COLUMN kind TEXT NOT NULL DEFAULT 'server';
"#;

/// The channel a start request is announced on (`NOTIFY`, the shard as payload).
pub const START_CHANNEL: &str = "redrive_function_starts";

/// Notifications a [`StartListener`] keeps until they are read (more are
/// dropped: one wakes the reader as well as many).
const NOTIFICATIONS_KEPT: usize = 64;

/// Start requests one shard's holder reads at once, at most.
pub const MAX_START_REQUESTS_READ: i64 = 1000;

/// Inserts the request and announces it on [`START_CHANNEL`] (delivered at commit).
const SQL_REQUEST: &str = "WITH r AS (INSERT INTO function_starts (shard, function_name, execution_name, input_json, requested_at) \
     VALUES ($1, $2, $3, $4, $5) RETURNING id), n AS (SELECT pg_notify('redrive_function_starts', $1::text)) SELECT r.id FROM r, n";
const SQL_WAITING: &str = "SELECT id, function_name, execution_name, input_json, requested_at FROM function_starts \
     WHERE shard = $1 AND outcome_json IS NULL ORDER BY id LIMIT $2";
const SQL_ANSWER: &str =
    "UPDATE function_starts SET outcome_json = $2, answered_at = $3 WHERE id = $1 AND outcome_json IS NULL RETURNING id";
const SQL_TAKE_OUTCOME: &str = "DELETE FROM function_starts WHERE id = $1 AND outcome_json IS NOT NULL RETURNING outcome_json";
const SQL_PRUNE_ANSWERED: &str = "WITH pruned AS (DELETE FROM function_starts WHERE outcome_json IS NOT NULL AND answered_at < $1 \
     RETURNING 1) SELECT COUNT(*)::BIGINT FROM pruned";

/// A connection `LISTEN`ing on [`START_CHANNEL`]: `next` resolves with the
/// shard of each start request announced; `None` once the connection ended
/// (open another).
pub struct StartListener {
    notifications: tokio::sync::mpsc::Receiver<ShardId>,
    /// Kept open: dropping it closes the connection.
    _client: tokio_postgres::Client,
}

impl StartListener {
    /// The shard of the next request announced, or `None` once the
    /// connection ended.
    pub async fn next(&mut self) -> Option<ShardId> {
        self.notifications.recv().await
    }

    /// The shards of the requests announced meanwhile (without waiting).
    pub fn announced(&mut self) -> Vec<ShardId> {
        std::iter::from_fn(|| self.notifications.try_recv().ok()).collect()
    }
}

impl PostgresStore {
    /// Asks the holder of `shard` to start an execution; returns the
    /// request's id (to read its outcome with
    /// [`PostgresStore::take_function_start_outcome`]). Any member may ask.
    pub async fn request_function_start(&self, shard: ShardId, request: &StartRequest, now: Timestamp) -> Result<i64, StoreError> {
        request.check()?;
        super::nul::check(
            &format!("the start of {:?}", request.function),
            [
                ("function name", Some(request.function.as_str())),
                ("execution name", Some(request.name.as_str())),
                ("input", Some(request.input_json.as_str())),
            ],
        )?;
        let rows = self
            .query(SQL_REQUEST, &[&super::shards::column(shard), &request.function, &request.name, &request.input_json, &now.unix_ms()])
            .await?;
        rows.first().map(|row| get(row, 0)).unwrap_or_else(|| Err(StoreError::Schema("the start request got no id".into())))
    }

    /// Listens for start requests on a connection of its own.
    pub async fn listen_for_start_requests(&self) -> Result<StartListener, StoreError> {
        let (client, mut connection) = self.config.connect(tokio_postgres::NoTls).await.map_err(|e| map_error(&self.display_url, &e))?;
        let (tx, notifications) = tokio::sync::mpsc::channel(NOTIFICATIONS_KEPT);
        tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                        // A payload naming no shard is not ours: ignored.
                        let Some(shard) = n.payload().parse::<u16>().ok().and_then(|i| ShardId::new(i).ok()) else { continue };
                        if tx.try_send(shard).is_err() && tx.is_closed() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                }
            }
        });
        client.batch_execute(&format!("LISTEN {START_CHANNEL}")).await.map_err(|e| map_error(&self.display_url, &e))?;
        Ok(StartListener { notifications, _client: client })
    }

    /// The start requests waiting for this shard's store (oldest first, at
    /// most `limit` and [`MAX_START_REQUESTS_READ`]).
    pub async fn waiting_function_starts(&self, limit: usize) -> Result<Vec<StartRequestRecord>, StoreError> {
        let Some(shard) = self.shard() else {
            return Err(StoreError::Unavailable("only a shard's store reads its start requests".into()));
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX).clamp(1, MAX_START_REQUESTS_READ);
        self.query_map(SQL_WAITING, &[&super::shards::column(shard), &limit], |row| {
            Ok(StartRequestRecord {
                id: get(row, 0)?,
                request: StartRequest { function: get(row, 1)?, name: get(row, 2)?, input_json: get(row, 3)? },
                requested_at: get_ts(row, 4)?,
            })
        })
        .await
    }

    /// Records the outcome of a start request; `false` if it was answered
    /// already (or taken).
    pub async fn answer_function_start(&self, id: i64, outcome_json: &str, now: Timestamp) -> Result<bool, StoreError> {
        super::nul::check("a start's outcome", [("outcome", Some(outcome_json))])?;
        Ok(!self.query(SQL_ANSWER, &[&id, &outcome_json, &now.unix_ms()]).await?.is_empty())
    }

    /// The outcome of a start request once its holder answered (the row is
    /// deleted then); `None` while it waits.
    pub async fn take_function_start_outcome(&self, id: i64) -> Result<Option<String>, StoreError> {
        self.query_opt(SQL_TAKE_OUTCOME, &[&id], |row| get(row, 0)).await
    }

    /// Deletes the outcomes nobody took (their requester gave up or died)
    /// answered before `before`; returns how many.
    pub async fn prune_function_start_outcomes(&self, before: Timestamp) -> Result<u64, StoreError> {
        let pruned: Option<i64> = self.query_opt(SQL_PRUNE_ANSWERED, &[&before.unix_ms()], |row| get(row, 0)).await?;
        Ok(pruned.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
    }

    /// The live members of another kind than this store's that hold a
    /// shard's lease (SDK workers and spread servers exclude each other).
    pub async fn shard_holders_of_other_kinds(&self) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT DISTINCT l.member FROM engine_lock l JOIN members m ON m.id = l.member \
             WHERE l.id >= 2 AND l.expires_at > {DB_NOW_MS} AND m.kind <> $1 ORDER BY l.member LIMIT 100"
        );
        self.query_map(&sql, &[&self.terms.kind.as_str()], |row| get(row, 0)).await
    }
}
