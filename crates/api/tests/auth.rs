//! Authentication and authorization over the real router: every route of both
//! APIs (read from the OpenAPI document and the CodePipeline operation list) is
//! classified, refuses a request without a credential (401) and one whose
//! grant is too small or limited to other names (403); the audit log records
//! state changes with the principal's name.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use redrive_api::auth::rules::{RouteKey, Touches, rule};
use redrive_api::auth::{AccessKey, AuthConfig};
use redrive_api::codepipeline::protocol::Operation;
use redrive_core::auth::{Grant, NamePattern, Resource, Scope};
use redrive_core::time::Timestamp;
use redrive_engine::service::Service;
use redrive_engine::{Driver, DriverConfig, ManualClock};
use redrive_store::{SqliteOptions, SqliteStore, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

struct App {
    router: axum::Router,
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("r.db"), SqliteOptions::default()).unwrap());
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_ms(1_767_225_600_000)));
    let (handle, _join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let service = Arc::new(Service::new(store.clone(), handle, clock.clone()));
    let key = AccessKey { id: "AKIDEXAMPLE".into(), secret: "secret".into(), grant: Grant::unlimited(Scope::Admin) };
    let config = Arc::new(AuthConfig { access_keys: vec![key], ..AuthConfig::default() });
    let router = redrive_api::server::app_with_auth(service, 1024 * 1024, Some(config));
    App { router, store, clock, _dir: dir }
}

fn patterns(list: &[&str]) -> Option<Vec<NamePattern>> {
    Some(list.iter().map(|p| NamePattern::parse(p).unwrap()).collect())
}

impl App {
    /// Stores a token directly (as `redrive token create --db` does); returns its value.
    async fn token(&self, name: &str, grant: Grant, expires_in: Option<&str>) -> String {
        let req = redrive_wire::CreateTokenRequest {
            name: name.into(),
            scope: grant.scope.to_string(),
            pipelines: grant.pipelines.map(|ps| ps.iter().map(|p| p.as_str().to_string()).collect()),
            queues: grant.queues.map(|ps| ps.iter().map(|p| p.as_str().to_string()).collect()),
            expires_in: expires_in.map(str::to_string),
        };
        let (value, record) = redrive_api::auth::admin::new_token(&req, redrive_engine::Clock::now(self.clock.as_ref())).unwrap();
        self.store.create_token(record).await.unwrap();
        value
    }

    async fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &Value) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = if method == "GET" || method == "DELETE" { Body::empty() } else { Body::from(body.to_string()) };
        let response = self.router.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

/// Every route: (method, path template) from the OpenAPI document, and each
/// CodePipeline operation.
fn every_route() -> Vec<RouteKey> {
    let doc = redrive_api::server::openapi_document::<SqliteStore>();
    let mut keys = Vec::new();
    for (path, item) in &doc.paths.paths {
        let methods =
            [("GET", item.get.is_some()), ("POST", item.post.is_some()), ("PUT", item.put.is_some()), ("DELETE", item.delete.is_some())];
        for (method, present) in methods {
            if !present || path == "/" {
                continue;
            }
            let found = redrive_api::auth::rules::RULES.iter().find_map(|r| match r.key {
                RouteKey::Native(m, p) if m == method && p == path => Some(r.key),
                _ => None,
            });
            keys.push(found.unwrap_or_else(|| panic!("{method} {path} is routed but has no access rule in auth::rules::RULES")));
        }
        let other = item.patch.is_some() || item.head.is_some() || item.options.is_some();
        assert!(!other, "{path}: a method this test does not cover");
    }
    keys.extend(Operation::ALL.iter().map(|op| RouteKey::Aws(*op)));
    keys
}

/// A concrete request for a route, naming pipeline `orders` and queue `orders-q`.
fn request_for(key: RouteKey) -> (String, String, Vec<(String, String)>, Value) {
    let body =
        json!({"name": "orders", "pipelineName": "orders", "pipeline": {"name": "orders"}, "queuePrefix": "orders-", "scope": "read"});
    match key {
        RouteKey::Native(method, path) => {
            let concrete = path.replace("{name}", "orders").replace("{queue}", "orders-q").replace("{id}", "x").replace("{stage}", "s");
            (method.to_string(), concrete, Vec::new(), body)
        }
        RouteKey::Aws(op) => ("POST".to_string(), "/".to_string(), vec![("x-amz-target".to_string(), op.target())], body),
    }
}

#[tokio::test]
async fn every_route_needs_a_credential_and_a_large_enough_grant() {
    let app = app().await;
    let admin = app.token("admin", Grant::unlimited(Scope::Admin), None).await;
    let reader = app.token("reader", Grant::unlimited(Scope::Read), None).await;
    let operator = app.token("operator", Grant::unlimited(Scope::Operate), None).await;
    let limited = app
        .token("payments", Grant { scope: Scope::Admin, pipelines: patterns(&["payments-*"]), queues: patterns(&["payments-*"]) }, None)
        .await;
    let mut unrefusable = Vec::new();
    for key in every_route() {
        let rule = rule(key).unwrap_or_else(|| panic!("{key:?} has no access rule"));
        let changes = match key {
            RouteKey::Native(method, _) => method != "GET",
            RouteKey::Aws(op) => !(op.name().starts_with("Get") || op.name().starts_with("List")),
        };
        assert_eq!(rule.audited, changes, "{key:?}: a state-changing call is audited, a read is not");
        assert!(!changes || rule.scope >= Scope::Operate, "{key:?} changes state: it needs operate or admin");
        let (method, path, extra, body) = request_for(key);
        let with = |token: &str| {
            let mut h: Vec<(String, String)> = extra.clone();
            h.push(("authorization".to_string(), format!("Bearer {token}")));
            h
        };
        let call = |headers: Vec<(String, String)>| {
            let (method, path, body) = (method.clone(), path.clone(), body.clone());
            let app = &app;
            async move {
                let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                app.call(&method, &path, &h, &body).await
            }
        };
        if rule.touches == Touches::Open {
            assert_eq!(call(extra.clone()).await.0, StatusCode::OK, "{key:?} is open");
            continue;
        }
        let (status, body) = call(extra.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?} without a credential: {body}");
        let bogus = format!("rdv_{}", "0".repeat(64));
        assert_eq!(call(with(&bogus)).await.0, StatusCode::UNAUTHORIZED, "{key:?} with an unknown token");
        let (status, body) = call(with(&admin)).await;
        assert!(status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN, "{key:?} as admin: {status} {body}");
        let smaller = match rule.scope {
            Scope::Admin => Some(&operator),
            Scope::Operate => Some(&reader),
            Scope::Read => None,
        };
        if let Some(token) = smaller {
            let (status, body) = call(with(token)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{key:?} with a smaller scope: {body}");
        }
        let touches_names = !matches!(rule.touches, Touches::Fixed(Resource::Nothing));
        if touches_names {
            let (status, body) = call(with(&limited)).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{key:?} outside the token's prefixes: {body}");
            let aws = matches!(key, RouteKey::Aws(_));
            let code = if aws { body["__type"].as_str() } else { body["error"]["code"].as_str() };
            assert_eq!(code, Some("AccessDeniedException"), "{key:?}: {body}");
        }
        if smaller.is_none() && !touches_names {
            unrefusable.push(key);
        }
    }
    // Only these need read and touch no name: any credential may read them.
    assert_eq!(unrefusable, [RouteKey::Native("GET", "/openapi.json"), RouteKey::Native("GET", "/v1/cluster")]);
}

#[tokio::test]
async fn prefix_grants_allow_their_names_and_the_audit_log_names_the_principal() {
    let app = app().await;
    let admin = app.token("admin", Grant::unlimited(Scope::Admin), None).await;
    let nightly = app
        .token("nightly", Grant { scope: Scope::Operate, pipelines: patterns(&["payments-*"]), queues: patterns(&["payments-*"]) }, None)
        .await;
    let bearer = |t: &str| format!("Bearer {t}");
    let definition = json!({"name": "payments-eu", "stages": [{"name": "s", "actions": [{"name": "a", "noop": {}}]}]});
    let (status, body) = app.call("POST", "/v1/pipelines", &[("authorization", &bearer(&admin))], &definition).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) =
        app.call("POST", "/v1/pipelines/payments-eu/executions", &[("authorization", &bearer(&nightly))], &json!({})).await;
    assert!(status.is_success(), "{body}");
    let (status, _) = app
        .call("POST", "/v1/dlq/redrive", &[("authorization", &bearer(&nightly))], &json!({"queuePrefix": "payments-eu-", "dryRun": true}))
        .await;
    assert!(status.is_success(), "a prefix within the grant: {status}");
    let (status, body) =
        app.call("POST", "/v1/dlq/redrive", &[("authorization", &bearer(&nightly))], &json!({"queuePrefix": "pay", "dryRun": true})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a wider prefix: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("nightly is limited to queues payments-*"), "{body}");

    // A run is readable by a grant covering its queues (what `redrive dlq redrive` follows).
    let (status, run) =
        app.call("POST", "/v1/dlq/redrive", &[("authorization", &bearer(&nightly))], &json!({"queuePrefix": "payments-eu-"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let own = format!("/v1/dlq/redrives/{}", run["runId"].as_str().unwrap());
    let (status, body) = app.call("GET", &own, &[("authorization", &bearer(&nightly))], &Value::Null).await;
    assert_eq!(status, StatusCode::OK, "its own run: {body}");
    let (_, other) = app.call("POST", "/v1/dlq/redrive", &[("authorization", &bearer(&admin))], &json!({"queuePrefix": "orders-"})).await;
    let other = format!("/v1/dlq/redrives/{}", other["runId"].as_str().unwrap());
    assert_eq!(
        app.call("GET", &other, &[("authorization", &bearer(&nightly))], &Value::Null).await.0,
        StatusCode::FORBIDDEN,
        "another prefix's run"
    );
    assert_eq!(app.call("GET", &other, &[("authorization", &bearer(&admin))], &Value::Null).await.0, StatusCode::OK);

    let (status, audit) = app.call("GET", "/v1/audit", &[("authorization", &bearer(&admin))], &Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let entries = audit["entries"].as_array().unwrap();
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| (e["principal"].as_str().unwrap(), e["action"].as_str().unwrap(), e["target"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        seen,
        [
            ("admin", "POST /v1/dlq/redrive", "orders-*"),
            ("nightly", "POST /v1/dlq/redrive", "payments-eu-*"),
            ("nightly", "POST /v1/dlq/redrive", "payments-eu-*"),
            ("nightly", "POST /v1/pipelines/{name}/executions", "payments-eu"),
            ("admin", "POST /v1/pipelines", "payments-eu"),
        ],
        "refused calls are not audited; newest first"
    );
    assert!(!audit.to_string().contains(&nightly), "no token value in the audit log");
}

#[tokio::test]
async fn tokens_are_created_listed_revoked_and_expire() {
    let app = app().await;
    let admin = app.token("admin", Grant::unlimited(Scope::Admin), None).await;
    let auth = [("authorization", format!("Bearer {admin}"))];
    let h: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, created) =
        app.call("POST", "/v1/tokens", &h, &json!({"name": "ci", "scope": "read", "pipelines": ["payments-*"], "expiresIn": "1h"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let ci = created["token"].as_str().unwrap().to_string();
    assert_eq!(created["expiresAt"], "2026-01-01T01:00:00.000Z");
    let (status, body) = app.call("POST", "/v1/tokens", &h, &json!({"name": "ci", "scope": "read"})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = app.call("POST", "/v1/tokens", &h, &json!({"name": "x", "scope": "root", "queues": ["a*b"]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("allowed: read, operate, admin"), "{body}");
    let (_, list) = app.call("GET", "/v1/tokens", &h, &Value::Null).await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 2);
    assert!(
        !list.to_string().contains(&ci) && !list.to_string().contains(&redrive_api::auth::token::hash(&ci)),
        "neither value nor hash is listed"
    );

    let ci_auth = format!("Bearer {ci}");
    assert_eq!(app.call("GET", "/v1/pipelines/payments-a", &[("authorization", &ci_auth)], &Value::Null).await.0, StatusCode::NOT_FOUND);
    app.clock.advance(3_601_000);
    let (status, body) = app.call("GET", "/v1/pipelines/payments-a", &[("authorization", &ci_auth)], &Value::Null).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "expired: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");

    assert_eq!(app.call("DELETE", "/v1/tokens/ci", &h, &Value::Null).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.call("DELETE", "/v1/tokens/ci", &h, &Value::Null).await.0, StatusCode::NOT_FOUND);
    let (_, audit) = app.call("GET", "/v1/audit", &h, &Value::Null).await;
    let actions: Vec<(&str, u64)> =
        audit["entries"].as_array().unwrap().iter().map(|e| (e["action"].as_str().unwrap(), e["status"].as_u64().unwrap())).collect();
    assert_eq!(
        actions,
        [
            ("DELETE /v1/tokens/{name}", 404),
            ("DELETE /v1/tokens/{name}", 204),
            ("POST /v1/tokens", 400),
            ("POST /v1/tokens", 409),
            ("POST /v1/tokens", 201)
        ]
    );
    assert!(!audit.to_string().contains(&ci), "no token value in the audit log");
}

#[tokio::test]
async fn without_auth_everyone_is_anonymous_and_changes_are_still_audited() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("r.db"), SqliteOptions::default()).unwrap());
    let clock = Arc::new(ManualClock::new(Timestamp::from_unix_ms(1_767_225_600_000)));
    let (handle, _join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let service = Arc::new(Service::new(store.clone(), handle, clock.clone()));
    let app = App { router: redrive_api::server::app(service, 1024 * 1024), store, clock, _dir: dir };
    let definition = json!({"name": "p", "stages": [{"name": "s", "actions": [{"name": "a", "noop": {}}]}]});
    assert_eq!(app.call("POST", "/v1/pipelines", &[], &definition).await.0, StatusCode::CREATED);
    assert_eq!(app.call("GET", "/v1/pipelines/p", &[], &Value::Null).await.0, StatusCode::OK);
    let (status, audit) = app.call("GET", "/v1/audit", &[], &Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "reads are not audited: {audit}");
    assert_eq!((entries[0]["principal"].as_str(), entries[0]["target"].as_str()), (Some("anonymous"), Some("p")));
}

#[tokio::test]
async fn metrics_need_a_grant_not_limited_by_name_and_say_so() {
    let app = app().await;
    let scraper = app.token("prometheus", Grant::unlimited(Scope::Read), None).await;
    let limited = app.token("payments-read", Grant { scope: Scope::Read, pipelines: patterns(&["payments-*"]), queues: None }, None).await;
    let get = |token: String| {
        let router = app.router.clone();
        async move {
            let req = Request::builder().uri("/metrics").header("authorization", format!("Bearer {token}"));
            let response = router.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            let status = response.status();
            (status, String::from_utf8(axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap())
        }
    };
    assert_eq!(get(scraper).await.0, StatusCode::OK);
    let (status, body) = get(limited).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("payments-read is limited to pipeline payments-*; this touches every pipeline"), "{body}");
    assert!(body.contains("/metrics reports every pipeline and queue, so it needs a grant not limited by name"), "{body}");
}

/// The console's routes: its pages are classified like the API's (a page
/// without a rule is refused to everyone, so a new one fails its own tests
/// under `auth:`), a browser without a credential is sent to the login page,
/// and only the login, logout, assets and redirects are open.
#[tokio::test]
async fn console_pages_need_a_credential_and_a_large_enough_grant() {
    let app = app().await;
    let reader = app.token("reader", Grant::unlimited(Scope::Read), None).await;
    let limited = app
        .token("payments", Grant { scope: Scope::Admin, pipelines: patterns(&["payments-*"]), queues: patterns(&["payments-*"]) }, None)
        .await;
    let console: Vec<&redrive_api::auth::rules::Rule> = redrive_api::auth::rules::RULES
        .iter()
        .filter(|r| matches!(r.key, RouteKey::Native(_, p) if p == "/" || p.starts_with("/console")))
        .collect();
    let open: Vec<RouteKey> = console.iter().filter(|r| r.touches == Touches::Open).map(|r| r.key).collect();
    assert_eq!(
        open,
        [
            RouteKey::Native("GET", "/"),
            RouteKey::Native("GET", "/console/"),
            RouteKey::Native("GET", "/console/login"),
            RouteKey::Native("POST", "/console/login"),
            RouteKey::Native("POST", "/console/logout"),
            RouteKey::Native("GET", "/console/assets/console.js"),
            RouteKey::Native("GET", "/console/assets/console.css"),
        ]
    );
    for rule in console.iter().filter(|r| r.touches != Touches::Open) {
        let RouteKey::Native(method, _) = rule.key else { unreachable!() };
        assert_eq!((method, rule.scope, rule.audited), ("GET", Scope::Read, false), "{:?}: console pages only read", rule.key);
        let (_, path, _, _) = request_for(rule.key);
        let send = |headers: Vec<(&'static str, String)>| {
            let path = path.clone();
            let router = app.router.clone();
            async move {
                let mut req = Request::builder().method("GET").uri(&path);
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                let response = router.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
                let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_string());
                (response.status(), location)
            }
        };
        let html = ("accept", "text/html".to_string());
        let (status, location) = send(vec![html.clone()]).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{path}: a browser without a credential");
        assert_eq!(location.unwrap(), format!("/console/login?next={path}"));
        assert_eq!(send(vec![]).await.0, StatusCode::UNAUTHORIZED, "{path}: a script without a credential");
        let (status, _) = send(vec![html.clone(), ("authorization", format!("Bearer {reader}"))]).await;
        assert!(status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN, "{path} as a reader: {status}");
        let (status, _) = send(vec![html, ("authorization", format!("Bearer {limited}"))]).await;
        if rule.touches == Touches::Fixed(Resource::Nothing) {
            // A listing: open to a limited token, showing only what it covers.
            assert_eq!(status, StatusCode::OK, "{path}: a listing a name-limited token may open");
        } else {
            assert_eq!(status, StatusCode::FORBIDDEN, "{path} outside the token's prefixes");
        }
    }
}
