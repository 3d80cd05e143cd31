//! Idempotent login: a code is exchanged at most once, however often it is submitted.
//!
//! Exchanges are single-flighted by a keyed hash of the code (HMAC-SHA256 under a per-process
//! random key; the code itself is never stored), and the outcome — the session, or WeChat's
//! definitive refusal — is remembered for the code's lifetime in a bounded cache. A repeat gets
//! the same session instead of WeChat's 40163. Transient failures are not remembered, so the
//! client may try again; the exchange itself is never retried automatically.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use moka::sync::Cache;
use sha2::Sha256;
use wechat_oauth::{AuthCode, ErrorClass};

use crate::cache::{CacheConfig, TokenCache};
use crate::error::LoginError;
use crate::flight::Flights;
use crate::record::{SessionId, SessionRecord};
use crate::store::{StoreError, TokenStore};

type CodeKey = [u8; 32];
type Outcome = Result<Arc<SessionRecord>, LoginError>;

/// Which exchange a code is for (the same string at two endpoints is two codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exchange {
    OAuth,
    MiniProgram,
}

pub(crate) struct Logins {
    key: [u8; 32],
    remembered: Cache<CodeKey, Outcome>,
    flights: Arc<Flights<CodeKey, Outcome>>,
}

impl Logins {
    pub(crate) fn new(config: &CacheConfig) -> Self {
        Self {
            key: rand::random(),
            remembered: Cache::builder()
                .max_capacity(config.remembered_logins)
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

impl<S: TokenStore> TokenCache<S> {
    /// Logs in with a code from a mobile app, website or Official Account page: exchanges it
    /// (once, however often it is submitted within its lifetime) and stores a new session.
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
        let logins = &self.inner().logins;
        let key = logins.code_key(exchange, code);
        if let Some(outcome) = logins.remembered.get(&key) {
            tracing::debug!(
                outcome = "remembered",
                "login code seen before; same outcome"
            );
            return outcome;
        }
        let cache = self.clone();
        let code = code.clone();
        logins
            .flights
            .run(key, move || async move {
                let outcome = cache.exchange(exchange, &code).await;
                let definitive = match &outcome {
                    Ok(_) | Err(LoginError::InvalidCode { .. } | LoginError::Denied { .. }) => true,
                    Err(_) => false,
                };
                if definitive {
                    cache.inner().logins.remembered.insert(key, outcome.clone());
                }
                outcome
            })
            .await
            .unwrap_or(Err(LoginError::Unavailable {
                retry_after: Duration::from_secs(1),
            }))
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
