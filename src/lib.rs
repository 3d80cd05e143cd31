//! Log users in with WeChat from any tower-based Rust server.
//!
//! This crate re-exports the workspace's parts under one name:
//!
//! - [`oauth`] ([`wechat_oauth`]): the typed client for WeChat's OAuth endpoints.
//! - [`sessions`] ([`wechat_sessions`]): session records, stores and the refresh
//!   coordinator.
//! - [`middleware`] ([`tower_wechat`]): the middleware, the `WeChatUser` extractor, login and logout
//!   endpoints.
//! - `redis_store` (feature `redis`, on by default; the `wechat-redis-store` crate): sessions in
//!   Redis or Redis Cluster, sealed at rest.
//! - `mock` (feature `mock`, the `wechat-mock` crate): a fake WeChat for tests and local development.
//!
//! What an application writes is also at the top level: the layer, its settings and its
//! endpoints, the rejection types (for a custom rejection or gRPC), the hardened listener
//! ([`serve`], feature `server`), [`security_headers`], the stores (in memory, Redis with a
//! local cache in front), the store trait and record types (for a store of one's own), the login
//! hook (for the application's accounts), the clocks, and with `mock` the fake WeChat (for
//! tests):
//!
//! ```no_run
//! use wechat_login::{Client, LoginEndpoints, SigningKey, WeChatAuthLayer};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("wx123", "secret").build()?;
//! let key = SigningKey::hs256("k1", b"a secret of at least 32 bytes....")?;
//! let auth = WeChatAuthLayer::builder(client, key).build()?;
//! let endpoints = LoginEndpoints::new(&auth);
//! # let _ = endpoints; Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use tower_wechat as middleware;
#[cfg(feature = "mock")]
pub use wechat_mock as mock;
pub use wechat_oauth as oauth;
#[cfg(feature = "redis")]
pub use wechat_redis_store as redis_store;
pub use wechat_sessions as sessions;

// The middleware, its endpoints, its settings, and what a custom rejection is written with.
pub use tower_wechat::{
    AppKind, AuthError, BuildError, BuiltinPages, CodeLogin, ErrorPages, GrpcRejection,
    JsonAuthRejection, KeyRing, LoginEndpoints, LoginLimits, LoginPaths, Rejection,
    RejectionResponse, RequireUserLayer, ScanLogin, SessionCookie, SigningKey, TokenConfig,
    TokenSource, UserSessions, WeChatAuthLayer, WeChatUser, WebFlow,
};
// The hardened listener, the headers every deployment wants, and `GET /metrics`.
#[cfg(feature = "prometheus")]
pub use tower_wechat::metrics::Prometheus;
pub use tower_wechat::security_headers;
#[cfg(feature = "server")]
pub use tower_wechat::{Serve, ServeLimits, serve};
// The protocol client.
pub use wechat_oauth::{
    AppAccessToken, AppId, AppSecret, Client, EncryptedData, ErrCode, Error, Lang, PhoneCode,
    PhoneInfo, PushMode,
};
// Sessions: the cache, the stores (in memory, a local cache in front of a shared one, Redis),
// a store of one's own (its conformance suite is `sessions::conformance`), the login hook,
// and the clocks (tests drive a manual one).
#[cfg(feature = "redis")]
pub use wechat_redis_store::{RedisStore, SealingKey};
pub use wechat_sessions::{
    AppTokenError, CachedStore, CallError, CasOutcome, GracePolicy, HookError, LoginClient,
    LoginHook, ManualClock, MokaStore, NewLogin, SessionConfig, SessionId, SessionManager,
    SessionRecord, SessionStore, SharedClock, SharedStore, SingleProcess, StoreError, SystemClock,
    UserId,
};
// The fake WeChat, for tests and local development (its faults: `mock::{Endpoint, Fault}`).
#[cfg(feature = "mock")]
pub use wechat_mock::{MockConfig, MockGrant, MockWeChat};

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
