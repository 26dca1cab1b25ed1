//! The PostgreSQL schema: one versioned list of migrations, applied in one
//! transaction under an advisory transaction lock.

use super::{describe, map_error};
use crate::StoreError;
use tokio_postgres::Client;

/// Migration 1: the final shape of the SQLite schema (after its five
/// migrations), plus the engine lock row. Timestamps are BIGINT unix
/// milliseconds; every text column that is ordered or prefix-matched compares
/// bytes (`COLLATE "C"`), like SQLite.
const MIGRATION_1: &str = r#"
CREATE TABLE pipelines (
    name            TEXT COLLATE "C" NOT NULL,
    version         BIGINT NOT NULL,
    definition_json TEXT   NOT NULL,
    source_dir      TEXT,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE pipeline_names (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    deleted_at BIGINT
);
CREATE INDEX pipeline_names_live ON pipeline_names (name) WHERE deleted_at IS NULL;

CREATE TABLE executions (
    id               TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    kind             TEXT   NOT NULL CHECK (kind IN ('pipeline', 'function')),
    pipeline_name    TEXT COLLATE "C" NOT NULL,
    pipeline_version BIGINT NOT NULL,
    status           TEXT   NOT NULL,
    input_json       TEXT   NOT NULL,
    state_json       TEXT   NOT NULL,
    version          BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    fault_type       TEXT,
    fault_message    TEXT
) WITH (fillfactor = 50);
-- fillfactor 50: every transition rewrites its execution's row; half-full pages
-- let the new version stay on its page, a HOT update that writes no index entry
-- (with full pages each update writes one in each of the five indexes).
CREATE INDEX executions_created_id        ON executions (created_at, id);
CREATE INDEX executions_target_created_id ON executions (kind, pipeline_name, created_at, id);
CREATE INDEX executions_unfinished        ON executions (created_at, id) WHERE status = 'InProgress';
CREATE INDEX executions_target_unfinished ON executions (kind, pipeline_name, created_at, id) WHERE status = 'InProgress';

CREATE TABLE ledger (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id   TEXT COLLATE "C" NOT NULL REFERENCES executions (id),
    kind           TEXT   NOT NULL,
    pipeline_name  TEXT COLLATE "C" NOT NULL,
    stage          TEXT   NOT NULL,
    action         TEXT   NOT NULL,
    series         BIGINT NOT NULL,
    attempt        BIGINT NOT NULL,
    "trigger"      TEXT   NOT NULL,
    started_at     BIGINT NOT NULL,
    finished_at    BIGINT NOT NULL,
    outcome        TEXT   NOT NULL,
    exception_type TEXT,
    message        TEXT,
    decision_json  TEXT
);
CREATE INDEX ledger_execution_seq ON ledger (execution_id, seq);
CREATE INDEX ledger_target_seq    ON ledger (kind, pipeline_name, seq);

-- The ledger is append-only: history is never rewritten. Statement-level, so
-- that even a statement matching no row is refused.
CREATE FUNCTION redrive_ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only: % is not allowed', TG_OP;
END
$fn$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION redrive_ledger_append_only();

CREATE TABLE timers (
    execution_id TEXT COLLATE "C" NOT NULL REFERENCES executions (id),
    key          TEXT COLLATE "C" NOT NULL,
    due_at       BIGINT NOT NULL,
    PRIMARY KEY (execution_id, key)
);
CREATE INDEX timers_due ON timers (due_at, execution_id, key);

CREATE TABLE client_tokens (
    kind          TEXT   NOT NULL,
    pipeline_name TEXT COLLATE "C" NOT NULL,
    token         TEXT COLLATE "C" NOT NULL,
    fingerprint   TEXT   NOT NULL,
    execution_id  TEXT COLLATE "C" NOT NULL REFERENCES executions (id),
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (kind, pipeline_name, token)
);

CREATE TABLE dlq_queues (
    name         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    max_redrives BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);

CREATE TABLE dlq_entries (
    id               TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    queue            TEXT COLLATE "C" NOT NULL REFERENCES dlq_queues (name),
    state            TEXT   NOT NULL CHECK (state IN ('QUEUED', 'REDRIVEN', 'RESOLVED')),
    kind             TEXT   NOT NULL CHECK (kind IN ('pipeline', 'function')),
    pipeline_name    TEXT COLLATE "C" NOT NULL,
    pipeline_version BIGINT NOT NULL,
    execution_id     TEXT COLLATE "C" NOT NULL,
    stage            TEXT   NOT NULL,
    action           TEXT   NOT NULL,
    exception_type   TEXT COLLATE "C" NOT NULL,
    message          TEXT   NOT NULL,
    input_json       TEXT   NOT NULL,
    detail_json      TEXT   NOT NULL,
    redrive_count    BIGINT NOT NULL,
    first_failure_at BIGINT NOT NULL,
    last_failure_at  BIGINT NOT NULL,
    entered_at       BIGINT NOT NULL,
    redriven_to      TEXT,
    redriven_at      BIGINT,
    resolved_at      BIGINT,
    updated_at       BIGINT NOT NULL
);
CREATE INDEX dlq_entries_queue     ON dlq_entries (queue, state, entered_at, id, redrive_count);
CREATE INDEX dlq_entries_state     ON dlq_entries (state, entered_at, id);
CREATE INDEX dlq_entries_entered   ON dlq_entries (entered_at, id);
CREATE INDEX dlq_entries_pipeline  ON dlq_entries (pipeline_name, state, entered_at, id);
CREATE INDEX dlq_entries_exception ON dlq_entries (exception_type, state, entered_at, id);

CREATE TABLE redrive_runs (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    schedule     TEXT COLLATE "C",
    status       TEXT    NOT NULL,
    dry_run      BOOLEAN NOT NULL,
    started_at   BIGINT  NOT NULL,
    finished_at  BIGINT,
    request_json TEXT    NOT NULL,
    summary_json TEXT    NOT NULL
);
CREATE INDEX redrive_runs_started          ON redrive_runs (started_at, id);
CREATE INDEX redrive_runs_schedule_started ON redrive_runs (schedule, started_at, id);
CREATE INDEX redrive_runs_running          ON redrive_runs (id) WHERE status = 'RUNNING';

-- The engine lock's fencing token and its holder (for error messages). One
-- row; `token` is bumped by every engine that takes the lock, and every write
-- transaction checks it.
CREATE TABLE engine_lock (
    id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    token       BIGINT  NOT NULL,
    host        TEXT,
    pid         BIGINT,
    acquired_at BIGINT,
    -- The holder's member id, until when its lease runs (by the database's
    -- clock) unless it renews, and the backend holding its advisory lock (ended
    -- by the process that takes a lapsed lease over).
    member      TEXT,
    expires_at  BIGINT,
    backend_pid INTEGER
);
INSERT INTO engine_lock (id, token) VALUES (1, 0);

-- The processes sharing the database (`redrive cluster status`).
CREATE TABLE members (
    id           TEXT   NOT NULL PRIMARY KEY,
    host         TEXT   NOT NULL,
    pid          BIGINT NOT NULL,
    url          TEXT,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
"#;

/// Migration 2: retention ([`crate::Store::prune`]). The ledger's DELETE check
/// becomes a row trigger that lets a row go only if its execution is listed in
/// `ledger_prunable` (a prune lists it, deletes its rows and unlists it in one
/// transaction), and a DELETE with nothing listed is refused even if it
/// matches no row; UPDATE and TRUNCATE stay refused. Indexes for what a prune
/// checks per execution: the dead-letter entries naming it, its client tokens.
const MIGRATION_2: &str = r#"
CREATE TABLE ledger_prunable (
    execution_id TEXT COLLATE "C" NOT NULL PRIMARY KEY
);
DROP TRIGGER ledger_append_only ON ledger;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION redrive_ledger_append_only();
CREATE FUNCTION redrive_ledger_prune_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_prunable p WHERE p.execution_id = OLD.execution_id) THEN
        RAISE EXCEPTION 'the ledger is append-only: DELETE is allowed only for an execution retention deletes';
    END IF;
    RETURN OLD;
END
$fn$;
CREATE TRIGGER ledger_prune_only BEFORE DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION redrive_ledger_prune_only();
-- And a DELETE with no prune under way is refused even if it matches no row.
CREATE FUNCTION redrive_ledger_prune_under_way() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger_prunable) THEN
        RAISE EXCEPTION 'the ledger is append-only: DELETE is allowed only for an execution retention deletes';
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER ledger_prune_under_way BEFORE DELETE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION redrive_ledger_prune_under_way();
CREATE INDEX dlq_entries_execution   ON dlq_entries (execution_id);
CREATE INDEX dlq_entries_redriven_to ON dlq_entries (redriven_to) WHERE redriven_to IS NOT NULL;
CREATE INDEX client_tokens_execution ON client_tokens (execution_id);
"#;

/// Ordered schema migrations; migration `i` brings the schema to version `i + 1`.
/// Never edit a released migration: append a new one.
const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    super::auth::MIGRATION_AUTH,
    super::dependencies::MIGRATION_DEPENDENCIES,
    super::bulk::MIGRATION_BULK_RETRIES,
    super::shards::MIGRATION_SHARDS,
    super::dependencies::MIGRATION_SHARD_DEPENDENCIES,
    super::starts::MIGRATION_FUNCTION_STARTS,
];

/// The version [`super::shards::MIGRATION_SHARDS`] brings the schema to; its
/// Rust step ([`super::shards::backfill`]) runs right after it.
const SHARDS_VERSION: i64 = 6;

/// The schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// The key of the transaction-level advisory lock migrations run under
/// (`"rdrv-mig"`).
const MIGRATION_LOCK_KEY: i64 = 0x7264_7276_2d6d_6967;

pub(super) fn newer_schema_error(db: &str, version: i64) -> StoreError {
    StoreError::Schema(format!(
        "{db} has schema version {version}, newer than the versions this redrive knows (up to {SCHEMA_VERSION}); \
         use a newer redrive to open it"
    ))
}

/// The highest applied migration, `None` if the database has no
/// `schema_migrations` table.
pub(super) async fn schema_version(client: &Client) -> Result<Option<i64>, tokio_postgres::Error> {
    let exists: bool = client.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(None);
    }
    let row = client.query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations", &[]).await?;
    Ok(Some(row.get(0)))
}

/// Brings the schema to [`SCHEMA_VERSION`]: every pending migration in one
/// transaction, under an advisory transaction lock (several processes opening
/// a fresh database at once apply each migration exactly once). Refuses a
/// database written by a newer redrive.
pub(super) async fn migrate(client: &mut Client, db: &str) -> Result<(), StoreError> {
    let fail = |what: &str, e: tokio_postgres::Error| match map_error(db, &e) {
        StoreError::Unavailable(m) => StoreError::Unavailable(format!("{what} of {db}: {m}")),
        _ => StoreError::Schema(format!("{what} of {db}: {} (is this a redrive database?)", describe(&e))),
    };
    let tx = client.transaction().await.map_err(|e| fail("schema migration", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY]).await.map_err(|e| fail("schema migration lock", e))?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
        .await
        .map_err(|e| fail("schema migration", e))?;
    let current: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_migrations", &[])
        .await
        .map_err(|e| fail("reading the schema version", e))?
        .get(0);
    if current > i64::from(SCHEMA_VERSION) {
        return Err(newer_schema_error(db, current));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let what = format!("applying schema migration {version}");
        tx.batch_execute(sql).await.map_err(|e| fail(&what, e))?;
        if version == SHARDS_VERSION {
            super::shards::backfill(&tx).await.map_err(|e| fail(&what, e))?;
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT)",
            &[&version],
        )
        .await
        .map_err(|e| fail(&what, e))?;
    }
    tx.commit().await.map_err(|e| fail("committing the schema migrations", e))
}
