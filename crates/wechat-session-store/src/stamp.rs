//! [`ReadStamp`] and [`WriteEpochs`]: how a reader keeps a record it read and later tells, in
//! one load of a small hot table, whether the store still holds exactly that record — so the
//! middleware's verified-token cache can hold a session's record beside its token and answer a
//! warm request without reading the store at all.
//!
//! A store that offers stamps keeps [`WriteEpochs`]: a few thousand write counters, one per
//! bucket of session ids. Every write of a session (insert, compare-and-set, delete, expiry,
//! eviction) bumps its bucket's counter *after* the write is visible to readers. A reader takes
//! a stamp (the counter's value and a deadline) *before* it reads; the record it read is
//! current as long as the counter has not moved and the deadline has not passed. A write
//! between stamp and read only makes the stamp stale early (a bucket is shared by about
//! sessions / 1,024 ids, so an unrelated write costs one more store read, never a wrong
//! answer). The deadline is the store's: it bounds how long the store may go without hearing of
//! reads (its LRU order and idle timer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::record::SessionId;

/// Counters in a [`WriteEpochs`]: 8 KiB, eight to a cache line. Few enough that the table stays
/// in the CPU's caches under load (every warm request reads one counter), many enough that a
/// write (a login, a refresh every two hours per session) makes few other stamps stale.
const BUCKETS: usize = 1_024;
const _: () = assert!(BUCKETS <= 1 << 16, "a stamp holds its bucket in 16 bits");

/// Taken by [`SessionStore::read_stamp`](crate::SessionStore::read_stamp) before a read;
/// [`SessionStore::still_current`](crate::SessionStore::still_current) then tells whether
/// what was read is still the stored record. Only a [`WriteEpochs`] makes one. 24 bytes: the
/// middleware keeps one beside each warm token, on the line it reads on every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadStamp {
    bucket: u16,
    /// The counter's low 32 bits: it would have to move by exactly 2³² within the stamp's hold
    /// (minutes) for a stale stamp to pass.
    epoch: u32,
    /// When the store must hear of a read again: taken + hold (when it was taken follows, so a
    /// clock that went back does not stretch it).
    until: SystemTime,
}

/// Write counters by session-id bucket, for a store that offers [`ReadStamp`]s (see the
/// module docs for the protocol: bump after every write, stamp before every read).
pub struct WriteEpochs {
    counters: Box<[AtomicU64]>,
    /// How long a stamp holds before the store must be read again.
    hold: Duration,
}

impl std::fmt::Debug for WriteEpochs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteEpochs")
            .field("buckets", &self.counters.len())
            .field("hold", &self.hold)
            .finish()
    }
}

impl WriteEpochs {
    /// Counters whose stamps hold for at most `hold` (the longest the store may go without
    /// hearing of a session's reads).
    pub fn new(hold: Duration) -> Self {
        Self {
            counters: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            hold,
        }
    }

    fn bucket(sid: &SessionId) -> usize {
        // The id's bytes are random; bytes 4..12 are used by no other table of this crate.
        let mut word = [0u8; 8];
        word.copy_from_slice(&sid.as_bytes()[4..12]);
        u64::from_le_bytes(word) as usize % BUCKETS
    }

    /// Marks a write of `sid`: stamps taken before it are stale. Call it once the write is
    /// visible to readers.
    pub fn bump(&self, sid: &SessionId) {
        self.counters[Self::bucket(sid)].fetch_add(1, Ordering::AcqRel);
    }

    /// A stamp for a read of `sid` about to start at `now`.
    pub fn stamp(&self, sid: &SessionId, now: SystemTime) -> Option<ReadStamp> {
        let bucket = Self::bucket(sid);
        Some(ReadStamp {
            bucket: bucket as u16,
            epoch: self.counters[bucket].load(Ordering::Acquire) as u32,
            until: now.checked_add(self.hold)?,
        })
    }

    /// Whether no write of the stamp's bucket happened since it was taken and its deadline has
    /// not passed at `now`.
    pub fn still_current(&self, stamp: &ReadStamp, now: SystemTime) -> bool {
        // Taken at `until - hold`, at or before `now`: `until <= now + hold`.
        now < stamp.until
            && now
                .checked_add(self.hold)
                .is_none_or(|latest| stamp.until <= latest)
            && self
                .counters
                .get(usize::from(stamp.bucket))
                .is_some_and(|c| c.load(Ordering::Acquire) as u32 == stamp.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_stamp_holds_until_a_write_of_its_bucket_or_its_deadline() {
        let epochs = WriteEpochs::new(MINUTE);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let sid = SessionId::random();
        let stamp = epochs.stamp(&sid, now).expect("stamp");
        assert!(epochs.still_current(&stamp, now));
        assert!(epochs.still_current(&stamp, now + MINUTE - Duration::from_nanos(1)));
        assert!(!epochs.still_current(&stamp, now + MINUTE));
        // A clock that went back does not stretch it.
        assert!(!epochs.still_current(&stamp, now - Duration::from_secs(1)));
        epochs.bump(&sid);
        assert!(!epochs.still_current(&stamp, now));
        // A stamp taken after the write holds.
        let after = epochs.stamp(&sid, now).expect("stamp");
        assert!(epochs.still_current(&after, now));
    }

    #[test]
    fn another_buckets_write_leaves_a_stamp_current() {
        let epochs = WriteEpochs::new(MINUTE);
        let now = SystemTime::UNIX_EPOCH;
        let sid = SessionId::random();
        let other = std::iter::repeat_with(SessionId::random)
            .find(|o| WriteEpochs::bucket(o) != WriteEpochs::bucket(&sid))
            .expect("another bucket");
        let stamp = epochs.stamp(&sid, now).expect("stamp");
        epochs.bump(&other);
        assert!(epochs.still_current(&stamp, now));
    }
}
