//! The OpenAPI document of the native API, served at `/openapi.json`.

/// OpenAPI 3.0 JSON.
pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    #[test]
    fn document_is_json_and_lists_every_route() {
        let v: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        for (route, methods) in [
            ("/v1/pipelines", &["post", "get"][..]),
            ("/v1/pipelines/{name}", &["get", "put", "delete"]),
            ("/v1/pipelines/{name}/state", &["get"]),
            ("/v1/pipelines/{name}/executions", &["post", "get"]),
            ("/v1/pipelines/{name}/executions/{id}", &["get"]),
            ("/v1/pipelines/{name}/executions/{id}/stop", &["post"]),
            ("/v1/pipelines/{name}/executions/{id}/stages/{stage}/retry", &["post"]),
            ("/v1/pipelines/{name}/action-executions", &["get"]),
            ("/v1/functions/{name}/executions", &["get"]),
            ("/v1/functions/{name}/executions/{id}", &["get"]),
            ("/v1/dlq/queues", &["get"]),
            ("/v1/dlq/queues/{queue}", &["get", "put"]),
            ("/v1/dlq/queues/{queue}/entries", &["get"]),
            ("/v1/dlq/queues/{queue}/purge", &["post"]),
            ("/v1/dlq/queues/{queue}/redrive", &["post"]),
            ("/v1/dlq/entries/{id}", &["get"]),
            ("/v1/dlq/redrive", &["post"]),
            ("/v1/dlq/redrives", &["get"]),
            ("/v1/dlq/redrives/{id}", &["get"]),
            ("/v1/dlq/schedules", &["get"]),
            ("/metrics", &["get"]),
            ("/healthz", &["get"]),
            ("/readyz", &["get"]),
        ] {
            for m in methods {
                assert!(v["paths"][route].get(m).is_some(), "{m} {route}");
            }
        }
        // Every schema reference resolves.
        let text = super::DOCUMENT;
        for (i, _) in text.match_indices("\"#/components/schemas/") {
            let name: String = text[i + 22..].chars().take_while(|c| *c != '"').collect();
            assert!(v["components"]["schemas"].get(&name).is_some(), "{name}");
        }
    }
}
