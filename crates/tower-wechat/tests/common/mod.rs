//! What the crate's integration tests share: a client of one app of the fake WeChat, and a
//! small site — the login endpoints, `GET /healthz`, `GET /me` and `GET /me/profile` behind the layer and the
//! security headers, on `tower_wechat::serve` — serving four apps on one manual clock.
#![allow(dead_code, unused_imports)]

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tower_wechat::{
    AppKind, AuthError, KeyRing, LoginEndpoints, LoginLimits, ScanLogin, ServeLimits, SigningKey,
    WeChatAuthLayer, WeChatUser, WebFlow, security_headers,
};
use wechat_mock::{MockConfig, MockPushTarget, MockWeChat};
use wechat_oauth::{AppId, AppSecret, Client, Lang, ManualClock, PushMode};
use wechat_sessions::{MokaStore, SessionStore, SharedStore};

pub use wechat_login_test_support::site::{
    IN_WECHAT, Site, SiteParts, first_cookie, many_clients, query_param, session_cookie,
};

/// The Official Account's server configuration: the token and EncodingAESKey (safe mode).
pub const OA_TOKEN: &str = "scan-test-token";
pub const OA_AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

/// The session tokens' signing secret.
pub const SECRET: &[u8] = b"e2e-session-secret-0123456789abcdef";
pub const HOUR: Duration = Duration::from_secs(3600);

/// The apps served besides the fake WeChat's own (the mobile app).
pub const OTHER_APPS: [(AppKind, &str, &str); 3] = [
    (
        AppKind::Website,
        "wxtestwebsite0001",
        "test-web-secret-0123456789abcdef",
    ),
    (
        AppKind::OfficialAccount,
        "wxtestofficial001",
        "test-oa-secret-0123456789abcdefg",
    ),
    (
        AppKind::MiniProgram,
        "wxtestminiprog001",
        "test-mp-secret-0123456789abcdefg",
    ),
];

/// A client of the app `appid` (with `secret`) at the fake WeChat `mock`.
pub fn client(mock: &MockWeChat, appid: &str, secret: &str) -> Client {
    Client::builder(AppId::new(appid), AppSecret::new(secret))
        .api_base(mock.base_url())
        .open_base(mock.base_url())
        .mp_base(mock.base_url())
        .build()
        .unwrap()
}

pub async fn start() -> Site {
    start_with(MockConfig::default()).await
}

pub async fn start_with(mock_config: MockConfig) -> Site {
    start_configured(mock_config, LoginLimits::default(), many_clients()).await
}

/// The site with its own fake WeChat (serving the four apps), sessions in memory.
pub async fn start_configured(
    mut mock_config: MockConfig,
    login_limits: LoginLimits,
    serve_limits: ServeLimits,
) -> Site {
    for (_, appid, secret) in OTHER_APPS {
        mock_config = mock_config.with_app(appid, secret);
    }
    let mock = MockWeChat::start(mock_config).await.unwrap();
    let clock = ManualClock::new(mock.now());
    let store = MokaStore::builder().clock(Arc::new(clock.clone())).build();
    start_on(mock, clock, store, login_limits, serve_limits).await
}

/// The site over `mock`, on `clock`, with sessions in `store`.
pub async fn start_on<St: SharedStore>(
    mock: MockWeChat,
    clock: ManualClock,
    store: St,
    login_limits: LoginLimits,
    serve_limits: ServeLimits,
) -> Site<St> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let client = |appid: &str, secret: &str| {
        Client::builder(AppId::new(appid), AppSecret::new(secret))
            .api_base(mock.base_url())
            .open_base(mock.base_url())
            .mp_base(mock.base_url())
            .clock(Arc::new(clock.clone()))
            .build()
            .unwrap()
    };
    let mut appids = vec![(AppKind::MobileApp, mock.appid().to_owned())];
    let keys = KeyRing::new(SigningKey::hs256("k1", SECRET).unwrap());
    let mut builder = WeChatAuthLayer::builder(client(mock.appid(), mock.secret()), keys);
    for (kind, appid, secret) in OTHER_APPS {
        builder = builder.app(kind, client(appid, secret));
        appids.push((kind, appid.to_owned()));
    }
    let auth = builder
        .store(store)
        .login_limits(login_limits)
        .web_flow(WebFlow::at(&base))
        .scan_login(
            ScanLogin::new(OA_TOKEN)
                .encoding_aes_key(OA_AES_KEY, PushMode::Safe)
                .start_limits(LoginLimits::unlimited())
                .sandbox(mock.base_url()),
        )
        .build()
        .unwrap();
    // The Official Account's server URL, as its settings at WeChat name it.
    mock.set_push_target(
        OTHER_APPS[1].1,
        MockPushTarget {
            url: format!("{base}/auth/wechat/scan/events"),
            token: OA_TOKEN.to_owned(),
            encoding_aes_key: Some(OA_AES_KEY.to_owned()),
        },
    );
    let endpoints = LoginEndpoints::new(&auth);
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/me", get(me))
        .route("/me/profile", get(profile::<St>))
        .with_state(endpoints.clone())
        .merge(endpoints.router())
        .layer(auth.clone())
        .layer(security_headers());
    Site::serve(
        listener,
        SiteParts {
            router,
            auth,
            mock,
            clock,
            appids,
            sandbox: false,
            limits: serve_limits,
        },
    )
}

/// The user, as an application's handler reads it.
async fn me(user: WeChatUser) -> Json<serde_json::Value> {
    Json(json!({
        "openid": user.openid().as_str(),
        "unionid": user.unionid().map(|u| u.as_str()),
        "scope": user.scopes().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "session_id": user.session_id().to_string(),
        "app": user.app_kind().map(AppKind::as_str),
        "appid": user.appid().as_str(),
        "user_id": user.user_id().as_str(),
        "snapshot": user.is_snapshot_user(),
    }))
}

#[derive(serde::Deserialize)]
struct ProfileQuery {
    return_to: Option<String>,
}

/// The user's WeChat profile; a base-scope Official Account session is told where to ask for
/// more.
async fn profile<St: SharedStore>(
    State(endpoints): State<LoginEndpoints<St>>,
    Query(query): Query<ProfileQuery>,
    user: WeChatUser,
) -> Response {
    match user.userinfo(Lang::ZhCn).await {
        Ok(info) => Json(json!({
            "openid": info.openid.as_str(),
            "nickname": info.nickname,
            "headimgurl": info.headimgurl,
            "unionid": info.unionid.as_ref().map(|u| u.as_str()),
        }))
        .into_response(),
        Err(error) => {
            let return_to = query.return_to.as_deref().unwrap_or("/");
            endpoints
                .offer_reauthorize(&user, error, return_to)
                .into_response()
        }
    }
}
