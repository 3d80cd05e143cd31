//! The SessionStore conformance suite on Redis, and the fleet's (`run_shared`: leases, shared
//! values, secrets): the machine's server, and a three-node Redis Cluster the test starts
//! itself. Each store runs under a random prefix, so runs never collide.

mod common;

use wechat_sessions::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_conformance_suite() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    conformance::run(|clock| common::store_on(&client, clock)).await;
    conformance::run_shared(|clock| common::store_on(&client, clock)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_conformance_suite_on_a_cluster() {
    let Some(cluster) = common::RedisCluster::start().await else {
        return;
    };
    let client = common::connect(&cluster.url())
        .await
        .expect("connect to the cluster");
    conformance::run(|clock| common::store_on(&client, clock)).await;
    conformance::run_shared(|clock| common::store_on(&client, clock)).await;
    // The keys really spread over the nodes: each primary holds some.
    let spread = cluster
        .nodes
        .iter()
        .filter(|n| common::cli(n.port, &["dbsize"]).is_some_and(|d| d.trim() != "0"))
        .count();
    assert!(spread >= 2, "keys on {spread} of 3 nodes");
}

/// With a local cache in front (what an instance of a fleet runs), the contract still holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_cache_in_front_passes_the_conformance_suite() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    let cached = |clock: wechat_sessions::SharedClock| {
        let shared = common::store_on(&client, clock.clone());
        let build = wechat_sessions::CachedStore::builder(shared)
            .clock(clock)
            .build();
        // The suite's factory is synchronous; subscribing is not.
        tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(build))
            .expect("subscribe to invalidations")
    };
    conformance::run(cached).await;
    // The fleet's methods go straight to Redis.
    conformance::run_shared(cached).await;
}
