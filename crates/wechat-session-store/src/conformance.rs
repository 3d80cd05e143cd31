//! The suite every [`SessionStore`] must pass, written once. A backend's tests call [`run`] with a
//! factory that builds an empty store on the given clock:
//!
//! ```
//! use wechat_oauth::clock::SharedClock;
//! use wechat_session_store::{SharedStore, conformance};
//!
//! /// In the backend's tests: `check(|clock| MyStore::on(clock)).await`.
//! async fn check<S: SharedStore>(make_store: impl Fn(SharedClock) -> S) {
//!     conformance::run(&make_store).await;
//!     conformance::run_shared(&make_store).await;
//! }
//! ```
//!
//! Each check panics with a message naming the broken rule of the [`SessionStore`] contract.
//!
//! Every store the coordinator uses must also pass [`run_shared`]: the [`SharedStore`]'s
//! leases, values written once, secrets and shared reads — kept by the shared backend for a
//! fleet, in memory for one process (the moka store, `SingleProcess`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use wechat_oauth::clock::{Clock, ManualClock, SharedClock};
use wechat_oauth::{AccessToken, AppId, OpenId, RefreshToken, Scopes, SessionKey, UnionId};

use crate::record::{Credentials, SessionId, SessionRecord, UserId};
use crate::store::{
    CasOutcome, DEFAULT_MAX_SESSIONS_PER_USER, SessionStore, SharedStore, StoreError,
};

/// Runs every check, each on a fresh store from `make_store`, which must keep the default
/// per-user cap ([`DEFAULT_MAX_SESSIONS_PER_USER`]).
pub async fn run<S, F>(make_store: F)
where
    S: SessionStore,
    F: Fn(SharedClock) -> S,
{
    let fresh = || {
        let clock = ManualClock::starting_now();
        let store = make_store(Arc::new(clock.clone()));
        (store, clock)
    };
    let (s, c) = fresh();
    get_insert_round_trip(&s, &c).await;
    let (s, c) = fresh();
    insert_refuses_a_taken_id(&s, &c).await;
    let (s, c) = fresh();
    compare_and_set_versions(&s, &c).await;
    let (s, c) = fresh();
    delete_is_final(&s, &c).await;
    let (s, c) = fresh();
    delete_user_removes_only_that_user(&s, &c).await;
    let (s, c) = fresh();
    user_sessions_lists_only_that_users_live_sessions(&s, &c).await;
    let (s, c) = fresh();
    a_user_over_the_cap_loses_the_least_recently_confirmed(&s, &c).await;
    let (s, c) = fresh();
    records_expire_by_the_clock(&s, &c).await;
    let (s, c) = fresh();
    concurrent_compare_and_set_has_one_winner(Arc::new(s), &c).await;
    let (s, c) = fresh();
    a_delete_is_never_undone_by_concurrent_writers(Arc::new(s), &c).await;
}

/// Runs the checks of the fleet methods (leases, shared values, secrets, reading past a local
/// copy) on a fresh store from `make_store`: what a store shared by several instances must
/// do so that one instance's flight, login or app token is every instance's. A lease's expiry
/// is by the store's clock or the backend's own (real time): the check moves the clock past a
/// 100 ms lease and waits up to 10 s for it to end.
pub async fn run_shared<S, F>(make_store: F)
where
    S: SharedStore,
    F: Fn(SharedClock) -> S,
{
    let clock = ManualClock::starting_now();
    let store = make_store(Arc::new(clock.clone()));
    leases_have_one_owner(&store).await;
    a_lease_ends_with_its_time(&store, &clock).await;
    values_are_written_once(&store).await;
    secrets_are_replaced(&store).await;
    shared_reads_see_writes(&store, &clock).await;
}

/// A name no other check or run uses.
fn unique(what: &str) -> String {
    format!("conformance-{what}-{}", SessionId::random())
}

async fn leases_have_one_owner<S: SharedStore>(store: &S) {
    let name = unique("lease");
    let ttl = Duration::from_secs(30);
    assert!(
        store.try_lease(&name, "a", ttl).await.unwrap(),
        "a free lease is taken"
    );
    assert!(
        !store.try_lease(&name, "b", ttl).await.unwrap(),
        "a held lease is not taken by another owner"
    );
    assert!(
        !store.renew_lease(&name, "b", ttl).await.unwrap(),
        "only the owner renews a lease"
    );
    store.release_lease(&name, "b").await.unwrap();
    assert!(
        !store.try_lease(&name, "c", ttl).await.unwrap(),
        "only the owner releases a lease"
    );
    assert!(
        store.renew_lease(&name, "a", ttl).await.unwrap(),
        "the owner renews its lease"
    );
    store.release_lease(&name, "a").await.unwrap();
    assert!(
        store.try_lease(&name, "b", ttl).await.unwrap(),
        "a released lease is free"
    );
    store.release_lease(&name, "b").await.unwrap();
}

async fn a_lease_ends_with_its_time<S: SharedStore>(store: &S, clock: &ManualClock) {
    let name = unique("expiring-lease");
    assert!(
        store
            .try_lease(&name, "crashed", Duration::from_millis(100))
            .await
            .unwrap()
    );
    // The lease's time passes on the store's clock (a store in memory) or in real time (a
    // shared backend's own expiry).
    clock.advance(Duration::from_millis(200));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if store
            .try_lease(&name, "next", Duration::from_secs(30))
            .await
            .unwrap()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a lease whose holder stopped renewing ends with its time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !store
            .renew_lease(&name, "crashed", Duration::from_secs(30))
            .await
            .unwrap(),
        "the old holder no longer renews it"
    );
    store.release_lease(&name, "next").await.unwrap();
}

async fn values_are_written_once<S: SharedStore>(store: &S) {
    let key = unique("value");
    let ttl = Duration::from_secs(60);
    assert_eq!(
        store
            .put_value_if_absent(&key, b"first".to_vec(), ttl)
            .await
            .unwrap(),
        None,
        "a free key takes the value"
    );
    assert_eq!(
        store
            .put_value_if_absent(&key, b"second".to_vec(), ttl)
            .await
            .unwrap(),
        Some(b"first".to_vec()),
        "a taken key answers the value already there"
    );
    assert_eq!(
        store.get_value(&key).await.unwrap(),
        Some(b"first".to_vec()),
        "the first value stays"
    );
    assert_eq!(store.get_value(&unique("absent")).await.unwrap(), None);
}

async fn secrets_are_replaced<S: SharedStore>(store: &S) {
    let key = unique("secret");
    let ttl = Duration::from_secs(60);
    store.put_secret(&key, b"one".to_vec(), ttl).await.unwrap();
    assert_eq!(store.get_secret(&key).await.unwrap(), Some(b"one".to_vec()));
    store.put_secret(&key, b"two".to_vec(), ttl).await.unwrap();
    assert_eq!(
        store.get_secret(&key).await.unwrap(),
        Some(b"two".to_vec()),
        "a secret is replaced"
    );
    assert_eq!(store.get_secret(&unique("absent")).await.unwrap(), None);
}

async fn shared_reads_see_writes<S: SharedStore>(store: &S, clock: &ManualClock) {
    let record = sample_record(clock, "wx_conformance", "o_shared");
    store.insert(record.clone()).await.unwrap();
    let read = store.get_shared(&record.sid).await.unwrap();
    assert_eq!(read.map(|r| r.version), Some(record.version));
}

/// A sample OAuth record for `openid` of `appid`, living a day from the clock's now.
pub fn sample_record(clock: &impl Clock, appid: &str, openid: &str) -> SessionRecord {
    let now = clock.now();
    let mut record = SessionRecord::new(
        SessionId::random(),
        AppId::new(appid),
        OpenId::new(openid),
        Credentials::OAuth {
            access_token: AccessToken::new(format!("AT-{openid}")),
            access_token_expires_at: now + Duration::from_secs(7200),
            refresh_token: RefreshToken::new(format!("RT-{openid}")),
        },
        now,
        now + Duration::from_secs(86_400),
    );
    record.unionid = Some(UnionId::new(format!("u-{openid}")));
    record.scopes = Scopes::parse("snsapi_userinfo");
    record
}

async fn expect<T>(what: &str, f: impl Future<Output = Result<T, StoreError>>) -> T {
    match f.await {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected store error {e}"),
    }
}

async fn get_insert_round_trip<S: SessionStore>(store: &S, clock: &ManualClock) {
    let record = sample_record(clock, "wxapp", "alice");
    assert!(
        expect("get unknown", store.get(&record.sid))
            .await
            .is_none(),
        "get of an unknown session must be None"
    );
    let stored = expect("insert", store.insert(record.clone())).await;
    assert_eq!(*stored, record, "insert must store the record as given");
    let loaded = expect("get", store.get(&record.sid)).await;
    assert_eq!(
        loaded.as_deref(),
        Some(&record),
        "get must return what insert stored"
    );

    let mut mini = sample_record(clock, "wxapp", "bob");
    mini.credentials = Credentials::MiniProgram {
        session_key: SessionKey::new("SK=="),
    };
    mini.snapshot_user = true;
    expect("insert mini program", store.insert(mini.clone())).await;
    let loaded = expect("get mini program", store.get(&mini.sid)).await;
    assert_eq!(
        loaded.as_deref(),
        Some(&mini),
        "Mini Program records must round-trip"
    );
}

async fn insert_refuses_a_taken_id<S: SessionStore>(store: &S, clock: &ManualClock) {
    let record = sample_record(clock, "wxapp", "alice");
    expect("insert", store.insert(record.clone())).await;
    let mut other = sample_record(clock, "wxapp", "mallory");
    other.sid = record.sid;
    assert!(
        matches!(store.insert(other).await, Err(StoreError::AlreadyExists)),
        "insert of a taken id must fail with AlreadyExists"
    );
    let loaded = expect("get", store.get(&record.sid)).await;
    assert_eq!(
        loaded.as_deref(),
        Some(&record),
        "a refused insert must not overwrite"
    );
}

async fn compare_and_set_versions<S: SessionStore>(store: &S, clock: &ManualClock) {
    let record = sample_record(clock, "wxapp", "alice");
    expect("insert", store.insert(record.clone())).await;

    let mut next = record.clone();
    next.confirmed_at = clock.now() + Duration::from_secs(1);
    let CasOutcome::Stored(written) = expect("cas", store.compare_and_set(0, next.clone())).await
    else {
        panic!("compare_and_set with the stored version must store");
    };
    assert_eq!(
        written.version, 1,
        "a stored compare_and_set must increment the version"
    );
    assert_eq!(written.confirmed_at, next.confirmed_at);
    let loaded = expect("get", store.get(&record.sid)).await;
    assert_eq!(
        loaded.as_deref(),
        Some(&*written),
        "get must see the new version"
    );

    let mut stale = record.clone();
    stale.confirmed_at = clock.now() + Duration::from_secs(99);
    match expect("stale cas", store.compare_and_set(0, stale)).await {
        CasOutcome::Conflict {
            current: Some(current),
        } => {
            assert_eq!(
                current.version, 1,
                "a conflict must report the current record"
            );
        }
        other => panic!("compare_and_set with a stale version must conflict, got {other:?}"),
    }
    let loaded = expect("get", store.get(&record.sid)).await;
    assert_eq!(
        loaded.map(|r| r.version),
        Some(1),
        "a conflict must not write"
    );

    let ghost = sample_record(clock, "wxapp", "ghost");
    assert!(
        matches!(
            expect("cas unknown", store.compare_and_set(0, ghost.clone())).await,
            CasOutcome::Conflict { current: None }
        ),
        "compare_and_set of an unknown session must conflict with None"
    );
    assert!(
        expect("get ghost", store.get(&ghost.sid)).await.is_none(),
        "compare_and_set must never create a session"
    );
}

async fn delete_is_final<S: SessionStore>(store: &S, clock: &ManualClock) {
    let record = sample_record(clock, "wxapp", "alice");
    expect("insert", store.insert(record.clone())).await;
    assert!(
        expect("delete", store.delete(&record.sid)).await,
        "delete must report a removal"
    );
    assert!(
        expect("get", store.get(&record.sid)).await.is_none(),
        "deleted means gone"
    );
    assert!(
        !expect("delete again", store.delete(&record.sid)).await,
        "deleting twice must report nothing removed"
    );
    assert!(
        matches!(
            expect("cas deleted", store.compare_and_set(0, record.clone())).await,
            CasOutcome::Conflict { current: None }
        ),
        "compare_and_set must not resurrect a deleted session"
    );
    assert!(expect("get", store.get(&record.sid)).await.is_none());
}

async fn delete_user_removes_only_that_user<S: SessionStore>(store: &S, clock: &ManualClock) {
    let alice: Vec<_> = (0..3)
        .map(|_| sample_record(clock, "wxapp", "alice"))
        .collect();
    let bob = sample_record(clock, "wxapp", "bob");
    let alice_elsewhere = sample_record(clock, "wxother", "alice");
    for r in alice.iter().chain([&bob, &alice_elsewhere]) {
        expect("insert", store.insert(r.clone())).await;
    }
    let user = UserId::default_for(&AppId::new("wxapp"), &OpenId::new("alice"), None);
    assert_eq!(
        expect("delete_user", store.delete_user(&user)).await,
        3,
        "delete_user must report each of the user's sessions"
    );
    for r in &alice {
        assert!(
            expect("get", store.get(&r.sid)).await.is_none(),
            "the user's sessions must go"
        );
    }
    assert!(
        expect("get bob", store.get(&bob.sid)).await.is_some(),
        "other users must stay"
    );
    assert!(
        expect("get other app", store.get(&alice_elsewhere.sid))
            .await
            .is_some(),
        "the same openid in another app is another user and must stay"
    );
    assert_eq!(
        expect("delete_user again", store.delete_user(&user)).await,
        0
    );
}

async fn user_sessions_lists_only_that_users_live_sessions<S: SessionStore>(
    store: &S,
    clock: &ManualClock,
) {
    let user = UserId::default_for(&AppId::new("wxapp"), &OpenId::new("alice"), None);
    assert!(
        expect("user_sessions", store.user_sessions(&user))
            .await
            .is_empty(),
        "a user without sessions has none listed"
    );
    let mut first = sample_record(clock, "wxapp", "alice");
    first.client = Some(Box::new(crate::LoginClient::new(
        Some("Mozilla/5.0 (Macintosh)"),
        Some("203.0.113.7".parse().expect("an address")),
    )));
    let second = sample_record(clock, "wxapp", "alice");
    let mut short = sample_record(clock, "wxapp", "alice");
    short.expires_at = clock.now() + Duration::from_secs(60);
    let bob = sample_record(clock, "wxapp", "bob");
    let alice_elsewhere = sample_record(clock, "wxother", "alice");
    for r in [&first, &second, &short, &bob, &alice_elsewhere] {
        expect("insert", store.insert(r.clone())).await;
    }
    let ended = sample_record(clock, "wxapp", "alice");
    expect("insert", store.insert(ended.clone())).await;
    expect("delete", store.delete(&ended.sid)).await;
    clock.advance(Duration::from_secs(61));
    let mut listed = expect("user_sessions", store.user_sessions(&user)).await;
    listed.sort_by_key(|r| r.sid);
    let mut expected = vec![first.clone(), second.clone()];
    expected.sort_by_key(|r| r.sid);
    let listed: Vec<SessionRecord> = listed.iter().map(|r| (**r).clone()).collect();
    assert_eq!(
        listed, expected,
        "user_sessions must list every live session of the user as stored (where it came from \
         included), and no ended, expired or other user's session"
    );
}

async fn a_user_over_the_cap_loses_the_least_recently_confirmed<S: SessionStore>(
    store: &S,
    clock: &ManualClock,
) {
    let cap = DEFAULT_MAX_SESSIONS_PER_USER;
    let mut sessions = Vec::new();
    for i in 0..cap {
        let mut record = sample_record(clock, "wxapp", "alice");
        // Confirmed in reverse order of login: the first login is the most recently confirmed.
        record.confirmed_at = clock.now() - Duration::from_secs(i as u64 + 1);
        sessions.push(expect("insert", store.insert(record)).await);
    }
    let bob = expect(
        "insert bob",
        store.insert(sample_record(clock, "wxapp", "bob")),
    )
    .await;
    let newest = expect(
        "insert over the cap",
        store.insert(sample_record(clock, "wxapp", "alice")),
    )
    .await;
    let oldest = sessions.last().expect("the cap is at least 1");
    assert!(
        expect("get", store.get(&oldest.sid)).await.is_none(),
        "a login over the per-user cap must end the user's least recently confirmed session"
    );
    assert!(expect("get", store.get(&newest.sid)).await.is_some());
    assert!(expect("get", store.get(&sessions[0].sid)).await.is_some());
    assert!(
        expect("get", store.get(&bob.sid)).await.is_some(),
        "the cap is per user"
    );
    let user = UserId::default_for(&AppId::new("wxapp"), &OpenId::new("alice"), None);
    assert_eq!(
        expect("delete_user", store.delete_user(&user)).await,
        cap,
        "the user keeps exactly the cap"
    );
}

async fn records_expire_by_the_clock<S: SessionStore>(store: &S, clock: &ManualClock) {
    let record = sample_record(clock, "wxapp", "alice");
    expect("insert", store.insert(record.clone())).await;
    clock.advance(Duration::from_secs(86_399));
    assert!(
        expect("get", store.get(&record.sid)).await.is_some(),
        "alive before expires_at"
    );
    clock.advance(Duration::from_secs(1));
    assert!(
        expect("get expired", store.get(&record.sid))
            .await
            .is_none(),
        "get must not return a record whose expires_at has passed"
    );
    assert!(
        matches!(
            expect("cas expired", store.compare_and_set(0, record.clone())).await,
            CasOutcome::Conflict { current: None }
        ),
        "an expired session cannot be updated"
    );
    let mut reborn = sample_record(clock, "wxapp", "alice");
    reborn.sid = record.sid;
    expect(
        "insert over an expired record",
        store.insert(reborn.clone()),
    )
    .await;
    assert_eq!(
        expect("get reborn", store.get(&record.sid))
            .await
            .as_deref(),
        Some(&reborn),
        "an insert over an expired record must store the new record"
    );
}

async fn concurrent_compare_and_set_has_one_winner<S: SessionStore>(
    store: Arc<S>,
    clock: &ManualClock,
) {
    let record = sample_record(clock, "wxapp", "alice");
    expect("insert", store.insert(record.clone())).await;
    // Every writer waits at the barrier, so the writes really overlap (on a multi-thread
    // runtime, and across the I/O of a networked store).
    const WRITERS: usize = 32;
    let barrier = Arc::new(tokio::sync::Barrier::new(WRITERS));
    let mut writers = Vec::new();
    for i in 0..WRITERS as u64 {
        let (store, barrier, mut next) = (Arc::clone(&store), Arc::clone(&barrier), record.clone());
        next.confirmed_at = record.confirmed_at + Duration::from_secs(i + 1);
        writers.push(tokio::spawn(async move {
            barrier.wait().await;
            store.compare_and_set(0, next).await
        }));
    }
    let mut stored = 0;
    for writer in writers {
        match writer.await.expect("writer task") {
            Ok(CasOutcome::Stored(_)) => stored += 1,
            Ok(CasOutcome::Conflict { .. }) => {}
            Err(e) => panic!("concurrent compare_and_set: store error {e}"),
        }
    }
    assert_eq!(
        stored, 1,
        "exactly one of concurrent writers of one version must win"
    );
    let now = expect("get", store.get(&record.sid)).await;
    assert_eq!(
        now.map(|r| r.version),
        Some(1),
        "and its write is the one stored"
    );
}

/// Writers keep reading and compare-and-setting one session while it is deleted: once the
/// delete has returned, the session stays gone (no write resurrects it).
async fn a_delete_is_never_undone_by_concurrent_writers<S: SessionStore>(
    store: Arc<S>,
    clock: &ManualClock,
) {
    for round in 0..20 {
        let record = sample_record(clock, "wxapp", "alice");
        let sid = record.sid;
        expect("insert", store.insert(record)).await;
        let mut writers = Vec::new();
        for _ in 0..4 {
            let store = Arc::clone(&store);
            writers.push(tokio::spawn(async move {
                // Read-modify-write until the session is gone.
                while let Ok(Some(current)) = store.get(&sid).await {
                    let mut next = (*current).clone();
                    next.confirmed_at += Duration::from_millis(1);
                    if let Ok(CasOutcome::Conflict { current: None }) =
                        store.compare_and_set(current.version, next).await
                    {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            }));
        }
        tokio::task::yield_now().await;
        assert!(
            expect("delete", store.delete(&sid)).await,
            "round {round}: the session existed"
        );
        for writer in writers {
            writer.await.expect("writer task");
        }
        assert!(
            expect("get after delete", store.get(&sid)).await.is_none(),
            "round {round}: a delete must never be undone by a concurrent compare-and-set"
        );
    }
}
