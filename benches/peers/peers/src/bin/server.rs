//! One binary, one variant per process:  server <variant> <port>
//! variants: bare | noop_layer | extension_layer | jwt | jwt_moka | jwt_authorizer | tower_sessions | tower_sessions_moka
//!           | wechat_login | wechat_login_forged | wechat_login_anon (the project's layer; needs
//!           --features project)
use axum::{
    body::Body,
    extract::Extension,
    http::{header::AUTHORIZATION, Request, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Json, Router,
};
use jsonwebtoken::{decode, DecodingKey, Validation, Algorithm};
use moka::future::Cache;
use peers::*;
use serde::Serialize;
use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};
use tower::{Layer, Service};

#[derive(Serialize)]
struct Me<'a> {
    sub: &'a str,
    ok: bool,
}

// ---------------------------------------------------------------- bare
async fn me_bare() -> Json<Me<'static>> {
    Json(Me { sub: "user-000000", ok: true })
}

/// A user as `extension_layer` attaches it.
#[derive(Clone)]
struct ExtUser(Arc<str>);

async fn me_extension(Extension(user): Extension<ExtUser>) -> Response {
    Json(Me { sub: &user.0, ok: true }).into_response()
}

// ---------------------------------------------------------------- jwt: minimal hand-written layer
struct JwtCfg {
    key: DecodingKey,
    validation: Validation,
}

impl JwtCfg {
    fn new() -> Self {
        let mut validation = Validation::new(Algorithm::HS256); // validates exp (+60s leeway), requires exp
        validation.set_issuer(&[ISSUER]);
        Self { key: DecodingKey::from_secret(SECRET.as_bytes()), validation }
    }

    #[inline]
    fn verify(&self, req: &Request<Body>) -> Option<Claims> {
        let h = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
        let tok = h.strip_prefix("Bearer ")?;
        decode::<Claims>(tok, &self.key, &self.validation).ok().map(|d| d.claims)
    }
}

fn unauthorized() -> Response {
    StatusCode::UNAUTHORIZED.into_response()
}

#[derive(Clone)]
struct JwtLayer(Arc<JwtCfg>);

impl<S> Layer<S> for JwtLayer {
    type Service = JwtService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        JwtService { inner, cfg: self.0.clone() }
    }
}

#[derive(Clone)]
struct JwtService<S> {
    inner: S,
    cfg: Arc<JwtCfg>,
}

pin_project_lite::pin_project! {
    #[project = JwtFutProj]
    enum JwtFuture<F> {
        Inner { #[pin] fut: F },
        Unauthorized,
    }
}

impl<F, E> Future for JwtFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            JwtFutProj::Inner { fut } => fut.poll(cx),
            JwtFutProj::Unauthorized => Poll::Ready(Ok(unauthorized())),
        }
    }
}

impl<S> Service<Request<Body>> for JwtService<S>
where
    S: Service<Request<Body>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = JwtFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        match self.cfg.verify(&req) {
            Some(claims) => {
                req.extensions_mut().insert(claims);
                JwtFuture::Inner { fut: self.inner.call(req) }
            }
            None => JwtFuture::Unauthorized,
        }
    }
}

async fn me_jwt(Extension(c): Extension<Claims>) -> Response {
    Json(Me { sub: &c.sub, ok: true }).into_response()
}

// ---------------------------------------------------------------- jwt + moka per-user state lookup
struct JwtMokaCfg {
    jwt: JwtCfg,
    cache: Cache<String, Arc<UserState>>,
}

#[derive(Clone)]
struct JwtMokaLayer(Arc<JwtMokaCfg>);

impl<S> Layer<S> for JwtMokaLayer {
    type Service = JwtMokaService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        JwtMokaService { inner, cfg: self.0.clone() }
    }
}

#[derive(Clone)]
struct JwtMokaService<S> {
    inner: S,
    cfg: Arc<JwtMokaCfg>,
}

type BoxFut<E> = Pin<Box<dyn Future<Output = Result<Response, E>> + Send>>;

impl<S> Service<Request<Body>> for JwtMokaService<S>
where
    S: Service<Request<Body>, Response = Response> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFut<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let Some(claims) = self.cfg.jwt.verify(&req) else {
            return Box::pin(std::future::ready(Ok(unauthorized())));
        };
        // standard tower pattern: take the service that was polled ready
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cfg = self.cfg.clone();
        Box::pin(async move {
            match cfg.cache.get(&claims.sub).await {
                Some(state) => {
                    req.extensions_mut().insert(claims);
                    req.extensions_mut().insert(state);
                    inner.call(req).await
                }
                None => Ok(unauthorized()),
            }
        })
    }
}

async fn me_jwt_moka(Extension(st): Extension<Arc<UserState>>) -> Response {
    Json(Me { sub: &st.user_id, ok: true }).into_response()
}

// ---------------------------------------------------------------- jwt-authorizer (axum 0.7 based)
async fn me_jwt_authorizer(Extension(td): Extension<jsonwebtoken9::TokenData<Claims>>) -> Response {
    Json(Me { sub: &td.claims.sub, ok: true }).into_response()
}

// ---------------------------------------------------------------- tower-sessions
async fn me_session(session: tower_sessions::Session) -> Response {
    match session.get::<String>("sub").await {
        Ok(Some(sub)) => Json(Me { sub: &sub, ok: true }).into_response(),
        _ => unauthorized(),
    }
}

async fn me_session14(session: tower_sessions14::Session) -> Response {
    match session.get::<String>("sub").await {
        Ok(Some(sub)) => Json(Me { sub: &sub, ok: true }).into_response(),
        _ => unauthorized(),
    }
}

fn session_data(i: usize) -> std::collections::HashMap<String, serde_json::Value> {
    let st = user_state(i);
    let mut m = std::collections::HashMap::new();
    m.insert("sub".to_string(), serde_json::json!(st.user_id));
    m.insert("openid".to_string(), serde_json::json!(st.openid));
    m.insert("unionid".to_string(), serde_json::json!(st.unionid));
    m.insert("session_key".to_string(), serde_json::json!(st.session_key));
    m
}

// ---------------------------------------------------------------- the project: wechat-login's layer
#[cfg(feature = "project")]
async fn me_wechat(user: wechat_login::WeChatUser) -> Response {
    Json(Me { sub: user.openid().as_str(), ok: true }).into_response()
}

/// Optional mode: the user when there is one, else an anonymous answer.
async fn me_wechat_optional(user: Option<wechat_login::WeChatUser>) -> Response {
    let sub = user.as_ref().map_or("anonymous", |u| u.openid().as_str());
    Json(Me { sub, ok: true }).into_response()
}

/// The project's `WeChatAuthLayer` (default store) in front of the same handler. 1,000 users
/// log in through an in-process fake WeChat before the server listens; what the load generator
/// sends goes to $TOKENS_OUT, one header line per user:
/// - `wechat_login`: their session tokens, required mode (the hot path);
/// - `wechat_login_forged`: tokens for the same sessions signed with another key (401, the
///   rejection path);
/// - `wechat_login_anon`: no credentials, optional mode (the handler answers anonymously).
#[cfg(feature = "project")]
async fn build_wechat(r: Router, variant: &str) -> Router {
    use wechat_login::middleware::{CodeLogin, TokenIssuer};
    use wechat_login::mock::{MockConfig, MockGrant, MockWeChat};
    use wechat_login::{
        AppId, AppSecret, Client, KeyRing, LoginEndpoints, SigningKey, TokenConfig,
        WeChatAuthLayer,
    };
    let mock = MockWeChat::start(MockConfig::default()).await.expect("fake WeChat");
    let client = Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
        .api_base(mock.base_url())
        .build()
        .expect("client");
    let keys = KeyRing::new(SigningKey::hs256("k1", SECRET.as_bytes()).expect("key"));
    // VERIFIED_CAPACITY: the token table's size (its default otherwise), for experiments.
    let mut tokens = TokenConfig::default();
    if let Ok(capacity) = std::env::var("VERIFIED_CAPACITY") {
        tokens.verified_capacity = capacity.parse().expect("VERIFIED_CAPACITY: a number");
    }
    let auth = WeChatAuthLayer::builder(client, keys).token_config(tokens).build().expect("layer");
    let endpoints = LoginEndpoints::new(&auth);
    let forger = TokenIssuer::new(
        KeyRing::new(SigningKey::hs256("k1", &[9; 32]).expect("key")),
        TokenConfig::default(),
        std::sync::Arc::clone(auth.sessions().clock()),
    )
    .expect("forger");
    let mut lines = String::new();
    for i in 0..N_USERS_CLIENT {
        let code = mock.mint_code(MockGrant { openid: Some(format!("o_peer_user_{i:05}")), ..MockGrant::default() });
        let ok = endpoints.login(CodeLogin::new(&code)).await.expect("login");
        let line = match variant {
            "wechat_login_forged" => format!("Authorization: Bearer {}\n", forger.issue(&ok.record).expect("forge").value),
            // A standard header, as bare's `Authorization` is: a custom name would cost hyper an
            // allocation per request that has nothing to do with the layer.
            "wechat_login_anon" => "Accept: application/json\n".to_owned(),
            _ => format!("Authorization: Bearer {}\n", ok.token.value),
        };
        lines.push_str(&line);
    }
    let out = std::env::var("TOKENS_OUT").expect("TOKENS_OUT: where to write the session tokens");
    std::fs::write(&out, lines).expect("write tokens");
    std::mem::forget(mock); // keep the fake alive for the process's life
    match variant {
        "wechat_login_anon" => r.route("/me", get(me_wechat_optional)).layer(auth),
        "wechat_setup_bare" => {
            // The layer lives on, off the route: its WeChat client keeps the connections the
            // logins pooled and their idle timer (each park of the runtime then reads the
            // clock), as it does in `wechat_login`.
            std::mem::forget(auth);
            r.route("/me", get(me_bare))
        }
        _ => r.route("/me", get(me_wechat)).layer(auth.required()),
    }
}

async fn build(variant: &str) -> Router {
    let r = Router::new();
    match variant {
        #[cfg(feature = "project")]
        "wechat_login" | "wechat_login_forged" | "wechat_login_anon" | "wechat_setup_bare" => build_wechat(r, variant).await,
        "bare" => r.route("/me", get(me_bare)),
        // What any tower layer costs under `Router::layer` (a route service boxed and cloned per
        // request), with nothing done: the floor of every middleware variant.
        "noop_layer" => r
            .route("/me", get(me_bare))
            .layer(tower::util::MapRequestLayer::new(|r: Request<Body>| r)),
        // The least a middleware that attaches a user can cost: a layer that inserts a
        // ready-made user into the request's extensions and a handler that extracts it (axum's
        // `Extension`), nothing verified.
        "extension_layer" => {
            let user = ExtUser(Arc::from("o_peer_user_00000"));
            r.route("/me", get(me_extension))
                .layer(tower::util::MapRequestLayer::new(move |mut r: Request<Body>| {
                    r.extensions_mut().insert(user.clone());
                    r
                }))
        }
        "jwt" => r.route("/me", get(me_jwt)).layer(JwtLayer(Arc::new(JwtCfg::new()))),
        "jwt_moka" => {
            let cache: Cache<String, Arc<UserState>> = Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build();
            for i in 0..N_USERS_CACHE {
                let st = user_state(i);
                cache.insert(st.user_id.clone(), Arc::new(st)).await;
            }
            cache.run_pending_tasks().await;
            eprintln!("moka entries={}", cache.entry_count());
            r.route("/me", get(me_jwt_moka))
                .layer(JwtMokaLayer(Arc::new(JwtMokaCfg { jwt: JwtCfg::new(), cache })))
        }
        "jwt_authorizer" => {
            use jwt_authorizer::{IntoLayer, JwtAuthorizer, Validation as JaValidation};
            let auth = JwtAuthorizer::<Claims>::from_secret(SECRET)
                .validation(JaValidation::new().iss(&[ISSUER]))
                .build()
                .await
                .expect("jwt-authorizer build");
            // jwt-authorizer 0.15 is written against axum 0.7: its service needs
            // `S::Response: From<AuthError>`, implemented only for axum-0.7 `Response`.
            // Adapter: convert the inner (axum 0.8) response body to an axum 0.7 body; the
            // resulting Response<axum07::Body> is IntoResponse for axum 0.8 again.
            let stack = tower::ServiceBuilder::new()
                .layer(vec![auth].into_layer())
                .map_response(|res: Response| res.map(axum07::body::Body::new));
            r.route("/me", get(me_jwt_authorizer)).layer(stack)
        }
        "tower_sessions" => {
            use tower_sessions::{
                session::{Id, Record},
                MemoryStore, SessionManagerLayer, SessionStore,
            };
            let store = MemoryStore::default();
            let exp = time::OffsetDateTime::now_utc() + time::Duration::days(1);
            for i in 0..N_USERS_CACHE {
                let mut rec = Record { id: Id(session_id_i128(i)), data: session_data(i), expiry_date: exp };
                store.create(&mut rec).await.unwrap();
                assert_eq!(rec.id.0, session_id_i128(i));
            }
            r.route("/me", get(me_session))
                .layer(SessionManagerLayer::new(store).with_secure(false))
        }
        "tower_sessions_moka" => {
            use tower_sessions14::{
                session::{Id, Record},
                SessionManagerLayer, SessionStore,
            };
            use tower_sessions_moka_store::MokaStore;
            let store = MokaStore::new(Some(100_000));
            let exp = time::OffsetDateTime::now_utc() + time::Duration::days(1);
            for i in 0..N_USERS_CACHE {
                let mut rec = Record { id: Id(session_id_i128(i)), data: session_data(i), expiry_date: exp };
                store.create(&mut rec).await.unwrap();
                assert_eq!(rec.id.0, session_id_i128(i));
            }
            r.route("/me", get(me_session14))
                .layer(SessionManagerLayer::new(store).with_secure(false))
        }
        other => panic!("unknown variant {other}"),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let variant = args.next().expect("usage: server <variant> <port>");
    let port: u16 = args.next().map(|p| p.parse().unwrap()).unwrap_or(3000);
    // `jwt_awslc` = the `jwt` variant with jsonwebtoken's aws-lc-rs backend (needs --features awslc)
    let (variant, backend) = match variant.as_str() {
        "jwt_awslc" => ("jwt".to_string(), "aws_lc"),
        "jwt_moka_awslc" => ("jwt_moka".to_string(), "aws_lc"),
        _ => (variant, "rust_crypto"),
    };
    install_jwt_backend(backend);

    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Ok(w) = std::env::var("WORKERS") {
        b.worker_threads(w.parse().unwrap());
    }
    let rt = b.enable_all().build().unwrap();
    rt.block_on(async move {
        let app = build(&variant).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        eprintln!(
            "variant={variant} jwt_backend={backend} listening=127.0.0.1:{port} tokio_workers={}",
            tokio::runtime::Handle::current().metrics().num_workers()
        );
        axum::serve(listener, app).await.unwrap();
    });
}
