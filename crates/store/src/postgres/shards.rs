//! Shards on PostgreSQL: every execution and timer row carries the shard of
//! its pipeline's (or function's) name ([`ShardId::of`]), and `engine_lock`
//! has one row per shard beside the whole database's, so that an engine can
//! hold one shard's lease and fencing token, drive only that shard's
//! executions and refuse to write any other's.

use redrive_core::shard::{SHARD_COUNT, ShardId};
use tokio_postgres::Transaction;

/// The shard column and its indexes, and a lock row per shard. The column's
/// default only serves the rows already there: [`backfill`] computes theirs
/// and drops it, so that every later insert must name its shard.
pub(super) const MIGRATION_SHARDS: &str = r#"
ALTER TABLE engine_lock DROP CONSTRAINT engine_lock_id_check;
ALTER TABLE engine_lock ADD CONSTRAINT engine_lock_id_check CHECK (id BETWEEN 1 AND 17);
INSERT INTO engine_lock (id, token) SELECT 2 + s, 0 FROM generate_series(0, 15) AS s;
ALTER TABLE executions ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE timers ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
CREATE INDEX executions_shard_unfinished ON executions (shard, created_at, id) WHERE status = 'InProgress';
CREATE INDEX timers_shard_due ON timers (shard, due_at, execution_id, key);
"#;

// The migration's lock rows and check are written for 16 shards.
const _: () = assert!(SHARD_COUNT == 16);

/// Gives the rows written before [`MIGRATION_SHARDS`] their shard (in the
/// migration's transaction), then drops the columns' defaults.
pub(super) async fn backfill(tx: &Transaction<'_>) -> Result<(), tokio_postgres::Error> {
    let names = tx.query("SELECT DISTINCT pipeline_name FROM executions", &[]).await?;
    for row in names {
        let name: String = row.get(0);
        let shard = i16::try_from(ShardId::of(&name).index()).expect("shards fit in SMALLINT");
        tx.execute("UPDATE executions SET shard = $1 WHERE pipeline_name = $2 AND shard <> $1", &[&shard, &name]).await?;
    }
    tx.batch_execute(
        "UPDATE timers t SET shard = e.shard FROM executions e WHERE e.id = t.execution_id AND t.shard <> e.shard; \
         ALTER TABLE executions ALTER COLUMN shard DROP DEFAULT; \
         ALTER TABLE timers ALTER COLUMN shard DROP DEFAULT;",
    )
    .await
}

/// The column value of `shard`.
pub(super) fn column(shard: ShardId) -> i16 {
    i16::try_from(shard.index()).expect("shards fit in SMALLINT")
}
