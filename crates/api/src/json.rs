//! Reading request JSON the same way on both protocols: a UTF-8 byte-order mark
//! at the start is skipped, a key repeated in one object is refused (as the
//! CLI's definition loader refuses it), and an error names the JSON path of
//! the offending value (`serde_path_to_error`). A leaf module.

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// `text` without a leading UTF-8 byte-order mark.
pub fn strip_bom(text: &[u8]) -> &[u8] {
    text.strip_prefix(BOM).unwrap_or(text)
}

/// Why a request's JSON was refused: the message names the path (`$.a.b[2]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn with_path<E: fmt::Display>(e: serde_path_to_error::Error<E>) -> JsonError {
    let path = e.path().to_string();
    match path.as_str() {
        "." => JsonError(e.into_inner().to_string()),
        p if p.starts_with('[') => JsonError(format!("${p}: {}", e.into_inner())),
        p => JsonError(format!("$.{p}: {}", e.into_inner())),
    }
}

/// The document in `text`, refusing duplicate keys.
pub fn parse_value(text: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(strip_bom(text));
    let Strict(v) = serde_path_to_error::deserialize(&mut de).map_err(with_path)?;
    de.end().map_err(|e| JsonError(e.to_string()))?;
    Ok(v)
}

/// `T` from `text`, which must be a JSON object (see [`parse_value`]); unknown
/// fields are refused where `T` says `deny_unknown_fields`.
pub fn parse_object<T: DeserializeOwned>(text: &[u8]) -> Result<T, JsonError> {
    match parse_value(text)? {
        v @ Value::Object(_) => from_value(v),
        other => Err(JsonError(format!("the request body must be a JSON object, not {}", kind(&other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `T` from an already parsed document, the error naming the path.
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, JsonError> {
    serde_path_to_error::deserialize(v).map_err(with_path)
}

/// A JSON value whose objects have no repeated key.
struct Strict(Value);

impl<'de> de::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}; each key may appear once in an object")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_refused_with_their_path() {
        let e = parse_value(br#"{"a": {"b": 1, "b": 2}}"#).unwrap_err();
        assert!(e.0.contains("duplicate key \"b\"") && e.0.starts_with("$.a"), "{e}");
        assert_eq!(parse_value(br#"{"a": [1, {"b": 2}], "c": null}"#).unwrap(), json!({"a": [1, {"b": 2}], "c": null}));
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        assert_eq!(parse_value(b"\xEF\xBB\xBF{\"a\": 1}").unwrap(), json!({"a": 1}));
    }

    #[test]
    fn type_errors_name_the_path() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            x: Vec<u32>,
        }
        let e = parse_object::<T>(br#"{"x": [1, "two"]}"#).unwrap_err();
        assert!(parse_object::<T>(b"[1]").unwrap_err().0.contains("JSON object"));
        assert!(e.0.starts_with("$.x[1]: "), "{e}");
        assert!(parse_value(b"{} x").is_err());
    }
}
