//! The read queries, and the query builders whose shape depends on a filter.
//! Builders hold only column names and `$n` placeholders; values are bound.

use crate::{DlqEntryFilter, DlqEntryState};
use tokio_postgres::types::ToSql;

/// The latest version of a live pipeline.
pub(super) const SQL_LATEST_LIVE_PIPELINE: &str = "SELECT p.name, p.version, p.definition_json, p.source_dir, p.created_at \
     FROM pipeline_names n JOIN pipelines p ON p.name = n.name \
     WHERE n.name = $1 AND n.deleted_at IS NULL ORDER BY p.version DESC LIMIT 1";
pub(super) const SQL_PIPELINE_VERSION: &str = "SELECT name, version, definition_json, source_dir, created_at \
     FROM pipelines WHERE name = $1 AND version = $2";
/// The latest version of each live pipeline, by name (bytes: `COLLATE "C"`).
pub(super) const SQL_LIST_PIPELINES: &str = "SELECT p.name, p.version, p.definition_json, p.source_dir, p.created_at \
     FROM pipeline_names n JOIN pipelines p ON p.name = n.name \
     AND p.version = (SELECT MAX(m.version) FROM pipelines m WHERE m.name = n.name) \
     WHERE n.deleted_at IS NULL ORDER BY n.name LIMIT $1";
pub(super) const SQL_LIST_PIPELINES_AFTER: &str = "SELECT p.name, p.version, p.definition_json, p.source_dir, p.created_at \
     FROM pipeline_names n JOIN pipelines p ON p.name = n.name \
     AND p.version = (SELECT MAX(m.version) FROM pipelines m WHERE m.name = n.name) \
     WHERE n.deleted_at IS NULL AND n.name > $2 ORDER BY n.name LIMIT $1";

macro_rules! execution_columns {
    () => {
        "id, pipeline_name, pipeline_version, status, input_json, state_json, version, created_at, updated_at, \
         fault_type, fault_message, kind"
    };
}
pub(super) const SQL_GET_EXECUTION: &str = concat!("SELECT ", execution_columns!(), " FROM executions WHERE id = $1");
pub(super) const SQL_GET_EXECUTIONS: &str = concat!("SELECT ", execution_columns!(), " FROM executions WHERE id = ANY($1)");
pub(super) const SQL_SHARD_GET_EXECUTIONS: &str =
    concat!("SELECT ", execution_columns!(), " FROM executions WHERE id = ANY($1) AND shard = $2");

/// `list_executions`: newest first, `(created_at DESC, id DESC)`. Parameters in
/// order: the limit, then kind and name if `by_target`, then the cursor, then
/// the shard if `in_shard`.
pub(super) fn list_executions_sql(by_target: bool, unfinished: bool, before: bool, in_shard: bool) -> String {
    let mut conditions = Vec::new();
    let mut n = 1;
    if by_target {
        conditions.push(format!("kind = ${} AND pipeline_name = ${}", n + 1, n + 2));
        n += 2;
    }
    if unfinished {
        conditions.push("status = 'InProgress'".to_owned());
    }
    if before {
        conditions.push(format!("(created_at, id) < (${}, ${})", n + 1, n + 2));
        n += 2;
    }
    if in_shard {
        conditions.push(format!("shard = ${}", n + 1));
    }
    format!(
        concat!("SELECT ", execution_columns!(), " FROM executions {}ORDER BY created_at DESC, id DESC LIMIT $1"),
        where_clause(&conditions)
    )
}

macro_rules! ledger_columns {
    () => {
        "seq, execution_id, stage, action, series, attempt, \"trigger\", started_at, finished_at, outcome, \
         exception_type, message, decision_json"
    };
}
pub(super) const SQL_LEDGER: &str = concat!("SELECT ", ledger_columns!(), " FROM ledger WHERE execution_id = $1 ORDER BY seq");

/// `list_ledger`: newest first. Parameters: limit, kind, name, then the
/// execution if `by_execution`, then the `before` seq.
pub(super) fn list_ledger_sql(by_execution: bool, before: bool) -> String {
    let mut conditions = vec!["kind = $2 AND pipeline_name = $3".to_owned()];
    let mut n = 3;
    if by_execution {
        n += 1;
        conditions.push(format!("execution_id = ${n}"));
    }
    if before {
        n += 1;
        conditions.push(format!("seq < ${n}"));
    }
    format!(concat!("SELECT ", ledger_columns!(), " FROM ledger {}ORDER BY seq DESC LIMIT $1"), where_clause(&conditions))
}

pub(super) const SQL_DUE_TIMERS: &str =
    "SELECT execution_id, key, due_at FROM timers WHERE due_at <= $1 ORDER BY due_at, execution_id, key LIMIT $2";
pub(super) const SQL_DUE_TIMERS_AFTER: &str = "SELECT execution_id, key, due_at FROM timers WHERE due_at <= $1 \
     AND (due_at, execution_id, key) > ($2, $3, $4) ORDER BY due_at, execution_id, key LIMIT $5";
pub(super) const SQL_NEXT_TIMER_DUE: &str = "SELECT MIN(due_at) FROM timers";
pub(super) const SQL_COUNT_TIMERS: &str = "SELECT COUNT(*) FROM timers";
/// The same, for one shard's store: the shard is the last parameter.
pub(super) const SQL_SHARD_DUE_TIMERS: &str = "SELECT execution_id, key, due_at FROM timers WHERE shard = $3 AND due_at <= $1 \
     ORDER BY due_at, execution_id, key LIMIT $2";
pub(super) const SQL_SHARD_DUE_TIMERS_AFTER: &str = "SELECT execution_id, key, due_at FROM timers WHERE shard = $6 AND due_at <= $1 \
     AND (due_at, execution_id, key) > ($2, $3, $4) ORDER BY due_at, execution_id, key LIMIT $5";
pub(super) const SQL_SHARD_NEXT_TIMER_DUE: &str = "SELECT MIN(due_at) FROM timers WHERE shard = $1";
pub(super) const SQL_SHARD_COUNT_TIMERS: &str = "SELECT COUNT(*) FROM timers WHERE shard = $1";

/// Finished executions no dead-letter entry names, oldest created first, from
/// `executions_created_id` (finished before the cutoff means created before it).
/// `$1` the cutoff, `($2, $3)` the cursor (`$2` = -1 for none), `$4` the limit,
/// `$5` the shard (NULL: every shard).
pub(super) const SQL_PRUNE_CANDIDATES: &str = "SELECT e.id, e.pipeline_name, e.kind, e.status, e.version, e.created_at, e.updated_at
   FROM executions e
  WHERE e.created_at < $1 AND (e.created_at, e.id) > ($2, $3::text) AND ($5::SMALLINT IS NULL OR e.shard = $5)
    AND e.status IN ('Succeeded', 'Failed', 'Stopped', 'Superseded') AND e.updated_at < $1
    AND NOT EXISTS (SELECT 1 FROM dlq_entries d WHERE d.execution_id = e.id)
    AND NOT EXISTS (SELECT 1 FROM dlq_entries d WHERE d.redriven_to = e.id)
  ORDER BY e.created_at, e.id
  LIMIT $4";
pub(super) const SQL_COUNT_PRUNABLE_DLQ_ENTRIES: &str =
    "SELECT COUNT(*) FROM dlq_entries WHERE state = 'RESOLVED' AND entered_at < $1 AND resolved_at < $1";
pub(super) const SQL_COUNT_PRUNABLE_AUDIT: &str = "SELECT COUNT(*) FROM audit_log WHERE at < $1";
pub(super) const SQL_COUNT_PRUNABLE_REDRIVE_RUNS: &str =
    "SELECT COUNT(*) FROM redrive_runs WHERE started_at < $1 AND status <> 'RUNNING' AND finished_at < $1";
pub(super) const SQL_EXECUTION_TIMERS: &str = "SELECT execution_id, key, due_at FROM timers WHERE execution_id = $1 ORDER BY key";

/// The columns of a [`crate::DlqQueueStats`] of the queue `q`.
macro_rules! dlq_queue_stats_columns {
    () => {
        "q.name, q.max_redrives, q.created_at, \
         (SELECT COUNT(*) FROM dlq_entries e WHERE e.queue = q.name AND e.state = 'QUEUED'), \
         (SELECT COUNT(*) FROM dlq_entries e WHERE e.queue = q.name AND e.state = 'QUEUED' AND e.redrive_count >= q.max_redrives), \
         (SELECT COUNT(*) FROM dlq_entries e WHERE e.queue = q.name AND e.state = 'REDRIVEN'), \
         (SELECT MIN(e.entered_at) FROM dlq_entries e WHERE e.queue = q.name AND e.state = 'QUEUED')"
    };
}
pub(super) const SQL_GET_DLQ_QUEUE: &str = concat!("SELECT ", dlq_queue_stats_columns!(), " FROM dlq_queues q WHERE q.name = $1");

/// `list_dlq_queues`: parameters limit, then prefix, prefix end, after (those given).
pub(super) fn list_dlq_queues_sql(prefix: bool, prefix_end: bool, after: bool) -> String {
    let mut conditions = Vec::new();
    let mut n = 1;
    for (given, condition) in [(prefix, "q.name >= "), (prefix_end, "q.name < "), (after, "q.name > ")] {
        if given {
            n += 1;
            conditions.push(format!("{condition}${n}"));
        }
    }
    format!(concat!("SELECT ", dlq_queue_stats_columns!(), " FROM dlq_queues q {}ORDER BY q.name LIMIT $1"), where_clause(&conditions))
}

/// The columns of a [`crate::DlqEntryRecord`]: the entry `e` with its queue `q`.
macro_rules! dlq_entry_columns {
    () => {
        "e.id, e.queue, e.state, e.pipeline_name, e.pipeline_version, e.execution_id, e.stage, e.action, \
         e.exception_type, e.message, e.input_json, e.detail_json, e.redrive_count, q.max_redrives, \
         e.first_failure_at, e.last_failure_at, e.entered_at, e.redriven_to, e.redriven_at, e.resolved_at, e.updated_at, e.kind"
    };
}
pub(super) const SQL_GET_DLQ_ENTRY: &str =
    concat!("SELECT ", dlq_entry_columns!(), " FROM dlq_entries e JOIN dlq_queues q ON q.name = e.queue WHERE e.id = $1");

pub(super) const SQL_GET_REDRIVE_RUN: &str = "SELECT id, schedule, status, dry_run, started_at, finished_at, request_json, \
     summary_json FROM redrive_runs WHERE id = $1";

/// `list_redrive_runs`: newest first. Parameters: limit, schedule (if given), cursor.
pub(super) fn list_redrive_runs_sql(by_schedule: bool, before: bool) -> String {
    let mut conditions = Vec::new();
    let mut n = 1;
    if by_schedule {
        n += 1;
        conditions.push(format!("schedule = ${n}"));
    }
    if before {
        conditions.push(format!("(started_at, id) < (${}, ${})", n + 1, n + 2));
    }
    format!(
        "SELECT id, schedule, status, dry_run, started_at, finished_at, request_json, summary_json \
         FROM redrive_runs {}ORDER BY started_at DESC, id DESC LIMIT $1",
        where_clause(&conditions)
    )
}

fn where_clause(conditions: &[String]) -> String {
    if conditions.is_empty() { String::new() } else { format!("WHERE {} ", conditions.join(" AND ")) }
}

/// A [`DlqEntryFilter`] as SQL over `dlq_entries e` (joined with its queue `q`
/// where needed). A queue prefix is the byte range `[prefix, successor)` (see
/// [`prefix_upper_bound`]), which the `COLLATE "C"` index serves.
pub(super) struct DlqEntryQuery {
    conditions: Vec<String>,
    values: Vec<Box<dyn ToSql + Sync + Send>>,
    joins_queue: bool,
}

impl DlqEntryQuery {
    /// `state` replaces `filter.state` (a purge covers only `QUEUED` entries);
    /// `with_cursor` applies `filter.after` (listings only). The values are
    /// `$1`, `$2`, … in order ([`DlqEntryQuery::params`]); a listing binds its
    /// limit after them.
    pub(super) fn new(filter: &DlqEntryFilter, state: Option<DlqEntryState>, with_cursor: bool) -> DlqEntryQuery {
        let mut q = DlqEntryQuery { conditions: Vec::new(), values: Vec::new(), joins_queue: false };
        if let Some(queue) = &filter.queue {
            q.push("e.queue = ", Box::new(queue.clone()));
        }
        if let Some(prefix) = filter.queue_prefix.as_deref().filter(|p| !p.is_empty()) {
            q.push("e.queue >= ", Box::new(prefix.to_owned()));
            if let Some(end) = prefix_upper_bound(prefix) {
                q.push("e.queue < ", Box::new(end));
            }
        }
        if let Some(state) = state {
            q.push("e.state = ", Box::new(state.as_str().to_owned()));
        }
        if let Some(poison) = filter.poison {
            q.conditions.push(if poison { "e.redrive_count >= q.max_redrives" } else { "e.redrive_count < q.max_redrives" }.to_owned());
            q.joins_queue = true;
        }
        if let Some(exception_type) = &filter.exception_type {
            q.push("e.exception_type = ", Box::new(exception_type.clone()));
        }
        if let Some(name) = &filter.source_name {
            q.push("e.pipeline_name = ", Box::new(name.clone()));
        }
        if let Some(before) = filter.entered_at_or_before {
            q.push("e.entered_at <= ", Box::new(before.unix_ms()));
        }
        if let Some(cursor) = filter.after.as_ref().filter(|_| with_cursor) {
            let n = q.values.len();
            q.conditions.push(format!("(e.entered_at, e.id) > (${}, ${})", n + 1, n + 2));
            q.values.push(Box::new(cursor.entered_at.unix_ms()));
            q.values.push(Box::new(cursor.id.clone()));
        }
        q
    }

    fn push(&mut self, condition: &str, value: Box<dyn ToSql + Sync + Send>) {
        self.values.push(value);
        self.conditions.push(format!("{condition}${}", self.values.len()));
    }

    /// The bound values, `$1` first.
    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect()
    }

    fn where_clause(&self) -> String {
        where_clause(&self.conditions)
    }

    fn tables_sql(&self) -> &'static str {
        if self.joins_queue { "dlq_entries e JOIN dlq_queues q ON q.name = e.queue" } else { "dlq_entries e" }
    }

    /// The `list_dlq_entries` query, oldest first; the limit is the last parameter.
    pub(super) fn list_sql(&self) -> String {
        format!(
            concat!(
                "SELECT ",
                dlq_entry_columns!(),
                " FROM dlq_entries e JOIN dlq_queues q ON q.name = e.queue {}ORDER BY e.entered_at, e.id LIMIT ${}"
            ),
            self.where_clause(),
            self.values.len() + 1
        )
    }

    pub(super) fn count_sql(&self) -> String {
        format!("SELECT COUNT(*) FROM {} {}", self.tables_sql(), self.where_clause())
    }

    pub(super) fn purge_sql(&self) -> String {
        format!("DELETE FROM dlq_entries WHERE id IN (SELECT e.id FROM {} {})", self.tables_sql(), self.where_clause())
    }
}

/// The least string greater than every string starting with `prefix` in byte
/// order, `None` if there is none (see the SQLite backend's twin).
pub(super) fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}
