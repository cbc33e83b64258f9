//! The HTTP server under all three listeners (plugin socket, admin socket,
//! TCP admin): one accept loop with the limits `axum::serve` lacks, so that
//! no peer, however slow or numerous, can take the daemon's descriptors.
//!
//! - A connection budget per listener. The loop takes a permit before it
//!   accepts, so over budget a new connection waits in the kernel's backlog
//!   and costs the daemon no descriptor; a flood on one listener never
//!   takes the descriptors another listener needs.
//! - A request head must arrive within [`Limits::header_timeout`]. hyper
//!   starts that timer whenever it waits for a head, so it is also how long
//!   a keep-alive connection may sit idle between requests.
//! - A request head may be at most 64 KiB; a body must arrive within
//!   [`Limits::body_timeout`] (its size is axum's 2 MiB limit).
//! - An answer the peer stops reading is given up after
//!   [`Limits::write_timeout`] without progress.
//! - Accept errors (EMFILE, ENFILE, ECONNABORTED…) never end the loop: it
//!   backs off briefly and accepts again.
//! - On stop, the loop stops accepting, idle connections close, and
//!   requests in flight are answered before [`serve`] returns.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, watch};
use tokio::time::Sleep;
use tokio_rustls::TlsAcceptor;

/// How many connections a listener serves at once, and how long a peer
/// may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub write_timeout: Duration,
}

impl Limits {
    const fn with_connections(connections: usize) -> Limits {
        Limits {
            connections,
            header_timeout: Duration::from_secs(10),
            // Bodies are at most 2 MiB (axum's default limit).
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
        }
    }

    /// The plugin socket: Docker's calls get the largest budget.
    pub const PLUGIN: Limits = Limits::with_connections(1024);
    /// The admin socket (the CLI, local tools).
    pub const ADMIN: Limits = Limits::with_connections(256);
    /// The TCP admin listener, the one strangers can reach.
    pub const TCP: Limits = Limits::with_connections(256);
}

/// A listening socket: the Unix sockets and TCP.
pub trait Listener: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&mut self) -> io::Result<Self::Io> {
        tokio::net::UnixListener::accept(self).await.map(|(s, _)| s)
    }
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&mut self) -> io::Result<Self::Io> {
        tokio::net::TcpListener::accept(self).await.map(|(s, _)| s)
    }
}

/// The largest request head (request line and headers) accepted.
const MAX_HEAD: usize = 64 << 10;

const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until `stop` turns true (or its sender is
/// gone), then waits for every connection to finish.
/// With `tls`, each connection first completes a TLS handshake, in its own
/// task and within the header timeout, so a slow stranger holds up no one.
pub async fn serve<L: Listener>(
    mut listener: L,
    name: &'static str,
    limits: Limits,
    router: Router,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let body_timeout = limits.body_timeout;
    let router = router.layer(axum::middleware::map_request(move |req: Request| async move {
        req.map(|body| Body::new(BodyDeadline::new(body, body_timeout)))
    }));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // Our requests have small heads; hyper's default allows ~400 KiB
        // per connection, which a flood would multiply.
        .max_header_size(MAX_HEAD);
    let http = Arc::new(http);
    let permits = Arc::new(Semaphore::new(limits.connections));
    let mut backoff = MIN_BACKOFF;
    loop {
        let permit = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
        };
        let accepted = tokio::select! {
            biased;
            _ = stopped(&mut stop) => break,
            r = listener.accept() => r,
        };
        let io = match accepted {
            Ok(io) => io,
            // The peer gave up before we took it: nothing wrong here.
            Err(e) if is_peer_gone(&e) => continue,
            Err(e) => {
                drop(permit);
                tracing::warn!(listener = name, error = %e, retry_in = ?backoff, "accept failed");
                tokio::select! {
                    _ = stopped(&mut stop) => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = MIN_BACKOFF;
        let (http, service, stop) = (http.clone(), router.clone(), stop.clone());
        let (write_timeout, handshake_timeout) = (limits.write_timeout, limits.header_timeout);
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let io = WriteDeadline::new(io, write_timeout);
            let Some(tls) = tls else {
                return connection(io, &http, service, stop, name).await;
            };
            match tokio::time::timeout(handshake_timeout, tls.accept(io)).await {
                Ok(Ok(io)) => connection(io, &http, service, stop, name).await,
                Ok(Err(e)) => tracing::debug!(listener = name, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(listener = name, "TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    // Every connection holds a permit until it ends: all of them back means
    // every request in flight has been answered.
    let all = u32::try_from(limits.connections).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

/// Serves HTTP/1.1 on one connection until it ends or `stop` turns true,
/// then lets the request in flight finish.
async fn connection<Io: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: Io,
    http: &hyper::server::conn::http1::Builder,
    service: Router,
    mut stop: watch::Receiver<bool>,
    name: &'static str,
) {
    let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(listener = name, error = %e, "connection ended");
    }
}

/// Resolves once `stop` turns true or its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await.
    let _ = stop.wait_for(|s| *s).await;
}

fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Raises the soft limit on open files to the hard limit, which is what
/// the administrator allows: the listeners' budgets alone exceed the usual
/// soft 1024. Returns the soft limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let now = getrlimit(Resource::Nofile);
    if now.current != now.maximum {
        let raised = Rlimit { current: now.maximum, maximum: now.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => return now.maximum,
            Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
        }
    }
    now.current
}

/// Descriptors the daemon needs beside its connections: the store, pools,
/// copies in progress.
const RESERVED_FDS: u64 = 256;

/// Warns when the open-files limit cannot hold every listener's budget:
/// then accept fails with EMFILE under load (and backs off) rather than a
/// budget keeping listeners apart.
pub fn check_fd_budget(soft_limit: Option<u64>, listeners: &[Limits]) {
    let needed = listeners.iter().map(|l| l.connections as u64).sum::<u64>() + RESERVED_FDS;
    if let Some(limit) = soft_limit
        && limit < needed
    {
        tracing::warn!(
            limit,
            needed,
            "the open-files limit is below what the connection budgets need; raise it (LimitNOFILE=)"
        );
    }
}

/// A request body that must arrive before a deadline: a client that
/// stalls half-way is answered with an error and dropped.
struct BodyDeadline {
    inner: Body,
    timeout: Duration,
    /// Started at the first read that has to wait.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl BodyDeadline {
    fn new(inner: Body, timeout: Duration) -> Self {
        BodyDeadline { inner, timeout, deadline: None }
    }
}

impl http_body::Body for BodyDeadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame),
            Poll::Pending => {
                let timeout = this.timeout;
                let deadline =
                    this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the request body did not arrive within {timeout:?}"),
                    ))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes give up after a while without progress: a
/// peer that stops reading its answer cannot hold its place forever.
struct WriteDeadline<T> {
    io: T,
    timeout: Duration,
    /// Running while a write waits for the peer.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(io: T, timeout: Duration) -> Self {
        WriteDeadline { io, timeout, stalled: None }
    }

    fn progress<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let timeout = self.timeout;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the peer read nothing for {timeout:?}"),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.progress(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.progress(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.progress(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.progress(cx, r)
    }
}

#[cfg(test)]
mod tests;
