//! Retention: how long finished executions, resolved dead-letter entries and
//! finished redrive runs are kept, and the pure rules of a sweep. The engine
//! reads candidates from the store, asks [`Retention::expired`] which may go
//! now, and deletes them in small steps.

use crate::time::Timestamp;

const DAY_MS: u64 = 86_400_000;
/// Finished executions (and their ledgers) are kept this long by default.
pub const DEFAULT_EXECUTIONS_MS: u64 = 30 * DAY_MS;
/// Resolved dead-letter entries are kept this long by default.
pub const DEFAULT_DLQ_ENTRIES_MS: u64 = 30 * DAY_MS;
/// Finished redrive runs are kept this long by default.
pub const DEFAULT_REDRIVE_RUNS_MS: u64 = 90 * DAY_MS;
/// Audit records are kept this long by default.
pub const DEFAULT_AUDIT_RECORDS_MS: u64 = 90 * DAY_MS;
/// The shortest retention the config accepts.
pub const MIN_KEEP_MS: u64 = 1_000;
/// The longest (100 years); anything longer is written `forever`.
pub const MAX_KEEP_MS: u64 = 36_500 * DAY_MS;

/// How long one kind of record is kept once finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Forever,
    /// Between [`MIN_KEEP_MS`] and [`MAX_KEEP_MS`].
    For {
        ms: u64,
    },
}

impl Keep {
    /// `None` outside [`MIN_KEEP_MS`]..=[`MAX_KEEP_MS`].
    pub fn for_ms(ms: u64) -> Option<Keep> {
        (MIN_KEEP_MS..=MAX_KEEP_MS).contains(&ms).then_some(Keep::For { ms })
    }

    /// A pipeline's `retentionDays` (1 to 36 500, checked by the definition parser).
    pub fn days(days: u32) -> Keep {
        Keep::For { ms: u64::from(days).saturating_mul(DAY_MS).clamp(MIN_KEEP_MS, MAX_KEEP_MS) }
    }

    /// Records that finished before this instant may go at `now` (`None`: none may).
    pub fn cutoff(self, now: Timestamp) -> Option<Timestamp> {
        match self {
            Keep::Forever => None,
            Keep::For { ms } => Some(Timestamp::from_unix_ms(now.unix_ms().saturating_sub(ms as i64))),
        }
    }

    /// Whether a record that finished at `finished_at` may go at `now`.
    pub fn expired(self, finished_at: Timestamp, now: Timestamp) -> bool {
        self.cutoff(now).is_some_and(|cutoff| finished_at < cutoff)
    }

    /// The shorter of two.
    pub fn min(self, other: Keep) -> Keep {
        match (self, other) {
            (Keep::For { ms: a }, Keep::For { ms: b }) => Keep::For { ms: a.min(b) },
            (Keep::Forever, k) | (k, Keep::Forever) => k,
        }
    }
}

/// The server's `retention:`: one [`Keep`] per kind of record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Finished executions without a `retentionDays` of their own.
    pub executions: Keep,
    /// `RESOLVED` dead-letter entries, from their resolution.
    pub dlq_entries: Keep,
    /// Finished redrive runs, from their end; finished bulk retry operations
    /// (with their results) too.
    pub redrive_runs: Keep,
    /// Audit records, from when they were written.
    pub audit_records: Keep,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            executions: Keep::For { ms: DEFAULT_EXECUTIONS_MS },
            dlq_entries: Keep::For { ms: DEFAULT_DLQ_ENTRIES_MS },
            redrive_runs: Keep::For { ms: DEFAULT_REDRIVE_RUNS_MS },
            audit_records: Keep::For { ms: DEFAULT_AUDIT_RECORDS_MS },
        }
    }
}

impl Retention {
    /// How long an execution is kept: its pipeline's `retentionDays`, else the default.
    pub fn execution_keep(&self, retention_days: Option<u32>) -> Keep {
        retention_days.map_or(self.executions, Keep::days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_ms(ms)
    }

    #[test]
    fn keep_bounds() {
        assert_eq!(Keep::for_ms(999), None);
        assert_eq!(Keep::for_ms(1_000), Some(Keep::For { ms: 1_000 }));
        assert_eq!(Keep::for_ms(MAX_KEEP_MS + 1), None);
        assert_eq!(Keep::days(2), Keep::For { ms: 2 * DAY_MS });
        assert_eq!(Keep::days(u32::MAX), Keep::For { ms: MAX_KEEP_MS });
    }

    #[test]
    fn expiry_is_strictly_before_the_cutoff() {
        let keep = Keep::For { ms: 1_000 };
        assert_eq!(keep.cutoff(at(5_000)), Some(at(4_000)));
        assert!(keep.expired(at(3_999), at(5_000)));
        assert!(!keep.expired(at(4_000), at(5_000)), "exactly the retention old: kept");
        assert!(!Keep::Forever.expired(at(i64::MIN), at(i64::MAX)));
        assert_eq!(Keep::For { ms: MAX_KEEP_MS }.cutoff(at(0)), Some(at(-(MAX_KEEP_MS as i64))), "no overflow");
    }

    #[test]
    fn a_pipeline_overrides_the_default() {
        let r = Retention::default();
        assert_eq!(r.execution_keep(None), Keep::For { ms: DEFAULT_EXECUTIONS_MS });
        assert_eq!(r.execution_keep(Some(1)), Keep::For { ms: DAY_MS });
        let forever = Retention { executions: Keep::Forever, ..r };
        assert_eq!(forever.execution_keep(Some(3)), Keep::For { ms: 3 * DAY_MS }, "a pipeline's own days win over forever");
    }

    #[test]
    fn min_is_the_shorter() {
        let (a, b) = (Keep::For { ms: 1_000 }, Keep::For { ms: 2_000 });
        assert_eq!(a.min(b), a);
        assert_eq!(b.min(a), a);
        assert_eq!(a.min(Keep::Forever), a);
        assert_eq!(Keep::Forever.min(Keep::Forever), Keep::Forever);
    }
}
