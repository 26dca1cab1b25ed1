//! The HTTP server: native REST under `/v1` (dead-letter queues under `/v1/dlq`,
//! durable-function executions under `/v1/functions`),
//! the CodePipeline protocol on `POST /`, `/metrics` (Prometheus), `/openapi.json`,
//! `/healthz`; request bodies capped; JSON errors everywhere.

use crate::native;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use redrive_engine::service::{Service, ServiceError};
use redrive_store::Store;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Request bodies above this get HTTP 413.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// The whole application.
pub fn app<S: Store>(service: Arc<Service<S>>, max_body_bytes: usize) -> Router {
    native::router::<S>()
        .merge(crate::dlq::router::<S>())
        .merge(crate::functions::router::<S>())
        .merge(crate::aws::router::<S>())
        .route("/openapi.json", get(|| async { ([("content-type", "application/json")], crate::openapi::DOCUMENT) }))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            native::ApiError(ServiceError::Validation("no such route; see /openapi.json".into())).into_response_with(StatusCode::NOT_FOUND)
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(service)
}

impl native::ApiError {
    fn into_response_with(self, status: StatusCode) -> Response {
        let mut r = self.into_response();
        *r.status_mut() = status;
        r
    }
}

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
                return Err(
                    native::ApiError(ServiceError::Validation(format!("request body: {}", e.body_text()))).into_response_with(status)
                );
            }
        };
        let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        serde_json::from_slice(bytes).map(JsonBody).map_err(|e| native::bad_body(format!("request body is not valid: {e}")))
    }
}

/// Query parameters whose rejections come back as `ValidationException` JSON errors.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, St: Send + Sync> axum::extract::FromRequestParts<St> for QueryParams<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &St) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(t)| QueryParams(t))
            .map_err(|e| native::bad_body(format!("query string: {}", e.body_text())))
    }
}

/// Serves until `shutdown` resolves, then stops accepting and finishes open requests.
pub async fn serve<S: Store>(
    service: Arc<Service<S>>,
    listener: tokio::net::TcpListener,
    max_body_bytes: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(service, max_body_bytes)).with_graceful_shutdown(shutdown).await
}
