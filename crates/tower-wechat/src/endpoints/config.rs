//! The endpoints' settings, set on the layer's builder: the browser flows ([`WebFlow`]), the
//! routes' paths ([`LoginPaths`]), and how a client is told apart for the login limits.

use std::sync::Arc;

use wechat_oauth::{OfficialAccountScope, PushMode};
use wechat_sessions::LoginClient;

use crate::limits::LoginLimits;
use crate::pages::{BuiltinPages, ErrorPages};

/// Settings of the browser flows (website QR login, Official Account). Which of them run is
/// decided by the apps configured ([`AppKind::Website`](crate::AppKind::Website), [`AppKind::OfficialAccount`](crate::AppKind::OfficialAccount)).
///
/// The flows call back to the site's public URL with the [`LoginPaths::web_callback`] path
/// (register that URL's host with WeChat), and the session cookie is `Secure` exactly when the
/// public URL is `https`: set the URL once, and neither can disagree with it.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WebFlow {
    /// The site's public URL (`https://example.com`, or with a path prefix when the app is
    /// mounted under one).
    pub(crate) public_url: String,
    /// The scope the Official Account flow asks for unless the start asks otherwise (default
    /// `snsapi_userinfo`).
    pub official_account_scope: OfficialAccountScope,
    /// Where the callback sends the browser after login when no `return_to` came (default `/`).
    pub after_login: String,
    /// Accept Official Account callbacks from browsers other than WeChat's (default `false`;
    /// see [`official_account_anywhere`](Self::official_account_anywhere)).
    pub official_account_anywhere: bool,
}

impl WebFlow {
    /// The browser flows of the site at `public_url` (`https://example.com`): their callback
    /// is `public_url` + [`LoginPaths::web_callback`]. The URL is checked when the layer is
    /// built (absolute `http` or `https`, no query or fragment).
    pub fn at(public_url: impl Into<String>) -> Self {
        Self {
            public_url: public_url.into().trim_end_matches('/').to_owned(),
            official_account_scope: OfficialAccountScope::UserInfo,
            after_login: "/".into(),
            official_account_anywhere: false,
        }
    }

    /// The scope the Official Account flow asks for when the start does not say (default
    /// `snsapi_userinfo`; `snsapi_base` logs in without a consent page but gets no profile).
    pub fn official_account_scope(mut self, scope: OfficialAccountScope) -> Self {
        self.official_account_scope = scope;
        self
    }

    /// Where to send the browser after login by default.
    pub fn after_login(mut self, path: impl Into<String>) -> Self {
        self.after_login = path.into();
        self
    }

    /// Accept Official Account callbacks from any browser. By default one is refused (400
    /// `invalid_state`, as for a bad state) unless its User-Agent says `MicroMessenger`: the
    /// Official Account's state cannot be bound to a cookie (WeChat's in-app browser drops
    /// them), so without this check an attacker's own callback URL, opened in a victim's
    /// desktop browser, would log the victim in as the attacker. The check leaves a residual
    /// risk: a User-Agent is not proof, so an attacker who gets a victim to open the link
    /// inside WeChat itself (a chat message) can still do it; keep the callback's 5 s window
    /// and show who is logged in.
    pub fn official_account_anywhere(mut self) -> Self {
        self.official_account_anywhere = true;
        self
    }

    /// The site's public URL, as given to [`at`](Self::at) (without a trailing `/`).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Whether the public URL is `https` (the session cookie is then `Secure`).
    pub fn is_https(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// The callback URL registered with WeChat: the public URL and `paths.web_callback`.
    pub fn redirect_uri(&self, paths: &LoginPaths) -> String {
        format!("{}{}", self.public_url, paths.web_callback)
    }

    /// The public URL is absolute `http(s)` with a host and no query or fragment.
    pub(crate) fn check(&self) -> Result<(), String> {
        let bad = || {
            format!(
                "the web flow's public URL must be an absolute http(s) URL without query or fragment, like https://example.com (got {:?})",
                self.public_url
            )
        };
        let url = url::Url::parse(&self.public_url).map_err(|_| bad())?;
        let usable = matches!(url.scheme(), "http" | "https")
            && url.host().is_some()
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        if usable { Ok(()) } else { Err(bad()) }
    }
}

/// The paths the login endpoints answer at ([`LoginEndpoints::router`](crate::LoginEndpoints::router)); set with
/// [`WeChatAuthBuilder::login_paths`](crate::WeChatAuthBuilder::login_paths). The browser
/// flow's [`redirect_uri`](WebFlow::redirect_uri) ends in [`web_callback`](Self::web_callback),
/// and the scope-upgrade URL starts at [`web_start`](Self::web_start).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginPaths {
    /// `POST`, the mobile app's JSON code login (default `/auth/wechat/login`).
    pub login: String,
    /// `POST`, the Mini Program's JSON code login (default `/auth/wechat/miniprogram/login`).
    pub mini_program_login: String,
    /// `GET`, the start of a browser login (default `/auth/wechat/web/start`).
    pub web_start: String,
    /// `GET`, the browser flows' callback (default `/auth/wechat/web/callback`).
    pub web_callback: String,
    /// `POST`, ends this session (default `/auth/logout`).
    pub logout: String,
    /// `POST`, ends every session of this user (default `/auth/logout/all`).
    pub logout_all: String,
    /// `GET`, the start of a scan login (default `/auth/wechat/scan/start`).
    pub scan_start: String,
    /// `GET` and `POST`, the Official Account's server URL: WeChat's pushes (default
    /// `/auth/wechat/scan/events`).
    pub scan_events: String,
    /// `GET`, where the browser learns a scan's outcome (default `/auth/wechat/scan/status`).
    pub scan_status: String,
}

impl Default for LoginPaths {
    fn default() -> Self {
        Self {
            login: "/auth/wechat/login".into(),
            mini_program_login: "/auth/wechat/miniprogram/login".into(),
            web_start: "/auth/wechat/web/start".into(),
            web_callback: "/auth/wechat/web/callback".into(),
            logout: "/auth/logout".into(),
            logout_all: "/auth/logout/all".into(),
            scan_start: "/auth/wechat/scan/start".into(),
            scan_events: "/auth/wechat/scan/events".into(),
            scan_status: "/auth/wechat/scan/status".into(),
        }
    }
}

impl LoginPaths {
    /// Every path under `prefix` (`"/api"` turns `/auth/logout` into `/api/auth/logout`; a
    /// trailing `/` of the prefix is dropped).
    pub fn prefixed(self, prefix: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        let under = |path: String| format!("{prefix}{path}");
        Self {
            login: under(self.login),
            mini_program_login: under(self.mini_program_login),
            web_start: under(self.web_start),
            web_callback: under(self.web_callback),
            logout: under(self.logout),
            logout_all: under(self.logout_all),
            scan_start: under(self.scan_start),
            scan_events: under(self.scan_events),
            scan_status: under(self.scan_status),
        }
    }

    /// Each path, with the route it names, for checking them.
    fn all(&self) -> [(&'static str, &str); 9] {
        [
            ("login", &self.login),
            ("mini_program_login", &self.mini_program_login),
            ("web_start", &self.web_start),
            ("web_callback", &self.web_callback),
            ("logout", &self.logout),
            ("logout_all", &self.logout_all),
            ("scan_start", &self.scan_start),
            ("scan_events", &self.scan_events),
            ("scan_status", &self.scan_status),
        ]
    }

    /// Every path starts with `/`, has no query, fragment or wildcard, and no two are equal
    /// (a router would panic on either).
    pub(crate) fn check(&self) -> Result<(), String> {
        let all = self.all();
        for (i, (name, path)) in all.iter().enumerate() {
            let bad = !path.starts_with('/')
                || path.contains(['?', '#', '{', '}', '*', ':'])
                || path.bytes().any(|b| !b.is_ascii_graphic());
            if bad {
                return Err(format!(
                    "login path {name} must be an absolute path without query, fragment or captures"
                ));
            }
            if let Some((other, _)) = all[..i].iter().find(|(_, p)| p == path) {
                return Err(format!("login paths {other} and {name} are the same"));
            }
        }
        Ok(())
    }
}

/// Who a login request is from, for the login limits.
pub type ClientKey = Arc<dyn Fn(&http::request::Parts) -> Option<String> + Send + Sync>;

/// Scan-to-log-in with an Official Account (a service account): the website shows a temporary
/// parametric QR code; the user scans it with WeChat (following the account if they did not);
/// WeChat pushes the scan to the account's server URL
/// ([`LoginPaths::scan_events`]: set it, the token and the EncodingAESKey in the account's
/// settings, 基本配置 → 服务器配置); the browser that showed the code, and only it, then gets the
/// session. Accounts that cannot make parametric codes (unverified) use the keyword mode: the
/// page shows a short code the user sends to the account as a message.
///
/// Set on the layer's builder with [`scan_login`](crate::WeChatAuthBuilder::scan_login); it
/// needs the Official Account app ([`AppKind::OfficialAccount`](crate::AppKind::OfficialAccount))
/// and the [`WebFlow`] (the session comes as its cookie).
#[derive(Clone)]
#[non_exhaustive]
pub struct ScanLogin {
    pub(crate) token: String,
    pub(crate) aes_key: Option<(String, PushMode)>,
    pub(crate) allow_plain: bool,
    pub(crate) start_limits: LoginLimits,
    /// How long a code (QR or keyword) can be scanned or sent (default 5 minutes).
    pub(crate) code_ttl: std::time::Duration,
    /// The fake WeChat's base URL, in the sandbox only: the QR page links to its
    /// "simulate scan" page.
    pub(crate) sandbox_base: Option<String>,
}

impl std::fmt::Debug for ScanLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanLogin")
            .field("token", &"[redacted]")
            .field("aes_key", &self.aes_key.as_ref().map(|(_, mode)| mode))
            .field("code_ttl", &self.code_ttl)
            .field("start_limits", &self.start_limits)
            .finish_non_exhaustive()
    }
}

impl ScanLogin {
    /// Pushes signed with the server configuration's `token` (令牌); set the EncodingAESKey
    /// with [`encoding_aes_key`](Self::encoding_aes_key) (or, knowingly,
    /// [`allow_plain_pushes`](Self::allow_plain_pushes)).
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: token.into(),
            aes_key: None,
            allow_plain: false,
            start_limits: LoginLimits::default().failures(
                10,
                600,
                std::time::Duration::from_secs(60),
            ),
            code_ttl: std::time::Duration::from_secs(300),
            sandbox_base: None,
        }
    }

    /// Accept plain (unencrypted) pushes, without an EncodingAESKey: the layer's build refuses
    /// a scan login without a key unless this is set. In plain mode a push's signature does
    /// not cover its body, so anyone who sees one signed query (a proxy's log, the wire of an
    /// `http://` server URL) could post another body with it within 5 minutes; each query is
    /// therefore taken with one body only, but the openid still travels readable. Use safe
    /// mode and an `https://` server URL.
    pub fn allow_plain_pushes(mut self) -> Self {
        self.allow_plain = true;
        self
    }

    /// The EncodingAESKey (消息加解密密钥, 43 characters; checked when the layer is built) and
    /// the account's mode: [`PushMode::Safe`] (every push encrypted, recommended) or
    /// [`PushMode::Compatible`] (which also takes plain pushes, each query with one body only).
    pub fn encoding_aes_key(mut self, key: impl Into<String>, mode: PushMode) -> Self {
        self.aes_key = Some((key.into(), mode));
        self
    }

    /// How many codes may be started (each one a QR code made with the account's quota, or a
    /// keyword written to the store): every start counts against its client and all clients
    /// for the window, as a failed exchange does in [`LoginLimits`]. Default: 10 per client and
    /// 600 in total per minute; over it, 429 `too_many_attempts` with `Retry-After`.
    pub fn start_limits(mut self, limits: LoginLimits) -> Self {
        self.start_limits = limits;
        self
    }

    /// How long a code can be scanned (60 s to 30 days).
    pub fn code_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.code_ttl = ttl.clamp(
            std::time::Duration::from_secs(60),
            std::time::Duration::from_secs(2_592_000),
        );
        self
    }

    /// In the sandbox: link the QR page to the fake WeChat's "simulate scan" page.
    pub fn sandbox(mut self, mock_base_url: impl Into<String>) -> Self {
        self.sandbox_base = Some(mock_base_url.into());
        self
    }
}

/// Where a login request comes from, recorded in its session for the user's list of their
/// sessions (see [`WeChatAuthBuilder::login_client`](crate::WeChatAuthBuilder::login_client)).
pub type LoginClientOf = Arc<dyn Fn(&http::request::Parts) -> Option<LoginClient> + Send + Sync>;

/// The login settings of a layer's builder.
#[derive(Clone)]
pub(crate) struct LoginSettings {
    pub(crate) web: Option<WebFlow>,
    pub(crate) paths: LoginPaths,
    pub(crate) limits: LoginLimits,
    pub(crate) client_key: ClientKey,
    pub(crate) login_client: LoginClientOf,
    pub(crate) pages: Arc<dyn ErrorPages>,
    pub(crate) scan: Option<ScanLogin>,
}

impl Default for LoginSettings {
    fn default() -> Self {
        Self {
            web: None,
            paths: LoginPaths::default(),
            limits: LoginLimits::default(),
            client_key: Arc::new(peer_ip),
            login_client: Arc::new(user_agent_and_peer),
            pages: Arc::new(BuiltinPages::default()),
            scan: None,
        }
    }
}

/// The default [`LoginClientOf`]: the request's `User-Agent` and the peer's address (axum's
/// `ConnectInfo<SocketAddr>`, when the server records it), coarsened by [`LoginClient::new`].
fn user_agent_and_peer(parts: &http::request::Parts) -> Option<LoginClient> {
    let user_agent = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    #[cfg(feature = "axum")]
    let address = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip());
    #[cfg(not(feature = "axum"))]
    let address = None;
    Some(LoginClient::new(user_agent, address)).filter(|client| !client.is_empty())
}

/// The default [`ClientKey`]: the peer's address, when the server records it (axum's
/// `ConnectInfo<SocketAddr>`), with IPv6 addresses grouped by their /64 network (one host
/// usually holds a whole /64).
fn peer_ip(parts: &http::request::Parts) -> Option<String> {
    #[cfg(feature = "axum")]
    {
        parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| crate::limits::address_group(info.0.ip()).to_string())
    }
    #[cfg(not(feature = "axum"))]
    {
        let _ = parts;
        None
    }
}
