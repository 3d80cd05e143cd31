//! The TokenStore conformance suite on the embedded moka store, in both expiry modes.

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
