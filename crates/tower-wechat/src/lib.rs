//! tower middleware for logging users in with WeChat.
//!
//! - [`WeChatAuthLayer`]: validates our session token (a JWT: [`TokenIssuer`]), keeps the
//!   user's WeChat tokens fresh through the [`SessionManager`](wechat_sessions::SessionManager), and
//!   attaches a [`WeChatUser`] to each request. Generic over `http::Request<B>`: axum, hyper,
//!   tonic. An ordinary request (valid session, no refresh due) does no I/O and no upstream call,
//!   and a token verified once is not verified again until it expires.
//! - [`WeChatUser`]: who is calling; an axum extractor (`FromRequestParts`, and
//!   `OptionalFromRequestParts` for `Option<WeChatUser>`).
//! - [`LoginEndpoints`]: code login, Mini Program login, website / Official Account start and
//!   callback with a self-verifying state, logout and logout-all.
//! - [`serve`] (feature `server`, default): the hardened listener; [`security_headers`]:
//!   credentials marked sensitive, safe page headers; `metrics::Prometheus` (feature
//!   `prometheus`): `GET /metrics`.
//! - [`AuthError`]: stable machine codes, RFC 6750 challenges, customizable responses
//!   ([`RejectionResponse`]).
//!
//! ```no_run
//! use axum::{Json, Router, routing::get};
//! use tower_wechat::{LoginEndpoints, SigningKey, WeChatAuthLayer, WeChatUser};
//! use wechat_oauth::Client;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("wx123", "secret").build()?;
//! let key = SigningKey::hs256("k1", b"a secret of at least 32 bytes....")?;
//! let auth = WeChatAuthLayer::builder(client, key).build()?;
//! let login = LoginEndpoints::new(&auth);
//! let app: Router = Router::new()
//!     .route("/me", get(|user: WeChatUser| async move { user.openid().to_string() }))
//!     .merge(login.router())
//!     .layer(auth.clone())
//!     .layer(tower_wechat::security_headers());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! // Timeouts and connection caps, and the peer's address (the per-client login limits key
//! // on it) in every request.
//! tower_wechat::serve(listener, app).await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod apps;
mod auth;
mod cookie;
mod endpoints;
pub mod grpc;
mod headers;
mod limits;
pub mod metrics;
mod pages;
mod rejection;
#[cfg(feature = "server")]
mod server;
mod state;
mod token;
mod user;

pub use apps::{AppKind, UnknownAppKind};
pub use auth::{
    BuildError, REISSUED_TOKEN_HEADER, RequireUserLayer, RequireUserService, ResponseFuture,
    TokenSource, WeChatAuth, WeChatAuthBuilder, WeChatAuthLayer,
};
pub use cookie::{SameSite, SessionCookie};
pub use endpoints::{
    BINDING_COOKIE, ClientKey, CodeLogin, LoginClientOf, LoginEndpoints, LoginPaths, LoginSuccess,
    SCAN_BINDING_COOKIE, ScanLogin, ScanPoll, ScanPushError, ScanStart, ScanStatus, SessionChanged,
    StartRequest, UserSessions, WebCallback, WebFlow, WebStart,
};
pub use grpc::{GrpcOrElse, GrpcRejection};
pub use headers::{SENSITIVE_HEADERS, SecurityHeadersLayer, security_headers};
pub use limits::LoginLimits;
pub use pages::{BuiltinPages, ErrorPages, escape_html};
pub use rejection::{AuthError, JsonAuthRejection, Rejection, RejectionResponse};
#[cfg(feature = "server")]
pub use server::{Serve, ServeLimits, serve};
pub use state::{StateError, StateSigner};
pub use token::{
    Claims, IssuedToken, KeyRing, MIN_HS256_SECRET, SigningKey, SigningKeyError, TokenConfig,
    TokenIssuer, VerifiedToken,
};
pub use user::WeChatUser;

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
