//! EdDSA and RS256 session tokens (test-only keys in tests/keys/), and what crosses algorithms.

use std::sync::Arc;

use tower_wechat::{AuthError, KeyRing, SigningKey, TokenConfig, TokenIssuer};
use wechat_sessions::{ManualClock, conformance::sample_record};

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn tokens(clock: &ManualClock, keys: KeyRing) -> TokenIssuer {
    TokenIssuer::new(keys, TokenConfig::default(), Arc::new(clock.clone())).unwrap()
}

#[test]
fn eddsa_and_rs256_issue_and_verify() {
    let clock = ManualClock::starting_now();
    let record = sample_record(&clock, "wx", "alice");
    for (key, alg) in [
        (
            SigningKey::ed25519_pem("ed", &pem("ed25519.pem"), &pem("ed25519.pub.pem")).unwrap(),
            "EdDSA",
        ),
        (
            SigningKey::rs256_pem("rs", &pem("rsa.pem"), &pem("rsa.pub.pem")).unwrap(),
            "RS256",
        ),
    ] {
        let kid = key.kid().to_owned();
        let tokens = tokens(&clock, KeyRing::new(key));
        let issued = tokens.issue(&record).unwrap();
        let header = issued.value.split('.').next().unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, header)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], alg, "{kid}");
        assert_eq!(header["kid"], kid.as_str());
        assert_eq!(
            tokens.verify(&issued.value).unwrap().sid,
            record.sid,
            "{kid}"
        );
    }
}

#[test]
fn a_token_of_one_key_does_not_verify_under_another_algorithm_with_the_same_kid() {
    let clock = ManualClock::starting_now();
    let record = sample_record(&clock, "wx", "alice");
    let rsa = tokens(
        &clock,
        KeyRing::new(SigningKey::rs256_pem("k", &pem("rsa.pem"), &pem("rsa.pub.pem")).unwrap()),
    );
    let hmac = tokens(
        &clock,
        KeyRing::new(SigningKey::hs256("k", &[1; 32]).unwrap()),
    );
    let rsa_token = rsa.issue(&record).unwrap().value;
    let hmac_token = hmac.issue(&record).unwrap().value;
    assert_eq!(hmac.verify(&rsa_token), Err(AuthError::InvalidToken));
    assert_eq!(rsa.verify(&hmac_token), Err(AuthError::InvalidToken));
}

/// The classic attack: an HS256 token whose HMAC key is the server's *public* key (which an
/// attacker can know), with the RS256 or EdDSA key's `kid`. It must not verify.
#[test]
fn an_hs256_token_signed_with_the_public_key_does_not_verify() {
    let clock = ManualClock::starting_now();
    let record = sample_record(&clock, "wx", "alice");
    for (key, public) in [
        (
            SigningKey::rs256_pem("k", &pem("rsa.pem"), &pem("rsa.pub.pem")).unwrap(),
            pem("rsa.pub.pem"),
        ),
        (
            SigningKey::ed25519_pem("k", &pem("ed25519.pem"), &pem("ed25519.pub.pem")).unwrap(),
            pem("ed25519.pub.pem"),
        ),
    ] {
        let server = tokens(&clock, KeyRing::new(key));
        let forger = tokens(
            &clock,
            KeyRing::new(SigningKey::hs256("k", &public).unwrap()),
        );
        let forged = forger.issue(&record).unwrap().value;
        assert_eq!(server.verify(&forged), Err(AuthError::InvalidToken));
        // The genuine token still verifies.
        assert!(server.verify(&server.issue(&record).unwrap().value).is_ok());
    }
}

#[test]
fn bad_pem_is_a_key_error() {
    assert!(SigningKey::ed25519_pem("k", b"not a pem", b"nope").is_err());
    assert!(SigningKey::rs256_pem("k", &pem("ed25519.pem"), &pem("ed25519.pub.pem")).is_err());
    assert!(SigningKey::hs256("", &[1; 32]).is_err());
}
