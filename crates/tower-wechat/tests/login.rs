//! End to end, logging in: the code flows of the mobile app and the Mini Program, the website
//! flow, bad codes and bodies, and what an anonymous request reaches. A site built with the
//! layer and the fake WeChat over real HTTP on loopback, a manual clock moving both.

mod common;

use common::start;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use tower_wechat::AppKind;
use wechat_mock::{Endpoint, Fault};

#[tokio::test]
async fn login_then_me_then_profile() {
    let s = start().await;
    let code = s.code("o_alice").await;
    let (status, body) = s
        .post_login("/auth/wechat/login", json!({ "code": code }).to_string())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 7 * 24 * 3600);
    assert_eq!(body["user"]["openid"], "o_alice");
    assert_eq!(body["user"]["scope"], json!(["snsapi_userinfo"]));
    let serialized = body.to_string();
    assert!(!serialized.contains("access_token") && !serialized.contains("refresh_token"));

    let token = body["token"].as_str().unwrap();
    let (status, me) = s.me(token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["openid"], "o_alice");
    assert_eq!(me["session_id"].as_str().unwrap().len(), 22);

    let profile: Value = s.get("/me/profile", token).await.json().await.unwrap();
    assert_eq!(profile["openid"], "o_alice");
    assert_eq!(
        s.http
            .get(format!("{}/healthz", s.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn mini_program_login() {
    let s = start().await;
    let code = s.code_for(AppKind::MiniProgram, "o_mini", None).await;
    let (status, body) = s
        .post_login(
            "/auth/wechat/miniprogram/login",
            json!({ "code": code }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!body.to_string().contains("session_key"));
    let (status, me) = s.me(body["token"].as_str().unwrap()).await;
    assert_eq!(
        (status, me["openid"].clone()),
        (StatusCode::OK, json!("o_mini"))
    );
    assert_eq!(s.mock.calls(Endpoint::JsCode2Session), 1);
}

#[tokio::test]
async fn rejected_codes_and_malformed_bodies() {
    let s = start().await;
    let (status, body) = s
        .post_login("/auth/wechat/login", json!({ "code": "bogus" }).to_string())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"error": "invalid_code", "errcode": 40029, "message": body["message"]})
    );
    for bad in [
        "".to_string(),
        "not json".into(),
        "{}".into(),
        r#"{"code": 42}"#.into(),
        r#"{"code": ""}"#.into(),
        json!({ "code": "x".repeat(300) }).to_string(),
        json!({ "code": "has space" }).to_string(),
        "[1,2,3]".into(),
        r#"["abc"]"#.into(),
        r#""abc""#.into(),
        r#"{"code": "abc", "request_id": 7}"#.into(),
        r#"{"code": "abc", "request_id": "short"}"#.into(),
        json!({ "code": "abc", "request_id": "x".repeat(65) }).to_string(),
        json!({ "code": "abc", "request_id": "has space in it 0123" }).to_string(),
    ] {
        let (status, body) = s.post_login("/auth/wechat/login", bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["error"], "invalid_request", "{bad}");
    }
    // A large junk body is a bad request (an application's body limit may answer 413 first).
    let (status, _) = s
        .post_login("/auth/wechat/login", vec![b'{'; 32 * 1024])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        s.mock.calls(Endpoint::AccessToken),
        1,
        "malformed bodies never reach WeChat"
    );

    s.mock.inject(Endpoint::AccessToken, Fault::ErrCode(-1), 1);
    let code = s.code("o_busy").await;
    let response = s
        .post_json("/auth/wechat/login", json!({ "code": code }).to_string())
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn the_website_flow_sets_a_cookie_and_strips_the_code() {
    let s = start().await;
    let start = s
        .http
        .get(format!("{}/auth/wechat/web/start", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::FOUND);
    let binding = start.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        binding.starts_with("wechat_login_binding=") && binding.contains("HttpOnly"),
        "{binding}"
    );
    let binding = binding.split(';').next().unwrap().to_owned();
    let authorize = start.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(authorize.starts_with(&format!("{}/connect/qrconnect?", s.mock.base_url())));
    assert!(authorize.ends_with("#wechat_redirect"));
    let url = reqwest::Url::parse(&authorize).unwrap();
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    let (redirect_uri, state) = (param("redirect_uri"), param("state"));
    assert_eq!(state.len(), 59);
    assert!(state.bytes().all(|b| b.is_ascii_alphanumeric()));

    // The user scans and approves on WeChat's page.
    let page = s
        .http
        .get(url.as_str().trim_end_matches("#wechat_redirect"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let approve = s
        .http
        .get(format!("{}/connect/mock/approve", s.mock.base_url()))
        .query(&[
            ("redirect_uri", redirect_uri.as_str()),
            ("state", state.as_str()),
            ("scope", "snsapi_login"),
            ("openid", "o_judy"),
            ("appid", s.appid(AppKind::Website)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(approve.status(), StatusCode::FOUND);
    let callback = approve.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(callback.starts_with(&redirect_uri) && callback.contains("code="));

    // The callback URL alone is not enough: another browser (no binding cookie) is refused.
    let elsewhere = s.http.get(&callback).send().await.unwrap();
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        elsewhere.json::<Value>().await.unwrap()["error"],
        "invalid_state"
    );
    let in_browser = |url: &str| s.http.get(url).header(COOKIE, &binding).send();

    let done = in_browser(&callback).await.unwrap();
    assert_eq!(done.status(), StatusCode::FOUND);
    assert_eq!(
        done.headers()[LOCATION],
        "/",
        "the code is stripped from the URL"
    );
    let set: Vec<String> = done
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        set.iter()
            .any(|c| c.starts_with("wechat_login_binding=;") && c.contains("Max-Age=0")),
        "the binding cookie is cleared: {set:?}"
    );
    let cookie = set
        .iter()
        .find(|c| c.starts_with("wechat_session="))
        .unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();

    let me = s.with_cookie(reqwest::Method::GET, "/me", &pair).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.json::<Value>().await.unwrap()["openid"], "o_judy");

    // WeChat calling the callback twice gets the same session; a forged state is refused.
    assert_eq!(
        in_browser(&callback).await.unwrap().status(),
        StatusCode::FOUND
    );
    assert_eq!(s.mock.calls(Endpoint::AccessToken), 1);
    let forged = callback.replace(&state, &"A".repeat(58));
    assert_eq!(
        in_browser(&forged).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    // Declining on WeChat's page: no code.
    let declined = format!("{redirect_uri}?state={state}");
    assert_eq!(
        in_browser(&declined).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    let logout = s
        .with_cookie(reqwest::Method::POST, "/auth/logout", &pair)
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(
        logout.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = s.with_cookie(reqwest::Method::GET, "/me", &pair).await;
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn optional_mode_lets_anonymous_requests_reach_public_routes() {
    let s = start().await;
    // The app runs the layer in optional mode: public routes work without a token and even
    // with a bad one; /me (which requires the user) answers 401.
    let health = s
        .http
        .get(format!("{}/healthz", s.base))
        .bearer_auth("garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let me = s.http.get(format!("{}/me", s.base)).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(me.json::<Value>().await.unwrap()["error"], "missing_token");
}
