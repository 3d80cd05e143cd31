//! [`TokenCache`]: a session store plus the refresh coordinator that keeps each session's WeChat
//! tokens alive with as few upstream calls as possible.
//!
//! Per request, [`TokenCache::session`] reads the record; when its access token is valid and no
//! upstream check is due, that is all (no I/O beyond the store, no upstream call). Otherwise one
//! *flight* per session brings it up to date: re-read the record (someone may have done it
//! already), refresh or check with WeChat, write back with compare-and-set. Every concurrent
//! caller gets that flight's result. What happens on failure depends only on what WeChat said:
//! a gone grant deletes the session, anything transient keeps it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moka::sync::Cache;
use wechat_oauth::{AccessToken, Client, ErrorClass, Lang, OpenId, UserInfo, clock::SharedClock};

use crate::error::{CallError, SessionError};
use crate::flight::Flights;
use crate::login::Logins;
use crate::moka_store::MokaStore;
use crate::record::{SessionId, SessionRecord, UserKey};
use crate::store::{CasOutcome, TokenStore};

/// What to do when WeChat cannot be asked whether a grant is still valid (a transient failure
/// of the periodic `/sns/auth` check).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GracePolicy {
    /// Keep serving the session until this long after WeChat last confirmed the grant, then
    /// answer "unavailable" until a check succeeds.
    ServeFor(Duration),
    /// Answer "unavailable" as soon as a due check fails.
    FailClosed,
}

/// Tunables of a [`TokenCache`]. Every duration is measured with the cache's clock.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CacheConfig {
    /// How long a refresh token lives, hence an OAuth session (default 30 days; the mobile-app
    /// documentation says 180). WeChat answering 42002/40030 ends a session earlier.
    pub refresh_horizon: Duration,
    /// Refresh the access token once it has less than this left (default 10 minutes)...
    pub refresh_window: Duration,
    /// ...minus up to this fraction of the window, fixed per session (default 0.5), so sessions
    /// created together do not refresh together.
    pub refresh_jitter: f64,
    /// Ask WeChat (`/sns/auth`) whether the grant is still valid when it was last confirmed
    /// this long ago (default: never; refreshes confirm it anyway).
    pub check_interval: Option<Duration>,
    /// What to do when a due check fails transiently (default: serve for 1 hour since the last
    /// confirmation).
    pub grace: GracePolicy,
    /// After a transient failure, how long requests reuse it before WeChat is asked again for
    /// that session: at least this (default 5 s), longer when WeChat hints so (45011: 60 s).
    /// Keeps an outage from turning every request into an upstream call.
    pub failure_cooldown: Duration,
    /// How long a login code's outcome is remembered for double submits (default 10 minutes,
    /// the longest code lifetime).
    pub code_ttl: Duration,
    /// At most this many login outcomes are remembered (default 100,000).
    pub remembered_logins: u64,
    /// How long a Mini Program session lives (default 30 days).
    pub mini_program_session_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            refresh_horizon: Duration::from_secs(30 * 24 * 3600),
            refresh_window: Duration::from_secs(10 * 60),
            refresh_jitter: 0.5,
            check_interval: None,
            grace: GracePolicy::ServeFor(Duration::from_secs(3600)),
            failure_cooldown: Duration::from_secs(5),
            code_ttl: Duration::from_secs(10 * 60),
            remembered_logins: 100_000,
            mini_program_session_ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Configures a [`TokenCache`].
pub struct TokenCacheBuilder<S> {
    client: Client,
    store: S,
    clock: SharedClock,
    config: CacheConfig,
}

impl<S> fmt::Debug for TokenCacheBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCacheBuilder")
            .field("client", &self.client)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: TokenStore> TokenCacheBuilder<S> {
    /// Use another store (default: a [`MokaStore`] with default bounds, on the client's clock).
    pub fn store<S2: TokenStore>(self, store: S2) -> TokenCacheBuilder<S2> {
        TokenCacheBuilder {
            client: self.client,
            store,
            clock: self.clock,
            config: self.config,
        }
    }

    /// Replace the whole configuration.
    pub fn config(mut self, config: CacheConfig) -> Self {
        self.config = config;
        self
    }

    /// See [`CacheConfig::refresh_horizon`].
    pub fn refresh_horizon(mut self, horizon: Duration) -> Self {
        self.config.refresh_horizon = horizon;
        self
    }

    /// See [`CacheConfig::refresh_window`] and [`CacheConfig::refresh_jitter`].
    pub fn refresh_window(mut self, window: Duration, jitter: f64) -> Self {
        self.config.refresh_window = window;
        self.config.refresh_jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// See [`CacheConfig::check_interval`].
    pub fn check_interval(mut self, interval: Option<Duration>) -> Self {
        self.config.check_interval = interval;
        self
    }

    /// See [`CacheConfig::grace`].
    pub fn grace(mut self, grace: GracePolicy) -> Self {
        self.config.grace = grace;
        self
    }

    /// See [`CacheConfig::failure_cooldown`].
    pub fn failure_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.failure_cooldown = cooldown;
        self
    }

    /// See [`CacheConfig::code_ttl`] and [`CacheConfig::remembered_logins`].
    pub fn remember_logins(mut self, ttl: Duration, capacity: u64) -> Self {
        self.config.code_ttl = ttl;
        self.config.remembered_logins = capacity;
        self
    }

    /// See [`CacheConfig::mini_program_session_ttl`].
    pub fn mini_program_session_ttl(mut self, ttl: Duration) -> Self {
        self.config.mini_program_session_ttl = ttl;
        self
    }

    /// Builds the cache. Needs a tokio runtime when used (flights run as tasks).
    pub fn build(self) -> TokenCache<S> {
        let config = self.config;
        TokenCache {
            inner: Arc::new(Inner {
                logins: Logins::new(&config),
                cooldown: Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(Duration::from_secs(600))
                    .build(),
                flights: Arc::default(),
                client: self.client,
                store: self.store,
                clock: self.clock,
                config,
            }),
        }
    }
}

/// Sessions, their WeChat tokens, and the coordinator that keeps them fresh. Cheap to clone.
///
/// ```no_run
/// use std::time::Duration;
/// use wechat_oauth::{AppId, AppSecret, AuthCode, Client};
/// use wechat_token_cache::{SessionError, TokenCache};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder(AppId::new("wx123"), AppSecret::new("secret")).build()?;
/// let cache = TokenCache::builder(client).build();
/// let session = cache.login(&AuthCode::new("code-from-the-app")).await?;
/// // Later, on each request carrying session.sid:
/// match cache.session(&session.sid).await {
///     Ok(record) => println!("user {}", record.openid),
///     Err(SessionError::Unavailable { retry_after }) => println!("try again in {retry_after:?}"),
///     Err(e) => println!("log in again: {e}"),
/// }
/// # Ok(()) }
/// ```
pub struct TokenCache<S = MokaStore> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for TokenCache<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> fmt::Debug for TokenCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("client", &self.inner.client)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner<S> {
    pub(crate) client: Client,
    pub(crate) store: S,
    pub(crate) clock: SharedClock,
    pub(crate) config: CacheConfig,
    pub(crate) logins: Logins,
    /// Refreshes and checks in progress, one per session.
    flights: Arc<Flights<SessionId, Result<Arc<SessionRecord>, SessionError>>>,
    /// Recent transient failures per session, until when they are reused.
    cooldown: Cache<SessionId, (SystemTime, SessionError)>,
}

/// What a session needs before it can be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    Nothing,
    Refresh,
    Check,
}

impl TokenCache<MokaStore> {
    /// Starts configuring a cache for `client`'s application, on the client's clock.
    pub fn builder(client: Client) -> TokenCacheBuilder<MokaStore> {
        let clock = Arc::clone(client.clock());
        TokenCacheBuilder {
            store: MokaStore::builder().clock(Arc::clone(&clock)).build(),
            client,
            clock,
            config: CacheConfig::default(),
        }
    }
}

impl<S: TokenStore> TokenCache<S> {
    pub(crate) fn inner(&self) -> &Arc<Inner<S>> {
        &self.inner
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.store
    }

    /// The WeChat client.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// The session for a request: served as is when its access token is valid beyond the
    /// refresh window and no upstream check is due; otherwise refreshed or checked first
    /// (single flight per session).
    ///
    /// Transient upstream failures keep the session: it is served while its access token is
    /// still valid (refresh due) or within the [`GracePolicy`] (check due), and answered
    /// [`SessionError::Unavailable`] otherwise.
    pub async fn session(&self, sid: &SessionId) -> Result<Arc<SessionRecord>, SessionError> {
        let record = self.inner.load(sid).await?;
        let now = self.inner.clock.now();
        let need = self.inner.need(&record, now);
        if need == Need::Nothing {
            return Ok(record);
        }
        match self.inner.maintain(*sid, None).await {
            Err(SessionError::Unavailable { retry_after }) => {
                self.inner.serve_degraded(record, need, now, retry_after)
            }
            other => other,
        }
    }

    /// The session with an access token valid for at least `min_valid`, refreshing if needed.
    /// For Mini Program sessions (no access token) the record is returned as is.
    pub async fn fresh(
        &self,
        sid: &SessionId,
        min_valid: Duration,
    ) -> Result<Arc<SessionRecord>, SessionError> {
        let record = self.inner.load(sid).await?;
        match record.access_token_remaining(self.inner.clock.now()) {
            Some(left) if left < min_valid => self.inner.maintain(*sid, Some(record.version)).await,
            _ => Ok(record),
        }
    }

    /// Calls WeChat with the session's access token (fresh for at least a minute). If WeChat
    /// answers that the token is invalid or expired (40001, 40014, 42001), refreshes once and
    /// calls again.
    pub async fn call_with_token<T, F, Fut>(&self, sid: &SessionId, call: F) -> Result<T, CallError>
    where
        F: Fn(AccessToken, OpenId) -> Fut,
        Fut: Future<Output = Result<T, wechat_oauth::Error>>,
    {
        let record = self.fresh(sid, Duration::from_secs(60)).await?;
        let token = |r: &SessionRecord| r.access_token().map(|(t, _)| t.clone());
        let first = token(&record).ok_or(CallError::NotPermitted)?;
        match call(first, record.openid.clone()).await {
            Err(e) if e.class() == ErrorClass::RefreshAndRetry => {
                tracing::debug!(sid = %sid, "access token refused upstream; refreshing once");
                let renewed = self.inner.maintain(*sid, Some(record.version)).await?;
                let second = token(&renewed).ok_or(CallError::NotPermitted)?;
                Ok(call(second, renewed.openid.clone()).await?)
            }
            other => Ok(other?),
        }
    }

    /// The user's WeChat profile, through [`call_with_token`](Self::call_with_token). Not
    /// called for `snsapi_base` grants or snapshot users, which WeChat would refuse.
    pub async fn userinfo(&self, sid: &SessionId, lang: Lang) -> Result<UserInfo, CallError> {
        let record = self.inner.load(sid).await?;
        if !record.scopes.allows_userinfo() || record.snapshot_user {
            return Err(CallError::NotPermitted);
        }
        let client = self.inner.client.clone();
        self.call_with_token(sid, move |token, openid| {
            let client = client.clone();
            async move { client.userinfo(&token, &openid, lang).await }
        })
        .await
    }

    /// Ends one session. `true` if it existed.
    pub async fn logout(&self, sid: &SessionId) -> Result<bool, SessionError> {
        Ok(self.inner.store.delete(sid).await?)
    }

    /// Ends every session of a user. Returns how many there were.
    pub async fn logout_all(&self, user: &UserKey) -> Result<usize, SessionError> {
        Ok(self.inner.store.delete_user(user).await?)
    }
}

impl<S: TokenStore> Inner<S> {
    async fn load(&self, sid: &SessionId) -> Result<Arc<SessionRecord>, SessionError> {
        self.store.get(sid).await?.ok_or(SessionError::NotFound)
    }

    /// The access token must be refreshed when it has less than this left: the refresh window
    /// less a per-session share of the jitter.
    fn refresh_margin(&self, sid: &SessionId) -> Duration {
        let window = self.config.refresh_window;
        window.mul_f64(1.0 - self.config.refresh_jitter * sid.spread())
    }

    fn need(&self, record: &SessionRecord, now: SystemTime) -> Need {
        let Some(left) = record.access_token_remaining(now) else {
            return Need::Nothing;
        };
        if left <= self.refresh_margin(&record.sid) {
            return Need::Refresh;
        }
        match self.config.check_interval {
            Some(interval)
                if now.duration_since(record.confirmed_at).unwrap_or_default() >= interval =>
            {
                Need::Check
            }
            _ => Need::Nothing,
        }
    }

    /// After a transient failure: serve what we have if the policy allows it.
    fn serve_degraded(
        &self,
        record: Arc<SessionRecord>,
        need: Need,
        now: SystemTime,
        retry_after: Duration,
    ) -> Result<Arc<SessionRecord>, SessionError> {
        let servable = match need {
            Need::Nothing => true,
            Need::Refresh => record
                .access_token_remaining(now)
                .is_some_and(|left| left > Duration::ZERO),
            Need::Check => match self.config.grace {
                GracePolicy::FailClosed => false,
                GracePolicy::ServeFor(grace) => {
                    now.duration_since(record.confirmed_at).unwrap_or_default() <= grace
                }
            },
        };
        if servable {
            tracing::debug!(sid = %record.sid, outcome = "served_degraded", "upstream unavailable; serving the current session");
            Ok(record)
        } else {
            Err(SessionError::Unavailable { retry_after })
        }
    }

    /// Brings a session up to date in a single flight. With `force_version`, refreshes even if
    /// the record looks fresh, unless its version has moved on (someone refreshed meanwhile).
    async fn maintain(
        self: &Arc<Self>,
        sid: SessionId,
        force_version: Option<u64>,
    ) -> Result<Arc<SessionRecord>, SessionError> {
        let now = self.clock.now();
        if let Some((until, error)) = self.cooldown.get(&sid) {
            if now < until {
                return Err(error);
            }
            self.cooldown.invalidate(&sid);
        }
        // A forced caller may join a flight that had nothing to do; then it flies its own.
        for _ in 0..2 {
            let inner = Arc::clone(self);
            let result = self
                .flights
                .run(
                    sid,
                    move || async move { inner.fly(sid, force_version).await },
                )
                .await
                .unwrap_or(Err(SessionError::Unavailable {
                    retry_after: Duration::from_secs(1),
                }));
            match (&result, force_version) {
                (Ok(record), Some(version)) if record.version == version => continue,
                _ => return result,
            }
        }
        self.load(&sid).await
    }

    /// One flight: re-read, decide, call WeChat, write back.
    async fn fly(
        &self,
        sid: SessionId,
        force_version: Option<u64>,
    ) -> Result<Arc<SessionRecord>, SessionError> {
        let record = self.load(&sid).await?;
        let now = self.clock.now();
        let need = if force_version == Some(record.version) && record.access_token().is_some() {
            Need::Refresh
        } else {
            self.need(&record, now)
        };
        match need {
            Need::Nothing => Ok(record),
            Need::Refresh => self.refresh(record).await,
            Need::Check => self.check(record).await,
        }
    }

    async fn refresh(
        &self,
        record: Arc<SessionRecord>,
    ) -> Result<Arc<SessionRecord>, SessionError> {
        let crate::record::Credentials::OAuth { refresh_token, .. } = &record.credentials else {
            return Ok(record);
        };
        match self.client.refresh_token(refresh_token).await {
            Ok(grant) => {
                let now = self.clock.now();
                let written = self
                    .write_back(record, |current| {
                        // A conflict resolves to the newer record: keep one refreshed later.
                        let theirs = current.access_token().map(|(_, at)| at);
                        (theirs <= Some(grant.access_token_expires_at))
                            .then(|| current.with_refresh(&grant, now))
                    })
                    .await?;
                tracing::debug!(sid = %written.sid, outcome = "refreshed", version = written.version, "session refreshed");
                Ok(written)
            }
            Err(error) => Err(self.failed(&record, "refresh", error).await),
        }
    }

    async fn check(&self, record: Arc<SessionRecord>) -> Result<Arc<SessionRecord>, SessionError> {
        let Some((access_token, _)) = record.access_token() else {
            return Ok(record);
        };
        match self
            .client
            .check_access_token(access_token, &record.openid)
            .await
        {
            Ok(()) => {
                let now = self.clock.now();
                let written = self
                    .write_back(record, |current| {
                        let mut next = current.clone();
                        next.confirmed_at = next.confirmed_at.max(now);
                        Some(next)
                    })
                    .await?;
                tracing::debug!(sid = %written.sid, outcome = "checked", "grant confirmed by WeChat");
                Ok(written)
            }
            Err(error) if error.class() == ErrorClass::RefreshAndRetry => {
                tracing::debug!(sid = %record.sid, errcode = ?error.errcode(), "check: access token refused; refreshing");
                self.refresh(record).await
            }
            Err(error) => Err(self.failed(&record, "check", error).await),
        }
    }

    /// Compare-and-set loop. `update` maps the current record to the one to write, or `None`
    /// when the current one is already newer (then it is returned as is). A session deleted
    /// meanwhile (logout) is never resurrected.
    async fn write_back(
        &self,
        mut current: Arc<SessionRecord>,
        update: impl Fn(&SessionRecord) -> Option<SessionRecord>,
    ) -> Result<Arc<SessionRecord>, SessionError> {
        loop {
            let Some(next) = update(&current) else {
                return Ok(current);
            };
            match self.store.compare_and_set(current.version, next).await? {
                CasOutcome::Stored(written) => return Ok(written),
                CasOutcome::Conflict {
                    current: Some(newer),
                } => current = newer,
                CasOutcome::Conflict { current: None } => return Err(SessionError::NotFound),
            }
        }
    }

    /// Turns a WeChat error into the session's outcome: only a gone grant deletes it.
    async fn failed(
        &self,
        record: &SessionRecord,
        call: &'static str,
        error: wechat_oauth::Error,
    ) -> SessionError {
        let sid = record.sid;
        if let Some(errcode) = error.errcode().filter(|c| c.is_grant_gone()) {
            tracing::info!(sid = %sid, call, errcode = errcode.0, outcome = "grant_gone", "WeChat ended the grant; deleting the session");
            if let Err(e) = self.store.delete(&sid).await {
                tracing::warn!(sid = %sid, error = %e, "could not delete an ended session");
            }
            return SessionError::Reauthorize { errcode };
        }
        match (error.class(), error.errcode()) {
            (ErrorClass::Misconfigured, Some(errcode)) => {
                tracing::error!(sid = %sid, call, errcode = errcode.0, error = %error, "WeChat rejected this server's configuration: check the AppID and AppSecret");
                SessionError::Misconfigured { errcode }
            }
            (ErrorClass::Denied, Some(errcode)) => {
                tracing::warn!(sid = %sid, call, errcode = errcode.0, outcome = "denied", "WeChat denied the user");
                SessionError::Denied { errcode }
            }
            _ => {
                let retry_after = error
                    .retry_after()
                    .unwrap_or(self.config.failure_cooldown)
                    .max(self.config.failure_cooldown);
                tracing::warn!(sid = %sid, call, error = %error, outcome = "upstream_unavailable", "WeChat unavailable; keeping the session");
                let failure = SessionError::Unavailable { retry_after };
                self.cooldown
                    .insert(sid, (self.clock.now() + retry_after, failure.clone()));
                failure
            }
        }
    }
}
