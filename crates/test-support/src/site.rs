//! A site under test: an axum app behind the WeChat layer, served by `tower_wechat::serve` on
//! loopback, with the fake WeChat and one manual clock, and the requests a phone, a browser and
//! WeChat's consent page make to it. tower-wechat's end-to-end tests serve a small app of their
//! own on it; the example server's tests serve the example.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE, USER_AGENT};
use serde_json::{Value, json};
use tower_wechat::{AppKind, ServeLimits, WeChatAuthLayer};
use wechat_mock::MockWeChat;
use wechat_oauth::clock::ManualClock;
use wechat_sessions::MokaStore;

/// A User-Agent of WeChat's in-app browser.
pub const IN_WECHAT: &str = "Mozilla/5.0 (iPhone) AppleWebKit/605.1.15 MicroMessenger/8.0.50";

/// A query parameter of a URL.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The first cookie a response sets, as a browser sends it back (`name=value`).
pub fn first_cookie(response: &reqwest::Response) -> String {
    response.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// A scan login as the browser that started it holds it (see [`Site::scan_start`]).
pub struct ScanStarted {
    /// The binding cookie, `name=value`.
    pub binding: String,
    /// Where to poll (a path with its query).
    pub status_url: String,
    /// The QR code's ticket (QR mode).
    pub ticket: Option<String>,
    /// The code to send (keyword mode).
    pub keyword: Option<String>,
}

/// A site serving on loopback until stopped (or dropped with the test's runtime).
pub struct Site<St = MokaStore> {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// The fake WeChat.
    pub mock: MockWeChat,
    /// The clock of the site and of the fake WeChat.
    pub clock: ManualClock,
    /// A client that follows no redirect and gives up after 30 s.
    pub http: reqwest::Client,
    /// The layer the site's app is built with.
    pub auth: WeChatAuthLayer<St>,
    /// The AppID of each app served.
    pub appids: Vec<(AppKind, String)>,
    /// Whether codes come from the site's `/sandbox/code` route (the example's sandbox) rather
    /// than straight from the fake WeChat.
    pub sandbox: bool,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

/// The listener's limits for tests that play many clients from one loopback address (thousands
/// of concurrent requests): no per-address cap, and room for all of them.
pub fn many_clients() -> ServeLimits {
    ServeLimits {
        max_connections: 10_000,
        max_connections_per_address: 10_000,
        ..ServeLimits::default()
    }
}

/// What a site is made of, before it serves.
pub struct SiteParts<St> {
    /// The app to serve.
    pub router: axum::Router,
    /// The layer the app is built with.
    pub auth: WeChatAuthLayer<St>,
    /// The fake WeChat the app's clients call.
    pub mock: MockWeChat,
    /// The clock the app runs on.
    pub clock: ManualClock,
    /// The AppID of each app served.
    pub appids: Vec<(AppKind, String)>,
    /// Whether codes come from the app's `/sandbox/code` route.
    pub sandbox: bool,
    /// The listener's limits.
    pub limits: ServeLimits,
}

impl<St> Site<St> {
    /// Serves `parts.router` on `listener` with `tower_wechat::serve` and the given limits.
    pub fn serve(listener: tokio::net::TcpListener, parts: SiteParts<St>) -> Self {
        let addr = listener.local_addr().expect("a bound listener");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(
            tower_wechat::serve(listener, parts.router)
                .limits(parts.limits)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        Site {
            base: format!("http://{addr}"),
            mock: parts.mock,
            clock: parts.clock,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                // A request that hangs fails the test instead of hanging it.
                .timeout(Duration::from_secs(30))
                .build()
                .expect("an HTTP client"),
            auth: parts.auth,
            appids: parts.appids,
            sandbox: parts.sandbox,
            stop: Some(stop),
            serving: Some(serving),
        }
    }
}

impl<St> Site<St> {
    /// Stops the instance (as a deploy would) and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = self.serving.take() {
            let _ = serving.await;
        }
    }
}

impl<St> Site<St> {
    /// Moves the site's and WeChat's time forward.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.mock.advance(by);
    }

    /// The AppID of the app of `kind`.
    pub fn appid(&self, kind: AppKind) -> &str {
        &self
            .appids
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("the site serves an app of this kind")
            .1
    }

    /// A fresh mobile-app code for `openid`: from the sandbox route of an instance that has one
    /// (as the phone's WeChat would mint it), else straight from the shared fake WeChat.
    pub async fn code(&self, openid: &str) -> String {
        self.code_for(AppKind::MobileApp, openid, None).await
    }

    /// A fresh code of the app of `kind` for `openid` (and `unionid`).
    pub async fn code_for(&self, kind: AppKind, openid: &str, unionid: Option<&str>) -> String {
        if !self.sandbox {
            return self.mock.mint_code(wechat_mock::MockGrant {
                openid: Some(openid.to_owned()),
                unionid: unionid.map(str::to_owned),
                appid: Some(self.appid(kind).to_owned()),
                ..Default::default()
            });
        }
        let mut query = vec![("openid", openid), ("app", kind.as_str())];
        if let Some(unionid) = unionid {
            query.push(("unionid", unionid));
        }
        let body = self.get_json("/sandbox/code", &query).await;
        body["code"].as_str().unwrap().to_owned()
    }

    /// `GET path?query` without credentials (the sandbox's routes): the JSON answer.
    pub async fn get_json(&self, path: &str, query: &[(&str, &str)]) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A JSON code login of `openid` (and `unionid`) to the app of `kind`: the session token,
    /// or the refusal.
    pub async fn json_login(
        &self,
        kind: AppKind,
        openid: &str,
        unionid: Option<&str>,
    ) -> Result<String, (StatusCode, Value)> {
        let code = self.code_for(kind, openid, unionid).await;
        let path = match kind {
            AppKind::MiniProgram => "/auth/wechat/miniprogram/login",
            _ => "/auth/wechat/login",
        };
        let (status, body) = self
            .post_login(path, json!({ "code": code }).to_string())
            .await;
        match status {
            StatusCode::OK => Ok(body["token"].as_str().unwrap().to_owned()),
            _ => Err((status, body)),
        }
    }

    /// A POST with a JSON body, as an app sends it.
    pub async fn post_json(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs a JSON login body to `path`: the status and the JSON answer (`null` if none).
    pub async fn post_login(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self.post_json(path, body).await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A mobile-app login of `openid`: its session token (asserting it succeeds).
    pub async fn login(&self, openid: &str) -> String {
        let code = self.code(openid).await;
        let (status, body) = self
            .post_login("/auth/wechat/login", json!({ "code": code }).to_string())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// `GET path` with `token` as a bearer token.
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap()
    }

    /// A request as a browser holding `cookie` (`name=value`) sends it.
    pub async fn with_cookie(
        &self,
        method: reqwest::Method,
        path: &str,
        cookie: &str,
    ) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap()
    }

    /// Starts a scan login (`/auth/wechat/scan/start` + `query`) as a script in a browser:
    /// the binding cookie it got, the status URL, the QR code's ticket or the keyword.
    pub async fn scan_start(&self, query: &str) -> ScanStarted {
        let response = self
            .http
            .get(format!("{}/auth/wechat/scan/start{query}", self.base))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let binding = first_cookie(&response);
        let body: Value = response.json().await.unwrap();
        let status_url = body["status_url"].as_str().unwrap().to_owned();
        ScanStarted {
            binding,
            ticket: query_param(&format!("http://x{status_url}"), "qr"),
            keyword: body["keyword"].as_str().map(str::to_owned),
            status_url,
        }
    }

    /// The browser holding `cookie` (a binding cookie, `name=value`) polls a scan's
    /// `status_url`: the status, the JSON answer and the session cookie it got.
    pub async fn scan_poll(
        &self,
        status_url: &str,
        cookie: Option<&str>,
    ) -> (StatusCode, Value, Option<String>) {
        let mut request = self
            .http
            .get(format!("{}{status_url}", self.base))
            .header(ACCEPT, "application/json");
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let session = session_cookie(&response);
        (
            status,
            response.json().await.unwrap_or(Value::Null),
            session,
        )
    }

    /// `GET /me` with `token`: the status and the JSON answer.
    pub async fn me(&self, token: &str) -> (StatusCode, Value) {
        let response = self.get("/me", token).await;
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// `POST path` with `token` as a bearer token: the status.
    pub async fn post(&self, path: &str, token: &str) -> StatusCode {
        self.http
            .post(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// A website login driven as a browser would: start (binding cookie), WeChat's approval,
    /// and the callback URL WeChat redirects to, not yet followed.
    pub async fn web_login(&self, openid: &str) -> WebLogin {
        let start = self
            .http
            .get(format!("{}/auth/wechat/web/start", self.base))
            .send()
            .await
            .unwrap();
        let binding = start.headers()["set-cookie"].to_str().unwrap();
        let binding = binding.split(';').next().unwrap().to_owned();
        let authorize = reqwest::Url::parse(start.headers()["location"].to_str().unwrap()).unwrap();
        let param = |name: &str| {
            authorize
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .unwrap()
        };
        let (redirect_uri, state) = (param("redirect_uri"), param("state"));
        let callback = self.approve(&redirect_uri, &state, openid).await;
        WebLogin {
            binding,
            callback,
            redirect_uri,
            state,
        }
    }

    /// `GET url` as WeChat's in-app browser sends it.
    pub async fn get_in_wechat(&self, url: &str) -> reqwest::Response {
        self.http
            .get(url)
            .header(USER_AGENT, IN_WECHAT)
            .send()
            .await
            .unwrap()
    }

    /// A browser login through the start endpoint (`query`, as WeChat's own browser when
    /// `in_wechat`), approved on the fake WeChat's page as `openid` (with `unionid`): the
    /// callback's response, not followed, and the binding cookie the browser held.
    pub async fn browser_login(
        &self,
        query: &[(&str, &str)],
        in_wechat: bool,
        openid: &str,
        unionid: Option<&str>,
    ) -> (reqwest::Response, Option<String>) {
        let mut start = self
            .http
            .get(format!("{}/auth/wechat/web/start", self.base))
            .query(query);
        if in_wechat {
            start = start.header(USER_AGENT, IN_WECHAT);
        }
        let start = start.send().await.unwrap();
        assert_eq!(start.status(), StatusCode::FOUND);
        let binding = start
            .headers()
            .get(SET_COOKIE)
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned());
        let authorize = start.headers()[LOCATION].to_str().unwrap().to_owned();
        let callback = self.approve_url(&authorize, openid, unionid).await;
        let mut request = self.http.get(&callback);
        if let Some(binding) = &binding {
            request = request.header(COOKIE, binding);
        }
        if in_wechat {
            request = request.header(USER_AGENT, IN_WECHAT);
        }
        (request.send().await.unwrap(), binding)
    }

    /// The user approves on the fake WeChat's consent page for the app and scope the authorize
    /// URL `authorize` names: the callback URL WeChat sends the browser to.
    pub async fn approve_url(
        &self,
        authorize: &str,
        openid: &str,
        unionid: Option<&str>,
    ) -> String {
        let param = |name| query_param(authorize, name).expect("an authorize URL's parameter");
        let (appid, scope) = (param("appid"), param("scope"));
        let (redirect_uri, state) = (param("redirect_uri"), param("state"));
        let approved = self
            .http
            .get(format!("{}/connect/mock/approve", self.mock.base_url()))
            .query(&[
                ("redirect_uri", redirect_uri.as_str()),
                ("state", state.as_str()),
                ("scope", scope.as_str()),
                ("openid", openid),
                ("appid", appid.as_str()),
                ("unionid", unionid.unwrap_or("")),
            ])
            .send()
            .await
            .unwrap();
        approved.headers()[LOCATION].to_str().unwrap().to_owned()
    }

    /// `GET /me` as a browser holding `cookie`: the status and the JSON answer.
    pub async fn me_by_cookie(&self, cookie: &str) -> (StatusCode, Value) {
        let me = self.with_cookie(reqwest::Method::GET, "/me", cookie).await;
        (me.status(), me.json().await.unwrap_or(Value::Null))
    }

    /// The user approves on WeChat's page: the callback URL with a fresh code and `state`.
    pub async fn approve(&self, redirect_uri: &str, state: &str, openid: &str) -> String {
        let approve = self
            .http
            .get(format!("{}/connect/mock/approve", self.mock.base_url()))
            .query(&[
                ("redirect_uri", redirect_uri),
                ("state", state),
                ("scope", "snsapi_login"),
                ("openid", openid),
                ("appid", self.appid(AppKind::Website)),
            ])
            .send()
            .await
            .unwrap();
        approve.headers()["location"].to_str().unwrap().to_owned()
    }
}

/// A website login in progress (see [`Site::web_login`]).
pub struct WebLogin {
    /// The binding cookie, as `name=value`.
    pub binding: String,
    /// The callback URL WeChat sends the browser to.
    pub callback: String,
    /// The `redirect_uri` WeChat was given.
    pub redirect_uri: String,
    /// The OAuth `state` WeChat was given.
    pub state: String,
}

/// The session cookie a response sets (not one that clears it), as `name=value`.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("wechat_session=") && !v.contains("Max-Age=0"))
        .map(|v| v.split(';').next().unwrap().to_owned())
}
