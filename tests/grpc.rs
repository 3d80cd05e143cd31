//! gRPC through the layer, with a tonic client against a tonic server: the example's
//! `demo.WhoAmI` service behind `WeChatAuthLayer` with `GrpcRejection`. A logged-in caller is
//! served and sees who they are; no token, a forged one, an ended session and an unavailable
//! store are gRPC statuses (`UNAUTHENTICATED`, `UNAVAILABLE` with its retry delay), never an
//! HTTP error a gRPC client reports as a transport failure.

mod common;

use std::time::Duration;

use common::start;
use tonic::Code;
use tonic::client::Grpc;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;
use wechat_login::middleware::AppKind;
use wechat_login_example_server::grpc::{self, GET_PATH, GetReply, GetRequest};

/// Serves `demo.WhoAmI` behind `s`'s layer on a free port, as the example server does on
/// `GRPC_BIND` (required mode, gRPC rejections).
async fn grpc_server(s: &common::Server) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let layer = s.auth.clone();
    tokio::spawn(async move { grpc::serve(&layer, listener, std::future::pending()).await });
    url
}

/// Calls `demo.WhoAmI/Get`, with `token` as a bearer token when given.
async fn who_am_i(url: &str, token: Option<&str>) -> Result<GetReply, tonic::Status> {
    let channel = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = Grpc::new(channel);
    client.ready().await.unwrap();
    let mut request = tonic::Request::new(GetRequest {});
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    client
        .unary(
            request,
            http::uri::PathAndQuery::from_static(GET_PATH),
            ProstCodec::<GetRequest, GetReply>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_logged_in_caller_is_served_and_refusals_are_grpc_statuses() {
    let s = start().await;
    let url = grpc_server(&s).await;
    let token = s
        .json_login(AppKind::MiniProgram, "o_grpc_user", None)
        .await
        .unwrap();

    let reply = who_am_i(&url, Some(&token)).await.unwrap();
    assert_eq!(reply.openid, "o_grpc_user");
    assert_eq!(reply.app, "mp");
    assert!(!reply.user_id.is_empty());

    let missing = who_am_i(&url, None).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().starts_with("missing_token"),
        "{missing:?}"
    );

    let mut forged = token.clone();
    forged.pop();
    forged.push('x');
    let invalid = who_am_i(&url, Some(&forged)).await.unwrap_err();
    assert_eq!(invalid.code(), Code::Unauthenticated);
    assert!(
        invalid.message().starts_with("invalid_token"),
        "{invalid:?}"
    );

    // Logged out: the session has ended.
    assert!(s.post("/auth/logout", &token).await.is_success());
    let ended = who_am_i(&url, Some(&token)).await.unwrap_err();
    assert_eq!(ended.code(), Code::Unauthenticated);
    assert!(ended.message().starts_with("session_expired"), "{ended:?}");
}

#[tokio::test]
async fn an_unavailable_wechat_is_unavailable_with_its_retry_delay() {
    let s = start().await;
    let url = grpc_server(&s).await;
    let token = s
        .json_login(AppKind::MobileApp, "o_grpc_busy", None)
        .await
        .unwrap();
    // The access token has expired and WeChat is down: the session is kept, the call is
    // UNAVAILABLE and says when to retry.
    s.advance(Duration::from_secs(7300));
    s.mock.inject(
        wechat_mock::Endpoint::RefreshToken,
        wechat_mock::Fault::HttpStatus(503),
        10,
    );
    let status = who_am_i(&url, Some(&token)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.metadata().get("retry-after").is_some(),
        "{:?}",
        status.metadata()
    );
    // google.rpc.Status with a RetryInfo, as grpc clients decode it.
    let details = status.details();
    assert!(!details.is_empty());
    assert!(
        details
            .windows(b"google.rpc.RetryInfo".len())
            .any(|w| w == b"google.rpc.RetryInfo"),
        "{details:?}"
    );
    // WeChat back (and the failure cooldown over): served again, never logged out.
    s.mock.clear_faults();
    s.advance(Duration::from_secs(10));
    assert_eq!(
        who_am_i(&url, Some(&token)).await.unwrap().openid,
        "o_grpc_busy"
    );
}
