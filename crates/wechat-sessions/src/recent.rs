//! [`RecentReads`]: the records [`MokaStore`](crate::MokaStore) served last, found again
//! without moka's per-read bookkeeping (its read log, LRU move and pending-task drain: about
//! 700 instructions and a dozen cache lines a read, most of a warm request's store cost).
//!
//! A set-associative table (four ways per set, indexed by the session id's random bits, so a
//! hit does not depend on which ids a run draws). It is only ever a copy of what moka holds:
//! every write of a session — insert, compare-and-set, delete, expiry, eviction — [`forget`]s it
//! after moka has it, and a read that missed remembers what it read only if no write touched
//! its set in between (the set's generation, taken before moka was read, is unchanged). So a
//! hit answers exactly what a moka read would, except that moka hears of the read later: a hit
//! older than the touch interval misses on purpose, and the read that follows goes to moka,
//! which keeps its LRU order and idle timer right to within that interval.
//!
//! It also keeps the store's [`WriteEpochs`]: [`forget`] bumps the session's counter once its
//! copy is gone, so a caller that holds a record with a stamp taken before reads again, and
//! reads none of the forgotten copy.
//!
//! [`forget`]: RecentReads::forget

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use wechat_session_store::{ReadStamp, WriteEpochs};
use wechat_session_store::{SessionId, SessionRecord};

use crate::sets::{Oldest, Sets, WAYS};

/// Most records remembered at once: the hot set of an instance, not all of its sessions
/// (8,192 sets of 320 bytes).
const MAX_REMEMBERED: u64 = 32_768;

pub(crate) struct RecentReads {
    sets: Sets<Set>,
    /// How long a remembered read may answer before moka must be told of reads again.
    touch_every: Duration,
    /// Stamps for callers that keep what they read (holding no longer than `touch_every`).
    epochs: WriteEpochs,
}

/// In this order (`repr(C)`): behind the lock's few bytes, generation and tags fill the set's
/// first cache line.
#[derive(Default)]
#[repr(C)]
struct Set {
    /// Bumped by every write of a session of this set.
    generation: u64,
    /// Each way's session id's first eight bytes (0: empty), compared before the way is read.
    tags: [u64; WAYS],
    /// The way the next remembered read replaces when none is free.
    next: Oldest,
    ways: [Option<Way>; WAYS],
}

struct Way {
    sid: SessionId,
    record: Arc<SessionRecord>,
    /// When moka last heard of a read of it (the store's clock) ...
    touched: SystemTime,
    /// ... and until when hits need not tell it again.
    touch_by: SystemTime,
}

/// A read that missed: where its session goes (set and tag) and the set's generation when it
/// started, to be handed back to [`RecentReads::remember`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Miss {
    set: usize,
    tag: u64,
    generation: u64,
}

impl RecentReads {
    /// A table for a store of at most `max_sessions` sessions, telling moka of reads at least
    /// every `touch_every`.
    pub(crate) fn new(max_sessions: u64, touch_every: Duration) -> Self {
        Self {
            sets: Sets::for_entries(max_sessions, MAX_REMEMBERED),
            touch_every,
            epochs: WriteEpochs::new(touch_every),
        }
    }

    /// The set of `sid` and its tag in the set (never 0, which marks an empty way).
    fn locate(&self, sid: &SessionId) -> (usize, u64) {
        // The id's bytes are random: its last eight pick the set, its first eight tag the way.
        let bytes = sid.as_bytes();
        let word = |at: usize| {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(eight)
        };
        let set = self.sets.index(word(8));
        (set, word(0) | 1)
    }

    /// The remembered record of `sid`, if it is still the one stored, has not expired at `now`,
    /// and moka heard of a read within the touch interval; else a [`Miss`] to remember the
    /// read that follows with.
    pub(crate) fn get(&self, sid: &SessionId, now: SystemTime) -> Result<Arc<SessionRecord>, Miss> {
        let (index, tag) = self.locate(sid);
        let set = self.sets.read(index);
        let hit = (0..WAYS)
            .filter(|&way| set.tags[way] == tag)
            .find_map(|way| set.ways[way].as_ref().filter(|w| w.sid == *sid));
        match hit {
            Some(way)
                if way.touched <= now && now < way.touch_by && !way.record.is_expired(now) =>
            {
                Ok(Arc::clone(&way.record))
            }
            _ => Err(Miss {
                set: index,
                tag,
                generation: set.generation,
            }),
        }
    }

    /// Remembers `record`, just read from moka at `now` after `miss`, unless a write of its set
    /// came in between (then what was read may be stale, and the next read goes to moka).
    pub(crate) fn remember(&self, miss: Miss, record: &Arc<SessionRecord>, now: SystemTime) {
        let Some(touch_by) = now.checked_add(self.touch_every) else {
            return;
        };
        let mut set = self.sets.write(miss.set);
        if set.generation != miss.generation {
            return;
        }
        let way = Way {
            sid: record.sid,
            record: Arc::clone(record),
            touched: now,
            touch_by,
        };
        let slot = match set.ways.iter().position(|w| match w {
            Some(w) => w.sid == record.sid,
            None => true,
        }) {
            Some(slot) => slot,
            None => set.next.replace(),
        };
        set.tags[slot] = miss.tag;
        set.ways[slot] = Some(way);
    }

    /// Forgets `sid` after a write of it reached moka; reads of its set that started before
    /// do not remember what they read.
    pub(crate) fn forget(&self, sid: &SessionId) {
        let (index, _) = self.locate(sid);
        let forgotten = {
            let mut set = self.sets.write(index);
            set.generation = set.generation.wrapping_add(1);
            let way = set
                .ways
                .iter()
                .position(|w| w.as_ref().is_some_and(|w| w.sid == *sid));
            way.and_then(|way| {
                set.tags[way] = 0;
                set.ways[way].take()
            })
        };
        // Only now that no copy of the old record can be read: stamps taken before go stale.
        self.epochs.bump(sid);
        // The record is dropped outside the lock.
        drop(forgotten);
    }

    /// A stamp for a read of `sid` about to start at `now` (see [`WriteEpochs`]).
    pub(crate) fn stamp(&self, sid: &SessionId, now: SystemTime) -> Option<ReadStamp> {
        self.epochs.stamp(sid, now)
    }

    /// Whether no write of `stamp`'s session was forgotten since it was taken, and it still
    /// holds at `now`.
    pub(crate) fn still_current(&self, stamp: &ReadStamp, now: SystemTime) -> bool {
        self.epochs.still_current(stamp, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use wechat_session_store::conformance::sample_record;

    const MINUTE: Duration = Duration::from_secs(60);

    fn record(sid: SessionId, now: SystemTime) -> Arc<SessionRecord> {
        let mut record = sample_record(&ManualClock::new(now), "wx_recent", "o_recent");
        record.sid = sid;
        record.expires_at = now + Duration::from_secs(3600);
        Arc::new(record)
    }

    fn remembered(reads: &RecentReads, record: &Arc<SessionRecord>, now: SystemTime) {
        let miss = reads.get(&record.sid, now).expect_err("not yet remembered");
        reads.remember(miss, record, now);
    }

    #[test]
    fn a_remembered_read_answers_until_the_touch_interval_ends() {
        let reads = RecentReads::new(1_000, MINUTE);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let r = record(SessionId::random(), now);
        remembered(&reads, &r, now);
        let hit = reads
            .get(&r.sid, now + Duration::from_secs(59))
            .expect("hit");
        assert!(Arc::ptr_eq(&hit, &r));
        // Moka must hear of reads again (its LRU order and idle timer), and a clock that went
        // back does not stretch the interval.
        assert!(reads.get(&r.sid, now + MINUTE).is_err());
        assert!(reads.get(&r.sid, now - Duration::from_secs(1)).is_err());
    }

    #[test]
    fn an_expired_record_is_never_answered() {
        let reads = RecentReads::new(1_000, Duration::from_secs(7200));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let r = record(SessionId::random(), now);
        remembered(&reads, &r, now);
        assert!(
            reads
                .get(&r.sid, r.expires_at - Duration::from_secs(1))
                .is_ok()
        );
        assert!(reads.get(&r.sid, r.expires_at).is_err());
    }

    #[test]
    fn a_write_forgets_and_a_read_that_raced_it_is_not_remembered() {
        let reads = RecentReads::new(1_000, MINUTE);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let r = record(SessionId::random(), now);
        remembered(&reads, &r, now);
        reads.forget(&r.sid);
        // A read missed, then a write (delete, compare-and-set) landed before it remembered
        // what it had read: that copy may be stale and is not kept.
        let miss = reads.get(&r.sid, now).expect_err("forgotten");
        reads.forget(&r.sid);
        reads.remember(miss, &r, now);
        assert!(reads.get(&r.sid, now).is_err());
        // A read with no write in between is kept.
        remembered(&reads, &r, now);
        assert!(reads.get(&r.sid, now).is_ok());
    }

    #[test]
    fn a_set_keeps_four_sessions_and_a_fifth_replaces_the_oldest() {
        let reads = RecentReads::new(4, MINUTE); // one set
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let records: Vec<_> = (0..5).map(|_| record(SessionId::random(), now)).collect();
        for r in &records[..4] {
            remembered(&reads, r, now);
        }
        assert!(records[..4].iter().all(|r| reads.get(&r.sid, now).is_ok()));
        remembered(&reads, &records[4], now);
        assert!(reads.get(&records[0].sid, now).is_err());
        assert!(records[1..].iter().all(|r| reads.get(&r.sid, now).is_ok()));
        // Remembering a session again takes its own way, not another's.
        let newer = record(records[2].sid, now);
        let miss = reads.get(&newer.sid, now + MINUTE).expect_err("touch due");
        reads.remember(miss, &newer, now + MINUTE);
        let later = now + MINUTE / 2;
        for r in [&records[1], &records[3], &records[4]] {
            assert!(reads.get(&r.sid, later).is_ok());
        }
        assert!(Arc::ptr_eq(
            &reads.get(&newer.sid, now + MINUTE).unwrap(),
            &newer
        ));
    }
}
