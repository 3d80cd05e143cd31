//! [`MockWeChat`], the in-process handle: starts the server, exposes the mock's state to tests
//! and stops the server on [`MockWeChat::shutdown`] or when the last handle is dropped.

use std::{
    collections::BTreeMap,
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{Endpoint, Fault, MockConfig, MockGrant, MockProfile, app, state::Shared};

/// A running fake WeChat server and a window into its state.
///
/// Cloning is cheap and every clone sees the same server. The server stops when the last clone
/// is dropped, or at once on [`MockWeChat::shutdown`].
///
/// ```
/// use std::time::Duration;
/// use wechat_mock::{Endpoint, Fault, MockConfig, MockGrant, MockWeChat};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let mock = MockWeChat::start(MockConfig::default()).await?;
/// // Point the client under test at mock.base_url() instead of https://api.weixin.qq.com.
/// let code = mock.mint_code(MockGrant {
///     openid: Some("o_alice".into()),
///     ..MockGrant::default()
/// });
/// assert_eq!(code.len(), 32);
/// mock.inject(Endpoint::RefreshToken, Fault::ErrCode(-1), 1);
/// mock.advance(Duration::from_secs(7201));
/// assert_eq!(mock.calls(Endpoint::AccessToken), 0);
/// mock.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MockWeChat {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Mutex<Option<Server>>,
}

#[derive(Debug)]
struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl Inner {
    fn take_server(&self) -> Option<Server> {
        self.server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(server) = self.take_server() {
            // The server drains its connections and ends on its own.
            let _ = server.stop.send(());
        }
    }
}

impl MockWeChat {
    /// Starts the mock on an ephemeral port of 127.0.0.1.
    pub async fn start(config: MockConfig) -> io::Result<MockWeChat> {
        Self::start_on(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Starts the mock on this address (port 0 picks a free one; see [`MockWeChat::addr`]).
    pub async fn start_on(config: MockConfig, addr: SocketAddr) -> io::Result<MockWeChat> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(config));
        let app = app::router(Arc::clone(&shared));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // Either an explicit stop or the last handle going away.
                    let _ = stopped.await;
                })
                .await
        });
        tracing::debug!(%addr, "wechat mock listening");
        Ok(MockWeChat {
            inner: Arc::new(Inner {
                shared,
                addr,
                server: Mutex::new(Some(Server { stop, task })),
            }),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `http://ADDR` without a trailing slash: the base URL for both the API
    /// (`api.weixin.qq.com`) and the browser pages (`open.weixin.qq.com`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The primary app's AppID.
    pub fn appid(&self) -> &str {
        &self.inner.shared.config.appid
    }

    /// Where the Official Account `appid` pushes its events and messages (its server URL,
    /// token and, for safe mode, EncodingAESKey), as its server configuration says.
    pub fn set_push_target(&self, appid: &str, target: crate::MockPushTarget) {
        self.inner.shared.set_push_target(appid, target);
    }

    /// The scene of a current QR code `ticket` (`None`: unknown or expired).
    pub fn qr_scene(&self, ticket: &str) -> Option<String> {
        self.inner.shared.qr_scene(ticket)
    }

    /// A user `openid` (with `unionid`) scans the QR code `ticket` with WeChat: the push is sent
    /// to the account's server `deliveries` times (WeChat's retries send the same bytes); the
    /// last answer's status and body.
    pub async fn scan_qr(
        &self,
        ticket: &str,
        openid: &str,
        unionid: Option<&str>,
        deliveries: u32,
    ) -> Result<(u16, String), String> {
        let push = self.inner.shared.scan(ticket, openid, unionid)?;
        crate::mp::deliver(&push, deliveries).await
    }

    /// A user `openid` sends `content` to the Official Account `appid`: the push's answer.
    pub async fn send_text(
        &self,
        appid: &str,
        openid: &str,
        content: &str,
    ) -> Result<(u16, String), String> {
        let push = self.inner.shared.text_message(appid, openid, content)?;
        crate::mp::deliver(&push, 1).await
    }

    /// The primary app's AppSecret.
    pub fn secret(&self) -> &str {
        &self.inner.shared.config.secret
    }

    /// Mints a single-use code, as if a user had just approved the login. Both
    /// `/sns/oauth2/access_token` and `/sns/jscode2session` accept it; the first exchange
    /// consumes it. It expires after [`MockConfig::code_ttl`] of mock time.
    pub fn mint_code(&self, grant: MockGrant) -> String {
        self.inner.shared.mint_code(grant)
    }

    /// The mock's clock: the system time at start plus every [`MockWeChat::advance`]. It does not
    /// move by itself; every expiry is measured on it.
    pub fn now(&self) -> SystemTime {
        self.inner.shared.now()
    }

    /// Moves the mock clock forward.
    pub fn advance(&self, by: Duration) {
        self.inner.shared.advance(by);
    }

    /// How many requests reached this endpoint, faulted ones included.
    pub fn calls(&self, endpoint: Endpoint) -> u64 {
        self.inner.shared.calls(endpoint)
    }

    /// How many requests to this endpoint named the known app `appid` (after faults: a call
    /// answered by an injected fault is not counted here).
    pub fn app_calls(&self, appid: &str, endpoint: Endpoint) -> u64 {
        self.inner.shared.app_calls(appid, endpoint)
    }

    /// Call counts of every endpoint by [`Endpoint::name`]; never-called endpoints show 0.
    pub fn stats(&self) -> BTreeMap<&'static str, u64> {
        self.inner.shared.stats()
    }

    /// Makes the next `times` calls to `endpoint` answer with `fault`, after any faults already
    /// queued for it (first in, first out).
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: u32) {
        self.inner.shared.inject(endpoint, fault, times);
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        self.inner.shared.clear_faults();
    }

    /// The user withdrew the authorization: all their access and refresh tokens stop working
    /// (refresh answers 40030, auth and userinfo 40001). Later logins work again.
    pub fn revoke(&self, openid: &str) {
        self.inner.shared.revoke(openid);
    }

    /// The user's unionid became known (the app was bound to an Open Platform account, the user
    /// followed the Official Account...): later code exchanges and `/sns/userinfo` answers of a
    /// user whose grant had none carry it.
    pub fn set_unionid(&self, openid: &str, unionid: &str) {
        self.inner.shared.set_unionid(openid, unionid);
    }

    /// What WeChat hands this Mini Program user's client as `encryptedData` and `iv`: `data`
    /// (a JSON object) with a `watermark` of `appid` and the mock clock's time, sealed under the
    /// session key of the user's latest `jscode2session` in that app. `None` if there was none
    /// or `data` is not an object.
    pub fn seal_user_data(
        &self,
        appid: &str,
        openid: &str,
        data: &serde_json::Value,
    ) -> Option<(String, String)> {
        self.inner.shared.seal_user_data(appid, openid, data)
    }

    /// Mints a single-use phone-number code of the Mini Program `appid` for this number, as the
    /// phone-number button hands one to the client: `phone` without prefix, `country_code`
    /// such as `"86"`. `/wxa/business/getuserphonenumber` redeems it once, with that app's
    /// access token, within [`MockConfig::phone_code_ttl`](crate::MockConfig::phone_code_ttl).
    pub fn mint_phone_code(&self, appid: &str, phone: &str, country_code: &str) -> String {
        self.inner
            .shared
            .mint_phone_code(appid, phone, country_code)
    }

    /// Another party forced a `stable_token` refresh for this app (another system sharing the
    /// AppID, or the console): the app's current stable token stops working at once (calls with
    /// it answer 40001). Not counted against the daily forced-refresh limit.
    pub fn invalidate_app_token(&self, appid: &str) {
        self.inner.shared.invalidate_stable_token(appid);
    }

    /// What `/sns/userinfo` returns for this user from now on.
    pub fn set_profile(&self, openid: &str, profile: MockProfile) {
        self.inner.shared.set_profile(openid, profile);
    }

    /// The same application over the same state, to mount in another server. Its browser pages
    /// link relatively, so it also works nested under a path prefix.
    pub fn router(&self) -> axum::Router {
        app::router(Arc::clone(&self.inner.shared))
    }

    /// Stops the server (for every clone of this handle) and waits until it has finished
    /// answering the requests in flight.
    pub async fn shutdown(self) {
        if let Some(server) = self.inner.take_server() {
            let _ = server.stop.send(());
            match server.task.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "wechat mock server failed"),
                Err(error) => tracing::warn!(%error, "wechat mock server task failed"),
            }
        }
    }
}
