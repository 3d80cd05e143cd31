//! The table of token strings already judged (what verified, with its kept record, and what
//! was refused for good), so an identical string is not verified again.

use smallvec::SmallVec;
use wechat_sessions::sets::{Oldest, Sets, WAYS};

use subtle::ConstantTimeEq;

/// Token strings already judged, so an identical string is not verified again (one table for
/// what verified, another for what was refused for good): a set-associative table (four ways per
/// set, like a CPU cache) indexed by the tail of the signature (random for tokens we signed),
/// where a hit requires the whole token to match byte for byte (the signature in constant time).
/// Four ways make a hit independent of which tokens a run happens to hold: a set overflows only
/// when five live tokens share it (for 1,000 tokens in the default 16,384 sets, about once in
/// 10,000 runs), and then the oldest entry of the set is replaced. Expiry is checked on every hit
/// by the caller.
///
/// A hit reads the set's line, then one allocation front to back: the slot's tag and value
/// first, the token's bytes after. A token that starts with one of our header segments
/// (the same bytes in every token a key signs) is held without it: the segment is compared
/// against the key's copy, which every request shares.
pub(super) struct TokenTable<V> {
    sets: Sets<TokenSet<V>>,
    /// The header segments of our keys, each with the `.` after it.
    prefixes: Box<[Box<[u8]>]>,
}

/// What a [`TokenTable`] needs to know of its entries to choose which one a full set gives up.
pub(super) trait Entry: Clone {
    /// Whether this entry gives way to any other (a refusal, to a token that verified).
    fn yields(&self) -> bool;

    /// Starts reading what a hit on this entry goes on to read, while its token is compared.
    fn warm(&self) {}
}

struct TokenSet<V> {
    ways: [Option<Box<TokenSlot<V>>>; WAYS],
    /// The way the next insertion replaces when none is free.
    next: Oldest,
}

impl<V> Default for TokenSet<V> {
    fn default() -> Self {
        Self {
            ways: std::array::from_fn(|_| None),
            next: Oldest::default(),
        }
    }
}

/// Tokens up to this long (past a known header segment) are held in their slot's own
/// allocation; ours are about 230 bytes there. A slot is then 448 bytes.
pub(super) const INLINE_TOKEN: usize = 360;

/// No known header segment: the token is held whole.
const WHOLE: u8 = u8::MAX;

/// In declaration order (`repr(C)`): what a hit reads first — the tag, the value — leads, and
/// the token's bytes follow, so a hit reads one run of about 310 bytes. Not aligned to a cache
/// line: an over-aligned allocation goes through glibc's `memalign`, whose leftovers cost more
/// per request (about 100 instructions in `malloc`, under callgrind) than the part of a line
/// that alignment saves.
#[repr(C)]
struct TokenSlot<V> {
    /// The signature's tail, as hashed: compared before the token itself.
    tag: u64,
    /// What the token was judged.
    value: V,
    /// Where the signature starts in `rest` (after the last `.`).
    signature_at: u32,
    /// Which of the table's prefixes the token starts with, or [`WHOLE`].
    prefix: u8,
    /// The token past its prefix.
    rest: SmallVec<[u8; INLINE_TOKEN]>,
}

impl<V: Entry> TokenTable<V> {
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

    /// The token past the slot's prefix, if it starts with it.
    fn past_prefix<'t>(&self, slot: &TokenSlot<V>, token: &'t [u8]) -> Option<&'t [u8]> {
        match self.prefixes.get(usize::from(slot.prefix)) {
            Some(prefix) => token.strip_prefix(&**prefix),
            None => Some(token),
        }
    }

    /// Whether `slot` holds exactly `token`.
    fn holds(&self, slot: &TokenSlot<V>, token: &[u8]) -> bool {
        self.past_prefix(slot, token)
            .is_some_and(|rest| same_token(&slot.rest, slot.signature_at as usize, rest))
    }

    /// What the slots of `token`'s set hold of their tokens (for the tests).
    #[cfg(test)]
    pub(super) fn rests_in_set_of(&self, token: &[u8]) -> Vec<Vec<u8>> {
        let (set, _) = self.locate(token);
        let set = self.sets.read(set);
        set.ways.iter().flatten().map(|s| s.rest.to_vec()).collect()
    }

    pub(super) fn get(&self, token: &[u8]) -> Option<V> {
        let (set, tag) = self.locate(token);
        let set = self.sets.read(set);
        // The set is public (it follows from the token), so a plain comparison would let a
        // caller learn a cached token byte by byte. Header and payload are readable from the
        // token anyway and useless without its MAC: compared plainly; the signature in constant
        // time. The tag is the signature's last bytes: a mismatch there tells only that the
        // candidate's signature differs, which the caller knows.
        set.ways
            .iter()
            .flatten()
            .find(|s| {
                s.tag == tag && {
                    s.value.warm();
                    self.holds(s, token)
                }
            })
            .map(|s| s.value.clone())
    }

    /// Changes the value of `token`, if the table holds it.
    pub(super) fn update<R>(&self, token: &[u8], change: impl FnOnce(&mut V) -> R) -> Option<R> {
        let (set, _) = self.locate(token);
        let mut set = self.sets.write(set);
        let slot = set
            .ways
            .iter_mut()
            .flatten()
            .find(|s| self.holds(s, token))?;
        Some(change(&mut slot.value))
    }

    pub(super) fn insert(&self, token: &[u8], value: V) {
        let (prefix, rest) = match self.prefixes.iter().position(|p| token.starts_with(p)) {
            Some(at) => (at as u8, &token[self.prefixes[at].len()..]),
            None => (WHOLE, token),
        };
        let Some(signature_at) = rest
            .iter()
            .rposition(|&b| b == b'.')
            .and_then(|dot| u32::try_from(dot + 1).ok())
        else {
            return;
        };
        // Whatever is sent, what yields takes no more than its slot.
        if value.yields() && rest.len() > INLINE_TOKEN {
            return;
        }
        let (set, tag) = self.locate(token);
        let mut set = self.sets.write(set);
        // Two requests that judged the same new token at once: one way holds it.
        if set.ways.iter().flatten().any(|s| self.holds(s, token)) {
            return;
        }
        let free = set.ways.iter().position(Option::is_none);
        let yielding = || {
            set.ways
                .iter()
                .position(|way| way.as_ref().is_some_and(|s| s.value.yields()))
        };
        let way = match free.or_else(yielding) {
            // A free way, else the first whose entry yields (a refusal).
            Some(way) => way,
            // Every way holds a token that verified: a refusal is not remembered (nor copied).
            None if value.yields() => return,
            None => set.next.replace(),
        };
        set.ways[way] = Some(Box::new(TokenSlot {
            tag,
            value,
            signature_at,
            prefix,
            rest: SmallVec::from_slice(rest),
        }));
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
