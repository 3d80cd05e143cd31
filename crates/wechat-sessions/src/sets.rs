//! The skeleton of the hot path's two set-associative tables — the records the moka store
//! served last (`recent.rs`) and the session tokens the layer already verified
//! (tower-wechat's `token/table.rs`): a power of two of sets, each starting a cache line of its
//! own behind a lock, picked by a multiplicative hash, four ways a set, a full set giving up its
//! oldest way. What a set holds, and how a way is matched, is each table's own. Not a stable
//! API (public for tower-wechat only).

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Ways per set: a hit does not depend on which keys a run happens to hold until five live
/// keys share a set.
pub const WAYS: usize = 4;

/// A set starting a cache line of its own: a lookup reads one line for the lock and the set's
/// head, not two (a set larger than a line takes whole lines; its head is still on the first).
#[derive(Default)]
#[repr(align(64))]
struct CacheLine<T>(T);

/// The sets of a table.
pub struct Sets<T> {
    sets: Box<[CacheLine<RwLock<T>>]>,
    mask: usize,
}

impl<T: Default> Sets<T> {
    /// Sets for about `entries` keys (`WAYS` to `max`), `WAYS` a set.
    pub fn for_entries(entries: u64, max: u64) -> Self {
        let sets =
            (entries.clamp(WAYS as u64, max.max(WAYS as u64)) as usize / WAYS).next_power_of_two();
        Self {
            sets: (0..sets).map(|_| CacheLine::default()).collect(),
            mask: sets - 1,
        }
    }
}

impl<T> Sets<T> {
    /// The set of a key whose `bits` are random (a session id's, a signature's): Fibonacci
    /// hashing spreads them over the sets.
    #[inline]
    pub fn index(&self, bits: u64) -> usize {
        (bits.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & self.mask
    }

    /// Reads set `index` (a poisoned lock is still read: a set is never left half-written).
    #[inline]
    pub fn read(&self, index: usize) -> RwLockReadGuard<'_, T> {
        self.sets[index]
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes set `index`.
    #[inline]
    pub fn write(&self, index: usize) -> RwLockWriteGuard<'_, T> {
        self.sets[index]
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Which way of a full set is given up next: the oldest, round robin.
#[derive(Clone, Copy, Debug, Default)]
pub struct Oldest(u8);

impl Oldest {
    /// The oldest way, which becomes the newest.
    #[inline]
    pub fn replace(&mut self) -> usize {
        let way = usize::from(self.0);
        self.0 = ((way + 1) % WAYS) as u8;
        way
    }
}
