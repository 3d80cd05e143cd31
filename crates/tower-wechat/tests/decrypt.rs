//! A Mini Program user's `encryptedData`, opened through the extractor with the session's own
//! key: the data WeChat sealed for this session opens; another app's, stale or tampered data
//! and a non-Mini-Program session are 400s that name the cause and never the key.

mod common;

use common::client;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::cipher::{AES_128, EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;
use axum::Router;
use axum::body::Body;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tower_wechat::{
    AppKind, CodeLogin, KeyRing, LoginEndpoints, SigningKey, WeChatAuthLayer, WeChatUser,
};
use wechat_mock::{MockConfig, MockGrant, MockWeChat};
use wechat_oauth::EncryptedData;
use wechat_sessions::{Credentials, SessionStore};

const MP: &str = "wxminiprogram00001";
const IV: [u8; 16] = *b"fedcba9876543210";

/// `POST /decrypt` with `{"encrypted_data","iv"}`: the plaintext, or the layer's rejection.
async fn decrypt(
    user: WeChatUser,
    body: axum::Json<serde_json::Value>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let data = EncryptedData {
        encrypted_data: body["encrypted_data"].as_str().unwrap_or(""),
        iv: body["iv"].as_str().unwrap_or(""),
        ..EncryptedData::default()
    };
    match user.decrypt(&data, Duration::from_secs(600)).await {
        Ok(value) => axum::Json(value).into_response(),
        Err(error) => error.to_response(),
    }
}

/// A layer serving the mobile app and the Mini Program of a fresh fake, its endpoints, and the
/// app with `POST /decrypt` behind it.
async fn setup() -> (MockWeChat, WeChatAuthLayer, LoginEndpoints, Router) {
    let mock = MockWeChat::start(MockConfig::default().with_app(MP, "mp-secret-0123456789"))
        .await
        .unwrap();
    let keys = KeyRing::new(SigningKey::hs256("k1", &[3; 32]).unwrap());
    let layer = WeChatAuthLayer::builder(client(&mock, mock.appid(), mock.secret()), keys)
        .app(
            AppKind::MiniProgram,
            client(&mock, MP, "mp-secret-0123456789"),
        )
        .build()
        .unwrap();
    let endpoints = LoginEndpoints::new(&layer);
    let app = Router::new()
        .route("/decrypt", post(decrypt))
        .layer(layer.clone());
    (mock, layer, endpoints, app)
}

/// `POST /decrypt` with `token` and `{"encrypted_data","iv"}`: the status and body.
async fn call(app: &Router, token: &str, encrypted_data: &str, iv: &str) -> (StatusCode, String) {
    let body = serde_json::json!({"encrypted_data": encrypted_data, "iv": iv});
    let request = Request::post("/decrypt")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

/// What WeChat does for the client: `json` sealed under the session key.
fn seal(session_key: &str, json: &str) -> String {
    let key = STANDARD.decode(session_key).unwrap();
    let cipher =
        PaddedBlockEncryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_128, &key).unwrap())
            .unwrap();
    let mut bytes = json.as_bytes().to_vec();
    cipher
        .less_safe_encrypt(&mut bytes, EncryptionContext::Iv128(FixedLength::from(IV)))
        .unwrap();
    STANDARD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn a_mini_program_session_opens_its_own_data_and_refuses_the_rest() {
    let (mock, layer, endpoints, app) = setup().await;
    let mp_grant = MockGrant {
        appid: Some(MP.into()),
        ..MockGrant::default()
    };
    let mp = endpoints
        .login_mini_program(CodeLogin::new(&mock.mint_code(mp_grant)))
        .await
        .unwrap();
    let mobile = endpoints
        .login(CodeLogin::new(&mock.mint_code(MockGrant::default())))
        .await
        .unwrap();
    let record = layer
        .sessions()
        .store()
        .get(&mp.record.sid)
        .await
        .unwrap()
        .unwrap();
    let Credentials::MiniProgram { session_key } = &record.credentials else {
        panic!("a Mini Program session holds a session key");
    };
    let key = session_key.secret().to_owned();
    let iv = STANDARD.encode(IV);
    let data = |appid: &str, at: u64| {
        format!(
            r#"{{"purePhoneNumber":"13800000000","watermark":{{"appid":"{appid}","timestamp":{at}}}}}"#
        )
    };

    let (status, body) = call(&app, &mp.token.value, &seal(&key, &data(MP, now())), &iv).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("13800000000"));

    for (sealed, why) in [
        (
            seal(&key, &data("wxanotherapp000001", now())),
            "another app",
        ),
        (seal(&key, &data(MP, now() - 3600)), "too old"),
        (
            seal(&STANDARD.encode(*b"a newer key 0123"), &data(MP, now())),
            "wx.login",
        ),
    ] {
        let (status, body) = call(&app, &mp.token.value, &sealed, &iv).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body.contains(r#""error":"invalid_encrypted_data""#),
            "{body}"
        );
        assert!(body.contains(why), "{body}");
        assert!(!body.contains(&key), "the key never leaves the server");
    }

    // A mobile-app session holds no session key.
    let (status, body) = call(
        &app,
        &mobile.token.value,
        &seal(&key, &data(MP, now())),
        &iv,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("invalid_request"), "{body}");
}

#[tokio::test]
async fn data_from_the_fake_opens_for_every_session_of_the_user_and_names_wx_login_for_an_unseen_one()
 {
    let (mock, _layer, endpoints, app) = setup().await;
    let grant = || MockGrant {
        appid: Some(MP.into()),
        openid: Some("o_mp_user".into()),
        ..MockGrant::default()
    };
    let login = || async {
        endpoints
            .login_mini_program(CodeLogin::new(&mock.mint_code(grant())))
            .await
            .unwrap()
    };
    let older = login().await;
    let newer = login().await;
    // The phone's part: WeChat seals the data under the user's latest session key, which the
    // newer login brought: the older session uses it too.
    let seal = || {
        mock.seal_user_data(
            MP,
            "o_mp_user",
            &serde_json::json!({"purePhoneNumber": "13800000000"}),
        )
        .unwrap()
    };
    let (encrypted, iv) = seal();
    for session in [&newer, &older] {
        let (status, body) = call(&app, &session.token.value, &encrypted, &iv).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("13800000000") && body.contains(MP), "{body}");
    }
    // A wx.login whose code never reached this server: its key is unknown here.
    let unseen = mock.mint_code(grant());
    client(&mock, MP, "mp-secret-0123456789")
        .jscode2session(&wechat_oauth::AuthCode::new(unseen))
        .await
        .unwrap();
    let (encrypted, iv) = seal();
    let (status, body) = call(&app, &older.token.value, &encrypted, &iv).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("wx.login"), "{body}");
}
