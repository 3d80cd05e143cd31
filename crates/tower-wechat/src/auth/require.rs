//! [`RequireUserLayer`]: requiring a user, apart from attaching one. The [`WeChatAuthLayer`] in
//! optional mode attaches the user (or the reason there is none) to every request; this layer
//! refuses the requests that got none, so protecting a group of routes is one line (axum's
//! `route_layer`) and the login routes next to them keep working.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tower_wechat::{LoginEndpoints, RequireUserLayer, WeChatAuthLayer, WeChatUser};
//!
//! fn app(auth: WeChatAuthLayer) -> Router {
//!     let protected = Router::new()
//!         .route("/orders", get(|user: WeChatUser| async move { user.openid().to_string() }))
//!         .route_layer(RequireUserLayer);
//!     Router::new()
//!         .merge(protected)
//!         .merge(LoginEndpoints::new(&auth).router())
//!         .layer(auth.clone())
//! }
//! ```
//!
//! [`WeChatAuthLayer`]: crate::WeChatAuthLayer

use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::{Either, Ready, ready};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::rejection::{AuthError, Render};
use crate::user::{Anonymous, WeChatUser};

/// Refuses requests to which the [`WeChatAuthLayer`](crate::WeChatAuthLayer) in front attached
/// no user: with the layer's reason (bad credentials, an ended session, WeChat unavailable...),
/// 401 `missing_token` without credentials, 500 `missing_layer` without a layer; answered with
/// the layer's rejection.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequireUserLayer;

impl<S> Layer<S> for RequireUserLayer {
    type Service = RequireUserService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireUserService { inner }
    }
}

/// The service made by [`RequireUserLayer`].
#[derive(Clone, Debug)]
pub struct RequireUserService<S> {
    inner: S,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for RequireUserService<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
    ResB: From<Bytes> + 'static,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<ResB>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        let extensions = request.extensions();
        if extensions.get::<WeChatUser>().is_some() {
            return Either::Left(self.inner.call(request));
        }
        let error = extensions.get::<AuthError>().cloned().unwrap_or(
            if extensions.get::<Anonymous>().is_some() {
                AuthError::MissingToken
            } else {
                AuthError::MissingLayer
            },
        );
        let response = match extensions.get::<Render<ResB>>() {
            Some(render) => {
                let mut response = (render.0)(&error);
                response.extensions_mut().insert(error);
                response
            }
            None => error.to_response(),
        };
        Either::Right(ready(Ok(response)))
    }
}
