//! `dependencies:` (a pipeline's, or the server config's) and an action's
//! `dependency:` reference.
//!
//! ```yaml
//! dependencies:
//!   - name: payments-api
//!     retryBudget: {ratio: 0.1, minRetriesPerSecond: 5, window: 60s}
//!     circuitBreaker: {failureThreshold: 20, coolDown: 30s, halfOpenProbes: 1}
//! ```
//! Durations are written like `60s`, `1m`, `500ms` (or a number of seconds).

use super::{At, Cx, Obj, as_int, as_map, as_name, as_number, as_seq, check_keys, quote, required};
use crate::definition::problem::Problem;
use crate::definition::source::{Node, NodeValue};
use crate::dependency::{CircuitBreaker, Dependency, RetryBudget};
use crate::limits::{MAX_BREAKER_FAILURE_THRESHOLD, MAX_BREAKER_HALF_OPEN_PROBES, MAX_DEPENDENCIES};
use crate::name::Name;
use std::borrow::Cow;
use std::collections::HashSet;

const DEPENDENCY_KEYS: &[&str] = &["name", "retryBudget", "circuitBreaker"];
const BUDGET_KEYS: &[&str] = &["ratio", "minRetriesPerSecond", "window"];
const BREAKER_KEYS: &[&str] = &["failureThreshold", "coolDown", "halfOpenProbes"];

/// The server config's `dependencies:` list at `path` (e.g. `$.dependencies`).
pub fn parse_dependencies(node: &Node, path: &str) -> Result<Vec<Dependency>, Vec<Problem>> {
    let mut cx = Cx::default();
    let field = path.rsplit('.').next().unwrap_or(path).to_string();
    let at = At { node: Cow::Borrowed(node), path: path.to_string(), field };
    let list = dependency_list(&mut cx, &at);
    match list {
        Some(l) if cx.problems.is_empty() => Ok(l),
        _ => Err(cx.problems.into_vec()),
    }
}

pub(super) fn dependency_list(cx: &mut Cx, at: &At) -> Option<Vec<Dependency>> {
    if matches!(at.node.value, NodeValue::Null) {
        return Some(Vec::new());
    }
    let items = as_seq(cx, at)?;
    if !cx.within_limit(at, items.len(), MAX_DEPENDENCIES, "dependencies", "too many dependencies") {
        return None;
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut ok = true;
    for (_, item) in items.iter() {
        // Declared even when the rest of it is wrong: references to it are fine.
        if let NodeValue::Map(entries) = &item.node.value
            && let Some((_, Node { value: NodeValue::String(n), .. })) = entries.iter().find(|(k, _)| k == "name")
            && !cx.dependency_names.contains(n)
        {
            cx.dependency_names.push(n.clone());
        }
        match dependency(cx, &item) {
            Some(d) if !seen.insert(d.name.to_string()) => {
                cx.bad(&item, format!("dependency {} is declared twice", quote(d.name.as_str())), Some("unique dependency names"));
                ok = false;
            }
            Some(d) => out.push(d),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn dependency(cx: &mut Cx, at: &At) -> Option<Dependency> {
    let obj = as_map(cx, at)?;
    check_keys(cx, &obj, DEPENDENCY_KEYS, &[]);
    let name = required(cx, &obj, "name").and_then(|a| as_name(cx, &a));
    let retry_budget = match obj.at("retryBudget") {
        Some(a) => budget(cx, &a).map(Some),
        None => Some(None),
    };
    let circuit_breaker = match obj.at("circuitBreaker") {
        Some(a) => breaker(cx, &a).map(Some),
        None => Some(None),
    };
    Some(Dependency { name: name?, retry_budget: retry_budget?, circuit_breaker: circuit_breaker? })
}

fn budget(cx: &mut Cx, at: &At) -> Option<RetryBudget> {
    let obj = as_map(cx, at)?;
    check_keys(cx, &obj, BUDGET_KEYS, &[]);
    let ratio_at = required(cx, &obj, "ratio");
    let ratio = ratio_at.as_ref().and_then(|a| as_number(cx, a));
    let min_at = obj.at("minRetriesPerSecond");
    let min = match &min_at {
        Some(a) => as_number(cx, a),
        None => Some(DEFAULT_MIN_RETRIES_PER_SECOND),
    };
    let window_at = obj.at("window");
    let window_ms = match &window_at {
        Some(a) => duration_ms(cx, a),
        None => Some(DEFAULT_WINDOW_MS),
    };
    let (ratio, min, window_ms) = (ratio?, min?, window_ms?);
    match RetryBudget::new(ratio, min, window_ms) {
        Ok(b) => Some(b),
        Err((field, message)) => {
            let allowed = match field {
                "ratio" => "a number greater than 0 and at most 1",
                "window" => "whole seconds from 1s to 1h, e.g. 60s",
                _ => "a number greater than 0 (at most 10000) with minRetriesPerSecond × window ≥ 1",
            };
            let located = match field {
                "ratio" => ratio_at,
                "window" => window_at,
                _ => min_at,
            };
            report_at(cx, &obj, located.as_ref(), field, message, allowed);
            None
        }
    }
}

/// Defaults of a budget's optional fields (Finagle's).
pub const DEFAULT_MIN_RETRIES_PER_SECOND: f64 = 10.0;
pub const DEFAULT_WINDOW_MS: u64 = 10_000;

fn breaker(cx: &mut Cx, at: &At) -> Option<CircuitBreaker> {
    let obj = as_map(cx, at)?;
    check_keys(cx, &obj, BREAKER_KEYS, &[]);
    let threshold = required(cx, &obj, "failureThreshold").and_then(|a| as_int(cx, &a, 1, i64::from(MAX_BREAKER_FAILURE_THRESHOLD)));
    let cool_at = required(cx, &obj, "coolDown");
    let cool = cool_at.as_ref().and_then(|a| duration_ms(cx, a));
    let probes = match obj.at("halfOpenProbes") {
        Some(a) => as_int(cx, &a, 1, i64::from(MAX_BREAKER_HALF_OPEN_PROBES)),
        None => Some(1),
    };
    let (threshold, cool, probes) = (threshold?, cool?, probes?);
    match CircuitBreaker::new(threshold as u32, cool, probes as u32) {
        Ok(b) => Some(b),
        Err((field, message)) => {
            report_at(cx, &obj, cool_at.as_ref().filter(|_| field == "coolDown"), field, message, "a duration from 100ms to 1d, e.g. 30s");
            None
        }
    }
}

fn report_at(cx: &mut Cx, obj: &Obj, at: Option<&At>, field: &str, message: String, allowed: &str) {
    match at {
        Some(a) => cx.bad(a, message, Some(allowed)),
        None => cx.missing(obj, field, Some(message), Some(allowed)),
    }
}

/// A duration: text such as `60s`, `1m30s`, `500ms`, or a number of seconds.
fn duration_ms(cx: &mut Cx, at: &At) -> Option<u64> {
    const ALLOWED: &str = "a duration such as 500ms, 30s, 10m, or a number of seconds";
    match &at.node.value {
        NodeValue::String(s) => match crate::time::parse_duration_ms(s) {
            Ok(ms) => Some(ms),
            Err(e) => {
                cx.bad(at, e, Some(ALLOWED));
                None
            }
        },
        NodeValue::Int(_) | NodeValue::Float(_) => {
            let secs = as_number(cx, at)?;
            if !(0.0..=1.0e9).contains(&secs) {
                cx.bad(at, "is out of range", Some(ALLOWED));
                return None;
            }
            Some((secs * 1000.0).round() as u64)
        }
        _ => {
            cx.type_error(at, "a duration");
            None
        }
    }
}

/// An action's `dependency: NAME`: a name the pipeline's `dependencies` declares.
pub(super) fn reference(cx: &mut Cx, at: &At) -> Option<Name> {
    let name = as_name(cx, at)?;
    if cx.dependency_names.iter().any(|n| n == name.as_str()) {
        return Some(name);
    }
    let allowed = if cx.dependency_names.is_empty() {
        "a name declared under the pipeline's dependencies (none are declared; `- name: X` alone takes the server config's settings)"
            .to_string()
    } else {
        format!("one of the pipeline's dependencies: {}", cx.dependency_names.join(", "))
    };
    cx.bad(at, format!("unknown dependency {}", quote(name.as_str())), Some(&allowed));
    None
}
