//! The native pipeline definition (PRODUCT.md §4) and the wire
//! [`PipelineDeclaration`] (PRODUCT.md §7), each to the other.
//!
//! Both describe the same pipeline: `get-pipeline` of a pipeline created natively
//! returns [`native_to_wire`] of its definition, and a pipeline created through
//! `create-pipeline` is shown natively as [`wire_to_native`] of its declaration.
//!
//! # Actions on the wire
//!
//! A native action says what it runs with one shorthand key; on the wire it is an
//! `actionTypeId` plus string-valued `configuration`:
//!
//! | native | `actionTypeId` (category / owner / provider / version) | `configuration` |
//! |---|---|---|
//! | `command: [argv]`, `env`, `workingDirectory`, `exitCodes` | `Build` / `Custom` / `Command` / `1` | `Command` (JSON array), `Env` (JSON object), `WorkingDirectory`, `ExitCodes` (JSON object) |
//! | `http: {url, method, headers, body}` | `Invoke` / `Custom` / `Http` / `1` | `Url`, `Method`, `Headers` (JSON object), `Body` |
//! | `function: name` | `Invoke` / `Custom` / `Function` / `1` | `FunctionName` |
//! | `noop: {failFirst, failWith, sleepMs, retryAfterSeconds}` | `Test` / `Custom` / `Noop` / `1` | `FailFirst`, `FailWith`, `SleepMs`, `RetryAfterSeconds` |
//! | `timeoutSeconds` (any kind) | | `TimeoutSeconds` |
//! | `retryPolicies` / `RetryPolicies` / `Retry` (any kind) | | `RetryPolicies` (JSON array, policies in the spelling written) |
//! | `onExhausted` (any kind) | | `OnExhausted` (`FAIL` or `PAUSE`) |
//! | `dependency` (any kind) | | `Dependency` (a dependency's name) |
//! | `concurrency` (any kind) | | `Concurrency` (JSON object `{"key": …, "max": …}`) |
//!
//! - **Categories.** redrive ignores `category`; the model requires one of
//!   `Source, Build, Deploy, Test, Invoke, Approval, Compute`. redrive emits
//!   [`default_category`]: `Build` for commands (they build and run things),
//!   `Invoke` for HTTP calls and registered functions (CodePipeline's category for
//!   invoking a Lambda function), `Test` for the no-op (it exists to try out
//!   policies). Any category is accepted on input.
//! - **Values.** Numbers are written as their JSON text (`"2"`, `"0.5"`); JSON
//!   documents compactly (`serde_json`, object keys sorted). A `Body` is written
//!   verbatim when it is a string that is not itself JSON (`"hello"`), otherwise
//!   as JSON (`{"a":1}` → `"{\"a\":1}"`, the string `"123"` → `"\"123\""`), so
//!   that the parser's rule "JSON when it parses, else the string" gives it back.
//! - **Defaults are not filled in**: what the native document leaves out (runOrder,
//!   method, executionMode...) is left out on the wire too, and the parser applies
//!   the same defaults to both.
//!
//! # Pipeline and stage members
//!
//! `name`, `executionMode`, `stages[].name`, `stages[].onFailure`, `runOrder` are
//! the same on both sides. Members redrive accepts and ignores (`version`,
//! `artifactStore(s)`, `pipelineType`, `variables`, `triggers`, `blockers`,
//! `onSuccess`, `beforeEntry`, `onFailure.conditions`, actions' `inputArtifacts`,
//! `outputArtifacts`, `region`, `namespace`, `roleArn`) are carried through
//! unchanged both ways. `maxConcurrentExecutions`, `deadLetterQueue`,
//! `retentionDays`, `dependencies` and `onFailure.maxRetries` are not in the
//! service model and travel as redrive extension members (see [`super::model`]). Action members of kinds redrive does
//! not have (`commands`, `outputVariables`, `environmentVariables`,
//! `timeoutInMinutes`) are passed on as they are and rejected by the parser, by
//! name.
//!
//! `roleArn` is required by the model: [`native_to_wire`] uses the document's
//! `roleArn` when it has one, else [`PLACEHOLDER_ROLE_ARN`];
//! [`wire_to_native`] drops the placeholder again.
//!
//! # Round trips
//!
//! - native → wire → native parses to an equal [`Pipeline`].
//! - wire → native → wire gives an equal declaration, except that configuration
//!   values come back in the canonical form above (JSON re-serialised compactly,
//!   numbers as their JSON text, an empty `configuration` left out) and an absent
//!   `roleArn` comes back as the placeholder. A declaration made by
//!   [`native_to_wire`] is already canonical and comes back identical.
//!
//! One limit of both: a number that needs 17 significant digits (e.g. the `f64`
//! `1.5315694335572219`) may come back one unit in the last place off, because
//! JSON inside configuration strings is read with `serde_json`'s default float
//! parser, which (like the definition parser that reads the wire form) is not
//! correctly rounded for such numbers. Numbers people write are exact.
//!
//! [`wire_to_native`] turns an action into shorthand only when that is exact: its
//! `actionTypeId` is the canonical one for its provider and every configuration
//! value decodes. Any other action (another category, an unknown configuration
//! key, a value that is not valid JSON...) stays in the wire form, which the
//! definition parser also accepts, so it reports the problem at its wire path.

use super::errors::{ApiError, ErrorCode};
use super::model::*;
use redrive_core::definition::source::{Node, NodeValue, resolve_plain};
use redrive_core::definition::{Pipeline, Problem, parse_pipeline};
use serde_json::{Map, Value};

/// The `roleArn` redrive puts in a declaration that has none. It matches the
/// model's pattern `arn:aws(-[\w]+)*:iam::[0-9]{12}:role/.*`.
pub const PLACEHOLDER_ROLE_ARN: &str = "arn:aws:iam::000000000000:role/redrive";

/// The `actionTypeId.owner` of redrive's actions.
pub const ACTION_OWNER: ActionOwner = ActionOwner::Custom;

/// The `actionTypeId.version` of redrive's actions.
pub const ACTION_VERSION: &str = "1";

/// The `actionTypeId.provider` values redrive runs.
pub const PROVIDERS: [&str; 4] = ["Command", "Http", "Function", "Noop"];

/// The category redrive emits for a provider (see the module documentation).
pub fn default_category(provider: &str) -> ActionCategory {
    match provider {
        "Http" | "Function" => ActionCategory::Invoke,
        "Noop" => ActionCategory::Test,
        _ => ActionCategory::Build,
    }
}

/// The canonical `actionTypeId` of a provider.
pub fn action_type_id(provider: &str) -> ActionTypeId {
    ActionTypeId {
        category: default_category(provider),
        owner: ACTION_OWNER,
        provider: provider.to_string(),
        version: ACTION_VERSION.to_string(),
    }
}

/// Why a native document has no wire form.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConvertError {
    /// The document is not a valid pipeline definition.
    #[error("invalid pipeline definition: {}", join_problems(.0))]
    Invalid(Vec<Problem>),
    /// The definition is valid for redrive, but a member it carries through
    /// unchecked (e.g. `artifactStore`, or an `actionTypeId.category` outside the
    /// model's enumeration) does not fit the wire shape.
    #[error("{message}")]
    Shape { message: String },
}

fn join_problems(problems: &[Problem]) -> String {
    problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; ")
}

impl ConvertError {
    /// The error a server answers a CreatePipeline/UpdatePipeline with.
    pub fn to_api_error(&self) -> ApiError {
        match self {
            ConvertError::Invalid(problems) => ApiError::from_problems(problems),
            ConvertError::Shape { message } => ApiError::new(ErrorCode::InvalidStructureException, message.clone()),
        }
    }
}

/// Validates a declaration as redrive does: the parser reads the wire form itself,
/// so every problem names its wire path (`$.stages[0].actions[1].configuration.Command`).
/// A server calls this on CreatePipeline/UpdatePipeline and answers problems with
/// [`ApiError::from_problems`].
pub fn parse_declaration(declaration: &PipelineDeclaration) -> Result<Pipeline, Vec<Problem>> {
    let json = serde_json::to_value(declaration).expect("a declaration always serialises");
    parse_pipeline(&Node::from_json(&json))
}

// ---------------------------------------------------------------------------
// Native to wire

/// The wire declaration of a native definition (the JSON of a YAML/JSON document,
/// e.g. `source::parse_document(text)?.to_json()`; the `{"pipeline": {...}}`
/// wrapping is accepted). The document is validated first: an invalid one is
/// [`ConvertError::Invalid`] with every problem.
pub fn native_to_wire(pipeline_json: &Value) -> Result<PipelineDeclaration, ConvertError> {
    parse_pipeline(&Node::from_json(pipeline_json)).map_err(ConvertError::Invalid)?;
    let root = match pipeline_json.get("pipeline") {
        Some(inner) => inner,
        None => pipeline_json,
    };
    let p = root.as_object().ok_or_else(|| shape("a pipeline definition must be an object"))?;
    let mut out = Map::new();
    copy(p, &mut out, &["name"]);
    let role = p.get("roleArn").filter(|v| !v.is_null()).cloned().unwrap_or_else(|| Value::from(PLACEHOLDER_ROLE_ARN));
    out.insert("roleArn".into(), role);
    copy(
        p,
        &mut out,
        &[
            "artifactStore",
            "artifactStores",
            "version",
            "executionMode",
            "pipelineType",
            "variables",
            "triggers",
            "maxConcurrentExecutions",
            "deadLetterQueue",
            "retentionDays",
            "dependencies",
        ],
    );
    let stages = items(p.get("stages")).iter().map(stage_to_wire).collect::<Result<Vec<_>, _>>()?;
    out.insert("stages".into(), Value::Array(stages));
    serde_json::from_value(Value::Object(out)).map_err(|e| shape(format!("the pipeline does not fit the wire shape: {e}")))
}

fn shape(message: impl Into<String>) -> ConvertError {
    ConvertError::Shape { message: message.into() }
}

/// Copies the non-null members `keys` of `from`.
fn copy(from: &Map<String, Value>, to: &mut Map<String, Value>, keys: &[&str]) {
    for k in keys {
        if let Some(v) = from.get(*k).filter(|v| !v.is_null()) {
            to.insert((*k).to_string(), v.clone());
        }
    }
}

fn items(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn stage_to_wire(stage: &Value) -> Result<Value, ConvertError> {
    let s = stage.as_object().ok_or_else(|| shape("a stage must be an object"))?;
    let mut out = Map::new();
    copy(s, &mut out, &["name", "blockers", "onFailure", "onSuccess", "beforeEntry"]);
    let actions = items(s.get("actions")).iter().map(action_to_wire).collect::<Result<Vec<_>, _>>()?;
    out.insert("actions".into(), Value::Array(actions));
    Ok(Value::Object(out))
}

fn action_to_wire(action: &Value) -> Result<Value, ConvertError> {
    let a = action.as_object().ok_or_else(|| shape("an action must be an object"))?;
    let mut out = Map::new();
    copy(a, &mut out, &["name", "runOrder", "inputArtifacts", "outputArtifacts", "region", "namespace", "roleArn"]);
    let mut conf = Map::new();
    let put = |conf: &mut Map<String, Value>, key: &str, v: Option<&Value>| {
        if let Some(v) = v.filter(|v| !v.is_null()) {
            conf.insert(key.to_string(), Value::String(text(v)));
        }
    };
    let type_id = if let Some(argv) = a.get("command") {
        put(&mut conf, "Command", Some(argv));
        put(&mut conf, "Env", a.get("env"));
        put(&mut conf, "SecretEnv", a.get("secretEnv"));
        put(&mut conf, "WorkingDirectory", a.get("workingDirectory"));
        put(&mut conf, "ExitCodes", a.get("exitCodes"));
        canonical_type_id("Command")
    } else if let Some(h) = a.get("http") {
        put(&mut conf, "Url", h.get("url"));
        put(&mut conf, "Method", h.get("method"));
        put(&mut conf, "Headers", h.get("headers"));
        put(&mut conf, "SecretHeaders", h.get("secretHeaders"));
        put(&mut conf, "Redirects", h.get("redirects"));
        if let Some(body) = h.get("body").filter(|b| !b.is_null()) {
            conf.insert("Body".into(), Value::String(encode_body(body)));
        }
        canonical_type_id("Http")
    } else if let Some(name) = a.get("function") {
        put(&mut conf, "FunctionName", Some(name));
        canonical_type_id("Function")
    } else if let Some(n) = a.get("noop") {
        put(&mut conf, "FailFirst", n.get("failFirst"));
        put(&mut conf, "FailWith", n.get("failWith"));
        put(&mut conf, "SleepMs", n.get("sleepMs"));
        put(&mut conf, "RetryAfterSeconds", n.get("retryAfterSeconds"));
        canonical_type_id("Noop")
    } else if let Some(t) = a.get("actionTypeId").and_then(Value::as_object) {
        // Already in the wire form inside a native document.
        let provider = t.get("provider").and_then(Value::as_str).unwrap_or_default();
        let mut id = Map::new();
        id.insert("category".into(), t.get("category").cloned().unwrap_or_else(|| Value::from(default_category(provider).as_str())));
        id.insert("owner".into(), t.get("owner").cloned().unwrap_or_else(|| Value::from(ACTION_OWNER.as_str())));
        id.insert("provider".into(), Value::from(provider));
        id.insert("version".into(), t.get("version").cloned().unwrap_or_else(|| Value::from(ACTION_VERSION)));
        if let Some(c) = a.get("configuration").and_then(Value::as_object) {
            for (k, v) in c.iter().filter(|(_, v)| !v.is_null()) {
                let s = if k == "Body" { encode_body(&decode_body(v)) } else { text(v) };
                conf.insert(k.clone(), Value::String(s));
            }
        }
        Value::Object(id)
    } else {
        return Err(shape("an action does not say what it runs"));
    };
    put(&mut conf, "TimeoutSeconds", a.get("timeoutSeconds"));
    let policies = ["retryPolicies", "RetryPolicies", "Retry"].iter().find_map(|k| a.get(*k).filter(|v| !v.is_null()));
    put(&mut conf, "RetryPolicies", policies);
    put(&mut conf, "OnExhausted", a.get("onExhausted"));
    put(&mut conf, "Dependency", a.get("dependency"));
    put(&mut conf, "Concurrency", a.get("concurrency"));
    out.insert("actionTypeId".into(), type_id);
    if !conf.is_empty() {
        out.insert("configuration".into(), Value::Object(conf));
    }
    Ok(Value::Object(out))
}

fn canonical_type_id(provider: &str) -> Value {
    serde_json::to_value(action_type_id(provider)).expect("an action type id always serialises")
}

/// A configuration value: a string as it is, anything else as compact JSON.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The wire `Body` of a body value (see the module documentation).
fn encode_body(body: &Value) -> String {
    match body {
        Value::String(s) if !s.is_empty() && serde_json::from_str::<Value>(s).is_err() => s.clone(),
        other => other.to_string(),
    }
}

/// The body value of a wire `Body`, as the parser reads it: JSON when it parses,
/// else the string itself.
fn decode_body(v: &Value) -> Value {
    match v {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| v.clone()),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------------------
// Wire to native

/// The native document of a wire declaration: a JSON object that the definition
/// parser (`parse_pipeline(&Node::from_json(..))`) accepts exactly when it accepts
/// the declaration itself, and then parses to an equal [`Pipeline`]. Object keys
/// come out sorted (the JSON maps are ordered by key).
pub fn wire_to_native(declaration: &PipelineDeclaration) -> Value {
    let mut json = serde_json::to_value(declaration).expect("a declaration always serialises");
    let Some(p) = json.as_object_mut() else { return json };
    if p.get("roleArn").and_then(Value::as_str) == Some(PLACEHOLDER_ROLE_ARN) {
        p.remove("roleArn");
    }
    for stage in p.get_mut("stages").and_then(Value::as_array_mut).into_iter().flatten() {
        for action in stage.get_mut("actions").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(native) = action.as_object().and_then(action_to_native) {
                *action = Value::Object(native);
            }
        }
    }
    json
}

#[derive(Clone, Copy, PartialEq)]
enum Conf {
    /// A JSON document of this type (or `null`).
    Json(JsonKind),
    /// JSON when it parses, else the string itself.
    Body,
    /// A number in a string.
    Number,
    /// A plain string.
    Text,
}

#[derive(Clone, Copy, PartialEq)]
enum JsonKind {
    Array,
    Object,
}

/// The configuration keys of a provider, their encoding and native spelling (as
/// `crates/core/src/definition/parse.rs` reads them). `TimeoutSeconds`,
/// `RetryPolicies`, `OnExhausted`, `Dependency` and `Concurrency` go to the action itself
/// ([`ACTION_LEVEL`]), the rest under the kind key (for `Command`: beside it).
fn conf_keys(provider: &str) -> &'static [(&'static str, Conf, &'static str)] {
    const TIMEOUT: (&str, Conf, &str) = ("TimeoutSeconds", Conf::Number, "timeoutSeconds");
    const RETRY: (&str, Conf, &str) = ("RetryPolicies", Conf::Json(JsonKind::Array), "retryPolicies");
    const EXHAUSTED: (&str, Conf, &str) = ("OnExhausted", Conf::Text, "onExhausted");
    const DEPENDENCY: (&str, Conf, &str) = ("Dependency", Conf::Text, "dependency");
    const CONCURRENCY: (&str, Conf, &str) = ("Concurrency", Conf::Json(JsonKind::Object), "concurrency");
    match provider {
        "Command" => &[
            ("Command", Conf::Json(JsonKind::Array), "command"),
            ("Env", Conf::Json(JsonKind::Object), "env"),
            ("SecretEnv", Conf::Json(JsonKind::Array), "secretEnv"),
            ("WorkingDirectory", Conf::Text, "workingDirectory"),
            ("ExitCodes", Conf::Json(JsonKind::Object), "exitCodes"),
            TIMEOUT,
            RETRY,
            EXHAUSTED,
            DEPENDENCY,
            CONCURRENCY,
        ],
        "Http" => &[
            ("Url", Conf::Text, "url"),
            ("Method", Conf::Text, "method"),
            ("Headers", Conf::Json(JsonKind::Object), "headers"),
            ("SecretHeaders", Conf::Json(JsonKind::Object), "secretHeaders"),
            ("Body", Conf::Body, "body"),
            ("Redirects", Conf::Text, "redirects"),
            TIMEOUT,
            RETRY,
            EXHAUSTED,
            DEPENDENCY,
            CONCURRENCY,
        ],
        "Function" => &[("FunctionName", Conf::Text, "function"), TIMEOUT, RETRY, EXHAUSTED, DEPENDENCY, CONCURRENCY],
        "Noop" => &[
            ("FailFirst", Conf::Number, "failFirst"),
            ("FailWith", Conf::Text, "failWith"),
            ("SleepMs", Conf::Number, "sleepMs"),
            ("RetryAfterSeconds", Conf::Number, "retryAfterSeconds"),
            TIMEOUT,
            RETRY,
            EXHAUSTED,
            DEPENDENCY,
            CONCURRENCY,
        ],
        _ => &[],
    }
}

/// Decodes one configuration string; `None` when it does not decode the way the
/// parser needs (the action then stays in the wire form). `Some(Value::Null)`
/// means "as if absent".
fn decode(conf: Conf, s: &str) -> Option<Value> {
    match conf {
        Conf::Text => Some(Value::String(s.to_string())),
        Conf::Body => Some(decode_body(&Value::String(s.to_string()))),
        Conf::Number => match resolve_plain(s.trim()) {
            NodeValue::Int(i) => Some(Value::from(i)),
            NodeValue::Float(f) => serde_json::Number::from_f64(f).map(Value::Number),
            _ => None,
        },
        Conf::Json(kind) => {
            let v: Value = serde_json::from_str(s).ok()?;
            let fits = matches!((kind, &v), (_, Value::Null) | (JsonKind::Array, Value::Array(_)) | (JsonKind::Object, Value::Object(_)));
            fits.then_some(v)
        }
    }
}

/// Configuration keys (native spelling) that are members of the action itself,
/// whatever its kind.
const ACTION_LEVEL: [&str; 5] = ["timeoutSeconds", "retryPolicies", "onExhausted", "dependency", "concurrency"];

/// The shorthand form of a wire action, when it has an exact one.
fn action_to_native(a: &Map<String, Value>) -> Option<Map<String, Value>> {
    let t: ActionTypeId = serde_json::from_value(a.get("actionTypeId")?.clone()).ok()?;
    if !PROVIDERS.contains(&t.provider.as_str()) || t != action_type_id(&t.provider) {
        return None;
    }
    let provider = t.provider.as_str();
    let keys = conf_keys(provider);
    let empty = Map::new();
    let conf = match a.get("configuration") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(c)) => c,
        Some(_) => return None,
    };
    // Native spelling → decoded value, for every configuration key present.
    let mut values: Vec<(&'static str, Value)> = Vec::new();
    for (k, v) in conf {
        let (_, kind, native) = keys.iter().find(|(key, _, _)| key == k)?;
        let decoded = decode(*kind, v.as_str()?)?;
        if !decoded.is_null() {
            values.push((native, decoded));
        }
    }
    let take = |name: &str| values.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone());

    let mut out: Map<String, Value> =
        a.iter().filter(|(k, _)| *k != "actionTypeId" && *k != "configuration").map(|(k, v)| (k.clone(), v.clone())).collect();
    for k in ACTION_LEVEL {
        if let Some(v) = take(k) {
            out.insert(k.into(), v);
        }
    }
    let grouped =
        |names: &[&str]| -> Value { Value::Object(names.iter().filter_map(|n| take(n).map(|v| ((*n).to_string(), v))).collect()) };
    match provider {
        "Command" => {
            out.insert("command".into(), take("command")?);
            for k in ["env", "secretEnv", "workingDirectory", "exitCodes"] {
                if let Some(v) = take(k) {
                    out.insert(k.into(), v);
                }
            }
        }
        "Http" => {
            take("url")?;
            out.insert("http".into(), grouped(&["url", "method", "headers", "secretHeaders", "body", "redirects"]));
        }
        "Function" => {
            out.insert("function".into(), take("function")?);
        }
        _ => {
            out.insert("noop".into(), grouped(&["failFirst", "failWith", "sleepMs", "retryAfterSeconds"]));
        }
    }
    Some(out)
}
