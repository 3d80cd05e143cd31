//! Redis for the tests: the machine's server (`REDIS_URL`, default `redis://127.0.0.1:6379`),
//! and servers and clusters a test starts on free loopback ports and stops when dropped.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fred::prelude::*;
use wechat_redis_store::{RedisStore, SealingKey};
use wechat_token_cache::SharedClock;

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

/// The machine's Redis. Outside CI a missing server skips the test with a loud message; in CI
/// (`CI` set) it fails the test: a skipped Redis test is not a passing one.
pub async fn machine_redis() -> Option<Client> {
    match connect(&redis_url()).await {
        Ok(client) => Some(client),
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!(
                "CI must run the Redis tests, but Redis at {} does not answer: {error}",
                redis_url()
            )
        }
        Err(error) => {
            eprintln!(
                "SKIPPED: no Redis at {} ({error}); set REDIS_URL",
                redis_url()
            );
            None
        }
    }
}

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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of the test's own, stopped (and its files removed) when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl RedisServer {
    pub async fn start(extra: &[&str]) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("wechat-redis-{port}-{}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--dir", dir.to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let server = Self { port, child, dir };
        server.wait_until_ready().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `PING` until the server answers (it is a separate process: there is nothing to
    /// wait on but its socket), for at most 10 s.
    async fn wait_until_ready(&self) {
        for _ in 0..200 {
            if cli(self.port, &["ping"]).is_some_and(|out| out.contains("PONG")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    /// Sends a signal (`STOP`, `CONT`) to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
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

/// A three-primary Redis Cluster of the test's own, on free loopback ports.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(
                RedisServer::start(&["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                    .await,
            );
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli is installed");
        assert!(status.success(), "redis-cli --cluster create failed");
        // Every node must agree the cluster is up before clients use it.
        for node in &nodes {
            let mut up = false;
            for _ in 0..200 {
                if cli(node.port, &["cluster", "info"])
                    .is_some_and(|i| i.contains("cluster_state:ok"))
                {
                    up = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(up, "the cluster did not come up");
        }
        Self { nodes }
    }

    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.nodes[0].port);
        for (i, node) in self.nodes.iter().enumerate().skip(1) {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{}", node.port));
        }
        url
    }
}

pub fn shared(clock: &wechat_token_cache::ManualClock) -> SharedClock {
    Arc::new(clock.clone())
}
