//! One layer for every WeChat client, end to end through a site built with it and the fake
//! WeChat: a code opens a session only at its own app's endpoint, snapshot users, the scope
//! upgrade, where the browser comes back, and the Official Account callback's rules.

mod common;

use std::time::Duration;

use common::{query_param, session_cookie, start};
use reqwest::StatusCode;
use reqwest::header::{LOCATION, USER_AGENT};
use serde_json::{Value, json};
use tower_wechat::AppKind;
use wechat_mock::{Endpoint, MockGrant};

/// A JSON login to the app of `kind`: the token, or the failure's status and body.
#[tokio::test]
async fn a_code_only_opens_a_session_at_its_own_apps_endpoint() {
    let s = start().await;
    let mp_code = s.code_for(AppKind::MiniProgram, "o_cross", None).await;
    let (status, body) = s
        .post_login("/auth/wechat/login", json!({ "code": mp_code }).to_string())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_code");
    assert_eq!(body["errcode"], 40029);
    let mobile_code = s.code("o_cross").await;
    let (status, body) = s
        .post_login(
            "/auth/wechat/miniprogram/login",
            json!({ "code": mobile_code }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(
        s.mock
            .app_calls(s.appid(AppKind::MiniProgram), Endpoint::AccessToken),
        0
    );
    assert_eq!(
        s.mock
            .app_calls(s.appid(AppKind::MobileApp), Endpoint::JsCode2Session),
        0,
        "each endpoint asks WeChat with its own app only"
    );
}

#[tokio::test]
async fn a_snapshot_user_gets_no_session_and_is_told_to_open_the_real_page() {
    let s = start().await;
    let start = s
        .get_in_wechat(&format!("{}/auth/wechat/web/start", s.base))
        .await;
    let authorize = start.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(
        query_param(&authorize, "appid").unwrap(),
        s.appid(AppKind::OfficialAccount)
    );
    // WeChat's snapshot mode: the page was opened as a preview, the code is a virtual user's.
    let code = s.mock.mint_code(MockGrant {
        scope: Some("snsapi_base".into()),
        snapshot_user: true,
        appid: Some(s.appid(AppKind::OfficialAccount).into()),
        ..MockGrant::default()
    });
    let callback = format!(
        "{}?code={code}&state={}",
        query_param(&authorize, "redirect_uri").unwrap(),
        query_param(&authorize, "state").unwrap()
    );
    let json = s.get_in_wechat(&callback).await;
    assert_eq!(json.status(), StatusCode::FORBIDDEN);
    assert!(session_cookie(&json).is_none());
    let body: Value = json.json().await.unwrap();
    assert_eq!(body["error"], "snapshot_user");
    assert_eq!(body["snapshot"], true);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("open the page in WeChat")
    );
}

#[tokio::test]
async fn a_base_scope_session_gets_the_url_that_upgrades_it_and_comes_back() {
    let s = start().await;
    let (done, _) = s
        .browser_login(
            &[("scope", "snsapi_base"), ("return_to", "/orders/7")],
            true,
            "o_base",
            None,
        )
        .await;
    assert_eq!(done.headers()[LOCATION], "/orders/7");
    let cookie = session_cookie(&done).unwrap();
    let profile = s
        .with_cookie(
            reqwest::Method::GET,
            "/me/profile?return_to=/orders/7",
            &cookie,
        )
        .await;
    assert_eq!(profile.status(), StatusCode::FORBIDDEN);
    let body: Value = profile.json().await.unwrap();
    assert_eq!(body["error"], "scope_insufficient");
    let reauthorize = body["reauthorize"].as_str().unwrap().to_owned();
    assert!(
        reauthorize.starts_with("/auth/wechat/web/start?"),
        "{reauthorize}"
    );

    // Following it: the Official Account asks for the profile...
    let start = s.get_in_wechat(&format!("{}{reauthorize}", s.base)).await;
    let authorize = start.headers()[LOCATION].to_str().unwrap().to_owned();
    assert_eq!(
        query_param(&authorize, "appid").unwrap(),
        s.appid(AppKind::OfficialAccount)
    );
    assert_eq!(query_param(&authorize, "scope").unwrap(), "snsapi_userinfo");
    assert!(authorize.contains("connect_redirect=1"));
    // ...and comes back to the same page, with a session that may read it.
    let callback = s.approve_url(&authorize, "o_base", None).await;
    let upgraded = s.get_in_wechat(&callback).await;
    assert_eq!(upgraded.headers()[LOCATION], "/orders/7");
    let cookie = session_cookie(&upgraded).unwrap();
    let profile = s
        .with_cookie(reqwest::Method::GET, "/me/profile", &cookie)
        .await;
    assert_eq!(profile.status(), StatusCode::OK);
}

#[tokio::test]
async fn return_to_never_leaves_the_site_and_cannot_be_changed_on_the_way() {
    let s = start().await;
    for (asked, landed) in [
        ("/account/settings?tab=2", "/account/settings?tab=2"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("http:/evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
        ("", "/"),
    ] {
        let (done, _) = s
            .browser_login(&[("return_to", asked)], false, "o_rt", None)
            .await;
        assert_eq!(done.status(), StatusCode::FOUND, "{asked:?}");
        assert_eq!(done.headers()[LOCATION], landed, "{asked:?}");
    }
    // A return_to changed in the callback URL breaks the state's MAC.
    let start = s
        .http
        .get(format!("{}/auth/wechat/web/start", s.base))
        .query(&[("return_to", "/inbox")])
        .send()
        .await
        .unwrap();
    let binding = common::first_cookie(&start);
    let authorize = start.headers()[LOCATION].to_str().unwrap().to_owned();
    let callback = s.approve_url(&authorize, "o_rt", None).await;
    assert_eq!(query_param(&callback, "return_to").unwrap(), "/inbox");
    let tampered = callback.replace("return_to=%2Finbox", "return_to=%2F%2Fevil.example");
    assert_ne!(tampered, callback);
    let refused = s
        .http
        .get(&tampered)
        .header("cookie", &binding)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"],
        "invalid_state"
    );
}

/// An Official Account callback carries no proof of the browser that started the login (WeChat's
/// in-app browser drops cookies), so one opened outside WeChat — an attacker's own callback URL
/// in a victim's desktop browser — is refused like a bad state, and used by nothing.
#[tokio::test]
async fn an_official_account_callback_outside_wechat_is_refused() {
    let s = start().await;
    let start = s
        .get_in_wechat(&format!("{}/auth/wechat/web/start?app=oa", s.base))
        .await;
    let authorize = start.headers()[LOCATION].to_str().unwrap().to_owned();
    let callback = s.approve_url(&authorize, "o_attacker", None).await;
    let desktop = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0 Safari/537.36";
    for user_agent in [Some(desktop), None] {
        let mut request = s.http.get(&callback);
        if let Some(user_agent) = user_agent {
            request = request.header(USER_AGENT, user_agent);
        }
        let refused = request.send().await.unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert!(session_cookie(&refused).is_none());
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["error"], "invalid_state");
    }
    assert_eq!(s.mock.calls(wechat_mock::Endpoint::AccessToken), 0);
    // In WeChat's browser the same callback logs in.
    let in_wechat = s.get_in_wechat(&callback).await;
    assert_eq!(in_wechat.status(), StatusCode::FOUND);
    let cookie = session_cookie(&in_wechat).unwrap();
    let me = s.with_cookie(reqwest::Method::GET, "/me", &cookie).await;
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["app"], "oa");
}

/// An Official Account callback carries only its state as proof, so its retry window is short:
/// WeChat's browser repeating the callback within 5 s gets the same session from the one
/// exchange, and a millisecond later the URL opens nothing. Break to see it fail: the callback
/// given the code's 60 s window (`callback_retry_window` ignored), or repeats not honoured.
#[tokio::test]
async fn an_official_account_callback_is_repeatable_for_five_seconds_only() {
    let s = start().await;
    let start = s
        .get_in_wechat(&format!("{}/auth/wechat/web/start?app=oa", s.base))
        .await;
    let authorize = start.headers()[LOCATION].to_str().unwrap().to_owned();
    let callback = s.approve_url(&authorize, "o_repeat", None).await;
    let first = s.get_in_wechat(&callback).await;
    assert_eq!(first.status(), StatusCode::FOUND);
    let session = s.me_by_cookie(&session_cookie(&first).unwrap()).await.1["session_id"].clone();
    assert!(session.is_string());

    s.advance(Duration::from_secs(5));
    let repeated = s.get_in_wechat(&callback).await;
    assert_eq!(repeated.status(), StatusCode::FOUND);
    let again = s.me_by_cookie(&session_cookie(&repeated).unwrap()).await;
    assert_eq!(again.1["session_id"], session, "the same session");

    s.advance(Duration::from_millis(1));
    let late = s.get_in_wechat(&callback).await;
    let status = late.status();
    assert!(session_cookie(&late).is_none());
    let body: Value = late.json().await.unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_code");
    assert_eq!(s.mock.calls(Endpoint::AccessToken), 1, "one exchange");
}
