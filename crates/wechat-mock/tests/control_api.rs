//! The `/mock/*` control API over HTTP, as the binary's users drive it.

mod common;

use common::{Harness, user};
use reqwest::Method;
use serde_json::{Value, json};

fn code_of(json: &Value) -> String {
    json["code"].as_str().expect("code").to_owned()
}

#[tokio::test]
async fn mint_codes_with_and_without_a_body() {
    let h = Harness::start().await;
    for body in [None, Some(""), Some("{}")] {
        let answer = h.control(Method::POST, "/mock/codes", body).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let code = code_of(&answer.json());
        let json = h.exchange(&code).await.success();
        assert_eq!(json["scope"], "snsapi_userinfo,");
    }

    let body = json!({
        "openid": "o_ctl",
        "scope": "snsapi_login",
        "unionid": "u_ctl",
        "snapshot_user": true
    })
    .to_string();
    let answer = h.control(Method::POST, "/mock/codes", Some(&body)).await;
    let json = h.exchange(&code_of(&answer.json())).await.success();
    assert_eq!(json["openid"], "o_ctl");
    assert_eq!(json["scope"], "snsapi_login,");
    assert_eq!(json["unionid"], "u_ctl");
    assert_eq!(json["is_snapshotuser"], 1);

    let answer = h
        .control(Method::POST, "/mock/codes", Some("{\"opneid\":\"x\"}"))
        .await;
    assert_eq!(answer.status, 400);
    assert!(answer.json()["error"].is_string());
}

#[tokio::test]
async fn advance_the_clock() {
    let h = Harness::start().await;
    let code = code_of(&h.control(Method::POST, "/mock/codes", None).await.json());
    let before = h
        .mock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let answer = h
        .control(
            Method::POST,
            "/mock/clock/advance",
            Some("{\"seconds\": 601}"),
        )
        .await;
    assert_eq!(answer.status, 200);
    let now = answer.json()["now"].as_u64().expect("now");
    assert!(
        now >= before + 601 && now <= before + 602,
        "{before} -> {now}"
    );
    h.exchange(&code).await.assert_error(42003);

    let answer = h
        .control(
            Method::POST,
            "/mock/clock/advance",
            Some("{\"seconds\": -1}"),
        )
        .await;
    assert_eq!(answer.status, 400);
}

#[tokio::test]
async fn stats_over_http() {
    let h = Harness::start().await;
    h.auth("t", "o").await;
    let answer = h.control(Method::GET, "/mock/stats", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        json!({
            "access_token": 0,
            "refresh_token": 0,
            "auth": 1,
            "userinfo": 0,
            "jscode2session": 0,
            "qrconnect": 0,
            "authorize": 0,
            "stable_token": 0,
            "token": 0,
            "getuserphonenumber": 0,
            "checksession": 0,
            "resetusersessionkey": 0,
            "qrcode_create": 0,
            "user_info": 0
        })
    );
}

#[tokio::test]
async fn phone_codes_are_minted_over_http_and_checked() {
    let h = Harness::start().await;
    let answer = h
        .control(
            Method::POST,
            "/mock/phone-codes",
            Some(r#"{"phone": "13800138000"}"#),
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["code"].as_str().unwrap().len(), 32);
    for bad in [
        r#"{"phone": "12ab"}"#,
        r#"{"phone": "13800138000", "country_code": "+86"}"#,
        r#"{}"#,
    ] {
        let answer = h
            .control(Method::POST, "/mock/phone-codes", Some(bad))
            .await;
        assert_eq!(answer.status, 400, "{bad}");
    }
    let answer = h
        .control(Method::POST, "/mock/apps/wxany/invalidate-token", None)
        .await;
    assert_eq!(answer.status, 204);
}

#[tokio::test]
async fn faults_over_http() {
    let h = Harness::start().await;
    let login = h.login(user("o_http")).await;
    for body in [
        json!({"endpoint": "refresh_token", "errcode": -1}),
        json!({"endpoint": "refresh_token", "status": 500, "times": 2}),
        json!({"endpoint": "refresh_token", "delay_ms": 5}),
        json!({"endpoint": "refresh_token", "body": "<html></html>"}),
    ] {
        let answer = h
            .control(Method::POST, "/mock/faults", Some(&body.to_string()))
            .await;
        assert_eq!(answer.status, 204, "{body}: {}", answer.text());
    }
    h.refresh(&login.refresh_token).await.assert_error(-1);
    assert_eq!(h.refresh(&login.refresh_token).await.status, 500);
    assert_eq!(h.refresh(&login.refresh_token).await.status, 500);
    h.refresh(&login.refresh_token).await.success();
    assert_eq!(
        h.refresh(&login.refresh_token).await.text(),
        "<html></html>"
    );
    h.refresh(&login.refresh_token).await.success();
    assert_eq!(h.mock.stats()["refresh_token"], 6);

    let body = json!({"endpoint": "auth", "errcode": -1, "times": 3}).to_string();
    h.control(Method::POST, "/mock/faults", Some(&body)).await;
    let answer = h.control(Method::DELETE, "/mock/faults", None).await;
    assert_eq!(answer.status, 204);
    h.auth(&login.access_token, "o_http").await;
    assert_eq!(h.auth(&login.access_token, "o_http").await.errcode(), 0);
}

#[tokio::test]
async fn bad_fault_requests_are_400() {
    let h = Harness::start().await;
    for body in [
        json!({"endpoint": "nope", "errcode": -1}).to_string(),
        json!({"endpoint": "auth"}).to_string(),
        json!({"endpoint": "auth", "errcode": -1, "status": 500}).to_string(),
        json!({"endpoint": "auth", "status": 42}).to_string(),
        json!({"endpoint": "auth", "errcode": -1, "extra": 1}).to_string(),
        json!({"errcode": -1}).to_string(),
        "not json".to_owned(),
    ] {
        let answer = h.control(Method::POST, "/mock/faults", Some(&body)).await;
        assert_eq!(answer.status, 400, "{body}");
        assert!(answer.json()["error"].is_string(), "{body}");
    }
}

#[tokio::test]
async fn revoke_and_profile_over_http() {
    let h = Harness::start().await;
    let login = h.login(user("o_u")).await;

    let body = json!({"nickname": "Bob", "country": "CN"}).to_string();
    let answer = h
        .control(Method::PUT, "/mock/users/o_u/profile", Some(&body))
        .await;
    assert_eq!(answer.status, 204);
    let info = h.userinfo(&login.access_token, "o_u").await.success();
    assert_eq!(info["nickname"], "Bob");
    assert_eq!(info["country"], "CN");
    assert_eq!(info["headimgurl"], "https://thirdwx.qlogo.cn/mmopen/mock/0");

    let answer = h
        .control(Method::POST, "/mock/users/o_u/revoke", None)
        .await;
    assert_eq!(answer.status, 204);
    h.refresh(&login.refresh_token).await.assert_error(40030);
    h.auth(&login.access_token, "o_u").await.assert_error(40001);
}
