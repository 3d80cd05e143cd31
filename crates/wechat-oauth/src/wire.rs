//! Decoding WeChat's answers, quirks included.
//!
//! The body is decoded as UTF-8 lossily whatever the Content-Type says; raw control characters
//! inside strings (seen in nicknames) are escaped and unpaired UTF-16 surrogate escapes (a
//! truncated emoji) become U+FFFD before JSON parsing; `errcode` is accepted as a number or a
//! string and checked before the success shape is parsed; `errmsg` may be any JSON value; optional
//! integers that are garbage (`""`) count as absent; unknown fields are ignored. `expires_in` is
//! clamped to a sane range so no answer can make an expiry overflow.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer};

use crate::error::{ApiError, ErrCode, Error, RedactedBody};
use crate::types::{
    AccessToken, AppAccessToken, AppId, AppTokenGrant, Follower, MiniProgramSession, OpenId,
    PhoneInfo, QrTicket, RefreshToken, Scopes, SessionKey, TokenGrant, UnionId, UserInfo,
};

/// The lifetime WeChat documents for an access token, used when `expires_in` is missing.
const DEFAULT_EXPIRES_IN: u64 = 7200;
/// The shortest `expires_in` believed: zero or negative answers count as one second.
const MIN_EXPIRES_IN: u64 = 1;
/// The longest `expires_in` believed (31 days): a larger answer is clamped to it, so a buggy or
/// hostile body can neither overflow `SystemTime` nor keep a token "valid" for years.
const MAX_EXPIRES_IN: u64 = 86_400 * 31;

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
        return Err(Error::Api(ApiError::new(code, errmsg_text(probe.errmsg))));
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

/// Makes a body acceptable to serde_json without losing what can be kept: escapes raw control
/// characters inside JSON strings, drops stray ones outside them, and rewrites unpaired UTF-16
/// surrogate escapes (`\ud83d` with no low half after it, or a lone low half) to `\ufffd`.
/// Bodies with neither a control character nor a `\u` escape are returned as they are.
fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.bytes().any(|b| b < 0x20) && !text.contains("\\u") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_string = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        if !in_string {
            match c {
                '"' => {
                    in_string = true;
                    out.push(c);
                }
                ' ' | '\t' | '\n' | '\r' => out.push(c),
                c if (c as u32) < 0x20 => {}
                c => out.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                in_string = false;
                out.push(c);
            }
            '\\' => match rest.chars().next() {
                Some('u') => {
                    // `rest` is `u` + 4 hex digits (+ maybe `\\u` + 4 more).
                    let unit = rest.get(1..5).and_then(hex4);
                    match unit {
                        Some(0xD800..=0xDBFF) => {
                            let low = rest.get(5..7) == Some("\\u")
                                && rest
                                    .get(7..11)
                                    .and_then(hex4)
                                    .is_some_and(|u| (0xDC00..=0xDFFF).contains(&u));
                            let taken = if low {
                                out.push('\\');
                                out.push_str(&rest[..11]);
                                11
                            } else {
                                out.push_str("\\ufffd");
                                5
                            };
                            rest = &rest[taken..];
                        }
                        Some(0xDC00..=0xDFFF) => {
                            out.push_str("\\ufffd");
                            rest = &rest[5..];
                        }
                        // A plain escape, or a malformed one serde_json will report.
                        _ => out.push('\\'),
                    }
                }
                Some(escaped) => {
                    out.push('\\');
                    out.push(escaped);
                    rest = &rest[escaped.len_utf8()..];
                }
                None => out.push('\\'),
            },
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Four hex digits as a UTF-16 code unit (`from_str_radix` alone would accept a sign).
fn hex4(digits: &str) -> Option<u16> {
    if digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        u16::from_str_radix(digits, 16).ok()
    } else {
        None
    }
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default, deserialize_with = "lenient_errcode")]
    errcode: Option<ErrCode>,
    /// Any JSON value: WeChat's `errmsg` is a string, but a proxy's may not be.
    #[serde(default)]
    errmsg: Option<serde_json::Value>,
}

/// `errmsg` as text: a string as it is, anything else as its JSON text, absent as empty.
fn errmsg_text(errmsg: Option<serde_json::Value>) -> String {
    match errmsg {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(text)) => text,
        Some(other) => other.to_string(),
    }
}

/// An integer WeChat may send as a number or a string (`"40029"`); `null` counts as absent.
#[derive(Deserialize)]
#[serde(untagged)]
enum LenientInt {
    Int(i64),
    /// Beyond `i64`: saturated.
    Big(u64),
    Float(f64),
    Text(String),
    /// Any other JSON value (`true`, `{}`, `[]`): not an integer.
    Other(de::IgnoredAny),
}

impl LenientInt {
    fn value(self) -> Option<i64> {
        match self {
            Self::Int(v) => Some(v),
            Self::Big(v) => Some(i64::try_from(v).unwrap_or(i64::MAX)),
            Self::Float(v) if v.fract() == 0.0 && v.abs() < 9e15 => Some(v as i64),
            Self::Float(_) | Self::Other(_) => None,
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

/// An optional integer where garbage (`""`, `"soon"`, `true`, `{}`) counts as absent instead of
/// failing the whole body: for fields a login must not fail over (`sex`, `is_snapshotuser`,
/// `expires_in`).
fn optional_int<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(Option::<LenientInt>::deserialize(deserializer)?.and_then(LenientInt::value))
}

fn lenient_errcode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ErrCode>, D::Error> {
    Ok(lenient_int(d)?.map(ErrCode))
}

/// The success body of `/sns/oauth2/access_token` and `/sns/oauth2/refresh_token`.
#[derive(Deserialize)]
pub(crate) struct WireGrant {
    access_token: String,
    #[serde(default, deserialize_with = "optional_int")]
    expires_in: Option<i64>,
    refresh_token: String,
    openid: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    unionid: Option<String>,
    #[serde(default, deserialize_with = "optional_int")]
    is_snapshotuser: Option<i64>,
}

impl WireGrant {
    /// The grant, its expiry counted from `now`: the time the request was *sent*, so latency and
    /// retries can only make us think the token expires earlier than it does, never later.
    ///
    /// A reply with an empty or oversized openid, unionid or token is a bad reply
    /// ([`Error::Decode`]): nothing built from it could be stored or signed safely.
    pub(crate) fn into_grant(self, now: SystemTime) -> Result<TokenGrant, Error> {
        bounded("access_token", &self.access_token, MAX_TOKEN_LEN)?;
        bounded("refresh_token", &self.refresh_token, MAX_TOKEN_LEN)?;
        bounded("openid", &self.openid, MAX_ID_LEN)?;
        optional_bounded("unionid", self.unionid.as_deref())?;
        Ok(TokenGrant {
            access_token: AccessToken::new(self.access_token),
            access_token_expires_at: expires_at(now, self.expires_in),
            refresh_token: RefreshToken::new(self.refresh_token),
            openid: OpenId::new(self.openid),
            scopes: Scopes::parse(self.scope.as_deref().unwrap_or("")),
            unionid: non_empty(self.unionid).map(UnionId::new),
            snapshot_user: self.is_snapshotuser == Some(1),
        })
    }
}

/// The longest openid or unionid believed (WeChat's are 28 and 29 characters).
const MAX_ID_LEN: usize = 128;
/// The longest access token, refresh token or session key believed (WeChat's are under 200).
const MAX_TOKEN_LEN: usize = 2048;

/// `value` is a usable identifier or token: not empty, at most `max` bytes.
fn bounded(field: &'static str, value: &str, max: usize) -> Result<(), Error> {
    if value.is_empty() || value.len() > max {
        return Err(Error::Decode {
            reason: format!("{field} is empty or longer than {max} bytes"),
            body: RedactedBody::new(""),
        });
    }
    Ok(())
}

/// An optional unionid: absent or empty (read as absent) is fine, oversized is not.
fn optional_bounded(field: &'static str, value: Option<&str>) -> Result<(), Error> {
    match value {
        Some(v) if !v.is_empty() => bounded(field, v, MAX_ID_LEN),
        _ => Ok(()),
    }
}

/// `now + expires_in`, with `expires_in` defaulted when absent, clamped to
/// `MIN_EXPIRES_IN..=MAX_EXPIRES_IN`, and an addition that cannot panic (should `now` be so far in
/// the future that even that overflows, the token counts as expiring `now`).
fn expires_at(now: SystemTime, expires_in: Option<i64>) -> SystemTime {
    let seconds = match expires_in {
        None => DEFAULT_EXPIRES_IN,
        Some(s) => u64::try_from(s).unwrap_or(0),
    }
    .clamp(MIN_EXPIRES_IN, MAX_EXPIRES_IN);
    now.checked_add(Duration::from_secs(seconds)).unwrap_or(now)
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
    #[serde(default, deserialize_with = "optional_int")]
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

impl TryFrom<WireMiniProgramSession> for MiniProgramSession {
    type Error = Error;

    /// Refuses an empty or oversized openid, unionid or session key, as
    /// [`WireGrant::into_grant`] does.
    fn try_from(w: WireMiniProgramSession) -> Result<Self, Error> {
        bounded("openid", &w.openid, MAX_ID_LEN)?;
        bounded("session_key", &w.session_key, MAX_TOKEN_LEN)?;
        optional_bounded("unionid", w.unionid.as_deref())?;
        Ok(MiniProgramSession {
            openid: OpenId::new(w.openid),
            session_key: SessionKey::new(w.session_key),
            unionid: non_empty(w.unionid).map(UnionId::new),
        })
    }
}

/// The success body of `/cgi-bin/stable_token` (and `/cgi-bin/token`).
#[derive(Deserialize)]
pub(crate) struct WireAppToken {
    access_token: String,
    #[serde(default, deserialize_with = "optional_int")]
    expires_in: Option<i64>,
}

impl WireAppToken {
    /// The grant, its expiry counted from `sent_at` (see [`WireGrant::into_grant`]).
    pub(crate) fn into_grant(self, sent_at: SystemTime) -> Result<AppTokenGrant, Error> {
        bounded("access_token", &self.access_token, MAX_TOKEN_LEN)?;
        Ok(AppTokenGrant {
            access_token: AppAccessToken::new(self.access_token),
            expires_at: expires_at(sent_at, self.expires_in),
        })
    }
}

/// The success body of `/cgi-bin/qrcode/create`.
#[derive(Deserialize)]
pub(crate) struct WireQrTicket {
    ticket: String,
    #[serde(default, deserialize_with = "optional_int")]
    expire_seconds: Option<i64>,
    #[serde(default)]
    url: Option<String>,
}

impl WireQrTicket {
    /// The ticket, its expiry counted from `sent_at`.
    pub(crate) fn into_ticket(self, sent_at: SystemTime) -> Result<QrTicket, Error> {
        bounded("ticket", &self.ticket, MAX_TOKEN_LEN)?;
        if self.ticket.is_empty() {
            return Err(Error::Decode {
                reason: "the QR code's ticket is empty".to_owned(),
                body: RedactedBody::new(""),
            });
        }
        let seconds = u64::try_from(self.expire_seconds.unwrap_or(60)).unwrap_or(60);
        Ok(QrTicket {
            ticket: self.ticket,
            expires_at: sent_at
                .checked_add(Duration::from_secs(seconds))
                .unwrap_or(sent_at),
            url: self.url.unwrap_or_default(),
        })
    }
}

/// The success body of `/cgi-bin/user/info`.
#[derive(Deserialize)]
pub(crate) struct WireFollower {
    #[serde(default, deserialize_with = "optional_int")]
    subscribe: Option<i64>,
    openid: String,
    #[serde(default)]
    unionid: Option<String>,
}

impl WireFollower {
    pub(crate) fn into_follower(self) -> Result<Follower, Error> {
        bounded("openid", &self.openid, 128)?;
        let unionid = non_empty(self.unionid);
        if let Some(unionid) = &unionid {
            bounded("unionid", unionid, 128)?;
        }
        Ok(Follower {
            openid: OpenId::new(self.openid),
            subscribed: self.subscribe == Some(1),
            unionid: unionid.map(UnionId::new),
        })
    }
}

/// The success body of `/wxa/business/getuserphonenumber`.
#[derive(Deserialize)]
pub(crate) struct WirePhone {
    phone_info: WirePhoneInfo,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePhoneInfo {
    phone_number: String,
    #[serde(default)]
    pure_phone_number: Option<String>,
    /// A string in the documentation, a number in its example.
    #[serde(default)]
    country_code: Option<serde_json::Value>,
    #[serde(default)]
    watermark: Option<WireWatermark>,
}

#[derive(Deserialize)]
struct WireWatermark {
    #[serde(default)]
    appid: Option<String>,
}

impl WirePhone {
    /// The phone number, refused if its watermark names another app than `appid`.
    pub(crate) fn into_phone(self, appid: &AppId) -> Result<PhoneInfo, Error> {
        let info = self.phone_info;
        if let Some(other) = info.watermark.and_then(|w| w.appid)
            && other != appid.as_str()
        {
            return Err(Error::Decode {
                reason: "the phone number's watermark names another app".to_owned(),
                body: RedactedBody::new(""),
            });
        }
        bounded("phoneNumber", &info.phone_number, 64)?;
        let country_code = match info.country_code {
            Some(serde_json::Value::String(code)) => code,
            Some(serde_json::Value::Number(code)) => code.to_string(),
            _ => String::new(),
        };
        Ok(PhoneInfo {
            pure_phone_number: non_empty(info.pure_phone_number)
                .unwrap_or_else(|| info.phone_number.clone()),
            phone_number: info.phone_number,
            country_code,
        })
    }
}

/// The success body of `/wxa/resetusersessionkey`.
#[derive(Deserialize)]
pub(crate) struct WireSessionKey {
    session_key: String,
}

impl WireSessionKey {
    pub(crate) fn into_key(self) -> Result<SessionKey, Error> {
        bounded("session_key", &self.session_key, MAX_TOKEN_LEN)?;
        Ok(SessionKey::new(self.session_key))
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
        decode::<WireGrant>(body.as_bytes())?.into_grant(SystemTime::UNIX_EPOCH)
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
    fn empty_or_oversized_ids_and_tokens_are_bad_replies() {
        let long_id = "o".repeat(129);
        let long_token = "T".repeat(2049);
        for body in [
            r#"{"access_token":"AT","refresh_token":"RT","openid":""}"#.to_owned(),
            format!(r#"{{"access_token":"AT","refresh_token":"RT","openid":"{long_id}"}}"#),
            format!(
                r#"{{"access_token":"AT","refresh_token":"RT","openid":"o1","unionid":"{long_id}"}}"#
            ),
            r#"{"access_token":"","refresh_token":"RT","openid":"o1"}"#.to_owned(),
            format!(r#"{{"access_token":"{long_token}","refresh_token":"RT","openid":"o1"}}"#),
            r#"{"access_token":"AT","refresh_token":"","openid":"o1"}"#.to_owned(),
        ] {
            let err = grant(&body).unwrap_err();
            assert!(matches!(err, Error::Decode { .. }), "{body}: {err:?}");
            assert_eq!(err.class(), ErrorClass::Retryable);
        }
        let ok = grant(r#"{"access_token":"AT","refresh_token":"RT","openid":"o1","unionid":""}"#);
        assert_eq!(
            ok.unwrap().unionid,
            None,
            "an empty unionid is an absent one"
        );
        for body in [
            r#"{"openid":"","session_key":"SK"}"#.to_owned(),
            r#"{"openid":"o1","session_key":""}"#.to_owned(),
            format!(r#"{{"openid":"{long_id}","session_key":"SK"}}"#),
        ] {
            let wire = decode::<WireMiniProgramSession>(body.as_bytes()).unwrap();
            let err = MiniProgramSession::try_from(wire).unwrap_err();
            assert!(matches!(err, Error::Decode { .. }), "{body}");
        }
    }

    #[test]
    fn jscode2session_without_errcode() {
        let s: MiniProgramSession =
            decode::<WireMiniProgramSession>(br#"{"openid":"o1","session_key":"SK=="}"#)
                .unwrap()
                .try_into()
                .unwrap();
        assert_eq!(s.session_key.secret(), "SK==");
    }

    #[test]
    fn expires_in_is_clamped_and_never_overflows() {
        let body = |expires_in: &str| {
            format!(
                r#"{{"access_token":"AT","expires_in":{expires_in},"refresh_token":"RT","openid":"o1"}}"#
            )
        };
        let epoch = SystemTime::UNIX_EPOCH;
        let max = Duration::from_secs(MAX_EXPIRES_IN);
        for (expires_in, expected) in [
            ("9223372036854775807", max),
            ("18446744073709551615", max),
            ("\"99999999999\"", max),
            ("-5", Duration::from_secs(1)),
            ("0", Duration::from_secs(1)),
            ("7200", Duration::from_secs(7200)),
            ("null", Duration::from_secs(DEFAULT_EXPIRES_IN)),
        ] {
            let g = grant(&body(expires_in)).unwrap();
            assert_eq!(g.access_token_expires_at, epoch + expected, "{expires_in}");
        }
        // A `now` so late that even the clamped addition overflows: no panic, expires at once.
        if let Some(far) = epoch.checked_add(Duration::from_secs(i64::MAX as u64)) {
            let wire = decode::<WireGrant>(body("7200").as_bytes()).unwrap();
            let g = wire.into_grant(far).unwrap();
            assert!(g.access_token_expires_at >= far);
        }
    }

    #[test]
    fn garbage_in_optional_integers_counts_as_absent() {
        let g = grant(r#"{"access_token":"AT","expires_in":"","refresh_token":"RT","openid":"o1","is_snapshotuser":""}"#).unwrap();
        assert_eq!(
            g.access_token_expires_at,
            SystemTime::UNIX_EPOCH + Duration::from_secs(DEFAULT_EXPIRES_IN)
        );
        assert!(!g.snapshot_user);
        let g = grant(r#"{"access_token":"AT","expires_in":{"x":1},"refresh_token":"RT","openid":"o1","is_snapshotuser":true}"#).unwrap();
        assert!(!g.snapshot_user);
        for sex in [r#""""#, r#""n/a""#, "[]", "1.5", "true"] {
            let body = format!(r#"{{"openid":"o1","nickname":"n","sex":{sex}}}"#);
            let info: UserInfo = decode::<WireUserInfo>(body.as_bytes()).unwrap().into();
            assert_eq!(info.sex, None, "{sex}");
        }
        let info: UserInfo = decode::<WireUserInfo>(br#"{"openid":"o1","sex":"1"}"#)
            .unwrap()
            .into();
        assert_eq!(info.sex, Some(1));
        // errcode stays strict: garbage there is not "no error".
        assert!(matches!(
            grant(r#"{"errcode":"busy","errmsg":"x"}"#),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn errmsg_may_be_any_json_value() {
        for (errmsg, expected) in [
            (r#""invalid code""#, "invalid code"),
            (r#"{"zh":"无效","rid":1}"#, r#"{"rid":1,"zh":"无效"}"#),
            ("42", "42"),
            ("null", ""),
            (r#"["a"]"#, r#"["a"]"#),
        ] {
            let body = format!(r#"{{"errcode":40029,"errmsg":{errmsg}}}"#);
            match grant(&body) {
                Err(Error::Api(api)) => {
                    assert_eq!(api.code, ErrCode::INVALID_CODE, "{errmsg}");
                    assert_eq!(api.message, expected, "{errmsg}");
                }
                other => panic!("{errmsg}: expected an API error, got {other:?}"),
            }
        }
    }

    #[test]
    fn unpaired_surrogate_escapes_become_replacement_characters() {
        let nickname = |escaped: &str| -> String {
            let body = format!(r#"{{"openid":"o1","nickname":"{escaped}"}}"#);
            let info: UserInfo = decode::<WireUserInfo>(body.as_bytes()).unwrap().into();
            info.nickname
        };
        // A pair is kept; a truncated emoji (high half only) or a lone low half is replaced.
        assert_eq!(nickname(r"a\ud83d\ude00b"), "a😀b");
        assert_eq!(nickname(r"a\ud83d"), "a\u{fffd}");
        assert_eq!(nickname(r"a\uD83Db"), "a\u{fffd}b");
        assert_eq!(nickname(r"\ude00x"), "\u{fffd}x");
        assert_eq!(nickname(r"\ud83d\u0041"), "\u{fffd}A");
        assert_eq!(nickname(r"\ud83d\ud83d\ude00"), "\u{fffd}😀");
        assert_eq!(
            nickname(r"\\ud83d"),
            r"\ud83d",
            "an escaped backslash is no escape"
        );
        assert_eq!(nickname(r#"q\"\u0041\n"#), "q\"A\n");
        // The fast path: nothing to rewrite, nothing copied.
        assert!(matches!(sanitize(r#"{"a":"b\"c"}"#), Cow::Borrowed(_)));
        assert!(matches!(sanitize(r#"{"a":"\u0041"}"#), Cow::Owned(_)));
        assert_eq!(sanitize(r#"{"a":"\u0041"}"#), r#"{"a":"\u0041"}"#);
    }
}
