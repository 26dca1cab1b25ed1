//! Redirects of http actions through the binary (issue 13): the server config's
//! `httpActions.redirects` is the default of actions that do not say theirs,
//! and an action's own `redirects` wins. Two local services: one answers every
//! request with a 302 to the other, which answers 200 and records what it got.

mod common;
use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The request line and headers of one request (names lower-cased), and its body.
type Seen = (String, Vec<(String, String)>, String);

/// Answers every request with `status` and `extra` headers, recording each.
fn service(status: &'static str, extra: String) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            if let Some(request) = read_request(&conn) {
                s.lock().unwrap().push(request);
            }
            let _ = write!(conn, "HTTP/1.1 {status}\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}");
        }
    });
    (addr, seen)
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let Some((k, v)) = h.trim_end().split_once(':') else { break };
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((line.trim_end().to_string(), headers, String::from_utf8_lossy(&body).into()))
}

/// One action posting a key and a body to `url`, with `redirects` if given.
fn pipeline(name: &str, url: &str, redirects: Option<&str>) -> Value {
    let mut http = json!({"method": "POST", "url": url, "headers": {"X-Api-Key": "plain-key"}, "body": {"card": "4242"}});
    if let Some(r) = redirects {
        http["redirects"] = json!(r);
    }
    json!({"name": name, "stages": [{"name": "S", "actions": [{"name": "Call", "http": http}]}]})
}

/// Creates `definition`, starts it and returns the finished execution.
fn run(addr: &str, definition: Value) -> Value {
    let name = definition["name"].as_str().unwrap().to_string();
    let (status, v) = http(addr, "POST", "/v1/pipelines", Some(definition));
    assert_eq!(status, 201, "{v}");
    let (status, v) = http(addr, "POST", &format!("/v1/pipelines/{name}/executions"), Some(json!({})));
    assert_eq!(status, 201, "{v}");
    let id = v["pipelineExecutionId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, e) = http(addr, "GET", &format!("/v1/pipelines/{name}/executions/{id}"), None);
        if !matches!(e["status"].as_str(), Some("InProgress" | "Stopping")) {
            return e;
        }
        assert!(Instant::now() < deadline, "execution {id} did not finish: {e}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_server_default_and_the_actions_own_redirect_mode() {
    let (target, target_seen) = service("200 OK", String::new());
    let (origin, origin_seen) = service("302 Found", format!("Location: http://{target}/landing\r\n"));
    let url = format!("http://{origin}/start");

    let sb = Sandbox::new();
    let config = sb.write("server.yaml", "httpActions:\n  redirects: ANY_ORIGIN\n");
    let server = start_server(server_command(&sb, "127.0.0.1:0").arg("--config").arg(&config));

    // No `redirects`: the server's ANY_ORIGIN; the other origin gets a bare GET.
    let done = run(&server.addr, pipeline("follows", &url, None));
    assert_eq!(done["status"], "Succeeded", "{done}");
    let seen = target_seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (line, headers, body) = &seen[0];
    assert_eq!(line, "GET /landing HTTP/1.1");
    let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.iter().all(|n| ["host", "user-agent", "accept"].contains(n)), "{headers:?}");
    assert!(body.is_empty(), "{body}");
    let first = origin_seen.lock().unwrap()[0].clone();
    assert!(first.1.iter().any(|(k, v)| k == "x-api-key" && v == "plain-key"), "the action's own origin got its headers: {first:?}");

    // The action's own SAME_ORIGIN wins: not followed, Action.FAILED naming the Location.
    let done = run(&server.addr, pipeline("stays", &url, Some("SAME_ORIGIN")));
    assert_eq!(done["status"], "Failed", "{done}");
    let error = &done["stages"][0]["actions"][0]["error"];
    assert_eq!(error["exceptionType"], "Action.FAILED", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains(&format!("redirect to http://{target}/landing not followed: only redirects to the same origin")), "{message}");
    assert_eq!(target_seen.lock().unwrap().len(), 1, "the other origin was not contacted again");

    // A bad mode in the config file stops the server before it starts, located.
    let bad = sb.write("bad.yaml", "httpActions:\n  redirects: EVERYWHERE\n");
    let out =
        bin().args(["server", "--listen", "127.0.0.1:0", "--db"]).arg(sb.path("other.db")).arg("--config").arg(&bad).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.yaml:2: $.httpActions.redirects: is not one of the allowed values"), "{stderr}");
    assert!(stderr.contains("(got \"EVERYWHERE\"; allowed: SAME_ORIGIN, ANY_ORIGIN, NONE)"), "{stderr}");
}
