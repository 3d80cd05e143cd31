//! The example server: WeChat login for a mobile app, a website, an Official Account and a Mini
//! Program at once, with the application's own accounts linking one person across them, as the
//! README's HTTP contract describes. With no configuration it runs in sandbox mode, against a
//! fake WeChat started in-process that knows all four apps.
//!
//! ```text
//! cargo run --example server
//! ```
//!
//! Environment: `BIND` (default `127.0.0.1:3000`); the apps, each a pair set together:
//! `WECHAT_APPID` + `WECHAT_SECRET` (mobile app), `WECHAT_WEB_APPID` + `WECHAT_WEB_SECRET`
//! (website QR login), `WECHAT_OA_APPID` + `WECHAT_OA_SECRET` (Official Account),
//! `WECHAT_MP_APPID` + `WECHAT_MP_SECRET` (Mini Program) — none set: sandbox; `WECHAT_API_BASE`;
//! `ACCOUNTS_DB` (the SQLite file of the application's accounts; in memory when unset); `SESSION_SECRET` (at least 32 bytes; random per start when
//! unset), `PUBLIC_URL` (default `http://BIND`), `MAX_CONNECTIONS` (default 1,000),
//! `MAX_CONNECTIONS_PER_ADDRESS` (default 64, IPv6 by /64), `HEADER_READ_TIMEOUT_SECS` (default
//! 10; also the idle keep-alive timeout), `RESPONSE_TIMEOUT_SECS` (default 30), `REDIS_URL`
//! (sessions in Redis; `redis-cluster://` for a cluster) with `STORE_KEY` (32 bytes, hex or
//! base64), `STORE_KEY_ID`, `STORE_PREVIOUS_KEYS`, `REDIS_PREFIX` and `REDIS_LEGACY_WRITES`
//! (`on` while a fleet changes over from a version before the index buckets), `GRPC_BIND` (also serve
//! the tonic service `demo.WhoAmI` there, behind the same layer), `METRICS` (`on`/`off`:
//! `GET /metrics` in Prometheus text; on by default in the sandbox), `WECHAT_OA_TOKEN` and
//! `WECHAT_OA_AES_KEY` (the Official Account's server configuration: scan-to-log-in), `RUST_LOG`.

use wechat_login::ServeLimits;
use wechat_login_example_server::app;

use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use wechat_login::middleware::{AppKind, LoginLimits};
use wechat_login::oauth::SystemClock;
use wechat_login::redis_store::{RedisStore, SealingKey};
use wechat_login::sessions::SharedStore;
use wechat_mock::MockConfig;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A positive number from the environment, or `default` when unset.
fn number<T: std::str::FromStr + PartialOrd + From<u8>>(
    value: Option<String>,
    default: T,
) -> Result<T, app::BoxError> {
    match value {
        None => Ok(default),
        Some(v) => match v.parse::<T>() {
            Ok(n) if n > T::from(0) => Ok(n),
            _ => Err(format!("expected a positive number, got {v:?}").into()),
        },
    }
}

fn serve_limits() -> Result<ServeLimits, app::BoxError> {
    let defaults = ServeLimits::default();
    Ok(ServeLimits {
        max_connections: number(env("MAX_CONNECTIONS"), defaults.max_connections)?,
        max_connections_per_address: number(
            env("MAX_CONNECTIONS_PER_ADDRESS"),
            defaults.max_connections_per_address,
        )?,
        response_timeout: Duration::from_secs(number(
            env("RESPONSE_TIMEOUT_SECS"),
            defaults.response_timeout.as_secs(),
        )?),
        header_read_timeout: Duration::from_secs(number(
            env("HEADER_READ_TIMEOUT_SECS"),
            defaults.header_read_timeout.as_secs(),
        )?),
        ..defaults
    })
}

/// The Redis store of `REDIS_URL`, sealed with `STORE_KEY` (id `STORE_KEY_ID`, default `k1`),
/// also opening records sealed with `STORE_PREVIOUS_KEYS` (`id:key,id:key`). Fails when Redis
/// does not answer: a server configured for Redis must not start without it.
async fn redis_store(url: &str) -> Result<RedisStore, app::BoxError> {
    let key = env("STORE_KEY").ok_or(
        "REDIS_URL is set but STORE_KEY is not: set it to 32 random bytes (`openssl rand -hex 32`)",
    )?;
    let kid = env("STORE_KEY_ID").unwrap_or_else(|| "k1".into());
    let key = SealingKey::parse(kid, &key).map_err(|e| format!("STORE_KEY: {e}"))?;
    let mut builder = RedisStore::builder(url, key)?;
    let previous = SealingKey::parse_list(&env("STORE_PREVIOUS_KEYS").unwrap_or_default())
        .map_err(|e| format!("STORE_PREVIOUS_KEYS: {e}"))?;
    for key in previous {
        builder = builder.previous_key(key);
    }
    if let Some(prefix) = env("REDIS_PREFIX") {
        builder = builder.prefix(prefix);
    }
    match env("REDIS_LEGACY_WRITES").as_deref() {
        None | Some("off") => {}
        Some("on") => builder = builder.legacy_writes(true),
        Some(other) => {
            return Err(format!("REDIS_LEGACY_WRITES: `on` or `off`, not `{other}`").into());
        }
    }
    if env("SESSION_SECRET").is_none() {
        tracing::warn!(
            "sessions are in Redis, but without SESSION_SECRET their tokens do not survive a restart"
        );
    }
    builder.connect().await.map_err(|error| {
        format!(
            "REDIS_URL is set, but Redis at {} is unreachable: {error}",
            redact_password(url)
        )
        .into()
    })
}

/// A Redis URL fit for a log line: its password replaced.
fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The apps configured in the environment: each kind's AppID and secret, set together.
fn configured_apps() -> Result<Vec<app::AppConfig>, app::BoxError> {
    let kinds = [
        (AppKind::MobileApp, "WECHAT_APPID", "WECHAT_SECRET"),
        (AppKind::Website, "WECHAT_WEB_APPID", "WECHAT_WEB_SECRET"),
        (
            AppKind::OfficialAccount,
            "WECHAT_OA_APPID",
            "WECHAT_OA_SECRET",
        ),
        (AppKind::MiniProgram, "WECHAT_MP_APPID", "WECHAT_MP_SECRET"),
    ];
    let mut apps = Vec::new();
    for (kind, appid_var, secret_var) in kinds {
        match (env(appid_var), env(secret_var)) {
            (Some(appid), Some(secret)) => apps.push(app::AppConfig {
                kind,
                appid,
                secret,
            }),
            (None, None) => {}
            _ => return Err(format!("set both {appid_var} and {secret_var}, or neither").into()),
        }
    }
    Ok(apps)
}

async fn run<St: SharedStore>(
    app: app::App<St>,
    listener: tokio::net::TcpListener,
    limits: ServeLimits,
    store: String,
) {
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    println!("{}", app::banner(addr, app.sandbox.as_ref(), &store));
    if let Some(grpc_bind) = env("GRPC_BIND") {
        match tokio::net::TcpListener::bind(&grpc_bind).await {
            Ok(grpc) => {
                println!(
                    "gRPC: demo.WhoAmI/Get on {grpc_bind}, behind the layer (send `authorization: Bearer <token>`)"
                );
                let layer = app.auth.clone();
                tokio::spawn(async move {
                    let stop = async {
                        let _ = tokio::signal::ctrl_c().await;
                    };
                    if let Err(error) =
                        wechat_login_example_server::grpc::serve(&layer, grpc, stop).await
                    {
                        tracing::error!(%error, "the gRPC server stopped");
                    }
                });
            }
            Err(error) => tracing::error!(%error, grpc_bind, "GRPC_BIND could not be bound"),
        }
    }
    wechat_login::serve(listener, app.router)
        .limits(limits)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
        .await;
}

#[tokio::main]
async fn main() -> Result<(), app::BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info")),
        )
        .init();

    let bind = env("BIND").unwrap_or_else(|| "127.0.0.1:3000".into());
    let apps = configured_apps()?;
    // Metrics: on by default in the sandbox, opt-in (`METRICS=on`) with real apps, whose
    // `/metrics` belongs behind the operator's network. Installed before anything registers.
    let metrics_on = match env("METRICS").as_deref() {
        Some("on") => true,
        Some("off") => false,
        Some(other) => return Err(format!("METRICS must be on or off, not {other:?}").into()),
        None => apps.is_empty(),
    };
    let metrics = if metrics_on {
        Some(app::Metrics::install()?)
    } else {
        None
    };
    let upstream = if apps.is_empty() {
        // The sandbox's clock follows real time: codes and tokens expire as they would at WeChat.
        app::Upstream::Sandbox(MockConfig {
            real_time: true,
            ..MockConfig::default()
        })
    } else {
        app::Upstream::Real {
            apps,
            api_base: env("WECHAT_API_BASE"),
        }
    };
    let session_secret = env("SESSION_SECRET").map(String::into_bytes);
    if session_secret.is_none() {
        tracing::warn!(
            "SESSION_SECRET is not set: using a random key; sessions end when the server restarts"
        );
    }
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let addr = listener.local_addr()?;
    let public_url = env("PUBLIC_URL").unwrap_or_else(|| format!("http://{addr}"));
    let config = app::Config {
        upstream,
        session_secret,
        public_url,
        clock: Arc::new(SystemClock),
        login_limits: LoginLimits::default(),
        accounts_db: env("ACCOUNTS_DB").map(Into::into),
        accounts: None,
        metrics,
        official_account_server: env("WECHAT_OA_TOKEN").map(|token| app::OaServer {
            token,
            encoding_aes_key: env("WECHAT_OA_AES_KEY"),
        }),
    };
    let limits = serve_limits()?;
    match env("REDIS_URL") {
        None => {
            let app = app::build(config).await?;
            run(
                app,
                listener,
                limits,
                "in memory (a restart ends them)".into(),
            )
            .await;
        }
        Some(url) => {
            app::accounts::check_placement(true, config.accounts_db.as_deref())?;
            let shared = redis_store(&url).await?;
            let described = format!(
                "in Redis ({}), sealed with key id {:?}, with a local cache invalidated through Redis",
                redact_password(&url),
                shared.sealing_key_id()
            );
            let store = shared.with_local_cache().await?;
            let app = app::build_with_store(config, store).await?;
            run(app, listener, limits, described).await;
        }
    }
    Ok(())
}
