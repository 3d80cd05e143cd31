//! A refresh racing other writers of the same session: compare-and-set conflicts with newer and
//! older competitors, a logout during a refresh, another instance rotating the refresh token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wechat_mock::{Endpoint, MockConfig};
use wechat_oauth::{Client, ErrCode};
use wechat_sessions::{
    CasOutcome, Clock, Credentials, ManualClock, MokaStore, SessionError, SessionId,
    SessionManager, SessionRecord, SessionStore, SharedStore, StoreError,
};

mod common;
#[macro_use]
mod delegate;

use common::*;

/// A store that lets another writer win the race for the first compare-and-set.
struct RacingStore {
    inner: MokaStore,
    competitor: Mutex<Option<SessionRecord>>,
    /// A logout that lands just before the next compare-and-set: after the flight read the
    /// record and asked WeChat, before it writes back.
    logout_before_write: Mutex<Option<SessionId>>,
}

impl SessionStore for RacingStore {
    delegate!(inner: get, insert, delete, delete_user, user_sessions);
    async fn compare_and_set(
        &self,
        expected: u64,
        record: SessionRecord,
    ) -> Result<CasOutcome, StoreError> {
        let logout = self.logout_before_write.lock().unwrap().take();
        if let Some(sid) = logout {
            assert!(
                self.inner.delete(&sid).await?,
                "the logout found the session"
            );
        }
        let competitor = self.competitor.lock().unwrap().take();
        if let Some(competitor) = competitor {
            let version = competitor.version;
            assert!(matches!(
                self.inner.compare_and_set(version, competitor).await?,
                CasOutcome::Stored(_)
            ));
        }
        self.inner.compare_and_set(expected, record).await
    }
}

impl SharedStore for RacingStore {
    delegate!(inner: shared);
}

async fn racing_harness() -> Harness<Arc<RacingStore>> {
    let (mock, clock, client) = start_mock(MockConfig::default()).await;
    let store = Arc::new(RacingStore {
        inner: MokaStore::builder().clock(Arc::new(clock.clone())).build(),
        competitor: Mutex::new(None),
        logout_before_write: Mutex::new(None),
    });
    let cache = SessionManager::builder(client).store(store).build();
    Harness { mock, clock, cache }
}

#[tokio::test]
async fn a_compare_and_set_conflict_keeps_a_newer_competitor() {
    let h = racing_harness().await;
    let session = h.login().await;
    h.advance(EXPIRY);
    // Another instance refreshed first, to a token that lives longer than ours will.
    let mut theirs = (*session).clone();
    theirs.credentials = Credentials::OAuth {
        access_token: wechat_oauth::AccessToken::new("AT-OTHER-INSTANCE"),
        access_token_expires_at: h.clock.now() + 3 * HOUR,
        refresh_token: wechat_oauth::RefreshToken::new("RT-OTHER-INSTANCE"),
    };
    *h.cache.store().competitor.lock().unwrap() = Some(theirs);
    let record = h.cache.session(&session.sid).await.unwrap();
    assert_eq!(
        access_token(&record),
        "AT-OTHER-INSTANCE",
        "the newer record wins"
    );
    assert_eq!(record.version, 1);
}

#[tokio::test]
async fn a_compare_and_set_conflict_applies_our_refresh_onto_an_older_competitor() {
    let h = racing_harness().await;
    let session = h.login().await;
    h.advance(EXPIRY);
    // Another writer touched the record (a check) without refreshing it.
    let mut theirs = (*session).clone();
    theirs.confirmed_at = h.clock.now();
    let confirmed = theirs.confirmed_at;
    *h.cache.store().competitor.lock().unwrap() = Some(theirs);
    let record = h.cache.session(&session.sid).await.unwrap();
    assert_ne!(
        access_token(&record),
        access_token(&session),
        "our refresh applied"
    );
    assert_eq!(record.version, 2, "written over the competitor's version");
    assert!(record.confirmed_at >= confirmed);
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 1);
}

#[tokio::test]
async fn a_logout_during_a_refresh_is_not_undone() {
    let h = racing_harness().await;
    let session = h.login().await;
    h.advance(EXPIRY);
    // The user logs out while the refresh is in flight: after the flight read the record and
    // WeChat answered, just before the write-back.
    *h.cache.store().logout_before_write.lock().unwrap() = Some(session.sid);
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::NotFound)
    ));
    assert_eq!(
        h.mock.calls(Endpoint::RefreshToken),
        1,
        "the refresh happened"
    );
    assert!(
        h.cache
            .store()
            .logout_before_write
            .lock()
            .unwrap()
            .is_none(),
        "the logout ran between the read and the write"
    );
    assert!(
        h.cache.store().get(&session.sid).await.unwrap().is_none(),
        "the refresh's write-back did not bring the session back"
    );
}

#[tokio::test]
async fn a_refused_token_is_refreshed_even_if_a_check_moved_the_version_meanwhile() {
    let h = harness().await;
    let session = h.login().await;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (cache, seen, sid) = (h.cache.clone(), calls.clone(), session.sid);
    let profile = h
        .cache
        .call_with_token(&session.sid, move |token, _openid| {
            let (cache, seen) = (cache.clone(), seen.clone());
            async move {
                let first = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(token.secret().to_owned());
                    seen.len() == 1
                };
                if !first {
                    return Ok("profile");
                }
                // Meanwhile another request's /sns/auth check confirmed the grant: a new
                // version, the same access token.
                let current = cache.store().get(&sid).await.unwrap().unwrap();
                let mut confirmed = (*current).clone();
                confirmed.confirmed_at += Duration::from_secs(1);
                assert!(matches!(
                    cache
                        .store()
                        .compare_and_set(current.version, confirmed)
                        .await
                        .unwrap(),
                    CasOutcome::Stored(_)
                ));
                Err(wechat_oauth::ApiError::new(ErrCode::INVALID_CREDENTIAL, "not latest").into())
            }
        })
        .await
        .expect("refreshed and called again");
    assert_eq!(profile, "profile");
    assert_eq!(calls.lock().unwrap().len(), 2);
    assert_eq!(
        h.mock.calls(Endpoint::RefreshToken),
        1,
        "the refused token was refreshed, not served again as is"
    );
}

/// A store where, once armed, the n-th `get` lets "another instance" refresh the session (with
/// the refresh token it just read) before answering with what it read.
struct InterleavingStore {
    inner: MokaStore,
    other_instance: Client,
    clock: ManualClock,
    gets_until_interleave: Mutex<Option<usize>>,
}

impl InterleavingStore {
    fn interleave_now(&self) -> bool {
        let mut armed = self.gets_until_interleave.lock().unwrap();
        match armed.as_mut() {
            Some(1) => {
                *armed = None;
                true
            }
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        }
    }
}

impl SessionStore for InterleavingStore {
    async fn get(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let read = self.inner.get(sid).await?;
        if let Some(record) = read.as_ref().filter(|_| self.interleave_now()) {
            let used = wechat_oauth::RefreshToken::new(refresh_token(record));
            let grant = self.other_instance.refresh_token(&used).await.unwrap();
            let next = record.with_refresh(&grant, self.clock.now());
            assert!(matches!(
                self.inner.compare_and_set(record.version, next).await?,
                CasOutcome::Stored(_)
            ));
        }
        Ok(read)
    }
    delegate!(inner: insert, compare_and_set, delete, delete_user, user_sessions);
}

/// A flight's shared read interleaves too.
impl SharedStore for InterleavingStore {
    async fn get_shared(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.get(sid).await
    }
    delegate!(inner: leases, values);
}

#[tokio::test]
async fn a_refresh_token_refused_after_another_instance_rotated_it_keeps_the_session() {
    let config = MockConfig {
        rotate_refresh_tokens: true,
        ..MockConfig::default()
    };
    let (mock, clock, client) = start_mock(config).await;
    let store = Arc::new(InterleavingStore {
        inner: MokaStore::builder().clock(Arc::new(clock.clone())).build(),
        other_instance: client.clone(),
        clock: clock.clone(),
        gets_until_interleave: Mutex::new(None),
    });
    let cache = SessionManager::builder(client).store(store.clone()).build();
    let h = Harness { mock, clock, cache };
    let session = h.login().await;
    h.advance(EXPIRY);
    // get 1: `session` reads the expired record; get 2: the flight reads it; get 3: holding
    // the lease, the flight re-reads it from the shared store, and just then another instance
    // (one that ignores leases) refreshes, rotating the refresh token. Our refresh then
    // presents the old refresh token and WeChat answers 40030.
    *store.gets_until_interleave.lock().unwrap() = Some(3);
    let record = h
        .cache
        .session(&session.sid)
        .await
        .expect("the other instance's refresh keeps the session alive");
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 2);
    assert_ne!(refresh_token(&record), refresh_token(&session));
    assert!(
        h.cache.store().get(&session.sid).await.unwrap().is_some(),
        "not deleted"
    );
    h.advance(EXPIRY);
    h.cache
        .session(&session.sid)
        .await
        .expect("and it keeps refreshing");
}
