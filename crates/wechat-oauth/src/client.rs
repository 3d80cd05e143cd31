//! The [`Client`]: one configured connection to WeChat's sns endpoints.
//!
//! It owns the AppID and AppSecret, one shared reqwest client (redirects off, connect and total
//! timeouts), the retry policy for idempotent calls and the clock used to turn `expires_in` into
//! absolute expiries (counted from before the request is sent). Request URLs carry the AppSecret,
//! so they are never logged or reported, and a client given to
//! [`ClientBuilder::http_client`] must not follow redirects.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use url::Url;

use crate::authorize::{self, AuthorizeUrlError, OfficialAccountScope, State};
use crate::clock::{SharedClock, system_clock};
use crate::error::{Error, RedactedBody, TransportErrorKind};
use crate::types::{
    AccessToken, AppAccessToken, AppId, AppSecret, AppTokenGrant, AuthCode, Follower, Lang,
    MiniProgramSession, OpenId, PhoneCode, PhoneInfo, QrTicket, RefreshToken, SessionKey,
    TokenGrant, UserInfo,
};
use crate::wire;

/// WeChat's API base URL.
pub const DEFAULT_API_BASE: &str = "https://api.weixin.qq.com";
/// The default base of the Official Account's QR code images.
pub const DEFAULT_MP_BASE: &str = "https://mp.weixin.qq.com";
/// Default time allowed to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default time allowed for a whole request, connect to last byte.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(8);
/// Answers larger than this are not read (WeChat's are a few hundred bytes).
const MAX_BODY: usize = 256 * 1024;

/// How idempotent calls (refresh, auth check, userinfo) are retried on `-1`, transport errors
/// and 5xx: bounded exponential backoff with jitter. Code exchanges are never retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retries).
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles each retry.
    pub initial_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 3 attempts, waits of about 100 ms and 200 ms.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The wait after failed attempt number `attempt` (1-based): the exponential step, with a
    /// random part so that many clients do not retry in lockstep ("equal jitter": half fixed).
    fn backoff(&self, attempt: u32) -> Duration {
        let step = self
            .initial_backoff
            .saturating_mul(
                1u32.checked_shl(attempt.saturating_sub(1))
                    .unwrap_or(u32::MAX),
            )
            .min(self.max_backoff);
        let half = step / 2;
        half + half.mul_f64(rand::random::<f64>())
    }
}

/// Why a [`Client`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientBuildError {
    /// A base URL is not an absolute http(s) URL.
    #[error("invalid base URL {0:?}: it must be an absolute http or https URL")]
    InvalidBaseUrl(String),
    /// The HTTP client could not be created (e.g. no TLS backend).
    #[error("could not create the HTTP client: {0}")]
    Http(String),
}

/// Configures a [`Client`].
pub struct ClientBuilder {
    appid: AppId,
    secret: AppSecret,
    api_base: String,
    open_base: String,
    mp_base: String,
    connect_timeout: Duration,
    timeout: Duration,
    retry: RetryPolicy,
    clock: SharedClock,
    http: Option<reqwest::Client>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("appid", &self.appid)
            .field("secret", &self.secret)
            .field("api_base", &self.api_base)
            .field("open_base", &self.open_base)
            .field("mp_base", &self.mp_base)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// The API base URL (default `https://api.weixin.qq.com`): a proxy, or the fake in tests.
    pub fn api_base(mut self, url: impl Into<String>) -> Self {
        self.api_base = url.into();
        self
    }

    /// The base of the browser authorize URLs (default `https://open.weixin.qq.com`).
    pub fn open_base(mut self, url: impl Into<String>) -> Self {
        self.open_base = url.into();
        self
    }

    /// The base of the Official Account's QR code images (default `https://mp.weixin.qq.com`,
    /// see [`Client::qr_image_url`]).
    pub fn mp_base(mut self, url: impl Into<String>) -> Self {
        self.mp_base = url.into();
        self
    }

    /// Time allowed to connect (default 3 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for a whole request (default 8 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How idempotent calls are retried (default: [`RetryPolicy::default`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The clock used to compute absolute expiries (default: the system clock).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Use this reqwest client instead of building one. The total timeout is still applied per
    /// request; connect timeout and redirect policy are then the given client's.
    ///
    /// **The given client must not follow redirects.** The code exchanges carry the AppSecret in
    /// the query string: a client that follows a redirect (reqwest's default policy follows up
    /// to 10) would send it, in the URL, to wherever a proxy, a captive portal or a hijacked
    /// DNS answer points. Build it with `.redirect(reqwest::redirect::Policy::none())`.
    ///
    /// It should also have a connect timeout (and, ideally, a total timeout): without one a
    /// stalled connection holds a login or a refresh flight until the per-request
    /// [`timeout`](Self::timeout) runs out, and only that one applies.
    ///
    /// ```
    /// use std::time::Duration;
    /// use wechat_oauth::{AppId, AppSecret, Client};
    ///
    /// let http = reqwest::Client::builder()
    ///     .redirect(reqwest::redirect::Policy::none()) // required: the query holds the secret
    ///     .connect_timeout(Duration::from_secs(3))
    ///     .timeout(Duration::from_secs(8))
    ///     .build()
    ///     .unwrap();
    /// let client = Client::builder(AppId::new("wx123"), AppSecret::new("secret"))
    ///     .http_client(http)
    ///     .build()
    ///     .unwrap();
    /// # drop(client);
    /// ```
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Builds the client.
    pub fn build(self) -> Result<Client, ClientBuildError> {
        let api_base = parse_base(&self.api_base)?;
        let open_base = parse_base(&self.open_base)?;
        let mp_base = parse_base(&self.mp_base)?;
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(self.connect_timeout)
                .timeout(self.timeout)
                .user_agent(concat!("wechat-oauth/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| ClientBuildError::Http(e.without_url().to_string()))?,
        };
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                appid: self.appid,
                secret: self.secret,
                api_base,
                open_base,
                mp_base,
                timeout: self.timeout,
                retry: self.retry,
                clock: self.clock,
            }),
        })
    }
}

fn parse_base(raw: &str) -> Result<String, ClientBuildError> {
    let trimmed = raw.trim_end_matches('/');
    match Url::parse(trimmed) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.has_host()
                && url.query().is_none()
                && url.fragment().is_none() =>
        {
            Ok(trimmed.to_owned())
        }
        _ => Err(ClientBuildError::InvalidBaseUrl(raw.to_owned())),
    }
}

/// A typed client for WeChat's OAuth endpoints. Cheap to clone; clones share one connection pool.
///
/// ```no_run
/// use wechat_oauth::{AppId, AppSecret, AuthCode, Client};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::builder(AppId::new("wx1234567890abcdef"), AppSecret::new("the-secret"))
///     .build()?;
/// let grant = client.exchange_code(&AuthCode::new("code-from-the-app")).await?;
/// println!("logged in: {} scopes {}", grant.openid, grant.scopes);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    appid: AppId,
    secret: AppSecret,
    api_base: String,
    open_base: String,
    mp_base: String,
    timeout: Duration,
    retry: RetryPolicy,
    clock: SharedClock,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("appid", &self.inner.appid)
            .field("secret", &self.inner.secret)
            .field("api_base", &self.inner.api_base)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

/// The endpoints, named for logs.
#[derive(Clone, Copy)]
enum Endpoint {
    AccessToken,
    RefreshToken,
    Auth,
    UserInfo,
    JsCode2Session,
    /// `stable_token` in normal mode: the current token, no new one issued.
    StableToken,
    /// `stable_token` with `force_refresh`: a new token, from a small daily quota.
    StableTokenForced,
    PhoneNumber,
    CheckSession,
    ResetSessionKey,
    QrCodeCreate,
    FollowerInfo,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Self::AccessToken => "/sns/oauth2/access_token",
            Self::RefreshToken => "/sns/oauth2/refresh_token",
            Self::Auth => "/sns/auth",
            Self::UserInfo => "/sns/userinfo",
            Self::JsCode2Session => "/sns/jscode2session",
            Self::StableToken | Self::StableTokenForced => "/cgi-bin/stable_token",
            Self::PhoneNumber => "/wxa/business/getuserphonenumber",
            Self::CheckSession => "/wxa/checksession",
            Self::ResetSessionKey => "/wxa/resetusersessionkey",
            Self::QrCodeCreate => "/cgi-bin/qrcode/create",
            Self::FollowerInfo => "/cgi-bin/user/info",
        }
    }

    /// The endpoint's metric label.
    fn name(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
            Self::Auth => "auth",
            Self::UserInfo => "userinfo",
            Self::JsCode2Session => "jscode2session",
            Self::StableToken => "stable_token",
            Self::StableTokenForced => "stable_token_forced",
            Self::PhoneNumber => "getuserphonenumber",
            Self::CheckSession => "checksession",
            Self::ResetSessionKey => "resetusersessionkey",
            Self::QrCodeCreate => "qrcode_create",
            Self::FollowerInfo => "user_info",
        }
    }

    /// Whether a repeat has the same effect: not the single-use code exchanges (login and phone
    /// codes), not a forced token refresh (each spends quota), not a session key reset (each
    /// issues a new key).
    fn idempotent(self) -> bool {
        matches!(
            self,
            Self::RefreshToken
                | Self::Auth
                | Self::UserInfo
                | Self::StableToken
                | Self::CheckSession
                | Self::FollowerInfo
        )
    }
}

impl Client {
    /// Starts configuring a client for one application (`Client::builder("wx...", secret)`:
    /// strings convert, or pass an [`AppId`] and [`AppSecret`]).
    pub fn builder(appid: impl Into<AppId>, secret: impl Into<AppSecret>) -> ClientBuilder {
        ClientBuilder {
            appid: appid.into(),
            secret: secret.into(),
            api_base: DEFAULT_API_BASE.to_owned(),
            open_base: authorize::DEFAULT_OPEN_BASE.to_owned(),
            mp_base: DEFAULT_MP_BASE.to_owned(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::default(),
            clock: system_clock(),
            http: None,
        }
    }

    /// The application's AppID.
    pub fn appid(&self) -> &AppId {
        &self.inner.appid
    }

    /// The clock this client computes expiries with.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// This client on `clock` (sharing its HTTP connections): what a session manager does to
    /// every app it serves, so one clock, the first client's, runs them all.
    pub fn with_clock(&self, clock: SharedClock) -> Self {
        if Arc::ptr_eq(&self.inner.clock, &clock) {
            return self.clone();
        }
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                http: inner.http.clone(),
                appid: inner.appid.clone(),
                secret: inner.secret.clone(),
                api_base: inner.api_base.clone(),
                open_base: inner.open_base.clone(),
                mp_base: inner.mp_base.clone(),
                timeout: inner.timeout,
                retry: inner.retry,
                clock,
            }),
        }
    }

    /// Exchanges a code from a mobile app, website or Official Account page
    /// (`/sns/oauth2/access_token`). Never retried: a code is single use.
    pub async fn exchange_code(&self, code: &AuthCode) -> Result<TokenGrant, Error> {
        // Expiry counts from before the request: latency can only make it earlier, not later.
        let sent_at = self.inner.clock.now();
        let wire: wire::WireGrant = self
            .call(
                Endpoint::AccessToken,
                &[
                    ("appid", self.inner.appid.as_str()),
                    ("secret", self.inner.secret.secret()),
                    ("code", code.secret()),
                    ("grant_type", "authorization_code"),
                ],
            )
            .await?;
        wire.into_grant(sent_at)
    }

    /// Refreshes (or renews) the access token (`/sns/oauth2/refresh_token`). Store the refresh
    /// token that comes back. Retried on transient failures.
    pub async fn refresh_token(&self, refresh_token: &RefreshToken) -> Result<TokenGrant, Error> {
        // Read before the first attempt: retries and latency never overstate the expiry.
        let sent_at = self.inner.clock.now();
        let wire: wire::WireGrant = self
            .call(
                Endpoint::RefreshToken,
                &[
                    ("appid", self.inner.appid.as_str()),
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.secret()),
                ],
            )
            .await?;
        wire.into_grant(sent_at)
    }

    /// Asks WeChat whether an access token is still valid (`/sns/auth`). `Ok(())` means valid;
    /// an invalid token is an [`Error::Api`] (40001, 40014, 42001, 40003) and a busy WeChat is
    /// a different, retryable error — never a plain "invalid". Retried on transient failures.
    pub async fn check_access_token(
        &self,
        access_token: &AccessToken,
        openid: &OpenId,
    ) -> Result<(), Error> {
        let _: wire::WireOk = self
            .call(
                Endpoint::Auth,
                &[
                    ("access_token", access_token.secret()),
                    ("openid", openid.as_str()),
                ],
            )
            .await?;
        Ok(())
    }

    /// Reads the user's profile (`/sns/userinfo`). Needs a `snsapi_userinfo` or `snsapi_login`
    /// grant; with `snsapi_base` WeChat answers 48001. Retried on transient failures.
    pub async fn userinfo(
        &self,
        access_token: &AccessToken,
        openid: &OpenId,
        lang: Lang,
    ) -> Result<UserInfo, Error> {
        let wire: wire::WireUserInfo = self
            .call(
                Endpoint::UserInfo,
                &[
                    ("access_token", access_token.secret()),
                    ("openid", openid.as_str()),
                    ("lang", lang.as_str()),
                ],
            )
            .await?;
        Ok(wire.into())
    }

    /// Exchanges a Mini Program `wx.login()` code (`/sns/jscode2session`). Never retried.
    pub async fn jscode2session(&self, code: &AuthCode) -> Result<MiniProgramSession, Error> {
        let wire: wire::WireMiniProgramSession = self
            .call(
                Endpoint::JsCode2Session,
                &[
                    ("appid", self.inner.appid.as_str()),
                    ("secret", self.inner.secret.secret()),
                    ("js_code", code.secret()),
                    ("grant_type", "authorization_code"),
                ],
            )
            .await?;
        wire.try_into()
    }

    /// The app's access token (`POST /cgi-bin/stable_token`). With `force_refresh` false WeChat
    /// answers the current token (several servers asking get the same one); with true it issues
    /// a new one, which WeChat allows a few times a day: only after it said the token is invalid
    /// (40001). Normal mode is retried on transient failures, forced mode never.
    ///
    /// Most servers want this through a cache that shares one token per app across a fleet
    /// (`wechat-sessions`'s `SessionManager::app_token`), not called per request.
    pub async fn stable_token(&self, force_refresh: bool) -> Result<AppTokenGrant, Error> {
        let sent_at = self.inner.clock.now();
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": self.inner.appid.as_str(),
            "secret": self.inner.secret.secret(),
            "force_refresh": force_refresh,
        });
        let endpoint = if force_refresh {
            Endpoint::StableTokenForced
        } else {
            Endpoint::StableToken
        };
        let wire: wire::WireAppToken = self.call_with(endpoint, &[], Some(&body)).await?;
        wire.into_grant(sent_at)
    }

    /// A user's phone number from a phone-number button's code
    /// (`POST /wxa/business/getuserphonenumber`). Never retried: the code is single use. An
    /// invalid, used or expired code is 40029; an invalid app token 40001/42001.
    pub async fn phone_number(
        &self,
        app_token: &AppAccessToken,
        code: &PhoneCode,
    ) -> Result<PhoneInfo, Error> {
        let body = serde_json::json!({ "code": code.secret() });
        let wire: wire::WirePhone = self
            .call_with(
                Endpoint::PhoneNumber,
                &[("access_token", app_token.secret())],
                Some(&body),
            )
            .await?;
        wire.into_phone(&self.inner.appid)
    }

    /// Asks WeChat whether a Mini Program user's session key is still the valid one
    /// (`GET /wxa/checksession`, signed with `hmac_sha256(session_key, "")`). `Ok(())` means
    /// valid; 87009 means it is not (the user must `wx.login` again). Retried on transient
    /// failures.
    pub async fn check_session_key(
        &self,
        app_token: &AppAccessToken,
        openid: &OpenId,
        session_key: &SessionKey,
    ) -> Result<(), Error> {
        let _: wire::WireOk = self
            .call_signed(Endpoint::CheckSession, app_token, openid, session_key)
            .await?;
        Ok(())
    }

    /// Replaces a Mini Program user's session key (`GET /wxa/resetusersessionkey`, signed with
    /// the current key) and returns the new one; the old one stops working. Never retried: each
    /// call issues a new key.
    pub async fn reset_session_key(
        &self,
        app_token: &AppAccessToken,
        openid: &OpenId,
        session_key: &SessionKey,
    ) -> Result<SessionKey, Error> {
        let wire: wire::WireSessionKey = self
            .call_signed(Endpoint::ResetSessionKey, app_token, openid, session_key)
            .await?;
        wire.into_key()
    }

    /// A temporary parametric QR code of this Official Account (`POST /cgi-bin/qrcode/create`,
    /// `QR_STR_SCENE`): scanning it pushes a `SCAN` event (or `subscribe`, for a new follower)
    /// with `scene` to the account's server URL. `scene` is 1–64 characters; `expire` is at most
    /// 30 days. Never retried (each call makes a new code). Needs a verified service account
    /// (otherwise 48001).
    pub async fn create_qr_scene(
        &self,
        app_token: &AppAccessToken,
        scene: &str,
        expire: Duration,
    ) -> Result<QrTicket, Error> {
        let body = serde_json::json!({
            "expire_seconds": expire.as_secs().clamp(60, 2_592_000),
            "action_name": "QR_STR_SCENE",
            "action_info": { "scene": { "scene_str": scene } },
        });
        let sent_at = self.inner.clock.now();
        let wire: wire::WireQrTicket = self
            .call_with(
                Endpoint::QrCodeCreate,
                &[("access_token", app_token.secret())],
                Some(&body),
            )
            .await?;
        wire.into_ticket(sent_at)
    }

    /// The image of a QR code's `ticket` (`/cgi-bin/showqrcode` on `mp.weixin.qq.com`, no
    /// token needed): what a page shows for the user to scan.
    pub fn qr_image_url(&self, ticket: &str) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("ticket", ticket);
        format!(
            "{}/cgi-bin/showqrcode?{}",
            self.inner.mp_base,
            query.finish()
        )
    }

    /// A follower of this Official Account (`GET /cgi-bin/user/info`): whether they follow, and
    /// their unionid when the account is bound to an Open Platform account. Retried on
    /// transient failures.
    pub async fn follower(
        &self,
        app_token: &AppAccessToken,
        openid: &OpenId,
    ) -> Result<Follower, Error> {
        let wire: wire::WireFollower = self
            .call_with(
                Endpoint::FollowerInfo,
                &[
                    ("access_token", app_token.secret()),
                    ("openid", openid.as_str()),
                    ("lang", "zh_CN"),
                ],
                None,
            )
            .await?;
        wire.into_follower()
    }

    /// A session key call: the app token, the user, and the key's signature.
    async fn call_signed<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        app_token: &AppAccessToken,
        openid: &OpenId,
        session_key: &SessionKey,
    ) -> Result<T, Error> {
        let signature = session_signature(session_key);
        self.call_with(
            endpoint,
            &[
                ("access_token", app_token.secret()),
                ("openid", openid.as_str()),
                ("signature", &signature),
                ("sig_method", "hmac_sha256"),
            ],
            None,
        )
        .await
    }

    /// The website QR-login URL (`/connect/qrconnect`, `snsapi_login`) for this app.
    pub fn website_authorize_url(
        &self,
        redirect_uri: &str,
        state: &State,
    ) -> Result<String, AuthorizeUrlError> {
        authorize::qrconnect_url(
            &self.inner.open_base,
            &self.inner.appid,
            redirect_uri,
            state,
        )
    }

    /// The Official Account (in-WeChat browser) authorize URL for this app.
    pub fn official_account_authorize_url(
        &self,
        redirect_uri: &str,
        scope: OfficialAccountScope,
        state: &State,
    ) -> Result<String, AuthorizeUrlError> {
        authorize::oauth2_authorize_url(
            &self.inner.open_base,
            &self.inner.appid,
            redirect_uri,
            scope,
            state,
        )
    }

    async fn call<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        query: &[(&str, &str)],
    ) -> Result<T, Error> {
        self.call_with(endpoint, query, None).await
    }

    /// A call: GET with `query`, or POST of `body` as JSON when given.
    async fn call_with<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, Error> {
        let body = body.map(|b| b.to_string());
        let mut url = Url::parse(&format!("{}{}", self.inner.api_base, endpoint.path()))
            .expect("base URL validated at build time");
        url.query_pairs_mut().extend_pairs(query);
        let max_attempts = if endpoint.idempotent() {
            self.inner.retry.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 1;
        loop {
            let started = Instant::now();
            let result = self.call_once(url.clone(), body.as_deref()).await;
            let outcome = match &result {
                Ok(_) => "ok",
                Err(Error::Api(_)) => "api_error",
                Err(Error::Transport { .. }) => "transport_error",
                Err(Error::HttpStatus { .. }) => "http_status",
                Err(Error::Decode { .. }) => "decode_error",
            };
            let elapsed = started.elapsed();
            metrics::counter!(
                crate::metrics::UPSTREAM_REQUESTS,
                "endpoint" => endpoint.name(),
                "outcome" => outcome,
            )
            .increment(1);
            metrics::histogram!(crate::metrics::UPSTREAM_DURATION, "endpoint" => endpoint.name())
                .record(elapsed.as_secs_f64());
            tracing::debug!(
                endpoint = endpoint.path(),
                attempt,
                outcome,
                errcode = result.as_ref().err().and_then(Error::errcode).map(|c| c.0),
                elapsed_ms = elapsed.as_millis() as u64,
                "wechat call"
            );
            match result {
                Err(error) if attempt < max_attempts && error.is_auto_retryable() => {
                    tokio::time::sleep(self.inner.retry.backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn call_once<T: DeserializeOwned>(
        &self,
        url: Url,
        body: Option<&str>,
    ) -> Result<T, Error> {
        let request = match body {
            None => self.inner.http.get(url),
            Some(body) => self
                .inner
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_owned()),
        };
        let mut response = request
            .timeout(self.inner.timeout)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Error::Decode {
                    reason: format!("answer larger than {MAX_BODY} bytes"),
                    body: RedactedBody::new(&String::from_utf8_lossy(&body)),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if status != reqwest::StatusCode::OK {
            return Err(Error::HttpStatus {
                status: status.as_u16(),
                body: RedactedBody::new(&String::from_utf8_lossy(&body)),
            });
        }
        wire::decode(&body)
    }
}

/// The signature of the session key APIs: hex `hmac_sha256(key = session_key, message = "")`,
/// the key being the session key's text as WeChat sent it.
pub(crate) fn session_signature(session_key: &SessionKey) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_key.secret().as_bytes());
    let tag = hmac::sign(&key, b"");
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Keeps only the kind of a reqwest error: its message and sources may name the URL.
fn transport_error(error: reqwest::Error) -> Error {
    let kind = if error.is_timeout() {
        TransportErrorKind::Timeout
    } else if error.is_connect() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Io
    };
    Error::Transport { kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for _ in 0..100 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            assert!(policy.backoff(40) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn base_urls_are_validated() {
        assert!(parse_base("https://api.weixin.qq.com/").is_ok());
        assert_eq!(
            parse_base("http://127.0.0.1:9/prefix/").unwrap(),
            "http://127.0.0.1:9/prefix"
        );
        assert!(parse_base("api.weixin.qq.com").is_err());
        assert!(parse_base("ftp://x").is_err());
        assert!(parse_base("https://x/?q=1").is_err());
    }
}
