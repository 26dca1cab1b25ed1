//! JSON merge patch (RFC 7396) and the one way to change an execution's input:
//! [`InputPatch::apply`] patches a base input and checks the result against the
//! input limits, so an `InputPatch` in hand is always within them.

use crate::limits::{self, LimitError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// RFC 7396 `MergePatch(target, patch)`: an object patch merges key by key
/// (`null` removes a key), anything else replaces the target.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(fields) = target else { unreachable!("made an object above") };
    for (key, change) in changes {
        if change.is_null() {
            fields.remove(key);
        } else {
            merge_patch(fields.entry(key.clone()).or_insert(Value::Null), change);
        }
    }
}

/// A merge patch applied to an execution's input: the patch as given and the
/// input it produced (within [`limits::MAX_INPUT_BYTES`] and
/// [`limits::MAX_JSON_DEPTH`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InputPatch {
    patch: Value,
    input: Value,
}

impl InputPatch {
    /// Patches `base` (the execution's current input) with `patch`.
    pub fn apply(base: &Value, patch: Value) -> Result<InputPatch, LimitError> {
        limits::check_json_depth(|| "the input patch".to_string(), &patch)?;
        let mut input = base.clone();
        merge_patch(&mut input, &patch);
        limits::check_json_depth(|| "the patched input".to_string(), &input)?;
        limits::check_bytes(|| "the patched input".to_string(), limits::json_bytes(&input), limits::MAX_INPUT_BYTES)?;
        Ok(InputPatch { patch, input })
    }

    /// Patches an input stored as JSON text (the effective input: the state's
    /// patched one when there is one). Errors say why, for a person.
    pub fn apply_text(input_json: &str, patch: Value) -> Result<InputPatch, String> {
        let base: Value = serde_json::from_str(input_json).map_err(|e| format!("the execution's input is not JSON: {e}"))?;
        InputPatch::apply(&base, patch).map_err(|e| e.to_string())
    }

    pub fn patch(&self) -> &Value {
        &self.patch
    }

    /// The input after the patch.
    pub fn input(&self) -> &Value {
        &self.input
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The examples of RFC 7396, appendix A.
    #[test]
    fn rfc_7396_examples() {
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (json!({"a":"b","b":"c"}), json!({"a":null}), json!({"b":"c"})),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (json!({"a":{"b":"c"}}), json!({"a":{"b":"d","c":null}}), json!({"a":{"b":"d"}})),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (json!({}), json!({"a":{"bb":{"ccc":null}}}), json!({"a":{"bb":{}}})),
        ];
        for (target, patch, want) in cases {
            let mut got = target.clone();
            merge_patch(&mut got, &patch);
            assert_eq!(got, want, "MergePatch({target}, {patch})");
        }
    }

    #[test]
    fn a_patched_input_over_the_limit_is_refused() {
        let big = "x".repeat(limits::MAX_INPUT_BYTES);
        let e = InputPatch::apply(&json!({}), json!({ "big": big })).unwrap_err();
        assert!(e.to_string().contains("patched input"), "{e}");
        let ok = InputPatch::apply(&json!({"a": 1, "b": 2}), json!({"b": null, "c": 3})).unwrap();
        assert_eq!(ok.input(), &json!({"a": 1, "c": 3}));
        assert_eq!(ok.patch(), &json!({"b": null, "c": 3}));
    }
}
