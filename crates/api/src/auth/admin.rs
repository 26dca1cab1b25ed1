//! `/v1/tokens` (create, list, revoke bearer tokens) and `/v1/audit` (the
//! audit log, newest first). Both need an unlimited admin grant (see
//! [`super::rules`]). [`new_token`] is also what `redrive token create --db`
//! runs, so that a token made without a server is made the same way.

use crate::doc::op;
use crate::error::{ApiError, Result, invalid};
use crate::extract::{JsonBody, QueryParams};
use crate::page::{Page, page_limit, parse_seq_token};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use redrive_core::auth::{Grant, MAX_PATTERNS, NamePattern, Scope};
use redrive_core::name::Name;
use redrive_core::time::{Timestamp, parse_duration_ms};
use redrive_engine::service::{Service, ServiceError};
use redrive_store::{AuditFilter, AuditRecord, Store, StoreError, TokenRecord};
use redrive_wire as w;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;

type St<S> = State<Arc<Service<S>>>;

/// Shortest `expiresIn`.
pub const MIN_TOKEN_LIFETIME_MS: u64 = 60_000;
/// Longest `expiresIn` (ten years).
pub const MAX_TOKEN_LIFETIME_MS: u64 = 3_650 * 86_400_000;

pub fn router<S: Store>() -> OpenApiRouter<Arc<Service<S>>> {
    OpenApiRouter::new()
        .routes(op::<__path_create_token, _, _, _>(create_token::<S>))
        .routes(op::<__path_list_tokens, _, _, _>(list_tokens::<S>))
        .routes(op::<__path_revoke_token, _, _, _>(revoke_token::<S>))
        .routes(op::<__path_list_audit, _, _, _>(list_audit::<S>))
}

/// Checks a create request; returns the token's value (to show once) and its record.
pub fn new_token(req: &w::CreateTokenRequest, now: Timestamp) -> std::result::Result<(String, TokenRecord), String> {
    Name::parse(&req.name).map_err(|e| format!("name: {e}"))?;
    let scope = Scope::parse(&req.scope).map_err(|e| format!("scope: {e}"))?;
    let patterns = |field: &str, list: &Option<Vec<String>>| -> std::result::Result<Option<Vec<NamePattern>>, String> {
        let Some(list) = list else { return Ok(None) };
        if list.is_empty() || list.len() > MAX_PATTERNS {
            return Err(format!("{field}: give 1 to {MAX_PATTERNS} patterns, or leave it out for every name"));
        }
        list.iter()
            .enumerate()
            .map(|(i, p)| NamePattern::parse(p).map_err(|e| format!("{field}[{i}]: {e}")))
            .collect::<std::result::Result<_, _>>()
            .map(Some)
    };
    let grant = Grant { scope, pipelines: patterns("pipelines", &req.pipelines)?, queues: patterns("queues", &req.queues)? };
    let expires_at = match &req.expires_in {
        None => None,
        Some(text) => {
            let ms = parse_duration_ms(text).map_err(|e| format!("expiresIn: {e}"))?;
            if !(MIN_TOKEN_LIFETIME_MS..=MAX_TOKEN_LIFETIME_MS).contains(&ms) {
                return Err(format!("expiresIn: {text} is out of range; allowed: 1m to 3650d"));
            }
            Some(Timestamp::from_unix_ms(now.unix_ms().saturating_add(ms as i64)))
        }
    };
    let value = super::token::generate()?;
    let record = TokenRecord {
        name: req.name.clone(),
        token_hash: super::token::hash(&value),
        grant_json: serde_json::to_string(&grant).map_err(|e| e.to_string())?,
        created_at: now,
        expires_at,
    };
    Ok((value, record))
}

/// A token as listed (never its value or hash).
pub fn token_info(r: &TokenRecord) -> w::TokenInfo {
    let grant: Option<Grant> = serde_json::from_str(&r.grant_json).ok();
    let list = |ps: &Option<Vec<NamePattern>>| ps.as_ref().map(|ps| ps.iter().map(|p| p.as_str().to_string()).collect());
    w::TokenInfo {
        name: r.name.clone(),
        scope: grant.as_ref().map_or_else(|| "unreadable".to_string(), |g| g.scope.to_string()),
        pipelines: grant.as_ref().and_then(|g| list(&g.pipelines)),
        queues: grant.as_ref().and_then(|g| list(&g.queues)),
        created_at: super::wire_time(r.created_at),
        expires_at: r.expires_at.map(super::wire_time),
    }
}

/// An audit record on the wire.
pub fn audit_entry(r: &AuditRecord) -> w::AuditEntry {
    w::AuditEntry {
        seq: r.seq,
        at: super::wire_time(r.at),
        principal: r.principal.clone(),
        action: r.action.clone(),
        target: r.target.clone(),
        status: r.status,
        request: serde_json::from_str(&r.summary_json).unwrap_or(serde_json::Value::Null),
    }
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists(m) => ApiError(ServiceError::Conflict(m)),
        StoreError::Limit(m) => invalid(m),
        e => ApiError(e.into()),
    }
}

/// Creates a bearer token; the answer is the only time its value is shown.
#[utoipa::path(post, path = "/v1/tokens", tag = "auth", request_body = w::CreateTokenRequest,
    responses((status = 201, description = "Created; `token` is shown only now", body = w::CreatedToken), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn create_token<S: Store>(State(svc): St<S>, JsonBody(req): JsonBody<w::CreateTokenRequest>) -> Result<Response> {
    let (value, record) = new_token(&req, svc.now()).map_err(invalid)?;
    let info = token_info(&record);
    svc.store().create_token(record).await.map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(w::CreatedToken { token: value, info })).into_response())
}

/// Every token, by name (never their values).
#[utoipa::path(get, path = "/v1/tokens", tag = "auth",
    responses((status = 200, description = "Success", body = w::TokenList), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn list_tokens<S: Store>(State(svc): St<S>) -> Result<Json<w::TokenList>> {
    let tokens = svc.store().list_tokens().await.map_err(store_error)?;
    Ok(Json(w::TokenList { tokens: tokens.iter().map(token_info).collect() }))
}

/// Revokes a token: requests carrying it are refused from now on.
#[utoipa::path(delete, path = "/v1/tokens/{name}", tag = "auth", params(("name" = String, Path)),
    responses((status = 204, description = "Revoked"), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn revoke_token<S: Store>(State(svc): St<S>, Path(name): Path<String>) -> Result<Response> {
    if svc.store().revoke_token(&name).await.map_err(store_error)? {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let name: String = name.chars().take(100).collect();
    Ok(invalid(format!("no token named {name}")).into_response_with(StatusCode::NOT_FOUND))
}

/// State-changing calls, newest first, one page.
#[utoipa::path(get, path = "/v1/audit", tag = "auth", params(Page),
    responses((status = 200, description = "Success", body = w::AuditList), (status = "4XX", description = "The request was refused; `error.code` says why", body = w::ErrorResponse)))]
async fn list_audit<S: Store>(State(svc): St<S>, QueryParams(page): QueryParams<Page>) -> Result<Json<w::AuditList>> {
    let limit = page_limit(page.limit)?;
    let before_seq = page.next_token.as_deref().map(parse_seq_token).transpose()?.map(|s| s.max(0) as u64);
    let rows = svc.store().list_audit(AuditFilter { before_seq, limit }).await.map_err(store_error)?;
    let next_token = (rows.len() == limit).then(|| rows.last().map(|r| r.seq.to_string())).flatten();
    Ok(Json(w::AuditList { entries: rows.iter().map(audit_entry).collect(), next_token }))
}
