//! What the workspace's tests share, so that no test file carries its own copy: the fake
//! WeChat with a client on one manual clock, the log capture the leak tests read every line
//! of, the Redis servers (feature `redis`) and a site served on loopback (feature `site`).
//! Not published (`publish = false`): the crates name it as a path-only dev-dependency, which
//! packaging drops.

#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "site")]
pub mod site;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wechat_mock::{MockConfig, MockWeChat};
use wechat_oauth::clock::ManualClock;
use wechat_oauth::{Client, RetryPolicy};

/// The fake WeChat started with `config`, and a manual clock at the fake's time: advance both
/// to move time for the code under test and for WeChat alike.
pub async fn fake_wechat(config: MockConfig) -> (MockWeChat, ManualClock) {
    let mock = MockWeChat::start(config)
        .await
        .expect("start the fake WeChat");
    let clock = ManualClock::new(mock.now());
    (mock, clock)
}

/// A client of the app `appid` (with `secret`) at `mock` (API and consent pages), on `clock`,
/// retrying fast: three attempts, 1–2 ms apart, so a test of retries takes no time.
pub fn client_at(mock: &MockWeChat, appid: &str, secret: &str, clock: &ManualClock) -> Client {
    Client::builder(appid, secret)
        .api_base(mock.base_url())
        .open_base(mock.base_url())
        .mp_base(mock.base_url())
        .clock(Arc::new(clock.clone()))
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        })
        .build()
        .expect("a client of the fake WeChat")
}

/// Everything logged while it is installed, as text: every level, no colours.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Installs a capture as the process's global `tracing` subscriber, at TRACE. Global, not
    /// thread-scoped: a thread-scoped one misses events whose callsite another test thread
    /// reached first. Once per test binary: a second call panics.
    pub fn install_global() -> Self {
        let captured = Self::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("one test per binary installs the global subscriber");
        captured
    }

    /// What was logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
