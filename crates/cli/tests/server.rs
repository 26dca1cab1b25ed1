//! `redrive server` as a process: SIGTERM lets running attempts finish, a restart
//! continues unfinished executions.

mod common;
use common::*;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct ServerProcess {
    child: Child,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn start_server(sb: &Sandbox, addr: &str, grace_seconds: u64) -> ServerProcess {
    let child = bin()
        .args(["server", "--listen", addr, "--grace-seconds", &grace_seconds.to_string(), "--db"])
        .arg(sb.db())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    ServerProcess { child }
}

/// A minimal HTTP/1.1 client (one request per connection).
fn http(addr: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status: u16 = out[9..12].parse().unwrap();
    let text = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, serde_json::from_str(text).unwrap_or(Value::Null))
}

fn wait_status(addr: &str, id: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = http(addr, "GET", &format!("/v1/pipelines/p/executions/{id}"), None);
        if v["status"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "execution never reached {want}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sigterm_lets_running_attempts_finish_and_restart_continues() {
    let sb = Sandbox::new();
    let addr = free_addr();
    let server = start_server(&sb, &addr, 10);
    let log = sb.path("effects.log");
    let definition = json!({"name": "p", "stages": [
        {"name": "One", "actions": [{"name": "Slow", "command": ["sh", "-c", format!("sleep 1; echo one >> {}", log.display())]}]},
        {"name": "Two", "actions": [{"name": "Next", "command": ["sh", "-c", format!("echo two >> {}", log.display())]}]}
    ]});
    assert_eq!(http(&addr, "POST", "/v1/pipelines", Some(definition)).0, 201);
    let (st, v) = http(&addr, "POST", "/v1/pipelines/p/executions", Some(json!({})));
    assert_eq!(st, 201);
    let id = v["pipelineExecutionId"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_millis(300)); // Slow is running

    let pid = server.child.id() as i32;
    unsafe { libc_kill(pid) };
    let mut server = server;
    let t = Instant::now();
    let status = server.child.wait().unwrap();
    assert!(status.success(), "clean exit after SIGTERM: {status:?}");
    assert!(t.elapsed() < Duration::from_secs(9), "did not wait for the whole grace period");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\n", "the running attempt finished; nothing new started");

    // A restart takes the execution over and finishes it; One never runs again.
    let addr2 = free_addr();
    let _server2 = start_server(&sb, &addr2, 10);
    wait_status(&addr2, &id, "Succeeded");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "one\ntwo\n");
    // A graceful restart leaves no trace of failure: the attempt that became due
    // during the drain was released, not recorded as a service fault.
    let (_, history) = http(&addr2, "GET", "/v1/pipelines/p/action-executions", None);
    let statuses: Vec<&str> = history["actionExecutions"].as_array().unwrap().iter().map(|a| a["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, vec!["SUCCEEDED", "SUCCEEDED"], "{history}");
}

unsafe fn libc_kill(pid: i32) {
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    unsafe {
        kill(pid, 15);
    }
}
