//! A lease the store took although the caller heard a timeout (a store that comes back applies
//! the queued write; the caller had given up): this instance's next flight of the same name
//! releases it first instead of waiting out the lease — which the soak run showed as eight
//! seconds without an answer after a Redis pause.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wechat_mock::MockConfig;
use wechat_sessions::{
    MokaStore, SessionConfig, SessionError, SessionManager, SessionRecord, SessionStore,
    SharedStore, StoreError,
};

mod common;
#[macro_use]
mod delegate;

use common::*;

/// The in-memory store with leases of its own (they never run out here). With `ghost` set, the
/// next `try_lease` takes the lease and then reports a timeout.
struct LeasingStore {
    inner: MokaStore,
    leases: Mutex<HashMap<String, String>>,
    ghost: AtomicBool,
}

impl SessionStore for LeasingStore {
    delegate!(inner: get, insert, compare_and_set, delete, delete_user, user_sessions);
}

impl SharedStore for LeasingStore {
    delegate!(inner: get_shared, values);
    async fn try_lease(&self, name: &str, owner: &str, _: Duration) -> Result<bool, StoreError> {
        let mut leases = self.leases.lock().unwrap();
        if leases.contains_key(name) {
            return Ok(false);
        }
        leases.insert(name.to_owned(), owner.to_owned());
        if self.ghost.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Unavailable("timed out".into()));
        }
        Ok(true)
    }
    async fn renew_lease(&self, name: &str, owner: &str, _: Duration) -> Result<bool, StoreError> {
        Ok(self.leases.lock().unwrap().get(name).map(String::as_str) == Some(owner))
    }
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let mut leases = self.leases.lock().unwrap();
        if leases.get(name).map(String::as_str) == Some(owner) {
            leases.remove(name);
        }
        Ok(())
    }
}

/// Break to see it fail: the flight not releasing its name's lease before trying again (it then
/// waits out a lease that never ends here), or a store error on the lease mapped to "no such
/// session".
#[tokio::test]
async fn a_lease_taken_behind_a_timeout_is_released_by_the_next_flight() {
    let (mock, clock, client) = start_mock(MockConfig::default()).await;
    let store = Arc::new(LeasingStore {
        inner: MokaStore::builder().clock(Arc::new(clock.clone())).build(),
        leases: Mutex::default(),
        ghost: AtomicBool::new(false),
    });
    let cache = SessionManager::builder(client)
        .store(Arc::clone(&store))
        .config(
            SessionConfig::default()
                .lease_ttl(Duration::from_millis(200))
                .failure_cooldown(Duration::ZERO),
        )
        .build();
    let h = Harness { mock, clock, cache };
    let session = h.login().await;
    let expiry = |r: &SessionRecord| r.access_token().unwrap().1;
    let before = expiry(&session);

    // The refresh is due; the store takes the lease but the flight hears a timeout.
    h.advance(EXPIRY - Duration::from_secs(60));
    store.ghost.store(true, Ordering::SeqCst);
    match h.cache.session(&session.sid).await {
        Err(SessionError::Store(StoreError::Unavailable(_))) => {}
        other => panic!("the store's timeout, answered as such: {other:?}"),
    }
    assert!(
        store.inner.get(&session.sid).await.unwrap().is_some(),
        "a timeout is never a logout"
    );
    assert_eq!(
        store.leases.lock().unwrap().len(),
        1,
        "the store holds a lease nobody will release"
    );

    // The next request's flight releases it and refreshes at once, instead of waiting it out
    // (the store here never expires it: waiting would end in "unavailable").
    let refreshed = h.cache.session(&session.sid).await.unwrap();
    assert!(expiry(&refreshed) > before, "refreshed");
    assert!(store.leases.lock().unwrap().is_empty(), "and gave it back");
}
