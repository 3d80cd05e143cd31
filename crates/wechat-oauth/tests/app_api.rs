//! The app access token and the Mini Program calls made with it, against the fake WeChat:
//! `stable_token` in normal and forced mode (and the fake's older `/cgi-bin/token`, which
//! replaces the token), phone numbers by single-use code, and the session key's check and reset.

use std::time::Duration;

use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant, MockWeChat};
use wechat_oauth::{AppId, AuthCode, Client, ErrCode, Error, ErrorClass, ManualClock, PhoneCode};

const OTHER_APP: &str = "wxothermini0000001";

async fn setup(config: MockConfig) -> (MockWeChat, Client) {
    let mock = MockWeChat::start(config.with_app(OTHER_APP, "other-secret"))
        .await
        .unwrap();
    let client = client_for(&mock, mock.appid(), mock.secret());
    (mock, client)
}

fn client_for(mock: &MockWeChat, appid: &str, secret: &str) -> Client {
    wechat_login_test_support::client_at(mock, appid, secret, &ManualClock::new(mock.now()))
}

fn errcode(result: Result<impl std::fmt::Debug, Error>) -> i64 {
    result.unwrap_err().errcode().expect("an errcode").0
}

#[tokio::test]
async fn stable_token_is_shared_until_forced_and_forcing_replaces_it() {
    let (mock, client) = setup(MockConfig::default()).await;
    let first = client.stable_token(false).await.unwrap();
    let again = client.stable_token(false).await.unwrap();
    assert_eq!(
        first.access_token, again.access_token,
        "normal mode answers the current token"
    );
    assert_eq!(
        first.expires_at,
        client.clock().now() + Duration::from_secs(7200)
    );
    let forced = client.stable_token(true).await.unwrap();
    assert_ne!(forced.access_token, first.access_token);
    // The replaced token stops working: a call with it is 40001, "refresh and retry".
    let phone = PhoneCode::new(mock.mint_phone_code(mock.appid(), "13800138000", "86"));
    let error = client
        .phone_number(&first.access_token, &phone)
        .await
        .unwrap_err();
    assert_eq!(error.errcode(), Some(ErrCode::INVALID_CREDENTIAL));
    assert_eq!(error.class(), ErrorClass::RefreshAndRetry);
    // ... and the code was not spent by the refused call.
    let info = client
        .phone_number(&forced.access_token, &phone)
        .await
        .unwrap();
    assert_eq!(info.phone_number, "13800138000");
    assert_eq!(mock.calls(Endpoint::StableToken), 3);
}

#[tokio::test]
async fn forced_refreshes_are_limited_per_day_and_normal_mode_renews_near_expiry() {
    let (mock, client) = setup(MockConfig {
        forced_refreshes_per_day: 2,
        ..MockConfig::default()
    })
    .await;
    client.stable_token(true).await.unwrap();
    client.stable_token(true).await.unwrap();
    let error = client.stable_token(true).await.unwrap_err();
    assert_eq!(error.errcode(), Some(ErrCode::DAILY_QUOTA_EXCEEDED));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(
        mock.calls(Endpoint::StableToken),
        3,
        "forced mode is never retried"
    );

    // Close to expiry normal mode hands out a new token; the old one works until it expires.
    let old = client.stable_token(false).await.unwrap();
    mock.advance(Duration::from_secs(7200 - 200));
    let new = client.stable_token(false).await.unwrap();
    assert_ne!(old.access_token, new.access_token);
    let code = PhoneCode::new(mock.mint_phone_code(mock.appid(), "13800138000", "86"));
    assert!(client.phone_number(&old.access_token, &code).await.is_ok());
    mock.advance(Duration::from_secs(300));
    let code = PhoneCode::new(mock.mint_phone_code(mock.appid(), "13800138000", "86"));
    assert_eq!(
        errcode(client.phone_number(&old.access_token, &code).await),
        42001
    );
}

#[tokio::test]
async fn the_older_token_api_invalidates_its_previous_token_but_not_the_stable_one() {
    let (mock, client) = setup(MockConfig::default()).await;
    let token = client.stable_token(false).await.unwrap();
    // Every /cgi-bin/token call replaces that API's token.
    let url = format!(
        "{}/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
        mock.base_url(),
        mock.appid(),
        mock.secret()
    );
    let fetch = || async {
        let body = reqwest::get(&url).await.unwrap().text().await.unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let (a, b) = (fetch().await, fetch().await);
    assert_ne!(a["access_token"], b["access_token"]);
    assert_eq!(mock.calls(Endpoint::Token), 2);
    let code =
        |mock: &MockWeChat| PhoneCode::new(mock.mint_phone_code(mock.appid(), "13800138000", "86"));
    let old = wechat_oauth::AppAccessToken::new(a["access_token"].as_str().unwrap());
    assert_eq!(
        errcode(client.phone_number(&old, &code(&mock)).await),
        40001
    );
    let new = wechat_oauth::AppAccessToken::new(b["access_token"].as_str().unwrap());
    assert!(client.phone_number(&new, &code(&mock)).await.is_ok());
    // The stable token is isolated from the older API...
    assert!(
        client
            .phone_number(&token.access_token, &code(&mock))
            .await
            .is_ok()
    );
    // ...but another party forcing a stable refresh invalidates it.
    mock.invalidate_app_token(mock.appid());
    assert_eq!(
        errcode(client.phone_number(&token.access_token, &code(&mock)).await),
        40001
    );
}

#[tokio::test]
async fn phone_numbers_by_code_once_within_five_minutes_for_their_app() {
    let (mock, client) = setup(MockConfig::default()).await;
    let token = client.stable_token(false).await.unwrap().access_token;

    let code = PhoneCode::new(mock.mint_phone_code(mock.appid(), "5551234", "1"));
    let info = client.phone_number(&token, &code).await.unwrap();
    assert_eq!(info.phone_number, "+15551234");
    assert_eq!(info.pure_phone_number, "5551234");
    assert_eq!(info.country_code, "1");
    assert!(
        !format!("{info:?}").contains("5551234"),
        "Debug masks the number"
    );

    // Used.
    let error = client.phone_number(&token, &code).await.unwrap_err();
    assert_eq!(error.errcode(), Some(ErrCode::INVALID_CODE));
    // Expired.
    let code = PhoneCode::new(mock.mint_phone_code(mock.appid(), "13800138000", "86"));
    mock.advance(Duration::from_secs(301));
    assert_eq!(errcode(client.phone_number(&token, &code).await), 40029);
    // Another app's code.
    let token = client.stable_token(false).await.unwrap().access_token;
    let theirs = PhoneCode::new(mock.mint_phone_code(OTHER_APP, "13800138000", "86"));
    assert_eq!(errcode(client.phone_number(&token, &theirs).await), 40029);
    let other = client_for(&mock, OTHER_APP, "other-secret");
    let their_token = other.stable_token(false).await.unwrap().access_token;
    assert!(other.phone_number(&their_token, &theirs).await.is_ok());
    // A phone code is never retried: a busy WeChat is one call.
    let code = PhoneCode::new(mock.mint_phone_code(mock.appid(), "13800138000", "86"));
    mock.inject(Endpoint::PhoneNumber, Fault::ErrCode(-1), 1);
    let before = mock.calls(Endpoint::PhoneNumber);
    assert_eq!(errcode(client.phone_number(&token, &code).await), -1);
    assert_eq!(mock.calls(Endpoint::PhoneNumber), before + 1);
}

#[tokio::test]
async fn phone_answers_with_a_numeric_country_code_or_another_apps_watermark() {
    let (mock, client) = setup(MockConfig::default()).await;
    let token = client.stable_token(false).await.unwrap().access_token;
    let code = PhoneCode::new("any");
    mock.inject(
        Endpoint::PhoneNumber,
        Fault::Body(r#"{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":86}}"#.into()),
        1,
    );
    assert_eq!(
        client
            .phone_number(&token, &code)
            .await
            .unwrap()
            .country_code,
        "86"
    );
    mock.inject(
        Endpoint::PhoneNumber,
        Fault::Body(r#"{"errcode":0,"errmsg":"ok","phone_info":{"phoneNumber":"13800138000","purePhoneNumber":"13800138000","countryCode":"86","watermark":{"appid":"wxsomeoneelse","timestamp":1}}}"#.into()),
        1,
    );
    let error = client.phone_number(&token, &code).await.unwrap_err();
    assert!(matches!(error, Error::Decode { .. }), "{error}");
    assert!(!error.to_string().contains("13800138000"));
}

#[tokio::test]
async fn session_keys_are_checked_and_reset_against_the_users_current_key() {
    let (mock, client) = setup(MockConfig::default()).await;
    let token = client.stable_token(false).await.unwrap().access_token;
    let login = |openid: &str| {
        AuthCode::new(mock.mint_code(MockGrant {
            openid: Some(openid.into()),
            ..MockGrant::default()
        }))
    };
    let first = client.jscode2session(&login("oMini")).await.unwrap();
    client
        .check_session_key(&token, &first.openid, &first.session_key)
        .await
        .unwrap();
    // A newer wx.login replaces the key: the old one is 87009.
    let second = client.jscode2session(&login("oMini")).await.unwrap();
    let error = client
        .check_session_key(&token, &first.openid, &first.session_key)
        .await
        .unwrap_err();
    assert_eq!(error.errcode(), Some(ErrCode::INVALID_SESSION_KEY));
    assert_eq!(error.class(), ErrorClass::Reauthorize);
    // Reset: a new key, the old one stops working, the new one checks.
    let reset = client
        .reset_session_key(&token, &second.openid, &second.session_key)
        .await
        .unwrap();
    assert_ne!(reset, second.session_key);
    assert_eq!(
        errcode(
            client
                .check_session_key(&token, &second.openid, &second.session_key)
                .await
        ),
        87009
    );
    client
        .check_session_key(&token, &second.openid, &reset)
        .await
        .unwrap();
    // The fake's data for the user is now sealed under the reset key.
    let (data, iv) = mock
        .seal_user_data(mock.appid(), "oMini", &serde_json::json!({"a": 1}))
        .unwrap();
    let opened = wechat_oauth::decrypt_user_data(
        &reset,
        &wechat_oauth::EncryptedData {
            encrypted_data: &data,
            iv: &iv,
            ..Default::default()
        },
        &AppId::new(mock.appid()),
        mock.now(),
        Duration::from_secs(60),
    )
    .unwrap();
    assert_eq!(opened["a"], 1);
}
