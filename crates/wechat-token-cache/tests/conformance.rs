//! The TokenStore conformance suite on the embedded moka store.

use wechat_token_cache::{MokaStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moka_store_passes_the_conformance_suite() {
    conformance::run(|clock| MokaStore::builder().clock(clock).build()).await;
}
