//! YAML/JSON source text to a [`Node`] tree that remembers line numbers.
//!
//! [`parse_document`] reads YAML 1.2 (and therefore JSON, which is a subset) with
//! `yaml_rust2`'s event parser and builds a tree in which every value knows the
//! 1-based line it starts on.
//!
//! Rules:
//! - Exactly one document. Empty text (or only comments/whitespace, or a lone
//!   `---`) is an error, and so is a second document.
//! - Plain (unquoted) scalars are resolved with the YAML 1.2 core schema: `null`,
//!   `Null`, `NULL`, `~` and the empty scalar are null; `true`/`True`/`TRUE` and
//!   `false`/`False`/`FALSE` are booleans; `[-+]?[0-9]+`, `0x[0-9a-fA-F]+` and
//!   `0o[0-7]+` are integers (a decimal too large for `i64` becomes a float);
//!   decimal/exponent forms and `.inf`, `-.inf`, `.nan` (any case variant of the
//!   schema) are floats; anything else is a string. Quoted and block scalars are
//!   always strings.
//! - Tags (`!!str`, `!custom`) are ignored: resolution depends only on the style.
//! - Mapping keys must be scalars and are kept as the text written (`75: x` has
//!   the key `"75"`). A key repeated within one mapping is an error naming the key
//!   and both lines. YAML 1.1 merge keys (`<<`) are not special.
//! - Anchors and aliases are supported: an alias is replaced by a copy of the
//!   anchored node (the copy's root takes the alias's line; nodes inside keep the
//!   lines where they were written). To stop "billion laughs" documents, the
//!   nodes created by alias expansion may total at most [`MAX_ALIAS_NODES`].
//! - Limits: at most [`MAX_SOURCE_BYTES`] of text and [`MAX_DEPTH`] levels of
//!   nested sequences/mappings (alias copies included).

use crate::limits::{MAX_CONFIG_FILE_BYTES, MAX_DEFINITION_BYTES, MAX_JSON_DEPTH};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Largest accepted source text: the larger of a definition's and a config
/// file's limit.
pub const MAX_SOURCE_BYTES: usize = if MAX_DEFINITION_BYTES > MAX_CONFIG_FILE_BYTES { MAX_DEFINITION_BYTES } else { MAX_CONFIG_FILE_BYTES };
/// Deepest accepted nesting of sequences and mappings: as for any JSON a user hands in.
pub const MAX_DEPTH: usize = MAX_JSON_DEPTH;
/// Most nodes that alias expansion may create in one document.
pub const MAX_ALIAS_NODES: usize = 10_000;

/// A value with the 1-based line it starts on (0 when unknown, e.g. from JSON values
/// built in memory).
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub line: u32,
    pub value: NodeValue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    Seq(Vec<Node>),
    /// Keys in document order; duplicate keys are rejected by the loader.
    Map(Vec<(String, Node)>),
}

/// A syntax error in the source text.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct SourceError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl SourceError {
    fn at(mark: Marker, message: impl Into<String>) -> SourceError {
        SourceError { line: to_u32(mark.line()), column: to_u32(mark.col() + 1), message: message.into() }
    }
}

fn to_u32(x: usize) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// Parses one YAML 1.2 or JSON document into a located [`Node`] tree.
/// See the module documentation for the rules and limits. A UTF-8 byte order
/// mark at the start (editors on Windows write one) is skipped.
pub fn parse_document(text: &str) -> Result<Node, SourceError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.len() > MAX_SOURCE_BYTES {
        return Err(SourceError {
            line: 1,
            column: 1,
            message: format!("document is {} bytes long; at most {MAX_SOURCE_BYTES} bytes are accepted", text.len()),
        });
    }
    match flow_document(text) {
        None => build(Parser::new_from_str(text)),
        Some((offset, line)) => {
            let (blank, flow) = text.split_at(offset);
            let chars = blank.chars().chain(EXPLICIT_START.chars()).chain(flow.chars());
            build(Parser::new(chars)).map_err(|mut e| {
                if e.line == line {
                    e.column = e.column.saturating_sub(to_u32(EXPLICIT_START.len())).max(1);
                }
                e
            })
        }
    }
}

/// Put before a document that is one flow collection (JSON). yaml-rust2 holds
/// back every token of a flow collection that could still turn out to be a
/// mapping key (`{a: 1}: b`) until the collection closes: for a JSON document,
/// all of it, some 80 bytes per token (~100 MB for 1 MiB of `[0,0,...]`). A
/// collection on the `---` line cannot be a key, so the tokens stream; nothing
/// else changes (keys must be scalars here anyway), except the columns of that
/// line, which errors shift back.
const EXPLICIT_START: &str = "--- ";

/// Where a document that starts with `{` or `[` (after blank lines and spaces)
/// has its first line: the byte offset of that line and its 1-based number.
fn flow_document(text: &str) -> Option<(usize, u32)> {
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_start_matches(' ');
        if content.starts_with(['{', '[']) {
            return Some((offset, to_u32(i + 1)));
        }
        if !matches!(content, "\n" | "\r\n") {
            return None;
        }
        offset += line.len();
    }
    None
}

fn build<T: Iterator<Item = char>>(mut parser: Parser<T>) -> Result<Node, SourceError> {
    let mut builder = Builder::default();
    loop {
        let (event, mark) = parser.next_token().map_err(|e| SourceError::at(*e.marker(), e.info()))?;
        let end = event == Event::StreamEnd;
        builder.on_event(event, mark);
        if let Some(e) = builder.error.take() {
            return Err(e);
        }
        if end {
            break;
        }
    }
    match builder.root {
        Some(root) => Ok(root),
        None => Err(SourceError { line: 1, column: 1, message: "empty document".into() }),
    }
}

enum Frame {
    Seq { line: u32, anchor: usize, items: Vec<Node> },
    Map { line: u32, anchor: usize, entries: Vec<(String, Node)>, key_lines: HashMap<String, u32>, key: Option<(String, u32)> },
}

struct Anchored {
    node: Node,
    /// Number of nodes in the tree.
    size: usize,
    /// Nesting levels of sequences/mappings in the tree.
    height: usize,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    alias_nodes: usize,
    documents: usize,
    root: Option<Node>,
    error: Option<SourceError>,
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.handle(ev, mark) {
            self.error = Some(e);
        }
    }
}

impl Builder {
    fn handle(&mut self, ev: Event, mark: Marker) -> Result<(), SourceError> {
        let line = to_u32(mark.line());
        match ev {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(SourceError::at(mark, "a second document starts here; exactly one document is allowed"));
                }
                Ok(())
            }
            Event::Scalar(text, style, anchor, _tag) => {
                if let Some(Frame::Map { key: key @ None, key_lines, .. }) = self.stack.last_mut() {
                    return set_key(key, key_lines, text, line, mark);
                }
                if self.stack.is_empty() && style == TScalarStyle::Plain && text.is_empty() {
                    // A document with no content at all (a lone `---`).
                    return Ok(());
                }
                let mut line = line;
                if let (Some(Frame::Map { key: Some((_, key_line)), .. }), true) = (self.stack.last(), text.is_empty()) {
                    // An empty value (`a:`) is reported where the parser noticed it, the
                    // next token; its key's line is where the user wrote it.
                    line = *key_line;
                }
                let value = if style == TScalarStyle::Plain { resolve_plain(&text) } else { NodeValue::String(text) };
                self.complete(Node { line, value }, anchor)
            }
            Event::SequenceStart(anchor, _) => {
                self.open(mark)?;
                self.stack.push(Frame::Seq { line, anchor, items: Vec::new() });
                Ok(())
            }
            Event::MappingStart(anchor, _) => {
                self.open(mark)?;
                self.stack.push(Frame::Map { line, anchor, entries: Vec::new(), key_lines: HashMap::new(), key: None });
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let frame = self.stack.pop().expect("the parser balances collection events");
                let (node, anchor) = match frame {
                    Frame::Seq { line, anchor, items } => (Node { line, value: NodeValue::Seq(items) }, anchor),
                    Frame::Map { line, anchor, entries, .. } => (Node { line, value: NodeValue::Map(entries) }, anchor),
                };
                self.complete(node, anchor)
            }
            Event::Alias(id) => {
                let Some(a) = self.anchors.get(&id) else {
                    return Err(SourceError::at(mark, "alias refers to an unknown anchor"));
                };
                if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
                    let text = match &a.node.value {
                        NodeValue::Null => "null".to_string(),
                        NodeValue::Bool(b) => b.to_string(),
                        NodeValue::Int(i) => i.to_string(),
                        NodeValue::Float(f) => f.to_string(),
                        NodeValue::String(s) => s.clone(),
                        NodeValue::Seq(_) | NodeValue::Map(_) => {
                            return Err(SourceError::at(mark, "mapping keys must be scalars; this alias refers to a sequence or mapping"));
                        }
                    };
                    let Some(Frame::Map { key, key_lines, .. }) = self.stack.last_mut() else { unreachable!() };
                    return set_key(key, key_lines, text, line, mark);
                }
                if self.stack.len() + a.height > MAX_DEPTH {
                    return Err(SourceError::at(mark, format!("expanding this alias nests deeper than {MAX_DEPTH} levels")));
                }
                self.alias_nodes = self.alias_nodes.saturating_add(a.size);
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(SourceError::at(
                        mark,
                        format!("aliases expand to more than {MAX_ALIAS_NODES} nodes; refusing to expand further"),
                    ));
                }
                let mut node = a.node.clone();
                node.line = line;
                self.complete(node, 0)
            }
        }
    }

    /// Checks that a sequence or mapping may start here.
    fn open(&self, mark: Marker) -> Result<(), SourceError> {
        if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
            return Err(SourceError::at(mark, "mapping keys must be scalars, not sequences or mappings"));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(SourceError::at(mark, format!("nesting is deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    /// Places a finished value into its parent (or makes it the root).
    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), SourceError> {
        if anchor != 0 {
            let (size, height) = measure(&node);
            self.anchors.insert(anchor, Anchored { node: node.clone(), size, height });
        }
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map { entries, key, .. }) => {
                let (k, _) = key.take().expect("keys are handled before values");
                entries.push((k, node));
                Ok(())
            }
        }
    }
}

fn set_key(
    key: &mut Option<(String, u32)>,
    key_lines: &mut HashMap<String, u32>,
    text: String,
    line: u32,
    mark: Marker,
) -> Result<(), SourceError> {
    if let Some(first) = key_lines.get(&text) {
        return Err(SourceError::at(
            mark,
            format!("duplicate key {text:?}: first at line {first}, again at line {line}; each key may appear once in a mapping"),
        ));
    }
    key_lines.insert(text.clone(), line);
    *key = Some((text, line));
    Ok(())
}

/// Node count and collection height of a tree.
fn measure(node: &Node) -> (usize, usize) {
    match &node.value {
        NodeValue::Seq(items) => {
            let (mut size, mut height) = (1, 0);
            for n in items {
                let (s, h) = measure(n);
                size += s;
                height = height.max(h);
            }
            (size, height + 1)
        }
        NodeValue::Map(entries) => {
            let (mut size, mut height) = (1, 0);
            for (_, n) in entries {
                let (s, h) = measure(n);
                size += s;
                height = height.max(h);
            }
            (size, height + 1)
        }
        _ => (1, 0),
    }
}

/// Resolves a plain scalar with the YAML 1.2 core schema.
pub fn resolve_plain(s: &str) -> NodeValue {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return NodeValue::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return NodeValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeValue::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = s.strip_prefix("0x") {
        if !hex.is_empty()
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && let Ok(i) = i64::from_str_radix(hex, 16)
        {
            return NodeValue::Int(i);
        }
        return NodeValue::String(s.to_string());
    }
    if let Some(oct) = s.strip_prefix("0o") {
        if !oct.is_empty()
            && oct.bytes().all(|b| (b'0'..=b'7').contains(&b))
            && let Ok(i) = i64::from_str_radix(oct, 8)
        {
            return NodeValue::Int(i);
        }
        return NodeValue::String(s.to_string());
    }
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<i64>() {
            Ok(i) => NodeValue::Int(i),
            Err(_) => NodeValue::Float(s.parse::<f64>().unwrap_or(f64::NAN)),
        };
    }
    if is_core_float(digits)
        && let Ok(f) = s.parse::<f64>()
    {
        return NodeValue::Float(f);
    }
    NodeValue::String(s.to_string())
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` (the sign already stripped).
fn is_core_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let int_digits = count_digits(&b[i..]);
    i += int_digits;
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = count_digits(&b[i..]);
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp = count_digits(&b[i..]);
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

fn count_digits(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_digit()).count()
}

impl Node {
    /// The tree as a JSON value. Map keys keep their text. Floats that JSON cannot
    /// represent (NaN, ±infinity) become `null`.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
            NodeValue::String(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(entries.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// A tree from a JSON value; every line is 0 (unknown). Integers that fit `i64`
    /// become `Int`, other numbers `Float`.
    pub fn from_json(v: &serde_json::Value) -> Node {
        use serde_json::Value;
        let value = match v {
            Value::Null => NodeValue::Null,
            Value::Bool(b) => NodeValue::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => NodeValue::Int(i),
                None => NodeValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => NodeValue::String(s.clone()),
            Value::Array(items) => NodeValue::Seq(items.iter().map(Node::from_json).collect()),
            Value::Object(m) => NodeValue::Map(m.iter().map(|(k, v)| (k.clone(), Node::from_json(v))).collect()),
        };
        Node { line: 0, value }
    }

    /// The value of `key` when this is a map that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> NodeValue {
        parse_document(text).unwrap().value
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_skipped() {
        for text in ["\u{feff}name: p\nn: 1\n", "\u{feff}{\"name\": \"p\", \"n\": 1}"] {
            let node = parse_document(text).unwrap_or_else(|e| panic!("{text:?}: {}", e.message));
            assert_eq!(node.to_json(), serde_json::json!({"name": "p", "n": 1}), "{text:?}");
        }
        // Only at the start: elsewhere it stays part of the text.
        let node = parse_document("name: \"\u{feff}p\"\n").unwrap();
        assert_eq!(node.to_json(), serde_json::json!({"name": "\u{feff}p"}));
    }

    #[test]
    fn plain_scalars_follow_the_core_schema() {
        for (s, want) in [
            ("~", NodeValue::Null),
            ("null", NodeValue::Null),
            ("NULL", NodeValue::Null),
            ("True", NodeValue::Bool(true)),
            ("FALSE", NodeValue::Bool(false)),
            ("42", NodeValue::Int(42)),
            ("-7", NodeValue::Int(-7)),
            ("+3", NodeValue::Int(3)),
            ("0x1F", NodeValue::Int(31)),
            ("0o17", NodeValue::Int(15)),
            ("0.5", NodeValue::Float(0.5)),
            ("1e3", NodeValue::Float(1000.0)),
            ("-.5", NodeValue::Float(-0.5)),
            ("5.", NodeValue::Float(5.0)),
            (".inf", NodeValue::Float(f64::INFINITY)),
            ("-.Inf", NodeValue::Float(f64::NEG_INFINITY)),
            ("yes", NodeValue::String("yes".into())),
            ("0x", NodeValue::String("0x".into())),
            ("1.2.3", NodeValue::String("1.2.3".into())),
            ("e3", NodeValue::String("e3".into())),
            ("Step.THROTTLING", NodeValue::String("Step.THROTTLING".into())),
        ] {
            assert_eq!(v(s), want, "{s}");
        }
        assert!(matches!(v(".NaN"), NodeValue::Float(f) if f.is_nan()));
        assert_eq!(v("99999999999999999999"), NodeValue::Float(1e20));
    }

    #[test]
    fn quoted_scalars_are_strings() {
        assert_eq!(v("'42'"), NodeValue::String("42".into()));
        assert_eq!(v("\"true\""), NodeValue::String("true".into()));
        assert_eq!(v("\"\""), NodeValue::String(String::new()));
        assert_eq!(v("|\n  null\n"), NodeValue::String("null\n".into()));
    }

    #[test]
    fn empty_value_in_map_is_null() {
        assert_eq!(
            v("a:\nb: 1"),
            NodeValue::Map(vec![
                ("a".into(), Node { line: 1, value: NodeValue::Null }),
                ("b".into(), Node { line: 2, value: NodeValue::Int(1) })
            ])
        );
    }

    #[test]
    fn json_input_with_lines() {
        let text = "{\n  \"name\": \"x\",\n  \"stages\": [\n    {\"name\": \"A\", \"n\": 1.5}\n  ]\n}\n";
        let root = parse_document(text).unwrap();
        assert_eq!(root.line, 1);
        let name = root.get("name").unwrap();
        assert_eq!((name.line, &name.value), (2, &NodeValue::String("x".into())));
        let stages = root.get("stages").unwrap();
        assert_eq!(stages.line, 3);
        let NodeValue::Seq(items) = &stages.value else { panic!() };
        assert_eq!(items[0].line, 4);
        assert_eq!(items[0].get("n").unwrap().value, NodeValue::Float(1.5));

        let one_line = parse_document(r#"{"name": "x", "stages": []}"#).unwrap();
        assert_eq!(one_line.to_json(), serde_json::json!({"name": "x", "stages": []}));
        assert_eq!(one_line.get("stages").unwrap().line, 1);
    }

    #[test]
    fn yaml_lines_point_at_values() {
        let text = "name: p\nstages:\n  - name: A\n    actions:\n      - name: B\n        noop: {}\n";
        let root = parse_document(text).unwrap();
        let NodeValue::Seq(stages) = &root.get("stages").unwrap().value else { panic!() };
        assert_eq!(stages[0].get("name").unwrap().line, 3);
        let NodeValue::Seq(actions) = &stages[0].get("actions").unwrap().value else { panic!() };
        assert_eq!(actions[0].line, 5);
        assert_eq!(actions[0].get("noop").unwrap().line, 6);
    }

    #[test]
    fn duplicate_keys_are_rejected_with_both_lines() {
        let e = parse_document("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("\"a\"") && e.message.contains("line 1") && e.message.contains("line 3"), "{e}");
        let e = parse_document("{\"a\": 1,\n \"a\": 2}").unwrap_err();
        assert!(e.message.contains("duplicate key"), "{e}");
        // The same key in different maps is fine.
        assert!(parse_document("a: {x: 1}\nb: {x: 2}\n").is_ok());
    }

    #[test]
    fn json_documents_keep_their_lines_and_columns() {
        // The columns yaml-rust2 reports without the explicit `---` put before a
        // flow document (see EXPLICIT_START).
        for (text, line, column) in [
            ("{\"a\": 1,,}", 1, 9),
            ("  {\"a\": 1,,}", 1, 11),
            ("\n\r\n{\"a\":\n 1,,}", 4, 4),
            ("\n  [1, 2,, 3]", 2, 9),
            ("{\"a\": 1} x", 1, 10),
        ] {
            let e = parse_document(text).unwrap_err();
            assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
        }
        let root = parse_document("\n\n  {\"a\":\n [1]}").unwrap();
        assert_eq!((root.line, root.get("a").unwrap().line), (3, 4));
        // A flow collection is still no mapping key, and one document is still one.
        assert!(parse_document("{a: 1}: b").is_err());
        assert!(parse_document("[a]: b").is_err());
        let e = parse_document("{\"a\": [1, {\"b\": 2}]}\n---\n{}").unwrap_err();
        assert_eq!((e.line, e.message.contains("one document")), (2, true), "{e}");
        // Documents that start otherwise are read as they are.
        assert_eq!(flow_document("# c\n{}"), None);
        assert_eq!(flow_document("\t{}"), None);
        assert_eq!(flow_document("a: {}"), None);
        assert_eq!(flow_document(" \n  [1]"), Some((2, 2)));
        assert_eq!(flow_document("\r\n[1]"), Some((2, 2)));
        assert_eq!(flow_document("\rx\n[1]"), None);
    }

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e = parse_document("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(e.line >= 2, "{e}");
        assert!(e.column >= 1, "{e}");
        let e = parse_document("a: 1\n  b: 2\n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        let e = parse_document("{\"a\": 1,,}").unwrap_err();
        assert_eq!(e.line, 1, "{e}");
        assert!(e.to_string().starts_with("line 1, column "), "{e}");
    }

    #[test]
    fn exactly_one_document() {
        assert_eq!(parse_document("").unwrap_err().message, "empty document");
        assert_eq!(parse_document("# only a comment\n\n").unwrap_err().message, "empty document");
        let e = parse_document("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("one document"), "{e}");
        assert!(parse_document("---\na: 1\n...\n").is_ok());
        assert_eq!(parse_document("---\n").unwrap_err().message, "empty document");
        assert_eq!(v("~"), NodeValue::Null);
    }

    #[test]
    fn non_scalar_keys_are_rejected() {
        assert!(parse_document("? [a, b]\n: 1\n").unwrap_err().message.contains("keys must be scalars"));
        assert!(parse_document("{[1]: 2}").is_err());
    }

    #[test]
    fn aliases_are_expanded_with_a_bound() {
        let root = parse_document("base: &b {x: 1}\nuse: *b\n").unwrap();
        assert_eq!(root.get("use").unwrap().to_json(), serde_json::json!({"x": 1}));
        assert_eq!(root.get("use").unwrap().line, 2);

        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in "bcdefghi".chars() {
            laughs.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = c;
        }
        let e = parse_document(&laughs).unwrap_err();
        assert!(e.message.contains("aliases expand"), "{e}");
    }

    #[test]
    fn limits() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(parse_document(&deep).unwrap_err().message.contains(&format!("deeper than {MAX_DEPTH}")));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse_document(&ok).is_ok());
        let very_deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_document(&very_deep).is_err());
        let big = format!("a: \"{}\"", "x".repeat(MAX_SOURCE_BYTES));
        assert!(parse_document(&big).unwrap_err().message.contains(&format!("at most {MAX_SOURCE_BYTES} bytes")));
    }

    #[test]
    fn json_round_trip() {
        let j = serde_json::json!({"a": [1, 2.5, "s", null, true], "b": {"c": -3}});
        let n = Node::from_json(&j);
        assert_eq!(n.line, 0);
        assert_eq!(n.to_json(), j);
        let nan = Node { line: 1, value: NodeValue::Float(f64::NAN) };
        assert_eq!(nan.to_json(), serde_json::Value::Null);
    }
}
