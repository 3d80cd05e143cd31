//! Why a request is refused, and how the refusal is written: one type, [`AuthError`], for the
//! layer, the extractor, the login endpoints and calls made on a user's behalf.
//!
//! Every variant has one row in one table — machine code ([`AuthError::code`]), status,
//! `WWW-Authenticate` challenge (RFC 6750, for refused credentials only), `Retry-After` and
//! message — and one function renders it ([`AuthError::with_body`]: status and the standard
//! headers around any body; [`AuthError::to_response`]: with the JSON body). A custom
//! [`RejectionResponse`] replaces the answer everywhere the layer's rejection applies (required
//! mode, optional mode through the extractor, the login router behind the layer), and can
//! replace only the body by calling [`AuthError::with_body`]. The error is also put in the
//! response's extensions, so outer layers can see why.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;
use wechat_oauth::{ErrCode, ErrorClass};
use wechat_sessions::{AppTokenError, CallError, LoginError, SessionError};

use crate::state::StateError;

/// Why the layer, the extractor, a login endpoint or a call on the user's behalf refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No session token was sent. (401)
    #[error("no session token was sent")]
    MissingToken,
    /// The session credentials are malformed: not UTF-8, oversized, not a bearer token. (400,
    /// code `invalid_request` with a `WWW-Authenticate` challenge, RFC 6750)
    #[error("malformed credentials")]
    MalformedCredentials,
    /// A login request is malformed (body, code, request id, query); the text says how. (400,
    /// code `invalid_request`)
    #[error("invalid request: {0}")]
    BadRequest(&'static str),
    /// Data a Mini Program client sent could not be opened with the session's key, or its
    /// watermark or signature does not hold; the text says the usual cause. (400, code
    /// `invalid_encrypted_data`)
    #[error("{0}")]
    InvalidEncryptedData(wechat_oauth::DecryptError),
    /// A Mini Program phone-number code was refused: used, expired (5 minutes) or another
    /// app's. (400, code `invalid_phone_code`)
    #[error("the phone-number code is invalid, used or expired; ask the user again")]
    InvalidPhoneCode,
    /// WeChat says the Mini Program session key is no longer the user's (the client called
    /// `wx.login` again): the client must `wx.login` and log in again. (401, code
    /// `session_key_expired`)
    #[error("the session key is no longer valid; call wx.login and log in again")]
    SessionKeyExpired,
    /// A login body is not `application/json`. (415)
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// The token is not one of ours: bad signature, wrong algorithm, issuer or audience,
    /// unknown key. (401)
    #[error("invalid session token")]
    InvalidToken,
    /// The token has expired. (401)
    #[error("the session token has expired")]
    TokenExpired,
    /// The session was logged out, evicted or has ended. (401)
    #[error("the session has ended")]
    SessionExpired,
    /// WeChat ended the authorization; the user must log in with WeChat again. (401)
    #[error("the WeChat authorization has ended; log in again")]
    ReauthRequired,
    /// WeChat rejected a login code (with its errcode). (401)
    #[error("WeChat rejected the login code (errcode {0})")]
    InvalidCode(ErrCode),
    /// A web callback's state is not ours, expired or used. (400)
    #[error(transparent)]
    InvalidState(#[from] StateError),
    /// The user declined the login (`None`), or WeChat denies this user (its errcode). (403)
    #[error("access denied")]
    AccessDenied(Option<ErrCode>),
    /// WeChat's snapshot-mode virtual user (an Official Account page opened as a preview): no
    /// session; the page should ask the user to open the real page. (403, `"snapshot": true`)
    #[error(
        "this is a preview of the page: tap \"use the full service\" or open the page in WeChat to log in"
    )]
    SnapshotUser,
    /// The application's login hook refused the user: its own code and message. (403)
    #[error("{message}")]
    Refused {
        /// The application's machine code.
        code: String,
        /// The application's message.
        message: String,
    },
    /// The session's WeChat grant does not allow the call (a `snsapi_base` login asking for
    /// the profile, a snapshot user, a Mini Program): with the URL that asks for more, when
    /// there is one. (403, `"reauthorize"`)
    #[error("this login's WeChat grant does not allow this")]
    ScopeInsufficient {
        /// Where to send the browser to grant the profile scope and come back.
        reauthorize: Option<String>,
    },
    /// Too many failed logins from this client, or from everyone. (429 with `Retry-After`)
    #[error("too many failed login attempts; try again later")]
    TooManyAttempts(Duration),
    /// WeChat could not be reached or answered transiently; the session is kept. (503)
    #[error("WeChat is temporarily unavailable")]
    UpstreamUnavailable {
        /// When trying again makes sense.
        retry_after: Duration,
    },
    /// The session store is unavailable; the session is kept. (503)
    #[error("the session store is temporarily unavailable")]
    StoreUnavailable,
    /// The application's accounts are unavailable (the login hook failed transiently);
    /// nothing was stored. (503)
    #[error("the application's accounts are temporarily unavailable")]
    AccountsUnavailable(Duration),
    /// WeChat refused a call made on the user's behalf (with its errcode). (502)
    #[error("WeChat refused the call")]
    UpstreamError(Option<ErrCode>),
    /// WeChat rejected this server's configuration (logged loudly). (500)
    #[error("the server's WeChat configuration is wrong")]
    Misconfigured,
    /// A handler asked for a `WeChatUser` but no `WeChatAuthLayer` runs in front of it. (500)
    #[error("WeChatAuthLayer is not installed in front of this handler")]
    MissingLayer,
    /// The app this endpoint logs in to is not configured. (404)
    #[error("this app is not configured on this server")]
    AppNotConfigured,
    /// The browser flow is not configured. (404)
    #[error("web login is not enabled")]
    WebLoginDisabled,
    /// The user has no session with this id (none at all, or another user's). (404)
    #[error("you have no session with this id")]
    SessionNotFound,
    /// Scan-to-log-in is not configured. (404)
    #[error("scan login is not enabled")]
    ScanLoginDisabled,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errcode: Option<i64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    snapshot: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reauthorize: Option<&'a str>,
}

impl AuthError {
    /// A stable machine code: `missing_token`, `invalid_request`, `unsupported_media_type`,
    /// `invalid_encrypted_data`, `invalid_phone_code`, `session_key_expired`,
    /// `invalid_token`, `token_expired`, `session_expired`, `reauth_required`, `invalid_code`,
    /// `invalid_state`, `access_denied`, `snapshot_user`, `scope_insufficient`,
    /// `too_many_attempts`, `upstream_unavailable`, `store_unavailable`,
    /// `accounts_unavailable`, `upstream_error`, `misconfigured`, `missing_layer`,
    /// `app_not_configured`, `web_login_disabled`, `session_not_found`, `scan_login_disabled`
    /// — or the login hook's own code.
    pub fn code(&self) -> &str {
        match self {
            Self::Refused { code, .. } => code,
            other => other.metric_label(),
        }
    }

    /// The code of every variant but `Refused`, whose code is the application's (there:
    /// `"refused"`): a closed set, fit for a metric label.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::MalformedCredentials | Self::BadRequest(_) => "invalid_request",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidEncryptedData(_) => "invalid_encrypted_data",
            Self::InvalidPhoneCode => "invalid_phone_code",
            Self::SessionKeyExpired => "session_key_expired",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::SessionExpired => "session_expired",
            Self::ReauthRequired => "reauth_required",
            Self::InvalidCode(_) => "invalid_code",
            Self::InvalidState(_) => "invalid_state",
            Self::AccessDenied(_) => "access_denied",
            Self::SnapshotUser => "snapshot_user",
            Self::Refused { .. } => "refused",
            Self::ScopeInsufficient { .. } => "scope_insufficient",
            Self::TooManyAttempts(_) => "too_many_attempts",
            Self::UpstreamUnavailable { .. } => "upstream_unavailable",
            Self::StoreUnavailable => "store_unavailable",
            Self::AccountsUnavailable(_) => "accounts_unavailable",
            Self::UpstreamError(_) => "upstream_error",
            Self::Misconfigured => "misconfigured",
            Self::MissingLayer => "missing_layer",
            Self::AppNotConfigured => "app_not_configured",
            Self::WebLoginDisabled => "web_login_disabled",
            Self::SessionNotFound => "session_not_found",
            Self::ScanLoginDisabled => "scan_login_disabled",
        }
    }

    /// WeChat's errcode, for the answers that carry one (`invalid_code`, `access_denied`,
    /// `upstream_error`).
    pub fn errcode(&self) -> Option<ErrCode> {
        match self {
            Self::InvalidCode(code)
            | Self::AccessDenied(Some(code))
            | Self::UpstreamError(Some(code)) => Some(*code),
            _ => None,
        }
    }

    /// For `scope_insufficient`: where to send the browser to grant more and come back, when
    /// there is such a URL.
    pub fn reauthorize(&self) -> Option<&str> {
        match self {
            Self::ScopeInsufficient { reauthorize } => reauthorize.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedCredentials
            | Self::BadRequest(_)
            | Self::InvalidState(_)
            | Self::InvalidEncryptedData(_)
            | Self::InvalidPhoneCode => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MissingToken
            | Self::InvalidToken
            | Self::TokenExpired
            | Self::SessionExpired
            | Self::ReauthRequired
            | Self::SessionKeyExpired
            | Self::InvalidCode(_) => StatusCode::UNAUTHORIZED,
            Self::AccessDenied(_)
            | Self::SnapshotUser
            | Self::Refused { .. }
            | Self::ScopeInsufficient { .. } => StatusCode::FORBIDDEN,
            Self::TooManyAttempts(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::UpstreamUnavailable { .. }
            | Self::StoreUnavailable
            | Self::AccountsUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpstreamError(_) => StatusCode::BAD_GATEWAY,
            Self::Misconfigured | Self::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
            Self::AppNotConfigured
            | Self::WebLoginDisabled
            | Self::SessionNotFound
            | Self::ScanLoginDisabled => StatusCode::NOT_FOUND,
        }
    }

    /// Whether the client sent session credentials that were refused (as opposed to none at
    /// all, or a server-side problem). In optional mode these still reach the extractor as an
    /// error; they are the answers with a `WWW-Authenticate` challenge (with `MissingToken`).
    /// A Mini Program session key WeChat no longer knows counts: it is the client's WeChat
    /// login state, renewed by `wx.login`.
    pub fn is_bad_credentials(&self) -> bool {
        matches!(
            self,
            Self::MalformedCredentials
                | Self::InvalidToken
                | Self::TokenExpired
                | Self::SessionExpired
                | Self::ReauthRequired
                | Self::SessionKeyExpired
        )
    }

    /// The `WWW-Authenticate` challenge (RFC 6750), for refused or missing session
    /// credentials.
    fn challenge(&self) -> Option<HeaderValue> {
        // Built at compile time: a refusal copies its header instead of checking its bytes.
        macro_rules! value {
            ($value:literal) => {
                const { HeaderValue::from_static($value) }
            };
        }
        Some(match self {
            Self::MissingToken => value!("Bearer"),
            Self::MalformedCredentials => value!(r#"Bearer error="invalid_request""#),
            Self::InvalidToken => {
                value!(r#"Bearer error="invalid_token", error_description="invalid session token""#)
            }
            Self::TokenExpired => {
                value!(
                    r#"Bearer error="invalid_token", error_description="the session token has expired""#
                )
            }
            Self::SessionExpired => {
                value!(r#"Bearer error="invalid_token", error_description="the session has ended""#)
            }
            Self::ReauthRequired => {
                value!(
                    r#"Bearer error="invalid_token", error_description="log in with WeChat again""#
                )
            }
            Self::SessionKeyExpired => {
                value!(
                    r#"Bearer error="invalid_token", error_description="call wx.login and log in again""#
                )
            }
            _ => return None,
        })
    }

    /// How long to wait before trying again, for the answers that say so (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::UpstreamUnavailable { retry_after }
            | Self::TooManyAttempts(retry_after)
            | Self::AccountsUnavailable(retry_after) => Some(*retry_after),
            Self::StoreUnavailable => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// The JSON body `{"error","message","errcode"?,"snapshot"?,"reauthorize"?}`: a static
    /// one for the errors of the layer's hot path (no allocation), serialized otherwise.
    pub fn json_body(&self) -> Bytes {
        macro_rules! body {
            ($code:literal, $msg:literal) => {
                Bytes::from_static(
                    concat!(r#"{"error":""#, $code, r#"","message":""#, $msg, r#""}"#).as_bytes(),
                )
            };
        }
        match self {
            Self::MissingToken => body!("missing_token", "no session token was sent"),
            Self::MalformedCredentials => body!("invalid_request", "malformed credentials"),
            Self::InvalidToken => body!("invalid_token", "invalid session token"),
            Self::TokenExpired => body!("token_expired", "the session token has expired"),
            Self::SessionExpired => body!("session_expired", "the session has ended"),
            _ => {
                let errcode = match self {
                    Self::InvalidCode(code)
                    | Self::AccessDenied(Some(code))
                    | Self::UpstreamError(Some(code)) => Some(code.0),
                    _ => None,
                };
                let reauthorize = match self {
                    Self::ScopeInsufficient { reauthorize } => reauthorize.as_deref(),
                    _ => None,
                };
                let body = Body {
                    error: self.code(),
                    message: self.to_string(),
                    errcode,
                    snapshot: matches!(self, Self::SnapshotUser),
                    reauthorize,
                };
                Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
            }
        }
    }

    /// `body` with this error's status and standard headers — `WWW-Authenticate`,
    /// `Retry-After`, `Cache-Control: no-store` — and the error in the extensions: for a
    /// [`RejectionResponse`] that replaces only the body (set its `Content-Type` too).
    pub fn with_body<B>(&self, body: B) -> Response<B> {
        let mut response = Response::new(body);
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CACHE_CONTROL,
            const { HeaderValue::from_static("no-store") },
        );
        if let Some(challenge) = self.challenge() {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(retry_after) = self.retry_after() {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        response.extensions_mut().insert(self.clone());
        response
    }

    /// The default answer ([`JsonAuthRejection`]'s): [`with_body`](Self::with_body) and the JSON
    /// body.
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let mut response = self.with_body(B::from(self.json_body()));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            const { HeaderValue::from_static("application/json") },
        );
        response
    }

    /// The same answer with `page` (HTML, e.g. from [`ErrorPages`](crate::ErrorPages)) as its
    /// body, for a browser: same status and headers, with the page headers of
    /// [`security_headers`](crate::security_headers).
    pub fn html_response<B: From<Bytes>>(&self, page: String) -> Response<B> {
        let mut response = self.with_body(B::from(Bytes::from(page)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        crate::headers::secure_page_headers(response.headers_mut());
        response
    }
}

impl From<SessionError> for AuthError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::NotFound => Self::SessionExpired,
            SessionError::Reauthorize { .. } => Self::ReauthRequired,
            SessionError::Denied { errcode } => Self::AccessDenied(Some(errcode)),
            SessionError::Unavailable { retry_after } => Self::UpstreamUnavailable { retry_after },
            SessionError::Misconfigured { .. } => Self::Misconfigured,
            // A record that does not decode (an unknown sealing key, tampering) is kept and
            // never a reason to log the user out: the store is what is broken.
            SessionError::Store(_) => Self::StoreUnavailable,
            _ => Self::StoreUnavailable,
        }
    }
}

impl From<LoginError> for AuthError {
    fn from(error: LoginError) -> Self {
        if let LoginError::Store(store) = &error {
            tracing::error!(error = %store, "login failed: the session store is unavailable");
        }
        match error {
            LoginError::InvalidCode { errcode } => Self::InvalidCode(errcode),
            LoginError::Denied { errcode } => Self::AccessDenied(Some(errcode)),
            LoginError::Unavailable { retry_after } => Self::UpstreamUnavailable { retry_after },
            LoginError::Misconfigured { .. } => Self::Misconfigured,
            LoginError::AppNotConfigured => Self::AppNotConfigured,
            LoginError::SnapshotUser => Self::SnapshotUser,
            LoginError::Refused { code, message } => Self::Refused { code, message },
            LoginError::AccountsUnavailable { retry_after } => {
                Self::AccountsUnavailable(retry_after)
            }
            // Store failures, and any variant added later: the session was not stored.
            _ => Self::StoreUnavailable,
        }
    }
}

impl From<CallError> for AuthError {
    /// A call on the user's behalf: the session's outcome, a grant that does not allow it (403
    /// `scope_insufficient`, without a re-authorization URL: see
    /// [`LoginEndpoints::reauthorize_url`](crate::LoginEndpoints::reauthorize_url)), or WeChat's
    /// answer (transient: 503 with `Retry-After`; the session's token refused after a refresh:
    /// 401 `reauth_required`; anything else: 502 `upstream_error` with the errcode).
    fn from(error: CallError) -> Self {
        match error {
            CallError::Session(error) => error.into(),
            CallError::NotPermitted => Self::ScopeInsufficient { reauthorize: None },
            CallError::Upstream(error) => match error.class() {
                ErrorClass::Retryable => Self::UpstreamUnavailable {
                    retry_after: error.retry_after().unwrap_or(Duration::from_secs(1)),
                },
                _ if error.is_grant_gone() => Self::ReauthRequired,
                ErrorClass::Misconfigured => Self::Misconfigured,
                _ => {
                    tracing::warn!(%error, "WeChat refused a call made on the user's behalf");
                    Self::UpstreamError(error.errcode())
                }
            },
            CallError::SessionKeyInvalid => Self::SessionKeyExpired,
            CallError::AppToken(error) => match error {
                AppTokenError::AppNotConfigured => Self::AppNotConfigured,
                AppTokenError::Misconfigured { .. } => Self::Misconfigured,
                AppTokenError::Store(_) => Self::StoreUnavailable,
                AppTokenError::Unavailable { retry_after }
                | AppTokenError::ForceLimited { retry_after } => {
                    Self::UpstreamUnavailable { retry_after }
                }
                _ => Self::UpstreamUnavailable {
                    retry_after: Duration::from_secs(1),
                },
            },
            _ => Self::UpstreamUnavailable {
                retry_after: Duration::from_secs(1),
            },
        }
    }
}

/// Writes the response for a refused request. Implement it to change the answer; the layer
/// puts the [`AuthError`] in the response's extensions either way. Call
/// [`AuthError::with_body`] to replace only the body and keep the standard headers. A handler
/// that gets an `AuthError` from a call on the user's behalf (`user.decrypt()`,
/// `phone_number()`, `userinfo()`) answers it the same way with `rejection.response(&error)`.
///
/// ```
/// use bytes::Bytes;
/// use http::{HeaderValue, Response, header};
/// use tower_wechat::{AuthError, RejectionResponse};
///
/// /// Problem Details (RFC 9457) instead of the default body.
/// #[derive(Clone)]
/// struct Problem;
///
/// impl<B: From<Bytes>> RejectionResponse<B> for Problem {
///     fn response(&self, error: &AuthError) -> Response<B> {
///         let body = format!(r#"{{"type":"about:blank","title":"{}","status":{}}}"#,
///             error.code(), error.status().as_u16());
///         let mut response = error.with_body(B::from(Bytes::from(body)));
///         response.headers_mut().insert(
///             header::CONTENT_TYPE,
///             HeaderValue::from_static("application/problem+json"),
///         );
///         response
///     }
/// }
/// ```
pub trait RejectionResponse<B>: Clone + Send + Sync + 'static {
    /// The response for `error`.
    fn response(&self, error: &AuthError) -> Response<B>;

    /// The response for `error` to a request with these headers; the layer calls this one.
    /// The default is [`response`](Self::response); [`GrpcRejection::or_else`](crate::GrpcRejection::or_else) answers gRPC
    /// requests differently.
    fn response_to(&self, error: &AuthError, request: &http::HeaderMap) -> Response<B> {
        let _ = request;
        self.response(error)
    }

    /// Whether this is the default JSON answer (which the extractor and the login router
    /// write by themselves): the layer then hands it nothing.
    #[doc(hidden)]
    fn is_default(&self) -> bool {
        false
    }
}

/// The default rejection: [`AuthError::to_response`].
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonAuthRejection;

impl<B: From<Bytes>> RejectionResponse<B> for JsonAuthRejection {
    fn response(&self, error: &AuthError) -> Response<B> {
        error.to_response()
    }

    fn is_default(&self) -> bool {
        true
    }
}

/// A layer's rejection, type-erased, in a request's extensions (optional mode, when no user was
/// attached): the extractor and the login router answer with it.
pub(crate) struct Render<B>(pub(crate) Arc<RenderFn<B>>);

type RenderFn<B> = dyn Fn(&AuthError) -> Response<B> + Send + Sync;

impl<B> Clone for Render<B> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<B> Render<B> {
    pub(crate) fn of<R: RejectionResponse<B>>(rejection: &R) -> Option<Self> {
        if rejection.is_default() {
            return None;
        }
        let rejection = rejection.clone();
        Some(Self(Arc::new(move |error| rejection.response(error))))
    }
}

/// A refusal as the extractor and the login router answer it: the layer's rejection when the
/// request carries one, else the default.
#[derive(Clone)]
pub struct Rejection {
    error: AuthError,
    #[cfg(feature = "axum")]
    render: Option<Render<axum_core::body::Body>>,
}

impl std::fmt::Debug for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Rejection").field(&self.error).finish()
    }
}

impl Rejection {
    /// The error.
    pub fn error(&self) -> &AuthError {
        &self.error
    }

    /// The error, answered with the rejection the layer left in `extensions`, if any.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn new(error: AuthError, extensions: &http::Extensions) -> Self {
        #[cfg(not(feature = "axum"))]
        let _ = extensions;
        Self {
            #[cfg(feature = "axum")]
            render: extensions.get::<Render<axum_core::body::Body>>().cloned(),
            error,
        }
    }
}

impl From<Rejection> for AuthError {
    fn from(rejection: Rejection) -> Self {
        rejection.error
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for Rejection {
    fn into_response(self) -> axum_core::response::Response {
        match self.render {
            Some(render) => {
                let mut response = (render.0)(&self.error);
                response.extensions_mut().insert(self.error);
                response
            }
            None => self.error.to_response(),
        }
    }
}

#[cfg(feature = "axum")]
impl axum_core::response::IntoResponse for AuthError {
    fn into_response(self) -> axum_core::response::Response {
        self.to_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_valid_json_with_the_code() {
        let all = [
            AuthError::MissingToken,
            AuthError::MalformedCredentials,
            AuthError::BadRequest("code must be printable"),
            AuthError::UnsupportedMediaType,
            AuthError::InvalidToken,
            AuthError::TokenExpired,
            AuthError::SessionExpired,
            AuthError::ReauthRequired,
            AuthError::InvalidCode(ErrCode(40029)),
            AuthError::InvalidState(StateError::Used),
            AuthError::AccessDenied(None),
            AuthError::AccessDenied(Some(ErrCode(40226))),
            AuthError::SnapshotUser,
            AuthError::Refused {
                code: "account_suspended".into(),
                message: "this \"account\" is suspended".into(),
            },
            AuthError::ScopeInsufficient {
                reauthorize: Some("/auth/wechat/web/start?app=oa".into()),
            },
            AuthError::TooManyAttempts(Duration::from_secs(30)),
            AuthError::UpstreamUnavailable {
                retry_after: Duration::from_secs(5),
            },
            AuthError::StoreUnavailable,
            AuthError::AccountsUnavailable(Duration::from_secs(2)),
            AuthError::UpstreamError(Some(ErrCode(48001))),
            AuthError::Misconfigured,
            AuthError::MissingLayer,
            AuthError::AppNotConfigured,
            AuthError::WebLoginDisabled,
            AuthError::InvalidEncryptedData(wechat_oauth::DecryptError::WrongKey),
            AuthError::InvalidPhoneCode,
            AuthError::SessionKeyExpired,
        ];
        for error in all {
            let response: Response<Bytes> = error.to_response();
            let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(json["error"], error.code());
            assert_eq!(json["message"], error.to_string(), "{error:?}");
            assert_eq!(response.status(), error.status());
            assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
            assert_eq!(response.extensions().get::<AuthError>(), Some(&error));
            let challenged = response.headers().contains_key(header::WWW_AUTHENTICATE);
            let expected = error.is_bad_credentials() || error == AuthError::MissingToken;
            assert_eq!(challenged, expected, "{error:?}");
            assert_eq!(
                response.headers().contains_key(header::RETRY_AFTER),
                error.retry_after().is_some(),
                "{error:?}"
            );
            let page = crate::ErrorPages::page(
                &crate::BuiltinPages::English,
                &error,
                "/auth/wechat/web/start",
                &http::HeaderMap::new(),
            );
            let html: Response<Bytes> = error.html_response(page);
            assert_eq!(html.status(), error.status());
        }
        let unavailable: Response<Bytes> = AuthError::UpstreamUnavailable {
            retry_after: Duration::from_secs(60),
        }
        .to_response();
        assert_eq!(unavailable.headers()[header::RETRY_AFTER], "60");
        let snapshot: Response<Bytes> = AuthError::SnapshotUser.to_response();
        let json: serde_json::Value = serde_json::from_slice(snapshot.body()).unwrap();
        assert_eq!(json["snapshot"], true);
    }
}
