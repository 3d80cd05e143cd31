//! [`WeChatAuthLayer`] and its builder: everything the middleware shares between requests.

use std::sync::Arc;

use wechat_oauth::Client;
use wechat_sessions::{
    LoginHook, MokaStore, SessionConfig, SessionManager, SessionManagerBuilder, SharedStore,
};

use super::authenticator::Authenticator;
use super::source::TokenSource;
use crate::apps::{AppKind, Apps};
use crate::cookie::SessionCookie;
use crate::endpoints::{LoginEndpoints, LoginPaths, LoginSettings};
use crate::limits::LoginLimits;
use crate::rejection::JsonAuthRejection;
use crate::token::{KeyRing, SigningKeyError, TokenConfig, TokenIssuer};
use crate::user::UserContext;

/// Whether a request without credentials reaches the handler (see
/// [`WeChatAuthLayer::required`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Refuse requests without a valid session (401/503 from the layer).
    Required,
    /// Let every request through; the handler's extractor decides (`WeChatUser` answers 401,
    /// `Option<WeChatUser>` is `None` without credentials and an error with bad ones).
    Optional,
}

/// The tower layer: validates our session token, keeps the user's WeChat tokens fresh, and
/// attaches a [`WeChatUser`](crate::WeChatUser) to each request. Cheap to clone.
///
/// As built, it lets every request through to the handler, with the user attached when there
/// is one: the handler's extractor decides (`WeChatUser` answers 401, `Option<WeChatUser>` is
/// `None` without credentials and an error with bad ones), or a
/// [`RequireUserLayer`](crate::RequireUserLayer) on the routes that need a user, so the login
/// routes work under the same layer. [`required`](Self::required) refuses in the layer itself
/// (for stacks without an extractor: tonic, plain hyper).
///
/// Without axum's extractor, read the request's extensions: a [`WeChatUser`](crate::WeChatUser)
/// when there is a user; otherwise an [`AuthError`](crate::AuthError) when credentials were sent
/// and refused (forged, expired, ended — answer with it), and neither when none were sent
/// ([`AuthError::MissingToken`](crate::AuthError::MissingToken)). `examples/hyper.rs` does this.
///
/// The rejection response is the type parameter `R` ([`JsonAuthRejection`] by default), swapped
/// with [`with_rejection_response`](Self::with_rejection_response).
pub struct WeChatAuthLayer<St = MokaStore, R = JsonAuthRejection> {
    pub(crate) shared: Arc<Shared<St>>,
    pub(crate) mode: Mode,
    pub(crate) rejection: R,
}

/// What a layer and its services share, behind one `Arc`: a router that clones the service for
/// each request (axum's does) pays one reference count, not one per part.
pub(crate) struct Shared<St> {
    pub(crate) auth: Authenticator<St>,
    /// The login endpoints' state (what [`LoginEndpoints`](crate::LoginEndpoints) share).
    pub(crate) login: Arc<crate::endpoints::Inner<St>>,
}

impl<St, R: Clone> Clone for WeChatAuthLayer<St, R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            mode: self.mode,
            rejection: self.rejection.clone(),
        }
    }
}

impl<St, R> std::fmt::Debug for WeChatAuthLayer<St, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeChatAuthLayer")
            .field("mode", &self.mode)
            .field("sources", &self.shared.auth.sources)
            .field("tokens", &self.shared.auth.tokens)
            .finish_non_exhaustive()
    }
}

impl WeChatAuthLayer<MokaStore, JsonAuthRejection> {
    /// Starts configuring a layer whose mobile app is `client` (more apps with
    /// [`WeChatAuthBuilder::app`]), with the in-memory store.
    pub fn builder(client: Client, keys: impl Into<KeyRing>) -> WeChatAuthBuilder<MokaStore> {
        Self::builder_for(AppKind::MobileApp, client, keys)
    }

    /// Starts configuring a layer whose first app is `client`, of `kind` (more apps with
    /// [`WeChatAuthBuilder::app`]), with the in-memory store.
    pub fn builder_for(
        kind: AppKind,
        client: Client,
        keys: impl Into<KeyRing>,
    ) -> WeChatAuthBuilder<MokaStore> {
        let mut apps = Apps::default();
        apps.bind(kind, client.appid().clone());
        WeChatAuthBuilder {
            apps,
            login: LoginSettings::default(),
            cache: SessionManager::builder(client),
            keys: keys.into(),
            token_config: TokenConfig::default(),
            sources: vec![TokenSource::Bearer, TokenSource::Cookie],
            cookie: SessionCookie::default(),
            mode: Mode::Optional,
        }
    }
}

impl<St, R> WeChatAuthLayer<St, R> {
    /// The same layer, refusing requests without a valid session itself (401/503 with the
    /// layer's rejection) instead of leaving it to the handler.
    pub fn required(&self) -> Self
    where
        R: Clone,
    {
        Self {
            mode: Mode::Required,
            ..self.clone()
        }
    }

    /// The same layer with another rejection response.
    pub fn with_rejection_response<R2>(self, rejection: R2) -> WeChatAuthLayer<St, R2> {
        WeChatAuthLayer {
            shared: self.shared,
            mode: self.mode,
            rejection,
        }
    }

    /// The sessions (login, logout, calls on a user's behalf).
    pub fn sessions(&self) -> &SessionManager<St> {
        &self.shared.auth.cache
    }

    /// The session token issuer and verifier.
    pub fn tokens(&self) -> &Arc<TokenIssuer> {
        &self.shared.auth.tokens
    }

    /// The session cookie's attributes.
    pub fn cookie(&self) -> &SessionCookie {
        &self.shared.auth.cookie
    }
}

/// Why [`WeChatAuthBuilder::build`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A key of the key ring cannot be used.
    #[error(transparent)]
    Key(#[from] SigningKeyError),
    /// The [`LoginPaths`] are not usable routes (not absolute, captures, or two the same).
    #[error("{0}")]
    Paths(String),
    /// The [`WebFlow`](crate::WebFlow)'s public URL is not an absolute `http(s)` URL.
    #[error("{0}")]
    WebFlow(String),
    /// The [`ScanLogin`](crate::ScanLogin) cannot run: no Official Account app, no web flow,
    /// or an EncodingAESKey that is not 43 characters of base64.
    #[error("{0}")]
    ScanLogin(String),
}

/// Configures a [`WeChatAuthLayer`] and its [`LoginEndpoints`](crate::LoginEndpoints).
pub struct WeChatAuthBuilder<St> {
    apps: Apps,
    login: LoginSettings,
    cache: SessionManagerBuilder<St>,
    keys: KeyRing,
    token_config: TokenConfig,
    sources: Vec<TokenSource>,
    cookie: SessionCookie,
    mode: Mode,
}

impl<St> std::fmt::Debug for WeChatAuthBuilder<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeChatAuthBuilder")
            .field("token_config", &self.token_config)
            .field("sources", &self.sources)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl<St: SharedStore> WeChatAuthBuilder<St> {
    /// Use another session store.
    pub fn store<St2: SharedStore>(self, store: St2) -> WeChatAuthBuilder<St2> {
        WeChatAuthBuilder {
            apps: self.apps,
            login: self.login,
            cache: self.cache.store(store),
            keys: self.keys,
            token_config: self.token_config,
            sources: self.sources,
            cookie: self.cookie,
            mode: self.mode,
        }
    }

    /// Serve the logins of `kind` with `client`'s app (its own AppID and secret): a website, an
    /// Official Account, a Mini Program, or another mobile app replacing the first. Sessions
    /// of every app are refreshed with their own app's credentials; the users of all apps are
    /// one user when WeChat links them by unionid (or the [`login_hook`](Self::login_hook)
    /// says so). Several kinds may share one client.
    pub fn app(mut self, kind: AppKind, client: Client) -> Self {
        self.apps.bind(kind, client.appid().clone());
        self.cache = self.cache.app(client);
        self
    }

    /// Map each new login to the application's own user (see [`LoginHook`]).
    pub fn login_hook(mut self, hook: impl LoginHook) -> Self {
        self.cache = self.cache.login_hook(hook);
        self
    }

    /// The session settings: refresh window and horizon, checks and grace, remembered
    /// logins, snapshot users... (default [`SessionConfig::default`]).
    pub fn sessions(mut self, config: SessionConfig) -> Self {
        self.cache = self.cache.config(config);
        self
    }

    /// Session token settings (issuer, audience, lifetime, re-issue window, leeway).
    pub fn token_config(mut self, config: TokenConfig) -> Self {
        self.token_config = config;
        self
    }

    /// Where tokens are looked for, in order. Default: bearer, then cookie.
    pub fn sources(mut self, sources: Vec<TokenSource>) -> Self {
        self.sources = sources;
        self
    }

    /// The session cookie's attributes.
    pub fn cookie(mut self, cookie: SessionCookie) -> Self {
        self.cookie = cookie;
        self
    }

    /// Enable the browser flows (website QR login and Official Account, for the apps of those
    /// kinds) of the [`LoginEndpoints`](crate::LoginEndpoints). The session cookie's `Secure`
    /// attribute follows the flow's public URL (`https` → `Secure`), whatever
    /// [`cookie`](Self::cookie) said.
    pub fn web_flow(mut self, web: crate::WebFlow) -> Self {
        self.login.web = Some(web);
        self
    }

    /// The paths of the login endpoints' router (default [`LoginPaths::default`]; under a
    /// prefix with [`LoginPaths::prefixed`]).
    pub fn login_paths(mut self, paths: LoginPaths) -> Self {
        self.login.paths = paths;
        self
    }

    /// The pages a browser sees when a web login fails (default [`BuiltinPages::Negotiated`]:
    /// English or Simplified Chinese by `Accept-Language`).
    ///
    /// [`BuiltinPages::Negotiated`]: crate::BuiltinPages::Negotiated
    pub fn error_pages(mut self, pages: impl crate::ErrorPages) -> Self {
        self.login.pages = Arc::new(pages);
        self
    }

    /// Limits on code exchanges failed or in flight (default [`LoginLimits::default`]).
    pub fn login_limits(mut self, limits: LoginLimits) -> Self {
        self.login.limits = limits;
        self
    }

    /// How the login endpoints tell clients apart for [`LoginLimits`] (default: the peer's IP
    /// address from axum's `ConnectInfo<SocketAddr>`, if the server records it). Behind a
    /// proxy, read the address it forwards — only from a proxy you trust.
    pub fn client_key(
        mut self,
        key: impl Fn(&http::request::Parts) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.login.client_key = Arc::new(key);
        self
    }

    /// Scan-to-log-in with the Official Account's QR codes (see [`ScanLogin`](crate::ScanLogin)):
    /// needs [`AppKind::OfficialAccount`](crate::AppKind::OfficialAccount) and a
    /// [`web_flow`](Self::web_flow).
    pub fn scan_login(mut self, scan: crate::ScanLogin) -> Self {
        self.login.scan = Some(scan);
        self
    }

    /// What a login records of where it came from, for the user's list of their sessions
    /// ([`LoginEndpoints::sessions`](crate::LoginEndpoints::sessions)). Default: the request's
    /// `User-Agent` and the peer's network (a /24 or /48, never the full address) from axum's
    /// `ConnectInfo<SocketAddr>`. Behind a proxy, build it from the address the proxy forwards
    /// (only a proxy you trust); `|_| None` records nothing (the list then shows the app and
    /// times only).
    pub fn login_client(
        mut self,
        of: impl Fn(&http::request::Parts) -> Option<wechat_sessions::LoginClient>
        + Send
        + Sync
        + 'static,
    ) -> Self {
        self.login.login_client = Arc::new(of);
        self
    }

    /// Builds the layer and its login endpoints. The login flow's other secrets — the OAuth
    /// state's key, the keys that hash login codes — are derived from the key ring
    /// ([`KeyRing::derive`]), so every instance with the same keys agrees on them.
    pub fn build(self) -> Result<WeChatAuthLayer<St>, BuildError> {
        self.login.paths.check().map_err(BuildError::Paths)?;
        let mut cookie = self.cookie;
        if let Some(web) = &self.login.web {
            web.check().map_err(BuildError::WebFlow)?;
            cookie.secure = web.is_https();
        }
        if self.login.scan.is_some() {
            let missing = if self.login.web.is_none() {
                Some("scan login needs the web flow (web_flow), whose cookie carries the session")
            } else if self.apps.app(crate::AppKind::OfficialAccount).is_none() {
                Some(
                    "scan login needs the Official Account app (app(AppKind::OfficialAccount, ..))",
                )
            } else {
                None
            };
            if let Some(missing) = missing {
                return Err(BuildError::ScanLogin(missing.to_owned()));
            }
        }
        let scan_key = self.keys.derive("tower-wechat scan scene");
        let state_key = self.keys.derive("tower-wechat oauth state");
        let used_state_key = self.keys.derive("tower-wechat used state code");
        // A fixed label (the sessions crate's former name): changing it changes the key.
        let code_key = self.keys.derive("wechat-token-cache login code");
        let cache = self.cache.shared_secret(&code_key).build();
        let tokens = Arc::new(TokenIssuer::new(
            self.keys,
            self.token_config,
            Arc::clone(cache.clock()),
        )?);
        let login = crate::endpoints::Inner::new(
            cache.clone(),
            self.apps.clone(),
            Arc::clone(&tokens),
            cookie.clone(),
            self.login,
            crate::endpoints::FlowKeys {
                state: state_key,
                used_state: used_state_key,
                scan: scan_key,
            },
        )
        .map_err(BuildError::ScanLogin)?;
        Ok(WeChatAuthLayer {
            shared: Arc::new(Shared {
                login: Arc::new(login),
                auth: Authenticator {
                    upstream: Arc::new(UserContext {
                        cache: cache.clone(),
                        apps: self.apps,
                    }),
                    cache,
                    tokens,
                    sources: self.sources,
                    cookie_name: cookie.full_name(),
                    cookie,
                },
            }),
            mode: self.mode,
            rejection: JsonAuthRejection,
        })
    }
}

impl<St: SharedStore> LoginEndpoints<St> {
    /// The login endpoints of `layer`: its apps, sessions, tokens and cookie, and the
    /// login settings of its builder ([`web_flow`](crate::WeChatAuthBuilder::web_flow),
    /// [`login_limits`](crate::WeChatAuthBuilder::login_limits),
    /// [`client_key`](crate::WeChatAuthBuilder::client_key)); OAuth states are signed with a
    /// key derived from its key ring. Every call returns the same endpoints (one limiter, one
    /// record of used states).
    pub fn new<R>(layer: &WeChatAuthLayer<St, R>) -> Self {
        Self::from_state(Arc::clone(&layer.shared.login))
    }
}
