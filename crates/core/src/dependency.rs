//! Dependencies: retry budgets and circuit breakers shared by every execution
//! that calls the same downstream service.
//!
//! A [`Dependency`] is a name with an optional [`RetryBudget`] and an optional
//! [`CircuitBreaker`], built only through validating constructors. Its runtime
//! state is one [`DependencyState`] per name, and two pure functions drive it:
//!
//! - [`gate`]`(spec, state, now, kind)`: an attempt against the dependency is
//!   due — [`Gate::Admit`] (counted) or [`Gate::Defer`] with a time strictly
//!   after `now`. Nothing is ever dropped: a deferred attempt keeps its number
//!   and is asked again at `until`.
//! - [`record`]`(spec, state, now, started_at, outcome)`: an admitted attempt ended.
//!
//! **Budget.** Over the sliding window (the last `window` whole seconds, in
//! one-second buckets, the current one included) retries are admitted while
//! `retries + 1 ≤ max(ratio × first_attempts, minRetriesPerSecond × window_s)`.
//! First attempts are always admitted by the budget and counted; only retries
//! are budgeted. A refused retry is deferred until the oldest bucket holding
//! retries leaves the window.
//!
//! **Breaker.** Closed: every attempt is admitted; `failureThreshold`
//! consecutive [`Outcome::Failure`]s open it. Open: every due attempt (first or
//! retry) is held until `opened_at + coolDown`. Then half-open: up to
//! `halfOpenProbes` attempts go through; the first probe to succeed closes it,
//! a probe failure opens it again; further attempts wait
//! [`HALF_OPEN_RECHECK_MS`] at a time. Outcomes of attempts started before the
//! breaker went half-open are ignored there (they are not probes), and every
//! outcome is ignored while open.
//!
//! What counts as a failure is the engine's mapping (see
//! `redrive_engine::dependencies`): a retryable failure of an attempt against
//! the dependency — `Step.SERVICE_FAULT`, `Step.THROTTLING`, `Step.TIMEOUT`,
//! `Job.*` — while a success or any other failure (the dependency answered, e.g.
//! `Action.FAILED` for a 4xx) is a success for the breaker.

use crate::limits::{
    MAX_BREAKER_COOL_DOWN_MS, MAX_BREAKER_FAILURE_THRESHOLD, MAX_BREAKER_HALF_OPEN_PROBES, MAX_BUDGET_WINDOW_SECONDS,
    MAX_MIN_RETRIES_PER_SECOND, MIN_BREAKER_COOL_DOWN_MS, MIN_BUDGET_WINDOW_SECONDS,
};
use crate::name::Name;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The ledger `outcome` of a deferral: the attempt did not run (its number
/// is unchanged; it runs when the hold ends).
pub const DEFERRED_OUTCOME: &str = "DEFERRED";

/// Length of one budget bucket.
pub const BUCKET_MS: i64 = 1000;
/// How long an attempt waits while a half-open breaker's probes are all out.
pub const HALF_OPEN_RECHECK_MS: u64 = 1000;

/// Why a constructor refused: the field (as written in a definition) and what is wrong.
pub type Invalid = (&'static str, String);

/// `retryBudget`: validated by [`RetryBudget::new`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    ratio: f64,
    min_retries_per_second: f64,
    window_seconds: u64,
}

impl RetryBudget {
    /// `ratio` in (0, 1]; `min_retries_per_second` in (0, 10000] with at least
    /// one retry per window (`min × window ≥ 1`, so a retry can always go through
    /// eventually); `window_ms` whole seconds in 1 s..=1 h. Errors name the field.
    pub fn new(ratio: f64, min_retries_per_second: f64, window_ms: u64) -> Result<RetryBudget, Invalid> {
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(("ratio", format!("ratio must be greater than 0 and at most 1, got {ratio}")));
        }
        if !(min_retries_per_second > 0.0 && min_retries_per_second <= MAX_MIN_RETRIES_PER_SECOND) {
            return Err((
                "minRetriesPerSecond",
                format!(
                    "minRetriesPerSecond must be greater than 0 and at most {MAX_MIN_RETRIES_PER_SECOND}, got {min_retries_per_second}"
                ),
            ));
        }
        if !window_ms.is_multiple_of(1000) {
            return Err(("window", format!("window must be whole seconds, got {window_ms} ms")));
        }
        let window_seconds = window_ms / 1000;
        if !(MIN_BUDGET_WINDOW_SECONDS..=MAX_BUDGET_WINDOW_SECONDS).contains(&window_seconds) {
            return Err((
                "window",
                format!("window must be {MIN_BUDGET_WINDOW_SECONDS}s to {MAX_BUDGET_WINDOW_SECONDS}s, got {window_seconds}s"),
            ));
        }
        if min_retries_per_second * (window_seconds as f64) < 1.0 {
            return Err((
                "minRetriesPerSecond",
                format!(
                    "minRetriesPerSecond × window must allow at least one retry per window ({min_retries_per_second} × {window_seconds}s < 1)"
                ),
            ));
        }
        Ok(RetryBudget { ratio, min_retries_per_second, window_seconds })
    }

    pub fn ratio(&self) -> f64 {
        self.ratio
    }
    pub fn min_retries_per_second(&self) -> f64 {
        self.min_retries_per_second
    }
    pub fn window_seconds(&self) -> u64 {
        self.window_seconds
    }

    /// Retries the window may hold with `first_attempts` first attempts in it.
    pub fn allowed(&self, first_attempts: u64) -> f64 {
        (self.ratio * first_attempts as f64).max(self.min_retries_per_second * self.window_seconds as f64)
    }
}

/// `circuitBreaker`: validated by [`CircuitBreaker::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    failure_threshold: u32,
    cool_down_ms: u64,
    half_open_probes: u32,
}

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, cool_down_ms: u64, half_open_probes: u32) -> Result<CircuitBreaker, Invalid> {
        if !(1..=MAX_BREAKER_FAILURE_THRESHOLD).contains(&failure_threshold) {
            return Err((
                "failureThreshold",
                format!("failureThreshold must be 1 to {MAX_BREAKER_FAILURE_THRESHOLD}, got {failure_threshold}"),
            ));
        }
        if !(MIN_BREAKER_COOL_DOWN_MS..=MAX_BREAKER_COOL_DOWN_MS).contains(&cool_down_ms) {
            return Err(("coolDown", format!("coolDown must be 100ms to 1d, got {cool_down_ms} ms")));
        }
        if !(1..=MAX_BREAKER_HALF_OPEN_PROBES).contains(&half_open_probes) {
            return Err(("halfOpenProbes", format!("halfOpenProbes must be 1 to {MAX_BREAKER_HALF_OPEN_PROBES}, got {half_open_probes}")));
        }
        Ok(CircuitBreaker { failure_threshold, cool_down_ms, half_open_probes })
    }

    pub fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }
    pub fn cool_down_ms(&self) -> u64 {
        self.cool_down_ms
    }
    pub fn half_open_probes(&self) -> u32 {
        self.half_open_probes
    }
}

/// A declared dependency. A declaration with neither a budget nor a breaker
/// names the dependency only (the server config's settings of that name apply).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub name: Name,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
}

impl Dependency {
    /// Declares neither a budget nor a breaker.
    pub fn is_name_only(&self) -> bool {
        self.retry_budget.is_none() && self.circuit_breaker.is_none()
    }
}

/// The settings that apply to `name`: the pipeline's own declaration unless it
/// is name-only, else the server's.
pub fn effective<'a>(name: &str, pipeline: &'a [Dependency], server: &'a [Dependency]) -> Option<&'a Dependency> {
    let own = pipeline.iter().find(|d| d.name.as_str() == name);
    match own {
        Some(d) if !d.is_name_only() => Some(d),
        _ => server.iter().find(|d| d.name.as_str() == name).or(own),
    }
}

/// Whether a due attempt is the first of its series or a retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptKind {
    First,
    Retry,
}

/// Why an attempt was deferred.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum DeferReason {
    /// The retry budget is spent: `used` retries in the window, `allowed` at most.
    #[serde(rename = "budget")]
    Budget { used: u64, allowed: f64 },
    /// The breaker is open until its cool-down ends.
    #[serde(rename = "breaker-open")]
    BreakerOpen,
    /// The breaker is half-open and all its probes are out.
    #[serde(rename = "breaker-half-open")]
    BreakerHalfOpen,
}

impl DeferReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            DeferReason::Budget { .. } => "budget",
            DeferReason::BreakerOpen => "breaker-open",
            DeferReason::BreakerHalfOpen => "breaker-half-open",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Gate {
    Admit,
    /// Ask again at `until` (always after `now`).
    Defer {
        until: Timestamp,
        reason: DeferReason,
    },
}

/// How an admitted attempt ended, for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// Never reached the dependency (e.g. stopped, a missing secret): frees a
    /// half-open probe slot, counts for nothing else.
    Neutral,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum Breaker {
    #[serde(rename = "closed")]
    Closed { consecutive_failures: u32 },
    #[serde(rename = "open")]
    Open { opened_at: Timestamp, until: Timestamp },
    #[serde(rename = "half-open")]
    #[serde(rename_all = "camelCase")]
    HalfOpen { opened_at: Timestamp, since: Timestamp, probes_out: u32 },
}

impl Breaker {
    pub fn as_str(&self) -> &'static str {
        match self {
            Breaker::Closed { .. } => "closed",
            Breaker::Open { .. } => "open",
            Breaker::HalfOpen { .. } => "half-open",
        }
    }

    /// As shown at `now`: an open breaker whose cool-down ended is half-open
    /// (it moves when the next attempt is gated).
    pub fn as_of(self, now: Timestamp) -> Breaker {
        match self {
            Breaker::Open { opened_at, until } if now >= until => Breaker::HalfOpen { opened_at, since: until, probes_out: 0 },
            b => b,
        }
    }

    pub fn opened_at(&self) -> Option<Timestamp> {
        match self {
            Breaker::Closed { .. } => None,
            Breaker::Open { opened_at, .. } | Breaker::HalfOpen { opened_at, .. } => Some(*opened_at),
        }
    }
}

/// Attempts admitted in one second (`second` = unix ms / 1000).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub second: i64,
    pub first_attempts: u32,
    pub retries: u32,
}

/// One dependency's runtime state: durable (the engine stores it as JSON).
/// Bounded: at most `window` buckets (see [`crate::limits::MAX_BUDGET_WINDOW_SECONDS`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DependencyState {
    pub breaker: Breaker,
    /// Oldest first; only seconds with admissions.
    #[serde(default)]
    pub buckets: Vec<Bucket>,
    /// When the breaker last opened, here or at a peer whose opening this
    /// state adopted ([`Peers`]): a peer's opening is adopted once, and only
    /// when it is later than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_opened_at: Option<Timestamp>,
    /// When a probe's success last closed the breaker, here or at a peer
    /// whose closing this state adopted: it closes an opening older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_closed_at: Option<Timestamp>,
}

impl Default for DependencyState {
    fn default() -> Self {
        DependencyState {
            breaker: Breaker::Closed { consecutive_failures: 0 },
            buckets: Vec::new(),
            last_opened_at: None,
            last_closed_at: None,
        }
    }
}

impl DependencyState {
    /// The state as an engine that starts (or takes over a shard) reads it
    /// back: the probes a half-open breaker had out ended with the engine that
    /// sent them (their attempts are recovered and run again), so none is out.
    pub fn restored(mut self) -> DependencyState {
        if let Breaker::HalfOpen { probes_out, .. } = &mut self.breaker {
            *probes_out = 0;
        }
        self
    }
}

/// What the other engines that gate the same dependency hold of it (with
/// `--spread`, one engine per shard: their stored states, read at each
/// heartbeat), folded by [`Peers::fold`]. A shard's engine decides over its own
/// state and these, so budgets and breakers hold across the cluster, lagging
/// by the age of the states read. [`Peers::default`]: none (one engine).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Peers {
    /// Their admissions summed per second, oldest first.
    buckets: Vec<Bucket>,
    /// Their closed breakers' consecutive failures, added up.
    consecutive_failures: u32,
    /// The latest opening of a breaker of theirs that is not closed again.
    last_opened_at: Option<Timestamp>,
    /// The latest closing of a breaker of theirs by a probe's success.
    last_closed_at: Option<Timestamp>,
    /// The probes their half-open breakers have out, added up.
    probes_out: u32,
    /// The breaker of theirs that opened last, while it is not closed again.
    latest_open: Option<Breaker>,
}

impl Peers {
    /// Folds the peers' states of one dependency.
    pub fn fold<'a>(states: impl IntoIterator<Item = &'a DependencyState>) -> Peers {
        let mut per_second: std::collections::BTreeMap<i64, (u32, u32)> = std::collections::BTreeMap::new();
        let mut peers = Peers::default();
        for s in states {
            for b in &s.buckets {
                let e = per_second.entry(b.second).or_default();
                e.0 = e.0.saturating_add(b.first_attempts);
                e.1 = e.1.saturating_add(b.retries);
            }
            match s.breaker {
                Breaker::Closed { consecutive_failures } => {
                    peers.consecutive_failures = peers.consecutive_failures.saturating_add(consecutive_failures);
                }
                Breaker::Open { opened_at, .. } => peers.last_opened_at = peers.last_opened_at.max(Some(opened_at)),
                Breaker::HalfOpen { opened_at, probes_out, .. } => {
                    peers.last_opened_at = peers.last_opened_at.max(Some(opened_at));
                    peers.probes_out = peers.probes_out.saturating_add(probes_out);
                }
            }
            if s.breaker.opened_at().is_some_and(|at| peers.latest_open.and_then(|b| b.opened_at()).is_none_or(|latest| at > latest)) {
                peers.latest_open = Some(s.breaker);
            }
            peers.last_closed_at = peers.last_closed_at.max(s.last_closed_at);
        }
        peers.buckets =
            per_second.into_iter().map(|(second, (first_attempts, retries))| Bucket { second, first_attempts, retries }).collect();
        peers
    }

    /// The first attempts and retries of theirs in the window.
    pub fn window_counts(&self, now: Timestamp, window_seconds: u64) -> (u64, u64) {
        counts_in_window(&self.buckets, now, window_seconds)
    }
}

/// (first attempts, retries) of `buckets` in the window of `window_seconds` ending at `now`.
fn counts_in_window(buckets: &[Bucket], now: Timestamp, window_seconds: u64) -> (u64, u64) {
    let oldest_kept = second_of(now) - window_seconds as i64 + 1;
    buckets
        .iter()
        .filter(|b| b.second >= oldest_kept && b.second <= second_of(now))
        .fold((0, 0), |(f, r), b| (f + u64::from(b.first_attempts), r + u64::from(b.retries)))
}

/// Adopts what peers did to the breaker since this state last looked: an
/// opening later than any this state has seen opens it here too (for the
/// cool-down from that opening); a probe's success later than this breaker's
/// opening closes it here too.
fn adopt(cb: &CircuitBreaker, state: &mut DependencyState, peers: &Peers) {
    if let Some(opened_at) = peers.last_opened_at
        && state.last_opened_at.is_none_or(|seen| seen < opened_at)
        && state.breaker.opened_at().is_none_or(|own| own < opened_at)
    {
        state.breaker = Breaker::Open { opened_at, until: opened_at.plus_ms(cb.cool_down_ms) };
        state.last_opened_at = Some(opened_at);
    }
    if let (Some(closed_at), Some(opened_at)) = (peers.last_closed_at, state.breaker.opened_at())
        && closed_at > opened_at
    {
        state.breaker = Breaker::Closed { consecutive_failures: 0 };
        state.last_closed_at = state.last_closed_at.max(Some(closed_at));
    }
}

fn second_of(t: Timestamp) -> i64 {
    t.unix_ms().div_euclid(BUCKET_MS)
}

impl DependencyState {
    /// Drops buckets that left a window of `window_seconds` ending at `now`.
    fn prune(&mut self, now: Timestamp, window_seconds: u64) {
        let oldest_kept = second_of(now) - window_seconds as i64 + 1;
        self.buckets.retain(|b| b.second >= oldest_kept);
    }

    /// (first attempts, retries) in the window of `window_seconds` ending at `now`.
    pub fn window_counts(&self, now: Timestamp, window_seconds: u64) -> (u64, u64) {
        counts_in_window(&self.buckets, now, window_seconds)
    }

    fn count(&mut self, now: Timestamp, kind: AttemptKind) {
        let second = second_of(now);
        if self.buckets.last().is_none_or(|b| b.second < second) {
            self.buckets.push(Bucket { second, first_attempts: 0, retries: 0 });
        }
        let b = self.buckets.last_mut().expect("pushed above");
        match kind {
            AttemptKind::First => b.first_attempts = b.first_attempts.saturating_add(1),
            AttemptKind::Retry => b.retries = b.retries.saturating_add(1),
        }
    }
}

/// An attempt against `spec` is due at `now`: admit it (and count it) or defer
/// it. The budget counts the peers' admissions in the window with this
/// state's, and a later opening of a peer's breaker opens this one.
pub fn gate(spec: &Dependency, state: &mut DependencyState, peers: &Peers, now: Timestamp, kind: AttemptKind) -> Gate {
    if let Some(cb) = &spec.circuit_breaker {
        adopt(cb, state, peers);
    }
    // The breaker's time-driven move (open → half-open) first.
    if let (Some(_), Breaker::Open { opened_at, until }) = (&spec.circuit_breaker, state.breaker) {
        if now < until {
            return Gate::Defer { until, reason: DeferReason::BreakerOpen };
        }
        state.breaker = Breaker::HalfOpen { opened_at, since: now, probes_out: 0 };
    }
    // The probes out count the peers' too: about `halfOpenProbes` for the cluster.
    if let (Some(cb), Breaker::HalfOpen { probes_out, .. }) = (&spec.circuit_breaker, state.breaker)
        && probes_out.saturating_add(peers.probes_out) >= cb.half_open_probes
    {
        return Gate::Defer { until: now.plus_ms(HALF_OPEN_RECHECK_MS), reason: DeferReason::BreakerHalfOpen };
    }
    if let Some(budget) = &spec.retry_budget {
        state.prune(now, budget.window_seconds);
        if kind == AttemptKind::Retry {
            let (own_firsts, own_retries) = state.window_counts(now, budget.window_seconds);
            let (peer_firsts, peer_retries) = peers.window_counts(now, budget.window_seconds);
            let (firsts, retries) = (own_firsts + peer_firsts, own_retries + peer_retries);
            let allowed = budget.allowed(firsts);
            if (retries + 1) as f64 > allowed {
                let oldest_kept = second_of(now) - budget.window_seconds as i64 + 1;
                let oldest = (state.buckets.iter().chain(&peers.buckets))
                    .filter(|b| b.retries > 0 && b.second >= oldest_kept)
                    .map(|b| b.second)
                    .min()
                    .expect("a spent budget holds retries in its window");
                let until = Timestamp::from_unix_ms((oldest + budget.window_seconds as i64) * BUCKET_MS);
                debug_assert!(until > now);
                return Gate::Defer { until, reason: DeferReason::Budget { used: retries, allowed } };
            }
        }
        state.count(now, kind);
    }
    if let Breaker::HalfOpen { probes_out, .. } = &mut state.breaker {
        *probes_out += 1;
    }
    Gate::Admit
}

/// An attempt admitted by [`gate`] (started at `started_at`) ended at `now`.
/// A closed breaker opens when its consecutive failures and the peers' closed
/// breakers' add up to the threshold.
pub fn record(spec: &Dependency, state: &mut DependencyState, peers: &Peers, now: Timestamp, started_at: Timestamp, outcome: Outcome) {
    let Some(cb) = &spec.circuit_breaker else { return };
    adopt(cb, state, peers);
    state.breaker = match (state.breaker, outcome) {
        (b @ Breaker::Open { .. }, _) => b,
        (Breaker::Closed { .. }, Outcome::Success) => Breaker::Closed { consecutive_failures: 0 },
        (b @ Breaker::Closed { .. }, Outcome::Neutral) => b,
        (Breaker::Closed { consecutive_failures }, Outcome::Failure) => {
            let failures = consecutive_failures.saturating_add(1);
            if failures.saturating_add(peers.consecutive_failures) >= cb.failure_threshold {
                Breaker::Open { opened_at: now, until: now.plus_ms(cb.cool_down_ms) }
            } else {
                Breaker::Closed { consecutive_failures: failures }
            }
        }
        (b @ Breaker::HalfOpen { since, .. }, _) if started_at < since => b, // not a probe
        (Breaker::HalfOpen { .. }, Outcome::Success) => {
            state.last_closed_at = state.last_closed_at.max(Some(now));
            Breaker::Closed { consecutive_failures: 0 }
        }
        (Breaker::HalfOpen { .. }, Outcome::Failure) => Breaker::Open { opened_at: now, until: now.plus_ms(cb.cool_down_ms) },
        (Breaker::HalfOpen { opened_at, since, probes_out }, Outcome::Neutral) => {
            Breaker::HalfOpen { opened_at, since, probes_out: probes_out.saturating_sub(1) }
        }
    };
    if let Some(opened_at) = state.breaker.opened_at() {
        state.last_opened_at = state.last_opened_at.max(Some(opened_at));
    }
}

/// What is shown of a dependency this engine has no settings for (only its
/// stored state and the peers' are known: e.g. one declared only by a pipeline
/// of another shard): the breaker that opened last, here or at a peer, unless
/// a probe closed it since; no budget.
pub fn view_unset(state: &DependencyState, peers: &Peers, now: Timestamp) -> DependencyView {
    let own_opened = state.breaker.opened_at();
    let latest = match peers.latest_open {
        Some(theirs) if theirs.opened_at() > own_opened => theirs,
        _ => state.breaker,
    };
    let closed_since = latest.opened_at().is_some_and(|opened| peers.last_closed_at.max(state.last_closed_at) > Some(opened));
    let breaker = if closed_since { Breaker::Closed { consecutive_failures: 0 } } else { latest.as_of(now) };
    DependencyView { breaker, budget: None }
}

/// What `redrive dependency show` reports of one dependency at `now`.
#[derive(Clone, Debug, PartialEq)]
pub struct DependencyView {
    pub breaker: Breaker,
    /// First attempts and retries admitted in the budget's window, and how many
    /// retries it allows (`None` without a budget).
    pub budget: Option<BudgetView>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetView {
    pub first_attempts: u64,
    pub retries: u64,
    pub allowed: f64,
    pub window_seconds: u64,
}

pub fn view(spec: &Dependency, state: &DependencyState, peers: &Peers, now: Timestamp) -> DependencyView {
    let mut state = state.clone();
    if let Some(cb) = &spec.circuit_breaker {
        adopt(cb, &mut state, peers);
    }
    let budget = spec.retry_budget.map(|b| {
        let (own_firsts, own_retries) = state.window_counts(now, b.window_seconds);
        let (peer_firsts, peer_retries) = peers.window_counts(now, b.window_seconds);
        let (first_attempts, retries) = (own_firsts + peer_firsts, own_retries + peer_retries);
        BudgetView { first_attempts, retries, allowed: b.allowed(first_attempts), window_seconds: b.window_seconds }
    });
    DependencyView { breaker: state.breaker.as_of(now), budget }
}

#[cfg(test)]
mod tests;
