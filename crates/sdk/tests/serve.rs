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
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status: u16 = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
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
