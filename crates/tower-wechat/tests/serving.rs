//! The hardened listener ([`serve`]) under hostile load, over real TCP on loopback: floods of
//! slow-reading and idle connections from one address (127.0.0.2) while a client at another
//! address (127.0.0.3) is answered; the longest-idle connection closed to admit a new one at
//! the cap; the response timeout and the per-connection request cap.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tower_wechat::{ServeLimits, serve};

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const HONEST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// The tests that load the server run one at a time, so one's flood does not slow another's
/// probe.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long an honest client may wait for its answer while the flood goes on.
const ANSWERED_WITHIN: Duration = Duration::from_secs(1);

async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// A connection from the attacker's address that reads slowly: its receive buffer is small,
/// so the server's writes to it stall after a few answers.
async fn slow_reader(to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    socket.bind(SocketAddr::from((ATTACKER, 0)))?;
    socket.connect(to).await
}

/// A `GET /healthz` from the honest address on a new connection: its status line.
async fn probe(to: SocketAddr) -> String {
    let answer = async {
        let mut stream = connect_from(HONEST, to).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    tokio::time::timeout(ANSWERED_WITHIN, answer)
        .await
        .expect("the honest client is answered within 1 s")
}

/// One line of an answer of about 2 KiB (25 of them): a slow reader's pipelined requests fill
/// its receive buffer quickly.
const LINE: &str =
    "body { margin: 0 auto; max-width: 40rem; font-family: sans-serif; color: #222; }\n";

/// [`serve`] with `limits` on a loopback port, answering `GET /healthz` and `GET /style.css`.
async fn start_with(limits: ServeLimits) -> SocketAddr {
    let router = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/style.css", get(|| async { LINE.repeat(25) }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, router).limits(limits).into_future());
    addr
}

/// Opens `n` slow-reading connections from the attacker's address, each sending `send` (the
/// ones the server closes at once fail, which is fine); keeps them open, never reading.
async fn flood(to: SocketAddr, n: usize, send: &'static [u8]) -> Vec<TcpStream> {
    let opened = (0..n).map(|_| async move {
        let mut stream = slow_reader(to).await.ok()?;
        if !send.is_empty() {
            // Without waiting for the kernel to take it all: a slow reader's writes stall.
            let _ = tokio::time::timeout(Duration::from_millis(50), stream.write_all(send)).await;
        }
        Some(stream)
    });
    let flood = futures::future::join_all(opened)
        .await
        .into_iter()
        .flatten()
        .collect();
    // One more from the same address is over its cap: once the server has closed it, it has
    // taken in every connection before it (it accepts in order).
    let taken_in = async {
        let mut marker = connect_from(ATTACKER, to).await.unwrap();
        let _ = marker.read_to_end(&mut Vec::new()).await;
    };
    tokio::time::timeout(Duration::from_secs(10), taken_in)
        .await
        .expect("the server takes the flood in and refuses what its address may not open");
    flood
}

fn pipelined(requests: usize) -> &'static [u8] {
    "GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n"
        .repeat(requests)
        .leak()
        .as_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_read_flood_from_one_address_does_not_keep_others_out() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let s = start_with(ServeLimits::default()).await;
    let to = s;
    let _flood = flood(to, 1_000, pipelined(100)).await;
    for _ in 0..5 {
        assert_eq!(probe(to).await, "HTTP/1.1 200 OK");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_flood_from_one_address_does_not_keep_others_out() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let s = start_with(ServeLimits::default()).await;
    let to = s;
    let _flood = flood(to, 1_000, b"").await;
    for _ in 0..5 {
        assert_eq!(probe(to).await, "HTTP/1.1 200 OK");
    }
}

#[tokio::test]
async fn at_the_cap_the_longest_idle_connection_makes_room() {
    let s = start_with(ServeLimits {
        max_connections: 4,
        header_read_timeout: Duration::from_secs(600),
        ..ServeLimits::default()
    })
    .await;
    let to = s;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect_from(ATTACKER, to).await.unwrap());
        // Registered in order (a request makes sure the server has accepted it).
        let last = idle.last_mut().unwrap();
        last.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = [0; 15];
        last.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 200 OK");
    }
    assert_eq!(probe(to).await, "HTTP/1.1 200 OK");
    // The first connection was the longest idle: the server closed it.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), idle[0].read_to_end(&mut rest));
    assert!(
        closed.await.is_ok(),
        "the longest-idle connection is closed"
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_the_response_timeout() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let s = start_with(ServeLimits {
        response_timeout: Duration::from_millis(200),
        ..ServeLimits::default()
    })
    .await;
    let mut stream = slow_reader(s).await.unwrap();
    let requests = pipelined(100);
    // Writes pipelined requests, never reading the answers, until the server closes.
    let written = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            stream.write_all(requests).await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    });
    let ended = written.await.expect("the server closes the connection");
    assert!(ended.is_err(), "the connection was closed under the writer");
}

#[tokio::test]
async fn a_connection_serves_at_most_its_requests() {
    let s = start_with(ServeLimits {
        max_requests_per_connection: 3,
        ..ServeLimits::default()
    })
    .await;
    let mut stream = connect_from(HONEST, s).await.unwrap();
    stream
        .write_all(
            &"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                .repeat(5)
                .into_bytes(),
        )
        .await
        .unwrap();
    let mut answers = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answers));
    read.await.expect("closed after the third").unwrap();
    let answers = String::from_utf8(answers).unwrap();
    assert_eq!(answers.matches("HTTP/1.1 200 OK").count(), 3, "{answers}");
    assert_eq!(answers.matches("connection: close").count(), 1, "{answers}");
}
