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
//! The common names are also at the top level:
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

pub use tower_wechat::{
    AuthError, KeyRing, LoginEndpoints, Mode, SessionCookie, SigningKey, TokenConfig, TokenIssuer,
    TokenSource, WeChatAuthLayer, WeChatUser, WebFlow,
};
pub use wechat_oauth::{AppId, AppSecret, Client, ErrCode, Error, Lang};
pub use wechat_token_cache::{GracePolicy, MokaStore, SessionCache, SessionStore};

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
