//! The web console under `/console`: server-rendered HTML (maud escapes every
//! value), one embedded stylesheet and script, no build step and no CDN.
//!
//! Pages read through the engine's [`Service`], the same operations the JSON
//! APIs call. Nothing here changes state: buttons that do (Retry, Stop,
//! redrive, purge) call the JSON APIs from `console.js` with
//! `Content-Type: application/json`, so the API's rules and its CSRF defence
//! (`json_posts_only`) apply unchanged. Every list is one bounded page.
//!
//! Mounted by [`crate::server::app`] through [`mount`] (one `nest("/console", …)`);
//! `GET /` from a browser redirects here ([`root`]).
//!
//! Under `auth:` a browser logs in once at `/console/login` and then carries a
//! session cookie ([`crate::auth::session`]); every page is checked by the
//! same guard and rules as the API, and renders for its viewer ([`viewer`]):
//! a button the viewer's grant does not allow is shown disabled with the reason.

mod dlq;
mod executions;
mod functions;
mod login;
mod pipelines;
mod view;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use redrive_core::auth::{Principal, Requirement, Resource, Scope, authorize};
use redrive_engine::service::{Service, ServiceError};
use redrive_store::Store;
use std::sync::Arc;

/// Rows on one page of any console listing.
pub const PAGE_ROWS: usize = 50;

const CONSOLE_JS: &str = include_str!("assets/console.js");
const CONSOLE_CSS: &str = include_str!("assets/console.css");

/// `router` with the console: its pages under `/console` (one `nest`, so a
/// layer such as authentication can wrap [`router`] alone), `/console/` sent to
/// `/console`, and a browser's `GET /` sent there too ([`root`]). HTML pages,
/// not API operations: they are not in the OpenAPI document.
pub fn mount<S: Store>(app: Router<Arc<Service<S>>>) -> Router<Arc<Service<S>>> {
    app.route("/", get(root)).route("/console/", get(|| async { Redirect::permanent("/console") })).nest("/console", router::<S>())
}

/// The console's routes (relative to `/console`).
pub fn router<S: Store>() -> Router<Arc<Service<S>>> {
    Router::new()
        .route("/login", get(login::page).post(login::login::<S>))
        .route("/logout", axum::routing::post(login::logout::<S>))
        .route("/", get(pipelines::list::<S>))
        .route("/pipelines/{name}", get(pipelines::state::<S>))
        .route("/pipelines/{name}/board", get(pipelines::board::<S>))
        .route("/pipelines/{name}/executions", get(executions::list::<S>))
        .route("/pipelines/{name}/executions/{id}", get(executions::detail::<S>))
        .route("/pipelines/{name}/executions/{id}/live", get(executions::live::<S>))
        .route("/dlq", get(dlq::queues::<S>))
        .route("/dlq/queues/{queue}", get(dlq::queue::<S>))
        .route("/dlq/queues/{queue}/live", get(dlq::queue_live::<S>))
        .route("/dlq/entries/{id}", get(dlq::entry::<S>))
        .route("/dlq/runs/{id}", get(dlq::run::<S>))
        .route("/dlq/runs/{id}/live", get(dlq::run_live::<S>))
        .route("/functions", get(functions::list::<S>))
        .route("/functions/{name}/{id}", get(functions::detail::<S>))
        .route("/assets/console.js", get(|| async { asset("text/javascript; charset=utf-8", CONSOLE_JS) }))
        .route("/assets/console.css", get(|| async { asset("text/css; charset=utf-8", CONSOLE_CSS) }))
        .layer(axum::middleware::from_fn(with_viewer))
}

tokio::task_local! {
    /// Who the page being rendered is for: the principal the guard
    /// authenticated, or `None` on a server without `auth:` (everyone may do
    /// everything the API allows).
    static VIEWER: Option<Principal>;
}

/// Renders the request's page for the principal the guard put in its
/// extensions ([`VIEWER`]).
async fn with_viewer(request: Request, next: axum::middleware::Next) -> Response {
    let viewer = request.extensions().get::<Principal>().cloned();
    VIEWER.scope(viewer, next.run(request)).await
}

/// The principal a page is rendered for, if the server authenticates.
fn viewer() -> Option<Principal> {
    VIEWER.try_with(Clone::clone).ok().flatten()
}

/// Whether the viewer may call an API route needing `scope` on `resource`;
/// the refusal says why (the API would answer it with 403).
fn may(scope: Scope, resource: Resource<'_>) -> Result<(), String> {
    match viewer() {
        Some(p) => authorize(&p, Requirement { scope, resource }).map_err(|d| d.0),
        None => Ok(()),
    }
}

/// The name limits of the viewer's grant, said for a listing that shows only
/// what they cover (`None`: not limited, or no `auth:`).
fn name_limits() -> Option<String> {
    let grant = viewer()?.grant;
    let said = |what: &str, ps: &Option<Vec<redrive_core::auth::NamePattern>>| {
        ps.as_ref().map(|ps| format!("{what} {}", ps.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", ")))
    };
    let parts: Vec<String> = [said("pipelines", &grant.pipelines), said("queues", &grant.queues)].into_iter().flatten().collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// A page the viewer's grant does not cover: 403 with the reason.
fn forbidden(why: &str) -> PageResult {
    Ok(respond(StatusCode::FORBIDDEN, page("Not allowed", html! { h1 { "Not allowed" } p { (why) } })))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// `GET /`: a browser (one that accepts `text/html`) is sent to the console;
/// anything else gets the CodePipeline protocol's 405, as before.
pub async fn root(request: Request) -> Response {
    let html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.split(',').any(|t| t.split(';').next().unwrap_or("").trim() == "text/html"));
    if html { Redirect::to("/console").into_response() } else { crate::aws::method_not_allowed() }
}

/// A whole page: header with navigation, `body`, who is signed in, the script.
fn page(title: &str, body: Markup) -> Markup {
    layout(title, body, footer())
}

fn layout(title: &str, body: Markup, footer: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · redrive" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/console" { "redrive" }
                    nav aria-label="Sections" {
                        a href="/console" { "Pipelines" }
                        a href="/console/dlq" { "Dead-letter queues" }
                        a href="/console/functions" { "Functions" }
                    }
                }
                main { (body) }
                (footer)
            }
        }
    }
}

/// Why the buttons before it are disabled: the viewer's grant does not allow
/// their API call.
fn denied_note(why: &str) -> Markup {
    html! { span.reason { strong { "AccessDeniedException" } ": " (why) } }
}

/// Who is signed in (and a Log out button), or the console's openness.
fn footer() -> Markup {
    html! {
        footer {
            @match viewer() {
                Some(p) => {
                    "Signed in as " strong { (p.name) } " (" (p.grant.scope) " scope). "
                    button type="button" id="logout" data-logout="/console/logout" { "Log out" }
                }
                None => "The console is as open as the API: anyone who can reach this server can use it.",
            }
        }
    }
}

/// An HTML answer with no caching (pages show live state).
fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut r = (status, markup.into_string()).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A page answer, or the error page.
type PageResult = Result<Response, ConsoleError>;

fn ok_page(title: &str, body: Markup) -> PageResult {
    Ok(respond(StatusCode::OK, page(title, body)))
}

/// A fragment for live updates (no layout).
fn ok_fragment(markup: Markup) -> PageResult {
    Ok(respond(StatusCode::OK, markup))
}

/// A service error shown as a page, with the API's status and error name.
pub struct ConsoleError(ServiceError);

impl From<ServiceError> for ConsoleError {
    fn from(e: ServiceError) -> Self {
        ConsoleError(e)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (code, status) = crate::error::error_code(&self.0);
        let body = html! {
            h1 { "Cannot show this page" }
            p.error role="alert" { strong { (code) } ": " (self.0.to_string()) }
            p { a href="/console" { "Back to the pipelines" } }
        };
        respond(status, page(code, body))
    }
}

fn bad_request(message: impl Into<String>) -> ConsoleError {
    ConsoleError(ServiceError::Validation(message.into()))
}

/// A page's query string; a bad one is the error page (400) naming the problem.
pub struct PageQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, St: Send + Sync> axum::extract::FromRequestParts<St> for PageQuery<T> {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &St) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(t)| PageQuery(t))
            .map_err(|e| bad_request(format!("query string: {}", e.body_text())))
    }
}
