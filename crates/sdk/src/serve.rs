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
    /// On PostgreSQL, where the SDK's processes share the shards, each request
    /// is served by the holder of its function's (or pipeline's) shard: this
    /// process, or another that serves the API too (forwarded), else 503.
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
        let limits = redrive_api::server::HttpLimits::default();
        // The server ends when the engine does, so that it does not hold the store
        // (and its lock file) after a shutdown: `Engine::shutdown` aborts the
        // watcher below, which drops `stop`; an engine stopped otherwise is
        // noticed by polling it.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (router, engine) = match &self.driving {
            crate::Driving::One(handle) => {
                let service = Arc::new(Service::new(self.store.clone(), handle.clone(), self.clock.clone()));
                (redrive_api::server::app(service, limits.max_body_bytes), Some(handle.clone()))
            }
            crate::Driving::Spread(shards) => (self.serve_spread(shards, bound, limits.max_body_bytes).await?, None),
        };
        let shutdown = async move {
            let engine_stopped = async move {
                let Some(engine) = engine else { return std::future::pending().await };
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
            if let Err(e) = redrive_api::server::serve_router(router, listener, limits, shutdown).await {
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

    /// On PostgreSQL: a request for a function or pipeline goes to the holder
    /// of its shard — this process's engine of it, or the process holding it
    /// if that one serves the API too (this address is announced to the others
    /// for that), else 503 with `Retry-After`. Requests naming neither go to
    /// shard 0's holder; `GET /v1/cluster` is answered here.
    async fn serve_spread(
        &self,
        shards: &Arc<crate::cluster::Shards>,
        bound: SocketAddr,
        max_body_bytes: usize,
    ) -> Result<axum::Router, Error> {
        let member = self.store.clone();
        let status: redrive_api::switch::StatusSource = Arc::new(move || {
            let member = member.clone();
            Box::pin(async move {
                let now = redrive_engine::Clock::now(&redrive_engine::SystemClock);
                redrive_api::cluster::read_status(member.as_ref(), now).await.map_err(|e| e.to_string())
            })
        });
        let switch = redrive_api::switch::Switch::new(redrive_store::member_id(), status);
        self.store.announce(&format!("http://{bound}")).await?;
        shards.serve(switch.clone(), max_body_bytes).await?;
        Ok(switch.router())
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
