//! The moka store under real parallelism: a delete racing compare-and-sets on the same session
//! must be final — once `delete` has returned `true`, no concurrent writer brings the record back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use wechat_sessions::conformance::sample_record;
use wechat_sessions::{
    CasOutcome, Clock, ManualClock, MokaStore, SessionId, SessionRecord, SessionStore, StoreError,
};

/// The moka store's futures never wait: run one to completion on this thread.
fn now<T>(future: impl Future<Output = Result<T, StoreError>>) -> T {
    future
        .now_or_never()
        .expect("the moka store answers without waiting")
        .expect("no store error")
}

fn get(store: &MokaStore, sid: &SessionId) -> Option<Arc<SessionRecord>> {
    now(store.get(sid))
}

#[test]
fn a_delete_is_never_undone_by_concurrent_compare_and_sets() {
    const ROUNDS: usize = 300;
    const WRITERS: usize = 3;
    let clock = ManualClock::starting_now();
    let store = MokaStore::builder().clock(Arc::new(clock.clone())).build();
    for round in 0..ROUNDS {
        let record = sample_record(&clock, "wxapp", "alice");
        let sid = record.sid;
        now(store.insert(record));
        let deleted = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..WRITERS {
                s.spawn(|| {
                    // Read-modify-write until the session is gone; a writer that saw the delete
                    // reported before its read must not find the record.
                    loop {
                        let delete_done = deleted.load(Ordering::SeqCst);
                        let Some(current) = get(&store, &sid) else {
                            break;
                        };
                        assert!(
                            !delete_done,
                            "round {round}: the session came back after delete returned true"
                        );
                        let mut next = (*current).clone();
                        next.confirmed_at += Duration::from_millis(1);
                        // Stored or a conflict: either way, read again.
                        let _: CasOutcome = now(store.compare_and_set(current.version, next));
                    }
                });
            }
            s.spawn(|| {
                // Let the writers get going, then delete in the middle of their writes (a store
                // whose writes never land fails here instead of spinning for ever).
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while get(&store, &sid).is_some_and(|r| r.version < 2) {
                    assert!(std::time::Instant::now() < deadline, "no write ever landed");
                    std::hint::spin_loop();
                }
                assert!(now(store.delete(&sid)), "round {round}: delete found it");
                deleted.store(true, Ordering::SeqCst);
                for _ in 0..100 {
                    assert!(
                        get(&store, &sid).is_none(),
                        "round {round}: the session came back after delete returned true"
                    );
                }
            });
        });
        assert!(
            get(&store, &sid).is_none(),
            "round {round}: the session came back after delete returned true"
        );
    }
}

/// One user with 100,000 sessions: logout-all completes, ends exactly those sessions, and
/// another user's requests are answered while it runs (each operation holds an index lock for
/// O(1) work). Completion is asserted, not time. Break to see it fail: hold the user index's
/// lock across `delete_user`'s whole loop (no other write then finishes while it runs).
#[test]
fn logout_all_of_a_huge_user_completes_and_does_not_block_other_users() {
    const SESSIONS: usize = 100_000;
    let clock = ManualClock::starting_now();
    let store = MokaStore::builder()
        .clock(Arc::new(clock.clone()))
        .max_sessions_per_user(SESSIONS)
        .build();
    let heavy = sample_record(&clock, "wxapp", "heavy").user();
    for _ in 0..SESSIONS {
        now(store.insert(sample_record(&clock, "wxapp", "heavy")));
    }
    let other = now(store.insert(sample_record(&clock, "wxapp", "other")));
    let (started, done) = (AtomicBool::new(false), AtomicBool::new(false));
    let answered_during = std::thread::scope(|s| {
        let logout = s.spawn(|| {
            started.store(true, Ordering::SeqCst);
            let ended = now(store.delete_user(&heavy));
            done.store(true, Ordering::SeqCst);
            ended
        });
        while !started.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        // Another user's reads and logins go on while the logout-all runs: count those that
        // finished before it did.
        let mut answered_during = 0usize;
        while !done.load(Ordering::SeqCst) {
            assert!(get(&store, &other.sid).is_some());
            now(store.insert(sample_record(&clock, "wxapp", "newcomer")));
            if !done.load(Ordering::SeqCst) {
                answered_during += 1;
            }
        }
        assert_eq!(logout.join().unwrap(), SESSIONS);
        answered_during
    });
    assert!(
        answered_during >= 10,
        "only {answered_during} other requests finished during the logout-all"
    );
    assert_eq!(now(store.delete_user(&heavy)), 0, "every session ended");
    assert!(get(&store, &other.sid).is_some(), "the other user stays");
}

/// The per-user cap: a login beyond it ends the user's least recently confirmed session, and
/// a capped store stays correct as sessions come and go.
#[test]
fn the_per_user_cap_ends_the_least_recently_confirmed_session() {
    let clock = ManualClock::starting_now();
    let store = MokaStore::builder()
        .clock(Arc::new(clock.clone()))
        .max_sessions_per_user(3)
        .build();
    let mut sids = Vec::new();
    for _ in 0..3 {
        sids.push(now(store.insert(sample_record(&clock, "wxapp", "alice"))).sid);
        clock.advance(Duration::from_secs(1));
    }
    // The first session is used (refreshed): it is now the most recently confirmed.
    let first = get(&store, &sids[0]).unwrap();
    let mut refreshed = (*first).clone();
    refreshed.confirmed_at = clock.now();
    assert!(matches!(
        now(store.compare_and_set(first.version, refreshed)),
        CasOutcome::Stored(_)
    ));
    let fourth = now(store.insert(sample_record(&clock, "wxapp", "alice"))).sid;
    assert!(get(&store, &sids[0]).is_some(), "recently used: kept");
    assert!(
        get(&store, &sids[1]).is_none(),
        "least recently confirmed: ended"
    );
    assert!(get(&store, &sids[2]).is_some());
    assert!(get(&store, &fourth).is_some(), "the new login always stays");
    // After a logout there is room again: no one else is ended.
    assert!(now(store.delete(&sids[2])));
    let fifth = now(store.insert(sample_record(&clock, "wxapp", "alice"))).sid;
    for sid in [sids[0], fourth, fifth] {
        assert!(get(&store, &sid).is_some());
    }
}

/// A login racing a logout-all of the same user: whichever wins, the new session is indexed,
/// so the next logout-all ends it — no session escapes logout-all for good.
#[test]
fn a_login_racing_logout_all_never_escapes_the_next_one() {
    let clock = ManualClock::starting_now();
    let store = MokaStore::builder().clock(Arc::new(clock.clone())).build();
    let user = sample_record(&clock, "wxapp", "racer").user();
    for _ in 0..300 {
        now(store.insert(sample_record(&clock, "wxapp", "racer")));
        let fresh = sample_record(&clock, "wxapp", "racer");
        let sid = fresh.sid;
        std::thread::scope(|s| {
            s.spawn(|| now(store.insert(fresh)));
            s.spawn(|| now(store.delete_user(&user)));
        });
        now(store.delete_user(&user));
        assert!(
            get(&store, &sid).is_none(),
            "the racing login was ended by the next logout-all"
        );
    }
}
