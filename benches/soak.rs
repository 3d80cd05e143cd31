//! A bounded soak run (a benchmark, not a test): the example server's app with sessions in
//! Redis (behind the local cache), the fake WeChat as a separate process (`wechat-mock
//! --frozen-clock`, driven through its control API, so its own state is not in the RSS
//! measured), and mixed traffic for `SOAK_MINUTES` (default 10) minutes from 2,000 users:
//!
//! - valid tokens on `GET /me` (most requests), forged and expired tokens, `GET /me/profile`;
//! - logins, each code submitted twice (the double submit: the second is refused), logouts
//!   followed by a new login;
//! - every 10 s the clocks (ours and the fake WeChat's) jump 20 minutes, so every session's
//!   access token expires about once a minute of the run and is refreshed on its next request;
//! - from 40 % of the run, WeChat's refresh endpoint answers 503 for 30 s;
//! - from 60 %, Redis is paused (`SIGSTOP`) for 20 s: a store outage without data loss.
//!
//! It reports throughput, p99, answers by status and code, WeChat refresh calls per refreshed
//! session, sessions lost (a session never logged out that answers 401 at the end: must be 0)
//! and the process's RSS over time, and writes `target/soak/soak.csv` (one row a second) and
//! `target/soak/soak.svg` (RSS and p99 over time).
//!
//! ```sh
//! cargo bench --bench soak                 # 10 minutes
//! SOAK_MINUTES=1 cargo bench --bench soak  # a short look
//! ```
//!
//! Needs `redis-server` on the PATH (it starts its own on a free loopback port); builds the
//! `wechat-mock` binary (release) first. The load generator runs in the same process as the
//! server, so the RSS includes it; its own state is bounded (a per-second summary, 2,000 users,
//! the last 4,096 logged-out tokens).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use wechat_login::middleware::{
    AppKind, KeyRing, LoginLimits, SigningKey, TokenConfig, TokenIssuer,
};
use wechat_login::oauth::ManualClock;
use wechat_login::redis_store::{RedisStore, SealingKey};
use wechat_login::sessions::{CachedStore, Clock};
use wechat_login_example_server::app;
use wechat_mock::{DEFAULT_APPID, DEFAULT_SECRET};

const SECRET: &[u8] = b"soak-session-secret-0123456789abcdef";
const WORKERS: usize = 8;
const SESSIONS: usize = 300;
const USERS: u32 = 2_000;
const CLOCK_STEP: Duration = Duration::from_secs(20 * 60);
const CLOCK_EVERY: Duration = Duration::from_secs(10);

/// A Redis of the run's own, paused and resumed to play an outage.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let redis = Self {
            child: Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server on the PATH"),
            port,
        };
        for _ in 0..200 {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                let mut answer = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut answer).is_ok()
                    && &answer == b"+PONG\r\n"
                {
                    return redis;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis-server did not start");
    }

    fn signal(&self, signal: &str) {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fake WeChat in a process of its own, its clock moved only through its control API.
struct Mock {
    child: Child,
    url: String,
}

impl Mock {
    fn start() -> Self {
        let built = Command::new(env!("CARGO"))
            .args([
                "build",
                "--release",
                "-q",
                "-p",
                "wechat-mock",
                "--bin",
                "wechat-mock",
            ])
            .status()
            .expect("cargo build wechat-mock");
        assert!(built.success());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let binary =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/wechat-mock");
        let mock = Self {
            child: Command::new(binary)
                .args(["--bind", &format!("127.0.0.1:{port}"), "--frozen-clock"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start wechat-mock"),
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return mock;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("wechat-mock did not start");
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Latencies in whole microseconds up to 100 ms (beyond: the last bucket): a fixed 800 KB, so
/// the generator's memory does not grow with the number of requests.
struct Histogram(Vec<u64>);

impl Default for Histogram {
    fn default() -> Self {
        Self(vec![0; 100_001])
    }
}

impl Histogram {
    fn record(&mut self, us: u32) {
        self.0[(us as usize).min(100_000)] += 1;
    }

    fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `p` quantile in milliseconds.
    fn quantile(&self, p: f64) -> f64 {
        let total = self.count();
        let rank = ((total as f64) * p).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (us, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return us as f64 / 1000.0;
            }
        }
        0.0
    }

    fn clear(&mut self) {
        self.0.iter_mut().for_each(|n| *n = 0);
    }
}

/// A finished second: what the CSV and the plot show.
struct Summary {
    requests: u64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    rss_mb: f64,
}

#[derive(Default)]
struct Stats {
    /// The second being counted, and its latencies and error count.
    current: u64,
    second: Histogram,
    second_errors: u64,
    seconds: BTreeMap<u64, Summary>,
    all: Histogram,
    answers: BTreeMap<String, u64>,
    /// Sessions that answered 401 while they should have been alive.
    suspicious: u64,
}

impl Stats {
    /// Closes the second being counted (at most once a second, from the conductor).
    fn close_second(&mut self, next: u64, rss_mb: f64) {
        let summary = Summary {
            requests: self.second.count(),
            p50_ms: self.second.quantile(0.5),
            p99_ms: self.second.quantile(0.99),
            errors: self.second_errors,
            rss_mb,
        };
        self.seconds.insert(self.current, summary);
        self.second.clear();
        self.second_errors = 0;
        self.current = next;
    }
}

/// A bounded set of recent tokens.
#[derive(Default)]
struct Recent {
    set: std::collections::HashSet<String>,
    order: std::collections::VecDeque<String>,
}

impl Recent {
    fn insert(&mut self, token: String) {
        if self.order.len() == 4096
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.set.insert(token.clone());
        self.order.push_back(token);
    }
}

/// A logged-in client of the pool.
#[derive(Clone)]
struct Session {
    token: String,
}

struct Run {
    base: String,
    http: reqwest::Client,
    /// The fake WeChat's base URL (its control API is under `/mock/`).
    mock: String,
    pool: Mutex<Vec<Session>>,
    stats: Mutex<Stats>,
    started: Instant,
    expired_token: String,
    stop: AtomicBool,
    /// The most recent tokens of sessions logged out (a worker that picked one just before may
    /// still use it), bounded so the generator's memory stays flat.
    logged_out: Mutex<Recent>,
    /// Whether clients log in and out during the run (`SOAK_LOGINS=0`: no, to tell the memory
    /// sessions take from the memory requests take).
    logins: bool,
}

impl Run {
    fn record(&self, latency: Duration, answer: String) {
        let us = latency.as_micros().min(u32::MAX as u128) as u32;
        let mut stats = self.stats.lock().unwrap();
        stats.second.record(us);
        stats.all.record(us);
        if !answer.starts_with('2') {
            stats.second_errors += 1;
        }
        match stats.answers.get_mut(&answer) {
            Some(n) => *n += 1,
            None => {
                stats.answers.insert(answer, 1);
            }
        }
    }

    /// Sends a request and records it under "status code".
    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let started = Instant::now();
        let (status, body) = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                (status, body)
            }
            Err(_) => (0, Value::Null),
        };
        let code = body["error"].as_str().unwrap_or("");
        self.record(
            started.elapsed(),
            format!("{status} {code}").trim().to_owned(),
        );
        (status, body)
    }

    /// Tells the fake WeChat something through its control API.
    async fn control(&self, method: reqwest::Method, path: &str, body: Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.mock))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }

    async fn login(&self, openid: &str) -> Option<Session> {
        let minted: Value = self
            .http
            .post(format!("{}/mock/codes", self.mock))
            .json(&json!({ "openid": openid }))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let code = minted["code"].as_str()?.to_owned();
        let url = format!("{}/auth/wechat/login", self.base);
        let (first, second) = tokio::join!(
            self.send(self.http.post(&url).json(&json!({ "code": code }))),
            self.send(self.http.post(&url).json(&json!({ "code": code }))),
        );
        // One of the double submit logs in; the other is refused as a used code.
        let winner = [first, second]
            .into_iter()
            .find(|(status, _)| *status == 200)?;
        Some(Session {
            token: winner.1["token"].as_str()?.to_owned(),
        })
    }

    async fn worker(self: Arc<Self>) {
        while !self.stop.load(Ordering::Relaxed) {
            // Per 100,000 requests; logins and logouts rare enough (a few a second) that a
            // pooled session lives for minutes, through several refreshes.
            let roll = rand::rng().random_range(0..100_000);
            let user = format!("o_soak_{:04}", rand::rng().random_range(0..USERS));
            let picked = {
                let pool = self.pool.lock().unwrap();
                let i = rand::rng().random_range(0..pool.len());
                (i, pool[i].clone())
            };
            let (index, session) = picked;
            match roll {
                0..=69_999 => {
                    let (status, _) = self
                        .send(
                            self.http
                                .get(format!("{}/me", self.base))
                                .bearer_auth(&session.token),
                        )
                        .await;
                    if status == 401
                        && !self.logged_out.lock().unwrap().set.contains(&session.token)
                    {
                        self.stats.lock().unwrap().suspicious += 1;
                    }
                }
                70_000..=77_999 => {
                    let forged = format!("{}x", &session.token[..session.token.len() - 1]);
                    self.send(
                        self.http
                            .get(format!("{}/me", self.base))
                            .bearer_auth(forged),
                    )
                    .await;
                }
                78_000..=81_999 => {
                    self.send(
                        self.http
                            .get(format!("{}/me", self.base))
                            .bearer_auth(&self.expired_token),
                    )
                    .await;
                }
                82_000..=99_991 => {
                    self.send(
                        self.http
                            .get(format!("{}/me/profile", self.base))
                            .bearer_auth(&session.token),
                    )
                    .await;
                }
                99_992..=99_999 if !self.logins => {
                    self.send(
                        self.http
                            .get(format!("{}/me", self.base))
                            .bearer_auth(&session.token),
                    )
                    .await;
                }
                99_992..=99_996 => {
                    // A new client logs in (twice the same code) and joins the pool.
                    if let Some(new) = self.login(&user).await {
                        let mut pool = self.pool.lock().unwrap();
                        let i = rand::rng().random_range(0..pool.len());
                        pool[i] = new;
                    }
                }
                _ => {
                    // A client logs out; its place goes to a fresh login.
                    let removed = {
                        let mut pool = self.pool.lock().unwrap();
                        (pool.get(index).map(|s| s.token.clone()) == Some(session.token.clone()))
                            .then(|| pool.remove(index))
                    };
                    if removed.is_some() {
                        self.logged_out
                            .lock()
                            .unwrap()
                            .insert(session.token.clone());
                        self.send(
                            self.http
                                .post(format!("{}/auth/logout", self.base))
                                .bearer_auth(&session.token),
                        )
                        .await;
                        if let Some(new) = self.login(&user).await {
                            self.pool.lock().unwrap().push(new);
                        }
                    }
                }
            }
        }
    }
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// The value of the Prometheus sample `series`, summed over every line that starts with it.
fn metric_sum(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() {
    let minutes: f64 = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(soak(Duration::from_secs_f64(minutes * 60.0)));
}

async fn soak(duration: Duration) {
    let metrics = app::Metrics::install().unwrap();
    let handle = metrics.clone();
    let redis = Redis::start();
    let clock = ManualClock::starting_now();
    let shared_clock: wechat_login::oauth::SharedClock = Arc::new(clock.clone());
    let shared = RedisStore::builder(
        &format!("redis://127.0.0.1:{}", redis.port),
        SealingKey::new("k1", [9; 32]).unwrap(),
    )
    .unwrap()
    .clock(shared_clock.clone())
    .command_timeout(Duration::from_millis(500))
    .connect()
    .await
    .unwrap();
    let store = CachedStore::builder(shared)
        .clock(shared_clock.clone())
        .build()
        .await
        .unwrap();
    let mock = Mock::start();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let built = app::build_with_store(
        app::Config {
            upstream: app::Upstream::Real {
                apps: vec![app::AppConfig {
                    kind: AppKind::MobileApp,
                    appid: DEFAULT_APPID.to_owned(),
                    secret: DEFAULT_SECRET.to_owned(),
                }],
                api_base: Some(mock.url.clone()),
            },
            session_secret: Some(SECRET.to_vec()),
            public_url: format!("http://{addr}"),
            clock: shared_clock.clone(),
            login_limits: LoginLimits::unlimited(),
            accounts_db: None,
            accounts: None,
            metrics: Some(metrics),
            official_account_server: None,
        },
        store,
    )
    .await
    .unwrap();
    tokio::spawn(
        wechat_login::serve(listener, built.router)
            // The load generator is every client at once, from one address.
            .limits(wechat_login::ServeLimits {
                max_connections: 10_000,
                max_connections_per_address: 10_000,
                ..wechat_login::ServeLimits::default()
            })
            .into_future(),
    );
    // A token of ours, expired: issued by the same keys 30 days ago.
    let past = ManualClock::new(clock.now() - Duration::from_secs(30 * 24 * 3600));
    let old_issuer = TokenIssuer::new(
        KeyRing::new(SigningKey::hs256("k1", SECRET).unwrap()),
        TokenConfig::default(),
        Arc::new(past.clone()),
    )
    .unwrap();
    let record = wechat_login::sessions::conformance::sample_record(&past, DEFAULT_APPID, "o_x");
    let expired_token = old_issuer.issue(&record).unwrap().value;

    let run = Arc::new(Run {
        base: format!("http://{addr}"),
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap(),
        mock: mock.url.clone(),
        pool: Mutex::new(Vec::new()),
        stats: Mutex::default(),
        started: Instant::now(),
        expired_token,
        stop: AtomicBool::new(false),
        logged_out: Mutex::default(),
        logins: std::env::var("SOAK_LOGINS").map_or(true, |v| v != "0"),
    });
    for i in 0..SESSIONS {
        let session = run.login(&format!("o_soak_{i:04}")).await.unwrap();
        run.pool.lock().unwrap().push(session);
    }
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| tokio::spawn(Arc::clone(&run).worker()))
        .collect();

    // The conductor: clock jumps, the WeChat fault window, the Redis outage, RSS samples.
    let mut rss = BTreeMap::new();
    let mut next_jump = CLOCK_EVERY;
    let (fault_at, fault_end) = (
        duration.mul_f64(0.4),
        duration.mul_f64(0.4) + Duration::from_secs(30),
    );
    let (outage_at, outage_end) = (
        duration.mul_f64(0.6),
        duration.mul_f64(0.6) + Duration::from_secs(20),
    );
    let (mut faulted, mut unfaulted, mut paused, mut resumed) = (false, false, false, false);
    let mut events = Vec::new();
    let mut scrapes = 0u64;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = started.elapsed();
        let rss_now = rss_mb();
        rss.insert(run.started.elapsed().as_secs(), rss_now);
        run.stats
            .lock()
            .unwrap()
            .close_second(run.started.elapsed().as_secs(), rss_now);
        // Scraped as Prometheus would: the exporter keeps histogram samples until a scrape.
        if t.as_secs().is_multiple_of(5) {
            scrapes += 1;
            let scraped = run.http.get(format!("{}/metrics", run.base)).send().await;
            assert!(scraped.is_ok_and(|r| r.status().is_success()));
        }
        if t >= next_jump {
            clock.advance(CLOCK_STEP);
            run.control(
                reqwest::Method::POST,
                "/mock/clock/advance",
                json!({ "seconds": CLOCK_STEP.as_secs() }),
            )
            .await;
            next_jump += CLOCK_EVERY;
        }
        if t >= fault_at && !faulted {
            run.control(
                reqwest::Method::POST,
                "/mock/faults",
                json!({ "endpoint": "refresh_token", "status": 503, "times": 1_000_000 }),
            )
            .await;
            faulted = true;
            events.push((run.started.elapsed().as_secs(), "WeChat refresh 503s"));
        }
        if t >= fault_end && !unfaulted {
            run.control(reqwest::Method::DELETE, "/mock/faults", json!({}))
                .await;
            unfaulted = true;
            events.push((run.started.elapsed().as_secs(), "WeChat back"));
        }
        if t >= outage_at && !paused {
            redis.signal("-STOP");
            paused = true;
            events.push((run.started.elapsed().as_secs(), "Redis paused"));
        }
        if t >= outage_end && !resumed {
            redis.signal("-CONT");
            resumed = true;
            events.push((run.started.elapsed().as_secs(), "Redis resumed"));
        }
    }
    run.stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.await;
    }
    let elapsed = started.elapsed();

    // Sessions lost: every pooled session (never logged out) must still be served.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pool = run.pool.lock().unwrap().clone();
    let mut lost = 0;
    for session in &pool {
        let response = run
            .http
            .get(format!("{}/me", run.base))
            .bearer_auth(&session.token)
            .send()
            .await
            .unwrap();
        if response.status() == 401 {
            lost += 1;
        }
    }

    // Report.
    let text = handle.render();
    let refresh_calls = metric_sum(
        &text,
        r#"wechat_upstream_requests_total{endpoint="refresh_token""#,
    );
    let refreshed = metric_sum(
        &text,
        r#"wechat_login_session_maintenance_total{call="refresh",outcome="refreshed""#,
    );
    let stats = run.stats.lock().unwrap();
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/soak");
    std::fs::create_dir_all(&out).unwrap();
    let mut csv = String::from("second,requests,p50_ms,p99_ms,rss_mb,errors\n");
    let mut series = Vec::new();
    for (second, s) in &stats.seconds {
        csv.push_str(&format!(
            "{second},{},{:.3},{:.3},{:.1},{}\n",
            s.requests, s.p50_ms, s.p99_ms, s.rss_mb, s.errors
        ));
        series.push((*second, s.p99_ms, s.rss_mb));
    }
    let answers = &stats.answers;
    let total = stats.all.count();
    std::fs::write(out.join("soak.csv"), &csv).unwrap();
    std::fs::write(out.join("soak.svg"), svg(&series, &events)).unwrap();
    let warm = rss
        .values()
        .nth(60.min(rss.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    let last = rss.values().last().copied().unwrap_or(0.0);
    let max = rss.values().cloned().fold(0.0, f64::max);
    println!(
        "soak: {:.1} min, {} workers, {} pooled sessions",
        elapsed.as_secs_f64() / 60.0,
        WORKERS,
        SESSIONS
    );
    println!(
        "requests: {total} ({:.0}/s), /metrics scraped {scrapes} times",
        total as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
        stats.all.quantile(0.5),
        stats.all.quantile(0.99),
        stats.all.quantile(0.999)
    );
    println!("answers by status and code:");
    for (k, v) in answers {
        println!("  {k:<40} {v}");
    }
    println!(
        "WeChat refresh calls: {refresh_calls} for {refreshed} refreshed sessions ({:.3} calls per refresh)",
        refresh_calls / refreshed.max(1.0)
    );
    println!(
        "401 on a session never logged out, during the run: {}",
        stats.suspicious
    );
    println!("sessions lost: {lost} of {} never logged out", pool.len());
    println!(
        "RSS: {warm:.1} MB after the first minute, {last:.1} MB at the end, {max:.1} MB at most"
    );
    println!("events: {events:?}");
    for line in text.lines().filter(|l| {
        l.starts_with("wechat_login_session_maintenance_total")
            || l.starts_with("wechat_upstream_requests_total")
            || l.starts_with("wechat_login_flights_coalesced_total")
    }) {
        println!("  {line}");
    }
    println!("wrote {}", out.join("soak.csv").display());
}

/// One second of the plot: the second, its p99 (ms), the RSS (MB).
type Point = (u64, f64, f64);

/// RSS and p99 over time as an SVG: two polylines on a shared time axis, events marked.
fn svg(series: &[(u64, f64, f64)], events: &[(u64, &str)]) -> String {
    let (w, h, pad) = (900.0, 360.0, 50.0);
    let t_max = series.last().map(|s| s.0).unwrap_or(1).max(1) as f64;
    let p99_max = series.iter().map(|s| s.1).fold(1.0, f64::max);
    let rss_max = series.iter().map(|s| s.2).fold(1.0, f64::max) * 1.1;
    let x = |t: f64| pad + t / t_max * (w - 2.0 * pad);
    let y = |v: f64, max: f64| h - pad - v / max * (h - 2.0 * pad);
    let line = |f: &dyn Fn(&Point) -> (f64, f64)| {
        series
            .iter()
            .map(|s| {
                let (px, py) = f(s);
                format!("{px:.1},{py:.1}")
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let p99 = line(&|s| (x(s.0 as f64), y(s.1, p99_max)));
    let rss = line(&|s| (x(s.0 as f64), y(s.2, rss_max)));
    let mut marks = String::new();
    for (t, what) in events {
        let px = x(*t as f64);
        marks.push_str(&format!(
            "<line x1='{px:.1}' y1='{pad}' x2='{px:.1}' y2='{}' stroke='#999' stroke-dasharray='4'/><text x='{:.1}' y='{}' font-size='10' fill='#555'>{what}</text>",
            h - pad,
            px + 3.0,
            pad - 5.0 + 12.0 * (events.iter().position(|e| e.0 == *t).unwrap_or(0) % 3) as f64,
        ));
    }
    format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif'>\
<rect width='100%' height='100%' fill='white'/>\
<text x='{pad}' y='20' font-size='14'>soak: p99 latency (red, left axis, max {p99_max:.1} ms) and RSS (blue, right axis, max {:.0} MB) over {t_max} s</text>\
<line x1='{pad}' y1='{}' x2='{}' y2='{}' stroke='black'/>\
<polyline fill='none' stroke='#c33' stroke-width='1' points='{p99}'/>\
<polyline fill='none' stroke='#36c' stroke-width='2' points='{rss}'/>{marks}\
<text x='{pad}' y='{}' font-size='11'>0 s</text><text x='{}' y='{}' font-size='11'>{t_max} s</text></svg>\n",
        rss_max / 1.1,
        h - pad,
        w - pad,
        h - pad,
        h - pad + 15.0,
        w - pad - 30.0,
        h - pad + 15.0,
    )
}
