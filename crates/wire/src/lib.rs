//! redrive-wire: the JSON shapes of the native REST API (`/v1/...`), shared by
//! the server (`redrive-api` builds them from engine types) and its clients (the
//! `redrive` CLI deserializes answers into them). Depends on serde and utoipa
//! only: a client needs no server code.
//!
//! Statuses are enums whose serde names are the exact strings on the wire.
//! Request bodies refuse unknown fields. Every type derives an OpenAPI schema.

mod auth;
mod bulk;
mod cluster;
mod dependencies;
mod dlq;
mod error;
mod functions;
mod health;
mod pipelines;

pub use auth::*;
pub use bulk::*;
pub use cluster::*;
pub use dependencies::*;
pub use dlq::*;
pub use error::*;
pub use functions::*;
pub use health::*;
pub use pipelines::*;

/// An RFC 3339 UTC timestamp with milliseconds, e.g. `2026-11-18T11:06:40.123Z`.
pub type Timestamp = String;

/// Declares a string enum whose serde names are the wire strings, with `as_str`.
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:tt),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// The wire string.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use wire_enum;

/// `exceptionType` and `message` of a failure.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub exception_type: String,
    pub message: String,
}

wire_enum!(
    /// Why an attempt ran.
    Trigger {
        Initial = "initial",
        Policy = "policy",
        StageAutoRetry = "stage-auto-retry",
        Manual = "manual",
        Redrive = "redrive",
        Resume = "resume",
    }
);

wire_enum!(
    /// How an attempt (a ledger row) ended. `DEFERRED`: it did not run — its
    /// dependency's retry budget or circuit breaker held it (same attempt number
    /// when it runs).
    AttemptStatus {
        Succeeded = "SUCCEEDED",
        Failed = "FAILED",
        Deferred = "DEFERRED",
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    /// The `enum` of a string enum's OpenAPI schema.
    fn schema_values<T: PartialSchema>() -> serde_json::Value {
        serde_json::to_value(T::schema()).expect("schema")["enum"].clone()
    }

    #[test]
    fn enum_schemas_list_the_wire_strings() {
        // A `literal` fragment reaches utoipa's derive wrapped in an invisible group,
        // which it ignores: the schema then named the Rust variants.
        assert_eq!(schema_values::<RetryMode>(), serde_json::json!(["FAILED_ACTIONS", "ALL_ACTIONS"]));
        assert_eq!(schema_values::<RedriveMode>(), serde_json::json!(["retry-stage", "new-execution"]));
        assert_eq!(schema_values::<Trigger>(), serde_json::json!(["initial", "policy", "stage-auto-retry", "manual", "redrive", "resume"]));
        assert_eq!(schema_values::<Readiness>(), serde_json::json!(["ready", "degraded", "stopped"]));
        assert_eq!(schema_values::<RunStatus>(), serde_json::json!(["RUNNING", "SUCCEEDED", "FAILED", "INTERRUPTED", "ABORTED"]));
        assert_eq!(schema_values::<ExecutionStatus>()[0], "InProgress");
    }
}
