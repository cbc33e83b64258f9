//! The accept loop against raw sockets, with short limits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::*;

/// Generous: the machine may be busy.
const PATIENCE: Duration = Duration::from_secs(10);

fn limits(connections: usize) -> Limits {
    Limits {
        connections,
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_millis(300),
    }
}

/// Answers of `/slow` computed so far.
static SLOW_ANSWERS: AtomicUsize = AtomicUsize::new(0);

fn app() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                SLOW_ANSWERS.fetch_add(1, Ordering::SeqCst);
                "done"
            }),
        )
        .route(
            "/echo",
            post(|body: Result<Bytes, axum::extract::rejection::BytesRejection>| async move {
                match body {
                    Ok(b) => format!("got {}", b.len()),
                    Err(e) => format!("failed: {}", e.body_text()),
                }
            }),
        )
        .route("/big", get(|| async { vec![b'x'; 16 << 20] }))
}

struct Server {
    addr: std::net::SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

async fn start_with<L: Listener>(listener: L, addr: std::net::SocketAddr, l: Limits) -> Server {
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(serve(listener, "test", l, app(), None, rx));
    Server { addr, stop, task }
}

async fn start(l: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    start_with(listener, addr, l).await
}

/// Reads until the server closes; a reset counts as closed.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 65536];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("the server never closed the connection");
    got
}

/// One request on a fresh connection that asks to close; the whole answer.
async fn fetch(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    String::from_utf8(until_closed(&mut s).await).unwrap()
}

#[tokio::test]
async fn a_stalled_head_is_dropped() {
    let srv = start(limits(4)).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Half").await.unwrap();
    let answer = until_closed(&mut s).await;
    assert!(!String::from_utf8_lossy(&answer).contains("hello"));
    assert!(fetch(srv.addr, "/").await.ends_with("hello"), "the listener still serves");
}

#[tokio::test]
async fn an_oversized_head_is_refused() {
    let srv = start(limits(4)).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let filler = "x".repeat(100 << 10);
    s.write_all(format!("GET / HTTP/1.1\r\nHost: t\r\nX-Filler: {filler}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&until_closed(&mut s).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let srv = start(limits(4)).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let answer = String::from_utf8(until_closed(&mut s).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"), "{answer}");
}

#[tokio::test]
async fn a_stalled_body_is_answered_and_dropped() {
    let srv = start(limits(4)).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let answer = String::from_utf8(until_closed(&mut s).await).unwrap();
    assert!(answer.contains("did not arrive within"), "{answer}");
    // A body that does arrive is read whole.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await
    .unwrap();
    assert!(String::from_utf8(until_closed(&mut s).await).unwrap().ends_with("got 3"));
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_dropped() {
    let srv = start(limits(4)).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    // Read nothing for a while: the server's writes stall, then it gives up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = until_closed(&mut s).await;
    assert!(got.len() < 16 << 20, "the whole answer arrived: the peer was waited for");
}

#[tokio::test]
async fn over_budget_connections_wait_in_the_backlog() {
    let mut l = limits(2);
    l.header_timeout = Duration::from_secs(30);
    let srv = start(l).await;
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        holders.push(s);
    }
    let waiting = tokio::spawn(fetch(srv.addr, "/"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a third connection was served beyond the budget of 2");
    drop(holders.pop());
    let answer = tokio::time::timeout(PATIENCE, waiting).await.expect("never served").unwrap();
    assert!(answer.ends_with("hello"), "{answer}");
}

/// A listener whose first accepts fail as they do when descriptors run out.
struct Exhausted {
    inner: TcpListener,
    failures: Vec<io::Error>,
}

impl Listener for Exhausted {
    type Io = TcpStream;
    async fn accept(&mut self) -> io::Result<TcpStream> {
        match self.failures.pop() {
            Some(e) => Err(e),
            None => self.inner.accept().await.map(|(s, _)| s),
        }
    }
}

#[tokio::test]
async fn accept_errors_do_not_end_the_loop() {
    let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = inner.local_addr().unwrap();
    let failures = vec![
        io::Error::from_raw_os_error(24), // EMFILE
        io::Error::from_raw_os_error(23), // ENFILE
        io::Error::from(io::ErrorKind::ConnectionAborted),
        io::Error::from_raw_os_error(24),
    ];
    let srv = start_with(Exhausted { inner, failures }, addr, limits(4)).await;
    let answer = tokio::time::timeout(PATIENCE, fetch(srv.addr, "/")).await.unwrap();
    assert!(answer.ends_with("hello"), "{answer}");
}

#[tokio::test]
async fn stop_lets_requests_in_flight_finish_and_accepts_no_more() {
    let srv = start(limits(4)).await;
    let in_flight = tokio::spawn(fetch(srv.addr, "/slow"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    srv.stop.send(true).unwrap();
    tokio::time::timeout(PATIENCE, srv.task).await.expect("serve did not return").unwrap();
    assert_eq!(SLOW_ANSWERS.load(Ordering::SeqCst), 1, "serve returned before the answer");
    let answer = tokio::time::timeout(PATIENCE, in_flight).await.unwrap().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("done"), "{answer}");
    assert!(TcpStream::connect(srv.addr).await.is_err(), "still accepting after stop");
}
