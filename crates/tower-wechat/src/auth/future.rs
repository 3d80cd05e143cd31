//! [`ResponseFuture`]: the inner service's future (adding a re-issued token to its response), a
//! ready rejection, or — only when WeChat must be asked first — a boxed slow path.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::future::BoxFuture;
use http::header::CACHE_CONTROL;
use http::{HeaderName, HeaderValue, Response};
use pin_project_lite::pin_project;

use crate::endpoints::SessionChanged;

/// A header to add to the response: a re-issued session token, or a cookie cleared. Boxed: it
/// is rare, and the response future that carries it stays small to move.
#[derive(Clone, Debug)]
pub(crate) struct Reissue(Box<(HeaderName, HeaderValue)>);

impl Reissue {
    pub(crate) fn new(name: HeaderName, value: HeaderValue) -> Self {
        Self(Box::new((name, value)))
    }

    /// Adds the re-issued token to `response`, unless the handler changed the session. A
    /// response carrying a credential must not be cached by anyone but its recipient.
    pub(crate) fn apply<B>(self, response: &mut Response<B>) {
        if response.extensions().get::<SessionChanged>().is_some() {
            return;
        }
        let (name, value) = *self.0;
        let headers = response.headers_mut();
        headers.append(name, value);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    }
}

pin_project! {
    /// The response future of [`WeChatAuth`](super::WeChatAuth).
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        /// The inner service's future, answered as it is (every warm request).
        Inner {
            #[pin]
            future: F,
        },
        /// The inner service's future, with a header to add to its response.
        Reissuing {
            #[pin]
            future: F,
            reissue: Option<Reissue>,
        },
        Rejected {
            response: Option<Box<Response<B>>>,
        },
        Slow {
            future: BoxFuture<'static, Result<Response<B>, E>>,
        },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn inner(future: F, reissue: Option<Reissue>) -> Self {
        Self {
            kind: match reissue {
                None => Kind::Inner { future },
                reissue => Kind::Reissuing { future, reissue },
            },
        }
    }

    pub(crate) fn rejected(response: Response<B>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(Box::new(response)),
            },
        }
    }

    pub(crate) fn slow(future: BoxFuture<'static, Result<Response<B>, E>>) -> Self {
        Self {
            kind: Kind::Slow { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Reissuing { future, reissue } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some(reissue) = reissue.take() {
                    reissue.apply(&mut response);
                }
                Poll::Ready(Ok(response))
            }
            KindProj::Rejected { response } => Poll::Ready(Ok(*response
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Slow { future } => future.as_mut().poll(cx),
        }
    }
}
