//! The example app on Redis, end to end: several instances share sessions, a logout on one is
//! refused on the others at once, a restart keeps every session, and Redis stopping mid-traffic
//! or a record sealed under a key no instance has answers 503 — never a logout.

mod common;

#[path = "../crates/wechat-redis-store/tests/common/mod.rs"]
mod redis;

use std::time::Duration;

use common::{Instance, Server, start_instance};
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use wechat_login::oauth::ManualClock;
use wechat_login::redis_store::{RedisStore, SealingKey};
use wechat_login::token_cache::CachedStore;
use wechat_mock::MockConfig;

/// What an instance of the example app keeps sessions in with `REDIS_URL`.
type Store = CachedStore<RedisStore>;

/// A store on `url` under `prefix`, sealed with `key`, on `clock`, with its own connections
/// and local cache, as an instance of the example app has.
async fn store(url: &str, prefix: &str, key: SealingKey, clock: &ManualClock) -> Store {
    let clock: wechat_login::oauth::SharedClock = std::sync::Arc::new(clock.clone());
    let shared = RedisStore::builder(url, key)
        .unwrap()
        .prefix(prefix)
        .clock(clock.clone())
        .command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect("connect to Redis");
    CachedStore::builder(shared)
        .clock(clock)
        .max_staleness(MAX_STALENESS)
        .build()
        .await
        .expect("subscribe to invalidations")
}

const MAX_STALENESS: Duration = Duration::from_secs(2);

/// Polls `refused` until it holds, for at most 10 s of real time: invalidations travel through
/// Redis, so another instance learns of a write a moment later.
async fn eventually<F: Future<Output = bool>>(what: &str, refused: impl Fn() -> F) {
    for _ in 0..1_000 {
        if refused().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// The first instance of a fleet: it brings the (fake) WeChat the others share.
async fn first(store: Store, clock: &ManualClock) -> Server<Store> {
    let instance = Instance {
        upstream: common::Upstream::Sandbox(MockConfig::default()),
        clock: clock.clone(),
        login_limits: Default::default(),
        serve_limits: Default::default(),
    };
    start_instance(instance, store).await
}

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
    let b = start_instance(Instance::sharing(&a.mock, &clock), b_store).await;

    // Log in on A, use the session on B.
    let token = a.login("o_fleet").await;
    let (status, on_a) = a.me(&token).await;
    assert_eq!(status, StatusCode::OK);
    let (status, on_b) = b.me(&token).await;
    assert_eq!(status, StatusCode::OK, "{on_b}");
    assert_eq!(on_a["session_id"], on_b["session_id"]);

    // Log out on B: refused on B at once, and on A as soon as the invalidation arrives.
    assert_eq!(b.post("/auth/logout", &token).await, StatusCode::NO_CONTENT);
    assert_eq!(b.me(&token).await.0, StatusCode::UNAUTHORIZED);
    eventually("the logout on B is refused on A", || async {
        a.me(&token).await.1["error"] == "session_expired"
    })
    .await;

    // Logout-all on A ends the user's sessions made on B too (B had them cached).
    let phone = b.login("o_many").await;
    let laptop = a.login("o_many").await;
    assert_eq!(b.me(&phone).await.0, StatusCode::OK);
    assert_eq!(
        a.post("/auth/logout/all", &laptop).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(a.me(&laptop).await.0, StatusCode::UNAUTHORIZED);
    eventually("logout-all on A is refused on B", || async {
        b.me(&phone).await.0 == StatusCode::UNAUTHORIZED
    })
    .await;

    // A deploy: A stops, a new A starts on the same Redis; the session lives on.
    let kept = a.login("o_kept").await;
    let mock = a.mock.clone();
    a.stop().await;
    let a2_store = store(&url, &prefix, redis::key("k1", 1), &clock).await;
    let a2 = start_instance(Instance::sharing(&mock, &clock), a2_store).await;
    let (status, body) = a2.me(&kept).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["openid"], "o_kept");
}

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
    let b = start_instance(Instance::sharing(&a.mock, &clock), b_store).await;
    let token = a.login("o_sealed").await;
    let response = b.get("/me", &token).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(RETRY_AFTER));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "store_unavailable");
    assert_eq!(a.me(&token).await.0, StatusCode::OK, "not deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_traffic_answers_503_and_loses_nothing() {
    let server = redis::RedisServer::start(&[]).await;
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
