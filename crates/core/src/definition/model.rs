//! The validated pipeline model. Fields are private where an invariant holds
//! between them; construct through [`crate::definition::parse`].

use crate::dependency::Dependency;
use crate::exception::ExceptionType;
use crate::name::Name;
use crate::policy::RetryPolicy;
use serde::Serialize;
use std::collections::BTreeMap;

pub use crate::limits::{
    MAX_ACTIONS_PER_STAGE, MAX_ARGV_ITEMS, MAX_EXCEPTION_TYPES_PER_POLICY, MAX_RETRY_POLICIES_PER_ACTION, MAX_RUN_ORDER,
    MAX_STAGE_AUTO_RETRIES, MAX_STAGES, MAX_TIMEOUT_SECONDS,
};
pub const DEFAULT_MAX_CONCURRENT_EXECUTIONS: u32 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionMode {
    Superseded,
    Queued,
    Parallel,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive] // built only by `parse` in this crate: a Pipeline exists only through parse
pub struct Pipeline {
    pub name: Name,
    pub execution_mode: ExecutionMode,
    /// Only meaningful for PARALLEL (and QUEUED: the queue's width is 1).
    pub max_concurrent_executions: u32,
    /// Non-empty; stage names unique.
    pub stages: Vec<Stage>,
    /// Where an execution that fails for good leaves its dead-letter entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<Name>,
    /// How many days a finished execution of this pipeline is kept (1 to
    /// [`crate::limits::MAX_RETENTION_DAYS`]); `None`: the server's `retention`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
    /// Declared dependencies (names unique); see [`crate::dependency`].
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<Dependency>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RetryMode {
    FailedActions,
    AllActions,
}

impl RetryMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RetryMode::FailedActions => "FAILED_ACTIONS",
            RetryMode::AllActions => "ALL_ACTIONS",
        }
    }
}

/// `onFailure: {result: RETRY, retryConfiguration: {retryMode}}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageAutoRetry {
    pub retry_mode: RetryMode,
    /// How many automatic stage retries (default 1).
    pub max_retries: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive] // built only by `parse` in this crate: a Pipeline exists only through parse
pub struct Stage {
    pub name: Name,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<StageAutoRetry>,
    /// Non-empty; action names unique within the stage.
    pub actions: Vec<Action>,
}

impl Stage {
    /// Distinct runOrders in ascending order: the stage's groups.
    pub fn run_orders(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.actions.iter().map(|a| a.run_order).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Indices of the actions in group `group` (index into `run_orders()`).
    pub fn group_members(&self, group: usize) -> Vec<usize> {
        let orders = self.run_orders();
        let Some(ro) = orders.get(group) else { return Vec::new() };
        self.actions.iter().enumerate().filter(|(_, a)| a.run_order == *ro).map(|(i, _)| i).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive] // built only by `parse` in this crate: a Pipeline exists only through parse
pub struct Action {
    pub name: Name,
    /// 1..=999, default 1.
    pub run_order: u32,
    pub kind: ActionKind,
    /// Ordered; the first matching policy applies.
    pub retry_policies: Vec<RetryPolicy>,
    /// Per-attempt time limit; exceeding it fails the attempt with `Step.TIMEOUT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// The dependency its attempts are gated by: the `dependency:` it names
    /// (declared by the pipeline), or an `http` action's URL host when that is a
    /// valid name (no port; IPv6 literals have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependency: Option<Name>,
    /// What happens when a retry policy gives up for exhaustion (a policy's own
    /// `onExhausted` wins); default FAIL.
    pub on_exhausted: crate::policy::OnExhausted,
    /// At most `max` attempts of this action run at once per value of `key`
    /// (across executions); the others wait for a slot, in arrival order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<crate::concurrency::Concurrency>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum ActionKind {
    Command(CommandSpec),
    Http(HttpSpec),
    Noop(NoopSpec),
    Function(FunctionSpec),
}

impl ActionKind {
    /// The CodePipeline `actionTypeId.provider` of this kind.
    pub fn provider(&self) -> &'static str {
        match self {
            ActionKind::Command(_) => "Command",
            ActionKind::Http(_) => "Http",
            ActionKind::Noop(_) => "Noop",
            ActionKind::Function(_) => "Function",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandSpec {
    /// Non-empty argv; argv[0] is the program. Never run through a shell.
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Variables whose values are secrets, taken from the server's environment
    /// (or its secrets file) at attempt time: never stored, logged or returned
    /// (the runner scrubs them from what it reads back from the process).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    /// Relative paths resolve against the pipeline file's directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// Exit code → exception type.
    pub exit_codes: BTreeMap<i32, ExceptionType>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSpec {
    /// Upper-case method token, e.g. `POST`.
    pub method: String,
    /// `http://` or `https://` URL.
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// Headers whose values are secrets, looked up at attempt time like a
    /// command's `secretEnv`: never stored, logged or returned (the runner
    /// scrubs them from what it reads back).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_headers: BTreeMap<String, SecretHeader>,
    /// JSON value sent as the body (`application/json`); strings are sent as-is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// Which redirects the runner follows; absent: the server's default
    /// (`httpActions.redirects` in its config file, else
    /// [`RedirectMode::SameOrigin`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirects: Option<RedirectMode>,
}

/// Which redirects (301, 302, 303, 307, 308) an http action follows, at most
/// five in a row. Whatever the mode, a request that leaves the action's own
/// origin (scheme, host, port) is a GET or HEAD without a body and without the
/// action's headers; the runner (`redrive_engine::runner::redirect`) decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum RedirectMode {
    /// Redirects to the action's own origin only (a redirect elsewhere fails
    /// the attempt, naming where it pointed).
    #[default]
    #[serde(rename = "SAME_ORIGIN")]
    SameOrigin,
    /// Redirects to any http(s) origin; leaving the action's origin drops its
    /// headers and body.
    #[serde(rename = "ANY_ORIGIN")]
    AnyOrigin,
    /// No redirect is followed: a redirect fails the attempt.
    #[serde(rename = "NONE")]
    Never,
}

impl RedirectMode {
    /// The spellings definitions and config files use, in [`Self::ALL`] order.
    pub const NAMES: [&'static str; 3] = ["SAME_ORIGIN", "ANY_ORIGIN", "NONE"];
    pub const ALL: [RedirectMode; 3] = [RedirectMode::SameOrigin, RedirectMode::AnyOrigin, RedirectMode::Never];

    /// `SAME_ORIGIN`, `ANY_ORIGIN` or `NONE` (exactly; upper case).
    pub fn parse(s: &str) -> Option<RedirectMode> {
        Self::NAMES.iter().position(|n| *n == s).map(|i| Self::ALL[i])
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|m| *m == self).expect("every mode is in ALL")]
    }
}

/// An HTTP header sent as `prefix` followed by a secret's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretHeader {
    /// The secret's name (the server's environment or its secrets file).
    pub secret_env: String,
    /// Text sent before the value, e.g. `Bearer `.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoopSpec {
    /// Fail the first `fail_first` attempts of each series.
    pub fail_first: u32,
    pub fail_with: ExceptionType,
    pub sleep_ms: u64,
    /// Reported as the failure's retry hint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_seconds: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionSpec {
    pub function_name: Name,
}

impl Pipeline {
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name.as_str() == name)
    }
}

/// The host of an `http://` or `https://` URL, lower-cased, without user info
/// or port; `None` for an IPv6 literal or anything not a valid [`Name`].
pub fn url_host(url: &str) -> Option<Name> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return None;
    }
    let host = host_port.split(':').next()?;
    Name::parse(&host.to_ascii_lowercase()).ok()
}
