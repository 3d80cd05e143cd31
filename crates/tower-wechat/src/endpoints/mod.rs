//! The endpoints an application mounts: code login (mobile app / website), Mini Program login,
//! website and Official Account start + callback, logout and logout-all; and a user's list of
//! their own sessions (`sessions.rs`).
//!
//! [`LoginEndpoints`] holds the logic, independent of any framework: each operation takes typed
//! input and returns a typed outcome with its HTTP rendering ([`LoginSuccess::to_json`],
//! [`AuthError::to_response`]). With the `axum` feature, [`LoginEndpoints::router`] mounts
//! them:
//!
//! | route | answer |
//! |---|---|
//! | `POST /auth/wechat/login` `{"code","request_id"?}` | the mobile app's login: 200 `{"token","token_type":"Bearer","expires_in","user":{"openid","unionid","scope","app","appid","user_id","snapshot"}}` |
//! | `POST /auth/wechat/miniprogram/login` `{"code","request_id"?}` | the Mini Program's, the same via `jscode2session` |
//! | `GET /auth/wechat/web/start?app=web\|oa&return_to=/path&scope=snsapi_base\|snsapi_userinfo` | 302 to WeChat's authorize URL with a signed state: the Official Account's inside WeChat (`MicroMessenger` in the User-Agent), else the website's QR login, unless `app` chooses (website flow: plus an HttpOnly binding cookie the state is tied to) |
//! | `GET /auth/wechat/web/callback?code&state&return_to` | sets the session cookie, 302 to `return_to` (a path on this site) or the configured page |
//! | `POST /auth/logout` | 204; the session token is refused from then on (idempotent; works while WeChat is down) |
//! | `POST /auth/logout/all` | 204; every session of the user ends |
//!
//! Each endpoint is bound to an app ([`AppKind`]): the mobile app, the Mini Program, the website
//! and the Official Account each have their own AppID, configured on the layer's builder; the
//! endpoints of an app that is not configured answer 404 `app_not_configured`, and a code of
//! one app sent to another's endpoint is refused by WeChat (401 `invalid_code`).
//!
//! Failures: 400 `invalid_request` / `invalid_state`, 415 `unsupported_media_type`, 401
//! `invalid_code` (with WeChat's `errcode`), 403 `access_denied` / `snapshot_user` / the login
//! hook's own code, 429 `too_many_attempts`, 503 `upstream_unavailable` / `store_unavailable` /
//! `accounts_unavailable` (with `Retry-After`), 500 `misconfigured`, 404 `app_not_configured` /
//! `web_login_disabled`.
//!
//! # What a code, a state and a cookie can be used for
//!
//! - A **login code** opens one session, for the client that submitted it. Submits in flight
//!   together share one exchange; after it, a repeat gets the same session only with the same
//!   proof within 60 s — the web callback's binding cookie, or the `request_id` the JSON body
//!   carried the first time — and 401 `invalid_code` (errcode 40163) otherwise. A code used
//!   through one endpoint never opens a session through another.
//! - An **OAuth state** is single-use and, in the website flow, bound to the binding cookie of
//!   the browser that started the login: the first callback consumes it, a repeat with the same
//!   code is the duplicate-callback case above, with another code it is refused (400
//!   `invalid_state`). Official Account states cannot be bound (WeChat's in-app browser drops
//!   cookies); their callbacks get a 5 s retry window only.
//! - Exchanges failed or in flight are limited per client and in total ([`LoginLimits`]),
//!   counted before they start; over a limit the
//!   endpoints answer 429 with `Retry-After` without asking WeChat.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{HeaderValue, header};
use moka::sync::Cache;
use serde::Serialize;
use sha2::Sha256;
use wechat_oauth::AppId;
use wechat_oauth::{AuthCode, OfficialAccountScope};
use wechat_sessions::{
    LoginBinding, LoginClient, LoginFlow, MokaStore, SessionId, SessionManager, SessionRecord,
    SharedStore, UserId,
};

use crate::apps::{AppKind, Apps};
use crate::cookie::{SameSite, SessionCookie};
use crate::limits::{Admission, LoginLimiter, LoginLimits};
use crate::pages::ErrorPages;
use crate::rejection::AuthError;
use crate::state::{STATE_TTL, StateError, StateSigner};
use crate::token::{IssuedToken, TokenIssuer};
use crate::user::WeChatUser;

mod config;
mod scan;
mod sessions;

pub(crate) use config::LoginSettings;
pub use config::{ClientKey, LoginClientOf, LoginPaths, ScanLogin, WebFlow};
pub use scan::{SCAN_BINDING_COOKIE, ScanPoll, ScanPushError, ScanStart, ScanStatus};
pub use sessions::UserSessions;

/// Longest login code accepted (WeChat's are about 32 characters).
const MAX_CODE_LEN: usize = 256;
/// The length bounds of a client-chosen request id.
const REQUEST_ID_LEN: std::ops::RangeInclusive<usize> = 16..=64;

/// A code posted to a JSON login endpoint. Its `Debug` never shows the code.
#[derive(Clone, Copy)]
pub struct CodeLogin<'a> {
    code: &'a str,
    request_id: Option<&'a str>,
    client: Option<&'a str>,
    from: Option<&'a LoginClient>,
}

impl fmt::Debug for CodeLogin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CodeLogin")
            .field("code", &"[redacted]")
            .field("request_id", &self.request_id)
            .field("client", &self.client)
            .field("from", &self.from)
            .finish()
    }
}

impl<'a> CodeLogin<'a> {
    /// A submit of `code`.
    pub fn new(code: &'a str) -> Self {
        Self {
            code,
            request_id: None,
            client: None,
            from: None,
        }
    }

    /// The client-chosen request id (16–64 characters of `[A-Za-z0-9_-]`) that a retry of the
    /// same submit sends again to get the same session (see [`LoginEndpoints::login`]).
    pub fn request_id(mut self, id: Option<&'a str>) -> Self {
        self.request_id = id;
        self
    }

    /// Who is asking, for the login limits ([`LoginLimits`]): e.g. the client's IP.
    pub fn client(mut self, key: Option<&'a str>) -> Self {
        self.client = key;
        self
    }

    /// Where the login comes from, recorded in its session (see
    /// [`LoginEndpoints::login_client_of`]).
    pub fn from(mut self, client: Option<&'a LoginClient>) -> Self {
        self.from = client;
        self
    }
}

/// WeChat's redirect back to the web callback, as the browser sent it. Its `Debug` never shows
/// the code.
#[derive(Clone, Copy, Default)]
#[non_exhaustive]
pub struct WebCallback<'a> {
    /// The `code` query parameter (absent when the user declined).
    pub code: Option<&'a str>,
    /// The `state` query parameter.
    pub state: Option<&'a str>,
    /// The website flow's binding cookie ([`BINDING_COOKIE`]), if the browser sent it.
    pub binding: Option<&'a str>,
    /// The `return_to` query parameter the start endpoint put in the callback URL.
    pub return_to: Option<&'a str>,
    /// Who is asking, for the login limits ([`LoginLimits`]).
    pub client: Option<&'a str>,
    /// Whether the browser is WeChat's own (`MicroMessenger` in its User-Agent): an Official
    /// Account callback is refused from any other (see [`WebFlow::official_account_anywhere`]).
    pub in_wechat: bool,
    /// Where the login comes from, recorded in its session.
    pub from: Option<&'a LoginClient>,
}

impl fmt::Debug for WebCallback<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebCallback")
            .field("code", &self.code.map(|_| "[redacted]"))
            .field("state", &self.state)
            .field("return_to", &self.return_to)
            .field("client", &self.client)
            .field("in_wechat", &self.in_wechat)
            .finish_non_exhaustive()
    }
}

/// Whether a request comes from WeChat's in-app browser (`MicroMessenger` in its User-Agent).
fn in_wechat(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ua| ua.contains("MicroMessenger"))
}

impl<'a> WebCallback<'a> {
    /// A callback with these query parameters and binding cookie.
    pub fn new(code: Option<&'a str>, state: Option<&'a str>, binding: Option<&'a str>) -> Self {
        Self {
            code,
            state,
            binding,
            return_to: None,
            client: None,
            in_wechat: false,
            from: None,
        }
    }

    /// Whether the browser is WeChat's own; [`from_headers`](Self::from_headers) sets it.
    pub fn in_wechat(mut self, in_wechat: bool) -> Self {
        self.in_wechat = in_wechat;
        self
    }

    /// Sets [`in_wechat`](Self::in_wechat) from the request's User-Agent.
    pub fn from_headers(self, headers: &http::HeaderMap) -> Self {
        self.in_wechat(in_wechat(headers))
    }

    /// Who is asking, for the login limits.
    pub fn client(mut self, key: Option<&'a str>) -> Self {
        self.client = key;
        self
    }

    /// The `return_to` query parameter of the callback.
    pub fn return_to(mut self, return_to: Option<&'a str>) -> Self {
        self.return_to = return_to;
        self
    }

    /// Where the login comes from, recorded in its session.
    pub fn from(mut self, client: Option<&'a LoginClient>) -> Self {
        self.from = client;
        self
    }
}

/// A request to start a browser login: which app, and where to come back to.
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct StartRequest<'a> {
    /// The app chosen explicitly ([`AppKind::Website`] or [`AppKind::OfficialAccount`]).
    pub app: Option<AppKind>,
    /// Whether the browser is WeChat's own (`MicroMessenger` in its User-Agent): then the
    /// Official Account flow is chosen when one is configured.
    pub in_wechat: bool,
    /// The page to come back to: a path on this site (one `/`, no `//` or backslash, visible ASCII, at most 512 bytes); anything else
    /// falls back to [`WebFlow::after_login`].
    pub return_to: Option<&'a str>,
    /// The Official Account scope to ask for (default [`WebFlow::official_account_scope`]):
    /// `snsapi_userinfo` to upgrade a `snsapi_base` login.
    pub scope: Option<OfficialAccountScope>,
}

impl<'a> StartRequest<'a> {
    /// A start request as a browser with these headers sends it: `in_wechat` from its
    /// User-Agent.
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        Self {
            in_wechat: in_wechat(headers),
            ..Self::default()
        }
    }

    /// Choose the app.
    pub fn app(mut self, app: Option<AppKind>) -> Self {
        self.app = app;
        self
    }

    /// Where to come back to.
    pub fn return_to(mut self, return_to: Option<&'a str>) -> Self {
        self.return_to = return_to;
        self
    }

    /// The Official Account scope.
    pub fn scope(mut self, scope: Option<OfficialAccountScope>) -> Self {
        self.scope = scope;
        self
    }
}

/// The longest `return_to` accepted.
const MAX_RETURN_TO: usize = 512;

/// `return_to` if it is a path on this site: it starts with one `/` (not `//` or `/\`, which
/// browsers read as another host), holds no backslash and only visible ASCII (browsers drop
/// tabs and newlines, turning `/\t/evil` into `//evil`), and is at most 512 bytes. `None`
/// otherwise: the caller falls back to its default page. No open redirect.
pub(crate) fn safe_return_to(return_to: &str) -> Option<&str> {
    let bytes = return_to.as_bytes();
    let well_formed = bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && bytes.len() <= MAX_RETURN_TO
        && bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\');
    well_formed.then_some(return_to)
}

/// The name of the website flow's binding cookie (HttpOnly, 10 minutes; `__Host-` prefixed
/// like the session cookie).
pub const BINDING_COOKIE: &str = "wechat_login_binding";

/// Where to send the browser to start a web login.
#[derive(Clone, Debug)]
pub struct WebStart {
    /// WeChat's authorize URL, with a signed state.
    pub url: String,
    /// For the website flow: the `Set-Cookie` value of the binding cookie the state is tied to.
    pub binding_cookie: Option<HeaderValue>,
}

/// A successful login: the session and the token for the client.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LoginSuccess {
    /// The session token to hand to the client.
    pub token: IssuedToken,
    /// The session.
    pub record: Arc<SessionRecord>,
    /// The kind of app the user logged in to.
    pub app: AppKind,
    /// For a browser flow: the page to send the browser to (a path on this site).
    pub return_to: Option<String>,
}

#[derive(Serialize)]
struct LoginBody<'a> {
    token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    user: UserBody<'a>,
}

/// The public view of a user, as the login answer shows it.
#[derive(Serialize)]
struct UserBody<'a> {
    openid: &'a str,
    unionid: Option<&'a str>,
    scope: Vec<&'a str>,
    app: &'static str,
    appid: &'a str,
    user_id: &'a str,
    snapshot: bool,
}

impl LoginSuccess {
    /// `{"token","token_type":"Bearer","expires_in","user":{"openid","unionid","scope":[..],
    /// "app","appid","user_id","snapshot"}}`
    pub fn to_json(&self) -> Bytes {
        let record = &self.record;
        let body = LoginBody {
            token: &self.token.value,
            token_type: "Bearer",
            expires_in: self.token.expires_in,
            user: UserBody {
                openid: record.openid.as_str(),
                unionid: record.unionid.as_ref().map(|u| u.as_str()),
                scope: record.scopes.iter().map(|s| s.as_str()).collect(),
                app: self.app.as_str(),
                appid: record.appid.as_str(),
                user_id: record.user_id.as_str(),
                snapshot: record.snapshot_user,
            },
        };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

/// Whether a request asks for HTML (a browser navigating).
#[cfg(feature = "axum")]
pub(crate) fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

#[cfg(feature = "axum")]
fn json_response<B: From<Bytes>>(status: http::StatusCode, body: Vec<u8>) -> http::Response<B> {
    let mut response = http::Response::new(B::from(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The login and logout endpoints of one application. Cheap to clone, whatever the store.
///
/// An application state that holds them with `#[derive(Clone)]` works for every store of this
/// project (each is `Clone`); over a generic store type, `derive` asks that type to be `Clone`
/// too (axum then reports "the trait `Handler` is not implemented" until it is): implement
/// `Clone` for the state by hand, or bound the type.
pub struct LoginEndpoints<St = MokaStore> {
    inner: Arc<Inner<St>>,
}

/// Everything the endpoints share; made once, by the layer's builder.
pub(crate) struct Inner<St> {
    cache: SessionManager<St>,
    apps: Apps,
    tokens: Arc<TokenIssuer>,
    cookie: SessionCookie,
    states: StateSigner,
    web: Option<WebFlow>,
    paths: LoginPaths,
    limiter: Arc<LoginLimiter>,
    client_key: ClientKey,
    login_client: config::LoginClientOf,
    /// States a callback has used, and a keyed hash of the code it used them with.
    used_states: Cache<String, [u8; 32]>,
    code_key: [u8; 32],
    /// Whether a login without a client key has been warned about.
    warned_no_client_key: AtomicBool,
    /// Writes the browser's failure pages.
    pages: Arc<dyn ErrorPages>,
    /// Scan-to-log-in, when configured.
    scan: Option<scan::Scan>,
}

/// The login flows' keys, derived from the key ring (the same on every instance of a fleet):
/// OAuth states are signed with `state`, the code a state was used with is hashed with
/// `used_state`, scan scenes and their binding cookies are signed with `scan`.
pub(crate) struct FlowKeys {
    pub(crate) state: [u8; 32],
    pub(crate) used_state: [u8; 32],
    pub(crate) scan: [u8; 32],
}

impl<St: SharedStore> Inner<St> {
    /// The endpoints' state, with the flows' `keys`; an error names a scan login setting that
    /// cannot be used.
    pub(crate) fn new(
        cache: SessionManager<St>,
        apps: Apps,
        tokens: Arc<TokenIssuer>,
        cookie: SessionCookie,
        settings: LoginSettings,
        keys: FlowKeys,
    ) -> Result<Self, String> {
        let FlowKeys {
            state: state_key,
            used_state: used_state_key,
            scan: scan_key,
        } = keys;
        let clock = Arc::clone(cache.clock());
        let scan = match (settings.scan, apps.app(AppKind::OfficialAccount)) {
            (Some(config), Some(appid)) => Some(scan::Scan::new(
                config,
                appid.clone(),
                scan_key,
                Arc::clone(&clock),
            )?),
            _ => None,
        };
        Ok(Self {
            scan,
            states: StateSigner::from_secret(&state_key, Arc::clone(&clock)),
            limiter: Arc::new(LoginLimiter::new(settings.limits, clock)),
            web: settings.web,
            paths: settings.paths,
            client_key: settings.client_key,
            login_client: settings.login_client,
            used_states: used_states(),
            code_key: used_state_key,
            warned_no_client_key: AtomicBool::new(false),
            pages: settings.pages,
            cache,
            apps,
            tokens,
            cookie,
        })
    }
}

fn used_states() -> Cache<String, [u8; 32]> {
    Cache::builder()
        .max_capacity(1_000_000)
        // A state verifies for STATE_TTL plus a minute of skew; remember its use longer.
        .time_to_live(STATE_TTL + Duration::from_secs(120))
        .build()
}

impl<St> Clone for LoginEndpoints<St> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<St> fmt::Debug for LoginEndpoints<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginEndpoints")
            .field("web", &self.inner.web)
            .finish_non_exhaustive()
    }
}

/// Put in a response's extensions by a handler that changed the session itself (login,
/// logout): the layer then adds no re-issued token for the old session to that response.
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionChanged;

impl<St: SharedStore> LoginEndpoints<St> {
    /// The endpoints over their shared state (see [`LoginEndpoints::new`], in the layer's
    /// module: the layer's builder makes that state).
    pub(crate) fn from_state(inner: Arc<Inner<St>>) -> Self {
        Self { inner }
    }

    /// `failure` as an HTML page for a browser, linking to a new login at this application's
    /// start path, written by the builder's [`ErrorPages`] for a browser that sent `request`
    /// (its `Accept-Language` chooses the built-in pages' language).
    pub fn html_failure<B: From<Bytes>>(
        &self,
        failure: &AuthError,
        request: &http::HeaderMap,
    ) -> http::Response<B> {
        let page = self
            .inner
            .pages
            .page(failure, &self.inner.paths.web_start, request);
        failure.html_response(page)
    }

    /// The client key of a request, as the builder's
    /// [`client_key`](crate::WeChatAuthBuilder::client_key) configures it. The first request
    /// without one, while a per-client limit is set, logs a warning (once per layer): the
    /// server is not recording peer addresses (served without [`serve`](crate::serve) or
    /// `into_make_service_with_connect_info`), so only the global login limit applies.
    pub fn client_of(&self, parts: &http::request::Parts) -> Option<String> {
        let key = (self.inner.client_key)(parts);
        if key.is_none()
            && self.inner.limiter.limits().per_client > 0
            && !self
                .inner
                .warned_no_client_key
                .swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "a login request came without a client key, so the per-client login limit is off \
                 and only the global one applies: serve with tower_wechat::serve (or axum's \
                 into_make_service_with_connect_info), or set the builder's client_key behind a proxy"
            );
        }
        key
    }

    /// Where a login request comes from, as the builder's
    /// [`login_client`](crate::WeChatAuthBuilder::login_client) reads it: what the new session
    /// records for the user's list of their sessions.
    pub fn login_client_of(&self, parts: &http::request::Parts) -> Option<LoginClient> {
        (self.inner.login_client)(parts)
    }

    fn issue(&self, record: Arc<SessionRecord>, app: AppKind) -> Result<LoginSuccess, AuthError> {
        let token = self.inner.tokens.issue(&record).map_err(|error| {
            tracing::error!(%error, "could not sign a session token");
            AuthError::Misconfigured
        })?;
        Ok(LoginSuccess {
            token,
            record,
            app,
            return_to: None,
        })
    }

    /// The AppID serving `kind`, or 404 `app_not_configured`.
    fn app(&self, kind: AppKind) -> Result<&AppId, AuthError> {
        self.inner.apps.app(kind).ok_or(AuthError::AppNotConfigured)
    }

    /// Exchanges a code a client posted (mobile app, or a website's own front end) and opens a
    /// session. A retry of the same submit gets the same session within 60 s if it carries the
    /// same [`request_id`](CodeLogin::request_id); any other repeat of the code is refused
    /// (401 `invalid_code`, errcode 40163).
    pub async fn login(&self, request: CodeLogin<'_>) -> Result<LoginSuccess, AuthError> {
        self.login_through(AppKind::MobileApp, request).await
    }

    /// Exchanges a Mini Program `wx.login()` code and opens a session; retries as for
    /// [`login`](Self::login).
    pub async fn login_mini_program(
        &self,
        request: CodeLogin<'_>,
    ) -> Result<LoginSuccess, AuthError> {
        self.login_through(AppKind::MiniProgram, request).await
    }

    /// A JSON code login to the app of `kind` (the mobile app or the Mini Program).
    async fn login_through(
        &self,
        kind: AppKind,
        request: CodeLogin<'_>,
    ) -> Result<LoginSuccess, AuthError> {
        let appid = self.app(kind)?;
        let code = valid_code(request.code)?;
        let flow = match kind {
            AppKind::MiniProgram => LoginFlow::MiniProgram,
            _ => LoginFlow::Code,
        };
        let mut binding = LoginBinding::new(flow).app(appid);
        if let Some(id) = request.request_id {
            binding = binding.proof(valid_request_id(id)?);
        }
        if let Some(from) = request.from {
            binding = binding.client(from);
        }
        let admission = self.admit(request.client, flow)?;
        self.exchange(&code, &binding, kind, admission).await
    }

    /// The limits' admission of an exchange for `client`: 429 `too_many_attempts` without
    /// asking WeChat or writing anything when it is over a limit.
    fn admit(&self, client: Option<&str>, flow: LoginFlow) -> Result<Admission, AuthError> {
        self.inner.limiter.admit(client).map_err(|wait| {
            tracing::warn!(
                outcome = "login_limited",
                ?flow,
                "too many failed login attempts; refused without asking WeChat"
            );
            AuthError::TooManyAttempts(wait)
        })
    }

    /// The one way a code becomes a session: the exchange, under an admission of the limits
    /// (settled by [`settle_refused`] when it fails).
    async fn exchange(
        &self,
        code: &AuthCode,
        binding: &LoginBinding<'_>,
        app: AppKind,
        admission: Admission,
    ) -> Result<LoginSuccess, AuthError> {
        match self.inner.cache.login_bound(code, binding).await {
            Ok(record) => {
                admission.succeeded();
                self.issue(record, app)
            }
            Err(error) => {
                let failure = AuthError::from(error);
                settle_refused(admission, &failure);
                Err(failure)
            }
        }
    }

    /// The login limits in force.
    pub fn login_limits(&self) -> LoginLimits {
        self.inner.limiter.limits()
    }

    /// The WeChat authorize URL to send the browser to, with a fresh signed state: the Official
    /// Account's inside WeChat, else the website's, unless the request chooses (see
    /// [`StartRequest`]).
    pub fn web_start(&self, request: StartRequest<'_>) -> Result<WebStart, AuthError> {
        let web = self.inner.web.as_ref().ok_or(AuthError::WebLoginDisabled)?;
        let apps = &self.inner.apps;
        let kind = match request.app {
            Some(kind @ (AppKind::Website | AppKind::OfficialAccount)) => kind,
            Some(_) => {
                return Err(AuthError::BadRequest(
                    "app must be web or oa for a browser login",
                ));
            }
            None if request.in_wechat && apps.app(AppKind::OfficialAccount).is_some() => {
                AppKind::OfficialAccount
            }
            None if apps.app(AppKind::Website).is_some() => AppKind::Website,
            None => AppKind::OfficialAccount,
        };
        let appid = self.app(kind)?;
        let client = self
            .inner
            .cache
            .client_for(appid)
            .ok_or(AuthError::AppNotConfigured)?;
        let return_to = request
            .return_to
            .and_then(safe_return_to)
            .filter(|path| *path != web.after_login)
            .unwrap_or("");
        let redirect_uri = with_return_to(&web.redirect_uri(&self.inner.paths), return_to);
        let (url, binding_cookie) = match kind {
            AppKind::OfficialAccount => {
                let state = self.inner.states.issue(kind, "", return_to);
                let scope = request.scope.unwrap_or(web.official_account_scope);
                let url = client.official_account_authorize_url(&redirect_uri, scope, &state);
                (url, None)
            }
            _ => {
                let binding = StateSigner::new_binding();
                let state = self.inner.states.issue(kind, &binding, return_to);
                let cookie = self
                    .binding_cookie()
                    .set(&binding, crate::state::STATE_TTL.as_secs());
                (client.website_authorize_url(&redirect_uri, &state), cookie)
            }
        };
        let url = url.map_err(|error| {
            tracing::error!(%error, "the web flow's redirect_uri is not usable");
            AuthError::Misconfigured
        })?;
        Ok(WebStart {
            url,
            binding_cookie,
        })
    }

    /// The URL that asks an Official Account user for the profile scope (`snsapi_userinfo`)
    /// and comes back to `return_to`: what a `snsapi_base` session is sent to when a page needs
    /// the profile. `None` without an Official Account or the browser flow.
    pub fn reauthorize_url(&self, return_to: &str) -> Option<String> {
        let web = self.inner.web.as_ref()?;
        self.inner.apps.app(AppKind::OfficialAccount)?;
        let return_to = safe_return_to(return_to).unwrap_or(&web.after_login);
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("app", "oa")
            .append_pair("scope", "snsapi_userinfo")
            .append_pair("return_to", return_to);
        Some(format!("{}?{}", self.inner.paths.web_start, query.finish()))
    }

    /// `error` as `user`'s handler should answer it: an [`AuthError::ScopeInsufficient`] of an
    /// Official Account session (not a snapshot user) carries the
    /// [`reauthorize_url`](Self::reauthorize_url) that asks for the profile scope and comes
    /// back to `return_to`; any other error is returned as it is.
    ///
    /// ```no_run
    /// # use tower_wechat::{AuthError, LoginEndpoints, WeChatUser};
    /// # async fn profile(endpoints: LoginEndpoints, user: WeChatUser) -> Result<String, AuthError> {
    /// let info = user
    ///     .userinfo(wechat_oauth::Lang::ZhCn)
    ///     .await
    ///     .map_err(|error| endpoints.offer_reauthorize(&user, error, "/profile"))?;
    /// # Ok(info.nickname) }
    /// ```
    pub fn offer_reauthorize(
        &self,
        user: &WeChatUser,
        error: AuthError,
        return_to: &str,
    ) -> AuthError {
        match error {
            AuthError::ScopeInsufficient { reauthorize: None }
                if user.app_kind() == Some(AppKind::OfficialAccount)
                    && !user.is_snapshot_user() =>
            {
                AuthError::ScopeInsufficient {
                    reauthorize: self.reauthorize_url(return_to),
                }
            }
            other => other,
        }
    }

    /// Handles WeChat's redirect back: verifies the state (for the website flow, against the
    /// binding cookie's value; always against the `return_to` it was issued with) and consumes
    /// it, exchanges the code with the state's app and opens a session. No code means the user
    /// declined. WeChat calling the callback twice (same state, same code, same browser) gets
    /// the same session; a used state with another code is refused.
    pub async fn web_callback(&self, callback: WebCallback<'_>) -> Result<LoginSuccess, AuthError> {
        let web = self.inner.web.as_ref().ok_or(AuthError::WebLoginDisabled)?;
        let state = callback.state.unwrap_or("");
        let return_to = callback.return_to.unwrap_or("");
        let binding = match StateSigner::claimed_flow(state) {
            AppKind::OfficialAccount => "",
            _ => callback
                .binding
                .filter(|b| !b.is_empty())
                .ok_or(AuthError::InvalidState(StateError::Invalid))?,
        };
        let kind = self.inner.states.verify(state, binding, return_to)?;
        if kind == AppKind::OfficialAccount && !callback.in_wechat && !web.official_account_anywhere
        {
            tracing::warn!(
                outcome = "oa_callback_outside_wechat",
                "an Official Account callback came from a browser that is not WeChat's; refused"
            );
            return Err(AuthError::InvalidState(StateError::Invalid));
        }
        let appid = self.app(kind)?;
        let mut binding = match kind {
            AppKind::OfficialAccount => {
                LoginBinding::new(LoginFlow::OfficialAccountCallback).proof(state)
            }
            _ => LoginBinding::new(LoginFlow::WebCallback).proof(binding),
        }
        .app(appid);
        if let Some(from) = callback.from {
            binding = binding.client(from);
        }
        let code = callback
            .code
            .filter(|c| !c.is_empty())
            .ok_or(AuthError::AccessDenied(None))?;
        let code = valid_code(code)?;
        // Admitted before anything is written: a refused callback leaves its state unused.
        let admission = self.admit(callback.client, binding.flow())?;
        if let Err(refused) = self.consume_state(state, &code).await {
            settle_refused(admission, &refused);
            return Err(refused);
        }
        let mut success = self.exchange(&code, &binding, kind, admission).await?;
        let back = safe_return_to(return_to).unwrap_or(&web.after_login);
        success.return_to = Some(back.to_owned());
        Ok(success)
    }

    /// Marks `state` used with `code`: the first callback with a state consumes it; a later one
    /// passes only with the same code (WeChat calling twice; the login then decides).
    async fn consume_state(&self, state: &str, code: &AuthCode) -> Result<(), AuthError> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.inner.code_key)
            .expect("HMAC takes keys of any length");
        mac.update(code.secret().as_bytes());
        let code_hash: [u8; 32] = mac.finalize().into_bytes().into();
        // Here first, then the fleet (a store shared by several instances remembers it too).
        let entry = self
            .inner
            .used_states
            .entry_by_ref(state)
            .or_insert(code_hash);
        let mut first = *entry.value();
        if entry.is_fresh() {
            let key = format!("state:{state}");
            let ttl = STATE_TTL + Duration::from_secs(120);
            match self
                .inner
                .cache
                .store()
                .put_value_if_absent(&key, code_hash.to_vec(), ttl)
                .await
            {
                Ok(Some(theirs)) => {
                    // Used elsewhere first: remember that here, so a retry is refused here too.
                    first = theirs.try_into().unwrap_or([0; 32]);
                    self.inner.used_states.insert(state.to_owned(), first);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%error, "a used OAuth state could not be recorded: the session store is unavailable");
                    self.inner.used_states.invalidate(state);
                    return Err(AuthError::StoreUnavailable);
                }
            }
        }
        if first != code_hash {
            tracing::warn!(
                outcome = "state_reused",
                "an OAuth state was used again with another code"
            );
            return Err(AuthError::InvalidState(StateError::Used));
        }
        Ok(())
    }

    /// The `Set-Cookie` value carrying a new session's token.
    pub fn session_cookie(&self, success: &LoginSuccess) -> Option<HeaderValue> {
        self.inner
            .cookie
            .set(&success.token.value, success.token.expires_in)
    }

    /// The `Set-Cookie` value that clears the session cookie.
    pub fn clear_cookie(&self) -> Option<HeaderValue> {
        self.inner.cookie.clear()
    }

    /// The attributes of a browser flow's cookie called `name` (the binding cookies): the
    /// session cookie's `Secure` and prefix, but always `Path=/` and `SameSite=Lax`, so the
    /// browser sends it on WeChat's cross-site redirect to the callback wherever that is
    /// mounted.
    pub(crate) fn flow_cookie(&self, name: &str) -> SessionCookie {
        let mut cookie = self.inner.cookie.with_name(name);
        cookie.path = "/".into();
        cookie.same_site = SameSite::Lax;
        cookie
    }

    /// The website flow's binding cookie.
    fn binding_cookie(&self) -> SessionCookie {
        self.flow_cookie(BINDING_COOKIE)
    }

    /// The `Set-Cookie` value that clears the website flow's binding cookie.
    pub fn clear_binding_cookie(&self) -> Option<HeaderValue> {
        self.binding_cookie().clear()
    }

    /// The binding cookie's value in a request, if exactly one was sent.
    pub fn binding<'a>(&self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        self.binding_cookie().value_in(headers)
    }

    /// The session a request's token names, live or not (for logout routes of the app's own):
    /// the [`WeChatUser`]'s, or the session of a token that verified but whose session could
    /// not be served (ended, WeChat or the store unavailable).
    pub fn session_in(&self, extensions: &http::Extensions) -> Option<SessionId> {
        extensions
            .get::<WeChatUser>()
            .map(WeChatUser::session_id)
            .or_else(|| {
                extensions
                    .get::<crate::user::VerifiedSession>()
                    .map(|v| v.0)
            })
    }

    /// Ends the user's current session.
    pub async fn logout(&self, user: &WeChatUser) -> Result<(), AuthError> {
        self.logout_session(user.session_id()).await
    }

    /// Ends one session by id (idempotent: an ended session is fine).
    pub async fn logout_session(&self, sid: SessionId) -> Result<(), AuthError> {
        self.inner.cache.logout(&sid).await.map_err(|error| {
            tracing::error!(%error, "logout failed: the session store is unavailable");
            AuthError::StoreUnavailable
        })?;
        tracing::info!(sid = %sid, outcome = "logged_out", "session ended");
        Ok(())
    }

    /// Ends every session of the user.
    pub async fn logout_all(&self, user: &WeChatUser) -> Result<usize, AuthError> {
        self.end_user(user.user_id().clone(), user.session_id())
            .await
    }

    /// Ends every session of the user a verified session token names, without serving that
    /// session: works while WeChat is down or the access token has expired, as long as the
    /// session still exists. `Ok(None)` when it does not (ended, or another app's).
    pub async fn logout_all_by_session(&self, sid: SessionId) -> Result<Option<usize>, AuthError> {
        let record = self.inner.cache.store().get(&sid).await.map_err(|error| {
            tracing::error!(%error, "logout-all failed: the session store is unavailable");
            AuthError::StoreUnavailable
        })?;
        match record {
            Some(record) if self.inner.cache.serves(&record) => {
                self.end_user(record.user(), sid).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn end_user(&self, user: UserId, sid: SessionId) -> Result<usize, AuthError> {
        let ended = self.inner.cache.logout_all(&user).await.map_err(|error| {
            tracing::error!(%error, "logout-all failed: the session store is unavailable");
            AuthError::StoreUnavailable
        })?;
        tracing::info!(sid = %sid, ended, outcome = "logged_out_all", "all sessions of the user ended");
        Ok(ended)
    }
}

/// Settles an admission whose login was refused with `failure`: a failure of the client's own
/// (a code WeChat refused, a state used with another code) keeps its place in the limits;
/// anything else (WeChat or the store unavailable, the login hook) gives it back.
fn settle_refused(admission: Admission, failure: &AuthError) {
    match failure {
        AuthError::InvalidCode(_) | AuthError::InvalidState(_) => admission.failed(),
        _ => admission.succeeded(),
    }
}

/// `redirect_uri` with `return_to=<path>` added to its query (unchanged when `return_to` is
/// empty): WeChat keeps the query and appends `code` and `state`.
fn with_return_to(redirect_uri: &str, return_to: &str) -> String {
    if return_to.is_empty() {
        return redirect_uri.to_owned();
    }
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("return_to", return_to);
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    format!("{redirect_uri}{separator}{}", query.finish())
}

/// A request id is 16–64 characters of `[A-Za-z0-9_-]`.
fn valid_request_id(id: &str) -> Result<&str, AuthError> {
    let well_formed = REQUEST_ID_LEN.contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(AuthError::BadRequest(
            "request_id must be 16 to 64 characters of A-Z, a-z, 0-9, - and _",
        ));
    }
    Ok(id)
}

fn valid_code(code: &str) -> Result<AuthCode, AuthError> {
    if code.is_empty() || code.len() > MAX_CODE_LEN || !code.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::BadRequest(
            "code must be 1 to 256 printable ASCII characters",
        ));
    }
    Ok(AuthCode::new(code))
}

#[cfg(feature = "axum")]
mod router;
