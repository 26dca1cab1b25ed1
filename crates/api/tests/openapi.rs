//! The OpenAPI document against the router: every documented path and method is
//! routed (a request reaches a handler, not the 404/405 fallbacks), and every
//! routed one is documented (all routes are registered through `doc::op`, which
//! documents what it routes; `server.rs` adds none by hand — checked below).
//! The document is OpenAPI 3.1; tests/python validates it and generates a client.

use redrive_engine::service::Service;
use redrive_engine::{Driver, DriverConfig, SystemClock};
use redrive_store::{SqliteOptions, SqliteStore};
use serde_json::Value;
use std::sync::Arc;

fn filled(path: &str) -> String {
    // Path parameters become a plausible value; `{id}` of executions a UUID.
    path.split('/')
        .map(|seg| match seg {
            "{id}" => "00000000-0000-4000-8000-000000000000",
            s if s.starts_with('{') => "nothing-here",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed_and_only_those() {
    let doc: Value = serde_json::from_str(&redrive_api::server::openapi_document::<SqliteStore>().to_json().unwrap()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("r.db"), SqliteOptions::default()).unwrap());
    let (handle, _join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let service = Arc::new(Service::new(store, handle, Arc::new(SystemClock)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(redrive_api::server::serve(service, listener, 1024 * 1024, async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch", "head"] {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let r = client
                .request(method.to_uppercase().parse().unwrap(), format!("{url}{}", filled(path)))
                .header("content-type", "application/json")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert!(status != 405 && !body.contains("no such route"), "{method} {path}: {status} {body}");
        }
        // Methods not documented are not routed (405 from the fallback).
        for method in ["get", "put", "post", "delete"] {
            if item.get(method).is_none() {
                let r = client
                    .request(method.to_uppercase().parse().unwrap(), format!("{url}{}", filled(path)))
                    .header("content-type", "application/json")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 405, "{method} {path} is routed but not documented");
            }
        }
    }
    assert!(operations >= 30, "{operations}");

    // 404 and 405 are JSON errors: native shape under /v1, the AWS shape on /.
    let r = client.get(format!("{url}/v1/nope")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "ValidationException");
    let r = client.delete(format!("{url}/v1/pipelines")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "ValidationException");
    let r = client.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.json::<Value>().await.unwrap()["__type"], "UnknownOperationException");

    // A bogus nextToken is a 400 naming the field on every list, never an empty page.
    for list in [
        "/v1/pipelines",
        "/v1/pipelines/p/executions",
        "/v1/pipelines/p/action-executions",
        "/v1/functions/f/executions",
        "/v1/dlq/queues",
        "/v1/dlq/queues/q/entries",
        "/v1/dlq/redrives",
    ] {
        let r = client.get(format!("{url}{list}?nextToken=not%20a%20token")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{list}");
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("nextToken"), "{list}: {v}");
    }

    // Duplicate keys are refused; a byte-order mark is accepted.
    let r = client.put(format!("{url}/v1/dlq/queues/q")).body(r#"{"maxRedrives": 2, "maxRedrives": 3}"#).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("duplicate key"));
    let def = "\u{feff}{\"name\": \"bom\", \"stages\": [{\"name\": \"S\", \"actions\": [{\"name\": \"A\", \"noop\": {}}]}]}";
    let r = client.post(format!("{url}/v1/pipelines")).header("content-type", "application/json").body(def).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
    // Every schema reference resolves.
    let text = doc.to_string();
    for (i, _) in text.match_indices("\"#/components/schemas/") {
        let name: String = text[i + 22..].chars().take_while(|c| *c != '"').collect();
        assert!(doc["components"]["schemas"].get(&name).is_some(), "{name}");
    }
}

#[test]
fn no_route_bypasses_the_document() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in ["server.rs", "native.rs", "dlq.rs", "functions.rs", "aws.rs", "health.rs", "openapi.rs"] {
        let text = std::fs::read_to_string(src.join(file)).unwrap();
        assert!(!text.contains(".route(\""), "{file} routes by hand; register through doc::op");
    }
}

/// Every operation carries one of the document's tags, so generated clients and
/// viewers group them (pipelines, executions, functions, dlq, operations, …).
#[test]
fn every_operation_is_tagged_with_a_declared_tag() {
    let doc: Value = serde_json::from_str(&redrive_api::server::openapi_document::<SqliteStore>().to_json().unwrap()).unwrap();
    let declared: Vec<&str> = doc["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let tags = op["tags"].as_array().unwrap_or_else(|| panic!("{method} {path} has no tags"));
            assert!(!tags.is_empty() && tags.iter().all(|t| declared.contains(&t.as_str().unwrap())), "{method} {path}: {tags:?}");
        }
    }
}
