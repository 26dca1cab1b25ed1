//! Which shard a request is for, in a cluster that spreads executions over
//! processes (`redrive server --spread`): the shard of the pipeline (or
//! function) it names — in its path, or in the body of a CodePipeline call —
//! or none ([`RouteKey::Global`]: lists over every pipeline, dead-letter
//! queues, dependencies, tokens, the console's home page), which the holder of
//! [`GLOBAL_SHARD`] serves.

use redrive_core::shard::ShardId;
use serde::Deserialize;

/// The shard whose holder serves the requests that name no pipeline (and runs
/// the redrive schedules).
pub const GLOBAL_SHARD: u16 = 0;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteKey {
    /// The request names this pipeline or function.
    Target(String),
    /// It names none.
    Global,
}

impl RouteKey {
    pub fn shard(&self) -> ShardId {
        match self {
            RouteKey::Target(name) => ShardId::of(name),
            RouteKey::Global => ShardId::new(GLOBAL_SHARD).expect("shard 0 exists"),
        }
    }
}

/// Path prefixes followed by a pipeline's or function's name (native API and console).
const NAMED_PREFIXES: [&str; 4] = ["/v1/pipelines/", "/v1/functions/", "/pipelines/", "/functions/"];

/// The key of a request by its path; `None` for a CodePipeline call (`POST /`),
/// whose body names the pipeline ([`route_key_of_aws_body`]).
pub fn route_key_of_path(method: &str, path: &str) -> Option<RouteKey> {
    if method == "POST" && path == "/" {
        return None;
    }
    let named = NAMED_PREFIXES.iter().find_map(|prefix| path.strip_prefix(prefix));
    Some(match named.and_then(|rest| rest.split('/').next()).filter(|name| !name.is_empty()) {
        Some(name) => RouteKey::Target(name.to_owned()),
        None => RouteKey::Global,
    })
}

/// The members of a CodePipeline request that name its pipeline.
#[derive(Deserialize)]
struct AwsNames {
    /// GetPipeline, DeletePipeline, StartPipelineExecution, GetPipelineState.
    name: Option<String>,
    /// RetryStageExecution, StopPipelineExecution, GetPipelineExecution,
    /// ListPipelineExecutions, ListActionExecutions.
    #[serde(rename = "pipelineName")]
    pipeline_name: Option<String>,
    /// CreatePipeline, UpdatePipeline.
    pipeline: Option<AwsPipelineName>,
}

#[derive(Deserialize)]
struct AwsPipelineName {
    name: Option<String>,
}

/// The key of a CodePipeline call by its JSON body (a body that is not JSON,
/// or names no pipeline, is [`RouteKey::Global`]: its handler answers it).
pub fn route_key_of_aws_body(body: &[u8]) -> RouteKey {
    let Ok(names) = serde_json::from_slice::<AwsNames>(body) else { return RouteKey::Global };
    match names.pipeline_name.or(names.name).or(names.pipeline.and_then(|p| p.name)) {
        Some(name) => RouteKey::Target(name),
        None => RouteKey::Global,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(name: &str) -> Option<RouteKey> {
        Some(RouteKey::Target(name.into()))
    }

    #[test]
    fn paths_name_their_pipeline_or_function() {
        assert_eq!(route_key_of_path("GET", "/v1/pipelines/orders/executions/e1"), target("orders"));
        assert_eq!(route_key_of_path("POST", "/v1/pipelines/orders/executions"), target("orders"));
        assert_eq!(route_key_of_path("GET", "/v1/functions/charge/executions"), target("charge"));
        assert_eq!(route_key_of_path("GET", "/pipelines/orders/board"), target("orders"));
        assert_eq!(route_key_of_path("GET", "/functions/charge/e1"), target("charge"));
        assert_eq!(route_key_of_path("GET", "/v1/pipelines"), Some(RouteKey::Global));
        assert_eq!(route_key_of_path("GET", "/v1/pipelines/"), Some(RouteKey::Global));
        assert_eq!(route_key_of_path("POST", "/v1/dlq/redrive"), Some(RouteKey::Global));
        assert_eq!(route_key_of_path("GET", "/"), Some(RouteKey::Global));
        assert_eq!(route_key_of_path("POST", "/"), None);
    }

    #[test]
    fn codepipeline_bodies_name_their_pipeline() {
        assert_eq!(route_key_of_aws_body(br#"{"pipelineName":"orders","stageName":"S"}"#), RouteKey::Target("orders".into()));
        assert_eq!(route_key_of_aws_body(br#"{"name":"orders"}"#), RouteKey::Target("orders".into()));
        assert_eq!(route_key_of_aws_body(br#"{"pipeline":{"name":"orders","stages":[]}}"#), RouteKey::Target("orders".into()));
        assert_eq!(route_key_of_aws_body(br#"{"maxResults":5}"#), RouteKey::Global);
        assert_eq!(route_key_of_aws_body(b"not json"), RouteKey::Global);
        assert_eq!(route_key_of_aws_body(br#"{"name":5}"#), RouteKey::Global);
    }

    #[test]
    fn requests_without_a_pipeline_go_to_the_global_shard() {
        assert_eq!(RouteKey::Global.shard().index(), GLOBAL_SHARD);
        assert_eq!(RouteKey::Target("orders".into()).shard(), ShardId::of("orders"));
    }
}
