//! Extractors whose rejections are native JSON errors, and a bounded body read. A leaf module over
//! [`crate::error`] and [`crate::json`] (BOM skipped, duplicate keys refused,
//! errors naming the JSON path).

use crate::error::{ApiError, bad_body};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::response::Response;
use http_body_util::BodyExt;
use redrive_engine::service::ServiceError;
use serde::de::DeserializeOwned;

/// A JSON body whose rejections (bad JSON, too large, wrong type) come back as
/// `ValidationException` JSON errors (413 for bodies over the limit).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, St: Send + Sync> FromRequest<St> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &St) -> Result<Self, Self::Rejection> {
        let bytes = match Bytes::from_request(req, state).await {
            Ok(b) => b,
            Err(e) => {
                let status = e.status();
                return Err(ApiError(ServiceError::Validation(format!("request body: {}", e.body_text()))).into_response_with(status));
            }
        };
        let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        crate::json::parse_object(bytes).map(JsonBody).map_err(|e| bad_body(format!("request body is not valid: {e}")))
    }
}

/// Query parameters whose rejections come back as `ValidationException` JSON errors.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, St: Send + Sync> FromRequestParts<St> for QueryParams<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| QueryParams(t))
            .map_err(|e| bad_body(format!("query string: {}", e.body_text())))
    }
}

/// The body's bytes, stopping once there are at least `limit`.
pub async fn read_up_to(mut body: Body, limit: usize) -> Result<Bytes, axum::Error> {
    let mut buf = Vec::new();
    while buf.len() < limit {
        let Some(frame) = body.frame().await else { break };
        if let Ok(data) = frame?.into_data() {
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}
