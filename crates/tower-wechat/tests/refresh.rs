//! End to end, keeping WeChat's authorization: transparent refresh (once for a thousand
//! requests), a revoked grant, transient upstream failures that never log anyone out, and how
//! refresh failures and the profile's scope look over HTTP.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{HOUR, start};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wechat_mock::{Endpoint, Fault};

#[tokio::test]
async fn an_expired_access_token_is_refreshed_transparently() {
    let s = start().await;
    let token = s.login("o_carol").await;
    s.advance(2 * HOUR + Duration::from_secs(1));
    let (status, me) = s.me(&token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["openid"], "o_carol");
    assert_eq!(s.mock.calls(Endpoint::RefreshToken), 1);
    s.me(&token).await;
    assert_eq!(
        s.mock.calls(Endpoint::RefreshToken),
        1,
        "refreshed once, then fresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_on_an_expired_session_cause_one_refresh() {
    let s = Arc::new(start().await);
    let token = Arc::new(s.login("o_dave").await);
    s.advance(2 * HOUR + Duration::from_secs(1));
    let mut requests = Vec::new();
    for _ in 0..1_000 {
        let (s, token) = (Arc::clone(&s), Arc::clone(&token));
        requests.push(tokio::spawn(async move { s.me(&token).await.0 }));
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(s.mock.calls(Endpoint::RefreshToken), 1);
}

#[tokio::test]
async fn a_revoked_grant_answers_reauth_required() {
    let s = start().await;
    let token = s.login("o_erin").await;
    s.mock.revoke("o_erin");
    s.advance(2 * HOUR);
    let response = s.get("/me", &token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "reauth_required");
    assert_eq!(s.me(&token).await.1["error"], "session_expired");
}

#[tokio::test]
async fn a_transient_upstream_failure_does_not_log_the_user_out() {
    let s = start().await;
    let token = s.login("o_frank").await;
    s.advance(2 * HOUR);
    s.mock
        .inject(Endpoint::RefreshToken, Fault::ErrCode(-1), 10);
    let response = s.get("/me", &token).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "upstream_unavailable");
    s.mock.clear_faults();
    s.advance(Duration::from_secs(61));
    let (status, _) = s.me(&token).await;
    assert_eq!(status, StatusCode::OK, "the session survived the outage");
}

/// How refresh failures and the profile's scope look over HTTP: status, code, `Retry-After`.
#[tokio::test]
async fn refresh_failures_and_scope_map_to_their_http_answers() {
    let s = start().await;
    let cases: [(i64, u16, &str, Option<&str>); 4] = [
        (40013, 500, "misconfigured", None),
        (50002, 403, "access_denied", None),
        (-1, 503, "upstream_unavailable", Some("5")),
        (45011, 503, "upstream_unavailable", Some("60")),
    ];
    for (errcode, status, error, retry_after) in cases {
        let token = s.login(&format!("o_map{}", errcode.abs())).await;
        s.advance(2 * HOUR);
        s.mock
            .inject(Endpoint::RefreshToken, Fault::ErrCode(errcode), 10);
        let response = s.get("/me", &token).await;
        assert_eq!(response.status().as_u16(), status, "{errcode}");
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            retry_after,
            "{errcode}"
        );
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"],
            error,
            "{errcode}"
        );
        s.mock.clear_faults();
    }

    // A snsapi_base grant asking for the profile.
    let code = s.mock.mint_code(wechat_mock::MockGrant {
        openid: Some("o_base".into()),
        scope: Some("snsapi_base".into()),
        ..Default::default()
    });
    let (status, body) = s
        .post_login("/auth/wechat/login", json!({ "code": code }).to_string())
        .await;
    assert_eq!(status, StatusCode::OK);
    let response = s.get("/me/profile", body["token"].as_str().unwrap()).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "scope_insufficient"
    );
}
