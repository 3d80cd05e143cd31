//! Time as a dependency: the [`Clock`] trait, the [`SystemClock`], and a [`ManualClock`] that
//! tests drive. Every absolute expiry in this workspace is computed from a `Clock`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whole seconds since the Unix epoch (0 before it): the one conversion every crate here uses.
pub fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Milliseconds since the Unix epoch (0 before it; `u64::MAX` past the year 584 million).
pub fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The longest duration [`add_capped`] adds: 100 years (of 365 days).
const MAX_ADDED: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `t + d` for configured or upstream-supplied durations, which may be absurd
/// (`Duration::MAX`): `d` is capped at 100 years and an addition that would still overflow
/// `SystemTime` yields `t` (so the thing it times ends at once rather than never).
pub fn add_capped(t: SystemTime, d: Duration) -> SystemTime {
    t.checked_add(d.min(MAX_ADDED)).unwrap_or(t)
}

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use wechat_oauth::clock::{Clock, ManualClock};
///
/// let clock = ManualClock::starting_now();
/// let before = clock.now();
/// clock.advance(Duration::from_secs(7200));
/// assert_eq!(clock.now().duration_since(before).unwrap(), Duration::from_secs(7200));
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    nanos_since_epoch: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock frozen at `at`.
    pub fn new(at: SystemTime) -> Self {
        let nanos = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            nanos_since_epoch: Arc::new(AtomicU64::new(nanos)),
        }
    }

    /// A clock frozen at the current system time.
    pub fn starting_now() -> Self {
        Self::new(SystemTime::now())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.nanos_since_epoch
            .fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: SystemTime) {
        let nanos = at
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        self.nanos_since_epoch.store(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.nanos_since_epoch.load(Ordering::SeqCst))
    }
}

/// A shared clock, as held by clients, stores and coordinators.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock, shared.
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_an_absurd_duration_is_capped_not_a_panic() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            add_capped(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(add_capped(now, Duration::MAX), now + MAX_ADDED);
        if let Some(far) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(i64::MAX as u64))
        {
            assert_eq!(add_capped(far, Duration::from_secs(1)), far);
        }
    }
}
