//! What can go wrong talking to WeChat, shaped so a caller can act on it.
//!
//! [`ErrCode`] is open (any `i64` is a value, `-1` included) with named constants and a
//! [`classification`](ErrCode::class). [`Error`] separates WeChat saying no ([`Error::Api`]) from
//! not reaching it ([`Error::Transport`], which never carries the URL: the AppSecret is in the
//! query), an unexpected HTTP status, and a body we could not decode (kept, with tokens redacted).

use std::fmt;
use std::time::Duration;

/// A WeChat `errcode`. Open: unknown codes are values, not parse failures.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrCode(pub i64);

impl ErrCode {
    /// `-1`: system busy. Retry idempotent calls with backoff; never a code exchange.
    pub const SYSTEM_BUSY: Self = Self(-1);
    /// `0`: success.
    pub const OK: Self = Self(0);
    /// `40001`: access token invalid or not the latest.
    pub const INVALID_CREDENTIAL: Self = Self(40001);
    /// `40002`: invalid grant type.
    pub const INVALID_GRANT_TYPE: Self = Self(40002);
    /// `40003`: the openid does not match.
    pub const INVALID_OPENID: Self = Self(40003);
    /// `40013`: invalid AppID.
    pub const INVALID_APPID: Self = Self(40013);
    /// `40014`: invalid access token.
    pub const INVALID_ACCESS_TOKEN: Self = Self(40014);
    /// `40029`: invalid code (wrong, expired, used, or another app's).
    pub const INVALID_CODE: Self = Self(40029);
    /// `40030`: invalid refresh token: the session is over.
    pub const INVALID_REFRESH_TOKEN: Self = Self(40030);
    /// `40125`: invalid AppSecret.
    pub const INVALID_APPSECRET: Self = Self(40125);
    /// `40163`: the code was already used (a double submit).
    pub const CODE_USED: Self = Self(40163);
    /// `40226`: high-risk user blocked (Mini Program).
    pub const HIGH_RISK_USER: Self = Self(40226);
    /// `41001`: missing AppID (41001–41009 are missing parameters).
    pub const MISSING_APPID: Self = Self(41001);
    /// `41004`: missing AppSecret.
    pub const MISSING_APPSECRET: Self = Self(41004);
    /// `41008`: missing code.
    pub const MISSING_CODE: Self = Self(41008);
    /// `42001`: access token expired.
    pub const ACCESS_TOKEN_EXPIRED: Self = Self(42001);
    /// `42002`: refresh token expired: the session is over.
    pub const REFRESH_TOKEN_EXPIRED: Self = Self(42002);
    /// `42003`: code expired.
    pub const CODE_EXPIRED: Self = Self(42003);
    /// `45011`: per-minute quota reached; retry after about a minute.
    pub const QUOTA_EXCEEDED: Self = Self(45011);
    /// `48001`: API not authorized for this grant (e.g. userinfo with `snsapi_base`).
    pub const API_UNAUTHORIZED: Self = Self(48001);
    /// `50001`: the user did not authorize this API.
    pub const USER_UNAUTHORIZED: Self = Self(50001);
    /// `50002`: user restricted.
    pub const USER_RESTRICTED: Self = Self(50002);
    /// `45009`: the daily quota of an API is used up (e.g. forced `stable_token` refreshes).
    pub const DAILY_QUOTA_EXCEEDED: Self = Self(45009);
    /// `87009`: the session key's signature is invalid: the key is no longer the user's
    /// current one (`checksession`); the Mini Program must `wx.login` again.
    pub const INVALID_SESSION_KEY: Self = Self(87009);

    /// What a caller should do about this code.
    pub fn class(self) -> ErrorClass {
        match self.0 {
            -1 | 45009 | 45011 => ErrorClass::Retryable,
            40001 | 40014 | 42001 => ErrorClass::RefreshAndRetry,
            40003 | 40029 | 40030 | 42002 | 42003 | 50001 | 87009 => ErrorClass::Reauthorize,
            40163 => ErrorClass::DuplicateCode,
            40002 | 40013 | 40125 | 41001..=41009 => ErrorClass::Misconfigured,
            48001 | 50002 | 40226 => ErrorClass::Denied,
            _ => ErrorClass::Unknown,
        }
    }

    /// Whether this code means the grant behind a refresh token is gone for good (42002, 40030,
    /// 40003, 50001): the session must end and the user authorize again.
    pub fn is_grant_gone(self) -> bool {
        matches!(self.0, 42002 | 40030 | 40003 | 50001)
    }
}

impl fmt::Debug for ErrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ErrCode({})", self.0)
    }
}

impl fmt::Display for ErrCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What to do about a failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// Transient: WeChat busy, over quota, unreachable, 5xx, or an undecodable answer. Idempotent
    /// calls may be retried with backoff; a user must not be logged out over it.
    Retryable,
    /// The access token is invalid or expired: refresh it, then retry once.
    RefreshAndRetry,
    /// The code or grant is gone: the user must authorize again.
    Reauthorize,
    /// The code was already exchanged (40163): answer with the first exchange's result if known.
    DuplicateCode,
    /// Our configuration is wrong (AppID, AppSecret, parameters): do not retry; report loudly.
    Misconfigured,
    /// WeChat refuses this user or this call for this grant: do not retry.
    Denied,
    /// An errcode or status this crate does not know.
    Unknown,
}

/// An error answer from WeChat: a non-zero `errcode`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The code.
    pub code: ErrCode,
    /// WeChat's `errmsg`, for logs only: it carries changing suffixes, never compare it.
    pub message: String,
    /// The request id extracted from `errmsg` (`rid: ...`), for support tickets.
    pub rid: Option<String>,
}

impl ApiError {
    /// Builds an error from WeChat's `errcode` and `errmsg`, extracting the `rid`.
    pub fn new(code: ErrCode, message: impl Into<String>) -> Self {
        let message = message.into();
        let rid = extract_rid(&message);
        Self { code, message, rid }
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("code", &self.code.0)
            .field("message", &self.message)
            .field("rid", &self.rid)
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "errcode {}: {}", self.code.0, self.message)
    }
}

fn extract_rid(message: &str) -> Option<String> {
    let start = message.find("rid:")? + "rid:".len();
    let rid: String = message[start..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!rid.is_empty()).then_some(rid)
}

/// Why a request did not get an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// The connect or total timeout ran out.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The connection broke while sending or receiving.
    Io,
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Timeout => "timed out",
            Self::Connect => "could not connect",
            Self::Io => "connection failed",
        })
    }
}

/// A response body kept for diagnosis, with token values redacted and its length bounded.
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedBody(String);

/// Bodies longer than this are cut when kept in an error.
const KEPT_BODY_LIMIT: usize = 2048;
/// JSON fields whose values are kept out of errors: secrets, and phone numbers (personal data).
const SECRET_FIELDS: [&str; 9] = [
    "access_token",
    "refresh_token",
    "session_key",
    "secret",
    "js_code",
    "code",
    "signature",
    "phoneNumber",
    "purePhoneNumber",
];
/// Query parameters that carry a secret, as a proxy's error page may echo the request URL.
const SECRET_PARAMS: [&str; 6] = [
    "access_token",
    "refresh_token",
    "secret",
    "js_code",
    "code",
    "signature",
];

impl RedactedBody {
    /// Keeps `body` with the values of token-bearing JSON fields (`"access_token":"..."`) and
    /// query parameters (`secret=...&`, as in an HTML error page that echoes the request URL)
    /// replaced by `[redacted]`.
    pub fn new(body: &str) -> Self {
        let mut kept = redact_json_fields(body);
        if SECRET_PARAMS.iter().any(|p| kept.contains(p)) {
            kept = redact_query_params(&kept);
        }
        if kept.len() > KEPT_BODY_LIMIT {
            let mut cut = KEPT_BODY_LIMIT;
            while !kept.is_char_boundary(cut) {
                cut -= 1;
            }
            kept.truncate(cut);
            kept.push_str("...[truncated]");
        }
        Self(kept)
    }

    /// The kept, redacted body.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `"field": "value"` → `"field":"[redacted]"` for each of [`SECRET_FIELDS`].
fn redact_json_fields(body: &str) -> String {
    let mut kept = String::with_capacity(body.len().min(KEPT_BODY_LIMIT));
    let mut rest = body;
    'outer: while !rest.is_empty() {
        // Find the next quoted key that names a secret, copy up to the start of its value.
        let Some(quote) = rest.find('"') else {
            kept.push_str(rest);
            break;
        };
        kept.push_str(&rest[..=quote]);
        rest = &rest[quote + 1..];
        for field in SECRET_FIELDS {
            let Some(after_key) = rest.strip_prefix(field).and_then(|r| r.strip_prefix('"')) else {
                continue;
            };
            let after_colon = after_key.trim_start();
            let Some(value) = after_colon
                .strip_prefix(':')
                .map(str::trim_start)
                .and_then(|v| v.strip_prefix('"'))
            else {
                continue;
            };
            kept.push_str(field);
            kept.push_str("\":\"[redacted]\"");
            // Skip the string value, honouring escapes; an unterminated one runs to the end.
            let mut escaped = false;
            for (i, c) in value.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '"' => {
                        rest = &value[i + 1..];
                        continue 'outer;
                    }
                    _ => {}
                }
            }
            rest = "";
            continue 'outer;
        }
        // Not a secret key: the quote was copied, continue after it.
    }
    kept
}

/// `name=value` → `name=[redacted]` for each of [`SECRET_PARAMS`], where `name` starts a word
/// (so `errcode=` and `appsecret=` are left alone) and the value runs to `&`, whitespace, a
/// quote, `<` or the end.
fn redact_query_params(text: &str) -> String {
    let mut kept = String::with_capacity(text.len());
    let mut rest = text;
    let mut previous: Option<char> = None;
    'outer: while let Some(c) = rest.chars().next() {
        let at_word_start = !previous.is_some_and(|p| p.is_alphanumeric() || p == '_');
        if at_word_start {
            for param in SECRET_PARAMS {
                let Some(value) = rest.strip_prefix(param).and_then(|r| r.strip_prefix('=')) else {
                    continue;
                };
                kept.push_str(param);
                kept.push_str("=[redacted]");
                let end = value
                    .find(|c: char| matches!(c, '&' | '"' | '\'' | '<') || c.is_whitespace())
                    .unwrap_or(value.len());
                rest = &value[end..];
                previous = Some(']');
                continue 'outer;
            }
        }
        kept.push(c);
        rest = &rest[c.len_utf8()..];
        previous = Some(c);
    }
    kept
}

impl fmt::Debug for RedactedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for RedactedBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A failed call to WeChat.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// WeChat answered with a non-zero `errcode`.
    #[error("WeChat refused the request: {0}")]
    Api(ApiError),
    /// No answer: timeout, connect failure, broken connection. Never carries the URL.
    #[error("could not reach WeChat: {kind}")]
    Transport {
        /// What happened.
        kind: TransportErrorKind,
    },
    /// WeChat (or a proxy) answered with an HTTP status other than 200.
    #[error("WeChat answered HTTP {status}")]
    HttpStatus {
        /// The status code.
        status: u16,
        /// The body, redacted.
        body: RedactedBody,
    },
    /// The answer was not the expected JSON.
    #[error("WeChat's answer could not be decoded: {reason}")]
    Decode {
        /// What was wrong with it.
        reason: String,
        /// The body, redacted.
        body: RedactedBody,
    },
}

impl Error {
    /// What a caller should do about this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Api(api) => api.code.class(),
            Self::Transport { .. } | Self::Decode { .. } => ErrorClass::Retryable,
            Self::HttpStatus { status, .. } if *status >= 500 || *status == 429 => {
                ErrorClass::Retryable
            }
            Self::HttpStatus { .. } => ErrorClass::Unknown,
        }
    }

    /// The WeChat errcode, if WeChat answered with one.
    pub fn errcode(&self) -> Option<ErrCode> {
        match self {
            Self::Api(api) => Some(api.code),
            _ => None,
        }
    }

    /// Whether the grant behind the user's refresh token is gone (see [`ErrCode::is_grant_gone`]).
    pub fn is_grant_gone(&self) -> bool {
        self.errcode().is_some_and(ErrCode::is_grant_gone)
    }

    /// A hint for how long to wait before trying again, for transient failures.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api(api) if api.code == ErrCode::QUOTA_EXCEEDED => Some(Duration::from_secs(60)),
            Self::Api(api) if api.code == ErrCode::DAILY_QUOTA_EXCEEDED => {
                Some(Duration::from_secs(3600))
            }
            _ if self.class() == ErrorClass::Retryable => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    /// Whether the client retries this automatically for idempotent calls: `-1`, transport
    /// errors and 5xx. (45011 is transient too, but retrying within a second cannot help.)
    #[cfg(feature = "client")]
    pub(crate) fn is_auto_retryable(&self) -> bool {
        match self {
            Self::Api(api) => api.code == ErrCode::SYSTEM_BUSY,
            Self::Transport { .. } => true,
            Self::HttpStatus { status, .. } => *status >= 500,
            Self::Decode { .. } => false,
        }
    }
}

impl From<ApiError> for Error {
    fn from(value: ApiError) -> Self {
        Self::Api(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_covers_the_documented_table() {
        use ErrorClass::*;
        let table = [
            (-1, Retryable),
            (45011, Retryable),
            (40001, RefreshAndRetry),
            (40014, RefreshAndRetry),
            (42001, RefreshAndRetry),
            (40003, Reauthorize),
            (40029, Reauthorize),
            (40030, Reauthorize),
            (42002, Reauthorize),
            (42003, Reauthorize),
            (50001, Reauthorize),
            (40163, DuplicateCode),
            (40013, Misconfigured),
            (40125, Misconfigured),
            (41001, Misconfigured),
            (41009, Misconfigured),
            (48001, Denied),
            (50002, Denied),
            (40226, Denied),
            (12345, Unknown),
            (-2, Unknown),
        ];
        for (code, class) in table {
            assert_eq!(ErrCode(code).class(), class, "errcode {code}");
        }
        for gone in [42002, 40030, 40003, 50001] {
            assert!(ErrCode(gone).is_grant_gone());
        }
        assert!(!ErrCode(42001).is_grant_gone());
    }

    #[test]
    fn rid_is_extracted() {
        let e = ApiError::new(
            ErrCode(40029),
            "invalid code, rid: 6745f0a1-1b2c3d4e-5f6a7b8c",
        );
        assert_eq!(e.rid.as_deref(), Some("6745f0a1-1b2c3d4e-5f6a7b8c"));
        assert_eq!(ApiError::new(ErrCode(-1), "system error").rid, None);
    }

    #[test]
    fn bodies_are_redacted() {
        let body = RedactedBody::new(
            r#"{"access_token" : "AT-SECRET","refresh_token":"RT\"SECRET","openid":"o1","session_key":"SK"}"#,
        );
        let s = body.as_str();
        assert!(!s.contains("SECRET") && !s.contains("SK\""), "{s}");
        assert!(s.contains(r#""openid":"o1""#), "{s}");
        // Unterminated value: everything after it is dropped.
        let cut = RedactedBody::new(r#"{"access_token":"AT-SECRET"#);
        assert!(!cut.as_str().contains("AT-SECRET"));
        let long = RedactedBody::new(&"é".repeat(5000));
        assert!(long.as_str().ends_with("[truncated]"));
    }

    #[test]
    fn query_string_secrets_in_echoed_urls_are_redacted() {
        let page = concat!(
            "<html><body>502 Bad Gateway: GET /sns/oauth2/access_token?appid=wx1&secret=S3CRET",
            "&code=C0DE&grant_type=authorization_code<br>",
            "upstream /sns/jscode2session?js_code=JSC0DE&secret=S3CRET2 failed",
            "<a href='/sns/userinfo?access_token=AT0K&openid=o1'>retry</a>",
            "<a href=\"/sns/oauth2/refresh_token?refresh_token=RT0K\">refresh</a>",
            " errcode=40029 appsecret=visible code=C1\tend</body></html>",
        );
        let s = RedactedBody::new(page).as_str().to_owned();
        for secret in ["S3CRET", "C0DE", "JSC0DE", "AT0K", "RT0K", "C1"] {
            assert!(!s.contains(secret), "{secret} leaked: {s}");
        }
        for kept in [
            "appid=wx1&secret=[redacted]&code=[redacted]&grant_type=authorization_code<br>",
            "js_code=[redacted]&secret=[redacted] failed",
            "access_token=[redacted]&openid=o1'",
            "refresh_token=[redacted]\"",
            "errcode=40029",
            "appsecret=visible",
            "code=[redacted]\tend",
        ] {
            assert!(s.contains(kept), "expected {kept:?} in {s}");
        }
        assert_eq!(RedactedBody::new("x?code=").as_str(), "x?code=[redacted]");
        assert_eq!(
            RedactedBody::new("a secret=é&b").as_str(),
            "a secret=[redacted]&b"
        );
    }
}
