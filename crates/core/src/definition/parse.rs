//! A located tree to a validated [`Pipeline`], with every problem reported.
//!
//! [`parse_pipeline`] walks the whole document and collects a [`Problem`] for
//! everything wrong with it (it never stops at the first), each naming the JSON
//! path, the 1-based line, the field as the user spelled it, the offending value
//! and what is allowed. At most [`crate::limits::MAX_PROBLEMS_REPORTED`] are
//! returned, then "and N more problems" (see [`super::problem::Problems`]).
//!
//! Accepted shapes: the pipeline object itself, or `{"pipeline": {...}}` (the
//! CodePipeline `create-pipeline` / `get-pipeline` shape, whose `tags` and
//! `metadata` are ignored). At every level an unknown key is a problem (typos are
//! caught), except for CodePipeline fields that redrive accepts and ignores.
//!
//! An action says what it runs either with one shorthand key (`command`, `http`,
//! `noop`, `function`) or in the CodePipeline wire form (`actionTypeId` with
//! `provider` Command/Http/Noop/Function plus string-valued `configuration`).
//! Retry policies are accepted in three spellings (PRODUCT.md §2): camelCase and
//! SageMaker PascalCase under `retryPolicies` / `RetryPolicies`, and Step Functions
//! under `Retry`; every list accepts every spelling, but one policy object must
//! use one spelling.

use super::model::*;
use super::problem::{Problem, Problems};
use super::source::{Node, NodeValue, parse_document, resolve_plain};
use crate::exception::ExceptionType;
use crate::name::{NAME_PATTERN, Name};
use crate::policy::{OnExhausted, PolicyError, PolicyField, RetryPolicy, RetryPolicySpec};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

mod concurrency;
mod dependencies;
pub use dependencies::parse_dependencies;

/// Parses YAML or JSON text into a validated pipeline. A syntax error in the text
/// becomes a single [`Problem`] at path `$` with its line (the column is in the
/// message).
pub fn parse_pipeline_text(text: &str) -> Result<Pipeline, Vec<Problem>> {
    match parse_document(text) {
        Ok(node) => parse_pipeline(&node),
        Err(e) => Err(vec![Problem::from_source(&e)]),
    }
}

/// Validates a located tree as a pipeline definition. Every problem is counted;
/// the first [`crate::limits::MAX_PROBLEMS_REPORTED`] (in document order) are
/// returned, then one entry saying how many more there were ([`Problem::more`]).
pub fn parse_pipeline(node: &Node) -> Result<Pipeline, Vec<Problem>> {
    let mut cx = Cx::default();
    let pipeline = pipeline(&mut cx, node);
    match pipeline {
        Some(p) if cx.problems.is_empty() => Ok(p),
        _ => {
            if cx.problems.is_empty() {
                cx.problems.push(Problem {
                    path: "$".into(),
                    line: line_of(node),
                    field: String::new(),
                    value: None,
                    message: "invalid pipeline definition".into(),
                    allowed: None,
                });
            }
            // In document order, at most MAX_PROBLEMS_REPORTED of them and a count of the rest.
            Err(cx.problems.into_vec())
        }
    }
}

// ---------------------------------------------------------------------------
// Keys

/// Upper bound of `maxConcurrentExecutions`.
const MAX_CONCURRENT_EXECUTIONS: i64 = crate::limits::MAX_CONCURRENT_EXECUTIONS as i64;
const PIPELINE_KEYS: &[&str] =
    &["name", "executionMode", "maxConcurrentExecutions", "stages", "deadLetterQueue", "retentionDays", "dependencies"];
const PIPELINE_IGNORED: &[&str] =
    &["version", "roleArn", "artifactStore", "artifactStores", "pipelineType", "variables", "triggers", "metadata"];
const STAGE_KEYS: &[&str] = &["name", "actions", "onFailure"];
const STAGE_IGNORED: &[&str] = &["blockers", "onSuccess", "beforeEntry"];
const ON_FAILURE_KEYS: &[&str] = &["result", "retryConfiguration", "maxRetries"];
const ON_FAILURE_IGNORED: &[&str] = &["conditions"];
const ACTION_KEYS: &[&str] = &[
    "name",
    "runOrder",
    "timeoutSeconds",
    "retryPolicies",
    "RetryPolicies",
    "Retry",
    "onExhausted",
    "command",
    "env",
    "secretEnv",
    "workingDirectory",
    "exitCodes",
    "http",
    "noop",
    "function",
    "actionTypeId",
    "configuration",
    "dependency",
    "concurrency",
];
const ACTION_IGNORED: &[&str] = &["inputArtifacts", "outputArtifacts", "region", "namespace", "roleArn"];
const KIND_KEYS: &[&str] = &["command", "http", "noop", "function", "actionTypeId"];
const KINDS_ALLOWED: &str = "exactly one of command, http, noop, function, or actionTypeId with configuration";
const COMMAND_SIBLINGS: &[&str] = &["env", "secretEnv", "workingDirectory", "exitCodes"];
const POLICY_LIST_KEYS: &[&str] = &["retryPolicies", "RetryPolicies", "Retry"];
const PROVIDERS: &[&str] = &["Command", "Http", "Noop", "Function"];

// ---------------------------------------------------------------------------
// Collecting problems

#[derive(Default)]
struct Cx {
    problems: Problems,
    /// The names the pipeline's `dependencies` declares (an action's
    /// `dependency:` must be one of them).
    dependency_names: Vec<String>,
}

fn line_of(n: &Node) -> Option<u32> {
    (n.line > 0).then_some(n.line)
}

impl Cx {
    fn report(&mut self, path: &str, line: u32, field: &str, value: Option<String>, message: impl Into<String>, allowed: Option<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            line: (line > 0).then_some(line),
            field: field.to_string(),
            value,
            message: message.into(),
            allowed,
        });
    }

    /// Reports a list at `at` longer than `max` (`noun` names its items); returns
    /// whether the list is within the limit.
    fn within_limit(&mut self, at: &At, len: usize, max: usize, noun: &str, message: impl Into<String>) -> bool {
        if len <= max {
            return true;
        }
        self.report(&at.path, at.node.line, &at.field, Some(format!("{len} {noun}")), message, Some(format!("at most {max} {noun}")));
        false
    }

    /// A problem with a value that is present.
    fn bad(&mut self, at: &At, message: impl Into<String>, allowed: Option<&str>) {
        self.report(&at.path, at.node.line, &at.field, Some(render(&at.node)), message, allowed.map(String::from));
    }

    /// A required field that is absent from `parent`.
    fn missing(&mut self, parent: &Obj, key: &str, message: Option<String>, allowed: Option<&str>) {
        self.report(
            &key_path(&parent.path, key),
            parent.node.line,
            key,
            None,
            message.unwrap_or_else(|| format!("required field {key} is missing")),
            allowed.map(String::from),
        );
    }

    fn type_error(&mut self, at: &At, expected: &str) {
        let found = match &at.node.value {
            NodeValue::Float(f) if f.is_finite() && expected.contains("integer") => "a fractional number",
            _ => kind_name(&at.node),
        };
        self.bad(at, format!("expected {expected}, found {found}"), None);
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

/// A value as shown in a problem: compact JSON, shortened.
fn render(n: &Node) -> String {
    let s = match &n.value {
        NodeValue::Float(f) if !f.is_finite() => format!("{f}"),
        _ => n.to_json().to_string(),
    };
    shorten(s)
}

fn shorten(s: String) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        return s;
    }
    let mut out: String = s.chars().take(MAX - 1).collect();
    out.push('…');
    out
}

fn quote(s: &str) -> String {
    shorten(serde_json::Value::String(s.to_string()).to_string())
}

/// `parent.key`, or `parent["key"]` when the key is not a plain identifier.
fn key_path(parent: &str, key: &str) -> String {
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain { format!("{parent}.{key}") } else { format!("{parent}[{}]", quote(key)) }
}

// ---------------------------------------------------------------------------
// Located values

/// A value with its path and the key the user wrote for it. The node is borrowed
/// from the document, or owned when it was decoded from a wire-form string.
struct At<'a> {
    node: Cow<'a, Node>,
    path: String,
    field: String,
}

/// A mapping with its path.
struct Obj<'a> {
    node: &'a Node,
    path: String,
    entries: &'a [(String, Node)],
}

impl<'a> Obj<'a> {
    fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    fn at(&self, key: &str) -> Option<At<'a>> {
        self.get(key).map(|n| At { node: Cow::Borrowed(n), path: key_path(&self.path, key), field: key.to_string() })
    }

    fn at_entry(&self, key: &'a str, node: &'a Node) -> At<'a> {
        At { node: Cow::Borrowed(node), path: key_path(&self.path, key), field: key.to_string() }
    }
}

fn as_map<'b>(cx: &mut Cx, at: &'b At) -> Option<Obj<'b>> {
    match &at.node.value {
        NodeValue::Map(entries) => Some(Obj { node: &at.node, path: at.path.clone(), entries }),
        _ => {
            cx.type_error(at, "a map");
            None
        }
    }
}

/// Like [`as_map`], for a node borrowed from the document.
fn as_map_in<'a>(cx: &mut Cx, parent: &Obj<'a>, key: &str) -> Option<Obj<'a>> {
    let node = parent.get(key)?;
    match &node.value {
        NodeValue::Map(entries) => Some(Obj { node, path: key_path(&parent.path, key), entries }),
        _ => {
            cx.type_error(&parent.at(key)?, "a map");
            None
        }
    }
}

/// The items of a list. Each becomes an [`At`] only when visited, so a long list
/// (a 1 MiB document holds half a million items) costs no copy of it.
struct Items<'b> {
    path: &'b str,
    field: &'b str,
    nodes: &'b [Node],
}

impl<'b> Items<'b> {
    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// `(index, item)` pairs.
    fn iter(&self) -> impl Iterator<Item = (usize, At<'b>)> + use<'b> {
        let (path, field) = (self.path, self.field);
        self.nodes
            .iter()
            .enumerate()
            .map(move |(i, n)| (i, At { node: Cow::Borrowed(n), path: format!("{path}[{i}]"), field: field.to_string() }))
    }
}

fn as_seq<'b>(cx: &mut Cx, at: &'b At) -> Option<Items<'b>> {
    match &at.node.value {
        NodeValue::Seq(nodes) => Some(Items { path: &at.path, field: &at.field, nodes }),
        _ => {
            cx.type_error(at, "a list");
            None
        }
    }
}

fn as_str<'b>(cx: &mut Cx, at: &'b At) -> Option<&'b str> {
    match &at.node.value {
        NodeValue::String(s) => Some(s),
        _ => {
            cx.type_error(at, "a string");
            None
        }
    }
}

fn as_int(cx: &mut Cx, at: &At, min: i64, max: i64) -> Option<i64> {
    let v = match at.node.value {
        NodeValue::Int(i) => i,
        NodeValue::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => f as i64,
        _ => {
            cx.type_error(at, "an integer");
            return None;
        }
    };
    if !(min..=max).contains(&v) {
        cx.bad(at, "is out of range", Some(&format!("an integer from {min} to {max}")));
        return None;
    }
    Some(v)
}

fn as_number(cx: &mut Cx, at: &At) -> Option<f64> {
    match at.node.value {
        NodeValue::Int(i) => Some(i as f64),
        NodeValue::Float(f) if f.is_finite() => Some(f),
        NodeValue::Float(_) => {
            cx.bad(at, "must be a finite number", None);
            None
        }
        _ => {
            cx.type_error(at, "a number");
            None
        }
    }
}

fn as_name(cx: &mut Cx, at: &At) -> Option<Name> {
    let s = as_str(cx, at)?;
    match Name::parse(s) {
        Ok(n) => Some(n),
        Err(e) => {
            cx.bad(at, format!("invalid name: {e}"), Some(NAME_PATTERN));
            None
        }
    }
}

fn as_choice<'c>(cx: &mut Cx, at: &At, choices: &[&'c str]) -> Option<&'c str> {
    let s = as_str(cx, at)?;
    match choices.iter().find(|c| **c == s) {
        Some(c) => Some(c),
        None => {
            cx.bad(at, "is not one of the allowed values", Some(&choices.join(", ")));
            None
        }
    }
}

fn as_exception_type(cx: &mut Cx, at: &At) -> Option<ExceptionType> {
    let s = as_str(cx, at)?;
    match ExceptionType::parse(s) {
        Ok(t) => Some(t),
        Err(e) => {
            cx.bad(at, e.to_string(), Some(EXCEPTION_TYPES_ALLOWED));
            None
        }
    }
}

const EXCEPTION_TYPES_ALLOWED: &str = "Step.SERVICE_FAULT, Step.THROTTLING, Step.TIMEOUT, Job.INTERNAL_ERROR, Job.CAPACITY_ERROR, Job.RESOURCE_LIMIT, Action.FAILED (aliases SageMaker.*), or a custom name [A-Za-z0-9._-]{1,100}";

/// A scalar as a string: strings as they are, numbers and booleans as written in JSON.
fn scalar_text(n: &Node) -> Option<String> {
    match &n.value {
        NodeValue::String(s) => Some(s.clone()),
        NodeValue::Int(i) => Some(i.to_string()),
        NodeValue::Float(f) if f.is_finite() => Some(n.to_json().to_string()),
        NodeValue::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn check_keys(cx: &mut Cx, obj: &Obj, allowed: &[&str], ignored: &[&str]) {
    for (k, v) in obj.entries {
        if allowed.contains(&k.as_str()) || ignored.contains(&k.as_str()) {
            continue;
        }
        let mut message = format!("unknown field {}", quote(k));
        if let Some(s) = suggest(k, allowed) {
            message.push_str(&format!("; did you mean {s}?"));
        }
        let mut allowed_text = allowed.join(", ");
        if !ignored.is_empty() {
            allowed_text.push_str(&format!(" (accepted and ignored: {})", ignored.join(", ")));
        }
        cx.report(&key_path(&obj.path, k), v.line, k, None, message, Some(allowed_text));
    }
}

/// The allowed key closest to a misspelt one, when one is close.
fn suggest<'c>(key: &str, allowed: &[&'c str]) -> Option<&'c str> {
    let lower = key.to_ascii_lowercase();
    let best = allowed.iter().map(|a| (strsim::levenshtein(&lower, &a.to_ascii_lowercase()), *a)).min_by_key(|(d, _)| *d)?;
    let limit = match key.chars().count() {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    (best.0 <= limit).then_some(best.1)
}

/// The name as written, for messages (`Build`), or a placeholder.
fn label_of(obj: &Obj, fallback: String) -> String {
    match obj.get("name").map(|n| &n.value) {
        Some(NodeValue::String(s)) if !s.is_empty() => s.clone(),
        _ => fallback,
    }
}

fn required<'a>(cx: &mut Cx, obj: &Obj<'a>, key: &str) -> Option<At<'a>> {
    let at = obj.at(key);
    if at.is_none() {
        cx.missing(obj, key, None, None);
    }
    at
}

// ---------------------------------------------------------------------------
// Pipeline and stages

fn execution_mode_str(m: ExecutionMode) -> &'static str {
    match m {
        ExecutionMode::Superseded => "SUPERSEDED",
        ExecutionMode::Queued => "QUEUED",
        ExecutionMode::Parallel => "PARALLEL",
    }
}

fn pipeline(cx: &mut Cx, node: &Node) -> Option<Pipeline> {
    let root = At { node: Cow::Borrowed(node), path: "$".into(), field: String::new() };
    let NodeValue::Map(entries) = &node.value else {
        cx.bad(&root, format!("a pipeline definition must be a map, found {}", kind_name(node)), None);
        return None;
    };
    let root_obj = Obj { node, path: "$".into(), entries };
    let wrapped = root_obj.at("pipeline");
    let obj = match &wrapped {
        Some(w) => {
            check_keys(cx, &root_obj, &["pipeline"], &["tags", "metadata"]);
            as_map(cx, w)?
        }
        None => root_obj,
    };
    check_keys(cx, &obj, PIPELINE_KEYS, PIPELINE_IGNORED);

    let name = required(cx, &obj, "name").and_then(|a| as_name(cx, &a));
    let mode = match obj.at("executionMode") {
        None => Some(ExecutionMode::Superseded),
        Some(a) => as_choice(cx, &a, &["SUPERSEDED", "QUEUED", "PARALLEL"]).map(|s| match s {
            "QUEUED" => ExecutionMode::Queued,
            "PARALLEL" => ExecutionMode::Parallel,
            _ => ExecutionMode::Superseded,
        }),
    };
    let mut max_concurrent = Some(DEFAULT_MAX_CONCURRENT_EXECUTIONS);
    if let Some(a) = obj.at("maxConcurrentExecutions") {
        max_concurrent = as_int(cx, &a, 1, MAX_CONCURRENT_EXECUTIONS).map(|v| v as u32);
        if let Some(m) = mode.filter(|m| *m != ExecutionMode::Parallel) {
            let how = if obj.has("executionMode") { "is" } else { "defaults to" };
            cx.bad(
                &a,
                format!(
                    "maxConcurrentExecutions is only allowed with executionMode PARALLEL (executionMode {how} {})",
                    execution_mode_str(m)
                ),
                Some("omit maxConcurrentExecutions, or set executionMode: PARALLEL"),
            );
            max_concurrent = None;
        }
    }
    let dead_letter_queue = match obj.at("deadLetterQueue") {
        Some(a) => as_name(cx, &a).map(Some),
        None => Some(None),
    };
    let retention_days = match obj.at("retentionDays") {
        Some(a) => as_int(cx, &a, 1, i64::from(crate::limits::MAX_RETENTION_DAYS)).map(|d| Some(d as u32)),
        None => Some(None),
    };
    let dependencies = match obj.at("dependencies") {
        Some(a) => dependencies::dependency_list(cx, &a),
        None => Some(Vec::new()),
    };
    let stages = stages(cx, &obj);
    Some(Pipeline {
        name: name?,
        execution_mode: mode?,
        max_concurrent_executions: max_concurrent?,
        stages: stages?,
        dead_letter_queue: dead_letter_queue?,
        retention_days: retention_days?,
        dependencies: dependencies?,
    })
}

fn stages(cx: &mut Cx, obj: &Obj) -> Option<Vec<Stage>> {
    let no_stages = "the pipeline has no stages; add at least one stage".to_string();
    let Some(at) = obj.at("stages") else {
        cx.missing(obj, "stages", Some(no_stages), Some(&format!("a list of 1 to {MAX_STAGES} stages")));
        return None;
    };
    let items = as_seq(cx, &at)?;
    let mut ok = true;
    if items.is_empty() {
        cx.bad(&at, no_stages, Some(&format!("a list of 1 to {MAX_STAGES} stages")));
        ok = false;
    }
    if !cx.within_limit(&at, items.len(), MAX_STAGES, "stages", "too many stages") {
        ok = false;
    }
    let mut out = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, item) in items.iter() {
        if let Some(NodeValue::String(n)) = item.node.get("name").map(|n| &n.value) {
            let name_path = key_path(&item.path, "name");
            if let Some(first) = seen.get(n) {
                let name_node = item.node.get("name").expect("checked above");
                cx.report(
                    &name_path,
                    name_node.line,
                    "name",
                    Some(quote(n)),
                    format!("duplicate stage name {} (also at {first}); stage names must be unique", quote(n)),
                    None,
                );
                ok = false;
            } else {
                seen.insert(n.clone(), item.path.clone());
            }
        }
        match stage(cx, &item, i) {
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn stage(cx: &mut Cx, at: &At, index: usize) -> Option<Stage> {
    let obj = as_map(cx, at)?;
    check_keys(cx, &obj, STAGE_KEYS, STAGE_IGNORED);
    let label = label_of(&obj, format!("#{index}"));
    let name = required(cx, &obj, "name").and_then(|a| as_name(cx, &a));
    let on_failure = match obj.at("onFailure") {
        None => Some(None),
        Some(a) => on_failure(cx, &a).map(Some),
    };
    let actions = actions(cx, &obj, &label);
    Some(Stage { name: name?, on_failure: on_failure?, actions: actions? })
}

fn on_failure(cx: &mut Cx, at: &At) -> Option<StageAutoRetry> {
    let obj = as_map(cx, at)?;
    check_keys(cx, &obj, ON_FAILURE_KEYS, ON_FAILURE_IGNORED);
    let result = match required(cx, &obj, "result") {
        None => None,
        Some(a) => match as_str(cx, &a) {
            Some("RETRY") => Some(()),
            Some("FAIL" | "ROLLBACK") => {
                cx.bad(&a, "only RETRY is supported as an onFailure result", Some("RETRY"));
                None
            }
            Some(_) => {
                cx.bad(&a, "is not an onFailure result; only RETRY is supported", Some("RETRY"));
                None
            }
            None => None,
        },
    };
    let retry_mode = match obj.at("retryConfiguration") {
        None => Some(RetryMode::FailedActions),
        Some(rc) => {
            let rc_obj = as_map(cx, &rc);
            match rc_obj {
                None => None,
                Some(rc_obj) => {
                    check_keys(cx, &rc_obj, &["retryMode"], &[]);
                    match obj_required_choice(cx, &rc_obj, "retryMode", &["FAILED_ACTIONS", "ALL_ACTIONS"]) {
                        Some("ALL_ACTIONS") => Some(RetryMode::AllActions),
                        Some(_) => Some(RetryMode::FailedActions),
                        None => None,
                    }
                }
            }
        }
    };
    let max_retries = match obj.at("maxRetries") {
        None => Some(1),
        Some(a) => as_int(cx, &a, 0, i64::from(MAX_STAGE_AUTO_RETRIES)).map(|v| v as u32),
    };
    result?;
    Some(StageAutoRetry { retry_mode: retry_mode?, max_retries: max_retries? })
}

fn obj_required_choice<'c>(cx: &mut Cx, obj: &Obj, key: &str, choices: &[&'c str]) -> Option<&'c str> {
    let a = required(cx, obj, key)?;
    as_choice(cx, &a, choices)
}

fn actions(cx: &mut Cx, obj: &Obj, stage_label: &str) -> Option<Vec<Action>> {
    let no_actions = format!("stage {stage_label} has no actions; add at least one action");
    let allowed = format!("a list of 1 to {MAX_ACTIONS_PER_STAGE} actions");
    let Some(at) = obj.at("actions") else {
        cx.missing(obj, "actions", Some(no_actions), Some(&allowed));
        return None;
    };
    let items = as_seq(cx, &at)?;
    let mut ok = true;
    if items.is_empty() {
        cx.bad(&at, no_actions, Some(&allowed));
        ok = false;
    }
    if !cx.within_limit(&at, items.len(), MAX_ACTIONS_PER_STAGE, "actions", format!("stage {stage_label} has too many actions")) {
        ok = false;
    }
    let mut out = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, item) in items.iter() {
        if let Some(name_node) = item.node.get("name")
            && let NodeValue::String(n) = &name_node.value
        {
            if let Some(first) = seen.get(n) {
                cx.report(
                    &key_path(&item.path, "name"),
                    name_node.line,
                    "name",
                    Some(quote(n)),
                    format!("duplicate action name {} in stage {stage_label} (also at {first})", quote(n)),
                    Some("action names unique within their stage".into()),
                );
                ok = false;
            } else {
                seen.insert(n.clone(), item.path.clone());
            }
        }
        match action(cx, &item, stage_label, i) {
            Some(a) => out.push(a),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

// ---------------------------------------------------------------------------
// Actions

fn action(cx: &mut Cx, at: &At, stage_label: &str, index: usize) -> Option<Action> {
    let obj = as_map(cx, at)?;
    check_keys(cx, &obj, ACTION_KEYS, ACTION_IGNORED);
    let label = format!("{stage_label}/{}", label_of(&obj, format!("#{index}")));
    let name = required(cx, &obj, "name").and_then(|a| as_name(cx, &a));
    let run_order = match obj.at("runOrder") {
        None => Some(1),
        Some(a) => as_int(cx, &a, 1, i64::from(MAX_RUN_ORDER)).map(|v| v as u32),
    };

    let kinds: Vec<&str> = KIND_KEYS.iter().copied().filter(|k| obj.has(k)).collect();
    let mut wire = WireExtras::default();
    let kind = match kinds.as_slice() {
        [] => {
            cx.report(&obj.path, obj.node.line, "", None, format!("action {label} does not say what it runs"), Some(KINDS_ALLOWED.into()));
            None
        }
        ["command"] => command_short(cx, &obj),
        ["http"] => http_short(cx, &obj),
        ["noop"] => noop_short(cx, &obj),
        ["function"] => obj.at("function").and_then(|a| as_name(cx, &a)).map(|n| ActionKind::Function(FunctionSpec { function_name: n })),
        ["actionTypeId"] => wire_kind(cx, &obj, &label, &mut wire),
        [first, rest @ ..] => {
            for k in rest {
                let a = obj.at(k).expect("present");
                cx.report(
                    &a.path,
                    a.node.line,
                    k,
                    None,
                    format!("action {label} has more than one kind ({first} and {k})"),
                    Some(KINDS_ALLOWED.into()),
                );
            }
            None
        }
    };
    let mut ok = kind.is_some();

    if kinds.len() == 1 && kinds[0] != "command" {
        for k in COMMAND_SIBLINGS {
            if let Some(a) = obj.at(k) {
                let message = if kinds[0] == "actionTypeId" {
                    format!(
                        "{k} is only allowed beside command; in the wire form use configuration keys (Env, SecretEnv, WorkingDirectory, ExitCodes) with provider Command"
                    )
                } else {
                    format!("{k} is only allowed on command actions, and action {label} is a {} action", kinds[0])
                };
                cx.report(&a.path, a.node.line, k, None, message, None);
                ok = false;
            }
        }
    }
    if !kinds.contains(&"actionTypeId")
        && let Some(a) = obj.at("configuration")
    {
        cx.report(
            &a.path,
            a.node.line,
            "configuration",
            None,
            "configuration is only used with actionTypeId (the CodePipeline wire form)",
            Some("actionTypeId with configuration, or one shorthand kind key without configuration".into()),
        );
        ok = false;
    }

    let mut timeouts: Vec<At> = obj.at("timeoutSeconds").into_iter().collect();
    timeouts.extend(wire.timeout.take());
    if timeouts.len() > 1 {
        let a = &timeouts[1];
        cx.report(
            &a.path,
            a.node.line,
            &a.field,
            None,
            format!("action {label} sets its timeout twice: timeoutSeconds and configuration.TimeoutSeconds; give one"),
            None,
        );
        ok = false;
    }
    let timeout_seconds = match timeouts.first() {
        None => Some(None),
        Some(a) => as_int(cx, a, 1, MAX_TIMEOUT_SECONDS as i64).map(|v| Some(v as u64)),
    };

    let mut lists: Vec<At> = POLICY_LIST_KEYS.iter().filter_map(|k| obj.at(k)).collect();
    lists.extend(wire.retry.take());
    if lists.len() > 1 {
        for a in &lists[1..] {
            let first = &lists[0];
            cx.report(
                &a.path,
                a.node.line,
                &a.field,
                None,
                format!("action {label} has two lists of retry policies ({} and {}); give one", first.path_tail(), a.path_tail()),
                None,
            );
        }
        ok = false;
    }
    let retry_policies = match lists.first() {
        None => Some(Vec::new()),
        Some(a) => policies(cx, a, &label),
    };

    let on_exhausted = match given_once(cx, obj.at("onExhausted"), wire.on_exhausted.take(), &label, "its exhaustion behaviour") {
        Err(()) => None,
        Ok(None) => Some(OnExhausted::Fail),
        Ok(Some(a)) => on_exhausted(cx, &a, &label),
    };
    let dependency_at = given_once(cx, obj.at("dependency"), wire.dependency.take(), &label, "its dependency");
    let concurrency = match given_once(cx, obj.at("concurrency"), wire.concurrency.take(), &label, "its concurrency") {
        Err(()) => None,
        Ok(Some(a)) => concurrency::concurrency(cx, &a).map(Some),
        Ok(None) => Some(None),
    };
    let kind = kind?;
    let dependency = match dependency_at {
        Err(()) => None,
        Ok(Some(a)) => dependencies::reference(cx, &a).map(Some),
        Ok(None) => Some(match &kind {
            ActionKind::Http(h) => url_host(&h.url),
            _ => None,
        }),
    };

    let action = Action {
        name: name?,
        run_order: run_order?,
        kind,
        retry_policies: retry_policies?,
        timeout_seconds: timeout_seconds?,
        dependency: dependency?,
        on_exhausted: on_exhausted?,
        concurrency: concurrency?,
    };
    ok.then_some(action)
}

/// The one of an action member and its wire configuration key that is given
/// (`Err` after reporting both given).
fn given_once<'a>(cx: &mut Cx, native: Option<At<'a>>, wire: Option<At<'a>>, label: &str, what: &str) -> Result<Option<At<'a>>, ()> {
    match (native, wire) {
        (Some(n), Some(w)) => {
            let message = format!("action {label} sets {what} twice: {} and {}; give one", n.path_tail(), w.path_tail());
            cx.report(&w.path, w.node.line, &w.field, None, message, None);
            Err(())
        }
        (n, w) => Ok(n.or(w)),
    }
}

/// An action's `onExhausted`: FAIL or PAUSE.
fn on_exhausted(cx: &mut Cx, a: &At, label: &str) -> Option<OnExhausted> {
    let s = as_str(cx, a)?;
    let parsed = OnExhausted::parse(s);
    if parsed.is_none() {
        cx.bad(a, format!("action {label}, onExhausted: is not an exhaustion behaviour"), Some(OnExhausted::ALLOWED));
    }
    parsed
}

impl At<'_> {
    /// The path from the action on, for messages: `retryPolicies`, `configuration.RetryPolicies`.
    fn path_tail(&self) -> String {
        if let Some(i) = self.path.rfind(".configuration.") { self.path[i + 1..].to_string() } else { self.field.clone() }
    }
}

fn command_short(cx: &mut Cx, obj: &Obj) -> Option<ActionKind> {
    let argv = obj.at("command").expect("kind key present");
    let settings =
        CommandSettings { env: obj.at("env"), secret_env: obj.at("secretEnv"), wd: obj.at("workingDirectory"), exit: obj.at("exitCodes") };
    command_spec(cx, &argv, settings)
}

/// A command's settings beside its argv, where the definition gives them.
struct CommandSettings<'a> {
    env: Option<At<'a>>,
    secret_env: Option<At<'a>>,
    wd: Option<At<'a>>,
    exit: Option<At<'a>>,
}

fn command_spec(cx: &mut Cx, argv_at: &At, settings: CommandSettings) -> Option<ActionKind> {
    let CommandSettings { env, secret_env, wd, exit } = settings;
    let argv = argv(cx, argv_at);
    let env = match &env {
        None => Some(BTreeMap::new()),
        Some(a) => string_map(cx, a, MapKind::Env),
    };
    let secret_env = match (&secret_env, &env) {
        (None, _) => Some(Vec::new()),
        (Some(a), env) => secret_names(cx, a, env.as_ref()),
    };
    let working_directory = match &wd {
        None => Some(None),
        Some(a) => match as_str(cx, a) {
            Some("") => {
                cx.bad(a, "must not be empty", Some("a directory path"));
                None
            }
            Some(s) if s.contains('\0') => {
                cx.bad(a, "must not contain a NUL character", None);
                None
            }
            Some(s) => Some(Some(s.to_string())),
            None => None,
        },
    };
    let exit_codes = match &exit {
        None => Some(BTreeMap::new()),
        Some(a) => exit_codes(cx, a),
    };
    Some(ActionKind::Command(CommandSpec {
        argv: argv?,
        env: env?,
        secret_env: secret_env?,
        working_directory: working_directory?,
        exit_codes: exit_codes?,
    }))
}

/// Whether `s` is a portable environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_env_var_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_') && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `secretEnv`: distinct variable names, none also in `env` nor a `REDRIVE_`
/// variable the engine sets, at most [`crate::limits::MAX_SECRET_ENV`].
fn secret_names(cx: &mut Cx, at: &At, env: Option<&BTreeMap<String, String>>) -> Option<Vec<String>> {
    let items = as_seq(cx, at)?;
    if !cx.within_limit(at, items.len(), crate::limits::MAX_SECRET_ENV, "names", "has too many names") {
        return None;
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (_, item) in items.iter() {
        let Some(name) = scalar_text(&item.node) else {
            cx.type_error(&item, "a string (an environment variable name)");
            ok = false;
            continue;
        };
        let problem = if !is_env_var_name(&name) || name.len() > crate::limits::MAX_ENV_NAME_CHARS {
            Some("must be an environment variable name")
        } else if name.starts_with("REDRIVE_") {
            Some("REDRIVE_ variables are set by the engine")
        } else if env.is_some_and(|e| e.contains_key(&name)) {
            Some("is also in env; a variable is either plain (env) or secret (secretEnv)")
        } else if out.contains(&name) {
            Some("is listed twice")
        } else {
            None
        };
        match problem {
            Some(m) => {
                let allowed = format!("[A-Za-z_][A-Za-z0-9_]* up to {} characters, not in env", crate::limits::MAX_ENV_NAME_CHARS);
                cx.bad(&item, m, Some(&allowed));
                ok = false;
            }
            None => out.push(name),
        }
    }
    ok.then_some(out)
}

fn argv(cx: &mut Cx, at: &At) -> Option<Vec<String>> {
    let items = as_seq(cx, at)?;
    if items.is_empty() {
        cx.bad(at, "must name at least the program to run", Some("a non-empty list of strings (argv)"));
        return None;
    }
    if !cx.within_limit(at, items.len(), MAX_ARGV_ITEMS, "items", "has too many items") {
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter() {
        match scalar_text(&item.node) {
            Some(s) if s.contains('\0') => {
                cx.bad(&item, "must not contain a NUL character", None);
                ok = false;
            }
            Some(s) if i == 0 && s.is_empty() => {
                cx.bad(&item, "the program (argv[0]) must not be empty", None);
                ok = false;
            }
            Some(s) => out.push(s),
            None => {
                cx.type_error(&item, "a string");
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

#[derive(Clone, Copy, PartialEq)]
enum MapKind {
    Env,
    Headers,
}

/// A map of strings; number and boolean values are turned into their text.
fn string_map(cx: &mut Cx, at: &At, kind: MapKind) -> Option<BTreeMap<String, String>> {
    if matches!(at.node.value, NodeValue::Null) {
        return Some(BTreeMap::new());
    }
    let obj = as_map(cx, at)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in obj.entries {
        let entry = obj.at_entry(k, v);
        let key_problem = match kind {
            MapKind::Env if k.is_empty() || k.contains('=') || k.contains('\0') => {
                Some("environment variable names must be non-empty and contain neither '=' nor NUL")
            }
            MapKind::Headers if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') => {
                Some("header names must be non-empty printable ASCII without ':' or spaces")
            }
            _ => None,
        };
        if let Some(m) = key_problem {
            cx.report(&entry.path, v.line, k, Some(quote(k)), m, None);
            ok = false;
            continue;
        }
        match scalar_text(v) {
            Some(s) if kind == MapKind::Env && s.contains('\0') => {
                cx.bad(&entry, "must not contain a NUL character", None);
                ok = false;
            }
            Some(s) if kind == MapKind::Headers && (s.contains('\r') || s.contains('\n')) => {
                cx.bad(&entry, "header values must not contain line breaks", None);
                ok = false;
            }
            Some(s) => {
                out.insert(k.clone(), s);
            }
            None => {
                cx.type_error(&entry, "a string");
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

fn exit_codes(cx: &mut Cx, at: &At) -> Option<BTreeMap<i32, ExceptionType>> {
    if matches!(at.node.value, NodeValue::Null) {
        return Some(BTreeMap::new());
    }
    let obj = as_map(cx, at)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in obj.entries {
        let entry = obj.at_entry(k, v);
        let code = (!k.is_empty() && k.len() <= 3 && k.bytes().all(|b| b.is_ascii_digit()))
            .then(|| k.parse::<i32>().ok())
            .flatten()
            .filter(|c| (0..=255).contains(c));
        let Some(code) = code else {
            cx.report(
                &entry.path,
                v.line,
                k,
                Some(quote(k)),
                "is not an exit code",
                Some("an exit code from 0 to 255, written in decimal".into()),
            );
            ok = false;
            continue;
        };
        match as_exception_type(cx, &entry) {
            Some(t) => {
                out.insert(code, t);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn http_short(cx: &mut Cx, obj: &Obj) -> Option<ActionKind> {
    let at = obj.at("http").expect("kind key present");
    let h = as_map(cx, &at)?;
    check_keys(cx, &h, &["method", "url", "headers", "secretHeaders", "body", "redirects"], &[]);
    let url = required(cx, &h, "url");
    let spec = http_spec(cx, h.at("method"), url, h.at("headers"), h.at("body"));
    let spec = with_secret_headers(cx, spec, h.at("secretHeaders"));
    with_redirects(cx, spec, h.at("redirects"))
}

/// `spec` with its `redirects` mode (`SAME_ORIGIN`, `ANY_ORIGIN`, `NONE`;
/// checked even when the rest of the spec was refused).
fn with_redirects(cx: &mut Cx, spec: Option<ActionKind>, at: Option<At>) -> Option<ActionKind> {
    let Some(at) = at else { return spec };
    let mode = match &at.node.value {
        NodeValue::String(_) => as_choice(cx, &at, &RedirectMode::NAMES).and_then(RedirectMode::parse),
        _ => {
            cx.type_error(&at, &format!("one of {}", RedirectMode::NAMES.join(", ")));
            None
        }
    };
    match spec {
        Some(ActionKind::Http(mut spec)) => {
            spec.redirects = Some(mode?);
            Some(ActionKind::Http(spec))
        }
        other => other,
    }
}

/// `spec` with its `secretHeaders` (checked even when the rest of the spec
/// was refused, so every problem is reported at once).
fn with_secret_headers(cx: &mut Cx, spec: Option<ActionKind>, at: Option<At>) -> Option<ActionKind> {
    let Some(at) = at else { return spec };
    let secret = secret_headers(cx, &at, spec.as_ref());
    match spec {
        Some(ActionKind::Http(mut spec)) => {
            spec.secret_headers = secret?;
            Some(ActionKind::Http(spec))
        }
        other => other,
    }
}

/// `url` is `None` when it is missing (already reported).
fn http_spec(cx: &mut Cx, method: Option<At>, url: Option<At>, headers: Option<At>, body: Option<At>) -> Option<ActionKind> {
    let method = match &method {
        None => Some("POST".to_string()),
        Some(a) => match as_str(cx, a) {
            Some(s) if !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_uppercase()) => Some(s.to_string()),
            Some(_) => {
                cx.bad(a, "is not an HTTP method", Some("an upper-case token such as GET, POST, PUT, PATCH, DELETE"));
                None
            }
            None => None,
        },
    };
    let url = match &url {
        None => None,
        Some(a) => match as_str(cx, a) {
            Some(s) => {
                let rest = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://"));
                match rest {
                    Some(r) if !r.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control()) => Some(s.to_string()),
                    _ => {
                        cx.bad(a, "is not an http:// or https:// URL", Some("an absolute URL starting with http:// or https://"));
                        None
                    }
                }
            }
            None => None,
        },
    };
    let headers = match &headers {
        None => Some(BTreeMap::new()),
        Some(a) => string_map(cx, a, MapKind::Headers),
    };
    let body = body.and_then(|a| match a.node.value {
        NodeValue::Null => None,
        _ => Some(a.node.to_json()),
    });
    Some(ActionKind::Http(HttpSpec {
        method: method?,
        url: url?,
        headers: headers?,
        secret_headers: BTreeMap::new(),
        body,
        redirects: None,
    }))
}

/// Longest `prefix` of a secret header.
const MAX_SECRET_HEADER_PREFIX_CHARS: usize = 100;

/// `secretHeaders`: header name → `{secretEnv: NAME, prefix: "Bearer "}`; a name
/// not also in `headers`, a secret named as in `secretEnv`, at most
/// [`crate::limits::MAX_SECRET_ENV`] of them.
fn secret_headers(cx: &mut Cx, at: &At, spec: Option<&ActionKind>) -> Option<BTreeMap<String, SecretHeader>> {
    if matches!(at.node.value, NodeValue::Null) {
        return Some(BTreeMap::new());
    }
    let plain: Vec<String> = match spec {
        Some(ActionKind::Http(s)) => s.headers.keys().map(|k| k.to_ascii_lowercase()).collect(),
        _ => Vec::new(),
    };
    let obj = as_map(cx, at)?;
    if !cx.within_limit(at, obj.entries.len(), crate::limits::MAX_SECRET_ENV, "headers", "has too many headers") {
        return None;
    }
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (k, v) in obj.entries {
        let entry = obj.at_entry(k, v);
        let key_problem = if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            Some("header names must be non-empty printable ASCII without ':' or spaces")
        } else if plain.contains(&k.to_ascii_lowercase()) {
            Some("is also in headers; a header is either plain (headers) or secret (secretHeaders)")
        } else if out.keys().any(|o: &String| o.eq_ignore_ascii_case(k)) {
            Some("is listed twice (header names ignore case)")
        } else {
            None
        };
        if let Some(m) = key_problem {
            cx.report(&entry.path, v.line, k, Some(quote(k)), m, None);
            ok = false;
            continue;
        }
        match secret_header(cx, &entry) {
            Some(h) => {
                out.insert(k.clone(), h);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn secret_header(cx: &mut Cx, at: &At) -> Option<SecretHeader> {
    let h = as_map(cx, at)?;
    check_keys(cx, &h, &["secretEnv", "prefix"], &[]);
    let name = required(cx, &h, "secretEnv").and_then(|a| match scalar_text(&a.node) {
        Some(n) if is_env_var_name(&n) && n.len() <= crate::limits::MAX_ENV_NAME_CHARS && !n.starts_with("REDRIVE_") => Some(n),
        Some(_) => {
            let allowed = format!("[A-Za-z_][A-Za-z0-9_]* up to {} characters, not REDRIVE_*", crate::limits::MAX_ENV_NAME_CHARS);
            cx.bad(&a, "must be a secret's name (as in secretEnv)", Some(&allowed));
            None
        }
        None => {
            cx.type_error(&a, "a string (a secret's name)");
            None
        }
    });
    let prefix = match h.at("prefix") {
        None => Some(String::new()),
        Some(a) => match scalar_text(&a.node) {
            Some(p) if p.chars().count() <= MAX_SECRET_HEADER_PREFIX_CHARS && !p.chars().any(|c| c.is_control()) => Some(p),
            Some(_) => {
                let allowed = format!("up to {MAX_SECRET_HEADER_PREFIX_CHARS} characters, no line breaks or control characters");
                cx.bad(&a, "is not a header value prefix", Some(&allowed));
                None
            }
            None => {
                cx.type_error(&a, "a string (sent before the secret, e.g. \"Bearer \")");
                None
            }
        },
    };
    Some(SecretHeader { secret_env: name?, prefix: prefix? })
}

fn noop_short(cx: &mut Cx, obj: &Obj) -> Option<ActionKind> {
    let at = obj.at("noop").expect("kind key present");
    if matches!(at.node.value, NodeValue::Null) {
        return noop_spec(cx, None, None, None, None);
    }
    let n = as_map(cx, &at)?;
    check_keys(cx, &n, &["failFirst", "failWith", "sleepMs", "retryAfterSeconds"], &[]);
    noop_spec(cx, n.at("failFirst"), n.at("failWith"), n.at("sleepMs"), n.at("retryAfterSeconds"))
}

fn noop_spec(
    cx: &mut Cx,
    fail_first: Option<At>,
    fail_with: Option<At>,
    sleep_ms: Option<At>,
    retry_after: Option<At>,
) -> Option<ActionKind> {
    let fail_first = match &fail_first {
        None => Some(0),
        Some(a) => as_int(cx, a, 0, 1000).map(|v| v as u32),
    };
    let fail_with = match &fail_with {
        None => Some(ExceptionType::ActionFailed),
        Some(a) => as_exception_type(cx, a),
    };
    let sleep_ms = match &sleep_ms {
        None => Some(0),
        Some(a) => as_int(cx, a, 0, 3_600_000).map(|v| v as u64),
    };
    let retry_after_seconds = match &retry_after {
        None => Some(None),
        Some(a) => match as_number(cx, a) {
            Some(v) if (0.0..=43_200.0).contains(&v) => Some(Some(v)),
            Some(_) => {
                cx.bad(a, "is out of range", Some("a number from 0 to 43200"));
                None
            }
            None => None,
        },
    };
    Some(ActionKind::Noop(NoopSpec {
        fail_first: fail_first?,
        fail_with: fail_with?,
        sleep_ms: sleep_ms?,
        retry_after_seconds: retry_after_seconds?,
    }))
}

// ---------------------------------------------------------------------------
// The CodePipeline wire form: actionTypeId + configuration

#[derive(Default)]
struct WireExtras<'a> {
    timeout: Option<At<'a>>,
    retry: Option<At<'a>>,
    on_exhausted: Option<At<'a>>,
    dependency: Option<At<'a>>,
    concurrency: Option<At<'a>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Conf {
    /// A JSON document in a string.
    Json,
    /// JSON when it parses, else the string itself.
    Body,
    /// A number in a string.
    Number,
    /// A plain string.
    Text,
}

/// Configuration keys of every provider: members of the action itself.
const ACTION_CONF_KEYS: &[(&str, Conf)] = &[
    ("TimeoutSeconds", Conf::Number),
    ("RetryPolicies", Conf::Json),
    ("OnExhausted", Conf::Text),
    ("Dependency", Conf::Text),
    ("Concurrency", Conf::Json),
];

/// A provider's own configuration keys (besides [`ACTION_CONF_KEYS`]).
fn conf_keys(provider: &str) -> &'static [(&'static str, Conf)] {
    match provider {
        "Command" => &[
            ("Command", Conf::Json),
            ("Env", Conf::Json),
            ("SecretEnv", Conf::Json),
            ("WorkingDirectory", Conf::Text),
            ("ExitCodes", Conf::Json),
        ],
        "Http" => &[
            ("Url", Conf::Text),
            ("Method", Conf::Text),
            ("Headers", Conf::Json),
            ("SecretHeaders", Conf::Json),
            ("Body", Conf::Body),
            ("Redirects", Conf::Text),
        ],
        "Function" => &[("FunctionName", Conf::Text)],
        _ => &[("FailFirst", Conf::Number), ("FailWith", Conf::Text), ("SleepMs", Conf::Number), ("RetryAfterSeconds", Conf::Number)],
    }
}

/// Sets every line of a decoded tree to the line of the string it came from.
fn relined(mut n: Node, line: u32) -> Node {
    n.line = line;
    n.value = match n.value {
        NodeValue::Seq(items) => NodeValue::Seq(items.into_iter().map(|i| relined(i, line)).collect()),
        NodeValue::Map(entries) => NodeValue::Map(entries.into_iter().map(|(k, v)| (k, relined(v, line))).collect()),
        other => other,
    };
    n
}

/// Decodes one configuration value; `None` after reporting a problem.
fn conf_value<'a>(cx: &mut Cx, at: At<'a>, conf: Conf) -> Option<At<'a>> {
    let NodeValue::String(s) = &at.node.value else {
        // Already structured (YAML written by hand): use it as it is.
        return Some(at);
    };
    let line = at.node.line;
    let node = match conf {
        Conf::Text => return Some(at),
        Conf::Number => Node { line, value: resolve_plain(s.trim()) },
        Conf::Json => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(v) => relined(Node::from_json(&v), line),
            Err(e) => {
                cx.bad(&at, format!("is not valid JSON: {e}"), Some("a JSON document in a string"));
                return None;
            }
        },
        Conf::Body => match serde_json::from_str::<serde_json::Value>(s) {
            Ok(v) => relined(Node::from_json(&v), line),
            Err(_) => return Some(at),
        },
    };
    Some(At { node: Cow::Owned(node), path: at.path, field: at.field })
}

fn wire_kind<'a>(cx: &mut Cx, obj: &Obj<'a>, label: &str, extras: &mut WireExtras<'a>) -> Option<ActionKind> {
    let type_at = obj.at("actionTypeId").expect("kind key present");
    let provider: Option<&'static str> = {
        let t = as_map(cx, &type_at);
        match t {
            None => None,
            Some(t) => {
                check_keys(cx, &t, &["category", "owner", "provider", "version"], &[]);
                for k in ["category", "owner", "version"] {
                    if let Some(a) = t.at(k) {
                        as_str(cx, &a);
                    }
                }
                match required(cx, &t, "provider") {
                    None => None,
                    Some(p) => as_choice(cx, &p, PROVIDERS),
                }
            }
        }
    };
    let conf_obj = match obj.has("configuration") {
        false => None,
        true => Some(as_map_in(cx, obj, "configuration")?),
    };
    let provider = provider?;
    let keys = conf_keys(provider);
    let mut values: HashMap<&'static str, At<'a>> = HashMap::new();
    let mut ok = true;
    match &conf_obj {
        None => {
            if provider != "Noop" {
                let needs = match provider {
                    "Command" => "Command",
                    "Http" => "Url",
                    _ => "FunctionName",
                };
                cx.missing(
                    obj,
                    "configuration",
                    Some(format!("action {label}: actionTypeId provider {provider} needs configuration with {needs}")),
                    None,
                );
                return None;
            }
        }
        Some(c) => {
            let allowed: Vec<&str> = keys.iter().chain(ACTION_CONF_KEYS).map(|(k, _)| *k).collect();
            check_keys(cx, c, &allowed, &[]);
            for (k, conf) in keys.iter().chain(ACTION_CONF_KEYS) {
                if let Some(a) = c.at(k) {
                    match conf_value(cx, a, *conf) {
                        Some(v) => {
                            values.insert(k, v);
                        }
                        None => ok = false,
                    }
                }
            }
        }
    }
    extras.timeout = values.remove("TimeoutSeconds");
    extras.retry = values.remove("RetryPolicies");
    extras.on_exhausted = values.remove("OnExhausted");
    extras.dependency = values.remove("Dependency");
    extras.concurrency = values.remove("Concurrency");
    let mut take = |k: &str| values.remove(k);
    let kind = match provider {
        "Command" => {
            let argv = take("Command");
            let settings =
                CommandSettings { env: take("Env"), secret_env: take("SecretEnv"), wd: take("WorkingDirectory"), exit: take("ExitCodes") };
            match argv {
                Some(argv) => command_spec(cx, &argv, settings),
                None => {
                    if ok {
                        cx.missing(conf_obj.as_ref().expect("present"), "Command", None, Some("a JSON array of strings (argv)"));
                    }
                    None
                }
            }
        }
        "Http" => {
            let url = take("Url");
            if url.is_none() && ok {
                cx.missing(conf_obj.as_ref().expect("present"), "Url", None, None);
            }
            let url_missing = url.is_none();
            let spec = http_spec(cx, take("Method"), url, take("Headers"), take("Body"));
            let spec = with_secret_headers(cx, spec, take("SecretHeaders"));
            let spec = with_redirects(cx, spec, take("Redirects"));
            if url_missing { None } else { spec }
        }
        "Function" => match take("FunctionName") {
            Some(a) => as_name(cx, &a).map(|n| ActionKind::Function(FunctionSpec { function_name: n })),
            None => {
                if ok {
                    cx.missing(conf_obj.as_ref().expect("present"), "FunctionName", None, Some(NAME_PATTERN));
                }
                None
            }
        },
        _ => noop_spec(cx, take("FailFirst"), take("FailWith"), take("SleepMs"), take("RetryAfterSeconds")),
    };
    if ok { kind } else { None }
}

// ---------------------------------------------------------------------------
// Retry policies

const CAMEL: u8 = 1;
const PASCAL: u8 = 2;
const SFN: u8 = 4;

/// Every policy key, the field it sets and the spellings it belongs to.
const POLICY_KEYS: &[(&str, PolicyField, u8)] = &[
    ("exceptionType", PolicyField::ExceptionType, CAMEL),
    ("intervalSeconds", PolicyField::IntervalSeconds, CAMEL),
    ("backoffRate", PolicyField::BackoffRate, CAMEL),
    ("maxAttempts", PolicyField::MaxAttempts, CAMEL),
    ("expireAfterMin", PolicyField::ExpireAfterMin, CAMEL),
    ("maxIntervalSeconds", PolicyField::MaxIntervalSeconds, CAMEL),
    ("jitter", PolicyField::Jitter, CAMEL),
    ("onExhausted", PolicyField::OnExhausted, CAMEL),
    ("ExceptionType", PolicyField::ExceptionType, PASCAL),
    ("IntervalSeconds", PolicyField::IntervalSeconds, PASCAL | SFN),
    ("BackoffRate", PolicyField::BackoffRate, PASCAL | SFN),
    ("MaxAttempts", PolicyField::MaxAttempts, PASCAL | SFN),
    ("ExpireAfterMin", PolicyField::ExpireAfterMin, PASCAL),
    ("MaxIntervalSeconds", PolicyField::MaxIntervalSeconds, PASCAL),
    ("Jitter", PolicyField::Jitter, PASCAL),
    ("OnExhausted", PolicyField::OnExhausted, PASCAL),
    ("ErrorEquals", PolicyField::ExceptionType, SFN),
    ("MaxDelaySeconds", PolicyField::MaxIntervalSeconds, SFN),
    ("JitterStrategy", PolicyField::Jitter, SFN),
];

const ALL_FIELDS: [PolicyField; 8] = [
    PolicyField::ExceptionType,
    PolicyField::IntervalSeconds,
    PolicyField::BackoffRate,
    PolicyField::MaxAttempts,
    PolicyField::ExpireAfterMin,
    PolicyField::MaxIntervalSeconds,
    PolicyField::Jitter,
    PolicyField::OnExhausted,
];

fn spelling_name(mask: u8) -> &'static str {
    match mask {
        CAMEL => "camelCase",
        PASCAL => "SageMaker PascalCase",
        SFN => "Step Functions",
        m if m == PASCAL | SFN => "SageMaker PascalCase or Step Functions",
        _ => "any spelling",
    }
}

/// The key for `field` in spelling `sp` (one bit).
fn key_for(field: PolicyField, sp: u8) -> &'static str {
    POLICY_KEYS
        .iter()
        .find(|(_, f, m)| *f == field && m & sp != 0)
        .or_else(|| POLICY_KEYS.iter().find(|(_, f, m)| *f == field && m & PASCAL != 0))
        .map(|(k, _, _)| *k)
        .unwrap_or_else(|| field.camel_case())
}

fn keys_of(sp: u8) -> Vec<&'static str> {
    POLICY_KEYS.iter().filter(|(_, _, m)| m & sp != 0).map(|(k, _, _)| *k).collect()
}

fn policies(cx: &mut Cx, at: &At, label: &str) -> Option<Vec<RetryPolicy>> {
    if matches!(at.node.value, NodeValue::Null) {
        return Some(Vec::new());
    }
    let preferred = match at.field.as_str() {
        "retryPolicies" => CAMEL,
        "Retry" => SFN,
        _ => PASCAL,
    };
    let items = as_seq(cx, at)?;
    let mut ok = true;
    if !cx.within_limit(at, items.len(), MAX_RETRY_POLICIES_PER_ACTION, "policies", format!("action {label} has too many retry policies")) {
        ok = false;
    }
    let mut out = Vec::new();
    for (i, item) in items.iter() {
        match policy(cx, &item, label, i + 1, preferred) {
            Some(p) => out.push(p),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn policy(cx: &mut Cx, at: &At, label: &str, number: usize, preferred: u8) -> Option<RetryPolicy> {
    let obj = as_map(cx, at)?;
    let mut mask = CAMEL | PASCAL | SFN;
    let mut known: Vec<(PolicyField, u8, At)> = Vec::new();
    let mut unknown: Vec<(&str, &Node)> = Vec::new();
    let mut conflict: Option<(String, At)> = None;
    for (k, v) in obj.entries {
        match POLICY_KEYS.iter().find(|(name, _, _)| name == k) {
            Some(&(_, field, m)) => {
                let a = obj.at_entry(k, v);
                if mask & m == 0 {
                    if conflict.is_none() {
                        let other = known
                            .iter()
                            .find(|(f, _, _)| *f == field)
                            .or_else(|| known.iter().find(|(_, om, _)| om & m == 0))
                            .or(known.first())
                            .map(|(_, _, o)| o.field.clone())
                            .unwrap_or_default();
                        conflict = Some((other, obj.at_entry(k, v)));
                    }
                } else {
                    mask &= m;
                }
                known.push((field, m, a));
            }
            None => unknown.push((k, v)),
        }
    }
    let sp = [preferred, CAMEL, PASCAL, SFN].into_iter().find(|b| mask & b != 0).unwrap_or(preferred);
    let allowed_keys = keys_of(sp);
    for (k, v) in &unknown {
        let mut message = format!("action {label}, policy #{number}: unknown field {}", quote(k));
        if let Some(s) = suggest(k, &allowed_keys) {
            message.push_str(&format!("; did you mean {s}?"));
        }
        cx.report(
            &key_path(&obj.path, k),
            v.line,
            k,
            None,
            message,
            Some(format!("{} ({} spelling)", allowed_keys.join(", "), spelling_name(sp))),
        );
    }
    if let Some((other, a)) = &conflict {
        let other_mask = POLICY_KEYS.iter().find(|(k, _, _)| k == other).map(|x| x.2).unwrap_or(0);
        let this_mask = POLICY_KEYS.iter().find(|(k, _, _)| *k == a.field).map(|x| x.2).unwrap_or(0);
        let message = format!(
            "action {label}, policy #{number} mixes spellings: {other} ({}) and {} ({}); write every key of one policy in one spelling",
            spelling_name(other_mask),
            a.field,
            spelling_name(this_mask)
        );
        cx.report(
            &a.path,
            a.node.line,
            &a.field,
            None,
            message,
            Some(format!(
                "camelCase ({}), SageMaker PascalCase ({}) or Step Functions ({})",
                keys_of(CAMEL).join(", "),
                keys_of(PASCAL).join(", "),
                keys_of(SFN).join(", ")
            )),
        );
        return None;
    }

    let mut spec = RetryPolicySpec::default();
    let mut failed: HashSet<PolicyField> = HashSet::new();
    let mut written: HashMap<PolicyField, &At> = HashMap::new();
    // For each entry of spec.exception_types: the list item it came from (None when
    // exceptionType was a single string).
    let mut type_items: Vec<Option<At>> = Vec::new();
    for (field, _, a) in &known {
        written.insert(*field, a);
        match field {
            PolicyField::ExceptionType => match &a.node.value {
                NodeValue::String(s) => {
                    spec.exception_types.push(s.clone());
                    type_items.push(None);
                }
                NodeValue::Seq(items) => {
                    let message = format!("action {label}, policy #{number} lists too many exception types");
                    if !cx.within_limit(a, items.len(), MAX_EXCEPTION_TYPES_PER_POLICY, "exception types", message) {
                        failed.insert(*field);
                        continue;
                    }
                    for (i, item) in items.iter().enumerate() {
                        let item_at = At { node: Cow::Borrowed(item), path: format!("{}[{i}]", a.path), field: a.field.clone() };
                        match &item.value {
                            NodeValue::String(s) => {
                                spec.exception_types.push(s.clone());
                                type_items.push(Some(item_at));
                            }
                            _ => {
                                cx.type_error(&item_at, "a string (an exception type)");
                                failed.insert(*field);
                            }
                        }
                    }
                }
                _ => {
                    cx.type_error(a, "an exception type or a list of exception types");
                    failed.insert(*field);
                }
            },
            PolicyField::Jitter => match as_str(cx, a) {
                Some(s) if a.field == "JitterStrategy" && s != "FULL" && s != "NONE" => {
                    cx.bad(
                        a,
                        format!("action {label}, policy #{number}, JitterStrategy: is not a Step Functions jitter strategy"),
                        Some("FULL or NONE"),
                    );
                    failed.insert(*field);
                }
                Some(s) => spec.jitter = Some(s.to_string()),
                None => {
                    failed.insert(*field);
                }
            },
            PolicyField::OnExhausted => match as_str(cx, a) {
                Some(s) => spec.on_exhausted = Some(s.to_string()),
                None => {
                    failed.insert(*field);
                }
            },
            _ => match as_number(cx, a) {
                Some(v) => {
                    let slot = match field {
                        PolicyField::IntervalSeconds => &mut spec.interval_seconds,
                        PolicyField::BackoffRate => &mut spec.backoff_rate,
                        PolicyField::MaxAttempts => &mut spec.max_attempts,
                        PolicyField::ExpireAfterMin => &mut spec.expire_after_min,
                        _ => &mut spec.max_interval_seconds,
                    };
                    *slot = Some(v);
                }
                None => {
                    failed.insert(*field);
                }
            },
        }
    }
    let names: HashMap<PolicyField, String> =
        ALL_FIELDS.iter().map(|f| (*f, written.get(f).map(|a| a.field.clone()).unwrap_or_else(|| key_for(*f, sp).to_string()))).collect();
    match RetryPolicy::new(&spec) {
        Ok(p) => (failed.is_empty() && unknown.is_empty()).then_some(p),
        Err(errors) => {
            for e in errors {
                let spurious = failed.contains(&e.field) && !(e.field == PolicyField::ExceptionType && e.index.is_some())
                    || (e.field == PolicyField::MaxIntervalSeconds && failed.contains(&PolicyField::IntervalSeconds));
                if !spurious {
                    policy_problem(cx, &e, &obj, &written, &type_items, &names, label, number);
                }
            }
            None
        }
    }
}

/// Rewrites camelCase field names in a policy message to the spelling in use.
fn respell(text: &str, names: &HashMap<PolicyField, String>) -> String {
    let mut out = text.to_string();
    for f in ALL_FIELDS {
        let name = &names[&f];
        if name != f.camel_case() {
            out = out.replace(f.camel_case(), name);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn policy_problem(
    cx: &mut Cx,
    e: &PolicyError,
    obj: &Obj,
    written: &HashMap<PolicyField, &At>,
    type_items: &[Option<At>],
    names: &HashMap<PolicyField, String>,
    label: &str,
    number: usize,
) {
    let key = &names[&e.field];
    if e.field == PolicyField::ExpireAfterMin
        && let (Some(ma), Some(ea)) = (written.get(&PolicyField::MaxAttempts), written.get(&PolicyField::ExpireAfterMin))
    {
        cx.report(
            &ea.path,
            ea.node.line,
            &ea.field,
            Some(format!("{}={}, {}={}", ma.field, render(&ma.node), ea.field, render(&ea.node))),
            format!("action {label}, policy #{number}: {} and {} cannot both be set; a policy takes one or the other", ma.field, ea.field),
            Some(format!("either {} or {}, not both", ma.field, ea.field)),
        );
        return;
    }
    let (path, line) = match (e.index.and_then(|i| type_items.get(i)), written.get(&e.field)) {
        (Some(Some(item)), _) => (item.path.clone(), item.node.line),
        (_, Some(a)) => (a.path.clone(), a.node.line),
        (_, None) => (key_path(&obj.path, key), obj.node.line),
    };
    let value = match e.field {
        PolicyField::ExceptionType if e.index.is_some() => quote(&e.value),
        PolicyField::ExceptionType => written.get(&e.field).map(|a| render(&a.node)).unwrap_or_else(|| e.value.clone()),
        PolicyField::Jitter | PolicyField::OnExhausted => quote(&e.value),
        _ => e.value.clone(),
    };
    let written_value = written.contains_key(&e.field);
    cx.report(
        &path,
        line,
        key,
        written_value.then_some(value),
        format!("action {label}, policy #{number}, {key}: {}", respell(&e.message, names)),
        Some(respell(&e.allowed, names)),
    );
}
