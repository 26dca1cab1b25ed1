//! Per-key concurrency (docs/retry-control.md): an action's `concurrency: {key:
//! "$.input.tenant", max: 2}` lets at most `max` attempts of that action run at
//! once per value of the key, across all executions, so one tenant's retries
//! cannot starve the rest.
//!
//! - [`KeyPath`]: the key, a path into the execution's input (`$.input`, then
//!   `.field`, `['field']` or `[index]` segments); [`KeyPath::select`] reads an
//!   input's [`KeyValue`]: a string as it is, any other value as its JSON text
//!   (object keys sorted), absent or `null` as [`KeyValue::Absent`] — one shared
//!   bucket. A value longer than [`MAX_KEY_VALUE_BYTES`] is cut and suffixed with a
//!   hash of the whole, so distinct long values stay distinct (as far as a 64-bit
//!   hash goes).
//! - [`SlotKey`]: what the limit counts: (pipeline, stage, action, key value).
//! - [`KeySlots`]: the state machine over slots, FIFO per key. `acquire` queues a
//!   waiter and `release` frees a slot; both return the waiters that may run now,
//!   front first. A waiter waits only while its own key is full: other keys are
//!   never blocked by a hot one.

use crate::jitter::stable_hash;
use crate::limits::{MAX_KEY_CONCURRENCY, MAX_KEY_PATH_BYTES, MAX_KEY_PATH_SEGMENTS, MAX_KEY_VALUE_BYTES};
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

/// An action's `concurrency:` declaration, constructed only by [`Concurrency::new`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Concurrency {
    key: KeyPath,
    max: u32,
}

impl Concurrency {
    /// `max` must be 1 to [`MAX_KEY_CONCURRENCY`].
    pub fn new(key: KeyPath, max: u32) -> Result<Concurrency, String> {
        if !(1..=MAX_KEY_CONCURRENCY).contains(&max) {
            return Err(format!("max {max} is out of range: from 1 to {MAX_KEY_CONCURRENCY}"));
        }
        Ok(Concurrency { key, max })
    }

    pub fn key(&self) -> &KeyPath {
        &self.key
    }

    pub fn max(&self) -> u32 {
        self.max
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Field(String),
    Index(usize),
}

/// A path into the execution input: `$.input`, `$.input.tenant`,
/// `$.input.customer.id`, `$.input.items[0].sku`, `$.input['odd key']`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPath {
    text: String,
    segments: Vec<Segment>,
}

/// What [`KeyPath::parse`] accepts, for error messages.
pub const KEY_PATH_ALLOWED: &str =
    "a path into the execution input: $.input followed by .field, ['field'] or [index] segments, e.g. $.input.tenant";

impl KeyPath {
    pub fn parse(text: &str) -> Result<KeyPath, String> {
        if text.len() > MAX_KEY_PATH_BYTES {
            return Err(format!("is {} bytes long; at most {MAX_KEY_PATH_BYTES}", text.len()));
        }
        let Some(mut rest) = text.strip_prefix("$.input") else {
            return Err("must start with $.input (the key is read from the execution input)".into());
        };
        let mut segments = Vec::new();
        while !rest.is_empty() {
            let (segment, after) = next_segment(rest)?;
            segments.push(segment);
            rest = after;
        }
        if segments.len() > MAX_KEY_PATH_SEGMENTS {
            return Err(format!("has {} segments; at most {MAX_KEY_PATH_SEGMENTS}", segments.len()));
        }
        Ok(KeyPath { text: text.to_string(), segments })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key value of an execution whose input is `input`.
    pub fn select(&self, input: &Value) -> KeyValue {
        let mut v = input;
        for s in &self.segments {
            let next = match s {
                Segment::Field(f) => v.as_object().and_then(|o| o.get(f)),
                Segment::Index(i) => v.as_array().and_then(|a| a.get(*i)),
            };
            match next {
                Some(n) => v = n,
                None => return KeyValue::Absent,
            }
        }
        KeyValue::of(v)
    }
}

impl Serialize for KeyPath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// One segment at the start of `rest`, and what follows it.
fn next_segment(rest: &str) -> Result<(Segment, &str), String> {
    if let Some(after) = rest.strip_prefix('.') {
        let end = after.find(['.', '[']).unwrap_or(after.len());
        let name = &after[..end];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$') {
            return Err(format!("segment .{name} is not a field name ([A-Za-z0-9_$-]+; quote others as ['...'])"));
        }
        return Ok((Segment::Field(name.to_string()), &after[end..]));
    }
    if let Some(after) = rest.strip_prefix('[') {
        let close = after.find(']').ok_or_else(|| format!("segment [{after} has no closing ]"))?;
        let inner = &after[..close];
        let quoted = inner.len() >= 2 && ["'", "\""].iter().any(|q| inner.starts_with(q) && inner.ends_with(q));
        let segment = if quoted {
            Segment::Field(inner[1..inner.len() - 1].to_string())
        } else {
            match inner.parse::<usize>() {
                Ok(i) if inner.chars().all(|c| c.is_ascii_digit()) => Segment::Index(i),
                _ => return Err(format!("segment [{inner}] is neither an index nor a quoted field name")),
            }
        };
        return Ok((segment, &after[close + 1..]));
    }
    Err(format!("unexpected {rest:?}: segments are .field, ['field'] or [index]"))
}

/// An execution's value of a concurrency key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    /// The path selects nothing (or `null`): one bucket shared by all such executions.
    Absent,
    /// A string, as it is.
    Text(String),
    /// A number, boolean, array or object, as its JSON text (object keys sorted).
    Json(String),
}

impl KeyValue {
    pub fn of(v: &Value) -> KeyValue {
        match v {
            Value::Null => KeyValue::Absent,
            Value::String(s) => KeyValue::Text(bounded(s.clone())),
            other => KeyValue::Json(bounded(other.to_string())),
        }
    }

    /// The value as shown (`None`: absent).
    pub fn text(&self) -> Option<&str> {
        match self {
            KeyValue::Absent => None,
            KeyValue::Text(s) | KeyValue::Json(s) => Some(s),
        }
    }
}

impl std::fmt::Display for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text().unwrap_or("(absent)"))
    }
}

/// At most [`MAX_KEY_VALUE_BYTES`]: a longer value is cut on a char boundary
/// and ends with `…#` and 16 hex digits of a hash of the whole value.
fn bounded(s: String) -> String {
    if s.len() <= MAX_KEY_VALUE_BYTES {
        return s;
    }
    let suffix = format!("#{:016x}", stable_hash(s.as_bytes()));
    let mut cut = crate::limits::truncate_utf8(s, MAX_KEY_VALUE_BYTES - suffix.len());
    cut.push_str(&suffix);
    cut
}

/// What a per-key limit counts: attempts of one action of one pipeline (any
/// version) with one key value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotKey {
    pub pipeline: String,
    pub stage: String,
    pub action: String,
    pub value: KeyValue,
}

/// One key's slots as they stand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyView {
    pub running: u32,
    pub max: u32,
    pub waiting: usize,
}

#[derive(Debug)]
struct Queue<W> {
    running: u32,
    max: u32,
    waiting: VecDeque<W>,
}

/// The slots of every key: how many run, and who waits, in arrival order.
/// Keys with nothing running and nobody waiting are forgotten.
#[derive(Debug)]
pub struct KeySlots<W> {
    keys: BTreeMap<SlotKey, Queue<W>>,
}

impl<W> Default for KeySlots<W> {
    fn default() -> Self {
        KeySlots { keys: BTreeMap::new() }
    }
}

impl<W: PartialEq> KeySlots<W> {
    /// `waiter` needs a slot of `key`, whose action declares `max` now (the
    /// latest declaration wins: a new pipeline version may change it). It joins
    /// the back of the key's queue; the answer is the waiters that may run now,
    /// front first — `waiter` among them when the key had a free slot and no one
    /// was waiting ahead of it.
    pub fn acquire(&mut self, key: SlotKey, max: u32, waiter: W) -> Vec<W> {
        let q = self.keys.entry(key.clone()).or_insert_with(|| Queue { running: 0, max, waiting: VecDeque::new() });
        q.max = max.max(1);
        q.waiting.push_back(waiter);
        self.grant(&key)
    }

    /// A running attempt of `key` ended (or was abandoned): its slot goes to the
    /// waiters at the front.
    pub fn release(&mut self, key: &SlotKey) -> Vec<W> {
        let Some(q) = self.keys.get_mut(key) else { return Vec::new() };
        q.running = q.running.saturating_sub(1);
        self.grant(key)
    }

    /// A waiter gave up before its turn (its attempt was cancelled): out of the
    /// queue, nobody else moves. False when it was not waiting.
    pub fn cancel(&mut self, key: &SlotKey, waiter: &W) -> bool {
        let Some(q) = self.keys.get_mut(key) else { return false };
        let Some(i) = q.waiting.iter().position(|w| w == waiter) else { return false };
        q.waiting.remove(i);
        self.tidy(key);
        true
    }

    pub fn view(&self, key: &SlotKey) -> Option<KeyView> {
        self.keys.get(key).map(|q| KeyView { running: q.running, max: q.max, waiting: q.waiting.len() })
    }

    /// Waiters over every key.
    pub fn waiting_total(&self) -> usize {
        self.keys.values().map(|q| q.waiting.len()).sum()
    }

    fn grant(&mut self, key: &SlotKey) -> Vec<W> {
        let mut run = Vec::new();
        if let Some(q) = self.keys.get_mut(key) {
            while q.running < q.max {
                let Some(w) = q.waiting.pop_front() else { break };
                q.running += 1;
                run.push(w);
            }
        }
        self.tidy(key);
        run
    }

    fn tidy(&mut self, key: &SlotKey) {
        if self.keys.get(key).is_some_and(|q| q.running == 0 && q.waiting.is_empty()) {
            self.keys.remove(key);
        }
    }
}

#[cfg(test)]
mod tests;
