//! [`Engine::serve`]: the native HTTP API over an SDK process's own store, so that
//! `redrive execution list NAME --function` (and any HTTP client) can see its
//! function executions while the process holds the store file.

use crate::{Engine, Error};
use redrive_engine::service::Service;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How often the background server checks whether the engine has stopped.
const ENGINE_CHECK_EVERY: Duration = Duration::from_millis(200);

impl Engine {
    /// Serves redrive's native HTTP API (the API of `redrive server`: `/v1/...`,
    /// `/openapi.json`, `/healthz`, `/metrics`) over this engine's store, in the
    /// background, on `addr` (`"127.0.0.1:0"` picks a free port). Resolves with
    /// the address bound once it accepts connections.
    ///
    /// It shows this process's durable-function executions with their steps
    /// (`GET /v1/functions/{name}/executions[/{id}]`), which is what
    /// `redrive execution list NAME --function --server http://ADDR` and
    /// `redrive execution get NAME ID --function` read. Pipelines, executions
    /// and dead-letter queues of the store are served as well.
    ///
    /// Connections are limited as `redrive server`'s are by default (see
    /// [`redrive_api::server::HttpLimits`]), except that this process's open-file
    /// limit is not raised: the connection cap is at most half of it.
    ///
    /// The API has **no authentication** and can create and start pipelines
    /// (including `command:` actions): bind a loopback address. The server stops
    /// shortly after [`Engine::shutdown`].
    ///
    /// ```no_run
    /// # async fn main_() -> Result<(), redrive_sdk::Error> {
    /// let engine = redrive_sdk::Engine::open("sqlite://orders.db").await?;
    /// let addr = engine.serve("127.0.0.1:7878").await?;
    /// println!("function executions: redrive execution list process-order --function --server http://{addr}");
    /// # Ok(()) }
    /// ```
    pub async fn serve(&self, addr: &str) -> Result<SocketAddr, Error> {
        let listener = listen(addr).await.map_err(|e| Error::Engine(format!("cannot listen on {addr}: {e}")))?;
        let bound = listener.local_addr().map_err(|e| Error::Engine(format!("cannot listen on {addr}: {e}")))?;
        if !bound.ip().is_loopback() {
            tracing::warn!(%bound, "the redrive API has no authentication and is listening beyond loopback");
        }
        let service = Arc::new(Service::new(self.store.clone(), self.handle.clone(), self.clock.clone()));
        // The server ends when the engine does, so that it does not hold the store
        // (and its lock file) after a shutdown: `Engine::shutdown` aborts the
        // watcher below, which drops `stop`; an engine stopped otherwise is
        // noticed by polling it.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let engine = self.handle.clone();
        let shutdown = async move {
            let engine_stopped = async move {
                loop {
                    tokio::time::sleep(ENGINE_CHECK_EVERY).await;
                    if engine.stats().await.is_err() {
                        return;
                    }
                }
            };
            tokio::select! {
                _ = stopped => {}
                () = engine_stopped => {}
            }
        };
        let server = tokio::spawn(async move {
            let limits = redrive_api::server::HttpLimits::default();
            if let Err(e) = redrive_api::server::serve_with_limits(service, listener, limits, shutdown).await {
                tracing::error!(error = %e, "the redrive API server stopped");
            }
        });
        let watcher = tokio::spawn(async move {
            let _stop = stop;
            let _ = server.await;
        });
        let mut background = self.background.lock().expect("background lock");
        background.retain(|t| !t.is_finished());
        background.push(watcher);
        Ok(bound)
    }
}

/// A listener on the first address `addr` resolves to that can be bound, with
/// the server's listen backlog.
async fn listen(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = std::io::Error::new(std::io::ErrorKind::InvalidInput, "the address resolves to nothing");
    for a in tokio::net::lookup_host(addr).await? {
        match redrive_api::server::bind(a) {
            Ok(listener) => return Ok(listener),
            Err(e) => last = e,
        }
    }
    Err(last)
}
