//! The example server's listener: HTTP/1.1 on hyper with the limits a public server needs, so
//! idle or slow connections cannot starve the others.
//!
//! - A header-read timeout: a client must send a request's whole header within it. In hyper the
//!   same timer runs while a kept-alive connection waits for its next request, so it is also the
//!   idle keep-alive timeout.
//! - A cap on open connections: past it, new ones wait in the kernel's accept queue until one
//!   closes (tokio's semaphore; each connection holds a permit until it ends).
//! - A cap on the header's size (431 beyond it), next to the app's own body limit and request
//!   timeout (tower-http layers in `app.rs`).
//! - The peer's address in every request (`ConnectInfo<SocketAddr>`), which the login endpoints'
//!   failed-attempt limits key on.
//! - Graceful shutdown: stop accepting, let open connections finish.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The listener's limits.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// How long a client may take to send a request's header, and how long a kept-alive
    /// connection may stay idle (default 10 s).
    pub header_read_timeout: Duration,
    /// The most connections open at once (default 1,000; keep it under the process's open-file
    /// limit, `ulimit -n`).
    pub max_connections: usize,
    /// The largest request header accepted, in bytes (default 32 KiB).
    pub max_header_bytes: usize,
    /// How long shutdown waits for open connections (default 10 s).
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1_000,
            max_header_bytes: 32 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or a connection reset before accept: back off a
                    // little rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = router
            .clone()
            .map_request(move |mut request: http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request.map(Body::new)
            });
        let connection = graceful
            .watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app)));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: some connections were still open after the grace period");
    }
}
