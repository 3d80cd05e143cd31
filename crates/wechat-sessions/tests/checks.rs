//! Checking grants with WeChat (`/sns/auth`) and calls on the user's behalf: checks once per
//! interval, grace and fail-closed, userinfo's refresh-and-retry.

use std::time::Duration;

use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant};
use wechat_oauth::Lang;
use wechat_sessions::{CallError, Clock, GracePolicy, SessionConfig, SessionError, SessionStore};

mod common;

use common::*;

#[tokio::test]
async fn a_due_check_confirms_the_grant_once_per_interval() {
    let h = harness_with(MockConfig::default(), |b| {
        b.config(SessionConfig::default().check_interval(Some(Duration::from_secs(300))))
    })
    .await;
    let session = h.login().await;
    h.cache.session(&session.sid).await.unwrap();
    assert_eq!(
        h.mock.calls(Endpoint::Auth),
        0,
        "just confirmed by the login"
    );
    h.advance(Duration::from_secs(301));
    for _ in 0..20 {
        h.cache.session(&session.sid).await.unwrap();
    }
    assert_eq!(h.mock.calls(Endpoint::Auth), 1, "one check per interval");
    let record = h.cache.store().get(&session.sid).await.unwrap().unwrap();
    assert_eq!(record.confirmed_at, h.clock.now());
}

#[tokio::test]
async fn a_check_that_finds_the_grant_revoked_ends_the_session() {
    let h = harness_with(MockConfig::default(), |b| {
        b.config(SessionConfig::default().check_interval(Some(Duration::from_secs(300))))
    })
    .await;
    let session = h.login().await;
    h.mock.revoke(session.openid.as_str());
    h.advance(Duration::from_secs(301));
    // /sns/auth says the token is invalid -> refresh -> 40030: the grant is gone.
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::Reauthorize { .. })
    ));
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 1);
}

#[tokio::test]
async fn grace_serves_through_failed_checks_until_it_runs_out() {
    let h = harness_with(MockConfig::default(), |b| {
        b.config(
            SessionConfig::default()
                .check_interval(Some(Duration::from_secs(300)))
                .grace(GracePolicy::ServeFor(Duration::from_secs(900)))
                // Keep the access token out of its refresh window for this test.
                .refresh_window(Duration::from_secs(60), 0.0),
        )
    })
    .await;
    let session = h.login().await;
    h.advance(Duration::from_secs(301));
    h.mock.inject(Endpoint::Auth, Fault::ErrCode(-1), 3);
    h.cache.session(&session.sid).await.expect("within grace");
    h.advance(Duration::from_secs(600));
    h.mock.inject(Endpoint::Auth, Fault::HttpStatus(503), 3);
    assert!(
        matches!(
            h.cache.session(&session.sid).await,
            Err(SessionError::Unavailable { .. })
        ),
        "grace ran out 900 s after the last confirmation"
    );
    assert!(
        h.cache.store().get(&session.sid).await.unwrap().is_some(),
        "not logged out"
    );
}

#[tokio::test]
async fn fail_closed_answers_unavailable_at_the_first_failed_check() {
    let h = harness_with(MockConfig::default(), |b| {
        b.config(
            SessionConfig::default()
                .check_interval(Some(Duration::from_secs(300)))
                .grace(GracePolicy::FailClosed),
        )
    })
    .await;
    let session = h.login().await;
    h.advance(Duration::from_secs(301));
    h.mock.inject(Endpoint::Auth, Fault::ErrCode(-1), 3);
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn userinfo_refreshes_and_retries_once_on_an_invalid_token() {
    let h = harness().await;
    let session = h.login().await;
    h.mock.inject(Endpoint::UserInfo, Fault::ErrCode(40001), 1);
    let profile = h
        .cache
        .userinfo(&session.sid, Lang::En)
        .await
        .expect("profile");
    assert_eq!(profile.openid, session.openid);
    assert_eq!(h.mock.calls(Endpoint::UserInfo), 2);
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 1);

    h.mock.inject(Endpoint::UserInfo, Fault::ErrCode(42001), 2);
    assert!(
        matches!(
            h.cache.userinfo(&session.sid, Lang::En).await,
            Err(CallError::Upstream(_))
        ),
        "only one retry"
    );
}

#[tokio::test]
async fn userinfo_is_not_called_for_base_grants() {
    let h = harness().await;
    let session = h
        .login_as(MockGrant {
            scope: Some("snsapi_base".into()),
            ..Default::default()
        })
        .await;
    assert!(matches!(
        h.cache.userinfo(&session.sid, Lang::ZhCn).await,
        Err(CallError::NotPermitted)
    ));
    assert_eq!(h.mock.calls(Endpoint::UserInfo), 0);
}
