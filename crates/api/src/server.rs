//! The HTTP server: native REST under `/v1` (dead-letter queues under `/v1/dlq`,
//! durable-function executions under `/v1/functions`),
//! the CodePipeline protocol on `POST /` (a browser's `GET /` is sent to the web
//! console under `/console`), `/metrics` (Prometheus), `/openapi.json`,
//! `/healthz`; request bodies capped; JSON errors everywhere; connections,
//! header and body reads bounded (see [`HttpLimits`]).

mod connections;
mod tls;

pub use tls::{HANDSHAKE_TIMEOUT_MS, Tls};

use crate::doc::op;
use crate::error::{ApiError, bad_body, invalid};
use crate::openapi;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::{Extension, Router};
use connections::{Activity, ConnectionLimits};
use redrive_core::time::human_duration_ms;
use redrive_engine::service::{Service, ServiceError};
use redrive_store::Store;
use std::sync::Arc;
use std::time::Duration;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

// ---- limits -------------------------------------------------------------------

/// Request bodies above this get HTTP 413.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// A client that has not sent a request's complete headers this long after
/// connecting, or after its previous response (an idle kept-alive connection),
/// is disconnected.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// A request body not fully received this long after its headers gets HTTP 408
/// and the connection is closed.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// Connections open at once; at the cap a new one replaces the oldest connection
/// not handling a request, or waits in the listen backlog if all are.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The connection cap is at most this percentage of the open-file limit
/// (RLIMIT_NOFILE): the rest is for the store, command actions and the like.
pub const MAX_CONNECTIONS_PERCENT_OF_NOFILE: u64 = 50;
/// Connections the kernel completes and queues for the server beyond those it
/// serves (at most `net.core.somaxconn`); [`bind`] asks for this many. A burst of
/// connections beyond it makes new clients retry their handshake after 1 s or more.
pub const LISTEN_BACKLOG: u32 = 1024;
/// Request line and headers together above this get HTTP 431, a JSON error in
/// the protocol's format (see [`HYPER_MAX_HEADER_BYTES`]).
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// hyper's own cap on the header section, above [`MAX_HEADER_BYTES`]. hyper answers
/// a request over its cap itself, before any service sees it, with a bare 431
/// and no body (hyper 1.x has no hook to shape that answer), so the cap enforced
/// with a JSON answer is ours: `whole_body_first` measures the headers hyper
/// parsed. Only headers above this larger cap get hyper's empty 431.
pub const HYPER_MAX_HEADER_BYTES: usize = 2 * MAX_HEADER_BYTES;
/// On shutdown, open requests get this long to finish before their connections
/// are dropped.
pub const DRAIN_TIMEOUT_MS: u64 = 10_000;

/// The server's limits; [`Default`] is the `DEFAULT_*` constants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    /// Lowered to [`MAX_CONNECTIONS_PERCENT_OF_NOFILE`] of the open-file limit.
    pub max_connections: usize,
    /// Host names (beyond IP addresses and `localhost`) a request's `Host`
    /// header may name; others get 403 (no DNS rebinding: a web page whose
    /// name an attacker points at this machine cannot reach the API).
    pub allowed_hosts: Vec<String>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<Tls>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: DEFAULT_BODY_READ_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            allowed_hosts: Vec::new(),
            tls: None,
        }
    }
}

/// A listener on `addr` with a [`LISTEN_BACKLOG`] backlog (the standard
/// library's is 128).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Raises this process's soft open-file limit to its hard limit (for a server
/// process; a library should not). Returns the new soft limit.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// The connection cap `wanted` becomes under the current open-file limit.
pub fn connection_cap(wanted: usize) -> usize {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => cap_for_nofile(wanted, soft),
        Err(_) => wanted.max(1),
    }
}

fn cap_for_nofile(wanted: usize, nofile: u64) -> usize {
    let allowed = usize::try_from(nofile.saturating_mul(MAX_CONNECTIONS_PERCENT_OF_NOFILE) / 100).unwrap_or(usize::MAX);
    wanted.min(allowed).max(1)
}

/// Every route, documented: the router and the OpenAPI document come from here.
pub fn routes<S: Store>() -> OpenApiRouter<Arc<Service<S>>> {
    OpenApiRouter::with_openapi(openapi::Base::openapi())
        .merge(crate::native::router::<S>())
        .merge(crate::dlq::router::<S>())
        .merge(crate::bulk::router::<S>())
        .merge(crate::functions::router::<S>())
        .merge(crate::aws::router::<S>())
        .merge(crate::health::router::<S>())
        .merge(crate::cluster::router::<S>())
        .merge(crate::dependencies::router::<S>())
        .merge(crate::auth::admin::router::<S>())
        .routes(op::<openapi::__path_document, _, _, _>(openapi::document))
}

/// The OpenAPI document of [`routes`].
pub fn openapi_document<S: Store>() -> utoipa::openapi::OpenApi {
    routes::<S>().into_openapi()
}

/// The whole application, without authentication (every request is served as
/// `anonymous` with an admin grant, and state changes are still audited).
pub fn app<S: Store>(service: Arc<Service<S>>, max_body_bytes: usize) -> Router {
    app_with_auth(service, max_body_bytes, None)
}

/// The whole application; with `auth`, every route but the health checks
/// needs a credential (see [`crate::auth`]).
pub fn app_with_auth<S: Store>(service: Arc<Service<S>>, max_body_bytes: usize, auth: Option<Arc<crate::auth::AuthConfig>>) -> Router {
    let (router, doc) = routes::<S>().split_for_parts();
    let guard = crate::auth::Guard::new(service.clone(), auth, max_body_bytes);
    // The guard covers every route, the console's included (mounted first).
    crate::console::mount::<S>(router)
        .route_layer(axum::middleware::from_fn_with_state(guard.clone(), crate::auth::guard::<S>))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(Extension(openapi::Served::new(&doc)))
        .layer(Extension(guard))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(service.clone(), crate::health::guard::<S>))
        .layer(axum::middleware::from_fn(json_posts_only))
        .with_state(service)
}

/// A POST must say its body is JSON (`application/json`, `…+json`, or the AWS
/// protocol's `application/x-amz-json-1.x`). The content types a web page may
/// send to another site without the browser asking it first — `text/plain`,
/// forms, none — get 415 (the AWS protocol's `SerializationException` on `/`), so
/// a page a user visits cannot make this server do anything (no CSRF). Other
/// changing methods (PUT, DELETE) always need a browser's preflight, which this
/// server never grants.
async fn json_posts_only(request: Request, next: Next) -> Response {
    if request.method() != axum::http::Method::POST || declares_json(request.headers()) {
        return next.run(request).await;
    }
    let message = "a POST must carry a JSON body with Content-Type application/json (application/x-amz-json-1.1 on POST /)";
    if request.uri().path() == "/" {
        let mut response = crate::aws::error_response(crate::codepipeline::errors::ApiError::new(
            crate::codepipeline::errors::ErrorCode::SerializationException,
            message,
        ));
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return response;
    }
    invalid(message).into_response_with(StatusCode::UNSUPPORTED_MEDIA_TYPE)
}

fn declares_json(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json") || essence.starts_with("application/x-amz-json-")
}

async fn not_found() -> Response {
    invalid("no such route; see /openapi.json").into_response_with(StatusCode::NOT_FOUND)
}

/// 405, in the AWS protocol's format on `/`, else the native one.
async fn method_not_allowed(uri: Uri) -> Response {
    if uri.path() == "/" {
        return crate::aws::method_not_allowed();
    }
    invalid(format!("method not allowed on {}; see /openapi.json", uri.path())).into_response_with(StatusCode::METHOD_NOT_ALLOWED)
}

/// [`serve_with_limits`] with the default limits but `max_body_bytes`.
pub async fn serve<S: Store>(
    service: Arc<Service<S>>,
    listener: tokio::net::TcpListener,
    max_body_bytes: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(service, listener, HttpLimits { max_body_bytes, ..HttpLimits::default() }, shutdown).await
}

/// Serves until `shutdown` resolves, then stops accepting and finishes open
/// requests (for up to [`DRAIN_TIMEOUT_MS`]).
pub async fn serve_with_limits<S: Store>(
    service: Arc<Service<S>>,
    listener: tokio::net::TcpListener,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(app(service, limits.max_body_bytes), listener, limits, shutdown).await
}

/// Serves `router` (behind the transport limits and the whole-body read) until
/// `shutdown` resolves, like [`serve_with_limits`].
pub async fn serve_router(
    router: Router,
    listener: tokio::net::TcpListener,
    limits: HttpLimits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max_connections = connection_cap(limits.max_connections);
    if max_connections < limits.max_connections {
        tracing::warn!(max_connections, wanted = limits.max_connections, "the open-file limit lowers the connection cap");
    }
    let transport = ConnectionLimits {
        max_connections,
        header_read_timeout: Duration::from_millis(limits.header_read_timeout_ms),
        max_header_bytes: HYPER_MAX_HEADER_BYTES,
        drain_timeout: Duration::from_millis(DRAIN_TIMEOUT_MS),
        tls: limits.tls.clone(),
    };
    let allowed: Arc<[String]> = limits.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
    // The outer layer runs first: headers and body are read (431, 408) before
    // the Host is judged.
    let router = router
        .layer(axum::middleware::from_fn_with_state(allowed, known_hosts_only))
        .layer(axum::middleware::from_fn_with_state(limits, whole_body_first));
    connections::serve(router, listener, transport, shutdown).await
}

/// Answers 403 unless the `Host` header names an IP address, `localhost` (or a
/// name under `.localhost`), or one of [`HttpLimits::allowed_hosts`].
async fn known_hosts_only(State(allowed): State<Arc<[String]>>, request: Request, next: Next) -> Response {
    let Some(host) = request.headers().get(header::HOST).and_then(|v| v.to_str().ok()).map(str::to_string) else {
        return next.run(request).await;
    };
    if host_is_allowed(&host, &allowed) {
        return next.run(request).await;
    }
    let message = format!(
        "this server does not answer to the host name in the Host header ({}); start it with --allowed-host NAME to allow a name",
        truncate_host(&host)
    );
    if request.uri().path() == "/" {
        let mut response = crate::aws::error_response(crate::codepipeline::errors::ApiError::new(
            crate::codepipeline::errors::ErrorCode::ValidationException,
            message,
        ));
        *response.status_mut() = StatusCode::FORBIDDEN;
        return response;
    }
    invalid(message).into_response_with(StatusCode::FORBIDDEN)
}

/// Whether `host` (a `Host` header: a name or address, maybe with a port) is one
/// this server answers to.
pub fn host_is_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]:port`
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(name, _)| name),
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost") || allowed.contains(&name)
}

fn truncate_host(host: &str) -> String {
    host.chars().take(100).collect()
}

/// Answers 431 to headers over [`MAX_HEADER_BYTES`]; reads the request body (at
/// most one byte over the limit: enough for the application to answer 413)
/// within the body timeout, or answers 408; then marks the connection as
/// handling a request until the response is made.
async fn whole_body_first(State(limits): State<HttpLimits>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    if header_section_bytes(&parts) > MAX_HEADER_BYTES {
        return headers_too_large(parts.uri.path());
    }
    let timeout = Duration::from_millis(limits.body_read_timeout_ms);
    let bytes = match tokio::time::timeout(timeout, crate::extract::read_up_to(body, limits.max_body_bytes + 1)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return bad_body(format!("request body: {e}")),
        Err(_) => return body_timeout(parts.uri.path(), limits.body_read_timeout_ms),
    };
    let _handling = parts.extensions.get::<Activity>().map(Activity::handling);
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

/// The size of the request line and headers as sent (HTTP/1.1 framing).
fn header_section_bytes(parts: &axum::http::request::Parts) -> usize {
    let request_line = parts.method.as_str().len() + parts.uri.to_string().len() + "  HTTP/1.1\r\n".len();
    let fields: usize = parts.headers.iter().map(|(name, value)| name.as_str().len() + value.len() + ": \r\n".len()).sum();
    request_line + fields + "\r\n".len()
}

/// 431 in the AWS protocol's format on `/`, else the native one; the connection closes.
fn headers_too_large(path: &str) -> Response {
    let message = format!("the request line and headers are over {MAX_HEADER_BYTES} bytes");
    transport_refusal(path, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, message)
}

/// 408 in the AWS protocol's format on `/`, else the native one; the connection closes.
fn body_timeout(path: &str, timeout_ms: u64) -> Response {
    let message = format!("the request body was not received within {}", human_duration_ms(timeout_ms));
    transport_refusal(path, StatusCode::REQUEST_TIMEOUT, message)
}

/// A refusal before the request reaches a route, in the format of the protocol
/// the path belongs to; the connection closes.
fn transport_refusal(path: &str, status: StatusCode, message: String) -> Response {
    let mut r = if path == "/" {
        crate::aws::transport_error(status, message)
    } else {
        ApiError(ServiceError::Validation(message)).into_response_with(status)
    };
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_is_at_most_half_the_open_file_limit() {
        assert_eq!(cap_for_nofile(1024, 20_000), 1024);
        assert_eq!(cap_for_nofile(1024, 1024), 512);
        assert_eq!(cap_for_nofile(1024, 0), 1);
        assert_eq!(cap_for_nofile(0, 20_000), 1);
    }
}
