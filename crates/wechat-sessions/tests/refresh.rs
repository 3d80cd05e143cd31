//! Refreshing a session's WeChat tokens against the fake WeChat, on a manual clock: one refresh
//! per expiry however many callers, jitter, grants that are gone, transient failures that keep
//! the session, rotated refresh tokens, cooldowns, the refresh horizon.

use std::collections::HashSet;
use std::time::Duration;

use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant};
use wechat_oauth::{AuthCode, ErrCode};
use wechat_sessions::{CasOutcome, Clock, Credentials, SessionConfig, SessionError, SessionStore};

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_callers_on_an_expired_session_cause_one_refresh() {
    let h = harness().await;
    let session = h.login().await;
    h.advance(EXPIRY + Duration::from_secs(1));

    let mut callers = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let (cache, sid) = (h.cache.clone(), session.sid);
        callers.push(tokio::spawn(async move { cache.session(&sid).await }));
    }
    let mut tokens = HashSet::new();
    for caller in callers {
        let record = caller
            .await
            .unwrap()
            .expect("every caller gets the session");
        tokens.insert(access_token(&record));
    }
    assert_eq!(
        h.mock.calls(Endpoint::RefreshToken),
        1,
        "exactly one upstream refresh"
    );
    assert_eq!(tokens.len(), 1, "every caller got the refreshed token");
    assert!(
        !tokens.contains(&access_token(&session)),
        "the expired token was replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expiring_together_refresh_once_each_spread_by_jitter() {
    let h = harness().await;
    let mut sids = Vec::new();
    for _ in 0..1_000 {
        sids.push(h.login().await.sid);
    }
    // Walk from well before the refresh window to past expiry, 30 s at a time, with every
    // session making a request at each step.
    h.advance(EXPIRY - Duration::from_secs(11 * 60));
    let mut per_step = Vec::new();
    let mut before = 0;
    for _ in 0..24 {
        h.advance(Duration::from_secs(30));
        for sid in &sids {
            h.cache.session(sid).await.expect("session served");
        }
        let now = h.mock.calls(Endpoint::RefreshToken);
        per_step.push(now - before);
        before = now;
    }
    assert_eq!(
        before, 1_000,
        "exactly one refresh per session: {per_step:?}"
    );
    let busy_steps = per_step.iter().filter(|&&n| n > 0).count();
    assert!(busy_steps >= 5, "refreshes spread over time: {per_step:?}");
    assert!(
        per_step.iter().all(|&n| n < 500),
        "no step refreshes most sessions at once: {per_step:?}"
    );
}

#[tokio::test]
async fn a_revoked_grant_deletes_the_session() {
    let h = harness().await;
    let session = h.login().await;
    h.mock.revoke(session.openid.as_str());
    h.advance(EXPIRY);
    match h.cache.session(&session.sid).await {
        Err(SessionError::Reauthorize { errcode }) => {
            assert_eq!(errcode, ErrCode::INVALID_REFRESH_TOKEN)
        }
        other => panic!("expected reauthorize, got {other:?}"),
    }
    assert!(h.cache.store().get(&session.sid).await.unwrap().is_none());
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::NotFound)
    ));
}

/// Every "grant gone" answer ends the session, from a refresh and from an `/sns/auth` check.
#[tokio::test]
async fn each_grant_gone_errcode_ends_the_session() {
    for errcode in [42002, 40030, 40003, 50001] {
        let h = harness().await;
        let session = h.login().await;
        h.advance(EXPIRY);
        h.mock
            .inject(Endpoint::RefreshToken, Fault::ErrCode(errcode), 1);
        match h.cache.session(&session.sid).await {
            Err(SessionError::Reauthorize { errcode: got }) => assert_eq!(got.0, errcode),
            other => panic!("refresh answered {errcode}: expected reauthorize, got {other:?}"),
        }
        assert!(
            h.cache.store().get(&session.sid).await.unwrap().is_none(),
            "{errcode}"
        );
    }
    let h = harness_with(MockConfig::default(), |b| {
        b.config(SessionConfig::default().check_interval(Some(Duration::from_secs(60))))
    })
    .await;
    let session = h.login().await;
    h.advance(Duration::from_secs(61));
    h.mock.inject(Endpoint::Auth, Fault::ErrCode(40003), 1);
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::Reauthorize { .. })
    ));
    assert!(
        h.cache.store().get(&session.sid).await.unwrap().is_none(),
        "check: 40003"
    );
}

#[tokio::test]
async fn system_busy_during_refresh_keeps_the_session_until_a_later_success() {
    let h = harness().await;
    let session = h.login().await;

    // Inside the refresh window, token still valid: WeChat busy through every retry.
    h.advance(EXPIRY - Duration::from_secs(60));
    h.mock.inject(Endpoint::RefreshToken, Fault::ErrCode(-1), 3);
    let served = h
        .cache
        .session(&session.sid)
        .await
        .expect("still-valid token served");
    assert_eq!(access_token(&served), access_token(&session));
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 3, "bounded retries");

    // During the cooldown the failure is reused: no upstream call per request.
    h.cache.session(&session.sid).await.unwrap();
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 3);

    // Expired and WeChat still failing: unavailable, but not logged out.
    h.advance(Duration::from_secs(120));
    h.mock
        .inject(Endpoint::RefreshToken, Fault::HttpStatus(502), 3);
    match h.cache.session(&session.sid).await {
        Err(SessionError::Unavailable { retry_after }) => assert!(retry_after > Duration::ZERO),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(
        h.cache.store().get(&session.sid).await.unwrap().is_some(),
        "record kept"
    );

    // WeChat recovers: the next request after the cooldown refreshes.
    h.advance(Duration::from_secs(60));
    let refreshed = h.cache.session(&session.sid).await.expect("later success");
    assert!(refreshed.access_token_remaining(h.clock.now()).unwrap() > HOUR);
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 7);
}

#[tokio::test]
async fn timeouts_and_bad_bodies_are_transient_too() {
    let h = harness().await;
    let session = h.login().await;
    h.advance(EXPIRY);
    h.mock.inject(
        Endpoint::RefreshToken,
        Fault::Body("<html>busy</html>".into()),
        1,
    );
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::Unavailable { .. })
    ));
    h.advance(Duration::from_secs(10));
    h.mock
        .inject(Endpoint::RefreshToken, Fault::ErrCode(45011), 1);
    match h.cache.session(&session.sid).await {
        Err(SessionError::Unavailable { retry_after }) => {
            assert_eq!(
                retry_after,
                Duration::from_secs(60),
                "quota: retry after a minute"
            )
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(h.cache.store().get(&session.sid).await.unwrap().is_some());
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_and_used() {
    let config = MockConfig {
        rotate_refresh_tokens: true,
        ..MockConfig::default()
    };
    let h = harness_with(config, |b| b).await;
    let session = h.login().await;
    h.advance(EXPIRY);
    let first = h.cache.session(&session.sid).await.unwrap();
    assert_ne!(
        refresh_token(&first),
        refresh_token(&session),
        "rotated token stored"
    );
    h.advance(EXPIRY);
    let second = h
        .cache
        .session(&session.sid)
        .await
        .expect("the rotated token works");
    assert_ne!(refresh_token(&second), refresh_token(&first));
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 2);
}

#[tokio::test]
async fn misconfigured_and_denied_refreshes_are_not_retried_per_request() {
    let h = harness().await;
    let session = h.login().await;
    h.advance(EXPIRY);

    h.mock
        .inject(Endpoint::RefreshToken, Fault::ErrCode(40013), 1);
    for _ in 0..3 {
        assert!(matches!(
            h.cache.session(&session.sid).await,
            Err(SessionError::Misconfigured { errcode }) if errcode == ErrCode::INVALID_APPID
        ));
    }
    assert_eq!(
        h.mock.calls(Endpoint::RefreshToken),
        1,
        "one call per minute"
    );
    h.advance(Duration::from_secs(59));
    assert!(h.cache.session(&session.sid).await.is_err());
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 1);
    h.advance(Duration::from_secs(1));
    h.cache
        .session(&session.sid)
        .await
        .expect("asked again after 60 s");
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 2);

    h.advance(EXPIRY);
    h.mock
        .inject(Endpoint::RefreshToken, Fault::ErrCode(50002), 1);
    for _ in 0..3 {
        assert!(matches!(
            h.cache.session(&session.sid).await,
            Err(SessionError::Denied { errcode }) if errcode == ErrCode::USER_RESTRICTED
        ));
    }
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 3);
    h.advance(h.cache.config().failure_cooldown);
    h.cache
        .session(&session.sid)
        .await
        .expect("asked again after the failure cooldown");
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 4);
    assert!(h.cache.store().get(&session.sid).await.unwrap().is_some());
}

#[tokio::test]
async fn a_refresh_is_stored_even_if_the_record_claims_a_later_expiry() {
    let config = MockConfig {
        rotate_refresh_tokens: true,
        ..MockConfig::default()
    };
    let h = harness_with(config, |b| b).await;
    let session = h.login().await;
    // The stored record says its token lives 3 h (a clock skew, another instance's bookkeeping);
    // WeChat will say 2 h. What WeChat says now — and the refresh token it rotates — must win.
    let mut skewed = (*session).clone();
    skewed.credentials = Credentials::OAuth {
        access_token: session.access_token().unwrap().0.clone(),
        access_token_expires_at: h.clock.now() + 3 * HOUR,
        refresh_token: wechat_oauth::RefreshToken::new(refresh_token(&session)),
    };
    let CasOutcome::Stored(skewed) = h
        .cache
        .store()
        .compare_and_set(session.version, skewed)
        .await
        .unwrap()
    else {
        panic!("store the skewed record");
    };
    let fresh = h.cache.fresh(&session.sid, 4 * HOUR).await.unwrap();
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 1);
    assert_ne!(
        refresh_token(&fresh),
        refresh_token(&skewed),
        "the rotated refresh token was stored"
    );
    assert_eq!(
        fresh.access_token().unwrap().1,
        h.clock.now() + EXPIRY,
        "WeChat's expiry"
    );
    h.advance(3 * HOUR);
    h.cache
        .session(&session.sid)
        .await
        .expect("the next refresh uses the stored, rotated token");
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 2);
}

#[tokio::test]
async fn sessions_end_at_the_refresh_horizon() {
    let h = harness_with(MockConfig::default(), |b| {
        b.config(SessionConfig::default().refresh_horizon(24 * HOUR))
    })
    .await;
    let session = h.login().await;
    h.advance(24 * HOUR);
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::NotFound)
    ));
}

#[tokio::test]
async fn mini_program_sessions_hold_a_session_key_and_never_refresh() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let session = h.cache.login_mini_program(&code).await.unwrap();
    assert!(matches!(
        session.credentials,
        Credentials::MiniProgram { .. }
    ));
    h.advance(3 * HOUR);
    h.cache.session(&session.sid).await.unwrap();
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 0);
    assert_eq!(h.mock.calls(Endpoint::JsCode2Session), 1);
    // The same string as an OAuth code is a different exchange.
    assert!(h.cache.login(&code).await.is_err());
}
