//! A Redis session store for `wechat-login`: [`RedisStore`] implements
//! [`SessionStore`](wechat_session_store::SessionStore),
//! [`SharedStore`](wechat_session_store::SharedStore) (the fleet's leases, values and secrets)
//! and [`Invalidations`](wechat_session_store::Invalidations) on Redis, Redis Cluster or
//! Sentinel (through [fred](https://docs.rs/fred)), so sessions outlive a process and are shared
//! by every instance of a fleet. It depends on the store contract (`wechat-session-store`) only;
//! [`RedisStore::with_local_cache`] (feature `local-cache`, on by default) puts
//! `wechat-sessions`'s local cache in front.
//!
//! - Atomic: insert-new, compare-and-set and delete are Lua scripts on one key; see
//!   [`store`](crate::RedisStore) for what a cluster makes two steps, and why that is safe.
//! - Sealed at rest: each record is encrypted and authenticated with AES-256-GCM under a
//!   [`SealingKey`] with a key id (rotate by adding the old key as a previous key); the session
//!   id and app are bound as associated data. Nothing secret is readable with `redis-cli`. A
//!   record that does not open is reported as corrupt (the request gets 503) and kept.
//! - Expiring in Redis: every record carries `PEXPIREAT` at the session's end.
//! - Bounded: every command has a timeout (default 50 ms); Redis down or slow is
//!   [`StoreError::Unavailable`](wechat_session_store::StoreError::Unavailable), and the client
//!   reconnects by itself.
//!
//! ```no_run
//! use wechat_redis_store::{RedisStore, SealingKey};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SealingKey::parse("k1", "<64 hex digits or base64 of 32 bytes>")?;
//! let store = RedisStore::builder("redis://127.0.0.1:6379", key)?
//!     .prefix("myapp")
//!     .connect()
//!     .await?;
//! # let _ = store; Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod codec;
mod index;
pub mod metrics;
mod seal;
mod store;

pub use seal::{SealingKey, SealingKeyError};

/// Entry points for the fuzz targets (`fuzz/`). Not a stable API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use wechat_oauth::AppId;
    use wechat_session_store::SessionId;

    /// Decodes `bytes` as a stored record's plaintext; a record that decodes re-encodes to
    /// bytes that decode to the same record. Panics only if that does not hold.
    pub fn record(bytes: &[u8]) {
        let sid = SessionId::from_bytes([7; 16]);
        let Ok(record) = crate::codec::decode(sid, AppId::new("wxfuzz"), 3, bytes) else {
            return;
        };
        let encoded = crate::codec::encode(&record).expect("a decoded record encodes");
        let again = crate::codec::decode(sid, AppId::new("wxfuzz"), 3, &encoded)
            .expect("an encoded record decodes");
        assert_eq!(
            crate::codec::encode(&again).expect("encodes"),
            encoded,
            "a record re-encodes unchanged"
        );
    }
}
pub use store::{
    DEFAULT_COMMAND_TIMEOUT, DEFAULT_PREFIX, RedisStore, RedisStoreBuilder, RedisStoreError,
};

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
