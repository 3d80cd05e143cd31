//! Sealing at rest: a record's payload is encrypted and authenticated with AES-256-GCM
//! (aws-lc-rs) under a [`SealingKey`] named by a key id, so keys can rotate: the current key
//! seals, older keys still open. The session id and the app are bound as associated data, so a
//! sealed value copied into another record, or relabelled with another app, does not open.
//!
//! Layout of a sealed value: `[format: 1][kid length: 1][kid][appid length: 1][appid][nonce: 12]
//! [ciphertext + tag: 16]`. The nonce is random (96 bits): safe for well over 2^32 writes per key,
//! far beyond a refresh every two hours per session; rotate keys yearly anyway.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

/// The format byte of sealed values written by this version.
const FORMAT: u8 = 1;
/// What the associated data starts with, so a value sealed for another purpose never opens here.
const DOMAIN: &[u8] = b"wechat-redis-store record";

/// A 256-bit key with its id. Its `Debug` shows the id only.
#[derive(Clone)]
pub struct SealingKey {
    kid: String,
    key: [u8; 32],
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("kid", &self.kid)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// A key that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealingKeyError {
    /// The key id is empty or longer than 64 bytes.
    #[error("a key id is 1 to 64 bytes")]
    BadKeyId,
    /// The key is not 32 bytes (given as 64 hex digits or base64 of 32 bytes).
    #[error("a sealing key is 32 bytes: 64 hex digits, or base64")]
    BadKey,
    /// An item of a key list is not `id:key`.
    #[error("a key list is id:key,id:key")]
    BadList,
    /// A key list names one key id twice.
    #[error("a key id appears twice in a key list")]
    DuplicateKeyId,
}

impl SealingKey {
    /// A key from its 32 bytes.
    pub fn new(kid: impl Into<String>, key: [u8; 32]) -> Result<Self, SealingKeyError> {
        let kid = kid.into();
        if kid.is_empty() || kid.len() > 64 {
            return Err(SealingKeyError::BadKeyId);
        }
        Ok(Self { kid, key })
    }

    /// A key from text: 64 hex digits, or standard or URL-safe base64 (padded or not) of 32
    /// bytes — what `openssl rand -hex 32` or `openssl rand -base64 32` print.
    pub fn parse(kid: impl Into<String>, text: &str) -> Result<Self, SealingKeyError> {
        Self::new(kid, decode_key(text.trim()).ok_or(SealingKeyError::BadKey)?)
    }

    /// Keys from a list `id:key,id:key` (the form of the example server's
    /// `STORE_PREVIOUS_KEYS`): whitespace around items is ignored, and so is an empty list or a
    /// trailing comma; an item without `:`, a bad key or id, or an id given twice is refused.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, SealingKeyError> {
        let mut keys: Vec<Self> = Vec::new();
        for item in text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let (kid, key) = item.split_once(':').ok_or(SealingKeyError::BadList)?;
            let key = Self::parse(kid.trim(), key)?;
            if keys.iter().any(|k| k.kid == key.kid) {
                return Err(SealingKeyError::DuplicateKeyId);
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut key = [0u8; 32];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
            key[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        return Some(key);
    }
    let bytes = base64(text)?;
    bytes.try_into().ok()
}

/// Standard or URL-safe base64, padding optional.
fn base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::alphabet::{STANDARD, URL_SAFE};
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    [STANDARD, URL_SAFE]
        .iter()
        .find_map(|alphabet| GeneralPurpose::new(alphabet, config).decode(text).ok())
}

/// Why a sealed value did not open. Never says more than the key id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("sealed with key id {0:?}, which is not configured")]
    UnknownKey(String),
    #[error(
        "sealed value failed authentication (tampered, or moved from another record or app) under key id {0:?}"
    )]
    Tampered(String),
    #[error("not a sealed value of a known format")]
    Malformed,
}

/// The configured keys: the first seals, all open.
pub(crate) struct Sealer {
    keys: Vec<(String, LessSafeKey)>,
    random: SystemRandom,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("Sealer").field("kids", &kids).finish()
    }
}

impl Sealer {
    pub(crate) fn new(current: &SealingKey, previous: &[SealingKey]) -> Self {
        let keys = std::iter::once(current)
            .chain(previous)
            .map(|k| {
                let unbound =
                    UnboundKey::new(&AES_256_GCM, &k.key).expect("AES-256-GCM takes a 32-byte key");
                (k.kid.clone(), LessSafeKey::new(unbound))
            })
            .collect();
        Self {
            keys,
            random: SystemRandom::new(),
        }
    }

    pub(crate) fn current_kid(&self) -> &str {
        &self.keys[0].0
    }

    /// Seals `plaintext` of session `sid` of app `appid`.
    pub(crate) fn seal(&self, appid: &str, sid: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let (kid, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .expect("the system random generator works");
        let mut out =
            Vec::with_capacity(3 + kid.len() + appid.len() + NONCE_LEN + plaintext.len() + 16);
        out.push(FORMAT);
        push_short(&mut out, kid.as_bytes());
        push_short(&mut out, appid.as_bytes());
        out.extend_from_slice(&nonce);
        let header_len = out.len();
        let aad = associated_data(&out[..header_len], sid);
        let mut body = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&aad),
            &mut body,
        )
        .expect("sealing a short record cannot fail");
        out.extend_from_slice(&body);
        out
    }

    /// Opens a sealed value of session `sid`: its app and plaintext.
    pub(crate) fn open(&self, sid: &[u8], sealed: &[u8]) -> Result<(String, Vec<u8>), OpenError> {
        let mut reader = sealed;
        if take(&mut reader, 1) != Some(&[FORMAT][..]) {
            return Err(OpenError::Malformed);
        }
        let kid = take_short(&mut reader).ok_or(OpenError::Malformed)?;
        let appid = take_short(&mut reader).ok_or(OpenError::Malformed)?;
        let nonce: [u8; NONCE_LEN] = take(&mut reader, NONCE_LEN)
            .and_then(|n| n.try_into().ok())
            .ok_or(OpenError::Malformed)?;
        let kid = String::from_utf8_lossy(kid).into_owned();
        let appid = std::str::from_utf8(appid)
            .map_err(|_| OpenError::Malformed)?
            .to_owned();
        let header_len = sealed.len() - reader.len();
        let aad = associated_data(&sealed[..header_len], sid);
        // Every key with this id is tried: a rotation that kept the id must not lock anyone out.
        let mut candidates = self.keys.iter().filter(|(k, _)| *k == kid).peekable();
        if candidates.peek().is_none() {
            return Err(OpenError::UnknownKey(kid));
        }
        for (_, key) in candidates {
            let mut body = reader.to_vec();
            let nonce = Nonce::assume_unique_for_key(nonce);
            if let Ok(plaintext) = key.open_in_place(nonce, Aad::from(&aad), &mut body) {
                let len = plaintext.len();
                body.truncate(len);
                return Ok((appid, body));
            }
        }
        Err(OpenError::Tampered(kid))
    }
}

/// The associated data: a domain label, the value's header (format, key id, app) and the
/// session id it belongs to.
fn associated_data(header: &[u8], sid: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DOMAIN.len() + header.len() + sid.len());
    aad.extend_from_slice(DOMAIN);
    aad.extend_from_slice(header);
    aad.extend_from_slice(sid);
    aad
}

fn push_short(out: &mut Vec<u8>, bytes: &[u8]) {
    // Key ids are at most 64 bytes and app ids far shorter than 255 (checked by callers).
    out.push(bytes.len().min(255) as u8);
    out.extend_from_slice(&bytes[..bytes.len().min(255)]);
}

fn take<'a>(reader: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if reader.len() < n {
        return None;
    }
    let (head, rest) = reader.split_at(n);
    *reader = rest;
    Some(head)
}

fn take_short<'a>(reader: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = *take(reader, 1)?.first()? as usize;
    take(reader, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, byte: u8) -> SealingKey {
        SealingKey::new(kid, [byte; 32]).unwrap()
    }

    #[test]
    fn seals_opens_and_refuses_what_it_should() {
        let sealer = Sealer::new(&key("k1", 1), &[]);
        let sealed = sealer.seal("wxapp", b"sid-1", b"secret payload");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            sealer.open(b"sid-1", &sealed),
            Ok(("wxapp".to_owned(), b"secret payload".to_vec()))
        );
        // Moved to another session: refused.
        assert!(matches!(sealer.open(b"sid-2", &sealed), Err(OpenError::Tampered(k)) if k == "k1"));
        // Relabelled with another app: refused.
        let mut relabelled = sealed.clone();
        let at = relabelled.windows(5).position(|w| w == b"wxapp").unwrap();
        relabelled[at..at + 5].copy_from_slice(b"wxevl");
        assert!(matches!(
            sealer.open(b"sid-1", &relabelled),
            Err(OpenError::Tampered(_))
        ));
        // A flipped ciphertext bit: refused.
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(
            sealer.open(b"sid-1", &flipped),
            Err(OpenError::Tampered(_))
        ));
        for junk in [&b""[..], b"\x02abc", b"\x01"] {
            assert_eq!(sealer.open(b"sid-1", junk), Err(OpenError::Malformed));
        }
    }

    #[test]
    fn keys_rotate() {
        let old = Sealer::new(&key("k1", 1), &[]);
        let sealed = old.seal("wxapp", b"sid", b"payload");
        let rotated = Sealer::new(&key("k2", 2), &[key("k1", 1)]);
        assert_eq!(rotated.open(b"sid", &sealed).unwrap().1, b"payload");
        assert_eq!(rotated.current_kid(), "k2");
        let resealed = rotated.seal("wxapp", b"sid", b"payload");
        let dropped = Sealer::new(&key("k2", 2), &[]);
        assert!(dropped.open(b"sid", &resealed).is_ok());
        assert_eq!(
            dropped.open(b"sid", &sealed),
            Err(OpenError::UnknownKey("k1".into()))
        );
        // A new key that kept the old id: both are tried.
        let same_id = Sealer::new(&key("k1", 3), &[key("k1", 1)]);
        assert_eq!(same_id.open(b"sid", &sealed).unwrap().1, b"payload");
    }

    #[test]
    fn keys_parse_from_hex_and_base64() {
        let hex = "00".repeat(31) + "ff";
        let mut expected = [0u8; 32];
        expected[31] = 0xff;
        assert_eq!(SealingKey::parse("k", &hex).unwrap().key, expected);
        let b64 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAP8=";
        assert_eq!(SealingKey::parse("k", b64).unwrap().key, expected);
        assert_eq!(
            SealingKey::parse("k", "short").unwrap_err(),
            SealingKeyError::BadKey
        );
        assert_eq!(
            SealingKey::parse("", &hex).unwrap_err(),
            SealingKeyError::BadKeyId
        );
        let shown = format!("{:?}", SealingKey::parse("k", &hex).unwrap());
        assert!(!shown.contains("255") && !shown.contains("ff"), "{shown}");
    }

    /// Break to see it fail: `decode_key` taking 64 characters that are not all hex digits as
    /// hex (or trying base64 on them).
    #[test]
    fn a_key_of_64_characters_must_be_all_hex() {
        let almost = "00".repeat(31) + "fg";
        assert_eq!(almost.len(), 64);
        assert_eq!(
            SealingKey::parse("k", &almost).unwrap_err(),
            SealingKeyError::BadKey
        );
        // 43 hex digits are no hex key, but they are base64 of 32 bytes.
        let base64_of_digits = "0".repeat(43);
        assert!(SealingKey::parse("k", &base64_of_digits).is_ok());
    }

    /// Break to see it fail: `parse_list` not trimming, keeping empty items, or accepting an id
    /// twice (the second key of an id would never be tried).
    #[test]
    fn key_lists_parse() {
        let hex = "00".repeat(31) + "ff";
        let b64 = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAP8=";
        let kids = |text: &str| {
            SealingKey::parse_list(text)
                .unwrap()
                .iter()
                .map(|k| k.kid().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(kids(&format!("k0:{hex},k1:{b64}")), ["k0", "k1"]);
        assert_eq!(kids(&format!(" k0 : {hex} ,\n k1:{b64}, ")), ["k0", "k1"]);
        assert!(kids("").is_empty());
        assert!(kids(" , ").is_empty());
        assert_eq!(
            SealingKey::parse_list(&hex).unwrap_err(),
            SealingKeyError::BadList
        );
        assert_eq!(
            SealingKey::parse_list(&format!("k0:{hex},k0:{b64}")).unwrap_err(),
            SealingKeyError::DuplicateKeyId
        );
        assert_eq!(
            SealingKey::parse_list("k0:short").unwrap_err(),
            SealingKeyError::BadKey
        );
        assert_eq!(
            SealingKey::parse_list(&format!(":{hex}")).unwrap_err(),
            SealingKeyError::BadKeyId
        );
        // A refused list never shows a key.
        let error = SealingKey::parse_list(&format!("k0:{hex}x")).unwrap_err();
        assert!(!error.to_string().contains(&hex));
    }
}
