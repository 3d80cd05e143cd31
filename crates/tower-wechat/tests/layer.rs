//! The layer and the extractors in process (no sockets between app and layer): modes, the
//! `Option<WeChatUser>` contract, a missing layer, custom rejections, non-axum services.

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_wechat::{
    AuthError, KeyRing, LoginEndpoints, RejectionResponse, SigningKey, WeChatAuthLayer, WeChatUser,
};
use wechat_mock::{MockConfig, MockGrant, MockWeChat};
use wechat_oauth::{AppId, AppSecret, Client};
use wechat_sessions::SessionConfig;

async fn layer() -> (WeChatAuthLayer, MockWeChat) {
    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    let client = Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
        .api_base(mock.base_url())
        .build()
        .unwrap();
    let keys = KeyRing::new(SigningKey::hs256("k1", &[42; 32]).unwrap());
    (
        WeChatAuthLayer::builder(client, keys).build().unwrap(),
        mock,
    )
}

async fn token(layer: &WeChatAuthLayer, mock: &MockWeChat) -> String {
    let code = mock.mint_code(MockGrant::default());
    LoginEndpoints::new(layer)
        .login(tower_wechat::CodeLogin::new(&code))
        .await
        .unwrap()
        .token
        .value
}

fn app(layer: WeChatAuthLayer) -> Router {
    Router::new()
        .route(
            "/required",
            get(|user: WeChatUser| async move { user.openid().to_string() }),
        )
        .route(
            "/optional",
            get(|user: Option<WeChatUser>| async move {
                user.map_or("anonymous".to_owned(), |u| u.openid().to_string())
            }),
        )
        .layer(layer)
}

async fn call(app: Router, path: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::get(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = app
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn optional_mode_follows_the_extractor_contract() {
    let (layer, mock) = layer().await;
    let token = token(&layer, &mock).await;
    let app = app(layer.clone());
    assert_eq!(
        call(app.clone(), "/optional", None).await,
        (StatusCode::OK, "anonymous".into())
    );
    let (status, body) = call(app.clone(), "/optional", Some("forged")).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "bad credentials are an error: {body}"
    );
    assert!(body.contains("invalid_token"));
    let (status, body) = call(app.clone(), "/optional", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with('o'));
    let (status, body) = call(app, "/required", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("missing_token"));
}

#[tokio::test]
async fn required_mode_refuses_before_the_handler() {
    let (layer, mock) = layer().await;
    let token = token(&layer, &mock).await;
    let app = app(layer.required());
    assert_eq!(
        call(app.clone(), "/optional", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call(app.clone(), "/optional", Some(&token)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_missing_layer_is_a_500_that_says_so() {
    let app = Router::new().route("/me", get(|_: WeChatUser| async { "unreachable" }));
    let (status, body) = call(app, "/me", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        body.contains("missing_layer") && body.contains("WeChatAuthLayer"),
        "{body}"
    );
}

#[derive(Clone)]
struct Teapot;

impl RejectionResponse<Body> for Teapot {
    fn response(&self, error: &AuthError) -> Response<Body> {
        let mut response = Response::new(Body::from(format!("no: {}", error.code())));
        *response.status_mut() = StatusCode::IM_A_TEAPOT;
        response
    }
}

#[tokio::test]
async fn the_rejection_response_is_customizable_and_the_error_travels_in_extensions() {
    let (layer, _mock) = layer().await;
    let app = Router::new()
        .route("/", get(|| async { "hi" }))
        .layer(layer.required().with_rejection_response(Teapot));
    assert_eq!(
        call(app, "/", None).await,
        (StatusCode::IM_A_TEAPOT, "no: missing_token".into())
    );

    let plain = Router::new()
        .route("/", get(|| async { "hi" }))
        .layer(layer.required());
    let response = plain
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        response.extensions().get::<AuthError>(),
        Some(&AuthError::MissingToken)
    );
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
}

/// A rejection that replaces only the body (Problem Details), keeping the standard headers.
#[derive(Clone)]
struct Problem;

impl RejectionResponse<Body> for Problem {
    fn response(&self, error: &AuthError) -> Response<Body> {
        let body = format!(
            r#"{{"title":"{}","status":{}}}"#,
            error.code(),
            error.status().as_u16()
        );
        let mut response = error.with_body(Body::from(body));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

#[tokio::test]
async fn a_custom_rejection_applies_in_optional_mode_through_the_extractor_and_the_login_router() {
    let (layer, mock) = layer().await;
    let token = token(&layer, &mock).await;
    let login = LoginEndpoints::new(&layer);
    let app = Router::new()
        .route(
            "/required",
            get(|user: WeChatUser| async move { user.openid().to_string() }),
        )
        .route(
            "/optional",
            get(|user: Option<WeChatUser>| async move { user.is_some().to_string() }),
        )
        .merge(login.router())
        .layer(layer.clone().with_rejection_response(Problem));
    let send = |request: Request<Body>| {
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.unwrap();
            let (parts, body) = response.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            (parts, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let bearer = |path: &str, token: &str| {
        Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    // No credentials, a handler that requires a user: the extractor answers with Problem.
    let (parts, body) = send(Request::get("/required").body(Body::empty()).unwrap()).await;
    assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, r#"{"title":"missing_token","status":401}"#);
    assert_eq!(
        parts.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(parts.headers[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(parts.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        parts.extensions.get::<AuthError>(),
        Some(&AuthError::MissingToken)
    );
    // Bad credentials reach Option<WeChatUser> as an error: Problem, with the challenge.
    let (parts, body) = send(bearer("/optional", "forged")).await;
    assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, r#"{"title":"invalid_token","status":401}"#);
    assert!(
        parts.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    // A login failure behind the layer: Problem too.
    let (parts, body) = send(
        Request::post("/auth/wechat/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"code":"not-a-code"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(parts.status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, r#"{"title":"invalid_code","status":401}"#);
    // A valid session passes untouched.
    let (parts, body) = send(bearer("/required", &token)).await;
    assert_eq!(
        (parts.status, body.starts_with('o')),
        (StatusCode::OK, true)
    );
    // Retry-After is kept too: a store that is down, answered by Problem with its header.
    let unavailable = Problem.response(&AuthError::StoreUnavailable);
    assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable.headers()[header::RETRY_AFTER], "1");
}

#[tokio::test]
async fn require_user_protects_a_group_of_routes_next_to_the_login_routes() {
    let (layer, mock) = layer().await;
    let token = token(&layer, &mock).await;
    // The handler reads no user: only RequireUserLayer stands in the way.
    let protected = Router::new()
        .route("/orders", get(|| async { "orders" }))
        .route_layer(tower_wechat::RequireUserLayer);
    let app = Router::new()
        .merge(protected)
        .route("/public", get(|| async { "hello" }))
        .merge(LoginEndpoints::new(&layer).router())
        .layer(layer.clone());
    assert_eq!(
        call(app.clone(), "/public", None).await,
        (StatusCode::OK, "hello".into())
    );
    let (status, body) = call(app.clone(), "/orders", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("missing_token"), "{body}");
    let (status, body) = call(app.clone(), "/orders", Some("forged")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("invalid_token"), "{body}");
    assert_eq!(
        call(app.clone(), "/orders", Some(&token)).await,
        (StatusCode::OK, "orders".into())
    );
    // The login routes under the same layer are reachable without a session.
    let login = app
        .oneshot(
            Request::post("/auth/wechat/login")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"code":"not-a-code"}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
    let body = login.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("invalid_code"));
    // Without a layer in front: 500 missing_layer.
    let bare = Router::new()
        .route("/orders", get(|| async { "unreachable" }))
        .route_layer(tower_wechat::RequireUserLayer);
    let (status, body) = call(bare, "/orders", None).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("missing_layer"));
}

#[tokio::test]
async fn the_layer_serves_a_plain_tower_service_with_any_body() {
    let (layer, mock) = layer().await;
    let token = token(&layer, &mock).await;
    let service = ServiceBuilder::new()
        .layer(layer.required())
        .service(service_fn(|request: Request<Full<Bytes>>| async move {
            let user = request.extensions().get::<WeChatUser>().cloned();
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(
                user.map(|u| u.openid().to_string()).unwrap_or_default(),
            ))))
        }));
    let request = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"o"));
    let refused = service
        .oneshot(Request::get("/").body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

/// The default session cookie is `Secure` with `Path=/`, so it is named `__Host-wechat_session`:
/// the layer reads only that name, and a same-named cookie without the prefix (which a sibling
/// domain could toss) is not a session.
#[tokio::test]
async fn the_default_session_cookie_carries_the_host_prefix() {
    let (layer, mock) = layer().await;
    assert_eq!(layer.cookie().full_name(), "__Host-wechat_session");
    let set = layer.cookie().set("t", 60).unwrap();
    assert!(
        set.to_str()
            .unwrap()
            .starts_with("__Host-wechat_session=t; Path=/;")
    );
    let token = token(&layer, &mock).await;
    let app = app(layer);
    for (cookie, expected) in [
        (format!("__Host-wechat_session={token}"), StatusCode::OK),
        (format!("wechat_session={token}"), StatusCode::UNAUTHORIZED),
    ] {
        let request = Request::get("/required")
            .header(header::COOKIE, cookie.as_str())
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), expected, "{cookie}");
    }
}

/// Two apps share one store and one signing key (a misconfiguration, but a plausible one): a
/// token of app A's session is validly signed for app B too, and B must still refuse it.
#[tokio::test]
async fn a_session_of_another_app_in_a_shared_store_is_refused() {
    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    let store = wechat_sessions::MokaStore::default();
    let keys = || KeyRing::new(SigningKey::hs256("k1", &[42; 32]).unwrap());
    let layer_for = |appid: &str| {
        let client = Client::builder(AppId::new(appid), AppSecret::new(mock.secret()))
            .api_base(mock.base_url())
            .build()
            .unwrap();
        WeChatAuthLayer::builder(client, keys())
            .store(store.clone())
            .build()
            .unwrap()
    };
    let app_a = layer_for(mock.appid());
    let app_b = layer_for("wx_another_app");
    let token = token_of(&app_a, &mock).await;
    assert_eq!(
        call(app(app_a), "/required", Some(&token)).await.0,
        StatusCode::OK
    );
    let (status, body) = call(app(app_b), "/required", Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("session_expired"), "{body}");
}

async fn token_of<St: wechat_sessions::SharedStore>(
    layer: &WeChatAuthLayer<St>,
    mock: &MockWeChat,
) -> String {
    let code = mock.mint_code(MockGrant::default());
    LoginEndpoints::new(layer)
        .login(tower_wechat::CodeLogin::new(&code))
        .await
        .unwrap()
        .token
        .value
}

/// "A valid session does no I/O and no upstream call; a forged token never reads the store",
/// counted: the store's lookups by kind, and the fake WeChat's calls. A warm token finds its
/// session's record kept beside it and reads the store only when the store says the record
/// changed (a write of it) — and then sees the change at once.
#[tokio::test]
async fn the_hot_path_reads_no_store_future_and_calls_no_one() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use wechat_sessions::{
        CasOutcome, MokaStore, ReadStamp, SessionId, SessionRecord, SessionStore, SingleProcess,
        StoreError, UserId,
    };

    #[derive(Clone, Default)]
    struct Counting {
        inner: MokaStore,
        waits: Arc<AtomicU64>,
        lookups: Arc<AtomicU64>,
    }
    impl SessionStore for Counting {
        fn get_now(
            &self,
            sid: &SessionId,
            now: std::time::SystemTime,
        ) -> Option<Result<Option<Arc<SessionRecord>>, StoreError>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            self.inner.get_now(sid, now)
        }
        fn read_stamp(&self, sid: &SessionId, now: std::time::SystemTime) -> Option<ReadStamp> {
            self.inner.read_stamp(sid, now)
        }
        fn still_current(&self, stamp: &ReadStamp, now: std::time::SystemTime) -> bool {
            self.inner.still_current(stamp, now)
        }
        async fn get(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
            self.waits.fetch_add(1, Ordering::SeqCst);
            self.inner.get(sid).await
        }
        async fn insert(&self, r: SessionRecord) -> Result<Arc<SessionRecord>, StoreError> {
            self.inner.insert(r).await
        }
        async fn compare_and_set(
            &self,
            v: u64,
            r: SessionRecord,
        ) -> Result<CasOutcome, StoreError> {
            self.inner.compare_and_set(v, r).await
        }
        async fn delete(&self, sid: &SessionId) -> Result<bool, StoreError> {
            self.inner.delete(sid).await
        }
        async fn delete_user(&self, user: &UserId) -> Result<usize, StoreError> {
            self.inner.delete_user(user).await
        }
        async fn user_sessions(
            &self,
            user: &UserId,
        ) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
            self.inner.user_sessions(user).await
        }
    }

    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    let client = Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
        .api_base(mock.base_url())
        .build()
        .unwrap();
    let store = Counting::default();
    let layer = WeChatAuthLayer::builder(
        client,
        KeyRing::new(SigningKey::hs256("k1", &[42; 32]).unwrap()),
    )
    .store(SingleProcess::new(
        store.clone(),
        Arc::new(wechat_sessions::SystemClock),
    ))
    .build()
    .unwrap();
    let token = token_of(&layer, &mock).await;
    let forged = format!("{}x", &token[..token.len() - 1]);
    let calls = || mock.stats().values().sum::<u64>();
    let (upstream, waits) = (calls(), store.waits.load(Ordering::SeqCst));
    let service = Router::new()
        .route(
            "/required",
            get(|user: WeChatUser| async move { user.session_id().to_string() }),
        )
        .layer(layer);
    for _ in 0..100 {
        assert_eq!(
            call(service.clone(), "/required", Some(&token)).await.0,
            StatusCode::OK
        );
    }
    assert_eq!(
        store.lookups.load(Ordering::SeqCst),
        1,
        "the first request reads the store, the others find the record kept beside the token"
    );
    assert_eq!(
        store.waits.load(Ordering::SeqCst),
        waits,
        "never a waiting read"
    );
    assert_eq!(calls(), upstream, "never an upstream call");
    for _ in 0..100 {
        assert_eq!(
            call(service.clone(), "/required", Some(&forged)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        store.lookups.load(Ordering::SeqCst),
        1,
        "forged tokens never read the store"
    );
    assert_eq!(store.waits.load(Ordering::SeqCst), waits);

    // A write of the session (here its end) is seen by the next request.
    let sid: SessionId = call(service.clone(), "/required", Some(&token))
        .await
        .1
        .parse()
        .unwrap();
    assert!(store.inner.delete(&sid).await.unwrap());
    assert_eq!(
        call(service.clone(), "/required", Some(&token)).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(store.lookups.load(Ordering::SeqCst), 2);
}

/// The fake WeChat and a layer on a clock the test drives, built with `configure`.
async fn on_clock(
    configure: impl FnOnce(
        tower_wechat::WeChatAuthBuilder<wechat_sessions::MokaStore>,
    ) -> tower_wechat::WeChatAuthBuilder<wechat_sessions::MokaStore>,
) -> (MockWeChat, wechat_sessions::ManualClock, WeChatAuthLayer) {
    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    let clock = wechat_sessions::ManualClock::starting_now();
    let client = Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
        .api_base(mock.base_url())
        .clock(std::sync::Arc::new(clock.clone()))
        .build()
        .unwrap();
    let builder = WeChatAuthLayer::builder(
        client,
        KeyRing::new(SigningKey::hs256("k1", &[42; 32]).unwrap()),
    );
    let layer = configure(builder).build().unwrap();
    (mock, clock, layer)
}

/// `GET /required` answering the user's OpenID, behind `layer`.
fn required(layer: WeChatAuthLayer) -> Router {
    Router::new()
        .route(
            "/required",
            get(|user: WeChatUser| async move { user.openid().to_string() }),
        )
        .layer(layer)
}

/// A record kept beside a token is admitted only while nothing is due: a refresh that falls
/// due seconds after the request that kept it (well within the store's stamp) still happens on
/// the next request.
#[tokio::test]
async fn a_kept_record_is_not_admitted_once_a_refresh_is_due() {
    use std::time::Duration;
    use wechat_mock::Endpoint;
    use wechat_sessions::{Clock, SessionId, SessionStore};

    let (mock, clock, layer) = on_clock(|b| {
        b.sessions(SessionConfig::default().refresh_window(Duration::from_secs(10), 0.0))
    })
    .await;
    let store = layer.sessions().store().clone();
    let token = token_of(&layer, &mock).await;
    let service = required(layer);
    // The access token lives two hours; its refresh falls due ten seconds before.
    clock.advance(Duration::from_secs(2 * 3600 - 40));
    let stamp = store.read_stamp(&SessionId::random(), clock.now());
    assert!(stamp.is_some(), "the default store stamps its reads");
    assert_eq!(
        call(service.clone(), "/required", Some(&token)).await.0,
        StatusCode::OK
    );
    assert_eq!(mock.calls(Endpoint::RefreshToken), 0);
    clock.advance(Duration::from_secs(35));
    assert_eq!(
        call(service.clone(), "/required", Some(&token)).await.0,
        StatusCode::OK
    );
    assert_eq!(mock.calls(Endpoint::RefreshToken), 1, "refreshed when due");
}

/// A session ends on time, to the second, also for a token whose session's record the layer
/// kept from a request moments before.
#[tokio::test]
async fn a_kept_record_is_not_admitted_once_its_session_ended() {
    use std::time::Duration;
    use wechat_sessions::conformance::sample_record;
    use wechat_sessions::{Clock, SessionStore};

    let (mock, clock, layer) = on_clock(|b| b).await;
    let mut record = sample_record(&clock, mock.appid(), "o_ends");
    record.expires_at = clock.now() + Duration::from_secs(100);
    let record = layer.sessions().store().insert(record).await.unwrap();
    let token = layer.tokens().issue(&record).unwrap().value;
    let service = required(layer);
    clock.advance(Duration::from_secs(70));
    assert_eq!(
        call(service.clone(), "/required", Some(&token)).await.0,
        StatusCode::OK
    );
    // Ten seconds past the session's end: the token is within its leeway, the session is not.
    clock.advance(Duration::from_secs(40));
    let (status, body) = call(service.clone(), "/required", Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("session_expired"), "{body}");
}

/// A token that nears its end is re-issued on the first request past the re-issue edge, also
/// when its session's record was kept beside it by a request moments before.
#[tokio::test]
async fn a_kept_record_does_not_delay_a_reissue() {
    use std::time::Duration;
    use tower_wechat::TokenConfig;
    use wechat_sessions::SessionStore;
    use wechat_sessions::conformance::sample_record;

    let mut config = TokenConfig::default();
    config.ttl = Duration::from_secs(3600);
    config.reissue_before = Duration::from_secs(1800);
    let (mock, clock, layer) = on_clock(|b| b.token_config(config)).await;
    let record = sample_record(&clock, mock.appid(), "o_reissue");
    let record = layer.sessions().store().insert(record).await.unwrap();
    let token = layer.tokens().issue(&record).unwrap().value;
    let service = required(layer);
    let reissued = |service: Router| {
        let token = token.clone();
        async move {
            let request = Request::get("/required")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap();
            let response = service.oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.headers().contains_key("x-session-token")
        }
    };
    // The token (ending an hour from now, in whole seconds) is re-issued from half an hour
    // before its end.
    clock.advance(Duration::from_secs(1800 - 30));
    assert!(!reissued(service.clone()).await);
    clock.advance(Duration::from_secs(31));
    assert!(reissued(service.clone()).await, "re-issued when due");
}
