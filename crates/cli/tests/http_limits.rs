//! `redrive server`'s connection limits, through the real binary: clients that
//! never finish their headers or trickle a body are cut off, and thousands of idle
//! or slowloris sockets neither starve `/healthz` nor pile up file descriptors.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Slack on top of a timeout before a test gives up waiting for it to act.
const MARGIN: Duration = Duration::from_secs(3);
/// File descriptors the server may hold beyond its baseline and its connection
/// cap: the one connection accepted while it makes room for it, and a little
/// for the engine's own work.
const FD_SLACK: usize = 4;

/// A server whose config file is `http:` with these settings.
fn server_with_http(sb: &Sandbox, http: &str) -> ServerProcess {
    let config = sb.write("server.yaml", &format!("http: {{{http}}}\n"));
    start_server(server_command(sb, "127.0.0.1:0").arg("--config").arg(config).env_remove("REDRIVE_CONFIG"))
}

/// Reads until the server closes `s`: (how long from `since`, what it sent), or
/// None if it is still open at `since + within`.
fn until_closed(s: &mut TcpStream, since: Instant, within: Duration) -> Option<(Duration, String)> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = (since + within).checked_duration_since(Instant::now())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => return None,
            Err(_) => break,
        }
    }
    Some((since.elapsed(), String::from_utf8_lossy(&received).into_owned()))
}

/// Writes one byte of `bytes` every `every` on a clone of `s` until done, the
/// server closes the connection or `stop` is set.
fn trickle(s: &TcpStream, bytes: Vec<u8>, every: Duration, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let mut w = s.try_clone().unwrap();
    std::thread::spawn(move || {
        for b in bytes {
            if stop.load(Ordering::SeqCst) || w.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(every);
        }
    })
}

/// `GET /healthz` on a new connection: its status line, or None after `within`.
fn healthz(addr: &str, within: Duration) -> Option<String> {
    let since = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), within).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").ok()?;
    let (_, response) = until_closed(&mut s, since, within)?;
    response.lines().next().map(str::to_string)
}

fn assert_healthy(addr: &str) {
    let t = Instant::now();
    assert_eq!(healthz(addr, Duration::from_secs(2)).as_deref(), Some("HTTP/1.1 200 OK"), "/healthz after {:?}", t.elapsed());
}

fn open_fds(server: &ServerProcess) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.child.id())).unwrap().count()
}

/// The server's descriptors with no connection open (once it has closed the last).
fn baseline_fds(server: &ServerProcess) -> usize {
    let deadline = Instant::now() + MARGIN;
    let mut fewest = open_fds(server);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        fewest = fewest.min(open_fds(server));
    }
    fewest
}

#[test]
fn a_client_that_stops_mid_headers_is_disconnected() {
    let sb = Sandbox::new();
    let server = server_with_http(&sb, "headerReadTimeout: 1s");
    let since = Instant::now();
    let mut c = TcpStream::connect(&server.addr).unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").unwrap();
    let (took, _) = until_closed(&mut c, since, Duration::from_secs(1) + MARGIN).expect("disconnected within the header timeout");
    assert!(took >= Duration::from_millis(800), "disconnected after {took:?}, before the header timeout");
    assert_healthy(&server.addr);
}

#[test]
fn a_trickled_body_is_cut_off_with_408() {
    let sb = Sandbox::new();
    let server = server_with_http(&sb, "bodyReadTimeout: 1s");
    let since = Instant::now();
    let mut c = TcpStream::connect(&server.addr).unwrap();
    c.write_all(b"POST /v1/pipelines HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = trickle(&c, vec![b' '; 999], Duration::from_millis(50), stop.clone());
    let result = until_closed(&mut c, since, Duration::from_secs(1) + MARGIN);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    let (took, response) = result.expect("the body is cut off");
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("the request body was not received within 1s"), "{response}");
    assert!(took >= Duration::from_millis(800), "cut off after {took:?}");
    assert_healthy(&server.addr);
}

/// Opens `n` sockets that never complete a request (silent, half a header, half a
/// body), checking after every 100 that the server holds at most `max_fds`.
fn crowd(server: &ServerProcess, n: usize, max_fds: usize) -> Vec<TcpStream> {
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = TcpStream::connect(&server.addr).unwrap();
        let _ = match i % 3 {
            0 => Ok(()),
            1 => s.write_all(b"GET /v1/pipelines HTTP/1.1\r\nHost: localhost\r\n"),
            _ => s.write_all(b"POST /v1/pipelines HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"),
        };
        sockets.push(s);
        if i % 100 == 99 {
            let fds = open_fds(server);
            assert!(fds <= max_fds, "{fds} descriptors open with {} sockets against the server; at most {max_fds}", i + 1);
        }
    }
    sockets
}

/// Slowloris clients: each trickles an endless header, a byte every 100 ms.
fn slowloris(addr: &str, n: usize, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nX-Slow: ").unwrap();
            trickle(&s, vec![b'a'; 100_000], Duration::from_millis(100), stop.clone())
        })
        .collect()
}

/// The test process itself needs a descriptor per socket it opens.
fn allow_fds(n: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < n as libc::rlim_t {
            lim.rlim_cur = lim.rlim_max.min(n as libc::rlim_t);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
}

/// Idle sockets and slowloris clients beyond the cap: `/healthz` keeps answering
/// promptly (nothing times out here: each new connection replaces the oldest one
/// not handling a request) and the server's descriptors stay under the cap.
fn healthz_answers_through_a_crowd(server: &ServerProcess, cap: usize, idle: usize) {
    assert_healthy(&server.addr);
    let max_fds = baseline_fds(server) + cap + FD_SLACK;
    let stop = Arc::new(AtomicBool::new(false));
    let tricklers = slowloris(&server.addr, 20, &stop);
    let sockets = crowd(server, idle, max_fds);
    for _ in 0..5 {
        assert_healthy(&server.addr);
        let fds = open_fds(server);
        assert!(fds <= max_fds, "{fds} descriptors open; at most {max_fds}");
    }
    stop.store(true, Ordering::SeqCst);
    drop(sockets);
    for t in tricklers {
        t.join().unwrap();
    }
}

#[test]
fn healthz_answers_through_idle_and_slowloris_sockets_beyond_a_low_cap() {
    allow_fds(3_000);
    let sb = Sandbox::new();
    let server = server_with_http(&sb, "headerReadTimeout: 1h, bodyReadTimeout: 1h, maxConnections: 16");
    healthz_answers_through_a_crowd(&server, 16, 2_100);
}

#[test]
fn healthz_answers_through_2000_idle_sockets_with_the_default_limits() {
    allow_fds(3_000);
    let sb = Sandbox::new();
    let server = start_server(&mut server_command(&sb, "127.0.0.1:0"));
    healthz_answers_through_a_crowd(&server, redrive_api::server::DEFAULT_MAX_CONNECTIONS, 2_100);
}

#[test]
fn the_connection_cap_fits_under_a_low_open_file_limit() {
    const NOFILE: libc::rlim_t = 64;
    let sb = Sandbox::new();
    let mut cmd = server_command(&sb, "127.0.0.1:0");
    // SAFETY: only setrlimit between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let lim = libc::rlimit { rlim_cur: NOFILE, rlim_max: NOFILE };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
    }
    let server = start_server(&mut cmd);
    // Half of 64, not the default 1024: the server never runs out of descriptors.
    healthz_answers_through_a_crowd(&server, NOFILE as usize / 2, 300);
}

#[test]
fn http_limits_out_of_range_stop_the_server() {
    let sb = Sandbox::new();
    let config = sb.write("server.yaml", "http:\n  headerReadTimeout: 0s\n  maxConnections: 100000\n");
    let out = server_command(&sb, "127.0.0.1:0").arg("--config").arg(&config).env_remove("REDRIVE_CONFIG").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("$.http.headerReadTimeout: too short; at least 1s"), "{stderr}");
    assert!(stderr.contains("$.http.maxConnections: out of range (got 100000; allowed: an integer from 1 to 65536)"), "{stderr}");
    assert!(stderr.contains("the server did not start"), "{stderr}");
}
