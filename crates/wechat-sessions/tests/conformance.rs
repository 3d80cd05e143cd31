//! The store conformance suites on the embedded moka store (both expiry modes) and on a store
//! wrapped in `SingleProcess`, and stores broken on purpose that each suite refuses.

use std::sync::Arc;

use wechat_sessions::{MokaStore, SingleProcess, StoreExpiry, conformance};

#[macro_use]
mod delegate;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moka_store_passes_the_conformance_suite() {
    conformance::run(|clock| MokaStore::builder().clock(clock).build()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moka_store_with_exact_expiry_passes_the_conformance_suite() {
    conformance::run(|clock| {
        MokaStore::builder()
            .clock(clock)
            .expiry(StoreExpiry::AtSessionEnd)
            .build()
    })
    .await;
}

/// The moka store keeps the fleet's leases, values and secrets in its memory, as right for one
/// process as a shared backend's are for a fleet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moka_store_passes_the_fleet_suite() {
    conformance::run_shared(|clock| MokaStore::builder().clock(clock).build()).await;
}

/// Any store of one process gets them in memory from `SingleProcess`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_process_store_passes_both_suites() {
    let wrap = |clock: wechat_sessions::SharedClock| {
        SingleProcess::new(
            MokaStore::builder().clock(Arc::clone(&clock)).build(),
            clock,
        )
    };
    conformance::run(wrap).await;
    conformance::run_shared(wrap).await;
}

/// The fleet's suite bites: a store that grants every lease (what the store trait's defaults
/// used to do) lets two instances refresh the same session at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "a held lease is not taken by another owner")]
async fn the_fleet_suite_refuses_a_store_that_grants_every_lease() {
    conformance::run_shared(|clock| broken::Generous(MokaStore::builder().clock(clock).build()))
        .await;
}

mod broken {
    //! Stores that break the contract on purpose: the suite must fail on each.

    use std::time::Duration;

    use wechat_sessions::{
        CasOutcome, MokaStore, SessionId, SessionRecord, SessionStore, SharedStore, StoreError,
    };

    /// Every lease is granted, to every owner.
    pub struct Generous(pub MokaStore);

    impl SessionStore for Generous {
        delegate!(0: get, insert, compare_and_set, delete, delete_user, user_sessions);
    }

    impl SharedStore for Generous {
        delegate!(0: get_shared, values);
        async fn try_lease(&self, _: &str, _: &str, _: Duration) -> Result<bool, StoreError> {
            Ok(true)
        }
        async fn renew_lease(&self, _: &str, _: &str, _: Duration) -> Result<bool, StoreError> {
            Ok(true)
        }
        async fn release_lease(&self, _: &str, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// Its delete says yes and keeps the record.
    pub struct Resurrecting(pub MokaStore);

    /// Its compare-and-set writes whatever the stored version.
    pub struct VersionBlind(pub MokaStore);

    impl SessionStore for Resurrecting {
        delegate!(0: get, insert, delete_user, user_sessions);
        async fn compare_and_set(
            &self,
            v: u64,
            r: SessionRecord,
        ) -> Result<CasOutcome, StoreError> {
            self.0.compare_and_set(v, r).await
        }
        async fn delete(&self, sid: &SessionId) -> Result<bool, StoreError> {
            Ok(self.0.get(sid).await?.is_some())
        }
    }

    impl SessionStore for VersionBlind {
        delegate!(0: get, insert, delete_user, user_sessions);
        async fn compare_and_set(
            &self,
            _: u64,
            r: SessionRecord,
        ) -> Result<CasOutcome, StoreError> {
            match self.0.get(&r.sid).await? {
                Some(current) => self.0.compare_and_set(current.version, r).await,
                None => Ok(CasOutcome::Conflict { current: None }),
            }
        }
        delegate!(0: delete);
    }
}

/// The suite is only worth something if it fails on a broken store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_fails_on_stores_that_break_the_contract() {
    let resurrecting = tokio::spawn(conformance::run(|clock| {
        broken::Resurrecting(MokaStore::builder().clock(clock).build())
    }));
    assert!(
        resurrecting.await.unwrap_err().is_panic(),
        "a delete that keeps the record"
    );
    let version_blind = tokio::spawn(conformance::run(|clock| {
        broken::VersionBlind(MokaStore::builder().clock(clock).build())
    }));
    assert!(
        version_blind.await.unwrap_err().is_panic(),
        "a compare-and-set ignoring versions"
    );
}
