//! "Where you're logged in": a user's own sessions as they may see them ([`UserSessions`],
//! rendered as JSON), and ending one of them by id — only ever one of the user's own.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use serde::Serialize;
use wechat_oauth::clock::unix_secs;
use wechat_sessions::{SessionId, SessionRecord, SharedStore};

use super::LoginEndpoints;
use crate::apps::{AppKind, Apps};
use crate::rejection::AuthError;
use crate::user::WeChatUser;

/// A user's live sessions, the most recently confirmed first, and which one is asking.
#[derive(Clone, Debug)]
pub struct UserSessions {
    /// Each session (see [`SessionRecord::client`] for where it came from).
    pub sessions: Vec<Arc<SessionRecord>>,
    /// The session of the request that asked.
    pub current: SessionId,
    /// When the list was read, by the layer's clock (for "5 minutes ago").
    pub as_of: SystemTime,
    apps: Apps,
}

#[derive(Serialize)]
struct ListBody<'a> {
    sessions: Vec<SessionBody<'a>>,
}

/// One session as its user sees it: never a credential.
#[derive(Serialize)]
struct SessionBody<'a> {
    id: String,
    current: bool,
    app: &'static str,
    appid: &'a str,
    created_at: u64,
    last_confirmed_at: u64,
    user_agent: Option<&'a str>,
    network: Option<&'a str>,
}

impl UserSessions {
    /// The kind of app a session is of.
    pub fn app_of(&self, record: &SessionRecord) -> Option<AppKind> {
        self.apps.kind_of(&record.appid)
    }

    /// `{"sessions":[{"id","current","app","appid","created_at","last_confirmed_at",
    /// "user_agent","network"}]}`, times in Unix seconds; `user_agent` and `network` are
    /// `null` when the login did not record them.
    pub fn to_json(&self) -> Bytes {
        let body = ListBody {
            sessions: self
                .sessions
                .iter()
                .map(|record| {
                    let client = record.client.as_deref();
                    SessionBody {
                        id: record.sid.to_string(),
                        current: record.sid == self.current,
                        app: self.app_of(record).map_or("", AppKind::as_str),
                        appid: record.appid.as_str(),
                        created_at: unix_secs(record.created_at),
                        last_confirmed_at: unix_secs(record.confirmed_at),
                        user_agent: client.and_then(|c| c.user_agent()),
                        network: client.and_then(|c| c.network()),
                    }
                })
                .collect(),
        };
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

impl<St: SharedStore> LoginEndpoints<St> {
    /// The live sessions of `user` (in every app of this layer), the most recently confirmed
    /// first, with `user`'s own marked current.
    pub async fn sessions(&self, user: &WeChatUser) -> Result<UserSessions, AuthError> {
        let sessions = self
            .inner
            .cache
            .user_sessions(user.user_id())
            .await
            .map_err(|error| {
                tracing::error!(%error, "a user's sessions could not be listed: the session store is unavailable");
                AuthError::StoreUnavailable
            })?;
        let sessions = sessions
            .into_iter()
            .filter(|record| self.inner.cache.serves(record))
            .collect();
        Ok(UserSessions {
            sessions,
            current: user.session_id(),
            as_of: self.inner.cache.clock().now(),
            apps: self.inner.apps.clone(),
        })
    }

    /// Ends the session `id` names if it is one of `user`'s (the current one included): 404
    /// [`AuthError::SessionNotFound`] when `user` has no session with this id — none at all,
    /// or another user's, which is left alone — or the id is malformed.
    pub async fn logout_own_session(&self, user: &WeChatUser, id: &str) -> Result<(), AuthError> {
        let sid: SessionId = id.parse().map_err(|_| AuthError::SessionNotFound)?;
        let ended = self
            .inner
            .cache
            .logout_user_session(user.user_id(), &sid)
            .await
            .map_err(|error| {
                tracing::error!(%error, "a session could not be ended: the session store is unavailable");
                AuthError::StoreUnavailable
            })?;
        if !ended {
            tracing::warn!(
                outcome = "not_own_session",
                "a user asked to end a session that is not theirs"
            );
            return Err(AuthError::SessionNotFound);
        }
        tracing::info!(sid = %sid, outcome = "logged_out", "session ended by its user from the list");
        Ok(())
    }
}
