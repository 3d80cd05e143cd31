//! [`ResponseFuture`]: the inner service's future (adding a re-issued token to its response), a
//! ready rejection, or — only when WeChat must be asked first — a boxed slow path.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use pin_project_lite::pin_project;

/// A header to add to the response: a re-issued session token.
#[derive(Clone, Debug)]
pub(crate) struct Reissue {
    pub(crate) name: HeaderName,
    pub(crate) value: HeaderValue,
}

impl Reissue {
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        headers.append(self.name, self.value);
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
        Inner {
            #[pin]
            future: F,
            reissue: Option<Reissue>,
        },
        Rejected {
            response: Option<Response<B>>,
        },
        Slow {
            future: BoxFuture<'static, Result<Response<B>, E>>,
        },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(crate) fn inner(future: F, reissue: Option<Reissue>) -> Self {
        Self {
            kind: Kind::Inner { future, reissue },
        }
    }

    pub(crate) fn rejected(response: Response<B>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
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
            KindProj::Inner { future, reissue } => {
                let mut response = ready!(future.poll(cx))?;
                if let Some(reissue) = reissue.take() {
                    reissue.apply(response.headers_mut());
                }
                Poll::Ready(Ok(response))
            }
            KindProj::Rejected { response } => Poll::Ready(Ok(response
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Slow { future } => future.as_mut().poll(cx),
        }
    }
}
