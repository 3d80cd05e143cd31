//! The SessionStore conformance suite on the embedded moka store, in both expiry modes.

use wechat_token_cache::{MokaStore, StoreExpiry, conformance};

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

/// The fleet's suite bites: the moka store keeps the trait's single-process defaults (every
/// lease granted), which a shared store must not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "a held lease is not taken by another owner")]
async fn the_fleet_suite_refuses_a_single_process_store() {
    conformance::run_shared(|clock| MokaStore::builder().clock(clock).build()).await;
}

mod broken {
    //! Stores that break the contract on purpose: the suite must fail on each.

    use wechat_token_cache::{
        CasOutcome, MokaStore, SessionId, SessionRecord, SessionStore, StoreError,
    };

    /// Its delete says yes and keeps the record.
    pub struct Resurrecting(pub MokaStore);

    /// Its compare-and-set writes whatever the stored version.
    pub struct VersionBlind(pub MokaStore);

    impl SessionStore for Resurrecting {
        delegate!(0: get, insert, delete_user);
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
        delegate!(0: get, insert, delete_user);
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
