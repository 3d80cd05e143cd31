//! How long a logout on one instance takes to be refused on another: two instances (each its own
//! connections and local cache) on one Redis; instance B holds a session in its local cache,
//! instance A deletes it, and the time until B no longer holds it is measured — 1,000 times.
//! Also the Redis round trip of the delete itself, in the same run, as the baseline.
//!
//! ```sh
//! cargo bench -p wechat-redis-store --bench propagation   # REDIS_URL, default redis://127.0.0.1:6379
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use wechat_oauth::{AccessToken, AppId, OpenId, RefreshToken};
use wechat_redis_store::{RedisStore, SealingKey};
use wechat_sessions::{
    CachedStore, Clock, Credentials, SessionId, SessionRecord, SessionStore, SystemClock,
};

const LOGOUTS: usize = 1_000;

fn record(i: usize) -> SessionRecord {
    let now = SystemClock.now();
    SessionRecord::new(
        SessionId::random(),
        AppId::new("wx0123456789abcdef"),
        OpenId::new(format!("o_propagation_{i:06}")),
        Credentials::OAuth {
            access_token: AccessToken::new("A".repeat(86)),
            access_token_expires_at: now + Duration::from_secs(7200),
            refresh_token: RefreshToken::new("R".repeat(86)),
        },
        now,
        now + Duration::from_secs(3600),
    )
}

async fn instance(
    url: &str,
    prefix: &str,
) -> Result<CachedStore<RedisStore>, Box<dyn std::error::Error>> {
    let shared = RedisStore::builder(url, SealingKey::new("k1", [7; 32])?)?
        .prefix(prefix)
        .command_timeout(Duration::from_secs(1))
        .connect()
        .await?;
    Ok(CachedStore::builder(shared).build().await?)
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("propagation-{:08x}", rand::random::<u32>());
    let a = Arc::new(instance(&url, &prefix).await?);
    let b = Arc::new(instance(&url, &prefix).await?);
    let (mut propagation, mut deletes) = (Vec::new(), Vec::new());
    for i in 0..LOGOUTS {
        let sid = a.insert(record(i)).await?.sid;
        assert!(b.get(&sid).await?.is_some());
        assert!(b.holds(&sid), "B serves its local copy");
        let started = Instant::now();
        a.delete(&sid).await?;
        deletes.push(started.elapsed());
        while b.holds(&sid) {
            tokio::task::yield_now().await;
            if started.elapsed() > Duration::from_secs(5) {
                return Err("an invalidation never arrived".into());
            }
        }
        propagation.push(started.elapsed());
    }
    propagation.sort_unstable();
    deletes.sort_unstable();
    println!("logout on A until refused on B, {LOGOUTS} logouts, loopback Redis");
    println!();
    println!("| | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|");
    println!(
        "| the delete's round trip on A (baseline) | {:.3} | {:.3} | {:.3} |",
        percentile(&deletes, 0.5),
        percentile(&deletes, 0.99),
        percentile(&deletes, 1.0)
    );
    let p99 = percentile(&propagation, 0.99);
    println!(
        "| until B refuses it | {:.3} | {p99:.3} | {:.3} |",
        percentile(&propagation, 0.5),
        percentile(&propagation, 1.0)
    );
    println!();
    println!(
        "propagation p99 = {p99:.3} ms (target <= 50) {}",
        if p99 <= 50.0 { "PASS" } else { "FAIL" }
    );
    Ok(())
}
