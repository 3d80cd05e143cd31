//! `GET /metrics` on the example server: after a login, a replayed code, a forged token and a
//! refresh the counters have moved, the gauge counts the open session, and no label carries
//! a session id, a user id, an openid, a token or a code.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{SECRET, app};
use serde_json::{Value, json};
use wechat_login::middleware::LoginLimits;
use wechat_login::oauth::ManualClock;
use wechat_mock::MockConfig;

/// The value of the sample `name{labels}` (labels in Prometheus's order), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_counters_move_and_no_label_carries_a_secret() {
    // This test binary's own recorder (one per process).
    let metrics = app::Metrics::install().unwrap();
    let clock = ManualClock::starting_now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let built = app::build(app::Config {
        upstream: app::Upstream::Sandbox(MockConfig::default()),
        session_secret: Some(SECRET.to_vec()),
        public_url: format!("http://{addr}"),
        clock: Arc::new(clock.clone()),
        login_limits: LoginLimits::default(),
        accounts_db: None,
        accounts: None,
        metrics: Some(metrics),
        official_account_server: None,
    })
    .await
    .unwrap();
    let mock = built.sandbox.clone().unwrap();
    clock.set(mock.now());
    tokio::spawn(wechat_login::serve(listener, built.router).into_future());
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    // A login, the same code from another client (refused), a forged token.
    let code: Value = http
        .get(format!("{base}/sandbox/code?openid=o_metrics_user"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = code["code"].as_str().unwrap().to_owned();
    let login = |body: Value| {
        let http = http.clone();
        let url = format!("{base}/auth/wechat/login");
        async move { http.post(url).json(&body).send().await.unwrap() }
    };
    let first: Value = login(json!({ "code": code })).await.json().await.unwrap();
    let token = first["token"].as_str().unwrap().to_owned();
    assert_eq!(login(json!({ "code": code })).await.status(), 401);
    let forged = http
        .get(format!("{base}/me"))
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // Two hours later the access token is refreshed on the next request.
    clock.advance(Duration::from_secs(7200));
    mock.advance(Duration::from_secs(7200));
    let me = http
        .get(format!("{base}/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    let (sid, user_id) = (
        me["session_id"].as_str().unwrap(),
        me["user_id"].as_str().unwrap(),
    );

    let scraped = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(
        scraped.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = scraped.text().await.unwrap();
    let appid = mock.appid();
    for (series, expected) in [
        (
            format!(r#"wechat_login_logins_total{{appid="{appid}",flow="code",outcome="logged_in"}}"#),
            1.0,
        ),
        (
            r#"wechat_login_code_replays_refused_total{flow="code"}"#.to_owned(),
            1.0,
        ),
        (
            r#"wechat_login_rejections_total{code="invalid_token"}"#.to_owned(),
            1.0,
        ),
        (
            r#"wechat_login_session_maintenance_total{call="refresh",outcome="refreshed",class="none"}"#
                .to_owned(),
            1.0,
        ),
        (
            r#"wechat_upstream_requests_total{endpoint="access_token",outcome="ok"}"#.to_owned(),
            1.0,
        ),
        (
            r#"wechat_upstream_requests_total{endpoint="refresh_token",outcome="ok"}"#.to_owned(),
            1.0,
        ),
        ("wechat_login_sessions_open".to_owned(), 1.0),
    ] {
        assert_eq!(sample(&text, &series), Some(expected), "{series} in:\n{text}");
    }
    assert!(
        text.contains("wechat_upstream_request_duration_seconds"),
        "{text}"
    );
    for secret in [
        "o_metrics_user",
        sid,
        user_id,
        token.as_str(),
        code.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret} in the metrics");
    }
}
