//! The middleware: [`WeChatAuthLayer`] (shared configuration and its builder), the
//! authenticator (who a request's user is: every decision), [`WeChatAuth`] (the thin service
//! carrying it out), [`ResponseFuture`], [`RequireUserLayer`], and where tokens come from
//! ([`TokenSource`]).
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tower_wechat::{KeyRing, SigningKey, WeChatAuthLayer, WeChatUser};
//! use wechat_oauth::{AppId, AppSecret, Client};
//!
//! # fn app() -> Result<Router, Box<dyn std::error::Error>> {
//! let client = Client::builder(AppId::new("wx123"), AppSecret::new("secret")).build()?;
//! let keys = KeyRing::new(SigningKey::hs256("k1", b"a secret of at least 32 bytes....")?);
//! let auth = WeChatAuthLayer::builder(client, keys).build()?;
//! let app = Router::new()
//!     .route("/me", get(|user: WeChatUser| async move { user.openid().to_string() }))
//!     .layer(auth);
//! # Ok(app) }
//! ```

mod authenticator;
mod future;
mod layer;
mod require;
mod service;
pub(crate) mod source;

pub use future::ResponseFuture;
pub use layer::{BuildError, WeChatAuthBuilder, WeChatAuthLayer};
pub use require::{RequireUserLayer, RequireUserService};
pub use service::WeChatAuth;
pub use source::{REISSUED_TOKEN_HEADER, TokenSource};
