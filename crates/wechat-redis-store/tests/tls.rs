//! `rediss://`: the store over TLS to a Redis the test starts with a certificate of its own.
//!
//! The store trusts the system's root certificates (rustls with the platform's roots); a
//! private CA is added the standard way, `SSL_CERT_FILE`. The test makes a CA, then runs itself
//! again as a child process with `SSL_CERT_FILE` naming it (an environment of its own, set
//! without touching this process's).

mod common;

use std::process::Command;

use wechat_redis_store::RedisStore;
use wechat_sessions::conformance::sample_record;
use wechat_sessions::{ManualClock, SessionStore};

/// A self-signed CA and a server certificate for 127.0.0.1 it signed, in `dir`.
fn certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .unwrap_or_else(|e| common::skip::missing("openssl", e));
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("ext.cnf"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "server.crt",
    ]);
}

/// Where the child finds the certificates; set only in the child.
const CHILD: &str = "WECHAT_LOGIN_TLS_TEST_DIR";

/// Break to see it fail: build fred without a TLS feature (`enable-rustls` dropped from the
/// workspace's features): `rediss://` is then refused as an invalid URL.
#[test]
fn the_store_works_over_tls() {
    if let Ok(dir) = std::env::var(CHILD) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        return runtime.block_on(over_tls(std::path::Path::new(&dir)));
    }
    if common::skip::opted_out("redis") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("wechat-tls-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_store_works_over_tls",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &dir)
        .env("SSL_CERT_FILE", dir.join("ca.crt"))
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(child.status.success(), "{output}");
    assert!(
        output.contains("1 passed"),
        "the child ran the test: {output}"
    );
}

/// The test itself, in the child: the store over `rediss://` to a server with the certificates
/// in `dir`.
async fn over_tls(dir: &std::path::Path) {
    let file = |name: &str| dir.join(name).to_str().unwrap().to_owned();
    let tls_port = common::free_port().to_string();
    let server = common::RedisServer::start(&[
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &file("server.crt"),
        "--tls-key-file",
        &file("server.key"),
        "--tls-ca-cert-file",
        &file("ca.crt"),
        "--tls-auth-clients",
        "no",
    ])
    .await
    .expect("the parent checked the opt-out");

    let clock = ManualClock::starting_now();
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let store = RedisStore::builder(&url, common::key("k1", 1))
        .unwrap()
        .prefix(common::random_prefix())
        .clock(common::shared(&clock))
        .command_timeout(std::time::Duration::from_secs(2))
        .connect()
        .await
        .expect("connect over TLS");
    let record = store
        .insert(sample_record(&clock, "wxapp", "tls"))
        .await
        .unwrap();
    assert_eq!(
        store.get(&record.sid).await.unwrap().unwrap().sid,
        record.sid
    );
    // The record really went through the TLS port: the server holds it.
    let keys = common::cli(server.port, &["dbsize"]).unwrap();
    assert_eq!(keys.trim(), "2", "the record and its user index");
    // And a plain connection to the TLS port is not TLS: refused.
    let plain = RedisStore::builder(
        &format!("redis://127.0.0.1:{tls_port}"),
        common::key("k1", 1),
    )
    .unwrap()
    .connect();
    let refused = tokio::time::timeout(std::time::Duration::from_secs(10), plain).await;
    assert!(!matches!(refused, Ok(Ok(_))), "plain text to the TLS port");
}
