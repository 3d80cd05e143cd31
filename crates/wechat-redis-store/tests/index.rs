//! The users' index on a real Redis: buckets shared by users whose ids hash alike, members that
//! carry their end, and the per-user sorted sets earlier versions wrote. Each test's doc comment
//! names the break that makes it fail.

mod common;

use std::time::Duration;

use fred::prelude::*;
use fred::types::Value;
use wechat_redis_store::{RedisStore, RedisStoreBuilder};
use wechat_sessions::conformance::sample_record;
use wechat_sessions::{Clock, ManualClock, SessionId, SessionRecord, SessionStore, UserId};

/// A store's configuration under `prefix`, on `clock`.
fn builder(clock: &ManualClock, prefix: String) -> RedisStoreBuilder {
    RedisStore::builder(&common::redis_url(), common::key("k1", 1))
        .unwrap()
        .prefix(prefix)
        .clock(common::shared(clock))
}

fn store(client: Client, clock: &ManualClock, max: usize) -> RedisStore {
    builder(clock, common::random_prefix())
        .max_sessions_per_user(max)
        .with_client(client)
}

/// A store on the machine's Redis under a fresh prefix, capping users at `max` sessions, with
/// its clock and its client (`None` where no Redis is configured).
async fn fresh(max: usize) -> Option<(RedisStore, ManualClock, Client)> {
    let client = common::machine_redis().await?;
    let clock = ManualClock::starting_now();
    Some((store(client.clone(), &clock, max), clock, client))
}

/// The members of `user`'s bucket, in order.
async fn bucket(store: &RedisStore, user: &UserId) -> Vec<Vec<u8>> {
    let members: Vec<Value> = store
        .client()
        .zrange(store.index_key(user), 0, -1, None, false, None, false)
        .await
        .unwrap();
    members
        .iter()
        .map(|m| m.as_bytes().unwrap().to_vec())
        .collect()
}

/// The sessions the members of `user`'s bucket name, in order.
async fn bucketed(store: &RedisStore, user: &UserId) -> Vec<SessionId> {
    bucket(store, user)
        .await
        .iter()
        .map(|m| SessionId::from_bytes(m[8..24].try_into().unwrap()))
        .collect()
}

/// A member as the store writes them: user hash, session id, end (Unix s, big-endian).
fn member(hash: &[u8], sid: &SessionId, end: u32) -> Value {
    Value::Bytes([hash, sid.as_bytes(), &end.to_be_bytes()].concat().into())
}

async fn add(store: &RedisStore, user: &UserId, member: Value) {
    let added: i64 = store
        .client()
        .zadd(
            store.index_key(user),
            None,
            None,
            false,
            false,
            (0.0, member),
        )
        .await
        .unwrap();
    assert_eq!(added, 1);
}

/// Takes `sid`'s member out of `user`'s bucket, as if only another index held it.
async fn unbucket(store: &RedisStore, user: &UserId, sid: &SessionId) {
    let members: Vec<Value> = bucket(store, user)
        .await
        .into_iter()
        .filter(|m| &m[8..24] == sid.as_bytes())
        .map(|m| Value::Bytes(m.into()))
        .collect();
    let _: i64 = store
        .client()
        .zrem(store.index_key(user), members)
        .await
        .unwrap();
}

/// A member's user hash and end.
fn hash_and_end(member: &[u8]) -> (&[u8], u32) {
    (
        &member[..8],
        u32::from_be_bytes(member[24..].try_into().unwrap()),
    )
}

/// Indexes `sid` in `user`'s own sorted set, as versions before the buckets did.
async fn add_legacy(store: &RedisStore, user: &UserId, sid: &SessionId, score: f64) {
    let _: i64 = store
        .client()
        .zadd(
            store.user_key(user),
            None,
            None,
            false,
            false,
            (score, sid.to_string()),
        )
        .await
        .unwrap();
}

/// The session ids in `user`'s own sorted set.
async fn legacy(store: &RedisStore, user: &UserId) -> Vec<String> {
    store
        .client()
        .zrange(store.user_key(user), 0, -1, None, false, None, false)
        .await
        .unwrap()
}

/// The sessions `store` lists for `user`, sorted.
async fn sessions_of(store: &RedisStore, user: &UserId) -> Vec<SessionId> {
    let mut sids: Vec<SessionId> = store
        .user_sessions(user)
        .await
        .unwrap()
        .iter()
        .map(|r| r.sid)
        .collect();
    sids.sort();
    sids
}

async fn insert(store: &RedisStore, clock: &ManualClock, openid: &str) -> SessionRecord {
    (*store
        .insert(sample_record(clock, "wxapp", openid))
        .await
        .unwrap())
    .clone()
}

/// Break to see it fail: `delete_user` or `user_sessions` trusting a bucket member without
/// checking the record's user (hashes collide), or the member's hash not compared when a
/// range is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_session_in_the_range_is_never_listed_nor_ended() {
    let Some((store, clock, _)) = fresh(10).await else {
        return;
    };
    let ivy = insert(&store, &clock, "ivy").await;
    let jon = insert(&store, &clock, "jon").await;
    let own = bucket(&store, &ivy.user()).await;
    assert_eq!(own.len(), 1, "one 28-byte member: {own:?}");
    assert_eq!(own[0].len(), 28);
    assert_eq!(&own[0][8..24], ivy.sid.as_bytes());
    // Jon's session under Ivy's hash: what a collision of the two ids' hashes would write.
    let (hash, end) = hash_and_end(&own[0]);
    add(&store, &ivy.user(), member(hash, &jon.sid, end)).await;

    assert_eq!(sessions_of(&store, &ivy.user()).await, [ivy.sid]);
    assert_eq!(store.delete_user(&ivy.user()).await.unwrap(), 1);
    assert!(store.get(&ivy.sid).await.unwrap().is_none());
    assert!(
        store.get(&jon.sid).await.unwrap().is_some(),
        "Jon's lives on"
    );
    assert!(
        !bucketed(&store, &ivy.user()).await.contains(&ivy.sid),
        "Ivy's member went with her session"
    );
    assert_eq!(
        store.user_sessions(&jon.user()).await.unwrap().len(),
        1,
        "Jon's own index still names it"
    );
}

/// Break to see it fail: `delete` not unindexing, unindexing a member other than the deleted
/// session's (a wrong end or user in the member it removes), or leaving the per-user set of the
/// versions before the buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_takes_its_session_out_of_the_bucket() {
    let Some((store, clock, _)) = fresh(10).await else {
        return;
    };
    let first = insert(&store, &clock, "lee").await;
    let second = insert(&store, &clock, "lee").await;
    assert_eq!(bucket(&store, &first.user()).await.len(), 2);

    assert!(store.delete(&first.sid).await.unwrap(), "it was live");
    assert_eq!(
        bucketed(&store, &first.user()).await,
        [second.sid],
        "the logged-out session's member is gone, the other one stays"
    );
    assert!(store.get(&second.sid).await.unwrap().is_some());
    // A second logout of the same session finds nothing, and leaves the rest as it is.
    assert!(!store.delete(&first.sid).await.unwrap());
    assert_eq!(bucket(&store, &first.user()).await.len(), 1);

    // A session an earlier version indexed in the user's own set leaves it too.
    add_legacy(&store, &second.user(), &second.sid, 1.0).await;
    assert!(store.delete(&second.sid).await.unwrap());
    assert!(bucket(&store, &second.user()).await.is_empty());
    assert!(legacy(&store, &second.user()).await.is_empty());
}

/// A session the cap ends leaves the bucket at once, as a logged-out one does, while the ones it
/// keeps stay. Break to see it fail: the cap deleting the record without unindexing it (it
/// stayed in the bucket until a purge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_takes_the_sessions_it_ends_out_of_the_bucket() {
    let Some((store, clock, _)) = fresh(2).await else {
        return;
    };
    let first = insert(&store, &clock, "kim").await;
    clock.advance(Duration::from_secs(1));
    let second = insert(&store, &clock, "kim").await;
    clock.advance(Duration::from_secs(1));
    let third = insert(&store, &clock, "kim").await;
    assert!(store.get(&first.sid).await.unwrap().is_none(), "capped");
    let mut kept = vec![second.sid, third.sid];
    kept.sort();
    let mut indexed = bucketed(&store, &first.user()).await;
    indexed.sort();
    assert_eq!(indexed, kept, "the capped session's member is gone");
}

/// The cap runs on the clock of the instance that logs the user in, which may be ahead of the
/// one that wrote a session: a session ended by its clock only within the allowance for that
/// stays indexed (a logout-all elsewhere must still find it), and one ended beyond it goes.
/// Break to see it fail: the cap unindexing every session its clock says has ended, or none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_unindexes_a_session_only_once_it_ended_for_every_clock() {
    let Some((store, clock, _)) = fresh(1).await else {
        return;
    };
    let first = insert(&store, &clock, "mia").await;
    let user = first.user();
    let end = first
        .expires_at
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    // This instance's clock a second past the first session's end: the login's cap finds it
    // ended, by this clock only.
    clock.set(first.expires_at + Duration::from_secs(1));
    let second = insert(&store, &clock, "mia").await;
    assert!(
        bucketed(&store, &user).await.contains(&first.sid),
        "within the allowance, it stays indexed"
    );
    assert!(
        store.get(&second.sid).await.unwrap().is_some(),
        "the new login stays"
    );

    // Past the allowance (the bucket's purge spared by giving the member a later end, so only
    // the cap can take it out).
    unbucket(&store, &user, &first.sid).await;
    let hash = bucket(&store, &user).await[0][..8].to_vec();
    let later = (end.as_secs() + 10 * 24 * 3600) as u32;
    add(&store, &user, member(&hash, &first.sid, later)).await;
    clock.set(first.expires_at + Duration::from_secs(301));
    let third = insert(&store, &clock, "mia").await;
    assert!(
        !bucketed(&store, &user).await.contains(&first.sid),
        "ended for good, it is unindexed"
    );
    assert!(store.get(&third.sid).await.unwrap().is_some());
}

/// Break to see it fail: the index script not purging (either loop), comparing the end the wrong
/// way, or purging members as soon as they end (no allowance for a clock running ahead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_members_leave_the_bucket_when_a_login_lands_in_it() {
    let Some((store, clock, _)) = fresh(10).await else {
        return;
    };
    let kim = insert(&store, &clock, "kim").await;
    let own = bucket(&store, &kim.user()).await;
    let hash = own[0][..8].to_vec();
    // Ended members: one of Kim's, and one of a user sharing the bucket (the same first two
    // bytes of hash, which choose the bucket) who never came back.
    let mut neighbour = hash.clone();
    neighbour[7] ^= 0xff;
    let now = clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    // Purged once ended for longer than the store's allowance for clock skew (five minutes).
    let ended = now - 301;
    // Ended by this instance's clock only a second ago: the instance that wrote it may be
    // behind, its session still live there, so it stays.
    let just_ended = now - 1;
    let live = now + 3_600;
    let (stale_own, stale_other, recent_other, live_other) = (
        SessionId::random(),
        SessionId::random(),
        SessionId::random(),
        SessionId::random(),
    );
    add(&store, &kim.user(), member(&hash, &stale_own, ended)).await;
    add(&store, &kim.user(), member(&neighbour, &stale_other, ended)).await;
    add(
        &store,
        &kim.user(),
        member(&neighbour, &recent_other, just_ended),
    )
    .await;
    add(&store, &kim.user(), member(&neighbour, &live_other, live)).await;
    assert_eq!(bucket(&store, &kim.user()).await.len(), 5);

    let second = insert(&store, &clock, "kim").await;
    let mut sids = bucketed(&store, &kim.user()).await;
    let mut expected = vec![kim.sid, second.sid, recent_other, live_other];
    sids.sort();
    expected.sort();
    assert_eq!(
        sids, expected,
        "the members ended beyond the allowance are gone, the others stay"
    );
}

/// Break to see it fail: the legacy per-user index no longer read by `user_sessions`,
/// `delete_user` or the cap's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_indexed_by_an_earlier_version_are_listed_capped_and_ended() {
    let Some((store, clock, client)) = fresh(2).await else {
        return;
    };
    // A session as an earlier version indexed it: in the user's own sorted set.
    let old = insert(&store, &clock, "lea").await;
    let user = old.user();
    let _: i64 = client.del(store.index_key(&user)).await.unwrap();
    add_legacy(&store, &user, &old.sid, 1.0).await;
    let listed = store.user_sessions(&user).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].sid, old.sid);

    // Two more logins: three sessions over a cap of two ends the least recently confirmed,
    // the old one.
    clock.advance(Duration::from_secs(1));
    let second = insert(&store, &clock, "lea").await;
    clock.advance(Duration::from_secs(1));
    let third = insert(&store, &clock, "lea").await;
    assert!(store.get(&old.sid).await.unwrap().is_none(), "capped");
    let listed = sessions_of(&store, &user).await;
    let mut expected = vec![second.sid, third.sid];
    expected.sort();
    assert_eq!(listed, expected);

    // Logout-all ends the legacy index's sessions too.
    let legacy = insert(&store, &clock, "lea").await;
    add_legacy(&store, &user, &legacy.sid, 2.0).await;
    unbucket(&store, &user, &legacy.sid).await;
    store.delete_user(&user).await.unwrap();
    assert!(store.get(&legacy.sid).await.unwrap().is_none());
    assert!(store.user_sessions(&user).await.unwrap().is_empty());
    let left: i64 = client.zcard(store.user_key(&user)).await.unwrap();
    assert_eq!(left, 0, "the legacy index emptied");
}

/// A record that cannot be read (sealed with a key since dropped, or damaged) among a user's
/// sessions leaves the cap working on the others. Break to see it fail: the cap returning the
/// read's error instead of skipping the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_session_does_not_stop_the_cap() {
    let Some((store, clock, client)) = fresh(2).await else {
        return;
    };
    let first = insert(&store, &clock, "max").await;
    // A second session of the same user whose value no key opens.
    let own = bucket(&store, &first.user()).await;
    let (hash, end) = hash_and_end(&own[0]);
    let damaged = SessionId::random();
    let _: () = client
        .set(
            store.record_key(&damaged),
            "5:99999999999999:not a sealed record",
            None,
            None,
            false,
        )
        .await
        .unwrap();
    add(&store, &first.user(), member(hash, &damaged, end)).await;

    clock.advance(Duration::from_secs(1));
    let second = insert(&store, &clock, "max").await;
    clock.advance(Duration::from_secs(1));
    let third = insert(&store, &clock, "max").await;
    assert!(
        store.get(&first.sid).await.unwrap().is_none(),
        "the least recently confirmed readable session ended"
    );
    assert!(store.get(&second.sid).await.unwrap().is_some());
    assert!(store.get(&third.sid).await.unwrap().is_some());
}

/// With `legacy_writes`, what versions before the buckets read is written too: each session in
/// its user's own sorted set, the record in the unpacked format. A session in both indexes is
/// listed, capped and ended once. Break to see it fail: `legacy_writes` not indexing the user's
/// set, not choosing the old format, or `indexed` naming a session of both indexes twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_writes_serve_a_fleet_changing_over() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    let clock = ManualClock::starting_now();
    let changing = builder(&clock, common::random_prefix())
        .max_sessions_per_user(2)
        .legacy_writes(true)
        .with_client(client.clone());
    let current = store(client.clone(), &clock, 2);

    let first = insert(&changing, &clock, "ned").await;
    let user = first.user();
    assert_eq!(
        legacy(&changing, &user).await,
        [first.sid.to_string()],
        "in the user's own set"
    );
    assert_eq!(bucket(&changing, &user).await.len(), 1, "and in its bucket");
    // A record with WeChat-sized identifiers and tokens (base64url, about 90 characters), by
    // each store: the old format does not pack them, so its value is longer.
    let long = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M".repeat(3);
    let (old, new) = (
        insert(&changing, &clock, &long).await,
        insert(&current, &clock, &long).await,
    );
    let len = |store: &RedisStore, sid: SessionId| {
        let (client, key) = (client.clone(), store.record_key(&sid));
        async move { client.strlen::<i64, _>(key).await.unwrap() }
    };
    let (old, new) = (len(&changing, old.sid).await, len(&current, new.sid).await);
    assert!(old > new + 40, "the unpacked format: {old} against {new}");

    let listed = changing.user_sessions(&user).await.unwrap();
    assert_eq!(listed.len(), 1, "listed once: {listed:?}");
    // Two more logins over a cap of two: the first ends, the other two stay.
    clock.advance(Duration::from_secs(1));
    let second = insert(&changing, &clock, "ned").await;
    clock.advance(Duration::from_secs(1));
    let third = insert(&changing, &clock, "ned").await;
    assert!(changing.get(&first.sid).await.unwrap().is_none());
    assert!(changing.get(&second.sid).await.unwrap().is_some());
    assert!(changing.get(&third.sid).await.unwrap().is_some());

    assert_eq!(changing.delete_user(&user).await.unwrap(), 2);
    assert!(changing.user_sessions(&user).await.unwrap().is_empty());
    let legacy = legacy(&changing, &user).await;
    assert!(
        !legacy.contains(&second.sid.to_string()) && !legacy.contains(&third.sid.to_string()),
        "out of the user's own set too: {legacy:?}"
    );
}

/// Two instances on one Redis during a change-over, one with `legacy_writes` and one without:
/// each lists and ends the other's sessions once. Break to see it fail: `indexed` naming a
/// session of both indexes twice, or not reading the legacy index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_with_and_without_legacy_writes_share_sessions() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    let clock = ManualClock::starting_now();
    let prefix = common::random_prefix();
    let instance = |legacy: bool| {
        builder(&clock, prefix.clone())
            .legacy_writes(legacy)
            .with_client(client.clone())
    };
    let (a, b) = (instance(true), instance(false));
    let on_a = insert(&a, &clock, "ola").await;
    let on_b = insert(&b, &clock, "ola").await;
    let user = on_a.user();
    for store in [&a, &b] {
        let listed = sessions_of(store, &user).await;
        let mut expected = vec![on_a.sid, on_b.sid];
        expected.sort();
        assert_eq!(
            listed, expected,
            "each session listed once, on either instance"
        );
    }
    assert_eq!(
        b.delete_user(&user).await.unwrap(),
        2,
        "B ends A's session too"
    );
    assert!(a.get(&on_a.sid).await.unwrap().is_none());
    assert!(a.user_sessions(&user).await.unwrap().is_empty());
}

/// Two instances share Redis, one's clock two minutes ahead of the other's (within the allowance
/// for skew): a login on the one ahead, which purges the bucket and runs the cap by its own
/// clock, leaves indexed a session the other instance still serves, so the other's logout-all
/// still ends it. Break to see it fail: `PURGE_ALLOWANCE` below two minutes, or the cap
/// unindexing what its clock says has ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_whose_clock_runs_ahead_leaves_a_neighbours_live_session_indexed() {
    let Some(client) = common::machine_redis().await else {
        return;
    };
    let prefix = common::random_prefix();
    let behind = ManualClock::starting_now();
    let ahead = ManualClock::starting_now();
    let instance = |clock: &ManualClock| {
        builder(clock, prefix.clone())
            .max_sessions_per_user(1)
            .with_client(client.clone())
    };
    let (serving, logging_in) = (instance(&behind), instance(&ahead));
    let first = insert(&serving, &behind, "zoe").await;
    let user = first.user();
    // The serving instance a second before the session's end; the other two minutes past it.
    behind.set(first.expires_at - Duration::from_secs(1));
    ahead.set(first.expires_at + Duration::from_secs(120));
    let second = insert(&logging_in, &ahead, "zoe").await;
    assert!(
        bucketed(&serving, &user).await.contains(&first.sid),
        "still indexed after the login on the instance ahead"
    );

    let listed = sessions_of(&serving, &user).await;
    assert!(listed.contains(&first.sid), "{listed:?}");
    serving.delete_user(&user).await.unwrap();
    assert!(
        serving.get(&first.sid).await.unwrap().is_none(),
        "the logout-all ended the session the instance behind still served"
    );
    assert!(logging_in.get(&second.sid).await.unwrap().is_none());
}
