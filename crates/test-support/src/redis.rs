//! Redis for the tests: the machine's server (`REDIS_URL`, default `redis://127.0.0.1:6379`),
//! and servers, clusters and Sentinels a test starts on free loopback ports and stops when
//! dropped; the skip rules (a missing server fails a test unless it was opted out).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use wechat_oauth::clock::SharedClock;
use wechat_redis_store::{RedisStore, SealingKey};

pub mod skip;

/// The machine's Redis URL: `REDIS_URL`, else `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A client with generous timeouts (tests run on a loaded two-core machine).
pub async fn connect(url: &str) -> Result<Client, Error> {
    let client = Builder::from_config(Config::from_url(url)?)
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(5))
        .with_connection_config(|c| c.connection_timeout = Duration::from_secs(5))
        .set_policy(ReconnectPolicy::new_constant(0, 50))
        .build()?;
    client.init().await?;
    Ok(client)
}

/// The machine's Redis, or `None` when `WECHAT_LOGIN_SKIP=redis` opts out. A server that does
/// not answer fails the test: a skipped Redis test is not a passing one.
pub async fn machine_redis() -> Option<Client> {
    if skip::opted_out("redis") {
        return None;
    }
    match connect(&redis_url()).await {
        Ok(client) => Some(client),
        Err(error) => skip::missing(
            "Redis",
            format_args!(
                "no Redis answers at {} ({error}); set REDIS_URL",
                redis_url()
            ),
        ),
    }
}

/// A sealing key `kid` of 32 bytes `byte`.
pub fn key(kid: &str, byte: u8) -> SealingKey {
    SealingKey::new(kid, [byte; 32]).unwrap()
}

/// A prefix no other test run uses.
pub fn random_prefix() -> String {
    format!("test-{:016x}", rand::random::<u64>())
}

/// A store on `client` under a fresh prefix, on `clock`.
pub fn store_on(client: &Client, clock: SharedClock) -> RedisStore {
    RedisStore::builder(&redis_url(), key("k1", 1))
        .unwrap()
        .prefix(random_prefix())
        .clock(clock)
        .with_client(client.clone())
}

/// The highest port a server of the tests listens on: a cluster node also listens on its port
/// + 10000 (the cluster bus), and `redis-server` refuses to start when that is past 65535.
const MAX_PORT: u16 = 55_535;

/// A loopback port that is free, and whose cluster-bus port (+ 10000) is free too.
pub fn free_port() -> u16 {
    for _ in 0..1_000 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port <= MAX_PORT && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port at or below {MAX_PORT} (with its +10000 free too)")
}

/// A `redis-server` of the test's own, stopped (and its files removed) when dropped.
pub struct RedisServer {
    /// Its loopback port.
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl RedisServer {
    /// A server with these extra arguments, or `None` when `WECHAT_LOGIN_SKIP=redis` opts out.
    /// A server that cannot start fails the test with what it said.
    pub async fn start(extra: &[&str]) -> Option<Self> {
        if skip::opted_out("redis") {
            return None;
        }
        Some(Self::start_on(free_port(), extra).await)
    }

    /// A `redis-server` on `port` with these extra arguments, its log in its own directory,
    /// ready to answer `PING`.
    pub async fn start_on(port: u16, extra: &[&str]) -> Self {
        let dir = Self::directory(port);
        let command = Self::command(port, &dir, extra);
        Self::spawn(port, dir, command).await
    }

    /// `redis-server` on `port`, keeping nothing on disk (unless `extra` says otherwise), with
    /// its files in `dir`.
    fn command(port: u16, dir: &std::path::Path, extra: &[&str]) -> Command {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--dir", dir.to_str().unwrap()])
            .args(["--logfile", dir.join("log").to_str().unwrap()])
            .args(extra);
        command
    }

    /// A Sentinel watching the primary on `primary` (named `mymaster`), or `None` when
    /// `WECHAT_LOGIN_SKIP=redis` opts out.
    pub async fn sentinel(primary: u16) -> Option<Self> {
        if skip::opted_out("redis") {
            return None;
        }
        let port = free_port();
        let dir = Self::directory(port);
        // Sentinel reads (and rewrites) a configuration file of its own.
        let config = dir.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nlogfile {}\n\
                 sentinel monitor mymaster 127.0.0.1 {primary} 1\n",
                dir.display(),
                dir.join("log").display()
            ),
        )
        .unwrap();
        let mut command = Command::new("redis-server");
        command.arg(&config).arg("--sentinel");
        Some(Self::spawn(port, dir, command).await)
    }

    fn directory(port: u16) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wechat-redis-{port}-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    async fn spawn(port: u16, dir: PathBuf, command: Command) -> Self {
        let child = Self::run(&dir, command);
        let mut server = Self { port, child, dir };
        server.wait_until_ready().await;
        server
    }

    /// Runs `command` with its stderr kept in `dir`.
    fn run(dir: &std::path::Path, mut command: Command) -> Child {
        let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
        command
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| skip::missing("redis-server", e))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to its log and stderr (for a failure message).
    pub fn output(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!("stderr:\n{}\nlog:\n{}", read("stderr"), read("log"))
    }

    /// Polls `PING` until the server answers (it is a separate process: there is nothing to
    /// wait on but its socket), failing at once with its output if it exits, or after 10 s.
    async fn wait_until_ready(&mut self) {
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "redis-server on port {} exited ({status}):\n{}",
                    self.port,
                    self.output()
                );
            }
            if cli(self.port, &["ping"]).is_some_and(|out| out.contains("PONG")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "redis-server on port {} did not answer in 10 s:\n{}",
            self.port,
            self.output()
        );
    }

    /// Sends a signal (`STOP`, `CONT`, `KILL`) to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Kills the server (`SIGKILL`: no goodbye to its clients, nothing flushed) and waits until
    /// it is gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Starts the server again, after [`kill`](Self::kill), on the same port and directory
    /// (so with what it had persisted there), with these extra arguments.
    pub async fn restart(&mut self, extra: &[&str]) {
        self.child = Self::run(&self.dir, Self::command(self.port, &self.dir, extra));
        self.wait_until_ready().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `redis-cli -p port args..`'s output, if it ran.
pub fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A three-primary Redis Cluster of the test's own, on free loopback ports (each at most
/// 55535, for its bus port).
pub struct RedisCluster {
    /// The cluster's nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// The cluster, or `None` when `WECHAT_LOGIN_SKIP=redis` opts out.
    pub async fn start() -> Option<Self> {
        if skip::opted_out("redis") {
            return None;
        }
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let args = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"];
            nodes.push(RedisServer::start_on(free_port(), &args).await);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| skip::missing("redis-cli", e));
        let outputs = |nodes: &[RedisServer]| {
            nodes
                .iter()
                .map(|n| format!("node {}: {}", n.port, n.output()))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}\n{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr),
            outputs(&nodes)
        );
        // Every node must agree the cluster is up before clients use it.
        for node in &nodes {
            let mut info = String::new();
            for _ in 0..200 {
                info = cli(node.port, &["cluster", "info"]).unwrap_or_default();
                if info.contains("cluster_state:ok") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                info.contains("cluster_state:ok"),
                "the cluster did not come up on {}:\n{info}\n{}",
                node.port,
                outputs(&nodes)
            );
        }
        Some(Self { nodes })
    }

    /// The URL of the cluster's first node.
    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.nodes[0].port);
        for (i, node) in self.nodes.iter().enumerate().skip(1) {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", node.port));
        }
        url
    }
}

/// What an instance of a fleet keeps sessions in: the store `builder` configures, on `clock`,
/// connected, with a local cache in front that trusts a copy for `max_staleness`.
pub async fn cached_store(
    builder: wechat_redis_store::RedisStoreBuilder,
    clock: SharedClock,
    max_staleness: Duration,
) -> wechat_sessions::CachedStore<RedisStore> {
    let shared = builder
        .clock(clock.clone())
        .connect()
        .await
        .expect("connect to Redis");
    wechat_sessions::CachedStore::builder(shared)
        .clock(clock)
        .max_staleness(max_staleness)
        .build()
        .await
        .expect("subscribe to invalidations")
}

/// `clock` as the stores' shared clock.
pub fn shared(clock: &wechat_oauth::clock::ManualClock) -> SharedClock {
    Arc::new(clock.clone())
}
