//! Is the hand-written HS256 verifier still worth having next to jsonwebtoken? Both verify
//! the same session tokens (the differential test, `crates/tower-wechat/tests/differential.rs`,
//! shows they accept exactly the same ones), in the same run:
//!
//! - `fast_path_miss`: [`TokenIssuer::verify_at`] on tokens it has not seen (the verified-token
//!   table is one entry, so every call verifies): what a first request or a forged token costs.
//! - `jsonwebtoken_decode`: `jsonwebtoken::decode::<Claims>` with the same key and validation.
//! - `fast_path_forged` / `jsonwebtoken_forged`: the same with a wrong signature (the rejection
//!   path an attacker drives).
//!
//! ```text
//! cargo bench --bench verify
//! ```

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::Criterion;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use wechat_login::middleware::{Claims, KeyRing, SigningKey, TokenConfig, TokenIssuer};
use wechat_login::oauth::ManualClock;
use wechat_login::sessions::conformance::sample_record;

const SECRET: &[u8] = b"verify-bench-secret-0123456789abcdef";

fn main() {
    let clock = ManualClock::starting_now();
    let now = SystemTime::now();
    let mut config = TokenConfig::default();
    config.verified_capacity = 1;
    let issuer = TokenIssuer::new(
        KeyRing::new(SigningKey::hs256("k1", SECRET).unwrap()),
        config,
        Arc::new(clock.clone()),
    )
    .unwrap();
    // Distinct tokens, cycled: a one-entry table never holds the next one.
    let tokens: Vec<String> = (0..1024)
        .map(|i| {
            let record = sample_record(&clock, "wxbench", &format!("o_bench_{i}"));
            issuer.issue(&record).unwrap().value
        })
        .collect();
    let forged: Vec<String> = tokens
        .iter()
        .map(|t| {
            // One signature character changed, away from the last (whose spare bits would
            // make it a base64 error instead of a wrong signature).
            let at = t.len() - 10;
            let swapped = if &t[at..=at] == "A" { "B" } else { "A" };
            format!("{}{swapped}{}", &t[..at], &t[at + 1..])
        })
        .collect();
    let key = DecodingKey::from_secret(SECRET);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 30;
    validation.set_issuer(&["wechat-login"]);
    validation.set_audience(&["wechat-login"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);

    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut group = criterion.benchmark_group("verify");
    let mut i = 0usize;
    group.bench_function("fast_path_miss", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            black_box(issuer.verify_at(black_box(&tokens[i]), now).is_ok())
        })
    });
    group.bench_function("jsonwebtoken_decode", |b| {
        b.iter(|| {
            i = (i + 1) % tokens.len();
            black_box(
                jsonwebtoken::decode::<Claims>(black_box(&tokens[i]), &key, &validation).is_ok(),
            )
        })
    });
    group.bench_function("fast_path_forged", |b| {
        b.iter(|| {
            i = (i + 1) % forged.len();
            black_box(issuer.verify_at(black_box(&forged[i]), now).is_ok())
        })
    });
    group.bench_function("jsonwebtoken_forged", |b| {
        b.iter(|| {
            i = (i + 1) % forged.len();
            black_box(
                jsonwebtoken::decode::<Claims>(black_box(&forged[i]), &key, &validation).is_ok(),
            )
        })
    });
    group.finish();
    criterion.final_summary();
}
