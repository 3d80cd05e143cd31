//! The example's accounts across WeChat's apps, end to end through the example server and the
//! fake WeChat: one person in four apps is one user, its login hook (suspended accounts, a
//! failing database), unionids learned later, and apps it does not configure. (What the layer
//! itself promises for several apps is tested in tower-wechat's `tests/apps.rs`.)

mod common;

use std::time::Duration;

use common::{Instance, app, session_cookie, start, start_instance};
use reqwest::StatusCode;
use reqwest::header::RETRY_AFTER;
use serde_json::{Value, json};
use wechat_login::middleware::AppKind;
use wechat_login::oauth::{AppId, ManualClock, OpenId};
use wechat_login::sessions::{MokaStore, SessionStore, UserId};
use wechat_mock::{Endpoint, MockConfig};

/// A JSON login to the app of `kind`: the token, or the failure's status and body.
#[tokio::test]
async fn one_person_in_four_apps_is_one_user_with_four_sessions_each_refreshed_by_its_app() {
    let s = start().await;
    let unionid = "u_same_person";
    // The mobile app and the Mini Program post codes; the website and the Official Account
    // are browser flows (the Official Account's inside WeChat).
    let mobile = s
        .json_login(AppKind::MobileApp, "o_mob", Some(unionid))
        .await
        .unwrap();
    let mini = s
        .json_login(AppKind::MiniProgram, "o_mp", Some(unionid))
        .await
        .unwrap();
    let (web, _) = s.browser_login(&[], false, "o_web", Some(unionid)).await;
    assert_eq!(web.status(), StatusCode::FOUND);
    let web = session_cookie(&web).unwrap();
    let (oa, binding) = s.browser_login(&[], true, "o_oa", Some(unionid)).await;
    assert!(
        binding.is_none(),
        "the Official Account flow binds no cookie"
    );
    assert_eq!(oa.status(), StatusCode::FOUND);
    let oa = session_cookie(&oa).unwrap();

    let mut sessions = Vec::new();
    let mut users = Vec::new();
    for (kind, me) in [
        (AppKind::MobileApp, s.me(&mobile).await),
        (AppKind::MiniProgram, s.me(&mini).await),
        (AppKind::Website, s.me_by_cookie(&web).await),
        (AppKind::OfficialAccount, s.me_by_cookie(&oa).await),
    ] {
        let (status, me) = me;
        assert_eq!(status, StatusCode::OK, "{me}");
        assert_eq!(me["app"], kind.as_str());
        assert_eq!(me["appid"], s.appid(kind));
        assert_eq!(me["unionid"], unionid);
        assert_eq!(me["snapshot"], false);
        sessions.push(me["session_id"].clone());
        users.push(me["user_id"].clone());
    }
    assert!(users.iter().all(|u| *u == users[0]), "{users:?}");
    let user = users[0].as_str().unwrap();
    assert!(
        user.len() == 34 && user.starts_with("u_"),
        "a random public id: {user}"
    );
    sessions.sort_by_key(Value::to_string);
    sessions.dedup();
    assert_eq!(sessions.len(), 4);

    // Two hours on: each OAuth app's session is refreshed once, with its own credentials.
    s.advance(Duration::from_secs(2 * 3600));
    assert_eq!(s.me(&mobile).await.0, StatusCode::OK);
    assert_eq!(s.me_by_cookie(&web).await.0, StatusCode::OK);
    assert_eq!(s.me_by_cookie(&oa).await.0, StatusCode::OK);
    assert_eq!(s.me(&mini).await.0, StatusCode::OK);
    for kind in [
        AppKind::MobileApp,
        AppKind::Website,
        AppKind::OfficialAccount,
    ] {
        assert_eq!(
            s.mock.app_calls(s.appid(kind), Endpoint::RefreshToken),
            1,
            "{kind}"
        );
    }
    assert_eq!(s.mock.calls(Endpoint::RefreshToken), 3);

    // Logout-all from the Mini Program ends the user's sessions in every app.
    assert_eq!(
        s.post("/auth/logout/all", &mini).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(s.me(&mobile).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.me(&mini).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.me_by_cookie(&web).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.me_by_cookie(&oa).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_endpoints_of_an_app_that_is_not_configured_answer_404() {
    // A server with only a Mini Program (the fake WeChat of another instance).
    let other = start().await;
    let clock = ManualClock::starting_now();
    clock.set(other.mock.now());
    let mut instance = Instance::sharing(&other.mock, &clock, &other.accounts);
    instance.upstream = common::Upstream::SharedApps(
        other.mock.clone(),
        vec![app::AppConfig {
            kind: AppKind::MiniProgram,
            appid: other.appid(AppKind::MiniProgram).to_owned(),
            secret: app::SANDBOX_APPS[2].2.to_owned(),
        }],
    );
    let store = MokaStore::builder()
        .clock(std::sync::Arc::new(clock.clone()))
        .build();
    let s = start_instance(instance, store).await;
    let (status, body) = s
        .post_login(
            "/auth/wechat/login",
            json!({ "code": "whatever" }).to_string(),
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::NOT_FOUND, json!("app_not_configured"))
    );
    let start = s
        .http
        .get(format!("{}/auth/wechat/web/start", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        start.json::<Value>().await.unwrap()["error"],
        "app_not_configured"
    );
    // The Mini Program works, and a mobile-app session (made elsewhere) is not served here.
    let mini = s
        .json_login(AppKind::MiniProgram, "o_only", None)
        .await
        .unwrap();
    assert_eq!(s.me(&mini).await.0, StatusCode::OK);
    let mobile = other
        .json_login(AppKind::MobileApp, "o_only", None)
        .await
        .unwrap();
    assert_eq!(s.me(&mobile).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_login_hook_refuses_suspended_accounts_and_a_failing_database_stores_nothing() {
    let path = std::env::temp_dir().join(format!(
        "wechat-login-accounts-{:016x}.sqlite",
        rand::random::<u64>()
    ));
    let accounts = app::Accounts::open(Some(&path)).unwrap();
    let clock = ManualClock::starting_now();
    let instance = Instance {
        upstream: common::Upstream::Sandbox(MockConfig::default()),
        clock: clock.clone(),
        login_limits: Default::default(),
        serve_limits: common::many_clients(),
        accounts: Some(accounts.clone()),
        metrics: None,
    };
    let s = start_instance(
        instance,
        MokaStore::builder()
            .clock(std::sync::Arc::new(clock))
            .build(),
    )
    .await;

    // Suspended: 403 with the application's code, no session.
    let token = s
        .json_login(AppKind::MobileApp, "o_suspect", None)
        .await
        .unwrap();
    let user_id = s.me(&token).await.1["user_id"].as_str().unwrap().to_owned();
    assert!(accounts.suspend(&user_id).await.unwrap());
    let (status, body) = s
        .json_login(AppKind::MobileApp, "o_suspect", None)
        .await
        .unwrap_err();
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "account_suspended");
    assert_eq!(body["message"], "this account is suspended");
    // The same person in the Mini Program, linked by nothing: another account, let in.
    assert!(
        s.json_login(AppKind::MiniProgram, "o_suspect", None)
            .await
            .is_ok()
    );

    // The database locked by someone else: 503 with Retry-After, and nothing stored.
    let blocker = rusqlite::Connection::open(&path).unwrap();
    blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let code = s.code("o_locked_out").await;
    let response = s
        .post_json("/auth/wechat/login", json!({ "code": code }).to_string())
        .await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[RETRY_AFTER], "1");
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "accounts_unavailable"
    );
    let default_id = UserId::default_for(
        &AppId::new(s.appid(AppKind::MobileApp)),
        &OpenId::new("o_locked_out"),
        None,
    );
    assert_eq!(
        s.auth
            .sessions()
            .store()
            .delete_user(&default_id)
            .await
            .unwrap(),
        0
    );
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    assert!(
        s.json_login(AppKind::MobileApp, "o_locked_out", None)
            .await
            .is_ok()
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_unionid_revealed_later_is_recorded() {
    let s = start().await;
    // Logged in before the apps were bound (no unionid yet).
    let mobile = s
        .json_login(AppKind::MobileApp, "o_late", None)
        .await
        .unwrap();
    let mini = s
        .json_login(AppKind::MiniProgram, "o_late_mp", None)
        .await
        .unwrap();
    let (_, before) = s.me(&mobile).await;
    assert_eq!(before["unionid"], Value::Null);
    s.mock.set_unionid("o_late", "u_late");
    s.mock.set_unionid("o_late_mp", "u_late");
    // The profile call shows the unionid: the session records it.
    assert_eq!(s.get("/me/profile", &mobile).await.status(), StatusCode::OK);
    let (_, after) = s.me(&mobile).await;
    assert_eq!(after["unionid"], "u_late");
    assert_eq!(
        after["user_id"], before["user_id"],
        "the user id is fixed at login"
    );
    // A later Mini Program login carries it, and the accounts link it to the same person.
    let (_, old_mini) = s.me(&mini).await;
    assert_eq!(old_mini["unionid"], Value::Null);
    let again = s
        .json_login(AppKind::MiniProgram, "o_late_mp", None)
        .await
        .unwrap();
    let (_, new_mini) = s.me(&again).await;
    assert_eq!(new_mini["unionid"], "u_late");
    assert_eq!(new_mini["user_id"], old_mini["user_id"]);
}
