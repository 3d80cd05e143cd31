//! The login endpoints' logic without HTTP routing: the Official Account flow (unbound state),
//! and how each WeChat answer to a Mini Program login maps to a status.

use bytes::Bytes;
use http::{Response, StatusCode, header};
use tower_wechat::{
    CodeLogin, KeyRing, LoginEndpoints, LoginFailure, SigningKey, StateError, WeChatAuthLayer,
    WebCallback, WebFlow,
};
use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant, MockWeChat};
use wechat_oauth::{AppId, AppSecret, Client, OfficialAccountScope};

async fn setup() -> (LoginEndpoints, MockWeChat) {
    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    let client = Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
        .api_base(mock.base_url())
        .open_base(mock.base_url())
        .build()
        .unwrap();
    let keys = KeyRing::new(SigningKey::hs256("k1", &[3; 32]).unwrap());
    let layer = WeChatAuthLayer::builder(client, keys).build().unwrap();
    let endpoints = LoginEndpoints::new(&layer)
        .state_secret(b"state secret")
        .web_flow(
            WebFlow::official_account("https://app.example/cb", OfficialAccountScope::Base)
                .after_login("/home"),
        );
    (endpoints, mock)
}

#[tokio::test]
async fn the_official_account_flow_uses_an_unbound_state() {
    let (endpoints, mock) = setup().await;
    let start = endpoints.web_start().unwrap();
    assert!(
        start.binding_cookie.is_none(),
        "WeChat's in-app browser drops cookies"
    );
    assert!(start.url.starts_with(&format!(
        "{}/connect/oauth2/authorize?appid=",
        mock.base_url()
    )));
    assert!(start.url.contains("&scope=snsapi_base&state="));
    assert!(start.url.ends_with("#wechat_redirect"));
    let state = start
        .url
        .split("&state=")
        .nth(1)
        .unwrap()
        .trim_end_matches("#wechat_redirect");

    let code = mock.mint_code(MockGrant {
        scope: Some("snsapi_base".into()),
        ..Default::default()
    });
    let callback = WebCallback::new(Some(&code), Some(state), None);
    let success = endpoints.web_callback(callback).await.unwrap();
    assert!(!success.record.scopes.allows_userinfo());
    assert_eq!(endpoints.after_login(), "/home");
    // WeChat calling the callback twice: the same session.
    let twice = endpoints.web_callback(callback).await.unwrap();
    assert_eq!(twice.record.sid, success.record.sid);
    assert!(matches!(
        endpoints
            .web_callback(WebCallback::new(Some(&code), Some("bogus"), None))
            .await,
        Err(LoginFailure::InvalidState(_))
    ));
    // The state is used: another code with it is refused, before WeChat is asked.
    let other = mock.mint_code(MockGrant::default());
    assert_eq!(
        endpoints
            .web_callback(WebCallback::new(Some(&other), Some(state), None))
            .await
            .unwrap_err(),
        LoginFailure::InvalidState(StateError::Used)
    );
    assert_eq!(mock.calls(Endpoint::AccessToken), 1);
    assert_eq!(
        endpoints
            .web_callback(WebCallback::new(None, Some(state), None))
            .await
            .unwrap_err(),
        LoginFailure::AccessDenied(None)
    );
}

fn status(failure: &LoginFailure) -> (StatusCode, Option<String>) {
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
    let code = || mock.mint_code(MockGrant::default());

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
