//! The web console through real HTTP: an in-process server on a loopback port, a
//! real SQLite store and engine on a virtual clock (a retry policy's timer never
//! fires unless the test moves it). Each page's status code and HTML, the Retry
//! control's previews and refusals, and escaping of user-controlled text.

use redrive_api::auth::AuthConfig;
use redrive_core::auth::{Grant, Scope};
use redrive_engine::service::Service;
use redrive_engine::{Driver, DriverConfig, ManualClock};
use redrive_store::{SqliteOptions, SqliteStore, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Server {
    url: String,
    client: reqwest::Client,
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    /// Sent by the helpers below as `Authorization: Bearer …` (an admin token
    /// on a server with `auth:`).
    bearer: Option<String>,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn server() -> Server {
    server_with(None).await
}

/// A server with `auth:` (no access keys); its helpers send an admin token.
async fn server_with_auth() -> Server {
    let mut s = server_with(Some(Arc::new(AuthConfig::default()))).await;
    s.bearer = Some(s.token("admin", Grant::unlimited(Scope::Admin)).await);
    s
}

async fn server_with(auth: Option<Arc<AuthConfig>>) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("r.db"), SqliteOptions::default()).unwrap());
    let clock = Arc::new(ManualClock::new(redrive_core::time::Timestamp::from_unix_ms(1_767_225_600_000)));
    let (handle, _join) = Driver::spawn(store.clone(), clock.clone(), DriverConfig::default());
    let service = Arc::new(Service::new(store.clone(), handle, clock.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = redrive_api::server::app_with_auth(service, 1024 * 1024, auth);
    tokio::spawn(redrive_api::server::serve_router(app, listener, redrive_api::server::HttpLimits::default(), async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Server { url, client, store, clock, bearer: None, _dir: dir, _shutdown: tx }
}

impl Server {
    /// A console page: (status, content type, body).
    /// A request with the helpers' bearer token, if any.
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.url));
        match &self.bearer {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Stores a token directly (as `redrive token create --db` does); returns its value.
    async fn token(&self, name: &str, grant: Grant) -> String {
        let req = redrive_wire::CreateTokenRequest {
            name: name.into(),
            scope: grant.scope.to_string(),
            pipelines: grant.pipelines.map(|ps| ps.iter().map(|p| p.as_str().to_string()).collect()),
            queues: grant.queues.map(|ps| ps.iter().map(|p| p.as_str().to_string()).collect()),
            expires_in: None,
        };
        let now = redrive_engine::Clock::now(self.clock.as_ref());
        let (value, record) = redrive_api::auth::admin::new_token(&req, now).unwrap();
        self.store.create_token(record).await.unwrap();
        value
    }

    async fn page(&self, path: &str) -> (u16, String, String) {
        let r = self.request(reqwest::Method::GET, path).header("Accept", "text/html").send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        (status, ct, r.text().await.unwrap())
    }

    async fn html(&self, path: &str) -> String {
        let (status, ct, body) = self.page(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        assert!(ct.starts_with("text/html"), "{ct}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.request(reqwest::Method::POST, path).json(&body).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn get_json(&self, path: &str) -> Value {
        self.request(reqwest::Method::GET, path).send().await.unwrap().json().await.unwrap()
    }

    async fn start(&self, pipeline: &str, input: Value) -> String {
        let (st, v) = self.post(&format!("/v1/pipelines/{pipeline}/executions"), json!({"input": input})).await;
        assert_eq!(st, 201, "{v}");
        v["pipelineExecutionId"].as_str().unwrap().to_string()
    }

    /// Polls until `done` holds of the execution (deadline 30 s: commands are real processes).
    async fn wait_execution(&self, pipeline: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.get_json(&format!("/v1/pipelines/{pipeline}/executions/{id}")).await;
            if done(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "execution never got there: {v}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Build has a failing action (Compile) and a succeeding one (Lint).
fn failing_pipeline(name: &str) -> Value {
    json!({"name": name, "stages": [
        {"name": "Build", "actions": [
            {"name": "Compile", "command": ["sh", "-c", "echo '<b>bad</b>' >&2; exit 3"]},
            {"name": "Lint", "command": ["true"]}
        ]},
        {"name": "Deploy", "actions": [{"name": "Ship", "command": ["true"]}]}
    ]})
}

async fn failed_execution(s: &Server, name: &str, input: Value) -> String {
    assert_eq!(s.post("/v1/pipelines", failing_pipeline(name)).await.0, 201);
    let id = s.start(name, input).await;
    s.wait_execution(name, &id, |v| v["status"] == "Failed").await;
    id
}

#[tokio::test]
async fn a_browser_at_the_root_is_sent_to_the_console_and_other_clients_keep_the_protocol() {
    let s = server().await;
    let (status, _, _) = s.page("/").await;
    assert_eq!(status, 303);
    let r = s.client.get(format!("{}/", s.url)).header("Accept", "text/html").send().await.unwrap();
    assert_eq!(r.headers()["location"], "/console");
    let r = s.client.get(format!("{}/", s.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405, "a non-browser GET / is the AWS protocol's 405");
    assert!(r.headers().contains_key("x-amzn-ErrorType"));
    let r = s.client.get(format!("{}/console/", s.url)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 308);
    for (path, ct) in [("/console/assets/console.js", "text/javascript"), ("/console/assets/console.css", "text/css")] {
        let (status, got, body) = s.page(path).await;
        assert_eq!(status, 200, "{path}");
        assert!(got.starts_with(ct), "{path}: {got}");
        assert!(body.len() > 500, "{path} is served whole from the binary");
    }
    let list = s.html("/console").await;
    assert!(list.contains("No pipelines yet"), "{list}");
}

#[tokio::test]
async fn the_state_page_shows_what_each_retry_mode_would_rerun_and_the_list_badges_the_failed_stage() {
    let s = server().await;
    let id = failed_execution(&s, "web", json!({})).await;
    let list = s.html("/console").await;
    assert!(list.contains(r#"href="/console/pipelines/web""#), "{list}");
    assert!(list.contains("✖ Build"), "failed-stage badge: {list}");

    let page = s.html("/console/pipelines/web").await;
    assert!(page.contains(r#"data-poll="/console/pipelines/web/board""#), "the board is live");
    let retry_url = format!("/v1/pipelines/web/executions/{id}/stages/Build/retry");
    assert!(page.contains(&format!(r#"data-post="{retry_url}""#)), "{page}");
    assert!(page.contains(r#"id="tip-Build-FAILED_ACTIONS">Would re-run: Compile</span>"#), "{page}");
    assert!(page.contains(r#"id="tip-Build-ALL_ACTIONS">Would re-run: Compile, Lint</span>"#), "{page}");
    assert!(page.contains("Action.FAILED"), "the last exception type: {page}");
    assert!(!page.contains("tip-Deploy"), "a stage that never ran has no Retry");

    // The board fragment is the same without the layout.
    let board = s.html("/console/pipelines/web/board").await;
    assert!(board.contains("Would re-run: Compile") && !board.contains("<html"), "{board}");

    // Retrying through the API the console calls: the stage shows it in progress,
    // and both modes are then refused with the reason.
    let (st, v) = s.post(&retry_url, json!({"retryMode": "FAILED_ACTIONS"})).await;
    assert_eq!(st, 200, "{v}");
    s.wait_execution("web", &id, |v| v["status"] == "Failed" && v["stages"][0]["retryInProgress"] == false).await;
    let page = s.html("/console/pipelines/web").await;
    assert!(page.contains("2 in all"), "Compile ran twice: {page}");
}

#[tokio::test]
async fn a_refused_retry_is_a_disabled_button_with_codepipelines_reason() {
    let s = server().await;
    failed_execution(&s, "changed", json!({})).await;
    let mut v2 = failing_pipeline("changed");
    v2["stages"][1]["actions"][0]["name"] = json!("Ship2");
    let r = s.client.put(format!("{}/v1/pipelines/changed", s.url)).json(&v2).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = s.html("/console/pipelines/changed").await;
    assert!(!page.contains("data-post="), "no enabled Retry: {page}");
    assert_eq!(page.matches(r#" disabled data-mode="#).count(), 2, "{page}");
    assert!(page.contains("exit code 3: &lt;b&gt;bad&lt;/b&gt;"), "a command's stderr is text: {page}");
    assert!(page.contains("StageNotRetryableException"), "{page}");
    assert!(page.contains("the pipeline was updated to version 2"), "{page}");
}

#[tokio::test]
async fn a_waiting_action_shows_its_countdown_and_how_the_delay_was_worked_out() {
    let s = server().await;
    let def = json!({"name": "waits", "stages": [{"name": "Only", "actions": [{
        "name": "Flaky",
        "noop": {"failFirst": 5, "failWith": "Action.FAILED"},
        "retryPolicies": [{"exceptionType": ["Action.FAILED"], "intervalSeconds": 30, "backoffRate": 2, "maxAttempts": 3, "maxIntervalSeconds": 600}]
    }]}]});
    assert_eq!(s.post("/v1/pipelines", def).await.0, 201);
    let id = s.start("waits", json!({})).await;
    // The virtual clock never moves: the retry stays due in 30 s.
    s.wait_execution("waits", &id, |v| v["stages"][0]["actions"][0]["status"] == "WaitingRetry").await;
    let page = s.html("/console/pipelines/waits").await;
    assert!(page.contains("WaitingRetry"), "{page}");
    assert!(page.contains(r#"class="countdown" data-due="2026-01-01T00:00:30.000Z""#), "{page}");
    let board = s.html("/console/pipelines/waits/board").await;
    assert_eq!(board, s.html("/console/pipelines/waits/board").await, "the board does not change while nothing happens");
    for part in [
        "policy #1",
        "interval 30s backoff ×2 maxAttempts 3",
        "#1 under this policy",
        "30s × 2^0",
        "Cap",
        "10m",
        "Jitter draw",
        "NONE",
        "no hint",
    ] {
        assert!(page.contains(part), "{part:?} missing: {page}");
    }
    // The execution page: the timeline row with its decision.
    let exec = s.html(&format!("/console/pipelines/waits/executions/{id}")).await;
    assert!(exec.contains("retry #1 under policy #1 after 30s"), "{exec}");
    assert!(exec.contains(">initial<"), "{exec}");
    assert!(exec.contains("data-post=\"/v1/pipelines/waits/executions/"), "an unfinished execution offers Stop: {exec}");
}

#[tokio::test]
async fn executions_are_filtered_by_status_and_their_pages_show_attempts_input_and_errors() {
    let s = server().await;
    let id = failed_execution(&s, "hist", json!({"note": "<script>alert(1)</script>"})).await;
    let failed = s.html("/console/pipelines/hist/executions?status=Failed").await;
    assert!(failed.contains(&id), "{failed}");
    let ok = s.html("/console/pipelines/hist/executions?status=Succeeded").await;
    assert!(!ok.contains(&id) && ok.contains("No executions match"), "{ok}");
    let (status, _, body) = s.page("/console/pipelines/hist/executions?status=Bogus").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("is not one of InProgress"), "{body}");

    let exec = s.html(&format!("/console/pipelines/hist/executions/{id}")).await;
    assert!(exec.contains("gave up: no retry policy matches this exception type"), "{exec}");
    assert!(exec.contains("Action.FAILED"), "{exec}");
    assert!(!exec.contains("<script>alert"), "the input is escaped");
    assert!(exec.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{exec}");
    assert!(!exec.contains("data-post="), "a finished execution offers no Stop");
}

#[tokio::test]
async fn hostile_names_render_as_text_and_errors_have_the_apis_status() {
    let s = server().await;
    let (status, ct, body) = s.page("/console/pipelines/%3Cscript%3Ealert(1)%3C%2Fscript%3E").await;
    assert_eq!(status, 400, "{body}");
    assert!(ct.starts_with("text/html"));
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{body}");
    let (status, _, body) = s.page("/console/pipelines/missing").await;
    assert_eq!(status, 404);
    assert!(body.contains("PipelineNotFoundException"), "{body}");
    let (status, _, _) = s.page("/console/dlq/queues/missing").await;
    assert_eq!(status, 404);
    let (status, _, _) = s.page("/console/pipelines/x/executions?next=bogus").await;
    assert_eq!(status, 400);
    let (status, ct, body) = s.page("/console/dlq?bogus=%3Cscript%3E").await;
    assert_eq!(status, 400, "{body}");
    assert!(ct.starts_with("text/html") && body.contains("unknown field"), "{body}");
}

#[tokio::test]
async fn dead_letter_pages_show_queues_entries_and_runs() {
    let s = server().await;
    let def = json!({"name": "orders", "executionMode": "PARALLEL", "deadLetterQueue": "orders-dlq", "stages": [{"name": "Charge", "actions": [{
        "name": "Card", "noop": {"failFirst": 1000, "failWith": "Card.DECLINED"},
        "retryPolicies": [{"exceptionType": ["Card.DECLINED"], "maxAttempts": 0}]
    }]}]});
    let (st, v) = s.post("/v1/pipelines", def).await;
    assert_eq!(st, 201, "{v}");
    for _ in 0..3 {
        let id = s.start("orders", json!({})).await;
        s.wait_execution("orders", &id, |v| v["status"] == "Failed").await;
    }
    let queues = s.html("/console/dlq").await;
    assert!(queues.contains(r#"href="/console/dlq/queues/orders-dlq""#), "{queues}");
    assert!(queues.contains(r#"<td class="num">3</td>"#), "depth 3: {queues}");

    let q = s.html("/console/dlq/queues/orders-dlq").await;
    assert!(q.contains(r#"<strong id="match-count">3</strong>"#), "{q}");
    assert!(q.contains("Card.DECLINED"), "the exception type: {q}");
    let filtered = s.html("/console/dlq/queues/orders-dlq?type=Other&source=&olderThan=").await;
    assert!(filtered.contains(r#"<strong id="match-count">0</strong>"#), "{filtered}");
    assert!(filtered.contains(r#"data-filters="{&quot;type&quot;:&quot;Other&quot;}""#), "the redrive uses the filters: {filtered}");
    let (status, _, _) = s.page("/console/dlq/queues/orders-dlq?olderThan=soon").await;
    assert_eq!(status, 400);

    let entries = s.get_json("/v1/dlq/queues/orders-dlq/entries").await;
    let entry_id = entries["entries"][0]["entryId"].as_str().unwrap().to_string();
    let entry = s.html(&format!("/console/dlq/entries/{entry_id}")).await;
    assert!(entry.contains("Card.DECLINED") && entry.contains("0 of "), "{entry}");

    let (st, run) = s.post("/v1/dlq/queues/orders-dlq/redrive", json!({"rate": "unlimited"})).await;
    assert_eq!(st, 202, "{run}");
    let run_id = run["runId"].as_str().unwrap();
    let page = s.html(&format!("/console/dlq/runs/{run_id}")).await;
    assert!(page.contains(&format!(r#"data-poll="/console/dlq/runs/{run_id}/live""#)), "{page}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = s.html(&format!("/console/dlq/runs/{run_id}/live")).await;
        if live.contains("SUCCEEDED") {
            assert!(live.contains("3 of 3</strong> processed"), "{live}");
            break;
        }
        assert!(Instant::now() < deadline, "the run never finished: {live}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let q = s.html("/console/dlq/queues/orders-dlq").await;
    assert!(q.contains(&format!("/console/dlq/runs/{run_id}")), "the queue lists its run: {q}");
    // The counts, entries and runs are a live fragment (refreshed after a redrive
    // or purge without a reload), at the same filters and page.
    assert!(q.contains(r#"data-poll="/console/dlq/queues/orders-dlq/live?""#), "{q}");
    let filtered = s.html("/console/dlq/queues/orders-dlq?type=Card.DECLINED").await;
    assert!(filtered.contains(r#"data-poll="/console/dlq/queues/orders-dlq/live?type=Card.DECLINED&amp;""#), "{filtered}");
    let live = s.html("/console/dlq/queues/orders-dlq/live").await;
    assert!(!live.contains("<html") && live.contains(&format!("/console/dlq/runs/{run_id}")), "{live}");
    assert!(live.contains("data-since="), "ages tick in the browser, the fragment does not change with time: {live}");
    let redriven = |html: &str| html.matches(r#"<td class="num">1 of "#).count();
    assert_eq!(redriven(&live), 3, "each entry redriven once (they failed again): {live}");
    let (st, v) = s.post("/v1/dlq/queues/orders-dlq/purge", json!({})).await;
    assert_eq!(st, 200, "{v}");
    let live = s.html("/console/dlq/queues/orders-dlq/live").await;
    assert!(live.contains(r#"<strong id="match-count">0</strong>"#) && live.contains("No entries match."), "{live}");
    let (st, v) = s.post(&format!("/v1/dlq/redrives/{run_id}/abort"), json!({})).await;
    assert_eq!((st, v["error"]["code"].as_str()), (409, Some("ConflictException")), "a finished run cannot be aborted: {v}");
    assert!(!page.contains("/abort") || page.contains("RUNNING"), "Abort is offered only while running");
}

#[tokio::test]
async fn an_aborted_redrive_starts_no_more_entries_and_ends_aborted() {
    let s = server().await;
    let def = json!({"name": "slow", "executionMode": "PARALLEL", "deadLetterQueue": "slow-dlq", "stages": [{"name": "S", "actions": [{
        "name": "A", "noop": {"failFirst": 1000, "failWith": "Action.FAILED"},
        "retryPolicies": [{"exceptionType": ["Action.FAILED"], "maxAttempts": 0}]
    }]}]});
    assert_eq!(s.post("/v1/pipelines", def).await.0, 201);
    for _ in 0..5 {
        let id = s.start("slow", json!({})).await;
        s.wait_execution("slow", &id, |v| v["status"] == "Failed").await;
    }
    // One entry a minute (real time): the first starts at once, the rest wait.
    let (st, run) = s.post("/v1/dlq/queues/slow-dlq/redrive", json!({"rate": "1/m"})).await;
    assert_eq!(st, 202, "{run}");
    let run_id = run["runId"].as_str().unwrap().to_string();
    let live = s.html(&format!("/console/dlq/runs/{run_id}/live")).await;
    assert!(live.contains(&format!(r#"data-post="/v1/dlq/redrives/{run_id}/abort""#)), "Abort while running: {live}");
    let (st, v) = s.post(&format!("/v1/dlq/redrives/{run_id}/abort"), json!({})).await;
    assert_eq!(st, 202, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let v = s.get_json(&format!("/v1/dlq/redrives/{run_id}")).await;
        if v["status"] != "RUNNING" {
            break v;
        }
        assert!(Instant::now() < deadline, "the run never stopped: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(done["status"], "ABORTED", "{done}");
    assert!(done["summary"]["processed"].as_u64().unwrap() <= 1, "no entry started after the abort: {done}");
    let live = s.html(&format!("/console/dlq/runs/{run_id}/live")).await;
    assert!(live.contains("ABORTED") && !live.contains("/abort"), "{live}");
    let (_, v) = s.post(&format!("/v1/dlq/redrives/{run_id}/abort"), json!({})).await;
    assert!(v["error"]["message"].as_str().unwrap().contains("already ABORTED"), "{v}");
}

#[tokio::test]
async fn the_functions_page_asks_for_a_name_and_lists_none_for_an_unknown_one() {
    let s = server().await;
    let page = s.html("/console/functions").await;
    assert!(page.contains(r#"name="name""#), "{page}");
    let page = s.html("/console/functions?name=charge").await;
    assert!(page.contains("No executions on this page"), "{page}");
    let (status, _, _) = s.page("/console/functions?name=bad%20name").await;
    assert_eq!(status, 400);
}

// ---- the console under auth: ---------------------------------------------------

/// What a browser holds: the session cookie, sent by hand (reqwest keeps no jar here).
struct Browser<'a> {
    s: &'a Server,
    cookie: String,
}

impl Server {
    /// `POST /console/login` with `token`: (status, Set-Cookie, body).
    async fn login(&self, token: &str) -> (u16, Option<String>, Value) {
        let r = self.client.post(format!("{}/console/login", self.url)).json(&json!({"token": token})).send().await.unwrap();
        let status = r.status().as_u16();
        let cookie = r.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_string());
        (status, cookie, r.json().await.unwrap_or(Value::Null))
    }

    async fn browser(&self, token: &str) -> Browser<'_> {
        let (status, cookie, body) = self.login(token).await;
        assert_eq!(status, 200, "{body}");
        let cookie = cookie.expect("a session cookie");
        Browser { s: self, cookie: cookie.split(';').next().unwrap().to_string() }
    }
}

impl Browser<'_> {
    async fn get(&self, path: &str, script: bool) -> reqwest::Response {
        let mut r = self.s.client.get(format!("{}{path}", self.s.url)).header("Accept", "text/html").header("Cookie", &self.cookie);
        if script {
            r = r.header("X-Redrive-Console", "1");
        }
        r.send().await.unwrap()
    }

    async fn page(&self, path: &str) -> (u16, String) {
        let r = self.get(path, false).await;
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// A JSON POST with the cookie, from the console's script (`script`) or not.
    async fn post(&self, path: &str, body: Value, script: bool) -> (u16, Value) {
        let mut r = self.s.client.post(format!("{}{path}", self.s.url)).header("Cookie", &self.cookie).json(&body);
        if script {
            r = r.header("X-Redrive-Console", "1");
        }
        let r = r.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn under_auth_a_browser_logs_in_once_and_its_session_cookie_works_with_the_csrf_header() {
    let s = server_with_auth().await;
    let id = failed_execution(&s, "web", json!({})).await;
    let ops = s.token("ops", Grant::unlimited(Scope::Operate)).await;

    // Without a credential: a browser opening a page is sent to the login page;
    // the API and the console's script get 401.
    let anon = |path: &str| s.client.get(format!("{}{path}", s.url)).header("Accept", "text/html");
    let r = anon("/console/pipelines/web").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(r.headers()["location"], "/console/login?next=/console/pipelines/web");
    let r = anon("/console/pipelines/web/board").header("X-Redrive-Console", "1").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "the script's poll is not redirected");
    assert_eq!(s.client.get(format!("{}/v1/pipelines", s.url)).send().await.unwrap().status().as_u16(), 401);
    let r = anon("/console/login?next=/console/pipelines/web").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let login = r.text().await.unwrap();
    assert!(login.contains(r#"<form id="login" data-next="/console/pipelines/web">"#), "{login}");
    assert!(login.contains(r#"type="password""#), "{login}");
    let other_site = anon("/console/login?next=//evil.example/").send().await.unwrap().text().await.unwrap();
    assert!(other_site.contains(r#"data-next="/console""#), "never sent to another site: {other_site}");

    // A bad token: 401, no cookie.
    let (status, cookie, body) = s.login(&format!("rdv_{}", "0".repeat(64))).await;
    assert_eq!((status, cookie), (401, None), "{body}");
    assert_eq!(s.login("not a token").await.0, 401);

    // A good one: a session cookie with its attributes, not the token.
    let (status, cookie, body) = s.login(&ops).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"principal": "ops", "scope": "operate"}));
    let cookie = cookie.unwrap();
    let (pair, attributes) = cookie.split_once("; ").unwrap();
    assert_eq!(attributes, "HttpOnly; SameSite=Strict; Path=/; Max-Age=43200", "plain HTTP: not Secure");
    let value = pair.strip_prefix("redrive_session=").unwrap();
    assert_eq!(value.len(), 64);
    assert!(!ops.contains(value));
    let b = Browser { s: &s, cookie: pair.to_string() };

    let (status, page) = b.page("/console/pipelines/web").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Signed in as <strong>ops</strong> (operate scope)"), "{page}");
    let retry = format!("/v1/pipelines/web/executions/{id}/stages/Build/retry");
    assert!(page.contains(&format!(r#"data-post="{retry}""#)), "an enabled Retry: {page}");

    // A state change by cookie needs the console's header (CSRF defence).
    let (status, body) = b.post(&retry, json!({"retryMode": "FAILED_ACTIONS"}), false).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("X-Redrive-Console"), "{body}");
    let (status, body) = b.post(&retry, json!({"retryMode": "FAILED_ACTIONS"}), true).await;
    assert_eq!(status, 200, "{body}");
    s.wait_execution("web", &id, |v| v["status"] == "Failed" && v["stages"][0]["retryInProgress"] == false).await;

    // Logout ends the session and deletes the cookie.
    let r = s.client.post(format!("{}/console/logout", s.url)).header("Cookie", &b.cookie).json(&json!({})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers()["set-cookie"].to_str().unwrap().starts_with("redrive_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"));
    assert_eq!(b.get("/console", false).await.status().as_u16(), 303, "logged out");
    assert_eq!(b.post(&retry, json!({"retryMode": "ALL_ACTIONS"}), true).await.0, 401);

    // The audit log names the token, never its value or the session.
    let audit = s.get_json("/v1/audit").await;
    let seen: Vec<(&str, &str)> =
        audit["entries"].as_array().unwrap().iter().map(|e| (e["principal"].as_str().unwrap(), e["action"].as_str().unwrap())).collect();
    assert_eq!(
        &seen[..3],
        [
            ("ops", "POST /console/logout"),
            ("ops", "POST /v1/pipelines/{name}/executions/{id}/stages/{stage}/retry"),
            ("ops", "POST /console/login")
        ],
        "{audit}"
    );
    assert!(!audit.to_string().contains(&ops) && !audit.to_string().contains(value));
}

#[tokio::test]
async fn a_read_session_sees_disabled_buttons_and_ends_when_its_token_is_revoked_or_idle() {
    let s = server_with_auth().await;
    let id = failed_execution(&s, "web", json!({})).await;
    let reader = s.token("reader", Grant::unlimited(Scope::Read)).await;
    let b = s.browser(&reader).await;
    let (status, page) = b.page("/console/pipelines/web").await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains("data-post="), "no enabled Retry: {page}");
    assert_eq!(page.matches(r#" disabled data-mode="#).count(), 2, "{page}");
    assert!(page.contains("AccessDeniedException</strong>: reader has scope read; this needs operate"), "{page}");
    let (status, page) = b.page(&format!("/console/pipelines/web/executions/{id}")).await;
    assert_eq!(status, 200, "{page}");
    let retry = format!("/v1/pipelines/web/executions/{id}/stages/Build/retry");
    let (status, body) = b.post(&retry, json!({"retryMode": "FAILED_ACTIONS"}), true).await;
    assert_eq!(status, 403, "the API refuses it too: {body}");
    assert_eq!(body["error"]["code"], "AccessDeniedException");

    // Idle for an hour: the session ends.
    let idle = s.browser(&reader).await;
    s.clock.advance(redrive_core::limits::CONSOLE_SESSION_IDLE_MS - 1000);
    assert_eq!(b.page("/console").await.0, 200, "b was used within the hour");
    s.clock.advance(1000);
    assert_eq!(idle.get("/console", true).await.status().as_u16(), 401, "idle for an hour");

    // Revoking the token ends its sessions at once.
    let r = s.request(reqwest::Method::DELETE, "/v1/tokens/reader").send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = b.get("/console", false).await;
    assert_eq!(r.status().as_u16(), 303, "revoked");
    assert_eq!(b.get("/console/pipelines/web/board", true).await.status().as_u16(), 401);
}

#[tokio::test]
async fn an_attempt_held_by_an_open_breaker_says_so_on_the_board_and_in_the_api() {
    let s = server().await;
    let def = json!({"name": "held", "dependencies": [{"name": "svc", "circuitBreaker": {"failureThreshold": 1, "coolDown": "1h"}}],
        "stages": [{"name": "Only", "actions": [{
            "name": "Call",
            "noop": {"failFirst": 5, "failWith": "Step.SERVICE_FAULT"},
            "dependency": "svc",
            "retryPolicies": [{"exceptionType": ["Step.SERVICE_FAULT"], "intervalSeconds": 0, "maxAttempts": 3}]
    }]}]});
    let (status, body) = s.post("/v1/pipelines", def).await;
    assert_eq!(status, 201, "{body}");
    let id = s.start("held", json!({})).await;
    // The first failure opens the breaker; the retry, due at once, is held for the cool-down.
    let v = s.wait_execution("held", &id, |v| v["stages"][0]["actions"][0]["held"].is_object()).await;
    let action = &v["stages"][0]["actions"][0];
    assert_eq!(action["held"]["reason"], "breaker-open", "{action}");
    assert_eq!((action["status"].as_str(), action["attempt"].as_u64()), (Some("WaitingRetry"), Some(1)), "{action}");
    assert_eq!(action["nextAttemptAt"], "2026-01-01T01:00:00.000Z", "held until the cool-down ends: {action}");
    let page = s.html("/console/pipelines/held").await;
    assert!(page.contains("Held by dependency <strong>svc</strong> (circuit breaker open)"), "{page}");
    let deps = s.get_json("/v1/dependencies/svc").await;
    assert_eq!((deps["breaker"]["state"].as_str(), deps["attemptsHeld"].as_u64()), (Some("open"), Some(1)), "{deps}");
    let ledger = s.get_json(&format!("/v1/pipelines/held/action-executions?executionId={id}")).await;
    let statuses: Vec<&str> = ledger["actionExecutions"].as_array().unwrap().iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["DEFERRED", "FAILED"], "newest first: {ledger}");
}

#[tokio::test]
async fn a_paused_execution_is_badged_listed_and_offers_resume_and_fail() {
    let s = server().await;
    let def = json!({"name": "halt", "executionMode": "PARALLEL", "stages": [{"name": "S", "actions": [
        {"name": "A", "command": ["false"], "onExhausted": "PAUSE", "retryPolicies": [{"exceptionType": ["Action.FAILED"], "maxAttempts": 0}]}
    ]}]});
    assert_eq!(s.post("/v1/pipelines", def).await.0, 201);
    let id = s.start("halt", json!({})).await;
    s.wait_execution("halt", &id, |v| v["status"] == "Paused").await;
    let list = s.html("/console/pipelines/halt/executions?status=Paused").await;
    assert!(list.contains(&id) && list.contains("s-paused"), "{list}");
    let exec = s.html(&format!("/console/pipelines/halt/executions/{id}")).await;
    for op in ["resume", "fail", "stop"] {
        assert!(exec.contains(&format!(r#"data-post="/v1/pipelines/halt/executions/{id}/{op}""#)), "{op}: {exec}");
    }
    assert!(exec.contains("⏸"), "an icon beside the word: {exec}");
    // The buttons' requests: fail works once, then the execution is Failed and offers neither.
    let (st, v) = s.post(&format!("/v1/pipelines/halt/executions/{id}/fail"), json!({})).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s.post(&format!("/v1/pipelines/halt/executions/{id}/resume"), json!({})).await;
    assert_eq!((st, v["error"]["message"].as_str()), (409, Some("the execution is not paused (it is Failed)")), "{v}");
    let exec = s.html(&format!("/console/pipelines/halt/executions/{id}")).await;
    assert!(!exec.contains("data-post="), "{exec}");
}

#[tokio::test]
async fn a_name_limited_session_lands_on_listings_of_what_its_grant_covers() {
    let s = server_with_auth().await;
    failed_execution(&s, "payments-a", json!({})).await;
    failed_execution(&s, "web", json!({})).await;
    let limits = |names: &[&str]| Some(names.iter().map(|n| redrive_core::auth::NamePattern::parse(n).unwrap()).collect());
    let token =
        s.token("payments", Grant { scope: Scope::Read, pipelines: limits(&["payments-*"]), queues: limits(&["payments-*"]) }).await;
    let b = s.browser(&token).await;
    let (status, page) = b.page("/console").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("/console/pipelines/payments-a"), "its own pipeline is listed: {page}");
    assert!(!page.contains("/console/pipelines/web"), "another pipeline is not: {page}");
    assert!(page.contains("pipelines payments-*"), "the page says what it is limited to: {page}");
    let (status, page) = b.page("/console/dlq").await;
    assert_eq!(status, 200, "{page}");
    let (status, _) = b.page("/console/pipelines/web").await;
    assert_eq!(status, 403, "a page outside the grant stays refused");
    let (status, page) = b.page("/console/functions?name=web").await;
    assert_eq!(status, 403, "{page}");
    // An unlimited reader sees both.
    let reader = s.token("reader", Grant::unlimited(Scope::Read)).await;
    let (_, page) = s.browser(&reader).await.page("/console").await;
    assert!(page.contains("/console/pipelines/payments-a") && page.contains("/console/pipelines/web"), "{page}");
}
