//! Login: a code is exchanged at most once, and only the client that submitted it gets its
//! session.
//!
//! A code is a credential. It is keyed by a keyed hash of (AppID, code) — HMAC-SHA256 under a
//! per-process random key; the code itself is never stored — and every submit carries a
//! [`LoginBinding`]: the flow it came through and, optionally, a proof that it is the same client
//! as the first submit (the web flow's binding cookie, a client-chosen request id, the OAuth
//! state of an Official Account callback). Then:
//!
//! - submits in flight together share one exchange (single flight); each gets the session only
//!   if its binding equals the first submit's;
//! - after the exchange, a repeat gets the existing session only with the same binding, a proof
//!   in it, and within a short window ([`SessionConfig::code_retry_window`], 60 s; for Official
//!   Account callbacks [`SessionConfig::callback_retry_window`], 5 s). Anything else — another
//!   flow, another client, no proof, too late — is refused like WeChat's 40163 "code used", with
//!   a warn-level "code replayed" log line that holds no secret;
//! - WeChat's definitive refusals (40029, 40163, 42003, a denied user) are remembered apart from
//!   successes, so junk codes cannot push real logins out. Unknown errcodes and transient
//!   failures are not remembered, so the client may try again; the exchange itself is never
//!   retried automatically.
//!
//! The remembered outcome is consulted before joining a flight and again inside it (a submit
//! that just missed the first flight's answer must not exchange the code again), and a 40163
//! from WeChat is answered from what is remembered when there is something. A remembered success
//! is never replaced by an error.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use sha2::Sha256;
use wechat_oauth::{AppId, AuthCode, ErrCode, ErrorClass};

use crate::config::SessionConfig;
use crate::env::Env;
use crate::error::LoginError;
use crate::flight::Flights;
use crate::flow::LoginFlow;
use crate::hook::NewLogin;
use crate::mini_program::SessionKeys;
use wechat_session_store::{Credentials, LoginClient, SessionId, SessionRecord};
use wechat_session_store::{SharedStore, StoreError};

type CodeKey = [u8; 32];
type Outcome = Result<Arc<SessionRecord>, LoginError>;

/// Refusals are remembered in a cache this fraction of the successes' capacity...
const REFUSALS_PER_SUCCESS: u64 = 10;
/// ...but never fewer than this many.
const MIN_REMEMBERED_REFUSALS: u64 = 1_000;

/// Counts a login outcome of a configured app.
fn login_metric(appid: &AppId, flow: LoginFlow, outcome: &'static str) {
    metrics::counter!(
        crate::metrics::LOGINS,
        "appid" => appid.as_str().to_owned(),
        "flow" => flow.label(),
        "outcome" => outcome,
    )
    .increment(1);
}

/// The metric label of a login's result.
fn login_outcome(result: &Result<Arc<SessionRecord>, LoginError>) -> &'static str {
    match result {
        Ok(_) => "logged_in",
        Err(LoginError::InvalidCode { errcode }) if *errcode == ErrCode::CODE_USED => "code_used",
        Err(LoginError::InvalidCode { .. }) => "invalid_code",
        Err(LoginError::Denied { .. }) => "denied",
        Err(LoginError::Unavailable { .. }) => "unavailable",
        Err(LoginError::Misconfigured { .. }) => "misconfigured",
        Err(LoginError::Store(_)) => "store_unavailable",
        Err(LoginError::AppNotConfigured) => "app_not_configured",
        Err(LoginError::SnapshotUser) => "snapshot_user",
        Err(LoginError::Refused { .. }) => "refused",
        Err(LoginError::AccountsUnavailable { .. }) => "accounts_unavailable",
    }
}

/// What a submit of a code shows about its client: the flow, and a proof the client can show
/// again on a retry (never the code). Only a repeat with an equal binding — and a proof — gets
/// the first submit's session.
#[derive(Clone, Debug)]
pub struct LoginBinding<'a> {
    flow: LoginFlow,
    proof: Option<&'a str>,
    app: Option<&'a AppId>,
    client: Option<&'a LoginClient>,
}

impl<'a> LoginBinding<'a> {
    /// A submit through `flow` with no proof: it shares a concurrent exchange of the same code,
    /// but any later repeat of the code is refused.
    pub fn new(flow: LoginFlow) -> Self {
        Self {
            flow,
            proof: None,
            app: None,
            client: None,
        }
    }

    /// The app the code was issued for (default: the cache's default app). A code is only
    /// ever exchanged with its own app's credentials.
    pub fn app(mut self, appid: &'a AppId) -> Self {
        self.app = Some(appid);
        self
    }

    /// The proof a retry will show again: the web flow's binding cookie, a client-chosen
    /// request id, the state of an Official Account callback. Empty means none.
    pub fn proof(mut self, proof: &'a str) -> Self {
        self.proof = Some(proof).filter(|p| !p.is_empty());
        self
    }

    /// Where the submit came from, recorded in the new session for the user's list of their
    /// sessions (not part of what a retry must show again).
    pub fn client(mut self, client: &'a LoginClient) -> Self {
        self.client = Some(client).filter(|c| !c.is_empty());
        self
    }

    /// The flow.
    pub fn flow(&self) -> LoginFlow {
        self.flow
    }
}

/// A binding as remembered: the flow and a keyed hash of the proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Claim {
    flow: LoginFlow,
    proof: Option<[u8; 32]>,
}

/// A code that logged in: the session, who may ask for it again, and since when.
#[derive(Clone, Copy, Debug)]
struct Used {
    sid: SessionId,
    claim: Claim,
    at: SystemTime,
}

pub(crate) struct Logins {
    key: [u8; 32],
    /// Codes that logged in.
    successes: Cache<CodeKey, Used>,
    /// Codes WeChat refused for good.
    refusals: Cache<CodeKey, LoginError>,
    flights: Arc<Flights<CodeKey, (Outcome, Claim)>>,
}

impl Logins {
    pub(crate) fn new(config: &SessionConfig, key: [u8; 32]) -> Self {
        let refusal_capacity =
            (config.remembered_logins / REFUSALS_PER_SUCCESS).max(MIN_REMEMBERED_REFUSALS);
        Self {
            key,
            successes: Cache::builder()
                .max_capacity(config.remembered_logins)
                .eviction_policy(EvictionPolicy::lru())
                .time_to_live(config.code_ttl)
                .build(),
            refusals: Cache::builder()
                .max_capacity(refusal_capacity)
                .eviction_policy(EvictionPolicy::lru())
                .time_to_live(config.code_ttl)
                .build(),
            flights: Arc::new(Flights::named("login")),
        }
    }

    fn mac(&self, domain: u8, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(&[domain]);
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    fn code_key(&self, appid: &str, code: &AuthCode) -> CodeKey {
        self.mac(0, &[appid.as_bytes(), code.secret().as_bytes()])
    }

    fn claim(&self, binding: &LoginBinding<'_>) -> Claim {
        Claim {
            flow: binding.flow,
            proof: binding.proof.map(|p| self.mac(1, &[p.as_bytes()])),
        }
    }
}

/// A code's outcome as every instance of a fleet shares it (through the store's shared values).
enum Shared {
    Used(Used),
    Refused(LoginError),
}

impl Shared {
    /// `S sid flow proof? [proof] at_ms` or `R kind errcode`.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(60);
        match self {
            Self::Used(used) => {
                out.push(b'S');
                out.extend_from_slice(used.sid.as_bytes());
                out.push(used.claim.flow.to_byte());
                match &used.claim.proof {
                    Some(proof) => {
                        out.push(1);
                        out.extend_from_slice(proof);
                    }
                    None => out.push(0),
                }
                let at = used.at.duration_since(UNIX_EPOCH).unwrap_or_default();
                out.extend_from_slice(&(at.as_millis() as u64).to_le_bytes());
            }
            Self::Refused(error) => {
                let (kind, errcode) = match error {
                    LoginError::Denied { errcode } => (1, errcode.0),
                    LoginError::InvalidCode { errcode } => (0, errcode.0),
                    _ => (0, ErrCode::INVALID_CODE.0),
                };
                out.push(b'R');
                out.push(kind);
                out.extend_from_slice(&errcode.to_le_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let (&tag, rest) = bytes.split_first()?;
        match tag {
            b'S' => {
                let sid = SessionId::from_bytes(rest.get(..16)?.try_into().ok()?);
                let flow = LoginFlow::from_byte(*rest.get(16)?)?;
                let (proof, rest) = match rest.get(17)? {
                    1 => (Some(rest.get(18..50)?.try_into().ok()?), rest.get(50..)?),
                    _ => (None, rest.get(18..)?),
                };
                let at = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
                Some(Self::Used(Used {
                    sid,
                    claim: Claim { flow, proof },
                    at: UNIX_EPOCH + Duration::from_millis(at),
                }))
            }
            b'R' => {
                let kind = *rest.first()?;
                let errcode = ErrCode(i64::from_le_bytes(rest.get(1..9)?.try_into().ok()?));
                Some(Self::Refused(match kind {
                    1 => LoginError::Denied { errcode },
                    _ => LoginError::InvalidCode { errcode },
                }))
            }
            _ => None,
        }
    }
}

/// The name of a code's shared value and lease.
fn shared_name(key: &CodeKey) -> String {
    let mut name = String::with_capacity(6 + 64);
    name.push_str("login:");
    for b in key {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// Whether a failed exchange is WeChat's final word on this code (or user), worth remembering:
/// the code is invalid, used or expired, or the user is denied. Anything else — transient,
/// misconfiguration, an errcode we do not know — may go differently next time.
fn is_definitive(error: &LoginError) -> bool {
    match error {
        LoginError::InvalidCode { errcode } => matches!(
            *errcode,
            ErrCode::INVALID_CODE | ErrCode::CODE_USED | ErrCode::CODE_EXPIRED
        ),
        LoginError::Denied { .. } => true,
        _ => false,
    }
}

/// The answer to a code used by someone else, or too late: WeChat's own "code used".
fn replayed(flow: LoginFlow) -> LoginError {
    metrics::counter!(crate::metrics::CODE_REPLAYS_REFUSED, "flow" => flow.label()).increment(1);
    tracing::warn!(
        ?flow,
        outcome = "code_replayed",
        "code replayed: a used login code was submitted again by another client, through another flow, or too late"
    );
    LoginError::InvalidCode {
        errcode: ErrCode::CODE_USED,
    }
}

/// The login part at work: the logins' state, with what it needs of the coordinator (the
/// shared [`Env`], and the session keys a Mini Program login replaces).
pub(crate) struct LoginCalls<'a, S> {
    pub(crate) logins: &'a Arc<Logins>,
    pub(crate) env: &'a Arc<Env<S>>,
    pub(crate) keys: &'a Arc<SessionKeys>,
}

impl<S> Clone for LoginCalls<'_, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for LoginCalls<'_, S> {}

impl<S: SharedStore> LoginCalls<'_, S> {
    /// See [`SessionManager::login_bound`](crate::SessionManager::login_bound).
    pub(crate) async fn login_bound(
        &self,
        code: &AuthCode,
        binding: &LoginBinding<'_>,
    ) -> Result<Arc<SessionRecord>, LoginError> {
        let Some(client) = (match binding.app {
            Some(appid) => self.env.client_for(appid),
            None => self.env.clients.first(),
        }) else {
            metrics::counter!(
                crate::metrics::LOGINS,
                "appid" => "unknown",
                "flow" => binding.flow.label(),
                "outcome" => "app_not_configured",
            )
            .increment(1);
            return Err(LoginError::AppNotConfigured);
        };
        let result = self.login_with(client, code, binding).await;
        // Successes are counted where they happen: a new session by the exchange, a retry
        // answered with its session where it is remembered; joiners of a flight as coalesced.
        if result.is_err() {
            login_metric(client.appid(), binding.flow, login_outcome(&result));
        }
        result
    }

    async fn login_with(
        &self,
        client: &wechat_oauth::Client,
        code: &AuthCode,
        binding: &LoginBinding<'_>,
    ) -> Result<Arc<SessionRecord>, LoginError> {
        let logins = self.logins;
        let key = logins.code_key(client.appid().as_str(), code);
        let claim = logins.claim(binding);
        let appid = client.appid().clone();
        if let Some(outcome) = self.remembered(&key, claim, false).await {
            if outcome.is_ok() {
                login_metric(&appid, claim.flow, "retried");
            }
            return outcome;
        }
        let (logins_, env, keys) = (
            Arc::clone(self.logins),
            Arc::clone(self.env),
            Arc::clone(self.keys),
        );
        let code = code.clone();
        let from = binding.client.cloned();
        let flown = logins
            .flights
            .run(key, move || async move {
                let login = LoginCalls {
                    logins: &logins_,
                    env: &env,
                    keys: &keys,
                };
                let outcome = login
                    .exchange_in_flight(&appid, key, claim, &code, from)
                    .await;
                (outcome, claim)
            })
            .await;
        match flown {
            // The first submit's binding decides who shares its session.
            Some((Ok(_), leader)) if leader != claim => Err(replayed(claim.flow)),
            Some((outcome, _)) => outcome,
            None => Err(LoginError::Unavailable {
                retry_after: Duration::from_secs(1),
            }),
        }
    }

    /// The remembered outcome of a code, if any: a success reloaded from the store for the
    /// client that made it, within its window (ended → 40163), a replay refused, or a
    /// remembered refusal.
    ///
    /// A submit that `joined` an exchange in flight (on another instance) shares its outcome
    /// on an equal binding alone, as it would joining a flight here.
    async fn remembered(&self, key: &CodeKey, claim: Claim, joined: bool) -> Option<Outcome> {
        let logins = self.logins;
        if let Some(used) = logins.successes.get(key) {
            return Some(self.answer_used(used, claim, joined).await);
        }
        if let Some(refusal) = logins.refusals.get(key) {
            tracing::debug!(
                outcome = "remembered",
                "login code seen before; same refusal"
            );
            return Some(Err(refusal));
        }
        // Another instance of the fleet may have seen it.
        match self.env.store.get_value(&shared_name(key)).await {
            Ok(Some(bytes)) => match Shared::decode(&bytes)? {
                Shared::Used(used) => {
                    logins.successes.insert(*key, used);
                    Some(self.answer_used(used, claim, joined).await)
                }
                Shared::Refused(refusal) => {
                    logins.refusals.insert(*key, refusal.clone());
                    Some(Err(refusal))
                }
            },
            Ok(None) => None,
            Err(error) => Some(Err(LoginError::Store(error))),
        }
    }

    /// A used code submitted again: the session for its client within the window, else
    /// refused as replayed.
    async fn answer_used(&self, used: Used, claim: Claim, joined: bool) -> Outcome {
        let window = match used.claim.flow {
            LoginFlow::OfficialAccountCallback => self.env.config.callback_retry_window,
            _ => self.env.config.code_retry_window,
        };
        let age = self
            .env
            .clock
            .now()
            .duration_since(used.at)
            .unwrap_or_default();
        let retry = claim.proof.is_some() && age <= window;
        if used.claim != claim || !(joined || retry) {
            return Err(replayed(claim.flow));
        }
        tracing::debug!(
            outcome = "remembered",
            "login code retried by its client; same session"
        );
        match self.env.store.get(&used.sid).await {
            Ok(Some(record)) => Ok(record),
            Ok(None) => Err(LoginError::InvalidCode {
                errcode: ErrCode::CODE_USED,
            }),
            Err(e) => Err(LoginError::Store(e)),
        }
    }

    /// The work of one flight: look again (an answer may have landed just before this flight
    /// took off), then exchange under the code's fleet-wide lease — or, while another instance
    /// holds it, wait for the outcome it shares.
    async fn exchange_in_flight(
        &self,
        appid: &AppId,
        key: CodeKey,
        claim: Claim,
        code: &AuthCode,
        from: Option<LoginClient>,
    ) -> Outcome {
        if let Some(outcome) = self.remembered(&key, claim, false).await {
            return outcome;
        }
        let work = Box::pin(async {
            match self.remembered(&key, claim, false).await {
                Some(outcome) => outcome,
                None => {
                    self.exchange_and_remember(appid, key, claim, code, from)
                        .await
                }
            }
        });
        self.env
            .under_lease(
                &shared_name(&key),
                work,
                // Waiting on another instance's exchange is joining its flight.
                move || async move { self.remembered(&key, claim, true).await },
                || {
                    Err(LoginError::Unavailable {
                        retry_after: Duration::from_secs(1),
                    })
                },
                |error| async move { Err(LoginError::Store(error)) },
            )
            .await
    }

    /// Exchanges the code and remembers the outcome, here and for the fleet.
    async fn exchange_and_remember(
        &self,
        appid: &AppId,
        key: CodeKey,
        claim: Claim,
        code: &AuthCode,
        from: Option<LoginClient>,
    ) -> Outcome {
        let outcome = self.exchange(appid, claim.flow, code, from).await;
        let logins = self.logins;
        let shared = match &outcome {
            Ok(record) => {
                let used = Used {
                    sid: record.sid,
                    claim,
                    at: self.env.clock.now(),
                };
                logins.successes.insert(key, used);
                Some(Shared::Used(used))
            }
            Err(LoginError::InvalidCode {
                errcode: ErrCode::CODE_USED,
            }) => {
                // Used: by us, if we remember it (never answer a remembered success with 40163).
                if let Some(remembered) = self.remembered(&key, claim, false).await {
                    return remembered;
                }
                None
            }
            Err(_) => None,
        };
        let shared = match (&outcome, shared) {
            (Err(error), None) if is_definitive(error) && !logins.successes.contains_key(&key) => {
                logins.refusals.insert(key, error.clone());
                Some(Shared::Refused(error.clone()))
            }
            (_, shared) => shared,
        };
        if let Some(shared) = shared {
            let ttl = self.env.config.code_ttl;
            if let Err(error) = self
                .env
                .store
                .put_value_if_absent(&shared_name(&key), shared.encode(), ttl)
                .await
            {
                tracing::warn!(%error, "a login outcome could not be shared with the fleet");
            }
        }
        outcome
    }

    /// Exchanges the code with app `appid`'s credentials, then (for a real user, or a snapshot
    /// user when allowed) asks the login hook for the user id, then stores the session.
    async fn exchange(
        &self,
        appid: &AppId,
        flow: LoginFlow,
        code: &AuthCode,
        from: Option<LoginClient>,
    ) -> Outcome {
        let client = self
            .env
            .client_for(appid)
            .ok_or(LoginError::AppNotConfigured)?;
        let config = &self.env.config;
        let mut record = match flow {
            LoginFlow::MiniProgram => {
                let session = client.jscode2session(code).await.map_err(login_error)?;
                let now = self.env.clock.now();
                let lifetime = config.mini_program_session_ttl;
                let appid = appid.clone();
                SessionRecord::from_mini_program(SessionId::random(), appid, session, now, lifetime)
            }
            _ => {
                let grant = client.exchange_code(code).await.map_err(login_error)?;
                let now = self.env.clock.now();
                SessionRecord::from_grant(
                    SessionId::random(),
                    appid.clone(),
                    grant,
                    now,
                    config.refresh_horizon,
                )
            }
        };
        record.client = from.map(Box::new);
        if record.snapshot_user && !config.snapshot_sessions {
            tracing::info!(
                outcome = "snapshot_user",
                "a snapshot-mode virtual user gets no session"
            );
            return Err(LoginError::SnapshotUser);
        }
        self.open_session(record, flow).await
    }

    /// Logs in the Official Account `appid`'s user `openid`, whom a verified push reported
    /// (see [`SessionManager::login_scanned`](crate::SessionManager::login_scanned)).
    pub(crate) async fn login_scanned(
        &self,
        appid: &AppId,
        openid: wechat_oauth::OpenId,
        unionid: Option<wechat_oauth::UnionId>,
        from: Option<LoginClient>,
    ) -> Outcome {
        if self.env.client_for(appid).is_none() {
            return Err(LoginError::AppNotConfigured);
        }
        let now = self.env.clock.now();
        let lifetime = self.env.config.scan_session_ttl;
        let mut record = SessionRecord::from_scan(
            SessionId::random(),
            appid.clone(),
            openid,
            unionid,
            now,
            lifetime,
        );
        record.client = from.map(Box::new);
        let outcome = self.open_session(record, LoginFlow::Scan).await;
        if outcome.is_err() {
            login_metric(appid, LoginFlow::Scan, login_outcome(&outcome));
        }
        outcome
    }

    /// Opens the session of a login WeChat vouched for: asks the login hook for the user id
    /// (if there is a hook), then stores the record.
    async fn open_session(&self, mut record: SessionRecord, flow: LoginFlow) -> Outcome {
        let appid = record.appid.clone();
        if let Some(hook) = &self.env.hook {
            let login = NewLogin {
                appid: &appid,
                flow,
                openid: &record.openid,
                unionid: record.unionid.as_ref(),
                scopes: &record.scopes,
                snapshot_user: record.snapshot_user,
            };
            match hook.user_id(login).await {
                Ok(user_id) => record.user_id = user_id,
                Err(error) => {
                    tracing::info!(outcome = "hook_refused", error = %error, "the login hook gave no user id; nothing stored");
                    return Err(error.into());
                }
            }
        }
        let stored = match self.env.store.insert(record.clone()).await {
            // 128 random bits do not collide; if the generator misbehaves, try one other id.
            Err(StoreError::AlreadyExists) => {
                let mut again = record;
                again.sid = SessionId::random();
                self.env.store.insert(again).await?
            }
            other => other?,
        };
        if let Credentials::MiniProgram { session_key } = &stored.credentials {
            // The newest wx.login's key is the one the client's data is sealed under from now
            // on, for this user's older sessions too.
            self.keys
                .remember(self.env, &stored.appid, &stored.openid, session_key)
                .await;
        }
        login_metric(&appid, flow, "logged_in");
        tracing::info!(sid = %stored.sid, outcome = "logged_in", ?flow, "new session");
        Ok(stored)
    }
}

fn login_error(error: wechat_oauth::Error) -> LoginError {
    match (error.class(), error.errcode()) {
        (ErrorClass::Misconfigured, Some(errcode)) => {
            tracing::error!(errcode = errcode.0, error = %error, "WeChat rejected this server's configuration: check the AppID and AppSecret");
            LoginError::Misconfigured { errcode }
        }
        (ErrorClass::Denied, Some(errcode)) => LoginError::Denied { errcode },
        (ErrorClass::Retryable, _) | (_, None) => {
            tracing::warn!(error = %error, outcome = "upstream_unavailable", "code exchange failed transiently");
            LoginError::Unavailable {
                retry_after: error.retry_after().unwrap_or(Duration::from_secs(1)),
            }
        }
        (_, Some(errcode)) => {
            tracing::debug!(
                errcode = errcode.0,
                outcome = "invalid_code",
                "WeChat rejected the login code"
            );
            LoginError::InvalidCode { errcode }
        }
    }
}

/// Decodes a shared login outcome and, if it decodes, checks that encoding is stable (for the
/// fuzz targets: never a panic, whatever the store holds).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_shared_outcome(bytes: &[u8]) {
    if let Some(decoded) = Shared::decode(bytes) {
        let once = decoded.encode();
        let again = Shared::decode(&once)
            .expect("an encoded outcome decodes")
            .encode();
        assert_eq!(once, again, "a shared login outcome re-encodes unchanged");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SessionManager;
    use wechat_mock::{Endpoint, MockConfig, MockGrant, MockWeChat};
    use wechat_oauth::{AppSecret, Client, ManualClock};

    #[tokio::test]
    async fn a_flight_looks_for_a_remembered_outcome_before_exchanging() {
        let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
        let client = Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
            .api_base(mock.base_url())
            .clock(Arc::new(ManualClock::new(mock.now())))
            .build()
            .unwrap();
        let cache = SessionManager::builder(client).build();
        let code = AuthCode::new(mock.mint_code(MockGrant::default()));
        let binding = LoginBinding::new(LoginFlow::Code).proof("request-0123456789");
        let session = cache.login_bound(&code, &binding).await.unwrap();
        // A submit that missed the remembered outcome just before the first flight landed, and
        // so starts a flight of its own, gets the same session without a second exchange...
        let login = cache.login_part();
        let logins = login.logins;
        let key = logins.code_key(mock.appid(), &code);
        let claim = logins.claim(&binding);
        let appid = AppId::new(mock.appid());
        let again = login
            .exchange_in_flight(&appid, key, claim, &code, None)
            .await
            .unwrap();
        assert_eq!(again.sid, session.sid);
        // ...and one from another client is refused there too.
        let stranger = logins.claim(&LoginBinding::new(LoginFlow::Code));
        assert!(matches!(
            login.exchange_in_flight(&appid, key, stranger, &code, None).await,
            Err(LoginError::InvalidCode { errcode }) if errcode == ErrCode::CODE_USED
        ));
        assert_eq!(mock.calls(Endpoint::AccessToken), 1);

        let junk = AuthCode::new("junk");
        assert!(cache.login(&junk).await.is_err());
        let key = logins.code_key(mock.appid(), &junk);
        assert!(matches!(
            login.exchange_in_flight(&appid, key, stranger, &junk, None).await,
            Err(LoginError::InvalidCode { errcode }) if errcode == ErrCode::INVALID_CODE
        ));
        assert_eq!(
            mock.calls(Endpoint::AccessToken),
            2,
            "the refusal was reused"
        );
    }
}
