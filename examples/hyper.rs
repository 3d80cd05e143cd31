//! The same WeChat login layer on plain hyper, without axum: a `tower::service_fn` handler
//! behind `WeChatAuthLayer`, served by hyper-util. Sandbox mode only (a fake WeChat starts
//! in-process); mint a code at the fake, log in through `LoginEndpoints`, then call `/me`.
//!
//! ```text
//! cargo run --example hyper
//! ```

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower::{ServiceBuilder, service_fn};
use wechat_login::middleware::{
    AuthError, KeyRing, LoginEndpoints, SigningKey, WeChatAuthLayer, WeChatUser,
};
use wechat_login::oauth::{AppId, AppSecret, Client};
use wechat_mock::{MockConfig, MockGrant, MockWeChat};

type Body = Full<Bytes>;

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mock = MockWeChat::start(MockConfig::default()).await?;
    let client = Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
        .api_base(mock.base_url())
        .build()?;
    let keys = KeyRing::new(SigningKey::hs256("k1", &rand::random::<[u8; 32]>())?);
    let auth = WeChatAuthLayer::builder(client, keys).build()?;
    let login = Arc::new(LoginEndpoints::new(&auth));
    let fake = mock.clone();

    let app = ServiceBuilder::new()
        .layer(auth.clone())
        .service(service_fn(move |request: Request<Incoming>| {
            let (login, mock) = (Arc::clone(&login), fake.clone());
            async move {
                let response = match (request.method().as_str(), request.uri().path()) {
                    ("GET", "/me") => match request.extensions().get::<WeChatUser>() {
                        Some(user) => json(
                            StatusCode::OK,
                            serde_json::json!({
                                "openid": user.openid().as_str(),
                                "session_id": user.session_id().to_string(),
                            }),
                        ),
                        // No user: the layer left the reason in the extensions when
                        // credentials were sent and refused (forged, expired, ended...);
                        // none means none were sent.
                        None => request
                            .extensions()
                            .get::<AuthError>()
                            .unwrap_or(&AuthError::MissingToken)
                            .to_response(),
                    },
                    ("GET", "/sandbox/code") => {
                        let code = mock.mint_code(MockGrant::default());
                        json(StatusCode::OK, serde_json::json!({ "code": code }))
                    }
                    ("POST", "/auth/wechat/login") => {
                        // Bounded: never read an unlimited body into memory.
                        let body = Limited::new(request.into_body(), 16 * 1024)
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let code = serde_json::from_slice::<serde_json::Value>(&body)
                            .ok()
                            .and_then(|v| v["code"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        match login
                            .login(wechat_login::middleware::CodeLogin::new(&code))
                            .await
                        {
                            Ok(success) => {
                                let mut response = Response::new(Full::new(success.to_json()));
                                response
                                    .headers_mut()
                                    .insert("content-type", "application/json".parse().unwrap());
                                response
                            }
                            Err(failure) => failure.to_response(),
                        }
                    }
                    _ => json(
                        StatusCode::NOT_FOUND,
                        serde_json::json!({"error": "not_found"}),
                    ),
                };
                Ok::<_, Infallible>(response)
            }
        }));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!(
        "hyper example listening on {base} (fake WeChat at {})",
        mock.base_url()
    );
    println!("  CODE=$(curl -s {base}/sandbox/code | sed 's/.*\"code\":\"\\([^\"]*\\)\".*/\\1/')");
    println!(
        "  TOKEN=$(curl -s -X POST {base}/auth/wechat/login -d \"{{\\\"code\\\":\\\"$CODE\\\"}}\" | sed 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')"
    );
    println!("  curl -s {base}/me -H \"authorization: Bearer $TOKEN\"");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            if let Err(error) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("connection error: {error}");
            }
        });
    }
}
