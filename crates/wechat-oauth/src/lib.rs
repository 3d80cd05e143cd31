//! A typed async client for WeChat's OAuth ("sns") endpoints.
//!
//! - [`Client`]: code exchange, refresh, `/sns/auth` check, userinfo and `jscode2session`; the
//!   app access token (`stable_token`) and the Mini Program calls made with it (phone number,
//!   session key check and reset); with timeouts, bounded retries for idempotent calls, and no URL (which carries the AppSecret) in
//!   any log or error.
//! - [`authorize`]: browser authorize URLs for the website and Official Account flows.
//! - [`push`]: what WeChat pushes to an Official Account's server URL, its signature checked and
//!   safe mode opened.
//! - [`user_data`]: a Mini Program client's `encryptedData` opened with the session key, its
//!   watermark and `rawData` signature checked.
//! - [`Error`] and [`ErrCode`]: an open errcode with a [classification](ErrorClass) a caller can
//!   act on; `-1` and unknown codes are values, not parse failures.
//! - Secrets ([`AppSecret`], [`AuthCode`], [`AccessToken`], [`RefreshToken`], [`SessionKey`],
//!   [`AppAccessToken`], [`PhoneCode`])
//!   redact themselves in `Debug` and have no `Display`.
//!
//! The parser survives WeChat's quirks: `text/plain` content types, raw control characters,
//! odd bytes and truncated emoji (unpaired surrogate escapes) in nicknames, `errcode` sent as a
//! string, garbage in optional numbers, trailing commas in scope lists, unknown fields, and empty
//! or HTML bodies (a [`Error::Decode`] that keeps the body, tokens and secrets redacted, JSON
//! fields and echoed query strings alike). `expires_in` is clamped to 1 s..=31 days.
//!
//! ```no_run
//! use wechat_oauth::{AppId, AppSecret, AuthCode, Client, ErrorClass, Lang};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder(AppId::new("wx1234567890abcdef"), AppSecret::new("secret"))
//!     .build()?;
//! match client.exchange_code(&AuthCode::new("code-from-the-app")).await {
//!     Ok(grant) => {
//!         if grant.scopes.allows_userinfo() && !grant.snapshot_user {
//!             let profile = client.userinfo(&grant.access_token, &grant.openid, Lang::En).await?;
//!             println!("hello {}", profile.nickname);
//!         }
//!     }
//!     Err(e) if e.class() == ErrorClass::Reauthorize => println!("ask the user to log in again"),
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod authorize;
#[cfg(feature = "client")]
mod client;
pub mod clock;
mod error;
pub mod metrics;
pub mod push;
mod types;
pub mod user_data;
#[cfg(any(feature = "client", feature = "fuzzing"))]
mod wire;

pub use authorize::{AuthorizeUrlError, OfficialAccountScope, State};
#[cfg(feature = "client")]
pub use client::{
    Client, ClientBuildError, ClientBuilder, DEFAULT_API_BASE, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MP_BASE, DEFAULT_TIMEOUT, RetryPolicy,
};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use error::{ApiError, ErrCode, Error, ErrorClass, RedactedBody, TransportErrorKind};
pub use push::{PushError, PushMessage, PushMode, PushQuery, PushVerifier};
pub use types::{
    AccessToken, AppAccessToken, AppId, AppSecret, AppTokenGrant, AuthCode, Follower, Lang,
    MiniProgramSession, OpenId, PhoneCode, PhoneInfo, QrTicket, RefreshToken, Scope, Scopes,
    ScopesIter, SessionKey, TokenGrant, UnionId, UserInfo,
};
pub use user_data::{DecryptError, EncryptedData, decrypt_user_data};

/// Entry points for the fuzz targets (`fuzz/`): the answer parser behind every call. Not a
/// stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use std::time::{Duration, UNIX_EPOCH};

    use crate::{AppId, Error, wire};

    /// Decodes `bytes` as the answer of each endpoint and builds its result, and formats
    /// every error: whatever the bytes, an answer or an error value, never a panic.
    pub fn answers(bytes: &[u8]) {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let check = |result: Result<(), Error>| {
            if let Err(error) = result {
                let _ = format!("{error} {error:?}");
            }
        };
        check(wire::decode::<wire::WireGrant>(bytes).and_then(|w| w.into_grant(now).map(drop)));
        check(wire::decode::<wire::WireUserInfo>(bytes).map(|w| drop(crate::UserInfo::from(w))));
        check(
            wire::decode::<wire::WireMiniProgramSession>(bytes)
                .and_then(|w| crate::MiniProgramSession::try_from(w).map(drop)),
        );
        check(wire::decode::<wire::WireAppToken>(bytes).and_then(|w| w.into_grant(now).map(drop)));
        check(
            wire::decode::<wire::WirePhone>(bytes)
                .and_then(|w| w.into_phone(&AppId::new("wxfuzz")).map(drop)),
        );
        check(wire::decode::<wire::WireSessionKey>(bytes).and_then(|w| w.into_key().map(drop)));
        check(wire::decode::<wire::WireOk>(bytes).map(drop));
        let _ = crate::RedactedBody::new(&String::from_utf8_lossy(bytes));
    }
}

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
