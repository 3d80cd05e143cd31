//! [`SessionManager`]: a session store plus the refresh coordinator that keeps each session's WeChat
//! tokens alive with as few upstream calls as possible.
//!
//! Per request, [`SessionManager::session`] reads the record; when its access token is valid and no
//! upstream check is due, that is all (no I/O beyond the store, no upstream call). Otherwise one
//! *flight* per session brings it up to date: re-read the record (someone may have done it
//! already), refresh or check with WeChat, write back with compare-and-set. Every concurrent
//! caller gets that flight's result. What happens on failure depends only on what WeChat said:
//! a gone grant deletes the session (unless another refresh already replaced the refresh token
//! that was refused), anything transient keeps it. Failures that are not the end of the session
//! (transient, misconfigured, denied) are remembered per session for a cooldown, checked before
//! a flight is joined and again inside it, so WeChat is not asked again per request.
//!
//! The configuration is validated when the cache is built ([`SessionManagerBuilder::build`]).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use wechat_oauth::{
    AccessToken, AppAccessToken, AppId, AuthCode, Client, ErrCode, ErrorClass, Lang, OpenId,
    PhoneCode, PhoneInfo, SessionKey, UserInfo, clock::SharedClock,
};

use crate::app_token::{AppTokenCalls, AppTokens};
use crate::config::{GracePolicy, SessionConfig};
use crate::env::Env;
use crate::error::{AppTokenError, CallError, LoginError, SessionError};
use crate::flight::Flights;
use crate::flow::LoginFlow;
use crate::hook::{DynLoginHook, LoginHook};
use crate::lease::Leases;
use crate::login::{LoginBinding, LoginCalls, Logins};
use crate::mini_program::{MiniProgramCalls, SessionKeys};
use crate::moka_store::MokaStore;
use wechat_oauth::clock::add_capped;
use wechat_session_store::{CasOutcome, SharedStore};
use wechat_session_store::{Credentials, SessionId, SessionRecord, UserId};

/// How long WeChat is not asked again for a session after it rejected our configuration.
const MISCONFIGURED_COOLDOWN: Duration = Duration::from_secs(60);

/// Configures a [`SessionManager`].
pub struct SessionManagerBuilder<S> {
    /// The apps served; the first is the default app of [`SessionManager::login`].
    clients: Vec<Client>,
    hook: Option<Arc<dyn DynLoginHook>>,
    store: S,
    clock: SharedClock,
    config: SessionConfig,
    /// The key of login code hashes; random unless shared.
    code_key: [u8; 32],
}

impl<S> fmt::Debug for SessionManagerBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManagerBuilder")
            .field("clients", &self.clients)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: SharedStore> SessionManagerBuilder<S> {
    /// Use another store (default: a [`MokaStore`] with default bounds, on the client's clock).
    pub fn store<S2: SharedStore>(self, store: S2) -> SessionManagerBuilder<S2> {
        SessionManagerBuilder {
            clients: self.clients,
            hook: self.hook,
            store,
            clock: self.clock,
            config: self.config,
            code_key: self.code_key,
        }
    }

    /// The session settings (default [`SessionConfig::default`]).
    pub fn config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// Derive the key that hashes login codes from `secret`, shared by every instance of a
    /// fleet, so that a code's remembered outcome (kept in a shared store) is found by all of
    /// them (default: a random key, right for one process). The code itself is never stored.
    pub fn shared_secret(mut self, secret: &[u8]) -> Self {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret)
            .expect("HMAC takes keys of any length");
        // The crate's former name, kept: the label is part of the derived key, which every
        // instance of a fleet (old and new versions alike) must agree on.
        mac.update(b"wechat-token-cache login code key v1");
        self.code_key = mac.finalize().into_bytes().into();
        self
    }

    /// Serve one more WeChat app (another AppID: a website, an Official Account, a Mini
    /// Program...). Its sessions are refreshed and checked with its own credentials. A client
    /// for an AppID already served replaces that one. The client runs on the manager's clock
    /// (the first client's), whatever clock it was built with.
    pub fn app(mut self, client: Client) -> Self {
        let client = client.with_clock(Arc::clone(&self.clock));
        match self
            .clients
            .iter_mut()
            .find(|known| known.appid() == client.appid())
        {
            Some(known) => *known = client,
            None => self.clients.push(client),
        }
        self
    }

    /// Map each new login to the application's user (see [`LoginHook`]). Without a hook the
    /// user id is the unionid when WeChat sends one, else app + openid.
    pub fn login_hook(mut self, hook: impl LoginHook) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Builds the cache. Needs a tokio runtime when used (flights run as tasks).
    ///
    /// The configuration is made safe first: `refresh_jitter` clamped to `0..=1` (NaN → 0.5),
    /// `refresh_window` capped at [`MAX_REFRESH_WINDOW`](crate::MAX_REFRESH_WINDOW), `code_ttl` capped at a day.
    pub fn build(self) -> SessionManager<S> {
        let config = self.config.validated();
        // Cooldown entries carry their own end; the cache only has to hold them that long.
        let cooldown_ttl = config
            .failure_cooldown
            .max(MISCONFIGURED_COOLDOWN)
            .max(Duration::from_secs(600))
            .min(Duration::from_secs(7 * 24 * 3600));
        SessionManager {
            inner: Arc::new(Inner {
                logins: Arc::new(Logins::new(&config, self.code_key)),
                app_tokens: Arc::new(AppTokens::new()),
                session_keys: Arc::new(SessionKeys::new(&config)),
                cooldown: Cache::builder()
                    .max_capacity(100_000)
                    .eviction_policy(EvictionPolicy::lru())
                    .time_to_live(cooldown_ttl)
                    .build(),
                flights: Arc::new(Flights::named("session")),
                env: Arc::new(Env {
                    leases: Leases::new(config.lease_ttl),
                    clients: self.clients,
                    hook: self.hook,
                    store: self.store,
                    clock: self.clock,
                    config,
                }),
            }),
        }
    }
}

/// Sessions, their WeChat tokens, and the coordinator that keeps them fresh. Cheap to clone.
///
/// ```no_run
/// use std::time::Duration;
/// use wechat_oauth::{AppId, AppSecret, AuthCode, Client};
/// use wechat_sessions::{SessionError, SessionManager};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder(AppId::new("wx123"), AppSecret::new("secret")).build()?;
/// let sessions = SessionManager::builder(client).build();
/// let session = sessions.login(&AuthCode::new("code-from-the-app")).await?;
/// // Later, on each request carrying session.sid:
/// match sessions.session(&session.sid).await {
///     Ok(record) => println!("user {}", record.openid),
///     Err(SessionError::Unavailable { retry_after }) => println!("try again in {retry_after:?}"),
///     Err(e) => println!("log in again: {e}"),
/// }
/// # Ok(()) }
/// ```
pub struct SessionManager<S = MokaStore> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for SessionManager<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> fmt::Debug for SessionManager<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionManager")
            .field("clients", &self.inner.env.clients)
            .field("config", &self.inner.env.config)
            .finish_non_exhaustive()
    }
}

/// The coordinator: what it works with, its parts, and the refresh flights' own state.
struct Inner<S> {
    env: Arc<Env<S>>,
    logins: Arc<Logins>,
    /// App access tokens.
    app_tokens: Arc<AppTokens>,
    /// Each Mini Program user's newest session key.
    session_keys: Arc<SessionKeys>,
    /// Refreshes and checks in progress, one per session.
    flights: Arc<Flights<SessionId, Flown>>,
    /// Recent failures per session (transient, misconfigured, denied), until when they are
    /// reused.
    cooldown: Cache<SessionId, (SystemTime, SessionError)>,
}

/// What a flight brings back: its result, and whether it refreshed the access token (which may
/// come back unchanged, WeChat extending its expiry: a forced caller must tell that apart from
/// a flight that had nothing to do).
#[derive(Clone, Debug)]
struct Flown {
    result: Result<Arc<SessionRecord>, SessionError>,
    refreshed: bool,
}

impl Flown {
    fn untouched(result: Result<Arc<SessionRecord>, SessionError>) -> Self {
        Self {
            result,
            refreshed: false,
        }
    }
}

/// Whether `record` still holds the access token `seen`.
fn holds(record: &SessionRecord, seen: &AccessToken) -> bool {
    record
        .access_token()
        .is_some_and(|(token, _)| token == seen)
}

/// What a session needs before it can be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    Nothing,
    Refresh,
    Check,
}

impl SessionManager<MokaStore> {
    /// Starts configuring a cache for `client`'s application (the default app; more with
    /// [`SessionManagerBuilder::app`]), on the client's clock.
    pub fn builder(client: Client) -> SessionManagerBuilder<MokaStore> {
        let clock = Arc::clone(client.clock());
        SessionManagerBuilder {
            store: MokaStore::builder().clock(Arc::clone(&clock)).build(),
            clients: vec![client],
            hook: None,
            clock,
            config: SessionConfig::default(),
            code_key: rand::random(),
        }
    }
}

impl<S: SharedStore> SessionManager<S> {
    /// The store.
    pub fn store(&self) -> &S {
        &self.inner.env.store
    }

    /// The default app's WeChat client (the first one configured).
    pub fn client(&self) -> &Client {
        &self.inner.env.clients[0]
    }

    /// The client of app `appid`, if this cache serves it.
    pub fn client_for(&self, appid: &wechat_oauth::AppId) -> Option<&Client> {
        self.inner.env.client_for(appid)
    }

    /// Every app served, the default one first.
    pub fn clients(&self) -> &[Client] {
        &self.inner.env.clients
    }

    /// Whether this cache serves the app a session belongs to (a store shared by several
    /// applications may hold sessions of apps it does not).
    pub fn serves(&self, record: &SessionRecord) -> bool {
        self.inner.env.client_for(&record.appid).is_some()
    }

    /// The clock.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.env.clock
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.inner.env.config
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
        let now = self.inner.env.clock.now();
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

    /// Whether serving `record` now needs the refresh coordinator (a refresh or check is due).
    /// When it does not, [`session`](Self::session) would return the record as is; callers
    /// holding a record (the middleware's hot path) use this to skip the call.
    pub fn needs_upstream(&self, record: &SessionRecord) -> bool {
        self.needs_upstream_at(record, self.inner.env.clock.now())
    }

    /// [`needs_upstream`](Self::needs_upstream) at a given time, for callers that read the
    /// clock once per request.
    pub fn needs_upstream_at(&self, record: &SessionRecord, now: SystemTime) -> bool {
        self.inner.need(record, now) != Need::Nothing
    }

    /// Until when `record` may be served as it is: before this instant it has not expired and
    /// [`needs_upstream_at`](Self::needs_upstream_at) is false; from it on, one of them holds
    /// (each only becomes true as time passes). A caller that keeps a record computes it once
    /// and compares instead of reading the record on every request.
    pub fn serve_until(&self, record: &SessionRecord) -> SystemTime {
        self.inner.serve_until(record)
    }

    /// The session with an access token valid for at least `min_valid`, refreshing if needed.
    /// For Mini Program sessions (no access token) the record is returned as is.
    pub async fn fresh(
        &self,
        sid: &SessionId,
        min_valid: Duration,
    ) -> Result<Arc<SessionRecord>, SessionError> {
        let record = self.inner.load(sid).await?;
        match record.access_token() {
            Some((token, _))
                if record.access_token_remaining(self.inner.env.clock.now()) < Some(min_valid) =>
            {
                self.inner.maintain(*sid, Some(token)).await
            }
            _ => Ok(record),
        }
    }

    /// Calls WeChat with the session's access token (fresh for at least a minute). If WeChat
    /// answers that the token is invalid or expired (40001, 40014, 42001), refreshes once and
    /// calls again — unless the refresh cannot replace that token, then the answer is
    /// [`SessionError::Unavailable`].
    pub async fn call_with_token<T, F, Fut>(&self, sid: &SessionId, call: F) -> Result<T, CallError>
    where
        F: Fn(AccessToken, OpenId) -> Fut,
        Fut: Future<Output = Result<T, wechat_oauth::Error>>,
    {
        let record = self.fresh(sid, Duration::from_secs(60)).await?;
        let token = |r: &SessionRecord| r.access_token().map(|(t, _)| t.clone());
        let first = token(&record).ok_or(CallError::NotPermitted)?;
        match call(first.clone(), record.openid.clone()).await {
            Err(e) if e.class() == ErrorClass::RefreshAndRetry => {
                tracing::debug!(sid = %sid, "access token refused upstream; refreshing once");
                let renewed = self.inner.maintain(*sid, Some(&first)).await?;
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
        let client = self
            .inner
            .env
            .client_for(&record.appid)
            .ok_or(SessionError::NotFound)?
            .clone();
        let info = self
            .call_with_token(sid, move |token, openid| {
                let client = client.clone();
                async move { client.userinfo(&token, &openid, lang).await }
            })
            .await?;
        if let Some(unionid) = info.unionid.as_ref().filter(|_| record.unionid.is_none()) {
            self.inner.learn_unionid(sid, unionid).await;
        }
        Ok(info)
    }

    /// Ends one session. `true` if it existed.
    pub async fn logout(&self, sid: &SessionId) -> Result<bool, SessionError> {
        Ok(self.inner.env.store.delete(sid).await?)
    }

    /// Ends every session of a user. Returns how many there were.
    pub async fn logout_all(&self, user: &UserId) -> Result<usize, SessionError> {
        Ok(self.inner.env.store.delete_user(user).await?)
    }

    /// Every live session of `user` (the "where you're logged in" list), the most recently
    /// confirmed first. Each record says when it was created and last confirmed by WeChat, its
    /// app and, when recorded at login, where it came from ([`SessionRecord::client`]).
    pub async fn user_sessions(
        &self,
        user: &UserId,
    ) -> Result<Vec<Arc<SessionRecord>>, SessionError> {
        let mut sessions = self.inner.env.store.user_sessions(user).await?;
        sessions.sort_by(|a, b| {
            (b.confirmed_at, b.created_at, b.sid).cmp(&(a.confirmed_at, a.created_at, a.sid))
        });
        Ok(sessions)
    }

    /// Ends session `sid` if it is one of `user`'s: `true` if it was, and is now ended; `false`
    /// if there is no such session of this user (none at all, or another user's, which is left
    /// alone). A session's user is fixed at login, so the check cannot race with a write.
    pub async fn logout_user_session(
        &self,
        user: &UserId,
        sid: &SessionId,
    ) -> Result<bool, SessionError> {
        let store = &self.inner.env.store;
        match store.get_shared(sid).await? {
            Some(record) if record.user_is(user) => Ok(store.delete(sid).await?),
            _ => Ok(false),
        }
    }

    // Logins (`login.rs`).

    /// Logs in with a code from a mobile app, website or Official Account page, with no proof
    /// of the client: concurrent submits share one exchange, any later repeat is refused. See
    /// [`login_bound`](Self::login_bound).
    pub async fn login(&self, code: &AuthCode) -> Result<Arc<SessionRecord>, LoginError> {
        self.login_bound(code, &LoginBinding::new(LoginFlow::Code))
            .await
    }

    /// Logs in with a Mini Program `wx.login()` code via `jscode2session`, with no proof of the
    /// client. The session holds the session key (never returned) and has no refresh.
    pub async fn login_mini_program(
        &self,
        code: &AuthCode,
    ) -> Result<Arc<SessionRecord>, LoginError> {
        self.login_bound(code, &LoginBinding::new(LoginFlow::MiniProgram))
            .await
    }

    /// Logs in with a code submitted as `binding` describes: exchanges it (once, however often
    /// it is submitted) and stores a new session.
    ///
    /// A repeat of a code that logged in gets that session as it is now only with an equal
    /// binding holding a proof, within the retry window of its flow; otherwise, or once the
    /// session has ended, [`LoginError::InvalidCode`] with errcode 40163 ("code used").
    pub async fn login_bound(
        &self,
        code: &AuthCode,
        binding: &LoginBinding<'_>,
    ) -> Result<Arc<SessionRecord>, LoginError> {
        self.login_part().login_bound(code, binding).await
    }

    /// Logs in `openid` of the Official Account `appid`, whom WeChat's signed push reported
    /// scanning a QR code (or sending a keyword): a session of [`Credentials::Scanned`] that
    /// lives [`SessionConfig::scan_session_ttl`], the login hook asked as for every login
    /// (flow [`LoginFlow::Scan`]). The caller has verified the push and made the scan single
    /// use; this opens a new session each time it is called.
    ///
    /// [`SessionConfig::scan_session_ttl`]: crate::SessionConfig::scan_session_ttl
    pub async fn login_scanned(
        &self,
        appid: &AppId,
        openid: wechat_oauth::OpenId,
        unionid: Option<wechat_oauth::UnionId>,
        from: Option<&wechat_session_store::LoginClient>,
    ) -> Result<Arc<SessionRecord>, LoginError> {
        self.login_part()
            .login_scanned(appid, openid, unionid, from.cloned())
            .await
    }

    pub(crate) fn login_part(&self) -> LoginCalls<'_, S> {
        LoginCalls {
            logins: &self.inner.logins,
            env: &self.inner.env,
            keys: &self.inner.session_keys,
        }
    }

    // The app access token (`app_token.rs`).

    /// App `appid`'s access token, for WeChat APIs this crate does not wrap: this instance's
    /// copy while fresh, else one refresh for the whole fleet (see the crate docs). While a
    /// refresh fails transiently, a copy that has not expired is still answered.
    pub async fn app_token(&self, appid: &AppId) -> Result<AppAccessToken, AppTokenError> {
        self.app_tokens().app_token(appid).await
    }

    /// Calls WeChat with app `appid`'s access token. If WeChat answers that the token is
    /// invalid or expired (40001, 40014, 42001), gets a new one once (the fleet's, or a forced
    /// refresh, see the crate docs) and calls again.
    pub async fn with_app_token<T, F, Fut>(&self, appid: &AppId, call: F) -> Result<T, CallError>
    where
        F: Fn(AppAccessToken) -> Fut,
        Fut: Future<Output = Result<T, wechat_oauth::Error>>,
    {
        self.app_tokens().with_app_token(appid, call).await
    }

    fn app_tokens(&self) -> AppTokenCalls<'_, S> {
        AppTokenCalls {
            tokens: &self.inner.app_tokens,
            env: &self.inner.env,
        }
    }

    // Mini Program calls (`mini_program.rs`).

    /// The phone number behind a Mini Program phone-number button's `code`, redeemed with the
    /// session's app. Only Mini Program sessions ([`CallError::NotPermitted`] otherwise).
    pub async fn phone_number(
        &self,
        sid: &SessionId,
        code: &PhoneCode,
    ) -> Result<PhoneInfo, CallError> {
        self.mini_program(sid).await?.phone_number(code).await
    }

    /// Asks WeChat whether the session's user's newest session key is still valid
    /// (`checksession`). [`CallError::SessionKeyInvalid`] when WeChat says it is not (87009):
    /// the Mini Program must `wx.login` again.
    pub async fn check_session_key(&self, sid: &SessionId) -> Result<(), CallError> {
        self.mini_program(sid).await?.check_session_key().await
    }

    /// Replaces the session's user's session key at WeChat (`resetusersessionkey`) and keeps
    /// the new one (for this session and as the user's newest). The client's data produced
    /// before the reset no longer decrypts.
    pub async fn reset_session_key(&self, sid: &SessionId) -> Result<(), CallError> {
        self.mini_program(sid).await?.reset_session_key().await
    }

    /// The session key data from this session's user is sealed under: the newest one known for
    /// the user in this app (a newer `wx.login` or a reset replaces it), else the session's
    /// own. `None` for sessions that are not Mini Program sessions.
    pub async fn session_key(
        &self,
        record: &SessionRecord,
    ) -> Result<Option<SessionKey>, SessionError> {
        self.inner
            .session_keys
            .newest(&self.inner.env, record)
            .await
    }

    /// The Mini Program calls on session `sid`, served as [`session`](Self::session) serves it;
    /// [`CallError::NotPermitted`] for a session that is not a Mini Program's.
    async fn mini_program(&self, sid: &SessionId) -> Result<MiniProgramCalls<'_, S>, CallError> {
        let record = self.session(sid).await?;
        if !matches!(record.credentials, Credentials::MiniProgram { .. }) {
            return Err(CallError::NotPermitted);
        }
        Ok(MiniProgramCalls {
            env: &self.inner.env,
            tokens: &self.inner.app_tokens,
            keys: &self.inner.session_keys,
            record,
        })
    }
}

impl<S: SharedStore> Inner<S> {
    async fn load(&self, sid: &SessionId) -> Result<Arc<SessionRecord>, SessionError> {
        self.env.store.get(sid).await?.ok_or(SessionError::NotFound)
    }

    /// Records a unionid WeChat revealed for a session that lacked it (a Mini Program gets one
    /// only under WeChat's conditions; a profile call may show it). Best effort: the session is
    /// served either way.
    async fn learn_unionid(&self, sid: &SessionId, unionid: &wechat_oauth::UnionId) {
        let Ok(current) = self.load(sid).await else {
            return;
        };
        let written = self
            .write_back(current, |record, _| {
                record.unionid.is_none().then(|| {
                    let mut next = record.clone();
                    next.unionid = Some(unionid.clone());
                    next
                })
            })
            .await;
        match written {
            Ok(_) => {
                tracing::debug!(sid = %sid, outcome = "unionid_learned", "WeChat revealed the session's unionid")
            }
            Err(error) => tracing::debug!(sid = %sid, %error, "a unionid could not be recorded"),
        }
    }

    /// The access token must be refreshed when it has less than this left: the refresh window
    /// less a per-session share of the jitter.
    fn refresh_margin(&self, sid: &SessionId) -> Duration {
        let window = self.env.config.refresh_window;
        // Jitter is in 0..=1 and spread in 0..1 (validated at build), so the factor is in 0..=1;
        // still, nothing here may panic on a bad float.
        let factor = (1.0 - self.env.config.refresh_jitter * sid.spread()).clamp(0.0, 1.0);
        Duration::try_from_secs_f64(window.as_secs_f64() * factor).unwrap_or(window)
    }

    /// The first instant at which `record` has expired or [`need`](Self::need) is not
    /// `Nothing`: [`need`]'s three conditions solved for `now`.
    fn serve_until(&self, record: &SessionRecord) -> SystemTime {
        let mut until = record.expires_at;
        if let Some((_, token_expires_at)) = record.access_token() {
            // In the window (`token_expires_at <= now + window`) and within the margin
            // (`token_expires_at - now <= margin`, or expired): the later of the two edges.
            let lead = self
                .env
                .config
                .refresh_window
                .min(self.refresh_margin(&record.sid));
            let refresh = token_expires_at
                .checked_sub(lead)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            until = until.min(refresh);
        }
        if let Some(check) = self
            .env
            .config
            .check_interval
            .and_then(|interval| record.confirmed_at.checked_add(interval))
        {
            until = until.min(check);
        }
        until
    }

    fn need(&self, record: &SessionRecord, now: SystemTime) -> Need {
        let Some((_, token_expires_at)) = record.access_token() else {
            return Need::Nothing;
        };
        // Times are compared, not subtracted, on this path (every request). The margin is at
        // most the window: beyond it (nearly always) no jitter is computed.
        let in_window = now
            .checked_add(self.env.config.refresh_window)
            .is_none_or(|edge| token_expires_at <= edge);
        if in_window
            && record.access_token_remaining(now).unwrap_or_default()
                <= self.refresh_margin(&record.sid)
        {
            return Need::Refresh;
        }
        match self.env.config.check_interval {
            Some(interval)
                if record
                    .confirmed_at
                    .checked_add(interval)
                    .is_some_and(|due| due <= now) =>
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
            Need::Check => match self.env.config.grace {
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

    /// A failure recorded for this session moments ago, to be answered again instead of asking
    /// WeChat. An expired entry is dropped.
    fn cooling_down(&self, sid: &SessionId, now: SystemTime) -> Option<SessionError> {
        let (until, error) = self.cooldown.get(sid)?;
        if now < until {
            return Some(error);
        }
        self.cooldown.invalidate(sid);
        None
    }

    /// Remembers a failure for this session until `now + for_how_long`.
    fn cool_down(&self, sid: SessionId, for_how_long: Duration, error: &SessionError) {
        let until = add_capped(self.env.clock.now(), for_how_long);
        self.cooldown.insert(sid, (until, error.clone()));
    }

    /// Brings a session up to date in a single flight.
    ///
    /// With `force` (the access token the caller saw and found wanting), the token is refreshed
    /// even if the record looks fresh — as long as the record still holds that token; if someone
    /// replaced or renewed it meanwhile, that result is used. If the flights joined had nothing
    /// to do and the record still holds the token, the answer is
    /// [`SessionError::Unavailable`], never the token the caller already found wanting.
    async fn maintain(
        self: &Arc<Self>,
        sid: SessionId,
        force: Option<&AccessToken>,
    ) -> Result<Arc<SessionRecord>, SessionError> {
        if let Some(error) = self.cooling_down(&sid, self.env.clock.now()) {
            return Err(error);
        }
        // A forced caller may join a flight that had nothing to do; then it flies its own.
        for _ in 0..2 {
            let inner = Arc::clone(self);
            let forced = force.cloned();
            let flown = self
                .flights
                .run(
                    sid,
                    move || async move { inner.fly(sid, forced.as_ref()).await },
                )
                .await
                .unwrap_or_else(|| {
                    Flown::untouched(Err(SessionError::Unavailable {
                        retry_after: Duration::from_secs(1),
                    }))
                });
            match (&flown.result, force) {
                (Ok(record), Some(seen)) if !flown.refreshed && holds(record, seen) => continue,
                _ => return flown.result,
            }
        }
        let current = self.load(&sid).await?;
        let Some(seen) = force else {
            return Ok(current); // Only a forced caller goes round the loop; kept total anyway.
        };
        if holds(&current, seen) {
            tracing::warn!(sid = %sid, outcome = "upstream_unavailable", "forced refresh did not happen; not serving the refused token");
            Err(SessionError::Unavailable {
                retry_after: self.env.config.failure_cooldown,
            })
        } else {
            Ok(current)
        }
    }

    /// What serving `record` needs, for a caller that may force a refresh of the token it saw.
    fn need_for(
        &self,
        record: &SessionRecord,
        force: Option<&AccessToken>,
        now: SystemTime,
    ) -> Need {
        if force.is_some_and(|seen| holds(record, seen)) {
            Need::Refresh
        } else {
            self.need(record, now)
        }
    }

    /// One flight: check the cooldown (a failure may have been recorded just before this flight
    /// took off), re-read, decide; if WeChat must be asked, do it under the session's lease so
    /// that one instance of the fleet asks at a time.
    async fn fly(&self, sid: SessionId, force: Option<&AccessToken>) -> Flown {
        let now = self.env.clock.now();
        if let Some(error) = self.cooling_down(&sid, now) {
            return Flown::untouched(Err(error));
        }
        let record = match self.load(&sid).await {
            Ok(record) => record,
            Err(error) => return Flown::untouched(Err(error)),
        };
        if self.need_for(&record, force, now) == Need::Nothing {
            return Flown::untouched(Ok(record));
        }
        self.fly_leased(sid, force).await
    }

    /// The upstream part of a flight, under the fleet-wide lease `refresh:<sid>`. The holder
    /// re-reads the record from the shared store (another instance may have done the work) and
    /// renews the lease while WeChat answers; the others poll the shared record until it no
    /// longer needs the work, or take the lease once it is free (a crashed holder's lease runs
    /// out). Compare-and-set still guards every write.
    async fn fly_leased(&self, sid: SessionId, force: Option<&AccessToken>) -> Flown {
        self.env.under_lease(
            &format!("refresh:{sid}"),
            Box::pin(self.fly_holding(sid, force)),
            move || async move {
                match self.env.store.get_shared(&sid).await {
                    Ok(None) => Some(Flown::untouched(Err(SessionError::NotFound))),
                    Ok(Some(record))
                        if self.need_for(&record, force, self.env.clock.now()) == Need::Nothing =>
                    {
                        tracing::debug!(sid = %sid, outcome = "done_elsewhere", "another instance brought the session up to date");
                        // A forced caller's token was replaced: that is the refresh it wanted.
                        Some(Flown {
                            result: Ok(record),
                            refreshed: force.is_some(),
                        })
                    }
                    _ => None,
                }
            },
            || {
                Flown::untouched(Err(SessionError::Unavailable {
                    retry_after: Duration::from_secs(1),
                }))
            },
            |error| async move { Flown::untouched(Err(error.into())) },
        )
        .await
    }

    /// Holding the lease: re-read from the shared store, decide again, call WeChat.
    async fn fly_holding(&self, sid: SessionId, force: Option<&AccessToken>) -> Flown {
        let record = match self.env.store.get_shared(&sid).await {
            Ok(Some(record)) => record,
            Ok(None) => return Flown::untouched(Err(SessionError::NotFound)),
            Err(error) => return Flown::untouched(Err(error.into())),
        };
        match self.need_for(&record, force, self.env.clock.now()) {
            Need::Nothing => Flown {
                refreshed: force.is_some(),
                result: Ok(record),
            },
            Need::Refresh => self.refresh(record).await,
            Need::Check => self.check(record).await,
        }
    }

    async fn refresh(&self, record: Arc<SessionRecord>) -> Flown {
        let Credentials::OAuth { refresh_token, .. } = &record.credentials else {
            return Flown::untouched(Ok(record));
        };
        let Some(client) = self.env.client_for(&record.appid) else {
            return Flown::untouched(Err(SessionError::NotFound));
        };
        match client.refresh_token(refresh_token).await {
            Ok(grant) => {
                let now = self.env.clock.now();
                let written = self
                    .write_back(record, |current, conflicted| {
                        // First pass: what WeChat just said, refresh token included, is stored.
                        // After a conflict the newer record wins: keep one refreshed later.
                        let theirs = current.access_token().map(|(_, at)| at);
                        (!conflicted || theirs <= Some(grant.access_token_expires_at))
                            .then(|| current.with_refresh(&grant, now))
                    })
                    .await;
                if let Ok(written) = &written {
                    crate::metrics::maintenance("refresh", "refreshed", "none");
                    tracing::debug!(sid = %written.sid, outcome = "refreshed", version = written.version, "session refreshed");
                }
                Flown {
                    result: written,
                    refreshed: true,
                }
            }
            Err(error) => self.failed(&record, Call::Refresh, error).await,
        }
    }

    async fn check(&self, record: Arc<SessionRecord>) -> Flown {
        let Some((access_token, _)) = record.access_token() else {
            return Flown::untouched(Ok(record));
        };
        let Some(client) = self.env.client_for(&record.appid) else {
            return Flown::untouched(Err(SessionError::NotFound));
        };
        match client
            .check_access_token(access_token, &record.openid)
            .await
        {
            Ok(()) => {
                let now = self.env.clock.now();
                let written = self
                    .write_back(record, |current, _| {
                        let mut next = current.clone();
                        next.confirmed_at = next.confirmed_at.max(now);
                        Some(next)
                    })
                    .await;
                if let Ok(written) = &written {
                    crate::metrics::maintenance("check", "checked", "none");
                    tracing::debug!(sid = %written.sid, outcome = "checked", "grant confirmed by WeChat");
                }
                Flown::untouched(written)
            }
            Err(error) if error.class() == ErrorClass::RefreshAndRetry => {
                tracing::debug!(sid = %record.sid, errcode = ?error.errcode(), "check: access token refused; refreshing");
                self.refresh(record).await
            }
            Err(error) => self.failed(&record, Call::Check, error).await,
        }
    }

    /// Compare-and-set loop. `update(current, conflicted)` maps the current record to the one
    /// to write, or `None` when the current one is already newer (then it is returned as is);
    /// `conflicted` is false on the first pass (the record this flight read) and true once a
    /// concurrent writer has been seen. A session deleted meanwhile (logout) is never
    /// resurrected.
    async fn write_back(
        &self,
        mut current: Arc<SessionRecord>,
        update: impl Fn(&SessionRecord, bool) -> Option<SessionRecord>,
    ) -> Result<Arc<SessionRecord>, SessionError> {
        let mut conflicted = false;
        loop {
            let Some(next) = update(&current, conflicted) else {
                return Ok(current);
            };
            match self
                .env
                .store
                .compare_and_set(current.version, next)
                .await?
            {
                CasOutcome::Stored(written) => return Ok(written),
                CasOutcome::Conflict {
                    current: Some(newer),
                } => {
                    current = newer;
                    conflicted = true;
                }
                CasOutcome::Conflict { current: None } => return Err(SessionError::NotFound),
            }
        }
    }

    /// Turns a WeChat error into the session's outcome. Only a gone grant deletes the session,
    /// and only if the record still holds the credential WeChat refused (another flight or
    /// instance may have refreshed it meanwhile: then that record is the answer). Everything
    /// else keeps the session and is remembered for a cooldown.
    async fn failed(
        &self,
        record: &SessionRecord,
        call: Call,
        error: wechat_oauth::Error,
    ) -> Flown {
        let sid = record.sid;
        let class = crate::metrics::class_label(&error);
        if let Some(errcode) = error.errcode().filter(|c| c.is_grant_gone()) {
            return self.grant_gone(record, call, errcode, class).await;
        }
        let (failure, cooldown) = match (error.class(), error.errcode()) {
            (ErrorClass::Misconfigured, Some(errcode)) => {
                crate::metrics::maintenance(call.name(), "misconfigured", class);
                tracing::error!(sid = %sid, call = call.name(), errcode = errcode.0, error = %error, "WeChat rejected this server's configuration: check the AppID and AppSecret");
                (
                    SessionError::Misconfigured { errcode },
                    MISCONFIGURED_COOLDOWN,
                )
            }
            (ErrorClass::Denied, Some(errcode)) => {
                crate::metrics::maintenance(call.name(), "denied", class);
                tracing::warn!(sid = %sid, call = call.name(), errcode = errcode.0, outcome = "denied", "WeChat denied the user");
                (
                    SessionError::Denied { errcode },
                    self.env.config.failure_cooldown,
                )
            }
            _ => {
                let retry_after = error
                    .retry_after()
                    .unwrap_or(self.env.config.failure_cooldown)
                    .max(self.env.config.failure_cooldown);
                crate::metrics::maintenance(call.name(), "unavailable", class);
                tracing::warn!(sid = %sid, call = call.name(), error = %error, outcome = "upstream_unavailable", "WeChat unavailable; keeping the session");
                (SessionError::Unavailable { retry_after }, retry_after)
            }
        };
        self.cool_down(sid, cooldown, &failure);
        Flown::untouched(Err(failure))
    }

    /// WeChat says the grant behind `record`'s credential is gone. Re-read first: if the record
    /// no longer holds the credential that was refused, someone refreshed it meanwhile and the
    /// session lives on; otherwise delete it.
    async fn grant_gone(
        &self,
        record: &SessionRecord,
        call: Call,
        errcode: ErrCode,
        class: &'static str,
    ) -> Flown {
        let sid = record.sid;
        // From the shared store itself: a local copy could still hold the refused credential.
        match self.env.store.get_shared(&sid).await {
            Ok(None) => {
                return Flown::untouched(Err(SessionError::Reauthorize { errcode }));
            }
            Ok(Some(current)) if !call.same_credential(record, &current) => {
                crate::metrics::maintenance(call.name(), "superseded", class);
                tracing::info!(sid = %sid, call = call.name(), errcode = errcode.0, outcome = "superseded", "WeChat refused a credential that was replaced meanwhile; keeping the session");
                return Flown {
                    result: Ok(current),
                    refreshed: true,
                };
            }
            Ok(Some(_)) => {}
            Err(e) => {
                // The session may have been refreshed meanwhile (by another instance, under a
                // sealing key this one lacks): never delete what could not be looked at.
                tracing::warn!(sid = %sid, error = %e, "could not re-read a session WeChat refused; keeping it");
                return Flown::untouched(Err(SessionError::Store(e)));
            }
        }
        crate::metrics::maintenance(call.name(), "grant_gone", class);
        tracing::info!(sid = %sid, call = call.name(), errcode = errcode.0, outcome = "grant_gone", "WeChat ended the grant; deleting the session");
        if let Err(e) = self.env.store.delete(&sid).await {
            tracing::warn!(sid = %sid, error = %e, "could not delete an ended session");
        }
        Flown::untouched(Err(SessionError::Reauthorize { errcode }))
    }
}

/// The upstream call a flight made, for logs and to know which credential WeChat judged.
#[derive(Clone, Copy, Debug)]
enum Call {
    /// `/sns/oauth2/refresh_token`, with the refresh token.
    Refresh,
    /// `/sns/auth`, with the access token.
    Check,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Self::Refresh => "refresh",
            Self::Check => "check",
        }
    }

    /// Whether `current` still holds the credential this call sent from `used`.
    fn same_credential(self, used: &SessionRecord, current: &SessionRecord) -> bool {
        match self {
            Self::Refresh => refresh_token(used) == refresh_token(current),
            Self::Check => {
                used.access_token().map(|(t, _)| t) == current.access_token().map(|(t, _)| t)
            }
        }
    }
}

fn refresh_token(record: &SessionRecord) -> Option<&wechat_oauth::RefreshToken> {
    match &record.credentials {
        Credentials::OAuth { refresh_token, .. } => Some(refresh_token),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::until;
    use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant, MockWeChat};
    use wechat_oauth::{AppId, AppSecret, AuthCode, ManualClock, RetryPolicy};

    const EXPIRY: Duration = Duration::from_secs(7200);

    /// Tokio's clock (paused in the tests that use it) read as a wall clock: the moka store's
    /// leases, kept in its memory, then run out on tokio's time.
    #[derive(Debug)]
    struct TokioClock {
        started: tokio::time::Instant,
        at: SystemTime,
    }

    impl wechat_oauth::Clock for TokioClock {
        fn now(&self) -> SystemTime {
            self.at + self.started.elapsed()
        }
    }

    /// Work slower than the lease: its holder keeps renewing it, so a second flight of the same
    /// name waits (it neither runs alongside nor gives up) and runs once the first is done.
    /// Break to see it fail: `leased` renewing every `lease_ttl * 3` (the lease runs out under
    /// the work and the second flight runs alongside), or `under_lease` giving up after
    /// `lease_ttl / 3` instead of three lease times.
    #[tokio::test(start_paused = true)]
    async fn a_lease_outlives_slow_work_and_the_next_flight_waits_for_it() {
        let client = Client::builder(AppId::new("wx_lease"), AppSecret::new("secret"))
            .build()
            .unwrap();
        let clock = Arc::new(TokioClock {
            started: tokio::time::Instant::now(),
            at: SystemTime::now(),
        });
        let cache = SessionManager::builder(client)
            .store(MokaStore::builder().clock(clock).build())
            .config(SessionConfig::default().lease_ttl(Duration::from_millis(300)))
            .build();
        let running = std::sync::atomic::AtomicBool::new(false);
        let overlapped = std::sync::atomic::AtomicBool::new(false);
        let work = |label: &'static str| {
            let (running, overlapped) = (&running, &overlapped);
            async move {
                if running.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    overlapped.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                running.store(false, std::sync::atomic::Ordering::SeqCst);
                label
            }
        };
        let flight = |label: &'static str| {
            cache.inner.env.under_lease(
                "refresh:slow",
                Box::pin(work(label)),
                || async { None },
                || "gave up",
                |_| async { "store error" },
            )
        };
        let first = flight("first");
        let second = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            flight("second").await
        };
        let (first, second) = tokio::join!(first, second);
        assert_eq!((first, second), ("first", "second"));
        assert!(
            !overlapped.load(std::sync::atomic::Ordering::SeqCst),
            "never both at once"
        );
    }

    /// `serve_until` is `need` and `is_expired` solved for the time: on either side of each
    /// edge (a nanosecond apart), for windows, jitters and check intervals that put any of the
    /// three first.
    #[tokio::test]
    async fn serve_until_is_the_first_instant_a_record_needs_upstream_or_ends() {
        let (_mock, clock, _) = setup().await;
        let client = |clock: &ManualClock| {
            Client::builder(AppId::new("wx_until"), AppSecret::new("secret"))
                .clock(Arc::new(clock.clone()))
                .build()
                .unwrap()
        };
        let nanos = Duration::from_nanos(1);
        let configs = [
            (Duration::from_secs(600), 0.0, None),
            (
                Duration::from_secs(600),
                0.5,
                Some(Duration::from_secs(300)),
            ),
            (
                Duration::from_secs(7_000),
                1.0,
                Some(Duration::from_secs(3 * 3600)),
            ),
            (Duration::ZERO, 0.0, Some(Duration::from_secs(60))),
        ];
        for (window, jitter, check) in configs {
            let cache = SessionManager::builder(client(&clock))
                .config(
                    SessionConfig::default()
                        .refresh_window(window, jitter)
                        .check_interval(check),
                )
                .build();
            for lifetime in [Duration::from_secs(30), Duration::from_secs(86_400)] {
                let mut record =
                    wechat_session_store::conformance::sample_record(&clock, "wx_until", "o_until");
                record.expires_at = record.created_at + lifetime;
                let until = cache.serve_until(&record);
                let servable = |now: SystemTime| {
                    !record.is_expired(now) && !cache.needs_upstream_at(&record, now)
                };
                let edges = [
                    until,
                    record.expires_at,
                    record.created_at + EXPIRY - window,
                ];
                for edge in edges {
                    for now in [edge - nanos, edge, edge + nanos] {
                        assert_eq!(now < until, servable(now), "{window:?} {jitter} {check:?}");
                    }
                }
                assert!(until > record.created_at, "servable when kept");
            }
        }
    }

    async fn setup() -> (MockWeChat, ManualClock, SessionManager) {
        let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
        let clock = ManualClock::new(mock.now());
        let client = Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
            .api_base(mock.base_url())
            .clock(Arc::new(clock.clone()))
            .retry(RetryPolicy::none())
            .build()
            .unwrap();
        (mock, clock, SessionManager::builder(client).build())
    }

    #[tokio::test]
    async fn a_flight_that_takes_off_during_a_cooldown_does_not_call_wechat() {
        let (mock, clock, cache) = setup().await;
        let code = AuthCode::new(mock.mint_code(MockGrant::default()));
        let session = cache.login(&code).await.unwrap();
        clock.advance(EXPIRY);
        mock.advance(EXPIRY);
        mock.inject(Endpoint::RefreshToken, Fault::ErrCode(-1), 1);
        assert!(matches!(
            cache.session(&session.sid).await,
            Err(SessionError::Unavailable { .. })
        ));
        assert_eq!(mock.calls(Endpoint::RefreshToken), 1);
        // A caller that checked the cooldown just before that failure was recorded, and whose
        // flight takes off just after, lands here.
        let token = session.access_token().unwrap().0.clone();
        for force in [None, Some(&token)] {
            let flown = cache.inner.fly(session.sid, force).await;
            assert!(
                matches!(flown.result, Err(SessionError::Unavailable { .. })),
                "{:?}",
                flown.result
            );
        }
        assert_eq!(mock.calls(Endpoint::RefreshToken), 1, "no upstream call");
        clock.advance(cache.config().failure_cooldown);
        let flown = cache.inner.fly(session.sid, None).await;
        assert!(
            flown.result.is_ok() && flown.refreshed,
            "after the cooldown"
        );
        assert_eq!(mock.calls(Endpoint::RefreshToken), 2);
    }

    #[tokio::test]
    async fn a_forced_refresh_that_only_joins_idle_flights_is_unavailable_not_stale() {
        use tokio::sync::Notify;
        let (mock, _clock, cache) = setup().await;
        let code = AuthCode::new(mock.mint_code(MockGrant::default()));
        let session = cache.login(&code).await.unwrap();
        let (sid, token) = (session.sid, session.access_token().unwrap().0.clone());
        let inner = Arc::clone(&cache.inner);
        // Other callers' flights that find nothing to do: they answer the record as it is.
        let idle = |gate: Arc<Notify>, landing: Option<Arc<Notify>>| {
            let record = Arc::clone(&session);
            move || async move {
                gate.notified().await;
                if let Some(landing) = landing {
                    landing.notify_one();
                }
                Flown::untouched(Ok(record))
            }
        };
        let (gate_a, gate_b, a_lands) = (
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
        );
        let flight_a = tokio::spawn({
            let (flights, work) = (
                Arc::clone(&inner.flights),
                idle(gate_a.clone(), Some(a_lands.clone())),
            );
            async move { flights.run(sid, work).await }
        });
        until("flight A takes off", || inner.flights.passengers(&sid) == 1).await;
        // The forced caller joins flight A...
        let forced = tokio::spawn({
            let (inner, token) = (Arc::clone(&inner), token.clone());
            async move { inner.maintain(sid, Some(&token)).await }
        });
        // ...and as A lands, flight B takes off before the forced caller goes round again.
        let flight_b = tokio::spawn({
            let (flights, work) = (Arc::clone(&inner.flights), idle(gate_b.clone(), None));
            async move {
                a_lands.notified().await;
                flights.run(sid, work).await
            }
        });
        until("the forced caller joins flight A", || {
            inner.flights.passengers(&sid) == 2
        })
        .await;
        gate_b.notify_one();
        gate_a.notify_one();
        match forced.await.unwrap() {
            Err(SessionError::Unavailable { retry_after }) => {
                assert_eq!(retry_after, cache.config().failure_cooldown)
            }
            other => panic!("the refused token must not be served again: {other:?}"),
        }
        assert!(flight_a.await.unwrap().is_some() && flight_b.await.unwrap().is_some());
        assert_eq!(mock.calls(Endpoint::RefreshToken), 0);
    }
}
