//! The error answer of every native route.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `{"error": {...}}` with a meaningful HTTP status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// CodePipeline-style exception name, e.g. `PipelineNotFoundException`.
    pub code: String,
    pub message: String,
    /// The definition's problems (`InvalidStructureException` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<Problem>>,
}

/// One problem in a definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// JSON path of the offending value, e.g. `$.stages[0].actions[1].retryPolicies[0].MaxAttempts`.
    pub path: String,
    /// 1-based source line, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The field as the user spelled it.
    pub field: String,
    /// The offending value as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub message: String,
    /// What is allowed instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<String>,
}
