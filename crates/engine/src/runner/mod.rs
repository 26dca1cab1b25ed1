//! Runners: execute one attempt of one action and classify how it ended.
//!
//! A runner never decides whether to retry. It turns whatever happened (an exit
//! status, an HTTP response, a timeout, a connection error) into an
//! [`AttemptOutcome`]: success with an optional JSON output, or a
//! [`Failure`] carrying an exception type, a
//! message and an optional server retry hint. The classification rules are the
//! contract of PRODUCT.md §3; each runner module documents how it applies them.
//!
//! Runners live in the IO shell: they spawn processes, open sockets, read the
//! clock (HTTP-date `Retry-After`) and sleep. They never panic on bad input: every
//! problem, including bad configuration discovered only at run time (a missing
//! working directory, an invalid header), becomes a classified failure.
//!
//! Runners never block the runtime: file and `/proc` work runs on blocking
//! threads, sockets and pipes are asynchronous, and every wait has a deadline.
//! Whatever an attempt leaves (processes, its scratch directory, its cgroup) is
//! removed when it ends, including when its future is dropped; what a crashed
//! engine left is removed by [`remove_stale_attempt_dirs`] at the next start.
//!
//! - [`command`]: argv actions (`tokio::process`, own process group, timeouts).
//! - [`http`]: HTTP actions (`reqwest`, status-code classification).
//! - [`redirect`]: which redirect an HTTP action follows and what the next
//!   request carries (a pure decision).
//! - [`noop`]: scripted actions for tests and demos.
//! - `tracking` (private): finds, kills and reaps an attempt's processes, even
//!   those that left its process group (cgroup v2, else an environment marker).
//! - [`secrets`]: `secretEnv` values (environment or secrets file) and their
//!   scrubbing from whatever is read back from a process.
//! - `scratch` (private): the attempt's temporary directory and safe reads of the
//!   files an action writes.

pub mod command;
pub mod http;
pub mod noop;
mod procfs;
pub mod redirect;
mod scratch;
pub mod secrets;
mod tracking;

pub use command::run_command;
pub use http::{HttpClient, http_client, http_time_limit, parse_retry_after, run_http, without_url_credentials};
pub use noop::{noop_outcome, run_noop};

use crate::clock::{Clock, SystemClock};
use redrive_core::exception::Failure;
use redrive_core::limits::{LimitError, parse_bounded_json};
use redrive_core::policy::MAX_DELAY_MS;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Removes what attempts of engines that are no longer running left behind (a
/// crash, `kill -9`): their scratch directories in `$TMPDIR` and, where cgroup v2
/// is used, their cgroups (killing anything still in them). Returns how many
/// were removed. Attempts of running engines, this one included, are never
/// touched: each directory is named after its engine's pid and start time.
///
/// Blocking (directory walks, waits of up to a few seconds for killed
/// processes): call it before serving, or on a blocking thread.
pub fn remove_stale_attempt_dirs() -> std::io::Result<usize> {
    let dirs = scratch::remove_stale_scratch_dirs()?;
    Ok(dirs + tracking::remove_stale_cgroups())
}

/// Prefix of every attempt's scratch directory and cgroup; the rest of the name
/// is the attempt id, `<engine pid>-<engine start ticks>-<uuid>`.
pub(crate) const ATTEMPT_DIR_PREFIX: &str = "redrive-attempt-";

/// A fresh attempt id, naming its engine (see [`ATTEMPT_DIR_PREFIX`]).
pub(crate) fn new_attempt_id() -> String {
    format!("{}-{}", procfs::engine_id(), uuid::Uuid::new_v4().simple())
}

/// The engine (`<pid>-<start ticks>`) an attempt directory or cgroup name
/// belongs to; `None` for any other name.
pub(crate) fn owner_engine(name: &str) -> Option<&str> {
    let id = name.strip_prefix(ATTEMPT_DIR_PREFIX)?;
    let (engine, uuid) = id.rsplit_once('-')?;
    let (pid, ticks) = engine.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let well_formed = digits(pid) && digits(ticks) && uuid.len() == 32 && uuid.bytes().all(|b| b.is_ascii_hexdigit());
    well_formed.then_some(engine)
}

/// What an action's output text is: JSON within the limits, text that is not
/// JSON (`Ok(Err(why))`), or over a limit (size, or nesting deeper than
/// [`limits::MAX_JSON_DEPTH`], counted on the text before parsing).
pub(crate) fn parse_output(
    what: impl Fn() -> String,
    bytes: &[u8],
    max_bytes: usize,
) -> Result<Result<serde_json::Value, String>, LimitError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => return Ok(Err(format!("invalid UTF-8: {e}"))),
    };
    Ok(parse_bounded_json(what, text, max_bytes)?.map_err(|e| e.to_string()))
}

/// "the output of action Stage/Action (source)", for limit messages.
pub(crate) fn output_name(ctx: &AttemptContext, source: &str) -> String {
    format!("the output of action {}/{} ({source})", ctx.stage, ctx.action)
}

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
    /// The engine's clock. Scripted waits (a noop's `sleepMs`) run on it, so a
    /// test on a [`crate::clock::ManualClock`] moves them by advancing it; real
    /// processes and sockets (commands, HTTP) keep real-time limits.
    pub clock: AttemptClock,
    /// Where the action's `secretEnv` values come from.
    pub secrets: Arc<secrets::Secrets>,
}

/// The engine's clock as an attempt sees it ([`SystemClock`] by default).
/// Two are equal when they are the same clock.
#[derive(Clone)]
pub struct AttemptClock(pub Arc<dyn Clock>);

impl Default for AttemptClock {
    fn default() -> AttemptClock {
        AttemptClock(Arc::new(SystemClock))
    }
}

impl std::fmt::Debug for AttemptClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptClock")
    }
}

impl PartialEq for AttemptClock {
    fn eq(&self, other: &AttemptClock) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for AttemptClock {
    type Target = dyn Clock;
    fn deref(&self) -> &dyn Clock {
        &*self.0
    }
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
        MAX_HTTP_OUTPUT_TEXT_BYTES, MAX_HTTP_RESPONSE_BYTES, MAX_INPUT_ENV_BYTES, MAX_JSON_DEPTH, MAX_OUTPUT_FILE_BYTES,
        MAX_STDERR_EXCERPT_BYTES,
    };
}

/// Converts a retry hint in seconds into milliseconds, capped at the policy
/// maximum delay ([`MAX_DELAY_MS`]: a larger hint, infinity included, means
/// "as late as allowed"); `None` for negative or NaN values.
pub(crate) fn seconds_to_ms(seconds: f64) -> Option<u64> {
    if seconds.is_nan() || seconds < 0.0 {
        return None;
    }
    Some((seconds * 1000.0).min(MAX_DELAY_MS as f64).round() as u64)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_names_say_whose_they_are() {
        let id = new_attempt_id();
        let name = format!("{ATTEMPT_DIR_PREFIX}{id}");
        assert_eq!(owner_engine(&name), Some(procfs::engine_id()));
        assert_eq!(owner_engine("redrive-attempt-12-34-0123456789abcdef0123456789abcdef"), Some("12-34"));
        for other in
            ["redrive-attempt-aB3xYz", "redrive-attempt-12-34-xyz", "redrive-attempt--34-0123456789abcdef0123456789abcdef", "other"]
        {
            assert_eq!(owner_engine(other), None, "{other}");
        }
    }

    #[test]
    fn retry_hints_are_capped() {
        assert_eq!(seconds_to_ms(1.5), Some(1500));
        assert_eq!(seconds_to_ms(1e300), Some(MAX_DELAY_MS));
        assert_eq!(seconds_to_ms(f64::INFINITY), Some(MAX_DELAY_MS));
        assert_eq!(seconds_to_ms(-5.0), None);
        assert_eq!(seconds_to_ms(f64::NAN), None);
    }
}
