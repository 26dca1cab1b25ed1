//! redrive-api: everything that knows a wire format.
//!
//! - [`codepipeline`]: the CodePipeline service model (AWS JSON 1.1) — shapes,
//!   error codes, native↔wire pipeline conversion — taken from botocore's model.
//! - [`native`]: the native JSON REST API under `/v1`.
//! - [`dlq`]: dead-letter queues and redrives under `/v1/dlq`, and `/metrics`.
//! - [`functions`]: durable-function executions under `/v1/functions` (read only).
//! - [`auth`]: tokens, scopes, AWS SigV4, the route access table and the audit log.
//! - [`aws`]: `POST /` dispatching CodePipeline operations to the service.
//! - [`health`]: `/healthz`, `/readyz`, and 503 + `Retry-After` for changes while degraded.
//! - [`console`]: the web console under `/console` (server-rendered HTML).
//! - [`server`]: the axum application: routes, body limits, JSON errors, shutdown.
//! - [`openapi`]: the native API's OpenAPI document.
//!
//! Invariant: only this crate knows wire formats; the engine speaks domain types.

pub mod auth;
pub mod aws;
pub mod bulk;
pub mod cluster;
pub mod codepipeline;
pub mod console;
pub mod dependencies;
pub mod dlq;
pub mod doc;
pub mod error;
pub mod extract;
pub mod functions;
pub mod health;
pub mod json;
pub mod keys;
pub mod native;
pub mod openapi;
pub mod page;
pub mod server;
pub mod shard_route;
pub mod switch;
