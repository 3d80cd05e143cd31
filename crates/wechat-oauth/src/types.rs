//! The protocol's vocabulary as types: identifiers, secrets, scopes, and the results of each call.
//!
//! Secrets ([`AppSecret`], [`AuthCode`], [`AccessToken`], [`RefreshToken`], [`SessionKey`]) print
//! as a redaction under `Debug`, have no `Display`, and hand out their value only through an
//! explicitly named method, so they cannot end up in a log line or an error message by accident.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use smallstr::SmallString;

/// `From<String>` and `From<&str>` for a type with `new(impl Into<String>)`, so builders can
/// take `impl Into<AppId>` and a string is enough.
macro_rules! from_strings {
    ($name:ident) => {
        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self::new(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::new(value)
            }
        }
    };
}

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// `Debug` prints a redaction; there is no `Display`. Read the value with
        /// [`secret`](Self::secret) only where it is sent to WeChat.
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Box<str>);

        impl $name {
            /// Wraps a value received from WeChat or from a client.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into().into_boxed_str())
            }

            /// The secret value itself. Never log it, never send it to a browser or app.
            pub fn secret(&self) -> &str {
                &self.0
            }

            /// Consumes the wrapper and returns the secret value.
            pub fn into_secret(self) -> String {
                self.0.into_string()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }

        from_strings!($name);
    };
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident($storage:ty)) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($storage);

        impl $name {
            /// Wraps an identifier.
            pub fn new(value: impl Into<String>) -> Self {
                Self(<$storage>::from(value.into()))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Returns the identifier as a `String`.
            pub fn into_string(self) -> String {
                self.0.to_string()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        from_strings!($name);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::new)
            }
        }
    };
}

/// An identifier's text, inline up to 32 bytes, on the heap beyond: the storage of [`OpenId`],
/// which every authenticated request reads (an openid in an allocation of its own would cost
/// that request one more cache miss, its record having cost one already).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Inline(SmallString<[u8; 32]>);

impl From<String> for Inline {
    fn from(value: String) -> Self {
        // Copied, so a short value is inline whatever the `String`'s capacity.
        Self(SmallString::from_str(&value))
    }
}

impl std::ops::Deref for Inline {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Inline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

id_type!(
    /// An application's AppID (`wx...`), public. Clones share one allocation, so every
    /// session record of an application holds the same AppID for free.
    AppId(std::sync::Arc<str>)
);
id_type!(
    /// A user's identifier within one AppID. Key users by (AppID, OpenID). Held inline (WeChat's
    /// are 28 bytes): reading a user's openid reads no allocation but the one it is part of.
    OpenId(Inline)
);
id_type!(
    /// A user's identifier across every app bound to one Open Platform account; only present for
    /// `snsapi_userinfo` / `snsapi_login` grants of bound apps. Clones share one allocation.
    UnionId(std::sync::Arc<str>)
);

impl UnionId {
    /// The identifier's text, shared with this value (a clone costs a reference count): what a
    /// session's user id made from the unionid holds, so a session pays for the text once.
    pub fn shared(&self) -> std::sync::Arc<str> {
        std::sync::Arc::clone(&self.0)
    }
}

secret_type!(
    /// The application's AppSecret. It travels in the query string of the code exchange, which is
    /// why this crate never logs or reports a request URL.
    AppSecret
);
secret_type!(
    /// A one-time authorization `code` from WeChat, to be exchanged on the server.
    AuthCode
);
secret_type!(
    /// A user's WeChat access token (about 2 hours). A leaked access token is a leaked login.
    AccessToken
);
secret_type!(
    /// A user's WeChat refresh token (30 days by the website documentation).
    RefreshToken
);
secret_type!(
    /// A Mini Program session key from `jscode2session`. Stays on the server.
    SessionKey
);
secret_type!(
    /// An app's own access token (`client_credential`, from `/cgi-bin/stable_token`): one per
    /// app, about 2 hours, needed by the Mini Program data APIs and many other WeChat APIs. Not
    /// a user's [`AccessToken`].
    AppAccessToken
);
secret_type!(
    /// A phone-number code from a Mini Program's phone-number button: single use, about 5
    /// minutes, redeemed with [`Client::phone_number`](crate::Client::phone_number). Not a
    /// `wx.login` code.
    PhoneCode
);

/// One OAuth scope. Non-exhaustive: a scope WeChat adds may get its own variant.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum Scope {
    /// `snsapi_base`: silent, openid only.
    Base,
    /// `snsapi_userinfo`: profile access (mobile app, Official Account).
    UserInfo,
    /// `snsapi_login`: website QR login, profile access.
    Login,
    /// Any other scope string WeChat sends.
    Other(String),
}

impl Scope {
    /// Parses one scope string.
    pub fn parse(value: &str) -> Self {
        match value {
            "snsapi_base" => Self::Base,
            "snsapi_userinfo" => Self::UserInfo,
            "snsapi_login" => Self::Login,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The scope as WeChat spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Base => "snsapi_base",
            Self::UserInfo => "snsapi_userinfo",
            Self::Login => "snsapi_login",
            Self::Other(s) => s,
        }
    }
}

impl From<String> for Scope {
    fn from(value: String) -> Self {
        match value.as_str() {
            "snsapi_base" | "snsapi_userinfo" | "snsapi_login" => Self::parse(&value),
            _ => Self::Other(value),
        }
    }
}

impl From<Scope> for String {
    fn from(value: Scope) -> Self {
        match value {
            Scope::Other(s) => s,
            known => known.as_str().to_owned(),
        }
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes of a grant, parsed from WeChat's comma-separated list (which often ends in a comma).
///
/// Stored compactly because every session record holds one: the three known scopes are bits,
/// only unknown ones allocate. Iteration yields the known scopes first (base, userinfo, login),
/// then unknown ones in the order WeChat listed them.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Scopes {
    known: u8,
    // A thin pointer keeps `Scopes` at 16 bytes; unknown scopes are rare.
    #[allow(clippy::box_collection)]
    others: Option<Box<Vec<Scope>>>,
}

/// The known scopes, in iteration order; bit `i` of `Scopes::known` stands for `KNOWN[i]`.
static KNOWN: [Scope; 3] = [Scope::Base, Scope::UserInfo, Scope::Login];

fn known_bit(scope: &Scope) -> Option<u8> {
    match scope {
        Scope::Base => Some(1),
        Scope::UserInfo => Some(2),
        Scope::Login => Some(4),
        Scope::Other(_) => None,
    }
}

impl Scopes {
    /// Parses `"snsapi_userinfo,"`-style lists: split on commas, trim, drop empties and repeats.
    pub fn parse(list: &str) -> Self {
        list.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Scope::parse)
            .collect()
    }

    /// Whether the grant includes `scope`.
    pub fn contains(&self, scope: &Scope) -> bool {
        match known_bit(scope) {
            Some(bit) => self.known & bit != 0,
            None => self.others.as_deref().is_some_and(|o| o.contains(scope)),
        }
    }

    /// Whether `/sns/userinfo` may be called with this grant (`snsapi_userinfo` or `snsapi_login`).
    pub fn allows_userinfo(&self) -> bool {
        self.known & (2 | 4) != 0
    }

    /// The scopes: known ones first, then unknown ones in the order WeChat listed them.
    pub fn iter(&self) -> ScopesIter<'_> {
        ScopesIter {
            scopes: self,
            next: 0,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many scopes there are.
    pub fn len(&self) -> usize {
        self.known.count_ones() as usize + self.others.as_deref().map_or(0, Vec::len)
    }
}

/// Iterator over [`Scopes`].
#[derive(Clone, Debug)]
pub struct ScopesIter<'a> {
    scopes: &'a Scopes,
    next: usize,
}

impl<'a> Iterator for ScopesIter<'a> {
    type Item = &'a Scope;

    fn next(&mut self) -> Option<&'a Scope> {
        while self.next < KNOWN.len() {
            let i = self.next;
            self.next += 1;
            if self.scopes.known & (1 << i) != 0 {
                return Some(&KNOWN[i]);
            }
        }
        let others = self.scopes.others.as_deref()?;
        let scope = others.get(self.next - KNOWN.len())?;
        self.next += 1;
        Some(scope)
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut scopes = Self::default();
        for scope in iter {
            if let Some(bit) = known_bit(&scope) {
                scopes.known |= bit;
            } else if !scopes.contains(&scope) {
                scopes
                    .others
                    .get_or_insert_with(Default::default)
                    .push(scope);
            }
        }
        if let Some(others) = scopes.others.as_deref_mut() {
            others.shrink_to_fit();
        }
        scopes
    }
}

impl<'a> IntoIterator for &'a Scopes {
    type Item = &'a Scope;
    type IntoIter = ScopesIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<Scope>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

/// The language of a `/sns/userinfo` answer. Non-exhaustive: WeChat may add languages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lang {
    /// Simplified Chinese (`zh_CN`), WeChat's default.
    #[default]
    ZhCn,
    /// Traditional Chinese (`zh_TW`).
    ZhTw,
    /// English (`en`).
    En,
}

impl Lang {
    /// The value of the `lang` query parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ZhCn => "zh_CN",
            Self::ZhTw => "zh_TW",
            Self::En => "en",
        }
    }
}

/// What a code exchange or a refresh returns: the user's tokens and who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenGrant {
    /// The access token.
    pub access_token: AccessToken,
    /// When the access token expires, computed from `expires_in` with the client's clock.
    pub access_token_expires_at: SystemTime,
    /// The refresh token that came back. Always store it: rotation is not documented either way.
    pub refresh_token: RefreshToken,
    /// The user within this AppID.
    pub openid: OpenId,
    /// The granted scopes.
    pub scopes: Scopes,
    /// The user across bound apps, when WeChat sent it (code exchanges of bound apps only).
    pub unionid: Option<UnionId>,
    /// `is_snapshotuser == 1`: the virtual "snapshot mode" user, whose ids are not the real user's.
    pub snapshot_user: bool,
}

/// A user's profile from `/sns/userinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserInfo {
    /// The user within this AppID.
    pub openid: OpenId,
    /// Nickname, decoded lossily: odd bytes and control characters never fail a login.
    pub nickname: String,
    /// Avatar URL; ends in a size (`/0` = 640 px, or 46/64/96/132) and goes stale when changed.
    pub headimgurl: Option<String>,
    /// Privileges (e.g. `chinaunicom`).
    pub privilege: Vec<String>,
    /// The user across bound apps, when present.
    pub unionid: Option<UnionId>,
    /// Deprecated by WeChat since 2021-10-20: always 0 for these logins.
    pub sex: Option<i64>,
    /// Deprecated by WeChat since 2021-10-20: empty.
    pub province: Option<String>,
    /// Deprecated by WeChat since 2021-10-20: empty.
    pub city: Option<String>,
    /// Deprecated by WeChat since 2021-10-20: empty.
    pub country: Option<String>,
    /// The undocumented `language` field, when present.
    pub language: Option<String>,
}

/// What `jscode2session` returns for a Mini Program login.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MiniProgramSession {
    /// The user within this Mini Program.
    pub openid: OpenId,
    /// The session key: a secret that stays on the server.
    pub session_key: SessionKey,
    /// The user across bound apps, when present.
    pub unionid: Option<UnionId>,
}

/// An app access token and when it expires (`/cgi-bin/stable_token`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppTokenGrant {
    /// The token.
    pub access_token: AppAccessToken,
    /// When it expires, computed from `expires_in` with the client's clock, counted from before
    /// the request was sent.
    pub expires_at: SystemTime,
}

impl AppTokenGrant {
    /// A grant (for stores and tests that rebuild one).
    pub fn new(access_token: AppAccessToken, expires_at: SystemTime) -> Self {
        Self {
            access_token,
            expires_at,
        }
    }
}

/// A user's phone number from `/wxa/business/getuserphonenumber`. Personal data: log it only
/// where the application's policy allows.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PhoneInfo {
    /// The number as the user has it, with the country prefix for non-mainland numbers.
    pub phone_number: String,
    /// The number without the country prefix.
    pub pure_phone_number: String,
    /// The country calling code (`"86"`); WeChat documents a string and has shown a number.
    pub country_code: String,
}

impl fmt::Debug for PhoneInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Personal data: the last digits only, like a receipt.
        let tail: String = {
            let chars: Vec<char> = self.pure_phone_number.chars().collect();
            chars[chars.len().saturating_sub(4)..].iter().collect()
        };
        f.debug_struct("PhoneInfo")
            .field("country_code", &self.country_code)
            .field("pure_phone_number", &format_args!("***{tail}"))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_openid_is_held_inline_and_behaves_as_its_text() {
        // WeChat's openids are 28 bytes; a `String` with spare capacity still ends up inline.
        let mut text = String::with_capacity(64);
        text.push_str("o6_bmjrPTlm6_2sgVt7hMZOPfL2M");
        let openid = OpenId::new(text);
        let start = &openid as *const OpenId as usize;
        let text = openid.as_str().as_ptr() as usize;
        assert!((start..start + size_of::<OpenId>()).contains(&text));
        assert!(size_of::<OpenId>() <= 40);
        // Longer ones go to the heap and read the same.
        let long = "x".repeat(100);
        let spilled = OpenId::new(long.clone());
        assert_eq!(spilled.as_str(), long);
        assert_eq!(spilled.clone().into_string(), long);
        // Equality, order, hash, text forms and serde: those of the text.
        use std::hash::BuildHasher;
        let (a, b) = (OpenId::new("oA"), OpenId::new("oB"));
        assert!(a < b && a == OpenId::new(String::from("oA")));
        let hasher = std::hash::RandomState::new();
        assert_eq!(hasher.hash_one(&a), hasher.hash_one("oA"));
        assert_eq!(format!("{a} {a:?}"), r#"oA "oA""#);
        assert_eq!(
            serde_json::to_string(&openid).unwrap(),
            r#""o6_bmjrPTlm6_2sgVt7hMZOPfL2M""#
        );
        assert_eq!(serde_json::from_str::<OpenId>(r#""oB""#).unwrap(), b);
    }

    #[test]
    fn scopes_parse_trailing_comma_and_repeats() {
        let scopes = Scopes::parse("snsapi_userinfo,");
        assert_eq!(scopes.len(), 1);
        assert!(scopes.contains(&Scope::UserInfo));
        let scopes = Scopes::parse(" snsapi_base ,,snsapi_base,custom_x,");
        assert_eq!(
            scopes.iter().cloned().collect::<Vec<_>>(),
            vec![Scope::Base, Scope::Other("custom_x".into())]
        );
        assert!(!scopes.allows_userinfo());
        assert_eq!(scopes.to_string(), "snsapi_base,custom_x");
        assert!(Scopes::parse("").is_empty());
        assert!(Scopes::parse("snsapi_login").allows_userinfo());
    }

    #[test]
    fn scope_serde_round_trip() {
        let scopes = Scopes::parse("other,snsapi_login,zzz");
        let json = serde_json::to_string(&scopes).unwrap();
        assert_eq!(json, r#"["snsapi_login","other","zzz"]"#);
        assert_eq!(serde_json::from_str::<Scopes>(&json).unwrap(), scopes);
        assert!(scopes.contains(&Scope::Other("zzz".into())));
        assert!(!scopes.contains(&Scope::Base));
        assert_eq!(scopes.len(), 3);
        assert_eq!(std::mem::size_of::<Scopes>(), 16);
    }

    #[test]
    fn secrets_are_redacted() {
        let token = AccessToken::new("ACCESS-abc");
        assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
        assert_eq!(token.secret(), "ACCESS-abc");
    }
}

/// A temporary parametric QR code of an Official Account (see `Client::create_qr_scene`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct QrTicket {
    /// The ticket that shows the code's image (`Client::qr_image_url`). Not a secret: the image
    /// is what the page shows.
    pub ticket: String,
    /// When the code stops working.
    pub expires_at: SystemTime,
    /// The URL the code encodes (`http://weixin.qq.com/q/...`).
    pub url: String,
}

/// A user as an Official Account knows them (see `Client::follower`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Follower {
    /// Their openid in the account.
    pub openid: OpenId,
    /// Whether they follow the account now.
    pub subscribed: bool,
    /// Their unionid, when the account is bound to an Open Platform account.
    pub unionid: Option<UnionId>,
}
