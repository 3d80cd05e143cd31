//! What the Redis store does beyond the `SessionStore` contract, each pinned on a real Redis:
//! a compare-and-set publishes the session, the per-user cap ends the least recently
//! *confirmed* session, a lease is only ever released or renewed by its owner, the production
//! command timeout turns a stalled Redis into an error, invalidations travel on a cluster, and
//! the store works through Redis Sentinel. Each test's doc comment names the one-line break
//! that makes it fail.

mod common;

use std::time::Duration;

use fred::prelude::*;
use wechat_redis_store::RedisStore;
use wechat_sessions::conformance::sample_record;
use wechat_sessions::{
    CachedStore, CasOutcome, Clock, ManualClock, SessionStore, SharedClock, SharedStore, StoreError,
};

/// A subscriber of the test's own on `channel`: every message published there, in order.
async fn listen(
    url: &str,
    channel: &str,
) -> (
    fred::clients::SubscriberClient,
    tokio::sync::broadcast::Receiver<fred::types::Message>,
) {
    let subscriber = Builder::from_config(Config::from_url(url).unwrap())
        .build_subscriber_client()
        .unwrap();
    subscriber.init().await.unwrap();
    let messages = subscriber.message_rx();
    subscriber.subscribe(channel).await.unwrap();
    (subscriber, messages)
}

/// The next message's text, within a generous bound (it is published before the write returns).
async fn next_message(
    messages: &mut tokio::sync::broadcast::Receiver<fred::types::Message>,
) -> String {
    let message = tokio::time::timeout(Duration::from_secs(5), messages.recv())
        .await
        .expect("a message on the channel")
        .unwrap();
    message.value.as_string().unwrap()
}

/// Break to see it fail: drop the `PUBLISH` from the compare-and-set script (`COMPARE_AND_SET`
/// in `store.rs`): other instances would then serve the old copy of a refreshed session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compare_and_set_publishes_the_session_it_wrote() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    let clock = ManualClock::starting_now();
    let store = common::store_on(&client, common::shared(&clock));
    let (_subscriber, mut messages) = listen(&common::redis_url(), &store.channel()).await;
    let record = store
        .insert(sample_record(&clock, "wxapp", "published"))
        .await
        .unwrap();
    let mut next = (*record).clone();
    next.confirmed_at += Duration::from_secs(1);
    let stored = store.compare_and_set(record.version, next).await.unwrap();
    assert!(matches!(stored, CasOutcome::Stored(_)));
    assert_eq!(next_message(&mut messages).await, record.sid.to_string());
    // A conflict writes nothing, and says nothing.
    let stale = (*record).clone();
    let conflict = store.compare_and_set(record.version, stale).await.unwrap();
    assert!(matches!(conflict, CasOutcome::Conflict { .. }));
    assert!(store.delete(&record.sid).await.unwrap());
    assert_eq!(
        next_message(&mut messages).await,
        record.sid.to_string(),
        "the next message is the delete's, not the conflict's"
    );
}

/// Break to see it fail: the cap ordering sessions by their login (`created_at`) instead of the
/// confirmation their records hold: it then ends the session in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_ends_the_least_recently_confirmed_session_not_the_oldest_login() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    let clock = ManualClock::starting_now();
    let store = RedisStore::builder(&common::redis_url(), common::key("k1", 1))
        .unwrap()
        .prefix(common::random_prefix())
        .clock(common::shared(&clock))
        .max_sessions_per_user(3)
        .with_client(client);
    let mut sids = Vec::new();
    for _ in 0..3 {
        let record = sample_record(&clock, "wxapp", "capped");
        sids.push(store.insert(record).await.unwrap().sid);
        clock.advance(Duration::from_secs(1));
    }
    // The first login is used (confirmed again): now the most recently confirmed.
    let first = store.get(&sids[0]).await.unwrap().unwrap();
    let mut confirmed = (*first).clone();
    confirmed.confirmed_at = clock.now();
    let stored = store.compare_and_set(first.version, confirmed).await;
    assert!(matches!(stored, Ok(CasOutcome::Stored(_))));
    clock.advance(Duration::from_secs(1));
    let fourth = store
        .insert(sample_record(&clock, "wxapp", "capped"))
        .await
        .unwrap()
        .sid;
    assert!(store.get(&sids[0]).await.unwrap().is_some(), "in use: kept");
    assert!(
        store.get(&sids[1]).await.unwrap().is_none(),
        "least recently confirmed: ended"
    );
    assert!(store.get(&sids[2]).await.unwrap().is_some());
    assert!(store.get(&fourth).await.unwrap().is_some());
}

/// Break to see it fail: `RELEASE_LEASE` (or `RENEW_LEASE`) not comparing the owner — a flight
/// that outlived its lease would then free, or extend, its successor's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_released_and_renewed_only_by_its_owner() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    let store = common::store_on(&client, common::shared(&ManualClock::starting_now()));
    let minute = Duration::from_secs(60);
    assert!(store.try_lease("refresh:x", "first", minute).await.unwrap());
    assert!(
        !store
            .try_lease("refresh:x", "second", minute)
            .await
            .unwrap()
    );
    // The first owner's lease runs out (removed here, as its expiry would), and a second
    // flight takes the name.
    let _: i64 = client.del(store.lease_key("refresh:x")).await.unwrap();
    assert!(
        store
            .try_lease("refresh:x", "second", minute)
            .await
            .unwrap()
    );
    // The first flight finishes late: its release and renewal touch nothing.
    store.release_lease("refresh:x", "first").await.unwrap();
    assert!(
        !store
            .renew_lease("refresh:x", "first", minute)
            .await
            .unwrap()
    );
    let holder: Option<String> = client.get(store.lease_key("refresh:x")).await.unwrap();
    assert_eq!(holder.as_deref(), Some("second"));
    assert!(!store.try_lease("refresh:x", "third", minute).await.unwrap());
    // Its owner renews and releases it.
    assert!(
        store
            .renew_lease("refresh:x", "second", minute * 2)
            .await
            .unwrap()
    );
    let ttl: i64 = client.pttl(store.lease_key("refresh:x")).await.unwrap();
    assert!(ttl > 60_000, "renewed to two minutes: {ttl} ms left");
    store.release_lease("refresh:x", "second").await.unwrap();
    assert!(store.try_lease("refresh:x", "third", minute).await.unwrap());
}

/// Break to see it fail: `connect` not applying `command_timeout` (`default_command_timeout`
/// left unset): a stalled Redis then holds every request until it wakes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_production_command_timeout_turns_a_stalled_redis_into_an_error() {
    let Some(server) = common::RedisServer::start(&[]).await else {
        return;
    };
    let clock = ManualClock::starting_now();
    // What a deployment runs: the default 50 ms command timeout.
    let store = RedisStore::builder(&server.url(), common::key("k1", 1))
        .unwrap()
        .clock(common::shared(&clock))
        .connect()
        .await
        .unwrap();
    let record = store
        .insert(sample_record(&clock, "wxapp", "stalled"))
        .await
        .unwrap();
    assert!(store.get(&record.sid).await.unwrap().is_some());

    server.signal("STOP");
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(1), store.get(&record.sid))
        .await
        .expect("an error within a second, not a wait for Redis");
    let took = started.elapsed();
    assert!(
        matches!(answer, Err(StoreError::Unavailable(_))),
        "{answer:?}"
    );
    assert!(
        took >= wechat_redis_store::DEFAULT_COMMAND_TIMEOUT,
        "{took:?}"
    );
    server.signal("CONT");
    // Back by itself: the same store answers again, and nothing was lost.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(found)) = store.get(&record.sid).await {
            assert_eq!(found.sid, record.sid);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Redis never answered again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two instances' stores with local caches on `url`, sharing `prefix`, on `clock`.
async fn two_instances(
    url: &str,
    prefix: &str,
    clock: SharedClock,
) -> [CachedStore<RedisStore>; 2] {
    let instance = || {
        let builder = RedisStore::builder(url, common::key("k1", 1))
            .unwrap()
            .prefix(prefix)
            .command_timeout(Duration::from_secs(2));
        // The maximum staleness is the default, 2 s.
        common::cached_store(builder, clock.clone(), Duration::from_secs(2))
    };
    [instance().await, instance().await]
}

/// A write on one instance makes the other drop its copy, within the propagation promise.
async fn invalidations_travel(
    a: &CachedStore<RedisStore>,
    b: &CachedStore<RedisStore>,
    clock: &ManualClock,
) {
    for openid in ["first", "second", "third"] {
        let record = a
            .insert(sample_record(clock, "wxapp", openid))
            .await
            .unwrap();
        assert!(b.get(&record.sid).await.unwrap().is_some());
        assert!(b.holds(&record.sid), "B serves its local copy");
        assert!(a.delete(&record.sid).await.unwrap());
        let started = std::time::Instant::now();
        while b.holds(&record.sid) {
            assert!(
                started.elapsed() < Duration::from_millis(250),
                "B still served {openid}'s copy after {:?}",
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(b.get(&record.sid).await.unwrap().is_none());
    }
}

/// Break to see it fail: `subscribe` in `store.rs` not subscribing (or the subscriber built
/// from the command connection's single node only and the publish routed elsewhere).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_travel_between_instances_on_a_cluster() {
    let Some(cluster) = common::RedisCluster::start().await else {
        return;
    };
    let clock = ManualClock::starting_now();
    let [a, b] = two_instances(
        &cluster.url(),
        &common::random_prefix(),
        common::shared(&clock),
    )
    .await;
    invalidations_travel(&a, &b, &clock).await;
}

/// Redis Sentinel: one primary and one sentinel watching it, the store told only the sentinel's
/// address. The conformance suite passes through it, and invalidations travel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_through_sentinel() {
    let Some(primary) = common::RedisServer::start(&[]).await else {
        return;
    };
    let Some(sentinel) = common::RedisServer::sentinel(primary.port).await else {
        return;
    };
    let url = format!(
        "redis-sentinel://127.0.0.1:{}?sentinelServiceName=mymaster",
        sentinel.port
    );
    let client = common::connect(&url)
        .await
        .expect("connect through the sentinel");
    wechat_sessions::conformance::run(|clock| common::store_on(&client, clock)).await;
    let stored: i64 = common::cli(primary.port, &["dbsize"])
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        stored > 0,
        "the records are on the primary the sentinel named"
    );
    let clock = ManualClock::starting_now();
    let [a, b] = two_instances(&url, &common::random_prefix(), common::shared(&clock)).await;
    invalidations_travel(&a, &b, &clock).await;
}

/// The accessors operators and benchmarks read: the sealing key's id, the client (usable for
/// commands of one's own), the channel (one per prefix, so deployments sharing a Redis do not
/// hear each other), and a record's memory in Redis. Break to see it fail: any of them
/// answering a constant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accessors_answer_for_this_store() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    let clock = ManualClock::starting_now();
    let prefix = common::random_prefix();
    let store = RedisStore::builder(&common::redis_url(), common::key("k7", 7))
        .unwrap()
        .prefix(&prefix)
        .clock(common::shared(&clock))
        .with_client(client);
    assert_eq!(store.sealing_key_id(), "k7");
    let pong: String = store.client().ping(None).await.unwrap();
    assert_eq!(pong, "PONG");
    assert!(store.channel().starts_with(&prefix), "{}", store.channel());
    let other = common::store_on(store.client(), common::shared(&clock));
    assert_ne!(store.channel(), other.channel(), "one channel per prefix");
    let record = store
        .insert(sample_record(&clock, "wxapp", "measured"))
        .await
        .unwrap();
    let bytes = store.memory_usage(&record.sid).await.unwrap().unwrap();
    assert!(bytes > 100, "a sealed record takes {bytes} bytes");
    let unknown = wechat_sessions::SessionId::random();
    assert_eq!(store.memory_usage(&unknown).await.unwrap(), None);
}

/// Shared values (a code's exchange, a used state): the first put wins and is what every
/// instance reads; they expire. Break to see it fail: `get_value` answering `None`, or
/// `PUT_IF_ABSENT` replacing a value that is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_value_is_put_once_read_by_all_and_expires() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    let clock = ManualClock::starting_now();
    let store = common::store_on(&client, common::shared(&clock));
    let minute = Duration::from_secs(60);
    assert_eq!(store.get_value("code:x").await.unwrap(), None);
    let first = store
        .put_value_if_absent("code:x", b"first".to_vec(), minute)
        .await
        .unwrap();
    assert_eq!(first, None, "nothing was there");
    let second = store
        .put_value_if_absent("code:x", b"second".to_vec(), minute)
        .await
        .unwrap();
    assert_eq!(
        second.as_deref(),
        Some(&b"first"[..]),
        "the first put stays"
    );
    assert_eq!(
        store.get_value("code:x").await.unwrap().as_deref(),
        Some(&b"first"[..])
    );
    let ttl: i64 = client.pttl(store.value_key("code:x")).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "{ttl}");
}

/// A local cache in front of Redis passes the fleet's shared state straight through: leases,
/// shared values, secrets, the shared record and deletes are Redis's, whichever instance asks.
/// Break to see it fail: any of `CachedStore`'s forwarding methods answering for itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_cache_passes_the_fleets_shared_state_through() {
    if common::machine_redis().await.is_none() {
        return;
    }
    let clock = ManualClock::starting_now();
    let [a, b] = two_instances(
        &common::redis_url(),
        &common::random_prefix(),
        common::shared(&clock),
    )
    .await;
    let minute = Duration::from_secs(60);
    assert!(a.try_lease("refresh:y", "a", minute).await.unwrap());
    assert!(!b.try_lease("refresh:y", "b", minute).await.unwrap());
    assert!(a.renew_lease("refresh:y", "a", minute).await.unwrap());
    assert!(!b.renew_lease("refresh:y", "b", minute).await.unwrap());
    a.release_lease("refresh:y", "a").await.unwrap();
    assert!(b.try_lease("refresh:y", "b", minute).await.unwrap());

    assert_eq!(
        a.put_value_if_absent("state:z", b"used".to_vec(), minute)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        b.get_value("state:z").await.unwrap().as_deref(),
        Some(&b"used"[..])
    );
    a.put_secret("apptoken:w", b"APP-TOKEN".to_vec(), minute)
        .await
        .unwrap();
    assert_eq!(
        b.get_secret("apptoken:w").await.unwrap().as_deref(),
        Some(&b"APP-TOKEN"[..])
    );

    let record = a
        .insert(sample_record(&clock, "wxapp", "kate"))
        .await
        .unwrap();
    assert!(b.get(&record.sid).await.unwrap().is_some());
    // Ended in Redis behind B's back (no message): B's copy may still be served, but the
    // shared read and the delete are Redis's.
    assert!(b.shared().delete(&record.sid).await.unwrap());
    assert!(b.get_shared(&record.sid).await.unwrap().is_none());
    assert!(
        !a.delete(&record.sid).await.unwrap(),
        "already gone in Redis"
    );
    let live = a
        .insert(sample_record(&clock, "wxapp", "lena"))
        .await
        .unwrap();
    assert_eq!(
        b.get_shared(&live.sid).await.unwrap().unwrap().sid,
        live.sid
    );
    assert!(b.delete(&live.sid).await.unwrap(), "B ended it in Redis");
    assert!(a.shared().get(&live.sid).await.unwrap().is_none());
}
