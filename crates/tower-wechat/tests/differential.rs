//! The hand-written HS256 verifier against jsonwebtoken, on tens of thousands of generated and
//! mutated tokens: valid, expired (and within the leeway), wrong key, other and `none`
//! algorithms, reordered, duplicated and extra header fields, non-canonical base64, truncated
//! and extended signatures, every kind of bad claim, and random byte flips.
//!
//! The reference is jsonwebtoken (HS256 only, issuer, audience, `exp` with the same leeway,
//! `exp`/`iss`/`aud`/`sub` required, decoding into the same `Claims`), plus the fast path's
//! documented rules: the header must be byte for byte the one we issue (a reordered but
//! validly signed header is refused, which only narrows what is accepted), `iat` must not be in
//! the future beyond the leeway, and `sid` must be a session id. Both must accept exactly the
//! same tokens, with the same session and expiry.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sha2::Sha256;
use tower_wechat::{Claims, KeyRing, SigningKey, TokenConfig, TokenIssuer};
use wechat_sessions::{SessionId, SystemClock};

const SECRET: &[u8] = b"differential-secret-0123456789abcdef";
const OTHER: &[u8] = b"another-secret-0123456789abcdef-xyz";
const LEEWAY: u64 = 30;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(secret: &[u8], header: &str, payload: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    b64(&mac.finalize().into_bytes())
}

/// A token with this header segment (base64url text) and claims, signed with `secret`.
fn token(secret: &[u8], header: &str, claims: &Value) -> String {
    let payload = b64(claims.to_string().as_bytes());
    let signature = sign(secret, header, &payload);
    format!("{header}.{payload}.{signature}")
}

fn claims(sid: &SessionId, exp: i128, iat: i128) -> Value {
    json!({
        "sid": sid.to_string(), "sub": "o_diff", "iss": "wechat-login", "aud": "wechat-login",
        "iat": iat, "exp": exp,
    })
}

/// What the reference accepts: `(sid, exp)`.
fn reference(token: &str, our_header: &str) -> Option<(String, u64)> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.algorithms = vec![Algorithm::HS256];
    validation.leeway = LEEWAY;
    validation.set_issuer(&["wechat-login"]);
    validation.set_audience(&["wechat-login"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let decoded =
        jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(SECRET), &validation)
            .ok()?;
    // The fast path's own rules.
    if token.split('.').next() != Some(our_header) {
        return None;
    }
    if decoded.claims.iat > now() + LEEWAY {
        return None;
    }
    decoded.claims.sid.parse::<SessionId>().ok()?;
    UNIX_EPOCH.checked_add(std::time::Duration::from_secs(decoded.claims.exp))?;
    Some((decoded.claims.sid, decoded.claims.exp))
}

fn ours(issuer: &TokenIssuer, token: &str) -> Option<(String, u64)> {
    let verified = issuer.verify_at(token, SystemTime::now()).ok()?;
    let exp = verified
        .expires_at
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    Some((verified.sid.to_string(), exp))
}

/// A few random edits of a token's text: flips, cuts, insertions, swapped segments.
fn mutate(rng: &mut StdRng, token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    for _ in 0..rng.random_range(1..=3) {
        match rng.random_range(0..6) {
            0 if !bytes.is_empty() => {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = b"AZaz09-_.=+/ \x00\xff"[rng.random_range(0..15)];
            }
            1 if !bytes.is_empty() => {
                let at = rng.random_range(0..bytes.len());
                bytes.truncate(at);
            }
            2 => {
                let at = rng.random_range(0..=bytes.len());
                bytes.insert(at, b"AZaz09-_.="[rng.random_range(0..10)]);
            }
            3 => bytes.extend_from_slice(b"A"),
            4 => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let mut parts: Vec<&str> = text.split('.').collect();
                if parts.len() >= 2 {
                    let (a, b) = (
                        rng.random_range(0..parts.len()),
                        rng.random_range(0..parts.len()),
                    );
                    parts.swap(a, b);
                }
                bytes = parts.join(".").into_bytes();
            }
            _ => bytes.extend_from_slice(b".x"),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn the_fast_verifier_accepts_exactly_what_jsonwebtoken_accepts() {
    let issuer = TokenIssuer::new(
        KeyRing::new(SigningKey::hs256("k1", SECRET).unwrap()),
        TokenConfig::default(),
        Arc::new(SystemClock),
    )
    .unwrap();
    // The header segment exactly as we issue it.
    let record = wechat_sessions::conformance::sample_record(&SystemClock, "wxdiff", "o_diff");
    let real = issuer.issue(&record).unwrap().value;
    let header_segment = real.split('.').next().unwrap().to_owned();
    let ours_header = header_segment.as_str();
    let sid = SessionId::random();
    let t = now() as i128;
    let issued = token(SECRET, ours_header, &claims(&sid, t + 3600, t));
    assert!(
        ours(&issuer, &issued).is_some(),
        "the test's header is the one we issue"
    );

    let mut cases: Vec<String> = Vec::new();
    // Claims, all validly signed with our header.
    let valid = claims(&sid, t + 3600, t);
    let mut variants = vec![
        valid.clone(),
        claims(&sid, t - 3600, t - 7200),                  // expired
        claims(&sid, t - 10, t - 7200),                    // expired, within the leeway
        claims(&sid, t - (LEEWAY as i128) - 10, t - 7200), // just beyond the leeway
        claims(&sid, t + 3600, t + 3600),                  // issued in the future
        claims(&sid, t + 3600, t + 10), // slightly in the future, within the leeway
        claims(&sid, -5, t),
        claims(&sid, u64::MAX as i128, t),
        claims(&sid, t + 3600, -1),
    ];
    for (field, value) in [
        ("iss", json!("someone-else")),
        ("aud", json!("someone-else")),
        ("aud", json!(["wechat-login"])),
        ("sid", json!("not-a-session-id")),
        ("sid", json!(12)),
        ("sub", json!(null)),
        ("exp", json!((t + 3600).to_string())),
        ("exp", json!((t + 3600) as f64)),
        ("exp", json!(1e300)),
        ("iat", json!("now")),
        ("uid", json!("u_union")),
        ("uid", json!(7)),
        ("nbf", json!(t + 3600)),
        ("extra", json!({"nested": [1, 2, 3]})),
    ] {
        let mut c = valid.clone();
        c[field] = value;
        variants.push(c);
    }
    for field in ["sid", "sub", "iss", "aud", "iat", "exp"] {
        let mut c = valid.clone();
        c.as_object_mut().unwrap().remove(field);
        variants.push(c);
    }
    for c in &variants {
        cases.push(token(SECRET, ours_header, c));
        cases.push(token(OTHER, ours_header, c));
    }
    // Raw payloads: duplicate keys, not an object, not JSON.
    let h = &header_segment;
    for raw in [
        format!(
            r#"{{"sid":"{sid}","sid":"{sid}","sub":"o","iss":"wechat-login","aud":"wechat-login","iat":{t},"exp":{}}}"#,
            t + 3600
        ),
        "[]".to_owned(),
        "null".to_owned(),
        "not json".to_owned(),
        String::new(),
    ] {
        let payload = b64(raw.as_bytes());
        cases.push(format!("{h}.{payload}.{}", sign(SECRET, h, &payload)));
    }
    // Headers: reordered, extra and duplicate fields, other algorithms, none, another kid.
    let ours_json = String::from_utf8(URL_SAFE_NO_PAD.decode(ours_header).unwrap()).unwrap();
    for header in [
        ours_json.clone(),
        format!("{ours_json} "),
        r#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#.to_owned(),
        r#"{"kid":"k1","alg":"HS256","typ":"JWT"}"#.to_owned(),
        r#"{"typ":"JWT","alg":"HS256","kid":"k1","x":1}"#.to_owned(),
        r#"{"typ":"JWT","alg":"HS256","kid":"k1","alg":"HS256"}"#.to_owned(),
        r#"{"typ":"JWT","alg":"HS384","kid":"k1"}"#.to_owned(),
        r#"{"typ":"JWT","alg":"HS512","kid":"k1"}"#.to_owned(),
        r#"{"typ":"JWT","alg":"none","kid":"k1"}"#.to_owned(),
        r#"{"typ":"JWT","alg":"HS256","kid":"k2"}"#.to_owned(),
        r#"{"typ":"JWT","alg":"HS256"}"#.to_owned(),
        r#"{"alg":"HS256"}"#.to_owned(),
    ] {
        cases.push(token(SECRET, &b64(header.as_bytes()), &valid));
    }
    // Signatures: non-canonical base64 (the last character's unused bits set), padded,
    // truncated, extended, empty, none.
    let (head, sig) = issued.rsplit_once('.').unwrap();
    let last = sig.chars().last().unwrap();
    for other in ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'H'] {
        if other != last {
            cases.push(format!("{head}.{}{other}", &sig[..sig.len() - 1]));
        }
    }
    for signature in [
        format!("{sig}="),
        sig[..sig.len() - 1].to_owned(),
        format!("{sig}A"),
        format!("{sig}AAAA"),
        String::new(),
    ] {
        cases.push(format!("{head}.{signature}"));
    }
    cases.push(head.to_owned());
    cases.push(format!("{issued}."));
    cases.push(format!(" {issued}"));
    // Random mutations of valid and nearly valid tokens.
    let mut rng = StdRng::seed_from_u64(0x5eed_cafe);
    let seeds: Vec<String> = cases
        .iter()
        .take(8)
        .cloned()
        .chain([issued.clone()])
        .collect();
    for i in 0..30_000 {
        let seed = &seeds[i % seeds.len()];
        cases.push(mutate(&mut rng, seed));
    }

    let (mut accepted, mut disagreements) = (0, Vec::new());
    for case in &cases {
        let (a, b) = (ours(&issuer, case), reference(case, &header_segment));
        accepted += usize::from(a.is_some());
        if a != b {
            disagreements.push(format!("{case}: ours {a:?}, reference {b:?}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements[..disagreements.len().min(20)].join("\n")
    );
    // The generator produced both answers, plenty of each.
    assert!(accepted >= 5, "{accepted} accepted");
    eprintln!("{} tokens, {accepted} accepted by both", cases.len());
    assert!(
        cases.len() - accepted > 25_000,
        "{accepted} of {} accepted",
        cases.len()
    );
}
