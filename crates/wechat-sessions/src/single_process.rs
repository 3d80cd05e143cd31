//! The fleet's capabilities ([`SharedStore`]: leases, values, secrets) kept in memory, for a
//! store that one process uses alone: [`Memory`] (which [`MokaStore`](crate::MokaStore) holds)
//! and [`SingleProcess`], which gives them to any such store. In one process they are exactly
//! what a shared backend gives a fleet, so the coordinator has one code path and the
//! conformance suite (`run_shared`) checks both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use moka::ops::compute::Op;
use moka::sync::Cache;
use wechat_oauth::clock::{SharedClock, add_capped};
use wechat_session_store::{
    CasOutcome, SessionId, SessionRecord, SessionStore, SharedStore, StoreError, UserId,
};

/// How many values and secrets are kept at most (each kind): beyond it the least used go.
/// They are login outcomes, used OAuth states, app tokens and session keys, all short-lived.
const MAX_ENTRIES: u64 = 1_000_000;

/// Leases held at once beyond which expired ones are swept on the next take.
const SWEEP_LEASES_ABOVE: usize = 1_024;

/// Leases, values and secrets in this process's memory, on a clock.
pub(crate) struct Memory {
    clock: SharedClock,
    /// Lease name → (owner, until).
    leases: Mutex<HashMap<String, (String, SystemTime)>>,
    /// Key → (value, until).
    values: Cache<String, (Vec<u8>, SystemTime)>,
    secrets: Cache<String, (Vec<u8>, SystemTime)>,
}

impl Memory {
    pub(crate) fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            leases: Mutex::default(),
            values: Cache::new(MAX_ENTRIES),
            secrets: Cache::new(MAX_ENTRIES),
        }
    }

    fn leases(&self) -> MutexGuard<'_, HashMap<String, (String, SystemTime)>> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn try_lease(&self, name: &str, owner: &str, ttl: Duration) -> bool {
        let now = self.clock.now();
        let mut leases = self.leases();
        if leases.len() > SWEEP_LEASES_ABOVE {
            leases.retain(|_, (_, until)| *until > now);
        }
        match leases.get(name) {
            Some((_, until)) if *until > now => false,
            _ => {
                leases.insert(name.to_owned(), (owner.to_owned(), add_capped(now, ttl)));
                true
            }
        }
    }

    pub(crate) fn renew_lease(&self, name: &str, owner: &str, ttl: Duration) -> bool {
        let now = self.clock.now();
        match self.leases().get_mut(name) {
            Some((holder, until)) if holder == owner && *until > now => {
                *until = add_capped(now, ttl);
                true
            }
            _ => false,
        }
    }

    pub(crate) fn release_lease(&self, name: &str, owner: &str) {
        let mut leases = self.leases();
        if leases.get(name).is_some_and(|(holder, _)| holder == owner) {
            leases.remove(name);
        }
    }

    pub(crate) fn put_value_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Option<Vec<u8>> {
        let now = self.clock.now();
        let mut there = None;
        self.values
            .entry(key.to_owned())
            .and_compute_with(|entry| match entry {
                Some(entry) if entry.value().1 > now => {
                    there = Some(entry.into_value().0);
                    Op::Nop
                }
                _ => Op::Put((value, add_capped(now, ttl))),
            });
        there
    }

    pub(crate) fn get_value(&self, key: &str) -> Option<Vec<u8>> {
        self.live(&self.values, key)
    }

    pub(crate) fn put_secret(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        let until = add_capped(self.clock.now(), ttl);
        self.secrets.insert(key.to_owned(), (value, until));
    }

    pub(crate) fn get_secret(&self, key: &str) -> Option<Vec<u8>> {
        self.live(&self.secrets, key)
    }

    fn live(&self, cache: &Cache<String, (Vec<u8>, SystemTime)>, key: &str) -> Option<Vec<u8>> {
        let now = self.clock.now();
        cache
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(value, _)| value)
    }
}

/// The [`SharedStore`] methods but `get_shared`, answered from the [`Memory`] in field `$memory`
/// of a store of one process (the moka store, [`SingleProcess`]).
macro_rules! in_memory {
    ($memory:ident) => {
        async fn try_lease(
            &self,
            name: &str,
            owner: &str,
            ttl: Duration,
        ) -> Result<bool, StoreError> {
            Ok(self.$memory.try_lease(name, owner, ttl))
        }

        async fn renew_lease(
            &self,
            name: &str,
            owner: &str,
            ttl: Duration,
        ) -> Result<bool, StoreError> {
            Ok(self.$memory.renew_lease(name, owner, ttl))
        }

        async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
            self.$memory.release_lease(name, owner);
            Ok(())
        }

        async fn put_value_if_absent(
            &self,
            key: &str,
            value: Vec<u8>,
            ttl: Duration,
        ) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.$memory.put_value_if_absent(key, value, ttl))
        }

        async fn get_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.$memory.get_value(key))
        }

        async fn put_secret(
            &self,
            key: &str,
            value: Vec<u8>,
            ttl: Duration,
        ) -> Result<(), StoreError> {
            self.$memory.put_secret(key, value, ttl);
            Ok(())
        }

        async fn get_secret(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.$memory.get_secret(key))
        }
    };
}
pub(crate) use in_memory;

/// A store used by one process only, given the fleet's capabilities ([`SharedStore`]) in
/// memory: what an application's own single-instance backend (a SQLite file, say) is wrapped
/// in to serve the coordinator. Several processes sharing the wrapped store would each have
/// their own leases and values: use a shared store's own [`SharedStore`] for a fleet.
///
/// ```
/// use std::sync::Arc;
/// use wechat_sessions::{MokaStore, SingleProcess, SystemClock};
///
/// // Any `SessionStore`; a MokaStore stands in for the application's own here.
/// let store = SingleProcess::new(MokaStore::builder().build(), Arc::new(SystemClock));
/// # let _ = store;
/// ```
pub struct SingleProcess<S> {
    store: S,
    memory: Arc<Memory>,
}

impl<S> SingleProcess<S> {
    /// Wraps `store`, its leases and values expiring by `clock` (the store's own).
    pub fn new(store: S, clock: SharedClock) -> Self {
        Self {
            store,
            memory: Arc::new(Memory::new(clock)),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.store
    }
}

impl<S: Clone> Clone for SingleProcess<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            memory: Arc::clone(&self.memory),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for SingleProcess<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SingleProcess").field(&self.store).finish()
    }
}

impl<S: SessionStore> SessionStore for SingleProcess<S> {
    async fn get(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.store.get(sid).await
    }

    fn get_now(
        &self,
        sid: &SessionId,
        now: SystemTime,
    ) -> Option<Result<Option<Arc<SessionRecord>>, StoreError>> {
        self.store.get_now(sid, now)
    }

    fn read_stamp(
        &self,
        sid: &SessionId,
        now: SystemTime,
    ) -> Option<wechat_session_store::ReadStamp> {
        self.store.read_stamp(sid, now)
    }

    fn still_current(&self, stamp: &wechat_session_store::ReadStamp, now: SystemTime) -> bool {
        self.store.still_current(stamp, now)
    }

    async fn insert(&self, record: SessionRecord) -> Result<Arc<SessionRecord>, StoreError> {
        self.store.insert(record).await
    }

    async fn compare_and_set(
        &self,
        expected_version: u64,
        record: SessionRecord,
    ) -> Result<CasOutcome, StoreError> {
        self.store.compare_and_set(expected_version, record).await
    }

    async fn delete(&self, sid: &SessionId) -> Result<bool, StoreError> {
        self.store.delete(sid).await
    }

    async fn delete_user(&self, user: &UserId) -> Result<usize, StoreError> {
        self.store.delete_user(user).await
    }

    async fn user_sessions(&self, user: &UserId) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        self.store.user_sessions(user).await
    }
}

impl<S: SessionStore> SharedStore for SingleProcess<S> {
    async fn get_shared(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.store.get(sid).await
    }

    in_memory!(memory);
}
