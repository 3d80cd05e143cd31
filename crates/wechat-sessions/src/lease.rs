//! Leases: the one mechanism behind every flight the fleet must make once (a session's
//! refresh, a code's exchange, an app's token). A flight takes the lease in the shared store,
//! renews it while its work runs and gives it back; a flight that finds it held polls until
//! the holder's answer is there or the lease is free.

use std::future::Future;
use std::time::Duration;

use moka::sync::Cache;

use wechat_session_store::{SharedStore, StoreError};

/// How often an instance waiting for another's flight looks at the shared record.
const LEASE_POLL: Duration = Duration::from_millis(20);

/// A random owner token for a lease.
fn lease_owner() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The leases of one cache: their time, and the ones this instance may still hold without
/// meaning to.
pub(crate) struct Leases {
    ttl: Duration,
    /// Leases a flight took or tried to release while the store failed: the store may hold
    /// them for this instance, so the next flight of the same name releases them first.
    stale: Cache<String, String>,
}

impl Leases {
    pub(crate) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            stale: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl * 2)
                .build(),
        }
    }

    /// Runs `work` under the fleet-wide lease `name`, the one mechanism behind every flight
    /// the fleet must make once (a session's refresh, a code's exchange, an app's token):
    /// - taken: `work` runs, the lease renewed while it does, then given back;
    /// - held by another: every [`LEASE_POLL`] `elsewhere` says whether that holder's work
    ///   already answers this flight (`Some`: that answer), until the lease is free (a crashed
    ///   holder's runs out) or three lease times have passed (`gave_up`);
    /// - the store failing: `on_error`'s answer.
    ///
    /// Callers pass `work` boxed: it lives across the lease's awaits, and flights' futures are
    /// large (unboxed, unoptimised builds overflowed a worker's stack).
    pub(crate) async fn under<S: SharedStore, T, E, EF>(
        &self,
        store: &S,
        name: &str,
        work: impl Future<Output = T>,
        mut elsewhere: impl FnMut() -> E,
        gave_up: impl FnOnce() -> T,
        on_error: impl FnOnce(StoreError) -> EF,
    ) -> T
    where
        E: Future<Output = Option<T>>,
        EF: Future<Output = T>,
    {
        let owner = lease_owner();
        let give_up = tokio::time::Instant::now() + self.ttl * 3;
        loop {
            match self.take(store, name, &owner).await {
                Err(error) => return on_error(error).await,
                Ok(true) => {
                    let done = self.hold(store, name, &owner, work).await;
                    self.give_back(store, name, &owner).await;
                    return done;
                }
                Ok(false) => {
                    if tokio::time::Instant::now() >= give_up {
                        return gave_up();
                    }
                    tokio::time::sleep(LEASE_POLL).await;
                    if let Some(answer) = elsewhere().await {
                        return answer;
                    }
                }
            }
        }
    }

    /// Takes the fleet-wide lease `name` as `owner` (see [`SessionStore::try_lease`]), first
    /// releasing one this instance may hold without meaning to (see `stale`). A lease the store
    /// did not confirm is remembered as such.
    async fn take<S: SharedStore>(
        &self,
        store: &S,
        name: &str,
        owner: &str,
    ) -> Result<bool, StoreError> {
        if let Some(stale) = self.stale.get(name)
            && store.release_lease(name, &stale).await.is_ok()
        {
            tracing::debug!(
                lease = name,
                "released a lease an earlier flight lost track of"
            );
            self.stale.invalidate(name);
        }
        let taken = store.try_lease(name, owner, self.ttl).await;
        if taken.is_err() {
            self.stale.insert(name.to_owned(), owner.to_owned());
        }
        taken
    }

    /// Releases a lease this flight holds; if the store does not answer, the next flight of
    /// the same name releases it (else it runs out by itself).
    async fn give_back<S: SharedStore>(&self, store: &S, name: &str, owner: &str) {
        if let Err(error) = store.release_lease(name, owner).await {
            tracing::debug!(lease = name, %error, "a lease was not released; the next flight releases it");
            self.stale.insert(name.to_owned(), owner.to_owned());
        }
    }

    /// Runs `work`, renewing the lease every third of its time until it is done.
    async fn hold<S: SharedStore, T>(
        &self,
        store: &S,
        name: &str,
        owner: &str,
        work: impl Future<Output = T>,
    ) -> T {
        let mut work = std::pin::pin!(work);
        let mut renewals = tokio::time::interval(self.ttl / 3);
        renewals.tick().await;
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = renewals.tick() => {
                    match store.renew_lease(name, owner, self.ttl).await {
                        Ok(true) => {}
                        // Another instance may now do the same work; compare-and-set still
                        // keeps whichever write is newer.
                        Ok(false) => tracing::warn!(lease = name, "a lease was lost while its work ran"),
                        Err(error) => tracing::debug!(%error, "a lease was not renewed"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flight, on every instance, owns its leases under a name of its own: with a shared
    /// owner a late flight could renew or release another's lease. Break to see it fail:
    /// `lease_owner` answering a constant.
    #[test]
    fn every_flight_owns_its_lease_under_its_own_name() {
        let owners: std::collections::HashSet<String> = (0..1_000).map(|_| lease_owner()).collect();
        assert_eq!(owners.len(), 1_000);
        assert!(owners.iter().all(|owner| owner.len() == 32));
    }
}
