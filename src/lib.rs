//! Log users in with WeChat from any tower-based Rust server.
//!
//! This crate re-exports the workspace's parts under one name:
//!
//! - [`oauth`] ([`wechat_oauth`]): the typed client for WeChat's OAuth endpoints.
//! - [`token_cache`] ([`wechat_token_cache`]): session records, stores and the refresh
//!   coordinator.
//! - [`middleware`] ([`tower_wechat`]): the middleware, the `WeChatUser` extractor, login and logout
//!   endpoints.
//! - `redis_store` (feature `redis`, on by default; the `wechat-redis-store` crate): sessions in
//!   Redis or Redis Cluster, sealed at rest.
//! - `mock` (feature `mock`, the `wechat-mock` crate): a fake WeChat for tests and local development.
//!
//! What an application needs is also at the top level: the layer and its endpoints, the
//! rejection types (for a custom rejection), the store trait and record types (for a store of
//! one's own), the login hook (for the application's accounts), and with `mock` the fake WeChat
//! (for tests):
//!
//! ```no_run
//! use wechat_login::{AppId, AppSecret, Client, KeyRing, LoginEndpoints, SigningKey, WeChatAuthLayer};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder(AppId::new("wx123"), AppSecret::new("secret")).build()?;
//! let keys = KeyRing::new(SigningKey::hs256("k1", b"a secret of at least 32 bytes....")?);
//! let auth = WeChatAuthLayer::builder(client, keys).build()?;
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
pub use wechat_token_cache as token_cache;

// The middleware, its endpoints and what a custom rejection is written with.
pub use tower_wechat::{
    AppKind, AuthError, BuildError, JsonRejection, KeyRing, LoginEndpoints, LoginLimits,
    LoginPaths, Mode, Rejection, RejectionResponse, RequireUser, SessionCookie, SigningKey,
    TokenConfig, TokenIssuer, TokenSource, WeChatAuthLayer, WeChatUser, WebFlow,
};
// The protocol client.
pub use wechat_oauth::{
    AppAccessToken, AppId, AppSecret, Client, EncryptedData, ErrCode, Error, Lang, PhoneCode,
    PhoneInfo,
};
// Sessions: the cache, a store of one's own (its conformance suite is
// `token_cache::conformance`), the login hook, and the clock tests drive.
pub use wechat_token_cache::{
    AppTokenError, CallError, CasOutcome, GracePolicy, HookError, LoginHook, ManualClock,
    MokaStore, NewLogin, SessionCache, SessionId, SessionRecord, SessionStore, StoreError, UserId,
};
// The fake WeChat, for tests and local development.
#[cfg(feature = "mock")]
pub use wechat_mock::{MockConfig, MockGrant, MockWeChat};

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
