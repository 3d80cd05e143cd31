//! Fault injection: every kind, FIFO order, counting of faulted calls, clearing.

mod common;

use std::time::Duration;

use common::{Harness, user};
use wechat_mock::{Endpoint, Fault, MockGrant};

#[tokio::test]
async fn errcode_fault_answers_a_wechat_error_then_recovers() {
    let h = Harness::start().await;
    let login = h.login(user("o_f")).await;
    h.mock.inject(Endpoint::RefreshToken, Fault::ErrCode(-1), 2);
    h.refresh(&login.refresh_token).await.assert_error(-1);
    h.refresh(&login.refresh_token).await.assert_error(-1);
    h.refresh(&login.refresh_token).await.success();
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 3);
}

#[tokio::test]
async fn http_status_fault() {
    let h = Harness::start().await;
    h.mock.inject(Endpoint::Auth, Fault::HttpStatus(503), 1);
    let answer = h.auth("t", "o").await;
    assert_eq!(answer.status, 503);
    assert!(!answer.body.is_empty());
    assert_eq!(h.mock.stats()["auth"], 1);
}

#[tokio::test]
async fn body_fault_answers_the_raw_body() {
    let h = Harness::start().await;
    h.mock.inject(
        Endpoint::UserInfo,
        Fault::Body("<html>502 Bad Gateway</html>".into()),
        1,
    );
    h.mock
        .inject(Endpoint::UserInfo, Fault::Body(String::new()), 1);
    h.mock
        .inject(Endpoint::UserInfo, Fault::Body("{\"openid\":".into()), 1);
    for expected in ["<html>502 Bad Gateway</html>", "", "{\"openid\":"] {
        let answer = h.userinfo("t", "o").await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.text(), expected);
    }
    h.userinfo("t", "o").await.assert_error(40001);
    assert_eq!(h.mock.calls(Endpoint::UserInfo), 4);
}

#[tokio::test]
async fn delay_fault_still_answers_normally() {
    let h = Harness::start().await;
    let code = h.mock.mint_code(MockGrant::default());
    let delay = Duration::from_millis(200);
    h.mock.inject(Endpoint::AccessToken, Fault::Delay(delay), 1);
    let started = std::time::Instant::now();
    h.exchange(&code).await.success();
    // A lower bound only: the answer cannot come before the fake has waited (a slow machine can
    // only make it later).
    assert!(started.elapsed() >= delay, "the answer was delayed");
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 1);
}

#[tokio::test]
async fn faults_queue_in_order_per_endpoint() {
    let h = Harness::start().await;
    h.mock
        .inject(Endpoint::JsCode2Session, Fault::ErrCode(45011), 1);
    h.mock
        .inject(Endpoint::JsCode2Session, Fault::ErrCode(40226), 1);
    h.mock.inject(Endpoint::Auth, Fault::ErrCode(-1), 1);
    h.jscode2session("c").await.assert_error(45011);
    h.jscode2session("c").await.assert_error(40226);
    h.jscode2session("c").await.assert_error(40029);
    h.auth("t", "o").await.assert_error(-1);
}

#[tokio::test]
async fn a_faulted_exchange_does_not_consume_the_code() {
    let h = Harness::start().await;
    let code = h.mock.mint_code(MockGrant::default());
    h.mock.inject(Endpoint::AccessToken, Fault::ErrCode(-1), 1);
    h.exchange(&code).await.assert_error(-1);
    h.exchange(&code).await.success();
}

#[tokio::test]
async fn browser_pages_can_be_faulted_too() {
    let h = Harness::start().await;
    h.mock
        .inject(Endpoint::QrConnect, Fault::HttpStatus(502), 1);
    let answer = h.get("/connect/qrconnect", &[]).await;
    assert_eq!(answer.status, 502);
    assert_eq!(h.mock.calls(Endpoint::QrConnect), 1);
}

#[tokio::test]
async fn clear_faults_drops_the_queue() {
    let h = Harness::start().await;
    h.mock.inject(Endpoint::Auth, Fault::ErrCode(-1), 5);
    h.mock.clear_faults();
    h.auth("t", "o").await.assert_error(40001);
}

#[tokio::test]
async fn stats_count_every_endpoint() {
    let h = Harness::start().await;
    let stats = h.mock.stats();
    assert_eq!(stats.len(), Endpoint::ALL.len());
    assert!(stats.values().all(|&calls| calls == 0));

    let login = h.login(user("o_s")).await;
    h.refresh(&login.refresh_token).await.success();
    h.auth(&login.access_token, "o_s").await;
    h.auth(&login.access_token, "o_s").await;
    h.userinfo(&login.access_token, "o_s").await.success();
    h.jscode2session("x").await;
    h.get("/connect/oauth2/authorize", &[]).await;

    let stats = h.mock.stats();
    for (name, calls) in [
        ("access_token", 1),
        ("refresh_token", 1),
        ("auth", 2),
        ("userinfo", 1),
        ("jscode2session", 1),
        ("qrconnect", 0),
        ("authorize", 1),
    ] {
        assert_eq!(stats[name], calls, "{name}");
        assert_eq!(h.mock.calls(name.parse().unwrap()), calls, "{name}");
    }
}

#[test]
fn endpoint_names_round_trip() {
    for endpoint in Endpoint::ALL {
        assert_eq!(endpoint.name().parse::<Endpoint>(), Ok(endpoint));
    }
    assert!("tokens".parse::<Endpoint>().is_err());
}
