//! The Mini Program calls made with the app access token: phone numbers, the session key's
//! check and reset, and each user's newest session key.
//!
//! A Mini Program user's session key changes with every `wx.login` (and with a reset); the
//! newest one is remembered per (app, openid), in memory and in the store, so an older session
//! of the same user decrypts with the key the client's data is sealed under.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use wechat_oauth::{
    AppAccessToken, AppId, Client, ErrCode, OpenId, PhoneCode, PhoneInfo, SessionKey,
};

use crate::app_token::{AppTokenCalls, AppTokens};
use crate::config::SessionConfig;
use crate::env::Env;
use crate::error::{CallError, SessionError};
use wechat_session_store::{CasOutcome, SharedStore};
use wechat_session_store::{Credentials, SessionRecord};

/// Each Mini Program user's newest session key known to this instance, by (app, openid).
pub(crate) struct SessionKeys(Cache<(AppId, OpenId), SessionKey>);

impl SessionKeys {
    pub(crate) fn new(config: &SessionConfig) -> Self {
        Self(
            Cache::builder()
                .max_capacity(config.remembered_logins.max(1_000))
                // moka refuses lifetimes beyond 1,000 years; a session key outliving a year
                // is refreshed from the store or the session anyway.
                .time_to_live(
                    config
                        .mini_program_session_ttl
                        .min(Duration::from_secs(365 * 24 * 3600)),
                )
                .build(),
        )
    }
}

/// The store's name of a Mini Program user's newest session key.
fn session_key_key(appid: &AppId, openid: &OpenId) -> String {
    format!("sessionkey:{appid}:{openid}")
}

impl SessionKeys {
    /// See [`SessionManager::session_key`](crate::SessionManager::session_key).
    pub(crate) async fn newest<S: SharedStore>(
        &self,
        env: &Env<S>,
        record: &SessionRecord,
    ) -> Result<Option<SessionKey>, SessionError> {
        let Credentials::MiniProgram { session_key } = &record.credentials else {
            return Ok(None);
        };
        let key = (record.appid.clone(), record.openid.clone());
        match env
            .store
            .get_secret(&session_key_key(&record.appid, &record.openid))
            .await
        {
            Ok(Some(bytes)) => match String::from_utf8(bytes) {
                Ok(shared) if !shared.is_empty() => return Ok(Some(SessionKey::new(shared))),
                _ => tracing::warn!("a shared session key is malformed; using this instance's"),
            },
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "the shared session key could not be read; using this instance's")
            }
        }
        Ok(Some(
            self.0.get(&key).unwrap_or_else(|| session_key.clone()),
        ))
    }

    /// Remembers `key` as the user's newest session key in `appid`, here and in the store.
    pub(crate) async fn remember<S: SharedStore>(
        &self,
        env: &Env<S>,
        appid: &AppId,
        openid: &OpenId,
        key: &SessionKey,
    ) {
        self.0.insert((appid.clone(), openid.clone()), key.clone());
        if let Err(error) = env
            .store
            .put_secret(
                &session_key_key(appid, openid),
                key.secret().as_bytes().to_vec(),
                env.config.mini_program_session_ttl,
            )
            .await
        {
            tracing::warn!(%error, "the newest session key was not shared; other instances use theirs");
        }
    }
}

/// The Mini Program calls at work on one session (read and checked to be a Mini Program's by
/// the caller), with the app tokens and session keys they use.
pub(crate) struct MiniProgramCalls<'a, S> {
    pub(crate) env: &'a Arc<Env<S>>,
    pub(crate) tokens: &'a Arc<AppTokens>,
    pub(crate) keys: &'a SessionKeys,
    pub(crate) record: Arc<SessionRecord>,
}

impl<S: SharedStore> MiniProgramCalls<'_, S> {
    /// See [`SessionManager::phone_number`](crate::SessionManager::phone_number).
    pub(crate) async fn phone_number(&self, code: &PhoneCode) -> Result<PhoneInfo, CallError> {
        let client = self.client()?;
        self.app_tokens()
            .with_app_token(&self.record.appid, |token| {
                let client = client.clone();
                async move { client.phone_number(&token, code).await }
            })
            .await
    }

    /// See [`SessionManager::check_session_key`](crate::SessionManager::check_session_key).
    pub(crate) async fn check_session_key(&self) -> Result<(), CallError> {
        self.with_session_key(|client, token, openid, key| async move {
            client.check_session_key(&token, &openid, &key).await
        })
        .await
        .map(drop)
    }

    /// See [`SessionManager::reset_session_key`](crate::SessionManager::reset_session_key).
    pub(crate) async fn reset_session_key(&self) -> Result<(), CallError> {
        let new_key = self
            .with_session_key(|client, token, openid, key| async move {
                client.reset_session_key(&token, &openid, &key).await
            })
            .await?;
        let record = &self.record;
        self.keys
            .remember(self.env, &record.appid, &record.openid, &new_key)
            .await;
        // This session's own copy too, so it holds the key even after the shared one expires.
        let mut updated = (**record).clone();
        updated.credentials = Credentials::MiniProgram {
            session_key: new_key,
        };
        match self
            .env
            .store
            .compare_and_set(record.version, updated)
            .await
            .map_err(SessionError::from)?
        {
            CasOutcome::Stored(_) => {}
            CasOutcome::Conflict { .. } => {
                tracing::debug!(sid = %record.sid, "session changed during a key reset; the newest key is kept per user")
            }
        }
        Ok(())
    }

    fn client(&self) -> Result<Client, CallError> {
        Ok(self
            .env
            .client_for(&self.record.appid)
            .ok_or(SessionError::NotFound)?
            .clone())
    }

    fn app_tokens(&self) -> AppTokenCalls<'_, S> {
        AppTokenCalls {
            tokens: self.tokens,
            env: self.env,
        }
    }

    /// Calls WeChat with the session's user, newest session key and app token (renewed once
    /// if refused); 87009 is [`CallError::SessionKeyInvalid`].
    async fn with_session_key<T, F, Fut>(&self, call: F) -> Result<T, CallError>
    where
        F: Fn(Client, AppAccessToken, OpenId, SessionKey) -> Fut,
        Fut: Future<Output = Result<T, wechat_oauth::Error>>,
    {
        let client = self.client()?;
        let record = &self.record;
        let key = self
            .keys
            .newest(self.env, record)
            .await?
            .ok_or(CallError::NotPermitted)?;
        self.app_tokens()
            .with_app_token(&record.appid, |token| {
                call(client.clone(), token, record.openid.clone(), key.clone())
            })
            .await
            .map_err(session_key_error)
    }
}

/// 87009 from a session key call: the key is no longer the user's.
fn session_key_error(error: CallError) -> CallError {
    match error {
        CallError::Upstream(e) if e.errcode() == Some(ErrCode::INVALID_SESSION_KEY) => {
            CallError::SessionKeyInvalid
        }
        other => other,
    }
}
