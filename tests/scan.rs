//! Scan-to-log-in through the example server: the sandbox's fake WeChat pushes the scan to the
//! server (safe mode), the login hook links the person to the account their other logins have,
//! and on a fleet sharing Redis the push lands on one instance while the browser polls another
//! — the session is set once, for that browser only. (The flow's own promises are tested in
//! tower-wechat's `tests/scan.rs`.)

mod common;

use common::{Instance, first_of_fleet, fleet_store, redis, start, start_instance};
use reqwest::StatusCode;
use wechat_login::middleware::AppKind;
use wechat_login::oauth::ManualClock;

/// Break to see it fail: `follower_unionid` skipped (the scan would get another account).
#[tokio::test]
async fn a_scan_logs_in_to_the_same_account_as_the_persons_other_logins() {
    let s = start().await;
    let phone = s
        .json_login(AppKind::MobileApp, "o_phone", Some("u_person"))
        .await
        .unwrap();
    let (_, on_phone) = s.me(&phone).await;

    let started = s.scan_start("").await;
    let ticket = started.ticket.clone().expect("a QR code");
    let (status, reply) = s
        .mock
        .scan_qr(&ticket, "o_oa_person", Some("u_person"), 1)
        .await
        .unwrap();
    assert_eq!((status, reply.as_str()), (200, "success"));
    let (status, body, session) = s
        .scan_poll(&started.status_url, Some(&started.binding))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, me) = s.me_by_cookie(&session.expect("a session cookie")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["app"], "oa");
    assert_eq!(
        me["user_id"], on_phone["user_id"],
        "one person, one account"
    );

    // Starting codes is limited per client (10 a minute by default): the 11th from this
    // address is 429 before WeChat is asked.
    for _ in 0..9 {
        s.scan_start("").await;
    }
    let limited = s
        .http
        .get(format!("{}/auth/wechat/scan/start", s.base))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));

    // The home page offers the scan.
    let home = s.http.get(format!("{}/", s.base)).send().await.unwrap();
    assert!(home.text().await.unwrap().contains("id=\"scan-login\""));
}

/// Break to see it fail: the scan kept in process memory instead of the shared store (B
/// never learns of the push A took).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_fleet_the_push_lands_on_one_instance_and_the_browser_polls_another() {
    if redis::machine_redis().await.is_none() {
        return;
    }
    let url = redis::redis_url();
    let prefix = redis::random_prefix();
    let clock = ManualClock::starting_now();
    // A brings the fake WeChat, whose Official Account pushes to A.
    let key = || redis::key("k1", 1);
    let a = first_of_fleet(
        fleet_store(&url, &prefix, key(), &clock).await,
        &clock,
        None,
    )
    .await;
    let clock = a.clock.clone();
    let b_store = fleet_store(&url, &prefix, key(), &clock).await;
    let b = start_instance(Instance::sharing(&a.mock, &clock, &a.accounts), b_store).await;

    // The browser starts on B and polls B; WeChat pushes the scan to A, three times.
    let started = b.scan_start("").await;
    let ticket = started.ticket.clone().unwrap();
    assert_eq!(
        b.scan_poll(&started.status_url, Some(&started.binding))
            .await
            .1["status"],
        "pending"
    );
    let (status, _) = a
        .mock
        .scan_qr(&ticket, "o_fleet_scan", None, 3)
        .await
        .unwrap();
    assert_eq!(status, 200);
    // A second browser, on either instance, gets nothing.
    for site in [&a, &b] {
        let (status, _, session) = site.scan_poll(&started.status_url, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(session.is_none());
    }
    let (status, body, session) = b
        .scan_poll(&started.status_url, Some(&started.binding))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "logged_in");
    let session = session.unwrap();
    assert_eq!(a.me_by_cookie(&session).await.1["openid"], "o_fleet_scan");
    // Once for the fleet: the same browser polling A afterwards gets no second session.
    let (_, body, again) = a
        .scan_poll(&started.status_url, Some(&started.binding))
        .await;
    assert_eq!(body["status"], "expired");
    assert!(again.is_none());
}
