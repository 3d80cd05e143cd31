//! Shared test harness: a started mock, an HTTP client that does not follow redirects, and
//! helpers that call the WeChat endpoints the way a client crate would.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use reqwest::{Client, Method, redirect::Policy};
use serde_json::Value;
use url::Url;
use wechat_mock::{MockConfig, MockGrant, MockWeChat};

/// One HTTP answer, read completely.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub location: Option<String>,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as JSON; panics with the body text when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The errcode of a WeChat answer, 0 when absent (a success shape).
    pub fn errcode(&self) -> i64 {
        self.json()["errcode"].as_i64().unwrap_or(0)
    }

    /// Asserts this is a WeChat error with this code and the rid suffix.
    #[track_caller]
    pub fn assert_error(&self, code: i64) {
        assert_eq!(self.status, 200, "{}", self.text());
        assert_eq!(self.content_type.as_deref(), Some("text/plain"));
        let json = self.json();
        assert_eq!(json["errcode"].as_i64(), Some(code), "{json}");
        let errmsg = json["errmsg"].as_str().expect("errmsg");
        assert!(errmsg.contains(", rid: "), "errmsg without rid: {errmsg}");
    }

    /// Asserts an HTTP 200 text/plain success body without errcode, and returns it.
    #[track_caller]
    pub fn success(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text());
        assert_eq!(self.content_type.as_deref(), Some("text/plain"));
        let json = self.json();
        assert!(json.get("errcode").is_none(), "unexpected error: {json}");
        json
    }
}

pub struct Harness {
    pub mock: MockWeChat,
    client: Client,
}

impl Harness {
    pub async fn start() -> Self {
        Self::with(MockConfig::default()).await
    }

    pub async fn with(config: MockConfig) -> Self {
        let mock = MockWeChat::start(config).await.expect("mock starts");
        Self::over(mock)
    }

    pub fn over(mock: MockWeChat) -> Self {
        let client = Client::builder()
            .redirect(Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("client builds");
        Self { mock, client }
    }

    pub fn url(&self, path: &str, params: &[(&str, &str)]) -> Url {
        let base = format!("{}{path}", self.mock.base_url());
        Url::parse_with_params(&base, params).expect("valid url")
    }

    pub async fn get(&self, path: &str, params: &[(&str, &str)]) -> Answer {
        self.send(Method::GET, self.url(path, &[]).as_str(), params, None)
            .await
    }

    pub async fn send(
        &self,
        method: Method,
        url: &str,
        params: &[(&str, &str)],
        body: Option<&str>,
    ) -> Answer {
        let url = Url::parse_with_params(url, params).expect("valid url");
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request.send().await.expect("request reaches the mock");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().expect("ascii header").to_owned())
        };
        let content_type = header("content-type");
        let location = header("location");
        let status = response.status().as_u16();
        let body = response.bytes().await.expect("body").to_vec();
        Answer {
            status,
            content_type,
            location,
            body,
        }
    }

    /// A control API call: `method` on `/mock/...` with an optional JSON body.
    pub async fn control(&self, method: Method, path: &str, body: Option<&str>) -> Answer {
        let url = format!("{}{path}", self.mock.base_url());
        self.send(method, &url, &[], body).await
    }

    pub async fn exchange(&self, code: &str) -> Answer {
        let (appid, secret) = (self.mock.appid().to_owned(), self.mock.secret().to_owned());
        self.get(
            "/sns/oauth2/access_token",
            &[
                ("appid", &appid),
                ("secret", &secret),
                ("code", code),
                ("grant_type", "authorization_code"),
            ],
        )
        .await
    }

    pub async fn jscode2session(&self, code: &str) -> Answer {
        let (appid, secret) = (self.mock.appid().to_owned(), self.mock.secret().to_owned());
        self.get(
            "/sns/jscode2session",
            &[
                ("appid", &appid),
                ("secret", &secret),
                ("js_code", code),
                ("grant_type", "authorization_code"),
            ],
        )
        .await
    }

    /// Mints a code for `grant` and exchanges it: the success body.
    pub async fn login(&self, grant: MockGrant) -> Tokens {
        let code = self.mock.mint_code(grant);
        Tokens::from(&self.exchange(&code).await.success())
    }

    pub async fn refresh(&self, refresh_token: &str) -> Answer {
        let appid = self.mock.appid().to_owned();
        self.get(
            "/sns/oauth2/refresh_token",
            &[
                ("appid", &appid),
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    pub async fn auth(&self, access_token: &str, openid: &str) -> Answer {
        self.get(
            "/sns/auth",
            &[("access_token", access_token), ("openid", openid)],
        )
        .await
    }

    pub async fn userinfo(&self, access_token: &str, openid: &str) -> Answer {
        self.get(
            "/sns/userinfo",
            &[
                ("access_token", access_token),
                ("openid", openid),
                ("lang", "zh_CN"),
            ],
        )
        .await
    }
}

/// The interesting fields of an exchange or refresh answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub openid: String,
    pub scope: String,
}

impl From<&Value> for Tokens {
    fn from(json: &Value) -> Self {
        let field = |name: &str| {
            json[name]
                .as_str()
                .unwrap_or_else(|| panic!("{name} missing in {json}"))
                .to_owned()
        };
        Self {
            access_token: field("access_token"),
            refresh_token: field("refresh_token"),
            openid: field("openid"),
            scope: field("scope"),
        }
    }
}

pub fn user(openid: &str) -> MockGrant {
    MockGrant {
        openid: Some(openid.to_owned()),
        ..MockGrant::default()
    }
}
