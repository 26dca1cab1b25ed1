//! The engine's dependency bookkeeping (a leaf module): one
//! [`DependencyState`] per dependency name, shared by every execution, kept by
//! the driver on its single writer path — so with PostgreSQL, where only the
//! lease holder drives executions, deciding here is deciding once for the
//! cluster. The decisions are [`redrive_core::dependency`]'s; this applies them:
//!
//! - [`Dependencies::gate`]: the attempts a machine step just started, each
//!   admitted or held ([`Hold`]; the driver turns a hold into `Event::Defer`).
//! - [`Dependencies::record`]: an attempt's result, for the breaker. A failure
//!   counts when it is retryable and says the dependency is unhealthy
//!   ([`outcome_of`]): `Step.SERVICE_FAULT`, `Step.THROTTLING`, `Step.TIMEOUT`
//!   and `Job.*`. A success, or any other failure (the dependency answered, e.g.
//!   `Action.FAILED`), is a success; the engine's own failures
//!   (`Engine.*`, a stop) count for nothing.
//! - [`Dependencies::take_dirty`]: the states changed since the last call, as
//!   store records; the driver writes them after each batch, so they survive a
//!   restart ([`Dependencies::install`] reads them back).
//!
//! - [`Dependencies::set_peers`]: with `--spread` (an engine per shard), the
//!   states the other shards' engines stored, read at each heartbeat: gates and
//!   breakers decide over them too ([`redrive_core::dependency::Peers`]).
//!
//! Which settings apply to an attempt: [`redrive_core::dependency::effective`]
//! of its action's dependency name over its pipeline's declarations and the
//! server config's. A name with no settings anywhere gates nothing.

use redrive_core::definition::Pipeline;
use redrive_core::dependency::{self, AttemptKind, Dependency, DependencyState, DependencyView, Gate, Outcome, Peers, effective};
use redrive_core::exception::{ExceptionType, Failure};
use redrive_core::machine::{ActionAt, AttemptId, Hold};
use redrive_core::time::Timestamp;
use redrive_store::DependencyRecord;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// What the breaker makes of an attempt's result (`None`: succeeded).
pub fn outcome_of(failure: Option<&Failure>) -> Outcome {
    let Some(f) = failure else { return Outcome::Success };
    match &f.exception_type {
        ExceptionType::ServiceFault
        | ExceptionType::Throttling
        | ExceptionType::Timeout
        | ExceptionType::JobInternalError
        | ExceptionType::JobCapacityError
        | ExceptionType::JobResourceLimit => Outcome::Failure,
        ExceptionType::ActionFailed => Outcome::Success,
        ExceptionType::LimitExceeded | ExceptionType::CorruptState | ExceptionType::SecretMissing => Outcome::Neutral,
        ExceptionType::Custom(name) if name.starts_with("Execution.") => Outcome::Neutral,
        ExceptionType::Custom(_) => Outcome::Success,
    }
}

#[derive(Debug, Default)]
struct Tracked {
    state: DependencyState,
    /// What the other shards' engines hold of it (none without `--spread`).
    peers: Peers,
    /// The settings last applied to it (or the server config's).
    settings: Option<Dependency>,
    /// Attempts it holds now: (execution, action).
    held: HashSet<(String, ActionAt)>,
    /// Attempts it deferred since the engine started.
    deferred_total: u64,
}

/// One dependency as `GET /v1/dependencies` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct DependencySnapshot {
    pub name: String,
    pub settings: Option<Dependency>,
    /// Without settings (read back from the store, not met by an attempt since
    /// the start) the stored breaker state, and no budget.
    pub view: DependencyView,
    pub held: usize,
    pub deferred_total: u64,
}

#[derive(Debug, Default)]
pub struct Dependencies {
    server: Arc<[Dependency]>,
    tracked: BTreeMap<String, Tracked>,
    dirty: BTreeSet<String>,
}

impl Dependencies {
    pub fn new(server: Arc<[Dependency]>) -> Dependencies {
        let mut d = Dependencies { server: server.clone(), tracked: BTreeMap::new(), dirty: BTreeSet::new() };
        for dep in server.iter() {
            d.tracked.entry(dep.name.to_string()).or_default().settings = Some(dep.clone());
        }
        d
    }

    /// States read back from the store at start (an unreadable one starts
    /// afresh; a half-open one has no probe out, [`DependencyState::restored`]).
    pub fn install(&mut self, records: Vec<DependencyRecord>) {
        for r in records {
            match serde_json::from_str::<DependencyState>(&r.state_json) {
                Ok(state) => self.tracked.entry(r.name).or_default().state = state.restored(),
                Err(e) => tracing::warn!(dependency = r.name, error = %e, "unreadable stored dependency state; starting it afresh"),
            }
        }
    }

    /// The states the other shards' engines stored (every name's; a name
    /// missing here has none there any more).
    pub fn set_peers(&mut self, records: Vec<DependencyRecord>) {
        let mut by_name: BTreeMap<String, Vec<DependencyState>> = BTreeMap::new();
        for r in records {
            match serde_json::from_str::<DependencyState>(&r.state_json) {
                Ok(state) => by_name.entry(r.name).or_default().push(state),
                Err(e) => tracing::warn!(dependency = r.name, error = %e, "unreadable dependency state of another shard; left out"),
            }
        }
        for t in self.tracked.values_mut() {
            t.peers = Peers::default();
        }
        for (name, states) in by_name {
            self.tracked.entry(name).or_default().peers = Peers::fold(&states);
        }
    }

    /// Gates the attempts one machine step of `execution_id` just started: the
    /// ones held, with why and until when.
    pub fn gate(&mut self, p: &Pipeline, execution_id: &str, now: Timestamp, starts: &[AttemptId]) -> Vec<(AttemptId, Hold)> {
        let mut holds = Vec::new();
        for id in starts {
            let Some(name) = &p.stages[id.at.stage].actions[id.at.action].dependency else { continue };
            let Some(spec) = effective(name.as_str(), &p.dependencies, &self.server).filter(|d| !d.is_name_only()) else { continue };
            let kind = if id.attempt <= 1 { AttemptKind::First } else { AttemptKind::Retry };
            let t = self.tracked.entry(name.to_string()).or_default();
            if t.settings.as_ref() != Some(spec) {
                t.settings = Some(spec.clone());
            }
            let key = (execution_id.to_string(), id.at);
            match dependency::gate(spec, &mut t.state, &t.peers, now, kind) {
                Gate::Admit => {
                    t.held.remove(&key);
                }
                Gate::Defer { until, reason } => {
                    t.held.insert(key);
                    t.deferred_total += 1;
                    holds.push((*id, Hold { dependency: name.clone(), reason, since: now, until }));
                }
            }
            self.dirty.insert(name.to_string());
        }
        holds
    }

    /// An attempt of `p` (started at `started_at`) ended with `failure` (`None`: succeeded).
    pub fn record(&mut self, p: &Pipeline, id: AttemptId, started_at: Timestamp, failure: Option<&Failure>, now: Timestamp) {
        let Some(name) = &p.stages[id.at.stage].actions[id.at.action].dependency else { return };
        let Some(spec) = effective(name.as_str(), &p.dependencies, &self.server).filter(|d| d.circuit_breaker.is_some()) else {
            return;
        };
        let t = self.tracked.entry(name.to_string()).or_default();
        let before = t.state.breaker;
        dependency::record(spec, &mut t.state, &t.peers, now, started_at, outcome_of(failure));
        if t.state.breaker != before {
            tracing::info!(dependency = %name, from = before.as_str(), to = t.state.breaker.as_str(), "circuit breaker moved");
            self.dirty.insert(name.to_string());
        }
    }

    /// An execution left memory for good (finished, given up): it holds nothing.
    pub fn forget_execution(&mut self, execution_id: &str) {
        for t in self.tracked.values_mut() {
            t.held.retain(|(e, _)| e != execution_id);
        }
    }

    /// The states changed since the last call, as store records.
    pub fn take_dirty(&mut self, now: Timestamp) -> Vec<DependencyRecord> {
        std::mem::take(&mut self.dirty)
            .into_iter()
            .filter_map(|name| {
                let t = self.tracked.get(&name)?;
                let state_json = serde_json::to_string(&t.state).expect("a dependency state serialises");
                Some(DependencyRecord { name, state_json, updated_at: now })
            })
            .collect()
    }

    pub fn snapshot(&self, now: Timestamp) -> Vec<DependencySnapshot> {
        self.tracked
            .iter()
            .map(|(name, t)| DependencySnapshot {
                name: name.clone(),
                settings: t.settings.clone(),
                view: match &t.settings {
                    Some(s) => dependency::view(s, &t.state, &t.peers, now),
                    None => dependency::view_unset(&t.state, &t.peers, now),
                },
                held: t.held.len(),
                deferred_total: t.deferred_total,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A half-open breaker stored with its one probe out (the engine stopped
    /// while the probe ran): read back, the next due attempt is that probe
    /// again instead of being held for ever.
    #[test]
    fn a_probe_out_when_the_engine_stopped_does_not_hold_attempts_after_a_restart() {
        let text = "name: p\ndependencies:\n  - name: svc\n    circuitBreaker: {failureThreshold: 1, coolDown: 1s, halfOpenProbes: 1}\nstages:\n  - name: S\n    actions:\n      - name: A\n        noop: {}\n        dependency: svc\n";
        let p = redrive_core::definition::parse_pipeline_text(text).expect("a valid pipeline");
        let stored = DependencyState {
            breaker: dependency::Breaker::HalfOpen {
                opened_at: Timestamp::from_unix_ms(1_000),
                since: Timestamp::from_unix_ms(2_000),
                probes_out: 1,
            },
            ..DependencyState::default()
        };
        let record = DependencyRecord {
            name: "svc".into(),
            state_json: serde_json::to_string(&stored).unwrap(),
            updated_at: Timestamp::from_unix_ms(2_000),
        };
        let mut deps = Dependencies::new(Arc::from(Vec::new()));
        deps.install(vec![record]);
        let id = AttemptId { at: ActionAt { stage: 0, action: 0 }, series: 1, attempt: 1 };
        assert_eq!(deps.gate(&p, "e1", Timestamp::from_unix_ms(60_000), &[id]), vec![], "the probe goes out");
    }

    #[test]
    fn failures_count_when_they_say_the_dependency_is_unhealthy() {
        let f = |t: ExceptionType| Failure::new(t, "x");
        let cases = [
            (None, Outcome::Success),
            (Some(f(ExceptionType::ServiceFault)), Outcome::Failure),
            (Some(f(ExceptionType::Throttling)), Outcome::Failure),
            (Some(f(ExceptionType::Timeout)), Outcome::Failure),
            (Some(f(ExceptionType::JobCapacityError)), Outcome::Failure),
            (Some(f(ExceptionType::ActionFailed)), Outcome::Success),
            (Some(f(ExceptionType::Custom("PaymentDeclined".into()))), Outcome::Success),
            (Some(f(ExceptionType::Custom("Execution.STOPPED".into()))), Outcome::Neutral),
            (Some(f(ExceptionType::SecretMissing)), Outcome::Neutral),
        ];
        for (failure, expected) in cases {
            assert_eq!(outcome_of(failure.as_ref()), expected, "{failure:?}");
        }
    }
}
