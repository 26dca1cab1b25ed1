//! Bearer tokens (`/v1/tokens`) and the audit log (`/v1/audit`).

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/tokens`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTokenRequest {
    /// 1 to 100 characters of A-Z a-z 0-9 . @ - _, unique.
    pub name: String,
    /// `read`, `operate` or `admin`.
    pub scope: String,
    /// Pipeline names or prefixes (`payments-*`) the token is limited to; absent: every pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipelines: Option<Vec<String>>,
    /// Queue names or prefixes the token is limited to; absent: every queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<String>>,
    /// How long the token is valid (`30d`, `12h`); absent: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
}

/// A token as listed: never its value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub name: String,
    pub scope: String,
    pub pipelines: Option<Vec<String>>,
    pub queues: Option<Vec<String>>,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// The answer to `POST /v1/tokens`: the only time the token's value is shown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    /// Send it as `Authorization: Bearer <token>`; only its SHA-256 is stored.
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

/// `GET /v1/tokens`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
}

/// One recorded state-changing call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub seq: u64,
    pub at: Timestamp,
    /// The token, access key or schedule that made the call.
    pub principal: String,
    /// The route (`POST /v1/pipelines/{name}/executions`) or `CodePipeline.<Operation>`.
    pub action: String,
    /// The pipeline or queue the call named.
    pub target: Option<String>,
    /// The HTTP status of the answer.
    pub status: u16,
    /// What was asked (names and the path; never a body, a secret or a token).
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
}

/// `GET /v1/audit`, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditList {
    pub entries: Vec<AuditEntry>,
    pub next_token: Option<String>,
}

/// `POST /console/login`: a bearer token, exchanged for a console session cookie.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsoleLoginRequest {
    pub token: String,
}

/// The answer to a console login or logout: who it was for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleSession {
    /// The token's name.
    pub principal: String,
    /// `read`, `operate` or `admin`.
    pub scope: String,
}
