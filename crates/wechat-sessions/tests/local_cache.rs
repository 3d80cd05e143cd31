//! `CachedStore`'s trust rules, with a shared store whose invalidation channel the test drives:
//! a copy that an invalidation overtook is not kept, and without a live channel no copy is
//! served past the maximum staleness.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use wechat_sessions::conformance::sample_record;
use wechat_sessions::{
    CachedStore, InvalidationSink, Invalidations, ManualClock, MokaStore, SessionId, SessionRecord,
    SessionStore, SharedStore, StoreError,
};

#[macro_use]
mod delegate;

/// A moka store posing as a shared one: the test holds the sink, and can hold a `get` back.
#[derive(Clone)]
struct Shared {
    inner: MokaStore,
    sink: Arc<Mutex<Option<Arc<dyn InvalidationSink>>>>,
    hold: Arc<Mutex<Option<Arc<Notify>>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared")
    }
}

impl Shared {
    fn sink(&self) -> Arc<dyn InvalidationSink> {
        self.sink.lock().unwrap().clone().expect("subscribed")
    }
}

impl SessionStore for Shared {
    async fn get(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let read = self.inner.get(sid).await;
        let hold = self.hold.lock().unwrap().take();
        if let Some(release) = hold {
            release.notified().await;
        }
        read
    }
    delegate!(inner: insert, compare_and_set, delete, delete_user, user_sessions);
}

impl SharedStore for Shared {
    async fn get_shared(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.get(sid).await
    }
    delegate!(inner: leases, values);
}

impl Invalidations for Shared {
    async fn subscribe(
        &self,
        sink: Arc<dyn InvalidationSink>,
        _heartbeat: Duration,
    ) -> Result<(), StoreError> {
        *self.sink.lock().unwrap() = Some(sink);
        Ok(())
    }
}

/// Whether `get` serves `sid` from the local copy, without asking the shared store: what the
/// trust rules decide, read through the store's own API.
fn served_locally(cached: &CachedStore<Shared>, sid: &SessionId, clock: &ManualClock) -> bool {
    match cached.get_now(sid, wechat_sessions::Clock::now(clock)) {
        Some(answer) => answer.unwrap().is_some(),
        None => false,
    }
}

async fn setup() -> (CachedStore<Shared>, Shared, ManualClock) {
    let clock = ManualClock::starting_now();
    let shared = Shared {
        inner: MokaStore::builder().clock(Arc::new(clock.clone())).build(),
        sink: Arc::default(),
        hold: Arc::default(),
    };
    let cached = CachedStore::builder(shared.clone())
        .clock(Arc::new(clock.clone()))
        .max_staleness(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    // The subscription vouches for copies read after the millisecond it started in.
    clock.advance(Duration::from_millis(1));
    (cached, shared, clock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_overtaken_by_an_invalidation_is_not_kept() {
    let (cached, shared, clock) = setup().await;
    let record = sample_record(&clock, "wxapp", "alice");
    let sid = record.sid;
    shared.inner.insert(record).await.unwrap();
    // A read leaves with the record; before it is back, another instance ends the session.
    let release = Arc::new(Notify::new());
    *shared.hold.lock().unwrap() = Some(Arc::clone(&release));
    let reading = {
        let cached = cached.clone();
        tokio::spawn(async move { cached.get(&sid).await })
    };
    while shared.hold.lock().unwrap().is_some() {
        tokio::task::yield_now().await;
    }
    shared.inner.delete(&sid).await.unwrap();
    shared.sink().invalidate(&sid);
    release.notify_one();
    let read = reading.await.unwrap().unwrap();
    assert!(read.is_some(), "the read itself saw the session");
    assert!(
        !served_locally(&cached, &sid, &clock),
        "but its copy is not kept"
    );
    assert!(cached.get(&sid).await.unwrap().is_none());
}

/// Break to see it fail: `trusted` in `local.rs` ignoring the heartbeats' age, or taking a copy
/// read in the recovery's own millisecond as read after it.
#[tokio::test]
async fn without_a_live_channel_no_copy_outlives_the_maximum_staleness() {
    let (cached, shared, clock) = setup().await;
    let record = sample_record(&clock, "wxapp", "bob");
    let sid = record.sid;
    cached.insert(record).await.unwrap();
    assert!(served_locally(&cached, &sid, &clock));

    // Heartbeats keep arriving: the copy stays trusted past the staleness.
    for _ in 0..4 {
        clock.advance(Duration::from_millis(900));
        {
            let sink = shared.sink();
            sink.heard(sink.stamp());
        }
    }
    assert!(
        served_locally(&cached, &sid, &clock),
        "a live channel vouches for the copy"
    );

    // Silence: once the staleness has passed, the copy is read again.
    clock.advance(Duration::from_millis(1_100));
    assert!(
        !served_locally(&cached, &sid, &clock),
        "a silent channel vouches for nothing"
    );
    assert!(cached.get(&sid).await.unwrap().is_some());
    assert!(served_locally(&cached, &sid, &clock), "re-read, and fresh");

    // An interruption: copies fetched before it are trusted only within the staleness, and
    // only copies fetched after the first message on the new subscription are trusted beyond.
    shared.sink().interrupted();
    clock.advance(Duration::from_millis(2_100));
    {
        let sink = shared.sink();
        sink.heard(sink.stamp());
    }
    assert!(!served_locally(&cached, &sid, &clock));
    // Read after the recovery (a read in its very millisecond may have started before it).
    clock.advance(Duration::from_millis(1));
    assert!(cached.get(&sid).await.unwrap().is_some());
    for _ in 0..4 {
        clock.advance(Duration::from_millis(900));
        {
            let sink = shared.sink();
            sink.heard(sink.stamp());
        }
    }
    assert!(served_locally(&cached, &sid, &clock));
}

#[tokio::test]
async fn a_late_channel_vouches_for_nothing() {
    let (cached, shared, clock) = setup().await;
    let record = sample_record(&clock, "wxapp", "erin");
    let sid = record.sid;
    cached.insert(record).await.unwrap();
    let sink = shared.sink();
    // Heartbeats come back steadily, but each was stamped 1.5 s before it arrived.
    let mut stamps = std::collections::VecDeque::new();
    for _ in 0..12 {
        stamps.push_back(sink.stamp());
        clock.advance(Duration::from_millis(500));
        if stamps.len() > 3 {
            sink.heard(stamps.pop_front().unwrap());
        }
    }
    assert!(
        !served_locally(&cached, &sid, &clock),
        "older than the staleness, and the channel is 1.5 s behind"
    );
    assert!(
        cached
            .get_now(&sid, wechat_sessions::Clock::now(&clock))
            .is_none(),
        "not served without a read"
    );
    // Caught up (the stamps in between were lost: copies read before now are suspect), then
    // heartbeats back at once vouch again for copies read since.
    sink.heard(sink.stamp());
    clock.advance(Duration::from_millis(1));
    assert!(cached.get(&sid).await.unwrap().is_some());
    for _ in 0..6 {
        clock.advance(Duration::from_millis(500));
        sink.heard(sink.stamp());
    }
    assert!(served_locally(&cached, &sid, &clock));
}

#[tokio::test]
async fn a_user_invalidation_drops_every_copy_of_the_user() {
    let (cached, shared, clock) = setup().await;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(
            cached
                .insert(sample_record(&clock, "wxapp", "frank"))
                .await
                .unwrap(),
        );
    }
    let user = sessions[0].user_id.clone();
    for session in &sessions {
        // Read again: each login here made the user's earlier copies suspect.
        assert!(cached.get(&session.sid).await.unwrap().is_some());
        assert!(
            cached
                .get_now(&session.sid, wechat_sessions::Clock::now(&clock))
                .is_some()
        );
    }
    // Ended elsewhere, all at once: one message for the user.
    for session in &sessions {
        shared.inner.delete(&session.sid).await.unwrap();
    }
    shared.sink().invalidate_user(&user);
    for session in &sessions {
        assert!(
            cached
                .get_now(&session.sid, wechat_sessions::Clock::now(&clock))
                .is_none()
        );
        assert!(cached.get(&session.sid).await.unwrap().is_none());
    }
}

/// A login over the per-user cap ends the user's least recently confirmed session in the shared
/// store; this instance, which made the login, stops serving its copy at once, before any
/// invalidation arrives (here none ever does).
#[tokio::test]
async fn a_login_over_the_cap_here_is_not_undone_by_a_local_copy() {
    let clock = ManualClock::starting_now();
    let shared = Shared {
        inner: MokaStore::builder()
            .clock(Arc::new(clock.clone()))
            .max_sessions_per_user(2)
            .build(),
        sink: Arc::default(),
        hold: Arc::default(),
    };
    let cached = CachedStore::builder(shared.clone())
        .clock(Arc::new(clock.clone()))
        .build()
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for age in [1, 2] {
        let mut record = sample_record(&clock, "wxapp", "carol");
        record.confirmed_at = wechat_sessions::Clock::now(&clock) - Duration::from_secs(age);
        sessions.push(cached.insert(record).await.unwrap().sid);
    }
    let other = cached
        .insert(sample_record(&clock, "wxapp", "dave"))
        .await
        .unwrap()
        .sid;
    let oldest = sessions[1];
    assert!(cached.get(&oldest).await.unwrap().is_some());
    let newest = cached
        .insert(sample_record(&clock, "wxapp", "carol"))
        .await
        .unwrap()
        .sid;
    assert!(
        shared.inner.get(&oldest).await.unwrap().is_none(),
        "the cap ended it"
    );
    assert!(
        cached.get(&oldest).await.unwrap().is_none(),
        "and it is not served here"
    );
    for sid in [sessions[0], newest, other] {
        assert!(cached.get(&sid).await.unwrap().is_some());
    }
}

/// A user invalidation leaves other users' copies alone: they are still served without a read.
/// Break to see it fail: `user_bucket` answering a constant (every user's copies re-read on
/// anyone's logout-all).
#[tokio::test]
async fn a_user_invalidation_leaves_other_users_copies_served() {
    let (cached, shared, clock) = setup().await;
    let frank = cached
        .insert(sample_record(&clock, "wxapp", "frank"))
        .await
        .unwrap();
    let others: Vec<_> = ["dave", "erin", "gina"]
        .into_iter()
        .map(|openid| sample_record(&clock, "wxapp", openid))
        .collect();
    let mut sids = Vec::new();
    for record in others {
        sids.push(cached.insert(record).await.unwrap().sid);
    }
    for sid in &sids {
        assert!(cached.get(sid).await.unwrap().is_some());
    }
    shared.sink().invalidate_user(&frank.user_id);
    assert!(
        !served_locally(&cached, &frank.sid, &clock),
        "frank's copy is read again"
    );
    for sid in &sids {
        assert!(
            served_locally(&cached, sid, &clock),
            "another user's copy is still served"
        );
    }
}

/// A copy read in the very millisecond the channel recovered may have been read before the
/// subscription was back: it is trusted only within the staleness, however live the channel is
/// afterwards. Break to see it fail: `trusted` comparing `fetched_ms >= recovered`.
#[tokio::test]
async fn a_copy_read_in_the_recoverys_millisecond_is_not_vouched_for() {
    let (cached, shared, clock) = setup().await;
    let record = sample_record(&clock, "wxapp", "hank");
    let sid = record.sid;
    shared.inner.insert(record).await.unwrap();
    let sink = shared.sink();
    sink.interrupted();
    clock.advance(Duration::from_millis(10));
    sink.heard(sink.stamp());
    assert!(
        cached.get(&sid).await.unwrap().is_some(),
        "read in that millisecond"
    );
    for _ in 0..3 {
        clock.advance(Duration::from_millis(900));
        sink.heard(sink.stamp());
    }
    assert!(
        !served_locally(&cached, &sid, &clock),
        "past the staleness: read again"
    );
    assert!(cached.get(&sid).await.unwrap().is_some());
    for _ in 0..3 {
        clock.advance(Duration::from_millis(900));
        sink.heard(sink.stamp());
    }
    assert!(
        served_locally(&cached, &sid, &clock),
        "a copy read after it is vouched for"
    );
}

/// Heartbeats come back every 500 ms; one gap longer than the 1 s silence means some were lost
/// on the way, and invalidations with them: copies read before it are vouched for no more. An
/// interruption reported by the subscriber does the same, with no gap at all. Break to see it
/// fail: `heard` not comparing the gap (`>` as `==`, `||` as `&&`), or `interrupted` doing
/// nothing.
#[tokio::test]
async fn lost_heartbeats_and_interruptions_withdraw_the_vouching() {
    for disturbance in ["gap", "interruption"] {
        let (cached, shared, clock) = setup().await;
        let record = sample_record(&clock, "wxapp", "ivan");
        let sid = record.sid;
        shared.inner.insert(record).await.unwrap();
        let sink = shared.sink();
        let beat = |times: u32, every: u64| {
            for _ in 0..times {
                clock.advance(Duration::from_millis(every));
                sink.heard(sink.stamp());
            }
        };
        beat(1, 500);
        assert!(cached.get(&sid).await.unwrap().is_some());
        beat(6, 500);
        assert!(
            served_locally(&cached, &sid, &clock),
            "{disturbance}: vouched for"
        );
        match disturbance {
            // 1.5 s between two heartbeats back: the one in between was lost.
            "gap" => beat(1, 1_500),
            _ => {
                sink.interrupted();
                beat(1, 500);
            }
        }
        beat(2, 500);
        assert!(
            !served_locally(&cached, &sid, &clock),
            "{disturbance}: read before it, past the staleness"
        );
        // A steady channel afterwards vouches for copies read since.
        assert!(cached.get(&sid).await.unwrap().is_some());
        beat(6, 500);
        assert!(
            served_locally(&cached, &sid, &clock),
            "{disturbance}: vouched for again"
        );
    }
}

/// Break to see it fail: `hit_counts` answering a constant.
#[tokio::test]
async fn hits_and_misses_are_counted() {
    let (cached, shared, clock) = setup().await;
    let record = sample_record(&clock, "wxapp", "judy");
    let sid = record.sid;
    shared.inner.insert(record).await.unwrap();
    assert_eq!(cached.hit_counts(), (0, 0));
    assert!(cached.get(&sid).await.unwrap().is_some());
    assert!(cached.get(&sid).await.unwrap().is_some());
    assert!(cached.get(&sid).await.unwrap().is_some());
    assert_eq!(cached.hit_counts(), (2, 1));
    let shown = format!("{cached:?}");
    assert!(shown.contains("CachedStore"), "{shown}");
}
