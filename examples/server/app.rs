//! The example server's application: configuration (up to four WeChat apps: mobile app,
//! website, Official Account, Mini Program), the accounts that link their users, and the axum
//! router implementing the HTTP contract in the README. `main.rs` runs it; the end-to-end tests
//! in `tests/` build the same app (with a manual clock) and talk to it over real HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::path::PathBuf;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use wechat_login::middleware::{
    AppKind, AuthError, KeyRing, LoginEndpoints, LoginLimits, ScanLogin, SigningKey,
    WeChatAuthLayer, WeChatUser, WebFlow,
};
use wechat_login::oauth::{
    AppId, AppSecret, Client, EncryptedData, Lang, PhoneCode, PushMode, SharedClock,
};
use wechat_login::sessions::{MokaStore, SharedStore};
use wechat_mock::{MockConfig, MockGrant, MockWeChat};

#[path = "accounts.rs"]
pub mod accounts;
#[path = "pages.rs"]
mod pages;

pub use accounts::Accounts;

/// One WeChat app: its kind, AppID and AppSecret.
#[derive(Clone)]
pub struct AppConfig {
    /// Which of the four kinds it is.
    pub kind: AppKind,
    /// Its AppID.
    pub appid: String,
    /// Its AppSecret.
    pub secret: String,
}

/// The sandbox's apps besides the fake's primary one (the mobile app): distinct AppIDs in one
/// unionid space, as one Open Platform account would have.
pub const SANDBOX_APPS: [(AppKind, &str, &str); 3] = [
    (
        AppKind::Website,
        "wxsandboxweb00001",
        "sandbox-web-secret-0123456789abc",
    ),
    (
        AppKind::OfficialAccount,
        "wxsandboxoa000001",
        "sandbox-oa-secret-0123456789abcd",
    ),
    (
        AppKind::MiniProgram,
        "wxsandboxmp000001",
        "sandbox-mp-secret-0123456789abcd",
    ),
];

/// The Official Account's server configuration (基本配置 → 服务器配置), for scan-to-log-in:
/// its server URL is `PUBLIC_URL` + `/auth/wechat/scan/events`.
#[derive(Clone)]
pub struct OaServer {
    /// The token (令牌): `WECHAT_OA_TOKEN`.
    pub token: String,
    /// The EncodingAESKey (消息加解密密钥), safe mode: `WECHAT_OA_AES_KEY`; `None`: plain mode.
    pub encoding_aes_key: Option<String>,
}

impl std::fmt::Debug for OaServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OaServer")
            .field("token", &"[redacted]")
            .field(
                "encoding_aes_key",
                &self.encoding_aes_key.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

impl OaServer {
    /// The sandbox's: its fake WeChat pushes with these, encrypted.
    pub fn sandbox() -> Self {
        Self {
            token: "sandbox-oa-token".into(),
            encoding_aes_key: Some("c2FuZGJveC1vYS1hZXMta2V5LTAxMjM0NTY3ODlhYmM".into()),
        }
    }
}

/// Where the app gets WeChat from.
pub enum Upstream {
    /// A fake WeChat started in-process on an ephemeral loopback port, knowing all four apps.
    Sandbox(MockConfig),
    /// The real WeChat (or `api_base`, e.g. a proxy), with the apps configured (at least one).
    Real {
        /// The apps, each with its credentials.
        apps: Vec<AppConfig>,
        /// WeChat's API base URL, when not the real one.
        api_base: Option<String>,
    },
}

/// The app's configuration (what `main.rs` reads from the environment).
pub struct Config {
    /// Where WeChat is.
    pub upstream: Upstream,
    /// Session signing key; `None` → a random one (sessions do not survive a restart).
    pub session_secret: Option<Vec<u8>>,
    /// The address the server is reachable at, for the web flow's callback URL.
    pub public_url: String,
    /// The clock (tests drive a manual one).
    pub clock: SharedClock,
    /// Limits on failed code logins.
    pub login_limits: LoginLimits,
    /// The accounts database file (`ACCOUNTS_DB`); `None` keeps it in memory.
    pub accounts_db: Option<PathBuf>,
    /// An accounts database already open, used instead of `accounts_db` (instances of one
    /// process sharing it, in tests).
    pub accounts: Option<Accounts>,
    /// Serve `GET /metrics` (Prometheus text) from this recorder; `None`: no route.
    pub metrics: Option<Metrics>,
    /// Scan-to-log-in with the Official Account (needs its app): its server configuration.
    /// The sandbox uses [`OaServer::sandbox`] when `None`.
    pub official_account_server: Option<OaServer>,
}

/// What `GET /metrics` serves: the library's Prometheus recorder (install it before building
/// the app).
pub use wechat_login::Prometheus as Metrics;

/// The built application.
pub struct App<St = MokaStore> {
    /// Every route of the HTTP contract, behind the auth layer and the hardening layers.
    pub router: Router,
    /// The embedded fake WeChat, in sandbox mode.
    pub sandbox: Option<MockWeChat>,
    /// The auth layer (the end-to-end tests reach the sessions through it).
    pub auth: WeChatAuthLayer<St>,
    /// The application's accounts (the end-to-end tests suspend one).
    pub accounts: Accounts,
    /// The AppID of each configured kind of app.
    pub apps: Vec<AppConfig>,
}

/// Any error of building or serving the app.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The app with sessions in memory.
pub async fn build(mut config: Config) -> Result<App, BoxError> {
    let store = MokaStore::builder()
        .clock(Arc::clone(&config.clock))
        .build();
    // The in-memory store counts its sessions for the `wechat_login_sessions_open` gauge
    // (moka counts lazily: settle its pending work first; a scrape is rare).
    config.metrics = config.metrics.map(|metrics| {
        let counted = store.clone();
        metrics.sessions_open(move || {
            counted.run_pending_tasks();
            counted.session_count()
        })
    });
    build_with_store(config, store).await
}

/// The app with sessions in `store`.
pub async fn build_with_store<St: SharedStore>(
    config: Config,
    store: St,
) -> Result<App<St>, BoxError> {
    let (sandbox, apps, api_base) = match config.upstream {
        Upstream::Sandbox(mut mock_config) => {
            for (_, appid, secret) in SANDBOX_APPS {
                mock_config = mock_config.with_app(appid, secret);
            }
            let mock = MockWeChat::start(mock_config).await?;
            let mut apps = vec![AppConfig {
                kind: AppKind::MobileApp,
                appid: mock.appid().to_owned(),
                secret: mock.secret().to_owned(),
            }];
            apps.extend(SANDBOX_APPS.map(|(kind, appid, secret)| AppConfig {
                kind,
                appid: appid.to_owned(),
                secret: secret.to_owned(),
            }));
            let base = mock.base_url();
            (Some(mock), apps, Some(base))
        }
        Upstream::Real { apps, api_base } => (None, apps, api_base),
    };
    let client = |app: &AppConfig| {
        let mut client = Client::builder(
            AppId::new(app.appid.clone()),
            AppSecret::new(app.secret.clone()),
        )
        .clock(Arc::clone(&config.clock));
        if let Some(base) = &api_base {
            client = client.api_base(base.clone());
        }
        if let Some(mock) = &sandbox {
            // The sandbox's consent pages stand in for open.weixin.qq.com.
            client = client.open_base(mock.base_url()).mp_base(mock.base_url());
        }
        client.build()
    };
    let (first, others) = apps
        .split_first()
        .ok_or("configure at least one WeChat app")?;
    let accounts = match config.accounts.clone() {
        Some(accounts) => accounts,
        None => Accounts::open(config.accounts_db.as_deref())?,
    };

    let secret = config
        .session_secret
        .clone()
        .unwrap_or_else(|| rand::random::<[u8; 32]>().to_vec());
    let keys = KeyRing::new(SigningKey::hs256("k1", &secret)?);
    let mut builder = WeChatAuthLayer::builder_for(first.kind, client(first)?, keys);
    for app in others {
        builder = builder.app(app.kind, client(app)?);
    }
    // Scan-to-log-in, with the Official Account and its server configuration.
    let oa_server = config
        .official_account_server
        .clone()
        .or_else(|| sandbox.as_ref().map(|_| OaServer::sandbox()));
    let oa_app = apps.iter().find(|a| a.kind == AppKind::OfficialAccount);
    if let (Some(server), Some(_)) = (&oa_server, oa_app) {
        let mut scan = ScanLogin::new(server.token.clone());
        if let Some(key) = &server.encoding_aes_key {
            scan = scan.encoding_aes_key(key.clone(), PushMode::Safe);
        }
        if let Some(mock) = &sandbox {
            scan = scan.sandbox(mock.base_url());
        }
        builder = builder.scan_login(scan);
    }
    // Every instance derives the login flow's keys (OAuth states, code hashes) from the same
    // session secret, so a fleet sharing a store recognises each other's states and codes.
    let auth = builder
        .store(store)
        .login_hook(accounts.clone())
        .login_limits(config.login_limits)
        .web_flow(WebFlow::at(&config.public_url))
        .build()?;
    let endpoints = LoginEndpoints::new(&auth);
    let scan = oa_server.is_some() && oa_app.is_some();
    if let (Some(mock), Some(server), Some(oa)) = (&sandbox, &oa_server, oa_app) {
        // The fake Official Account's server URL is this server, as its settings would say.
        mock.set_push_target(
            &oa.appid,
            wechat_mock::MockPushTarget {
                url: format!("{}/auth/wechat/scan/events", config.public_url),
                token: server.token.clone(),
                encoding_aes_key: server.encoding_aes_key.clone(),
            },
        );
    }

    let origin = origin_of(&config.public_url);
    let pages = pages::Pages {
        endpoints: endpoints.clone(),
        origin,
        sandbox: sandbox.as_ref().map(MockWeChat::base_url),
        scan,
    };
    let mut router = Router::new()
        .route("/", get(pages::home::<St>))
        .route("/style.css", get(pages::style))
        .route("/session/logout", post(pages::logout::<St>))
        .route("/session/logout-all", post(pages::logout_all::<St>))
        .route("/me/sessions/{id}/logout", post(pages::end_listed::<St>))
        .with_state(pages)
        .route("/healthz", get(|| async { "ok" }))
        .route("/me", get(me))
        .route("/me/profile", get(profile::<St>))
        .route("/me/sessions", get(my_sessions::<St>))
        .route("/miniprogram/decrypt", post(decrypt))
        .route("/miniprogram/phone", post(phone))
        .route("/miniprogram/check-session", post(check_session))
        .with_state(endpoints.clone())
        .merge(endpoints.router());
    if let Some(metrics) = &config.metrics {
        router = router.route("/metrics", metrics.route());
    }
    if let Some(mock) = &sandbox {
        // The phone's part of wx.getPhoneNumber / getUserInfo: data sealed for a user's client
        // under their latest Mini Program session key.
        let sealing = mock.clone();
        let mini_program = apps
            .iter()
            .find(|a| a.kind == AppKind::MiniProgram)
            .map(|a| a.appid.clone());
        router = router.route(
            "/sandbox/encrypt",
            get(move |Query(q): Query<SandboxEncrypt>| async move {
                let data = serde_json::from_str::<serde_json::Value>(&q.data).ok();
                let sealed = mini_program.as_deref().zip(data).and_then(|(appid, data)| {
                    sealing.seal_user_data(appid, &q.openid, &data)
                });
                match sealed {
                    Some((encrypted_data, iv)) => {
                        Json(json!({ "encrypted_data": encrypted_data, "iv": iv })).into_response()
                    }
                    None => {
                        let body = json!({"error": "invalid_request", "message": "data must be a JSON object, and the user must have logged in to the Mini Program"});
                        (StatusCode::BAD_REQUEST, Json(body)).into_response()
                    }
                }
            }),
        );
        let minting = mock.clone();
        let mini_program = apps
            .iter()
            .find(|a| a.kind == AppKind::MiniProgram)
            .map(|a| a.appid.clone());
        router = router.route(
            "/sandbox/phone-code",
            get(move |Query(q): Query<SandboxPhone>| async move {
                let digits = |s: &str| (4..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
                match mini_program.as_deref() {
                    Some(appid) if digits(&q.phone) => {
                        let code = minting.mint_phone_code(appid, &q.phone, "86");
                        Json(json!({ "code": code })).into_response()
                    }
                    _ => {
                        let body = json!({"error": "invalid_request", "message": "phone must be 4 to 20 digits"});
                        (StatusCode::BAD_REQUEST, Json(body)).into_response()
                    }
                }
            }),
        );
        let mock = mock.clone();
        let apps = apps.clone();
        router = router.route(
            "/sandbox/code",
            get(move |Query(q): Query<SandboxCode>| async move {
                let kind = match q.app.as_deref() {
                    None | Some("") => Ok(AppKind::MobileApp),
                    Some(name) => name.parse::<AppKind>(),
                };
                let Some(app) = kind.ok().and_then(|kind| apps.iter().find(|a| a.kind == kind))
                else {
                    let body = json!({"error": "invalid_request", "message": "app must be mobile, web, oa or mp"});
                    return (StatusCode::BAD_REQUEST, Json(body)).into_response();
                };
                let code = mock.mint_code(MockGrant {
                    openid: q.openid,
                    scope: q.scope,
                    unionid: q.unionid,
                    appid: Some(app.appid.clone()),
                    ..MockGrant::default()
                });
                Json(json!({ "code": code })).into_response()
            }),
        );
    }
    let router = router
        .layer(auth.clone())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(30),
        ))
        .layer(RequestBodyLimitLayer::new(16 * 1024))
        // The span names the path only: a query can carry a login code (the web callback).
        .layer(TraceLayer::new_for_http().make_span_with(|request: &axum::http::Request<_>| {
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
        }))
        // Credentials marked sensitive for every layer inside (the trace), and the page
        // headers (no framing, no Referer: the callback URL carries the code).
        .layer(wechat_login::security_headers());
    Ok(App {
        router,
        sandbox,
        auth,
        accounts,
        apps,
    })
}

#[derive(Deserialize)]
struct SandboxCode {
    openid: Option<String>,
    scope: Option<String>,
    unionid: Option<String>,
    app: Option<String>,
}

/// `GET /sandbox/phone-code?openid=&phone=`: `openid` says whose phone plays the button; the
/// code, as at WeChat, stands for the number only.
#[derive(Deserialize)]
struct SandboxPhone {
    phone: String,
}

#[derive(Deserialize)]
struct SandboxEncrypt {
    openid: String,
    /// A JSON object (URL-encoded).
    data: String,
}

/// `POST /miniprogram/decrypt` `{"encrypted_data","iv","raw_data"?,"signature"?}`.
#[derive(Deserialize)]
struct DecryptBody {
    encrypted_data: String,
    iv: String,
    raw_data: Option<String>,
    signature: Option<String>,
}

/// How old client data may be (its watermark's timestamp).
const CLIENT_DATA_MAX_AGE: Duration = Duration::from_secs(10 * 60);

/// The Mini Program user's `encryptedData`, opened with the session's key: the decrypted JSON,
/// or 400 `invalid_encrypted_data` naming the usual cause.
async fn decrypt(
    user: WeChatUser,
    body: Result<Json<DecryptBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return AuthError::BadRequest(
            r#"expected {"encrypted_data","iv","raw_data"?,"signature"?} as JSON"#,
        )
        .into_response();
    };
    let data = EncryptedData {
        encrypted_data: &body.encrypted_data,
        iv: &body.iv,
        raw_data: body.raw_data.as_deref(),
        signature: body.signature.as_deref(),
    };
    match user.decrypt(&data, CLIENT_DATA_MAX_AGE).await {
        Ok(value) => Json(value).into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
struct PhoneBody {
    code: String,
}

/// The Mini Program user's phone number from the phone-number button's `code`:
/// `{"phone_number","pure_phone_number","country_code"}`, or 400 `invalid_phone_code`.
async fn phone(
    user: WeChatUser,
    body: Result<Json<PhoneBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let code = match body {
        Ok(Json(body)) if !body.code.is_empty() && body.code.len() <= 256 => body.code,
        _ => return AuthError::BadRequest(r#"expected {"code"} as JSON"#).into_response(),
    };
    match user.phone_number(PhoneCode::new(code)).await {
        Ok(info) => Json(json!({
            "phone_number": info.phone_number,
            "pure_phone_number": info.pure_phone_number,
            "country_code": info.country_code,
        }))
        .into_response(),
        Err(error) => error.into_response(),
    }
}

/// Whether WeChat still holds the user's session key: 204, or 401 `session_key_expired` (the
/// client must `wx.login` and log in again).
async fn check_session(user: WeChatUser) -> Response {
    match user.check_session_key().await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => error.into_response(),
    }
}

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

/// `GET /me/sessions`: the user's live sessions in every app, the current one flagged.
async fn my_sessions<St: SharedStore>(
    State(endpoints): State<LoginEndpoints<St>>,
    user: WeChatUser,
) -> Response {
    match endpoints.sessions(&user).await {
        Ok(list) => (
            [
                (axum::http::header::CONTENT_TYPE, "application/json"),
                (axum::http::header::CACHE_CONTROL, "no-store"),
            ],
            list.to_json(),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

#[derive(Deserialize)]
struct ProfileQuery {
    return_to: Option<String>,
}

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
        // An Official Account login with snsapi_base is told where to ask for the profile
        // scope and come back; otherwise the session's outcome, or WeChat's answer.
        Err(error) => {
            let return_to = query.return_to.as_deref().unwrap_or("/");
            endpoints
                .offer_reauthorize(&user, error, return_to)
                .into_response()
        }
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
             \x20 curl -s {base}/me/sessions -H \"authorization: Bearer $TOKEN\"\n\
             \x20 curl -s -X POST {base}/auth/logout -H \"authorization: Bearer $TOKEN\" -o /dev/null -w '%{{http_code}}\\n'\n\n\
             Browser: open {base}/ and log in with the fake WeChat, or with \"Scan with WeChat\"\n\
             (the Official Account's QR code; its page links to the fake phone's \"Simulate scan\")\n",
            mock.base_url()
        )),
        None => text.push_str("talking to WeChat\n"),
    }
    text
}
