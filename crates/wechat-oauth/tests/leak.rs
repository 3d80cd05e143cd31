//! No secret in `Debug`, `Display` or logs: every public type and error is formatted, real calls
//! are made with debug logging captured, and none of the output contains a secret.

use std::time::Duration;
use wechat_login_test_support::Captured;

use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant, MockWeChat};
use wechat_oauth::{
    AccessToken, ApiError, AppAccessToken, AppId, AppSecret, AuthCode, Client, ErrCode, Error,
    Lang, OpenId, PhoneCode, RedactedBody, RefreshToken, RetryPolicy, SessionKey,
    TransportErrorKind,
};

const SECRET: &str = "APPSECRET-0123456789abcdef0123456";

fn assert_clean(shown: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !shown.contains(secret),
            "secret {secret:?} leaked in: {shown}"
        );
    }
}

#[test]
fn secret_types_redact_themselves() {
    let values: Vec<(String, &str)> = vec![
        (format!("{:?}", AppSecret::new("S-APP")), "S-APP"),
        (format!("{:?}", AuthCode::new("S-CODE")), "S-CODE"),
        (format!("{:?}", AccessToken::new("S-AT")), "S-AT"),
        (format!("{:?}", RefreshToken::new("S-RT")), "S-RT"),
        (format!("{:?}", SessionKey::new("S-SK")), "S-SK"),
        (
            format!("{:?}", AppAccessToken::new("S-APPTOKEN")),
            "S-APPTOKEN",
        ),
        (
            format!("{:?}", PhoneCode::new("S-PHONECODE")),
            "S-PHONECODE",
        ),
    ];
    for (shown, secret) in values {
        assert_clean(&shown, &[secret]);
        assert!(shown.contains("[redacted]"));
    }
    let body = RedactedBody::new(
        r#"{"access_token":"S-AT","refresh_token":"S-RT","session_key":"S-SK","openid":"o"}"#,
    );
    let errors = [
        Error::Api(ApiError::new(ErrCode(40029), "invalid code")),
        Error::Transport {
            kind: TransportErrorKind::Timeout,
        },
        Error::HttpStatus {
            status: 502,
            body: body.clone(),
        },
        Error::Decode {
            reason: "test".into(),
            body,
        },
    ];
    for error in errors {
        assert_clean(&format!("{error} {error:?}"), &["S-AT", "S-RT", "S-SK"]);
    }
}

#[tokio::test]
async fn real_calls_leak_nothing_into_values_errors_or_debug_logs() {
    let captured = Captured::install_global();

    let mock = MockWeChat::start(MockConfig::new("wxleaktest", SECRET))
        .await
        .unwrap();
    // The ordinary calls get the default timeout (a loaded machine must not fail them); only
    // the timeout case uses a client that gives up long before the fake answers.
    let builder = || {
        Client::builder(AppId::new("wxleaktest"), AppSecret::new(SECRET))
            .api_base(mock.base_url())
            .retry(RetryPolicy {
                max_attempts: 2,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(1),
            })
    };
    let client = builder().build().unwrap();
    let impatient = builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let code = mock.mint_code(MockGrant::default());
    let mut shown = format!("{client:?}");

    let grant = client.exchange_code(&AuthCode::new(&code)).await.unwrap();
    shown += &format!("{grant:?}");
    let refreshed = client.refresh_token(&grant.refresh_token).await.unwrap();
    shown += &format!("{refreshed:?}");
    let info = client
        .userinfo(&grant.access_token, &grant.openid, Lang::En)
        .await
        .unwrap();
    shown += &format!("{info:?}");
    let mini_code = mock.mint_code(MockGrant::default());
    let mini = client
        .jscode2session(&AuthCode::new(&mini_code))
        .await
        .unwrap();
    shown += &format!("{mini:?}");

    // Failures of every kind, with the secret in every request URL.
    let used = client
        .exchange_code(&AuthCode::new(&code))
        .await
        .unwrap_err();
    mock.inject(
        Endpoint::AccessToken,
        Fault::Delay(Duration::from_secs(10)),
        1,
    );
    let timed_out_code = mock.mint_code(MockGrant::default());
    let timeout = impatient
        .exchange_code(&AuthCode::new(&timed_out_code))
        .await
        .unwrap_err();
    let body = format!(
        r#"{{"access_token":"{}","refresh_token":"{}","openid":"#,
        grant.access_token.secret(),
        grant.refresh_token.secret()
    );
    mock.inject(Endpoint::RefreshToken, Fault::Body(body.clone()), 1);
    let decode = client
        .refresh_token(&grant.refresh_token)
        .await
        .unwrap_err();
    mock.inject(Endpoint::RefreshToken, Fault::HttpStatus(500), 2);
    let status = client
        .refresh_token(&grant.refresh_token)
        .await
        .unwrap_err();
    let unknown_user = client
        .check_access_token(&grant.access_token, &OpenId::new("x"))
        .await
        .unwrap_err();
    for error in [used, timeout, decode, status, unknown_user] {
        shown += &format!("{error} {error:?} ");
    }

    // The app token and the Mini Program calls made with it, succeeding and failing.
    let app_token = client.stable_token(false).await.unwrap();
    let forced = client.stable_token(true).await.unwrap();
    shown += &format!("{app_token:?} {forced:?}");
    let phone_code = mock.mint_phone_code("wxleaktest", "13800138000", "86");
    let phone = client
        .phone_number(&forced.access_token, &PhoneCode::new(&phone_code))
        .await
        .unwrap();
    shown += &format!("{phone:?}");
    let reused = client
        .phone_number(&forced.access_token, &PhoneCode::new(&phone_code))
        .await
        .unwrap_err();
    let refused_token = client
        .phone_number(&app_token.access_token, &PhoneCode::new(&phone_code))
        .await
        .unwrap_err();
    client
        .check_session_key(&forced.access_token, &mini.openid, &mini.session_key)
        .await
        .unwrap();
    let reset_key = client
        .reset_session_key(&forced.access_token, &mini.openid, &mini.session_key)
        .await
        .unwrap();
    let stale_key = client
        .check_session_key(&forced.access_token, &mini.openid, &mini.session_key)
        .await
        .unwrap_err();
    mock.inject(
        Endpoint::StableToken,
        Fault::Body(format!(
            r#"{{"access_token":"{}","expires_in":"#,
            forced.access_token.secret()
        )),
        1,
    );
    let token_decode = client.stable_token(false).await.unwrap_err();
    mock.inject(
        Endpoint::PhoneNumber,
        Fault::Body(r#"{"errcode":0,"phone_info":{"phoneNumber":"13912345678","#.into()),
        1,
    );
    let phone_decode = client
        .phone_number(&forced.access_token, &PhoneCode::new("S-ANY"))
        .await
        .unwrap_err();
    for error in [reused, refused_token, stale_key, token_decode, phone_decode] {
        shown += &format!("{error} {error:?} ");
    }

    let logs = captured.text();
    assert!(logs.contains("wechat call"), "logging was captured: {logs}");
    let secrets = [
        SECRET,
        code.as_str(),
        mini_code.as_str(),
        timed_out_code.as_str(),
        grant.access_token.secret(),
        grant.refresh_token.secret(),
        refreshed.access_token.secret(),
        mini.session_key.secret(),
        app_token.access_token.secret(),
        forced.access_token.secret(),
        phone_code.as_str(),
        reset_key.secret(),
        "13800138000",
        "13912345678",
    ];
    assert_clean(&shown, &secrets);
    assert_clean(&logs, &secrets);
}
