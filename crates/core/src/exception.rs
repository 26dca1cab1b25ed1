//! Exception types: the class of a failure, which retry policies match on.
//!
//! Canonical names and aliases follow PRODUCT.md §3. Names under a reserved
//! namespace (`Step.`, `Job.`, `SageMaker.`, `Action.`, `States.`) must be known;
//! anything else matching `[A-Za-z0-9._-]{1,100}` is a custom type an action may
//! report (e.g. `PaymentDeclined`).

use serde::{Deserialize, Serialize};

pub use crate::limits::MAX_EXCEPTION_TYPE_CHARS as CUSTOM_TYPE_MAX_LEN;
const RESERVED_PREFIXES: [&str; 6] = ["Step.", "Job.", "SageMaker.", "Action.", "States.", "Engine."];

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExceptionType {
    ServiceFault,
    Throttling,
    Timeout,
    JobInternalError,
    JobCapacityError,
    JobResourceLimit,
    ActionFailed,
    /// A value went over one of [`crate::limits`] (an output too big for the
    /// execution's state, a document nested too deeply, ...). Terminal: `*` and
    /// `States.ALL` do not match it (a policy must name it to retry it).
    LimitExceeded,
    /// The execution's stored state could not be read (corrupt, or its pipeline
    /// version is missing): it was quarantined. Terminal like `LimitExceeded`.
    CorruptState,
    /// A `secretEnv` name had no value (in the server's environment or its
    /// secrets file) when the attempt started: nothing was run.
    SecretMissing,
    Custom(String),
}

/// Every known type's canonical name, in documentation order.
pub const KNOWN_TYPES: [&str; 10] = [
    "Step.SERVICE_FAULT",
    "Step.THROTTLING",
    "Step.TIMEOUT",
    "Job.INTERNAL_ERROR",
    "Job.CAPACITY_ERROR",
    "Job.RESOURCE_LIMIT",
    "Action.FAILED",
    "Engine.LIMIT_EXCEEDED",
    "Engine.CORRUPT_STATE",
    "Engine.SECRET_MISSING",
];

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExceptionTypeError {
    #[error("unknown exception type {value:?}: {prefix} is a reserved namespace (custom types need another prefix)")]
    Unknown { value: String, prefix: String, known: String },
    #[error("invalid exception type {value:?}: {reason}; custom types match [A-Za-z0-9._-]{{1,100}}")]
    Invalid { value: String, reason: String },
}

impl ExceptionType {
    /// Parses a canonical name, an alias or a custom name.
    pub fn parse(s: &str) -> Result<ExceptionType, ExceptionTypeError> {
        use ExceptionType::*;
        let known = match s {
            "Step.SERVICE_FAULT" => Some(ServiceFault),
            "Step.THROTTLING" => Some(Throttling),
            "Step.TIMEOUT" | "States.Timeout" => Some(Timeout),
            "Job.INTERNAL_ERROR" | "SageMaker.JOB_INTERNAL_ERROR" => Some(JobInternalError),
            "Job.CAPACITY_ERROR" | "SageMaker.CAPACITY_ERROR" => Some(JobCapacityError),
            "Job.RESOURCE_LIMIT" | "SageMaker.RESOURCE_LIMIT" => Some(JobResourceLimit),
            "Action.FAILED" => Some(ActionFailed),
            "Engine.LIMIT_EXCEEDED" => Some(LimitExceeded),
            "Engine.CORRUPT_STATE" => Some(CorruptState),
            "Engine.SECRET_MISSING" => Some(SecretMissing),
            _ => None,
        };
        if let Some(t) = known {
            return Ok(t);
        }
        if s.is_empty() || s.len() > CUSTOM_TYPE_MAX_LEN {
            return Err(ExceptionTypeError::Invalid {
                value: s.to_string(),
                reason: format!("length {} is outside 1..={CUSTOM_TYPE_MAX_LEN}", s.len()),
            });
        }
        if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
            return Err(ExceptionTypeError::Invalid { value: s.to_string(), reason: format!("contains {c:?}") });
        }
        if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| s.starts_with(**p)) {
            return Err(ExceptionTypeError::Unknown { value: s.to_string(), prefix: prefix.to_string(), known: KNOWN_TYPES.join(", ") });
        }
        Ok(Custom(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        use ExceptionType::*;
        match self {
            ServiceFault => "Step.SERVICE_FAULT",
            Throttling => "Step.THROTTLING",
            Timeout => "Step.TIMEOUT",
            JobInternalError => "Job.INTERNAL_ERROR",
            JobCapacityError => "Job.CAPACITY_ERROR",
            JobResourceLimit => "Job.RESOURCE_LIMIT",
            ActionFailed => "Action.FAILED",
            LimitExceeded => "Engine.LIMIT_EXCEEDED",
            CorruptState => "Engine.CORRUPT_STATE",
            SecretMissing => "Engine.SECRET_MISSING",
            Custom(s) => s,
        }
    }

    /// Whether the built-in default policy covers this type (PRODUCT.md §2).
    pub fn retried_by_default(&self) -> bool {
        matches!(self, ExceptionType::ServiceFault | ExceptionType::Throttling)
    }

    /// Raised by the engine itself about an execution, not by an action: only a
    /// policy naming the type matches it (wildcards do not), like Step
    /// Functions' `States.DataLimitExceeded`.
    pub fn is_terminal(&self) -> bool {
        matches!(self, ExceptionType::LimitExceeded | ExceptionType::CorruptState)
    }
}

impl std::fmt::Display for ExceptionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ExceptionType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ExceptionType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ExceptionType::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One entry of a policy's exception-type list: a type, or `*` / `States.ALL`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ExceptionMatcher {
    All,
    Exactly(ExceptionType),
}

impl ExceptionMatcher {
    pub fn parse(s: &str) -> Result<ExceptionMatcher, ExceptionTypeError> {
        match s {
            "*" | "States.ALL" => Ok(ExceptionMatcher::All),
            _ => ExceptionType::parse(s).map(ExceptionMatcher::Exactly),
        }
    }

    pub fn matches(&self, t: &ExceptionType) -> bool {
        match self {
            ExceptionMatcher::All => !t.is_terminal(),
            ExceptionMatcher::Exactly(x) => x == t,
        }
    }
}

impl std::fmt::Display for ExceptionMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExceptionMatcher::All => f.write_str("*"),
            ExceptionMatcher::Exactly(t) => f.write_str(t.as_str()),
        }
    }
}

impl Serialize for ExceptionMatcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ExceptionMatcher {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ExceptionMatcher::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A failed attempt as the decision sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub exception_type: ExceptionType,
    pub message: String,
    /// A server hint (HTTP `Retry-After`, or `retryAfterSeconds` reported by the action).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Upper bound on a failure message kept in state and ledger (bytes).
pub use crate::limits::MAX_FAILURE_MESSAGE_BYTES as FAILURE_MESSAGE_MAX_BYTES;
pub use crate::limits::truncate_utf8;

impl Failure {
    pub fn new(exception_type: ExceptionType, message: impl Into<String>) -> Failure {
        Failure { exception_type, message: truncate_utf8(message.into(), FAILURE_MESSAGE_MAX_BYTES), retry_after_ms: None }
    }

    /// `Engine.LIMIT_EXCEEDED` with the limit's own message.
    pub fn limit_exceeded(e: &crate::limits::LimitError) -> Failure {
        Failure::new(ExceptionType::LimitExceeded, e.to_string())
    }

    pub fn with_retry_after_ms(mut self, ms: Option<u64>) -> Failure {
        self.retry_after_ms = ms;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_map_to_canonical() {
        assert_eq!(ExceptionType::parse("SageMaker.JOB_INTERNAL_ERROR").unwrap(), ExceptionType::JobInternalError);
        assert_eq!(ExceptionType::parse("SageMaker.CAPACITY_ERROR").unwrap().as_str(), "Job.CAPACITY_ERROR");
        assert_eq!(ExceptionType::parse("States.Timeout").unwrap(), ExceptionType::Timeout);
    }

    #[test]
    fn custom_and_unknown() {
        assert_eq!(ExceptionType::parse("PaymentDeclined").unwrap(), ExceptionType::Custom("PaymentDeclined".into()));
        let e = ExceptionType::parse("Step.SERVICE_FAULTY").unwrap_err().to_string();
        assert!(e.contains("Step.SERVICE_FAULTY") && e.contains("reserved"), "{e}");
        assert!(ExceptionType::parse("bad type").is_err());
        assert!(ExceptionType::parse("").is_err());
    }

    #[test]
    fn wildcard_matches_everything() {
        let all = ExceptionMatcher::parse("States.ALL").unwrap();
        assert!(all.matches(&ExceptionType::Custom("X".into())));
        let one = ExceptionMatcher::parse("Step.THROTTLING").unwrap();
        assert!(one.matches(&ExceptionType::Throttling));
        assert!(!one.matches(&ExceptionType::ServiceFault));
    }

    #[test]
    fn wildcards_do_not_match_engine_types() {
        let all = ExceptionMatcher::parse("*").unwrap();
        assert!(!all.matches(&ExceptionType::LimitExceeded));
        assert!(!all.matches(&ExceptionType::CorruptState));
        let named = ExceptionMatcher::parse("Engine.LIMIT_EXCEEDED").unwrap();
        assert!(named.matches(&ExceptionType::LimitExceeded));
        assert!(ExceptionType::parse("Engine.OTHER").is_err());
    }
}
