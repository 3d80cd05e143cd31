//! `GET /metrics` of a fleet: two instances of the example app on Redis, each with a local cache.
//! After logins, reads on both instances, a logout heard across the fleet, a refresh that many
//! requests share and a phone number asked on both instances, the fleet's series have moved —
//! the local cache, the Redis store, the coalesced flights and the app access token (fetched by
//! one instance, adopted by the other) — and no label carries a session id, an openid, a
//! token or a code. A test binary of its own: the recorder is the process's.

mod common;

use common::redis;

use std::time::Duration;

use common::{Instance, app, start_instance};
use reqwest::StatusCode;
use wechat_login::middleware::AppKind;
use wechat_login::oauth::ManualClock;
use wechat_mock::{Endpoint, Fault};

/// The value of the sample `name{labels}` (labels in Prometheus's order), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// An instance's store: Redis under `prefix`, with a local cache, on `clock`.
async fn store(prefix: &str, clock: &ManualClock) -> common::FleetStore {
    common::fleet_store(&redis::redis_url(), prefix, redis::key("k1", 1), clock).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_series_move_and_no_label_carries_a_session_id() {
    if redis::machine_redis().await.is_none() {
        return;
    }
    // Before any store is built: the local cache registers its counters when it is.
    let metrics = app::Metrics::install().unwrap();
    let prefix = redis::random_prefix();
    let clock = ManualClock::starting_now();
    let a =
        common::first_of_fleet(store(&prefix, &clock).await, &clock, Some(metrics.clone())).await;
    let b_store = store(&prefix, &a.clock).await;
    let b = start_instance(Instance::sharing(&a.mock, &a.clock, &a.accounts), b_store).await;

    // A login on A, read on B twice (a miss, then a hit), ended on A and heard by B.
    let token = a.login("o_fleet_metrics").await;
    let (_, me) = b.me(&token).await;
    let (sid, user_id) = (me["session_id"].clone(), me["user_id"].clone());
    assert_eq!(b.me(&token).await.0, StatusCode::OK);
    assert_eq!(a.post("/auth/logout", &token).await, StatusCode::NO_CONTENT);
    let started = std::time::Instant::now();
    while b.me(&token).await.0 != StatusCode::UNAUTHORIZED {
        assert!(started.elapsed() < Duration::from_secs(5), "B never heard");
    }

    // Another session's refresh, asked for by twenty requests at once on A while WeChat is slow.
    let kept = a.login("o_fleet_metrics").await;
    a.advance(common::HOUR * 2);
    a.mock.inject(
        Endpoint::RefreshToken,
        Fault::Delay(Duration::from_millis(300)),
        1,
    );
    let answers = futures::future::join_all((0..20).map(|_| a.me(&kept))).await;
    assert!(answers.iter().all(|(status, _)| *status == StatusCode::OK));

    // A Mini Program user's phone number on both instances: the app token is fetched once.
    let mini = a
        .json_login(AppKind::MiniProgram, "o_fleet_phone", None)
        .await
        .unwrap();
    let appid = a.appid(AppKind::MiniProgram).to_owned();
    for instance in [&a, &b] {
        let code = a.mock.mint_phone_code(&appid, "13800138000", "86");
        let phone = instance
            .http
            .post(format!("{}/miniprogram/phone", instance.base))
            .bearer_auth(&mini)
            .json(&serde_json::json!({ "code": code }))
            .send()
            .await
            .unwrap();
        assert_eq!(phone.status(), StatusCode::OK);
    }

    let text = a
        .http
        .get(format!("{}/metrics", a.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at_least = |series: &str, least: f64| {
        let value = sample(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
        assert!(value >= least, "{series} = {value}, expected ≥ {least}");
    };
    // The local caches: B's miss and hit, and the logout B heard.
    at_least(r#"wechat_login_local_cache_total{result="miss"}"#, 1.0);
    at_least(r#"wechat_login_local_cache_total{result="hit"}"#, 1.0);
    at_least(
        r#"wechat_login_local_cache_total{result="invalidated"}"#,
        1.0,
    );
    // The Redis store's operations, each with its outcome, and their durations.
    for op in ["get", "insert", "delete", "compare_and_set", "try_lease"] {
        at_least(
            &format!(
                r#"wechat_login_store_operations_total{{backend="redis",op="{op}",outcome="ok"}}"#
            ),
            1.0,
        );
    }
    assert!(
        text.contains(
            r#"wechat_login_store_operation_duration_seconds_count{backend="redis",op="get"}"#
        ) || text
            .contains(r#"wechat_login_store_operation_duration_seconds{backend="redis",op="get""#),
        "{text}"
    );
    // The twenty requests shared one refresh.
    at_least(
        r#"wechat_login_flights_coalesced_total{kind="session"}"#,
        1.0,
    );
    assert_eq!(a.mock.calls(Endpoint::RefreshToken), 1);
    // The app token: fetched by one instance, adopted from Redis by the other.
    at_least(
        &format!(r#"wechat_login_app_token_refreshes_total{{appid="{appid}",outcome="fetched"}}"#),
        1.0,
    );
    at_least(
        &format!(r#"wechat_login_app_token_refreshes_total{{appid="{appid}",outcome="adopted"}}"#),
        1.0,
    );
    assert_eq!(a.mock.calls(Endpoint::StableToken), 1, "one for the fleet");

    // No label names a session, a user or a credential.
    let forbidden = [
        sid.as_str().unwrap(),
        user_id.as_str().unwrap(),
        "o_fleet_metrics",
        "o_fleet_phone",
        token.as_str(),
        kept.as_str(),
        mini.as_str(),
        "13800138000",
    ];
    for secret in forbidden {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
}
