//! The refresh coordinator and idempotent login against the fake WeChat, on a manual clock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant, MockWeChat};
use wechat_oauth::{AppId, AppSecret, AuthCode, Client, ErrCode, Lang, RetryPolicy};
use wechat_token_cache::{
    CallError, CasOutcome, Clock, Credentials, GracePolicy, LoginBinding, LoginError, LoginFlow,
    ManualClock, MokaStore, SessionCache, SessionCacheBuilder, SessionError, SessionId,
    SessionRecord, SessionStore, StoreError, UserId,
};

const HOUR: Duration = Duration::from_secs(3600);
const EXPIRY: Duration = Duration::from_secs(7200);

struct Harness<S: SessionStore = MokaStore> {
    mock: MockWeChat,
    clock: ManualClock,
    cache: SessionCache<S>,
}

async fn start_mock(config: MockConfig) -> (MockWeChat, ManualClock, Client) {
    let mock = MockWeChat::start(config)
        .await
        .expect("start the fake WeChat");
    let clock = ManualClock::new(mock.now());
    let client = Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
        .api_base(mock.base_url())
        .clock(Arc::new(clock.clone()))
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        })
        .build()
        .unwrap();
    (mock, clock, client)
}

async fn harness_with(
    config: MockConfig,
    build: impl FnOnce(SessionCacheBuilder<MokaStore>) -> SessionCacheBuilder<MokaStore>,
) -> Harness {
    let (mock, clock, client) = start_mock(config).await;
    let cache = build(SessionCache::builder(client)).build();
    Harness { mock, clock, cache }
}

async fn harness() -> Harness {
    harness_with(MockConfig::default(), |b| b).await
}

impl<S: SessionStore> Harness<S> {
    /// Moves our clock and WeChat's together.
    fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.mock.advance(by);
    }

    async fn login(&self) -> Arc<SessionRecord> {
        self.login_as(MockGrant::default()).await
    }

    async fn login_as(&self, grant: MockGrant) -> Arc<SessionRecord> {
        let code = self.mock.mint_code(grant);
        self.cache.login(&AuthCode::new(code)).await.expect("login")
    }
}

fn access_token(record: &SessionRecord) -> String {
    record.access_token().unwrap().0.secret().to_owned()
}

fn refresh_token(record: &SessionRecord) -> String {
    match &record.credentials {
        Credentials::OAuth { refresh_token, .. } => refresh_token.secret().to_owned(),
        _ => panic!("not an OAuth session"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_callers_on_an_expired_session_cause_one_refresh() {
    let h = harness().await;
    let session = h.login().await;
    h.advance(EXPIRY + Duration::from_secs(1));

    let mut callers = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let (cache, sid) = (h.cache.clone(), session.sid);
        callers.push(tokio::spawn(async move { cache.session(&sid).await }));
    }
    let mut tokens = HashSet::new();
    for caller in callers {
        let record = caller
            .await
            .unwrap()
            .expect("every caller gets the session");
        tokens.insert(access_token(&record));
    }
    assert_eq!(
        h.mock.calls(Endpoint::RefreshToken),
        1,
        "exactly one upstream refresh"
    );
    assert_eq!(tokens.len(), 1, "every caller got the refreshed token");
    assert!(
        !tokens.contains(&access_token(&session)),
        "the expired token was replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_expiring_together_refresh_once_each_spread_by_jitter() {
    let h = harness().await;
    let mut sids = Vec::new();
    for _ in 0..1_000 {
        sids.push(h.login().await.sid);
    }
    // Walk from well before the refresh window to past expiry, 30 s at a time, with every
    // session making a request at each step.
    h.advance(EXPIRY - Duration::from_secs(11 * 60));
    let mut per_step = Vec::new();
    let mut before = 0;
    for _ in 0..24 {
        h.advance(Duration::from_secs(30));
        for sid in &sids {
            h.cache.session(sid).await.expect("session served");
        }
        let now = h.mock.calls(Endpoint::RefreshToken);
        per_step.push(now - before);
        before = now;
    }
    assert_eq!(
        before, 1_000,
        "exactly one refresh per session: {per_step:?}"
    );
    let busy_steps = per_step.iter().filter(|&&n| n > 0).count();
    assert!(busy_steps >= 5, "refreshes spread over time: {per_step:?}");
    assert!(
        per_step.iter().all(|&n| n < 500),
        "no step refreshes most sessions at once: {per_step:?}"
    );
}

#[tokio::test]
async fn a_revoked_grant_deletes_the_session() {
    let h = harness().await;
    let session = h.login().await;
    h.mock.revoke(session.openid.as_str());
    h.advance(EXPIRY);
    match h.cache.session(&session.sid).await {
        Err(SessionError::Reauthorize { errcode }) => {
            assert_eq!(errcode, ErrCode::INVALID_REFRESH_TOKEN)
        }
        other => panic!("expected reauthorize, got {other:?}"),
    }
    assert!(h.cache.store().get(&session.sid).await.unwrap().is_none());
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::NotFound)
    ));
}

/// Every "grant gone" answer ends the session, from a refresh and from an `/sns/auth` check.
#[tokio::test]
async fn each_grant_gone_errcode_ends_the_session() {
    for errcode in [42002, 40030, 40003, 50001] {
        let h = harness().await;
        let session = h.login().await;
        h.advance(EXPIRY);
        h.mock
            .inject(Endpoint::RefreshToken, Fault::ErrCode(errcode), 1);
        match h.cache.session(&session.sid).await {
            Err(SessionError::Reauthorize { errcode: got }) => assert_eq!(got.0, errcode),
            other => panic!("refresh answered {errcode}: expected reauthorize, got {other:?}"),
        }
        assert!(
            h.cache.store().get(&session.sid).await.unwrap().is_none(),
            "{errcode}"
        );
    }
    let h = harness_with(MockConfig::default(), |b| {
        b.check_interval(Some(Duration::from_secs(60)))
    })
    .await;
    let session = h.login().await;
    h.advance(Duration::from_secs(61));
    h.mock.inject(Endpoint::Auth, Fault::ErrCode(40003), 1);
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::Reauthorize { .. })
    ));
    assert!(
        h.cache.store().get(&session.sid).await.unwrap().is_none(),
        "check: 40003"
    );
}

#[tokio::test]
async fn system_busy_during_refresh_keeps_the_session_until_a_later_success() {
    let h = harness().await;
    let session = h.login().await;

    // Inside the refresh window, token still valid: WeChat busy through every retry.
    h.advance(EXPIRY - Duration::from_secs(60));
    h.mock.inject(Endpoint::RefreshToken, Fault::ErrCode(-1), 3);
    let served = h
        .cache
        .session(&session.sid)
        .await
        .expect("still-valid token served");
    assert_eq!(access_token(&served), access_token(&session));
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 3, "bounded retries");

    // During the cooldown the failure is reused: no upstream call per request.
    h.cache.session(&session.sid).await.unwrap();
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 3);

    // Expired and WeChat still failing: unavailable, but not logged out.
    h.advance(Duration::from_secs(120));
    h.mock
        .inject(Endpoint::RefreshToken, Fault::HttpStatus(502), 3);
    match h.cache.session(&session.sid).await {
        Err(SessionError::Unavailable { retry_after }) => assert!(retry_after > Duration::ZERO),
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(
        h.cache.store().get(&session.sid).await.unwrap().is_some(),
        "record kept"
    );

    // WeChat recovers: the next request after the cooldown refreshes.
    h.advance(Duration::from_secs(60));
    let refreshed = h.cache.session(&session.sid).await.expect("later success");
    assert!(refreshed.access_token_remaining(h.clock.now()).unwrap() > HOUR);
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 7);
}

#[tokio::test]
async fn timeouts_and_bad_bodies_are_transient_too() {
    let h = harness().await;
    let session = h.login().await;
    h.advance(EXPIRY);
    h.mock.inject(
        Endpoint::RefreshToken,
        Fault::Body("<html>busy</html>".into()),
        1,
    );
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::Unavailable { .. })
    ));
    h.advance(Duration::from_secs(10));
    h.mock
        .inject(Endpoint::RefreshToken, Fault::ErrCode(45011), 1);
    match h.cache.session(&session.sid).await {
        Err(SessionError::Unavailable { retry_after }) => {
            assert_eq!(
                retry_after,
                Duration::from_secs(60),
                "quota: retry after a minute"
            )
        }
        other => panic!("expected unavailable, got {other:?}"),
    }
    assert!(h.cache.store().get(&session.sid).await.unwrap().is_some());
}

#[tokio::test]
async fn a_rotated_refresh_token_is_stored_and_used() {
    let config = MockConfig {
        rotate_refresh_tokens: true,
        ..MockConfig::default()
    };
    let h = harness_with(config, |b| b).await;
    let session = h.login().await;
    h.advance(EXPIRY);
    let first = h.cache.session(&session.sid).await.unwrap();
    assert_ne!(
        refresh_token(&first),
        refresh_token(&session),
        "rotated token stored"
    );
    h.advance(EXPIRY);
    let second = h
        .cache
        .session(&session.sid)
        .await
        .expect("the rotated token works");
    assert_ne!(refresh_token(&second), refresh_token(&first));
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 2);
}

/// A store that lets another writer win the race for the first compare-and-set.
struct RacingStore {
    inner: MokaStore,
    competitor: Mutex<Option<SessionRecord>>,
    /// A logout that lands just before the next compare-and-set: after the flight read the
    /// record and asked WeChat, before it writes back.
    logout_before_write: Mutex<Option<SessionId>>,
}

impl SessionStore for RacingStore {
    async fn get(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.inner.get(sid).await
    }
    async fn insert(&self, record: SessionRecord) -> Result<Arc<SessionRecord>, StoreError> {
        self.inner.insert(record).await
    }
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
    async fn delete(&self, sid: &SessionId) -> Result<bool, StoreError> {
        self.inner.delete(sid).await
    }
    async fn delete_user(&self, user: &UserId) -> Result<usize, StoreError> {
        self.inner.delete_user(user).await
    }
}

async fn racing_harness() -> Harness<Arc<RacingStore>> {
    let (mock, clock, client) = start_mock(MockConfig::default()).await;
    let store = Arc::new(RacingStore {
        inner: MokaStore::builder().clock(Arc::new(clock.clone())).build(),
        competitor: Mutex::new(None),
        logout_before_write: Mutex::new(None),
    });
    let cache = SessionCache::builder(client).store(store).build();
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

const REQUEST_ID: &str = "retry-0123456789abcdef";

fn by_request(id: &str) -> LoginBinding<'_> {
    LoginBinding::new(LoginFlow::Code).proof(id)
}

fn is_code_used(outcome: Result<Arc<SessionRecord>, LoginError>) -> bool {
    matches!(outcome, Err(LoginError::InvalidCode { errcode }) if errcode == ErrCode::CODE_USED)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_submitted_code_is_exchanged_once_and_gives_the_same_session() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let mut submits = Vec::new();
    for _ in 0..50 {
        let (cache, code) = (h.cache.clone(), code.clone());
        submits.push(tokio::spawn(async move {
            cache.login_bound(&code, &by_request(REQUEST_ID)).await
        }));
    }
    // A stranger racing the client with the same code: whichever submit leads the flight
    // decides who shares it, and the other client is refused.
    let stranger = {
        let (cache, code) = (h.cache.clone(), code.clone());
        tokio::spawn(async move {
            cache
                .login_bound(&code, &by_request("stranger-0123456789"))
                .await
        })
    };
    let mut sids = HashSet::new();
    let mut refused = 0;
    for submit in submits {
        match submit.await.unwrap() {
            Ok(record) => {
                sids.insert(record.sid);
            }
            outcome => {
                assert!(is_code_used(outcome));
                refused += 1;
            }
        }
    }
    match stranger.await.unwrap() {
        Ok(record) => {
            assert_eq!(refused, 50, "the stranger led: the client is refused");
            assert!(sids.is_empty());
            sids.insert(record.sid);
        }
        outcome => {
            assert!(
                is_code_used(outcome),
                "another client never gets the session"
            );
            assert_eq!(refused, 0, "the client's submits all share its session");
        }
    }
    assert_eq!(sids.len(), 1, "one session for one code");
    assert_eq!(
        h.mock.calls(Endpoint::AccessToken),
        1,
        "one exchange upstream"
    );
}

#[tokio::test]
async fn a_used_code_opens_its_session_only_for_its_client_within_the_window() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let session = h
        .cache
        .login_bound(&code, &by_request(REQUEST_ID))
        .await
        .unwrap();
    // Anyone else: no proof, another proof, another flow with the same proof.
    assert!(is_code_used(h.cache.login(&code).await));
    assert!(is_code_used(
        h.cache
            .login_bound(&code, &by_request("another-client-0123"))
            .await
    ));
    for flow in [
        LoginFlow::WebCallback,
        LoginFlow::OfficialAccountCallback,
        LoginFlow::MiniProgram,
    ] {
        let binding = LoginBinding::new(flow).proof(REQUEST_ID);
        assert!(is_code_used(h.cache.login_bound(&code, &binding).await));
    }
    // The client retrying within the window: the same session.
    h.advance(Duration::from_secs(60));
    let retry = h.cache.login_bound(&code, &by_request(REQUEST_ID)).await;
    assert_eq!(retry.unwrap().sid, session.sid);
    // After it: refused, like everyone else.
    h.advance(Duration::from_secs(1));
    assert!(is_code_used(
        h.cache.login_bound(&code, &by_request(REQUEST_ID)).await
    ));
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 1, "never asked again");
}

#[tokio::test]
async fn a_code_without_proof_is_never_answered_twice() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    h.cache.login(&code).await.unwrap();
    assert!(is_code_used(h.cache.login(&code).await));
}

#[tokio::test]
async fn official_account_callbacks_get_the_short_window() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let state = "state0123456789";
    let binding = LoginBinding::new(LoginFlow::OfficialAccountCallback).proof(state);
    let session = h.cache.login_bound(&code, &binding).await.unwrap();
    h.advance(Duration::from_secs(5));
    let twice = h.cache.login_bound(&code, &binding).await;
    assert_eq!(twice.unwrap().sid, session.sid, "WeChat calling twice");
    h.advance(Duration::from_secs(1));
    assert!(is_code_used(h.cache.login_bound(&code, &binding).await));
}

#[tokio::test]
async fn refusals_are_remembered_and_transient_failures_are_not() {
    let h = harness().await;
    let bogus = AuthCode::new("not-a-code");
    for _ in 0..2 {
        match h.cache.login(&bogus).await {
            Err(LoginError::InvalidCode { errcode }) => assert_eq!(errcode, ErrCode::INVALID_CODE),
            other => panic!("expected invalid code, got {other:?}"),
        }
    }
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 1);

    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    h.mock.inject(Endpoint::AccessToken, Fault::ErrCode(-1), 1);
    assert!(matches!(
        h.cache.login(&code).await,
        Err(LoginError::Unavailable { .. })
    ));
    assert_eq!(
        h.mock.calls(Endpoint::AccessToken),
        2,
        "a code exchange is never retried"
    );
    h.cache
        .login(&code)
        .await
        .expect("the client may try again");
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 3);
}

#[tokio::test]
async fn a_wrong_secret_is_misconfiguration() {
    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    let client = Client::builder(AppId::new(mock.appid()), AppSecret::new("wrong"))
        .api_base(mock.base_url())
        .build()
        .unwrap();
    let cache = SessionCache::builder(client).build();
    let code = AuthCode::new(mock.mint_code(MockGrant::default()));
    match cache.login(&code).await {
        Err(LoginError::Misconfigured { errcode }) => {
            assert_eq!(errcode, ErrCode::INVALID_APPSECRET)
        }
        other => panic!("expected misconfigured, got {other:?}"),
    }
}

#[tokio::test]
async fn capacity_eviction_drops_the_least_recently_used_sessions() {
    let (mock, clock, client) = start_mock(MockConfig::default()).await;
    let store = MokaStore::builder()
        .max_sessions(10)
        .clock(Arc::new(clock.clone()))
        .build();
    let cache = SessionCache::builder(client).store(store.clone()).build();
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
async fn a_due_check_confirms_the_grant_once_per_interval() {
    let h = harness_with(MockConfig::default(), |b| {
        b.check_interval(Some(Duration::from_secs(300)))
    })
    .await;
    let session = h.login().await;
    h.cache.session(&session.sid).await.unwrap();
    assert_eq!(
        h.mock.calls(Endpoint::Auth),
        0,
        "just confirmed by the login"
    );
    h.advance(Duration::from_secs(301));
    for _ in 0..20 {
        h.cache.session(&session.sid).await.unwrap();
    }
    assert_eq!(h.mock.calls(Endpoint::Auth), 1, "one check per interval");
    let record = h.cache.store().get(&session.sid).await.unwrap().unwrap();
    assert_eq!(record.confirmed_at, h.clock.now());
}

#[tokio::test]
async fn a_check_that_finds_the_grant_revoked_ends_the_session() {
    let h = harness_with(MockConfig::default(), |b| {
        b.check_interval(Some(Duration::from_secs(300)))
    })
    .await;
    let session = h.login().await;
    h.mock.revoke(session.openid.as_str());
    h.advance(Duration::from_secs(301));
    // /sns/auth says the token is invalid -> refresh -> 40030: the grant is gone.
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::Reauthorize { .. })
    ));
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 1);
}

#[tokio::test]
async fn grace_serves_through_failed_checks_until_it_runs_out() {
    let h = harness_with(MockConfig::default(), |b| {
        b.check_interval(Some(Duration::from_secs(300)))
            .grace(GracePolicy::ServeFor(Duration::from_secs(900)))
            // Keep the access token out of its refresh window for this test.
            .refresh_window(Duration::from_secs(60), 0.0)
    })
    .await;
    let session = h.login().await;
    h.advance(Duration::from_secs(301));
    h.mock.inject(Endpoint::Auth, Fault::ErrCode(-1), 3);
    h.cache.session(&session.sid).await.expect("within grace");
    h.advance(Duration::from_secs(600));
    h.mock.inject(Endpoint::Auth, Fault::HttpStatus(503), 3);
    assert!(
        matches!(
            h.cache.session(&session.sid).await,
            Err(SessionError::Unavailable { .. })
        ),
        "grace ran out 900 s after the last confirmation"
    );
    assert!(
        h.cache.store().get(&session.sid).await.unwrap().is_some(),
        "not logged out"
    );
}

#[tokio::test]
async fn fail_closed_answers_unavailable_at_the_first_failed_check() {
    let h = harness_with(MockConfig::default(), |b| {
        b.check_interval(Some(Duration::from_secs(300)))
            .grace(GracePolicy::FailClosed)
    })
    .await;
    let session = h.login().await;
    h.advance(Duration::from_secs(301));
    h.mock.inject(Endpoint::Auth, Fault::ErrCode(-1), 3);
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn userinfo_refreshes_and_retries_once_on_an_invalid_token() {
    let h = harness().await;
    let session = h.login().await;
    h.mock.inject(Endpoint::UserInfo, Fault::ErrCode(40001), 1);
    let profile = h
        .cache
        .userinfo(&session.sid, Lang::En)
        .await
        .expect("profile");
    assert_eq!(profile.openid, session.openid);
    assert_eq!(h.mock.calls(Endpoint::UserInfo), 2);
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 1);

    h.mock.inject(Endpoint::UserInfo, Fault::ErrCode(42001), 2);
    assert!(
        matches!(
            h.cache.userinfo(&session.sid, Lang::En).await,
            Err(CallError::Upstream(_))
        ),
        "only one retry"
    );
}

#[tokio::test]
async fn userinfo_is_not_called_for_base_grants() {
    let h = harness().await;
    let session = h
        .login_as(MockGrant {
            scope: Some("snsapi_base".into()),
            ..Default::default()
        })
        .await;
    assert!(matches!(
        h.cache.userinfo(&session.sid, Lang::ZhCn).await,
        Err(CallError::NotPermitted)
    ));
    assert_eq!(h.mock.calls(Endpoint::UserInfo), 0);
}

#[tokio::test]
async fn mini_program_sessions_hold_a_session_key_and_never_refresh() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let session = h.cache.login_mini_program(&code).await.unwrap();
    assert!(matches!(
        session.credentials,
        Credentials::MiniProgram { .. }
    ));
    h.advance(3 * HOUR);
    h.cache.session(&session.sid).await.unwrap();
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 0);
    assert_eq!(h.mock.calls(Endpoint::JsCode2Session), 1);
    // The same string as an OAuth code is a different exchange.
    assert!(h.cache.login(&code).await.is_err());
}

#[tokio::test]
async fn sessions_end_at_the_refresh_horizon() {
    let h = harness_with(MockConfig::default(), |b| b.refresh_horizon(24 * HOUR)).await;
    let session = h.login().await;
    h.advance(24 * HOUR);
    assert!(matches!(
        h.cache.session(&session.sid).await,
        Err(SessionError::NotFound)
    ));
}

// --- Reviewed fixes: login memory, cooldowns, write-back, forced refresh, gone grants, config ---

#[tokio::test]
async fn a_double_submit_after_logout_is_told_the_code_was_used() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let session = h.cache.login(&code).await.unwrap();
    assert!(h.cache.logout(&session.sid).await.unwrap());
    match h.cache.login(&code).await {
        Err(LoginError::InvalidCode { errcode }) => assert_eq!(errcode, ErrCode::CODE_USED),
        other => panic!("a logged-out session must not come back, got {other:?}"),
    }
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 1, "no second exchange");
}

#[tokio::test]
async fn a_double_submit_gets_the_session_as_it_is_now() {
    let h = harness_with(MockConfig::default(), |b| {
        b.code_retry_windows(EXPIRY, Duration::from_secs(5))
    })
    .await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let session = h
        .cache
        .login_bound(&code, &by_request(REQUEST_ID))
        .await
        .unwrap();
    h.advance(EXPIRY);
    let refreshed = h.cache.session(&session.sid).await.unwrap();
    assert_ne!(access_token(&refreshed), access_token(&session));
    let again = h
        .cache
        .login_bound(&code, &by_request(REQUEST_ID))
        .await
        .unwrap();
    assert_eq!(again.sid, session.sid);
    assert_eq!(
        access_token(&again),
        access_token(&refreshed),
        "the stored record, not the one remembered at login"
    );
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 1);
}

#[tokio::test]
async fn a_junk_code_flood_does_not_evict_a_remembered_login() {
    // Successes: 100; refusals: max(100 / 10, 1,000) = 1,000.
    let h = harness_with(MockConfig::default(), |b| {
        b.remember_logins(Duration::from_secs(600), 100)
    })
    .await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    let session = h
        .cache
        .login_bound(&code, &by_request(REQUEST_ID))
        .await
        .unwrap();
    const JUNK: u64 = 1_200;
    for i in 0..JUNK {
        let junk = AuthCode::new(format!("junk-{i}"));
        assert!(matches!(
            h.cache.login(&junk).await,
            Err(LoginError::InvalidCode { .. })
        ));
    }
    let again = h
        .cache
        .login_bound(&code, &by_request(REQUEST_ID))
        .await
        .expect("the remembered login survives the flood");
    assert_eq!(again.sid, session.sid);
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 1 + JUNK);
}

#[tokio::test]
async fn unknown_errcodes_from_an_exchange_are_not_remembered() {
    let h = harness().await;
    let code = AuthCode::new(h.mock.mint_code(MockGrant::default()));
    h.mock
        .inject(Endpoint::AccessToken, Fault::ErrCode(61234), 1);
    assert!(matches!(
        h.cache.login(&code).await,
        Err(LoginError::InvalidCode { errcode }) if errcode == ErrCode(61234)
    ));
    h.cache
        .login(&code)
        .await
        .expect("an unknown refusal is not WeChat's last word: the code is tried again");
    assert_eq!(h.mock.calls(Endpoint::AccessToken), 2);
}

#[tokio::test]
async fn misconfigured_and_denied_refreshes_are_not_retried_per_request() {
    let h = harness().await;
    let session = h.login().await;
    h.advance(EXPIRY);

    h.mock
        .inject(Endpoint::RefreshToken, Fault::ErrCode(40013), 1);
    for _ in 0..3 {
        assert!(matches!(
            h.cache.session(&session.sid).await,
            Err(SessionError::Misconfigured { errcode }) if errcode == ErrCode::INVALID_APPID
        ));
    }
    assert_eq!(
        h.mock.calls(Endpoint::RefreshToken),
        1,
        "one call per minute"
    );
    h.advance(Duration::from_secs(59));
    assert!(h.cache.session(&session.sid).await.is_err());
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 1);
    h.advance(Duration::from_secs(1));
    h.cache
        .session(&session.sid)
        .await
        .expect("asked again after 60 s");
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 2);

    h.advance(EXPIRY);
    h.mock
        .inject(Endpoint::RefreshToken, Fault::ErrCode(50002), 1);
    for _ in 0..3 {
        assert!(matches!(
            h.cache.session(&session.sid).await,
            Err(SessionError::Denied { errcode }) if errcode == ErrCode::USER_RESTRICTED
        ));
    }
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 3);
    h.advance(h.cache.config().failure_cooldown);
    h.cache
        .session(&session.sid)
        .await
        .expect("asked again after the failure cooldown");
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 4);
    assert!(h.cache.store().get(&session.sid).await.unwrap().is_some());
}

#[tokio::test]
async fn a_refresh_is_stored_even_if_the_record_claims_a_later_expiry() {
    let config = MockConfig {
        rotate_refresh_tokens: true,
        ..MockConfig::default()
    };
    let h = harness_with(config, |b| b).await;
    let session = h.login().await;
    // The stored record says its token lives 3 h (a clock skew, another instance's bookkeeping);
    // WeChat will say 2 h. What WeChat says now — and the refresh token it rotates — must win.
    let mut skewed = (*session).clone();
    skewed.credentials = Credentials::OAuth {
        access_token: session.access_token().unwrap().0.clone(),
        access_token_expires_at: h.clock.now() + 3 * HOUR,
        refresh_token: wechat_oauth::RefreshToken::new(refresh_token(&session)),
    };
    let CasOutcome::Stored(skewed) = h
        .cache
        .store()
        .compare_and_set(session.version, skewed)
        .await
        .unwrap()
    else {
        panic!("store the skewed record");
    };
    let fresh = h.cache.fresh(&session.sid, 4 * HOUR).await.unwrap();
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 1);
    assert_ne!(
        refresh_token(&fresh),
        refresh_token(&skewed),
        "the rotated refresh token was stored"
    );
    assert_eq!(
        fresh.access_token().unwrap().1,
        h.clock.now() + EXPIRY,
        "WeChat's expiry"
    );
    h.advance(3 * HOUR);
    h.cache
        .session(&session.sid)
        .await
        .expect("the next refresh uses the stored, rotated token");
    assert_eq!(h.mock.calls(Endpoint::RefreshToken), 2);
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
    async fn insert(&self, record: SessionRecord) -> Result<Arc<SessionRecord>, StoreError> {
        self.inner.insert(record).await
    }
    async fn compare_and_set(
        &self,
        expected: u64,
        record: SessionRecord,
    ) -> Result<CasOutcome, StoreError> {
        self.inner.compare_and_set(expected, record).await
    }
    async fn delete(&self, sid: &SessionId) -> Result<bool, StoreError> {
        self.inner.delete(sid).await
    }
    async fn delete_user(&self, user: &UserId) -> Result<usize, StoreError> {
        self.inner.delete_user(user).await
    }
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
    let cache = SessionCache::builder(client).store(store.clone()).build();
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

#[tokio::test]
async fn absurd_durations_are_capped_instead_of_panicking() {
    let h = harness_with(MockConfig::default(), |b| {
        b.refresh_horizon(Duration::MAX)
            .mini_program_session_ttl(Duration::MAX)
            .failure_cooldown(Duration::MAX)
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
    let record = wechat_token_cache::conformance::sample_record(&clock, "wxapp", "alice");
    for (window, jitter, expected_jitter) in [
        (Duration::MAX, f64::NAN, 0.5),
        (Duration::from_secs(7200), 7.0, 1.0),
        (Duration::from_secs(600), -3.0, 0.0),
        (Duration::from_secs(600), f64::INFINITY, 1.0),
    ] {
        let cache = SessionCache::builder(client.clone())
            .refresh_window(window, jitter)
            .build();
        assert_eq!(cache.config().refresh_jitter, expected_jitter);
        assert!(cache.config().refresh_window <= Duration::from_secs(3600));
        // A token with 2 h left is not due with any (capped) window.
        assert!(!cache.needs_upstream(&record), "{window:?} {jitter}");
    }
}
