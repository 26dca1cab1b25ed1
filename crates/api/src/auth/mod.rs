//! Authentication, authorization and the audit log, for every route of both APIs.
//!
//! With no [`AuthConfig`] (no `auth:` in the server config) every request is
//! served as the principal `anonymous` with an unlimited admin grant — the
//! server then listens on loopback only. With one, every request but `/healthz`
//! and `/readyz` needs a credential: `Authorization: Bearer <token>` (a token
//! from `/v1/tokens`, looked up by its SHA-256) or, on the CodePipeline
//! protocol, an AWS Signature V4 by a configured access key ([`sigv4`]).
//!
//! What each route needs comes from [`rules::RULES`]; the decision is
//! [`redrive_core::auth::authorize`] (pure). A state-changing call is recorded
//! in the store's audit log after it is answered.

pub mod admin;
pub mod rules;
pub mod session;
pub mod sigv4;
pub mod token;

use crate::codepipeline::errors::{ApiError as AwsError, ErrorCode};
use crate::codepipeline::protocol::{Operation, TARGET_HEADER};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use redrive_core::auth::{Grant, Principal, Requirement, Resource, Scope, authorize};
use redrive_core::time::Timestamp;
use redrive_engine::service::Service;
use redrive_store::{AuditRecord, Store};
use redrive_wire as w;
use rules::{RouteKey, Rule, Touches};
use std::sync::Arc;

/// The principal of every request on a server without `auth:`.
pub const ANONYMOUS: &str = "anonymous";
/// Longest path kept in an audit record's summary.
const MAX_AUDIT_PATH_CHARS: usize = 300;

/// An AWS access key: its secret (from the server's environment, never stored)
/// and the grant of requests it signs.
#[derive(Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    pub grant: Grant,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey").field("id", &self.id).field("secret", &"(redacted)").field("grant", &self.grant).finish()
    }
}

/// The server's `auth:` section: credentials are required.
#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    pub access_keys: Vec<AccessKey>,
    /// The grant each redrive schedule runs under (`schedule:<name>`, operate
    /// scope): checked at start-up to cover the schedule's queue prefix.
    pub schedules: Vec<Principal>,
    /// Console session cookies are marked `Secure` (the server serves HTTPS).
    pub secure_cookies: bool,
}

/// What the guard needs: the service (its store holds the tokens and the audit
/// log) and the auth config (`None`: no authentication).
pub struct Guard<S: Store> {
    pub service: Arc<Service<S>>,
    pub config: Option<Arc<AuthConfig>>,
    pub max_body_bytes: usize,
    /// Signatures of state-changing signed requests already served.
    pub replays: Arc<std::sync::Mutex<sigv4::SeenSignatures>>,
    /// The console's login sessions.
    pub sessions: Arc<session::Sessions>,
}

impl<S: Store> Guard<S> {
    pub fn new(service: Arc<Service<S>>, config: Option<Arc<AuthConfig>>, max_body_bytes: usize) -> Guard<S> {
        Guard { service, config, max_body_bytes, replays: Arc::default(), sessions: Arc::default() }
    }
}

impl<S: Store> Clone for Guard<S> {
    fn clone(&self) -> Self {
        Guard {
            service: self.service.clone(),
            config: self.config.clone(),
            max_body_bytes: self.max_body_bytes,
            replays: self.replays.clone(),
            sessions: self.sessions.clone(),
        }
    }
}

/// Why a request is refused before its handler runs.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No credential (401).
    Missing,
    /// A credential this server does not know (401).
    Unknown(String),
    /// A signature that does not match, or a request too far from the clock (403).
    BadSignature(String),
    /// A known credential whose grant does not allow the call (403).
    Denied(String),
    /// A route with no rule: refused, never served unchecked (403).
    Unclassified(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::Missing | Refusal::Unknown(_) => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::Missing => "this server requires a credential: send Authorization: Bearer <token> (redrive token create), \
                 or sign the request with a configured AWS access key"
                .to_string(),
            Refusal::Unknown(m) | Refusal::BadSignature(m) | Refusal::Denied(m) | Refusal::Unclassified(m) => m.clone(),
        }
    }

    /// The answer, in the AWS protocol's format on `POST /`, else the native one.
    pub fn into_response(self, aws: bool) -> Response {
        let status = self.status();
        let message = self.message();
        let mut response = if aws {
            let code = match self {
                Refusal::Missing => ErrorCode::MissingAuthenticationTokenException,
                Refusal::Unknown(_) => ErrorCode::UnrecognizedClientException,
                Refusal::BadSignature(_) => ErrorCode::InvalidSignatureException,
                Refusal::Denied(_) | Refusal::Unclassified(_) => ErrorCode::AccessDeniedException,
            };
            crate::aws::error_response(AwsError::new(code, message))
        } else {
            let code = if status == StatusCode::UNAUTHORIZED { "UnauthorizedException" } else { "AccessDeniedException" };
            let body = w::ErrorResponse { error: w::ErrorDetail { code: code.to_string(), message, problems: None } };
            (status, axum::Json(body)).into_response()
        };
        *response.status_mut() = status;
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The rule of this request: the operation named by `X-Amz-Target` on `POST /`,
/// else the matched route. `Err` for an unknown operation (its handler answers).
fn rule_of(method: &str, matched: &str, request: &Request) -> Result<Option<&'static Rule>, ()> {
    if matched == "/" && method == "POST" {
        let target = request.headers().get(TARGET_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        let op = Operation::from_target(target).map_err(|_| ())?;
        return Ok(rules::rule(RouteKey::Aws(op)));
    }
    Ok(rules::RULES.iter().find(|r| matches!(r.key, RouteKey::Native(m, p) if m == method && p == matched)))
}

/// The resource a request touches, from its path parameters and body.
fn resource<'a>(touches: Touches, params: &'a [(String, String)], body: &'a serde_json::Value) -> Resource<'a> {
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str());
    let at = |pointer: &str| body.pointer(pointer).and_then(|v| v.as_str()).unwrap_or("");
    match touches {
        Touches::Open => Resource::Nothing,
        Touches::Fixed(r) => r,
        Touches::PipelineParam => Resource::Pipeline(param("name")),
        Touches::QueueParam => Resource::Queue(param("queue")),
        Touches::PipelineAt(p) => Resource::Pipeline(at(p)),
        Touches::QueuePrefixAt(p) => Resource::QueuePrefix(at(p)),
        Touches::RunParam | Touches::EntryParam => Resource::AllQueues,
    }
}

/// A queue or queue prefix read from the store for a route that names a run or
/// an entry by id: `(is_prefix, name)`; `None` when there is no such record.
async fn stored_queue<S: Store>(guard: &Guard<S>, touches: Touches, id: &str) -> Option<(bool, String)> {
    let store = guard.service.store();
    match touches {
        Touches::RunParam => {
            let run = store.get_redrive_run(id).await.ok().flatten()?;
            let request: redrive_engine::redrive::RedriveRequest = serde_json::from_str(&run.request_json).ok()?;
            Some(match request.scope {
                redrive_engine::redrive::QueueScope::Queue(q) => (false, q),
                redrive_engine::redrive::QueueScope::Prefix(p) => (true, p),
            })
        }
        Touches::EntryParam => store.get_dlq_entry(id).await.ok().flatten().map(|e| (false, e.queue)),
        _ => None,
    }
}

/// The name an audit record is about: the pipeline or queue touched, else a
/// `{name}` path parameter or a `name` in the body (a token's).
fn audit_target(resource: Resource<'_>, params: &[(String, String)], body: &serde_json::Value) -> Option<String> {
    let named = match resource {
        Resource::Pipeline(n) | Resource::Queue(n) => Some(n.to_string()),
        Resource::QueuePrefix(p) => Some(format!("{p}*")),
        _ => params
            .iter()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| v.clone())
            .or_else(|| body.get("name").and_then(|v| v.as_str()).map(str::to_string)),
    };
    named.filter(|n| !n.is_empty()).map(|n| n.chars().take(redrive_core::name::NAME_MAX_LEN).collect())
}

/// Who sent a request, and how.
struct Authenticated {
    principal: Principal,
    /// The signature of a SigV4-signed request.
    signature: Option<String>,
    /// Authenticated by the console's session cookie (not a header the sender
    /// chose): a state-changing request must also prove it comes from the
    /// console's script ([`session::CONSOLE_HEADER`]).
    by_cookie: bool,
}

/// Who sent the request, or why it is refused: an `Authorization` header
/// (bearer token or SigV4), else the console's session cookie.
async fn authenticate<S: Store>(guard: &Guard<S>, request: &axum::http::request::Parts, body: &[u8]) -> Result<Authenticated, Refusal> {
    let Some(config) = &guard.config else {
        let principal = Principal { name: ANONYMOUS.to_string(), grant: Grant::unlimited(Scope::Admin) };
        return Ok(Authenticated { principal, signature: None, by_cookie: false });
    };
    let now = guard.service.now();
    if request.headers.get(header::AUTHORIZATION).is_none()
        && let Some(value) = session::cookie(&request.headers)
    {
        let ended = || Refusal::Unknown("the console session ended (logged out, expired or the server restarted); log in again".into());
        let token_hash = guard.sessions.token_of(value, now).ok_or_else(ended)?;
        let principal = token_principal(guard.service.store().as_ref(), &token_hash, now).await?;
        return Ok(Authenticated { principal, signature: None, by_cookie: true });
    }
    let (principal, signature) = credential(guard.service.store().as_ref(), config, request, body, now).await?;
    Ok(Authenticated { principal, signature, by_cookie: false })
}

/// The principal of a request's `Authorization` header (and the signature, for
/// a SigV4 one), or why it is refused.
pub async fn credential<S: Store>(
    store: &S,
    config: &AuthConfig,
    request: &axum::http::request::Parts,
    body: &[u8],
    now: Timestamp,
) -> Result<(Principal, Option<String>), Refusal> {
    let Some(value) = request.headers.get(header::AUTHORIZATION) else { return Err(Refusal::Missing) };
    let value = value.to_str().map_err(|_| Refusal::Unknown("the Authorization header is not ASCII".to_string()))?;
    if let Some(bearer) = value.strip_prefix("Bearer ") {
        return bearer_principal(store, bearer.trim(), now).await.map(|p| (p, None));
    }
    if value.starts_with(sigv4::ALGORITHM) {
        return sigv4::verify(&config.access_keys, request, body, now);
    }
    Err(Refusal::Unknown("the Authorization header is neither Bearer nor AWS4-HMAC-SHA256".to_string()))
}

/// The principal of a presented bearer token.
pub async fn bearer_principal<S: Store>(store: &S, presented: &str, now: Timestamp) -> Result<Principal, Refusal> {
    if !token::well_formed(presented) {
        return Err(unknown_token());
    }
    token_principal(store, &token::hash(presented), now).await
}

fn unknown_token() -> Refusal {
    Refusal::Unknown("the bearer token is not one this server issued (or it was revoked)".to_string())
}

/// The principal of the stored token whose hash is `hash` (compared in
/// constant time), if it exists and has not expired.
pub(crate) async fn token_principal<S: Store>(store: &S, hash: &str, now: Timestamp) -> Result<Principal, Refusal> {
    let record = store.token_by_hash(hash).await.map_err(|e| Refusal::Unknown(format!("the token store cannot be read: {e}")))?;
    let record = record.filter(|r| token::same_hash(&r.token_hash, hash)).ok_or_else(unknown_token)?;
    if record.expires_at.is_some_and(|t| t <= now) {
        return Err(Refusal::Unknown(format!(
            "token {} expired at {}",
            record.name,
            record.expires_at.map(|t| t.to_string()).unwrap_or_default()
        )));
    }
    let grant: Grant = serde_json::from_str(&record.grant_json)
        .map_err(|e| Refusal::Unknown(format!("token {} has an unreadable grant: {e}", record.name)))?;
    Ok(Principal { name: record.name, grant })
}

/// The middleware on every route: classify, authenticate, authorize, serve,
/// audit.
pub async fn guard<S: Store>(State(guard): State<Guard<S>>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_string();
    let matched = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_default();
    let aws = matched == "/";
    let rule = rule_of(&method, &matched, &request);
    // Open routes, and reads on a server without auth:, need nothing more;
    // nor do routes outside the table (the console's) without auth:.
    let unchecked = match rule {
        Ok(Some(rule)) => rule.touches == Touches::Open || (guard.config.is_none() && !rule.audited),
        Ok(None) => guard.config.is_none(),
        Err(()) => false,
    };
    if unchecked {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let params: Vec<(String, String)> = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(p) => p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        Err(_) => Vec::new(),
    };
    // At most one byte over the limit: enough for the handler to answer 413.
    let bytes: Bytes = match crate::extract::read_up_to(body, guard.max_body_bytes.saturating_add(1)).await {
        Ok(b) => b,
        Err(e) => return crate::error::bad_body(format!("request body: {e}")),
    };
    let Authenticated { principal, signature, by_cookie } = match authenticate(&guard, &parts, &bytes).await {
        Ok(a) => a,
        Err(refusal) if wants_login_page(&matched, &parts.headers) => return to_login(parts.uri.path(), refusal),
        Err(refusal) => return refusal.into_response(aws),
    };
    let safe = matches!(method.as_str(), "GET" | "HEAD");
    if by_cookie && !safe && !session::from_console_script(&parts.headers) {
        return Refusal::Denied(format!(
            "a {method} authenticated by the console's session cookie must carry the header X-Redrive-Console: 1 (a \
             defence against cross-site requests); send Authorization: Bearer <token> from other clients"
        ))
        .into_response(aws);
    }
    let rule = match rule {
        Ok(Some(rule)) => rule,
        // An operation this server does not serve: its handler says so.
        Err(()) => return next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(None) => return Refusal::Unclassified(format!("{method} {matched} has no access rule; it is refused")).into_response(aws),
    };
    let body_json: serde_json::Value = crate::json::parse_value(&bytes).unwrap_or(serde_json::Value::Null);
    let id = params.iter().find(|(k, _)| k == "id").map_or("", |(_, v)| v.as_str());
    let stored = stored_queue(&guard, rule.touches, id).await;
    let resource = match &stored {
        Some((true, prefix)) => Resource::QueuePrefix(prefix),
        Some((false, queue)) => Resource::Queue(queue),
        None => resource(rule.touches, &params, &body_json),
    };
    if let Err(denied) = authorize(&principal, Requirement { scope: rule.scope, resource }) {
        return Refusal::Denied(explained(rule, denied.0)).into_response(aws);
    }
    // A signed change is served once: the same signature again is a replay.
    if let Some(signature) = signature.filter(|_| rule.audited) {
        let now = guard.service.now();
        let fresh = guard.replays.lock().map(|mut seen| seen.first_use(&signature, now)).unwrap_or(false);
        if !fresh {
            return Refusal::BadSignature("this signed request was already served (a replay); sign each request anew".to_string())
                .into_response(aws);
        }
    }
    let target = audit_target(resource, &params, &body_json);
    let action = match rule.key {
        RouteKey::Native(m, p) => format!("{m} {p}"),
        RouteKey::Aws(op) => format!("CodePipeline.{op}"),
    };
    let path: String = parts.uri.path().chars().take(MAX_AUDIT_PATH_CHARS).collect();
    parts.extensions.insert(principal.clone());
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    if rule.audited {
        let summary = serde_json::json!({"method": method, "path": path});
        record(&guard, &principal.name, action, target, response.status().as_u16(), summary).await;
    }
    response
}

/// A refusal's reason, with what to do for a route every limited grant is
/// refused (`/metrics` labels every pipeline and queue).
fn explained(rule: &Rule, reason: String) -> String {
    match rule.key {
        RouteKey::Native("GET", "/metrics") => format!(
            "{reason}: /metrics reports every pipeline and queue, so it needs a grant not limited by name (for example a \
             read-scope token made for the scraper: redrive token create --name prometheus --scope read)"
        ),
        _ => reason,
    }
}

/// The credential check of a follower's own `GET /v1/cluster` (see
/// [`crate::switch`]): the same authentication as the guard (a bearer token
/// from the store, or a SigV4 signature; no console session, which lives in the
/// leader's memory) and its rule's scope.
pub fn follower_check<S: Store, C: redrive_engine::Clock>(
    store: Arc<S>,
    config: Arc<AuthConfig>,
    clock: Arc<C>,
) -> crate::switch::AuthCheck {
    Arc::new(move |parts: axum::http::request::Parts| {
        let (store, config, clock) = (store.clone(), config.clone(), clock.clone());
        Box::pin(async move {
            let now = clock.now();
            let (principal, _) = credential(store.as_ref(), &config, &parts, &[], now).await.map_err(|r| r.into_response(false))?;
            let rule = rules::rule(RouteKey::Native("GET", "/v1/cluster")).expect("GET /v1/cluster has a rule");
            let resource = resource(rule.touches, &[], &serde_json::Value::Null);
            authorize(&principal, Requirement { scope: rule.scope, resource }).map_err(|d| Refusal::Denied(d.0).into_response(false))
        })
    })
}

/// Whether a refused request is a browser opening a console page (not the
/// console's script, whose requests carry [`session::CONSOLE_HEADER`]): it is
/// sent to the login page instead of getting 401.
fn wants_login_page(matched: &str, headers: &axum::http::HeaderMap) -> bool {
    let page = matched == CONSOLE || matched.starts_with(concat!("/console", "/"));
    let html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|t| t.split(';').next().unwrap_or("").trim() == "text/html"));
    page && html && !session::from_console_script(headers)
}

/// The console's root path.
const CONSOLE: &str = "/console";

/// 303 to the login page, which sends the browser back to `path` after the login.
fn to_login(path: &str, refusal: Refusal) -> Response {
    let next: String = form_urlencoded(path);
    let mut response = (StatusCode::SEE_OTHER, refusal.message()).into_response();
    let location = format!("{CONSOLE}/login?next={next}");
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// `text` percent-encoded for a query value (every byte but unreserved ones and `/`).
fn form_urlencoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Appends an audit record; a failure is logged, the answer already made stands.
pub async fn record<S: Store>(
    guard: &Guard<S>,
    principal: &str,
    action: String,
    target: Option<String>,
    status: u16,
    summary: serde_json::Value,
) {
    let record = AuditRecord {
        seq: 0,
        at: guard.service.now(),
        principal: principal.to_string(),
        action,
        target,
        status,
        summary_json: summary.to_string(),
    };
    if let Err(e) = guard.service.store().append_audit(record).await {
        tracing::warn!(error = %e, principal, "the audit record of a call could not be written");
    }
}

/// `at` as the wire's RFC 3339.
pub(crate) fn wire_time(at: Timestamp) -> String {
    at.to_string()
}
