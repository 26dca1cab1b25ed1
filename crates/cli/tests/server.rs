//! `redrive server` as a process: SIGTERM lets running attempts finish, a restart
//! continues unfinished executions.

mod common;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

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
    let server = start_server(server_command(&sb, &addr).args(["--grace-seconds", "10"]));
    let (log, started) = (sb.path("effects.log"), sb.path("slow-started"));
    let definition = json!({"name": "p", "stages": [
        {"name": "One", "actions": [{"name": "Slow", "command": ["sh", "-c", format!("touch {}; sleep 1; echo one >> {}", started.display(), log.display())]}]},
        {"name": "Two", "actions": [{"name": "Next", "command": ["sh", "-c", format!("echo two >> {}", log.display())]}]}
    ]});
    assert_eq!(http(&addr, "POST", "/v1/pipelines", Some(definition)).0, 201);
    let (st, v) = http(&addr, "POST", "/v1/pipelines/p/executions", Some(json!({})));
    assert_eq!(st, 201);
    let id = v["pipelineExecutionId"].as_str().unwrap().to_string();
    // The phase: Slow is running (it has started and not finished) when SIGTERM comes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(Instant::now() < deadline, "Slow never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!log.exists(), "Slow finished before the SIGTERM");

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
    let _server2 = start_server(server_command(&sb, &addr2).args(["--grace-seconds", "10"]));
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

/// Without authentication the server serves loopback only: a non-loopback
/// `--listen` is refused before anything is created, with how to go on.
#[test]
fn a_non_loopback_listen_is_refused_without_insecure_no_auth() {
    let sb = Sandbox::new();
    for listen in ["0.0.0.0:0", "[::]:0"] {
        let out = server_command(&sb, listen).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{listen}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("refusing to listen on {listen}")), "{stderr}");
        assert!(stderr.contains("--insecure-no-auth") && stderr.contains("127.0.0.1:7878"), "{stderr}");
        assert!(!sb.db().exists(), "a refused start creates no store");
    }
}

#[test]
fn insecure_no_auth_exposes_the_server_loudly() {
    let sb = Sandbox::new();
    let server = start_server(server_command(&sb, "0.0.0.0:0").arg("--insecure-no-auth"));
    let port = server.addr.rsplit(':').next().unwrap();
    let (status, _) = http(&format!("127.0.0.1:{port}"), "GET", "/healthz", None);
    assert_eq!(status, 200);
    let warned = server.before_banner.iter().any(|l| l.contains("WARNING") && l.contains("NO AUTHENTICATION"));
    assert!(warned, "{:?}", server.before_banner);
}

/// `redrive backup` beside a running server: a consistent, checked, private copy
/// that a server then serves with everything committed before it.
#[test]
fn a_backup_taken_while_the_server_runs_serves_what_was_committed() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    let definition = json!({"name": "p", "stages": [{"name": "S", "actions": [{"name": "A", "noop": {}}]}]});
    assert_eq!(http(&server.addr, "POST", "/v1/pipelines", Some(definition)).0, 201);
    let (status, started) = http(&server.addr, "POST", "/v1/pipelines/p/executions", Some(json!({})));
    assert!(status == 200 || status == 201, "{status} {started}");
    let id = started["pipelineExecutionId"].as_str().unwrap().to_string();
    wait_status(&server.addr, &id, "Succeeded");

    let out = sb.path("backup.db");
    let b = bin().args(["backup", "--db"]).arg(sb.db()).arg(&out).output().unwrap();
    let stdout = String::from_utf8_lossy(&b.stdout);
    assert_eq!(b.status.code(), Some(0), "{b:?}");
    assert!(stdout.contains("integrity ok; 1 executions, 1 ledger rows"), "{stdout}");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let again = bin().args(["backup", "--db"]).arg(sb.db()).arg(&out).output().unwrap();
    assert_eq!(again.status.code(), Some(2), "an existing file is never overwritten: {again:?}");
    drop(server);

    let restored = start_server(bin().args(["server", "--listen", "127.0.0.1:0", "--db"]).arg(&out));
    wait_status(&restored.addr, &id, "Succeeded");
    let (_, attempts) = http(&restored.addr, "GET", "/v1/pipelines/p/action-executions", None);
    assert_eq!(attempts["actionExecutions"].as_array().map(Vec::len), Some(1), "{attempts}");
}

/// One raw request: (status, body).
fn raw(addr: &str, request: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (out[9..12].parse().unwrap(), out.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default())
}

/// What a web page can make a browser send — a text/plain or form POST, or any
/// request under a DNS name rebound to this machine — changes nothing.
#[test]
fn browser_forgeries_are_refused() {
    let sb = Sandbox::new();
    let server = start_server(server_command(&sb, "127.0.0.1:0").args(["--allowed-host", "redrive.internal"]));
    let addr = &server.addr;
    let body = r#"{"name":"csrf","stages":[{"name":"S","actions":[{"name":"A","command":["true"]}]}]}"#;
    for content_type in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let (status, answer) = raw(
            addr,
            &format!(
                "POST /v1/pipelines HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
        assert_eq!(status, 415, "{content_type}: {answer}");
    }
    let (status, answer) = raw(
        addr,
        &format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nX-Amz-Target: CodePipeline_20150709.DeletePipeline\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
        ),
    );
    assert_eq!(status, 415, "{answer}");
    assert!(answer.contains("SerializationException"), "{answer}");
    // A name rebound to 127.0.0.1 is refused, reads included; an allowed name and localhost are not.
    let (status, answer) = raw(addr, "GET /v1/pipelines HTTP/1.1\r\nHost: attacker.example:7878\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("--allowed-host"), "{answer}");
    for host in ["redrive.internal:7878", "localhost", "[::1]:7878"] {
        let (status, answer) = raw(addr, &format!("GET /v1/pipelines HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"));
        assert_eq!(status, 200, "{host}: {answer}");
    }
    let (_, list) = http(addr, "GET", "/v1/pipelines", None);
    assert_eq!(list["pipelines"].as_array().map(Vec::len), Some(0), "nothing was created: {list}");
}

/// `--tls-cert/--tls-key`: the server speaks HTTPS only; a bad file starts
/// nothing. Under `auth:` the console's session cookie is then `Secure`.
#[test]
fn tls_serves_https_with_the_given_certificate() {
    let sb = Sandbox::new();
    let (cert, key) = (sb.path("cert.pem"), sb.path("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (to make a test certificate)");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));

    let bad = bin()
        .args(["server", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&key)
        .arg("--tls-key")
        .arg(&key)
        .arg("--db")
        .arg(sb.db())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--tls-cert"), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(!sb.db().exists(), "a refused start creates nothing");

    let made = bin().args(["token", "create", "--name", "admin", "--scope", "admin", "--db"]).arg(sb.db()).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let admin = String::from_utf8(made.stdout).unwrap().trim().to_string();
    let config = sb.path("server.yaml");
    std::fs::write(&config, "auth:\n  awsCredentials: []\n").unwrap();
    let mut child = bin()
        .args(["server", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--config")
        .arg(&config)
        .arg("--db")
        .arg(sb.db())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let banner =
        std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok).find(|l| l.contains("listening on")).unwrap();
    let addr = banner.split_once("listening on https://").expect("an https banner").1.split_whitespace().next().unwrap().to_string();
    let port = addr.rsplit_once(':').unwrap().1.to_string();

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (secure, plain, cookie) = runtime.block_on(async {
        let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
        let client = reqwest::Client::builder().add_root_certificate(root).build().unwrap();
        let secure = client.get(format!("https://localhost:{port}/healthz")).send().await.map(|r| r.status().as_u16());
        let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/healthz")).send().await.map(|r| r.status().as_u16());
        let login = client.post(format!("https://localhost:{port}/console/login")).json(&serde_json::json!({"token": admin})).send().await;
        let cookie = login.ok().and_then(|r| r.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_string()));
        (secure, plain, cookie)
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(secure.unwrap(), 200);
    let cookie = cookie.expect("a session cookie");
    assert!(
        cookie.starts_with("redrive_session=") && cookie.ends_with("; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200; Secure"),
        "{cookie}"
    );
    assert!(plain.is_err() || plain.as_ref().is_ok_and(|s| *s != 200), "plain HTTP is not served: {plain:?}");
}

/// A cluster mode is for PostgreSQL: on SQLite it is refused as invalid input,
/// naming the flag, before the database file is made.
#[test]
fn a_cluster_mode_on_sqlite_is_refused_and_creates_nothing() {
    let sb = Sandbox::new();
    for mode in [&["--cluster-mode", "spread"][..], &["--cluster-mode", "standby"], &["--spread"]] {
        let out = bin().args(["server", "--listen", "127.0.0.1:0"]).args(mode).arg("--db").arg(sb.db()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{mode:?}: {stderr}");
        assert!(stderr.contains("--cluster-mode") && stderr.contains("PostgreSQL"), "{mode:?}: {stderr}");
        assert!(!sb.db().exists(), "{mode:?}: a refused start creates nothing");
    }
    let bad = bin().args(["server", "--cluster-mode", "sideways", "--db"]).arg(sb.db()).output().unwrap();
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("spread") && stderr.contains("standby"), "the allowed values are named: {stderr}");
}
