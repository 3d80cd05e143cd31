//! The endpoints the mock counts and can fault ([`Endpoint`]), and the faults it can inject
//! ([`Fault`]).

use std::{fmt, str::FromStr, time::Duration};

/// One of the upstream endpoints the mock serves; the unit of call counting and fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Endpoint {
    /// `GET /sns/oauth2/access_token`, the code exchange.
    AccessToken,
    /// `GET /sns/oauth2/refresh_token`.
    RefreshToken,
    /// `GET /sns/auth`.
    Auth,
    /// `GET /sns/userinfo`.
    UserInfo,
    /// `GET /sns/jscode2session`, the Mini Program login.
    JsCode2Session,
    /// `GET /connect/qrconnect`, the website consent page.
    QrConnect,
    /// `GET /connect/oauth2/authorize`, the in-WeChat consent page.
    Authorize,
    /// `POST /cgi-bin/stable_token`, the app access token.
    StableToken,
    /// `GET /cgi-bin/token`, the older app access token API (each call replaces the token).
    Token,
    /// `POST /wxa/business/getuserphonenumber`.
    PhoneNumber,
    /// `GET /wxa/checksession`.
    CheckSession,
    /// `GET /wxa/resetusersessionkey`.
    ResetSessionKey,
    /// `POST /cgi-bin/qrcode/create`, an Official Account's parametric QR code.
    QrCodeCreate,
    /// `GET /cgi-bin/user/info`, an Official Account's follower.
    FollowerInfo,
}

impl Endpoint {
    /// Every endpoint, in declaration order.
    pub const ALL: [Endpoint; 14] = [
        Endpoint::AccessToken,
        Endpoint::RefreshToken,
        Endpoint::Auth,
        Endpoint::UserInfo,
        Endpoint::JsCode2Session,
        Endpoint::QrConnect,
        Endpoint::Authorize,
        Endpoint::StableToken,
        Endpoint::Token,
        Endpoint::PhoneNumber,
        Endpoint::CheckSession,
        Endpoint::ResetSessionKey,
        Endpoint::QrCodeCreate,
        Endpoint::FollowerInfo,
    ];

    /// The name used by the control API and [`crate::MockWeChat::stats`]:
    /// `access_token`, `refresh_token`, `auth`, `userinfo`, `jscode2session`, `qrconnect`,
    /// `authorize`, `stable_token`, `token`, `getuserphonenumber`, `checksession`,
    /// `resetusersessionkey`, `qrcode_create`, `user_info`.
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::AccessToken => "access_token",
            Endpoint::RefreshToken => "refresh_token",
            Endpoint::Auth => "auth",
            Endpoint::UserInfo => "userinfo",
            Endpoint::JsCode2Session => "jscode2session",
            Endpoint::QrConnect => "qrconnect",
            Endpoint::Authorize => "authorize",
            Endpoint::StableToken => "stable_token",
            Endpoint::Token => "token",
            Endpoint::PhoneNumber => "getuserphonenumber",
            Endpoint::CheckSession => "checksession",
            Endpoint::ResetSessionKey => "resetusersessionkey",
            Endpoint::QrCodeCreate => "qrcode_create",
            Endpoint::FollowerInfo => "user_info",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Endpoint {
    type Err = ParseEndpointError;

    /// Parses the exact names returned by [`Endpoint::name`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Endpoint::ALL
            .into_iter()
            .find(|endpoint| endpoint.name() == s)
            .ok_or_else(|| ParseEndpointError { name: s.to_owned() })
    }
}

/// A string that is not one of the [`Endpoint`] names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseEndpointError {
    name: String,
}

impl ParseEndpointError {
    /// The name that was not recognised.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ParseEndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown endpoint {:?}; expected one of ", self.name)?;
        for (i, endpoint) in Endpoint::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(endpoint.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseEndpointError {}

/// A misbehaviour the next call(s) to an endpoint answer with
/// (see [`crate::MockWeChat::inject`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 200 with `{"errcode":N,"errmsg":"... rid: ..."}`, e.g. -1 (system busy) or 45011.
    ErrCode(i64),
    /// This HTTP status with a short `text/plain` body. A number that is not a valid status
    /// (outside 100..=999) answers 500.
    HttpStatus(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// HTTP 200 with exactly this body, e.g. an HTML error page, `""` or broken JSON.
    Body(String),
}
