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

    /// The current time for a decision whose edges are seconds apart (is this token, this
    /// kept session, still good?), as cheaply as the clock can tell it: it may lag
    /// [`now`](Self::now) by a few milliseconds, never more. The middleware reads it once per
    /// request. By default, `now`.
    fn now_coarse(&self) -> SystemTime {
        self.now()
    }
}

/// The operating system's clock. On Linux, [`now_coarse`](Clock::now_coarse) is the kernel's
/// time at its last tick (`CLOCK_REALTIME_COARSE`, 1 to 10 ms behind): read from memory the
/// kernel shares, without the serialising timestamp-counter read that `now` costs (about 30
/// ns a request on a virtual machine, where the request's own work is about 300).
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    #[cfg(target_os = "linux")]
    fn now_coarse(&self) -> SystemTime {
        use nix::time::{ClockId, clock_gettime};
        // A reading that fails, or that `SystemTime` cannot hold as seconds after 1970 (a clock
        // set before it): the precise clock answers instead.
        clock_gettime(ClockId::CLOCK_REALTIME_COARSE)
            .ok()
            .and_then(|at| {
                let secs = u64::try_from(at.tv_sec()).ok()?;
                let nanos = u32::try_from(at.tv_nsec()).ok()?;
                UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
            })
            .unwrap_or_else(SystemTime::now)
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

    /// The coarse reading is the wall clock's, a tick behind at most: never ahead of a precise
    /// reading taken after it, and not a whole second behind one taken before it (a monotonic
    /// clock, or a unit mistaken, would be years off).
    #[test]
    fn the_coarse_reading_is_the_wall_clock_at_its_last_tick() {
        let before = SystemClock.now();
        let coarse = SystemClock.now_coarse();
        let after = SystemClock.now();
        assert!(coarse <= after, "{coarse:?} is ahead of {after:?}");
        assert!(
            coarse + Duration::from_secs(1) > before,
            "{coarse:?} lags {before:?} by a second or more"
        );
    }

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
