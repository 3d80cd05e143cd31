//! The hardened listener (feature `server`): [`serve`] runs an axum [`Router`] over HTTP/1.1
//! on hyper with the limits a public server needs, so no client — idle, slow to send, slow to
//! read, or opening connections as fast as it can — can keep others out, and with the peer's
//! address in every request, which the login endpoints' per-client limits key on.
//!
//! ```no_run
//! # async fn run(app: axum::Router) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! tower_wechat::serve(listener, app)
//!     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await;
//! # Ok(()) }
//! ```
//!
//! What it enforces ([`ServeLimits`]):
//!
//! - **Header-read timeout**: a client must send a request's whole header within it. In hyper
//!   the same timer runs while a kept-alive connection waits for its next request, so it is
//!   also the idle keep-alive timeout.
//! - **Response timeout**: from the moment a request is handed to the app until its response
//!   has been taken in full for sending. A client that stops reading (its answers pile up
//!   unsent, pipelined requests behind them) holds the request open past it, and its
//!   connection is closed. A handler timeout of the app's own (tower-http's `TimeoutLayer`)
//!   sits inside it.
//! - **Requests per connection**: after this many, the response says `Connection: close`, so
//!   one connection cannot pipeline without end.
//! - **Connections per address** (IPv6 grouped by /64, as the login limits group them): past
//!   the cap a new connection from that address is closed at once, so one address cannot take
//!   the server's connections.
//! - **Connections in all**: at the cap, the longest-idle connection (no request in progress)
//!   is closed to admit a new one; with none idle, the new one is closed. Nothing waits in the
//!   kernel's accept queue behind a full server.
//! - A cap on the header's size (431 beyond it), next to the app's own body limit.
//! - The peer's address in every request (`ConnectInfo<SocketAddr>`), which the login
//!   endpoints' limits key on.
//! - Graceful shutdown: stop accepting, let open requests finish within the grace period.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::limits::address_group;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{HeaderValue, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::ServiceExt;

/// The listener's limits. Every field has a default fit for a public server; change the ones
/// you need with struct update syntax (`ServeLimits { max_connections: 10_000,
/// ..ServeLimits::default() }`).
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// How long a client may take to send a request's header, and how long a kept-alive
    /// connection may stay idle (default 10 s).
    pub header_read_timeout: Duration,
    /// How long a request may take from reaching the app until its response is taken in full
    /// for sending (default 30 s); past it the connection is closed.
    pub response_timeout: Duration,
    /// The most requests served on one connection (default 1,000).
    pub max_requests_per_connection: u64,
    /// The most connections open at once (default 1,000; keep it under the process's open-file
    /// limit, `ulimit -n`).
    pub max_connections: usize,
    /// The most connections open at once from one address, IPv6 addresses grouped by /64
    /// (default 64).
    pub max_connections_per_address: usize,
    /// The largest request header accepted, in bytes (default 32 KiB).
    pub max_header_bytes: usize,
    /// How long shutdown waits for open connections (default 10 s).
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(30),
            max_requests_per_connection: 1_000,
            max_connections: 1_000,
            max_connections_per_address: 64,
            max_header_bytes: 32 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// One open connection, as the registry and its own task see it.
struct Connection {
    group: IpAddr,
    /// Requests handed to the app whose responses are not yet taken in full.
    in_progress: AtomicUsize,
    /// When the connection last became idle (no request in progress), or when the oldest
    /// request in progress started; µs since the listener started.
    since_us: AtomicU64,
    /// Requests served so far.
    served: AtomicU64,
    /// Asked to close to make room (counted in [`Open::closing`]).
    closing: AtomicBool,
    /// Asks the connection to finish what it is doing and close.
    close: Notify,
    /// Closes it now.
    kill: Notify,
}

/// A request in progress on a connection; dropped when its response has been taken in full
/// (or abandoned).
struct InProgress {
    connection: Arc<Connection>,
    origin: Instant,
}

impl InProgress {
    fn start(connection: &Arc<Connection>, origin: Instant) -> Self {
        if connection.in_progress.fetch_add(1, Ordering::AcqRel) == 0 {
            connection
                .since_us
                .store(us_since(origin), Ordering::Release);
        }
        Self {
            connection: Arc::clone(connection),
            origin,
        }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        if self.connection.in_progress.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now = us_since(self.origin);
            self.connection.since_us.store(now, Ordering::Release);
        }
    }
}

fn us_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The open connections, by id, and how many each address group holds.
#[derive(Default)]
struct Open {
    connections: HashMap<u64, Arc<Connection>>,
    per_group: HashMap<IpAddr, usize>,
    /// Connections asked to close to make room and not yet closed: they do not count against
    /// the cap, and at most the cap of them may be closing at once.
    closing: usize,
    next_id: u64,
}

struct Registry {
    open: Mutex<Open>,
    /// Notified when a connection closes (shutdown waits for the last).
    closed: Notify,
    origin: Instant,
    limits: ServeLimits,
}

/// Why a new connection is not served.
#[derive(Debug)]
enum Refused {
    AddressFull,
    ServerFull,
}

impl Registry {
    fn open(&self) -> MutexGuard<'_, Open> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a connection from `peer`, closing the longest-idle one if the server is full.
    fn admit(&self, peer: SocketAddr) -> Result<(u64, Arc<Connection>), Refused> {
        let group = address_group(peer.ip());
        let mut open = self.open();
        if open.per_group.get(&group).copied().unwrap_or(0)
            >= self.limits.max_connections_per_address.max(1)
        {
            return Err(Refused::AddressFull);
        }
        let max = self.limits.max_connections.max(1);
        if open.connections.len() - open.closing >= max {
            // Idle the longest: idle since the earliest time, the oldest connection first.
            let idlest = open
                .connections
                .iter()
                .filter(|(_, c)| {
                    c.in_progress.load(Ordering::Acquire) == 0 && !c.closing.load(Ordering::Acquire)
                })
                .min_by_key(|(id, c)| (c.since_us.load(Ordering::Acquire), **id))
                .map(|(_, c)| c);
            match idlest {
                Some(idle) if open.closing < max => {
                    idle.closing.store(true, Ordering::Release);
                    idle.close.notify_one();
                    open.closing += 1;
                }
                _ => return Err(Refused::ServerFull),
            }
        }
        let connection = Arc::new(Connection {
            group,
            in_progress: AtomicUsize::new(0),
            since_us: AtomicU64::new(us_since(self.origin)),
            served: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            close: Notify::new(),
            kill: Notify::new(),
        });
        open.next_id += 1;
        let id = open.next_id;
        open.connections.insert(id, Arc::clone(&connection));
        *open.per_group.entry(group).or_default() += 1;
        Ok((id, connection))
    }

    fn remove(&self, id: u64) {
        let mut open = self.open();
        if let Some(connection) = open.connections.remove(&id) {
            if connection.closing.load(Ordering::Acquire) {
                open.closing -= 1;
            }
            if let Some(count) = open.per_group.get_mut(&connection.group) {
                *count -= 1;
                if *count == 0 {
                    open.per_group.remove(&connection.group);
                }
            }
        }
        drop(open);
        self.closed.notify_waiters();
    }

    /// Closes the connections whose request has outlived the response timeout.
    fn sweep(&self) {
        let now = us_since(self.origin);
        let limit = u64::try_from(self.limits.response_timeout.as_micros()).unwrap_or(u64::MAX);
        for connection in self.open().connections.values() {
            if connection.in_progress.load(Ordering::Acquire) > 0
                && now.saturating_sub(connection.since_us.load(Ordering::Acquire)) > limit
            {
                connection.kill.notify_one();
            }
        }
    }

    fn len(&self) -> usize {
        self.open().connections.len()
    }
}

/// Serves `router` on `listener` with [`ServeLimits::default`], until the process ends or the
/// [graceful shutdown](Serve::with_graceful_shutdown) signal completes. Await the returned
/// [`Serve`] to run it.
pub fn serve(listener: TcpListener, router: Router) -> Serve {
    Serve {
        listener,
        router,
        limits: ServeLimits::default(),
        shutdown: std::future::pending(),
    }
}

/// A server being set up: [`serve`]'s answer. Await it to run it.
#[must_use = "a Serve does nothing until awaited"]
pub struct Serve<F = std::future::Pending<()>> {
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: F,
}

impl<F> std::fmt::Debug for Serve<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener.local_addr().ok())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl<F> Serve<F> {
    /// Serves with these limits instead of the defaults.
    pub fn limits(mut self, limits: ServeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Stops when `signal` completes: no new connection is accepted, kept-alive connections
    /// are closed after their request in progress, and the server returns once every
    /// connection has closed or [`ServeLimits::shutdown_grace`] has passed.
    pub fn with_graceful_shutdown<G>(self, signal: G) -> Serve<G>
    where
        G: Future<Output = ()> + Send + 'static,
    {
        Serve {
            listener: self.listener,
            router: self.router,
            limits: self.limits,
            shutdown: signal,
        }
    }
}

impl<F> IntoFuture for Serve<F>
where
    F: Future<Output = ()> + Send + 'static,
{
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self.listener, self.router, self.limits, self.shutdown))
    }
}

async fn run(
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
    let registry = Arc::new(Registry {
        open: Mutex::default(),
        closed: Notify::new(),
        origin: Instant::now(),
        limits,
    });
    let sweeper = tokio::spawn({
        let registry = Arc::clone(&registry);
        let every =
            (limits.response_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                registry.sweep();
            }
        }
    });
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
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
        let (id, connection) = match registry.admit(peer) {
            Ok(admitted) => admitted,
            Err(refused) => {
                tracing::debug!(%peer, ?refused, "connection refused");
                drop(stream);
                continue;
            }
        };
        let app = {
            let (connection, router, origin) =
                (Arc::clone(&connection), router.clone(), registry.origin);
            tower::service_fn(move |request: http::Request<Incoming>| {
                let in_progress = InProgress::start(&connection, origin);
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                let router = router.clone();
                async move {
                    let response = router.oneshot(request).await?;
                    Ok::<_, Infallible>(track(response, in_progress, limits))
                }
            })
        };
        let registry = Arc::clone(&registry);
        let hyper_connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
        tokio::spawn(async move {
            let mut hyper_connection = std::pin::pin!(hyper_connection);
            tokio::select! {
                ended = hyper_connection.as_mut() => {
                    if let Err(error) = ended {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                }
                () = connection.close.notified() => {
                    hyper_connection.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = hyper_connection.as_mut() => {}
                        () = connection.kill.notified() => {}
                        () = tokio::time::sleep(limits.shutdown_grace) => {}
                    }
                }
                () = connection.kill.notified() => {
                    tracing::debug!(%peer, "connection closed: a response was not taken within the response timeout");
                }
            }
            registry.remove(id);
        });
    }
    drop(listener);
    for connection in registry.open().connections.values() {
        connection.close.notify_one();
    }
    let drained = async {
        loop {
            let closed = registry.closed.notified();
            if registry.len() == 0 {
                break;
            }
            closed.await;
        }
    };
    if tokio::time::timeout(limits.shutdown_grace, drained)
        .await
        .is_err()
    {
        tracing::warn!("shutdown: some connections were still open after the grace period");
    }
    sweeper.abort();
}

/// The response with its request's [`InProgress`] held by its body until the body is taken in
/// full, and `Connection: close` once the connection has served its most requests.
fn track(
    mut response: http::Response<Body>,
    in_progress: InProgress,
    limits: ServeLimits,
) -> http::Response<Body> {
    let served = in_progress.connection.served.fetch_add(1, Ordering::AcqRel) + 1;
    if served >= limits.max_requests_per_connection {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _held = &in_progress;
            frame
        }))
    })
}
