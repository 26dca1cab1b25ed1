//! `dependencies:` and `dependency:` in definitions: accepted forms, and every
//! bad value reported with its path, line and what is allowed.

mod common;
use redrive_core::definition::source::parse_document;
use redrive_core::definition::*;

const BASE: &str = r#"name: p
dependencies:
  - name: payments-api
    retryBudget: {ratio: 0.1, minRetriesPerSecond: 5, window: 60s}
    circuitBreaker: {failureThreshold: 20, coolDown: 30s, halfOpenProbes: 1}
  - name: ledger
stages:
  - name: S
    actions:
      - name: Pay
        http: {url: "http://Payments.example:8080/pay"}
        dependency: payments-api
      - name: Call
        http: {url: "https://User@api.example.com:443/x?y"}
      - name: Ipv6
        http: {url: "http://[::1]:80/"}
      - name: Cmd
        command: [true]
      - name: Led
        noop: {}
        dependency: ledger
"#;

#[test]
fn declarations_and_references() {
    let p = parse_pipeline_text(BASE).unwrap_or_else(|ps| panic!("{ps:?}"));
    assert_eq!(p.dependencies.len(), 2);
    let pay = &p.dependencies[0];
    let b = pay.retry_budget.unwrap();
    assert_eq!((b.ratio(), b.min_retries_per_second(), b.window_seconds()), (0.1, 5.0, 60));
    let cb = pay.circuit_breaker.unwrap();
    assert_eq!((cb.failure_threshold(), cb.cool_down_ms(), cb.half_open_probes()), (20, 30_000, 1));
    assert!(p.dependencies[1].is_name_only());
    let deps: Vec<Option<&str>> = p.stages[0].actions.iter().map(|a| a.dependency.as_ref().map(|n| n.as_str())).collect();
    // Explicit wins over the host; an http action defaults to its host; IPv6 and commands have none.
    assert_eq!(deps, vec![Some("payments-api"), Some("api.example.com"), None, None, Some("ledger")]);
}

/// (replace this text of BASE, with this) → (path, line, allowed contains).
#[test]
fn bad_values_are_reported_where_they_are() {
    let cases: &[(&str, &str, &str, u32, &str)] = &[
        ("ratio: 0.1", "ratio: 0", "$.dependencies[0].retryBudget.ratio", 4, "greater than 0 and at most 1"),
        ("ratio: 0.1", "ratio: 2", "$.dependencies[0].retryBudget.ratio", 4, "greater than 0 and at most 1"),
        ("window: 60s", "window: 1500ms", "$.dependencies[0].retryBudget.window", 4, "whole seconds"),
        ("window: 60s", "window: 2h", "$.dependencies[0].retryBudget.window", 4, "whole seconds"),
        ("window: 60s", "window: soon", "$.dependencies[0].retryBudget.window", 4, "duration"),
        ("minRetriesPerSecond: 5", "minRetriesPerSecond: 0", "$.dependencies[0].retryBudget.minRetriesPerSecond", 4, "greater than 0"),
        ("minRetriesPerSecond: 5", "minRetries: 5", "$.dependencies[0].retryBudget.minRetries", 4, "minRetriesPerSecond"),
        ("failureThreshold: 20", "failureThreshold: 0", "$.dependencies[0].circuitBreaker.failureThreshold", 5, "from 1 to"),
        ("coolDown: 30s", "coolDown: 10ms", "$.dependencies[0].circuitBreaker.coolDown", 5, "100ms to 1d"),
        ("halfOpenProbes: 1", "halfOpenProbes: 0", "$.dependencies[0].circuitBreaker.halfOpenProbes", 5, "from 1 to"),
        ("  - name: ledger\n", "  - name: ledger\n  - name: ledger\n", "$.dependencies[2]", 7, "unique"),
        ("dependency: ledger", "dependency: nope", "$.stages[0].actions[4].dependency", 21, "payments-api, ledger"),
        ("  - name: ledger\n", "  - name: ledger\n    extra: 1\n", "$.dependencies[1].extra", 7, "retryBudget"),
    ];
    common::assert_each_reported(BASE, cases);
}

#[test]
fn server_config_list_parses_alone() {
    let node = parse_document("- name: a\n  circuitBreaker: {failureThreshold: 2, coolDown: 1s}\n").unwrap();
    let deps = parse_dependencies(&node, "$.dependencies").unwrap();
    assert_eq!(deps[0].circuit_breaker.unwrap().half_open_probes(), 1);
    let bad = parse_document("- name: a\n  circuitBreaker: {coolDown: 1s}\n").unwrap();
    let ps = parse_dependencies(&bad, "$.dependencies").unwrap_err();
    assert_eq!(ps[0].path, "$.dependencies[0].circuitBreaker.failureThreshold");
}
