//! Health as the server tells it: `/healthz` (liveness: the engine has not
//! stopped), `/readyz` (readiness: not degraded, with the reason), and a guard
//! that answers requests which would change something with 503 and
//! `Retry-After` while the engine is degraded (the store refuses writes for now;
//! the engine retries and recovers by itself). Reads still go to the store.

use crate::codepipeline::errors::{ApiError as AwsError, ErrorCode};
use crate::codepipeline::protocol;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use redrive_engine::health::{DEGRADED_RETRY_AFTER_SECONDS, Health};
use redrive_engine::service::{Service, ServiceError};
use redrive_store::Store;
use redrive_wire::{Readiness, ReadyResponse};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;

pub fn router<S: Store>() -> OpenApiRouter<Arc<Service<S>>> {
    OpenApiRouter::new()
        .routes(crate::doc::op::<__path_healthz, _, _, _>(healthz::<S>))
        .routes(crate::doc::op::<__path_readyz, _, _, _>(readyz::<S>))
}

/// `GET /healthz`: 200 `ok` while the engine runs; 503 once it stopped for good
/// (the process is about to exit).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "`ok`", content_type = "text/plain", body = String),
        (status = 503, description = "`stopped: <reason>`", content_type = "text/plain", body = String)))]
pub async fn healthz<S: Store>(State(svc): State<Arc<Service<S>>>) -> Response {
    match svc.engine().health() {
        Health::Stopped { reason } => (StatusCode::SERVICE_UNAVAILABLE, format!("stopped: {reason}")).into_response(),
        Health::Ready | Health::Degraded { .. } => "ok".into_response(),
    }
}

/// `GET /readyz`: 200 `{"status":"ready"}`, or 503 with `Retry-After` and
/// `{"status":"degraded"|"stopped","reason":...,"since":...}`.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "Success", body = ReadyResponse), (status = 503, body = ReadyResponse, description = "Not ready; `Retry-After` says when to ask again")))]
pub async fn readyz<S: Store>(State(svc): State<Arc<Service<S>>>) -> Response {
    let body = match svc.engine().health() {
        Health::Ready => return axum::Json(ReadyResponse { status: Readiness::Ready, reason: None, since: None }).into_response(),
        Health::Degraded { reason, since } => {
            ReadyResponse { status: Readiness::Degraded, reason: Some(reason), since: Some(since.to_string()) }
        }
        Health::Stopped { reason } => ReadyResponse { status: Readiness::Stopped, reason: Some(reason), since: None },
    };
    with_retry_after((StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response())
}

/// Adds `Retry-After` to a 503.
pub fn with_retry_after(mut response: Response) -> Response {
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert("retry-after", HeaderValue::from(DEGRADED_RETRY_AFTER_SECONDS));
    }
    response
}

/// Middleware: while the engine is degraded or stopped, a request that would
/// change something gets 503 `ServiceUnavailableException` with `Retry-After`
/// at once (in the protocol's own error format) instead of waiting for the
/// store. Every 503 leaving the server carries `Retry-After`.
pub async fn guard<S: Store>(State(svc): State<Arc<Service<S>>>, request: Request, next: Next) -> Response {
    if !changes_something(&request) {
        return with_retry_after(next.run(request).await);
    }
    let aws = request.uri().path() == "/";
    let mut health = svc.engine().health_watch();
    if let Some(reason) = health.borrow_and_update().reason() {
        return unavailable(aws, format!("the service cannot accept changes right now: {reason}"));
    }
    // A change caught by a store fault would wait until the store recovers:
    // answer 503 as soon as the engine degrades instead (it may still complete
    // later; a retry with the same clientRequestToken is safe).
    tokio::select! {
        response = next.run(request) => with_retry_after(response),
        Ok(h) = health.wait_for(|h| !h.is_ready()) => {
            let reason = h.reason().unwrap_or("the engine is not ready").to_string();
            unavailable(aws, format!("the store failed while this change was being made: {reason}; it may still complete once the store recovers, retry with the same clientRequestToken to be sure"))
        }
    }
}

/// A 503 in the protocol's format. On `POST /` the `__type` is `ServiceUnavailable`:
/// botocore's CodePipeline model names no unavailability shape (its operations
/// defer to the AWS Common Errors, where a temporary server failure is
/// `ServiceUnavailable`, HTTP 503), and botocore retries a 503. The native API
/// names it `ServiceUnavailableException` like its other errors.
pub(crate) fn unavailable(aws: bool, message: String) -> Response {
    let response = if aws {
        crate::aws::error_response(AwsError::new(ErrorCode::ServiceUnavailable, message))
    } else {
        crate::error::ApiError(ServiceError::Unavailable(message)).into_response()
    };
    with_retry_after(response)
}

/// Whether a request would change something: any method but GET/HEAD on the
/// native API; on `POST /`, a CodePipeline operation other than `Get*`/`List*`.
fn changes_something(request: &Request) -> bool {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return false;
    }
    if request.uri().path() != "/" {
        return true;
    }
    let target = request.headers().get(protocol::TARGET_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    let operation = target.rsplit('.').next().unwrap_or("");
    !(operation.starts_with("Get") || operation.starts_with("List"))
}
