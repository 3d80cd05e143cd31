//! Why a request is refused, and how the refusal is written.
//!
//! [`AuthError`] carries a stable machine code ([`AuthError::code`]) and maps to one status:
//! 400 for a malformed request, 401 (with `WWW-Authenticate: Bearer`, RFC 6750) when the
//! caller must (re-)authenticate, 403 when WeChat denies the user, 503 with `Retry-After` when
//! WeChat or the store is unavailable, and 500 for our own misconfiguration. [`RejectionResponse`]
//! writes the response; the default, [`JsonRejection`], answers a small JSON body. The error is
//! also put in the response's extensions, so outer layers can see why.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use wechat_token_cache::SessionError;

/// Why the layer (or the extractor) refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No session token was sent. (401)
    #[error("no session token was sent")]
    MissingToken,
    /// The credentials are malformed: not UTF-8, oversized, not a bearer token. (400)
    #[error("malformed credentials")]
    InvalidRequest,
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
    /// WeChat denies this user. (403)
    #[error("WeChat denied this user")]
    AccessDenied,
    /// WeChat could not confirm the session just now; the session is kept. (503)
    #[error("WeChat is temporarily unavailable")]
    UpstreamUnavailable {
        /// When trying again makes sense.
        retry_after: Duration,
    },
    /// The session store is unavailable; the session is kept. (503)
    #[error("the session store is temporarily unavailable")]
    StoreUnavailable,
    /// WeChat rejected this server's configuration (logged loudly). (500)
    #[error("the server's WeChat configuration is wrong")]
    Misconfigured,
    /// A handler asked for a `WeChatUser` but no `WeChatAuthLayer` runs in front of it. (500)
    #[error("WeChatAuthLayer is not installed in front of this handler")]
    MissingLayer,
}

impl AuthError {
    /// A stable machine code: `missing_token`, `invalid_request`, `invalid_token`,
    /// `token_expired`, `session_expired`, `reauth_required`, `access_denied`,
    /// `upstream_unavailable`, `store_unavailable`, `misconfigured`, `missing_layer`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::SessionExpired => "session_expired",
            Self::ReauthRequired => "reauth_required",
            Self::AccessDenied => "access_denied",
            Self::UpstreamUnavailable { .. } => "upstream_unavailable",
            Self::StoreUnavailable => "store_unavailable",
            Self::Misconfigured => "misconfigured",
            Self::MissingLayer => "missing_layer",
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::MissingToken
            | Self::InvalidToken
            | Self::TokenExpired
            | Self::SessionExpired
            | Self::ReauthRequired => StatusCode::UNAUTHORIZED,
            Self::AccessDenied => StatusCode::FORBIDDEN,
            Self::UpstreamUnavailable { .. } | Self::StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Misconfigured | Self::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the client sent credentials that were refused (as opposed to none at all, or a
    /// server-side problem). In optional mode these still reach the extractor as an error.
    pub fn is_bad_credentials(&self) -> bool {
        self.status() == StatusCode::BAD_REQUEST || self.status() == StatusCode::UNAUTHORIZED
    }

    /// The `WWW-Authenticate` challenge (RFC 6750), for 400 and 401 answers.
    fn challenge(&self) -> Option<&'static str> {
        Some(match self {
            Self::MissingToken => "Bearer",
            Self::InvalidRequest => r#"Bearer error="invalid_request""#,
            Self::InvalidToken => {
                r#"Bearer error="invalid_token", error_description="invalid session token""#
            }
            Self::TokenExpired => {
                r#"Bearer error="invalid_token", error_description="the session token has expired""#
            }
            Self::SessionExpired => {
                r#"Bearer error="invalid_token", error_description="the session has ended""#
            }
            Self::ReauthRequired => {
                r#"Bearer error="invalid_token", error_description="log in with WeChat again""#
            }
            _ => return None,
        })
    }

    /// The JSON body, built without allocation for every fixed-message error.
    fn body(&self) -> Bytes {
        macro_rules! body {
            ($code:literal, $msg:literal) => {
                Bytes::from_static(
                    concat!(r#"{"error":""#, $code, r#"","message":""#, $msg, r#""}"#).as_bytes(),
                )
            };
        }
        match self {
            Self::MissingToken => body!("missing_token", "no session token was sent"),
            Self::InvalidRequest => body!("invalid_request", "malformed credentials"),
            Self::InvalidToken => body!("invalid_token", "invalid session token"),
            Self::TokenExpired => body!("token_expired", "the session token has expired"),
            Self::SessionExpired => body!("session_expired", "the session has ended"),
            Self::ReauthRequired => body!(
                "reauth_required",
                "the WeChat authorization has ended; log in again"
            ),
            Self::AccessDenied => body!("access_denied", "WeChat denied this user"),
            Self::UpstreamUnavailable { .. } => {
                body!("upstream_unavailable", "WeChat is temporarily unavailable")
            }
            Self::StoreUnavailable => body!(
                "store_unavailable",
                "the session store is temporarily unavailable"
            ),
            Self::Misconfigured => body!(
                "misconfigured",
                "the server's WeChat configuration is wrong"
            ),
            Self::MissingLayer => body!(
                "missing_layer",
                "WeChatAuthLayer is not installed in front of this handler"
            ),
        }
    }

    /// The response [`JsonRejection`] writes: status, headers, JSON body, and the error itself in
    /// the extensions.
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let mut response = Response::new(B::from(self.body()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge() {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if let Self::UpstreamUnavailable { retry_after } = self {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        } else if let Self::StoreUnavailable = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response.extensions_mut().insert(self.clone());
        response
    }
}

impl From<SessionError> for AuthError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::NotFound => Self::SessionExpired,
            SessionError::Reauthorize { .. } => Self::ReauthRequired,
            SessionError::Denied { .. } => Self::AccessDenied,
            SessionError::Unavailable { retry_after } => Self::UpstreamUnavailable { retry_after },
            SessionError::Misconfigured { .. } => Self::Misconfigured,
            // A record that does not decode (an unknown sealing key, tampering) is kept and
            // never a reason to log the user out: the store is what is broken.
            SessionError::Store(_) => Self::StoreUnavailable,
            _ => Self::StoreUnavailable,
        }
    }
}

/// Writes the response for a refused request. Implement it to change the answer; the layer
/// puts the [`AuthError`] in the response's extensions either way.
pub trait RejectionResponse<B>: Clone + Send + Sync + 'static {
    /// The response for `error`.
    fn response(&self, error: &AuthError) -> Response<B>;
}

/// The default rejection: status, `WWW-Authenticate`, `Retry-After` where it applies, and
/// `{"error":"<code>","message":"..."}`.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonRejection;

impl<B: From<Bytes>> RejectionResponse<B> for JsonRejection {
    fn response(&self, error: &AuthError) -> Response<B> {
        error.to_response()
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
            AuthError::InvalidRequest,
            AuthError::InvalidToken,
            AuthError::TokenExpired,
            AuthError::SessionExpired,
            AuthError::ReauthRequired,
            AuthError::AccessDenied,
            AuthError::UpstreamUnavailable {
                retry_after: Duration::from_secs(5),
            },
            AuthError::StoreUnavailable,
            AuthError::Misconfigured,
            AuthError::MissingLayer,
        ];
        for error in all {
            let response: Response<Bytes> = error.to_response();
            let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
            assert_eq!(json["error"], error.code());
            assert_eq!(response.status(), error.status());
            assert_eq!(response.extensions().get::<AuthError>(), Some(&error));
            let challenged = response.headers().contains_key(header::WWW_AUTHENTICATE);
            assert_eq!(challenged, error.is_bad_credentials(), "{error:?}");
        }
        let unavailable: Response<Bytes> = AuthError::UpstreamUnavailable {
            retry_after: Duration::from_secs(60),
        }
        .to_response();
        assert_eq!(unavailable.headers()[header::RETRY_AFTER], "60");
    }
}
