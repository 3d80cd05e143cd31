//! [`LoginLimits`]: how many failed code exchanges the login endpoints accept before they answer
//! 429, per client and in total, so a flood of junk codes cannot spend WeChat's quota (every
//! exchange is an upstream call) or probe for valid codes.
//!
//! Only failures count: a code WeChat refused, or a used code submitted again. A successful login
//! is never counted and never slowed; once a client (or everyone) is over a limit, its next
//! submits are answered 429 with `Retry-After` until the window ends, without asking WeChat.
//! Windows are fixed, start at the first failure, and are measured on the cache's clock. The
//! per-client counters live in a bounded moka cache, so a spray of client keys costs bounded
//! memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;
use wechat_token_cache::SharedClock;

use crate::token::unix;

/// Limits on failed code exchanges. Defaults: 20 failures per client and 1,000 in total per
/// minute, for at most 100,000 tracked clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginLimits {
    /// Failed exchanges one client (see [`WeChatAuthBuilder::client_key`](crate::WeChatAuthBuilder::client_key))
    /// may cause per window (0: no per-client limit).
    pub per_client: u32,
    /// Failed exchanges all clients together may cause per window (0: no global limit). Protects
    /// WeChat's quota against junk spread over many addresses; while it is exceeded every code
    /// login waits for the window's end.
    pub global: u32,
    /// The window.
    pub window: Duration,
    /// The most clients tracked at once (least recently used ones are forgotten beyond it).
    pub max_clients: u64,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            per_client: 20,
            global: 1_000,
            window: Duration::from_secs(60),
            max_clients: 100_000,
        }
    }
}

impl LoginLimits {
    /// No limits at all.
    pub fn unlimited() -> Self {
        Self {
            per_client: 0,
            global: 0,
            ..Self::default()
        }
    }

    /// These limits with `per_client` and `global` failures per `window`.
    pub fn failures(mut self, per_client: u32, global: u32, window: Duration) -> Self {
        self.per_client = per_client;
        self.global = global;
        self.window = window.max(Duration::from_secs(1));
        self
    }
}

/// A fixed window's failure count, one atomic word: when it started (Unix seconds, high 40
/// bits) and how many failures so far (low 24 bits, saturating), so a reset and a count can
/// never be seen half-done.
#[derive(Default)]
struct Window(AtomicU64);

const COUNT_BITS: u32 = 24;
const COUNT_MAX: u64 = (1 << COUNT_BITS) - 1;

fn unpack(word: u64) -> (u64, u64) {
    (word >> COUNT_BITS, word & COUNT_MAX)
}

impl Window {
    /// Seconds until this window ends if it is over `limit` at `now`; `None` when not limited.
    fn blocked(&self, limit: u32, window: u64, now: u64) -> Option<u64> {
        if limit == 0 {
            return None;
        }
        let (started, failures) = unpack(self.0.load(Ordering::Acquire));
        let ends = started.saturating_add(window);
        (now < ends && failures >= u64::from(limit)).then(|| ends - now)
    }

    fn record(&self, window: u64, now: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let (started, failures) = unpack(word);
                Some(if now >= started.saturating_add(window) {
                    (now << COUNT_BITS) | 1
                } else {
                    (started << COUNT_BITS) | (failures + 1).min(COUNT_MAX)
                })
            });
    }
}

/// The counters behind [`LoginLimits`].
pub(crate) struct LoginLimiter {
    limits: LoginLimits,
    clock: SharedClock,
    global: Window,
    clients: Cache<String, Arc<Window>>,
}

impl LoginLimiter {
    pub(crate) fn new(limits: LoginLimits, clock: SharedClock) -> Self {
        Self {
            clients: Cache::builder()
                .max_capacity(limits.max_clients)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .time_to_idle(limits.window.saturating_mul(2))
                .build(),
            limits,
            clock,
            global: Window::default(),
        }
    }

    pub(crate) fn limits(&self) -> LoginLimits {
        self.limits
    }

    /// How long `client` must wait before its next attempt, if it (or everyone) is over a limit.
    pub(crate) fn check(&self, client: Option<&str>) -> Option<Duration> {
        let (now, window) = (unix(self.clock.now()), self.limits.window.as_secs());
        let global = self.global.blocked(self.limits.global, window, now);
        let own = client
            .and_then(|c| self.clients.get(c))
            .and_then(|w| w.blocked(self.limits.per_client, window, now));
        global.max(own).map(Duration::from_secs)
    }

    /// Counts a failed exchange.
    pub(crate) fn failed(&self, client: Option<&str>) {
        let (now, window) = (unix(self.clock.now()), self.limits.window.as_secs());
        self.global.record(window, now);
        if let Some(client) = client
            && self.limits.per_client > 0
        {
            self.clients
                .get_with_by_ref(client, Arc::default)
                .record(window, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wechat_token_cache::ManualClock;

    #[test]
    fn failures_are_limited_per_client_and_globally_per_window() {
        let clock = ManualClock::starting_now();
        let limits = LoginLimits::default().failures(3, 5, Duration::from_secs(60));
        let limiter = LoginLimiter::new(limits, Arc::new(clock.clone()));
        for _ in 0..3 {
            assert_eq!(limiter.check(Some("a")), None);
            limiter.failed(Some("a"));
        }
        assert_eq!(limiter.check(Some("a")), Some(Duration::from_secs(60)));
        assert_eq!(
            limiter.check(Some("b")),
            None,
            "another client is not limited"
        );
        limiter.failed(Some("b"));
        limiter.failed(Some("c"));
        assert!(limiter.check(Some("d")).is_some(), "5 failures in total");
        assert!(limiter.check(None).is_some());
        clock.advance(Duration::from_secs(59));
        assert_eq!(limiter.check(Some("a")), Some(Duration::from_secs(1)));
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.check(Some("a")), None, "a new window");
        assert_eq!(limiter.check(None), None);
        limiter.failed(Some("a"));
        assert_eq!(limiter.check(Some("a")), None, "the count starts again");
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = LoginLimiter::new(
            LoginLimits::unlimited(),
            Arc::new(ManualClock::starting_now()),
        );
        for _ in 0..100 {
            limiter.failed(Some("a"));
        }
        assert_eq!(limiter.check(Some("a")), None);
    }
}
