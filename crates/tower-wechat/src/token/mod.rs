//! Our own session tokens: what the client holds instead of WeChat's tokens.
//!
//! A token is a JWT signed with one key of a [`KeyRing`] (the current key signs; previous keys
//! still verify, found by `kid`), with claims `sid`, `sub` (openid), `iss`, `aud`, `iat`, `exp`
//! and optional `uid` (unionid). Each key accepts exactly its own algorithm, so `alg: none` and
//! algorithm confusion are rejected. Validation objects are built once. Expiry is checked with
//! our clock (with a small leeway), and a token string that verified once is remembered until it
//! expires, so the hot path does not verify the same signature on every request; one refused for
//! good (bad signature, unknown key, malformed) is remembered apart, so a client that keeps
//! sending it costs a lookup, not a MAC. Beside a remembered token the middleware keeps its
//! session's record with the store's [`ReadStamp`], so a warm request reads no store while the
//! store says the record is unchanged; the kept token's slot is shared with the requests it
//! admits ([`KeptToken`]), so a warm request reads nothing of the user beyond that slot.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use jsonwebtoken::{DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use wechat_oauth::OpenId;
use wechat_sessions::{ReadStamp, SessionId, SessionRecord, SharedClock};

use crate::rejection::AuthError;
use crate::user::Upstream;

mod keys;
mod table;

use keys::HmacSha256;
pub use keys::{KeyRing, MIN_HS256_SECRET, SigningKey, SigningKeyError};
use table::{Entry, Found, TokenSlot, TokenTable};

/// How long a re-issued token is handed out again to a client that keeps sending its old one.
const RENEWAL_REUSE: Duration = Duration::from_secs(60);

/// The claims of a session token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The session id.
    pub sid: String,
    /// The user's openid.
    pub sub: String,
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// The user's unionid, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// A freshly issued session token.
#[derive(Clone)]
pub struct IssuedToken {
    /// The token itself (a credential: give it only to its owner).
    pub value: String,
    /// When it expires.
    pub expires_at: SystemTime,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("value", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Settings of session tokens.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TokenConfig {
    /// `iss` (default `"wechat-login"`).
    pub issuer: String,
    /// `aud` (default `"wechat-login"`).
    pub audience: String,
    /// Lifetime of a token (default 7 days), never beyond the session's own end.
    pub ttl: Duration,
    /// Re-issue a token on use once it has less than this left (default 3.5 days).
    pub reissue_before: Duration,
    /// Clock skew tolerated on `exp` and `iat` (default 30 s).
    pub leeway: Duration,
    /// Longer tokens are refused unparsed (default 4096 bytes).
    pub max_len: usize,
    /// How many token strings are remembered (rounded up to a power of two; default 65,536):
    /// those that verified, and those refused for good where there is room (a refused one
    /// never takes the place of one that verified).
    pub verified_capacity: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            issuer: "wechat-login".into(),
            audience: "wechat-login".into(),
            ttl: Duration::from_secs(7 * 24 * 3600),
            reissue_before: Duration::from_secs(84 * 3600),
            leeway: Duration::from_secs(30),
            max_len: 4096,
            verified_capacity: 65_536,
        }
    }
}

/// What a verified token says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The session.
    pub sid: SessionId,
    /// When the token expires (whole seconds, as the JWT's `exp` says).
    pub expires_at: SystemTime,
}

/// A session's record kept beside a token that verified, with the store's stamp that tells
/// whether it is still the stored one: a warm request then reads no store at all.
pub(crate) struct Kept {
    /// Until when the record may be admitted as it is with this token: the first instant a
    /// refresh or check falls due, the session ends, the token is to be re-issued or it expires.
    pub(crate) until: SystemTime,
    pub(crate) stamp: ReadStamp,
    /// The record's openid, copied: the one field of the user a handler reads on most requests
    /// is on the token's slot, not on the record's line.
    pub(crate) openid: OpenId,
    /// When the token expires (its `exp`).
    pub(crate) expires_at: SystemTime,
    pub(crate) record: Arc<SessionRecord>,
    /// What the user's calls to WeChat go through (the layer's): with it here, a warm
    /// request's user is this slot alone.
    pub(crate) upstream: Arc<dyn Upstream>,
}

/// A kept token's slot, shared by the table and the requests admitted on it: what
/// [`WeChatUser`](crate::WeChatUser) holds of a warm request's session.
#[derive(Clone)]
pub(crate) struct KeptToken(Arc<TokenSlot<Kept>>);

impl KeptToken {
    pub(crate) fn kept(&self) -> &Kept {
        self.0.value()
    }
}

/// What a token that verified brings.
pub(crate) enum Known {
    /// Its session's record, kept beside it and admissible as it is until `until` (which is
    /// after now): no store read and no expiry check needed while the stamp holds.
    Kept(KeptToken),
    /// What it says, and nothing more.
    Token(VerifiedToken),
}

impl Known {
    /// What the token says.
    pub(crate) fn token(&self) -> VerifiedToken {
        match self {
            Self::Kept(kept) => kept.kept().token(),
            Self::Token(token) => *token,
        }
    }
}

impl Kept {
    /// What the token says.
    fn token(&self) -> VerifiedToken {
        VerifiedToken {
            sid: self.record.sid,
            expires_at: self.expires_at,
        }
    }
}

/// A token whose signature holds, before its times are checked.
struct Signed {
    verified: VerifiedToken,
    exp: u64,
    iat: u64,
}

/// What the table knows of a token string it did not keep.
#[derive(Clone)]
enum Judged {
    /// It verified.
    Valid(VerifiedToken),
    /// Refused for a reason no later time can change (bad signature, unknown key, malformed,
    /// another issuer): a client that keeps sending it costs a lookup, not a MAC. `malformed`:
    /// it has a space in it, so it was not sent as one token (400, not 401).
    Refused { malformed: bool },
}

const _: () = assert!(size_of::<Judged>() <= 64, "a token's entry fits a line");

impl Judged {
    fn refusal(malformed: bool) -> AuthError {
        match malformed {
            true => AuthError::MalformedCredentials,
            false => AuthError::InvalidToken,
        }
    }
}

impl Entry for Judged {
    fn yields(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
}

/// A key as the verifier holds it: recognised by the exact header segment we issue with it.
struct VerifyingKey {
    /// `base64url(header JSON)`, byte for byte as [`TokenIssuer::issue`] writes it.
    header_segment: String,
    verifier: Verifier,
}

enum Verifier {
    /// HS256: HMAC-SHA256 with a prepared key, checked before anything is parsed.
    Hmac(HmacSha256),
    /// EdDSA, RS256: jsonwebtoken, restricted to the key's one algorithm.
    Jwt {
        decoding: DecodingKey,
        validation: Validation,
    },
}

/// Issues and verifies session tokens. Cheap to share (`Arc`).
pub struct TokenIssuer {
    signing: SigningKey,
    signing_header: Header,
    verifying: Vec<VerifyingKey>,
    config: TokenConfig,
    clock: SharedClock,
    /// Token strings judged before: one lookup answers for a valid token and a refused one.
    judged: TokenTable<Judged, Kept>,
    /// Tokens re-issued in the last minute (by our clock), per session, with when they were
    /// issued: a client that keeps sending its old token gets the same new one instead of a
    /// signature per request.
    renewals: moka::sync::Cache<SessionId, (SystemTime, IssuedToken)>,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("signing_kid", &self.signing.kid)
            .field("verifying_keys", &self.verifying.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

use wechat_oauth::clock::unix_secs;

fn header_for(key: &SigningKey) -> Header {
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.kid.clone());
    header
}

impl TokenIssuer {
    /// Builds the verifier and issuer for a key ring. Fails if key ids repeat.
    ///
    /// The configuration is made safe: `ttl` is capped at 10 years, `leeway` at 1 hour, and
    /// `reissue_before` at half the `ttl` (else every request would re-issue).
    pub fn new(
        keys: KeyRing,
        mut config: TokenConfig,
        clock: SharedClock,
    ) -> Result<Self, SigningKeyError> {
        config.ttl = config.ttl.min(Duration::from_secs(10 * 365 * 24 * 3600));
        config.leeway = config.leeway.min(Duration::from_secs(3600));
        config.reissue_before = config.reissue_before.min(config.ttl / 2);
        let mut verifying: Vec<VerifyingKey> = Vec::new();
        let mut kids = std::collections::HashSet::new();
        for key in std::iter::once(&keys.current).chain(&keys.previous) {
            if !kids.insert(key.kid.as_str()) {
                return Err(SigningKeyError::BadKeyId);
            }
            let header_json = serde_json::to_vec(&header_for(key))
                .map_err(|e| SigningKeyError::InvalidKey(e.to_string()))?;
            let verifier = match &key.hmac {
                Some(hmac) => Verifier::Hmac(hmac.clone()),
                None => {
                    let mut validation = Validation::new(key.algorithm);
                    validation.algorithms = vec![key.algorithm];
                    // Expiry is checked against our clock, not jsonwebtoken's system clock.
                    validation.validate_exp = false;
                    validation.validate_nbf = false;
                    validation.leeway = 0;
                    validation.set_issuer(&[&config.issuer]);
                    validation.set_audience(&[&config.audience]);
                    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                    Verifier::Jwt {
                        decoding: key.decoding.clone(),
                        validation,
                    }
                }
            };
            verifying.push(VerifyingKey {
                header_segment: URL_SAFE_NO_PAD.encode(header_json),
                verifier,
            });
        }
        let headers: Vec<&str> = verifying
            .iter()
            .map(|k| k.header_segment.as_str())
            .collect();
        let judged = TokenTable::new(config.verified_capacity, &headers);
        Ok(Self {
            signing_header: header_for(&keys.current),
            signing: keys.current,
            verifying,
            judged,
            renewals: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            config,
            clock,
        })
    }

    /// The settings.
    pub fn config(&self) -> &TokenConfig {
        &self.config
    }

    /// Issues a token for a session: valid for the configured lifetime, but never beyond the
    /// session's end.
    pub fn issue(&self, record: &SessionRecord) -> Result<IssuedToken, SigningKeyError> {
        self.issue_at(record, self.clock.now())
    }

    fn issue_at(
        &self,
        record: &SessionRecord,
        now: SystemTime,
    ) -> Result<IssuedToken, SigningKeyError> {
        let expires_at = now
            .checked_add(self.config.ttl)
            .map_or(record.expires_at, |end| end.min(record.expires_at));
        let claims = Claims {
            sid: record.sid.to_string(),
            sub: record.openid.to_string(),
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            iat: unix_secs(now),
            exp: unix_secs(expires_at),
            uid: record.unionid.as_ref().map(ToString::to_string),
        };
        let token = jsonwebtoken::encode(&self.signing_header, &claims, &self.signing.encoding)
            .map_err(|e| SigningKeyError::InvalidKey(e.to_string()))?;
        Ok(IssuedToken {
            value: token,
            expires_at,
            expires_in: expires_at
                .duration_since(now)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        })
    }

    /// A fresh token for a session whose token nears its end at `now` (the request's one clock
    /// read): issued at most once a minute per session (measured on our clock, which tests
    /// drive), never outliving the session.
    pub(crate) fn renew(
        &self,
        record: &SessionRecord,
        now: SystemTime,
    ) -> Result<IssuedToken, SigningKeyError> {
        let recent = |at: SystemTime| now.duration_since(at).is_ok_and(|age| age < RENEWAL_REUSE);
        match self.renewals.get(&record.sid) {
            Some((at, issued)) if recent(at) && issued.expires_at <= record.expires_at => {
                return Ok(issued);
            }
            _ => {}
        }
        let issued = self.issue_at(record, now)?;
        self.renewals.insert(record.sid, (now, issued.clone()));
        Ok(issued)
    }

    /// Verifies a token: one of our keys (recognised by the exact header we issue with it, so
    /// the algorithm is fixed by the key), signature, issuer, audience, and expiry by our
    /// clock. Never touches the session store.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        self.verify_at(token, self.clock.now())
    }

    /// [`verify`](Self::verify) at a given time, for callers that read the clock once per
    /// request.
    pub fn verify_at(&self, token: &str, now: SystemTime) -> Result<VerifiedToken, AuthError> {
        self.verify_bytes_at(token.as_bytes(), now)
    }

    /// [`verify_at`](Self::verify_at) of a token as the request carried it. A token seen
    /// before is found byte for byte (so it is as well-formed as when it verified); only a new
    /// one is checked for UTF-8 (else 400 `invalid_request`), then verified.
    pub(crate) fn verify_bytes_at(
        &self,
        token: &[u8],
        now: SystemTime,
    ) -> Result<VerifiedToken, AuthError> {
        self.verify_keeping(token, now).map(|known| known.token())
    }

    /// [`verify_bytes_at`](Self::verify_bytes_at), with the session's record if one was
    /// [`keep`](Self::keep)t beside the token and nothing is due for it at `now`.
    pub(crate) fn verify_keeping(&self, token: &[u8], now: SystemTime) -> Result<Known, AuthError> {
        if token.len() > self.config.max_len {
            return Err(AuthError::MalformedCredentials);
        }
        let verified = match self.judged.get(token) {
            // Kept no longer than the token is valid (see `keep`).
            Some(Found::Kept(slot)) if now < slot.value().until => {
                return Ok(Known::Kept(KeptToken(slot)));
            }
            Some(Found::Kept(slot)) => slot.value().token(),
            Some(Found::Judged(Judged::Valid(known))) => known,
            Some(Found::Judged(Judged::Refused { malformed })) => {
                return Err(Judged::refusal(malformed));
            }
            None => {
                let text =
                    std::str::from_utf8(token).map_err(|_| AuthError::MalformedCredentials)?;
                let signed = match self.read_signed(text) {
                    Ok(signed) => signed,
                    Err(_) => {
                        // A string with a space in it was not sent as one token.
                        let malformed = token.contains(&b' ');
                        self.judged.insert(token, Judged::Refused { malformed });
                        return Err(Judged::refusal(malformed));
                    }
                };
                let verified = self.check_times(signed, unix_secs(now))?;
                self.judged.insert(token, Judged::Valid(verified));
                verified
            }
        };
        if self.expired(verified.expires_at, now) {
            return Err(AuthError::TokenExpired);
        }
        Ok(Known::Token(verified))
    }

    /// Keeps `record` beside `token`, which verified as `verified`, with the store's `stamp`
    /// and until `until` at the latest: until then, and while the stamp holds, requests with
    /// the token find their session's record here. It is kept no longer than the token is
    /// valid, so a request admitted on it before then needs no expiry check of its own. The
    /// users admitted on it call WeChat through `upstream`.
    pub(crate) fn keep(
        &self,
        token: &[u8],
        verified: &VerifiedToken,
        record: &Arc<SessionRecord>,
        stamp: ReadStamp,
        until: SystemTime,
        upstream: &Arc<dyn Upstream>,
    ) {
        let kept = Kept {
            until: until.min(self.valid_until(verified.expires_at)),
            stamp,
            openid: record.openid.clone(),
            expires_at: verified.expires_at,
            record: Arc::clone(record),
            upstream: Arc::clone(upstream),
        };
        self.judged.keep(token, kept);
    }

    /// The first instant a token expiring at `expires_at` is refused, leeway included.
    fn valid_until(&self, expires_at: SystemTime) -> SystemTime {
        expires_at
            .checked_add(self.config.leeway)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Whether a token expiring at `expires_at` is past it, leeway included, at `now`.
    fn expired(&self, expires_at: SystemTime, now: SystemTime) -> bool {
        self.valid_until(expires_at) <= now
    }

    /// What a token says if its signature, key, issuer and audience hold: the same answer at
    /// any time (the times are checked by [`check_times`](Self::check_times)).
    fn read_signed(&self, token: &str) -> Result<Signed, AuthError> {
        let (header, rest) = token.split_once('.').ok_or(AuthError::InvalidToken)?;
        let (payload, signature) = rest.split_once('.').ok_or(AuthError::InvalidToken)?;
        let key = self
            .verifying
            .iter()
            .find(|k| k.header_segment == header)
            .ok_or(AuthError::InvalidToken)?;
        let claims: Claims = match &key.verifier {
            Verifier::Hmac(prepared) => {
                let mut tag = [0u8; 32];
                match URL_SAFE_NO_PAD.decode_slice(signature, &mut tag) {
                    Ok(32) => {}
                    _ => return Err(AuthError::InvalidToken),
                }
                let mut mac = prepared.clone();
                mac.update(&token.as_bytes()[..header.len() + 1 + payload.len()]);
                // Constant-time comparison; nothing is parsed before the MAC holds.
                mac.verify_slice(&tag).map_err(invalid)?;
                let json = URL_SAFE_NO_PAD.decode(payload).map_err(invalid)?;
                let claims: Claims = serde_json::from_slice(&json).map_err(invalid)?;
                if claims.iss != self.config.issuer || claims.aud != self.config.audience {
                    return Err(AuthError::InvalidToken);
                }
                claims
            }
            Verifier::Jwt {
                decoding,
                validation,
            } => {
                jsonwebtoken::decode::<Claims>(token, decoding, validation)
                    .map_err(invalid)?
                    .claims
            }
        };
        let sid = claims.sid.parse().map_err(invalid)?;
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(claims.exp))
            .ok_or(AuthError::InvalidToken)?;
        Ok(Signed {
            verified: VerifiedToken { sid, expires_at },
            exp: claims.exp,
            iat: claims.iat,
        })
    }

    /// The verified token of a signed one at `now` (seconds): not expired, not issued in the
    /// future (leeway allowed either way).
    fn check_times(&self, signed: Signed, now: u64) -> Result<VerifiedToken, AuthError> {
        let leeway = self.config.leeway.as_secs();
        if signed.exp.saturating_add(leeway) <= now {
            return Err(AuthError::TokenExpired);
        }
        if signed.iat > now.saturating_add(leeway) {
            return Err(AuthError::InvalidToken);
        }
        Ok(signed.verified)
    }

    /// Whether a token expiring at `expires_at` should be re-issued at `now`, for a session
    /// ending at `session_end`: it is within the re-issue window and a new one would live longer.
    pub(crate) fn should_reissue(
        &self,
        expires_at: SystemTime,
        session_end: SystemTime,
        now: SystemTime,
    ) -> bool {
        // Compared, not subtracted (this runs on every request). `expires_at` is whole seconds
        // (a JWT's `exp`), so a new token would end later when the session ends at least a
        // second after it.
        let within = !self.config.reissue_before.is_zero()
            && now
                .checked_add(self.config.reissue_before)
                .is_none_or(|edge| expires_at < edge);
        within
            && expires_at
                .checked_add(Duration::from_secs(1))
                .is_some_and(|later| session_end >= later)
    }

    /// [`should_reissue`](Self::should_reissue) solved for the time: it is false exactly
    /// before the instant returned (`None`: never true).
    pub(crate) fn reissue_from(
        &self,
        expires_at: SystemTime,
        session_end: SystemTime,
    ) -> Option<SystemTime> {
        let longer = expires_at
            .checked_add(Duration::from_secs(1))
            .is_some_and(|later| session_end >= later);
        if self.config.reissue_before.is_zero() || !longer {
            return None;
        }
        // `expires_at < now + reissue_before`: from a nanosecond past the window's edge.
        Some(match expires_at.checked_sub(self.config.reissue_before) {
            Some(edge) => edge + Duration::from_nanos(1),
            None => SystemTime::UNIX_EPOCH,
        })
    }
}

/// Any failure to read a token says only "invalid": no detail that could help a forger.
fn invalid<E>(_: E) -> AuthError {
    AuthError::InvalidToken
}

#[cfg(test)]
mod tests {
    use super::table::{INLINE_TOKEN, same_token};
    use super::*;
    use jsonwebtoken::{Algorithm, EncodingKey};
    use std::sync::Arc;
    use wechat_sessions::{Clock, ManualClock, WriteEpochs, conformance::sample_record};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn tokens(clock: &ManualClock, keys: KeyRing) -> TokenIssuer {
        TokenIssuer::new(keys, TokenConfig::default(), Arc::new(clock.clone())).unwrap()
    }

    fn ring() -> KeyRing {
        KeyRing::new(SigningKey::hs256("k1", SECRET).unwrap())
    }

    /// `reissue_from` is `should_reissue` solved for the time, on either side of its edge, for
    /// sessions that end before, at and after the token.
    #[test]
    fn reissue_from_is_the_first_instant_a_token_is_reissued() {
        let clock = ManualClock::starting_now();
        let nanos = Duration::from_nanos(1);
        for reissue_before in [
            Duration::ZERO,
            Duration::from_secs(60),
            Duration::from_secs(84 * 3600),
        ] {
            let config = TokenConfig {
                reissue_before,
                ..TokenConfig::default()
            };
            let tokens = TokenIssuer::new(ring(), config, Arc::new(clock.clone())).unwrap();
            let expires_at = clock.now() + Duration::from_secs(7 * 24 * 3600);
            let ends = [
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_secs(3600),
            ];
            for session_end in ends.map(|after| expires_at + after) {
                let from = tokens.reissue_from(expires_at, session_end);
                let edge = expires_at - reissue_before;
                for now in [
                    edge - nanos,
                    edge,
                    edge + nanos,
                    edge + 2 * nanos,
                    expires_at,
                ] {
                    assert_eq!(
                        from.is_some_and(|from| now >= from),
                        tokens.should_reissue(expires_at, session_end, now),
                        "{reissue_before:?} {session_end:?} {now:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn short_secrets_and_duplicate_kids_are_refused() {
        assert_eq!(
            SigningKey::hs256("k", b"short").unwrap_err(),
            SigningKeyError::SecretTooShort
        );
        let clock = ManualClock::starting_now();
        let dup = ring().with_previous(SigningKey::hs256("k1", &[7; 32]).unwrap());
        assert!(TokenIssuer::new(dup, TokenConfig::default(), Arc::new(clock)).is_err());
    }

    #[test]
    fn issue_then_verify_and_expire_by_our_clock() {
        let clock = ManualClock::starting_now();
        let tokens = tokens(&clock, ring());
        let record = sample_record(&clock, "wx", "alice");
        let issued = tokens.issue(&record).unwrap();
        // Capped by the session's end (one day for the sample record).
        assert_eq!(issued.expires_in, 86_400);
        let verified = tokens.verify(&issued.value).unwrap();
        assert_eq!(verified.sid, record.sid);
        // Cached: still verified, and still expires by the clock.
        assert_eq!(tokens.verify(&issued.value).unwrap(), verified);
        clock.advance(Duration::from_secs(86_400 + 31));
        assert_eq!(tokens.verify(&issued.value), Err(AuthError::TokenExpired));
        // Uncached path expires too.
        let other = self::tokens(&clock, ring());
        assert_eq!(other.verify(&issued.value), Err(AuthError::TokenExpired));
    }

    impl<V: Entry, K> TokenTable<V, K> {
        /// What the table holds for `token` if it was judged, not kept.
        fn judged(&self, token: &[u8]) -> Option<V> {
            match self.get(token)? {
                Found::Judged(value) => Some(value),
                Found::Kept(_) => None,
            }
        }
    }

    impl<V: Entry, K: Copy> TokenTable<V, K> {
        /// What the table keeps with `token`.
        fn kept(&self, token: &[u8]) -> Option<K> {
            match self.get(token)? {
                Found::Kept(slot) => Some(*slot.value()),
                Found::Judged(_) => None,
            }
        }
    }

    impl Entry for VerifiedToken {
        fn yields(&self) -> bool {
            false
        }
    }

    fn remembered(sid: u8) -> VerifiedToken {
        VerifiedToken {
            sid: SessionId::from_bytes([sid; 16]),
            expires_at: UNIX_EPOCH,
        }
    }

    #[test]
    fn cached_tokens_match_only_whole() {
        // Held whole, and held past a known header segment ("h", or a longer one it prefixes).
        for headers in [&[][..], &["h"], &["hh", "h"]] {
            let cache = TokenTable::<VerifiedToken, u8>::new(64, headers);
            cache.insert(b"h.p.signature", remembered(1));
            assert_eq!(cache.judged(b"h.p.signature"), Some(remembered(1)));
            for other in [
                &b"h.p.signaturE"[..],
                b"h.q.signature",
                b"h.p.signatur",
                b"h.psignature",
                b"hh.p.signature",
                b"g.p.signature",
                b".p.signature",
                b"p.signature",
                b"signature",
            ] {
                assert_eq!(
                    cache.judged(other),
                    None,
                    "{headers:?} {}",
                    String::from_utf8_lossy(other)
                );
            }
            // No dot: never remembered.
            cache.insert(b"nodots", remembered(2));
            assert_eq!(cache.judged(b"nodots"), None);
        }
    }

    /// A remembered token is held in its slot without the header segment every token of the
    /// key repeats, and found again, changed and told apart from a token of another header.
    #[test]
    fn a_known_header_segment_is_not_held_per_token() {
        let cache = TokenTable::<VerifiedToken, u8>::new(64, &["hdr"]);
        cache.insert(b"hdr.p.signature", remembered(1));
        cache.insert(b"other.p.signature", remembered(2));
        let held = |token: &[u8]| cache.rests_in_set_of(token);
        assert!(held(b"hdr.p.signature").contains(&b"p.signature".to_vec()));
        assert!(held(b"other.p.signature").contains(&b"other.p.signature".to_vec()));
        assert_eq!(cache.judged(b"hdr.p.signature"), Some(remembered(1)));
        assert_eq!(cache.judged(b"other.p.signature"), Some(remembered(2)));
        // Kept in place of its judged slot, still held without its header, and kept again.
        for value in [3, 4] {
            cache.keep(b"hdr.p.signature", value);
            assert_eq!(cache.kept(b"hdr.p.signature"), Some(value));
            assert!(held(b"hdr.p.signature").contains(&b"p.signature".to_vec()));
            assert_eq!(held(b"hdr.p.signature").len(), 2, "one way per token");
        }
        assert_eq!(cache.judged(b"other.p.signature"), Some(remembered(2)));
        // A token the table does not hold is not kept.
        cache.keep(b"hdrx.p.signature", 5);
        assert_eq!(cache.judged(b"hdrx.p.signature").map(|_| ()), None);
    }

    #[test]
    fn the_comparison_covers_every_byte_of_the_signature() {
        // A 9-byte signature: one whole word and one byte of remainder.
        let known = b"h.p.012345678";
        let at = 4;
        assert!(same_token(known, at, b"h.p.012345678"));
        for other in [
            &b"h.p.012345679"[..], // the remainder
            b"h.p.X12345678",      // the first word
            b"h.p.0123456X8",      // the word's last byte
            b"h.q.012345678",      // the signed part
            b"h.p.01234567",       // shorter
        ] {
            assert!(
                !same_token(known, at, other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
        // Every byte of signatures shorter than a word, a word long, and as long as ours (43).
        for len in [0, 1, 7, 8, 16, 43] {
            let known: Vec<u8> = b"h.p."
                .iter()
                .copied()
                .chain((0..len).map(|i| b'a' + i))
                .collect();
            assert!(same_token(&known, 4, &known));
            for at in 4..known.len() {
                let mut other = known.clone();
                other[at] ^= 1;
                assert!(!same_token(&known, 4, &other), "length {len}, byte {at}");
                // Two bytes differing alike: differences are gathered, never cancelled.
                if at > 4 {
                    other[at - 1] ^= 1;
                    assert!(
                        !same_token(&known, 4, &other),
                        "length {len}, bytes {at} and before"
                    );
                }
            }
        }
    }

    /// A token of `max_len` bytes is read (and refused for what it says); one byte more is
    /// refused unread, as malformed.
    #[test]
    fn tokens_are_read_up_to_max_len() {
        let clock = ManualClock::starting_now();
        let tokens = tokens(&clock, ring());
        let max = TokenConfig::default().max_len;
        assert_eq!(
            tokens.verify_keeping(&vec![b'a'; max], clock.now()).err(),
            Some(AuthError::InvalidToken)
        );
        assert_eq!(
            tokens
                .verify_keeping(&vec![b'a'; max + 1], clock.now())
                .err(),
            Some(AuthError::MalformedCredentials)
        );
    }

    #[test]
    fn tokens_sharing_a_set_are_all_remembered_until_a_fifth_replaces_the_oldest() {
        // The same last eight bytes: the same set (and tag), told apart by the whole token.
        let cache = TokenTable::<VerifiedToken, u8>::new(64, &[]);
        let token = |i: u8| format!("h.p{i}.sig-tail-8").into_bytes();
        for i in 0..4 {
            cache.insert(&token(i), remembered(i));
        }
        // The same token again takes no second way.
        cache.insert(&token(3), remembered(3));
        for i in 0..4 {
            assert_eq!(cache.judged(&token(i)), Some(remembered(i)), "way {i}");
        }
        cache.insert(&token(4), remembered(4));
        assert_eq!(cache.judged(&token(0)), None, "the oldest is replaced");
        for i in 1..5 {
            assert_eq!(cache.judged(&token(i)), Some(remembered(i)), "way {i}");
        }
        // Then the next oldest, not the newest.
        cache.insert(&token(5), remembered(5));
        assert_eq!(cache.judged(&token(1)), None, "the next oldest is replaced");
        for i in 2..6 {
            assert_eq!(cache.judged(&token(i)), Some(remembered(i)), "way {i}");
        }
    }

    #[test]
    fn leeway_edges_hold_on_the_cached_and_the_uncached_path() {
        let clock = ManualClock::starting_now();
        let record = sample_record(&clock, "wx", "alice");
        let issued = tokens(&clock, ring()).issue(&record).unwrap();
        let exp = issued.expires_at;
        let cached = tokens(&clock, ring());
        assert!(cached.verify(&issued.value).is_ok());
        // 29 s past exp: within the 30 s leeway, on both paths.
        clock.set(exp + Duration::from_secs(29));
        assert!(cached.verify(&issued.value).is_ok());
        assert!(tokens(&clock, ring()).verify(&issued.value).is_ok());
        // 30 s past: refused on both paths.
        clock.set(exp + Duration::from_secs(30));
        assert_eq!(cached.verify(&issued.value), Err(AuthError::TokenExpired));
        assert_eq!(
            tokens(&clock, ring()).verify(&issued.value),
            Err(AuthError::TokenExpired)
        );
    }

    /// A record kept beside a token for longer than the token lives (its session ends later and
    /// nothing re-issues the token) is admitted only while the token is: the kept path, which
    /// skips the expiry check, ends where the leeway does. Break to see it fail: `keep` not
    /// capping `until` by the token's validity.
    #[test]
    fn a_kept_record_outlives_no_token() {
        let clock = ManualClock::starting_now();
        let record = Arc::new(sample_record(&clock, "wx", "alice"));
        let tokens = tokens(&clock, ring());
        let issued = tokens.issue(&record).unwrap();
        let token = issued.value.as_bytes();
        let verified = tokens.verify_keeping(token, clock.now()).unwrap().token();
        let expires_at = verified.expires_at;
        let epochs = WriteEpochs::new(Duration::from_secs(10 * 24 * 3600));
        tokens.keep(
            token,
            &verified,
            &record,
            epochs.stamp(&record.sid, clock.now()).unwrap(),
            expires_at + Duration::from_secs(3600),
            &crate::user::offline(),
        );
        let kept = |at| match tokens.verify_keeping(token, at) {
            Ok(Known::Kept(kept)) => {
                assert_eq!(kept.kept().openid, record.openid);
                Ok(())
            }
            Ok(Known::Token(_)) => panic!("the record was not kept"),
            Err(error) => Err(error),
        };
        let leeway_ends = expires_at + TokenConfig::default().leeway;
        assert_eq!(kept(leeway_ends - Duration::from_nanos(1)), Ok(()));
        assert_eq!(kept(leeway_ends), Err(AuthError::TokenExpired));
    }

    #[test]
    fn a_token_issued_in_the_future_is_refused() {
        let clock = ManualClock::starting_now();
        let record = sample_record(&clock, "wx", "alice");
        let future = ManualClock::new(clock.now() + Duration::from_secs(31));
        let token = tokens(&future, ring()).issue(&record).unwrap().value;
        let verifier = tokens(&clock, ring());
        assert_eq!(verifier.verify(&token), Err(AuthError::InvalidToken));
        // Refused for now, not for good (unlike a bad signature, this refusal is not
        // remembered): once the clock catches up, the same string verifies.
        clock.advance(Duration::from_secs(2));
        assert!(verifier.verify(&token).is_ok());
        let near = ManualClock::new(clock.now() + Duration::from_secs(29));
        let token = tokens(&near, ring()).issue(&record).unwrap().value;
        assert!(
            tokens(&clock, ring()).verify(&token).is_ok(),
            "within the leeway"
        );
    }

    #[test]
    fn a_refused_token_is_remembered_apart_and_stays_refused() {
        let clock = ManualClock::starting_now();
        let record = sample_record(&clock, "wx", "alice");
        let tokens = tokens(&clock, ring());
        let good = tokens.issue(&record).unwrap().value;
        let mut forged = good.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        for _ in 0..2 {
            assert_eq!(tokens.verify(&forged), Err(AuthError::InvalidToken));
        }
        assert!(matches!(
            tokens.judged.judged(forged.as_bytes()),
            Some(Judged::Refused { malformed: false })
        ));
        // The refusal is remembered for that string only: the genuine token still verifies,
        // and an expired one is not remembered as refused (it is answered `token_expired`).
        assert!(tokens.verify(&good).is_ok());
        let old = ManualClock::new(clock.now() - Duration::from_secs(40 * 24 * 3600));
        let expired = super::tests::tokens(&old, ring())
            .issue(&record)
            .unwrap()
            .value;
        assert_eq!(tokens.verify(&expired), Err(AuthError::TokenExpired));
        assert!(tokens.judged.judged(expired.as_bytes()).is_none());
        // A string with a space in it was not sent as one token: malformed, the first time
        // and when remembered.
        for _ in 0..2 {
            assert_eq!(
                tokens.verify("not a.token"),
                Err(AuthError::MalformedCredentials)
            );
        }
        assert!(matches!(
            tokens.judged.judged(b"not a.token"),
            Some(Judged::Refused { malformed: true })
        ));
    }

    /// What a set gives up when full: a refusal before a token that verified, and a refusal
    /// never takes the place of one.
    #[test]
    fn a_refusal_never_takes_the_place_of_a_token_that_verified() {
        #[derive(Clone, Debug, PartialEq)]
        enum Test {
            Valid(u8),
            Refused(u8),
        }
        impl Entry for Test {
            fn yields(&self) -> bool {
                matches!(self, Self::Refused(_))
            }
        }
        let cache = TokenTable::<Test, u8>::new(64, &[]);
        // The same last eight bytes: one set.
        let token = |i: u8| format!("h.p{i}.sig-tail-8").into_bytes();
        cache.insert(&token(0), Test::Refused(0));
        for i in 1..4 {
            cache.insert(&token(i), Test::Valid(i));
        }
        // Full: a fifth valid token takes the refusal's way, not a valid one's.
        cache.insert(&token(4), Test::Valid(4));
        assert_eq!(cache.judged(&token(0)), None);
        for i in 1..5 {
            assert_eq!(cache.judged(&token(i)), Some(Test::Valid(i)), "way {i}");
        }
        // Full of valid tokens: a refusal is not remembered, and pushes none out.
        cache.insert(&token(5), Test::Refused(5));
        assert_eq!(cache.judged(&token(5)), None);
        for i in 1..5 {
            assert_eq!(cache.judged(&token(i)), Some(Test::Valid(i)), "way {i}");
        }
        // A refusal too long for its slot is not remembered (whatever is sent, a refusal
        // takes one slot).
        let other = TokenTable::<Test, u8>::new(64, &[]);
        let long = format!("h.{}.sig", "p".repeat(INLINE_TOKEN));
        other.insert(long.as_bytes(), Test::Refused(6));
        assert_eq!(other.judged(long.as_bytes()), None);
        other.insert(long.as_bytes(), Test::Valid(6));
        assert_eq!(other.judged(long.as_bytes()), Some(Test::Valid(6)));
    }

    #[test]
    fn rotation_accepts_previous_keys_and_signs_with_the_current_one() {
        let clock = ManualClock::starting_now();
        let record = sample_record(&clock, "wx", "alice");
        let old = tokens(&clock, ring()).issue(&record).unwrap();
        let rotated = KeyRing::new(SigningKey::hs256("k2", &[9; 32]).unwrap())
            .with_previous(SigningKey::hs256("k1", SECRET).unwrap());
        let tokens = tokens(&clock, rotated);
        assert!(tokens.verify(&old.value).is_ok());
        let new = tokens.issue(&record).unwrap();
        let header = jsonwebtoken::decode_header(&new.value).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k2"));
        // Once k1 is dropped, its tokens fail.
        let dropped = self::tokens(
            &clock,
            KeyRing::new(SigningKey::hs256("k2", &[9; 32]).unwrap()),
        );
        assert_eq!(dropped.verify(&old.value), Err(AuthError::InvalidToken));
    }

    #[test]
    fn forged_and_odd_tokens_are_refused() {
        let clock = ManualClock::starting_now();
        let tokens = tokens(&clock, ring());
        let record = sample_record(&clock, "wx", "alice");
        let good = tokens.issue(&record).unwrap().value;
        // Cached first: a forgery reusing its signature lands in its slot and must still fail.
        assert!(tokens.verify(&good).is_ok());
        let mut parts: Vec<&str> = good.split('.').collect();
        // alg none, with and without a signature.
        let none_header = base64_url(r#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
        parts[0] = &none_header;
        assert_eq!(
            tokens.verify(&format!("{}.{}.", parts[0], parts[1])),
            Err(AuthError::InvalidToken)
        );
        assert_eq!(
            tokens.verify(&parts.join(".")),
            Err(AuthError::InvalidToken)
        );
        // Tampered payload.
        let mut tampered = good.clone().into_bytes();
        let at = good.find('.').unwrap() + 5;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            tokens.verify(std::str::from_utf8(&tampered).unwrap()),
            Err(AuthError::InvalidToken)
        );
        // Wrong audience.
        let other_aud = TokenIssuer::new(
            ring(),
            TokenConfig {
                audience: "someone-else".into(),
                ..TokenConfig::default()
            },
            Arc::new(clock.clone()),
        )
        .unwrap()
        .issue(&record)
        .unwrap()
        .value;
        assert_eq!(tokens.verify(&other_aud), Err(AuthError::InvalidToken));
        // HS384 with the same secret (algorithm confusion within the family).
        let mut header = Header::new(Algorithm::HS384);
        header.kid = Some("k1".into());
        let claims = jsonwebtoken::decode::<Claims>(&good, &DecodingKey::from_secret(SECRET), &{
            let mut v = Validation::new(Algorithm::HS256);
            v.set_audience(&["wechat-login"]);
            v
        })
        .unwrap()
        .claims;
        let hs384 =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(SECRET)).unwrap();
        assert_eq!(tokens.verify(&hs384), Err(AuthError::InvalidToken));
        // Garbage and oversize.
        for junk in ["", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9"] {
            assert_eq!(tokens.verify(junk), Err(AuthError::InvalidToken), "{junk}");
        }
        assert_eq!(
            tokens.verify("not a token"),
            Err(AuthError::MalformedCredentials)
        );
        assert_eq!(
            tokens.verify(&"a".repeat(5000)),
            Err(AuthError::MalformedCredentials)
        );
    }

    fn base64_url(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }
}
