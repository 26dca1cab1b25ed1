//! One server process in a cluster of `redrive server`s sharing a store: while
//! it leads (holds the store's engine lease) it serves the whole API itself;
//! while it follows, it forwards every request to the leader unchanged and
//! relays the answer, so any process accepts any call. A follower answers
//! `/healthz`, `/readyz` and `GET /v1/cluster` itself, and 503 with
//! `Retry-After` while no process leads (one takes over within the lease).
//!
//! Under `auth:` a follower checks the credential of its own `GET /v1/cluster`
//! like the leader would (read scope, [`AuthCheck`]); everything it forwards is
//! checked by the leader, with the original `Host` header kept so that an AWS
//! Signature V4 (which signs the `Host`) still verifies there.

use crate::health::{unavailable, with_retry_after};
use crate::shard_route::{route_key_of_aws_body, route_key_of_path};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use redrive_core::shard::SHARD_COUNT;
use redrive_wire::{ClusterStatus, Readiness, ReadyResponse};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tower::ServiceExt;

/// Marks a request a follower forwarded; a process that does not lead answers
/// such a request with 503 instead of forwarding it again (no loops while the
/// leadership moves).
pub const FORWARDED_HEADER: &str = "x-redrive-forwarded-by";
/// How long a follower waits for the leader's answer.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest answer a follower relays.
pub const MAX_FORWARDED_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

type StatusFuture = Pin<Box<dyn Future<Output = Result<ClusterStatus, String>> + Send>>;
/// Reads the cluster's status (from the store) for a follower's `GET /v1/cluster`.
pub type StatusSource = Arc<dyn Fn() -> StatusFuture + Send + Sync>;
type CheckFuture = Pin<Box<dyn Future<Output = Result<(), Response>> + Send>>;
/// Checks the credential of a request a follower answers itself (`GET
/// /v1/cluster`): `Err` is the refusal to send (401/403). See
/// [`crate::auth::follower_check`].
pub type AuthCheck = Arc<dyn Fn(axum::http::request::Parts) -> CheckFuture + Send + Sync>;

#[derive(Clone)]
enum Mode {
    /// Forward to the leader's URL (`None`: no process leads right now).
    Follow(Option<String>),
    /// Serve the API.
    Lead(Router),
    /// Executions spread over processes by shard (`--spread`): one route per
    /// shard, indexed by [`ShardId::index`].
    Spread(Arc<[ShardRoute]>),
}

/// Where one shard's requests go (`--spread`).
#[derive(Clone)]
pub enum ShardRoute {
    /// This process holds the shard: its engine's API.
    Local(Router),
    /// Another process holds it: its base URL.
    Remote(String),
    /// Nobody holds it right now (a process takes it within a heartbeat or, if
    /// its holder stalled, the lease).
    Nobody,
}

pub struct Switch {
    mode: RwLock<Mode>,
    client: reqwest::Client,
    /// This process's member id, sent in [`FORWARDED_HEADER`].
    member: String,
    status: StatusSource,
    /// `None`: no `auth:` (the cluster status is open, as on the leader).
    auth: Option<AuthCheck>,
}

impl Switch {
    /// A switch that starts following (nobody known to lead yet).
    pub fn new(member: String, status: StatusSource) -> Arc<Switch> {
        Switch::with_auth(member, status, None)
    }

    /// [`Switch::new`], checking the credential of the requests a follower
    /// answers itself with `auth` (a server with `auth:`).
    pub fn with_auth(member: String, status: StatusSource, auth: Option<AuthCheck>) -> Arc<Switch> {
        let client = reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with default TLS settings builds");
        Arc::new(Switch { mode: RwLock::new(Mode::Follow(None)), client, member, status, auth })
    }

    /// From now on, forward to `leader` (its base URL, e.g. `http://10.0.0.5:7878`).
    pub fn follow(&self, leader: Option<String>) {
        *self.mode.write().unwrap_or_else(|e| e.into_inner()) = Mode::Follow(leader);
    }

    /// From now on, serve `app` (this process leads).
    pub fn lead(&self, app: Router) {
        *self.mode.write().unwrap_or_else(|e| e.into_inner()) = Mode::Lead(app);
    }

    /// From now on, route each request to its shard's holder (`routes[i]` for
    /// shard `i`; see [`crate::shard_route`]).
    pub fn spread(&self, routes: Vec<ShardRoute>) {
        assert_eq!(routes.len(), usize::from(SHARD_COUNT), "one route per shard");
        *self.mode.write().unwrap_or_else(|e| e.into_inner()) = Mode::Spread(routes.into());
    }

    /// The router to serve (see [`crate::server::serve_router`]).
    pub fn router(self: &Arc<Switch>) -> Router {
        Router::new().fallback(dispatch).with_state(self.clone())
    }

    fn mode(&self) -> Mode {
        self.mode.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn dispatch(State(switch): State<Arc<Switch>>, request: Request) -> Response {
    match switch.mode() {
        Mode::Lead(app) => match app.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        Mode::Follow(leader) => follow(&switch, leader, request).await,
        Mode::Spread(routes) => spread(&switch, &routes, request).await,
    }
}

/// `--spread`: the request goes to its shard's holder — served here, forwarded,
/// or 503 while nobody holds the shard. Health, the cluster's status and (by a
/// process holding a shard) `/metrics` are answered here.
async fn spread(switch: &Switch, routes: &[ShardRoute], request: Request) -> Response {
    let path = request.uri().path().to_string();
    let aws = path == "/";
    match (request.method().as_str(), path.as_str()) {
        ("GET", "/healthz") => return "ok".into_response(),
        ("GET", "/readyz") => return spread_readiness(routes).await,
        ("GET", "/v1/cluster") => return own_cluster_status(switch, request).await,
        // Each process's own figures (its shards' engines count into one set),
        // through any shard it holds; one that holds none asks shard 0's holder.
        ("GET", "/metrics") => {
            if let Some(app) = routes.iter().find_map(|r| if let ShardRoute::Local(app) = r { Some(app.clone()) } else { None }) {
                return match app.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
            }
        }
        _ => {}
    }
    let (key, request) = match route_key_of_path(request.method().as_str(), &path) {
        Some(key) => (key, request),
        None => {
            // A CodePipeline call names its pipeline in its body (already read
            // whole and capped at the body limit before dispatch).
            let (parts, body) = request.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, MAX_FORWARDED_RESPONSE_BYTES).await else {
                return unavailable(aws, "the request body could not be read".into());
            };
            (route_key_of_aws_body(&bytes), Request::from_parts(parts, Body::from(bytes)))
        }
    };
    let shard = key.shard();
    match &routes[usize::from(shard.index())] {
        ShardRoute::Local(app) => match app.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        },
        ShardRoute::Remote(_) if request.headers().contains_key(FORWARDED_HEADER) => {
            unavailable(aws, format!("the request reached a process that no longer holds shard {shard}; retry (the shard is moving)"))
        }
        ShardRoute::Remote(url) => match forward(switch, url, request).await {
            Ok(response) => with_retry_after(response),
            Err(why) => unavailable(aws, format!("the process holding shard {shard} did not answer ({why}); retry")),
        },
        ShardRoute::Nobody => {
            unavailable(aws, format!("no process holds shard {shard} right now; one takes it over within the lease time"))
        }
    }
}

/// Ready when every shard has a live holder and every engine of this
/// process's shards is ready (the first that is not answers, e.g. its store
/// is unavailable).
async fn spread_readiness(routes: &[ShardRoute]) -> Response {
    let unheld: Vec<String> =
        routes.iter().enumerate().filter(|(_, r)| matches!(r, ShardRoute::Nobody)).map(|(i, _)| i.to_string()).collect();
    if unheld.is_empty() {
        for app in routes.iter().filter_map(|r| if let ShardRoute::Local(app) = r { Some(app.clone()) } else { None }) {
            let ask = Request::get("/readyz").body(Body::empty()).expect("a static request");
            let answer = match app.oneshot(ask).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if answer.status() != StatusCode::OK {
                return answer;
            }
        }
        return axum::Json(ReadyResponse { status: Readiness::Ready, reason: None, since: None }).into_response();
    }
    let reason = format!("no process holds shard(s) {} right now", unheld.join(", "));
    with_retry_after(
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(ReadyResponse { status: Readiness::Degraded, reason: Some(reason), since: None }))
            .into_response(),
    )
}

/// `GET /v1/cluster` answered by this process from the store (its own
/// credential check under `auth:`).
async fn own_cluster_status(switch: &Switch, request: Request) -> Response {
    if let Some(check) = &switch.auth {
        let (parts, _) = request.into_parts();
        if let Err(refused) = check(parts).await {
            return refused;
        }
    }
    match (switch.status)().await {
        Ok(status) => axum::Json(status).into_response(),
        Err(e) => unavailable(false, format!("the cluster's status cannot be read: {e}")),
    }
}

async fn follow(switch: &Switch, leader: Option<String>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let aws = path == "/";
    match (request.method().as_str(), path.as_str()) {
        ("GET", "/healthz") => return "ok".into_response(),
        ("GET", "/readyz") => return readiness(leader.as_deref()),
        ("GET", "/v1/cluster") => return own_cluster_status(switch, request).await,
        _ => {}
    }
    if request.headers().contains_key(FORWARDED_HEADER) {
        return unavailable(aws, "the request reached a process that no longer leads; retry (the leadership is moving)".into());
    }
    let Some(leader) = leader else {
        return unavailable(aws, "no process leads the store right now; one takes over within the lease time".into());
    };
    match forward(switch, &leader, request).await {
        Ok(response) => with_retry_after(response),
        Err(why) => unavailable(aws, format!("the leading process did not answer ({why}); retry")),
    }
}

fn readiness(leader: Option<&str>) -> Response {
    match leader {
        Some(_) => axum::Json(ReadyResponse { status: Readiness::Ready, reason: None, since: None }).into_response(),
        None => with_retry_after(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(ReadyResponse {
                    status: Readiness::Degraded,
                    reason: Some("following, and no process leads the store right now".into()),
                    since: None,
                }),
            )
                .into_response(),
        ),
    }
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
/// `Host` is not one: the leader gets the client's (a SigV4 signature covers it).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "te" | "trailer" | "transfer-encoding" | "upgrade" | "content-length"
    )
}

async fn forward(switch: &Switch, leader: &str, request: Request) -> Result<Response, String> {
    let (parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path_and_query}", leader.trim_end_matches('/'));
    // The body was read whole (and capped at the body limit) before dispatch.
    let body = axum::body::to_bytes(body, MAX_FORWARDED_RESPONSE_BYTES).await.map_err(|e| format!("request body: {e}"))?;
    let mut outgoing = switch.client.request(parts.method.clone(), &url).body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let mut answer = outgoing.header(FORWARDED_HEADER, &switch.member).send().await.map_err(|e| describe(&e))?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) && name != header::HOST {
            response = response.header(name, value);
        }
    }
    // Read at most the cap, whatever the answer claims: a follower never holds more.
    let too_big = || format!("its answer is over {MAX_FORWARDED_RESPONSE_BYTES} bytes");
    if answer.content_length().is_some_and(|n| n > MAX_FORWARDED_RESPONSE_BYTES as u64) {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|e| describe(&e))? {
        if bytes.len() + chunk.len() > MAX_FORWARDED_RESPONSE_BYTES {
            return Err(too_big());
        }
        bytes.extend_from_slice(&chunk);
    }
    response.header(header::CONTENT_LENGTH, bytes.len()).body(Body::from(bytes)).map_err(|e| e.to_string())
}

/// The innermost cause ("Connection refused"), never the URL.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", FORWARD_TIMEOUT.as_secs());
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
