//! The endpoints an application mounts: code login (mobile app / website), Mini Program login,
//! website and Official Account start + callback, logout and logout-all.
//!
//! [`LoginEndpoints`] holds the logic, independent of any framework: each operation takes typed
//! input and returns a typed outcome with its HTTP rendering ([`LoginSuccess::to_json`],
//! [`LoginFailure::to_response`]). With the `axum` feature, [`LoginEndpoints::router`] mounts
//! them:
//!
//! | route | answer |
//! |---|---|
//! | `POST /auth/wechat/login` `{"code"}` | 200 `{"token","token_type":"Bearer","expires_in","user":{"openid","unionid","scope"}}` |
//! | `POST /auth/wechat/miniprogram/login` `{"code"}` | the same, via `jscode2session` |
//! | `GET /auth/wechat/web/start` | 302 to WeChat's authorize URL with a signed state (website flow: plus an HttpOnly binding cookie the state is tied to) |
//! | `GET /auth/wechat/web/callback?code&state` | sets the session cookie, 302 to the configured page |
//! | `POST /auth/logout` | 204; the session token is refused from then on (idempotent; works while WeChat is down) |
//! | `POST /auth/logout/all` | 204; every session of the user ends |
//!
//! Failures: 400 `invalid_request` / `invalid_state`, 401 `invalid_code` (with WeChat's
//! `errcode`), 403 `access_denied`, 503 `upstream_unavailable` / `store_unavailable` (with
//! `Retry-After`), 500 `misconfigured`, 404 `web_login_disabled`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;
use wechat_oauth::{AuthCode, ErrCode, OfficialAccountScope};
use wechat_token_cache::{LoginError, MokaStore, SessionId, SessionRecord, TokenCache, TokenStore};

use crate::auth::{SessionCookie, WeChatAuthLayer};
use crate::state::{StateError, StateSigner};
use crate::token::{IssuedToken, SessionTokens};
use crate::user::WeChatUser;

/// Longest login code accepted (WeChat's are about 32 characters).
const MAX_CODE_LEN: usize = 256;

/// Which browser flow the web start/callback endpoints run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebFlowKind {
    /// Website QR login (`qrconnect`, `snsapi_login`).
    Website,
    /// Page inside WeChat (Official Account, `oauth2/authorize`).
    OfficialAccount(OfficialAccountScope),
}

/// Settings of the browser flow.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WebFlow {
    /// The absolute URL of the callback endpoint, as registered with WeChat.
    pub redirect_uri: String,
    /// Website or Official Account.
    pub kind: WebFlowKind,
    /// Where the callback sends the browser after login (default `/`).
    pub after_login: String,
}

impl WebFlow {
    /// A website QR-login flow calling back to `redirect_uri`.
    pub fn website(redirect_uri: impl Into<String>) -> Self {
        Self {
            redirect_uri: redirect_uri.into(),
            kind: WebFlowKind::Website,
            after_login: "/".into(),
        }
    }

    /// An Official Account flow calling back to `redirect_uri`.
    pub fn official_account(redirect_uri: impl Into<String>, scope: OfficialAccountScope) -> Self {
        Self {
            redirect_uri: redirect_uri.into(),
            kind: WebFlowKind::OfficialAccount(scope),
            after_login: "/".into(),
        }
    }

    /// Where to send the browser after login.
    pub fn after_login(mut self, path: impl Into<String>) -> Self {
        self.after_login = path.into();
        self
    }
}

/// The name of the website flow's binding cookie (HttpOnly, 10 minutes).
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
pub struct LoginSuccess {
    /// The session token to hand to the client.
    pub token: IssuedToken,
    /// The session.
    pub record: Arc<SessionRecord>,
}

#[derive(Serialize)]
struct LoginBody<'a> {
    token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    user: UserBody<'a>,
}

/// The public view of a user, as the login and `/me` answers show it.
#[derive(Serialize)]
struct UserBody<'a> {
    openid: &'a str,
    unionid: Option<&'a str>,
    scope: Vec<&'a str>,
}

impl LoginSuccess {
    /// `{"token","token_type":"Bearer","expires_in","user":{"openid","unionid","scope":[..]}}`
    pub fn to_json(&self) -> Bytes {
        let body = LoginBody {
            token: &self.token.token,
            token_type: "Bearer",
            expires_in: self.token.expires_in,
            user: UserBody {
                openid: self.record.openid.as_str(),
                unionid: self.record.unionid.as_ref().map(|u| u.as_str()),
                scope: self.record.scopes.iter().map(|s| s.as_str()).collect(),
            },
        };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

/// Why a login endpoint failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginFailure {
    /// The request is malformed (body, code). (400)
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The callback's state is not ours or expired. (400)
    #[error(transparent)]
    InvalidState(#[from] StateError),
    /// WeChat rejected the code. (401)
    #[error("WeChat rejected the login code (errcode {0})")]
    InvalidCode(ErrCode),
    /// The user declined, or WeChat denies this user. (403)
    #[error("access denied")]
    AccessDenied(Option<ErrCode>),
    /// WeChat is unavailable. (503)
    #[error("WeChat is temporarily unavailable")]
    Unavailable(Duration),
    /// The session store is unavailable. (503)
    #[error("the session store is temporarily unavailable")]
    StoreUnavailable,
    /// WeChat rejected the server's configuration. (500)
    #[error("the server's WeChat configuration is wrong")]
    Misconfigured,
    /// The browser flow is not configured. (404)
    #[error("web login is not enabled")]
    WebLoginDisabled,
}

impl From<LoginError> for LoginFailure {
    fn from(error: LoginError) -> Self {
        if let LoginError::Store(store) = &error {
            tracing::error!(error = %store, "login failed: the session store is unavailable");
        }
        match error {
            LoginError::InvalidCode { errcode } => Self::InvalidCode(errcode),
            LoginError::Denied { errcode } => Self::AccessDenied(Some(errcode)),
            LoginError::Unavailable { retry_after } => Self::Unavailable(retry_after),
            LoginError::Misconfigured { .. } => Self::Misconfigured,
            // Store failures, and any variant added later: the session was not stored.
            _ => Self::StoreUnavailable,
        }
    }
}

#[derive(Serialize)]
struct FailureBody {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    errcode: Option<i64>,
    message: String,
}

impl LoginFailure {
    /// A stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidState(_) => "invalid_state",
            Self::InvalidCode(_) => "invalid_code",
            Self::AccessDenied(_) => "access_denied",
            Self::Unavailable(_) => "upstream_unavailable",
            Self::StoreUnavailable => "store_unavailable",
            Self::Misconfigured => "misconfigured",
            Self::WebLoginDisabled => "web_login_disabled",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) | Self::InvalidState(_) => StatusCode::BAD_REQUEST,
            Self::InvalidCode(_) => StatusCode::UNAUTHORIZED,
            Self::AccessDenied(_) => StatusCode::FORBIDDEN,
            Self::Unavailable(_) | Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Misconfigured => StatusCode::INTERNAL_SERVER_ERROR,
            Self::WebLoginDisabled => StatusCode::NOT_FOUND,
        }
    }

    /// `{"error":"<code>","errcode"?:N,"message":"..."}` with the status and `Retry-After`
    /// where it applies.
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let errcode = match self {
            Self::InvalidCode(code) | Self::AccessDenied(Some(code)) => Some(code.0),
            _ => None,
        };
        let body = FailureBody {
            error: self.code(),
            errcode,
            message: self.to_string(),
        };
        let mut response =
            json_response(self.status(), serde_json::to_vec(&body).unwrap_or_default());
        let retry_after = match self {
            Self::Unavailable(after) => Some(after.as_secs().max(1)),
            Self::StoreUnavailable => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

fn json_response<B: From<Bytes>>(status: StatusCode, body: Vec<u8>) -> Response<B> {
    let mut response = Response::new(B::from(Bytes::from(body)));
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

/// The login and logout endpoints of one application. Cheap to clone.
pub struct LoginEndpoints<St = MokaStore> {
    inner: Arc<Inner<St>>,
}

struct Inner<St> {
    cache: TokenCache<St>,
    tokens: Arc<SessionTokens>,
    cookie: SessionCookie,
    states: StateSigner,
    web: Option<WebFlow>,
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

impl<St: TokenStore> LoginEndpoints<St> {
    /// Endpoints sharing a layer's session cache, tokens and cookie. The browser flow is off
    /// until [`web_flow`](Self::web_flow); states are signed with a random key until
    /// [`state_secret`](Self::state_secret) (needed when several instances share the work).
    pub fn new<R>(layer: &WeChatAuthLayer<St, R>) -> Self {
        let clock = Arc::clone(layer.cache().clock());
        Self {
            inner: Arc::new(Inner {
                cache: layer.cache().clone(),
                tokens: Arc::clone(layer.tokens()),
                cookie: layer.cookie().clone(),
                states: StateSigner::random(clock),
                web: None,
            }),
        }
    }

    fn rebuild(self, f: impl FnOnce(&mut Inner<St>)) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                cache: shared.cache.clone(),
                tokens: Arc::clone(&shared.tokens),
                cookie: shared.cookie.clone(),
                states: shared.states.clone(),
                web: shared.web.clone(),
            },
        };
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// Sign OAuth states with a key derived from `secret`, so every instance verifies them.
    pub fn state_secret(self, secret: &[u8]) -> Self {
        self.rebuild(|inner| {
            inner.states = StateSigner::from_secret(secret, Arc::clone(inner.cache.clock()));
        })
    }

    /// Enable the browser flow (website or Official Account).
    pub fn web_flow(self, web: WebFlow) -> Self {
        self.rebuild(|inner| inner.web = Some(web))
    }

    fn issue(&self, record: Arc<SessionRecord>) -> Result<LoginSuccess, LoginFailure> {
        let token = self.inner.tokens.issue(&record).map_err(|error| {
            tracing::error!(%error, "could not sign a session token");
            LoginFailure::Misconfigured
        })?;
        Ok(LoginSuccess { token, record })
    }

    /// Exchanges a mobile app / website / Official Account code and opens a session.
    pub async fn login(&self, code: &str) -> Result<LoginSuccess, LoginFailure> {
        let code = valid_code(code)?;
        let record = self.inner.cache.login(&code).await?;
        self.issue(record)
    }

    /// Exchanges a Mini Program `wx.login()` code and opens a session.
    pub async fn login_mini_program(&self, code: &str) -> Result<LoginSuccess, LoginFailure> {
        let code = valid_code(code)?;
        let record = self.inner.cache.login_mini_program(&code).await?;
        self.issue(record)
    }

    /// The WeChat authorize URL to send the browser to, with a fresh signed state.
    pub fn web_start(&self) -> Result<WebStart, LoginFailure> {
        let web = self
            .inner
            .web
            .as_ref()
            .ok_or(LoginFailure::WebLoginDisabled)?;
        let client = self.inner.cache.client();
        let (url, binding_cookie) = match web.kind {
            WebFlowKind::Website => {
                let binding = StateSigner::new_binding();
                let state = self.inner.states.issue(&binding);
                let cookie = self
                    .inner
                    .cookie
                    .with_name(BINDING_COOKIE)
                    .set(&binding, crate::state::STATE_TTL.as_secs());
                (
                    client.website_authorize_url(&web.redirect_uri, &state),
                    cookie,
                )
            }
            WebFlowKind::OfficialAccount(scope) => {
                let state = self.inner.states.issue("");
                let url = client.official_account_authorize_url(&web.redirect_uri, scope, &state);
                (url, None)
            }
        };
        let url = url.map_err(|error| {
            tracing::error!(%error, "the web flow's redirect_uri is not usable");
            LoginFailure::Misconfigured
        })?;
        Ok(WebStart {
            url,
            binding_cookie,
        })
    }

    /// Handles WeChat's redirect back: verifies the state (for the website flow, against the
    /// binding cookie's value), exchanges the code (a repeated callback gets the same session)
    /// and opens a session. No code means the user declined.
    pub async fn web_callback(
        &self,
        code: Option<&str>,
        state: Option<&str>,
        binding: Option<&str>,
    ) -> Result<LoginSuccess, LoginFailure> {
        let web = self
            .inner
            .web
            .as_ref()
            .ok_or(LoginFailure::WebLoginDisabled)?;
        let binding = match web.kind {
            WebFlowKind::Website => binding
                .filter(|b| !b.is_empty())
                .ok_or(LoginFailure::InvalidState(StateError::Invalid))?,
            WebFlowKind::OfficialAccount(_) => "",
        };
        self.inner.states.verify(state.unwrap_or(""), binding)?;
        let code = code
            .filter(|c| !c.is_empty())
            .ok_or(LoginFailure::AccessDenied(None))?;
        self.login(code).await
    }

    /// Where the callback sends the browser after login.
    pub fn after_login(&self) -> &str {
        self.inner
            .web
            .as_ref()
            .map_or("/", |w| w.after_login.as_str())
    }

    /// The `Set-Cookie` value carrying a new session's token.
    pub fn session_cookie(&self, success: &LoginSuccess) -> Option<HeaderValue> {
        self.inner
            .cookie
            .set(&success.token.token, success.token.expires_in)
    }

    /// The `Set-Cookie` value that clears the session cookie.
    pub fn clear_cookie(&self) -> Option<HeaderValue> {
        self.inner.cookie.clear()
    }

    /// The `Set-Cookie` value that clears the website flow's binding cookie.
    pub fn clear_binding_cookie(&self) -> Option<HeaderValue> {
        self.inner.cookie.with_name(BINDING_COOKIE).clear()
    }

    /// The binding cookie's value in a request, if any.
    pub fn binding<'a>(&self, headers: &'a http::HeaderMap) -> Option<&'a str> {
        crate::auth::source::cookie(headers, BINDING_COOKIE)
            .ok()
            .flatten()
    }

    /// Ends the user's current session.
    pub async fn logout(&self, user: &WeChatUser) -> Result<(), LoginFailure> {
        self.logout_session(user.session_id()).await
    }

    /// Ends one session by id (idempotent: an ended session is fine).
    pub async fn logout_session(&self, sid: SessionId) -> Result<(), LoginFailure> {
        self.inner.cache.logout(&sid).await.map_err(|error| {
            tracing::error!(%error, "logout failed: the session store is unavailable");
            LoginFailure::StoreUnavailable
        })?;
        tracing::info!(sid = %sid, outcome = "logged_out", "session ended");
        Ok(())
    }

    /// Ends every session of the user.
    pub async fn logout_all(&self, user: &WeChatUser) -> Result<usize, LoginFailure> {
        let ended = self
            .inner
            .cache
            .logout_all(&user.user_key())
            .await
            .map_err(|_| LoginFailure::StoreUnavailable)?;
        tracing::info!(sid = %user.session_id(), ended, outcome = "logged_out_all", "all sessions of the user ended");
        Ok(ended)
    }
}

fn valid_code(code: &str) -> Result<AuthCode, LoginFailure> {
    if code.is_empty() || code.len() > MAX_CODE_LEN || !code.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(LoginFailure::InvalidRequest(
            "code must be 1 to 256 printable ASCII characters",
        ));
    }
    Ok(AuthCode::new(code))
}

#[cfg(feature = "axum")]
mod router {
    use axum::Router;
    use axum::body::Body;
    use axum::extract::Query;
    use axum::extract::rejection::QueryRejection;
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use bytes::Bytes;
    use http::{HeaderMap, HeaderValue, StatusCode, header};
    use serde::Deserialize;
    use wechat_token_cache::TokenStore;

    use super::{LoginEndpoints, LoginFailure, LoginSuccess, json_response};
    use crate::auth::SessionChanged;
    use crate::rejection::AuthError;
    use crate::user::{Anonymous, VerifiedSession, WeChatUser};

    #[derive(Deserialize)]
    struct CodeBody {
        code: String,
    }

    #[derive(Deserialize)]
    struct CallbackQuery {
        code: Option<String>,
        state: Option<String>,
    }

    fn parse_code(body: &Bytes) -> Result<String, LoginFailure> {
        serde_json::from_slice::<CodeBody>(body)
            .map(|b| b.code)
            .map_err(|_| LoginFailure::InvalidRequest(r#"expected a JSON body {"code": "..."}"#))
    }

    fn answer(result: Result<LoginSuccess, LoginFailure>) -> Response {
        match result {
            Ok(success) => {
                let mut response: Response =
                    json_response(StatusCode::OK, success.to_json().to_vec());
                response.extensions_mut().insert(SessionChanged);
                response
            }
            Err(failure) => failure.to_response(),
        }
    }

    fn redirect(location: &str) -> Response {
        match HeaderValue::try_from(location) {
            Ok(location) => {
                let mut response = Response::new(Body::empty());
                *response.status_mut() = StatusCode::FOUND;
                response.headers_mut().insert(header::LOCATION, location);
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            Err(_) => LoginFailure::Misconfigured.to_response(),
        }
    }

    fn no_content(clear_cookie: Option<HeaderValue>) -> Response {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Some(cookie) = clear_cookie {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        response.extensions_mut().insert(SessionChanged);
        response
    }

    impl<St: TokenStore> LoginEndpoints<St> {
        /// The endpoints as an axum router, to merge into the application's. The logout routes
        /// read the [`WeChatUser`], so the [`WeChatAuthLayer`](crate::WeChatAuthLayer) must wrap
        /// the router in *optional* mode (a required layer would refuse the login routes
        /// themselves, which are called without a session).
        pub fn router<S: Clone + Send + Sync + 'static>(self) -> Router<S> {
            let (a, b, c, d, e, f) = (
                self.clone(),
                self.clone(),
                self.clone(),
                self.clone(),
                self.clone(),
                self,
            );
            Router::new()
                .route(
                    "/auth/wechat/login",
                    post(move |body: Bytes| async move {
                        match parse_code(&body) {
                            Ok(code) => answer(a.login(&code).await),
                            Err(failure) => failure.to_response(),
                        }
                    }),
                )
                .route(
                    "/auth/wechat/miniprogram/login",
                    post(move |body: Bytes| async move {
                        match parse_code(&body) {
                            Ok(code) => answer(b.login_mini_program(&code).await),
                            Err(failure) => failure.to_response(),
                        }
                    }),
                )
                .route(
                    "/auth/wechat/web/start",
                    get(move || async move {
                        match c.web_start() {
                            Ok(start) => {
                                let mut response = redirect(&start.url);
                                if let Some(cookie) = start.binding_cookie {
                                    response.headers_mut().append(header::SET_COOKIE, cookie);
                                }
                                response
                            }
                            Err(failure) => failure.to_response(),
                        }
                    }),
                )
                .route(
                    "/auth/wechat/web/callback",
                    get(
                        move |headers: HeaderMap,
                              query: Result<Query<CallbackQuery>, QueryRejection>| async move {
                            let Ok(Query(query)) = query else {
                                return LoginFailure::InvalidRequest("malformed query")
                                    .to_response();
                            };
                            let binding = d.binding(&headers);
                            let result = d
                                .web_callback(query.code.as_deref(), query.state.as_deref(), binding)
                                .await;
                            match result {
                                Ok(success) => {
                                    let mut response = redirect(d.after_login());
                                    let cookies = [d.session_cookie(&success), d.clear_binding_cookie()];
                                    for cookie in cookies.into_iter().flatten() {
                                        response.headers_mut().append(header::SET_COOKIE, cookie);
                                    }
                                    response.extensions_mut().insert(SessionChanged);
                                    response
                                }
                                Err(failure) => failure.to_response(),
                            }
                        },
                    ),
                )
                .route(
                    "/auth/logout",
                    post(move |request: axum::extract::Request| async move {
                        // A live session, or a verified token whose session could not be
                        // served (ended, WeChat or the store down): either way, end it.
                        let extensions = request.extensions();
                        let sid = extensions
                            .get::<WeChatUser>()
                            .map(WeChatUser::session_id)
                            .or_else(|| extensions.get::<VerifiedSession>().map(|v| v.0));
                        match sid {
                            Some(sid) => match e.logout_session(sid).await {
                                Ok(()) => no_content(e.clear_cookie()),
                                Err(failure) => failure.to_response(),
                            },
                            None => extensions
                                .get::<AuthError>()
                                .cloned()
                                .unwrap_or(if extensions.get::<Anonymous>().is_some() {
                                    AuthError::MissingToken
                                } else {
                                    AuthError::MissingLayer
                                })
                                .to_response(),
                        }
                    }),
                )
                .route(
                    "/auth/logout/all",
                    post(move |user: WeChatUser| async move {
                        match f.logout_all(&user).await {
                            Ok(_) => no_content(f.clear_cookie()),
                            Err(failure) => failure.to_response(),
                        }
                    }),
                )
        }
    }
}
