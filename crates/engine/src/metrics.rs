//! The engine's Prometheus figures (`prometheus-client` types, encoded by the
//! api crate at `/metrics`): attempts, retries scheduled, give-ups, executions,
//! redrive runs, and histograms of attempt durations, retry delays, timer
//! lateness, store commit latency and transitions per commit.
//!
//! Counting happens where effects are applied: the driver counts an attempt once
//! the transition that records it is durable, so `redrive_attempts_total` equals
//! the attempts in the ledger. The driver's counting is cheap: [`Recorder`] keeps
//! its own map from label values to the shared counters (an atomic each), so the
//! writer's path takes no lock; histograms are atomic buckets
//! ([`AtomicHistogram`]). Label values are bounded: at most
//! [`MAX_EXCEPTION_TYPES`] exception types, then `other`; at most
//! [`MAX_SERIES_PER_FAMILY`] series per family, then new pipelines/actions are
//! counted under `other`.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use redrive_core::exception::Failure;
use redrive_core::policy::{Decision, PolicyRef};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinct exception types counted under their own name; later ones are `other`.
pub const MAX_EXCEPTION_TYPES: usize = 64;
/// Series one family of the driver holds at most; past it, a new pipeline or
/// action is counted as `other` (exception type, outcome and reason kept).
pub const MAX_SERIES_PER_FAMILY: usize = 4096;
/// The label value that stands for values past a cap.
pub const OTHER: &str = "other";
/// The `exception_type` of a successful attempt.
pub const NO_EXCEPTION: &str = "none";

const ATTEMPT_SECONDS: &[f64] = &[0.001, 0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0];
const RETRY_DELAY_SECONDS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21_600.0, 86_400.0];
const COMMIT_SECONDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
const TRANSITIONS: &[f64] = &[1.0, 2.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0];
const LATENESS_SECONDS: &[f64] = &[0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0, 3600.0];

/// What an execution runs, as the `kind` label says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Pipeline,
    Function,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pipeline => "pipeline",
            Kind::Function => "function",
        }
    }
}

/// A histogram whose buckets, sum and count are atomics: observing takes no lock.
#[derive(Clone, Debug)]
pub struct AtomicHistogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    /// Upper bounds, ascending; the last bucket (`+Inf`) is implicit.
    bounds: &'static [f64],
    /// Non-cumulative counts, one per bound plus `+Inf`.
    counts: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum_bits: AtomicU64,
}

impl AtomicHistogram {
    pub fn new(bounds: &'static [f64]) -> AtomicHistogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        AtomicHistogram { inner: Arc::new(HistogramInner { bounds, counts, sum_bits: AtomicU64::new(0f64.to_bits()) }) }
    }

    pub fn observe(&self, value: f64) {
        let i = self.inner.bounds.iter().position(|b| value <= *b).unwrap_or(self.inner.bounds.len());
        self.inner.counts[i].fetch_add(1, Ordering::Relaxed);
        let add = |bits: u64| Some((f64::from_bits(bits) + value).to_bits());
        let _ = self.inner.sum_bits.fetch_update(Ordering::Relaxed, Ordering::Relaxed, add);
    }

    /// (sum, count, per-bucket counts with their upper bounds, `+Inf` last).
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let bounds = self.inner.bounds.iter().copied().chain(std::iter::once(f64::INFINITY));
        let buckets: Vec<(f64, u64)> = bounds.zip(self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed))).collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        (f64::from_bits(self.inner.sum_bits.load(Ordering::Relaxed)), count, buckets)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    kind: &'static str,
    pipeline: String,
    action: String,
    exception_type: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    kind: &'static str,
    pipeline: String,
    action: String,
    exception_type: String,
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GiveUpLabels {
    kind: &'static str,
    pipeline: String,
    action: String,
    exception_type: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadLetterLabels {
    kind: &'static str,
    pipeline: String,
    queue: String,
    exception_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutionLabels {
    kind: &'static str,
    pipeline: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

type HistogramFamily<L> = Family<L, AtomicHistogram, fn() -> AtomicHistogram>;

fn attempt_histogram() -> AtomicHistogram {
    AtomicHistogram::new(ATTEMPT_SECONDS)
}

/// The engine's figures, shared by the driver (which counts), the committer
/// (commit latency), redrives, and `/metrics` (which encodes them).
pub struct EngineMetrics {
    attempts: Family<AttemptLabels, Counter>,
    retries: Family<RetryLabels, Counter>,
    give_ups: Family<GiveUpLabels, Counter>,
    dead_letters: Family<DeadLetterLabels, Counter>,
    executions: Family<ExecutionLabels, Counter>,
    quarantined: Counter,
    redrive_runs: Family<StatusLabel, Counter>,
    attempt_seconds: HistogramFamily<KindLabel>,
    retry_delay_seconds: AtomicHistogram,
    timer_lateness_seconds: AtomicHistogram,
    commit_seconds: AtomicHistogram,
    transitions_per_commit: AtomicHistogram,
}

impl std::fmt::Debug for EngineMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineMetrics").finish_non_exhaustive()
    }
}

impl Default for EngineMetrics {
    fn default() -> Self {
        EngineMetrics {
            attempts: Family::default(),
            retries: Family::default(),
            give_ups: Family::default(),
            dead_letters: Family::default(),
            executions: Family::default(),
            quarantined: Counter::default(),
            redrive_runs: Family::default(),
            attempt_seconds: Family::new_with_constructor(attempt_histogram),
            retry_delay_seconds: AtomicHistogram::new(RETRY_DELAY_SECONDS),
            timer_lateness_seconds: AtomicHistogram::new(LATENESS_SECONDS),
            commit_seconds: AtomicHistogram::new(COMMIT_SECONDS),
            transitions_per_commit: AtomicHistogram::new(TRANSITIONS),
        }
    }
}

impl EngineMetrics {
    /// Adds every figure (shared, not copied) and `redrive_build_info` to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register("redrive_attempts", "Finished attempts (actions and function steps), durable in the ledger", self.attempts.clone());
        r.register("redrive_retries_scheduled", "Retries scheduled, by the policy that scheduled them", self.retries.clone());
        r.register("redrive_give_ups", "Failed attempts that were not retried, by reason", self.give_ups.clone());
        r.register("redrive_dead_letters", "Dead-letter entries written (an execution that failed for good)", self.dead_letters.clone());
        r.register("redrive_executions", "Executions started (status Started) and finished, by status", self.executions.clone());
        r.register("redrive_executions_quarantined", "Executions the engine gave up on (quarantined as Failed)", self.quarantined.clone());
        r.register("redrive_redrive_runs", "Dead-letter redrive runs that ended, by status", self.redrive_runs.clone());
        r.register("redrive_attempt_duration_seconds", "Attempt durations, start to finish", self.attempt_seconds.clone());
        r.register("redrive_retry_delay_seconds", "Delays of scheduled retries (after jitter and hints)", self.retry_delay_seconds.clone());
        r.register(
            "redrive_timer_lateness_seconds",
            "How late durable timers fired (actual start - due)",
            self.timer_lateness_seconds.clone(),
        );
        r.register("redrive_store_commit_seconds", "Store commit latency (group commits, retries included)", self.commit_seconds.clone());
        r.register("redrive_store_transitions_per_commit", "Transitions written per store commit", self.transitions_per_commit.clone());
        let build = Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]);
        r.register("redrive_build", "The running redrive build", build);
    }

    /// A group commit of `transitions` transitions took `seconds`.
    pub fn commit(&self, transitions: usize, seconds: f64) {
        self.commit_seconds.observe(seconds);
        self.transitions_per_commit.observe(transitions as f64);
    }

    /// A redrive run ended with `status` (`SUCCEEDED`, `FAILED`, `INTERRUPTED`).
    pub fn redrive_run_ended(&self, status: &str) {
        self.redrive_runs.get_or_create(&StatusLabel { status: status.to_string() }).inc();
    }
}

/// One finished attempt, as the driver counts it once durable.
pub(crate) struct AttemptSample<'a> {
    pub kind: Kind,
    /// The pipeline's or the function's name.
    pub target: &'a str,
    /// The action's or the step's name.
    pub action: &'a str,
    pub failure: Option<&'a Failure>,
    pub duration_ms: i64,
    pub decision: Option<&'a Decision>,
}

/// Series of one family the driver increments, found by their label values
/// without a lock (the shared family is touched once per new series).
struct Series<M> {
    by_key: HashMap<String, M>,
    /// Reused to build lookup keys without allocating.
    key: String,
}

impl<M> Default for Series<M> {
    fn default() -> Self {
        Series { by_key: HashMap::new(), key: String::new() }
    }
}

impl<M> Series<M> {
    /// The series of `parts` (kind, then names — pipeline, action — then the
    /// family's own values); past [`MAX_SERIES_PER_FAMILY`], a new one is looked
    /// up with its `names` names replaced by [`OTHER`].
    fn get<const N: usize>(&mut self, mut parts: [&str; N], names: usize, make: impl FnOnce([&str; N]) -> M) -> &M {
        self.set_key(&parts);
        if !self.by_key.contains_key(self.key.as_str()) {
            if self.by_key.len() >= MAX_SERIES_PER_FAMILY {
                parts.iter_mut().skip(1).take(names).for_each(|p| *p = OTHER);
                self.set_key(&parts);
            }
            if !self.by_key.contains_key(self.key.as_str()) {
                self.by_key.insert(self.key.clone(), make(parts));
            }
        }
        &self.by_key[self.key.as_str()]
    }

    fn set_key(&mut self, parts: &[&str]) {
        self.key.clear();
        for p in parts {
            self.key.push_str(p);
            self.key.push('\u{1f}');
        }
    }
}

/// The driver's side of the figures: it owns the lookup of label values to
/// counters (no lock on the writer's path), and caps exception types.
pub(crate) struct Recorder {
    metrics: Arc<EngineMetrics>,
    attempts: Series<Counter>,
    retries: Series<Counter>,
    give_ups: Series<Counter>,
    dead_letters: Series<Counter>,
    executions: Series<Counter>,
    exception_types: HashSet<String>,
    /// Attempt durations of pipelines' actions, and of functions' steps.
    attempt_seconds: [AtomicHistogram; 2],
}

impl Recorder {
    pub fn new(metrics: Arc<EngineMetrics>) -> Recorder {
        let histogram = |kind: Kind| metrics.attempt_seconds.get_or_create(&KindLabel { kind: kind.as_str() }).clone();
        Recorder {
            attempt_seconds: [histogram(Kind::Pipeline), histogram(Kind::Function)],
            metrics,
            attempts: Series::default(),
            retries: Series::default(),
            give_ups: Series::default(),
            dead_letters: Series::default(),
            executions: Series::default(),
            exception_types: HashSet::new(),
        }
    }

    /// The figures this records into.
    pub fn shared(&self) -> &Arc<EngineMetrics> {
        &self.metrics
    }

    /// The label value of an exception type: itself, or [`OTHER`] past the cap.
    fn exception_label<'a>(&mut self, exception_type: &'a str) -> &'a str {
        if self.exception_types.contains(exception_type) {
            return exception_type;
        }
        if self.exception_types.len() < MAX_EXCEPTION_TYPES {
            self.exception_types.insert(exception_type.to_string());
            return exception_type;
        }
        OTHER
    }

    /// A durable attempt: counted, its duration observed, and its retry
    /// decision (retry scheduled, or given up) counted.
    pub fn attempt(&mut self, a: AttemptSample<'_>) {
        let kind = a.kind.as_str();
        let exception_name = a.failure.map(|f| f.exception_type.as_str());
        let exception = exception_name.map_or(NO_EXCEPTION, |t| self.exception_label(t));
        let outcome = if a.failure.is_none() { "SUCCEEDED" } else { "FAILED" };
        let family = &self.metrics.attempts;
        self.attempts
            .get([kind, a.target, a.action, exception, outcome], 2, |[_, pipeline, action, exception_type, _]| {
                let labels = AttemptLabels {
                    kind: a.kind.as_str(),
                    pipeline: pipeline.into(),
                    action: action.into(),
                    exception_type: exception_type.into(),
                    outcome,
                };
                family.get_or_create(&labels).clone()
            })
            .inc();
        self.attempt_seconds[a.kind as usize].observe(a.duration_ms.max(0) as f64 / 1000.0);
        match a.decision {
            Some(Decision::Retry(r)) => {
                let policy = policy_label(r.policy);
                let family = &self.metrics.retries;
                self.retries
                    .get([kind, a.target, a.action, exception, &policy], 2, |[_, pipeline, action, exception_type, policy]| {
                        let labels = RetryLabels {
                            kind: a.kind.as_str(),
                            pipeline: pipeline.into(),
                            action: action.into(),
                            exception_type: exception_type.into(),
                            policy: policy.into(),
                        };
                        family.get_or_create(&labels).clone()
                    })
                    .inc();
                self.metrics.retry_delay_seconds.observe(r.delay_ms as f64 / 1000.0);
            }
            Some(Decision::GiveUp { reason, .. }) => {
                let family = &self.metrics.give_ups;
                self.give_ups
                    .get([kind, a.target, a.action, exception, reason.code()], 2, |[_, pipeline, action, exception_type, reason]| {
                        let labels = GiveUpLabels {
                            kind: a.kind.as_str(),
                            pipeline: pipeline.into(),
                            action: action.into(),
                            exception_type: exception_type.into(),
                            reason: reason.into(),
                        };
                        family.get_or_create(&labels).clone()
                    })
                    .inc();
            }
            None => {}
        }
    }

    /// A dead-letter entry of an execution of `target` into `queue` is durable.
    pub fn dead_lettered(&mut self, kind: Kind, target: &str, queue: &str, exception_type: &str) {
        let exception = self.exception_label(exception_type);
        let family = &self.metrics.dead_letters;
        self.dead_letters
            .get([kind.as_str(), target, queue, exception], 2, |[_, pipeline, queue, exception_type]| {
                let labels = DeadLetterLabels {
                    kind: kind.as_str(),
                    pipeline: pipeline.into(),
                    queue: queue.into(),
                    exception_type: exception_type.into(),
                };
                family.get_or_create(&labels).clone()
            })
            .inc();
    }

    /// An execution's create is durable (`status` `Started`), or its finish (its status).
    pub fn execution(&mut self, kind: Kind, target: &str, status: &str) {
        let family = &self.metrics.executions;
        self.executions
            .get([kind.as_str(), target, status], 1, |[_, pipeline, status]| {
                family.get_or_create(&ExecutionLabels { kind: kind.as_str(), pipeline: pipeline.into(), status: status.into() }).clone()
            })
            .inc();
    }

    /// The engine gave an execution up (its quarantine is durable).
    pub fn quarantined(&self) {
        self.metrics.quarantined.inc();
    }

    /// A due timer was read `late_ms` after it was due.
    pub fn timer_fired(&self, late_ms: i64) {
        self.metrics.timer_lateness_seconds.observe(late_ms.max(0) as f64 / 1000.0);
    }
}

/// The `policy` label: the declared policy's index in `retryPolicies`, or `default`.
fn policy_label(p: PolicyRef) -> String {
    match p {
        PolicyRef::Declared(i) => i.to_string(),
        PolicyRef::BuiltinDefault => "default".to_string(),
    }
}

/// The status an execution's start is counted under.
pub const STARTED: &str = "Started";

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use redrive_core::exception::ExceptionType;

    fn text(m: &EngineMetrics) -> String {
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn histogram_buckets_are_cumulative_in_the_exposition() {
        let h = AtomicHistogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 9.0] {
            h.observe(v);
        }
        let (sum, count, buckets) = h.snapshot();
        assert_eq!((sum, count), (12.0, 4));
        assert_eq!(buckets, vec![(1.0, 2), (2.0, 1), (f64::INFINITY, 1)]);
        let m = EngineMetrics::default();
        m.commit(3, 0.002);
        let out = text(&m);
        assert!(out.contains("redrive_store_transitions_per_commit_bucket{le=\"2.0\"} 0\n"), "{out}");
        assert!(out.contains("redrive_store_transitions_per_commit_bucket{le=\"4.0\"} 1\n"), "{out}");
        assert!(out.contains("redrive_store_transitions_per_commit_bucket{le=\"+Inf\"} 1\n"), "{out}");
        assert!(out.contains("redrive_store_commit_seconds_count 1\n"), "{out}");
        assert!(out.contains("redrive_build_info{version=\""), "{out}");
    }

    #[test]
    fn exception_types_past_the_cap_are_other() {
        let metrics = Arc::new(EngineMetrics::default());
        let mut r = Recorder::new(metrics.clone());
        for i in 0..MAX_EXCEPTION_TYPES + 3 {
            let failure = Failure::new(ExceptionType::parse(&format!("Custom.E{i}")).unwrap(), "x");
            let sample = |f| AttemptSample { kind: Kind::Pipeline, target: "p", action: "a", failure: f, duration_ms: 5, decision: None };
            r.attempt(sample(Some(&failure)));
            r.attempt(sample(None));
        }
        let out = text(&metrics);
        let other = "redrive_attempts_total{kind=\"pipeline\",pipeline=\"p\",action=\"a\",exception_type=\"other\",outcome=\"FAILED\"} 3\n";
        assert!(out.contains(other), "{out}");
        let ok = "redrive_attempts_total{kind=\"pipeline\",pipeline=\"p\",action=\"a\",exception_type=\"none\",outcome=\"SUCCEEDED\"} 67\n";
        assert!(out.contains(ok), "{out}");
        assert!(out.contains("redrive_attempt_duration_seconds_count{kind=\"pipeline\"} 134\n"), "{out}");
    }

    #[test]
    fn series_past_the_cap_count_as_other_pipelines() {
        let metrics = Arc::new(EngineMetrics::default());
        let mut r = Recorder::new(metrics.clone());
        for i in 0..MAX_SERIES_PER_FAMILY + 2 {
            r.execution(Kind::Function, &format!("f{i}"), STARTED);
        }
        r.execution(Kind::Function, "f0", STARTED);
        r.execution(Kind::Function, "f0", "Succeeded");
        let out = text(&metrics);
        assert!(out.contains("redrive_executions_total{kind=\"function\",pipeline=\"other\",status=\"Succeeded\"} 1\n"), "{out}");
        assert!(out.contains("redrive_executions_total{kind=\"function\",pipeline=\"other\",status=\"Started\"} 2\n"), "{out}");
        assert!(out.contains("redrive_executions_total{kind=\"function\",pipeline=\"f0\",status=\"Started\"} 2\n"), "{out}");
        assert_eq!(r.executions.by_key.len(), MAX_SERIES_PER_FAMILY + 2);
    }
}
