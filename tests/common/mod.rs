//! The end-to-end harness: the example server's app (with a manual clock, on the example's own
//! hardened listener) and the fake WeChat, over real HTTP on loopback.
#![allow(dead_code, unused_imports)]

pub use wechat_login::ServeLimits;
pub use wechat_login_example_server::app;
pub use wechat_login_test_support::site::{
    IN_WECHAT, Site, SiteParts, many_clients, query_param, session_cookie,
};

/// The Redis servers, clusters and opt-outs the Redis store's own tests use too.
pub use wechat_login_test_support::redis;

use std::sync::Arc;
use std::time::Duration;

use wechat_login::middleware::{AppKind, LoginLimits};
use wechat_login::oauth::ManualClock;
use wechat_login::sessions::{MokaStore, SessionStore, SharedStore};
use wechat_mock::{MockConfig, MockWeChat};

pub const SECRET: &[u8] = b"e2e-session-secret-0123456789abcdef";
pub const HOUR: Duration = Duration::from_secs(3600);

/// An instance of the example app, served as a [`Site`] (whose requests it offers).
pub struct Server<St = MokaStore> {
    site: Site<St>,
    /// The application's accounts (shared by the instances of a fleet).
    pub accounts: app::Accounts,
    /// Each configured app.
    pub apps: Vec<app::AppConfig>,
}

pub async fn start() -> Server {
    start_with(MockConfig::default()).await
}

pub async fn start_with(mock_config: MockConfig) -> Server {
    start_configured(mock_config, LoginLimits::default(), many_clients()).await
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
pub async fn start_instance<St: SharedStore>(instance: Instance, store: St) -> Server<St> {
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
            official_account_server: Some(app::OaServer::sandbox()),
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
    let appids = app.apps.iter().map(|a| (a.kind, a.appid.clone())).collect();
    let site = Site::serve(
        listener,
        SiteParts {
            router: app.router,
            auth: app.auth,
            mock,
            clock,
            appids,
            sandbox,
            limits: instance.serve_limits,
        },
    );
    Server {
        site,
        accounts: app.accounts,
        apps: app.apps,
    }
}

impl<St> Server<St> {
    /// Stops the instance (as a deploy would) and waits until it has.
    pub async fn stop(self) {
        self.site.stop().await;
    }
}

impl<St> std::ops::Deref for Server<St> {
    type Target = Site<St>;

    fn deref(&self) -> &Site<St> {
        &self.site
    }
}

/// What an instance of the example app keeps sessions in with `REDIS_URL`.
pub type FleetStore = wechat_login::sessions::CachedStore<wechat_login::redis_store::RedisStore>;

/// How stale an instance's local copy may get when the invalidation channel is silent: the
/// default, 2 s.
pub const MAX_STALENESS: Duration = Duration::from_secs(2);

/// A store on `url` under `prefix`, sealed with `key`, on `clock`, with its own connections
/// and local cache, as an instance of the example app has.
pub async fn fleet_store(
    url: &str,
    prefix: &str,
    key: wechat_login::redis_store::SealingKey,
    clock: &ManualClock,
) -> FleetStore {
    let builder = wechat_login::redis_store::RedisStore::builder(url, key)
        .unwrap()
        .prefix(prefix);
    fleet_store_with(builder, redis::shared(clock)).await
}

/// The store `builder` configures, on `clock`, as [`fleet_store`] makes it.
pub async fn fleet_store_with(
    builder: wechat_login::redis_store::RedisStoreBuilder,
    clock: wechat_login::oauth::SharedClock,
) -> FleetStore {
    let builder = builder.command_timeout(Duration::from_millis(500));
    redis::cached_store(builder, clock, MAX_STALENESS).await
}

/// The first instance of a fleet, on `store`: it brings the (fake) WeChat the others share
/// (`Instance::sharing`), and records metrics in `metrics` if given.
pub async fn first_of_fleet<St: SharedStore>(
    store: St,
    clock: &ManualClock,
    metrics: Option<app::Metrics>,
) -> Server<St> {
    let instance = Instance {
        upstream: Upstream::Sandbox(MockConfig::default()),
        clock: clock.clone(),
        login_limits: Default::default(),
        serve_limits: many_clients(),
        accounts: None,
        metrics,
    };
    start_instance(instance, store).await
}
