//! Attacks on login and on the server, through real HTTP against a site built with the layer,
//! its login endpoints and `serve`: replayed codes and states, logout-all during an outage,
//! login floods, idle and half-sent connections, and malformed bodies, cookies and upstream
//! replies. Each test failed before the fix it pins.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{HOUR, Site, session_cookie, start, start_configured};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, RETRY_AFTER, SET_COOKIE};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_wechat::AppKind;
use tower_wechat::LoginLimits;
use tower_wechat::ServeLimits;
use wechat_mock::{Endpoint, Fault, MockConfig};
use wechat_oauth::{AppId, OpenId};
use wechat_sessions::{SessionStore, SharedStore, UserId};

const REQUEST_ID: &str = "app-retry-0123456789";

trait SiteExt {
    async fn login_body(&self, path: &str, body: Value) -> (StatusCode, Value);
    async fn session_of(&self, token: &str) -> Value;
}

impl SiteExt for Site {
    async fn login_body(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.post_login(path, body.to_string()).await
    }

    /// The session id behind a session token, from `/me`.
    async fn session_of(&self, token: &str) -> Value {
        self.me(token).await.1["session_id"].clone()
    }
}

fn code_in(callback: &str) -> String {
    let url = reqwest::Url::parse(callback).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

async fn callback_in(s: &Site, url: &str, binding: Option<&str>) -> reqwest::Response {
    let mut request = s.http.get(url);
    if let Some(binding) = binding {
        request = request.header(COOKIE, binding);
    }
    request.send().await.unwrap()
}

async fn me_by_cookie(s: &Site, cookie: &str) -> Value {
    let me = s.with_cookie(reqwest::Method::GET, "/me", cookie).await;
    me.json::<Value>().await.unwrap()
}

#[tokio::test]
async fn a_code_from_a_finished_web_login_opens_nothing_else() {
    let s = start().await;
    let login = s.web_login("o_victim").await;
    let done = callback_in(&s, &login.callback, Some(&login.binding)).await;
    assert_eq!(done.status(), StatusCode::FOUND);
    let cookie = session_cookie(&done).unwrap();
    let session = me_by_cookie(&s, &cookie).await["session_id"].clone();
    assert!(session.is_string());

    // The leaked code (history, proxy logs, Referer) at the JSON endpoints: refused. Those are
    // other apps' endpoints, so WeChat does not know the code there (40029).
    let code = code_in(&login.callback);
    for body in [
        json!({ "code": code }),
        json!({ "code": code, "request_id": REQUEST_ID }),
    ] {
        for path in ["/auth/wechat/login", "/auth/wechat/miniprogram/login"] {
            let (status, answer) = s.login_body(path, body.clone()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {answer}");
            assert_eq!(answer["error"], "invalid_code");
            assert_eq!(answer["errcode"], 40029);
            assert!(answer.get("token").is_none());
        }
    }
    // The callback URL in another browser (no binding cookie, or another one): refused.
    let elsewhere = callback_in(&s, &login.callback, None).await;
    assert_eq!(elsewhere.status(), StatusCode::BAD_REQUEST);
    let other = s.web_login("o_attacker").await;
    let crossed = callback_in(&s, &login.callback, Some(&other.binding)).await;
    assert_eq!(crossed.status(), StatusCode::BAD_REQUEST);
    // WeChat calling the callback twice, in the same browser: the same session.
    let twice = callback_in(&s, &login.callback, Some(&login.binding)).await;
    assert_eq!(twice.status(), StatusCode::FOUND);
    let again = session_cookie(&twice).unwrap();
    assert_eq!(me_by_cookie(&s, &again).await["session_id"], session);
    let web = s.appid(AppKind::Website);
    assert_eq!(
        s.mock.app_calls(web, Endpoint::AccessToken),
        1,
        "one exchange with the website's credentials"
    );
}

#[tokio::test]
async fn a_state_is_single_use() {
    let s = start().await;
    let login = s.web_login("o_grace").await;
    let done = callback_in(&s, &login.callback, Some(&login.binding)).await;
    assert_eq!(done.status(), StatusCode::FOUND);
    // The same state and binding with a new code (a second approval): refused.
    let second = s
        .approve(&login.redirect_uri, &login.state, "o_grace")
        .await;
    assert_ne!(code_in(&second), code_in(&login.callback));
    let reused = callback_in(&s, &second, Some(&login.binding)).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    let body = reused.json::<Value>().await.unwrap();
    assert_eq!(body["error"], "invalid_state", "{body}");
    assert_eq!(s.mock.calls(Endpoint::AccessToken), 1, "WeChat never asked");
}

#[tokio::test]
async fn a_json_retry_gets_the_same_session_only_with_its_request_id_within_the_window() {
    let s = start().await;
    let code = s.code("o_heidi").await;
    let first = json!({ "code": code, "request_id": REQUEST_ID });
    let (status, body) = s.login_body("/auth/wechat/login", first.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = s.session_of(body["token"].as_str().unwrap()).await;

    s.advance(Duration::from_secs(60));
    let (status, retry) = s.login_body("/auth/wechat/login", first.clone()).await;
    assert_eq!(status, StatusCode::OK, "{retry}");
    assert_eq!(
        s.session_of(retry["token"].as_str().unwrap()).await,
        session
    );
    for stranger in [
        json!({ "code": code }),
        json!({ "code": code, "request_id": "another-client-01234" }),
    ] {
        let (status, body) = s.login_body("/auth/wechat/login", stranger).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    s.advance(Duration::from_secs(1));
    let (status, late) = s.login_body("/auth/wechat/login", first).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "after the window: {late}");
    assert_eq!(late["errcode"], 40163);
    assert_eq!(s.mock.calls(Endpoint::AccessToken), 1);
}

/// The exchange is held up at WeChat, so the submits certainly overlap; none carries a request
/// id, so only sharing the one exchange in flight can answer them all. Break to see it fail:
/// no in-flight sharing in `login.rs` (each submit exchanging for itself: 40163 for all but one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_submits_make_one_exchange_and_one_session() {
    // Fifty submits in flight at once from one client are over its limit of exchanges in
    // flight (20): lifted here, this is about sharing.
    let limits = LoginLimits::default().failures(100, 1_000, Duration::from_secs(60));
    let s = start_configured(MockConfig::default(), limits, common::many_clients()).await;
    let code = s.code("o_ivan").await;
    s.mock.inject(
        Endpoint::AccessToken,
        Fault::Delay(Duration::from_millis(500)),
        1,
    );
    let body = json!({ "code": code }).to_string();
    let submits = (0..50).map(|_| s.post_login("/auth/wechat/login", body.clone()));
    let answers = futures::future::join_all(submits).await;
    let mut sessions = Vec::new();
    for (status, body) in answers {
        assert_eq!(status, StatusCode::OK, "{body}");
        sessions.push(s.session_of(body["token"].as_str().unwrap()).await);
    }
    assert!(sessions[0].is_string());
    assert!(sessions.iter().all(|sid| *sid == sessions[0]));
    assert_eq!(s.mock.calls(Endpoint::AccessToken), 1);
}

#[tokio::test]
async fn logout_all_works_while_wechat_is_down_and_the_access_token_has_expired() {
    let s = start().await;
    let phone = s.login("o_judy").await;
    let laptop = s.login("o_judy").await;
    let lost = s.login("o_judy").await;
    let bystander = s.login("o_ken").await;
    s.advance(2 * HOUR);
    s.mock
        .inject(Endpoint::RefreshToken, Fault::ErrCode(-1), 1_000);
    assert_eq!(s.me(&phone).await.0, StatusCode::SERVICE_UNAVAILABLE);

    assert_eq!(
        s.post("/auth/logout/all", &phone).await,
        StatusCode::NO_CONTENT
    );
    for token in [&phone, &laptop, &lost] {
        let (status, body) = s.me(token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"], "session_expired", "refused at once");
    }
    // Another user's session is untouched (and still waits for WeChat).
    assert_eq!(s.me(&bystander).await.0, StatusCode::SERVICE_UNAVAILABLE);
    // An ended session's token cannot end anything any more.
    assert_eq!(
        s.post("/auth/logout/all", &lost).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn failed_exchanges_are_limited_and_successes_go_through() {
    let limits = LoginLimits::default().failures(3, 100, Duration::from_secs(60));
    let s = start_configured(MockConfig::default(), limits, ServeLimits::default()).await;
    let junk = |i: usize| json!({ "code": format!("junk-{i}") });
    // Two failures, a success (not counted), a third failure.
    for i in 0..2 {
        assert_eq!(
            s.login_body("/auth/wechat/login", junk(i)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    s.login("o_lena").await;
    assert_eq!(
        s.login_body("/auth/wechat/login", junk(2)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let calls = s.mock.calls(Endpoint::AccessToken);

    // Over the limit: 429 with Retry-After, without asking WeChat.
    let limited = s.post_json("/auth/wechat/login", junk(3).to_string()).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()[RETRY_AFTER], "60");
    assert_eq!(
        limited.json::<Value>().await.unwrap()["error"],
        "too_many_attempts"
    );
    assert_eq!(s.mock.calls(Endpoint::AccessToken), calls);

    // Another client (another loopback address) logs in as usual.
    let elsewhere = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let code = s.code("o_mia").await;
    let other = elsewhere
        .post(format!("{}/auth/wechat/login", s.base))
        .header("content-type", "application/json")
        .body(json!({ "code": code }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);

    // The window ends: the first client may try again.
    s.advance(Duration::from_secs(60));
    s.login("o_lena").await;
}

/// A client sending from `ip` (a loopback alias); a request that hangs fails the test.
fn client_from(ip: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(ip))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn post_code(client: &reqwest::Client, base: &str, code: &str) -> StatusCode {
    client
        .post(format!("{base}/auth/wechat/login"))
        .header("content-type", "application/json")
        .body(json!({ "code": code }).to_string())
        .send()
        .await
        .map_or(StatusCode::BAD_GATEWAY, |r| r.status())
}

#[tokio::test]
async fn junk_codes_sent_all_at_once_ask_wechat_at_most_the_limit_and_others_log_in() {
    // Room for the whole flood at the listener: this is about the login limits.
    let serve = ServeLimits {
        max_connections: 4_000,
        max_connections_per_address: 4_000,
        ..ServeLimits::default()
    };
    let s = start_configured(MockConfig::default(), LoginLimits::default(), serve).await;
    // Slow exchanges, so the flood's submits are all in flight together.
    s.mock.inject(
        Endpoint::AccessToken,
        Fault::Delay(Duration::from_millis(300)),
        2_000,
    );
    let attacker = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let flood = futures::future::join_all(
        (0..1_500).map(|i| post_code(&attacker, &s.base, Box::leak(format!("junk-{i}").into()))),
    );
    let honest = async {
        let code = s.code("o_olga").await;
        post_code(&client_from(Ipv4Addr::new(127, 0, 0, 3)), &s.base, &code).await
    };
    let (flooded, honest) = tokio::join!(flood, honest);
    assert_eq!(
        honest,
        StatusCode::OK,
        "a valid code from elsewhere logs in"
    );
    let limited = flooded
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(limited >= 1_480, "{limited} of 1,500 refused");
    // The honest login's exchange and at most 20 of the flood's reached WeChat.
    assert!(s.mock.calls(Endpoint::AccessToken) <= 21);
}

#[tokio::test]
async fn past_the_global_limit_a_clean_client_still_logs_in() {
    let limits = LoginLimits::default().failures(3, 5, Duration::from_secs(60));
    let s = start_configured(MockConfig::default(), limits, ServeLimits::default()).await;
    let (two, three) = (
        client_from(Ipv4Addr::new(127, 0, 0, 2)),
        client_from(Ipv4Addr::new(127, 0, 0, 3)),
    );
    for i in 0..3 {
        assert_eq!(
            post_code(&two, &s.base, &format!("junk-a{i}")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    for i in 0..2 {
        assert_eq!(
            post_code(&three, &s.base, &format!("junk-b{i}")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // Five failures in all: clients with failures wait, even with a valid code.
    let code = s.code("o_pia").await;
    assert_eq!(
        post_code(&three, &s.base, &code).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let calls = s.mock.calls(Endpoint::AccessToken);
    // A client with a clean record logs in.
    let code = s.code("o_pia").await;
    let four = client_from(Ipv4Addr::new(127, 0, 0, 4));
    assert_eq!(post_code(&four, &s.base, &code).await, StatusCode::OK);
    assert_eq!(s.mock.calls(Endpoint::AccessToken), calls + 1);
}

#[tokio::test]
async fn a_refused_callback_writes_nothing() {
    let limits = LoginLimits::default().failures(1, 100, Duration::from_secs(60));
    let s = start_configured(MockConfig::default(), limits, ServeLimits::default()).await;
    assert_eq!(
        s.login_body("/auth/wechat/login", json!({ "code": "junk" }))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // Over its limit, the browser's callback is refused before its state is used.
    let web = s.web_login("o_quinn").await;
    let refused = callback_in(&s, &web.callback, Some(&web.binding)).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let store = s.auth.sessions().store();
    assert_eq!(
        store
            .get_value(&format!("state:{}", web.state))
            .await
            .unwrap(),
        None,
        "no used-state record was written"
    );
}

/// Reads until the server closes the connection, which it must do within `bound`; what it sent
/// before closing.
async fn until_closed(stream: &mut TcpStream, bound: Duration) -> Vec<u8> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(bound, stream.read_to_end(&mut received));
    match read
        .await
        .expect("the server closes the connection in time")
    {
        Ok(_) => received,
        // A reset is a close too.
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => received,
        Err(error) => panic!("{error}"),
    }
}

/// How late past its 200 ms timeout a connection may be closed, on a loaded two-core machine.
const CLOSED_WITHIN: Duration = Duration::from_secs(2);

/// Break to see it fail: no `header_read_timeout` on the listener (or the idle timeout at its
/// 10 s default).
#[tokio::test]
async fn silent_half_sent_and_idle_connections_are_closed() {
    let serve = ServeLimits {
        header_read_timeout: Duration::from_millis(200),
        ..ServeLimits::default()
    };
    let s = start_configured(MockConfig::default(), LoginLimits::default(), serve).await;
    let addr = s.base.trim_start_matches("http://").to_owned();

    // Connects and says nothing.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    until_closed(&mut silent, CLOSED_WITHIN).await;

    // Starts a request and never finishes its header.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = until_closed(&mut slow, CLOSED_WITHIN).await;
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "never served");

    // A whole request, then idle on a kept-alive connection.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut idle, CLOSED_WITHIN).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "served, then closed when idle"
    );
}

#[tokio::test]
async fn a_connection_slot_is_released_when_its_connection_closes() {
    let serve = ServeLimits {
        max_connections: 1,
        header_read_timeout: Duration::from_secs(60),
        ..ServeLimits::default()
    };
    let s = start_configured(MockConfig::default(), LoginLimits::default(), serve).await;
    // Each request closes its connection; with one slot, every one of them must get it back.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for _ in 0..5 {
        let response = http
            .get(format!("{}/healthz", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn login_bodies_must_be_json_objects() {
    let s = start().await;
    let code = s.code("o_nina").await;
    let body = json!({ "code": code }).to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = s
            .http
            .post(format!("{}/auth/wechat/login", s.base))
            .body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(
            response.json::<Value>().await.unwrap()["error"],
            "unsupported_media_type"
        );
    }
    let (status, _) = s.post_login("/auth/wechat/login", r#"["abc"]"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let charset = s
        .http
        .post(format!("{}/auth/wechat/login", s.base))
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(charset.status(), StatusCode::OK);
    assert_eq!(s.mock.calls(Endpoint::AccessToken), 1);
}

#[tokio::test]
async fn duplicate_session_cookies_are_trusted_only_when_exactly_one_verifies() {
    let s = start().await;
    let mine = s.login("o_olga").await;
    let theirs = s.login("o_tossed").await;
    let forged = format!("{}x", &mine[..mine.len() - 1]);
    let cases = [
        (
            format!("wechat_session={forged}; wechat_session={mine}"),
            StatusCode::OK,
        ),
        (
            format!("wechat_session={mine}; wechat_session={forged}"),
            StatusCode::OK,
        ),
        (
            format!("wechat_session={theirs}; wechat_session={mine}"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            format!("wechat_session={forged}; wechat_session=junk"),
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (cookie, expected) in cases {
        let response = s.with_cookie(reqwest::Method::GET, "/me", &cookie).await;
        assert_eq!(response.status(), expected, "{cookie}");
        if expected == StatusCode::OK {
            assert_eq!(response.json::<Value>().await.unwrap()["openid"], "o_olga");
        }
    }
}

#[tokio::test]
async fn oversized_and_non_utf8_session_cookies_are_cleared() {
    let s = start().await;
    let huge = format!("wechat_session={}", "a".repeat(9_000));
    let not_utf8 = reqwest::header::HeaderValue::from_bytes(b"wechat_session=\xff\xfe").unwrap();
    for cookie in [
        reqwest::header::HeaderValue::from_str(&huge).unwrap(),
        not_utf8,
    ] {
        let response = s
            .http
            .get(format!("{}/me", s.base))
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let set = response.headers()[SET_COOKIE].to_str().unwrap();
        assert!(
            set.starts_with("wechat_session=;") && set.contains("Max-Age=0"),
            "{set}"
        );
    }
}

#[tokio::test]
async fn unusable_upstream_identities_are_bad_replies_and_store_nothing() {
    let s = start().await;
    let appid = s.mock.appid().to_owned();
    for openid in [String::new(), "o".repeat(100_000)] {
        let body = json!({
            "access_token": "AT", "expires_in": 7200, "refresh_token": "RT",
            "openid": openid, "scope": "snsapi_userinfo",
        });
        s.mock
            .inject(Endpoint::AccessToken, Fault::Body(body.to_string()), 1);
        let code = s.code("o_whoever").await;
        let response = s
            .post_json("/auth/wechat/login", json!({ "code": code }).to_string())
            .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(RETRY_AFTER));
        let user = UserId::default_for(&AppId::new(appid.clone()), &OpenId::new(openid), None);
        let stored = s.auth.sessions().store().delete_user(&user).await.unwrap();
        assert_eq!(stored, 0, "nothing stored");
    }
}

#[tokio::test]
async fn a_profile_outage_says_when_to_retry() {
    let s = start().await;
    let token = s.login("o_pia").await;
    s.mock.inject(Endpoint::UserInfo, Fault::ErrCode(-1), 100);
    let response = s.get("/me/profile", &token).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(RETRY_AFTER));
}
