//! The SessionStore conformance suite on the embedded moka store, in both expiry modes.

use wechat_token_cache::{MokaStore, StoreExpiry, conformance};

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

mod broken {
    //! Stores that break the contract on purpose: the suite must fail on each.

    use std::sync::Arc;

    use wechat_token_cache::{
        CasOutcome, MokaStore, SessionId, SessionRecord, SessionStore, StoreError, UserId,
    };

    /// Its delete says yes and keeps the record.
    pub struct Resurrecting(pub MokaStore);

    /// Its compare-and-set writes whatever the stored version.
    pub struct VersionBlind(pub MokaStore);

    macro_rules! delegate_reads_and_inserts {
        () => {
            async fn get(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
                self.0.get(sid).await
            }
            async fn insert(&self, r: SessionRecord) -> Result<Arc<SessionRecord>, StoreError> {
                self.0.insert(r).await
            }
            async fn delete_user(&self, user: &UserId) -> Result<usize, StoreError> {
                self.0.delete_user(user).await
            }
        };
    }

    impl SessionStore for Resurrecting {
        delegate_reads_and_inserts!();
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
        delegate_reads_and_inserts!();
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
        async fn delete(&self, sid: &SessionId) -> Result<bool, StoreError> {
            self.0.delete(sid).await
        }
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
