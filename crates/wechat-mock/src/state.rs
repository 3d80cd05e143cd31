//! The mock's whole state behind one lock: the clock, minted codes, issued token grants, user
//! profiles, call counters and queued faults. Every rule about codes and tokens (single use,
//! expiry, renew-or-replace, rotation, revocation) lives here, independent of HTTP.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use rand::{Rng, distr::Alphanumeric};
use serde::Serialize;

use crate::{Endpoint, Fault, MockConfig, MockGrant, MockProfile};

/// Length of a minted code.
const CODE_LEN: usize = 32;
/// Length of access and refresh tokens.
const TOKEN_LEN: usize = 86;

/// A WeChat error answer: `{"errcode":code,"errmsg":"message, rid: ..."}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SnsError {
    /// The errcode.
    pub(crate) code: i64,
    /// The errmsg, without the rid suffix.
    pub(crate) message: &'static str,
}

impl SnsError {
    const fn new(code: i64, message: &'static str) -> Self {
        Self { code, message }
    }

    /// An error with this code and message (for constants in other modules).
    pub(crate) const fn for_code_const(code: i64, message: &'static str) -> Self {
        Self::new(code, message)
    }

    /// The error WeChat answers for this errcode, with its usual message.
    pub(crate) fn for_code(code: i64) -> Self {
        let message = match code {
            -1 => "system error",
            40001 => "invalid credential, access_token is invalid or not latest",
            40002 => "invalid grant_type",
            40003 => "invalid openid",
            40013 => "invalid appid",
            40014 => "invalid access_token",
            40029 => "invalid code",
            40030 => "invalid refresh_token",
            40125 => "invalid appsecret",
            40163 => "code been used",
            40226 => "high risk user",
            41001 => "access_token missing",
            41002 => "appid missing",
            41003 => "refresh_token missing",
            41004 => "appsecret missing",
            41008 => "missing code",
            41009 => "missing openid",
            42001 => "access_token expired",
            42002 => "refresh_token timeout",
            42003 => "code expired",
            45009 => "reach max api daily quota limit",
            47001 => "data format error",
            45011 => "api minute-quota reach limit  mustslower  retry next minute",
            87009 => "invalid signature",
            48001 => "api unauthorized",
            50001 => "user unauthorized",
            50002 => "user limited",
            _ => "mock injected error",
        };
        Self::new(code, message)
    }
}

pub(crate) const INVALID_CREDENTIAL: SnsError = SnsError::new(
    40001,
    "invalid credential, access_token is invalid or not latest",
);
pub(crate) const INVALID_GRANT_TYPE: SnsError = SnsError::new(40002, "invalid grant_type");
pub(crate) const INVALID_OPENID: SnsError = SnsError::new(40003, "invalid openid");
pub(crate) const INVALID_APPID: SnsError = SnsError::new(40013, "invalid appid");
pub(crate) const INVALID_CODE: SnsError = SnsError::new(40029, "invalid code");
pub(crate) const INVALID_REFRESH_TOKEN: SnsError = SnsError::new(40030, "invalid refresh_token");
pub(crate) const INVALID_SECRET: SnsError = SnsError::new(40125, "invalid appsecret");
pub(crate) const CODE_BEEN_USED: SnsError = SnsError::new(40163, "code been used");
pub(crate) const ACCESS_TOKEN_MISSING: SnsError = SnsError::new(41001, "access_token missing");
pub(crate) const APPID_MISSING: SnsError = SnsError::new(41002, "appid missing");
pub(crate) const REFRESH_TOKEN_MISSING: SnsError = SnsError::new(41003, "refresh_token missing");
pub(crate) const SECRET_MISSING: SnsError = SnsError::new(41004, "appsecret missing");
pub(crate) const CODE_MISSING: SnsError = SnsError::new(41008, "missing code");
pub(crate) const OPENID_MISSING: SnsError = SnsError::new(41009, "missing openid");
pub(crate) const ACCESS_TOKEN_EXPIRED: SnsError = SnsError::new(42001, "access_token expired");
pub(crate) const REFRESH_TOKEN_TIMEOUT: SnsError = SnsError::new(42002, "refresh_token timeout");
pub(crate) const CODE_EXPIRED: SnsError = SnsError::new(42003, "code expired");
pub(crate) const API_UNAUTHORIZED: SnsError = SnsError::new(48001, "api unauthorized");
pub(crate) const DAILY_QUOTA: SnsError = SnsError::new(45009, "reach max api daily quota limit");
pub(crate) const INVALID_SIGNATURE: SnsError = SnsError::new(87009, "invalid signature");

/// Success body of `/cgi-bin/stable_token` and `/cgi-bin/token`.
#[derive(Debug, Serialize)]
pub(crate) struct AppTokenBody {
    pub(crate) access_token: String,
    expires_in: u64,
}

/// Success body of `/wxa/business/getuserphonenumber`.
#[derive(Debug, Serialize)]
pub(crate) struct PhoneBody {
    errcode: i64,
    errmsg: &'static str,
    phone_info: serde_json::Value,
}

/// Success body of `/wxa/resetusersessionkey`.
#[derive(Debug, Serialize)]
pub(crate) struct ResetKeyBody {
    errcode: i64,
    errmsg: &'static str,
    openid: String,
    session_key: String,
}

/// A phone number as a test gives it: what the phone-number button's code stands for.
#[derive(Clone, Debug)]
struct PhoneCodeRecord {
    appid: String,
    phone: String,
    country_code: String,
    expires_at: Duration,
    used: bool,
}

/// An app access token the mock issued, while it is valid.
#[derive(Clone, Debug)]
struct AppToken {
    appid: String,
    expires_at: Duration,
}

/// The two app token APIs keep separate tokens: WeChat isolates `stable_token` from the older
/// `/cgi-bin/token`, so neither invalidates the other's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TokenFamily {
    Stable,
    Legacy,
}

/// A normal-mode `stable_token` call this close to the current token's expiry gets a new token
/// (the old one stays valid until it expires), as WeChat renews shortly before expiry.
const STABLE_RENEW_MARGIN: Duration = Duration::from_secs(300);
/// Length of an app access token.
const APP_TOKEN_LEN: usize = 136;

/// Success body of the code exchange and of the refresh.
#[derive(Debug, Serialize)]
pub(crate) struct TokenBody {
    access_token: String,
    expires_in: u64,
    refresh_token: String,
    openid: String,
    scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    is_snapshotuser: Option<u8>,
}

/// Success body of `/sns/jscode2session`.
#[derive(Debug, Serialize)]
pub(crate) struct SessionBody {
    openid: String,
    session_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<String>,
}

/// Success body of `/sns/userinfo`.
#[derive(Debug, Serialize)]
pub(crate) struct UserInfoBody {
    openid: String,
    nickname: String,
    sex: i64,
    province: String,
    city: String,
    country: String,
    headimgurl: String,
    privilege: Vec<String>,
    language: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    unionid: Option<String>,
}

/// A grant with its defaults filled in.
#[derive(Clone, Debug)]
struct User {
    openid: String,
    scope: String,
    unionid: Option<String>,
    snapshot_user: bool,
}

impl User {
    fn may_read_profile(&self) -> bool {
        self.scope
            .split(',')
            .any(|scope| scope == "snsapi_userinfo" || scope == "snsapi_login")
    }
}

#[derive(Debug)]
struct CodeRecord {
    user: User,
    /// The app the code was issued to.
    appid: String,
    /// Mock time the code stops being exchangeable.
    expires_at: Duration,
    used: bool,
}

/// One successful code exchange and the tokens it currently holds.
#[derive(Debug)]
struct Grant {
    user: User,
    appid: String,
    access_token: String,
    access_expires_at: Duration,
    refresh_token: String,
    /// Fixed at the exchange: refreshing never extends it.
    refresh_expires_at: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// The sum of every advance of the mock clock.
    offset: Duration,
    /// Real time since the start, when the clock runs in real time (refreshed under the lock).
    elapsed: Duration,
    codes: HashMap<String, CodeRecord>,
    next_grant: u64,
    grants: HashMap<u64, Grant>,
    by_access_token: HashMap<String, u64>,
    by_refresh_token: HashMap<String, u64>,
    profiles: HashMap<String, MockProfile>,
    /// Unionids that became known after the user's grant was made (the app was bound to an
    /// Open Platform account, the user followed the Official Account...), by openid.
    unionids: HashMap<String, String>,
    /// Each Mini Program user's current session key, by (AppID, openid): the latest
    /// `jscode2session` replaces it, as WeChat's does.
    session_keys: HashMap<(String, String), String>,
    /// Valid app access tokens; a token leaves when replaced or expired.
    app_tokens: HashMap<String, AppToken>,
    /// Each app's newest access token of each API.
    current_app_token: HashMap<(String, TokenFamily), String>,
    /// Forced `stable_token` refreshes per (AppID, mock day).
    forced_refreshes: HashMap<(String, u64), u32>,
    /// Minted phone-number codes.
    phone_codes: HashMap<String, PhoneCodeRecord>,
    calls: HashMap<Endpoint, u64>,
    /// Calls that named a known app, by AppID.
    app_calls: HashMap<(String, Endpoint), u64>,
    faults: HashMap<Endpoint, VecDeque<Fault>>,
}

impl State {
    /// The mock clock, as a duration since the mock started.
    fn now(&self) -> Duration {
        self.offset + self.elapsed
    }

    fn unused_token(&self, len: usize) -> String {
        loop {
            let token = random_alphanumeric(len);
            if !self.by_access_token.contains_key(&token)
                && !self.by_refresh_token.contains_key(&token)
            {
                return token;
            }
        }
    }

    fn unused_code(&self) -> String {
        loop {
            let code = random_alphanumeric(CODE_LEN);
            if !self.codes.contains_key(&code) {
                return code;
            }
        }
    }

    /// The user's unionid: the grant's, else one that became known since.
    fn unionid_of(&self, user: &User) -> Option<String> {
        user.unionid
            .clone()
            .or_else(|| self.unionids.get(&user.openid).cloned())
    }

    /// Consumes a code issued to `appid`: the first exchange wins, whichever endpoint makes it.
    /// Another app's code is unknown here (40029), as at WeChat.
    fn redeem(&mut self, appid: &str, code: &str) -> Result<User, SnsError> {
        let now = self.now();
        let record = self
            .codes
            .get_mut(code)
            .filter(|record| record.appid == appid)
            .ok_or(INVALID_CODE)?;
        if record.used {
            return Err(CODE_BEEN_USED);
        }
        if now >= record.expires_at {
            return Err(CODE_EXPIRED);
        }
        record.used = true;
        let mut user = record.user.clone();
        user.unionid = self.unionid_of(&user);
        Ok(user)
    }

    /// The grant holding this access token, if the token is current, unexpired and the user's.
    fn grant_for_access(&self, access_token: &str, openid: &str) -> Result<&Grant, SnsError> {
        let grant = self
            .by_access_token
            .get(access_token)
            .and_then(|id| self.grants.get(id))
            .ok_or(INVALID_CREDENTIAL)?;
        if self.now() >= grant.access_expires_at {
            return Err(ACCESS_TOKEN_EXPIRED);
        }
        if grant.user.openid != openid {
            return Err(INVALID_OPENID);
        }
        Ok(grant)
    }
}

impl State {
    /// Issues a new app token for `appid`; with `replace` the previous one stops working at
    /// once (`/cgi-bin/token`, forced refresh), else it lives until its own expiry.
    fn issue_app_token(
        &mut self,
        appid: &str,
        family: TokenFamily,
        ttl: Duration,
        replace: bool,
    ) -> AppTokenBody {
        let now = self.now();
        self.app_tokens.retain(|_, token| token.expires_at > now);
        let current = (appid.to_owned(), family);
        if replace && let Some(old) = self.current_app_token.remove(&current) {
            self.app_tokens.remove(&old);
        }
        let token = loop {
            let token = random_alphanumeric(APP_TOKEN_LEN);
            if !self.app_tokens.contains_key(&token) {
                break token;
            }
        };
        self.app_tokens.insert(
            token.clone(),
            AppToken {
                appid: appid.to_owned(),
                expires_at: now + ttl,
            },
        );
        self.current_app_token.insert(current, token.clone());
        AppTokenBody {
            access_token: token,
            expires_in: ttl.as_secs(),
        }
    }

    /// The app an access token belongs to: 40001 if unknown or replaced, 42001 if expired.
    fn app_of(&self, token: &str) -> Result<String, SnsError> {
        let record = self.app_tokens.get(token).ok_or(INVALID_CREDENTIAL)?;
        if self.now() >= record.expires_at {
            return Err(ACCESS_TOKEN_EXPIRED);
        }
        Ok(record.appid.clone())
    }

    /// Checks a session key signature against the user's current key in `appid`.
    fn check_signature(
        &self,
        appid: &str,
        openid: &str,
        signature: &str,
        sig_method: &str,
    ) -> Result<(), SnsError> {
        let key = self
            .session_keys
            .get(&(appid.to_owned(), openid.to_owned()))
            .ok_or(INVALID_SIGNATURE)?;
        if sig_method != "hmac_sha256" || signature != session_signature(key) {
            return Err(INVALID_SIGNATURE);
        }
        Ok(())
    }
}

/// `hex(hmac_sha256(key = session_key, message = ""))`, the signature of the session key APIs.
pub(crate) fn session_signature(session_key: &str) -> String {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_key.as_bytes());
    hmac::sign(&key, b"")
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Everything the handlers and the handle share: configuration, start time and the locked state.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: MockConfig,
    started: SystemTime,
    started_instant: Instant,
    state: Mutex<State>,
    /// The Official Accounts' QR codes, followers and server URLs (`mp.rs`).
    pub(crate) mp: Mutex<crate::mp::OfficialAccounts>,
}

impl Shared {
    pub(crate) fn new(config: MockConfig) -> Self {
        Self {
            config,
            started: SystemTime::now(),
            started_instant: Instant::now(),
            state: Mutex::new(State::default()),
            mp: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the maps half-updated in a way that matters to a mock.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if self.config.real_time {
            state.elapsed = self.started_instant.elapsed();
        }
        state
    }

    /// The mock clock: the system time at start plus every advance (plus the real time since
    /// the start, when the clock runs in real time).
    pub(crate) fn now(&self) -> SystemTime {
        self.started + self.lock().now()
    }

    /// The app an app access token belongs to: 40001 if unknown or replaced, 42001 if expired.
    pub(crate) fn app_of_token(&self, token: &str) -> Result<String, SnsError> {
        self.lock().app_of(token)
    }

    /// Moves the mock clock forward and returns the new time.
    pub(crate) fn advance(&self, by: Duration) -> SystemTime {
        let mut state = self.lock();
        state.offset += by;
        self.started + state.now()
    }

    /// Counts a call to `endpoint` and takes the next queued fault for it, if any.
    pub(crate) fn enter(&self, endpoint: Endpoint) -> Option<Fault> {
        let mut state = self.lock();
        *state.calls.entry(endpoint).or_default() += 1;
        state
            .faults
            .get_mut(&endpoint)
            .and_then(VecDeque::pop_front)
    }

    pub(crate) fn calls(&self, endpoint: Endpoint) -> u64 {
        self.lock().calls.get(&endpoint).copied().unwrap_or(0)
    }

    /// Counts a call to `endpoint` that named the known app `appid`.
    pub(crate) fn count_for_app(&self, appid: &str, endpoint: Endpoint) {
        *self
            .lock()
            .app_calls
            .entry((appid.to_owned(), endpoint))
            .or_default() += 1;
    }

    pub(crate) fn app_calls(&self, appid: &str, endpoint: Endpoint) -> u64 {
        self.lock()
            .app_calls
            .get(&(appid.to_owned(), endpoint))
            .copied()
            .unwrap_or(0)
    }

    pub(crate) fn stats(&self) -> BTreeMap<&'static str, u64> {
        let state = self.lock();
        Endpoint::ALL
            .into_iter()
            .map(|endpoint| {
                let calls = state.calls.get(&endpoint).copied().unwrap_or(0);
                (endpoint.name(), calls)
            })
            .collect()
    }

    pub(crate) fn inject(&self, endpoint: Endpoint, fault: Fault, times: u32) {
        let mut state = self.lock();
        let queue = state.faults.entry(endpoint).or_default();
        queue.extend(std::iter::repeat_n(fault, times as usize));
    }

    pub(crate) fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Mints a single-use code for this grant.
    pub(crate) fn mint_code(&self, grant: MockGrant) -> String {
        let user = User {
            openid: grant.openid.unwrap_or_else(random_openid),
            scope: grant.scope.unwrap_or_else(|| "snsapi_userinfo".to_owned()),
            unionid: grant.unionid,
            snapshot_user: grant.snapshot_user,
        };
        let appid = grant.appid.unwrap_or_else(|| self.config.appid.clone());
        let mut state = self.lock();
        let code = state.unused_code();
        let expires_at = state.now() + self.config.code_ttl;
        state.codes.insert(
            code.clone(),
            CodeRecord {
                user,
                appid,
                expires_at,
                used: false,
            },
        );
        code
    }

    /// Makes every access and refresh token of this user invalid.
    pub(crate) fn revoke(&self, openid: &str) {
        let mut state = self.lock();
        let revoked: Vec<u64> = state
            .grants
            .iter()
            .filter(|(_, grant)| grant.user.openid == openid)
            .map(|(id, _)| *id)
            .collect();
        for id in revoked {
            if let Some(grant) = state.grants.remove(&id) {
                state.by_access_token.remove(&grant.access_token);
                state.by_refresh_token.remove(&grant.refresh_token);
            }
        }
    }

    pub(crate) fn set_profile(&self, openid: &str, profile: MockProfile) {
        self.lock().profiles.insert(openid.to_owned(), profile);
    }

    pub(crate) fn set_unionid(&self, openid: &str, unionid: &str) {
        self.lock()
            .unionids
            .insert(openid.to_owned(), unionid.to_owned());
    }

    /// `/sns/oauth2/access_token` once the app is authenticated: redeems the code and opens a
    /// token grant.
    pub(crate) fn exchange(&self, appid: &str, code: &str) -> Result<TokenBody, SnsError> {
        let mut state = self.lock();
        let user = state.redeem(appid, code)?;
        let access_token = state.unused_token(TOKEN_LEN);
        let refresh_token = state.unused_token(TOKEN_LEN);
        let body = TokenBody {
            access_token: access_token.clone(),
            expires_in: self.config.access_token_ttl.as_secs(),
            refresh_token: refresh_token.clone(),
            openid: user.openid.clone(),
            scope: format!("{},", user.scope),
            unionid: user.unionid.clone(),
            is_snapshotuser: user.snapshot_user.then_some(1),
        };
        let id = state.next_grant;
        state.next_grant += 1;
        let grant = Grant {
            user,
            appid: appid.to_owned(),
            access_token: access_token.clone(),
            access_expires_at: state.now() + self.config.access_token_ttl,
            refresh_token: refresh_token.clone(),
            refresh_expires_at: state.now() + self.config.refresh_token_ttl,
        };
        state.grants.insert(id, grant);
        state.by_access_token.insert(access_token, id);
        state.by_refresh_token.insert(refresh_token, id);
        Ok(body)
    }

    /// `/sns/oauth2/refresh_token` once the app is identified: only the app the grant was
    /// made to can refresh it.
    pub(crate) fn refresh(&self, appid: &str, refresh_token: &str) -> Result<TokenBody, SnsError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let now = state.now();
        let id = *state
            .by_refresh_token
            .get(refresh_token)
            .ok_or(INVALID_REFRESH_TOKEN)?;
        let grant = state
            .grants
            .get(&id)
            .filter(|grant| grant.appid == appid)
            .ok_or(INVALID_REFRESH_TOKEN)?;
        if now >= grant.refresh_expires_at {
            return Err(REFRESH_TOKEN_TIMEOUT);
        }
        let access_expired = now >= grant.access_expires_at;
        let new_access = access_expired.then(|| state.unused_token(TOKEN_LEN));
        let new_refresh = self
            .config
            .rotate_refresh_tokens
            .then(|| state.unused_token(TOKEN_LEN));

        let grant = state.grants.get_mut(&id).ok_or(INVALID_REFRESH_TOKEN)?;
        grant.access_expires_at = now + self.config.access_token_ttl;
        if let Some(token) = new_access {
            let old = std::mem::replace(&mut grant.access_token, token.clone());
            state.by_access_token.remove(&old);
            state.by_access_token.insert(token, id);
        }
        if let Some(token) = new_refresh {
            let old = std::mem::replace(&mut grant.refresh_token, token.clone());
            state.by_refresh_token.remove(&old);
            state.by_refresh_token.insert(token, id);
        }
        Ok(TokenBody {
            access_token: grant.access_token.clone(),
            expires_in: self.config.access_token_ttl.as_secs(),
            refresh_token: grant.refresh_token.clone(),
            openid: grant.user.openid.clone(),
            scope: format!("{},", grant.user.scope),
            unionid: None,
            is_snapshotuser: None,
        })
    }

    /// `/sns/auth`: checks the access token belongs to this user and is current.
    pub(crate) fn check_access(&self, access_token: &str, openid: &str) -> Result<(), SnsError> {
        self.lock().grant_for_access(access_token, openid).map(drop)
    }

    /// `/sns/userinfo`: the user's profile, if the token is valid and its scope allows it.
    pub(crate) fn user_info(
        &self,
        access_token: &str,
        openid: &str,
    ) -> Result<UserInfoBody, SnsError> {
        let state = self.lock();
        let grant = state.grant_for_access(access_token, openid)?;
        if !grant.user.may_read_profile() {
            return Err(API_UNAUTHORIZED);
        }
        let profile = state
            .profiles
            .get(&grant.user.openid)
            .cloned()
            .unwrap_or_default();
        Ok(UserInfoBody {
            openid: grant.user.openid.clone(),
            nickname: profile.nickname,
            sex: profile.sex,
            province: profile.province,
            city: profile.city,
            country: profile.country,
            headimgurl: profile.headimgurl,
            privilege: profile.privilege,
            language: "zh_CN",
            unionid: state.unionid_of(&grant.user),
        })
    }

    /// `/sns/jscode2session` once the app is authenticated: redeems the code for a session key.
    pub(crate) fn code_to_session(&self, appid: &str, code: &str) -> Result<SessionBody, SnsError> {
        let mut state = self.lock();
        let user = state.redeem(appid, code)?;
        let session_key = random_session_key();
        state
            .session_keys
            .insert((appid.to_owned(), user.openid.clone()), session_key.clone());
        Ok(SessionBody {
            openid: user.openid,
            session_key,
            unionid: user.unionid,
        })
    }

    /// `/cgi-bin/stable_token` once the app is authenticated: the current token while it is
    /// not close to expiry; with `force` a new one that replaces it, within the daily limit.
    pub(crate) fn stable_token(&self, appid: &str, force: bool) -> Result<AppTokenBody, SnsError> {
        let mut state = self.lock();
        let now = state.now();
        if force {
            let day = now.as_secs() / 86_400;
            let used = state
                .forced_refreshes
                .entry((appid.to_owned(), day))
                .or_default();
            if *used >= self.config.forced_refreshes_per_day {
                return Err(DAILY_QUOTA);
            }
            *used += 1;
            return Ok(self.force_stable_token(&mut state, appid));
        }
        let current = state
            .current_app_token
            .get(&(appid.to_owned(), TokenFamily::Stable))
            .and_then(|token| Some((token.clone(), state.app_tokens.get(token)?.expires_at)));
        match current {
            Some((token, expires_at)) if expires_at > now + STABLE_RENEW_MARGIN => {
                Ok(AppTokenBody {
                    access_token: token,
                    expires_in: (expires_at - now).as_secs(),
                })
            }
            _ => Ok(state.issue_app_token(
                appid,
                TokenFamily::Stable,
                self.config.app_token_ttl,
                false,
            )),
        }
    }

    /// A new stable token that replaces the current one at once.
    fn force_stable_token(&self, state: &mut State, appid: &str) -> AppTokenBody {
        state.issue_app_token(appid, TokenFamily::Stable, self.config.app_token_ttl, true)
    }

    /// Another party forced a `stable_token` refresh (outside the daily limit): the app's
    /// current stable token stops working at once.
    pub(crate) fn invalidate_stable_token(&self, appid: &str) {
        let mut state = self.lock();
        self.force_stable_token(&mut state, appid);
    }

    /// `/cgi-bin/token` once the app is authenticated: a new token every call; the previous
    /// one of this API stops working (the classic 40001 of two servers fetching their own).
    pub(crate) fn legacy_token(&self, appid: &str) -> AppTokenBody {
        self.lock()
            .issue_app_token(appid, TokenFamily::Legacy, self.config.app_token_ttl, true)
    }

    /// Mints a phone-number code for `phone` (with `country_code`) in `appid`.
    pub(crate) fn mint_phone_code(&self, appid: &str, phone: &str, country_code: &str) -> String {
        let mut state = self.lock();
        let code = loop {
            let code = random_alphanumeric(CODE_LEN);
            if !state.phone_codes.contains_key(&code) {
                break code;
            }
        };
        let expires_at = state.now() + self.config.phone_code_ttl;
        state.phone_codes.insert(
            code.clone(),
            PhoneCodeRecord {
                appid: appid.to_owned(),
                phone: phone.to_owned(),
                country_code: country_code.to_owned(),
                expires_at,
                used: false,
            },
        );
        code
    }

    /// `/wxa/business/getuserphonenumber`: redeems a phone code of the token's app (40029 if
    /// unknown, another app's, used or expired).
    pub(crate) fn phone_number(&self, app_token: &str, code: &str) -> Result<PhoneBody, SnsError> {
        let mut state = self.lock();
        let appid = state.app_of(app_token)?;
        let now = state.now();
        let timestamp = (self.started + now)
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let record = state
            .phone_codes
            .get_mut(code)
            .filter(|record| record.appid == appid && !record.used && now < record.expires_at)
            .ok_or(INVALID_CODE)?;
        record.used = true;
        let full = if record.country_code == "86" {
            record.phone.clone()
        } else {
            format!("+{}{}", record.country_code, record.phone)
        };
        Ok(PhoneBody {
            errcode: 0,
            errmsg: "ok",
            phone_info: serde_json::json!({
                "phoneNumber": full,
                "purePhoneNumber": record.phone,
                "countryCode": record.country_code,
                "watermark": { "timestamp": timestamp, "appid": appid },
            }),
        })
    }

    /// `/wxa/checksession`: the signature must be made with the user's current session key.
    pub(crate) fn check_session(
        &self,
        app_token: &str,
        openid: &str,
        signature: &str,
        sig_method: &str,
    ) -> Result<(), SnsError> {
        let state = self.lock();
        let appid = state.app_of(app_token)?;
        state.check_signature(&appid, openid, signature, sig_method)
    }

    /// `/wxa/resetusersessionkey`: checked like `checksession`, then a new current key.
    pub(crate) fn reset_session_key(
        &self,
        app_token: &str,
        openid: &str,
        signature: &str,
        sig_method: &str,
    ) -> Result<ResetKeyBody, SnsError> {
        let mut state = self.lock();
        let appid = state.app_of(app_token)?;
        state.check_signature(&appid, openid, signature, sig_method)?;
        let key = random_session_key();
        state
            .session_keys
            .insert((appid, openid.to_owned()), key.clone());
        Ok(ResetKeyBody {
            errcode: 0,
            errmsg: "ok",
            openid: openid.to_owned(),
            session_key: key,
        })
    }

    /// What WeChat hands a Mini Program client as `encryptedData` + `iv`: `data` (a JSON
    /// object) with a `watermark` `{appid, timestamp}` added, sealed under the user's current
    /// session key (AES-128-CBC, PKCS#7, base64). `None` if the user has no session key in
    /// that app, or `data` is not an object.
    pub(crate) fn seal_user_data(
        &self,
        appid: &str,
        openid: &str,
        data: &serde_json::Value,
    ) -> Option<(String, String)> {
        use aws_lc_rs::cipher::{
            AES_128, EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey,
        };
        use base64::Engine;
        use base64::engine::general_purpose::STANDARD;
        let (key, now) = {
            let state = self.lock();
            let key = state
                .session_keys
                .get(&(appid.to_owned(), openid.to_owned()))?
                .clone();
            (key, self.started + state.now())
        };
        let mut data = data.as_object()?.clone();
        let timestamp = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        data.insert(
            "watermark".into(),
            serde_json::json!({ "appid": appid, "timestamp": timestamp }),
        );
        let key = STANDARD.decode(key).ok()?;
        let iv: [u8; 16] = rand::random();
        let cipher = UnboundCipherKey::new(&AES_128, &key)
            .and_then(PaddedBlockEncryptingKey::cbc_pkcs7)
            .ok()?;
        let mut bytes = serde_json::to_vec(&data).ok()?;
        cipher
            .less_safe_encrypt(
                &mut bytes,
                EncryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from(iv)),
            )
            .ok()?;
        Some((STANDARD.encode(bytes), STANDARD.encode(iv)))
    }
}

/// `len` random ASCII letters and digits.
pub(crate) fn random_alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// An openid that looks like a real one: `o` and 27 alphanumerics.
pub(crate) fn random_openid() -> String {
    format!("o{}", random_alphanumeric(27))
}

/// 16 random bytes as padded base64 (24 characters), like a real session_key.
fn random_session_key() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::rng();
    let mut key: String = (0..21)
        .map(|_| char::from(ALPHABET[rng.random_range(0..64)]))
        .collect();
    // The 22nd character of 16 encoded bytes carries only two bits.
    key.push(char::from(b"AQgw"[rng.random_range(0..4)]));
    key.push_str("==");
    key
}

/// A request id like the ones WeChat appends to every errmsg: `6745f0a1-1b2c3d4e-5f6a7b8c`.
pub(crate) fn random_rid() -> String {
    let mut rng = rand::rng();
    format!(
        "{:08x}-{:08x}-{:08x}",
        rng.random::<u32>(),
        rng.random::<u32>(),
        rng.random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DEFAULT_APPID;

    fn shared() -> Shared {
        Shared::new(MockConfig::default())
    }

    #[test]
    fn session_key_looks_like_base64_of_16_bytes() {
        let key = random_session_key();
        assert_eq!(key.len(), 24);
        assert!(key.ends_with("=="));
    }

    #[test]
    fn random_openid_shape() {
        let openid = random_openid();
        assert_eq!(openid.len(), 28);
        assert!(openid.starts_with('o'));
    }

    #[test]
    fn a_code_is_consumed_by_either_exchange() {
        let shared = shared();
        let appid = DEFAULT_APPID;
        let code = shared.mint_code(MockGrant::default());
        assert!(shared.code_to_session(appid, &code).is_ok());
        assert_eq!(shared.exchange(appid, &code).unwrap_err(), CODE_BEEN_USED);
    }

    #[test]
    fn a_code_and_a_refresh_token_belong_to_their_app() {
        let shared = Shared::new(MockConfig::default().with_app("wxother", "other-secret"));
        let theirs = shared.mint_code(MockGrant {
            appid: Some("wxother".into()),
            ..MockGrant::default()
        });
        // Another app's code is unknown here, and stays usable by its own app.
        assert_eq!(
            shared.exchange(DEFAULT_APPID, &theirs).unwrap_err(),
            INVALID_CODE
        );
        let grant = shared.exchange("wxother", &theirs).unwrap();
        assert_eq!(
            shared
                .refresh(DEFAULT_APPID, &grant.refresh_token)
                .unwrap_err(),
            INVALID_REFRESH_TOKEN
        );
        assert!(shared.refresh("wxother", &grant.refresh_token).is_ok());
    }

    #[test]
    fn revoke_only_touches_that_user() {
        let shared = shared();
        let alice = MockGrant {
            openid: Some("alice".into()),
            ..MockGrant::default()
        };
        let bob = MockGrant {
            openid: Some("bob".into()),
            ..MockGrant::default()
        };
        let a = shared
            .exchange(DEFAULT_APPID, &shared.mint_code(alice))
            .unwrap();
        let b = shared
            .exchange(DEFAULT_APPID, &shared.mint_code(bob))
            .unwrap();
        shared.revoke("alice");
        assert_eq!(
            shared.check_access(&a.access_token, "alice"),
            Err(INVALID_CREDENTIAL)
        );
        assert_eq!(shared.check_access(&b.access_token, "bob"), Ok(()));
    }

    #[test]
    fn injected_faults_are_fifo_and_counted_calls_include_them() {
        let shared = shared();
        shared.inject(Endpoint::Auth, Fault::ErrCode(-1), 1);
        shared.inject(Endpoint::Auth, Fault::HttpStatus(503), 2);
        assert_eq!(shared.enter(Endpoint::Auth), Some(Fault::ErrCode(-1)));
        assert_eq!(shared.enter(Endpoint::Auth), Some(Fault::HttpStatus(503)));
        assert_eq!(shared.enter(Endpoint::Auth), Some(Fault::HttpStatus(503)));
        assert_eq!(shared.enter(Endpoint::Auth), None);
        assert_eq!(shared.calls(Endpoint::Auth), 4);
        assert_eq!(shared.stats()["userinfo"], 0);
    }

    #[test]
    fn errmsg_table_knows_quota_and_falls_back() {
        assert_eq!(SnsError::for_code(45011).code, 45011);
        assert_eq!(SnsError::for_code(12345).message, "mock injected error");
    }
}
