//! The keys session tokens are signed with: [`SigningKey`] (HS256, EdDSA or RS256, one
//! algorithm each) and the [`KeyRing`] that signs with the current one and verifies with the
//! previous ones, by `kid`.

use std::fmt;

use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use sha2::Sha256;

pub(super) type HmacSha256 = Hmac<Sha256>;

/// The shortest HS256 secret accepted, in bytes.
pub const MIN_HS256_SECRET: usize = 32;

/// Why a key could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningKeyError {
    /// An HS256 secret shorter than [`MIN_HS256_SECRET`] bytes.
    #[error("an HS256 secret must be at least {MIN_HS256_SECRET} bytes")]
    SecretTooShort,
    /// A PEM key could not be parsed.
    #[error("the key could not be parsed: {0}")]
    InvalidKey(String),
    /// A key id is empty or used twice in one ring.
    #[error("key ids must be non-empty and unique")]
    BadKeyId,
}

/// One signing key with its id and algorithm.
#[derive(Clone)]
pub struct SigningKey {
    pub(super) kid: String,
    pub(super) algorithm: Algorithm,
    pub(super) encoding: EncodingKey,
    pub(super) decoding: DecodingKey,
    /// HS256 only: the MAC keyed once, cloned per verification.
    pub(super) hmac: Option<HmacSha256>,
    /// A key derived from the secret material, for the other secrets of the login flow
    /// ([`KeyRing::derive`]).
    pub(super) derived: [u8; 32],
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// An HMAC-SHA256 key (the default). Refuses secrets shorter than 32 bytes.
    pub fn hs256(kid: impl Into<String>, secret: &[u8]) -> Result<Self, SigningKeyError> {
        if secret.len() < MIN_HS256_SECRET {
            return Err(SigningKeyError::SecretTooShort);
        }
        let mut key = Self::new(
            kid,
            Algorithm::HS256,
            EncodingKey::from_secret(secret),
            DecodingKey::from_secret(secret),
            secret,
        )?;
        key.hmac = Some(
            <HmacSha256 as Mac>::new_from_slice(secret)
                .map_err(|_| SigningKeyError::SecretTooShort)?,
        );
        Ok(key)
    }

    /// An Ed25519 (EdDSA) key pair from PEM.
    pub fn ed25519_pem(
        kid: impl Into<String>,
        private_pem: &[u8],
        public_pem: &[u8],
    ) -> Result<Self, SigningKeyError> {
        let (encoding, decoding) = pem_pair(
            EncodingKey::from_ed_pem(private_pem),
            DecodingKey::from_ed_pem(public_pem),
        )?;
        Self::new(kid, Algorithm::EdDSA, encoding, decoding, private_pem)
    }

    /// An RSA (RS256) key pair from PEM.
    pub fn rs256_pem(
        kid: impl Into<String>,
        private_pem: &[u8],
        public_pem: &[u8],
    ) -> Result<Self, SigningKeyError> {
        let (encoding, decoding) = pem_pair(
            EncodingKey::from_rsa_pem(private_pem),
            DecodingKey::from_rsa_pem(public_pem),
        )?;
        Self::new(kid, Algorithm::RS256, encoding, decoding, private_pem)
    }

    fn new(
        kid: impl Into<String>,
        algorithm: Algorithm,
        encoding: EncodingKey,
        decoding: DecodingKey,
        secret_material: &[u8],
    ) -> Result<Self, SigningKeyError> {
        let kid = kid.into();
        if kid.is_empty() {
            return Err(SigningKeyError::BadKeyId);
        }
        let mut mac = <HmacSha256 as Mac>::new_from_slice(secret_material)
            .map_err(|_| SigningKeyError::SecretTooShort)?;
        mac.update(b"tower-wechat derived keys v1");
        Ok(Self {
            kid,
            algorithm,
            encoding,
            decoding,
            hmac: None,
            derived: mac.finalize().into_bytes().into(),
        })
    }

    /// The key id (`kid`).
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// Both halves of a PEM key pair, or why one could not be parsed.
fn pem_pair(
    encoding: jsonwebtoken::errors::Result<EncodingKey>,
    decoding: jsonwebtoken::errors::Result<DecodingKey>,
) -> Result<(EncodingKey, DecodingKey), SigningKeyError> {
    let bad = |e: jsonwebtoken::errors::Error| SigningKeyError::InvalidKey(e.to_string());
    Ok((encoding.map_err(bad)?, decoding.map_err(bad)?))
}

/// The keys: the current one signs, previous ones still verify (for rotation).
#[derive(Clone, Debug)]
pub struct KeyRing {
    pub(super) current: SigningKey,
    pub(super) previous: Vec<SigningKey>,
}

impl From<SigningKey> for KeyRing {
    fn from(key: SigningKey) -> Self {
        Self::new(key)
    }
}

impl KeyRing {
    /// A ring with one key (a [`SigningKey`] converts into one: `builder(client, key)`).
    pub fn new(current: SigningKey) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Also accept tokens signed by `key` (a key being rotated out).
    pub fn with_previous(mut self, key: SigningKey) -> Self {
        self.previous.push(key);
        self
    }

    /// A 256-bit key for `purpose`, derived from the current signing key's secret material:
    /// the other secrets of the login flow (the OAuth state's MAC, the hash of login codes)
    /// come from the one secret every instance already shares. Changes when the current key
    /// does (a login in progress across a key rotation starts again).
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.current.derived)
            .expect("HMAC takes keys of any length");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}
