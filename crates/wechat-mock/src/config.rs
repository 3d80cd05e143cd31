//! The mock's inputs: server configuration ([`MockConfig`]), what a minted code stands for
//! ([`MockGrant`]) and what `/sns/userinfo` answers for a user ([`MockProfile`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// AppID of [`MockConfig::default`].
pub const DEFAULT_APPID: &str = "wxmockappid000001";
/// AppSecret of [`MockConfig::default`].
pub const DEFAULT_SECRET: &str = "mocksecret0123456789abcdef0123456";
/// The openid the browser consent page prefills, so repeated demo logins are the same user.
pub const DEMO_OPENID: &str = "o_mock_demo_user_000000000001";

/// How the fake WeChat behaves: the apps it knows and its token lifetimes.
///
/// The primary app is [`appid`](Self::appid) / [`secret`](Self::secret); [`with_app`](Self::with_app)
/// adds more (a website, an Official Account, a Mini Program...), sharing one unionid space: a
/// code is minted for one app ([`MockGrant::appid`]) and only that app can exchange it, and a
/// refresh token only refreshes with its own app's AppID.
///
/// ```
/// use std::time::Duration;
/// use wechat_mock::MockConfig;
///
/// let config = MockConfig {
///     rotate_refresh_tokens: true,
///     refresh_token_ttl: Duration::from_secs(180 * 24 * 3600),
///     ..MockConfig::new("wx0123456789abcdef", "0123456789abcdef0123456789abcdef")
/// };
/// assert_eq!(config.access_token_ttl, Duration::from_secs(7200));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockConfig {
    /// The AppID the mock accepts; any other answers 40013.
    pub appid: String,
    /// The AppSecret the mock accepts; any other answers 40125.
    pub secret: String,
    /// Further apps the mock knows, besides the primary one.
    pub apps: Vec<MockApp>,
    /// How long a minted code can be exchanged (default 600 s).
    pub code_ttl: Duration,
    /// Lifetime of an access token, reported as `expires_in` (default 7200 s).
    pub access_token_ttl: Duration,
    /// Lifetime of a refresh token, counted from the code exchange and never extended by use
    /// (default 30 days).
    pub refresh_token_ttl: Duration,
    /// When true every refresh returns a new refresh token and the old one stops working
    /// (default false: the same refresh token comes back).
    pub rotate_refresh_tokens: bool,
    /// When true the mock clock also follows real time (codes and tokens expire as they would
    /// at WeChat); when false (default, for tests) it moves only when advanced.
    pub real_time: bool,
    /// Lifetime of an app access token (`/cgi-bin/stable_token`, `/cgi-bin/token`; default
    /// 7200 s).
    pub app_token_ttl: Duration,
    /// Forced `stable_token` refreshes allowed per app per mock day (default 20); more answer
    /// 45009.
    pub forced_refreshes_per_day: u32,
    /// How long a phone-number code can be redeemed (default 300 s).
    pub phone_code_ttl: Duration,
}

impl MockConfig {
    /// A configuration for this AppID and AppSecret with the documented default lifetimes.
    pub fn new(appid: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            appid: appid.into(),
            secret: secret.into(),
            apps: Vec::new(),
            code_ttl: Duration::from_secs(600),
            access_token_ttl: Duration::from_secs(7200),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            rotate_refresh_tokens: false,
            real_time: false,
            app_token_ttl: Duration::from_secs(7200),
            forced_refreshes_per_day: 20,
            phone_code_ttl: Duration::from_secs(300),
        }
    }
}

impl MockConfig {
    /// This configuration knowing one more app.
    pub fn with_app(mut self, appid: impl Into<String>, secret: impl Into<String>) -> Self {
        self.apps.push(MockApp {
            appid: appid.into(),
            secret: secret.into(),
        });
        self
    }

    /// The AppSecret of a known app.
    pub(crate) fn secret_of(&self, appid: &str) -> Option<&str> {
        if appid == self.appid {
            return Some(&self.secret);
        }
        self.apps
            .iter()
            .find(|app| app.appid == appid)
            .map(|app| app.secret.as_str())
    }
}

/// An app the mock knows besides its primary one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MockApp {
    /// Its AppID.
    pub appid: String,
    /// Its AppSecret.
    pub secret: String,
}

impl Default for MockConfig {
    /// AppID [`DEFAULT_APPID`], AppSecret [`DEFAULT_SECRET`], default lifetimes.
    fn default() -> Self {
        Self::new(DEFAULT_APPID, DEFAULT_SECRET)
    }
}

/// What a minted code grants once exchanged.
///
/// Also the JSON body of `POST /mock/codes` (every field optional, unknown fields rejected).
#[derive(Default, Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MockGrant {
    /// The user; `None` picks a random openid that looks real (`o` + 27 alphanumerics).
    pub openid: Option<String>,
    /// The granted scope without the trailing comma, e.g. `snsapi_base`; `None` means
    /// `snsapi_userinfo`.
    pub scope: Option<String>,
    /// The user's unionid, returned by the exchange and userinfo when present.
    pub unionid: Option<String>,
    /// The "snapshot mode" virtual user: the exchange then carries `"is_snapshotuser":1`.
    pub snapshot_user: bool,
    /// The app the code is issued to (only it can exchange the code); `None` means the primary
    /// app.
    pub appid: Option<String>,
}

/// What `/sns/userinfo` returns for one user (set with [`crate::MockWeChat::set_profile`]).
///
/// Also the JSON body of `PUT /mock/users/{openid}/profile`, where a missing field takes its
/// default value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MockProfile {
    /// Display name; may hold any characters, including control characters.
    pub nickname: String,
    /// Avatar URL.
    pub headimgurl: String,
    /// Always 0 for real logins since 2021-10-20.
    pub sex: i64,
    /// Empty for real logins since 2021-10-20.
    pub province: String,
    /// Empty for real logins since 2021-10-20.
    pub city: String,
    /// Empty for real logins since 2021-10-20.
    pub country: String,
    /// Privileges, e.g. `chinaunicom`.
    pub privilege: Vec<String>,
}

impl Default for MockProfile {
    /// Nickname "WeChat User", a 640px `thirdwx.qlogo.cn` avatar, sex 0, empty places,
    /// no privileges.
    fn default() -> Self {
        Self {
            nickname: "WeChat User".to_owned(),
            headimgurl: "https://thirdwx.qlogo.cn/mmopen/mock/0".to_owned(),
            sex: 0,
            province: String::new(),
            city: String::new(),
            country: String::new(),
            privilege: Vec::new(),
        }
    }
}
