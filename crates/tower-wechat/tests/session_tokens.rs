//! End to end, our session tokens: key rotation, re-issue near expiry (and never past the
//! session), cookies that are cleared when dead, bad tokens answered 400/401, logout ending
//! tokens at once, and no secret in logs or responses.

mod common;

use std::sync::Arc;
use std::time::Duration;
use wechat_login_test_support::Captured;

use common::{HOUR, SECRET, start};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use tower_wechat::{AppKind, KeyRing, SigningKey, TokenConfig, TokenIssuer, WeChatAuthLayer};
use wechat_mock::{Endpoint, Fault};
use wechat_sessions::{SessionRecord, SessionStore};

#[tokio::test]
async fn tokens_survive_key_rotation_until_the_old_key_is_dropped() {
    let s = start().await;
    let old = s.login("o_ivan").await;
    // Other layers over the same store and app, with rotated keys.
    let store = s.auth.sessions().store().clone();
    let client = s.auth.sessions().client().clone();
    let rotated = KeyRing::new(SigningKey::hs256("k2", &[7; 32]).unwrap())
        .with_previous(SigningKey::hs256("k1", SECRET).unwrap());
    let dropped = KeyRing::new(SigningKey::hs256("k2", &[7; 32]).unwrap());
    let serve = |keys: KeyRing| {
        let layer = WeChatAuthLayer::builder(client.clone(), keys)
            .store(store.clone())
            .build()
            .unwrap()
            .required();
        let router = axum::Router::new()
            .route("/me", axum::routing::get(|| async { "ok" }))
            .layer(layer);
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move { axum::serve(listener, router).await });
            format!("http://{addr}/me")
        }
    };
    let during = serve(rotated).await;
    let after = serve(dropped).await;
    let status = |url: String, token: String| {
        let http = s.http.clone();
        async move {
            http.get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(status(during.clone(), old.clone()).await, StatusCode::OK);
    assert_eq!(status(after, old).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cookie_clients_get_a_reissued_cookie_that_no_cache_may_keep() {
    let s = start().await;
    let token = s.login("o_nina").await;
    let cookie = format!("wechat_session={token}");
    s.advance(Duration::from_secs(4 * 24 * 3600));
    let response = s.with_cookie(reqwest::Method::GET, "/me", &cookie).await;
    assert_eq!(response.status(), StatusCode::OK);
    let set = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        set.starts_with("wechat_session=") && !set.contains(&token),
        "{set}"
    );
    assert_eq!(response.headers()["cache-control"], "private, no-store");
    assert!(!response.headers().contains_key("x-session-token"));
}

/// The claims of a session token (not verified: the server did that).
fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[tokio::test]
async fn a_reissued_token_never_outlives_the_session() {
    const DAY: u64 = 24 * 3600;
    let s = start().await;
    let mut token = s.login("o_ursula").await;
    let first = claims(&token);
    let (t0, ttl) = (
        first["iat"].as_u64().unwrap(),
        first["exp"].as_u64().unwrap() - first["iat"].as_u64().unwrap(),
    );
    // WeChat's refresh token lives 30 days from the login: the session cannot outlive it.
    let session_end = t0 + 30 * DAY;
    let mut reissued = Vec::new();
    for day in (3..=27).step_by(3) {
        s.advance(Duration::from_secs(3 * DAY));
        let response = s.get("/me", &token).await;
        assert_eq!(response.status(), StatusCode::OK, "day {day}");
        if let Some(fresh) = response.headers().get("x-session-token") {
            token = fresh.to_str().unwrap().to_owned();
            let exp = claims(&token)["exp"].as_u64().unwrap();
            assert!(
                exp <= session_end,
                "a token re-issued on day {} lives {} s past the session",
                (claims(&token)["iat"].as_u64().unwrap() - t0) / DAY,
                exp - session_end
            );
            reissued.push(exp);
        }
    }
    // Re-issued on days 6, 12, 18 and 24; the last one is cut short at the session's end.
    assert_eq!(reissued.len(), 4, "{reissued:?}");
    let last = *reissued.last().unwrap();
    assert!(
        last < t0 + 24 * DAY + ttl,
        "the last token must be cut short"
    );
    // Past the session's end, the last token opens nothing.
    s.advance(Duration::from_secs(session_end + 60 - (t0 + 27 * DAY)));
    assert_eq!(s.me(&token).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_and_logout_responses_are_not_overwritten_by_a_reissue() {
    let s = start().await;
    let old = s.login("o_oscar").await;
    s.advance(Duration::from_secs(4 * 24 * 3600));
    // Logging in again while sending the old token (in its re-issue window).
    let code = s.code("o_oscar").await;
    let response = s
        .http
        .post(format!("{}/auth/wechat/login", s.base))
        .bearer_auth(&old)
        .header("content-type", "application/json")
        .body(json!({ "code": code }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        !response.headers().contains_key("x-session-token"),
        "no token for the old session"
    );
    // Logging out with a cookie in its re-issue window: only the clearing cookie comes back.
    let old_cookie = format!("wechat_session={old}");
    let logout = s
        .with_cookie(reqwest::Method::POST, "/auth/logout", &old_cookie)
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let set: Vec<_> = logout.headers().get_all(SET_COOKIE).iter().collect();
    assert_eq!(set.len(), 1, "{set:?}");
    assert!(set[0].to_str().unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn a_dead_session_cookie_is_cleared() {
    let s = start().await;
    let token = s.login("o_quinn").await;
    assert_eq!(s.post("/auth/logout", &token).await, StatusCode::NO_CONTENT);
    let cookie = format!("wechat_session={token}");
    for path in ["/me", "/healthz"] {
        let response = s.with_cookie(reqwest::Method::GET, path, &cookie).await;
        let set = response
            .headers()
            .get(SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_owned());
        assert!(
            set.as_deref()
                .is_some_and(|c| c.starts_with("wechat_session=;") && c.contains("Max-Age=0")),
            "{path}: {set:?}"
        );
    }
    // A bearer token is not a cookie: nothing to clear.
    let response = s.get("/me", &token).await;
    assert!(!response.headers().contains_key(SET_COOKIE));

    // Forged, grant gone, expired: each cookie is dead, and cleared.
    let cleared = |cookie: String| {
        let s = &s;
        async move {
            let response = s.with_cookie(reqwest::Method::GET, "/me", &cookie).await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{cookie:.40}");
            let set = response
                .headers()
                .get(SET_COOKIE)
                .map(|v| v.to_str().unwrap().to_owned());
            set.is_some_and(|c| c.starts_with("wechat_session=;") && c.contains("Max-Age=0"))
        }
    };
    let live = s.login("o_quinn").await;
    assert!(cleared(format!("wechat_session={live}x")).await, "forged");
    s.mock.revoke("o_quinn");
    s.advance(2 * HOUR);
    assert!(
        cleared(format!("wechat_session={live}")).await,
        "grant gone"
    );
    let other = s.login("o_rita").await;
    s.advance(Duration::from_secs(8 * 24 * 3600));
    assert!(cleared(format!("wechat_session={other}")).await, "expired");
}

#[tokio::test]
async fn session_tokens_slide_near_their_expiry() {
    let s = start().await;
    let token = s.login("o_kim").await;
    let response = s.get("/me", &token).await;
    assert!(!response.headers().contains_key("x-session-token"));
    s.advance(Duration::from_secs(4 * 24 * 3600));
    let response = s.get("/me", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let fresh = response.headers()["x-session-token"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(fresh, token);
    // A client that keeps sending the old token gets the same new one (no signature per request).
    let again = s.get("/me", &token).await;
    assert_eq!(again.headers()["x-session-token"].to_str().unwrap(), fresh);
    s.advance(Duration::from_secs(4 * 24 * 3600));
    assert_eq!(s.me(&token).await.1["error"], "token_expired");
    assert_eq!(s.me(&fresh).await.0, StatusCode::OK);
}

#[tokio::test]
async fn bad_tokens_get_400_or_401_never_5xx() {
    let s = start().await;
    let good = s.login("o_lee").await;
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = |v: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    };
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
        parts[1]
    );
    let mut tampered = parts.clone();
    let payload = b64(&String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1])
            .unwrap(),
    )
    .unwrap()
    .replace("o_lee", "o_eve"));
    tampered[1] = &payload;
    let tampered = tampered.join(".");
    // Another audience, signed with the right key, naming the live session: only the audience
    // check can refuse it.
    let sid = s.me(&good).await.1["session_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let record: Arc<SessionRecord> = s.auth.sessions().store().get(&sid).await.unwrap().unwrap();
    let mut config = TokenConfig::default();
    config.audience = "another-app".into();
    let other_audience = TokenIssuer::new(
        KeyRing::new(SigningKey::hs256("k1", SECRET).unwrap()),
        config,
        Arc::new(s.clock.clone()),
    )
    .unwrap()
    .issue(&record)
    .unwrap()
    .value;
    let cases: Vec<(String, &[u16])> = vec![
        (none, &[401]),
        (tampered, &[401]),
        (other_audience.clone(), &[401]),
        ("a".repeat(10_000), &[400]),
        ("not-a-jwt".into(), &[401]),
        (format!("{good}x"), &[401]),
    ];
    for (token, expected) in cases {
        let status = s.get("/me", &token).await.status().as_u16();
        assert!(expected.contains(&status), "{status} for {token:.40}");
    }
    let (_, refused) = s.me(&other_audience).await;
    assert_eq!(
        refused["error"], "invalid_token",
        "refused for its audience"
    );
    // Non-UTF-8 and malformed headers.
    let raw = |value: &[u8]| {
        let value = value.to_vec();
        let http = s.http.clone();
        let url = format!("{}/me", s.base);
        async move {
            http.get(url)
                .header(
                    AUTHORIZATION,
                    reqwest::header::HeaderValue::from_bytes(&value).unwrap(),
                )
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(raw(b"Bearer \xff\xfe\xfd").await, StatusCode::BAD_REQUEST);
    assert_eq!(raw(b"Bearer ").await, StatusCode::BAD_REQUEST);
    assert_eq!(raw(b"Bearer a b").await, StatusCode::BAD_REQUEST);
    // A valid token with a space inside: malformed, not merely unknown.
    let spaced = format!("Bearer {} x", good.trim_start_matches("Bearer "));
    assert_eq!(raw(spaced.as_bytes()).await, StatusCode::BAD_REQUEST);
    assert_eq!(raw(b"Basic Zm9vOmJhcg==").await, StatusCode::UNAUTHORIZED);
    // Expired.
    s.advance(Duration::from_secs(8 * 24 * 3600));
    let response = s.get("/me", &good).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "token_expired"
    );
}

#[tokio::test]
async fn logout_and_logout_all_reject_tokens_at_once() {
    let s = start().await;
    let phone = s.login("o_grace").await;
    let laptop = s.login("o_grace").await;
    let tablet = s.login("o_grace").await;
    let other = s.login("o_heidi").await;
    assert_eq!(s.me(&phone).await.0, StatusCode::OK);

    assert_eq!(s.post("/auth/logout", &phone).await, StatusCode::NO_CONTENT);
    let (status, body) = s.me(&phone).await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("session_expired"))
    );
    assert_eq!(s.me(&laptop).await.0, StatusCode::OK, "other devices stay");

    assert_eq!(
        s.post("/auth/logout/all", &laptop).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.me(&laptop).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.me(&tablet).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.me(&other).await.0, StatusCode::OK, "other users stay");
    // Logout is idempotent for a token that names an ended session; a forged one is refused.
    assert_eq!(s.post("/auth/logout", &phone).await, StatusCode::NO_CONTENT);
    assert_eq!(
        s.post("/auth/logout", "forged").await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn logout_works_while_wechat_is_down() {
    let s = start().await;
    let token = s.login("o_peggy").await;
    s.advance(2 * HOUR);
    s.mock
        .inject(Endpoint::RefreshToken, Fault::ErrCode(-1), 100);
    assert_eq!(s.me(&token).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s.post("/auth/logout", &token).await, StatusCode::NO_CONTENT);
    s.mock.clear_faults();
    s.advance(Duration::from_secs(61));
    assert_eq!(
        s.me(&token).await.1["error"],
        "session_expired",
        "the session ended"
    );
}

#[tokio::test]
async fn trace_logs_and_responses_hold_no_secret() {
    /// The WeChat credentials a session holds now (read from the store), by value.
    async fn credentials(s: &common::Site, sid: &Value, into: &mut Vec<String>) {
        let sid = sid.as_str().unwrap().parse().unwrap();
        if let Some(record) = s.auth.sessions().store().get(&sid).await.unwrap() {
            match &record.credentials {
                wechat_sessions::Credentials::OAuth {
                    access_token,
                    refresh_token,
                    ..
                } => {
                    into.push(access_token.secret().to_owned());
                    into.push(refresh_token.secret().to_owned());
                }
                wechat_sessions::Credentials::MiniProgram { session_key } => {
                    into.push(session_key.secret().to_owned());
                }
                _ => {}
            }
        }
    }

    // Other tests' logs land here too, which only widens the check.
    let captured = Captured::install_global();

    let s = start().await;
    let mut responses = String::new();
    let headers = |response: &reqwest::Response| format!("{:?}\n", response.headers());
    let mut codes = Vec::new();
    let mut session_tokens = Vec::new();
    let mut sids = Vec::new();

    // Code login, profile, a refresh, a refresh WeChat refuses for a while (warn paths),
    // a re-issued token, logout.
    let code = s.code("o_mallory").await;
    codes.push(code.clone());
    let login = s
        .post_json("/auth/wechat/login", json!({ "code": code }).to_string())
        .await;
    responses.push_str(&headers(&login));
    let body = login.text().await.unwrap();
    responses.push_str(&body);
    let token = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    session_tokens.push(token.clone());
    let me = s.get("/me", &token).await;
    responses.push_str(&headers(&me));
    let me = me.text().await.unwrap();
    sids.push(serde_json::from_str::<Value>(&me).unwrap()["session_id"].clone());
    responses.push_str(&me);
    let mut wechat_secrets = vec![s.mock.secret().to_owned()];
    credentials(&s, &sids[0], &mut wechat_secrets).await;
    let profile = s.get("/me/profile", &token).await;
    responses.push_str(&headers(&profile));
    responses.push_str(&profile.text().await.unwrap());
    s.advance(2 * HOUR);
    s.mock.inject(Endpoint::RefreshToken, Fault::ErrCode(-1), 3);
    responses.push_str(&s.get("/me", &token).await.text().await.unwrap());
    s.mock.clear_faults();
    s.advance(Duration::from_secs(61));
    responses.push_str(&s.get("/me", &token).await.text().await.unwrap());
    credentials(&s, &sids[0], &mut wechat_secrets).await;
    s.advance(Duration::from_secs(4 * 24 * 3600));
    let reissued = s.get("/me", &token).await;
    responses.push_str(&headers(&reissued));
    if let Some(fresh) = reissued.headers().get("x-session-token") {
        session_tokens.push(fresh.to_str().unwrap().to_owned());
    }

    // A Mini Program login (its session key stays on the server).
    let mp_code = s.code_for(AppKind::MiniProgram, "o_mini", None).await;
    codes.push(mp_code.clone());
    let mini = s
        .post_json(
            "/auth/wechat/miniprogram/login",
            json!({ "code": mp_code }).to_string(),
        )
        .await;
    responses.push_str(&headers(&mini));
    let mini: Value = mini.json().await.unwrap();
    responses.push_str(&mini.to_string());
    let mini_token = mini["token"].as_str().unwrap().to_owned();
    sids.push(s.me(&mini_token).await.1["session_id"].clone());
    session_tokens.push(mini_token);

    // The web flow: binding cookie, state and code in the callback query, cookie requests.
    let web = s.web_login("o_web").await;
    let callback_code = reqwest::Url::parse(&web.callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    codes.push(callback_code);
    let done = s
        .http
        .get(&web.callback)
        .header(COOKIE, &web.binding)
        .send()
        .await
        .unwrap();
    let cookie = done
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("wechat_session="))
        .unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    session_tokens.push(cookie.trim_start_matches("wechat_session=").to_owned());
    let me = s.with_cookie(reqwest::Method::GET, "/me", &cookie).await;
    sids.push(me.json::<Value>().await.unwrap()["session_id"].clone());
    for sid in &sids {
        credentials(&s, sid, &mut wechat_secrets).await;
    }
    s.post("/auth/logout", &token).await;
    s.post_login("/auth/wechat/login", json!({ "code": "bogus" }).to_string())
        .await;

    // The WeChat credentials, read from the store by value at each stage.
    assert!(
        wechat_secrets.len() >= 8,
        "credentials were collected: {}",
        wechat_secrets.len()
    );
    let key_forms = {
        use base64::Engine;
        let hex: String = SECRET.iter().map(|b| format!("{b:02x}")).collect();
        vec![
            String::from_utf8(SECRET.to_vec()).unwrap(),
            hex,
            base64::engine::general_purpose::STANDARD.encode(SECRET),
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET),
        ]
    };

    let logs = captured.text();
    assert!(logs.contains("new session"), "logs were captured");

    let binding = web.binding.split('=').nth(1).unwrap().to_owned();
    let in_logs = wechat_secrets
        .iter()
        .chain(&codes)
        .chain(&session_tokens)
        .chain(&key_forms)
        .chain([&binding]);
    for secret in in_logs {
        assert!(
            !logs.contains(secret.as_str()),
            "{secret:.12}... leaked into the logs"
        );
    }
    for secret in wechat_secrets.iter().chain(&key_forms) {
        assert!(
            !responses.contains(secret.as_str()),
            "{secret:.12}... leaked into a response"
        );
    }
}
