//! Plain-text presentation for the client commands: aligned tables and a YAML
//! rendering of JSON documents.

use serde_json::Value;

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

/// Milliseconds since the Unix epoch of an RFC 3339 UTC timestamp as the server
/// writes them (`2026-11-18T11:06:40.123Z`; fractions and a `+00:00` offset are
/// accepted). `None` for anything else.
pub fn parse_timestamp_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) { t.parse().ok() } else { None }
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded: String = frac[..digits].chars().chain(std::iter::repeat('0')).take(3).collect();
        ms = padded.parse().ok()?;
        rest = &frac[digits..];
    }
    if !matches!(rest, "Z" | "z" | "+00:00") {
        return None;
    }
    // Howard Hinnant's days-from-civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000) + ms)
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// How long ago an RFC 3339 timestamp was, for people (`2m05s`), or "-".
pub fn age_of(timestamp: Option<&str>) -> String {
    match timestamp.and_then(parse_timestamp_ms) {
        Some(t) => redrive_core::time::human_duration_ms(now_ms().saturating_sub(t).max(0) as u64),
        None => "-".into(),
    }
}

/// The document as YAML (block style; short scalar lists in flow style). Keys are
/// ordered for reading: `name` first, `stages` and `actions` last. The result parses
/// back to the same JSON.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => write_map(&mut out, v, 0),
        Value::Array(a) if !a.is_empty() && flow(v).is_none() => write_seq(&mut out, a, 0),
        other => {
            out.push_str(&flow(other).unwrap_or_else(|| other.to_string()));
            out.push('\n');
        }
    }
    out
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

fn write_map(out: &mut String, v: &Value, indent: usize) {
    let Value::Object(m) = v else { return };
    let mut first = true;
    for k in ordered_keys(m) {
        // The first key of a map that is a sequence item shares the "- " line.
        if !first || indent == 0 || !out.ends_with("- ") {
            out.push_str(&" ".repeat(indent));
        }
        first = false;
        out.push_str(&scalar_str(k));
        out.push(':');
        write_value(out, &m[k], indent);
    }
}

fn write_seq(out: &mut String, a: &[Value], indent: usize) {
    for item in a {
        out.push_str(&" ".repeat(indent));
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => write_map(out, item, indent + 2),
            Value::Array(inner) if !inner.is_empty() && flow(item).is_none() => {
                out.push('\n');
                write_seq(out, inner, indent + 2);
            }
            other => {
                out.push_str(&flow(other).unwrap_or_else(|| other.to_string()));
                out.push('\n');
            }
        }
    }
}

/// After `key:` at `indent`.
fn write_value(out: &mut String, v: &Value, indent: usize) {
    if let Some(f) = flow(v) {
        out.push(' ');
        out.push_str(&f);
        out.push('\n');
        return;
    }
    out.push('\n');
    match v {
        Value::Object(_) => write_map(out, v, indent + 2),
        Value::Array(a) => write_seq(out, a, indent + 2),
        _ => unreachable!("scalars are flow"),
    }
}

/// Inline form of scalars, empty collections and short lists of scalars.
fn flow(v: &Value) -> Option<String> {
    match v {
        Value::Null => Some("null".into()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(scalar_str(s)),
        Value::Object(m) if m.is_empty() => Some("{}".into()),
        Value::Array(a) if a.is_empty() => Some("[]".into()),
        Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()) => {
            let s = format!("[{}]", a.iter().map(|x| flow(x).expect("scalar")).collect::<Vec<_>>().join(", "));
            (s.chars().count() <= 100).then_some(s)
        }
        _ => None,
    }
}

/// A string as a plain YAML scalar when that is unambiguous, else double-quoted
/// (JSON string syntax is valid YAML).
fn scalar_str(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '@'))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && !matches!(s.to_ascii_lowercase().as_str(), "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n" | "~")
        && !s.starts_with(".inf")
        && !s.starts_with(".nan");
    if plain { s.to_string() } else { Value::String(s.to_string()).to_string() }
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
        assert!(y.contains(r#"command: [sh, "-c", "exit 1"]"#), "{y}");
        assert!(y.contains("t: \"true\""), "{y}");
        let node = redrive_core::definition::source::parse_document(&y).unwrap_or_else(|e| panic!("{y}\n{}", e.message));
        assert_eq!(node.to_json(), v, "{y}");
    }
}
