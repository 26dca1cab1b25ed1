//! The OpenAPI 3.1 document of the HTTP API, generated (utoipa) from the wire
//! types and from the routes themselves: every route is registered through
//! [`crate::doc::op`], which documents what it routes. Served at `/openapi.json`.

use axum::Extension;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use utoipa::OpenApi;
use utoipa::openapi::OpenApi as Document;

/// The document's fixed parts: title, version, tags, and schemas only reached
/// through error answers.
#[derive(OpenApi)]
#[openapi(
    info(title = "redrive", description = "The native REST API of `redrive server` (`/v1`), its operations endpoints, and the CodePipeline protocol on `POST /`."),
    components(schemas(redrive_wire::ErrorResponse)),
    tags(
        (name = "pipelines", description = "Pipelines and their versions"),
        (name = "executions", description = "Pipeline executions, stage retries and attempts"),
        (name = "functions", description = "Durable-function executions (read only)"),
        (name = "dlq", description = "Dead-letter queues, entries and redrives"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "codepipeline", description = "The CodePipeline service, AWS JSON 1.1"),
        (name = "auth", description = "Bearer tokens and the audit log (admin)"),
    )
)]
pub struct Base;

/// The document as served.
#[derive(Clone)]
pub struct Served(pub Arc<String>);

impl Served {
    pub fn new(doc: &Document) -> Served {
        Served(Arc::new(doc.to_json().expect("an OpenAPI document serialises")))
    }
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub async fn document(Extension(doc): Extension<Served>) -> Response {
    ([("content-type", "application/json")], doc.0.as_str().to_string()).into_response()
}
