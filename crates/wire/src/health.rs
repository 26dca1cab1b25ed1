//! `/readyz`.

use crate::{Timestamp, wire_enum};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

wire_enum!(
    /// The engine's health.
    Readiness {
        Ready = "ready",
        Degraded = "degraded",
        Stopped = "stopped",
    }
);

/// `GET /readyz`: 200 when ready, 503 (with `Retry-After`) otherwise.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReadyResponse {
    pub status: Readiness,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
}
