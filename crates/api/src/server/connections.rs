//! The transport under the API: TCP connections served as HTTP/1.1 by hyper,
//! within limits — at most `max_connections` open at once, request headers (and so
//! the next request on a kept-alive connection) within `header_read_timeout`,
//! headers of at most `max_header_bytes`, and a bounded drain on shutdown.
//!
//! At the cap, a new connection takes the place of the oldest open one that is not
//! handling a request (it is idle, or still sending its headers or body): sockets
//! that never speak or trickle bytes cannot keep `/healthz` out. Only while every
//! connection is handling a request does a new one wait, in the listen backlog.
//! A request counts as handled from [`Activity::handling`] (called by the
//! application once it has the whole body) until its response is produced.
//!
//! This module knows nothing of the API it carries.

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// After an accept error other than a failed handshake (e.g. out of file
/// descriptors), wait this long before accepting again.
const ACCEPT_ERROR_PAUSE_MS: u64 = 100;
/// While every connection is handling a request, look for one to replace this often.
const EVICT_RETRY_MS: u64 = 50;

/// The transport's limits.
#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    /// On shutdown, open requests get this long to finish before their
    /// connections are dropped.
    pub drain_timeout: Duration,
    /// HTTPS: the handshake runs first (within [`super::HANDSHAKE_TIMEOUT_MS`]).
    pub tls: Option<super::Tls>,
}

/// Whether a connection is handling a request; every request carries its
/// connection's as an extension.
#[derive(Clone, Debug, Default)]
pub struct Activity(Arc<AtomicUsize>);

/// The request is being handled while this lives.
pub struct Handling(Arc<AtomicUsize>);

impl Activity {
    pub fn handling(&self) -> Handling {
        self.0.fetch_add(1, Ordering::SeqCst);
        Handling(self.0.clone())
    }

    fn is_idle(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 0
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An open connection as the accept loop sees it.
struct Open {
    activity: Activity,
    /// Taken when the connection is told to close.
    evict: Option<oneshot::Sender<()>>,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    open: Mutex<BTreeMap<u64, Open>>,
}

impl Registry {
    fn insert(&self, id: u64, activity: Activity) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        self.open.lock().expect("registry lock").insert(id, Open { activity, evict: Some(tx) });
        rx
    }

    fn remove(&self, id: u64) {
        self.open.lock().expect("registry lock").remove(&id);
    }

    /// Tells the oldest connection not handling a request to close, unless one
    /// told before is still closing. False if every connection is handling one.
    fn evict_oldest_idle(&self) -> bool {
        let mut open = self.open.lock().expect("registry lock");
        if open.values().any(|o| o.evict.is_none()) {
            return true;
        }
        let Some(victim) = open.values_mut().find(|o| o.activity.is_idle()) else { return false };
        if let Some(tx) = victim.evict.take() {
            let _ = tx.send(());
        }
        true
    }
}

/// A connection's place, taken before its task starts (so that the registry
/// always holds every connection with a permit): removed from the registry however
/// the task ends, and only then the permit freed.
struct Place {
    id: u64,
    registry: Arc<Registry>,
    activity: Activity,
    /// Resolves when the connection is to close to make room for a new one.
    evicted: oneshot::Receiver<()>,
    _permit: OwnedSemaphorePermit,
}

impl Place {
    fn take(registry: &Arc<Registry>, id: u64, permit: OwnedSemaphorePermit) -> Place {
        let activity = Activity::default();
        let evicted = registry.insert(id, activity.clone());
        Place { id, registry: registry.clone(), activity, evicted, _permit: permit }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

struct Shared {
    router: Router,
    limits: ConnectionLimits,
    registry: Arc<Registry>,
    permits: Arc<Semaphore>,
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting,
/// lets open requests finish (up to the drain timeout) and closes every connection.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let shared = Arc::new(Shared { router, limits, registry: Arc::default(), permits });
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::select! {
        () = shutdown => {}
        () = accept_loop(&shared, &listener, &graceful, &mut connections) => {}
    }
    drop(listener);
    if tokio::time::timeout(shared.limits.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(open = connections.len(), "requests still open after the drain timeout are dropped");
    }
    connections.shutdown().await;
    Ok(())
}

async fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener, graceful: &GracefulShutdown, connections: &mut JoinSet<()>) {
    for id in 0u64.. {
        let stream = accept(listener).await;
        let place = Place::take(&shared.registry, id, shared.slot().await);
        while connections.try_join_next().is_some() {}
        connections.spawn(shared.clone().run(stream, place, graceful.watcher()));
    }
}

async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(e) if is_handshake_error(&e) => {}
            Err(e) => {
                tracing::error!(error = %e, "accepting a connection failed; retrying");
                tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
            }
        }
    }
}

fn is_handshake_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

impl Shared {
    /// A place for one more connection: free, or made by closing an idle one.
    async fn slot(&self) -> OwnedSemaphorePermit {
        loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                return permit;
            }
            self.registry.evict_oldest_idle();
            let wait = Duration::from_millis(EVICT_RETRY_MS);
            if let Ok(permit) = tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await {
                return permit.expect("the semaphore is never closed");
            }
        }
    }

    async fn run(self: Arc<Self>, stream: TcpStream, place: Place, watcher: Watcher) {
        let Some(tls) = self.limits.tls.clone() else { return self.serve_io(stream, place, watcher).await };
        let handshake = Duration::from_millis(super::HANDSHAKE_TIMEOUT_MS);
        match tokio::time::timeout(handshake, tls.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => self.serve_io(stream, place, watcher).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }

    async fn serve_io<I>(self: Arc<Self>, stream: I, mut place: Place, watcher: Watcher)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let activity = place.activity.clone();
        let router = self.router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(activity.clone());
            router.clone().oneshot(req.map(Body::new))
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .max_header_size(self.limits.max_header_bytes)
            .serve_connection(TokioIo::new(stream), service);
        tokio::select! {
            result = watcher.watch(connection) => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection closed");
                }
            }
            _ = &mut place.evicted => tracing::debug!("idle connection closed to make room for a new one"),
        }
        drop(place);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_connection_not_handling_a_request_is_evicted_once() {
        let registry = Registry::default();
        let (busy, idle_old, idle_new) = (Activity::default(), Activity::default(), Activity::default());
        let _handling = busy.handling();
        let mut busy_rx = registry.insert(1, busy);
        let mut old_rx = registry.insert(2, idle_old);
        let mut new_rx = registry.insert(3, idle_new);
        assert!(registry.evict_oldest_idle());
        assert!(old_rx.try_recv().is_ok(), "the oldest idle connection is told to close");
        assert!(busy_rx.try_recv().is_err() && new_rx.try_recv().is_err());
        // Until the told one has gone, nobody else is told.
        assert!(registry.evict_oldest_idle());
        assert!(new_rx.try_recv().is_err());
        registry.remove(2);
        assert!(registry.evict_oldest_idle());
        assert!(new_rx.try_recv().is_ok());
        registry.remove(3);
        assert!(!registry.evict_oldest_idle(), "a connection handling a request is never evicted");
        assert!(busy_rx.try_recv().is_err());
    }
}
