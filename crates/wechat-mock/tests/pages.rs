//! The browser flows: consent pages, approve and deny redirects, and the handle's lifecycle
//! (router embedding, shutdown).

mod common;

use common::Harness;
use url::Url;
use wechat_mock::{Endpoint, MockConfig, MockWeChat};

const CALLBACK: &str = "https://app.example.com/wechat/callback";

fn query_of(location: &str) -> Vec<(String, String)> {
    Url::parse(location)
        .expect("absolute location")
        .query_pairs()
        .into_owned()
        .collect()
}

#[tokio::test]
async fn qrconnect_shows_a_consent_page() {
    let h = Harness::start().await;
    let appid = h.mock.appid().to_owned();
    let answer = h
        .get(
            "/connect/qrconnect",
            &[
                ("appid", &appid),
                ("redirect_uri", "https://app.example.com/cb?x=<b>"),
                ("response_type", "code"),
                ("scope", "snsapi_login"),
                ("state", "abc123"),
            ],
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/html; charset=utf-8")
    );
    let page = answer.text();
    assert!(page.contains("Approve") && page.contains("Deny"));
    assert!(page.contains(&appid));
    assert!(page.contains("snsapi_login"));
    assert!(page.contains("o_mock_demo_user_000000000001"));
    assert!(page.contains("x=&lt;b&gt;"));
    assert!(!page.contains("<b>"));
    assert_eq!(h.mock.calls(Endpoint::QrConnect), 1);
}

#[tokio::test]
async fn consent_pages_reject_bad_requests() {
    let h = Harness::start().await;
    let appid = h.mock.appid().to_owned();
    let cases: [(&str, [(&str, &str); 5]); 7] = [
        (
            "/connect/qrconnect",
            [
                ("appid", "wxunknown"),
                ("redirect_uri", CALLBACK),
                ("response_type", "code"),
                ("scope", "snsapi_login"),
                ("state", "s"),
            ],
        ),
        (
            "/connect/qrconnect",
            [
                ("appid", &appid),
                ("redirect_uri", CALLBACK),
                ("response_type", "token"),
                ("scope", "snsapi_login"),
                ("state", "s"),
            ],
        ),
        (
            "/connect/qrconnect",
            [
                ("appid", &appid),
                ("redirect_uri", CALLBACK),
                ("response_type", "code"),
                ("scope", "snsapi_userinfo"),
                ("state", "s"),
            ],
        ),
        (
            "/connect/oauth2/authorize",
            [
                ("appid", &appid),
                ("redirect_uri", CALLBACK),
                ("response_type", "code"),
                ("scope", "snsapi_login"),
                ("state", "s"),
            ],
        ),
        (
            "/connect/oauth2/authorize",
            [
                ("appid", &appid),
                ("redirect_uri", "/relative/cb"),
                ("response_type", "code"),
                ("scope", "snsapi_base"),
                ("state", "s"),
            ],
        ),
        (
            "/connect/oauth2/authorize",
            [
                ("appid", &appid),
                ("redirect_uri", "ftp://app.example.com/cb"),
                ("response_type", "code"),
                ("scope", "snsapi_base"),
                ("state", "s"),
            ],
        ),
        (
            "/connect/oauth2/authorize",
            [
                ("appid", &appid),
                ("redirect_uri", CALLBACK),
                ("response_type", "code"),
                ("scope", "snsapi_userinfo"),
                ("state", "eyJhbGciOi.base64=="),
            ],
        ),
    ];
    for (path, params) in cases {
        let answer = h.get(path, &params).await;
        assert_eq!(answer.status, 400, "{path} {params:?}");
        assert_eq!(
            answer.content_type.as_deref(),
            Some("text/html; charset=utf-8")
        );
    }
    let missing = h.get("/connect/qrconnect", &[]).await;
    assert_eq!(missing.status, 400);
}

#[tokio::test]
async fn approve_redirects_with_a_code_for_that_user_and_scope() {
    let h = Harness::start().await;
    let answer = h
        .get(
            "/connect/mock/approve",
            &[
                ("redirect_uri", CALLBACK),
                ("state", "st4te"),
                ("scope", "snsapi_login"),
                ("openid", "o_web_user"),
            ],
        )
        .await;
    assert_eq!(answer.status, 302);
    let location = answer.location.expect("location");
    assert!(
        location.starts_with(&format!("{CALLBACK}?code=")),
        "{location}"
    );
    let query = query_of(&location);
    assert_eq!(query[0].0, "code");
    assert_eq!(query[1], ("state".to_owned(), "st4te".to_owned()));

    let json = h.exchange(&query[0].1).await.success();
    assert_eq!(json["openid"], "o_web_user");
    assert_eq!(json["scope"], "snsapi_login,");
}

#[tokio::test]
async fn approve_keeps_an_existing_query_and_omits_an_empty_state() {
    let h = Harness::start().await;
    let answer = h
        .get(
            "/connect/mock/approve",
            &[
                ("redirect_uri", "http://localhost:3000/cb?next=%2Fhome"),
                ("state", ""),
                ("scope", "snsapi_base"),
                ("openid", ""),
            ],
        )
        .await;
    assert_eq!(answer.status, 302);
    let location = answer.location.expect("location");
    assert!(
        location.starts_with("http://localhost:3000/cb?next=%2Fhome&code="),
        "{location}"
    );
    let query = query_of(&location);
    assert_eq!(query.len(), 2, "{location}");
    let json = h.exchange(&query[1].1).await.success();
    // An empty openid means a new random user.
    assert!(json["openid"].as_str().unwrap().starts_with('o'));
    assert_eq!(json["scope"], "snsapi_base,");
}

#[tokio::test]
async fn deny_redirects_with_the_state_only() {
    let h = Harness::start().await;
    let answer = h
        .get(
            "/connect/mock/deny",
            &[("redirect_uri", CALLBACK), ("state", "st4te")],
        )
        .await;
    assert_eq!(answer.status, 302);
    assert_eq!(
        answer.location.as_deref(),
        Some(format!("{CALLBACK}?state=st4te").as_str())
    );

    let answer = h
        .get(
            "/connect/mock/deny",
            &[("redirect_uri", "javascript:alert(1)")],
        )
        .await;
    assert_eq!(answer.status, 400);
}

#[tokio::test]
async fn authorize_page_buttons_lead_to_approve_and_deny() {
    let h = Harness::start().await;
    let appid = h.mock.appid().to_owned();
    let page = h
        .get(
            "/connect/oauth2/authorize",
            &[
                ("appid", &appid),
                ("redirect_uri", CALLBACK),
                ("response_type", "code"),
                ("scope", "snsapi_userinfo"),
                ("state", "xyz"),
            ],
        )
        .await
        .text();
    let page_url = h.url("/connect/oauth2/authorize", &[]);
    for button in ["approve", "deny"] {
        let action = format!("action=\"../mock/{button}\"");
        assert!(page.contains(&action), "{page}");
        let resolved = page_url.join(&format!("../mock/{button}")).unwrap();
        assert_eq!(resolved.path(), format!("/connect/mock/{button}"));
    }
    assert!(page.contains("name=\"scope\" value=\"snsapi_userinfo\""));
    assert!(page.contains("name=\"state\" value=\"xyz\""));
}

#[tokio::test]
async fn router_serves_the_same_state_elsewhere() {
    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().nest("/wx", mock.router());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let code = mock.mint_code(Default::default());
    let url = Url::parse_with_params(
        &format!("http://{addr}/wx/sns/oauth2/access_token"),
        &[
            ("appid", mock.appid()),
            ("secret", mock.secret()),
            ("code", &code),
            ("grant_type", "authorization_code"),
        ],
    )
    .unwrap();
    let body = reqwest::get(url).await.unwrap().bytes().await.unwrap();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(json["access_token"].is_string(), "{json}");
    assert_eq!(mock.calls(Endpoint::AccessToken), 1);
    server.abort();
}

#[tokio::test]
async fn shutdown_stops_the_server_for_every_handle() {
    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    let clone = mock.clone();
    let url = format!("{}/mock/stats", mock.base_url());
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);
    mock.shutdown().await;
    assert!(reqwest::get(&url).await.is_err());
    // The state is still readable through the remaining handle.
    assert_eq!(clone.stats().len(), Endpoint::ALL.len());
}

#[tokio::test]
async fn base_url_has_no_trailing_slash() {
    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    assert_eq!(mock.base_url(), format!("http://{}", mock.addr()));
    assert!(mock.addr().ip().is_loopback());
    assert_ne!(mock.addr().port(), 0);
}
