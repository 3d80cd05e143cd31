//! The example's own pages under attack, through real HTTP: its logout forms never re-issue the
//! cookie they clear, only a web address becomes the avatar link, and the Content Security
//! Policy it sends is the one its README states. (The library's defences are tested in
//! tower-wechat's `tests/security.rs`.)

mod common;

use std::time::Duration;

use common::{Server, session_cookie, start};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};

async fn callback_in(s: &Server, url: &str, binding: Option<&str>) -> reqwest::Response {
    let mut request = s.http.get(url);
    if let Some(binding) = binding {
        request = request.header(COOKIE, binding);
    }
    request.send().await.unwrap()
}

/// A browser's session cookie, from a website login of `openid`.
async fn cookie_of(s: &Server, openid: &str) -> String {
    let login = s.web_login(openid).await;
    let done = callback_in(s, &login.callback, Some(&login.binding)).await;
    session_cookie(&done).unwrap()
}

#[tokio::test]
async fn logout_forms_clear_the_cookie_and_never_reissue_it() {
    let s = start().await;
    for (form, openid) in [
        ("/session/logout", "o_rae"),
        ("/session/logout-all", "o_sam"),
    ] {
        let cookie = cookie_of(&s, openid).await;
        // Past half its life the cookie is re-issued on use...
        s.advance(Duration::from_secs(4 * 24 * 3600));
        let used = s.with_cookie(reqwest::Method::GET, "/me", &cookie).await;
        assert!(session_cookie(&used).is_some(), "re-issued on use");
        // ...but not on the form that ends its session: only the clearing cookie comes back.
        let ended = s
            .http
            .post(format!("{}{form}", s.base))
            .header(COOKIE, &cookie)
            .header("sec-fetch-site", "same-origin")
            .send()
            .await
            .unwrap();
        assert_eq!(ended.status(), StatusCode::SEE_OTHER, "{form}");
        let set: Vec<_> = ended
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .filter(|v| v.starts_with("wechat_session="))
            .collect();
        assert_eq!(set.len(), 1, "{form}: {set:?}");
        assert!(set[0].contains("Max-Age=0"), "{form}: {set:?}");
        assert_eq!(
            s.with_cookie(reqwest::Method::GET, "/me", &cookie)
                .await
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn only_a_web_address_becomes_the_avatar_link() {
    let s = start().await;
    for (openid, avatar, linked) in [
        ("o_js", "javascript:alert(document.cookie)", false),
        ("o_data", "data:text/html,<script>alert(1)</script>", false),
        ("o_web", "https://thirdwx.qlogo.cn/mmopen/abc/132", true),
    ] {
        s.mock.set_profile(
            openid,
            wechat_mock::MockProfile {
                nickname: openid.into(),
                headimgurl: avatar.into(),
                ..Default::default()
            },
        );
        let cookie = cookie_of(&s, openid).await;
        let home = s.with_cookie(reqwest::Method::GET, "/", &cookie).await;
        let page = home.text().await.unwrap();
        assert!(page.contains(&format!("Nickname: {openid}")), "{page}");
        assert_eq!(page.contains(">avatar</a>"), linked, "{avatar}: {page}");
        assert!(!page.contains("href=\"javascript:"), "{page}");
        assert!(!page.contains("href=\"data:"), "{page}");
    }
}

#[tokio::test]
async fn the_content_security_policy_sent_is_the_one_the_readme_states() {
    let s = start().await;
    let home = s.http.get(format!("{}/", s.base)).send().await.unwrap();
    let csp = home.headers()["content-security-policy"].to_str().unwrap();
    let readme = include_str!("../examples/server/README.md");
    assert!(
        readme.contains(&format!("`Content-Security-Policy: {csp}`")),
        "the README states another policy than {csp:?}"
    );
}
