//! [`WeChatAuth`]: the service. The hot path runs synchronously inside `call`: find the token
//! (borrowed), verify it (a cache hit for a token seen before), read the session record (the
//! moka store answers without waiting), attach the user, call the inner service. Only when the
//! store must be waited on or WeChat must be asked (refresh, check) does a request take the boxed
//! slow path.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::SET_COOKIE;
use http::{HeaderValue, Request, Response};
use tower_service::Service;
use wechat_token_cache::{SessionError, SessionId, SessionRecord, TokenStore};

use super::future::{Reissue, ResponseFuture};
use super::layer::{Mode, Shared, WeChatAuthLayer};
use super::source::{self, REISSUED_TOKEN_HEADER, SentBy};
use crate::rejection::{AuthError, RejectionResponse, Render};
use crate::token::{VerifiedToken, unix};
use crate::user::{Anonymous, VerifiedSession, WeChatUser};

/// The middleware service made by [`WeChatAuthLayer`].
pub struct WeChatAuth<S, St, R> {
    inner: S,
    layer: WeChatAuthLayer<St, R>,
}

impl<S: Clone, St, R: Clone> Clone for WeChatAuth<S, St, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: std::fmt::Debug, St, R> std::fmt::Debug for WeChatAuth<S, St, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WeChatAuth")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, St, R> WeChatAuth<S, St, R> {
    pub(crate) fn new(inner: S, layer: WeChatAuthLayer<St, R>) -> Self {
        Self { inner, layer }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the middleware.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The layer this service was made by.
    pub fn layer(&self) -> &WeChatAuthLayer<St, R> {
        &self.layer
    }
}

/// A refused request: why, and what is known of the token that was sent.
struct Refusal {
    error: AuthError,
    /// The session the token named, when it verified.
    sid: Option<SessionId>,
    /// How the token was sent, when one was found.
    sent_by: Option<SentBy>,
}

impl Refusal {
    fn new(error: AuthError) -> Self {
        Self {
            error,
            sid: None,
            sent_by: None,
        }
    }
}

/// What the synchronous part of authentication decided.
enum Step {
    Ready(WeChatUser, Option<Reissue>),
    Anonymous,
    Refused(Refusal),
    /// The token is valid but the session needs the store or WeChat first.
    Slow(VerifiedToken, SentBy),
}

impl<St: TokenStore> Shared<St> {
    fn authenticate(&self, headers: &http::HeaderMap) -> Step {
        let (token, sent_by) = match source::find(headers, &self.sources, &self.cookie_name) {
            Ok(Some(found)) => found,
            Ok(None) => return Step::Anonymous,
            Err((error, sent_by)) => {
                return Step::Refused(Refusal {
                    sent_by: Some(sent_by),
                    ..Refusal::new(error)
                });
            }
        };
        // One clock read serves the whole request.
        let now = self.cache.clock().now();
        let verified = match sent_by {
            SentBy::Cookies => self.verify_one_cookie(headers, unix(now)),
            _ => self.tokens.verify_at(token, unix(now)),
        };
        let verified = match verified {
            Ok(verified) => verified,
            Err(error) => {
                // Several cookies and not exactly one verifies: which is ours cannot be told,
                // so none is cleared (clearing could delete the user's own).
                let sent_by = (sent_by != SentBy::Cookies).then_some(sent_by);
                return Step::Refused(Refusal {
                    sent_by,
                    ..Refusal::new(error)
                });
            }
        };
        let sent_by = match sent_by {
            SentBy::Cookies => SentBy::Cookie,
            other => other,
        };
        let refused = |error| {
            Step::Refused(Refusal {
                error,
                sid: Some(verified.sid),
                sent_by: Some(sent_by),
            })
        };
        match self.cache.store().get_now(&verified.sid) {
            Some(Ok(Some(record))) if !self.belongs(&record) => refused(AuthError::SessionExpired),
            Some(Ok(Some(record))) if !self.cache.needs_upstream_at(&record, now) => {
                let (user, reissue) = self.admit(record, verified, sent_by, unix(now));
                Step::Ready(user, reissue)
            }
            Some(Ok(None)) => refused(AuthError::SessionExpired),
            Some(Err(error)) => refused(SessionError::Store(error).into()),
            _ => Step::Slow(verified, sent_by),
        }
    }

    /// Several session cookies were sent (one may have been tossed by a sibling domain): trust
    /// the one that verifies if exactly one does, else none.
    fn verify_one_cookie(
        &self,
        headers: &http::HeaderMap,
        now: u64,
    ) -> Result<crate::token::VerifiedToken, AuthError> {
        let mut verified = source::cookies(headers, &self.cookie_name)
            .filter_map(|token| self.tokens.verify_at(token.ok()?, now).ok());
        match (verified.next(), verified.next()) {
            (Some(one), None) => Ok(one),
            _ => {
                tracing::debug!(
                    outcome = "rejected",
                    "several session cookies, and not exactly one of them verifies"
                );
                Err(AuthError::InvalidToken)
            }
        }
    }

    /// Whether a session is this application's: a store shared by several apps (or a signing key
    /// shared between them) must not let one app's token into another.
    fn belongs(&self, record: &SessionRecord) -> bool {
        self.cache.serves(record)
    }

    /// For a session cookie that can never become valid again (malformed, oversized, forged,
    /// expired, ended, grant gone): a `Set-Cookie` that deletes it, so the browser stops
    /// sending it.
    fn clear_dead_cookie(&self, refusal: &Refusal) -> Option<Reissue> {
        let dead = matches!(
            refusal.error,
            AuthError::InvalidRequest
                | AuthError::InvalidToken
                | AuthError::TokenExpired
                | AuthError::SessionExpired
                | AuthError::ReauthRequired
        );
        if !dead || refusal.sent_by != Some(SentBy::Cookie) {
            return None;
        }
        Some(Reissue {
            name: SET_COOKIE,
            value: self.cookie.clear()?,
        })
    }

    /// The user for a live session, and a re-issued token if this one nears its end.
    fn admit(
        &self,
        record: Arc<SessionRecord>,
        verified: VerifiedToken,
        sent_by: SentBy,
        now: u64,
    ) -> (WeChatUser, Option<Reissue>) {
        let reissue = if self
            .tokens
            .should_reissue(verified.exp, record.expires_at, now)
        {
            self.reissue(&record, sent_by, now)
        } else {
            None
        };
        tracing::trace!(sid = %record.sid, outcome = "authenticated", reissued = reissue.is_some());
        (WeChatUser::new(record, Arc::clone(&self.upstream)), reissue)
    }

    fn reissue(&self, record: &SessionRecord, sent_by: SentBy, now: u64) -> Option<Reissue> {
        let issued = match self.tokens.renew(record) {
            Ok(issued) => issued,
            Err(error) => {
                tracing::error!(%error, "could not re-issue a session token");
                return None;
            }
        };
        tracing::debug!(sid = %record.sid, outcome = "reissued", "session token re-issued");
        match sent_by {
            SentBy::Cookie | SentBy::Cookies => Some(Reissue {
                name: SET_COOKIE,
                value: self
                    .cookie
                    .set(&issued.token, unix(issued.expires_at).saturating_sub(now))?,
            }),
            SentBy::Header => Some(Reissue {
                name: REISSUED_TOKEN_HEADER,
                value: HeaderValue::try_from(issued.token).ok()?,
            }),
        }
    }
}

impl<S, St, R, ReqB, ResB> Service<Request<ReqB>> for WeChatAuth<S, St, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    St: TokenStore,
    R: RejectionResponse<ResB>,
    ReqB: Send + 'static,
    ResB: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResB, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqB>) -> Self::Future {
        let shared = &self.layer.shared;
        match shared.authenticate(request.headers()) {
            Step::Ready(user, reissue) => {
                request.extensions_mut().insert(user);
                ResponseFuture::inner(self.inner.call(request), reissue)
            }
            Step::Anonymous => match self.layer.mode {
                Mode::Required => self.refuse(request, Refusal::new(AuthError::MissingToken)),
                Mode::Optional => {
                    request.extensions_mut().insert(Anonymous);
                    self.layer.hand_over_rejection(request.extensions_mut());
                    ResponseFuture::inner(self.inner.call(request), None)
                }
            },
            Step::Refused(refusal) => self.refuse(request, refusal),
            Step::Slow(verified, sent_by) => self.slow(request, verified, sent_by),
        }
    }
}

impl<St, R> WeChatAuthLayer<St, R> {
    /// Optional mode, no user attached: a custom rejection goes with the request, so the
    /// extractor and the login router answer with it (the default one they know).
    fn hand_over_rejection<B>(&self, extensions: &mut http::Extensions)
    where
        R: RejectionResponse<B>,
        B: 'static,
    {
        if let Some(render) = Render::of(&self.rejection) {
            extensions.insert(render);
        }
    }

    /// The rejection response, with the error in its extensions whatever `R` wrote.
    fn reject<B>(&self, error: &AuthError) -> Response<B>
    where
        R: RejectionResponse<B>,
    {
        let mut response = self.rejection.response(error);
        response.extensions_mut().insert(error.clone());
        response
    }
}

impl<S, St: TokenStore, R> WeChatAuth<S, St, R> {
    /// Required mode answers the rejection; optional mode hands the error (and the session the
    /// token named, for logout) to the handler. Either way a dead session cookie is cleared.
    fn refuse<ReqB, ResB>(
        &mut self,
        mut request: Request<ReqB>,
        refusal: Refusal,
    ) -> ResponseFuture<S::Future, ResB, S::Error>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>>,
        R: RejectionResponse<ResB>,
        ResB: 'static,
    {
        tracing::debug!(
            outcome = "rejected",
            reason = refusal.error.code(),
            "request refused"
        );
        let clear = self.layer.shared.clear_dead_cookie(&refusal);
        match self.layer.mode {
            Mode::Required => {
                let mut response = self.layer.reject(&refusal.error);
                if let Some(clear) = clear {
                    clear.apply(&mut response);
                }
                ResponseFuture::rejected(response)
            }
            Mode::Optional => {
                if let Some(sid) = refusal.sid {
                    request.extensions_mut().insert(VerifiedSession(sid));
                }
                request.extensions_mut().insert(refusal.error);
                self.layer.hand_over_rejection(request.extensions_mut());
                ResponseFuture::inner(self.inner.call(request), clear)
            }
        }
    }

    fn slow<ReqB, ResB>(
        &mut self,
        mut request: Request<ReqB>,
        verified: VerifiedToken,
        sent_by: SentBy,
    ) -> ResponseFuture<S::Future, ResB, S::Error>
    where
        S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Send + 'static,
        R: RejectionResponse<ResB>,
        ReqB: Send + 'static,
        ResB: Send + 'static,
    {
        // The service that was polled ready is the one that is called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        ResponseFuture::slow(Box::pin(async move {
            let shared = &layer.shared;
            // Whose session it is comes first: another app's is never refreshed with ours.
            let session = match shared.cache.store().get(&verified.sid).await {
                Ok(Some(record)) if !shared.belongs(&record) => Err(SessionError::NotFound),
                Ok(Some(record)) if !shared.cache.needs_upstream(&record) => Ok(record),
                Ok(None) => Err(SessionError::NotFound),
                Err(error) => Err(SessionError::Store(error)),
                Ok(Some(_)) => shared.cache.session(&verified.sid).await,
            };
            match session {
                Ok(record) => {
                    let now = unix(shared.cache.clock().now());
                    let (user, reissue) = shared.admit(record, verified, sent_by, now);
                    request.extensions_mut().insert(user);
                    let mut response = inner.call(request).await?;
                    if let Some(reissue) = reissue {
                        reissue.apply(&mut response);
                    }
                    Ok(response)
                }
                Err(error) => {
                    let refusal = Refusal {
                        error: AuthError::from(error),
                        sid: Some(verified.sid),
                        sent_by: Some(sent_by),
                    };
                    tracing::debug!(sid = %verified.sid, outcome = "rejected", reason = refusal.error.code(), "session refused");
                    let clear = shared.clear_dead_cookie(&refusal);
                    let mut response = match layer.mode {
                        Mode::Required => layer.reject(&refusal.error),
                        Mode::Optional => {
                            request
                                .extensions_mut()
                                .insert(VerifiedSession(verified.sid));
                            request.extensions_mut().insert(refusal.error);
                            layer.hand_over_rejection(request.extensions_mut());
                            inner.call(request).await?
                        }
                    };
                    if let Some(clear) = clear {
                        clear.apply(&mut response);
                    }
                    Ok(response)
                }
            }
        }))
    }
}
