//! Memory per cached session: inserts N sessions of realistic size (default 1,000,000; the first
//! argument overrides it) for N distinct users into a [`MokaStore`], and reports the growth of the
//! process's resident set divided by N, against the target of at most 1 KiB per session.
//!
//! Each record is as WeChat would fill it: AppID `wx` + 16 hex digits, a 28-character OpenID and
//! UnionID, access and refresh tokens of 110 characters, scope `snsapi_userinfo`. Records are
//! built one at a time and moved into the store, which is the only place they are kept, so the
//! delta is what the store costs: the records, moka's per-entry bookkeeping, and the store's
//! per-user index. RSS is read from `/proc/self/statm` (Linux only) after the empty store is built
//! and again after the inserts and `run_pending_tasks()`.
//!
//! With `breakdown` as the second argument it also measures, each in a fresh process, the records
//! alone (held in a preallocated `Vec<Arc<SessionRecord>>`) and a moka cache holding them without
//! the store around it (configured as the store's: LRU and idle expiry; and with no expiry), and
//! the store with exact expiry (`StoreExpiry::AtSessionEnd`), and prints where the bytes go:
//! records, moka's per-entry bookkeeping, the per-user index, and what exact expiry adds.
//!
//! ```text
//! cargo run --release -p wechat-sessions --example memory_per_session [-- N [breakdown]]
//! ```

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use wechat_oauth::{AccessToken, AppId, OpenId, RefreshToken, Scopes, UnionId};
use wechat_sessions::{
    Credentials, MokaStore, SessionId, SessionRecord, SessionStore, StoreExpiry, UserId,
};

/// The design target: at most 1 KiB per cached session.
const TARGET_BYTES_PER_SESSION: f64 = 1024.0;
/// Sessions inserted when no argument is given.
const DEFAULT_SESSIONS: u64 = 1_000_000;
/// `/proc/self/statm` counts pages; 4 KiB on x86-64 and most aarch64 Linux systems.
const PAGE_SIZE: u64 = 4096;
/// The alphabet of WeChat's ids and tokens (URL-safe base64).
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The process's resident set, in bytes.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .expect("the resident page count in /proc/self/statm");
    resident * PAGE_SIZE
}

/// A small deterministic generator (splitmix64) for the ids and tokens.
struct Chars(u64);

impl Chars {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `prefix` followed by random characters of `alphabet`, `len` characters in all.
    fn string(&mut self, prefix: &str, len: usize, alphabet: &[u8]) -> String {
        let mut s = String::with_capacity(len);
        s.push_str(prefix);
        while s.len() < len {
            let i = (self.next_u64() % alphabet.len() as u64) as usize;
            s.push(char::from(alphabet[i]));
        }
        s
    }
}

/// One user's session, as a WeChat login would create it.
fn realistic_record(chars: &mut Chars, appid: &str, now: SystemTime) -> SessionRecord {
    let mut record = SessionRecord::new(
        SessionId::random(),
        AppId::new(appid),
        OpenId::new(chars.string("o", 28, ALNUM)),
        Credentials::OAuth {
            access_token: AccessToken::new(chars.string("78_", 110, ALPHABET)),
            access_token_expires_at: now + Duration::from_secs(7200),
            refresh_token: RefreshToken::new(chars.string("78_", 110, ALPHABET)),
        },
        now,
        now + Duration::from_secs(30 * 24 * 3600),
    );
    let unionid = UnionId::new(chars.string("o6_bm", 28, ALNUM));
    // As `SessionRecord::from_grant` makes it: without a login hook, the user is the unionid.
    record.user_id = UserId::default_for(&record.appid, &record.openid, Some(&unionid));
    record.unionid = Some(unionid);
    record.scopes = Scopes::parse("snsapi_userinfo");
    record
}

/// What holds the sessions in one measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    /// The [`MokaStore`]: what this example is for.
    Store,
    /// The records alone, in a `Vec<Arc<SessionRecord>>` allocated up front (8 bytes a slot).
    Records,
    /// A moka cache configured as the store's default (LRU, idle expiry), without the store's
    /// per-user index.
    Moka,
    /// The same cache without expiry.
    MokaNoExpiry,
    /// The store with `StoreExpiry::AtSessionEnd` (a moka timer per record).
    StoreExact,
}

impl Holder {
    const ALL: [Holder; 5] = [
        Holder::Store,
        Holder::Records,
        Holder::Moka,
        Holder::MokaNoExpiry,
        Holder::StoreExact,
    ];

    fn name(self) -> &'static str {
        match self {
            Holder::Store => "store",
            Holder::Records => "records",
            Holder::Moka => "moka",
            Holder::MokaNoExpiry => "moka-no-expiry",
            Holder::StoreExact => "store-exact-expiry",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.name() == name)
    }
}

/// Inserts `sessions` records into a `holder`; returns (RSS before, RSS after, time taken).
fn fill(holder: Holder, sessions: u64) -> (u64, u64, Duration) {
    let mut chars = Chars(0x5EED);
    let appid = chars.string("wx", 18, b"0123456789abcdef");
    let now = SystemTime::now();
    let mut record = || realistic_record(&mut chars, &appid, now);
    let (before, after, took);
    match holder {
        Holder::Store | Holder::StoreExact => {
            let expiry = if holder == Holder::StoreExact {
                StoreExpiry::AtSessionEnd
            } else {
                StoreExpiry::default()
            };
            let store = MokaStore::builder()
                .max_sessions(sessions)
                .expiry(expiry)
                .build();
            before = rss_bytes();
            let started = Instant::now();
            for _ in 0..sessions {
                store
                    .insert(record())
                    .now_or_never()
                    .expect("MokaStore::insert completes at once")
                    .expect("insert a new session");
            }
            store.run_pending_tasks();
            took = started.elapsed();
            after = rss_bytes();
            let held = store.session_count();
            assert_eq!(held, sessions, "every session is held (none evicted)");
        }
        Holder::Records => {
            let mut records = Vec::with_capacity(sessions as usize);
            before = rss_bytes();
            let started = Instant::now();
            for _ in 0..sessions {
                records.push(Arc::new(record()));
            }
            took = started.elapsed();
            after = rss_bytes();
            assert_eq!(records.len() as u64, sessions);
        }
        Holder::Moka | Holder::MokaNoExpiry => {
            let builder = Cache::builder()
                .max_capacity(sessions)
                .eviction_policy(EvictionPolicy::lru());
            let cache: Cache<SessionId, Arc<SessionRecord>> = if holder == Holder::Moka {
                builder
                    .time_to_idle(Duration::from_secs(30 * 24 * 3600))
                    .build()
            } else {
                builder.build()
            };
            before = rss_bytes();
            let started = Instant::now();
            for _ in 0..sessions {
                let record = record();
                cache.insert(record.sid, Arc::new(record));
            }
            cache.run_pending_tasks();
            took = started.elapsed();
            after = rss_bytes();
            assert_eq!(cache.entry_count(), sessions, "every session is held");
        }
    }
    (before, after, took)
}

fn per_session(before: u64, after: u64, sessions: u64) -> f64 {
    after.saturating_sub(before) as f64 / sessions.max(1) as f64
}

/// Runs this example again for `holder` and reads back its bytes/session.
fn measure_in_child(holder: Holder, sessions: u64) -> f64 {
    let exe = std::env::current_exe().expect("this example's path");
    let output = Command::new(exe)
        .arg(sessions.to_string())
        .arg(holder.name())
        .output()
        .expect("run a measurement");
    assert!(
        output.status.success(),
        "measuring {} failed",
        holder.name()
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("bytes/session:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a bytes/session line")
}

fn breakdown(sessions: u64, store: f64) {
    let records = measure_in_child(Holder::Records, sessions) - 8.0;
    let moka = measure_in_child(Holder::Moka, sessions);
    let moka_no_expiry = measure_in_child(Holder::MokaNoExpiry, sessions);
    let exact = measure_in_child(Holder::StoreExact, sessions);
    println!();
    println!("breakdown (bytes/session, each measured in a fresh process):");
    println!(
        "  SessionRecord (size_of {} + Arc 16) and its strings: {records:>7.1}",
        std::mem::size_of::<SessionRecord>()
    );
    println!(
        "  moka per entry, LRU + idle expiry:                    {:>7.1}",
        moka - records
    );
    println!(
        "    of which idle expiry:                               {:>7.1}",
        moka - moka_no_expiry
    );
    println!(
        "  MokaStore's user index and insert path:               {:>7.1}",
        store - moka
    );
    println!("  total (MokaStore):                                   {store:>7.1}");
    println!("  MokaStore with StoreExpiry::AtSessionEnd:            {exact:>7.1}");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let sessions: u64 = match args.next() {
        Some(n) => n
            .parse()
            .expect("the first argument is a number of sessions"),
        None => DEFAULT_SESSIONS,
    };
    let mode = args.next();
    if let Some(holder) = mode.as_deref().and_then(Holder::parse)
        && holder != Holder::Store
    {
        // One part of the breakdown, in its own process.
        let (before, after, _) = fill(holder, sessions);
        println!("bytes/session: {:.1}", per_session(before, after, sessions));
        return;
    }

    let (before, after, took) = fill(Holder::Store, sessions);
    let delta = after.saturating_sub(before);
    let bytes_per_session = per_session(before, after, sessions);
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!("sessions:          {sessions} (all held; inserted in {took:.2?})");
    println!("RSS before:        {before} bytes ({:.1} MiB)", mib(before));
    println!("RSS after:         {after} bytes ({:.1} MiB)", mib(after));
    println!("RSS delta:         {delta} bytes ({:.1} MiB)", mib(delta));
    println!("bytes/session:     {bytes_per_session:.1}");
    let verdict = if bytes_per_session <= TARGET_BYTES_PER_SESSION {
        "PASS"
    } else {
        "FAIL"
    };
    println!("target:            <= {TARGET_BYTES_PER_SESSION} bytes/session: {verdict}");
    if mode.as_deref() == Some("breakdown") {
        breakdown(sessions, bytes_per_session);
    }
}
