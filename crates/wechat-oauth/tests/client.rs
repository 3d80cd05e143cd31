//! The client against the fake WeChat: every endpoint, every error class, retries counted by the
//! fake's counters, timeouts through a delay fault, and the documented body quirks from fixtures.

use std::sync::Arc;
use std::time::Duration;

use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant, MockProfile, MockWeChat};
use wechat_oauth::{
    AccessToken, AppId, AppSecret, AuthCode, Client, ClientBuilder, Clock, ErrCode, Error,
    ErrorClass, Lang, ManualClock, OfficialAccountScope, OpenId, RefreshToken, RetryPolicy, Scope,
    State, TransportErrorKind, UnionId,
};

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(2),
    }
}

fn builder(mock: &MockWeChat) -> ClientBuilder {
    Client::builder(AppId::new(mock.appid()), AppSecret::new(mock.secret()))
        .api_base(mock.base_url())
        .open_base(mock.base_url())
        .retry(fast_retries())
}

async fn setup() -> (MockWeChat, Client, ManualClock) {
    let (mock, clock) = wechat_login_test_support::fake_wechat(MockConfig::default()).await;
    let client = wechat_login_test_support::client_at(&mock, mock.appid(), mock.secret(), &clock);
    (mock, client, clock)
}

fn code(mock: &MockWeChat, grant: MockGrant) -> AuthCode {
    AuthCode::new(mock.mint_code(grant))
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test]
async fn code_exchange_returns_a_typed_grant_with_absolute_expiry() {
    let (mock, client, clock) = setup().await;
    let grant = client
        .exchange_code(&code(
            &mock,
            MockGrant {
                openid: Some("oAlice".into()),
                unionid: Some("uAlice".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert_eq!(grant.openid, OpenId::new("oAlice"));
    assert_eq!(grant.unionid, Some(UnionId::new("uAlice")));
    assert_eq!(
        grant.scopes.iter().collect::<Vec<_>>(),
        vec![&Scope::UserInfo]
    );
    assert_eq!(
        grant.access_token_expires_at,
        clock.now() + Duration::from_secs(7200)
    );
    assert!(!grant.snapshot_user);

    let snapshot = client
        .exchange_code(&code(
            &mock,
            MockGrant {
                snapshot_user: true,
                scope: Some("snsapi_base".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert!(snapshot.snapshot_user);
    assert!(!snapshot.scopes.allows_userinfo());
}

#[tokio::test]
async fn code_errors_are_classified() {
    let (mock, client, _) = setup().await;
    let used = code(&mock, MockGrant::default());
    client.exchange_code(&used).await.unwrap();
    let again = client.exchange_code(&used).await.unwrap_err();
    assert_eq!(again.errcode(), Some(ErrCode::CODE_USED));
    assert_eq!(again.class(), ErrorClass::DuplicateCode);

    let unknown = client
        .exchange_code(&AuthCode::new("nope"))
        .await
        .unwrap_err();
    assert_eq!(unknown.errcode(), Some(ErrCode::INVALID_CODE));
    assert_eq!(unknown.class(), ErrorClass::Reauthorize);

    let stale = code(&mock, MockGrant::default());
    mock.advance(Duration::from_secs(601));
    let expired = client.exchange_code(&stale).await.unwrap_err();
    assert_eq!(expired.errcode(), Some(ErrCode::CODE_EXPIRED));

    let wrong = Client::builder(AppId::new(mock.appid()), AppSecret::new("wrong"))
        .api_base(mock.base_url())
        .build()
        .unwrap();
    let err = wrong
        .exchange_code(&code(&mock, MockGrant::default()))
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::INVALID_APPSECRET));
    assert_eq!(err.class(), ErrorClass::Misconfigured);
}

#[tokio::test]
async fn refresh_renews_then_replaces_and_the_grant_can_end() {
    let (mock, client, clock) = setup().await;
    let grant = client
        .exchange_code(&code(&mock, MockGrant::default()))
        .await
        .unwrap();

    mock.advance(Duration::from_secs(3600));
    clock.advance(Duration::from_secs(3600));
    let renewed = client.refresh_token(&grant.refresh_token).await.unwrap();
    assert_eq!(
        renewed.access_token, grant.access_token,
        "unexpired: same token"
    );
    assert_eq!(
        renewed.access_token_expires_at,
        clock.now() + Duration::from_secs(7200)
    );
    assert_eq!(renewed.openid, grant.openid);

    mock.advance(Duration::from_secs(7201));
    let replaced = client.refresh_token(&grant.refresh_token).await.unwrap();
    assert_ne!(
        replaced.access_token, grant.access_token,
        "expired: new token"
    );
    let old = client
        .check_access_token(&grant.access_token, &grant.openid)
        .await
        .unwrap_err();
    assert_eq!(old.class(), ErrorClass::RefreshAndRetry);

    mock.revoke(grant.openid.as_str());
    let gone = client
        .refresh_token(&grant.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(gone.errcode(), Some(ErrCode::INVALID_REFRESH_TOKEN));
    assert!(gone.is_grant_gone());

    let bogus = client
        .refresh_token(&RefreshToken::new("bogus"))
        .await
        .unwrap_err();
    assert!(bogus.is_grant_gone());
}

#[tokio::test]
async fn refresh_token_horizon_is_42002() {
    let (mock, client, _) = setup().await;
    let grant = client
        .exchange_code(&code(&mock, MockGrant::default()))
        .await
        .unwrap();
    mock.advance(Duration::from_secs(30 * 24 * 3600 + 1));
    let err = client
        .refresh_token(&grant.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::REFRESH_TOKEN_EXPIRED));
    assert!(err.is_grant_gone());
}

#[tokio::test]
async fn auth_check_tells_valid_invalid_and_busy_apart() {
    let (mock, client, _) = setup().await;
    let grant = client
        .exchange_code(&code(&mock, MockGrant::default()))
        .await
        .unwrap();
    client
        .check_access_token(&grant.access_token, &grant.openid)
        .await
        .expect("valid");

    let wrong_user = client
        .check_access_token(&grant.access_token, &OpenId::new("someone-else"))
        .await
        .unwrap_err();
    assert_eq!(wrong_user.errcode(), Some(ErrCode::INVALID_OPENID));

    mock.inject(Endpoint::Auth, Fault::ErrCode(-1), 3);
    let busy = client
        .check_access_token(&grant.access_token, &grant.openid)
        .await
        .unwrap_err();
    assert_eq!(
        busy.errcode(),
        Some(ErrCode::SYSTEM_BUSY),
        "busy is not invalid"
    );
    assert_eq!(busy.class(), ErrorClass::Retryable);

    mock.advance(Duration::from_secs(7201));
    let expired = client
        .check_access_token(&grant.access_token, &grant.openid)
        .await
        .unwrap_err();
    assert_eq!(expired.errcode(), Some(ErrCode::ACCESS_TOKEN_EXPIRED));
    assert_eq!(expired.class(), ErrorClass::RefreshAndRetry);

    let invalid = client
        .check_access_token(&AccessToken::new("bogus"), &grant.openid)
        .await
        .unwrap_err();
    assert_eq!(invalid.errcode(), Some(ErrCode::INVALID_CREDENTIAL));
}

#[tokio::test]
async fn userinfo_by_scope() {
    let (mock, client, _) = setup().await;
    let grant = client
        .exchange_code(&code(&mock, MockGrant::default()))
        .await
        .unwrap();
    mock.set_profile(
        grant.openid.as_str(),
        MockProfile {
            nickname: "张三 😀".into(),
            ..Default::default()
        },
    );
    let info = client
        .userinfo(&grant.access_token, &grant.openid, Lang::ZhCn)
        .await
        .unwrap();
    assert_eq!(info.nickname, "张三 😀");
    assert_eq!(info.openid, grant.openid);
    assert_eq!(info.sex, Some(0));

    let base = client
        .exchange_code(&code(
            &mock,
            MockGrant {
                scope: Some("snsapi_base".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let err = client
        .userinfo(&base.access_token, &base.openid, Lang::En)
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::API_UNAUTHORIZED));
    assert_eq!(err.class(), ErrorClass::Denied);
}

#[tokio::test]
async fn jscode2session_and_its_errors() {
    let (mock, client, _) = setup().await;
    let session = client
        .jscode2session(&code(
            &mock,
            MockGrant {
                unionid: Some("uMini".into()),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    assert!(!session.session_key.secret().is_empty());
    assert_eq!(session.unionid, Some(UnionId::new("uMini")));

    mock.inject(Endpoint::JsCode2Session, Fault::ErrCode(40226), 1);
    let blocked = client
        .jscode2session(&code(&mock, MockGrant::default()))
        .await
        .unwrap_err();
    assert_eq!(blocked.errcode(), Some(ErrCode::HIGH_RISK_USER));
    assert_eq!(blocked.class(), ErrorClass::Denied);
}

#[tokio::test]
async fn idempotent_calls_retry_busy_transport_and_5xx_within_bounds() {
    let (mock, client, _) = setup().await;
    let grant = client
        .exchange_code(&code(&mock, MockGrant::default()))
        .await
        .unwrap();

    mock.inject(Endpoint::RefreshToken, Fault::ErrCode(-1), 2);
    client
        .refresh_token(&grant.refresh_token)
        .await
        .expect("third attempt succeeds");
    assert_eq!(mock.calls(Endpoint::RefreshToken), 3);

    mock.inject(Endpoint::UserInfo, Fault::HttpStatus(503), 1);
    client
        .userinfo(&grant.access_token, &grant.openid, Lang::En)
        .await
        .expect("retried after a 5xx");
    assert_eq!(mock.calls(Endpoint::UserInfo), 2);

    mock.inject(Endpoint::Auth, Fault::ErrCode(-1), 5);
    let err = client
        .check_access_token(&grant.access_token, &grant.openid)
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::SYSTEM_BUSY));
    assert_eq!(mock.calls(Endpoint::Auth), 3, "at most max_attempts");
    mock.clear_faults();

    // Not retried: a definitive answer, and 45011 (a minute's wait would be needed).
    mock.inject(Endpoint::RefreshToken, Fault::ErrCode(45011), 1);
    assert_eq!(
        client
            .refresh_token(&grant.refresh_token)
            .await
            .unwrap_err()
            .retry_after(),
        Some(Duration::from_secs(60))
    );
    assert_eq!(mock.calls(Endpoint::RefreshToken), 4);
}

#[tokio::test]
async fn code_exchanges_are_never_retried() {
    let (mock, client, _) = setup().await;
    mock.inject(Endpoint::AccessToken, Fault::ErrCode(-1), 1);
    let err = client
        .exchange_code(&code(&mock, MockGrant::default()))
        .await
        .unwrap_err();
    assert_eq!(err.errcode(), Some(ErrCode::SYSTEM_BUSY));
    assert_eq!(mock.calls(Endpoint::AccessToken), 1);

    mock.inject(Endpoint::JsCode2Session, Fault::HttpStatus(502), 1);
    let err = client
        .jscode2session(&code(&mock, MockGrant::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::HttpStatus { status: 502, .. }));
    assert_eq!(mock.calls(Endpoint::JsCode2Session), 1);
}

#[tokio::test]
async fn a_slow_wechat_times_out_without_reporting_the_url() {
    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    let client = builder(&mock)
        .timeout(Duration::from_millis(200))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    mock.inject(
        Endpoint::AccessToken,
        Fault::Delay(Duration::from_secs(30)),
        1,
    );
    let err = client
        .exchange_code(&code(&mock, MockGrant::default()))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Transport {
            kind: TransportErrorKind::Timeout
        }
    ));
    assert_eq!(err.class(), ErrorClass::Retryable);
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains(mock.secret()) && !shown.contains("127.0.0.1"),
        "{shown}"
    );
}

#[tokio::test]
async fn an_unreachable_wechat_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::builder(AppId::new("wx"), AppSecret::new("s"))
        .api_base(format!("http://{addr}"))
        .retry(fast_retries())
        .build()
        .unwrap();
    let err = client
        .refresh_token(&RefreshToken::new("rt"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: TransportErrorKind::Connect
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn documented_quirks_from_fixtures() {
    let (mock, client, _) = setup().await;
    let serve = |endpoint, name: &str| mock.inject(endpoint, Fault::Body(fixture(name)), 1);
    let any_code = AuthCode::new("fixture-code");

    serve(Endpoint::AccessToken, "grant_trailing_comma_scope.json");
    let grant = client.exchange_code(&any_code).await.unwrap();
    assert_eq!(grant.scopes.len(), 1);
    assert_eq!(grant.unionid, Some(UnionId::new("uFixture")));

    serve(Endpoint::AccessToken, "errcode_as_string.json");
    let err = client.exchange_code(&any_code).await.unwrap_err();
    let Error::Api(api) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(api.code, ErrCode::INVALID_CODE);
    assert_eq!(api.rid.as_deref(), Some("6745f0a1-1b2c3d4e-5f6a7b8c"));

    serve(Endpoint::AccessToken, "system_busy.json");
    assert_eq!(
        client.exchange_code(&any_code).await.unwrap_err().errcode(),
        Some(ErrCode::SYSTEM_BUSY)
    );

    serve(Endpoint::UserInfo, "userinfo_control_chars_emoji.json");
    let info = client
        .userinfo(&AccessToken::new("t"), &OpenId::new("oFixture"), Lang::En)
        .await
        .unwrap();
    assert_eq!(info.nickname, "Bob\u{1}\u{1f}\t😀 张");
    assert_eq!(info.city.as_deref(), Some("\u{7}"));

    serve(Endpoint::JsCode2Session, "jscode2session_no_errcode.json");
    let mini = client.jscode2session(&any_code).await.unwrap();
    assert_eq!(mini.session_key.secret(), "tiihtNczf5v6AKRyjwEUhQ==");

    serve(Endpoint::Auth, "auth_ok.json");
    client
        .check_access_token(&AccessToken::new("t"), &OpenId::new("o"))
        .await
        .unwrap();

    for name in ["empty.txt", "html_gateway_error.html", "truncated.json"] {
        serve(Endpoint::AccessToken, name);
        let err = client.exchange_code(&any_code).await.unwrap_err();
        let Error::Decode { body, .. } = &err else {
            panic!("{name}: {err:?}")
        };
        assert!(
            !body.as_str().contains("FIXTURE-AT"),
            "{name}: token redacted"
        );
        assert_eq!(err.class(), ErrorClass::Retryable);
    }
}

#[tokio::test]
async fn authorize_urls_point_at_the_fake_consent_pages() {
    let (mock, client, _) = setup().await;
    let state = State::new("abc123").unwrap();
    let website = client
        .website_authorize_url("https://app.example/cb", &state)
        .unwrap();
    assert_eq!(
        website,
        format!(
            "{}/connect/qrconnect?appid={}&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&response_type=code&scope=snsapi_login&state=abc123#wechat_redirect",
            mock.base_url(),
            mock.appid()
        )
    );
    let page = reqwest::get(website.trim_end_matches("#wechat_redirect"))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let oa = client
        .official_account_authorize_url(
            "https://app.example/cb",
            OfficialAccountScope::UserInfo,
            &state,
        )
        .unwrap();
    assert!(oa.contains("/connect/oauth2/authorize?appid="));
    assert!(oa.contains("&scope=snsapi_userinfo&state=abc123&connect_redirect=1#wechat_redirect"));
}

/// A clock that moves an hour forward with every call WeChat has received, so an expiry shows
/// whether it was computed before the request was sent or after the answer came back.
#[derive(Debug)]
struct OneHourPerCall {
    mock: MockWeChat,
    start: std::time::SystemTime,
}

impl Clock for OneHourPerCall {
    fn now(&self) -> std::time::SystemTime {
        let calls =
            self.mock.calls(Endpoint::AccessToken) + self.mock.calls(Endpoint::RefreshToken);
        self.start + Duration::from_secs(3600 * calls)
    }
}

#[tokio::test]
async fn expiry_counts_from_before_the_request_and_its_retries() {
    let mock = MockWeChat::start(MockConfig::default()).await.unwrap();
    let start = mock.now();
    let client = builder(&mock)
        .clock(Arc::new(OneHourPerCall {
            mock: mock.clone(),
            start,
        }))
        .build()
        .unwrap();
    let hours = |n: u64| Duration::from_secs(3600 * n);

    // Read before the exchange is sent: no call yet.
    let grant = client
        .exchange_code(&code(&mock, MockGrant::default()))
        .await
        .unwrap();
    assert_eq!(grant.access_token_expires_at, start + hours(2));

    // One call so far; the first refresh attempt fails and is retried: still counted from
    // before the first attempt, not from after the retry.
    mock.inject(Endpoint::RefreshToken, Fault::HttpStatus(502), 1);
    let refreshed = client.refresh_token(&grant.refresh_token).await.unwrap();
    assert_eq!(mock.calls(Endpoint::RefreshToken), 2);
    assert_eq!(refreshed.access_token_expires_at, start + hours(1 + 2));
}

/// The AppSecret travels in the query string: a redirect must never carry it elsewhere. A
/// server that answers 302 sees no second request, and the call fails with the status.
#[tokio::test]
async fn redirects_are_never_followed() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let followed = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&followed);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = vec![0u8; 4096];
            let n = stream.read(&mut request).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..n]);
            let answer = if request.starts_with("GET /followed") {
                seen.fetch_add(1, Ordering::SeqCst);
                "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
            } else {
                "HTTP/1.1 302 Found\r\nlocation: /followed\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            };
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    });
    let client = Client::builder(AppId::new("wx"), AppSecret::new("s3cret"))
        .api_base(format!("http://{addr}"))
        .build()
        .unwrap();
    let err = client
        .exchange_code(&AuthCode::new("code"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::HttpStatus { status: 302, .. }),
        "{err:?}"
    );
    assert_eq!(
        followed.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
}
