//! Scan-to-log-in with the Official Account, over HTTP against the fake WeChat, which makes the
//! QR codes and pushes each scan to the site's server URL signed and encrypted (safe mode) as
//! WeChat does: only the browser that showed the code gets the session, once; WeChat's retried
//! pushes, forged pushes, other browsers and expired codes get nothing; the keyword mode; one
//! app access token for many codes.

mod common;

use std::time::Duration;

use common::{OA_TOKEN, OTHER_APPS, Site, start};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, COOKIE, SET_COOKIE};
use tower_wechat::LoginEndpoints;
use wechat_mock::Endpoint;
use wechat_oauth::Clock;
use wechat_sessions::SharedStore;

const OA: &str = OTHER_APPS[1].1;

/// The site's time (Unix seconds) and WeChat's signature of it with `nonce` under the
/// account's token: `sha1(sort(token, timestamp, nonce))`, computed here on its own.
fn signed_now(s: &Site, nonce: &str) -> (String, String) {
    let now = s
        .clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let mut parts = [OA_TOKEN, now.as_str(), nonce];
    parts.sort_unstable();
    let signature = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        parts.concat().as_bytes(),
    )
    .as_ref()
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect();
    (now, signature)
}

fn sessions_of(s: &Site) -> u64 {
    let store = s.auth.sessions().store();
    store.run_pending_tasks();
    store.session_count()
}

/// Break to see it fail: the binding check in `scan_status` (another browser logs in), the
/// `scan-used` marker (a second session from one scan), or `put_value_if_absent` for the scan
/// (a retried push with another openid would take over).
#[tokio::test]
async fn a_scan_logs_in_only_the_browser_that_showed_the_code_and_only_once() {
    let s = start().await;
    let mine = s.scan_start("?return_to=/account").await;
    let ticket = mine.ticket.clone().expect("a QR code");
    assert!(s.mock.qr_scene(&ticket).is_some());
    assert_eq!(
        s.scan_poll(&mine.status_url, Some(&mine.binding)).await.1["status"],
        "pending"
    );

    // The user scans; WeChat, getting no answer in time, pushes the same bytes three times.
    let (status, reply) = s
        .mock
        .scan_qr(&ticket, "o_scanner", Some("u_scanner"), 3)
        .await
        .unwrap();
    assert_eq!((status, reply.as_str()), (200, "success"));

    // Another browser — none, or one with its own scan's binding — gets nothing.
    let other = s.scan_start("").await;
    for cookie in [None, Some(other.binding.as_str())] {
        let (status, body, session) = s.scan_poll(&mine.status_url, cookie).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_state");
        assert!(session.is_none());
    }
    let before = sessions_of(&s);
    let (status, body, session) = s.scan_poll(&mine.status_url, Some(&mine.binding)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "logged_in");
    let session = session.expect("the session cookie");
    let (status, me) = s.me_by_cookie(&session).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["openid"], "o_scanner");
    assert_eq!(me["unionid"], "u_scanner", "looked up with the app token");
    assert_eq!(me["app"], "oa");
    assert_eq!(sessions_of(&s), before + 1);

    // Once: the same browser polling again, and the user scanning again, open nothing more.
    assert_eq!(
        s.scan_poll(&mine.status_url, Some(&mine.binding)).await.1["status"],
        "expired"
    );
    let (status, _) = s.mock.scan_qr(&ticket, "o_scanner", None, 1).await.unwrap();
    assert_eq!(status, 200);
    let (_, body, session) = s.scan_poll(&mine.status_url, Some(&mine.binding)).await;
    assert_eq!(body["status"], "expired");
    assert!(session.is_none());
    assert_eq!(sessions_of(&s), before + 1);
}

/// A browser at the start page gets the QR page (polling by refresh, its CSP allowing the
/// image's origin), and following the refresh after the scan lands logged in where it asked.
#[tokio::test]
async fn the_browser_page_polls_and_lands_where_it_asked() {
    let s = start().await;
    let page = s
        .http
        .get(format!(
            "{}/auth/wechat/scan/start?return_to=/account",
            s.base
        ))
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("img-src 'self' {}", s.mock.base_url())),
        "{csp}"
    );
    let binding = common::first_cookie(&page);
    assert!(
        page.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("HttpOnly")
    );
    let html = page.text().await.unwrap();
    let refresh = html
        .split("content=\"2;url=")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    assert!(html.contains("/mock/qr/"), "the sandbox link: {html}");
    let ticket = common::query_param(&format!("http://x{refresh}"), "qr").unwrap();
    let again = s
        .with_cookie(reqwest::Method::GET, &refresh, &binding)
        .await;
    assert_eq!(
        again.status(),
        StatusCode::OK,
        "still pending: the page again"
    );
    s.mock.scan_qr(&ticket, "o_browser", None, 1).await.unwrap();
    let landed = s
        .http
        .get(format!("{}{refresh}", s.base))
        .header(COOKIE, &binding)
        .header(ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(landed.status(), StatusCode::SEE_OTHER);
    assert_eq!(landed.headers()["location"], "/account");
    let cookies: Vec<_> = landed
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert!(
        cookies.iter().any(|c| c.contains("Max-Age=0")),
        "the binding cleared: {cookies:?}"
    );
    assert!(common::session_cookie(&landed).is_some());
}

/// Break to see it fail: `scan_push` marking a scene whose HMAC it did not check.
#[tokio::test]
async fn pushes_not_from_wechat_or_for_no_current_code_change_nothing() {
    let s = start().await;
    let mine = s.scan_start("").await;
    let events = format!("{}/auth/wechat/scan/events", s.base);
    // Not signed with the account's token: refused.
    let forged = s
        .http
        .post(format!(
            "{events}?signature=0&timestamp=1&nonce=2&encrypt_type=aes&msg_signature=3"
        ))
        .body("<xml><Encrypt><![CDATA[AAAA]]></Encrypt></xml>")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // The handshake answers the challenge only when signed.
    let (now, signature) = signed_now(&s, "42");
    let echo = s
        .http
        .get(format!(
            "{events}?signature={signature}&timestamp={now}&nonce=42&echostr=hello"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(echo.status(), StatusCode::OK);
    assert_eq!(echo.text().await.unwrap(), "hello");
    let bad_echo = s
        .http
        .get(format!(
            "{events}?signature={}&timestamp={now}&nonce=42&echostr=hello",
            "0".repeat(40)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_echo.status(), StatusCode::FORBIDDEN);

    // WeChat's genuine push of a QR code whose scene is not one of ours (made by someone else
    // with this account's token; shaped like ours, unexpired, but not signed with our key):
    // taken, and nothing is written.
    use base64::Engine;
    let token = s
        .auth
        .sessions()
        .app_token(&wechat_oauth::AppId::new(OA))
        .await
        .unwrap();
    let client = common::client(&s.mock, OA, OTHER_APPS[1].2);
    let mut bytes = [7u8; 24];
    bytes[..4].copy_from_slice(&(now.parse::<u32>().unwrap() + 300).to_be_bytes());
    let scene = format!(
        "s{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let foreign = client
        .create_qr_scene(&token, &scene, Duration::from_secs(300))
        .await
        .unwrap();
    let (status, reply) = s
        .mock
        .scan_qr(&foreign.ticket, "o_victim", None, 1)
        .await
        .unwrap();
    assert_eq!((status, reply.as_str()), (200, "success"));
    let written = s
        .auth
        .sessions()
        .store()
        .get_value(&format!("scan:{scene}"))
        .await
        .unwrap();
    assert!(written.is_none(), "a scene we did not sign is not written");
    assert_eq!(
        s.scan_poll(&mine.status_url, Some(&mine.binding)).await.1["status"],
        "pending"
    );

    // An expired code: the scan is ignored, the browser learns it expired.
    s.advance(Duration::from_secs(301));
    assert_eq!(
        s.scan_poll(&mine.status_url, Some(&mine.binding)).await.1["status"],
        "expired"
    );
}

#[test]
fn the_accounts_token_and_key_never_show() {
    let scan = tower_wechat::ScanLogin::new(OA_TOKEN)
        .encoding_aes_key(common::OA_AES_KEY, wechat_oauth::PushMode::Safe);
    let shown = format!("{scan:?}");
    assert!(
        !shown.contains(OA_TOKEN) && !shown.contains(common::OA_AES_KEY),
        "{shown}"
    );
}

/// Without an EncodingAESKey the layer is not built unless plain pushes are allowed knowingly;
/// then each signed query is taken with its first body only. Break to see it fail: the
/// `push:` check in `scan_push` (a query seen once would carry any body for 5 minutes).
#[tokio::test]
async fn plain_pushes_need_an_explicit_yes_and_a_query_carries_one_body() {
    use tower_wechat::{KeyRing, ScanLogin, SigningKey, WeChatAuthLayer, WebFlow};
    let s = start().await;
    let oa = || common::client(&s.mock, OA, OTHER_APPS[1].2);
    let keys = || KeyRing::new(SigningKey::hs256("k1", common::SECRET).unwrap());
    let layer = |scan: ScanLogin| {
        WeChatAuthLayer::builder_for(tower_wechat::AppKind::OfficialAccount, oa(), keys())
            .web_flow(WebFlow::at("https://example.com"))
            .scan_login(scan)
            .build()
    };
    let refused = layer(ScanLogin::new(OA_TOKEN)).unwrap_err().to_string();
    assert!(refused.contains("EncodingAESKey"), "{refused}");
    let plain = layer(ScanLogin::new(OA_TOKEN).allow_plain_pushes()).unwrap();
    let endpoints = LoginEndpoints::new(&plain);
    let (now, signature) = signed_now(&s, "7");
    let pairs = vec![
        ("signature".to_owned(), signature),
        ("timestamp".to_owned(), now.clone()),
        ("nonce".to_owned(), "7".to_owned()),
    ];
    let query = wechat_oauth::PushQuery::from_pairs(&pairs);
    let body = |openid: &str| {
        format!(
            "<xml><FromUserName>{openid}</FromUserName><MsgType>event</MsgType><Event>SCAN</Event><EventKey>x</EventKey></xml>"
        )
    };
    assert!(
        endpoints
            .scan_push(&query, body("o_first").as_bytes())
            .await
            .is_ok()
    );
    assert!(
        endpoints
            .scan_push(&query, body("o_first").as_bytes())
            .await
            .is_ok(),
        "WeChat's retry"
    );
    assert_eq!(
        endpoints
            .scan_push(&query, body("o_attacker").as_bytes())
            .await,
        Err(tower_wechat::ScanPushError::Refused(
            wechat_oauth::PushError::BadSignature
        ))
    );
}

/// Every start spends the account's QR quota: a client past its start limit is answered 429
/// before WeChat is asked, other clients are not. Break to see it fail: `scan_start` giving
/// the place back after a code was made.
#[tokio::test]
async fn starting_codes_is_limited_per_client() {
    use tower_wechat::{KeyRing, LoginLimits, ScanLogin, SigningKey, WeChatAuthLayer, WebFlow};
    let s = start().await;
    let scan = ScanLogin::new(OA_TOKEN)
        .encoding_aes_key(common::OA_AES_KEY, wechat_oauth::PushMode::Safe)
        .start_limits(LoginLimits::default().failures(2, 0, Duration::from_secs(60)));
    let layer = WeChatAuthLayer::builder_for(
        tower_wechat::AppKind::OfficialAccount,
        common::client(&s.mock, OA, OTHER_APPS[1].2),
        KeyRing::new(SigningKey::hs256("k1", common::SECRET).unwrap()),
    )
    .web_flow(WebFlow::at("https://example.com"))
    .scan_login(scan)
    .build()
    .unwrap();
    let endpoints = LoginEndpoints::new(&layer);
    let made = s.mock.calls(Endpoint::QrCodeCreate);
    for _ in 0..2 {
        endpoints
            .scan_start(false, None, Some("203.0.113.7"))
            .await
            .unwrap();
    }
    let refused = endpoints.scan_start(false, None, Some("203.0.113.7")).await;
    assert!(
        matches!(refused, Err(tower_wechat::AuthError::TooManyAttempts(_))),
        "{refused:?}"
    );
    assert_eq!(
        s.mock.calls(Endpoint::QrCodeCreate) - made,
        2,
        "WeChat not asked"
    );
    endpoints
        .scan_start(true, None, Some("198.51.100.1"))
        .await
        .unwrap();
}

/// Accounts without parametric codes: the page shows a code, the user sends it as a message.
#[tokio::test]
async fn the_keyword_mode_logs_in_the_sender_of_the_code() {
    let s = start().await;
    let mine = s.scan_start("?keyword=1").await;
    let code = mine.keyword.clone().expect("a keyword");
    assert_eq!(code.len(), 8);
    assert!(mine.ticket.is_none());
    // Another message (not a code) changes nothing.
    s.mock.send_text(OA, "o_writer", "hello").await.unwrap();
    assert_eq!(
        s.scan_poll(&mine.status_url, Some(&mine.binding)).await.1["status"],
        "pending"
    );
    let (status, reply) = s
        .mock
        .send_text(OA, "o_writer", &format!(" {code} "))
        .await
        .unwrap();
    assert_eq!((status, reply.as_str()), (200, "success"));
    let (_, body, session) = s.scan_poll(&mine.status_url, Some(&mine.binding)).await;
    assert_eq!(body["status"], "logged_in");
    let (_, me) = s.me_by_cookie(&session.unwrap()).await;
    assert_eq!(me["openid"], "o_writer");
}

/// Break to see it fail: `scan_start` fetching a token per code instead of `with_app_token`.
#[tokio::test]
async fn a_thousand_codes_take_one_app_access_token() {
    let s = start().await;
    let endpoints = LoginEndpoints::new(&s.auth);
    let tokens_before = s.mock.calls(Endpoint::StableToken);
    for _ in 0..1_000 {
        let started = endpoints.scan_start(false, None, None).await.unwrap();
        assert!(started.qr_image_url.is_some());
        let cookie = started.binding_cookie.as_ref().unwrap().to_str().unwrap();
        let value = cookie.split(';').next().unwrap().split('=').nth(1).unwrap();
        assert!(
            !format!("{started:?}").contains(value),
            "the binding never shows"
        );
    }
    assert_eq!(s.mock.calls(Endpoint::QrCodeCreate), 1_000);
    assert_eq!(s.mock.calls(Endpoint::StableToken) - tokens_before, 1);
}
