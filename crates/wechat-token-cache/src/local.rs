//! [`CachedStore`]: a local moka cache in front of a shared store, so an ordinary request on
//! any instance does no I/O, kept honest by the shared store's invalidations.
//!
//! Every write on any instance makes the shared store publish the session id ([`Invalidations`]);
//! each instance drops its copy when it hears it. The channel also carries heartbeats, so an
//! instance knows when it may have missed something:
//!
//! - a local copy is trusted while the channel has been heard within half the maximum
//!   staleness and has not been interrupted since the copy was fetched;
//! - otherwise it is served only if it was fetched within the maximum staleness
//!   ([`CachedStoreBuilder::max_staleness`], default 2 s), else read again from the shared store.
//!
//! So however messages are lost (a disconnect, a reconnect, a silent network), a session ended on
//! another instance is served here for at most the maximum staleness after it ended. A read that
//! races an invalidation is returned but not cached, so it cannot outlive the invalidation.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use wechat_oauth::clock::SharedClock;

use crate::record::{SessionId, SessionRecord, UserKey};
use crate::store::{CasOutcome, StoreError, TokenStore};

/// Where a shared store's invalidations go (implemented by [`CachedStore`]'s local cache).
pub trait InvalidationSink: Send + Sync + 'static {
    /// A session was written or ended on some instance: drop the local copy.
    fn invalidate(&self, sid: &SessionId);
    /// The channel delivered something (an invalidation or a heartbeat): it is alive.
    fn heard(&self);
    /// The channel was interrupted (disconnected, reconnected): messages may have been lost.
    fn interrupted(&self);
}

/// A shared store that tells every instance when a session changes.
///
/// Contract: every write that changes or ends a session (compare-and-set, delete, logout-all,
/// per-user cap eviction) publishes its id to every subscriber, and the channel carries a
/// heartbeat at least every `heartbeat` so subscribers can tell silence from loss.
pub trait Invalidations: TokenStore {
    /// Starts delivering events to `sink`, with heartbeats at least every `heartbeat`. Fails if
    /// the channel cannot be opened now.
    fn subscribe(
        &self,
        sink: Arc<dyn InvalidationSink>,
        heartbeat: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A local copy and when it was fetched (Unix ms, store clock).
#[derive(Clone)]
struct LocalCopy {
    record: Arc<SessionRecord>,
    fetched_ms: u64,
}

/// The local cache and what it knows of the channel.
struct Local {
    copies: Cache<SessionId, LocalCopy>,
    clock: SharedClock,
    max_staleness_ms: u64,
    /// Silence longer than this means the channel may be down.
    silence_ms: u64,
    /// When the channel was last heard.
    heard_ms: AtomicU64,
    /// When the channel last came back from silence or an interruption: copies fetched before
    /// it may have missed invalidations.
    recovered_ms: AtomicU64,
    /// Bumped by every invalidation: a read that saw it change does not cache what it read.
    invalidations: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Local {
    fn now_ms(&self) -> u64 {
        unix_ms(self.clock.now())
    }

    /// Whether a copy fetched at `fetched_ms` may be served at `now`.
    fn trusted(&self, fetched_ms: u64, now: u64) -> bool {
        if now.saturating_sub(fetched_ms) <= self.max_staleness_ms {
            return true;
        }
        let heard = self.heard_ms.load(Ordering::Acquire);
        let recovered = self.recovered_ms.load(Ordering::Acquire);
        now.saturating_sub(heard) <= self.silence_ms && fetched_ms >= recovered
    }
}

impl InvalidationSink for Local {
    fn invalidate(&self, sid: &SessionId) {
        self.invalidations.fetch_add(1, Ordering::AcqRel);
        self.copies.invalidate(sid);
        self.heard();
    }

    fn heard(&self) {
        let now = self.now_ms();
        let before = self.heard_ms.swap(now, Ordering::AcqRel);
        if now.saturating_sub(before) > self.silence_ms {
            self.recovered_ms.fetch_max(now, Ordering::AcqRel);
        }
    }

    fn interrupted(&self) {
        let now = self.now_ms();
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
    /// lost (default 2 s, at least 100 ms). Heartbeats go every quarter of it.
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
            invalidations: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        });
        local.heard();
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

    /// Whether a live local copy of `sid` is held and would be served (for tests and metrics).
    pub fn holds(&self, sid: &SessionId) -> bool {
        self.local
            .copies
            .get(sid)
            .is_some_and(|c| self.local.trusted(c.fetched_ms, self.local.now_ms()))
    }

    /// Local hits and misses of `get` so far.
    pub fn hit_counts(&self) -> (u64, u64) {
        (
            self.local.hits.load(Ordering::Relaxed),
            self.local.misses.load(Ordering::Relaxed),
        )
    }

    fn keep(&self, record: &Arc<SessionRecord>) {
        let copy = LocalCopy {
            record: Arc::clone(record),
            fetched_ms: self.local.now_ms(),
        };
        self.local.copies.insert(record.sid, copy);
    }
}

impl<S> CachedStore<S> {
    /// A trusted, live local copy.
    fn local_hit(&self, sid: &SessionId) -> Option<Arc<SessionRecord>> {
        let local = &self.local;
        let copy = local.copies.get(sid)?;
        let now = local.clock.now();
        (local.trusted(copy.fetched_ms, unix_ms(now)) && !copy.record.is_expired(now)).then(|| {
            local.hits.fetch_add(1, Ordering::Relaxed);
            copy.record
        })
    }
}

impl<S: Invalidations> TokenStore for CachedStore<S> {
    fn get_now(&self, sid: &SessionId) -> Option<Result<Option<Arc<SessionRecord>>, StoreError>> {
        self.local_hit(sid).map(|record| Ok(Some(record)))
    }

    async fn get(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        if let Some(record) = self.local_hit(sid) {
            return Ok(Some(record));
        }
        let local = &self.local;
        local.misses.fetch_add(1, Ordering::Relaxed);
        let seen = local.invalidations.load(Ordering::Acquire);
        let record = self.shared.get(sid).await?;
        match &record {
            // Cached only if no invalidation landed while it was read.
            Some(record) if local.invalidations.load(Ordering::Acquire) == seen => {
                self.keep(record)
            }
            Some(_) => {}
            None => local.copies.invalidate(sid),
        }
        Ok(record)
    }

    async fn insert(&self, record: SessionRecord) -> Result<Arc<SessionRecord>, StoreError> {
        let stored = self.shared.insert(record).await?;
        self.keep(&stored);
        Ok(stored)
    }

    async fn compare_and_set(
        &self,
        expected_version: u64,
        record: SessionRecord,
    ) -> Result<CasOutcome, StoreError> {
        let sid = record.sid;
        self.local.copies.invalidate(&sid);
        let outcome = self
            .shared
            .compare_and_set(expected_version, record)
            .await?;
        match &outcome {
            CasOutcome::Stored(written) => self.keep(written),
            CasOutcome::Conflict {
                current: Some(current),
            } => self.keep(current),
            _ => self.local.copies.invalidate(&sid),
        }
        Ok(outcome)
    }

    async fn delete(&self, sid: &SessionId) -> Result<bool, StoreError> {
        self.local.copies.invalidate(sid);
        let deleted = self.shared.delete(sid).await;
        self.local.copies.invalidate(sid);
        deleted
    }

    async fn get_shared(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let record = self.shared.get_shared(sid).await?;
        match &record {
            Some(record) => self.keep(record),
            None => self.local.copies.invalidate(sid),
        }
        Ok(record)
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

    async fn delete_user(&self, user: &UserKey) -> Result<usize, StoreError> {
        let ended = self.shared.delete_user(user).await;
        // This instance's copies go at once; the others' with the published invalidations.
        let user = user.clone();
        let _ = self
            .local
            .copies
            .invalidate_entries_if(move |_, copy| copy.record.user_is(&user));
        ended
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
