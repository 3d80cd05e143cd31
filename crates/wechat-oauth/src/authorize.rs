//! Browser authorize URLs for the website (`qrconnect`) and Official Account (`oauth2/authorize`)
//! flows, in the exact parameter order WeChat's link check expects, ending in `#wechat_redirect`.

use std::fmt;

use url::Url;
use url::form_urlencoded::byte_serialize;

use crate::types::AppId;

/// The base of WeChat's browser pages.
pub const DEFAULT_OPEN_BASE: &str = "https://open.weixin.qq.com";

/// The `state` parameter: 1 to 128 ASCII letters and digits, as WeChat requires. A JWT or
/// base64 does not fit; use an alphanumeric encoding of a MAC instead.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct State(String);

impl State {
    /// Validates a state value.
    pub fn new(value: impl Into<String>) -> Result<Self, AuthorizeUrlError> {
        let value = value.into();
        if (1..=128).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Self(value))
        } else {
            Err(AuthorizeUrlError::InvalidState)
        }
    }

    /// The state value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The scopes of the Official Account flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OfficialAccountScope {
    /// `snsapi_base`: silent, openid only.
    Base,
    /// `snsapi_userinfo`: asks the user, gives profile access.
    UserInfo,
}

impl OfficialAccountScope {
    /// The scope as WeChat spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Base => "snsapi_base",
            Self::UserInfo => "snsapi_userinfo",
        }
    }
}

/// Why an authorize URL could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorizeUrlError {
    /// `state` is not 1–128 ASCII letters and digits.
    #[error("state must be 1 to 128 ASCII letters and digits")]
    InvalidState,
    /// The redirect URI is not an absolute http(s) URL.
    #[error("redirect_uri must be an absolute http or https URL")]
    InvalidRedirectUri,
}

/// `{open_base}/connect/qrconnect?appid=..&redirect_uri=..&response_type=code&scope=snsapi_login&state=..#wechat_redirect`
///
/// ```
/// use wechat_oauth::AppId;
/// use wechat_oauth::authorize::{State, qrconnect_url, DEFAULT_OPEN_BASE};
///
/// let url = qrconnect_url(
///     DEFAULT_OPEN_BASE,
///     &AppId::new("wx123"),
///     "https://example.com/cb",
///     &State::new("abc123").unwrap(),
/// )
/// .unwrap();
/// assert_eq!(
///     url,
///     "https://open.weixin.qq.com/connect/qrconnect?appid=wx123\
///      &redirect_uri=https%3A%2F%2Fexample.com%2Fcb&response_type=code\
///      &scope=snsapi_login&state=abc123#wechat_redirect"
/// );
/// ```
pub fn qrconnect_url(
    open_base: &str,
    appid: &AppId,
    redirect_uri: &str,
    state: &State,
) -> Result<String, AuthorizeUrlError> {
    build(
        open_base,
        "/connect/qrconnect",
        appid,
        redirect_uri,
        "snsapi_login",
        state,
        "",
    )
}

/// `{open_base}/connect/oauth2/authorize?appid=..&redirect_uri=..&response_type=code&scope=..&state=..&connect_redirect=1#wechat_redirect`
///
/// `connect_redirect=1` keeps WeChat from calling the callback twice for one tap (a known
/// behaviour of its in-app browser without it).
pub fn oauth2_authorize_url(
    open_base: &str,
    appid: &AppId,
    redirect_uri: &str,
    scope: OfficialAccountScope,
    state: &State,
) -> Result<String, AuthorizeUrlError> {
    build(
        open_base,
        "/connect/oauth2/authorize",
        appid,
        redirect_uri,
        scope.as_str(),
        state,
        "&connect_redirect=1",
    )
}

fn build(
    open_base: &str,
    path: &str,
    appid: &AppId,
    redirect_uri: &str,
    scope: &str,
    state: &State,
    extra: &str,
) -> Result<String, AuthorizeUrlError> {
    match Url::parse(redirect_uri) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
        _ => return Err(AuthorizeUrlError::InvalidRedirectUri),
    }
    let encode = |s: &str| byte_serialize(s.as_bytes()).collect::<String>();
    Ok(format!(
        "{base}{path}?appid={appid}&redirect_uri={redirect}&response_type=code&scope={scope}&state={state}{extra}#wechat_redirect",
        base = open_base.trim_end_matches('/'),
        appid = encode(appid.as_str()),
        redirect = encode(redirect_uri),
        state = state.as_str(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_account_url_is_exact() {
        let url = oauth2_authorize_url(
            DEFAULT_OPEN_BASE,
            &AppId::new("wx520c15f417810387"),
            "https://chong.qq.com/php/index.php?d=&c=wxAdapter&m=mobileDeal",
            OfficialAccountScope::Base,
            &State::new("123").unwrap(),
        )
        .unwrap();
        assert_eq!(
            url,
            "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wx520c15f417810387\
             &redirect_uri=https%3A%2F%2Fchong.qq.com%2Fphp%2Findex.php%3Fd%3D%26c%3DwxAdapter%26m%3DmobileDeal\
             &response_type=code&scope=snsapi_base&state=123&connect_redirect=1#wechat_redirect"
        );
    }

    #[test]
    fn state_is_validated() {
        assert!(State::new("a".repeat(128)).is_ok());
        for bad in [
            String::new(),
            "a".repeat(129),
            "abc-def".into(),
            "a=b".into(),
            "é".into(),
        ] {
            assert_eq!(State::new(bad), Err(AuthorizeUrlError::InvalidState));
        }
    }

    #[test]
    fn redirect_uri_is_validated() {
        let state = State::new("s").unwrap();
        for bad in ["/relative", "javascript:alert(1)", "not a url"] {
            assert_eq!(
                qrconnect_url(DEFAULT_OPEN_BASE, &AppId::new("wx"), bad, &state),
                Err(AuthorizeUrlError::InvalidRedirectUri)
            );
        }
    }
}
