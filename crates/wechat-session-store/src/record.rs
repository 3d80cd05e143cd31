//! What a session is: [`SessionId`] (128 random bits) and [`SessionRecord`], one per login
//! (device), holding the user's WeChat credentials, their expiries and a version for
//! compare-and-set; whose it is: [`UserId`], the application's user across its WeChat apps;
//! and where it was opened: [`LoginClient`], for the user's own list of their sessions.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use wechat_oauth::clock::add_capped;
use wechat_oauth::{
    AccessToken, AppId, MiniProgramSession, OpenId, RefreshToken, Scopes, SessionKey, TokenGrant,
    UnionId,
};

/// A session's identifier: 128 random bits, written as 22 URL-safe base64 characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A new random identifier from the operating system's generator.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The identifier's bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// An identifier from its bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// A number in `0..1` fixed for this session, used to spread per-session timings (jitter)
    /// so that sessions created together do not refresh together.
    pub fn spread(&self) -> f64 {
        let n = u64::from_le_bytes(self.0[..8].try_into().unwrap_or_default());
        (n >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 22];
        let n = URL_SAFE_NO_PAD
            .encode_slice(self.0, &mut buf)
            .map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// A string that is not a session id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a session id")]
pub struct InvalidSessionId;

impl FromStr for SessionId {
    type Err = InvalidSessionId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 22 {
            return Err(InvalidSessionId);
        }
        let mut bytes = [0u8; 16];
        match URL_SAFE_NO_PAD.decode_slice(s, &mut bytes) {
            Ok(16) => Ok(Self(bytes)),
            _ => Err(InvalidSessionId),
        }
    }
}

impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The WeChat credentials a session holds. They never leave the server. Non-exhaustive: another
/// kind of login may be added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Credentials {
    /// A mobile app, website or Official Account login: refreshable tokens.
    OAuth {
        /// The current access token.
        access_token: AccessToken,
        /// When it expires.
        access_token_expires_at: SystemTime,
        /// The refresh token (the latest one WeChat returned).
        refresh_token: RefreshToken,
    },
    /// A Mini Program login: a session key, nothing to refresh.
    MiniProgram {
        /// The session key.
        session_key: SessionKey,
    },
    /// A scan of an Official Account's QR code (or a keyword sent to it): WeChat's signed push
    /// vouched for the openid once; there is no user token, nothing to refresh.
    Scanned,
}

/// One login: who the user is, their WeChat credentials, and how long the session may live.
///
/// Records are versioned: every successful [`compare_and_set`](crate::SessionStore::compare_and_set)
/// increments `version`, so concurrent writers cannot overwrite each other unnoticed.
///
/// Laid out in declaration order (`repr(C)`), `openid` first: in an `Arc` it follows the
/// reference counts, and an openid's text is held inline, so the middleware's hot path (count
/// the record in, read who the user is) most often touches one line of the record and nothing
/// else of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
#[repr(C)]
pub struct SessionRecord {
    /// The user within the application.
    pub openid: OpenId,
    /// The session's identifier.
    pub sid: SessionId,
    /// The application the user logged in to.
    pub appid: AppId,
    /// The user across bound applications, when known.
    pub unionid: Option<UnionId>,
    /// The application's user this session belongs to (what a login hook returned, else the
    /// default of [`UserId::default_for`]). Fixed at login; logout-all ends every session of it.
    pub user_id: UserId,
    /// The granted scopes.
    pub scopes: Scopes,
    /// The WeChat "snapshot mode" virtual user: its ids are not the real user's.
    pub snapshot_user: bool,
    /// The WeChat credentials.
    pub credentials: Credentials,
    /// When the login happened.
    pub created_at: SystemTime,
    /// When the session ends: the refresh token's horizon (OAuth) or the configured Mini Program
    /// session lifetime. Stores drop the record then.
    pub expires_at: SystemTime,
    /// When WeChat last confirmed the grant (login, refresh or a successful `/sns/auth`).
    pub confirmed_at: SystemTime,
    /// Incremented by every successful compare-and-set.
    pub version: u64,
    /// Where the login came from (the client's software and coarse network), shown to the user
    /// in their list of sessions; `None` when not recorded.
    pub client: Option<Box<LoginClient>>,
}

impl SessionRecord {
    /// A record at version 0, confirmed at `created_at`, with no unionid, the default user id
    /// (app + openid), no scopes and not a snapshot user (set those fields afterwards as
    /// needed).
    pub fn new(
        sid: SessionId,
        appid: AppId,
        openid: OpenId,
        credentials: Credentials,
        created_at: SystemTime,
        expires_at: SystemTime,
    ) -> Self {
        Self {
            sid,
            user_id: UserId::default_for(&appid, &openid, None),
            appid,
            openid,
            unionid: None,
            scopes: Scopes::default(),
            snapshot_user: false,
            credentials,
            created_at,
            expires_at,
            confirmed_at: created_at,
            version: 0,
            client: None,
        }
    }

    /// The record of a new OAuth login: the refresh token is assumed to live `refresh_horizon`
    /// from `now`.
    pub fn from_grant(
        sid: SessionId,
        appid: AppId,
        grant: TokenGrant,
        now: SystemTime,
        refresh_horizon: Duration,
    ) -> Self {
        let mut record = Self::new(
            sid,
            appid,
            grant.openid,
            Credentials::OAuth {
                access_token: grant.access_token,
                access_token_expires_at: grant.access_token_expires_at,
                refresh_token: grant.refresh_token,
            },
            now,
            add_capped(now, refresh_horizon),
        );
        record.user_id = UserId::default_for(&record.appid, &record.openid, grant.unionid.as_ref());
        record.unionid = grant.unionid;
        record.scopes = grant.scopes;
        record.snapshot_user = grant.snapshot_user;
        record
    }

    /// The record of a new Mini Program login, living `lifetime` from `now`.
    pub fn from_mini_program(
        sid: SessionId,
        appid: AppId,
        session: MiniProgramSession,
        now: SystemTime,
        lifetime: Duration,
    ) -> Self {
        let credentials = Credentials::MiniProgram {
            session_key: session.session_key,
        };
        Self::unrefreshed(
            sid,
            appid,
            session.openid,
            session.unionid,
            credentials,
            now,
            lifetime,
        )
    }

    /// The record of a scan login (see [`Credentials::Scanned`]) of `openid` in the Official
    /// Account `appid`, living `lifetime` from `now`.
    pub fn from_scan(
        sid: SessionId,
        appid: AppId,
        openid: OpenId,
        unionid: Option<UnionId>,
        now: SystemTime,
        lifetime: Duration,
    ) -> Self {
        Self::unrefreshed(
            sid,
            appid,
            openid,
            unionid,
            Credentials::Scanned,
            now,
            lifetime,
        )
    }

    /// A login with nothing to refresh: it lives `lifetime` from `now`.
    fn unrefreshed(
        sid: SessionId,
        appid: AppId,
        openid: OpenId,
        unionid: Option<UnionId>,
        credentials: Credentials,
        now: SystemTime,
        lifetime: Duration,
    ) -> Self {
        let mut record = Self::new(
            sid,
            appid,
            openid,
            credentials,
            now,
            add_capped(now, lifetime),
        );
        record.user_id = UserId::default_for(&record.appid, &record.openid, unionid.as_ref());
        record.unionid = unionid;
        record
    }

    /// This record with a refresh's result applied: the new access token and expiry, the refresh
    /// token that came back (rotated or not), the scopes if WeChat listed any, the unionid if
    /// the record lacked it, confirmed `now`.
    pub fn with_refresh(&self, grant: &TokenGrant, now: SystemTime) -> Self {
        let mut next = self.clone();
        next.credentials = Credentials::OAuth {
            access_token: grant.access_token.clone(),
            access_token_expires_at: grant.access_token_expires_at,
            refresh_token: grant.refresh_token.clone(),
        };
        if !grant.scopes.is_empty() {
            next.scopes = grant.scopes.clone();
        }
        if next.unionid.is_none() {
            next.unionid = grant.unionid.clone();
        }
        next.confirmed_at = next.confirmed_at.max(now);
        next
    }

    /// The access token and its expiry, for OAuth sessions.
    pub fn access_token(&self) -> Option<(&AccessToken, SystemTime)> {
        match &self.credentials {
            Credentials::OAuth {
                access_token,
                access_token_expires_at,
                ..
            } => Some((access_token, *access_token_expires_at)),
            Credentials::MiniProgram { .. } | Credentials::Scanned => None,
        }
    }

    /// Whether the session has ended at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at <= now
    }

    /// How long the access token stays valid after `now` (zero when expired; `None` for Mini
    /// Program sessions, which have none).
    pub fn access_token_remaining(&self, now: SystemTime) -> Option<Duration> {
        self.access_token()
            .map(|(_, at)| at.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// Whether this session belongs to `user`.
    pub fn user_is(&self, user: &UserId) -> bool {
        self.user_id == *user
    }

    /// The application's user this session belongs to.
    pub fn user(&self) -> UserId {
        self.user_id.clone()
    }
}

/// Where a login came from, as the user sees it in their list of sessions ("Chrome on macOS,
/// from 203.0.113.0/24"): the client's `User-Agent` and a coarse network, never the full
/// address. Recorded at login (an application may opt out) and never changed afterwards.
///
/// Both parts are bounded and cleaned when made: the user agent to [`LoginClient::MAX_USER_AGENT`]
/// bytes of printable text, the address to its /24 (IPv4) or /48 (IPv6) network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginClient {
    user_agent: Option<Box<str>>,
    network: Option<Box<str>>,
}

impl LoginClient {
    /// The longest user agent kept, in bytes.
    pub const MAX_USER_AGENT: usize = 160;

    /// A client as a login request shows it: its `User-Agent` header and its address.
    pub fn new(user_agent: Option<&str>, address: Option<IpAddr>) -> Self {
        Self {
            user_agent: user_agent.and_then(clean_user_agent),
            network: address.map(|ip| coarse_network(ip).into()),
        }
    }

    /// A client as stored: both parts as [`user_agent`](Self::user_agent) and
    /// [`network`](Self::network) answered them, checked again (the user agent cleaned and
    /// bounded, the network at most 64 bytes of visible ASCII).
    pub fn from_stored(user_agent: Option<&str>, network: Option<&str>) -> Self {
        Self {
            user_agent: user_agent.and_then(clean_user_agent),
            network: network
                .filter(|n| n.len() <= 64 && n.bytes().all(|b| b.is_ascii_graphic()))
                .map(Into::into),
        }
    }

    /// The client's `User-Agent`, bounded and without control characters.
    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// The client's network: `203.0.113.0/24` or `2001:db8:1::/48`.
    pub fn network(&self) -> Option<&str> {
        self.network.as_deref()
    }

    /// Whether nothing is known of the client.
    pub fn is_empty(&self) -> bool {
        self.user_agent.is_none() && self.network.is_none()
    }
}

/// `ua` without control characters or the invisible ones that reorder or hide text (bidi
/// controls, zero-width characters), cut to [`LoginClient::MAX_USER_AGENT`] bytes at a
/// character boundary; `None` when nothing is left.
fn clean_user_agent(ua: &str) -> Option<Box<str>> {
    let invisible = |c: &char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
    let mut out = String::with_capacity(ua.len().min(LoginClient::MAX_USER_AGENT));
    for c in ua
        .trim()
        .chars()
        .filter(|c| !c.is_control() && !invisible(c))
    {
        if out.len() + c.len_utf8() > LoginClient::MAX_USER_AGENT {
            break;
        }
        out.push(c);
    }
    (!out.is_empty()).then(|| out.into_boxed_str())
}

/// The network an address belongs to, coarse enough not to locate a person: IPv4 by its /24,
/// IPv6 by its /48 (an IPv4-mapped IPv6 address as IPv4).
fn coarse_network(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0);
            format!("{net}/48")
        }
    }
}

/// The application's user: who a session belongs to across the application's WeChat apps
/// (mobile app, website, Official Account, Mini Program). A login hook chooses it (the
/// application's own account id); without one it is the unionid when WeChat sent one, else
/// `<appid>:<openid>`. Logout-all ends every session of a user id. At most 256 bytes.
///
/// Clones share one allocation, and the default made from a unionid shares the unionid's: a
/// session pays for the text once.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Arc<str>);

impl Serialize for UserId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // As stored: a record's user id was checked when the session was made.
        String::deserialize(deserializer).map(|id| Self(id.into()))
    }
}

/// The longest [`UserId`] accepted.
pub const MAX_USER_ID_LEN: usize = 256;

impl UserId {
    /// The application's own id for a user (e.g. its account's primary key). `None` when empty
    /// or longer than [`MAX_USER_ID_LEN`] bytes.
    pub fn new(id: impl Into<String>) -> Option<Self> {
        let id = id.into();
        (!id.is_empty() && id.len() <= MAX_USER_ID_LEN).then(|| Self(id.into()))
    }

    /// The user id of a login without a hook: the unionid when there is one (the same person in
    /// every app bound to the Open Platform account), else `<appid>:<openid>`.
    pub fn default_for(appid: &AppId, openid: &OpenId, unionid: Option<&UnionId>) -> Self {
        match unionid {
            Some(unionid) => Self(unionid.shared()),
            None => Self(format!("{}:{}", appid.as_str(), openid.as_str()).into()),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The openid leads the record, right after an `Arc`'s two counts (see the type's docs);
    /// leading with it adds no padding.
    #[test]
    fn the_openid_leads_the_record() {
        assert_eq!(std::mem::offset_of!(SessionRecord, openid), 0);
        // The openid's text is held inline (`wechat-oauth` tests that), and with the reference
        // counts before it, it fits a line's 64 bytes.
        assert!(16 + size_of::<OpenId>() <= 64);
        assert!(size_of::<SessionRecord>() <= 240);
    }

    #[test]
    fn a_login_client_keeps_a_coarse_network_and_a_bounded_user_agent() {
        let client = LoginClient::new(
            Some("  Mozilla/5.0\r\nX-Evil: 1\u{7}\u{202E}\u{200B}  "),
            Some("203.0.113.77".parse().unwrap()),
        );
        assert_eq!(client.user_agent(), Some("Mozilla/5.0X-Evil: 1"));
        assert_eq!(client.network(), Some("203.0.113.0/24"));
        let v6 = LoginClient::new(None, Some("2001:db8:1:2:3:4:5:6".parse().unwrap()));
        assert_eq!(v6.network(), Some("2001:db8:1::/48"));
        assert_eq!(v6.user_agent(), None);
        let mapped = LoginClient::new(None, Some("::ffff:198.51.100.9".parse().unwrap()));
        assert_eq!(mapped.network(), Some("198.51.100.0/24"));
        let long = "é".repeat(200);
        let cut = LoginClient::new(Some(&long), None);
        let ua = cut.user_agent().unwrap();
        assert!(
            ua.len() <= LoginClient::MAX_USER_AGENT && ua.len() >= LoginClient::MAX_USER_AGENT - 1
        );
        assert!(LoginClient::new(Some(" \t "), None).is_empty());
        assert_eq!(LoginClient::from_stored(Some(&long), Some("x y")), cut);
    }

    #[test]
    fn session_ids_round_trip_and_reject_garbage() {
        let sid = SessionId::random();
        let text = sid.to_string();
        assert_eq!(text.len(), 22);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(text.parse::<SessionId>(), Ok(sid));
        for bad in ["", "short", "!!!!!!!!!!!!!!!!!!!!!!", &"A".repeat(23)] {
            assert_eq!(bad.parse::<SessionId>(), Err(InvalidSessionId), "{bad}");
        }
        assert_ne!(SessionId::random(), SessionId::random());
        let spread = sid.spread();
        assert!((0.0..1.0).contains(&spread));
    }
}
