//! The fuzz targets' bodies, shared by the cargo-fuzz binaries (`fuzz_targets/`) and by the
//! test that runs them over the checked-in corpus and many generated inputs on the stable
//! toolchain (`tests/fuzz_targets.rs`). Each takes any bytes and must not panic; where a
//! property holds (a decoded value re-encodes unchanged, an issued state verifies), it is
//! asserted.

#![allow(dead_code)]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_wechat::{
    AppKind, KeyRing, SigningKey, StateSigner, TokenConfig, TokenIssuer, WeChatAuthLayer,
};
use wechat_oauth::{AppId, AppSecret, Client, EncryptedData, ManualClock, SessionKey};

/// A fixed instant, so every run sees the same clock.
fn epoch() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_780_000_000)
}

/// WeChat's answers: every endpoint's parser and result builder.
pub fn wechat_response(data: &[u8]) {
    wechat_oauth::fuzzing::answers(data);
}

fn issuer() -> &'static TokenIssuer {
    static ISSUER: OnceLock<TokenIssuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        TokenIssuer::new(
            KeyRing::new(SigningKey::hs256("k1", b"fuzz-secret-0123456789abcdef0123").unwrap()),
            TokenConfig::default(),
            Arc::new(ManualClock::new(epoch())),
        )
        .unwrap()
    })
}

/// The session-token verifier: any text is verified or refused, never a panic.
pub fn session_token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = issuer().verify_at(&text, epoch());
}

/// Bearer and cookie extraction, through the layer: `data` split into an `Authorization` and a
/// `Cookie` header. The answer is the handler's (200) or a refusal (400 or 401), never a 500.
pub fn credentials(data: &[u8]) {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    static LAYER: OnceLock<WeChatAuthLayer> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    });
    let layer = LAYER.get_or_init(|| {
        let clock = Arc::new(ManualClock::new(epoch()));
        let client = Client::builder(AppId::new("wxfuzz"), AppSecret::new("fuzz"))
            .api_base("http://127.0.0.1:9")
            .clock(clock)
            .build()
            .unwrap();
        let keys =
            KeyRing::new(SigningKey::hs256("k1", b"fuzz-secret-0123456789abcdef0123").unwrap());
        let _ = AppKind::MobileApp;
        WeChatAuthLayer::builder(client, keys)
            .build()
            .unwrap()
            .required()
    });
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (authorization, cookie) = (&data[..split], data.get(split + 1..).unwrap_or(&[]));
    let mut request = Request::new(String::new());
    if let Ok(value) = HeaderValue::from_bytes(authorization) {
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    if let Ok(value) = HeaderValue::from_bytes(cookie) {
        request.headers_mut().insert(header::COOKIE, value);
    }
    let handler = tower::service_fn(|_: Request<String>| async {
        Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let status = runtime.block_on(async {
        let mut service = layer.layer(handler);
        let service = service.ready().await.unwrap();
        service.call(request).await.unwrap().status()
    });
    assert!(
        matches!(
            status,
            StatusCode::OK | StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED
        ),
        "{status}"
    );
}

/// The OAuth state: any text is refused or accepted; an issued state verifies with its binding
/// and page, and not with others.
pub fn oauth_state(data: &[u8]) {
    static SIGNER: OnceLock<StateSigner> = OnceLock::new();
    let signer = SIGNER.get_or_init(|| {
        StateSigner::from_secret(b"fuzz-state-secret", Arc::new(ManualClock::new(epoch())))
    });
    let text = String::from_utf8_lossy(data);
    let _ = signer.verify(&text, "binding", "/");
    let middle = (0..=text.len() / 2)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let (binding, return_to) = text.split_at(middle);
    let state = signer.issue(AppKind::Website, binding, return_to);
    assert!(signer.verify(state.as_str(), binding, return_to).is_ok());
    assert!(
        signer
            .verify(state.as_str(), &format!("{binding}x"), return_to)
            .is_err()
    );
}

/// What the stores keep: a Redis record's plaintext, a shared login outcome, a shared app
/// token — decoded, and re-encoded unchanged when they decode.
pub fn stored_values(data: &[u8]) {
    wechat_redis_store::fuzzing::record(data);
    wechat_sessions::fuzzing::shared_values(data);
}

/// The Mini Program decryptor: `data` split into encryptedData, iv, rawData and signature.
pub fn user_data(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\n');
    let encrypted_data = parts.next().unwrap_or("");
    let iv = parts.next().unwrap_or("");
    let raw_data = parts.next();
    let signature = parts.next();
    let key = SessionKey::new("tiihtNczf5v6AKRyjwEUhQ==");
    let data = EncryptedData {
        encrypted_data,
        iv,
        raw_data,
        signature,
    };
    let _ = wechat_oauth::decrypt_user_data(
        &key,
        &data,
        &AppId::new("wx4f4bc4dec97d474b"),
        epoch(),
        Duration::from_secs(600),
    );
}

/// A target: any bytes in, a panic only for a bug.
pub type Target = fn(&[u8]);

/// Every target by name, for the corpus runner.
pub const TARGETS: [(&str, Target); 6] = [
    ("wechat_response", wechat_response),
    ("session_token", session_token),
    ("credentials", credentials),
    ("oauth_state", oauth_state),
    ("stored_values", stored_values),
    ("user_data", user_data),
];
