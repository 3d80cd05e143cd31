//! A stateful, faithful fake of WeChat's OAuth servers (`api.weixin.qq.com` and
//! `open.weixin.qq.com`) for tests, examples and local development.
//!
//! It keeps codes, access and refresh tokens and user profiles the way WeChat does: codes are
//! single use and expire, a refresh renews an unexpired access token and replaces an expired one,
//! refresh tokens have a fixed horizon, errors come back as HTTP 200 `text/plain`
//! `{"errcode":N,"errmsg":"..., rid: ..."}`. It also keeps each app's access token
//! (`/cgi-bin/stable_token`, and `/cgi-bin/token`, whose every call replaces the token) and the
//! Mini Program APIs made with it: phone numbers by single-use code, `checksession` and
//! `resetusersessionkey` against each user's current session key; and an Official Account's
//! parametric QR codes, followers and the signed (and, in safe mode, encrypted) pushes of scans
//! and messages to the account's server URL. A test drives it through [`MockWeChat`]: mint
//! codes, move the mock clock, revoke users, simulate scans, inject faults and count calls.
//!
//! ```
//! use wechat_mock::{MockConfig, MockGrant, MockWeChat};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let mock = MockWeChat::start(MockConfig::default()).await?;
//! let code = mock.mint_code(MockGrant::default());
//! let exchange = format!(
//!     "{}/sns/oauth2/access_token?appid={}&secret={}&code={code}&grant_type=authorization_code",
//!     mock.base_url(),
//!     mock.appid(),
//!     mock.secret(),
//! );
//! // GET `exchange` with your HTTP client: {"access_token":"...","expires_in":7200,...}
//! # let _ = exchange;
//! # Ok(())
//! # }
//! ```
//!
//! The same server is a binary (`wechat-mock --bind ADDR --appid ID --secret SECRET`) with an
//! HTTP control API under `/mock/`; see the crate README.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod app;
mod config;
mod control;
mod endpoint;
mod handle;
mod mp;
mod pages;
mod sns;
mod state;
mod wxa;

pub use config::{
    DEFAULT_APPID, DEFAULT_SECRET, DEMO_OPENID, MockApp, MockConfig, MockGrant, MockProfile,
};
pub use endpoint::{Endpoint, Fault, ParseEndpointError};
pub use handle::MockWeChat;
pub use mp::MockPushTarget;

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
