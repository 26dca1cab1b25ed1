//! Retry policies (PRODUCT.md §2) and the retry decision.
//!
//! A [`RetryPolicy`] exists only through [`RetryPolicy::new`], which validates a
//! [`RetryPolicySpec`]; every invalid combination is rejected there, so the
//! decision code never sees one. [`decide`] is a pure function of the policies,
//! the action execution's retry history, the failure, `now` and a jitter draw.

use crate::exception::{ExceptionMatcher, ExceptionType, Failure};
use crate::jitter::JitterDraw;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

pub const MAX_INTERVAL_SECONDS: f64 = 43_200.0;
pub const MIN_BACKOFF_RATE: f64 = 1.0;
pub const MAX_BACKOFF_RATE: f64 = 100.0;
pub const MAX_MAX_ATTEMPTS: i64 = 20;
pub const MAX_EXPIRE_AFTER_MIN: i64 = 14_400;
/// No single delay is ever longer than this (10 days, the longest expiry), whatever
/// backoff makes of the interval. Also the upper bound of `maxIntervalSeconds`.
pub const MAX_DELAY_MS: u64 = 14_400 * 60_000;
/// Upper bound on attempts in one series of one action execution, whatever the
/// policies say (an expiry-only policy with interval 0 would otherwise spin).
pub const MAX_ATTEMPTS_PER_SERIES: u32 = 10_000;
pub const DEFAULT_INTERVAL_SECONDS: f64 = 1.0;
pub const DEFAULT_BACKOFF_RATE: f64 = 2.0;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Jitter {
    #[default]
    None,
    /// Uniform in `[0, d]`.
    Full,
    /// Uniform in `[d/2, d]`.
    Equal,
}

impl Jitter {
    pub fn parse(s: &str) -> Option<Jitter> {
        match s {
            "NONE" => Some(Jitter::None),
            "FULL" => Some(Jitter::Full),
            "EQUAL" => Some(Jitter::Equal),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Jitter::None => "NONE",
            Jitter::Full => "FULL",
            Jitter::Equal => "EQUAL",
        }
    }

    /// Applies the draw to a computed delay.
    pub fn apply(self, delay_ms: u64, draw: JitterDraw) -> u64 {
        let d = delay_ms as f64;
        let x = draw.value();
        let out = match self {
            Jitter::None => d,
            Jitter::Full => d * x,
            Jitter::Equal => d / 2.0 + d / 2.0 * x,
        };
        (out.round() as u64).min(delay_ms)
    }

    /// The smallest delay jitter can produce from `delay_ms`.
    pub fn lower_bound(self, delay_ms: u64) -> u64 {
        match self {
            Jitter::None => delay_ms,
            Jitter::Full => 0,
            Jitter::Equal => delay_ms.div_ceil(2),
        }
    }
}

/// What happens when an action's retries are exhausted (`onExhausted`): the
/// execution fails (the default), or it pauses until a person resumes or fails
/// it (see `machine::pause`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum OnExhausted {
    #[default]
    Fail,
    Pause,
}

impl OnExhausted {
    /// The values `onExhausted` accepts, for problems.
    pub const ALLOWED: &'static str = "FAIL or PAUSE";

    pub fn parse(s: &str) -> Option<OnExhausted> {
        match s {
            "FAIL" => Some(OnExhausted::Fail),
            "PAUSE" => Some(OnExhausted::Pause),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnExhausted::Fail => "FAIL",
            OnExhausted::Pause => "PAUSE",
        }
    }
}

/// What stops a policy's retries: a count or a time span (never both).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RetryLimit {
    MaxAttempts(u32),
    ExpireAfterMin(u32),
}

/// The fields of a policy as written, before validation. `None` means absent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RetryPolicySpec {
    pub exception_types: Vec<String>,
    pub interval_seconds: Option<f64>,
    pub backoff_rate: Option<f64>,
    pub max_attempts: Option<f64>,
    pub expire_after_min: Option<f64>,
    pub max_interval_seconds: Option<f64>,
    pub jitter: Option<String>,
    pub on_exhausted: Option<String>,
}

/// The policy field an error is about; the definition parser maps it back to the
/// key spelling the user wrote (`MaxAttempts`, `maxAttempts`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyField {
    ExceptionType,
    IntervalSeconds,
    BackoffRate,
    MaxAttempts,
    ExpireAfterMin,
    MaxIntervalSeconds,
    Jitter,
    OnExhausted,
}

impl PolicyField {
    pub fn camel_case(self) -> &'static str {
        match self {
            PolicyField::ExceptionType => "exceptionType",
            PolicyField::IntervalSeconds => "intervalSeconds",
            PolicyField::BackoffRate => "backoffRate",
            PolicyField::MaxAttempts => "maxAttempts",
            PolicyField::ExpireAfterMin => "expireAfterMin",
            PolicyField::MaxIntervalSeconds => "maxIntervalSeconds",
            PolicyField::Jitter => "jitter",
            PolicyField::OnExhausted => "onExhausted",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyError {
    pub field: PolicyField,
    /// Index into the exception-type list, when the error is about one entry.
    pub index: Option<usize>,
    pub value: String,
    pub message: String,
    pub allowed: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    exception_types: Vec<ExceptionMatcher>,
    interval_ms: u64,
    backoff_rate: f64,
    limit: RetryLimit,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_interval_ms: Option<u64>,
    jitter: Jitter,
    /// `None`: the action's `onExhausted` applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    on_exhausted: Option<OnExhausted>,
}

fn seconds_to_ms(s: f64) -> u64 {
    (s * 1000.0).round() as u64
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 { format!("{}", x as i64) } else { format!("{x}") }
}

impl RetryPolicy {
    /// Validates a spec. Returns every problem found, not just the first.
    pub fn new(spec: &RetryPolicySpec) -> Result<RetryPolicy, Vec<PolicyError>> {
        let mut errors = Vec::new();
        let mut err = |field, index, value: String, message: &str, allowed: &str| {
            errors.push(PolicyError { field, index, value, message: message.to_string(), allowed: allowed.to_string() })
        };

        let mut exception_types = Vec::new();
        if spec.exception_types.is_empty() {
            err(
                PolicyField::ExceptionType,
                None,
                "[]".into(),
                "is required and must list at least one exception type",
                "a non-empty list of exception types, custom names, or *",
            );
        }
        for (i, t) in spec.exception_types.iter().enumerate() {
            match ExceptionMatcher::parse(t) {
                Ok(m) => exception_types.push(m),
                Err(e) => err(
                    PolicyField::ExceptionType,
                    Some(i),
                    t.clone(),
                    &e.to_string(),
                    "Step.SERVICE_FAULT, Step.THROTTLING, Step.TIMEOUT, Job.INTERNAL_ERROR, Job.CAPACITY_ERROR, Job.RESOURCE_LIMIT, Action.FAILED (aliases SageMaker.*), a custom name [A-Za-z0-9._-]{1,100}, or *",
                ),
            }
        }

        let interval_seconds = spec.interval_seconds.unwrap_or(DEFAULT_INTERVAL_SECONDS);
        if !(interval_seconds.is_finite() && (0.0..=MAX_INTERVAL_SECONDS).contains(&interval_seconds)) {
            err(
                PolicyField::IntervalSeconds,
                None,
                fmt_num(interval_seconds),
                "is out of range",
                "a number from 0 to 43200 (fractions allowed)",
            );
        }
        let backoff_rate = spec.backoff_rate.unwrap_or(DEFAULT_BACKOFF_RATE);
        if !(backoff_rate.is_finite() && (MIN_BACKOFF_RATE..=MAX_BACKOFF_RATE).contains(&backoff_rate)) {
            err(PolicyField::BackoffRate, None, fmt_num(backoff_rate), "is out of range", "a number from 1.0 to 100.0");
        }

        let whole = |x: f64| x.is_finite() && x.fract() == 0.0;
        let limit = match (spec.max_attempts, spec.expire_after_min) {
            (Some(m), Some(e)) => {
                err(
                    PolicyField::ExpireAfterMin,
                    None,
                    format!("MaxAttempts={} and ExpireAfterMin={}", fmt_num(m), fmt_num(e)),
                    "cannot be combined with maxAttempts: a policy takes one or the other",
                    "either maxAttempts or expireAfterMin, not both",
                );
                RetryLimit::MaxAttempts(0)
            }
            (Some(m), None) => {
                if !(whole(m) && (0.0..=MAX_MAX_ATTEMPTS as f64).contains(&m)) {
                    err(PolicyField::MaxAttempts, None, fmt_num(m), "is out of range", "an integer from 0 to 20 (0 = never retry)");
                }
                RetryLimit::MaxAttempts(m.clamp(0.0, 20.0) as u32)
            }
            (None, Some(e)) => {
                if !(whole(e) && (0.0..=MAX_EXPIRE_AFTER_MIN as f64).contains(&e)) {
                    err(
                        PolicyField::ExpireAfterMin,
                        None,
                        fmt_num(e),
                        "is out of range",
                        "an integer from 0 to 14400 minutes (0 = never retry)",
                    );
                }
                RetryLimit::ExpireAfterMin(e.clamp(0.0, 14_400.0) as u32)
            }
            (None, None) => RetryLimit::MaxAttempts(DEFAULT_MAX_ATTEMPTS),
        };

        let max_interval_ms = match spec.max_interval_seconds {
            None => None,
            Some(m) => {
                let max_s = (MAX_DELAY_MS / 1000) as f64;
                if !(m.is_finite() && m >= interval_seconds && m <= max_s && m > 0.0) {
                    err(
                        PolicyField::MaxIntervalSeconds,
                        None,
                        fmt_num(m),
                        "is out of range",
                        &format!(
                            "a number greater than 0, at least intervalSeconds ({}) and at most {}",
                            fmt_num(interval_seconds),
                            fmt_num(max_s)
                        ),
                    );
                }
                Some(seconds_to_ms(m.clamp(0.0, max_s)))
            }
        };

        let jitter = match spec.jitter.as_deref() {
            None => Jitter::None,
            Some(j) => Jitter::parse(j).unwrap_or_else(|| {
                err(PolicyField::Jitter, None, j.to_string(), "is not a jitter strategy", "NONE, FULL or EQUAL");
                Jitter::None
            }),
        };

        let on_exhausted = spec.on_exhausted.as_deref().and_then(|v| {
            let parsed = OnExhausted::parse(v);
            if parsed.is_none() {
                err(PolicyField::OnExhausted, None, v.to_string(), "is not an exhaustion behaviour", OnExhausted::ALLOWED);
            }
            parsed
        });

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RetryPolicy {
            exception_types,
            interval_ms: seconds_to_ms(interval_seconds),
            backoff_rate,
            limit,
            max_interval_ms,
            jitter,
            on_exhausted,
        })
    }

    /// A policy that never retries: it matches every exception type with
    /// maxAttempts 0, so not even the built-in default applies after it.
    pub fn none() -> RetryPolicy {
        RetryPolicy::new(&RetryPolicySpec { exception_types: vec!["*".into()], max_attempts: Some(0.0), ..Default::default() })
            .expect("a valid policy")
    }

    /// The built-in default for `Step.SERVICE_FAULT` and `Step.THROTTLING`.
    pub fn builtin_default() -> RetryPolicy {
        RetryPolicy {
            exception_types: vec![
                ExceptionMatcher::Exactly(ExceptionType::ServiceFault),
                ExceptionMatcher::Exactly(ExceptionType::Throttling),
            ],
            interval_ms: 1000,
            backoff_rate: 2.0,
            limit: RetryLimit::MaxAttempts(5),
            max_interval_ms: None,
            jitter: Jitter::Full,
            on_exhausted: None,
        }
    }

    pub fn exception_types(&self) -> &[ExceptionMatcher] {
        &self.exception_types
    }
    pub fn interval_ms(&self) -> u64 {
        self.interval_ms
    }
    pub fn backoff_rate(&self) -> f64 {
        self.backoff_rate
    }
    pub fn limit(&self) -> RetryLimit {
        self.limit
    }
    pub fn max_interval_ms(&self) -> Option<u64> {
        self.max_interval_ms
    }
    pub fn jitter(&self) -> Jitter {
        self.jitter
    }
    /// `onExhausted` as the policy says it (`None`: the action's applies).
    pub fn on_exhausted(&self) -> Option<OnExhausted> {
        self.on_exhausted
    }

    pub fn matches(&self, t: &ExceptionType) -> bool {
        self.exception_types.iter().any(|m| m.matches(t))
    }

    /// The delay before the n-th retry under this policy (n ≥ 1), before jitter:
    /// `min(interval × rate^(n−1), maxInterval)`, never above [`MAX_DELAY_MS`].
    pub fn nominal_delay_ms(&self, retry_number: u32) -> u64 {
        debug_assert!(retry_number >= 1);
        let exp = retry_number.saturating_sub(1).min(10_000) as i32;
        let raw = self.interval_ms as f64 * self.backoff_rate.powi(exp);
        let cap = self.max_interval_ms.unwrap_or(MAX_DELAY_MS).min(MAX_DELAY_MS);
        if !raw.is_finite() || raw >= cap as f64 { cap } else { raw.round() as u64 }
    }

    /// One-line human description, e.g. `[Step.THROTTLING] interval 1s ×2 max 5 jitter FULL`.
    pub fn summary(&self) -> String {
        let types: Vec<String> = self.exception_types.iter().map(|m| m.to_string()).collect();
        let limit = match self.limit {
            RetryLimit::MaxAttempts(n) => format!("maxAttempts {n}"),
            RetryLimit::ExpireAfterMin(m) => format!("expireAfterMin {m}"),
        };
        let mut s = format!(
            "[{}] interval {} backoff ×{} {}",
            types.join(", "),
            crate::time::human_duration_ms(self.interval_ms),
            fmt_num(self.backoff_rate),
            limit
        );
        if let Some(m) = self.max_interval_ms {
            s.push_str(&format!(" maxInterval {}", crate::time::human_duration_ms(m)));
        }
        if self.jitter != Jitter::None {
            s.push_str(&format!(" jitter {}", self.jitter.as_str()));
        }
        if let Some(o) = self.on_exhausted {
            s.push_str(&format!(" onExhausted {}", o.as_str()));
        }
        s
    }
}

/// Which policy a decision was made under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "index")]
pub enum PolicyRef {
    /// Index into the action's `retryPolicies` (0-based).
    Declared(usize),
    BuiltinDefault,
}

impl PolicyRef {
    /// Slot in a per-policy counter array of length `policies.len() + 1`.
    pub fn slot(self, declared: usize) -> usize {
        match self {
            PolicyRef::Declared(i) => i,
            PolicyRef::BuiltinDefault => declared,
        }
    }
}

impl std::fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyRef::Declared(i) => write!(f, "policy #{}", i + 1),
            PolicyRef::BuiltinDefault => f.write_str("built-in default"),
        }
    }
}

/// An action execution's retry history, as far as the decision needs it.
#[derive(Clone, Copy, Debug)]
pub struct RetryHistory<'a> {
    /// When the first attempt of the current series started.
    pub first_attempt_started_at: Timestamp,
    /// Retries granted so far, per policy slot (`policies.len() + 1` entries, the
    /// last for the built-in default).
    pub retries_by_policy: &'a [u32],
    /// Attempts started so far in this series, including the one that just failed.
    pub attempts: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryDecision {
    pub policy: PolicyRef,
    /// 1 for the first retry under this policy.
    pub retry_number: u32,
    /// `min(interval × rate^(n−1), maxInterval)` before jitter.
    pub computed_delay_ms: u64,
    /// After jitter and the server hint.
    pub delay_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint_ms: Option<u64>,
    pub due_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum GiveUpReason {
    /// No declared policy matches and the built-in default does not cover the type.
    NoMatchingPolicy,
    /// The matching policy has maxAttempts 0 or expireAfterMin 0.
    RetriesDisabled,
    #[serde(rename_all = "camelCase")]
    MaxAttemptsReached { max_attempts: u32 },
    #[serde(rename_all = "camelCase")]
    Expired { expire_after_min: u32, elapsed_ms: u64 },
    #[serde(rename_all = "camelCase")]
    AttemptCeiling { limit: u32 },
    /// The execution is being stopped: nothing is retried.
    Stopped,
    /// The engine failed the execution for good (e.g. a limit it could not get
    /// under): nothing is retried.
    Aborted,
}

impl GiveUpReason {
    /// The reason's name as the ledger's decision JSON spells it (`reason`), e.g.
    /// `maxAttemptsReached`: a bounded label value.
    pub fn code(&self) -> &'static str {
        match self {
            GiveUpReason::NoMatchingPolicy => "noMatchingPolicy",
            GiveUpReason::RetriesDisabled => "retriesDisabled",
            GiveUpReason::MaxAttemptsReached { .. } => "maxAttemptsReached",
            GiveUpReason::Expired { .. } => "expired",
            GiveUpReason::AttemptCeiling { .. } => "attemptCeiling",
            GiveUpReason::Stopped => "stopped",
            GiveUpReason::Aborted => "aborted",
        }
    }
}

impl std::fmt::Display for GiveUpReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GiveUpReason::NoMatchingPolicy => f.write_str("no retry policy matches this exception type"),
            GiveUpReason::RetriesDisabled => f.write_str("the matching policy disables retries (maxAttempts/expireAfterMin 0)"),
            GiveUpReason::MaxAttemptsReached { max_attempts } => write!(f, "maxAttempts {max_attempts} reached"),
            GiveUpReason::Expired { expire_after_min, elapsed_ms } => write!(
                f,
                "expireAfterMin {expire_after_min} passed (failure came {} after the first attempt started)",
                crate::time::human_duration_ms(*elapsed_ms)
            ),
            GiveUpReason::AttemptCeiling { limit } => write!(f, "hard limit of {limit} attempts per action execution reached"),
            GiveUpReason::Stopped => f.write_str("the execution is being stopped"),
            GiveUpReason::Aborted => f.write_str("the engine failed the execution"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "decision")]
pub enum Decision {
    Retry(RetryDecision),
    #[serde(rename_all = "camelCase")]
    GiveUp {
        policy: Option<PolicyRef>,
        #[serde(flatten)]
        reason: GiveUpReason,
    },
}

/// Finds the policy that applies to `t`: the first declared match, else the
/// built-in default for SERVICE_FAULT/THROTTLING, else none.
pub fn matching_policy<'a>(policies: &'a [RetryPolicy], t: &ExceptionType) -> Option<(PolicyRef, std::borrow::Cow<'a, RetryPolicy>)> {
    if let Some(i) = policies.iter().position(|p| p.matches(t)) {
        return Some((PolicyRef::Declared(i), std::borrow::Cow::Borrowed(&policies[i])));
    }
    if t.retried_by_default() {
        return Some((PolicyRef::BuiltinDefault, std::borrow::Cow::Owned(RetryPolicy::builtin_default())));
    }
    None
}

/// The retry decision for a failed attempt that failed at `now`.
pub fn decide(policies: &[RetryPolicy], history: RetryHistory<'_>, failure: &Failure, now: Timestamp, draw: JitterDraw) -> Decision {
    debug_assert_eq!(history.retries_by_policy.len(), policies.len() + 1);
    let Some((policy_ref, policy)) = matching_policy(policies, &failure.exception_type) else {
        return Decision::GiveUp { policy: None, reason: GiveUpReason::NoMatchingPolicy };
    };
    let give_up = |reason| Decision::GiveUp { policy: Some(policy_ref), reason };
    let used = history.retries_by_policy.get(policy_ref.slot(policies.len())).copied().unwrap_or(0);
    match policy.limit {
        RetryLimit::MaxAttempts(0) | RetryLimit::ExpireAfterMin(0) => return give_up(GiveUpReason::RetriesDisabled),
        RetryLimit::MaxAttempts(max) if used >= max => return give_up(GiveUpReason::MaxAttemptsReached { max_attempts: max }),
        RetryLimit::ExpireAfterMin(min) => {
            let elapsed_ms = now.ms_since(history.first_attempt_started_at).max(0) as u64;
            if elapsed_ms > u64::from(min) * 60_000 {
                return give_up(GiveUpReason::Expired { expire_after_min: min, elapsed_ms });
            }
        }
        RetryLimit::MaxAttempts(_) => {}
    }
    if history.attempts >= MAX_ATTEMPTS_PER_SERIES {
        return give_up(GiveUpReason::AttemptCeiling { limit: MAX_ATTEMPTS_PER_SERIES });
    }
    let retry_number = used + 1;
    let computed = policy.nominal_delay_ms(retry_number);
    let mut delay = policy.jitter.apply(computed, draw);
    if let Some(hint) = failure.retry_after_ms {
        delay = delay.max(hint.min(MAX_DELAY_MS));
    }
    if let Some(cap) = policy.max_interval_ms {
        delay = delay.min(cap);
    }
    Decision::Retry(RetryDecision {
        policy: policy_ref,
        retry_number,
        computed_delay_ms: computed,
        delay_ms: delay,
        hint_ms: failure.retry_after_ms,
        due_at: now.plus_ms(delay),
    })
}

/// One row of a previewed schedule.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledRetry {
    /// The attempt this retry starts (2 = first retry).
    pub attempt: u32,
    pub policy: PolicyRef,
    pub retry_number: u32,
    pub computed_delay_ms: u64,
    /// The delay used: exact when draws are known, else the computed (worst case).
    pub delay_ms: u64,
    /// Smallest and largest delay jitter can give.
    pub jitter_range_ms: (u64, u64),
    /// When the retry starts, from the start of the first attempt.
    pub offset_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    pub exception_type: String,
    pub policy: Option<PolicyRef>,
    pub policy_summary: Option<String>,
    pub retries: Vec<ScheduledRetry>,
    /// Why the retry after the last one listed does not happen.
    pub stop: GiveUpReason,
    /// Sum of the delays listed (with exact draws) or of computed delays (worst case).
    pub total_wait_ms: u64,
    pub worst_case_total_wait_ms: u64,
}

/// Previews the retries a failure of type `t` gets if every attempt fails
/// instantly with that type. `draw(attempt)` gives the jitter draw for the
/// attempt that failed, or `None` to show the worst case (no jitter reduction).
pub fn explain(policies: &[RetryPolicy], t: &ExceptionType, draw: impl Fn(u32) -> Option<JitterDraw>) -> Schedule {
    let matched = matching_policy(policies, t);
    let mut counters = vec![0u32; policies.len() + 1];
    let start = Timestamp::EPOCH;
    let mut now = start;
    let mut attempts = 1u32;
    let mut retries = Vec::new();
    let mut worst = 0u64;
    let failure = Failure::new(t.clone(), "preview");
    let stop = loop {
        let history = RetryHistory { first_attempt_started_at: start, retries_by_policy: &counters, attempts };
        let d = draw(attempts).unwrap_or(JitterDraw::MAX);
        match decide(policies, history, &failure, now, d) {
            Decision::Retry(r) => {
                let jitter = matched.as_ref().map(|(_, p)| p.jitter()).unwrap_or_default();
                counters[r.policy.slot(policies.len())] += 1;
                worst += r.computed_delay_ms;
                now = r.due_at;
                attempts += 1;
                retries.push(ScheduledRetry {
                    attempt: attempts,
                    policy: r.policy,
                    retry_number: r.retry_number,
                    computed_delay_ms: r.computed_delay_ms,
                    delay_ms: r.delay_ms,
                    jitter_range_ms: (jitter.lower_bound(r.computed_delay_ms), r.computed_delay_ms),
                    offset_ms: now.unix_ms() as u64,
                });
            }
            Decision::GiveUp { reason, .. } => break reason,
        }
    };
    Schedule {
        exception_type: t.to_string(),
        policy: matched.as_ref().map(|(r, _)| *r),
        policy_summary: matched.as_ref().map(|(_, p)| p.summary()),
        total_wait_ms: now.unix_ms() as u64,
        worst_case_total_wait_ms: worst,
        retries,
        stop,
    }
}

#[cfg(test)]
mod tests;
