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
use wechat_mock::MockConfig;

/// A store on `url` under `prefix`, sealed with `key`, on `clock`, with its own connection.
async fn store(url: &str, prefix: &str, key: SealingKey, clock: &ManualClock) -> RedisStore {
    RedisStore::builder(url, key)
        .unwrap()
        .prefix(prefix)
        .clock(std::sync::Arc::new(clock.clone()))
        .command_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect("connect to Redis")
}

/// The first instance of a fleet: it brings the (fake) WeChat the others share.
async fn first(store: RedisStore) -> Server<RedisStore> {
    let instance = Instance {
        upstream: common::Upstream::Sandbox(MockConfig::default()),
        clock: ManualClock::starting_now(),
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
    let a = first(store(&url, &prefix, redis::key("k1", 1), &clock).await).await;
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

    // Log out on B: refused on A at once.
    assert_eq!(b.post("/auth/logout", &token).await, StatusCode::NO_CONTENT);
    let (status, body) = a.me(&token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "session_expired");

    // Logout-all on A ends the user's sessions made on B too.
    let phone = b.login("o_many").await;
    let laptop = a.login("o_many").await;
    assert_eq!(
        a.post("/auth/logout/all", &laptop).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(b.me(&phone).await.0, StatusCode::UNAUTHORIZED);

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
    let a = first(store(&url, &prefix, redis::key("k1", 1), &clock).await).await;
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
    let store = RedisStore::builder(&server.url(), redis::key("k1", 1))
        .unwrap()
        .prefix(prefix)
        .clock(std::sync::Arc::new(clock.clone()))
        .command_timeout(Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let a = first(store).await;
    let token = a.login("o_outage").await;
    let (_, before) = a.me(&token).await;

    server.signal("STOP");
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
