//! The hardened listener's promise to the login limits: [`serve`] records every peer's
//! address, so the per-client limit applies as written; and a server that records none is
//! told so once, instead of silently running with the global limit alone.

mod common;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use tower::ServiceExt;
use tower_wechat::{KeyRing, LoginEndpoints, LoginLimits, SigningKey, WeChatAuthLayer, serve};
use wechat_login_test_support::Captured;
use wechat_mock::{MockConfig, MockWeChat};

/// One failed exchange per client and no global limit: a second junk code from the same
/// client is refused (429) only if the endpoints can tell who the client is.
fn one_failure_per_client() -> LoginLimits {
    LoginLimits::default().failures(1, 0, Duration::from_secs(60))
}

async fn app() -> (Router, MockWeChat) {
    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    let keys = KeyRing::new(SigningKey::hs256("k1", &[7; 32]).unwrap());
    let layer = WeChatAuthLayer::builder(common::client(&mock, mock.appid(), mock.secret()), keys)
        .login_limits(one_failure_per_client())
        .build()
        .unwrap();
    let router = LoginEndpoints::new(&layer).router().layer(layer);
    (router, mock)
}

fn junk_login() -> Request<Body> {
    Request::post("/auth/wechat/login")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"code":"not-a-code"}"#))
        .unwrap()
}

/// Breaks if `serve` stops inserting `ConnectInfo<SocketAddr>`: the second junk code would
/// get 401 again (no client key, no per-client limit).
#[tokio::test]
async fn serve_records_the_peer_so_the_per_client_limit_applies() {
    let (router, _mock) = app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, router).into_future());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let login = || {
        http.post(format!("{base}/auth/wechat/login"))
            .header("content-type", "application/json")
            .body(r#"{"code":"not-a-code"}"#)
            .send()
    };
    assert_eq!(login().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        login().await.unwrap().status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// Breaks if the warning is dropped (the limit would be off without a word) or repeated on
/// every login (a log flood an attacker controls).
#[tokio::test]
async fn a_server_without_peer_addresses_is_warned_once() {
    let (router, _mock) = app().await;
    let captured = Captured::install_global();
    for _ in 0..3 {
        let response = router.clone().oneshot(junk_login()).await.unwrap();
        // No client key: only the (absent) global limit applies, so each is refused by WeChat.
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let log = captured.text();
    assert_eq!(
        log.matches("per-client login limit is off").count(),
        1,
        "{log}"
    );
}
