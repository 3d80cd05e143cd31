//! The OAuth `state` for browser flows, verifiable without a cookie.
//!
//! WeChat's in-app browser loses cookies between the redirect and the callback, so the state
//! proves itself: `{unix time: 10 digits}{nonce: 16 hex}{flow: w | o}{HMAC-SHA256 truncated to
//! 128 bits: 32 hex}` — 59 characters of `[A-Za-z0-9]`, within WeChat's 128, valid for 10
//! minutes. The flow says which app the callback belongs to (website, Official Account).
//!
//! The MAC also covers a *binding*: a random value the website flow keeps in an HttpOnly cookie
//! of the browser that started the login (never in the URL), so a state verifies only in that
//! browser — no login CSRF, no replay of a leaked callback URL. The Official Account flow, whose
//! in-app browser drops cookies, uses an empty binding. And it covers the page to return to,
//! which travels in the callback URL's query: it cannot be changed on the way.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use wechat_oauth::State;
use wechat_sessions::SharedClock;

use crate::apps::AppKind;
use wechat_oauth::clock::unix_secs;

type HmacSha256 = Hmac<Sha256>;

/// How long a state is accepted.
pub(crate) const STATE_TTL: Duration = Duration::from_secs(600);
/// Tolerated clock skew between instances for a state's timestamp.
const SKEW: u64 = 60;
/// The length of a state: payload (10 + 16 + 1) and MAC (32).
const STATE_LEN: usize = 59;
const PAYLOAD_LEN: usize = 27;

/// Why a callback's state was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Not a state we issued (wrong shape or MAC).
    #[error("invalid state")]
    Invalid,
    /// Older than ten minutes.
    #[error("the login took too long; start again")]
    Expired,
    /// Already used by a callback with another code.
    #[error("this login link was already used; start again")]
    Used,
}

/// Issues and verifies states. Several instances verifying each other's states need the same
/// secret.
#[derive(Clone)]
pub struct StateSigner {
    key: [u8; 32],
    clock: SharedClock,
}

impl fmt::Debug for StateSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSigner").finish_non_exhaustive()
    }
}

impl StateSigner {
    /// A signer whose key is derived from `secret` (e.g. the session signing secret).
    pub fn from_secret(secret: &[u8], clock: SharedClock) -> Self {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes any key");
        mac.update(b"tower-wechat oauth state v1");
        Self {
            key: mac.finalize().into_bytes().into(),
            clock,
        }
    }

    /// A signer with a random key: states verify only in this process.
    pub fn random(clock: SharedClock) -> Self {
        Self {
            key: rand::random(),
            clock,
        }
    }

    fn now(&self) -> u64 {
        unix_secs(self.clock.now())
    }

    fn mac(&self, payload: &str, binding: &str, return_to: &str) -> String {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key).expect("HMAC takes any key");
        for part in [payload, binding, return_to] {
            // Length-prefixed, so no two different triples feed the MAC the same bytes.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        hex(&mac.finalize().into_bytes()[..16])
    }

    /// A fresh random binding value, for the cookie of the browser starting a login.
    pub fn new_binding() -> String {
        hex(&rand::random::<[u8; 16]>())
    }

    /// A new state for the browser flow of `kind` (website or Official Account), bound to
    /// `binding` (empty: unbound) and to the page to return to (empty: the default).
    pub fn issue(&self, kind: AppKind, binding: &str, return_to: &str) -> State {
        let nonce: [u8; 8] = rand::random();
        let flow = if kind == AppKind::OfficialAccount {
            'o'
        } else {
            'w'
        };
        let payload = format!("{:010}{}{flow}", self.now(), hex(&nonce));
        let state = format!("{payload}{}", self.mac(&payload, binding, return_to));
        State::new(state).expect("10 digits, 16 hex, a letter and 32 hex is a valid state")
    }

    /// The flow a state claims, read without checking it (to pick the binding to check it
    /// with): [`verify`](Self::verify) then checks the claim, which the MAC covers.
    pub(crate) fn claimed_flow(state: &str) -> AppKind {
        match state.as_bytes().get(PAYLOAD_LEN - 1) {
            Some(b'o') => AppKind::OfficialAccount,
            _ => AppKind::Website,
        }
    }

    /// Checks a state from a callback, with the binding and the page to return to it was
    /// issued with; returns its flow ([`AppKind::Website`] or [`AppKind::OfficialAccount`]).
    pub fn verify(
        &self,
        state: &str,
        binding: &str,
        return_to: &str,
    ) -> Result<AppKind, StateError> {
        if state.len() != STATE_LEN || !state.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(StateError::Invalid);
        }
        let (payload, mac) = state.split_at(PAYLOAD_LEN);
        let expected = self.mac(payload, binding, return_to);
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return Err(StateError::Invalid);
        }
        let kind = match payload.as_bytes()[PAYLOAD_LEN - 1] {
            b'o' => AppKind::OfficialAccount,
            b'w' => AppKind::Website,
            _ => return Err(StateError::Invalid),
        };
        let issued: u64 = payload[..10].parse().map_err(|_| StateError::Invalid)?;
        let now = self.now();
        if issued > now + SKEW {
            return Err(StateError::Invalid);
        }
        if now.saturating_sub(issued) > STATE_TTL.as_secs() {
            return Err(StateError::Expired);
        }
        Ok(kind)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use wechat_sessions::ManualClock;

    #[test]
    fn states_verify_expire_and_resist_tampering() {
        use AppKind::{OfficialAccount, Website};
        let clock = ManualClock::starting_now();
        let signer = StateSigner::from_secret(b"secret", Arc::new(clock.clone()));
        let binding = StateSigner::new_binding();
        let state = signer.issue(Website, &binding, "");
        assert_eq!(state.as_str().len(), STATE_LEN);
        assert_eq!(signer.verify(state.as_str(), &binding, ""), Ok(Website));
        // Only with its binding: not in another browser, not unbound.
        let other = StateSigner::new_binding();
        assert_eq!(
            signer.verify(state.as_str(), &other, ""),
            Err(StateError::Invalid)
        );
        assert_eq!(
            signer.verify(state.as_str(), "", ""),
            Err(StateError::Invalid)
        );
        let unbound = signer.issue(OfficialAccount, "", "/orders/7");
        assert_eq!(
            signer.verify(unbound.as_str(), "", "/orders/7"),
            Ok(OfficialAccount)
        );
        // The page to return to cannot be changed, nor the flow.
        assert_eq!(
            signer.verify(unbound.as_str(), "", "/admin"),
            Err(StateError::Invalid)
        );
        assert_eq!(
            signer.verify(unbound.as_str(), "", ""),
            Err(StateError::Invalid)
        );
        let mut other_flow = unbound.as_str().to_owned();
        other_flow.replace_range(PAYLOAD_LEN - 1..PAYLOAD_LEN, "w");
        assert_eq!(
            signer.verify(&other_flow, "", "/orders/7"),
            Err(StateError::Invalid)
        );
        // Another instance with the same secret accepts it; another secret does not.
        let twin = StateSigner::from_secret(b"secret", Arc::new(clock.clone()));
        assert_eq!(twin.verify(state.as_str(), &binding, ""), Ok(Website));
        let stranger = StateSigner::from_secret(b"other", Arc::new(clock.clone()));
        assert_eq!(
            stranger.verify(state.as_str(), &binding, ""),
            Err(StateError::Invalid)
        );
        // Tampered timestamp.
        let mut forged = state.as_str().to_owned();
        forged.replace_range(0..1, if &forged[0..1] == "1" { "2" } else { "1" });
        assert_eq!(
            signer.verify(&forged, &binding, ""),
            Err(StateError::Invalid)
        );
        for junk in ["", "abc", &"a".repeat(STATE_LEN), &"é".repeat(29)] {
            assert_eq!(signer.verify(junk, &binding, ""), Err(StateError::Invalid));
        }
        clock.advance(STATE_TTL + Duration::from_secs(1));
        assert_eq!(
            signer.verify(state.as_str(), &binding, ""),
            Err(StateError::Expired)
        );
    }
}
