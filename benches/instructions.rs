//! Instructions per request through the middleware, counted by callgrind: steady on machines
//! whose timings are not. One request is one call of an axum `Router` (no sockets, no HTTP
//! parsing): the figure is what the layer and the extractor add to the same handler.
//!
//! ```sh
//! cargo bench --bench instructions          # needs valgrind; prints the table
//! ```
//!
//! Scenarios, all `GET /me` on the same app with the same header shapes:
//!
//! - **bare**: the handler answers `{"sub":"user-000000","ok":true}` as JSON, no middleware.
//! - **layer**: behind `WeChatAuthLayer` (optional mode, the default), the handler extracts the
//!   `WeChatUser` and answers `{"sub":<openid>,"ok":true}`: 1,000 warm sessions of 1,000 users,
//!   each request with the next user's bearer token (the hot path).
//! - **forged**: the same layer, tokens for the same sessions signed with another key: the
//!   rejection path (401, no store read).
//! - **anonymous**: the same layer, no credentials: optional mode lets the request through and
//!   `Option<WeChatUser>` is `None`.
//!
//! How: for each scenario the binary runs itself under `valgrind --tool=callgrind` twice, with
//! `n` and `2n` measured requests after the same setup and warm-up (every token twice); the
//! difference of the two totals over `n` is the cost of one request, setup excluded. Repeat runs
//! agree within a few instructions. `INSTRUCTIONS_N` sets `n` (default 5,000).

use std::process::Command;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use http_body_util::BodyExt;
use serde::Serialize;
use tower::Service;
use wechat_login::middleware::TokenIssuer;
use wechat_login::{
    AppId, AppSecret, Client, CodeLogin, KeyRing, LoginEndpoints, SigningKey, TokenConfig,
    WeChatAuthLayer, WeChatUser,
};
use wechat_mock::{MockConfig, MockGrant, MockWeChat};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USERS: usize = 1_000;
const SCENARIOS: [&str; 4] = ["bare", "layer", "forged", "anonymous"];

#[derive(Serialize)]
struct Me<'a> {
    sub: &'a str,
    ok: bool,
}

async fn me_bare() -> Json<Me<'static>> {
    Json(Me {
        sub: "user-000000",
        ok: true,
    })
}

async fn me_user(user: WeChatUser) -> Response {
    Json(Me {
        sub: user.openid().as_str(),
        ok: true,
    })
    .into_response()
}

async fn me_optional(user: Option<WeChatUser>) -> Response {
    let sub = user.as_ref().map_or("anonymous", |u| u.openid().as_str());
    Json(Me { sub, ok: true }).into_response()
}

/// The app of a scenario and the `Authorization` value of each request (none: anonymous).
async fn setup(scenario: &str) -> Result<(Router, Vec<Option<HeaderValue>>, MockWeChat), BoxError> {
    let mock = MockWeChat::start(MockConfig::default()).await?;
    let client = Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
        .api_base(mock.base_url())
        .build()?;
    let keys = KeyRing::new(SigningKey::hs256("k1", &[7; 32])?);
    let auth = WeChatAuthLayer::builder(client, keys).build()?;
    let endpoints = LoginEndpoints::new(&auth);
    let forger = TokenIssuer::new(
        KeyRing::new(SigningKey::hs256("k1", &[9; 32])?),
        TokenConfig::default(),
        Arc::clone(auth.sessions().clock()),
    )?;
    let mut headers = Vec::with_capacity(USERS);
    for i in 0..USERS {
        let code = mock.mint_code(MockGrant {
            openid: Some(format!("o_bench_user_{i:05}")),
            ..MockGrant::default()
        });
        let success = endpoints.login(CodeLogin::new(&code)).await?;
        let token = match scenario {
            "forged" => forger.issue(&success.record)?.value,
            _ => success.token.value,
        };
        headers.push(match scenario {
            "anonymous" => None,
            _ => Some(HeaderValue::try_from(format!("Bearer {token}"))?),
        });
    }
    let app = match scenario {
        "bare" => Router::new().route("/me", get(me_bare)),
        "layer" | "forged" => Router::new().route("/me", get(me_user)).layer(auth),
        "anonymous" => Router::new().route("/me", get(me_optional)).layer(auth),
        other => return Err(format!("unknown scenario {other}").into()),
    };
    // What `axum::serve` does once: resolve each route's handler and layers, so that a request
    // does not rebuild them.
    Ok((app.with_state(()), headers, mock))
}

/// One request: build it, call the app, read the body.
async fn request(app: &mut Router, authorization: Option<&HeaderValue>) -> StatusCode {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = axum::http::Uri::from_static("/me");
    if let Some(value) = authorization {
        request.headers_mut().insert(AUTHORIZATION, value.clone());
    }
    let response = app.call(request).await.expect("infallible");
    let status = response.status();
    let body = response.into_body().collect().await.expect("body");
    std::hint::black_box(body.to_bytes());
    status
}

/// Runs one scenario: setup, warm-up (every header twice), then `n` measured requests.
fn run(scenario: &str, n: usize) -> Result<(), BoxError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (mut app, headers, _mock) = setup(scenario).await?;
        let expected = match scenario {
            "forged" => StatusCode::UNAUTHORIZED,
            _ => StatusCode::OK,
        };
        for i in 0..2 * headers.len() + n {
            let status = request(&mut app, headers[i % headers.len()].as_ref()).await;
            if status != expected {
                return Err(format!("{scenario}: {status}, expected {expected}").into());
            }
        }
        Ok(())
    })
}

/// The instructions callgrind counted for `scenario` with `n` measured requests.
fn count(scenario: &str, n: usize) -> Result<u64, BoxError> {
    let me = std::env::current_exe()?;
    let output = Command::new("valgrind")
        .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
        .arg(me)
        .args(["--scenario", scenario, "--requests", &n.to_string()])
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("{scenario} under valgrind failed:\n{stderr}").into());
    }
    stderr
        .lines()
        .find_map(|line| line.split("Collected :").nth(1))
        .and_then(|total| total.trim().parse().ok())
        .ok_or_else(|| format!("no instruction total in valgrind's output:\n{stderr}").into())
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    if let (Some(scenario), Some(n)) = (arg("--scenario"), arg("--requests")) {
        return run(scenario, n.parse()?);
    }
    if Command::new("valgrind").arg("--version").output().is_err() {
        println!("instructions: valgrind not found (apt-get install -y valgrind); skipped");
        return Ok(());
    }
    let n: usize = std::env::var("INSTRUCTIONS_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    println!("instructions per request (callgrind, (total(2n) - total(n)) / n, n = {n})");
    let mut bare = None;
    for scenario in SCENARIOS {
        let per_request = (count(scenario, 2 * n)? as f64 - count(scenario, n)? as f64) / n as f64;
        let base = *bare.get_or_insert(per_request);
        println!(
            "{scenario:<10} {per_request:>9.0}   {:>5.3} x bare   +{:.0}",
            per_request / base,
            per_request - base
        );
    }
    Ok(())
}
