//! The example app on Redis, end to end: several instances share sessions, a logout on one is
//! refused on the others at once, a restart keeps every session, and Redis stopping mid-traffic
//! or a record sealed under a key no instance has answers 503 — never a logout.

mod common;

use common::redis;

use std::time::Duration;

use common::{Instance, MAX_STALENESS, Server, start_instance};
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use wechat_login::oauth::ManualClock;
use wechat_login::oauth::{Clock, SharedClock};
use wechat_login::redis_store::{RedisStore, SealingKey};
use wechat_login::sessions::{SessionStore, SharedStore, UserId};
use wechat_mock::MockConfig;

type Store = common::FleetStore;

async fn store(url: &str, prefix: &str, key: SealingKey, clock: &ManualClock) -> Store {
    common::fleet_store(url, prefix, key, clock).await
}

async fn first(store: Store, clock: &ManualClock) -> Server<Store> {
    common::first_of_fleet(store, clock, None).await
}

/// Polls `done` every few ms until it holds, failing if that takes longer than `bound` of real
/// time, and says how long it took: invalidations travel through Redis, so another instance
/// learns of a write a moment later.
async fn eventually<F: Future<Output = bool>>(
    what: &str,
    bound: Duration,
    done: impl Fn() -> F,
) -> Duration {
    let started = std::time::Instant::now();
    loop {
        if done().await {
            return started.elapsed();
        }
        let took = started.elapsed();
        assert!(took <= bound, "not within {bound:?} ({took:?}): {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The promise for an invalidation: the other instances refuse an ended session within this of
/// the answer that ended it (it is a few milliseconds; the rest is room for a loaded machine).
const PROPAGATION: Duration = Duration::from_millis(250);

/// Redis's reconnection backoff (at most 2 s) and a resubscription.
const RESUBSCRIBED: Duration = Duration::from_secs(5);

/// Break to see it fail: `DELETE` in `store.rs` not publishing (the other instance then serves
/// its copy for the 2 s staleness, past the 250 ms bound).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_sessions_logout_is_fleet_wide_and_a_restart_keeps_them() {
    if redis::machine_redis().await.is_none() {
        return;
    }
    let url = redis::redis_url();
    let prefix = redis::random_prefix();
    let clock = ManualClock::starting_now();
    let a = first(
        store(&url, &prefix, redis::key("k1", 1), &clock).await,
        &clock,
    )
    .await;
    let clock = a.clock.clone();
    let b_store = store(&url, &prefix, redis::key("k1", 1), &clock).await;
    let b = start_instance(Instance::sharing(&a.mock, &clock, &a.accounts), b_store).await;

    // Log in on A, use the session on B.
    let token = a.login("o_fleet").await;
    let (status, on_a) = a.me(&token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, on_b) = b.me(&token).await;
    assert_eq!(status, StatusCode::OK, "{on_b}");
    assert_eq!(on_a["session_id"], on_b["session_id"]);

    // Log out on B: refused on B at once, and on A within milliseconds of the 204.
    assert_eq!(b.post("/auth/logout", &token).await, StatusCode::NO_CONTENT);
    eventually("the logout on B is refused on A", PROPAGATION, || async {
        a.me(&token).await.1["error"] == "session_expired"
    })
    .await;
    assert_eq!(b.me(&token).await.0, StatusCode::UNAUTHORIZED);

    // Logout-all on A ends the user's sessions made on B too (B had them cached).
    let phone = b.login("o_many").await;
    let laptop = a.login("o_many").await;
    assert_eq!(b.me(&phone).await.0, StatusCode::OK);
    assert_eq!(
        a.post("/auth/logout/all", &laptop).await,
        StatusCode::NO_CONTENT
    );
    eventually("logout-all on A is refused on B", PROPAGATION, || async {
        b.me(&phone).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(a.me(&laptop).await.0, StatusCode::UNAUTHORIZED);

    // A deploy: A stops, a new A starts on the same Redis; the session lives on.
    let kept = a.login("o_kept").await;
    let (mock, accounts) = (a.mock.clone(), a.accounts.clone());
    a.stop().await;
    let a2_store = store(&url, &prefix, redis::key("k1", 1), &clock).await;
    let a2 = start_instance(Instance::sharing(&mock, &clock, &accounts), a2_store).await;
    let (status, body) = a2.me(&kept).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["openid"], "o_kept");
}

/// Break to see it fail: `open` in the Redis store deleting a record that does not open (the
/// check reads Redis itself, not A's local copy).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_no_instance_can_open_answers_503_and_is_kept() {
    if redis::machine_redis().await.is_none() {
        return;
    }
    let url = redis::redis_url();
    let prefix = redis::random_prefix();
    let clock = ManualClock::starting_now();
    let a = first(
        store(&url, &prefix, redis::key("k1", 1), &clock).await,
        &clock,
    )
    .await;
    let clock = a.clock.clone();
    // B was deployed with the wrong STORE_KEY.
    let b_store = store(&url, &prefix, redis::key("k9", 9), &clock).await;
    let b = start_instance(Instance::sharing(&a.mock, &clock, &a.accounts), b_store).await;
    let token = a.login("o_sealed").await;
    let response = b.get("/me", &token).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(RETRY_AFTER));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "store_unavailable");
    // Still in Redis (asked directly, not through A's local copy), and still served by A once
    // A reads it again.
    let sid = session_id(&a, &token).await;
    let in_redis = a.auth.sessions().store().shared();
    assert!(in_redis.get(&sid).await.unwrap().is_some(), "not deleted");
    a.advance(MAX_STALENESS + Duration::from_millis(1));
    assert_eq!(a.me(&token).await.0, StatusCode::OK);
    assert_eq!(
        b.get("/me", &token).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// The session id behind `token`, as `instance` reports it.
async fn session_id<St: SharedStore>(
    instance: &Server<St>,
    token: &str,
) -> wechat_login::sessions::SessionId {
    instance.me(token).await.1["session_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_traffic_answers_503_and_loses_nothing() {
    let Some(server) = redis::RedisServer::start(&[]).await else {
        return;
    };
    let clock = ManualClock::starting_now();
    let prefix = redis::random_prefix();
    let store = store(&server.url(), &prefix, redis::key("k1", 1), &clock).await;
    let a = first(store, &clock).await;
    let token = a.login("o_outage").await;
    let (_, before) = a.me(&token).await;

    server.signal("STOP");
    // The local copy is served while it may be: until the maximum staleness has passed with
    // the invalidation channel silent. Then the store must be asked, and cannot answer.
    a.advance(MAX_STALENESS + Duration::from_secs(1));
    for _ in 0..5 {
        let response = a.get("/me", &token).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(RETRY_AFTER));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "store_unavailable", "never a logout");
    }
    let code = a.code("o_during").await;
    let (status, body) = a
        .post_login(
            "/auth/wechat/login",
            serde_json::json!({ "code": code }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    server.signal("CONT");
    let (status, after) = a.me(&token).await;
    assert_eq!(status, StatusCode::OK, "{after}");
    assert_eq!(after["session_id"], before["session_id"]);
}

/// Redis killed (`SIGKILL`, not paused): every request that needs it answers 503 — a logout and a
/// logout-all too, never a 204 for a session that lives on — and once Redis is back (with what
/// it had persisted) the sessions are served and the logouts go through. Break to see it fail:
/// `logout_session` in `endpoints.rs` ignoring the store's error (a 204 for a session that
/// lives on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_answers_503_even_to_logouts_and_a_restart_loses_nothing() {
    let persist = ["--appendonly", "yes", "--appendfsync", "always"];
    let Some(mut server) = redis::RedisServer::start(&persist).await else {
        return;
    };
    let clock = ManualClock::starting_now();
    let prefix = redis::random_prefix();
    let store = store(&server.url(), &prefix, redis::key("k1", 1), &clock).await;
    let a = first(store, &clock).await;
    let token = a.login("o_killed").await;
    let other = a.login("o_killed").await;
    let session = session_id(&a, &token).await;

    server.kill();
    let unavailable = |response: reqwest::Response| async move {
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(RETRY_AFTER));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "store_unavailable", "never a logout");
    };
    // Within the staleness the local copy lets the requests through to the logout itself, which
    // cannot end the session in Redis: 503, not 204.
    for path in ["/auth/logout", "/auth/logout/all"] {
        let response = a
            .http
            .post(format!("{}{path}", a.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        unavailable(response).await;
    }
    // The failed logout dropped the local copy: the session is read again, and cannot be.
    unavailable(a.get("/me", &token).await).await;
    a.advance(MAX_STALENESS + Duration::from_millis(1));
    unavailable(a.get("/me", &other).await).await;

    server.restart(&persist).await;
    // The client reconnects by itself; the session, and the other one, are still there.
    eventually("Redis answers again", RESUBSCRIBED, || async {
        a.me(&token).await.0 == StatusCode::OK
    })
    .await;
    assert_eq!(session_id(&a, &token).await, session);
    assert_eq!(a.me(&other).await.0, StatusCode::OK);
    assert_eq!(
        a.post("/auth/logout/all", &token).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(a.me(&other).await.0, StatusCode::UNAUTHORIZED);
}

/// A session whose WeChat token ran out while Redis was down: 503 while Redis cannot be read
/// (WeChat not asked: the refresh token is in Redis), then refreshed exactly once when it is
/// back. Break to see it fail: a store error on the read taken as "no such session" (401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_due_for_refresh_during_an_outage_is_refreshed_once_it_is_over() {
    let Some(server) = redis::RedisServer::start(&[]).await else {
        return;
    };
    let clock = ManualClock::starting_now();
    let prefix = redis::random_prefix();
    let store = store(&server.url(), &prefix, redis::key("k1", 1), &clock).await;
    let a = first(store, &clock).await;
    let token = a.login("o_due").await;
    assert_eq!(a.me(&token).await.0, StatusCode::OK);

    server.signal("STOP");
    a.advance(common::HOUR * 2);
    for _ in 0..3 {
        let (status, body) = a.me(&token).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["error"], "store_unavailable");
    }
    assert_eq!(a.mock.calls(wechat_mock::Endpoint::RefreshToken), 0);

    server.signal("CONT");
    let (status, body) = a.me(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(a.mock.calls(wechat_mock::Endpoint::RefreshToken), 1);
    assert_eq!(a.me(&token).await.0, StatusCode::OK);
    assert_eq!(a.mock.calls(wechat_mock::Endpoint::RefreshToken), 1);
}

/// Two more instances next to `a`, on the same Redis, prefix and WeChat.
async fn fleet_of(a: &Server<Store>, url: &str, prefix: &str, n: usize) -> Vec<Server<Store>> {
    let mut fleet = Vec::new();
    for _ in 0..n {
        let store = store(url, prefix, redis::key("k1", 1), &a.clock).await;
        fleet.push(start_instance(Instance::sharing(&a.mock, &a.clock, &a.accounts), store).await);
    }
    fleet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_refreshed_once_for_the_whole_fleet() {
    if redis::machine_redis().await.is_none() {
        return;
    }
    let (url, prefix) = (redis::redis_url(), redis::random_prefix());
    let clock = ManualClock::starting_now();
    let a = first(
        store(&url, &prefix, redis::key("k1", 1), &clock).await,
        &clock,
    )
    .await;
    let others = fleet_of(&a, &url, &prefix, 2).await;
    let fleet: Vec<&Server<Store>> = std::iter::once(&a).chain(&others).collect();
    let token = a.login("o_herd").await;
    for instance in &fleet {
        assert_eq!(instance.me(&token).await.0, StatusCode::OK);
    }
    a.advance(common::HOUR * 2);

    // 1,000 concurrent requests, spread over the three instances.
    let requests = (0..1_000).map(|i| fleet[i % fleet.len()].me(&token));
    let answers = futures::future::join_all(requests).await;
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK));
    assert_eq!(
        a.mock.calls(wechat_mock::Endpoint::RefreshToken),
        1,
        "one refresh for the whole fleet"
    );
}

/// Break to see it fail: the exchange not taken under the code's fleet-wide lease (`under_lease`
/// in `login.rs` running the exchange directly), so each instance exchanges for itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_posted_to_two_instances_at_once_is_exchanged_once() {
    if redis::machine_redis().await.is_none() {
        return;
    }
    let (url, prefix) = (redis::redis_url(), redis::random_prefix());
    let clock = ManualClock::starting_now();
    let a = first(
        store(&url, &prefix, redis::key("k1", 1), &clock).await,
        &clock,
    )
    .await;
    let b = fleet_of(&a, &url, &prefix, 1).await.remove(0);
    for request_id in [Some("fleet-retry-0123456789"), None] {
        let code = a.code("o_twice").await;
        // Held up at WeChat, so both submits are certainly in flight together.
        a.mock.inject(
            wechat_mock::Endpoint::AccessToken,
            wechat_mock::Fault::Delay(Duration::from_millis(500)),
            1,
        );
        let body = match request_id {
            Some(id) => serde_json::json!({ "code": code, "request_id": id }),
            None => serde_json::json!({ "code": code }),
        }
        .to_string();
        let calls = a.mock.calls(wechat_mock::Endpoint::AccessToken);
        let (on_a, on_b) = tokio::join!(
            a.post_login("/auth/wechat/login", body.clone()),
            b.post_login("/auth/wechat/login", body.clone())
        );
        assert_eq!(on_a.0, StatusCode::OK, "{}", on_a.1);
        assert_eq!(on_b.0, StatusCode::OK, "{}", on_b.1);
        let (sid_a, sid_b) = (
            a.me(on_a.1["token"].as_str().unwrap()).await.1["session_id"].clone(),
            b.me(on_b.1["token"].as_str().unwrap()).await.1["session_id"].clone(),
        );
        assert_eq!(sid_a, sid_b, "one session");
        assert_eq!(
            a.mock.calls(wechat_mock::Endpoint::AccessToken),
            calls + 1,
            "one exchange"
        );
        // A repeat afterwards, on the other instance: only with the request id.
        let (status, _) = b.post_login("/auth/wechat/login", body).await;
        let expected = match request_id {
            Some(_) => StatusCode::OK,
            None => StatusCode::UNAUTHORIZED,
        };
        assert_eq!(status, expected);
    }
}

/// Break to see it fail: `try_lease` answering `true` whoever holds the lease (leases ignored:
/// the refresh then happens under the crashed instance's lease, before it runs out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_lease_holder_is_taken_over_once_its_lease_runs_out() {
    let Some(client) = redis::machine_redis().await else {
        return;
    };
    let (url, prefix) = (redis::redis_url(), redis::random_prefix());
    let clock = ManualClock::starting_now();
    let mock_config = MockConfig {
        rotate_refresh_tokens: true,
        ..MockConfig::default()
    };
    let a_store = store(&url, &prefix, redis::key("k1", 1), &clock).await;
    let instance = Instance {
        upstream: common::Upstream::Sandbox(mock_config),
        clock: clock.clone(),
        login_limits: Default::default(),
        serve_limits: common::many_clients(),
        accounts: None,
        metrics: None,
    };
    let a = start_instance(instance, a_store).await;
    let token = a.login("o_crash").await;
    let sid: wechat_login::sessions::SessionId = a.me(&token).await.1["session_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    a.advance(common::HOUR * 2);
    // An instance took the refresh lease and died: the lease stays until it runs out.
    let lease = a
        .auth
        .sessions()
        .store()
        .shared()
        .lease_key(&format!("refresh:{sid}"));
    let _: () = fred::prelude::KeysInterface::set(
        &client,
        &lease,
        "crashed-instance",
        Some(fred::types::Expiration::PX(1_000)),
        None,
        false,
    )
    .await
    .unwrap();
    // While the crashed instance's lease stands, nobody refreshes; the request waits it out.
    let request = async {
        let answer = a.me(&token).await;
        (answer, std::time::Instant::now())
    };
    let watch = async {
        let mut last_seen = None;
        loop {
            let holder: Option<String> = fred::prelude::KeysInterface::get(&client, &lease)
                .await
                .unwrap();
            if holder.as_deref() != Some("crashed-instance") {
                break last_seen.expect("the lease stood when the request came");
            }
            assert_eq!(
                a.mock.calls(wechat_mock::Endpoint::RefreshToken),
                0,
                "no refresh under another instance's lease"
            );
            last_seen = Some(std::time::Instant::now());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let (((status, body), answered_at), lease_last_seen) = tokio::join!(request, watch);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        answered_at > lease_last_seen,
        "answered only after the lease ran out"
    );
    assert_eq!(a.mock.calls(wechat_mock::Endpoint::RefreshToken), 1);
    // The one refresh token WeChat now honours is the one stored: the next refresh works.
    a.advance(common::HOUR * 2);
    assert_eq!(a.me(&token).await.0, StatusCode::OK);
    assert_eq!(a.mock.calls(wechat_mock::Endpoint::RefreshToken), 2);
}

/// Both instances hear invalidations through a proxy that can refuse them, so a cut channel stays
/// cut: B misses a logout on A and serves its copy up to the maximum staleness, to the
/// millisecond, and no longer. Break to see it fail: `trusted` in `local.rs` comparing with
/// `<` one more millisecond (or ignoring the staleness), or the subscriber not noticing the cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_invalidation_channel_bounds_staleness_to_the_millisecond_and_recovers() {
    let Some(server) = redis::RedisServer::start(&[]).await else {
        return;
    };
    let (url, prefix) = (server.url(), redis::random_prefix());
    let proxy = Proxy::start(redis_addr(&url)).await;
    let proxied = format!("redis://{}", proxy.addr);
    let clock = ManualClock::starting_now();
    let shared: SharedClock = std::sync::Arc::new(clock.clone());
    let builder = || {
        RedisStore::builder(&url, redis::key("k1", 1))
            .unwrap()
            .prefix(&prefix)
            .invalidations_from(&proxied)
            .unwrap()
    };
    let a = first(
        common::fleet_store_with(builder(), shared.clone()).await,
        &clock,
    )
    .await;
    let b_store = common::fleet_store_with(builder(), shared).await;
    let b = start_instance(Instance::sharing(&a.mock, &a.clock, &a.accounts), b_store).await;
    let channel = a.auth.sessions().store().shared().channel();
    let subscribers = || {
        redis::cli(server.port, &["pubsub", "numsub", &channel])
            .and_then(|out| {
                out.lines()
                    .nth(1)
                    .and_then(|n| n.trim().parse::<u32>().ok())
            })
            .unwrap_or(0)
    };
    assert_eq!(subscribers(), 2);

    let token = a.login("o_cut").await;
    assert_eq!(b.me(&token).await.0, StatusCode::OK, "B holds a local copy");
    // Cut both subscriber connections, and keep them from coming back.
    proxy.refuse(true);
    let killed = redis::cli(server.port, &["client", "kill", "type", "pubsub"]).unwrap();
    assert!(
        killed.trim().parse::<u32>().unwrap() >= 2,
        "killed {killed}"
    );
    assert_eq!(subscribers(), 0, "the channel is cut");
    assert_eq!(a.post("/auth/logout", &token).await, StatusCode::NO_CONTENT);
    // B missed it: its copy is served up to the maximum staleness after B read it...
    a.advance(MAX_STALENESS - Duration::from_millis(100));
    assert_eq!(b.me(&token).await.0, StatusCode::OK, "within the staleness");
    a.advance(Duration::from_millis(100));
    assert_eq!(b.me(&token).await.0, StatusCode::OK, "at the staleness");
    // ...and not a millisecond longer.
    a.advance(Duration::from_millis(1));
    assert_eq!(b.me(&token).await.0, StatusCode::UNAUTHORIZED);

    // The subscribers come back by themselves, and invalidations flow again.
    proxy.refuse(false);
    eventually("both instances resubscribed", RESUBSCRIBED, || async {
        subscribers() == 2
    })
    .await;
    let again = a.login("o_cut").await;
    assert_eq!(b.me(&again).await.0, StatusCode::OK);
    assert_eq!(a.post("/auth/logout", &again).await, StatusCode::NO_CONTENT);
    eventually(
        "the logout reaches B without any clock moving",
        PROPAGATION,
        || async { b.me(&again).await.0 == StatusCode::UNAUTHORIZED },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_used_on_one_instance_is_used_on_all() {
    if redis::machine_redis().await.is_none() {
        return;
    }
    let (url, prefix) = (redis::redis_url(), redis::random_prefix());
    let clock = ManualClock::starting_now();
    let a = first(
        store(&url, &prefix, redis::key("k1", 1), &clock).await,
        &clock,
    )
    .await;
    let b = fleet_of(&a, &url, &prefix, 1).await.remove(0);
    let login = a.web_login("o_state").await;
    // The callback lands on B (a load balancer's choice): B consumes the state.
    let callback = login.callback.replace(&a.base, &b.base);
    let done = b
        .http
        .get(&callback)
        .header("cookie", &login.binding)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::FOUND);
    // The same state with another code, on A: refused, though A never saw the state used.
    let reused = a
        .approve(&login.redirect_uri, &login.state, "o_state")
        .await;
    let refused = a
        .http
        .get(&reused)
        .header("cookie", &login.binding)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_state");
}

/// A TCP proxy to `to` that passes what the client sends at once and, once told to, holds back
/// what the server sends by a delay (a channel that is alive but late), or refuses new
/// connections (a channel that stays cut).
struct Proxy {
    addr: std::net::SocketAddr,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Set once something held back has been delivered: the late stream is flowing.
    late: std::sync::Arc<std::sync::atomic::AtomicBool>,
    refusing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    async fn start(to: std::net::SocketAddr) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let delay_ms = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let delay = std::sync::Arc::clone(&delay_ms);
        let late = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let delivered_late = std::sync::Arc::clone(&late);
        let refusing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let refuse = std::sync::Arc::clone(&refusing);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if refuse.load(std::sync::atomic::Ordering::Acquire) {
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(to).await else {
                    continue;
                };
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                });
                let (held, mut due) = tokio::sync::mpsc::unbounded_channel();
                let delay = std::sync::Arc::clone(&delay);
                tokio::spawn(async move {
                    let mut buffer = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = from_server.read(&mut buffer).await {
                        let by = delay.load(std::sync::atomic::Ordering::Acquire);
                        let at = tokio::time::Instant::now() + Duration::from_millis(by);
                        if held.send((at, by > 0, buffer[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                });
                let delivered_late = std::sync::Arc::clone(&delivered_late);
                tokio::spawn(async move {
                    while let Some((at, delayed, bytes)) = due.recv().await {
                        tokio::time::sleep_until(at).await;
                        if to_client.write_all(&bytes).await.is_err() {
                            return;
                        }
                        if delayed {
                            delivered_late.store(true, std::sync::atomic::Ordering::Release);
                        }
                    }
                });
            }
        });
        Self {
            addr,
            delay_ms,
            late,
            refusing,
        }
    }

    /// Whether new connections are closed at once.
    fn refuse(&self, refuse: bool) {
        self.refusing
            .store(refuse, std::sync::atomic::Ordering::Release);
    }

    fn delivering_late(&self) -> bool {
        self.late.load(std::sync::atomic::Ordering::Acquire)
    }

    fn delay(&self, by: Duration) {
        self.delay_ms
            .store(by.as_millis() as u64, std::sync::atomic::Ordering::Release);
    }
}

/// The address of a `redis://host:port` URL.
fn redis_addr(url: &str) -> std::net::SocketAddr {
    let url = reqwest::Url::parse(url).unwrap();
    let host = url.host_str().unwrap();
    let port = url.port().unwrap_or(6379);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .unwrap()
        .next()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_invalidation_stream_still_bounds_staleness() {
    if redis::machine_redis().await.is_none() {
        return;
    }
    let (url, prefix) = (redis::redis_url(), redis::random_prefix());
    let clock = ManualClock::starting_now();
    let shared: SharedClock = std::sync::Arc::new(clock.clone());
    let builder = || {
        RedisStore::builder(&url, redis::key("k1", 1))
            .unwrap()
            .prefix(&prefix)
    };
    let a = first(
        common::fleet_store_with(builder(), shared.clone()).await,
        &clock,
    )
    .await;
    // B hears the invalidations through the proxy; its commands go to Redis directly.
    let proxy = Proxy::start(redis_addr(&url)).await;
    let proxied = format!("redis://{}", proxy.addr);
    let b_store =
        common::fleet_store_with(builder().invalidations_from(&proxied).unwrap(), shared).await;
    let b = start_instance(Instance::sharing(&a.mock, &a.clock, &a.accounts), b_store).await;

    // From here the instances' clock follows real time, in which the channel is late.
    let (started, at_start) = (std::time::Instant::now(), a.clock.now());
    let real_time = {
        let clock = a.clock.clone();
        tokio::spawn(async move {
            loop {
                clock.set(at_start + started.elapsed());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    // B's channel stays up, but everything on it arrives 5 s late, steadily.
    proxy.delay(Duration::from_secs(5));
    while !proxy.delivering_late() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the late stream never flowed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let token = a.login("o_late").await;
    assert_eq!(b.me(&token).await.0, StatusCode::OK, "B holds a local copy");
    assert_eq!(a.post("/auth/logout", &token).await, StatusCode::NO_CONTENT);
    // The bound, and the time a request takes on a loaded machine.
    let bound = MAX_STALENESS + Duration::from_millis(500);
    eventually("the logout on A is refused on B", bound, || async {
        b.me(&token).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    real_time.abort();
}

/// Break to see it fail: `delete_user` in `store.rs` not publishing the user (`u:<user>`): B
/// then serves its thousand copies until the staleness runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_all_of_a_thousand_sessions_is_refused_on_the_other_instance_at_once() {
    if redis::machine_redis().await.is_none() {
        return;
    }
    let (url, prefix) = (redis::redis_url(), redis::random_prefix());
    let clock = ManualClock::starting_now();
    let shared: SharedClock = std::sync::Arc::new(clock.clone());
    let builder = || {
        RedisStore::builder(&url, redis::key("k1", 1))
            .unwrap()
            .prefix(&prefix)
            .max_sessions_per_user(2_000)
    };
    let a = first(
        common::fleet_store_with(builder(), shared.clone()).await,
        &clock,
    )
    .await;
    let b_store = common::fleet_store_with(builder(), shared).await;
    let b = start_instance(Instance::sharing(&a.mock, &a.clock, &a.accounts), b_store).await;

    let token = a.login("o_bulk").await;
    let user = a.me(&token).await.1["user_id"].as_str().unwrap().to_owned();
    // 999 more sessions of the user, each with a local copy on B.
    let (on_a, on_b) = (a.auth.sessions().store(), b.auth.sessions().store());
    let mut sids = Vec::new();
    for i in 0..999 {
        let mut record = wechat_login::sessions::conformance::sample_record(
            &clock,
            a.appid(wechat_login::middleware::AppKind::MobileApp),
            &format!("o_bulk_{i}"),
        );
        record.user_id = UserId::new(user.clone()).unwrap();
        sids.push(on_a.insert(record).await.unwrap().sid);
    }
    for sid in &sids {
        assert!(on_b.get(sid).await.unwrap().is_some());
    }
    assert_eq!(b.me(&token).await.0, StatusCode::OK);

    assert_eq!(
        a.post("/auth/logout/all", &token).await,
        StatusCode::NO_CONTENT
    );
    let served_on_b = || {
        let now = clock.now();
        sids.iter()
            .filter(|sid| matches!(on_b.get_now(sid, now), Some(Ok(Some(_)))))
            .count()
    };
    eventually("every session refused on B", PROPAGATION, || async {
        served_on_b() == 0 && b.me(&token).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;
    for sid in sids.iter().step_by(100) {
        assert!(on_b.get(sid).await.unwrap().is_none(), "read again: ended");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_ids_are_never_given_to_a_second_person_across_restarts_and_instances() {
    if redis::machine_redis().await.is_none() {
        return;
    }
    let (url, prefix) = (redis::redis_url(), redis::random_prefix());
    let clock = ManualClock::starting_now();
    // The worst placement: each instance's accounts in its own memory, lost at a restart.
    let a = first(
        store(&url, &prefix, redis::key("k1", 1), &clock).await,
        &clock,
    )
    .await;
    let own_accounts = || common::app::Accounts::open(None).unwrap();
    let b_store = store(&url, &prefix, redis::key("k1", 1), &clock).await;
    let b = start_instance(
        Instance::sharing(&a.mock, &a.clock, &own_accounts()),
        b_store,
    )
    .await;
    let mut seen = Vec::new();
    let first_token = a.login("o_first").await;
    seen.push(a.me(&first_token).await.1["user_id"].clone());
    let second_token = b.login("o_second").await;
    seen.push(b.me(&second_token).await.1["user_id"].clone());
    // A restarts with its memory gone, and a third person logs in there.
    let mock = a.mock.clone();
    a.stop().await;
    let a2_store = store(&url, &prefix, redis::key("k1", 1), &clock).await;
    let a2 = start_instance(Instance::sharing(&mock, &clock, &own_accounts()), a2_store).await;
    let third_token = a2.login("o_third").await;
    seen.push(a2.me(&third_token).await.1["user_id"].clone());
    let mut distinct = seen.clone();
    distinct.sort_by_key(|v| v.to_string());
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "three people, three ids: {seen:?}");
    // The third person's logout-all ends only their own sessions.
    assert_eq!(
        a2.post("/auth/logout/all", &third_token).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(a2.me(&first_token).await.0, StatusCode::OK);
    assert_eq!(b.me(&second_token).await.0, StatusCode::OK);

    // And the example refuses that placement: sessions in Redis need shared accounts.
    let refused = common::app::accounts::check_placement(true, None).unwrap_err();
    assert!(refused.contains("ACCOUNTS_DB"), "{refused}");
    assert!(common::app::accounts::check_placement(true, Some("accounts.db".as_ref())).is_ok());
    assert!(common::app::accounts::check_placement(false, None).is_ok());
}
