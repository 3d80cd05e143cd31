//! [`WeChatAuth`]: the service, thin as tower-http's are. The [`Authenticator`] decides; the
//! service carries the decision out. The hot path runs synchronously inside `call` (the
//! authenticator answers without waiting); only when the store must be waited on or WeChat
//! must be asked (refresh, check) does a request take the boxed slow path.
//!
//! [`Authenticator`]: super::authenticator::Authenticator

use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;
use wechat_sessions::SharedStore;

use super::authenticator::{Outcome, Refusal, Step};
use super::future::{Reissue, ResponseFuture};
use tower_layer::Layer;

use super::layer::{Mode, WeChatAuthLayer};
use crate::rejection::{AuthError, RejectionResponse, Render};
use crate::user::{Anonymous, VerifiedSession};

impl<S, St, R: Clone> Layer<S> for WeChatAuthLayer<St, R> {
    type Service = WeChatAuth<S, St, R>;

    fn layer(&self, inner: S) -> Self::Service {
        WeChatAuth::new(inner, self.clone())
    }
}

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

impl<S, St, R, ReqB, ResB> Service<Request<ReqB>> for WeChatAuth<S, St, R>
where
    S: Service<Request<ReqB>, Response = Response<ResB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    St: SharedStore,
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
        let pending = match self.layer.shared.auth.authenticate(request.headers()) {
            Step::Done(outcome) => {
                return match self.layer.carry_out(outcome, &mut request) {
                    Ok(reissue) => ResponseFuture::inner(self.inner.call(request), reissue),
                    Err(response) => ResponseFuture::rejected(response),
                };
            }
            Step::Slow(pending) => pending,
        };
        // The service that was polled ready is the one that is called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        ResponseFuture::slow(Box::pin(async move {
            let outcome = layer.shared.auth.finish(pending).await;
            match layer.carry_out(outcome, &mut request) {
                Ok(reissue) => {
                    let mut response = inner.call(request).await?;
                    if let Some(reissue) = reissue {
                        reissue.apply(&mut response);
                    }
                    Ok(response)
                }
                Err(response) => Ok(response),
            }
        }))
    }
}

impl<St, R> WeChatAuthLayer<St, R> {
    /// Carries an outcome out on a request: attaches the user, or (optional mode) hands the
    /// refusal and the rejection to the handler, and returns the header to add to the
    /// response; or (required mode) returns the rejection to answer instead, written for the
    /// request's headers (a gRPC client gets a gRPC status).
    fn carry_out<ReqB, B>(
        &self,
        outcome: Outcome,
        request: &mut Request<ReqB>,
    ) -> Result<Option<Reissue>, Response<B>>
    where
        R: RejectionResponse<B>,
        B: 'static,
    {
        let refusal = match (outcome, self.mode) {
            (Outcome::User(user, reissue), _) => {
                request.extensions_mut().insert(user);
                return Ok(reissue);
            }
            (Outcome::Anonymous, Mode::Optional) => {
                let extensions = request.extensions_mut();
                extensions.insert(Anonymous);
                self.hand_over_rejection(extensions);
                return Ok(None);
            }
            (Outcome::Anonymous, Mode::Required) => Refusal {
                error: AuthError::MissingToken,
                sid: None,
                clear: None,
            },
            (Outcome::Refused(refusal), _) => refusal,
        };
        metrics::counter!(crate::metrics::REJECTIONS, "code" => refusal.error.metric_label())
            .increment(1);
        match self.mode {
            Mode::Required => {
                let mut response = self
                    .rejection
                    .response_to(&refusal.error, request.headers());
                // The error rides in the response's extensions whatever `R` wrote (the default
                // answer carries it already).
                if !self.rejection.is_default() {
                    response.extensions_mut().insert(refusal.error);
                }
                if let Some(clear) = refusal.clear {
                    clear.apply(&mut response);
                }
                Err(response)
            }
            Mode::Optional => {
                let extensions = request.extensions_mut();
                if let Some(sid) = refusal.sid {
                    extensions.insert(VerifiedSession(sid));
                }
                extensions.insert(refusal.error);
                self.hand_over_rejection(extensions);
                Ok(refusal.clear)
            }
        }
    }

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
}
