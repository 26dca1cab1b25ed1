//! Every size and count limit of redrive, defined once.
//!
//! Limits are checked where an input enters (a definition file, an API body, an
//! action's output, a step result, a client token) and again for each
//! transition before it is submitted to the store; the store checks them a last
//! time. A value over a limit fails only the execution (or request) it belongs to,
//! with [`crate::exception::ExceptionType::LimitExceeded`] and a message naming
//! the limit, the value and where it came from.
//!
//! Sizes are in bytes of UTF-8 (never characters), nesting in levels.

use std::fmt;

// ---- documents ----

/// A pipeline definition (file, API body or stored canonical JSON).
pub const MAX_DEFINITION_BYTES: usize = 1024 * 1024;
/// A server configuration file.
pub const MAX_CONFIG_FILE_BYTES: usize = 1024 * 1024;
/// An execution's (or function execution's) input document.
pub const MAX_INPUT_BYTES: usize = 1024 * 1024;
/// An execution's state document, as stored.
pub const MAX_STATE_BYTES: usize = 4 * 1024 * 1024;
/// Room kept free in an execution's state for what one transition adds besides
/// outputs (attempt bookkeeping, failure messages): an output is accepted only if
/// the state stays this far below [`MAX_STATE_BYTES`].
pub const STATE_HEADROOM_BYTES: usize = 64 * 1024;
/// One action's output or one durable-function step's (or function's) result.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Nesting of any JSON document a user hands in (inputs, outputs, step results):
/// well below serde_json's own recursion limit (128), so whatever is stored
/// inside a state document can always be read back.
pub const MAX_JSON_DEPTH: usize = 64;

// ---- definitions ----

pub const MAX_STAGES: usize = 50;
pub const MAX_ACTIONS_PER_STAGE: usize = 50;
pub const MAX_RUN_ORDER: u32 = 999;
pub const MAX_RETRY_POLICIES_PER_ACTION: usize = 20;
/// Exception types one retry policy may list (each is checked and reported on
/// its own, so an unbounded list costs memory per item).
pub const MAX_EXCEPTION_TYPES_PER_POLICY: usize = 100;
pub const MAX_TIMEOUT_SECONDS: u64 = 7 * 24 * 3600;
pub const MAX_ARGV_ITEMS: usize = 1000;
/// Names one action's `secretEnv` may list.
pub const MAX_SECRET_ENV: usize = 32;
/// Characters of an environment variable name in `secretEnv`.
pub const MAX_ENV_NAME_CHARS: usize = 128;
pub const MAX_STAGE_AUTO_RETRIES: u32 = 10;
/// A pipeline's `maxConcurrentExecutions`, at most.
pub const MAX_CONCURRENT_EXECUTIONS: u32 = 10_000;
/// Longest a pipeline's `retentionDays` may keep its finished executions (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;
/// An action's `concurrency.max`: attempts of one key value running at once, at most.
pub const MAX_KEY_CONCURRENCY: u32 = 10_000;
/// An action's `concurrency.key` path: bytes of its text and segments after `$.input`.
pub const MAX_KEY_PATH_BYTES: usize = 256;
pub const MAX_KEY_PATH_SEGMENTS: usize = 32;
/// A concurrency key value (the selected string, or the canonical JSON text of
/// another value), in bytes; a longer one is cut and suffixed with a hash of the whole.
pub const MAX_KEY_VALUE_BYTES: usize = 128;
/// Dependencies one pipeline (or the server config) may declare.
pub const MAX_DEPENDENCIES: usize = 100;
/// A retry budget's sliding window, in whole seconds (its counts are kept in
/// one-second buckets, so at most this many buckets per dependency).
pub const MIN_BUDGET_WINDOW_SECONDS: u64 = 1;
pub const MAX_BUDGET_WINDOW_SECONDS: u64 = 3600;
/// A retry budget's `minRetriesPerSecond`, at most.
pub const MAX_MIN_RETRIES_PER_SECOND: f64 = 10_000.0;
/// A circuit breaker's `failureThreshold`, at most.
pub const MAX_BREAKER_FAILURE_THRESHOLD: u32 = 100_000;
/// A circuit breaker's `coolDown`: 100 ms to one day.
pub const MIN_BREAKER_COOL_DOWN_MS: u64 = 100;
pub const MAX_BREAKER_COOL_DOWN_MS: u64 = 24 * 3600 * 1000;
/// A circuit breaker's `halfOpenProbes`, at most.
pub const MAX_BREAKER_HALF_OPEN_PROBES: u32 = 1000;
/// Characters of a name (pipeline, stage, action, queue, function): ASCII only,
/// so also bytes.
pub const NAME_MAX_LEN: usize = 100;
/// Characters of a custom exception type (ASCII only, so also bytes); also the
/// longest exception-type filter.
pub const MAX_EXCEPTION_TYPE_CHARS: usize = 100;

// ---- durable functions ----

/// Steps one execution may record at most.
pub const MAX_STEPS: usize = 10_000;
/// Characters of a step name at most.
pub const MAX_STEP_NAME_CHARS: usize = 200;

// ---- messages and identifiers ----

/// A failure message kept in state and ledger.
pub const MAX_FAILURE_MESSAGE_BYTES: usize = 4096;
/// A start's `clientRequestToken` (1 to this many bytes).
pub const MAX_CLIENT_TOKEN_BYTES: usize = 128;
/// The request fingerprint stored beside a client token.
pub const MAX_FINGERPRINT_BYTES: usize = 1024;
/// A durable-function execution name (its idempotency key), 1 to this many bytes.
pub const MAX_EXECUTION_NAME_BYTES: usize = 512;

// ---- dead-letter queues ----

/// A dead-letter entry's `detail` document.
pub const MAX_DLQ_DETAIL_BYTES: usize = 256 * 1024;
/// A dead-letter entry's error message.
pub const MAX_DLQ_MESSAGE_BYTES: usize = 64 * 1024;
/// A failure message as copied into a dead-letter entry's per-action detail.
pub const MAX_DLQ_DETAIL_MESSAGE_BYTES: usize = 1024;
/// A redrive run's request and summary documents.
pub const MAX_REDRIVE_RUN_JSON_BYTES: usize = 256 * 1024;

/// Executions one bulk stage retry goes through at most (`--max` is capped here).
pub const MAX_BULK_RETRY_EXECUTIONS: u64 = 10_000;
/// Executions of the pipeline a bulk stage retry reads, newest first, to find
/// the ones that match (a larger history is reported as not fully scanned).
pub const MAX_BULK_RETRY_SCAN: u64 = 100_000;
/// Fastest pace of a bulk stage retry (stage retries started per second).
pub const MAX_BULK_RETRY_RATE_PER_S: f64 = 1000.0;
/// Pace of a bulk stage retry that names none.
pub const DEFAULT_BULK_RETRY_RATE_PER_S: f64 = 10.0;
/// A bulk stage retry's request and summary documents; a result's reason.
pub const MAX_BULK_RETRY_JSON_BYTES: usize = 64 * 1024;
pub const MAX_BULK_RETRY_REASON_BYTES: usize = 1024;

// ---- store calls and listings ----

/// Transitions in one store commit.
pub const MAX_TRANSITIONS_PER_COMMIT: usize = 10_000;
/// Rows in one page of any listing.
pub const MAX_PAGE_SIZE: usize = 1000;

// ---- what actions produce (runners) ----

/// `$REDRIVE_OUTPUT_FILE` larger than this fails the attempt.
pub const MAX_OUTPUT_FILE_BYTES: u64 = MAX_OUTPUT_BYTES as u64;
/// `$REDRIVE_ERROR_FILE` larger than this is ignored (and said so in the message).
pub const MAX_ERROR_FILE_BYTES: u64 = 64 * 1024;
/// Per stdout/stderr of a command: only the last this-many bytes are kept.
pub const MAX_CAPTURED_STREAM_BYTES: usize = 64 * 1024;
/// At most this much of an HTTP response body is read.
pub const MAX_HTTP_RESPONSE_BYTES: usize = MAX_OUTPUT_BYTES;
/// HTTP attempt time limit when the action sets no `timeoutSeconds`.
pub const DEFAULT_HTTP_TIMEOUT_SECONDS: u64 = 60;
/// A non-JSON 2xx body is kept in the output as text up to this many bytes.
pub const MAX_HTTP_OUTPUT_TEXT_BYTES: usize = 64 * 1024;
/// Stderr excerpt in a command's failure message.
pub const MAX_STDERR_EXCERPT_BYTES: usize = 500;
/// Body excerpt in an HTTP failure message.
pub const MAX_HTTP_BODY_EXCERPT_BYTES: usize = 300;
/// `$REDRIVE_INPUT` is set only when the input is at most this long (Linux
/// rejects a single environment string over 128 KiB); `$REDRIVE_INPUT_FILE`
/// always holds it.
pub const MAX_INPUT_ENV_BYTES: usize = 96 * 1024;

// ---- console sessions ----

/// A console session ends this long after its login, however it is used.
pub const CONSOLE_SESSION_MAX_AGE_MS: u64 = 12 * 3600 * 1000;
/// A console session unused this long ends.
pub const CONSOLE_SESSION_IDLE_MS: u64 = 3600 * 1000;
/// Console sessions kept at once; a login beyond it ends the least recently used.
pub const MAX_CONSOLE_SESSIONS: usize = 1000;

// ---- reports ----

/// Problems reported for one definition or configuration; the rest are counted
/// ("and N more problems").
pub const MAX_PROBLEMS_REPORTED: usize = 100;

/// A value over one of the limits above: what it was, how big, and the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitError {
    /// What was measured, e.g. "the output of action Build/Compile".
    pub what: String,
    /// The measured value (bytes or levels, see `unit`).
    pub value: usize,
    pub max: usize,
    pub unit: Unit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Bytes,
    Levels,
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unit {
            Unit::Bytes => write!(f, "{} is {} bytes; the maximum is {} bytes", self.what, self.value, self.max),
            Unit::Levels => write!(f, "{} is nested {} levels deep; the maximum is {} levels", self.what, self.value, self.max),
        }
    }
}

impl std::error::Error for LimitError {}

/// Checks a size in bytes.
pub fn check_bytes(what: impl FnOnce() -> String, bytes: usize, max: usize) -> Result<(), LimitError> {
    if bytes > max {
        return Err(LimitError { what: what(), value: bytes, max, unit: Unit::Bytes });
    }
    Ok(())
}

/// How deeply a JSON value nests: 0 for a scalar, 1 for `[]` or `{"a":1}`, ...
/// Iterative, so any depth is measured without recursion.
pub fn json_depth(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        match v {
            serde_json::Value::Array(items) => {
                deepest = deepest.max(depth + 1);
                stack.extend(items.iter().map(|i| (i, depth + 1)));
            }
            serde_json::Value::Object(map) => {
                deepest = deepest.max(depth + 1);
                stack.extend(map.values().map(|i| (i, depth + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// How deeply JSON text nests, counted on the text (brackets outside strings),
/// without building a value: safe on any input, linear time, constant memory.
pub fn json_text_depth(text: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The length of a value's compact JSON text, counted without building it.
pub fn json_bytes(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).expect("counting never fails");
    count.0
}

/// Checks a JSON value a user handed in: at most [`MAX_JSON_DEPTH`] levels.
pub fn check_json_depth(what: impl FnOnce() -> String, value: &serde_json::Value) -> Result<(), LimitError> {
    let depth = json_depth(value);
    if depth > MAX_JSON_DEPTH {
        return Err(LimitError { what: what(), value: depth, max: MAX_JSON_DEPTH, unit: Unit::Levels });
    }
    Ok(())
}

/// Parses JSON text a user handed in (an input, an output file, a body): at most
/// `max_bytes` and [`MAX_JSON_DEPTH`] levels, both checked before parsing.
/// `Ok(Err(e))` is text that is within the limits but not JSON.
pub fn parse_bounded_json(
    what: impl Fn() -> String,
    text: &str,
    max_bytes: usize,
) -> Result<Result<serde_json::Value, serde_json::Error>, LimitError> {
    check_bytes(&what, text.len(), max_bytes)?;
    let depth = json_text_depth(text);
    if depth > MAX_JSON_DEPTH {
        return Err(LimitError { what: what(), value: depth, max: MAX_JSON_DEPTH, unit: Unit::Levels });
    }
    Ok(serde_json::from_str(text))
}

/// Whether an output of `output_bytes` still fits an execution whose state is
/// `state_bytes` now: at most [`MAX_OUTPUT_BYTES`], and the state must stay
/// [`STATE_HEADROOM_BYTES`] below [`MAX_STATE_BYTES`]. `what` names the output
/// ("the output of action Build/Compile").
pub fn check_output_fits(what: impl Fn() -> String, output_bytes: usize, state_bytes: usize) -> Result<(), LimitError> {
    check_bytes(&what, output_bytes, MAX_OUTPUT_BYTES)?;
    let budget = MAX_STATE_BYTES.saturating_sub(STATE_HEADROOM_BYTES).saturating_sub(state_bytes);
    let what = || {
        format!(
            "{} (the execution's state is already {state_bytes} bytes: {budget} bytes are left of its {MAX_STATE_BYTES}-byte limit)",
            what()
        )
    };
    check_bytes(what, output_bytes, budget)
}

/// Truncates to at most `max_bytes` on a char boundary, marking a cut with `…`.
pub fn truncate_utf8(mut s: String, max_bytes: usize) -> String {
    if s.len() <= max_bytes {
        return s;
    }
    let mut cut = max_bytes.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_of_values_and_text_agree() {
        for text in ["1", "[]", "{\"a\":[1,{\"b\":[]}]}", "[[[[\"]]]]]\"]]]]", "{\"k\\\"[\":{}}"] {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(json_depth(&v), json_text_depth(text), "{text}");
        }
    }

    #[test]
    fn deep_text_is_refused_before_parsing() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let e = parse_bounded_json(|| "the input".into(), &deep, MAX_INPUT_BYTES).unwrap_err();
        assert_eq!((e.value, e.max, e.unit), (100_000, MAX_JSON_DEPTH, Unit::Levels));
        assert!(e.to_string().contains("the input is nested 100000 levels deep"), "{e}");
        let ok = format!("{}{}", "[".repeat(MAX_JSON_DEPTH), "]".repeat(MAX_JSON_DEPTH));
        assert!(parse_bounded_json(|| "x".into(), &ok, MAX_INPUT_BYTES).unwrap().is_ok());
    }

    #[test]
    fn json_bytes_is_the_compact_length() {
        let v = serde_json::json!({"a": [1, "é", null], "b": {"c": true}});
        assert_eq!(json_bytes(&v), v.to_string().len());
    }

    #[test]
    fn output_budget_counts_the_state() {
        assert!(check_output_fits(|| "o".into(), 1000, 0).is_ok());
        let e = check_output_fits(|| "the output of action S/A".into(), 1000, MAX_STATE_BYTES - STATE_HEADROOM_BYTES - 999).unwrap_err();
        assert_eq!((e.value, e.max), (1000, 999));
        assert!(e.to_string().contains("the output of action S/A"), "{e}");
        let e = check_output_fits(|| "o".into(), MAX_OUTPUT_BYTES + 1, 0).unwrap_err();
        assert_eq!(e.max, MAX_OUTPUT_BYTES);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = truncate_utf8("ééééé".into(), 6);
        assert!(s.len() <= 6 && s.ends_with('…'), "{s}");
        assert_eq!(truncate_utf8("abc".into(), 3), "abc");
    }
}
