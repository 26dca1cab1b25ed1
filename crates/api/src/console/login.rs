//! `/console/login` and `/console/logout`: a bearer token, checked exactly as
//! in an `Authorization` header, is exchanged for a session cookie
//! ([`crate::auth::session`]); logging out ends the session. Both are recorded
//! in the audit log under the token's name (never the token).

use super::{layout, respond};
use crate::auth::{self, Guard, Refusal, session};
use crate::error::invalid;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::html;
use redrive_store::Store;
use redrive_wire as w;

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Where to go after the login: a console path (never another site), else the console.
fn next_path(next: Option<&str>) -> &str {
    match next {
        Some(p) if p.starts_with("/console") && !p.contains("//") && !p.contains('\\') && p.len() <= 2000 => p,
        _ => "/console",
    }
}

/// `GET /console/login`: asks for a token (the script posts it as JSON).
pub async fn page(Query(query): Query<LoginQuery>) -> Response {
    let next = next_path(query.next.as_deref());
    let body = html! {
        h1 { "Log in" }
        form #login data-next=(next) {
            p { "This server requires a token. Paste one made by " code { "redrive token create" } "; it is asked for once \
                 and the browser then keeps a session cookie (for at most 12 hours, or 1 hour unused)." }
            label for="token" { "Token" }
            " " input #token type="password" name="token" autocomplete="off" required autofocus;
            " " button type="submit" { "Log in" }
            p.result role="status" aria-live="polite" {}
            noscript { p.error { "Logging in needs JavaScript (the token is posted as JSON)." } }
        }
    };
    respond(StatusCode::OK, layout("Log in", body, html! {}))
}

/// `POST /console/login` with `{"token": "rdv_…"}`: a session cookie, or 401.
pub async fn login<S: Store>(Extension(guard): Extension<Guard<S>>, body: Bytes) -> Response {
    if guard.config.is_none() {
        return invalid("this server has no auth: section; the console needs no login").into_response_with(StatusCode::CONFLICT);
    }
    let request: w::ConsoleLoginRequest = match crate::json::parse_object(&body) {
        Ok(r) => r,
        Err(e) => return invalid(format!("request body: {e}")).into_response(),
    };
    let now = guard.service.now();
    let presented = request.token.trim();
    let principal = match auth::bearer_principal(guard.service.store().as_ref(), presented, now).await {
        Ok(p) => p,
        Err(refusal) => return refusal.into_response(false),
    };
    let value = match guard.sessions.open(auth::token::hash(presented), now) {
        Ok(v) => v,
        Err(e) => return invalid(e).into_response_with(StatusCode::SERVICE_UNAVAILABLE),
    };
    auth::record(&guard, &principal.name, "POST /console/login".into(), None, 200, summary("/console/login")).await;
    let secure = guard.config.as_ref().is_some_and(|c| c.secure_cookies);
    let answer = w::ConsoleSession { principal: principal.name, scope: principal.grant.scope.to_string() };
    with_cookie(axum::Json(answer).into_response(), session::set_cookie(&value, secure))
}

/// `POST /console/logout`: ends the cookie's session and deletes the cookie.
pub async fn logout<S: Store>(Extension(guard): Extension<Guard<S>>, headers: HeaderMap) -> Response {
    let secure = guard.config.as_ref().is_some_and(|c| c.secure_cookies);
    let Some(value) = session::cookie(&headers) else {
        return with_cookie(Refusal::Missing.into_response(false), session::clear_cookie(secure));
    };
    let now = guard.service.now();
    let token_hash = guard.sessions.token_of(value, now);
    guard.sessions.close(value);
    let principal = match token_hash {
        Some(hash) => auth::token_principal(guard.service.store().as_ref(), &hash, now).await.ok(),
        None => None,
    };
    let response = match principal {
        Some(p) => {
            auth::record(&guard, &p.name, "POST /console/logout".into(), None, 200, summary("/console/logout")).await;
            axum::Json(w::ConsoleSession { principal: p.name, scope: p.grant.scope.to_string() }).into_response()
        }
        None => StatusCode::NO_CONTENT.into_response(),
    };
    with_cookie(response, session::clear_cookie(secure))
}

fn summary(path: &str) -> serde_json::Value {
    serde_json::json!({"method": "POST", "path": path})
}

fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}
