//! The per-request cost of a session, in ns/op, against a floor measured in the same run:
//!
//! - `moka_get_bare_hot` — the floor: `moka::sync::Cache<SessionId, Arc<SessionRecord>>::get` of
//!   one present key, on a default cache (no expiry, no eviction policy set).
//! - `moka_get_configured_hot` — the same get on a cache configured as [`MokaStore`] configures
//!   its own by default (LRU, idle expiry): what moka's configuration alone costs.
//! - `store_get_hot` — [`MokaStore::get`] (the `SessionStore` impl) of that same key.
//! - `moka_get_bare_1000` / `session_fast_path_1000` — the floor and [`SessionManager::session`]
//!   cycling over 1,000 distinct sessions (not one hot key), each with a valid access token and no
//!   upstream check due: the fast path, which never calls WeChat.
//! - `session_id_parse` / `session_id_display` / `session_id_to_string` — a [`SessionId`] from and
//!   to its 22-character form.
//!
//! The async calls are polled once with `FutureExt::now_or_never` and no runtime driving them: on
//! these paths the futures are ready at the first poll, so this measures the store and the cache
//! and nothing of an executor (criterion's `to_async` would add a runtime's `block_on` per batch,
//! an executor's `block_on` a waker and a park per call). A future that is *not* ready at
//! the first poll would mean a flight (an upstream call) was started: it counts as a failure, and
//! the run asserts there were none, and that every record is still the one inserted (version 0,
//! same allocation), i.e. nothing was refreshed or written back. The WeChat client points at
//! `http://127.0.0.1:9`, which nothing answers.
//!
//! Criterion does not hand results back to the program, so after its groups this binary measures
//! the same operations again with plain timed loops (2,000,000 iterations each, interleaved,
//! best of 5 rounds) and prints them as ratios to the floor. That part runs only in benchmark
//! mode (`cargo bench`), not under `cargo test --benches`.
//!
//! ```text
//! cargo bench -p wechat-sessions --bench session -- --warm-up-time 1 --measurement-time 3
//! ```

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use futures::FutureExt;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use wechat_oauth::{AppId, AppSecret, Client, RetryPolicy};
use wechat_sessions::conformance::sample_record;
use wechat_sessions::{
    MokaStore, SessionId, SessionManager, SessionRecord, SessionStore, StoreExpiry, SystemClock,
};

/// Distinct sessions the fast-path bench cycles over.
const SESSIONS: usize = 1_000;
/// Iterations per timed loop of the ratio report.
const RATIO_ITERS: u64 = 2_000_000;
/// Rounds of the ratio report; the best of each is kept.
const RATIO_ROUNDS: usize = 5;
const APPID: &str = "wx0123456789abcdef";
/// Nothing listens here: any upstream call would fail (and be counted).
const UNROUTABLE: &str = "http://127.0.0.1:9";

/// Everything the benches read, built once.
struct Fixture {
    /// The floor: a default moka cache holding the same records.
    bare: Cache<SessionId, Arc<SessionRecord>>,
    /// Moka configured as `MokaStore` configures it by default (LRU, idle expiry).
    configured: Cache<SessionId, Arc<SessionRecord>>,
    /// The store the cache reads (a clone sharing the same records).
    store: MokaStore,
    cache: SessionManager<MokaStore>,
    /// The 1,000 sessions; `sids[0]` is the hot key.
    sids: Vec<SessionId>,
    /// The records as inserted, to check nothing rewrote them.
    inserted: Vec<Arc<SessionRecord>>,
    /// `sids[0]` as text.
    text: String,
}

impl Fixture {
    fn new() -> Self {
        let client = Client::builder(AppId::new(APPID), AppSecret::new("bench-secret"))
            .api_base(UNROUTABLE)
            .retry(RetryPolicy::none())
            .build()
            .expect("build the WeChat client");
        let store = MokaStore::builder()
            .max_sessions(10 * SESSIONS as u64)
            .build();
        let cache = SessionManager::builder(client).store(store.clone()).build();
        let bare = Cache::new(10 * SESSIONS as u64);
        // The store's default configuration: LRU and idle expiry at the default idle time.
        let StoreExpiry::Idle(idle) = StoreExpiry::default() else {
            panic!("the store's default expiry is idle-based");
        };
        let configured = Cache::builder()
            .max_capacity(10 * SESSIONS as u64)
            .eviction_policy(EvictionPolicy::lru())
            .time_to_idle(idle)
            .build();

        let mut sids = Vec::with_capacity(SESSIONS);
        let mut inserted = Vec::with_capacity(SESSIONS);
        for i in 0..SESSIONS {
            // Access token valid 2 h, session a day: the fast path for the whole run.
            let record = sample_record(&SystemClock, APPID, &format!("openid-{i:06}"));
            let record = store
                .insert(record)
                .now_or_never()
                .expect("MokaStore::insert is ready at once")
                .expect("insert a session into the store");
            bare.insert(record.sid, Arc::clone(&record));
            configured.insert(record.sid, Arc::clone(&record));
            sids.push(record.sid);
            inserted.push(record);
        }
        store.run_pending_tasks();
        bare.run_pending_tasks();
        configured.run_pending_tasks();
        let text = sids[0].to_string();
        Self {
            bare,
            configured,
            store,
            cache,
            sids,
            inserted,
            text,
        }
    }

    /// Panics unless every session is still the record inserted: nothing refreshed, checked or
    /// written it back.
    fn assert_untouched(&self) {
        for record in &self.inserted {
            let now = (self.store.get(&record.sid).now_or_never())
                .expect("MokaStore::get is ready at once")
                .expect("store get")
                .expect("the session is still stored");
            assert!(
                Arc::ptr_eq(&now, record) && now.version == 0,
                "session {} was rewritten: the bench left the fast path",
                record.sid
            );
        }
    }
}

/// Cycles through `0..SESSIONS`.
fn next(i: &mut usize) -> usize {
    let at = *i;
    *i = if at + 1 == SESSIONS { 0 } else { at + 1 };
    at
}

fn bench_session(c: &mut Criterion, fx: &Fixture) {
    let hot = fx.sids[0];
    let mut group = c.benchmark_group("session");

    group.bench_function("moka_get_bare_hot", |b| {
        b.iter(|| black_box(fx.bare.get(black_box(&hot))))
    });
    group.bench_function("moka_get_configured_hot", |b| {
        b.iter(|| black_box(fx.configured.get(black_box(&hot))))
    });

    let mut store_failures = 0u64;
    group.bench_function("store_get_hot", |b| {
        b.iter(|| match fx.store.get(black_box(&hot)).now_or_never() {
            Some(Ok(Some(record))) => {
                black_box(record);
            }
            _ => store_failures += 1,
        })
    });

    group.bench_function("moka_get_bare_1000", |b| {
        let mut i = 0;
        b.iter(|| black_box(fx.bare.get(black_box(&fx.sids[next(&mut i)]))))
    });

    let mut session_failures = 0u64;
    group.bench_function("session_fast_path_1000", |b| {
        let mut i = 0;
        b.iter(|| {
            let sid = &fx.sids[next(&mut i)];
            match fx.cache.session(black_box(sid)).now_or_never() {
                Some(Ok(record)) => {
                    black_box(record);
                }
                _ => session_failures += 1,
            }
        })
    });

    group.bench_function("session_id_parse", |b| {
        b.iter(|| black_box(black_box(fx.text.as_str()).parse::<SessionId>()))
    });
    let mut buf = String::with_capacity(32);
    group.bench_function("session_id_display", |b| {
        b.iter(|| {
            buf.clear();
            write!(buf, "{}", black_box(&hot)).expect("write to a String");
            black_box(&buf);
        })
    });
    group.bench_function("session_id_to_string", |b| {
        b.iter(|| black_box(black_box(&hot).to_string()))
    });
    group.finish();

    assert_eq!(store_failures, 0, "MokaStore::get missed or was not ready");
    assert_eq!(
        session_failures, 0,
        "SessionManager::session failed or was not ready at the first poll (it left the fast path)"
    );
}

/// Best-of-rounds ns/op of one operation, measured with a plain loop.
struct Timed {
    name: &'static str,
    run: Box<dyn FnMut(u64) -> Duration>,
    best: Duration,
}

fn timed(name: &'static str, mut op: impl FnMut() + 'static) -> Timed {
    Timed {
        name,
        run: Box::new(move |iters| {
            let start = Instant::now();
            for _ in 0..iters {
                op();
            }
            start.elapsed()
        }),
        best: Duration::MAX,
    }
}

fn ns_per_op(t: &Timed) -> f64 {
    t.best.as_nanos() as f64 / RATIO_ITERS as f64
}

fn print_ratios(fx: &Arc<Fixture>) {
    let hot = fx.sids[0];
    let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut ops = vec![
        timed("moka_get_bare_hot", {
            let fx = Arc::clone(fx);
            move || {
                black_box(fx.bare.get(black_box(&hot)));
            }
        }),
        timed("moka_get_configured_hot", {
            let fx = Arc::clone(fx);
            move || {
                black_box(fx.configured.get(black_box(&hot)));
            }
        }),
        timed("store_get_hot", {
            let fx = Arc::clone(fx);
            let failures = Arc::clone(&failures);
            move || match fx.store.get(black_box(&hot)).now_or_never() {
                Some(Ok(Some(record))) => {
                    black_box(record);
                }
                _ => {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }),
        timed("moka_get_bare_1000", {
            let fx = Arc::clone(fx);
            let mut i = 0;
            move || {
                black_box(fx.bare.get(black_box(&fx.sids[next(&mut i)])));
            }
        }),
        timed("session_fast_path_1000", {
            let fx = Arc::clone(fx);
            let failures = Arc::clone(&failures);
            let mut i = 0;
            move || match fx
                .cache
                .session(black_box(&fx.sids[next(&mut i)]))
                .now_or_never()
            {
                Some(Ok(record)) => {
                    black_box(record);
                }
                _ => {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }),
        timed("session_id_parse", {
            let fx = Arc::clone(fx);
            move || {
                black_box(black_box(fx.text.as_str()).parse::<SessionId>().ok());
            }
        }),
        timed("session_id_display", {
            let mut buf = String::with_capacity(32);
            move || {
                buf.clear();
                write!(buf, "{}", black_box(&hot)).expect("write to a String");
                black_box(&buf);
            }
        }),
        timed("session_id_to_string", move || {
            black_box(black_box(&hot).to_string());
        }),
    ];

    for _ in 0..RATIO_ROUNDS {
        for op in &mut ops {
            let took = (op.run)(RATIO_ITERS);
            op.best = op.best.min(took);
        }
    }
    assert_eq!(
        failures.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "a timed store get or session left the fast path"
    );

    let ns = |name: &str| {
        ops.iter()
            .find(|t| t.name == name)
            .map(ns_per_op)
            .expect("a measured operation")
    };
    println!();
    println!(
        "Timed loops: {RATIO_ITERS} iterations each, interleaved, best of {RATIO_ROUNDS} rounds, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    for op in &ops {
        println!("  {:<26} {:>8.1} ns/op", op.name, ns_per_op(op));
    }
    println!();
    println!("Ratios:");
    let ratio = |what: &str, of: &str, to: &str| {
        println!("  {what:<58} = {:>5.2}x {to}", ns(of) / ns(to));
    };
    ratio(
        "moka get, configured as MokaStore (hot key)",
        "moka_get_configured_hot",
        "moka_get_bare_hot",
    );
    ratio(
        "MokaStore::get (hot key)",
        "store_get_hot",
        "moka_get_bare_hot",
    );
    ratio(
        "MokaStore::get (hot key)",
        "store_get_hot",
        "moka_get_configured_hot",
    );
    ratio(
        "SessionManager::session fast path (1,000 sessions)",
        "session_fast_path_1000",
        "moka_get_bare_1000",
    );
    ratio(
        "SessionManager::session fast path (1,000 sessions)",
        "session_fast_path_1000",
        "moka_get_bare_hot",
    );
    ratio(
        "SessionManager::session fast path (1,000 sessions)",
        "session_fast_path_1000",
        "store_get_hot",
    );
    ratio(
        "SessionId parse (22 chars)",
        "session_id_parse",
        "moka_get_bare_hot",
    );
    ratio(
        "SessionId Display (into a reused String)",
        "session_id_display",
        "moka_get_bare_hot",
    );
}

/// Whether criterion runs in benchmark mode (`cargo bench`), as opposed to `cargo test --benches`,
/// `--test` or `--list`, where the ratio report is skipped.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

fn main() {
    // Entered but never driven: a fast path that tried to start a flight would see its future
    // pending (counted as a failure) instead of panicking for want of a runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("build a tokio runtime");
    let _guard = runtime.enter();

    let fx = Arc::new(Fixture::new());
    let mut criterion = Criterion::default().configure_from_args();
    bench_session(&mut criterion, &fx);
    criterion.final_summary();
    fx.assert_untouched();

    if benchmarking() {
        print_ratios(&fx);
        fx.assert_untouched();
        println!("\nNo upstream call: every session is still the record inserted (version 0).");
    }
}
