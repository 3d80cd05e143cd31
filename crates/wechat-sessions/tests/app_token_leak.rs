//! No app access token, session key or phone code in the cache's logs, errors or `Debug`,
//! through every app-token path: first fetch, adoption, a refusal renewed in normal mode, a
//! forced refresh, the forced-refresh limit, upstream failures, phone numbers, session key
//! check (valid and not) and reset.

mod common;

use wechat_login_test_support::Captured;

use common::harness;
use wechat_mock::{Endpoint, Fault, MockGrant};
use wechat_oauth::{AppId, AuthCode, PhoneCode};
use wechat_sessions::Credentials;

#[tokio::test]
async fn app_token_paths_leak_no_secret() {
    let captured = Captured::install_global();

    let h = harness().await;
    let appid = AppId::new(h.mock.appid());
    let login = || async {
        let code = h.mock.mint_code(MockGrant {
            openid: Some("oLeak".into()),
            ..MockGrant::default()
        });
        h.cache
            .login_mini_program(&AuthCode::new(code))
            .await
            .unwrap()
    };
    let first = login().await;
    let session = login().await;
    let mut shown = format!("{first:?} {session:?} {:?}", h.cache);
    let mut tokens = vec![h.cache.app_token(&appid).await.unwrap()];
    let mut codes = Vec::new();
    let mut phone = |h: &common::Harness| {
        let code = h.mock.mint_phone_code(h.mock.appid(), "13800138000", "86");
        codes.push(code.clone());
        PhoneCode::new(code)
    };
    // A refusal renewed in normal mode, one forced, one over the limit, a busy WeChat.
    h.mock.invalidate_app_token(h.mock.appid());
    shown += &format!("{:?}", h.cache.phone_number(&session.sid, &phone(&h)).await);
    tokens.push(h.cache.app_token(&appid).await.unwrap());
    h.mock
        .inject(Endpoint::PhoneNumber, Fault::ErrCode(40001), 1);
    shown += &format!("{:?}", h.cache.phone_number(&session.sid, &phone(&h)).await);
    tokens.push(h.cache.app_token(&appid).await.unwrap());
    h.mock
        .inject(Endpoint::PhoneNumber, Fault::ErrCode(40001), 1);
    let limited = h.cache.phone_number(&session.sid, &phone(&h)).await;
    shown += &format!("{limited:?} {}", limited.as_ref().unwrap_err());
    let used = h
        .cache
        .phone_number(&session.sid, &PhoneCode::new(codes[0].clone()))
        .await;
    shown += &format!("{used:?} {}", used.as_ref().unwrap_err());
    h.mock.inject(Endpoint::StableToken, Fault::ErrCode(-1), 3);
    shown += &format!("{:?}", h.cache.app_token(&AppId::new("wxnotours")).await);
    // Session keys: checked, reset, then stale.
    h.cache.check_session_key(&session.sid).await.unwrap();
    h.cache.reset_session_key(&session.sid).await.unwrap();
    let reset = h.cache.session(&session.sid).await.unwrap();
    let stale = h.cache.check_session_key(&first.sid).await;
    shown += &format!("{stale:?} {reset:?}");

    let key = |r: &wechat_sessions::SessionRecord| match &r.credentials {
        Credentials::MiniProgram { session_key } => session_key.secret().to_owned(),
        _ => unreachable!(),
    };
    let logs = captured.text();
    assert!(
        logs.contains("app_token_fetched") && logs.contains("forced_refresh"),
        "{logs}"
    );
    let mut secrets: Vec<String> = tokens.iter().map(|t| t.secret().to_owned()).collect();
    secrets.extend(codes);
    secrets.extend([
        key(&first),
        key(&session),
        key(&reset),
        "13800138000".into(),
    ]);
    for secret in &secrets {
        assert!(!shown.contains(secret.as_str()), "{secret} in {shown}");
        assert!(!logs.contains(secret.as_str()), "{secret} in the logs");
    }
}
