//! The moka store under real parallelism: a delete racing compare-and-sets on the same session
//! must be final — once `delete` has returned `true`, no concurrent writer brings the record back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::FutureExt;
use wechat_token_cache::conformance::sample_record;
use wechat_token_cache::{
    CasOutcome, ManualClock, MokaStore, SessionId, SessionRecord, StoreError, TokenStore,
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
                // Let the writers get going, then delete in the middle of their writes.
                while get(&store, &sid).is_some_and(|r| r.version < 2) {
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
