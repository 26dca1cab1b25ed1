//! An action's `concurrency: {key: "$.input.tenant", max: 2}` (docs/retry-control.md).

use super::{At, Cx, as_int, as_map, as_str, check_keys, required};
use crate::concurrency::{Concurrency, KEY_PATH_ALLOWED, KeyPath};
use crate::limits::MAX_KEY_CONCURRENCY;

const CONCURRENCY_KEYS: &[&str] = &["key", "max"];

pub(super) fn concurrency(cx: &mut Cx, at: &At) -> Option<Concurrency> {
    let obj = as_map(cx, at)?;
    check_keys(cx, &obj, CONCURRENCY_KEYS, &[]);
    let key = required(cx, &obj, "key").and_then(|a| key_path(cx, &a));
    let max = required(cx, &obj, "max").and_then(|a| as_int(cx, &a, 1, i64::from(MAX_KEY_CONCURRENCY)));
    let (key, max) = (key?, max?);
    Some(Concurrency::new(key, max as u32).expect("max was checked against the same range"))
}

fn key_path(cx: &mut Cx, at: &At) -> Option<KeyPath> {
    let text = as_str(cx, at)?;
    match KeyPath::parse(text) {
        Ok(k) => Some(k),
        Err(e) => {
            cx.bad(at, format!("concurrency key {e}"), Some(KEY_PATH_ALLOWED));
            None
        }
    }
}
