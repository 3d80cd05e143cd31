//! Token lifecycle: refresh (renew vs replace, horizon, rotation), revocation, `/sns/auth` and
//! `/sns/userinfo`.

mod common;

use std::time::Duration;

use common::{Harness, Tokens, user};
use wechat_mock::{MockConfig, MockGrant, MockProfile};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

#[tokio::test]
async fn refresh_before_expiry_renews_the_same_access_token() {
    let h = Harness::start().await;
    let login = h.login(user("o_renew")).await;
    h.mock.advance(HOUR);
    let answer = h.refresh(&login.refresh_token).await;
    let json = answer.success();
    assert_eq!(json["expires_in"], 7200);
    assert!(json.get("unionid").is_none());
    let renewed = Tokens::from(&json);
    assert_eq!(renewed, login, "same tokens, openid and scope");
    assert_eq!(renewed.scope, "snsapi_userinfo,");

    // The expiry moved to now + 7200 s: 1.5 h later (2.5 h after the exchange) it still works.
    h.mock.advance(HOUR + HOUR / 2);
    assert_eq!(h.auth(&login.access_token, "o_renew").await.errcode(), 0);
}

#[tokio::test]
async fn refresh_after_expiry_replaces_the_access_token() {
    let h = Harness::start().await;
    let login = h.login(user("o_replace")).await;
    h.mock.advance(2 * HOUR);
    h.auth(&login.access_token, "o_replace")
        .await
        .assert_error(42001);

    let replaced = Tokens::from(&h.refresh(&login.refresh_token).await.success());
    assert_ne!(replaced.access_token, login.access_token);
    assert_eq!(replaced.refresh_token, login.refresh_token);
    assert_eq!(replaced.openid, "o_replace");

    h.auth(&login.access_token, "o_replace")
        .await
        .assert_error(40001);
    assert_eq!(
        h.auth(&replaced.access_token, "o_replace").await.errcode(),
        0
    );
}

#[tokio::test]
async fn refresh_token_has_a_fixed_horizon() {
    let h = Harness::start().await;
    let login = h.login(MockGrant::default()).await;
    h.mock.advance(29 * DAY);
    h.refresh(&login.refresh_token).await.success();
    h.mock.advance(DAY);
    h.refresh(&login.refresh_token).await.assert_error(42002);
}

#[tokio::test]
async fn rotation_issues_new_refresh_tokens_with_the_original_horizon() {
    let h = Harness::with(MockConfig {
        rotate_refresh_tokens: true,
        refresh_token_ttl: 10 * DAY,
        ..MockConfig::default()
    })
    .await;
    let login = h.login(MockGrant::default()).await;
    h.mock.advance(6 * DAY);
    let first = Tokens::from(&h.refresh(&login.refresh_token).await.success());
    assert_ne!(first.refresh_token, login.refresh_token);
    h.refresh(&login.refresh_token).await.assert_error(40030);

    h.mock.advance(3 * DAY);
    let second = Tokens::from(&h.refresh(&first.refresh_token).await.success());
    assert_ne!(second.refresh_token, first.refresh_token);

    // Ten days after the exchange, not ten days after the last refresh.
    h.mock.advance(DAY);
    h.refresh(&second.refresh_token).await.assert_error(42002);
}

#[tokio::test]
async fn refresh_checks_app_and_token() {
    let h = Harness::start().await;
    let appid = h.mock.appid().to_owned();
    let path = "/sns/oauth2/refresh_token";
    h.get(
        path,
        &[
            ("appid", "wxother"),
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
        ],
    )
    .await
    .assert_error(40013);
    h.get(path, &[("appid", &appid), ("grant_type", "refresh_token")])
        .await
        .assert_error(41003);
    h.refresh("not-a-token").await.assert_error(40030);
}

#[tokio::test]
async fn revoke_ends_every_token_of_the_user() {
    let h = Harness::start().await;
    let first = h.login(user("o_gone")).await;
    let second = h.login(user("o_gone")).await;
    let other = h.login(user("o_stays")).await;

    h.mock.revoke("o_gone");
    for login in [&first, &second] {
        h.refresh(&login.refresh_token).await.assert_error(40030);
        h.auth(&login.access_token, "o_gone")
            .await
            .assert_error(40001);
        h.userinfo(&login.access_token, "o_gone")
            .await
            .assert_error(40001);
    }
    assert_eq!(h.auth(&other.access_token, "o_stays").await.errcode(), 0);
    // The user can log in again.
    let again = h.login(user("o_gone")).await;
    assert_eq!(h.auth(&again.access_token, "o_gone").await.errcode(), 0);
}

#[tokio::test]
async fn auth_answers_ok_expired_and_wrong_openid() {
    let h = Harness::start().await;
    let login = h.login(user("o_auth")).await;

    let ok = h.auth(&login.access_token, "o_auth").await;
    assert_eq!(ok.content_type.as_deref(), Some("text/plain"));
    let json = ok.json();
    assert_eq!(json["errcode"], 0);
    assert_eq!(json["errmsg"], "ok");

    h.auth(&login.access_token, "o_someone_else")
        .await
        .assert_error(40003);
    h.auth("unknown-token", "o_auth").await.assert_error(40001);
    h.get("/sns/auth", &[("openid", "o_auth")])
        .await
        .assert_error(41001);

    h.mock.advance(Duration::from_secs(7200));
    h.auth(&login.access_token, "o_auth")
        .await
        .assert_error(42001);
}

#[tokio::test]
async fn userinfo_returns_the_profile() {
    let h = Harness::start().await;
    let login = h
        .login(MockGrant {
            openid: Some("o_profile".into()),
            unionid: Some("u_profile".into()),
            ..MockGrant::default()
        })
        .await;

    let json = h.userinfo(&login.access_token, "o_profile").await.success();
    assert_eq!(json["openid"], "o_profile");
    assert_eq!(json["nickname"], "WeChat User");
    assert_eq!(json["headimgurl"], "https://thirdwx.qlogo.cn/mmopen/mock/0");
    assert_eq!(json["sex"], 0);
    assert_eq!(json["city"], "");
    assert_eq!(json["privilege"], serde_json::json!([]));
    assert_eq!(json["language"], "zh_CN");
    assert_eq!(json["unionid"], "u_profile");

    h.mock.set_profile(
        "o_profile",
        MockProfile {
            nickname: "A\u{1}\"li\nce\"".into(),
            city: "深圳".into(),
            privilege: vec!["chinaunicom".into()],
            ..MockProfile::default()
        },
    );
    let json = h.userinfo(&login.access_token, "o_profile").await.success();
    assert_eq!(json["nickname"], "A\u{1}\"li\nce\"");
    assert_eq!(json["city"], "深圳");
    assert_eq!(json["privilege"], serde_json::json!(["chinaunicom"]));
}

#[tokio::test]
async fn userinfo_needs_a_userinfo_or_login_scope() {
    let h = Harness::start().await;
    let base = h
        .login(MockGrant {
            openid: Some("o_base".into()),
            scope: Some("snsapi_base".into()),
            ..MockGrant::default()
        })
        .await;
    assert_eq!(base.scope, "snsapi_base,");
    h.userinfo(&base.access_token, "o_base")
        .await
        .assert_error(48001);

    let website = h
        .login(MockGrant {
            openid: Some("o_web".into()),
            scope: Some("snsapi_login".into()),
            ..MockGrant::default()
        })
        .await;
    h.userinfo(&website.access_token, "o_web").await.success();
}

#[tokio::test]
async fn userinfo_checks_the_token_like_auth() {
    let h = Harness::start().await;
    let login = h.login(user("o_ui")).await;
    h.userinfo(&login.access_token, "o_other")
        .await
        .assert_error(40003);
    h.mock.advance(2 * HOUR);
    h.userinfo(&login.access_token, "o_ui")
        .await
        .assert_error(42001);
}

#[tokio::test]
async fn the_clock_is_frozen_by_default_and_can_follow_real_time() {
    let frozen = wechat_mock::MockWeChat::start(MockConfig::default())
        .await
        .unwrap();
    let t0 = frozen.now();
    assert_eq!(frozen.now(), t0, "a frozen clock moves only when advanced");
    frozen.advance(Duration::from_secs(10));
    assert_eq!(frozen.now(), t0 + Duration::from_secs(10));

    let running = wechat_mock::MockWeChat::start(MockConfig {
        real_time: true,
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let t0 = running.now();
    assert!(running.now() >= t0, "real time never goes back");
    // It moves by itself (a frozen clock would not): wait for it, at most 5 s.
    let mut moved = false;
    for _ in 0..5_000 {
        if running.now() > t0 {
            moved = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(moved, "a real-time clock moves without being advanced");
    let t0 = running.now();
    running.advance(Duration::from_secs(10));
    assert!(
        running.now() >= t0 + Duration::from_secs(10),
        "advances add to it"
    );
}
