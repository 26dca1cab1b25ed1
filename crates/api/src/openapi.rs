//! The OpenAPI document of the native API, served at `/openapi.json`.

/// OpenAPI 3.0 JSON.
pub const DOCUMENT: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    #[test]
    fn document_is_json_and_lists_every_route() {
        let v: serde_json::Value = serde_json::from_str(super::DOCUMENT).unwrap();
        for route in ["/v1/pipelines", "/v1/pipelines/{name}/executions/{id}/stages/{stage}/retry", "/v1/pipelines/{name}/state"] {
            assert!(v["paths"].get(route).is_some(), "{route}");
        }
    }
}
