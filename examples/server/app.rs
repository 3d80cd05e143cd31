//! The example server's application: configuration and the axum router implementing the HTTP
//! contract in the README. `main.rs` runs it; the end-to-end tests in `tests/` build the same
//! app (with a manual clock) and talk to it over real HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Query;
use axum::http::header::{self, RETRY_AFTER};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use wechat_login::oauth::{AppId, AppSecret, Client, Lang, SharedClock};
use wechat_login::token_cache::{CallError, MokaStore, SessionError, TokenStore};
use wechat_login::tower::{
    KeyRing, LoginEndpoints, LoginLimits, SessionCookie, SigningKey, WeChatAuthLayer, WeChatUser,
    WebFlow,
};
use wechat_mock::{MockConfig, MockGrant, MockWeChat};

#[path = "pages.rs"]
mod pages;

/// Where the app gets WeChat from.
pub enum Upstream {
    /// A fake WeChat started in-process on an ephemeral loopback port.
    Sandbox(MockConfig),
    /// The real WeChat (or `api_base`, e.g. a proxy).
    Real {
        appid: String,
        secret: String,
        api_base: Option<String>,
    },
}

/// The app's configuration (what `main.rs` reads from the environment).
pub struct Config {
    pub upstream: Upstream,
    /// Session signing key; `None` → a random one (sessions do not survive a restart).
    pub session_secret: Option<Vec<u8>>,
    /// The address the server is reachable at, for the web flow's callback URL.
    pub public_url: String,
    /// The clock (tests drive a manual one).
    pub clock: SharedClock,
    /// Limits on failed code logins.
    pub login_limits: LoginLimits,
}

/// The built application.
pub struct App<St = MokaStore> {
    pub router: Router,
    /// The embedded fake WeChat, in sandbox mode.
    pub sandbox: Option<MockWeChat>,
    /// The auth layer (the end-to-end tests reach the session cache through it).
    #[allow(dead_code)]
    pub auth: WeChatAuthLayer<St>,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The app with sessions in memory.
#[allow(dead_code)]
pub async fn build(config: Config) -> Result<App, BoxError> {
    let store = MokaStore::builder()
        .clock(Arc::clone(&config.clock))
        .build();
    build_with_store(config, store).await
}

/// The app with sessions in `store`.
pub async fn build_with_store<St: TokenStore>(
    config: Config,
    store: St,
) -> Result<App<St>, BoxError> {
    let (sandbox, appid, secret, api_base) = match config.upstream {
        Upstream::Sandbox(mock_config) => {
            let mock = MockWeChat::start(mock_config).await?;
            let (appid, secret, base) = (
                mock.appid().to_owned(),
                mock.secret().to_owned(),
                mock.base_url(),
            );
            (Some(mock), appid, secret, Some(base))
        }
        Upstream::Real {
            appid,
            secret,
            api_base,
        } => (None, appid, secret, api_base),
    };
    let mut client =
        Client::builder(AppId::new(appid), AppSecret::new(secret)).clock(Arc::clone(&config.clock));
    if let Some(base) = &api_base {
        client = client.api_base(base.clone());
    }
    if let Some(mock) = &sandbox {
        // The sandbox's consent pages stand in for open.weixin.qq.com.
        client = client.open_base(mock.base_url());
    }
    let client = client.build()?;

    let secret = config
        .session_secret
        .clone()
        .unwrap_or_else(|| rand::random::<[u8; 32]>().to_vec());
    let keys = KeyRing::new(SigningKey::hs256("k1", &secret)?);
    let secure_cookie = config.public_url.starts_with("https://");
    let auth = WeChatAuthLayer::builder(client, keys)
        .cookie(SessionCookie::default().secure(secure_cookie))
        .store(store)
        // Every instance hashes login codes with the same key, so a shared store lets them
        // recognise each other's codes.
        .cache(|cache| cache.shared_secret(&secret))
        .build()?;
    let callback = format!(
        "{}/auth/wechat/web/callback",
        config.public_url.trim_end_matches('/')
    );
    let endpoints = LoginEndpoints::new(&auth)
        .state_secret(&secret)
        .limits(config.login_limits)
        .web_flow(WebFlow::website(callback));

    let origin = origin_of(&config.public_url);
    let pages = pages::Pages {
        endpoints: endpoints.clone(),
        origin,
        sandbox: sandbox.as_ref().map(MockWeChat::base_url),
    };
    let mut router = Router::new()
        .route("/", get(pages::home::<St>))
        .route("/style.css", get(pages::style))
        .route("/session/logout", post(pages::logout::<St>))
        .route("/session/logout-all", post(pages::logout_all::<St>))
        .with_state(pages)
        .route("/healthz", get(|| async { "ok" }))
        .route("/me", get(me))
        .route("/me/profile", get(profile))
        .merge(endpoints.router());
    if let Some(mock) = &sandbox {
        let mock = mock.clone();
        router = router.route(
            "/sandbox/code",
            get(move |Query(q): Query<SandboxCode>| async move {
                let code = mock.mint_code(MockGrant {
                    openid: q.openid,
                    scope: q.scope,
                    unionid: q.unionid,
                    snapshot_user: false,
                });
                Json(json!({ "code": code }))
            }),
        );
    }
    let router = router
        .layer(auth.optional())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(RequestBodyLimitLayer::new(16 * 1024))
        // The span names the path only: a query can carry a login code (the web callback).
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
        }))
        // Browser pages and the callback: no framing, no foreign resources, no Referer (the
        // callback URL carries the code), no sniffing. Harmless on JSON answers.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self' https:"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetSensitiveRequestHeadersLayer::new([
            axum::http::header::AUTHORIZATION,
            axum::http::header::COOKIE,
            HeaderName::from_static("x-session-token"),
        ]));
    Ok(App {
        router,
        sandbox,
        auth,
    })
}

#[derive(Deserialize)]
struct SandboxCode {
    openid: Option<String>,
    scope: Option<String>,
    unionid: Option<String>,
}

async fn me(user: WeChatUser) -> Json<serde_json::Value> {
    Json(json!({
        "openid": user.openid().as_str(),
        "unionid": user.unionid().map(|u| u.as_str()),
        "scope": user.scopes().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "session_id": user.session_id().to_string(),
    }))
}

async fn profile(user: WeChatUser) -> Response {
    match user.userinfo(Lang::ZhCn).await {
        Ok(info) => Json(json!({
            "openid": info.openid.as_str(),
            "nickname": info.nickname,
            "headimgurl": info.headimgurl,
            "unionid": info.unionid.as_ref().map(|u| u.as_str()),
        }))
        .into_response(),
        Err(CallError::NotPermitted) => (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "scope_insufficient", "message": "this login's WeChat grant does not include the profile"})),
        )
            .into_response(),
        Err(CallError::Session(error)) => {
            let error: wechat_login::AuthError = error.into();
            error.to_response()
        }
        Err(CallError::Upstream(error)) => {
            tracing::warn!(%error, "userinfo failed");
            let body = Json(json!({"error": "upstream_error", "errcode": error.errcode().map(|c| c.0)}));
            match error.class() {
                wechat_login::oauth::ErrorClass::Retryable => {
                    let retry_after = error.retry_after().unwrap_or(Duration::from_secs(1));
                    let retry_after = [(RETRY_AFTER, retry_after.as_secs().max(1).to_string())];
                    (StatusCode::SERVICE_UNAVAILABLE, retry_after, body).into_response()
                }
                _ => (StatusCode::BAD_GATEWAY, body).into_response(),
            }
        }
        Err(_) => SessionErrorFallback.into_response(),
    }
}

/// Any future `CallError` variant: a 503 that keeps the session.
struct SessionErrorFallback;

impl IntoResponse for SessionErrorFallback {
    fn into_response(self) -> Response {
        let error: wechat_login::AuthError = SessionError::Unavailable {
            retry_after: Duration::from_secs(1),
        }
        .into();
        error.to_response()
    }
}

/// `scheme://host[:port]` of a URL (what a browser sends as `Origin`).
fn origin_of(url: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find('/')
        .map_or(url.len(), |i| after_scheme + i);
    url[..end].to_owned()
}

/// The copy-paste banner for sandbox mode; `store` says where sessions live.
pub fn banner(addr: SocketAddr, sandbox: Option<&MockWeChat>, store: &str) -> String {
    let base = format!("http://{addr}");
    let mut text = format!("wechat-login example server listening on {base}\nsessions: {store}\n");
    match sandbox {
        Some(mock) => text.push_str(&format!(
            "sandbox mode: no WECHAT_APPID/WECHAT_SECRET, so a fake WeChat runs at {}\n\n\
             Try it:\n\
             \x20 CODE=$(curl -s '{base}/sandbox/code?openid=o_demo_user' | sed 's/.*\"code\":\"\\([^\"]*\\)\".*/\\1/')\n\
             \x20 TOKEN=$(curl -s -X POST {base}/auth/wechat/login -H 'content-type: application/json' \\\n\
             \x20        -d \"{{\\\"code\\\":\\\"$CODE\\\"}}\" | sed 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')\n\
             \x20 curl -s {base}/me -H \"authorization: Bearer $TOKEN\"\n\
             \x20 curl -s {base}/me/profile -H \"authorization: Bearer $TOKEN\"\n\
             \x20 curl -s -X POST {base}/auth/logout -H \"authorization: Bearer $TOKEN\" -o /dev/null -w '%{{http_code}}\\n'\n\n\
             Browser: open {base}/ and log in with the fake WeChat\n",
            mock.base_url()
        )),
        None => text.push_str("talking to WeChat\n"),
    }
    text
}
