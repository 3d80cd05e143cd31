//! [`SessionConfig`]: how sessions are refreshed, checked and remembered, with its defaults and
//! the bounds it is held to when a cache is built; [`GracePolicy`] for failed checks.

use std::time::Duration;

/// The longest [`SessionConfig::refresh_window`] honoured: an access token lives 7200 s, so a
/// window near or above that would refresh on every request.
pub const MAX_REFRESH_WINDOW: Duration = Duration::from_secs(3600);
/// The longest [`SessionConfig::code_ttl`] honoured (a code lives 10 minutes at most).
pub(crate) const MAX_CODE_TTL: Duration = Duration::from_secs(24 * 3600);
/// What to do when WeChat cannot be asked whether a grant is still valid (a transient failure
/// of the periodic `/sns/auth` check). Non-exhaustive: more policies may be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GracePolicy {
    /// Keep serving the session until this long after WeChat last confirmed the grant, then
    /// answer "unavailable" until a check succeeds.
    ServeFor(Duration),
    /// Answer "unavailable" as soon as a due check fails.
    FailClosed,
}

/// The session settings: how sessions are refreshed, checked and remembered, as a
/// [`SessionManager`](crate::SessionManager) runs with them ([`SessionManager::config`](crate::SessionManager::config)). Set each with the method its
/// field names (`SessionConfig::default().refresh_window(..)`), and hand the whole to
/// [`SessionManagerBuilder::config`](crate::SessionManagerBuilder::config) (or the layer builder's `sessions`). Every duration is
/// measured with the cache's clock.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SessionConfig {
    /// How long a refresh token lives, hence an OAuth session (default 30 days; the mobile-app
    /// documentation says 180). WeChat answering 42002/40030 ends a session earlier.
    pub refresh_horizon: Duration,
    /// Refresh the access token once it has less than this left (default 10 minutes; at most
    /// [`MAX_REFRESH_WINDOW`], larger values are capped when the cache is built)...
    pub refresh_window: Duration,
    /// ...minus up to this fraction of the window, fixed per session (default 0.5), so sessions
    /// created together do not refresh together. Clamped to `0..=1` when the cache is built
    /// (NaN counts as 0.5).
    pub refresh_jitter: f64,
    /// Ask WeChat (`/sns/auth`) whether the grant is still valid when it was last confirmed
    /// this long ago (default: never; refreshes confirm it anyway).
    pub check_interval: Option<Duration>,
    /// What to do when a due check fails transiently (default: serve for 1 hour since the last
    /// confirmation).
    pub grace: GracePolicy,
    /// After a transient failure, how long requests reuse it before WeChat is asked again for
    /// that session: at least this (default 5 s), longer when WeChat hints so (45011: 60 s).
    /// Keeps an outage from turning every request into an upstream call. A denied user is
    /// remembered this long too; a misconfiguration for 60 s.
    pub failure_cooldown: Duration,
    /// How long a login code's outcome is remembered (default 10 minutes, the longest code
    /// lifetime; at most a day): a repeat within it is answered without asking WeChat.
    pub code_ttl: Duration,
    /// How long after a login its code may be submitted again by the same client — same flow,
    /// same proof (binding cookie, request id) — and get the same session (default 60 s). See
    /// [`LoginBinding`](crate::LoginBinding).
    pub code_retry_window: Duration,
    /// The same for Official Account callbacks, whose proof is only the OAuth state that the
    /// callback URL itself carries (default 5 s: enough for WeChat calling the callback twice,
    /// little for a leaked URL).
    pub callback_retry_window: Duration,
    /// At most this many successful logins are remembered (default 100,000); refusals are
    /// remembered separately, a tenth as many but at least 1,000, so junk codes cannot evict
    /// real logins.
    pub remembered_logins: u64,
    /// How long a Mini Program session lives (default 30 days).
    pub mini_program_session_ttl: Duration,
    /// How long a scan login's session lives (default 7 days): nothing of WeChat's expires
    /// with it, so this alone bounds it.
    pub scan_session_ttl: Duration,
    /// Whether WeChat's "snapshot mode" virtual users (Official Account pages opened as a
    /// preview, `is_snapshotuser`) get a session (default false: the login is answered
    /// [`LoginError::SnapshotUser`](crate::LoginError::SnapshotUser), so the page asks the user to open the real page).
    pub snapshot_sessions: bool,
    /// How long a fleet-wide lease (one instance refreshing a session, one exchanging a code)
    /// lasts unless renewed (default 10 s; renewed every third of it while its work runs). A
    /// crashed holder's work is taken over after it.
    pub lease_ttl: Duration,
    /// Fetch an app access token again once it has less than this left (default 5 minutes;
    /// at most [`MAX_REFRESH_WINDOW`]).
    pub app_token_refresh_window: Duration,
    /// At most one forced app token refresh per app in this time, for the whole fleet (default
    /// 5 minutes; WeChat allows a few a day). Forced only after WeChat refused the current token.
    pub forced_refresh_interval: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            refresh_horizon: Duration::from_secs(30 * 24 * 3600),
            refresh_window: Duration::from_secs(10 * 60),
            refresh_jitter: 0.5,
            check_interval: None,
            grace: GracePolicy::ServeFor(Duration::from_secs(3600)),
            failure_cooldown: Duration::from_secs(5),
            code_ttl: Duration::from_secs(10 * 60),
            code_retry_window: Duration::from_secs(60),
            callback_retry_window: Duration::from_secs(5),
            remembered_logins: 100_000,
            mini_program_session_ttl: Duration::from_secs(30 * 24 * 3600),
            scan_session_ttl: Duration::from_secs(7 * 24 * 3600),
            snapshot_sessions: false,
            lease_ttl: Duration::from_secs(10),
            app_token_refresh_window: Duration::from_secs(5 * 60),
            forced_refresh_interval: Duration::from_secs(5 * 60),
        }
    }
}

impl SessionConfig {
    /// Sets [`SessionConfig::refresh_horizon`].
    pub fn refresh_horizon(mut self, horizon: Duration) -> Self {
        self.refresh_horizon = horizon;
        self
    }

    /// Sets [`SessionConfig::refresh_window`] and [`SessionConfig::refresh_jitter`].
    pub fn refresh_window(mut self, window: Duration, jitter: f64) -> Self {
        self.refresh_window = window;
        self.refresh_jitter = jitter;
        self
    }

    /// Sets [`SessionConfig::check_interval`].
    pub fn check_interval(mut self, interval: Option<Duration>) -> Self {
        self.check_interval = interval;
        self
    }

    /// Sets [`SessionConfig::grace`].
    pub fn grace(mut self, grace: GracePolicy) -> Self {
        self.grace = grace;
        self
    }

    /// Sets [`SessionConfig::failure_cooldown`].
    pub fn failure_cooldown(mut self, cooldown: Duration) -> Self {
        self.failure_cooldown = cooldown;
        self
    }

    /// Sets [`SessionConfig::code_ttl`] and [`SessionConfig::remembered_logins`].
    pub fn remember_logins(mut self, ttl: Duration, capacity: u64) -> Self {
        self.code_ttl = ttl;
        self.remembered_logins = capacity;
        self
    }

    /// Sets [`SessionConfig::code_retry_window`] and [`SessionConfig::callback_retry_window`].
    pub fn code_retry_windows(mut self, code: Duration, callback: Duration) -> Self {
        self.code_retry_window = code;
        self.callback_retry_window = callback;
        self
    }

    /// Sets [`SessionConfig::lease_ttl`].
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Sets [`SessionConfig::mini_program_session_ttl`].
    pub fn mini_program_session_ttl(mut self, ttl: Duration) -> Self {
        self.mini_program_session_ttl = ttl;
        self
    }

    /// Sets [`SessionConfig::scan_session_ttl`].
    pub fn scan_session_ttl(mut self, ttl: Duration) -> Self {
        self.scan_session_ttl = ttl;
        self
    }

    /// Sets [`SessionConfig::app_token_refresh_window`] and
    /// [`SessionConfig::forced_refresh_interval`].
    pub fn app_tokens(
        mut self,
        refresh_window: Duration,
        forced_refresh_interval: Duration,
    ) -> Self {
        self.app_token_refresh_window = refresh_window;
        self.forced_refresh_interval = forced_refresh_interval;
        self
    }

    /// Sets [`SessionConfig::snapshot_sessions`].
    pub fn snapshot_sessions(mut self, allowed: bool) -> Self {
        self.snapshot_sessions = allowed;
        self
    }

    /// This configuration with values that would misbehave or panic made safe (see
    /// [`SessionManagerBuilder::build`](crate::SessionManagerBuilder::build)).
    pub(crate) fn validated(mut self) -> Self {
        self.refresh_jitter = if self.refresh_jitter.is_nan() {
            0.5
        } else {
            self.refresh_jitter.clamp(0.0, 1.0)
        };
        self.refresh_window = self.refresh_window.min(MAX_REFRESH_WINDOW);
        self.code_ttl = self.code_ttl.min(MAX_CODE_TTL);
        self.lease_ttl = self.lease_ttl.max(Duration::from_millis(30));
        self.app_token_refresh_window = self.app_token_refresh_window.min(MAX_REFRESH_WINDOW);
        self
    }
}
