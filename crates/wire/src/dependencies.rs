//! `GET /v1/dependencies`: retry budgets and circuit breakers shared by every
//! execution that calls the same dependency.

use crate::{Timestamp, wire_enum};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

wire_enum!(
    /// A circuit breaker's state.
    BreakerState {
        /// Attempts go through; consecutive failures are counted.
        Closed = "closed",
        /// Every due attempt is held until the cool-down ends.
        Open = "open",
        /// Up to `halfOpenProbes` attempts go through; a success closes it.
        HalfOpen = "half-open",
    }
);

wire_enum!(
    /// Why a due attempt is held.
    HoldReason {
        /// The retry budget is spent for now.
        Budget = "budget",
        /// The circuit breaker is open.
        BreakerOpen = "breaker-open",
        /// The breaker is half-open and its probes are all out.
        BreakerHalfOpen = "breaker-half-open",
    }
);

/// `retryBudget` as declared: over `windowSeconds`, retries stay within
/// `max(ratio × first attempts, minRetriesPerSecond × windowSeconds)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudgetSettings {
    pub ratio: f64,
    pub min_retries_per_second: f64,
    pub window_seconds: u64,
}

/// `circuitBreaker` as declared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreakerSettings {
    pub failure_threshold: u32,
    pub cool_down_ms: u64,
    pub half_open_probes: u32,
}

/// The breaker now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BreakerStatus {
    pub state: BreakerState,
    /// Closed: consecutive failures counted so far.
    pub consecutive_failures: u32,
    /// Open or half-open: when it opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<Timestamp>,
    /// Open: when its cool-down ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_until: Option<Timestamp>,
}

/// The budget's window now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    pub window_seconds: u64,
    pub first_attempts: u64,
    /// Retries admitted in the window.
    pub retries: u64,
    /// Retries the window allows.
    pub allowed: f64,
}

/// One dependency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudgetSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetStatus>,
    /// Attempts it holds now (deferred, due again later).
    pub attempts_held: u64,
    /// Attempts it deferred since the server started.
    pub attempts_deferred: u64,
}

/// `GET /v1/dependencies`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependencyList {
    pub dependencies: Vec<DependencyStatus>,
}

/// Why an action's due attempt waits (in an execution's action view).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeldBy {
    pub dependency: String,
    pub reason: HoldReason,
    pub since: Timestamp,
    pub until: Timestamp,
}
