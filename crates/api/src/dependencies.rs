//! `GET /v1/dependencies` and `GET /v1/dependencies/{name}`: each dependency's
//! retry budget and circuit breaker as the engine holds them now.

use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use redrive_core::dependency::{Breaker, DeferReason, Dependency};
use redrive_core::machine::Hold;
use redrive_engine::dependencies::DependencySnapshot;
use redrive_engine::service::{Service, ServiceError};
use redrive_store::Store;
use redrive_wire as w;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use utoipa_axum::router::OpenApiRouter;

pub fn router<S: Store>() -> OpenApiRouter<Arc<Service<S>>> {
    OpenApiRouter::new().routes(crate::doc::op::<__path_list_dependencies, _, _, _>(list_dependencies::<S>)).routes(crate::doc::op::<
        __path_get_dependency,
        _,
        _,
        _,
    >(
        get_dependency::<S>
    ))
}

/// Every dependency the engine knows (the server config's, and those attempts
/// met): breaker state, budget used in its window against what it allows, and
/// the attempts it holds.
#[utoipa::path(get, path = "/v1/dependencies", tag = "operations",
    responses((status = 200, description = "Success", body = w::DependencyList),
        (status = 503, description = "The engine is not running", body = w::ErrorResponse)))]
pub async fn list_dependencies<S: Store>(State(svc): State<Arc<Service<S>>>) -> Result<Json<w::DependencyList>, ApiError> {
    let all = snapshots(&svc).await?;
    Ok(Json(w::DependencyList { dependencies: all.iter().map(status).collect() }))
}

/// One dependency.
#[utoipa::path(get, path = "/v1/dependencies/{name}", tag = "operations",
    params(("name" = String, Path, description = "Dependency name")),
    responses((status = 200, description = "Success", body = w::DependencyStatus),
        (status = 404, description = "No such dependency", body = w::ErrorResponse)))]
pub async fn get_dependency<S: Store>(
    State(svc): State<Arc<Service<S>>>,
    Path(name): Path<String>,
) -> Result<Json<w::DependencyStatus>, ApiError> {
    let all = snapshots(&svc).await?;
    match all.iter().find(|d| d.name == name) {
        Some(d) => Ok(Json(status(d))),
        None => Err(ApiError(ServiceError::DependencyNotFound(name))),
    }
}

async fn snapshots<S: Store>(svc: &Service<S>) -> Result<Vec<DependencySnapshot>, ApiError> {
    svc.engine().dependencies().await.map_err(|e| ApiError(ServiceError::Unavailable(e.to_string())))
}

fn status(d: &DependencySnapshot) -> w::DependencyStatus {
    let settings: Option<&Dependency> = d.settings.as_ref();
    // Without settings (only the stored state is known yet) the stored breaker shows.
    let breaker = settings.is_none_or(|s| s.circuit_breaker.is_some()).then(|| breaker(&d.view.breaker));
    w::DependencyStatus {
        name: d.name.clone(),
        retry_budget: settings.and_then(|s| s.retry_budget).map(|b| w::RetryBudgetSettings {
            ratio: b.ratio(),
            min_retries_per_second: b.min_retries_per_second(),
            window_seconds: b.window_seconds(),
        }),
        circuit_breaker: settings.and_then(|s| s.circuit_breaker).map(|c| w::CircuitBreakerSettings {
            failure_threshold: c.failure_threshold(),
            cool_down_ms: c.cool_down_ms(),
            half_open_probes: c.half_open_probes(),
        }),
        breaker,
        budget: d.view.budget.map(|b| w::BudgetStatus {
            window_seconds: b.window_seconds,
            first_attempts: b.first_attempts,
            retries: b.retries,
            allowed: b.allowed,
        }),
        attempts_held: d.held as u64,
        attempts_deferred: d.deferred_total,
    }
}

fn breaker(b: &Breaker) -> w::BreakerStatus {
    match *b {
        Breaker::Closed { consecutive_failures } => {
            w::BreakerStatus { state: w::BreakerState::Closed, consecutive_failures, opened_at: None, open_until: None }
        }
        Breaker::Open { opened_at, until } => w::BreakerStatus {
            state: w::BreakerState::Open,
            consecutive_failures: 0,
            opened_at: Some(opened_at.to_string()),
            open_until: Some(until.to_string()),
        },
        Breaker::HalfOpen { opened_at, .. } => w::BreakerStatus {
            state: w::BreakerState::HalfOpen,
            consecutive_failures: 0,
            opened_at: Some(opened_at.to_string()),
            open_until: None,
        },
    }
}

pub fn hold_reason(r: &DeferReason) -> w::HoldReason {
    match r {
        DeferReason::Budget { .. } => w::HoldReason::Budget,
        DeferReason::BreakerOpen => w::HoldReason::BreakerOpen,
        DeferReason::BreakerHalfOpen => w::HoldReason::BreakerHalfOpen,
    }
}

/// An action's hold as the execution views show it.
pub fn held_by(h: &Hold) -> w::HeldBy {
    w::HeldBy {
        dependency: h.dependency.to_string(),
        reason: hold_reason(&h.reason),
        since: h.since.to_string(),
        until: h.until.to_string(),
    }
}

/// The label of every per-dependency figure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabel {
    dependency: String,
}

/// Most dependencies `/metrics` reports (by name); the rest are left out.
pub const MAX_METRICS_DEPENDENCIES: usize = 1000;

/// One snapshot per dependency from several engines' (`--spread`: one
/// process's shards): held, deferred and budget counts added up, the breaker
/// the worst of theirs.
pub fn merge_engines(engines: Vec<Vec<DependencySnapshot>>) -> Vec<DependencySnapshot> {
    let severity = |b: &Breaker| match b {
        Breaker::Closed { .. } => 0,
        Breaker::HalfOpen { .. } => 1,
        Breaker::Open { .. } => 2,
    };
    let mut merged: std::collections::BTreeMap<String, DependencySnapshot> = std::collections::BTreeMap::new();
    for d in engines.into_iter().flatten() {
        let Some(m) = merged.get_mut(&d.name) else {
            merged.insert(d.name.clone(), d);
            continue;
        };
        m.held += d.held;
        m.deferred_total += d.deferred_total;
        m.view.budget = match (m.view.budget, d.view.budget) {
            (Some(a), Some(b)) => Some(redrive_core::dependency::BudgetView {
                first_attempts: a.first_attempts + b.first_attempts,
                retries: a.retries + b.retries,
                allowed: a.allowed + b.allowed,
                window_seconds: a.window_seconds,
            }),
            (a, b) => a.or(b),
        };
        if severity(&d.view.breaker) > severity(&m.view.breaker) {
            m.view.breaker = d.view.breaker;
        }
    }
    merged.into_values().collect()
}

/// Adds each dependency's figures (from the engine's snapshot) to `registry`.
pub fn register_dependency_metrics(registry: &mut Registry, deps: &[DependencySnapshot]) {
    let deps = &deps[..deps.len().min(MAX_METRICS_DEPENDENCIES)];
    let label = |d: &DependencySnapshot| DependencyLabel { dependency: d.name.clone() };
    let state = Family::<DependencyLabel, Gauge>::default();
    let held = Family::<DependencyLabel, Gauge>::default();
    let deferred = Family::<DependencyLabel, Gauge>::default();
    let used = Family::<DependencyLabel, Gauge>::default();
    let allowed = Family::<DependencyLabel, Gauge<f64, AtomicU64>>::default();
    for d in deps {
        let code = match d.view.breaker {
            Breaker::Closed { .. } => 0,
            Breaker::HalfOpen { .. } => 1,
            Breaker::Open { .. } => 2,
        };
        state.get_or_create(&label(d)).set(code);
        held.get_or_create(&label(d)).set(i64::try_from(d.held).unwrap_or(i64::MAX));
        deferred.get_or_create(&label(d)).set(i64::try_from(d.deferred_total).unwrap_or(i64::MAX));
        if let Some(b) = d.view.budget {
            used.get_or_create(&label(d)).set(i64::try_from(b.retries).unwrap_or(i64::MAX));
            allowed.get_or_create(&label(d)).set(b.allowed);
        }
    }
    registry.register("redrive_dependency_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open", state);
    registry.register("redrive_dependency_attempts_held", "Attempts the dependency holds now (deferred by its budget or breaker)", held);
    registry.register("redrive_dependency_attempts_deferred", "Attempts the dependency deferred since the server started", deferred);
    registry.register("redrive_dependency_budget_retries", "Retries admitted in the retry budget's window", used);
    registry.register("redrive_dependency_budget_allowed", "Retries the retry budget's window allows now", allowed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use redrive_core::dependency::{BudgetView, DependencyView};
    use redrive_core::time::Timestamp;

    #[test]
    fn metrics_name_each_dependency() {
        let snap = |name: &str, breaker: Breaker, budget: Option<BudgetView>| DependencySnapshot {
            name: name.into(),
            settings: None,
            view: DependencyView { breaker, budget },
            held: 3,
            deferred_total: 7,
        };
        let open = Breaker::Open { opened_at: Timestamp::from_unix_ms(0), until: Timestamp::from_unix_ms(1) };
        let budget = BudgetView { first_attempts: 10, retries: 4, allowed: 5.0, window_seconds: 10 };
        let mut registry = Registry::default();
        register_dependency_metrics(
            &mut registry,
            &[snap("a", open, Some(budget)), snap("b", Breaker::Closed { consecutive_failures: 0 }, None)],
        );
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "redrive_dependency_breaker_state{dependency=\"a\"} 2",
            "redrive_dependency_breaker_state{dependency=\"b\"} 0",
            "redrive_dependency_attempts_held{dependency=\"a\"} 3",
            "redrive_dependency_attempts_deferred{dependency=\"b\"} 7",
            "redrive_dependency_budget_retries{dependency=\"a\"} 4",
            "redrive_dependency_budget_allowed{dependency=\"a\"} 5.0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(!text.contains("redrive_dependency_budget_retries{dependency=\"b\"}"), "{text}");
    }
}
