//! The server's config file (`redrive server --config FILE`, or `REDRIVE_CONFIG`):
//! YAML or JSON, read with the definition loader's located tree so every problem
//! names the file, the line, the JSON path, the value and what is allowed.
//!
//! ```yaml
//! redriveSchedules:
//!   - name: retry-sweeper        # [A-Za-z0-9.@_-]{1,100}, unique
//!     every: 30m                 # at least 1s
//!     queuePrefix: retry-        # required
//!     filters: {type: Step.THROTTLING, source: orders}   # optional
//!     olderThan: 10m             # optional
//!     maxEntries: 1000           # optional
//!     rate: 50/s                 # optional, default 100/s
//!     mode: retry-stage          # optional, default retry-stage
//! retention:                     # optional; every key optional (defaults shown)
//!   executions: 30d              # finished executions and their ledgers; a
//!                                # pipeline's retentionDays wins; or `forever`
//!   deadLetterEntries: 30d       # RESOLVED dead-letter entries, from resolution
//!   redriveRuns: 90d             # finished redrive runs and bulk retries, from their end
//!   auditRecords: 90d            # the audit log, from when a record was written
//!   sweepEvery: 1m               # 1s to 1d
//!   stepSize: 100                # rows deleted per step (1 to 1000)
//! http:                          # optional; every key optional
//!   headerReadTimeout: 10s       # 1s to 1h; also how long a kept-alive connection may idle
//!   bodyReadTimeout: 30s         # 1s to 1h
//!   maxConnections: 1024         # 1 to 65536, and at most half the open-file limit
//! httpActions:                   # optional; defaults of http actions (outbound requests)
//!   redirects: SAME_ORIGIN       # SAME_ORIGIN (default), ANY_ORIGIN or NONE: for actions
//!                                # without their own `redirects` (see docs/security.md)
//! dependencies:                  # optional; retry budgets and circuit breakers for every
//!   - name: payments-api         # pipeline (a pipeline's own declaration of a name wins;
//!     retryBudget: {ratio: 0.1, minRetriesPerSecond: 5, window: 60s}   # `- name: X` alone
//!     circuitBreaker: {failureThreshold: 20, coolDown: 30s, halfOpenProbes: 1} # takes these)
//! auth:                          # optional; present: every request needs a credential
//!   awsCredentials:              # optional; access keys for the CodePipeline protocol (SigV4)
//!     - accessKeyId: AKIAEXAMPLE           # 1 to 128 of A-Z a-z 0-9, unique
//!       secretAccessKeyEnv: NIGHTLY_SECRET # the environment variable holding the secret
//!       scope: operate                     # read, operate, admin
//!       pipelines: [payments-*]            # optional name limits
//!       queues: [payments-*]
//!   schedules:                   # the grant each redrive schedule runs under (operate scope)
//!     - name: retry-sweeper                # a schedule of redriveSchedules
//!       queues: [retry-*]                  # must cover its queuePrefix
//! ```

use crate::exit;
use crate::load::{format_problem, plural, read_bounded};
use redrive_api::auth::{AccessKey, AuthConfig};
use redrive_api::server::{DEFAULT_BODY_READ_TIMEOUT_MS, DEFAULT_HEADER_READ_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS};
use redrive_core::auth::{Grant, MAX_PATTERNS, NamePattern, Principal, Requirement, Resource, Scope, authorize};
use redrive_core::definition::source::{Node, NodeValue, parse_document};
use redrive_core::definition::{Problem, Problems, RedirectMode, total_problems};
use redrive_core::limits::MAX_CONFIG_FILE_BYTES;
use redrive_core::name::Name;
use redrive_core::retention::Keep;
use redrive_core::time::parse_duration_ms;
use redrive_engine::redrive::{
    DEFAULT_RATE, MAX_SCHEDULES, MIN_SCHEDULE_EVERY_MS, QueueScope, Rate, RedriveMode, RedriveRequest, RedriveSchedule,
};
use redrive_engine::retention::SweepConfig;
use redrive_store::MAX_PRUNE_STEP;
use std::collections::HashMap;
use std::path::Path;

// Longest exception type a filter may name (as the server checks).
use redrive_core::limits::MAX_EXCEPTION_TYPE_CHARS;

/// Shortest header or body read timeout the file may set.
pub const MIN_HTTP_TIMEOUT_MS: u64 = 1_000;
/// Longest header or body read timeout the file may set.
pub const MAX_HTTP_TIMEOUT_MS: u64 = 3_600_000;
/// Most connections the file may allow.
pub const MAX_HTTP_CONNECTIONS: u64 = 65_536;

const AUTH_KEYS: &[&str] = &["awsCredentials", "schedules"];
const SCHEDULE_GRANT_KEYS: &[&str] = &["name", "queues", "pipelines"];
const CREDENTIAL_KEYS: &[&str] = &["accessKeyId", "secretAccessKeyEnv", "scope", "pipelines", "queues"];
/// Most access keys the file may configure.
pub const MAX_ACCESS_KEYS: usize = 100;
const TOP_KEYS: &[&str] = &["redriveSchedules", "http", "httpActions", "retention", "auth", "dependencies"];
const HTTP_ACTIONS_KEYS: &[&str] = &["redirects"];
const RETENTION_KEYS: &[&str] = &["executions", "deadLetterEntries", "redriveRuns", "auditRecords", "sweepEvery", "stepSize"];
/// Longest `sweepEvery`.
const MAX_SWEEP_EVERY_MS: u64 = 86_400_000;
const HTTP_KEYS: &[&str] = &["headerReadTimeout", "bodyReadTimeout", "maxConnections"];
const SCHEDULE_KEYS: &[&str] = &["name", "every", "queuePrefix", "filters", "olderThan", "maxEntries", "rate", "mode"];
const FILTER_KEYS: &[&str] = &["type", "source"];

/// What `redrive server` reads from its config file.
#[derive(Debug, Default)]
pub struct ServerConfig {
    pub schedules: Vec<RedriveSchedule>,
    pub http: HttpConfig,
    /// `Some` when the file has an `auth:` section: credentials are required.
    pub auth: Option<AuthConfig>,
    pub sweep: SweepConfig,
    /// Dependencies for every pipeline (see `redrive_core::dependency`).
    pub dependencies: Vec<redrive_core::dependency::Dependency>,
    /// `httpActions.redirects`: what an http action without `redirects` follows.
    pub http_redirects: RedirectMode,
}

/// The `http:` section: the server's connection limits.
#[derive(Debug, PartialEq)]
pub struct HttpConfig {
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            body_read_timeout_ms: DEFAULT_BODY_READ_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Io(String),
    /// The file has problems (the first MAX_PROBLEMS_REPORTED, then a count of the rest).
    Invalid(Vec<Problem>),
}

pub fn load_config(path: &Path) -> Result<ServerConfig, ConfigError> {
    let text = read_bounded(path, "a config file", MAX_CONFIG_FILE_BYTES).map_err(|e| ConfigError::Io(format!("config file {e}")))?;
    parse_config(&text).map_err(ConfigError::Invalid)
}

/// Prints a config error (every problem, `file:line: path: message (got …; allowed: …)`)
/// and returns the exit code.
pub fn report_config_error(path: &Path, err: &ConfigError) -> u8 {
    match err {
        ConfigError::Io(msg) => eprintln!("error: {msg}"),
        ConfigError::Invalid(problems) => {
            let total = total_problems(problems);
            eprintln!("error: config file {} is invalid ({total} problem{}):", path.display(), plural(total));
            for p in problems {
                eprintln!("  {}", format_problem(path, p));
            }
            eprintln!("the server did not start");
        }
    }
    exit::INVALID_INPUT
}

/// Parses config text, counting every problem and reporting the first
/// [`redrive_core::limits::MAX_PROBLEMS_REPORTED`] in document order (then "and N more problems").
pub fn parse_config(text: &str) -> Result<ServerConfig, Vec<Problem>> {
    parse_config_with_env(text, &|name| std::env::var(name).ok())
}

/// [`parse_config`] reading secrets from `env` instead of the process environment.
pub fn parse_config_with_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<ServerConfig, Vec<Problem>> {
    let root = parse_document(text).map_err(|e| vec![Problem::from_source(&e)])?;
    let mut cx = Cx { problems: Problems::default(), env };
    let config = cx.config(&root);
    if cx.problems.is_empty() { Ok(config) } else { Err(cx.problems.into_vec()) }
}

struct Cx<'e> {
    problems: Problems,
    /// Where `secretAccessKeyEnv` names are looked up.
    env: &'e dyn Fn(&str) -> Option<String>,
}

/// A value as shown in a problem: compact JSON, shortened.
fn render(n: &Node) -> String {
    let s = n.to_json().to_string();
    if s.chars().count() <= 80 {
        s
    } else {
        let mut t: String = s.chars().take(79).collect();
        t.push('…');
        t
    }
}

fn kind_name(n: &Node) -> &'static str {
    match n.value {
        NodeValue::Null => "null",
        NodeValue::Bool(_) => "a boolean",
        NodeValue::Int(_) => "an integer",
        NodeValue::Float(_) => "a number",
        NodeValue::String(_) => "a string",
        NodeValue::Seq(_) => "a list",
        NodeValue::Map(_) => "a map",
    }
}

fn field_of(path: &str) -> String {
    path.rsplit(['.', '[']).next().unwrap_or("").trim_end_matches(']').to_string()
}

impl Cx<'_> {
    fn report(&mut self, path: &str, node: &Node, value: Option<String>, message: impl Into<String>, allowed: Option<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            line: (node.line > 0).then_some(node.line),
            field: field_of(path),
            value,
            message: message.into(),
            allowed,
        });
    }

    fn bad(&mut self, path: &str, node: &Node, message: impl Into<String>, allowed: &str) {
        self.report(path, node, Some(render(node)), message, Some(allowed.to_string()));
    }

    /// The entries of a map, reporting a non-map and every unknown key.
    fn map<'a>(&mut self, path: &str, node: &'a Node, keys: &[&str]) -> Option<&'a [(String, Node)]> {
        let NodeValue::Map(entries) = &node.value else {
            self.bad(path, node, format!("expected a map, found {}", kind_name(node)), &format!("a map with keys {}", keys.join(", ")));
            return None;
        };
        for (k, v) in entries {
            if !keys.contains(&k.as_str()) {
                self.report(&format!("{path}.{k}"), v, None, format!("unknown key {k}"), Some(keys.join(", ")));
            }
        }
        Some(entries)
    }

    fn string<'a>(&mut self, path: &str, node: &'a Node, allowed: &str) -> Option<&'a str> {
        match &node.value {
            NodeValue::String(s) => Some(s),
            _ => {
                self.bad(path, node, format!("expected a string, found {}", kind_name(node)), allowed);
                None
            }
        }
    }

    fn duration(&mut self, path: &str, node: &Node, min_ms: u64) -> Option<u64> {
        const ALLOWED: &str = "a duration such as 30s, 10m, 1h30m or 2d";
        let s = self.string(path, node, ALLOWED)?;
        match parse_duration_ms(s) {
            Ok(ms) if ms >= min_ms => Some(ms),
            Ok(_) => {
                self.bad(path, node, format!("too short; at least {}", redrive_core::time::human_duration_ms(min_ms)), ALLOWED);
                None
            }
            Err(e) => {
                self.bad(path, node, e, ALLOWED);
                None
            }
        }
    }

    fn config(&mut self, root: &Node) -> ServerConfig {
        let mut config = ServerConfig::default();
        let Some(entries) = self.map("$", root, TOP_KEYS) else { return config };
        if let Some((_, http)) = entries.iter().find(|(k, _)| k == "http") {
            config.http = self.http(http);
        }
        if let Some((_, actions)) = entries.iter().find(|(k, _)| k == "httpActions") {
            config.http_redirects = self.http_actions(actions);
        }
        if let Some((_, list)) = entries.iter().find(|(k, _)| k == "redriveSchedules") {
            config.schedules = self.schedules(list);
        }
        if let Some((_, auth)) = entries.iter().find(|(k, _)| k == "auth") {
            config.auth = Some(self.auth(auth));
        }
        if let (Some(auth), Some((_, list))) = (&config.auth, entries.iter().find(|(k, _)| k == "redriveSchedules")) {
            self.schedules_granted(&config.schedules, &auth.schedules, list);
        }
        if let Some((_, retention)) = entries.iter().find(|(k, _)| k == "retention") {
            config.sweep = self.retention(retention);
        }
        if let Some((_, list)) = entries.iter().find(|(k, _)| k == "dependencies") {
            match redrive_core::definition::parse_dependencies(list, "$.dependencies") {
                Ok(deps) => config.dependencies = deps,
                Err(problems) => problems.into_iter().for_each(|p| self.problems.push(p)),
            }
        }
        config
    }

    /// With `auth:`, every schedule runs under its own grant, which must allow
    /// redriving its queue prefix (and its source filter's pipeline).
    fn schedules_granted(&mut self, schedules: &[RedriveSchedule], grants: &[Principal], list: &Node) {
        for s in schedules {
            let principal = format!("schedule:{}", s.name);
            let Some(p) = grants.iter().find(|g| g.name == principal) else {
                let allowed = format!("an entry {{name: {}, queues: [{}*]}} in auth.schedules", s.name, s.prefix());
                self.report(
                    "$.redriveSchedules",
                    list,
                    Some(s.name.clone()),
                    format!("schedule {} has no grant in auth.schedules", s.name),
                    Some(allowed),
                );
                continue;
            };
            let mut needs = vec![Requirement { scope: Scope::Operate, resource: Resource::QueuePrefix(s.prefix()) }];
            if let Some(source) = &s.request.pipeline_name {
                needs.push(Requirement { scope: Scope::Operate, resource: Resource::Pipeline(source) });
            }
            if let Some(denied) = needs.into_iter().find_map(|need| authorize(p, need).err()) {
                let allowed = "a grant whose queues cover the schedule's queuePrefix (e.g. retry-* for retry-)";
                self.report(
                    "$.redriveSchedules",
                    list,
                    Some(s.name.clone()),
                    format!("schedule {}: {denied}", s.name),
                    Some(allowed.to_string()),
                );
            }
        }
    }

    fn schedule_grants(&mut self, node: &Node) -> Vec<Principal> {
        let path = "$.auth.schedules";
        let NodeValue::Seq(items) = &node.value else {
            if !matches!(node.value, NodeValue::Null) {
                self.bad(path, node, format!("expected a list, found {}", kind_name(node)), "a list of {name, queues, pipelines?}");
            }
            return Vec::new();
        };
        let mut out: Vec<Principal> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            let Some(entries) = self.map(&p, item, SCHEDULE_GRANT_KEYS) else { continue };
            let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
            let name = self
                .required_string(&p, item, get("name"), "name", "the name of a schedule in redriveSchedules")
                .map(|(s, _)| s.to_string());
            let queues = match get("queues") {
                Some(n) => self.patterns(&format!("{p}.queues"), n),
                None => {
                    self.report(
                        &format!("{p}.queues"),
                        item,
                        None,
                        "required field queues is missing",
                        Some("queue names or prefixes such as retry-*".into()),
                    );
                    None
                }
            };
            let pipelines = get("pipelines").and_then(|n| self.patterns(&format!("{p}.pipelines"), n));
            if let (Some(name), Some(queues)) = (name, queues) {
                let grant = Grant { scope: Scope::Operate, pipelines, queues: Some(queues) };
                out.push(Principal { name: format!("schedule:{name}"), grant });
            }
        }
        out
    }

    fn auth(&mut self, node: &Node) -> AuthConfig {
        let mut auth = AuthConfig::default();
        if matches!(node.value, NodeValue::Null) {
            return auth;
        }
        let Some(entries) = self.map("$.auth", node, AUTH_KEYS) else { return auth };
        if let Some((_, grants)) = entries.iter().find(|(k, _)| k == "schedules") {
            auth.schedules = self.schedule_grants(grants);
        }
        let Some((_, list)) = entries.iter().find(|(k, _)| k == "awsCredentials") else { return auth };
        let path = "$.auth.awsCredentials";
        let items: &[Node] = match &list.value {
            NodeValue::Null => &[],
            NodeValue::Seq(items) => items,
            _ => {
                self.bad(path, list, format!("expected a list, found {}", kind_name(list)), "a list of access keys");
                return auth;
            }
        };
        if items.len() > MAX_ACCESS_KEYS {
            self.report(
                path,
                list,
                Some(format!("{} keys", items.len())),
                "too many access keys",
                Some(format!("at most {MAX_ACCESS_KEYS}")),
            );
        }
        let mut ids: HashMap<String, u32> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            if let Some(key) = self.credential(&format!("{path}[{i}]"), item, &mut ids) {
                auth.access_keys.push(key);
            }
        }
        auth
    }

    fn credential(&mut self, path: &str, node: &Node, ids: &mut HashMap<String, u32>) -> Option<AccessKey> {
        let entries = self.map(path, node, CREDENTIAL_KEYS)?;
        let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let before = self.problems.count();
        let id_allowed = "1 to 128 characters of A-Z a-z 0-9, unique among the access keys";
        let id = self.required_string(path, node, get("accessKeyId"), "accessKeyId", id_allowed).and_then(|(s, n)| {
            let p = format!("{path}.accessKeyId");
            if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
                self.bad(&p, n, "not an access key id", id_allowed);
                return None;
            }
            if let Some(first) = ids.get(s) {
                self.bad(&p, n, format!("access key {s} is already configured on line {first}"), id_allowed);
                return None;
            }
            ids.insert(s.to_string(), n.line);
            Some(s.to_string())
        });
        let env_allowed = "the name of an environment variable of the server that holds the secret access key";
        let secret = self.required_string(path, node, get("secretAccessKeyEnv"), "secretAccessKeyEnv", env_allowed).and_then(|(s, n)| {
            let p = format!("{path}.secretAccessKeyEnv");
            let valid_name = !s.is_empty() && s.len() <= 200 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            match (self.env)(s).filter(|v| !v.is_empty()) {
                Some(secret) if valid_name => Some(secret),
                _ if !valid_name => {
                    self.bad(&p, n, "not an environment variable name", env_allowed);
                    None
                }
                _ => {
                    self.bad(&p, n, format!("the environment variable {s} is not set (or empty)"), env_allowed);
                    None
                }
            }
        });
        let scope = self.required_string(path, node, get("scope"), "scope", Scope::ALLOWED).and_then(|(s, n)| match Scope::parse(s) {
            Ok(scope) => Some(scope),
            Err(_) => {
                self.bad(&format!("{path}.scope"), n, "not a scope", Scope::ALLOWED);
                None
            }
        });
        let pipelines = get("pipelines").and_then(|n| self.patterns(&format!("{path}.pipelines"), n));
        let queues = get("queues").and_then(|n| self.patterns(&format!("{path}.queues"), n));
        if self.problems.count() > before {
            return None;
        }
        Some(AccessKey { id: id?, secret: secret?, grant: Grant { scope: scope?, pipelines, queues } })
    }

    /// A required string field: reported when missing or not a string.
    fn required_string<'a>(
        &mut self,
        path: &str,
        parent: &Node,
        node: Option<&'a Node>,
        key: &str,
        allowed: &str,
    ) -> Option<(&'a str, &'a Node)> {
        let Some(node) = node else {
            self.report(&format!("{path}.{key}"), parent, None, format!("required field {key} is missing"), Some(allowed.to_string()));
            return None;
        };
        self.string(&format!("{path}.{key}"), node, allowed).map(|s| (s, node))
    }

    /// A list of 1 to [`MAX_PATTERNS`] name patterns.
    fn patterns(&mut self, path: &str, node: &Node) -> Option<Vec<NamePattern>> {
        let allowed = format!("a list of 1 to {MAX_PATTERNS} names or prefixes such as payments-*");
        let NodeValue::Seq(items) = &node.value else {
            self.bad(path, node, format!("expected a list, found {}", kind_name(node)), &allowed);
            return None;
        };
        if items.is_empty() || items.len() > MAX_PATTERNS {
            self.bad(path, node, "wrong number of patterns", &allowed);
            return None;
        }
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = format!("{path}[{i}]");
            if let Some(s) = self.string(&p, item, NamePattern::ALLOWED) {
                match NamePattern::parse(s) {
                    Ok(pattern) => out.push(pattern),
                    Err(_) => self.bad(&p, item, "not a name pattern", NamePattern::ALLOWED),
                }
            }
        }
        (out.len() == items.len()).then_some(out)
    }
    fn retention(&mut self, node: &Node) -> SweepConfig {
        let mut sweep = SweepConfig::default();
        if matches!(node.value, NodeValue::Null) {
            return sweep;
        }
        let Some(entries) = self.map("$.retention", node, RETENTION_KEYS) else { return sweep };
        let r = &mut sweep.retention;
        for (k, v) in entries {
            let path = format!("$.retention.{k}");
            match k.as_str() {
                "executions" => r.executions = self.keep(&path, v).unwrap_or(r.executions),
                "deadLetterEntries" => r.dlq_entries = self.keep(&path, v).unwrap_or(r.dlq_entries),
                "redriveRuns" => r.redrive_runs = self.keep(&path, v).unwrap_or(r.redrive_runs),
                "auditRecords" => r.audit_records = self.keep(&path, v).unwrap_or(r.audit_records),
                "sweepEvery" => sweep.every_ms = self.sweep_every(&path, v).unwrap_or(sweep.every_ms),
                "stepSize" => sweep.step_size = self.int(&path, v, 1, MAX_PRUNE_STEP).unwrap_or(sweep.step_size),
                _ => {} // reported by map()
            }
        }
        sweep
    }

    /// A retention: a duration from 1s to 100 years, or `forever`.
    fn keep(&mut self, path: &str, node: &Node) -> Option<Keep> {
        const ALLOWED: &str = "a duration from 1s to 36500d (e.g. 30d, 12h), or forever";
        let s = self.string(path, node, ALLOWED)?;
        if s == "forever" {
            return Some(Keep::Forever);
        }
        match parse_duration_ms(s) {
            Ok(ms) => Keep::for_ms(ms).or_else(|| {
                self.bad(path, node, "out of range", ALLOWED);
                None
            }),
            Err(e) => {
                self.bad(path, node, e, ALLOWED);
                None
            }
        }
    }

    fn sweep_every(&mut self, path: &str, node: &Node) -> Option<u64> {
        let ms = self.duration(path, node, 1_000)?;
        if ms > MAX_SWEEP_EVERY_MS {
            self.bad(path, node, "too long; at most 1d", "a duration from 1s to 1d, e.g. 1m");
            return None;
        }
        Some(ms)
    }

    fn http(&mut self, node: &Node) -> HttpConfig {
        let mut http = HttpConfig::default();
        if matches!(node.value, NodeValue::Null) {
            return http;
        }
        let Some(entries) = self.map("$.http", node, HTTP_KEYS) else { return http };
        for (k, v) in entries {
            let path = format!("$.http.{k}");
            match k.as_str() {
                "headerReadTimeout" => http.header_read_timeout_ms = self.timeout(&path, v).unwrap_or(http.header_read_timeout_ms),
                "bodyReadTimeout" => http.body_read_timeout_ms = self.timeout(&path, v).unwrap_or(http.body_read_timeout_ms),
                "maxConnections" => http.max_connections = self.connections(&path, v).unwrap_or(http.max_connections),
                _ => {} // reported by map()
            }
        }
        http
    }

    /// `httpActions:`: the redirect mode of http actions that do not say theirs.
    fn http_actions(&mut self, node: &Node) -> RedirectMode {
        let default = RedirectMode::default();
        if matches!(node.value, NodeValue::Null) {
            return default;
        }
        let Some(entries) = self.map("$.httpActions", node, HTTP_ACTIONS_KEYS) else { return default };
        let Some((_, v)) = entries.iter().find(|(k, _)| k == "redirects") else { return default };
        let allowed = RedirectMode::NAMES.join(", ");
        let path = "$.httpActions.redirects";
        match self.string(path, v, &allowed).map(|s| (s, RedirectMode::parse(s))) {
            Some((_, Some(mode))) => mode,
            Some((_, None)) => {
                self.bad(path, v, "is not one of the allowed values", &allowed);
                default
            }
            None => default,
        }
    }

    fn timeout(&mut self, path: &str, node: &Node) -> Option<u64> {
        let ms = self.duration(path, node, MIN_HTTP_TIMEOUT_MS)?;
        if ms > MAX_HTTP_TIMEOUT_MS {
            self.bad(path, node, "too long; at most 1h", "a duration from 1s to 1h, e.g. 10s");
            return None;
        }
        Some(ms)
    }

    fn connections(&mut self, path: &str, node: &Node) -> Option<usize> {
        self.int(path, node, 1, MAX_HTTP_CONNECTIONS as usize)
    }

    fn int(&mut self, path: &str, node: &Node, min: usize, max: usize) -> Option<usize> {
        let allowed = format!("an integer from {min} to {max}");
        match node.value {
            NodeValue::Int(i) if (min as i64..=max as i64).contains(&i) => Some(i as usize),
            NodeValue::Int(_) => {
                self.bad(path, node, "out of range", &allowed);
                None
            }
            _ => {
                self.bad(path, node, format!("expected an integer, found {}", kind_name(node)), &allowed);
                None
            }
        }
    }

    fn schedules(&mut self, list: &Node) -> Vec<RedriveSchedule> {
        let mut schedules = Vec::new();
        let path = "$.redriveSchedules";
        let items: &[Node] = match &list.value {
            NodeValue::Null => &[],
            NodeValue::Seq(items) => items,
            _ => {
                self.bad(path, list, format!("expected a list, found {}", kind_name(list)), "a list of schedules");
                return schedules;
            }
        };
        if items.len() > MAX_SCHEDULES {
            self.report(
                path,
                list,
                Some(format!("{} schedules", items.len())),
                "too many schedules",
                Some(format!("at most {MAX_SCHEDULES} schedules")),
            );
        }
        let mut names: HashMap<String, u32> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{path}[{i}]");
            if let Some(s) = self.schedule(&path, item, &mut names) {
                schedules.push(s);
            }
        }
        schedules
    }

    fn schedule(&mut self, path: &str, node: &Node, names: &mut HashMap<String, u32>) -> Option<RedriveSchedule> {
        let entries = self.map(path, node, SCHEDULE_KEYS)?;
        let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let before = self.problems.count();
        let missing = |cx: &mut Cx, key: &str, allowed: &str| {
            cx.report(&format!("{path}.{key}"), node, None, format!("required field {key} is missing"), Some(allowed.to_string()))
        };

        // name
        let name_allowed = "1 to 100 characters of A-Z a-z 0-9 . @ - _, unique among the schedules";
        let name = match get("name") {
            None => {
                missing(self, "name", name_allowed);
                None
            }
            Some(n) => {
                let p = format!("{path}.name");
                match self.string(&p, n, name_allowed) {
                    Some(s) => match Name::parse(s) {
                        Err(e) => {
                            self.bad(&p, n, format!("schedule name {e}"), name_allowed);
                            None
                        }
                        Ok(_) => {
                            if let Some(first) = names.get(s) {
                                self.bad(&p, n, format!("a schedule named {s} is already defined on line {first}"), name_allowed);
                                None
                            } else {
                                names.insert(s.to_string(), n.line);
                                Some(s.to_string())
                            }
                        }
                    },
                    None => None,
                }
            }
        };

        // every
        let every_ms = match get("every") {
            None => {
                missing(self, "every", "a duration of at least 1s, e.g. 30m");
                None
            }
            Some(n) => self.duration(&format!("{path}.every"), n, MIN_SCHEDULE_EVERY_MS),
        };

        // queuePrefix
        let prefix_allowed = "1 to 100 characters of A-Z a-z 0-9 . @ - _ (only queues whose name starts with it are redriven)";
        let prefix = match get("queuePrefix") {
            None => {
                missing(self, "queuePrefix", prefix_allowed);
                None
            }
            Some(n) => {
                let p = format!("{path}.queuePrefix");
                match self.string(&p, n, prefix_allowed) {
                    Some(s) if Name::parse(s).is_ok() => Some(s.to_string()),
                    Some(_) => {
                        self.bad(&p, n, "not a queue-name prefix", prefix_allowed);
                        None
                    }
                    None => None,
                }
            }
        };

        // filters
        let (mut exception_type, mut pipeline_name) = (None, None);
        if let Some(f) = get("filters") {
            let fpath = format!("{path}.filters");
            if !matches!(f.value, NodeValue::Null)
                && let Some(fe) = self.map(&fpath, f, FILTER_KEYS)
            {
                for (k, v) in fe {
                    let p = format!("{fpath}.{k}");
                    match k.as_str() {
                        "type" => {
                            let allowed = "an exception type of 1 to 100 printable characters, e.g. Step.THROTTLING";
                            if let Some(s) = self.string(&p, v, allowed) {
                                if s.is_empty() || s.chars().count() > MAX_EXCEPTION_TYPE_CHARS || s.chars().any(char::is_control) {
                                    self.bad(&p, v, "not an exception type", allowed);
                                } else {
                                    exception_type = Some(s.to_string());
                                }
                            }
                        }
                        "source" => {
                            let allowed = "a pipeline name: 1 to 100 characters of A-Z a-z 0-9 . @ - _";
                            if let Some(s) = self.string(&p, v, allowed) {
                                match Name::parse(s) {
                                    Ok(_) => pipeline_name = Some(s.to_string()),
                                    Err(e) => self.bad(&p, v, format!("pipeline name {e}"), allowed),
                                }
                            }
                        }
                        _ => {} // reported by map()
                    }
                }
            }
        }

        let older_than_ms = get("olderThan").and_then(|n| self.duration(&format!("{path}.olderThan"), n, 0));

        let max_entries = get("maxEntries").and_then(|n| {
            let p = format!("{path}.maxEntries");
            match n.value {
                NodeValue::Int(i) if i >= 1 => Some(i as u64),
                NodeValue::Int(_) => {
                    self.bad(&p, n, "must be at least 1", "an integer of at least 1");
                    None
                }
                _ => {
                    self.bad(&p, n, format!("expected an integer, found {}", kind_name(n)), "an integer of at least 1");
                    None
                }
            }
        });

        let rate = match get("rate") {
            None => Some(DEFAULT_RATE),
            Some(n) => {
                let p = format!("{path}.rate");
                let allowed = "N/s, N/m or N/h (e.g. 50/s), or unlimited; default 100/s";
                match self.string(&p, n, allowed).map(Rate::parse) {
                    Some(Ok(r)) => Some(r),
                    Some(Err(e)) => {
                        self.bad(&p, n, e, allowed);
                        None
                    }
                    None => None,
                }
            }
        };

        let mode = match get("mode") {
            None => Some(RedriveMode::default()),
            Some(n) => {
                let p = format!("{path}.mode");
                let allowed = "retry-stage (default), new-execution";
                match self.string(&p, n, allowed).map(RedriveMode::parse) {
                    Some(Ok(m)) => Some(m),
                    Some(Err(_)) => {
                        self.bad(&p, n, "not a redrive mode", allowed);
                        None
                    }
                    None => None,
                }
            }
        };

        if self.problems.count() > before {
            return None;
        }
        Some(RedriveSchedule {
            name: name?,
            every_ms: every_ms?,
            request: RedriveRequest {
                scope: QueueScope::Prefix(prefix?),
                entry_id: None,
                force: false,
                exception_type,
                pipeline_name,
                older_than_ms,
                max_entries,
                rate: rate?,
                mode: mode?,
                input_patch: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_schedule_parses() {
        let c = parse_config(
            "redriveSchedules:\n  - name: retry-sweeper\n    every: 30m\n    queuePrefix: retry-\n    filters: {type: Step.THROTTLING, source: orders}\n    olderThan: 10m\n    maxEntries: 1000\n    rate: 50/s\n    mode: new-execution\n",
        )
        .unwrap();
        assert_eq!(c.schedules.len(), 1);
        let s = &c.schedules[0];
        assert_eq!((s.name.as_str(), s.every_ms), ("retry-sweeper", 1_800_000));
        assert_eq!(s.request.scope, QueueScope::Prefix("retry-".into()));
        assert_eq!(s.request.exception_type.as_deref(), Some("Step.THROTTLING"));
        assert_eq!(s.request.pipeline_name.as_deref(), Some("orders"));
        assert_eq!((s.request.older_than_ms, s.request.max_entries), (Some(600_000), Some(1000)));
        assert_eq!(s.request.rate, Rate { per_second: Some(50.0) });
        assert_eq!(s.request.mode, RedriveMode::NewExecution);
    }

    #[test]
    fn dependencies_parse_and_bad_ones_are_located() {
        let c = parse_config("dependencies:\n  - name: api\n    circuitBreaker: {failureThreshold: 3, coolDown: 2s}\n").unwrap();
        assert_eq!(c.dependencies[0].circuit_breaker.unwrap().cool_down_ms(), 2_000);
        let ps = parse_config("dependencies:\n  - name: api\n    retryBudget: {ratio: 3}\n").unwrap_err();
        assert_eq!((ps[0].path.as_str(), ps[0].line), ("$.dependencies[0].retryBudget.ratio", Some(3)));
    }

    #[test]
    fn defaults_and_json() {
        let c = parse_config(r#"{"redriveSchedules": [{"name": "a", "every": "1s", "queuePrefix": "q"}]}"#).unwrap();
        assert_eq!(c.schedules[0].request.rate, DEFAULT_RATE);
        assert_eq!(c.schedules[0].request.mode, RedriveMode::RetryStage);
        let empty = parse_config("redriveSchedules: []\n").unwrap();
        assert!(empty.schedules.is_empty() && empty.auth.is_none());
    }

    #[test]
    fn every_problem_is_reported_with_line_path_value_and_allowed() {
        let text = "redriveSchedules:\n  - name: a\n    every: 500ms\n    queuePrefix: retry-\n    rate: fast\n    colour: red\n  - name: a\n    every: 1m\n    filters: {kind: x}\n    mode: sideways\nextra: 1\n";
        let problems = parse_config(text).unwrap_err();
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        let has = |needle: &str| assert!(shown.iter().any(|s| s.contains(needle)), "{needle} not in {shown:#?}");
        has("line 3: $.redriveSchedules[0].every: too short; at least 1s (got \"500ms\"");
        has("line 5: $.redriveSchedules[0].rate:");
        has("line 6: $.redriveSchedules[0].colour: unknown key colour (allowed: name, every, queuePrefix");
        has("line 7: $.redriveSchedules[1].name: a schedule named a is already defined on line 2");
        has("$.redriveSchedules[1].queuePrefix: required field queuePrefix is missing");
        has("line 9: $.redriveSchedules[1].filters.kind: unknown key kind (allowed: type, source)");
        has("line 10: $.redriveSchedules[1].mode: not a redrive mode (got \"sideways\"; allowed: retry-stage (default), new-execution)");
        has("line 11: $.extra: unknown key extra (allowed: redriveSchedules, http, httpActions, retention, auth, dependencies)");
        assert!(parse_config("redriveSchedules: [\n").unwrap_err()[0].line.is_some());
    }

    #[test]
    fn the_http_section_sets_the_connection_limits() {
        let c = parse_config("http:\n  headerReadTimeout: 2s\n  bodyReadTimeout: 1m\n  maxConnections: 64\n").unwrap();
        assert_eq!(c.http, HttpConfig { header_read_timeout_ms: 2_000, body_read_timeout_ms: 60_000, max_connections: 64 });
        assert_eq!(parse_config("http: {}\n").unwrap().http, HttpConfig::default());
        assert_eq!(parse_config("http:\n").unwrap().http, HttpConfig::default());
        assert_eq!(HttpConfig::default().max_connections, 1024);
    }

    #[test]
    fn the_http_actions_section_sets_the_default_redirect_mode() {
        assert_eq!(parse_config("redriveSchedules: []\n").unwrap().http_redirects, RedirectMode::SameOrigin);
        assert_eq!(parse_config("httpActions:\n").unwrap().http_redirects, RedirectMode::SameOrigin);
        assert_eq!(parse_config("httpActions: {}\n").unwrap().http_redirects, RedirectMode::SameOrigin);
        assert_eq!(parse_config("httpActions:\n  redirects: ANY_ORIGIN\n").unwrap().http_redirects, RedirectMode::AnyOrigin);
        assert_eq!(parse_config(r#"{"httpActions": {"redirects": "NONE"}}"#).unwrap().http_redirects, RedirectMode::Never);
        let shown = |text: &str| parse_config(text).unwrap_err().iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n");
        let s = shown("httpActions:\n  redirects: anywhere\n");
        assert!(s.contains("line 2: $.httpActions.redirects: is not one of the allowed values"), "{s}");
        assert!(s.contains("(got \"anywhere\"; allowed: SAME_ORIGIN, ANY_ORIGIN, NONE)"), "{s}");
        let s = shown("httpActions:\n  redirects: [ANY_ORIGIN]\n  follow: true\n");
        assert!(s.contains("line 2: $.httpActions.redirects: expected a string, found a list"), "{s}");
        assert!(s.contains("line 3: $.httpActions.follow: unknown key follow (allowed: redirects)"), "{s}");
        assert!(shown("httpActions: ANY_ORIGIN\n").contains("$.httpActions: expected a map"));
    }

    #[test]
    fn the_retention_section_sets_the_sweeper() {
        use redrive_core::retention::{Keep, Retention};
        assert_eq!(parse_config("{}").unwrap().sweep, SweepConfig::default());
        assert_eq!(SweepConfig::default().retention, Retention::default());
        let c = parse_config(
            "retention:\n  executions: 7d\n  deadLetterEntries: forever\n  redriveRuns: 12h\n  sweepEvery: 5s\n  stepSize: 50\n",
        )
        .unwrap()
        .sweep;
        assert_eq!(c.retention.executions, Keep::For { ms: 7 * 86_400_000 });
        assert_eq!(c.retention.dlq_entries, Keep::Forever);
        assert_eq!(c.retention.redrive_runs, Keep::For { ms: 12 * 3_600_000 });
        assert_eq!((c.every_ms, c.step_size), (5_000, 50));
        let text = "retention:\n  executions: 500ms\n  redriveRuns: 40000d\n  stepSize: 1001\n";
        let shown: Vec<String> = parse_config(text).unwrap_err().iter().map(|p| p.to_string()).collect();
        let has = |needle: &str| assert!(shown.iter().any(|s| s.contains(needle)), "{needle} not in {shown:#?}");
        has(
            "line 2: $.retention.executions: out of range (got \"500ms\"; allowed: a duration from 1s to 36500d (e.g. 30d, 12h), or forever)",
        );
        has("line 3: $.retention.redriveRuns: out of range");
        has("line 4: $.retention.stepSize: out of range (got 1001; allowed: an integer from 1 to 1000)");
    }

    #[test]
    fn http_limits_out_of_range_are_reported() {
        let text = "http:\n  headerReadTimeout: 500ms\n  bodyReadTimeout: 2h\n  maxConnections: 0\n  idle: 5s\n";
        let shown: Vec<String> = parse_config(text).unwrap_err().iter().map(|p| p.to_string()).collect();
        let has = |needle: &str| assert!(shown.iter().any(|s| s.contains(needle)), "{needle} not in {shown:#?}");
        has("line 2: $.http.headerReadTimeout: too short; at least 1s (got \"500ms\"");
        has("line 3: $.http.bodyReadTimeout: too long; at most 1h (got \"2h\"");
        has("line 4: $.http.maxConnections: out of range (got 0; allowed: an integer from 1 to 65536)");
        has("$.http.idle: unknown key idle (allowed: headerReadTimeout, bodyReadTimeout, maxConnections)");
        let shown = parse_config("http:\n  maxConnections: many\n").unwrap_err()[0].to_string();
        assert!(shown.contains("expected an integer, found a string"), "{shown}");
        assert!(parse_config("http:\n  maxConnections: 65537\n").is_err());
    }

    #[test]
    fn the_auth_section_reads_access_keys_with_secrets_from_the_environment() {
        let env = |name: &str| (name == "NIGHTLY_SECRET").then(|| "s3cr3t-value".to_string());
        let text = "auth:\n  awsCredentials:\n    - accessKeyId: AKIDNIGHTLY\n      secretAccessKeyEnv: NIGHTLY_SECRET\n      scope: operate\n      queues: [payments-*]\n";
        let auth = parse_config_with_env(text, &env).unwrap().auth.unwrap();
        let key = &auth.access_keys[0];
        assert_eq!((key.id.as_str(), key.secret.as_str(), key.grant.scope), ("AKIDNIGHTLY", "s3cr3t-value", Scope::Operate));
        assert_eq!(key.grant.queues, Some(vec![NamePattern::parse("payments-*").unwrap()]));
        assert_eq!(key.grant.pipelines, None);
        assert!(!format!("{key:?}").contains("s3cr3t"), "the secret is not in the debug form");
        assert!(parse_config_with_env("auth: {}\n", &env).unwrap().auth.unwrap().access_keys.is_empty());
    }

    #[test]
    fn auth_problems_are_reported_without_the_secret() {
        let env = |name: &str| (name == "SET").then(|| "s3cr3t-value".to_string());
        let text = "auth:\n  awsCredentials:\n    - accessKeyId: A\n      secretAccessKeyEnv: UNSET\n      scope: root\n    - accessKeyId: A\n      secretAccessKeyEnv: SET\n      scope: read\n      pipelines: [a*b]\n      colour: red\n  tokens: 1\n";
        let shown: Vec<String> = parse_config_with_env(text, &env).unwrap_err().iter().map(|p| p.to_string()).collect();
        let has = |needle: &str| assert!(shown.iter().any(|s| s.contains(needle)), "{needle} not in {shown:#?}");
        has("line 4: $.auth.awsCredentials[0].secretAccessKeyEnv: the environment variable UNSET is not set");
        has("line 5: $.auth.awsCredentials[0].scope: not a scope (got \"root\"; allowed: read, operate, admin)");
        has("line 6: $.auth.awsCredentials[1].accessKeyId: access key A is already configured on line 3");
        has("line 9: $.auth.awsCredentials[1].pipelines[0]: not a name pattern");
        has("$.auth.awsCredentials[1].colour: unknown key colour");
        has("$.auth.tokens: unknown key tokens (allowed: awsCredentials, schedules)");
        assert!(!shown.iter().any(|s| s.contains("s3cr3t")), "{shown:#?}");
    }

    #[test]
    fn with_auth_every_schedule_needs_a_grant_covering_its_prefix() {
        let schedules = "redriveSchedules:\n  - {name: sweeper, every: 30m, queuePrefix: retry-}\n  - {name: wide, every: 30m, queuePrefix: re}\n  - {name: orphan, every: 1h, queuePrefix: retry-}\n";
        let grants = "auth:\n  schedules:\n    - {name: sweeper, queues: [retry-*]}\n    - {name: wide, queues: [retry-*]}\n";
        let shown: Vec<String> = parse_config(&format!("{schedules}{grants}")).unwrap_err().iter().map(|p| p.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:#?}");
        assert!(shown[0].contains("schedule wide: schedule:wide is limited to queues retry-*; re* is outside them"), "{shown:#?}");
        assert!(shown[1].contains("schedule orphan has no grant in auth.schedules"), "{shown:#?}");
        let ok = parse_config("redriveSchedules:\n  - {name: sweeper, every: 30m, queuePrefix: retry-eu-}\nauth:\n  schedules: [{name: sweeper, queues: [retry-*]}]\n").unwrap();
        assert_eq!(ok.auth.unwrap().schedules[0].name, "schedule:sweeper");
        assert!(parse_config(schedules).is_ok(), "without auth: no grants needed");
    }
}
