//! The login endpoints' logic without HTTP routing: the Official Account flow (unbound state),
//! and how each WeChat answer to a Mini Program login maps to a status.

mod common;

use common::client;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use tower_wechat::{
    AppKind, AuthError, CodeLogin, KeyRing, LoginEndpoints, SigningKey, StartRequest, StateError,
    WeChatAuthLayer, WebCallback, WebFlow,
};
use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant, MockWeChat};
use wechat_oauth::OfficialAccountScope;

const OA: &str = "wxofficialaccount01";
const MP: &str = "wxminiprogram00001";

fn grant(appid: &str) -> MockGrant {
    MockGrant {
        appid: Some(appid.into()),
        ..MockGrant::default()
    }
}

async fn setup() -> (LoginEndpoints, MockWeChat) {
    let config = MockConfig::default()
        .with_app(OA, "oa-secret-0123456789")
        .with_app(MP, "mp-secret-0123456789");
    let mock = MockWeChat::start(config).await.unwrap();
    let keys = KeyRing::new(SigningKey::hs256("k1", &[3; 32]).unwrap());
    let layer = WeChatAuthLayer::builder(client(&mock, mock.appid(), mock.secret()), keys)
        .app(
            AppKind::OfficialAccount,
            client(&mock, OA, "oa-secret-0123456789"),
        )
        .app(
            AppKind::MiniProgram,
            client(&mock, MP, "mp-secret-0123456789"),
        )
        .web_flow(
            WebFlow::at("https://app.example")
                .official_account_scope(OfficialAccountScope::Base)
                .after_login("/home"),
        )
        .build()
        .unwrap();
    let endpoints = LoginEndpoints::new(&layer);
    (endpoints, mock)
}

#[tokio::test]
async fn the_official_account_flow_uses_an_unbound_state() {
    let (endpoints, mock) = setup().await;
    let start = endpoints.web_start(StartRequest::default()).unwrap();
    assert!(
        start.binding_cookie.is_none(),
        "WeChat's in-app browser drops cookies"
    );
    assert!(start.url.starts_with(&format!(
        "{}/connect/oauth2/authorize?appid=",
        mock.base_url()
    )));
    assert!(start.url.contains(&format!("appid={OA}&")));
    assert!(start.url.contains("&scope=snsapi_base&state="));
    assert!(start.url.ends_with("&connect_redirect=1#wechat_redirect"));
    let state = start
        .url
        .split("&state=")
        .nth(1)
        .unwrap()
        .trim_end_matches("#wechat_redirect")
        .trim_end_matches("&connect_redirect=1");

    let code = mock.mint_code(MockGrant {
        scope: Some("snsapi_base".into()),
        ..grant(OA)
    });
    // Opened outside WeChat's browser (an attacker's link on a desktop): refused, nothing used.
    let desktop = WebCallback::new(Some(&code), Some(state), None);
    assert_eq!(
        endpoints.web_callback(desktop).await.unwrap_err(),
        AuthError::InvalidState(StateError::Invalid)
    );
    assert_eq!(mock.calls(Endpoint::AccessToken), 0);
    let callback = WebCallback::new(Some(&code), Some(state), None).in_wechat(true);
    let success = endpoints.web_callback(callback).await.unwrap();
    assert!(!success.record.scopes.allows_userinfo());
    assert_eq!(success.app, AppKind::OfficialAccount);
    assert_eq!(success.record.appid.as_str(), OA);
    assert_eq!(success.return_to.as_deref(), Some("/home"));
    // WeChat calling the callback twice: the same session.
    let twice = endpoints.web_callback(callback).await.unwrap();
    assert_eq!(twice.record.sid, success.record.sid);
    assert!(matches!(
        endpoints
            .web_callback(WebCallback::new(Some(&code), Some("bogus"), None))
            .await,
        Err(AuthError::InvalidState(_))
    ));
    // The state is used: another code with it is refused, before WeChat is asked.
    let other = mock.mint_code(grant(OA));
    assert_eq!(
        endpoints
            .web_callback(WebCallback::new(Some(&other), Some(state), None).in_wechat(true))
            .await
            .unwrap_err(),
        AuthError::InvalidState(StateError::Used)
    );
    assert_eq!(mock.calls(Endpoint::AccessToken), 1);
    assert_eq!(
        endpoints
            .web_callback(WebCallback::new(None, Some(state), None).in_wechat(true))
            .await
            .unwrap_err(),
        AuthError::AccessDenied(None)
    );
}

fn status(failure: &AuthError) -> (StatusCode, Option<String>) {
    let response: Response<Bytes> = failure.to_response();
    let retry = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status(), retry)
}

#[tokio::test]
async fn mini_program_login_failures_map_to_statuses() {
    let (endpoints, mock) = setup().await;
    let code = || mock.mint_code(grant(MP));

    let invalid = endpoints
        .login_mini_program(CodeLogin::new("unknown-code"))
        .await
        .unwrap_err();
    assert_eq!(status(&invalid), (StatusCode::UNAUTHORIZED, None));

    mock.inject(Endpoint::JsCode2Session, Fault::ErrCode(-1), 1);
    let busy = endpoints
        .login_mini_program(CodeLogin::new(&code()))
        .await
        .unwrap_err();
    let (busy_status, retry_after) = status(&busy);
    assert_eq!(busy_status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after.is_some());

    mock.inject(Endpoint::JsCode2Session, Fault::ErrCode(40226), 1);
    let blocked = endpoints
        .login_mini_program(CodeLogin::new(&code()))
        .await
        .unwrap_err();
    assert_eq!(status(&blocked), (StatusCode::FORBIDDEN, None));

    mock.inject(Endpoint::JsCode2Session, Fault::ErrCode(40013), 1);
    let misconfigured = endpoints
        .login_mini_program(CodeLogin::new(&code()))
        .await
        .unwrap_err();
    assert_eq!(status(&misconfigured).0, StatusCode::INTERNAL_SERVER_ERROR);

    for bad in ["", "has space", &"x".repeat(300), "émoji"] {
        let failure = endpoints
            .login_mini_program(CodeLogin::new(bad))
            .await
            .unwrap_err();
        assert_eq!(status(&failure), (StatusCode::BAD_REQUEST, None), "{bad}");
    }
    assert_eq!(
        mock.calls(Endpoint::JsCode2Session),
        4,
        "bad codes never reach WeChat"
    );
    endpoints
        .login_mini_program(CodeLogin::new(&code()))
        .await
        .expect("and a good one works");
}
