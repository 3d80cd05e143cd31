//! A small gRPC service behind the layer, on tonic: `demo.WhoAmI/Get` answers who is calling,
//! read from the request's extensions where the layer put the [`WeChatUser`]. Hand-written
//! instead of generated (no `protoc` needed to build the example); the messages are prost's.
//!
//! ```text
//! syntax = "proto3";
//! package demo;
//! service WhoAmI { rpc Get(GetRequest) returns (GetReply); }
//! message GetRequest {}
//! message GetReply { string openid = 1; string user_id = 2; string app = 3; }
//! ```

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;
use wechat_login::middleware::{AppKind, WeChatUser};

/// The path of `demo.WhoAmI/Get`.
pub const GET_PATH: &str = "/demo.WhoAmI/Get";

/// `GetRequest {}`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetRequest {}

/// `GetReply { openid, user_id, app }`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetReply {
    /// The caller's openid in the app they logged in to.
    #[prost(string, tag = "1")]
    pub openid: String,
    /// The application's user id.
    #[prost(string, tag = "2")]
    pub user_id: String,
    /// The app kind (`mobile`, `web`, `oa`, `mp`).
    #[prost(string, tag = "3")]
    pub app: String,
}

/// The `demo.WhoAmI` service. Put [`WeChatAuthLayer`](wechat_login::WeChatAuthLayer) (with a
/// [`GrpcRejection`](wechat_login::middleware::GrpcRejection)) in front of it.
#[derive(Clone, Copy, Debug, Default)]
pub struct WhoAmI;

impl NamedService for WhoAmI {
    const NAME: &'static str = "demo.WhoAmI";
}

struct Get;

impl UnaryService<GetRequest> for Get {
    type Response = GetReply;
    type Future = BoxFuture<'static, Result<Response<GetReply>, Status>>;

    fn call(&mut self, request: Request<GetRequest>) -> Self::Future {
        let user = request.extensions().get::<WeChatUser>().cloned();
        Box::pin(async move {
            // The layer in required mode never lets a request through without a user; in
            // optional mode this is the service's own answer.
            let user = user.ok_or_else(|| Status::unauthenticated("log in with WeChat"))?;
            Ok(Response::new(GetReply {
                openid: user.openid().as_str().to_owned(),
                user_id: user.user_id().as_str().to_owned(),
                app: user
                    .app_kind()
                    .map(AppKind::as_str)
                    .unwrap_or("")
                    .to_owned(),
            }))
        })
    }
}

impl tower::Service<http::Request<Body>> for WhoAmI {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == GET_PATH {
            Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::<GetReply, GetRequest>::default());
                Ok(grpc.unary(Get, request).await)
            })
        } else {
            Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) })
        }
    }
}

/// Serves `demo.WhoAmI` on `listener` behind `layer` — required mode, refusals as gRPC
/// statuses ([`GrpcRejection`](wechat_login::middleware::GrpcRejection)) — until `shutdown`
/// completes. The example server runs it on `GRPC_BIND`.
pub async fn serve<St: wechat_login::SharedStore>(
    layer: &wechat_login::WeChatAuthLayer<St>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    let layer = layer
        .required()
        .with_rejection_response(wechat_login::middleware::GrpcRejection);
    tonic::transport::Server::builder()
        .layer(layer)
        .add_service(WhoAmI)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}
