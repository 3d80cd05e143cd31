//! The app access token and the Mini Program calls made with it, against the fake WeChat: one
//! upstream call however many callers, one refresh per expiry, a refused token renewed once
//! (normal mode first, forced only when needed and then rate-limited), and each user's newest
//! session key used for their older sessions.

mod common;

use std::time::Duration;

use common::{harness, harness_with};
use futures::future::join_all;
use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant};
use wechat_oauth::{AppId, AuthCode, EncryptedData, PhoneCode, decrypt_user_data};
use wechat_sessions::{AppTokenError, CallError, Clock, Credentials};

#[tokio::test]
async fn a_thousand_callers_make_one_upstream_call_and_an_expiry_one_more() {
    let h = harness().await;
    let appid = AppId::new(h.mock.appid());
    let tokens = join_all((0..1000).map(|_| h.cache.app_token(&appid))).await;
    let first = tokens[0].as_ref().unwrap().clone();
    assert!(tokens.iter().all(|t| t.as_ref().unwrap() == &first));
    assert_eq!(h.mock.calls(Endpoint::StableToken), 1);

    // Fresh until five minutes before expiry: no call.
    h.advance(Duration::from_secs(7200 - 301));
    assert_eq!(h.cache.app_token(&appid).await.unwrap(), first);
    assert_eq!(h.mock.calls(Endpoint::StableToken), 1);
    // Then one refresh for everyone.
    h.advance(Duration::from_secs(2));
    let tokens = join_all((0..1000).map(|_| h.cache.app_token(&appid))).await;
    let second = tokens[0].as_ref().unwrap().clone();
    assert_ne!(
        second, first,
        "the fake renews a token this close to expiry"
    );
    assert!(tokens.iter().all(|t| t.as_ref().unwrap() == &second));
    assert_eq!(h.mock.calls(Endpoint::StableToken), 2);
}

#[tokio::test]
async fn an_unknown_app_and_a_busy_wechat_are_typed_errors() {
    let h = harness().await;
    assert!(matches!(
        h.cache.app_token(&AppId::new("wxnotours")).await,
        Err(AppTokenError::AppNotConfigured)
    ));
    let appid = AppId::new(h.mock.appid());
    h.mock
        .inject(Endpoint::StableToken, Fault::HttpStatus(503), 3);
    assert!(matches!(
        h.cache.app_token(&appid).await,
        Err(AppTokenError::Unavailable { .. })
    ));
    // With a copy that has not expired, a failed refresh serves the copy.
    let token = h.cache.app_token(&appid).await.unwrap();
    h.advance(Duration::from_secs(7000));
    h.mock
        .inject(Endpoint::StableToken, Fault::HttpStatus(503), 3);
    assert_eq!(h.cache.app_token(&appid).await.unwrap(), token);
    h.advance(Duration::from_secs(300));
    h.mock
        .inject(Endpoint::StableToken, Fault::HttpStatus(503), 3);
    assert!(
        h.cache.app_token(&appid).await.is_err(),
        "never an expired token"
    );
}

fn phone_code(h: &common::Harness) -> PhoneCode {
    PhoneCode::new(h.mock.mint_phone_code(h.mock.appid(), "13800138000", "86"))
}

async fn mini_login(
    h: &common::Harness,
    openid: &str,
) -> std::sync::Arc<wechat_sessions::SessionRecord> {
    let code = h.mock.mint_code(MockGrant {
        openid: Some(openid.into()),
        ..MockGrant::default()
    });
    h.cache
        .login_mini_program(&AuthCode::new(code))
        .await
        .unwrap()
}

#[tokio::test]
async fn a_refused_token_is_renewed_once_forcing_only_when_wechat_keeps_it() {
    let h = harness().await;
    let session = mini_login(&h, "oPhone").await;
    h.cache
        .app_token(&AppId::new(h.mock.appid()))
        .await
        .unwrap();
    assert_eq!(h.mock.calls(Endpoint::StableToken), 1);

    // Another party forced a refresh: normal mode answers the new token, no forcing needed.
    h.mock.invalidate_app_token(h.mock.appid());
    let info = h
        .cache
        .phone_number(&session.sid, &phone_code(&h))
        .await
        .unwrap();
    assert_eq!(info.phone_number, "13800138000");
    assert_eq!(h.mock.calls(Endpoint::StableToken), 2);
    assert_eq!(
        h.mock.calls(Endpoint::PhoneNumber),
        2,
        "one refusal, one retry"
    );

    // WeChat refuses a token it still calls current: one forced refresh, one retry.
    h.mock
        .inject(Endpoint::PhoneNumber, Fault::ErrCode(40001), 1);
    assert!(
        h.cache
            .phone_number(&session.sid, &phone_code(&h))
            .await
            .is_ok()
    );
    assert_eq!(
        h.mock.calls(Endpoint::StableToken),
        4,
        "normal mode, then forced"
    );

    // Again within the interval: not forced again (WeChat's daily quota is small).
    h.mock
        .inject(Endpoint::PhoneNumber, Fault::ErrCode(40001), 1);
    let error = h
        .cache
        .phone_number(&session.sid, &phone_code(&h))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CallError::AppToken(AppTokenError::ForceLimited { .. })
        ),
        "{error:?}"
    );
    assert_eq!(h.mock.calls(Endpoint::StableToken), 5, "normal mode only");
    // After the interval, forcing is allowed again.
    h.advance(Duration::from_secs(301));
    h.mock
        .inject(Endpoint::PhoneNumber, Fault::ErrCode(40001), 1);
    assert!(
        h.cache
            .phone_number(&session.sid, &phone_code(&h))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn phone_numbers_need_a_mini_program_session_and_a_fresh_code_of_its_app() {
    let h = harness_with(
        MockConfig::default().with_app("wxothermini", "other-secret"),
        |b| b,
    )
    .await;
    let session = mini_login(&h, "oPhone").await;
    let code = phone_code(&h);
    assert!(h.cache.phone_number(&session.sid, &code).await.is_ok());
    let reused = h.cache.phone_number(&session.sid, &code).await.unwrap_err();
    assert!(matches!(&reused, CallError::Upstream(e) if e.errcode().map(|c| c.0) == Some(40029)));
    let expired = phone_code(&h);
    h.advance(Duration::from_secs(301));
    assert!(h.cache.phone_number(&session.sid, &expired).await.is_err());
    let theirs = PhoneCode::new(h.mock.mint_phone_code("wxothermini", "13800138000", "86"));
    let error = h
        .cache
        .phone_number(&session.sid, &theirs)
        .await
        .unwrap_err();
    assert!(matches!(&error, CallError::Upstream(e) if e.errcode().map(|c| c.0) == Some(40029)));

    let oauth = h.login().await;
    assert!(matches!(
        h.cache.phone_number(&oauth.sid, &phone_code(&h)).await,
        Err(CallError::NotPermitted)
    ));
}

#[tokio::test]
async fn the_newest_session_key_serves_older_sessions_and_checks_and_resets() {
    let h = harness().await;
    let old = mini_login(&h, "oKeys").await;
    h.cache.check_session_key(&old.sid).await.unwrap();
    let new = mini_login(&h, "oKeys").await;
    let key_of = |r: &wechat_sessions::SessionRecord| match &r.credentials {
        Credentials::MiniProgram { session_key } => session_key.clone(),
        _ => unreachable!(),
    };
    // The older session decrypts with the newer login's key.
    let old_record = h.cache.session(&old.sid).await.unwrap();
    assert_eq!(
        h.cache.session_key(&old_record).await.unwrap(),
        Some(key_of(&new))
    );
    let appid = AppId::new(h.mock.appid());
    let open = |key: &wechat_oauth::SessionKey| {
        let (data, iv) = h
            .mock
            .seal_user_data(h.mock.appid(), "oKeys", &serde_json::json!({"n": 1}))
            .unwrap();
        let data = EncryptedData {
            encrypted_data: &data,
            iv: &iv,
            ..Default::default()
        };
        decrypt_user_data(key, &data, &appid, h.clock.now(), Duration::from_secs(60)).is_ok()
    };
    assert!(open(
        &h.cache.session_key(&old_record).await.unwrap().unwrap()
    ));
    assert!(!open(&key_of(&old)));
    h.cache.check_session_key(&old.sid).await.unwrap();

    // Reset: a new key everywhere; data sealed now opens with it.
    h.cache.reset_session_key(&new.sid).await.unwrap();
    let reset = h.cache.session(&new.sid).await.unwrap();
    assert_ne!(key_of(&reset), key_of(&new));
    assert!(open(&h.cache.session_key(&reset).await.unwrap().unwrap()));
    assert!(open(
        &h.cache.session_key(&old_record).await.unwrap().unwrap()
    ));
    h.cache.check_session_key(&old.sid).await.unwrap();

    // A key WeChat no longer knows (a wx.login this server never saw): 87009, typed.
    h.mock.mint_code(MockGrant::default());
    let _ =
        wechat_oauth::Client::builder(appid.clone(), wechat_oauth::AppSecret::new(h.mock.secret()))
            .api_base(h.mock.base_url())
            .build()
            .unwrap()
            .jscode2session(&AuthCode::new(h.mock.mint_code(MockGrant {
                openid: Some("oKeys".into()),
                ..MockGrant::default()
            })))
            .await
            .unwrap();
    assert!(matches!(
        h.cache.check_session_key(&old.sid).await,
        Err(CallError::SessionKeyInvalid)
    ));
}
