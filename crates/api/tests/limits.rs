//! The server's connection limits through real sockets: an in-process server on a
//! loopback port with short timeouts. Clients that never finish their headers,
//! trickle a body, sit idle or crowd the connection cap do not keep others out.

use redrive_api::server::{HttpLimits, serve_with_limits};
use redrive_engine::service::Service;
use redrive_engine::{Driver, DriverConfig, SystemClock};
use redrive_store::{SqliteOptions, SqliteStore};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Slack on top of a timeout before a test gives up waiting for it to act.
const MARGIN: Duration = Duration::from_secs(3);
const LONG_MS: u64 = 600_000;

struct Server {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn server(limits: HttpLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("r.db"), SqliteOptions::default()).unwrap());
    let (handle, _join) = Driver::spawn(store.clone(), Arc::new(SystemClock), DriverConfig::default());
    let service = Arc::new(Service::new(store, handle, Arc::new(SystemClock)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(serve_with_limits(service, listener, limits, async {
        let _ = stopped.await;
    }));
    Server { addr, stop: Some(stop), served, _dir: dir }
}

fn limits(header_ms: u64, body_ms: u64, max_connections: usize) -> HttpLimits {
    HttpLimits { header_read_timeout_ms: header_ms, body_read_timeout_ms: body_ms, max_connections, ..HttpLimits::default() }
}

/// Sends `trickle` one byte every `every` (after `first` at once) while reading,
/// until the server closes the connection: (how long that took, what it sent), or
/// None if it is still open after `within`.
async fn until_closed(s: &mut TcpStream, first: &[u8], trickle: &[u8], every: Duration, within: Duration) -> Option<(Duration, String)> {
    let start = Instant::now();
    s.write_all(first).await.ok()?;
    let (mut received, mut buf, mut next) = (Vec::new(), [0u8; 4096], 0);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => return Some((start.elapsed(), String::from_utf8_lossy(&received).into_owned())),
                Ok(n) => received.extend_from_slice(&buf[..n]),
            },
            _ = tick.tick(), if next < trickle.len() => {
                if s.write_all(&trickle[next..=next]).await.is_err() {
                    return Some((start.elapsed(), String::from_utf8_lossy(&received).into_owned()));
                }
                next += 1;
            }
            () = tokio::time::sleep_until((start + within).into()) => return None,
        }
    }
}

/// `GET /healthz` on a new connection: its status line, or None after `within`.
async fn healthz(addr: &str, within: Duration) -> Option<String> {
    let ask = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        out.lines().next().map(str::to_string)
    };
    tokio::time::timeout(within, ask).await.ok().flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_finish_their_headers_are_disconnected() {
    let header_ms = 500;
    let s = server(limits(header_ms, LONG_MS, 64)).await;
    let within = Duration::from_millis(header_ms) + MARGIN;
    let at_least = Duration::from_millis(header_ms * 8 / 10);

    let mut partial = TcpStream::connect(&s.addr).await.unwrap();
    let (took, _) = until_closed(&mut partial, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n", b"", Duration::from_secs(1), within)
        .await
        .expect("a partial header is cut off");
    assert!(took >= at_least, "closed after {took:?}, before the header timeout");

    let mut silent = TcpStream::connect(&s.addr).await.unwrap();
    assert!(until_closed(&mut silent, b"", b"", Duration::from_secs(1), within).await.is_some(), "a silent client is cut off");

    // Slowloris: a byte every 50 ms keeps no per-read timer alive; the deadline is for the whole head.
    let mut slow = TcpStream::connect(&s.addr).await.unwrap();
    let trickle = [b'a'; 4096];
    let (took, _) = until_closed(&mut slow, b"GET /healthz HTTP/1.1\r\nX-Slow: ", &trickle, Duration::from_millis(50), within)
        .await
        .expect("trickled headers are cut off");
    assert!(took >= at_least, "closed after {took:?}");

    assert_eq!(healthz(&s.addr, MARGIN).await.as_deref(), Some("HTTP/1.1 200 OK"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let header_ms = 500;
    let s = server(limits(header_ms, LONG_MS, 64)).await;
    let mut c = TcpStream::connect(&s.addr).await.unwrap();
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = c.read(&mut buf).await.unwrap();
    let response = String::from_utf8_lossy(&buf[..n]);
    assert!(response.starts_with("HTTP/1.1 200") && response.ends_with("ok"), "{response}");
    let idle_since = Instant::now();
    let (_, rest) = until_closed(&mut c, b"", b"", Duration::from_secs(1), Duration::from_millis(header_ms) + MARGIN)
        .await
        .expect("the idle connection is closed");
    assert!(rest.is_empty(), "{rest}");
    assert!(idle_since.elapsed() >= Duration::from_millis(header_ms * 8 / 10), "kept-alive connections may idle that long");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_and_the_connection_is_closed() {
    let body_ms = 500;
    let s = server(limits(LONG_MS, body_ms, 64)).await;
    let mut c = TcpStream::connect(&s.addr).await.unwrap();
    let head = b"POST /v1/pipelines HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
    let (took, response) = until_closed(&mut c, head, &[b' '; 999], Duration::from_millis(50), Duration::from_millis(body_ms) + MARGIN)
        .await
        .expect("the trickled body is cut off");
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("the request body was not received within 500ms"), "{response}");
    assert!(took >= Duration::from_millis(body_ms * 8 / 10), "cut off after {took:?}");
    // On the AWS protocol's path the 408 is in its format.
    let mut c = TcpStream::connect(&s.addr).await.unwrap();
    let head = b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: CodePipeline_20150709.ListPipelines\r\nContent-Length: 1000\r\n\r\n{";
    let (_, response) = until_closed(&mut c, head, &[b' '; 999], Duration::from_millis(50), Duration::from_millis(body_ms) + MARGIN)
        .await
        .expect("the trickled body is cut off");
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("\"__type\":\"ValidationException\""), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431() {
    let s = server(limits(LONG_MS, LONG_MS, 64)).await;
    let mut c = TcpStream::connect(&s.addr).await.unwrap();
    let big = format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(redrive_api::server::MAX_HEADER_BYTES));
    let (_, response) = until_closed(&mut c, big.as_bytes(), b"", Duration::from_secs(1), MARGIN).await.expect("closed");
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    // A JSON error in the protocol's format: native on /v1 and the health routes…
    assert!(response.contains(r#"{"error":{"code":"ValidationException","message":"the request line and headers are over"#), "{response}");
    // …and the AWS protocol's `__type` on `POST /`.
    let mut c = TcpStream::connect(&s.addr).await.unwrap();
    let big = format!(
        "POST / HTTP/1.1\r\nHost: localhost\r\nX-Amz-Target: CodePipeline_20150709.ListPipelines\r\nContent-Length: 2\r\nX-Big: {}\r\n\r\n{{}}",
        "a".repeat(redrive_api::server::MAX_HEADER_BYTES)
    );
    let (_, response) = until_closed(&mut c, big.as_bytes(), b"", Duration::from_secs(1), MARGIN).await.expect("closed");
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    assert!(response.to_ascii_lowercase().contains("x-amzn-errortype: validationexception"), "{response}");
    assert!(response.contains(r#""__type":"ValidationException""#), "{response}");
    // Far over the limit, hyper answers before the application: still a 431.
    let mut c = TcpStream::connect(&s.addr).await.unwrap();
    let huge =
        format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(redrive_api::server::HYPER_MAX_HEADER_BYTES));
    let (_, response) = until_closed(&mut c, huge.as_bytes(), b"", Duration::from_secs(1), MARGIN).await.expect("closed");
    assert!(response.starts_with("HTTP/1.1 431"), "{response}");
    // Just under the limit is fine.
    let mut c = TcpStream::connect(&s.addr).await.unwrap();
    let fits = format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Big: {}\r\n\r\n", "a".repeat(60 * 1024));
    let (_, response) = until_closed(&mut c, fits.as_bytes(), b"", Duration::from_secs(1), MARGIN).await.expect("closed");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

/// Idle sockets: silent ones, ones with half their headers, ones trickling a body.
fn crowd(addr: &str, n: usize) -> Vec<std::net::TcpStream> {
    use std::io::Write;
    (0..n)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            match i % 3 {
                0 => {}
                1 => s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n").unwrap(),
                _ => s.write_all(b"POST /v1/pipelines HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{").unwrap(),
            }
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect()
}

/// How many of `sockets` the server has not closed.
fn still_open(sockets: &[std::net::TcpStream]) -> usize {
    let mut buf = [0u8; 512];
    let mut open = 0;
    for mut s in sockets {
        if matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            open += 1;
        }
    }
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_new_connections_replace_idle_ones() {
    // Nothing times out during the test: only replacing idle connections lets /healthz in.
    let cap = 4;
    let s = server(limits(LONG_MS, LONG_MS, cap)).await;
    let addr = s.addr.clone();
    let idle = tokio::task::spawn_blocking(move || crowd(&addr, 60)).await.unwrap();
    for _ in 0..5 {
        assert_eq!(healthz(&s.addr, Duration::from_secs(2)).await.as_deref(), Some("HTTP/1.1 200 OK"));
    }
    let deadline = Instant::now() + MARGIN;
    while still_open(&idle) > cap && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(still_open(&idle) <= cap, "{} idle connections open over a cap of {cap}", still_open(&idle));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_idle_connections_at_once() {
    let mut s = server(limits(LONG_MS, LONG_MS, 64)).await;
    let mut kept = TcpStream::connect(&s.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    assert!(kept.read(&mut buf).await.unwrap() > 0);
    let _silent = TcpStream::connect(&s.addr).await.unwrap();
    assert_eq!(healthz(&s.addr, MARGIN).await.as_deref(), Some("HTTP/1.1 200 OK"));
    s.stop.take().unwrap().send(()).unwrap();
    let served =
        tokio::time::timeout(Duration::from_secs(2), &mut s.served).await.expect("the server stops without waiting for idle clients");
    served.unwrap().unwrap();
    assert!(TcpStream::connect(&s.addr).await.is_err(), "no longer accepting");
}
