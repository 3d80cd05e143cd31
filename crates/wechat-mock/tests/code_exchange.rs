//! Code exchange (`/sns/oauth2/access_token`) and Mini Program login (`/sns/jscode2session`):
//! success shapes, single use, expiry and the app/parameter checks.

mod common;

use std::time::Duration;

use common::{Harness, user};
use wechat_mock::{MockConfig, MockGrant};

#[tokio::test]
async fn exchange_answers_like_wechat() {
    let h = Harness::start().await;
    let code = h.mock.mint_code(MockGrant {
        openid: Some("o_alice".into()),
        unionid: Some("u_alice".into()),
        ..MockGrant::default()
    });
    let answer = h.exchange(&code).await;
    assert_eq!(answer.content_type.as_deref(), Some("text/plain"));
    let json = answer.success();
    assert_eq!(json["scope"], "snsapi_userinfo,");
    assert_eq!(json["openid"], "o_alice");
    assert_eq!(json["unionid"], "u_alice");
    assert_eq!(json["expires_in"], 7200);
    assert!(json.get("is_snapshotuser").is_none());
    let access = json["access_token"].as_str().unwrap();
    let refresh = json["refresh_token"].as_str().unwrap();
    assert!(access.len() >= 80 && access.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(refresh.len() >= 80);
    assert_ne!(access, refresh);
}

#[tokio::test]
async fn defaults_a_real_looking_openid_and_reports_snapshot_users() {
    let h = Harness::start().await;
    let code = h.mock.mint_code(MockGrant {
        scope: Some("snsapi_base".into()),
        snapshot_user: true,
        ..MockGrant::default()
    });
    let json = h.exchange(&code).await.success();
    let openid = json["openid"].as_str().unwrap();
    assert_eq!(openid.len(), 28);
    assert!(openid.starts_with('o'));
    assert_eq!(json["scope"], "snsapi_base,");
    assert_eq!(json["is_snapshotuser"], 1);
    assert!(json.get("unionid").is_none());
}

#[tokio::test]
async fn tokens_are_unique_per_exchange() {
    let h = Harness::start().await;
    let first = h.login(user("o_same")).await;
    let second = h.login(user("o_same")).await;
    assert_ne!(first.access_token, second.access_token);
    assert_ne!(first.refresh_token, second.refresh_token);
}

#[tokio::test]
async fn a_code_is_single_use() {
    let h = Harness::start().await;
    let code = h.mock.mint_code(MockGrant::default());
    h.exchange(&code).await.success();
    h.exchange(&code).await.assert_error(40163);
}

#[tokio::test]
async fn a_code_expires_after_code_ttl() {
    let h = Harness::start().await;
    let code = h.mock.mint_code(MockGrant::default());
    h.mock.advance(Duration::from_secs(600));
    h.exchange(&code).await.assert_error(42003);
}

#[tokio::test]
async fn a_code_is_good_until_its_ttl() {
    let h = Harness::with(MockConfig {
        code_ttl: Duration::from_secs(300),
        ..MockConfig::default()
    })
    .await;
    let code = h.mock.mint_code(MockGrant::default());
    h.mock.advance(Duration::from_secs(299));
    h.exchange(&code).await.success();
}

#[tokio::test]
async fn unknown_code_is_40029() {
    let h = Harness::start().await;
    h.exchange("0610000000000000000000000000000X")
        .await
        .assert_error(40029);
}

#[tokio::test]
async fn app_and_parameter_checks() {
    let h = Harness::start().await;
    let code = h.mock.mint_code(MockGrant::default());
    let appid = h.mock.appid().to_owned();
    let secret = h.mock.secret().to_owned();
    let path = "/sns/oauth2/access_token";
    let gt = ("grant_type", "authorization_code");

    let cases: [(&[(&str, &str)], i64); 7] = [
        (&[("secret", &secret), ("code", &code), gt], 41002),
        (
            &[
                ("appid", "wxother"),
                ("secret", &secret),
                ("code", &code),
                gt,
            ],
            40013,
        ),
        (&[("appid", &appid), ("code", &code), gt], 41004),
        (
            &[("appid", &appid), ("secret", "wrong"), ("code", &code), gt],
            40125,
        ),
        (&[("appid", &appid), ("secret", &secret), gt], 41008),
        (
            &[("appid", &appid), ("secret", &secret), ("code", &code)],
            40002,
        ),
        (
            &[
                ("appid", &appid),
                ("secret", &secret),
                ("code", &code),
                ("grant_type", "client_credential"),
            ],
            40002,
        ),
    ];
    for (params, errcode) in cases {
        h.get(path, params).await.assert_error(errcode);
    }
    // None of the rejected calls consumed the code.
    h.exchange(&code).await.success();
}

#[tokio::test]
async fn jscode2session_answers_openid_and_session_key() {
    let h = Harness::start().await;
    let code = h.mock.mint_code(MockGrant {
        openid: Some("o_mini".into()),
        unionid: Some("u_mini".into()),
        ..MockGrant::default()
    });
    let json = h.jscode2session(&code).await.success();
    assert_eq!(json["openid"], "o_mini");
    assert_eq!(json["unionid"], "u_mini");
    let session_key = json["session_key"].as_str().unwrap();
    assert_eq!(session_key.len(), 24);
    assert!(json.get("access_token").is_none());
    h.jscode2session(&code).await.assert_error(40163);
}

#[tokio::test]
async fn jscode2session_checks_app_and_code() {
    let h = Harness::start().await;
    let appid = h.mock.appid().to_owned();
    let secret = h.mock.secret().to_owned();
    let path = "/sns/jscode2session";
    let gt = ("grant_type", "authorization_code");
    h.get(path, &[("appid", &appid), ("secret", &secret), gt])
        .await
        .assert_error(41008);
    h.get(
        path,
        &[("appid", &appid), ("secret", "nope"), ("js_code", "x"), gt],
    )
    .await
    .assert_error(40125);
    h.jscode2session("unknown").await.assert_error(40029);
    let code = h.mock.mint_code(MockGrant::default());
    h.mock.advance(Duration::from_secs(601));
    h.jscode2session(&code).await.assert_error(42003);
}

#[tokio::test]
async fn the_first_exchange_consumes_the_code_whichever_endpoint() {
    let h = Harness::start().await;
    let code = h.mock.mint_code(MockGrant::default());
    h.exchange(&code).await.success();
    h.jscode2session(&code).await.assert_error(40163);

    let code = h.mock.mint_code(MockGrant::default());
    h.jscode2session(&code).await.success();
    h.exchange(&code).await.assert_error(40163);
}
