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
    let sealed: Value = s
        .http
        .get(format!("{}/sandbox/encrypt", s.base))
        .query(&[
            ("openid", "o_mp_phone"),
            (
                "data",
                r#"{"purePhoneNumber":"13800000000","countryCode":"86"}"#,
            ),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
