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

use crate::cache::SessionCache;
use crate::config::SessionConfig;
use crate::error::{CallError, SessionError};
use crate::record::{Credentials, SessionId, SessionRecord};
use crate::store::{CasOutcome, SessionStore};

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

impl<S: SessionStore> SessionCache<S> {
    /// The phone number behind a Mini Program phone-number button's `code`, redeemed with the
    /// session's app. Only Mini Program sessions ([`CallError::NotPermitted`] otherwise).
    pub async fn phone_number(
        &self,
        sid: &SessionId,
        code: &PhoneCode,
    ) -> Result<PhoneInfo, CallError> {
        let (record, client) = self.mini_program_session(sid).await?;
        let appid = record.appid.clone();
        self.with_app_token(&appid, |token| {
            let client = client.clone();
            async move { client.phone_number(&token, code).await }
        })
        .await
    }

    /// Asks WeChat whether the session's user's newest session key is still valid
    /// (`checksession`). [`CallError::SessionKeyInvalid`] when WeChat says it is not (87009):
    /// the Mini Program must `wx.login` again.
    pub async fn check_session_key(&self, sid: &SessionId) -> Result<(), CallError> {
        self.with_session_key(sid, |client, token, openid, key| async move {
            client.check_session_key(&token, &openid, &key).await
        })
        .await
        .map(drop)
    }

    /// Replaces the session's user's session key at WeChat (`resetusersessionkey`) and keeps
    /// the new one (for this session and as the user's newest). The client's data produced
    /// before the reset no longer decrypts.
    pub async fn reset_session_key(&self, sid: &SessionId) -> Result<(), CallError> {
        let (record, new_key) = self
            .with_session_key(sid, |client, token, openid, key| async move {
                client.reset_session_key(&token, &openid, &key).await
            })
            .await?;
        self.remember_session_key(&record.appid, &record.openid, &new_key)
            .await;
        // This session's own copy too, so it holds the key even after the shared one expires.
        let mut updated = (*record).clone();
        updated.credentials = Credentials::MiniProgram {
            session_key: new_key,
        };
        match self
            .store()
            .compare_and_set(record.version, updated)
            .await
            .map_err(SessionError::from)?
        {
            CasOutcome::Stored(_) => {}
            CasOutcome::Conflict { .. } => {
                tracing::debug!(sid = %sid, "session changed during a key reset; the newest key is kept per user")
            }
        }
        Ok(())
    }

    /// The session key data from this session's user is sealed under: the newest one known for
    /// the user in this app (a newer `wx.login` or a reset replaces it), else the session's
    /// own. `None` for sessions that are not Mini Program sessions.
    pub async fn session_key(
        &self,
        record: &SessionRecord,
    ) -> Result<Option<SessionKey>, SessionError> {
        let Credentials::MiniProgram { session_key } = &record.credentials else {
            return Ok(None);
        };
        let inner = self.inner();
        let key = (record.appid.clone(), record.openid.clone());
        match inner
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
            inner
                .session_keys
                .0
                .get(&key)
                .unwrap_or_else(|| session_key.clone()),
        ))
    }

    /// Remembers `key` as the user's newest session key in `appid`, here and in the store.
    pub(crate) async fn remember_session_key(
        &self,
        appid: &AppId,
        openid: &OpenId,
        key: &SessionKey,
    ) {
        let inner = self.inner();
        inner
            .session_keys
            .0
            .insert((appid.clone(), openid.clone()), key.clone());
        if let Err(error) = inner
            .store
            .put_secret(
                &session_key_key(appid, openid),
                key.secret().as_bytes().to_vec(),
                inner.config.mini_program_session_ttl,
            )
            .await
        {
            tracing::warn!(%error, "the newest session key was not shared; other instances use theirs");
        }
    }

    /// Calls WeChat with a Mini Program session's user, newest session key and app token
    /// (renewed once if refused); 87009 is [`CallError::SessionKeyInvalid`]. Returns the
    /// session as read, with the answer.
    async fn with_session_key<T, F, Fut>(
        &self,
        sid: &SessionId,
        call: F,
    ) -> Result<(Arc<SessionRecord>, T), CallError>
    where
        F: Fn(Client, AppAccessToken, OpenId, SessionKey) -> Fut,
        Fut: Future<Output = Result<T, wechat_oauth::Error>>,
    {
        let (record, client) = self.mini_program_session(sid).await?;
        let key = self
            .session_key(&record)
            .await?
            .ok_or(CallError::NotPermitted)?;
        let answer = self
            .with_app_token(&record.appid, |token| {
                call(client.clone(), token, record.openid.clone(), key.clone())
            })
            .await
            .map_err(session_key_error)?;
        Ok((record, answer))
    }

    async fn mini_program_session(
        &self,
        sid: &SessionId,
    ) -> Result<(Arc<SessionRecord>, Client), CallError> {
        let record = self.session(sid).await?;
        if !matches!(record.credentials, Credentials::MiniProgram { .. }) {
            return Err(CallError::NotPermitted);
        }
        let client = self
            .client_for(&record.appid)
            .ok_or(SessionError::NotFound)?
            .clone();
        Ok((record, client))
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
