//! [`MokaStore`]: the embedded, in-memory [`SessionStore`] on moka.
//!
//! Bounded: at most `max_sessions` records; when full, the least recently used session is
//! evicted (LRU, so a new login is always admitted) and its user must log in again. A record is
//! never served after its `expires_at` (checked on every read with the store's clock, which then
//! drops it). Its memory is reclaimed by [`StoreExpiry`]: by default once it has been idle for
//! the refresh horizon (free: it rides on the LRU queue), or exactly at `expires_at` (a timer per
//! record, 48 bytes more each). A per-user index (sharded, keyed by a hash of the user, one
//! session inline, a hash set beyond, kept in step by moka's eviction listener) serves
//! logout-all and the per-user session cap.
//!
//! Every write to a record — insert, compare-and-set, delete, dropping an expired record — goes
//! through moka's `entry(..).and_compute_with` (`MokaStore::write`), which serializes writers
//! of one key. (moka's plain `remove`/`invalidate` do not take part in that, so a delete could
//! slip between a compare-and-set's read and its write and be undone.)
//!
//! Reads go through [`RecentReads`] first: a warm session is answered without moka's per-read
//! bookkeeping, and every write (and eviction) forgets the copy there once moka has it, which
//! also makes stale the [`ReadStamp`]s taken before: a caller holding a record with one (the
//! middleware's verified-token cache) then reads again.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use moka::Expiry;
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use rustc_hash::FxBuildHasher;
use wechat_oauth::clock::{SharedClock, system_clock};

use crate::recent::RecentReads;
use wechat_session_store::ReadStamp;
use wechat_session_store::{
    CasOutcome, DEFAULT_MAX_SESSIONS_PER_USER, SessionStore, SharedStore, StoreError,
};
use wechat_session_store::{SessionId, SessionRecord, UserId};

use crate::single_process::{Memory, in_memory};

/// The longest a warm session is read without moka hearing of it.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Default bound on the number of sessions held.
pub const DEFAULT_MAX_SESSIONS: u64 = 1_000_000;

/// When the memory of a record is reclaimed. Either way an expired record is never served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreExpiry {
    /// Drop a record once it has not been read or written for this long (default: 30 days, the
    /// refresh horizon). A session cannot outlive the horizon after its last use, so this
    /// reclaims every ended session, at most one horizon late, at no per-record cost.
    Idle(Duration),
    /// Drop each record exactly at its `expires_at`, with a timer per record (about 48 bytes
    /// more per session).
    AtSessionEnd,
}

impl Default for StoreExpiry {
    fn default() -> Self {
        Self::Idle(Duration::from_secs(30 * 24 * 3600))
    }
}

/// The in-memory session store. Cheap to clone; clones share the records.
#[derive(Clone)]
pub struct MokaStore {
    /// Keyed by session ids, which are 128 random bits chosen by us and looked up only from
    /// tokens we signed: FxHash (a few instructions) instead of SipHash (a defence against
    /// chosen keys, which nobody can choose here).
    records: Cache<SessionId, Arc<SessionRecord>, FxBuildHasher>,
    recent: Arc<RecentReads>,
    users: Arc<UserIndex>,
    max_sessions_per_user: usize,
    clock: SharedClock,
    /// The leases, values and secrets of the one process using this store.
    memory: Arc<Memory>,
}

impl fmt::Debug for MokaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MokaStore")
            .field("sessions", &self.records.entry_count())
            .field("max_sessions", &self.records.policy().max_capacity())
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .finish()
    }
}

impl Default for MokaStore {
    fn default() -> Self {
        Self::builder().build()
    }
}

/// Configures a [`MokaStore`].
#[derive(Debug)]
pub struct MokaStoreBuilder {
    max_sessions: u64,
    max_sessions_per_user: usize,
    expiry: StoreExpiry,
    clock: SharedClock,
}

impl MokaStoreBuilder {
    /// The most sessions held at once (default 1,000,000); beyond it the least recently used is
    /// evicted.
    pub fn max_sessions(mut self, max: u64) -> Self {
        self.max_sessions = max;
        self
    }

    /// The most sessions one user (AppID, OpenID) may have (default
    /// [`DEFAULT_MAX_SESSIONS_PER_USER`], at least 1): a login beyond it ends the user's least
    /// recently confirmed session (see [`SessionStore::insert`]).
    pub fn max_sessions_per_user(mut self, max: usize) -> Self {
        self.max_sessions_per_user = max.max(1);
        self
    }

    /// When records' memory is reclaimed (default: idle for 30 days). Set
    /// `StoreExpiry::Idle(horizon)` when the refresh horizon is longer than 30 days.
    pub fn expiry(mut self, expiry: StoreExpiry) -> Self {
        self.expiry = expiry;
        self
    }

    /// The clock that decides whether a record has expired (default: the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the store.
    pub fn build(self) -> MokaStore {
        let users = Arc::new(UserIndex::default());
        let listener_index = Arc::clone(&users);
        // Moka hears of a warm session's reads at least once a minute (and four times per idle
        // period): its LRU order and idle timer stay right to within that.
        let touch_every = match self.expiry {
            StoreExpiry::Idle(idle) => (idle / 4).min(TOUCH_EVERY),
            StoreExpiry::AtSessionEnd => TOUCH_EVERY,
        };
        let recent = Arc::new(RecentReads::new(self.max_sessions, touch_every));
        // A stamped read holds no longer than a remembered one: moka hears of a warm session's
        // reads at least every two touch intervals (half its idle time at most).
        let listener_recent = Arc::clone(&recent);
        let builder = Cache::builder()
            .max_capacity(self.max_sessions)
            .eviction_policy(EvictionPolicy::lru());
        let builder = match self.expiry {
            // moka panics on idle times beyond about a thousand years.
            StoreExpiry::Idle(idle) => {
                builder.time_to_idle(idle.min(Duration::from_secs(100 * 365 * 24 * 3600)))
            }
            StoreExpiry::AtSessionEnd => builder.expire_after(UntilSessionEnds {
                clock: Arc::clone(&self.clock),
            }),
        };
        let records = builder
            .eviction_listener(
                move |sid: Arc<SessionId>, record: Arc<SessionRecord>, cause| {
                    if cause != RemovalCause::Replaced {
                        listener_recent.forget(&sid);
                        listener_index.remove(&record.user(), &sid);
                    }
                },
            )
            .build_with_hasher(FxBuildHasher);
        MokaStore {
            records,
            recent,
            users,
            max_sessions_per_user: self.max_sessions_per_user,
            memory: Arc::new(Memory::new(Arc::clone(&self.clock))),
            clock: self.clock,
        }
    }
}

impl MokaStore {
    /// Starts configuring a store.
    pub fn builder() -> MokaStoreBuilder {
        MokaStoreBuilder {
            max_sessions: DEFAULT_MAX_SESSIONS,
            max_sessions_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
            expiry: StoreExpiry::default(),
            clock: system_clock(),
        }
    }

    /// How many sessions are held (approximate until [`run_pending_tasks`](Self::run_pending_tasks)).
    pub fn session_count(&self) -> u64 {
        self.records.entry_count()
    }

    /// Runs moka's pending maintenance (evictions, expirations) now. Useful in tests and metrics.
    pub fn run_pending_tasks(&self) {
        self.records.run_pending_tasks();
    }

    /// Ends the user's least recently confirmed sessions (never `keep`, the one just inserted)
    /// until at most `max_sessions_per_user` are left. Runs only when a login goes over the cap,
    /// and reads at most the cap and a few more records.
    fn enforce_user_cap(&self, user: &UserId, keep: &SessionId) {
        let now = self.clock.now();
        let mut live: Vec<(SystemTime, SessionId)> = self
            .users
            .sessions(user)
            .into_iter()
            .filter(|sid| sid != keep)
            .filter_map(|sid| self.records.get(&sid))
            .filter(|r| r.user_is(user) && !r.is_expired(now))
            .map(|r| (r.confirmed_at, r.sid))
            .collect();
        // The newest login counts too: `live` plus it may hold at most the cap.
        let excess = (live.len() + 1).saturating_sub(self.max_sessions_per_user);
        if excess == 0 {
            return;
        }
        live.sort_unstable();
        for (_, sid) in live.into_iter().take(excess) {
            self.write(sid, |_| Op::Remove);
            tracing::info!(sid = %sid, outcome = "session_cap", "the user's least recently confirmed session ended: too many sessions");
        }
    }

    /// Writes `sid`'s record under moka's per-key lock, then forgets the copy read before and
    /// makes stamps taken before stale.
    fn write(
        &self,
        sid: SessionId,
        f: impl FnOnce(Option<moka::Entry<SessionId, Arc<SessionRecord>>>) -> Op<Arc<SessionRecord>>,
    ) -> CompResult<SessionId, Arc<SessionRecord>> {
        let result = self.records.entry(sid).and_compute_with(f);
        self.recent.forget(&sid);
        result
    }

    /// The live record of `sid` at `now`: the copy read last when it is still current, else
    /// moka's (which then hears of the read).
    fn read(&self, sid: &SessionId, now: SystemTime) -> Option<Arc<SessionRecord>> {
        let miss = match self.recent.get(sid, now) {
            Ok(record) => return Some(record),
            Err(miss) => miss,
        };
        let record = self.live(self.records.get(sid)?, now)?;
        self.recent.remember(miss, &record, now);
        Some(record)
    }

    /// `record` if it has not expired; otherwise drops it from the cache (if it is still the one
    /// stored and still expired: serialized with the other writers of the key) and `None`.
    fn live(&self, record: Arc<SessionRecord>, now: SystemTime) -> Option<Arc<SessionRecord>> {
        if !record.is_expired(now) {
            return Some(record);
        }
        self.write(record.sid, |current| match current {
            Some(entry) if entry.value().is_expired(now) => Op::Remove,
            _ => Op::Nop,
        });
        None
    }
}

impl SessionStore for MokaStore {
    async fn get(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        Ok(self.read(sid, self.clock.now()))
    }

    fn get_now(
        &self,
        sid: &SessionId,
        now: SystemTime,
    ) -> Option<Result<Option<Arc<SessionRecord>>, StoreError>> {
        Some(Ok(self.read(sid, now)))
    }

    fn read_stamp(&self, sid: &SessionId, now: SystemTime) -> Option<ReadStamp> {
        self.recent.stamp(sid, now)
    }

    fn still_current(&self, stamp: &ReadStamp, now: SystemTime) -> bool {
        self.recent.still_current(stamp, now)
    }

    async fn insert(&self, record: SessionRecord) -> Result<Arc<SessionRecord>, StoreError> {
        let record = Arc::new(record);
        let user = record.user();
        let now = self.clock.now();
        let mut sessions = 0;
        let result = self.write(record.sid, |current| match current {
            Some(entry) if !entry.value().is_expired(now) => Op::Nop,
            _ => {
                // Indexed under the key's lock, before the record is visible: a logout-all
                // racing this insert either finds the session or runs after it is indexed.
                sessions = self.users.add(&user, record.sid);
                Op::Put(Arc::clone(&record))
            }
        });
        match result {
            CompResult::Inserted(_) | CompResult::ReplacedWith(_) => {
                if sessions > self.max_sessions_per_user {
                    self.enforce_user_cap(&user, &record.sid);
                }
                Ok(record)
            }
            _ => Err(StoreError::AlreadyExists),
        }
    }

    async fn compare_and_set(
        &self,
        expected_version: u64,
        mut record: SessionRecord,
    ) -> Result<CasOutcome, StoreError> {
        record.version = expected_version + 1;
        let record = Arc::new(record);
        let now = self.clock.now();
        let result = self.write(record.sid, |current| match current {
            Some(entry)
                if entry.value().version == expected_version && !entry.value().is_expired(now) =>
            {
                Op::Put(Arc::clone(&record))
            }
            _ => Op::Nop,
        });
        Ok(match result {
            CompResult::ReplacedWith(entry) => CasOutcome::Stored(entry.into_value()),
            CompResult::Unchanged(entry) => CasOutcome::Conflict {
                current: self.live(entry.into_value(), self.clock.now()),
            },
            _ => CasOutcome::Conflict { current: None },
        })
    }

    async fn delete(&self, sid: &SessionId) -> Result<bool, StoreError> {
        // Through the compute, not `remove`: serialized with compare_and_set, so a refresh
        // writing back concurrently either lands before (and is deleted) or finds nothing.
        let now = self.clock.now();
        let removed = self.write(*sid, |_| Op::Remove);
        Ok(matches!(removed, CompResult::Removed(entry) if !entry.value().is_expired(now)))
    }

    async fn delete_user(&self, user: &UserId) -> Result<usize, StoreError> {
        let mut deleted = 0;
        // Out of the index first (O(1) under its lock), then each record under its own key's
        // lock: nothing here blocks another user.
        for sid in self.users.take(user) {
            // The index is keyed by a hash: a record of another user that shares it goes back.
            let removed = self.write(sid, |current| match current {
                Some(entry) if entry.value().user_is(user) => Op::Remove,
                Some(entry) => {
                    self.users.add(&entry.value().user(), sid);
                    Op::Nop
                }
                None => Op::Nop,
            });
            if matches!(removed, CompResult::Removed(_)) {
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn user_sessions(&self, user: &UserId) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        let now = self.clock.now();
        // The index is keyed by a hash: another user's sessions that share it are left out.
        Ok(self
            .users
            .sessions(user)
            .iter()
            .filter_map(|sid| self.live(self.records.get(sid)?, now))
            .filter(|record| record.user_is(user))
            .collect())
    }
}

/// One process uses a moka store: the fleet's leases, values and secrets are in its memory.
impl SharedStore for MokaStore {
    async fn get_shared(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.get(sid).await
    }

    in_memory!(memory);
}

/// Moka expiry: each record lives until its `expires_at` by the store's clock.
struct UntilSessionEnds {
    clock: SharedClock,
}

impl UntilSessionEnds {
    fn remaining(&self, record: &SessionRecord) -> Option<Duration> {
        Some(
            record
                .expires_at
                .duration_since(self.clock.now())
                .unwrap_or(Duration::ZERO),
        )
    }
}

impl Expiry<SessionId, Arc<SessionRecord>> for UntilSessionEnds {
    fn expire_after_create(
        &self,
        _sid: &SessionId,
        record: &Arc<SessionRecord>,
        _created_at: Instant,
    ) -> Option<Duration> {
        self.remaining(record)
    }

    fn expire_after_update(
        &self,
        _sid: &SessionId,
        record: &Arc<SessionRecord>,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        self.remaining(record)
    }
}

const INDEX_SHARDS: usize = 64;

/// Sessions per user, keyed by 32 bits of a hash of the user id (the shard takes 6 others) to
/// keep the index small; collisions are harmless because the store checks each record's user
/// (logout-all puts back what another user's; the per-user cap counts only the user's own).
/// Every operation holds one shard's lock for O(1) work (logout-all moves the user's set out
/// first), so one user with 100,000 sessions never stalls another user's login or logout.
struct UserIndex {
    hasher: RandomState,
    shards: [Mutex<Shard>; INDEX_SHARDS],
}

/// One shard: most users have one session, held in an entry of 20 bytes; the few with several
/// are in a map of their own.
#[derive(Default)]
struct Shard {
    one: HashMap<u32, SessionId>,
    many: HashMap<u32, HashSet<SessionId>>,
}

const _: () = assert!(
    size_of::<(u32, SessionId)>() == 20,
    "an index entry of a user with one session stays 20 bytes"
);

impl Default for UserIndex {
    fn default() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: std::array::from_fn(|_| Mutex::default()),
        }
    }
}

impl UserIndex {
    fn shard(&self, user: &UserId) -> (u32, MutexGuard<'_, Shard>) {
        let hash = self.hasher.hash_one(user);
        let shard = &self.shards[(hash as usize) % INDEX_SHARDS];
        (
            (hash >> 32) as u32,
            shard.lock().unwrap_or_else(|e| e.into_inner()),
        )
    }

    /// Adds a session; returns how many the user (hash) now has.
    fn add(&self, user: &UserId, sid: SessionId) -> usize {
        let (key, mut shard) = self.shard(user);
        if let Some(many) = shard.many.get_mut(&key) {
            many.insert(sid);
            return many.len();
        }
        match shard.one.get(&key) {
            None => {
                shard.one.insert(key, sid);
                1
            }
            Some(one) if *one == sid => 1,
            Some(&one) => {
                shard.one.remove(&key);
                shard.many.insert(key, HashSet::from([one, sid]));
                2
            }
        }
    }

    fn remove(&self, user: &UserId, sid: &SessionId) {
        let (key, mut shard) = self.shard(user);
        if shard.one.get(&key) == Some(sid) {
            shard.one.remove(&key);
        } else if let Some(many) = shard.many.get_mut(&key) {
            many.remove(sid);
            match many.len() {
                0 => {
                    shard.many.remove(&key);
                }
                // Back to one: the compact entry again.
                1 => {
                    let last = many.iter().next().copied();
                    shard.many.remove(&key);
                    if let Some(last) = last {
                        shard.one.insert(key, last);
                    }
                }
                _ => {}
            }
        }
    }

    /// A copy of the user's sessions (for the per-user cap and the user's list: at most the cap
    /// and a few more).
    fn sessions(&self, user: &UserId) -> Vec<SessionId> {
        let (key, shard) = self.shard(user);
        match shard.one.get(&key) {
            Some(one) => vec![*one],
            None => shard
                .many
                .get(&key)
                .map(|many| many.iter().copied().collect())
                .unwrap_or_default(),
        }
    }

    /// Takes the user's sessions out of the index, in O(1) under the lock.
    fn take(&self, user: &UserId) -> Vec<SessionId> {
        let (key, mut shard) = self.shard(user);
        if let Some(one) = shard.one.remove(&key) {
            return vec![one];
        }
        let many = shard.many.remove(&key);
        drop(shard);
        many.map(|many| many.into_iter().collect())
            .unwrap_or_default()
    }
}
