//! The app access token across a fleet, on the machine's Redis: two instances (two caches, two
//! stores on one prefix) asking at once make one upstream call; an expiry one more; a token
//! WeChat refused is renewed once for both; each Mini Program user's newest session key is
//! shared.

// The fleet harness's futures (fred's client, two managers) nest deeper than rustc's default
// layout depth when they come from the test-support crate.
#![recursion_limit = "256"]

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant, MockWeChat};
use wechat_oauth::{AppId, AuthCode, PhoneCode};
use wechat_redis_store::RedisStore;
use wechat_sessions::{Credentials, ManualClock, SessionManager};

struct Fleet {
    mock: MockWeChat,
    clock: ManualClock,
    a: SessionManager<RedisStore>,
    b: SessionManager<RedisStore>,
}

async fn fleet() -> Option<Fleet> {
    let redis = common::machine_redis().await?;
    let (mock, clock) = wechat_login_test_support::fake_wechat(MockConfig::default()).await;
    let prefix = common::random_prefix();
    let instance = || {
        let client =
            wechat_login_test_support::client_at(&mock, mock.appid(), mock.secret(), &clock);
        let store = RedisStore::builder(&common::redis_url(), common::key("k1", 1))
            .unwrap()
            .prefix(&prefix)
            .clock(Arc::new(clock.clone()))
            .with_client(redis.clone());
        SessionManager::builder(client)
            .store(store)
            .shared_secret(b"fleet secret")
            .build()
    };
    let (a, b) = (instance(), instance());
    Some(Fleet { mock, clock, a, b })
}

#[tokio::test]
async fn two_instances_make_one_upstream_call_per_expiry() {
    let Some(f) = fleet().await else { return };
    let appid = AppId::new(f.mock.appid());
    let asks = (0..200).map(|i| {
        let cache = if i % 2 == 0 { f.a.clone() } else { f.b.clone() };
        let appid = appid.clone();
        async move { cache.app_token(&appid).await.unwrap() }
    });
    let tokens = join_all(asks).await;
    assert!(tokens.iter().all(|t| t == &tokens[0]));
    assert_eq!(
        f.mock.calls(Endpoint::StableToken),
        1,
        "one call for the fleet"
    );

    f.clock.advance(Duration::from_secs(7200 - 200));
    f.mock.advance(Duration::from_secs(7200 - 200));
    let (x, y) = tokio::join!(f.a.app_token(&appid), f.b.app_token(&appid));
    assert_eq!(x.unwrap(), y.unwrap());
    assert_eq!(
        f.mock.calls(Endpoint::StableToken),
        2,
        "one refresh for the fleet"
    );
}

#[tokio::test]
async fn a_refused_token_is_forced_once_for_the_fleet() {
    let Some(f) = fleet().await else { return };
    let appid = AppId::new(f.mock.appid());
    let mini = |cache: &SessionManager<RedisStore>, openid: &str| {
        let code = AuthCode::new(f.mock.mint_code(MockGrant {
            openid: Some(openid.into()),
            ..MockGrant::default()
        }));
        let cache = cache.clone();
        async move { cache.login_mini_program(&code).await.unwrap() }
    };
    let on_a = mini(&f.a, "oA").await;
    let on_b = mini(&f.b, "oB").await;
    f.a.app_token(&appid).await.unwrap();
    // WeChat refuses the current token once on instance A: A forces a new one.
    f.mock
        .inject(Endpoint::PhoneNumber, Fault::ErrCode(40001), 1);
    let code = PhoneCode::new(f.mock.mint_phone_code(f.mock.appid(), "13800138000", "86"));
    f.a.phone_number(&on_a.sid, &code).await.unwrap();
    assert_eq!(
        f.mock.calls(Endpoint::StableToken),
        3,
        "first, normal, forced"
    );
    // B adopts the fleet's new token without asking WeChat.
    let code = PhoneCode::new(f.mock.mint_phone_code(f.mock.appid(), "13800138000", "86"));
    f.b.phone_number(&on_b.sid, &code).await.unwrap();
    assert_eq!(f.mock.calls(Endpoint::StableToken), 3);
    // The forced-refresh interval holds across the fleet: B may not force again.
    f.mock
        .inject(Endpoint::PhoneNumber, Fault::ErrCode(40001), 1);
    let code = PhoneCode::new(f.mock.mint_phone_code(f.mock.appid(), "13800138000", "86"));
    assert!(f.b.phone_number(&on_b.sid, &code).await.is_err());
    assert_eq!(f.mock.calls(Endpoint::StableToken), 4, "normal mode only");
}

#[tokio::test]
async fn the_newest_session_key_is_shared_by_the_fleet() {
    let Some(f) = fleet().await else { return };
    let login = |cache: &SessionManager<RedisStore>| {
        let code = AuthCode::new(f.mock.mint_code(MockGrant {
            openid: Some("oKey".into()),
            ..MockGrant::default()
        }));
        let cache = cache.clone();
        async move { cache.login_mini_program(&code).await.unwrap() }
    };
    let old = login(&f.a).await;
    let new = login(&f.b).await;
    let Credentials::MiniProgram { session_key } = &new.credentials else {
        unreachable!()
    };
    let old = f.a.session(&old.sid).await.unwrap();
    assert_eq!(
        f.a.session_key(&old).await.unwrap().as_ref(),
        Some(session_key),
        "A learns the key of B's newer login"
    );
    f.a.check_session_key(&old.sid).await.unwrap();
}
