//! The one table that classifies every route of both APIs: the scope it needs,
//! what it touches (for a grant's name limits), and whether it changes state
//! (then it is audited). A route or operation missing here is refused (fail
//! closed), and a test over the real router fails for it.

use crate::codepipeline::protocol::Operation;
use redrive_core::auth::{Resource, Scope};

/// Which route a rule is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteKey {
    /// A native route: method and the path template as routed (`/v1/pipelines/{name}`).
    Native(&'static str, &'static str),
    /// A CodePipeline operation on `POST /`.
    Aws(Operation),
}

/// Where the pipeline or queue a request touches is named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touches {
    /// Answers everyone, with or without a credential (health checks).
    Open,
    /// A fixed resource (a listing, nothing, everything).
    Fixed(Resource<'static>),
    /// The pipeline (or function) named by the `{name}` path parameter.
    PipelineParam,
    /// The queue named by the `{queue}` path parameter.
    QueueParam,
    /// The pipeline named at this JSON pointer of the body.
    PipelineAt(&'static str),
    /// Every queue starting with the prefix at this JSON pointer of the body.
    QueuePrefixAt(&'static str),
    /// The queue (or queue prefix) of the redrive run named by the `{id}` path
    /// parameter, read from the store (every queue if there is no such run).
    RunParam,
    /// The queue of the dead-letter entry named by the `{id}` path parameter,
    /// read from the store (every queue if there is no such entry).
    EntryParam,
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub key: RouteKey,
    pub scope: Scope,
    pub touches: Touches,
    /// A state-changing call: recorded in the audit log.
    pub audited: bool,
}

const fn native(method: &'static str, path: &'static str, scope: Scope, touches: Touches, audited: bool) -> Rule {
    Rule { key: RouteKey::Native(method, path), scope, touches, audited }
}

const fn aws(op: Operation, scope: Scope, touches: Touches, audited: bool) -> Rule {
    Rule { key: RouteKey::Aws(op), scope, touches, audited }
}

use Scope::{Admin, Operate, Read};
use Touches::{EntryParam, Fixed, Open, PipelineAt, PipelineParam, QueueParam, QueuePrefixAt, RunParam};

const PIPELINES: Touches = Fixed(Resource::AllPipelines);
const QUEUES: Touches = Fixed(Resource::AllQueues);
const EVERYTHING: Touches = Fixed(Resource::Everything);
const NOTHING: Touches = Fixed(Resource::Nothing);

/// Every route and operation.
pub const RULES: &[Rule] = &[
    native("GET", "/healthz", Read, Open, false),
    native("GET", "/readyz", Read, Open, false),
    native("GET", "/openapi.json", Read, NOTHING, false),
    native("GET", "/v1/cluster", Read, NOTHING, false),
    native("GET", "/metrics", Read, EVERYTHING, false),
    // dependencies (shared by every pipeline: a prefix-limited grant does not cover them)
    native("GET", "/v1/dependencies", Read, EVERYTHING, false),
    native("GET", "/v1/dependencies/{name}", Read, EVERYTHING, false),
    // pipelines and executions
    native("POST", "/v1/pipelines", Admin, PipelineAt("/name"), true),
    native("GET", "/v1/pipelines", Read, PIPELINES, false),
    native("GET", "/v1/pipelines/{name}", Read, PipelineParam, false),
    native("PUT", "/v1/pipelines/{name}", Admin, PipelineParam, true),
    native("DELETE", "/v1/pipelines/{name}", Admin, PipelineParam, true),
    native("GET", "/v1/pipelines/{name}/state", Read, PipelineParam, false),
    native("POST", "/v1/pipelines/{name}/executions", Operate, PipelineParam, true),
    native("GET", "/v1/pipelines/{name}/executions", Read, PipelineParam, false),
    native("GET", "/v1/pipelines/{name}/executions/{id}", Read, PipelineParam, false),
    native("GET", "/v1/pipelines/{name}/executions/{id}/export", Read, PipelineParam, false),
    native("POST", "/v1/pipelines/{name}/executions/{id}/stop", Operate, PipelineParam, true),
    native("POST", "/v1/pipelines/{name}/executions/{id}/resume", Operate, PipelineParam, true),
    native("POST", "/v1/pipelines/{name}/executions/{id}/fail", Operate, PipelineParam, true),
    native("POST", "/v1/pipelines/{name}/executions/{id}/stages/{stage}/retry", Operate, PipelineParam, true),
    native("GET", "/v1/pipelines/{name}/action-executions", Read, PipelineParam, false),
    native("POST", "/v1/pipelines/{name}/bulk-retries", Operate, PipelineParam, true),
    native("GET", "/v1/pipelines/{name}/bulk-retries", Read, PipelineParam, false),
    native("GET", "/v1/pipelines/{name}/bulk-retries/{id}", Read, PipelineParam, false),
    native("GET", "/v1/pipelines/{name}/bulk-retries/{id}/results", Read, PipelineParam, false),
    native("POST", "/v1/pipelines/{name}/bulk-retries/{id}/abort", Operate, PipelineParam, true),
    // durable functions (their names are limited like pipeline names)
    native("GET", "/v1/functions/{name}/executions", Read, PipelineParam, false),
    native("GET", "/v1/functions/{name}/executions/{id}", Read, PipelineParam, false),
    // dead-letter queues
    native("GET", "/v1/dlq/queues", Read, QUEUES, false),
    native("GET", "/v1/dlq/queues/{queue}", Read, QueueParam, false),
    native("PUT", "/v1/dlq/queues/{queue}", Admin, QueueParam, true),
    native("GET", "/v1/dlq/queues/{queue}/entries", Read, QueueParam, false),
    native("POST", "/v1/dlq/queues/{queue}/purge", Admin, QueueParam, true),
    native("POST", "/v1/dlq/queues/{queue}/redrive", Operate, QueueParam, true),
    native("POST", "/v1/dlq/redrive", Operate, QueuePrefixAt("/queuePrefix"), true),
    native("POST", "/v1/pipelines/{name}/dlq-entries/{id}/redrive", Operate, EntryParam, true),
    native("GET", "/v1/dlq/entries/{id}", Read, EntryParam, false),
    native("GET", "/v1/dlq/redrives", Read, QUEUES, false),
    native("GET", "/v1/dlq/redrives/{id}", Read, RunParam, false),
    native("POST", "/v1/dlq/redrives/{id}/abort", Operate, RunParam, true),
    native("GET", "/v1/dlq/schedules", Read, QUEUES, false),
    // tokens and the audit log
    native("POST", "/v1/tokens", Admin, EVERYTHING, true),
    native("GET", "/v1/tokens", Admin, EVERYTHING, false),
    native("DELETE", "/v1/tokens/{name}", Admin, EVERYTHING, true),
    native("GET", "/v1/audit", Admin, EVERYTHING, false),
    // the web console's pages (the JSON APIs above do every change), its
    // login and its assets; a browser's `GET /` is sent to it
    native("GET", "/", Read, Open, false),
    native("GET", "/console/", Read, Open, false),
    native("GET", "/console/login", Read, Open, false),
    native("POST", "/console/login", Read, Open, false),
    native("POST", "/console/logout", Read, Open, false),
    native("GET", "/console/assets/console.js", Read, Open, false),
    native("GET", "/console/assets/console.css", Read, Open, false),
    // Listings are open to every reader and show only what the viewer's grant covers.
    native("GET", "/console", Read, NOTHING, false),
    native("GET", "/console/pipelines/{name}", Read, PipelineParam, false),
    native("GET", "/console/pipelines/{name}/board", Read, PipelineParam, false),
    native("GET", "/console/pipelines/{name}/executions", Read, PipelineParam, false),
    native("GET", "/console/pipelines/{name}/executions/{id}", Read, PipelineParam, false),
    native("GET", "/console/pipelines/{name}/executions/{id}/live", Read, PipelineParam, false),
    native("GET", "/console/dlq", Read, NOTHING, false),
    native("GET", "/console/dlq/queues/{queue}", Read, QueueParam, false),
    native("GET", "/console/dlq/queues/{queue}/live", Read, QueueParam, false),
    native("GET", "/console/dlq/entries/{id}", Read, EntryParam, false),
    native("GET", "/console/dlq/runs/{id}", Read, RunParam, false),
    native("GET", "/console/dlq/runs/{id}/live", Read, RunParam, false),
    native("GET", "/console/functions", Read, NOTHING, false),
    native("GET", "/console/functions/{name}/{id}", Read, PipelineParam, false),
    // the CodePipeline protocol
    aws(Operation::CreatePipeline, Admin, PipelineAt("/pipeline/name"), true),
    aws(Operation::UpdatePipeline, Admin, PipelineAt("/pipeline/name"), true),
    aws(Operation::DeletePipeline, Admin, PipelineAt("/name"), true),
    aws(Operation::GetPipeline, Read, PipelineAt("/name"), false),
    aws(Operation::ListPipelines, Read, PIPELINES, false),
    aws(Operation::GetPipelineState, Read, PipelineAt("/name"), false),
    aws(Operation::StartPipelineExecution, Operate, PipelineAt("/name"), true),
    aws(Operation::StopPipelineExecution, Operate, PipelineAt("/pipelineName"), true),
    aws(Operation::RetryStageExecution, Operate, PipelineAt("/pipelineName"), true),
    aws(Operation::GetPipelineExecution, Read, PipelineAt("/pipelineName"), false),
    aws(Operation::ListPipelineExecutions, Read, PipelineAt("/pipelineName"), false),
    aws(Operation::ListActionExecutions, Read, PipelineAt("/pipelineName"), false),
];

/// The rule of a route or operation, if it has one.
pub fn rule(key: RouteKey) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.key == key)
}
