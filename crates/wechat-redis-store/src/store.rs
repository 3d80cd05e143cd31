//! [`RedisStore`]: the [`SessionStore`] on Redis or Redis Cluster, through fred.
//!
//! # Key layout
//!
//! Every key starts with the configured prefix (default `wechat-login`), so deployments can
//! share a Redis. A user's sessions are indexed by the application's user id (across its apps;
//! by default the unionid, else `<appid>:<openid>`, which is what records of the first format,
//! without a user id, are indexed by), in one of 65,536 buckets (see [`crate::index`]). Hash
//! tags (`{..}`) put the keys one script touches in one cluster slot.
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `<prefix>:s:{<sid>}` | string | `<version>:<end, Unix ms>:<sealed record>` | at the session's end (`PXAT`) |
//! | `<prefix>:i:{<bucket>}` | sorted set | the sessions of the users whose id hashes to the bucket (hex), each `<user hash><sid><end>` (binary, 28 bytes) at score 0 | at the latest end of its sessions |
//! | `<prefix>:u:{<user id>}` | sorted set | the user's session ids, as versions before the buckets wrote them (and this one with [`RedisStoreBuilder::legacy_writes`]); always read (listing, the cap, logout-all) | at the latest end of its sessions |
//! | `<prefix>:lease:{<name>}` | string | the owner of a fleet-wide single flight (`refresh:<sid>`, `login:<code hash>`) | the lease's time (renewed while its flight runs) |
//! | `<prefix>:v:{<key>}` | string | a shared value: a remembered login outcome (`login:<code hash>`), a used OAuth state (`state:<hash>`) | its time (10-12 minutes) |
//! | `<prefix>:x:{<key>}` | string | a shared secret, sealed like a record: an app's access token (`apptoken:<appid>`), a Mini Program user's newest session key (`sessionkey:<appid>:<openid>`) | with the token (about 2 h) or the session (30 days) |
//! | `<prefix>:invalidations` | pub/sub channel | ids of sessions written or ended; `u:<user id>` for a user's sessions all ended; `h:<subscriber>:<Unix ms>` heartbeats, each subscriber's own | |
//!
//! # Atomicity
//!
//! Every operation on one record — insert-new, compare-and-set, delete — is one Lua script on
//! its key (loaded once, called by SHA, reloaded when Redis forgot it): never a
//! read-modify-write across round trips, so a delete can never be undone by a concurrent
//! compare-and-set. A record and its user's index live in different slots, so on a cluster the
//! operations that touch both are two steps, ordered so that each interleaving is safe:
//!
//! - insert writes the record, then indexes it. A logout-all running in between misses the new
//!   session — which was being created concurrently, by a fresh code, exactly like a login just
//!   after it — but the session is still indexed afterwards, so the next logout-all ends it. If
//!   indexing fails, the record is deleted again and the insert fails: no session is ever live
//!   and unindexed with a token handed out.
//! - logout deletes the record (the script answers the value it deleted), then takes the session
//!   out of its user's index: the session ended with its record, and whatever is left indexed
//!   (the index unreachable a moment later) is read as absent and purged later.
//! - logout-all reads the index, deletes each record, then removes from the index only what it
//!   deleted: if it fails half-way the rest stays indexed and a retry finishes. A session
//!   indexed meanwhile belongs to a concurrent login (above) and stays indexed.
//! - the per-user cap runs after indexing, only when the index holds more than the cap: it reads
//!   the records the index names (pipelined), ends the least recently confirmed live sessions
//!   (each a record delete, itself atomic), then drops the members of those and of sessions
//!   whose record is gone or ended more than [`PURGE_ALLOWANCE`] ago.
//! - the cap orders sessions by the confirmation their records hold, so a compare-and-set
//!   touches only the record.
//!
//! A logout, and the cap for the sessions it ends, take them out of the index at once. Sessions
//! that end otherwise leave it lazily: when the cap is checked, at logout-all, when a login lands
//! in their bucket after their end, and with the bucket itself when its last session ends.
//! Whatever this instance's clock says has ended is unindexed only [`PURGE_ALLOWANCE`] later:
//! another instance, whose clock may be behind, can still be serving the session, and a
//! logout-all must find it.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fred::prelude::*;
use fred::types::scripts::Script;
use futures::{StreamExt, TryFutureExt, stream};
use wechat_oauth::AppId;
use wechat_oauth::clock::{SharedClock, SystemClock};
use wechat_session_store::{
    CasOutcome, DEFAULT_MAX_SESSIONS_PER_USER, InvalidationSink, Invalidations, SessionId,
    SessionRecord, SessionStore, SharedStore, StoreError, UserId,
};
#[cfg(feature = "local-cache")]
use wechat_sessions::CachedStore;

use crate::codec;
use crate::index::UserRange;
use crate::seal::{OpenError, Sealer, SealingKey};

/// Default key prefix.
pub const DEFAULT_PREFIX: &str = "wechat-login";
/// Default timeout of every Redis command.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(50);

/// A record's value is `<version>:<end, Unix ms>:<sealed record>`: the two numbers the scripts
/// need in plain text, the rest sealed. This Lua prelude reads them.
const PARSE: &str = r"
local function parse(value)
  local a = string.find(value, ':', 1, true)
  local b = a and string.find(value, ':', a + 1, true)
  if not b then return nil, nil end
  return string.sub(value, 1, a - 1), tonumber(string.sub(value, a + 1, b - 1))
end
";

/// Inserts a record unless a live one has its id. KEYS: record. ARGV: now, value, end.
const INSERT: &str = r"
local current = redis.call('GET', KEYS[1])
if current then
  local _, e = parse(current)
  if e and e > tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
";

/// Replaces a live record at the expected version, and publishes its id. KEYS: record. ARGV:
/// now, expected version, value, end, channel, sid. Returns {0} gone, {1, current value}
/// conflict, {2} stored.
const COMPARE_AND_SET: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return {0} end
local v, e = parse(current)
if not e or e <= tonumber(ARGV[1]) then return {0} end
if v ~= ARGV[2] then return {1, current} end
redis.call('SET', KEYS[1], ARGV[3], 'PXAT', ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6])
return {2}
";

/// Deletes a record and publishes its id (unless the channel is empty: a logout-all publishes
/// its user once instead); answers `{live, the deleted value}` (`{0}` when there was none), live
/// 1 if it had not ended. KEYS: record. ARGV: now, channel, sid.
const DELETE: &str = r"
local current = redis.call('GET', KEYS[1])
if not current then return {0} end
redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
local _, e = parse(current)
local live = 0
if e and e > tonumber(ARGV[1]) then live = 1 end
return {live, current}
";

/// Indexes a session in its user's bucket and keeps the bucket alive until its latest session
/// ends; purges members that ended by the horizon (the user's own, and a window of the bucket's,
/// so the members of users who never come back go too); returns how many members the user has
/// there. KEYS: bucket. ARGV: member, the user's range (min, max), end (Unix ms), the purge
/// horizon (Unix s, see [`PURGE_ALLOWANCE`]), where the purged window starts.
const INDEX: &str = r"
redis.call('ZADD', KEYS[1], 0, ARGV[1])
if redis.call('PEXPIRETIME', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[4])
end
local horizon = tonumber(ARGV[5])
local function purge(members)
  for _, m in ipairs(members) do
    if #m == 28 and struct.unpack('>I4', m, 25) <= horizon then redis.call('ZREM', KEYS[1], m) end
  end
end
purge(redis.call('ZRANGE', KEYS[1], ARGV[2], ARGV[3], 'BYLEX'))
local n = redis.call('ZCARD', KEYS[1])
local from = 0
if n > 32 then from = tonumber(ARGV[6]) % n end
purge(redis.call('ZRANGE', KEYS[1], from, from + 31))
return redis.call('ZLEXCOUNT', KEYS[1], ARGV[2], ARGV[3])
";

/// How long after its end, by the clock of the instance that logs a user in, a bucket member may
/// be purged. Another instance's sessions are purged by this one's clock: one running ahead by
/// less than this never unindexes a session that has not ended yet, which a logout-all would
/// then miss. Ended members stay this much longer, and are skipped by whoever reads them.
pub(crate) const PURGE_ALLOWANCE: Duration = Duration::from_secs(300);

/// Records the per-user cap reads at once (a user over the cap has a handful of sessions; one
/// with thousands is read this many at a time).
const CAP_READS_IN_FLIGHT: usize = 32;

/// Whether a session that ends at `end` has ended by more than [`PURGE_ALLOWANCE`] at `now`:
/// ended for every instance whose clock is not that far behind.
fn ended_for_good(end: SystemTime, now: SystemTime) -> bool {
    end.checked_add(PURGE_ALLOWANCE)
        .is_some_and(|horizon| horizon <= now)
}

/// Indexes a session in its user's own sorted set, as versions before the buckets did, and keeps
/// the set alive until its latest session ends; returns how many members it has. KEYS: the
/// user's set. ARGV: sid, score (last confirmation, Unix ms), end (Unix ms).
const LEGACY_INDEX: &str = r"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
if redis.call('PEXPIRETIME', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return redis.call('ZCARD', KEYS[1])
";

/// A user's members of a bucket. KEYS: bucket. ARGV: the user's range (min, max).
const USER_MEMBERS: &str = r"
return redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'BYLEX')
";

/// Extends a lease its owner holds. KEYS: lease. ARGV: owner, ttl ms.
const RENEW_LEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Releases a lease its owner holds. KEYS: lease. ARGV: owner.
const RELEASE_LEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Stores a value unless one is there; returns the one that was. KEYS: value. ARGV: value, ttl.
const PUT_IF_ABSENT: &str = r"
local current = redis.call('GET', KEYS[1])
if current then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Why a store could not be built or connected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The URL is not a Redis URL this build understands.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// Redis did not answer when the store connected.
    #[error("could not connect to Redis: {0}")]
    Connect(String),
    /// The server is older than Redis 7.0, whose commands (`PEXPIRETIME`) the store needs.
    #[error("Redis {0} is too old: the store needs Redis 7.0 or later")]
    Unsupported(String),
}

/// Whether a server of this version (major, minor) runs the store's scripts: `PEXPIRETIME`
/// came with Redis 7.0. An unknown version is let through (the scripts then fail loudly).
fn supported(version: Option<(u64, u64)>) -> bool {
    version.is_none_or(|(major, _)| major >= 7)
}

/// The Lua scripts, each loaded once and called by SHA.
struct Scripts {
    insert: Script,
    compare_and_set: Script,
    delete: Script,
    index: Script,
    legacy_index: Script,
    user_members: Script,
    renew_lease: Script,
    release_lease: Script,
    put_if_absent: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            insert: Script::from_lua(format!("{PARSE}{INSERT}")),
            compare_and_set: Script::from_lua(format!("{PARSE}{COMPARE_AND_SET}")),
            delete: Script::from_lua(format!("{PARSE}{DELETE}")),
            index: Script::from_lua(INDEX),
            legacy_index: Script::from_lua(LEGACY_INDEX),
            user_members: Script::from_lua(USER_MEMBERS),
            renew_lease: Script::from_lua(RENEW_LEASE),
            release_lease: Script::from_lua(RELEASE_LEASE),
            put_if_absent: Script::from_lua(PUT_IF_ABSENT),
        }
    }
}

/// Session records in Redis, sealed. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    client: Client,
    inner: Arc<Inner>,
}

struct Inner {
    /// The subscriber connection's settings.
    config: Config,
    prefix: String,
    sealer: Sealer,
    scripts: Scripts,
    clock: SharedClock,
    max_sessions_per_user: usize,
    /// Also write what versions before the buckets read (see [`RedisStoreBuilder::legacy_writes`]).
    legacy_writes: bool,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("sealer", &self.inner.sealer)
            .field("max_sessions_per_user", &self.inner.max_sessions_per_user)
            .finish_non_exhaustive()
    }
}

/// A session the user's index names: by its member of the user's bucket, or (`None`) only in
/// the index of versions before the buckets.
struct Indexed {
    sid: SessionId,
    member: Option<Vec<u8>>,
}

/// What deleting a record found.
struct Deleted {
    /// It had not ended.
    live: bool,
    /// The stored value it had, if there was one.
    value: Option<Vec<u8>>,
}

/// Why a stored value is not a record.
enum Unreadable {
    /// Not a value this store writes.
    Corrupt(String),
    /// Its seal does not open (a key id not configured, tampering).
    Sealed(OpenError),
}

/// Configures a [`RedisStore`].
pub struct RedisStoreBuilder {
    config: Config,
    /// Where the invalidation channel is subscribed, when not at `config`.
    invalidations: Option<Config>,
    key: SealingKey,
    previous: Vec<SealingKey>,
    prefix: String,
    command_timeout: Duration,
    max_sessions_per_user: usize,
    clock: SharedClock,
    legacy_writes: bool,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("key", &self.key)
            .field("previous", &self.previous)
            .field("prefix", &self.prefix)
            .field("command_timeout", &self.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// Also open records sealed under `key` (a key being rotated out).
    pub fn previous_key(mut self, key: SealingKey) -> Self {
        self.previous.push(key);
        self
    }

    /// The prefix of every key (default [`DEFAULT_PREFIX`]).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The timeout of every Redis command (default [`DEFAULT_COMMAND_TIMEOUT`]); a command that
    /// takes longer fails as [`StoreError::Unavailable`].
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// The most sessions one user may have (default
    /// [`DEFAULT_MAX_SESSIONS_PER_USER`], at least 1).
    pub fn max_sessions_per_user(mut self, max: usize) -> Self {
        self.max_sessions_per_user = max.max(1);
        self
    }

    /// Also write what versions before the shared index buckets read (default off): records in
    /// codec format 3 or 4 instead of 5, and each new session in its user's own sorted set
    /// (`<prefix>:u:{<user id>}`) as well as in its bucket. For a fleet changing over from
    /// such a version (or back to it): while old and new instances share a Redis, turn it on
    /// in the new ones, so the old ones read every session and a logout-all on any instance
    /// ends them all; turn it off once no old instance is left.
    pub fn legacy_writes(mut self, on: bool) -> Self {
        self.legacy_writes = on;
        self
    }

    /// Subscribe to the invalidation channel at `url` instead of the store's own address: a
    /// replica of it, say (Redis passes published messages on to its replicas), or a proxy.
    pub fn invalidations_from(mut self, url: &str) -> Result<Self, RedisStoreError> {
        let config = Config::from_url(url)
            .map_err(|e| RedisStoreError::InvalidUrl(e.details().to_owned()))?;
        self.invalidations = Some(config);
        Ok(self)
    }

    /// The clock that decides whether a record has ended (default: the system clock). Redis
    /// itself drops records at their end by its own clock.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Connects: fails if Redis does not answer within the connection timeout (5 s), or is older
    /// than 7.0 ([`RedisStoreError::Unsupported`]). Once
    /// connected, the client reconnects by itself, forever, with backoff up to 2 s.
    pub async fn connect(self) -> Result<RedisStore, RedisStoreError> {
        let timeout = self.command_timeout;
        let client = Builder::from_config(self.config.clone())
            .with_performance_config(|performance| {
                performance.default_command_timeout = timeout;
            })
            .with_connection_config(|connection| {
                connection.connection_timeout = Duration::from_secs(5);
                connection.internal_command_timeout = Duration::from_secs(5);
                connection.max_command_attempts = 1;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build()
            .map_err(|e| RedisStoreError::InvalidUrl(e.details().to_owned()))?;
        client
            .init()
            .await
            .map_err(|e| RedisStoreError::Connect(e.to_string()))?;
        let version = client.server_version();
        if !supported(version.as_ref().map(|v| (v.major, v.minor))) {
            let _ = client.quit().await;
            let version = version.map(|v| v.to_string()).unwrap_or_default();
            return Err(RedisStoreError::Unsupported(version));
        }
        Ok(self.with_client(client))
    }

    /// A store on an existing, connected client (several stores may share one). The client's
    /// own timeouts apply.
    pub fn with_client(self, client: Client) -> RedisStore {
        RedisStore {
            client,
            inner: Arc::new(Inner {
                config: self.invalidations.unwrap_or(self.config),
                prefix: self.prefix,
                sealer: Sealer::new(&self.key, &self.previous),
                scripts: Scripts::new(),
                clock: self.clock,
                max_sessions_per_user: self.max_sessions_per_user,
                legacy_writes: self.legacy_writes,
            }),
        }
    }
}

impl RedisStore {
    /// Starts configuring a store at `url`, sealing with `key`.
    ///
    /// URLs: `redis://[user:password@]host:port[/db]`, `rediss://` for TLS,
    /// `redis-cluster://host:port?node=host2:port2` for a cluster (any node; the rest is
    /// discovered), `redis-sentinel://host:port?sentinelServiceName=NAME` behind Sentinel.
    pub fn builder(url: &str, key: SealingKey) -> Result<RedisStoreBuilder, RedisStoreError> {
        let config = Config::from_url(url)
            .map_err(|e| RedisStoreError::InvalidUrl(e.details().to_owned()))?;
        Ok(RedisStoreBuilder {
            config,
            invalidations: None,
            key,
            previous: Vec::new(),
            prefix: DEFAULT_PREFIX.to_owned(),
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            max_sessions_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
            clock: Arc::new(SystemClock),
            legacy_writes: false,
        })
    }

    /// This store with a local cache in front ([`CachedStore`] with its defaults: up to
    /// 1,000,000 sessions, 2 s at most of staleness while the invalidation channel is silent),
    /// on the store's own clock: what each instance of a fleet serves from, in one line.
    ///
    /// ```no_run
    /// # use wechat_redis_store::{RedisStore, SealingKey};
    /// # async fn run(key: SealingKey) -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::builder("redis://127.0.0.1:6379", key)?
    ///     .connect()
    ///     .await?
    ///     .with_local_cache()
    ///     .await?;
    /// # let _ = store; Ok(()) }
    /// ```
    ///
    /// Fails when the invalidation channel cannot be subscribed
    /// ([`RedisStoreError::Connect`]). Tune the cache with [`CachedStore::builder`] instead.
    /// Feature `local-cache` (on by default).
    #[cfg(feature = "local-cache")]
    pub async fn with_local_cache(self) -> Result<CachedStore<RedisStore>, RedisStoreError> {
        let clock = Arc::clone(&self.inner.clock);
        CachedStore::builder(self)
            .clock(clock)
            .build()
            .await
            .map_err(|error| RedisStoreError::Connect(format!("the invalidation channel: {error}")))
    }

    /// The id of the key that seals new records.
    pub fn sealing_key_id(&self) -> &str {
        self.inner.sealer.current_kid()
    }

    /// The underlying client (shared by clones).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The key of a session's record.
    pub fn record_key(&self, sid: &SessionId) -> String {
        format!("{}:s:{{{sid}}}", self.inner.prefix)
    }

    /// The key of the index bucket that holds a user's sessions (with other users').
    pub fn index_key(&self, user: &UserId) -> String {
        self.bucket_key(UserRange::of(user).bucket)
    }

    fn bucket_key(&self, bucket: u32) -> String {
        format!("{}:i:{{{bucket:04x}}}", self.inner.prefix)
    }

    /// The key of a user's own index, as versions before the buckets wrote it: still read, never
    /// written.
    pub fn user_key(&self, user: &UserId) -> String {
        format!("{}:u:{{{}}}", self.inner.prefix, user.as_str())
    }

    /// The key of a lease (single flight across the fleet).
    pub fn lease_key(&self, name: &str) -> String {
        format!("{}:lease:{{{name}}}", self.inner.prefix)
    }

    /// The key of a shared value (a remembered login outcome, a used OAuth state).
    pub fn value_key(&self, key: &str) -> String {
        format!("{}:v:{{{key}}}", self.inner.prefix)
    }

    /// The key of a shared secret (an app access token, a user's newest session key).
    pub fn secret_key(&self, key: &str) -> String {
        format!("{}:x:{{{key}}}", self.inner.prefix)
    }

    /// What a secret is sealed against: its name, so a sealed value copied under another name
    /// (or into a record) does not open.
    fn secret_aad(key: &str) -> Vec<u8> {
        let mut aad = b"secret:".to_vec();
        aad.extend_from_slice(key.as_bytes());
        aad
    }

    /// The pub/sub channel of this store's invalidations (session ids, `u:<user id>` for a
    /// logout-all, `h:<subscriber>:<stamp>` heartbeats).
    pub fn channel(&self) -> String {
        format!("{}:invalidations", self.inner.prefix)
    }

    /// Bytes of Redis memory a session's record takes (`MEMORY USAGE`), if it exists.
    pub async fn memory_usage(&self, sid: &SessionId) -> Result<Option<u64>, StoreError> {
        self.client
            .memory_usage(self.record_key(sid), Some(0))
            .await
            .map_err(unavailable)
    }

    fn now_ms(&self) -> i64 {
        unix_ms(self.inner.clock.now())
    }

    /// The stored value of a record: version and end in plain text, the record sealed.
    fn value(&self, record: &SessionRecord) -> Result<Value, StoreError> {
        let plain = codec::write(record, !self.inner.legacy_writes)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sealed = self
            .inner
            .sealer
            .seal(record.appid.as_str(), record.sid.as_bytes(), &plain);
        let mut value = format!("{}:{}:", record.version, unix_ms(record.expires_at)).into_bytes();
        value.extend_from_slice(&sealed);
        Ok(Value::Bytes(value.into()))
    }

    /// Opens a stored value. A record that does not open is reported, never deleted.
    fn open(&self, sid: SessionId, value: &[u8]) -> Result<SessionRecord, StoreError> {
        self.unseal(sid, value).map_err(|unreadable| match unreadable {
            Unreadable::Corrupt(reason) => StoreError::Corrupt(reason),
            Unreadable::Sealed(error) => {
                match &error {
                    OpenError::UnknownKey(kid) | OpenError::Tampered(kid) => tracing::error!(
                        %sid, kid = %kid, %error,
                        "a session record cannot be opened: is its key id configured (STORE_KEY, previous keys)? The record is kept"
                    ),
                    OpenError::Malformed => {
                        tracing::error!(%sid, %error, "a session record cannot be opened; it is kept")
                    }
                }
                StoreError::Corrupt(error.to_string())
            }
        })
    }

    /// A stored value as a record, saying nothing of why it cannot be read.
    fn unseal(&self, sid: SessionId, value: &[u8]) -> Result<SessionRecord, Unreadable> {
        let malformed = || Unreadable::Corrupt("a stored value is not a session record".into());
        let mut parts = value.splitn(3, |&b| b == b':');
        let (Some(version), Some(_end), Some(sealed)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let version: u64 = std::str::from_utf8(version)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(malformed)?;
        let (appid, plain) = self
            .inner
            .sealer
            .open(sid.as_bytes(), sealed)
            .map_err(Unreadable::Sealed)?;
        codec::decode(sid, AppId::new(appid), version, &plain)
            .map_err(|e| Unreadable::Corrupt(e.to_string()))
    }

    async fn script<R: FromValue>(
        &self,
        script: &Script,
        key: String,
        args: Vec<Value>,
    ) -> Result<R, StoreError> {
        script
            .evalsha_with_reload(&self.client, key, args)
            .await
            .map_err(unavailable)
    }

    async fn delete_record(&self, sid: &SessionId, now: i64) -> Result<bool, StoreError> {
        Ok(self.delete_record_publishing(sid, now, true).await?.live)
    }

    /// Deletes a record, publishing its id if `publish`.
    async fn delete_record_publishing(
        &self,
        sid: &SessionId,
        now: i64,
        publish: bool,
    ) -> Result<Deleted, StoreError> {
        let channel = if publish {
            self.channel()
        } else {
            String::new()
        };
        let reply: Vec<Value> = self
            .script(
                &self.inner.scripts.delete,
                self.record_key(sid),
                vec![now.into(), channel.into(), sid.to_string().into()],
            )
            .await?;
        Ok(Deleted {
            live: reply.first().and_then(Value::as_i64) == Some(1),
            value: reply.get(1).and_then(Value::as_bytes).map(<[u8]>::to_vec),
        })
    }

    /// The sessions the index names for `user`: in their bucket, then in the index of versions
    /// before the buckets. Ended and other users' sessions may be among them: whoever reads the
    /// records checks.
    async fn indexed(&self, user: &UserId) -> Result<Vec<Indexed>, StoreError> {
        let range = UserRange::of(user);
        // Both indexes at once, pipelined on the connection: one round trip.
        let (members, legacy) = futures::future::try_join(
            self.script::<Vec<Value>>(
                &self.inner.scripts.user_members,
                self.bucket_key(range.bucket),
                vec![Value::from(&range.min[..]), Value::from(&range.max[..])],
            ),
            self.client
                .zrange::<Vec<String>, _, _, _>(
                    self.user_key(user),
                    0,
                    -1,
                    None,
                    false,
                    None,
                    false,
                )
                .map_err(unavailable),
        )
        .await?;
        let mut indexed: Vec<Indexed> = members
            .iter()
            .filter_map(Value::as_bytes)
            .filter_map(|member| {
                Some(Indexed {
                    sid: range.sid(member)?,
                    member: Some(member.to_vec()),
                })
            })
            .collect();
        // A session written with `legacy_writes` is in both: named once, by its bucket member.
        let legacy: Vec<SessionId> = legacy
            .iter()
            .filter_map(|m| m.parse().ok())
            .filter(|sid| !indexed.iter().any(|named| named.sid == *sid))
            .collect();
        indexed.extend(legacy.into_iter().map(|sid| Indexed { sid, member: None }));
        Ok(indexed)
    }

    /// Takes ended sessions out of the user's bucket and legacy index: each out of both, as an
    /// instance with `legacy_writes` (or an earlier version) may have written either.
    async fn unindex(&self, user: &UserId, ended: Vec<Indexed>) -> Result<(), StoreError> {
        let mut members = Vec::new();
        let mut legacy = Vec::new();
        for Indexed { sid, member } in ended {
            members.extend(member);
            legacy.push(sid);
        }
        // Sent at once (pipelined on the connection): one round trip for the bucket and the
        // pre-bucket set alike.
        let from_bucket = members.chunks(1_000).map(|chunk| {
            let members: Vec<Value> = chunk.iter().map(|m| Value::from(&m[..])).collect();
            (self.index_key(user), members)
        });
        let from_legacy = legacy.chunks(1_000).map(|chunk| {
            let sids: Vec<Value> = chunk.iter().map(|s| Value::from(s.to_string())).collect();
            (self.user_key(user), sids)
        });
        let removals = from_bucket
            .chain(from_legacy)
            .map(|(key, members)| self.client.zrem::<i64, _, _>(key, members));
        futures::future::try_join_all(removals)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Ends the user's least recently confirmed sessions beyond the cap (never `keep`), and
    /// drops from the index the members of those and of sessions whose record is gone.
    async fn enforce_user_cap(&self, user: &UserId, keep: &SessionId) -> Result<(), StoreError> {
        let named: Vec<Indexed> = self
            .indexed(user)
            .await?
            .into_iter()
            .filter(|entry| entry.sid != *keep)
            .collect();
        // Every record at once, pipelined on the connection (a few in flight at a time).
        let sids: Vec<SessionId> = named.iter().map(|entry| entry.sid).collect();
        let records: Vec<_> = stream::iter(sids)
            .map(|sid| async move { self.read_op(&sid).await })
            .buffered(CAP_READS_IN_FLIGHT)
            .collect()
            .await;
        let now = self.inner.clock.now();
        let mut live = Vec::new();
        let mut gone = Vec::new();
        for (entry, record) in named.into_iter().zip(records) {
            match record {
                // Another user's whose id hashes alike: not ours to end or unindex.
                Ok(Some(record)) if !record.user_is(user) => {}
                Ok(Some(record)) if !record.is_expired(now) => {
                    live.push((record.confirmed_at, entry));
                }
                // Ended by this instance's clock: unindexed only past the allowance for a clock
                // running ahead, as the index's purge does; not counted either way.
                Ok(Some(record)) if ended_for_good(record.expires_at, now) => gone.push(entry),
                Ok(Some(_)) => {}
                Ok(None) => gone.push(entry),
                // Whose it is cannot be read (a dropped sealing key, a damaged value): left
                // as it is, and the cap goes on with the others.
                Err(StoreError::Corrupt(_)) => {
                    tracing::warn!(sid = %entry.sid, "a session the cap counted could not be read; skipped");
                }
                Err(error) => return Err(error),
            }
        }
        let excess = (live.len() + 1).saturating_sub(self.inner.max_sessions_per_user);
        live.sort_by_key(|(confirmed_at, _)| *confirmed_at);
        for (_, entry) in live.into_iter().take(excess) {
            self.delete_record(&entry.sid, unix_ms(now)).await?;
            tracing::info!(sid = %entry.sid, outcome = "session_cap", "the user's least recently confirmed session ended: too many sessions");
            // Unindexed once its record is gone, as a logout's is.
            gone.push(entry);
        }
        self.unindex(user, gone).await
    }
}

impl RedisStore {
    async fn get_op(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        let record = self.read_op(sid).await?;
        Ok(record
            .filter(|record| !record.is_expired(self.inner.clock.now()))
            .map(Arc::new))
    }

    /// The stored record, ended or not.
    async fn read_op(&self, sid: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let value: Option<Vec<u8>> = self
            .client
            .get(self.record_key(sid))
            .await
            .map_err(unavailable)?;
        value.map(|value| self.open(*sid, &value)).transpose()
    }

    async fn insert_op(&self, record: SessionRecord) -> Result<Arc<SessionRecord>, StoreError> {
        let now = self.now_ms();
        let end = unix_ms(record.expires_at);
        let value = self.value(&record)?;
        let inserted: i64 = self
            .script(
                &self.inner.scripts.insert,
                self.record_key(&record.sid),
                vec![now.into(), value, end.into()],
            )
            .await?;
        if inserted != 1 {
            return Err(StoreError::AlreadyExists);
        }
        let user = record.user();
        let range = UserRange::of(&user);
        let bucket = self.script::<i64>(
            &self.inner.scripts.index,
            self.bucket_key(range.bucket),
            vec![
                Value::Bytes(range.member(&record.sid, end).into()),
                Value::from(&range.min[..]),
                Value::from(&range.max[..]),
                end.into(),
                (now / 1000 - PURGE_ALLOWANCE.as_secs() as i64).into(),
                i64::from(rand::random::<u32>()).into(),
            ],
        );
        // The user's own sorted set, where versions before the buckets look, is written or
        // counted at once with the bucket (pipelined on the connection): one round trip for both.
        let members = if self.inner.legacy_writes {
            // Written: it holds every session the bucket does (and the old instances' own).
            let legacy = self.script::<i64>(
                &self.inner.scripts.legacy_index,
                self.user_key(&user),
                vec![
                    record.sid.to_string().into(),
                    unix_ms(record.confirmed_at).into(),
                    end.into(),
                ],
            );
            let (members, legacy) = futures::future::join(bucket, legacy).await;
            members.and_then(|members| Ok(members.max(legacy?)))
        } else {
            // Counted: sessions indexed by an earlier version count too, while they live (a
            // count that fails counts none).
            let legacy = self.client.zcard::<i64, _>(self.user_key(&user));
            let (members, legacy) = futures::future::join(bucket, legacy).await;
            members.map(|members| members + legacy.unwrap_or(0))
        };
        let members = match members {
            Ok(members) => members,
            Err(error) => {
                // Unindexed, a session would escape logout-all: take it back and fail.
                let _ = self.delete_record(&record.sid, now).await;
                return Err(error);
            }
        };
        if members > self.inner.max_sessions_per_user as i64
            && let Err(error) = self.enforce_user_cap(&user, &record.sid).await
        {
            tracing::warn!(%error, "the per-user session cap could not be enforced now");
        }
        Ok(Arc::new(record))
    }

    async fn compare_and_set_op(
        &self,
        expected_version: u64,
        mut record: SessionRecord,
    ) -> Result<CasOutcome, StoreError> {
        record.version = expected_version + 1;
        let value = self.value(&record)?;
        let answer: Value = self
            .script(
                &self.inner.scripts.compare_and_set,
                self.record_key(&record.sid),
                vec![
                    self.now_ms().into(),
                    expected_version.to_string().into(),
                    value,
                    unix_ms(record.expires_at).into(),
                    self.channel().into(),
                    record.sid.to_string().into(),
                ],
            )
            .await?;
        let parts = match answer {
            Value::Array(parts) => parts,
            _ => {
                return Err(StoreError::Corrupt(
                    "unexpected compare-and-set answer".into(),
                ));
            }
        };
        match parts.first().and_then(Value::as_i64) {
            Some(2) => Ok(CasOutcome::Stored(Arc::new(record))),
            Some(1) => {
                let current = match parts.get(1).and_then(Value::as_bytes) {
                    Some(value) => Some(Arc::new(self.open(record.sid, value)?)),
                    None => None,
                };
                Ok(CasOutcome::Conflict { current })
            }
            _ => Ok(CasOutcome::Conflict { current: None }),
        }
    }

    /// Deletes a session, then takes it out of its user's index: its bucket's member (which
    /// carries the user and the end only the deleted record knows) and the per-user set of the
    /// versions before the buckets. The session is ended once its record is gone: whatever is
    /// left indexed (the record unreadable, the index's write failed) is skipped by whoever reads
    /// it and purged after the session's end.
    async fn delete_op(&self, sid: &SessionId) -> Result<bool, StoreError> {
        let deleted = self
            .delete_record_publishing(sid, self.now_ms(), true)
            .await?;
        let record = deleted
            .value
            .and_then(|value| self.unseal(*sid, &value).ok());
        if let Some(record) = record {
            let user = record.user();
            let member = UserRange::of(&user).member(sid, unix_ms(record.expires_at));
            let indexed = Indexed {
                sid: *sid,
                member: Some(member),
            };
            if let Err(error) = self.unindex(&user, vec![indexed]).await {
                tracing::warn!(%sid, %error, "a deleted session is still in its user's index; it is purged after its end");
            }
        }
        Ok(deleted.live)
    }

    async fn try_lease_op(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let taken: Option<String> = self
            .client
            .set(
                self.lease_key(name),
                owner,
                Some(Expiration::PX(millis(ttl))),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(unavailable)?;
        Ok(taken.is_some())
    }

    async fn renew_lease_op(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let renewed: i64 = self
            .script(
                &self.inner.scripts.renew_lease,
                self.lease_key(name),
                vec![owner.into(), millis(ttl).into()],
            )
            .await?;
        Ok(renewed == 1)
    }

    async fn release_lease_op(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .script(
                &self.inner.scripts.release_lease,
                self.lease_key(name),
                vec![owner.into()],
            )
            .await?;
        Ok(())
    }

    async fn put_value_if_absent_op(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.script(
            &self.inner.scripts.put_if_absent,
            self.value_key(key),
            vec![Value::Bytes(value.into()), millis(ttl).max(1).into()],
        )
        .await
    }

    async fn get_value_op(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.client
            .get(self.value_key(key))
            .await
            .map_err(unavailable)
    }

    async fn put_secret_op(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let sealed = self.inner.sealer.seal("", &Self::secret_aad(key), &value);
        let _: Option<String> = self
            .client
            .set(
                self.secret_key(key),
                Value::Bytes(sealed.into()),
                Some(Expiration::PX(millis(ttl).max(1))),
                None,
                false,
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn get_secret_op(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sealed: Option<Vec<u8>> = self
            .client
            .get(self.secret_key(key))
            .await
            .map_err(unavailable)?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        match self.inner.sealer.open(&Self::secret_aad(key), &sealed) {
            Ok((_, plain)) => Ok(Some(plain)),
            Err(error) => {
                tracing::error!(key, %error, "a shared secret cannot be opened: is its key id configured?");
                Err(StoreError::Corrupt(error.to_string()))
            }
        }
    }

    async fn delete_user_op(&self, user: &UserId) -> Result<usize, StoreError> {
        // Read the index, delete the records, then unindex only what was deleted: a failure
        // half-way leaves the rest indexed, so a retry finishes the job. The instances hear of
        // it once, as the user (one message, however many sessions), after the deletes.
        let named = self.indexed(user).await?;
        let now = self.now_ms();
        // Concurrent, pipelined on the connection, at most 256 in flight. A bucket's member is
        // the user's only if its record says so (hashes collide); a legacy index is the user's
        // own.
        let results: Vec<_> = stream::iter(named)
            .map(|entry| async move {
                let sid = entry.sid;
                let ours = match &entry.member {
                    Some(_) => match self.get_op(&sid).await {
                        Ok(record) => Ok(record.is_none_or(|record| record.user_is(user))),
                        Err(StoreError::Corrupt(_)) => Ok(true),
                        Err(error) => Err(error),
                    },
                    None => Ok(true),
                };
                let deleted = match ours {
                    Ok(true) => self
                        .delete_record_publishing(&sid, now, false)
                        .await
                        .map(|deleted| Some(deleted.live)),
                    Ok(false) => Ok(None),
                    Err(error) => Err(error),
                };
                (entry, deleted)
            })
            .buffer_unordered(256)
            .collect()
            .await;
        let published: Result<i64, _> = self
            .client
            .publish(self.channel(), format!("{USER_MESSAGE}{user}"))
            .await;
        if let Err(error) = published {
            // The other instances stop serving the ended sessions within the staleness bound.
            tracing::warn!(%error, "a logout-all was not published to the other instances");
        }
        let (mut ended, mut failure, mut done) = (0, None, Vec::new());
        for (entry, result) in results {
            match result {
                Ok(Some(live)) => {
                    ended += usize::from(live);
                    done.push(entry);
                }
                Ok(None) => {}
                Err(error) => failure = Some(error),
            }
        }
        self.unindex(user, done).await?;
        match failure {
            Some(error) => Err(error),
            None => Ok(ended),
        }
    }

    async fn user_sessions_op(&self, user: &UserId) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        // The index may still name ended sessions (they leave it lazily), and a bucket other
        // users' whose id hashes alike: each is read, and only the live ones of this user are
        // answered.
        let sids = self.indexed(user).await?.into_iter().map(|entry| entry.sid);
        let read: Vec<Result<Option<Arc<SessionRecord>>, StoreError>> = stream::iter(sids)
            .map(|sid| async move { self.get_op(&sid).await })
            .buffer_unordered(256)
            .collect()
            .await;
        let mut sessions = Vec::with_capacity(read.len());
        for record in read {
            sessions.extend(record?.filter(|record| record.user_is(user)));
        }
        Ok(sessions)
    }
}

/// Every operation counted and timed by name (see [`crate::metrics`]).
impl SessionStore for RedisStore {
    async fn get(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        measured("get", self.get_op(sid)).await
    }

    async fn insert(&self, record: SessionRecord) -> Result<Arc<SessionRecord>, StoreError> {
        measured("insert", self.insert_op(record)).await
    }

    async fn compare_and_set(
        &self,
        expected_version: u64,
        record: SessionRecord,
    ) -> Result<CasOutcome, StoreError> {
        measured(
            "compare_and_set",
            self.compare_and_set_op(expected_version, record),
        )
        .await
    }

    async fn delete(&self, sid: &SessionId) -> Result<bool, StoreError> {
        measured("delete", self.delete_op(sid)).await
    }

    async fn delete_user(&self, user: &UserId) -> Result<usize, StoreError> {
        measured("delete_user", self.delete_user_op(user)).await
    }

    async fn user_sessions(&self, user: &UserId) -> Result<Vec<Arc<SessionRecord>>, StoreError> {
        measured("user_sessions", self.user_sessions_op(user)).await
    }
}

/// The fleet's leases, values and secrets, in Redis; counted and timed like the records.
impl SharedStore for RedisStore {
    async fn get_shared(&self, sid: &SessionId) -> Result<Option<Arc<SessionRecord>>, StoreError> {
        self.get(sid).await
    }

    async fn try_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool, StoreError> {
        measured("try_lease", self.try_lease_op(name, owner, ttl)).await
    }

    async fn renew_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        measured("renew_lease", self.renew_lease_op(name, owner, ttl)).await
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        measured("release_lease", self.release_lease_op(name, owner)).await
    }

    async fn put_value_if_absent(
        &self,
        key: &str,
        value: Vec<u8>,
        ttl: Duration,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        measured(
            "put_value_if_absent",
            self.put_value_if_absent_op(key, value, ttl),
        )
        .await
    }

    async fn get_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        measured("get_value", self.get_value_op(key)).await
    }

    async fn put_secret(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), StoreError> {
        measured("put_secret", self.put_secret_op(key, value, ttl)).await
    }

    async fn get_secret(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        measured("get_secret", self.get_secret_op(key)).await
    }
}

/// A logout-all's message: this, then the user id.
const USER_MESSAGE: &str = "u:";
/// A heartbeat's message: this, the subscriber's tag, `:`, its stamp.
const HEARTBEAT: &str = "h:";

/// What a message on the invalidation channel says.
#[derive(Debug, PartialEq, Eq)]
enum Message {
    Session(SessionId),
    User(UserId),
    Heartbeat {
        tag: u64,
        stamp: u64,
    },
    /// Something else (another version's format): ignored.
    Other,
}

impl Message {
    fn parse(text: &str) -> Self {
        if let Some(user) = text.strip_prefix(USER_MESSAGE) {
            return UserId::new(user).map_or(Self::Other, Self::User);
        }
        if let Some(beat) = text.strip_prefix(HEARTBEAT) {
            let parsed = beat.split_once(':').and_then(|(tag, stamp)| {
                Some((u64::from_str_radix(tag, 16).ok()?, stamp.parse().ok()?))
            });
            return parsed.map_or(Self::Other, |(tag, stamp)| Self::Heartbeat { tag, stamp });
        }
        text.parse().map_or(Self::Other, Self::Session)
    }
}

impl Invalidations for RedisStore {
    /// Opens a subscriber connection to the invalidation channel (re-subscribed by itself after
    /// a reconnect, which is reported as an interruption), and publishes the sink's stamped
    /// heartbeat every `heartbeat` on the main connection, tagged so that only this
    /// subscription hands it back.
    async fn subscribe(
        &self,
        sink: Arc<dyn InvalidationSink>,
        heartbeat: Duration,
    ) -> Result<(), StoreError> {
        let subscriber = Builder::from_config(self.inner.config.clone())
            .with_connection_config(|connection| {
                connection.connection_timeout = Duration::from_secs(5);
                connection.internal_command_timeout = Duration::from_secs(5);
            })
            .with_performance_config(|performance| {
                // Room for bursts (many logouts at once) before the listener falls behind and
                // has to report an interruption.
                performance.broadcast_channel_capacity = 4_096;
            })
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
            .build_subscriber_client()
            .map_err(unavailable)?;
        subscriber.init().await.map_err(unavailable)?;
        drop(subscriber.manage_subscriptions());
        let channel = self.channel();
        let mut messages = subscriber.message_rx();
        subscriber
            .subscribe(channel.as_str())
            .await
            .map_err(unavailable)?;
        let on_reconnect = Arc::clone(&sink);
        // The listener tasks run as long as the subscriber; their handles are not needed.
        drop(subscriber.on_reconnect(move |_| {
            on_reconnect.interrupted();
            async { Ok(()) }
        }));
        let on_error = Arc::clone(&sink);
        drop(subscriber.on_error(move |_| {
            on_error.interrupted();
            async { Ok(()) }
        }));
        let tag: u64 = rand::random();
        let listening = Arc::clone(&sink);
        tokio::spawn(async move {
            let sink = listening;
            // The subscriber lives as long as this task: as long as the runtime.
            let _subscriber = subscriber;
            loop {
                match messages.recv().await {
                    Ok(message) => {
                        if let Some(text) = message.value.as_str() {
                            deliver(&*sink, tag, &text);
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => sink.interrupted(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                        sink.interrupted();
                        break;
                    }
                }
            }
        });
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(heartbeat.max(Duration::from_millis(10)));
            loop {
                ticks.tick().await;
                let beat = format!("{HEARTBEAT}{tag:x}:{}", sink.stamp());
                let sent: Result<i64, _> = client.publish(channel.as_str(), beat).await;
                if let Err(error) = sent {
                    tracing::debug!(%error, "invalidation heartbeat not sent");
                }
            }
        });
        Ok(())
    }
}

/// Runs a store operation, recording its count by outcome and its duration.
/// Hands one message of the channel to `sink`: a session or a user invalidated, a heartbeat
/// heard if this subscription (`tag`) sent it — another instance's stamps are read against
/// another clock —, anything else ignored.
fn deliver(sink: &dyn InvalidationSink, tag: u64, text: &str) {
    match Message::parse(text) {
        Message::Session(sid) => sink.invalidate(&sid),
        Message::User(user) => sink.invalidate_user(&user),
        Message::Heartbeat { tag: theirs, stamp } if theirs == tag => sink.heard(stamp),
        _ => {}
    }
}

async fn measured<T>(
    op: &'static str,
    operation: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = std::time::Instant::now();
    // On the heap: the operations' futures are large, and nesting them once more inside
    // callers' futures overflowed a worker's stack in unoptimised builds.
    let result = Box::pin(operation).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(StoreError::Unavailable(_)) => "unavailable",
        Err(StoreError::Corrupt(_)) => "corrupt",
        Err(_) => "refused",
    };
    metrics::counter!(crate::metrics::STORE_OPERATIONS, "backend" => "redis", "op" => op, "outcome" => outcome)
        .increment(1);
    metrics::histogram!(crate::metrics::STORE_DURATION, "backend" => "redis", "op" => op)
        .record(started.elapsed().as_secs_f64());
    result
}

fn unavailable(error: fred::error::Error) -> StoreError {
    StoreError::Unavailable(format!("redis: {error}"))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn unix_ms(time: SystemTime) -> i64 {
    i64::try_from(wechat_oauth::clock::unix_millis(time)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `deliver` handed to the sink, in order.
    #[derive(Default)]
    struct Recorded(std::sync::Mutex<Vec<String>>);

    impl InvalidationSink for Recorded {
        fn invalidate(&self, sid: &SessionId) {
            self.0.lock().unwrap().push(format!("session {sid}"));
        }
        fn invalidate_user(&self, user: &UserId) {
            self.0.lock().unwrap().push(format!("user {user}"));
        }
        fn stamp(&self) -> u64 {
            0
        }
        fn heard(&self, stamp: u64) {
            self.0.lock().unwrap().push(format!("heard {stamp}"));
        }
        fn interrupted(&self) {
            self.0.lock().unwrap().push("interrupted".into());
        }
    }

    /// Break to see it fail: `deliver` dropping user messages, or hearing every heartbeat (or
    /// none, or only the others').
    #[test]
    fn messages_reach_the_sink_and_only_this_subscriptions_heartbeats_are_heard() {
        let sink = Recorded::default();
        let sid = SessionId::random();
        deliver(&sink, 0x1f, &sid.to_string());
        deliver(&sink, 0x1f, "u:wx:alice:1");
        deliver(&sink, 0x1f, "h:1f:1700000000123");
        deliver(&sink, 0x1f, "h:2e:1700000009999");
        deliver(&sink, 0x1f, "nonsense");
        assert_eq!(
            *sink.0.lock().unwrap(),
            [
                format!("session {sid}"),
                "user wx:alice:1".to_owned(),
                "heard 1700000000123".to_owned(),
            ]
        );
    }

    /// Break to see it fail: either `Debug` printing nothing, or printing a key.
    #[test]
    fn debug_names_the_configuration_and_never_a_key() {
        let key = SealingKey::new("k1", [0xab; 32]).unwrap();
        let builder = RedisStore::builder("redis://127.0.0.1:1", key)
            .unwrap()
            .prefix("my-prefix");
        let shown = format!("{builder:?}");
        assert!(
            shown.contains("my-prefix") && shown.contains("k1"),
            "{shown}"
        );
        let client = Builder::default_centralized().build().unwrap();
        let store = builder.with_client(client);
        let shown = format!("{store:?}");
        assert!(
            shown.contains("my-prefix") && shown.contains("k1"),
            "{shown}"
        );
        for shown in [format!("{store:?}"), format!("{:?}", store.clone())] {
            assert!(
                !shown.contains("ab, ab") && !shown.contains("171"),
                "{shown}"
            );
        }
    }

    /// Break to see it fail: `supported` answering `true` always.
    #[test]
    fn servers_older_than_7_are_refused() {
        assert!(!supported(Some((6, 2))));
        assert!(!supported(Some((5, 0))));
        assert!(supported(Some((7, 0))));
        assert!(supported(Some((8, 2))));
        assert!(supported(None));
    }

    #[test]
    fn channel_messages_parse() {
        let sid = SessionId::random();
        assert_eq!(Message::parse(&sid.to_string()), Message::Session(sid));
        assert_eq!(
            Message::parse("u:wx:alice:1"),
            Message::User(UserId::new("wx:alice:1").unwrap())
        );
        assert_eq!(
            Message::parse("h:1f:1700000000123"),
            Message::Heartbeat {
                tag: 0x1f,
                stamp: 1_700_000_000_123
            }
        );
        for other in ["", "h:zz:1", "h:1f", "u:", "nonsense"] {
            assert_eq!(Message::parse(other), Message::Other, "{other:?}");
        }
    }
}
