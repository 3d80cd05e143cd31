//! `RedisStore::get` on loopback against a raw `GET` of the same keys on the same connection
//! (the baseline, measured in the same run), and the Redis memory one session takes.
//!
//! ```sh
//! cargo bench -p wechat-redis-store --bench get          # REDIS_URL, default redis://127.0.0.1:6379
//! ```
//!
//! Sessions look like real ones: 86-character access and refresh tokens (what WeChat and the
//! fake issue), a 28-character openid, a 29-character unionid, one scope. Gets are sequential
//! (one in flight), so the figures are round-trip latencies; they alternate between store and
//! baseline in blocks so both see the same machine.

use std::time::{Duration, Instant};

use fred::prelude::*;
use wechat_oauth::{AccessToken, AppId, OpenId, RefreshToken, Scopes, UnionId};
use wechat_redis_store::{RedisStore, SealingKey};
use wechat_sessions::{
    Clock, Credentials, SessionId, SessionRecord, SessionStore, SystemClock, UserId,
};

const SESSIONS: usize = 1_000;
const BLOCKS: usize = 20;
const PER_BLOCK: usize = 1_000;

fn token(tag: char, i: usize) -> String {
    format!("{tag}{i:08}").repeat(10)[..86].to_owned()
}

fn record(i: usize) -> SessionRecord {
    let now = SystemClock.now();
    let mut record = SessionRecord::new(
        SessionId::random(),
        AppId::new("wx0123456789abcdef"),
        OpenId::new(format!("o6_bmjrPTlm6_2sgVt7hMZ{i:06}")),
        Credentials::OAuth {
            access_token: AccessToken::new(token('A', i)),
            access_token_expires_at: now + Duration::from_secs(7200),
            refresh_token: RefreshToken::new(token('R', i)),
        },
        now,
        now + Duration::from_secs(30 * 24 * 3600),
    );
    let unionid = UnionId::new(format!("o6_bmasdasdsad6_2sgVt7hMZ{i:04}"));
    // As `SessionRecord::from_grant` makes it: without a login hook, the user is the unionid.
    record.user_id = UserId::default_for(&record.appid, &record.openid, Some(&unionid));
    record.unionid = Some(unionid);
    record.scopes = Scopes::parse("snsapi_userinfo");
    record
}

fn percentile(sorted: &[u128], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64 / 1_000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("bench-{:08x}", rand::random::<u32>());
    let store = RedisStore::builder(&url, SealingKey::new("k1", [7; 32])?)?
        .prefix(&prefix)
        .command_timeout(Duration::from_secs(1))
        .connect()
        .await?;
    let mut sids = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        sids.push(store.insert(record(i)).await?.sid);
    }
    let keys: Vec<String> = sids.iter().map(|sid| store.record_key(sid)).collect();
    let client = store.client().clone();

    let mut memory = 0u64;
    for sid in &sids {
        memory += store.memory_usage(sid).await?.unwrap_or(0);
    }
    let per_session = memory as f64 / SESSIONS as f64;
    let mut index_memory = 0u64;
    for i in 0..SESSIONS {
        let user = record(i).user();
        let bytes: Option<u64> = client.memory_usage(store.user_key(&user), Some(0)).await?;
        index_memory += bytes.unwrap_or(0);
    }
    let per_index = index_memory as f64 / SESSIONS as f64;

    // Warm up both paths.
    for i in 0..SESSIONS {
        store.get(&sids[i]).await?;
        let _: Option<Vec<u8>> = client.get(&keys[i]).await?;
    }
    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for block in 0..BLOCKS {
        for j in 0..PER_BLOCK {
            let i = (block * PER_BLOCK + j) % SESSIONS;
            let started = Instant::now();
            let got = store.get(&sids[i]).await?;
            ours.push(started.elapsed().as_nanos());
            assert!(got.is_some());
            let started = Instant::now();
            let value: Option<Vec<u8>> = client.get(&keys[i]).await?;
            raw.push(started.elapsed().as_nanos());
            assert!(value.is_some());
        }
    }
    ours.sort_unstable();
    raw.sort_unstable();
    let (o50, o99) = (percentile(&ours, 0.50), percentile(&ours, 0.99));
    let (r50, r99) = (percentile(&raw, 0.50), percentile(&raw, 0.99));
    println!(
        "RedisStore::get vs a raw GET of the same value, {} sequential gets each, loopback",
        ours.len()
    );
    println!();
    println!("| | p50 µs | p99 µs |");
    println!("|---|---:|---:|");
    println!("| raw GET (baseline) | {r50:.1} | {r99:.1} |");
    println!("| RedisStore::get | {o50:.1} | {o99:.1} |");
    println!("| ratio | {:.2} | {:.2} |", o50 / r50, o99 / r99);
    println!();
    println!(
        "Redis memory per session record (MEMORY USAGE, mean of {SESSIONS}) = {per_session:.0} bytes (target <= 512) {}",
        if per_session <= 512.0 { "PASS" } else { "FAIL" }
    );
    println!(
        "Redis memory of a one-session user's index = {per_index:.0} bytes; record + index = {:.0} bytes {}",
        per_session + per_index,
        if per_session + per_index <= 512.0 {
            "PASS"
        } else {
            "FAIL (over 512 with the index)"
        }
    );

    for sid in &sids {
        store.delete(sid).await?;
    }
    for i in 0..SESSIONS {
        let _: i64 = client.del(store.user_key(&record(i).user())).await?;
    }
    Ok(())
}
