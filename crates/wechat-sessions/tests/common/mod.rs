//! The session manager's test harness: the fake WeChat and the manager on one manual clock.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use wechat_mock::{MockConfig, MockGrant, MockWeChat};
use wechat_oauth::{AuthCode, Client};
use wechat_sessions::{
    Credentials, ManualClock, MokaStore, SessionManager, SessionManagerBuilder, SessionRecord,
    SharedStore,
};

pub const HOUR: Duration = Duration::from_secs(3600);
pub const EXPIRY: Duration = Duration::from_secs(7200);

pub struct Harness<S: SharedStore = MokaStore> {
    pub mock: MockWeChat,
    pub clock: ManualClock,
    pub cache: SessionManager<S>,
}

pub async fn start_mock(config: MockConfig) -> (MockWeChat, ManualClock, Client) {
    let (mock, clock) = wechat_login_test_support::fake_wechat(config).await;
    let client = wechat_login_test_support::client_at(&mock, mock.appid(), mock.secret(), &clock);
    (mock, clock, client)
}

pub async fn harness_with(
    config: MockConfig,
    build: impl FnOnce(SessionManagerBuilder<MokaStore>) -> SessionManagerBuilder<MokaStore>,
) -> Harness {
    let (mock, clock, client) = start_mock(config).await;
    let cache = build(SessionManager::builder(client)).build();
    Harness { mock, clock, cache }
}

pub async fn harness() -> Harness {
    harness_with(MockConfig::default(), |b| b).await
}

impl<S: SharedStore> Harness<S> {
    /// Moves our clock and WeChat's together.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.mock.advance(by);
    }

    pub async fn login(&self) -> Arc<SessionRecord> {
        self.login_as(MockGrant::default()).await
    }

    pub async fn login_as(&self, grant: MockGrant) -> Arc<SessionRecord> {
        let code = self.mock.mint_code(grant);
        self.cache.login(&AuthCode::new(code)).await.expect("login")
    }
}

pub fn access_token(record: &SessionRecord) -> String {
    record.access_token().unwrap().0.secret().to_owned()
}

pub fn refresh_token(record: &SessionRecord) -> String {
    match &record.credentials {
        Credentials::OAuth { refresh_token, .. } => refresh_token.secret().to_owned(),
        _ => panic!("not an OAuth session"),
    }
}
