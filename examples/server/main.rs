//! The example server: WeChat login for a mobile app, website or Mini Program, as the README's
//! HTTP contract describes. With no configuration it runs in sandbox mode, against a fake
//! WeChat started in-process.
//!
//! ```text
//! cargo run --example server
//! ```
//!
//! Environment: `BIND` (default `127.0.0.1:3000`), `WECHAT_APPID` + `WECHAT_SECRET` (both unset:
//! sandbox), `WECHAT_API_BASE`, `SESSION_SECRET` (at least 32 bytes; random per start when
//! unset), `PUBLIC_URL` (default `http://BIND`), `MAX_CONNECTIONS` (default 1,000),
//! `HEADER_READ_TIMEOUT_SECS` (default 10; also the idle keep-alive timeout), `REDIS_URL` (not
//! supported yet: ignored with a warning), `RUST_LOG`.

mod app;
mod serve;

use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use wechat_login::oauth::SystemClock;
use wechat_login::tower::LoginLimits;
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

#[tokio::main]
async fn main() -> Result<(), app::BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tower_http=info")),
        )
        .init();

    let bind = env("BIND").unwrap_or_else(|| "127.0.0.1:3000".into());
    let upstream = match (env("WECHAT_APPID"), env("WECHAT_SECRET")) {
        (Some(appid), Some(secret)) => app::Upstream::Real {
            appid,
            secret,
            api_base: env("WECHAT_API_BASE"),
        },
        // The sandbox's clock follows real time: codes and tokens expire as they would at WeChat.
        (None, None) => app::Upstream::Sandbox(MockConfig {
            real_time: true,
            ..MockConfig::default()
        }),
        _ => {
            return Err(
                "set both WECHAT_APPID and WECHAT_SECRET, or neither for the sandbox".into(),
            );
        }
    };
    let session_secret = env("SESSION_SECRET").map(String::into_bytes);
    if session_secret.is_none() {
        tracing::warn!(
            "SESSION_SECRET is not set: using a random key; sessions end when the server restarts"
        );
    }
    if env("REDIS_URL").is_some() {
        tracing::warn!(
            "REDIS_URL is set, but this version has no Redis store yet: sessions are kept in memory"
        );
    }

    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let addr = listener.local_addr()?;
    let public_url = env("PUBLIC_URL").unwrap_or_else(|| format!("http://{addr}"));
    let app = app::build(app::Config {
        upstream,
        session_secret,
        public_url,
        clock: Arc::new(SystemClock),
        login_limits: LoginLimits::default(),
    })
    .await?;
    println!("{}", app::banner(addr, app.sandbox.as_ref()));

    let defaults = serve::ServeLimits::default();
    let limits = serve::ServeLimits {
        max_connections: number(env("MAX_CONNECTIONS"), defaults.max_connections)?,
        header_read_timeout: Duration::from_secs(number(
            env("HEADER_READ_TIMEOUT_SECS"),
            defaults.header_read_timeout.as_secs(),
        )?),
        ..defaults
    };
    serve::serve(listener, app.router, limits, async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
    .await;
    Ok(())
}
