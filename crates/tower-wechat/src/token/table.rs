//! The table of token strings already judged (what verified, what was refused for good) and of
//! those kept with their session's record, so an identical string is not verified again.

use std::sync::Arc;

use smallvec::SmallVec;
use wechat_sessions::sets::{Oldest, Sets, WAYS};

use subtle::ConstantTimeEq;

/// Token strings already judged, so an identical string is not verified again (what verified,
/// and what was refused for good), and those kept with what a request admitted on them needs:
/// a set-associative table (four ways per set, like a CPU cache) indexed by the tail of the
/// signature (random for tokens we signed), where a hit requires the whole token to match byte
/// for byte (the signature in constant time). Four ways make a hit independent of which tokens a
/// run happens to hold: a set overflows only when five live tokens share it (for 1,000 tokens in
/// the default 16,384 sets, about once in 10,000 runs), and then the oldest entry of the set is
/// replaced. Expiry is checked on every hit by the caller.
///
/// A hit reads the set's line, then one allocation front to back: the slot's tag and value
/// first, the token's bytes after. A token that starts with one of our header segments
/// (the same bytes in every token a key signs) is held without it: the segment is compared
/// against the key's copy, which every request shares. A judged token's slot is the table's
/// alone (`V`, cloned out on a hit); a kept one's is shared (`K`, behind an `Arc` a hit clones),
/// so what a request admitted on it reads stays in that one allocation. Slots are never changed
/// in place: keeping a token replaces its slot.
pub(super) struct TokenTable<V, K> {
    sets: Sets<TokenSet<V, K>>,
    /// The header segments of our keys, each with the `.` after it.
    prefixes: Box<[Box<[u8]>]>,
}

/// What a [`TokenTable`] needs to know of its judged entries to choose which one a full set
/// gives up.
pub(super) trait Entry: Clone {
    /// Whether this entry gives way to any other (a refusal, to a token that verified).
    fn yields(&self) -> bool;
}

/// What a hit found.
pub(super) enum Found<V, K> {
    /// A judged token: its entry.
    Judged(V),
    /// A kept token: its slot, shared.
    Kept(Arc<TokenSlot<K>>),
}

/// The slot of a way: judged or kept.
enum Way<V, K> {
    Judged(Box<TokenSlot<V>>),
    Kept(Arc<TokenSlot<K>>),
}

impl<V, K> Way<V, K> {
    fn key(&self) -> Key<'_> {
        match self {
            Self::Judged(slot) => slot.key(),
            Self::Kept(slot) => slot.key(),
        }
    }

    /// Whether this way gives way to any other.
    fn yields(&self) -> bool
    where
        V: Entry,
    {
        matches!(self, Self::Judged(slot) if slot.value.yields())
    }
}

/// A set: four ways of 16 bytes (a slot of either kind), behind the lock, take two lines. The
/// lock and the first three ways share the first, so a hit there (nearly every hit while the
/// table is far from full) reads one line of the set. (One pointer a way, with one kind of slot
/// for all, measured 100 instructions a request more.)
struct TokenSet<V, K> {
    ways: [Option<Way<V, K>>; WAYS],
    /// The way the next insertion replaces when none is free.
    next: Oldest,
}

impl<V, K> Default for TokenSet<V, K> {
    fn default() -> Self {
        Self {
            ways: std::array::from_fn(|_| None),
            next: Oldest::default(),
        }
    }
}

/// Tokens up to this long (past a known header segment) are held in their slot's own
/// allocation; ours are about 200 bytes there. A judged token's slot is then 416 bytes, a kept
/// one's 488 (and the `Arc`'s counts).
pub(super) const INLINE_TOKEN: usize = 360;

/// No known header segment: the token is held whole.
const WHOLE: u8 = u8::MAX;

/// In declaration order (`repr(C)`): what a hit reads first — the tag, the value — leads, and
/// the token's bytes follow, so a hit reads one run of about 300 bytes. Not aligned to a cache
/// line: an over-aligned allocation goes through glibc's `memalign`, whose leftovers cost more
/// per request (about 100 instructions in `malloc`, under callgrind) than the part of a line
/// that alignment saves.
#[repr(C)]
pub(crate) struct TokenSlot<T> {
    /// The signature's tail, as hashed: compared before the token itself.
    tag: u64,
    /// What the token was judged, or kept with.
    value: T,
    /// Where the signature starts in `rest` (after the last `.`).
    signature_at: u32,
    /// Which of the table's prefixes the token starts with, or [`WHOLE`].
    prefix: u8,
    /// The token past its prefix.
    rest: SmallVec<[u8; INLINE_TOKEN]>,
}

impl<T> TokenSlot<T> {
    /// What the token was judged, or kept with.
    pub(crate) fn value(&self) -> &T {
        &self.value
    }

    fn key(&self) -> Key<'_> {
        Key {
            tag: self.tag,
            signature_at: self.signature_at,
            prefix: self.prefix,
            rest: &self.rest,
        }
    }
}

/// What a slot holds of its token.
struct Key<'a> {
    tag: u64,
    signature_at: u32,
    prefix: u8,
    rest: &'a [u8],
}

impl<V: Entry, K> TokenTable<V, K> {
    /// A table for about `capacity` tokens, knowing the header segments of our keys.
    pub(super) fn new(capacity: u64, headers: &[&str]) -> Self {
        let prefixes = headers
            .iter()
            .take(usize::from(WHOLE))
            .map(|header| [header.as_bytes(), b"."].concat().into())
            .collect();
        Self {
            sets: Sets::for_entries(capacity, 1 << 24),
            prefixes,
        }
    }

    /// The set of a token and its tag (from its last eight bytes).
    fn locate(&self, token: &[u8]) -> (usize, u64) {
        let tag = match token.len().checked_sub(8) {
            Some(start) => word(&token[start..]),
            // Too short to be ours: any set does.
            None => 0,
        };
        (self.sets.index(tag), tag)
    }

    /// Whether `key` is exactly `token`'s.
    fn holds(&self, key: &Key<'_>, token: &[u8]) -> bool {
        let rest = match self.prefixes.get(usize::from(key.prefix)) {
            Some(prefix) => token.strip_prefix(&**prefix),
            None => Some(token),
        };
        rest.is_some_and(|rest| same_token(key.rest, key.signature_at as usize, rest))
    }

    /// A slot holding `token` and `value`, and its set; `None` for a string with no `.` (never
    /// ours) and for a refusal longer than a slot holds inline (whatever is sent, what yields
    /// takes no more than its slot).
    fn slot<T>(&self, token: &[u8], value: T, yields: bool) -> Option<(usize, TokenSlot<T>)> {
        let (prefix, rest) = match self.prefixes.iter().position(|p| token.starts_with(p)) {
            Some(at) => (at as u8, &token[self.prefixes[at].len()..]),
            None => (WHOLE, token),
        };
        let signature_at = rest
            .iter()
            .rposition(|&b| b == b'.')
            .and_then(|dot| u32::try_from(dot + 1).ok())?;
        if yields && rest.len() > INLINE_TOKEN {
            return None;
        }
        let (set, tag) = self.locate(token);
        let slot = TokenSlot {
            tag,
            value,
            signature_at,
            prefix,
            rest: SmallVec::from_slice(rest),
        };
        Some((set, slot))
    }

    /// What the slots of `token`'s set hold of their tokens (for the tests).
    #[cfg(test)]
    pub(super) fn rests_in_set_of(&self, token: &[u8]) -> Vec<Vec<u8>> {
        let (set, _) = self.locate(token);
        let set = self.sets.read(set);
        set.ways
            .iter()
            .flatten()
            .map(|way| way.key().rest.to_vec())
            .collect()
    }

    pub(super) fn get(&self, token: &[u8]) -> Option<Found<V, K>> {
        let (set, tag) = self.locate(token);
        let set = self.sets.read(set);
        // The set is public (it follows from the token), so a plain comparison would let a
        // caller learn a cached token byte by byte. Header and payload are readable from the
        // token anyway and useless without its MAC: compared plainly; the signature in constant
        // time. The tag is the signature's last bytes: a mismatch there tells only that the
        // candidate's signature differs, which the caller knows.
        let way = set.ways.iter().flatten().find(|way| {
            let key = way.key();
            key.tag == tag && self.holds(&key, token)
        })?;
        Some(match way {
            Way::Judged(slot) => Found::Judged(slot.value.clone()),
            Way::Kept(slot) => Found::Kept(Arc::clone(slot)),
        })
    }

    /// Keeps `token` with `value`, in place of what the table holds for it (judged or kept
    /// before); nothing if the table holds it no more.
    pub(super) fn keep(&self, token: &[u8], value: K) {
        let Some((set, slot)) = self.slot(token, value, false) else {
            return;
        };
        let slot = Arc::new(slot);
        let mut set = self.sets.write(set);
        let Some(way) = set
            .ways
            .iter_mut()
            .find(|way| way.as_ref().is_some_and(|w| self.holds(&w.key(), token)))
        else {
            return;
        };
        let replaced = way.replace(Way::Kept(slot));
        // What the token held before is dropped outside the set's lock.
        drop(set);
        drop(replaced);
    }

    pub(super) fn insert(&self, token: &[u8], value: V) {
        let yields = value.yields();
        let Some((set, slot)) = self.slot(token, value, yields) else {
            return;
        };
        let mut set = self.sets.write(set);
        // Two requests that judged the same new token at once: one way holds it.
        if set
            .ways
            .iter()
            .flatten()
            .any(|w| self.holds(&w.key(), token))
        {
            return;
        }
        let free = set.ways.iter().position(Option::is_none);
        let yielding = || {
            set.ways
                .iter()
                .position(|way| way.as_ref().is_some_and(Way::yields))
        };
        let way = match free.or_else(yielding) {
            // A free way, else the first whose entry yields (a refusal).
            Some(way) => way,
            // Every way holds a token that verified: a refusal is not remembered (nor copied).
            None if yields => return,
            None => set.next.replace(),
        };
        let replaced = set.ways[way].replace(Way::Judged(Box::new(slot)));
        drop(set);
        drop(replaced);
    }
}

/// Whether two tokens are equal, leaking through timing nothing about the signature: the part
/// up to the last `.` is compared plainly, the signature in constant time.
pub(super) fn same_token(known: &[u8], signature_at: usize, candidate: &[u8]) -> bool {
    if known.len() != candidate.len() {
        return false;
    }
    let (known_signed, known_signature) = known.split_at(signature_at);
    let (signed, signature) = candidate.split_at(signature_at);
    // Eight bytes at a time, folded into one word compared once: no branch on the content. The
    // bytes past the last whole word are covered by the word that ends the signature (it
    // overlaps the one before); a signature shorter than a word goes a byte at a time.
    let (known_words, signature_words) =
        (known_signature.chunks_exact(8), signature.chunks_exact(8));
    let tail = match known_signature.len().checked_sub(8) {
        Some(last) => word(&known_signature[last..]) ^ word(&signature[last..]),
        None => known_words
            .remainder()
            .iter()
            .zip(signature_words.remainder())
            .fold(0u64, |acc, (a, b)| acc | u64::from(a ^ b)),
    };
    let difference = known_words
        .zip(signature_words)
        .fold(tail, |acc, (a, b)| acc | (word(a) ^ word(b)));
    known_signed == signed && bool::from(difference.ct_eq(&0))
}

/// Eight bytes as a word.
fn word(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes.try_into().unwrap_or_default())
}
