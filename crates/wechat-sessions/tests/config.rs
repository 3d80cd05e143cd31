//! The cache's bounds and settings: LRU eviction at capacity, absurd durations capped, the
//! refresh configuration made safe at build.

use std::sync::Arc;
use std::time::Duration;

use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant};
use wechat_oauth::{AppId, AuthCode};
use wechat_sessions::conformance::sample_record;
use wechat_sessions::{
    Clock, ManualClock, MokaStore, SessionConfig, SessionError, SessionId, SessionManager,
    SessionRecord, SessionStore, UserId,
};

mod common;

use common::*;

/// A store with room for two sessions, on a clock the test drives; every insert and read
/// settles moka's queue, so the LRU order is the order of the calls.
struct TwoSessions {
    clock: ManualClock,
    store: MokaStore,
}

impl TwoSessions {
    async fn new() -> Self {
        let clock = ManualClock::new(std::time::SystemTime::now());
        let store = MokaStore::builder()
            .max_sessions(2)
            .clock(Arc::new(clock.clone()))
            .build();
        Self { clock, store }
    }

    /// Inserts a session for `openid` and settles moka's queue.
    async fn insert(&self, openid: &str) -> SessionId {
        let record = sample_record(&self.clock, "wx_lru", openid);
        let sid = self.store.insert(record).await.unwrap().sid;
        self.store.run_pending_tasks();
        sid
    }

    /// Reads `sids` in order (each must be there) and settles moka's queue.
    async fn read(&self, sids: &[SessionId]) {
        for sid in sids {
            assert!(self.store.get(sid).await.unwrap().is_some());
        }
        self.store.run_pending_tasks();
    }

    async fn holds(&self, sid: &SessionId) -> bool {
        self.store.get(sid).await.unwrap().is_some()
    }
}

/// Warm reads are answered from the store's copy of what it read last, without telling moka; at
/// least once a minute a read goes to moka again, so a session in use keeps its place in the LRU
/// order (and its idle timer) however it is read.
#[tokio::test]
async fn a_warm_session_read_from_the_recent_copy_keeps_its_lru_place() {
    let s = TwoSessions::new().await;
    let (a, b) = (s.insert("a").await, s.insert("b").await);
    // Both read (moka hears of it: a, then b, so a is the least recently used) ...
    s.read(&[a, b]).await;
    // ... then a keeps being read, b is not. Within the minute a's reads are answered from
    // the copy; after it, the next read reaches moka and a moves behind b.
    for _ in 0..3 {
        s.clock.advance(Duration::from_secs(30));
        s.read(&[a]).await;
    }
    let c = s.insert("c").await;
    assert!(!s.holds(&b).await, "b was the least recently used");
    assert!(s.holds(&a).await, "a, in use, was kept");
    assert!(s.holds(&c).await);
}

/// An evicted session is gone at once, also from the copy of what was read last.
#[tokio::test]
async fn an_evicted_session_is_not_served_from_the_recent_copy() {
    let s = TwoSessions::new().await;
    let (a, b) = (s.insert("a").await, s.insert("b").await);
    // b read first (least recently used) and still within its copy's minute when evicted.
    s.read(&[b, a]).await;
    s.insert("c").await;
    assert!(!s.holds(&b).await, "b was evicted");
    assert!(s.holds(&a).await);
}

/// A stamp taken before a read says whether what was read is still the stored record: until any
/// write of the session (compare-and-set, delete), and never past the touch interval, so the
/// middleware that keeps the record beside a token reads again in time for moka to hear of it.
#[tokio::test]
async fn a_stamped_read_is_current_until_the_session_is_written() {
    let s = TwoSessions::new().await;
    let a = s.insert("a").await;
    let stamped = async || {
        let now = s.clock.now();
        let stamp = s
            .store
            .read_stamp(&a, now)
            .expect("MokaStore stamps its reads");
        let record = s.store.get_now(&a, now).expect("in memory").unwrap();
        (stamp, record)
    };
    let (stamp, record) = stamped().await;
    let record = record.expect("stored");
    assert!(s.store.still_current(&stamp, s.clock.now()));
    let minute = Duration::from_secs(60);
    assert!(
        s.store
            .still_current(&stamp, s.clock.now() + minute - Duration::from_secs(1))
    );
    assert!(
        !s.store.still_current(&stamp, s.clock.now() + minute),
        "moka must hear of reads"
    );

    let mut newer = (*record).clone();
    newer.confirmed_at += Duration::from_secs(1);
    let version = newer.version;
    s.store.compare_and_set(version, newer).await.unwrap();
    assert!(
        !s.store.still_current(&stamp, s.clock.now()),
        "a write makes it stale"
    );

    let (stamp, record) = stamped().await;
    assert_eq!(record.expect("stored").version, version + 1);
    assert!(s.store.still_current(&stamp, s.clock.now()));
    s.store.delete(&a).await.unwrap();
    assert!(
        !s.store.still_current(&stamp, s.clock.now()),
        "a delete makes it stale"
    );
}

/// Eviction is a write too: the evicted session's stamp goes stale at once.
#[tokio::test]
async fn an_evicted_sessions_stamp_goes_stale() {
    let s = TwoSessions::new().await;
    let (a, b) = (s.insert("a").await, s.insert("b").await);
    s.read(&[b, a]).await;
    let stamp = s.store.read_stamp(&b, s.clock.now()).unwrap();
    assert!(s.store.still_current(&stamp, s.clock.now()));
    s.insert("c").await;
    assert!(!s.holds(&b).await, "b was evicted");
    assert!(!s.store.still_current(&stamp, s.clock.now()));
}

#[tokio::test]
async fn capacity_eviction_drops_the_least_recently_used_sessions() {
    let (mock, clock, client) = start_mock(MockConfig::default()).await;
    let store = MokaStore::builder()
        .max_sessions(10)
        .clock(Arc::new(clock.clone()))
        .build();
    let cache = SessionManager::builder(client).store(store.clone()).build();
    let h = Harness { mock, clock, cache };
    let mut sessions: Vec<Arc<SessionRecord>> = Vec::new();
    for i in 0..15 {
        if i == 10 {
            // The oldest session is used again just before the store overflows: LRU keeps it
            // (FIFO would not).
            h.cache.session(&sessions[0].sid).await.unwrap();
            store.run_pending_tasks();
        }
        sessions.push(
            h.login_as(MockGrant {
                openid: Some("alice".into()),
                ..Default::default()
            })
            .await,
        );
        store.run_pending_tasks();
    }
    assert_eq!(store.session_count(), 10, "bounded at max_sessions");
    for old in &sessions[1..6] {
        assert!(
            matches!(h.cache.session(&old.sid).await, Err(SessionError::NotFound)),
            "the least recently used sessions were evicted"
        );
    }
    for recent in std::iter::once(&sessions[0]).chain(&sessions[6..]) {
        h.cache
            .session(&recent.sid)
            .await
            .expect("recent sessions kept");
    }
    let user = UserId::default_for(
        &AppId::new(h.mock.appid()),
        &wechat_oauth::OpenId::new("alice"),
        None,
    );
    assert_eq!(
        h.cache.logout_all(&user).await.unwrap(),
        10,
        "the index forgot evicted sessions"
    );
}

#[tokio::test]
async fn absurd_durations_are_capped_instead_of_panicking() {
    let h = harness_with(MockConfig::default(), |b| {
        b.config(
            SessionConfig::default()
                .refresh_horizon(Duration::MAX)
                .mini_program_session_ttl(Duration::MAX)
                .failure_cooldown(Duration::MAX),
        )
    })
    .await;
    let session = h.login().await;
    let century = Duration::from_secs(99 * 365 * 86_400);
    assert!(session.expires_at > h.clock.now() + century);
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let mini = h.cache.login_mini_program(&code).await.unwrap();
    assert!(mini.expires_at > h.clock.now() + century);
    h.advance(EXPIRY);
    h.mock.inject(Endpoint::RefreshToken, Fault::ErrCode(-1), 3);
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::Unavailable { .. })
    ));
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::Unavailable { .. })
    ));
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 3, "cooling down");
}

#[tokio::test]
async fn the_refresh_configuration_is_made_safe_at_build() {
    let (_mock, clock, client) = start_mock(MockConfig::default()).await;
    let record = wechat_sessions::conformance::sample_record(&clock, "wxapp", "alice");
    for (window, jitter, expected_jitter) in [
        (Duration::MAX, f64::NAN, 0.5),
        (Duration::from_secs(7200), 7.0, 1.0),
        (Duration::from_secs(600), -3.0, 0.0),
        (Duration::from_secs(600), f64::INFINITY, 1.0),
    ] {
        let cache = SessionManager::builder(client.clone())
            .config(SessionConfig::default().refresh_window(window, jitter))
            .build();
        assert_eq!(cache.config().refresh_jitter, expected_jitter);
        assert!(cache.config().refresh_window <= Duration::from_secs(3600));
        // A token with 2 h left is not due with any (capped) window.
        assert!(!cache.needs_upstream(&record), "{window:?} {jitter}");
    }
}

/// One clock runs everything: an app added with a client built on another clock (here the
/// system's) runs on the manager's, the first client's. Break to see it fail: `app` keeping
/// the client as given (its expiries then computed on the wall clock while the sessions age on
/// the test's).
#[tokio::test]
async fn every_app_runs_on_the_first_clients_clock() {
    let clock = ManualClock::new(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 30));
    let first = wechat_oauth::Client::builder("wx_first_app_0001", "secret-one")
        .clock(Arc::new(clock.clone()))
        .build()
        .unwrap();
    let second = wechat_oauth::Client::builder("wx_second_app_001", "secret-two")
        .build()
        .unwrap();
    let manager = SessionManager::builder(first).app(second).build();
    let added = manager
        .client_for(&AppId::new("wx_second_app_001"))
        .unwrap();
    assert_eq!(added.clock().now(), clock.now());
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        added.clock().now(),
        clock.now(),
        "the same clock, not a copy"
    );
    assert_eq!(manager.clock().now(), clock.now());
}
