//! `RedisStore::get` on loopback against a raw `GET` of the same keys on the same connection
//! (the baseline, measured in the same run), and the Redis memory one session takes at scale.
//!
//! ```sh
//! cargo bench -p wechat-redis-store --bench get          # REDIS_URL, default redis://127.0.0.1:6379
//! MEMORY_SESSIONS=100000 cargo bench -p wechat-redis-store --bench get   # default 1,000,000
//! ```
//!
//! Sessions look like real ones: 86-character access and refresh tokens (what WeChat and the
//! fake issue), a 28-character openid, a 29-character unionid, one scope. Gets are sequential
//! (one in flight), so the figures are round-trip latencies; they alternate between store and
//! baseline in blocks so both see the same machine.

use std::time::{Duration, Instant};

use fred::prelude::*;
use futures::StreamExt;
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
    // A login's store work: the record, then its index entries (the bucket, and the user's own
    // set of versions before the buckets), timed one after another.
    let mut sids = Vec::with_capacity(SESSIONS);
    let mut inserts = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let started = Instant::now();
        sids.push(store.insert(record(i)).await?.sid);
        inserts.push(started.elapsed().as_nanos());
    }
    inserts.sort_unstable();
    let keys: Vec<String> = sids.iter().map(|sid| store.record_key(sid)).collect();
    let client = store.client().clone();

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
    let (i50, i99) = (percentile(&inserts, 0.50), percentile(&inserts, 0.99));
    println!(
        "RedisStore::insert, {} sequential inserts of new users: p50 {i50:.1} µs ({:.2} x the raw GET's p50), p99 {i99:.1} µs",
        inserts.len(),
        i50 / r50
    );
    println!();
    for sid in &sids {
        store.delete(sid).await?;
    }
    for i in 0..SESSIONS {
        let _: i64 = client.del(store.index_key(&record(i).user())).await?;
    }

    let n = std::env::var("MEMORY_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    memory(&store, n).await?;
    Ok(())
}

/// Redis memory per session with `n` sessions of `n` users stored through the store: records and
/// their index, by `MEMORY USAGE` of each kind of key and by the server's own `used_memory`
/// (dictionaries, expiry entries and allocator classes included).
async fn memory(store: &RedisStore, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let client = store.client().clone();
    let used = || async {
        let info: String = client.info(Some(fred::types::InfoKind::Memory)).await?;
        let used = info
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or("no used_memory in INFO")?;
        Ok::<u64, Box<dyn std::error::Error>>(used)
    };
    let before = used().await?;
    let started = Instant::now();
    let sids: Vec<SessionId> = futures::stream::iter(0..n)
        .map(|i| async move { store.insert(record(i)).await.map(|r| r.sid) })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let inserted_in = started.elapsed();
    let after = used().await?;
    let sample = n.min(1_000);
    let mut records = 0u64;
    for sid in &sids[..sample] {
        records += store.memory_usage(sid).await?.unwrap_or(0);
    }
    let per_record = records as f64 / sample as f64;
    let buckets: std::collections::BTreeSet<String> =
        (0..n).map(|i| store.index_key(&record(i).user())).collect();
    let mut index = 0u64;
    for key in &buckets {
        let bytes: Option<u64> = client.memory_usage(key, Some(0)).await?;
        index += bytes.unwrap_or(0);
    }
    let per_index = index as f64 / n as f64;
    let all_in = after.saturating_sub(before) as f64 / n as f64;
    println!();
    println!(
        "Redis memory with {n} sessions of {n} users ({} index buckets in use; inserted in {:.1} s):",
        buckets.len(),
        inserted_in.as_secs_f64()
    );
    println!("  record (MEMORY USAGE, mean of {sample}) = {per_record:.0} bytes");
    println!("  index (MEMORY USAGE of every bucket / sessions) = {per_index:.1} bytes");
    println!(
        "  record + index = {:.0} bytes (target <= 512) {}",
        per_record + per_index,
        if per_record + per_index <= 512.0 {
            "PASS"
        } else {
            "FAIL"
        }
    );
    println!(
        "  used_memory grew by {all_in:.0} bytes a session (the server's own count: its dictionaries' tables and the expiry entries too)"
    );
    let keys: Vec<String> = sids.iter().map(|sid| store.record_key(sid)).collect();
    for chunk in keys.chunks(10_000) {
        let _: i64 = client.unlink(chunk.to_vec()).await?;
    }
    let buckets: Vec<String> = buckets.into_iter().collect();
    for chunk in buckets.chunks(10_000) {
        let _: i64 = client.unlink(chunk.to_vec()).await?;
    }
    Ok(())
}
