//! The store traits. [`SessionStore`] is where session records live: small on purpose (get,
//! insert-new, compare-and-set, delete, delete-all-of-a-user, list-a-user's) so an in-memory, Redis or SQL
//! backend can implement it. [`SharedStore`] is what the coordinator needs besides, for a fleet
//! to act as one: leases, values written once and secrets. It has no defaults: a store shared
//! by several processes implements it on the shared backend; a store of one process implements
//! it in memory. `conformance` (feature `conformance`) holds the suites every backend must
//! pass: `run` for the records, `run_shared` for the rest.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::record::{SessionId, SessionRecord, UserId};
use crate::stamp::ReadStamp;

/// The default bound on one user's sessions (see [`SessionStore::insert`]).
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 100;

/// Why a store operation failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `insert` found a record with the same session id.
    #[error("a session with this id already exists")]
    AlreadyExists,
    /// The backend could not be reached or did not answer in time: transient, retry later.
    /// Never a reason to log a user out.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be decoded or opened (e.g. sealed under a key that is not
    /// configured). The record is kept; the request is answered "store unavailable", never
    /// "logged out".
    #[error("session record could not be decoded: {0}")]
    Corrupt(String),
}

/// The result of [`SessionStore::compare_and_set`]: written, or not (a compare-and-set has no
/// third outcome; a failure is a [`StoreError`]).
#[derive(Clone, Debug)]
pub enum CasOutcome {
    /// The record was written; it carries its new version.
    Stored(Arc<SessionRecord>),
    /// The stored version was not the expected one. `current` is what is stored now (`None` if
    /// the session was deleted in the meantime).
    Conflict {
        /// The record as it is stored now.
        current: Option<Arc<SessionRecord>>,
    },
}

/// Storage for session records.
///
/// Contract (checked by `conformance::run`, feature `conformance`):
/// - `get` returns `None` for unknown sessions and for records whose `expires_at` has passed by
///   the store's clock.
/// - `insert` stores a new record as given (its version included) and fails with
///   [`StoreError::AlreadyExists`] if the id is taken. When the user (AppID, OpenID) then has
///   more sessions than the store's per-user cap ([`DEFAULT_MAX_SESSIONS_PER_USER`] unless
///   configured), it ends the user's least recently confirmed ones (oldest `confirmed_at`: a
///   session in use is confirmed by every refresh, about every two hours), never the new one.
/// - `compare_and_set(expected, record)` writes `record` with version `expected + 1` only if the
///   stored record's version is `expected`; otherwise it reports the conflict and the current
///   record. It never resurrects a deleted session.
/// - `delete` reports whether a record was removed; `delete_user` removes every session of one
///   user and no other, and reports how many, in time proportional to that user's sessions and
///   without blocking other users' operations.
/// - `user_sessions` answers every live session of one user and no other's (in no particular
///   order), as `get` would answer each.
///
/// Futures are `Send` so the store can be used from any tokio task. The middleware's hot path
/// calls [`get_now`](SessionStore::get_now) and awaits `get` only when that has no answer.
pub trait SessionStore: Send + Sync + 'static {
    /// Loads a session.
    fn get(
        &self,
        sid: &SessionId,
    ) -> impl Future<Output = Result<Option<Arc<SessionRecord>>, StoreError>> + Send;

    /// The hot path's lookup, without waiting: `Some` with what [`get`](Self::get) would
    /// answer at `now` when the store knows it at once (a record in memory, or its certain
    /// absence), `None` when finding out needs I/O (the caller then awaits `get`). `now` is the
    /// caller's one reading of the clock the store shares, so a request reads it once. The
    /// default is `None`.
    fn get_now(
        &self,
        sid: &SessionId,
        now: SystemTime,
    ) -> Option<Result<Option<Arc<SessionRecord>>, StoreError>> {
        let _ = (sid, now);
        None
    }

    /// A stamp taken at `now`, before a read of `sid`, that later tells (by
    /// [`still_current`](Self::still_current)) whether what the read answered is still the
    /// stored record, so the caller may keep the record instead of reading again. `None` (the
    /// default) when the store cannot tell; a store that can keeps [`WriteEpochs`] and bumps
    /// them after every write of a session, expiry and eviction included.
    ///
    /// [`WriteEpochs`]: crate::WriteEpochs
    fn read_stamp(&self, sid: &SessionId, now: SystemTime) -> Option<ReadStamp> {
        let _ = (sid, now);
        None
    }

    /// Whether a record read after `stamp` was taken is still the stored one at `now` (no
    /// write of it since, and the store need not hear of the read yet). The default is `false`.
    fn still_current(&self, stamp: &ReadStamp, now: SystemTime) -> bool {
        let _ = (stamp, now);
        false
    }

    /// Stores a new session.
    fn insert(
        &self,
        record: SessionRecord,
    ) -> impl Future<Output = Result<Arc<SessionRecord>, StoreError>> + Send;

    /// Replaces a session if its stored version is `expected_version`.
    fn compare_and_set(
        &self,
        expected_version: u64,
        record: SessionRecord,
    ) -> impl Future<Output = Result<CasOutcome, StoreError>> + Send;

    /// Removes a session; `true` if it existed.
    fn delete(&self, sid: &SessionId) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Removes every session of one user; returns how many.
    fn delete_user(&self, user: &UserId) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Every live session of one user (what the user's "where you're logged in" page lists).
    fn user_sessions(
        &self,
        user: &UserId,
    ) -> impl Future<Output = Result<Vec<Arc<SessionRecord>>, StoreError>> + Send;
}

/// What the coordinator needs of a store besides the records, so that what holds on one
/// instance holds on every instance sharing the store: one refresh per expiry and one exchange
/// per code (leases), a code's outcome and a used OAuth state remembered once (values), each
/// app's access token and each Mini Program user's newest session key (secrets).
///
/// No method has a default: a store shared by several processes implements them on its shared
/// backend; a store of one process implements them in memory (`MokaStore` does, and
/// `wechat_sessions::SingleProcess` gives any store of one process an in-memory set).
/// `conformance::run_shared` (feature `conformance`) checks them.
pub trait SharedStore: SessionStore {
    /// Loads a session from the shared store itself, past any local copy (a flight re-reads
    /// this way after taking its lease). A store without a local copy answers as [`get`](SessionStore::get).
    fn get_shared(
        &self,
        sid: &SessionId,
    ) -> impl Future<Output = Result<Option<Arc<SessionRecord>>, StoreError>> + Send;

    /// Takes the lease `name` for `ttl` if no one holds it, as `owner`; `true` if taken. While
    /// it is held, no other instance takes it; it ends when released by its owner or when its
    /// time runs out (a crashed holder).
    fn try_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Extends a lease `owner` holds to `ttl` from now; `false` if it no longer holds it.
    fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Releases a lease, only if `owner` holds it.
    fn release_lease(
        &self,
        name: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Stores `value` under `key` for `ttl` unless a value is there; returns the value that
    /// was there (then nothing is written). Shared by every instance: remembered login
    /// outcomes and used OAuth states.
    fn put_value_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// The value under `key`, if any (see [`put_value_if_absent`](Self::put_value_if_absent)).
    fn get_value(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    /// Stores the secret `value` under `key` for `ttl`, replacing what is there. Shared by
    /// every instance: each app's access token, each Mini Program user's newest session key. A
    /// store that keeps data outside the process seals it as it seals records.
    fn put_secret(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The secret under `key`, if any (see [`put_secret`](Self::put_secret)).
    fn get_secret(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
}

impl<S: SessionStore> SessionStore for Arc<S> {
    fn get(
        &self,
        sid: &SessionId,
    ) -> impl Future<Output = Result<Option<Arc<SessionRecord>>, StoreError>> + Send {
        (**self).get(sid)
    }

    fn get_now(
        &self,
        sid: &SessionId,
        now: SystemTime,
    ) -> Option<Result<Option<Arc<SessionRecord>>, StoreError>> {
        (**self).get_now(sid, now)
    }

    fn read_stamp(&self, sid: &SessionId, now: SystemTime) -> Option<ReadStamp> {
        (**self).read_stamp(sid, now)
    }

    fn still_current(&self, stamp: &ReadStamp, now: SystemTime) -> bool {
        (**self).still_current(stamp, now)
    }

    fn insert(
        &self,
        record: SessionRecord,
    ) -> impl Future<Output = Result<Arc<SessionRecord>, StoreError>> + Send {
        (**self).insert(record)
    }

    fn compare_and_set(
        &self,
        expected_version: u64,
        record: SessionRecord,
    ) -> impl Future<Output = Result<CasOutcome, StoreError>> + Send {
        (**self).compare_and_set(expected_version, record)
    }

    fn delete(&self, sid: &SessionId) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).delete(sid)
    }

    fn delete_user(&self, user: &UserId) -> impl Future<Output = Result<usize, StoreError>> + Send {
        (**self).delete_user(user)
    }

    fn user_sessions(
        &self,
        user: &UserId,
    ) -> impl Future<Output = Result<Vec<Arc<SessionRecord>>, StoreError>> + Send {
        (**self).user_sessions(user)
    }
}

impl<S: SharedStore> SharedStore for Arc<S> {
    fn get_shared(
        &self,
        sid: &SessionId,
    ) -> impl Future<Output = Result<Option<Arc<SessionRecord>>, StoreError>> + Send {
        (**self).get_shared(sid)
    }

    fn try_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).try_lease(name, owner, ttl)
    }

    fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).renew_lease(name, owner, ttl)
    }

    fn release_lease(
        &self,
        name: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).release_lease(name, owner)
    }

    fn put_value_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send {
        (**self).put_value_if_absent(key, value, ttl)
    }

    fn get_value(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send {
        (**self).get_value(key)
    }

    fn put_secret(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).put_secret(key, value, ttl)
    }

    fn get_secret(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send {
        (**self).get_secret(key)
    }
}
