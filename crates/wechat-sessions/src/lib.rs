//! The sessions of a WeChat login server: records, stores, and the [`SessionManager`] that keeps
//! them alive.
//!
//! A user logs in once ([`SessionManager::login`]); the server then holds a [`SessionRecord`] with
//! their WeChat access and refresh tokens and hands the client only a [`SessionId`] (inside its
//! own session token). On each request [`SessionManager::session`] returns the record, refreshing the
//! access token shortly before it expires — once per session however many requests ask at once
//! — and checking the grant with WeChat at a configurable interval.
//!
//! ```no_run
//! use wechat_oauth::{AuthCode, Client};
//! use wechat_sessions::{SessionError, SessionManager};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("wx1234567890abcdef", "app-secret").build()?;
//! let sessions = SessionManager::builder(client).build(); // in memory; `.store(..)` for Redis
//! let session = sessions.login(&AuthCode::new("code-from-the-app")).await?;
//! // On each request carrying session.sid:
//! match sessions.session(&session.sid).await {
//!     Ok(record) => println!("user {}", record.openid),
//!     Err(SessionError::Unavailable { retry_after }) => println!("retry in {retry_after:?}"),
//!     Err(error) => println!("log in again: {error}"),
//! }
//! # Ok(()) }
//! ```
//!
//! # Outcomes
//!
//! | WeChat says | the session | the caller gets |
//! |---|---|---|
//! | refreshed / confirmed | updated (compare-and-set) | the record |
//! | grant gone: 42002, 40030, 40003, 50001 | deleted (kept if another refresh replaced the refused token meanwhile) | [`SessionError::Reauthorize`] (or the replaced record) |
//! | transient: -1, 45011, timeout, 5xx, bad body | kept | the record while its access token is valid (refresh) or within the [`GracePolicy`] (check); else [`SessionError::Unavailable`] with a retry-after |
//! | misconfigured: 40013, 40125, 41xxx | kept, logged at error; not asked again for 60 s | [`SessionError::Misconfigured`] |
//! | denied: 48001, 50002, 40226 | kept; not asked again for the failure cooldown | [`SessionError::Denied`] |
//!
//! # Grace policy
//!
//! With [`SessionConfig::check_interval`] set, a session whose grant WeChat last confirmed longer
//! ago than the interval is checked (`/sns/auth`) before it is served. If that check fails
//! transiently, [`GracePolicy::ServeFor`] keeps serving until that long after the last
//! confirmation; [`GracePolicy::FailClosed`] answers [`SessionError::Unavailable`] at once.
//! Failures are remembered per session for a short cooldown, so an outage costs one upstream
//! call per session per cooldown, not one per request.
//!
//! # Login
//!
//! A code is a credential, exchanged once however often it is submitted. Submits in flight
//! together share the exchange; afterwards a repeat gets the session only when it shows the same
//! [`LoginBinding`] (flow and client proof) within a short window, and is refused as "code used"
//! otherwise. Refusals are remembered apart from successes so junk codes cannot push real logins
//! out.
//!
//! # Apps and users
//!
//! One cache serves several WeChat apps (mobile app, website, Official Account, Mini Program:
//! [`SessionManagerBuilder::app`]); a session records its app, and is refreshed and checked with
//! that app's credentials (a session of an app the cache does not serve is not served). A
//! [`LoginHook`] maps each new login to the application's own [`UserId`] (by default the
//! unionid, else app + openid), which logout-all ends across apps.
//!
//! # The app access token and Mini Program data
//!
//! [`SessionManager::app_token`] keeps each app's own access token (`stable_token`): one per app,
//! refreshed before it expires, one upstream call per expiry for the whole fleet (single flight
//! and a lease, the token shared sealed through the store), forced only after WeChat refused it
//! and at most once per [`SessionConfig::forced_refresh_interval`]; [`SessionManager::with_app_token`]
//! retries a call once after WeChat refused the token. On it: [`SessionManager::phone_number`],
//! [`SessionManager::check_session_key`], [`SessionManager::reset_session_key`]. Each Mini Program
//! user's newest session key ([`SessionManager::session_key`]) replaces older sessions' keys.
//!
//! # Stores
//!
//! The store contract lives in `wechat-session-store` (re-exported here): [`SessionStore`] for the
//! records and [`SharedStore`] for the fleet's leases, values and secrets, with no defaults, and
//! `conformance::run` / `run_shared` (feature `conformance`) to check a backend.
//! [`MokaStore`] is the embedded default (bounded, LRU, per-record expiry at the refresh
//! horizon, its leases and values in memory); [`SingleProcess`] gives any store of one process
//! the same in-memory [`SharedStore`]; [`CachedStore`] puts a local cache in front of a shared
//! store that publishes [`Invalidations`], so a fleet's hot path does no I/O.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod app_token;
mod config;
mod env;
mod error;
mod flight;
mod flow;
mod hook;
mod lease;
mod local;
mod login;
mod manager;
pub mod metrics;
mod mini_program;
mod moka_store;
mod recent;
#[doc(hidden)]
pub mod sets;
mod single_process;
#[cfg(test)]
mod wait;

pub use config::{GracePolicy, MAX_REFRESH_WINDOW, SessionConfig};
pub use error::{AppTokenError, CallError, LoginError, SessionError};
pub use flow::LoginFlow;
pub use hook::{HookError, LoginHook, NewLogin};
pub use local::{CachedStore, CachedStoreBuilder};
pub use login::LoginBinding;
pub use manager::{SessionManager, SessionManagerBuilder};
pub use moka_store::{DEFAULT_MAX_SESSIONS, MokaStore, MokaStoreBuilder, StoreExpiry};
pub use single_process::SingleProcess;
pub use wechat_oauth::clock::{Clock, ManualClock, SharedClock, SystemClock};
#[cfg(feature = "conformance")]
pub use wechat_session_store::conformance;
pub use wechat_session_store::{
    CasOutcome, Credentials, DEFAULT_MAX_SESSIONS_PER_USER, InvalidSessionId, InvalidationSink,
    Invalidations, LoginClient, MAX_USER_ID_LEN, ReadStamp, SessionId, SessionRecord, SessionStore,
    SharedStore, StoreError, UserId, WriteEpochs,
};

/// Entry points for the fuzz targets (`fuzz/`): the decoders of what this crate keeps in a
/// shared store. Not a stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Decodes a shared login outcome and a shared app token from `bytes`; panics only if a
    /// decoded value does not re-encode unchanged.
    pub fn shared_values(bytes: &[u8]) {
        crate::login::fuzz_shared_outcome(bytes);
        crate::app_token::fuzz_shared_token(bytes);
    }
}

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
