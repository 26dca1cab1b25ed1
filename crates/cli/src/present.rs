//! Plain-text presentation for the client commands: aligned tables and a YAML
//! rendering of JSON documents.

use serde_json::Value;
use yaml_rust2::{Yaml, YamlEmitter};

/// A borderless table (comfy-table) with a header row: columns padded to their
/// widest cell, two spaces between them, no trailing spaces, never wrapped.
pub struct Table {
    inner: comfy_table::Table,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        let mut inner = comfy_table::Table::new();
        inner.load_preset(comfy_table::presets::NOTHING).set_header(header.to_vec());
        Table { inner }
    }

    /// A table whose columns are right-aligned (numbers, durations).
    pub fn right_aligned(header: &[&str]) -> Table {
        let mut t = Table::new(header);
        for c in t.inner.column_iter_mut() {
            c.set_cell_alignment(comfy_table::CellAlignment::Right);
        }
        t
    }

    /// Right-aligns the columns at these indexes.
    pub fn align_right(&mut self, columns: &[usize]) {
        for &i in columns {
            if let Some(c) = self.inner.column_mut(i) {
                c.set_cell_alignment(comfy_table::CellAlignment::Right);
            }
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.inner.add_row(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    pub fn render(&self) -> String {
        let mut t = self.inner.clone();
        let n = t.column_count();
        for (i, c) in t.column_iter_mut().enumerate() {
            c.set_padding((0, if i + 1 < n { 2 } else { 0 }));
        }
        let mut out = t.trim_fmt();
        out.push('\n');
        out
    }
}

/// One line, at most `max` characters (an ellipsis marks a cut).
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut t: String = flat.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The text, or "-" without one.
pub fn or_dash(s: Option<&str>) -> String {
    s.unwrap_or("-").to_string()
}

/// Milliseconds since the Unix epoch of an RFC 3339 timestamp (as the server
/// writes them, `2026-11-18T11:06:40.123Z`; read by jiff). `None` for anything else.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    redrive_core::time::Timestamp::parse_rfc3339(s).ok().map(|t| t.unix_ms())
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    redrive_engine::Clock::now(&redrive_engine::SystemClock).unix_ms()
}

/// How long ago an RFC 3339 timestamp was, for people (`2m05s`), or "-".
pub fn age_of(timestamp: Option<&str>) -> String {
    match timestamp.and_then(parse_timestamp_ms) {
        Some(t) => redrive_core::time::human_duration_ms(now_ms().saturating_sub(t).max(0) as u64),
        None => "-".into(),
    }
}

/// The document as YAML, written by yaml-rust2's emitter (block style). Keys are
/// ordered for reading: `name` first, `stages` and `actions` last. The result
/// parses back to the same JSON.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    emitter.multiline_strings(true);
    emitter.dump(&to_yaml_node(v)).expect("writing YAML to a String cannot fail");
    let body = out.strip_prefix("---").unwrap_or(&out).trim_start_matches(['\n', ' ']);
    format!("{body}\n")
}

fn to_yaml_node(v: &Value) -> Yaml {
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Array(a.iter().map(to_yaml_node).collect()),
        Value::Object(m) => Yaml::Hash(ordered_keys(m).into_iter().map(|k| (Yaml::String(k.clone()), to_yaml_node(&m[k]))).collect()),
    }
}

fn ordered_keys(m: &serde_json::Map<String, Value>) -> Vec<&String> {
    let rank = |k: &str| match k {
        "name" => 0,
        "stages" | "actions" => 2,
        _ => 1,
    };
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort_by_key(|k| rank(k)); // stable: the server's order otherwise
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["xyz".into(), "1".into()]);
        t.row(vec!["ab".into()]);
        assert_eq!(t.render(), "A    LONGER\nxyz  1\nab\n");
        let mut t = Table::right_aligned(&["N", "DELAY"]);
        t.row(vec!["10".into(), "1s".into()]);
        assert_eq!(t.render(), " N  DELAY\n10     1s\n");
    }

    #[test]
    fn timestamps_parse_back() {
        for ms in [0i64, 1_795_000_000_123, 951_782_400_000, 4_102_444_799_999] {
            let t = redrive_core::time::Timestamp::from_unix_ms(ms).to_string();
            assert_eq!(parse_timestamp_ms(&t), Some(ms), "{t}");
        }
        assert_eq!(parse_timestamp_ms("2026-11-18T11:06:40Z"), Some(1_795_000_000_000));
        assert_eq!(parse_timestamp_ms("2026-11-18T11:06:40.5+00:00"), Some(1_795_000_000_500));
        assert_eq!(parse_timestamp_ms("yesterday"), None);
        assert_eq!(parse_timestamp_ms("2026-13-18T11:06:40Z"), None);
        assert_eq!(age_of(None), "-");
    }

    #[test]
    fn yaml_reads_well_and_parses_back() {
        let v = json!({"stages": [{"actions": [{"name": "A", "command": ["sh", "-c", "exit 1"], "retryPolicies": [{"exceptionType": ["Action.FAILED"], "maxAttempts": 0}]}], "name": "S"}], "name": "p", "executionMode": "QUEUED", "e": {}, "t": "true", "n": "1"});
        let y = to_yaml(&v);
        assert!(y.starts_with("name: p\n"), "{y}");
        assert!(y.contains("command:\n"), "{y}");
        assert!(y.contains("t: \"true\""), "{y}");
        let node = redrive_core::definition::source::parse_document(&y).unwrap_or_else(|e| panic!("{y}\n{}", e.message));
        assert_eq!(node.to_json(), v, "{y}");
    }
}
