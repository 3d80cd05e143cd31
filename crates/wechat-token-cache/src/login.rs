//! Idempotent login: a code is exchanged at most once, however often it is submitted.
//!
//! Exchanges are single-flighted by a keyed hash of the code (HMAC-SHA256 under a per-process
//! random key; the code itself is never stored), and the outcome is remembered for the code's
//! lifetime, in two bounded LRU caches so that a flood of junk codes cannot evict real logins:
//!
//! - successes remember only the [`SessionId`]; a repeat reloads the session from the store (a
//!   record goes stale, and it holds tokens), and gets WeChat's own answer, 40163 "code used",
//!   once that session has ended (logged out);
//! - refusals remember WeChat's definitive answers about the code (40029, 40163, 42003) or the
//!   user (denied), in a smaller cache. Unknown errcodes and transient failures are not
//!   remembered, so the client may try again; the exchange itself is never retried
//!   automatically.
//!
//! The remembered outcome is consulted before joining a flight and again inside it (a submit
//! that just missed the first flight's answer must not exchange the code again), and a 40163
//! from WeChat is answered with the remembered session when there is one. A remembered success
//! is never replaced by an error.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use sha2::Sha256;
use wechat_oauth::{AuthCode, ErrCode, ErrorClass};

use crate::cache::{CacheConfig, TokenCache};
use crate::error::LoginError;
use crate::flight::Flights;
use crate::record::{SessionId, SessionRecord};
use crate::store::{StoreError, TokenStore};

type CodeKey = [u8; 32];
type Outcome = Result<Arc<SessionRecord>, LoginError>;

/// Refusals are remembered in a cache this fraction of the successes' capacity...
const REFUSALS_PER_SUCCESS: u64 = 10;
/// ...but never fewer than this many.
const MIN_REMEMBERED_REFUSALS: u64 = 1_000;

/// Which exchange a code is for (the same string at two endpoints is two codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exchange {
    OAuth,
    MiniProgram,
}

pub(crate) struct Logins {
    key: [u8; 32],
    /// Codes that logged in, and the session they made.
    successes: Cache<CodeKey, SessionId>,
    /// Codes WeChat refused for good.
    refusals: Cache<CodeKey, LoginError>,
    flights: Arc<Flights<CodeKey, Outcome>>,
}

impl Logins {
    pub(crate) fn new(config: &CacheConfig) -> Self {
        let refusal_capacity =
            (config.remembered_logins / REFUSALS_PER_SUCCESS).max(MIN_REMEMBERED_REFUSALS);
        Self {
            key: rand::random(),
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
            flights: Arc::default(),
        }
    }

    fn code_key(&self, exchange: Exchange, code: &AuthCode) -> CodeKey {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(&[exchange as u8]);
        mac.update(code.secret().as_bytes());
        mac.finalize().into_bytes().into()
    }
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

impl<S: TokenStore> TokenCache<S> {
    /// Logs in with a code from a mobile app, website or Official Account page: exchanges it
    /// (once, however often it is submitted within its lifetime) and stores a new session.
    ///
    /// A repeat of a code that logged in answers with that session as it is now, or with
    /// [`LoginError::InvalidCode`] (errcode 40163, "code used") once it has ended.
    pub async fn login(&self, code: &AuthCode) -> Result<Arc<SessionRecord>, LoginError> {
        self.login_once(Exchange::OAuth, code).await
    }

    /// Logs in with a Mini Program `wx.login()` code via `jscode2session`. The session holds
    /// the session key (never returned) and has no refresh.
    pub async fn login_mini_program(
        &self,
        code: &AuthCode,
    ) -> Result<Arc<SessionRecord>, LoginError> {
        self.login_once(Exchange::MiniProgram, code).await
    }

    async fn login_once(&self, exchange: Exchange, code: &AuthCode) -> Outcome {
        let key = self.inner().logins.code_key(exchange, code);
        if let Some(outcome) = self.remembered(&key).await {
            return outcome;
        }
        let cache = self.clone();
        let code = code.clone();
        self.inner()
            .logins
            .flights
            .run(key, move || async move {
                cache.exchange_in_flight(key, exchange, &code).await
            })
            .await
            .unwrap_or(Err(LoginError::Unavailable {
                retry_after: Duration::from_secs(1),
            }))
    }

    /// The remembered outcome of a code, if any: a success reloaded from the store (ended →
    /// 40163), else a remembered refusal.
    async fn remembered(&self, key: &CodeKey) -> Option<Outcome> {
        let logins = &self.inner().logins;
        if let Some(sid) = logins.successes.get(key) {
            tracing::debug!(
                outcome = "remembered",
                "login code seen before; same session"
            );
            return Some(match self.store().get(&sid).await {
                Ok(Some(record)) => Ok(record),
                Ok(None) => Err(LoginError::InvalidCode {
                    errcode: ErrCode::CODE_USED,
                }),
                Err(e) => Err(LoginError::Store(e)),
            });
        }
        let refusal = logins.refusals.get(key)?;
        tracing::debug!(
            outcome = "remembered",
            "login code seen before; same refusal"
        );
        Some(Err(refusal))
    }

    /// The work of one flight: look again (an answer may have landed just before this flight
    /// took off), exchange, remember.
    async fn exchange_in_flight(
        &self,
        key: CodeKey,
        exchange: Exchange,
        code: &AuthCode,
    ) -> Outcome {
        if let Some(outcome) = self.remembered(&key).await {
            return outcome;
        }
        let outcome = self.exchange(exchange, code).await;
        let logins = &self.inner().logins;
        match &outcome {
            Ok(record) => logins.successes.insert(key, record.sid),
            Err(LoginError::InvalidCode {
                errcode: ErrCode::CODE_USED,
            }) => {
                // Used: by us, if we remember it (never answer a remembered success with 40163).
                if let Some(remembered) = self.remembered(&key).await {
                    return remembered;
                }
            }
            Err(_) => {}
        }
        if let Err(error) = &outcome
            && is_definitive(error)
            && !logins.successes.contains_key(&key)
        {
            logins.refusals.insert(key, error.clone());
        }
        outcome
    }

    async fn exchange(&self, exchange: Exchange, code: &AuthCode) -> Outcome {
        let (client, config) = (self.client(), self.config());
        let appid = client.appid().clone();
        let record = match exchange {
            Exchange::OAuth => {
                let grant = client.exchange_code(code).await.map_err(login_error)?;
                let now = self.clock().now();
                SessionRecord::from_grant(
                    SessionId::random(),
                    appid,
                    grant,
                    now,
                    config.refresh_horizon,
                )
            }
            Exchange::MiniProgram => {
                let session = client.jscode2session(code).await.map_err(login_error)?;
                let now = self.clock().now();
                let lifetime = config.mini_program_session_ttl;
                SessionRecord::from_mini_program(SessionId::random(), appid, session, now, lifetime)
            }
        };
        let stored = match self.store().insert(record.clone()).await {
            // 128 random bits do not collide; if the generator misbehaves, try one other id.
            Err(StoreError::AlreadyExists) => {
                let mut again = record;
                again.sid = SessionId::random();
                self.store().insert(again).await?
            }
            other => other?,
        };
        tracing::info!(sid = %stored.sid, outcome = "logged_in", kind = ?exchange, "new session");
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use wechat_mock::{Endpoint, MockConfig, MockGrant, MockWeChat};
    use wechat_oauth::{AppId, AppSecret, Client, ManualClock};

    #[tokio::test]
    async fn a_flight_looks_for_a_remembered_outcome_before_exchanging() {
        let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
        let client = Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
            .api_base(mock.base_url())
            .clock(Arc::new(ManualClock::new(mock.now())))
            .build()
            .unwrap();
        let cache = TokenCache::builder(client).build();
        let code = AuthCode::new(mock.mint_code(MockGrant::default()));
        let session = cache.login(&code).await.unwrap();
        // A submit that missed the remembered outcome just before the first flight landed, and
        // so starts a flight of its own, gets the same session without a second exchange.
        let key = cache.inner().logins.code_key(Exchange::OAuth, &code);
        let again = cache
            .exchange_in_flight(key, Exchange::OAuth, &code)
            .await
            .unwrap();
        assert_eq!(again.sid, session.sid);
        assert_eq!(mock.calls(Endpoint::AccessToken), 1);

        let junk = AuthCode::new("junk");
        assert!(cache.login(&junk).await.is_err());
        let key = cache.inner().logins.code_key(Exchange::OAuth, &junk);
        assert!(matches!(
            cache.exchange_in_flight(key, Exchange::OAuth, &junk).await,
            Err(LoginError::InvalidCode { errcode }) if errcode == ErrCode::INVALID_CODE
        ));
        assert_eq!(
            mock.calls(Endpoint::AccessToken),
            2,
            "the refusal was reused"
        );
    }
}
