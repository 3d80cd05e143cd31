//! The browser flows in a real browser — the website login (approve, deny, logout), a
//! callback URL opened by a second browser (refused, before and after the first used it),
//! `return_to`, and the Official Account flow — in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, never a downloaded browser) driven through WebDriver (fantoccini) against
//! the example server and its fake WeChat. Screenshots of each step are written to
//! `target/browser-screenshots/`; `UPDATE_README_SCREENSHOT=1` also refreshes the README's.
//!
//! When Chromium or its driver is missing the tests fail, unless `WECHAT_LOGIN_SKIP=browser`
//! opts out (and the skip is printed where it is seen).

mod common;

use common::redis::skip;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::StatusCode;
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver of the test's own, on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn driver() -> Option<Driver> {
    if skip::opted_out("browser") {
        return None;
    }
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        skip::missing(
            "Chromium and its WebDriver",
            format_args!(
                "{CHROMIUM} or {CHROMEDRIVER} missing (apt-get install chromium chromium-driver)"
            ),
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // A separate process: nothing to wait on but its status endpoint (at most 20 s).
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..400 {
        let ready = http.get(format!("{}/status", driver.url)).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Some(driver);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not start");
}

async fn browser(driver: &Driver) -> Client {
    browser_as(driver, None).await
}

/// A browser session, with this User-Agent (WeChat's in-app browser, say) when given.
async fn browser_as(driver: &Driver, user_agent: Option<&str>) -> Client {
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--window-size=900,700".into(),
    ];
    if let Some(user_agent) = user_agent {
        args.push(format!("--user-agent={user_agent}"));
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": CHROMIUM, "args": args }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn snap(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), &png).unwrap();
    if name == "2-logged-in" && std::env::var_os("UPDATE_README_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("logged-in.png"), &png).unwrap();
    }
}

/// The fake WeChat's consent button, once its page has loaded.
async fn approve_button(browser: &Client) -> fantoccini::elements::Element {
    browser
        .wait()
        .for_element(Locator::XPath("//button[text()='Approve']"))
        .await
        .unwrap()
}

/// Clicks the element with this id.
async fn click(browser: &Client, id: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn text(browser: &Client) -> String {
    browser
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_and_out_in_a_browser() {
    let Some(driver) = driver().await else {
        return;
    };
    let s = common::start().await;
    let browser = browser(&driver).await;

    // Logged out: the home page offers the login.
    browser.goto(&format!("{}/", s.base)).await.unwrap();
    assert!(text(&browser).await.contains("Log in with WeChat"));
    snap(&browser, "1-home").await;

    // Log in: the fake WeChat's consent page, Approve, back home as the user.
    click(&browser, "login").await;
    let approve = approve_button(&browser).await;
    approve.click().await.unwrap();
    let openid = browser
        .wait()
        .for_element(Locator::Id("openid"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!openid.is_empty());
    assert!(
        text(&browser).await.contains("Nickname"),
        "the profile is shown"
    );
    snap(&browser, "2-logged-in").await;

    // Still logged in after a reload; the session cookie is HttpOnly.
    browser.refresh().await.unwrap();
    assert_eq!(
        browser
            .find(Locator::Id("openid"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        openid
    );
    let cookies = browser.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "wechat_session")
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    let cookie = format!("wechat_session={}", session.value());

    // A cross-site form post to log out is refused; the session lives on.
    let forged = s
        .http
        .post(format!("{}/session/logout", s.base))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let me = s.with_cookie(reqwest::Method::GET, "/me", &cookie).await;
    assert_eq!(me.status(), StatusCode::OK);

    // Log out: back home, logged out, and the session is over.
    click(&browser, "logout").await;
    browser
        .wait()
        .for_element(Locator::Id("login"))
        .await
        .unwrap();
    snap(&browser, "3-logged-out").await;
    let me = s.with_cookie(reqwest::Method::GET, "/me", &cookie).await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);

    // Deny on WeChat's page: a page a person can read, with status 403.
    click(&browser, "login").await;
    let deny = browser
        .wait()
        .for_element(Locator::XPath("//button[text()='Deny']"))
        .await
        .unwrap();
    deny.click().await.unwrap();
    browser
        .wait()
        .for_element(Locator::XPath("//h1[text()='Login cancelled']"))
        .await
        .unwrap();
    snap(&browser, "4-denied").await;
    // The status the browser got: the same request, with the browser's binding cookie.
    let declined = browser.current_url().await.unwrap();
    let binding = browser
        .get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name() == "wechat_login_binding")
        .expect("the binding cookie of the login that was declined");
    let again = s
        .http
        .get(declined.as_str())
        .header("accept", "text/html")
        .header(
            "cookie",
            format!("wechat_login_binding={}", binding.value()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    assert!(again.text().await.unwrap().contains("Login cancelled"));

    browser.close().await.unwrap();
}

/// The path of the page a browser shows.
async fn path(browser: &Client) -> String {
    browser.current_url().await.unwrap().path().to_owned()
}

/// `fetch(path)` from the page (same origin: the browser sends its cookies): the status.
async fn fetch_status(browser: &Client, path: &str) -> u64 {
    browser
        .execute(
            "return fetch(arguments[0]).then(r => r.status)",
            vec![json!(path)],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_url_opens_only_the_browser_that_started_it_and_returns_where_asked() {
    let Some(driver) = driver().await else {
        return;
    };
    let s = common::start().await;
    let first = browser(&driver).await;
    let second = browser(&driver).await;

    // Browser A starts a website login that should come back to /me.
    first
        .goto(&format!("{}/auth/wechat/web/start?return_to=/me", s.base))
        .await
        .unwrap();
    approve_button(&first).await;
    let consent = first.current_url().await.unwrap();
    let param = |name: &str| {
        consent
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    // WeChat's answer, not yet followed: the callback URL with a fresh code.
    let callback = s
        .approve(&param("redirect_uri"), &param("state"), "o_browser_two")
        .await;

    // Browser B, which did not start this login, opens that URL: refused, no session.
    second.goto(&callback).await.unwrap();
    second
        .wait()
        .for_element(Locator::XPath(
            "//h1[text()='This login link cannot be used']",
        ))
        .await
        .unwrap();
    snap(&second, "5-replay-refused").await;
    let cookies = second.get_all_cookies().await.unwrap();
    assert!(!cookies.iter().any(|c| c.name() == "wechat_session"));

    // Browser A opens it: logged in, on the page it asked to come back to.
    first.goto(&callback).await.unwrap();
    assert_eq!(path(&first).await, "/me");
    assert!(text(&first).await.contains("o_browser_two"));
    snap(&first, "6-returned-to-me").await;
    // The page cannot read the session cookie, and its requests carry it.
    let visible = first
        .execute("return document.cookie", vec![])
        .await
        .unwrap();
    assert!(
        !visible.as_str().unwrap().contains("wechat_session"),
        "{visible}"
    );
    assert_eq!(fetch_status(&first, "/me").await, 200);

    // B replays the URL after A used it: still refused.
    second.goto(&callback).await.unwrap();
    second
        .wait()
        .for_element(Locator::XPath(
            "//h1[text()='This login link cannot be used']",
        ))
        .await
        .unwrap();
    assert_eq!(fetch_status(&second, "/me").await, 401);

    // The Official Account flow in B, a desktop browser: WeChat's authorize page, approve, and
    // the callback is refused (a desktop browser cannot be told from a victim's).
    let oa_start = format!("{}/auth/wechat/web/start?app=oa&return_to=/me", s.base);
    second.goto(&oa_start).await.unwrap();
    let approve = approve_button(&second).await;
    approve.click().await.unwrap();
    second
        .wait()
        .for_element(Locator::XPath(
            "//h1[text()='This login link cannot be used']",
        ))
        .await
        .unwrap();
    assert_eq!(fetch_status(&second, "/me").await, 401);
    second.close().await.unwrap();

    // In WeChat's own browser (its User-Agent): approve, back to /me, logged in.
    let second = browser_as(
        &driver,
        Some("Mozilla/5.0 (iPhone) AppleWebKit/605.1.15 MicroMessenger/8.0.50"),
    )
    .await;
    second.goto(&oa_start).await.unwrap();
    let approve = approve_button(&second).await;
    assert!(
        second
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/connect/oauth2/authorize"),
        "the Official Account's authorize page"
    );
    snap(&second, "7-official-account-consent").await;
    approve.click().await.unwrap();
    let me = reqwest::Url::parse(&format!("{}/me", s.base)).unwrap();
    second.wait().for_url(&me).await.unwrap();
    assert!(text(&second).await.contains(r#""app":"oa""#));
    snap(&second, "8-official-account-logged-in").await;
    let cookies = second.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "wechat_session")
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(fetch_status(&second, "/me").await, 200);

    first.close().await.unwrap();
    second.close().await.unwrap();
}

#[tokio::test]
async fn browser_pages_and_the_callback_carry_security_headers() {
    let s = common::start().await;
    for (path, accept) in [
        ("/", "text/html"),
        ("/auth/wechat/web/callback?state=forged&code=x", "text/html"),
    ] {
        let response = s
            .http
            .get(format!("{}{path}", s.base))
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(headers["referrer-policy"], "no-referrer");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        if path != "/" {
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            assert!(
                headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
            let page = response.text().await.unwrap();
            assert!(
                page.contains("<h1>This login link cannot be used</h1>"),
                "{page}"
            );
        }
    }
    // An API client still gets JSON.
    let response = s
        .http
        .get(format!(
            "{}/auth/wechat/web/callback?state=forged&code=x",
            s.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_state");
}

/// Scan-to-log-in in a real browser, in the sandbox: the home page's "Scan with WeChat" shows
/// the Official Account's QR code (its image allowed by the page's policy), a second browser
/// plays the phone on the fake WeChat's "simulate scan" page, and the first browser, polling by
/// itself, lands home logged in as the scanner — the second one never is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_by_scanning_the_official_accounts_code() {
    let Some(driver) = driver().await else {
        return;
    };
    let s = common::start().await;
    let desktop = browser(&driver).await;
    desktop.goto(&format!("{}/", s.base)).await.unwrap();
    click(&desktop, "scan-login").await;
    desktop.wait().for_element(Locator::Id("qr")).await.unwrap();
    let loaded = desktop
        .execute(
            "const img = document.getElementById('qr'); return img.complete && img.naturalWidth > 0;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(loaded, json!(true), "the QR image is shown");
    snap(&desktop, "scan-1-qr").await;
    let simulate = desktop
        .find(Locator::Id("simulate-scan"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .expect("the sandbox's simulate-scan link");

    // The phone: the fake WeChat's page, one button.
    let phone = browser(&driver).await;
    phone.goto(&simulate).await.unwrap();
    let openid = phone
        .find(Locator::Css("input[name=openid]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    click(&phone, "scan").await;
    phone
        .wait()
        .for_element(Locator::Id("scanned"))
        .await
        .unwrap();

    // The desktop page goes on by itself and lands home, logged in as the scanner.
    let shown = desktop
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Id("openid"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(shown, openid);
    assert_eq!(path(&desktop).await, "/");
    snap(&desktop, "scan-2-logged-in").await;
    // The phone's browser (which saw the simulate page only) is not logged in here.
    phone.goto(&format!("{}/", s.base)).await.unwrap();
    assert!(text(&phone).await.contains("Log in with WeChat"));

    desktop.close().await.unwrap();
    phone.close().await.unwrap();
}
