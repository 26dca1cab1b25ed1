//! Runners: execute one attempt of one action and classify how it ended.
//!
//! A runner never decides whether to retry. It turns whatever happened (an exit
//! status, an HTTP response, a timeout, a connection error) into an
//! [`AttemptOutcome`]: success with an optional JSON output, or a
//! [`Failure`](redrive_core::exception::Failure) carrying an exception type, a
//! message and an optional server retry hint. The classification rules are the
//! contract of PRODUCT.md §3; each runner module documents how it applies them.
//!
//! Runners live in the IO shell: they spawn processes, open sockets, read the
//! clock (HTTP-date `Retry-After`) and sleep. They never panic on bad input: every
//! problem, including bad configuration discovered only at run time (a missing
//! working directory, an invalid header), becomes a classified failure.
//!
//! - [`command`]: argv actions (`tokio::process`, own process group, timeouts).
//! - [`http`]: HTTP actions (`reqwest`, status-code classification).
//! - [`noop`]: scripted actions for tests and demos.

pub mod command;
pub mod http;
pub mod noop;

pub use command::run_command;
pub use http::{http_client, parse_retry_after, run_http};
pub use noop::{noop_outcome, run_noop};

use redrive_core::exception::Failure;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a runner needs to know about the attempt it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptContext {
    pub execution_id: String,
    pub stage: String,
    pub action: String,
    /// Which series of attempts (a stage retry starts a new series).
    pub series: u32,
    /// 1-based attempt number within the series.
    pub attempt: u32,
    /// Stable for every attempt of this action in this execution.
    pub idempotency_key: String,
    /// Per-attempt time limit (`timeoutSeconds`); `None` = no limit for commands,
    /// [`limits::DEFAULT_HTTP_TIMEOUT_SECONDS`] for HTTP.
    pub timeout: Option<Duration>,
    /// Directory of the pipeline file. A relative `workingDirectory` and a
    /// relative `argv[0]` containing `/` resolve against it; it is also the
    /// default working directory. `None`: the engine's current directory.
    pub base_dir: Option<PathBuf>,
    /// The execution's input, as JSON text.
    pub input_json: String,
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    Succeeded { output: Option<serde_json::Value> },
    Failed(Failure),
}

impl AttemptOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, AttemptOutcome::Succeeded { .. })
    }

    /// The failure, if the attempt failed.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            AttemptOutcome::Failed(f) => Some(f),
            AttemptOutcome::Succeeded { .. } => None,
        }
    }
}

/// Size limits applied by the runners (defined with every other limit in
/// [`redrive_core::limits`]).
pub mod limits {
    pub use redrive_core::limits::{
        DEFAULT_HTTP_TIMEOUT_SECONDS, MAX_CAPTURED_STREAM_BYTES, MAX_ERROR_FILE_BYTES, MAX_HTTP_BODY_EXCERPT_BYTES,
        MAX_HTTP_OUTPUT_TEXT_BYTES, MAX_HTTP_RESPONSE_BYTES, MAX_INPUT_ENV_BYTES, MAX_OUTPUT_FILE_BYTES, MAX_STDERR_EXCERPT_BYTES,
    };
}

/// Converts a reported `retryAfterSeconds` into milliseconds; `None` for
/// negative, NaN or infinite values. Saturates at `u64::MAX`.
pub(crate) fn seconds_to_ms(seconds: f64) -> Option<u64> {
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some((seconds * 1000.0).round() as u64)
}

/// Formats a duration as seconds for messages: `30s`, `0.5s`.
pub(crate) fn fmt_secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{}s", d.as_secs_f64()) }
}

/// The optional fields of a reported error (`$REDRIVE_ERROR_FILE`, or an HTTP
/// failure body): `{"errorType": "...", "message": "...", "retryAfterSeconds": n}`.
#[derive(Debug, Default)]
pub(crate) struct ReportedError {
    /// `Some(Ok)` valid type, `Some(Err(message))` present but invalid.
    pub error_type: Option<Result<redrive_core::exception::ExceptionType, String>>,
    pub message: Option<String>,
    pub retry_after_ms: Option<u64>,
}

impl ReportedError {
    /// Reads the fields from a JSON object; `None` if `v` is not an object.
    pub(crate) fn from_json(v: &serde_json::Value) -> Option<ReportedError> {
        let obj = v.as_object()?;
        let error_type = obj.get("errorType").map(|t| match t.as_str() {
            Some(s) => redrive_core::exception::ExceptionType::parse(s).map_err(|e| format!("invalid errorType {s:?}: {e}")),
            None => Err(format!("invalid errorType {t}: not a string")),
        });
        let message = obj.get("message").and_then(|m| m.as_str()).map(str::trim).filter(|m| !m.is_empty()).map(str::to_string);
        let retry_after_ms = obj.get("retryAfterSeconds").and_then(|r| r.as_f64()).and_then(seconds_to_ms);
        Some(ReportedError { error_type, message, retry_after_ms })
    }
}
