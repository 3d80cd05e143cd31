//! Decoding WeChat's answers, quirks included.
//!
//! The body is decoded as UTF-8 lossily whatever the Content-Type says; raw control characters
//! inside strings (seen in nicknames) are escaped before JSON parsing; `errcode` is accepted as a
//! number or a string and checked before the success shape is parsed; unknown fields are ignored.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer};

use crate::error::{ApiError, ErrCode, Error, RedactedBody};
use crate::types::{
    AccessToken, MiniProgramSession, OpenId, RefreshToken, Scopes, SessionKey, TokenGrant, UnionId,
    UserInfo,
};

/// The lifetime WeChat documents for an access token, used when `expires_in` is missing.
const DEFAULT_EXPIRES_IN: u64 = 7200;

/// Decodes a body: a non-zero `errcode` becomes [`Error::Api`], anything else must parse as `T`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let text = String::from_utf8_lossy(bytes);
    let json = sanitize(&text);
    let decode_error = |reason: String| Error::Decode {
        reason,
        body: RedactedBody::new(&text),
    };
    if json.trim().is_empty() {
        return Err(decode_error("empty body".to_owned()));
    }
    let probe: Probe = serde_json::from_str(&json).map_err(|e| decode_error(describe(&e)))?;
    if let Some(code) = probe.errcode
        && code != ErrCode::OK
    {
        return Err(Error::Api(ApiError::new(
            code,
            probe.errmsg.unwrap_or_default(),
        )));
    }
    serde_json::from_str(&json).map_err(|e| decode_error(describe(&e)))
}

/// A serde error's message without the input it quotes (it may quote a token).
fn describe(error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "unexpected JSON shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    // Data errors name the missing field ("missing field `openid`"), which is useful and safe;
    // invalid-value errors can quote the value, so only the field-missing kind is passed on.
    let message = error.to_string();
    match message.find("missing field") {
        Some(at) => format!(
            "{what}: {}",
            message[at..].split(" at line").next().unwrap_or("")
        ),
        None => format!("{what} at line {} column {}", error.line(), error.column()),
    }
}

/// Escapes raw control characters inside JSON strings and drops stray ones outside them.
fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|b| b < 0x20) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            match c {
                _ if escaped => {
                    escaped = false;
                    out.push(c);
                }
                '\\' => {
                    escaped = true;
                    out.push(c);
                }
                '"' => {
                    in_string = false;
                    out.push(c);
                }
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        } else {
            match c {
                '"' => {
                    in_string = true;
                    out.push(c);
                }
                ' ' | '\t' | '\n' | '\r' => out.push(c),
                c if (c as u32) < 0x20 => {}
                c => out.push(c),
            }
        }
    }
    Cow::Owned(out)
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default, deserialize_with = "lenient_errcode")]
    errcode: Option<ErrCode>,
    #[serde(default)]
    errmsg: Option<String>,
}

/// An integer WeChat may send as a number or a string (`"40029"`); `null` counts as absent.
#[derive(Deserialize)]
#[serde(untagged)]
enum LenientInt {
    Int(i64),
    Float(f64),
    Text(String),
}

impl LenientInt {
    fn value(self) -> Option<i64> {
        match self {
            Self::Int(v) => Some(v),
            Self::Float(v) if v.fract() == 0.0 && v.abs() < 9e15 => Some(v as i64),
            Self::Float(_) => None,
            Self::Text(s) => s.trim().parse().ok(),
        }
    }
}

fn lenient_int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Option::<LenientInt>::deserialize(deserializer)? {
        None => Ok(None),
        Some(value) => value
            .value()
            .map(Some)
            .ok_or_else(|| de::Error::custom("expected an integer")),
    }
}

fn lenient_errcode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ErrCode>, D::Error> {
    Ok(lenient_int(d)?.map(ErrCode))
}

/// The success body of `/sns/oauth2/access_token` and `/sns/oauth2/refresh_token`.
#[derive(Deserialize)]
pub(crate) struct WireGrant {
    access_token: String,
    #[serde(default, deserialize_with = "lenient_int")]
    expires_in: Option<i64>,
    refresh_token: String,
    openid: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    unionid: Option<String>,
    #[serde(default, deserialize_with = "lenient_int")]
    is_snapshotuser: Option<i64>,
}

impl WireGrant {
    pub(crate) fn into_grant(self, now: SystemTime) -> TokenGrant {
        let expires_in = self
            .expires_in
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(DEFAULT_EXPIRES_IN);
        TokenGrant {
            access_token: AccessToken::new(self.access_token),
            access_token_expires_at: now + Duration::from_secs(expires_in),
            refresh_token: RefreshToken::new(self.refresh_token),
            openid: OpenId::new(self.openid),
            scopes: Scopes::parse(self.scope.as_deref().unwrap_or("")),
            unionid: non_empty(self.unionid).map(UnionId::new),
            snapshot_user: self.is_snapshotuser == Some(1),
        }
    }
}

/// The success body of `/sns/auth`: only the errcode matters, checked by [`decode`].
#[derive(Deserialize)]
pub(crate) struct WireOk {}

/// The success body of `/sns/userinfo`.
#[derive(Deserialize)]
pub(crate) struct WireUserInfo {
    openid: String,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default, deserialize_with = "lenient_int")]
    sex: Option<i64>,
    #[serde(default)]
    province: Option<String>,
    #[serde(default)]
    city: Option<String>,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    headimgurl: Option<String>,
    #[serde(default)]
    privilege: Option<Vec<String>>,
    #[serde(default)]
    unionid: Option<String>,
    #[serde(default)]
    language: Option<String>,
}

impl From<WireUserInfo> for UserInfo {
    fn from(w: WireUserInfo) -> Self {
        UserInfo {
            openid: OpenId::new(w.openid),
            nickname: w.nickname.unwrap_or_default(),
            headimgurl: non_empty(w.headimgurl),
            privilege: w.privilege.unwrap_or_default(),
            unionid: non_empty(w.unionid).map(UnionId::new),
            sex: w.sex,
            province: w.province,
            city: w.city,
            country: w.country,
            language: non_empty(w.language),
        }
    }
}

/// The success body of `/sns/jscode2session`.
#[derive(Deserialize)]
pub(crate) struct WireMiniProgramSession {
    openid: String,
    session_key: String,
    #[serde(default)]
    unionid: Option<String>,
}

impl From<WireMiniProgramSession> for MiniProgramSession {
    fn from(w: WireMiniProgramSession) -> Self {
        MiniProgramSession {
            openid: OpenId::new(w.openid),
            session_key: SessionKey::new(w.session_key),
            unionid: non_empty(w.unionid).map(UnionId::new),
        }
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use crate::types::Scope;

    fn grant(body: &str) -> Result<TokenGrant, Error> {
        decode::<WireGrant>(body.as_bytes()).map(|w| w.into_grant(SystemTime::UNIX_EPOCH))
    }

    #[test]
    fn success_with_trailing_comma_scope_and_unknown_fields() {
        let g = grant(r#"{"access_token":"AT","expires_in":7200,"refresh_token":"RT","openid":"o1","scope":"snsapi_userinfo,","unionid":"u1","is_snapshotuser":1,"future_field":{"x":[1]}}"#).unwrap();
        assert_eq!(g.access_token.secret(), "AT");
        assert_eq!(
            g.access_token_expires_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(7200)
        );
        assert_eq!(g.scopes.iter().collect::<Vec<_>>(), vec![&Scope::UserInfo]);
        assert_eq!(g.unionid, Some(UnionId::new("u1")));
        assert!(g.snapshot_user);
    }

    #[test]
    fn errcode_zero_with_success_shape_is_success() {
        let g = grant(r#"{"errcode":0,"errmsg":"ok","access_token":"AT","expires_in":"7200","refresh_token":"RT","openid":"o1","scope":"snsapi_base"}"#).unwrap();
        assert!(!g.snapshot_user);
        assert_eq!(g.unionid, None);
    }

    #[test]
    fn errcode_as_number_string_and_negative() {
        for body in [
            r#"{"errcode":40029,"errmsg":"invalid code, rid: 1-2-3"}"#,
            r#"{"errcode":"40029","errmsg":"invalid code"}"#,
            r#"{"errcode":40029.0}"#,
        ] {
            let err = grant(body).unwrap_err();
            assert_eq!(err.errcode(), Some(ErrCode::INVALID_CODE), "{body}");
            assert_eq!(err.class(), ErrorClass::Reauthorize);
        }
        let busy = grant(r#"{"errcode":-1,"errmsg":"system error"}"#).unwrap_err();
        assert_eq!(busy.errcode(), Some(ErrCode::SYSTEM_BUSY));
        assert_eq!(busy.class(), ErrorClass::Retryable);
        let unknown = grant(r#"{"errcode":99999,"errmsg":"new"}"#).unwrap_err();
        assert_eq!(unknown.errcode(), Some(ErrCode(99999)));
    }

    #[test]
    fn control_characters_and_emoji_in_nickname_survive() {
        let body = "{\"openid\":\"o1\",\"nickname\":\"a\u{1}b\tc\n😀\",\"sex\":0,\"privilege\":[],\u{7}\"language\":\"zh_CN\"}";
        let info: UserInfo = decode::<WireUserInfo>(body.as_bytes()).unwrap().into();
        assert_eq!(info.nickname, "a\u{1}b\tc\n😀");
        assert_eq!(info.language.as_deref(), Some("zh_CN"));
        // Invalid UTF-8 is decoded lossily.
        let mut bytes = br#"{"openid":"o1","nickname":"x"#.to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(br#"y"}"#);
        let info: UserInfo = decode::<WireUserInfo>(&bytes).unwrap().into();
        assert_eq!(info.nickname, "x\u{fffd}\u{fffd}y");
    }

    #[test]
    fn empty_html_and_shapeless_bodies_are_decode_errors_without_tokens() {
        for body in ["", "   ", "<html><body>502 Bad Gateway</body></html>", "{}"] {
            let err = grant(body).unwrap_err();
            assert!(matches!(err, Error::Decode { .. }), "{body}: {err:?}");
            assert_eq!(err.class(), ErrorClass::Retryable);
        }
        let err = grant(r#"{"access_token":"AT-SECRET","openid":"o1"}"#).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("missing field `refresh_token`"), "{shown}");
        assert!(!shown.contains("AT-SECRET"), "{shown}");
        let err = grant(r#"{"access_token":"AT-SECRET","expires_in":"soon"}"#).unwrap_err();
        assert!(!format!("{err} {err:?}").contains("AT-SECRET"));
    }

    #[test]
    fn jscode2session_without_errcode() {
        let s: MiniProgramSession =
            decode::<WireMiniProgramSession>(br#"{"openid":"o1","session_key":"SK=="}"#)
                .unwrap()
                .into();
        assert_eq!(s.session_key.secret(), "SK==");
    }
}
