//! [`LoginLimits`]: how many code exchanges a client may have failed or still running before the
//! login endpoints answer 429, per client and in total, so a flood of junk codes cannot spend
//! WeChat's quota (every exchange is an upstream call), probe for valid codes, or lock honest
//! users out.
//!
//! An exchange is counted against its client *before* it starts: admission reserves a place,
//! which a success gives back and a failure (a code WeChat refused, a used code submitted
//! again, or an exchange abandoned midway) keeps until the window ends. A client with
//! `per_client` exchanges failed or in flight is answered 429 without WeChat being asked, so
//! submits sent all at once cannot race past the limit. Once all clients together reach
//! `global`, only clients with a clean record in the window (no failure, nothing in flight) are
//! admitted, one exchange at a time: junk spread over many addresses is shed first, and an honest
//! user is not refused because of somebody else's failures.
//!
//! Windows are fixed, start at the first attempt, and are measured on the cache's clock. The
//! per-client counters live in a bounded moka cache, so a spray of client keys costs bounded
//! memory; a refused request adds nothing to it.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use moka::sync::Cache;
use wechat_sessions::SharedClock;

use wechat_oauth::clock::unix_secs;

/// Limits on code exchanges that failed or are still running. Defaults: 20 per client and
/// 1,000 in total per minute, for at most 100,000 tracked clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoginLimits {
    /// Exchanges one client (see [`WeChatAuthBuilder::client_key`](crate::WeChatAuthBuilder::client_key))
    /// may have failed or in flight per window (0: no per-client limit). Without a client key
    /// (the server records no peer address) only the global limit applies.
    pub per_client: u32,
    /// Exchanges all clients together may have failed or in flight per window (0: no global
    /// limit). Protects WeChat's quota against junk spread over many addresses; past it, only
    /// clients with a clean record in the window are admitted, one exchange at a time (and
    /// requests without a client key are refused).
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

    /// These limits with `per_client` and `global` exchanges failed or in flight per `window`.
    pub fn failures(mut self, per_client: u32, global: u32, window: Duration) -> Self {
        self.per_client = per_client;
        self.global = global;
        self.window = window.max(Duration::from_secs(1));
        self
    }
}

/// One fixed window's count: when it started (Unix seconds), failures in it, and exchanges
/// admitted and not yet settled (these carry over into the next window).
#[derive(Default)]
struct Window {
    started: u64,
    failures: u64,
    in_flight: u64,
}

impl Window {
    /// This window at `now`: a new one (failures forgotten) once the old one has ended.
    fn at(&mut self, window: u64, now: u64) -> &mut Self {
        if now >= self.started.saturating_add(window) {
            self.started = now;
            self.failures = 0;
        }
        self
    }

    fn used(&self) -> u64 {
        self.failures + self.in_flight
    }

    fn clean(&self) -> bool {
        self.used() == 0
    }

    /// Seconds until the window ends (at least 1).
    fn wait(&self, window: u64, now: u64) -> u64 {
        self.started
            .saturating_add(window)
            .saturating_sub(now)
            .max(1)
    }
}

fn lock(window: &Mutex<Window>) -> MutexGuard<'_, Window> {
    window
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The counters behind [`LoginLimits`].
pub(crate) struct LoginLimiter {
    limits: LoginLimits,
    clock: SharedClock,
    global: Mutex<Window>,
    clients: Cache<String, Arc<Mutex<Window>>>,
}

/// An admitted exchange's place in the limits: [`succeeded`](Self::succeeded) gives it back;
/// [`failed`](Self::failed), or dropping it unsettled (the exchange was abandoned, and WeChat
/// may have been asked), counts a failure.
pub(crate) struct Admission {
    limiter: Arc<LoginLimiter>,
    client: Option<Arc<Mutex<Window>>>,
    settled: bool,
}

impl Admission {
    /// The exchange succeeded (or failed for a reason that is not the client's): its place is
    /// given back.
    pub(crate) fn succeeded(mut self) {
        self.settle(false);
    }

    /// The exchange failed: the place stays taken until the window ends.
    pub(crate) fn failed(mut self) {
        self.settle(true);
    }

    fn settle(&mut self, failed: bool) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        let limiter = &self.limiter;
        let (now, window) = (
            unix_secs(limiter.clock.now()),
            limiter.limits.window.as_secs(),
        );
        let windows = std::iter::once(&limiter.global).chain(self.client.as_deref());
        for counted in windows {
            let mut counted = lock(counted);
            let counted = counted.at(window, now);
            counted.in_flight = counted.in_flight.saturating_sub(1);
            if failed {
                counted.failures += 1;
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.settle(true);
    }
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
            global: Mutex::default(),
        }
    }

    pub(crate) fn limits(&self) -> LoginLimits {
        self.limits
    }

    /// Admits an exchange for `client`, or says how long it must wait (429 `Retry-After`).
    /// A refused request changes no count and adds no client: only a client already counted
    /// can be over a limit.
    pub(crate) fn admit(self: &Arc<Self>, client: Option<&str>) -> Result<Admission, Duration> {
        let LoginLimits {
            per_client, global, ..
        } = self.limits;
        let (now, window) = (unix_secs(self.clock.now()), self.limits.window.as_secs());
        // get_with: concurrent first submits of one client share one window.
        let client = client
            .filter(|_| per_client > 0 || global > 0)
            .map(|key| self.clients.get_with_by_ref(key, Arc::default));
        let mut own = client.as_deref().map(lock);
        let own = own.as_deref_mut().map(|w| w.at(window, now));
        if per_client > 0
            && let Some(own) = &own
            && own.used() >= u64::from(per_client)
        {
            // Over its own limit: wait for the window's end, or only a moment if it is the
            // exchanges still in flight that fill it.
            let failed_out = own.failures >= u64::from(per_client);
            let wait = if failed_out { own.wait(window, now) } else { 1 };
            return Err(Duration::from_secs(wait));
        }
        let mut everyone = lock(&self.global);
        let everyone = everyone.at(window, now);
        let clean = own.as_deref().is_some_and(Window::clean);
        if global > 0 && everyone.used() >= u64::from(global) && !clean {
            return Err(Duration::from_secs(everyone.wait(window, now)));
        }
        everyone.in_flight += 1;
        if let Some(own) = own {
            own.in_flight += 1;
        }
        Ok(Admission {
            limiter: Arc::clone(self),
            client: client.clone(),
            settled: false,
        })
    }
}

/// The group an address belongs to for per-client limits: an IPv4 address itself (also when
/// IPv4-mapped into IPv6), an IPv6 address's /64 network (its last 64 bits zeroed).
#[cfg(feature = "axum")]
pub(crate) fn address_group(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wechat_sessions::ManualClock;

    fn limiter(per_client: u32, global: u32) -> (Arc<LoginLimiter>, ManualClock) {
        let clock = ManualClock::starting_now();
        let limits = LoginLimits::default().failures(per_client, global, Duration::from_secs(60));
        (
            Arc::new(LoginLimiter::new(limits, Arc::new(clock.clone()))),
            clock,
        )
    }

    fn fail(limiter: &Arc<LoginLimiter>, client: &str) {
        limiter.admit(Some(client)).expect("admitted").failed();
    }

    #[test]
    fn failures_are_limited_per_client_and_successes_give_their_place_back() {
        let (limiter, clock) = limiter(3, 100);
        for _ in 0..10 {
            limiter.admit(Some("a")).expect("admitted").succeeded();
        }
        for _ in 0..3 {
            fail(&limiter, "a");
        }
        assert_eq!(
            limiter.admit(Some("a")).err(),
            Some(Duration::from_secs(60))
        );
        assert!(
            limiter.admit(Some("b")).is_ok(),
            "another client is not limited"
        );
        clock.advance(Duration::from_secs(59));
        assert_eq!(limiter.admit(Some("a")).err(), Some(Duration::from_secs(1)));
        clock.advance(Duration::from_secs(1));
        fail(&limiter, "a");
        assert!(
            limiter.admit(Some("a")).is_ok(),
            "a new window: the count starts again"
        );
    }

    #[test]
    fn exchanges_in_flight_count_before_they_end() {
        let (limiter, _clock) = limiter(3, 100);
        let running: Vec<_> = (0..3).map(|_| limiter.admit(Some("a")).unwrap()).collect();
        assert_eq!(
            limiter.admit(Some("a")).err(),
            Some(Duration::from_secs(1)),
            "three in flight fill the limit: retry in a moment"
        );
        let mut running = running.into_iter();
        running.next().unwrap().succeeded();
        assert!(
            limiter.admit(Some("a")).is_ok(),
            "a success gives its place back"
        );
        // Two abandoned (dropped unsettled) count as failures, with the one just admitted.
        drop(running);
        assert_eq!(
            limiter.admit(Some("a")).err(),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn past_the_global_limit_only_clean_clients_get_in_one_at_a_time() {
        let (limiter, clock) = limiter(20, 5);
        for client in ["a", "b", "c", "d", "e"] {
            fail(&limiter, client);
        }
        // The global window is full: clients with a failure wait for its end.
        assert_eq!(
            limiter.admit(Some("a")).err(),
            Some(Duration::from_secs(60))
        );
        assert!(
            limiter.admit(None).is_err(),
            "a client that cannot be told apart is refused"
        );
        // A clean client still gets its exchange, but only one at a time.
        let first = limiter
            .admit(Some("honest"))
            .expect("a clean record is admitted");
        assert!(limiter.admit(Some("honest")).is_err());
        first.succeeded();
        let again = limiter
            .admit(Some("honest"))
            .expect("clean again after a success");
        again.failed();
        assert!(
            limiter.admit(Some("honest")).is_err(),
            "a failure makes it shed"
        );
        clock.advance(Duration::from_secs(60));
        assert!(limiter.admit(Some("a")).is_ok(), "a new window");
    }

    #[test]
    fn refused_requests_add_no_client() {
        let (limiter, _clock) = limiter(1, 1);
        fail(&limiter, "a");
        limiter.clients.run_pending_tasks();
        let tracked = limiter.clients.entry_count();
        assert!(limiter.admit(Some("a")).is_err());
        assert!(limiter.admit(None).is_err());
        limiter.clients.run_pending_tasks();
        assert_eq!(limiter.clients.entry_count(), tracked);
    }

    #[test]
    fn zero_means_no_limit() {
        let (limiter, _clock) = limiter(0, 0);
        for _ in 0..100 {
            fail(&limiter, "a");
        }
        assert!(limiter.admit(Some("a")).is_ok());
        limiter.clients.run_pending_tasks();
        assert_eq!(limiter.clients.entry_count(), 0, "nothing tracked");
    }

    #[test]
    fn ipv6_addresses_are_grouped_by_their_64_bit_network() {
        let group = |ip: &str| address_group(ip.parse().unwrap()).to_string();
        assert_eq!(group("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::");
        assert_eq!(group("2001:db8:1:2:ffff:1:2:3"), "2001:db8:1:2::");
        assert_ne!(group("2001:db8:1:3::1"), "2001:db8:1:2::");
        assert_eq!(group("::ffff:192.0.2.7"), "192.0.2.7", "IPv4-mapped");
        assert_eq!(group("192.0.2.7"), "192.0.2.7");
    }
}
