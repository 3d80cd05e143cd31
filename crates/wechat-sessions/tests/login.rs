//! Logging in against the fake WeChat: one exchange per code, a used code answered again only
//! to its own client within the window, remembered refusals, misconfiguration.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant, MockWeChat};
use wechat_oauth::{AppId, AppSecret, AuthCode, Client, ErrCode};
use wechat_sessions::{
    LoginBinding, LoginError, LoginFlow, SessionConfig, SessionManager, SessionRecord,
};

mod common;

use common::*;

const REQUEST_ID: &str = "retry-0123456789abcdef";

fn by_request(id: &str) -> LoginBinding<'_> {
    LoginBinding::new(LoginFlow::Code).proof(id)
}

fn is_code_used(outcome: Result<Arc<SessionRecord>, LoginError>) -> bool {
    matches!(outcome, Err(LoginError::InvalidCode { errcode }) if errcode == ErrCode::CODE_USED)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_submitted_code_is_exchanged_once_and_gives_the_same_session() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let mut submits = Vec::new();
    for _ in 0..50 {
        let (cache, code) = (h.cache.clone(), code.clone());
        submits.push(tokio::spawn(async move {
            cache.login_bound(&code, &by_request(REQUEST_ID)).await
        }));
    }
    // A stranger racing the client with the same code: whichever submit leads the flight
    // decides who shares it, and the other client is refused.
    let stranger = {
        let (cache, code) = (h.cache.clone(), code.clone());
        tokio::spawn(async move {
            cache
                .login_bound(&code, &by_request("stranger-0123456789"))
                .await
        })
    };
    let mut sids = HashSet::new();
    let mut refused = 0;
    for submit in submits {
        match submit.await.unwrap() {
            Ok(record) => {
                sids.insert(record.sid);
            }
            outcome => {
                assert!(is_code_used(outcome));
                refused += 1;
            }
        }
    }
    match stranger.await.unwrap() {
        Ok(record) => {
            assert_eq!(refused, 50, "the stranger led: the client is refused");
            assert!(sids.is_empty());
            sids.insert(record.sid);
        }
        outcome => {
            assert!(
                is_code_used(outcome),
                "another client never gets the session"
            );
            assert_eq!(refused, 0, "the client's submits all share its session");
        }
    }
    assert_eq!(sids.len(), 1, "one session for one code");
    assert_eq!(
        h.mock.calls(Endpoint::AccessToken),
        1,
        "one exchange upstream"
    );
}

#[tokio::test]
async fn a_used_code_opens_its_session_only_for_its_client_within_the_window() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let session = h
        .cache
        .login_bound(&code, &by_request(REQUEST_ID))
        .await
        .unwrap();
    // Anyone else: no proof, another proof, another flow with the same proof.
    assert!(is_code_used(h.cache.login(&code).await));
    assert!(is_code_used(
        h.cache
            .login_bound(&code, &by_request("another-client-0123"))
            .await
    ));
    for flow in [
        LoginFlow::WebCallback,
        LoginFlow::OfficialAccountCallback,
        LoginFlow::MiniProgram,
    ] {
        let binding = LoginBinding::new(flow).proof(REQUEST_ID);
        assert!(is_code_used(h.cache.login_bound(&code, &binding).await));
    }
    // The client retrying within the window: the same session.
    h.advance(Duration::from_secs(60));
    let retry = h.cache.login_bound(&code, &by_request(REQUEST_ID)).await;
    assert_eq!(retry.unwrap().sid, session.sid);
    // After it: refused, like everyone else.
    h.advance(Duration::from_secs(1));
    assert!(is_code_used(
        h.cache.login_bound(&code, &by_request(REQUEST_ID)).await
    ));
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 1, "never asked again");
}

#[tokio::test]
async fn a_code_without_proof_is_never_answered_twice() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    h.cache.login(&code).await.unwrap();
    assert!(is_code_used(h.cache.login(&code).await));
}

#[tokio::test]
async fn official_account_callbacks_get_the_short_window() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let state = "state0123456789";
    let binding = LoginBinding::new(LoginFlow::OfficialAccountCallback).proof(state);
    let session = h.cache.login_bound(&code, &binding).await.unwrap();
    h.advance(Duration::from_secs(5));
    let twice = h.cache.login_bound(&code, &binding).await;
    assert_eq!(twice.unwrap().sid, session.sid, "WeChat calling twice");
    h.advance(Duration::from_secs(1));
    assert!(is_code_used(h.cache.login_bound(&code, &binding).await));
}

#[tokio::test]
async fn refusals_are_remembered_and_transient_failures_are_not() {
    let h = harness().await;
    let bogus = AuthCode::new("not-a-code");
    for _ in 0..2 {
        match h.cache.login(&bogus).await {
            Err(LoginError::InvalidCode { errcode }) => assert_eq!(errcode, ErrCode::INVALID_CODE),
            other => panic!("expected invalid code, got {other:?}"),
        }
    }
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 1);

    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    h.mock.inject(Endpoint::AccessToken, Fault::ErrCode(-1), 1);
    assert!(matches!(
        h.cache.login(&code).await,
        Err(LoginError::Unavailable { .. })
    ));
    assert_eq!(
        h.mock.calls(Endpoint::AccessToken),
        2,
        "a code exchange is never retried"
    );
    h.cache
        .login(&code)
        .await
        .expect("the client may try again");
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 3);
}

#[tokio::test]
async fn a_wrong_secret_is_misconfiguration() {
    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    let client = Client::builder(AppId::new(mock.appid()), AppSecret::new("wrong"))
        .api_base(mock.base_url())
        .build()
        .unwrap();
    let cache = SessionManager::builder(client).build();
    let code = AuthCode::new(mock.mint_code(MockGrant::default()));
    match cache.login(&code).await {
        Err(LoginError::Misconfigured { errcode }) => {
            assert_eq!(errcode, ErrCode::INVALID_APPSECRET)
        }
        other => panic!("expected misconfigured, got {other:?}"),
    }
}

#[tokio::test]
async fn a_double_submit_after_logout_is_told_the_code_was_used() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let session = h.cache.login(&code).await.unwrap();
    assert!(h.cache.logout(&session.sid).await.unwrap());
    match h.cache.login(&code).await {
        Err(LoginError::InvalidCode { errcode }) => assert_eq!(errcode, ErrCode::CODE_USED),
        other => panic!("a logged-out session must not come back, got {other:?}"),
    }
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 1, "no second exchange");
}

#[tokio::test]
async fn a_double_submit_gets_the_session_as_it_is_now() {
    let h = harness_with(MockConfig::default(), |b| {
        b.config(SessionConfig::default().code_retry_windows(EXPIRY, Duration::from_secs(5)))
    })
    .await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let session = h
        .cache
        .login_bound(&code, &by_request(REQUEST_ID))
        .await
        .unwrap();
    h.advance(EXPIRY);
    let refreshed = h.cache.session(&session.sid).await.unwrap();
    assert_ne!(access_token(&refreshed), access_token(&session));
    let again = h
        .cache
        .login_bound(&code, &by_request(REQUEST_ID))
        .await
        .unwrap();
    assert_eq!(again.sid, session.sid);
    assert_eq!(
        access_token(&again),
        access_token(&refreshed),
        "the stored record, not the one remembered at login"
    );
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 1);
}

#[tokio::test]
async fn a_junk_code_flood_does_not_evict_a_remembered_login() {
    // Successes: 100; refusals: max(100 / 10, 1,000) = 1,000.
    let h = harness_with(MockConfig::default(), |b| {
        b.config(SessionConfig::default().remember_logins(Duration::from_secs(600), 100))
    })
    .await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let session = h
        .cache
        .login_bound(&code, &by_request(REQUEST_ID))
        .await
        .unwrap();
    const JUNK: u64 = 1_200;
    for i in 0..JUNK {
        let junk = AuthCode::new(format!("junk-{i}"));
        assert!(matches!(
            h.cache.login(&junk).await,
            Err(LoginError::InvalidCode { .. })
        ));
    }
    let again = h
        .cache
        .login_bound(&code, &by_request(REQUEST_ID))
        .await
        .expect("the remembered login survives the flood");
    assert_eq!(again.sid, session.sid);
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 1 + JUNK);
}

#[tokio::test]
async fn unknown_errcodes_from_an_exchange_are_not_remembered() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    h.mock
        .inject(Endpoint::AccessToken, Fault::ErrCode(61234), 1);
    assert!(matches!(
        h.cache.login(&code).await,
        Err(LoginError::InvalidCode { errcode }) if errcode == ErrCode(61234)
    ));
    h.cache
        .login(&code)
        .await
        .expect("an unknown refusal is not WeChat's last word: the code is tried again");
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 2);
}
