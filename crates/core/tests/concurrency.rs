//! An action's `concurrency: {key, max}` in definitions: accepted forms, and every
//! bad value reported with its path, line and what is allowed.

mod common;
use redrive_core::concurrency::KeyValue;
use redrive_core::definition::*;
use serde_json::json;

const BASE: &str = r#"name: p
stages:
  - name: S
    actions:
      - name: Call
        noop: {}
        concurrency: {key: "$.input.tenant", max: 2}
      - name: Other
        noop: {}
"#;

#[test]
fn a_declaration_is_parsed_and_selects_from_the_input() {
    let p = parse_pipeline_text(BASE).unwrap_or_else(|ps| panic!("{ps:?}"));
    let c = p.stages[0].actions[0].concurrency.as_ref().expect("declared");
    assert_eq!((c.key().as_str(), c.max()), ("$.input.tenant", 2));
    assert_eq!(c.key().select(&json!({"tenant": "acme"})), KeyValue::Text("acme".into()));
    assert!(p.stages[0].actions[1].concurrency.is_none());
}

/// (replace this text of BASE, with this) → (path, line, allowed contains).
#[test]
fn bad_values_are_reported_where_they_are() {
    let cases: &[(&str, &str, &str, u32, &str)] = &[
        ("max: 2", "max: 0", "$.stages[0].actions[0].concurrency.max", 7, "from 1 to 10000"),
        ("max: 2", "max: 10001", "$.stages[0].actions[0].concurrency.max", 7, "from 1 to 10000"),
        ("max: 2", "max: 1.5", "$.stages[0].actions[0].concurrency.max", 7, ""),
        (", max: 2", "", "$.stages[0].actions[0].concurrency.max", 7, ""),
        ("\"$.input.tenant\"", "\"$.tenant\"", "$.stages[0].actions[0].concurrency.key", 7, "$.input followed by"),
        ("\"$.input.tenant\"", "\"$.input[x]\"", "$.stages[0].actions[0].concurrency.key", 7, "[index]"),
        ("\"$.input.tenant\"", "7", "$.stages[0].actions[0].concurrency.key", 7, ""),
        ("max: 2", "max: 2, limit: 3", "$.stages[0].actions[0].concurrency.limit", 7, "key, max"),
        ("{key: \"$.input.tenant\", max: 2}", "2", "$.stages[0].actions[0].concurrency", 7, ""),
    ];
    common::assert_each_reported(BASE, cases);
}
