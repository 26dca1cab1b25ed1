//! Helpers for end-to-end tests that drive the real `redrive` binary.
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_redrive"))
}

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox { dir: tempfile::tempdir().expect("tempdir") }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    pub fn db(&self) -> PathBuf {
        self.path("redrive.db")
    }

    /// `redrive run FILE --db DB --output json`, returning (exit code, parsed summary, stderr).
    pub fn run_json(&self, file: &Path) -> (i32, serde_json::Value, String) {
        let out = bin().arg("run").arg(file).arg("--db").arg(self.db()).args(["--output", "json"]).output().expect("spawn redrive");
        parse(out)
    }

    pub fn resume_json(&self) -> (i32, serde_json::Value, String) {
        let out = bin().args(["run", "--resume", "--db"]).arg(self.db()).args(["--output", "json"]).output().expect("spawn redrive");
        parse(out)
    }
}

pub fn parse(out: Output) -> (i32, serde_json::Value, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"));
    (out.status.code().unwrap_or(-1), v, stderr)
}

/// Attempts of one action from a run summary.
pub fn attempts<'a>(summary: &'a serde_json::Value, stage: &str, action: &str) -> Vec<&'a serde_json::Value> {
    summary["attempts"].as_array().expect("attempts").iter().filter(|a| a["stage"] == stage && a["action"] == action).collect()
}

pub fn ms(v: &serde_json::Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// A `redrive server` started by [`start_server`], killed on drop.
pub struct ServerProcess {
    pub child: Child,
    /// `HOST:PORT` it listens on.
    pub addr: String,
    /// `http://HOST:PORT`.
    pub url: String,
    /// The stderr line that announced the address ("listening on http://ADDR ...").
    pub banner: String,
    /// The stderr lines printed before the banner.
    pub before_banner: Vec<String>,
}

impl ServerProcess {
    /// SIGKILL: no shutdown at all.
    pub fn kill9(mut self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address nothing listens on (for now).
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// `redrive server --listen LISTEN --db DB`, to add arguments or environment to and pass
/// to [`start_server`]; `127.0.0.1:0` lets the server choose its port.
pub fn server_command(sb: &Sandbox, listen: &str) -> Command {
    let mut cmd = bin();
    cmd.args(["server", "--listen", listen, "--db"]).arg(sb.db());
    cmd
}

/// Spawns `cmd` (from [`server_command`]) and waits until it prints the address it
/// listens on; its stderr is drained from then on.
pub fn start_server(cmd: &mut Command) -> ServerProcess {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn redrive server");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut tx, mut before) = (Some(tx), Vec::new());
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("listening on http://")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send((line, std::mem::take(&mut before)));
            } else if tx.is_some() {
                before.push(line);
            }
        }
    });
    let (banner, before_banner) = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(lines) => lines,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("server did not print its address");
        }
    };
    let addr = banner.split_once("listening on http://").unwrap().1.split_whitespace().next().unwrap().to_string();
    ServerProcess { child, url: format!("http://{addr}"), addr, banner, before_banner }
}

/// A minimal HTTP/1.1 client (one request per connection): (status, JSON body or null).
pub fn http(addr: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, text) = http_text(addr, method, path, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Like [`http`], the body as text.
pub fn http_text(addr: &str, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    http_text_as(addr, None, method, path, body)
}

/// Like [`http`], with `Authorization: Bearer TOKEN` when `token` is given.
pub fn http_as(addr: &str, token: Option<&str>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, text) = http_text_as(addr, token, method, path, body);
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn http_text_as(addr: &str, token: Option<&str>, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status: u16 = out[9..12].parse().unwrap();
    let text = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, text.to_string())
}

/// Starts an execution of `pipeline` with an empty input (native API); its id.
pub fn start_execution(addr: &str, pipeline: &str) -> String {
    let (status, v) = http(addr, "POST", &format!("/v1/pipelines/{pipeline}/executions"), Some(serde_json::json!({})));
    assert_eq!(status, 201, "{v}");
    v["pipelineExecutionId"].as_str().unwrap().to_string()
}

/// Polls `GET /v1/pipelines/{pipeline}/executions/{id}` on `addr` until its
/// status is `want` (panics after `within`).
pub fn wait_for_status(addr: &str, pipeline: &str, id: &str, want: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (_, v) = http(addr, "GET", &format!("/v1/pipelines/{pipeline}/executions/{id}"), None);
        if v["status"] == want {
            return;
        }
        assert!(Instant::now() < deadline, "execution {id} never reached {want}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Two servers sharing one database (`a`, `b`): 100 concurrent
/// RetryStageExecution calls of one failed execution, sent to both, start one
/// new series; `query` reads the database (one value).
pub fn hundred_concurrent_stage_retries_start_one_series(a: &str, b: &str, sb: &Sandbox, query: impl Fn(&str) -> String) {
    let marker = sb.path("failed-once");
    // Fails its first run only: the one accepted retry succeeds, and every later
    // retry finds nothing failed.
    let definition = serde_json::json!({"name": "p", "executionMode": "PARALLEL", "stages": [{"name": "S", "actions": [
        {"name": "A", "command": ["sh", "-c", format!("test -e {m} || {{ touch {m}; exit 1; }}", m = marker.display())]}]}]});
    assert_eq!(http(a, "POST", "/v1/pipelines", Some(definition)).0, 201);
    let id = start_execution(a, "p");
    wait_for_status(a, "p", &id, "Failed", Duration::from_secs(30));
    let addrs = [a.to_string(), b.to_string()];
    let threads: Vec<_> = (0..100)
        .map(|i| {
            let (addr, id) = (addrs[i % 2].clone(), id.clone());
            let path = format!("/v1/pipelines/p/executions/{id}/stages/S/retry");
            std::thread::spawn(move || http(&addr, "POST", &path, Some(serde_json::json!({"retryMode": "FAILED_ACTIONS"}))))
        })
        .collect();
    let answers: Vec<(u16, Value)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let shown = || answers.iter().map(|(s, v)| format!("{s} {v}")).collect::<Vec<_>>();
    assert_eq!(answers.iter().filter(|(s, _)| *s == 200).count(), 1, "one retry is accepted: {:?}", shown());
    // The others are refused as the API says (a retry already in progress, or
    // the stage no longer failed), none fails or is lost.
    assert!(answers.iter().all(|(s, _)| *s == 200 || *s == 400 || *s == 409), "{:?}", shown());
    wait_for_status(b, "p", &id, "Succeeded", Duration::from_secs(30));
    assert_eq!(query("SELECT count(DISTINCT series) FROM ledger"), "2", "one new series");
    assert_eq!(query("SELECT count(*) FROM ledger WHERE series = 2"), "1");
}

/// A CodePipeline call (`POST /` with `X-Amz-Target`, unsigned): status and JSON body.
pub fn aws_call(addr: &str, operation: &str, body: Value) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: CodePipeline_20150709.{operation}\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status: u16 = out[9..12].parse().unwrap();
    let text = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, serde_json::from_str(text).unwrap_or(Value::Null))
}

/// A finished `redrive` client command.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}\nstderr:\n{}", self.stdout, self.stderr))
    }

    pub fn ok(self) -> Run {
        self.code(0)
    }

    pub fn code(self, want: i32) -> Run {
        assert_eq!(self.code, want, "exit code\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }
}

pub fn finish(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// `redrive ARGS` against `server` (through REDRIVE_SERVER).
pub fn cli(server: &str, args: &[&str]) -> Run {
    finish(bin().args(args).env("REDRIVE_SERVER", server).output().expect("spawn redrive"))
}

/// Polls `f` until it returns `Some`, for at most 30 s.
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One request an [`HttpService`] received: its Idempotency-Key (one per
/// execution's action), when it arrived and when it was answered (since the
/// service started), and the status it was answered with.
#[derive(Clone, Debug)]
pub struct Seen {
    pub key: String,
    pub entered: Duration,
    pub left: Duration,
    pub status: u16,
}

/// A tiny local HTTP service for the tests: one thread per connection,
/// `Connection: close`. It reads each request (headers and body), holds it
/// `hold`, answers 503 while `failing`, else 200, and records it.
pub struct HttpService {
    pub addr: String,
    pub started: Instant,
    pub failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl HttpService {
    pub fn start(hold: Duration, failing: bool) -> HttpService {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let started = Instant::now();
        let service = HttpService { addr, started, failing: std::sync::Arc::new(failing.into()), seen: Default::default() };
        let (f, s) = (service.failing.clone(), service.seen.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (f, s) = (f.clone(), s.clone());
                std::thread::spawn(move || {
                    let entered = started.elapsed();
                    let Some(key) = read_request(&conn) else { return };
                    std::thread::sleep(hold);
                    let status = if f.load(std::sync::atomic::Ordering::SeqCst) { 503 } else { 200 };
                    s.lock().unwrap().push(Seen { key, entered, left: started.elapsed(), status });
                    answer(conn, status);
                });
            }
        });
        service
    }

    /// Answers 503 from now on, or 200.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, std::sync::atomic::Ordering::SeqCst);
    }

    /// The requests answered so far, in the order they were answered.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Reads a request's headers and body; its Idempotency-Key (empty if none),
/// or `None` if the connection closed first.
fn read_request(conn: &std::net::TcpStream) -> Option<String> {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let (mut key, mut length) = (String::new(), 0usize);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "idempotency-key" => key = value.trim().to_string(),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    Some(key)
}

fn answer(mut conn: std::net::TcpStream, status: u16) {
    let (text, reason) = if status == 200 { ("{\"ok\":true}", "OK") } else { ("{\"error\":\"unavailable\"}", "Service Unavailable") };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}
