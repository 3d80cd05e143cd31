//! [`CachedStore`]: a local moka cache in front of a shared store, so an ordinary request on
//! any instance does no I/O, kept honest by the shared store's invalidations.
//!
//! Every write on any instance makes the shared store publish the session id ([`Invalidations`]);
//! a logout-all publishes the user once. Each instance drops its copies when it hears them. Each
//! instance also publishes heartbeats stamped with its own clock on the same channel, and hears
//! its own come back: the channel delivers in order, so once a heartbeat stamped `t` is back,
//! every invalidation published before `t` has been heard. That is what a copy's trust rests on:
//!
//! - a local copy is trusted while this instance's latest heartbeat back was stamped within half
//!   the maximum staleness, and the channel has not been interrupted since the copy was
//!   fetched;
//! - otherwise it is served only if it was fetched within the maximum staleness
//!   ([`CachedStoreBuilder::max_staleness`], default 2 s), else read again from the shared store.
//!
//! So however messages are lost or late (a disconnect, a reconnect, a silent network, a stream
//! delayed by any amount), a session ended on another instance is served here for at most the
//! maximum staleness after it ended: a delayed stream brings back old stamps, and copies fall
//! back to re-reading. The stamps are read against the clock that made them, so no skew between
//! instances enters. A copy is stamped with the time its read *started*, and is dropped again if
//! an invalidation, a write of this instance or an interruption happened while it was read, so a
//! read that an invalidation overtook never stays. A login on this instance makes the copies of
//! that user's other sessions untrusted at once (the shared store may have ended the oldest
//! under its per-user cap, and its invalidation may not have arrived yet); a user invalidation
//! heard does the same. After an interruption, or heartbeats lost on the way, copies count as
//! trusted only from the first heartbeat heard afterwards.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use wechat_oauth::clock::SharedClock;

use crate::{InvalidationSink, Invalidations};
use wechat_session_store::{CasOutcome, SessionStore, SharedStore, StoreError};
use wechat_session_store::{SessionId, SessionRecord, UserId};

/// A local copy and when it was fetched (Unix ms, store clock).
#[derive(Clone)]
struct LocalCopy {
    record: Arc<SessionRecord>,
    fetched_ms: u64,
    /// The record's user's bucket in [`Local::users`], and its counter when the copy was kept.
    user_bucket: usize,
    user_epoch: u64,
}

/// Buckets of [`Local::users`].
const USER_BUCKETS: usize = 1_024;

fn user_bucket(user: &wechat_session_store::UserId) -> usize {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(user) as usize % USER_BUCKETS
}

/// The local cache and what it knows of the channel.
struct Local {
    copies: Cache<SessionId, LocalCopy>,
    clock: SharedClock,
    max_staleness_ms: u64,
    /// A copy is trusted beyond the staleness only while the latest heartbeat back was stamped
    /// within this.
    silence_ms: u64,
    /// The stamp of the latest heartbeat back.
    heard_ms: AtomicU64,
    /// When the channel last came back from lost heartbeats or an interruption: copies fetched
    /// before it may have missed invalidations.
    recovered_ms: AtomicU64,
    /// Bumped by every invalidation heard, every write of this instance (before and after) and
    /// every interruption: a copy read while it moved is dropped again.
    generation: AtomicU64,
    /// Bumped, per bucket of users, after a login of this instance: the shared store may have
    /// ended the user's oldest sessions (its per-user cap), and their copies here must not be
    /// served before the invalidations arrive.
    users: Box<[AtomicU64]>,
    /// Set by an interruption, cleared by the next heartbeat heard, which moves `recovered_ms`
    /// (the subscription is certainly active again only once something arrives on it).
    pending_recovery: std::sync::atomic::AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    /// The same, and invalidations heard, as metrics (registered when the cache is built).
    hit_counter: metrics::Counter,
    miss_counter: metrics::Counter,
    invalidated_counter: metrics::Counter,
}

impl Local {
    fn now_ms(&self) -> u64 {
        unix_millis(self.clock.now())
    }

    /// Whether a copy fetched at `fetched_ms` may be served at `now`.
    fn trusted(&self, fetched_ms: u64, now: u64) -> bool {
        if now.saturating_sub(fetched_ms) <= self.max_staleness_ms {
            return true;
        }
        let heard = self.heard_ms.load(Ordering::Acquire);
        let recovered = self.recovered_ms.load(Ordering::Acquire);
        now.saturating_sub(heard) <= self.silence_ms && fetched_ms > recovered
    }
}

impl Local {
    /// Whether `copy` may be served at `now`: trusted, no login of its user here since it was
    /// read, and not past its end.
    fn servable(&self, copy: &LocalCopy, now: SystemTime) -> bool {
        let users_wrote = self.users[copy.user_bucket].load(Ordering::Acquire) != copy.user_epoch;
        self.trusted(copy.fetched_ms, unix_millis(now))
            && !users_wrote
            && !copy.record.is_expired(now)
    }
}

impl InvalidationSink for Local {
    fn invalidate(&self, sid: &SessionId) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.copies.invalidate(sid);
        self.invalidated_counter.increment(1);
    }

    fn invalidate_user(&self, user: &UserId) {
        // Reads in flight keep nothing, and copies of the user's bucket are read again.
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.users[user_bucket(user)].fetch_add(1, Ordering::AcqRel);
        self.invalidated_counter.increment(1);
    }

    fn stamp(&self) -> u64 {
        self.now_ms()
    }

    fn heard(&self, stamp: u64) {
        let before = self.heard_ms.fetch_max(stamp, Ordering::AcqRel);
        let after_interruption = self.pending_recovery.swap(false, Ordering::AcqRel);
        // Heartbeats go out every half of `silence_ms`: a longer gap between two that came
        // back means some were lost on the way, and invalidations with them.
        if after_interruption || stamp.saturating_sub(before) > self.silence_ms {
            self.recovered_ms.fetch_max(self.now_ms(), Ordering::AcqRel);
        }
    }

    fn interrupted(&self) {
        let now = self.now_ms();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.pending_recovery.store(true, Ordering::Release);
        self.recovered_ms.fetch_max(now, Ordering::AcqRel);
        tracing::warn!(
            "the invalidation channel was interrupted: local session copies are re-read once older than the maximum staleness"
        );
    }
}

/// A local cache in front of a shared store. Cheap to clone; clones share the cache.
pub struct CachedStore<S> {
    shared: S,
    local: Arc<Local>,
}

impl<S: Clone> Clone for CachedStore<S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            local: Arc::clone(&self.local),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for CachedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("shared", &self.shared)
            .field("copies", &self.local.copies.entry_count())
            .field("max_staleness_ms", &self.local.max_staleness_ms)
            .finish()
    }
}

/// Configures a [`CachedStore`].
#[derive(Debug)]
pub struct CachedStoreBuilder<S> {
    shared: S,
    max_sessions: u64,
    max_staleness: Duration,
    clock: SharedClock,
}

impl<S: Invalidations> CachedStoreBuilder<S> {
    /// The most local copies (default 1,000,000; least recently used ones go beyond it).
    pub fn max_sessions(mut self, max: u64) -> Self {
        self.max_sessions = max;
        self
    }

    /// The longest a session ended elsewhere may still be served here when invalidations are
    /// lost or late (default 2 s, at least 100 ms). Heartbeats go every quarter of it.
    pub fn max_staleness(mut self, max: Duration) -> Self {
        self.max_staleness = max.max(Duration::from_millis(100));
        self
    }

    /// The clock copies are timed with (default: the system clock; use the store's).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Subscribes to the shared store's invalidations and builds the cache. Fails if the
    /// channel cannot be opened.
    pub async fn build(self) -> Result<CachedStore<S>, StoreError> {
        let max_staleness_ms = self.max_staleness.as_millis() as u64;
        let local = Arc::new(Local {
            copies: Cache::builder()
                .max_capacity(self.max_sessions)
                .eviction_policy(EvictionPolicy::lru())
                .support_invalidation_closures()
                .build(),
            clock: self.clock,
            max_staleness_ms,
            silence_ms: max_staleness_ms / 2,
            heard_ms: AtomicU64::new(0),
            recovered_ms: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            users: (0..USER_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            pending_recovery: std::sync::atomic::AtomicBool::new(false),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            hit_counter: metrics::counter!(crate::metrics::LOCAL_CACHE, "result" => "hit"),
            miss_counter: metrics::counter!(crate::metrics::LOCAL_CACHE, "result" => "miss"),
            invalidated_counter: metrics::counter!(
                crate::metrics::LOCAL_CACHE,
                "result" => "invalidated"
            ),
        });
        local.heard(local.stamp());
        let sink: Arc<dyn InvalidationSink> = Arc::clone(&local) as _;
        self.shared.subscribe(sink, self.max_staleness / 4).await?;
        Ok(CachedStore {
            shared: self.shared,
            local,
        })
    }
}

impl<S: Invalidations> CachedStore<S> {
    /// Starts configuring a local cache in front of `shared`.
    pub fn builder(shared: S) -> CachedStoreBuilder<S> {
        CachedStoreBuilder {
            shared,
            max_sessions: 1_000_000,
            max_staleness: Duration::from_secs(2),
            clock: Arc::new(wechat_oauth::clock::SystemClock),
        }
    }
}

impl<S> CachedStore<S> {
    /// The shared store.
    pub fn shared(&self) -> &S {
        &self.shared
    }

    /// Whether a live local copy of `sid` is held and `get` would serve it without asking the
    /// shared store (for tests and benchmarks; it counts no hit).
    pub fn holds(&self, sid: &SessionId) -> bool {
        let now = self.local.clock.now();
        self.local
            .copies
            .get(sid)
            .is_some_and(|copy| self.local.servable(&copy, now))
    }

    /// Local hits and misses of `get` so far.
    pub fn hit_counts(&self) -> (u64, u64) {
        (
            self.local.hits.load(Ordering::Relaxed),
            self.local.misses.load(Ordering::Relaxed),
        )
    }

    /// Runs `read` (a shared-store read or write that yields the record as it now is) and keeps
    /// its result as a local copy, stamped with the time the read *started*; the copy is dropped
    /// again if anything invalidated, wrote or interrupted meanwhile (the generation moved), so
    /// a copy that an invalidation overtook never stays.
    async fn read_through(
        &self,
        sid: SessionId,
        read: impl Future<Output = Result<Option<Arc<SessionRecord>>, StoreError>>,
    ) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let local = &self.local;
        let seen = local.generation.load(Ordering::Acquire);
        let started_ms = local.now_ms();
        let record = read.await?;
        match &record {
            Some(record) => self.keep_copy(record, started_ms, seen),
            None => local.copies.invalidate(&sid),
        }
        Ok(record)
    }

    /// Keeps `record`, read from `fetched_ms` on, as the local copy of its session, unless the
    /// generation moved from `seen` (then what was read may be stale and is dropped again).
    fn keep_copy(&self, record: &Arc<SessionRecord>, fetched_ms: u64, seen: u64) {
        let local = &self.local;
        let user_bucket = user_bucket(&record.user_id);
        local.copies.insert(
            record.sid,
            LocalCopy {
                record: Arc::clone(record),
                fetched_ms,
                user_bucket,
                user_epoch: local.users[user_bucket].load(Ordering::Acquire),
            },
        );
        if local.generation.load(Ordering::Acquire) != seen {
            local.copies.invalidate(&record.sid);
        }
    }

    /// Marks a write of this instance: in-flight reads of any session will not cache.
    fn writing(&self, sid: &SessionId) {
        self.local.generation.fetch_add(1, Ordering::AcqRel);
        self.local.copies.invalidate(sid);
    }
}

impl<S> CachedStore<S> {
    /// A trusted, live local copy.
    fn local_hit(&self, sid: &SessionId) -> Option<Arc<SessionRecord>> {
        self.local_hit_at(sid, self.local.clock.now())
    }

    /// [`local_hit`](Self::local_hit) at `now`.
    fn local_hit_at(&self, sid: &SessionId, now: SystemTime) -> Option<Arc<SessionRecord>> {
        let local = &self.local;
        let copy = local.copies.get(sid)?;
        local.servable(&copy, now).then(|| {
            local.hits.fetch_add(1, Ordering::Relaxed);
            local.hit_counter.increment(1);
            copy.record
        })
    }
}

impl<S: Invalidations> SessionStore for CachedStore<S> {
    fn get_now(
        &self,
        sid: &SessionId,
        now: SystemTime,
    ) -> Option<Result<Option<Arc<SessionRecord>>, StoreError>> {
        self.local_hit_at(sid, now).map(|record| Ok(Some(record)))
    }

    async fn get(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        if let Some(record) = self.local_hit(sid) {
            return Ok(Some(record));
        }
        self.local.misses.fetch_add(1, Ordering::Relaxed);
        self.local.miss_counter.increment(1);
        self.read_through(*sid, self.shared.get(sid)).await
    }

    async fn insert(&self, record: SessionRecord) -> Result<Arc<SessionRecord>, StoreError> {
        let sid = record.sid;
        self.writing(&sid);
        let local = &self.local;
        let started_ms = local.now_ms();
        let stored = self.shared.insert(record).await?;
        // The shared store may have ended the user's oldest sessions (its per-user cap): their
        // copies here are read again, and reads in flight keep nothing.
        local.users[user_bucket(&stored.user_id)].fetch_add(1, Ordering::AcqRel);
        let seen = local.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.keep_copy(&stored, started_ms, seen);
        Ok(stored)
    }

    async fn compare_and_set(
        &self,
        expected_version: u64,
        record: SessionRecord,
    ) -> Result<CasOutcome, StoreError> {
        let sid = record.sid;
        self.writing(&sid);
        let mut outcome = None;
        let written = self
            .read_through(sid, async {
                let cas = self
                    .shared
                    .compare_and_set(expected_version, record)
                    .await?;
                let now = match &cas {
                    CasOutcome::Stored(written) => Some(Arc::clone(written)),
                    CasOutcome::Conflict { current } => current.clone(),
                };
                outcome = Some(cas);
                Ok(now)
            })
            .await;
        written?;
        outcome.ok_or_else(|| StoreError::Unavailable("compare-and-set answered nothing".into()))
    }

    async fn delete(&self, sid: &SessionId) -> Result<bool, StoreError> {
        self.writing(sid);
        let deleted = self.shared.delete(sid).await;
        self.writing(sid);
        deleted
    }

    async fn delete_user(&self, user: &UserId) -> Result<usize, StoreError> {
        self.local.generation.fetch_add(1, Ordering::AcqRel);
        let ended = self.shared.delete_user(user).await;
        self.local.generation.fetch_add(1, Ordering::AcqRel);
        // This instance's copies go at once; the others' with the published invalidations.
        let user = user.clone();
        let _ = self
            .local
            .copies
            .invalidate_entries_if(move |_, copy| copy.record.user_is(&user));
        ended
    }

    /// From the shared store: a user's list is not worth a local copy.
    async fn user_sessions(&self, user: &UserId) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        self.shared.user_sessions(user).await
    }
}

/// The fleet's leases, values and secrets are the shared store's; a shared read refreshes the
/// local copy.
impl<S: Invalidations + SharedStore> SharedStore for CachedStore<S> {
    async fn get_shared(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.read_through(*sid, self.shared.get_shared(sid)).await
    }

    async fn try_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        self.shared.try_lease(name, owner, ttl).await
    }

    async fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        self.shared.renew_lease(name, owner, ttl).await
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.shared.release_lease(name, owner).await
    }

    async fn put_value_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared.put_value_if_absent(key, value, ttl).await
    }

    async fn get_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared.get_value(key).await
    }

    async fn put_secret(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        self.shared.put_secret(key, value, ttl).await
    }

    async fn get_secret(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.shared.get_secret(key).await
    }
}

use wechat_oauth::clock::unix_millis;
