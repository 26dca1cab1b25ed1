//! `Engine::serve`: the native API from the SDK process shows its function
//! executions, and stops with the engine so the store file can be opened again.

use redrive_sdk::{Context, Engine, Error, StepError, StepPolicy};
use serde_json::Value;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

async fn greet(ctx: Context, who: String) -> Result<String, Error> {
    let hello: String = ctx.step("hello", StepPolicy::default(), |_| async { Ok::<_, StepError>(format!("hello {who}")) }).await?;
    Ok(hello)
}

/// One `GET` over a fresh connection: (status, JSON body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = get_text(addr, path).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// One `GET` over a fresh connection: (status, raw body).
async fn get_text(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status: u16 = out[9..12].parse().unwrap();
        (status, out.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_shows_function_executions_and_stops_with_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("s.db").display());
    let engine = Engine::open(&url).await.unwrap();
    engine.register("greet", greet);
    let h = engine.start("greet", "greet-1", &"ada".to_string()).await.unwrap();
    assert_eq!(h.result::<String>().await.unwrap(), "hello ada");

    let addr = engine.serve("127.0.0.1:0").await.unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    let (status, list) = get(addr, "/v1/functions/greet/executions").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["executions"][0]["executionId"], h.id());
    assert_eq!(list["executions"][0]["name"], "greet-1");
    assert_eq!(list["executions"][0]["status"], "Succeeded");
    let (status, one) = get(addr, &format!("/v1/functions/greet/executions/{}", h.id())).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["result"], "hello ada");
    assert_eq!(one["steps"][0]["name"], "hello");
    assert_eq!(one["steps"][0]["result"], "hello ada");
    assert_eq!(one["attempts"].as_array().unwrap().len(), 1);
    // An address already in use is an error, not a panic.
    assert!(engine.serve(&addr.to_string()).await.is_err());

    engine.shutdown().await;
    drop((h, engine));
    // The server lets go of the store: the file can be opened again.
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        match Engine::open(&url).await {
            Ok(e) => break e,
            Err(e) => {
                assert!(Instant::now() < deadline, "the store is still held: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(std::net::TcpStream::connect(addr).is_err(), "still listening on {addr}");
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_function_steps_like_actions() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(&format!("sqlite://{}", dir.path().join("m.db").display())).await.unwrap();
    let tries = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = tries.clone();
    engine.register("charge", move |ctx: Context, _: ()| {
        let t = t.clone();
        async move {
            let policy: StepPolicy =
                redrive_sdk::policy(["Step.THROTTLING"]).interval_seconds(0.05).backoff_rate(1.0).max_attempts(5).build().unwrap().into();
            let n: usize = ctx
                .step("card", policy, |_| async {
                    let n = t.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if n < 2 { Err(StepError::throttled("busy")) } else { Ok(n) }
                })
                .await?;
            Ok::<_, Error>(n)
        }
    });
    let h = engine.start("charge", "charge-1", &()).await.unwrap();
    assert_eq!(h.result::<usize>().await.unwrap(), 2);
    let addr = engine.serve("127.0.0.1:0").await.unwrap();
    let (status, text) = get_text(addr, "/metrics").await;
    assert_eq!(status, 200, "{text}");
    let series = |s: &str| format!("{s}\n");
    for line in [
        r#"redrive_attempts_total{kind="function",pipeline="charge",action="card",exception_type="Step.THROTTLING",outcome="FAILED"} 2"#,
        r#"redrive_attempts_total{kind="function",pipeline="charge",action="card",exception_type="none",outcome="SUCCEEDED"} 1"#,
        r#"redrive_retries_scheduled_total{kind="function",pipeline="charge",action="card",exception_type="Step.THROTTLING",policy="0"} 2"#,
        r#"redrive_executions_total{kind="function",pipeline="charge",status="Started"} 1"#,
        r#"redrive_executions_total{kind="function",pipeline="charge",status="Succeeded"} 1"#,
        r#"redrive_attempt_duration_seconds_count{kind="function"} 3"#,
    ] {
        assert!(text.contains(&series(line)), "{line} missing from\n{text}");
    }
    engine.shutdown().await;
}
