//! [`WeChatUser`]: who is calling, as the layer attaches it to each request, and the axum
//! extractors that read it.
//!
//! `WeChatUser` as an extractor answers 401 when there is no user and 500 (`missing_layer`)
//! when no layer runs in front of the handler; `Option<WeChatUser>` is `None` when no
//! credentials were sent and an error when bad ones were.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use wechat_oauth::{
    AccessToken, AppId, EncryptedData, ErrCode, Lang, OpenId, PhoneCode, PhoneInfo, Scopes,
    SessionKey, UnionId, UserInfo, decrypt_user_data,
};
use wechat_sessions::{
    CallError, SessionError, SessionId, SessionManager, SessionRecord, SharedStore, UserId,
};

use crate::apps::{AppKind, Apps};
use crate::rejection::AuthError;
use crate::token::KeptToken;

/// Calls WeChat for a user through the token cache, and knows the apps (object-safe, so
/// `WeChatUser` is not generic over the store).
pub(crate) trait Upstream: Send + Sync + 'static {
    fn kind_of(&self, appid: &AppId) -> Option<AppKind>;
    /// The cache's clock.
    fn now(&self) -> std::time::SystemTime;
    fn userinfo(
        &self,
        sid: SessionId,
        lang: Lang,
    ) -> BoxFuture<'static, Result<UserInfo, CallError>>;
    fn access_token(&self, sid: SessionId) -> BoxFuture<'static, Result<AccessToken, CallError>>;
    /// The newest session key of the record's user (Mini Program sessions only).
    fn session_key(
        &self,
        record: Arc<SessionRecord>,
    ) -> BoxFuture<'static, Result<Option<SessionKey>, SessionError>>;
    fn phone_number(
        &self,
        sid: SessionId,
        code: PhoneCode,
    ) -> BoxFuture<'static, Result<PhoneInfo, CallError>>;
    fn check_session_key(&self, sid: SessionId) -> BoxFuture<'static, Result<(), CallError>>;
    fn reset_session_key(&self, sid: SessionId) -> BoxFuture<'static, Result<(), CallError>>;
}

/// An upstream for tests that keep a user's session and never call WeChat for it.
#[cfg(test)]
pub(crate) fn offline() -> Arc<dyn Upstream> {
    struct Offline;
    impl Upstream for Offline {
        fn kind_of(&self, _: &AppId) -> Option<AppKind> {
            None
        }
        fn now(&self) -> std::time::SystemTime {
            std::time::SystemTime::now()
        }
        fn userinfo(
            &self,
            _: SessionId,
            _: Lang,
        ) -> BoxFuture<'static, Result<UserInfo, CallError>> {
            unreachable!("offline")
        }
        fn access_token(&self, _: SessionId) -> BoxFuture<'static, Result<AccessToken, CallError>> {
            unreachable!("offline")
        }
        fn session_key(
            &self,
            _: Arc<SessionRecord>,
        ) -> BoxFuture<'static, Result<Option<SessionKey>, SessionError>> {
            unreachable!("offline")
        }
        fn phone_number(
            &self,
            _: SessionId,
            _: PhoneCode,
        ) -> BoxFuture<'static, Result<PhoneInfo, CallError>> {
            unreachable!("offline")
        }
        fn check_session_key(&self, _: SessionId) -> BoxFuture<'static, Result<(), CallError>> {
            unreachable!("offline")
        }
        fn reset_session_key(&self, _: SessionId) -> BoxFuture<'static, Result<(), CallError>> {
            unreachable!("offline")
        }
    }
    Arc::new(Offline)
}

/// What a [`WeChatUser`] reaches: the sessions and the apps.
pub(crate) struct UserContext<S> {
    pub(crate) cache: SessionManager<S>,
    pub(crate) apps: Apps,
}

impl<S: SharedStore> Upstream for UserContext<S> {
    fn kind_of(&self, appid: &AppId) -> Option<AppKind> {
        self.apps.kind_of(appid)
    }

    fn now(&self) -> std::time::SystemTime {
        self.cache.clock().now()
    }

    fn userinfo(
        &self,
        sid: SessionId,
        lang: Lang,
    ) -> BoxFuture<'static, Result<UserInfo, CallError>> {
        let cache = self.cache.clone();
        Box::pin(async move { cache.userinfo(&sid, lang).await })
    }

    fn access_token(&self, sid: SessionId) -> BoxFuture<'static, Result<AccessToken, CallError>> {
        let cache = self.cache.clone();
        Box::pin(async move {
            let record = cache.fresh(&sid, Duration::from_secs(60)).await?;
            record
                .access_token()
                .map(|(token, _)| token.clone())
                .ok_or(CallError::NotPermitted)
        })
    }

    fn session_key(
        &self,
        record: Arc<SessionRecord>,
    ) -> BoxFuture<'static, Result<Option<SessionKey>, SessionError>> {
        let cache = self.cache.clone();
        Box::pin(async move { cache.session_key(&record).await })
    }

    fn phone_number(
        &self,
        sid: SessionId,
        code: PhoneCode,
    ) -> BoxFuture<'static, Result<PhoneInfo, CallError>> {
        let cache = self.cache.clone();
        Box::pin(async move { cache.phone_number(&sid, &code).await })
    }

    fn check_session_key(&self, sid: SessionId) -> BoxFuture<'static, Result<(), CallError>> {
        let cache = self.cache.clone();
        Box::pin(async move { cache.check_session_key(&sid).await })
    }

    fn reset_session_key(&self, sid: SessionId) -> BoxFuture<'static, Result<(), CallError>> {
        let cache = self.cache.clone();
        Box::pin(async move { cache.reset_session_key(&sid).await })
    }
}

/// The authenticated WeChat user of a request. Cheap to clone (one `Arc` on a warm request,
/// two otherwise).
#[derive(Clone)]
pub struct WeChatUser(Session);

/// The user's session, as the layer found it, and what its calls to WeChat go through.
#[derive(Clone)]
enum Session {
    /// Read from the store.
    Record {
        record: Arc<SessionRecord>,
        upstream: Arc<dyn Upstream>,
    },
    /// Kept beside the request's token, with the layer's upstream: one shared slot. The openid
    /// is read from it, so a warm request whose handler reads only that reaches nothing else of
    /// the user, and the user costs one reference count wherever it is cloned or dropped.
    Kept(KeptToken),
}

impl fmt::Debug for WeChatUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeChatUser")
            .field("openid", self.openid())
            .field("unionid", &self.record().unionid)
            .field("user_id", &self.record().user_id)
            .field("appid", &self.record().appid)
            .field("scopes", &self.record().scopes)
            .field("session_id", &self.record().sid)
            .field("snapshot_user", &self.record().snapshot_user)
            .finish()
    }
}

impl WeChatUser {
    pub(crate) fn new(record: Arc<SessionRecord>, upstream: Arc<dyn Upstream>) -> Self {
        Self(Session::Record { record, upstream })
    }

    /// The user of a session kept beside the request's token.
    pub(crate) fn kept(kept: KeptToken) -> Self {
        Self(Session::Kept(kept))
    }

    fn record(&self) -> &Arc<SessionRecord> {
        match &self.0 {
            Session::Record { record, .. } => record,
            Session::Kept(kept) => &kept.kept().record,
        }
    }

    fn upstream(&self) -> &dyn Upstream {
        match &self.0 {
            Session::Record { upstream, .. } => &**upstream,
            Session::Kept(kept) => &*kept.kept().upstream,
        }
    }

    /// The user within the application.
    pub fn openid(&self) -> &OpenId {
        match &self.0 {
            Session::Record { record, .. } => &record.openid,
            Session::Kept(kept) => &kept.kept().openid,
        }
    }

    /// The user across bound applications, when WeChat sent it.
    pub fn unionid(&self) -> Option<&UnionId> {
        self.record().unionid.as_ref()
    }

    /// The app the user logged in to.
    pub fn appid(&self) -> &AppId {
        &self.record().appid
    }

    /// The kind of app the user logged in to (`None` only for a session of an app that this
    /// layer serves under no kind, which its builder cannot make).
    pub fn app_kind(&self) -> Option<AppKind> {
        self.upstream().kind_of(&self.record().appid)
    }

    /// The application's user: what the login hook returned, else the unionid, else
    /// `<appid>:<openid>`. The same across the application's apps for one person.
    pub fn user_id(&self) -> &UserId {
        &self.record().user_id
    }

    /// Opens data this Mini Program user's client sent (`encryptedData` + `iv`, with
    /// `rawData` + `signature` when given) with the user's session key, which never leaves
    /// the server — the newest one known for the user in this app, so a newer `wx.login` (on
    /// any instance) replaces the key for this older session too. The plaintext JSON once its
    /// watermark names this session's app and is at most `max_age` old. Failures are 400
    /// `invalid_encrypted_data`, the message naming the usual cause (a newer `wx.login` this
    /// server has not seen); a session of another kind of app holds no session key (400
    /// `invalid_request`).
    pub async fn decrypt(
        &self,
        data: &EncryptedData<'_>,
        max_age: Duration,
    ) -> Result<serde_json::Value, AuthError> {
        let Some(session_key) = self
            .upstream()
            .session_key(Arc::clone(self.record()))
            .await?
        else {
            return Err(AuthError::BadRequest(
                "only a Mini Program session holds a session key",
            ));
        };
        decrypt_user_data(
            &session_key,
            data,
            &self.record().appid,
            self.upstream().now(),
            max_age,
        )
        .map_err(AuthError::InvalidEncryptedData)
    }

    /// The phone number behind a phone-number button's `code` (`getuserphonenumber`, with the
    /// app's access token, renewed once if WeChat refuses it). A used, expired or another
    /// app's code is 400 `invalid_phone_code`; a session that is not a Mini Program's is 403
    /// `scope_insufficient`.
    pub async fn phone_number(&self, code: PhoneCode) -> Result<PhoneInfo, AuthError> {
        self.upstream()
            .phone_number(self.record().sid, code)
            .await
            .map_err(|error| match error {
                CallError::Upstream(e) if e.errcode() == Some(ErrCode::INVALID_CODE) => {
                    AuthError::InvalidPhoneCode
                }
                other => other.into(),
            })
    }

    /// Asks WeChat whether the user's session key is still valid (`checksession`). When it is
    /// not (the client called `wx.login` again, and this server never saw that login) the
    /// answer is 401 `session_key_expired`: the client must `wx.login` and log in again.
    pub async fn check_session_key(&self) -> Result<(), AuthError> {
        Ok(self.upstream().check_session_key(self.record().sid).await?)
    }

    /// Replaces the user's session key at WeChat (`resetusersessionkey`) and keeps the new one
    /// on the server. Data the client obtained before the reset no longer decrypts.
    pub async fn reset_session_key(&self) -> Result<(), AuthError> {
        Ok(self.upstream().reset_session_key(self.record().sid).await?)
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.record().scopes
    }

    /// This login's session id.
    pub fn session_id(&self) -> SessionId {
        self.record().sid
    }

    /// Whether this is WeChat's "snapshot mode" virtual user (its ids are not the real user's).
    pub fn is_snapshot_user(&self) -> bool {
        self.record().snapshot_user
    }

    /// The user's WeChat profile (`/sns/userinfo`) with a fresh token, refreshing and retrying
    /// once if WeChat refuses the token. 403 `scope_insufficient` for `snsapi_base` grants,
    /// snapshot users and Mini Program sessions (without a re-authorization URL: an Official
    /// Account page adds [`LoginEndpoints::reauthorize_url`](crate::LoginEndpoints::reauthorize_url)).
    pub async fn userinfo(&self, lang: Lang) -> Result<UserInfo, AuthError> {
        Ok(self.upstream().userinfo(self.record().sid, lang).await?)
    }

    /// A WeChat access token valid for at least a minute, for calling other WeChat APIs on the
    /// user's behalf. Keep it on the server.
    pub async fn access_token(&self) -> Result<AccessToken, AuthError> {
        Ok(self.upstream().access_token(self.record().sid).await?)
    }
}

/// Put in the request's extensions by an optional-mode layer when a token verified but its
/// session could not be served (ended, WeChat or the store unavailable): logout still knows
/// which session to end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VerifiedSession(pub(crate) SessionId);

/// Put in the request's extensions by an optional-mode layer when no credentials were sent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Anonymous;

#[cfg(feature = "axum")]
mod extract {
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use http::request::Parts;

    use super::{Anonymous, WeChatUser};
    use crate::rejection::{AuthError, Rejection};

    #[inline]
    fn lookup(parts: &Parts) -> Result<Option<WeChatUser>, AuthError> {
        if let Some(user) = parts.extensions.get::<WeChatUser>() {
            return Ok(Some(user.clone()));
        }
        if let Some(error) = parts.extensions.get::<AuthError>() {
            return Err(error.clone());
        }
        if parts.extensions.get::<Anonymous>().is_some() {
            return Ok(None);
        }
        Err(AuthError::MissingLayer)
    }

    /// Refusals answer with the layer's rejection (a custom one included).
    impl<S: Send + Sync> FromRequestParts<S> for WeChatUser {
        type Rejection = Rejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            lookup(parts)
                .and_then(|user| user.ok_or(AuthError::MissingToken))
                .map_err(|error| Rejection::new(error, &parts.extensions))
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for WeChatUser {
        type Rejection = Rejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            lookup(parts).map_err(|error| Rejection::new(error, &parts.extensions))
        }
    }
}
