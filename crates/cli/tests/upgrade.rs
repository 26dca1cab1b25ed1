//! A database written by an earlier release opens in this one: every fixture in
//! tests/fixtures/upgrade/ (written by scripts/make-upgrade-fixture.sh) is
//! served, its history read, its dead-letter entry found, and its unfinished
//! execution resumed to the end without re-running what was committed.

mod common;
use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn fixtures() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/upgrade");
    let mut found: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "db")).collect();
    found.sort();
    assert!(!found.is_empty(), "no fixture in {}", dir.display());
    found
}

fn only_execution(addr: &str, pipeline: &str) -> Value {
    let (status, v) = http(addr, "GET", &format!("/v1/pipelines/{pipeline}/executions"), None);
    assert_eq!(status, 200, "{v}");
    let executions = v["executions"].as_array().unwrap();
    assert_eq!(executions.len(), 1, "{pipeline}: {v}");
    executions[0].clone()
}

fn attempts(addr: &str, pipeline: &str) -> Vec<(String, String)> {
    let (_, v) = http(addr, "GET", &format!("/v1/pipelines/{pipeline}/action-executions"), None);
    let mut rows: Vec<(String, String, String)> = v["actionExecutions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["startTime"].as_str().unwrap().to_string(),
                a["actionName"].as_str().unwrap().to_string(),
                a["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows.into_iter().map(|(_, action, status)| (action, status)).collect()
}

#[test]
fn every_fixture_database_opens_serves_its_history_and_resumes() {
    for fixture in fixtures() {
        let sb = Sandbox::new();
        std::fs::copy(&fixture, sb.db()).unwrap();
        let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
        let name = fixture.display();
        assert!(server.banner.contains("1 unfinished execution resumed"), "{name}: {}", server.banner);

        let done = only_execution(&server.addr, "done");
        assert_eq!(done["status"], "Succeeded", "{name}: {done}");
        let pair = |a: &str, s: &str| (a.to_string(), s.to_string());
        assert_eq!(attempts(&server.addr, "done"), vec![pair("Compile", "FAILED"), pair("Compile", "SUCCEEDED")], "{name}");

        assert_eq!(only_execution(&server.addr, "dead")["status"], "Failed", "{name}");
        let (status, queue) = http(&server.addr, "GET", "/v1/dlq/queues/dead-q", None);
        assert_eq!((status, queue["depth"].as_u64()), (200, Some(1)), "{name}: {queue}");

        // The execution killed mid-attempt finishes; its committed first stage never runs again.
        let id = only_execution(&server.addr, "held")["pipelineExecutionId"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, v) = http(&server.addr, "GET", &format!("/v1/pipelines/held/executions/{id}"), None);
            if v["status"] == "Succeeded" {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: the resumed execution never finished: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            attempts(&server.addr, "held"),
            vec![pair("First", "SUCCEEDED"), pair("Slow", "FAILED"), pair("Slow", "SUCCEEDED")],
            "{name}: the interrupted attempt is recorded as failed and retried once"
        );
    }
}
