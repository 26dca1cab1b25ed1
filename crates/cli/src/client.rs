//! A small typed client of the native REST API of `redrive server` (`/v1/...`).
//!
//! One function per route; requests are `redrive-wire` request types and each
//! answer is deserialized into its `redrive-wire` response type, or a
//! [`ClientError`]: the server's own error (`{"error": {"code", "message",
//! "problems"?}}`) as an [`ApiError`], or a transport problem.

use redrive_wire as w;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// Default server, as `redrive server` listens by default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7878";
/// Every request, connection included, must complete within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An error the server answered with.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The whole error body (`--output json` prints it).
    pub body: w::ErrorResponse,
}

impl ApiError {
    /// CodePipeline-style exception name, e.g. `PipelineNotFoundException`.
    pub fn code(&self) -> &str {
        &self.body.error.code
    }

    pub fn message(&self) -> &str {
        &self.body.error.message
    }

    /// Definition problems (`InvalidStructureException`).
    pub fn problems(&self) -> &[w::Problem] {
        self.body.error.problems.as_deref().unwrap_or_default()
    }
}

#[derive(Debug)]
pub enum ClientError {
    /// No HTTP answer: connection refused, DNS, TLS, timeout.
    Unreachable { server: String, detail: String },
    /// The server answered with an error.
    Api(ApiError),
    /// The server answered with something that is not the API's JSON.
    BadResponse { server: String, detail: String },
}

pub type Result<T> = std::result::Result<T, ClientError>;

pub struct Client {
    base: reqwest::Url,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer <token>` on every request.
    token: Option<String>,
}

/// `url` with any user name and password removed, for messages.
pub fn redact(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_username("");
        let _ = u.set_password(None);
    }
    let s = u.to_string();
    // `Url` always shows a path; `http://host:port/` reads better without it.
    if u.path() == "/" && u.query().is_none() { s.trim_end_matches('/').to_string() } else { s }
}

impl Client {
    /// A client of the server at `server` (`http://` or `https://`; `host:port` alone is `http://host:port`).
    pub fn new(server: &str) -> std::result::Result<Client, String> {
        // The raw value is echoed only when it cannot hold a password.
        let shown = if server.contains('@') { "(redacted)".to_string() } else { format!("{server:?}") };
        // `host:port` alone means plain HTTP.
        let server = server.trim();
        let with_scheme = if server.contains("://") { server.to_string() } else { format!("http://{server}") };
        let mut base = reqwest::Url::parse(&with_scheme).map_err(|e| format!("--server {shown} is not a URL: {e}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!("--server {}: only http:// and https:// URLs are supported", redact(&base)));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(format!("--server {shown} has no host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(format!("--server {}: a query or fragment is not allowed", redact(&base)));
        }
        // A path prefix (a reverse proxy) is kept: routes are appended to it.
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("redrive-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Client { base, http, token: None })
    }

    /// The client with a bearer token (`--token` / `REDRIVE_TOKEN`) sent on every request.
    pub fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        self
    }

    /// The server, for messages (no credentials).
    pub fn server(&self) -> String {
        redact(&self.base)
    }

    /// `base` + path segments (each percent-encoded) + query.
    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> reqwest::Url {
        let mut u = self.base.clone();
        {
            let mut p = u.path_segments_mut().expect("checked in new: base URL");
            p.pop_if_empty();
            p.extend(segments);
        }
        if !query.is_empty() {
            let mut q = u.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        u
    }

    /// Sends a request; the answer's body when it is a success, else the error.
    async fn exchange<B: Serialize>(&self, method: reqwest::Method, url: reqwest::Url, body: Option<&B>) -> Result<Vec<u8>> {
        let mut req = self.http.request(method, url).header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.unreachable(&e))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        match serde_json::from_slice::<w::ErrorResponse>(&bytes) {
            Ok(body) => Err(ClientError::Api(ApiError { status: status.as_u16(), body })),
            Err(_) => {
                let text = String::from_utf8_lossy(&bytes);
                let text: String = text.chars().take(200).collect();
                Err(self.bad_response(format!(
                    "HTTP {}{}; is {} a redrive server?",
                    status.as_u16(),
                    if text.trim().is_empty() { String::new() } else { format!(": {}", text.trim()) },
                    self.server()
                )))
            }
        }
    }

    /// A request whose answer is a `T`.
    async fn send<T: DeserializeOwned, B: Serialize>(&self, method: reqwest::Method, url: reqwest::Url, body: Option<&B>) -> Result<T> {
        let bytes = self.exchange(method, url, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| self.bad_response(format!("the answer is not the API's JSON: {e}")))
    }

    /// `GET url` answered with a `T`.
    async fn get<T: DeserializeOwned>(&self, url: reqwest::Url) -> Result<T> {
        self.send(reqwest::Method::GET, url, None::<&()>).await
    }

    fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        let detail = if e.is_timeout() {
            format!("no response within {} s", REQUEST_TIMEOUT.as_secs())
        } else {
            // The innermost cause says what happened ("Connection refused"); the
            // outer ones repeat the URL, which may hold credentials.
            let mut cause: &dyn std::error::Error = e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            let s = cause.to_string();
            if s.contains("://") { "request failed".to_string() } else { s }
        };
        ClientError::Unreachable { server: self.server(), detail }
    }

    fn bad_response(&self, detail: String) -> ClientError {
        ClientError::BadResponse { server: self.server(), detail }
    }

    // --- routes ---------------------------------------------------------------

    /// `POST /v1/tokens`.
    pub async fn create_token(&self, req: &w::CreateTokenRequest) -> Result<w::CreatedToken> {
        self.send(reqwest::Method::POST, self.url(&["v1", "tokens"], &[]), Some(req)).await
    }

    /// `GET /v1/tokens`.
    pub async fn list_tokens(&self) -> Result<w::TokenList> {
        self.get(self.url(&["v1", "tokens"], &[])).await
    }

    /// `DELETE /v1/tokens/{name}`.
    pub async fn revoke_token(&self, name: &str) -> Result<()> {
        self.exchange(reqwest::Method::DELETE, self.url(&["v1", "tokens", name], &[]), None::<&()>).await.map(drop)
    }

    /// `GET /v1/audit`, one page.
    pub async fn list_audit(&self, next_token: Option<&str>, limit: usize) -> Result<w::AuditList> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(t) = next_token {
            query.push(("nextToken", t.to_string()));
        }
        self.get(self.url(&["v1", "audit"], &query)).await
    }

    /// `GET /v1/pipelines/{name}/executions/{id}/export`.
    pub async fn export_execution(&self, name: &str, id: &str) -> Result<w::ExecutionExport> {
        self.get(self.url(&["v1", "pipelines", name, "executions", id, "export"], &[])).await
    }

    /// `GET /v1/dependencies`.
    pub async fn dependencies(&self) -> Result<w::DependencyList> {
        self.get(self.url(&["v1", "dependencies"], &[])).await
    }

    /// `GET /v1/dependencies/{name}`.
    pub async fn dependency(&self, name: &str) -> Result<w::DependencyStatus> {
        self.get(self.url(&["v1", "dependencies", name], &[])).await
    }

    /// `GET /v1/cluster`.
    pub async fn cluster_status(&self) -> Result<w::ClusterStatus> {
        self.get(self.url(&["v1", "cluster"], &[])).await
    }

    /// `POST /v1/pipelines`.
    pub async fn create_pipeline(&self, definition: &Value) -> Result<w::PipelineResponse> {
        self.send(reqwest::Method::POST, self.url(&["v1", "pipelines"], &[]), Some(definition)).await
    }

    /// `PUT /v1/pipelines/{name}`.
    pub async fn update_pipeline(&self, name: &str, definition: &Value) -> Result<w::PipelineResponse> {
        self.send(reqwest::Method::PUT, self.url(&["v1", "pipelines", name], &[]), Some(definition)).await
    }

    /// `GET /v1/pipelines/{name}[?version=N]`.
    pub async fn get_pipeline(&self, name: &str, version: Option<u32>) -> Result<w::PipelineResponse> {
        let q: Vec<(&str, String)> = version.map(|v| ("version", v.to_string())).into_iter().collect();
        self.get(self.url(&["v1", "pipelines", name], &q)).await
    }

    /// `GET /v1/pipelines` (one page).
    pub async fn list_pipelines(&self, next_token: Option<&str>, limit: Option<usize>) -> Result<w::PipelineList> {
        self.get(self.url(&["v1", "pipelines"], &page_query(next_token, limit))).await
    }

    /// `DELETE /v1/pipelines/{name}` (no body).
    pub async fn delete_pipeline(&self, name: &str) -> Result<()> {
        self.exchange(reqwest::Method::DELETE, self.url(&["v1", "pipelines", name], &[]), None::<&()>).await.map(drop)
    }

    /// `GET /v1/pipelines/{name}/state`.
    pub async fn pipeline_state(&self, name: &str) -> Result<w::PipelineState> {
        self.get(self.url(&["v1", "pipelines", name, "state"], &[])).await
    }

    /// `POST /v1/pipelines/{name}/executions`.
    pub async fn start_execution(&self, name: &str, input: Value, client_request_token: Option<String>) -> Result<w::ExecutionId> {
        let body = w::StartExecutionRequest { input: Some(input), client_request_token };
        self.send(reqwest::Method::POST, self.url(&["v1", "pipelines", name, "executions"], &[]), Some(&body)).await
    }

    /// `GET /v1/pipelines/{name}/executions` (one page).
    pub async fn list_executions(&self, name: &str, next_token: Option<&str>, limit: Option<usize>) -> Result<w::ExecutionList> {
        self.get(self.url(&["v1", "pipelines", name, "executions"], &page_query(next_token, limit))).await
    }

    /// `GET /v1/pipelines/{name}/executions/{id}`.
    pub async fn get_execution(&self, name: &str, id: &str) -> Result<w::Execution> {
        self.get(self.url(&["v1", "pipelines", name, "executions", id], &[])).await
    }

    /// `POST /v1/pipelines/{name}/executions/{id}/stop`.
    pub async fn stop_execution(&self, name: &str, id: &str, abandon: bool, reason: &str) -> Result<w::ExecutionId> {
        let body = w::StopExecutionRequest { abandon, reason: reason.to_string() };
        self.send(reqwest::Method::POST, self.url(&["v1", "pipelines", name, "executions", id, "stop"], &[]), Some(&body)).await
    }

    /// `POST /v1/pipelines/{name}/executions/{id}/stages/{stage}/retry` from an action.
    pub async fn retry_stage_from(
        &self,
        name: &str,
        id: &str,
        stage: &str,
        action: &str,
        input_patch: Option<Value>,
    ) -> Result<w::ExecutionId> {
        let body = w::RetryStageRequest { retry_mode: None, from_action: Some(action.to_string()), input_patch };
        let url = self.url(&["v1", "pipelines", name, "executions", id, "stages", stage, "retry"], &[]);
        self.send(reqwest::Method::POST, url, Some(&body)).await
    }

    /// `POST /v1/pipelines/{name}/executions/{id}/resume`.
    pub async fn resume_execution(&self, name: &str, id: &str, body: &w::ResumeExecutionRequest) -> Result<w::ExecutionId> {
        self.send(reqwest::Method::POST, self.url(&["v1", "pipelines", name, "executions", id, "resume"], &[]), Some(body)).await
    }

    /// `POST /v1/pipelines/{name}/executions/{id}/fail`.
    pub async fn fail_execution(&self, name: &str, id: &str) -> Result<w::ExecutionId> {
        let url = self.url(&["v1", "pipelines", name, "executions", id, "fail"], &[]);
        self.send(reqwest::Method::POST, url, Some(&serde_json::json!({}))).await
    }

    /// `POST /v1/pipelines/{name}/executions/{id}/stages/{stage}/retry`.
    pub async fn retry_stage(&self, name: &str, id: &str, stage: &str, retry_mode: w::RetryMode) -> Result<w::ExecutionId> {
        let body = w::RetryStageRequest { retry_mode: Some(retry_mode), from_action: None, input_patch: None };
        let url = self.url(&["v1", "pipelines", name, "executions", id, "stages", stage, "retry"], &[]);
        self.send(reqwest::Method::POST, url, Some(&body)).await
    }

    /// `GET /v1/pipelines/{name}/action-executions` (one page).
    pub async fn list_action_executions(
        &self,
        name: &str,
        execution_id: Option<&str>,
        next_token: Option<&str>,
        limit: Option<usize>,
    ) -> Result<w::ActionExecutionList> {
        let mut q = page_query(next_token, limit);
        if let Some(id) = execution_id {
            q.push(("executionId", id.to_string()));
        }
        self.get(self.url(&["v1", "pipelines", name, "action-executions"], &q)).await
    }

    /// `GET /v1/functions/{name}/executions` (one page).
    pub async fn list_function_executions(
        &self,
        name: &str,
        next_token: Option<&str>,
        limit: Option<usize>,
    ) -> Result<w::FunctionExecutionList> {
        self.get(self.url(&["v1", "functions", name, "executions"], &page_query(next_token, limit))).await
    }

    /// `GET /v1/functions/{name}/executions/{id}`.
    pub async fn get_function_execution(&self, name: &str, id: &str) -> Result<w::FunctionExecution> {
        self.get(self.url(&["v1", "functions", name, "executions", id], &[])).await
    }
}

/// Which dead-letter entries a listing, purge or redrive covers (the query
/// parameters and body fields of the DLQ routes; `None` = no narrowing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DlqFilters {
    /// Exception type of the final error (`type`).
    pub exception_type: Option<String>,
    /// Pipeline the entry came from (`source`).
    pub source: Option<String>,
    /// Minimum time in the queue, as written (`10m`); checked by the caller.
    pub older_than: Option<String>,
    /// `Some(true)`: only poison entries; `Some(false)`: only the others.
    pub poison: Option<bool>,
}

impl DlqFilters {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(t) = &self.exception_type {
            q.push(("type", t.clone()));
        }
        if let Some(s) = &self.source {
            q.push(("source", s.clone()));
        }
        if let Some(o) = &self.older_than {
            q.push(("olderThan", o.clone()));
        }
        if let Some(p) = self.poison {
            q.push(("poison", p.to_string()));
        }
        q
    }

    /// The body of a purge.
    fn purge_request(&self) -> w::PurgeRequest {
        w::PurgeRequest {
            exception_type: self.exception_type.clone(),
            source: self.source.clone(),
            older_than: self.older_than.clone(),
            poison: self.poison,
        }
    }
}

/// The body of a redrive (`POST /v1/dlq/queues/{queue}/redrive` or `/v1/dlq/redrive`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedriveBody {
    /// `type`, `source`, `olderThan` (`poison` is not a redrive field and is ignored).
    pub filters: DlqFilters,
    pub max_entries: Option<u64>,
    /// As written (`50/s`, `unlimited`); the server's default is 100/s.
    pub rate: Option<String>,
    /// The server's default is retry-stage.
    pub mode: Option<w::RedriveMode>,
    pub dry_run: bool,
    pub entry_id: Option<String>,
    pub force: bool,
    pub input_patch: Option<Value>,
}

impl RedriveBody {
    fn request(&self, queue_prefix: Option<&str>) -> w::RedriveRequest {
        w::RedriveRequest {
            queue_prefix: queue_prefix.map(str::to_string),
            exception_type: self.filters.exception_type.clone(),
            source: self.filters.source.clone(),
            older_than: self.filters.older_than.clone(),
            max_entries: self.max_entries,
            rate: self.rate.clone(),
            mode: self.mode,
            dry_run: self.dry_run.then_some(true),
            entry_id: self.entry_id.clone(),
            force: self.force.then_some(true),
            input_patch: self.input_patch.clone(),
        }
    }
}

impl Client {
    /// `GET /v1/dlq/queues[?prefix=P]` (one page).
    pub async fn list_dlq_queues(&self, prefix: Option<&str>, next_token: Option<&str>, limit: Option<usize>) -> Result<w::QueueList> {
        let mut q = page_query(next_token, limit);
        if let Some(p) = prefix {
            q.push(("prefix", p.to_string()));
        }
        self.get(self.url(&["v1", "dlq", "queues"], &q)).await
    }

    /// `GET /v1/dlq/queues/{queue}`.
    pub async fn get_dlq_queue(&self, queue: &str) -> Result<w::Queue> {
        self.get(self.url(&["v1", "dlq", "queues", queue], &[])).await
    }

    /// `PUT /v1/dlq/queues/{queue}` (creates the queue if missing).
    pub async fn configure_dlq_queue(&self, queue: &str, max_redrives: u32) -> Result<w::Queue> {
        let body = w::ConfigureQueueRequest { max_redrives: max_redrives.into() };
        self.send(reqwest::Method::PUT, self.url(&["v1", "dlq", "queues", queue], &[]), Some(&body)).await
    }

    /// `GET /v1/dlq/queues/{queue}/entries` (one page; `count` covers every match).
    /// `state`: `QUEUED` (the server's default), `REDRIVEN`, `RESOLVED` or `ALL`.
    pub async fn list_dlq_entries(
        &self,
        queue: &str,
        filters: &DlqFilters,
        state: Option<&str>,
        next_token: Option<&str>,
        limit: Option<usize>,
    ) -> Result<w::EntryList> {
        let mut q = filters.query();
        if let Some(s) = state {
            q.push(("state", s.to_string()));
        }
        q.extend(page_query(next_token, limit));
        self.get(self.url(&["v1", "dlq", "queues", queue, "entries"], &q)).await
    }

    /// `GET /v1/dlq/entries/{id}`.
    pub async fn get_dlq_entry(&self, id: &str) -> Result<w::Entry> {
        self.get(self.url(&["v1", "dlq", "entries", id], &[])).await
    }

    /// `POST /v1/dlq/queues/{queue}/purge`.
    pub async fn purge_dlq(&self, queue: &str, filters: &DlqFilters) -> Result<w::PurgeResponse> {
        let body = filters.purge_request();
        self.send(reqwest::Method::POST, self.url(&["v1", "dlq", "queues", queue, "purge"], &[]), Some(&body)).await
    }

    /// `POST /v1/dlq/queues/{queue}/redrive`: a plan (dry run) or a run (status RUNNING).
    pub async fn redrive_queue(&self, queue: &str, body: &RedriveBody) -> Result<w::RedriveResponse> {
        let url = self.url(&["v1", "dlq", "queues", queue, "redrive"], &[]);
        self.send(reqwest::Method::POST, url, Some(&body.request(None))).await
    }

    /// `POST /v1/dlq/redrive` with `queuePrefix`: every queue under the prefix.
    pub async fn redrive_prefix(&self, prefix: &str, body: &RedriveBody) -> Result<w::RedriveResponse> {
        self.send(reqwest::Method::POST, self.url(&["v1", "dlq", "redrive"], &[]), Some(&body.request(Some(prefix)))).await
    }

    /// `GET /v1/dlq/redrives[?schedule=NAME]` (one page, newest first).
    pub async fn list_redrive_runs(&self, schedule: Option<&str>, next_token: Option<&str>, limit: Option<usize>) -> Result<w::RunList> {
        let mut q = page_query(next_token, limit);
        if let Some(s) = schedule {
            q.push(("schedule", s.to_string()));
        }
        self.get(self.url(&["v1", "dlq", "redrives"], &q)).await
    }

    /// `GET /v1/dlq/redrives/{id}`.
    pub async fn get_redrive_run(&self, id: &str) -> Result<w::Run> {
        self.get(self.url(&["v1", "dlq", "redrives", id], &[])).await
    }

    /// `POST /v1/pipelines/{name}/bulk-retries` with `dryRun`: the count only.
    pub async fn plan_bulk_retry(&self, name: &str, body: &w::BulkRetryRequest) -> Result<w::BulkPlan> {
        let body = w::BulkRetryRequest { dry_run: Some(true), ..body.clone() };
        self.send(reqwest::Method::POST, self.url(&["v1", "pipelines", name, "bulk-retries"], &[]), Some(&body)).await
    }

    /// `POST /v1/pipelines/{name}/bulk-retries`: the operation (RUNNING) and its count.
    pub async fn start_bulk_retry(&self, name: &str, body: &w::BulkRetryRequest) -> Result<w::BulkRetryStarted> {
        let body = w::BulkRetryRequest { dry_run: None, ..body.clone() };
        self.send(reqwest::Method::POST, self.url(&["v1", "pipelines", name, "bulk-retries"], &[]), Some(&body)).await
    }

    /// `GET /v1/pipelines/{name}/bulk-retries` (one page, newest first).
    pub async fn list_bulk_retries(&self, name: &str, next_token: Option<&str>, limit: Option<usize>) -> Result<w::BulkRetryList> {
        self.get(self.url(&["v1", "pipelines", name, "bulk-retries"], &page_query(next_token, limit))).await
    }

    /// `GET /v1/pipelines/{name}/bulk-retries/{id}`.
    pub async fn get_bulk_retry(&self, name: &str, id: &str) -> Result<w::BulkRetry> {
        self.get(self.url(&["v1", "pipelines", name, "bulk-retries", id], &[])).await
    }

    /// `GET /v1/pipelines/{name}/bulk-retries/{id}/results` (one page).
    pub async fn bulk_retry_results(&self, name: &str, id: &str, next_token: Option<&str>) -> Result<w::BulkResultList> {
        self.get(self.url(&["v1", "pipelines", name, "bulk-retries", id, "results"], &page_query(next_token, Some(1000)))).await
    }

    /// `POST /v1/pipelines/{name}/bulk-retries/{id}/abort`.
    pub async fn abort_bulk_retry(&self, name: &str, id: &str) -> Result<w::BulkRetry> {
        let url = self.url(&["v1", "pipelines", name, "bulk-retries", id, "abort"], &[]);
        self.send(reqwest::Method::POST, url, Some(&serde_json::json!({}))).await
    }

    /// `GET /v1/dlq/schedules`.
    pub async fn list_redrive_schedules(&self) -> Result<w::ScheduleList> {
        self.get(self.url(&["v1", "dlq", "schedules"], &[])).await
    }
}

fn page_query(next_token: Option<&str>, limit: Option<usize>) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(t) = next_token {
        q.push(("nextToken", t.to_string()));
    }
    if let Some(n) = limit {
        q.push(("limit", n.to_string()));
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn urls_are_built_under_the_base_and_encoded() {
        let c = Client::new("http://127.0.0.1:7878").unwrap();
        assert_eq!(c.url(&["v1", "pipelines", "a b/c"], &[]).as_str(), "http://127.0.0.1:7878/v1/pipelines/a%20b%2Fc");
        let c = Client::new("https://example.com/prefix").unwrap();
        assert_eq!(
            c.url(&["v1", "pipelines"], &[("nextToken", "x&y".into())]).as_str(),
            "https://example.com/prefix/v1/pipelines?nextToken=x%26y"
        );
    }

    #[test]
    fn dlq_bodies_and_queries_name_only_given_fields() {
        let f = DlqFilters { exception_type: Some("Step.THROTTLING".into()), older_than: Some("10m".into()), ..Default::default() };
        assert_eq!(f.query(), vec![("type", "Step.THROTTLING".to_string()), ("olderThan", "10m".to_string())]);
        let b = RedriveBody { filters: f, rate: Some("50/s".into()), dry_run: true, ..Default::default() };
        assert_eq!(
            serde_json::to_value(b.request(Some("retry-"))).unwrap(),
            json!({"type": "Step.THROTTLING", "olderThan": "10m", "queuePrefix": "retry-", "rate": "50/s", "dryRun": true})
        );
        assert_eq!(serde_json::to_value(RedriveBody::default().request(None)).unwrap(), json!({}));
    }

    #[test]
    fn server_urls_are_checked_and_credentials_never_shown() {
        assert!(Client::new("ftp://x").is_err());
        assert!(Client::new("not a url").is_err());
        assert_eq!(Client::new("127.0.0.1:9").unwrap().server(), "http://127.0.0.1:9");
        let c = Client::new("http://user:secret@host:1/").unwrap();
        assert_eq!(c.server(), "http://host:1");
        assert!(!Client::new("ftp://user:secret@x").err().unwrap().contains("secret"));
    }
}
