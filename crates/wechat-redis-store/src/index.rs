//! Where a user's sessions are indexed: one of [`BUCKETS`] sorted sets shared by the users whose
//! id hashes to it, each member `<user hash, 8 bytes><sid, 16 bytes><end, Unix s, 4 bytes>` at
//! score 0, so a user's members are one lexicographic range of the bucket. About 32 bytes of
//! Redis memory a session at scale (a bucket stays in Redis's compact listpack encoding up to
//! `zset-max-listpack-entries`, 128 by default: about 8 million sessions at 65,536 buckets),
//! against about 150 for a sorted set of its own per user. The end in the member lets a bucket
//! drop the members of users who never come back; the hash may collide, so whoever reads a
//! range checks the records' user ids.

use aws_lc_rs::digest::{SHA256, digest};
use wechat_session_store::{SessionId, UserId};

/// How many buckets the index has. Fixed: a user's bucket must not move while their sessions
/// live.
pub(crate) const BUCKETS: u32 = 1 << 16;

/// A member's length.
pub(crate) const MEMBER_LEN: usize = 8 + 16 + 4;

/// A user's place in the index.
pub(crate) struct UserRange {
    hash: [u8; 8],
    /// Which bucket holds the user's members.
    pub(crate) bucket: u32,
    /// The range of the user's members, as `ZRANGE ... BYLEX` takes it (binary).
    pub(crate) min: Vec<u8>,
    pub(crate) max: Vec<u8>,
}

impl UserRange {
    pub(crate) fn of(user: &UserId) -> Self {
        let mut hash = [0u8; 8];
        hash.copy_from_slice(&digest(&SHA256, user.as_str().as_bytes()).as_ref()[..8]);
        let bucket = (u64::from_be_bytes(hash) >> (64 - BUCKETS.trailing_zeros())) as u32;
        let min = [&b"["[..], &hash].concat();
        // Up to (excluded) the next hash; the last hash's range runs to the end.
        let max = match u64::from_be_bytes(hash).checked_add(1) {
            Some(next) => [&b"("[..], &next.to_be_bytes()].concat(),
            None => b"+".to_vec(),
        };
        Self {
            hash,
            bucket,
            min,
            max,
        }
    }

    /// The member of session `sid`, ending at `end_ms` (rounded up to the second, so it is
    /// never purged before the session ends).
    pub(crate) fn member(&self, sid: &SessionId, end_ms: i64) -> Vec<u8> {
        let end = u32::try_from(end_ms.max(0).unsigned_abs().div_ceil(1000)).unwrap_or(u32::MAX);
        let mut member = Vec::with_capacity(MEMBER_LEN);
        member.extend_from_slice(&self.hash);
        member.extend_from_slice(sid.as_bytes());
        member.extend_from_slice(&end.to_be_bytes());
        member
    }

    /// The session a member of this user's range names (`None` for anything else).
    pub(crate) fn sid(&self, member: &[u8]) -> Option<SessionId> {
        if member.len() != MEMBER_LEN || member[..8] != self.hash {
            return None;
        }
        Some(SessionId::from_bytes(member[8..24].try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_members_are_in_their_range_and_name_their_sessions() {
        let alice = UserRange::of(&UserId::new("alice").unwrap());
        let bob = UserRange::of(&UserId::new("bob").unwrap());
        assert!(alice.bucket < BUCKETS);
        let sid = SessionId::random();
        let member = alice.member(&sid, 1_700_000_000_001);
        assert_eq!(member.len(), MEMBER_LEN);
        assert_eq!(alice.sid(&member), Some(sid));
        assert_eq!(bob.sid(&member), None);
        assert_eq!(alice.sid(&member[..27]), None);
        // Ends are rounded up to the second.
        assert_eq!(member[24..], 1_700_000_001u32.to_be_bytes());
        // In lexicographic order the member lies in the user's range.
        assert!(member[..] >= alice.min[1..]);
        assert!(member[..] < alice.max[1..]);
    }
}
