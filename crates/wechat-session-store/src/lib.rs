//! The session store contract of `wechat-login`: what a session is and where it lives, for
//! anyone writing a backend (SQL, another key-value store) without the coordinator, moka or an
//! HTTP client.
//!
//! - [`SessionRecord`], [`SessionId`], [`UserId`], [`Credentials`]: one record per login,
//!   versioned for compare-and-set.
//! - [`SessionStore`]: get, insert-new, compare-and-set, delete, delete-all-of-a-user, list a
//!   user's sessions (with
//!   optional read hints: [`get_now`](SessionStore::get_now), [`ReadStamp`]s).
//! - [`SharedStore`]: leases, values written once and secrets, so a fleet sharing the store acts
//!   as one. No defaults: implement it on the shared backend, or in memory for one process.
//! - [`Invalidations`]: a shared store that tells every instance when a session changes, so a
//!   local cache in front of it stays honest.
//! - `conformance` (feature `conformance`): `run` and `run_shared`, the suites every backend
//!   must pass, each check naming the rule it found broken.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use wechat_session_store::{SessionId, SessionRecord, SessionStore, StoreError, UserId};
//!
//! /// Ends every session of a user, whatever the backend.
//! async fn sign_out_everywhere(store: &impl SessionStore, user: &UserId) -> Result<usize, StoreError> {
//!     store.delete_user(user).await
//! }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "conformance")]
pub mod conformance;
mod invalidations;
mod record;
mod stamp;
mod store;

pub use invalidations::{InvalidationSink, Invalidations};
pub use record::{
    Credentials, InvalidSessionId, LoginClient, MAX_USER_ID_LEN, SessionId, SessionRecord, UserId,
};
pub use stamp::{ReadStamp, WriteEpochs};
pub use store::{CasOutcome, DEFAULT_MAX_SESSIONS_PER_USER, SessionStore, SharedStore, StoreError};

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
