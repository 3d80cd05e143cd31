//! The protocol's vocabulary as types: identifiers, secrets, scopes, and the results of each call.
//!
//! Secrets ([`AppSecret`], [`AuthCode`], [`AccessToken`], [`RefreshToken`], [`SessionKey`]) print
//! as a redaction under `Debug`, have no `Display`, and hand out their value only through an
//! explicitly named method, so they cannot end up in a log line or an error message by accident.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// `Debug` prints a redaction; there is no `Display`. Read the value with
        /// [`secret`](Self::secret) only where it is sent to WeChat.
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a value received from WeChat or from a client.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The secret value itself. Never log it, never send it to a browser or app.
            pub fn secret(&self) -> &str {
                &self.0
            }

            /// Consumes the wrapper and returns the secret value.
            pub fn into_secret(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an identifier.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Consumes the wrapper and returns the identifier.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

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
    };
}

id_type!(
    /// An application's AppID (`wx...`), public.
    AppId
);
id_type!(
    /// A user's identifier within one AppID. Key users by (AppID, OpenID).
    OpenId
);
id_type!(
    /// A user's identifier across every app bound to one Open Platform account; only present for
    /// `snsapi_userinfo` / `snsapi_login` grants of bound apps.
    UnionId
);

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
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Parses `"snsapi_userinfo,"`-style lists: split on commas, trim, drop empties and repeats.
    pub fn parse(list: &str) -> Self {
        let mut scopes: Vec<Scope> = Vec::new();
        for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let scope = Scope::parse(part);
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        Self(scopes)
    }

    /// Whether the grant includes `scope`.
    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.contains(scope)
    }

    /// Whether `/sns/userinfo` may be called with this grant (`snsapi_userinfo` or `snsapi_login`).
    pub fn allows_userinfo(&self) -> bool {
        self.0
            .iter()
            .any(|s| matches!(s, Scope::UserInfo | Scope::Login))
    }

    /// The scopes in the order WeChat listed them.
    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.0.iter()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many scopes there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut scopes = Self::default();
        for scope in iter {
            if !scopes.0.contains(&scope) {
                scopes.0.push(scope);
            }
        }
        scopes
    }
}

impl<'a> IntoIterator for &'a Scopes {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let scopes = Scopes::parse("snsapi_login,other");
        let json = serde_json::to_string(&scopes).unwrap();
        assert_eq!(json, r#"["snsapi_login","other"]"#);
        assert_eq!(serde_json::from_str::<Scopes>(&json).unwrap(), scopes);
    }

    #[test]
    fn secrets_are_redacted() {
        let token = AccessToken::new("ACCESS-abc");
        assert_eq!(format!("{token:?}"), "AccessToken([redacted])");
        assert_eq!(token.secret(), "ACCESS-abc");
    }
}
