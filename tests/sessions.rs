//! "Where you're logged in", end to end through the example server: `GET /me/sessions` lists
//! the user's sessions in every app (where each came from, the current one flagged), and
//! `POST /me/sessions/{id}/logout` ends one of the user's own — never another user's — from an
//! API client or the home page's form (guarded against cross-site requests). On Redis, the
//! list and the logout hold across instances.

mod common;

use common::{
    Instance, MAX_STALENESS, Server, first_of_fleet, fleet_store, redis, session_cookie, start,
    start_instance,
};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE, USER_AGENT};
use serde_json::{Value, json};
use wechat_login::middleware::AppKind;
use wechat_login::oauth::ManualClock;
use wechat_login::sessions::SharedStore;

const PHONE: &str = "ExampleApp/2.1 (iPhone; iOS 18.1)";

/// A mobile-app login of `openid` (unionid `unionid`) from a client saying `PHONE`.
async fn phone_login<St>(s: &Server<St>, openid: &str, unionid: &str) -> String {
    let code = s.code_for(AppKind::MobileApp, openid, Some(unionid)).await;
    let response = s
        .http
        .post(format!("{}/auth/wechat/login", s.base))
        .header("content-type", "application/json")
        .header(USER_AGENT, PHONE)
        .body(json!({ "code": code }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// `GET /me/sessions` with `token`: the status and the listed sessions.
async fn sessions<St>(s: &Server<St>, token: &str) -> (StatusCode, Vec<Value>) {
    let response = s.get("/me/sessions", token).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let list = body["sessions"].as_array().cloned().unwrap_or_default();
    (status, list)
}

/// `POST /me/sessions/{id}/logout` as an API client with `token`: the status and error code.
async fn end<St>(s: &Server<St>, token: &str, id: &str) -> (StatusCode, Value) {
    let response = s
        .http
        .post(format!("{}/me/sessions/{id}/logout", s.base))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn session_id<St>(s: &Server<St>, token: &str) -> String {
    let (status, me) = s.me(token).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    me["session_id"].as_str().unwrap().to_owned()
}

/// Break to see it fail: the store's `user_sessions` answering other users' sessions, the
/// owner check in `logout_user_session`, or the login not recording its client.
#[tokio::test]
async fn a_user_lists_their_sessions_in_every_app_and_ends_one_but_never_anothers() {
    let s = start().await;
    let phone = phone_login(&s, "o_alice_phone", "u_alice").await;
    let (web, _) = s
        .browser_login(&[], false, "o_alice_web", Some("u_alice"))
        .await;
    let web = session_cookie(&web).unwrap();
    let bob = phone_login(&s, "o_bob", "u_bob").await;
    let (phone_sid, bob_sid) = (session_id(&s, &phone).await, session_id(&s, &bob).await);
    let (_, web_me) = s.me_by_cookie(&web).await;
    let web_sid = web_me["session_id"].as_str().unwrap().to_owned();

    let (status, list) = sessions(&s, &phone).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list.len(),
        2,
        "both of Alice's sessions, not Bob's: {list:?}"
    );
    let phone_entry = list.iter().find(|e| e["id"] == phone_sid.as_str()).unwrap();
    let web_entry = list.iter().find(|e| e["id"] == web_sid.as_str()).unwrap();
    assert_eq!(phone_entry["current"], true);
    assert_eq!(web_entry["current"], false);
    assert_eq!(phone_entry["app"], "mobile");
    assert_eq!(web_entry["app"], "web");
    assert_eq!(phone_entry["user_agent"], PHONE);
    assert_eq!(
        phone_entry["network"], "127.0.0.0/24",
        "coarse, never the address"
    );
    assert!(phone_entry["created_at"].as_u64().unwrap() > 0);
    assert!(phone_entry["last_confirmed_at"].as_u64().unwrap() > 0);
    let text = serde_json::to_string(&list).unwrap();
    for secret in [
        "access_token",
        "refresh_token",
        "AT-",
        "RT-",
        "ACCESS",
        "REFRESH",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }

    // Bob's session is not Alice's to end: 404, and it lives on. Nor is a malformed id.
    for id in [
        bob_sid.as_str(),
        "not-a-session-id",
        "AAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let (status, body) = end(&s, &phone, id).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {body}");
        assert_eq!(body["error"], "session_not_found");
    }
    assert_eq!(s.me(&bob).await.0, StatusCode::OK);

    // Alice ends her browser's session from her phone: the browser is logged out, the phone
    // is not, and the list has one left.
    assert_eq!(end(&s, &phone, &web_sid).await.0, StatusCode::NO_CONTENT);
    assert_eq!(s.me_by_cookie(&web).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(s.me(&phone).await.0, StatusCode::OK);
    let (_, list) = sessions(&s, &phone).await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], phone_sid.as_str());
    // Ending it twice is 404: it is no longer one of hers.
    assert_eq!(end(&s, &phone, &web_sid).await.0, StatusCode::NOT_FOUND);
    // Without a session, there is no list.
    assert_eq!(
        sessions(&s, "not-a-token").await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// Break to see it fail: `end_listed` in `pages.rs` without the same-site check.
#[tokio::test]
async fn the_home_page_lists_the_sessions_and_its_forms_refuse_other_sites() {
    let s = start().await;
    let phone = phone_login(&s, "o_carol_phone", "u_carol").await;
    let phone_sid = session_id(&s, &phone).await;
    let (web, _) = s
        .browser_login(&[], false, "o_carol_web", Some("u_carol"))
        .await;
    let web = session_cookie(&web).unwrap();

    let home = s.with_cookie(reqwest::Method::GET, "/", &web).await;
    let page = home.text().await.unwrap();
    assert!(
        page.contains("Where you&#x27;re logged in") || page.contains("Where you're logged in"),
        "{page}"
    );
    assert!(
        page.contains(&format!("action=\"/me/sessions/{phone_sid}/logout\"")),
        "{page}"
    );
    assert!(page.contains("(this browser)"));
    assert!(page.contains("ExampleApp/2.1 (iPhone; iOS 18.1)"));

    let path = format!("/me/sessions/{phone_sid}/logout");
    let form = |site: &'static str| {
        s.http
            .post(format!("{}{path}", s.base))
            .header(COOKIE, &web)
            .header("sec-fetch-site", site)
            .send()
    };
    assert_eq!(
        form("cross-site").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.me(&phone).await.0,
        StatusCode::OK,
        "a cross-site form ends nothing"
    );
    let done = form("same-origin").await.unwrap();
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(s.me(&phone).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        s.me_by_cookie(&web).await.0,
        StatusCode::OK,
        "the browser stays logged in"
    );
}

/// The list and the logout on a fleet sharing Redis: sessions made on A are listed on B, and
/// one ended from B is refused on A. Break to see it fail: the Redis store's `user_sessions`
/// reading the local copy only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_the_list_and_the_logout_hold_across_instances() {
    if redis::machine_redis().await.is_none() {
        return;
    }
    let url = redis::redis_url();
    let prefix = redis::random_prefix();
    let clock = ManualClock::starting_now();
    let a = first_of_fleet(
        fleet_store(&url, &prefix, redis::key("k1", 1), &clock).await,
        &clock,
        None,
    )
    .await;
    let clock = a.clock.clone();
    let b_store = fleet_store(&url, &prefix, redis::key("k1", 1), &clock).await;
    let b = start_instance(Instance::sharing(&a.mock, &clock, &a.accounts), b_store).await;

    let on_a = phone_login(&a, "o_dan_a", "u_dan").await;
    let on_b = phone_login(&b, "o_dan_b", "u_dan").await;
    let other = phone_login(&a, "o_erin", "u_erin").await;
    let a_sid = session_id(&a, &on_a).await;
    let (status, list) = sessions(&b, &on_b).await;
    assert_eq!(status, StatusCode::OK);
    let mut ids: Vec<&str> = list.iter().map(|e| e["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let mut expected = vec![
        a_sid.as_str(),
        list.iter().find(|e| e["current"] == true).unwrap()["id"]
            .as_str()
            .unwrap(),
    ];
    expected.sort_unstable();
    assert_eq!(
        ids, expected,
        "both of Dan's sessions, from either instance"
    );
    assert_eq!(list[0]["user_agent"], PHONE);

    let erin_sid = session_id(&a, &other).await;
    assert_eq!(end(&b, &on_b, &erin_sid).await.0, StatusCode::NOT_FOUND);
    assert_eq!(a.me(&other).await.0, StatusCode::OK);
    assert_eq!(end(&b, &on_b, &a_sid).await.0, StatusCode::NO_CONTENT);
    // The delete is published: A refuses the session as soon as it hears (bounded by the
    // staleness when the message is late; the clock moving past it makes that certain).
    clock.advance(MAX_STALENESS + std::time::Duration::from_millis(1));
    assert_eq!(a.me(&on_a).await.0, StatusCode::UNAUTHORIZED);
    let (_, list) = sessions(&a, &on_b).await;
    assert_eq!(list.len(), 1);
    assert!(
        a.auth
            .sessions()
            .store()
            .get_shared(&a_sid.parse().unwrap())
            .await
            .unwrap()
            .is_none()
    );
}
