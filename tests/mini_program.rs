//! End to end, a Mini Program beyond login: the client's `encryptedData` opened by the example
//! server with the session's key (`POST /miniprogram/decrypt`), the sandbox playing the phone's
//! part (`GET /sandbox/encrypt`), and every refusal a 400 or 401 that never shows the key.

mod common;

use std::time::Duration;

use common::start;
use reqwest::StatusCode;
use serde_json::{Value, json};
use wechat_login::middleware::AppKind;

#[tokio::test]
async fn a_mini_program_user_opens_what_wechat_sealed_for_them_and_nothing_else() {
    let s = start().await;
    let mp = s
        .json_login(AppKind::MiniProgram, "o_mp_phone", None)
        .await
        .unwrap();
    let mobile = s
        .json_login(AppKind::MobileApp, "o_mp_phone", None)
        .await
        .unwrap();
    // The phone's part: WeChat seals the data under the user's session key.
    let sealed = s
        .get_json(
            "/sandbox/encrypt",
            &[
                ("openid", "o_mp_phone"),
                (
                    "data",
                    r#"{"purePhoneNumber":"13800000000","countryCode":"86"}"#,
                ),
            ],
        )
        .await;
    let decrypt = |token: Option<String>, body: Value| {
        let s = &s;
        async move {
            let mut request = s
                .http
                .post(format!("{}/miniprogram/decrypt", s.base))
                .json(&body);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.text().await.unwrap())
        }
    };

    let (status, body) = decrypt(Some(mp.clone()), sealed.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let opened: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(opened["purePhoneNumber"], "13800000000");
    assert_eq!(opened["watermark"]["appid"], s.appid(AppKind::MiniProgram));

    // Tampered data: the usual cause is named, nothing of the key is shown.
    let mut tampered = sealed.clone();
    tampered["iv"] = json!("AAAAAAAAAAAAAAAAAAAAAA==");
    let (status, body) = decrypt(Some(mp.clone()), tampered).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("invalid_encrypted_data") && body.contains("wx.login"),
        "{body}"
    );
    // Another kind of session holds no session key; a malformed body; no session at all.
    let (status, body) = decrypt(Some(mobile), sealed.clone()).await;
    assert_eq!(
        (status, body.contains("invalid_request")),
        (StatusCode::BAD_REQUEST, true),
        "{body}"
    );
    let (status, body) = decrypt(Some(mp.clone()), json!({"iv": 1})).await;
    assert_eq!(
        (status, body.contains("invalid_request")),
        (StatusCode::BAD_REQUEST, true),
        "{body}"
    );
    let (status, _) = decrypt(None, sealed.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Ten minutes later the same data is too old to trust.
    s.advance(Duration::from_secs(11 * 60));
    let (status, body) = decrypt(Some(mp), sealed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("too old"), "{body}");
}

/// `POST path` with a bearer token and a JSON body: the status and the body.
async fn post_as(s: &common::Server, path: &str, token: &str, body: Value) -> (StatusCode, String) {
    let response = s
        .http
        .post(format!("{}{path}", s.base))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

async fn phone_code(s: &common::Server, phone: &str) -> String {
    let body = s
        .get_json(
            "/sandbox/phone-code",
            &[("openid", "o_mp_phone"), ("phone", phone)],
        )
        .await;
    body["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_mini_program_user_gets_their_phone_number_once_per_code() {
    let s = start().await;
    let mp = s
        .json_login(AppKind::MiniProgram, "o_mp_phone", None)
        .await
        .unwrap();
    let code = phone_code(&s, "13800138000").await;
    let (status, body) = post_as(&s, "/miniprogram/phone", &mp, json!({ "code": code })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        info,
        json!({"phone_number": "13800138000", "pure_phone_number": "13800138000", "country_code": "86"})
    );
    // The code is single use.
    let (status, body) = post_as(&s, "/miniprogram/phone", &mp, json!({ "code": code })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("invalid_phone_code"), "{body}");
    assert!(!body.contains(&code), "the code is never echoed");
    // Expired after five minutes.
    let code = phone_code(&s, "13800138000").await;
    s.advance(Duration::from_secs(301));
    let (status, body) = post_as(&s, "/miniprogram/phone", &mp, json!({ "code": code })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Not the wx.login code, not a malformed body, not another kind of session.
    let login_code = s.code_for(AppKind::MiniProgram, "o_mp_phone", None).await;
    let (status, _) = post_as(&s, "/miniprogram/phone", &mp, json!({ "code": login_code })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = post_as(&s, "/miniprogram/phone", &mp, json!({ "nope": 1 })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("invalid_request"), "{body}");
    let mobile = s
        .json_login(AppKind::MobileApp, "o_mp_phone", None)
        .await
        .unwrap();
    let code = phone_code(&s, "13800138000").await;
    let (status, body) = post_as(&s, "/miniprogram/phone", &mobile, json!({ "code": code })).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // One app token served every call.
    assert_eq!(s.mock.calls(wechat_mock::Endpoint::StableToken), 1);
}

#[tokio::test]
async fn an_older_session_decrypts_with_the_newer_key_and_a_key_wechat_dropped_asks_for_wx_login() {
    let s = start().await;
    let old = s
        .json_login(AppKind::MiniProgram, "o_mp_keys", None)
        .await
        .unwrap();
    let (status, _) = post_as(&s, "/miniprogram/check-session", &old, json!({})).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // A newer wx.login of the same user replaces the key: WeChat seals under the new one.
    let _new = s
        .json_login(AppKind::MiniProgram, "o_mp_keys", None)
        .await
        .unwrap();
    let sealed = s
        .get_json(
            "/sandbox/encrypt",
            &[("openid", "o_mp_keys"), ("data", r#"{"k":"v"}"#)],
        )
        .await;
    let (status, body) = post_as(&s, "/miniprogram/decrypt", &old, sealed).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#""k":"v""#), "{body}");

    // A wx.login this server never saw: WeChat no longer knows our key.
    let appid = s.appid(AppKind::MiniProgram).to_owned();
    let unseen = s.mock.mint_code(wechat_mock::MockGrant {
        openid: Some("o_mp_keys".into()),
        appid: Some(appid.clone()),
        ..Default::default()
    });
    let secret = &s.apps.iter().find(|a| a.appid == appid).unwrap().secret;
    let url = format!(
        "{}/sns/jscode2session?appid={appid}&secret={secret}&js_code={unseen}&grant_type=authorization_code",
        s.mock.base_url()
    );
    assert!(s.http.get(url).send().await.unwrap().status().is_success());
    let response = s
        .http
        .post(format!("{}/miniprogram/check-session", s.base))
        .bearer_auth(&old)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().contains_key("www-authenticate"));
    let body = response.text().await.unwrap();
    assert!(
        body.contains("session_key_expired") && body.contains("wx.login"),
        "{body}"
    );
}
