//! The login router's paths: the defaults, a prefix, chosen paths, and paths that cannot be
//! routes (refused by the builder, not a panic in axum).

mod common;

use common::client;

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode};
use tower::ServiceExt;
use tower_wechat::{
    AppKind, BuildError, KeyRing, LoginEndpoints, LoginPaths, SigningKey, WeChatAuthLayer, WebFlow,
};
use wechat_mock::{MockConfig, MockWeChat};

const OA: &str = "wxofficialaccount01";

async fn layer(paths: LoginPaths) -> Result<(WeChatAuthLayer, MockWeChat), BuildError> {
    let mock = MockWeChat::start(MockConfig::default().with_app(OA, "oa-secret-0123456789"))
        .await
        .unwrap();
    let keys = KeyRing::new(SigningKey::hs256("k1", &[3; 32]).unwrap());
    let layer = WeChatAuthLayer::builder(client(&mock, mock.appid(), mock.secret()), keys)
        .app(
            AppKind::OfficialAccount,
            client(&mock, OA, "oa-secret-0123456789"),
        )
        .web_flow(WebFlow::at("https://app.example"))
        .login_paths(paths)
        .build()?;
    Ok((layer, mock))
}

fn app(layer: &WeChatAuthLayer) -> Router {
    LoginEndpoints::new(layer).router().layer(layer.clone())
}

/// The status of `method path` with an empty body.
async fn status(app: &Router, method: Method, path: &str) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

#[tokio::test]
async fn a_prefix_moves_every_route_and_the_scope_upgrade_url() {
    let (layer, _mock) = layer(LoginPaths::default().prefixed("/api/"))
        .await
        .unwrap();
    let app = app(&layer);
    // Each route answers at its prefixed path (a refusal of its own, not the router's 404)...
    let routes = [
        (
            Method::POST,
            "/auth/wechat/login",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Method::POST,
            "/auth/wechat/miniprogram/login",
            StatusCode::NOT_FOUND, // app_not_configured: no Mini Program here
        ),
        (Method::GET, "/auth/wechat/web/start", StatusCode::FOUND),
        (
            Method::GET,
            "/auth/wechat/web/callback",
            StatusCode::BAD_REQUEST,
        ),
        (Method::POST, "/auth/logout", StatusCode::UNAUTHORIZED),
        (Method::POST, "/auth/logout/all", StatusCode::UNAUTHORIZED),
    ];
    for (method, path, expected) in routes {
        let prefixed = format!("/api{path}");
        assert_eq!(
            status(&app, method.clone(), &prefixed).await,
            expected,
            "{prefixed}"
        );
        // ...and nothing answers at the unprefixed one.
        assert_eq!(
            status(&app, method, path).await,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // A browser's failure page links to a new login at the prefixed start.
    let page = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/api/auth/wechat/web/callback?state=bogus&code=c")
                .header("accept", "text/html")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    let page = axum::body::to_bytes(page.into_body(), 64 * 1024)
        .await
        .unwrap();
    let page = String::from_utf8(page.to_vec()).unwrap();
    assert!(
        page.contains("<a href=\"/api/auth/wechat/web/start\">Log in again</a>"),
        "{page}"
    );
    let upgrade = LoginEndpoints::new(&layer)
        .reauthorize_url("/profile")
        .unwrap();
    assert!(
        upgrade.starts_with("/api/auth/wechat/web/start?app=oa&scope=snsapi_userinfo"),
        "{upgrade}"
    );
}

#[tokio::test]
async fn chosen_paths_are_served_as_given() {
    let mut paths = LoginPaths::default();
    paths.logout = "/signout".into();
    let (layer, _mock) = layer(paths).await.unwrap();
    let app = app(&layer);
    assert_eq!(
        status(&app, Method::POST, "/signout").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&app, Method::POST, "/auth/logout").await,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn paths_that_cannot_be_routes_are_a_build_error() {
    let mut same = LoginPaths::default();
    same.logout_all = "/auth/logout".into();
    let mut relative = LoginPaths::default();
    relative.login = "auth/login".into();
    let mut capture = LoginPaths::default();
    capture.login = "/auth/{app}/login".into();
    for paths in [same, relative, capture] {
        let error = layer(paths).await.expect_err("refused");
        assert!(matches!(error, BuildError::Paths(_)), "{error}");
    }
}

/// The web flow's public URL decides the callback (with the login paths) and the session
/// cookie's `Secure`. Breaks if the callback ignores a path prefix, if `Secure` stays on over
/// plain HTTP (browsers then drop the cookie: the login loops) or off over HTTPS, or if a URL
/// that cannot be a callback is accepted.
#[tokio::test]
async fn the_public_url_decides_the_callback_and_the_cookies_secure() {
    let mock = MockWeChat::start(MockConfig::default().with_app(OA, "oa-secret-0123456789"))
        .await
        .unwrap();
    let build = |url: &str| {
        let keys = KeyRing::new(SigningKey::hs256("k1", &[3; 32]).unwrap());
        WeChatAuthLayer::builder(client(&mock, mock.appid(), mock.secret()), keys)
            .app(
                AppKind::OfficialAccount,
                client(&mock, OA, "oa-secret-0123456789"),
            )
            .web_flow(WebFlow::at(url))
            .login_paths(LoginPaths::default().prefixed("/api"))
            .build()
    };
    for (url, secure) in [
        ("https://app.example/", true),
        ("http://127.0.0.1:3000", false),
    ] {
        let layer = build(url).unwrap();
        assert_eq!(layer.cookie().secure, secure, "{url}");
        let start = status_and_location(&app(&layer), "/api/auth/wechat/web/start?app=oa").await;
        let redirect = format!("{}/api/auth/wechat/web/callback", url.trim_end_matches('/'));
        let encoded: String = url::form_urlencoded::byte_serialize(redirect.as_bytes()).collect();
        assert!(
            start.contains(&format!("redirect_uri={encoded}")),
            "{start}"
        );
    }
    for bad in [
        "example.com",
        "ftp://example.com",
        "https://example.com/?a=b",
        "https://",
    ] {
        let error = build(bad).expect_err(bad);
        assert!(matches!(error, BuildError::WebFlow(_)), "{bad}: {error}");
    }
}

async fn status_and_location(app: &Router, path: &str) -> String {
    let request = Request::builder().uri(path).body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FOUND, "{path}");
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// The browser's failure page speaks the browser's language, and an application's own pages
/// replace the built-in ones while the status stays the library's. Breaks if negotiation is
/// dropped (a Chinese browser gets English) or if `error_pages` is ignored.
#[tokio::test]
async fn failure_pages_follow_the_browsers_language_or_the_applications_own() {
    struct Branded;
    impl tower_wechat::ErrorPages for Branded {
        fn page(
            &self,
            error: &tower_wechat::AuthError,
            again: &str,
            _: &http::HeaderMap,
        ) -> String {
            format!("<p>branded {} {again}</p>", error.code())
        }
    }
    let page = |app: Router, language: &'static str| async move {
        let response = app
            .oneshot(
                Request::builder()
                    .uri("/auth/wechat/web/callback?state=bogus&code=c")
                    .header("accept", "text/html")
                    .header("accept-language", language)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    };
    let (layer, _mock) = layer(LoginPaths::default()).await.unwrap();
    let chinese = page(app(&layer), "zh-CN,zh;q=0.9,en;q=0.8").await;
    assert!(chinese.contains("此登录链接无法使用"), "{chinese}");
    let english = page(app(&layer), "en-GB").await;
    assert!(
        english.contains("This login link cannot be used"),
        "{english}"
    );

    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    let keys = KeyRing::new(SigningKey::hs256("k1", &[3; 32]).unwrap());
    let branded = WeChatAuthLayer::builder(client(&mock, mock.appid(), mock.secret()), keys)
        .app(AppKind::Website, client(&mock, mock.appid(), mock.secret()))
        .web_flow(WebFlow::at("https://app.example"))
        .error_pages(Branded)
        .build()
        .unwrap();
    let own = page(app(&branded), "zh-CN").await;
    assert_eq!(own, "<p>branded invalid_state /auth/wechat/web/start</p>");
}
