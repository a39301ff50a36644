//! The HTTP server loop under every listener (plain TCP, HTTPS after the
//! handshake, the ACME/redirect port): caps how many connections are open
//! overall and per client address, runs each through hyper (HTTP/1.1 and
//! HTTP/2, upgrades for WebSockets) with the `[http]` deadlines, and drains
//! gracefully on shutdown.
//!
//! The deadlines are on what a client owes the server, never on what the
//! server sends back, so answer streams (SSE) and WebSockets run as long as
//! they need:
//! - a new connection must deliver a complete request head within
//!   `header_timeout_secs` (slow headers, or nothing at all);
//! - a request body may fall silent for at most `body_timeout_secs`, and must
//!   keep an average of `body_min_bytes_per_sec` after that (a trickle is as
//!   hostile as silence);
//! - a connection with no request in progress is closed after
//!   `keep_alive_secs` (a request counts as in progress until its response,
//!   however long it streams, has been sent; a WebSocket over HTTP/2 keeps its
//!   connection busy for as long as it is open).
//!
//! A body whose declared `Content-Length` is over `max_body_bytes` is refused
//! with 413 before a byte of it is read ([`crate::http::limits_layer::refuse_oversized_body`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Method;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::{Config, HttpConfig};

/// After an idle connection is asked to close, how long it may take to go
/// before it is dropped (an HTTP/1 connection in the middle of a request
/// head does not close by itself).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The `[http]` deadlines, as durations.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub body: Duration,
    /// Bytes per second; 0 = no minimum.
    pub body_min_rate: u64,
    pub keep_alive: Duration,
}

impl Timeouts {
    pub fn from_config(c: &HttpConfig) -> Timeouts {
        Timeouts {
            header: Duration::from_secs(c.header_timeout_secs),
            body: Duration::from_secs(c.body_timeout_secs),
            body_min_rate: c.body_min_bytes_per_sec,
            keep_alive: Duration::from_secs(c.keep_alive_secs),
        }
    }
}

/// The cap on open connections, shared by every listener of one server.
/// Addresses in `trusted_proxies` count only towards the total: behind a
/// reverse proxy every connection comes from the proxy.
pub struct ConnCap {
    max_total: usize,
    max_per_ip: usize,
    exempt: Vec<IpNet>,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl ConnCap {
    pub fn new(cfg: &Config) -> Arc<ConnCap> {
        Arc::new(ConnCap {
            max_total: cfg.http.max_connections,
            max_per_ip: cfg.http.max_connections_per_ip,
            exempt: cfg
                .trusted_proxies
                .iter()
                .filter_map(|p| crate::config::parse_net(p))
                .collect(),
            open: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A permit for one more connection from `ip`, or `None` when a cap is
    /// reached. The permit is given back when dropped.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnPermit> {
        let counted = !self.exempt.iter().any(|n| n.contains(&ip));
        let mut open = self.lock();
        if open.total >= self.max_total {
            return None;
        }
        if counted {
            let n = open.per_ip.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                return None;
            }
            *n += 1;
        }
        open.total += 1;
        Some(ConnPermit {
            cap: self.clone(),
            ip: counted.then_some(ip),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.lock().total
    }
}

/// One open connection's place under the [`ConnCap`].
pub struct ConnPermit {
    cap: Arc<ConnCap>,
    ip: Option<IpAddr>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut open = self.cap.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(ip) = self.ip
            && let Some(n) = open.per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                open.per_ip.remove(&ip);
            }
        }
    }
}

/// A connection ready for HTTP: its stream, the client's address and its
/// place under the cap.
pub struct Accepted<I> {
    pub io: I,
    pub peer: SocketAddr,
    pub permit: ConnPermit,
}

/// Where connections come from: a TCP listener, or the TLS accept loop.
pub trait Accept: Send + 'static {
    type Io: HttpIo;
    /// The next connection within the cap; connections over it are closed
    /// here, never handed out.
    fn accept(&mut self) -> impl Future<Output = Accepted<Self::Io>> + Send;
}

/// Plain TCP under a [`ConnCap`].
pub struct TcpAccept {
    listener: TcpListener,
    cap: Arc<ConnCap>,
}

impl TcpAccept {
    pub fn new(listener: TcpListener, cap: Arc<ConnCap>) -> TcpAccept {
        TcpAccept { listener, cap }
    }
}

impl Accept for TcpAccept {
    type Io = TcpStream;

    async fn accept(&mut self) -> Accepted<TcpStream> {
        loop {
            let (sock, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let peer = canonical(peer);
            let Some(permit) = self.cap.try_acquire(peer.ip()) else {
                tracing::debug!(%peer, "connection refused: too many open connections");
                continue;
            };
            // Streamed deltas are small writes: without TCP_NODELAY, Nagle
            // holds each one until the previous is ACKed and delayed ACKs add
            // ~40 ms (measured in benches/chat.rs).
            let _ = sock.set_nodelay(true);
            return Accepted {
                io: sock,
                peer,
                permit,
            };
        }
    }
}

/// How many finished handshakes the kernel may queue for `accept` (capped
/// by `net.core.somaxconn`). Tokio's own `bind` asks for 128; a burst of a
/// few hundred connections then overflows the queue, and a client that
/// connects and waits for the server to speak first hangs on a connection
/// the server never sees (measured: 11 of 300 in tests/it/http_surface.rs).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds a listening socket on `addr` with [`LISTEN_BACKLOG`]; an IPv6
/// wildcard also takes IPv4 (dual stack, the Linux default).
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std and tokio do: a restarted server can bind while old
    // connections sit in TIME_WAIT.
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(LISTEN_BACKLOG)
}

/// The soft open-files limit of this process (Linux; None elsewhere).
/// `main` raises it to the hard limit before anything runs.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    match line.split_whitespace().nth(3)? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    }
}

/// Descriptors an open answer stream holds: the client's connection and,
/// over HTTP/1, its own upstream connection.
pub const FDS_PER_STREAM: u64 = 2;

/// Warns at start-up when the open-files limit cannot hold
/// `max_connections` streams (each with its upstream connection), which
/// would show up later as refused connections and failed answers.
pub fn warn_low_open_files(max_connections: usize) {
    let Some(limit) = open_files_limit() else {
        return;
    };
    let wanted = max_connections as u64 * FDS_PER_STREAM + 256;
    if limit < wanted {
        tracing::warn!(
            limit,
            wanted,
            streams = limit.saturating_sub(256) / FDS_PER_STREAM,
            "the open-files limit is too low for http.max_connections open answer streams; raise LimitNOFILE (systemd) or ulimit -n"
        );
    }
}

/// IPv4 clients of a dual-stack socket show up as ::ffff:a.b.c.d; the rest
/// of confab expects a.b.c.d.
pub fn canonical(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// Serves `app` on the connections `acceptor` yields until `shutdown`
/// resolves; then stops accepting at once and waits for the connections to
/// finish what they are doing (idle ones close right away).
pub async fn run<A: Accept>(
    mut acceptor: A,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let stop = CancellationToken::new();
    // Every connection task holds a receiver; the sender sees them all gone.
    let (close_tx, close_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let conn = tokio::select! {
            c = acceptor.accept() => c,
            _ = &mut shutdown => break,
        };
        tokio::spawn(serve_connection(
            conn,
            app.clone(),
            timeouts,
            stop.clone(),
            close_rx.clone(),
        ));
    }
    // Closes the listening socket before the drain.
    drop(acceptor);
    stop.cancel();
    drop(close_rx);
    close_tx.closed().await;
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Boxes a hyper connection future that serves until done, or until
/// `close` is cancelled and then finishes gracefully (in-flight requests
/// complete, idle ones close). Each hyper connection type has its own
/// `graceful_shutdown`; this gives the loop one shape for all of them.
macro_rules! serve_until_closed {
    ($close:expr, $conn:expr) => {{
        let close = $close.clone();
        Box::pin(async move {
            let mut conn = pin!($conn);
            tokio::select! {
                r = conn.as_mut() => return r.map_err(BoxError::from),
                _ = close.cancelled() => {}
            }
            conn.as_mut().graceful_shutdown();
            conn.await.map_err(BoxError::from)
        })
    }};
}

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
    /// Not known yet without reading: hyper-util's auto-detection decides.
    Unknown,
}

/// A connection's byte stream, able to tell its HTTP version without
/// consuming anything.
pub trait HttpIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn protocol(&self) -> impl Future<Output = Proto> + Send;
}

impl HttpIo for TcpStream {
    /// Peeks at the first bytes: an HTTP/2 client opens with the preface
    /// `PRI * HTTP/2.0`, and no HTTP/1 method starts with `PRI`.
    async fn protocol(&self) -> Proto {
        let mut first = [0u8; 3];
        match self.peek(&mut first).await {
            // Closed or failed: HTTP/1 notices and ends the connection.
            Ok(0) | Err(_) => Proto::Http1,
            Ok(_) if first[0] != b'P' => Proto::Http1,
            Ok(n) if n < first.len() => Proto::Unknown,
            Ok(_) if &first == b"PRI" => Proto::Http2,
            Ok(_) => Proto::Http1,
        }
    }
}

impl HttpIo for tokio_rustls::server::TlsStream<TcpStream> {
    /// ALPN, agreed in the handshake; a client that offered none is
    /// detected from its first bytes.
    async fn protocol(&self) -> Proto {
        match self.get_ref().1.alpn_protocol() {
            Some(b"h2") => Proto::Http2,
            Some(b"http/1.1") => Proto::Http1,
            _ => Proto::Unknown,
        }
    }
}

async fn serve_connection<I>(
    conn: Accepted<I>,
    app: Router,
    timeouts: Timeouts,
    stop: CancellationToken,
    _close: watch::Receiver<()>,
) where
    I: HttpIo,
{
    let Accepted { io, peer, permit } = conn;
    let state = Arc::new(ConnState::new());
    let service = {
        let state = state.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let guard = state.begin();
            let app = app.clone();
            async move {
                let connect = req.method() == Method::CONNECT;
                let mut req = req.map(|b| Body::new(TimedBody::new(b, timeouts)));
                req.extensions_mut().insert(ConnectInfo(peer));
                // Boxed: hyper keeps the allocation of this service future
                // for the connection's whole life, and the router's own
                // future is large; boxed, it is freed once the response
                // head is out (measured per open stream in benches/chat.rs).
                let resp = match Box::pin(app.oneshot(req)).await {
                    Ok(r) => r,
                    Err(e) => match e {},
                };
                // An HTTP/2 WebSocket (extended CONNECT) lives on inside
                // this connection after its response; the connection is not
                // idle while it is open.
                if connect && resp.status().is_success() {
                    guard.tunnel();
                }
                Ok::<_, Infallible>(resp.map(|b| {
                    Body::new(Tracked {
                        inner: b,
                        _guard: guard,
                    })
                }))
            }
        })
    };
    // Which HTTP the client speaks, told before hyper reads a byte. Each
    // version is then served by its own hyper builder: hyper-util's
    // auto-detection hands HTTP/1 its first 24 bytes alone, and the second
    // read doubles hyper's read buffer (8 → 16 KiB for every open answer
    // stream, measured in benches/chat.rs).
    let proto = tokio::select! {
        p = tokio::time::timeout(timeouts.header, io.protocol()) => match p {
            Ok(p) => p,
            Err(_) => {
                tracing::debug!(%peer, "closing a connection that sent nothing");
                return;
            }
        },
        _ = stop.cancelled() => return,
    };
    // The permit travels with the stream, so an upgraded connection (a
    // WebSocket) still counts until it closes.
    let io = TokioIo::new(Counted {
        io,
        _permit: permit,
    });
    let close = CancellationToken::new();
    let conn: Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>> = match proto {
        Proto::Http1 => {
            let mut b = hyper::server::conn::http1::Builder::new();
            // Deadlines are kept by the loop below, the same for HTTP/1 and 2.
            b.header_read_timeout(None);
            serve_until_closed!(close, b.serve_connection(io, service).with_upgrades())
        }
        Proto::Http2 => {
            let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            b.enable_connect_protocol();
            serve_until_closed!(close, b.serve_connection(io, service))
        }
        Proto::Unknown => {
            let mut b = Builder::new(TokioExecutor::new());
            b.http1().header_read_timeout(None);
            b.http2().enable_connect_protocol();
            serve_until_closed!(close, b.serve_connection_with_upgrades(io, service))
        }
    };
    let mut conn = conn;
    let mut draining = false;
    let mut drop_at: Option<Instant> = None;
    loop {
        let deadline = drop_at.or_else(|| state.deadline(&timeouts));
        let changed = state.changed.notified();
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.cancelled(), if !draining => {
                draining = true;
                close.cancel();
            }
            _ = changed => {}
            _ = sleep_until(deadline) => {
                if drop_at.is_some() {
                    break;
                }
                if state.deadline(&timeouts).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(%peer, "closing an idle connection");
                    if !draining {
                        draining = true;
                        close.cancel();
                    }
                    drop_at = Some(Instant::now() + CLOSE_GRACE);
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// What the connection loop needs to know about its requests.
struct ConnState {
    inner: Mutex<Requests>,
    changed: Notify,
}

struct Requests {
    in_progress: usize,
    seen_one: bool,
    tunnel: bool,
    idle_since: Instant,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            inner: Mutex::new(Requests {
                in_progress: 0,
                seen_one: false,
                tunnel: false,
                idle_since: Instant::now(),
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Requests> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(self: &Arc<Self>) -> InProgress {
        {
            let mut r = self.lock();
            r.in_progress += 1;
            r.seen_one = true;
        }
        self.changed.notify_one();
        InProgress(self.clone())
    }

    /// When the connection is to be closed as idle, if nothing happens
    /// before: none while a request is in progress.
    fn deadline(&self, t: &Timeouts) -> Option<Instant> {
        let r = self.lock();
        if r.in_progress > 0 || r.tunnel {
            return None;
        }
        // Until the first request arrives, the client owes its head.
        let limit = if r.seen_one { t.keep_alive } else { t.header };
        Some(r.idle_since + limit)
    }
}

/// One request in progress, from its head until its response body is
/// dropped (sent in full, or the client went away).
struct InProgress(Arc<ConnState>);

impl InProgress {
    fn tunnel(&self) {
        self.0.lock().tunnel = true;
        self.0.changed.notify_one();
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        {
            let mut r = self.0.lock();
            r.in_progress -= 1;
            if r.in_progress == 0 {
                r.idle_since = Instant::now();
            }
        }
        self.0.changed.notify_one();
    }
}

/// A response body that keeps its request counted as in progress.
struct Tracked {
    inner: Body,
    _guard: InProgress,
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body under the body deadlines. The clock only matters while
/// the handler waits for data: bytes already received are handed out
/// however late they are asked for.
struct TimedBody {
    inner: Incoming,
    timeouts: Timeouts,
    started: Instant,
    received: u64,
    last: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl TimedBody {
    fn new(inner: Incoming, timeouts: Timeouts) -> TimedBody {
        let now = Instant::now();
        TimedBody {
            inner,
            timeouts,
            started: now,
            received: 0,
            last: now,
            sleep: None,
        }
    }

    /// The later of the two rules fails first: silence since the last
    /// chunk, or an average below the minimum rate (after a first window
    /// of `body` seconds).
    fn deadline(&self) -> Instant {
        let silence = self.last + self.timeouts.body;
        if self.timeouts.body_min_rate == 0 {
            return silence;
        }
        let earned =
            Duration::from_secs_f64(self.received as f64 / self.timeouts.body_min_rate as f64);
        silence.min(self.started + self.timeouts.body + earned)
    }
}

impl hyper::body::Body for TimedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                    self.last = Instant::now();
                    self.sleep = None;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(std::io::Error::other(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = self.deadline();
                let sleep = self
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request body did not arrive in time",
                    ))));
                }
                Poll::Pending
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

/// A connection's stream carrying its place under the cap.
struct Counted<I> {
    io: I,
    _permit: ConnPermit,
}

impl<I: AsyncRead + Unpin> AsyncRead for Counted<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Counted<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
