//! HTTP load benchmark of the WeChat auth middleware: what the layer costs per request, measured
//! over real HTTP/1.1 on loopback, side by side with no middleware and with a naive layer.
//!
//! Run it (one run prints everything; release build):
//!
//! ```sh
//! cargo bench --bench load
//! LOAD_SECONDS=10 LOAD_ROUNDS=5 cargo bench --bench load   # longer, steadier
//! ```
//!
//! Settings (environment): `LOAD_SECONDS` measured seconds per scenario and round (default 5),
//! `LOAD_ROUNDS` rounds (default 3), `LOAD_WARMUP` warm-up seconds before each measurement
//! (default 1), `LOAD_CONNECTIONS` concurrent keep-alive connections (default 32),
//! `LOAD_SCENARIOS` a comma-separated subset to run (e.g. `layer` under a profiler; default all),
//! `LOAD_CLIENT=raw` a minimal hand-written HTTP/1.1 client instead of hyper's (see below).
//!
//! Reported first, the pair an application sees: **json-bare**, a handler answering
//! `{"sub":"user-000000","ok":true}` with `axum::Json` and no middleware, and **json-layer**, the
//! same handler reading the `WeChatUser` with the extractor and answering its openid, behind the
//! layer below (the same sessions and tokens). Then six scenarios serving the same trivial axum
//! handler (`GET /me` → `{"ok":true}`, no extractor: the lower bound of what the layer costs) on
//! `127.0.0.1:0`:
//!
//! - **bare**: no middleware.
//! - **layer**: behind `WeChatAuthLayer` (required mode, HS256 key ring), with 1,000 warm
//!   sessions of 1,000 distinct users logged in through a `MockWeChat` with
//!   `LoginEndpoints::login`. Access tokens are valid 2 h, so no refresh is due: this is the hot
//!   path. The session store is the default `MokaStore` wrapped in a counter of `get` calls (one
//!   relaxed atomic add per call), which is how the rejection path is shown not to touch it.
//! - **floor**: behind a minimal hand-written tower layer doing what a naive implementation does
//!   per request: take the bearer token, `jsonwebtoken::decode` it (HS256, prebuilt
//!   `Validation`, same key, iss/aud checked), look the `sid` up in a prefilled
//!   `moka::sync::Cache<String, Arc<_>>`, put the session in the request's extensions, call the
//!   inner service (no boxing).
//! - **forged**: server *layer* again, with 1,000 well-formed tokens for the same sessions, with
//!   the same `kid`, signed with a different key: the rejection path (401). After each forged
//!   measurement the store's `get` counter and the mock's upstream call counts must not have
//!   moved (`TokenIssuer::verify` fails before `store.get`, see `auth/service.rs`).
//! - **redis**: the same layer over a `RedisStore` at `REDIS_URL` (default
//!   `redis://127.0.0.1:6379`) holding the same sessions, with no local cache: every request
//!   waits for one `GET` round trip to Redis (which runs outside the two runtimes, on the same
//!   two cores). Skipped when Redis does not answer.
//! - **cached**: the same layer over a `CachedStore` in front of that `RedisStore` (what the
//!   example server runs with `REDIS_URL`): after the first request of each session, a local
//!   hit; its hit rate is printed. Skipped when Redis does not answer.
//!
//! The servers run on one tokio runtime with one worker thread, the load generator on another
//! with one worker thread (the machine this was written for has 2 vCPUs: one each). The
//! generator opens `LOAD_CONNECTIONS` HTTP/1.1 keep-alive connections
//! (`hyper::client::conn::http1`), each sending `GET /me` back to back with
//! `authorization: Bearer <token i mod 1000>` (the token rotates on every request), records each
//! request's latency, and checks every status (200, or 401 for forged): mismatches must be 0.
//! Scenarios are interleaved (bare → layer → floor → forged) for `LOAD_ROUNDS` rounds, each
//! measurement preceded by a warm-up on the same connections; the table shows the median over
//! rounds of each figure, and the ratios are computed from those medians. The CPU time of the
//! server's and the generator's worker threads is shown per measurement (from `/proc`): the
//! figures compare the middleware only while the server thread is the saturated one. hyper's
//! client costs at least as much CPU per request as the bare server, so the bare scenario can be
//! generator-bound (which flatters the ratios); `LOAD_CLIENT=raw` swaps in a minimal client
//! (prebuilt request bytes, `content-length` responses only) that needs about 30% less CPU per
//! request, enough to keep the server thread the saturated one.
//! Time spent runnable but waiting for a CPU (another process on the machine) is shown too: a
//! measurement with more than 5% of it is marked contended, and its figures are not comparable.
//!
//! A benchmark, not a test: it exits 0 whatever the figures, printing PASS/FAIL per target.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri};
use axum::routing::get;
use axum::serve::ListenerExt;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, Service};
use wechat_login::middleware::{
    Claims, KeyRing, LoginEndpoints, SigningKey, TokenConfig, TokenIssuer, WeChatAuthLayer,
};
use wechat_login::oauth::{AppId, AppSecret, Client};
use wechat_login::redis_store::{RedisStore, SealingKey};
use wechat_login::sessions::CachedStore;
use wechat_login::sessions::{
    CasOutcome, MokaStore, SessionId, SessionRecord, SessionStore, SharedStore, SingleProcess,
    StoreError, SystemClock, UserId,
};
use wechat_mock::{MockConfig, MockGrant, MockWeChat};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USERS: usize = 1_000;
const SESSION_SECRET: [u8; 32] = [7; 32];
const FORGER_SECRET: [u8; 32] = [9; 32];
const BODY: &str = r#"{"ok":true}"#;

// ---------------------------------------------------------------------------------------------
// The handler, the same for every server.

async fn me() -> ([(axum::http::HeaderName, HeaderValue); 1], &'static str) {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        BODY,
    )
}

fn app() -> Router {
    Router::new().route("/me", get(me))
}

/// What an application's handler does: the same answer shape as `GET /me` of a real API.
#[derive(serde::Serialize)]
struct Me<'a> {
    sub: &'a str,
    ok: bool,
}

/// The JSON handler without a user (the bare server of the JSON pair).
async fn me_json_bare() -> axum::Json<Me<'static>> {
    axum::Json(Me {
        sub: "user-000000",
        ok: true,
    })
}

/// The JSON handler reading the user with the extractor.
async fn me_json_user(user: wechat_login::WeChatUser) -> axum::response::Response {
    use axum::response::IntoResponse;
    axum::Json(Me {
        sub: user.openid().as_str(),
        ok: true,
    })
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// The session store of the layer: the default MokaStore, counting `get` calls.

#[derive(Clone, Default)]
struct CountingStore {
    inner: MokaStore,
    gets: Arc<AtomicU64>,
}

impl SessionStore for CountingStore {
    fn get(
        &self,
        sid: &SessionId,
    ) -> impl Future<Output = Result<Option<Arc<SessionRecord>>, StoreError>> + Send {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get(sid)
    }

    fn get_now(
        &self,
        sid: &SessionId,
        now: std::time::SystemTime,
    ) -> Option<Result<Option<Arc<SessionRecord>>, StoreError>> {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.inner.get_now(sid, now)
    }

    fn insert(
        &self,
        record: SessionRecord,
    ) -> impl Future<Output = Result<Arc<SessionRecord>, StoreError>> + Send {
        self.inner.insert(record)
    }

    fn compare_and_set(
        &self,
        expected_version: u64,
        record: SessionRecord,
    ) -> impl Future<Output = Result<CasOutcome, StoreError>> + Send {
        self.inner.compare_and_set(expected_version, record)
    }

    fn delete(&self, sid: &SessionId) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.inner.delete(sid)
    }

    fn delete_user(&self, user: &UserId) -> impl Future<Output = Result<usize, StoreError>> + Send {
        self.inner.delete_user(user)
    }

    fn user_sessions(
        &self,
        user: &UserId,
    ) -> impl Future<Output = Result<Vec<Arc<SessionRecord>>, StoreError>> + Send {
        self.inner.user_sessions(user)
    }
}

// ---------------------------------------------------------------------------------------------
// The floor: a naive HS256-verify + moka-lookup layer.

/// What the naive layer attaches to a request.
#[derive(Debug)]
struct FloorSession {
    #[allow(dead_code)]
    openid: String,
}

struct FloorState {
    key: DecodingKey,
    validation: Validation,
    sessions: moka::sync::Cache<String, Arc<FloorSession>>,
}

impl FloorState {
    fn authenticate(&self, headers: &HeaderMap) -> Option<Arc<FloorSession>> {
        let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
        let token = value.strip_prefix("Bearer ")?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).ok()?;
        self.sessions.get(&data.claims.sid)
    }
}

#[derive(Clone)]
struct FloorLayer {
    state: Arc<FloorState>,
}

impl<S> Layer<S> for FloorLayer {
    type Service = FloorService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FloorService {
            inner,
            state: Arc::clone(&self.state),
        }
    }
}

#[derive(Clone)]
struct FloorService<S> {
    inner: S,
    state: Arc<FloorState>,
}

impl<S> Service<Request<Body>> for FloorService<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Unpin,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = FloorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        match self.state.authenticate(request.headers()) {
            Some(session) => {
                request.extensions_mut().insert(session);
                FloorFuture::Inner(self.inner.call(request))
            }
            None => {
                let mut response = Response::new(Body::from(r#"{"error":"invalid_token"}"#));
                *response.status_mut() = StatusCode::UNAUTHORIZED;
                FloorFuture::Rejected(Some(response))
            }
        }
    }
}

enum FloorFuture<F> {
    Inner(F),
    Rejected(Option<Response<Body>>),
}

impl<F, E> Future for FloorFuture<F>
where
    F: Future<Output = Result<Response<Body>, E>> + Unpin,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            FloorFuture::Inner(future) => Pin::new(future).poll(cx),
            FloorFuture::Rejected(response) => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Setup: the mock, the logins, the servers.

struct Setup {
    /// The JSON handler without middleware.
    json_bare: SocketAddr,
    /// The JSON handler reading the user, behind the layer.
    json_layer: SocketAddr,
    bare: SocketAddr,
    layer: SocketAddr,
    floor: SocketAddr,
    /// The layer over a `RedisStore` (no local cache), when Redis answers at `REDIS_URL`.
    redis: Option<SocketAddr>,
    /// The layer over a local cache in front of that `RedisStore`, and the cache.
    cached: Option<(SocketAddr, CachedStore<RedisStore>)>,
    /// `authorization` values with the 1,000 valid tokens.
    valid: Arc<Vec<HeaderValue>>,
    /// `authorization` values with 1,000 tokens signed by another key.
    forged: Arc<Vec<HeaderValue>>,
    mock: MockWeChat,
    store_gets: Arc<AtomicU64>,
}

async fn serve(router: Router) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            eprintln!("server on {addr} stopped: {error}");
        }
    });
    Ok(addr)
}

fn bearer(token: &str) -> Result<HeaderValue, BoxError> {
    Ok(HeaderValue::try_from(format!("Bearer {token}"))?)
}

/// The same layer over a `RedisStore` at `REDIS_URL` (default `redis://127.0.0.1:6379`) under a
/// fresh prefix, holding the same sessions: every request is one round trip to Redis.
async fn redis_store(records: &[Arc<SessionRecord>]) -> Result<RedisStore, BoxError> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let store = RedisStore::builder(&url, SealingKey::new("k1", [7; 32])?)?
        .prefix(format!("load-{:08x}", rand::random::<u32>()))
        .command_timeout(Duration::from_secs(1))
        .connect()
        .await?;
    for record in records {
        store.insert((**record).clone()).await?;
    }
    Ok(store)
}

/// The same layer over `store`.
fn layer_over<St: SharedStore>(
    mock: &MockWeChat,
    store: St,
) -> Result<WeChatAuthLayer<St>, BoxError> {
    let client = Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
        .api_base(mock.base_url())
        .build()?;
    Ok(WeChatAuthLayer::builder(
        client,
        KeyRing::new(SigningKey::hs256("k1", &SESSION_SECRET)?),
    )
    .store(store)
    .build()?
    .required())
}

async fn setup() -> Result<Setup, BoxError> {
    let mock = MockWeChat::start(MockConfig::default()).await?;
    let client = Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
        .api_base(mock.base_url())
        .build()?;
    let store = CountingStore::default();
    let store_gets = Arc::clone(&store.gets);
    let auth = WeChatAuthLayer::builder(
        client,
        KeyRing::new(SigningKey::hs256("k1", &SESSION_SECRET)?),
    )
    // Counting stands in for a store of one process: its leases and values are in memory.
    .store(SingleProcess::new(store, Arc::new(SystemClock)))
    .build()?
    .required();

    // 1,000 users log in: 1,000 warm sessions and their tokens.
    let endpoints = LoginEndpoints::new(&auth);
    let mut records = Vec::with_capacity(USERS);
    let mut valid = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let code = mock.mint_code(MockGrant {
            openid: Some(format!("o_load_user_{i:05}")),
            ..MockGrant::default()
        });
        let success = endpoints
            .login(wechat_login::middleware::CodeLogin::new(&code))
            .await?;
        valid.push(bearer(&success.token.value)?);
        records.push(success.record);
    }

    let distinct: std::collections::HashSet<_> = records.iter().map(|r| r.sid).collect();
    if distinct.len() != USERS {
        return Err(format!("{} distinct sessions for {USERS} logins", distinct.len()).into());
    }

    // The same sessions, the same kid, another key.
    let forger = TokenIssuer::new(
        KeyRing::new(SigningKey::hs256("k1", &FORGER_SECRET)?),
        TokenConfig::default(),
        Arc::clone(auth.sessions().clock()),
    )?;
    let mut forged = Vec::with_capacity(USERS);
    for record in &records {
        let token = forger.issue(record)?.value;
        if auth.tokens().verify(&token).is_ok() {
            return Err("a forged token verified".into());
        }
        forged.push(bearer(&token)?);
    }

    // The naive layer's state: same key and claims checks, the 1,000 sessions prefilled.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&["wechat-login"]);
    validation.set_audience(&["wechat-login"]);
    let sessions = moka::sync::Cache::builder().max_capacity(1_000_000).build();
    for record in &records {
        sessions.insert(
            record.sid.to_string(),
            Arc::new(FloorSession {
                openid: record.openid.to_string(),
            }),
        );
    }
    let floor = FloorLayer {
        state: Arc::new(FloorState {
            key: DecodingKey::from_secret(&SESSION_SECRET),
            validation,
            sessions,
        }),
    };

    let (redis, cached) = match redis_store(&records).await {
        Ok(store) => {
            let cached = CachedStore::builder(store.clone()).build().await?;
            let redis = serve(app().layer(layer_over(&mock, store)?)).await?;
            let served = serve(app().layer(layer_over(&mock, cached.clone())?)).await?;
            (Some(redis), Some((served, cached)))
        }
        Err(error) => {
            println!("redis scenarios skipped: {error}");
            (None, None)
        }
    };

    Ok(Setup {
        json_bare: serve(Router::new().route("/me", get(me_json_bare))).await?,
        json_layer: serve(
            Router::new()
                .route("/me", get(me_json_user))
                .layer(auth.clone()),
        )
        .await?,
        bare: serve(app()).await?,
        layer: serve(app().layer(auth)).await?,
        redis,
        cached,
        floor: serve(app().layer(floor)).await?,
        valid: Arc::new(valid),
        forged: Arc::new(forged),
        mock,
        store_gets,
    })
}

// ---------------------------------------------------------------------------------------------
// The load generator.

#[derive(Default)]
struct ConnResult {
    latencies_ns: Vec<u64>,
    mismatches: u64,
    /// Every request sent, warm-up included.
    sent: u64,
}

struct Measurement {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    requests: u64,
    mismatches: u64,
    errors: u64,
    /// Every request sent, warm-up included.
    sent: u64,
    /// The whole run, warm-up included.
    wall: Duration,
    /// CPU and run-queue time of the worker threads during the whole run.
    times: Option<ThreadTimes>,
}

impl Measurement {
    fn percent_of_wall(&self, pick: fn(&ThreadTimes) -> u64) -> Option<f64> {
        Some(pick(self.times.as_ref()?) as f64 / self.wall.as_nanos() as f64 * 100.0)
    }

    /// Whether either worker thread waited for a CPU more than 5% of the time: another process
    /// took the machine, and the figures are not comparable.
    fn contended(&self) -> Option<bool> {
        let server = self.percent_of_wall(|t| t.server_wait)?;
        let generator = self.percent_of_wall(|t| t.generator_wait)?;
        Some(server > 5.0 || generator > 5.0)
    }

    /// The server thread's CPU time per request, in µs (warm-up included on both sides).
    fn server_us_per_request(&self) -> Option<f64> {
        let times = self.times.as_ref()?;
        (self.sent > 0).then(|| times.server_run as f64 / self.sent as f64 / 1_000.0)
    }
}

struct Load {
    addr: SocketAddr,
    tokens: Arc<Vec<HeaderValue>>,
    expect: StatusCode,
    connections: usize,
    warmup: Duration,
    measure: Duration,
    /// Use the minimal hand-written client instead of hyper's.
    raw: bool,
}

async fn connection(
    addr: SocketAddr,
    tokens: Arc<Vec<HeaderValue>>,
    mut next: usize,
    expect: StatusCode,
    record_from: Instant,
    end: Instant,
) -> Result<ConnResult, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream)).await?;
    let uri = Uri::from_static("/me");
    let host = HeaderValue::try_from(addr.to_string())?;
    let requests = async move {
        let mut result = ConnResult {
            latencies_ns: Vec::with_capacity(1 << 16),
            ..ConnResult::default()
        };
        loop {
            let start = Instant::now();
            if start >= end {
                break;
            }
            let mut request = Request::new(Empty::<Bytes>::new());
            *request.uri_mut() = uri.clone();
            request.headers_mut().insert(HOST, host.clone());
            request
                .headers_mut()
                .insert(AUTHORIZATION, tokens[next % tokens.len()].clone());
            next += 1;
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            let elapsed = start.elapsed();
            result.sent += 1;
            if start >= record_from {
                result.latencies_ns.push(elapsed.as_nanos() as u64);
                if status != expect {
                    result.mismatches += 1;
                }
            }
        }
        // Dropping the sender lets the connection finish.
        drop(sender);
        Ok::<_, BoxError>(result)
    };
    // The connection is driven in the same task as its requests: no hop through the scheduler
    // between the two, which keeps the generator cheaper than the servers it loads.
    let (driven, result) = tokio::join!(conn, requests);
    driven?;
    result
}

/// The same loop as [`connection`] with a minimal HTTP/1.1 client: one prebuilt request write,
/// one buffered read of a `content-length` response. Cheaper than hyper's client, for when the
/// generator thread, not the server, is the bottleneck (`LOAD_CLIENT=raw`).
async fn raw_connection(
    addr: SocketAddr,
    tokens: Arc<Vec<HeaderValue>>,
    mut next: usize,
    expect: StatusCode,
    record_from: Instant,
    end: Instant,
) -> Result<ConnResult, BoxError> {
    use tokio::io::AsyncWriteExt;

    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let head = format!("GET /me HTTP/1.1\r\nhost: {addr}\r\nauthorization: ");
    let mut request = Vec::with_capacity(1024);
    let mut buf = RawBuffer {
        data: vec![0; 16 * 1024],
        filled: 0,
    };
    let mut result = ConnResult {
        latencies_ns: Vec::with_capacity(1 << 16),
        ..ConnResult::default()
    };
    loop {
        let start = Instant::now();
        if start >= end {
            break;
        }
        request.clear();
        request.extend_from_slice(head.as_bytes());
        request.extend_from_slice(tokens[next % tokens.len()].as_bytes());
        request.extend_from_slice(b"\r\n\r\n");
        next += 1;
        stream.write_all(&request).await?;
        let status = buf.read_response(&mut stream).await?;
        let elapsed = start.elapsed();
        result.sent += 1;
        if start >= record_from {
            result.latencies_ns.push(elapsed.as_nanos() as u64);
            if status != expect.as_u16() {
                result.mismatches += 1;
            }
        }
    }
    Ok(result)
}

struct RawBuffer {
    data: Vec<u8>,
    filled: usize,
}

impl RawBuffer {
    /// Reads one whole response (head and `content-length` body); returns its status.
    async fn read_response(&mut self, stream: &mut TcpStream) -> Result<u16, BoxError> {
        loop {
            if let Some(at) = self.data[..self.filled]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            {
                let head = std::str::from_utf8(&self.data[..at])?;
                let mut lines = head.split("\r\n");
                let status = lines
                    .next()
                    .and_then(|line| line.strip_prefix("HTTP/1.1 "))
                    .and_then(|rest| rest.get(..3))
                    .and_then(|code| code.parse::<u16>().ok())
                    .ok_or("malformed status line")?;
                let length = lines
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                    .ok_or("response without content-length")?;
                let total = at + 4 + length;
                if total > self.data.len() {
                    return Err("response too large".into());
                }
                while self.filled < total {
                    self.fill(stream).await?;
                }
                self.data.copy_within(total..self.filled, 0);
                self.filled -= total;
                return Ok(status);
            }
            if self.filled == self.data.len() {
                return Err("response head too large".into());
            }
            self.fill(stream).await?;
        }
    }

    async fn fill(&mut self, stream: &mut TcpStream) -> Result<(), BoxError> {
        use tokio::io::AsyncReadExt;

        let read = stream.read(&mut self.data[self.filled..]).await?;
        if read == 0 {
            return Err("connection closed by the server".into());
        }
        self.filled += read;
        Ok(())
    }
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1_000.0
}

async fn run_load(load: &Load) -> Measurement {
    let before = thread_times();
    let t0 = Instant::now();
    let record_from = t0 + load.warmup;
    let end = record_from + load.measure;
    // Requests are bounded by `end`; this bounds a stuck connection too.
    let hard_limit = load.warmup + load.measure + Duration::from_secs(10);
    let mut tasks = Vec::with_capacity(load.connections);
    for c in 0..load.connections {
        let tokens = Arc::clone(&load.tokens);
        // Spread the connections over the token list.
        let first = c * tokens.len() / load.connections;
        let (addr, expect) = (load.addr, load.expect);
        tasks.push(if load.raw {
            tokio::spawn(tokio::time::timeout(
                hard_limit,
                raw_connection(addr, tokens, first, expect, record_from, end),
            ))
        } else {
            tokio::spawn(tokio::time::timeout(
                hard_limit,
                connection(addr, tokens, first, expect, record_from, end),
            ))
        });
    }
    let mut latencies = Vec::new();
    let (mut mismatches, mut errors, mut sent) = (0, 0, 0);
    for task in tasks {
        match task.await {
            Ok(Ok(Ok(result))) => {
                latencies.extend_from_slice(&result.latencies_ns);
                mismatches += result.mismatches;
                sent += result.sent;
            }
            Ok(Ok(Err(error))) => {
                eprintln!("connection failed: {error}");
                errors += 1;
            }
            Ok(Err(_)) => {
                eprintln!("connection timed out");
                errors += 1;
            }
            Err(error) => {
                eprintln!("connection task failed: {error}");
                errors += 1;
            }
        }
    }
    let wall = t0.elapsed();
    let after = thread_times();
    latencies.sort_unstable();
    let times = before.zip(after).map(|(b, a)| ThreadTimes {
        server_run: a.server_run - b.server_run,
        server_wait: a.server_wait - b.server_wait,
        generator_run: a.generator_run - b.generator_run,
        generator_wait: a.generator_wait - b.generator_wait,
    });
    Measurement {
        rps: latencies.len() as f64 / load.measure.as_secs_f64(),
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        requests: latencies.len() as u64,
        mismatches,
        errors,
        sent,
        wall,
        times,
    }
}

// ---------------------------------------------------------------------------------------------
// CPU time of the two worker threads, from /proc (Linux; `None` elsewhere).

const SERVER_THREAD: &str = "load-server";
const GENERATOR_THREAD: &str = "load-gen";

/// Nanoseconds on a CPU and waiting on a run queue, per thread kind.
#[derive(Clone, Copy, Default)]
struct ThreadTimes {
    server_run: u64,
    server_wait: u64,
    generator_run: u64,
    generator_wait: u64,
}

/// From `/proc/self/task/*/schedstat`: time on CPU and time runnable but waiting for one.
fn thread_times() -> Option<ThreadTimes> {
    let mut times = ThreadTimes::default();
    let (mut server, mut generator) = (false, false);
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path();
        let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(path.join("schedstat")) else {
            continue;
        };
        let mut fields = stat.split_whitespace().map(|f| f.parse::<u64>().ok());
        let (Some(Some(run)), Some(Some(wait))) = (fields.next(), fields.next()) else {
            continue;
        };
        match comm.trim_end() {
            SERVER_THREAD => {
                server = true;
                times.server_run += run;
                times.server_wait += wait;
            }
            GENERATOR_THREAD => {
                generator = true;
                times.generator_run += run;
                times.generator_wait += wait;
            }
            _ => {}
        }
    }
    (server && generator).then_some(times)
}

// ---------------------------------------------------------------------------------------------
// Reporting.

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

fn fmt_opt(value: Option<f64>, unit: &str, decimals: usize) -> String {
    value.map_or_else(|| "n/a".into(), |v| format!("{v:.decimals$}{unit}"))
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into());
    format!(
        "{cpus} CPUs available ({model}), load average {load}, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

// ---------------------------------------------------------------------------------------------

fn main() {
    if let Err(error) = run() {
        eprintln!("load benchmark failed: {error}");
    }
}

fn run() -> Result<(), BoxError> {
    let seconds: f64 = env_or("LOAD_SECONDS", 5.0);
    let rounds: usize = env_or("LOAD_ROUNDS", 3).max(1);
    let warmup: f64 = env_or("LOAD_WARMUP", 1.0);
    let connections: usize = env_or("LOAD_CONNECTIONS", 32).max(1);
    let only: Option<String> = std::env::var("LOAD_SCENARIOS").ok();
    let raw = std::env::var("LOAD_CLIENT").is_ok_and(|c| c == "raw");
    let selected = |name: &str| {
        only.as_deref()
            .is_none_or(|list| list.split(',').any(|n| n.trim() == name))
    };
    let measure = Duration::from_secs_f64(seconds.max(0.1));
    let warmup = Duration::from_secs_f64(warmup.max(0.0));

    println!("# load benchmark: GET /me over HTTP/1.1 keep-alive on loopback");
    println!("machine: {}", machine());
    println!(
        "servers: 1 tokio worker thread; generator: 1 tokio worker thread ({} client); {connections} connections; \
         {rounds} rounds x ({:.1} s warm-up + {:.1} s measured) per scenario; {USERS} users",
        if raw { "minimal raw" } else { "hyper" },
        warmup.as_secs_f64(),
        measure.as_secs_f64()
    );

    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()?;
    let generator = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(GENERATOR_THREAD)
        .enable_all()
        .build()?;

    let setup_started = Instant::now();
    let setup = servers.block_on(setup())?;
    println!(
        "setup: {USERS} logins through the mock in {:.2} s",
        setup_started.elapsed().as_secs_f64()
    );

    let ok = StatusCode::OK;
    let mut scenarios: Vec<(&str, SocketAddr, &Arc<Vec<HeaderValue>>, StatusCode)> = vec![
        ("json-bare", setup.json_bare, &setup.valid, ok),
        ("json-layer", setup.json_layer, &setup.valid, ok),
        ("bare", setup.bare, &setup.valid, ok),
        ("layer", setup.layer, &setup.valid, ok),
        ("floor", setup.floor, &setup.valid, ok),
        (
            "forged",
            setup.layer,
            &setup.forged,
            StatusCode::UNAUTHORIZED,
        ),
    ];
    if let Some(redis) = setup.redis {
        scenarios.push(("redis", redis, &setup.valid, ok));
    }
    if let Some((cached, _)) = &setup.cached {
        scenarios.push(("cached", *cached, &setup.valid, ok));
    }
    let upstream_calls = || setup.mock.stats().values().sum::<u64>();

    let mut results: Vec<Vec<Measurement>> = scenarios.iter().map(|_| Vec::new()).collect();
    let (mut forged_store_gets, mut forged_upstream, mut layer_upstream) = (0, 0, 0);
    let mut contended = 0;
    println!();
    println!(
        "| round | scenario | req/s | p50 µs | p99 µs | requests | mismatches | errors \
         | server CPU | server CPU µs/req | server run-queue wait | generator CPU | generator run-queue wait | contended |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for round in 1..=rounds {
        for (i, (name, addr, tokens, expect)) in scenarios.iter().enumerate() {
            if !selected(name) {
                continue;
            }
            let gets_before = setup.store_gets.load(Ordering::Relaxed);
            let upstream_before = upstream_calls();
            let load = Load {
                addr: *addr,
                tokens: Arc::clone(tokens),
                expect: *expect,
                connections,
                warmup,
                measure,
                raw,
            };
            let m = generator.block_on(run_load(&load));
            let gets = setup.store_gets.load(Ordering::Relaxed) - gets_before;
            let upstream = upstream_calls() - upstream_before;
            match *name {
                "forged" => {
                    forged_store_gets += gets;
                    forged_upstream += upstream;
                }
                "layer" | "json-layer" => {
                    layer_upstream += upstream;
                    if gets != m.sent {
                        println!(
                            "note: layer round {round}: {gets} store gets for {} requests",
                            m.sent
                        );
                    }
                }
                _ => {}
            }
            println!(
                "| {round} | {name} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                m.rps,
                m.p50_us,
                m.p99_us,
                m.requests,
                m.mismatches,
                m.errors,
                fmt_opt(m.percent_of_wall(|t| t.server_run), "%", 0),
                fmt_opt(m.server_us_per_request(), "", 2),
                fmt_opt(m.percent_of_wall(|t| t.server_wait), "%", 1),
                fmt_opt(m.percent_of_wall(|t| t.generator_run), "%", 0),
                fmt_opt(m.percent_of_wall(|t| t.generator_wait), "%", 1),
                match m.contended() {
                    Some(true) => "yes",
                    Some(false) => "no",
                    None => "n/a",
                },
            );
            if m.contended() == Some(true) {
                contended += 1;
            }
            results[i].push(m);
        }
    }

    struct Summary {
        rps: f64,
        p50: f64,
        p99: f64,
        mismatches: u64,
        errors: u64,
        server_cpu: Option<f64>,
        server_us: Option<f64>,
        generator_cpu: Option<f64>,
    }
    let median_of = |runs: &[Measurement], f: &dyn Fn(&Measurement) -> Option<f64>| {
        let values: Option<Vec<f64>> = runs.iter().map(f).collect();
        values.map(median)
    };
    let summary: Vec<Option<Summary>> = results
        .iter()
        .map(|runs| {
            (!runs.is_empty()).then(|| Summary {
                rps: median(runs.iter().map(|m| m.rps).collect()),
                p50: median(runs.iter().map(|m| m.p50_us).collect()),
                p99: median(runs.iter().map(|m| m.p99_us).collect()),
                mismatches: runs.iter().map(|m| m.mismatches).sum(),
                errors: runs.iter().map(|m| m.errors).sum(),
                server_cpu: median_of(runs, &|m| m.percent_of_wall(|t| t.server_run)),
                server_us: median_of(runs, &|m| m.server_us_per_request()),
                generator_cpu: median_of(runs, &|m| m.percent_of_wall(|t| t.generator_run)),
            })
        })
        .collect();
    let ratio = |a: &Option<Summary>, b: &Option<Summary>, f: fn(&Summary) -> Option<f64>| {
        a.as_ref()
            .and_then(f)
            .zip(b.as_ref().and_then(f))
            .map(|(a, b)| a / b)
    };
    let rps = |s: &Summary| Some(s.rps);
    let p99 = |s: &Summary| Some(s.p99);
    let (json_bare, json_layer) = (&summary[0], &summary[1]);
    let (bare, layer, floor, forged) = (&summary[2], &summary[3], &summary[4], &summary[5]);
    let redis = summary.get(6).unwrap_or(&None);
    let cached = summary.get(7).unwrap_or(&None);

    println!();
    println!("## median of {rounds} rounds (each figure's median)");
    println!();
    println!("| scenario | req/s | p50 µs | p99 µs | req/s ratio vs bare | p99 ratio vs bare |");
    println!("|---|---:|---:|---:|---:|---:|");
    for ((name, ..), s) in scenarios.iter().zip(&summary) {
        let Some(m) = s else { continue };
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} | {} | {} |",
            m.rps,
            m.p50,
            m.p99,
            fmt_opt(ratio(s, bare, rps), "", 3),
            fmt_opt(ratio(s, bare, p99), "", 3),
        );
    }
    println!();
    println!("| scenario | server CPU µs/req | vs bare | server CPU | generator CPU |");
    println!("|---|---:|---:|---:|---:|");
    for ((name, ..), s) in scenarios.iter().zip(&summary) {
        let Some(m) = s else { continue };
        println!(
            "| {name} | {} | {} | {} | {} |",
            fmt_opt(m.server_us, "", 2),
            fmt_opt(ratio(s, bare, |m| m.server_us), "", 3),
            fmt_opt(m.server_cpu, "%", 0),
            fmt_opt(m.generator_cpu, "%", 0),
        );
    }

    let check = |label: &str, value: Option<f64>, target: &str, pass: fn(f64) -> bool| match value {
        Some(v) => println!("{label} = {v:.3} ({target}) {}", verdict(pass(v))),
        None => println!("{label} = n/a (scenario not run)"),
    };
    println!();
    check(
        "json-layer/json-bare throughput (extractor + JSON handler)",
        ratio(json_layer, json_bare, rps),
        "target >= 0.90",
        |v| v >= 0.90,
    );
    check(
        "json-layer/json-bare p99",
        ratio(json_layer, json_bare, p99),
        "target <= 1.3",
        |v| v <= 1.3,
    );
    check(
        "layer/bare throughput (static body, the lower bound)",
        ratio(layer, bare, rps),
        "target >= 0.90",
        |v| v >= 0.90,
    );
    check(
        "layer/bare p99",
        ratio(layer, bare, p99),
        "target <= 1.3",
        |v| v <= 1.3,
    );
    match ratio(floor, bare, rps) {
        Some(v) => println!(
            "floor/bare throughput = {v:.3} (reference: a naive HS256 verify + moka lookup layer)"
        ),
        None => println!("floor/bare throughput = n/a (scenario not run)"),
    }
    match (ratio(redis, bare, rps), ratio(redis, layer, rps)) {
        (Some(vs_bare), Some(vs_layer)) => println!(
            "redis/bare throughput = {vs_bare:.3}, redis/layer (moka) = {vs_layer:.3} (a Redis round trip per request; no local cache yet)"
        ),
        _ => println!("redis = n/a (no Redis, or scenario not run)"),
    }
    check(
        "cached/layer throughput (local cache + Redis vs moka only)",
        ratio(cached, layer, rps),
        "target >= 0.90",
        |v| v >= 0.90,
    );
    if let Some((_, store)) = &setup.cached {
        let (hits, misses) = store.hit_counts();
        println!(
            "cached: local hit rate = {:.4} ({hits} hits, {misses} misses)",
            hits as f64 / (hits + misses).max(1) as f64
        );
    }
    check(
        "forged/layer throughput",
        ratio(forged, layer, rps),
        "target >= 1.0",
        |v| v >= 1.0,
    );
    if forged.is_some() {
        println!(
            "forged requests: store gets = {forged_store_gets}, upstream calls = {forged_upstream} (target 0) {}",
            verdict(forged_store_gets == 0 && forged_upstream == 0)
        );
    }
    if layer.is_some() {
        println!(
            "layer requests: upstream calls = {layer_upstream} (no refresh due: expect 0) {}",
            verdict(layer_upstream == 0)
        );
    }
    let mismatches: u64 = summary.iter().flatten().map(|s| s.mismatches).sum();
    let errors: u64 = summary.iter().flatten().map(|s| s.errors).sum();
    println!(
        "status mismatches = {mismatches}, connection errors = {errors} (must be 0) {}",
        verdict(mismatches == 0 && errors == 0)
    );
    if contended > 0 {
        println!(
            "warning: {contended} measurement(s) contended (a worker thread waited for a CPU > 5% of the time: \
             another process was running); rerun on a quiet machine"
        );
    }
    if let Some(busy) = bare
        .as_ref()
        .and_then(|b| b.generator_cpu)
        .filter(|&c| c >= 90.0)
    {
        println!(
            "note: the generator thread was busy {busy:.0}% of the bare run: bare may be load-limited, \
             which flatters the ratios vs bare; LOAD_CLIENT=raw uses a cheaper client"
        );
    }

    servers.shutdown_timeout(Duration::from_secs(1));
    generator.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
