//! The end-to-end harness: the example server's app (with a manual clock, on the example's own
//! hardened listener) and the fake WeChat, over real HTTP on loopback.
#![allow(dead_code)]

pub use wechat_login::ServeLimits;
pub use wechat_login_example_server::app;

/// The Redis servers, clusters and opt-outs of the Redis store's own tests.
#[path = "../../crates/wechat-redis-store/tests/common/mod.rs"]
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE};
use serde_json::{Value, json};
use wechat_login::middleware::{AppKind, LoginLimits, WeChatAuthLayer};
use wechat_login::oauth::ManualClock;
use wechat_login::token_cache::{MokaStore, SessionStore};
use wechat_mock::{MockConfig, MockWeChat};

pub const SECRET: &[u8] = b"e2e-session-secret-0123456789abcdef";
pub const HOUR: Duration = Duration::from_secs(3600);

pub struct Server<St = MokaStore> {
    pub base: String,
    pub mock: MockWeChat,
    pub clock: ManualClock,
    pub http: reqwest::Client,
    pub auth: WeChatAuthLayer<St>,
    /// The application's accounts (shared by the instances of a fleet).
    pub accounts: app::Accounts,
    /// Each configured app.
    pub apps: Vec<app::AppConfig>,
    /// Whether this instance runs its own fake WeChat (and the `/sandbox/code` route).
    pub sandbox: bool,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

pub async fn start() -> Server {
    start_with(MockConfig::default()).await
}

pub async fn start_with(mock_config: MockConfig) -> Server {
    start_configured(mock_config, LoginLimits::default(), many_clients()).await
}

/// The listener's limits for tests that play many clients from one loopback address (thousands
/// of concurrent requests): no per-address cap, and room for all of them.
pub fn many_clients() -> ServeLimits {
    ServeLimits {
        max_connections: 10_000,
        max_connections_per_address: 10_000,
        ..ServeLimits::default()
    }
}

/// The example app on the example's listener, with these limits.
pub async fn start_configured(
    mock_config: MockConfig,
    login_limits: LoginLimits,
    serve_limits: ServeLimits,
) -> Server {
    let clock = ManualClock::starting_now();
    let store = MokaStore::builder().clock(Arc::new(clock.clone())).build();
    let instance = Instance {
        upstream: Upstream::Sandbox(mock_config),
        clock,
        login_limits,
        serve_limits,
        accounts: None,
        metrics: None,
    };
    start_instance(instance, store).await
}

/// Where an instance gets WeChat from: a fake of its own, or another instance's (a fleet
/// shares one WeChat).
pub enum Upstream {
    Sandbox(MockConfig),
    Shared(MockWeChat),
    /// Another instance's WeChat, with only these of its apps configured.
    SharedApps(MockWeChat, Vec<app::AppConfig>),
}

/// One instance of the example app.
pub struct Instance {
    pub upstream: Upstream,
    pub clock: ManualClock,
    pub login_limits: LoginLimits,
    pub serve_limits: ServeLimits,
    /// The accounts database of the fleet (`None`: a new one in memory).
    pub accounts: Option<app::Accounts>,
    /// Serve `GET /metrics` from this recorder.
    pub metrics: Option<app::Metrics>,
}

impl Instance {
    /// An instance on `clock` using `mock`, another instance's WeChat, and its accounts.
    pub fn sharing(mock: &MockWeChat, clock: &ManualClock, accounts: &app::Accounts) -> Self {
        Self {
            upstream: Upstream::Shared(mock.clone()),
            clock: clock.clone(),
            login_limits: LoginLimits::default(),
            serve_limits: many_clients(),
            accounts: Some(accounts.clone()),
            metrics: None,
        }
    }
}

/// The apps of a sandbox whose fake WeChat is `mock`: its primary app as the mobile app, and
/// the sandbox's other three.
pub fn sandbox_apps(mock: &MockWeChat) -> Vec<app::AppConfig> {
    let mut apps = vec![app::AppConfig {
        kind: AppKind::MobileApp,
        appid: mock.appid().to_owned(),
        secret: mock.secret().to_owned(),
    }];
    apps.extend(
        app::SANDBOX_APPS.map(|(kind, appid, secret)| app::AppConfig {
            kind,
            appid: appid.to_owned(),
            secret: secret.to_owned(),
        }),
    );
    apps
}

/// Starts an instance with sessions in `store`.
pub async fn start_instance<St: SessionStore>(instance: Instance, store: St) -> Server<St> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let clock = instance.clock;
    let upstream = match &instance.upstream {
        Upstream::Sandbox(config) => app::Upstream::Sandbox(config.clone()),
        Upstream::Shared(mock) => app::Upstream::Real {
            apps: sandbox_apps(mock),
            api_base: Some(mock.base_url()),
        },
        Upstream::SharedApps(mock, apps) => app::Upstream::Real {
            apps: apps.clone(),
            api_base: Some(mock.base_url()),
        },
    };
    let app = app::build_with_store(
        app::Config {
            upstream,
            session_secret: Some(SECRET.to_vec()),
            public_url: format!("http://{addr}"),
            clock: Arc::new(clock.clone()),
            login_limits: instance.login_limits,
            accounts_db: None,
            accounts: instance.accounts,
            metrics: instance.metrics,
        },
        store,
    )
    .await
    .unwrap();
    let sandbox = matches!(instance.upstream, Upstream::Sandbox(_));
    let mock = match instance.upstream {
        Upstream::Sandbox(_) => {
            let mock = app.sandbox.clone().unwrap();
            clock.set(mock.now());
            mock
        }
        Upstream::Shared(mock) | Upstream::SharedApps(mock, _) => mock,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        wechat_login::serve(listener, app.router)
            .limits(instance.serve_limits)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    Server {
        base: format!("http://{addr}"),
        mock,
        clock,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A request that hangs fails the test instead of hanging it.
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        auth: app.auth,
        accounts: app.accounts,
        apps: app.apps,
        sandbox,
        stop: Some(stop),
        serving: Some(serving),
    }
}

impl<St> Server<St> {
    /// Stops the instance (as a deploy would) and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = serving.await;
        }
    }
}

impl<St> Server<St> {
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.mock.advance(by);
    }

    /// The AppID of the app of `kind`.
    pub fn appid(&self, kind: AppKind) -> &str {
        &self.apps.iter().find(|a| a.kind == kind).unwrap().appid
    }

    /// A fresh mobile-app code for `openid`: from the sandbox route of an instance that has one
    /// (as the phone's WeChat would mint it), else straight from the shared fake WeChat.
    pub async fn code(&self, openid: &str) -> String {
        self.code_for(AppKind::MobileApp, openid, None).await
    }

    /// A fresh code of the app of `kind` for `openid` (and `unionid`).
    pub async fn code_for(&self, kind: AppKind, openid: &str, unionid: Option<&str>) -> String {
        if !self.sandbox {
            return self.mock.mint_code(wechat_mock::MockGrant {
                openid: Some(openid.to_owned()),
                unionid: unionid.map(str::to_owned),
                appid: Some(self.appid(kind).to_owned()),
                ..Default::default()
            });
        }
        let mut query = vec![("openid", openid), ("app", kind.as_str())];
        if let Some(unionid) = unionid {
            query.push(("unionid", unionid));
        }
        let body = self.get_json("/sandbox/code", &query).await;
        body["code"].as_str().unwrap().to_owned()
    }

    /// `GET path?query` without credentials (the sandbox's routes): the JSON answer.
    pub async fn get_json(&self, path: &str, query: &[(&str, &str)]) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A JSON code login of `openid` (and `unionid`) to the app of `kind`: the session token,
    /// or the refusal.
    pub async fn json_login(
        &self,
        kind: AppKind,
        openid: &str,
        unionid: Option<&str>,
    ) -> Result<String, (StatusCode, Value)> {
        let code = self.code_for(kind, openid, unionid).await;
        let path = match kind {
            AppKind::MiniProgram => "/auth/wechat/miniprogram/login",
            _ => "/auth/wechat/login",
        };
        let (status, body) = self
            .post_login(path, json!({ "code": code }).to_string())
            .await;
        match status {
            StatusCode::OK => Ok(body["token"].as_str().unwrap().to_owned()),
            _ => Err((status, body)),
        }
    }

    /// A POST with a JSON body, as an app sends it.
    pub async fn post_json(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_login(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self.post_json(path, body).await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn login(&self, openid: &str) -> String {
        let code = self.code(openid).await;
        let (status, body) = self
            .post_login("/auth/wechat/login", json!({ "code": code }).to_string())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap()
    }

    /// A request as a browser holding `cookie` (`name=value`) sends it.
    pub async fn with_cookie(
        &self,
        method: reqwest::Method,
        path: &str,
        cookie: &str,
    ) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap()
    }

    pub async fn me(&self, token: &str) -> (StatusCode, Value) {
        let response = self.get("/me", token).await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, token: &str) -> StatusCode {
        self.http
            .post(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// A website login driven as a browser would: start (binding cookie), WeChat's approval,
    /// and the callback URL WeChat redirects to, not yet followed.
    pub async fn web_login(&self, openid: &str) -> WebLogin {
        let start = self
            .http
            .get(format!("{}/auth/wechat/web/start", self.base))
            .send()
            .await
            .unwrap();
        let binding = start.headers()["set-cookie"].to_str().unwrap();
        let binding = binding.split(';').next().unwrap().to_owned();
        let authorize = reqwest::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
        let param = |name: &str| {
            authorize
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap()
        };
        let (redirect_uri, state) = (param("redirect_uri"), param("state"));
        let callback = self.approve(&redirect_uri, &state, openid).await;
        WebLogin {
            binding,
            callback,
            redirect_uri,
            state,
        }
    }

    /// The user approves on WeChat's page: the callback URL with a fresh code and `state`.
    pub async fn approve(&self, redirect_uri: &str, state: &str, openid: &str) -> String {
        let approve = self
            .http
            .get(format!("{}/connect/mock/approve", self.mock.base_url()))
            .query(&[
                ("redirect_uri", redirect_uri),
                ("state", state),
                ("scope", "snsapi_login"),
                ("openid", openid),
                ("appid", self.appid(AppKind::Website)),
            ])
            .send()
            .await
            .unwrap();
        approve.headers()["location"].to_str().unwrap().to_owned()
    }
}

/// A website login in progress (see [`Server::web_login`]).
pub struct WebLogin {
    /// The binding cookie, as `name=value`.
    pub binding: String,
    /// The callback URL WeChat sends the browser to.
    pub callback: String,
    pub redirect_uri: String,
    pub state: String,
}

/// The session cookie a response sets (not one that clears it), as `name=value`.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("wechat_session=") && !v.contains("Max-Age=0"))
        .map(|v| v.split(';').next().unwrap().to_owned())
}
